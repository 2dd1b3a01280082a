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
) -> HookRun {
    let started = Instant::now();
    let outcome = spawn_and_wait(cmd, trigger, tokens, timeout).await;
    HookRun {
        command: cmd.to_string(),
        trigger,
        outcome,
        duration: started.elapsed(),
    }
}

async fn spawn_and_wait(
    cmd: &str,
    event: &str,
    tokens: &StoredTokens,
    timeout: Duration,
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
                // otherwise. `-s KILL --` is the form every sh's `kill`
                // takes (dash refuses `kill -KILL -- -PGID`).
                let _ = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!("kill -s KILL -- -{pid}"))
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            let _ = child.kill().await;
            HookOutcome::TimedOut(timeout)
        }
    }
}
