//! `status`: the typed report a command gathers, rendered as JSON or text.

use super::{OrgResult, Printer, SCHEMA_VERSION, error_json_fields, expiry_text, token_json};
use crate::chain::Level;
use crate::clock;
use crate::error::Error;
use crate::secret::SecretString;
use jiff::Timestamp;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// One credential as `status` shows it.
pub struct Credential {
    /// Human label, e.g. "service-app access token".
    pub label: &'static str,
    pub token: Option<SecretString>,
    pub expires_at: Option<Timestamp>,
    /// Renews itself (so `--check` ignores it).
    pub renews_itself: bool,
    /// Absent because the config still holds the template's placeholder.
    pub placeholder: bool,
}

/// What `status --online` found.
pub enum Online {
    NoToken,
    /// 200, or 403 (genuine but without a data-source scope, with detail).
    Works {
        status: u16,
        detail: Option<String>,
    },
    /// Rejected or refused: the token does not work.
    Fails {
        status: Option<u16>,
        detail: String,
    },
    /// Could not tell (network, 5xx).
    Unknown {
        status: Option<u16>,
        detail: String,
    },
}

/// `--check`: the window and what lapses within it.
pub struct CheckResult {
    pub window: Duration,
    pub expiring: Vec<String>,
}

/// Everything `status` reports.
pub struct StatusReport {
    pub now: Timestamp,
    pub env_file: PathBuf,
    pub env_file_exists: bool,
    /// `files`, or the etcd store's URL (the env file is then its export).
    pub store: String,
    pub config_file: PathBuf,
    /// The state file renewed tokens go to instead of the config, if any,
    /// and whether it exists yet.
    pub state_file: Option<(PathBuf, bool)>,
    /// Where each static secret came from (dotted key, `file:PATH`,
    /// `command`, `credential`, `env`, `inline`); never a value.
    pub secret_sources: Vec<(String, String)>,
    pub api_base: String,
    /// In order: service access, service refresh, personal, integration refresh.
    pub credentials: [Credential; 4],
    pub levels: Vec<(Level, Option<String>)>,
    pub online: Option<Online>,
    pub check: Option<CheckResult>,
    /// `--check` failed: the report is still printed, with this error.
    pub failure: Option<Error>,
    pub notes: Vec<String>,
    /// What `watch` saved about asking a person to re-authorize (the link
    /// and code of a pending device grant, or why it stopped asking).
    pub reauth: Option<Reauth>,
}

/// What `watch` saved about asking a person to re-authorize (its record,
/// as `commands/status.rs` read it).
#[derive(Debug, Clone)]
pub struct Reauth {
    /// A code is out (else: it stopped asking).
    pub pending: bool,
    pub reason: String,
    pub verify_url: String,
    pub user_code: String,
    pub code_expires_at: String,
    pub window_started_at: String,
    pub window_ends_at: String,
    pub codes_requested: u32,
    pub stopped_reason: Option<String>,
}

impl StatusReport {
    /// The level tried first when the token needs renewing.
    pub fn next_level(&self) -> Option<u8> {
        self.levels
            .iter()
            .find(|l| l.1.is_none())
            .map(|l| l.0.number())
    }

    fn credential_json(&self, i: usize) -> Value {
        let c = &self.credentials[i];
        token_json(c.token.as_ref(), c.expires_at, self.now)
    }

    fn online_json(&self) -> Option<Value> {
        self.online.as_ref().map(|o| match o {
            Online::NoToken => {
                json!({"checked": false, "valid": false, "detail": "no access token"})
            }
            Online::Works {
                status,
                detail: None,
            } => json!({"checked": true, "valid": true, "httpStatus": status}),
            Online::Works {
                status,
                detail: Some(d),
            } => json!({"checked": true, "valid": true, "httpStatus": status, "detail": d}),
            Online::Unknown { status, detail } => {
                json!({"checked": false, "valid": Value::Null, "httpStatus": status, "detail": detail})
            }
            Online::Fails { status, detail } => {
                json!({"checked": true, "valid": false, "httpStatus": status, "detail": detail})
            }
        })
    }

