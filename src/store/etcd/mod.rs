//! The etcd backend: one set of tokens shared by a fleet of hosts.
//!
//! Keys, under `/<PREFIX>/<appId>/` (each path segment percent-encoded):
//! - `tokens/<targetOrgId>`: one org's service-app tokens (JSON);
//! - `manager`: the renewable token-manager state (personal token,
//!   integration refresh token, their expiries; JSON);
//! - `reauth`: `watch`'s pending re-authorization record (the device-grant
//!   link and user code for a person, never the device code; JSON), written
//!   only by the holder of `lock/reauth`, so every host's `status` shows it
//!   and a flow restarted on another host resumes its window;
//! - `lock/org/<targetOrgId>`, `lock/manager`, `lock/reauth`: etcd's lock
//!   service names.
//!
//! Static credentials (client ids and secrets) stay in each host's config
//! file. Each host's env file is an *export* of its org's tokens, rewritten
//! after every load or save, so local consumers (and `token`'s fast path)
//! read a file as before, with no etcd call.
//!
//! Locking: a run that may refresh grants a lease of `--lock-ttl`, keeps it
//! alive while it works, and takes etcd's lock bound to that lease (the
//! lock service queues waiters fairly). Every write is a transaction that
//! succeeds only while the lock's key still exists: when a paused or cut-off
//! host's lease lapses, its key is deleted with it, and its late write is
//! refused (fencing), so it can never overwrite newer tokens.
//!
//! Written by hand: no crate offers a fenced lock-and-write for a key-value
//! store. etcd is reached through its v3 JSON gateway ([`gateway`]), with
//! the HTTP client the program already has.

mod gateway;

use super::env_file::{self, EnvDocument, EnvFileError};
use super::files::{self, FilesStore, lock_file};
use super::{LockScope, Snapshot, StoreError, wrong_scope};
use crate::clock;
use crate::config::{Config, PersonalUpdate};
use crate::names::{KEY_ACCESS_TOKEN, KEY_REFRESH_TOKEN};
use crate::secret::{ExposeSecret, SecretString, fingerprint, fingerprint_str, secret};
use crate::tokens::{OrgId, RenewableUpdate, StoredTokens};
use gateway::{Compare, Failure, Gateway, Login, Op};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to reach the cluster (from `--store`, `--etcd-*`, `--lock-ttl`).
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// `host:port` of each member.
    pub endpoints: Vec<String>,
    /// Key prefix, without slashes at either end.
    pub prefix: String,
    /// `etcds://`: TLS to every member.
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    /// The password, already read by the settings (file or credential).
    pub password: Option<SecretString>,
    pub lock_ttl: Duration,
    /// Longest wait for one etcd request (connect, read, write).
    pub timeout: Duration,
}

impl EtcdSettings {
    /// The endpoints as shown in messages.
    pub fn shown(&self) -> String {
        self.endpoints.join(",")
    }
}

/// The connection shared by every org of a run: set up on first use, so a
/// run that never needs etcd (a fresh `token`) reads no CA or password file
/// and sends nothing.
pub struct Cluster {
    pub settings: EtcdSettings,
    gateway: tokio::sync::OnceCell<Arc<Gateway>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("settings", &self.settings)
            .field("connected", &self.gateway.initialized())
            .finish()
    }
}

impl Cluster {
    pub fn new(settings: EtcdSettings) -> Arc<Cluster> {
        Arc::new(Cluster {
            settings,
            gateway: tokio::sync::OnceCell::new(),
        })
    }

    async fn gateway(&self) -> Result<Arc<Gateway>, StoreError> {
        let g = self
            .gateway
            .get_or_try_init(|| async { self.connect().map(Arc::new) })
            .await?;
        Ok(g.clone())
    }

    /// The HTTP client for the members, with the CA and the login read from
    /// their files (the password stays wrapped).
    fn connect(&self) -> Result<Gateway, StoreError> {
        let s = &self.settings;
        let login = match &s.user {
            Some(user) => {
                let password = match (&s.password, &s.password_file) {
                    (Some(p), _) => p.clone(),
                    (None, Some(p)) => read_secret_file(p, "--etcd-password-file")?,
                    (None, None) => {
                        return Err(StoreError::EtcdSetup {
                            detail: "--etcd-user is set but neither --etcd-password-file nor the systemd credential `etcd-password` is".into(),
                        });
                    }
                };
                Some(Login {
                    user: user.clone(),
                    password,
                })
            }
            None => None,
        };
        let ca = match (&s.ca_file, s.tls) {
            (Some(ca), true) => Some(std::fs::read(ca).map_err(|e| StoreError::EtcdSetup {
                detail: format!("--etcd-ca {}: {e}", ca.display()),
            })?),
            _ => None,
        };
        Gateway::new(s, ca.as_deref(), login).map_err(|e| StoreError::EtcdSetup {
            detail: match &s.ca_file {
                Some(ca) if s.tls => format!("--etcd-ca {}: {e}", ca.display()),
                _ => format!("etcd client for {}: {e}", s.shown()),
            },
        })
    }

    fn timed_out(&self, doing: &str) -> StoreError {
        // etcd may still apply a write it did not confirm in time (it
        // reaches the members later); a fenced one only while the lock
        // holds, so it never overwrites a newer one.
        let outcome = if doing == "writing" {
            "the write may still be applied, fenced by the lock"
        } else {
            "nothing was changed"
        };
        StoreError::Unreachable {
            endpoints: self.settings.shown(),
            detail: format!(
                "no answer within {}s while {doing}; {outcome}",
                self.settings.timeout.as_secs_f32()
            ),
            recovery: None,
        }
    }

