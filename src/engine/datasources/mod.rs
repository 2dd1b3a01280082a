//! BYODS data sources below the commands: the [`DataSource`] model, the
//! service-app session with its 401 rule ([`session`]), listing with paging
//! and renewing the tokens that are due ([`extend`]). `datasources
//! list|show|extend|register` and `watch --datasources` render what these
//! return; nothing here prints.
//!
//! A data source's `jwsToken` is a bearer credential that Webex presents to
//! the data provider. It is held as a [`SecretString`] from the moment a
//! response is parsed, and people only ever see its expiry and fingerprint.

pub mod extend;
pub mod session;

use crate::chain::{Action, Check, Policy};
use crate::clock;
use crate::config::Config;
use crate::engine::{self, Ctx};
use crate::error::{DsError, Error};
use crate::secret::{ExposeSecret, SecretString};
use crate::settings::{OrgTarget, Settings};
use crate::store::{LockScope, Snapshot, Store, StoreError, TokenStore};
use crate::tokens::{OrgId, RenewableUpdate, StoredTokens};
use crate::webex::{DataSourcesApi, HttpApi, MAX_PAGES, NextPage, Page};
use base64::Engine;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use session::{Renew, Renewed, Session};
use std::cell::RefCell;
use std::time::Duration;

/// How long the service-app token must still be valid before a data-source
/// call; the same default as `refresh`/`token`, so at most one refresh.
pub const SERVICE_TOKEN_MIN_VALID: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// The session: a working service-app token and the HTTP client

/// Renews the service-app token through the engine after Webex rejected it.
pub struct EngineRenew<'a> {
    settings: &'a Settings,
    command: &'static str,
    org: &'a OrgFiles,
}

/// The org a data-source command works on and its files.
pub struct OrgFiles {
    pub org: OrgId,
    pub store: Store,
}

impl OrgFiles {
    /// The one org of a command that needs exactly one (`show`, `register`,
    /// `extend`): the single org, or the one `--org` names.
    pub fn one(settings: &Settings, command: &str) -> Result<OrgFiles, Error> {
        let (org, store) = settings.one_org(command)?;
        Ok(OrgFiles { org, store })
    }

    /// The single org of a config without `serviceApp.orgs`.
    pub fn single(settings: &Settings) -> OrgFiles {
        OrgFiles {
            org: OrgId::configured(),
            store: settings.store(),
        }
    }
}

impl From<OrgTarget> for OrgFiles {
    fn from(t: OrgTarget) -> OrgFiles {
        OrgFiles {
            org: t.org,
            store: t.store,
        }
    }
}

impl Renew for EngineRenew<'_> {
    async fn renew_rejected(&self) -> Result<Renewed, Error> {
        // The 401 already told us the token is rejected: refresh without
        // asking Webex a second time (`force`).
        let policy = Policy {
            min_valid: SERVICE_TOKEN_MIN_VALID,
            force: true,
            mint: false,
            dry_run: false,
            check: Check::TrustExpiry,
        };
        let outcome = engine::ensure(
            &self.org.store,
            |c| self.settings.api(c),
            &policy,
            &self.org.org,
            &Ctx::of(self.settings, self.command, self.org.store.env_path()),
        )
        .await?;
        Ok(Renewed {
            refreshed: matches!(outcome.action, Action::Refreshed { .. }),
            token: outcome.tokens.access_token,
        })
    }
}

pub type Live<'a> = Session<HttpApi, EngineRenew<'a>>;

/// A store that keeps the config it last read, so the run reads the env
/// file and config once (the engine reads them again only to refresh).
struct Remembering<S> {
    inner: S,
    config: RefCell<Option<Config>>,
}

