//! The long-running agent behind `watch`: keeps the tokens working for as
//! long as the process runs (a systemd service, a container sidecar).
//!
//! A loop around [`engine::ensure`] per org that sleeps until the next
//! deadline ([`engine::schedule`]) instead of polling, re-reads the config
//! and env file on every tick, rolls the service-app refresh token through
//! level 2 before it lapses, backs off on failures, renews data-source
//! tokens (`--datasources`, [`datasources`]), runs `--on-refresh` hooks
//! after each saved change ([`hooks`], outside the lock), talks to systemd
//! (`sd_notify`) and feeds `/healthz` and `/metrics` ([`monitor`],
//! [`health`]). [`run`] keeps the set of org loops in step with the
//! config's org list and wakes them all when the wall clock jumps.
//!
//! It never prints: everything a person or a program should see goes
//! through [`Report`] as a typed [`Event`], which `commands/watch.rs`
//! renders. Nothing here imports `output` or `cli`.

pub mod datasources;
pub mod health;
pub mod hooks;
pub mod monitor;
pub mod notify;
pub mod reauth;
mod watcher;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod world_tests;

use crate::chain::Outcome;
use crate::clock;
use crate::engine::datasources::extend::Extended;
use crate::engine::schedule::Task;
use crate::engine::signals;
use crate::error::{Error, exit};
use crate::settings::OrgTarget;
use crate::settings::Settings;
use crate::store;
use crate::tokens::OrgId;
use hooks::HookRun;
use jiff::Timestamp;
use monitor::Monitor;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tracing::Instrument;

/// What the agent was asked to do (from `watch`'s flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// Refresh when the access token expires within this.
    pub min_valid: Duration,
    /// Check the token with Webex at least this often.
    pub check_interval: Duration,
    /// Roll the service-app refresh token when it expires within this.
    pub rt_min_valid: Duration,
    /// Commands run after each saved change.
    pub on_refresh: Vec<String>,
    pub hook_timeout: Duration,
    /// Where `/healthz` is served (for the `started` event; the listener
    /// itself is bound by the caller).
    pub health: Option<SocketAddr>,
    /// One tick, then exit with its code.
    pub once: bool,
    /// Renew the data-source tokens too.
    pub datasources: bool,
    pub ds_min_valid: Duration,
    /// The lifetime asked for a renewed data-source token, in minutes.
    pub ds_lifetime_minutes: u32,
    /// `--notify-webex`: where the re-authorization notice goes (the bot
    /// token is the config's `notify.webexBotToken`; see [`notify`]).
    pub notify_webex: Option<crate::webex::Recipient>,
    /// How long to keep asking a person to re-authorize the integration
    /// (device-grant codes, [`reauth`]); zero: never start the device grant.
    pub reauth_window: Duration,
    /// Besides events, hooks and health: who else is told (the Webex
    /// message with `--notify-webex`).
    pub tell: Option<reauth::Teller>,
}

/// Where the agent's events go (`commands/watch.rs` implements it on the
/// Printer: `--json` lines on stdout, errors on stderr).
pub trait Report: Sync {
    fn report(&self, org: &OrgId, at: Timestamp, event: Event<'_>);
}

/// What a tick ended in, when it ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The stored access token works (nothing was written).
    Validated,
    /// A new access token was saved.
    Refreshed,
    /// A new token pair was minted before the refresh token lapsed.
    Rolled,
}

impl Checked {
    pub fn name(self) -> &'static str {
        match self {
            Checked::Validated => "validated",
            Checked::Refreshed => "refreshed",
            Checked::Rolled => "rolled",
        }
    }
}

/// What a data-source renewal run came to, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DsSummary {
    pub extended: usize,
    pub skipped: usize,
    pub failed: usize,
}

