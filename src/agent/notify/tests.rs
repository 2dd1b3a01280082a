//! The notifier against webex-sim: one message edited in place, the done
//! and stopped edits, a deleted message replaced, a restart resuming the
//! same message, failures logged (redacted) and never fatal, and no
//! secret anywhere in what Webex received or what was logged.

use super::*;
use crate::secret::secret;
use crate::webex::RetryPolicy;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use webex_sim::{Fault, FaultKind, Sim, SimOptions};

fn http(sim: &Sim) -> HttpSettings {
    HttpSettings {
        base_url: sim.base_url(),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            no_delay: true,
            ..RetryPolicy::default()
        },
    }
}

fn subject() -> Subject {
    Subject {
        app: "Y2lzY29zcGFyazovL3VzL0FQUExJQ0FUSU9OL0M1ZTdi".into(),
        orgs: vec!["acme".into(), "globex".into()],
        host: Some("agent-1".into()),
    }
}

fn notifier(sim: &Sim, bot: &str, to: Recipient) -> Notifier {
    Notifier::new(http(sim), secret(bot), to, subject())
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_900_000_000 + secs).unwrap()
}

/// Every text and markdown version of every message the sim holds.
fn all_versions(sim: &Sim) -> Vec<String> {
    sim.messages()
        .iter()
        .flat_map(|m| m["history"].as_array().cloned().unwrap_or_default())
        .flat_map(|v| {
            [v["text"].as_str(), v["markdown"].as_str()]
                .into_iter()
                .flatten()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The log lines written while `f` runs (this thread only).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let out = Captured::default();
    let w = out.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || w.clone())
        .finish();
    (out, tracing::subscriber::set_default(sub))
}

/// A real device authorization from the sim: (device code, user code, link).
fn device_flow(sim: &Sim) -> (String, String, String) {
    let c = sim.credentials();
    let resp = reqwest_free_post(
        &format!("{}/device/authorize", sim.base_url()),
        &format!(
            "client_id={}&scope=spark%3Aapplications_token",
            c.integration_client_id
        ),
    );
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
    (
        v["device_code"].as_str().unwrap().to_string(),
        v["user_code"].as_str().unwrap().to_string(),
        v["verification_uri_complete"].as_str().unwrap().to_string(),
    )
}

/// One form POST over a plain socket (the sim is HTTP/1.1 on loopback).
fn reqwest_free_post(url: &str, form: &str) -> String {
    use std::io::Read;
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split_once("\r\n\r\n").unwrap().1.to_string()
}

#[tokio::test]
async fn one_message_is_edited_for_each_new_code_then_says_done() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let bot = sim.issue_bot_token();
    let room = sim.new_room_id();
    let (logs, _g) = capture();
    let n = notifier(&sim, &bot, Recipient::Room(room.clone()));
    assert_eq!(n.message_id(), None);

    let mut device_codes = Vec::new();
    let mut user_codes = Vec::new();
    for i in 0..3 {
        let (device_code, user_code, url) = device_flow(&sim);
        n.code(&url, &user_code, at(300 * (i + 1))).await;
        device_codes.push(device_code);
        user_codes.push(user_code);
    }
    n.done(Some("admin@example.com"), at(1000)).await;

    let msgs = sim.messages();
    assert_eq!(msgs.len(), 1, "one message, edited in place: {msgs:#?}");
    assert_eq!(msgs[0]["edits"], 3);
    assert_eq!(msgs[0]["roomId"].as_str(), Some(room.as_str()));
    assert_eq!(n.message_id().as_deref(), msgs[0]["id"].as_str());
    let history = msgs[0]["history"].as_array().unwrap();
    for (i, code) in user_codes.iter().enumerate() {
        let md = history[i]["markdown"].as_str().unwrap();
        assert!(md.contains(&format!("**{code}**")), "{md}");
        assert!(md.contains("/_sim/device/verify?userCode="), "{md}");
        assert!(
            md.contains("`acme`, `globex`") && md.contains("agent-1"),
            "{md}"
        );
        assert!(md.contains("UTC (") && md.contains("expires at"), "{md}");
    }
    let last = msgs[0]["markdown"].as_str().unwrap();
    assert!(
        last.contains("re-authorized") && last.contains("admin@example.com"),
        "{last}"
    );
    assert!(
        last.contains("2030-03-17"),
        "the approval time, UTC: {last}"
    );
    assert!(
        !user_codes.iter().any(|c| last.contains(c.as_str())),
        "the done edit drops the code"
    );
    // No secret in anything Webex was sent, nor in the log.
    let sent = all_versions(&sim).join("\n");
    let logged = logs.text();
    for secret in device_codes.iter().chain([&bot]) {
        assert!(
            !sent.contains(secret.as_str()),
            "a secret was sent in a message"
        );
        assert!(
            !logged.contains(secret.as_str()),
            "a secret was logged: {logged}"
        );
    }
    assert!(
        logged.contains("posted the re-authorization code"),
        "{logged}"
    );
}

