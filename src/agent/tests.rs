//! The agent's decisions with a pinned clock (every instant is passed in,
//! so nothing here sleeps): the half-life rule, back-off against the wait
//! for a person, roll timing, the data-source plan and hook time-outs.

use super::datasources::{self, DsRound};
use super::hooks::{self, HookOutcome};
use super::watcher::{MIN_GAP, REAUTH_RETRY, State};
use super::{Checked, Options};
use crate::chain::{Action, Level, Outcome, Trigger, Validation};
use crate::engine::datasources::extend::{Extended, Fate};
use crate::engine::schedule::{self, Task};
use crate::error::Error;
use crate::secret::secret;
use crate::tokens::StoredTokens;
use jiff::Timestamp;
use std::time::Duration;

const H: u64 = 3600;

/// The test clock: a fixed instant plus `secs`.
fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn options() -> Options {
    Options {
        min_valid: s(H),
        check_interval: s(H),
        rt_min_valid: s(7 * 24 * H),
        on_refresh: Vec::new(),
        hook_timeout: s(30),
        health: None,
        once: false,
        datasources: false,
        ds_min_valid: s(2 * H),
        ds_lifetime_minutes: 1440,
        notify_webex: None,
        reauth_window: Duration::from_secs(86_400),
        tell: None,
    }
}

/// Tokens saved at `t(0)`: the access token lives `access` seconds, the
/// refresh token `refresh` seconds (unknown when `None`).
fn tokens(access: i64, refresh: Option<i64>) -> StoredTokens {
    StoredTokens {
        access_token: Some(secret("at")),
        access_expires_at: Some(t(access)),
        refresh_token: Some(secret("rt")),
        refresh_expires_at: refresh.map(t),
    }
}

fn refreshed(tokens: StoredTokens) -> Outcome {
    Outcome {
        action: Action::Refreshed {
            level: Level::ServiceRefreshToken,
            trigger: Trigger::Forced,
        },
        tokens,
        attempts: Vec::new(),
        personal_renewed: false,
        tracking_id: None,
    }
}

fn kept(tokens: StoredTokens) -> Outcome {
    Outcome {
        action: Action::Kept(Validation::Checked),
        ..refreshed(tokens)
    }
}

#[test]
fn a_refresh_waits_until_the_next_deadline_and_draws_a_new_jitter() {
    let o = options();
    let mut st = State::default();
    let got = st.succeeded(
        &o,
        Task::Refresh,
        &refreshed(tokens(14 * 24 * H as i64, None)),
        t(0),
        || s(42),
    );
    assert_eq!(got, Checked::Refreshed);
    assert_eq!(st.jitter, s(42));
    assert_eq!(st.last_validated, Some(t(0)));
    // Only the least gap between ticks; the schedule does the rest.
    assert_eq!(st.blocked_until, Some(t(MIN_GAP.as_secs() as i64)));
    // A check that finds the token working keeps the jitter.
    let got = st.succeeded(
        &o,
        Task::Validate,
        &kept(tokens(14 * 24 * H as i64, None)),
        t(10),
        || unreachable!("no refresh, no new jitter"),
    );
    assert_eq!(got, Checked::Validated);
    assert_eq!(st.jitter, s(42));
}

#[test]
fn a_token_living_shorter_than_min_valid_waits_half_its_life() {
    let o = options();
    let mut st = State::default();
    // 10 minutes left, --min-valid 1 h: due again at once by the plain
    // rule, so the next refresh waits 5 minutes.
    st.succeeded(
        &o,
        Task::Refresh,
        &refreshed(tokens(600, None)),
        t(0),
        || s(0),
    );
    assert_eq!(st.blocked_until, Some(t(300)));
    // A token that is already (nearly) expired: at least the least gap.
    st.succeeded(
        &o,
        Task::Refresh,
        &refreshed(tokens(-5, None)),
        t(0),
        || s(0),
    );
    assert_eq!(st.blocked_until, Some(t(1)));
    // Exactly at --min-valid counts as short.
    st.succeeded(
        &o,
        Task::Refresh,
        &refreshed(tokens(H as i64, None)),
        t(0),
        || s(0),
    );
    assert_eq!(st.blocked_until, Some(t(H as i64 / 2)));
}

