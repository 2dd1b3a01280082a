//! `watch`: keep the tokens working for as long as the process runs (a
//! systemd service, a container sidecar).
//!
//! A loop around [`engine::ensure`] that sleeps until the next deadline
//! ([`engine::schedule`]) instead of polling, re-reads the config and env
//! file on every tick, rolls the service-app refresh token through level 2
//! before it lapses, backs off on failures, runs `--on-refresh` hooks after
//! each saved change (outside the lock), talks to systemd (`sd_notify`) and
//! optionally serves `/healthz` and `/metrics`.

use crate::audit;
use crate::chain::{Action, Check, Outcome, Policy};
use crate::cli::MAX_TOKEN_LIFETIME_MINUTES;
use crate::cli::{HealthcheckArgs, WatchArgs};
use crate::clock;
use crate::engine::datasources::OrgFiles;
use crate::engine::datasources::extend::{ExtendParams, Extended, Fate, extend_org};
use crate::engine::schedule::{self, Inputs, Task};
use crate::engine::{self, signals};
use crate::error::{Error, exit};
use crate::output::{self, Printer};
use crate::settings::Settings;
use crate::store::{self, TokenStore};
use crate::tokens::{OrgId, StoredTokens};
use jiff::Timestamp;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long after a rejected chain (or a config error) the next try waits,
/// at most: a `setup-oauth` done meanwhile is also noticed sooner, when the
/// config file changes.
const REAUTH_RETRY: Duration = Duration::from_secs(3600);
/// While waiting after such a failure, how often the files are looked at
/// (a `stat`, no request).
const FILE_CHECK: Duration = Duration::from_secs(2);
/// The least time between two ticks (a guard against a plan that would
/// otherwise spin, e.g. a token that lives shorter than `--min-valid`).
const MIN_GAP: Duration = Duration::from_secs(1);

pub async fn run(settings: &Settings, printer: &Printer, a: &WatchArgs) -> Result<u8, Error> {
    if let Some(addr) = a.health
        && !addr.ip().is_loopback()
        && !a.health_allow_remote
    {
        tracing::error!(
            "--health {addr} is not a loopback address; the health endpoint is served on 127.0.0.1 or ::1 only unless --health-allow-remote is given"
        );
        return Ok(exit::USAGE);
    }
    let monitor = Arc::new(Monitor::new(a.min_valid));
    if let Some(addr) = a.health {
        match tiny_http::Server::http(addr) {
            Ok(server) => {
                // The port actually bound (`:0` picks a free one).
                let bound = server.server_addr().to_ip().unwrap_or(addr);
                let m = monitor.clone();
                std::thread::spawn(move || serve(server, &m));
                tracing::info!("serving /healthz and /metrics on http://{bound}");
            }
            Err(e) => {
                tracing::error!("could not listen on {addr} for --health: {e}");
                return Ok(exit::CONFIG);
            }
        }
    }
    if let Some(every) = sd_notify::watchdog_enabled() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every / 2);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
    // With `serviceApp.orgs`: one watcher per chosen org, side by side
    // (each with its own env file, lock, schedule and data sources).
    let orgs: Vec<(OrgId, store::Store)> = match settings.org_targets(None)? {
        Some(targets) => targets.into_iter().map(|t| (t.org, t.store)).collect(),
        None => vec![(OrgId::configured(), settings.store())],
    };
    for (org, _) in &orgs {
        monitor.register(org);
    }
    // A signal wakes one waiter; every org's loop must see it (a SIGTERM
    // must not wait for the other orgs' next deadlines), so one task
    // forwards each to all of them.
    let (wake_tx, wake) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        loop {
            signals::changed().await;
            wake_tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    });
    let watchers = orgs.into_iter().map(|(org, store)| {
        let monitor = monitor.clone();
        let wake = wake.clone();
        async move {
            let mut w = Watcher {
                settings,
                printer,
                a,
                store,
                org,
                monitor,
                last_validated: None,
                roll_not_before: None,
                blocked_until: None,
                failures: 0,
                waiting_for_reauth: false,
                ready: false,
                jitter: draw_jitter(a.min_valid),
                ds_next: None,
                ds_failures: 0,
                ds_code: 0,
                ds_ran: false,
                hangups_seen: signals::hangups(),
                wake,
            };
            w.start();
            w.run().await
        }
    });
    let results = futures_util::future::join_all(watchers).await;
    let mut worst: Option<Result<u8, Error>> = None;
    for r in results {
        let code = match &r {
            Ok(c) => *c,
            Err(e) => e.exit_code(),
        };
        let before = match &worst {
            None => None,
            Some(Ok(c)) => Some(*c),
            Some(Err(e)) => Some(e.exit_code()),
        };
        if before.is_none_or(|b| exit::worst([b, code]) != b) {
            worst = Some(r);
        }
    }
    worst.unwrap_or(Ok(0))
}

/// A random share of the jitter window.
fn draw_jitter(min_valid: Duration) -> Duration {
    schedule::jitter_window(min_valid).mul_f64(fastrand::f64())
}

