//! Re-authorization without a shell on the box: when the refresh chain ends
//! with every level rejected (or the integration's refresh token is about to
//! lapse and cannot be rolled), `watch` starts the device grant itself and
//! tells a person where to approve it.
//!
//! - **One flow per config.** Watchers ask ([`Requests::ask`]); one task per
//!   process ([`coordinator`]) runs the flow, and only while it holds the
//!   lock file `<config or state file>.reauth.lock`, so two watchers on one
//!   config run one flow. In multi-org runs the personal token is shared:
//!   the flow is for the config, not per org.
//! - **The pending record** (`<config or state file>.reauth.json`, 0600)
//!   holds what `status` and a restarted agent need: the verification link,
//!   the user code, its expiry, the window and how many codes were asked
//!   for, and the notifier's opaque `noticeId`. Never the device code: that
//!   stays in memory, so a restarted agent asks for a new code (in the same
//!   window).
//! - **Pace** ([`next_code_at`], pure): a new code as soon as the last one
//!   lapses during the first hour, then at most one every 30 minutes (plus
//!   up to 5 minutes of jitter), until `--reauth-window` has passed; then it
//!   stops asking until SIGHUP or a change of the files.
//! - **Telling**: a `reauth_required` event (`--json`, the audit log, the
//!   `--on-refresh` hooks, `/healthz`, the metrics, the log) and the
//!   optional [`Tell`] (the Webex message, wired in by `commands/watch.rs`).
//!   The device code and the tokens are never part of any of it.
//! - **Approval**: the grant is saved exactly as `setup-oauth` saves it
//!   ([`engine::authorization_update`], [`engine::save_authorization`]); the
//!   watchers notice the changed config and run the chain again.

use super::hooks;
use super::monitor::Monitor;
use super::{Event, Options, Report};
use crate::clock;
use crate::config::Config;
use crate::engine;
use crate::engine::signals;
use crate::error::{Error, SetupError};
use crate::names::SCOPE_APPLICATIONS_TOKEN;
use crate::oauth::{Pacer, poll_device, printable};
use crate::secret::fingerprint;
use crate::settings::Settings;
use crate::store::{LockScope, Store, StoreError, StoreGuard, TokenStore};
use crate::tokens::OrgId;
use crate::webex::{ClientCredentials, OAuthApi};
use futures_util::future::BoxFuture;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every lapsed code is replaced at once for this long after the window
/// opens (a person who was paged is likely to answer soon).
pub const FIRST_HOUR: Duration = Duration::from_secs(3600);
/// After the first hour: at least this long between two codes…
pub const SLOW_GAP: Duration = Duration::from_secs(1800);
/// …plus a random share of this (several configs paged at once do not ask
/// in step).
pub const SLOW_JITTER: Duration = Duration::from_secs(300);
/// What a code lives when the answer names no `expires_in` (Webex: 300 s).
const DEFAULT_CODE_LIFE: Duration = Duration::from_secs(300);
/// The poll interval when the answer names none (RFC 8628 §3.2).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Why the flow stopped when nobody approved within the window, and what
/// brings it back.
const WINDOW_OVER: &str = "nobody approved within --reauth-window; send SIGHUP, change the config or run `webex-token setup-oauth`";
/// After a failed request for a code (network, 5xx, 429): the next try.
const RETRY_CODE: Duration = Duration::from_secs(30);
/// How long to wait for the flow's lock: it is free at once, or held by
/// the watcher asking already (etcd needs a round trip to grant it).
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// How often a wait looks at the stop flag and the files.
const SLICE: Duration = Duration::from_millis(250);

/// Why a flow starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// The integration's refresh token lapses within `--rt-min-valid` and
    /// webex-token cannot roll it (Webex does not extend it on use).
    Expiring,
    /// Every level of the chain was rejected, or the integration is
    /// configured without a refresh token.
    Rejected,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Expiring => "integration_refresh_token_expiring",
            Reason::Rejected => "chain_rejected",
        }
    }
}

// ---------------------------------------------------------------- pacing

/// The span in which codes are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    pub fn new(start: Timestamp, length: Duration) -> Window {
        Window {
            start,
            end: super::watcher::after(start, length),
        }
    }
}

/// When to ask for the next code, the last one having been asked for at
/// `asked` and lapsing at `lapses`; `None` once that would be past the
/// window's end. During the first hour of the window: when the last code
/// lapses. After it: when the last code lapses, but no sooner than
/// [`SLOW_GAP`] plus `jitter01` (in [0, 1)) of [`SLOW_JITTER`] after it was
/// asked for.
pub fn next_code_at(
    w: &Window,
    asked: Timestamp,
    lapses: Timestamp,
    jitter01: f64,
) -> Option<Timestamp> {
    let first_hour_ends = super::watcher::after(w.start, FIRST_HOUR);
    let at = if lapses < first_hour_ends {
        lapses
    } else {
        let gap = SLOW_GAP + SLOW_JITTER.mul_f64(jitter01.clamp(0.0, 1.0));
        lapses.max(super::watcher::after(asked, gap))
    };
    (at < w.end).then_some(at)
}

/// How many codes a window of `length` asks for when nobody answers and
/// every code lives `code_life` (the jitter drawn as `jitter01` each time).
#[cfg(test)]
pub fn codes_in_window(length: Duration, code_life: Duration, jitter01: f64) -> u32 {
    let start = Timestamp::UNIX_EPOCH;
    let w = Window::new(start, length);
    let mut asked = start;
    let mut n = 0u32;
    loop {
        n += 1;
        let lapses = super::watcher::after(asked, code_life);
        match next_code_at(&w, asked, lapses, jitter01) {
            Some(next) => asked = next,
            None => return n,
        }
    }
}

