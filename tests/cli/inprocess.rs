//! `webex_token::run` is the whole program: callable in-process, with the
//! same exit codes as the binary.

use crate::common::*;

#[tokio::test]
async fn run_is_callable_in_process() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    let env = t.env_path();
    let cfg = t.config_path();
    let base = t.base();
    let args = move |cmd: &str| {
        vec![
            "webex-token".to_string(),
            "--env-file".into(),
            env.display().to_string(),
            "--config".into(),
            cfg.display().to_string(),
            "--api-base".into(),
            base.clone(),
            "-q".into(),
            cmd.into(),
        ]
    };
    let dir = t.dir.path().to_path_buf();
    // `run` builds its own runtime: call it off this test's runtime.
    let (status, missing, usage) = tokio::task::spawn_blocking(move || {
        let status = webex_token::run(args("status"));
        let mut missing = args("status");
        missing[4] = dir.join("nope.json").display().to_string();
        let missing = webex_token::run(missing);
        let usage = webex_token::run(["webex-token", "refresh", "--bogus"]);
        (status, missing, usage)
    })
    .await
    .unwrap();
    assert_eq!(status, 0);
    assert_eq!(missing, 3);
    assert_eq!(usage, 2);
}

#[tokio::test]
async fn every_failure_is_a_json_line_under_log_format_json() {
    let t = TestEnv::new().await;
    let mut cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["refresh", "--bogus"], 2),
        (vec!["--config", "missing.json", "refresh"], 3),
    ];
    // status --check failing (exit 5).
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    cases.push((vec!["status", "--check", "1d"], 5));
    for (args, want) in cases {
        let mut c = t.cmd();
        c.args(["--log-format", "json"]).args(&args);
        let out = c.output().unwrap();
        t.assert_no_secrets(&out, &[]);
        assert_eq!(code(&out), want, "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(!err.trim().is_empty(), "{args:?}");
        for line in err.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {line}"));
            assert!(v["message"].is_string(), "{line}");
        }
    }
}

#[tokio::test]
async fn a_fresh_token_is_answered_before_any_runtime() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    let out = t.run_allowing(&["-v", "token"], &[OLD_ACCESS]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("answered before any runtime"),
        "{}",
        stderr(&out)
    );
    // Expiring: the runtime path (and a request) instead.
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(600)),
        Some(OLD_REFRESH),
    ));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response("SECRET-next", 86_400, None),
    )
    .await;
    let mut t = t;
    t.secret("SECRET-next");
    let out = t.run_allowing(&["-v", "token"], &["SECRET-next"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("answered before any runtime"));
}