impl<S: TokenStore> TokenStore for Remembering<S> {
    type Guard = S::Guard;
    async fn lock(&self, scope: &LockScope, wait: Duration) -> Result<S::Guard, StoreError> {
        self.inner.lock(scope, wait).await
    }
    async fn load(&self, org: &OrgId) -> Result<Snapshot, StoreError> {
        let snap = self.inner.load(org).await?;
        *self.config.borrow_mut() = Some(snap.config.clone());
        Ok(snap)
    }
    async fn save_service(
        &self,
        guard: &S::Guard,
        org: &OrgId,
        tokens: &StoredTokens,
    ) -> Result<(), StoreError> {
        self.inner.save_service(guard, org, tokens).await
    }
    async fn save_renewable(
        &self,
        guard: &S::Guard,
        update: &RenewableUpdate,
    ) -> Result<(), StoreError> {
        self.inner.save_renewable(guard, update).await
    }
    async fn release(&self, guard: S::Guard) {
        self.inner.release(guard).await
    }
    async fn load_local(&self, org: &OrgId) -> Result<Snapshot, StoreError> {
        let snap = self.inner.load_local(org).await?;
        *self.config.borrow_mut() = Some(snap.config.clone());
        Ok(snap)
    }
}

/// A working service-app token (the stored one when its expiry is beyond
/// [`SERVICE_TOKEN_MIN_VALID`], else through the engine) and a client for
/// the API base the config names, taken from the config the engine read.
pub async fn open<'a>(
    settings: &'a Settings,
    org: &'a OrgFiles,
    command: &'static str,
    retries: bool,
) -> Result<Live<'a>, Error> {
    let store = Remembering {
        inner: org.store.clone(),
        config: RefCell::new(None),
    };
    let working = engine::working_tokens(
        &store,
        |c| settings.api(c),
        SERVICE_TOKEN_MIN_VALID,
        &org.org,
        &Ctx::of(settings, command, org.store.env_path()),
    )
    .await?;
    let config = store.config.into_inner();
    let mut http = settings.http(config.as_ref());
    if !retries {
        http.retry.max_attempts = 1;
    }
    let token = working
        .tokens
        .access_token
        .ok_or_else(|| Error::Other("no service-app access token after the refresh".into()))?;
    Ok(Session::new(
        HttpApi::new(http),
        EngineRenew {
            settings,
            command,
            org,
        },
        token,
        working.refreshed,
    ))
}

/// Every data source, following `Link: rel="next"` pages (at most
/// [`MAX_PAGES`], each on the API's own origin).
pub async fn list_all<A: DataSourcesApi, R: Renew>(
    s: &Session<A, R>,
) -> Result<Vec<DataSource>, Error> {
    let what = "GET /dataSources";
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    for page_no in 1..=MAX_PAGES {
        let page: Page = s
            .call(what, async |api: &A, t: &SecretString| {
                api.list_page(t, next.as_deref()).await
            })
            .await?;
        out.extend(parse_list(what, &page.body)?);
        match page.next {
            None => return Ok(out),
            Some(NextPage::Refused(why)) => {
                return Err(DsError::BadResponse {
                    what: format!("{what} (page {page_no})"),
                    why,
                }
                .into());
            }
            Some(NextPage::Url(u)) => {
                if !seen.insert(u.clone()) {
                    return Err(DsError::BadResponse {
                        what: format!("{what} (page {page_no})"),
                        why: "the next-page link repeats an earlier page; the listing would never end".into(),
                    }
                    .into());
                }
                next = Some(u);
            }
        }
    }
    Err(DsError::BadResponse {
        what: what.to_string(),
        why: format!("the listing goes on beyond {MAX_PAGES} pages; stopped there"),
    }
    .into())
}

pub async fn get_one<A: DataSourcesApi, R: Renew>(
    s: &Session<A, R>,
    id: &str,
) -> Result<DataSource, Error> {
    let what = format!("GET /dataSources/{}", shown(id));
    let body = s
        .call(&what, async |api: &A, t: &SecretString| {
            api.get(t, id).await
        })
        .await?;
    Ok(parse_source(&what, &body)?)
}

pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A server-supplied value as it may be shown on a terminal: control
/// characters (ESC sequences, newlines, carriage returns) are dropped, so a
/// data source cannot repaint the screen or forge lines of output.
pub fn shown(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

// ---------------------------------------------------------------------------
// The data source object

/// A data source as Webex returns it. Unknown fields are ignored; every
/// field but `id` may be missing (Webex is not uniform across versions).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    pub id: String,
    #[serde(default)]
    pub schema_id: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub token_lifetime_minutes: Option<u64>,
    /// Not in the spec's examples, but returned (Webex's own sample reads it).
    #[serde(default)]
    pub token_expiry_time: Option<Value>,
    #[serde(default, deserialize_with = "crate::secret::remembered_opt")]
    pub jws_token: Option<SecretString>,
    #[serde(default)]
    pub org_id: Option<String>,
    #[serde(default)]
    pub application_id: Option<String>,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Where a token expiry was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpirySource {
    TokenExpiryTime,
    Jws,
}

impl ExpirySource {
    pub fn name(self) -> &'static str {
        match self {
            ExpirySource::TokenExpiryTime => "tokenExpiryTime",
            ExpirySource::Jws => "jws",
        }
    }
}