// ---------------------------------------------------------------- the record

/// What the agent saved about a flow (`status` reads it; a restarted agent
/// resumes its window). Never the device code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// `pending` (a code is out) or `stopped` (no more codes: denied or the
    /// window is over).
    pub state: String,
    pub reason: String,
    /// The `verification_uri_complete` when Webex gave one, else the
    /// `verification_uri`.
    pub verify_url: String,
    pub user_code: String,
    pub code_expires_at: String,
    pub window_started_at: String,
    pub window_ends_at: String,
    pub codes_requested: u32,
    pub last_requested_at: String,
    /// Set by the notifier (the Webex message to edit), opaque here.
    #[serde(default)]
    pub notice_id: Option<String>,
    /// Why it stopped, and who must act.
    #[serde(default)]
    pub stopped_reason: Option<String>,
}

impl Pending {
    pub fn is_pending(&self) -> bool {
        self.state == "pending"
    }

    fn window(&self) -> Option<Window> {
        Some(Window {
            start: clock::parse(&self.window_started_at)?,
            end: clock::parse(&self.window_ends_at)?,
        })
    }
}

/// `<config or state file>.reauth.json`: this host's copy of the record
/// (with `--store etcd://` the fleet's is the key `/PREFIX/<appId>/reauth`).
#[cfg(test)]
fn record_path(settings: &Settings) -> PathBuf {
    settings.files_store().reauth_record_path()
}

impl Pending {
    /// The first field that does not read as webex-token writes it (text
    /// a terminal would act on, a time that is not one), if any.
    fn bad_field(&self) -> Option<&'static str> {
        let text = [
            ("verifyUrl", self.verify_url.as_str()),
            ("userCode", self.user_code.as_str()),
            ("noticeId", self.notice_id.as_deref().unwrap_or_default()),
        ];
        let times = [
            ("codeExpiresAt", self.code_expires_at.as_str()),
            ("windowStartedAt", self.window_started_at.as_str()),
            ("windowEndsAt", self.window_ends_at.as_str()),
            ("lastRequestedAt", self.last_requested_at.as_str()),
        ];
        text.iter()
            .find(|(_, v)| printable(v) != *v)
            .or_else(|| {
                times
                    .iter()
                    .find(|(_, v)| !v.is_empty() && clock::parse(v).is_none())
            })
            .map(|(name, _)| *name)
    }
}

/// The saved record, if there is a readable one: with etcd the fleet's
/// (whichever host runs the flow), else this host's file. One that does
/// not read as webex-token writes it is ignored with a warning.
pub async fn read_saved(store: &Store) -> Option<Pending> {
    let p: Pending = store.reauth_record().await?;
    match p.bad_field() {
        None => Some(p),
        Some(field) => {
            tracing::warn!(
                "ignoring the re-authorization record in {}: `{field}` is not as webex-token writes it",
                store.reauth_record_place()
            );
            None
        }
    }
}

/// Where a running flow keeps its record: the store, under the flow's lock.
struct Saved<'a> {
    store: &'a Store,
    guard: &'a StoreGuard,
}

impl Saved<'_> {
    async fn read(&self) -> Option<Pending> {
        read_saved(self.store).await
    }

    async fn put(&self, p: &Pending) {
        if let Err(e) = self.store.put_reauth_record(self.guard, p).await {
            tracing::warn!(
                "could not save the re-authorization record ({}): {e}",
                self.store.reauth_record_place()
            );
        }
    }

    async fn remove(&self) {
        if let Err(e) = self.store.remove_reauth_record(Some(self.guard)).await {
            tracing::warn!(
                "could not remove the re-authorization record ({}): {e}",
                self.store.reauth_record_place()
            );
        }
    }
}

/// Forgets what `watch` saved about a flow: after `setup-oauth` authorized
/// the integration by hand, a pending link or a "stopped asking" is stale
/// (this host's file, and with etcd the fleet's key).
pub async fn forget(settings: &Settings) {
    let store = settings.store();
    if let Err(e) = store.remove_reauth_record(None).await {
        tracing::warn!(
            "could not remove the re-authorization record ({}): {e}",
            store.reauth_record_place()
        );
    }
}

// ---------------------------------------------------------------- telling

/// The optional channel to a person besides the event, hooks and health
/// (the Webex message). Each method gets the `notice_id` it returned
/// before (from the record, so a restarted agent edits the same message).
pub trait Tell: Send + Sync {
    /// A new (or renewed) code; returns the id to keep (`None`: keep the
    /// one there is).
    fn code<'a>(
        &'a self,
        notice_id: Option<&'a str>,
        url: &'a str,
        user_code: &'a str,
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Option<String>>;
    /// Approved (`who`: the person, when known).
    fn done<'a>(
        &'a self,
        notice_id: Option<&'a str>,
        who: Option<&'a str>,
        at: Timestamp,
    ) -> BoxFuture<'a, ()>;
    /// No more codes: denied, or the window is over.
    fn stopped<'a>(&'a self, notice_id: Option<&'a str>, reason: &'a str) -> BoxFuture<'a, ()>;
}

/// A [`Tell`] in [`Options`] (which is `Debug` and `Clone`).
#[derive(Clone)]
pub struct Teller(pub Arc<dyn Tell>);

impl std::fmt::Debug for Teller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Teller")
    }
}

