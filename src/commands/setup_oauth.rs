//! `webex-token setup-oauth`: the one-time, person-in-the-loop OAuth 2.0
//! authorization-code flow (PKCE S256 + random `state`, RFC 7636 / RFC 8252)
//! that gives the token-manager integration its refresh token.
//!
//! The flow, in order:
//! 1. Read the config and require the integration's `clientId`/`clientSecret`
//!    before anything is bound or opened.
//! 2. Bind the callback listener on 127.0.0.1 only (never 0.0.0.0), or, with
//!    `--manual`, bind nothing and read the redirected address from stdin.
//! 3. Build the authorize URL with the `oauth2` crate, print it on stderr
//!    (it is instructions, not the result; stdout keeps the result alone,
//!    so `--json` stays one object), and open the browser when there is one.
//! 4. Wait, up to `--timeout`, for one valid callback on `/callback`.
//!    Requests for other paths (`/favicon.ico`) get a 404 and are ignored.
//!    A callback whose `state` does not match is refused with a 400 page and
//!    the wait goes on: it is either a stale tab from an earlier run or a
//!    forged request, and neither should be able to end the real
//!    authorization the person is busy with. The timeout message counts the
//!    refused callbacks. An OAuth error (`error=access_denied`, ...) with the
//!    right state, or with no state at all (an error carries no code, so
//!    believing it can at worst end this run), ends the run.
//! 5. Exchange the code: `oauth2` builds the request (form fields
//!    `grant_type=authorization_code`, `code`, `redirect_uri`,
//!    `code_verifier`, `client_id`, `client_secret`), our own
//!    [`HttpApi`] sends it (same client, retries and error classification as
//!    the refresh chain; no second reqwest), and [`parse_grant`] reads the
//!    answer, because Webex adds `refresh_token_expires_in` and every token
//!    must be a `SecretString` from the moment it is read.
//! 6. Under the env file's lock, re-read the config and write the new
//!    personal access token, integration refresh token, their expiry times
//!    and the client id/secret atomically, keeping every other key.
//! 7. Answer the browser (only now, so the page tells the truth), append an
//!    audit line, and print fingerprints of what was stored.

use crate::audit;
use crate::cli::SetupOauthArgs;
use crate::clock;
use crate::config::{Absence, Config, Field, PersonalUpdate};
use crate::error::{Error, SetupError};
use crate::names::SCOPE_APPLICATIONS_TOKEN;
use crate::output::{Printer, SCHEMA_VERSION, expiry_text, token_json};
use crate::secret::{ExposeSecret, SecretString, constant_time_eq, fingerprint, secret};
use crate::settings::Settings;
use crate::store::{LockScope, TokenStore};
use crate::webex::{ApiError, HttpApi, TokenGrant, parse_grant};
use oauth2::basic::BasicClient;
use oauth2::url::Url;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenUrl,
};
use serde_json::json;
use std::cell::RefCell;
use std::io::{BufRead, IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What a callback (received or pasted) says.
#[derive(Debug)]
enum Callback {
    Code(SecretString),
    Error {
        error: String,
        description: Option<String>,
    },
}

/// Why a callback was not accepted.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    StateMismatch,
    StateMissing,
    NoCode,
}

impl Refusal {
    fn text(&self) -> &'static str {
        match self {
            Refusal::StateMismatch => {
                "its `state` does not match this run (an old browser tab, or a forged request)"
            }
            Refusal::StateMissing => "it has no `state`",
            Refusal::NoCode => "it has neither a `code` nor an `error`",
        }
    }
}

