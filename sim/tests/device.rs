//! Device authorization grant (RFC 8628) as Webex answers it, over HTTP.

mod common;

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use webex_sim::{Fault, Sim, SimOptions, TokenKind};

use common::*;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn sim_with_interval(secs: u64) -> Sim {
    Sim::start(SimOptions {
        device_interval: Duration::from_secs(secs),
        ..SimOptions::default()
    })
    .unwrap()
}

fn start(s: &Sim, scope: &str) -> Reply {
    post_form(
        &format!("{}/device/authorize", s.base_url()),
        &[
            ("client_id", &s.credentials().integration_client_id),
            ("scope", scope),
        ],
    )
}

/// Polls with the client secret in the form.
fn poll(s: &Sim, device_code: &str) -> Reply {
    let c = s.credentials();
    post_form(
        &format!("{}/device/token", s.base_url()),
        &[
            ("grant_type", GRANT),
            ("device_code", device_code),
            ("client_id", &c.integration_client_id),
            ("client_secret", &c.integration_client_secret),
        ],
    )
}

/// Polls with HTTP Basic client authentication.
fn poll_basic(s: &Sim, device_code: &str, secret: &str) -> Reply {
    let c = s.credentials();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{secret}", c.integration_client_id));
    let body = format!(
        "grant_type={}&device_code={}&client_id={}",
        enc(GRANT),
        enc(device_code),
        enc(&c.integration_client_id)
    );
    request(
        "POST",
        &format!("{}/device/token", s.base_url()),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", &format!("Basic {basic}")),
        ],
        Some(&body),
    )
    .unwrap()
}

/// Webex's error shape with the code in `message` and `errors[].description`,
/// and no RFC `error` field.
fn assert_device_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let v = r.json();
    assert_eq!(v["message"], code, "{v}");
    assert_eq!(v["errors"][0]["description"], code, "{v}");
    assert!(v.get("error").is_none(), "{v}");
    let tid = v["trackingId"].as_str().unwrap();
    assert_eq!(r.header("trackingid"), Some(tid));
}

fn device_code_of(r: &Reply) -> String {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["device_code"].as_str().unwrap().to_string()
}

#[test]
fn authorize_answers_rfc8628_fields() {
    let s = Sim::start(SimOptions::default()).unwrap();
    let r = start(&s, "spark:applications_token spark:kms");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    for k in [
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
    ] {
        assert!(!v[k].as_str().unwrap().is_empty(), "{k}: {v}");
    }
    assert_eq!(v["interval"], 5);
    assert_eq!(v["expires_in"], 300);
    let user_code = v["user_code"].as_str().unwrap();
    assert!(
        v["verification_uri_complete"]
            .as_str()
            .unwrap()
            .contains(user_code)
    );
    assert_ne!(v["device_code"], v["user_code"]);

    // unknown client, missing scope, not a form
    let bad = post_form(
        &format!("{}/device/authorize", s.base_url()),
        &[("client_id", "Cnope"), ("scope", "spark:kms")],
    );
    assert_device_error(&bad, 400, "invalid_client");
    let bad = post_form(
        &format!("{}/device/authorize", s.base_url()),
        &[("client_id", &s.credentials().integration_client_id)],
    );
    assert_device_error(&bad, 400, "invalid_scope");
    let bad = send_json(
        "POST",
        &format!("{}/device/authorize", s.base_url()),
        None,
        &json!({}),
    );
    assert_device_error(&bad, 400, "invalid_request");
    assert_eq!(
        get(&format!("{}/device/authorize", s.base_url()), None).status,
        405
    );
}

