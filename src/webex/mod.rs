//! The only module that speaks HTTP to Webex.
//!
//! Every failure is classified once, here, into what the refresh chain needs
//! to know: [`ApiError::Rejected`] (the credential is no good: 401, or 400
//! with an OAuth error such as `invalid_grant`), [`ApiError::Refused`] (any
//! other 4xx: the request itself is wrong or not allowed), and
//! [`ApiError::Transient`] (connection errors, timeouts, 5xx, 429, a cut-off
//! body). Transient failures are retried here with capped, jittered
//! exponential backoff that honours `Retry-After`, within a time budget; they
//! never reach the chain as "rejected", because a Webex outage must not make
//! the tool throw away a good refresh token or walk the chain as if it had.
//!
//! Why the retry loop is ours and not `reqwest-retry`/`backon`: what counts
//! as transient here needs the response *body* (a 200 whose token JSON is
//! cut off must be retried; a 400 is final unless it is not), which
//! middleware that sees only status codes cannot judge; `Retry-After` would
//! need a second middleware crate (`reqwest-retry-after`) in the same stack;
//! and the total time budget and the "give up at once when Retry-After is
//! beyond the budget" rule are not expressible in their policies. The loop
//! is small ([`HttpApi::send`], [`RetryPolicy::backoff`]) and unit-tested.
//!
//! The client is built lazily: commands that make no request (a fresh
//! `token`, `status`) never pay for TLS setup.

use crate::secret::{ExposeSecret, SecretString, secret};
use serde::Deserialize;
use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Largest response body we read; Webex token and list responses are a few
/// KiB, so anything bigger is a misbehaving proxy, not an answer.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A token response from `/access_token` or `/applications/{id}/token`.
#[derive(Debug, Deserialize)]
pub struct TokenGrant {
    pub access_token: SecretString,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    #[serde(default)]
    pub refresh_token_expires_in: Option<u64>,
}

/// Client credentials for a form-encoded `/access_token` call.
pub struct ClientCredentials<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
}

/// Body of `POST /applications/{appId}/token`.
pub struct MintRequest<'a> {
    pub app_id: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub target_org_id: &'a str,
}

/// What a Webex error body says (all fields optional; Webex is not uniform).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    pub message: Option<String>,
    pub descriptions: Vec<String>,
    pub tracking_id: Option<String>,
    /// OAuth `error` code, e.g. `invalid_grant`.
    pub oauth_error: Option<String>,
}

impl ErrorBody {
    /// Parses a Webex or OAuth error body; unknown shapes give an empty body.
    pub fn parse(bytes: &[u8], tracking_header: Option<String>) -> ErrorBody {
        #[derive(Deserialize, Default)]
        struct Raw {
            message: Option<String>,
            #[serde(default)]
            errors: Vec<RawItem>,
            #[serde(rename = "trackingId")]
            tracking_id: Option<String>,
            error: Option<serde_json::Value>,
            error_description: Option<String>,
        }
        #[derive(Deserialize)]
        struct RawItem {
            description: Option<String>,
        }
        let raw: Raw = serde_json::from_slice(bytes).unwrap_or_default();
        let oauth_error = match raw.error {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        let mut descriptions: Vec<String> = raw
            .errors
            .into_iter()
            .filter_map(|i| i.description)
            .collect();
        if let Some(d) = raw.error_description {
            descriptions.push(d);
        }
        ErrorBody {
            message: raw.message.map(|m| clip(&m)),
            descriptions: descriptions.iter().map(|d| clip(d)).collect(),
            tracking_id: raw.tracking_id.or(tracking_header),
            oauth_error,
        }
    }

    /// The same body with every occurrence of `secrets` replaced by a
    /// fingerprint.
    pub fn redacted(self, secrets: &[String]) -> ErrorBody {
        if secrets.is_empty() {
            return self;
        }
        ErrorBody {
            message: self.message.map(|m| redact(&m, secrets)),
            descriptions: self
                .descriptions
                .iter()
                .map(|d| redact(d, secrets))
                .collect(),
            tracking_id: self.tracking_id.map(|t| redact(&t, secrets)),
            oauth_error: self.oauth_error.map(|e| redact(&e, secrets)),
        }
    }

    /// True when the body names an OAuth error meaning "this credential is
    /// no good" (Webex reports an expired refresh token this way, as 400).
    pub fn says_bad_credential(&self) -> bool {
        const CODES: [&str; 2] = ["invalid_grant", "invalid_token"];
        if let Some(e) = &self.oauth_error {
            return CODES.contains(&e.as_str());
        }
        let text = format!(
            "{} {}",
            self.message.as_deref().unwrap_or(""),
            self.descriptions.join(" ")
        );
        CODES.iter().any(|c| text.contains(c))
    }

    fn detail(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.message {
            parts.push(m.clone());
        } else if let Some(e) = &self.oauth_error {
            parts.push(e.clone());
        }
        for d in &self.descriptions {
            if Some(d) != self.message.as_ref() {
                parts.push(d.clone());
            }
        }
        let mut s = parts.join("; ");
        if let Some(t) = &self.tracking_id {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&format!("(trackingId {t})"));
        }
        s
    }
}