/// Judges the query pairs of a callback against the expected state, which
/// is compared in constant time.
fn judge<'a>(
    pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
    expected_state: &CsrfToken,
) -> Result<Callback, Refusal> {
    let (mut code, mut state, mut error, mut description) = (None, None, None, None);
    for (k, v) in pairs {
        match k.as_ref() {
            "code" if !v.is_empty() => code = Some(secret(v.into_owned())),
            "state" => state = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {}
        }
    }
    let state_ok = state
        .as_deref()
        .map(|s| constant_time_eq(s.as_bytes(), expected_state.secret().as_bytes()));
    if let Some(error) = error {
        return match state_ok {
            Some(false) => Err(Refusal::StateMismatch),
            _ => Ok(Callback::Error {
                error: clip(&error),
                description: description.map(|d| clip(&d)),
            }),
        };
    }
    match (code, state_ok) {
        (None, _) => Err(Refusal::NoCode),
        (Some(_), None) => Err(Refusal::StateMissing),
        (Some(_), Some(false)) => Err(Refusal::StateMismatch),
        (Some(c), Some(true)) => Ok(Callback::Code(c)),
    }
}

/// Text from the query string is shown to people; one short line.
fn clip(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
}

/// Runs `setup-oauth`; returns the exit code on success.
pub async fn run(settings: &Settings, printer: &Printer, a: &SetupOauthArgs) -> Result<u8, Error> {
    let config = Config::load(&settings.config_path)?;
    let (client_id, client_secret) = integration_client(&config)?;
    if a.manual && a.port == 0 {
        return Err(SetupError::ManualNeedsPort.into());
    }
    let countdown = std::io::stderr().is_terminal() && !printer.quiet;
    let api = HttpApi::new(settings.http(Some(&config)));
    let started = Instant::now();

    // The browser's callback request, answered once the outcome is known.
    let mut browser: Option<tiny_http::Request> = None;
    let (grant, flow, redirect_uri) = if a.device {
        let grant = device_flow(&api, &client_id, &client_secret, a, countdown).await;
        (grant, "device", None)
    } else {
        let listener = if a.manual { None } else { Some(bind(a.port)?) };
        let port = match &listener {
            Some((_, port)) => *port,
            None => a.port,
        };
        let redirect_uri = format!("http://localhost:{port}/callback");
        let client = oauth_client(&api, &client_id, &client_secret, &redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (auth_url, state) = client
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new(SCOPE_APPLICATIONS_TOKEN.to_string()))
            .set_pkce_challenge(challenge)
            .url();
        instructions(&auth_url, &redirect_uri, port, a, listener.is_some());
        let callback = match &listener {
            Some((server, _)) => {
                let (cb, req) = wait_for_callback(server, &state, a.timeout, countdown)?;
                browser = Some(req);
                cb
            }
            None => read_pasted(&state, a.timeout, &redirect_uri)?,
        };
        let grant = match callback {
            Callback::Code(code) => exchange(&api, &client, code, verifier).await,
            Callback::Error { error, description } => {
                Err(SetupError::Authorization { error, description })
            }
        };
        let flow = if a.manual { "manual" } else { "browser" };
        (grant, flow, Some(redirect_uri))
    };
    tracing::debug!(
        "authorization finished after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let result = match grant {
        Ok(g) => store_grant(settings, &config, g, &client_id, &client_secret, flow).await,
        Err(e) => Err(e.into()),
    };
    if let Some(req) = browser {
        let page = match &result {
            Ok(_) => page(
                200,
                "webex-token: authorized",
                "The token-manager integration is authorized and its tokens are saved. You can close this tab and return to the terminal.",
            ),
            Err(e) => page(
                500,
                "webex-token: authorization not completed",
                &format!(
                    "The authorization code could not be turned into tokens; nothing was saved. The terminal says why. ({})",
                    html_escape(&e.to_string())
                ),
            ),
        };
        let _ = req.respond(page);
    }
    let stored = result?;
    report(printer, &stored, redirect_uri.as_deref(), flow);
    Ok(0)
}

