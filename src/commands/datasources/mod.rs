//! BYODS data sources: list and show them, renew their tokens, register new
//! ones (`webex-token datasources …`).
//!
//! Every call uses the service-app access token the refresh chain keeps in
//! the env file. The command first makes sure that token works (the same
//! path as `token`/`exec`: trust a stored expiry more than an hour away,
//! otherwise refresh once through the chain), so one invocation per timer
//! tick both keeps the service-app token fresh and rolls the data-source
//! tokens. If Webex still answers 401 to a data-source call although the
//! stored expiry said the token was good (revoked, rotated by hand), the token
//! is checked and refreshed once, and the call retried; a second 401 is
//! reported as "re-authorization required" (exit 4).
//!
//! A data source's `jwsToken` is a bearer credential that Webex presents to
//! the data provider. It is held as a [`SecretString`] from the moment a
//! response is parsed, and people only ever see its expiry and fingerprint.
//!
//! This module owns the data-source requests and their output; HTTP retries
//! and error classification stay in [`crate::webex`], exit codes in
//! [`crate::error`].

use crate::audit;
use crate::chain::{Check, Policy};
use crate::cli::{DatasourcesArgs, DatasourcesCommand, DsExtendArgs, DsRegisterArgs};
use crate::clock;
use crate::config::Config;
use crate::engine;
use crate::error::{DsError, Error};
use crate::output::{self, Printer, SCHEMA_VERSION};
use crate::secret::{ExposeSecret, SecretString, fingerprint};
use crate::settings::Settings;
use crate::tokens::OrgId;
use crate::webex::{ApiError, HttpApi, urlencode_path};
use base64::Engine;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::time::Duration;

/// How long the service-app token must still be valid before a data-source
/// call; the same default as `refresh`/`token`, so at most one refresh.
pub const SERVICE_TOKEN_MIN_VALID: Duration = Duration::from_secs(3600);