#[tokio::test]
async fn a_deleted_message_is_replaced_by_a_new_post() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let bot = sim.issue_bot_token();
    let n = notifier(&sim, &bot, Recipient::Room(sim.new_room_id()));
    n.code(
        "https://example.com/verify?userCode=BCDF-GHJK",
        "BCDF-GHJK",
        at(300),
    )
    .await;
    let first = n.message_id().unwrap();
    assert!(sim.delete_message(&first));
    n.stopped("the person did not answer within --reauth-window (24h)")
        .await;
    let msgs = sim.messages();
    assert_eq!(msgs.len(), 1);
    let second = n.message_id().unwrap();
    assert_ne!(first, second);
    assert_eq!(msgs[0]["id"].as_str(), Some(second.as_str()));
    let md = msgs[0]["markdown"].as_str().unwrap();
    assert!(
        md.contains("stopped asking") && md.contains("--reauth-window"),
        "{md}"
    );
    assert!(
        md.contains("setup-oauth --device") && md.contains("SIGHUP"),
        "{md}"
    );
}

#[tokio::test]
async fn a_restarted_agent_edits_the_same_message_sent_to_a_person() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let bot = sim.issue_bot_token();
    let to = Recipient::Person("admin@example.com".into());
    let first = notifier(&sim, &bot, to.clone());
    first
        .code(
            "https://example.com/v?userCode=BCDF-GHJK",
            "BCDF-GHJK",
            at(300),
        )
        .await;
    let id = first.message_id().unwrap();
    drop(first);

    let again = notifier(&sim, &bot, to);
    again.resume(id.clone());
    again
        .code(
            "https://example.com/v?userCode=LMNP-QRST",
            "LMNP-QRST",
            at(600),
        )
        .await;
    let msgs = sim.messages();
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert_eq!(msgs[0]["edits"], 1);
    assert_eq!(msgs[0]["roomType"], "direct");
    assert!(msgs[0]["markdown"].as_str().unwrap().contains("LMNP-QRST"));
    assert_eq!(again.message_id(), Some(id));
    // The room was learned with one GET, then the edit.
    assert_eq!(
        sim.count(
            "GET",
            &format!("/v1/messages/{}", msgs[0]["id"].as_str().unwrap())
        ),
        1
    );
}

