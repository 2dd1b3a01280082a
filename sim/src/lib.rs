//! `webex-sim`: a local stand-in for the parts of the Webex REST API that
//! `webex-token` uses, with real state (tokens, codes, data sources), a
//! controllable clock, request recording and fault injection.
//!
//! See `sim/README.md` for the endpoints, the `/_sim/` control API and the binary.
//!
//! ```no_run
//! use std::time::Duration;
//! use webex_sim::{Sim, SimOptions};
//!
//! let sim = Sim::start(SimOptions::default()).unwrap();
//! let pat = sim.issue_personal_token(Duration::from_secs(12 * 3600));
//! println!("{} {}", sim.base_url(), pat.len());
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

mod control;
mod datasources;
mod device;
mod http;
mod messages;
mod orgs;
mod server;
mod util;
mod wire;

pub use messages::MESSAGES_WRITE_SCOPE;
pub use orgs::random_org_id;

const DAY: u64 = 86_400;

/// Scope needed to mint service-app tokens.
pub const APPLICATIONS_TOKEN_SCOPE: &str = "spark:applications_token";

/// Lifetimes and behaviour switches of a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Service-app access tokens (minted or refreshed). Default 14 days.
    pub access_ttl: Duration,
    /// Service-app refresh tokens. Default 90 days.
    pub refresh_ttl: Duration,
    /// Personal tokens issued by `issue_personal_token*` helpers' default / demo files. Default 12 h.
    pub personal_ttl: Duration,
    /// Access (personal) tokens issued to the integration. Default 14 days.
    pub integration_access_ttl: Duration,
    /// Integration refresh tokens. Default 90 days.
    pub integration_refresh_ttl: Duration,
    /// When true, every refresh returns a new refresh token and revokes the old one.
    /// Default false: Webex usually hands back the same refresh token.
    pub rotate_refresh_tokens: bool,
    /// Address to listen on. Default `127.0.0.1:0` (any free port).
    pub addr: String,
    /// The orgs the service app is authorized in (Webex org ids). The first
    /// one is `credentials().target_org_id` and owns the personal tokens and
    /// the data sources created without an org. Default: one fixed org.
    /// Empty means the default. See [`SimOptions::with_org_count`].
    pub orgs: Vec<String>,
    /// Sleep this long in the handler thread before answering every `/v1`
    /// request (control requests are not delayed). Default zero.
    pub latency: Duration,
    /// `GET /v1/dataSources` page size when the request has no `max`. Default 100.
    pub page_size: usize,
    /// Device grant: the `interval` announced by `/v1/device/authorize` (whole
    /// seconds, rounded up); a poll sooner than that after the previous one
    /// answers `slow_down`. Default 5 s.
    pub device_interval: Duration,
    /// Device grant: how long a device code / user code lives (`expires_in`,
    /// whole seconds, rounded up). Default 300 s, as at Webex.
    pub device_code_ttl: Duration,
    /// How long a "minute" of a data-source token lasts: its lifetime
    /// (`tokenLifetimeMinutes`) and a new source's `expires_in` are scaled
    /// by `ds_minute / 60 s`, for benchmarks that compress a day. Default
    /// 60 s (no scaling).
    pub ds_minute: Duration,
}

impl SimOptions {
    /// `n` authorized orgs: the default org first, then `n - 1` random ones
    /// (`n = 0` is taken as 1).
    pub fn with_org_count(mut self, n: usize) -> SimOptions {
        self.orgs = vec![util::webex_id("ORGANIZATION", ORG_UUID)];
        self.orgs.extend((1..n).map(|_| orgs::random_org_id()));
        self
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            access_ttl: Duration::from_secs(14 * DAY),
            refresh_ttl: Duration::from_secs(90 * DAY),
            personal_ttl: Duration::from_secs(12 * 3600),
            integration_access_ttl: Duration::from_secs(14 * DAY),
            integration_refresh_ttl: Duration::from_secs(90 * DAY),
            rotate_refresh_tokens: false,
            addr: "127.0.0.1:0".to_string(),
            orgs: vec![util::webex_id("ORGANIZATION", ORG_UUID)],
            latency: Duration::ZERO,
            page_size: 100,
            device_interval: Duration::from_secs(5),
            device_code_ttl: device::DEVICE_CODE_TTL,
            ds_minute: Duration::from_secs(60),
        }
    }
}