/// Runs a `datasources` subcommand; returns the exit code.
pub async fn run(settings: &Settings, printer: &Printer, a: &DatasourcesArgs) -> Result<u8, Error> {
    let name = a.command.name();
    match &a.command {
        DatasourcesCommand::List => list(settings, printer, name).await,
        DatasourcesCommand::Show(s) => show(settings, printer, name, &s.id).await,
        DatasourcesCommand::Extend(e) => extend(settings, printer, name, e).await,
        DatasourcesCommand::Register(r) => register(settings, printer, name, r).await,
    }
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
    #[serde(default)]
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
    fn name(self) -> &'static str {
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
                id: self.id.clone(),
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

    /// The `--json` view: every field but the token, which appears as
    /// fingerprint and expiry only.
    pub fn to_json(&self, now: Timestamp) -> Value {
        let expiry = self.token_expiry();
        let mut token = output::token_json(self.jws_token.as_ref(), expiry.map(|e| e.0), now);
        token["expirySource"] = json!(expiry.map(|e| e.1.name()));
        json!({
            "id": self.id,
            "schemaId": self.schema_id,
            "url": self.url,
            "audience": self.audience,
            "subject": self.subject,
            "status": self.status,
            "errorMessage": self.error_message,
            "tokenLifetimeMinutes": self.token_lifetime_minutes,
            "nonce": self.nonce,
            "orgId": self.org_id,
            "applicationId": self.application_id,
            "createdBy": self.created_by,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "token": token,
        })
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

fn parse_source(what: &str, body: &[u8]) -> Result<DataSource, DsError> {
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

fn parse_list(what: &str, body: &[u8]) -> Result<Vec<DataSource>, DsError> {
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

// ---------------------------------------------------------------------------
// Calls with the service-app token

/// The service-app token and an HTTP client, with the one-refresh-on-401 rule.
struct Session<'a> {
    settings: &'a Settings,
    command: &'static str,
    api: HttpApi,
    token: SecretString,
    /// The chain refreshed the token in this run (up front or after a 401).
    refreshed: bool,
    /// A 401 was already answered with a check-and-refresh.
    recovered: bool,
}

impl<'a> Session<'a> {
    async fn open(
        settings: &'a Settings,
        command: &'static str,
        retries: bool,
    ) -> Result<Session<'a>, Error> {
        let working = engine::working_tokens(
            &settings.files_store(),
            |c| settings.api(c),
            SERVICE_TOKEN_MIN_VALID,
            &OrgId::configured(),
            &super::ctx(settings, command),
        )
        .await?;
        let config = Config::load(&settings.config_path)?;
        let mut http = settings.http(Some(&config));
        if !retries {
            http.retry.max_attempts = 1;
        }
        let token = working
            .tokens
            .access_token
            .ok_or_else(|| Error::Other("no service-app access token after the refresh".into()))?;
        Ok(Session {
            settings,
            command,
            api: HttpApi::new(http),
            token,
            refreshed: working.refreshed,
            recovered: false,
        })
    }

    /// Sends a request with the token; on a 401 checks the token with Webex
    /// and refreshes it once (unless that was done already), then retries.
    async fn call<F>(&mut self, what: &str, make: F) -> Result<Vec<u8>, Error>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        loop {
            let token = self.token.clone();
            let result = self
                .api
                .send(what, |c| {
                    make(c)
                        .bearer_auth(token.expose_secret())
                        .header("accept", "application/json")
                })
                .await;
            match result {
                Ok(body) => return Ok(body),
                Err(error @ ApiError::Rejected { .. }) if !self.recovered => {
                    tracing::warn!(
                        "{what}: Webex rejected the service-app access token ({error}); checking it and refreshing once"
                    );
                    self.recovered = true;
                    let policy = Policy {
                        min_valid: SERVICE_TOKEN_MIN_VALID,
                        force: false,
                        mint: false,
                        dry_run: false,
                        check: Check::Validate,
                    };
                    let outcome = engine::ensure(
                        &self.settings.files_store(),
                        |c| self.settings.api(c),
                        &policy,
                        &OrgId::configured(),
                        &super::ctx(self.settings, self.command),
                    )
                    .await?;
                    if matches!(outcome.action, crate::chain::Action::Refreshed { .. }) {
                        self.refreshed = true;
                    }
                    if let Some(t) = outcome.tokens.access_token {
                        self.token = t;
                    }
                }
                Err(error @ ApiError::Rejected { .. }) => {
                    return Err(Error::DataSource(DsError::TokenRejected {
                        what: what.to_string(),
                        error,
                        refreshed: self.refreshed,
                    }));
                }
                Err(error) => {
                    return Err(Error::DataSource(DsError::Api {
                        what: what.to_string(),
                        error,
                    }));
                }
            }
        }
    }

    async fn get_one(&mut self, id: &str) -> Result<DataSource, Error> {
        let url = self
            .api
            .url(&format!("/dataSources/{}", urlencode_path(id)));
        let what = format!("GET /dataSources/{id}");
        let body = self.call(&what, |c| c.get(&url)).await?;
        Ok(parse_source(&what, &body)?)
    }

    async fn list(&mut self) -> Result<Vec<DataSource>, Error> {
        let url = self.api.url("/dataSources");
        let what = "GET /dataSources";
        let body = self.call(what, |c| c.get(&url)).await?;
        Ok(parse_list(what, &body)?)
    }
}

fn new_nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

// ---------------------------------------------------------------------------
// list / show

async fn list(settings: &Settings, printer: &Printer, name: &'static str) -> Result<u8, Error> {
    let mut s = Session::open(settings, name, true).await?;
    let sources = s.list().await?;
    let now = clock::now();
    let disabled = sources.iter().filter(|d| d.is_disabled()).count();
    let json_value = json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": name,
        "ok": true,
        "count": sources.len(),
        "disabled": disabled,
        "dataSources": sources.iter().map(|d| d.to_json(now)).collect::<Vec<_>>(),
    });
    let mut human = match (sources.len(), disabled) {
        (0, _) => "no data sources are registered for this service app".to_string(),
        (1, 0) => "1 data source".to_string(),
        (n, 0) => format!("{n} data sources"),
        (n, d) => format!(
            "{n} data source{}, {}",
            if n == 1 { "" } else { "s" },
            printer.paint("1;31", &format!("{d} disabled"))
        ),
    };
    for d in &sources {
        human.push_str("\n\n");
        human.push_str(&human_block(printer, d, now, false));
    }
    printer.report(&json_value, &human);
    Ok(0)
}

async fn show(
    settings: &Settings,
    printer: &Printer,
    name: &'static str,
    id: &str,
) -> Result<u8, Error> {
    let mut s = Session::open(settings, name, true).await?;
    let d = s.get_one(id).await?;
    let now = clock::now();
    let mut v = json!({"schemaVersion": SCHEMA_VERSION, "command": name, "ok": true});
    v["dataSource"] = d.to_json(now);
    printer.report(&v, &human_block(printer, &d, now, true));
    Ok(0)
}