#[tokio::test]
async fn failures_are_logged_redacted_and_never_fatal() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let room = sim.new_room_id();
    let (logs, _g) = capture();

    // No scope: 403, logged with the hint; nothing stored, no id.
    let weak = sim.issue_bot_token_with_scopes(&["spark:messages_read"]);
    let n = notifier(&sim, &weak, Recipient::Room(room.clone()));
    n.code("https://example.com/v", "BCDF-GHJK", at(300)).await;
    assert_eq!(n.message_id(), None);
    assert!(sim.messages().is_empty());

    // A server that quotes the bot token back: the log shows a fingerprint.
    let bot = sim.issue_bot_token();
    sim.push_fault(Fault::new(
        "/v1/messages",
        FaultKind::Status {
            status: 400,
            body: format!(r#"{{"message":"bad token {bot}","trackingId":"T1"}}"#),
            retry_after: None,
            content_type: None,
        },
    ));
    let n = notifier(&sim, &bot, Recipient::Room(room.clone()));
    n.code("https://example.com/v", "BCDF-GHJK", at(300)).await;
    assert_eq!(n.message_id(), None);

    // Webex down for good: logged, the caller goes on.
    sim.push_fault(Fault::status("/v1/messages", 503).forever());
    n.code("https://example.com/v", "BCDF-GHJK", at(300)).await;
    assert_eq!(n.message_id(), None);
    sim.clear_faults();

    // A revoked bot token while editing: logged, the id kept for later.
    n.code("https://example.com/v", "BCDF-GHJK", at(300)).await;
    let id = n.message_id().unwrap();
    sim.revoke_token(&bot);
    n.done(None, at(400)).await;
    assert_eq!(n.message_id(), Some(id));
    assert_eq!(sim.messages()[0]["edits"], 0);

    let logged = logs.text();
    assert!(
        logged.contains("HTTP 403") && logged.contains("spark:messages_write"),
        "{logged}"
    );
    assert!(logged.contains("trackingId T1"), "{logged}");
    assert!(logged.contains("[redacted sha256:"), "{logged}");
    assert!(logged.contains("HTTP 503"), "{logged}");
    assert!(
        logged.contains("HTTP 401") && logged.contains("notify.webexBotToken"),
        "{logged}"
    );
    for secret in [&bot, &weak] {
        assert!(
            !logged.contains(secret.as_str()),
            "a bot token was logged: {logged}"
        );
    }
}

#[test]
fn text_from_outside_cannot_restyle_the_message() {
    assert_eq!(
        plain("**bold** [x](http://evil) `c` <b>\nnext access_denied"),
        "bold x(http://evil) c b next access_denied"
    );
    assert_eq!(user_code_text("AB*CD-12`"), "ABCD-12");
    assert_eq!(link("https://x.example/v?c=1"), "<https://x.example/v?c=1>");
    assert_eq!(link("javascript:alert(1)"), "javascript:alert(1)");
    assert_eq!(link("https://x.example/a b"), "https://x.example/a b");
}

#[tokio::test]
async fn built_from_the_config_it_names_the_app_the_orgs_and_the_host() {
    let sim = Sim::start(SimOptions::default()).unwrap();
    let bot = sim.issue_bot_token();
    let path = std::path::Path::new("/abs/token-config.json");
    let with = |notify: &str| {
        Config::parse(
            format!(
                r#"{{"serviceApp": {{"appId": "app-id-1", "clientId": "c", "targetOrgId": "org-id-1",
                     "orgs": [{{"name": "acme", "targetOrgId": "Y2lzY29zcGFyazovL3VzL09SR0FOSVpBVElPTi8x"}},
                              {{"name": "globex", "targetOrgId": "Y2lzY29zcGFyazovL3VzL09SR0FOSVpBVElPTi8y"}}]}},
                     "notify": {notify}}}"#
            )
            .as_bytes(),
            path,
        )
        .unwrap()
    };
    let to = Recipient::Room(sim.new_room_id());
    let none = Notifier::from_config(http(&sim), &with("{}"), to.clone());
    assert!(matches!(none, Err(ConfigError::NotifyBotToken { .. })));

    let config = with(&format!(r#"{{"webexBotToken": "{bot}"}}"#));
    let n = Notifier::from_config(http(&sim), &config, to).unwrap();
    assert!(!format!("{n:?}").contains(&bot), "Debug shows no token");
    n.code("https://example.com/v", "BCDF-GHJK", at(300)).await;
    let md = sim.messages()[0]["markdown"].as_str().unwrap().to_string();
    assert!(md.contains("Service app `app-id-1`"), "{md}");
    assert!(md.contains("orgs `acme`, `globex`"), "{md}");
    let host = crate::audit::hostname();
    if host != "unknown" {
        assert!(md.contains(&format!("host `{host}`")), "{md}");
    }
}
