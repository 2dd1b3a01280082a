//! End to end against webex-sim, the project's stateful Webex stand-in:
//! real token lifetimes, expiry, revocation and rotation.

use crate::common::{code, stderr, stdout};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;
use webex_sim::{Sim, SimOptions, TokenKind};

struct SimEnv {
    sim: Sim,
    dir: TempDir,
}

impl SimEnv {
    fn new(opts: SimOptions) -> SimEnv {
        let sim = Sim::start(opts).unwrap();
        let dir = tempfile::tempdir().unwrap();
        sim.write_demo_files(dir.path()).unwrap();
        SimEnv { sim, dir }
    }

    fn cmd(&self) -> Command {
        crate::common::scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), self.dir.path())
    }

    /// Every secret the files hold right now (config and env file).
    fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.dir.path().join("token-config.json")).unwrap(),
        )
        .unwrap();
        let c = &cfg;
        for v in [
            &c["serviceApp"]["clientSecret"],
            &c["tokenManager"]["personalAccessToken"],
            &c["tokenManager"]["integration"]["clientSecret"],
            &c["tokenManager"]["integration"]["refreshToken"],
        ] {
            if let Some(s) = v.as_str() {
                out.push(s.to_string());
            }
        }
        for (k, v) in self.env() {
            if !k.ends_with("EXPIRES_AT") {
                out.push(v);
            }
        }
        out
    }

    fn env(&self) -> Vec<(String, String)> {
        match dotenvy::from_path_iter(self.dir.path().join(".env")) {
            Ok(it) => it.map(|r| r.unwrap()).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn env_value(&self, key: &str) -> Option<String> {
        self.env()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn run(&self, args: &[&str]) -> Output {
        let before = self.secrets();
        let mut c = self.cmd();
        if !args.contains(&"-q") {
            c.arg("-vv");
        }
        let out = c.args(args).output().unwrap();
        let after = self.secrets();
        let (o, e) = (stdout(&out), stderr(&out));
        for s in before.iter().chain(after.iter()) {
            assert!(
                !o.contains(s.as_str()) && !e.contains(s.as_str()),
                "secret leaked:\n{o}\n{e}"
            );
        }
        out
    }
}

#[test]
fn the_whole_chain_against_the_simulator() {
    let t = SimEnv::new(SimOptions::default());
    let sim = &t.sim;

    // No .env: level 2 mints.
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("level 2"), "{}", stdout(&out));
    let access = t.env_value("WEBEX_SERVICE_APP_ACCESS_TOKEN").unwrap();
    assert!(sim.is_token_valid(&access));

    // Valid: one GET, nothing else.
    sim.clear_requests();
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0);
    assert_eq!(sim.requests().len(), 1);
    assert_eq!(sim.count("GET", "/v1/dataSources"), 1);

    // Expired at Webex: 401, then level 1.
    sim.expire_all(TokenKind::ServiceAccess);
    sim.clear_requests();
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("level 1"));
    assert_eq!(sim.requests().len(), 2);
    let access2 = t.env_value("WEBEX_SERVICE_APP_ACCESS_TOKEN").unwrap();
    assert_ne!(access, access2);
    assert!(sim.is_token_valid(&access2));

    // Refresh token dead too: level 2.
    sim.expire_all(TokenKind::ServiceAccess);
    sim.expire_all(TokenKind::ServiceRefresh);
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("level 2"));

    // Personal token dead too: level 3, and the config gets the new one.
    sim.expire_all(TokenKind::ServiceAccess);
    sim.expire_all(TokenKind::ServiceRefresh);
    sim.expire_all(TokenKind::Personal);
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("level 3"));
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(t.dir.path().join("token-config.json")).unwrap(),
    )
    .unwrap();
    assert!(sim.is_token_valid(cfg["tokenManager"]["personalAccessToken"].as_str().unwrap()));

    // `token` with a fresh stored expiry: no request at all.
    sim.clear_requests();
    let out = t.cmd().arg("token").output().unwrap();
    assert_eq!(code(&out), 0);
    assert!(sim.is_token_valid(stdout(&out).trim()));
    assert_eq!(sim.requests().len(), 0);

    // Everything dead: exit 4.
    for k in [
        TokenKind::ServiceAccess,
        TokenKind::ServiceRefresh,
        TokenKind::Personal,
        TokenKind::IntegrationRefresh,
    ] {
        sim.expire_all(k);
    }
    let env_before = std::fs::read(t.dir.path().join(".env")).unwrap();
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert_eq!(
        std::fs::read(t.dir.path().join(".env")).unwrap(),
        env_before
    );
}

