//! One org's loop: load, plan ([`schedule`]), sleep until the deadline (or
//! a signal, or a changed file while waiting for a person), tick, report.
//! The decisions about what a tick's end means for the next one live in
//! [`State`] (pure: `now` and the random draws are passed in).

use super::datasources::{self, DsRound};
use super::hooks;
use super::monitor::Monitor;
use super::reauth;
use super::{Checked, Event, Options, Report};
use crate::chain::{Action, Check, Outcome, Policy};
use crate::clock;
use crate::engine::datasources::extend::{ExtendParams, Extended, Fate, extend_with};
use crate::engine::datasources::fixed_session;
use crate::engine::schedule::{self, Inputs, Task};
use crate::engine::{self, Ctx, signals};
use crate::error::{DsError, Error, exit};
use crate::settings::Settings;
use crate::store::{self, StoreError, TokenStore};
use crate::tokens::{OrgId, StoredTokens};
use crate::webex::ApiError;
use jiff::Timestamp;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long after a rejected chain (or a config error) the next try waits,
/// at most: a `setup-oauth` done meanwhile is also noticed sooner, when the
/// config file changes.
pub(super) const REAUTH_RETRY: Duration = Duration::from_secs(3600);
/// While waiting after such a failure, how often the files are looked at
/// (a `stat`, no request).
const FILE_CHECK: Duration = Duration::from_secs(2);
/// The least time between two ticks (a guard against a plan that would
/// otherwise spin, e.g. a token that lives shorter than `--min-valid`).
pub(super) const MIN_GAP: Duration = Duration::from_secs(1);

