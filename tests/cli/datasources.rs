//! `datasources list|show|extend|register` against a mock Webex: request
//! bodies, skip/renew decisions, partial failures and their exit codes, the
//! one-refresh rule, JSON shapes, and no token (service-app or data-source
//! JWS) in any output.

use crate::common::*;
use base64::Engine;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

/// A JWS-shaped token (header.payload.signature) expiring `exp_in` seconds
/// from now; `tag` makes it unique. The signature part is marked SECRET so
/// the scan also catches a token printed in pieces.
fn jws(tag: &str, exp_in: i64) -> String {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let exp = jiff::Timestamp::now().as_second() + exp_in;
    format!(
        "{}.{}.SECRET-sig-{tag}",
        b64(json!({"alg": "RS256", "kid": "k1"})),
        b64(json!({"aud": "aud", "sub": "sub", "exp": exp, "jti": tag,
                   "iss": "https://idbroker.webex.com/idb"}))
    )
}

fn fresh_env(t: &TestEnv) {
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
}

async fn mock_list(t: &TestEnv, bearer: &str, items: Vec<Value>) {
    Mock::given(method("GET"))
        .and(path("/v1/dataSources"))
        .and(header("authorization", format!("Bearer {bearer}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": items})))
        .mount(&t.server)
        .await;
}

async fn mock_get(t: &TestEnv, encoded_id: &str, resp: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(format!("/v1/dataSources/{encoded_id}").as_str()))
        .respond_with(resp)
        .mount(&t.server)
        .await;
}

/// Answers a PUT the way Webex does: the object back, with a new token and
/// `tokenExpiryTime` = now + the requested lifetime.
struct Renew {
    id: String,
    new_token: String,
}

impl Respond for Renew {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut body: Value = serde_json::from_slice(&req.body).unwrap();
        let minutes = body["tokenLifetimeMinutes"].as_i64().unwrap();
        body["id"] = json!(self.id);
        body["jwsToken"] = json!(self.new_token);
        body["tokenExpiryTime"] = json!(in_secs(minutes * 60));
        ResponseTemplate::new(200).set_body_json(body)
    }
}

async fn mock_put(t: &TestEnv, id: &str, resp: impl Respond + 'static) {
    Mock::given(method("PUT"))
        .and(path(format!("/v1/dataSources/{id}").as_str()))
        .respond_with(resp)
        .mount(&t.server)
        .await;
}

async fn put_bodies(t: &TestEnv) -> Vec<(String, Value)> {
    t.requests()
        .await
        .iter()
        .filter(|r| r.method.as_str() == "PUT")
        .map(|r| {
            (
                r.url.path().to_string(),
                serde_json::from_slice(&r.body).unwrap(),
            )
        })
        .collect()
}

fn is_uuid_v4(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4)
}

fn parse_json(out: &std::process::Output) -> Value {
    let s = stdout(out);
    assert_eq!(s.lines().count(), 1, "exactly one JSON line: {s}");
    let v: Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["schemaVersion"], 1);
    v
}

