//! `setup-oauth`: the binary runs with `--no-browser --port 0`; the test
//! reads the authorize URL it prints on stderr, plays the browser with a
//! plain HTTP GET to the callback, and checks what reached the (mock) token
//! endpoint and what was stored.

use crate::common::*;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use url::Url;
use wiremock::matchers::{body_string_contains, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

const CODE: &str = "SECRET-auth-code-66ff";
const NEW_PAT: &str = "SECRET-new-personal-token-77gg";
const NEW_INT_REFRESH: &str = "SECRET-new-integration-refresh-88hh";

/// A running `setup-oauth`.
struct Flow {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr_all: Arc<Mutex<String>>,
    stderr_thread: JoinHandle<()>,
    stdout_thread: JoinHandle<Vec<u8>>,
}

fn spawn(t: &TestEnv, extra: &[&str]) -> Flow {
    let mut c = t.std_cmd();
    // No display: `setup-oauth` must not try to open a browser here.
    c.env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .args(["-vv", "setup-oauth", "--no-browser"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stdin = child.stdin.take();
    let mut out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, lines) = channel();
    let stderr_all = Arc::new(Mutex::new(String::new()));
    let all = stderr_all.clone();
    let stderr_thread = std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            all.lock().unwrap().push_str(&line);
            all.lock().unwrap().push('\n');
            let _ = tx.send(line);
        }
    });
    let stdout_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    Flow {
        child,
        stdin,
        lines,
        stderr_all,
        stderr_thread,
        stdout_thread,
    }
}