impl DataSource {
    pub fn is_disabled(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("disabled"))
    }

    /// The token's expiry: `tokenExpiryTime` when present and readable, else
    /// the JWS payload's `exp`.
    pub fn token_expiry(&self) -> Option<(Timestamp, ExpirySource)> {
        if let Some(t) = self.token_expiry_time.as_ref().and_then(parse_expiry_value) {
            return Some((t, ExpirySource::TokenExpiryTime));
        }
        let claims = self.jws_token.as_ref().and_then(jws_claims)?;
        let exp = claims.get("exp").and_then(number_as_seconds)?;
        Some((Timestamp::from_second(exp).ok()?, ExpirySource::Jws))
    }

    /// A field a renewal must send back, taken from the object or, as the
    /// original tool did, from the token's claims.
    fn field(&self, name: &'static str) -> Result<String, DsError> {
        let (own, claim) = match name {
            "schemaId" => (&self.schema_id, "com.cisco.datasource.schema.uuid"),
            "url" => (&self.url, "com.cisco.datasource.url"),
            "audience" => (&self.audience, "aud"),
            "subject" => (&self.subject, "sub"),
            _ => unreachable!("only the four fields above are sent back"),
        };
        if let Some(v) = own.as_ref().filter(|v| !v.is_empty()) {
            return Ok(v.clone());
        }
        self.jws_token
            .as_ref()
            .and_then(jws_claims)
            .and_then(|c| match c.get(claim) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                // `aud` may be an array in JWTs in general.
                Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_string),
                _ => None,
            })
            .ok_or(DsError::MissingField {
                id: shown(&self.id),
                field: name,
            })
    }

    /// The `PUT /dataSources/{id}` body that renews the token and changes
    /// nothing else: the same schemaId, url, audience, subject and status,
    /// a fresh nonce and the lifetime. `errorMessage` is sent only for a
    /// disabled source, since Webex accepts `disabled` only together with
    /// one; sending it keeps the source disabled with its message.
    pub fn renewal_body(&self, nonce: &str, lifetime_minutes: u32) -> Result<Value, DsError> {
        let mut body = json!({
            "schemaId": self.field("schemaId")?,
            "url": self.field("url")?,
            "audience": self.field("audience")?,
            "subject": self.field("subject")?,
            "nonce": nonce,
            "tokenLifetimeMinutes": lifetime_minutes,
        });
        if let Some(status) = &self.status {
            body["status"] = json!(status);
        }
        if self.is_disabled()
            && let Some(m) = &self.error_message
        {
            body["errorMessage"] = json!(m);
        }
        Ok(body)
    }
}

/// The claims of a JWS, decoded without verifying the signature: we only
/// read its expiry (and, as a fallback, the fields it was issued for); the
/// data provider is the one that verifies it.
pub fn jws_claims(token: &SecretString) -> Option<serde_json::Map<String, Value>> {
    let payload = token.expose_secret().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn number_as_seconds(v: &Value) -> Option<i64> {
    let n = v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))?;
    // Epoch milliseconds are 13 digits until the year 2286.
    Some(if n > 100_000_000_000 { n / 1000 } else { n })
}

/// `tokenExpiryTime` as RFC 3339 (with or without an offset; without one
/// it is UTC) or as epoch seconds/milliseconds.
fn parse_expiry_value(v: &Value) -> Option<Timestamp> {
    match v {
        Value::String(s) => clock::parse(s).or_else(|| clock::parse(&format!("{}Z", s.trim()))),
        Value::Number(_) => Timestamp::from_second(number_as_seconds(v)?).ok(),
        _ => None,
    }
}