/// What the agent reports about a flow.
pub enum Notice<'a> {
    /// A code is out: a person should open `verify_url` and enter
    /// `user_code` before `code_expires_at`.
    Required {
        reason: Reason,
        verify_url: &'a str,
        user_code: &'a str,
        code_expires_at: Timestamp,
        codes_requested: u32,
        window_ends_at: Timestamp,
    },
    /// The grant was saved.
    Reauthorized {
        codes_requested: u32,
        window_started_at: Timestamp,
        personal_token_fingerprint: String,
        personal_token_expires_at: Option<Timestamp>,
        integration_refresh_token_expires_at: Option<Timestamp>,
    },
    /// No more codes until SIGHUP or a change of the files.
    Stopped {
        /// `access_denied`, `window_over` or `failed`.
        why: &'static str,
        detail: &'a str,
        codes_requested: u32,
    },
}

impl Notice<'_> {
    /// The event's (and the hook's `WEBEX_TOKEN_EVENT`) name.
    pub fn name(&self) -> &'static str {
        match self {
            Notice::Required { .. } => "reauth_required",
            Notice::Reauthorized { .. } => "reauthorized",
            Notice::Stopped { .. } => "reauth_stopped",
        }
    }

    /// The event's fields (also the audit line's and, for a code, the
    /// `/healthz` object's).
    pub fn fields(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Notice::Required {
                reason,
                verify_url,
                user_code,
                code_expires_at,
                codes_requested,
                window_ends_at,
            } => json!({
                "reason": reason.name(),
                "verifyUrl": verify_url,
                "userCode": user_code,
                "codeExpiresAt": clock::format_utc(*code_expires_at),
                "codesRequested": codes_requested,
                "windowEndsAt": clock::format_utc(*window_ends_at),
            }),
            Notice::Reauthorized {
                codes_requested,
                window_started_at,
                personal_token_fingerprint,
                personal_token_expires_at,
                integration_refresh_token_expires_at,
            } => json!({
                "codesRequested": codes_requested,
                "windowStartedAt": clock::format_utc(*window_started_at),
                "personalTokenFingerprint": personal_token_fingerprint,
                "personalTokenExpiresAt": personal_token_expires_at.map(clock::format_utc),
                "integrationRefreshTokenExpiresAt": integration_refresh_token_expires_at.map(clock::format_utc),
            }),
            Notice::Stopped {
                why,
                detail,
                codes_requested,
            } => json!({
                "reason": why,
                "detail": detail,
                "codesRequested": codes_requested,
            }),
        }
    }

    /// What the hooks get besides `WEBEX_TOKEN_EVENT` (never a token).
    fn hook_env(&self) -> Vec<(&'static str, String)> {
        match self {
            Notice::Required {
                verify_url,
                user_code,
                code_expires_at,
                ..
            } => vec![
                ("WEBEX_TOKEN_VERIFY_URL", verify_url.to_string()),
                ("WEBEX_TOKEN_USER_CODE", user_code.to_string()),
                (
                    "WEBEX_TOKEN_CODE_EXPIRES_AT",
                    clock::format_utc(*code_expires_at),
                ),
            ],
            Notice::Reauthorized { .. } => Vec::new(),
            Notice::Stopped { why, detail, .. } => vec![
                ("WEBEX_TOKEN_REAUTH_STOPPED", why.to_string()),
                ("WEBEX_TOKEN_REAUTH_DETAIL", detail.to_string()),
            ],
        }
    }
}

// ---------------------------------------------------------------- asking

/// Where the org loops ask for a flow (the strongest reason wins).
#[derive(Default)]
pub struct Requests {
    wanted: Mutex<Option<Reason>>,
    /// The fingerprint of the personal token the last failing tick had
    /// (`None`: none was stored): a flow is not started when the store
    /// holds another one by the time the lock is taken (a person, or
    /// another host's flow, authorized the integration meanwhile).
    seen: Mutex<Option<String>>,
    wake: tokio::sync::Notify,
    /// The org loops have ended: the flow ends at its next wait (a request
    /// or a save in progress finishes first).
    stopping: Arc<AtomicBool>,
}

impl Requests {
    pub fn ask(&self, r: Reason, personal_seen: Option<String>) {
        let mut w = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        *w = (*w).max(Some(r));
        drop(w);
        if r == Reason::Rejected {
            *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = personal_seen;
        }
        self.wake.notify_one();
    }

    pub(super) fn stopping(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    /// The loops have ended (a stop signal, or a fatal error).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn seen(&self) -> Option<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn take(&self) -> Option<Reason> {
        self.wanted.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// True when the failure `e` of the chain needs a person who can authorize
/// the integration again.
pub fn wanted_after(e: &Error) -> bool {
    use crate::chain::ChainError;
    matches!(
        e,
        Error::Chain(ChainError::Exhausted { .. } | ChainError::NothingToTry { .. })
    )
}

/// True when the integration's refresh token (which webex-token cannot
/// roll) lapses within `window` from `now`.
pub fn integration_expiring(config: &Config, now: Timestamp, window: Duration) -> bool {
    config
        .integration
        .as_ref()
        .filter(|i| i.refresh_token.get().is_some())
        .and_then(|i| i.refresh_expires_at)
        .is_some_and(|e| e <= super::watcher::after(now, window))
}

/// What the coordinator needs from the agent.
pub(super) struct Ctx<'a> {
    pub settings: &'a Settings,
    pub options: &'a Options,
    pub report: &'a dyn Report,
    pub monitor: Arc<Monitor>,
    /// Set when the org loops have ended ([`Requests::stop`]).
    pub stopping: Arc<AtomicBool>,
}

/// How a flow ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Approved,
    /// No more codes until SIGHUP or a change of the files.
    Stopped,
    /// Another process runs the flow, or there is nothing to authorize.
    NotRun,
    /// A stop signal, or the files changed (a person fixed it by hand).
    Interrupted,
}

/// The files whose change lifts a stopped flow (and interrupts a running
/// one started by a rejected chain).
fn watched(settings: &Settings) -> Vec<PathBuf> {
    let mut files = vec![settings.config_path.clone()];
    files.extend(settings.state_path.clone());
    files
}