    /// The `status --json` object.
    pub fn to_json(&self) -> Value {
        let f = self.failure.as_ref();
        json!({
            "schemaVersion": SCHEMA_VERSION,
            "command": "status",
            "ok": f.is_none(),
            "exitCode": f.map_or(0, Error::exit_code),
            "error": f.map(error_json_fields),
            "envFile": self.env_file.display().to_string(),
            "envFileExists": self.env_file_exists,
            "store": self.store,
            "configFile": self.config_file.display().to_string(),
            "stateFile": self.state_file.as_ref().map(|(p, _)| p.display().to_string()),
            "secretSources": self.secret_sources.iter().map(|(key, from)| json!({
                "key": key, "source": from,
            })).collect::<Vec<_>>(),
            "apiBase": self.api_base,
            "credentials": {
                "serviceAccessToken": self.credential_json(0),
                "serviceRefreshToken": self.credential_json(1),
                "personalAccessToken": self.credential_json(2),
                "integrationRefreshToken": self.credential_json(3),
            },
            "levels": self.levels.iter().map(|(level, gap)| json!({
                "level": level.number(), "name": level.name(), "available": gap.is_none(), "reason": gap,
            })).collect::<Vec<_>>(),
            "nextLevel": self.next_level(),
            "online": self.online_json(),
            "check": self.check.as_ref().map(|c| json!({
                "windowSeconds": c.window.as_secs(),
                "expiring": c.expiring,
            })),
            "notes": self.notes,
            "reauth": self.reauth.as_ref().map(|r| {
                let expired = clock::parse(&r.code_expires_at).is_none_or(|e| e <= self.now);
                json!({
                    "state": if r.pending { "pending" } else { "stopped" },
                    "reason": r.reason,
                    "verifyUrl": r.verify_url,
                    "userCode": r.user_code,
                    "codeExpiresAt": r.code_expires_at,
                    "codeExpired": expired,
                    "windowStartedAt": r.window_started_at,
                    "windowEndsAt": r.window_ends_at,
                    "codesRequested": r.codes_requested,
                    "stoppedReason": r.stopped_reason,
                })
            }),
        })
    }

    /// The human report.
    pub fn to_text(&self) -> String {
        let mut human = String::new();
        human.push_str(&format!(
            "env file      {}{}\n",
            self.env_file.display(),
            if self.env_file_exists {
                ""
            } else {
                " (not created yet)"
            }
        ));
        if self.store != "files" {
            human.push_str(&format!(
                "store         {} (the env file is this host's export)\n",
                self.store
            ));
        }
        human.push_str(&format!("config file   {}\n", self.config_file.display()));
        if let Some((state, exists)) = &self.state_file {
            human.push_str(&format!(
                "state file    {}{}\n",
                state.display(),
                if *exists {
                    ""
                } else {
                    " (not written yet: the config's tokens are used until the first renewal)"
                }
            ));
        }
        for (key, from) in &self.secret_sources {
            human.push_str(&format!("secret        {key} from {from}\n"));
        }
        human.push_str(&format!("api base      {}\n\n", self.api_base));
        for c in &self.credentials {
            let name = c.label;
            let line = match &c.token {
                Some(t) => format!(
                    "{name:<27} present  {}  {}",
                    crate::secret::fingerprint(t),
                    expiry_text(c.expires_at, self.now)
                ),
                None if c.placeholder => {
                    format!("{name:<27} not filled in (template placeholder)")
                }
                None => format!("{name:<27} missing"),
            };
            human.push_str(&line);
            human.push('\n');
        }
        human.push_str("\nrefresh levels\n");
        for (level, gap) in &self.levels {
            let (n, name) = (level.number(), level.name());
            match gap {
                None => human.push_str(&format!("  {n} {name:<27} available\n")),
                Some(g) => human.push_str(&format!("  {n} {name:<27} not available: {g}\n")),
            }
        }
        match self.next_level() {
            Some(n) => human.push_str(&format!(
                "when the access token needs renewing, level {n} is tried first"
            )),
            None => human.push_str(
                "no level can refresh the token: fill in `tokenManager.personalAccessToken`, or the integration's clientId/clientSecret and then run `webex-token setup-oauth`",
            ),
        }
        if let Some(o) = &self.online {
            human.push_str(&format!(
                "\nonline check  {}",
                match o {
                    Online::Works { .. } => "the access token works".to_string(),
                    Online::NoToken => "the access token does not work (no access token)".into(),
                    Online::Fails { detail, .. } =>
                        format!("the access token does not work ({detail})"),
                    Online::Unknown { detail, .. } => format!("could not check ({detail})"),
                }
            ));
        }
        for n in &self.notes {
            human.push_str(&format!("\nnote: {n}"));
        }
        if let Some(r) = &self.reauth {
            human.push_str(&reauth_text(r, self.now));
        }
        human
    }
}

/// The re-authorization lines of the human report.
fn reauth_text(r: &Reauth, now: Timestamp) -> String {
    if r.pending {
        let code_left = match clock::parse(&r.code_expires_at) {
            Some(e) if e > now => format!(
                "expires {}, at {}",
                clock::human_left(clock::seconds_until(now, e)),
                r.code_expires_at
            ),
            _ => "has expired; `watch` asks for a new one when it runs".into(),
        };
        format!(
            "\nre-authorization pending (`watch`, since {}): open {} and enter the code {} (the code {code_left}; code {} of the window that ends {})",
            r.window_started_at, r.verify_url, r.user_code, r.codes_requested, r.window_ends_at
        )
    } else {
        format!(
            "\nre-authorization stopped: {} (send SIGHUP to `watch` or run `webex-token setup-oauth`)",
            r.stopped_reason.as_deref().unwrap_or("no reason recorded")
        )
    }
}

