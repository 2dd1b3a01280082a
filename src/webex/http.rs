//! The real client: reqwest + rustls, retries with backoff, redaction of
//! echoed secrets. The only file that builds requests.

use super::error::{ApiError, ErrorBody, TransientReason, classify};
use super::{
    ClientCredentials, MAX_BODY_BYTES, MintRequest, TokenGrant, WebexApi, parse_grant,
    urlencode_path,
};
use crate::secret::{ExposeSecret, SecretString};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
    // `Retry-After: 0` (or a date already passed) still waits a second: an
    // immediate retry against a server that asked for a pause is a storm.
    const AT_LEAST: Duration = Duration::from_secs(1);
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).max(AT_LEAST));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .max(AT_LEAST),
    )
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
    pool: Option<std::sync::Arc<ClientPool>>,
}

/// The HTTP clients of one run, shared by every org: a `reqwest::Client`
/// is a handle to one connection pool, so the orgs of a run reuse
/// connections (and the client is set up once, not once per org). Still
/// lazy: nothing is built until the first request.
///
/// It also bounds the run's sockets: at most `concurrency` requests are in
/// flight at once over all its orgs (a `watch` over 1,000 orgs opens
/// `--concurrency` connections, not 1,000), and at most that many idle
/// connections per host are kept, each for [`POOL_IDLE_TIMEOUT`].
#[derive(Debug)]
pub struct ClientPool {
    built: std::sync::Mutex<Vec<(ClientKey, reqwest::Client)>>,
    in_flight: tokio::sync::Semaphore,
    max_idle: usize,
}

/// The global `--concurrency` default: a client outside a run's pool keeps
/// as many idle connections per host.
const DEFAULT_CONCURRENCY: usize = 8;

/// How long an idle kept-alive connection stays open for the next request.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ClientPool {
    /// The pool of the global `--concurrency` default (8).
    fn default() -> ClientPool {
        ClientPool::new(DEFAULT_CONCURRENCY)
    }
}

/// What a client's construction depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientKey {
    plain_http: bool,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl ClientKey {
    fn of(s: &HttpSettings) -> ClientKey {
        ClientKey {
            plain_http: s.base_url.starts_with("http://"),
            connect_timeout: s.connect_timeout,
            request_timeout: s.request_timeout,
        }
    }
}

impl ClientPool {
    /// A pool with at most `concurrency` requests in flight and as many
    /// idle connections per host.
    pub fn new(concurrency: usize) -> ClientPool {
        let concurrency = concurrency.max(1);
        ClientPool {
            built: std::sync::Mutex::default(),
            in_flight: tokio::sync::Semaphore::new(concurrency),
            max_idle: concurrency,
        }
    }

    /// The shared client for `settings`, built on the first call.
    fn get(&self, settings: &HttpSettings) -> Result<reqwest::Client, String> {
        let key = ClientKey::of(settings);
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = built.iter().find(|(k, _)| *k == key) {
            return Ok(c.clone());
        }
        let client = build_client(settings, self.max_idle)?;
        built.push((key, client.clone()));
        Ok(client)
    }

    /// How many clients were built (tests).
    #[cfg(test)]
    fn built(&self) -> usize {
        self.built.lock().unwrap().len()
    }
}

/// A client keeping at most `max_idle` idle connections per host.
fn build_client(settings: &HttpSettings, max_idle: usize) -> Result<reqwest::Client, String> {
    // One process-wide crypto provider; ring keeps the binary small
    // and builds without a C toolchain beyond what `cc` needs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder();
    if settings.base_url.starts_with("http://") {
        // A plain-http API base (a local stand-in) never does TLS:
        // redirects are off, so no request can leave for https.
        // Loading the system CA store (~150 files, ~2 ms) would be
        // pure waste there.
        builder = builder.tls_certs_only(std::iter::empty()).https_only(false);
    }
    builder
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.request_timeout)
        // reqwest keeps every idle connection by default: a long run over
        // many orgs would hold one socket per org.
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        // Token endpoints never redirect; following one could send
        // credentials somewhere unexpected.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("webex-token/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// One raw outcome of a request before classification.
pub(super) struct RawResponse {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
    pub(super) tracking: Option<String>,
    /// The host a 3xx points at.
    pub(super) location_host: Option<String>,
    pub(super) retry_after: Option<Duration>,
    /// The secret values this request carried (see [`secrets_in`]).
    pub(super) secrets: Vec<String>,
    /// The `Link` header(s), joined with `, ` (list paging).
    pub(super) link: Option<String>,
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

impl HttpApi {
    pub fn new(settings: HttpSettings) -> HttpApi {
        HttpApi {
            settings,
            client: OnceLock::new(),
            pool: None,
        }
    }