    /// One etcd request with the run's timeout. A member that cannot be
    /// reached, or has no leader, fails the request at once; it is sent
    /// again (to the next member) until the timeout.
    async fn call<T, F, Fut>(&self, doing: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut(Arc<Gateway>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let gateway = self.gateway().await?;
        // One try may hang on a member that lost its leader just now (a
        // write forwarded to a dead leader) until a new one is elected:
        // each try gets a third of the budget, then the next goes (the
        // same request again: the reads are reads, the writes fenced and
        // idempotent).
        let per_try = gateway::per_try(self.settings.timeout);
        let tries = retrying(&gateway, doing, Some(per_try), &mut op);
        match tokio::time::timeout(self.settings.timeout, tries).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.classify(e)),
            Err(_) => Err(self.timed_out(doing)),
        }
    }

    /// Revokes `lease` (deleting the lock key bound to it).
    async fn revoke(&self, lease: i64) -> Result<(), StoreError> {
        self.call("revoking the lease", |g| async move {
            g.lease_revoke(lease).await
        })
        .await
    }

    /// Sorts an etcd failure into what a person must do about it.
    fn classify(&self, e: Failure) -> StoreError {
        let s = &self.settings;
        let endpoints = s.shown();
        let user = s.user.as_deref().unwrap_or("(none)");
        match &e {
            // gRPC codes (stable numbers): 7 permission denied (the lock
            // service reports it as 2, unknown: the message tells).
            Failure::Status { code, message }
                if *code == 7 || message.contains("permission denied") =>
            {
                StoreError::EtcdSetup {
                    detail: format!(
                        "etcd at {endpoints} refused user {user} access to the keys under /{}/: {e} (grant the user's role readwrite on the prefix /{}/)",
                        s.prefix, s.prefix
                    ),
                }
            }
            // 16 unauthenticated; 3 invalid argument, which etcd answers
            // for a wrong password and for a missing user.
            Failure::Status { code, message }
                if *code == 16
                    || (*code == 3
                        && (message.contains("authentication failed")
                            || message.contains("user name is empty"))) =>
            {
                StoreError::EtcdSetup {
                    detail: format!(
                        "etcd at {endpoints} refused this run (user {user}): {e} (check --etcd-user and --etcd-password-file)"
                    ),
                }
            }
            // A server certificate this host cannot verify: no retry will help.
            Failure::Tls(_) => StoreError::EtcdSetup {
                detail: format!(
                    "etcd at {endpoints}: TLS failed: {e} (is --etcd-ca the CA that signed the members' certificates?)"
                ),
            },
            Failure::Garbled(_) => StoreError::EtcdSetup {
                detail: format!(
                    "etcd endpoints {endpoints}: {e} (is each one the client URL of an etcd v3 member with its JSON gateway on, etcds:// where the members speak TLS?)"
                ),
            },
            Failure::Transport(_) | Failure::Status { .. } => StoreError::Unreachable {
                endpoints,
                detail: format!("{e}; nothing was changed"),
                recovery: None,
            },
        }
    }
}

/// Sends `op` until it succeeds or fails for good: again (after a short,
/// growing pause, to the next member) when a member could not be reached,
/// had no leader or, with `per_try`, did not answer in that long. No
/// overall bound: the caller sets one.
async fn retrying<T, F, Fut>(
    gateway: &Arc<Gateway>,
    doing: &str,
    per_try: Option<Duration>,
    op: &mut F,
) -> Result<T, Failure>
where
    F: FnMut(Arc<Gateway>) -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut pause = Duration::from_millis(20);
    loop {
        let attempt = op(gateway.clone());
        let answer = match per_try {
            Some(limit) => tokio::time::timeout(limit, attempt).await,
            None => Ok(attempt.await),
        };
        match answer {
            Ok(Err(e)) if e.retryable() => tracing::debug!("etcd: {doing}: {e}; trying again"),
            Ok(other) => return other,
            Err(_) => {
                gateway.next_member();
                tracing::debug!("etcd: {doing}: no answer within {per_try:?}; trying again")
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

fn read_secret_file(path: &std::path::Path, flag: &str) -> Result<SecretString, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| StoreError::EtcdSetup {
        detail: format!("{flag} {}: {e}", path.display()),
    })?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(StoreError::EtcdSetup {
            detail: format!("{flag} {} is empty", path.display()),
        });
    }
    Ok(secret(value))
}

/// One org's service-app tokens as kept in etcd.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TokensDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token_expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token_expires_at: Option<String>,
    /// Which host and process wrote it, and when (for people reading keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written_at: Option<String>,
}

/// The token-manager state as kept in etcd.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ManagerDoc {
    personal_access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    personal_access_token_expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    integration_refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    integration_refresh_token_expires_at: Option<String>,
    /// Fingerprints of the personal tokens the store has taken from (or
    /// seen in) hosts' config files, newest last: see
    /// [`ManagerDoc::pasted`]. Empty in a document an older webex-token
    /// wrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    config_tokens_seen: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written_at: Option<String>,
}

/// How many config-token fingerprints a manager document keeps.
const SEEN_KEPT: usize = 16;

fn writer() -> (Option<String>, Option<String>) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    // The real clock, to the nanosecond: it is compared with config files'
    // modification times (see [`ManagerDoc::pasted`]).
    (
        Some(format!("{host}/{}", std::process::id())),
        Some(jiff::Timestamp::now().to_string()),
    )
}