/// The fixed identities the simulator knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// base64 of `ciscospark://us/APPLICATION/<service_client_id>`
    pub app_id: String,
    pub service_client_id: String,
    pub service_client_secret: String,
    /// base64 of `ciscospark://us/ORGANIZATION/<org uuid>`: the first authorized org.
    pub target_org_id: String,
    pub integration_client_id: String,
    pub integration_client_secret: String,
}

const SERVICE_CLIENT_ID: &str =
    "C5e7b1a0c9d34f2e8a6b1d0f93c27e4a18b5d6f0e2a9c3b7d41f6e8a0b2c9d3e7f";
const SERVICE_CLIENT_SECRET: &str =
    "8f3c2a1b9e7d6c5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f";
const INTEGRATION_CLIENT_ID: &str =
    "C2b9d4e6f8a0c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b";
const INTEGRATION_CLIENT_SECRET: &str =
    "a1f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9";
pub(crate) const ORG_UUID: &str = "1eb65fdf-9643-417f-9974-ad72cae0e10f";
const MACHINE_ACCOUNT_UUID: &str = "7d3f6a2e-4b1c-4e8a-9f0d-2c5b8e1a6f47";
pub(crate) const DEFAULT_SCHEMA_ID: &str = "78efc775-dcc5-4a1c-8fa4-1a6f0b3f9a47";

impl Credentials {
    fn new(target_org_id: String) -> Credentials {
        Credentials {
            app_id: util::webex_id("APPLICATION", SERVICE_CLIENT_ID),
            service_client_id: SERVICE_CLIENT_ID.to_string(),
            service_client_secret: SERVICE_CLIENT_SECRET.to_string(),
            target_org_id,
            integration_client_id: INTEGRATION_CLIENT_ID.to_string(),
            integration_client_secret: INTEGRATION_CLIENT_SECRET.to_string(),
        }
    }
}

/// One request the simulator received (control requests under `/_sim/` are not recorded).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Uppercase, e.g. `POST`.
    pub method: String,
    /// Path without the query, e.g. `/v1/access_token`.
    pub path: String,
    /// Raw query string without the `?` (empty when none).
    pub query: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Body as text (lossy UTF-8).
    pub body: String,
    /// Parsed fields when the body was `application/x-www-form-urlencoded`.
    pub form: Option<BTreeMap<String, String>>,
    /// Status the simulator answered with (0 for a `CloseConnection` fault).
    pub status: u16,
    /// Arrival time on the simulator's clock (real time + `advance_clock` offset).
    pub at: SystemTime,
}

impl RecordedRequest {
    /// First header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A form field, if the body was form-encoded.
    pub fn form_value(&self, name: &str) -> Option<&str> {
        self.form.as_ref()?.get(name).map(String::as_str)
    }

    /// A decoded query parameter.
    pub fn query_value(&self, name: &str) -> Option<String> {
        util::parse_urlencoded(&self.query).remove(name)
    }

    /// The bearer token from the `Authorization` header, if any.
    pub fn bearer(&self) -> Option<&str> {
        wire::bearer_of(self.header("authorization"))
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    pub(crate) fn to_json(&self) -> Value {
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": headers,
            "body": self.body,
            "form": self.form,
            "status": self.status,
            "at": util::rfc3339(self.at),
        })
    }
}

/// A scripted misbehaviour for the next matching request(s).
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// `None` matches any method.
    pub method: Option<String>,
    /// Exact path, e.g. `/v1/access_token`.
    pub path: String,
    /// How many matching requests get the fault; `usize::MAX` = forever.
    pub times: usize,
    pub kind: FaultKind,
}

impl Fault {
    /// A one-shot fault for any method on `path`.
    pub fn new(path: &str, kind: FaultKind) -> Fault {
        Fault {
            method: None,
            path: path.to_string(),
            times: 1,
            kind,
        }
    }