/// Error text from a server is shown to people; keep it to one short line.
fn clip(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() > 300 {
        format!("{}…", one_line.chars().take(300).collect::<String>())
    } else {
        one_line
    }
}

/// Why a request failed for a reason that may pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransientReason {
    /// 5xx, 429, 408 or 423.
    Status(u16),
    Timeout,
    Connect(String),
    /// The body was cut off, not JSON, too large, or the transfer broke.
    BadResponse(String),
}

/// A classified failure of one Webex request.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// The credential was rejected: 401, or 400 with `invalid_grant`/`invalid_token`.
    Rejected { status: u16, body: ErrorBody },
    /// Any other 4xx: the request is not allowed or is malformed.
    Refused { status: u16, body: ErrorBody },
    /// Gave up after retries on a failure that may pass.
    Transient {
        reason: TransientReason,
        body: Option<ErrorBody>,
        attempts: u32,
    },
}

impl ApiError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Transient { .. })
    }

    pub fn tracking_id(&self) -> Option<&str> {
        match self {
            ApiError::Rejected { body, .. } | ApiError::Refused { body, .. } => {
                body.tracking_id.as_deref()
            }
            ApiError::Transient { body, .. } => {
                body.as_ref().and_then(|b| b.tracking_id.as_deref())
            }
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Rejected { status, .. } | ApiError::Refused { status, .. } => Some(*status),
            ApiError::Transient {
                reason: TransientReason::Status(s),
                ..
            } => Some(*s),
            ApiError::Transient { .. } => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_detail = |f: &mut fmt::Formatter<'_>, head: String, body: &ErrorBody| {
            let d = body.detail();
            if d.is_empty() {
                write!(f, "{head}")
            } else {
                write!(f, "{head}: {d}")
            }
        };
        match self {
            ApiError::Rejected { status, body } | ApiError::Refused { status, body } => {
                with_detail(f, format!("HTTP {status}"), body)
            }
            ApiError::Transient {
                reason,
                body,
                attempts,
            } => {
                let head = match reason {
                    TransientReason::Status(s) => format!("HTTP {s}"),
                    TransientReason::Timeout => "timed out".to_string(),
                    TransientReason::Connect(e) => format!("could not connect ({e})"),
                    TransientReason::BadResponse(e) => format!("bad response ({e})"),
                };
                let head = if *attempts > 1 {
                    format!("{head}, after {attempts} tries")
                } else {
                    head
                };
                match body {
                    Some(b) => with_detail(f, head, b),
                    None => write!(f, "{head}"),
                }
            }
        }
    }
}

/// Turns an HTTP error status and body into the chain's categories.
pub fn classify(status: u16, body: ErrorBody) -> Result<ApiError, (TransientReason, ErrorBody)> {
    match status {
        401 => Ok(ApiError::Rejected { status, body }),
        400 if body.says_bad_credential() => Ok(ApiError::Rejected { status, body }),
        408 | 423 | 429 | 500..=599 => Err((TransientReason::Status(status), body)),
        _ => Ok(ApiError::Refused { status, body }),
    }
}