/// When this host's config (or the state file laid over it) was last
/// written, if the file system says.
fn config_written(config: &Config) -> Option<jiff::Timestamp> {
    [Some(config.path.as_path()), config.state_path.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .filter_map(|t| jiff::Timestamp::try_from(t).ok())
        .max()
}

impl TokensDoc {
    /// The fields that hold text.
    const TEXT: &[&str] = &[
        "accessToken",
        "accessTokenExpiresAt",
        "refreshToken",
        "refreshTokenExpiresAt",
        "writtenBy",
        "writtenAt",
    ];

    /// Every token and time is one webex-token could have written.
    fn check(&self, key: &str) -> Result<(), StoreError> {
        check_token(key, "accessToken", self.access_token.as_deref())?;
        check_time(
            key,
            "accessTokenExpiresAt",
            self.access_token_expires_at.as_deref(),
        )?;
        check_token(key, "refreshToken", self.refresh_token.as_deref())?;
        check_time(
            key,
            "refreshTokenExpiresAt",
            self.refresh_token_expires_at.as_deref(),
        )
    }

    fn of(t: &StoredTokens) -> TokensDoc {
        let (written_by, written_at) = writer();
        TokensDoc {
            access_token: t.access_token.as_ref().map(|s| s.expose_secret().into()),
            access_token_expires_at: t.access_expires_at.map(clock::format_utc),
            refresh_token: t.refresh_token.as_ref().map(|s| s.expose_secret().into()),
            refresh_token_expires_at: t.refresh_expires_at.map(clock::format_utc),
            written_by,
            written_at,
        }
    }

    fn tokens(self) -> StoredTokens {
        StoredTokens {
            access_token: self.access_token.filter(|s| !s.is_empty()).map(secret),
            access_expires_at: self
                .access_token_expires_at
                .as_deref()
                .and_then(clock::parse),
            refresh_token: self.refresh_token.filter(|s| !s.is_empty()).map(secret),
            refresh_expires_at: self
                .refresh_token_expires_at
                .as_deref()
                .and_then(clock::parse),
        }
    }
}

impl ManagerDoc {
    /// The fields that hold text.
    const TEXT: &[&str] = &[
        "personalAccessToken",
        "personalAccessTokenExpiresAt",
        "integrationRefreshToken",
        "integrationRefreshTokenExpiresAt",
        "writtenBy",
        "writtenAt",
    ];

    /// Every token and time is one webex-token could have written; the
    /// personal token is there.
    fn check(&self, key: &str) -> Result<(), StoreError> {
        if self.personal_access_token.is_empty() {
            return Err(StoreError::EtcdData {
                key: key.to_string(),
                detail: "`personalAccessToken` is empty".into(),
            });
        }
        check_token(
            key,
            "personalAccessToken",
            Some(&self.personal_access_token),
        )?;
        check_time(
            key,
            "personalAccessTokenExpiresAt",
            self.personal_access_token_expires_at.as_deref(),
        )?;
        check_token(
            key,
            "integrationRefreshToken",
            self.integration_refresh_token.as_deref(),
        )?;
        check_time(
            key,
            "integrationRefreshTokenExpiresAt",
            self.integration_refresh_token_expires_at.as_deref(),
        )
    }

    fn update(self) -> PersonalUpdate {
        PersonalUpdate {
            personal_access_token: secret(self.personal_access_token),
            personal_expires_at: self
                .personal_access_token_expires_at
                .as_deref()
                .and_then(clock::parse),
            integration_refresh_token: self
                .integration_refresh_token
                .filter(|s| !s.is_empty())
                .map(secret),
            integration_refresh_expires_at: self
                .integration_refresh_token_expires_at
                .as_deref()
                .and_then(clock::parse),
            integration_client: None,
        }
    }

    /// The state in a config file (for seeding), if it has a personal token.
    fn from_config(c: &Config) -> Option<ManagerDoc> {
        let personal = c.personal_access_token.get()?;
        let integration = c.integration.as_ref();
        let (written_by, written_at) = writer();
        Some(ManagerDoc {
            personal_access_token: personal.expose_secret().into(),
            personal_access_token_expires_at: c.personal_expires_at.map(clock::format_utc),
            integration_refresh_token: integration
                .and_then(|i| i.refresh_token.get())
                .map(|s| s.expose_secret().into()),
            integration_refresh_token_expires_at: integration
                .and_then(|i| i.refresh_expires_at)
                .map(clock::format_utc),
            config_tokens_seen: vec![fingerprint(personal)],
            written_by,
            written_at,
        })
    }

    /// `fp` added to the config tokens seen (once; the oldest dropped
    /// beyond [`SEEN_KEPT`]).
    fn seeing(mut self, fp: Option<String>) -> ManagerDoc {
        if let Some(fp) = fp
            && !self.config_tokens_seen.contains(&fp)
        {
            self.config_tokens_seen.push(fp);
            let extra = self.config_tokens_seen.len().saturating_sub(SEEN_KEPT);
            self.config_tokens_seen.drain(..extra);
        }
        self
    }

    /// The store's state with `config`'s own personal token (and its
    /// expiry, as the config ties it to that token) in place of the
    /// store's; the integration refresh token stays the store's.
    fn with_personal_of(self, config: &Config, personal: &SecretString) -> ManagerDoc {
        let (written_by, written_at) = writer();
        ManagerDoc {
            personal_access_token: personal.expose_secret().into(),
            personal_access_token_expires_at: config.personal_expires_at.map(clock::format_utc),
            written_by,
            written_at,
            ..self
        }
        .seeing(Some(fingerprint(personal)))
    }

    /// `old` with `update` applied (a missing integration refresh token
    /// keeps the stored one, as in the config file). `config_fp`: the
    /// fingerprint of the personal token in the writing host's config,
    /// recorded as seen (the store's state is newer than it).
    fn merged(
        old: Option<ManagerDoc>,
        update: &RenewableUpdate,
        config_fp: Option<String>,
    ) -> ManagerDoc {
        let (written_by, written_at) = writer();
        let (irt, irt_exp, seen) = match old {
            Some(o) => (
                o.integration_refresh_token,
                o.integration_refresh_token_expires_at,
                o.config_tokens_seen,
            ),
            None => Default::default(),
        };
        let (irt, irt_exp) = match &update.integration_refresh_token {
            Some(t) => (
                Some(t.expose_secret().to_string()),
                update.integration_refresh_expires_at.map(clock::format_utc),
            ),
            None => (irt, irt_exp),
        };
        ManagerDoc {
            personal_access_token: update.personal_access_token.expose_secret().into(),
            personal_access_token_expires_at: update.personal_expires_at.map(clock::format_utc),
            integration_refresh_token: irt,
            integration_refresh_token_expires_at: irt_exp,
            config_tokens_seen: seen,
            written_by,
            written_at,
        }
        .seeing(config_fp)
    }

    /// The personal token in `config`, if a person pasted it there: a
    /// token the store neither holds nor has seen in a config, in a config
    /// written after the store's state was. Such a token is newer than the
    /// store's and wins. A config last written before the store's state
    /// holds an older token (a host whose copy was not updated, or one an
    /// older webex-token wrote, which kept no record of config tokens).
    fn pasted(&self, config: &Config) -> Option<SecretString> {
        let token = config.personal_access_token.get()?;
        let fp = fingerprint(token);
        if fingerprint_str(&self.personal_access_token) == fp
            || self.config_tokens_seen.contains(&fp)
        {
            return None;
        }
        // A paste with a stray space or quote would reach every host.
        if !crate::secret::is_token_text(token.expose_secret()) {
            tracing::warn!(
                "config file {}: `tokenManager.personalAccessToken` holds whitespace, control or quoting characters, which no Webex token has: not taken into the etcd store (its token is used); paste the token again",
                config.path.display()
            );
            return None;
        }
        if let (Some(edited), Some(stored)) = (
            config_written(config),
            self.written_at.as_deref().and_then(clock::parse),
        ) && edited <= stored
        {
            return None;
        }
        Some(token.clone())
    }
}

/// A document read from `key`, checked field by field before it is
/// deserialized, so that a bad value is named by its key and field and
/// never quoted (serde's own messages quote what they could not read, and
/// these values are secrets): a JSON object whose `text` fields are strings
/// (or null, or absent) and whose `configTokensSeen`, if any, is a list of
/// strings.
fn checked_doc<T: serde::de::DeserializeOwned>(
    key: &str,
    bytes: &[u8],
    text: &[&str],
) -> Result<T, StoreError> {
    use serde_json::Value;
    let bad = |detail: String| StoreError::EtcdData {
        key: key.to_string(),
        detail,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        bad(format!(
            "it is not JSON (syntax error at line {} column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(fields) = &value else {
        return Err(bad(format!(
            "it is {}, not a JSON object",
            json_kind(&value)
        )));
    };
    for (name, v) in fields {
        let fine = if text.contains(&name.as_str()) {
            matches!(v, Value::String(_) | Value::Null)
        } else if name == "configTokensSeen" {
            matches!(v, Value::Array(a) if a.iter().all(Value::is_string))
        } else {
            true
        };
        if !fine {
            return Err(bad(format!(
                "`{name}` is {}, not {}",
                json_kind(v),
                if name == "configTokensSeen" {
                    "a list of strings"
                } else {
                    "a string"
                }
            )));
        }
    }
    serde_json::from_value(value).map_err(|e| {
        let e = e.to_string();
        // The types are checked above: what is left is a missing field,
        // which serde names without a value.
        bad(if e.starts_with("missing field") {
            e
        } else if e.starts_with("invalid type: null") {
            "a field it needs is null".into()
        } else {
            "its fields are not webex-token's".into()
        })
    })
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A stored token is checked as a Webex answer is
/// ([`crate::secret::is_token_text`]): one that is not would be exported
/// into every host's env file and then refused there. Empty is "none".
fn check_token(key: &str, field: &str, value: Option<&str>) -> Result<(), StoreError> {
    match value {
        Some(v) if !v.is_empty() && !crate::secret::is_token_text(v) => Err(StoreError::EtcdData {
            key: key.to_string(),
            detail: format!(
                "`{field}` is not a token as Webex issues them: it holds whitespace, control or quoting characters (fingerprint {})",
                fingerprint_str(v)
            ),
        }),
        _ => Ok(()),
    }
}

/// A stored expiry must be an RFC 3339 time (as webex-token writes it).
/// Empty is "unknown".
fn check_time(key: &str, field: &str, value: Option<&str>) -> Result<(), StoreError> {
    match value {
        Some(v) if !v.is_empty() && clock::parse(v).is_none() => Err(StoreError::EtcdData {
            key: key.to_string(),
            detail: format!("`{field}` is not an RFC 3339 time (such as 2030-01-01T00:00:00Z)"),
        }),
        _ => Ok(()),
    }
}

/// A key path segment: letters, digits, `.`, `_` and `-` kept, anything
/// else (a `/` in a base64 org id above all) percent-encoded, so one key
/// can never be a prefix path of another's.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One org's view of the etcd store, with its local export (the env file)
/// and the host's config file.
#[derive(Debug, Clone)]
pub struct EtcdStore {
    pub cluster: Arc<Cluster>,
    /// The env file (the export) and the config file (static credentials).
    pub files: FilesStore,
    /// Rewrite the export after loads (off for `refresh --dry-run`, which
    /// writes nothing).
    pub export: bool,
}

/// A held etcd lock: the lease kept alive in the background and the lock
/// key whose existence every write checks.
pub struct EtcdGuard {
    scope: LockScope,
    key: Vec<u8>,
    lease: i64,
    keepalive: tokio::task::JoinHandle<()>,
    cluster: Arc<Cluster>,
    released: bool,
}

impl std::fmt::Debug for EtcdGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdGuard")
            .field("scope", &self.scope)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdGuard {
    fn drop(&mut self) {
        self.keepalive.abort();
        if !self.released {
            // Not released by `release` (an early return): revoke in the
            // background if the runtime still runs; otherwise the lease
            // lapses by itself within --lock-ttl.
            let (cluster, lease) = (self.cluster.clone(), self.lease);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = cluster.revoke(lease).await;
                });
            }
        }
    }
}

/// Keys of one org and of the app, resolved from the config.
struct Keys {
    tokens: String,
    manager: String,
    lock_org: String,
    lock_manager: String,
    lock_reauth: String,
    reauth: String,
}

impl EtcdStore {
    fn keys(&self, config: &Config, org: &OrgId) -> Result<Keys, StoreError> {
        let app = config
            .service_app
            .app_id
            .require(&config.path)
            .map_err(StoreError::Config)?;
        let target = match org.listed_target() {
            Some((_, t)) => t.to_string(),
            None => config
                .service_app
                .target_org_id
                .get()
                .cloned()
                .unwrap_or_else(|| "default".into()),
        };
        let base = format!("/{}/{}", self.cluster.settings.prefix, segment(app));
        Ok(Keys {
            tokens: format!("{base}/tokens/{}", segment(&target)),
            manager: format!("{base}/manager"),
            lock_org: format!("{base}/lock/org/{}", segment(&target)),
            lock_manager: format!("{base}/lock/manager"),
            lock_reauth: format!("{base}/lock/reauth"),
            reauth: format!("{base}/reauth"),
        })
    }

    fn local_config(&self) -> Result<Config, StoreError> {
        Ok(Config::load_with(
            &self.files.config_path,
            &self.files.config_cache,
        )?)
    }

    /// Reads both keys in one round trip: (tokens doc, its mod revision),
    /// manager doc.
    async fn read(&self, keys: &Keys) -> Result<Read, StoreError> {
        let names = [keys.tokens.as_str(), keys.manager.as_str()];
        let names = &names;
        let got = self
            .cluster
            .call("reading the tokens", move |g| async move {
                g.get_all(names).await
            })
            .await?;
        let mut out = Read {
            cluster: got.cluster,
            ..Read::default()
        };
        for (i, value) in got.values.into_iter().enumerate() {
            let Some((value, mod_revision)) = value else {
                continue;
            };
            if i == 0 {
                let doc: TokensDoc = checked_doc(&keys.tokens, &value, TokensDoc::TEXT)?;
                doc.check(&keys.tokens)?;
                out.tokens = Some((doc.tokens(), mod_revision));
            } else {
                let doc: ManagerDoc = checked_doc(&keys.manager, &value, ManagerDoc::TEXT)?;
                doc.check(&keys.manager)?;
                out.manager = Some(doc);
            }
        }
        Ok(out)
    }

    /// The export: the env file rewritten with `tokens` from revision
    /// `rev`, under the env file's local lock, unless it already holds that
    /// revision or a newer one (two runs on one host never move it back).
    async fn export(&self, tokens: &StoredTokens, at: Revision) -> Result<(), StoreError> {
        let path = self.files.env_path.clone();
        let _local = lock_file(files::lock_path(&path), &path, Duration::from_secs(30)).await?;
        let (state, healed) = read_export(&path)?;
        // (A rebuilt cluster counts revisions from 1 again: its id differs.)
        if !healed
            && let Some(doc) = &state.doc
            && export_revision(doc.as_bytes())
                .is_some_and(|r| r.cluster == at.cluster && r.revision >= at.revision)
        {
            return Ok(());
        }
        files::write_export(&state, tokens, &at.to_string(), self.files.mode)
    }

    /// This host's export and config, read with no etcd call (the fast
    /// path). An export whose tokens do not read as tokens (written by an
    /// older webex-token from a bad etcd value, or edited by hand) is only
    /// a stale copy: it counts as holding nothing, so the run reads the
    /// store, whose next export replaces it.
    pub fn local_now(&self) -> Result<Snapshot, StoreError> {
        match self.files.load_now() {
            Err(StoreError::EnvFile(e)) if unusable_value(&e) => {
                if let EnvFileError::BadValue { path, line, key }
                | EnvFileError::Ambiguous {
                    path, line, key, ..
                } = &e
                {
                    tracing::warn!(
                        "env file {}: line {line}: variable {key} does not read as a token; the file is this host's export of the etcd store, so the store is read instead and the next export replaces the line",
                        path.display()
                    );
                }
                Ok(Snapshot {
                    tokens: StoredTokens::default(),
                    config: self.local_config()?,
                    exists: true,
                })
            }
            other => other,
        }
    }

    /// The key of the token-manager state (`/PREFIX/<appId>/manager`).
    pub fn manager_key(&self) -> Result<String, StoreError> {
        let config = self.local_config()?;
        Ok(self.keys(&config, &OrgId::configured())?.manager)
    }

    /// The key of the pending re-authorization record (`/PREFIX/<appId>/reauth`).
    pub fn reauth_key(&self) -> Result<String, StoreError> {
        let config = self.local_config()?;
        Ok(self.keys(&config, &OrgId::configured())?.reauth)
    }

    /// The pending re-authorization record the fleet's flow holder wrote
    /// (`None`: there is none). A value that is not such a record (not
    /// JSON, or not its fields) is an [`StoreError::EtcdData`] naming the
    /// key, never quoting the value.
    pub async fn reauth_record<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<Option<T>, StoreError> {
        let key = self.reauth_key()?;
        let names = [key.as_str()];
        let names = &names;
        let got = self
            .cluster
            .call("reading the re-authorization record", move |g| async move {
                g.get_all(names).await
            })
            .await?;
        match got.values.into_iter().next().flatten() {
            Some((value, _)) => checked_doc(&key, &value, &[]).map(Some),
            None => Ok(None),
        }
    }

    /// Puts the record, only while `guard` (the re-authorization lock) is
    /// held: a host whose lease lapsed cannot overwrite the next holder's.
    pub async fn put_reauth_record(
        &self,
        guard: &EtcdGuard,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        if guard.scope != LockScope::Reauth {
            return Err(wrong_scope("the re-authorization record"));
        }
        let key = self.reauth_key()?;
        self.fenced_put(guard, &key, value, false).await.map(|_| ())
    }

    /// Deletes the record: while `guard` is held when one is given (the
    /// flow that approved or ended), else at once (`setup-oauth`, which
    /// authorized the integration by hand).
    pub async fn delete_reauth_record(&self, guard: Option<&EtcdGuard>) -> Result<(), StoreError> {
        let key = self.reauth_key()?;
        let when: Vec<Compare> = guard
            .map(|g| vec![Compare::Exists(g.key.clone())])
            .unwrap_or_default();
        let then = [Op::Delete(key.into_bytes())];
        let (when, then) = (&when, &then);
        let resp = self
            .cluster
            .call(
                "removing the re-authorization record",
                move |g| async move { g.txn(when, then, &[]).await },
            )
            .await?;
        match guard {
            Some(g) if !resp.succeeded => Err(StoreError::LockLost {
                key: String::from_utf8_lossy(&g.key).into_owned(),
                ttl: self.cluster.settings.lock_ttl,
                recovery: None,
            }),
            _ => Ok(()),
        }
    }

    /// Where renewed token-manager state goes: the etcd key, for messages.
    pub fn renewable_place(&self) -> String {
        match self.manager_key() {
            Ok(key) => format!("the etcd key {key}"),
            Err(_) => format!("the etcd store (under /{}/)", self.cluster.settings.prefix),
        }
    }

    /// Puts `value` at `key` only while `guard`'s lock key exists (and, for
    /// a seed, only if `key` does not exist yet). Returns the new revision,
    /// or `None` when a seed found the key already there.
    async fn fenced_put(
        &self,
        guard: &EtcdGuard,
        key: &str,
        value: Vec<u8>,
        only_if_absent: bool,
    ) -> Result<Option<Revision>, StoreError> {
        let mut when = vec![Compare::Exists(guard.key.clone())];
        if only_if_absent {
            when.push(Compare::Absent(key.as_bytes().to_vec()));
        }
        let then = [Op::Put(key.as_bytes().to_vec(), value)];
        let otherwise = [Op::Get(guard.key.clone())];
        let (when, then, otherwise) = (&when, &then, &otherwise);
        let resp = self
            .cluster
            .call("writing", move |g| async move {
                g.txn(when, then, otherwise).await
            })
            .await?;
        if resp.succeeded {
            return Ok(Some(Revision {
                revision: resp.header.revision,
                cluster: resp.header.cluster_id,
            }));
        }
        // Which compare failed: the lock key gone means the lock was lost.
        let held = resp
            .responses
            .iter()
            .any(|r| r.response_range.as_ref().is_some_and(|r| !r.kvs.is_empty()));
        if held && only_if_absent {
            return Ok(None);
        }
        Err(StoreError::LockLost {
            key: String::from_utf8_lossy(&guard.key).into_owned(),
            ttl: self.cluster.settings.lock_ttl,
            recovery: None,
        })
    }

    /// Seeds an empty store from this host's files, under the lock: the
    /// org's tokens from its env file, the token-manager state from the
    /// config file. A key another host seeded first is left alone.
    /// Returns the token-manager state now in the store.
    async fn seed(
        &self,
        guard: &EtcdGuard,
        config: &Config,
        keys: &Keys,
    ) -> Result<Option<ManagerDoc>, StoreError> {
        let now = self.read(keys).await?;
        if now.tokens.is_none() && matches!(guard.scope, LockScope::Org(_)) {
            let local = files::read_env(&self.files.env_path)?.tokens;
            if local.access_token.is_some() || local.refresh_token.is_some() {
                let body = serde_json::to_vec(&TokensDoc::of(&local)).expect("serializable");
                if self
                    .fenced_put(guard, &keys.tokens, body, true)
                    .await?
                    .is_some()
                {
                    tracing::info!(
                        "seeded the etcd store ({}) with the service-app tokens from {}",
                        keys.tokens,
                        self.files.env_path.display()
                    );
                }
            }
        }
        if now.manager.is_none()
            && let Some(doc) = ManagerDoc::from_config(config)
        {
            let body = serde_json::to_vec(&doc).expect("serializable");
            if self
                .fenced_put(guard, &keys.manager, body, true)
                .await?
                .is_some()
            {
                tracing::info!(
                    "seeded the etcd store ({}) with the token-manager state from {}",
                    keys.manager,
                    config.path.display()
                );
                return Ok(Some(doc));
            }
            // Another host seeded it first.
            return Ok(self.read(keys).await?.manager);
        }
        Ok(now.manager)
    }

    /// Takes a personal token a person pasted into this host's config into
    /// the store (it is newer than the store's), under the lock of the
    /// token-manager state (taken here, after the org's, when `guard` is an
    /// org's: the engine's order).
    async fn take_config_token(
        &self,
        guard: &EtcdGuard,
        config: &Config,
        keys: &Keys,
        manager: Option<ManagerDoc>,
        wait: Duration,
    ) -> Result<(), StoreError> {
        if manager.and_then(|m| m.pasted(config)).is_none() {
            return Ok(());
        }
        let nested = match guard.scope {
            LockScope::Config => None,
            // (The re-authorization lock is not the config's: take that too.)
            LockScope::Org(_) | LockScope::Reauth => {
                Some(self.acquire(&LockScope::Config, wait).await?)
            }
        };
        let held = nested.as_ref().unwrap_or(guard);
        let result = self.take_config_token_held(held, config, keys).await;
        if let Some(g) = nested {
            self.release(g).await;
        }
        result
    }

    async fn take_config_token_held(
        &self,
        guard: &EtcdGuard,
        config: &Config,
        keys: &Keys,
    ) -> Result<(), StoreError> {
        // Read again under the lock: another host may have taken it.
        let Some(m) = self.read(keys).await?.manager else {
            return Ok(());
        };
        let Some(token) = m.pasted(config) else {
            return Ok(());
        };
        tracing::warn!(
            "the config file {} holds a personal access token ({}) that the etcd store has not seen: taken as newer than the store's ({}) and saved in the etcd key {}",
            config.path.display(),
            fingerprint(&token),
            fingerprint_str(&m.personal_access_token),
            keys.manager
        );
        let doc = m.with_personal_of(config, &token);
        let body = serde_json::to_vec(&doc).expect("serializable");
        self.fenced_put(guard, &keys.manager, body, false).await?;
        Ok(())
    }

    pub async fn lock(&self, scope: &LockScope, wait: Duration) -> Result<EtcdGuard, StoreError> {
        let config = self.local_config()?;
        let org = match scope {
            LockScope::Org(o) => o.clone(),
            LockScope::Config | LockScope::Reauth => OrgId::configured(),
        };
        let keys = self.keys(&config, &org)?;
        let guard = self.acquire(scope, wait).await?;
        let seeded = match self.seed(&guard, &config, &keys).await {
            Ok(manager) => {
                self.take_config_token(&guard, &config, &keys, manager, wait)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = seeded {
            self.release(guard).await;
            return Err(e);
        }
        Ok(guard)
    }

    /// Takes etcd's lock for `scope` (nothing else).
    async fn acquire(&self, scope: &LockScope, wait: Duration) -> Result<EtcdGuard, StoreError> {
        let config = self.local_config()?;
        let org = match scope {
            LockScope::Org(o) => o.clone(),
            LockScope::Config | LockScope::Reauth => OrgId::configured(),
        };
        let keys = self.keys(&config, &org)?;
        let name = match scope {
            LockScope::Org(_) => keys.lock_org.clone(),
            LockScope::Config => keys.lock_manager.clone(),
            LockScope::Reauth => keys.lock_reauth.clone(),
        };
        let cluster = &self.cluster;
        let ttl = cluster.settings.lock_ttl.as_secs().max(1) as i64;
        let lease = cluster
            .call(
                "granting a lease",
                |g| async move { g.lease_grant(ttl).await },
            )
            .await?;
        let keepalive = tokio::spawn(keep_alive(cluster.clone(), lease, ttl));
        let started = std::time::Instant::now();
        let announce = tokio::time::sleep(Duration::from_millis(200));
        // Waiting in the queue may take long (no per-request timeout); a
        // member that cannot be reached is tried again (the same lease
        // finds its own place in the queue again).
        let gateway = cluster.gateway().await?;
        let lock_name = name.as_str();
        let mut lock_op = move |g: Arc<Gateway>| async move { g.lock(lock_name, lease).await };
        let locking = retrying(&gateway, "waiting for the lock", None, &mut lock_op);
        tokio::pin!(announce, locking);
        let mut announced = false;
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        let result = loop {
            tokio::select! {
                r = &mut locking => break Some(r),
                _ = &mut announce, if !announced => {
                    announced = true;
                    tracing::info!("waiting for another webex-token run holding the etcd lock {name}");
                }
                _ = &mut deadline => break None,
            }
        };
        match result {
            Some(Ok(key)) => {
                tracing::debug!("took the etcd lock {name} (lease {lease:x})");
                Ok(EtcdGuard {
                    scope: scope.clone(),
                    key,
                    lease,
                    keepalive,
                    cluster: cluster.clone(),
                    released: false,
                })
            }
            Some(Err(e)) => {
                keepalive.abort();
                let _ = cluster.revoke(lease).await;
                Err(cluster.classify(e))
            }
            None => {
                keepalive.abort();
                let _ = cluster.revoke(lease).await;
                Err(StoreError::LockTimeout {
                    path: PathBuf::from(format!("the etcd lock {name}")),
                    waited: started.elapsed(),
                })
            }
        }
    }

    /// Gives the lock back at once (revoking the lease deletes the lock
    /// key), so the next host waiting need not wait for the TTL.
    pub async fn release(&self, mut guard: EtcdGuard) {
        guard.keepalive.abort();
        guard.released = true;
        if let Err(e) = self.cluster.revoke(guard.lease).await {
            tracing::debug!(
                "could not revoke lease {:x}: {e}; it lapses by itself",
                guard.lease
            );
        }
    }

    /// The store's state for `org` in one round trip, and this host's
    /// config with the store's token-manager state in place of its own.
    ///
    /// A personal token a person pasted into this host's config (one the
    /// store has not seen: [`ManagerDoc::pasted`]) wins over the
    /// store's until the next locked run takes it into the store.
    async fn read_org(&self, org: &OrgId) -> Result<(Read, Config), StoreError> {
        let config = self.local_config()?;
        let mut read = self.read(&self.keys(&config, org)?).await?;
        let config = match read.manager.take() {
            Some(m) => match m.pasted(&config) {
                Some(token) => {
                    let m = m.with_personal_of(&config, &token);
                    with_manager(&config, m)?
                }
                None => with_manager(&config, m)?,
            },
            None => config,
        };
        Ok((read, config))
    }

    pub async fn load(&self, org: &OrgId) -> Result<Snapshot, StoreError> {
        let (read, mut config) = self.read_org(org).await?;
        if let Some((index, target)) = org.listed_target() {
            config.service_app = config.service_app.for_org(index, target);
        }
        let (tokens, exists) = match read.tokens {
            Some((tokens, revision)) => {
                let at = Revision {
                    revision,
                    cluster: read.cluster,
                };
                if self.export {
                    self.export(&tokens, at).await?;
                }
                (tokens, true)
            }
            // Not seeded yet: this host's own file, until a locked run
            // seeds the store with it.
            None => {
                let env = files::read_env(&self.files.env_path)?;
                (env.tokens, env.doc.is_some())
            }
        };
        Ok(Snapshot {
            tokens,
            config,
            exists,
        })
    }

    /// What the store holds for `org`, without writing anything (for
    /// `status`): the export's document with the store's tokens, and the
    /// config with the store's token-manager state.
    pub async fn peek(&self, org: &OrgId) -> Result<(files::EnvState, Config), StoreError> {
        let (read, config) = self.read_org(org).await?;
        let (mut state, _) = read_export(&self.files.env_path)?;
        if let Some((tokens, _)) = read.tokens {
            state.tokens = tokens;
        }
        Ok((state, config))
    }

    pub async fn save_service(
        &self,
        guard: &EtcdGuard,
        org: &OrgId,
        tokens: &StoredTokens,
    ) -> Result<(), StoreError> {
        if !matches!(guard.scope, LockScope::Org(_)) {
            return Err(wrong_scope("the new service-app tokens"));
        }
        let keys = self.keys(&self.local_config()?, org)?;
        // Never store "no refresh token" over one: keep the stored one.
        let mut tokens = tokens.clone();
        if tokens.refresh_token.is_none()
            && let Some((stored, _)) = self.read(&keys).await?.tokens
        {
            tokens.refresh_token = stored.refresh_token;
            tokens.refresh_expires_at = stored.refresh_expires_at;
        }
        let body = serde_json::to_vec(&TokensDoc::of(&tokens)).expect("serializable");
        match self.fenced_put(guard, &keys.tokens, body, false).await {
            Ok(Some(at)) => self.export(&tokens, at).await,
            Ok(None) => Ok(()),
            // Issued but not stored: keep them where a person can find
            // them; the store itself is left as it was.
            Err(e) => Err(with_recovery(
                e,
                files::keep_recovery(&self.files.env_path, &tokens),
            )),
        }
    }

    pub async fn save_renewable(
        &self,
        guard: &EtcdGuard,
        update: &RenewableUpdate,
    ) -> Result<(), StoreError> {
        if guard.scope != LockScope::Config {
            return Err(wrong_scope("the renewed personal access token"));
        }
        let config = self.local_config()?;
        let keys = self.keys(&config, &OrgId::configured())?;
        let old = self.read(&keys).await?.manager;
        // This host's config token is older than what is written now: seen,
        // so that it never counts as pasted. (A config with none gets the
        // new one below, beside the integration client: seen too.)
        let own = config.personal_access_token.get().cloned();
        let mut doc = ManagerDoc::merged(old, update, own.as_ref().map(fingerprint));
        if own.is_none() && update.integration_client.is_some() {
            doc = doc.seeing(Some(fingerprint(&update.personal_access_token)));
        }
        let body = serde_json::to_vec(&doc).expect("serializable");
        self.fenced_put(guard, &keys.manager, body, false).await?;
        // `setup-oauth` also names the integration's client: that is a
        // static credential, kept in this host's config file (or state
        // file), which keeps its own token state: the tokens live in etcd.
        if let Some(client) = &update.integration_client {
            let config = Config::load_with(&self.files.config_path, &self.files.config_cache)?;
            let client_only = own.map(|own| PersonalUpdate {
                personal_access_token: own,
                personal_expires_at: config.personal_expires_at,
                integration_refresh_token: None,
                integration_refresh_expires_at: None,
                integration_client: Some(client.clone()),
            });
            files::write_config(
                &config,
                client_only.as_ref().unwrap_or(update),
                self.files.mode,
            )?;
        }
        Ok(())
    }
}

/// An env-file error of one value that an export can shed (the store holds
/// the value it should have).
fn unusable_value(e: &EnvFileError) -> bool {
    matches!(
        e,
        EnvFileError::BadValue { .. } | EnvFileError::Ambiguous { .. }
    )
}

/// The export as read for a rewrite, and whether it had to be mended: an
/// owned key whose value does not read as a token or time is left out (in
/// memory), so the store's value replaces it and every other line stays.
fn read_export(path: &std::path::Path) -> Result<(files::EnvState, bool), StoreError> {
    match files::read_env(path) {
        Err(StoreError::EnvFile(e)) if unusable_value(&e) => {
            let Some(doc) = env_file::read(path)? else {
                return Err(e.into());
            };
            let bad: Vec<&str> = [KEY_ACCESS_TOKEN, KEY_REFRESH_TOKEN]
                .into_iter()
                .filter(|k| doc.token(k).is_err())
                .collect();
            let bytes = doc.try_render_without(&bad)?;
            let doc = EnvDocument::parse(bytes, path)?;
            Ok((
                files::EnvState {
                    path: path.to_path_buf(),
                    doc: Some(doc),
                    tokens: StoredTokens::default(),
                },
                true,
            ))
        }
        other => other.map(|s| (s, false)),
    }
}

#[derive(Default)]
struct Read {
    tokens: Option<(StoredTokens, i64)>,
    manager: Option<ManagerDoc>,
    cluster: u64,
}

/// The config with the token-manager state from etcd in place of the
/// file's own.
fn with_manager(config: &Config, m: ManagerDoc) -> Result<Config, StoreError> {
    let bytes = config.render_with(&m.update());
    let mut parsed = Config::parse(&bytes, &config.path)?;
    // The file's notes were logged from the file itself already.
    parsed.notes.clear();
    Ok(parsed)
}

fn with_recovery(e: StoreError, kept: Option<PathBuf>) -> StoreError {
    match e {
        StoreError::LockLost { key, ttl, .. } => StoreError::LockLost {
            key,
            ttl,
            recovery: kept,
        },
        StoreError::Unreachable {
            endpoints, detail, ..
        } => StoreError::Unreachable {
            endpoints,
            detail,
            recovery: kept,
        },
        other => other,
    }
}

/// Keeps the lease alive every third of its TTL until aborted. A renewal
/// that fails (a member down, slow, without a leader) is tried again soon,
/// at the next member; the lease lives on for the rest of its TTL
/// meanwhile. A lease that lapsed anyway (a long pause) is not re-created:
/// the lock is lost, and the next write says so.
async fn keep_alive(cluster: Arc<Cluster>, lease: i64, ttl: i64) {
    let period = Duration::from_millis((ttl as u64 * 1000 / 3).max(200));
    let again = period.min(Duration::from_millis(250));
    let Ok(gateway) = cluster.gateway().await else {
        return;
    };
    let mut wait = period;
    loop {
        tokio::time::sleep(wait).await;
        wait = match tokio::time::timeout(period, gateway.lease_keep_alive(lease)).await {
            Ok(Ok(left)) if left > 0 => period,
            // Gone: etcd says so with a TTL of 0 (or "not found").
            Ok(Ok(_)) | Ok(Err(Failure::Status { code: 5, .. })) => {
                tracing::warn!("the etcd lease {lease:x} has lapsed; the lock is lost");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!("etcd: renewing lease {lease:x}: {e}; trying again");
                again
            }
            Err(_) => {
                gateway.next_member();
                again
            }
        };
    }
}

/// Where an export's tokens came from: a key's revision in one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision {
    pub revision: i64,
    pub cluster: u64,
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of cluster {:x}", self.revision, self.cluster)
    }
}

/// The revision an export was written from, if it says.
pub fn export_revision(bytes: &[u8]) -> Option<Revision> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.lines().find_map(|l| {
        let rest = l.trim_end_matches('\r').strip_prefix(files::EXPORT_MARK)?;
        let (rev, cluster) = rest.trim().split_once(" of cluster ")?;
        Some(Revision {
            revision: rev.trim().parse().ok()?,
            cluster: u64::from_str_radix(cluster.trim(), 16).ok()?,
        })
    })
}

#[cfg(test)]
mod tests;
