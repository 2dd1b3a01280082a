//! The refresh chain as plain logic.
//!
//! Given the stored tokens, the config, a policy, "now" and a [`WebexApi`],
//! decide and perform the contract's levels 0–4 and return an [`Outcome`].
//! It never touches files: a renewed personal token (level 3) is handed to a
//! [`Persist`] sink at once, before anything else can fail, because the
//! integration may have rotated its refresh token and losing that would
//! strand the user.

use crate::clock;
use crate::config::{Config, ConfigError, Field, PersonalUpdate};
use crate::secret::{ExposeSecret, SecretString, fingerprint};
use crate::tokens::StoredTokens;
use crate::webex::{ApiError, ClientCredentials, MintRequest, TokenGrant, WebexApi};
use jiff::Timestamp;
use std::fmt;
use std::time::Duration;

/// A step of the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// 0: is the stored access token still good?
    Validation,
    /// 1: the service app's own refresh token.
    ServiceRefreshToken,
    /// 2: a personal access token mints new service-app tokens.
    PersonalAccessToken,
    /// 3: the OAuth integration renews the personal access token.
    IntegrationRefreshToken,
}

impl Level {
    pub fn number(self) -> u8 {
        match self {
            Level::Validation => 0,
            Level::ServiceRefreshToken => 1,
            Level::PersonalAccessToken => 2,
            Level::IntegrationRefreshToken => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Validation => "validation",
            Level::ServiceRefreshToken => "service-app refresh token",
            Level::PersonalAccessToken => "personal access token",
            Level::IntegrationRefreshToken => "integration refresh token",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "level {} ({})", self.number(), self.name())
    }
}

/// How step 0 treats a stored token whose expiry is far enough away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `refresh`: validate it with one GET.
    Validate,
    /// `token`/`exec`: trust the stored expiry (no request).
    TrustExpiry,
}

/// What the caller asked for.
#[derive(Debug, Clone)]
pub struct Policy {
    pub min_valid: Duration,
    pub force: bool,
    /// `refresh --mint`: start at level 2 (a new token pair, so also a new
    /// service-app refresh token), skipping level 1. Implies `force`.
    pub mint: bool,
    pub dry_run: bool,
    pub check: Check,
}

/// How step 0 concluded the token works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// `GET /dataSources` answered 200.
    Checked,
    /// `GET /dataSources` answered 403: the token is genuine but lacks a
    /// data-source scope. It works; the warning says what is missing.
    CheckedWithoutScope,
    /// Its stored expiry is far enough away (no request made).
    TrustedExpiry,
    /// Another run refreshed it while this one waited for the lock.
    JustRefreshed,
}

/// Why the chain ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Forced,
    NoAccessToken,
    /// Stored expiry is within `min_valid` or passed.
    Expiring(Timestamp),
    /// Validation answered 401.
    Rejected(String),
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Forced => f.write_str("--force or --mint was given"),
            Trigger::NoAccessToken => f.write_str("there is no access token yet"),
            Trigger::Expiring(t) => {
                write!(f, "the access token expires at {}", clock::format_utc(*t))
            }
            Trigger::Rejected(why) => write!(f, "Webex rejected the access token ({why})"),
        }
    }
}

/// What became of one level.
#[derive(Debug, Clone)]
pub enum AttemptResult {
    /// Not tried, and why (not configured, known to be expired, …).
    Skipped(String),
    /// Tried and refused by Webex.
    Rejected {
        error: ApiError,
    },
    /// Tried, and failed for a reason that may pass (after retries); the
    /// chain stopped here.
    Unavailable {
        error: ApiError,
    },
    Succeeded,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub level: Level,
    pub result: AttemptResult,
}

/// One attempt as recorded in `--json` and the audit log.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    pub level: u8,
    pub name: &'static str,
    pub result: &'static str,
    pub detail: Option<String>,
    pub http_status: Option<u16>,
    pub tracking_id: Option<String>,
}

