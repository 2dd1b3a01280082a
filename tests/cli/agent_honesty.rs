//! `watch` tells the truth about the token (issue 21, items 1, 4, 13): a
//! token Webex rejected is never called working; one freshness policy per
//! run, every saved token announced; health and READY follow the token
//! through Webex and etcd outages. The real binary against webex-sim.

use crate::common::{free_port, stderr};
use crate::etcd_cluster::EtcdCluster;
use crate::watch::{Env, Watch, http_get, issued, secs};
use serde_json::Value;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};
use webex_sim::{Fault, NewDataSource, SimOptions};

const ACCESS: &str = "WEBEX_SERVICE_APP_ACCESS_TOKEN";
const REFRESH: &str = "WEBEX_SERVICE_APP_REFRESH_TOKEN";

fn healthz(port: u16) -> (u16, Value) {
    let (status, body) = http_get(port, "/healthz");
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, v)
}

/// Polls `/healthz` until it answers `status` (within 10 s).
fn wait_health(port: u16, status: u16) -> Value {
    let end = Instant::now() + secs(10);
    loop {
        let (s, v) = healthz(port);
        if s == status {
            return v;
        }
        assert!(Instant::now() < end, "/healthz stays {s}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the sample `series` (name and labels as printed).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
}

/// A unix datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
struct Notify {
    sock: UnixDatagram,
    seen: String,
}

impl Notify {
    fn bind(at: &Path) -> Notify {
        let sock = UnixDatagram::bind(at).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Notify {
            sock,
            seen: String::new(),
        }
    }

    /// Reads until every one of `wanted` was received (within 10 s); all
    /// that was received so far.
    fn wait_for(&mut self, wanted: &[&str]) -> &str {
        let end = Instant::now() + secs(10);
        let mut buf = [0u8; 4096];
        while !wanted.iter().all(|w| self.seen.contains(w)) {
            assert!(
                Instant::now() < end,
                "no {wanted:?} on NOTIFY_SOCKET; got: {}",
                self.seen
            );
            if let Ok(n) = self.sock.recv(&mut buf) {
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                self.seen.push('\n');
            }
        }
        &self.seen
    }
}

/// A hook that appends `$WEBEX_TOKEN_EVENT` to `file`.
fn recording_hook(file: &Path) -> String {
    format!("echo \"$WEBEX_TOKEN_EVENT\" >> '{}'", file.display())
}

/// Lines of the hook's record equal to `event`, once the record holds
/// `until` (the hooks run after their event is printed).
fn hooked(file: &Path, event: &str, until: &str) -> usize {
    let end = Instant::now() + secs(10);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.lines().any(|l| l == until) {
            return text.lines().filter(|l| *l == event).count();
        }
        assert!(Instant::now() < end, "no `{until}` hook run: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Item 1: every level rejected after Webex rejected the stored token
/// (401 on validation): `/healthz` is 503 saying so, though the token's
/// stored expiry is 14 days away; a new saved token clears it.
#[test]
fn a_token_webex_rejected_is_not_healthy_until_a_new_one_is_saved() {
    let t = Env::new(SimOptions::default());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut notify = Notify::bind(&t.path("notify.sock"));
    let w = t.spawn(
        &["--health", &addr, "--check-interval", "2s"],
        &[("NOTIFY_SOCKET", t.path("notify.sock").to_str().unwrap())],
    );
    w.wait_for("refreshed", 1, secs(10));
    assert_eq!(wait_health(port, 200)["rejected"], false);
    // Revoked in Control Hub: the access token, the refresh token, and
    // every other level is dead too (the config first: a check between
    // the two steps must not cure the token).
    let good = t.break_config();
    let access = t.env_value(ACCESS).unwrap();
    t.sim.revoke_token(&access);
    t.sim.revoke_token(&t.env_value(REFRESH).unwrap());
    let failed = w.wait_for("failed", 1, secs(10));
    assert_eq!(failed[0]["exitCode"], 4, "{}", failed[0]);
    let (status, v) = healthz(port);
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["status"], "unhealthy", "{v}");
    assert_eq!(v["rejected"], true, "{v}");
    assert!(v["rejectedAt"].as_str().is_some(), "{v}");
    assert!(v["secondsLeft"].as_i64().unwrap() > 13 * 86400, "{v}");
    let metrics = http_get(port, "/metrics").1;
    assert_eq!(sample(&metrics, "webex_token_access_token_rejected"), 1.0);
    // systemd is not told it works either.
    let seen = notify.wait_for(&["needs attention"]).to_string();
    let after = &seen[seen.rfind("needs attention").unwrap()..];
    assert!(!after.contains("access token expires"), "{seen}");
    // The token stays rejected though it is still the one stored.
    assert_eq!(t.env_value(ACCESS).unwrap(), access);
    // A person fixes the config: the next try saves a new token, and the
    // rejection is over.
    t.write_config(&good);
    w.wait_for("refreshed", 2, secs(15));
    let v = wait_health(port, 200);
    assert_eq!(v["rejected"], false, "{v}");
    assert_eq!(v["rejectedAt"], Value::Null, "{v}");
    let metrics = http_get(port, "/metrics").1;
    assert_eq!(sample(&metrics, "webex_token_access_token_rejected"), 0.0);
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
}

/// The token-issuing requests and the `refreshed` events and hook runs
/// must match one for one.
fn assert_every_refresh_announced(t: &Env, w: &Watch, hooks: &Path, until: &str) {
    let issued = issued(&t.sim).len();
    let events = w.named("refreshed").len() + w.named("rolled").len();
    let hook_runs = hooked(hooks, "refreshed", until) + hooked(hooks, "rolled", until);
    assert_eq!(
        (issued, hook_runs),
        (events, events),
        "token requests vs refreshed events vs hook runs;\nstderr:\n{}",
        w.stderr()
    );
}

/// Item 4: access tokens that live 50 min, `--min-valid 10m`: the data-
/// source round must not refresh again on its own (1 h) policy.
#[test]
fn the_datasource_round_uses_the_watchers_token_as_is() {
    let t = Env::new(SimOptions {
        access_ttl: secs(50 * 60),
        ..SimOptions::default()
    });
    let hooks = t.path("hooks.txt");
    let w = t.spawn(
        &[
            "--datasources",
            "--min-valid",
            "10m",
            "--on-refresh",
            &recording_hook(&hooks),
        ],
        &[],
    );
    w.wait_for("extended", 1, secs(10));
    assert_every_refresh_announced(&t, &w, &hooks, "extended");
    assert_eq!(issued(&t.sim).len(), 1);
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
}

/// Item 4: one data source answering 401 to its renewal is that data
/// source's problem: the retries of the round never refresh the
/// service-app token (unannounced or not).
#[test]
fn a_401_from_one_data_source_does_not_refresh_the_service_app_token() {
    let t = Env::new(SimOptions::default());
    let crm = t
        .sim
        .data_sources()
        .into_iter()
        .find(|d| d["subject"] == "demo-crm-feed")
        .map(|d| d["id"].as_str().unwrap().to_string())
        .unwrap();
    let other = t.sim.add_data_source(NewDataSource {
        subject: "also-due".into(),
        expires_in: secs(30 * 60),
        ..NewDataSource::default()
    });
    t.sim.push_fault(
        Fault::status(&format!("/v1/dataSources/{crm}"), 401)
            .with_method("PUT")
            .forever(),
    );
    let hooks = t.path("hooks.txt");
    let w = t.spawn(
        &["--datasources", "--on-refresh", &recording_hook(&hooks)],
        &[],
    );
    w.wait_for("refreshed", 1, secs(10));
    // The first round and its first retry (5 s later).
    let failed = w.wait_for("failed", 2, secs(20));
    for f in &failed {
        assert_eq!(f["task"], "extend", "{f}");
    }
    // The failure is that data source's, and says so.
    let item = failed[0]["dataSources"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["id"] == crm.as_str()))
        .unwrap_or_else(|| panic!("{}", failed[0]))
        .clone();
    assert_eq!(item["error"]["httpStatus"], 401, "{item}");
    assert!(
        item["error"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("this data source's renewal")),
        "{item}"
    );
    // The other due source was renewed all the same.
    let puts = crate::watch::answered(&t.sim, "PUT", &format!("/v1/dataSources/{other}"));
    assert!(puts.iter().any(|r| r.status == 200), "{}", w.stderr());
    assert_every_refresh_announced(&t, &w, &hooks, "refreshed");
    assert_eq!(issued(&t.sim).len(), 1, "{}", w.stderr());
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
}

/// Item 13: Webex unreachable at boot, the stored token valid for 14
/// days: READY is sent, `/healthz` is 200 with the outage in `lastError`,
/// the failure counted and in STATUS.
#[test]
fn with_webex_down_at_boot_a_valid_stored_token_is_ready_and_healthy() {
    let t = Env::new(SimOptions::default());
    let out = t.run(&["refresh"]);
    assert_eq!(crate::common::code(&out), 0, "{}", stderr(&out));
    // Webex cannot be reached any more (nothing listens there).
    let mut cfg = t.config();
    cfg["apiBaseUrl"] = format!("http://127.0.0.1:{}/v1", free_port()).into();
    t.write_config(&cfg);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut notify = Notify::bind(&t.path("notify.sock"));
    let w = t.spawn(
        &["--health", &addr],
        &[("NOTIFY_SOCKET", t.path("notify.sock").to_str().unwrap())],
    );
    w.wait_for("failed", 1, secs(10));
    let seen = notify.wait_for(&["READY=1", "transient failure"]);
    assert!(seen.contains("STATUS=access token expires"), "{seen}");
    let (status, v) = healthz(port);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "ok", "{v}");
    assert!(v["lastError"].as_str().is_some(), "{v}");
    let metrics = http_get(port, "/metrics").1;
    assert!(
        sample(&metrics, "webex_token_failures_total{kind=\"transient\"}") >= 1.0,
        "{metrics}"
    );
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
}

/// Item 13: etcd unreachable at start; this host's export (seeded from
/// etcd) holds a token valid for 14 days: READY and 200, the outage in
/// `lastError`.
#[test]
fn with_etcd_down_at_start_the_export_keeps_the_agent_ready_and_healthy() {
    let Some(cluster) = EtcdCluster::start_or_skip(1) else {
        return;
    };
    let t = Env::new(SimOptions::default());
    let prefix = format!("honest-{}", std::process::id());
    let out = t
        .cmd()
        .env("WEBEX_TOKEN_STORE", cluster.url(&prefix))
        .arg("refresh")
        .output()
        .unwrap();
    assert_eq!(crate::common::code(&out), 0, "{}", stderr(&out));
    assert!(t.env_value(ACCESS).is_some());
    drop(cluster);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut notify = Notify::bind(&t.path("notify.sock"));
    // Nothing listens there: every etcd call fails.
    let store = format!("etcd://127.0.0.1:{}/{prefix}", free_port());
    let socket = t.path("notify.sock");
    let w = t.spawn(
        &["--health", &addr],
        &[
            ("WEBEX_TOKEN_STORE", &store),
            ("WEBEX_TOKEN_ETCD_TIMEOUT", "1s"),
            ("NOTIFY_SOCKET", socket.to_str().unwrap()),
        ],
    );
    w.wait_for("failed", 1, secs(15));
    notify.wait_for(&["READY=1", "transient failure"]);
    let (status, v) = healthz(port);
    assert_eq!(status, 200, "{v}\n{}", w.stderr());
    assert!(v["lastError"].as_str().is_some(), "{v}");
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
}

/// Item 4: a 401 on the data-source listing means Webex rejected the
/// token: the round does not refresh it on its own; the watcher's tick
/// checks it at once and refreshes it, announced (event and hook).
#[test]
fn a_401_on_the_listing_is_left_to_the_tick_which_announces_its_refresh() {
    let t = Env::new(SimOptions::default());
    let hooks = t.path("hooks.txt");
    // The first tick mints (no check); the next two GET /dataSources
    // calls (the round's listing, then the tick's check) answer 401.
    t.sim.push_fault(
        Fault::status("/v1/dataSources", 401)
            .with_method("GET")
            .with_times(2),
    );
    let w = t.spawn(
        &["--datasources", "--on-refresh", &recording_hook(&hooks)],
        &[],
    );
    let failed = w.wait_for("failed", 1, secs(10));
    assert_eq!(failed[0]["task"], "extend", "{}", failed[0]);
    // The tick's refresh after the 401, then the round again (after its
    // back-off) with the new token.
    w.wait_for("refreshed", 2, secs(10));
    w.wait_for("extended", 1, secs(20));
    assert_every_refresh_announced(&t, &w, &hooks, "extended");
    assert_eq!(issued(&t.sim).len(), 2, "{}", w.stderr());
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
}

/// Item 1, the transient variant: Webex rejects the stored token (401)
/// and every level then fails for a reason that may pass. The token is
/// unhealthy (it was 200 before: its expiry is 14 days away), and it is
/// checked again after the back-off.
#[test]
fn a_rejected_token_whose_refresh_cannot_reach_webex_is_unhealthy_and_retried() {
    let t = Env::new(SimOptions::default());
    let out = t.run(&["refresh"]);
    assert_eq!(crate::common::code(&out), 0, "{}", stderr(&out));
    t.sim.revoke_token(&t.env_value(ACCESS).unwrap());
    let mint = format!("/v1/applications/{}/token", t.sim.credentials().app_id);
    for path in ["/v1/access_token", mint.as_str()] {
        t.sim.push_fault(Fault::status(path, 503).forever());
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let w = t.spawn(&["--health", &addr], &[]);
    let failed = w.wait_for("failed", 1, secs(10));
    assert_eq!(failed[0]["exitCode"], 1, "{}", failed[0]);
    let (status, v) = healthz(port);
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["rejected"], true, "{v}");
    // The next try comes after the first back-off (5 s), not in an hour.
    let failed = w.wait_for("failed", 2, secs(15));
    assert_eq!(failed[1]["exitCode"], 1, "{}", failed[1]);
    assert_eq!(healthz(port).0, 503);
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
}

/// Item 4 with `--once`: a 401 on the listing is handed to a check of the
/// token (its refresh announced), then the round runs once more.
#[test]
fn once_with_a_401_on_the_listing_checks_the_token_then_renews() {
    let t = Env::new(SimOptions::default());
    t.sim.push_fault(
        Fault::status("/v1/dataSources", 401)
            .with_method("GET")
            .with_times(2),
    );
    let hooks = t.path("hooks.txt");
    let out = t.run(&[
        "--json",
        "watch",
        "--once",
        "--datasources",
        "--on-refresh",
        &recording_hook(&hooks),
    ]);
    assert_eq!(crate::common::code(&out), 0, "{}", stderr(&out));
    let order: Vec<String> = crate::common::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] != "hook")
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(order, ["started", "refreshed", "refreshed", "extended"]);
    assert_eq!(issued(&t.sim).len(), 2);
    assert_eq!(hooked(&hooks, "refreshed", "extended"), 2);
}
