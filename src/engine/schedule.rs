//! When `watch` next has something to do: pure deadline arithmetic, no
//! clock reads, no I/O, so every rule is unit-tested.
//!
//! Up to four deadlines compete; the earliest wins:
//! - refresh: the access token's stored expiry − `min_valid` − jitter (now
//!   when there is no token or no known expiry);
//! - validate: the last successful check + `check_interval` (now when there
//!   has been none yet);
//! - roll: the service-app refresh token's stored expiry − `rt_min_valid`
//!   (never when the expiry is unknown), but not before a failed roll's
//!   retry time;
//! - extend (`--datasources`): the earliest data-source token expiry −
//!   `ds_min_valid`, as the last renewal run found it (now before the
//!   first), or its retry time after a failure.
//!
//! After a failure every deadline waits for `blocked_until` (the back-off).

use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// What a tick does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Mint a new token pair (level 2) before the refresh token lapses. It
    /// also yields a new access token, so it goes first when several are due.
    Roll,
    /// The access token expires within `min_valid`: refresh it.
    Refresh,
    /// Renew the data-source tokens that expire within `ds_min_valid`.
    Extend,
    /// One `GET /dataSources`; a 401 refreshes.
    Validate,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Roll => "roll",
            Task::Refresh => "refresh",
            Task::Extend => "extend",
            Task::Validate => "validate",
        }
    }
}

/// Everything the plan depends on.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub now: Timestamp,
    pub has_access_token: bool,
    pub access_expires_at: Option<Timestamp>,
    pub has_refresh_token: bool,
    pub refresh_expires_at: Option<Timestamp>,
    pub last_validated: Option<Timestamp>,
    pub min_valid: Duration,
    pub check_interval: Duration,
    pub rt_min_valid: Duration,
    /// Subtracted from the refresh deadline, so watchers sharing an env
    /// file (or an org) do not all wake in the same instant.
    pub jitter: Duration,
    /// After a failed roll: not before this.
    pub roll_not_before: Option<Timestamp>,
    /// After a failed tick: nothing before this.
    pub blocked_until: Option<Timestamp>,
    /// When the data sources are next due (`None`: not watched).
    pub extend_at: Option<Timestamp>,
}

/// The next tick: when, and what it will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    pub at: Timestamp,
    pub task: Task,
}

fn minus(t: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    t.checked_sub(d).unwrap_or(Timestamp::MIN)
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// The refresh deadline alone (see the module doc).
pub fn refresh_at(i: &Inputs) -> Timestamp {
    match (i.has_access_token, i.access_expires_at) {
        (true, Some(exp)) => minus(minus(exp, i.min_valid), i.jitter),
        // A token of unknown expiry is checked every `check_interval`
        // (a 401 refreshes it), never refreshed blindly.
        (true, None) => Timestamp::MAX,
        (false, _) => i.now,
    }
}

/// The roll deadline alone, if a roll is possible at all.
pub fn roll_at(i: &Inputs) -> Option<Timestamp> {
    if !i.has_refresh_token {
        return None;
    }
    let at = minus(i.refresh_expires_at?, i.rt_min_valid);
    Some(match i.roll_not_before {
        Some(nb) if nb > at => nb,
        _ => at,
    })
}

/// The validation deadline alone.
pub fn validate_at(i: &Inputs) -> Timestamp {
    match i.last_validated {
        Some(t) => plus(t, i.check_interval),
        None => i.now,
    }
}

/// The next tick. Ties go to the task listed first in [`Task`].
pub fn next(i: &Inputs) -> Next {
    let mut best = Next {
        at: validate_at(i),
        task: Task::Validate,
    };
    // A check due at the same moment goes first (it may refresh the token
    // the renewals use).
    if let Some(extend) = i.extend_at
        && extend < best.at
    {
        best = Next {
            at: extend,
            task: Task::Extend,
        };
    }
    let refresh = refresh_at(i);
    if refresh <= best.at {
        best = Next {
            at: refresh,
            task: Task::Refresh,
        };
    }
    if let Some(roll) = roll_at(i)
        && roll <= best.at
    {
        best = Next {
            at: roll,
            task: Task::Roll,
        };
    }
    if let Some(b) = i.blocked_until
        && b > best.at
    {
        best.at = b;
    }
    best
}

/// The task to do at `i.now`, if any is due (the earliest due one wins as in
/// [`next`]).
pub fn due(i: &Inputs) -> Option<Task> {
    let n = next(i);
    (n.at <= i.now).then_some(n.task)
}

/// Back-off after the `failures`-th transient failure in a row (1-based):
/// 5 s doubling to 5 min, plus up to a fifth of it as jitter (`jitter01` in
/// [0, 1)).
pub fn backoff(failures: u32, jitter01: f64) -> Duration {
    let base = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16));
    let base = Duration::from_secs(base.min(300));
    base + base.mul_f64(0.2 * jitter01.clamp(0.0, 0.999))
}

/// The jitter window before the refresh deadline: a tenth of `min_valid`,
/// at most 5 minutes.
pub fn jitter_window(min_valid: Duration) -> Duration {
    (min_valid / 10).min(Duration::from_secs(300))
}