/// The Webex calls the refresh chain makes. A trait so the chain can be
/// unit-tested with a fake.
#[allow(async_fn_in_trait)]
pub trait WebexApi {
    /// `GET /dataSources` with the service-app access token.
    async fn validate(&self, access_token: &SecretString) -> Result<(), ApiError>;
    /// `POST /access_token`, `grant_type=refresh_token`.
    async fn refresh(
        &self,
        client: &ClientCredentials<'_>,
        refresh_token: &SecretString,
    ) -> Result<TokenGrant, ApiError>;
    /// `POST /applications/{appId}/token` with a personal access token.
    async fn mint(
        &self,
        bearer: &SecretString,
        req: &MintRequest<'_>,
    ) -> Result<TokenGrant, ApiError>;
}

/// Retry rules for transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Total time the tries of one request may take, waits included.
    pub budget: Duration,
    /// Tests: do not sleep between tries.
    pub no_delay: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            budget: Duration::from_secs(60),
            no_delay: false,
        }
    }
}

impl RetryPolicy {
    /// Backoff before try number `attempt + 1` (attempt counts from 1):
    /// exponential, capped, with jitter in [50%, 100%] so that many machines
    /// whose cron fires at the same minute do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let capped = exp.min(self.max_delay);
        let jitter = random_unit();
        capped.mul_f64(0.5 + 0.5 * jitter)
    }
}

/// A random number in [0, 1) without pulling in an RNG crate: std's
/// `RandomState` is seeded from the OS per instance, which is plenty for
/// jitter (nothing here needs cryptographic randomness).
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Parses `Retry-After`: delta seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Settings for the real HTTP client.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// e.g. `https://webexapis.com/v1` (no trailing slash).
    pub base_url: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

/// The real Webex client (reqwest + rustls), built on first use.
pub struct HttpApi {
    settings: HttpSettings,
    client: OnceLock<Result<reqwest::Client, String>>,
}

/// One raw outcome of a request before classification.
struct RawResponse {
    status: u16,
    body: Vec<u8>,
    tracking: Option<String>,
    retry_after: Option<Duration>,
    /// The secret values this request carried (see [`secrets_in`]).
    secrets: Vec<String>,
}

/// The secret values a request carries: the bearer token (or Basic
/// credentials) and the form or JSON fields that hold secrets. An error body
/// that echoes one of them (a server or proxy quoting the request back) is
/// redacted before anyone sees it, so "never print a secret" does not depend
/// on the server's manners.
fn secrets_in(req: &reqwest::Request) -> Vec<String> {
    const FORM_KEYS: [&str; 6] = [
        "client_secret",
        "refresh_token",
        "code",
        "code_verifier",
        "device_code",
        "assertion",
    ];
    const JSON_KEYS: [&str; 4] = ["clientSecret", "refreshToken", "accessToken", "jwsToken"];
    let mut out = Vec::new();
    if let Some(auth) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = auth.strip_prefix("Bearer ") {
            out.push(t.trim().to_string());
        } else if let Some(b) = auth.strip_prefix("Basic ") {
            use base64::Engine;
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b.trim())
                && let Ok(text) = String::from_utf8(raw)
                && let Some((_, secret)) = text.split_once(':')
            {
                out.push(secret.to_string());
            }
        }
    }
    if let Some(body) = req.body().and_then(|b| b.as_bytes()) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
            for k in JSON_KEYS {
                if let Some(s) = v.get(k).and_then(|x| x.as_str()) {
                    out.push(s.to_string());
                }
            }
        } else {
            for (k, v) in form_urlencoded::parse(body) {
                if FORM_KEYS.contains(&k.as_ref()) {
                    out.push(v.into_owned());
                }
            }
        }
    }
    // Very short values would redact ordinary words; real secrets are long.
    out.retain(|s| s.len() >= 8);
    out
}

/// Replaces every occurrence of each secret in `text` by its fingerprint.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(
                s.as_str(),
                &format!("[redacted {}]", crate::secret::fingerprint_str(s)),
            );
        }
    }
    out
}

