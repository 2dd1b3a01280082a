//! Snapshot tests (insta): the exact text the binary prints — help pages,
//! every `--json` shape, the main human messages and errors — so that a
//! refactor of `src/` that changes any of it shows up as a diff.
//!
//! Each snapshot holds the exit code, then stdout, then stderr. A stdout
//! that is exactly one JSON line is shown pretty-printed (keys in the order
//! the binary wrote them). What differs between runs and machines (temp
//! dirs, ports, times, durations, fingerprints, nonces, pids, host names)
//! is replaced by a placeholder. Review changes with `cargo insta review`
//! or rerun with `INSTA_UPDATE=always` after checking the diff.

use crate::common::*;
use base64::Engine;
use serde_json::{Value, json};
use std::process::Output;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, ResponseTemplate};

/// The snapshot text for one run: exit code, stdout, stderr, kept apart.
fn render(t: &TestEnv, out: &Output) -> String {
    render_at(t.dir.path(), &t.server.uri(), out)
}

/// [`render`] for a run in `dir` against the server at `uri`.
fn render_at(dir: &std::path::Path, uri: &str, out: &Output) -> String {
    let scrub = |s: String| {
        let mut s = s;
        // The canonical form first (it may be longer, e.g. /private/tmp).
        if let Ok(real) = dir.canonicalize() {
            s = s.replace(real.to_str().unwrap(), "[TMP]");
        }
        s.replace(dir.to_str().unwrap(), "[TMP]")
            .replace(uri, "http://[MOCK]")
    };
    let out_text = scrub(stdout(out));
    let err_text = scrub(stderr(out));
    let one_json_line = out_text.ends_with('\n') && out_text.trim_end().lines().count() == 1;
    let shown = match serde_json::from_str::<Value>(&out_text) {
        Ok(v) if one_json_line => format!(
            "--- stdout (one JSON line, shown pretty) ---\n{}\n",
            serde_json::to_string_pretty(&v).unwrap()
        ),
        _ => format!("--- stdout ---\n{out_text}"),
    };
    format!("exit: {}\n{shown}--- stderr ---\n{err_text}", code(out))
}

/// insta settings with the filters for what varies between runs.
fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    s.set_snapshot_path("snapshots");
    s.set_omit_expression(true);
    // Any temp dir not caught by the exact replacement in `render`.
    s.add_filter(r"/(private/)?tmp/\.tmp[A-Za-z0-9]+", "[TMP]");
    s.add_filter(r"(127\.0\.0\.1|localhost):[0-9]{2,5}", "$1:[PORT]");
    s.add_filter(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:?[0-9]{2})?",
        "[TIME]",
    );
    s.add_filter(r"sha256:[0-9a-f]{8,64}", "sha256:[FP]");
    s.add_filter(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[UUID]",
    );
    // Durations measured from now ("(in 13d 23h)", "(expired 1m ago)"),
    // retry delays (jittered) and the seconds left in JSON. Durations the
    // user passed (--min-valid 6h, --timeout 30s) stay as they are.
    s.add_filter(r"\(in [0-9][0-9a-z. ]*\)", "(in [DUR])");
    s.add_filter(r"\(expired [0-9][0-9a-z. ]* ago\)", "(expired [DUR] ago)");
    s.add_filter(r"retrying in [0-9][0-9a-z.]*", "retrying in [DUR]");
    // The lock wait is measured (whole seconds), not the --lock-timeout value.
    s.add_filter(r"after waiting [0-9]+s", "after waiting [DUR]");
    s.add_filter(r#""secondsLeft": -?[0-9]+"#, r#""secondsLeft": "[SECS]""#);
    s.add_filter(r"\b(pid|PID) [0-9]+", "$1 [PID]");
    s.add_filter(r#""pid": [0-9]+"#, r#""pid": "[PID]""#);
    if let Some(host) = hostname() {
        s.add_filter(&format!(r"\b{}\b", regex_escape(&host)), "[HOST]");
    }
    s
}

/// Help text: only the temp dir varies; durations in it are fixed text.
fn help_settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    s.set_snapshot_path("snapshots");
    s.set_omit_expression(true);
    s.add_filter(r"/(private/)?tmp/\.tmp[A-Za-z0-9]+", "[TMP]");
    s
}

fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    // A short name could be a word of the output itself: leave it.
    (h.len() >= 8 && h != "localhost").then(|| h.to_string())
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if !c.is_ascii_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Runs the binary at default verbosity (what a user sees), with a fixed
/// terminal width, and checks no known secret leaked.
fn run(t: &TestEnv, args: &[&str]) -> Output {
    run_allowing(t, args, &[])
}

fn run_allowing(t: &TestEnv, args: &[&str], allowed_on_stdout: &[&str]) -> Output {
    let out = t.cmd().env("COLUMNS", "100").args(args).output().unwrap();
    t.assert_no_secrets(&out, allowed_on_stdout);
    out
}

fn snap(name: &str, t: &TestEnv, out: &Output) {
    let text = render(t, out);
    settings().bind(|| insta::assert_snapshot!(name, text));
}

fn fresh_env(t: &TestEnv) {
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
}

fn expired_env(t: &TestEnv) {
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH)));
}

/// Every level answers "no": level 1 and 3 `invalid_grant`, level 2 401.
async fn reject_all(t: &TestEnv) {
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, oauth_error("invalid_grant"))
        .await;
    t.mock_mint(
        PAT,
        ResponseTemplate::new(401).set_body_json(webex_error("token expired")),
    )
    .await;
    t.mock_refresh(INT_CLIENT_ID, INT_REFRESH, oauth_error("invalid_grant"))
        .await;
}

// ---------------------------------------------------------------- help

#[tokio::test]
async fn snapshot_help_pages() {
    let t = TestEnv::new().await;
    let pages: &[&[&str]] = &[
        &[],
        &["init"],
        &["refresh"],
        &["status"],
        &["token"],
        &["exec"],
        &["setup-oauth"],
        &["datasources"],
        &["datasources", "list"],
        &["datasources", "show"],
        &["datasources", "extend"],
        &["datasources", "register"],
        &["watch"],
        &["healthcheck"],
        &["completions"],
        &["man"],
    ];
    for page in pages {
        // No WEBEX_API_BASE_URL here: clap would print its value in `[env: ]`.
        let out = scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), t.dir.path())
            .env("HOME", t.dir.path())
            .env("COLUMNS", "100")
            .args(*page)
            .arg("--help")
            .output()
            .unwrap();
        let name = if page.is_empty() {
            "help".to_string()
        } else {
            format!("help_{}", page.join("_"))
        };
        // A subcommand's page fits a screen and shows how to use it; the
        // global flags are on the top page only.
        if !page.is_empty() {
            let lines = stdout(&out).lines().count();
            assert!(lines < 30, "{name}: {lines} lines");
            assert!(stdout(&out).contains("Examples:\n  "), "{name}");
            assert!(!stdout(&out).contains("Global options:"), "{name}");
        }
        let text = render(&t, &out);
        help_settings().bind(|| insta::assert_snapshot!(name, text));
    }
    // `-h` is the short form: a page of its own.
    let out = scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), t.dir.path())
        .env("HOME", t.dir.path())
        .env("COLUMNS", "100")
        .arg("-h")
        .output()
        .unwrap();
    let text = render(&t, &out);
    help_settings().bind(|| insta::assert_snapshot!("help_short", text));
}

// ---------------------------------------------------------------- refresh

#[tokio::test]
async fn snapshot_refresh_kept_after_validation() {
    let t = TestEnv::new().await;
    fresh_env(&t);
    t.mock_validate(OLD_ACCESS, 200).await;
    snap("refresh_kept_json", &t, &run(&t, &["refresh", "--json"]));
    snap("refresh_kept_human", &t, &run(&t, &["refresh"]));
}

#[tokio::test]
async fn snapshot_refresh_level1() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-snap-level1-access");
    expired_env(&t);
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 86_400, None),
    )
    .await;
    snap("refresh_level1_json", &t, &run(&t, &["refresh", "--json"]));
    expired_env(&t);
    snap("refresh_level1_human", &t, &run(&t, &["refresh"]));
    expired_env(&t);
    snap(
        "refresh_dry_run_json",
        &t,
        &run(&t, &["refresh", "--dry-run", "--json"]),
    );
}

