//! The config file (`token-config.json`): reading it into typed, validated
//! fields, and writing renewed personal/integration tokens back into it with
//! every other key (known or not) kept in place.
//!
//! Three integration layouts are read. The contract's own (and the Python
//! sample's of August 2025): `tokenManager.integration.{clientId,
//! clientSecret, refreshToken}`; and the two the sample used later, flat under
//! `tokenManager` as `oauthClientId`/`oauthClientSecret`/`oauthRefreshToken`
//! (its template since December 2025) or as `clientId`/`clientSecret`/
//! `refreshToken` (what its code reads and writes since December 2025). A file
//! set up as the sample's README says holds the template's `oauth*`
//! placeholders next to working flat keys, so several layouts may be present:
//! the one whose three values are filled in is used (flat plain first, then
//! `oauth*`, then nested), the other filled ones stay available as fallbacks
//! ([`Config::integration_candidates`]), and renewed tokens are written back
//! into the layout whose token was used, leaving the others untouched.
//!
//! Every stored expiry is tied to its token by a fingerprint written beside
//! it (`personalAccessTokenFingerprint`, `refreshTokenFingerprint`,
//! `oauthRefreshTokenFingerprint`): an expiry whose fingerprint does not match
//! the token now in the file (a pasted token, or one the Python sample wrote)
//! or that has no fingerprint is treated as unknown, never as a veto.
//!
//! The file is kept as text as far as possible: every value the program does
//! not change is written back with its original bytes (big integers, `1.0`,
//! `1e400`, nested objects and their layout), in its original key order.

use crate::clock;
use crate::fs_atomic;
use crate::names::{
    CRED_INTEGRATION_CLIENT_SECRET, CRED_SERVICE_APP_CLIENT_SECRET, CRED_WEBEX_BOT_TOKEN,
    ENV_INTEGRATION_CLIENT_SECRET, ENV_SERVICE_APP_CLIENT_SECRET,
};
use crate::secret::{ExposeSecret, SecretString, secret};
use crate::secret_source::{Origin, SourceError, Sources};
use jiff::Timestamp;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest config file read: 1 MiB (a real one is under 2 KiB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Key of the personal token's expiry and of the fingerprint tying it to
/// the token it was written for.
const PERSONAL_EXPIRES_KEY: &str = "personalAccessTokenExpiresAt";
const PERSONAL_FINGERPRINT_KEY: &str = "personalAccessTokenFingerprint";

/// The key that marks a state file as webex-token's own (its format
/// version).
const STATE_MARKER_KEY: &str = "webexTokenState";

/// Why a field has no usable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absence {
    /// The key is not in the file.
    Missing,
    /// The key is there with an empty (or all-blank) string.
    Empty,
    /// The key still holds the template's placeholder (`your_...`).
    Placeholder,
}

impl fmt::Display for Absence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Absence::Missing => "is missing",
            Absence::Empty => "is empty",
            Absence::Placeholder => "is not filled in (it still holds the template's placeholder)",
        })
    }
}

/// "`a` is missing", or for several fields one clause per kind of
/// absence: "`a`, `b` and `c` still hold the template's placeholder; `d` is
/// missing" (an unfilled template names eight fields).
fn describe_fields(fields: &[(String, Absence)]) -> String {
    if let [(k, a)] = fields {
        return format!("`{k}` {a}");
    }
    let mut clauses = Vec::new();
    for kind in [Absence::Placeholder, Absence::Missing, Absence::Empty] {
        let keys: Vec<String> = fields
            .iter()
            .filter(|(_, a)| *a == kind)
            .map(|(k, _)| format!("`{k}`"))
            .collect();
        let (names, plural) = match keys.as_slice() {
            [] => continue,
            [one] => (one.clone(), false),
            [rest @ .., last] => (format!("{} and {last}", rest.join(", ")), true),
        };
        let what = match (kind, plural) {
            (Absence::Placeholder, false) => "still holds the template's placeholder",
            (Absence::Placeholder, true) => "still hold the template's placeholders",
            (Absence::Missing, false) => "is missing",
            (Absence::Missing, true) => "are missing",
            (Absence::Empty, false) => "is empty",
            (Absence::Empty, true) => "are empty",
        };
        clauses.push(format!("{names} {what}"));
    }
    clauses.join("; ")
}

/// A config value that may be absent, remembering its dotted key for messages.
#[derive(Debug, Clone)]
pub struct Field<T> {
    /// Dotted key as it appears in the file, e.g. `serviceApp.clientId`.
    pub key: String,
    /// The value, or why there is none.
    pub value: Result<T, Absence>,
}

impl<T> Field<T> {
    /// The value when present.
    pub fn get(&self) -> Option<&T> {
        self.value.as_ref().ok()
    }

    /// The value, or a config error naming the key and the file.
    pub fn require(&self, path: &Path) -> Result<&T, ConfigError> {
        self.value.as_ref().map_err(|absence| ConfigError::Field {
            path: path.to_path_buf(),
            key: self.key.clone(),
            absence: *absence,
        })
    }

    /// True when a value is present.
    pub fn is_set(&self) -> bool {
        self.value.is_ok()
    }
}

/// Where the integration keys live in this file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationLayout {
    /// `tokenManager.integration.{clientId, clientSecret, refreshToken}`.
    Nested,
    /// `tokenManager.{clientId, clientSecret, refreshToken}` (older tool).
    FlatPlain,
    /// `tokenManager.{oauthClientId, oauthClientSecret, oauthRefreshToken}`.
    FlatOauth,
}

impl IntegrationLayout {
    fn keys(self) -> [&'static str; 4] {
        match self {
            IntegrationLayout::Nested => [
                "clientId",
                "clientSecret",
                "refreshToken",
                "refreshTokenExpiresAt",
            ],
            IntegrationLayout::FlatPlain => [
                "clientId",
                "clientSecret",
                "refreshToken",
                "refreshTokenExpiresAt",
            ],
            IntegrationLayout::FlatOauth => [
                "oauthClientId",
                "oauthClientSecret",
                "oauthRefreshToken",
                "oauthRefreshTokenExpiresAt",
            ],
        }
    }

    /// The key, beside the refresh token's expiry, holding the fingerprint
    /// of the refresh token that expiry was written for.
    fn fingerprint_key(self) -> &'static str {
        match self {
            IntegrationLayout::FlatOauth => "oauthRefreshTokenFingerprint",
            _ => "refreshTokenFingerprint",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            IntegrationLayout::Nested => "tokenManager.integration.",
            _ => "tokenManager.",
        }
    }

    /// The three keys as a person finds them in the file, for notes.
    pub fn describe(self) -> &'static str {
        match self {
            IntegrationLayout::Nested => {
                "`tokenManager.integration.{clientId, clientSecret, refreshToken}`"
            }
            IntegrationLayout::FlatPlain => "`tokenManager.{clientId, clientSecret, refreshToken}`",
            IntegrationLayout::FlatOauth => {
                "`tokenManager.{oauthClientId, oauthClientSecret, oauthRefreshToken}`"
            }
        }
    }

    /// Order of preference when several layouts are filled in: the flat
    /// keys first (the only layout the current Python sample reads and
    /// writes), then its earlier `oauth*` keys, then the nested object.
    pub const PREFERENCE: [IntegrationLayout; 3] = [
        IntegrationLayout::FlatPlain,
        IntegrationLayout::FlatOauth,
        IntegrationLayout::Nested,
    ];
}

