//! The one transaction behind every command that needs a working token:
//! unlocked fast path → lock → re-read → [`chain::ensure_fresh`] → save →
//! audit → [`Outcome`]. `refresh`, `token`, `exec` and `datasources` call
//! it; nothing here prints to stdout or knows about flags.

pub mod datasources;
pub mod schedule;
pub mod signals;

use crate::audit::{self, FailureEvent, RefreshEvent, RenewalEvent};
use crate::chain::{
    self, Action, AttemptResult, ChainError, Check, Outcome, Persist, Policy, Renewal, Validation,
};
use crate::clock;
use crate::config::Config;
use crate::error::Error;
use crate::secret::{ExposeSecret, SecretString, fingerprint};
use crate::settings::Settings;
use crate::store::{LockScope, StoreError, TokenStore};
use crate::tokens::{OrgId, RenewableUpdate, StoredTokens};
use crate::webex::{ApiError, ClientCredentials, MintRequest, TokenGrant, WebexApi};
use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

/// What the engine needs to know about the run besides the store and API.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The command, for the audit log (`refresh`, `token`, ...).
    pub command: &'static str,
    pub lock_timeout: Duration,
    /// The audit log, or `None` when off.
    pub audit: Option<&'a Path>,
    /// Where the service-app tokens are kept, for the audit log.
    pub target: &'a Path,
}

