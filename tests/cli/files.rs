//! Config and env file rules: errors name the file and field, nothing is
//! lost, layouts and unknown keys are kept.

use crate::common::*;
use serde_json::json;
use wiremock::ResponseTemplate;

#[tokio::test]
async fn missing_config_exit_3_with_absolute_path() {
    let t = TestEnv::new().await;
    std::fs::remove_file(t.config_path()).unwrap();
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(
        err.contains(&t.config_path().display().to_string()),
        "{err}"
    );
    assert!(err.contains("not found"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(t.requests().await.len(), 0);
}

#[tokio::test]
async fn malformed_config_names_line_and_column() {
    let t = TestEnv::new().await;
    let bad = "{\n  \"serviceApp\": {\n    \"appId\": \"x\",\n  }\n}\n";
    std::fs::write(t.config_path(), bad).unwrap();
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("line 4"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(t.config_path()).unwrap(), bad);
    let not_object = t.run(&["status"]);
    assert_eq!(code(&not_object), 3);
    std::fs::write(t.config_path(), "[1, 2]").unwrap();
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("JSON object"), "{}", stderr(&out));
}

#[tokio::test]
async fn placeholders_are_not_sent() {
    let t = TestEnv::new().await;
    t.write_config(&json!({
        "serviceApp": {
            "appId": "your_service_app_id",
            "clientId": "your_service_app_client_id",
            "clientSecret": "your_service_app_client_secret",
            "targetOrgId": "your_target_org_id"
        },
        "tokenManager": {"personalAccessToken": "your_personal_access_token"}
    }));
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("not filled in"), "{}", stderr(&out));
    assert_eq!(t.requests().await.len(), 0);
}

#[tokio::test]
async fn missing_service_app_field_is_named() {
    let t = TestEnv::new().await;
    let mut c = default_config(false);
    c["serviceApp"]
        .as_object_mut()
        .unwrap()
        .remove("targetOrgId");
    t.write_config(&c);
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("serviceApp.targetOrgId"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("is missing"), "{}", stderr(&out));
    assert_eq!(t.requests().await.len(), 0);
}

#[tokio::test]
async fn malformed_env_file_exit_3_unchanged() {
    let t = TestEnv::new().await;
    let bad = "OK=1\nWEBEX_SERVICE_APP_ACCESS_TOKEN=\"unterminated\nOTHER=2\n";
    t.write_env(bad);
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&t.env_path().display().to_string()),
        "{}",
        stderr(&out)
    );
    assert_eq!(t.read_env(), bad);
    assert_eq!(t.requests().await.len(), 0);
}

#[tokio::test]
async fn env_file_that_is_a_directory() {
    let t = TestEnv::new().await;
    std::fs::create_dir(t.env_path()).unwrap();
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("director"), "{}", stderr(&out));
}

#[tokio::test]
async fn messy_env_file_keeps_every_other_byte() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-messy-new");
    let new_rt = t.secret("SECRET-messy-rt");
    let messy = format!(
        "# Webex settings\n\nexport OTHER_VAR='keep me'\nWEBEX_SERVICE_APP_ACCESS_TOKEN=\"{OLD_ACCESS}\"\n  # indented comment\nDATABASE_URL=postgres://u:p@h/db\nexport WEBEX_SERVICE_APP_REFRESH_TOKEN={OLD_REFRESH}\nMULTI=\"line one\nline two\"\nWEBEX_SERVICE_APP_ACCESS_TOKEN_EXPIRES_AT=2000-01-01T00:00:00Z\nLAST=no-newline"
    );
    t.write_env(&messy);
    std::fs::set_permissions(
        t.env_path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&new, 3600 * 24, Some((&new_rt, 86_400 * 90))),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after = t.read_env();
    for keep in [
        "# Webex settings\n\nexport OTHER_VAR='keep me'\n",
        "  # indented comment\nDATABASE_URL=postgres://u:p@h/db\n",
        "MULTI=\"line one\nline two\"\n",
    ] {
        assert!(after.contains(keep), "lost {keep:?} in:\n{after}");
    }
    assert!(
        after.contains("export WEBEX_SERVICE_APP_REFRESH_TOKEN="),
        "export prefix kept:\n{after}"
    );
    assert!(after.contains("LAST=no-newline\n"), "{after}");
    let v = t.env_values();
    assert_eq!(v["WEBEX_SERVICE_APP_ACCESS_TOKEN"], new);
    assert_eq!(v["WEBEX_SERVICE_APP_REFRESH_TOKEN"], new_rt);
    assert_eq!(v["OTHER_VAR"], "keep me");
    assert_eq!(v["MULTI"], "line one\nline two");
    assert_eq!(mode(&t.env_path()), 0o640, "existing mode kept");
    // Layout: the line order of the untouched lines is unchanged.
    let order: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("DATABASE_URL") || l.starts_with("LAST"))
        .collect();
    assert_eq!(
        order,
        ["DATABASE_URL=postgres://u:p@h/db", "LAST=no-newline"]
    );
}

