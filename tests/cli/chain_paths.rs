//! One test per path of the refresh chain, with request counts, exit codes
//! and file effects.

use crate::common::*;
use serde_json::json;
use wiremock::ResponseTemplate;

#[tokio::test]
async fn valid_token_one_get_nothing_written() {
    let t = TestEnv::new().await;
    let env = env_with(OLD_ACCESS, Some(&in_secs(86_400)), Some(OLD_REFRESH));
    t.write_env(&env);
    t.mock_validate(OLD_ACCESS, 200).await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("works"), "{}", stdout(&out));
    assert_eq!(t.count("GET", "/v1/dataSources").await, 1);
    assert_eq!(t.requests().await.len(), 1);
    assert_eq!(t.read_env(), env);
}

#[tokio::test]
async fn stored_expired_one_post_no_get() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-new-access-1");
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(-60)),
        Some(OLD_REFRESH),
    ));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 1_209_600, Some((OLD_REFRESH, 7_000_000))),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("level 1"), "{}", stdout(&out));
    assert_eq!(t.count("POST", "/v1/access_token").await, 1);
    assert_eq!(t.requests().await.len(), 1);
    let v = t.env_values();
    assert_eq!(v["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new);
    assert_eq!(v["WEBEX_SERVICE_APP_REFRESH_TOKEN"], OLD_REFRESH);
    let exp: jiff::Timestamp = v["WEBEX_SERVICE_APP_ACCESS_TOKEN_EXPIRES_AT"]
        .parse()
        .unwrap();
    let left = exp.as_second() - jiff::Timestamp::now().as_second();
    assert!((1_209_500..=1_209_600).contains(&left), "{left}");
    assert!(v["WEBEX_SERVICE_APP_REFRESH_TOKEN_EXPIRES_AT"].ends_with('Z'));
    // The form carried the service app's credentials.
    let req = &t.requests().await[0];
    let body = String::from_utf8_lossy(&req.body);
    assert!(
        body.contains(&format!("client_secret={}", urlenc(SA_SECRET))),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_expiry_invalid_token_get_then_post() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-new-access-2");
    t.write_env(&env_with(OLD_ACCESS, None, Some(OLD_REFRESH)));
    t.mock_validate(OLD_ACCESS, 401).await;
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 3600 * 24, None),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.count("GET", "/v1/dataSources").await, 1);
    assert_eq!(t.count("POST", "/v1/access_token").await, 1);
    assert_eq!(t.requests().await.len(), 2);
    // No refresh token in the answer: the old one is kept.
    assert_eq!(
        t.env_values()["WEBEX_SERVICE_APP_REFRESH_TOKEN"],
        OLD_REFRESH
    );
}