impl Flow {
    /// The authorize URL the binary printed.
    fn authorize_url(&self) -> Url {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_secs(1)) {
                Ok(line) if line.trim().starts_with("http") && line.contains("/authorize?") => {
                    return Url::parse(line.trim()).unwrap();
                }
                _ => {}
            }
        }
        panic!(
            "no authorize URL printed:\n{}",
            self.stderr_all.lock().unwrap()
        );
    }

    /// Waits until stderr holds `needle` (lines arrive on their own thread).
    fn wait_for_stderr(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.stderr_all.lock().unwrap().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "`{needle}` not on stderr:\n{}",
            self.stderr_all.lock().unwrap()
        );
    }

    fn paste(&mut self, text: &str) {
        let mut stdin = self.stdin.take().unwrap();
        writeln!(stdin, "{text}").unwrap();
    }

    /// Waits for exit (killing after 60s) and collects the output.
    fn finish(mut self) -> Output {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.stderr_thread.join().unwrap();
        let stdout = self.stdout_thread.join().unwrap();
        let stderr = self.stderr_all.lock().unwrap().clone().into_bytes();
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

fn params(u: &Url) -> HashMap<String, String> {
    u.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Checks the authorize URL; returns (state, code_challenge, callback port).
fn check_authorize_url(t: &TestEnv, u: &Url) -> (String, String, u16) {
    assert_eq!(
        u.as_str().split('?').next().unwrap(),
        format!("{}/authorize", t.base())
    );
    let p = params(u);
    assert_eq!(p["client_id"], INT_CLIENT_ID);
    assert_eq!(p["response_type"], "code");
    assert_eq!(p["scope"], "spark:applications_token");
    assert_eq!(p["code_challenge_method"], "S256");
    assert_eq!(p["code_challenge"].len(), 43, "base64url of a SHA-256");
    assert!(p["state"].len() >= 16, "state is random: {}", p["state"]);
    let redirect = Url::parse(&p["redirect_uri"]).unwrap();
    assert_eq!(redirect.scheme(), "http");
    assert_eq!(redirect.host_str(), Some("localhost"));
    assert_eq!(redirect.path(), "/callback");
    (
        p["state"].clone(),
        p["code_challenge"].clone(),
        redirect.port().unwrap(),
    )
}

/// A browser in one function: GET on 127.0.0.1:port; (status, response).
fn http_get(port: u16, target: &str) -> (u16, String) {
    http_get_at(std::net::SocketAddr::from(([127, 0, 0, 1], port)), target)
}

fn http_get_at(addr: std::net::SocketAddr, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, resp)
}

async fn mock_code_exchange(t: &TestEnv, resp: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/v1/access_token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(resp)
        .mount(&t.server)
        .await;
}

/// The form the token endpoint received for the code exchange.
async fn exchange_form(t: &TestEnv) -> Vec<HashMap<String, String>> {
    t.requests()
        .await
        .iter()
        .filter(|r| r.url.path() == "/v1/access_token")
        .map(|r| {
            url::form_urlencoded::parse(&r.body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .collect()
}

fn b64url_sha256(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(s.as_bytes()))
}

fn fp(s: &str) -> String {
    webex_token::secret::fingerprint_str(s)
}

async fn new_env() -> TestEnv {
    let mut t = TestEnv::new().await;
    t.secret(CODE);
    t.secret(NEW_PAT);
    t.secret(NEW_INT_REFRESH);
    t
}

fn assert_stored_new_tokens(t: &TestEnv) {
    let c = t.read_config();
    let tm = &c["tokenManager"];
    assert_eq!(tm["personalAccessToken"], NEW_PAT);
    assert_eq!(tm["integration"]["refreshToken"], NEW_INT_REFRESH);
    assert_eq!(tm["integration"]["clientId"], INT_CLIENT_ID);
    assert_eq!(tm["integration"]["clientSecret"], INT_SECRET);
    let pat_exp = jiff::Timestamp::from_str_lenient(&tm["personalAccessTokenExpiresAt"]);
    let rt_exp = jiff::Timestamp::from_str_lenient(&tm["integration"]["refreshTokenExpiresAt"]);
    let now = jiff::Timestamp::now().as_second();
    assert!((pat_exp - now - 1_209_599).abs() < 120, "{tm}");
    assert!((rt_exp - now - 7_775_999).abs() < 120, "{tm}");
    // Every other key kept.
    assert_eq!(c["customKey"]["kept"], true);
    assert_eq!(c["serviceApp"]["appId"], APP_ID);
    assert_eq!(c["serviceApp"]["clientSecret"], SA_SECRET);
}

trait Lenient {
    fn from_str_lenient(v: &Value) -> i64;
}
impl Lenient for jiff::Timestamp {
    fn from_str_lenient(v: &Value) -> i64 {
        v.as_str()
            .unwrap_or_else(|| panic!("not a time: {v}"))
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second()
    }
}

#[tokio::test]
async fn setup_oauth_success_stores_tokens_and_sends_the_pkce_verifier() {
    let mut t = new_env().await;
    mock_code_exchange(
        &t,
        token_response(NEW_PAT, 1_209_599, Some((NEW_INT_REFRESH, 7_775_999))),
    )
    .await;
    let flow = spawn(&t, &["--port", "0"]);
    let u = flow.authorize_url();
    let (state, challenge, port) = check_authorize_url(&t, &u);
    // Play the browser: the (mock) authorize endpoint signs the person in
    // and redirects to the callback with a code and the state it was given.
    let redirect_uri = format!("http://localhost:{port}/callback");
    Mock::given(method("GET"))
        .and(path("/v1/authorize"))
        .and(query_param("client_id", INT_CLIENT_ID))
        .and(query_param("redirect_uri", redirect_uri.as_str()))
        .and(query_param("code_challenge_method", "S256"))
        .respond_with(ResponseTemplate::new(302).insert_header(
            "location",
            format!("{redirect_uri}?code={CODE}&state={state}").as_str(),
        ))
        .mount(&t.server)
        .await;
    let target = &u.as_str()[u.as_str().find("/v1/authorize").unwrap()..];
    let (status, resp) = http_get_at(*t.server.address(), target);
    assert_eq!(status, 302, "{resp}");
    let location = resp
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .expect("a Location header")
        .trim()
        .to_string();
    let location = Url::parse(&location).unwrap();
    assert_eq!(location.port(), Some(port));
    let (status, page) = http_get(
        port,
        &format!("{}?{}", location.path(), location.query().unwrap()),
    );
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("close this tab"), "{page}");
    let out = flow.finish();
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // What reached the token endpoint.
    let forms = exchange_form(&t).await;
    assert_eq!(forms.len(), 1);
    let f = &forms[0];
    assert_eq!(f["grant_type"], "authorization_code");
    assert_eq!(f["code"], CODE);
    assert_eq!(
        f["redirect_uri"],
        format!("http://localhost:{port}/callback")
    );
    assert_eq!(f["client_id"], INT_CLIENT_ID);
    assert_eq!(f["client_secret"], INT_SECRET);
    let verifier = &f["code_verifier"];
    assert!((43..=128).contains(&verifier.len()));
    assert_eq!(b64url_sha256(verifier), challenge);
    t.secret(verifier);

    assert_stored_new_tokens(&t);
    let s = stdout(&out);
    assert!(s.contains(&fp(NEW_PAT)), "{s}");
    assert!(s.contains(&fp(NEW_INT_REFRESH)), "{s}");
    assert!(s.contains("webex-token refresh"), "{s}");
    let audit = std::fs::read_to_string(t.path(".env.audit.jsonl")).unwrap();
    let line: Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(line["command"], "setup-oauth");
    assert_eq!(line["operation"], "setup");
    assert_eq!(line["personalTokenFingerprint"], fp(NEW_PAT));
    t.assert_no_secrets(&out, &[]);
    // The code verifier never appears either.
    assert!(!stderr(&out).contains(verifier.as_str()));
}

#[tokio::test]
async fn setup_oauth_ignores_stray_requests() {
    let t = new_env().await;
    mock_code_exchange(
        &t,
        token_response(NEW_PAT, 1_209_599, Some((NEW_INT_REFRESH, 7_775_999))),
    )
    .await;
    let flow = spawn(&t, &["--port", "0"]);
    let (state, _, port) = check_authorize_url(&t, &flow.authorize_url());
    assert_eq!(http_get(port, "/favicon.ico").0, 404);
    assert_eq!(http_get(port, "/").0, 404);
    assert_eq!(http_get(port, "/callback").0, 400, "no code, no error");
    let (status, _) = http_get(port, &format!("/callback?code={CODE}&state={state}"));
    assert_eq!(status, 200);
    let out = flow.finish();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_stored_new_tokens(&t);
    t.assert_no_secrets(&out, &[]);
}

#[tokio::test]
async fn setup_oauth_refuses_a_wrong_state_and_stores_nothing() {
    let t = new_env().await;
    mock_code_exchange(
        &t,
        token_response(NEW_PAT, 1_209_599, Some((NEW_INT_REFRESH, 7_775_999))),
    )
    .await;
    let before = std::fs::read(t.config_path()).unwrap();
    let flow = spawn(&t, &["--port", "0", "--timeout", "3s"]);
    let (state, _, port) = check_authorize_url(&t, &flow.authorize_url());
    let wrong = format!("{state}x");
    let (status, page) = http_get(port, &format!("/callback?code={CODE}&state={wrong}"));
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("refused"), "{page}");
    // A forged `error` with a wrong state does not end the run either.
    let (status, _) = http_get(port, "/callback?error=access_denied&state=forged");
    assert_eq!(status, 400);
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    // The run keeps waiting for the real callback, then times out.
    let out = flow.finish();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2 callbacks with a wrong `state` were refused"),
        "{}",
        stderr(&out)
    );
    assert_eq!(t.count("POST", "/v1/access_token").await, 0);
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    t.assert_no_secrets(&out, &[]);
}

