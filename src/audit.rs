//! The audit trail: one JSON line per token operation (refresh, re-mint,
//! OAuth renewal, setup), appended to a 0600 file. It holds fingerprints,
//! never tokens. A failure to write it is a warning, not a failed run: the
//! tokens matter more than the record of them.

use serde_json::{Value, json};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends `event` (an object; time, host, user and pid are added) to `path`.
pub fn append(path: &Path, mut event: Value) {
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
    let mut opts = OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    // One write of the whole line: with O_APPEND, concurrent runs' lines
    // do not interleave.
    f.write_all(line)
}

fn hostname() -> String {
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

/// Where the audit log goes: `None` when turned off.
pub fn resolve(flag: Option<&str>, env_path: &Path) -> Option<PathBuf> {
    match flag {
        Some(v) if v.eq_ignore_ascii_case("off") => None,
        Some(v) if !v.trim().is_empty() => Some(crate::settings::absolute(Path::new(v))),
        _ => Some(crate::store::audit_path(env_path)),
    }
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

    #[test]
    fn off_and_default() {
        assert!(resolve(Some("off"), Path::new("/x/.env")).is_none());
        assert_eq!(
            resolve(None, Path::new("/x/.env")).unwrap(),
            PathBuf::from("/x/.env.audit.jsonl")
        );
    }
}