/// The `oauth2` client for the authorization-code flow.
fn oauth_client(
    api: &HttpApi,
    client_id: &str,
    client_secret: &SecretString,
    redirect_uri: &str,
) -> Result<ConfiguredClient, SetupError> {
    let build = |e: oauth2::url::ParseError| SetupError::Build(e.to_string());
    Ok(BasicClient::new(ClientId::new(client_id.to_string()))
        .set_client_secret(ClientSecret::new(client_secret.expose_secret().to_string()))
        .set_auth_uri(AuthUrl::new(api.url("/authorize")).map_err(build)?)
        .set_token_uri(TokenUrl::new(api.url("/access_token")).map_err(build)?)
        .set_redirect_uri(RedirectUrl::new(redirect_uri.to_string()).map_err(build)?)
        // Webex takes the client credentials as form fields.
        .set_auth_type(AuthType::RequestBody))
}

/// What was stored, for the report and the audit line.
struct Stored {
    config_path: PathBuf,
    personal: SecretString,
    personal_expires_at: Option<jiff::Timestamp>,
    refresh: Option<SecretString>,
    refresh_expires_at: Option<jiff::Timestamp>,
    client_id: String,
    client_secret_fp: String,
}

/// Writes the tokens (and the client credentials they belong to) into the
/// config file, and appends the audit line.
async fn store_grant(
    settings: &Settings,
    config: &Config,
    grant: TokenGrant,
    client_id: &str,
    client_secret: &SecretString,
    flow: &str,
) -> Result<Stored, Error> {
    let now = clock::now();
    let refresh_expires_at = grant
        .refresh_token_expires_in
        .filter(|_| grant.refresh_token.is_some())
        .map(|s| clock::after(now, s));
    let update = PersonalUpdate {
        personal_access_token: grant.access_token,
        personal_expires_at: grant.expires_in.map(|s| clock::after(now, s)),
        integration_refresh_token: grant.refresh_token,
        integration_refresh_expires_at: refresh_expires_at,
        integration_client: Some((client_id.to_string(), client_secret.clone())),
    };
    if update.integration_refresh_token.is_none() {
        tracing::warn!(
            "the token endpoint returned no refresh token; the personal access token is stored, but level 3 will not be able to renew it"
        );
    }
    {
        // Serialize with `refresh` runs (they may rewrite the config at
        // level 3), and write onto the file as it is now, not as it was
        // when the person started signing in.
        let store = settings.files_store();
        let guard = store
            .lock(&LockScope::Config, settings.lock_timeout)
            .await?;
        store.save_renewable(&guard, &update).await?;
    }
    let stored = Stored {
        config_path: config.path.clone(),
        personal: update.personal_access_token,
        personal_expires_at: update.personal_expires_at,
        refresh: update.integration_refresh_token,
        refresh_expires_at,
        client_id: client_id.to_string(),
        client_secret_fp: fingerprint(client_secret),
    };
    if let Some(path) = &settings.audit_log {
        audit::append(
            path,
            json!({
                "command": "setup-oauth",
                "operation": "setup",
                "flow": flow,
                "outcome": "ok",
                "personalTokenFingerprint": fingerprint(&stored.personal),
                "personalTokenExpiresAt": stored.personal_expires_at.map(clock::format_utc),
                "integrationRefreshTokenFingerprint": stored.refresh.as_ref().map(fingerprint),
                "integrationRefreshTokenExpiresAt": stored.refresh_expires_at.map(clock::format_utc),
                "integrationClientId": stored.client_id,
                "integrationClientSecretFingerprint": stored.client_secret_fp,
                "configFile": stored.config_path.display().to_string(),
            }),
        );
    }
    Ok(stored)
}

type ConfiguredClient = oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    oauth2::basic::BasicTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

/// An [`ApiError`] as a `std::error::Error`, which `oauth2`'s HTTP client
/// interface asks for.
#[derive(Debug)]
struct Transport(ApiError);

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Transport {}

