//! `init` (a config from flags; never overwrites) and the warning for a
//! secrets file others can read.

use crate::common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;

#[tokio::test]
async fn init_writes_a_0600_config_from_flags_and_says_what_is_next() {
    let t = TestEnv::new().await;
    std::fs::remove_file(t.config_path()).unwrap();
    let out = t.run(&["init", "--app-id", "APP1", "--client-id", "CID1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(mode(&t.config_path()), 0o600);
    let text = stdout(&out);
    assert!(text.contains("still to fill in there: `serviceApp.clientSecret`, `serviceApp.targetOrgId`, `tokenManager.personalAccessToken`"), "{text}");
    // The test runs in the config's directory: the default path.
    assert!(text.ends_with("next: webex-token refresh\n"), "{text}");
    let cfg = t.read_config();
    assert_eq!(cfg["serviceApp"]["appId"], "APP1");
    assert_eq!(cfg["serviceApp"]["clientId"], "CID1");
    // What is left is the template's placeholder: the next run names it.
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("`serviceApp.clientSecret`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(t.requests().await.len(), 0);
}

#[tokio::test]
async fn init_never_overwrites_and_refuses_bad_values() {
    let t = TestEnv::new().await;
    let before = std::fs::read(t.config_path()).unwrap();
    let out = t.run(&["init", "--app-id", "X"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);

    std::fs::remove_file(t.config_path()).unwrap();
    let out = t.run(&["init", "--app-id", "two words"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--app-id"), "{}", stderr(&out));
    assert!(!t.config_path().exists());

    let out = t.run(&["--json", "init", "--no-input"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["command"], "init");
    assert_eq!(v["unset"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn status_and_refresh_warn_once_about_a_config_others_can_read() {
    let t = TestEnv::new().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(86_400)),
        Some(OLD_REFRESH),
    ));
    let p = t.config_path();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(t.env_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = t.run(&["status"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let e = stderr(&out);
    assert_eq!(e.matches("holds secrets and is readable").count(), 1, "{e}");
    assert!(e.contains("chmod 600"), "{e}");
    t.mock_validate(OLD_ACCESS, 200).await;
    let out = t.run(&["refresh"]);
    let e = stderr(&out);
    assert_eq!(e.matches("holds secrets and is readable").count(), 1, "{e}");
    assert!(e.contains("mode 0644"), "{e}");
    // At 0600 nothing is said.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = t.run(&["status"]);
    assert!(!stderr(&out).contains("readable by"), "{}", stderr(&out));
}