/// One thing worth reporting, in the order it happened.
pub enum Event<'a> {
    /// An org's loop began.
    Started {
        env_file: &'a Path,
        config_file: &'a Path,
        options: &'a Options,
    },
    /// A tick ended with a working token.
    Checked {
        checked: Checked,
        task: Task,
        outcome: &'a Outcome,
        env_file: &'a Path,
        config_file: &'a Path,
    },
    /// A failure a person should read (the stderr error message).
    Problem(&'a Error),
    /// Some data sources of a run could not be renewed (for people: a
    /// summary and one line per failed one).
    DataSourceProblems {
        summary: String,
        exit_code: u8,
        items: Vec<(String, &'a Error)>,
    },
    /// A tick failed; it is tried again at `retry_at`.
    Failed {
        task: Option<Task>,
        error: &'a Error,
        retry_at: Timestamp,
    },
    /// A data-source renewal run failed as a whole (e.g. the list).
    DataSourcesFailed {
        error: &'a Error,
        retry_at: Timestamp,
    },
    /// A renewal run renewed some (`extended`) or failed some (`failed`);
    /// a run that only skipped is not reported.
    DataSources {
        name: &'static str,
        run: &'a Extended,
        summary: DsSummary,
        ds_min_valid: Duration,
        next_at: Timestamp,
    },
    /// An `--on-refresh` hook ran.
    Hook(&'a HookRun),
    /// A person is asked to re-authorize the integration, did, or is no
    /// longer asked (for the config, not an org).
    Reauth(&'a reauth::Notice<'a>),
    /// A stop signal arrived; the loop ends.
    Stopping { signal: &'a str },
    /// The org was added to the config (SIGHUP or a changed config file):
    /// its loop starts (and reports `Started`).
    OrgAdded { env_file: &'a Path },
    /// The org was taken out of the config: its loop has ended, and it is no
    /// longer in `/healthz` and `/metrics`.
    OrgRemoved { env_file: &'a Path },
}

/// How often a running agent looks at the world: the config and state
/// files' stamps (a `stat` each; the org list is read again only when one
/// changed) and the wall clock (see [`Clock`]). One look for every org,
/// however many there are.
const WORLD_CHECK: Duration = Duration::from_secs(2);
/// A wall clock that moved this much more (or less) than the monotonic
/// clock between two looks jumped (suspend and resume, an NTP step, a
/// person setting the time).
const CLOCK_JUMP: Duration = Duration::from_secs(5);

/// Runs the agent over every org chosen (each with its own env file, lock,
/// schedule and data sources, side by side) until a stop signal, or once
/// with `--once`; the exit code is the worst of the orgs'. `listener`
/// serves `/healthz` and `/metrics` when given.
///
/// The set of orgs follows the config: on SIGHUP, and when the config or
/// state file changes, the org list is read again; an org added gets its
/// loop, an org taken out has its loop stopped between two ticks and drops
/// out of `/healthz` and `/metrics`, and the others go on untouched. When
/// the wall clock jumps, every loop plans anew at once (the deadlines are
/// wall-clock instants; the sleeps are not).
pub async fn run(
    settings: &Settings,
    options: &Options,
    listener: Option<health::Server>,
    report: &dyn Report,
) -> Result<u8, Error> {
    if let Some(to) = &options.notify_webex {
        notify::preflight(settings, to)?;
    }
    let monitor = Arc::new(Monitor::new(options.min_valid));
    if let Some(server) = listener {
        server
            .spawn(monitor.clone())
            .map_err(|e| Error::Other(format!("could not start the health endpoint: {e}")))?;
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
    let orgs = targets(settings, settings.org_targets(None)?);
    for (org, _) in &orgs {
        monitor.register(org);
    }
    // A signal wakes one waiter; every org's loop must see it (a SIGTERM
    // must not wait for the other orgs' next deadlines), so one task
    // forwards each to all of them (and to the loop below). A clock jump
    // wakes them the same way.
    let (wake_tx, wake) = tokio::sync::watch::channel(0u64);
    let wake_tx = Arc::new(wake_tx);
    let forward = wake_tx.clone();
    tokio::spawn(async move {
        loop {
            signals::changed().await;
            forward.send_modify(|n| *n = n.wrapping_add(1));
        }
    });
    // A stop signal is logged (and told to systemd) once, not once per org.
    let stop_told = AtomicBool::new(false);
    // One device-grant flow for the config, whichever org's loop asks.
    let requests = reauth::Requests::default();
    let asks = (!options.once && !options.reauth_window.is_zero()).then_some(&requests);
    let slots = tokio::sync::Semaphore::new(settings.concurrency.max(1));
    let shared = watcher::Shared {
        settings,
        options,
        report,
        monitor: monitor.clone(),
        wake: wake.clone(),
        stop_told: &stop_told,
        reauth: asks,
        slots: &slots,
    };
    if options.once {
        let watchers = orgs
            .into_iter()
            .map(|(org, store)| watch_org(&shared, org, store, None));
        let results = futures_util::future::join_all(watchers).await;
        return worst(results.into_iter().map(|(_, r)| r).collect());
    }
    let flows = async {
        if let Some(r) = asks {
            let ctx = reauth::Ctx {
                settings,
                options,
                report,
                monitor: monitor.clone(),
                stopping: r.stopping(),
            };
            reauth::coordinator(ctx, r).await;
        }
    };
    // The flows end with the loops (a stop signal ends both; a flow keeps
    // its record so the next start resumes its window), but not in the
    // middle of saving an approval.
    let loops = async {
        let mut orgs_now = Orgs::default();
        let mut running = futures_util::stream::FuturesUnordered::new();
        for (org, store) in orgs {
            running.push(orgs_now.start(&shared, org, store));
        }
        let mut results = Vec::new();
        let mut files = Stamps::of(settings);
        let mut wall = Clock::start();
        let mut hangups_seen = signals::hangups();
        let mut wake = wake;
        let mut look = tokio::time::interval(WORLD_CHECK);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some((id, result)) = futures_util::StreamExt::next(&mut running) => {
                    if let Some(gone) = orgs_now.ended(id) {
                        // Its last tick is over: nothing reports on it any more.
                        if !orgs_now.has_name(&gone.org) {
                            monitor.unregister(&gone.org);
                        }
                        report.report(&gone.org, clock::now(), Event::OrgRemoved {
                            env_file: &gone.env_file,
                        });
                    } else {
                        results.push(result);
                    }
                    if running.is_empty() {
                        break;
                    }
                }
                _ = look.tick() => {
                    if let Some(jump) = wall.jumped() {
                        tracing::info!(
                            "the clock jumped {} by {}: planning anew",
                            if jump.is_negative() { "back" } else { "ahead" },
                            clock::human_span(jump.unsigned_abs().as_secs())
                        );
                        wake_tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    if files.changed() && signals::stop_requested().is_none() {
                        for (org, store) in follow_config(settings, report, &monitor, &mut orgs_now) {
                            running.push(orgs_now.start(&shared, org, store));
                        }
                    }
                }
                Ok(()) = wake.changed() => {
                    let hangups = signals::hangups();
                    if hangups != hangups_seen && signals::stop_requested().is_none() {
                        hangups_seen = hangups;
                        files.changed();
                        for (org, store) in follow_config(settings, report, &monitor, &mut orgs_now) {
                            running.push(orgs_now.start(&shared, org, store));
                        }
                    }
                }
            }
        }
        requests.stop();
        results
    };
    let (results, ()) = tokio::join!(loops, flows);
    worst(results)
}

/// The org list read again (SIGHUP, a changed config or state file):
/// the loops of the orgs taken out are told to end, the orgs added are
/// registered and returned, to be started. A config that cannot be read or
/// gives no valid org set leaves the loops as they are.
fn follow_config(
    settings: &Settings,
    report: &dyn Report,
    monitor: &Monitor,
    orgs: &mut Orgs,
) -> Vec<(OrgId, store::Store)> {
    let want = match read_orgs(settings) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(
                "could not read the org list again; the orgs watched stay as they are: {e}"
            );
            report.report(&OrgId::configured(), clock::now(), Event::Problem(&e));
            return Vec::new();
        }
    };
    let added = orgs.follow(want);
    for (org, store) in &added {
        monitor.register(org);
        report.report(
            org,
            clock::now(),
            Event::OrgAdded {
                env_file: store.env_path(),
            },
        );
    }
    added
}

/// One org's loop, with the id its result comes back under (0 without
/// `retire`: `--once`).
fn watch_org<'a>(
    shared: &watcher::Shared<'a>,
    org: OrgId,
    store: store::Store,
    retire: Option<(u64, tokio::sync::watch::Receiver<bool>)>,
) -> impl Future<Output = (u64, Result<u8, Error>)> + use<'a> {
    // With several orgs every log line of an org's loop names it.
    let span = match org.name() {
        Some(name) => tracing::error_span!("org", org = %name),
        None => tracing::Span::none(),
    };
    let mut w = watcher::Watcher::new(shared.clone(), store, org);
    let mut id = 0;
    if let Some((n, rx)) = retire {
        w = w.retired_by(rx);
        id = n;
    }
    async move { (id, w.run().await) }.instrument(span)
}

/// What makes two entries of the org list one org: its name, its
/// `targetOrgId` and its env file (a change of either makes another org,
/// whose loop starts afresh).
type OrgKey = (Option<String>, Option<String>, PathBuf);

fn org_key(org: &OrgId, store: &store::Store) -> OrgKey {
    (
        org.name().map(str::to_string),
        org.listed_target().map(|(_, id)| id.to_string()),
        store.env_path().to_path_buf(),
    )
}

/// The loops the agent runs, by the id each one's result comes back under.
#[derive(Default)]
struct Orgs {
    last_id: u64,
    loops: HashMap<u64, Loop>,
}

struct Loop {
    key: OrgKey,
    org: OrgId,
    env_file: PathBuf,
    /// Set to true to end the loop (between two ticks).
    retire: tokio::sync::watch::Sender<bool>,
    retired: bool,
}

impl Orgs {
    /// Starts the loop of `org` (the future to poll).
    fn start<'a>(
        &mut self,
        shared: &watcher::Shared<'a>,
        org: OrgId,
        store: store::Store,
    ) -> impl Future<Output = (u64, Result<u8, Error>)> + use<'a> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        self.last_id += 1;
        let id = self.last_id;
        self.loops.insert(
            id,
            Loop {
                key: org_key(&org, &store),
                org: org.clone(),
                env_file: store.env_path().to_path_buf(),
                retire: tx,
                retired: false,
            },
        );
        watch_org(shared, org, store, Some((id, rx)))
    }

    /// The loop `id` ended: the org it watched when it was taken out of the
    /// config (its result does not count), else `None`.
    fn ended(&mut self, id: u64) -> Option<Loop> {
        self.loops.remove(&id).filter(|l| l.retired)
    }

    /// Whether a loop still in the config reports under `org`'s name.
    fn has_name(&self, org: &OrgId) -> bool {
        self.loops
            .values()
            .any(|l| !l.retired && l.org.name() == org.name())
    }

    /// Follows the org list `want`: the loops of orgs no longer in it are
    /// told to end; the orgs not watched yet are returned, to be started.
    fn follow(&mut self, want: Vec<(OrgId, store::Store)>) -> Vec<(OrgId, store::Store)> {
        let keys: Vec<OrgKey> = want.iter().map(|(o, s)| org_key(o, s)).collect();
        for l in self.loops.values_mut().filter(|l| !l.retired) {
            if !keys.contains(&l.key) {
                tracing::info!(
                    "{} is no longer in the config: stopping its loop (after the exchange in flight, if any)",
                    org_label(&l.org)
                );
                l.retired = true;
                let _ = l.retire.send(true);
            }
        }
        let live: Vec<OrgKey> = self
            .loops
            .values()
            .filter(|l| !l.retired)
            .map(|l| l.key.clone())
            .collect();
        let added: Vec<(OrgId, store::Store)> = want
            .into_iter()
            .zip(keys)
            .filter(|(_, k)| !live.contains(k))
            .map(|(t, _)| t)
            .collect();
        for (org, store) in &added {
            tracing::info!(
                "{} was added to the config: watching {}",
                org_label(org),
                store.env_path().display()
            );
        }
        added
    }
}