/// POSTs the code to the token endpoint: `oauth2` builds the request, our
/// client sends it, `parse_grant` reads the answer.
async fn exchange(
    api: &HttpApi,
    client: &ConfiguredClient,
    code: SecretString,
    verifier: PkceCodeVerifier,
) -> Result<TokenGrant, SetupError> {
    let body_seen: RefCell<Option<Vec<u8>>> = RefCell::new(None);
    let send = |req: oauth2::HttpRequest| {
        let body_seen = &body_seen;
        async move {
            let (parts, body) = req.into_parts();
            let url = parts.uri.to_string();
            let answer = api
                .send("POST /access_token (authorization code)", |c| {
                    c.request(parts.method.clone(), &url)
                        .headers(parts.headers.clone())
                        .body(body.clone())
                })
                .await
                .map_err(Transport)?;
            *body_seen.borrow_mut() = Some(answer.clone());
            let mut resp = oauth2::HttpResponse::new(answer);
            resp.headers_mut().insert(
                oauth2::http::header::CONTENT_TYPE,
                oauth2::http::HeaderValue::from_static("application/json"),
            );
            Ok::<_, Transport>(resp)
        }
    };
    let result = client
        .exchange_code(AuthorizationCode::new(code.expose_secret().to_string()))
        .set_pkce_verifier(verifier)
        .request_async(&send)
        .await;
    if let Some(body) = body_seen.borrow_mut().take() {
        // A 2xx arrived: read it ourselves (see the module docs). Not
        // retried: the code is single-use.
        return parse_grant(&body).map_err(SetupError::BadGrant);
    }
    match result {
        Err(RequestTokenError::Request(Transport(e))) => Err(SetupError::Exchange(e)),
        Err(e) => Err(SetupError::Build(e.to_string())),
        Ok(_) => Err(SetupError::BadGrant("no answer was recorded".into())),
    }
}

/// The integration's client id and secret, or an error naming every
/// missing field.
fn integration_client(config: &Config) -> Result<(String, SecretString), SetupError> {
    let missing = |key: &str| Field::<String> {
        key: key.to_string(),
        value: Err(Absence::Missing),
    };
    let (id, secret_field) = match &config.integration {
        Some(i) => (
            i.client_id.clone(),
            Field {
                key: i.client_secret.key.clone(),
                value: i.client_secret.value.clone().map(|_| String::new()),
            },
        ),
        None => (
            missing("tokenManager.integration.clientId"),
            missing("tokenManager.integration.clientSecret"),
        ),
    };
    let mut fields = Vec::new();
    let mut reasons = Vec::new();
    for f in [&id, &secret_field] {
        if let Err(a) = &f.value {
            fields.push(format!("`{}`", f.key));
            reasons.push(format!("`{}` {a}", f.key));
        }
    }
    if !fields.is_empty() {
        return Err(SetupError::MissingClient {
            path: config.path.clone(),
            fields,
            reasons,
        });
    }
    let i = config.integration.as_ref().expect("checked above");
    Ok((
        i.client_id.get().expect("checked").clone(),
        i.client_secret.get().expect("checked").clone(),
    ))
}

/// Binds the callback listener on loopback only.
fn bind(port: u16) -> Result<(tiny_http::Server, u16), SetupError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = TcpListener::bind(addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => SetupError::PortInUse { port },
        _ => SetupError::Bind { port, source: e },
    })?;
    let actual = listener
        .local_addr()
        .map_err(|e| SetupError::Bind { port, source: e })?
        .port();
    let server =
        tiny_http::Server::from_listener(listener, None).map_err(|e| SetupError::Bind {
            port,
            source: std::io::Error::other(e.to_string()),
        })?;
    tracing::debug!("listening for the OAuth callback on 127.0.0.1:{actual}");
    Ok((server, actual))
}