impl Attempt {
    /// The attempt as a record (no secrets: server text is already redacted).
    pub fn record(&self) -> AttemptRecord {
        let (result, detail, http_status, tracking_id) = match &self.result {
            AttemptResult::Skipped(why) => ("skipped", Some(why.clone()), None, None),
            AttemptResult::Rejected { error } => (
                "rejected",
                Some(error.to_string()),
                error.status(),
                error.tracking_id().map(str::to_string),
            ),
            AttemptResult::Unavailable { error } => (
                "transient",
                Some(error.to_string()),
                error.status(),
                error.tracking_id().map(str::to_string),
            ),
            AttemptResult::Succeeded => ("succeeded", None, None, None),
        };
        AttemptRecord {
            level: self.level.number(),
            name: self.level.name(),
            result,
            detail,
            http_status,
            tracking_id,
        }
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            AttemptResult::Skipped(why) => write!(f, "{}: skipped: {why}", self.level),
            AttemptResult::Rejected { error } => write!(f, "{}: rejected: {error}", self.level),
            AttemptResult::Unavailable { error } => {
                write!(f, "{}: failed, may pass: {error}", self.level)
            }
            AttemptResult::Succeeded => write!(f, "{}: succeeded", self.level),
        }
    }
}

/// What the chain did.
#[derive(Debug, Clone)]
pub enum Action {
    /// The stored token works; nothing to write.
    Kept(Validation),
    /// New tokens from `level` (3 means level 3 renewed the personal token
    /// and level 2 then minted).
    Refreshed { level: Level, trigger: Trigger },
    /// `--dry-run`: this level would be tried first.
    WouldRefresh { level: Level, trigger: Trigger },
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub action: Action,
    /// The token set to keep (new after a refresh, else the stored one).
    pub tokens: StoredTokens,
    pub attempts: Vec<Attempt>,
    /// Level 3 renewed the personal token (and it was persisted).
    pub personal_renewed: bool,
    /// The trackingId of the last Webex answer that failed, if any.
    pub tracking_id: Option<String>,
}

/// Why the chain could not produce a working token.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{level} failed for a reason that may pass: {error}")]
    Transient {
        level: Level,
        error: ApiError,
        attempts: Vec<Attempt>,
        /// Webex rejected the stored access token (401 on validation) in
        /// this run: it must never be handed over as working.
        stored_rejected: bool,
    },
    #[error("validation of the access token failed: {error}")]
    ValidationRefused { error: ApiError },
    #[error("every available level of the refresh chain was rejected")]
    Exhausted {
        attempts: Vec<Attempt>,
        /// As for `Transient`: the stored access token was rejected too.
        stored_rejected: bool,
    },
    #[error("nothing can refresh the access token: no level of the chain is configured")]
    NothingToTry { attempts: Vec<Attempt> },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Persist(String),
}

impl ChainError {
    /// Webex rejected the stored access token in this run (a 401 on
    /// validation): whatever else failed, that token is known not to work.
    pub fn stored_token_rejected(&self) -> bool {
        matches!(
            self,
            ChainError::Exhausted {
                stored_rejected: true,
                ..
            } | ChainError::Transient {
                stored_rejected: true,
                ..
            }
        )
    }
}

/// What the sink says when level 3 is about to run.
pub enum Renewal {
    /// Go ahead, with the token-manager state as it is now (re-read under
    /// the lock that covers the config, so a rotated integration refresh
    /// token written by another run meanwhile is the one used).
    Proceed(Box<Config>),
    /// Another run renewed the personal token meanwhile: retry level 2 with
    /// this one instead of spending the integration refresh token again.
    AlreadyRenewed(SecretString),
}

/// Where a renewed personal token goes the moment it exists. Level 3 is one
/// transaction: `begin_renewal` (take the config-scope lock, re-read), the
/// exchange, `personal_renewed` (save, still under that lock).
#[allow(async_fn_in_trait)]
pub trait Persist {
    async fn begin_renewal(&mut self) -> Result<Renewal, String>;
    async fn personal_renewed(&mut self, update: &PersonalUpdate) -> Result<(), String>;
}

