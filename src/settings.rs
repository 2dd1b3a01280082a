//! Flags, env vars and the config file resolved once into what commands
//! use. Precedence: flag > environment variable (clap handles those two) >
//! config file > default.

use crate::cli::{GlobalArgs, StoreArg, WriteModeArg};
use crate::config::Config;
use crate::error::Error;
use crate::fs_atomic::WriteMode;
use crate::names::{DEFAULT_API_BASE, ENV_TEST_NO_RETRY_DELAY};
use crate::store::{FilesStore, Store};
use crate::tokens::OrgId;
use crate::webex::{ClientPool, HttpApi, HttpSettings, RetryPolicy};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    pub config_path: PathBuf,
    pub env_path: PathBuf,
    api_base_flag: Option<String>,
    pub lock_timeout: Duration,
    pub write_mode: WriteMode,
    pub audit_log: Option<PathBuf>,
    pub http_timeout: Duration,
    pub retry_budget: Duration,
    pub json: bool,
    pub quiet: bool,
    /// The state file renewed token-manager state goes to, when set
    /// (`--state`, else `$STATE_DIRECTORY/state.json`); `None`: the config.
    pub state_path: Option<PathBuf>,
    /// Why the etcd password could not be read (reported by
    /// [`Settings::check_paths`], before anything runs).
    etcd_password_error: Option<EtcdPasswordError>,
    /// `--org` values (names or targetOrgIds), as given.
    pub orgs: Vec<String>,
    pub all_orgs: bool,
    /// Requests in flight at once (orgs, data-source renewals).
    pub concurrency: usize,
    /// The HTTP clients of this run, shared by its orgs (see [`ClientPool`]).
    clients: Arc<ClientPool>,
    /// `--store`, as given.
    store: StoreArg,
    /// The config file's last parse, shared by everything this run reads
    /// it for (the org list, each org's store): one parse per content.
    config_cache: Arc<crate::config::ParsedCache>,
    /// The etcd connection of this run, shared by its orgs (connects on
    /// first use).
    cluster: Option<Arc<crate::store::etcd::Cluster>>,
}

/// Makes a path absolute against the working directory without touching
/// the file system (the file may not exist yet). Messages show these, since
/// cron runs in another working directory than the one a person tests in.
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Where the audit log goes: `None` when turned off (`--audit-log off`),
/// else the flag's path, else `<env file>.audit.jsonl` beside the env file.
pub fn audit_path(flag: Option<&str>, env_path: &Path) -> Option<PathBuf> {
    match flag {
        Some(v) if v.eq_ignore_ascii_case("off") => None,
        Some(v) if !v.trim().is_empty() => Some(absolute(Path::new(v))),
        _ => Some(crate::store::files::audit_path(env_path)),
    }
}

/// One file however it is named: symlinks, `.` and `..` resolved where the
/// file (or else its directory) exists.
fn file_identity(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    // A dangling symlink still names the file it would create: follow it
    // (a bounded number of hops, as the kernel does).
    let mut p = p.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&p) {
            Ok(target) => p = p.parent().unwrap_or(Path::new("/")).join(target),
            Err(_) => break,
        }
    }
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or_else(|_| absolute(&p)),
        _ => absolute(&p),
    }
}

