//! The data-source round of `watch --datasources`: when the renewal runs
//! are due, the back-off after a failed one, and the plan after a good one.
//! Pure bookkeeping (`now` is passed in); the run itself is
//! [`crate::engine::datasources::extend::extend_org`].

use super::DsSummary;
use super::watcher::{MIN_GAP, after, half_life};
use crate::clock;
use crate::engine::datasources::extend::{Extended, Fate};
use crate::engine::schedule;
use jiff::Timestamp;
use std::time::Duration;

/// One org's data-source round.
#[derive(Debug, Default)]
pub struct DsRound {
    /// When the data sources are next due (after the first run).
    pub next: Option<Timestamp>,
    /// Renewal runs that failed in a row.
    pub failures: u32,
    /// The exit code of the last renewal run (for `--once`).
    pub code: u8,
    /// A renewal run has been made.
    pub ran: bool,
}

impl DsRound {
    /// When the next run is due, for the schedule (`None`: not watched).
    /// The first run comes right after the first check (which may refresh
    /// the token the renewals use).
    pub fn due_at(
        &self,
        watched: bool,
        last_validated: Option<Timestamp>,
        now: Timestamp,
    ) -> Option<Timestamp> {
        match (watched, self.ran) {
            (false, _) => None,
            (true, true) => self.next,
            (true, false) => last_validated.map(|_| now),
        }
    }

    /// After a failed renewal run: back off (5 s doubling to 5 min);
    /// `jitter01` in [0, 1).
    pub fn retry(&mut self, now: Timestamp, jitter01: f64) -> Timestamp {
        self.failures = self.failures.saturating_add(1);
        let at = after(now, schedule::backoff(self.failures, jitter01));
        self.next = Some(at);
        at
    }

    /// After a run in which nothing failed: the next run at the earliest
    /// known token expiry minus `ds_min_valid`; with no known expiry, after
    /// `check_interval` (to notice new data sources); a token that lives
    /// shorter than `ds_min_valid` waits half its life.
    pub fn plan(
        &mut self,
        done: &Extended,
        now: Timestamp,
        ds_min_valid: Duration,
        check_interval: Duration,
    ) -> Timestamp {
        self.failures = 0;
        let at = next_run(done, now, ds_min_valid, check_interval);
        self.next = Some(at);
        at
    }
}

/// Counts of a run's outcomes (not attempted counts as failed).
pub fn summary(done: &Extended) -> DsSummary {
    let count = |f: fn(&Fate) -> bool| done.results.iter().filter(|(_, x)| f(x)).count();
    DsSummary {
        extended: count(|f| matches!(f, Fate::Extended { .. })),
        skipped: count(|f| matches!(f, Fate::Skipped { .. })),
        failed: count(|f| matches!(f, Fate::Failed(_) | Fate::NotAttempted)),
    }
}

fn next_run(
    done: &Extended,
    now: Timestamp,
    ds_min_valid: Duration,
    check_interval: Duration,
) -> Timestamp {
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
        return after(now, check_interval.max(MIN_GAP));
    };
    let window = jiff::SignedDuration::try_from(ds_min_valid).unwrap_or(jiff::SignedDuration::MAX);
    let at = earliest.checked_sub(window).unwrap_or(Timestamp::MIN);
    if at > after(now, MIN_GAP) {
        return at;
    }
    let half = half_life(now, earliest);
    tracing::warn!(
        "a data-source token lives shorter than --ds-min-valid; next renewal run in {}",
        clock::human_span(half.as_secs())
    );
    after(now, half.max(MIN_GAP))
}
