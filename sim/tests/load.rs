//! Latency, parallel serving, the in-flight counter, and a 1,000-org run.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;
use webex_sim::{Fault, FaultKind, Sim, SimOptions};

use common::*;

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn latency_delays_v1_but_not_control() {
    let s = Sim::start(SimOptions {
        latency: Duration::from_millis(150),
        ..SimOptions::default()
    })
    .unwrap();
    let t = Instant::now();
    assert_eq!(
        get(&format!("{}/people/me", s.base_url()), None).status,
        401
    );
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    get(&format!("{}/_sim/stats", s.root_url()), None);
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    // settings: read and change
    let root = s.root_url();
    assert_eq!(
        get(&format!("{root}/_sim/settings"), None).json()["latencyMs"],
        150.0
    );
    let set = send_json(
        "POST",
        &format!("{root}/_sim/settings"),
        None,
        &json!({"latencyMs": 0}),
    );
    assert_eq!(set.status, 200);
    let t = Instant::now();
    get(&format!("{}/people/me", s.base_url()), None);
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    let bad = send_json(
        "POST",
        &format!("{root}/_sim/settings"),
        None,
        &json!({"latencyMs": -1}),
    );
    assert_eq!(bad.status, 400);
}

#[test]
fn sixty_four_requests_are_served_at_once() {
    let s = Sim::start(SimOptions::default()).unwrap();
    s.set_latency(Duration::from_millis(600));
    let (access, _) = s.issue_service_tokens(HOUR, HOUR);
    let url = format!("{}/dataSources", s.base_url());
    let gate = Arc::new(Barrier::new(64));
    let t = Instant::now();
    let handles: Vec<_> = (0..64)
        .map(|_| {
            let (url, access, gate) = (url.clone(), access.clone(), gate.clone());
            std::thread::spawn(move || {
                gate.wait();
                get(&url, Some(&access)).status
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    let took = t.elapsed();
    // one at a time would take 64 × 0.6 s = 38 s
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(s.max_in_flight(), 64);
    assert_eq!(s.in_flight(), 0);
    let v = get(&format!("{}/_sim/in-flight", s.root_url()), None).json();
    assert_eq!(v, json!({"inFlight": 0, "maxInFlight": 64}));
    s.reset_max_in_flight();
    assert_eq!(s.max_in_flight(), 0);
}

#[test]
fn in_flight_never_exceeds_what_the_client_has() {
    let s = Sim::start(SimOptions {
        latency: Duration::from_millis(5),
        ..SimOptions::default()
    })
    .unwrap();
    let (access, _) = s.issue_service_tokens(HOUR, HOUR);
    let url = format!("{}/dataSources", s.base_url());
    // 8 workers, each strictly one request after another
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (url, access) = (url.clone(), access.clone());
            std::thread::spawn(move || {
                for _ in 0..15 {
                    assert_eq!(get(&url, Some(&access)).status, 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let max = s.max_in_flight();
    assert!((2..=8).contains(&max), "max in flight {max}");
    assert_eq!(s.count("GET", "/v1/dataSources"), 120);
    // reset through the control API; reset-stats resets it too
    let r = send_json(
        "POST",
        &format!("{}/_sim/in-flight/reset", s.root_url()),
        None,
        &json!({}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(s.max_in_flight(), 0);
    get(&url, Some(&access));
    assert_eq!(s.max_in_flight(), 1);
    send_json(
        "POST",
        &format!("{}/_sim/reset-stats", s.root_url()),
        None,
        &json!({}),
    );
    assert_eq!(s.max_in_flight(), 0);
}

#[test]
fn delay_after_answers_late_but_has_already_rotated() {
    let s = Sim::start(SimOptions {
        rotate_refresh_tokens: true,
        ..SimOptions::default()
    })
    .unwrap();
    let c = s.credentials();
    let (_, old_rt) = s.issue_service_tokens(HOUR, HOUR);
    s.push_fault(Fault::new(
        "/v1/access_token",
        FaultKind::DelayAfter(Duration::from_millis(1200)),
    ));
    let url = format!("{}/access_token", s.base_url());
    let form = [
        ("grant_type", "refresh_token".to_string()),
        ("client_id", c.service_client_id.clone()),
        ("client_secret", c.service_client_secret.clone()),
        ("refresh_token", old_rt.clone()),
    ];
    let t = Instant::now();
    let client = std::thread::spawn(move || {
        let f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post_form(&url, &f)
    });
    // while the answer is held back, the exchange is already done
    let deadline = Instant::now() + Duration::from_secs(1);
    while s.count("POST", "/v1/access_token") == 0 {
        assert!(Instant::now() < deadline, "not recorded while held");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !s.is_token_valid(&old_rt),
        "old refresh token already revoked"
    );
    assert!(!client.is_finished(), "answer came too early");
    assert_eq!(s.in_flight(), 1);
    let r = client.join().unwrap();
    assert!(t.elapsed() >= Duration::from_millis(1200));
    assert_eq!(r.status, 200, "{}", r.body);
    let new_rt = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new_rt, old_rt);
    assert!(s.is_token_valid(&new_rt));

    // the same through the control API ("delay" still sleeps before processing)
    let f = send_json(
        "POST",
        &format!("{}/_sim/fault", s.root_url()),
        None,
        &json!({"path": "/v1/access_token", "kind": "delay_after", "ms": 300}),
    );
    assert_eq!(f.status, 200, "{}", f.body);
    let t = Instant::now();
    let r = post_form(
        &format!("{}/access_token", s.base_url()),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &c.service_client_id),
            ("client_secret", &c.service_client_secret),
            ("refresh_token", &new_rt),
        ],
    );
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(!s.is_token_valid(&new_rt));
    let bad = send_json(
        "POST",
        &format!("{}/_sim/fault", s.root_url()),
        None,
        &json!({"path": "/v1/access_token", "kind": "delay_after"}),
    );
    assert_eq!(bad.status, 400);
}

/// 1,000 orgs × 2 data sources with 20 ms latency: mint per org and list each
/// org's data sources, 16 at a time.
#[test]
fn a_thousand_orgs_with_latency() {
    let s = Arc::new(
        Sim::start(SimOptions {
            latency: Duration::from_millis(20),
            ..SimOptions::default().with_org_count(1000)
        })
        .unwrap(),
    );
    let dir = std::env::temp_dir().join(format!("webex-sim-load-{}", std::process::id()));
    s.write_demo_files(&dir).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("token-config.json")).unwrap())
            .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let listed = config["serviceApp"]["orgs"].as_array().unwrap();
    assert_eq!(listed.len(), 1000);
    assert_eq!(listed[999]["name"], "org1000");
    assert_eq!(s.data_sources().len(), 2000);

    let orgs = Arc::new(s.orgs());
    let pat = s.issue_personal_token(HOUR);
    let c = s.credentials();
    let t = Instant::now();
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (s, orgs, pat, c) = (s.clone(), orgs.clone(), pat.clone(), c.clone());
            std::thread::spawn(move || {
                for org in orgs.iter().skip(w).step_by(16) {
                    let r = send_json(
                        "POST",
                        &format!("{}/applications/{}/token", s.base_url(), c.app_id),
                        Some(&pat),
                        &json!({"clientId": c.service_client_id,
                                "clientSecret": c.service_client_secret, "targetOrgId": org}),
                    );
                    assert_eq!(r.status, 200, "{}", r.body);
                    let access = r.json()["access_token"].as_str().unwrap().to_string();
                    let l = get(&format!("{}/dataSources", s.base_url()), Some(&access));
                    assert_eq!(l.status, 200);
                    let items = l.json()["items"].as_array().unwrap().clone();
                    assert_eq!(items.len(), 2);
                    assert!(items.iter().all(|d| d["orgId"] == org.as_str()));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let took = t.elapsed();
    eprintln!("1000 orgs: 2000 requests at 20 ms latency, 16 at a time, in {took:?}");
    // 2000 × 20 ms / 16 = 2.5 s of pure latency; serially it would be 40 s
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(s.max_in_flight() <= 16);
    assert_eq!(s.count("GET", "/v1/dataSources"), 1000);
}
