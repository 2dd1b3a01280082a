//! The one top-level error, and the one place where errors become the
//! contract's exit codes and the hints people read.

use crate::chain::{AttemptResult, ChainError, Level};
use crate::clock;
use crate::config::ConfigError;
use crate::fs_atomic::WriteError;
use crate::store::StoreError;
use crate::store::env_file::EnvFileError;
use crate::webex::ApiError;
use std::path::PathBuf;
use std::time::Duration;

/// Exit codes of the contract.
pub mod exit {
    pub const TRANSIENT: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const CONFIG: u8 = 3;
    pub const REAUTH: u8 = 4;
    pub const CHECK: u8 = 5;

    /// Every exit code the program chooses, with a short and a full meaning:
    /// the footer of `webex-token --help` and the man page's EXIT STATUS are
    /// made from this table, so they cannot drift from each other.
    pub const TABLE: &[(&str, &str, &str)] = &[
        (
            "0",
            "ok",
            "the access token works (for status: the report was made)",
        ),
        (
            "1",
            "transient",
            "transient failure: network, timeout, 5xx, 429 after retries, lock wait timed out, store unreachable",
        ),
        ("2", "usage", "usage error (bad flags, unknown --org)"),
        (
            "3",
            "config/input",
            "config or input error: missing or malformed config, malformed or unreadable env file, missing field",
        ),
        (
            "4",
            "re-authorization required",
            "re-authorization required: every available level of the chain was rejected (the hint says what to do)",
        ),
        (
            "5",
            "status --check window",
            "(status --check only) a credential that cannot renew itself expires within the window",
        ),
        (
            "126, 127",
            "exec: cannot run CMD",
            "(exec only) the command could not be run (127: not found); otherwise exec exits with the command's own code",
        ),
        (
            "129, 130, 143",
            "signal",
            "stopped by SIGHUP, SIGINT or SIGTERM (128 + its number), once any token exchange in flight was saved; watch exits 0 on SIGINT and SIGTERM",
        ),
    ];

    /// The exit code of a run over several orgs: the worst of theirs,
    /// 4 > 3 > 1 > 0 (anything else ranks between 3 and 1).
    pub fn worst(codes: impl IntoIterator<Item = u8>) -> u8 {
        let rank = |c: u8| match c {
            0 => 0,
            1 => 1,
            3 => 3,
            4 => 4,
            _ => 2,
        };
        codes.into_iter().max_by_key(|c| rank(*c)).unwrap_or(0)
    }

    #[cfg(test)]
    #[test]
    fn worst_ranks_reauth_over_config_over_transient() {
        assert_eq!(worst([0, 1, 3, 0]), 3);
        assert_eq!(worst([1, 4, 3]), 4);
        assert_eq!(worst([0, 1, 0]), 1);
        assert_eq!(worst([]), 0);
    }
}

/// A failed data-source call.
#[derive(Debug, thiserror::Error)]
pub enum DsError {
    /// Webex refused or failed the request (403, 404, 400, 5xx, 429, network).
    #[error("{what}: {error}")]
    Api { what: String, error: ApiError },
    /// Webex rejected the service-app token (401) and one refresh did not help.
    #[error("{what}: Webex rejected the service-app access token ({error})")]
    TokenRejected {
        what: String,
        error: ApiError,
        /// The chain refreshed the token in this run, just before.
        refreshed: bool,
    },
    /// A 2xx answer that is not what the API documents.
    #[error("{what}: {why}")]
    BadResponse { what: String, why: String },
    /// The data source lacks a field a renewal must send back.
    #[error(
        "data source {id} has no `{field}` (not in the object nor in its token), so it cannot be sent back unchanged"
    )]
    MissingField { id: String, field: &'static str },
}

/// Where the integration's credentials are found on the portal.
const PORTAL_HINT: &str = "open developer.webex.com → My Webex Apps → your token-manager integration (create one with redirect URI http://localhost:3000/callback and scope spark:applications_token if you have none); its Client ID and Client Secret are on that page (the secret is shown only when the integration is created or the secret is regenerated)";

/// The redirect URIs an integration must list for the device grant.
const DEVICE_REDIRECT_URIS: [&str; 4] = [
    "https://oauth-helper-a.wbx2.com/helperservice/v1/actions/device/callback",
    "https://oauth-helper-r.wbx2.com/helperservice/v1/actions/device/callback",
    "https://oauth-helper-k.wbx2.com/helperservice/v1/actions/device/callback",
    "https://oauth-helper-d.wbx2.com/helperservice/v1/actions/device/callback",
];

