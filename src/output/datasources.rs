//! The data-source shapes: one data source's result (in `datasources
//! extend --json` and `watch --json` alike) and the `extend` object.

use super::{SCHEMA_VERSION, datasource_error_json, token_json};
use crate::clock;
use crate::engine::datasources::DataSource;
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

/// A data source under `--json` (`list`, `show`, `register`): every field
/// but the token, which appears as fingerprint and expiry only.
pub fn source_json(d: &DataSource, now: Timestamp) -> Value {
    let expiry = d.token_expiry();
    let mut token = token_json(d.jws_token.as_ref(), expiry.map(|e| e.0), now);
    token["expirySource"] = json!(expiry.map(|e| e.1.name()));
    json!({
        "id": d.id,
        "schemaId": d.schema_id,
        "url": d.url,
        "audience": d.audience,
        "subject": d.subject,
        "status": d.status,
        "errorMessage": d.error_message,
        "tokenLifetimeMinutes": d.token_lifetime_minutes,
        "nonce": d.nonce,
        "orgId": d.org_id,
        "applicationId": d.application_id,
        "createdBy": d.created_by,
        "createdAt": d.created_at,
        "updatedAt": d.updated_at,
        "token": token,
    })
}

/// `datasources show --json` and `datasources register --json`.
pub fn one_source_json(command: &str, d: &DataSource, now: Timestamp) -> Value {
    json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": command,
        "ok": true,
        "dataSource": source_json(d, now),
    })
}

/// `datasources list --json` for one org.
pub fn list_json(command: &str, sources: &[DataSource], disabled: usize, now: Timestamp) -> Value {
    json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": command,
        "ok": true,
        "count": sources.len(),
        "disabled": disabled,
        "dataSources": sources.iter().map(|d| source_json(d, now)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::datasources::test_support::{jws, source};

    #[test]
    fn json_view_never_holds_the_token() {
        let token = jws(json!({"exp": 1_800_000_000}));
        let d = source(json!({"id": "x", "jwsToken": token, "status": "active"}));
        let v = source_json(&d, Timestamp::from_second(1_799_999_000).unwrap());
        let text = v.to_string();
        assert!(!text.contains(&token));
        assert_eq!(v["token"]["secondsLeft"], 1000);
        assert_eq!(v["token"]["expirySource"], "jws");
        assert!(
            v["token"]["fingerprint"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert!(!format!("{d:?}").contains(&token));
    }
}