    /// One-shot status fault with a generated Webex-style error body.
    pub fn status(path: &str, status: u16) -> Fault {
        Fault::new(
            path,
            FaultKind::Status {
                status,
                body: String::new(),
                retry_after: None,
                content_type: None,
            },
        )
    }

    /// One-shot 429 with `Retry-After: <secs>`.
    pub fn rate_limited(path: &str, retry_after_secs: u64) -> Fault {
        Fault::new(
            path,
            FaultKind::Status {
                status: 429,
                body: String::new(),
                retry_after: Some(retry_after_secs.to_string()),
                content_type: None,
            },
        )
    }

    pub fn with_method(mut self, method: &str) -> Fault {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    pub fn with_times(mut self, times: usize) -> Fault {
        self.times = times;
        self
    }

    pub fn forever(self) -> Fault {
        self.with_times(usize::MAX)
    }
}

/// What a [`Fault`] does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Answer with this status. An empty `body` is replaced by a Webex-style
    /// JSON error body; `content_type` defaults to `application/json`.
    Status {
        status: u16,
        body: String,
        retry_after: Option<String>,
        content_type: Option<String>,
    },
    /// Sleep, then handle the request normally.
    Delay(Duration),
    /// Handle the request normally (tokens issued, a rotated refresh token
    /// already revoked, the request recorded), then sleep before answering:
    /// a client killed meanwhile never gets the answer.
    DelayAfter(Duration),
    /// `200` with `Content-Type: application/json` and a cut-off JSON body
    /// (the request is not processed: no token is issued or rotated).
    Truncated,
    /// Do not answer: the simulator writes a few bytes of garbage that are
    /// not an HTTP response and closes the connection; clients fail at once
    /// with a connection/protocol error, as with a reset.
    CloseConnection,
}

/// A data source created directly through the library (or `/_sim/datasources`).
#[derive(Debug, Clone)]
pub struct NewDataSource {
    pub schema_id: String,
    pub url: String,
    pub audience: String,
    pub subject: String,
    /// The registered lifetime (what a PUT would reuse). Default 1440.
    pub token_lifetime_minutes: u32,
    /// How long the current jwsToken is still valid from now (may be shorter
    /// than the lifetime, to simulate a token close to expiry; zero = expired).
    /// Default 24 h.
    pub expires_in: Duration,
    /// `active` or `disabled`. Default `active`.
    pub status: String,
    /// Shown when disabled.
    pub error_message: Option<String>,
}

impl Default for NewDataSource {
    fn default() -> Self {
        NewDataSource {
            schema_id: DEFAULT_SCHEMA_ID.to_string(),
            url: "https://byods.example.com/api/v1/data".to_string(),
            audience: "byods-demo-provider".to_string(),
            subject: "demo-data-source".to_string(),
            token_lifetime_minutes: 1440,
            expires_in: Duration::from_secs(DAY),
            status: "active".to_string(),
            error_message: None,
        }
    }
}

/// The kinds of token the simulator issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Service-app access token (works for `/v1/dataSources`).
    ServiceAccess,
    /// Service-app refresh token.
    ServiceRefresh,
    /// Personal / integration access token (a user token).
    Personal,
    /// Integration refresh token.
    IntegrationRefresh,
    /// A bot's access token (posts and edits messages; see [`Sim::issue_bot_token`]).
    Bot,
}

/// What the simulator knows about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub kind: TokenKind,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
    pub revoked: bool,
    /// Expired on the simulator's clock.
    pub expired: bool,
    /// The org the token belongs to (service tokens: the org they were
    /// minted for; user tokens: the first org).
    pub org_id: String,
}

// ---------------------------------------------------------------- state