/// "org `NAME`", or "the configured org".
fn org_label(org: &OrgId) -> String {
    match org.name() {
        Some(n) => format!("org `{n}`"),
        None => "the configured org".into(),
    }
}

/// The orgs of `org_targets`' answer, or the single configured one.
fn targets(settings: &Settings, t: Option<Vec<OrgTarget>>) -> Vec<(OrgId, store::Store)> {
    match t {
        Some(targets) => targets.into_iter().map(|t| (t.org, t.store)).collect(),
        None => vec![(OrgId::configured(), settings.store())],
    }
}

/// The org list as the config says now, or the error that keeps the loops
/// as they are (a config that no longer parses, an `--org` no longer
/// listed, two orgs sharing a file).
fn read_orgs(settings: &Settings) -> Result<Vec<(OrgId, store::Store)>, Error> {
    let config = settings.load_config()?;
    let t = settings.org_targets_in(&config, None)?;
    Ok(targets(settings, t))
}

/// The config and state files' stamps (see [`Stamp`]; a missing file has
/// none).
struct Stamps {
    paths: Vec<PathBuf>,
    last: Vec<Stamp>,
}

/// Size, modification time, inode and change time: a file replaced by a
/// rename (an editor, an atomic save) gets a new inode even when its size
/// and modification second are the old ones.
type Stamp = Option<(u64, Option<std::time::SystemTime>, u64, i64, i64)>;