type Stamp = Vec<Option<(u64, Option<std::time::SystemTime>)>>;

fn stamp(paths: &[PathBuf]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        })
        .collect()
}

/// Runs flows as the org loops ask for them, one at a time, until the
/// loops end ([`Requests::stop`]). A flow is never dropped mid-way: a
/// device-token answer in flight is saved before it returns.
pub(super) async fn coordinator(ctx: Ctx<'_>, requests: &Requests) {
    // After a stop: no new flow until SIGHUP or a change of the files.
    let mut held: Option<(u64, Stamp)> = None;
    let files = watched(ctx.settings);
    loop {
        if requests.stopping.load(Ordering::SeqCst) {
            return;
        }
        requests.wake.notified().await;
        if requests.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Some(reason) = requests.take() else {
            continue;
        };
        if let Some((hangups, s)) = &held {
            if *hangups == signals::hangups() && *s == stamp(&files) {
                continue;
            }
            held = None;
        }
        match run_flow(&ctx, reason, requests.seen()).await {
            Ended::Stopped => held = Some((signals::hangups(), stamp(&files))),
            Ended::Approved | Ended::NotRun | Ended::Interrupted => {}
        }
    }
}

/// Time as the flow sees it: real, cut short by a stop signal or (for a
/// flow started by a rejected chain) a change of the files.
struct Watch {
    stopping: Arc<AtomicBool>,
    files: Vec<PathBuf>,
    first: Option<Stamp>,
    interrupted: bool,
}

impl Watch {
    fn new(settings: &Settings, reason: Reason, stopping: Arc<AtomicBool>) -> Watch {
        let files = watched(settings);
        let first = (reason == Reason::Rejected).then(|| stamp(&files));
        Watch {
            stopping,
            files,
            first,
            interrupted: false,
        }
    }

    fn check(&mut self) -> bool {
        if signals::stop_requested().is_some() || self.stopping.load(Ordering::SeqCst) {
            self.interrupted = true;
        }
        if let Some(f) = &self.first
            && *f != stamp(&self.files)
        {
            tracing::info!(
                "the config changed while waiting for a person: stopping the device grant"
            );
            self.interrupted = true;
        }
        self.interrupted
    }

    /// Sleeps `d` in slices; false when interrupted.
    async fn sleep(&mut self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.check() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            tokio::time::sleep((end - now).min(SLICE)).await;
        }
    }
}

/// The device poll's clock: an interrupted wait reads as "the time is up".
struct PollPacer<'w> {
    start: Instant,
    watch: &'w mut Watch,
}

impl Pacer for PollPacer<'_> {
    fn elapsed(&self) -> Duration {
        if self.watch.interrupted {
            Duration::from_secs(u64::MAX / 4)
        } else {
            self.start.elapsed()
        }
    }

    async fn sleep(&mut self, d: Duration, _left: Duration) {
        self.watch.sleep(d).await;
    }
}

/// One flow: codes until approved, denied, or the window is over.
async fn run_flow(ctx: &Ctx<'_>, reason: Reason, personal_seen: Option<String>) -> Ended {
    let settings = ctx.settings;
    // The flow's lock: a file beside the config (or state file), or with
    // etcd a key of the fleet, held for as long as the flow asks.
    let store = settings.store();
    let lock = match store.lock(&LockScope::Reauth, LOCK_WAIT).await {
        Ok(g) => g,
        Err(StoreError::LockTimeout { path, .. }) => {
            // Another watcher on this config runs it: show its code here too.
            tracing::info!(
                "another webex-token process holds {}: it asks the person to re-authorize",
                path.display()
            );
            if let Some(p) = read_saved(&store).await.filter(Pending::is_pending)
                && let Some(at) = clock::parse(&p.code_expires_at)
            {
                ctx.monitor
                    .set_reauth(Some((&p.verify_url, &p.user_code, at)));
            }
            return Ended::NotRun;
        }
        Err(e) => {
            tracing::warn!("could not take the lock to start the device grant: {e}");
            return Ended::NotRun;
        }
    };
    // Authorized meanwhile (the chain failed just before another host's
    // flow, or a person, saved a new grant): the loops recover on their own.
    if reason == Reason::Rejected {
        let now = store
            .load(&OrgId::configured())
            .await
            .ok()
            .and_then(|s| s.config.personal_token_fingerprint());
        if now != personal_seen {
            tracing::info!(
                "the integration was authorized again meanwhile: no device grant needed"
            );
            store.release(lock).await;
            return Ended::NotRun;
        }
    }
    let saved = Saved {
        store: &store,
        guard: &lock,
    };
    let ended = flow(ctx, reason, personal_seen.as_deref(), &saved).await;
    store.release(lock).await;
    ended
}