#[tokio::test]
async fn level1_rejected_level2_mints() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-minted-access");
    let new_rt = t.secret("SECRET-minted-refresh");
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(10)), Some(OLD_REFRESH)));
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, oauth_error("invalid_grant"))
        .await;
    t.mock_mint(
        PAT,
        token_response(&new, 1_209_600, Some((&new_rt, 7_776_000))),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("level 2"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("level 1 (service-app refresh token): rejected"),
        "{}",
        stderr(&out)
    );
    let mint = t
        .requests()
        .await
        .into_iter()
        .find(|r| r.url.path().contains("/applications/"))
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&mint.body).unwrap();
    assert_eq!(
        body,
        json!({"clientId": SA_CLIENT_ID, "clientSecret": SA_SECRET, "targetOrgId": ORG_ID})
    );
    let v = t.env_values();
    assert_eq!(v["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new);
    assert_eq!(v["WEBEX_SERVICE_APP_REFRESH_TOKEN"], new_rt);
}

#[tokio::test]
async fn missing_env_file_is_created_private_by_level2() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-first-access");
    let new_rt = t.secret("SECRET-first-refresh");
    t.mock_mint(
        PAT,
        token_response(&new, 1_209_600, Some((&new_rt, 7_776_000))),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.requests().await.len(), 1);
    assert_eq!(mode(&t.env_path()), 0o600);
    let v = t.env_values();
    assert_eq!(v["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new);
    assert_eq!(v["WEBEX_SERVICE_APP_REFRESH_TOKEN"], new_rt);
    assert_eq!(v.len(), 4);
}

#[tokio::test]
async fn level3_renews_personal_token_and_saves_it() {
    let mut t = TestEnv::new().await;
    let new_pat = t.secret("SECRET-renewed-personal");
    let new_int_rt = t.secret("SECRET-rotated-integration-refresh");
    let new = t.secret("SECRET-access-after-l3");
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH)));
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, oauth_error("invalid_grant"))
        .await;
    t.mock_mint(
        PAT,
        ResponseTemplate::new(401).set_body_json(webex_error("token expired")),
    )
    .await;
    t.mock_refresh(
        INT_CLIENT_ID,
        INT_REFRESH,
        token_response(&new_pat, 1_209_599, Some((&new_int_rt, 7_775_999))),
    )
    .await;
    t.mock_mint(&new_pat, token_response(&new, 1_209_600, None))
        .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("level 3"), "{}", stdout(&out));
    assert_eq!(t.requests().await.len(), 4);
    let c = t.read_config();
    assert_eq!(c["tokenManager"]["personalAccessToken"], new_pat.as_str());
    assert_eq!(
        c["tokenManager"]["integration"]["refreshToken"],
        new_int_rt.as_str()
    );
    assert_eq!(c["tokenManager"]["integration"]["clientSecret"], INT_SECRET);
    assert!(
        c["tokenManager"]["personalAccessTokenExpiresAt"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(c["customKey"], json!({"kept": true}));
    assert_eq!(c["serviceApp"]["clientSecret"], SA_SECRET);
    assert_eq!(t.env_values()["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new);
}

#[tokio::test]
async fn everything_rejected_exits_4_and_changes_nothing() {
    let t = TestEnv::new().await;
    let env = env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH));
    t.write_env(&env);
    let config_before = std::fs::read(t.config_path()).unwrap();
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, oauth_error("invalid_grant"))
        .await;
    t.mock_mint(
        PAT,
        ResponseTemplate::new(401).set_body_json(webex_error("token expired")),
    )
    .await;
    t.mock_refresh(
        INT_CLIENT_ID,
        INT_REFRESH,
        ResponseTemplate::new(401).set_body_json(webex_error("bad")),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("webex-token setup-oauth"), "{err}");
    assert!(err.contains("level 1"), "{err}");
    assert!(err.contains("level 2"), "{err}");
    assert!(err.contains("level 3"), "{err}");
    assert!(
        err.contains("ROUTER_TEST_TRACKING"),
        "trackingId shown: {err}"
    );
    assert_eq!(t.read_env(), env);
    assert_eq!(std::fs::read(t.config_path()).unwrap(), config_before);
    assert_eq!(t.requests().await.len(), 3);
}

#[tokio::test]
async fn no_integration_and_rejected_personal_token_exits_4() {
    let t = TestEnv::new().await;
    t.write_config(&default_config(false));
    t.mock_mint(
        PAT,
        ResponseTemplate::new(401).set_body_json(webex_error("expired")),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("setup-oauth"));
    assert!(!t.env_path().exists());
}

#[tokio::test]
async fn forbidden_mint_explains_scope_and_admin() {
    let t = TestEnv::new().await;
    t.mock_mint(
        PAT,
        ResponseTemplate::new(403).set_body_json(webex_error("not authorized")),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 4);
    let hint = stderr(&out);
    let hint = hint
        .lines()
        .find(|l| l.starts_with("hint:"))
        .unwrap_or_default();
    assert!(hint.contains("spark:applications_token"), "{hint}");
    // The org must authorize the service app; a new personal token from
    // setup-oauth would be refused the same way.
    assert!(hint.contains("Control Hub"), "{hint}");
    assert!(!hint.contains("setup-oauth"), "{hint}");
    assert_eq!(t.requests().await.len(), 1, "no level 3 after a 403");
}

#[tokio::test]
async fn same_token_back_is_success() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(30)), Some(OLD_REFRESH)));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(OLD_ACCESS, 1000, Some((OLD_REFRESH, 5000))),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.requests().await.len(), 1);
}

#[tokio::test]
async fn force_refreshes_a_working_token_without_validating() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-forced");
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, token_response(&new, 1000, None))
        .await;
    let out = t.run(&["refresh", "--force"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.count("GET", "/v1/dataSources").await, 0);
    assert_eq!(t.env_values()["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new);
}

#[tokio::test]
async fn min_valid_window_triggers_refresh() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-window");
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(2 * 3600)),
        Some(OLD_REFRESH),
    ));
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, token_response(&new, 1000, None))
        .await;
    let out = t.run(&["refresh", "--min-valid", "3h"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.requests().await.len(), 1);
    assert_eq!(t.count("POST", "/v1/access_token").await, 1);
}

