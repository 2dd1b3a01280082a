//! `token`, `status`, `exec`, `completions`, and the global output flags.

use crate::common::*;
use serde_json::Value;

#[tokio::test]
async fn token_with_fresh_expiry_makes_no_request_and_prints_only_the_token() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    let out = t.run_allowing(&["token"], &[OLD_ACCESS]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{OLD_ACCESS}\n"));
    assert_eq!(t.requests().await.len(), 0);
    assert!(!t.path(".env.lock").exists(), "the fast path takes no lock");
}

#[tokio::test]
async fn token_refreshes_when_expired() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-token-cmd-new");
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-1)), Some(OLD_REFRESH)));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 3600 * 24, None),
    )
    .await;
    let out = t.run_allowing(&["token", "-q"], &[&new]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{new}\n"));
    assert_eq!(stderr(&out), "");
    assert_eq!(t.env_values()["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new);
}

#[tokio::test]
async fn token_validate_checks_with_webex() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    t.mock_validate(OLD_ACCESS, 200).await;
    let out = t.run_allowing(&["token", "--validate"], &[OLD_ACCESS]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.count("GET", "/v1/dataSources").await, 1);
}

#[tokio::test]
async fn token_failure_prints_nothing_on_stdout() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-1)), Some(OLD_REFRESH)));
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, oauth_error("invalid_grant"))
        .await;
    t.mock_mint(PAT, wiremock::ResponseTemplate::new(401)).await;
    t.mock_refresh(INT_CLIENT_ID, INT_REFRESH, oauth_error("invalid_grant"))
        .await;
    let out = t.run(&["token"]);
    assert_eq!(code(&out), 4);
    assert_eq!(stdout(&out), "");
}

#[tokio::test]
async fn status_reads_only() {
    let t = TestEnv::new().await;
    let env = env_with(OLD_ACCESS, Some(&in_secs(86_400)), Some(OLD_REFRESH));
    t.write_env(&env);
    let before = std::fs::read(t.config_path()).unwrap();
    let out = t.run(&["status"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("service-app access token"), "{s}");
    assert!(s.contains("present"), "{s}");
    assert!(s.contains("sha256:"), "{s}");
    assert!(s.contains("level 1 is tried first"), "{s}");
    assert_eq!(t.requests().await.len(), 0);
    assert_eq!(t.read_env(), env);
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    assert!(!t.path(".env.lock").exists());
    assert!(!t.path(".env.audit.jsonl").exists());
}

#[tokio::test]
async fn status_online_and_json() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    t.mock_validate(OLD_ACCESS, 200).await;
    let out = t.run(&["status", "--online", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["schemaVersion"], 1);
    assert_eq!(v["command"], "status");
    assert_eq!(v["online"]["valid"], true);
    assert_eq!(v["credentials"]["serviceAccessToken"]["present"], true);
    assert!(
        v["credentials"]["serviceAccessToken"]["secondsLeft"]
            .as_i64()
            .unwrap()
            > 86_000
    );
    assert_eq!(v["credentials"]["integrationRefreshToken"]["present"], true);
    assert_eq!(v["nextLevel"], 1);
    assert_eq!(t.count("GET", "/v1/dataSources").await, 1);
}

#[tokio::test]
async fn status_check_exits_5_for_a_lapsing_refresh_token() {
    let t = TestEnv::new().await;
    t.write_config(&config_with_known_integration_expiry(90 * 86_400));
    let mut env = env_with(OLD_ACCESS, Some(&in_secs(86_400)), Some(OLD_REFRESH));
    env.push_str(&format!(
        "WEBEX_SERVICE_APP_REFRESH_TOKEN_EXPIRES_AT={}\n",
        in_secs(3 * 86_400)
    ));
    t.write_env(&env);
    let ok = t.run(&["status", "--check", "1d"]);
    assert_eq!(code(&ok), 0, "{}", stderr(&ok));
    let out = t.run(&["status", "--check", "7d"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("service-app refresh token"),
        "{}",
        stderr(&out)
    );
    assert_eq!(t.read_env(), env);
}

#[tokio::test]
async fn refresh_json_is_one_object() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    t.mock_validate(OLD_ACCESS, 200).await;
    let out = t.run(&["--json", "refresh"]);
    assert_eq!(code(&out), 0);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["action"], "none");
    assert_eq!(v["validation"], "checked");
    assert_eq!(v["schemaVersion"], 1);
}

