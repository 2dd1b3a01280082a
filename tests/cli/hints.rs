//! The hints newcomers were sent the wrong way by, end to end (the error
//! class table in src/error.rs holds one row per hint).

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn an_unfilled_template_names_every_field_in_one_run() {
    let t = TestEnv::new().await;
    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/token-config.json.template");
    std::fs::copy(template, t.config_path()).unwrap();
    let before = std::fs::read(t.config_path()).unwrap();
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let err = stderr(&out);
    for key in [
        "serviceApp.appId",
        "serviceApp.clientId",
        "serviceApp.clientSecret",
        "serviceApp.targetOrgId",
        "tokenManager.personalAccessToken",
        "tokenManager.integration.clientId",
    ] {
        assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
    }
    assert!(err.contains("hint: fill in `serviceApp`"), "{err}");
    assert_eq!(t.requests().await.len(), 0);
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    assert!(!t.env_path().exists());
}

#[tokio::test]
async fn an_api_base_without_v1_says_so() {
    let t = TestEnv::new().await;
    let out = t.run(&["--api-base", "https://webexapis.com", "status"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("has no /v1"), "{}", stderr(&out));
    let mut c = default_config(false);
    c["apiBaseUrl"] = json!("https://webexapis.com/");
    t.write_config(&c);
    let out = t
        .cmd()
        .env_remove("WEBEX_API_BASE_URL")
        .arg("refresh")
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("has no /v1"), "{}", stderr(&out));
    assert_eq!(t.requests().await.len(), 0);
}
