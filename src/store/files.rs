//! The files backend: the env file holds the service-app tokens, the config
//! file the token-manager state, and lock files beside them serialize runs.
//!
//! The service-app tokens live in the env file (only the owned keys are
//! touched); the personal token and integration refresh token live in the
//! config file. Every write is atomic (see [`crate::fs_atomic`]). Runs that
//! touch the same env file serialize on a dedicated lock file beside it:
//! never on the data file itself, because the data file is replaced by
//! rename, and a lock on a replaced inode protects nothing. The lock is an
//! OS advisory lock, so it dies with its process: a SIGKILLed run never
//! leaves a stale lock behind, and the lock file itself is never deleted
//! (deleting it would let two runs lock two different inodes).

use super::env_file::{self, EnvDocument, EnvFileError};
use super::{LockScope, Snapshot, StoreError, TokenStore, wrong_scope};
use crate::clock;
use crate::config::{Config, ParsedCache, PersonalUpdate};
use crate::fs_atomic::{self, WriteMode, adopt_owner};
use crate::names::*;
use crate::secret::{ExposeSecret, secret};
use crate::tokens::StoredTokens;
use crate::tokens::{OrgId, RenewableUpdate};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Holds the lock until dropped (closing the file releases it).
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// The lock file that serializes runs on `env_path`.
pub fn lock_path(env_path: &Path) -> PathBuf {
    sibling(env_path, "lock")
}

/// The default audit log beside `env_path`.
pub fn audit_path(env_path: &Path) -> PathBuf {
    sibling(env_path, "audit.jsonl")
}

fn sibling(env_path: &Path, suffix: &str) -> PathBuf {
    let name = env_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".env".into());
    env_path.with_file_name(format!("{name}.{suffix}"))
}