#[test]
fn pending_slow_down_approve_then_tokens_once() {
    let s = sim_with_interval(5);
    let code = device_code_of(&start(&s, "spark:applications_token spark:kms"));

    assert_device_error(&poll(&s, &code), 428, "authorization_pending");
    // again at once: faster than the interval
    assert_device_error(&poll(&s, &code), 400, "slow_down");
    s.advance_clock(Duration::from_secs(4));
    // 4 s after the previous (too fast) poll: still too fast
    assert_device_error(&poll(&s, &code), 400, "slow_down");
    s.advance_clock(Duration::from_secs(5));
    assert_device_error(&poll(&s, &code), 428, "authorization_pending");

    let user_code = s.approve_device(None).expect("a pending request");
    assert_eq!(user_code.len(), 9);
    assert_eq!(s.approve_device(None), None, "nothing pending any more");

    // approved, but polled too soon: slow_down still applies
    assert_device_error(&poll(&s, &code), 400, "slow_down");
    s.advance_clock(Duration::from_secs(5));
    let r = poll(&s, &code);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let access = v["access_token"].as_str().unwrap();
    let refresh = v["refresh_token"].as_str().unwrap();
    assert_eq!(v["expires_in"], 14 * 86400);
    assert_eq!(v["refresh_token_expires_in"], 90 * 86400);
    let a = s.token_info(access).unwrap();
    assert_eq!(a.kind, TokenKind::Personal);
    assert!(a.scopes.iter().any(|x| x == "spark:applications_token"));
    assert_eq!(
        s.token_info(refresh).unwrap().kind,
        TokenKind::IntegrationRefresh
    );

    // the personal token mints service-app tokens
    let c = s.credentials();
    let mint = send_json(
        "POST",
        &format!("{}/applications/{}/token", s.base_url(), c.app_id),
        Some(access),
        &json!({"clientId": c.service_client_id, "clientSecret": c.service_client_secret, "targetOrgId": c.target_org_id}),
    );
    assert_eq!(mint.status, 200, "{}", mint.body);
    // the refresh token works at /access_token
    let rr = post_form(
        &format!("{}/access_token", s.base_url()),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &c.integration_client_id),
            ("client_secret", &c.integration_client_secret),
            ("refresh_token", refresh),
        ],
    );
    assert_eq!(rr.status, 200, "{}", rr.body);

    // single use
    s.advance_clock(Duration::from_secs(5));
    assert_device_error(&poll(&s, &code), 400, "invalid_grant");
}

#[test]
fn basic_auth_interval_zero_and_client_errors() {
    let s = sim_with_interval(0);
    let code = device_code_of(&start(&s, "spark:applications_token"));
    // interval 0: back-to-back polls are fine
    let first = start(&s, "spark:kms");
    assert_eq!(first.json()["interval"], 0);
    for _ in 0..3 {
        assert_device_error(
            &poll_basic(&s, &code, &s.credentials().integration_client_secret),
            428,
            "authorization_pending",
        );
    }
    assert_device_error(&poll_basic(&s, &code, "wrong"), 401, "invalid_client");

    // approve by user code (the first request, not the latest one)
    let user_code = start_user_code(&s, &code);
    assert_eq!(
        s.approve_device(Some(&user_code.to_lowercase().replace('-', ""))),
        Some(user_code)
    );
    let r = poll_basic(&s, &code, &s.credentials().integration_client_secret);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["token_type"], "Bearer");

    // unknown code, wrong grant type, missing code
    assert_device_error(&poll(&s, "no-such-code"), 400, "invalid_grant");
    let c = s.credentials();
    let url = format!("{}/device/token", s.base_url());
    let r = post_form(
        &url,
        &[
            ("grant_type", "refresh_token"),
            ("device_code", &code),
            ("client_id", &c.integration_client_id),
            ("client_secret", &c.integration_client_secret),
        ],
    );
    assert_device_error(&r, 400, "unsupported_grant_type");
    let r = post_form(
        &url,
        &[
            ("grant_type", GRANT),
            ("client_id", &c.integration_client_id),
            ("client_secret", &c.integration_client_secret),
        ],
    );
    assert_device_error(&r, 400, "invalid_request");
    // the service app is not the integration
    let r = post_form(
        &url,
        &[
            ("grant_type", GRANT),
            ("device_code", &code),
            ("client_id", &c.service_client_id),
            ("client_secret", &c.service_client_secret),
        ],
    );
    assert_device_error(&r, 401, "invalid_client");
}

/// The user code of the pending request, from the control API listing.
fn start_user_code(s: &Sim, device_code: &str) -> String {
    let v = get(&format!("{}/_sim/devices", s.root_url()), None).json();
    let items = v["items"].as_array().unwrap();
    assert!(
        !items.iter().any(|i| i.to_string().contains(device_code)),
        "the listing never shows device codes"
    );
    items[0]["userCode"].as_str().unwrap().to_string()
}

