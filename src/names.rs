//! Every name the outside world sees in one place: environment variables,
//! env-file keys, default file names. Documented in the README's
//! configuration reference.

/// Version of every `--json` shape and of the `/healthz` body; bumped only
/// on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Env-file key: the service-app access token.
pub const KEY_ACCESS_TOKEN: &str = "WEBEX_SERVICE_APP_ACCESS_TOKEN";
/// Env-file key: the service-app refresh token.
pub const KEY_REFRESH_TOKEN: &str = "WEBEX_SERVICE_APP_REFRESH_TOKEN";
/// Env-file key: when the access token expires (RFC 3339, UTC).
pub const KEY_ACCESS_EXPIRES_AT: &str = "WEBEX_SERVICE_APP_ACCESS_TOKEN_EXPIRES_AT";
/// Env-file key: when the refresh token expires (RFC 3339, UTC).
pub const KEY_REFRESH_EXPIRES_AT: &str = "WEBEX_SERVICE_APP_REFRESH_TOKEN_EXPIRES_AT";

/// Env var: config file path (`--config`).
pub const ENV_CONFIG: &str = "WEBEX_TOKEN_CONFIG";
/// Env var: env file path (`--env-file`).
pub const ENV_ENV_FILE: &str = "WEBEX_TOKEN_ENV_FILE";
/// Env var: API base URL (`--api-base`).
pub const ENV_API_BASE: &str = "WEBEX_API_BASE_URL";
/// Env var: lock wait (`--lock-timeout`).
pub const ENV_LOCK_TIMEOUT: &str = "WEBEX_TOKEN_LOCK_TIMEOUT";
/// Env var: HTTP request timeout (`--http-timeout`).
pub const ENV_HTTP_TIMEOUT: &str = "WEBEX_TOKEN_HTTP_TIMEOUT";
/// Env var: total time allowed for retries of one request (`--retry-budget`).
pub const ENV_RETRY_BUDGET: &str = "WEBEX_TOKEN_RETRY_BUDGET";
/// Env var: audit log path or `off` (`--audit-log`).
pub const ENV_AUDIT_LOG: &str = "WEBEX_TOKEN_AUDIT_LOG";
/// Env var: write mode (`--write-mode`).
pub const ENV_WRITE_MODE: &str = "WEBEX_TOKEN_WRITE_MODE";
/// Env var: log format (`--log-format`).
pub const ENV_LOG_FORMAT: &str = "WEBEX_TOKEN_LOG_FORMAT";
/// Env var: where tokens are kept (`--store`).
pub const ENV_STORE: &str = "WEBEX_TOKEN_STORE";
/// Env var: CA certificate for `etcds://` (`--etcd-ca`).
pub const ENV_ETCD_CA: &str = "WEBEX_TOKEN_ETCD_CA";
/// Env var: etcd user (`--etcd-user`).
pub const ENV_ETCD_USER: &str = "WEBEX_TOKEN_ETCD_USER";
/// Env var: file holding the etcd password (`--etcd-password-file`).
pub const ENV_ETCD_PASSWORD_FILE: &str = "WEBEX_TOKEN_ETCD_PASSWORD_FILE";
/// Env var: lease of the etcd lock (`--lock-ttl`).
pub const ENV_LOCK_TTL: &str = "WEBEX_TOKEN_LOCK_TTL";
/// Env var: longest wait for one etcd request (`--etcd-timeout`).
pub const ENV_ETCD_TIMEOUT: &str = "WEBEX_TOKEN_ETCD_TIMEOUT";

/// Hidden, for tests only: pretend "now" is this RFC 3339 instant.
pub const ENV_TEST_NOW: &str = "WEBEX_TOKEN_TEST_NOW";
/// Hidden, for tests only: a file holding a signed number of seconds added
/// to the wall clock, read at every look at the clock (so a test can make
/// the running agent's clock jump, as after a suspend or an NTP step).
pub const ENV_TEST_CLOCK_OFFSET_FILE: &str = "WEBEX_TOKEN_TEST_CLOCK_OFFSET_FILE";
/// Hidden, for tests only: retry at once instead of sleeping between tries.
pub const ENV_TEST_NO_RETRY_DELAY: &str = "WEBEX_TOKEN_TEST_NO_RETRY_DELAY";

/// Default config file name (relative to the working directory).
pub const DEFAULT_CONFIG: &str = "token-config.json";
/// Default env file name (relative to the working directory).
pub const DEFAULT_ENV_FILE: &str = ".env";
/// Default Webex API base URL.
pub const DEFAULT_API_BASE: &str = "https://webexapis.com/v1";
/// The scope the token-manager integration needs.
pub const SCOPE_APPLICATIONS_TOKEN: &str = "spark:applications_token";

/// Env var: the service-app client secret (a source of
/// `serviceApp.clientSecret`; see [`crate::secret_source`]).
pub const ENV_SERVICE_APP_CLIENT_SECRET: &str = "WEBEX_TOKEN_SERVICE_APP_CLIENT_SECRET";
/// Env var: the token-manager integration's client secret (a source of
/// `tokenManager.integration.clientSecret`).
pub const ENV_INTEGRATION_CLIENT_SECRET: &str = "WEBEX_TOKEN_INTEGRATION_CLIENT_SECRET";
/// The env vars above: taken out of what hooks and `exec` children inherit.
pub const SECRET_ENV_VARS: [&str; 2] =
    [ENV_SERVICE_APP_CLIENT_SECRET, ENV_INTEGRATION_CLIENT_SECRET];
/// Env var set by systemd for `LoadCredential=`/`LoadCredentialEncrypted=`.
pub const ENV_CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";
/// systemd credential names (files in `$CREDENTIALS_DIRECTORY`).
pub const CRED_SERVICE_APP_CLIENT_SECRET: &str = "service-app-client-secret";
pub const CRED_INTEGRATION_CLIENT_SECRET: &str = "integration-client-secret";
pub const CRED_ETCD_PASSWORD: &str = "etcd-password";
/// (For `notify.webexBotToken`, once the re-authorization notice reads it.)
#[allow(dead_code)]
pub const CRED_WEBEX_BOT_TOKEN: &str = "webex-bot-token";
/// Env var: the state file (`--state`).
pub const ENV_STATE: &str = "WEBEX_TOKEN_STATE";
/// Env var set by systemd for `StateDirectory=` (colon-separated list; the
/// first entry is used). Without `--state`, the state file is
/// `$STATE_DIRECTORY/state.json`.
pub const ENV_STATE_DIRECTORY: &str = "STATE_DIRECTORY";
/// Name of the state file in `$STATE_DIRECTORY`.
pub const DEFAULT_STATE_FILE: &str = "state.json";
/// Hidden, for tests only: the time-out of a `…Command` secret source
/// (default 30s).
pub const ENV_TEST_COMMAND_TIMEOUT: &str = "WEBEX_TOKEN_TEST_COMMAND_TIMEOUT";