#[tokio::test]
async fn setup_oauth_access_denied_exits_4() {
    let t = new_env().await;
    let before = std::fs::read(t.config_path()).unwrap();
    let flow = spawn(&t, &["--port", "0"]);
    let (state, _, port) = check_authorize_url(&t, &flow.authorize_url());
    let (status, page) = http_get(
        port,
        &format!("/callback?error=access_denied&error_description=The+user+said+no&state={state}"),
    );
    assert_eq!(status, 400);
    assert!(page.contains("access_denied"), "{page}");
    let out = flow.finish();
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("access_denied"), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    assert_eq!(t.count("POST", "/v1/access_token").await, 0);
    t.assert_no_secrets(&out, &[]);
}

#[tokio::test]
async fn setup_oauth_times_out_with_exit_1() {
    let t = new_env().await;
    let before = std::fs::read(t.config_path()).unwrap();
    let out = t.run(&[
        "setup-oauth",
        "--no-browser",
        "--port",
        "0",
        "--timeout",
        "1s",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no authorization arrived within 1s"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("nothing was written"));
    assert!(
        !stderr(&out).contains('\r'),
        "no countdown without a terminal"
    );
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    assert_eq!(stdout(&out), "");
}

#[tokio::test]
async fn setup_oauth_port_in_use_exits_3_naming_the_port() {
    let t = new_env().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = t.run(&["setup-oauth", "--no-browser", "--port", &port]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains(&format!("port {port}")), "{e}");
    assert!(e.contains("redirect URI"), "{e}");
    assert!(e.contains("--manual") && e.contains("--device"), "{e}");
    assert!(!e.contains("/authorize?"), "no URL is printed: {e}");
}

#[tokio::test]
async fn setup_oauth_token_endpoint_400_exits_4() {
    let t = new_env().await;
    mock_code_exchange(&t, oauth_error("invalid_grant")).await;
    let before = std::fs::read(t.config_path()).unwrap();
    let flow = spawn(&t, &["--port", "0"]);
    let (state, _, port) = check_authorize_url(&t, &flow.authorize_url());
    let (status, page) = http_get(port, &format!("/callback?code={CODE}&state={state}"));
    assert_eq!(status, 500, "{page}");
    assert!(page.contains("nothing was saved"), "{page}");
    let out = flow.finish();
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("invalid_grant") || e.contains("expired, revoked"),
        "{e}"
    );
    assert!(e.contains("ROUTER_TEST_TRACKING_2"), "{e}");
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    t.assert_no_secrets(&out, &[]);
}

#[tokio::test]
async fn setup_oauth_token_endpoint_500_exits_1() {
    let t = new_env().await;
    mock_code_exchange(
        &t,
        ResponseTemplate::new(500).set_body_json(webex_error("Internal error")),
    )
    .await;
    let before = std::fs::read(t.config_path()).unwrap();
    let flow = spawn(&t, &["--port", "0"]);
    let (state, _, port) = check_authorize_url(&t, &flow.authorize_url());
    http_get(port, &format!("/callback?code={CODE}&state={state}"));
    let out = flow.finish();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("HTTP 500"), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    t.assert_no_secrets(&out, &[]);
}

#[tokio::test]
async fn setup_oauth_missing_client_exits_3_before_binding() {
    let t = new_env().await;
    t.write_config(&default_config(false));
    // Hold a port: if the command bound before checking the config, it
    // would report the port instead.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = t.run(&["setup-oauth", "--no-browser", "--port", &port]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("tokenManager.integration.clientId"), "{e}");
    assert!(e.contains("tokenManager.integration.clientSecret"), "{e}");
    assert!(e.contains("developer.webex.com"), "{e}");
    assert!(!e.contains("in use"), "{e}");
    assert!(!e.contains("/authorize?"), "{e}");

    // Only the secret missing: only it is named.
    let mut c = default_config(true);
    c["tokenManager"]["integration"]["clientSecret"] = Value::String(String::new());
    t.write_config(&c);
    let out = t.run(&["setup-oauth", "--no-browser", "--port", &port]);
    assert_eq!(code(&out), 3);
    let e = stderr(&out);
    assert!(
        e.contains("`tokenManager.integration.clientSecret` is empty"),
        "{e}"
    );
    assert!(!e.contains("integration.clientId`"), "{e}");
}

/// The machine's first non-loopback IPv4 address, if it has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let from_hostname = Command::new("hostname")
        .arg("-I")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
                .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        });
    from_hostname.or_else(|| {
        // No packets are sent: connecting a UDP socket only picks a route.
        let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        s.connect("192.0.2.1:9").ok()?;
        Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
    })
}