/// True when a browser can be opened here.
fn has_display() -> bool {
    if cfg!(any(target_os = "macos", target_os = "windows")) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Prints what the person has to do (stderr), and opens the browser.
fn instructions(url: &Url, redirect_uri: &str, port: u16, a: &SetupOauthArgs, listening: bool) {
    let mut err = std::io::stderr().lock();
    let try_browser = !a.no_browser && has_display();
    let opened = try_browser
        && match open::that_detached(url.as_str()) {
            Ok(()) => true,
            Err(e) => {
                let _ = writeln!(
                    err,
                    "could not open a browser ({e}); open the address below yourself"
                );
                false
            }
        };
    if opened {
        let _ = writeln!(
            err,
            "Opened your browser to authorize the token-manager integration. If it did not open, visit:"
        );
    } else {
        let _ = writeln!(
            err,
            "Open this address in a browser and sign in as the user whose personal access token the integration should keep renewing:"
        );
    }
    let _ = writeln!(err, "\n  {url}\n");
    if listening {
        let _ = writeln!(
            err,
            "Waiting for the redirect to {redirect_uri} (listening on 127.0.0.1:{port} only)."
        );
        if !opened {
            let _ = writeln!(
                err,
                "The browser is sent back to localhost:{port} of the machine it runs on. If that is not this machine, connect from it first with\n  ssh -L {port}:localhost:{port} {}\nand open the address there; or run `webex-token setup-oauth --manual` (or `--device`) instead.",
                ssh_target()
            );
        }
    } else {
        let _ = writeln!(
            err,
            "After signing in, the browser is sent to {redirect_uri}?code=... and shows an error page (nothing listens there): that is expected. Copy the whole address from the address bar and paste it here, then press Enter."
        );
    }
    let _ = writeln!(
        err,
        "This waits up to {}.",
        clock::human_span(a.timeout.as_secs())
    );
}

/// `user@host` for the SSH hint, as well as we can tell.
fn ssh_target() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "this-host".into());
    match std::env::var("USER") {
        Ok(u) if !u.is_empty() => format!("{u}@{host}"),
        _ => host,
    }
}

/// `POST /device/authorize` answer (RFC 8628 section 3.2), read leniently.
#[derive(serde::Deserialize)]
struct DeviceAuthorization {
    device_code: SecretString,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    #[serde(default, alias = "verification_url_complete")]
    verification_uri_complete: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    interval: Option<u64>,
}

