//! Every simulated endpoint, spoken to over plain HTTP.

mod common;

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use webex_sim::{Fault, FaultKind, NewDataSource, Sim, SimOptions};

use common::*;

fn sim() -> Sim {
    Sim::start(SimOptions::default()).unwrap()
}

fn mint_url(sim: &Sim) -> String {
    format!(
        "{}/applications/{}/token",
        sim.base_url(),
        sim.credentials().app_id
    )
}

fn mint_body(sim: &Sim) -> Value {
    let c = sim.credentials();
    json!({"clientId": c.service_client_id, "clientSecret": c.service_client_secret, "targetOrgId": c.target_org_id})
}

fn refresh(sim: &Sim, client_id: &str, secret: &str, rt: &str) -> Reply {
    post_form(
        &format!("{}/access_token", sim.base_url()),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("refresh_token", rt),
        ],
    )
}

fn assert_webex_error(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "body: {}", r.body);
    let v = r.json();
    assert!(v["message"].is_string(), "{v}");
    assert!(v["errors"][0]["description"].is_string(), "{v}");
    let tid = v["trackingId"].as_str().unwrap();
    assert!(tid.starts_with("WEBEXSIM_"));
    assert_eq!(r.header("trackingid"), Some(tid));
}

#[test]
fn credentials_look_like_webex() {
    let s = sim();
    let c = s.credentials();
    let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&c.app_id)
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        format!("ciscospark://us/APPLICATION/{}", c.service_client_id)
    );
    assert!(
        c.target_org_id
            .starts_with("Y2lzY29zcGFyazovL3VzL09SR0FOSVpBVElPTi")
    );
    assert!(s.base_url().starts_with("http://127.0.0.1:"));
    assert!(s.base_url().ends_with("/v1"));
    let t1 = s.issue_personal_token(Duration::from_secs(60));
    let t2 = s.issue_personal_token(Duration::from_secs(60));
    assert_ne!(t1, t2);
    assert!(t1.len() > 64 && t1.contains("_PF84_"));
}

#[test]
fn service_refresh_success_keeps_refresh_token_by_default() {
    let s = sim();
    let c = s.credentials();
    let (old_access, rt) =
        s.issue_service_tokens(Duration::from_secs(60), Duration::from_secs(1000));
    s.advance_clock(Duration::from_secs(100));
    let r = refresh(&s, &c.service_client_id, &c.service_client_secret, &rt);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let access = v["access_token"].as_str().unwrap();
    assert_ne!(access, old_access);
    assert_eq!(v["refresh_token"], rt.as_str());
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 14 * 86400);
    let left = v["refresh_token_expires_in"].as_u64().unwrap();
    assert!((898..=900).contains(&left), "{left}");
    // the new access token works for data sources
    assert_eq!(
        get(&format!("{}/dataSources", s.base_url()), Some(access)).status,
        200
    );
    assert_eq!(s.count("POST", "/v1/access_token"), 1);
    let rec = &s.requests()[0];
    assert_eq!(rec.form_value("grant_type"), Some("refresh_token"));
    assert_eq!(rec.status, 200);
}

#[test]
fn service_refresh_rotation_revokes_old_token() {
    let s = Sim::start(SimOptions {
        rotate_refresh_tokens: true,
        ..SimOptions::default()
    })
    .unwrap();
    let c = s.credentials();
    let (_, rt) = s.issue_service_tokens(Duration::from_secs(60), Duration::from_secs(1000));
    let v = refresh(&s, &c.service_client_id, &c.service_client_secret, &rt).json();
    let new_rt = v["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new_rt, rt);
    assert_eq!(v["refresh_token_expires_in"], 90 * 86400);
    let again = refresh(&s, &c.service_client_id, &c.service_client_secret, &rt);
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["error"], "invalid_grant");
    assert_eq!(
        refresh(&s, &c.service_client_id, &c.service_client_secret, &new_rt).status,
        200
    );
}

