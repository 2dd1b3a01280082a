//! What persists, behind one seam.
//!
//! [`TokenStore`] is what the engine needs from a backend: a lock that
//! covers everything a transaction writes, an unlocked read for the fast
//! path, and saves that cannot be called without the lock's guard. The
//! files backend ([`FilesStore`]) keeps the service-app tokens in the env
//! file and the token-manager state in the config file; [`MemStore`] keeps
//! them in memory for the engine's unit tests.

pub mod env_file;
pub mod files;
pub mod fs_atomic;
mod mem;

pub use files::{EnvState, FilesStore, owned_values};
pub use mem::MemStore;

use crate::config::{Config, ConfigError};
use crate::tokens::{OrgId, RenewableUpdate, StoredTokens};
use env_file::EnvFileError;
use fs_atomic::WriteError;
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
}

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
