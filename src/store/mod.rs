//! What persists, behind one seam.
//!
//! [`TokenStore`] is what the engine needs from a backend: a lock that
//! covers everything a transaction writes, an unlocked read for the fast
//! path, and saves that cannot be called without the lock's guard. The
//! files backend ([`FilesStore`]) keeps the service-app tokens in the env
//! file and the token-manager state in the config file; [`MemStore`] keeps
//! them in memory for the engine's unit tests.

pub mod env_file;
pub mod etcd;
pub mod files;
mod mem;

pub use files::{EnvState, FilesStore, owned_values};
pub use mem::MemStore;

use crate::config::{Config, ConfigError};
use crate::fs_atomic::WriteError;
use crate::tokens::{OrgId, RenewableUpdate, StoredTokens};
use env_file::EnvFileError;
use std::path::PathBuf;
use std::time::Duration;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    EnvFile(#[from] EnvFileError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("could not open the lock file {}{}: {source}", path.display(), owner.as_deref().map(|o| format!(" (owned by {o})")).unwrap_or_default())]
    Lock {
        path: PathBuf,
        /// Who owns it, when permission was denied.
        owner: Option<String>,
        #[source]
        source: std::io::Error,
    },
    #[error("gave up after waiting {}s for another webex-token run holding {}", waited.as_secs(), path.display())]
    LockTimeout { path: PathBuf, waited: Duration },
    #[error("{what} could not be saved: {source}")]
    Write {
        what: String,
        #[source]
        source: WriteError,
        /// Where the new values were kept instead, if they could be.
        recovery: Option<PathBuf>,
    },
    /// The etcd cluster did not answer (down, partitioned, no quorum).
    #[error("the etcd store at {endpoints} could not be reached: {detail}")]
    Unreachable {
        endpoints: String,
        detail: String,
        /// Tokens issued but not stored, kept here.
        recovery: Option<PathBuf>,
    },
    /// The lease behind the etcd lock lapsed (a pause or partition longer
    /// than `--lock-ttl`): the write was refused.
    #[error("lost the etcd lock {key}: its lease ({}s) lapsed before the write, so the write was refused and the store keeps what another host wrote meanwhile", ttl.as_secs())]
    LockLost {
        key: String,
        ttl: Duration,
        recovery: Option<PathBuf>,
    },
    /// A value in etcd that webex-token would not have written (not its
    /// JSON, or a token or time that is not one): refused before anything
    /// is exported from it.
    #[error(
        "the etcd key {key} holds a value webex-token did not write: {detail}; nothing was exported from it"
    )]
    EtcdData { key: String, detail: String },
    /// `--store`/`--etcd-*` settings that cannot work (a CA or password
    /// file unreadable, credentials refused).
    #[error("{detail}")]
    EtcdSetup { detail: String },
}

/// What a lock covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockScope {
    /// The service-app tokens of one org.
    Org(OrgId),
    /// The shared token-manager state (personal token, integration refresh
    /// token): level 3 and `setup-oauth`. Every run that shares the config
    /// serializes on it, whatever its env file.
    Config,
    /// Held by the one `watch` that asks a person to re-authorize the
    /// integration (the device grant, for hours): one flow per config, per
    /// fleet with etcd. Nothing is saved under it.
    Reauth,
}

/// Everything a run reads: the service-app tokens of one org and the config
/// (static credentials and the renewable token-manager state).
pub struct Snapshot {
    pub tokens: StoredTokens,
    pub config: Config,
    /// The env file (or its equivalent) exists already.
    pub exists: bool,
}

/// A place where tokens persist. Saving needs the guard of the matching
/// lock, so an unlocked write does not compile.
#[allow(async_fn_in_trait)]
pub trait TokenStore {
    type Guard;
    /// Takes the lock for `scope`, waiting up to `wait`.
    async fn lock(&self, scope: &LockScope, wait: Duration) -> Result<Self::Guard, StoreError>;
    /// Reads the current state without a lock (the fast path, and the first
    /// read before locking).
    async fn load(&self, org: &OrgId) -> Result<Snapshot, StoreError>;
    /// Saves one org's service-app tokens (guard of `LockScope::Org`).
    async fn save_service(
        &self,
        guard: &Self::Guard,
        org: &OrgId,
        tokens: &StoredTokens,
    ) -> Result<(), StoreError>;
    /// Saves renewed token-manager state (guard of `LockScope::Config`).
    async fn save_renewable(
        &self,
        guard: &Self::Guard,
        update: &RenewableUpdate,
    ) -> Result<(), StoreError>;
    /// Gives a lock back. Dropping the guard releases it too; a backend
    /// whose release is a request (etcd) does it here, awaited.
    async fn release(&self, guard: Self::Guard) {
        drop(guard);
    }
    /// What this host has locally when the store cannot be reached (the
    /// etcd export); the files backend has nothing else.
    async fn load_local(&self, org: &OrgId) -> Result<Snapshot, StoreError> {
        self.load(org).await
    }
}