/// Why `setup-oauth` did not finish. Nothing is written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("config file {}: the token-manager integration's client credentials are not set: {}", path.display(), reasons.join("; "))]
    MissingClient {
        path: PathBuf,
        fields: Vec<String>,
        reasons: Vec<String>,
    },
    #[error(
        "port {port} on localhost (127.0.0.1 or [::1]) is already in use, so the OAuth callback cannot be received there"
    )]
    PortInUse { port: u16 },
    #[error("could not listen on 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--manual needs the port of the integration's registered redirect URI; --port 0 cannot match one"
    )]
    ManualNeedsPort,
    #[error("the callback listener failed: {0}")]
    Listener(std::io::Error),
    #[error("no authorization arrived within {}{}; nothing was written", clock::human_span(after.as_secs()), refused_note(*refused))]
    TimedOut { after: Duration, refused: usize },
    #[error("Webex reported `{error}` instead of an authorization code{}; nothing was written", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Authorization {
        error: String,
        description: Option<String>,
    },
    #[error("the pasted address cannot be used: {0}; nothing was written")]
    ManualInput(String),
    #[error(
        "the authorization code exchange at the token endpoint failed: {0}; nothing was written"
    )]
    Exchange(ApiError),
    #[error("the token endpoint's answer cannot be used: {0}; nothing was written")]
    BadGrant(String),
    #[error("the device authorization request failed: {0}; nothing was written")]
    Device(ApiError),
    #[error("the device authorization answer cannot be used: {0}; nothing was written")]
    DeviceAnswer(String),
    #[error("could not build the OAuth request: {0}")]
    Build(String),
}