#[tokio::test]
async fn snapshot_refresh_level2_mint() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-snap-minted-access");
    let new_rt = t.secret("SECRET-snap-minted-refresh");
    expired_env(&t);
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, oauth_error("invalid_grant"))
        .await;
    t.mock_mint(
        PAT,
        token_response(&new, 1_209_600, Some((&new_rt, 7_776_000))),
    )
    .await;
    snap("refresh_level2_json", &t, &run(&t, &["refresh", "--json"]));
    let mut t = TestEnv::new().await;
    t.secret(&new);
    t.secret(&new_rt);
    expired_env(&t);
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, oauth_error("invalid_grant"))
        .await;
    t.mock_mint(
        PAT,
        token_response(&new, 1_209_600, Some((&new_rt, 7_776_000))),
    )
    .await;
    snap("refresh_level2_human", &t, &run(&t, &["refresh"]));
}

#[tokio::test]
async fn snapshot_refresh_all_levels_rejected() {
    let t = TestEnv::new().await;
    expired_env(&t);
    reject_all(&t).await;
    snap(
        "refresh_rejected_json",
        &t,
        &run(&t, &["refresh", "--json"]),
    );
    snap("refresh_rejected_human", &t, &run(&t, &["refresh"]));
    snap("token_rejected_human", &t, &run(&t, &["token"]));
}

#[tokio::test]
async fn snapshot_refresh_transient_503() {
    let t = TestEnv::new().await;
    expired_env(&t);
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        ResponseTemplate::new(503).set_body_json(webex_error("down")),
    )
    .await;
    snap("refresh_transient_human", &t, &run(&t, &["refresh"]));
    snap(
        "refresh_transient_json",
        &t,
        &run(&t, &["refresh", "--json"]),
    );
}

#[tokio::test]
async fn snapshot_refresh_lock_timeout() {
    let t = TestEnv::new().await;
    expired_env(&t);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(t.path(".env.lock"))
        .unwrap();
    lock.lock().unwrap();
    snap(
        "refresh_lock_timeout_human",
        &t,
        &run(&t, &["refresh", "--lock-timeout", "300ms"]),
    );
}

// ---------------------------------------------------------------- config and usage errors

#[tokio::test]
async fn snapshot_config_errors() {
    let t = TestEnv::new().await;
    fresh_env(&t);
    std::fs::remove_file(t.config_path()).unwrap();
    snap("config_missing_human", &t, &run(&t, &["refresh"]));
    snap("config_missing_json", &t, &run(&t, &["refresh", "--json"]));
    std::fs::write(t.config_path(), "{\"serviceApp\": {\"appId\": ").unwrap();
    snap("config_malformed_human", &t, &run(&t, &["refresh"]));
    snap("config_malformed_json", &t, &run(&t, &["status", "--json"]));
    // Valid JSON, fields missing: every missing field named at once (an
    // expired token, so the refresh needs them).
    expired_env(&t);
    std::fs::write(t.config_path(), "{\"tokenManager\": {}}").unwrap();
    snap("config_incomplete_human", &t, &run(&t, &["refresh"]));
    snap(
        "config_incomplete_json",
        &t,
        &run(&t, &["refresh", "--json"]),
    );
    // A field of the wrong type.
    std::fs::write(
        t.config_path(),
        "{\"serviceApp\": {\"clientId\": 7}, \"tokenManager\": {}}",
    )
    .unwrap();
    snap("config_wrong_type_human", &t, &run(&t, &["refresh"]));
}

#[tokio::test]
async fn snapshot_usage_errors() {
    let t = TestEnv::new().await;
    fresh_env(&t);
    snap(
        "usage_unknown_flag_json",
        &t,
        &run(&t, &["refresh", "--bogus", "--json"]),
    );
    snap(
        "usage_unknown_flag_human",
        &t,
        &run(&t, &["refresh", "--bogus"]),
    );
    snap(
        "usage_bad_duration_json",
        &t,
        &run(&t, &["status", "--json", "--check", "xyz"]),
    );
    snap("usage_unknown_command", &t, &run(&t, &["frobnicate"]));
}

// ---------------------------------------------------------------- status and token

#[tokio::test]
async fn snapshot_status() {
    let t = TestEnv::new().await;
    fresh_env(&t);
    t.mock_validate(OLD_ACCESS, 200).await;
    snap("status_human", &t, &run(&t, &["status"]));
    snap("status_json", &t, &run(&t, &["status", "--json"]));
    snap(
        "status_online_json",
        &t,
        &run(&t, &["status", "--online", "--json"]),
    );
    snap("status_online_human", &t, &run(&t, &["status", "--online"]));
    // No env file at all.
    std::fs::remove_file(t.env_path()).unwrap();
    snap(
        "status_no_env_file_json",
        &t,
        &run(&t, &["status", "--json"]),
    );
}

