//! The test environment: a temp dir with config and env file, a mock Webex,
//! and a run helper that scans every output for every secret it knows.

#![allow(dead_code)]

use assert_cmd::Command;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;
use tempfile::TempDir;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const SA_CLIENT_ID: &str = "Cservice-app-client-id";
pub const SA_SECRET: &str = "SECRET-service-app-client-secret-7f3a";
pub const APP_ID: &str = "Y2lzY29zcGFyazovL3VzL0FQUExJQ0FUSU9OL0NzZXJ2aWNl";
pub const ORG_ID: &str = "Y2lzY29zcGFyazovL3VzL09SR0FOSVpBVElPTi9vcmc";
pub const PAT: &str = "SECRET-personal-access-token-11aa";
pub const INT_CLIENT_ID: &str = "Cintegration-client-id";
pub const INT_SECRET: &str = "SECRET-integration-client-secret-22bb";
pub const INT_REFRESH: &str = "SECRET-integration-refresh-token-33cc";
pub const OLD_ACCESS: &str = "SECRET-old-access-token-44dd";
pub const OLD_REFRESH: &str = "SECRET-old-refresh-token-55ee";

pub struct TestEnv {
    pub dir: TempDir,
    pub server: MockServer,
    pub secrets: Vec<String>,
}

impl TestEnv {
    pub async fn new() -> TestEnv {
        let env = TestEnv {
            dir: tempfile::tempdir().unwrap(),
            server: MockServer::start().await,
            secrets: vec![
                SA_SECRET,
                PAT,
                INT_SECRET,
                INT_REFRESH,
                OLD_ACCESS,
                OLD_REFRESH,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        };
        env.write_config(&default_config(true));
        env
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn env_path(&self) -> PathBuf {
        self.path(".env")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("token-config.json")
    }

    /// Writes the config at mode 0600, as `init` and every run create it
    /// (at 0644 `status` and `refresh` would warn).
    pub fn write_config(&self, v: &Value) {
        let p = self.config_path();
        std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
        private(&p);
    }

    /// Writes the env file at mode 0600 (see `write_config`).
    pub fn write_env(&self, text: &str) {
        let p = self.env_path();
        std::fs::write(&p, text).unwrap();
        private(&p);
    }

    pub fn read_env(&self) -> String {
        std::fs::read_to_string(self.env_path()).unwrap()
    }

    pub fn read_config(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.config_path()).unwrap()).unwrap()
    }

    /// Values the env file holds, read the way dotenvy reads them.
    pub fn env_values(&self) -> std::collections::HashMap<String, String> {
        dotenvy::from_path_iter(self.env_path())
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    pub fn base(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// The binary, in the temp dir, with a scrubbed environment.
    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    /// Like [`cmd`], as a plain `std::process::Command` (for spawning).
    pub fn std_cmd(&self) -> std::process::Command {
        let mut c = scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), self.dir.path());
        c.env("WEBEX_API_BASE_URL", self.base())
            .env("HOME", self.dir.path());
        c
    }

