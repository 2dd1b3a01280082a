//! `watch`: the real binary against webex-sim with lifetimes of seconds.

use crate::common::{code, free_port, stderr, stdout};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use webex_sim::{Sim, SimOptions};

// The agent follows the world: the org list, the wall clock.
mod world;

const ACCESS: &str = "WEBEX_SERVICE_APP_ACCESS_TOKEN";
const REFRESH: &str = "WEBEX_SERVICE_APP_REFRESH_TOKEN";

pub(crate) struct Env {
    pub(crate) sim: Sim,
    pub(crate) dir: TempDir,
}

pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

impl Env {
    pub(crate) fn new(opts: SimOptions) -> Env {
        let sim = Sim::start(opts).unwrap();
        let dir = tempfile::tempdir().unwrap();
        sim.write_demo_files(dir.path()).unwrap();
        Env { sim, dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn cmd(&self) -> Command {
        crate::common::scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), self.dir.path())
    }

    pub(crate) fn config(&self) -> Value {
        std::fs::read_to_string(self.path("token-config.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    pub(crate) fn write_config(&self, v: &Value) {
        std::fs::write(
            self.path("token-config.json"),
            serde_json::to_string_pretty(v).unwrap(),
        )
        .unwrap();
    }

    /// A config in which every level is rejected (a dead personal token and
    /// a dead integration refresh token); returns the good one.
    pub(crate) fn break_config(&self) -> Value {
        let good = self.config();
        let mut bad = good.clone();
        bad["tokenManager"]["personalAccessToken"] = "bogus-personal-token".into();
        bad["tokenManager"]["integration"]["refreshToken"] = "bogus-integration-rt".into();
        self.write_config(&bad);
        good
    }

    pub(crate) fn env_value(&self, key: &str) -> Option<String> {
        let it = dotenvy::from_path_iter(self.path(".env")).ok()?;
        it.filter_map(Result::ok)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Every secret the files hold right now.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let c = self.config();
        let mut out: Vec<String> = [
            &c["serviceApp"]["clientSecret"],
            &c["tokenManager"]["personalAccessToken"],
            &c["tokenManager"]["integration"]["clientSecret"],
            &c["tokenManager"]["integration"]["refreshToken"],
        ]
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
        out.extend(self.env_value(ACCESS));
        out.extend(self.env_value(REFRESH));
        out
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().unwrap();
        self.assert_clean(&stdout(&out), &stderr(&out), &self.secrets());
        out
    }

    pub(crate) fn spawn(&self, args: &[&str], envs: &[(&str, &str)]) -> Watch {
        let mut c = self.cmd();
        c.args(["--json", "watch"]).args(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        Watch { child, out, err }
    }

    pub(crate) fn assert_clean(&self, out: &str, err: &str, secrets: &[String]) {
        for s in secrets {
            assert!(
                !out.contains(s.as_str()) && !err.contains(s.as_str()),
                "secret leaked:\n{out}\n{err}"
            );
        }
    }
}

pub(crate) fn collect(r: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            l.lock().unwrap().push(line);
        }
    });
    lines
}

pub(crate) struct Watch {
    pub(crate) child: Child,
    pub(crate) out: Arc<Mutex<Vec<String>>>,
    pub(crate) err: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    pub(crate) fn events(&self) -> Vec<Value> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect()
    }

    pub(crate) fn named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// Waits until `n` events named `name` were printed.
    pub(crate) fn wait_for(&self, name: &str, n: usize, within: Duration) -> Vec<Value> {
        let end = Instant::now() + within;
        loop {
            let got = self.named(name);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < end,
                "no {n} `{name}` events within {within:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn stdout(&self) -> String {
        self.out.lock().unwrap().join("\n")
    }

    pub(crate) fn stderr(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }

    pub(crate) fn signal(&self, sig: &str) {
        crate::common::send_signal(self.child.id(), sig);
    }

    /// SIGTERM, then the exit code (within 10 s).
    pub(crate) fn stop(mut self) -> (i32, Watch) {
        self.signal("TERM");
        let end = Instant::now() + secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the readers drain.
                std::thread::sleep(Duration::from_millis(100));
                return (s.code().unwrap_or(-1), self);
            }
            assert!(Instant::now() < end, "watch did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The token-issuing requests the simulator answered (refresh and mint).
pub(crate) fn issued(sim: &Sim) -> Vec<webex_sim::RecordedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| {
            r.method == "POST"
                && r.status == 200
                && (r.path == "/v1/access_token" || r.path.ends_with("/token"))
        })
        .collect()
}