#[tokio::test]
async fn snapshot_status_check_fails() {
    let t = TestEnv::new().await;
    t.write_config(&config_with_known_integration_expiry(90 * 86_400));
    let mut env = env_with(OLD_ACCESS, Some(&in_secs(86_400)), Some(OLD_REFRESH));
    env.push_str(&format!(
        "WEBEX_SERVICE_APP_REFRESH_TOKEN_EXPIRES_AT={}\n",
        in_secs(3600)
    ));
    t.write_env(&env);
    snap(
        "status_check_fails_json",
        &t,
        &run(&t, &["status", "--check", "1d", "--json"]),
    );
    snap(
        "status_check_fails_human",
        &t,
        &run(&t, &["status", "--check", "1d"]),
    );
}

#[tokio::test]
async fn snapshot_token() {
    let t = TestEnv::new().await;
    fresh_env(&t);
    snap(
        "token_json",
        &t,
        &run_allowing(&t, &["token", "--json"], &[OLD_ACCESS]),
    );
    snap(
        "token_plain",
        &t,
        &run_allowing(&t, &["token"], &[OLD_ACCESS]),
    );
}

#[tokio::test]
async fn snapshot_exec_and_completions_errors() {
    let t = TestEnv::new().await;
    fresh_env(&t);
    snap(
        "exec_exit_code_passed_on",
        &t,
        &run(&t, &["exec", "--", "sh", "-c", "echo child ran; exit 7"]),
    );
    snap(
        "exec_command_not_found",
        &t,
        &run(&t, &["exec", "--", "definitely-not-a-command-xyz"]),
    );
    snap(
        "completions_unknown_shell",
        &t,
        &run(&t, &["completions", "tcsh"]),
    );
}

#[tokio::test]
async fn snapshot_datasources_403_scope_hint() {
    let t = TestEnv::new().await;
    fresh_env(&t);
    Mock::given(method("GET"))
        .and(path("/v1/dataSources"))
        .respond_with(ResponseTemplate::new(403).set_body_json(webex_error("Forbidden")))
        .mount(&t.server)
        .await;
    snap(
        "datasources_list_403_human",
        &t,
        &run(&t, &["datasources", "list"]),
    );
    snap(
        "datasources_list_403_json",
        &t,
        &run(&t, &["--json", "datasources", "list"]),
    );
}

// ---------------------------------------------------------------- datasources

/// A JWS-shaped token expiring `exp_in` seconds from now.
fn jws(tag: &str, exp_in: i64) -> String {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let exp = jiff::Timestamp::now().as_second() + exp_in;
    format!(
        "{}.{}.SECRET-sig-{tag}",
        b64(json!({"alg": "RS256", "kid": "k1"})),
        b64(json!({"aud": "aud", "sub": "sub", "exp": exp, "jti": tag}))
    )
}

async fn mock_list(t: &TestEnv, items: Vec<Value>) {
    Mock::given(method("GET"))
        .and(path("/v1/dataSources"))
        .and(header(
            "authorization",
            format!("Bearer {OLD_ACCESS}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": items})))
        .mount(&t.server)
        .await;
}

async fn mock_get(t: &TestEnv, id: &str, resp: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(format!("/v1/dataSources/{id}").as_str()))
        .respond_with(resp)
        .mount(&t.server)
        .await;
}

/// A PUT answered like Webex: the object back with a new token that
/// expires after the requested lifetime.
struct Renew(String);

impl wiremock::Respond for Renew {
    fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
        let mut body: Value = serde_json::from_slice(&req.body).unwrap();
        let minutes = body["tokenLifetimeMinutes"].as_i64().unwrap();
        body["id"] = json!(self.0);
        body["jwsToken"] = json!(jws(&format!("renewed-{}", self.0), minutes * 60));
        body["tokenExpiryTime"] = json!(in_secs(minutes * 60));
        ResponseTemplate::new(200).set_body_json(body)
    }
}