/// `serviceApp` section.
#[derive(Debug, Clone)]
pub struct ServiceApp {
    pub app_id: Field<String>,
    pub client_id: Field<String>,
    pub client_secret: Field<SecretString>,
    pub target_org_id: Field<String>,
    /// `serviceApp.orgs`: the customer orgs that authorized the app, when
    /// the file lists several (empty: the single `targetOrgId`).
    pub orgs: Vec<OrgEntry>,
}

/// One entry of `serviceApp.orgs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgEntry {
    /// `[A-Za-z0-9_-]+`, unique in the file.
    pub name: String,
    pub target_org_id: String,
    /// `envFile` as written (relative paths are against the config file's
    /// directory); `None`: the `--env-file` path plus `.` + name.
    pub env_file: Option<PathBuf>,
}

impl ServiceApp {
    /// This app's view for one org: `targetOrgId` is that org's, so the
    /// mint call and every message about it name the org.
    pub fn for_org(&self, index: usize, target_org_id: &str) -> ServiceApp {
        ServiceApp {
            target_org_id: Field {
                key: format!("serviceApp.orgs[{index}].targetOrgId"),
                value: Ok(target_org_id.to_string()),
            },
            ..self.clone()
        }
    }

    /// Ok when all four fields are set; otherwise one error naming every
    /// field that is missing, empty or a placeholder (so one run shows all
    /// there is to fix, not one field per run).
    pub fn require_complete(&self, path: &Path) -> Result<(), ConfigError> {
        let gaps: Vec<(String, Absence)> = [
            (&self.app_id.key, self.app_id.value.as_ref().err()),
            (&self.client_id.key, self.client_id.value.as_ref().err()),
            (
                &self.client_secret.key,
                self.client_secret.value.as_ref().err(),
            ),
            (
                &self.target_org_id.key,
                self.target_org_id.value.as_ref().err(),
            ),
        ]
        .into_iter()
        .filter_map(|(k, a)| a.map(|a| (k.clone(), *a)))
        .collect();
        match gaps.len() {
            0 => Ok(()),
            _ => Err(ConfigError::Fields {
                path: path.to_path_buf(),
                fields: gaps,
            }),
        }
    }

    /// Ok when the client id and secret (all level 1 needs) are set;
    /// otherwise the error names every unset `serviceApp` field.
    pub fn require_client(&self, path: &Path) -> Result<(), ConfigError> {
        if self.client_id.is_set() && self.client_secret.is_set() {
            Ok(())
        } else {
            self.require_complete(path)
        }
    }
}

/// The token-manager integration (OAuth client that renews the personal token).
#[derive(Debug, Clone)]
pub struct Integration {
    pub layout: IntegrationLayout,
    pub client_id: Field<String>,
    pub client_secret: Field<SecretString>,
    pub refresh_token: Field<SecretString>,
    pub refresh_expires_at: Option<Timestamp>,
}

impl Integration {
    /// All three values present: level 3 can run.
    pub fn is_usable(&self) -> bool {
        self.has_client() && self.refresh_token.is_set()
    }

    /// Client id and secret present: `setup-oauth` can run with them.
    pub fn has_client(&self) -> bool {
        self.client_id.is_set() && self.client_secret.is_set()
    }

    fn filled_count(&self) -> usize {
        [
            self.client_id.is_set(),
            self.client_secret.is_set(),
            self.refresh_token.is_set(),
        ]
        .into_iter()
        .filter(|b| *b)
        .count()
    }

    /// The first field that keeps level 3 from running, for notes.
    pub fn first_gap(&self) -> Option<String> {
        [
            (&self.client_id.key, self.client_id.value.as_ref().err()),
            (
                &self.client_secret.key,
                self.client_secret.value.as_ref().err(),
            ),
            (
                &self.refresh_token.key,
                self.refresh_token.value.as_ref().err(),
            ),
        ]
        .into_iter()
        .find_map(|(k, a)| a.map(|a| format!("`{k}` {a}")))
    }
}

/// The parsed config file. Its `Debug` leaves out the raw document, which
/// holds the secrets in clear.
#[derive(Clone)]
pub struct Config {
    /// Absolute path it was read from.
    pub path: PathBuf,
    doc: RawObject,
    indent: usize,
    trailing_newline: bool,
    /// `apiBaseUrl`, when set.
    pub api_base_url: Option<String>,
    pub service_app: ServiceApp,
    /// `tokenManager.personalAccessToken`.
    pub personal_access_token: Field<SecretString>,
    /// `tokenManager.personalAccessTokenExpiresAt` (written by this program),
    /// only when `personalAccessTokenFingerprint` beside it matches the
    /// personal token now in the file; otherwise unknown.
    pub personal_expires_at: Option<Timestamp>,
    /// The integration level 3 and `setup-oauth` use, when the file has one
    /// in any layout: the first complete layout in
    /// [`IntegrationLayout::PREFERENCE`], else the first with a client id and
    /// secret, else the most filled-in one (so messages name its keys).
    pub integration: Option<Integration>,
    /// Every layout present in the file, in order of preference.
    integrations: Vec<Integration>,
    /// Things a person should know about how the file was read.
    pub notes: Vec<String>,
    /// Where each static secret came from (dotted key, source), for
    /// `status`; never the value.
    pub secret_origins: Vec<(String, Origin)>,
    /// `notify.webexBotToken` (from its first present source): the bot
    /// token `watch --notify-webex` posts with.
    pub notify_bot_token: Field<SecretString>,
    /// The state file renewed token-manager state is kept in instead of
    /// this file (`--state`), when one is set; its values, once written,
    /// stand in for the file's own.
    pub state_path: Option<PathBuf>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("api_base_url", &self.api_base_url)
            .field("service_app", &self.service_app)
            .field("personal_access_token", &self.personal_access_token)
            .field("personal_expires_at", &self.personal_expires_at)
            .field("integration", &self.integration)
            .field("integrations", &self.integrations)
            .field("notes", &self.notes)
            .field("secret_origins", &self.secret_origins)
            .field("notify_bot_token", &self.notify_bot_token)
            .field("state_path", &self.state_path)
            .finish_non_exhaustive()
    }
}

/// What level 3 or `setup-oauth` renewed, to be written into the file.
#[derive(Debug)]
pub struct PersonalUpdate {
    pub personal_access_token: SecretString,
    pub personal_expires_at: Option<Timestamp>,
    /// `None` keeps the stored integration refresh token.
    pub integration_refresh_token: Option<SecretString>,
    pub integration_refresh_expires_at: Option<Timestamp>,
    /// For `setup-oauth`: store these client credentials too (they are the
    /// ones the tokens were issued to).
    pub integration_client: Option<(String, SecretString)>,
}