impl HttpApi {
    pub fn new(settings: HttpSettings) -> HttpApi {
        HttpApi {
            settings,
            client: OnceLock::new(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.settings.base_url
    }

    /// The absolute URL of an endpoint path such as `/access_token`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.settings.base_url.trim_end_matches('/'), path)
    }

    fn client(&self) -> Result<&reqwest::Client, ApiError> {
        let built = self.client.get_or_init(|| {
            // One process-wide crypto provider; ring keeps the binary small
            // and builds without a C toolchain beyond what `cc` needs.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut builder = reqwest::Client::builder();
            if self.settings.base_url.starts_with("http://") {
                // A plain-http API base (a local stand-in) never does TLS:
                // redirects are off, so no request can leave for https.
                // Loading the system CA store (~150 files, ~2 ms) would be
                // pure waste there.
                builder = builder.tls_certs_only(std::iter::empty()).https_only(false);
            }
            builder
                .connect_timeout(self.settings.connect_timeout)
                .timeout(self.settings.request_timeout)
                // Token endpoints never redirect; following one could send
                // credentials somewhere unexpected.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("webex-token/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        });
        built.as_ref().map_err(|e| ApiError::Transient {
            reason: TransientReason::Connect(format!("could not set up the HTTP client: {e}")),
            body: None,
            attempts: 0,
        })
    }

    /// Sends one request (built fresh by `make` for every try), retrying
    /// transient failures, and returns the 2xx body or a classified error.
    pub async fn send<F>(&self, what: &str, make: F) -> Result<Vec<u8>, ApiError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let client = self.client()?;
        let policy = &self.settings.retry;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let sent = Instant::now();
            let result = self.once(client, &make).await;
            match &result {
                Ok(raw) => tracing::debug!(
                    "{what} → HTTP {} in {} ms (try {attempt})",
                    raw.status,
                    sent.elapsed().as_millis()
                ),
                Err(reason) => tracing::debug!(
                    "{what} → {reason:?} after {} ms (try {attempt})",
                    sent.elapsed().as_millis()
                ),
            }
            let (reason, body, retry_after) = match result {
                Ok(raw) if (200..300).contains(&raw.status) => return Ok(raw.body),
                Ok(raw) => {
                    let body =
                        ErrorBody::parse(&raw.body, raw.tracking.clone()).redacted(&raw.secrets);
                    match classify(raw.status, body) {
                        Ok(final_error) => return Err(final_error),
                        Err((reason, body)) => (reason, Some(body), raw.retry_after),
                    }
                }
                Err(reason) => (reason, None, None),
            };
            let delay = match retry_after {
                Some(d) => d,
                None => policy.backoff(attempt),
            };
            let give_up =
                attempt >= policy.max_attempts || started.elapsed() + delay > policy.budget;
            if give_up {
                if let Some(ra) = retry_after.filter(|_| attempt < policy.max_attempts) {
                    tracing::warn!(
                        "{what}: Webex asked to retry after {}s; with {:.1}s already spent that would pass the retry budget of {}s; giving up",
                        ra.as_secs(),
                        started.elapsed().as_secs_f64(),
                        policy.budget.as_secs()
                    );
                }
                return Err(ApiError::Transient {
                    reason,
                    body,
                    attempts: attempt,
                });
            }
            let shown = ApiError::Transient {
                reason: reason.clone(),
                body: body.clone(),
                attempts: 1,
            };
            tracing::warn!(
                "{what}: {shown}; retrying in {:.1}s (try {} of {})",
                delay.as_secs_f64(),
                attempt + 1,
                policy.max_attempts
            );
            if !policy.no_delay {
                tokio::time::sleep(delay).await;
            }
        }
    }

    async fn once<F>(
        &self,
        client: &reqwest::Client,
        make: &F,
    ) -> Result<RawResponse, TransientReason>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let request = make(client).build().map_err(transport_reason)?;
        tracing::trace!("{} {}", request.method(), request.url());
        let secrets = secrets_in(&request);
        let mut resp = client.execute(request).await.map_err(transport_reason)?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let tracking = header("trackingid");
        let retry_after =
            header("retry-after").and_then(|v| parse_retry_after(&v, std::time::SystemTime::now()));
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(TransientReason::BadResponse(format!(
                            "HTTP {status} with a body larger than {} KiB",
                            MAX_BODY_BYTES / 1024
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(transport_reason(e)),
            }
        }
        Ok(RawResponse {
            status,
            body,
            tracking,
            retry_after,
            secrets,
        })
    }

    async fn token_call<F>(&self, what: &str, make: F) -> Result<TokenGrant, ApiError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        // A 200 whose body is not a token answer is treated like a cut-off
        // transfer: retried, then reported as transient (exit 1), because
        // the server may well answer properly next time.
        let mut tries = 0;
        loop {
            tries += 1;
            let body = self.send(what, &make).await?;
            match parse_grant(&body) {
                Ok(g) => return Ok(g),
                Err(why) if tries >= self.settings.retry.max_attempts => {
                    return Err(ApiError::Transient {
                        reason: TransientReason::BadResponse(why),
                        body: None,
                        attempts: tries,
                    });
                }
                Err(why) => {
                    tracing::warn!("{what}: {why}; retrying");
                    if !self.settings.retry.no_delay {
                        tokio::time::sleep(self.settings.retry.backoff(tries)).await;
                    }
                }
            }
        }
    }
}

