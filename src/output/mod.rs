//! Everything written to stdout: human text or one JSON object (with
//! `schemaVersion`). Logs and errors go to stderr; nothing else in the
//! program prints to stdout.

pub mod datasources;
pub mod help;
pub mod logging;
pub mod progress;
pub mod status;
pub mod watch;

use crate::chain::{Action, Attempt, Outcome, Validation};
use crate::clock;
use crate::error::Error;
use crate::secret::{SecretString, fingerprint};
use crate::tokens::StoredTokens;
use jiff::Timestamp;
use serde_json::{Value, json};
use std::error::Error as _;
use std::io::{IsTerminal, Write};
use std::path::Path;

pub use crate::names::SCHEMA_VERSION;

/// How results are shown.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub json: bool,
    pub quiet: bool,
    pub color: bool,
    /// `--log-format json`: the final error goes to stderr as a JSON line
    /// too, so a log collector never meets a plain-text line.
    pub json_logs: bool,
}

impl Printer {
    pub fn new(json: bool, quiet: bool) -> Printer {
        let color = !json
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Printer {
            json,
            quiet,
            color,
            json_logs: false,
        }
    }

    /// With `--log-format json`.
    pub fn with_json_logs(mut self, on: bool) -> Printer {
        self.json_logs = on;
        self
    }

    fn emit_json(&self, v: &Value) {
        let line = json_text(v);
        write_stdout(|out| writeln!(out, "{line}"));
    }

    fn emit_text(&self, text: &str) {
        if self.quiet {
            return;
        }
        write_stdout(|out| writeln!(out, "{text}"));
    }

    /// `s` in the ANSI colour `code` when stdout is a colour terminal.
    pub fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    /// Result of `init`: the file written, what is left to fill in, and
    /// the command to run next.
    pub fn init_done(&self, path: &Path, unset: &[&str], next: &str) {
        if self.json {
            self.emit_json(&json!({
                "schemaVersion": SCHEMA_VERSION,
                "command": "init",
                "ok": true,
                "exitCode": 0,
                "config": path,
                "unset": unset,
                "next": next,
            }));
            return;
        }
        let mut text = format!("wrote {} (mode 0600)", path.display());
        if !unset.is_empty() {
            let keys: Vec<String> = unset.iter().map(|k| format!("`{k}`")).collect();
            text.push_str(&format!(
                "\nstill to fill in there: {} (developer.webex.com → My Webex Apps)",
                keys.join(", ")
            ));
        }
        text.push_str(&format!("\nnext: {next}"));
        self.emit_text(&text);
    }

    /// Result of `refresh`. `renewed_in`: where a renewed personal token
    /// was saved (the state file, if the run has one, else the config; with
    /// `--store etcd://`, the etcd key).
    pub fn refresh(
        &self,
        o: &Outcome,
        now: Timestamp,
        env_path: &Path,
        (config_path, renewed_in): (&Path, &str),
    ) {
        if self.json {
            let mut v = refresh_json(o, now, env_path, config_path);
            saved_in(&mut v, o, renewed_in);
            self.emit_json(&v);
            return;
        }
        self.emit_text(&self.refresh_text(o, now, renewed_in));
    }

