//! `watch --notify-webex`: the recipient flag, the bot token
//! `notify.webexBotToken` from every static-secret source, the exit-3
//! error without one (before any request), and `status` naming its source.

use crate::common::*;
use crate::secrets::{listed_source, write_secret};
use serde_json::{Value, json};

const BOT: &str = "SECRET-bot-token-inline-0a1b2c3d";
const BOT_FILE: &str = "SECRET-bot-token-from-a-file-4e5f";
const BOT_CMD: &str = "SECRET-bot-token-from-a-command-6a7b";
const BOT_CRED: &str = "SECRET-bot-token-from-a-credential-8c9d";
const ROOM: &str = "Y2lzY29zcGFyazovL3VzL1JPT00vYmJjZWIxYWQtNDNmMS0zYjU4LTkxNDctZjE0YmIwYzRkMTU0";

async fn env() -> TestEnv {
    let mut t = TestEnv::new().await;
    for s in [BOT, BOT_FILE, BOT_CMD, BOT_CRED] {
        t.secret(s);
    }
    t
}

fn config_with_notify(notify: Value) -> Value {
    let mut c = default_config(true);
    c["notify"] = notify;
    c
}

/// `status --json`'s source for `notify.webexBotToken`, if listed.
fn bot_source(t: &TestEnv, extra_env: &[(&str, &str)]) -> Option<String> {
    listed_source(t, &["-vv"], extra_env, "notify.webexBotToken")
}

#[tokio::test]
async fn without_a_bot_token_notify_webex_is_exit_3_before_any_request() {
    let t = env().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(3600 * 24)),
        Some(OLD_REFRESH),
    ));
    for config in [
        default_config(true),
        config_with_notify(json!({})),
        config_with_notify(json!({"webexBotToken": ""})),
        config_with_notify(json!({"webexBotToken": "your_bot_token"})),
    ] {
        t.write_config(&config);
        let before = std::fs::read(t.config_path()).unwrap();
        let out = t.run(&["watch", "--once", "--notify-webex", ROOM]);
        assert_eq!(code(&out), 3, "{}", stderr(&out));
        let err = stderr(&out);
        for needle in [
            "--notify-webex",
            "`notify.webexBotToken`",
            "`notify.webexBotTokenFile`",
            "`notify.webexBotTokenCommand`",
            "`webex-bot-token`",
            "docs/reauthorize-webex.md",
        ] {
            assert!(err.contains(needle), "{needle} missing: {err}");
        }
        assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    }
    assert!(
        t.requests().await.is_empty(),
        "no request without a bot token"
    );
    // Without the flag the same config runs as before.
    t.mock_validate(OLD_ACCESS, 200).await;
    let out = t.run(&["watch", "--once"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[tokio::test]
async fn the_recipient_is_a_room_id_or_an_email_else_a_usage_error() {
    let t = env().await;
    t.write_config(&config_with_notify(json!({"webexBotToken": BOT})));
    for bad in [
        "general",
        "admin@",
        "@example.com",
        "Y2lzY29zcGFyazovL3VzL1BFT1BMRS8x",
        "",
    ] {
        let out = t.run(&["watch", "--once", "--notify-webex", bad]);
        assert_eq!(code(&out), 2, "{bad:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("--notify-webex"), "{}", stderr(&out));
    }
    // The bot token is never a flag value.
    let out = t.run(&[
        "watch",
        "--once",
        "--notify-webex",
        ROOM,
        "--bot-token",
        BOT,
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(t.requests().await.is_empty());
    // Good values pass the flag (and the run goes on to its usual work).
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(3600 * 24)),
        Some(OLD_REFRESH),
    ));
    t.mock_validate(OLD_ACCESS, 200).await;
    for good in [ROOM, "admin@example.com"] {
        let out = t.run(&["watch", "--once", "--notify-webex", good]);
        assert_eq!(code(&out), 0, "{good}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("notify.webexBotToken"),
            "the log says where notices go: {}",
            stderr(&out)
        );
    }
}

#[tokio::test]
async fn the_bot_token_comes_from_every_static_secret_source() {
    let t = env().await;
    let creds = t.path("credentials");
    std::fs::create_dir(&creds).unwrap();
    write_secret(&creds, "webex-bot-token", BOT_CRED);
    let file = write_secret(t.dir.path(), "bot", BOT_FILE);
    let cmd_file = write_secret(t.dir.path(), "bot-cmd", BOT_CMD);
    let cred_env = [("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())];

    // None configured: not listed.
    assert_eq!(bot_source(&t, &[]), None);
    // Precedence: command, file, credential, inline.
    let mut notify = json!({
        "webexBotToken": BOT,
        "webexBotTokenFile": "bot",
        "webexBotTokenCommand": ["cat", cmd_file.to_str().unwrap()],
    });
    t.write_config(&config_with_notify(notify.clone()));
    assert_eq!(bot_source(&t, &cred_env).as_deref(), Some("command"));
    notify
        .as_object_mut()
        .unwrap()
        .remove("webexBotTokenCommand");
    t.write_config(&config_with_notify(notify.clone()));
    assert_eq!(
        bot_source(&t, &cred_env),
        Some(format!("file:{}", file.display()))
    );
    notify.as_object_mut().unwrap().remove("webexBotTokenFile");
    t.write_config(&config_with_notify(notify.clone()));
    assert_eq!(bot_source(&t, &cred_env).as_deref(), Some("credential"));
    assert_eq!(bot_source(&t, &[]).as_deref(), Some("inline"));
    // No environment variable is read for it.
    let mut only_cred = config_with_notify(json!({}));
    t.write_config(&only_cred);
    assert_eq!(
        bot_source(&t, &[("WEBEX_TOKEN_WEBEX_BOT_TOKEN", BOT)]),
        None
    );
    // From the credential alone, --notify-webex runs.
    only_cred["notify"] = json!({});
    t.write_config(&only_cred);
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(3600 * 24)),
        Some(OLD_REFRESH),
    ));
    t.mock_validate(OLD_ACCESS, 200).await;
    let mut c = t.cmd();
    c.args([
        "-vv",
        "watch",
        "--once",
        "--notify-webex",
        "admin@example.com",
    ]);
    c.env("CREDENTIALS_DIRECTORY", &creds);
    let out = c.output().unwrap();
    t.assert_no_secrets(&out, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Human status names the source, never the value.
    t.write_config(&config_with_notify(json!({"webexBotTokenFile": "bot"})));
    let out = t.run(&["status"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "notify.webexBotToken from file:{}",
            file.display()
        )),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn a_failing_bot_token_source_is_exit_3_naming_key_and_source() {
    let t = env().await;
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(3600 * 24)),
        Some(OLD_REFRESH),
    ));
    let cases = [
        (
            json!({"webexBotTokenFile": "/nonexistent/bot"}),
            "notify.webexBotTokenFile",
            "/nonexistent/bot",
        ),
        (
            json!({"webexBotTokenCommand": ["false"]}),
            "notify.webexBotTokenCommand",
            "`false`",
        ),
        (
            json!({"webexBotTokenCommand": "cat /x"}),
            "notify.webexBotTokenCommand",
            "array",
        ),
    ];
    for (notify, key, detail) in cases {
        t.write_config(&config_with_notify(notify));
        let out = t.run(&["watch", "--once", "--notify-webex", ROOM]);
        assert_eq!(code(&out), 3, "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(key) && err.contains(detail),
            "{key}/{detail}: {err}"
        );
    }
    assert!(t.requests().await.is_empty());
}