#[tokio::test]
async fn error_json_on_stdout_with_exit_code() {
    let t = TestEnv::new().await;
    std::fs::remove_file(t.config_path()).unwrap();
    let out = t.run(&["refresh", "--json"]);
    assert_eq!(code(&out), 3);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["exitCode"], 3);
    assert_eq!(v["error"]["kind"], "config");
}

#[tokio::test]
async fn quiet_prints_nothing_on_success() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    t.mock_validate(OLD_ACCESS, 200).await;
    let out = t.run(&["refresh", "-q"]);
    assert_eq!(code(&out), 0);
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "");
}

#[tokio::test]
async fn exec_passes_env_and_exit_code() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    let out = t.run(&[
        "exec",
        "--",
        "sh",
        "-c",
        "test \"$WEBEX_SERVICE_APP_ACCESS_TOKEN\" = \"$EXPECTED\" && echo same; exit 7",
    ]);
    // The env var EXPECTED is not set above; run again with it.
    assert_eq!(code(&out), 7);
    let out = t
        .cmd()
        .env("EXPECTED", OLD_ACCESS)
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            "test \"$WEBEX_SERVICE_APP_ACCESS_TOKEN\" = \"$EXPECTED\" && echo same; exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 7);
    assert_eq!(stdout(&out), "same\n");
    assert_eq!(t.requests().await.len(), 0);
    let missing = t.run(&["exec", "--", "definitely-not-a-command-xyz"]);
    assert_eq!(code(&missing), 127, "{}", stderr(&missing));
}

#[tokio::test]
async fn completions_generate() {
    let t = TestEnv::new().await;
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = t.cmd().args(["completions", shell]).output().unwrap();
        assert_eq!(code(&out), 0, "{shell}");
        assert!(stdout(&out).contains("webex-token"), "{shell}");
    }
    let bad = t.cmd().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(code(&bad), 2);
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let t = TestEnv::new().await;
    for args in [
        vec!["refresh", "--min-valid", "soon"],
        vec!["frobnicate"],
        vec!["refresh", "--write-mode", "sideways"],
        vec!["--api-base", "not-a-url", "status"],
    ] {
        let out = t.cmd().args(&args).output().unwrap();
        assert_eq!(code(&out), 2, "{args:?}");
    }
}

#[tokio::test]
async fn global_flags_after_the_subcommand_and_env_vars() {
    let t = TestEnv::new().await;
    std::fs::create_dir(t.path("sub")).unwrap();
    std::fs::rename(t.config_path(), t.path("sub/cfg.json")).unwrap();
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(86_400)), None));
    std::fs::rename(t.env_path(), t.path("sub/prod.env")).unwrap();
    let out = t.run(&[
        "status",
        "--config",
        "sub/cfg.json",
        "--env-file",
        "sub/prod.env",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(v["envFile"].as_str().unwrap().ends_with("sub/prod.env"));
    assert!(std::path::Path::new(v["envFile"].as_str().unwrap()).is_absolute());
    let out = t
        .cmd()
        .env("WEBEX_TOKEN_CONFIG", t.path("sub/cfg.json"))
        .env("WEBEX_TOKEN_ENV_FILE", t.path("sub/prod.env"))
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[tokio::test]
async fn other_time_zone_still_writes_utc() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-tz");
    t.write_env(&env_with(
        OLD_ACCESS,
        Some("2020-01-01T10:00:00+05:00"),
        Some(OLD_REFRESH),
    ));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 3600 * 24, None),
    )
    .await;
    let out = t
        .cmd()
        .env("TZ", "America/New_York")
        .args(["refresh"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = t.env_values();
    assert!(v["WEBEX_SERVICE_APP_ACCESS_TOKEN_EXPIRES_AT"].ends_with('Z'));
}

#[tokio::test]
async fn lock_held_elsewhere_times_out_with_exit_1() {
    let t = TestEnv::new().await;
    let env = env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH));
    t.write_env(&env);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(t.path(".env.lock"))
        .unwrap();
    lock.lock().unwrap();
    let out = t.run(&["refresh", "--lock-timeout", "300ms"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains(".env.lock"), "{}", stderr(&out));
    assert_eq!(t.requests().await.len(), 0);
    assert_eq!(t.read_env(), env);
}