/// [`run_flow`] once the lock is held.
async fn flow(
    ctx: &Ctx<'_>,
    reason: Reason,
    personal_seen: Option<&str>,
    saved: &Saved<'_>,
) -> Ended {
    let settings = ctx.settings;
    let config = match settings.load_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("not starting the device grant: {e}");
            return Ended::NotRun;
        }
    };
    let Ok((client_id, client_secret)) = config.integration_client() else {
        tracing::info!(
            "no token-manager integration client is configured: `watch` cannot ask a person to authorize it (see docs/reauthorize.md)"
        );
        return Ended::NotRun;
    };
    if reason == Reason::Expiring
        && !integration_expiring(&config, clock::now(), ctx.options.rt_min_valid)
    {
        return Ended::NotRun;
    }
    let api = settings.api(&config);
    let client = ClientCredentials {
        client_id: &client_id,
        client_secret: &client_secret,
    };
    let mut watch = Watch::new(settings, reason, ctx.stopping.clone());
    let now = clock::now();
    // A flow of an earlier run whose window is still open goes on in that
    // window (its device code is gone: a new code is asked for at once).
    let resumed = saved
        .read()
        .await
        .filter(Pending::is_pending)
        .and_then(|p| Some((p.window()?, p)))
        .filter(|(w, _)| w.end > now);
    let (window, mut codes, mut notice_id) = match resumed {
        Some((w, p)) => {
            tracing::info!(
                "resuming the re-authorization window that started at {} ({} codes asked for so far)",
                p.window_started_at,
                p.codes_requested
            );
            (w, p.codes_requested, p.notice_id)
        }
        None => (Window::new(now, ctx.options.reauth_window), 0, None),
    };
    let tell = ctx.options.tell.as_ref().map(|t| t.0.clone());
    let mut next_at = now;
    loop {
        if !watch.sleep(clock_until(next_at)).await {
            return interrupted(ctx, saved).await;
        }
        if authorized_meanwhile(ctx, reason, personal_seen).await {
            tracing::info!(
                "the integration was authorized again meanwhile: no more codes are asked for"
            );
            saved.remove().await;
            ctx.monitor.set_reauth(None);
            return Ended::Approved;
        }
        let asked = clock::now();
        if asked >= window.end {
            // (The wall clock moved past the window while a code lived:
            // suspend and resume, an NTP step. No new code after the end.)
            let detail = WINDOW_OVER;
            return stop(
                ctx,
                saved,
                None,
                "window_over",
                detail,
                codes,
                &tell,
                notice_id.as_deref(),
            )
            .await;
        }
        // The code's life counts from here (the poll ends when it lapses).
        let asked_instant = Instant::now();
        let d = match api
            .device_authorize(&client_id, SCOPE_APPLICATIONS_TOKEN)
            .await
        {
            Ok(d) => d,
            Err(e) if e.is_transient() => {
                tracing::warn!(
                    "could not ask Webex for a device code ({e}); trying again in {}",
                    clock::human_span(RETRY_CODE.as_secs())
                );
                next_at = super::watcher::after(asked, RETRY_CODE);
                if next_at >= window.end {
                    return stop(
                        ctx,
                        saved,
                        None,
                        "window_over",
                        "the re-authorization window ended",
                        codes,
                        &tell,
                        notice_id.as_deref(),
                    )
                    .await;
                }
                continue;
            }
            Err(e) => {
                let e = Error::from(SetupError::Device(e));
                let detail = match e.hint() {
                    Some(h) => format!("{e} ({h})"),
                    None => e.to_string(),
                };
                return stop(
                    ctx,
                    saved,
                    None,
                    "failed",
                    &detail,
                    codes,
                    &tell,
                    notice_id.as_deref(),
                )
                .await;
            }
        };
        codes += 1;
        ctx.monitor.reauth_code_requested();
        let user_code = printable(d.user_code.trim());
        let verify_url = d
            .verification_uri_complete
            .as_deref()
            .map(|c| printable(c.trim()))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| printable(d.verification_uri.trim()));
        let life = d
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_CODE_LIFE);
        let lapses = super::watcher::after(asked, life);
        let mut record = Pending {
            state: "pending".into(),
            reason: reason.name().into(),
            verify_url: verify_url.clone(),
            user_code: user_code.clone(),
            code_expires_at: clock::format_utc(lapses),
            window_started_at: clock::format_utc(window.start),
            window_ends_at: clock::format_utc(window.end),
            codes_requested: codes,
            last_requested_at: clock::format_utc(asked),
            notice_id: notice_id.clone(),
            stopped_reason: None,
        };
        saved.put(&record).await;
        ctx.monitor
            .set_reauth(Some((&verify_url, &user_code, lapses)));
        // `systemctl status` shows it too.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&format!(
            "needs a person: open {verify_url} and enter {user_code} (until {})",
            clock::format_utc(lapses)
        ))]);
        tracing::warn!(
            "a person must re-authorize the token-manager integration: open {verify_url} and enter the code {user_code} (it expires at {}; code {codes} of this window, which ends at {})",
            clock::format_utc(lapses),
            clock::format_utc(window.end)
        );
        announce(
            ctx,
            Notice::Required {
                reason,
                verify_url: &verify_url,
                user_code: &user_code,
                code_expires_at: lapses,
                codes_requested: codes,
                window_ends_at: window.end,
            },
        )
        .await;
        if let Some(t) = &tell
            && let Some(id) = t
                .code(notice_id.as_deref(), &verify_url, &user_code, lapses)
                .await
            && notice_id.as_deref() != Some(id.as_str())
        {
            notice_id = Some(id);
            record.notice_id = notice_id.clone();
            saved.put(&record).await;
        }
        let interval = d
            .interval
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_INTERVAL)
            .max(Duration::from_secs(1));
        let polled = {
            let mut pacer = PollPacer {
                start: asked_instant,
                watch: &mut watch,
            };
            poll_device(&api, &client, &d.device_code, interval, life, &mut pacer).await
        };
        if watch.interrupted {
            return interrupted(ctx, saved).await;
        }
        match polled {
            Ok(grant) => {
                let update =
                    engine::authorization_update(grant, &client_id, &client_secret, clock::now());
                if let Err(e) =
                    engine::save_authorization(&settings.store(), &update, settings.lock_timeout)
                        .await
                {
                    // The grant is lost with this error; the next code may do.
                    tracing::error!("the person approved, but the tokens could not be saved: {e}");
                    next_at = clock::now();
                    continue;
                }
                let at = clock::now();
                tracing::info!(
                    "re-authorized: the token-manager integration's tokens are saved; the chain runs again"
                );
                saved.remove().await;
                ctx.monitor.set_reauth(None);
                announce(
                    ctx,
                    Notice::Reauthorized {
                        codes_requested: codes,
                        window_started_at: window.start,
                        personal_token_fingerprint: fingerprint(&update.personal_access_token),
                        personal_token_expires_at: update.personal_expires_at,
                        integration_refresh_token_expires_at: update.integration_refresh_expires_at,
                    },
                )
                .await;
                if let Some(t) = &tell {
                    // Who approved, for the notice (best effort: a token
                    // without the scope for it only leaves the name out).
                    use crate::webex::PeopleApi;
                    let who = match api.who_am_i(&update.personal_access_token).await {
                        Ok(who) => Some(who),
                        Err(e) => {
                            tracing::debug!("could not learn who approved: {e}");
                            None
                        }
                    };
                    t.done(notice_id.as_deref(), who.as_deref(), at).await;
                }
                return Ended::Approved;
            }
            Err(SetupError::Authorization { error, .. }) if error == "access_denied" => {
                let detail = "the person declined the request (access_denied): whoever owns the token-manager integration must approve it, or run `webex-token setup-oauth`; send SIGHUP to ask again";
                return stop(
                    ctx,
                    saved,
                    Some(record),
                    "access_denied",
                    detail,
                    codes,
                    &tell,
                    notice_id.as_deref(),
                )
                .await;
            }
            Err(SetupError::TimedOut { .. } | SetupError::Authorization { .. }) => {
                // The code lapsed unanswered (or Webex says so: invalid_grant).
                match next_code_at(&window, asked, lapses, fastrand::f64()) {
                    Some(at) => {
                        tracing::info!(
                            "the code {user_code} lapsed unanswered; the next one at {}",
                            clock::format_utc(at)
                        );
                        next_at = at;
                    }
                    None => {
                        let detail = WINDOW_OVER;
                        return stop(
                            ctx,
                            saved,
                            Some(record),
                            "window_over",
                            detail,
                            codes,
                            &tell,
                            notice_id.as_deref(),
                        )
                        .await;
                    }
                }
            }
            Err(e) => {
                let e = Error::from(e);
                tracing::warn!("the device grant failed: {e}; asking for a new code");
                next_at = match next_code_at(&window, asked, clock::now(), fastrand::f64()) {
                    Some(at) => at.max(super::watcher::after(clock::now(), RETRY_CODE)),
                    None => {
                        return stop(
                            ctx,
                            saved,
                            Some(record),
                            "failed",
                            &e.to_string(),
                            codes,
                            &tell,
                            notice_id.as_deref(),
                        )
                        .await;
                    }
                };
            }
        }
    }
}