    /// Output of `refresh` over several orgs: one line per org (failures
    /// also on stderr, even with `-q`), or one object with an `orgs` array.
    /// `exit_code` is the run's (the worst of the orgs').
    pub fn refresh_orgs(
        &self,
        results: &[OrgResult<'_, Outcome>],
        now: Timestamp,
        (config_path, renewed_in): (&Path, &str),
        exit_code: u8,
    ) {
        let failed: Vec<(String, &Error)> = results
            .iter()
            .filter_map(|r| r.result.as_ref().err().map(|e| (r.name.to_string(), e)))
            .collect();
        if self.json {
            let orgs: Vec<Value> = results
                .iter()
                .map(|r| {
                    r.object(match &r.result {
                        Ok(o) => {
                            let mut v = refresh_json(o, now, r.env_path, config_path);
                            saved_in(&mut v, o, renewed_in);
                            v
                        }
                        Err(e) => failure_json("refresh", e),
                    })
                })
                .collect();
            self.emit_json(&orgs_json("refresh", failed.is_empty(), exit_code, orgs));
        } else {
            let lines: Vec<String> = results
                .iter()
                .map(|r| match &r.result {
                    Ok(o) => format!("{}: {}", r.name, self.refresh_text(o, now, renewed_in)),
                    Err(e) => format!("{}: {} {e}", r.name, self.paint("31", "error:")),
                })
                .collect();
            self.emit_text(&lines.join("\n"));
        }
        if !failed.is_empty() {
            self.stderr_failures(
                "refresh",
                &format!(
                    "{} of {} orgs could not be refreshed",
                    failed.len(),
                    results.len()
                ),
                exit_code,
                &failed,
            );
        }
    }

    fn refresh_text(&self, o: &Outcome, now: Timestamp, renewed_in: &str) -> String {
        let exp = expiry_text(o.tokens.access_expires_at, now);
        match &o.action {
            Action::Kept(v) => {
                let how = match v {
                    Validation::Checked => "works (checked with Webex)",
                    Validation::CheckedWithoutScope => {
                        "works (Webex accepted it, but it lacks a data-source scope)"
                    }
                    Validation::TrustedExpiry => "is fresh",
                    Validation::JustRefreshed => "was just refreshed by another run",
                };
                format!("{} the access token {how}; {exp}", self.paint("32", "ok:"))
            }
            Action::Refreshed { level, .. } => {
                let mut s = format!("{} refreshed via {level}; {exp}", self.paint("32", "ok:"));
                if o.personal_renewed {
                    s.push_str(&format!(
                        "\n    the personal access token was renewed through the integration and saved in {renewed_in}"
                    ));
                }
                s
            }
            Action::WouldRefresh { level, trigger } => format!(
                "dry run: would refresh via {level}, because {trigger}; nothing was written"
            ),
        }
    }

    /// One `watch --json` event: a line on stdout with `schemaVersion`,
    /// `event`, `time` and `fields` (an object) merged in. Human mode prints
    /// nothing here: `watch` logs its events on stderr.
    pub fn watch_event(&self, event: &str, now: Timestamp, fields: Value) {
        if !self.json {
            return;
        }
        let mut v = json!({
            "schemaVersion": SCHEMA_VERSION,
            "event": event,
            "time": clock::format_utc(now),
        });
        if let (Value::Object(out), Value::Object(extra)) = (&mut v, fields) {
            for (k, val) in extra {
                if !out.contains_key(&k) {
                    out.insert(k, val);
                }
            }
        }
        self.emit_json(&v);
    }

    /// Output of `token`: the token alone (or JSON with it).
    pub fn token(&self, token: &SecretString, expires: Option<Timestamp>, now: Timestamp) {
        use crate::secret::ExposeSecret;
        if stdout_was_closed() {
            remember_stdout_error(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "descriptor 1 was closed when webex-token started",
            ));
            return;
        }
        if self.json {
            let t = token_json(Some(token), expires, now);
            self.emit_json(&json!({
                "schemaVersion": SCHEMA_VERSION,
                "command": "token",
                "ok": true,
                // The one secret any output holds: it is what was asked for.
                "accessToken": token.expose_secret(),
                "fingerprint": t["fingerprint"],
                "expiresAt": t["expiresAt"],
                "secondsLeft": t["secondsLeft"],
                "expired": t["expired"],
            }));
        } else {
            // `token` prints its token even with -q: it is the result.
            write_stdout(|out| writeln!(out, "{}", token.expose_secret()));
        }
    }

    /// Any JSON report (status and friends) or its human text.
    pub fn report(&self, json_value: &Value, human: &str) {
        if self.json {
            self.emit_json(json_value);
        } else {
            self.emit_text(human);
        }
    }

    /// An error: always on stderr; with `--json` also as an object on stdout.
    pub fn error(&self, command: &str, err: &Error) {
        self.stderr_error(command, err);
        if self.json {
            self.emit_json(&failure_json(command, err));
        }
    }

    /// The one stderr renderer for failures: `error: …`, details, `hint: …`;
    /// with `--log-format json` one JSON line instead, so a log collector
    /// never meets a plain-text line.
    pub fn stderr_error(&self, command: &str, err: &Error) {
        self.stderr_error_of(command, None, err);
    }

