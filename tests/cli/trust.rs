//! The second hardening round (contract: "Files that must be refused,
//! signals, outages"): each family, from outside, with exit code, message,
//! files unchanged and no secret in any output.

use crate::common::*;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wiremock::ResponseTemplate;

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo").arg(p).status().unwrap().success();
    assert!(ok, "mkfifo {}", p.display());
}

/// A character device node inside the test's own temp dir (root only);
/// `None` where this user cannot create one.
fn mknod_char(p: &Path, major: u32, minor: u32) -> Option<()> {
    let ok = Command::new("mknod")
        .arg(p)
        .args(["c", &major.to_string(), &minor.to_string()])
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    ok.then_some(())
}

fn is_fifo(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(p)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false)
}

/// Runs with a deadline: a run that blocks on a FIFO fails the test
/// instead of hanging it.
fn run_bounded(t: &TestEnv, args: &[&str]) -> std::process::Output {
    let started = Instant::now();
    let mut c = t.cmd();
    c.args(args).timeout(Duration::from_secs(20));
    let out = c.output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the run blocked"
    );
    t.assert_no_secrets(&out, &[]);
    out
}

#[tokio::test]
async fn a_fifo_env_file_is_refused_before_any_request() {
    let t = TestEnv::new().await;
    mkfifo(&t.env_path());
    for cmd in ["refresh", "token", "status"] {
        let out = run_bounded(&t, &[cmd]);
        assert_eq!(code(&out), 3, "{cmd}: {}", stderr(&out));
        assert!(stderr(&out).contains("FIFO"), "{}", stderr(&out));
        assert!(stderr(&out).contains(".env"), "{}", stderr(&out));
    }
    assert!(is_fifo(&t.env_path()), "the FIFO must stay a FIFO");
    assert_eq!(t.requests().await.len(), 0);
}