fn clock_until(at: Timestamp) -> Duration {
    Duration::from_secs(clock::seconds_until(clock::now(), at).max(0) as u64)
}

/// True when the store no longer needs this flow: for a rejected chain, its
/// personal token is not the one the failing tick had (a person, maybe on
/// another host of the fleet, authorized meanwhile: this host's files need
/// not change, so their stamp cannot tell); for an expiring integration,
/// its refresh token no longer lapses soon. A store that cannot be read
/// changes nothing.
async fn authorized_meanwhile(ctx: &Ctx<'_>, reason: Reason, personal_seen: Option<&str>) -> bool {
    let Ok(snap) = ctx.settings.store().load(&OrgId::configured()).await else {
        return false;
    };
    match reason {
        Reason::Rejected => snap.config.personal_token_fingerprint().as_deref() != personal_seen,
        Reason::Expiring => {
            !integration_expiring(&snap.config, clock::now(), ctx.options.rt_min_valid)
        }
    }
}

/// A stop signal keeps the record (the next start resumes the window); a
/// change of the files ends the flow (a person acted: the watchers try the
/// chain again and ask anew if it still fails).
async fn interrupted(ctx: &Ctx<'_>, saved: &Saved<'_>) -> Ended {
    if signals::stop_requested().is_none() && !ctx.stopping.load(Ordering::SeqCst) {
        saved.remove().await;
        ctx.monitor.set_reauth(None);
    }
    Ended::Interrupted
}

/// No more codes: the record says why, the person is told.
#[allow(clippy::too_many_arguments)]
async fn stop(
    ctx: &Ctx<'_>,
    saved: &Saved<'_>,
    record: Option<Pending>,
    why: &'static str,
    detail: &str,
    codes: u32,
    tell: &Option<Arc<dyn Tell>>,
    notice_id: Option<&str>,
) -> Ended {
    tracing::error!("stopped asking for re-authorization ({why}): {detail}");
    let record = match record {
        Some(r) => Some(r),
        None => saved.read().await,
    };
    let mut r = record.unwrap_or(Pending {
        state: String::new(),
        reason: String::new(),
        verify_url: String::new(),
        user_code: String::new(),
        code_expires_at: String::new(),
        window_started_at: String::new(),
        window_ends_at: String::new(),
        codes_requested: codes,
        last_requested_at: String::new(),
        notice_id: notice_id.map(String::from),
        stopped_reason: None,
    });
    r.state = "stopped".into();
    r.stopped_reason = Some(format!("{why}: {detail}"));
    saved.put(&r).await;
    ctx.monitor.set_reauth(None);
    announce(
        ctx,
        Notice::Stopped {
            why,
            detail,
            codes_requested: codes,
        },
    )
    .await;
    if let Some(t) = tell {
        t.stopped(notice_id, detail).await;
    }
    Ended::Stopped
}