impl<'a> Ctx<'a> {
    /// The run's context for the org whose env file is `target`.
    pub fn of(settings: &'a Settings, command: &'static str, target: &'a Path) -> Ctx<'a> {
        Ctx {
            command,
            lock_timeout: settings.lock_timeout,
            audit: settings.audit_log.as_deref(),
            target,
        }
    }
}

/// The stored tokens when their expiry is beyond `min_valid` (no lock, no
/// request); `None` when they must be checked or refreshed. Read from this
/// host's own copy (for etcd: the export, which every load and save keeps
/// current), so a fresh token costs no store round trip either.
pub async fn fresh_tokens<S: TokenStore>(
    store: &S,
    org: &OrgId,
    min_valid: Duration,
) -> Result<Option<StoredTokens>, Error> {
    let snap = store.load_local(org).await.map_err(Error::from)?;
    Ok(is_fresh(&snap.tokens, min_valid).then_some(snap.tokens))
}

/// True when a service-app refresh token is stored with a known expiry
/// within `window` (it is time to roll the pair through level 2).
pub async fn refresh_token_expiring<S: TokenStore>(
    store: &S,
    org: &OrgId,
    window: Duration,
) -> Result<bool, Error> {
    let snap = store.load(org).await.map_err(Error::from)?;
    Ok(rt_expiring(&snap.tokens, clock::now(), window))
}

/// See [`refresh_token_expiring`].
pub fn rt_expiring(tokens: &StoredTokens, now: jiff::Timestamp, window: Duration) -> bool {
    let threshold = clock::after(now, window.as_secs());
    tokens.refresh_token.is_some() && tokens.refresh_expires_at.is_some_and(|e| e <= threshold)
}

/// True when an access token is stored with an expiry beyond `min_valid`.
pub fn is_fresh(tokens: &StoredTokens, min_valid: Duration) -> bool {
    let threshold = clock::after(clock::now(), min_valid.as_secs());
    tokens.access_token.is_some() && tokens.access_expires_at.is_some_and(|e| e > threshold)
}

/// What a grant from a person (`setup-oauth`, or `watch` re-authorizing
/// with the device grant) stores: the personal token, the integration
/// refresh token (none returned keeps the stored one) with their expiries
/// counted from `now`, and the client they were issued to.
pub fn authorization_update(
    grant: TokenGrant,
    client_id: &str,
    client_secret: &SecretString,
    now: jiff::Timestamp,
) -> RenewableUpdate {
    let integration_refresh_expires_at = grant
        .refresh_token_expires_in
        .filter(|_| grant.refresh_token.is_some())
        .map(|s| clock::after(now, s));
    RenewableUpdate {
        personal_access_token: grant.access_token,
        personal_expires_at: grant.expires_in.map(|s| clock::after(now, s)),
        integration_refresh_token: grant.refresh_token,
        integration_refresh_expires_at,
        integration_client: Some((client_id.to_string(), client_secret.clone())),
    }
}

/// `setup-oauth`'s transaction: a person's fresh authorization (the
/// personal token, the integration refresh token and the client
/// credentials they belong to) saved under the config-scope lock, so it
/// serializes with runs that may rewrite that state at level 3 and lands on
/// the state as it is now, not as it was when the person started signing
/// in. With `--store etcd://` the renewed state goes to etcd (the whole
/// fleet uses it); the client credentials stay in this host's file.
pub async fn save_authorization<S: TokenStore>(
    store: &S,
    update: &RenewableUpdate,
    lock_timeout: Duration,
) -> Result<(), Error> {
    let guard = store.lock(&LockScope::Config, lock_timeout).await?;
    let saved = store.save_renewable(&guard, update).await;
    store.release(guard).await;
    Ok(saved?)
}

/// Makes sure a working token is stored, under the lock, and returns what
/// happened. `api_for` builds the client from the config as read under the
/// lock (its `apiBaseUrl` may matter).
pub async fn ensure<S, A, F>(
    store: &S,
    api_for: F,
    policy: &Policy,
    org: &OrgId,
    ctx: &Ctx<'_>,
) -> Result<Outcome, Error>
where
    S: TokenStore,
    A: WebexApi,
    F: FnOnce(&Config) -> A,
{
    // Read once before the lock: a broken file fails fast, and if the token
    // changes while we wait, another run has just refreshed it.
    let before = store.load(org).await?;
    let guard = if policy.dry_run {
        None
    } else {
        Some(
            store
                .lock(&LockScope::Org(org.clone()), ctx.lock_timeout)
                .await?,
        )
    };
    let outcome = ensure_held(store, api_for, policy, org, ctx, &before, guard.as_ref()).await;
    // Given back at once (for etcd a request: the next host need not wait
    // for the lease to lapse).
    if let Some(g) = guard {
        store.release(g).await;
    }
    outcome
}

/// [`ensure`] once the lock is held (`guard`; `None` in a dry run).
async fn ensure_held<S, A, F>(
    store: &S,
    api_for: F,
    policy: &Policy,
    org: &OrgId,
    ctx: &Ctx<'_>,
    before: &crate::store::Snapshot,
    guard: Option<&S::Guard>,
) -> Result<Outcome, Error>
where
    S: TokenStore,
    A: WebexApi,
    F: FnOnce(&Config) -> A,
{
    // Re-read under the lock: another run may have rotated a refresh token
    // or renewed the personal token meanwhile.
    let snap = store.load(org).await?;
    for note in &snap.config.notes {
        tracing::info!("config file {}: {note}", snap.config.path.display());
    }
    let now = clock::now();

    if !(policy.force || policy.mint) && changed_meanwhile(&before.tokens, &snap.tokens) {
        let threshold = clock::after(now, policy.min_valid.as_secs());
        if snap.tokens.access_expires_at.is_some_and(|e| e > threshold) {
            tracing::debug!("another run refreshed the token while this one waited for the lock");
            return Ok(Outcome {
                action: Action::Kept(Validation::JustRefreshed),
                tokens: snap.tokens,
                attempts: Vec::new(),
                personal_renewed: false,
                tracking_id: None,
            });
        }
    }

    // A roll (`mint` without `force`) that another run did meanwhile: the
    // refresh token changed while this one waited, so a second mint would
    // only throw away a pair just made.
    if policy.mint && !policy.force && refresh_changed_meanwhile(&before.tokens, &snap.tokens) {
        tracing::debug!("another run minted a new token pair while this one waited for the lock");
        return Ok(Outcome {
            action: Action::Kept(Validation::JustRefreshed),
            tokens: snap.tokens,
            attempts: Vec::new(),
            personal_renewed: false,
            tracking_id: None,
        });
    }

    let api = Holding::new(api_for(&snap.config));
    let mut sink = RenewalSink {
        store,
        org,
        ctx,
        seen: snap.config.personal_access_token.get().cloned(),
        guard: None,
    };
    let result =
        chain::ensure_fresh(&snap.tokens, &snap.config, policy, &api, now, &mut sink).await;
    let outcome = match result {
        Ok(outcome) => {
            if let (Action::Refreshed { level, .. }, Some(guard)) = (&outcome.action, guard) {
                let written = store.save_service(guard, org, &outcome.tokens).await;
                audit_refresh(ctx, &outcome, level.number(), written.as_ref().err());
                written?;
            }
            Ok(outcome)
        }
        Err(e) => {
            audit_failure(ctx, org, &e);
            Err(e.into())
        }
    };
    // The answer is saved (or kept in a recovery file): a stop signal that
    // arrived meanwhile may end the run now.
    if let Some(g) = sink.guard.take() {
        store.release(g).await;
    }
    drop(sink);
    drop(api);
    outcome
}

fn refresh_changed_meanwhile(before: &StoredTokens, now: &StoredTokens) -> bool {
    match (&before.refresh_token, &now.refresh_token) {
        (Some(a), Some(b)) => a.expose_secret() != b.expose_secret(),
        (None, Some(_)) => true,
        _ => false,
    }
}

fn changed_meanwhile(before: &StoredTokens, now: &StoredTokens) -> bool {
    match (&before.access_token, &now.access_token) {
        (Some(a), Some(b)) => a.expose_secret() != b.expose_secret(),
        (None, Some(_)) => true,
        _ => false,
    }
}

/// Level 3 as one transaction under the config-scope lock: taken when level
/// 3 is about to run, held until the renewed state is saved and the run's
/// own save is done.
struct RenewalSink<'a, S: TokenStore> {
    store: &'a S,
    org: &'a OrgId,
    ctx: &'a Ctx<'a>,
    /// The personal token the chain started with.
    seen: Option<SecretString>,
    guard: Option<S::Guard>,
}