/// `now + d`, saturating.
pub(super) fn after(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// Half of what is left of a token that expires at `expires` (at least
/// 1 s): the wait instead of "due again at once" for a token that lives
/// shorter than its window.
pub(super) fn half_life(now: Timestamp, expires: Timestamp) -> Duration {
    Duration::from_secs(clock::seconds_until(now, expires).max(2) as u64 / 2)
}

/// A random share of the jitter window.
fn draw_jitter(min_valid: Duration) -> Duration {
    schedule::jitter_window(min_valid).mul_f64(fastrand::f64())
}

fn policy(min_valid: Duration, mint: bool) -> Policy {
    Policy {
        min_valid,
        force: false,
        mint,
        dry_run: false,
        check: Check::Validate,
    }
}

/// What the loop remembers between ticks, and the rules for changing it.
#[derive(Debug, Clone, Default)]
pub(super) struct State {
    pub last_validated: Option<Timestamp>,
    /// After a failed roll (or a new pair that lives shorter than
    /// `--rt-min-valid`): no roll before this.
    pub roll_not_before: Option<Timestamp>,
    /// After a failure (or a tick): nothing before this.
    pub blocked_until: Option<Timestamp>,
    /// Transient failures in a row.
    pub failures: u32,
    /// The last failure needs a person (every level rejected, config error).
    pub waiting_for_reauth: bool,
    /// Subtracted from the refresh deadline (drawn anew after each refresh).
    pub jitter: Duration,
}

impl State {
    /// The schedule's inputs at `now` for the tokens `t`.
    pub fn inputs(
        &self,
        o: &Options,
        t: &StoredTokens,
        extend_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Inputs {
        Inputs {
            now,
            has_access_token: t.access_token.is_some(),
            access_expires_at: t.access_expires_at,
            has_refresh_token: t.refresh_token.is_some(),
            refresh_expires_at: t.refresh_expires_at,
            last_validated: self.last_validated,
            min_valid: o.min_valid,
            check_interval: o.check_interval,
            rt_min_valid: o.rt_min_valid,
            jitter: self.jitter,
            roll_not_before: self.roll_not_before,
            blocked_until: self.blocked_until,
            extend_at,
        }
    }

    /// The chain's policy for `task`.
    pub fn policy(&self, o: &Options, task: Task) -> Policy {
        match task {
            Task::Validate => policy(o.min_valid, false),
            Task::Refresh => {
                // Wide enough that the chain sees the token as expiring
                // though the tick came a jitter early; no wider, so that a
                // token another watcher saved meanwhile is kept.
                let window = (o.min_valid + self.jitter).as_secs_f64().ceil() as u64;
                policy(Duration::from_secs(window), false)
            }
            Task::Roll => policy(o.min_valid, true),
            // Handled by the data-source round; a plain check if it ever
            // came here.
            Task::Extend => policy(o.min_valid, false),
        }
    }

    /// Webex rejected the stored access token: the next tick (after any
    /// back-off) checks it again, which refreshes it while Webex still
    /// rejects it, instead of trusting it until the next `--check-interval`.
    pub fn token_rejected(&mut self) {
        self.last_validated = None;
    }

    /// SIGHUP: forget the waits and plan anew.
    pub fn hangup(&mut self) {
        self.blocked_until = None;
        self.roll_not_before = None;
        self.failures = 0;
        self.last_validated = None;
    }

    /// A tick of `task` ended with `o` at `now`: what it is called, and the
    /// waits it sets. `jitter` is drawn after a refresh.
    pub fn succeeded(
        &mut self,
        o: &Options,
        task: Task,
        out: &Outcome,
        now: Timestamp,
        jitter: impl FnOnce() -> Duration,
    ) -> Checked {
        self.last_validated = Some(now);
        self.failures = 0;
        self.waiting_for_reauth = false;
        self.blocked_until = Some(after(now, MIN_GAP));
        if task == Task::Roll {
            self.roll_not_before = None;
            // A pair that lives shorter than --rt-min-valid would be rolled
            // again at once: wait half its life instead.
            if engine::rt_expiring(&out.tokens, now, o.rt_min_valid)
                && let Some(e) = out.tokens.refresh_expires_at
            {
                let half = half_life(now, e);
                tracing::warn!(
                    "the new service-app refresh token lives shorter than --rt-min-valid; next roll in {}",
                    clock::human_span(half.as_secs())
                );
                self.roll_not_before = Some(after(now, half.max(MIN_GAP)));
            }
        }
        let exp = clock::expiry_text(out.tokens.access_expires_at, now);
        match &out.action {
            Action::Refreshed { level, .. } => {
                if task == Task::Roll {
                    tracing::info!(
                        "rolled the token pair via {level}; refresh token {}; access token {exp}",
                        clock::expiry_text(out.tokens.refresh_expires_at, now)
                    );
                } else {
                    tracing::info!("refreshed via {level}; the access token {exp}");
                }
                self.jitter = jitter();
                // A token that lives shorter than --min-valid would be due
                // again at once: wait half its life instead.
                if let Some(e) = out.tokens.access_expires_at
                    && e <= after(now, o.min_valid)
                {
                    let half = half_life(now, e);
                    tracing::warn!(
                        "the new access token lives shorter than --min-valid; next refresh in {}",
                        clock::human_span(half.as_secs())
                    );
                    self.blocked_until = Some(after(now, half.max(MIN_GAP)));
                }
                if task == Task::Roll {
                    Checked::Rolled
                } else {
                    Checked::Refreshed
                }
            }
            Action::Kept(_) => {
                tracing::info!("the access token works; {exp}");
                Checked::Validated
            }
            Action::WouldRefresh { .. } => Checked::Validated,
        }
    }

    /// A tick of `task` (`None`: the load) failed at `now`: the wait before
    /// the next try. A transient failure backs off (`jitter01` in [0, 1));
    /// one that needs a person waits `--check-interval` (at most an hour)
    /// or a change of the files. A failed roll holds up only the roll: the
    /// old pair still works.
    pub fn failed(
        &mut self,
        o: &Options,
        task: Option<Task>,
        transient: bool,
        now: Timestamp,
        jitter01: f64,
    ) -> Duration {
        let wait = if transient {
            self.failures = self.failures.saturating_add(1);
            schedule::backoff(self.failures, jitter01)
        } else {
            REAUTH_RETRY.min(o.check_interval.max(MIN_GAP))
        };
        let retry_at = after(now, wait);
        if task == Some(Task::Roll) {
            self.roll_not_before = Some(retry_at);
        } else {
            self.blocked_until = Some(retry_at);
            self.waiting_for_reauth = !transient;
        }
        wait
    }
}

pub(super) struct Watcher<'a> {
    settings: &'a Settings,
    o: &'a Options,
    report: &'a dyn Report,
    store: store::Store,
    org: OrgId,
    monitor: Arc<Monitor>,
    state: State,
    ds: DsRound,
    ready: bool,
    /// SIGHUPs already acted on (each org's watcher sees every one).
    hangups_seen: u64,
    /// Changes when a signal arrives (forwarded to every org's loop).
    wake: tokio::sync::watch::Receiver<u64>,
    /// Set by the first org's loop to log a stop signal.
    stop_told: &'a AtomicBool,
    /// Turns true when the org was taken out of the config: the loop ends
    /// before its next tick (never during one: an exchange and its save
    /// finish first).
    retire: Option<tokio::sync::watch::Receiver<bool>>,
    /// Where a failure that needs a person asks for the device grant.
    reauth: Option<&'a reauth::Requests>,
    /// The fingerprint of the personal token in the files last loaded.
    personal_seen: Option<String>,
    /// Work slots shared by every org's loop (see [`Shared::slots`]).
    slots: &'a tokio::sync::Semaphore,
}

/// What one tick came to.
enum Tick {
    Done,
    Failed(Error),
}

/// What every org's loop shares.
#[derive(Clone)]
pub(super) struct Shared<'a> {
    pub settings: &'a Settings,
    pub options: &'a Options,
    pub report: &'a dyn Report,
    pub monitor: Arc<Monitor>,
    /// Changes when a signal arrives (forwarded to every org's loop).
    pub wake: tokio::sync::watch::Receiver<u64>,
    /// Set by the first org's loop to log a stop signal.
    pub stop_told: &'a AtomicBool,
    /// `None` with `--once` or `--reauth-window 0`.
    pub reauth: Option<&'a reauth::Requests>,
    /// `--concurrency` work slots: an org's loop reads its files and runs
    /// its tick (its lock, its exchanges, its save) or data-source round
    /// only while it holds one, so 1,000 orgs falling due together hold at
    /// most `--concurrency` lock files, connections and config copies, not
    /// 1,000 (the default limit is 1,024 descriptors).
    pub slots: &'a tokio::sync::Semaphore,
}