impl Stamps {
    fn of(settings: &Settings) -> Stamps {
        let mut paths = vec![settings.config_path.clone()];
        paths.extend(settings.state_path.clone());
        let last = paths.iter().map(|p| stamp(p)).collect();
        Stamps { paths, last }
    }

    /// True when a file changed since the last call (or [`Stamps::of`]).
    fn changed(&mut self) -> bool {
        let now: Vec<Stamp> = self.paths.iter().map(|p| stamp(p)).collect();
        let changed = now != self.last;
        self.last = now;
        changed
    }
}

fn stamp(p: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| {
        (
            m.len(),
            m.modified().ok(),
            m.ino(),
            m.ctime(),
            m.ctime_nsec(),
        )
    })
}

/// The wall clock ([`clock::now`]) against the monotonic one (what tokio
/// sleeps on, which stands still during a suspend and ignores clock
/// steps): a jump is a difference between their progress since the last
/// look.
struct Clock {
    wall: Timestamp,
    mono: std::time::Instant,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            wall: clock::now(),
            mono: std::time::Instant::now(),
        }
    }

    /// How far the wall clock jumped since the last look (ahead: positive),
    /// when more than [`CLOCK_JUMP`].
    fn jumped(&mut self) -> Option<jiff::SignedDuration> {
        let (wall, mono) = (clock::now(), std::time::Instant::now());
        let moved = wall.duration_since(self.wall);
        let ran = jiff::SignedDuration::try_from(mono.duration_since(self.mono)).ok()?;
        (self.wall, self.mono) = (wall, mono);
        let jump = moved - ran;
        (jump.unsigned_abs() > CLOCK_JUMP).then_some(jump)
    }
}

/// The run's result: the worst of the orgs' (an error stands for its exit
/// code; on a tie the first one found).
fn worst(results: Vec<Result<u8, Error>>) -> Result<u8, Error> {
    let code = |r: &Result<u8, Error>| match r {
        Ok(c) => *c,
        Err(e) => e.exit_code(),
    };
    let mut worst: Option<Result<u8, Error>> = None;
    for r in results {
        let c = code(&r);
        let before = worst.as_ref().map(code);
        if before.is_none_or(|b| exit::worst([b, c]) != b) {
            worst = Some(r);
        }
    }
    worst.unwrap_or(Ok(0))
}