/// Parses a token answer; the reason on failure never includes the body
/// (it may hold a token).
pub fn parse_grant(body: &[u8]) -> Result<TokenGrant, String> {
    let grant: TokenGrant = serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() {
            "the token response was cut off".to_string()
        } else {
            format!(
                "the token response is not the expected JSON ({})",
                e.classify_name()
            )
        }
    })?;
    if grant.access_token.expose_secret().trim().is_empty() {
        return Err("the token response has an empty access_token".into());
    }
    let mut grant = grant;
    // An empty `refresh_token` is no refresh token: storing it would
    // replace a good one by nothing.
    if grant
        .refresh_token
        .as_ref()
        .is_some_and(|r| r.expose_secret().trim().is_empty())
    {
        grant.refresh_token = None;
        grant.refresh_token_expires_in = None;
    }
    Ok(grant)
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}
impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "missing or mistyped field",
            serde_json::error::Category::Eof => "cut off",
        }
    }
}

fn transport_reason(e: reqwest::Error) -> TransientReason {
    if e.is_timeout() {
        TransientReason::Timeout
    } else if e.is_connect() {
        let mut msg = e.to_string();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = s.to_string();
            src = s.source();
        }
        TransientReason::Connect(msg)
    } else {
        TransientReason::BadResponse(format!("transfer failed: {e}"))
    }
}

impl WebexApi for HttpApi {
    async fn validate(&self, access_token: &SecretString) -> Result<(), ApiError> {
        let url = self.url("/dataSources");
        self.send("GET /dataSources", |c| {
            c.get(&url)
                .bearer_auth(access_token.expose_secret())
                .header("accept", "application/json")
        })
        .await
        .map(|_| ())
    }

    async fn refresh(
        &self,
        client: &ClientCredentials<'_>,
        refresh_token: &SecretString,
    ) -> Result<TokenGrant, ApiError> {
        let url = self.url("/access_token");
        self.token_call("POST /access_token", |c| {
            c.post(&url).header("accept", "application/json").form(&[
                ("grant_type", "refresh_token"),
                ("client_id", client.client_id),
                ("client_secret", client.client_secret.expose_secret()),
                ("refresh_token", refresh_token.expose_secret()),
            ])
        })
        .await
    }

    async fn mint(
        &self,
        bearer: &SecretString,
        req: &MintRequest<'_>,
    ) -> Result<TokenGrant, ApiError> {
        let url = self.url(&format!(
            "/applications/{}/token",
            urlencode_path(req.app_id)
        ));
        let body = serde_json::json!({
            "clientId": req.client_id,
            "clientSecret": req.client_secret.expose_secret(),
            "targetOrgId": req.target_org_id,
        });
        self.token_call("POST /applications/{appId}/token", |c| {
            c.post(&url)
                .bearer_auth(bearer.expose_secret())
                .header("accept", "application/json")
                .json(&body)
        })
        .await
    }
}