#[test]
fn keeps_the_env_file_valid_across_expiries_without_storms() {
    let ttl = 4;
    let t = Env::new(SimOptions {
        access_ttl: secs(ttl),
        ..SimOptions::default()
    });
    let w = t.spawn(&["--min-valid", "1s", "--check-interval", "1h"], &[]);
    w.wait_for("refreshed", 1, secs(10));
    let start = Instant::now();
    let mut seen = Vec::<String>::new();
    // Sample the env file for more than three lifetimes.
    while start.elapsed() < secs(3 * ttl + 1) {
        let tok = t.env_value(ACCESS).expect("a token in the env file");
        assert!(
            t.sim.is_token_valid(&tok),
            "the env file held a dead token after {:?}",
            start.elapsed()
        );
        if seen.last() != Some(&tok) {
            seen.push(tok);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let secrets = t.secrets();
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
    // Every token was replaced once, just before it lapsed: one request
    // per refresh, and no two within the same second.
    let refreshed = w.named("refreshed").len();
    let issued = issued(&t.sim);
    assert_eq!(issued.len(), refreshed, "one request per refresh");
    assert!(seen.len() >= 4, "{} tokens over 3+ lifetimes", seen.len());
    // No storm: each refresh came only once the token in the file was
    // within the refresh window of its expiry (--min-valid 1s, plus the
    // jitter and the whole-second rounding: 2 s), never earlier.
    let events = w.named("refreshed");
    let ts = |v: &Value| v.as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    for pair in events.windows(2) {
        let prev_exp = ts(&pair[0]["accessToken"]["expiresAt"]);
        let at = ts(&pair[1]["time"]);
        let early = prev_exp.as_second() - at.as_second();
        assert!(early <= 2, "refreshed {early}s before expiry: {}", pair[1]);
        assert!(
            early >= 0,
            "the token lapsed before its refresh: {}",
            pair[1]
        );
    }
    for pair in issued.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at).unwrap();
        assert!(
            gap >= Duration::from_millis(700),
            "two refreshes {gap:?} apart"
        );
    }
    // The first mint came from level 2, the rest from level 1.
    let levels: Vec<u64> = w
        .named("refreshed")
        .iter()
        .map(|e| e["level"].as_u64().unwrap())
        .collect();
    assert_eq!(levels[0], 2);
    assert!(levels[1..].iter().all(|l| *l == 1), "{levels:?}");
    assert_eq!(w.named("stopping").len(), 1);
    t.assert_clean(&w.stdout(), &w.stderr(), &secrets);
}

#[test]
fn revocation_is_noticed_within_the_check_interval() {
    let t = Env::new(SimOptions::default());
    let w = t.spawn(&["--check-interval", "2s"], &[]);
    w.wait_for("refreshed", 1, secs(10));
    let first = t.env_value(ACCESS).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    t.sim.revoke_token(&first);
    let revoked_at = Instant::now();
    let got = w.wait_for("refreshed", 2, secs(6));
    assert!(revoked_at.elapsed() < secs(4), "{:?}", revoked_at.elapsed());
    assert!(
        got[1]["reason"].as_str().unwrap().contains("rejected"),
        "{}",
        got[1]
    );
    let second = t.env_value(ACCESS).unwrap();
    assert_ne!(first, second);
    assert!(t.sim.is_token_valid(&second));
    // Validations did one GET each; only the two refreshes issued tokens.
    assert!(t.sim.count("GET", "/v1/dataSources") >= 1);
    assert_eq!(issued(&t.sim).len(), 2);
}

