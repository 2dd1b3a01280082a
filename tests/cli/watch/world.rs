//! `watch` follows the world while it runs: orgs put into or taken out of
//! the config (on SIGHUP, and by itself within a few seconds), and a wall
//! clock that jumps (suspend and resume, an NTP step).

use super::{Env, Watch, http_get, secs};
use crate::common::free_port;
use serde_json::Value;
use std::time::{Duration, Instant};
use webex_sim::SimOptions;

/// Three orgs in the simulator, the config listing the first two; the
/// third's entry is returned.
fn two_of_three() -> (Env, Value) {
    let t = Env::new(SimOptions::default().with_org_count(3));
    let mut c = t.config();
    let third = c["serviceApp"]["orgs"][2].clone();
    assert_eq!(third["name"], "org3", "{c}");
    c["serviceApp"]["orgs"].as_array_mut().unwrap().truncate(2);
    t.write_config(&c);
    (t, third)
}

/// [`two_of_three`] with `watch --health` on a free port running, once
/// both orgs got a token: the env, the third org's entry, the port and
/// the agent.
fn watching_two_of_three() -> (Env, Value, u16, Watch) {
    let (t, third) = two_of_three();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let w = t.spawn(&["--health", &addr, "--check-interval", "1h"], &[]);
    w.wait_for("refreshed", 2, secs(10));
    (t, third, port, w)
}

/// The config listing org1 and `third` (org2 taken out).
fn swap_second_for(t: &Env, third: &Value) {
    let mut c = t.config();
    c["serviceApp"]["orgs"][1] = third.clone();
    t.write_config(&c);
}

/// The org names `/healthz` reports on, its status, and the `/metrics`
/// body.
fn health(port: u16) -> (u16, Vec<String>, String) {
    let (status, body) = http_get(port, "/healthz");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let names = v["orgs"]
        .as_array()
        .unwrap_or_else(|| panic!("no orgs: {v}"))
        .iter()
        .map(|o| o["org"].as_str().unwrap().to_string())
        .collect();
    (status, names, http_get(port, "/metrics").1)
}