    /// A client that takes its `reqwest::Client` from `pool` (shared with
    /// the other orgs of the run) on its first request.
    pub fn shared(settings: HttpSettings, pool: std::sync::Arc<ClientPool>) -> HttpApi {
        HttpApi {
            settings,
            client: OnceLock::new(),
            pool: Some(pool),
        }
    }

    /// The absolute URL of an endpoint path such as `/access_token`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.settings.base_url.trim_end_matches('/'), path)
    }

    fn client(&self) -> Result<&reqwest::Client, ApiError> {
        let built = self.client.get_or_init(|| match &self.pool {
            Some(pool) => pool.get(&self.settings),
            None => build_client(&self.settings, DEFAULT_CONCURRENCY),
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
        self.send_linked(what, make).await.map(|(body, _)| body)
    }

    /// [`send`](Self::send), also returning the answer's `Link` header.
    pub(super) async fn send_linked<F>(
        &self,
        what: &str,
        make: F,
    ) -> Result<(Vec<u8>, Option<String>), ApiError>
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
            let result = {
                // A shared client waits for one of the run's request slots
                // (held for this try only, not across the retry's wait).
                let _slot = match &self.pool {
                    Some(pool) => pool.in_flight.acquire().await.ok(),
                    None => None,
                };
                self.once(client, &make).await
            };
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
                Ok(raw) if (200..300).contains(&raw.status) => return Ok((raw.body, raw.link)),
                // Not retried: whatever redirects will redirect again.
                Ok(raw) if (300..400).contains(&raw.status) => {
                    return Err(ApiError::Transient {
                        reason: TransientReason::Redirect {
                            status: raw.status,
                            host: raw.location_host,
                        },
                        body: None,
                        attempts: attempt,
                    });
                }
                Ok(raw) => {
                    let body = ErrorBody::parse(&raw.body, raw.tracking.clone(), &raw.secrets);
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

    /// Sends one request once, without retries, for a caller whose own loop
    /// is the retry (the device-grant poll, where 429 means "poll slower").
    pub(super) async fn send_once<F>(
        &self,
        what: &str,
        make: F,
    ) -> Result<RawResponse, TransientReason>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let client = self.client().map_err(|e| match e {
            ApiError::Transient { reason, .. } => reason,
            other => TransientReason::Connect(other.to_string()),
        })?;
        let sent = Instant::now();
        let result = self.once(client, &make).await;
        match &result {
            Ok(raw) => tracing::debug!(
                "{what} → HTTP {} in {} ms",
                raw.status,
                sent.elapsed().as_millis()
            ),
            Err(reason) => tracing::debug!(
                "{what} → {reason:?} after {} ms",
                sent.elapsed().as_millis()
            ),
        }
        result
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
        let location_host = header("location").map(|l| {
            reqwest::Url::parse(&l)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| crate::secret::printable(&l).chars().take(100).collect())
        });
        let links: Vec<&str> = resp
            .headers()
            .get_all("link")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let link = (!links.is_empty()).then(|| links.join(", "));
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
            location_host,
            retry_after,
            secrets,
            link,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
        // Zero and past dates still wait a second.
        assert_eq!(parse_retry_after("0", now), Some(Duration::from_secs(1)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::from_secs(1)));
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

    fn plain(base: &str, timeout: u64) -> HttpSettings {
        HttpSettings {
            base_url: base.into(),
            connect_timeout: Duration::from_secs(timeout),
            request_timeout: Duration::from_secs(timeout),
            retry: RetryPolicy::default(),
        }
    }

    #[test]
    fn pool_builds_one_client_per_kind_and_only_on_use() {
        let pool = std::sync::Arc::new(ClientPool::default());
        let orgs: Vec<HttpApi> = (0..5)
            .map(|_| HttpApi::shared(plain("http://127.0.0.1:9/v1", 30), pool.clone()))
            .collect();
        // Lazy: making the clients builds nothing.
        assert_eq!(pool.built(), 0);
        for api in &orgs {
            api.client().unwrap();
        }
        assert_eq!(pool.built(), 1);
        // Other timeouts or TLS need their own client.
        HttpApi::shared(plain("http://127.0.0.1:9/v1", 5), pool.clone())
            .client()
            .unwrap();
        HttpApi::shared(plain("https://webexapis.com/v1", 30), pool.clone())
            .client()
            .unwrap();
        assert_eq!(pool.built(), 3);
        // Without a pool each client is its own.
        HttpApi::new(plain("http://127.0.0.1:9/v1", 30))
            .client()
            .unwrap();
        assert_eq!(pool.built(), 3);
    }
}