/// Errors reading or using the config file (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} not found", path.display())]
    NotFound { path: PathBuf },
    #[error("config file {} could not be read: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {} is a directory, not a file", path.display())]
    IsDirectory { path: PathBuf },
    #[error("config file {} is not a regular file (it is {kind}); it was not read", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("config file {} is larger than the {cap}-byte limit (1 MiB); it was not read", path.display())]
    TooLarge { path: PathBuf, cap: u64 },
    #[error("config file {} is not valid JSON: {message} at line {line}, column {column}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config file {}: {what} must be a JSON object", path.display())]
    NotObject { path: PathBuf, what: String },
    #[error("config file {}: `{key}` must be a string", path.display())]
    NotString { path: PathBuf, key: String },
    #[error("config file {}: `{key}` holds a control character (a NUL, a line break or an escape)", path.display())]
    ControlCharacter { path: PathBuf, key: String },
    #[error("config file {}: `{key}` {absence}", path.display())]
    Field {
        path: PathBuf,
        key: String,
        absence: Absence,
    },
    #[error("config file {}: {}", path.display(), describe_fields(fields))]
    Fields {
        path: PathBuf,
        fields: Vec<(String, Absence)>,
    },
    #[error("config file {}: `{key}` {why}", path.display())]
    BadOrgs {
        path: PathBuf,
        key: String,
        why: String,
    },
    #[error("config file {}: `apiBaseUrl` is not an http(s) URL", path.display())]
    BadApiBase { path: PathBuf },
    #[error("config file {}: `apiBaseUrl`: {why}", path.display())]
    InsecureApiBase { path: PathBuf, why: String },
    #[error("config file {}: {source}", path.display())]
    SecretSource {
        path: PathBuf,
        #[source]
        source: SourceError,
    },
    #[error("config file {}: `{key}` {why}", path.display())]
    BadSecretSource {
        path: PathBuf,
        key: String,
        why: String,
    },
    #[error("config file {} is read-only ({why}), and renewed tokens (the personal access token, the integration refresh token) would be written into it", path.display())]
    ReadOnly { path: PathBuf, why: String },
    #[error("state file {}: {why}", path.display())]
    StateFile { path: PathBuf, why: String },
    #[error("config file {}: --notify-webex needs the bot token `notify.webexBotToken`, which {absence}, and none of its other sources is present (`notify.webexBotTokenFile`, `notify.webexBotTokenCommand`, the systemd credential `webex-bot-token`)", path.display())]
    NotifyBotToken { path: PathBuf, absence: Absence },
}

impl ConfigError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            ConfigError::NotFound { .. } => "copy token-config.json.template to that path and fill in `serviceApp` (and `tokenManager`), or point --config / WEBEX_TOKEN_CONFIG at your file".into(),
            ConfigError::Json { .. } | ConfigError::NotObject { .. } | ConfigError::NotString { .. } => {
                "fix the file by hand (compare it with token-config.json.template); nothing was changed".into()
            }
            ConfigError::ControlCharacter { .. } => {
                "paste the value again as plain text (copy it from its source, not from a terminal or a rich-text editor); nothing was sent or changed".into()
            }
            ConfigError::Field { key, .. } => field_hint(key),
            ConfigError::Fields { fields, .. } => match fields.first() {
                Some((key, _)) if fields.len() == 1 => field_hint(key),
                _ if fields.iter().any(|(k, _)| k.starts_with("tokenManager.")) => "fill in `serviceApp` from your service app's page on developer.webex.com (My Webex Apps → your service app; targetOrgId is the org whose Full Admin authorized it), and `tokenManager.personalAccessToken` with a personal access token of that org's admin, or the integration's `clientId` and `clientSecret` followed by `webex-token setup-oauth`".into(),
                _ => "fill them in from your service app's page on developer.webex.com (My Webex Apps → your service app); targetOrgId is the org whose Full Admin authorized it".into(),
            },
            ConfigError::BadOrgs { .. } => "each entry of `serviceApp.orgs` is {\"name\": \"acme\", \"targetOrgId\": \"...\"} with an optional \"envFile\"; names are unique and use only letters, digits, `_` and `-`".into(),
            ConfigError::BadApiBase { .. } | ConfigError::InsecureApiBase { .. } => "use e.g. https://webexapis.com/v1, or remove the key".into(),
            ConfigError::Unreadable { .. } | ConfigError::IsDirectory { .. } => {
                "check the path and its permissions".into()
            }
            ConfigError::NotRegular { .. } => {
                "point --config (or WEBEX_TOKEN_CONFIG) at the regular JSON file itself".into()
            }
            ConfigError::TooLarge { .. } => {
                "this is not a token-config.json (those are a few KiB); check --config / WEBEX_TOKEN_CONFIG".into()
            }
            ConfigError::SecretSource { .. } => "fix that source, or remove it to fall back to the next one (command, file, systemd credential, environment, inline value: the first present is used); see docs/secrets.md. Nothing was sent to Webex".into(),
            ConfigError::BadSecretSource { .. } => "a `…Command` is a JSON array: the program and its arguments, run without a shell (e.g. [\"pass\", \"show\", \"webex/client-secret\"]); a `…File` is a path (relative paths are against the config file's directory); see docs/secrets.md".into(),
            ConfigError::ReadOnly { .. } => "add --state PATH (or set WEBEX_TOKEN_STATE; under systemd, StateDirectory= sets $STATE_DIRECTORY and the state goes to $STATE_DIRECTORY/state.json) to keep renewed tokens in a writable file of their own; the config is then only read".into(),
            ConfigError::NotifyBotToken { .. } => "make a bot on developer.webex.com (My Webex Apps → Create a Bot), add it to the room, and give its token as `notify.webexBotTokenFile` (a file only this user reads), `notify.webexBotTokenCommand` (an argv array), the systemd credential `webex-bot-token` (LoadCredential=webex-bot-token:/path), or inline `notify.webexBotToken`; never on the command line. See docs/reauthorize-webex.md. Nothing was sent to Webex".into(),
            ConfigError::StateFile { .. } => "the state file is webex-token's own (0600, replaced by rename, so its directory must be writable): point --state / WEBEX_TOKEN_STATE at a file in a directory this user can write; a damaged one can be removed (the config's tokens are then used again and a new one is written)".into(),
        }
    }
}

fn field_hint(key: &str) -> String {
    let k = key.rsplit('.').next().unwrap_or(key);
    if key.starts_with("serviceApp.") {
        match k {
            "targetOrgId" => "set it to the id of the org whose Full Admin authorized the service app (Control Hub, or the service app's page on developer.webex.com lists authorizations)".into(),
            _ => format!("set `{key}` from your service app's page on developer.webex.com (My Webex Apps → your service app)"),
        }
    } else if key.contains("personalAccessToken") {
        "paste a personal access token with scope spark:applications_token, or run `webex-token setup-oauth` so the integration keeps one renewed".into()
    } else {
        format!(
            "set `{key}` from your token-manager integration's page on developer.webex.com, then run `webex-token setup-oauth`"
        )
    }
}

/// True for values copied unchanged from a template: `your_client_id`, the
/// Python sample's `YOUR_OAUTH_CLIENT_ID_HERE`, `<your-token>`, `changeme`.
pub fn is_placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.starts_with("your_")
        || v.starts_with("your-")
        || v.starts_with("<your")
        || v == "changeme"
        || (v.ends_with("_here") && v.contains("your"))
}

/// Reads the config file through the one safe capped read
/// ([`fs_atomic::read_regular_capped`]): anything that is not a regular file
/// (directory, FIFO, socket, device, or a symlink to one) is refused without
/// blocking on it, and anything over [`MAX_CONFIG_BYTES`] without reading
/// more than one byte past the cap.
fn read_config_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use fs_atomic::{FileKind, ReadError};
    match fs_atomic::read_regular_capped(path, MAX_CONFIG_BYTES) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(ConfigError::NotFound { path: path.into() }),
        Err(ReadError::NotRegular {
            kind: FileKind::Directory,
            ..
        }) => Err(ConfigError::IsDirectory { path: path.into() }),
        Err(ReadError::NotRegular { kind, .. }) => Err(ConfigError::NotRegular {
            path: path.into(),
            kind: match kind {
                FileKind::Fifo => "a FIFO",
                FileKind::Socket => "a socket",
                FileKind::CharDevice | FileKind::BlockDevice => "a device",
                _ => "not a regular file",
            },
        }),
        Err(ReadError::TooLarge { .. }) => Err(ConfigError::TooLarge {
            path: path.into(),
            cap: MAX_CONFIG_BYTES,
        }),
        Err(ReadError::Io { source, .. }) => Err(ConfigError::Unreadable {
            path: path.into(),
            source,
        }),
    }
}