impl<'a> Watcher<'a> {
    pub fn new(shared: Shared<'a>, store: store::Store, org: OrgId) -> Watcher<'a> {
        let Shared {
            settings,
            options: o,
            report,
            monitor,
            wake,
            stop_told,
            reauth,
            slots,
        } = shared;
        Watcher {
            settings,
            o,
            report,
            store,
            org,
            monitor,
            state: State {
                jitter: draw_jitter(o.min_valid),
                ..State::default()
            },
            ds: DsRound::default(),
            ready: false,
            hangups_seen: signals::hangups(),
            wake,
            stop_told,
            retire: None,
            reauth,
            personal_seen: None,
            slots,
        }
    }

    /// The loop ends (with 0) once `retire` turns true.
    pub fn retired_by(mut self, retire: tokio::sync::watch::Receiver<bool>) -> Self {
        self.retire = Some(retire);
        self
    }

    fn is_retired(&self) -> bool {
        self.retire.as_ref().is_some_and(|r| *r.borrow())
    }

    fn report(&self, event: Event<'_>) {
        self.report.report(&self.org, clock::now(), event);
    }

    /// A failure for people to read. With `--once` and the one configured
    /// org the run ends with this error, which the command prints: not
    /// twice. (With several orgs each one's failure is shown, named.)
    fn problem(&self, e: &Error) {
        if !(self.o.once && self.org.name().is_none()) {
            self.report(Event::Problem(e));
        }
    }

    pub async fn run(mut self) -> Result<u8, Error> {
        self.report(Event::Started {
            env_file: self.store.env_path(),
            config_file: &self.settings.config_path,
            options: self.o,
        });
        if !self.o.once {
            tracing::info!(
                "watching {} (refresh {} before expiry, check every {})",
                self.store.env_path().display(),
                clock::human_span(self.o.min_valid.as_secs()),
                clock::human_span(self.o.check_interval.as_secs())
            );
        }
        loop {
            if let Some(sig) = signals::stop_requested() {
                return Ok(self.stop(signals::signal_name(sig)));
            }
            if self.is_retired() {
                tracing::info!("no longer in the config: stopped watching");
                return Ok(0);
            }
            let hangups = signals::hangups();
            if hangups != self.hangups_seen {
                self.hangups_seen = hangups;
                tracing::info!("SIGHUP: re-reading the config and env file and planning anew");
                self.state.hangup();
                // The data sources too, right after the next check.
                self.ds.ran = false;
            }
            // One of the `--concurrency` work slots from reading the files to
            // the end of the tick (never while asleep). (The semaphore is
            // never closed: `ok()` only drops an impossible error.)
            let slot = self.slots.acquire().await.ok();
            if signals::stop_requested().is_some() {
                // Asked to stop while waiting for the slot: no new tick.
                continue;
            }
            let now = clock::now();
            let snap = match self.store.load(&self.org).await {
                Ok(s) => Some(s),
                Err(e) => {
                    let e = Error::from(e);
                    if self.o.once {
                        return Err(e);
                    }
                    self.observe_local(&e).await;
                    if self.state.blocked_until.is_none_or(|b| b <= now) {
                        self.failed(None, &e, now);
                    }
                    None
                }
            };
            let next = match &snap {
                Some(snap) => {
                    self.monitor.observe(&self.org, &snap.tokens, &snap.config);
                    self.personal_seen = snap.config.personal_token_fingerprint();
                    // Ahead of time: the integration's refresh token cannot
                    // be rolled, so a person is asked before it lapses.
                    if let Some(r) = self.reauth
                        && reauth::integration_expiring(&snap.config, now, self.o.rt_min_valid)
                    {
                        r.ask(reauth::Reason::Expiring, None);
                    }
                    let extend_at =
                        self.ds
                            .due_at(self.o.datasources, self.state.last_validated, now);
                    let inputs = self.state.inputs(self.o, &snap.tokens, extend_at, now);
                    if let Some(task) = schedule::due(&inputs) {
                        let tick = if task == Task::Extend {
                            self.extend().await
                        } else {
                            self.tick(task, &snap.tokens).await
                        };
                        if self.o.once {
                            match tick {
                                // `--once --datasources`: the data sources
                                // too, right after the token is known to work.
                                Tick::Done if self.o.datasources && !self.ds.ran => {
                                    return match self.extend().await {
                                        Tick::Done => Ok(self.ds.code),
                                        Tick::Failed(e) => Err(e),
                                    };
                                }
                                Tick::Done if task == Task::Extend => return Ok(self.ds.code),
                                Tick::Done => return Ok(0),
                                // A failed roll leaves the old pair working:
                                // the tick goes on with the access token.
                                Tick::Failed(e)
                                    if task == Task::Roll && e.exit_code() != exit::TRANSIENT =>
                                {
                                    continue;
                                }
                                Tick::Failed(e) => return Err(e),
                            }
                        }
                        continue;
                    }
                    if self.o.once {
                        // Nothing due cannot happen on a first tick (nothing
                        // was validated yet); be safe anyway.
                        return Ok(0);
                    }
                    Some(schedule::next(&inputs))
                }
                None => None,
            };
            let wake = match next {
                Some(n) => {
                    tracing::debug!("next: {} at {}", n.task.name(), clock::format_utc(n.at));
                    self.monitor.set_next(&self.org, n.at, n.task.name());
                    n.at
                }
                None => self
                    .state
                    .blocked_until
                    .unwrap_or_else(|| clock::after(now, REAUTH_RETRY.as_secs())),
            };
            // Not kept while asleep: the next tick reads the files again, and
            // each org's snapshot holds the whole config (with 1,000 orgs,
            // 1,000 copies of a 1,000-org list).
            drop(snap);
            drop(slot);
            if self.sleep_until(wake).await {
                // A person may have fixed things (`setup-oauth`): try now.
                self.state.blocked_until = None;
            }
        }
    }

    /// Sleeps until `at`, a signal or a wall-clock jump (both come through
    /// `wake`), the org's retirement (taken out of the config), or (while
    /// waiting for a person) a change of the config or env file; true in
    /// that last case. The caller plans anew after each: `at` is a
    /// wall-clock instant, the sleep is on the monotonic clock.
    async fn sleep_until(&mut self, at: Timestamp) -> bool {
        let d = schedule::until(clock::now(), at);
        let watch_files = self.state.waiting_for_reauth;
        // (The state file too: `setup-oauth` writes there when there is one.)
        let mut files = vec![
            self.settings.config_path.clone(),
            self.store.env_path().to_path_buf(),
        ];
        files.extend(self.settings.state_path.clone());
        // With a shared store (etcd) the person may be asked, and approve,
        // on another host: no file here changes, the store does.
        let shared_store = matches!(self.store, store::Store::Etcd(_));
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            Ok(()) = self.wake.changed() => false,
            () = retired(&mut self.retire) => false,
            _ = files_changed(&files), if watch_files => {
                tracing::info!("the config or env file changed: trying again");
                true
            }
            () = store_authorized(&self.store, &self.org, self.personal_seen.clone()),
                if watch_files && shared_store =>
            {
                tracing::info!("the store holds a new authorization (another host): trying again");
                true
            }
        }
    }