    /// Runs with `args` (plus -vv unless `quiet_logs`), checks that no
    /// known secret appears in stdout or stderr, returns the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_allowing(args, &[])
    }

    /// Like [`run`], but `allowed_on_stdout` may appear on stdout (the
    /// token `token` was asked for).
    pub fn run_allowing(&self, args: &[&str], allowed_on_stdout: &[&str]) -> Output {
        let mut c = self.cmd();
        // Global flags go before the subcommand so `exec -- CMD` keeps its own.
        if !args.contains(&"-q") && !args.iter().any(|a| a.starts_with("-v")) {
            c.arg("-vv");
        }
        c.args(args);
        let out = c.output().unwrap();
        self.assert_no_secrets(&out, allowed_on_stdout);
        out
    }

    pub fn assert_no_secrets(&self, out: &Output, allowed_on_stdout: &[&str]) {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        for s in &self.secrets {
            assert!(
                !stderr.contains(s.as_str()),
                "secret {s} leaked on stderr:\n{stderr}"
            );
            if !allowed_on_stdout.contains(&s.as_str()) {
                assert!(
                    !stdout.contains(s.as_str()),
                    "secret {s} leaked on stdout:\n{stdout}"
                );
            }
        }
        // Audit log: never a secret either.
        if let Ok(audit) = std::fs::read_to_string(self.path(".env.audit.jsonl")) {
            for s in &self.secrets {
                assert!(!audit.contains(s.as_str()), "secret {s} in the audit log");
            }
        }
    }

    /// Registers a token value a mock will hand out, so scans look for it.
    pub fn secret(&mut self, s: &str) -> String {
        self.secrets.push(s.to_string());
        s.to_string()
    }

    pub async fn requests(&self) -> Vec<wiremock::Request> {
        self.server.received_requests().await.unwrap_or_default()
    }

    pub async fn count(&self, m: &str, p: &str) -> usize {
        self.requests()
            .await
            .iter()
            .filter(|r| r.method.as_str() == m && r.url.path() == p)
            .count()
    }

    // ---- mocks ----

    pub async fn mock_validate(&self, token: &str, status: u16) {
        let body = if status == 200 {
            json!({"items": []})
        } else {
            webex_error(
                "The request requires a valid access token set in the Authorization request header.",
            )
        };
        Mock::given(method("GET"))
            .and(path("/v1/dataSources"))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&self.server)
            .await;
    }

    /// `POST /access_token` for `client_id` + `refresh_token` answers `resp`.
    pub async fn mock_refresh(&self, client_id: &str, refresh_token: &str, resp: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path("/v1/access_token"))
            .and(body_string_contains(
                format!("client_id={}", urlenc(client_id)).as_str(),
            ))
            .and(body_string_contains(
                format!("refresh_token={}", urlenc(refresh_token)).as_str(),
            ))
            .and(body_string_contains("grant_type=refresh_token"))
            .respond_with(resp)
            .mount(&self.server)
            .await;
    }

    /// `POST /applications/{appId}/token` with bearer `pat` answers `resp`.
    pub async fn mock_mint(&self, pat: &str, resp: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path(format!("/v1/applications/{APP_ID}/token").as_str()))
            .and(header("authorization", format!("Bearer {pat}").as_str()))
            .respond_with(resp)
            .mount(&self.server)
            .await;
    }
}

/// `program` run in `dir` with the user's environment scrubbed of anything
/// that would change webex-token's behaviour, and retries without sleeps.
/// Every way the tests start the binary goes through here.
/// Mode 0600 (a test that wants another mode sets it after writing).
fn private(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn scrubbed(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        // (systemd's credential and state directories too: a test sets
        // them when it means to.)
        if k.starts_with("WEBEX_")
            || [
                "RUST_LOG",
                "NO_COLOR",
                "CREDENTIALS_DIRECTORY",
                "STATE_DIRECTORY",
            ]
            .contains(&k.as_str())
        {
            c.env_remove(k);
        }
    }
    c.env("WEBEX_TOKEN_TEST_NO_RETRY_DELAY", "1")
        .env("RUST_BACKTRACE", "0");
    c
}

pub fn urlenc(s: &str) -> String {
    form_urlencoded(s)
}

fn form_urlencoded(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn default_config(with_integration: bool) -> Value {
    let mut v = json!({
        "serviceApp": {
            "appId": APP_ID,
            "clientId": SA_CLIENT_ID,
            "clientSecret": SA_SECRET,
            "targetOrgId": ORG_ID,
        },
        "tokenManager": {
            "personalAccessToken": PAT,
        },
        "customKey": {"kept": true},
    });
    if with_integration {
        v["tokenManager"]["integration"] = json!({
            "clientId": INT_CLIENT_ID,
            "clientSecret": INT_SECRET,
            "refreshToken": INT_REFRESH,
        });
    }
    v
}

pub fn webex_error(message: &str) -> Value {
    json!({
        "message": message,
        "errors": [{"description": message}],
        "trackingId": "ROUTER_TEST_TRACKING_1",
    })
}

pub fn oauth_error(code: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({
        "error": code,
        "message": "The refresh token provided is expired, revoked, malformed, or invalid.",
        "trackingId": "ROUTER_TEST_TRACKING_2",
    }))
}