fn refused_note(refused: usize) -> String {
    match refused {
        0 => String::new(),
        1 => " (1 callback with a wrong `state` was refused)".into(),
        n => format!(" ({n} callbacks with a wrong `state` were refused)"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    DataSource(#[from] DsError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("{message}")]
    CheckFailed { message: String, hint: String },
    #[error("could not run `{program}`: {source}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// A file the run would read or write is a device, FIFO, socket,
    /// directory or (for lock and audit files) a symlink.
    #[error("the {what} {} is {kind}, not a regular file; nothing was read or written", path.display())]
    NotRegular {
        what: &'static str,
        path: PathBuf,
        kind: crate::fs_atomic::FileKind,
    },
    /// A command line clap accepted but the config refuses (an unknown
    /// `--org`, or several orgs where the command needs one).
    #[error("{message}")]
    Usage { message: String, hint: String },
    #[error("{0}")]
    Other(String),
}

/// A config error found while reading the store reads like any config
/// error (same message, same hint).
impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        match e {
            StoreError::Config(c) => Error::Config(c),
            other => Error::Store(other),
        }
    }
}

impl Error {
    /// The exit code of a chain failure (also for the audit log, which
    /// records it without owning the error).
    pub fn chain_exit_code(c: &ChainError) -> u8 {
        match c {
            ChainError::Transient { .. } => exit::TRANSIENT,
            ChainError::ValidationRefused { .. } => exit::CONFIG,
            ChainError::Exhausted { .. } => exit::REAUTH,
            ChainError::NothingToTry { .. } => exit::CONFIG,
            ChainError::Config(_) => exit::CONFIG,
            ChainError::Persist(_) => exit::CONFIG,
        }
    }

    /// The contract's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => exit::CONFIG,
            Error::Store(StoreError::LockTimeout { .. }) => exit::TRANSIENT,
            // The fleet's store out of reach, or another host took over:
            // nothing was changed, and a later run can succeed.
            Error::Store(StoreError::Unreachable { .. } | StoreError::LockLost { .. }) => {
                exit::TRANSIENT
            }
            Error::Store(_) => exit::CONFIG,
            Error::Chain(c) => Error::chain_exit_code(c),
            // 1 transient (network, 5xx, 429, a garbled answer), 3 the
            // request itself is wrong or not allowed (400/403/404: a wrong
            // id, a missing scope — retrying will not help, a person must
            // look), 4 the service-app token is rejected even after a refresh.
            Error::DataSource(d) => match d {
                DsError::Api { error, .. } if error.is_transient() => exit::TRANSIENT,
                DsError::Api { .. } => exit::CONFIG,
                DsError::TokenRejected { .. } => exit::REAUTH,
                DsError::BadResponse { .. } => exit::TRANSIENT,
                DsError::MissingField { .. } => exit::CONFIG,
            },
            Error::Setup(s) => match s {
                SetupError::MissingClient { .. } => exit::CONFIG,
                // A taken port is a local setup problem that waiting does not
                // fix: the port must match the registered redirect URI, so the
                // person has to free it (or register another), like a config error.
                SetupError::PortInUse { .. } | SetupError::Bind { .. } => exit::CONFIG,
                SetupError::ManualNeedsPort => exit::USAGE,
                SetupError::Listener(_) | SetupError::TimedOut { .. } => exit::TRANSIENT,
                SetupError::Authorization { error, .. } => match error.as_str() {
                    // The person took longer than the device code lives: as
                    // with our own --timeout, trying again is the remedy.
                    // Webex says `invalid_grant` for an expired device code.
                    "server_error"
                    | "temporarily_unavailable"
                    | "expired_token"
                    | "invalid_grant" => exit::TRANSIENT,
                    _ => exit::REAUTH,
                },
                SetupError::ManualInput(_) => exit::CONFIG,
                SetupError::Exchange(e) if e.is_transient() => exit::TRANSIENT,
                SetupError::Exchange(_) => exit::REAUTH,
                SetupError::BadGrant(_) => exit::TRANSIENT,
                SetupError::Device(e) if e.is_transient() => exit::TRANSIENT,
                // No device endpoint at all: a wrong --api-base (or a server
                // without the device grant), a config problem as elsewhere.
                SetupError::Device(e) if e.status() == Some(404) => exit::CONFIG,
                SetupError::Device(_) => exit::REAUTH,
                SetupError::DeviceAnswer(_) => exit::TRANSIENT,
                SetupError::Build(_) => exit::CONFIG,
            },
            Error::CheckFailed { .. } => exit::CHECK,
            Error::Exec { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            },
            Error::NotRegular { .. } => exit::CONFIG,
            Error::Usage { .. } => exit::USAGE,
            Error::Other(_) => exit::TRANSIENT,
        }
    }

    /// A short machine name for `--json`.
    pub fn kind(&self) -> &'static str {
        match self.exit_code() {
            exit::TRANSIENT => "transient",
            exit::USAGE => "usage",
            exit::CONFIG => "config",
            exit::REAUTH => "reauthorization_required",
            exit::CHECK => "expiring",
            _ => "exec",
        }
    }

    /// The chain levels tried before the error, if it came from the chain.
    pub fn attempts(&self) -> &[crate::chain::Attempt] {
        match self {
            Error::Chain(
                ChainError::Exhausted { attempts, .. }
                | ChainError::NothingToTry { attempts }
                | ChainError::Transient { attempts, .. },
            ) => attempts,
            _ => &[],
        }
    }

    /// Lines that explain the error further (one per chain level).
    pub fn details(&self) -> Vec<String> {
        match self {
            Error::Chain(
                ChainError::Exhausted { attempts, .. } | ChainError::NothingToTry { attempts },
            ) => attempts.iter().map(|a| a.to_string()).collect(),
            // The failing level is the error's own message; list the ones
            // before it.
            Error::Chain(ChainError::Transient { attempts, .. }) => attempts
                .iter()
                .filter(|a| !matches!(a.result, AttemptResult::Unavailable { .. }))
                .map(|a| a.to_string())
                .collect(),
            Error::Store(StoreError::Write {
                source, recovery, ..
            }) => {
                // The cause is the message's own last part ("… could not
                // be saved: <cause>"): not repeated here.
                let _ = source;
                let mut v = Vec::new();
                match recovery {
                    Some(p) => v.push(format!(
                        "the new values are kept in {} (mode 0600): copy them into place by hand, then delete that file",
                        p.display()
                    )),
                    None => v.push("they could not be kept anywhere else either; run `webex-token refresh` again once the file is writable".into()),
                }
                v
            }
            Error::Store(
                StoreError::Unreachable {
                    recovery: Some(p), ..
                }
                | StoreError::LockLost {
                    recovery: Some(p), ..
                },
            ) => vec![format!(
                "the tokens Webex issued in this run are kept in {} (mode 0600) in case they are needed; the store was not changed",
                p.display()
            )],
            _ => Vec::new(),
        }
    }

    /// What to do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config(e) | Error::Store(StoreError::Config(e)) => Some(e.hint()),
            Error::Chain(ChainError::Config(e)) => Some(e.hint()),
            Error::Setup(e) => setup_hint(e),
            Error::Store(StoreError::EnvFile(e)) => Some(match e {
                EnvFileError::Read { .. } => "check the path (--env-file / WEBEX_TOKEN_ENV_FILE) and its permissions".into(),
                EnvFileError::IsDirectory { .. } => "point --env-file at a file (it is created on the first refresh)".into(),
                EnvFileError::NotRegular { .. } => "point --env-file / WEBEX_TOKEN_ENV_FILE at a regular file (it is created on the first refresh); a device, FIFO or socket is never written".into(),
                EnvFileError::TooLarge { .. } => "an env file holds a few variables; check that --env-file names the right file".into(),
                EnvFileError::BadValue { .. } => "the named line holds a token with whitespace or control characters: remove that line (or the whole owned key) and run `webex-token refresh`; nothing was changed".into(),
                EnvFileError::Ambiguous { .. } => "quote the named line's value plainly (e.g. with double quotes and no backslashes) so every .env reader reads it the same; nothing was changed".into(),
                _ => "fix the env file by hand (it must parse as a .env file); nothing was changed".into(),
            }),
            Error::Store(StoreError::LockTimeout { .. }) => Some(
                "another run is still refreshing; try again, or raise --lock-timeout".into(),
            ),
            Error::Store(StoreError::Lock { owner: Some(o), .. }) => Some(format!(
                "the lock file belongs to {o} (perhaps from a run as root): run webex-token as that user, or give the file to this one (chown), as the env file is"
            )),
            Error::Store(StoreError::Lock { source, .. }) if source.kind() == std::io::ErrorKind::InvalidInput => Some(
                "the lock file's path is a symlink or a special file: remove it (webex-token creates a regular one)".into(),
            ),
            Error::Store(StoreError::Lock { .. }) => Some("make sure the env file's directory is writable".into()),
            Error::Store(StoreError::Unreachable { .. }) => Some(
                "check that etcd is running and reachable from this host (`etcdctl --endpoints=... endpoint health`) and that a majority of its members are up; `token` and `exec` keep serving the exported env file while its token is valid".into(),
            ),
            Error::Store(StoreError::LockLost { .. }) => Some(
                "this host stopped answering for longer than --lock-ttl (paused, overloaded or cut off) and another may have taken over; run again: it re-reads the store".into(),
            ),
            Error::Store(StoreError::EtcdData { .. }) => Some(
                "every host's env file keeps its last good tokens meanwhile; fix the value (`etcdctl put KEY ...`), or delete the key (`etcdctl del KEY`) and run `webex-token refresh`, which stores this host's tokens there again (for the `manager` key: its config's token-manager state); the next run exports the good value".into(),
            ),
            Error::Store(StoreError::EtcdSetup { .. }) => Some(
                "check --store, --etcd-ca, --etcd-user and --etcd-password-file (docs/fleets.md)".into(),
            ),
            Error::Store(StoreError::Write { source, .. }) => Some(match matches!(source, WriteError::RenameNotPossible { .. }) {
                true => "re-run with --write-mode in-place".into(),
                false => "make sure the file and its directory are writable, then run `webex-token refresh` again".into(),
            }),
            Error::Chain(ChainError::Transient { error, .. }) => Some(transient_hint(error)),
            Error::Chain(ChainError::ValidationRefused { .. }) => Some(
                "check --api-base / WEBEX_API_BASE_URL / `apiBaseUrl`: it should end in /v1, e.g. https://webexapis.com/v1".into(),
            ),
            Error::Chain(ChainError::Exhausted { attempts, .. }) => {
                let level2 = |status: u16| {
                    attempts.iter().find_map(|a| match &a.result {
                        AttemptResult::Rejected { error }
                            if a.level == Level::PersonalAccessToken
                                && error.status() == Some(status) =>
                        {
                            Some(error)
                        }
                        _ => None,
                    })
                };
                // Which way the integration points: not configured at all,
                // or configured and worth authorizing again.
                let no_integration = attempts.iter().any(|a| {
                    a.level == Level::IntegrationRefreshToken
                        && matches!(&a.result, AttemptResult::Skipped(why) if why == crate::chain::NO_INTEGRATION)
                });
                Some(if level2(403).is_some() {
                    // Webex knows the personal token but will not mint for
                    // this org: the org has not authorized the service app
                    // (or the token's user is no admin there). A new
                    // personal token would be refused the same way.
                    "Webex refused to mint for this org (403): a Full Admin of the target org (`serviceApp.targetOrgId`, or this org's `targetOrgId` in `serviceApp.orgs`) must authorize the service app in Control Hub (Apps → Service apps), and the personal access token must belong to an admin of that org and carry the scope spark:applications_token; then run `webex-token refresh`".into()
                } else if let Some(e) = level2(404) {
                    // Webex answers an unknown app id with its own error body
                    // (a trackingId); anything else answering 404 is not the
                    // Webex API at all.
                    if e.tracking_id().is_some() {
                        "check `serviceApp.appId` in the config file (the service app's id on developer.webex.com)".into()
                    } else {
                        "the API base answered 404 without a Webex error body: check --api-base / WEBEX_API_BASE_URL / `apiBaseUrl` (e.g. https://webexapis.com/v1), then `serviceApp.appId`".into()
                    }
                } else if level2(400).is_some_and(|e| {
                    e.names_code("client") || e.names_code("Client")
                }) {
                    "Webex refused the service app's client credentials: check `serviceApp.clientId` and `serviceApp.clientSecret` in the config file against the service app on developer.webex.com (regenerating the secret there invalidates the old one); setup-oauth does not fix this".into()
                } else if no_integration {
                    format!("the personal access token was rejected and no integration is configured to renew it: add `tokenManager.integration` with `clientId` and `clientSecret` to the config file ({PORTAL_HINT}), then run `webex-token setup-oauth`; or put a new personal access token in `tokenManager.personalAccessToken`")
                } else {
                    "run `webex-token setup-oauth` to authorize the token-manager integration again, then `webex-token refresh`".into()
                })
            }
            Error::Chain(ChainError::NothingToTry { .. }) => Some(
                "fill in `tokenManager.personalAccessToken` in the config file (a personal access token of an admin of the target org, from developer.webex.com), or add `tokenManager.integration` with `clientId` and `clientSecret` and run `webex-token setup-oauth`".into(),
            ),
            Error::Chain(ChainError::Persist(_)) => Some(
                "make sure the config file and its directory are writable".into(),
            ),
            Error::CheckFailed { hint, .. } => Some(hint.clone()),
            Error::Usage { hint, .. } => Some(hint.clone()),
            Error::DataSource(e) => ds_hint(e),
            Error::Exec { source, .. } => Some(match source.kind() {
                std::io::ErrorKind::NotFound => "check the command name and PATH".into(),
                std::io::ErrorKind::PermissionDenied => {
                    "the file is not executable (or a directory on its path is not searchable); check its permissions".into()
                }
                _ => "check that the command is a program this system can run".into(),
            }),
            Error::NotRegular { what, .. } => Some(format!(
                "point the {what} at a regular file (or at a path that does not exist yet: webex-token creates it); to turn the audit log off use --audit-log off"
            )),
            Error::Other(_) => None,
        }
    }
}