#[tokio::test]
async fn dry_run_validates_but_writes_and_posts_nothing() {
    let t = TestEnv::new().await;
    let env = env_with(OLD_ACCESS, None, Some(OLD_REFRESH));
    t.write_env(&env);
    t.mock_validate(OLD_ACCESS, 401).await;
    let out = t.run(&["refresh", "--dry-run"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("would refresh via level 1"),
        "{}",
        stdout(&out)
    );
    assert_eq!(t.count("POST", "/v1/access_token").await, 0);
    assert_eq!(t.read_env(), env);
    assert!(!t.path(".env.audit.jsonl").exists());
}

#[tokio::test]
async fn server_errors_are_transient_exit_1_files_unchanged() {
    let t = TestEnv::new().await;
    let env = env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH));
    t.write_env(&env);
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        ResponseTemplate::new(503).set_body_json(webex_error("down")),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("503"), "{}", stderr(&out));
    assert_eq!(t.read_env(), env);
    // Retried, and never treated as rejected: no level 2.
    assert_eq!(t.count("POST", "/v1/access_token").await, 4);
    assert_eq!(
        t.count("POST", &format!("/v1/applications/{APP_ID}/token"))
            .await,
        0
    );
}

#[tokio::test]
async fn a_500_then_success_is_retried() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-after-retry");
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH)));
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/access_token"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&t.server)
        .await;
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, token_response(&new, 1000, None))
        .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.count("POST", "/v1/access_token").await, 2);
    assert_eq!(t.env_values()["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new);
}

#[tokio::test]
async fn rate_limit_with_retry_after_is_honoured() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-after-429");
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH)));
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/access_token"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&t.server)
        .await;
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, token_response(&new, 1000, None))
        .await;
    let started = std::time::Instant::now();
    // Real delays here, so that Retry-After is really waited for.
    let out = t
        .cmd()
        .env_remove("WEBEX_TOKEN_TEST_NO_RETRY_DELAY")
        .args(["refresh", "-v"])
        .output()
        .unwrap();
    t.assert_no_secrets(&out, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert!(
        stderr(&out).contains("retrying in 1.0s"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let t = TestEnv::new().await;
    let env = env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH));
    t.write_env(&env);
    let out = t
        .cmd()
        .args(["refresh", "--api-base", "http://127.0.0.1:9/v1"])
        .output()
        .unwrap();
    t.assert_no_secrets(&out, &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not connect"),
        "{}",
        stderr(&out)
    );
    assert_eq!(t.read_env(), env);
}

#[tokio::test]
async fn truncated_json_is_transient_and_changes_nothing() {
    let t = TestEnv::new().await;
    let env = env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH));
    t.write_env(&env);
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        ResponseTemplate::new(200).set_body_raw(
            r#"{"access_token":"SECRET-partial","expi"#,
            "application/json",
        ),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("cut off"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("SECRET-partial"));
    assert_eq!(t.read_env(), env);
}

#[tokio::test]
async fn slow_response_times_out() {
    let t = TestEnv::new().await;
    let env = env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH));
    t.write_env(&env);
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response("SECRET-late", 100, None).set_delay(std::time::Duration::from_secs(5)),
    )
    .await;
    let out = t.run(&["refresh", "--http-timeout", "300ms", "--retry-budget", "1s"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
    assert_eq!(t.read_env(), env);
}

#[tokio::test]
async fn missing_env_file_with_a_known_refresh_token_uses_level1() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-seeded-access");
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 1_209_600, None),
    )
    .await;
    let out = t
        .cmd()
        .env("WEBEX_SERVICE_APP_REFRESH_TOKEN", OLD_REFRESH)
        .args(["-v", "refresh"])
        .output()
        .unwrap();
    t.assert_no_secrets(&out, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("level 1"), "{}", stdout(&out));
    assert_eq!(t.requests().await.len(), 1);
    let v = t.env_values();
    assert_eq!(v["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new);
    assert_eq!(
        v["WEBEX_SERVICE_APP_REFRESH_TOKEN"], OLD_REFRESH,
        "kept in the new file"
    );
    assert_eq!(mode(&t.env_path()), 0o600);
}

#[tokio::test]
async fn empty_refresh_token_in_an_answer_keeps_the_stored_one() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-empty-rt-answer");
    let mut env = env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH));
    env.push_str("WEBEX_SERVICE_APP_REFRESH_TOKEN_EXPIRES_AT=2030-01-01T00:00:00Z\n");
    t.write_env(&env);
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 86_400, Some(("", 7_776_000))),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = t.env_values();
    assert_eq!(v["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new);
    assert_eq!(v["WEBEX_SERVICE_APP_REFRESH_TOKEN"], OLD_REFRESH);
    assert_eq!(
        v["WEBEX_SERVICE_APP_REFRESH_TOKEN_EXPIRES_AT"],
        "2030-01-01T00:00:00Z"
    );
}

#[tokio::test]
async fn error_bodies_that_echo_secrets_are_redacted() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH)));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": format!("refresh token {OLD_REFRESH} unknown; client_secret={SA_SECRET}"),
        })),
    )
    .await;
    t.mock_mint(
        PAT,
        ResponseTemplate::new(401).set_body_json(webex_error(&format!("Bearer {PAT} is expired"))),
    )
    .await;
    t.mock_refresh(
        INT_CLIENT_ID,
        INT_REFRESH,
        ResponseTemplate::new(400).set_body_json(
            json!({"error": "invalid_grant", "message": format!("{INT_REFRESH} / {INT_SECRET}")}),
        ),
    )
    .await;
    // run() scans stdout, stderr and the audit log for every secret.
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[redacted sha256:"),
        "{}",
        stderr(&out)
    );
    let out = t.run(&["refresh", "--json"]);
    assert_eq!(code(&out), 4);
}