/// Percent-encodes a path segment (app ids are base64 and may hold `/`, `+`, `=`).
pub fn urlencode_path(seg: &str) -> String {
    let mut out = String::with_capacity(seg.len());
    for b in seg.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Makes a token for tests and fakes.
pub fn grant(access: &str, expires_in: u64, refresh: Option<(&str, u64)>) -> TokenGrant {
    TokenGrant {
        access_token: secret(access),
        expires_in: Some(expires_in),
        refresh_token: refresh.map(|(r, _)| secret(r)),
        refresh_token_expires_in: refresh.map(|(_, e)| e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let body = |e: Option<&str>| ErrorBody {
            oauth_error: e.map(str::to_string),
            ..Default::default()
        };
        assert!(matches!(
            classify(401, body(None)),
            Ok(ApiError::Rejected { .. })
        ));
        assert!(matches!(
            classify(400, body(Some("invalid_grant"))),
            Ok(ApiError::Rejected { .. })
        ));
        assert!(matches!(
            classify(400, body(Some("invalid_token"))),
            Ok(ApiError::Rejected { .. })
        ));
        assert!(matches!(
            classify(400, body(Some("invalid_request"))),
            Ok(ApiError::Refused { .. })
        ));
        assert!(matches!(
            classify(400, body(None)),
            Ok(ApiError::Refused { .. })
        ));
        assert!(matches!(
            classify(403, body(None)),
            Ok(ApiError::Refused { .. })
        ));
        assert!(matches!(
            classify(404, body(None)),
            Ok(ApiError::Refused { .. })
        ));
        for s in [408, 423, 429, 500, 502, 503, 504] {
            assert!(classify(s, body(None)).is_err(), "{s} must be transient");
        }
    }

    #[test]
    fn parses_webex_error_bodies() {
        let b = ErrorBody::parse(
            br#"{"message":"The request requires a valid access token set in the Authorization request header.","errors":[{"description":"The request requires a valid access token set in the Authorization request header."}],"trackingId":"ROUTER_123"}"#,
            None,
        );
        assert_eq!(b.tracking_id.as_deref(), Some("ROUTER_123"));
        let shown = ApiError::Rejected {
            status: 401,
            body: b,
        }
        .to_string();
        assert_eq!(
            shown,
            "HTTP 401: The request requires a valid access token set in the Authorization request header. (trackingId ROUTER_123)"
        );
        let o = ErrorBody::parse(
            br#"{"error":"invalid_grant","error_description":"expired"}"#,
            Some("HDR".into()),
        );
        assert!(o.says_bad_credential());
        assert_eq!(o.tracking_id.as_deref(), Some("HDR"));
        let m = ErrorBody::parse(
            br#"{"message":"invalid_grant: refresh token expired"}"#,
            None,
        );
        assert!(m.says_bad_credential());
        let junk = ErrorBody::parse(b"<html>bad gateway</html>", None);
        assert_eq!(junk, ErrorBody::default());
    }

    #[test]
    fn retry_after_forms() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = RetryPolicy::default();
        for attempt in 1..40 {
            let d = p.backoff(attempt);
            assert!(d <= p.max_delay, "{d:?}");
            let full = p
                .base_delay
                .saturating_mul(1 << (attempt - 1).min(20))
                .min(p.max_delay);
            assert!(d >= full / 2, "{attempt}: {d:?} < half of {full:?}");
        }
    }

    #[test]
    fn grant_parsing_never_echoes_the_body() {
        let err = parse_grant(br#"{"access_token":"SECRETVALUE","expires_in":"#).unwrap_err();
        assert!(err.contains("cut off"));
        assert!(!err.contains("SECRETVALUE"));
        let err = parse_grant(br#"{"access_token":"","expires_in":5}"#).unwrap_err();
        assert!(err.contains("empty"));
        let g =
            parse_grant(br#"{"access_token":"a","expires_in":5,"token_type":"Bearer"}"#).unwrap();
        assert!(g.refresh_token.is_none());
    }

    #[test]
    fn path_encoding() {
        assert_eq!(urlencode_path("Y2lz/Y2+=="), "Y2lz%2FY2%2B%3D%3D");
    }
}