impl DsError {
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            DsError::Api { error, .. } | DsError::TokenRejected { error, .. } => Some(error),
            _ => None,
        }
    }
}

fn ds_hint(e: &DsError) -> Option<String> {
    match e {
        DsError::Api { error, what } => Some(match error.status() {
            Some(403) => "the service app needs the scopes spark-admin:datasource_read (list, show) and spark-admin:datasource_write (extend, register), and the data source must belong to this service app; after changing scopes a Full Admin must authorize the service app again in Control Hub, then run `webex-token refresh --force`".into(),
            Some(404) => "check the id with `webex-token datasources list`".into(),
            // (Only `watch --datasources` reports a 401 this way: its
            // session never refreshes. On a renewal, after the listing
            // accepted the token, the 401 is that data source's; on the
            // listing, the token's, which the watcher's check handles.)
            Some(401) if what.starts_with("PUT") => "Webex refused this data source's renewal though the service-app token works for the listing: check the data source (and that it belongs to this service app) in Control Hub".into(),
            Some(401) => "Webex rejected the service-app access token: `watch` checks it at once and refreshes it if Webex still rejects it".into(),
            Some(400) if what.starts_with("POST") => "check --schema-id (see GET /dataSources/schemas), --url (https), --audience and --subject".into(),
            Some(409) if what.starts_with("POST") => "a data source with this schema and url may exist already: see `webex-token datasources list`".into(),
            _ if error.is_transient() && what.starts_with("POST") => "the registration may have gone through anyway: check `webex-token datasources list` before trying again".into(),
            _ if error.is_transient() => transient_hint(error),
            _ => return None,
        }),
        DsError::TokenRejected { refreshed: true, .. } => Some(
            "the token was refreshed in this run and Webex still rejects it: check in Control Hub that the service app is still authorized for the org, then run `webex-token refresh --force`".into(),
        ),
        DsError::TokenRejected { refreshed: false, .. } => {
            Some("run `webex-token refresh --force`".into())
        }
        DsError::BadResponse { .. } => {
            Some("the next scheduled run will try again; check --api-base if it persists".into())
        }
        DsError::MissingField { .. } => Some(
            "look at it with `webex-token datasources show ID`; update it once in Control Hub or register it again".into(),
        ),
    }
}