    /// [`Printer::stderr_error`] for one org of several (`org` names it:
    /// `error: acme: …`, or an `org` member in JSON).
    pub fn stderr_error_of(&self, command: &str, org: Option<&str>, err: &Error) {
        let mut e = std::io::stderr().lock();
        if self.json_logs {
            let mut line = json!({
                "timestamp": clock::format_utc(clock::now()),
                "level": "ERROR",
                "message": err.to_string(),
                "command": command,
                "exitCode": err.exit_code(),
                "details": err.details(),
                "hint": err.hint(),
            });
            if let Some(org) = org {
                line["org"] = json!(org);
            }
            let _ = writeln!(e, "{line}");
        } else {
            let prefix = org.map(|o| format!("{o}: ")).unwrap_or_default();
            let _ = writeln!(e, "error: {prefix}{err}");
            for d in err.details() {
                let _ = writeln!(e, "  {d}");
            }
            if let Some(h) = err.hint() {
                let _ = writeln!(e, "hint: {h}");
            }
        }
    }
}

impl Printer {
    /// Some items of a batch failed (`N of M data sources could not be
    /// renewed`): a summary, one line per failed item, the distinct hints;
    /// with `--log-format json` one JSON line instead. Goes to stderr even
    /// with `-q`, so cron still says what broke. `items` are shown as given
    /// (the caller cleans server-supplied ids).
    pub fn stderr_failures(
        &self,
        command: &str,
        summary: &str,
        exit_code: u8,
        items: &[(String, &Error)],
    ) {
        let mut hints: Vec<String> = Vec::new();
        for (_, e) in items {
            if let Some(h) = e.hint()
                && !hints.contains(&h)
            {
                hints.push(h);
            }
        }
        let mut out = std::io::stderr().lock();
        if self.json_logs {
            let failures: Vec<Value> = items
                .iter()
                .map(|(id, e)| {
                    json!({
                        "id": id,
                        "message": e.to_string(),
                        "kind": e.kind(),
                        "exitCode": e.exit_code(),
                    })
                })
                .collect();
            let line = json!({
                "timestamp": clock::format_utc(clock::now()),
                "level": "ERROR",
                "message": summary,
                "command": command,
                "exitCode": exit_code,
                "failures": failures,
                "hints": hints,
            });
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "error: {summary}");
            for (id, e) in items {
                let _ = writeln!(out, "  {id}: {e}");
            }
            for h in hints {
                let _ = writeln!(out, "hint: {h}");
            }
        }
    }
}

/// One org's result in a command over several orgs.
pub struct OrgResult<'a, T> {
    pub name: &'a str,
    pub target_org_id: &'a str,
    pub env_path: &'a Path,
    pub result: Result<T, Error>,
}

impl<T> OrgResult<'_, T> {
    /// A command's object for this org inside an `orgs` array: the org's
    /// name, `targetOrgId` and env file first, without the members the
    /// outer object carries.
    pub fn object(&self, inner: Value) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("org".into(), json!(self.name));
        m.insert("targetOrgId".into(), json!(self.target_org_id));
        if let Value::Object(inner) = inner {
            for (k, v) in inner {
                if k != "schemaVersion" && k != "command" {
                    m.insert(k, v);
                }
            }
        }
        m.insert("envFile".into(), json!(self.env_path.display().to_string()));
        Value::Object(m)
    }

    /// This org's part of the human output: a heading line, then `body`
    /// indented by two spaces (blank lines stay blank).
    pub fn section(&self, body: &str) -> String {
        let indented = body
            .lines()
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("  {l}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        format!("org {} ({})\n{indented}", self.name, self.target_org_id)
    }
}

/// The `--json` object of a run over several orgs: each org's own object
/// (see [`OrgResult::object`]) in `orgs`, and the run's `ok` and exit code.
pub fn orgs_json(command: &str, ok: bool, exit_code: u8, orgs: Vec<Value>) -> Value {
    json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": command,
        "ok": ok,
        "exitCode": exit_code,
        "orgs": orgs,
    })
}

/// What `setup-oauth` stored, for its `--json` object.
pub struct Setup<'a> {
    pub flow: &'a str,
    pub config_file: &'a Path,
    pub redirect_uri: Option<&'a str>,
    pub client_id: &'a str,
    pub client_secret_fingerprint: &'a str,
    pub personal: &'a SecretString,
    pub personal_expires_at: Option<Timestamp>,
    pub refresh: Option<&'a SecretString>,
    pub refresh_expires_at: Option<Timestamp>,
    /// Where the renewed tokens went, when the run has a state file.
    pub state_file: Option<&'a Path>,
    /// The etcd key the tokens went to (`--store etcd://`); the client
    /// credentials stay in the config file.
    pub etcd_key: Option<&'a str>,
}