impl<S: TokenStore> Persist for RenewalSink<'_, S> {
    async fn begin_renewal(&mut self) -> Result<Renewal, String> {
        if self.guard.is_none() {
            let guard = self
                .store
                .lock(&LockScope::Config, self.ctx.lock_timeout)
                .await
                .map_err(|e| describe(&Error::from(e)))?;
            self.guard = Some(guard);
        }
        let snap = self
            .store
            .load(self.org)
            .await
            .map_err(|e| describe(&Error::from(e)))?;
        // Another run (another env file or org sharing this config, or
        // `setup-oauth`) renewed the personal token while this one worked.
        if let Some(current) = snap.config.personal_access_token.get() {
            let same = self
                .seen
                .as_ref()
                .is_some_and(|s| s.expose_secret() == current.expose_secret());
            if !same {
                return Ok(Renewal::AlreadyRenewed(current.clone()));
            }
        }
        Ok(Renewal::Proceed(Box::new(snap.config)))
    }

    async fn personal_renewed(&mut self, update: &RenewableUpdate) -> Result<(), String> {
        let guard = self
            .guard
            .as_ref()
            .ok_or_else(|| "internal error: level 3 ran without the config lock".to_string())?;
        self.store
            .save_renewable(guard, update)
            .await
            .map_err(|e| describe(&Error::from(e)))?;
        tracing::info!(
            "saved the renewed personal access token {}",
            fingerprint(&update.personal_access_token)
        );
        if let Some(path) = self.ctx.audit {
            audit::record(
                path,
                &RenewalEvent {
                    command: self.ctx.command,
                    operation: "oauth_renewal",
                    level: 3,
                    outcome: "ok",
                    personal_token_fingerprint: fingerprint(&update.personal_access_token),
                    personal_token_expires_at: update.personal_expires_at.map(clock::format_utc),
                    integration_refresh_token_fingerprint: update
                        .integration_refresh_token
                        .as_ref()
                        .map(fingerprint),
                    integration_refresh_token_expires_at: update
                        .integration_refresh_expires_at
                        .map(clock::format_utc),
                },
            );
        }
        Ok(())
    }
}