/// The audit line of a notice.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditLine<'a> {
    command: &'static str,
    operation: &'static str,
    event: &'static str,
    #[serde(flatten)]
    fields: serde_json::Value,
    config_file: &'a str,
}

/// The event, the audit line and the hooks of a notice.
async fn announce(ctx: &Ctx<'_>, n: Notice<'_>) {
    let org = OrgId::configured();
    ctx.report.report(&org, clock::now(), Event::Reauth(&n));
    let config_file = ctx.settings.config_path.display().to_string();
    if let Some(path) = ctx.settings.audit_log.as_deref() {
        crate::audit::record(
            path,
            &AuditLine {
                command: "watch",
                operation: "reauth",
                event: n.name(),
                fields: n.fields(),
                config_file: &config_file,
            },
        );
    }
    let env = n.hook_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let env_file = ctx.settings.store().env_path().to_path_buf();
    for cmd in &ctx.options.on_refresh {
        let whose = hooks::HookEnv {
            org: None,
            env_file: &env_file,
        };
        let run = hooks::run_notice(cmd, n.name(), &env, ctx.options.hook_timeout, &whose).await;
        match run.detail() {
            None => tracing::info!("hook `{cmd}` ran ({})", n.name()),
            Some(d) => tracing::warn!("hook `{cmd}` {d}"),
        }
        ctx.monitor.hook(&org, run.outcome_name());
        if let Some(path) = ctx.settings.audit_log.as_deref() {
            crate::audit::record(
                path,
                &crate::audit::HookEvent {
                    command: "watch",
                    operation: "hook",
                    event: n.name(),
                    hook: cmd,
                    outcome: run.outcome_name(),
                    exit_code: run.exit_code(),
                    error: run.detail(),
                    duration_ms: run.duration_ms(),
                    env_file: env_file.display().to_string(),
                },
            );
        }
        ctx.report.report(&org, clock::now(), Event::Hook(&run));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn mins(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    fn plus(t: Timestamp, d: Duration) -> Timestamp {
        super::super::watcher::after(t, d)
    }

    #[test]
    fn every_code_in_the_first_hour_then_one_per_half_hour() {
        let start = at("2026-01-01T00:00:00Z");
        let w = Window::new(start, Duration::from_secs(24 * 3600));
        // First hour: the next code when the last one lapses.
        let asked = plus(start, mins(50));
        let lapses = plus(asked, mins(5));
        assert_eq!(next_code_at(&w, asked, lapses, 0.9), Some(lapses));
        // A code lapsing at the hour's end: the slow pace begins.
        let asked = plus(start, mins(55));
        let lapses = plus(start, mins(60));
        assert_eq!(
            next_code_at(&w, asked, lapses, 0.0),
            Some(plus(start, mins(85)))
        );
        // Jitter adds up to 5 minutes.
        assert_eq!(
            next_code_at(&w, asked, lapses, 0.5),
            Some(plus(plus(start, mins(85)), Duration::from_secs(150)))
        );
        // A code living longer than the gap: when it lapses.
        let asked = plus(start, mins(120));
        let lapses = plus(asked, mins(45));
        assert_eq!(next_code_at(&w, asked, lapses, 0.0), Some(lapses));
    }

    #[test]
    fn nothing_after_the_window() {
        let start = at("2026-01-01T00:00:00Z");
        let w = Window::new(start, Duration::from_secs(24 * 3600));
        let asked = plus(start, mins(24 * 60 - 20));
        let lapses = plus(asked, mins(5));
        // 30 minutes later would be past the end.
        assert_eq!(next_code_at(&w, asked, lapses, 0.0), None);
        // A short window: only the first hour's rule, cut at its end.
        let short = Window::new(start, mins(12));
        assert_eq!(
            next_code_at(&short, start, plus(start, mins(5)), 0.0),
            Some(plus(start, mins(5)))
        );
        assert_eq!(
            next_code_at(&short, plus(start, mins(10)), plus(start, mins(15)), 0.0),
            None
        );
    }

    #[test]
    fn codes_over_a_day() {
        // 12 in the first hour (0, 5, …, 55 min), then one at 85 min and
        // every 30 min after it until 24 h: (1440 - 85) / 30 = 45.2 → 46.
        assert_eq!(
            codes_in_window(Duration::from_secs(86_400), mins(5), 0.0),
            58
        );
        // The most jitter spaces them wider.
        assert_eq!(
            codes_in_window(Duration::from_secs(86_400), mins(5), 1.0),
            51
        );
        assert_eq!(codes_in_window(mins(5), mins(5), 0.0), 1);
    }

    #[test]
    fn the_record_holds_no_device_code_and_round_trips() {
        let p = Pending {
            state: "pending".into(),
            reason: Reason::Rejected.name().into(),
            verify_url: "https://example.test/verify?userCode=ABCD".into(),
            user_code: "ABCD".into(),
            code_expires_at: "2026-01-01T00:05:00Z".into(),
            window_started_at: "2026-01-01T00:00:00Z".into(),
            window_ends_at: "2026-01-02T00:00:00Z".into(),
            codes_requested: 1,
            last_requested_at: "2026-01-01T00:00:00Z".into(),
            notice_id: Some("msg-1".into()),
            stopped_reason: None,
        };
        let text = serde_json::to_string(&p).unwrap();
        assert!(!text.to_lowercase().contains("device"), "{text}");
        let back: Pending = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
        assert_eq!(
            back.window(),
            Some(Window::new(
                at("2026-01-01T00:00:00Z"),
                Duration::from_secs(86_400)
            ))
        );
    }

    #[test]
    fn a_record_with_control_characters_or_bad_times_is_refused() {
        let good = Pending {
            state: "stopped".into(),
            reason: Reason::Rejected.name().into(),
            verify_url: "https://example.test/verify".into(),
            user_code: "ABCD".into(),
            // (A stop before any code leaves the times empty.)
            code_expires_at: String::new(),
            window_started_at: "2026-01-01T00:00:00Z".into(),
            window_ends_at: "2026-01-02T00:00:00Z".into(),
            codes_requested: 0,
            last_requested_at: String::new(),
            notice_id: None,
            stopped_reason: Some("failed: no".into()),
        };
        assert_eq!(good.bad_field(), None);
        let mut p = good.clone();
        p.user_code = "AB\u{1b}[2J".into();
        assert_eq!(p.bad_field(), Some("userCode"));
        let mut p = good.clone();
        p.notice_id = Some("m\r\n1".into());
        assert_eq!(p.bad_field(), Some("noticeId"));
        let mut p = good;
        p.window_ends_at = "tomorrow".into();
        assert_eq!(p.bad_field(), Some("windowEndsAt"));
    }

    /// Records what the notifier was told; answers a message id.
    struct FakeTell {
        calls: Mutex<Vec<String>>,
        sim: Arc<webex_sim::Sim>,
        record: PathBuf,
    }

    impl Tell for FakeTell {
        fn code<'a>(
            &'a self,
            notice_id: Option<&'a str>,
            url: &'a str,
            user_code: &'a str,
            _expires_at: Timestamp,
        ) -> BoxFuture<'a, Option<String>> {
            Box::pin(async move {
                let mut calls = self.calls.lock().unwrap();
                assert!(url.ends_with(user_code), "{url}");
                calls.push(format!("code {notice_id:?}"));
                if calls.len() == 2 {
                    // The id given for the first code was saved with it.
                    let saved: Pending =
                        serde_json::from_str(&std::fs::read_to_string(&self.record).unwrap())
                            .unwrap();
                    assert_eq!(saved.notice_id.as_deref(), Some("msg-1"));
                    assert!(self.sim.approve_device(Some(user_code)).is_some());
                }
                Some("msg-1".to_string())
            })
        }
        fn done<'a>(
            &'a self,
            notice_id: Option<&'a str>,
            _who: Option<&'a str>,
            _at: Timestamp,
        ) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                self.calls
                    .lock()
                    .unwrap()
                    .push(format!("done {notice_id:?}"));
            })
        }
        fn stopped<'a>(&'a self, notice_id: Option<&'a str>, _: &'a str) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                self.calls
                    .lock()
                    .unwrap()
                    .push(format!("stopped {notice_id:?}"));
            })
        }
    }

    #[derive(Default)]
    struct Events(Mutex<Vec<String>>);

    impl Report for Events {
        fn report(&self, _: &OrgId, _: Timestamp, event: Event<'_>) {
            if let Event::Reauth(n) = event {
                self.0.lock().unwrap().push(n.name().to_string());
            }
        }
    }

    #[tokio::test]
    async fn the_notifier_is_told_each_code_and_done_with_the_id_it_gave() {
        let sim = Arc::new(
            webex_sim::Sim::start(webex_sim::SimOptions {
                device_interval: Duration::from_secs(1),
                device_code_ttl: Duration::from_secs(2),
                ..webex_sim::SimOptions::default()
            })
            .unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        sim.write_demo_files(dir.path()).unwrap();
        let config = dir.path().join("token-config.json");
        let settings = Settings::for_files(&config, &dir.path().join(".env"));
        let tell = Arc::new(FakeTell {
            calls: Mutex::new(Vec::new()),
            sim: sim.clone(),
            record: record_path(&settings),
        });
        let options = Options {
            min_valid: Duration::from_secs(3600),
            check_interval: Duration::from_secs(3600),
            rt_min_valid: Duration::from_secs(14 * 86_400),
            on_refresh: Vec::new(),
            hook_timeout: Duration::from_secs(5),
            health: None,
            once: false,
            datasources: false,
            ds_min_valid: Duration::from_secs(3600),
            ds_lifetime_minutes: 1440,
            notify_webex: None,
            reauth_window: Duration::from_secs(3600),
            tell: Some(Teller(tell.clone())),
        };
        let events = Events::default();
        let ctx = Ctx {
            settings: &settings,
            options: &options,
            report: &events,
            monitor: Arc::new(Monitor::new(options.min_valid)),
            stopping: Arc::default(),
        };
        let before = std::fs::read_to_string(&config).unwrap();
        let seen = Settings::load_config(&settings)
            .unwrap()
            .personal_token_fingerprint();
        assert_eq!(
            run_flow(&ctx, Reason::Rejected, seen).await,
            Ended::Approved
        );
        assert_eq!(
            *tell.calls.lock().unwrap(),
            ["code None", "code Some(\"msg-1\")", "done Some(\"msg-1\")"]
        );
        assert_eq!(
            *events.0.lock().unwrap(),
            ["reauth_required", "reauth_required", "reauthorized"]
        );
        assert!(!record_path(&settings).exists());
        // Saved as setup-oauth saves it: a new, working personal token.
        let after: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        assert_ne!(std::fs::read_to_string(&config).unwrap(), before);
        let personal = after["tokenManager"]["personalAccessToken"]
            .as_str()
            .unwrap();
        assert!(sim.is_token_valid(personal));
    }

    #[test]
    fn requests_keep_the_strongest_reason() {
        let r = Requests::default();
        r.ask(Reason::Expiring, None);
        r.ask(Reason::Rejected, Some("sha256:1".into()));
        r.ask(Reason::Expiring, None);
        assert_eq!(r.take(), Some(Reason::Rejected));
        // What the rejected tick saw is kept.
        assert_eq!(r.seen().as_deref(), Some("sha256:1"));
        assert_eq!(r.take(), None);
    }
}