fn setup_hint(s: &SetupError) -> Option<String> {
    Some(match s {
        SetupError::MissingClient { fields, .. } => format!("fill in {} in the config file: {PORTAL_HINT}", fields.join(" and ")),
        SetupError::PortInUse { port } => format!("stop whatever listens on port {port} and try again, or pick another with --port N; the integration's registered redirect URI must match it exactly (http://localhost:N/callback), so add that URI on developer.webex.com first; or use --manual or --device, which listen on no port"),
        SetupError::Bind { .. } => "pick another port with --port N (and register http://localhost:N/callback on the integration)".into(),
        SetupError::ManualNeedsPort => "use --port with the port of the registered redirect URI (3000 for http://localhost:3000/callback)".into(),
        SetupError::Listener(_) => "run `webex-token setup-oauth` again".into(),
        SetupError::TimedOut { .. } => "run `webex-token setup-oauth` again and finish signing in within --timeout (default 5m); on a machine without a browser use --no-browser with an SSH port forward, or --manual".into(),
        SetupError::Authorization { error, .. } => match error.as_str() {
            "access_denied" => "the sign-in was cancelled or the access was not granted; run `webex-token setup-oauth` again and accept the requested access".into(),
            "expired_token" | "invalid_grant" => "the code shown was not entered in time; run `webex-token setup-oauth --device` again".into(),
            "invalid_scope" => "the integration must have the scope spark:applications_token; edit it on developer.webex.com, then run `webex-token setup-oauth` again".into(),
            "server_error" | "temporarily_unavailable" => "Webex had a problem; try again in a few minutes".into(),
            _ => "check the integration on developer.webex.com (redirect URI, scopes), then run `webex-token setup-oauth` again".into(),
        },
        SetupError::ManualInput(_) => "copy the whole address from the browser's address bar after signing in (it starts with http://localhost:PORT/callback?code=) from this same run, and paste it when asked".into(),
        SetupError::Exchange(e) if e.is_transient() => "Webex or the network had a problem; run `webex-token setup-oauth` again (an authorization code can be used only once)".into(),
        SetupError::Exchange(e) => match e {
            ApiError::Rejected { status: 401, .. } => "check `clientSecret` of the integration in the config file against developer.webex.com, then run `webex-token setup-oauth` again".into(),
            _ if e.names_code("invalid_client") => "check `clientId`/`clientSecret` of the integration in the config file against developer.webex.com, then run `webex-token setup-oauth` again".into(),
            _ => "run `webex-token setup-oauth` again (an authorization code can be used only once and expires quickly); if it keeps failing, check that the integration's redirect URI matches exactly".into(),
        },
        SetupError::BadGrant(_) | SetupError::DeviceAnswer(_) => "run `webex-token setup-oauth` again".into(),
        SetupError::Device(e) if e.is_transient() => "Webex or the network had a problem; run `webex-token setup-oauth --device` again".into(),
        SetupError::Device(e) if e.status() == Some(404) => "the API base has no device authorization endpoint: check --api-base / `apiBaseUrl` (it should end in /v1, e.g. https://webexapis.com/v1) and that it supports the device grant; or use --manual".into(),
        SetupError::Device(_) => format!("the integration must allow the device grant: on developer.webex.com add these redirect URIs to it: {}; or use --manual", DEVICE_REDIRECT_URIS.join(", ")),
        SetupError::Build(_) => "check --api-base / `apiBaseUrl` (e.g. https://webexapis.com/v1)".into(),
    })
}