/// An error and its details on one line (the chain keeps persist failures
/// as text).
fn describe(err: &Error) -> String {
    let mut s = err.to_string();
    for d in err.details() {
        s.push_str("; ");
        s.push_str(&d);
    }
    s
}

/// The API, holding stop signals from the first token request until the
/// engine has saved its answer (see [`signals`]).
struct Holding<A> {
    inner: A,
    hold: RefCell<Option<signals::Hold>>,
}

impl<A> Holding<A> {
    fn new(inner: A) -> Holding<A> {
        Holding {
            inner,
            hold: RefCell::new(None),
        }
    }

    fn hold(&self) {
        self.hold
            .borrow_mut()
            .get_or_insert_with(signals::Hold::new);
    }
}

impl<A: WebexApi> WebexApi for Holding<A> {
    async fn validate(&self, access_token: &SecretString) -> Result<(), ApiError> {
        self.inner.validate(access_token).await
    }

    async fn refresh(
        &self,
        client: &ClientCredentials<'_>,
        refresh_token: &SecretString,
    ) -> Result<TokenGrant, ApiError> {
        self.hold();
        self.inner.refresh(client, refresh_token).await
    }

    async fn mint(
        &self,
        bearer: &SecretString,
        req: &MintRequest<'_>,
    ) -> Result<TokenGrant, ApiError> {
        self.hold();
        self.inner.mint(bearer, req).await
    }
}

fn audit_refresh(ctx: &Ctx<'_>, o: &Outcome, level: u8, write_error: Option<&StoreError>) {
    let Some(path) = ctx.audit else {
        return;
    };
    audit::record(
        path,
        &RefreshEvent {
            command: ctx.command,
            operation: if level == 1 { "refresh" } else { "mint" },
            level,
            outcome: if write_error.is_some() {
                "issued_but_not_saved"
            } else {
                "ok"
            },
            access_token_fingerprint: o.tokens.access_token.as_ref().map(fingerprint),
            access_token_expires_at: o.tokens.access_expires_at.map(clock::format_utc),
            refresh_token_fingerprint: o.tokens.refresh_token.as_ref().map(fingerprint),
            refresh_token_expires_at: o.tokens.refresh_expires_at.map(clock::format_utc),
            attempts: o.attempts.iter().map(|a| a.record()).collect(),
            tracking_id: o.tracking_id.clone(),
            env_file: ctx.target.display().to_string(),
            error: write_error.map(|e| e.to_string()),
        },
    );
}

fn audit_failure(ctx: &Ctx<'_>, org: &OrgId, e: &ChainError) {
    let Some(path) = ctx.audit else {
        return;
    };
    let (attempts, tracking) = match e {
        ChainError::Exhausted { attempts, .. } => (
            attempts.as_slice(),
            attempts.iter().rev().find_map(|a| match &a.result {
                AttemptResult::Rejected { error } => error.tracking_id(),
                _ => None,
            }),
        ),
        ChainError::Transient {
            attempts, error, ..
        } => (attempts.as_slice(), error.tracking_id()),
        // Nothing was sent to Webex: no token operation to record.
        _ => return,
    };
    audit::record(
        path,
        &FailureEvent {
            command: ctx.command,
            operation: "refresh",
            outcome: "failed",
            exit_code: Error::chain_exit_code(e),
            error: e.to_string(),
            attempts: attempts.iter().map(|a| a.record()).collect(),
            tracking_id: tracking.map(str::to_string),
            env_file: ctx.target.display().to_string(),
            org: org.name().map(str::to_string),
            reauthorization_required: matches!(e, ChainError::Exhausted { .. }),
        },
    );
}

