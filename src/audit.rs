//! The audit trail: one JSON line per token operation (refresh, re-mint,
//! OAuth renewal, setup), appended to a 0600 file. It holds fingerprints,
//! never tokens. A failure to write it is a warning, not a failed run: the
//! tokens matter more than the record of them.

use crate::chain::AttemptRecord;
use serde::Serialize;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;

/// A token operation as one audit line (fields in the order they are
/// written; `None` is written as `null`, so every line of a kind has the
/// same keys).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshEvent<'a> {
    pub command: &'a str,
    pub operation: &'static str,
    pub level: u8,
    pub outcome: &'static str,
    pub access_token_fingerprint: Option<String>,
    pub access_token_expires_at: Option<String>,
    pub refresh_token_fingerprint: Option<String>,
    pub refresh_token_expires_at: Option<String>,
    pub attempts: Vec<AttemptRecord>,
    pub tracking_id: Option<String>,
    pub env_file: String,
    pub error: Option<String>,
}

/// A refresh that failed after Webex was asked.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureEvent<'a> {
    pub command: &'a str,
    pub operation: &'static str,
    pub outcome: &'static str,
    pub exit_code: u8,
    pub error: String,
    pub attempts: Vec<AttemptRecord>,
    pub tracking_id: Option<String>,
    pub env_file: String,
    /// The org's name, in a run over several orgs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Every level was rejected: a person must re-authorize
    /// (`webex-token setup-oauth`), and retrying will not help.
    pub reauthorization_required: bool,
}

/// Level 3 renewed the personal token (saved where the run keeps that
/// state: the config file, the state file, or the etcd store).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewalEvent<'a> {
    pub command: &'a str,
    pub operation: &'static str,
    pub level: u8,
    pub outcome: &'static str,
    pub personal_token_fingerprint: String,
    pub personal_token_expires_at: Option<String>,
    pub integration_refresh_token_fingerprint: Option<String>,
    pub integration_refresh_token_expires_at: Option<String>,
}

/// One `--on-refresh` hook run of `watch`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookEvent<'a> {
    pub command: &'a str,
    pub operation: &'static str,
    /// What the hook ran after (`refreshed`, `rolled`, `extended`).
    pub event: &'a str,
    pub hook: &'a str,
    pub outcome: &'static str,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: u64,
    pub env_file: String,
}

/// One data-source token renewal (`datasources extend`, `watch
/// --datasources`). The renewed token appears as a fingerprint only; the
/// fields after `nonce` are written for the outcome they belong to.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceExtendEvent<'a> {
    pub command: &'a str,
    pub operation: &'static str,
    pub data_source_id: &'a str,
    pub token_lifetime_minutes: u32,
    pub previous_expires_at: Option<String>,
    pub outcome: &'static str,
    pub nonce: Option<&'a str>,
    /// Succeeded: the new expiry (`null` when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jws_token_fingerprint: Option<Option<&'a str>>,
    /// Failed: what it stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Failed with an answer from Webex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<Option<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<Option<&'a str>>,
}

/// One `datasources register` (a POST with a fresh nonce).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceRegisterEvent<'a> {
    pub command: &'a str,
    pub operation: &'static str,
    pub outcome: &'a str,
    pub data_source_id: Option<String>,
    pub schema_id: &'a str,
    pub url: &'a str,
    pub nonce: &'a str,
    pub token_lifetime_minutes: u32,
    pub token_expires_at: Option<String>,
    pub jws_token_fingerprint: Option<String>,
    pub error: Option<String>,
}

/// `setup-oauth` saved a renewed personal token and integration refresh
/// token (fingerprints only).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetupEvent<'a> {
    pub command: &'static str,
    pub operation: &'static str,
    pub flow: &'a str,
    pub outcome: &'static str,
    pub personal_token_fingerprint: String,
    pub personal_token_expires_at: Option<String>,
    pub integration_refresh_token_fingerprint: Option<String>,
    pub integration_refresh_token_expires_at: Option<String>,
    pub integration_client_id: &'a str,
    pub integration_client_secret_fingerprint: &'a str,
    pub config_file: String,
}

/// Appends a typed event (see [`append`]).
pub fn record(path: &Path, event: &impl Serialize) {
    match serde_json::to_value(event) {
        Ok(v) => append(path, v),
        Err(e) => tracing::warn!("could not record an audit event: {e}"),
    }
}

/// Appends `event` (an object; time, host, user and pid are added) to `path`.
fn append(path: &Path, mut event: Value) {
    if let Value::Object(map) = &mut event {
        let mut full = serde_json::Map::new();
        full.insert(
            "time".into(),
            json!(crate::clock::format_utc(crate::clock::now())),
        );
        full.insert("host".into(), json!(hostname()));
        full.insert("user".into(), json!(username()));
        full.insert("pid".into(), json!(std::process::id()));
        full.append(map);
        event = Value::Object(full);
    }
    let mut line = event.to_string();
    line.push('\n');
    if let Err(e) = write_line(path, line.as_bytes()) {
        tracing::warn!("could not append to the audit log {}: {e}", path.display());
    }
}

fn write_line(path: &Path, line: &[u8]) -> std::io::Result<()> {
    // Never through a symlink, never into a FIFO or device (that could
    // block while the run holds its lock), 0600 and owned like the env file
    // it sits beside.
    let mut f = crate::fs_atomic::open_private(path, true)?;
    let env_file = path
        .to_str()
        .and_then(|p| p.strip_suffix(".audit.jsonl"))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| path.with_file_name("."));
    crate::fs_atomic::adopt_owner(&f, &env_file);
    // One write of the whole line: with O_APPEND, concurrent runs' lines
    // do not interleave.
    f.write_all(line)
}

/// This machine's name (`unknown` when none can be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

fn username() -> String {
    for var in ["USER", "LOGNAME", "USERNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return v;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata("/proc/self") {
            return format!("uid:{}", m.uid());
        }
    }
    "unknown".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_private_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.audit.jsonl");
        append(&p, json!({"command": "refresh", "outcome": "refreshed"}));
        append(&p, json!({"command": "refresh", "outcome": "valid"}));
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["outcome"], "refreshed");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