/// One data source as text: the id, then indented fields.
fn human_block(p: &Printer, d: &DataSource, now: Timestamp, full: bool) -> String {
    let mut lines = vec![p.paint("1", &d.id)];
    // Values start two columns after the longest label of the block.
    let width = if full {
        "expiry from".len()
    } else {
        "lifetime".len()
    } + 2;
    let mut row = |k: &str, v: String| lines.push(format!("  {k:<width$}{v}"));
    let status = match (d.status.as_deref(), d.is_disabled()) {
        (_, true) => {
            let msg = d
                .error_message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            p.paint("1;31", &format!("DISABLED{msg}"))
        }
        (Some(s), false) => p.paint("32", s),
        (None, false) => "unknown".into(),
    };
    row("status", status);
    let expiry = d.token_expiry();
    let mut token = match expiry {
        Some((t, _)) if t <= now => p.paint("31", &output::expiry_text(Some(t), now)),
        Some((t, _)) => output::expiry_text(Some(t), now),
        None if d.jws_token.is_none() => "none".into(),
        None => "expiry unknown".into(),
    };
    if let Some(j) = &d.jws_token {
        token.push_str(&format!("  {}", fingerprint(j)));
    }
    row("token", token);
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    row(
        "lifetime",
        d.token_lifetime_minutes
            .map(|m| format!("{m} min"))
            .unwrap_or_else(|| "-".into()),
    );
    row("schema", opt(&d.schema_id));
    row("url", opt(&d.url));
    row("audience", opt(&d.audience));
    row("subject", opt(&d.subject));
    if full {
        row(
            "expiry from",
            expiry.map_or("-".into(), |e| e.1.name().to_string()),
        );
        row("nonce", opt(&d.nonce));
        row("org", opt(&d.org_id));
        row("app", opt(&d.application_id));
        row(
            "created",
            format!("{} by {}", opt(&d.created_at), opt(&d.created_by)),
        );
        row("updated", opt(&d.updated_at));
    }
    lines.join("\n")
}

// ---------------------------------------------------------------------------
// extend

/// What happened to one data source in `extend`.
enum Fate {
    Skipped {
        expires: Timestamp,
    },
    WouldExtend {
        expires: Option<Timestamp>,
    },
    Extended {
        before: Option<Timestamp>,
        after: Option<Timestamp>,
        nonce: String,
        jws: Option<String>,
    },
    Failed(Error),
    /// Not tried: the service-app token stopped working on an earlier one.
    NotAttempted,
}