#[test]
fn refresh_failures() {
    let s = sim();
    let c = s.credentials();
    let (access, rt) = s.issue_service_tokens(Duration::from_secs(60), Duration::from_secs(1000));
    // wrong secret
    let r = refresh(&s, &c.service_client_id, "nope", &rt);
    assert_webex_error(&r, 401);
    assert_eq!(r.json()["error"], "invalid_client");
    // unknown token / access token used as refresh token
    for bad in ["garbage", access.as_str()] {
        let r = refresh(&s, &c.service_client_id, &c.service_client_secret, bad);
        assert_webex_error(&r, 400);
        assert_eq!(r.json()["error"], "invalid_grant");
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("expired, revoked")
        );
    }
    // a service refresh token with the integration's credentials
    let r = refresh(
        &s,
        &c.integration_client_id,
        &c.integration_client_secret,
        &rt,
    );
    assert_eq!(r.json()["error"], "invalid_grant");
    // expired
    s.advance_clock(Duration::from_secs(1001));
    let r = refresh(&s, &c.service_client_id, &c.service_client_secret, &rt);
    assert_eq!(r.status, 400);
    // revoked
    let (_, rt2) = s.issue_service_tokens(Duration::from_secs(60), Duration::from_secs(1000));
    s.revoke_token(&rt2);
    assert_eq!(
        refresh(&s, &c.service_client_id, &c.service_client_secret, &rt2).status,
        400
    );
    // unsupported grant, not form-encoded
    let r = post_form(
        &format!("{}/access_token", s.base_url()),
        &[("grant_type", "password")],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    let r = send_json(
        "POST",
        &format!("{}/access_token", s.base_url()),
        None,
        &json!({}),
    );
    assert_eq!(r.json()["error"], "invalid_request");
}

#[test]
fn integration_refresh_gives_a_minting_personal_token() {
    let s = sim();
    let c = s.credentials();
    let irt = s.issue_integration_refresh_token(Duration::from_secs(3600));
    let v = refresh(
        &s,
        &c.integration_client_id,
        &c.integration_client_secret,
        &irt,
    )
    .json();
    assert_eq!(v["expires_in"], 14 * 86400);
    assert_eq!(v["refresh_token"], irt.as_str());
    let pat = v["access_token"].as_str().unwrap();
    let r = send_json("POST", &mint_url(&s), Some(pat), &mint_body(&s));
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn mint_success_and_failures() {
    let s = sim();
    let url = mint_url(&s);
    let body = mint_body(&s);
    let pat = s.issue_personal_token(Duration::from_secs(3600));
    let r = send_json("POST", &url, Some(&pat), &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["expires_in"], 14 * 86400);
    assert_eq!(v["refresh_token_expires_in"], 90 * 86400);
    let access = v["access_token"].as_str().unwrap();
    let rt = v["refresh_token"].as_str().unwrap();
    assert_eq!(
        get(&format!("{}/dataSources", s.base_url()), Some(access)).status,
        200
    );
    let c = s.credentials();
    assert_eq!(
        refresh(&s, &c.service_client_id, &c.service_client_secret, rt).status,
        200
    );
    // a second mint gives a different pair
    let v2 = send_json("POST", &url, Some(&pat), &body).json();
    assert_ne!(v2["access_token"], v["access_token"]);
    assert_ne!(v2["refresh_token"], v["refresh_token"]);

    // 401: missing, unknown, expired, revoked
    assert_webex_error(&send_json("POST", &url, None, &body), 401);
    assert_webex_error(&send_json("POST", &url, Some("nope"), &body), 401);
    let short = s.issue_personal_token(Duration::from_secs(10));
    s.expire_token(&short);
    assert_webex_error(&send_json("POST", &url, Some(&short), &body), 401);
    let rev = s.issue_personal_token(Duration::from_secs(1000));
    s.revoke_token(&rev);
    assert_webex_error(&send_json("POST", &url, Some(&rev), &body), 401);
    // 403: no scope
    let noscope = s.issue_personal_token_without_scope();
    assert_webex_error(&send_json("POST", &url, Some(&noscope), &body), 403);
    // 404: unknown app
    let r = send_json(
        "POST",
        &format!(
            "{}/applications/Y2lzY29zcGFyazovL3VzL0FQUExJQ0FUSU9OL25vcGU/token",
            s.base_url()
        ),
        Some(&pat),
        &body,
    );
    assert_webex_error(&r, 404);
    // 400: missing field, wrong secret, wrong client id
    let mut b = body.clone();
    b.as_object_mut().unwrap().remove("targetOrgId");
    assert_webex_error(&send_json("POST", &url, Some(&pat), &b), 400);
    let mut b = body.clone();
    b["clientSecret"] = json!("wrong");
    assert_webex_error(&send_json("POST", &url, Some(&pat), &b), 400);
    let mut b = body.clone();
    b["clientId"] = json!("Cwrong");
    assert_webex_error(&send_json("POST", &url, Some(&pat), &b), 400);
    assert_eq!(
        s.count("POST", &format!("/v1/applications/{}/token", c.app_id)),
        10
    );
}

#[test]
fn data_sources_auth() {
    let s = sim();
    let url = format!("{}/dataSources", s.base_url());
    let (access, rt) = s.issue_service_tokens(Duration::from_secs(60), Duration::from_secs(600));
    let id = s.add_data_source(NewDataSource::default());
    let r = get(&url, Some(&access));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["items"][0]["id"], id.as_str());
    assert_webex_error(&get(&url, None), 401);
    assert_webex_error(&get(&url, Some(&rt)), 401);
    let pat = s.issue_personal_token(Duration::from_secs(60));
    assert_webex_error(&get(&url, Some(&pat)), 403);
    s.advance_clock(Duration::from_secs(61));
    assert_webex_error(&get(&url, Some(&access)), 401);
    assert_eq!(s.count("GET", "/v1/dataSources"), 5);
}