#[tokio::test]
async fn transient_failures_are_listed_in_details_and_audit() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH)));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        ResponseTemplate::new(503).set_body_json(webex_error("down")),
    )
    .await;
    let out = t.run(&["refresh", "--json"]);
    assert_eq!(code(&out), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("level 1"),
        "{v}"
    );
    assert_eq!(v["attempts"][0]["result"], "transient", "{v}");
    assert_eq!(v["attempts"][0]["level"], 1, "{v}");
    // The human error says it once, not twice.
    let human = t.run(&["-q", "refresh"]);
    let err = stderr(&human);
    assert_eq!(err.matches("HTTP 503").count(), 1, "{err}");
    assert!(!err.contains("failed, may pass"), "{err}");
    let audit = std::fs::read_to_string(t.path(".env.audit.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(line["attempts"][0]["result"], "transient", "{line}");
    assert_eq!(line["attempts"][0]["httpStatus"], 503);
}

#[tokio::test]
async fn level3_is_listed_when_a_403_makes_it_pointless() {
    let t = TestEnv::new().await;
    t.mock_mint(
        PAT,
        ResponseTemplate::new(403).set_body_json(webex_error("not authorized")),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 4);
    let err = stderr(&out);
    assert!(
        err.contains("level 3 (integration refresh token): skipped: not tried"),
        "{err}"
    );
}

#[tokio::test]
async fn mint_replaces_a_lapsing_refresh_token_with_level2() {
    let mut t = TestEnv::new().await;
    t.write_config(&config_with_known_integration_expiry(90 * 86_400));
    let new = t.secret("SECRET-minted-by-flag");
    let new_rt = t.secret("SECRET-minted-rt-by-flag");
    let mut env = env_with(OLD_ACCESS, Some(&in_secs(86_400)), Some(OLD_REFRESH));
    env.push_str(&format!(
        "WEBEX_SERVICE_APP_REFRESH_TOKEN_EXPIRES_AT={}\n",
        in_secs(86_400)
    ));
    t.write_env(&env);
    // status --check names the lapsing refresh token and says how to replace it.
    let out = t.run(&["status", "--check", "7d"]);
    assert_eq!(code(&out), 5);
    assert!(stderr(&out).contains("refresh --mint"), "{}", stderr(&out));
    t.mock_mint(
        PAT,
        token_response(&new, 1_209_600, Some((&new_rt, 7_776_000))),
    )
    .await;
    let dry = t.run(&["refresh", "--mint", "--dry-run"]);
    assert!(
        stdout(&dry).contains("would refresh via level 2"),
        "{}",
        stdout(&dry)
    );
    let out = t.run(&["refresh", "--mint"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("level 2"), "{}", stdout(&out));
    assert_eq!(
        t.count("POST", "/v1/access_token").await,
        0,
        "level 1 is skipped"
    );
    assert_eq!(t.env_values()["WEBEX_SERVICE_APP_REFRESH_TOKEN"], new_rt);
    let out = t.run(&["status", "--check", "7d"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}