struct Watcher<'a> {
    settings: &'a Settings,
    printer: &'a Printer,
    a: &'a WatchArgs,
    store: store::Store,
    org: OrgId,
    monitor: Arc<Monitor>,
    last_validated: Option<Timestamp>,
    roll_not_before: Option<Timestamp>,
    blocked_until: Option<Timestamp>,
    /// Transient failures in a row.
    failures: u32,
    /// The last failure needs a person (every level rejected, config error).
    waiting_for_reauth: bool,
    ready: bool,
    jitter: Duration,
    /// `--datasources`: when the data sources are next due (after the
    /// first run).
    ds_next: Option<Timestamp>,
    /// Data-source renewal runs that failed in a row.
    ds_failures: u32,
    /// The exit code of the last renewal run (for `--once`).
    ds_code: u8,
    /// A renewal run has been made.
    ds_ran: bool,
    /// SIGHUPs already acted on (each org's watcher sees every one).
    hangups_seen: u64,
    /// Changes when a signal arrives (forwarded to every org's loop).
    wake: tokio::sync::watch::Receiver<u64>,
}

/// What one tick came to.
enum Tick {
    Done,
    Failed(Error),
}

impl Watcher<'_> {
    fn start(&self) {
        let (settings, a) = (self.settings, self.a);
        self.event(
            "started",
            json!({
                "envFile": self.store.env_path().display().to_string(),
                "configFile": settings.config_path.display().to_string(),
                "minValidSeconds": a.min_valid.as_secs(),
                "checkIntervalSeconds": a.check_interval.as_secs(),
                "rtMinValidSeconds": a.rt_min_valid.as_secs(),
                "health": a.health.map(|h| h.to_string()),
                "datasources": a.datasources,
                "dsMinValidSeconds": a.datasources.then_some(a.ds_min_valid.as_secs()),
                "once": a.once,
            }),
        );
        if !a.once {
            tracing::info!(
                "watching {} (refresh {} before expiry, check every {})",
                self.store.env_path().display(),
                clock::human_span(a.min_valid.as_secs()),
                clock::human_span(a.check_interval.as_secs())
            );
        }
    }

    fn event(&self, name: &str, fields: Value) {
        let mut fields = fields;
        if let Value::Object(m) = &mut fields {
            m.insert("command".into(), json!("watch"));
            if let Some(org) = self.org.name() {
                m.insert("org".into(), json!(org));
            }
        }
        self.printer.watch_event(name, clock::now(), fields);
    }

    async fn run(&mut self) -> Result<u8, Error> {
        loop {
            if let Some(sig) = signals::stop_requested() {
                return Ok(self.stop(signals::signal_name(sig)));
            }
            let hangups = signals::hangups();
            if hangups != self.hangups_seen {
                self.hangups_seen = hangups;
                tracing::info!("SIGHUP: re-reading the config and env file and planning anew");
                self.blocked_until = None;
                self.roll_not_before = None;
                self.failures = 0;
                self.last_validated = None;
                // The data sources too, right after the next check.
                self.ds_ran = false;
            }
            let now = clock::now();
            let snap = match self.store.load(&self.org).await {
                Ok(s) => Some(s),
                Err(e) => {
                    let e = Error::from(e);
                    if self.a.once {
                        return Err(e);
                    }
                    if self.blocked_until.is_none_or(|b| b <= now) {
                        self.failed(None, &e, now);
                    }
                    None
                }
            };
            let next = match &snap {
                Some(snap) => {
                    self.monitor.observe(&self.org, &snap.tokens, &snap.config);
                    let inputs = self.inputs(&snap.tokens, now);
                    if let Some(task) = schedule::due(&inputs) {
                        let tick = if task == Task::Extend {
                            self.extend().await
                        } else {
                            self.tick(task, &snap.tokens).await
                        };
                        if self.a.once {
                            match tick {
                                // `--once --datasources`: the data sources
                                // too, right after the token is known to work.
                                Tick::Done if self.a.datasources && !self.ds_ran => {
                                    return match self.extend().await {
                                        Tick::Done => Ok(self.ds_code),
                                        Tick::Failed(e) => Err(e),
                                    };
                                }
                                Tick::Done if task == Task::Extend => return Ok(self.ds_code),
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
                    if self.a.once {
                        // Nothing due cannot happen on a first tick (nothing
                        // was validated yet); be safe anyway.
                        return Ok(0);
                    }
                    let n = schedule::next(&inputs);
                    Some(n)
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
                    .blocked_until
                    .unwrap_or_else(|| clock::after(now, REAUTH_RETRY.as_secs())),
            };
            if self.sleep_until(wake).await {
                // A person may have fixed things (`setup-oauth`): try now.
                self.blocked_until = None;
            }
        }
    }

    fn inputs(&self, t: &StoredTokens, now: Timestamp) -> Inputs {
        Inputs {
            now,
            has_access_token: t.access_token.is_some(),
            access_expires_at: t.access_expires_at,
            has_refresh_token: t.refresh_token.is_some(),
            refresh_expires_at: t.refresh_expires_at,
            last_validated: self.last_validated,
            min_valid: self.a.min_valid,
            check_interval: self.a.check_interval,
            rt_min_valid: self.a.rt_min_valid,
            jitter: self.jitter,
            roll_not_before: self.roll_not_before,
            blocked_until: self.blocked_until,
            // The first renewal run comes right after the first check
            // (which may refresh the token the renewals use).
            extend_at: match (self.a.datasources, self.ds_ran) {
                (false, _) => None,
                (true, true) => self.ds_next,
                (true, false) => self.last_validated.map(|_| now),
            },
        }
    }

    /// Sleeps until `at`, a signal, or (while waiting for a person) a
    /// change of the config or env file; true in that last case.
    async fn sleep_until(&mut self, at: Timestamp) -> bool {
        let d = schedule::until(clock::now(), at);
        let watch_files = self.waiting_for_reauth;
        // (The state file too: `setup-oauth` writes there when there is one.)
        let mut files = vec![
            self.settings.config_path.clone(),
            self.store.env_path().to_path_buf(),
        ];
        files.extend(self.settings.state_path.clone());
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            Ok(()) = self.wake.changed() => false,
            _ = files_changed(&files), if watch_files => {
                tracing::info!("the config or env file changed: trying again");
                true
            }
        }
    }

    async fn tick(&mut self, task: Task, stored: &StoredTokens) -> Tick {
        let now = clock::now();
        let policy = match task {
            Task::Validate => policy(self.a.min_valid, false),
            Task::Refresh => {
                // Wide enough that the chain sees the token as expiring
                // though the tick came a jitter early; no wider, so that a
                // token another watcher saved meanwhile is kept.
                let window = (self.a.min_valid + self.jitter).as_secs_f64().ceil() as u64;
                policy(Duration::from_secs(window), false)
            }
            Task::Roll => policy(self.a.min_valid, true),
            // Handled by `extend`; a plain check if it ever came here.
            Task::Extend => policy(self.a.min_valid, false),
        };
        if task == Task::Roll {
            tracing::info!(
                "the service-app refresh token {}: minting a new pair with level 2 while it still works",
                output::expiry_text(stored.refresh_expires_at, now)
            );
        }
        let ctx = super::ctx_for(self.settings, "watch", self.store.env_path());
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

    async fn succeeded(&mut self, task: Task, o: &Outcome, now: Timestamp) {
        self.last_validated = Some(now);
        self.failures = 0;
        self.waiting_for_reauth = false;
        self.blocked_until = Some(clock_after(now, MIN_GAP));
        if task == Task::Roll {
            self.roll_not_before = None;
            // A pair that lives shorter than --rt-min-valid would be rolled
            // again at once: wait half its life instead.
            if engine::rt_expiring(&o.tokens, now, self.a.rt_min_valid)
                && let Some(e) = o.tokens.refresh_expires_at
            {
                let half = Duration::from_secs(clock::seconds_until(now, e).max(2) as u64 / 2);
                tracing::warn!(
                    "the new service-app refresh token lives shorter than --rt-min-valid; next roll in {}",
                    clock::human_span(half.as_secs())
                );
                self.roll_not_before = Some(clock_after(now, half.max(MIN_GAP)));
            }
        }
        self.monitor.succeeded(&self.org, now, o);
        let fields = {
            let mut v =
                output::refresh_json(o, now, self.store.env_path(), &self.settings.config_path);
            if let Value::Object(m) = &mut v {
                m.remove("schemaVersion");
                m.remove("command");
                m.insert("task".into(), json!(task.name()));
            }
            v
        };
        let exp = output::expiry_text(o.tokens.access_expires_at, now);
        let event = match &o.action {
            Action::Refreshed { level, .. } => {
                let event = if task == Task::Roll {
                    "rolled"
                } else {
                    "refreshed"
                };
                if task == Task::Roll {
                    tracing::info!(
                        "rolled the token pair via {level}; refresh token {}; access token {exp}",
                        output::expiry_text(o.tokens.refresh_expires_at, now)
                    );
                } else {
                    tracing::info!("refreshed via {level}; the access token {exp}");
                }
                self.jitter = draw_jitter(self.a.min_valid);
                // A token that lives shorter than --min-valid would be due
                // again at once: wait half its life instead.
                if let Some(e) = o.tokens.access_expires_at
                    && e <= clock_after(now, self.a.min_valid)
                {
                    let half = Duration::from_secs(clock::seconds_until(now, e).max(2) as u64 / 2);
                    tracing::warn!(
                        "the new access token lives shorter than --min-valid; next refresh in {}",
                        clock::human_span(half.as_secs())
                    );
                    self.blocked_until = Some(clock_after(now, half.max(MIN_GAP)));
                }
                Some(event)
            }
            Action::Kept(_) => {
                tracing::info!("the access token works; {exp}");
                None
            }
            Action::WouldRefresh { .. } => None,
        };
        self.event(event.unwrap_or("validated"), fields);
        self.notify_ready(o, now);
        if let Some(event) = event {
            self.run_hooks(event, &o.tokens).await;
        }
    }

    /// `--datasources`: renews the data-source tokens that expire within
    /// `--ds-min-valid` (as `datasources extend --all`) and plans the next
    /// run for the earliest expiry left minus `--ds-min-valid`.
    async fn extend(&mut self) -> Tick {
        self.ds_ran = true;
        let org = OrgFiles {
            org: self.org.clone(),
            store: self.store.clone(),
        };
        let params = ExtendParams {
            all: true,
            ids: &[],
            min_valid: self.a.ds_min_valid,
            lifetime: MAX_TOKEN_LIFETIME_MINUTES,
            dry_run: false,
            concurrency: self.settings.concurrency,
        };
        let result = extend_org(self.settings, "watch", &params, &org).await;
        let now = clock::now();
        let done = match result {
            Ok(done) => done,
            Err(e) => {
                self.ds_code = e.exit_code();
                let retry_at = self.ds_retry(now);
                tracing::warn!(
                    "could not renew the data sources (trying again at {}): {e}",
                    clock::format_utc(retry_at)
                );
                self.printer.stderr_error("watch", &e);
                self.monitor.failed(&self.org, &e, false);
                self.event(
                    "failed",
                    json!({
                        "task": Task::Extend.name(),
                        "exitCode": e.exit_code(),
                        "error": output::error_json_fields(&e),
                        "retryAt": clock::format_utc(retry_at),
                    }),
                );
                return Tick::Failed(e);
            }
        };
        self.ds_code = done.code;
        let count = |f: fn(&Fate) -> bool| done.results.iter().filter(|(_, x)| f(x)).count();
        let extended = count(|f| matches!(f, Fate::Extended { .. }));
        let skipped = count(|f| matches!(f, Fate::Skipped { .. }));
        let failed = count(|f| matches!(f, Fate::Failed(_) | Fate::NotAttempted));
        let next = if failed > 0 {
            let items: Vec<(String, &Error)> = done
                .results
                .iter()
                .filter_map(|(id, f)| match f {
                    Fate::Failed(e) => Some((id.clone(), e)),
                    _ => None,
                })
                .collect();
            self.printer.stderr_failures(
                "watch",
                &format!(
                    "{failed} of {} data sources could not be renewed",
                    done.results.len()
                ),
                done.code,
                &items,
            );
            self.ds_retry(now)
        } else {
            self.ds_failures = 0;
            self.ds_plan(&done, now)
        };
        self.ds_next = Some(next);
        tracing::info!(
            "data sources: {extended} renewed, {skipped} skipped{}; next renewal run at {}",
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            },
            clock::format_utc(next)
        );
        let fields = json!({
            "task": Task::Extend.name(),
            "exitCode": done.code,
            "dsMinValidSeconds": self.a.ds_min_valid.as_secs(),
            "serviceAppTokenRefreshed": done.refreshed,
            "summary": {"extended": extended, "skipped": skipped, "failed": failed},
            "dataSources": ds_results_json(&done, now),
            "nextAt": clock::format_utc(next),
        });
        if extended > 0 {
            self.event("extended", fields);
            match self.store.load(&self.org).await {
                Ok(snap) => self.run_hooks("extended", &snap.tokens).await,
                Err(e) => tracing::warn!("could not read the tokens for the hooks: {e}"),
            }
        } else if failed > 0 {
            self.event("failed", fields);
        }
        Tick::Done
    }

    /// After a failed renewal run: back off (5 s doubling to 5 min).
    fn ds_retry(&mut self, now: Timestamp) -> Timestamp {
        self.ds_failures = self.ds_failures.saturating_add(1);
        let at = clock_after(now, schedule::backoff(self.ds_failures, fastrand::f64()));
        self.ds_next = Some(at);
        at
    }

    /// The next renewal run: the earliest known token expiry minus
    /// `--ds-min-valid`; with no known expiry, after `--check-interval`
    /// (to notice new data sources); a token that lives shorter than
    /// `--ds-min-valid` waits half its life.
    fn ds_plan(&self, done: &Extended, now: Timestamp) -> Timestamp {
        let earliest = done
            .results
            .iter()
            .filter_map(|(_, f)| match f {
                Fate::Skipped { expires } => Some(*expires),
                Fate::Extended { after, .. } => *after,
                _ => None,
            })
            .min();
        let Some(earliest) = earliest else {
            return clock_after(now, self.a.check_interval.max(MIN_GAP));
        };
        let window = jiff::SignedDuration::try_from(self.a.ds_min_valid)
            .unwrap_or(jiff::SignedDuration::MAX);
        let at = earliest.checked_sub(window).unwrap_or(Timestamp::MIN);
        if at > clock_after(now, MIN_GAP) {
            return at;
        }
        let half = Duration::from_secs(clock::seconds_until(now, earliest).max(2) as u64 / 2);
        tracing::warn!(
            "a data-source token lives shorter than --ds-min-valid; next renewal run in {}",
            clock::human_span(half.as_secs())
        );
        clock_after(now, half.max(MIN_GAP))
    }

    fn failed(&mut self, task: Option<Task>, e: &Error, now: Timestamp) {
        let code = e.exit_code();
        let transient = code == exit::TRANSIENT;
        let wait = if transient {
            self.failures = self.failures.saturating_add(1);
            schedule::backoff(self.failures, fastrand::f64())
        } else {
            REAUTH_RETRY.min(self.a.check_interval.max(MIN_GAP))
        };
        let retry_at = clock_after(now, wait);
        if task == Some(Task::Roll) {
            // The old pair still works: only the roll waits.
            self.roll_not_before = Some(retry_at);
            tracing::warn!(
                "could not roll the service-app refresh token (trying again in {}): {e}",
                clock::human_span(wait.as_secs())
            );
        } else {
            self.blocked_until = Some(retry_at);
            self.waiting_for_reauth = !transient;
            self.printer.stderr_error("watch", e);
            if transient {
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
        self.monitor
            .failed(&self.org, e, task.is_none_or(|t| t != Task::Roll));
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&format!(
            "{}: {e}",
            if transient {
                "transient failure"
            } else {
                "needs attention"
            }
        ))]);
        self.event(
            "failed",
            json!({
                "task": task.map(Task::name),
                "exitCode": code,
                "error": output::error_json_fields(e),
                "attempts": output::attempts_json(e.attempts()),
                "retryAt": clock::format_utc(retry_at),
            }),
        );
    }

    fn notify_ready(&mut self, o: &Outcome, now: Timestamp) {
        let status = format!(
            "access token {}",
            output::expiry_text(o.tokens.access_expires_at, now)
        );
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
        tracing::info!("{signal} received: stopping");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        self.event("stopping", json!({"signal": signal}));
        0
    }

    /// Runs each `--on-refresh` command after a saved change.
    async fn run_hooks(&self, event: &str, tokens: &StoredTokens) {
        for cmd in &self.a.on_refresh {
            let started = std::time::Instant::now();
            let outcome = run_hook(cmd, event, tokens, self.a.hook_timeout).await;
            let ms = started.elapsed().as_millis() as u64;
            let (name, exit_code, detail) = match &outcome {
                HookOutcome::Ok => ("ok", Some(0), None),
                HookOutcome::Failed(code) => (
                    "failed",
                    *code,
                    Some(match code {
                        Some(c) => format!("exited with {c}"),
                        None => "ended by a signal".to_string(),
                    }),
                ),
                HookOutcome::TimedOut => (
                    "timeout",
                    None,
                    Some(format!(
                        "still running after {}; killed",
                        clock::human_span(self.a.hook_timeout.as_secs())
                    )),
                ),
                HookOutcome::NotStarted(e) => {
                    ("failed", None, Some(format!("could not start: {e}")))
                }
            };
            match &detail {
                None => tracing::info!("hook `{cmd}` ran ({event})"),
                Some(d) => tracing::warn!("hook `{cmd}` {d}; the saved tokens stay as they are"),
            }
            self.monitor.hook(&self.org, name);
            if let Some(path) = self.settings.audit_log.as_deref() {
                audit::append(
                    path,
                    json!({
                        "command": "watch",
                        "operation": "hook",
                        "event": event,
                        "hook": cmd,
                        "outcome": name,
                        "exitCode": exit_code,
                        "error": detail,
                        "durationMs": ms,
                        "envFile": self.store.env_path().display().to_string(),
                    }),
                );
            }
            self.event(
                "hook",
                json!({
                    "hook": cmd,
                    "trigger": event,
                    "outcome": name,
                    "exitCode": exit_code,
                    "error": detail,
                    "durationMs": ms,
                }),
            );
        }
    }
}

/// Each data source of a renewal run: what happened, its token's expiry
/// and fingerprint (never the token).
fn ds_results_json(done: &Extended, now: Timestamp) -> Vec<Value> {
    let at = |t: Option<Timestamp>| {
        json!({
            "expiresAt": t.map(clock::format_utc),
            "secondsLeft": t.map(|t| clock::seconds_until(now, t)),
        })
    };
    done.results
        .iter()
        .map(|(id, f)| match f {
            Fate::Skipped { expires } => {
                json!({"id": id, "action": "skipped", "before": at(Some(*expires))})
            }
            Fate::WouldExtend { expires } => {
                json!({"id": id, "action": "would_extend", "before": at(*expires)})
            }
            Fate::Extended {
                before, after, jws, ..
            } => json!({
                "id": id, "action": "extended", "before": at(*before),
                "after": at(*after), "jwsTokenFingerprint": jws,
            }),
            Fate::Failed(e) => json!({
                "id": id, "action": "failed", "error": output::error_json_fields(e),
            }),
            Fate::NotAttempted => json!({"id": id, "action": "not_attempted"}),
        })
        .collect()
}

fn clock_after(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
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

enum HookOutcome {
    Ok,
    Failed(Option<i32>),
    TimedOut,
    NotStarted(std::io::Error),
}

/// `sh -c CMD` with the owned keys and `WEBEX_TOKEN_EVENT`, its output on
/// our stderr (stdout carries `--json` events), in a process group of its
/// own so that a timeout kills what it started too.
async fn run_hook(cmd: &str, event: &str, tokens: &StoredTokens, timeout: Duration) -> HookOutcome {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c").arg(cmd).stdin(std::process::Stdio::null());
    for (k, v) in store::owned_values(tokens) {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.env("WEBEX_TOKEN_EVENT", event);
    // Client secrets handed to this run in the environment stay with it.
    for k in crate::names::SECRET_ENV_VARS {
        c.env_remove(k);
    }
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
            c.stdout(std::process::Stdio::from(fd));
        }
        c.process_group(0);
    }
    c.kill_on_drop(true);
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => return HookOutcome::NotStarted(e),
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => HookOutcome::Ok,
        Ok(Ok(status)) => HookOutcome::Failed(status.code()),
        Ok(Err(e)) => HookOutcome::NotStarted(e),
        Err(_) => {
            #[cfg(unix)]
            if let Some(pid) = child.id() {
                // The whole group: `sh -c 'sleep 600'` leaves `sleep` behind
                // otherwise.
                let _ = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!("kill -KILL -- -{pid}"))
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            let _ = child.kill().await;
            HookOutcome::TimedOut
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

// ---- health and metrics ----

type Labels = Vec<(String, String)>;

/// The labels of one org's sample: `org="NAME"` first when the config lists
/// orgs (`serviceApp.orgs`); none for the single configured org, whose
/// samples keep the label sets they always had.
fn labels(org: &OrgId, pairs: &[(&str, &str)]) -> Labels {
    org.name()
        .map(|n| ("org".to_string(), n.to_string()))
        .into_iter()
        .chain(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// The key of an org's health entry ("" for the single configured org).
fn org_key(org: &OrgId) -> String {
    org.name().unwrap_or_default().to_string()
}

/// What `/healthz` and `/metrics` report, shared with the server thread:
/// one health entry per org watched, and metric families labelled by org.
struct Monitor {
    min_valid: Duration,
    /// By org name (sorted, so the health body lists them in a stable order).
    state: Mutex<BTreeMap<String, HealthState>>,
    registry: Registry,
    expiry: Family<Labels, Gauge>,
    refreshes: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    hooks: Family<Labels, Counter>,
    validations: Family<Labels, Counter>,
    last_success: Family<Labels, Gauge>,
}

#[derive(Default)]
struct HealthState {
    access_expires_at: Option<Timestamp>,
    has_access_token: bool,
    last_success: Option<Timestamp>,
    last_error: Option<String>,
    needs_attention: bool,
    next: Option<(Timestamp, &'static str)>,
}

impl Monitor {
    fn new(min_valid: Duration) -> Monitor {
        let expiry = Family::<Labels, Gauge>::default();
        let refreshes = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let hooks = Family::<Labels, Counter>::default();
        let validations = Family::<Labels, Counter>::default();
        let last_success = Family::<Labels, Gauge>::default();
        let mut r = Registry::with_prefix("webex_token");
        r.register(
            "expiry_timestamp_seconds",
            "When each stored credential expires (Unix time; absent when unknown)",
            expiry.clone(),
        );
        r.register(
            "refreshes",
            "Token refreshes and rolls by chain level and outcome",
            refreshes.clone(),
        );
        r.register(
            "failures",
            "Failed ticks by kind (transient, config, reauthorization_required)",
            failures.clone(),
        );
        r.register(
            "hook_runs",
            "--on-refresh hook runs by outcome",
            hooks.clone(),
        );
        r.register(
            "validations",
            "Ticks that found the stored access token working",
            validations.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "When a tick last ended with a working token (Unix time)",
            last_success.clone(),
        );
        Monitor {
            min_valid,
            state: Mutex::new(BTreeMap::new()),
            registry: r,
            expiry,
            refreshes,
            failures,
            hooks,
            validations,
            last_success,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, HealthState>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An org to report on, before anything is known about it (so that an
    /// org whose first tick has not ended yet counts as not working).
    fn register(&self, org: &OrgId) {
        self.lock().entry(org_key(org)).or_default();
    }

    fn with<R>(&self, org: &OrgId, f: impl FnOnce(&mut HealthState) -> R) -> R {
        f(self.lock().entry(org_key(org)).or_default())
    }

    fn set_expiry(&self, org: &OrgId, credential: &str, at: Option<Timestamp>) {
        let l = labels(org, &[("credential", credential)]);
        match at {
            Some(t) => {
                self.expiry.get_or_create(&l).set(t.as_second());
            }
            None => {
                self.expiry.remove(&l);
            }
        }
    }

    /// The stored state as read at the start of a tick.
    fn observe(&self, org: &OrgId, t: &StoredTokens, config: &crate::config::Config) {
        self.set_expiry(org, "service_access_token", t.access_expires_at);
        self.set_expiry(org, "service_refresh_token", t.refresh_expires_at);
        self.set_expiry(org, "personal_access_token", config.personal_expires_at);
        self.set_expiry(
            org,
            "integration_refresh_token",
            config
                .integration
                .as_ref()
                .and_then(|i| i.refresh_expires_at),
        );
        self.with(org, |s| {
            s.access_expires_at = t.access_expires_at;
            s.has_access_token = t.access_token.is_some();
        });
    }

    fn set_next(&self, org: &OrgId, at: Timestamp, task: &'static str) {
        self.with(org, |s| s.next = Some((at, task)));
    }

    fn succeeded(&self, org: &OrgId, now: Timestamp, o: &Outcome) {
        match &o.action {
            Action::Refreshed { level, .. } => {
                self.refreshes
                    .get_or_create(&labels(
                        org,
                        &[("level", &level.number().to_string()), ("outcome", "ok")],
                    ))
                    .inc();
            }
            _ => {
                self.validations.get_or_create(&labels(org, &[])).inc();
            }
        }
        self.last_success
            .get_or_create(&labels(org, &[]))
            .set(now.as_second());
        self.set_expiry(org, "service_access_token", o.tokens.access_expires_at);
        self.set_expiry(org, "service_refresh_token", o.tokens.refresh_expires_at);
        self.with(org, |s| {
            s.last_success = Some(now);
            s.last_error = None;
            s.needs_attention = false;
            s.access_expires_at = o.tokens.access_expires_at;
            s.has_access_token = o.tokens.access_token.is_some();
        });
    }

    fn failed(&self, org: &OrgId, e: &Error, main: bool) {
        self.failures
            .get_or_create(&labels(org, &[("kind", e.kind())]))
            .inc();
        for a in e.attempts() {
            let r = a.record();
            if r.result != "skipped" {
                self.refreshes
                    .get_or_create(&labels(
                        org,
                        &[("level", &r.level.to_string()), ("outcome", r.result)],
                    ))
                    .inc();
            }
        }
        self.with(org, |s| {
            s.last_error = Some(e.to_string());
            if main {
                s.needs_attention = e.exit_code() != exit::TRANSIENT;
            }
        });
    }

    fn hook(&self, org: &OrgId, outcome: &str) {
        self.hooks
            .get_or_create(&labels(org, &[("outcome", outcome)]))
            .inc();
    }

    /// One org's health: working while its stored access token is valid for
    /// more than half of `--min-valid`.
    fn org_health(
        &self,
        s: &HealthState,
        now: Timestamp,
    ) -> (bool, serde_json::Map<String, Value>) {
        let left = s.access_expires_at.map(|e| clock::seconds_until(now, e));
        let healthy = s.has_access_token
            && left.is_some_and(|l| l > 0 && l as u64 > self.min_valid.as_secs() / 2);
        let body = json!({
            "status": if healthy { "ok" } else { "unhealthy" },
            "accessTokenPresent": s.has_access_token,
            "accessTokenExpiresAt": s.access_expires_at.map(clock::format_utc),
            "secondsLeft": left,
            "lastSuccess": s.last_success.map(clock::format_utc),
            "lastError": s.last_error,
            "needsAttention": s.needs_attention,
            "next": s.next.map(|(at, task)| json!({"task": task, "at": clock::format_utc(at)})),
        });
        let Value::Object(m) = body else {
            unreachable!("a JSON object literal")
        };
        (healthy, m)
    }

    /// `/healthz`: 200 when every org watched has a working token, 503
    /// otherwise. The single configured org's fields are the body's own;
    /// with `serviceApp.orgs`, the body has an `orgs` array (each org's
    /// fields and its `org` name) and `failingOrgs`, the names of those
    /// without a working token.
    fn health(&self, now: Timestamp) -> (u16, Value) {
        let states = self.lock();
        let mut all_ok = !states.is_empty();
        let mut attention = false;
        let mut failing = Vec::new();
        let mut orgs = Vec::new();
        let mut single = None;
        for (name, s) in states.iter() {
            let (ok, mut m) = self.org_health(s, now);
            all_ok &= ok;
            attention |= s.needs_attention;
            if name.is_empty() {
                single = Some(m);
                continue;
            }
            if !ok {
                failing.push(name.clone());
            }
            m.insert("org".into(), json!(name));
            orgs.push(Value::Object(m));
        }
        let mut body = serde_json::Map::new();
        body.insert("schemaVersion".into(), json!(output::SCHEMA_VERSION));
        match single {
            Some(m) if orgs.is_empty() => body.extend(m),
            _ => {
                body.insert(
                    "status".into(),
                    json!(if all_ok { "ok" } else { "unhealthy" }),
                );
                body.insert("needsAttention".into(), json!(attention));
                body.insert("failingOrgs".into(), json!(failing));
                body.insert("orgs".into(), Value::Array(orgs));
            }
        }
        if states.is_empty() {
            body.insert("status".into(), json!("unhealthy"));
        }
        (if all_ok { 200 } else { 503 }, Value::Object(body))
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!("could not encode the metrics: {e}");
        }
        out
    }
}

/// `webex-token healthcheck`: the probe a container's `HEALTHCHECK` runs,
/// since a `FROM scratch` image has no curl. Silent when `GET /healthz`
/// answers 200 (exit 0); one `error:` line and exit 1 otherwise (another
/// status, nothing listening, no answer within `--timeout`).
pub fn healthcheck(a: &HealthcheckArgs) -> Result<u8, Error> {
    let url = format!("http://{}/healthz", a.health);
    match probe_healthz(a.health, a.timeout) {
        Ok(200) => Ok(0),
        Ok(status) => Err(Error::Other(format!("GET {url} answered {status}"))),
        Err(e) => Err(Error::Other(format!("GET {url}: {e}"))),
    }
}

/// One `GET /healthz` and the answer's status code. Written by hand on a
/// std `TcpStream` rather than with the HTTP client the rest of the tool
/// uses: it is one plain-HTTP request to our own endpoint (normally on
/// loopback), needs no TLS, proxy or async runtime, and must stay cheap
/// when a container engine runs it every few seconds. Every step is bounded
/// by what is left of `timeout`.
fn probe_healthz(addr: std::net::SocketAddr, timeout: Duration) -> std::io::Result<u16> {
    use std::io::{BufRead, BufReader, Error as IoError, ErrorKind, Read, Write};
    let deadline = std::time::Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(std::time::Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| IoError::new(ErrorKind::TimedOut, "no answer in time"))
    };
    let mut stream = std::net::TcpStream::connect_timeout(&addr, left()?)?;
    stream.set_write_timeout(Some(left()?))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: webex-token-healthcheck\r\nConnection: close\r\n\r\n"
    )?;
    stream.set_read_timeout(Some(left()?))?;
    // The status line is all that matters: `HTTP/1.1 200 OK`.
    let mut line = String::new();
    BufReader::new(stream.take(512)).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok(code),
        _ => Err(IoError::new(
            ErrorKind::InvalidData,
            "the answer is not HTTP/1.x",
        )),
    }
}

fn serve(server: tiny_http::Server, m: &Monitor) {
    use tiny_http::{Header, Method, Response};
    for req in server.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("").to_string();
        let (status, body, ctype) = match (req.method(), path.as_str()) {
            (Method::Get, "/healthz") => {
                let (status, v) = m.health(clock::now());
                (status, v.to_string(), "application/json")
            }
            (Method::Get, "/metrics") => (
                200,
                m.metrics(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            (Method::Get, _) => (404, "not found\n".to_string(), "text/plain"),
            _ => (405, "method not allowed\n".to_string(), "text/plain"),
        };
        let mut resp = Response::from_string(body).with_status_code(status);
        if let Ok(h) = Header::from_bytes("Content-Type", ctype) {
            resp = resp.with_header(h);
        }
        let _ = req.respond(resp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::secret;

    fn tokens(now: Timestamp, left: u64) -> StoredTokens {
        StoredTokens {
            access_token: Some(secret("at")),
            access_expires_at: Some(clock::after(now, left)),
            refresh_token: Some(secret("rt")),
            refresh_expires_at: None,
        }
    }

    fn one() -> OrgId {
        OrgId::configured()
    }

    fn outcome(t: StoredTokens) -> Outcome {
        Outcome {
            action: Action::Refreshed {
                level: crate::chain::Level::ServiceRefreshToken,
                trigger: crate::chain::Trigger::Forced,
            },
            tokens: t,
            attempts: Vec::new(),
            personal_renewed: false,
            tracking_id: None,
        }
    }

    #[test]
    fn healthy_while_valid_for_more_than_half_of_min_valid() {
        let m = Monitor::new(Duration::from_secs(3600));
        let now = clock::now();
        // Nothing stored yet.
        assert_eq!(m.health(now).0, 503);
        m.succeeded(&one(), now, &outcome(tokens(now, 1801)));
        let (status, body) = m.health(now);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "ok");
        m.succeeded(&one(), now, &outcome(tokens(now, 1800)));
        assert_eq!(m.health(now).0, 503);
        // Expired: unhealthy whatever min_valid says.
        let short = Monitor::new(Duration::ZERO);
        short.succeeded(&one(), now, &outcome(tokens(now, 0)));
        assert_eq!(short.health(now).0, 503);
    }

    #[test]
    fn metrics_name_each_credential_and_count_refreshes() {
        let m = Monitor::new(Duration::from_secs(3600));
        let now = clock::now();
        m.succeeded(&one(), now, &outcome(tokens(now, 7200)));
        m.hook(&one(), "timeout");
        let text = m.metrics();
        let exp = clock::after(now, 7200).as_second();
        assert!(
            text.contains(&format!(
                "webex_token_expiry_timestamp_seconds{{credential=\"service_access_token\"}} {exp}"
            )),
            "{text}"
        );
        // Unknown expiry: no sample rather than a made-up one.
        assert!(
            !text.contains("credential=\"service_refresh_token\""),
            "{text}"
        );
        assert!(text.contains("webex_token_refreshes_total{level=\"1\",outcome=\"ok\"} 1"));
        assert!(text.contains("webex_token_hook_runs_total{outcome=\"timeout\"} 1"));
        // The single org's samples carry no org label (and no empty braces).
        assert!(
            text.contains(&format!(
                "\nwebex_token_last_success_timestamp_seconds {}\n",
                now.as_second()
            )),
            "{text}"
        );
        assert!(!text.contains("org=") && !text.contains("{}"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn health_covers_every_org_and_names_the_failing_ones() {
        let m = Monitor::new(Duration::from_secs(3600));
        let now = clock::now();
        let (a, b) = (
            OrgId::listed(0, "acme", "o-a"),
            OrgId::listed(1, "bolt", "o-b"),
        );
        m.register(&a);
        m.register(&b);
        m.succeeded(&a, now, &outcome(tokens(now, 7200)));
        // One org working, the other not yet: 503 naming the other.
        let (status, body) = m.health(now);
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "unhealthy");
        assert_eq!(body["failingOrgs"], json!(["bolt"]));
        assert_eq!(body["orgs"][0]["org"], "acme");
        assert_eq!(body["orgs"][0]["status"], "ok");
        assert_eq!(body["orgs"][1]["status"], "unhealthy");
        m.succeeded(&b, now, &outcome(tokens(now, 7200)));
        let (status, body) = m.health(now);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["failingOrgs"], json!([]));
        // A later success of one org does not hide another's failure.
        m.succeeded(&b, now, &outcome(tokens(now, 60)));
        m.succeeded(&a, now, &outcome(tokens(now, 7200)));
        let (status, body) = m.health(now);
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["failingOrgs"], json!(["bolt"]));
        // Metrics: each sample carries its org.
        let text = m.metrics();
        assert!(
            text.contains("webex_token_refreshes_total{org=\"acme\",level=\"1\",outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("webex_token_last_success_timestamp_seconds{org=\"bolt\"}"),
            "{text}"
        );
    }
}
