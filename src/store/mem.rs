//! An in-memory [`TokenStore`] for the engine's unit tests: the same
//! contract as the files backend (a lock per scope, saves only under it),
//! with counters a test can read.

use super::{LockScope, Snapshot, StoreError, TokenStore, wrong_scope};
use crate::config::Config;
use crate::tokens::{OrgId, RenewableUpdate, StoredTokens};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Tokens and config in memory. `fail_service_saves` makes every service
/// save fail (to test the recovery path).
pub struct MemStore {
    tokens: Mutex<StoredTokens>,
    config: Mutex<Config>,
    org_lock: Arc<tokio::sync::Mutex<()>>,
    config_lock: Arc<tokio::sync::Mutex<()>>,
    reauth_lock: Arc<tokio::sync::Mutex<()>>,
    pub service_saves: AtomicUsize,
    pub renewable_saves: AtomicUsize,
    pub fail_service_saves: bool,
}

/// A held lock of the memory backend.
pub struct MemGuard {
    scope: LockScope,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl MemStore {
    pub fn new(tokens: StoredTokens, config: Config) -> MemStore {
        MemStore {
            tokens: Mutex::new(tokens),
            config: Mutex::new(config),
            org_lock: Arc::default(),
            config_lock: Arc::default(),
            reauth_lock: Arc::default(),
            service_saves: AtomicUsize::new(0),
            renewable_saves: AtomicUsize::new(0),
            fail_service_saves: false,
        }
    }

    /// The stored service-app tokens now.
    pub fn tokens(&self) -> StoredTokens {
        self.tokens.lock().expect("not poisoned").clone()
    }

    /// Replaces the config, as another run sharing it would.
    pub fn replace_config(&self, config: Config) {
        *self.config.lock().expect("not poisoned") = config;
    }

    /// The config now (with renewals applied).
    pub fn config(&self) -> Config {
        self.config.lock().expect("not poisoned").clone()
    }
}

impl TokenStore for MemStore {
    type Guard = MemGuard;

    async fn lock(&self, scope: &LockScope, wait: Duration) -> Result<MemGuard, StoreError> {
        let mutex = match scope {
            LockScope::Org(_) => self.org_lock.clone(),
            LockScope::Config => self.config_lock.clone(),
            LockScope::Reauth => self.reauth_lock.clone(),
        };
        match tokio::time::timeout(wait, mutex.lock_owned()).await {
            Ok(held) => Ok(MemGuard {
                scope: scope.clone(),
                _held: held,
            }),
            Err(_) => Err(StoreError::LockTimeout {
                path: format!("memory:{scope:?}").into(),
                waited: wait,
            }),
        }
    }

    async fn load(&self, _org: &OrgId) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            tokens: self.tokens(),
            config: self.config(),
            exists: true,
        })
    }

    async fn save_service(
        &self,
        guard: &MemGuard,
        _org: &OrgId,
        tokens: &StoredTokens,
    ) -> Result<(), StoreError> {
        if !matches!(guard.scope, LockScope::Org(_)) {
            return Err(wrong_scope("the new service-app tokens"));
        }
        if self.fail_service_saves {
            return Err(wrong_scope("the new service-app tokens (test failure)"));
        }
        let mut stored = self.tokens.lock().expect("not poisoned");
        // Never a refresh token replaced by nothing (as the other backends).
        let kept = (stored.refresh_token.clone(), stored.refresh_expires_at);
        *stored = tokens.clone();
        if stored.refresh_token.is_none() {
            (stored.refresh_token, stored.refresh_expires_at) = kept;
        }
        self.service_saves.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn save_renewable(
        &self,
        guard: &MemGuard,
        update: &RenewableUpdate,
    ) -> Result<(), StoreError> {
        if guard.scope != LockScope::Config {
            return Err(wrong_scope("the renewed personal access token"));
        }
        let mut config = self.config.lock().expect("not poisoned");
        let bytes = config.render_with(update);
        *config = Config::parse(&bytes, &config.path).map_err(StoreError::Config)?;
        self.renewable_saves.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
