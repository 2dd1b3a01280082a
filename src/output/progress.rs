//! Progress for work over many items (orgs, data sources) on a terminal:
//! an indicatif bar on stderr with counts, then one closing total line
//! ("40 orgs: 38 ok, 1 refreshed, 1 failed (acme: …)").
//!
//! Only when stderr is a terminal and the run is not `-q`, `--json` or
//! `--log-format json`: scripts, cron mail and log collectors see exactly
//! what they saw before. Logs still go through tracing; the bar is cleared
//! before the total line, so the two never interleave on one line.

use super::Printer;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// How many failures the total line names before "and N more".
const NAMED_FAILURES: usize = 3;

pub struct Progress {
    bar: Option<ProgressBar>,
    /// "org", "data source": the noun of one item.
    noun: &'static str,
    total: usize,
    /// Outcome label → count, in the order labels first appeared.
    counts: Vec<(&'static str, usize)>,
    failures: Vec<(String, String)>,
}

impl Progress {
    /// A bar for `total` items; drawn only where a person watches (see the
    /// module doc), and only for more than one item.
    pub fn new(printer: &Printer, total: usize, noun: &'static str) -> Progress {
        let shown = total > 1
            && !printer.quiet
            && !printer.json
            && !printer.json_logs
            && std::io::stderr().is_terminal();
        let bar = shown.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {pos}/{len} {msg} {wide_bar} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(format!("{noun}s"));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            noun,
            total,
            counts: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// One item done with `label` ("ok", "refreshed", "renewed", ...).
    pub fn done(&mut self, label: &'static str) {
        match self.counts.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => self.counts.push((label, 1)),
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// One item failed; `why` is its error's first line.
    pub fn failed(&mut self, name: &str, why: &str) {
        self.failures.push((name.to_string(), why.to_string()));
        self.done("failed");
    }

    /// Clears the bar (before the results go to stdout on the same
    /// terminal).
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Clears the bar and, where it was shown, prints the total line on
    /// stderr: the last line a person sees.
    pub fn finish(self) {
        let Some(bar) = &self.bar else {
            return;
        };
        bar.finish_and_clear();
        let line = self.total_line();
        let _ = writeln!(std::io::stderr(), "{line}");
    }

    /// "40 orgs: 38 ok, 1 refreshed, 1 failed (acme: …)".
    pub fn total_line(&self) -> String {
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(label, n)| {
                let mut s = format!("{n} {label}");
                if *label == "failed" && !self.failures.is_empty() {
                    let named: Vec<String> = self
                        .failures
                        .iter()
                        .take(NAMED_FAILURES)
                        .map(|(name, why)| format!("{name}: {}", shorten(why)))
                        .collect();
                    let more = self.failures.len().saturating_sub(NAMED_FAILURES);
                    let more = match more {
                        0 => String::new(),
                        n => format!("; and {n} more"),
                    };
                    s.push_str(&format!(" ({}{more})", named.join("; ")));
                }
                s
            })
            .collect();
        let noun = match self.total {
            1 => self.noun.to_string(),
            _ => format!("{}s", self.noun),
        };
        format!("{} {noun}: {}", self.total, counts.join(", "))
    }
}

/// An error message cut to fit the total line (the full text is printed
/// per item above it).
fn shorten(why: &str) -> String {
    const MAX: usize = 60;
    let first = why.lines().next().unwrap_or_default();
    if first.chars().count() <= MAX {
        return first.to_string();
    }
    let cut: String = first.chars().take(MAX - 1).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_counts_and_names_failures() {
        let mut p = Progress {
            bar: None,
            noun: "org",
            total: 40,
            counts: Vec::new(),
            failures: Vec::new(),
        };
        for _ in 0..38 {
            p.done("ok");
        }
        p.done("refreshed");
        p.failed(
            "acme",
            "every available level of the refresh chain was rejected",
        );
        assert_eq!(
            p.total_line(),
            "40 orgs: 38 ok, 1 refreshed, 1 failed (acme: every available level of the refresh chain was rejected)"
        );
        for n in 0..4 {
            p.failed(&format!("o{n}"), &"x".repeat(100));
        }
        let line = p.total_line();
        assert!(
            line.contains("5 failed (acme: ") && line.ends_with("; and 2 more)"),
            "{line}"
        );
        assert!(line.contains('…'));
    }
}