impl Printer {
    /// Prints the status report; a failed `--check` also goes to stderr (the
    /// report is on stdout either way).
    pub fn status(&self, report: &StatusReport) {
        self.report(&report.to_json(), &report.to_text());
        if let Some(e) = &report.failure {
            self.stderr_error("status", e);
        }
    }
}

impl Printer {
    /// `status` over several orgs: a section per org, or one object with an
    /// `orgs` array of each org's status object. Failures (a failed
    /// `--check`, an org whose files cannot be read) also go to stderr.
    pub fn status_orgs(
        &self,
        reports: &[OrgResult<'_, StatusReport>],
        exit_code: u8,
        compact: bool,
    ) {
        let failures: Vec<(String, &Error)> = reports
            .iter()
            .filter_map(|r| {
                let e = match &r.result {
                    Ok(report) => report.failure.as_ref()?,
                    Err(e) => e,
                };
                Some((r.name.to_string(), e))
            })
            .collect();
        let json_value = json!({
            "schemaVersion": SCHEMA_VERSION,
            "command": "status",
            "ok": failures.is_empty(),
            "exitCode": exit_code,
            "orgs": reports.iter().map(|r| {
                r.object(match &r.result {
                    Ok(report) => report.to_json(),
                    Err(e) => super::failure_json("status", e),
                })
            }).collect::<Vec<_>>(),
        });
        let human = match compact && reports.len() > 1 {
            true => status_table(reports),
            false => reports
                .iter()
                .map(|r| {
                    let body = match &r.result {
                        Ok(report) => report.to_text(),
                        Err(e) => format!("error: {e}"),
                    };
                    r.section(&body)
                })
                .collect::<Vec<_>>()
                .join("\n\n"),
        };
        self.report(&json_value, &human);
        if !failures.is_empty() {
            self.stderr_failures(
                "status",
                &format!("{} of {} orgs failed", failures.len(), reports.len()),
                exit_code,
                &failures,
            );
        }
    }
}

/// One row per org: its access and refresh token's time left, the level
/// tried first when it needs renewing, and what is wrong if anything. The
/// full report of each is `status --wide` (or `--org NAME`).
fn status_table(reports: &[OrgResult<'_, StatusReport>]) -> String {
    let left = |c: &Credential, now: Timestamp| match (&c.token, c.expires_at) {
        (None, _) => "none".to_string(),
        (Some(_), None) => "expiry unknown".to_string(),
        (Some(_), Some(at)) => clock::human_left(clock::seconds_until(now, at)),
    };
    let mut rows = vec![[
        "ORG".to_string(),
        "ACCESS TOKEN".to_string(),
        "REFRESH TOKEN".to_string(),
        "NEXT LEVEL".to_string(),
        "NOTE".to_string(),
    ]];
    for r in reports {
        rows.push(match &r.result {
            Ok(report) => {
                let online = match &report.online {
                    Some(Online::Fails { detail, .. }) => {
                        Some(format!("rejected online: {detail}"))
                    }
                    Some(Online::Unknown { detail, .. }) => {
                        Some(format!("online check failed: {detail}"))
                    }
                    _ => None,
                };
                let note = report
                    .failure
                    .as_ref()
                    .map(|e| e.to_string())
                    .or(online)
                    .unwrap_or_default();
                [
                    r.name.to_string(),
                    left(&report.credentials[0], report.now),
                    left(&report.credentials[1], report.now),
                    report
                        .next_level()
                        .map_or("none".to_string(), |l| l.to_string()),
                    note,
                ]
            }
            Err(e) => [
                r.name.to_string(),
                String::new(),
                String::new(),
                String::new(),
                format!("error: {e}"),
            ],
        });
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out: Vec<String> = rows
        .iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                match widths.get(i) {
                    Some(w) => line.push_str(&format!("{cell:<w$}  ")),
                    None => line.push_str(cell),
                }
            }
            line.trim_end().to_string()
        })
        .collect();
    out.push(format!(
        "{} orgs; each org's full report: `webex-token status --wide` or `--org NAME`",
        reports.len()
    ));
    out.join("\n")
}

/// "expires … (in …)" for a `--check` line.
pub fn expiring_line(label: &str, at: Timestamp, now: Timestamp) -> String {
    format!("{label} {}", expiry_text(Some(at), now))
}

/// The `--check` message.
pub fn check_message(window: Duration, expiring: &[String]) -> String {
    format!(
        "{} within {}: {}",
        if expiring.len() == 1 {
            "a credential that cannot renew itself expires"
        } else {
            "credentials that cannot renew themselves expire"
        },
        clock::human_span(window.as_secs()),
        expiring.join("; ")
    )
}