/// The config bytes parsed last and what they parsed to. A run over many
/// orgs reads the config a few times per org (before the lock, under it);
/// the same bytes always parse to the same config, so a re-read that finds
/// the file unchanged skips the parse (with 1,000 orgs the file is ~150 KiB
/// and the parses were most of the run's CPU time).
///
/// It also carries the run's state file (`--state`): every read of the
/// config through it lays the state file's values over the config's own.
#[derive(Default)]
pub struct ParsedCache {
    last: std::sync::Mutex<Option<(Vec<u8>, Config)>>,
    state: Option<PathBuf>,
}

impl fmt::Debug for ParsedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes hold secrets in clear.
        f.write_str("ParsedCache(..)")
    }
}

impl ParsedCache {
    /// A cache for a run whose renewed state lives in `state` (`None`: in
    /// the config file, as before).
    pub fn with_state(state: Option<PathBuf>) -> ParsedCache {
        ParsedCache {
            last: Default::default(),
            state,
        }
    }

    /// The run's state file, if any.
    pub fn state_path(&self) -> Option<&Path> {
        self.state.as_deref()
    }
}

impl Config {
    /// The fingerprint of the personal token this config holds (`None`:
    /// none): how the agent tells a new authorization from the one whose
    /// chain failed.
    pub fn personal_token_fingerprint(&self) -> Option<String> {
        self.personal_access_token
            .get()
            .map(crate::secret::fingerprint)
    }