    async fn tick(&mut self, task: Task, stored: &StoredTokens) -> Tick {
        let now = clock::now();
        let policy = self.state.policy(self.o, task);
        if task == Task::Roll {
            tracing::info!(
                "the service-app refresh token {}: minting a new pair with level 2 while it still works",
                clock::expiry_text(stored.refresh_expires_at, now)
            );
        }
        let ctx = Ctx::of(self.settings, "watch", self.store.env_path());
        let result = engine::ensure(
            &self.store,
            |c| self.settings.api(c),
            &policy,
            &self.org,
            &ctx,
        )
        .await;
        let now = clock::now();
        match result {
            Ok(outcome) => {
                self.succeeded(task, &outcome, now).await;
                Tick::Done
            }
            Err(e) => {
                self.failed(Some(task), &e, now);
                Tick::Failed(e)
            }
        }
    }

    async fn succeeded(&mut self, task: Task, out: &Outcome, now: Timestamp) {
        let min_valid = self.o.min_valid;
        let checked = self
            .state
            .succeeded(self.o, task, out, now, || draw_jitter(min_valid));
        self.monitor.succeeded(&self.org, now, out);
        self.report(Event::Checked {
            checked,
            task,
            outcome: out,
            env_file: self.store.env_path(),
            config_file: &self.settings.config_path,
        });
        self.notify_ready(out, now);
        if checked != Checked::Validated {
            self.run_hooks(checked.name(), &out.tokens).await;
        }
    }

