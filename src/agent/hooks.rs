//! `--on-refresh` hooks: each command run after a saved change, outside the
//! lock, with one typed [`HookRun`] per run. A hook that fails or hangs
//! changes nothing that was saved.

use crate::clock;
use crate::store;
use crate::tokens::StoredTokens;
use std::time::{Duration, Instant};

/// How one hook run ended.
#[derive(Debug)]
pub enum HookOutcome {
    Ok,
    /// A non-zero exit (`None`: ended by a signal).
    Failed(Option<i32>),
    /// Still running after the time-out; its process group was killed.
    TimedOut(Duration),
    NotStarted(std::io::Error),
}

/// One hook run: what ran, after what, how it ended and how long it took.
#[derive(Debug)]
pub struct HookRun {
    pub command: String,
    /// The event it ran after (`refreshed`, `rolled`, `extended`).
    pub trigger: &'static str,
    pub outcome: HookOutcome,
    pub duration: Duration,
}

impl HookRun {
    /// `ok`, `failed` or `timeout` (the metric label and the JSON value).
    pub fn outcome_name(&self) -> &'static str {
        match self.outcome {
            HookOutcome::Ok => "ok",
            HookOutcome::Failed(_) | HookOutcome::NotStarted(_) => "failed",
            HookOutcome::TimedOut(_) => "timeout",
        }
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self.outcome {
            HookOutcome::Ok => Some(0),
            HookOutcome::Failed(code) => code,
            _ => None,
        }
    }

    /// What went wrong, for people (`None` when it succeeded).
    pub fn detail(&self) -> Option<String> {
        match &self.outcome {
            HookOutcome::Ok => None,
            HookOutcome::Failed(Some(c)) => Some(format!("exited with {c}")),
            HookOutcome::Failed(None) => Some("ended by a signal".to_string()),
            HookOutcome::TimedOut(after) => Some(format!(
                "still running after {}; killed",
                clock::human_span(after.as_secs())
            )),
            HookOutcome::NotStarted(e) => Some(format!("could not start: {e}")),
        }
    }

    pub fn duration_ms(&self) -> u64 {
        u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Runs `sh -c CMD` with the owned keys and `WEBEX_TOKEN_EVENT`, its output
/// on our stderr (stdout carries `--json` events), in a process group of its
/// own so that a time-out kills what it started too.
pub async fn run(
    cmd: &str,
    trigger: &'static str,
    tokens: &StoredTokens,
    timeout: Duration,
    whose: &HookEnv<'_>,
) -> HookRun {
    let started = Instant::now();
    let outcome = spawn_and_wait(cmd, trigger, tokens, &[], timeout, whose).await;
    HookRun {
        command: cmd.to_string(),
        trigger,
        outcome,
        duration: started.elapsed(),
    }
}

/// Runs `sh -c CMD` for a notice that carries no token (`reauth_required`,
/// `reauthorized`, `reauth_stopped`): the owned token keys are removed from
/// its environment, `extra` (e.g. `WEBEX_TOKEN_VERIFY_URL`) is added.
pub async fn run_notice(
    cmd: &str,
    trigger: &'static str,
    extra: &[(&str, &str)],
    timeout: Duration,
    whose: &HookEnv<'_>,
) -> HookRun {
    let started = Instant::now();
    let none = StoredTokens::default();
    let outcome = spawn_and_wait(cmd, trigger, &none, extra, timeout, whose).await;
    HookRun {
        command: cmd.to_string(),
        trigger,
        outcome,
        duration: started.elapsed(),
    }
}

/// Whose tokens a hook is told about: the org's name (several orgs) and its
/// env file, as `WEBEX_TOKEN_ORG` and `WEBEX_TOKEN_ENV_FILE`.
pub struct HookEnv<'a> {
    pub org: Option<&'a str>,
    pub env_file: &'a std::path::Path,
}

/// How long a timed-out hook's process group has between SIGTERM and
/// SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

async fn spawn_and_wait(
    cmd: &str,
    event: &str,
    tokens: &StoredTokens,
    extra: &[(&str, &str)],
    timeout: Duration,
    whose: &HookEnv<'_>,
) -> HookOutcome {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c").arg(cmd).stdin(std::process::Stdio::null());
    for (k, v) in store::owned_values(tokens) {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.env("WEBEX_TOKEN_EVENT", event);
    for (k, v) in extra {
        c.env(k, v);
    }
    match whose.org {
        Some(name) => c.env("WEBEX_TOKEN_ORG", name),
        None => c.env_remove("WEBEX_TOKEN_ORG"),
    };
    c.env("WEBEX_TOKEN_ENV_FILE", whose.env_file);
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
            // The whole group (`sh -c 'sleep 600'` leaves `sleep` behind
            // otherwise): SIGTERM, a short grace to exit cleanly, then
            // SIGKILL for whatever is left. kill(2) on the group id the
            // hook got from `process_group(0)`.
            #[cfg(unix)]
            if let Some(pgid) = child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw)
            {
                use rustix::process::{Signal, kill_process_group};
                let _ = kill_process_group(pgid, Signal::TERM);
                let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
                let _ = kill_process_group(pgid, Signal::KILL);
            }
            let _ = child.kill().await;
            HookOutcome::TimedOut(timeout)
        }
    }
}