async fn mock_put(t: &TestEnv, id: &str, resp: impl wiremock::Respond + 'static) {
    Mock::given(method("PUT"))
        .and(path(format!("/v1/dataSources/{id}").as_str()))
        .respond_with(resp)
        .mount(&t.server)
        .await;
}

#[tokio::test]
async fn snapshot_datasources_list_and_show() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let a = t.secret(&jws("list-a", 5 * 3600));
    let b = t.secret(&jws("list-b", -60));
    let mut first = source("ds-a", &a);
    first["tokenExpiryTime"] = json!("2031-05-06T07:08:09.000Z");
    let mut second = source("ds-b", &b);
    second["status"] = json!("disabled");
    second["errorMessage"] = json!("provider unreachable since Tuesday");
    mock_list(&t, vec![first.clone(), second]).await;
    mock_get(&t, "ds-a", ResponseTemplate::new(200).set_body_json(first)).await;
    mock_get(
        &t,
        "missing",
        ResponseTemplate::new(404).set_body_json(webex_error("Data source not found")),
    )
    .await;
    snap(
        "datasources_list_human",
        &t,
        &run(&t, &["datasources", "list"]),
    );
    snap(
        "datasources_list_json",
        &t,
        &run(&t, &["--json", "datasources", "list"]),
    );
    snap(
        "datasources_show_human",
        &t,
        &run(&t, &["datasources", "show", "ds-a"]),
    );
    snap(
        "datasources_show_json",
        &t,
        &run(&t, &["--json", "datasources", "show", "ds-a"]),
    );
    snap(
        "datasources_show_404_human",
        &t,
        &run(&t, &["datasources", "show", "missing"]),
    );
    snap(
        "datasources_show_404_json",
        &t,
        &run(&t, &["--json", "datasources", "show", "missing"]),
    );
}

#[tokio::test]
async fn snapshot_datasources_list_empty() {
    let t = TestEnv::new().await;
    fresh_env(&t);
    mock_list(&t, vec![]).await;
    snap(
        "datasources_list_empty_human",
        &t,
        &run(&t, &["datasources", "list"]),
    );
    snap(
        "datasources_list_empty_json",
        &t,
        &run(&t, &["--json", "datasources", "list"]),
    );
}

#[tokio::test]
async fn snapshot_datasources_extend() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    // Fresh ones first, expiring ones next: ids sort the same every run.
    let fresh = t.secret(&jws("fresh", 20 * 3600));
    let soon = t.secret(&jws("soon", 3600));
    mock_list(
        &t,
        vec![source("ds-fresh", &fresh), source("ds-soon", &soon)],
    )
    .await;
    mock_put(&t, "ds-soon", Renew("ds-soon".into())).await;
    snap(
        "datasources_extend_dry_run_human",
        &t,
        &run(&t, &["datasources", "extend", "--all", "--dry-run"]),
    );
    snap(
        "datasources_extend_dry_run_json",
        &t,
        &run(
            &t,
            &["--json", "datasources", "extend", "--all", "--dry-run"],
        ),
    );
    snap(
        "datasources_extend_human",
        &t,
        &run(&t, &["datasources", "extend", "--all"]),
    );
    snap(
        "datasources_extend_json",
        &t,
        &run(&t, &["--json", "datasources", "extend", "--all"]),
    );
}

#[tokio::test]
async fn snapshot_datasources_extend_partial_failure() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let mut items = Vec::new();
    for id in ["ds-404", "ds-403", "ds-500", "ds-ok"] {
        let tok = t.secret(&jws(id, 600));
        items.push(source(id, &tok));
    }
    mock_list(&t, items).await;
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
    mock_put(&t, "ds-ok", Renew("ds-ok".into())).await;
    snap(
        "datasources_extend_partial_json",
        &t,
        &run(&t, &["--json", "datasources", "extend", "--all"]),
    );
    snap(
        "datasources_extend_partial_human",
        &t,
        &run(&t, &["datasources", "extend", "--all"]),
    );
}

#[tokio::test]
async fn snapshot_datasources_register() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let tok = t.secret(&jws("registered", 720 * 60));
    let mut created = source("ds-new", &tok);
    created["tokenExpiryTime"] = json!(in_secs(720 * 60));
    Mock::given(method("POST"))
        .and(path("/v1/dataSources"))
        .respond_with(ResponseTemplate::new(201).set_body_json(created))
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
    snap("datasources_register_human", &t, &run(&t, &args));
    let mut json_args = vec!["--json"];
    json_args.extend(args);
    snap("datasources_register_json", &t, &run(&t, &json_args));
}