/// `setup-oauth --json`: fingerprints and expiries, never a value.
pub fn setup_json(s: &Setup<'_>, now: Timestamp) -> Value {
    let mut v = json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": "setup-oauth",
        "ok": true,
        "flow": s.flow,
        "configFile": s.config_file.display().to_string(),
        "redirectUri": s.redirect_uri,
        "integrationClientId": s.client_id,
        "integrationClientSecretFingerprint": s.client_secret_fingerprint,
        "personalAccessToken": token_json(Some(s.personal), s.personal_expires_at, now),
        "integrationRefreshToken": token_json(s.refresh, s.refresh_expires_at, now),
    });
    if let Some(p) = s.state_file {
        v["stateFile"] = json!(p.display().to_string());
    }
    if let Some(k) = s.etcd_key {
        v["etcdKey"] = json!(k);
    }
    v
}

/// The `--json` failure object of `command`.
pub fn failure_json(command: &str, err: &Error) -> Value {
    json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": command,
        "ok": false,
        "exitCode": err.exit_code(),
        "error": error_json_fields(err),
        "attempts": attempts_json(err.attempts()),
    })
}

/// The `error` member of a failure object.
pub fn error_json_fields(err: &Error) -> Value {
    json!({
        "kind": err.kind(),
        "message": err.to_string(),
        "details": err.details(),
        "hint": err.hint(),
    })
}

/// `v` as one line of JSON with DEL and the C1 controls (U+007F–U+009F)
/// escaped as `\uXXXX` too (serde_json escapes only U+0000–U+001F): some
/// terminals act on C1 bytes, and a consumer printing a field should not.
/// Outside strings JSON holds only ASCII punctuation, digits and letters,
/// so every such character is inside a string, where the escape means the
/// same character.
pub fn json_text(v: &Value) -> String {
    let text = v.to_string();
    if !text.chars().any(|c| ('\u{7f}'..='\u{9f}').contains(&c)) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if ('\u{7f}'..='\u{9f}').contains(&c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The `error` of one data source that could not be renewed, in
/// `datasources extend --json` (`results[]`) and `watch --json`
/// (`dataSources[]`) alike: the failure object's fields plus the exit code
/// it stands for and, when Webex answered, its HTTP status and trackingId.
pub fn datasource_error_json(err: &Error) -> Value {
    let api = match err {
        Error::DataSource(ds) => ds.api_error(),
        _ => None,
    };
    json!({
        "kind": err.kind(),
        "exitCode": err.exit_code(),
        "message": err.to_string(),
        "details": err.details(),
        "httpStatus": api.and_then(crate::webex::ApiError::status),
        "trackingId": api.and_then(crate::webex::ApiError::tracking_id),
        "hint": err.hint(),
    })
}

/// The first error writing stdout, other than a closed pipe.
static STDOUT_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Writes (and flushes) stdout. A reader that went away (EPIPE: `| head`)
/// is its own choice and stays quiet; any other failure (a full disk,
/// a closed descriptor, an I/O error) is remembered, so the run cannot
/// report success while `$(webex-token token)` got nothing.
pub fn write_stdout(f: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = f(&mut out).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        remember_stdout_error(e);
    }
}

fn remember_stdout_error(e: std::io::Error) {
    let mut slot = STDOUT_ERROR.lock().unwrap_or_else(|p| p.into_inner());
    slot.get_or_insert_with(|| e.to_string());
}

/// Whether descriptor 1 was closed when the program started
/// (`webex-token token >&-`). Rust's runtime reopens a closed 0, 1 or 2 on
/// `/dev/null` before `main` (read-write), so writes then "succeed" into
/// nothing and `$(webex-token token)` would get an empty token with exit 0.
/// A shell's `>/dev/null` opens it write-only, so a read-write `/dev/null`
/// on descriptor 1 is the runtime's stand-in. Linux only (reads /proc);
/// elsewhere this says no. Written by hand: no crate exposes what the
/// runtime did, and the check is two reads.
fn stdout_was_closed() -> bool {
    let target = std::fs::read_link("/proc/self/fd/1");
    if target.ok().as_deref() != Some(std::path::Path::new("/dev/null")) {
        return false;
    }
    let info = std::fs::read_to_string("/proc/self/fdinfo/1").unwrap_or_default();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
    // O_ACCMODE = 3, O_RDWR = 2.
    flags.is_some_and(|f| f & 3 == 2)
}

/// Generated text (a completion script, a man page) on stdout as it is:
/// a closed pipe (`| head`) is the reader's choice and exits 0; any other
/// write error is exit 1 naming `what`.
pub fn write_generated(bytes: &[u8], what: &str) -> Result<u8, Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(Error::Other(format!("could not write the {what}: {e}"))),
    }
}