#[tokio::test]
async fn setup_oauth_listener_is_loopback_only() {
    let t = new_env().await;
    let flow = spawn(&t, &["--port", "0"]);
    let (state, _, port) = check_authorize_url(&t, &flow.authorize_url());
    // The program says where it listens: loopback only, both families
    // when the machine has an IPv6 loopback.
    flow.wait_for_stderr(&format!("listening on 127.0.0.1:{port}"));
    flow.wait_for_stderr(" only).");
    if ipv6_loopback() {
        flow.wait_for_stderr(&format!("127.0.0.1:{port} and [::1]:{port} only"));
        // [::1] answers too (a stray request, refused with a 404).
        let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
        assert_eq!(http_get_at(v6, "/favicon.ico").0, 404);
    }
    match non_loopback_ip() {
        Some(ip) => {
            let r = TcpStream::connect_timeout(
                &std::net::SocketAddr::new(ip, port),
                Duration::from_secs(3),
            );
            assert!(r.is_err(), "the listener answered on {ip}:{port}");
        }
        None => eprintln!(
            "no non-loopback address on this machine; checked the printed bind address only"
        ),
    }
    // Loopback works; end the run.
    http_get(
        port,
        &format!("/callback?error=access_denied&state={state}"),
    );
    let out = flow.finish();
    assert_eq!(code(&out), 4, "{}", stderr(&out));
}

#[tokio::test]
async fn setup_oauth_manual_reads_the_pasted_address() {
    let t = new_env().await;
    mock_code_exchange(
        &t,
        token_response(NEW_PAT, 1_209_599, Some((NEW_INT_REFRESH, 7_775_999))),
    )
    .await;
    let mut flow = spawn(&t, &["--manual", "--json"]);
    let (state, challenge, port) = check_authorize_url(&t, &flow.authorize_url());
    assert_eq!(
        port, 3000,
        "manual mode uses the registered port and binds nothing"
    );
    flow.paste(&format!(
        "http://localhost:3000/callback?code={CODE}&state={state}"
    ));
    let out = flow.finish();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let f = &exchange_form(&t).await[0];
    assert_eq!(f["redirect_uri"], "http://localhost:3000/callback");
    assert_eq!(b64url_sha256(&f["code_verifier"]), challenge);
    assert_stored_new_tokens(&t);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schemaVersion"], 1);
    assert_eq!(v["command"], "setup-oauth");
    assert_eq!(v["personalAccessToken"]["fingerprint"], fp(NEW_PAT));
    t.assert_no_secrets(&out, &[]);
}