#[tokio::test]
async fn a_symlink_to_a_device_is_never_replaced() {
    let t = TestEnv::new().await;
    let dev = t.path("null-device");
    if mknod_char(&dev, 1, 3).is_none() {
        eprintln!("skipped: cannot create a device node here (not root)");
        return;
    }
    std::os::unix::fs::symlink(&dev, t.env_path()).unwrap();
    let out = run_bounded(&t, &["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    use std::os::unix::fs::FileTypeExt;
    let m = std::fs::symlink_metadata(&dev).unwrap();
    assert!(
        m.file_type().is_char_device(),
        "the device node was replaced"
    );
    assert!(
        std::fs::symlink_metadata(t.env_path())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(t.requests().await.len(), 0);
    // --env-file pointing straight at it is refused the same way.
    let out = run_bounded(&t, &["--env-file", dev.to_str().unwrap(), "refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}

#[tokio::test]
async fn fifo_config_audit_and_lock_paths_are_refused() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(-60)),
        Some(OLD_REFRESH),
    ));
    let before = t.read_env();
    // Audit log.
    let audit = t.path("audit.fifo");
    mkfifo(&audit);
    let out = run_bounded(&t, &["--audit-log", audit.to_str().unwrap(), "refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("audit log"), "{}", stderr(&out));
    // Lock file as a symlink (followed, it could point anywhere).
    std::os::unix::fs::symlink(t.path("elsewhere"), t.path(".env.lock")).unwrap();
    let out = run_bounded(&t, &["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("lock file"), "{}", stderr(&out));
    assert!(!t.path("elsewhere").exists());
    std::fs::remove_file(t.path(".env.lock")).unwrap();
    // Config file.
    let cfg = t.path("config.fifo");
    mkfifo(&cfg);
    let out = run_bounded(&t, &["--config", cfg.to_str().unwrap(), "refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(is_fifo(&cfg));
    assert_eq!(t.read_env(), before);
    assert_eq!(t.requests().await.len(), 0);
}

#[tokio::test]
async fn oversized_inputs_are_refused() {
    let t = TestEnv::new().await;
    let big = "X=1\n".repeat(300_000);
    t.write_env(&big);
    let out = run_bounded(&t, &["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(t.read_env().len(), big.len());
    std::fs::write(t.config_path(), vec![b' '; 2 * 1024 * 1024]).unwrap();
    let out = run_bounded(&t, &["--env-file", "other.env", "refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}

#[tokio::test]
async fn cr_only_line_endings_and_control_characters_are_refused_not_rewritten() {
    let t = TestEnv::new().await;
    let cr = format!(
        "OTHER=keep\rWEBEX_SERVICE_APP_ACCESS_TOKEN={OLD_ACCESS}\rWEBEX_SERVICE_APP_REFRESH_TOKEN={OLD_REFRESH}\r"
    );
    t.write_env(&cr);
    let out = run_bounded(&t, &["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(t.read_env(), cr);
    let ctl = format!(
        "WEBEX_SERVICE_APP_ACCESS_TOKEN=\"{OLD_ACCESS}\\u001b\"\nWEBEX_SERVICE_APP_ACCESS_TOKEN_EXPIRES_AT={}\nA=\"tab\there\"\n",
        in_secs(86_400)
    );
    let ctl = ctl.replace("\\u001b", " x");
    t.write_env(&ctl);
    let out = run_bounded(&t, &["token"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("WEBEX_SERVICE_APP_ACCESS_TOKEN"),
        "{}",
        stderr(&out)
    );
    assert_eq!(t.read_env(), ctl);
    assert_eq!(t.requests().await.len(), 0);
}

#[tokio::test]
async fn a_secret_echoed_near_the_cut_never_shows_in_part() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(-60)),
        Some(OLD_REFRESH),
    ));
    // The server quotes the refresh token right where messages are cut.
    let msg = format!("{}{OLD_REFRESH}{}", "x".repeat(285), "y".repeat(50));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant", "message": msg})),
    )
    .await;
    t.mock_mint(
        PAT,
        ResponseTemplate::new(403).set_body_json(webex_error("forbidden")),
    )
    .await;
    let out = t.run(&["--json", "refresh"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let audit = std::fs::read_to_string(t.path(".env.audit.jsonl")).unwrap();
    let prefix = &OLD_REFRESH[..10];
    for (what, text) in [
        ("stdout", stdout(&out)),
        ("stderr", stderr(&out)),
        ("audit", audit),
    ] {
        assert!(
            !text.contains(prefix),
            "{what} shows part of the refresh token:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_redirect_is_a_network_problem_not_a_rejection() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    let before = t.read_env();
    wiremock::Mock::given(wiremock::matchers::path("/v1/dataSources"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "http://portal.example.net/login"),
        )
        .mount(&t.server)
        .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("portal.example.net"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("setup-oauth"), "{}", stderr(&out));
    assert_eq!(t.count("POST", "/v1/access_token").await, 0);
    assert_eq!(t.read_env(), before);
}

#[tokio::test]
async fn token_hands_over_a_still_valid_token_during_an_outage() {
    let t = TestEnv::new().await;
    // 30 minutes left: within --min-valid (1h), so `token` tries to refresh.
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(1800)),
        Some(OLD_REFRESH),
    ));
    let before = t.read_env();
    wiremock::Mock::given(wiremock::matchers::path("/v1/access_token"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&t.server)
        .await;
    let mut c = t.cmd();
    c.env("WEBEX_TOKEN_TEST_NO_RETRY_DELAY", "1")
        .args(["token"]);
    let out = c.output().unwrap();
    t.assert_no_secrets(&out, &[OLD_ACCESS]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), OLD_ACCESS);
    assert!(stderr(&out).contains("still works"), "{}", stderr(&out));
    assert_eq!(t.read_env(), before);
    // An expired token is never handed over.
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(-10)),
        Some(OLD_REFRESH),
    ));
    let mut c = t.cmd();
    c.env("WEBEX_TOKEN_TEST_NO_RETRY_DELAY", "1")
        .args(["token"]);
    let out = c.output().unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[tokio::test]
async fn token_fails_when_stdout_cannot_be_written() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    let full = t.path("full-device");
    if mknod_char(&full, 1, 7).is_none() {
        eprintln!("skipped: cannot create a device node here (not root)");
        return;
    }
    let sink = std::fs::OpenOptions::new().write(true).open(&full).unwrap();
    let out = t.std_cmd().arg("token").stdout(sink).output().unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("stdout"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(OLD_ACCESS));
    // A reader that went away (EPIPE) stays quiet.
    let mut child = t
        .std_cmd()
        .arg("token")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!stderr(&out).contains("error"), "{}", stderr(&out));
}

#[tokio::test]
async fn plain_http_to_another_host_is_refused() {
    let t = TestEnv::new().await;
    let out = t.run(&["--api-base", "http://webex.example.com/v1", "status"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let mut cfg = default_config(true);
    cfg["apiBaseUrl"] = json!("http://10.1.2.3/v1");
    t.write_config(&cfg);
    let mut c = t.cmd();
    c.env_remove("WEBEX_API_BASE_URL").arg("status");
    let out = c.output().unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("apiBaseUrl"), "{}", stderr(&out));
    // An empty WEBEX_API_BASE_URL is "not set", not a usage error.
    t.write_config(&default_config(true));
    let mut c = t.cmd();
    c.env("WEBEX_API_BASE_URL", "").args(["--json", "status"]);
    let out = c.output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["apiBase"], "https://webexapis.com/v1");
}

#[tokio::test]
async fn lock_and_audit_files_belong_to_the_env_files_owner() {
    use std::os::unix::fs::MetadataExt;
    let t = TestEnv::new().await;
    if std::fs::metadata(t.dir.path()).unwrap().uid() != 0 {
        eprintln!("skipped: needs root to act as `sudo webex-token`");
        return;
    }
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(-60)),
        Some(OLD_REFRESH),
    ));
    // The service user's env file; a run as root must not take the
    // lock and audit files away from it.
    let (uid, gid) = (65534u32, 65534u32);
    std::os::unix::fs::chown(t.env_path(), Some(uid), Some(gid)).unwrap();
    let new = "SECRET-new-access-after-sudo";
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(new, 3600 * 24, None),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for f in [".env.lock", ".env.audit.jsonl", ".env"] {
        let m = std::fs::metadata(t.path(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "{f}");
    }
    for f in [".env.lock", ".env.audit.jsonl"] {
        let m = std::fs::metadata(t.path(f)).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600, "{f}");
    }
}

#[tokio::test]
async fn sigterm_mid_exchange_keeps_the_rotated_refresh_token() {
    let mut t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(-60)),
        Some(OLD_REFRESH),
    ));
    let (new_at, new_rt) = (
        t.secret("SECRET-access-after-signal"),
        t.secret("SECRET-rotated-refresh-after-signal"),
    );
    // The server has rotated (the old refresh token is gone) and answers
    // slowly: the signal arrives while the answer is on its way.
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new_at, 3600 * 24, Some((&new_rt, 7_776_000)))
            .set_delay(Duration::from_millis(1500)),
    )
    .await;
    for signal in ["TERM", "INT"] {
        t.write_env(&env_with(
            OLD_ACCESS,
            Some(&in_secs(-60)),
            Some(OLD_REFRESH),
        ));
        let child = t
            .std_cmd()
            .arg("refresh")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        send_signal(child.id(), signal);
        let out = child.wait_with_output().unwrap();
        t.assert_no_secrets(&out, &[]);
        let want = if signal == "TERM" { 143 } else { 130 };
        assert_eq!(code(&out), want, "{signal}: {}", stderr(&out));
        let v = t.env_values();
        assert_eq!(v["WEBEX_SERVICE_APP_REFRESH_TOKEN"], new_rt, "{signal}");
        assert_eq!(v["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new_at, "{signal}");
    }
}

#[tokio::test]
async fn a_signal_with_no_exchange_in_flight_stops_at_once() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    let before = t.read_env();
    // A slow validation: no token is being issued, nothing to protect.
    t.mock_validate(OLD_ACCESS, 200).await;
    wiremock::Mock::given(wiremock::matchers::path("/v1/dataSources"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .with_priority(1)
        .mount(&t.server)
        .await;
    let child = t
        .std_cmd()
        .arg("refresh")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    send_signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(code(&out), 143, "{}", stderr(&out));
    assert_eq!(t.read_env(), before);
}

#[test]
fn env_files_sharing_one_config_renew_the_personal_token_once() {
    use webex_sim::{Sim, SimOptions, TokenKind};
    // Rotation on: a second use of the integration refresh token would be
    // refused, so two runs both renewing would strand one of them.
    let sim = Sim::start(SimOptions {
        rotate_refresh_tokens: true,
        // Every answer takes a while, so the six runs overlap for real.
        latency: Duration::from_millis(200),
        ..SimOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    sim.write_demo_files(dir.path()).unwrap();
    assert!(sim.expire_all(TokenKind::Personal) >= 1);
    sim.clear_requests();
    let children: Vec<_> = (0..6)
        .map(|i| {
            scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), dir.path())
                .args(["--env-file", &format!("app{i}.env"), "refresh"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "run {i}: {}", stderr(&out));
    }
    let integration = sim.credentials().integration_client_id;
    let renewals = sim
        .requests()
        .iter()
        .filter(|r| {
            r.path == "/v1/access_token"
                && r.form
                    .as_ref()
                    .and_then(|f| f.get("client_id"))
                    .is_some_and(|c| *c == integration)
        })
        .count();
    assert_eq!(renewals, 1, "level 3 must run once for the shared config");
    for i in 0..6 {
        let vals: std::collections::HashMap<String, String> =
            dotenvy::from_path_iter(dir.path().join(format!("app{i}.env")))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
        let at = &vals["WEBEX_SERVICE_APP_ACCESS_TOKEN"];
        assert!(sim.is_token_valid(at), "app{i}.env holds a working token");
    }
}

#[tokio::test]
async fn status_check_does_not_pass_on_unknown_expiries() {
    let t = TestEnv::new().await;
    // The service-app refresh token's expiry is unknown (never recorded).
    t.write_config(&config_with_known_integration_expiry(90 * 86_400));
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    let out = t.run(&["status", "--check", "1d"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("service-app refresh token expiry unknown"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("refresh --mint"), "{}", stderr(&out));
}

#[tokio::test]
async fn hints_name_what_is_really_wrong() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-60)), None));
    // Minting refused for the service app's own client credentials.
    t.mock_mint(
        PAT,
        ResponseTemplate::new(400).set_body_json(webex_error("Invalid client credentials")),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("serviceApp.clientSecret"),
        "{}",
        stderr(&out)
    );
    // A bad value from the environment names the variable, not the flag.
    let mut c = t.cmd();
    c.env("WEBEX_TOKEN_LOCK_TIMEOUT", "soon").arg("status");
    let out = c.output().unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("WEBEX_TOKEN_LOCK_TIMEOUT"),
        "{}",
        stderr(&out)
    );
    let out = t.run(&["--http-timeout", "0", "status"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

#[tokio::test]
async fn a_404_without_a_webex_body_blames_the_api_base() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-60)), None));
    // Nothing mounted for the mint path: wiremock's bare 404.
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("--api-base"), "{}", stderr(&out));
}