fn decode_jws_payload(jws: &str) -> Value {
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3);
    let p = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .unwrap();
    serde_json::from_slice(&p).unwrap()
}

#[test]
fn data_source_register_get_update() {
    let s = sim();
    let base = s.base_url();
    let (access, _) = s.issue_service_tokens(Duration::from_secs(3600), Duration::from_secs(7200));
    let a = Some(access.as_str());
    let reg = json!({
        "schemaId": "5c5ea9bf-0c4a-4e3b-a7e8-1f0c2d9e8b71",
        "url": "https://provider.example.com/data",
        "audience": "my-provider",
        "subject": "feed-1",
        "nonce": "nonce-1",
        "tokenLifetimeMinutes": 60,
    });
    let r = send_json("POST", &format!("{base}/dataSources"), a, &reg);
    assert_eq!(r.status, 200, "{}", r.body);
    let ds = r.json();
    let id = ds["id"].as_str().unwrap().to_string();
    for k in [
        "id",
        "schemaId",
        "orgId",
        "applicationId",
        "url",
        "audience",
        "subject",
        "nonce",
        "tokenLifetimeMinutes",
        "status",
        "jwsToken",
        "tokenExpiryTime",
        "createdBy",
        "createdAt",
        "updatedAt",
    ] {
        assert!(!ds[k].is_null(), "missing {k}: {ds}");
    }
    assert_eq!(ds["status"], "active");
    assert_eq!(ds["orgId"], s.credentials().target_org_id.as_str());
    let claims = decode_jws_payload(ds["jwsToken"].as_str().unwrap());
    assert_eq!(claims["aud"], "my-provider");
    assert_eq!(claims["sub"], "feed-1");
    assert_eq!(claims["iss"], "https://idbroker.webex.com/idb");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    assert_eq!(
        claims["com.cisco.datasource.url"],
        "https://provider.example.com/data"
    );
    assert_eq!(
        claims["com.cisco.datasource.schema.uuid"],
        "5c5ea9bf-0c4a-4e3b-a7e8-1f0c2d9e8b71"
    );
    assert!(claims["com.cisco.org.uuid"].is_string() && claims["jti"].is_string());
    assert!(ds["tokenExpiryTime"].as_str().unwrap().ends_with('Z'));

    // same nonce again → 400; lifetime too long → 400; missing field → 400
    let mut again = reg.clone();
    again["url"] = json!("https://other.example.com");
    assert_webex_error(
        &send_json("POST", &format!("{base}/dataSources"), a, &again),
        400,
    );
    let mut long = reg.clone();
    long["nonce"] = json!("nonce-2");
    long["tokenLifetimeMinutes"] = json!(1441);
    assert_webex_error(
        &send_json("POST", &format!("{base}/dataSources"), a, &long),
        400,
    );
    let mut missing = reg.clone();
    missing["nonce"] = json!("nonce-3");
    missing.as_object_mut().unwrap().remove("audience");
    assert_webex_error(
        &send_json("POST", &format!("{base}/dataSources"), a, &missing),
        400,
    );

    // GET one
    let got = get(&format!("{base}/dataSources/{id}"), a);
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["jwsToken"], ds["jwsToken"]);
    assert_webex_error(&get(&format!("{base}/dataSources/nope"), a), 404);

    // PUT: extend with a fresh nonce after an hour passed
    s.advance_clock(Duration::from_secs(3000));
    let upd = json!({
        "schemaId": ds["schemaId"], "url": ds["url"], "audience": ds["audience"],
        "subject": ds["subject"], "status": "active", "nonce": "nonce-4", "tokenLifetimeMinutes": 1440,
    });
    let r = send_json("PUT", &format!("{base}/dataSources/{id}"), a, &upd);
    assert_eq!(r.status, 200, "{}", r.body);
    let u = r.json();
    assert_ne!(u["jwsToken"], ds["jwsToken"]);
    assert_eq!(u["tokenLifetimeMinutes"], 1440);
    assert_eq!(u["nonce"], "nonce-4");
    let c2 = decode_jws_payload(u["jwsToken"].as_str().unwrap());
    assert_eq!(
        c2["exp"].as_u64().unwrap() - c2["iat"].as_u64().unwrap(),
        86400
    );
    assert!(c2["iat"].as_u64().unwrap() >= claims["iat"].as_u64().unwrap() + 3000);
    assert_eq!(s.data_source(&id).unwrap()["jwsToken"], u["jwsToken"]);
    // reused nonce → 400, too long → 400, unknown → 404, disabled without message → 400
    assert_webex_error(
        &send_json("PUT", &format!("{base}/dataSources/{id}"), a, &upd),
        400,
    );
    let mut long = upd.clone();
    long["nonce"] = json!("nonce-5");
    long["tokenLifetimeMinutes"] = json!(5000);
    assert_webex_error(
        &send_json("PUT", &format!("{base}/dataSources/{id}"), a, &long),
        400,
    );
    assert_webex_error(
        &send_json("PUT", &format!("{base}/dataSources/nope"), a, &upd),
        404,
    );
    let dis = json!({"nonce": "nonce-6", "status": "disabled"});
    assert_webex_error(
        &send_json("PUT", &format!("{base}/dataSources/{id}"), a, &dis),
        400,
    );
    let dis = json!({"nonce": "nonce-7", "status": "disabled", "errorMessage": "provider down"});
    let r = send_json("PUT", &format!("{base}/dataSources/{id}"), a, &dis).json();
    assert_eq!(r["status"], "disabled");
    assert_eq!(r["errorMessage"], "provider down");
    // list shows both
    let list = get(&format!("{base}/dataSources"), a).json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // delete
    let r = request(
        "DELETE",
        &format!("{base}/dataSources/{id}"),
        &[("Authorization", &format!("Bearer {access}"))],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 204);
    assert!(s.data_source(&id).is_none());
}