    /// Reads and parses the config file at `path` (already absolute).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = read_config_file(path)?;
        Self::parse(&bytes, path)
    }

    /// [`Config::load`], reusing the last parse in `cache` when the file's
    /// bytes are the ones parsed then. The file is read every time.
    /// With a state file set in `cache`, its values are laid over the
    /// config's ([`Config::overlay_state`]); the state file is read every
    /// time too.
    pub fn load_with(path: &Path, cache: &ParsedCache) -> Result<Config, ConfigError> {
        let mut config = Self::load_cached(path, cache)?;
        if let Some(state_path) = &cache.state {
            config.state_path = Some(state_path.clone());
            if let Some(state) = Config::read_state(state_path)? {
                config.overlay_state(&state);
            }
        }
        Ok(config)
    }

    fn load_cached(path: &Path, cache: &ParsedCache) -> Result<Config, ConfigError> {
        let bytes = read_config_file(path)?;
        let mut slot = cache.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, config)) = slot.as_ref()
            && *seen == bytes
            && config.path == path
        {
            return Ok(config.clone());
        }
        let config = Self::parse(&bytes, path)?;
        *slot = Some((bytes, config.clone()));
        Ok(config)
    }

    /// Parses config bytes; `path` names the file in messages. Secrets
    /// with a source besides their inline value (see
    /// [`crate::secret_source`]) are read from it.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Config, ConfigError> {
        Self::parse_with(bytes, path, true)
    }

    fn parse_with(bytes: &[u8], path: &Path, sources: bool) -> Result<Config, ConfigError> {
        let text = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
            .map_err(|e| {
                let line = bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1;
                ConfigError::Json {
                    path: path.into(),
                    line,
                    column: 0,
                    message: "bytes that are not UTF-8".into(),
                }
            })?;
        // Syntax first, for line and column; numbers are only scanned, so
        // `1e400` or a 30-digit integer are fine.
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| ConfigError::Json {
            path: path.into(),
            line: e.line(),
            column: e.column(),
            message: json_message(&e),
        })?;
        if !text.trim_start().starts_with('{') {
            return Err(ConfigError::NotObject {
                path: path.into(),
                what: "the top level".into(),
            });
        }
        let doc: RawObject = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            path: path.into(),
            line: e.line(),
            column: e.column(),
            message: json_message(&e),
        })?;
        let indent = detect_indent(text);
        let mut notes = Vec::new();
        let mut origins = Vec::new();
        let mut sourced = |obj: Option<&RawObject>,
                           prefix: &str,
                           key: &str,
                           credential: &'static str,
                           env: &'static str| {
            if !sources {
                return secret_field(obj, prefix, key, path);
            }
            sourced_secret(
                obj,
                prefix,
                key,
                (credential, Some(env)),
                path,
                &mut origins,
            )
        };

        let sa = section(&doc, "serviceApp", "`serviceApp`", path)?;
        let tm = section(&doc, "tokenManager", "`tokenManager`", path)?;
        let sa = sa.as_ref();
        let tm = tm.as_ref();
        let service_app = ServiceApp {
            app_id: plain(sa, "serviceApp.", "appId", path)?,
            client_id: plain(sa, "serviceApp.", "clientId", path)?,
            client_secret: sourced(
                sa,
                "serviceApp.",
                "clientSecret",
                CRED_SERVICE_APP_CLIENT_SECRET,
                ENV_SERVICE_APP_CLIENT_SECRET,
            )?,
            target_org_id: plain(sa, "serviceApp.", "targetOrgId", path)?,
            orgs: parse_orgs(sa, path)?,
        };
        let personal_access_token = secret_field(tm, "tokenManager.", "personalAccessToken", path)?;
        let personal_expires_at = tied_expiry(
            tm,
            "tokenManager.",
            PERSONAL_EXPIRES_KEY,
            PERSONAL_FINGERPRINT_KEY,
            personal_access_token.get(),
            "personal access token",
            &mut notes,
        );

        let nested = match tm {
            Some(tm) => section(tm, "integration", "`tokenManager.integration`", path)?,
            None => None,
        };
        let mut integrations = Vec::new();
        for layout in IntegrationLayout::PREFERENCE {
            let [id, sec, rt, rexp] = layout.keys();
            let obj = match layout {
                IntegrationLayout::Nested => match &nested {
                    Some(o) => Some(o),
                    None => continue,
                },
                _ if tm.is_some_and(|t| {
                    [id, sec, rt].iter().any(|k| t.get(k).is_some())
                        || ["File", "Command"]
                            .iter()
                            .any(|s| t.get(&format!("{sec}{s}")).is_some())
                }) =>
                {
                    tm
                }
                _ => continue,
            };
            let prefix = layout.prefix();
            let refresh_token = secret_field(obj, prefix, rt, path)?;
            let refresh_expires_at = tied_expiry(
                obj,
                prefix,
                rexp,
                layout.fingerprint_key(),
                refresh_token.get(),
                "integration refresh token",
                &mut notes,
            );
            integrations.push(Integration {
                layout,
                client_id: plain(obj, prefix, id, path)?,
                client_secret: sourced(
                    obj,
                    prefix,
                    sec,
                    CRED_INTEGRATION_CLIENT_SECRET,
                    ENV_INTEGRATION_CLIENT_SECRET,
                )?,
                refresh_token,
                refresh_expires_at,
            });
        }
        // `notify.webexBotToken`: the bot that tells a person to
        // re-authorize (`watch --notify-webex`). A static secret with the
        // others' sources, except an environment variable (the contract
        // names none for it).
        let notify = section(&doc, "notify", "`notify`", path)?;
        let notify_bot_token = if sources {
            sourced_secret(
                notify.as_ref(),
                "notify.",
                "webexBotToken",
                (CRED_WEBEX_BOT_TOKEN, None),
                path,
                &mut origins,
            )?
        } else {
            secret_field(notify.as_ref(), "notify.", "webexBotToken", path)?
        };
        let integration = choose_integration(&integrations);
        if let Some(chosen) = &integration {
            notes.extend(layout_note(chosen, &integrations));
        }

        let api_base_url = match doc.get("apiBaseUrl").map(Node::kind) {
            None | Some(Kind::Null) => None,
            Some(Kind::Str(s)) if s.trim().is_empty() => None,
            Some(Kind::Str(s)) => {
                if !(s.starts_with("http://") || s.starts_with("https://")) {
                    return Err(ConfigError::BadApiBase { path: path.into() });
                }
                if let Err(why) = crate::webex::check_base_url(s.trim().trim_end_matches('/')) {
                    return Err(ConfigError::InsecureApiBase {
                        path: path.into(),
                        why,
                    });
                }
                Some(s.trim().to_string())
            }
            Some(_) => {
                return Err(ConfigError::NotString {
                    path: path.into(),
                    key: "apiBaseUrl".into(),
                });
            }
        };
        Ok(Config {
            path: path.into(),
            doc,
            indent,
            trailing_newline: text.ends_with('\n'),
            api_base_url,
            service_app,
            personal_access_token,
            personal_expires_at,
            integration,
            integrations,
            notes,
            secret_origins: origins,
            notify_bot_token,
            state_path: None,
        })
    }

    /// The bot token for `--notify-webex`, or the exit-3 error naming the
    /// key and where else it may come from.
    pub fn require_notify_bot_token(&self) -> Result<&SecretString, ConfigError> {
        self.notify_bot_token
            .value
            .as_ref()
            .map_err(|absence| ConfigError::NotifyBotToken {
                path: self.path.clone(),
                absence: *absence,
            })
    }

    /// The integration when all its fields are present.
    pub fn usable_integration(&self) -> Option<&Integration> {
        self.integration.as_ref().filter(|i| i.is_usable())
    }

    /// Every complete integration layout (client id, secret and refresh
    /// token filled in), in order of preference; the first is
    /// [`Config::usable_integration`]. Level 3 tries the next one when Webex
    /// rejects the refresh token of the one before.
    pub fn integration_candidates(&self) -> Vec<&Integration> {
        self.integrations.iter().filter(|i| i.is_usable()).collect()
    }

    /// What `setup-oauth` authorizes with: the client id and secret of
    /// [`Config::integration`] (the first complete layout, else the first with
    /// a client id and secret, even when its refresh token is missing), or
    /// every key that keeps it from running, with the reason.
    pub fn integration_client(&self) -> Result<(String, SecretString), Vec<(String, Absence)>> {
        match &self.integration {
            Some(i) => match (i.client_id.get(), i.client_secret.get()) {
                (Some(id), Some(secret)) => Ok((id.clone(), secret.clone())),
                _ => Err([
                    (&i.client_id.key, i.client_id.value.as_ref().err()),
                    (&i.client_secret.key, i.client_secret.value.as_ref().err()),
                ]
                .into_iter()
                .filter_map(|(k, a)| a.map(|a| (k.clone(), *a)))
                .collect()),
            },
            None => Err(vec![
                ("tokenManager.integration.clientId".into(), Absence::Missing),
                (
                    "tokenManager.integration.clientSecret".into(),
                    Absence::Missing,
                ),
            ]),
        }
    }

    /// The layout [`Config::render_with`] writes `update` into: the one
    /// holding `update.integration_client` (level 3 names the client of a
    /// fallback layout that way; `setup-oauth` the client it authorized),
    /// else the one in use ([`Config::integration`]), else the nested one.
    pub fn write_layout(&self, update: &PersonalUpdate) -> IntegrationLayout {
        if let Some((id, sec)) = &update.integration_client {
            let same_id = |i: &&Integration| i.client_id.get() == Some(id);
            let same_secret = |i: &&Integration| {
                i.client_secret.get().map(|s| s.expose_secret()) == Some(sec.expose_secret())
            };
            let in_use = self.integration.as_ref().filter(|i| same_id(i));
            if let Some(i) = in_use
                .filter(same_secret)
                .or_else(|| self.integrations.iter().filter(same_id).find(same_secret))
                .or(in_use)
                .or_else(|| self.integrations.iter().find(same_id))
            {
                return i.layout;
            }
        }
        self.integration
            .as_ref()
            .map(|i| i.layout)
            .unwrap_or(IntegrationLayout::Nested)
    }

    /// The file's new bytes with `update` applied in the layout
    /// [`Config::write_layout`] picks; every other key kept in its place
    /// with its original text. The only place where config secrets are
    /// exposed for writing.
    pub fn render_with(&self, update: &PersonalUpdate) -> Vec<u8> {
        self.render_into(update, self.write_layout(update))
    }

    /// [`Config::render_with`] into a given integration layout.
    pub fn render_into(&self, update: &PersonalUpdate, layout: IntegrationLayout) -> Vec<u8> {
        let current = self.integrations.iter().find(|i| i.layout == layout);
        let mut doc = self.doc.clone();
        let tm = doc.object_mut("tokenManager");
        tm.set(
            "personalAccessToken",
            Node::Text(update.personal_access_token.expose_secret().to_string()),
        );
        set_expiry(
            tm,
            PERSONAL_EXPIRES_KEY,
            PERSONAL_FINGERPRINT_KEY,
            update.personal_expires_at,
            Some(&update.personal_access_token),
        );

        let [id_key, secret_key, rt_key, rexp_key] = layout.keys();
        let fp_key = layout.fingerprint_key();
        if update.integration_client.is_none()
            && update.integration_refresh_token.is_none()
            && update.integration_refresh_expires_at.is_none()
        {
            // Nothing for the integration: no empty object appears.
            return render(&doc, self.indent, self.trailing_newline);
        }
        let target = if layout == IntegrationLayout::Nested {
            tm.object_mut("integration")
        } else {
            tm
        };
        if let Some((id, sec)) = &update.integration_client {
            // Values already there are left as they are, byte for byte.
            if current.and_then(|i| i.client_id.get()) != Some(id) {
                target.set(id_key, Node::Text(id.clone()));
            }
            if current
                .and_then(|i| i.client_secret.get())
                .map(|s| s.expose_secret())
                != Some(sec.expose_secret())
            {
                target.set(secret_key, Node::Text(sec.expose_secret().to_string()));
            }
        }
        match &update.integration_refresh_token {
            Some(rt) => {
                target.set(rt_key, Node::Text(rt.expose_secret().to_string()));
                set_expiry(
                    target,
                    rexp_key,
                    fp_key,
                    update.integration_refresh_expires_at,
                    Some(rt),
                );
            }
            None if update.integration_refresh_expires_at.is_some() => {
                let stored = current.and_then(|i| i.refresh_token.get());
                set_expiry(
                    target,
                    rexp_key,
                    fp_key,
                    update.integration_refresh_expires_at,
                    stored,
                );
            }
            None => {}
        }
        render(&doc, self.indent, self.trailing_newline)
    }
}

/// The layout to use: see [`Config::integration`].
fn choose_integration(all: &[Integration]) -> Option<Integration> {
    all.iter()
        .find(|i| i.is_usable())
        .or_else(|| all.iter().find(|i| i.has_client()))
        .or_else(|| {
            // Most filled in; on a tie the earlier (preferred) one.
            all.iter()
                .rev()
                .max_by_key(|i| i.filled_count())
                .filter(|i| i.filled_count() > 0)
        })
        .or_else(|| all.first())
        .cloned()
}