#[tokio::test]
async fn the_tracking_id_header_is_read_whatever_its_case() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(-60)),
        Some(OLD_REFRESH),
    ));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        ResponseTemplate::new(400)
            .insert_header("Trackingid", "ROUTER_CASE_TEST")
            .set_body_json(json!({"error": "invalid_grant"})),
    )
    .await;
    t.mock_mint(
        PAT,
        ResponseTemplate::new(403).set_body_json(json!({"message": "no"})),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ROUTER_CASE_TEST"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn ctrl_c_stops_setup_oauth_while_it_waits_for_the_person() {
    let t = TestEnv::new().await;
    let before = std::fs::read_to_string(t.config_path()).unwrap();
    // Waiting for a pasted address on a stdin that stays open.
    let mut child = t
        .std_cmd()
        .args([
            "setup-oauth",
            "--manual",
            "--no-browser",
            "--timeout",
            "60s",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let started = Instant::now();
    send_signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "Ctrl-C was not acted on"
    );
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(t.config_path()).unwrap(), before);
}

/// Trust round 3, item 1: a token Webex rejected (401 on validation) in this
/// run is never handed over or called working, whatever else failed.
#[tokio::test]
async fn a_token_webex_rejected_is_never_handed_over() {
    let t = TestEnv::new().await;
    // A day left: `token --validate` asks Webex, which says 401.
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    let before = t.read_env();
    t.mock_validate(OLD_ACCESS, 401).await;
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, oauth_error("invalid_grant"))
        .await;
    t.mock_mint(
        PAT,
        ResponseTemplate::new(401).set_body_json(webex_error("Invalid token")),
    )
    .await;
    t.mock_refresh(INT_CLIENT_ID, INT_REFRESH, oauth_error("invalid_grant"))
        .await;

    let out = t.run(&["token", "--validate"]);
    t.assert_no_secrets(&out, &[]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(!stderr(&out).contains("still works"), "{}", stderr(&out));
    assert_eq!(t.read_env(), before);

    // A transient failure after the rejection: still not handed over.
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    t.mock_validate(OLD_ACCESS, 401).await;
    wiremock::Mock::given(wiremock::matchers::path("/v1/access_token"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&t.server)
        .await;
    let mut c = t.cmd();
    c.env("WEBEX_TOKEN_TEST_NO_RETRY_DELAY", "1")
        .args(["token", "--validate"]);
    let out = c.output().unwrap();
    t.assert_no_secrets(&out, &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(!stderr(&out).contains("still works"), "{}", stderr(&out));
}

/// Smaller item: `token >&-` (stdout closed) is exit 1, not a silent 0.
#[tokio::test]
async fn token_with_stdout_closed_fails() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    // The same command the tests always run, started through a shell that
    // closes descriptor 1 first.
    let bin = t.std_cmd();
    let out = scrubbed("sh", t.dir.path())
        .envs(bin.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .arg("-c")
        .arg("exec \"$0\" token >&-")
        .arg(bin.get_program())
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("stdout"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(OLD_ACCESS));
}

/// Trust round 3, item 3: a token answer holding quoting or substitution
/// characters is refused as malformed (exit 1, nothing written), so the
/// program never writes an env file that its next run (or `exec`) refuses.
#[tokio::test]
async fn a_token_answer_with_shell_metacharacters_is_malformed() {
    for bad in ["mint'$X", "mint\"x", "mint\\x", "mint$(id)", "mint`id`"] {
        let t = TestEnv::new().await;
        t.mock_mint(PAT, token_response(bad, 1_209_600, Some(("R1", 7_776_000))))
            .await;
        let out = t.run(&["refresh"]);
        assert_eq!(code(&out), 1, "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("bad response"),
            "{bad}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains(bad), "{bad}: {}", stderr(&out));
        assert!(!t.env_path().exists(), "{bad}: the env file was written");
        // The next run is not locked out by a file it wrote.
        let out = t.run(&["status"]);
        assert_eq!(code(&out), 0, "{bad}: {}", stderr(&out));
    }
}

/// Trust round 3, item 2: server text that quotes a secret is redacted of
/// every secret the run knows, not only the one sent with that request: a
/// level-1 error quoting the personal token, a level-2 error quoting the
/// integration's refresh token, in stderr, `--json` and the audit log.
#[tokio::test]
async fn every_known_secret_is_redacted_whichever_request_it_answered() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(-60)),
        Some(OLD_REFRESH),
    ));
    let quoting = |what: &str| {
        ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "message": format!("rejected; your other credentials are {what} and {PAT}"),
            "trackingId": "ROUTER_TEST_QUOTE",
        }))
    };
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, quoting(INT_REFRESH))
        .await;
    t.mock_mint(
        PAT,
        ResponseTemplate::new(401).set_body_json(webex_error(&format!(
            "Invalid token; integration secret {INT_SECRET}, service secret {SA_SECRET}"
        ))),
    )
    .await;
    t.mock_refresh(INT_CLIENT_ID, INT_REFRESH, quoting(OLD_ACCESS))
        .await;
    for args in [&["refresh"][..], &["refresh", "--json"][..]] {
        let out = t.run(args);
        assert_eq!(code(&out), 4, "{}", stderr(&out));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(all.contains("[redacted"), "{all}");
    }
    let audit = std::fs::read_to_string(t.path(".env.audit.jsonl")).unwrap();
    for s in [
        PAT,
        INT_REFRESH,
        INT_SECRET,
        SA_SECRET,
        OLD_ACCESS,
        OLD_REFRESH,
    ] {
        assert!(!audit.contains(s), "audit log holds a secret:\n{audit}");
    }
    // Trust round 3, item 14: the audit line of an exhausted chain says a
    // person must re-authorize.
    let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(last["outcome"], "failed", "{last}");
    assert_eq!(last["reauthorizationRequired"], true, "{last}");
}