/// A working token set, and whether this run refreshed it to get there.
pub struct Working {
    pub tokens: StoredTokens,
    /// True when the chain refreshed the token in this run (so a 401 right
    /// after cannot be cured by refreshing once more).
    pub refreshed: bool,
}

/// A working token set: the stored one when its expiry is beyond
/// `min_valid` (no lock, no request, no HTTP client), else [`ensure`].
pub async fn working_tokens<S, A, F>(
    store: &S,
    api_for: F,
    min_valid: Duration,
    org: &OrgId,
    ctx: &Ctx<'_>,
) -> Result<Working, Error>
where
    S: TokenStore,
    A: WebexApi,
    F: FnOnce(&Config) -> A,
{
    if let Some(tokens) = fresh_tokens(store, org, min_valid).await? {
        return Ok(Working {
            tokens,
            refreshed: false,
        });
    }
    let outcome = ensure(store, api_for, &working_policy(min_valid, false), org, ctx).await?;
    Ok(Working {
        refreshed: matches!(outcome.action, Action::Refreshed { .. }),
        tokens: outcome.tokens,
    })
}

/// For `token` and `exec`: when a refresh failed for a reason that may pass
/// (or every level was rejected) but the stored access token has not
/// expired yet, that token still works for a while: hand it over (with a
/// warning) rather than fail a consumer that only needs it now.
pub async fn still_valid_after<S: TokenStore>(
    store: &S,
    org: &OrgId,
    err: &Error,
) -> Option<StoredTokens> {
    let recoverable = matches!(
        err,
        Error::Chain(ChainError::Transient { .. } | ChainError::Exhausted { .. })
            | Error::Store(
                StoreError::Unreachable { .. }
                    | StoreError::LockLost { .. }
                    | StoreError::LockTimeout { .. }
            )
    );
    if !recoverable {
        return None;
    }
    // Never hand over a token Webex rejected in this run (CONTRACT: honest
    // hand-over).
    if let Error::Chain(c) = err
        && c.stored_token_rejected()
    {
        return None;
    }
    // This host's own copy (for etcd: the export), which needs no request.
    let snap = store.load_local(org).await.ok()?;
    let now = clock::now();
    let exp = snap.tokens.access_expires_at?;
    (snap.tokens.access_token.is_some() && exp > now).then(|| {
        tracing::warn!(
            "could not refresh the access token ({err}); handing over the stored one, which still works until {} ({})",
            clock::format_utc(exp),
            clock::human_left(clock::seconds_until(now, exp))
        );
        snap.tokens
    })
}

/// [`ensure`] for `token` and `exec`: on a failure that
/// [`still_valid_after`] forgives, the stored token that still works.
pub async fn ensure_or_still_valid<S, A, F>(
    store: &S,
    api_for: F,
    policy: &Policy,
    org: &OrgId,
    ctx: &Ctx<'_>,
) -> Result<StoredTokens, Error>
where
    S: TokenStore,
    A: WebexApi,
    F: FnOnce(&Config) -> A,
{
    match ensure(store, api_for, policy, org, ctx).await {
        Ok(outcome) => Ok(outcome.tokens),
        Err(e) => still_valid_after(store, org, &e).await.ok_or(e),
    }
}

/// The policy `token`, `exec` and the data-source commands use: trust a
/// stored expiry beyond `min_valid` unless asked to validate.
pub fn working_policy(min_valid: Duration, validate: bool) -> Policy {
    Policy {
        min_valid,
        force: false,
        mint: false,
        dry_run: false,
        check: if validate {
            Check::Validate
        } else {
            Check::TrustExpiry
        },
    }
}

#[cfg(test)]
mod tests;