/// Says which layout was chosen and why, when that is not obvious.
fn layout_note(chosen: &Integration, all: &[Integration]) -> Option<String> {
    if all.len() == 1 {
        return (chosen.layout != IntegrationLayout::Nested).then(|| {
            format!(
                "read the integration from the older flat layout {} (the Python sample's); it keeps working, and renewed tokens are written back in that layout",
                chosen.layout.describe()
            )
        });
    }
    let why = if chosen.is_usable() {
        if all.iter().filter(|i| i.is_usable()).count() > 1 {
            "it is filled in, and the flat keys come first (the current Python sample reads and writes only those)"
        } else {
            "it is the one filled in"
        }
    } else if chosen.has_client() {
        "it has a client id and secret (no refresh token yet: run `webex-token setup-oauth`)"
    } else {
        "none is filled in; it is the most complete"
    };
    let others: Vec<String> = all
        .iter()
        .filter(|i| i.layout != chosen.layout)
        .map(|i| match i.first_gap() {
            None => format!(
                "{} is also filled in and is tried next if Webex rejects the first refresh token",
                i.layout.describe()
            ),
            Some(gap) => format!("{} is not used: {gap}", i.layout.describe()),
        })
        .collect();
    Some(format!(
        "the integration appears in {} layouts; using {} because {why}; {}; renewed tokens are written into the layout whose token was used, the others are left untouched",
        all.len(),
        chosen.layout.describe(),
        others.join("; ")
    ))
}

/// A stored expiry, when the fingerprint beside it says it was written for
/// `token`; `None` (unknown) otherwise, with a note. Unknown costs at most one
/// request that fails; a wrong expiry would veto a working token.
fn tied_expiry(
    obj: Option<&RawObject>,
    prefix: &str,
    expires_key: &str,
    fingerprint_key: &str,
    token: Option<&SecretString>,
    what: &str,
    notes: &mut Vec<String>,
) -> Option<Timestamp> {
    let obj = obj?;
    let expires = obj
        .get(expires_key)
        .and_then(Node::as_str)
        .and_then(|s| clock::parse(&s))?;
    let token = token?;
    match obj.get(fingerprint_key).and_then(Node::as_str) {
        Some(fp) if fp.trim() == crate::secret::fingerprint(token) => Some(expires),
        Some(_) => {
            notes.push(format!(
                "`{prefix}{expires_key}` was written for an earlier {what} (`{prefix}{fingerprint_key}` does not match the one in the file now); its expiry is treated as unknown"
            ));
            None
        }
        None => {
            notes.push(format!(
                "`{prefix}{expires_key}` has no `{fingerprint_key}` beside it (an older webex-token wrote it, or it was set by hand), so it may belong to an earlier {what}; its expiry is treated as unknown until the token is next renewed"
            ));
            None
        }
    }
}

fn set_expiry(
    obj: &mut RawObject,
    expires_key: &str,
    fingerprint_key: &str,
    ts: Option<Timestamp>,
    token: Option<&SecretString>,
) {
    match (ts, token) {
        (Some(ts), Some(token)) => {
            obj.set(expires_key, Node::Text(clock::format_utc(ts)));
            obj.set_after(
                fingerprint_key,
                Node::Text(crate::secret::fingerprint(token)),
                expires_key,
            );
        }
        (Some(ts), None) => {
            obj.set(expires_key, Node::Text(clock::format_utc(ts)));
            obj.remove(fingerprint_key);
        }
        (None, _) => {
            obj.remove(expires_key);
            obj.remove(fingerprint_key);
        }
    }
}

/// A JSON object whose values keep their original text until changed, in
/// the file's key order.
#[derive(Clone, Default)]
struct RawObject(Vec<(String, Node)>);

#[derive(Clone)]
enum Node {
    /// Exactly as it was in the file.
    Raw(Box<RawValue>),
    /// An object some key of which is being changed.
    Object(RawObject),
    /// A new string value.
    Text(String),
}

/// What a value is, for reading.
enum Kind {
    Null,
    Str(String),
    Obj(RawObject),
    Other,
}

impl Node {
    fn kind(&self) -> Kind {
        match self {
            Node::Text(s) => Kind::Str(s.clone()),
            Node::Object(o) => Kind::Obj(o.clone()),
            Node::Raw(r) => {
                let t = r.get();
                match t.as_bytes().first() {
                    Some(b'"') => serde_json::from_str(t).map_or(Kind::Other, Kind::Str),
                    Some(b'{') => serde_json::from_str(t).map_or(Kind::Other, Kind::Obj),
                    Some(b'n') => Kind::Null,
                    _ => Kind::Other,
                }
            }
        }
    }

    fn as_str(&self) -> Option<String> {
        match self.kind() {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl RawObject {
    fn get(&self, key: &str) -> Option<&Node> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn set(&mut self, key: &str, node: Node) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = node,
            None => self.0.push((key.to_string(), node)),
        }
    }

    /// Like `set`, but a new key goes right after `after` when that exists.
    fn set_after(&mut self, key: &str, node: Node, after: &str) {
        if self.get(key).is_some() {
            return self.set(key, node);
        }
        match self.0.iter().position(|(k, _)| k == after) {
            Some(i) => self.0.insert(i + 1, (key.to_string(), node)),
            None => self.0.push((key.to_string(), node)),
        }
    }

    fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    /// The object under `key`, made editable; created (or replacing a
    /// non-object) when needed.
    fn object_mut(&mut self, key: &str) -> &mut RawObject {
        let existing = self.get(key).map(Node::kind);
        let obj = match existing {
            Some(Kind::Obj(o)) => o,
            _ => RawObject::default(),
        };
        if !matches!(self.get(key), Some(Node::Object(_))) {
            self.set(key, Node::Object(obj));
        }
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, Node::Object(o))) => o,
            _ => unreachable!("set to an object above"),
        }
    }
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<RawObject, M::Error> {
                let mut o = RawObject::default();
                // A repeated key keeps its first place and its last value,
                // as a JSON map reads it.
                while let Some((k, v)) = m.next_entry::<String, Box<RawValue>>()? {
                    o.set(&k, Node::Raw(v));
                }
                Ok(o)
            }
        }
        d.deserialize_map(V)
    }
}

/// Pretty-prints like `json.dump(indent=N)` and serde_json's pretty printer
/// (`": "` after keys, one member a line), with unchanged values copied as
/// they were: a file written by either comes back byte-identical except for
/// the keys that changed.
fn render(doc: &RawObject, indent: usize, trailing_newline: bool) -> Vec<u8> {
    let pad = " ".repeat(indent.clamp(1, 8));
    let mut out = String::new();
    write_object(&mut out, doc, 0, &pad);
    if trailing_newline {
        out.push('\n');
    }
    out.into_bytes()
}

fn write_object(out: &mut String, obj: &RawObject, depth: usize, pad: &str) {
    if obj.0.is_empty() {
        out.push_str("{}");
        return;
    }
    out.push('{');
    for (n, (key, node)) in obj.0.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('\n');
        out.push_str(&pad.repeat(depth + 1));
        out.push_str(&serde_json::to_string(key).expect("a string serializes"));
        out.push_str(": ");
        match node {
            Node::Raw(r) => out.push_str(r.get()),
            Node::Text(s) => out.push_str(&serde_json::to_string(s).expect("a string serializes")),
            Node::Object(o) => write_object(out, o, depth + 1, pad),
        }
    }
    out.push('\n');
    out.push_str(&pad.repeat(depth));
    out.push('}');
}

/// The indentation width the file already uses (2 when it cannot tell), so a
/// rewrite does not reformat a hand-kept file more than it must.
fn detect_indent(text: &str) -> usize {
    text.lines()
        .skip(1)
        .find_map(|l| {
            let n = l.len() - l.trim_start_matches(' ').len();
            (n > 0 && !l.trim().is_empty()).then_some(n)
        })
        .unwrap_or(2)
}