/// Smaller items of trust round 3: a NUL in a config token is a config
/// error (exit 3 naming the key, nothing sent), and C1 control characters
/// from a server reach `--json` output only escaped.
#[tokio::test]
async fn a_nul_in_the_config_is_exit_3_and_c1_controls_are_escaped_in_json() {
    let t = TestEnv::new().await;
    let mut cfg = default_config(true);
    cfg["tokenManager"]["personalAccessToken"] = json!(format!("{PAT}\u{0}x"));
    t.write_config(&cfg);
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`tokenManager.personalAccessToken`"),
        "{}",
        stderr(&out)
    );
    assert!(t.requests().await.is_empty(), "a request was sent");

    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(-60)),
        Some(OLD_REFRESH),
    ));
    let c1 = ResponseTemplate::new(400).set_body_json(json!({
        "error": "invalid_grant",
        "message": "bad\u{9b}31mred\u{85}next\u{7f}",
        "trackingId": "ROUTER_C1",
    }));
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, c1).await;
    t.mock_mint(
        PAT,
        ResponseTemplate::new(401).set_body_json(webex_error("Invalid token")),
    )
    .await;
    t.mock_refresh(INT_CLIENT_ID, INT_REFRESH, oauth_error("invalid_grant"))
        .await;
    let out = t.run(&["refresh", "--json"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        !text.chars().any(|c| ('\u{7f}'..='\u{9f}').contains(&c)),
        "raw C1 on stdout: {text:?}"
    );
    assert!(
        !stderr(&out)
            .chars()
            .any(|c| ('\u{7f}'..='\u{9f}').contains(&c))
    );
    let _: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
}

/// Trust round 3, item 18: on a fresh setup (no env file yet), a run as
/// root creates the env file, its lock and audit log with the directory's
/// owner and group, so the service user is not locked out.
#[tokio::test]
async fn a_run_as_root_on_a_fresh_setup_leaves_files_to_the_directorys_owner() {
    use std::os::unix::fs::MetadataExt;
    let t = TestEnv::new().await;
    if std::fs::metadata(t.dir.path()).unwrap().uid() != 0 {
        eprintln!("skipped: needs root to act as `sudo webex-token`");
        return;
    }
    let (uid, gid) = (65534u32, 65533u32);
    std::os::unix::fs::chown(t.dir.path(), Some(uid), Some(gid)).unwrap();
    let new = "SECRET-first-access-as-root";
    t.mock_mint(
        PAT,
        token_response(new, 3600 * 24, Some(("SECRET-first-refresh", 7_776_000))),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for f in [".env", ".env.lock", ".env.audit.jsonl"] {
        let m = std::fs::metadata(t.path(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "{f}");
        assert_eq!(m.mode() & 0o777, 0o600, "{f}");
    }
}