/// Runs step 0 and, when needed, levels 1–3.
pub async fn ensure_fresh<A: WebexApi, P: Persist>(
    stored: &StoredTokens,
    config: &Config,
    policy: &Policy,
    api: &A,
    now: Timestamp,
    persist: &mut P,
) -> Result<Outcome, ChainError> {
    let kept = |v: Validation| Outcome {
        action: Action::Kept(v),
        tokens: stored.clone(),
        attempts: Vec::new(),
        personal_renewed: false,
        tracking_id: None,
    };

    // Step 0: does the stored token work?
    let trigger = if policy.force || policy.mint {
        Trigger::Forced
    } else if let Some(access) = &stored.access_token {
        let threshold = clock::after(now, policy.min_valid.as_secs());
        match stored.access_expires_at {
            Some(exp) if exp <= threshold => Trigger::Expiring(exp),
            Some(_) if policy.check == Check::TrustExpiry => {
                tracing::debug!("level 0: stored expiry is beyond --min-valid; trusting it");
                return Ok(kept(Validation::TrustedExpiry));
            }
            _ => match api.validate(access).await {
                Ok(()) => {
                    tracing::debug!(
                        "level 0: GET /dataSources accepted access token {}",
                        fingerprint(access)
                    );
                    return Ok(kept(Validation::Checked));
                }
                Err(ApiError::Refused { status: 403, body }) => {
                    let e = ApiError::Refused { status: 403, body };
                    tracing::warn!(
                        "the access token works but GET /dataSources answered {e}; the service app may lack a data-source read scope (spark-admin:datasource_read, or byods:datasource_read)"
                    );
                    return Ok(kept(Validation::CheckedWithoutScope));
                }
                Err(e @ ApiError::Rejected { .. }) => {
                    tracing::debug!("level 0: access token rejected: {e}");
                    Trigger::Rejected(e.to_string())
                }
                Err(e @ ApiError::Transient { .. }) => {
                    return Err(ChainError::Transient {
                        level: Level::Validation,
                        attempts: vec![Attempt {
                            level: Level::Validation,
                            result: AttemptResult::Unavailable { error: e.clone() },
                        }],
                        error: e,
                        stored_rejected: false,
                    });
                }
                Err(e) => return Err(ChainError::ValidationRefused { error: e }),
            },
        }
    } else {
        Trigger::NoAccessToken
    };
    tracing::debug!("refreshing because {trigger}");

    let mut run = Run {
        mint: policy.mint,
        stored,
        config,
        api,
        now,
        attempts: Vec::new(),
        tracking_id: None,
        stored_rejected: matches!(trigger, Trigger::Rejected(_)),
    };
    if policy.dry_run {
        return match run.first_available() {
            Some(level) => Ok(Outcome {
                action: Action::WouldRefresh { level, trigger },
                tokens: stored.clone(),
                attempts: run.attempts,
                personal_renewed: false,
                tracking_id: None,
            }),
            None => Err(ChainError::NothingToTry {
                attempts: run.attempts,
            }),
        };
    }
    run.walk(trigger, persist).await
}

/// Level 1 is usable: a refresh token not known to be expired.
fn level1_gap(stored: &StoredTokens, now: Timestamp) -> Option<String> {
    match (&stored.refresh_token, stored.refresh_expires_at) {
        (None, _) => Some("no service-app refresh token in the env file".into()),
        (Some(_), Some(exp)) if exp <= now => Some(format!(
            "the service-app refresh token expired at {}",
            clock::format_utc(exp)
        )),
        _ => None,
    }
}

/// Level 2 has a personal token that is set and not known to be expired.
fn personal_gap(config: &Config, now: Timestamp) -> Option<String> {
    let f = &config.personal_access_token;
    match (&f.value, config.personal_expires_at) {
        (Err(a), _) => Some(format!("`{}` {a}", f.key)),
        (Ok(_), Some(exp)) if exp <= now => Some(format!(
            "the personal access token expired at {}",
            clock::format_utc(exp)
        )),
        _ => None,
    }
}

/// Every unset field of the service app and the token manager, when the
/// service app has one: the error for a config that is mostly unfilled.
fn unfilled(config: &Config) -> Option<ConfigError> {
    let sa = &config.service_app;
    let Err(ConfigError::Fields { path, mut fields }) = sa.require_complete(&config.path) else {
        return None;
    };
    let tm = &config.personal_access_token;
    if let Err(a) = &tm.value {
        fields.push((tm.key.clone(), *a));
    }
    if let Some(i) = &config.integration {
        for (key, value) in [
            (&i.client_id.key, i.client_id.value.as_ref().err()),
            (&i.client_secret.key, i.client_secret.value.as_ref().err()),
            (&i.refresh_token.key, i.refresh_token.value.as_ref().err()),
        ] {
            if let Some(a) = value {
                fields.push((key.clone(), *a));
            }
        }
    }
    Some(ConfigError::Fields { path, fields })
}

