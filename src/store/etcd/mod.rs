//! The etcd backend: one set of tokens shared by a fleet of hosts.
//!
//! Keys, under `/<PREFIX>/<appId>/` (each path segment percent-encoded):
//! - `tokens/<targetOrgId>`: one org's service-app tokens (JSON);
//! - `manager`: the renewable token-manager state (personal token,
//!   integration refresh token, their expiries; JSON);
//! - `lock/org/<targetOrgId>`, `lock/manager`: etcd's lock service names.
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

use super::files::{self, FilesStore, lock_file};
use super::{LockScope, Snapshot, StoreError, wrong_scope};
use crate::clock;
use crate::config::{Config, PersonalUpdate};
use crate::secret::{ExposeSecret, SecretString, secret};
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    written_at: Option<String>,
}

fn writer() -> (Option<String>, Option<String>) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    (
        Some(format!("{host}/{}", std::process::id())),
        Some(clock::format_utc(clock::now())),
    )
}

impl TokensDoc {
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
            written_by,
            written_at,
        })
    }

    /// `old` with `update` applied (a missing integration refresh token
    /// keeps the stored one, as in the config file).
    fn merged(old: Option<ManagerDoc>, update: &RenewableUpdate) -> ManagerDoc {
        let (written_by, written_at) = writer();
        let (irt, irt_exp) = match &update.integration_refresh_token {
            Some(t) => (
                Some(t.expose_secret().to_string()),
                update.integration_refresh_expires_at.map(clock::format_utc),
            ),
            None => old
                .map(|o| {
                    (
                        o.integration_refresh_token,
                        o.integration_refresh_token_expires_at,
                    )
                })
                .unwrap_or_default(),
        };
        ManagerDoc {
            personal_access_token: update.personal_access_token.expose_secret().into(),
            personal_access_token_expires_at: update.personal_expires_at.map(clock::format_utc),
            integration_refresh_token: irt,
            integration_refresh_token_expires_at: irt_exp,
            written_by,
            written_at,
        }
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
            let key = if i == 0 { &keys.tokens } else { &keys.manager };
            let bad = |e: serde_json::Error| StoreError::EtcdData {
                key: key.clone(),
                detail: e.to_string(),
            };
            if i == 0 {
                out.tokens = Some((
                    serde_json::from_slice::<TokensDoc>(&value)
                        .map_err(bad)?
                        .tokens(),
                    mod_revision,
                ));
            } else {
                out.manager = Some(serde_json::from_slice::<ManagerDoc>(&value).map_err(bad)?);
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
        let state = files::read_env(&path)?;
        // (A rebuilt cluster counts revisions from 1 again: its id differs.)
        if let Some(doc) = &state.doc
            && export_revision(doc.as_bytes())
                .is_some_and(|r| r.cluster == at.cluster && r.revision >= at.revision)
        {
            return Ok(());
        }
        files::write_export(&state, tokens, &at.to_string(), self.files.mode)
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
    async fn seed(
        &self,
        guard: &EtcdGuard,
        config: &Config,
        keys: &Keys,
    ) -> Result<(), StoreError> {
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
            }
        }
        Ok(())
    }

    pub async fn lock(&self, scope: &LockScope, wait: Duration) -> Result<EtcdGuard, StoreError> {
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
                let guard = EtcdGuard {
                    scope: scope.clone(),
                    key,
                    lease,
                    keepalive,
                    cluster: cluster.clone(),
                    released: false,
                };
                if let Err(e) = self.seed(&guard, &config, &keys).await {
                    self.release(guard).await;
                    return Err(e);
                }
                Ok(guard)
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
    async fn read_org(&self, org: &OrgId) -> Result<(Read, Config), StoreError> {
        let config = self.local_config()?;
        let mut read = self.read(&self.keys(&config, org)?).await?;
        let config = match read.manager.take() {
            Some(m) => with_manager(&config, m)?,
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
        let mut state = files::read_env(&self.files.env_path)?;
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
        let body = serde_json::to_vec(&ManagerDoc::merged(old, update)).expect("serializable");
        self.fenced_put(guard, &keys.manager, body, false).await?;
        // `setup-oauth` also names the integration's client: that is a
        // static credential, kept in this host's config file.
        if update.integration_client.is_some() {
            let config = Config::load_with(&self.files.config_path, &self.files.config_cache)?;
            files::write_config(&config, update, self.files.mode)?;
        }
        Ok(())
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