fn json_message(e: &serde_json::Error) -> String {
    // serde_json appends " at line X column Y"; we print those ourselves.
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// `serviceApp.orgs`: absent or null is no list; otherwise a non-empty
/// array of `{name, targetOrgId, envFile?}` with unique, plain names.
fn parse_orgs(sa: Option<&RawObject>, path: &Path) -> Result<Vec<OrgEntry>, ConfigError> {
    let bad = |key: String, why: &str| ConfigError::BadOrgs {
        path: path.into(),
        key,
        why: why.into(),
    };
    let Some(node) = sa.and_then(|o| o.get("orgs")) else {
        return Ok(Vec::new());
    };
    let value: Value = match node {
        Node::Raw(r) => serde_json::from_str(r.get())
            .map_err(|_| bad("serviceApp.orgs".into(), "is not valid JSON"))?,
        _ => return Err(bad("serviceApp.orgs".into(), "must be an array")),
    };
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(bad("serviceApp.orgs".into(), "must be an array")),
    };
    if items.is_empty() {
        return Err(bad(
            "serviceApp.orgs".into(),
            "is empty; list at least one org, or remove it and use `serviceApp.targetOrgId`",
        ));
    }
    let mut orgs: Vec<OrgEntry> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = |k: &str| format!("serviceApp.orgs[{i}]{k}");
        let Value::Object(obj) = item else {
            return Err(bad(key(""), "must be a JSON object"));
        };
        let text = |k: &str| -> Result<Option<String>, ConfigError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() || is_placeholder(s) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
                Some(_) => Err(bad(key(&format!(".{k}")), "must be a string")),
            }
        };
        let name = text("name")?.ok_or_else(|| bad(key(".name"), "is not set"))?;
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(bad(
                key(".name"),
                "may hold only letters, digits, `_` and `-`",
            ));
        }
        if orgs.iter().any(|o| o.name == name) {
            return Err(bad(key(".name"), &format!("repeats the name `{name}`")));
        }
        let target_org_id =
            text("targetOrgId")?.ok_or_else(|| bad(key(".targetOrgId"), "is not set"))?;
        if let Some(j) = orgs.iter().position(|o| o.target_org_id == target_org_id) {
            // One org's token must never be stored for, or handed to, another.
            return Err(bad(
                key(".targetOrgId"),
                &format!(
                    "repeats the targetOrgId of serviceApp.orgs[{j}] (org `{}`): two entries would share one org's tokens",
                    orgs[j].name
                ),
            ));
        }
        let env_file = text("envFile")?.map(PathBuf::from);
        orgs.push(OrgEntry {
            name,
            target_org_id,
            env_file,
        });
    }
    Ok(orgs)
}

fn section(
    obj: &RawObject,
    key: &str,
    what: &str,
    path: &Path,
) -> Result<Option<RawObject>, ConfigError> {
    match obj.get(key).map(Node::kind) {
        None | Some(Kind::Null) => Ok(None),
        Some(Kind::Obj(o)) => Ok(Some(o)),
        Some(_) => Err(ConfigError::NotObject {
            path: path.into(),
            what: what.into(),
        }),
    }
}

fn raw_string(
    obj: Option<&RawObject>,
    prefix: &str,
    key: &str,
    path: &Path,
) -> Result<Result<String, Absence>, ConfigError> {
    match obj.and_then(|o| o.get(key)).map(Node::kind) {
        None | Some(Kind::Null) => Ok(Err(Absence::Missing)),
        Some(Kind::Str(s)) if s.trim().is_empty() => Ok(Err(Absence::Empty)),
        Some(Kind::Str(s)) if is_placeholder(&s) => Ok(Err(Absence::Placeholder)),
        // A NUL or an escape cannot be sent in a header or a form, and is
        // never part of a real value: a paste gone wrong, said as such.
        Some(Kind::Str(s)) if s.trim().chars().any(char::is_control) => {
            Err(ConfigError::ControlCharacter {
                path: path.into(),
                key: format!("{prefix}{key}"),
            })
        }
        Some(Kind::Str(s)) => Ok(Ok(s.trim().to_string())),
        Some(_) => Err(ConfigError::NotString {
            path: path.into(),
            key: format!("{prefix}{key}"),
        }),
    }
}

fn plain(
    obj: Option<&RawObject>,
    prefix: &str,
    key: &str,
    path: &Path,
) -> Result<Field<String>, ConfigError> {
    Ok(Field {
        key: format!("{prefix}{key}"),
        value: raw_string(obj, prefix, key, path)?,
    })
}

fn secret_field(
    obj: Option<&RawObject>,
    prefix: &str,
    key: &str,
    path: &Path,
) -> Result<Field<SecretString>, ConfigError> {
    Ok(Field {
        key: format!("{prefix}{key}"),
        value: raw_string(obj, prefix, key, path)?.map(secret),
    })
}

/// A static secret: from its first present source (see
/// [`crate::secret_source`]): the sibling `<key>Command` (argv array) and
/// `<key>File` (path, relative to the config's directory) in the same
/// object, the systemd credential, the environment variable, else the
/// inline value. Records where it came from in `origins`. (Also for
/// `notify.webexBotToken`: credential `webex-bot-token`, no env var.)
fn sourced_secret(
    obj: Option<&RawObject>,
    prefix: &str,
    key: &str,
    (credential, env): (&'static str, Option<&'static str>),
    path: &Path,
    origins: &mut Vec<(String, Origin)>,
) -> Result<Field<SecretString>, ConfigError> {
    let mut field = secret_field(obj, prefix, key, path)?;
    let bad = |k: &str, why: &str| ConfigError::BadSecretSource {
        path: path.into(),
        key: format!("{prefix}{k}"),
        why: why.into(),
    };
    let file_key = format!("{key}File");
    let file = match raw_string(obj, prefix, &file_key, path)? {
        Ok(p) => {
            let dir = path.parent().unwrap_or(Path::new("/"));
            Some((format!("{prefix}{file_key}"), dir.join(p)))
        }
        Err(_) => None,
    };
    let command_key = format!("{key}Command");
    let command = match obj.and_then(|o| o.get(&command_key)) {
        None => None,
        Some(node) => match node.kind() {
            Kind::Null => None,
            Kind::Str(_) => {
                return Err(bad(
                    &command_key,
                    "must be an array of strings (the program and its arguments; no shell runs it), not one string",
                ));
            }
            _ => {
                let value: Value = match node {
                    Node::Raw(r) => serde_json::from_str(r.get()).unwrap_or(Value::Null),
                    _ => Value::Null,
                };
                let argv: Option<Vec<String>> = value.as_array().and_then(|items| {
                    items
                        .iter()
                        .map(|v| v.as_str().map(str::to_string))
                        .collect()
                });
                match argv {
                    Some(argv) if argv.first().is_some_and(|p| !p.trim().is_empty()) => {
                        Some((format!("{prefix}{command_key}"), argv))
                    }
                    _ => {
                        return Err(bad(
                            &command_key,
                            "must be a non-empty array of strings: the program and its arguments",
                        ));
                    }
                }
            }
        },
    };
    let sources = Sources {
        key: field.key.clone(),
        command,
        file,
        credential: Some(credential),
        env,
    };
    match sources.resolve() {
        Ok(Some((value, origin))) => {
            field.value = Ok(value);
            origins.push((field.key.clone(), origin));
        }
        Ok(None) => {
            if field.value.is_ok() {
                // Inline: already on the redaction list (`secret` put it there).
                origins.push((field.key.clone(), Origin::Inline));
            }
        }
        Err(source) => {
            return Err(ConfigError::SecretSource {
                path: path.into(),
                source,
            });
        }
    }
    Ok(field)
}