/// Why level 3 was skipped when the config has no integration at all (the
/// error's hint then says how to add one rather than "authorize again").
pub const NO_INTEGRATION: &str = "no integration in the config file";

/// Level 3 has a complete integration whose refresh token is not known to
/// be expired.
fn integration_gap(config: &Config, now: Timestamp) -> Option<String> {
    match &config.integration {
        None => Some(NO_INTEGRATION.into()),
        Some(i) => match i.first_gap() {
            Some(g) => Some(g),
            // Expired only when no other filled-in layout is left to try.
            None => match i.refresh_expires_at {
                Some(exp)
                    if exp <= now
                        && config
                            .integration_candidates()
                            .iter()
                            .all(|c| c.refresh_expires_at.is_some_and(|e| e <= now)) =>
                {
                    Some(format!(
                        "the integration refresh token expired at {}",
                        clock::format_utc(exp)
                    ))
                }
                _ => None,
            },
        },
    }
}

/// Which of levels 1–3 could run now, and why not where not: the one
/// answer that `refresh --dry-run` and `status` both give.
pub fn availability(
    config: &Config,
    stored: &StoredTokens,
    now: Timestamp,
) -> [(Level, Option<String>); 3] {
    let sa = &config.service_app;
    let incomplete = |keys: &[&Field<String>]| {
        keys.iter()
            .find(|f| !f.is_set())
            .map(|f| format!("`{}` is not set", f.key))
    };
    let secret_missing =
        (!sa.client_secret.is_set()).then(|| format!("`{}` is not set", sa.client_secret.key));
    let l1 = level1_gap(stored, now)
        .or_else(|| incomplete(&[&sa.client_id]))
        .or_else(|| secret_missing.clone());
    let l2 = personal_gap(config, now)
        .or_else(|| incomplete(&[&sa.app_id, &sa.client_id, &sa.target_org_id]))
        .or_else(|| secret_missing.clone());
    [
        (Level::ServiceRefreshToken, l1),
        (Level::PersonalAccessToken, l2),
        (Level::IntegrationRefreshToken, integration_gap(config, now)),
    ]
}

struct Run<'a, A> {
    mint: bool,
    stored: &'a StoredTokens,
    config: &'a Config,
    api: &'a A,
    now: Timestamp,
    attempts: Vec<Attempt>,
    tracking_id: Option<String>,
    /// Step 0 found the stored access token rejected (401).
    stored_rejected: bool,
}