/// How long to sleep from `now` until `at` (zero when passed).
pub fn until(now: Timestamp, at: Timestamp) -> Duration {
    let d = at.duration_since(now);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn base() -> Inputs {
        Inputs {
            now: t(0),
            has_access_token: true,
            access_expires_at: Some(t(14 * 24 * H as i64)),
            has_refresh_token: true,
            refresh_expires_at: Some(t(90 * 24 * H as i64)),
            last_validated: Some(t(0)),
            min_valid: Duration::from_secs(H),
            check_interval: Duration::from_secs(H),
            rt_min_valid: Duration::from_secs(14 * 24 * H),
            jitter: Duration::ZERO,
            roll_not_before: None,
            blocked_until: None,
            extend_at: None,
        }
    }

    #[test]
    fn validates_every_check_interval_while_the_token_is_far_from_expiry() {
        let i = base();
        assert_eq!(
            next(&i),
            Next {
                at: t(H as i64),
                task: Task::Validate
            }
        );
        assert_eq!(due(&i), None);
    }

    #[test]
    fn never_validated_means_now() {
        let i = Inputs {
            last_validated: None,
            ..base()
        };
        assert_eq!(due(&i), Some(Task::Validate));
    }

    #[test]
    fn refresh_deadline_is_expiry_minus_min_valid_minus_jitter() {
        let i = Inputs {
            access_expires_at: Some(t(1800)),
            min_valid: Duration::from_secs(600),
            jitter: Duration::from_secs(30),
            ..base()
        };
        assert_eq!(
            next(&i),
            Next {
                at: t(1170),
                task: Task::Refresh
            }
        );
        // Due once that moment comes, not before.
        assert_eq!(
            due(&Inputs {
                now: t(1169),
                ..i.clone()
            }),
            None
        );
        assert_eq!(due(&Inputs { now: t(1170), ..i }), Some(Task::Refresh));
    }

    #[test]
    fn no_token_refreshes_now_unknown_expiry_validates() {
        let none = Inputs {
            has_access_token: false,
            access_expires_at: None,
            ..base()
        };
        assert_eq!(due(&none), Some(Task::Refresh));
        let unknown = Inputs {
            access_expires_at: None,
            ..base()
        };
        assert_eq!(next(&unknown).task, Task::Validate);
    }

    #[test]
    fn roll_when_the_refresh_token_nears_its_end() {
        let i = Inputs {
            refresh_expires_at: Some(t(14 * 24 * H as i64 + 100)),
            access_expires_at: Some(t(14 * 24 * H as i64)),
            check_interval: Duration::from_secs(24 * H),
            ..base()
        };
        assert_eq!(
            next(&i),
            Next {
                at: t(100),
                task: Task::Roll
            }
        );
        // Unknown expiry or no refresh token: no roll ever.
        let unknown = Inputs {
            refresh_expires_at: None,
            ..i.clone()
        };
        assert_eq!(next(&unknown).task, Task::Validate);
        let none = Inputs {
            has_refresh_token: false,
            ..i.clone()
        };
        assert_eq!(roll_at(&none), None);
        // A failed roll waits for its retry time.
        let retry = Inputs {
            now: t(200),
            roll_not_before: Some(t(200 + H as i64)),
            last_validated: Some(t(200)),
            ..i
        };
        assert_eq!(roll_at(&retry), Some(t(200 + H as i64)));
        assert_eq!(due(&retry), None);
    }

    #[test]
    fn roll_wins_a_tie_and_refresh_beats_validate() {
        let i = Inputs {
            now: t(10),
            access_expires_at: Some(t(H as i64)),
            refresh_expires_at: Some(t(14 * 24 * H as i64)),
            last_validated: None,
            ..base()
        };
        assert_eq!(due(&i), Some(Task::Roll));
        let j = Inputs {
            refresh_expires_at: None,
            ..i
        };
        assert_eq!(due(&j), Some(Task::Refresh));
    }

    #[test]
    fn extend_has_its_own_deadline_and_yields_to_token_work() {
        let i = Inputs {
            extend_at: Some(t(600)),
            ..base()
        };
        assert_eq!(
            next(&i),
            Next {
                at: t(600),
                task: Task::Extend
            }
        );
        assert_eq!(due(&i), None);
        assert_eq!(
            due(&Inputs {
                now: t(600),
                ..i.clone()
            }),
            Some(Task::Extend)
        );
        // Later than the check: validate first.
        let later = Inputs {
            extend_at: Some(t(2 * H as i64)),
            ..base()
        };
        assert_eq!(next(&later).task, Task::Validate);
        // A refresh due at the same moment goes first.
        let tie = Inputs {
            now: t(10),
            has_access_token: false,
            extend_at: Some(t(10)),
            ..base()
        };
        assert_eq!(due(&tie), Some(Task::Refresh));
        assert_eq!(
            due(&Inputs {
                has_access_token: true,
                ..tie
            }),
            Some(Task::Extend)
        );
    }

    #[test]
    fn blocked_until_delays_everything() {
        let i = Inputs {
            has_access_token: false,
            blocked_until: Some(t(5)),
            ..base()
        };
        assert_eq!(
            next(&i),
            Next {
                at: t(5),
                task: Task::Refresh
            }
        );
        assert_eq!(due(&i), None);
        assert_eq!(due(&Inputs { now: t(5), ..i }), Some(Task::Refresh));
    }

    #[test]
    fn backoff_doubles_from_5s_to_5m_with_bounded_jitter() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n, 0.0).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(1000, 0.0).as_secs(), 300);
        let j = backoff(1, 0.999);
        assert!(
            j > Duration::from_secs(5) && j < Duration::from_secs(6),
            "{j:?}"
        );
        assert!(backoff(9, 0.999) < Duration::from_secs(360));
    }

    #[test]
    fn jitter_is_small() {
        assert_eq!(
            jitter_window(Duration::from_secs(H)),
            Duration::from_secs(300)
        );
        assert_eq!(
            jitter_window(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn until_never_negative() {
        assert_eq!(until(t(10), t(5)), Duration::ZERO);
        assert_eq!(until(t(5), t(10)), Duration::from_secs(5));
    }
}