/// The store a run was configured with (`--store`).
#[derive(Debug, Clone)]
pub enum Store {
    Files(FilesStore),
    Etcd(etcd::EtcdStore),
}

/// A held lock of a [`Store`].
#[derive(Debug)]
pub enum StoreGuard {
    Files(files::FilesGuard),
    Etcd(etcd::EtcdGuard),
}

impl Store {
    /// This host's files: the env file (for etcd: the export) and config.
    pub fn files(&self) -> &FilesStore {
        match self {
            Store::Files(f) => f,
            Store::Etcd(e) => &e.files,
        }
    }

    /// The same store, never writing an export (for a dry run).
    pub fn read_only(&self) -> Store {
        match self {
            Store::Files(f) => Store::Files(f.clone()),
            Store::Etcd(e) => Store::Etcd(etcd::EtcdStore {
                export: false,
                ..e.clone()
            }),
        }
    }

    /// The env file (for etcd: this host's export of the store).
    pub fn env_path(&self) -> &std::path::Path {
        &self.files().env_path
    }

    /// This host's own copy, read without a runtime or an etcd call (for
    /// `token`'s fast path): the env file and config. For etcd a stale
    /// export holding a bad value counts as empty (the store is read).
    pub fn local_now(&self) -> Result<Snapshot, StoreError> {
        match self {
            Store::Files(f) => f.load_now(),
            Store::Etcd(e) => e.local_now(),
        }
    }

    /// The etcd key of the token-manager state, with `--store etcd://`.
    pub fn etcd_manager_key(&self) -> Option<String> {
        match self {
            Store::Files(_) => None,
            Store::Etcd(e) => e.manager_key().ok(),
        }
    }

    /// Where level 3 and `setup-oauth` save renewed token-manager state,
    /// for messages: the state file or config file, or the etcd key.
    pub fn renewable_place(&self) -> String {
        match self {
            Store::Files(f) => f.renewable_path().display().to_string(),
            Store::Etcd(e) => e.renewable_place(),
        }
    }

    /// What is stored for `org`, read without writing anything (for
    /// `status`): the env file's state and, for etcd, the config with the
    /// store's token-manager state (`None`: the config file as it is).
    pub async fn peek(&self, org: &OrgId) -> Result<(EnvState, Option<Config>), StoreError> {
        let _ = org; // (only the etcd store keeps orgs apart by key)
        match self {
            Store::Files(f) => Ok((f.read_env()?, None)),
            Store::Etcd(e) => e.peek(org).await.map(|(s, c)| (s, Some(c))),
        }
    }
}

/// `watch`'s pending re-authorization record (`agent::reauth`'s document,
/// opaque here). With files it is `<config or state file>.reauth.json`;
/// with etcd it is that file too (this host's copy) and the key
/// `/PREFIX/<appId>/reauth`, which every host of the fleet reads.
impl Store {
    /// Where the record is kept, for messages.
    pub fn reauth_record_place(&self) -> String {
        match self {
            Store::Files(f) => f.reauth_record_path().display().to_string(),
            Store::Etcd(e) => match e.reauth_key() {
                Ok(key) => format!("the etcd key {key}"),
                Err(_) => format!("the etcd store (under /{}/)", e.cluster.settings.prefix),
            },
        }
    }