#[test]
fn refresh_rt_min_valid_mints_when_the_refresh_token_nears_its_end() {
    let t = Env::new(SimOptions {
        refresh_ttl: secs(3600),
        ..SimOptions::default()
    });
    assert_eq!(code(&t.run(&["refresh"])), 0);
    let rt1 = t.env_value(REFRESH).unwrap();
    // Far from the window: validated only.
    let out = t.run(&["--json", "refresh", "--rt-min-valid", "10m"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["action"], "none");
    assert_eq!(t.env_value(REFRESH).unwrap(), rt1);
    // Within it: a new pair through level 2.
    let out = t.run(&["--json", "refresh", "--rt-min-valid", "2h"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (v["action"].as_str(), v["level"].as_u64()),
        (Some("refreshed"), Some(2))
    );
    assert_ne!(t.env_value(REFRESH).unwrap(), rt1);
}

#[test]
fn hooks_get_the_tokens_and_failing_or_hanging_hooks_change_nothing() {
    let t = Env::new(SimOptions::default());
    let out = t.run(&[
        "--json",
        "watch",
        "--once",
        "--hook-timeout",
        "1s",
        "--on-refresh",
        "env > hook.env; echo output-of-the-hook",
        "--on-refresh",
        "exit 3",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let hooks: Vec<&Value> = events.iter().filter(|e| e["event"] == "hook").collect();
    let outcomes: Vec<&str> = hooks
        .iter()
        .map(|h| h["outcome"].as_str().unwrap())
        .collect();
    // (A hook past its time-out: agent::tests, without the wait.)
    assert_eq!(outcomes, ["ok", "failed"]);
    assert_eq!(hooks[1]["exitCode"], 3);
    // A hook's output goes to stderr: stdout stays one JSON event a line.
    assert!(stderr(&out).contains("output-of-the-hook"));
    // The first hook saw the saved token and the event.
    let env = std::fs::read_to_string(t.path("hook.env")).unwrap();
    let token = t.env_value(ACCESS).unwrap();
    assert!(env.contains(&format!("{ACCESS}={token}")));
    assert!(env.contains("WEBEX_TOKEN_EVENT=refreshed"));
    assert!(env.contains("WEBEX_SERVICE_APP_ACCESS_TOKEN_EXPIRES_AT="));
    assert!(t.sim.is_token_valid(&token), "a failing hook undid nothing");
    // Audited.
    let audit = std::fs::read_to_string(t.path(".env.audit.jsonl")).unwrap();
    assert_eq!(audit.matches("\"operation\":\"hook\"").count(), 2);
    assert!(!audit.contains(&token));
}

#[test]
fn a_hook_running_refresh_does_not_deadlock() {
    let t = Env::new(SimOptions::default());
    let bin = assert_cmd::cargo::cargo_bin("webex-token");
    let hook = format!("'{}' -q refresh && echo done > hook.done", bin.display());
    let out = t.run(&[
        "watch",
        "--once",
        "--hook-timeout",
        "20s",
        "--on-refresh",
        &hook,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(t.path("hook.done").exists(), "{}", stderr(&out));
}

#[test]
fn systemd_notifications_and_sigterm() {
    use std::os::unix::net::UnixDatagram;
    let t = Env::new(SimOptions::default());
    let sock_path = t.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let w = t.spawn(
        &["--check-interval", "1h"],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + secs(3);
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let all = messages.join("");
    assert!(all.contains("READY=1"), "{messages:?}");
    assert!(all.contains("STATUS=access token expires"), "{messages:?}");
    let pings = messages.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(
        pings >= 4,
        "{pings} watchdog pings in 3 s at 0.2 s: {messages:?}"
    );
    // READY comes once, after the first working token.
    assert_eq!(all.matches("READY=1").count(), 1);
    assert!(t.env_value(ACCESS).is_some());
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
    let mut rest = String::new();
    while let Ok(n) = sock.recv(&mut buf) {
        rest.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(rest.contains("STOPPING=1"), "{rest}");
    assert_eq!(w.named("stopping")[0]["signal"], "SIGTERM");
}

pub(crate) fn http_get(port: u16, path: &str) -> (u16, String) {
    http_get_accept(port, path, None)
}

/// A GET (with `accept` as its `Accept` header): the status and the body.
pub(crate) fn http_get_accept(port: u16, path: &str, accept: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{accept}\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn health_and_metrics() {
    let t = Env::new(SimOptions::default());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let w = t.spawn(&["--health", &addr], &[]);
    w.wait_for("refreshed", 1, secs(10));
    let (status, body) = http_get(port, "/healthz");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    let (status, metrics) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics
            .contains("webex_token_expiry_timestamp_seconds{credential=\"service_access_token\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("webex_token_refreshes_total{level=\"2\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    // Counter series nothing has happened to yet are there, at 0 (trust
    // round 3): alert rules on rate() need them before the first event.
    for series in [
        "webex_token_refreshes_total{level=\"3\",outcome=\"rejected\"} 0",
        "outcome=\"timeout\"} 0",
        "kind=\"reauthorization_required\"} 0",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    // Prometheus text 0.0.4 unless OpenMetrics is asked for.
    assert!(
        metrics.contains("# TYPE webex_token_refreshes_total counter"),
        "{metrics}"
    );
    assert!(!metrics.contains("# EOF"), "{metrics}");
    let (status, om) = http_get_accept(
        port,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(status, 200);
    assert!(om.contains("# TYPE webex_token_refreshes counter"), "{om}");
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    assert_eq!(http_get(port, "/nope").0, 404);
    for s in t.secrets() {
        assert!(!metrics.contains(&s) && !body.contains(&s));
    }
    drop(w);

    // No working token: 503, and the failures are counted.
    let t = Env::new(SimOptions::default());
    t.break_config();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let w = t.spawn(&["--health", &addr], &[]);
    let failed = w.wait_for("failed", 1, secs(10));
    assert_eq!(failed[0]["exitCode"], 4);
    let (status, body) = http_get(port, "/healthz");
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["needsAttention"], true);
    let metrics = http_get(port, "/metrics").1;
    assert!(
        metrics.contains("webex_token_failures_total{kind=\"reauthorization_required\"} 1"),
        "{metrics}"
    );
}

#[test]
fn health_refuses_a_remote_address_unless_allowed() {
    let t = Env::new(SimOptions::default());
    let out = t.run(&["watch", "--health", "0.0.0.0:0"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--health-allow-remote"));
    assert!(t.sim.requests().is_empty(), "nothing was sent");
    // A port taken by someone else: a local problem, exit 3.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = t.run(&["watch", "--health", &addr]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}

#[test]
fn sighup_re_plans_at_once() {
    let t = Env::new(SimOptions::default());
    let w = t.spawn(&["--check-interval", "1h"], &[]);
    w.wait_for("refreshed", 1, secs(10));
    let first = t.env_value(ACCESS).unwrap();
    t.sim.revoke_token(&first);
    std::thread::sleep(Duration::from_millis(300));
    // Nothing is due for an hour: only the SIGHUP makes it look now.
    assert_eq!(w.named("refreshed").len(), 1);
    let sent = Instant::now();
    w.signal("HUP");
    let got = w.wait_for("refreshed", 2, secs(5));
    assert!(sent.elapsed() < secs(3));
    assert!(got[1]["reason"].as_str().unwrap().contains("rejected"));
    assert!(t.sim.is_token_valid(&t.env_value(ACCESS).unwrap()));
    let (code, _) = w.stop();
    assert_eq!(code, 0);
}

#[test]
fn rejected_chain_keeps_running_and_picks_up_a_new_config() {
    let t = Env::new(SimOptions::default());
    let good = t.break_config();
    let w = t.spawn(&[], &[]);
    let failed = w.wait_for("failed", 1, secs(10));
    assert_eq!(failed[0]["exitCode"], 4);
    assert!(w.stderr().contains("setup-oauth"), "{}", w.stderr());
    // As `setup-oauth` would: a working personal token lands in the config.
    std::thread::sleep(Duration::from_millis(200));
    t.write_config(&good);
    w.wait_for("refreshed", 1, secs(6));
    assert!(t.sim.is_token_valid(&t.env_value(ACCESS).unwrap()));
    // It kept running all along, and retried no more than that.
    assert_eq!(w.named("failed").len(), 1);
}

#[test]
fn once_exits_with_refresh_codes() {
    let t = Env::new(SimOptions::default());
    let out = t.run(&["watch", "--once"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(t.sim.is_token_valid(&t.env_value(ACCESS).unwrap()));
    // A second --once finds a working token: one GET.
    t.sim.clear_requests();
    let out = t.run(&["--json", "watch", "--once"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.sim.requests().len(), 1);
    assert!(stdout(&out).contains("\"event\":\"validated\""));

    // Every level rejected: 4.
    let t = Env::new(SimOptions::default());
    t.break_config();
    let out = t.run(&["watch", "--once"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("setup-oauth"));

    // Webex unreachable: 1.
    let dead = free_port();
    let out = t.run(&[
        "--api-base",
        &format!("http://127.0.0.1:{dead}/v1"),
        "--retry-budget",
        "1s",
        "watch",
        "--once",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));

    // No config: 3.
    std::fs::remove_file(t.path("token-config.json")).unwrap();
    let out = t.run(&["watch", "--once"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}

#[test]
fn two_watchers_on_one_env_file_refresh_once_per_expiry() {
    // Stored expiries are whole seconds (rounded down), so a token lives at
    // least 3 s in the file: more than the 2 s window a tick refreshes in.
    let ttl = 4;
    let t = Env::new(SimOptions {
        access_ttl: secs(ttl),
        ..SimOptions::default()
    });
    // The first mint before both start, so they race from the first expiry.
    assert_eq!(code(&t.run(&["refresh"])), 0);
    t.sim.clear_requests();
    let args = ["--min-valid", "1s", "--check-interval", "1h"];
    let a = t.spawn(&args, &[]);
    let b = t.spawn(&args, &[]);
    // Three expiries' worth of refreshes (not a fixed sleep).
    let end = Instant::now() + secs(20);
    while issued(&t.sim).len() < 3 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ca, a) = a.stop();
    let (cb, b) = b.stop();
    assert_eq!((ca, cb), (0, 0), "{}\n{}", a.stderr(), b.stderr());
    let issued = issued(&t.sim);
    let events = a.named("refreshed").len() + b.named("refreshed").len();
    assert_eq!(issued.len(), events);
    assert!(
        issued.len() >= 3,
        "{} refreshes in {}s",
        issued.len(),
        3 * ttl
    );
    for pair in issued.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at).unwrap();
        assert!(
            gap >= Duration::from_millis(700),
            "two refreshes for one expiry ({gap:?} apart)"
        );
    }
}

#[test]
fn sigterm_during_an_exchange_saves_its_answer_then_exits_0() {
    let t = Env::new(SimOptions::default());
    let mint = format!("/v1/applications/{}/token", t.sim.credentials().app_id);
    // Webex issues the pair at once but answers 1.5 s later.
    t.sim.push_fault(webex_sim::Fault::new(
        &mint,
        webex_sim::FaultKind::DelayAfter(Duration::from_millis(1500)),
    ));
    let w = t.spawn(&[], &[]);
    let end = Instant::now() + secs(10);
    while t.sim.count("POST", &mint) == 0 {
        assert!(Instant::now() < end, "no mint request");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
    // The answer in flight was saved, and it is the one Webex issued.
    let token = t.env_value(ACCESS).expect("the minted token was saved");
    assert!(t.sim.is_token_valid(&token));
    assert_eq!(w.named("refreshed").len(), 1);
    assert_eq!(w.named("stopping").len(), 1);
}

/// Requests the simulator answered with this method whose path starts with
/// `prefix`.
pub(crate) fn answered(sim: &Sim, method: &str, prefix: &str) -> Vec<webex_sim::RecordedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method == method && r.path.starts_with(prefix))
        .collect()
}

#[test]
fn datasources_due_are_renewed_and_the_next_run_is_planned_for_the_next_expiry() {
    let t = Env::new(SimOptions::default());
    // The demo files hold two sources: one expires in 24 h (not due), one in
    // 45 min (due now with --ds-min-valid 1h). One more is due in 4 s.
    let soon = t.sim.add_data_source(webex_sim::NewDataSource {
        subject: "due-in-4s".into(),
        expires_in: secs(3600 + 4),
        ..webex_sim::NewDataSource::default()
    });
    let ids: Vec<String> = t
        .sim
        .data_sources()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    let fresh = t
        .sim
        .data_sources()
        .iter()
        .find(|d| d["url"].as_str().unwrap().ends_with("/weather"))
        .map(|d| d["id"].as_str().unwrap().to_string())
        .unwrap();
    let crm = t
        .sim
        .data_sources()
        .iter()
        .find(|d| d["url"].as_str().unwrap().ends_with("/crm"))
        .map(|d| d["id"].as_str().unwrap().to_string())
        .unwrap();
    assert_eq!(ids.len(), 3);
    let seen = t.path("events.txt");
    let hook = format!("echo \"$WEBEX_TOKEN_EVENT\" >> '{}'", seen.display());
    let w = t.spawn(
        &[
            "--check-interval",
            "1h",
            "--datasources",
            "--ds-min-valid",
            "1h",
            "--on-refresh",
            &hook,
        ],
        &[],
    );
    let first = w.wait_for("extended", 1, secs(10));
    let puts = |id: &str| answered(&t.sim, "PUT", &format!("/v1/dataSources/{id}")).len();
    assert_eq!(puts(&crm), 1);
    assert_eq!(puts(&soon), 0, "not due yet");
    assert_eq!(first[0]["summary"]["extended"], 1, "{}", first[0]);
    assert_eq!(first[0]["summary"]["skipped"], 2, "{}", first[0]);
    let listed = first[0]["dataSources"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    // The next run is planned for the earliest expiry left minus 1 h.
    let ts = |v: &Value| v.as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    let soon_exp = listed
        .iter()
        .find(|d| d["id"] == soon.as_str())
        .map(|d| ts(&d["before"]["expiresAt"]))
        .unwrap();
    let next_at = ts(&first[0]["nextAt"]);
    assert_eq!(next_at.as_second(), soon_exp.as_second() - 3600);
    assert_eq!(puts(&fresh), 0, "not due: untouched");
    // (That the next run waits for that deadline, renews the one then due
    // and lists once: agent::tests, without the waiting.)
    let end = Instant::now() + secs(5);
    let hooked = loop {
        let text = std::fs::read_to_string(&seen).unwrap_or_default();
        if text.contains("extended") || Instant::now() > end {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        hooked.lines().filter(|l| *l == "extended").count(),
        1,
        "{hooked}"
    );
    let secrets = t.secrets();
    let jws: Vec<String> = t
        .sim
        .data_sources()
        .iter()
        .filter_map(|d| d["jwsToken"].as_str().map(String::from))
        .collect();
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
    t.assert_clean(&w.stdout(), &w.stderr(), &secrets);
    t.assert_clean(&w.stdout(), &w.stderr(), &jws);
}

#[test]
fn once_with_datasources_renews_what_is_due_and_exits() {
    let t = Env::new(SimOptions::default());
    let out = t.run(&["--json", "watch", "--once", "--datasources"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let extended: Vec<&Value> = events.iter().filter(|e| e["event"] == "extended").collect();
    assert_eq!(extended.len(), 1, "{}", stdout(&out));
    // The token first (its own event), then the data sources.
    let order: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        order,
        ["started", "refreshed", "extended"],
        "{}",
        stdout(&out)
    );
    // The demo source due within 6 h, not the one with 24 h left.
    assert_eq!(extended[0]["summary"]["extended"], 1);
    assert_eq!(extended[0]["summary"]["skipped"], 1);
    assert_eq!(answered(&t.sim, "PUT", "/v1/dataSources/").len(), 1);
    // Without --datasources: no data source is touched.
    let t = Env::new(SimOptions::default());
    let out = t.run(&["--json", "watch", "--once"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stdout(&out).contains("\"extended\""));
    assert_eq!(answered(&t.sim, "PUT", "/v1/dataSources/").len(), 0);
}

#[test]
fn watch_covers_every_org_of_service_app_orgs() {
    let t = Env::new(SimOptions::default().with_org_count(2));
    let out = t.run(&["--json", "watch", "--once", "--datasources"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut secrets = t.secrets();
    for org in ["org1", "org2"] {
        let mine: Vec<&Value> = events.iter().filter(|e| e["org"] == org).collect();
        let named = |n: &str| mine.iter().filter(|e| e["event"] == n).count();
        assert_eq!(named("started"), 1, "{org}: {}", stdout(&out));
        assert_eq!(named("refreshed"), 1, "{org}: {}", stdout(&out));
        assert_eq!(named("extended"), 1, "{org}: {}", stdout(&out));
        // Each org's own env file holds a working token.
        let env = t.path(&format!(".env.{org}"));
        let tok = dotenvy::from_path_iter(&env)
            .unwrap()
            .filter_map(Result::ok)
            .find(|(k, _)| k == ACCESS)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no token in {}", env.display()));
        assert!(t.sim.is_token_valid(&tok), "{org}");
        secrets.push(tok);
    }
    // One due data source per org (the demo one with 45 min left).
    assert_eq!(answered(&t.sim, "PUT", "/v1/dataSources/").len(), 2);
    t.assert_clean(&stdout(&out), &stderr(&out), &secrets);
}

#[test]
fn health_reports_every_org_and_names_the_failing_ones() {
    let t = Env::new(SimOptions::default().with_org_count(2));
    // org2 is a new org whose admin has not authorized the app yet: its
    // chain is rejected (403) while org1 works.
    let new_org =
        "Y2lzY29zcGFyazovL3VzL09SR0FOSVpBVElPTi83YzFkMmUzZi00YTViLTRjNmQtOGU5Zi0wYTFiMmMzZDRlNWY";
    let mut config = t.config();
    config["serviceApp"]["orgs"][1]["targetOrgId"] = new_org.into();
    t.write_config(&config);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let w = t.spawn(&["--health", &addr], &[]);
    let failed = w.wait_for("failed", 1, secs(10));
    assert_eq!(failed[0]["org"], "org2", "{}", failed[0]);
    let refreshed = w.wait_for("refreshed", 1, secs(10));
    assert_eq!(refreshed[0]["org"], "org1");
    let (status, body) = http_get(port, "/healthz");
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "unhealthy", "{v}");
    assert_eq!(v["failingOrgs"], serde_json::json!(["org2"]), "{v}");
    assert_eq!(v["needsAttention"], true, "{v}");
    let orgs = v["orgs"].as_array().unwrap();
    assert_eq!(orgs.len(), 2, "{v}");
    assert_eq!(
        (&orgs[0]["org"], &orgs[0]["status"]),
        (&"org1".into(), &"ok".into())
    );
    assert_eq!(
        (&orgs[1]["org"], &orgs[1]["status"]),
        (&"org2".into(), &"unhealthy".into())
    );
    assert!(orgs[1]["lastError"].is_string(), "{v}");
    let metrics = http_get(port, "/metrics").1;
    assert!(
        metrics.contains("webex_token_refreshes_total{org=\"org1\",level=\"2\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("webex_token_failures_total{org=\"org2\",kind="),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "webex_token_expiry_timestamp_seconds{org=\"org1\",credential=\"service_access_token\"}"
        ),
        "{metrics}"
    );
    assert!(
        !metrics.contains("{org=\"org2\",credential=\"service_access_token\"}"),
        "{metrics}"
    );
    // The admin authorizes the app; a SIGHUP makes the watcher try now.
    t.sim.add_org(new_org).unwrap();
    w.signal("HUP");
    let refreshed = w.wait_for("refreshed", 2, secs(8));
    assert_eq!(refreshed[1]["org"], "org2");
    let (status, body) = http_get(port, "/healthz");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["failingOrgs"], serde_json::json!([]), "{v}");
    assert_eq!(v["needsAttention"], false, "{v}");
    let mut secrets = t.secrets();
    for org in ["org1", "org2"] {
        secrets.extend(
            dotenvy::from_path_iter(t.path(&format!(".env.{org}")))
                .unwrap()
                .filter_map(Result::ok)
                .filter(|(k, _)| k == ACCESS || k == REFRESH)
                .map(|(_, v)| v),
        );
    }
    let (code, w) = w.stop();
    assert_eq!(code, 0);
    let out = w.stdout();
    t.assert_clean(&out, &w.stderr(), &secrets);
    t.assert_clean(&metrics, &body, &secrets);
}

#[test]
fn healthcheck_exits_0_only_when_healthz_answers_200() {
    let t = Env::new(SimOptions::default());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // Nothing listening: 1, one line saying so.
    let out = t.run(&["healthcheck", "--health", &addr]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("http://{addr}/healthz")),
        "{}",
        stderr(&out)
    );
    // A working watcher: 0 and silent.
    let w = t.spawn(&["--health", &addr], &[]);
    w.wait_for("refreshed", 1, secs(10));
    let out = t.run(&["healthcheck", "--health", &addr]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!((stdout(&out), stderr(&out)), (String::new(), String::new()));
    drop(w);

    // A watcher whose chain is rejected: /healthz is 503, the probe 1.
    let t = Env::new(SimOptions::default());
    t.break_config();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let w = t.spawn(&["--health", &addr], &[]);
    w.wait_for("failed", 1, secs(10));
    let out = t.run(&["healthcheck", "--health", &addr]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("answered 503"), "{}", stderr(&out));
    drop(w);

    // Something that accepts and never answers: 1 within --timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let out = t.run(&["healthcheck", "--health", &addr, "--timeout", "1s"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(started.elapsed() < secs(5), "{:?}", started.elapsed());
    // Said as a time-out, not as EAGAIN ("Resource temporarily unavailable").
    assert!(
        stderr(&out).contains("no answer within 1s"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("temporarily"), "{}", stderr(&out));
    // Something that answers but not in HTTP: 1.
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = garbage.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = garbage.accept() {
            let _ = s.read(&mut [0u8; 256]);
            let _ = s.write_all(b"SSH-2.0-nope\r\n");
        }
    });
    let out = t.run(&["healthcheck", "--health", &addr]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("not HTTP"), "{}", stderr(&out));
}

#[test]
fn a_rejected_chain_waits_an_hour_and_health_says_when() {
    let t = Env::new(SimOptions::default());
    t.break_config();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let w = t.spawn(&["--health", &addr], &[]);
    let failed = w.wait_for("failed", 1, secs(10));
    let at = |v: &Value, k: &str| v[k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    // min(1h, --check-interval 1h): the next try in an hour, not a back-off.
    let wait = at(&failed[0], "retryAt").as_second() - at(&failed[0], "time").as_second();
    assert_eq!(wait, 3600, "{}", failed[0]);
    let (status, body) = http_get(port, "/healthz");
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["needsAttention"], true, "{v}");
    assert!(v["lastError"].as_str().unwrap().contains("rejected"), "{v}");
    // The next try: a refresh, at the retry time.
    assert_eq!(v["next"]["task"], "refresh", "{v}");
    assert_eq!(v["next"]["at"], failed[0]["retryAt"], "{v}");
    // (That nothing is sent meanwhile, and that --check-interval shortens
    // the wait: agent::tests, without the waiting.)
    let metrics = http_get(port, "/metrics").1;
    assert!(
        metrics.contains("webex_token_failures_total{kind=\"reauthorization_required\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("webex_token_refreshes_total{level=\"2\",outcome=\"rejected\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_failed_data_source_run_backs_off_without_holding_up_the_token() {
    let t = Env::new(SimOptions::default());
    // The demo source with 45 min left is due; its PUT fails for now.
    let due = t
        .sim
        .data_sources()
        .into_iter()
        .find(|d| d["subject"] == "demo-crm-feed")
        .unwrap();
    let put = format!("/v1/dataSources/{}", due["id"].as_str().unwrap());
    t.sim
        .push_fault(webex_sim::Fault::status(&put, 503).forever());
    let w = t.spawn(&["--datasources", "--retry-budget", "1s"], &[]);
    // The token is refreshed all the same.
    w.wait_for("refreshed", 1, secs(10));
    let failed = w.wait_for("failed", 1, secs(10));
    assert_eq!(failed[0]["task"], "extend", "{}", failed[0]);
    assert_eq!(failed[0]["exitCode"], 1, "{}", failed[0]);
    let at = |v: &Value, k: &str| v[k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    let wait = at(&failed[0], "nextAt").as_second() - at(&failed[0], "time").as_second();
    assert!((4..=7).contains(&wait), "first back-off {wait}s");
    // (The back-off and the run after it: agent::tests.)
    assert!(t.sim.is_token_valid(&t.env_value(ACCESS).unwrap()));
}

#[test]
fn several_orgs_log_lines_name_their_org_and_a_signal_is_logged_once() {
    let t = Env::new(SimOptions::default().with_org_count(3));
    let w = t.spawn(&["--check-interval", "1h"], &[]);
    w.wait_for("refreshed", 3, secs(10));
    let (code, w) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
    let err = w.stderr();
    for org in ["org1", "org2", "org3"] {
        assert!(
            err.contains(&format!("note: {org}: refreshed via level 2")),
            "{err}"
        );
        assert!(err.contains(&format!("note: {org}: watching ")), "{err}");
    }
    // One line for the process, not one per org; each org's loop still
    // reports its own `stopping` event.
    assert_eq!(
        err.matches("SIGTERM received: stopping").count(),
        1,
        "{err}"
    );
    assert!(err.contains("\nnote: SIGTERM received: stopping"), "{err}");
    assert_eq!(w.named("stopping").len(), 3);

    // A failure names its org too.
    let t = Env::new(SimOptions::default().with_org_count(2));
    t.break_config();
    let w = t.spawn(&[], &[]);
    w.wait_for("failed", 2, secs(10));
    let err = w.stderr();
    for org in ["org1", "org2"] {
        assert!(
            err.contains(&format!(
                "error: {org}: every available level of the refresh chain was rejected"
            )),
            "{err}"
        );
    }
}