#[tokio::test]
async fn audit_line_for_a_refresh() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-audited");
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH)));
    t.mock_refresh(SA_CLIENT_ID, OLD_REFRESH, token_response(&new, 3600, None))
        .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0);
    let audit = std::fs::read_to_string(t.path(".env.audit.jsonl")).unwrap();
    let line: Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(line["level"], 1);
    assert_eq!(line["outcome"], "ok");
    assert!(
        line["accessTokenFingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(mode(&t.path(".env.audit.jsonl")), 0o600);
    // --audit-log off writes none.
    std::fs::remove_file(t.path(".env.audit.jsonl")).unwrap();
    let out = t.run(&["refresh", "--force", "--audit-log", "off"]);
    assert_eq!(code(&out), 0);
    assert!(!t.path(".env.audit.jsonl").exists());
}

#[tokio::test]
async fn man_page_generates() {
    let t = TestEnv::new().await;
    let out = t.cmd().arg("man").output().unwrap();
    assert_eq!(code(&out), 0);
    let page = stdout(&out);
    assert!(page.contains(".TH"), "{page}");
    for needle in [
        "COMMANDS",
        "ENVIRONMENT",
        "EXIT STATUS",
        "WEBEX_TOKEN_CONFIG",
        "min\\-valid",
        "setup\\-oauth",
    ] {
        assert!(page.contains(needle), "{needle} missing from the man page");
    }
}

#[tokio::test]
async fn log_format_json_lines_parse() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    t.mock_validate(OLD_ACCESS, 200).await;
    let out = t.run(&["-v", "--log-format", "json", "refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.trim().is_empty());
    for line in err.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}

/// Colour only on a terminal, and never with NO_COLOR. `script` (util-linux)
/// gives the program a pseudo-terminal; without it the test says so.
#[tokio::test]
async fn colour_only_on_a_tty_and_never_with_no_color() {
    let t = TestEnv::new().await;
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("`script` not installed: colour on a TTY not checked here");
        return;
    }
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    t.mock_validate(OLD_ACCESS, 200).await;
    let bin = assert_cmd::cargo::cargo_bin("webex-token");
    let run = |no_color: bool| {
        let mut s = std::process::Command::new("script");
        s.current_dir(t.dir.path())
            .env("WEBEX_API_BASE_URL", t.base())
            .env_remove("WEBEX_TOKEN_CONFIG")
            .env_remove("WEBEX_TOKEN_ENV_FILE")
            .args(["-qec", &format!("{} refresh", bin.display()), "/dev/null"]);
        if no_color {
            s.env("NO_COLOR", "1");
        } else {
            s.env_remove("NO_COLOR");
        }
        let out = s.output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        stdout(&out)
    };
    let coloured = run(false);
    assert!(coloured.contains("\x1b["), "colour on a TTY: {coloured:?}");
    let plain = run(true);
    assert!(!plain.contains("\x1b["), "NO_COLOR honoured: {plain:?}");
    assert!(plain.contains("works"), "{plain:?}");
}

/// Every `--json` output is one object with the documented keys.
#[tokio::test]
async fn json_shapes_match_the_readme() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-json-shape");
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH)));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 86_400, None),
    )
    .await;
    let has = |v: &Value, keys: &[&str]| {
        for k in keys {
            assert!(v.get(*k).is_some(), "missing `{k}` in {v}");
        }
        assert_eq!(v["schemaVersion"], 1, "{v}");
    };
    let token_keys = [
        "present",
        "fingerprint",
        "expiresAt",
        "secondsLeft",
        "expired",
    ];

    let dry = t.run(&["refresh", "--dry-run", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&dry)).unwrap();
    has(
        &v,
        &[
            "command",
            "ok",
            "action",
            "level",
            "validation",
            "reason",
            "personalTokenRenewed",
            "accessToken",
            "refreshToken",
            "attempts",
            "envFile",
            "configFile",
        ],
    );
    assert_eq!(v["action"], "would_refresh");
    assert_eq!(v["level"], 1);

    let done = t.run(&["refresh", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&done)).unwrap();
    assert_eq!(v["action"], "refreshed");
    for k in ["accessToken", "refreshToken"] {
        for tk in token_keys {
            assert!(v[k].get(tk).is_some(), "{k}.{tk} in {v}");
        }
    }
    let a = &v["attempts"][0];
    for k in [
        "level",
        "name",
        "result",
        "detail",
        "httpStatus",
        "trackingId",
    ] {
        assert!(a.get(k).is_some(), "attempts[].{k}");
    }

    let tok = t.run_allowing(&["token", "--json"], &[&new]);
    let v: Value = serde_json::from_str(&stdout(&tok)).unwrap();
    has(&v, &["command", "accessToken", "expiresAt"]);
    assert_eq!(v["accessToken"], new.as_str());

    let st = t.run(&["status", "--json", "--check", "1d"]);
    let v: Value = serde_json::from_str(&stdout(&st)).unwrap();
    has(
        &v,
        &[
            "command",
            "ok",
            "envFile",
            "envFileExists",
            "configFile",
            "apiBase",
            "credentials",
            "levels",
            "nextLevel",
            "online",
            "check",
            "notes",
        ],
    );
    for k in [
        "serviceAccessToken",
        "serviceRefreshToken",
        "personalAccessToken",
        "integrationRefreshToken",
    ] {
        for tk in token_keys {
            assert!(
                v["credentials"][k].get(tk).is_some(),
                "credentials.{k}.{tk}"
            );
        }
    }
    for k in ["level", "name", "available", "reason"] {
        assert!(v["levels"][0].get(k).is_some(), "levels[].{k}");
    }
    assert!(v["check"].get("windowSeconds").is_some() && v["check"].get("expiring").is_some());
}