    /// The record, if there is a readable one. With etcd the key is what
    /// counts (no key: no record, whatever this host's copy says); this
    /// host's copy is read only when etcd cannot be. A record that does not
    /// read as one is ignored with a warning.
    pub async fn reauth_record<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        let local = self.files().reauth_record_path();
        if let Store::Etcd(e) = self {
            match e.reauth_record().await {
                Ok(found) => return found,
                Err(err @ StoreError::EtcdData { .. }) => {
                    tracing::warn!("ignoring the re-authorization record: {err}");
                    return None;
                }
                Err(err) => tracing::warn!(
                    "could not read the re-authorization record from etcd ({err}); showing this host's copy {}",
                    local.display()
                ),
            }
        }
        let text = match std::fs::read_to_string(&local) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(
                    "ignoring the re-authorization record {}: {e}",
                    local.display()
                );
                return None;
            }
        };
        match serde_json::from_str(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                // (Line and column only: the file is not quoted.)
                tracing::warn!(
                    "ignoring the re-authorization record {}: it is not webex-token's (line {} column {})",
                    local.display(),
                    e.line(),
                    e.column()
                );
                None
            }
        }
    }

    /// Saves the record (guard of `LockScope::Reauth`): this host's file,
    /// and with etcd the key, while the lock is still held.
    pub async fn put_reauth_record<T: serde::Serialize>(
        &self,
        guard: &StoreGuard,
        record: &T,
    ) -> Result<(), StoreError> {
        let mut text = serde_json::to_vec_pretty(record).expect("serializable");
        text.push(b'\n');
        let local = self.files().reauth_record_path();
        crate::fs_atomic::write_file(&local, &text, crate::fs_atomic::WriteMode::Atomic).map_err(
            |source| StoreError::Write {
                what: "the re-authorization record".into(),
                source,
                recovery: None,
            },
        )?;
        match (self, guard) {
            (Store::Files(_), StoreGuard::Files(_)) => Ok(()),
            (Store::Etcd(e), StoreGuard::Etcd(g)) => e.put_reauth_record(g, text).await,
            _ => Err(wrong_scope("the re-authorization record")),
        }
    }

    /// Removes the record: this host's file, and with etcd the key (while
    /// `guard` is held when one is given; `setup-oauth` gives none).
    pub async fn remove_reauth_record(&self, guard: Option<&StoreGuard>) -> Result<(), StoreError> {
        let local = self.files().reauth_record_path();
        match std::fs::remove_file(&local) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Write {
                    what: "the re-authorization record".into(),
                    source: WriteError::Io {
                        path: local,
                        action: "remove",
                        source,
                    },
                    recovery: None,
                });
            }
        }
        match (self, guard) {
            (Store::Files(_), _) => Ok(()),
            (Store::Etcd(e), None) => e.delete_reauth_record(None).await,
            (Store::Etcd(e), Some(StoreGuard::Etcd(g))) => e.delete_reauth_record(Some(g)).await,
            (Store::Etcd(_), Some(_)) => Err(wrong_scope("the re-authorization record")),
        }
    }
}

impl TokenStore for Store {
    type Guard = StoreGuard;

    async fn lock(&self, scope: &LockScope, wait: Duration) -> Result<StoreGuard, StoreError> {
        match self {
            Store::Files(f) => f.lock(scope, wait).await.map(StoreGuard::Files),
            Store::Etcd(e) => e.lock(scope, wait).await.map(StoreGuard::Etcd),
        }
    }

    async fn load(&self, org: &OrgId) -> Result<Snapshot, StoreError> {
        match self {
            Store::Files(f) => f.load(org).await,
            Store::Etcd(e) => e.load(org).await,
        }
    }

    async fn save_service(
        &self,
        guard: &StoreGuard,
        org: &OrgId,
        tokens: &StoredTokens,
    ) -> Result<(), StoreError> {
        match (self, guard) {
            (Store::Files(f), StoreGuard::Files(g)) => f.save_service(g, org, tokens).await,
            (Store::Etcd(e), StoreGuard::Etcd(g)) => e.save_service(g, org, tokens).await,
            _ => Err(wrong_scope("the new service-app tokens")),
        }
    }

    async fn save_renewable(
        &self,
        guard: &StoreGuard,
        update: &RenewableUpdate,
    ) -> Result<(), StoreError> {
        match (self, guard) {
            (Store::Files(f), StoreGuard::Files(g)) => f.save_renewable(g, update).await,
            (Store::Etcd(e), StoreGuard::Etcd(g)) => e.save_renewable(g, update).await,
            _ => Err(wrong_scope("the renewed personal access token")),
        }
    }

    async fn release(&self, guard: StoreGuard) {
        match (self, guard) {
            (Store::Etcd(e), StoreGuard::Etcd(g)) => e.release(g).await,
            (_, g) => drop(g),
        }
    }

    /// This host's env file (for etcd: the export) and config: no etcd call.
    async fn load_local(&self, org: &OrgId) -> Result<Snapshot, StoreError> {
        match self {
            Store::Files(f) => f.load(org).await,
            Store::Etcd(e) => {
                let mut snap = e.local_now()?;
                if let Some((index, target)) = org.listed_target() {
                    snap.config.service_app = snap.config.service_app.for_org(index, target);
                }
                Ok(snap)
            }
        }
    }
}

#[cfg(test)]
mod contract;

/// The lock a save was given is not the one its data needs: a bug, never a
/// user error; refusing keeps the data safe.
fn wrong_scope(what: &str) -> StoreError {
    StoreError::Write {
        what: what.to_string(),
        source: WriteError::Io {
            path: PathBuf::new(),
            action: "save",
            source: std::io::Error::other("internal error: saved under the wrong lock"),
        },
        recovery: None,
    }
}