#[test]
fn denied_and_expired() {
    let s = sim_with_interval(0);
    let denied = device_code_of(&start(&s, "spark:kms"));
    let expiring = device_code_of(&start(&s, "spark:kms"));
    // deny the latest, through the control API
    let r = send_json(
        "POST",
        &format!("{}/_sim/device/deny", s.root_url()),
        None,
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_device_error(&poll(&s, &expiring), 400, "access_denied");
    assert_device_error(&poll(&s, &expiring), 400, "access_denied");
    // the other one is still pending, then expires: invalid_grant (no expired_token)
    assert_device_error(&poll(&s, &denied), 428, "authorization_pending");
    s.advance_clock(Duration::from_secs(301));
    assert_device_error(&poll(&s, &denied), 400, "invalid_grant");
    assert_eq!(
        s.approve_device(None),
        None,
        "expired codes cannot be approved"
    );
    let r = send_json(
        "POST",
        &format!("{}/_sim/device/approve", s.root_url()),
        None,
        &json!({}),
    );
    assert_eq!(r.status, 404);
    let listing = get(&format!("{}/_sim/devices", s.root_url()), None).json();
    let states: Vec<&str> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["expired", "expired"]);
}

#[test]
fn control_api_approve_settings_verify_page_and_rate_limit_fault() {
    let s = Sim::start(SimOptions::default()).unwrap();
    let root = s.root_url();
    let set = send_json(
        "POST",
        &format!("{root}/_sim/settings"),
        None,
        &json!({"deviceIntervalSeconds": 1}),
    );
    assert_eq!(set.json()["deviceIntervalSeconds"], 1.0);
    let a = start(&s, "spark:kms");
    let v: Value = a.json();
    assert_eq!(v["interval"], 1);
    let code = v["device_code"].as_str().unwrap().to_string();
    let user_code = v["user_code"].as_str().unwrap().to_string();

    // two 429s from the token endpoint, then the real answers
    s.push_fault(Fault::rate_limited("/v1/device/token", 3).with_times(2));
    for _ in 0..2 {
        let r = poll(&s, &code);
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("3"));
    }
    assert_device_error(&poll(&s, &code), 428, "authorization_pending");
    // real time: one second later is not too soon
    std::thread::sleep(Duration::from_millis(1050));
    assert_device_error(&poll(&s, &code), 428, "authorization_pending");

    // approve by user code through the control API
    let unknown = send_json(
        "POST",
        &format!("{root}/_sim/device/approve"),
        None,
        &json!({"userCode": "BCDF-GHJK-X"}),
    );
    assert_eq!(unknown.status, 404);
    let ok = send_json(
        "POST",
        &format!("{root}/_sim/device/approve"),
        None,
        &json!({"userCode": user_code}),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["userCode"], user_code.as_str());
    std::thread::sleep(Duration::from_millis(1050));
    assert_eq!(poll(&s, &code).status, 200);

    // the verification page approves what the user opens
    let b = start(&s, "spark:kms").json();
    let page = get(b["verification_uri_complete"].as_str().unwrap(), None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("approved"));
    let again = get(b["verification_uri_complete"].as_str().unwrap(), None);
    assert_eq!(again.status, 404);
    assert_eq!(
        get(b["verification_uri"].as_str().unwrap(), None).status,
        400
    );
    let code_b = b["device_code"].as_str().unwrap();
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(poll(&s, code_b).status, 200);

    // set_device_interval for later requests
    s.set_device_interval(Duration::from_millis(2500));
    assert_eq!(start(&s, "spark:kms").json()["interval"], 3);
    // polls are recorded like any /v1 request; control requests are not
    assert!(s.count("POST", "/v1/device/token") >= 6);
    assert!(s.requests().iter().all(|r| !r.path.starts_with("/_sim")));
}

#[test]
fn the_code_life_is_a_setting_for_codes_started_later() {
    let s = Sim::start(SimOptions::default()).unwrap();
    let root = s.root_url();
    let bad = send_json(
        "POST",
        &format!("{root}/_sim/settings"),
        None,
        &json!({"deviceCodeSeconds": 0}),
    );
    assert_eq!(bad.status, 400);
    let set = send_json(
        "POST",
        &format!("{root}/_sim/settings"),
        None,
        &json!({"deviceCodeSeconds": 1, "deviceIntervalSeconds": 0}),
    );
    assert_eq!(set.json()["deviceCodeSeconds"], 1.0);
    let v: Value = start(&s, "spark:kms").json();
    assert_eq!(v["expires_in"], 1);
    let code = v["device_code"].as_str().unwrap().to_string();
    assert_device_error(&poll(&s, &code), 428, "authorization_pending");
    std::thread::sleep(Duration::from_millis(1100));
    assert_device_error(&poll(&s, &code), 400, "invalid_grant");
    // The library knob, likewise.
    s.set_device_code_ttl(Duration::from_secs(7));
    assert_eq!(start(&s, "spark:kms").json()["expires_in"], 7);
}