    /// `--datasources`: renews the data-source tokens that expire within
    /// `--ds-min-valid` (as `datasources extend --all`) and plans the next
    /// run for the earliest expiry left minus `--ds-min-valid`.
    ///
    /// The round uses the watcher's token as it is stored: one freshness
    /// policy per run, so only the watcher's tick refreshes (and every
    /// token saved is announced: event, hook, audit). A 401 from one data
    /// source is that data source's failure; a 401 on the listing means
    /// Webex rejected the token: it is marked so and the tick checks it at
    /// once (and refreshes it, announced). With `--once` that check and one
    /// more round run here.
    async fn extend(&mut self) -> Tick {
        self.ds.ran = true;
        let mut result = self.ds_round().await;
        if let Err(e) = &result
            && listing_rejected(e)
        {
            let now = clock::now();
            tracing::warn!(
                "Webex rejected the service-app access token on the data-source listing ({e}); checking it now"
            );
            self.monitor.rejected(&self.org, now);
            // The tick is due at once: a validation (a refresh if Webex
            // rejects the token again).
            self.state.token_rejected();
            if self.o.once {
                match self.store.load(&self.org).await {
                    Ok(snap) => {
                        if let Tick::Failed(e) = self.tick(Task::Validate, &snap.tokens).await {
                            return Tick::Failed(e);
                        }
                        result = self.ds_round().await;
                    }
                    Err(e) => result = Err(e.into()),
                }
            }
        }
        let now = clock::now();
        let done = match result {
            Ok(done) => done,
            Err(e) => {
                self.ds.code = e.exit_code();
                let retry_at = self.ds.retry(now, fastrand::f64());
                // (`--once` ends with this error instead: no retry to announce.)
                if !self.o.once {
                    tracing::warn!(
                        "could not renew the data sources (trying again at {}): {e}",
                        clock::format_utc(retry_at)
                    );
                }
                self.problem(&e);
                self.monitor.failed(&self.org, &e, false);
                self.report(Event::DataSourcesFailed {
                    error: &e,
                    retry_at,
                });
                return Tick::Failed(e);
            }
        };
        self.ds.code = done.code;
        let summary = datasources::summary(&done);
        let next = if summary.failed > 0 {
            let items: Vec<(String, &Error)> = done
                .results
                .iter()
                .filter_map(|(id, f)| match f {
                    Fate::Failed(e) => Some((id.clone(), e)),
                    _ => None,
                })
                .collect();
            self.report(Event::DataSourceProblems {
                summary: format!(
                    "{} of {} data sources could not be renewed",
                    summary.failed,
                    done.results.len()
                ),
                exit_code: done.code,
                items,
            });
            self.ds.retry(now, fastrand::f64())
        } else {
            self.ds
                .plan(&done, now, self.o.ds_min_valid, self.o.check_interval)
        };
        tracing::info!(
            "data sources: {} renewed, {} skipped{}; next renewal run at {}",
            summary.extended,
            summary.skipped,
            if summary.failed > 0 {
                format!(", {} failed", summary.failed)
            } else {
                String::new()
            },
            clock::format_utc(next)
        );
        let name = if summary.extended > 0 {
            Some("extended")
        } else if summary.failed > 0 {
            Some("failed")
        } else {
            None
        };
        if let Some(name) = name {
            self.report(Event::DataSources {
                name,
                run: &done,
                summary,
                ds_min_valid: self.o.ds_min_valid,
                next_at: next,
            });
        }
        if summary.extended > 0 {
            match self.store.load(&self.org).await {
                Ok(snap) => self.run_hooks("extended", &snap.tokens).await,
                Err(e) => tracing::warn!("could not read the tokens for the hooks: {e}"),
            }
        }
        Tick::Done
    }