pub fn parse_source(what: &str, body: &[u8]) -> Result<DataSource, DsError> {
    serde_json::from_slice(body).map_err(|e| DsError::BadResponse {
        what: what.to_string(),
        // Never the body itself: it holds a token.
        why: format!(
            "the answer is not a data source (line {}, column {})",
            e.line(),
            e.column()
        ),
    })
}

pub fn parse_list(what: &str, body: &[u8]) -> Result<Vec<DataSource>, DsError> {
    #[derive(Deserialize)]
    struct List {
        items: Vec<Value>,
    }
    let list: List = serde_json::from_slice(body).map_err(|_| DsError::BadResponse {
        what: what.to_string(),
        why: "the answer is not a list of data sources (`{\"items\": [...]}`)".into(),
    })?;
    let mut out = Vec::new();
    for (i, item) in list.items.into_iter().enumerate() {
        match serde_json::from_value::<DataSource>(item) {
            Ok(ds) => out.push(ds),
            Err(e) => tracing::warn!("{what}: item {i} is not a data source ({e}); left out"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::secret;
    use crate::webex::ApiError;

    fn b64(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn jws(claims: Value) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(&json!({"alg": "RS256", "kid": "k"})),
            b64(&claims)
        )
    }

    fn source(v: Value) -> DataSource {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn expiry_from_token_expiry_time_or_jws() {
        let token = jws(json!({"exp": 1_800_000_000, "aud": "a", "sub": "s"}));
        let d = source(json!({"id": "x", "jwsToken": token}));
        assert_eq!(
            d.token_expiry(),
            Some((
                Timestamp::from_second(1_800_000_000).unwrap(),
                ExpirySource::Jws
            ))
        );
        let d = source(json!({
            "id": "x", "jwsToken": token, "tokenExpiryTime": "2027-01-02T03:04:05.000Z"
        }));
        let (t, src) = d.token_expiry().unwrap();
        assert_eq!(src, ExpirySource::TokenExpiryTime);
        assert_eq!(clock::format_utc(t), "2027-01-02T03:04:05Z");
        // Without an offset it is UTC; numbers are epoch seconds or millis.
        for v in [
            json!("2027-01-02T03:04:05"),
            json!(1_798_859_045),
            json!(1_798_859_045_000u64),
        ] {
            let d = source(json!({"id": "x", "tokenExpiryTime": v}));
            assert_eq!(
                clock::format_utc(d.token_expiry().unwrap().0),
                "2027-01-02T03:04:05Z"
            );
        }
        // Garbage: unknown, never a panic.
        for t in [
            "",
            "abc",
            "a.b.c",
            "a.!!!.c",
            &format!("a.{}.c", b64(&json!([1]))),
        ] {
            let d = source(json!({"id": "x", "jwsToken": t}));
            assert_eq!(d.token_expiry(), None, "{t}");
        }
        assert!(jws_claims(&secret(token)).is_some());
    }

    #[test]
    fn renewal_body_keeps_fields_and_adds_nonce() {
        let d = source(json!({
            "id": "x", "schemaId": "schema", "url": "https://u", "audience": "aud",
            "subject": "sub", "status": "active", "errorMessage": "old", "nonce": "n0",
            "tokenLifetimeMinutes": "60", "jwsToken": "h.p.s",
        }));
        assert_eq!(d.token_lifetime_minutes, Some(60));
        let b = d.renewal_body("n1", 1440).unwrap();
        assert_eq!(
            b,
            json!({
                "schemaId": "schema", "url": "https://u", "audience": "aud", "subject": "sub",
                "nonce": "n1", "tokenLifetimeMinutes": 1440, "status": "active",
            })
        );
        let d = source(json!({
            "id": "x", "schemaId": "schema", "url": "https://u", "audience": "aud",
            "subject": "sub", "status": "disabled", "errorMessage": "down",
        }));
        assert_eq!(d.renewal_body("n", 5).unwrap()["errorMessage"], "down");
    }

    #[test]
    fn missing_fields_come_from_the_token_claims() {
        let token = jws(json!({
            "aud": ["from-aud"], "sub": "from-sub",
            "com.cisco.datasource.url": "https://claim",
            "com.cisco.datasource.schema.uuid": "schema-claim",
        }));
        let d = source(json!({"id": "x", "jwsToken": token, "url": ""}));
        let b = d.renewal_body("n", 60).unwrap();
        assert_eq!(b["audience"], "from-aud");
        assert_eq!(b["subject"], "from-sub");
        assert_eq!(b["url"], "https://claim");
        assert_eq!(b["schemaId"], "schema-claim");
        let bare = source(json!({"id": "x"}));
        let e = bare.renewal_body("n", 60).unwrap_err();
        assert!(matches!(
            e,
            DsError::MissingField {
                field: "schemaId",
                ..
            }
        ));
        assert_eq!(Error::from(e).exit_code(), 3);
    }

    #[test]
    fn list_skips_malformed_items() {
        let l = parse_list("GET", br#"{"items":[{"id":"a"},{"noid":1},{"id":"b"}]}"#).unwrap();
        assert_eq!(l.len(), 2);
        assert!(parse_list("GET", b"[]").is_err());
        let e = parse_source("PUT", br#"{"jwsToken":"SECRETJWS""#).unwrap_err();
        assert!(!e.to_string().contains("SECRETJWS"));
    }

    /// Links on to a new page forever (or `pages` times); counts calls.
    struct Endless {
        pages: usize,
        calls: std::cell::Cell<usize>,
    }

    impl DataSourcesApi for Endless {
        async fn list_page(&self, _: &SecretString, next: Option<&str>) -> Result<Page, ApiError> {
            let n = self.calls.get();
            self.calls.set(n + 1);
            assert_eq!(next.is_none(), n == 0);
            Ok(Page {
                body: format!(r#"{{"items":[{{"id":"ds-{n}"}}]}}"#).into_bytes(),
                next: (n + 1 < self.pages)
                    .then(|| NextPage::Url(format!("http://h/v1/p{}", n + 1))),
            })
        }
        async fn get(&self, _: &SecretString, _: &str) -> Result<Vec<u8>, ApiError> {
            unreachable!()
        }
        async fn put(
            &self,
            _: &SecretString,
            _: &str,
            _: &dyn Fn() -> Value,
        ) -> Result<Vec<u8>, ApiError> {
            unreachable!()
        }
        async fn register(&self, _: &SecretString, _: &Value) -> Result<Vec<u8>, ApiError> {
            unreachable!()
        }
    }

    struct NoRenew;
    impl Renew for NoRenew {
        async fn renew_rejected(&self) -> Result<Renewed, Error> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn listing_follows_pages_and_stops_at_the_cap() {
        let api = |pages| Endless {
            pages,
            calls: std::cell::Cell::new(0),
        };
        let s = Session::new(api(3), NoRenew, secret("t"), false);
        let all = list_all(&s).await.unwrap();
        assert_eq!(
            all.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["ds-0", "ds-1", "ds-2"]
        );
        let s = Session::new(api(usize::MAX), NoRenew, secret("t"), false);
        let e = list_all(&s).await.unwrap_err();
        assert!(e.to_string().contains("beyond 1000 pages"), "{e}");
        assert_eq!(s.api.calls.get(), MAX_PAGES);
    }

    #[test]
    fn exit_codes() {
        use crate::webex::{ErrorBody, TransientReason};
        let api = |status| DsError::Api {
            what: "PUT".into(),
            error: crate::webex::classify(status, ErrorBody::default()).unwrap_or_else(|(r, b)| {
                ApiError::Transient {
                    reason: r,
                    body: Some(b),
                    attempts: 4,
                }
            }),
        };
        assert_eq!(Error::from(api(404)).exit_code(), 3);
        assert_eq!(Error::from(api(403)).exit_code(), 3);
        assert_eq!(Error::from(api(500)).exit_code(), 1);
        assert_eq!(Error::from(api(429)).exit_code(), 1);
        let rejected = DsError::TokenRejected {
            what: "GET".into(),
            error: ApiError::Transient {
                reason: TransientReason::Timeout,
                body: None,
                attempts: 1,
            },
            refreshed: true,
        };
        assert_eq!(Error::from(rejected).exit_code(), 4);
        assert_eq!(Error::DataSource(api(404)).exit_code(), 3);
    }
}