pub(crate) fn transient_hint(e: &ApiError) -> String {
    if let ApiError::Transient {
        reason: crate::webex::TransientReason::Redirect { .. },
        ..
    } = e
    {
        return "something other than the Webex API answered: check --api-base / WEBEX_API_BASE_URL / `apiBaseUrl` (e.g. https://webexapis.com/v1), and the proxy settings (HTTPS_PROXY) or captive portal of this network; the stored tokens were left alone".into();
    }
    match e.status() {
        Some(429) => "Webex is rate-limiting; the next scheduled run will try again".into(),
        Some(s) if s >= 500 => "Webex had a server error; try again later (quote the trackingId to Webex support if it persists)".into(),
        _ => "check the network and --api-base; the next scheduled run will try again".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Attempt;
    use crate::webex::{ErrorBody, TransientReason};
    use std::path::PathBuf;

    #[test]
    fn exit_codes_follow_the_contract() {
        let cfg = Error::Config(ConfigError::NotFound {
            path: PathBuf::from("/x"),
        });
        assert_eq!(cfg.exit_code(), 3);
        let transient = Error::Chain(ChainError::Transient {
            level: Level::ServiceRefreshToken,
            error: ApiError::Transient {
                reason: TransientReason::Timeout,
                body: None,
                attempts: 3,
            },
            attempts: vec![],
            stored_rejected: false,
        });
        assert_eq!(transient.exit_code(), 1);
        let exhausted = Error::Chain(ChainError::Exhausted {
            attempts: vec![Attempt {
                level: Level::PersonalAccessToken,
                result: AttemptResult::Rejected {
                    error: ApiError::Rejected {
                        status: 401,
                        body: ErrorBody::default(),
                    },
                },
            }],
            stored_rejected: false,
        });
        assert_eq!(exhausted.exit_code(), 4);
        assert!(
            exhausted
                .hint()
                .unwrap()
                .contains("webex-token setup-oauth")
        );
        assert_eq!(exhausted.details().len(), 1);
        let lock = Error::Store(StoreError::LockTimeout {
            path: "/x.lock".into(),
            waited: std::time::Duration::from_secs(1),
        });
        assert_eq!(lock.exit_code(), 1);
        assert_eq!(
            Error::CheckFailed {
                message: "x".into(),
                hint: "y".into()
            }
            .exit_code(),
            5
        );
        let nf = Error::Exec {
            program: "x".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(nf.exit_code(), 127);
    }

    /// One row per error class: the whole map, in one place.
    #[test]
    fn every_error_class_has_its_exit_code() {
        let api = |status| ApiError::Refused {
            status,
            body: ErrorBody::default(),
        };
        let transient = ApiError::Transient {
            reason: TransientReason::Status(503),
            body: None,
            attempts: 4,
        };
        let io = |k: std::io::ErrorKind| std::io::Error::from(k);
        let rows: Vec<(Error, u8)> = vec![
            (
                Error::Config(ConfigError::NotFound { path: "/c".into() }),
                3,
            ),
            (
                Error::Store(StoreError::LockTimeout {
                    path: "/l".into(),
                    waited: Duration::from_secs(1),
                }),
                1,
            ),
            (
                Error::Store(StoreError::Lock {
                    path: "/l".into(),
                    owner: None,
                    source: io(std::io::ErrorKind::PermissionDenied),
                }),
                3,
            ),
            (
                Error::Chain(ChainError::Transient {
                    level: Level::ServiceRefreshToken,
                    error: transient.clone(),
                    attempts: vec![],
                    stored_rejected: false,
                }),
                1,
            ),
            (
                Error::Chain(ChainError::ValidationRefused { error: api(404) }),
                3,
            ),
            (
                Error::Chain(ChainError::Exhausted {
                    attempts: vec![],
                    stored_rejected: false,
                }),
                4,
            ),
            (
                Error::Chain(ChainError::NothingToTry { attempts: vec![] }),
                3,
            ),
            (Error::Chain(ChainError::Persist("x".into())), 3),
            (
                Error::DataSource(DsError::Api {
                    what: "GET".into(),
                    error: transient.clone(),
                }),
                1,
            ),
            (
                Error::DataSource(DsError::Api {
                    what: "GET".into(),
                    error: api(403),
                }),
                3,
            ),
            (
                Error::DataSource(DsError::TokenRejected {
                    what: "GET".into(),
                    error: api(401),
                    refreshed: true,
                }),
                4,
            ),
            (
                Error::DataSource(DsError::BadResponse {
                    what: "GET".into(),
                    why: "x".into(),
                }),
                1,
            ),
            (
                Error::DataSource(DsError::MissingField {
                    id: "d".into(),
                    field: "url",
                }),
                3,
            ),
            (Error::Setup(SetupError::PortInUse { port: 3000 }), 3),
            (Error::Setup(SetupError::ManualNeedsPort), 2),
            (
                Error::Setup(SetupError::TimedOut {
                    after: Duration::from_secs(1),
                    refused: 0,
                }),
                1,
            ),
            (
                Error::Setup(SetupError::Authorization {
                    error: "access_denied".into(),
                    description: None,
                }),
                4,
            ),
            (Error::Setup(SetupError::Exchange(transient.clone())), 1),
            (Error::Setup(SetupError::Exchange(api(400))), 4),
            (Error::Setup(SetupError::Device(api(404))), 3),
            (Error::Setup(SetupError::Device(api(400))), 4),
            (Error::Setup(SetupError::BadGrant("x".into())), 1),
            (
                Error::CheckFailed {
                    message: "x".into(),
                    hint: "y".into(),
                },
                5,
            ),
            (
                Error::Exec {
                    program: "x".into(),
                    source: io(std::io::ErrorKind::NotFound),
                },
                127,
            ),
            (
                Error::Exec {
                    program: "x".into(),
                    source: io(std::io::ErrorKind::PermissionDenied),
                },
                126,
            ),
            (
                Error::NotRegular {
                    what: "env file",
                    path: "/e".into(),
                    kind: crate::fs_atomic::FileKind::Fifo,
                },
                3,
            ),
            (
                Error::Usage {
                    message: "x".into(),
                    hint: "y".into(),
                },
                2,
            ),
            (Error::Other("x".into()), 1),
        ];
        for (e, want) in rows {
            assert_eq!(e.exit_code(), want, "{e:?}");
        }
    }

    /// One row per hint that newcomers were sent the wrong way by: what the
    /// hint must say, and what it must not.
    #[test]
    fn every_hint_points_the_right_way() {
        let body = |tracking: Option<&str>| ErrorBody {
            tracking_id: tracking.map(str::to_string),
            ..ErrorBody::default()
        };
        let at = |level, status: u16, tracking: Option<&str>| Attempt {
            level,
            result: AttemptResult::Rejected {
                error: match status {
                    401 => ApiError::Rejected {
                        status,
                        body: body(tracking),
                    },
                    _ => ApiError::Refused {
                        status,
                        body: body(tracking),
                    },
                },
            },
        };
        let skipped = |level, why: &str| Attempt {
            level,
            result: AttemptResult::Skipped(why.into()),
        };
        let exhausted = |attempts| {
            Error::Chain(ChainError::Exhausted {
                attempts,
                stored_rejected: false,
            })
        };
        let pat = Level::PersonalAccessToken;
        let int = Level::IntegrationRefreshToken;
        let write = |recovery: Option<&str>| {
            Error::Store(StoreError::Write {
                what: "the env file /e/.env".into(),
                source: WriteError::Io {
                    path: "/e/.env".into(),
                    action: "write",
                    source: std::io::Error::from(std::io::ErrorKind::StorageFull),
                },
                recovery: recovery.map(PathBuf::from),
            })
        };
        type Row = (
            &'static str,
            Error,
            &'static [&'static str],
            &'static [&'static str],
        );
        let rows: Vec<Row> = vec![
            (
                "403 at level 2: the org has not authorized the service app",
                exhausted(vec![at(pat, 403, Some("t"))]),
                &["Control Hub", "targetOrgId", "refresh"],
                &["setup-oauth"],
            ),
            (
                "no integration configured",
                exhausted(vec![
                    at(pat, 401, Some("t")),
                    skipped(int, crate::chain::NO_INTEGRATION),
                ]),
                &["tokenManager.integration", "clientId", "setup-oauth"],
                &["again"],
            ),
            (
                "the integration was tried and rejected",
                exhausted(vec![at(pat, 401, Some("t")), at(int, 400, None)]),
                &["setup-oauth", "again"],
                &[],
            ),
            (
                "404 from Webex itself: the app id",
                exhausted(vec![at(pat, 404, Some("t"))]),
                &["serviceApp.appId"],
                &["setup-oauth"],
            ),
            (
                "404 from something else: the base URL",
                exhausted(vec![at(pat, 404, None)]),
                &["/v1", "--api-base"],
                &["setup-oauth"],
            ),
            (
                "validation answered 404: the base URL",
                Error::Chain(ChainError::ValidationRefused {
                    error: ApiError::Refused {
                        status: 404,
                        body: body(None),
                    },
                }),
                &["/v1"],
                &["setup-oauth"],
            ),
            (
                "nothing configured to refresh with",
                Error::Chain(ChainError::NothingToTry { attempts: vec![] }),
                &["personalAccessToken", "setup-oauth"],
                &["again"],
            ),
        ];
        for (what, e, must, must_not) in rows {
            let hint = e.hint().unwrap_or_default();
            for m in must {
                assert!(hint.contains(m), "{what}: no `{m}` in: {hint}");
            }
            for m in must_not {
                assert!(!hint.contains(m), "{what}: `{m}` in: {hint}");
            }
        }

        // A failed write names its cause once: in the message, not again
        // among the details.
        for e in [write(None), write(Some("/e/.env.recovered"))] {
            let cause = std::io::Error::from(std::io::ErrorKind::StorageFull).to_string();
            let all = format!(
                "{e}\n{}\n{}",
                e.details().join("\n"),
                e.hint().unwrap_or_default()
            );
            assert_eq!(all.matches(&cause).count(), 1, "{all}");
        }
    }
}