    /// One renewal run through a session holding the stored access token
    /// (see [`Watcher::extend`]).
    async fn ds_round(&self) -> Result<Extended, Error> {
        let snap = self.store.load(&self.org).await?;
        let token = snap.tokens.access_token.clone().ok_or_else(|| {
            Error::Other(
                "no service-app access token is stored for the data-source calls; the next check gets one"
                    .into(),
            )
        })?;
        let params = ExtendParams {
            all: true,
            ids: &[],
            min_valid: self.o.ds_min_valid,
            lifetime: self.o.ds_lifetime_minutes,
            dry_run: false,
            concurrency: self.settings.concurrency,
        };
        let session = fixed_session(self.settings, &snap.config, token);
        extend_with(self.settings, "watch", &params, &session).await
    }

    /// The store could not be reached: the token is judged by this host's
    /// own copy (for etcd: the export), as `token` does, so health and
    /// READY follow the token through a store outage.
    async fn observe_local(&self, e: &Error) {
        if !matches!(e, Error::Store(StoreError::Unreachable { .. })) {
            return;
        }
        match self.store.load_local(&self.org).await {
            Ok(snap) => self.monitor.observe(&self.org, &snap.tokens, &snap.config),
            Err(e) => tracing::debug!("this host's copy of the tokens cannot be read either: {e}"),
        }
    }