#[tokio::test]
async fn setup_oauth_manual_refuses_a_foreign_address() {
    let t = new_env().await;
    let before = std::fs::read(t.config_path()).unwrap();
    let mut flow = spawn(&t, &["--manual"]);
    flow.authorize_url();
    flow.paste(&format!(
        "http://localhost:3000/callback?code={CODE}&state=not-this-run"
    ));
    let out = flow.finish();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    assert_eq!(t.count("POST", "/v1/access_token").await, 0);
    t.assert_no_secrets(&out, &[]);
}

const DEVICE_CODE: &str = "SECRET-device-code-99ii";
const USER_CODE: &str = "WXYZ-1234";

async fn mock_device_authorize(t: &TestEnv) {
    Mock::given(method("POST"))
        .and(path("/v1/device/authorize"))
        .and(body_string_contains(format!("client_id={INT_CLIENT_ID}").as_str()))
        .and(body_string_contains("scope=spark%3Aapplications_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "device_code": DEVICE_CODE,
            "user_code": USER_CODE,
            "verification_uri": "https://login.example.test/device",
            "verification_uri_complete": format!("https://login.example.test/device?userCode={USER_CODE}"),
            "expires_in": 600,
            "interval": 5,
        })))
        .mount(&t.server)
        .await;
}

/// `POST /device/token` answers `first` once, then `then`.
async fn mock_device_token(t: &TestEnv, first: ResponseTemplate, then: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/v1/device/token"))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&t.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/device/token"))
        .respond_with(then)
        .with_priority(2)
        .mount(&t.server)
        .await;
}

fn pending() -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(serde_json::json!({
        "error": "authorization_pending",
        "error_description": "The user has not yet authorized",
    }))
}