/// The stdout failure of this run, if any, as an error (exit 1).
pub fn stdout_failure() -> Option<Error> {
    // Only a flush of what is still buffered: a run that printed nothing
    // (`refresh -q >&-`) has not failed to print.
    if let Err(e) = std::io::stdout().lock().flush()
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        remember_stdout_error(e);
    }
    let slot = STDOUT_ERROR.lock().unwrap_or_else(|p| p.into_inner());
    slot.as_ref()
        .map(|e| Error::Other(format!("could not write the output to stdout: {e}")))
}

pub use crate::clock::expiry_text;

/// The JSON view of one credential.
pub fn token_json(t: Option<&SecretString>, exp: Option<Timestamp>, now: Timestamp) -> Value {
    json!({
        "present": t.is_some(),
        "fingerprint": t.map(fingerprint),
        "expiresAt": exp.map(clock::format_utc),
        "secondsLeft": exp.map(|e| clock::seconds_until(now, e)),
        "expired": exp.map(|e| e <= now),
    })
}

pub fn attempts_json(attempts: &[Attempt]) -> Value {
    json!(attempts.iter().map(Attempt::record).collect::<Vec<_>>())
}

fn tokens_json(t: &StoredTokens, now: Timestamp) -> (Value, Value) {
    (
        token_json(t.access_token.as_ref(), t.access_expires_at, now),
        token_json(t.refresh_token.as_ref(), t.refresh_expires_at, now),
    )
}

/// The `refresh --json` shape.
pub fn refresh_json(o: &Outcome, now: Timestamp, env_path: &Path, config_path: &Path) -> Value {
    let (action, level, validation, trigger) = match &o.action {
        Action::Kept(v) => (
            "none",
            None,
            Some(match v {
                Validation::Checked => "checked",
                Validation::CheckedWithoutScope => "checked_without_scope",
                Validation::TrustedExpiry => "trusted_expiry",
                Validation::JustRefreshed => "just_refreshed",
            }),
            None,
        ),
        Action::Refreshed { level, trigger } => (
            "refreshed",
            Some(level.number()),
            None,
            Some(trigger.to_string()),
        ),
        Action::WouldRefresh { level, trigger } => (
            "would_refresh",
            Some(level.number()),
            None,
            Some(trigger.to_string()),
        ),
    };
    let (access, refresh) = tokens_json(&o.tokens, now);
    json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": "refresh",
        "ok": true,
        "action": action,
        "level": level,
        "validation": validation,
        "reason": trigger,
        "personalTokenRenewed": o.personal_renewed,
        "accessToken": access,
        "refreshToken": refresh,
        "attempts": attempts_json(&o.attempts),
        "envFile": env_path.display().to_string(),
        "configFile": config_path.display().to_string(),
    })
}

/// Adds `personalTokenSavedIn` (where level 3 saved the renewed personal
/// token: a file's path or the etcd key) to a `refresh` object whose run
/// renewed it.
fn saved_in(v: &mut Value, o: &Outcome, renewed_in: &str) {
    if o.personal_renewed {
        v["personalTokenSavedIn"] = json!(renewed_in);
    }
}

/// The `--json` failure object for a command line clap refused (exit 2).
pub fn usage_error_json(command: Option<&str>, message: &str, details: &[String], exit_code: i32) {
    let hint = match command {
        Some(c) => format!("run `webex-token {c} --help`"),
        None => "run `webex-token --help`".to_string(),
    };
    let v = json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": command,
        "ok": false,
        "exitCode": exit_code,
        "error": {
            "kind": "usage",
            "message": message,
            "details": details,
            "hint": hint,
        }
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", json_text(&v));
}