    fn failed(&mut self, task: Option<Task>, e: &Error, now: Timestamp) {
        let transient = e.exit_code() == exit::TRANSIENT;
        let wait = self
            .state
            .failed(self.o, task, transient, now, fastrand::f64());
        if let Error::Chain(c) = e
            && c.stored_token_rejected()
        {
            self.state.token_rejected();
        }
        let retry_at = after(now, wait);
        if task == Some(Task::Roll) {
            tracing::warn!(
                "could not roll the service-app refresh token (trying again in {}): {e}",
                clock::human_span(wait.as_secs())
            );
        } else {
            self.problem(e);
            if self.o.once {
                // The run ends with this failure: no retry to announce.
            } else if transient {
                tracing::warn!(
                    "transient failure; trying again in {}",
                    clock::human_span(wait.as_secs())
                );
            } else {
                tracing::error!(
                    "watch keeps running: it tries again in {} or as soon as the config or env file changes (e.g. after `webex-token setup-oauth`)",
                    clock::human_span(wait.as_secs())
                );
            }
        }
        if let Some(r) = self.reauth
            && task.is_some_and(|t| t != Task::Roll)
            && reauth::wanted_after(e)
        {
            r.ask(reauth::Reason::Rejected, self.personal_seen.clone());
        }
        self.monitor
            .failed(&self.org, e, task.is_none_or(|t| t != Task::Roll));
        let problem = format!(
            "{}: {e}",
            if transient {
                "transient failure"
            } else {
                "needs attention"
            }
        );
        // Health and READY follow the token: a stored token that works
        // (valid long enough, not rejected by Webex) through a Webex or
        // store outage is still a working agent, with the outage beside it.
        match self.monitor.working_until(&self.org, now) {
            Some(expires) => self.notify_working(Some(expires), now, Some(&problem)),
            None => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&problem)]);
            }
        }
        self.report(Event::Failed {
            task,
            error: e,
            retry_at,
        });
    }

    fn notify_ready(&mut self, o: &Outcome, now: Timestamp) {
        self.notify_working(o.tokens.access_expires_at, now, None);
    }

    /// READY (the first time) and STATUS for a working token that expires
    /// at `expires`, with the `problem` of the last tick if it failed.
    fn notify_working(
        &mut self,
        expires: Option<Timestamp>,
        now: Timestamp,
        problem: Option<&str>,
    ) {
        let mut status = format!("access token {}", clock::expiry_text(expires, now));
        if let Some(p) = problem {
            status.push_str("; ");
            status.push_str(p);
        }
        let mut states = vec![sd_notify::NotifyState::Status(&status)];
        if !self.ready {
            states.insert(0, sd_notify::NotifyState::Ready);
        }
        if let Err(e) = sd_notify::notify(&states) {
            tracing::debug!("sd_notify: {e}");
        }
        self.ready = true;
    }

    fn stop(&self, signal: &str) -> u8 {
        if !self.stop_told.swap(true, Ordering::SeqCst) {
            // Once for the process, outside any org's span.
            tracing::info!(parent: None, "{signal} received: stopping");
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        }
        self.report(Event::Stopping { signal });
        0
    }

    /// Runs each `--on-refresh` command after a saved change.
    async fn run_hooks(&self, trigger: &'static str, tokens: &StoredTokens) {
        for cmd in &self.o.on_refresh {
            let whose = hooks::HookEnv {
                org: self.org.name(),
                env_file: self.store.env_path(),
            };
            let run = hooks::run(cmd, trigger, tokens, self.o.hook_timeout, &whose).await;
            match run.detail() {
                None => tracing::info!("hook `{cmd}` ran ({trigger})"),
                Some(d) => tracing::warn!("hook `{cmd}` {d}; the saved tokens stay as they are"),
            }
            self.monitor.hook(&self.org, run.outcome_name());
            if let Some(path) = self.settings.audit_log.as_deref() {
                crate::audit::record(
                    path,
                    &crate::audit::HookEvent {
                        command: "watch",
                        operation: "hook",
                        event: trigger,
                        hook: cmd,
                        outcome: run.outcome_name(),
                        exit_code: run.exit_code(),
                        error: run.detail(),
                        duration_ms: run.duration_ms(),
                        env_file: self.store.env_path().display().to_string(),
                    },
                );
            }
            self.report(Event::Hook(&run));
        }
    }
}

/// Resolves when `retire` turns true (never without one).
async fn retired(retire: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    if let Some(r) = retire
        && r.wait_for(|gone| *gone).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// A data-source run that failed as a whole on a 401: only the listing
/// can (a renewal's 401 is a failure of that data source): Webex rejected
/// the service-app token.
fn listing_rejected(e: &Error) -> bool {
    matches!(
        e,
        Error::DataSource(DsError::Api {
            error: ApiError::Rejected { .. },
            ..
        })
    )
}

/// How often a loop waiting for a person reads a shared store to see
/// whether the integration was authorized again elsewhere (one etcd read).
const STORE_CHECK: Duration = Duration::from_secs(10);

/// Resolves when the store's personal token is no longer the one `seen`
/// (a re-authorization saved by another host of the fleet, or by a
/// `setup-oauth` there). A read that fails is tried again at the next look.
async fn store_authorized(store: &store::Store, org: &OrgId, seen: Option<String>) {
    loop {
        tokio::time::sleep(STORE_CHECK).await;
        if let Ok(snap) = store.load(org).await
            && snap.config.personal_token_fingerprint() != seen
        {
            return;
        }
    }
}

/// Resolves when the config or env file changes (size, mtime, presence).
async fn files_changed(paths: &[PathBuf]) {
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let first: Vec<_> = paths.iter().map(|p| stamp(p)).collect();
    loop {
        tokio::time::sleep(FILE_CHECK).await;
        let now: Vec<_> = paths.iter().map(|p| stamp(p)).collect();
        if now != first {
            return;
        }
    }
}