/// The Device Authorization Grant (RFC 8628): show a code, poll for the
/// tokens. Done by hand rather than with `oauth2`'s poller because its
/// HTTP interface wants error answers handed back as responses, while
/// [`HttpApi`] classifies and retries them; this keeps one transport.
async fn device_flow(
    api: &HttpApi,
    client_id: &str,
    client_secret: &SecretString,
    a: &SetupOauthArgs,
    countdown: bool,
) -> Result<TokenGrant, SetupError> {
    let url = api.url("/device/authorize");
    let body = api
        .send("POST /device/authorize", |c| {
            c.post(&url).header("accept", "application/json").form(&[
                ("client_id", client_id),
                ("scope", SCOPE_APPLICATIONS_TOKEN),
            ])
        })
        .await
        .map_err(SetupError::Device)?;
    let d: DeviceAuthorization = serde_json::from_slice(&body)
        .map_err(|e| SetupError::DeviceAnswer(format!("not the expected JSON ({e})")))?;
    let user_code = clip(&d.user_code);
    {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "On any device with a browser, open\n\n  {}\n\nand enter the code\n\n  {user_code}\n",
            d.verification_uri
        );
        if let Some(c) = &d.verification_uri_complete {
            let _ = writeln!(err, "(or open {c} , which fills in the code)");
        }
        let _ = writeln!(
            err,
            "Sign in as the user whose personal access token the integration should keep renewing. This waits up to {}.",
            clock::human_span(a.timeout.as_secs())
        );
    }
    if !a.no_browser && has_display() {
        let target = d
            .verification_uri_complete
            .as_deref()
            .unwrap_or(&d.verification_uri);
        if let Err(e) = open::that_detached(target) {
            tracing::info!("could not open a browser ({e})");
        }
    }

    let no_delay = std::env::var_os(crate::names::ENV_TEST_NO_RETRY_DELAY).is_some();
    let lifetime = d.expires_in.map(Duration::from_secs).unwrap_or(a.timeout);
    let timeout = a.timeout.min(lifetime);
    let deadline = Instant::now() + timeout;
    let mut interval = Duration::from_secs(d.interval.unwrap_or(5).max(1));
    let mut spinner = Countdown::new(countdown);
    let url = api.url("/device/token");
    loop {
        // Wait one interval, drawing the countdown.
        let wake = Instant::now() + if no_delay { Duration::ZERO } else { interval };
        loop {
            let now = Instant::now();
            if now >= deadline {
                spinner.clear();
                return Err(SetupError::TimedOut {
                    after: timeout,
                    refused: 0,
                });
            }
            if now >= wake {
                break;
            }
            spinner.tick(deadline - now);
            tokio::time::sleep((wake - now).min(Duration::from_millis(200))).await;
        }
        let answer = api
            .send("POST /device/token", |c| {
                c.post(&url)
                    .basic_auth(client_id, Some(client_secret.expose_secret()))
                    .header("accept", "application/json")
                    .form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                        ("device_code", d.device_code.expose_secret()),
                        ("client_id", client_id),
                    ])
            })
            .await;
        let e = match answer {
            Ok(body) => {
                spinner.clear();
                return parse_grant(&body).map_err(SetupError::BadGrant);
            }
            Err(e) => e,
        };
        let (status, oauth_error) = match &e {
            ApiError::Rejected { status, body } | ApiError::Refused { status, body } => {
                (*status, body.oauth_error.clone())
            }
            ApiError::Transient { .. } => {
                spinner.clear();
                return Err(SetupError::Exchange(e));
            }
        };
        match oauth_error.as_deref() {
            Some("authorization_pending") => {}
            None if status == 428 => {}
            Some("slow_down") => interval += Duration::from_secs(5),
            Some(code @ ("access_denied" | "expired_token")) => {
                spinner.clear();
                return Err(SetupError::Authorization {
                    error: code.to_string(),
                    description: None,
                });
            }
            _ => {
                spinner.clear();
                return Err(SetupError::Exchange(e));
            }
        }
    }
}

/// Waits for one valid callback. Returns it with the browser's request,
/// which is answered once the tokens are saved (or not).
fn wait_for_callback(
    server: &tiny_http::Server,
    state: &CsrfToken,
    timeout: Duration,
    countdown: bool,
) -> Result<(Callback, tiny_http::Request), SetupError> {
    let deadline = Instant::now() + timeout;
    let mut refused = 0usize;
    let mut spinner = Countdown::new(countdown);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            spinner.clear();
            return Err(SetupError::TimedOut {
                after: timeout,
                refused,
            });
        }
        spinner.tick(left);
        let req = match server.recv_timeout(left.min(Duration::from_millis(250))) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                spinner.clear();
                return Err(SetupError::Listener(e));
            }
        };
        let url = match Url::parse("http://localhost").and_then(|b| b.join(req.url())) {
            Ok(u) => u,
            Err(_) => {
                let _ = req.respond(page(400, "Bad request", "This address cannot be read."));
                continue;
            }
        };
        if *req.method() != tiny_http::Method::Get || url.path() != "/callback" {
            tracing::debug!("ignored a request for {} {}", req.method(), url.path());
            let _ = req.respond(page(404, "Not found", "Nothing here."));
            continue;
        }
        match judge(url.query_pairs(), state) {
            Ok(Callback::Error { error, description }) => {
                spinner.clear();
                let _ = req.respond(page(
                    400,
                    "webex-token: authorization not granted",
                    &format!(
                        "Webex reported <code>{}</code>{}. Nothing was saved; the terminal says what to do next.",
                        html_escape(&error),
                        description
                            .as_deref()
                            .map(|d| format!(" ({})", html_escape(d)))
                            .unwrap_or_default()
                    ),
                ));
                return Err(SetupError::Authorization { error, description });
            }
            Ok(cb) => {
                spinner.clear();
                return Ok((cb, req));
            }
            Err(why) => {
                refused += 1;
                spinner.clear();
                tracing::warn!("refused a callback: {}; still waiting", why.text());
                let _ = req.respond(page(
                    400,
                    "webex-token: callback refused",
                    &format!(
                        "This callback was refused: {}. Nothing was saved. If you started <code>webex-token setup-oauth</code> again, use the address it printed last.",
                        html_escape(why.text())
                    ),
                ));
            }
        }
    }
}