/// Bad flags: clap's message on stderr and exit 2; with `--json` anywhere on
/// the command line, also the usual failure object on stdout, so a script
/// that asked for JSON always gets one. `--help`/`--version` are not errors.
pub fn usage_error(e: clap::Error, args: &[std::ffi::OsString]) -> u8 {
    use clap::error::ErrorKind;
    let e = blame_the_environment(e, args);
    let is_info = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    let args: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .take_while(|a| a != "--")
        .collect();
    if !is_info && args.iter().any(|a| a == "--json") {
        // clap's own text, without its "error: " prefix and the usage
        // block: the first line, and the lines it continues with (e.g. the
        // list of missing arguments).
        let rendered = e.to_string();
        let body = rendered.split("\n\nUsage:").next().unwrap_or_default();
        let body = body
            .split("\n\nFor more information")
            .next()
            .unwrap_or_default();
        let mut lines = body.lines().map(str::trim).filter(|l| !l.is_empty());
        let first = lines.next().unwrap_or_default();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let details: Vec<String> = lines.map(str::to_string).collect();
        let message = if details.is_empty() {
            first.to_string()
        } else {
            format!("{first} {}", details.join(", "))
        };
        // The subcommand, when one was recognised, for "command" and the hint.
        let cmd = help::command();
        let command = args.iter().find_map(|a| {
            cmd.find_subcommand(a.as_str())
                .map(|c| c.get_name().to_string())
        });
        usage_error_json(command.as_deref(), &message, &details, e.exit_code());
    }
    if !is_info && json_logs_requested(&args) {
        // Under --log-format json every line on stderr is JSON, usage
        // errors included.
        let rendered = e.to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let line = json!({
            "timestamp": clock::format_utc(clock::now()),
            "level": "ERROR",
            "message": first.strip_prefix("error: ").unwrap_or(first),
            "exitCode": e.exit_code(),
            "hint": "run `webex-token --help`",
        });
        let _ = writeln!(std::io::stderr(), "{line}");
    } else {
        let _ = e.print();
    }
    u8::try_from(e.exit_code()).unwrap_or(2)
}

/// `--log-format json` (or `=json`, or the environment variable) on a
/// command line clap could not parse.
fn json_logs_requested(args: &[String]) -> bool {
    let flag = args
        .windows(2)
        .any(|w| w[0] == "--log-format" && w[1] == "json")
        || args.iter().any(|a| a == "--log-format=json");
    let typed = args.iter().any(|a| a.starts_with("--log-format"));
    flag || (!typed
        && std::env::var(crate::names::ENV_LOG_FORMAT)
            .is_ok_and(|v| v.eq_ignore_ascii_case("json")))
}

/// clap reports a bad value from an environment variable as if the flag
/// had been typed (`invalid value 'x' for '--lock-timeout'`); a person then
/// looks at a command line that has no such flag. When the flag is absent
/// and its variable is set, say that the variable is where the value came
/// from.
fn blame_the_environment(e: clap::Error, args: &[std::ffi::OsString]) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return e;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let long = arg
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let typed = args.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        a == long || a.starts_with(&format!("{long}="))
    });
    if typed {
        return e;
    }
    let cmd = help::command();
    let var = cmd
        .get_arguments()
        .find(|a| a.get_long().is_some_and(|l| format!("--{l}") == long))
        .and_then(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned())
        .filter(|v| std::env::var_os(v).is_some());
    let Some(var) = var else {
        return e;
    };
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    let reason = e.source().map(|s| format!(": {s}")).unwrap_or_default();
    let mut cmd = cmd;
    cmd.error(
        ErrorKind::ValueValidation,
        format!(
            "invalid value '{value}' in the environment variable {var} (read for {long}){reason}; fix or unset {var}"
        ),
    )
}

#[cfg(test)]
mod json_text_tests {
    use super::json_text;

    #[test]
    fn c1_and_del_are_escaped_and_read_back_the_same() {
        let v = serde_json::json!({"m": "a\u{7f}b\u{85}c\u{9b}31m d\u{a0}é"});
        let t = json_text(&v);
        assert!(
            !t.chars().any(|c| ('\u{7f}'..='\u{9f}').contains(&c)),
            "{t}"
        );
        assert!(
            t.contains("\\u007f") && t.contains("\\u0085") && t.contains("\\u009b"),
            "{t}"
        );
        assert!(t.contains('\u{a0}') && t.contains('é'), "{t}");
        let back: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_eq!(back, v);
    }
}