impl Config {
    /// The state file at `path` as a config holding only renewed state
    /// (`None` while it does not exist: the config's own values are used,
    /// and the first save writes it). Its layout is the config's own
    /// (`tokenManager.personalAccessToken…`, `tokenManager.integration.
    /// {clientId, refreshToken…}`), with no client secret in it.
    pub fn read_state(path: &Path) -> Result<Option<Config>, ConfigError> {
        let state_err = |why: String| ConfigError::StateFile {
            path: path.into(),
            why,
        };
        let bytes = match read_config_file(path) {
            Ok(b) => b,
            Err(ConfigError::NotFound { .. }) => return Ok(None),
            Err(ConfigError::TooLarge { cap, .. }) => {
                return Err(state_err(format!("is larger than {cap} bytes")));
            }
            Err(ConfigError::NotRegular { kind, .. }) => {
                return Err(state_err(format!(
                    "is not a regular file (it is {kind}); it was not read"
                )));
            }
            Err(ConfigError::IsDirectory { .. }) => {
                return Err(state_err("is a directory, not a file".into()));
            }
            Err(ConfigError::Unreadable { source, .. }) => {
                return Err(state_err(format!("could not be read: {source}")));
            }
            Err(e) => return Err(e),
        };
        match Config::parse_with(&bytes, path, false) {
            // A file of another program (`state.json` is a common name in a
            // shared `$STATE_DIRECTORY`) is neither read nor overwritten.
            Ok(c) if c.doc.get(STATE_MARKER_KEY).is_none() => Err(state_err(format!(
                "is not a webex-token state file (it has no `{STATE_MARKER_KEY}` key); it was not read, and will not be written"
            ))),
            Ok(c) => Ok(Some(c)),
            Err(ConfigError::Json {
                line,
                column,
                message,
                ..
            }) => Err(state_err(format!(
                "is not valid JSON: {message} at line {line}, column {column}"
            ))),
            Err(e) => Err(state_err(
                e.to_string()
                    .split_once(": ")
                    .map(|(_, why)| why.to_string())
                    .unwrap_or_else(|| e.to_string()),
            )),
        }
    }

    /// Lays a state file's values over this config's: its personal token
    /// (with its expiry) and its integration refresh token (with its
    /// expiry) for the integration it names by client id (else the one in
    /// use). What the state file lacks stays as the config has it.
    pub fn overlay_state(&mut self, state: &Config) {
        if let Ok(pat) = &state.personal_access_token.value {
            self.personal_access_token.value = Ok(pat.clone());
            self.personal_expires_at = state.personal_expires_at;
        }
        if let Some(si) = &state.integration
            && let Some(rt) = si.refresh_token.get()
        {
            let in_use = self.integration.as_ref().map(|i| i.layout);
            let named = si.client_id.get();
            let any_named = named.is_some_and(|id| {
                self.integrations
                    .iter()
                    .any(|i| i.client_id.get() == Some(id))
            });
            for i in &mut self.integrations {
                let ours = match named {
                    Some(id) if any_named => i.client_id.get() == Some(id),
                    _ => Some(i.layout) == in_use,
                };
                if ours {
                    i.refresh_token.value = Ok(rt.clone());
                    i.refresh_expires_at = si.refresh_expires_at;
                }
            }
            self.integration = choose_integration(&self.integrations);
        }
        self.notes.extend(state.notes.iter().cloned());
    }

    /// The state file's new bytes (`self` is the state file as read, or an
    /// empty one): `update` applied to what `effective` (the config with
    /// the state laid over it, read under the lock) holds now, so the
    /// first save carries over the config's tokens once and later ones
    /// keep what the update leaves alone. Never a client secret.
    pub fn render_state(&self, update: &PersonalUpdate, effective: &Config) -> Vec<u8> {
        let layout = effective.write_layout(update);
        let current = effective.integrations.iter().find(|i| i.layout == layout);
        let client_id = update
            .integration_client
            .as_ref()
            .map(|(id, _)| id.clone())
            .or_else(|| current.and_then(|i| i.client_id.get().cloned()));
        let (rt, rt_expires) = match &update.integration_refresh_token {
            Some(rt) => (Some(rt.clone()), update.integration_refresh_expires_at),
            None => (
                current.and_then(|i| i.refresh_token.get().cloned()),
                update
                    .integration_refresh_expires_at
                    .or(current.and_then(|i| i.refresh_expires_at)),
            ),
        };
        let full = PersonalUpdate {
            personal_access_token: update.personal_access_token.clone(),
            personal_expires_at: update.personal_expires_at,
            integration_refresh_expires_at: rt.as_ref().and(rt_expires),
            integration_refresh_token: rt,
            integration_client: None,
        };
        let mut state = self.clone();
        state.integrations.clear();
        state.integration = None;
        if state.doc.get(STATE_MARKER_KEY).is_none() {
            let one = RawValue::from_string("1".into()).expect("`1` is JSON");
            state.doc.set(STATE_MARKER_KEY, Node::Raw(one));
        }
        if full.integration_refresh_token.is_some()
            && let Some(id) = client_id
        {
            state
                .doc
                .object_mut("tokenManager")
                .object_mut("integration")
                .set("clientId", Node::Text(id));
        }
        state.render_into(&full, IntegrationLayout::Nested)
    }

    /// An empty state file (`{}`), to write the first one from.
    pub fn empty_state(path: &Path) -> Config {
        Config::parse_with(b"{}\n", path, false).expect("`{}` is a valid config")
    }
}

/// What `webex-token init` puts in a new config file; `None` leaves the
/// template's placeholder, which every reader of the file treats as unset.
#[derive(Default)]
pub struct NewConfig {
    pub app_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub target_org_id: Option<String>,
    pub personal_access_token: Option<SecretString>,
}

impl NewConfig {
    /// The keys still unset, as dotted keys, in file order.
    pub fn unset(&self) -> Vec<&'static str> {
        [
            ("serviceApp.appId", self.app_id.is_none()),
            ("serviceApp.clientId", self.client_id.is_none()),
            ("serviceApp.clientSecret", self.client_secret.is_none()),
            ("serviceApp.targetOrgId", self.target_org_id.is_none()),
            (
                "tokenManager.personalAccessToken",
                self.personal_access_token.is_none(),
            ),
        ]
        .into_iter()
        .filter_map(|(k, unset)| unset.then_some(k))
        .collect()
    }

    /// The file's text: the template's shape (without the integration,
    /// which `setup-oauth` needs only once someone adds its client), two
    /// spaces of indent, a final newline. The one place `init` exposes the
    /// secrets it was given: they are written, as every config write does.
    pub fn render(&self) -> String {
        let text = |v: &Option<String>, placeholder: &str| {
            serde_json::Value::String(v.clone().unwrap_or_else(|| placeholder.into()))
        };
        let secret = |v: &Option<SecretString>, placeholder: &str| {
            serde_json::Value::String(
                v.as_ref()
                    .map(|s| s.expose_secret().to_string())
                    .unwrap_or_else(|| placeholder.into()),
            )
        };
        let doc = serde_json::json!({
            "serviceApp": {
                "appId": text(&self.app_id, "your_service_app_id"),
                "clientId": text(&self.client_id, "your_service_app_client_id"),
                "clientSecret": secret(&self.client_secret, "your_service_app_client_secret"),
                "targetOrgId": text(&self.target_org_id, "your_target_org_id"),
            },
            "tokenManager": {
                "personalAccessToken": secret(&self.personal_access_token, "your_personal_access_token"),
            }
        });
        let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests;