// ---------------------------------------------------------------- setup-oauth

const NEW_PAT: &str = "SECRET-snap-new-personal-token";
const NEW_INT_REFRESH: &str = "SECRET-snap-new-integration-refresh";
const DEVICE_CODE: &str = "SECRET-snap-device-code";

async fn mock_device(t: &TestEnv, token: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/v1/device/authorize"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "device_code": DEVICE_CODE,
            "user_code": "WXYZ-1234",
            "verification_uri": "https://login.example.test/device",
            "verification_uri_complete": "https://login.example.test/device?userCode=WXYZ-1234",
            "expires_in": 600,
            "interval": 5,
        })))
        .mount(&t.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/device/token"))
        .and(body_string_contains("grant_type=urn"))
        .respond_with(token)
        .mount(&t.server)
        .await;
}

async fn oauth_env() -> TestEnv {
    let mut t = TestEnv::new().await;
    t.secret(NEW_PAT);
    t.secret(NEW_INT_REFRESH);
    t.secret(DEVICE_CODE);
    t
}

fn setup_args(json: bool) -> Vec<&'static str> {
    let mut v = vec![
        "setup-oauth",
        "--device",
        "--no-browser",
        "--timeout",
        "30s",
    ];
    if json {
        v.push("--json");
    }
    v
}

#[tokio::test]
async fn snapshot_setup_oauth_device() {
    let granted = || token_response(NEW_PAT, 1_209_599, Some((NEW_INT_REFRESH, 7_775_999)));
    let t = oauth_env().await;
    mock_device(&t, granted()).await;
    snap("setup_oauth_device_json", &t, &run(&t, &setup_args(true)));
    let t = oauth_env().await;
    mock_device(&t, granted()).await;
    snap("setup_oauth_device_human", &t, &run(&t, &setup_args(false)));

    let denied = || ResponseTemplate::new(400).set_body_json(json!({"error": "access_denied"}));
    let t = oauth_env().await;
    mock_device(&t, denied()).await;
    snap(
        "setup_oauth_device_denied_human",
        &t,
        &run(&t, &setup_args(false)),
    );
    let t = oauth_env().await;
    mock_device(&t, denied()).await;
    snap(
        "setup_oauth_device_denied_json",
        &t,
        &run(&t, &setup_args(true)),
    );
}

// ---------------------------------------------------------------- watch

/// A run that prints one JSON line per event (`watch --json`): each line
/// shown pretty, so that the filters for times and seconds apply.
fn render_events(t: &TestEnv, out: &Output) -> String {
    let text = render(t, out);
    let (head, rest) = text.split_once("--- stdout ---\n").expect("several lines");
    let (events, err) = rest.split_once("--- stderr ---\n").unwrap();
    let pretty: Vec<String> = events
        .lines()
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap(),
            Err(_) => l.to_string(),
        })
        .collect();
    format!(
        "{head}--- stdout (one JSON event a line, shown pretty) ---\n{}\n--- stderr ---\n{err}",
        pretty.join("\n")
    )
}

fn snap_events(name: &str, t: &TestEnv, out: &Output) {
    let text = render_events(t, out);
    let mut s = settings();
    // A hook's run time is measured.
    s.add_filter(r#""durationMs": [0-9]+"#, r#""durationMs": "[MS]""#);
    s.bind(|| insta::assert_snapshot!(name, text));
}

#[tokio::test]
async fn snapshot_watch_help_pages() {
    let t = TestEnv::new().await;
    for page in ["watch", "healthcheck"] {
        let out = scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), t.dir.path())
            .env("HOME", t.dir.path())
            .env("COLUMNS", "100")
            .args([page, "--help"])
            .output()
            .unwrap();
        let text = render(&t, &out);
        help_settings().bind(|| insta::assert_snapshot!(format!("help_{page}"), text));
    }
}

