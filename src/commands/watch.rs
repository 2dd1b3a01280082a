//! `watch`: keep the tokens working for as long as the process runs (a
//! systemd service, a container sidecar), and `healthcheck`, its probe.
//!
//! The agent itself is [`crate::agent`]; this file turns the flags into
//! [`agent::Options`], binds the `--health` listener and shows the agent's
//! events through the Printer (`--json` lines on stdout, errors on stderr).

use crate::agent::{self, Event, Report};
use crate::cli::{HealthcheckArgs, MAX_TOKEN_LIFETIME_MINUTES, WatchArgs};
use crate::error::{Error, exit};
use crate::output::{Printer, watch as shape};
use crate::settings::Settings;
use crate::tokens::OrgId;
use jiff::Timestamp;

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
    let listener = match a.health {
        None => None,
        Some(addr) => match agent::health::Server::bind(addr) {
            Ok(server) => {
                // The port actually bound (`:0` picks a free one).
                let bound = server.local_addr().unwrap_or(addr);
                tracing::info!("serving /healthz and /metrics on http://{bound}");
                Some(server)
            }
            Err(e) => {
                tracing::error!("could not listen on {addr} for --health: {e}");
                return Ok(exit::CONFIG);
            }
        },
    };
    let options = agent::Options {
        min_valid: a.min_valid,
        check_interval: a.check_interval,
        rt_min_valid: a.rt_min_valid,
        on_refresh: a.on_refresh.clone(),
        hook_timeout: a.hook_timeout,
        health: a.health,
        once: a.once,
        datasources: a.datasources,
        ds_min_valid: a.ds_min_valid,
        ds_lifetime_minutes: MAX_TOKEN_LIFETIME_MINUTES,
        notify_webex: a.notify_webex.clone(),
        reauth_window: a.reauth_window,
        // `--notify-webex`: the Webex message, besides events, hooks and health.
        tell: a.notify_webex.clone().map(|to| {
            agent::reauth::Teller(std::sync::Arc::new(agent::notify::WebexTell::new(
                settings.clone(),
                to,
            )))
        }),
    };
    agent::run(settings, &options, listener, printer).await
}

/// `webex-token healthcheck`: see [`agent::health::healthcheck`].
pub fn healthcheck(a: &HealthcheckArgs) -> Result<u8, Error> {
    agent::health::healthcheck(a.health, a.timeout)
}

impl Report for Printer {
    fn report(&self, org: &OrgId, at: Timestamp, event: Event<'_>) {
        // Human mode: the agent's log lines say it all; only errors here.
        let (name, fields) = match event {
            Event::Problem(e) => return self.stderr_error_of("watch", org.name(), e),
            Event::DataSourceProblems {
                summary,
                exit_code,
                items,
            } => return self.stderr_failures("watch", &summary, exit_code, &items),
            _ if !self.json => return,
            Event::Started {
                env_file,
                config_file,
                options: o,
            } => (
                "started",
                shape::fields(&shape::Started {
                    env_file: env_file.display().to_string(),
                    config_file: config_file.display().to_string(),
                    min_valid_seconds: o.min_valid.as_secs(),
                    check_interval_seconds: o.check_interval.as_secs(),
                    rt_min_valid_seconds: o.rt_min_valid.as_secs(),
                    health: o.health.map(|h| h.to_string()),
                    datasources: o.datasources,
                    ds_min_valid_seconds: o.datasources.then_some(o.ds_min_valid.as_secs()),
                    once: o.once,
                }),
            ),
            Event::Checked {
                checked,
                task,
                outcome,
                env_file,
                config_file,
            } => (
                checked.name(),
                shape::checked(task.name(), outcome, at, env_file, config_file),
            ),
            Event::Failed {
                task,
                error,
                retry_at,
            } => (
                "failed",
                shape::failed(task.map(|t| t.name()), error, retry_at),
            ),
            Event::DataSourcesFailed { error, retry_at } => {
                ("failed", shape::datasources_failed(error, retry_at))
            }
            Event::DataSources {
                name,
                run,
                summary: s,
                ds_min_valid,
                next_at,
            } => (
                name,
                shape::datasources(
                    run,
                    (s.extended, s.skipped, s.failed),
                    ds_min_valid.as_secs(),
                    at,
                    next_at,
                ),
            ),
            Event::Hook(run) => (
                "hook",
                shape::fields(&shape::Hook {
                    hook: &run.command,
                    trigger: run.trigger,
                    outcome: run.outcome_name(),
                    exit_code: run.exit_code(),
                    error: run.detail(),
                    duration_ms: run.duration_ms(),
                }),
            ),
            Event::Stopping { signal } => ("stopping", shape::stopping(signal)),
            Event::OrgAdded { env_file } => ("added", shape::org_change(env_file)),
            Event::OrgRemoved { env_file } => ("removed", shape::org_change(env_file)),
            Event::Reauth(n) => (n.name(), n.fields()),
        };
        self.watch_event(name, at, shape::tagged(fields, org.name()));
    }
}