pub fn token_response(
    access: &str,
    expires_in: u64,
    refresh: Option<(&str, u64)>,
) -> ResponseTemplate {
    let mut v = json!({
        "access_token": access,
        "expires_in": expires_in,
        "token_type": "Bearer",
    });
    if let Some((r, e)) = refresh {
        v["refresh_token"] = json!(r);
        v["refresh_token_expires_in"] = json!(e);
    }
    ResponseTemplate::new(200).set_body_json(v)
}

/// An RFC 3339 UTC instant `secs` from now.
pub fn in_secs(secs: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn env_with(access: &str, access_exp: Option<&str>, refresh: Option<&str>) -> String {
    let mut s = format!("WEBEX_SERVICE_APP_ACCESS_TOKEN={access}\n");
    if let Some(e) = access_exp {
        s.push_str(&format!("WEBEX_SERVICE_APP_ACCESS_TOKEN_EXPIRES_AT={e}\n"));
    }
    if let Some(r) = refresh {
        s.push_str(&format!("WEBEX_SERVICE_APP_REFRESH_TOKEN={r}\n"));
    }
    s
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The default config with the integration refresh token's expiry known
/// (written the way webex-token writes it, with the token's fingerprint
/// beside it), `secs` from now: `status --check` fails on unknown expiries.
pub fn config_with_known_integration_expiry(secs: i64) -> Value {
    let mut cfg = default_config(true);
    cfg["tokenManager"]["integration"]["refreshTokenExpiresAt"] = serde_json::json!(in_secs(secs));
    cfg["tokenManager"]["integration"]["refreshTokenFingerprint"] =
        serde_json::json!(webex_token::secret::fingerprint_str(INT_REFRESH));
    cfg
}

/// A loopback port free right now (for a server the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A data source object as Webex returns it.
pub fn source(id: &str, token: &str) -> Value {
    json!({
        "id": id,
        "schemaId": format!("schema-{id}"),
        "orgId": ORG_ID,
        "applicationId": APP_ID,
        "url": format!("https://provider.example/{id}"),
        "audience": "provider-app",
        "subject": format!("subject-{id}"),
        "nonce": format!("old-nonce-{id}"),
        "tokenLifetimeMinutes": 1440,
        "status": "active",
        "jwsToken": token,
        "createdBy": "machine-account",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
    })
}

/// Sends the signal named `sig` (`TERM`, `INT`, `HUP`, `KILL`, `STOP`,
/// `CONT`, with or without `SIG`) to the process `pid` the test started.
/// Through the kill(2) system call rather than `/bin/kill`, which a minimal
/// machine (Debian's minbase, a container) does not have.
pub fn send_signal(pid: u32, sig: &str) {
    use rustix::process::{Pid, Signal, kill_process};
    let signal = match sig.trim_start_matches("SIG") {
        "TERM" => Signal::TERM,
        "INT" => Signal::INT,
        "HUP" => Signal::HUP,
        "KILL" => Signal::KILL,
        "STOP" => Signal::STOP,
        "CONT" => Signal::CONT,
        "USR1" => Signal::USR1,
        other => panic!("send_signal: no such signal in the tests: {other}"),
    };
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits i32")).expect("pid is not 0");
    kill_process(pid, signal).unwrap_or_else(|e| panic!("kill -{sig} {pid:?}: {e}"));
}

/// `setup-oauth --device` as a person runs it by hand (`cmd` is the
/// program with its files and environment), approved at the simulator as
/// soon as it has asked for a code; its output.
pub fn setup_oauth_device_approved(mut cmd: std::process::Command, sim: &webex_sim::Sim) -> Output {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let child = cmd
        .env_remove("WEBEX_TOKEN_TEST_NO_RETRY_DELAY")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .args([
            "setup-oauth",
            "--device",
            "--no-browser",
            "--timeout",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    while sim.approve_device(None).is_none() {
        assert!(Instant::now() < end, "setup-oauth asked for no code");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}