/// Waits until `ok` holds (checked every 100 ms), or fails saying `what`.
fn eventually(w: &Watch, within: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !ok() {
        assert!(
            Instant::now() < end,
            "{what} not within {within:?}; stderr:\n{}",
            w.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn of(events: &[Value], org: &str) -> usize {
    events.iter().filter(|e| e["org"] == org).count()
}

/// The access token in an org's env file (`.env.NAME`).
fn org_token(t: &Env, org: &str) -> Option<String> {
    let it = dotenvy::from_path_iter(t.path(&format!(".env.{org}"))).ok()?;
    it.filter_map(Result::ok)
        .find(|(k, _)| k == super::ACCESS)
        .map(|(_, v)| v)
}

/// No secret of the config or of any org's env file in what `w` printed.
fn assert_no_secrets(t: &Env, w: &Watch) {
    let mut secrets = t.secrets();
    for org in ["org1", "org2", "org3"] {
        secrets.extend(org_token(t, org));
    }
    assert!(secrets.len() >= 6, "{secrets:?}");
    t.assert_clean(&w.stdout(), &w.stderr(), &secrets);
}

/// After the switch from org1+org2 to org1+org3: org3 watched with a
/// working token, org2 out of `/healthz` and `/metrics`, org1 untouched.
fn assert_followed(t: &Env, w: &Watch, port: u16) {
    let added = w.wait_for("added", 1, secs(10));
    assert_eq!(added[0]["org"], "org3", "{}", added[0]);
    assert!(
        added[0]["envFile"].as_str().unwrap().ends_with(".env.org3"),
        "{}",
        added[0]
    );
    let removed = w.wait_for("removed", 1, secs(10));
    assert_eq!(removed[0]["org"], "org2", "{}", removed[0]);
    eventually(w, secs(10), "a working token for org3", || {
        org_token(t, "org3").is_some_and(|tok| t.sim.is_token_valid(&tok))
    });
    eventually(w, secs(10), "org3 healthy, org2 gone", || {
        let (status, names, _) = health(port);
        status == 200 && names == ["org1", "org3"]
    });
    let (_, _, metrics) = health(port);
    assert!(!metrics.contains("org=\"org2\""), "{metrics}");
    assert!(metrics.contains("org=\"org3\""), "{metrics}");
    // org1's loop went on: started once, its token minted once.
    assert_eq!(of(&w.named("started"), "org1"), 1);
    assert_eq!(of(&w.named("refreshed"), "org1"), 1);
    assert_eq!(of(&w.named("started"), "org3"), 1);
    assert_eq!(of(&w.named("added"), "org2"), 0);
}

#[test]
fn sighup_starts_the_orgs_added_and_stops_the_orgs_removed() {
    let (t, third, port, w) = watching_two_of_three();
    let (status, names, metrics) = health(port);
    assert_eq!((status, names), (200, vec!["org1".into(), "org2".into()]));
    assert!(metrics.contains("org=\"org2\""), "{metrics}");
    swap_second_for(&t, &third);
    w.signal("HUP");
    assert_followed(&t, &w, port);
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
    assert_no_secrets(&t, &w);
    // One `stopping` per org still watched.
    assert_eq!(w.named("stopping").len(), 2, "{}", w.stderr());
    assert!(
        w.stderr().contains("org `org2` is no longer in the config"),
        "{}",
        w.stderr()
    );
}

#[test]
fn a_changed_config_is_followed_without_a_signal_and_a_broken_one_keeps_the_orgs() {
    let (t, third, port, w) = watching_two_of_three();
    // A config that no longer parses: said, naming the file; the orgs stay.
    let good = std::fs::read(t.path("token-config.json")).unwrap();
    std::fs::write(t.path("token-config.json"), b"{\"serviceApp\": ").unwrap();
    eventually(&w, secs(10), "the broken config reported", || {
        w.stderr().contains("could not read the org list again")
    });
    assert!(w.stderr().contains("token-config.json"), "{}", w.stderr());
    let (status, names, _) = health(port);
    assert_eq!((status, names), (200, vec!["org1".into(), "org2".into()]));
    assert!(w.named("removed").is_empty());
    std::fs::write(t.path("token-config.json"), good).unwrap();
    // The new org list, picked up alone.
    swap_second_for(&t, &third);
    assert_followed(&t, &w, port);
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
    assert_no_secrets(&t, &w);
}

#[test]
fn a_clock_jump_is_noticed_at_once_and_the_token_refreshed() {
    let t = Env::new(SimOptions {
        access_ttl: secs(86_400),
        ..SimOptions::default()
    });
    let offset = t.path("clock-offset");
    std::fs::write(&offset, "0").unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let w = t.spawn(
        &["--health", &addr, "--check-interval", "1h"],
        &[(
            "WEBEX_TOKEN_TEST_CLOCK_OFFSET_FILE",
            offset.to_str().unwrap(),
        )],
    );
    w.wait_for("refreshed", 1, secs(10));
    assert_eq!(http_get(port, "/healthz").0, 200);
    // A day and an hour later (a suspended laptop, a stepped clock): the
    // token in the file has expired by the wall clock, and the next planned
    // look was an hour away on the monotonic one.
    std::fs::write(&offset, "90000").unwrap();
    let refreshed = w.wait_for("refreshed", 2, secs(10));
    assert!(
        w.stderr()
            .contains("the clock jumped ahead by 1d 0h: planning anew"),
        "{}",
        w.stderr()
    );
    let at = |v: &Value| {
        v["accessToken"]["expiresAt"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
    };
    // The new token's expiry is a day after the shifted clock's now.
    let gap = at(&refreshed[1]).as_second() - at(&refreshed[0]).as_second();
    assert!((90_000..90_100).contains(&gap), "{gap}");
    eventually(&w, secs(5), "/healthz 200 again", || {
        http_get(port, "/healthz").0 == 200
    });
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
}

#[test]
fn an_org_whose_env_file_changed_is_watched_anew_under_its_name() {
    let (t, _, port, w) = watching_two_of_three();
    let mut c = t.config();
    c["serviceApp"]["orgs"][1]["envFile"] = "moved.env".into();
    t.write_config(&c);
    let removed = w.wait_for("removed", 1, secs(10));
    assert_eq!(removed[0]["org"], "org2", "{}", removed[0]);
    assert!(
        removed[0]["envFile"]
            .as_str()
            .unwrap()
            .ends_with(".env.org2"),
        "{}",
        removed[0]
    );
    let added = w.wait_for("added", 1, secs(10));
    assert_eq!(added[0]["org"], "org2", "{}", added[0]);
    assert!(
        added[0]["envFile"].as_str().unwrap().ends_with("moved.env"),
        "{}",
        added[0]
    );
    eventually(&w, secs(10), "a working token in moved.env", || {
        dotenvy::from_path_iter(t.path("moved.env"))
            .ok()
            .and_then(|it| {
                it.filter_map(Result::ok)
                    .find(|(k, _)| k == super::ACCESS)
                    .map(|(_, v)| v)
            })
            .is_some_and(|tok| t.sim.is_token_valid(&tok))
    });
    // The new loop reports under the same name: org2 stays in /healthz and
    // /metrics once, working.
    eventually(&w, secs(10), "org1 and org2 healthy", || {
        let (status, names, _) = health(port);
        status == 200 && names == ["org1", "org2"]
    });
    let (_, _, metrics) = health(port);
    assert!(
        metrics.contains("webex_token_validations_total{org=\"org2\"}"),
        "{metrics}"
    );
    assert_eq!(of(&w.named("started"), "org1"), 1);
    assert_eq!(of(&w.named("started"), "org2"), 2);
}