/// Two orgs whose env files are one file, or an org's env file that is the
/// config file or another org's lock or audit file, would hand one
/// customer's token to another (or corrupt a file the run relies on): a
/// config error naming both, before any request.
fn check_org_files(config: &Config, env_paths: &[PathBuf]) -> Result<(), Error> {
    use crate::store::files::{audit_path, lock_path};
    let orgs = &config.service_app.orgs;
    let config_file = file_identity(&config.path);
    let ids: Vec<PathBuf> = env_paths.iter().map(|p| file_identity(p)).collect();
    let clash = |i: usize, why: String| {
        Error::Config(crate::config::ConfigError::BadOrgs {
            path: config.path.clone(),
            key: format!("serviceApp.orgs[{i}].envFile"),
            why,
        })
    };
    for (i, id) in ids.iter().enumerate() {
        if *id == config_file || *id == file_identity(&lock_path(&config.path)) {
            return Err(clash(
                i,
                format!(
                    "(org `{}`) is the config file or its lock ({}); give the org an env file of its own",
                    orgs[i].name,
                    env_paths[i].display()
                ),
            ));
        }
        for (j, other) in ids.iter().enumerate().take(i) {
            if id == other {
                return Err(clash(
                    i,
                    format!(
                        "(org `{}`) and serviceApp.orgs[{j}] (org `{}`) are the same file ({}): one org's token would be handed to the other; give each org its own env file",
                        orgs[i].name,
                        orgs[j].name,
                        env_paths[i].display()
                    ),
                ));
            }
        }
        for (j, other) in env_paths.iter().enumerate() {
            for (what, side) in [("lock", lock_path(other)), ("audit log", audit_path(other))] {
                if *id == file_identity(&side) {
                    return Err(clash(
                        i,
                        format!(
                            "(org `{}`) is the {what} of org `{}` ({}); give the org an env file of its own",
                            orgs[i].name,
                            orgs[j].name,
                            env_paths[i].display()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The state file: `--state` (or `WEBEX_TOKEN_STATE`), else
/// `$STATE_DIRECTORY/state.json` when systemd set a state directory (the
/// first, if it lists several), else none.
pub fn state_path(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag.filter(|p| !p.as_os_str().is_empty()) {
        return Some(absolute(p));
    }
    let dirs = std::env::var_os(crate::names::ENV_STATE_DIRECTORY)?;
    let first = dirs.to_string_lossy().split(':').next()?.to_string();
    (!first.is_empty()).then(|| absolute(&Path::new(&first).join(crate::names::DEFAULT_STATE_FILE)))
}

/// Why `--etcd-user` has no password.
#[derive(Debug, Clone)]
enum EtcdPasswordError {
    /// Neither `--etcd-password-file` nor the credential: a usage error.
    Missing,
    /// A source is there but could not be read.
    Unreadable(String),
}

/// The etcd password: `--etcd-password-file`, else the systemd credential
/// `etcd-password`; `Ok(None)` when neither is there.
fn etcd_password(g: &GlobalArgs) -> Result<Option<crate::secret::SecretString>, String> {
    use crate::secret_source::{Sources, read_secret_file};
    if let Some(p) = &g.etcd_password_file {
        let p = absolute(p);
        return read_secret_file(&p)
            .map(Some)
            .map_err(|why| format!("--etcd-password-file {}: {why}", p.display()));
    }
    let sources = Sources {
        key: "the etcd password".into(),
        credential: Some(crate::names::CRED_ETCD_PASSWORD),
        ..Sources::default()
    };
    sources
        .resolve()
        .map(|found| found.map(|(v, _)| v))
        .map_err(|e| e.to_string())
}

impl Settings {
    /// Tests: the settings of `webex-token --config CONFIG --env-file ENV`
    /// (files store, every other flag at its default).
    #[cfg(test)]
    pub fn for_files(config: &Path, env: &Path) -> Settings {
        use clap::Parser;
        let cli = crate::cli::Cli::parse_from([
            "webex-token".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--env-file".as_ref(),
            env.as_os_str(),
            "status".as_ref(),
        ]);
        Settings::from_args(&cli.global)
    }

    pub fn from_args(g: &GlobalArgs) -> Settings {
        let env_path = absolute(&g.env_file);
        let state_path = state_path(g.state.as_deref());
        let (etcd_password, etcd_password_error) = match (&g.store, &g.etcd_user) {
            (StoreArg::Etcd { .. }, Some(_)) => match etcd_password(g) {
                Ok(Some(p)) => (Some(p), None),
                Ok(None) => (None, Some(EtcdPasswordError::Missing)),
                Err(e) => (None, Some(EtcdPasswordError::Unreadable(e))),
            },
            _ => (None, None),
        };
        Settings {
            state_path: state_path.clone(),
            etcd_password_error,
            config_path: absolute(&g.config),
            audit_log: audit_path(g.audit_log.as_deref(), &env_path),
            env_path,
            api_base_flag: g.api_base.clone(),
            lock_timeout: g.lock_timeout,
            write_mode: match g.write_mode {
                WriteModeArg::Atomic => WriteMode::Atomic,
                WriteModeArg::InPlace => WriteMode::InPlace,
            },
            http_timeout: g.http_timeout,
            retry_budget: g.retry_budget,
            json: g.json,
            quiet: g.quiet,
            orgs: g.orgs.clone(),
            all_orgs: g.all_orgs,
            concurrency: usize::from(g.concurrency.max(1)),
            clients: Arc::new(ClientPool::new(usize::from(g.concurrency.max(1)))),
            cluster: match &g.store {
                StoreArg::Files => None,
                StoreArg::Etcd {
                    tls,
                    endpoints,
                    prefix,
                } => Some(crate::store::etcd::Cluster::new(
                    crate::store::etcd::EtcdSettings {
                        endpoints: endpoints.clone(),
                        prefix: prefix.clone(),
                        tls: *tls,
                        ca_file: g.etcd_ca.as_deref().map(absolute),
                        user: g.etcd_user.clone(),
                        password_file: g.etcd_password_file.as_deref().map(absolute),
                        password: etcd_password,
                        lock_ttl: g.lock_ttl,
                        timeout: g.etcd_timeout,
                    },
                )),
            },
            store: g.store.clone(),
            config_cache: Arc::new(crate::config::ParsedCache::with_state(state_path)),
        }
    }

    /// The config file as this run sees it: read through the run's cache,
    /// with the state file (if any) laid over it.
    pub fn load_config(&self) -> Result<Config, crate::config::ConfigError> {
        Config::load_with(&self.config_path, &self.config_cache)
    }

    /// True when the tokens are shared through etcd (`--store etcd://`).
    pub fn shared_store(&self) -> bool {
        matches!(self.store, StoreArg::Etcd { .. })
    }

    /// Where the tokens live, for reports: `files`, or the etcd URL.
    pub fn store_description(&self) -> String {
        match &self.store {
            StoreArg::Files => "files".into(),
            StoreArg::Etcd {
                tls,
                endpoints,
                prefix,
            } => format!(
                "{}://{}/{prefix}",
                if *tls { "etcds" } else { "etcd" },
                endpoints.join(",")
            ),
        }
    }

    /// The store for one org's files: those files themselves, or the etcd
    /// store with them as this host's export.
    pub fn store_for(&self, files: FilesStore) -> Store {
        if let Some(cluster) = &self.cluster {
            return Store::Etcd(crate::store::etcd::EtcdStore {
                cluster: cluster.clone(),
                files,
                export: true,
            });
        }
        Store::Files(files)
    }

    /// The store of this run's env file and config file.
    pub fn store(&self) -> Store {
        self.store_for(self.files_store())
    }

    /// The API base URL: flag or env var, else the config's `apiBaseUrl`,
    /// else the default.
    pub fn api_base(&self, config: Option<&Config>) -> String {
        self.api_base_flag
            .clone()
            .filter(|b| !b.is_empty())
            .or_else(|| config.and_then(|c| c.api_base_url.clone()))
            .unwrap_or_else(|| DEFAULT_API_BASE.to_string())
            .trim_end_matches('/')
            .to_string()
    }

    /// Refuses, before anything is read or sent, every path this run may
    /// touch that exists but is not a regular file: the env and config
    /// files (symlinks followed: `.env -> /dev/null` is refused), their lock
    /// files and the audit log (symlinks refused: those are opened without
    /// following links).
    pub fn check_paths(&self) -> Result<(), Error> {
        use crate::fs_atomic::FileKind;
        match &self.etcd_password_error {
            None => {}
            Some(EtcdPasswordError::Missing) => {
                return Err(Error::Usage {
                    message: "--etcd-user needs a password: --etcd-password-file PATH, or the systemd credential `etcd-password`".into(),
                    hint: "put the password in a file only this user can read and pass --etcd-password-file, or (under systemd) LoadCredentialEncrypted=etcd-password:...; see docs/secrets.md".into(),
                });
            }
            Some(EtcdPasswordError::Unreadable(detail)) => {
                return Err(Error::Store(crate::store::StoreError::EtcdSetup {
                    detail: detail.clone(),
                }));
            }
        }
        let mut follow = vec![
            ("env file", self.env_path.clone()),
            ("config file", self.config_path.clone()),
        ];
        if let Some(state) = &self.state_path {
            if std::fs::canonicalize(state).ok().as_ref().unwrap_or(state)
                == std::fs::canonicalize(&self.config_path)
                    .ok()
                    .as_ref()
                    .unwrap_or(&self.config_path)
            {
                return Err(Error::Usage {
                    message: format!(
                        "--state {}: that is the config file; the state file is a file of its own",
                        state.display()
                    ),
                    hint: "leave out --state to keep renewed tokens in the config as before, or name another file (e.g. state.json in a directory the run can write)".into(),
                });
            }
            follow.push(("state file", state.clone()));
        }
        let mut own = vec![
            ("lock file", crate::store::files::lock_path(&self.env_path)),
            (
                "lock file",
                crate::store::files::lock_path(
                    self.state_path.as_deref().unwrap_or(&self.config_path),
                ),
            ),
        ];
        if let Some(a) = &self.audit_log {
            own.push(("audit log", a.clone()));
        }
        for (what, path) in follow {
            if let Ok(m) = std::fs::metadata(&path)
                && let Some(kind) = FileKind::of(m.file_type())
            {
                return Err(Error::NotRegular { what, path, kind });
            }
        }
        for (what, path) in own {
            if let Ok(m) = std::fs::symlink_metadata(&path)
                && let Some(kind) = FileKind::of(m.file_type())
            {
                return Err(Error::NotRegular { what, path, kind });
            }
        }
        Ok(())
    }

    /// Refuses, before any request, a run that may have to write renewed
    /// token-manager state into a config file it cannot write, with no
    /// state file set: `setup-oauth` always writes; other runs only when
    /// level 3 can run (a usable integration) and the state is not kept in
    /// etcd. A config that cannot be read is left for the command to
    /// report as it always has.
    pub fn check_state_location(&self, setup: bool) -> Result<(), Error> {
        if let Some(state) = &self.state_path {
            // The state file is always replaced by rename: its directory
            // must be there and writable.
            let dir = state.parent().unwrap_or(Path::new("/"));
            return match crate::store::files::config_read_only(dir, WriteMode::InPlace) {
                Some(why) => Err(Error::Config(crate::config::ConfigError::StateFile {
                    path: state.clone(),
                    why: format!("its directory {} cannot be written: {why}", dir.display()),
                })),
                None if !dir.is_dir() => {
                    Err(Error::Config(crate::config::ConfigError::StateFile {
                        path: state.clone(),
                        why: format!("its directory {} does not exist", dir.display()),
                    }))
                }
                None => Ok(()),
            };
        }
        if self.shared_store() && !setup {
            return Ok(());
        }
        let Ok(config) = self.load_config() else {
            return Ok(());
        };
        if !setup && config.usable_integration().is_none() {
            return Ok(());
        }
        match crate::store::files::config_read_only(&self.config_path, self.write_mode) {
            Some(why) => Err(Error::Config(crate::config::ConfigError::ReadOnly {
                path: self.config_path.clone(),
                why,
            })),
            None => Ok(()),
        }
    }

    /// The files backend for this run's env file and config file.
    pub fn files_store(&self) -> FilesStore {
        FilesStore {
            env_path: self.env_path.clone(),
            config_path: self.config_path.clone(),
            mode: self.write_mode,
            config_cache: self.config_cache.clone(),
        }
    }

    /// The orgs this run works on, with their files: `None` when the config
    /// lists no `serviceApp.orgs` (one org, its env file the `--env-file`
    /// path, exactly as before) or cannot be read (the single-org path then
    /// reports that as it always has). `one` names a command that needs
    /// exactly one org (`token`, `exec`). A `--org` that names no listed org
    /// (by name or `targetOrgId`) is a usage error listing the names.
    pub fn org_targets(&self, one: Option<&str>) -> Result<Option<Vec<OrgTarget>>, Error> {
        let Ok(config) = Config::load_with(&self.config_path, &self.config_cache) else {
            return Ok(None);
        };
        self.org_targets_in(&config, one)
    }

    /// [`Settings::org_targets`] for a config already read.
    pub fn org_targets_in(
        &self,
        config: &Config,
        one: Option<&str>,
    ) -> Result<Option<Vec<OrgTarget>>, Error> {
        let listed = &config.service_app.orgs;
        if listed.is_empty() {
            // `--org` with the single `targetOrgId` is harmless; anything
            // else asks for orgs this config does not have.
            let single = config.service_app.target_org_id.get();
            if let Some(bad) = self.orgs.iter().find(|o| Some(*o) != single) {
                return Err(Error::Usage {
                    message: format!(
                        "--org {bad}: the config file {} lists no `serviceApp.orgs`",
                        config.path.display()
                    ),
                    hint:
                        "add `serviceApp.orgs` to the config (see docs/orgs.md), or leave out --org"
                            .into(),
                });
            }
            return Ok(None);
        }
        let names = || {
            listed
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut chosen: Vec<usize> = Vec::new();
        for want in &self.orgs {
            let Some(i) = listed
                .iter()
                .position(|o| &o.name == want || &o.target_org_id == want)
            else {
                return Err(Error::Usage {
                    message: format!("--org {want}: no such org in `serviceApp.orgs`"),
                    hint: format!("the configured orgs are: {}", names()),
                });
            };
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        if chosen.is_empty() || self.all_orgs {
            chosen = (0..listed.len()).collect();
        }
        if let Some(command) = one
            && chosen.len() != 1
        {
            return Err(Error::Usage {
                message: format!(
                    "`{command}` works on one org, and the config lists {}: choose one with --org NAME",
                    listed.len()
                ),
                hint: format!("the configured orgs are: {}", names()),
            });
        }
        let config_dir = config.path.parent().unwrap_or(Path::new("/"));
        let env_path_of = |o: &crate::config::OrgEntry| match &o.env_file {
            Some(p) => absolute(&config_dir.join(p)),
            None => {
                let mut p = self.env_path.clone().into_os_string();
                p.push(format!(".{}", o.name));
                PathBuf::from(p)
            }
        };
        // Walls between tenants: every listed org (not only the chosen
        // ones) is checked before any request.
        let all: Vec<PathBuf> = listed.iter().map(env_path_of).collect();
        check_org_files(config, &all)?;
        let cache = self.config_cache.clone();
        Ok(Some(
            chosen
                .into_iter()
                .map(|i| {
                    let o = &listed[i];
                    let env_path = all[i].clone();
                    OrgTarget {
                        org: OrgId::listed(i, &o.name, &o.target_org_id),
                        store: self.store_for(FilesStore {
                            env_path,
                            config_path: self.config_path.clone(),
                            mode: self.write_mode,
                            config_cache: cache.clone(),
                        }),
                    }
                })
                .collect(),
        ))
    }

    /// The one org a `token` or `exec` run works on and its files: the
    /// single org of a config without `serviceApp.orgs`, else the one
    /// chosen with `--org` (or the only one listed).
    pub fn one_org(&self, command: &str) -> Result<(OrgId, Store), Error> {
        match self.org_targets(Some(command))? {
            Some(mut v) => {
                let t = v.remove(0);
                Ok((t.org, t.store))
            }
            None => Ok((OrgId::configured(), self.store())),
        }
    }

    /// The Webex client for `config` (built lazily: no TLS setup until the
    /// first request). Every client of one run shares its connection pool.
    pub fn api(&self, config: &Config) -> HttpApi {
        HttpApi::shared(self.http(Some(config)), self.clients.clone())
    }

    /// HTTP client settings for `config`.
    pub fn http(&self, config: Option<&Config>) -> HttpSettings {
        let no_delay = std::env::var_os(ENV_TEST_NO_RETRY_DELAY).is_some();
        HttpSettings {
            base_url: self.api_base(config),
            connect_timeout: self.http_timeout.min(Duration::from_secs(10)),
            request_timeout: self.http_timeout,
            retry: RetryPolicy {
                budget: self.retry_budget,
                no_delay,
                ..RetryPolicy::default()
            },
        }
    }
}

/// One org of `serviceApp.orgs` a command works on, and its files.
#[derive(Debug, Clone)]
pub struct OrgTarget {
    pub org: OrgId,
    pub store: Store,
}

impl OrgTarget {
    /// The org's name in the config.
    pub fn name(&self) -> &str {
        self.org.name().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn settings(args: &[&str]) -> Settings {
        let mut v = vec!["webex-token"];
        v.extend_from_slice(args);
        v.push("status");
        Settings::from_args(&Cli::try_parse_from(v).unwrap().global)
    }

    #[test]
    fn api_base_precedence() {
        let cfg = Config::parse(
            br#"{"apiBaseUrl":"https://from-config/v1/"}"#,
            Path::new("/c.json"),
        )
        .unwrap();
        let flag = settings(&["--api-base", "https://from-flag/v1/"]);
        assert_eq!(flag.api_base(Some(&cfg)), "https://from-flag/v1");
        let none = settings(&[]);
        // The test process may have WEBEX_API_BASE_URL set by a user; the
        // clap env layer is covered by the integration tests instead.
        if std::env::var_os(crate::names::ENV_API_BASE).is_none() {
            assert_eq!(none.api_base(Some(&cfg)), "https://from-config/v1");
            assert_eq!(none.api_base(None), "https://webexapis.com/v1");
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:8080/v1",
            "http://[::1]:9/v1",
            "http://localhost/v1",
            "https://webexapis.com/v1",
        ] {
            assert!(
                Cli::try_parse_from(["webex-token", "--api-base", ok, "status"]).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://webexapis.com/v1",
            "http://10.0.0.5/v1",
            "ftp://x/v1",
        ] {
            assert!(
                Cli::try_parse_from(["webex-token", "--api-base", bad, "status"]).is_err(),
                "{bad}"
            );
        }
        let cfg = Config::parse(
            br#"{"apiBaseUrl":"http://proxy.example/v1"}"#,
            Path::new("/c.json"),
        );
        assert!(cfg.unwrap_err().to_string().contains("not this machine"));
        // Empty means unset.
        let empty = settings(&["--api-base", ""]);
        if std::env::var_os(crate::names::ENV_API_BASE).is_none() {
            assert_eq!(empty.api_base(None), "https://webexapis.com/v1");
        }
    }

    #[test]
    fn audit_off_and_default() {
        assert!(audit_path(Some("off"), Path::new("/x/.env")).is_none());
        assert_eq!(
            audit_path(None, Path::new("/x/.env")).unwrap(),
            PathBuf::from("/x/.env.audit.jsonl")
        );
    }

    #[test]
    fn org_targets_resolve_names_ids_and_env_files() {
        let cfg = Config::parse(
            br#"{"serviceApp":{"orgs":[
                {"name":"acme","targetOrgId":"o1"},
                {"name":"beta","targetOrgId":"o2","envFile":"envs/beta.env"},
                {"name":"gamma","targetOrgId":"o3","envFile":"/abs/gamma.env"}]}}"#,
            Path::new("/etc/webex/token-config.json"),
        )
        .unwrap();
        let all = settings(&["--env-file", "/srv/app/.env"])
            .org_targets_in(&cfg, None)
            .unwrap()
            .unwrap();
        let paths: Vec<&Path> = all.iter().map(|t| t.store.env_path()).collect();
        assert_eq!(
            paths,
            [
                Path::new("/srv/app/.env.acme"),
                Path::new("/etc/webex/envs/beta.env"),
                Path::new("/abs/gamma.env"),
            ]
        );
        assert_eq!(all[1].org.listed_target(), Some((1, "o2")));

        // By name or id, each once, in the config's order of the flags.
        let two = settings(&["--org", "o3", "--org", "acme", "--org", "gamma"])
            .org_targets_in(&cfg, None)
            .unwrap()
            .unwrap();
        let names: Vec<&str> = two.iter().map(OrgTarget::name).collect();
        assert_eq!(names, ["gamma", "acme"]);

        let e = settings(&[])
            .org_targets_in(&cfg, Some("token"))
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.hint().unwrap().contains("acme, beta, gamma"));
        let e = settings(&["--org", "nope"])
            .org_targets_in(&cfg, None)
            .unwrap_err();
        assert!(e.to_string().contains("--org nope"));
        let one = settings(&["--org", "beta"])
            .org_targets_in(&cfg, Some("token"))
            .unwrap()
            .unwrap();
        assert_eq!(one.len(), 1);

        // No `orgs`: the single org; `--org` only with its own id.
        let single = Config::parse(
            br#"{"serviceApp":{"targetOrgId":"solo"}}"#,
            Path::new("/c.json"),
        )
        .unwrap();
        assert!(
            settings(&[])
                .org_targets_in(&single, Some("token"))
                .unwrap()
                .is_none()
        );
        assert!(
            settings(&["--org", "solo"])
                .org_targets_in(&single, None)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            settings(&["--org", "x"])
                .org_targets_in(&single, None)
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn the_state_flag_wins_and_is_absolute() {
        let s = settings(&["--state", "rel/state.json"]);
        let p = s.state_path.clone().unwrap();
        assert!(p.is_absolute() && p.ends_with("rel/state.json"));
        assert_eq!(s.store().renewable_place(), p.display().to_string());
        // No flag: only systemd's $STATE_DIRECTORY (not set in unit tests,
        // unless the tests themselves run as such a service).
        if std::env::var_os(crate::names::ENV_STATE_DIRECTORY).is_none()
            && std::env::var_os(crate::names::ENV_STATE).is_none()
        {
            let s = settings(&[]);
            assert!(s.state_path.is_none());
            assert_eq!(
                s.store().renewable_place(),
                s.config_path.display().to_string()
            );
        }
    }

    #[test]
    fn paths_are_absolute() {
        let s = settings(&["--env-file", "rel/.env"]);
        assert!(s.env_path.is_absolute());
        assert!(s.env_path.ends_with("rel/.env"));
        assert!(s.audit_log.unwrap().ends_with("rel/.env.audit.jsonl"));
    }
}
