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
//! [`health`]).
//!
//! It never prints: everything a person or a program should see goes
//! through [`Report`] as a typed [`Event`], which `commands/watch.rs`
//! renders. Nothing here imports `output` or `cli`.

pub mod datasources;
pub mod health;
pub mod hooks;
pub mod monitor;
mod watcher;

#[cfg(test)]
mod tests;

use crate::chain::Outcome;
use crate::engine::datasources::extend::Extended;
use crate::engine::schedule::Task;
use crate::engine::signals;
use crate::error::{Error, exit};
use crate::settings::Settings;
use crate::store;
use crate::tokens::OrgId;
use hooks::HookRun;
use jiff::Timestamp;
use monitor::Monitor;
use std::net::SocketAddr;
use std::path::Path;
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
    /// A stop signal arrived; the loop ends.
    Stopping { signal: &'a str },
}

/// Runs the agent over every org chosen (each with its own env file, lock,
/// schedule and data sources, side by side) until a stop signal, or once
/// with `--once`; the exit code is the worst of the orgs'. `listener`
/// serves `/healthz` and `/metrics` when given.
pub async fn run(
    settings: &Settings,
    options: &Options,
    listener: Option<health::Server>,
    report: &dyn Report,
) -> Result<u8, Error> {
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
    // A stop signal is logged (and told to systemd) once, not once per org.
    let stop_told = AtomicBool::new(false);
    let shared = watcher::Shared {
        settings,
        options,
        report,
        monitor: monitor.clone(),
        wake,
        stop_told: &stop_told,
    };
    let watchers = orgs.into_iter().map(|(org, store)| {
        // With several orgs every log line of an org's loop names it.
        let span = match org.name() {
            Some(name) => tracing::error_span!("org", org = %name),
            None => tracing::Span::none(),
        };
        watcher::Watcher::new(shared.clone(), store, org)
            .run()
            .instrument(span)
    });
    let results = futures_util::future::join_all(watchers).await;
    worst(results)
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
