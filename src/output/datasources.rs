//! The data-source shapes: one data source's result (in `datasources
//! extend --json` and `watch --json` alike) and the `extend` object.

use super::{SCHEMA_VERSION, datasource_error_json};
use crate::clock;
use crate::engine::datasources::extend::{Extended, Fate};
use jiff::Timestamp;
use serde_json::{Value, json};

/// One data source of a renewal run: what happened, its token's expiry
/// before and after, and its fingerprint (never the token). `extend`
/// shows the renewal's nonce too.
pub fn result_json(id: &str, fate: &Fate, now: Timestamp, with_nonce: bool) -> Value {
    let at = |t: Option<Timestamp>| {
        json!({
            "expiresAt": t.map(clock::format_utc),
            "secondsLeft": t.map(|t| clock::seconds_until(now, t)),
        })
    };
    match fate {
        Fate::Skipped { expires } => {
            json!({"id": id, "action": "skipped", "before": at(Some(*expires))})
        }
        Fate::WouldExtend { expires } => {
            json!({"id": id, "action": "would_extend", "before": at(*expires)})
        }
        Fate::Extended {
            before,
            after,
            nonce,
            jws,
        } => {
            let mut v = json!({
                "id": id, "action": "extended", "before": at(*before), "after": at(*after),
            });
            if with_nonce {
                v["nonce"] = json!(nonce);
            }
            v["jwsTokenFingerprint"] = json!(jws);
            v
        }
        Fate::Failed(e) => {
            json!({"id": id, "action": "failed", "error": datasource_error_json(e)})
        }
        Fate::NotAttempted => json!({"id": id, "action": "not_attempted"}),
    }
}

/// The counts of a run: extended, skipped, would extend, failed, not
/// attempted.
pub fn counts(done: &Extended) -> [usize; 5] {
    let count = |f: fn(&Fate) -> bool| done.results.iter().filter(|(_, x)| f(x)).count();
    [
        count(|f| matches!(f, Fate::Extended { .. })),
        count(|f| matches!(f, Fate::Skipped { .. })),
        count(|f| matches!(f, Fate::WouldExtend { .. })),
        count(|f| matches!(f, Fate::Failed(_))),
        count(|f| matches!(f, Fate::NotAttempted)),
    ]
}

/// `datasources extend --json` for one org.
pub fn extend_json(
    command: &str,
    dry_run: bool,
    min_valid_seconds: u64,
    lifetime_minutes: u32,
    done: &Extended,
    now: Timestamp,
) -> Value {
    let [extended, skipped, would, failed, not_tried] = counts(done);
    let items: Vec<Value> = done
        .results
        .iter()
        .map(|(id, f)| result_json(id, f, now, true))
        .collect();
    json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": command,
        "ok": done.code == 0,
        "exitCode": done.code,
        "dryRun": dry_run,
        "minValidSeconds": min_valid_seconds,
        "lifetimeMinutes": lifetime_minutes,
        "serviceAppTokenRefreshed": done.refreshed,
        "summary": {
            "extended": extended, "skipped": skipped, "wouldExtend": would,
            "failed": failed, "notAttempted": not_tried,
        },
        "results": items,
    })
}