#[test]
fn a_rolled_pair_shorter_than_rt_min_valid_waits_half_its_life_to_roll_again() {
    let o = options();
    let mut st = State {
        roll_not_before: Some(t(-10)),
        ..State::default()
    };
    let got = st.succeeded(
        &o,
        Task::Roll,
        &refreshed(tokens(14 * 24 * H as i64, Some(2 * 24 * H as i64))),
        t(0),
        || s(0),
    );
    assert_eq!(got, Checked::Rolled);
    assert_eq!(st.roll_not_before, Some(t(24 * H as i64)));
    // The schedule then rolls no sooner than that, and checks meanwhile.
    let i = st.inputs(
        &o,
        &tokens(14 * 24 * H as i64, Some(2 * 24 * H as i64)),
        None,
        t(2),
    );
    assert_eq!(schedule::roll_at(&i), Some(t(24 * H as i64)));
    assert_eq!(schedule::next(&i).task, Task::Validate);
    // A long-lived new pair: no hold on the next roll.
    st.succeeded(
        &o,
        Task::Roll,
        &refreshed(tokens(14 * 24 * H as i64, Some(90 * 24 * H as i64))),
        t(0),
        || s(0),
    );
    assert_eq!(st.roll_not_before, None);
}

#[test]
fn transient_failures_back_off_from_5s_doubling_to_5_minutes() {
    let o = options();
    let mut st = State::default();
    let waits: Vec<u64> = (0..9)
        .map(|_| {
            st.failed(&o, Some(Task::Refresh), true, t(0), 0.0)
                .as_secs()
        })
        .collect();
    assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(st.blocked_until, Some(t(300)));
    assert!(!st.waiting_for_reauth);
    // The jitter adds up to a fifth.
    let mut st = State::default();
    let w = st.failed(&o, Some(Task::Validate), true, t(0), 0.99);
    assert!(w > s(5) && w < s(6), "{w:?}");
    // A success starts the count again.
    st.succeeded(
        &o,
        Task::Validate,
        &kept(tokens(3 * H as i64, None)),
        t(9),
        || s(0),
    );
    assert_eq!(st.failures, 0);
    assert_eq!(
        st.failed(&o, None, true, t(10), 0.0),
        s(5),
        "the first failure after a success"
    );
}

#[test]
fn a_failure_that_needs_a_person_waits_the_check_interval_at_most_an_hour() {
    let mut st = State::default();
    let mut o = options();
    o.check_interval = s(600);
    assert_eq!(st.failed(&o, Some(Task::Refresh), false, t(0), 0.5), s(600));
    assert_eq!(st.blocked_until, Some(t(600)));
    assert!(st.waiting_for_reauth, "the files are watched meanwhile");
    // No back-off count: a person's fix is what it waits for.
    assert_eq!(st.failures, 0);
    o.check_interval = s(24 * H);
    assert_eq!(st.failed(&o, None, false, t(0), 0.5), REAUTH_RETRY);
    o.check_interval = Duration::ZERO;
    assert_eq!(st.failed(&o, None, false, t(0), 0.5), MIN_GAP);
    // A transient failure after it: no longer waiting for a person.
    st.failed(&o, None, true, t(0), 0.0);
    assert!(!st.waiting_for_reauth);
}

#[test]
fn a_rejected_token_is_checked_again_right_after_the_back_off() {
    let o = options();
    let stored = tokens(14 * 24 * H as i64, None);
    let mut st = State {
        last_validated: Some(t(0)),
        ..State::default()
    };
    // A 401 on validation, then a level that could not be reached.
    let wait = st.failed(&o, Some(Task::Validate), true, t(60), 0.0);
    assert_eq!(wait, s(5));
    // Without the rejection noted, the next check would wait for
    // --check-interval (the token's expiry is 14 days away).
    let later = schedule::next(&st.inputs(&o, &stored, None, t(60)));
    assert_eq!((later.task, later.at), (Task::Validate, t(H as i64)));
    st.token_rejected();
    let next = schedule::next(&st.inputs(&o, &stored, None, t(60)));
    assert_eq!((next.task, next.at), (Task::Validate, t(65)));
}