#[tokio::test]
async fn setup_oauth_device_polls_until_authorized() {
    let mut t = new_env().await;
    t.secret(DEVICE_CODE);
    mock_device_authorize(&t).await;
    mock_device_token(
        &t,
        pending(),
        token_response(NEW_PAT, 1_209_599, Some((NEW_INT_REFRESH, 7_775_999))),
    )
    .await;
    let out = t.run(&[
        "setup-oauth",
        "--device",
        "--no-browser",
        "--timeout",
        "30s",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains(USER_CODE), "{}", stderr(&out));
    assert!(stderr(&out).contains("https://login.example.test/device"));
    let polls: Vec<_> = t
        .requests()
        .await
        .into_iter()
        .filter(|r| r.url.path() == "/v1/device/token")
        .collect();
    assert_eq!(polls.len(), 2, "one pending answer, then the tokens");
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{INT_CLIENT_ID}:{INT_SECRET}"))
    );
    assert_eq!(polls[1].headers["authorization"], expected_auth.as_str());
    let form: HashMap<String, String> = url::form_urlencoded::parse(&polls[1].body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:device_code"
    );
    assert_eq!(form["device_code"], DEVICE_CODE);
    assert_eq!(form["client_id"], INT_CLIENT_ID);
    assert_stored_new_tokens(&t);
    assert!(stdout(&out).contains(&fp(NEW_PAT)));
    let audit = std::fs::read_to_string(t.path(".env.audit.jsonl")).unwrap();
    assert!(audit.contains(r#""flow":"device""#), "{audit}");
}

#[tokio::test]
async fn setup_oauth_device_denied_exits_4_expired_exits_1_missing_endpoint_exits_3() {
    let mut t = new_env().await;
    t.secret(DEVICE_CODE);
    let before = std::fs::read(t.config_path()).unwrap();
    mock_device_authorize(&t).await;
    let error =
        |code: &str| ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": code}));
    mock_device_token(&t, pending(), error("access_denied")).await;
    let out = t.run(&["setup-oauth", "--device", "--no-browser"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("access_denied"), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);

    t.server.reset().await;
    mock_device_authorize(&t).await;
    mock_device_token(&t, error("slow_down"), error("expired_token")).await;
    let out = t.run(&["setup-oauth", "--device", "--no-browser"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("expired_token"), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);

    // No device endpoint there (wrong --api-base, or no device grant):
    // a config problem, exit 3, not the redirect-URI hint of exit 4.
    t.server.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/device/authorize"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&t.server)
        .await;
    let out = t.run(&["setup-oauth", "--device", "--no-browser"]);
    let e = stderr(&out);
    assert_eq!(code(&out), 3, "{e}");
    assert!(
        e.contains("--api-base") && e.contains("device grant"),
        "{e}"
    );
    assert!(!e.contains("oauth-helper"), "{e}");
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    assert_eq!(t.count("POST", "/v1/device/token").await, 0);

    // --device and --manual exclude each other.
    let out = t.run(&["setup-oauth", "--device", "--manual"]);
    assert_eq!(code(&out), 2);
}

/// True when this machine can bind [::1] (the IPv6 checks need it).
fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_ok()
}

#[tokio::test]
async fn setup_oauth_refuses_a_port_taken_on_ipv6_loopback() {
    let t = new_env().await;
    // This machine has an IPv6 loopback (checked when this test was
    // written); a machine without one cannot have the conflict at all.
    let Ok(taken) = std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)) else {
        eprintln!("no IPv6 loopback here: nothing can listen on [::1], skipped");
        return;
    };
    let port = taken.local_addr().unwrap().port().to_string();
    let before = std::fs::read(t.config_path()).unwrap();
    let out = t.run(&[
        "setup-oauth",
        "--no-browser",
        "--port",
        &port,
        "--timeout",
        "3s",
    ]);
    let e = stderr(&out);
    assert_eq!(code(&out), 3, "{e}");
    assert!(e.contains(&format!("port {port}")), "{e}");
    assert!(e.contains("[::1]"), "{e}");
    assert!(!e.contains("/authorize?"), "no URL is printed: {e}");
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
}

#[tokio::test]
async fn setup_oauth_manual_refuses_an_overlong_line() {
    let t = new_env().await;
    let before = std::fs::read(t.config_path()).unwrap();
    let mut flow = spawn(&t, &["--manual"]);
    flow.authorize_url();
    // 20 KiB on one line: more than any callback address.
    flow.paste(&format!(
        "http://localhost:3000/callback?code={}",
        "A".repeat(20 * 1024)
    ));
    let out = flow.finish();
    let e = stderr(&out);
    assert_eq!(code(&out), 3, "{e}");
    assert!(e.contains("longer than 16 KiB"), "{e}");
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    assert_eq!(t.count("POST", "/v1/access_token").await, 0);
}

/// Webex's error shape for the device grant: the code in `message` and in
/// `errors[].description`, no `error` field.
fn webex_device_error(status: u16, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(serde_json::json!({
        "message": code,
        "errors": [{"description": code}],
        "trackingId": "ROUTER_DEVICE_TRACKING",
    }))
}

/// `POST /device/token` answers each of `answers` once, in order, then
/// `last` for ever.
async fn mock_device_sequence(t: &TestEnv, answers: Vec<ResponseTemplate>, last: ResponseTemplate) {
    for (i, a) in answers.into_iter().enumerate() {
        Mock::given(method("POST"))
            .and(path("/v1/device/token"))
            .respond_with(a)
            .up_to_n_times(1)
            .with_priority(1 + i as u8)
            .mount(&t.server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/v1/device/token"))
        .respond_with(last)
        .with_priority(100)
        .mount(&t.server)
        .await;
}

#[tokio::test]
async fn setup_oauth_device_as_webex_answers_pending_slow_down_and_429() {
    let mut t = new_env().await;
    t.secret(DEVICE_CODE);
    mock_device_authorize(&t).await;
    mock_device_sequence(
        &t,
        vec![
            webex_device_error(428, "authorization_pending"),
            // Used to end the run with exit 4.
            webex_device_error(400, "slow_down"),
            ResponseTemplate::new(429).insert_header("retry-after", "0"),
            webex_device_error(428, "authorization_pending"),
        ],
        token_response(NEW_PAT, 1_209_599, Some((NEW_INT_REFRESH, 7_775_999))),
    )
    .await;
    let out = t.run(&[
        "setup-oauth",
        "--device",
        "--no-browser",
        "--timeout",
        "60s",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.count("POST", "/v1/device/token").await, 5);
    assert_stored_new_tokens(&t);
    t.assert_no_secrets(&out, &[]);
}

#[tokio::test]
async fn setup_oauth_device_webex_invalid_grant_means_start_again_and_denied_exits_4() {
    let mut t = new_env().await;
    t.secret(DEVICE_CODE);
    let before = std::fs::read(t.config_path()).unwrap();
    mock_device_authorize(&t).await;
    mock_device_sequence(
        &t,
        vec![webex_device_error(428, "authorization_pending")],
        webex_device_error(400, "invalid_grant"),
    )
    .await;
    let out = t.run(&["setup-oauth", "--device", "--no-browser"]);
    let e = stderr(&out);
    assert_eq!(code(&out), 1, "{e}");
    assert!(e.contains("expired"), "{e}");
    assert!(e.contains("setup-oauth --device` again"), "{e}");
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    t.assert_no_secrets(&out, &[]);

    t.server.reset().await;
    mock_device_authorize(&t).await;
    mock_device_sequence(
        &t,
        vec![webex_device_error(428, "authorization_pending")],
        webex_device_error(400, "access_denied"),
    )
    .await;
    let out = t.run(&["setup-oauth", "--device", "--no-browser"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("access_denied"), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);

    // The integration does not allow the device grant: the hint lists all
    // four device helper redirect URIs.
    t.server.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/device/authorize"))
        .respond_with(webex_device_error(400, "invalid_client"))
        .mount(&t.server)
        .await;
    let out = t.run(&["setup-oauth", "--device", "--no-browser"]);
    let e = stderr(&out);
    assert_eq!(code(&out), 4, "{e}");
    for helper in ["a", "r", "k", "d"] {
        assert!(
            e.contains(&format!(
                "https://oauth-helper-{helper}.wbx2.com/helperservice/v1/actions/device/callback"
            )),
            "{e}"
        );
    }
}

#[tokio::test]
async fn setup_oauth_device_strips_escape_sequences_from_server_text() {
    let mut t = new_env().await;
    t.secret(DEVICE_CODE);
    Mock::given(method("POST"))
        .and(path("/v1/device/authorize"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "device_code": DEVICE_CODE,
            "user_code": "WXYZ\u{1b}[8m-1234",
            "verification_uri": "https://login.example.test/device\u{1b}[2J\u{1b}]0;pwned\u{7}\r",
            "verification_uri_complete": "https://login.example.test/device?c=1\u{1b}[1A",
            "expires_in": 600,
            "interval": 5,
        })))
        .mount(&t.server)
        .await;
    mock_device_sequence(&t, vec![], webex_device_error(400, "access_denied")).await;
    let out = t.run(&["setup-oauth", "--device", "--no-browser"]);
    let e = stderr(&out);
    assert_eq!(code(&out), 4, "{e}");
    assert!(
        !e.contains('\u{1b}'),
        "an escape reached the terminal: {e:?}"
    );
    assert!(!e.contains('\u{7}') && !e.contains('\r'), "{e:?}");
    assert!(
        e.contains("https://login.example.test/device[2J]0;pwned"),
        "{e}"
    );
    assert!(e.contains("WXYZ[8m-1234"), "{e}");
}

#[tokio::test]
async fn setup_oauth_python_sample_mixed_layout_writes_the_flat_keys() {
    const FLAT_ID: &str = "FAKE-integration-client-id";
    const FLAT_SECRET: &str = "FAKE-integration-client-secret";
    let mut t = new_env().await;
    t.secret(DEVICE_CODE);
    t.secret(FLAT_SECRET);
    t.secret("FAKE-integration-refresh-token");
    t.secret("FAKE-personal-access-token");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/python-sample/2025-12-24-head-mixed.json");
    let before = std::fs::read_to_string(&fixture).unwrap();
    std::fs::write(t.config_path(), &before).unwrap();
    Mock::given(method("POST"))
        .and(path("/v1/device/authorize"))
        .and(body_string_contains(
            format!("client_id={FLAT_ID}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "device_code": DEVICE_CODE,
            "user_code": USER_CODE,
            "verification_uri": "https://login.example.test/device",
            "expires_in": 600,
            "interval": 5,
        })))
        .mount(&t.server)
        .await;
    mock_device_sequence(
        &t,
        vec![webex_device_error(428, "authorization_pending")],
        token_response(NEW_PAT, 1_209_599, Some((NEW_INT_REFRESH, 7_775_999))),
    )
    .await;
    let out = t.run(&["setup-oauth", "--device", "--no-browser"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    t.assert_no_secrets(&out, &[]);
    // The poll was authenticated with the flat client.
    let polls: Vec<_> = t
        .requests()
        .await
        .into_iter()
        .filter(|r| r.url.path() == "/v1/device/token")
        .collect();
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{FLAT_ID}:{FLAT_SECRET}"))
    );
    assert_eq!(polls[0].headers["authorization"], expected_auth.as_str());

    let after = std::fs::read_to_string(t.config_path()).unwrap();
    let c: Value = serde_json::from_str(&after).unwrap();
    let tm = &c["tokenManager"];
    assert_eq!(tm["personalAccessToken"], NEW_PAT);
    assert_eq!(tm["refreshToken"], NEW_INT_REFRESH);
    assert_eq!(tm["clientId"], FLAT_ID);
    assert_eq!(tm["clientSecret"], FLAT_SECRET);
    assert_eq!(tm["oauthRefreshToken"], "YOUR_OAUTH_REFRESH_TOKEN_HERE");
    assert!(tm.get("integration").is_none(), "no nested object: {after}");
    // Every other line of the file is kept byte for byte, in order.
    let mut rest = after.as_str();
    for line in before.lines() {
        if line.contains("\"personalAccessToken\"") || line.contains("\"refreshToken\"") {
            continue;
        }
        match rest.find(line) {
            Some(i) => rest = &rest[i + line.len()..],
            None => panic!("line {line:?} not kept in order:\n{after}"),
        }
    }
    // Four-space indent and no final newline, as the sample writes it.
    assert!(after.contains("\n    \"tokenManager\""), "{after}");
    assert!(!after.ends_with('\n'));
}

#[test]
fn setup_oauth_device_against_the_simulator_then_refresh() {
    use webex_sim::{Sim, SimOptions, TokenKind};
    let sim = Sim::start(SimOptions {
        device_interval: Duration::from_secs(1),
        ..SimOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    sim.write_demo_files(dir.path()).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("webex-token");
    let read_config = || -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("token-config.json")).unwrap(),
        )
        .unwrap()
    };
    let old_pat = read_config()["tokenManager"]["personalAccessToken"]
        .as_str()
        .unwrap()
        .to_string();
    // The real interval: no test shortcut, or the simulator would answer
    // `slow_down` to every poll.
    let mut c = scrubbed(&bin, dir.path());
    c.env_remove("WEBEX_TOKEN_TEST_NO_RETRY_DELAY")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .args([
            "-v",
            "setup-oauth",
            "--device",
            "--no-browser",
            "--timeout",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    // The person approves on their phone, a moment later.
    let deadline = Instant::now() + Duration::from_secs(30);
    let approved = loop {
        if let Some(code) = sim.approve_device(None) {
            break code;
        }
        assert!(
            Instant::now() < deadline,
            "no device request reached the simulator"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let (o, e) = (stdout(&out), stderr(&out));
    assert_eq!(code(&out), 0, "{e}");
    assert!(e.contains(&approved), "the user code was shown: {e}");
    let cfg = read_config();
    let pat = cfg["tokenManager"]["personalAccessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let irt = cfg["tokenManager"]["integration"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(pat, old_pat);
    assert!(sim.is_token_valid(&pat) && sim.is_token_valid(&irt));
    for s in [&pat, &irt] {
        assert!(
            !o.contains(s.as_str()) && !e.contains(s.as_str()),
            "secret leaked"
        );
    }
    let polls = sim.count("POST", "/v1/device/token");
    assert!((1..=5).contains(&polls), "{polls} polls");

    // The new integration refresh token works: with every personal token
    // dead, `refresh` renews through it (level 3) and mints.
    sim.expire_all(TokenKind::Personal);
    let out = scrubbed(&bin, dir.path()).arg("refresh").output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let renewed = read_config()["tokenManager"]["personalAccessToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(renewed, pat);
    assert!(sim.is_token_valid(&renewed));
    assert!(sim.count("POST", "/v1/access_token") >= 1);
}

#[tokio::test]
async fn setup_oauth_with_a_state_file_leaves_the_config_alone() {
    let mut t = new_env().await;
    t.secret(DEVICE_CODE);
    // The integration's secret is not in the config: it comes from the
    // environment, and is not written anywhere.
    let mut cfg = default_config(true);
    cfg["tokenManager"]["integration"]
        .as_object_mut()
        .unwrap()
        .remove("clientSecret");
    t.write_config(&cfg);
    let before = std::fs::read(t.config_path()).unwrap();
    mock_device_authorize(&t).await;
    mock_device_token(
        &t,
        token_response(NEW_PAT, 1_209_599, Some((NEW_INT_REFRESH, 7_775_999))),
        token_response(NEW_PAT, 1_209_599, Some((NEW_INT_REFRESH, 7_775_999))),
    )
    .await;
    let state = t.path("state.json");
    let mut c = t.cmd();
    c.env("WEBEX_TOKEN_INTEGRATION_CLIENT_SECRET", INT_SECRET)
        .env("WEBEX_TOKEN_STATE", &state)
        .args(["--json", "setup-oauth", "--device", "--no-browser"]);
    let out = c.output().unwrap();
    t.assert_no_secrets(&out, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stateFile"], state.to_str().unwrap());
    assert_eq!(std::fs::read(t.config_path()).unwrap(), before);
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(!text.contains(INT_SECRET), "{text}");
    let s: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(s["tokenManager"]["personalAccessToken"], NEW_PAT);
    assert_eq!(
        s["tokenManager"]["integration"]["refreshToken"],
        NEW_INT_REFRESH
    );
    assert_eq!(s["tokenManager"]["integration"]["clientId"], INT_CLIENT_ID);
    assert_eq!(mode(&state), 0o600);
}
