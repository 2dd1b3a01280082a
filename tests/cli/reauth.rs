//! `watch` asking a person to re-authorize the integration with the device
//! grant (docs/reauthorize.md): the real binary against webex-sim, with
//! device codes that live seconds.

use crate::common::{code, free_port, mode, stderr, stdout};
use crate::watch::{Watch, http_get, secs};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use webex_sim::SimOptions;

const ACCESS: &str = "WEBEX_SERVICE_APP_ACCESS_TOKEN";
const AUTHORIZE: &str = "/v1/device/authorize";

/// watch.rs's test world (the simulator, the demo files, the binary), with
/// what the re-authorization tests add to it.
struct Env(crate::watch::Env);

impl std::ops::Deref for Env {
    type Target = crate::watch::Env;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Env {
    /// Demo files, then every level broken (a dead personal token and a
    /// dead integration refresh token), as after the integration was
    /// de-authorized.
    fn revoked(code_life: Duration) -> Env {
        let t = Env(crate::watch::Env::new(SimOptions {
            device_interval: secs(1),
            device_code_ttl: code_life,
            ..SimOptions::default()
        }));
        t.break_config();
        t
    }

    fn record(&self) -> PathBuf {
        self.path("token-config.json.reauth.json")
    }

    /// `--json watch` with `args` (and no extra environment).
    fn spawn(&self, args: &[&str]) -> Watch {
        self.0.spawn(args, &[])
    }

    fn spawn_with(&self, args: &[&str], envs: &[(&str, &str)]) -> Watch {
        self.0.spawn(args, envs)
    }

    fn authorize_requests(&self) -> usize {
        self.sim.count("POST", AUTHORIZE)
    }

    /// The device codes the agent polled with (the secret half of each
    /// grant), as the simulator recorded them.
    fn device_codes(&self) -> Vec<String> {
        let mut codes: Vec<String> = self
            .sim
            .requests()
            .into_iter()
            .filter(|r| r.path == "/v1/device/token")
            .filter_map(|r| r.form?.get("device_code").cloned())
            .collect();
        codes.sort();
        codes.dedup();
        codes
    }

    /// No secret in `texts`: no token or client secret of the files, and
    /// no device code.
    fn assert_no_secret_in(&self, texts: &[&str]) {
        for s in self.secrets().into_iter().chain(self.device_codes()) {
            for t in texts {
                assert!(!t.contains(s.as_str()), "secret leaked:\n{t}");
            }
        }
    }
}

#[test]
fn a_rejected_chain_asks_a_person_and_recovers_on_approval_without_a_restart() {
    let t = Env::revoked(secs(60));
    let port = free_port();
    let hook_log = t.path("hook.log");
    let hook = format!(
        "{{ echo \"event=$WEBEX_TOKEN_EVENT url=$WEBEX_TOKEN_VERIFY_URL code=$WEBEX_TOKEN_USER_CODE expires=$WEBEX_TOKEN_CODE_EXPIRES_AT\"; env; }} >> '{}'",
        hook_log.display()
    );
    let w = t.spawn(&[
        "--health",
        &format!("127.0.0.1:{port}"),
        "--on-refresh",
        &hook,
    ]);
    let required = w.wait_for("reauth_required", 1, secs(15));
    let ev = &required[0];
    let user_code = ev["userCode"].as_str().unwrap().to_string();
    let url = ev["verifyUrl"].as_str().unwrap().to_string();
    // The complete form of the link (it fills in the code).
    assert!(url.ends_with(&format!("?userCode={user_code}")), "{ev}");
    assert_eq!(ev["codesRequested"], 1);
    assert_eq!(ev["reason"], "chain_rejected");
    // Still 503, with the link and code in the body; the metric says so.
    let (status, body) = http_get(port, "/healthz");
    assert_eq!(status, 503, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["reauth"]["userCode"], user_code.as_str(), "{health}");
    assert_eq!(health["reauth"]["verifyUrl"], url.as_str());
    let (_, metrics) = http_get(port, "/metrics");
    assert!(
        metrics.contains("webex_token_reauth_pending 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("webex_token_reauth_codes_requested_total 1"),
        "{metrics}"
    );
    // `status` reads what the agent saved (0600, no device code).
    let out = t.cmd().args(["--json", "status"]).output().unwrap();
    crate::json_schema::assert_valid("status", &out);
    let st: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(st["reauth"]["state"], "pending");
    assert_eq!(st["reauth"]["userCode"], user_code.as_str());
    assert_eq!(st["reauth"]["codeExpired"], false);
    let out = t.cmd().arg("status").output().unwrap();
    assert!(
        stdout(&out).contains(&format!("enter the code {user_code}")),
        "{}",
        stdout(&out)
    );
    assert_eq!(mode(&t.record()), 0o600);
    let record = std::fs::read_to_string(t.record()).unwrap();
    let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&record)
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(
        !keys.iter().any(|k| k.to_lowercase().contains("device")),
        "{record}"
    );
    // The hook had the link and code, and no token keys.
    let end = Instant::now() + secs(5);
    while !std::fs::read_to_string(&hook_log)
        .unwrap_or_default()
        .contains("event=reauth_required")
    {
        assert!(Instant::now() < end, "the hook did not run");
        std::thread::sleep(Duration::from_millis(50));
    }
    let logged = std::fs::read_to_string(&hook_log).unwrap();
    assert!(
        logged.contains(&format!("url={url} code={user_code} expires=")),
        "{logged}"
    );
    assert!(
        !logged.contains("WEBEX_SERVICE_APP_ACCESS_TOKEN="),
        "{logged}"
    );

    // The person approves: the grant is saved, the chain runs, no restart.
    let approved_at = Instant::now();
    assert_eq!(
        t.sim.approve_device(Some(&user_code)),
        Some(user_code.clone())
    );
    let done = w.wait_for("reauthorized", 1, secs(10));
    assert_eq!(done[0]["codesRequested"], 1);
    w.wait_for("refreshed", 1, secs(10));
    let took = approved_at.elapsed();
    let token = t.env_value(ACCESS).expect("a token after the approval");
    assert!(t.sim.is_token_valid(&token));
    let personal = t.config()["tokenManager"]["personalAccessToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(t.sim.is_token_valid(&personal));
    let (status, body) = http_get(port, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("reauth"), "{body}");
    assert!(!t.record().exists(), "the record is gone once approved");
    assert_eq!(t.authorize_requests(), 1, "one flow, one code");
    eprintln!("approval to a working token: {took:?}");

    let (c, w) = w.stop();
    assert_eq!(c, 0, "{}", w.stderr());
    assert!(!t.device_codes().is_empty(), "the agent polled");
    let audit = std::fs::read_to_string(t.path(".env.audit.jsonl")).unwrap();
    assert!(audit.contains("\"event\":\"reauth_required\""), "{audit}");
    assert!(audit.contains("\"event\":\"reauthorized\""), "{audit}");
    let logged = std::fs::read_to_string(&hook_log).unwrap();
    assert!(logged.contains("event=reauthorized"), "{logged}");
    t.assert_no_secret_in(&[&w.stdout(), &w.stderr(), &audit, &record]);
    for d in t.device_codes() {
        assert!(!logged.contains(&d), "a device code reached a hook");
    }
    // The hooks of the notices saw no token; the `refreshed` hook after
    // them does.
    let notices: Vec<&str> = logged
        .split("event=")
        .filter(|b| b.starts_with("reauth"))
        .collect();
    for n in notices {
        assert!(!n.contains(&token) && !n.contains(&personal), "{n}");
    }
}

#[test]
fn lapsed_codes_are_renewed_and_a_refusal_stops_asking_until_sighup() {
    let t = Env::revoked(secs(2));
    let w = t.spawn(&[]);
    let got = w.wait_for("reauth_required", 3, secs(20));
    let codes: Vec<&str> = got
        .iter()
        .map(|e| e["userCode"].as_str().unwrap())
        .collect();
    assert!(codes[0] != codes[1] && codes[1] != codes[2], "{codes:?}");
    assert_eq!(got[2]["codesRequested"], 3);
    // Declined: no more codes, and it says who must act.
    let latest = w.named("reauth_required").last().unwrap()["userCode"]
        .as_str()
        .unwrap()
        .to_string();
    // (The latest code may lapse before the denial lands: deny whichever is
    // pending.)
    let _ = t.sim.deny_device(Some(&latest)).or_else(|| {
        std::thread::sleep(Duration::from_millis(1200));
        t.sim.deny_device(None)
    });
    let stopped = w.wait_for("reauth_stopped", 1, secs(10));
    assert_eq!(stopped[0]["reason"], "access_denied", "{}", stopped[0]);
    assert!(
        w.stderr().contains("owns the token-manager integration"),
        "{}",
        w.stderr()
    );
    let asked = t.authorize_requests();
    std::thread::sleep(secs(4));
    assert_eq!(t.authorize_requests(), asked, "no code after the refusal");
    let out = t.cmd().args(["--json", "status"]).output().unwrap();
    let st: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(st["reauth"]["state"], "stopped", "{st}");
    // SIGHUP asks again.
    w.signal("HUP");
    let end = Instant::now() + secs(10);
    while t.authorize_requests() == asked {
        assert!(Instant::now() < end, "no new code after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (c, w) = w.stop();
    assert_eq!(c, 0, "{}", w.stderr());
    t.assert_no_secret_in(&[&w.stdout(), &w.stderr()]);
    assert!(t.record().exists());
    // A person runs setup-oauth by hand: the saved link is stale, and gone.
    // (Once the code the stopped watch asked for last has lapsed, so that
    // the one approved below is setup-oauth's.)
    std::thread::sleep(Duration::from_millis(2500));
    t.sim.set_device_code_ttl(secs(60));
    let out = crate::common::setup_oauth_device_approved(t.cmd(), &t.sim);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!t.record().exists(), "setup-oauth removes the record");
}

#[test]
fn two_watchers_on_one_config_run_one_flow() {
    let t = Env::revoked(secs(60));
    let a = t.spawn(&[]);
    let b = t.spawn(&[]);
    let end = Instant::now() + secs(15);
    while a.named("reauth_required").len() + b.named("reauth_required").len() == 0 {
        assert!(Instant::now() < end, "{}\n{}", a.stderr(), b.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(secs(2));
    let events = a.named("reauth_required").len() + b.named("reauth_required").len();
    assert_eq!(events, 1, "one flow:\n{}\n{}", a.stdout(), b.stdout());
    assert_eq!(t.authorize_requests(), 1);
    assert!(t.sim.approve_device(None).is_some());
    // Both recover: the one that ran the flow, and the other one on seeing
    // the config change.
    let end = Instant::now() + secs(15);
    let recovered =
        |w: &Watch| !w.named("refreshed").is_empty() || !w.named("validated").is_empty();
    while !(recovered(&a) && recovered(&b)) {
        assert!(
            Instant::now() < end,
            "not both recovered:\n{}\n{}",
            a.stdout(),
            b.stdout()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(t.sim.is_token_valid(&t.env_value(ACCESS).unwrap()));
    let (ca, _) = a.stop();
    let (cb, _) = b.stop();
    assert_eq!((ca, cb), (0, 0));
}

#[test]
fn sigterm_during_a_flow_exits_0_and_the_next_start_resumes_its_window() {
    let t = Env::revoked(secs(60));
    let w = t.spawn(&[]);
    let first = w.wait_for("reauth_required", 1, secs(15));
    let (c, w) = w.stop();
    assert_eq!(c, 0, "{}", w.stderr());
    assert_eq!(w.named("stopping").len(), 1);
    // The record stays (the device code does not: it was only in memory).
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(t.record()).unwrap()).unwrap();
    assert_eq!(record["state"], "pending");
    assert_eq!(record["codesRequested"], 1);
    // The next start asks for a new code in the same window.
    let w = t.spawn(&[]);
    let again = w.wait_for("reauth_required", 1, secs(15));
    assert_eq!(again[0]["codesRequested"], 2, "{}", again[0]);
    assert_eq!(again[0]["windowEndsAt"], first[0]["windowEndsAt"]);
    assert_ne!(again[0]["userCode"], first[0]["userCode"]);
    let code_now = again[0]["userCode"].as_str().unwrap();
    assert!(t.sim.approve_device(Some(code_now)).is_some());
    w.wait_for("refreshed", 1, secs(15));
    assert!(t.sim.is_token_valid(&t.env_value(ACCESS).unwrap()));
    let (c, _) = w.stop();
    assert_eq!(c, 0);
}

#[test]
fn reauth_window_zero_never_asks_and_bad_windows_are_usage_errors() {
    let t = Env::revoked(secs(60));
    let w = t.spawn(&["--reauth-window", "0"]);
    w.wait_for("failed", 1, secs(15));
    std::thread::sleep(secs(1));
    assert_eq!(t.authorize_requests(), 0);
    let (c, _) = w.stop();
    assert_eq!(c, 0);
    for bad in ["1m", "31d", "soon"] {
        let out = t
            .cmd()
            .args(["watch", "--reauth-window", bad])
            .output()
            .unwrap();
        assert_eq!(code(&out), 2, "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("--reauth-window"), "{}", stderr(&out));
    }
}

#[test]
fn an_integration_refresh_token_near_its_end_is_renewed_ahead_while_tokens_work() {
    let t = Env(crate::watch::Env::new(SimOptions {
        device_interval: secs(1),
        ..SimOptions::default()
    }));
    // Known to lapse in 2 days: within watch's --rt-min-valid (14d).
    let mut c = t.config();
    let rt = c["tokenManager"]["integration"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_string();
    c["tokenManager"]["integration"]["refreshTokenExpiresAt"] =
        crate::common::in_secs(2 * 86_400).into();
    c["tokenManager"]["integration"]["refreshTokenFingerprint"] =
        webex_token::secret::fingerprint_str(&rt).into();
    t.write_config(&c);
    let out = t.cmd().arg("status").output().unwrap();
    assert!(stdout(&out).contains("cannot roll it"), "{}", stdout(&out));
    let port = free_port();
    let w = t.spawn(&["--health", &format!("127.0.0.1:{port}")]);
    let ev = w.wait_for("reauth_required", 1, secs(15));
    assert_eq!(ev[0]["reason"], "integration_refresh_token_expiring");
    w.wait_for("refreshed", 1, secs(10));
    // The tokens work meanwhile: 200, with the code to enter.
    let (status, body) = http_get(port, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"reauth\""), "{body}");
    let user_code = ev[0]["userCode"].as_str().unwrap();
    assert!(t.sim.approve_device(Some(user_code)).is_some());
    w.wait_for("reauthorized", 1, secs(10));
    let new_rt = t.config()["tokenManager"]["integration"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_rt, rt);
    assert!(t.sim.is_token_valid(&new_rt));
    // Not asked again: the new one lives 90 days.
    std::thread::sleep(secs(2));
    assert_eq!(t.authorize_requests(), 1);
    let (c, w) = w.stop();
    assert_eq!(c, 0, "{}", w.stderr());
    t.assert_no_secret_in(&[&w.stdout(), &w.stderr()]);
}

/// `--notify-webex` end to end: the flow's notices reach one Webex message
/// (the bot token from a file), edited in place for a renewed code and
/// again to say "done" after the approval; never a device code or a token.
#[test]
fn the_webex_message_follows_the_flow_in_one_message_edited_in_place() {
    let t = Env::revoked(secs(3));
    let bot = t.sim.issue_bot_token();
    let bot_file = t.path("bot-token");
    std::fs::write(&bot_file, format!("{bot}\n")).unwrap();
    let mut c = t.config();
    c["notify"] = serde_json::json!({"webexBotTokenFile": bot_file.display().to_string()});
    t.write_config(&c);
    let room = t.sim.new_room_id();
    let w = t.spawn(&["--notify-webex", &room]);
    // A first code, then a second once the first lapsed (3 s codes).
    let required = w.wait_for("reauth_required", 2, secs(20));
    let codes: Vec<String> = required
        .iter()
        .map(|e| e["userCode"].as_str().unwrap().to_string())
        .collect();
    let latest = codes.last().unwrap().clone();
    let end = Instant::now() + secs(10);
    let message = loop {
        let all = t.sim.messages();
        if let Some(m) = all.first()
            && m["history"].as_array().is_some_and(|h| {
                h.iter()
                    .any(|v| v["markdown"].as_str().unwrap_or("").contains(&latest))
            })
        {
            break m.clone();
        }
        assert!(Instant::now() < end, "no message with {latest}: {all:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(message["roomId"], room.as_str(), "{message}");
    assert_eq!(t.sim.approve_device(Some(&latest)), Some(latest.clone()));
    w.wait_for("reauthorized", 1, secs(10));
    let end = Instant::now() + secs(10);
    let all = loop {
        let all = t.sim.messages();
        let last = all[0]["history"].as_array().unwrap().last().unwrap()["markdown"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if last.contains("re-authorized") {
            break all;
        }
        assert!(Instant::now() < end, "no done edit: {all:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(all.len(), 1, "one message, edited in place: {all:?}");
    let history = all[0]["history"].as_array().unwrap();
    assert!(
        history.len() >= 3,
        "two codes and the done edit: {history:?}"
    );
    let texts: Vec<String> = history
        .iter()
        .map(|v| format!("{} {}", v["text"], v["markdown"]))
        .collect();
    for code in &codes {
        assert!(
            texts.iter().any(|x| x.contains(code.as_str())),
            "{code}: {texts:?}"
        );
    }
    assert!(
        !texts.last().unwrap().contains(&latest),
        "the done edit drops the code"
    );
    let (c, w) = w.stop();
    assert_eq!(c, 0, "{}", w.stderr());
    let mut seen: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (out, err) = (w.stdout(), w.stderr());
    seen.extend([out.as_str(), err.as_str()]);
    t.assert_no_secret_in(&seen);
    for x in seen {
        assert!(!x.contains(&bot), "the bot token leaked: {x}");
    }
}

/// The window is wall-clock time: when the clock moves past its end while
/// a code lives (suspend and resume, an NTP step), `watch` stops asking
/// (`reauth_stopped`, `window_over`) instead of asking for another code,
/// and the org loops' next failures do not start a new flow.
#[test]
fn the_window_ends_on_the_wall_clock_and_no_code_is_asked_after_it() {
    let t = Env::revoked(secs(2));
    let offset = t.path("clock-offset");
    std::fs::write(&offset, "0").unwrap();
    let w = t.spawn_with(
        &["--reauth-window", "1h", "--check-interval", "2s"],
        &[(
            "WEBEX_TOKEN_TEST_CLOCK_OFFSET_FILE",
            offset.to_str().unwrap(),
        )],
    );
    w.wait_for("reauth_required", 1, secs(15));
    // An hour and a bit later, as far as the wall clock knows (well within
    // the first code's 2 s life).
    std::fs::write(&offset, "3700").unwrap();
    let asked = t.authorize_requests();
    let stopped = w.wait_for("reauth_stopped", 1, secs(15));
    assert_eq!(stopped[0]["reason"], "window_over", "{}", stopped[0]);
    assert_eq!(
        t.authorize_requests(),
        asked,
        "no new code once the clock is past the window"
    );
    std::thread::sleep(secs(5));
    assert_eq!(t.authorize_requests(), asked, "no code after the window");
    let out = t.cmd().args(["--json", "status"]).output().unwrap();
    let st: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(st["reauth"]["state"], "stopped", "{st}");
    let (c, w) = w.stop();
    assert_eq!(c, 0, "{}", w.stderr());
    t.assert_no_secret_in(&[&w.stdout(), &w.stderr()]);
}