async fn extend(
    settings: &Settings,
    printer: &Printer,
    name: &'static str,
    a: &DsExtendArgs,
) -> Result<u8, Error> {
    let mut s = Session::open(settings, name, true).await?;
    let now = clock::now();
    let threshold = clock::after(now, a.min_valid.as_secs());
    // Only a standing job (`--all`, run by a timer) is worth warning about;
    // `ID --min-valid 1d` is the documented way to renew now, once.
    if a.all && u64::from(a.lifetime) * 60 <= a.min_valid.as_secs() {
        tracing::warn!(
            "--lifetime {} min is not longer than --min-valid {}: every run renews every token",
            a.lifetime,
            clock::human_span(a.min_valid.as_secs())
        );
    }

    // The sources to look at: `--all` takes the list's items as they are
    // (one GET in all); named ids are fetched one by one, so a wrong id is
    // a failure of that id only.
    // `None`: not fetched, because the service-app token stopped working.
    let mut chosen: Vec<(String, Option<Result<DataSource, Error>>)> = Vec::new();
    if a.all {
        for d in s.list().await? {
            chosen.push((d.id.clone(), Some(Ok(d))));
        }
    } else {
        let mut seen = std::collections::HashSet::new();
        let mut token_dead = false;
        for id in a.ids.iter().filter(|id| seen.insert(id.as_str())) {
            if token_dead {
                chosen.push((id.clone(), None));
                continue;
            }
            let got = s.get_one(id).await;
            token_dead = got.as_ref().is_err_and(stops_the_run);
            chosen.push((id.clone(), Some(got)));
        }
    }

    let mut results: Vec<(String, Fate)> = Vec::new();
    let mut stop = false;
    for (id, got) in chosen {
        let d = match got {
            _ if stop => {
                results.push((id, Fate::NotAttempted));
                continue;
            }
            None => {
                results.push((id, Fate::NotAttempted));
                continue;
            }
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                stop = stops_the_run(&e);
                results.push((id, Fate::Failed(e)));
                continue;
            }
        };
        let expires = d.token_expiry().map(|e| e.0);
        // An unknown expiry is renewed: better one needless PUT than a
        // token that lapses unseen.
        if let Some(t) = expires.filter(|t| *t > threshold) {
            tracing::debug!(
                "data source {id}: token expires {}; skipped",
                clock::format_utc(t)
            );
            results.push((id, Fate::Skipped { expires: t }));
            continue;
        }
        if a.dry_run {
            results.push((id, Fate::WouldExtend { expires }));
            continue;
        }
        let fate = match renew(&mut s, &d, a.lifetime).await {
            Ok((after, nonce, jws)) => {
                audit_extension(
                    settings,
                    name,
                    &d,
                    expires,
                    Ok((after, &nonce, jws.as_deref())),
                    a.lifetime,
                );
                Fate::Extended {
                    before: expires,
                    after,
                    nonce,
                    jws,
                }
            }
            Err((e, nonce)) => {
                audit_extension(
                    settings,
                    name,
                    &d,
                    expires,
                    Err((&e, nonce.as_deref())),
                    a.lifetime,
                );
                stop = stops_the_run(&e);
                Fate::Failed(e)
            }
        };
        results.push((id, fate));
    }

    let now = clock::now();
    let code = results
        .iter()
        .map(|(_, f)| match f {
            Fate::Failed(e) => e.exit_code(),
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    report_extend(printer, name, a, &results, s.refreshed, code, now);
    Ok(code)
}

/// Errors after which the remaining sources are not tried: the service-app
/// token does not work, so every further call would fail the same way.
fn stops_the_run(e: &Error) -> bool {
    matches!(
        e,
        Error::DataSource(DsError::TokenRejected { .. }) | Error::Chain(_)
    )
}

/// PUTs one data source back with a fresh nonce. Returns the new expiry,
/// the nonce that was accepted and the new token's fingerprint.
async fn renew(
    s: &mut Session<'_>,
    d: &DataSource,
    lifetime: u32,
) -> Result<(Option<Timestamp>, String, Option<String>), (Error, Option<String>)> {
    // Check the body can be built before sending anything.
    d.renewal_body(&new_nonce(), lifetime)
        .map_err(|e| (Error::DataSource(e), None))?;
    let url = s
        .api
        .url(&format!("/dataSources/{}", urlencode_path(&d.id)));
    let what = format!("PUT /dataSources/{}", d.id);
    // A fresh nonce for every try: if a try timed out after Webex had
    // applied it, resending the same nonce could be refused as a replay and
    // a renewal that worked would be reported as failed.
    let last_nonce = RefCell::new(String::new());
    let sent = s
        .call(&what, |c| {
            let nonce = new_nonce();
            let body = d
                .renewal_body(&nonce, lifetime)
                .expect("checked above; the fields do not change");
            *last_nonce.borrow_mut() = nonce;
            c.put(&url).json(&body)
        })
        .await;
    let nonce = last_nonce.into_inner();
    let body = sent.map_err(|e| (e, Some(nonce.clone())))?;
    // The PUT succeeded; an answer we cannot read does not undo that.
    match parse_source(&what, &body) {
        Ok(new) => Ok((
            new.token_expiry().map(|e| e.0),
            nonce,
            new.jws_token.as_ref().map(fingerprint),
        )),
        Err(e) => {
            tracing::warn!("{e}; the renewal was accepted, but its new expiry is unknown");
            Ok((None, nonce, None))
        }
    }
}

type Attempted<'a> =
    Result<(Option<Timestamp>, &'a str, Option<&'a str>), (&'a Error, Option<&'a str>)>;

/// One audit line per renewal attempt: the nonce is not secret, the new
/// token appears as a fingerprint only.
fn audit_extension(
    settings: &Settings,
    command: &str,
    d: &DataSource,
    before: Option<Timestamp>,
    result: Attempted<'_>,
    lifetime: u32,
) {
    let Some(path) = &settings.audit_log else {
        return;
    };
    let mut line = json!({
        "command": command,
        "operation": "datasource_extend",
        "dataSourceId": d.id,
        "tokenLifetimeMinutes": lifetime,
        "previousExpiresAt": before.map(clock::format_utc),
    });
    match result {
        Ok((after, nonce, jws)) => {
            line["outcome"] = json!("ok");
            line["nonce"] = json!(nonce);
            line["tokenExpiresAt"] = json!(after.map(clock::format_utc));
            line["jwsTokenFingerprint"] = json!(jws);
        }
        Err((e, nonce)) => {
            line["outcome"] = json!("failed");
            line["nonce"] = json!(nonce);
            line["exitCode"] = json!(e.exit_code());
            line["error"] = json!(e.to_string());
            if let Error::DataSource(ds) = e
                && let Some(api) = ds.api_error()
            {
                line["httpStatus"] = json!(api.status());
                line["trackingId"] = json!(api.tracking_id());
            }
        }
    }
    audit::append(path, line);
}

fn error_json(e: &Error) -> Value {
    let api = match e {
        Error::DataSource(ds) => ds.api_error(),
        _ => None,
    };
    json!({
        "kind": e.kind(),
        "exitCode": e.exit_code(),
        "message": e.to_string(),
        "httpStatus": api.and_then(ApiError::status),
        "trackingId": api.and_then(ApiError::tracking_id),
        "hint": e.hint(),
    })
}

fn report_extend(
    printer: &Printer,
    name: &'static str,
    a: &DsExtendArgs,
    results: &[(String, Fate)],
    refreshed: bool,
    code: u8,
    now: Timestamp,
) {
    let count = |f: fn(&Fate) -> bool| results.iter().filter(|(_, x)| f(x)).count();
    let extended = count(|f| matches!(f, Fate::Extended { .. }));
    let skipped = count(|f| matches!(f, Fate::Skipped { .. }));
    let would = count(|f| matches!(f, Fate::WouldExtend { .. }));
    let failed = count(|f| matches!(f, Fate::Failed(_)));
    let not_tried = count(|f| matches!(f, Fate::NotAttempted));
    let at = |t: Option<Timestamp>| {
        json!({
            "expiresAt": t.map(clock::format_utc),
            "secondsLeft": t.map(|t| clock::seconds_until(now, t)),
        })
    };
    let items: Vec<Value> = results
        .iter()
        .map(|(id, f)| match f {
            Fate::Skipped { expires } => json!({
                "id": id, "action": "skipped", "before": at(Some(*expires)),
            }),
            Fate::WouldExtend { expires } => json!({
                "id": id, "action": "would_extend", "before": at(*expires),
            }),
            Fate::Extended {
                before,
                after,
                nonce,
                jws,
            } => json!({
                "id": id, "action": "extended", "before": at(*before),
                "after": at(*after), "nonce": nonce, "jwsTokenFingerprint": jws,
            }),
            Fate::Failed(e) => json!({"id": id, "action": "failed", "error": error_json(e)}),
            Fate::NotAttempted => json!({"id": id, "action": "not_attempted"}),
        })
        .collect();
    let v = json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": name,
        "ok": code == 0,
        "exitCode": code,
        "dryRun": a.dry_run,
        "minValidSeconds": a.min_valid.as_secs(),
        "lifetimeMinutes": a.lifetime,
        "serviceAppTokenRefreshed": refreshed,
        "summary": {
            "extended": extended, "skipped": skipped, "wouldExtend": would,
            "failed": failed, "notAttempted": not_tried,
        },
        "results": items,
    });

    // Pad before painting, so escape codes do not upset the columns.
    let label = |colour: Option<&str>, text: &str| {
        let padded = format!("{text:<11}");
        colour.map_or(padded.clone(), |c| printer.paint(c, &padded))
    };
    let mut human = Vec::new();
    if refreshed {
        human.push("the service-app access token was refreshed first".to_string());
    }
    for (id, f) in results {
        human.push(match f {
            Fate::Skipped { expires } => format!(
                "{} {id}  {} (beyond --min-valid {})",
                label(None, "skipped"),
                output::expiry_text(Some(*expires), now),
                clock::human_span(a.min_valid.as_secs())
            ),
            Fate::WouldExtend { expires } => format!(
                "{} {id}  {}",
                label(Some("33"), "would renew"),
                output::expiry_text(*expires, now)
            ),
            Fate::Extended { after, .. } => format!(
                "{} {id}  {}",
                label(Some("32"), "renewed"),
                match after {
                    Some(_) => output::expiry_text(*after, now),
                    None => "new expiry not reported".into(),
                }
            ),
            Fate::Failed(e) => format!("{} {id}  {e}", label(Some("1;31"), "failed")),
            Fate::NotAttempted => format!(
                "{} {id}  (the service-app token stopped working)",
                label(Some("31"), "not tried")
            ),
        });
    }
    let mut summary = if a.dry_run {
        format!("dry run: {would} would be renewed, {skipped} skipped; nothing was sent")
    } else {
        format!("{extended} renewed, {skipped} skipped")
    };
    if failed > 0 {
        summary.push_str(&format!(", {failed} failed"));
    }
    if not_tried > 0 {
        summary.push_str(&format!(", {not_tried} not tried"));
    }
    if results.is_empty() {
        summary = "no data sources are registered for this service app".into();
    }
    human.push(summary);
    printer.report(&v, &human.join("\n"));

    // Failures also go to stderr, so `-q` in cron still says what broke.
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} data source{} could not be renewed",
            results.len(),
            if results.len() == 1 { "" } else { "s" }
        );
        let mut hints = Vec::new();
        for (id, f) in results {
            if let Fate::Failed(e) = f {
                eprintln!("  {id}: {e}");
                if let Some(h) = e.hint()
                    && !hints.contains(&h)
                {
                    hints.push(h);
                }
            }
        }
        for h in hints {
            eprintln!("hint: {h}");
        }
    }
}