#[tokio::test]
async fn snapshot_watch_once_events() {
    // A working token: started, validated.
    let t = TestEnv::new().await;
    fresh_env(&t);
    t.mock_validate(OLD_ACCESS, 200).await;
    snap_events(
        "watch_once_validated_json",
        &t,
        &run(
            &t,
            &["--json", "watch", "--once", "--health", "127.0.0.1:0"],
        ),
    );

    // An expired one: refreshed, then the hook's run.
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-snap-watch-level1-access");
    expired_env(&t);
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 86_400, None),
    )
    .await;
    snap_events(
        "watch_once_refreshed_json",
        &t,
        &run(&t, &["--json", "watch", "--once", "--on-refresh", "exit 3"]),
    );

    // A refresh token near its end: rolled through level 2.
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-snap-watch-rolled-access");
    let new_rt = t.secret("SECRET-snap-watch-rolled-refresh");
    t.write_env(&format!(
        "{}WEBEX_SERVICE_APP_REFRESH_TOKEN_EXPIRES_AT={}\n",
        env_with(OLD_ACCESS, Some(&in_secs(86_400)), Some(OLD_REFRESH)),
        in_secs(3600)
    ));
    t.mock_mint(
        PAT,
        token_response(&new, 1_209_600, Some((&new_rt, 7_776_000))),
    )
    .await;
    t.mock_validate(&new, 200).await;
    snap_events(
        "watch_once_rolled_json",
        &t,
        &run(&t, &["--json", "watch", "--once"]),
    );

    // Every level rejected: the failed event, exit 4.
    let t = TestEnv::new().await;
    expired_env(&t);
    reject_all(&t).await;
    snap_events(
        "watch_once_rejected_json",
        &t,
        &run(&t, &["--json", "watch", "--once"]),
    );
    snap_events(
        "watch_once_rejected_human",
        &t,
        &run(&t, &["watch", "--once"]),
    );
}

#[tokio::test]
async fn snapshot_watch_once_datasources_events() {
    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let fresh = t.secret(&jws("watch-fresh", 20 * 3600));
    let soon = t.secret(&jws("watch-soon", 3600));
    mock_list(
        &t,
        vec![source("ds-fresh", &fresh), source("ds-soon", &soon)],
    )
    .await;
    mock_put(&t, "ds-soon", Renew("ds-soon".into())).await;
    snap_events(
        "watch_once_datasources_extended_json",
        &t,
        &run(&t, &["--json", "watch", "--once", "--datasources"]),
    );

    let mut t = TestEnv::new().await;
    fresh_env(&t);
    let mut items = Vec::new();
    for id in ["ds-404", "ds-ok"] {
        let tok = t.secret(&jws(&format!("watch-{id}"), 600));
        items.push(source(id, &tok));
    }
    mock_list(&t, items).await;
    mock_put(
        &t,
        "ds-404",
        ResponseTemplate::new(404).set_body_json(webex_error("Data source not found")),
    )
    .await;
    mock_put(&t, "ds-ok", Renew("ds-ok".into())).await;
    snap_events(
        "watch_once_datasources_partial_json",
        &t,
        &run(&t, &["--json", "watch", "--once", "--datasources"]),
    );

    // The list itself fails: the run's own failed event.
    let t = TestEnv::new().await;
    fresh_env(&t);
    Mock::given(method("GET"))
        .and(path("/v1/dataSources"))
        .respond_with(ResponseTemplate::new(403).set_body_json(webex_error("Not allowed")))
        .mount(&t.server)
        .await;
    snap_events(
        "watch_once_datasources_list_failed_json",
        &t,
        &run(&t, &["--json", "watch", "--once", "--datasources"]),
    );
}

// ---------------------------------------------------------------- several orgs

#[test]
fn snapshot_refresh_orgs_json() {
    let sim = webex_sim::Sim::start(webex_sim::SimOptions::default().with_org_count(2)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    sim.write_demo_files(dir.path()).unwrap();
    let _ = std::fs::remove_file(dir.path().join(".env"));
    let out = scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), dir.path())
        .env("COLUMNS", "100")
        .args(["--json", "refresh"])
        .output()
        .unwrap();
    let text = render_at(dir.path(), &sim.root_url(), &out);
    let mut s = settings();
    // The simulator makes up each org's id.
    s.add_filter(
        r#""targetOrgId": "[A-Za-z0-9_-]+""#,
        r#""targetOrgId": "[ORG]""#,
    );
    s.bind(|| insta::assert_snapshot!("refresh_orgs_json", text));
}