/// Reads the address the browser was redirected to from stdin.
fn read_pasted(
    state: &CsrfToken,
    timeout: Duration,
    redirect_uri: &str,
) -> Result<Callback, SetupError> {
    let (tx, rx) = std::sync::mpsc::channel();
    // A thread, so the read can time out; it is left behind on timeout and
    // ends with the process.
    std::thread::spawn(move || {
        let mut line = String::new();
        let r = std::io::stdin().lock().read_line(&mut line).map(|_| line);
        let _ = tx.send(r);
    });
    let line = match rx.recv_timeout(timeout) {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            return Err(SetupError::ManualInput(format!(
                "stdin could not be read ({e})"
            )));
        }
        Err(_) => {
            return Err(SetupError::TimedOut {
                after: timeout,
                refused: 0,
            });
        }
    };
    let text = line.trim();
    if text.is_empty() {
        return Err(SetupError::ManualInput("nothing was pasted".into()));
    }
    // The whole address, or only its query string.
    let url = if text.contains("://") {
        Url::parse(text)
    } else {
        Url::parse(redirect_uri).map(|mut u| {
            u.set_query(Some(text.trim_start_matches('?')));
            u
        })
    }
    .map_err(|_| SetupError::ManualInput("it is not an address".into()))?;
    if url.path() != "/callback" {
        tracing::warn!(
            "the pasted address's path is {}, not /callback; using its parameters anyway",
            url.path()
        );
    }
    judge(url.query_pairs(), state).map_err(|r| SetupError::ManualInput(r.text().into()))
}

/// A countdown with a spinner on stderr, drawn only on a terminal.
struct Countdown {
    on: bool,
    frame: usize,
    last: Option<Instant>,
}

impl Countdown {
    fn new(on: bool) -> Countdown {
        Countdown {
            on,
            frame: 0,
            last: None,
        }
    }

    fn tick(&mut self, left: Duration) {
        if !self.on
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        self.frame = (self.frame + 1) % FRAMES.len();
        self.last = Some(Instant::now());
        let s = left.as_millis().div_ceil(1000);
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r{} waiting for the browser ... {}:{:02} left (Ctrl-C to stop) ",
            FRAMES[self.frame],
            s / 60,
            s % 60
        );
        let _ = e.flush();
    }

    fn clear(&mut self) {
        if self.on && self.last.is_some() {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K");
            let _ = e.flush();
            self.last = None;
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A small HTML page; `body` is already escaped.
fn page(status: u16, title: &str, body: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>{t}</h1><p>{body}</p></body></html>",
        t = html_escape(title)
    );
    let header = |k: &str, v: &str| {
        tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("static header is valid")
    };
    tiny_http::Response::from_string(html)
        .with_status_code(status)
        .with_header(header("Content-Type", "text/html; charset=utf-8"))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("Referrer-Policy", "no-referrer"))
}