// ---------------------------------------------------------------------------
// register

async fn register(
    settings: &Settings,
    printer: &Printer,
    name: &'static str,
    r: &DsRegisterArgs,
) -> Result<u8, Error> {
    // No retries: a POST that timed out may have registered the source, and
    // a second one would register it twice.
    let mut s = Session::open(settings, name, false).await?;
    let url = s.api.url("/dataSources");
    let nonce = new_nonce();
    let body = json!({
        "schemaId": r.schema_id,
        "url": r.url,
        "audience": r.audience,
        "subject": r.subject,
        "nonce": nonce,
        "tokenLifetimeMinutes": r.lifetime,
    });
    let what = "POST /dataSources";
    let result = s.call(what, |c| c.post(&url).json(&body)).await;
    let audit_line = |outcome: &str, d: Option<&DataSource>, e: Option<&Error>| {
        if let Some(path) = &settings.audit_log {
            audit::append(
                path,
                json!({
                    "command": name,
                    "operation": "datasource_register",
                    "outcome": outcome,
                    "dataSourceId": d.map(|d| d.id.clone()),
                    "schemaId": r.schema_id,
                    "url": r.url,
                    "nonce": nonce,
                    "tokenLifetimeMinutes": r.lifetime,
                    "tokenExpiresAt": d.and_then(|d| d.token_expiry()).map(|e| clock::format_utc(e.0)),
                    "jwsTokenFingerprint": d.and_then(|d| d.jws_token.as_ref()).map(fingerprint),
                    "error": e.map(|e| e.to_string()),
                }),
            );
        }
    };
    let body = match result {
        Ok(b) => b,
        Err(e) => {
            audit_line("failed", None, Some(&e));
            return Err(e);
        }
    };
    let d = parse_source(what, &body).inspect_err(|e| {
        tracing::warn!("{e}; the data source was registered, but its answer cannot be shown")
    })?;
    audit_line("ok", Some(&d), None);
    let now = clock::now();
    let mut v = json!({"schemaVersion": SCHEMA_VERSION, "command": name, "ok": true});
    v["dataSource"] = d.to_json(now);
    let human = format!(
        "{} registered data source {}; token {}\n\n{}",
        printer.paint("32", "ok:"),
        d.id,
        output::expiry_text(d.token_expiry().map(|e| e.0), now),
        human_block(printer, &d, now, true)
    );
    printer.report(&v, &human);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::secret;

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
    fn json_view_never_holds_the_token() {
        let token = jws(json!({"exp": 1_800_000_000}));
        let d = source(json!({"id": "x", "jwsToken": token, "status": "active"}));
        let v = d.to_json(Timestamp::from_second(1_799_999_000).unwrap());
        let text = v.to_string();
        assert!(!text.contains(&token));
        assert_eq!(v["token"]["secondsLeft"], 1000);
        assert_eq!(v["token"]["expirySource"], "jws");
        assert!(
            v["token"]["fingerprint"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert!(!format!("{d:?}").contains(&token));
    }

    #[test]
    fn list_skips_malformed_items() {
        let l = parse_list("GET", br#"{"items":[{"id":"a"},{"noid":1},{"id":"b"}]}"#).unwrap();
        assert_eq!(l.len(), 2);
        assert!(parse_list("GET", b"[]").is_err());
        let e = parse_source("PUT", br#"{"jwsToken":"SECRETJWS""#).unwrap_err();
        assert!(!e.to_string().contains("SECRETJWS"));
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