#[test]
fn rotated_refresh_tokens_are_always_saved() {
    let t = SimEnv::new(SimOptions {
        rotate_refresh_tokens: true,
        ..SimOptions::default()
    });
    let sim = &t.sim;
    assert_eq!(code(&t.run(&["refresh"])), 0);
    for round in 0..3 {
        let old_rt = t.env_value("WEBEX_SERVICE_APP_REFRESH_TOKEN").unwrap();
        sim.expire_all(TokenKind::ServiceAccess);
        let out = t.run(&["refresh"]);
        assert_eq!(code(&out), 0, "round {round}: {}", stderr(&out));
        assert!(stdout(&out).contains("level 1"), "round {round}");
        let new_rt = t.env_value("WEBEX_SERVICE_APP_REFRESH_TOKEN").unwrap();
        assert_ne!(old_rt, new_rt, "rotated");
        assert!(sim.is_token_valid(&new_rt));
        assert!(
            !sim.is_token_valid(&old_rt),
            "the old one is revoked by rotation"
        );
    }
    // Integration refresh token rotation is saved into the config.
    sim.expire_all(TokenKind::ServiceAccess);
    sim.expire_all(TokenKind::ServiceRefresh);
    sim.expire_all(TokenKind::Personal);
    let read_irt = || -> String {
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(t.dir.path().join("token-config.json")).unwrap(),
        )
        .unwrap();
        cfg["tokenManager"]["integration"]["refreshToken"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let irt = read_irt();
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let irt2 = read_irt();
    assert_ne!(irt, irt2);
    assert!(sim.is_token_valid(&irt2));
}

#[test]
fn personal_token_expiry_passing_on_the_clock() {
    // Short lifetimes, moved forward on the simulator's clock.
    let t = SimEnv::new(SimOptions {
        access_ttl: Duration::from_secs(30),
        ..SimOptions::default()
    });
    let sim = &t.sim;
    assert_eq!(code(&t.run(&["refresh"])), 0);
    // 30 s tokens are always within the default --min-valid of 1 h, so the
    // next run refreshes without validating (one POST).
    sim.clear_requests();
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sim.count("GET", "/v1/dataSources"), 0);
    assert_eq!(sim.count("POST", "/v1/access_token"), 1);
    // With --min-valid 10s it is validated instead, and after the
    // simulator's clock passes the lifetime, the 401 leads to level 1.
    sim.clear_requests();
    let out = t.run(&["refresh", "--min-valid", "10s"]);
    assert_eq!(code(&out), 0);
    assert_eq!(sim.count("GET", "/v1/dataSources"), 1);
    sim.advance_clock(Duration::from_secs(31));
    sim.clear_requests();
    let out = t.run(&["refresh", "--min-valid", "10s"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sim.count("GET", "/v1/dataSources"), 1);
    assert_eq!(sim.count("POST", "/v1/access_token"), 1);
}

#[test]
fn twenty_concurrent_runs_against_the_simulator() {
    let t = SimEnv::new(SimOptions::default());
    let sim = &t.sim;
    assert_eq!(code(&t.run(&["refresh"])), 0);
    sim.expire_all(TokenKind::ServiceAccess);
    // Make the stored expiry pass too, so every run wants to refresh.
    let env_path = t.dir.path().join(".env");
    let text = std::fs::read_to_string(&env_path).unwrap();
    let exp = t
        .env_value("WEBEX_SERVICE_APP_ACCESS_TOKEN_EXPIRES_AT")
        .unwrap();
    std::fs::write(&env_path, text.replace(&exp, "2001-01-01T00:00:00Z")).unwrap();
    sim.push_fault(webex_sim::Fault::new(
        "/v1/access_token",
        webex_sim::FaultKind::Delay(Duration::from_millis(200)),
    ));
    sim.clear_requests();
    let kids: Vec<_> = (0..20)
        .map(|_| {
            t.cmd()
                .args(["-q", "refresh"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in kids {
        let out = k.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(stdout(&out), "");
    }
    assert_eq!(sim.count("POST", "/v1/access_token"), 1);
    // Only validations besides it (a straggler that started after the
    // write may check the new token); never a second refresh or mint.
    assert!(
        sim.requests()
            .iter()
            .all(|r| r.method == "GET" || r.path == "/v1/access_token"),
        "{:?}",
        sim.requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );
    assert!(sim.is_token_valid(&t.env_value("WEBEX_SERVICE_APP_ACCESS_TOKEN").unwrap()));
}

#[test]
fn datasources_extend_against_the_simulator() {
    let t = SimEnv::new(SimOptions::default());
    let sim = &t.sim;
    // No .env yet: extend refreshes first (level 2), then lists and renews
    // the one source whose token expires within the default 6 h.
    let out = t.run(&["datasources", "extend", "--all", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["summary"]["extended"], 1, "{v}");
    assert_eq!(v["summary"]["skipped"], 1, "{v}");
    assert_eq!(
        sim.count(
            "PUT",
            &format!(
                "/v1/dataSources/{}",
                v["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["action"] == "extended")
                    .unwrap()["id"]
                    .as_str()
                    .unwrap()
            )
        ),
        1
    );
    for ds in sim.data_sources() {
        let jws = ds["jwsToken"].as_str().unwrap();
        assert!(!stdout(&out).contains(jws), "no JWS in output");
    }
    // A second tick finds nothing to do.
    sim.clear_requests();
    let out = t.run(&["-q", "datasources", "extend", "--all"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        sim.requests().iter().filter(|r| r.method == "PUT").count(),
        0
    );
    let list = t.run(&["datasources", "list"]);
    assert_eq!(code(&list), 0);
    assert!(stdout(&list).contains("demo-crm-feed"), "{}", stdout(&list));
}

/// A plain HTTP GET over std (no client crate): status and raw response.
pub(crate) fn raw_get(host_port: &str, target: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(host_port).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (status, resp)
}

/// The browser of `setup-oauth --no-browser --port 0`: reads its stderr up
/// to the authorize URL, asks the simulator's authorize page, follows its
/// redirect to the callback (which must answer 200). Returns the stderr
/// read so far.
pub(crate) fn play_browser(err: &mut impl std::io::BufRead) -> String {
    let mut seen = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no authorize URL:\n{seen}"
        );
        seen.push_str(&line);
        let l = line.trim();
        if l.starts_with("http") && l.contains("/authorize?") {
            break l.to_string();
        }
    };
    let rest = url.strip_prefix("http://").unwrap();
    let (host_port, path) = rest.split_at(rest.find('/').unwrap());
    let (status, resp) = raw_get(host_port, path);
    assert_eq!(status, 302, "{resp}");
    let location = resp
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or_else(|| l.strip_prefix("location: "))
        })
        .unwrap()
        .trim()
        .to_string();
    assert!(
        location.contains("code=") && location.contains("state="),
        "{location}"
    );
    let cb = location.strip_prefix("http://localhost:").unwrap();
    let (port, cb_path) = cb.split_at(cb.find('/').unwrap());
    let (status, page) = raw_get(&format!("127.0.0.1:{port}"), cb_path);
    assert_eq!(status, 200, "{page}");
    seen
}

/// `cmd` (the binary, with what the test needs) running `setup-oauth
/// --no-browser --port 0` with the browser flow and [`play_browser`] as
/// the browser: its output, with all of its stderr.
pub(crate) fn setup_oauth_in_browser(cmd: &mut Command) -> Output {
    let mut child = cmd
        .args([
            "setup-oauth",
            "--no-browser",
            "--port",
            "0",
            "--timeout",
            "60s",
        ])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let seen = play_browser(&mut err);
    let mut out = child.wait_with_output().unwrap();
    let mut all_err = seen.into_bytes();
    std::io::Read::read_to_end(&mut err, &mut all_err).unwrap();
    out.stderr = all_err;
    out
}

/// setup-oauth end to end: the simulator plays Webex's authorize page and
/// token endpoint (and checks the PKCE verifier against the challenge); the
/// test plays the browser. Then `refresh` works with what was stored.
#[test]
fn setup_oauth_against_the_simulator() {
    let t = SimEnv::new(SimOptions::default());
    let sim = &t.sim;
    let cfg_path = t.dir.path().join("token-config.json");
    let before: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    // The stored personal token is dead: only the new authorization helps.
    sim.expire_all(TokenKind::Personal);
    sim.expire_all(TokenKind::IntegrationRefresh);

    let out = setup_oauth_in_browser(&mut t.cmd());
    let all_err = stderr(&out);
    assert_eq!(code(&out), 0, "{all_err}");

    // The simulator accepted the PKCE verifier (it answers 400 otherwise).
    let exchange = sim
        .requests()
        .into_iter()
        .find(|r| {
            r.path == "/v1/access_token" && r.form_value("grant_type") == Some("authorization_code")
        })
        .expect("a code exchange");
    assert_eq!(exchange.status, 200);
    assert!(
        exchange
            .form_value("code_verifier")
            .is_some_and(|v| v.len() >= 43)
    );

    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let pat = after["tokenManager"]["personalAccessToken"]
        .as_str()
        .unwrap();
    let irt = after["tokenManager"]["integration"]["refreshToken"]
        .as_str()
        .unwrap();
    assert_ne!(
        pat,
        before["tokenManager"]["personalAccessToken"]
            .as_str()
            .unwrap()
    );
    assert!(sim.is_token_valid(pat) && sim.is_token_valid(irt));
    let printed = format!("{}{all_err}", stdout(&out));
    for s in [
        pat,
        irt,
        exchange.form_value("code").unwrap(),
        exchange.form_value("code_verifier").unwrap(),
    ] {
        assert!(!printed.contains(s), "secret printed");
    }

    // And the chain now works from it.
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("level 2"), "{}", stdout(&out));
}