#[tokio::test]
async fn legacy_flat_config_layouts_work_and_stay_flat() {
    for (id_key, secret_key, rt_key) in [
        ("clientId", "clientSecret", "refreshToken"),
        ("oauthClientId", "oauthClientSecret", "oauthRefreshToken"),
    ] {
        let mut t = TestEnv::new().await;
        let new_pat = t.secret("SECRET-flat-pat");
        let new = t.secret("SECRET-flat-access");
        let mut c = default_config(false);
        c["tokenManager"][id_key] = json!(INT_CLIENT_ID);
        c["tokenManager"][secret_key] = json!(INT_SECRET);
        c["tokenManager"][rt_key] = json!(INT_REFRESH);
        t.write_config(&c);
        t.mock_mint(PAT, ResponseTemplate::new(401)).await;
        t.mock_refresh(
            INT_CLIENT_ID,
            INT_REFRESH,
            token_response(&new_pat, 1000, None),
        )
        .await;
        t.mock_mint(&new_pat, token_response(&new, 1000, None))
            .await;
        let out = t.run(&["refresh"]);
        assert_eq!(code(&out), 0, "{id_key}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("older flat layout"),
            "{}",
            stderr(&out)
        );
        let after = t.read_config();
        assert_eq!(
            after["tokenManager"]["personalAccessToken"],
            new_pat.as_str()
        );
        assert_eq!(
            after["tokenManager"][rt_key], INT_REFRESH,
            "kept when none came back"
        );
        assert!(after["tokenManager"].get("integration").is_none());
    }
}

#[tokio::test]
async fn config_write_keeps_mode() {
    let mut t = TestEnv::new().await;
    let new_pat = t.secret("SECRET-mode-pat");
    let new = t.secret("SECRET-mode-access");
    std::fs::set_permissions(
        t.config_path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    t.mock_mint(PAT, ResponseTemplate::new(401)).await;
    t.mock_refresh(
        INT_CLIENT_ID,
        INT_REFRESH,
        token_response(&new_pat, 1000, None),
    )
    .await;
    t.mock_mint(&new_pat, token_response(&new, 1000, None))
        .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mode(&t.config_path()), 0o600);
    assert_eq!(t.read_config()["customKey"], json!({"kept": true}));
}

#[tokio::test]
async fn unreachable_env_file_mints_nothing() {
    let t = TestEnv::new().await;
    // A path whose parent is a regular file cannot be written, even as root.
    std::fs::write(t.path("notadir"), "").unwrap();
    t.mock_mint(PAT, token_response("SECRET-never", 1000, None))
        .await;
    let out = t.run(&[
        "refresh",
        "--env-file",
        "notadir/.env",
        "--lock-timeout",
        "1s",
    ]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("notadir/.env"), "{}", stderr(&out));
    assert!(stderr(&out).contains("check the path"), "{}", stderr(&out));
    assert_eq!(
        t.requests().await.len(),
        0,
        "nothing is minted when the env file cannot be reached"
    );
}

#[tokio::test]
async fn failed_write_keeps_new_tokens_in_a_recovery_file() {
    let mut t = TestEnv::new().await;
    let new = t.secret("SECRET-recover-me");
    // .env is a link into a directory that does not exist: reading finds
    // no file, the lock beside it works, but the write must fail.
    std::os::unix::fs::symlink(t.path("missing-dir/.env"), t.env_path()).unwrap();
    t.mock_mint(PAT, token_response(&new, 1000, None)).await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("could not be saved"), "{err}");
    let recovered = err
        .split_whitespace()
        .find(|w| w.contains(".recovered-"))
        .expect("recovery path named");
    let text = std::fs::read_to_string(recovered).unwrap();
    assert!(text.contains(&new));
    assert_eq!(mode(std::path::Path::new(recovered)), 0o600);
    std::fs::remove_file(recovered).unwrap();
}

#[tokio::test]
async fn every_unfilled_service_app_field_is_named_at_once() {
    let t = TestEnv::new().await;
    let mut c = default_config(false);
    c["serviceApp"]["appId"] = json!("your_service_app_id");
    c["serviceApp"]
        .as_object_mut()
        .unwrap()
        .remove("targetOrgId");
    t.write_config(&c);
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "`serviceApp.appId` still holds the template's placeholder; `serviceApp.targetOrgId` is missing"
        ),
        "{err}"
    );
    assert_eq!(t.requests().await.len(), 0);
}

#[tokio::test]
async fn log_format_json_keeps_the_final_error_json_too() {
    let t = TestEnv::new().await;
    std::fs::remove_file(t.config_path()).unwrap();
    let out = t.run(&["--log-format", "json", "refresh"]);
    assert_eq!(code(&out), 3);
    for line in stderr(&out).lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some());
    }
    assert!(stderr(&out).contains("\"hint\""));
}