#[test]
fn a_failed_roll_holds_up_only_the_roll() {
    let o = options();
    let mut st = State::default();
    let stored = tokens(14 * 24 * H as i64, Some(24 * H as i64));
    let i = st.inputs(&o, &stored, None, t(0));
    assert_eq!(schedule::due(&i), Some(Task::Roll));
    let wait = st.failed(&o, Some(Task::Roll), false, t(0), 0.0);
    assert_eq!(wait, s(H));
    assert_eq!(st.roll_not_before, Some(t(H as i64)));
    assert_eq!(st.blocked_until, None, "the old pair still works");
    assert!(!st.waiting_for_reauth);
    // Right away: the check goes on; the roll comes back an hour later.
    let i = st.inputs(&o, &stored, None, t(0));
    assert_eq!(schedule::due(&i), Some(Task::Validate));
    st.succeeded(&o, Task::Validate, &kept(stored.clone()), t(0), || s(0));
    let i = st.inputs(&o, &stored, None, t(H as i64));
    assert_eq!(schedule::due(&i), Some(Task::Roll));
}

#[test]
fn sighup_forgets_every_wait() {
    let o = options();
    let mut st = State::default();
    st.failed(&o, Some(Task::Roll), true, t(0), 0.0);
    st.failed(&o, Some(Task::Refresh), true, t(0), 0.0);
    st.hangup();
    assert_eq!(st.blocked_until, None);
    assert_eq!(st.roll_not_before, None);
    assert_eq!(st.failures, 0);
    assert_eq!(st.last_validated, None);
    let i = st.inputs(&o, &tokens(14 * 24 * H as i64, None), None, t(1));
    assert_eq!(schedule::due(&i), Some(Task::Validate));
}

#[test]
fn the_refresh_policy_is_min_valid_plus_the_jitter() {
    let o = options();
    let st = State {
        jitter: Duration::from_millis(1500),
        ..State::default()
    };
    assert_eq!(st.policy(&o, Task::Refresh).min_valid, s(H + 2));
    assert!(!st.policy(&o, Task::Refresh).mint);
    assert!(st.policy(&o, Task::Roll).mint);
    assert_eq!(st.policy(&o, Task::Validate).min_valid, s(H));
}

fn extended(results: Vec<(&str, Fate)>) -> Extended {
    Extended {
        results: results
            .into_iter()
            .map(|(id, f)| (id.to_string(), f))
            .collect(),
        refreshed: false,
        code: 0,
    }
}

#[test]
fn data_sources_first_run_right_after_the_first_check() {
    let ds = DsRound::default();
    assert_eq!(ds.due_at(false, Some(t(0)), t(5)), None, "not watched");
    assert_eq!(ds.due_at(true, None, t(5)), None, "no check yet");
    assert_eq!(ds.due_at(true, Some(t(0)), t(5)), Some(t(5)));
    let ran = DsRound {
        ran: true,
        next: Some(t(99)),
        ..DsRound::default()
    };
    assert_eq!(ran.due_at(true, Some(t(0)), t(5)), Some(t(99)));
}

#[test]
fn data_sources_plan_the_earliest_expiry_minus_ds_min_valid() {
    let mut ds = DsRound {
        failures: 3,
        ..DsRound::default()
    };
    let done = extended(vec![
        (
            "a",
            Fate::Skipped {
                expires: t(10 * H as i64),
            },
        ),
        (
            "b",
            Fate::Extended {
                before: Some(t(60)),
                after: Some(t(5 * H as i64)),
                nonce: "n".into(),
                jws: None,
            },
        ),
    ]);
    let at = ds.plan(&done, t(0), s(2 * H), s(H));
    assert_eq!(at, t(3 * H as i64));
    assert_eq!(ds.next, Some(at));
    assert_eq!(ds.failures, 0);
    // No known expiry (no data sources): look again after --check-interval.
    assert_eq!(
        ds.plan(&extended(vec![]), t(0), s(2 * H), s(H)),
        t(H as i64)
    );
    // A token that lives shorter than --ds-min-valid: half its life.
    let short = extended(vec![("a", Fate::Skipped { expires: t(600) })]);
    assert_eq!(ds.plan(&short, t(0), s(2 * H), s(H)), t(300));
}