/// Prints what was stored: fingerprints and expiry times, never values.
fn report(printer: &Printer, s: &Stored, redirect_uri: Option<&str>, flow: &str) {
    let now = clock::now();
    let value = json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": "setup-oauth",
        "ok": true,
        "flow": flow,
        "configFile": s.config_path.display().to_string(),
        "redirectUri": redirect_uri,
        "integrationClientId": s.client_id,
        "integrationClientSecretFingerprint": s.client_secret_fp,
        "personalAccessToken": token_json(Some(&s.personal), s.personal_expires_at, now),
        "integrationRefreshToken": token_json(s.refresh.as_ref(), s.refresh_expires_at, now),
    });
    let mut human = format!(
        "ok: authorized the token-manager integration; saved in {}:\n",
        s.config_path.display()
    );
    human.push_str(&format!(
        "  personal access token      {}  {}\n",
        fingerprint(&s.personal),
        expiry_text(s.personal_expires_at, now)
    ));
    match &s.refresh {
        Some(r) => human.push_str(&format!(
            "  integration refresh token  {}  {}\n",
            fingerprint(r),
            expiry_text(s.refresh_expires_at, now)
        )),
        None => human.push_str(
            "  integration refresh token  none returned by Webex (the old one, if any, is kept)\n",
        ),
    }
    human.push_str(&format!(
        "  integration client         {} (secret {})\n",
        s.client_id, s.client_secret_fp
    ));
    if s.refresh.is_some() {
        human.push_str(
            "`webex-token refresh` will now renew the personal access token by itself when it expires.",
        );
    } else {
        human.push_str("without a refresh token the personal access token cannot be renewed by itself; run `webex-token setup-oauth` again before it expires.");
    }
    printer.report(&value, &human);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
        oauth2::url::form_urlencoded::parse(q.as_bytes()).collect()
    }

    #[test]
    fn judging_callbacks() {
        let st = CsrfToken::new("abc".into());
        assert!(matches!(
            judge(pairs("code=c1&state=abc").into_iter(), &st),
            Ok(Callback::Code(_))
        ));
        assert_eq!(
            judge(pairs("code=c1&state=abd").into_iter(), &st).unwrap_err(),
            Refusal::StateMismatch
        );
        assert_eq!(
            judge(pairs("code=c1").into_iter(), &st).unwrap_err(),
            Refusal::StateMissing
        );
        assert_eq!(
            judge(pairs("state=abc").into_iter(), &st).unwrap_err(),
            Refusal::NoCode
        );
        assert_eq!(
            judge(pairs("code=&state=abc").into_iter(), &st).unwrap_err(),
            Refusal::NoCode
        );
        assert!(matches!(
            judge(pairs("error=access_denied&state=abc").into_iter(), &st),
            Ok(Callback::Error { .. })
        ));
        assert!(matches!(
            judge(pairs("error=access_denied").into_iter(), &st),
            Ok(Callback::Error { .. })
        ));
        assert_eq!(
            judge(pairs("error=access_denied&state=zzz").into_iter(), &st).unwrap_err(),
            Refusal::StateMismatch
        );
    }

    #[test]
    fn pages_escape_text() {
        assert_eq!(html_escape("<b>&\"'"), "&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            Error::from(SetupError::PortInUse { port: 1 }).exit_code(),
            3
        );
        assert_eq!(
            Error::from(SetupError::TimedOut {
                after: Duration::from_secs(1),
                refused: 0
            })
            .exit_code(),
            1
        );
        let denied = SetupError::Authorization {
            error: "access_denied".into(),
            description: None,
        };
        assert_eq!(Error::from(denied).exit_code(), 4);
        assert!(
            Error::from(SetupError::PortInUse { port: 3000 })
                .hint()
                .unwrap()
                .contains("redirect URI")
        );
        let port_hint = Error::from(SetupError::PortInUse { port: 3000 })
            .hint()
            .unwrap();
        assert!(port_hint.contains("--manual") && port_hint.contains("--device"));
        let device = |status| {
            SetupError::Device(ApiError::Refused {
                status,
                body: Default::default(),
            })
        };
        assert_eq!(Error::from(device(404)).exit_code(), 3);
        assert!(
            Error::from(device(404))
                .hint()
                .unwrap()
                .contains("--api-base")
        );
        assert_eq!(Error::from(device(400)).exit_code(), 4);
        assert!(
            Error::from(device(400))
                .hint()
                .unwrap()
                .contains("redirect URIs")
        );
    }
}