#[test]
fn lib_data_sources_near_expiry_and_disabled() {
    let s = sim();
    let id = s.add_data_source(NewDataSource {
        expires_in: Duration::from_secs(600),
        status: "disabled".into(),
        error_message: Some("boom".into()),
        ..NewDataSource::default()
    });
    let v = s.data_source(&id).unwrap();
    assert_eq!(v["status"], "disabled");
    assert_eq!(v["errorMessage"], "boom");
    let c = decode_jws_payload(v["jwsToken"].as_str().unwrap());
    let now = s
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = c["exp"].as_u64().unwrap();
    assert!((now + 595..=now + 601).contains(&exp), "{now} {exp}");
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-extra".to_string();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

fn authorize(s: &Sim, extra: &str) -> Reply {
    let c = s.credentials();
    let url = format!(
        "{}/authorize?client_id={}&response_type=code&redirect_uri={}&scope={}&state=xyz{extra}",
        s.base_url(),
        c.integration_client_id,
        enc("http://localhost:3000/callback"),
        enc("spark:applications_token spark:kms"),
    );
    get(&url, None)
}

fn exchange(s: &Sim, code: &str, verifier: Option<&str>, redirect: &str) -> Reply {
    let c = s.credentials();
    let mut f = vec![
        ("grant_type", "authorization_code"),
        ("client_id", c.integration_client_id.as_str()),
        ("client_secret", c.integration_client_secret.as_str()),
        ("code", code),
        ("redirect_uri", redirect),
    ];
    if let Some(v) = verifier {
        f.push(("code_verifier", v));
    }
    post_form(&format!("{}/access_token", s.base_url()), &f)
}

#[test]
fn authorization_code_with_pkce() {
    let s = sim();
    let p = pkce();
    let r = authorize(
        &s,
        &format!("&code_challenge={}&code_challenge_method=S256", p.challenge),
    );
    assert_eq!(r.status, 302);
    let loc = r.header("location").unwrap();
    assert!(
        loc.starts_with("http://localhost:3000/callback?code="),
        "{loc}"
    );
    assert_eq!(query_param(loc, "state").as_deref(), Some("xyz"));
    let code = query_param(loc, "code").unwrap();
    // wrong verifier, missing verifier, wrong redirect
    let bad = exchange(
        &s,
        &code,
        Some("x".repeat(50).as_str()),
        "http://localhost:3000/callback",
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"], "invalid_grant");
    assert_eq!(
        exchange(&s, &code, None, "http://localhost:3000/callback").status,
        400
    );
    assert_eq!(
        exchange(
            &s,
            &code,
            Some(&p.verifier),
            "http://localhost:3001/callback"
        )
        .status,
        400
    );
    // good
    let ok = exchange(
        &s,
        &code,
        Some(&p.verifier),
        "http://localhost:3000/callback",
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let v = ok.json();
    assert_eq!(v["expires_in"], 14 * 86400);
    assert_eq!(v["refresh_token_expires_in"], 90 * 86400);
    let pat = v["access_token"].as_str().unwrap();
    assert_eq!(
        send_json("POST", &mint_url(&s), Some(pat), &mint_body(&s)).status,
        200
    );
    // the integration refresh token works
    let c = s.credentials();
    let rt = v["refresh_token"].as_str().unwrap();
    assert_eq!(
        refresh(
            &s,
            &c.integration_client_id,
            &c.integration_client_secret,
            rt
        )
        .status,
        200
    );
    // code is single-use
    assert_eq!(
        exchange(
            &s,
            &code,
            Some(&p.verifier),
            "http://localhost:3000/callback"
        )
        .status,
        400
    );
}

#[test]
fn authorization_code_without_pkce_expiry_denied_unknown_client() {
    let s = sim();
    let r = authorize(&s, "");
    let code = query_param(r.header("location").unwrap(), "code").unwrap();
    s.advance_clock(Duration::from_secs(301));
    assert_eq!(
        exchange(&s, &code, None, "http://localhost:3000/callback").status,
        400
    );
    let r = authorize(&s, "");
    let code = query_param(r.header("location").unwrap(), "code").unwrap();
    assert_eq!(
        exchange(&s, &code, None, "http://localhost:3000/callback").status,
        200
    );

    s.set_authorize_denied(true);
    let r = authorize(&s, "");
    assert_eq!(r.status, 302);
    let loc = r.header("location").unwrap();
    assert_eq!(query_param(loc, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(loc, "state").as_deref(), Some("xyz"));
    assert!(query_param(loc, "code").is_none());

    let r = get(
        &format!(
            "{}/authorize?client_id=Cnope&response_type=code&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&scope=x",
            s.base_url()
        ),
        None,
    );
    assert_eq!(r.status, 400);
}

#[test]
fn faults() {
    let s = sim();
    let c = s.credentials();
    let (_, rt) = s.issue_service_tokens(Duration::from_secs(60), Duration::from_secs(1000));
    s.push_fault(Fault::rate_limited("/v1/access_token", 7).with_times(2));
    for _ in 0..2 {
        let r = refresh(&s, &c.service_client_id, &c.service_client_secret, &rt);
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("7"));
        assert!(r.json()["trackingId"].is_string());
    }
    assert_eq!(
        refresh(&s, &c.service_client_id, &c.service_client_secret, &rt).status,
        200
    );

    // custom body and content type, method filter
    s.push_fault(Fault {
        method: Some("GET".into()),
        path: "/v1/access_token".into(),
        times: 1,
        kind: FaultKind::Status {
            status: 503,
            body: "<html>down</html>".into(),
            retry_after: None,
            content_type: Some("text/html".into()),
        },
    });
    assert_eq!(
        refresh(&s, &c.service_client_id, &c.service_client_secret, &rt).status,
        200
    );
    let r = get(&format!("{}/access_token", s.base_url()), None);
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "<html>down</html>");
    assert_eq!(r.header("content-type"), Some("text/html"));

    // delay
    s.push_fault(Fault::new(
        "/v1/access_token",
        FaultKind::Delay(Duration::from_millis(400)),
    ));
    let t = std::time::Instant::now();
    assert_eq!(
        refresh(&s, &c.service_client_id, &c.service_client_secret, &rt).status,
        200
    );
    assert!(t.elapsed() >= Duration::from_millis(400));

    // a delayed request does not block others
    s.push_fault(Fault::new(
        "/v1/dataSources",
        FaultKind::Delay(Duration::from_millis(1500)),
    ));
    let url = format!("{}/dataSources", s.base_url());
    let slow = std::thread::spawn(move || get(&url, None).status);
    std::thread::sleep(Duration::from_millis(100));
    let t = std::time::Instant::now();
    assert_eq!(
        refresh(&s, &c.service_client_id, &c.service_client_secret, &rt).status,
        200
    );
    assert!(t.elapsed() < Duration::from_millis(1000));
    assert_eq!(slow.join().unwrap(), 401);

    // truncated
    s.push_fault(Fault::new("/v1/access_token", FaultKind::Truncated));
    let r = refresh(&s, &c.service_client_id, &c.service_client_secret, &rt);
    assert_eq!(r.status, 200);
    assert!(serde_json::from_str::<Value>(&r.body).is_err());

    // close connection: not a valid HTTP response
    s.push_fault(Fault::new("/v1/access_token", FaultKind::CloseConnection));
    let e = request("POST", &format!("{}/access_token", s.base_url()), &[], None);
    assert!(e.is_err(), "{e:?}");
    assert_eq!(s.requests().last().unwrap().status, 0);

    // forever
    s.push_fault(Fault::status("/v1/dataSources", 500).forever());
    for _ in 0..3 {
        assert_eq!(
            get(&format!("{}/dataSources", s.base_url()), None).status,
            500
        );
    }
    s.clear_faults();
    assert_eq!(
        get(&format!("{}/dataSources", s.base_url()), None).status,
        401
    );
}

#[test]
fn advance_clock_expires_tokens() {
    let s = sim();
    let c = s.credentials();
    let (access, rt) = s.issue_service_tokens(Duration::from_secs(3600), Duration::from_secs(7200));
    let url = format!("{}/dataSources", s.base_url());
    assert_eq!(get(&url, Some(&access)).status, 200);
    s.advance_clock(Duration::from_secs(3601));
    assert_eq!(get(&url, Some(&access)).status, 401);
    assert!(!s.is_token_valid(&access));
    assert_eq!(
        refresh(&s, &c.service_client_id, &c.service_client_secret, &rt).status,
        200
    );
    s.advance_clock(Duration::from_secs(3600));
    assert_eq!(
        refresh(&s, &c.service_client_id, &c.service_client_secret, &rt).status,
        400
    );
    // expire_token on a fresh access token
    let (a2, _) = s.issue_service_tokens(Duration::from_secs(3600), Duration::from_secs(7200));
    s.expire_token(&a2);
    assert_eq!(get(&url, Some(&a2)).status, 401);
}

#[test]
fn misc_endpoints_and_unknown_paths() {
    let s = sim();
    let (access, _) = s.issue_service_tokens(Duration::from_secs(3600), Duration::from_secs(7200));
    assert_webex_error(
        &get(&format!("{}/nothing/here", s.base_url()), Some(&access)),
        404,
    );
    assert_webex_error(
        &get(&format!("{}/applications/x/token", s.base_url()), None),
        405,
    );
    let r = get(
        &format!("{}/authorizations/tokenExpiry", s.base_url()),
        Some(&access),
    );
    assert_eq!(r.status, 200);
    assert!(r.json()["exp"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(
        get(
            &format!("{}/dataSources/schemas", s.base_url()),
            Some(&access)
        )
        .status,
        200
    );
    assert_eq!(
        get(&format!("{}/people/me", s.base_url()), Some(&access)).status,
        200
    );
}

#[test]
fn recorded_requests_and_counts() {
    let s = sim();
    let pat = s.issue_personal_token(Duration::from_secs(3600));
    send_json("POST", &mint_url(&s), Some(&pat), &mint_body(&s));
    get(&format!("{}/dataSources?max=5", s.base_url()), None);
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].bearer(), Some(pat.as_str()));
    assert_eq!(reqs[0].header("Content-Type"), Some("application/json"));
    assert_eq!(
        reqs[0].json().unwrap()["clientId"],
        s.credentials().service_client_id.as_str()
    );
    assert!(reqs[0].form.is_none());
    assert_eq!(reqs[1].path, "/v1/dataSources");
    assert_eq!(reqs[1].query, "max=5");
    assert_eq!(reqs[1].query_value("max").as_deref(), Some("5"));
    assert_eq!(reqs[1].status, 401);
    assert_eq!(s.count("GET", "/v1/dataSources"), 1);
    assert_eq!(s.count("get", "/v1/dataSources"), 1);
    assert_eq!(s.count("GET", "/v1/dataSources/"), 0);
    s.clear_requests();
    assert!(s.requests().is_empty());
}

#[test]
fn drop_stops_the_server() {
    let s = sim();
    let addr = s
        .base_url()
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_string();
    assert!(std::net::TcpStream::connect(&addr).is_ok());
    drop(s);
    // tiny_http closes its listener on its own accept thread, shortly after.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(std::time::Instant::now() < deadline, "still listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn many_concurrent_requests() {
    let s = sim();
    let pat = s.issue_personal_token(Duration::from_secs(3600));
    let url = mint_url(&s);
    let body = mint_body(&s);
    let handles: Vec<_> = (0..32)
        .map(|_| {
            let (url, body, pat) = (url.clone(), body.clone(), pat.clone());
            std::thread::spawn(move || send_json("POST", &url, Some(&pat), &body).status)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert_eq!(
        s.count(
            "POST",
            &format!("/v1/applications/{}/token", s.credentials().app_id)
        ),
        32
    );
}

#[test]
fn ds_minute_compresses_data_source_lifetimes() {
    // A "minute" of 1 s: 60-minute tokens live 60 s, a 24 h one 1440 s.
    let s = Sim::start(SimOptions {
        ds_minute: Duration::from_secs(1),
        ..SimOptions::default()
    })
    .unwrap();
    let now = || {
        s.now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let id = s.add_data_source(NewDataSource {
        expires_in: Duration::from_secs(600),
        ..NewDataSource::default()
    });
    let v = s.data_source(&id).unwrap();
    let exp = decode_jws_payload(v["jwsToken"].as_str().unwrap())["exp"]
        .as_u64()
        .unwrap();
    assert!((now() + 9..=now() + 11).contains(&exp), "{} {exp}", now());
    let base = s.base_url();
    let (access, _) = s.issue_service_tokens(Duration::from_secs(3600), Duration::from_secs(7200));
    let upd = json!({
        "schemaId": v["schemaId"], "url": v["url"], "audience": v["audience"],
        "subject": v["subject"], "status": "active", "nonce": "nonce-ds-minute",
        "tokenLifetimeMinutes": 1440,
    });
    let r = send_json(
        "PUT",
        &format!("{base}/dataSources/{id}"),
        Some(&access),
        &upd,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c = decode_jws_payload(r.json()["jwsToken"].as_str().unwrap());
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        1440
    );
}