/// Takes the lock file at `path`, waiting up to `timeout` without blocking
/// the runtime (other tasks, e.g. a signal watcher, keep running).
pub async fn lock_file(
    path: PathBuf,
    owner_ref: &Path,
    timeout: Duration,
) -> Result<LockGuard, StoreError> {
    let err = |source: std::io::Error| StoreError::Lock {
        owner: (source.kind() == std::io::ErrorKind::PermissionDenied)
            .then(|| owner_of(&path))
            .flatten(),
        path: path.clone(),
        source,
    };
    let file = fs_atomic::open_private(&path, false).map_err(err)?;
    adopt_owner(&file, owner_ref);
    let started = Instant::now();
    let mut announced = false;
    loop {
        match file.try_lock() {
            Ok(()) => {
                tracing::debug!("took the lock {}", path.display());
                return Ok(LockGuard { _file: file });
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                if started.elapsed() >= timeout {
                    return Err(StoreError::LockTimeout {
                        path,
                        waited: started.elapsed(),
                    });
                }
                if !announced {
                    tracing::info!(
                        "waiting for another webex-token run holding {}",
                        path.display()
                    );
                    announced = true;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
    }
}

/// The env file as read: the document (for a layout-keeping rewrite) and
/// the tokens in it.
pub struct EnvState {
    pub path: PathBuf,
    pub doc: Option<EnvDocument>,
    pub tokens: StoredTokens,
}

/// Reads the env file; a missing file is an empty state, not an error.
///
/// When the file holds no service-app refresh token but the process
/// environment does (`WEBEX_SERVICE_APP_REFRESH_TOKEN`, e.g. one copied from
/// the developer portal's "Generate tokens" for the first run), that one is
/// used, so the first refresh can use level 1; the file then keeps it.
pub fn read_env(path: &Path) -> Result<EnvState, StoreError> {
    let doc = env_file::read(path)?;
    tracing::trace!(
        "env file {}: {}",
        path.display(),
        match &doc {
            Some(d) => format!(
                "{} bytes, keys {:?}",
                d.as_bytes().len(),
                d.keys().collect::<Vec<_>>()
            ),
            None => "does not exist yet".into(),
        }
    );
    let mut tokens = match &doc {
        None => StoredTokens::default(),
        Some(d) => tokens_from(d, path)?,
    };
    if tokens.refresh_token.is_none()
        && let Some(rt) = std::env::var(KEY_REFRESH_TOKEN)
            .ok()
            .filter(|v| !v.trim().is_empty())
    {
        tracing::info!(
            "the env file {} has no service-app refresh token; using {KEY_REFRESH_TOKEN} from the environment",
            path.display()
        );
        tokens.refresh_token = Some(secret(rt.trim()));
        tokens.refresh_expires_at = std::env::var(KEY_REFRESH_EXPIRES_AT)
            .ok()
            .and_then(|v| clock::parse(&v));
    }
    Ok(EnvState {
        path: path.into(),
        doc,
        tokens,
    })
}

fn tokens_from(doc: &EnvDocument, path: &Path) -> Result<StoredTokens, StoreError> {
    let value = |k: &str| doc.get(k).filter(|v| !v.trim().is_empty());
    // Tokens are checked: one holding whitespace or control characters
    // would fail every request as if Webex were down; it is bad input.
    let token = |k: &str| doc.token(k).map(|t| t.map(secret));
    let time = |k: &str| {
        let v = value(k)?;
        let parsed = clock::parse(&v);
        if parsed.is_none() {
            tracing::warn!(
                "env file {}: `{k}` is not an RFC 3339 time; treating the expiry as unknown",
                path.display()
            );
        }
        parsed
    };
    let access_token = token(KEY_ACCESS_TOKEN)?;
    let refresh_token = token(KEY_REFRESH_TOKEN)?;
    // An expiry counts only for the token it was written for: another tool
    // (the Python sample, a person) may have replaced a token line and left
    // webex-token's expiry behind.
    let marks = expiry_marks(doc.as_bytes());
    let belongs = |which: &str, t: &Option<crate::secret::SecretString>, exp| match (&marks, t) {
        (Some(m), Some(t)) => match m.iter().find(|(k, _)| k == which) {
            Some((_, fp)) if *fp != crate::secret::fingerprint(t) => {
                tracing::info!(
                    "env file {}: the {which} token was replaced since webex-token wrote its expiry; treating the expiry as unknown",
                    path.display()
                );
                None
            }
            _ => exp,
        },
        _ => exp,
    };
    Ok(StoredTokens {
        access_expires_at: belongs("access", &access_token, time(KEY_ACCESS_EXPIRES_AT)),
        refresh_expires_at: belongs("refresh", &refresh_token, time(KEY_REFRESH_EXPIRES_AT)),
        access_token,
        refresh_token,
    })
}

/// The comment line that ties the stored expiries to their tokens. A
/// comment, so every .env reader ignores it and the owned keys stay four.
const EXPIRY_MARK: &str = "# webex-token: expiries above are for";

/// `[("access", "sha256:…"), ("refresh", "sha256:…")]` from the mark line,
/// if the file has one (files written before it existed have none: their
/// expiries are trusted as before).
fn expiry_marks(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let line = text
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(EXPIRY_MARK))?;
    Some(
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// `bytes` with the mark line set for `tokens`: replaced where it is,
/// else appended, in the file's own line ending.
fn with_expiry_mark(bytes: Vec<u8>, tokens: &StoredTokens) -> Vec<u8> {
    let mut mark = EXPIRY_MARK.to_string();
    if let Some(t) = &tokens.access_token {
        mark.push_str(&format!(" access={}", crate::secret::fingerprint(t)));
    }
    if let Some(t) = &tokens.refresh_token {
        mark.push_str(&format!(" refresh={}", crate::secret::fingerprint(t)));
    }
    with_line(bytes, EXPIRY_MARK, &mark)
}

/// `bytes` with the line starting with `prefix` replaced by `line` where it
/// is, else `line` appended, in the file's own line ending.
fn with_line(bytes: Vec<u8>, prefix: &str, line: &str) -> Vec<u8> {
    let Ok(text) = String::from_utf8(bytes.clone()) else {
        return bytes;
    };
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(text.len() + line.len() + 2);
    let mut replaced = false;
    for l in text.split_inclusive('\n') {
        if !replaced && l.starts_with(prefix) {
            out.push_str(line);
            out.push_str(if l.ends_with('\n') { eol } else { "" });
            replaced = true;
        } else {
            out.push_str(l);
        }
    }
    if !replaced {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push_str(eol);
        }
        out.push_str(line);
        out.push_str(eol);
    }
    out.into_bytes()
}

/// The env file's new bytes holding `tokens` (owned keys only). The one
/// place where service-app tokens are exposed for writing.
pub fn render_env(state: &EnvState, tokens: &StoredTokens) -> Result<Vec<u8>, EnvFileError> {
    let [access, access_exp, refresh, refresh_exp] = owned_values(tokens);
    let mut updates: Vec<(&str, &str)> = vec![
        (access.0, access.1.as_deref().unwrap_or_default()),
        (access_exp.0, access_exp.1.as_deref().unwrap_or_default()),
    ];
    // Never replace a refresh token by nothing: with none to write, the
    // refresh-token lines stay exactly as they were.
    if let Some(r) = &refresh.1 {
        updates.push((refresh.0, r));
        updates.push((refresh_exp.0, refresh_exp.1.as_deref().unwrap_or_default()));
    }
    let rendered = match &state.doc {
        Some(doc) => doc.try_render_with(&updates)?,
        None => EnvDocument::empty().try_render_with(&updates)?,
    };
    // The refresh token written (or kept, when none came back).
    let kept = StoredTokens {
        refresh_token: tokens.refresh_token.clone().or_else(|| {
            state
                .doc
                .as_ref()
                .and_then(|d| d.get(KEY_REFRESH_TOKEN))
                .map(secret)
        }),
        ..tokens.clone()
    };
    Ok(with_expiry_mark(rendered, &kept))
}

/// The four owned keys and their values as text (`None` when unknown), in
/// the order they are appended to a new file. Used for the env file and for
/// `exec`'s child environment, so both always carry the same values.
pub fn owned_values(tokens: &StoredTokens) -> [(&'static str, Option<String>); 4] {
    let secret_text =
        |s: &Option<crate::secret::SecretString>| s.as_ref().map(|s| s.expose_secret().to_string());
    let time_text = |t: Option<jiff::Timestamp>| t.map(clock::format_utc);
    [
        (KEY_ACCESS_TOKEN, secret_text(&tokens.access_token)),
        (KEY_ACCESS_EXPIRES_AT, time_text(tokens.access_expires_at)),
        (KEY_REFRESH_TOKEN, secret_text(&tokens.refresh_token)),
        (KEY_REFRESH_EXPIRES_AT, time_text(tokens.refresh_expires_at)),
    ]
}

/// Writes new tokens into the env file. If that fails, the new values are
/// put in a 0600 recovery file so they are not lost.
pub fn write_env(
    state: &EnvState,
    tokens: &StoredTokens,
    mode: WriteMode,
) -> Result<(), StoreError> {
    let bytes = render_env(state, tokens)?;
    fs_atomic::write_file(&state.path, &bytes, mode).map_err(|source| {
        let recovery = save_recovery(&state.path, &bytes, &state.path);
        StoreError::Write {
            what: format!(
                "the new service-app tokens (env file {})",
                state.path.display()
            ),
            source,
            recovery,
        }
    })
}

/// The comment line of an etcd export that names the etcd revision its
/// tokens came from (a comment: every .env reader ignores it).
pub const EXPORT_MARK: &str = "# webex-token: exported from etcd, revision";

/// Writes an etcd export: the env file with `tokens` (layout kept, as
/// [`write_env`]) and the revision line set.
pub fn write_export(
    state: &EnvState,
    tokens: &StoredTokens,
    revision: &str,
    mode: WriteMode,
) -> Result<(), StoreError> {
    let bytes = render_env(state, tokens)?;
    let bytes = with_line(bytes, EXPORT_MARK, &format!("{EXPORT_MARK} {revision}"));
    fs_atomic::write_file(&state.path, &bytes, mode).map_err(|source| StoreError::Write {
        what: format!(
            "the export of the etcd store (env file {})",
            state.path.display()
        ),
        source,
        recovery: None,
    })
}

/// Keeps tokens that were issued but could not be stored (in the env
/// file's format) in a 0600 recovery file; see [`save_recovery`].
pub fn keep_recovery(env_path: &Path, tokens: &StoredTokens) -> Option<PathBuf> {
    let state = EnvState {
        path: env_path.into(),
        doc: None,
        tokens: StoredTokens::default(),
    };
    let bytes = render_env(&state, tokens).ok()?;
    save_recovery(env_path, &bytes, env_path)
}

/// Writes a renewed personal token (and integration refresh token) into the
/// config file, keeping every other key; or, when the run has a state file
/// (`config.state_path`), into that file, leaving the config as it is.
pub fn write_config(
    config: &Config,
    update: &PersonalUpdate,
    mode: WriteMode,
) -> Result<(), StoreError> {
    if let Some(state_path) = &config.state_path {
        return write_state(state_path, config, update);
    }
    let bytes = config.render_with(update);
    fs_atomic::write_file(&config.path, &bytes, mode).map_err(|source| {
        let recovery = save_recovery(&config.path, &bytes, &config.path);
        StoreError::Write {
            what: format!(
                "the renewed personal access token (config file {})",
                config.path.display()
            ),
            source,
            recovery,
        }
    })
}

/// Writes renewed state into the state file: re-read as it is now (the
/// caller holds the config lock), `update` applied on top of what `config`
/// holds; atomic, and a new file is 0600 (the state file is always replaced
/// by rename: it is webex-token's own, never a bind mount).
fn write_state(path: &Path, config: &Config, update: &PersonalUpdate) -> Result<(), StoreError> {
    let current = Config::read_state(path)?.unwrap_or_else(|| Config::empty_state(path));
    let bytes = current.render_state(update, config);
    fs_atomic::write_file(path, &bytes, WriteMode::Atomic).map_err(|source| {
        let recovery = save_recovery(path, &bytes, path);
        StoreError::Write {
            what: format!(
                "the renewed personal access token (state file {})",
                path.display()
            ),
            source,
            recovery,
        }
    })
}

/// Why the config file cannot be written, if it cannot: not writable by
/// this user, on a read-only mount, or (for an atomic write, which
/// renames a temp file over it) in a directory this user cannot write.
pub fn config_read_only(path: &Path, mode: WriteMode) -> Option<String> {
    // access(2) answers for this user, read-only mounts included (EROFS).
    let denied = |p: &Path| -> Option<std::io::Error> {
        rustix::fs::access(p, rustix::fs::Access::WRITE_OK)
            .err()
            .map(std::io::Error::from)
    };
    if !path.exists() {
        return None;
    }
    if let Some(e) = denied(path) {
        return Some(e.to_string());
    }
    if mode == WriteMode::Atomic
        && let Some(dir) = path.parent()
        && let Some(e) = denied(dir)
    {
        return Some(format!("its directory {}: {e}", dir.display()));
    }
    None
}

/// Keeps bytes that could not be written where a person can recover them:
/// beside the target if possible, else in `$STATE_DIRECTORY` (systemd's
/// state directory survives `PrivateTmp=true`), else in the temp directory;
/// 0600, owned like `owner_ref`, under a name no other user can predict,
/// never overwriting anything.
fn save_recovery(target: &Path, bytes: &[u8], owner_ref: &Path) -> Option<PathBuf> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "webex-token".into());
    let stamp = clock::now().as_second();
    let mut dirs: Vec<PathBuf> = target.parent().map(Path::to_path_buf).into_iter().collect();
    if let Some(state) = std::env::var_os("STATE_DIRECTORY").filter(|v| !v.is_empty()) {
        // systemd may list several, separated by colons.
        let first = state
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        dirs.push(PathBuf::from(first));
    }
    dirs.push(std::env::temp_dir());
    for dir in dirs {
        for _ in 0..3 {
            let nonce = uuid::Uuid::new_v4().simple().to_string();
            let path = dir.join(format!("{name}.recovered-{stamp}-{}", &nonce[..12]));
            let mut opts = OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
            }
            match opts.open(&path) {
                Ok(mut f) => {
                    adopt_owner(&f, owner_ref);
                    if f.write_all(bytes).and_then(|_| f.sync_all()).is_ok() {
                        return Some(path);
                    }
                    let _ = std::fs::remove_file(&path);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(_) => break,
            }
        }
    }
    None
}

/// "owned by uid N (name)" for a file, for messages about files a run
/// cannot open.
pub(crate) fn owner_of(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(format!("uid {} gid {}", m.uid(), m.gid()))
}

/// The files backend: one env file (one org) and the config file. With
/// several orgs each has its own `FilesStore` (its env file and lock); they
/// share the config file and its lock.
#[derive(Debug, Clone)]
pub struct FilesStore {
    pub env_path: PathBuf,
    pub config_path: PathBuf,
    pub mode: WriteMode,
    /// Shared by the orgs of one run (see [`ParsedCache`]).
    pub config_cache: Arc<ParsedCache>,
}

/// A held lock of the files backend and what it covers.
#[derive(Debug)]
pub struct FilesGuard {
    scope: LockScope,
    _lock: LockGuard,
}

impl FilesStore {
    /// The lock file for `scope`: beside the env file for an org's tokens,
    /// beside the file the shared token-manager state is written to (the
    /// state file when there is one: the config's directory may be
    /// read-only; else the config file) for that state.
    pub fn lock_path(&self, scope: &LockScope) -> PathBuf {
        match scope {
            LockScope::Org(_) => lock_path(&self.env_path),
            LockScope::Config => lock_path(self.renewable_path()),
            LockScope::Reauth => sibling(self.renewable_path(), "reauth.lock"),
        }
    }

    /// Where `watch` keeps its pending re-authorization record:
    /// `<config or state file>.reauth.json`, beside the flow's lock.
    pub fn reauth_record_path(&self) -> PathBuf {
        sibling(self.renewable_path(), "reauth.json")
    }

    /// Where renewed token-manager state is written: the state file, if
    /// the run has one, else the config file.
    pub fn renewable_path(&self) -> &Path {
        self.config_cache
            .state_path()
            .unwrap_or(self.config_path.as_path())
    }

    /// Reads both files (the env file first: its errors come first). Plain
    /// file reads, so `token`'s fast path can call it without a runtime.
    pub fn load_now(&self) -> Result<Snapshot, StoreError> {
        let env = read_env(&self.env_path)?;
        let config = Config::load_with(&self.config_path, &self.config_cache)?;
        Ok(Snapshot {
            tokens: env.tokens,
            config,
            exists: env.doc.is_some(),
        })
    }

    /// The env file as read (document and tokens), for status and sinks.
    pub fn read_env(&self) -> Result<EnvState, StoreError> {
        read_env(&self.env_path)
    }
}

impl TokenStore for FilesStore {
    type Guard = FilesGuard;

    async fn lock(&self, scope: &LockScope, wait: Duration) -> Result<FilesGuard, StoreError> {
        let owner_ref = match scope {
            LockScope::Org(_) => self.env_path.as_path(),
            LockScope::Config | LockScope::Reauth => self.renewable_path(),
        };
        let lock = lock_file(self.lock_path(scope), owner_ref, wait).await?;
        Ok(FilesGuard {
            scope: scope.clone(),
            _lock: lock,
        })
    }

    async fn load(&self, org: &OrgId) -> Result<Snapshot, StoreError> {
        // Inline: a read and a (mostly cached) parse, cheaper than a hop to
        // another thread and its malloc arena (peak RSS).
        let mut snap = self.load_now()?;
        // A listed org's mint carries its own `targetOrgId`.
        if let Some((index, target)) = org.listed_target() {
            snap.config.service_app = snap.config.service_app.for_org(index, target);
        }
        Ok(snap)
    }

    async fn save_service(
        &self,
        guard: &FilesGuard,
        _org: &OrgId,
        tokens: &StoredTokens,
    ) -> Result<(), StoreError> {
        if !matches!(guard.scope, LockScope::Org(_)) {
            return Err(wrong_scope("the new service-app tokens"));
        }
        // Re-read under the lock for the layout (comments, other keys).
        let (path, tokens, mode) = (self.env_path.clone(), tokens.clone(), self.mode);
        off_thread(move || write_env(&read_env(&path)?, &tokens, mode)).await
    }

    async fn save_renewable(
        &self,
        guard: &FilesGuard,
        update: &RenewableUpdate,
    ) -> Result<(), StoreError> {
        if guard.scope != LockScope::Config {
            return Err(wrong_scope("the renewed personal access token"));
        }
        // Re-read under the lock: keep whatever else changed in the file
        // (and in the state file, if any). (At most once per run: left on
        // the runtime thread.)
        let config = Config::load_with(&self.config_path, &self.config_cache)?;
        write_config(&config, update, self.mode)
    }
}

/// Runs file work (reads, parses, fsync'd writes) on the runtime's blocking
/// pool, so the one runtime thread keeps driving the other orgs' requests
/// meanwhile; inline when there is no Tokio runtime. The caller still waits
/// for it: order and locking are unchanged.
async fn off_thread<T, F>(work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_names() {
        assert_eq!(
            lock_path(Path::new("/x/.env")),
            PathBuf::from("/x/.env.lock")
        );
        assert_eq!(
            audit_path(Path::new("/x/prod.env")),
            PathBuf::from("/x/prod.env.audit.jsonl")
        );
    }

    #[tokio::test]
    async fn lock_is_exclusive_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join(".env");
        let held = lock_file(lock_path(&env), &env, Duration::from_secs(1))
            .await
            .unwrap();
        let err = lock_file(lock_path(&env), &env, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::LockTimeout { .. }));
        assert!(err.to_string().contains(".env.lock"));
        drop(held);
        lock_file(lock_path(&env), &env, Duration::from_millis(100))
            .await
            .unwrap();
    }

    #[test]
    fn recovery_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = save_recovery(&dir.path().join(".env"), b"X=1\n", dir.path()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"X=1\n");
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
    fn render_never_drops_a_refresh_token() {
        let doc = EnvDocument::parse(
            b"WEBEX_SERVICE_APP_REFRESH_TOKEN=keep\nWEBEX_SERVICE_APP_ACCESS_TOKEN=old\n".to_vec(),
            Path::new("/x/.env"),
        )
        .unwrap();
        let state = EnvState {
            path: "/x/.env".into(),
            doc: Some(doc),
            tokens: StoredTokens::default(),
        };
        let tokens = StoredTokens {
            access_token: Some(secret("new")),
            ..Default::default()
        };
        let out = render_env(&state, &tokens);
        let back = EnvDocument::parse(out.unwrap(), Path::new("/x/.env")).unwrap();
        assert_eq!(back.get(KEY_REFRESH_TOKEN).as_deref(), Some("keep"));
        assert_eq!(back.get(KEY_ACCESS_TOKEN).as_deref(), Some("new"));
    }

    #[test]
    fn expiry_mark_is_replaced_in_place_keeping_line_endings() {
        let tokens = StoredTokens {
            access_token: Some(secret("aaaaaaaa")),
            refresh_token: Some(secret("rrrrrrrr")),
            ..Default::default()
        };
        let crlf = with_expiry_mark(b"A=1\r\nB=2".to_vec(), &tokens);
        let text = String::from_utf8(crlf).unwrap();
        assert!(
            text.starts_with("A=1\r\nB=2\r\n# webex-token: expiries above are for access=sha256:"),
            "{text:?}"
        );
        assert!(text.ends_with("\r\n"));
        let again =
            String::from_utf8(with_expiry_mark(text.clone().into_bytes(), &tokens)).unwrap();
        assert_eq!(again, text, "replaced in place, not appended twice");
        let marks = expiry_marks(text.as_bytes()).unwrap();
        assert_eq!(marks.len(), 2);
        assert_eq!(marks[0].1, crate::secret::fingerprint(&secret("aaaaaaaa")));
        // No mark (a file written before it existed): expiries trusted as before.
        assert!(expiry_marks(b"A=1\n").is_none());
    }
}