#[test]
fn data_sources_back_off_after_a_failed_run() {
    let mut ds = DsRound::default();
    let waits: Vec<Timestamp> = (0..4).map(|_| ds.retry(t(0), 0.0)).collect();
    assert_eq!(waits, [t(5), t(10), t(20), t(40)]);
    assert_eq!(ds.next, Some(t(40)));
    let done = extended(vec![
        (
            "ok",
            Fate::Skipped {
                expires: t(9 * H as i64),
            },
        ),
        ("bad", Fate::Failed(Error::Other("no".into()))),
        ("later", Fate::NotAttempted),
    ]);
    let sum = datasources::summary(&done);
    assert_eq!((sum.extended, sum.skipped, sum.failed), (0, 1, 2));
}

#[tokio::test]
async fn hooks_report_one_typed_result_per_run() {
    let stored = tokens(H as i64, None);
    let env_file = std::path::Path::new("/srv/app/.env.acme");
    let whose = hooks::HookEnv {
        org: Some("acme"),
        env_file,
    };
    let ok = hooks::run("exit 0", "refreshed", &stored, s(30), &whose).await;
    assert!(matches!(ok.outcome, HookOutcome::Ok));
    assert_eq!(
        (ok.outcome_name(), ok.exit_code(), ok.detail()),
        ("ok", Some(0), None)
    );
    assert_eq!(ok.trigger, "refreshed");

    let failed = hooks::run("exit 3", "rolled", &stored, s(30), &whose).await;
    assert_eq!(failed.outcome_name(), "failed");
    assert_eq!(failed.exit_code(), Some(3));
    assert_eq!(failed.detail().as_deref(), Some("exited with 3"));

    // The hook sees the event, the stored token, and whose it is.
    let seen = hooks::run(
        r#"test "$WEBEX_TOKEN_EVENT" = extended && test "$WEBEX_SERVICE_APP_ACCESS_TOKEN" = at && test "$WEBEX_TOKEN_ORG" = acme && test "$WEBEX_TOKEN_ENV_FILE" = /srv/app/.env.acme"#,
        "extended",
        &stored,
        s(30),
        &whose,
    )
    .await;
    assert_eq!(seen.outcome_name(), "ok", "{:?}", seen.detail());
}

/// Runs `PREFIX sleep 30 & echo $! > PIDFILE; wait` as a hook with a 300 ms
/// time-out; returns the run and the pid of the `sleep` it started.
async fn timed_out_hook(prefix: &str) -> (hooks::HookRun, String) {
    let stored = tokens(H as i64, None);
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let cmd = format!(
        "{prefix}sleep 30 & echo $! > '{}'; wait",
        pid_file.display()
    );
    let whose = hooks::HookEnv {
        org: None,
        env_file: std::path::Path::new("/srv/app/.env"),
    };
    let run = hooks::run(
        &cmd,
        "refreshed",
        &stored,
        Duration::from_millis(300),
        &whose,
    )
    .await;
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    (run, pid)
}

/// Waits (up to 5 s: SIGKILL lands at once, the process table may take a
/// moment) until `pid` is gone or a zombie, and fails naming `what` if not.
fn assert_gone(pid: &str, what: &str) {
    let stat = || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let alive = || {
        let st = stat();
        let state = st.rsplit(") ").next().and_then(|r| r.chars().next());
        state.is_some_and(|c| c != 'Z' && c != 'X')
    };
    for _ in 0..100 {
        if !alive() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(), "{what} survived: {}", stat());
}

#[tokio::test]
async fn a_hook_past_its_time_out_is_killed_with_its_children() {
    let (run, pid) = timed_out_hook("").await;
    assert!(matches!(run.outcome, HookOutcome::TimedOut(_)), "{run:?}");
    assert_eq!(run.outcome_name(), "timeout");
    assert_eq!(run.exit_code(), None);
    assert_eq!(
        run.detail().as_deref(),
        Some("still running after 0s; killed")
    );
    // The `sleep` it started went with it (a zombie at most, never running).
    assert_gone(&pid, "the hook's `sleep`");
}

#[tokio::test]
async fn a_hook_that_ignores_sigterm_is_killed_after_the_grace() {
    // Ignored signals stay ignored across exec: the `sleep` ignores TERM too.
    let (run, pid) = timed_out_hook("trap '' TERM; ").await;
    assert_eq!(run.outcome_name(), "timeout");
    assert_gone(&pid, "a TERM-ignoring child of the hook");
}