#[derive(Debug, Clone)]
pub(crate) struct TokenRec {
    pub kind: TokenKind,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
    pub revoked: bool,
    /// Position in `State::orgs`.
    pub org: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct CodeRec {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// (method, challenge)
    pub challenge: Option<(String, String)>,
    pub expires_at: SystemTime,
    pub used: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct DataSource {
    pub id: String,
    pub schema_id: String,
    pub url: String,
    pub audience: String,
    pub subject: String,
    pub nonce: String,
    pub lifetime_minutes: u32,
    pub status: String,
    pub error_message: Option<String>,
    pub jws: String,
    pub token_expiry: SystemTime,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

pub(crate) struct State {
    pub tokens: HashMap<String, TokenRec>,
    pub codes: HashMap<String, CodeRec>,
    /// Authorized orgs, each with its data sources. Never empty.
    pub orgs: orgs::Orgs,
    pub devices: device::Devices,
    pub messages: messages::Messages,
    pub nonces: HashSet<String>,
    pub clock_offset: Duration,
    pub requests: Vec<RecordedRequest>,
    pub faults: Vec<Fault>,
    pub authorize_denied: bool,
    pub log_requests: bool,
    pub latency: Duration,
    pub page_size: usize,
    pub device_interval: Duration,
    pub device_code_ttl: Duration,
    pub ds_minute: Duration,
}

impl State {
    /// `minutes` data-source token minutes (see [`SimOptions::ds_minute`]).
    pub fn ds_minutes(&self, minutes: u32) -> Duration {
        self.ds_minute * minutes
    }
}

pub(crate) struct Inner {
    pub opts: SimOptions,
    pub creds: Credentials,
    pub base_url: String,
    pub state: Mutex<State>,
    /// `/v1` requests being handled now, and the most seen at once.
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

impl Inner {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn machine_account_id(&self) -> String {
        util::webex_id("PEOPLE", MACHINE_ACCOUNT_UUID)
    }

    /// `http://127.0.0.1:PORT`
    pub fn root_url(&self) -> &str {
        self.base_url.trim_end_matches("/v1")
    }

    pub fn enter(&self) {
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(n, Ordering::SeqCst);
    }

    pub fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// The maximum starts again from what is in flight right now.
    pub fn reset_max_in_flight(&self) {
        self.max_in_flight
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

impl State {
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + self.clock_offset
    }

    /// A token of the first org (user tokens).
    pub fn issue(
        &mut self,
        kind: TokenKind,
        client_id: &str,
        scopes: &[String],
        ttl: Duration,
    ) -> String {
        self.issue_in(0, kind, client_id, scopes, ttl)
    }

    /// A token of the org at position `org`; like Webex's, it ends with the org's uuid.
    pub fn issue_in(
        &mut self,
        org: usize,
        kind: TokenKind,
        client_id: &str,
        scopes: &[String],
        ttl: Duration,
    ) -> String {
        let token = loop {
            let t = format!(
                "{}_PF84_{}",
                util::random_alnum(64),
                self.orgs.get(org).uuid
            );
            if !self.tokens.contains_key(&t) {
                break t;
            }
        };
        let now = self.now();
        self.tokens.insert(
            token.clone(),
            TokenRec {
                kind,
                client_id: client_id.to_string(),
                scopes: scopes.to_vec(),
                issued_at: now,
                expires_at: now + ttl,
                revoked: false,
                org,
            },
        );
        token
    }

    /// The record, if the token exists, is not revoked and not expired.
    pub fn live(&self, token: &str) -> Option<&TokenRec> {
        let now = self.now();
        self.tokens
            .get(token)
            .filter(|r| !r.revoked && r.expires_at > now)
    }

    pub fn expire_where(&mut self, pred: impl Fn(&str, &TokenRec) -> bool) -> usize {
        let past = self.now() - Duration::from_secs(1);
        let mut n = 0;
        for (t, r) in self.tokens.iter_mut() {
            if pred(t, r) {
                r.expires_at = r.expires_at.min(past);
                n += 1;
            }
        }
        n
    }

    /// Adds `n` orgs with random ids; returns their positions.
    pub fn add_random_orgs(&mut self, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                loop {
                    let before = self.orgs.len();
                    if let Ok(i) = self.orgs.add(&orgs::random_org_id())
                        && i == before
                    {
                        break i;
                    }
                }
            })
            .collect()
    }

    pub fn new_data_source(&mut self, org: usize, ds: &NewDataSource) -> String {
        let now = self.now();
        let id = util::uuid_v4();
        let nonce = util::uuid_v4();
        self.nonces.insert(nonce.clone());
        let expiry = now + ds.expires_in.mul_f64(self.ds_minute.as_secs_f64() / 60.0);
        let lifetime = self.ds_minutes(ds.token_lifetime_minutes);
        let mut d = DataSource {
            id: id.clone(),
            schema_id: ds.schema_id.clone(),
            url: ds.url.clone(),
            audience: ds.audience.clone(),
            subject: ds.subject.clone(),
            nonce,
            lifetime_minutes: ds.token_lifetime_minutes,
            status: ds.status.clone(),
            error_message: ds.error_message.clone(),
            jws: String::new(),
            token_expiry: expiry,
            created_at: now,
            updated_at: now,
        };
        let o = self.orgs.get_mut(org);
        d.jws = datasources::make_jws(
            &d,
            &o.uuid,
            expiry.checked_sub(lifetime).unwrap_or(now),
            expiry,
        );
        o.data_sources.push(d);
        id
    }
}

// ---------------------------------------------------------------- Sim

/// A running simulator. Dropping it stops the server.
pub struct Sim {
    inner: Arc<Inner>,
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sim {
    /// Binds `opts.addr` and serves on a background thread (one thread per request).
    pub fn start(opts: SimOptions) -> io::Result<Sim> {
        let server = http::Server::bind(opts.addr.as_str())?;
        let addr = server.local_addr()?;
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        let base_url = format!("http://{host}:{}/v1", addr.port());
        let mut org_table = orgs::Orgs::default();
        let org_ids = if opts.orgs.is_empty() {
            SimOptions::default().orgs
        } else {
            opts.orgs.clone()
        };
        for id in &org_ids {
            org_table
                .add(id)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        let state = State {
            tokens: HashMap::new(),
            codes: HashMap::new(),
            orgs: org_table,
            devices: device::Devices::default(),
            messages: messages::Messages::default(),
            nonces: HashSet::new(),
            clock_offset: Duration::ZERO,
            requests: Vec::new(),
            faults: Vec::new(),
            authorize_denied: false,
            log_requests: false,
            latency: opts.latency,
            page_size: opts.page_size.max(1),
            device_interval: opts.device_interval,
            device_code_ttl: opts.device_code_ttl,
            ds_minute: opts.ds_minute,
        };
        let inner = Arc::new(Inner {
            creds: Credentials::new(org_ids[0].clone()),
            opts,
            base_url,
            state: Mutex::new(state),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (inner, stop) = (inner.clone(), stop.clone());
            let handle: Arc<dyn Fn(http::Request) + Send + Sync> =
                Arc::new(move |rq| server::serve_one(&inner, rq));
            std::thread::Builder::new()
                .name("webex-sim-accept".into())
                .spawn(move || server.run(stop, handle))?
        };
        Ok(Sim {
            inner,
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// `http://127.0.0.1:PORT` (where `/_sim/` lives).
    pub fn root_url(&self) -> String {
        self.inner.root_url().to_string()
    }

    pub fn credentials(&self) -> Credentials {
        self.inner.creds.clone()
    }

    pub fn options(&self) -> SimOptions {
        self.inner.opts.clone()
    }

    /// The simulator's notion of now (real time + `advance_clock` offset).
    pub fn now(&self) -> SystemTime {
        self.inner.lock().now()
    }

    /// A personal (developer-portal style) token with scope `spark:applications_token`.
    pub fn issue_personal_token(&self, ttl: Duration) -> String {
        self.inner.lock().issue(
            TokenKind::Personal,
            INTEGRATION_CLIENT_ID,
            &[
                APPLICATIONS_TOKEN_SCOPE.to_string(),
                "spark:kms".to_string(),
            ],
            ttl,
        )
    }

    /// A personal token without `spark:applications_token`: minting with it gives 403.
    pub fn issue_personal_token_without_scope(&self) -> String {
        let ttl = self.inner.opts.personal_ttl;
        self.inner.lock().issue(
            TokenKind::Personal,
            INTEGRATION_CLIENT_ID,
            &["spark:people_read".to_string(), "spark:kms".to_string()],
            ttl,
        )
    }

    /// A refresh token of the integration (scope `spark:applications_token`).
    pub fn issue_integration_refresh_token(&self, ttl: Duration) -> String {
        self.inner.lock().issue(
            TokenKind::IntegrationRefresh,
            INTEGRATION_CLIENT_ID,
            &[
                APPLICATIONS_TOKEN_SCOPE.to_string(),
                "spark:kms".to_string(),
            ],
            ttl,
        )
    }

    /// A service-app token pair `(access, refresh)`.
    /// A service-app token pair `(access, refresh)` of the first org.
    pub fn issue_service_tokens(
        &self,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> (String, String) {
        let mut st = self.inner.lock();
        Self::service_pair(&mut st, 0, access_ttl, refresh_ttl)
    }

    /// A service-app token pair `(access, refresh)` for an authorized org
    /// (`None` for an org the app is not authorized in).
    pub fn issue_service_tokens_in(
        &self,
        org_id: &str,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Option<(String, String)> {
        let mut st = self.inner.lock();
        let org = st.orgs.position(org_id)?;
        Some(Self::service_pair(&mut st, org, access_ttl, refresh_ttl))
    }

    fn service_pair(
        st: &mut State,
        org: usize,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> (String, String) {
        let scopes = wire::service_scopes();
        let a = st.issue_in(
            org,
            TokenKind::ServiceAccess,
            SERVICE_CLIENT_ID,
            &scopes,
            access_ttl,
        );
        let r = st.issue_in(
            org,
            TokenKind::ServiceRefresh,
            SERVICE_CLIENT_ID,
            &scopes,
            refresh_ttl,
        );
        (a, r)
    }

    /// A bot's access token, as a bot's page on developer.webex.com shows
    /// it: scope `spark:messages_write` (and the other bot scopes), valid
    /// for ten years. Every bot token is the same bot (`webex-token-sim@webex.bot`).
    pub fn issue_bot_token(&self) -> String {
        let scopes: Vec<&str> = messages::BOT_SCOPES.to_vec();
        self.issue_bot_token_with_scopes(&scopes)
    }

    /// A bot token with exactly these scopes (without
    /// `spark:messages_write`, posting answers 403).
    pub fn issue_bot_token_with_scopes(&self, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.inner.lock().issue(
            TokenKind::Bot,
            messages::BOT_CLIENT_ID,
            &scopes,
            Duration::from_secs(3650 * DAY),
        )
    }

    /// A fresh room id shaped like Webex's (the bot is taken to be a member
    /// of every well-formed room).
    pub fn new_room_id(&self) -> String {
        messages::new_room_id()
    }

    /// Every message posted, oldest first, as the API shows it plus
    /// `edits` (how many times it was edited) and `history` (every
    /// version's `text`, `markdown` and `at`, the posted one first).
    pub fn messages(&self) -> Vec<Value> {
        match self.inner.lock().messages.to_json() {
            Value::Object(mut o) => match o.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Deletes a message as a person in the room would; true if it existed.
    /// Editing it afterwards answers 404.
    pub fn delete_message(&self, id: &str) -> bool {
        self.inner.lock().messages.delete(id)
    }

    /// Makes a token (of any kind) expired now. Unknown tokens are ignored.
    pub fn expire_token(&self, token: &str) {
        self.inner.lock().expire_where(|t, _| t == token);
    }

    /// Expires every token of a kind; returns how many.
    pub fn expire_all(&self, kind: TokenKind) -> usize {
        self.inner.lock().expire_where(|_, r| r.kind == kind)
    }

    /// Revokes a token (of any kind). Unknown tokens are ignored.
    pub fn revoke_token(&self, token: &str) {
        if let Some(r) = self.inner.lock().tokens.get_mut(token) {
            r.revoked = true;
        }
    }

    /// What the simulator knows about a token.
    pub fn token_info(&self, token: &str) -> Option<TokenInfo> {
        let st = self.inner.lock();
        let now = st.now();
        st.tokens.get(token).map(|r| TokenInfo {
            kind: r.kind,
            client_id: r.client_id.clone(),
            scopes: r.scopes.clone(),
            issued_at: r.issued_at,
            expires_at: r.expires_at,
            revoked: r.revoked,
            expired: r.expires_at <= now,
            org_id: st.orgs.get(r.org).id.clone(),
        })
    }

    /// Exists, not revoked, not expired.
    pub fn is_token_valid(&self, token: &str) -> bool {
        self.inner.lock().live(token).is_some()
    }

    /// Moves the simulator's clock forward.
    pub fn advance_clock(&self, by: Duration) {
        self.inner.lock().clock_offset += by;
    }

    /// All recorded requests (oldest first).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().requests.clone()
    }

    /// Forgets the recorded requests (counts start again from zero).
    pub fn clear_requests(&self) {
        self.inner.lock().requests.clear();
    }

    /// Number of recorded requests with this method and exact path.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.inner
            .lock()
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .count()
    }

    /// Queues a fault; faults are matched in the order they were pushed.
    pub fn push_fault(&self, fault: Fault) {
        if fault.times > 0 {
            self.inner.lock().faults.push(fault);
        }
    }

    /// Drops all pending faults.
    pub fn clear_faults(&self) {
        self.inner.lock().faults.clear();
    }

    /// When true, `/v1/authorize` redirects with `error=access_denied`.
    pub fn set_authorize_denied(&self, denied: bool) {
        self.inner.lock().authorize_denied = denied;
    }

    /// When true, one line per request goes to stderr (token fingerprints only).
    pub fn set_log_requests(&self, on: bool) {
        self.inner.lock().log_requests = on;
    }

    /// Creates a data source owned by the service app in the first org; returns its id.
    pub fn add_data_source(&self, ds: NewDataSource) -> String {
        let mut st = self.inner.lock();
        st.new_data_source(0, &ds)
    }

    /// Creates a data source in an authorized org; returns its id (`None`
    /// for an unknown org).
    pub fn add_data_source_in(&self, org_id: &str, ds: NewDataSource) -> Option<String> {
        let mut st = self.inner.lock();
        let org = st.orgs.position(org_id)?;
        Some(st.new_data_source(org, &ds))
    }

    /// The data source (any org) as the API would return it.
    pub fn data_source(&self, id: &str) -> Option<Value> {
        let st = self.inner.lock();
        let (o, i) = st.orgs.find_data_source(id)?;
        let org = st.orgs.get(o);
        Some(datasources::ds_json(&self.inner, org, &org.data_sources[i]))
    }

    /// All data sources of all orgs (org by org, oldest first) as the API would return them.
    pub fn data_sources(&self) -> Vec<Value> {
        let st = self.inner.lock();
        st.orgs
            .iter()
            .flat_map(|org| {
                org.data_sources
                    .iter()
                    .map(|d| datasources::ds_json(&self.inner, org, d))
            })
            .collect()
    }

    /// One org's data sources (empty for an unknown org).
    pub fn data_sources_in(&self, org_id: &str) -> Vec<Value> {
        let st = self.inner.lock();
        let Some(o) = st.orgs.position(org_id) else {
            return Vec::new();
        };
        let org = st.orgs.get(o);
        org.data_sources
            .iter()
            .map(|d| datasources::ds_json(&self.inner, org, d))
            .collect()
    }

    /// The ids of the orgs the service app is authorized in, in order (the
    /// first is `credentials().target_org_id`).
    pub fn orgs(&self) -> Vec<String> {
        self.inner
            .lock()
            .orgs
            .iter()
            .map(|o| o.id.clone())
            .collect()
    }

    /// Authorizes the service app in `n` new orgs with random Webex-shaped
    /// ids; returns their ids.
    pub fn add_orgs(&self, n: usize) -> Vec<String> {
        let mut st = self.inner.lock();
        let added = st.add_random_orgs(n);
        added.iter().map(|&i| st.orgs.get(i).id.clone()).collect()
    }

    /// Authorizes the service app in this org (idempotent). Errors for an id
    /// not shaped like a Webex org id.
    pub fn add_org(&self, org_id: &str) -> Result<(), String> {
        self.inner.lock().orgs.add(org_id).map(|_| ())
    }

    /// Device grant: the user approves the pending request with this user
    /// code (`None`: the latest pending one). Returns the user code approved,
    /// `None` if there is no such pending, unexpired request.
    pub fn approve_device(&self, user_code: Option<&str>) -> Option<String> {
        let mut st = self.inner.lock();
        let now = st.now();
        st.devices.decide(user_code, now, true)
    }

    /// Device grant: the user denies (see [`Sim::approve_device`]).
    pub fn deny_device(&self, user_code: Option<&str>) -> Option<String> {
        let mut st = self.inner.lock();
        let now = st.now();
        st.devices.decide(user_code, now, false)
    }

    /// The `interval` announced to device-grant requests started from now on.
    pub fn set_device_interval(&self, interval: Duration) {
        self.inner.lock().device_interval = interval;
    }

    /// The life of device codes started from now on.
    pub fn set_device_code_ttl(&self, ttl: Duration) {
        self.inner.lock().device_code_ttl = ttl;
    }

    /// Sleep this long before answering every `/v1` request.
    pub fn set_latency(&self, latency: Duration) {
        self.inner.lock().latency = latency;
    }

    /// `GET /v1/dataSources` page size when the request has no `max` (min 1).
    pub fn set_page_size(&self, n: usize) {
        self.inner.lock().page_size = n.max(1);
    }

    /// `/v1` requests being handled right now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// The most `/v1` requests the simulator was handling at once (counted
    /// from arrival until just before the answer is written, so never more
    /// than the client really had in flight).
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// Starts the maximum again from the requests in flight now.
    pub fn reset_max_in_flight(&self) {
        self.inner.reset_max_in_flight();
    }

    /// Writes `DIR/token-config.json` (0600) for webex-token, pointing at this
    /// simulator, with a fresh personal token and integration refresh token,
    /// and creates two demo data sources in every org. With more than one
    /// org, `serviceApp.orgs` lists them all (`org1`, `org2`, …) besides
    /// `targetOrgId` (the first). Does not write a `.env`.
    pub fn write_demo_files(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let c = self.credentials();
        let pat = self.issue_personal_token(self.inner.opts.personal_ttl);
        let irt = self.issue_integration_refresh_token(self.inner.opts.integration_refresh_ttl);
        let orgs: Vec<Value> = self
            .inner
            .lock()
            .orgs
            .iter()
            .map(|o| json!({"name": o.name, "targetOrgId": o.id}))
            .collect();
        let mut config = json!({
            "apiBaseUrl": self.base_url(),
            "serviceApp": {
                "appId": c.app_id,
                "clientId": c.service_client_id,
                "clientSecret": c.service_client_secret,
                "targetOrgId": c.target_org_id,
            },
            "tokenManager": {
                "personalAccessToken": pat,
                "integration": {
                    "clientId": c.integration_client_id,
                    "clientSecret": c.integration_client_secret,
                    "refreshToken": irt,
                }
            }
        });
        if orgs.len() > 1 {
            config["serviceApp"]["orgs"] = Value::Array(orgs);
        }
        let mut text = serde_json::to_string_pretty(&config).map_err(io::Error::other)?;
        text.push('\n');
        write_private(&dir.join("token-config.json"), text.as_bytes())?;
        let weather = NewDataSource {
            audience: "byods-demo-provider".into(),
            subject: "demo-weather-feed".into(),
            url: "https://byods.example.com/api/v1/weather".into(),
            ..NewDataSource::default()
        };
        let crm = NewDataSource {
            audience: "byods-demo-provider".into(),
            subject: "demo-crm-feed".into(),
            url: "https://byods.example.com/api/v1/crm".into(),
            expires_in: Duration::from_secs(45 * 60),
            ..NewDataSource::default()
        };
        let mut st = self.inner.lock();
        for org in 0..st.orgs.len() {
            st.new_data_source(org, &weather);
            st.new_data_source(org, &crm);
        }
        Ok(())
    }
}

fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(data)?;
    f.sync_all()
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        http::Server::wake(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
