//! The `watch --json` event lines: `schemaVersion`, `event`, `time`, the
//! event's own fields, then `command` and (with `serviceApp.orgs`) `org`.

use super::{attempts_json, error_json_fields, refresh_json};
use crate::chain::Outcome;
use crate::clock;
use crate::engine::datasources::extend::Extended;
use crate::error::Error;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};
use std::path::Path;

/// The `started` event's fields.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub env_file: String,
    pub config_file: String,
    pub min_valid_seconds: u64,
    pub check_interval_seconds: u64,
    pub rt_min_valid_seconds: u64,
    pub health: Option<String>,
    pub datasources: bool,
    pub ds_min_valid_seconds: Option<u64>,
    pub once: bool,
}

/// The `hook` event's fields.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hook<'a> {
    pub hook: &'a str,
    pub trigger: &'a str,
    pub outcome: &'a str,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// Any serializable fields as an object (a struct of the ones above).
pub fn fields(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or_else(|_| json!({}))
}

/// `validated`, `refreshed`, `rolled`: the `refresh --json` fields (less
/// `schemaVersion` and `command`) and the tick's `task`.
pub fn checked(task: &str, o: &Outcome, now: Timestamp, env: &Path, config: &Path) -> Value {
    let mut v = refresh_json(o, now, env, config);
    if let Value::Object(m) = &mut v {
        m.remove("schemaVersion");
        m.remove("command");
        m.insert("task".into(), json!(task));
    }
    v
}

/// `failed` after a tick (`task`: `None` when the files could not be read).
pub fn failed(task: Option<&str>, e: &Error, retry_at: Timestamp) -> Value {
    json!({
        "task": task,
        "exitCode": e.exit_code(),
        "error": error_json_fields(e),
        "attempts": attempts_json(e.attempts()),
        "retryAt": clock::format_utc(retry_at),
    })
}

/// `failed` after a data-source renewal run that failed as a whole.
pub fn datasources_failed(e: &Error, retry_at: Timestamp) -> Value {
    json!({
        "task": "extend",
        "exitCode": e.exit_code(),
        "error": error_json_fields(e),
        "retryAt": clock::format_utc(retry_at),
    })
}

/// `extended` (or `failed`) after a renewal run: the counts, each data
/// source's fate and when the next run is.
pub fn datasources(
    done: &Extended,
    counts: (usize, usize, usize),
    ds_min_valid_seconds: u64,
    now: Timestamp,
    next_at: Timestamp,
) -> Value {
    let (extended, skipped, failed) = counts;
    json!({
        "task": "extend",
        "exitCode": done.code,
        "dsMinValidSeconds": ds_min_valid_seconds,
        "serviceAppTokenRefreshed": done.refreshed,
        "summary": {"extended": extended, "skipped": skipped, "failed": failed},
        "dataSources": ds_results(done, now),
        "nextAt": clock::format_utc(next_at),
    })
}

/// Each data source of a renewal run (the shape `datasources extend`
/// uses, without the nonce).
fn ds_results(done: &Extended, now: Timestamp) -> Vec<Value> {
    done.results
        .iter()
        .map(|(id, f)| super::datasources::result_json(id, f, now, false))
        .collect()
}

/// `stopping` after a signal.
pub fn stopping(signal: &str) -> Value {
    json!({ "signal": signal })
}

/// `added` and `removed` (an org put into or taken out of the config while
/// `watch` runs): the org's env file (the org is the tag's `org`).
pub fn org_change(env_file: &Path) -> Value {
    json!({ "envFile": env_file.display().to_string() })
}

/// Adds `command` and (when given) `org` after the event's own fields.
pub fn tagged(fields: Value, org: Option<&str>) -> Value {
    let mut fields = fields;
    if let Value::Object(m) = &mut fields {
        m.insert("command".into(), json!("watch"));
        if let Some(org) = org {
            m.insert("org".into(), json!(org));
        }
    }
    fields
}