#[tokio::test]
async fn datasources_list_shows_expiry_and_disabled_sources_without_tokens() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let a = t.secret(&jws("list-a", 5 * 3600));
    let b = t.secret(&jws("list-b", -60));
    let mut first = source("ds-a", &a);
    first["tokenExpiryTime"] = json!("2031-05-06T07:08:09.000Z");
    let mut second = source("ds-b", &b);
    second["status"] = json!("disabled");
    second["errorMessage"] = json!("provider unreachable since Tuesday");
    mock_list(&t, OLD_ACCESS, vec![first, second]).await;

    let out = t.run(&["datasources", "list"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.starts_with("2 data sources, 1 disabled"), "{s}");
    assert!(s.contains("ds-a") && s.contains("ds-b"), "{s}");
    assert!(s.contains("expires 2031-05-06T07:08:09Z"), "{s}");
    assert!(
        s.contains("DISABLED: provider unreachable since Tuesday"),
        "{s}"
    );
    assert!(s.contains("expired"), "{s}");
    assert!(s.contains("schema-ds-a") && s.contains("https://provider.example/ds-b"));
    assert!(s.contains("1440 min") && s.contains("sha256:"), "{s}");
    assert!(
        !s.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
    assert_eq!(t.requests().await.len(), 1);

    let out = t.run(&["--json", "datasources", "list"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = parse_json(&out);
    assert_eq!(v["command"], "datasources list");
    assert_eq!(v["count"], 2);
    assert_eq!(v["disabled"], 1);
    let ds = &v["dataSources"];
    assert_eq!(ds[0]["token"]["expirySource"], "tokenExpiryTime");
    assert_eq!(ds[0]["token"]["expiresAt"], "2031-05-06T07:08:09Z");
    assert_eq!(ds[1]["token"]["expirySource"], "jws");
    assert_eq!(ds[1]["token"]["expired"], true);
    assert_eq!(ds[1]["errorMessage"], "provider unreachable since Tuesday");
    assert!(
        ds[1]["token"]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(ds[0].get("jwsToken").is_none());
}

#[tokio::test]
async fn datasources_list_empty_and_403_scope_hint() {
    let t = TestEnv::new().await;
    fresh_env(&t);
    mock_list(&t, OLD_ACCESS, vec![]).await;
    let out = t.run(&["datasources", "list"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("no data sources"), "{}", stdout(&out));

    let t = TestEnv::new().await;
    fresh_env(&t);
    Mock::given(method("GET"))
        .and(path("/v1/dataSources"))
        .respond_with(ResponseTemplate::new(403).set_body_json(webex_error("Forbidden")))
        .mount(&t.server)
        .await;
    let out = t.run(&["--json", "datasources", "list"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("spark-admin:datasource_read"),
        "{}",
        stderr(&out)
    );
    let v = parse_json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["exitCode"], 3);
}

#[tokio::test]
async fn datasources_show_encodes_the_id() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let tok = t.secret(&jws("show", 3600));
    let id = "Y2lz/Y29+ZHM=";
    mock_get(
        &t,
        "Y2lz%2FY29%2BZHM%3D",
        ResponseTemplate::new(200).set_body_json(source(id, &tok)),
    )
    .await;
    let out = t.run(&["datasources", "show", id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.starts_with(id), "{s}");
    assert!(
        s.contains("old-nonce-") && s.contains("machine-account"),
        "{s}"
    );
    // `show` has longer labels than `list`; the values stay in one column.
    assert!(s.contains("\n  expiry from  jws\n"), "{s}");
    assert!(s.contains("\n  status       active\n"), "{s}");
    assert!(s.contains("\n  nonce        old-nonce-"), "{s}");

    let out = t.run(&["--json", "datasources", "show", id]);
    let v = parse_json(&out);
    assert_eq!(v["dataSource"]["id"], id);
    assert_eq!(v["dataSource"]["token"]["present"], true);
    let left = v["dataSource"]["token"]["secondsLeft"].as_i64().unwrap();
    assert!((3500..=3600).contains(&left), "{left}");

    mock_get(
        &t,
        "missing",
        ResponseTemplate::new(404).set_body_json(webex_error("Data source not found")),
    )
    .await;
    let out = t.run(&["datasources", "show", "missing"]);
    assert_eq!(code(&out), 3);
    let e = stderr(&out);
    assert!(
        e.contains("404") && e.contains("ROUTER_TEST_TRACKING_1"),
        "{e}"
    );
    assert!(e.contains("datasources list"), "{e}");
}

#[tokio::test]
async fn datasources_extend_renews_expiring_skips_fresh_with_new_nonce() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let fresh = t.secret(&jws("fresh", 20 * 3600));
    let soon = t.secret(&jws("soon", 3600));
    let gone = t.secret(&jws("gone", -3600));
    let new_soon = t.secret(&jws("new-soon", 86_400));
    let new_gone = t.secret(&jws("new-gone", 86_400));
    let mut disabled = source("ds-gone", &gone);
    disabled["status"] = json!("disabled");
    disabled["errorMessage"] = json!("maintenance");
    mock_list(
        &t,
        OLD_ACCESS,
        vec![
            source("ds-fresh", &fresh),
            source("ds-soon", &soon),
            disabled.clone(),
        ],
    )
    .await;
    mock_put(
        &t,
        "ds-soon",
        Renew {
            id: "ds-soon".into(),
            new_token: new_soon.clone(),
        },
    )
    .await;
    mock_put(
        &t,
        "ds-gone",
        Renew {
            id: "ds-gone".into(),
            new_token: new_gone.clone(),
        },
    )
    .await;

    let out = t.run(&["datasources", "extend", "--all"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("skipped     ds-fresh"), "{s}");
    assert!(s.contains("renewed     ds-soon  expires"), "{s}");
    assert!(
        s.contains("(in 23h 59m)") || s.contains("(in 1d 0h)"),
        "{s}"
    );
    assert!(s.contains("2 renewed, 1 skipped"), "{s}");

    let puts = put_bodies(&t).await;
    assert_eq!(puts.len(), 2, "{puts:?}");
    // The two PUTs run side by side: each is found by its path.
    let put_to = |id: &str| {
        puts.iter()
            .find(|(p, _)| *p == format!("/v1/dataSources/{id}"))
            .unwrap_or_else(|| panic!("no PUT for {id}: {puts:?}"))
    };
    let (_, body) = put_to("ds-soon");
    let nonce = body["nonce"].as_str().unwrap();
    assert!(is_uuid_v4(nonce), "{nonce}");
    assert_ne!(nonce, "old-nonce-ds-soon");
    assert_eq!(
        *body,
        json!({
            "schemaId": "schema-ds-soon",
            "url": "https://provider.example/ds-soon",
            "audience": "provider-app",
            "subject": "subject-ds-soon",
            "status": "active",
            "nonce": nonce,
            "tokenLifetimeMinutes": 1440,
        })
    );
    // A disabled source stays disabled: its errorMessage goes back with it.
    let (_, body) = put_to("ds-gone");
    assert_eq!(body["status"], "disabled");
    assert_eq!(body["errorMessage"], "maintenance");
    assert_ne!(body["nonce"], put_to("ds-soon").1["nonce"]);

    // One audit line per renewal: the nonce, a fingerprint, no token.
    let audit = std::fs::read_to_string(t.path(".env.audit.jsonl")).unwrap();
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v["operation"] == "datasource_extend")
        .collect();
    assert_eq!(lines.len(), 2);
    let soon = lines
        .iter()
        .find(|l| l["dataSourceId"] == "ds-soon")
        .expect("an audit line for ds-soon");
    assert_eq!(soon["outcome"], "ok");
    assert_eq!(soon["nonce"], nonce);
    assert!(
        soon["jwsTokenFingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(soon["tokenExpiresAt"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn datasources_extend_json_and_named_ids_and_lifetime() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let a = t.secret(&jws("json-a", 3 * 3600));
    let b = t.secret(&jws("json-b", 3 * 3600));
    let new_a = t.secret(&jws("json-new-a", 3600));
    mock_get(
        &t,
        "ds-a",
        ResponseTemplate::new(200).set_body_json(source("ds-a", &a)),
    )
    .await;
    mock_get(
        &t,
        "ds-b",
        ResponseTemplate::new(200).set_body_json(source("ds-b", &b)),
    )
    .await;
    mock_put(
        &t,
        "ds-a",
        Renew {
            id: "ds-a".into(),
            new_token: new_a,
        },
    )
    .await;
    // --min-valid 4h: both expire within it; only ds-a was named.
    let out = t.run(&[
        "--json",
        "datasources",
        "extend",
        "ds-a",
        "--lifetime",
        "60",
        "--min-valid",
        "4h",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = parse_json(&out);
    assert_eq!(v["command"], "datasources extend");
    assert_eq!(v["ok"], true);
    assert_eq!(v["lifetimeMinutes"], 60);
    assert_eq!(v["minValidSeconds"], 14_400);
    assert_eq!(v["serviceAppTokenRefreshed"], false);
    assert_eq!(v["summary"]["extended"], 1);
    let r = &v["results"][0];
    assert_eq!(r["id"], "ds-a");
    assert_eq!(r["action"], "extended");
    assert!(is_uuid_v4(r["nonce"].as_str().unwrap()));
    let left = r["after"]["secondsLeft"].as_i64().unwrap();
    assert!((3500..=3600).contains(&left), "{left}");
    assert!(r["before"]["expiresAt"].as_str().unwrap().ends_with('Z'));
    let puts = put_bodies(&t).await;
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].1["tokenLifetimeMinutes"], 60);
    assert_eq!(t.count("GET", "/v1/dataSources/ds-b").await, 0);
    assert_eq!(t.count("GET", "/v1/dataSources").await, 0);
}

#[tokio::test]
async fn datasources_extend_warns_of_lifetime_within_min_valid_only_with_all() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let a = t.secret(&jws("now-a", 20 * 3600));
    let new_a = t.secret(&jws("now-new-a", 86_400));
    mock_get(
        &t,
        "ds-a",
        ResponseTemplate::new(200).set_body_json(source("ds-a", &a)),
    )
    .await;
    mock_list(&t, OLD_ACCESS, vec![source("ds-a", &a)]).await;
    mock_put(
        &t,
        "ds-a",
        Renew {
            id: "ds-a".into(),
            new_token: new_a,
        },
    )
    .await;
    // The documented "renew now": a deliberate one-off, no warning.
    let out = t.run(&[
        "datasources",
        "extend",
        "ds-a",
        "--min-valid",
        "1d",
        "--lifetime",
        "1440",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("renewed"), "{}", stdout(&out));
    assert!(
        !stderr(&out).contains("renews every token"),
        "{}",
        stderr(&out)
    );
    // The same flags on a timer job (`--all`) renew everything every run.
    let out = t.run(&[
        "datasources",
        "extend",
        "--all",
        "--dry-run",
        "--min-valid",
        "1d",
        "--lifetime",
        "1440",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--lifetime 1440 min is not longer than --min-valid 1d 0h"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn datasources_extend_bad_flags_are_usage_errors_before_any_request() {
    let t = TestEnv::new().await;
    fresh_env(&t);
    for args in [
        vec!["datasources", "extend", "--all", "--lifetime", "1441"],
        vec!["datasources", "extend", "ds-a", "--lifetime", "0"],
        vec!["datasources", "extend", "--all", "--lifetime", "lots"],
        vec!["datasources", "extend"],
        vec!["datasources", "extend", "--all", "ds-a"],
        vec!["datasources", "extend", "--all", "--min-valid", "soon"],
        vec!["datasources", "register", "--schema-id", "s", "--url", "u"],
        vec![
            "datasources",
            "register",
            "--schema-id",
            "s",
            "--url",
            "u",
            "--audience",
            "a",
            "--subject",
            "b",
            "--lifetime",
            "2000",
        ],
    ] {
        let out = t.run(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    let out = t.run(&["datasources", "extend", "--all", "--lifetime", "1441"]);
    assert!(stderr(&out).contains("1 to 1440"), "{}", stderr(&out));
    assert_eq!(t.requests().await.len(), 0);
}

#[tokio::test]
async fn datasources_extend_failures_leave_the_others_renewed() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let mut items = Vec::new();
    for id in ["ds-404", "ds-403", "ds-500", "ds-ok"] {
        let tok = t.secret(&jws(id, 600));
        items.push(source(id, &tok));
    }
    mock_list(&t, OLD_ACCESS, items).await;
    mock_put(
        &t,
        "ds-404",
        ResponseTemplate::new(404).set_body_json(webex_error("Data source not found")),
    )
    .await;
    mock_put(
        &t,
        "ds-403",
        ResponseTemplate::new(403).set_body_json(webex_error("Not allowed")),
    )
    .await;
    mock_put(
        &t,
        "ds-500",
        ResponseTemplate::new(500).set_body_json(webex_error("Internal error")),
    )
    .await;
    let new_ok = t.secret(&jws("new-ok", 86_400));
    mock_put(
        &t,
        "ds-ok",
        Renew {
            id: "ds-ok".into(),
            new_token: new_ok,
        },
    )
    .await;

    let out = t.run(&["--json", "datasources", "extend", "--all"]);
    // 404/403 need a person (3) and outrank the transient 500 (1).
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let v = parse_json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["exitCode"], 3);
    assert_eq!(v["summary"]["extended"], 1);
    assert_eq!(v["summary"]["failed"], 3);
    let by_id = |id: &str| {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("ds-ok")["action"], "extended");
    assert_eq!(by_id("ds-404")["error"]["httpStatus"], 404);
    assert_eq!(by_id("ds-404")["error"]["exitCode"], 3);
    assert_eq!(by_id("ds-403")["error"]["httpStatus"], 403);
    assert_eq!(by_id("ds-500")["error"]["exitCode"], 1);
    assert_eq!(by_id("ds-500")["error"]["kind"], "transient");
    assert_eq!(
        by_id("ds-500")["error"]["trackingId"],
        "ROUTER_TEST_TRACKING_1"
    );
    // The 500 was retried (4 tries); the 4xx were not.
    assert_eq!(t.count("PUT", "/v1/dataSources/ds-500").await, 4);
    assert_eq!(t.count("PUT", "/v1/dataSources/ds-404").await, 1);
    assert_eq!(t.count("PUT", "/v1/dataSources/ds-ok").await, 1);
    let e = stderr(&out);
    assert!(
        e.contains("3 of 4 data sources could not be renewed"),
        "{e}"
    );
    assert!(
        e.contains("ds-404: PUT /dataSources/ds-404: HTTP 404"),
        "{e}"
    );
    assert!(e.contains("hint:") && e.contains("datasource_write"), "{e}");
    let audit = std::fs::read_to_string(t.path(".env.audit.jsonl")).unwrap();
    assert_eq!(
        audit.matches("\"outcome\":\"failed\"").count(),
        3,
        "{audit}"
    );

    // Only transient failures: exit 1, and -q keeps stdout empty but still
    // says on stderr what broke.
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let a = t.secret(&jws("t-a", 60));
    mock_list(&t, OLD_ACCESS, vec![source("ds-a", &a)]).await;
    mock_put(&t, "ds-a", ResponseTemplate::new(503)).await;
    let out = t.run(&["-q", "datasources", "extend", "--all"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("ds-a: PUT /dataSources/ds-a: HTTP 503"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn datasources_extend_unknown_id_fails_alone() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let a = t.secret(&jws("known", 60));
    let new_a = t.secret(&jws("known-new", 86_400));
    mock_get(
        &t,
        "nope",
        ResponseTemplate::new(404).set_body_json(webex_error("not found")),
    )
    .await;
    mock_get(
        &t,
        "ds-a",
        ResponseTemplate::new(200).set_body_json(source("ds-a", &a)),
    )
    .await;
    mock_put(
        &t,
        "ds-a",
        Renew {
            id: "ds-a".into(),
            new_token: new_a,
        },
    )
    .await;
    let out = t.run(&["datasources", "extend", "nope", "ds-a"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let s = stdout(&out);
    assert!(
        s.contains("failed      nope") && s.contains("renewed     ds-a"),
        "{s}"
    );
    assert_eq!(t.count("PUT", "/v1/dataSources/ds-a").await, 1);
    assert_eq!(t.count("PUT", "/v1/dataSources/nope").await, 0);
}

#[tokio::test]
async fn datasources_extend_dry_run_sends_no_put() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let a = t.secret(&jws("dry-a", 60));
    let b = t.secret(&jws("dry-b", 20 * 3600));
    mock_list(&t, OLD_ACCESS, vec![source("ds-a", &a), source("ds-b", &b)]).await;
    let out = t.run(&["datasources", "extend", "--all", "--dry-run"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("would renew ds-a"), "{s}");
    assert!(s.contains("skipped     ds-b"), "{s}");
    assert!(s.contains("dry run: 1 would be renewed, 1 skipped"), "{s}");
    let out = t.run(&["--json", "datasources", "extend", "--all", "--dry-run"]);
    let v = parse_json(&out);
    assert_eq!(v["dryRun"], true);
    assert_eq!(v["results"][0]["action"], "would_extend");
    assert_eq!(v["summary"]["wouldExtend"], 1);
    assert_eq!(t.count("PUT", "/v1/dataSources/ds-a").await, 0);
    assert!(put_bodies(&t).await.is_empty());
    assert!(!t.path(".env.audit.jsonl").exists());
}

#[tokio::test]
async fn datasources_extend_refreshes_an_expired_service_token_first() {
    let mut t = TestEnv::new().await;
    let new_access = t.secret("SECRET-ds-new-access");
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(-60)),
        Some(OLD_REFRESH),
    ));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new_access, 14 * 86_400, None),
    )
    .await;
    let a = t.secret(&jws("after-refresh", 60));
    let new_a = t.secret(&jws("after-refresh-new", 86_400));
    // Only the new service-app token is accepted.
    mock_list(&t, &new_access, vec![source("ds-a", &a)]).await;
    Mock::given(method("PUT"))
        .and(path("/v1/dataSources/ds-a"))
        .and(header(
            "authorization",
            format!("Bearer {new_access}").as_str(),
        ))
        .respond_with(Renew {
            id: "ds-a".into(),
            new_token: new_a,
        })
        .mount(&t.server)
        .await;

    let out = t.run(&["datasources", "extend", "--all"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("the service-app access token was refreshed first"),
        "{}",
        stdout(&out)
    );
    let order: Vec<String> = t
        .requests()
        .await
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert_eq!(
        order,
        [
            "POST /v1/access_token",
            "GET /v1/dataSources",
            "PUT /v1/dataSources/ds-a"
        ]
    );
    assert_eq!(t.env_values()["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new_access);
}

#[tokio::test]
async fn datasources_401_checks_and_refreshes_once_then_gives_up_with_exit_4() {
    // The stored expiry says fresh, but Webex rejects the token (revoked):
    // one check-and-refresh, then the call goes through.
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let new_access = t.secret("SECRET-ds-recovered-access");
    t.mock_validate(OLD_ACCESS, 401).await;
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new_access, 14 * 86_400, None),
    )
    .await;
    mock_list(&t, &new_access, vec![]).await;
    let out = t.run(&["datasources", "list"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.count("POST", "/v1/access_token").await, 1);
    // list with the old token (401), list with the new one: the 401 already
    // said the token is rejected, so it is refreshed without a second
    // validation GET (this was 3 before that fix).
    assert_eq!(t.count("GET", "/v1/dataSources").await, 2);

    // Still 401 with the brand-new token: exit 4, no second refresh.
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let new_access = t.secret("SECRET-ds-still-rejected");
    t.mock_validate(OLD_ACCESS, 401).await;
    t.mock_validate(&new_access, 401).await;
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new_access, 14 * 86_400, None),
    )
    .await;
    let out = t.run(&["--json", "datasources", "extend", "--all"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert_eq!(t.count("POST", "/v1/access_token").await, 1);
    let e = stderr(&out);
    assert!(e.contains("rejected the service-app access token"), "{e}");
    assert!(e.contains("refreshed in this run"), "{e}");
    let v = parse_json(&out);
    assert_eq!(v["error"]["kind"], "reauthorization_required");
}

#[tokio::test]
async fn datasources_register_posts_a_generated_nonce() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let tok = t.secret(&jws("registered", 1440 * 60));
    Mock::given(method("POST"))
        .and(path("/v1/dataSources"))
        .and(header(
            "authorization",
            format!("Bearer {OLD_ACCESS}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(source("ds-new", &tok)))
        .mount(&t.server)
        .await;
    let args = [
        "datasources",
        "register",
        "--schema-id",
        "schema-1",
        "--url",
        "https://provider.example/in",
        "--audience",
        "provider-app",
        "--subject",
        "sub-1",
        "--lifetime",
        "720",
    ];
    let out = t.run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("ok: registered data source ds-new; token expires"),
        "{}",
        stdout(&out)
    );
    let req = &t.requests().await[0];
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    let nonce = body["nonce"].as_str().unwrap();
    assert!(is_uuid_v4(nonce), "{nonce}");
    assert_eq!(
        body,
        json!({
            "schemaId": "schema-1",
            "url": "https://provider.example/in",
            "audience": "provider-app",
            "subject": "sub-1",
            "nonce": nonce,
            "tokenLifetimeMinutes": 720,
        })
    );
    let mut json_args = vec!["--json"];
    json_args.extend(args);
    let out = t.run(&json_args);
    let v = parse_json(&out);
    assert_eq!(v["command"], "datasources register");
    assert_eq!(v["dataSource"]["id"], "ds-new");
    let audit = std::fs::read_to_string(t.path(".env.audit.jsonl")).unwrap();
    assert_eq!(audit.matches("datasource_register").count(), 2);
}

#[tokio::test]
async fn datasources_register_is_not_retried() {
    let t = TestEnv::new().await;
    fresh_env(&t);
    Mock::given(method("POST"))
        .and(path("/v1/dataSources"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&t.server)
        .await;
    let out = t.run(&[
        "datasources",
        "register",
        "--schema-id",
        "s",
        "--url",
        "https://x",
        "--audience",
        "a",
        "--subject",
        "b",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(t.count("POST", "/v1/dataSources").await, 1);
    assert!(
        stderr(&out).contains("may have gone through"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn datasources_extend_stops_when_the_service_token_is_rejected() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let new_access = t.secret("SECRET-ds-rejected-midway");
    t.mock_validate(OLD_ACCESS, 401).await;
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new_access, 14 * 86_400, None),
    )
    .await;
    mock_get(
        &t,
        "ds-a",
        ResponseTemplate::new(401).set_body_json(webex_error("invalid token")),
    )
    .await;
    let out = t.run(&["--json", "datasources", "extend", "ds-a", "ds-b"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let v = parse_json(&out);
    assert_eq!(v["results"][0]["action"], "failed");
    assert_eq!(v["results"][0]["error"]["exitCode"], 4);
    assert_eq!(v["results"][1]["id"], "ds-b");
    assert_eq!(v["results"][1]["action"], "not_attempted");
    assert_eq!(v["summary"]["notAttempted"], 1);
    assert_eq!(t.count("POST", "/v1/access_token").await, 1);
    assert_eq!(t.count("GET", "/v1/dataSources/ds-a").await, 2);
    assert_eq!(t.count("GET", "/v1/dataSources/ds-b").await, 0);
    assert!(put_bodies(&t).await.is_empty());
}

// ------------------------------------------------------------------------
// One refresh without re-validation, paging, concurrency, JSON logs and
// control characters from the server.

#[tokio::test]
async fn datasources_extend_with_a_revoked_token_refreshes_without_a_second_validation() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let new_access = t.secret("SECRET-ds-revoked-then-new");
    t.mock_validate(OLD_ACCESS, 401).await;
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new_access, 14 * 86_400, None),
    )
    .await;
    let a = t.secret(&jws("revoked-a", 60));
    let new_a = t.secret(&jws("revoked-a-new", 86_400));
    mock_list(&t, &new_access, vec![source("ds-a", &a)]).await;
    mock_put(
        &t,
        "ds-a",
        Renew {
            id: "ds-a".into(),
            new_token: new_a,
        },
    )
    .await;
    let out = t.run(&["datasources", "extend", "--all"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let order: Vec<String> = t
        .requests()
        .await
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    // The list's 401, one refresh, the list again, the renewal.
    assert_eq!(
        order,
        [
            "GET /v1/dataSources",
            "POST /v1/access_token",
            "GET /v1/dataSources",
            "PUT /v1/dataSources/ds-a"
        ]
    );
    assert!(stdout(&out).starts_with("the service-app access token was refreshed first"));
}

#[tokio::test]
async fn datasources_list_refuses_a_next_link_to_another_origin_and_a_looping_one() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let elsewhere = wiremock::MockServer::start().await;
    let a = t.secret(&jws("paged-a", 86_400));
    Mock::given(method("GET"))
        .and(path("/v1/dataSources"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"items": [source("ds-a", &a)]}))
                .insert_header(
                    "link",
                    format!(
                        "<{}/v1/dataSources?cursor=x>; rel=\"next\"",
                        elsewhere.uri()
                    )
                    .as_str(),
                ),
        )
        .mount(&t.server)
        .await;
    let out = t.run(&["datasources", "list"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("not followed"), "{e}");
    assert!(e.contains(&elsewhere.uri()), "{e}");
    assert_eq!(stdout(&out), "");
    assert!(elsewhere.received_requests().await.unwrap().is_empty());

    // A next link that leads back to a page already read.
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let a = t.secret(&jws("loop-a", 86_400));
    Mock::given(method("GET"))
        .and(path("/v1/dataSources"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"items": [source("ds-a", &a)]}))
                .insert_header(
                    "link",
                    format!("<{}/dataSources?cursor=same>; rel=\"next\"", t.base()).as_str(),
                ),
        )
        .mount(&t.server)
        .await;
    let out = t.run(&["datasources", "list"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("repeats"), "{}", stderr(&out));
    assert_eq!(t.count("GET", "/v1/dataSources").await, 2);
}

#[tokio::test]
async fn datasources_extend_partial_failure_under_json_logs_is_all_json_on_stderr() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let a = t.secret(&jws("jl-a", 60));
    let b = t.secret(&jws("jl-b", 60));
    mock_list(&t, OLD_ACCESS, vec![source("ds-a", &a), source("ds-b", &b)]).await;
    mock_put(
        &t,
        "ds-a",
        ResponseTemplate::new(404).set_body_json(webex_error("Data source not found")),
    )
    .await;
    let new_b = t.secret(&jws("jl-b-new", 86_400));
    mock_put(
        &t,
        "ds-b",
        Renew {
            id: "ds-b".into(),
            new_token: new_b,
        },
    )
    .await;
    let out = t.run(&["--log-format", "json", "datasources", "extend", "--all"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let e = stderr(&out);
    let lines: Vec<Value> = e
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l:?}\n{e}")))
        .collect();
    let summary = lines
        .iter()
        .find(|v| v["message"] == "1 of 2 data sources could not be renewed")
        .unwrap_or_else(|| panic!("{e}"));
    assert_eq!(summary["level"], "ERROR");
    assert_eq!(summary["exitCode"], 3);
    assert_eq!(summary["failures"][0]["id"], "ds-a");
    assert_eq!(summary["failures"][0]["exitCode"], 3);
    assert!(!summary["hints"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn datasources_output_drops_control_characters_from_server_fields() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let a = t.secret(&jws("ctl-a", 86_400));
    let mut evil = source("ds-\u{1b}[2Jevil\nFORGED ok: line", &a);
    evil["status"] = json!("disabled");
    evil["errorMessage"] = json!("down\u{1b}]0;title\u{7}\r\nFORGED error");
    evil["url"] = json!("https://x.example/\u{1b}[31mred\nFORGED url");
    mock_list(&t, OLD_ACCESS, vec![evil]).await;
    let out = t.run(&["datasources", "list"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let o = stdout(&out);
    assert!(
        !o.contains('\u{1b}') && !o.contains('\u{7}') && !o.contains('\r'),
        "{o:?}"
    );
    assert!(!o.lines().any(|l| l.starts_with("FORGED")), "{o}");
    assert!(o.contains("ds-[2JevilFORGED ok: line"), "{o}");
    assert!(o.contains("DISABLED: down]0;titleFORGED error"), "{o}");
    // JSON keeps the values as they are (escaped by the encoder).
    let out = t.run(&["--json", "datasources", "list"]);
    let v = parse_json(&out);
    assert_eq!(
        v["dataSources"][0]["id"],
        "ds-\u{1b}[2Jevil\nFORGED ok: line"
    );
    // A failing renewal of that source: its id appears in the error text,
    // on stdout and stderr, clean there too.
    Mock::given(method("PUT"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(webex_error("Data source not found")),
        )
        .mount(&t.server)
        .await;
    let out = t.run(&["datasources", "extend", "--all", "--min-valid", "2d"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(put_bodies(&t).await.len(), 1);
    for text in [stdout(&out), stderr(&out)] {
        assert!(text.contains("ds-[2JevilFORGED ok: line"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(!text.lines().any(|l| l.starts_with("FORGED")), "{text}");
    }
}

// ---- against webex-sim: paging and the concurrency cap

fn sim_env(opts: webex_sim::SimOptions) -> (webex_sim::Sim, tempfile::TempDir) {
    let sim = webex_sim::Sim::start(opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    sim.write_demo_files(dir.path()).unwrap();
    (sim, dir)
}

fn sim_run(dir: &tempfile::TempDir, args: &[&str]) -> std::process::Output {
    scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), dir.path())
        .args(args)
        .output()
        .unwrap()
}

fn add_sources(sim: &webex_sim::Sim, n: usize, expires_in: std::time::Duration) {
    for i in 0..n {
        sim.add_data_source(webex_sim::NewDataSource {
            subject: format!("paged-{i}"),
            expires_in,
            ..webex_sim::NewDataSource::default()
        });
    }
}

#[test]
fn datasources_list_and_extend_follow_pages_against_the_simulator() {
    use std::time::Duration;
    let (sim, dir) = sim_env(webex_sim::SimOptions::default());
    sim.set_page_size(40);
    // 2 demo sources (one due within 6 h) + 120 fresh + 30 due.
    add_sources(&sim, 120, Duration::from_secs(86_400));
    add_sources(&sim, 30, Duration::from_secs(3600));
    let out = sim_run(&dir, &["--json", "datasources", "list"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["count"], 152);
    let ids: std::collections::HashSet<&str> = v["dataSources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 152, "every source once");
    // ceil(152 / 40) pages.
    assert_eq!(sim.count("GET", "/v1/dataSources"), 4);

    sim.clear_requests();
    let out = sim_run(&dir, &["--json", "datasources", "extend", "--all"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["summary"]["extended"], 31, "{}", v["summary"]);
    assert_eq!(v["summary"]["skipped"], 121, "{}", v["summary"]);
    assert_eq!(sim.count("GET", "/v1/dataSources"), 4);
    assert_eq!(
        sim.requests().iter().filter(|r| r.method == "PUT").count(),
        31
    );
    // Results keep the list's order.
    let listed: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 152);
}

#[test]
fn datasources_extend_renews_in_parallel_within_the_concurrency_cap() {
    use std::time::Duration;
    let (sim, dir) = sim_env(webex_sim::SimOptions::default());
    add_sources(&sim, 20, Duration::from_secs(600));
    // Get the service-app token first, so only data-source calls follow.
    let out = sim_run(&dir, &["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    sim.set_latency(Duration::from_millis(60));
    sim.reset_max_in_flight();
    let started = std::time::Instant::now();
    let out = sim_run(
        &dir,
        &[
            "--json",
            "datasources",
            "extend",
            "--all",
            "--concurrency",
            "3",
        ],
    );
    let took = started.elapsed();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["summary"]["extended"], 21, "{}", v["summary"]);
    let most = sim.max_in_flight();
    assert!(most > 1, "renewals ran one at a time ({most})");
    assert!(most <= 3, "more than --concurrency 3 in flight ({most})");
    // 21 PUTs of 60 ms one by one would take 1.26 s on their own.
    assert!(took < Duration::from_secs(30), "{took:?}");

    // The default is 8.
    add_sources(&sim, 20, Duration::from_secs(600));
    sim.reset_max_in_flight();
    let out = sim_run(&dir, &["datasources", "extend", "--all"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let most = sim.max_in_flight();
    assert!((2..=8).contains(&most), "{most}");
}