impl<A: WebexApi> Run<'_, A> {
    fn note(&mut self, level: Level, result: AttemptResult) {
        let attempt = Attempt { level, result };
        match &attempt.result {
            AttemptResult::Rejected { error } => {
                if let Some(t) = error.tracking_id() {
                    self.tracking_id = Some(t.to_string());
                }
                // A warning only if a later level succeeds (see `done`);
                // when the chain fails, the error lists it anyway.
                tracing::debug!("{attempt}");
            }
            _ => tracing::info!("{attempt}"),
        }
        self.attempts.push(attempt);
    }

    fn level1_gap(&self) -> Option<String> {
        if self.mint {
            return Some("--mint: a new token pair is minted with level 2".into());
        }
        level1_gap(self.stored, self.now)
    }

    fn personal_gap(&self) -> Option<String> {
        personal_gap(self.config, self.now)
    }

    fn integration_gap(&self) -> Option<String> {
        integration_gap(self.config, self.now)
    }

    /// For `--dry-run`: the level a real run would try first.
    fn first_available(&mut self) -> Option<Level> {
        availability(self.config, self.stored, self.now)
            .into_iter()
            .filter(|(level, _)| !(self.mint && *level == Level::ServiceRefreshToken))
            .find(|(_, gap)| gap.is_none())
            .map(|(level, _)| level)
    }

    async fn walk<P: Persist>(
        mut self,
        trigger: Trigger,
        persist: &mut P,
    ) -> Result<Outcome, ChainError> {
        let sa = &self.config.service_app;
        let path = &self.config.path;

        // Level 1.
        match self.level1_gap() {
            Some(gap) => self.note(Level::ServiceRefreshToken, AttemptResult::Skipped(gap)),
            None => {
                sa.require_client(path)?;
                let client = ClientCredentials {
                    client_id: sa.client_id.require(path)?,
                    client_secret: sa.client_secret.require(path)?,
                };
                let rt = self.stored.refresh_token.as_ref().expect("gap checked");
                match self.api.refresh(&client, rt).await {
                    Ok(grant) => {
                        return Ok(self.done(Level::ServiceRefreshToken, trigger, &grant, false));
                    }
                    Err(e) if e.is_transient() => {
                        return Err(self.transient(Level::ServiceRefreshToken, e));
                    }
                    Err(error) => self.note(
                        Level::ServiceRefreshToken,
                        AttemptResult::Rejected { error },
                    ),
                }
            }
        }

        // Levels 2 and 3.
        let integration_gap = self.integration_gap();
        let mut personal: Option<SecretString> = match self.personal_gap() {
            None => self.config.personal_access_token.get().cloned(),
            Some(gap) => {
                self.note(Level::PersonalAccessToken, AttemptResult::Skipped(gap));
                None
            }
        };
        let mut renewed = false;
        loop {
            if let Some(pat) = &personal {
                sa.require_complete(path)?;
                let req = MintRequest {
                    app_id: sa.app_id.require(path)?,
                    client_id: sa.client_id.require(path)?,
                    client_secret: sa.client_secret.require(path)?,
                    target_org_id: sa.target_org_id.require(path)?,
                };
                match self.api.mint(pat, &req).await {
                    Ok(grant) => {
                        let level = if renewed {
                            Level::IntegrationRefreshToken
                        } else {
                            Level::PersonalAccessToken
                        };
                        return Ok(self.done(level, trigger, &grant, renewed));
                    }
                    Err(e) if e.is_transient() => {
                        return Err(self.transient(Level::PersonalAccessToken, e));
                    }
                    Err(error) => {
                        // Only a rejected personal token (401) is one that
                        // level 3 can renew; a 403 (scope, or no Full Admin
                        // authorization) or 404 (app id) would fail again.
                        let renewable = matches!(error, ApiError::Rejected { .. });
                        self.note(
                            Level::PersonalAccessToken,
                            AttemptResult::Rejected { error },
                        );
                        if !renewable && !renewed && integration_gap.is_none() {
                            self.note(
                                Level::IntegrationRefreshToken,
                                AttemptResult::Skipped(
                                    "not tried: a renewed personal access token would meet the same refusal"
                                        .into(),
                                ),
                            );
                        }
                        if !renewable || renewed {
                            break;
                        }
                    }
                }
            }
            if renewed {
                break;
            }
            // Level 3.
            if let Some(gap) = &integration_gap {
                self.note(
                    Level::IntegrationRefreshToken,
                    AttemptResult::Skipped(gap.clone()),
                );
                break;
            }
            let fresh = match persist.begin_renewal().await {
                Ok(Renewal::Proceed(config)) => config,
                Ok(Renewal::AlreadyRenewed(token)) => {
                    tracing::info!(
                        "another run renewed the personal access token meanwhile ({}); minting with it",
                        fingerprint(&token)
                    );
                    personal = Some(token);
                    renewed = true;
                    continue;
                }
                Err(e) => return Err(ChainError::Persist(e)),
            };
            // Each complete integration layout in the config's order of
            // preference (as re-read under the config lock): when Webex
            // rejects one refresh token, the next filled-in layout (the
            // Python sample's files may hold several) gets its turn before
            // the chain gives up.
            let candidates = fresh.integration_candidates();
            if candidates.is_empty() {
                self.note(
                    Level::IntegrationRefreshToken,
                    AttemptResult::Skipped(
                        "the integration is no longer configured in the config file".into(),
                    ),
                );
                break;
            }
            for (n, integ) in candidates.into_iter().enumerate() {
                if let Some(exp) = integ.refresh_expires_at.filter(|e| *e <= self.now) {
                    self.note(
                        Level::IntegrationRefreshToken,
                        AttemptResult::Skipped(format!(
                            "`{}` expired at {}",
                            integ.refresh_token.key,
                            clock::format_utc(exp)
                        )),
                    );
                    continue;
                }
                let client = ClientCredentials {
                    client_id: integ.client_id.require(path)?,
                    client_secret: integ.client_secret.require(path)?,
                };
                let rt = integ.refresh_token.require(path)?;
                match self.api.refresh(&client, rt).await {
                    Ok(grant) => {
                        let update = PersonalUpdate {
                            personal_access_token: grant.access_token.clone(),
                            personal_expires_at: grant
                                .expires_in
                                .map(|s| clock::after(self.now, s)),
                            integration_refresh_expires_at: match (
                                &grant.refresh_token,
                                grant.refresh_token_expires_in,
                            ) {
                                (_, Some(s)) => Some(clock::after(self.now, s)),
                                (None, None) => integ.refresh_expires_at,
                                (Some(_), None) => None,
                            },
                            integration_refresh_token: grant.refresh_token.clone(),
                            // Names a fallback's client so the config is
                            // written into that layout (see
                            // `Config::write_layout`).
                            integration_client: (n > 0).then(|| {
                                (client.client_id.to_string(), client.client_secret.clone())
                            }),
                        };
                        persist
                            .personal_renewed(&update)
                            .await
                            .map_err(ChainError::Persist)?;
                        self.note(Level::IntegrationRefreshToken, AttemptResult::Succeeded);
                        personal = Some(grant.access_token);
                        renewed = true;
                        break;
                    }
                    Err(e) if e.is_transient() => {
                        return Err(self.transient(Level::IntegrationRefreshToken, e));
                    }
                    Err(error) => {
                        let next = matches!(error, ApiError::Rejected { .. });
                        self.note(
                            Level::IntegrationRefreshToken,
                            AttemptResult::Rejected { error },
                        );
                        if !next {
                            break;
                        }
                    }
                }
            }
            if !renewed {
                break;
            }
        }

        let tried = self
            .attempts
            .iter()
            .any(|a| !matches!(a.result, AttemptResult::Skipped(_)));
        if tried {
            Err(ChainError::Exhausted {
                attempts: self.attempts,
                stored_rejected: self.stored_rejected,
            })
        } else if let Some(all) = unfilled(self.config) {
            // Nothing could run and the service app is not filled in either
            // (a copied template): name every field at once, not the
            // token manager's now and the service app's on the next run.
            Err(ChainError::Config(all))
        } else {
            Err(ChainError::NothingToTry {
                attempts: self.attempts,
            })
        }
    }

    fn transient(&mut self, level: Level, error: ApiError) -> ChainError {
        tracing::debug!("{level}: transient failure: {error}");
        self.attempts.push(Attempt {
            level,
            result: AttemptResult::Unavailable {
                error: error.clone(),
            },
        });
        ChainError::Transient {
            level,
            error,
            attempts: std::mem::take(&mut self.attempts),
            stored_rejected: self.stored_rejected,
        }
    }

    fn done(
        mut self,
        level: Level,
        trigger: Trigger,
        grant: &TokenGrant,
        renewed: bool,
    ) -> Outcome {
        // The chain worked, but a level before it was refused: worth a
        // warning (a dead refresh token, a lapsed personal token).
        for a in &self.attempts {
            if matches!(a.result, AttemptResult::Rejected { .. }) {
                tracing::warn!("{a}");
            }
        }
        let shown = if level == Level::IntegrationRefreshToken {
            Level::PersonalAccessToken
        } else {
            level
        };
        self.note(shown, AttemptResult::Succeeded);
        let tokens = self.stored.after_grant(grant, self.now);
        tracing::debug!(
            "new access token {} ({}); refresh token {}",
            fingerprint(&grant.access_token),
            grant
                .expires_in
                .map(|s| format!("expires in {s} s"))
                .unwrap_or_else(|| "no expires_in".into()),
            match &grant.refresh_token {
                Some(rt) => format!("{} (from the answer)", fingerprint(rt)),
                None => "kept (none in the answer)".into(),
            }
        );
        if let (Some(old), Some(new)) = (&self.stored.access_token, &tokens.access_token)
            && old.expose_secret() == new.expose_secret()
        {
            // Webex hands back the same token within about a day of the
            // last refresh: that is success, not a loop.
            tracing::info!(
                "Webex returned the same access token as before (normal within a day of the last refresh)"
            );
        }
        Outcome {
            action: Action::Refreshed { level, trigger },
            tokens,
            attempts: self.attempts,
            personal_renewed: renewed,
            tracking_id: self.tracking_id,
        }
    }
}

#[cfg(test)]
mod tests;