#[tokio::test]
async fn failed_check_says_so_in_json() {
    let t = TestEnv::new().await;
    let mut env = env_with(OLD_ACCESS, Some(&in_secs(86_400)), Some(OLD_REFRESH));
    env.push_str(&format!(
        "WEBEX_SERVICE_APP_REFRESH_TOKEN_EXPIRES_AT={}\n",
        in_secs(3600)
    ));
    t.write_env(&env);
    let out = t.run(&["--json", "status", "--check", "1d"]);
    assert_eq!(code(&out), 5);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["exitCode"], 5);
    assert_eq!(v["error"]["kind"], "expiring");
    assert!(v["credentials"].is_object(), "the report is still there");
}

#[tokio::test]
async fn usage_errors_with_json_print_a_json_object() {
    let t = TestEnv::new().await;
    for args in [
        vec!["--json", "refresh", "--bogus"],
        vec!["status", "--json", "--check", "xyz"],
    ] {
        let out = t.cmd().args(&args).output().unwrap();
        assert_eq!(code(&out), 2, "{args:?}");
        let v: Value =
            serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
        assert_eq!(v["ok"], false);
        assert_eq!(v["exitCode"], 2);
        assert_eq!(v["error"]["kind"], "usage");
        assert!(stderr(&out).contains("error:"));
    }
    let help = t.cmd().args(["--json", "--help"]).output().unwrap();
    assert_eq!(code(&help), 0);
    assert!(stdout(&help).contains("Usage"));
}

/// Trust round 3 (smaller): `token` and `exec` that time out waiting for
/// the lock while the stored token is still valid hand it over with a
/// warning (exit 0), as for any other failure that may pass; an expired one
/// is still exit 1.
#[tokio::test]
async fn a_lock_wait_time_out_hands_over_a_still_valid_token() {
    let t = TestEnv::new().await;
    // 30 minutes left: inside --min-valid, so both try to refresh.
    let env = env_with(OLD_ACCESS, Some(&in_secs(1800)), Some(OLD_REFRESH));
    t.write_env(&env);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(t.path(".env.lock"))
        .unwrap();
    lock.lock().unwrap();
    let out = t.run_allowing(&["token", "--lock-timeout", "300ms"], &[OLD_ACCESS]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), OLD_ACCESS);
    assert!(stderr(&out).contains("still works"), "{}", stderr(&out));
    let out = t.run(&[
        "exec",
        "--lock-timeout",
        "300ms",
        "--",
        "sh",
        "-c",
        "test -n \"$WEBEX_SERVICE_APP_ACCESS_TOKEN\"",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.requests().await.len(), 0);
    assert_eq!(t.read_env(), env);
    // Expired: nothing to hand over.
    t.write_env(&env_with(OLD_ACCESS, Some(&in_secs(-5)), Some(OLD_REFRESH)));
    let out = t.run(&["token", "--lock-timeout", "300ms"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}
