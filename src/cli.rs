//! The command line, as clap types only. Nothing here reads files or the
//! network; `settings` turns these into what the commands use.

use crate::clock::parse_duration;
use crate::names::*;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Keeps Webex service-app tokens working without a person in the loop.
///
/// Walks the refresh chain (service-app refresh token → personal access
/// token → OAuth integration refresh) and keeps the tokens in an env file.
#[derive(Debug, Parser)]
// The exit-code footer of this page and the pointer to the global flags on
// every subcommand's page are added by `output::help::command` (from the
// one exit-code table in error.rs), which is the command the parser uses.
#[command(name = "webex-token", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted before or after the subcommand.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Config file (service app and token-manager credentials)
    #[arg(long, global = true, env = ENV_CONFIG, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Env file holding the service-app tokens
    #[arg(long, global = true, env = ENV_ENV_FILE, value_name = "PATH", default_value = DEFAULT_ENV_FILE)]
    pub env_file: PathBuf,

    /// Webex API base URL [default: config `apiBaseUrl`, else https://webexapis.com/v1]
    #[arg(long, global = true, env = ENV_API_BASE, value_name = "URL", value_parser = parse_base_url)]
    pub api_base: Option<String>,

    /// More logging on stderr (-v: debug, -vv: trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Print nothing on success (errors still go to stderr)
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print one JSON object on stdout instead of human text
    #[arg(long, global = true)]
    pub json: bool,

    /// How long to wait for another run holding the env file's lock
    #[arg(long, global = true, env = ENV_LOCK_TIMEOUT, value_name = "DURATION", default_value = "2m", value_parser = parse_nonzero_duration)]
    pub lock_timeout: Duration,

    /// How files are replaced: atomic (rename) or in-place (single-file bind mounts only)
    #[arg(long, global = true, env = ENV_WRITE_MODE, value_enum, default_value_t = WriteModeArg::Atomic)]
    pub write_mode: WriteModeArg,

    /// State file for renewed tokens, so the config can be read-only [default: $STATE_DIRECTORY/state.json under systemd, else the config file]
    #[arg(long, global = true, env = ENV_STATE, value_name = "PATH")]
    pub state: Option<PathBuf>,

    /// Audit log (JSON lines) path, or `off` [default: beside the env file]
    #[arg(long, global = true, env = ENV_AUDIT_LOG, value_name = "PATH|off")]
    pub audit_log: Option<String>,

    /// Log format on stderr
    #[arg(long, global = true, env = ENV_LOG_FORMAT, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Timeout for one HTTP request to Webex
    #[arg(long, global = true, env = ENV_HTTP_TIMEOUT, value_name = "DURATION", default_value = "30s", value_parser = parse_nonzero_duration)]
    pub http_timeout: Duration,

    /// Total time the retries of one request may take
    #[arg(long, global = true, env = ENV_RETRY_BUDGET, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub retry_budget: Duration,

    /// Work on this org of `serviceApp.orgs` (name or targetOrgId; repeatable)
    #[arg(long = "org", global = true, value_name = "NAME|ORGID")]
    pub orgs: Vec<String>,

    /// Work on every org of `serviceApp.orgs` (the default of refresh and status)
    #[arg(long, global = true, conflicts_with = "orgs")]
    pub all_orgs: bool,

    /// Requests in flight at once over orgs and data sources (1 to 64)
    #[arg(long, global = true, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Where tokens are kept: `files`, or `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` shared by a fleet (`etcds://` for TLS)
    #[arg(long, global = true, env = ENV_STORE, value_name = "URL", default_value = "files", value_parser = parse_store, help_heading = "Shared store (several hosts)")]
    pub store: StoreArg,

    /// CA certificate (PEM) that signed the etcd members' certificates (`etcds://`)
    #[arg(long, global = true, env = ENV_ETCD_CA, value_name = "PATH", help_heading = "Shared store (several hosts)")]
    pub etcd_ca: Option<PathBuf>,

    /// etcd user (password from --etcd-password-file, or the systemd credential `etcd-password`)
    #[arg(long, global = true, env = ENV_ETCD_USER, value_name = "NAME", help_heading = "Shared store (several hosts)")]
    pub etcd_user: Option<String>,

    /// File holding the etcd user's password
    #[arg(long, global = true, env = ENV_ETCD_PASSWORD_FILE, value_name = "PATH", requires = "etcd_user", help_heading = "Shared store (several hosts)")]
    pub etcd_password_file: Option<PathBuf>,

    /// Lease of the etcd lock: how long a host that stops answering keeps it
    #[arg(long, global = true, env = ENV_LOCK_TTL, value_name = "DURATION", default_value = "30s", value_parser = parse_lock_ttl, help_heading = "Shared store (several hosts)")]
    pub lock_ttl: Duration,

    /// Longest wait for one etcd request before the store counts as unreachable
    #[arg(long, global = true, env = ENV_ETCD_TIMEOUT, value_name = "DURATION", default_value = "5s", value_parser = parse_nonzero_duration, help_heading = "Shared store (several hosts)")]
    pub etcd_timeout: Duration,
}

/// `--store`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreArg {
    Files,
    Etcd {
        tls: bool,
        /// `host:port` of each member.
        endpoints: Vec<String>,
        /// Key prefix, no slashes at either end.
        prefix: String,
    },
}

fn parse_store(v: &str) -> Result<StoreArg, String> {
    const SHAPE: &str =
        "expected `files` or etcd://HOST:PORT[,HOST:PORT...]/PREFIX (etcds:// for TLS)";
    if v == "files" {
        return Ok(StoreArg::Files);
    }
    let (tls, rest) = if let Some(r) = v.strip_prefix("etcd://") {
        (false, r)
    } else if let Some(r) = v.strip_prefix("etcds://") {
        (true, r)
    } else {
        return Err(SHAPE.into());
    };
    let (hosts, prefix) = rest
        .split_once('/')
        .ok_or_else(|| format!("no /PREFIX after the endpoints: {SHAPE}"))?;
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return Err(format!("the /PREFIX is empty: {SHAPE}"));
    }
    if prefix
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '%')
    {
        return Err(format!(
            "the prefix `{prefix}` may hold letters, digits, `/`, `.`, `_` and `-`"
        ));
    }
    let mut endpoints = Vec::new();
    for h in hosts.split(',') {
        let (host, port) = h
            .rsplit_once(':')
            .ok_or_else(|| format!("`{h}` has no :PORT: {SHAPE}"))?;
        let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_[]:".contains(c));
        if !port_ok || !host_ok {
            return Err(format!("`{h}` is not HOST:PORT: {SHAPE}"));
        }
        endpoints.push(h.to_string());
    }
    Ok(StoreArg::Etcd {
        tls,
        endpoints,
        prefix: prefix.to_string(),
    })
}

/// etcd leases are whole seconds, at least a few of them (shorter ones
/// lapse between keep-alives on a busy host), and at most an hour: the TTL
/// is how long a host that died holding the lock keeps the fleet waiting,
/// and a value past what etcd grants would only fail later, as an outage.
fn parse_lock_ttl(v: &str) -> Result<Duration, String> {
    const MAX: Duration = Duration::from_secs(3600);
    let d = parse_duration(v)?;
    if d < Duration::from_secs(2) || d > MAX || d.subsec_nanos() != 0 {
        return Err("a whole number of seconds from 2s to 1h (e.g. 30s)".into());
    }
    Ok(d)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteModeArg {
    Atomic,
    InPlace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a config file: from flags, or by asking on a terminal (never overwrites)
    #[command(after_help = "Examples:
  webex-token init                       asks for each value (secrets are not echoed)
  webex-token init --app-id ID --client-id ID --target-org-id ORGID
  webex-token --config /etc/webex-token/token-config.json init")]
    Init(InitArgs),
    /// Make sure the service-app access token works; refresh it through the chain if not
    #[command(after_help = "Examples:
  webex-token refresh                    refresh only if needed (cron, timers)
  webex-token refresh --dry-run          say what would be done; change nothing
  webex-token refresh --force --org acme refresh one org's token now")]
    Refresh(RefreshArgs),
    /// Report each token, its expiry and the refresh levels available (never writes)
    #[command(after_help = "Examples:
  webex-token status                     what is stored, and when it expires
  webex-token status --online            also ask Webex whether the token works
  webex-token status --check 7d          exit 5 if a person is needed within a week
  webex-token status --wide              with several orgs: each one's full report")]
    Status(StatusArgs),
    /// Print a working access token alone on stdout, refreshing first if needed
    #[command(after_help = "Examples:
  curl -H \"Authorization: Bearer $(webex-token token)\" https://webexapis.com/v1/dataSources
  webex-token token --validate --org acme")]
    Token(TokenArgs),
    /// Run a command with a working token in its environment
    #[command(after_help = "Examples:
  webex-token exec -- ./bot --serve      the bot reads WEBEX_SERVICE_APP_ACCESS_TOKEN
  webex-token exec --min-valid 4h -- python3 job.py")]
    Exec(ExecArgs),
    /// BYODS data sources: list them, renew their tokens, register new ones
    #[command(name = "datasources", visible_alias = "ds")]
    #[command(after_help = "Examples:
  webex-token datasources list
  webex-token ds extend --all --dry-run")]
    Datasources(DatasourcesArgs),
    /// One-time browser authorization of the token-manager integration (OAuth, PKCE)
    #[command(after_help = "Examples:
  webex-token setup-oauth                opens a browser; callback on localhost:3000
  webex-token setup-oauth --no-browser   over SSH: ssh -L 3000:localhost:3000 HOST
  webex-token setup-oauth --device       enter a short code on any device")]
    SetupOauth(SetupOauthArgs),
    /// Keep the tokens working for as long as it runs (a service or sidecar)
    #[command(after_help = "Examples:
  webex-token watch --health 127.0.0.1:9464
  webex-token watch --datasources --on-refresh 'systemctl reload my-bot'
  webex-token watch --once               one tick, as cron would run it")]
    Watch(WatchArgs),
    /// Probe a running `watch --health`: exit 0 when its GET /healthz answers 200, else 1
    #[command(after_help = "Examples:
  webex-token healthcheck                probes 127.0.0.1:9464
  webex-token healthcheck --health 127.0.0.1:9500 --timeout 2s")]
    Healthcheck(HealthcheckArgs),
    /// Print a shell completion script
    #[command(after_help = "Examples:
  webex-token completions bash > ~/.local/share/bash-completion/completions/webex-token
  webex-token completions zsh > ~/.zfunc/_webex-token    (with fpath+=(~/.zfunc))
  webex-token completions fish > ~/.config/fish/completions/webex-token.fish")]
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, or write one page per command
    #[command(after_help = "Examples:
  webex-token man | man -l -
  webex-token man refresh | man -l -
  webex-token man --dir /usr/local/share/man/man1")]
    Man(ManArgs),
}

/// Secrets are never flags (they would show in `ps` and shell history):
/// `init` asks for them on a terminal, or leaves them to be filled in.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The service app's id (`serviceApp.appId`, developer.webex.com → My Webex Apps)
    #[arg(long, value_name = "ID")]
    pub app_id: Option<String>,
    /// The service app's client id (`serviceApp.clientId`)
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// The org whose Full Admin authorized the service app (`serviceApp.targetOrgId`)
    #[arg(long, value_name = "ORGID")]
    pub target_org_id: Option<String>,
    /// Ask nothing, even on a terminal: what no flag gave is left to fill in
    #[arg(long)]
    pub no_input: bool,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// Refresh even if the access token works
    #[arg(long)]
    pub force: bool,
    /// Say what would be done; write nothing and mint nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Mint a new token pair with level 2 now, skipping level 1 (replaces a
    /// service-app refresh token that is about to lapse)
    #[arg(long)]
    pub mint: bool,
    /// Refresh when the access token expires within this window
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub min_valid: Duration,
    /// Mint a new token pair (level 2) when the stored service-app refresh
    /// token expires within this window, while it still works
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub rt_min_valid: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Refresh when the access token expires within this window
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub min_valid: Duration,
    /// Validate the access token with Webex this often (a 401 refreshes)
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_positive_duration)]
    pub check_interval: Duration,
    /// Mint a new token pair when the service-app refresh token expires within this window
    #[arg(long, value_name = "DURATION", default_value = "14d", value_parser = parse_duration)]
    pub rt_min_valid: Duration,
    /// Run this `sh -c` command after each saved change; repeatable
    #[arg(long, value_name = "CMD")]
    pub on_refresh: Vec<String>,
    /// Kill a hook still running after this long
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_positive_duration)]
    pub hook_timeout: Duration,
    /// Serve GET /healthz and /metrics here (e.g. 127.0.0.1:9464)
    #[arg(long, value_name = "ADDR")]
    pub health: Option<std::net::SocketAddr>,
    /// Allow --health on an address other than loopback
    #[arg(long, requires = "health")]
    pub health_allow_remote: bool,
    /// One tick, then exit with `refresh`'s exit codes
    #[arg(long)]
    pub once: bool,
    /// Also renew data-source tokens (as `ds extend --all`)
    #[arg(long)]
    pub datasources: bool,
    /// With --datasources: renew a data-source token that expires within this window
    #[arg(long, value_name = "DURATION", default_value = "6h", value_parser = parse_duration, requires = "datasources")]
    pub ds_min_valid: Duration,
    /// Webex room id or email told when someone must re-authorize
    // (The bot token is `notify.webexBotToken` or its …File, …Command or
    // systemd credential `webex-bot-token`; never a flag value.)
    #[arg(long, value_name = "ROOM_ID|EMAIL", value_parser = parse_recipient)]
    pub notify_webex: Option<crate::webex::Recipient>,
    /// Ask for re-authorization this long; 0: never
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_reauth_window)]
    pub reauth_window: Duration,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Also validate the access token against GET {api-base}/dataSources
    #[arg(long)]
    pub online: bool,
    /// Exit 5 if a credential that cannot renew itself expires within DURATION
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub check: Option<Duration>,
    /// With several orgs: the full report of each instead of one row per org
    #[arg(long)]
    pub wide: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Check the token against Webex even when its stored expiry is far away
    #[arg(long)]
    pub validate: bool,
    /// Refresh when the access token expires within this window
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub min_valid: Duration,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Refresh when the access token expires within this window
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub min_valid: Duration,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<std::ffi::OsString>,
}

/// The longest data-source token lifetime Webex accepts (24 h), and the default.
pub const MAX_TOKEN_LIFETIME_MINUTES: u32 = 1440;

#[derive(Debug, Args)]
pub struct DatasourcesArgs {
    #[command(subcommand)]
    pub command: DatasourcesCommand,
}

#[derive(Debug, Subcommand)]
pub enum DatasourcesCommand {
    /// List the service app's data sources with their token expiry
    #[command(after_help = "Examples:
  webex-token datasources list
  webex-token --json datasources list --org acme
  webex-token datasources list --wide    with several orgs: every field of each")]
    List(DsListArgs),
    /// Show one data source
    #[command(after_help = "Examples:
  webex-token datasources show 4a1d3c2e-0000-4000-8000-000000000000
  webex-token --json ds show ID")]
    Show(DsShowArgs),
    /// Renew the tokens of data sources that expire soon (PUT with a fresh nonce)
    #[command(after_help = "Examples:
  webex-token datasources extend --all            renew those expiring within 6h
  webex-token datasources extend --all --dry-run  say which would be renewed
  webex-token datasources extend ID --lifetime 720")]
    Extend(DsExtendArgs),
    /// Register a new data source (the nonce is generated)
    #[command(after_help = "Examples:
  webex-token datasources register --schema-id UUID --url https://bot.example.com/data \\
      --audience my-app --subject my-data")]
    Register(DsRegisterArgs),
}

impl DatasourcesCommand {
    /// The `--json` and error name of the subcommand.
    pub fn name(&self) -> &'static str {
        match self {
            DatasourcesCommand::List(_) => "datasources list",
            DatasourcesCommand::Show(_) => "datasources show",
            DatasourcesCommand::Extend(_) => "datasources extend",
            DatasourcesCommand::Register(_) => "datasources register",
        }
    }
}

#[derive(Debug, Args)]
pub struct DsListArgs {
    /// With several orgs: every data source's fields instead of one row each
    #[arg(long)]
    pub wide: bool,
}

#[derive(Debug, Args)]
pub struct DsShowArgs {
    /// The data source's id
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["ids", "all"])))]
pub struct DsExtendArgs {
    /// Data sources to renew
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// Renew every data source of the service app that needs it
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Renew a token that expires within this window; fresher ones are skipped.
    /// 6h: with an hourly timer a renewal survives five failed runs in a row
    #[arg(long, value_name = "DURATION", default_value = "6h", value_parser = parse_duration)]
    pub min_valid: Duration,
    /// Lifetime of the renewed token in minutes (1 to 1440)
    #[arg(long, value_name = "MINUTES", default_value_t = MAX_TOKEN_LIFETIME_MINUTES, value_parser = parse_lifetime)]
    pub lifetime: u32,
    /// Say which data sources would be renewed; send no PUT
    #[arg(long)]
    pub dry_run: bool,
    // Renewals in flight: the global `--concurrency`.
}

#[derive(Debug, Args)]
pub struct DsRegisterArgs {
    /// The schema the data source serves (`GET /dataSources/schemas`)
    #[arg(long, value_name = "UUID")]
    pub schema_id: String,
    /// Where Webex sends the data (https URL of your service)
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The token's `aud` claim, usually your provider app's name
    #[arg(long)]
    pub audience: String,
    /// The token's `sub` claim
    #[arg(long)]
    pub subject: String,
    /// Lifetime of the token in minutes (1 to 1440)
    #[arg(long, value_name = "MINUTES", default_value_t = MAX_TOKEN_LIFETIME_MINUTES, value_parser = parse_lifetime)]
    pub lifetime: u32,
}

/// `--lifetime`: 1..=1440 minutes. Checked by clap, so a bad value is a
/// usage error (exit 2) before any file is read or request sent.
fn parse_lifetime(v: &str) -> Result<u32, String> {
    let n: u32 = v
        .trim()
        .parse()
        .map_err(|_| format!("`{v}` is not a number of minutes"))?;
    if (1..=MAX_TOKEN_LIFETIME_MINUTES).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{n} is out of range: Webex accepts 1 to {MAX_TOKEN_LIFETIME_MINUTES} minutes (24 h)"
        ))
    }
}

#[derive(Debug, Args)]
pub struct SetupOauthArgs {
    /// Local port of the callback; must match the integration's redirect URI
    /// http://localhost:PORT/callback (0: any free port, for tests)
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// Do not open a browser; print the address (with an SSH port-forward hint)
    #[arg(long)]
    pub no_browser: bool,
    /// Do not listen; paste the address the browser was redirected to on stdin
    #[arg(long, conflicts_with = "device")]
    pub manual: bool,
    /// Device Authorization Grant: enter a short code on any device; no
    /// redirect to this machine (the integration must list Webex's device
    /// redirect URIs)
    #[arg(long)]
    pub device: bool,
    /// How long to wait for the authorization
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The address `watch --health` serves on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub health: std::net::SocketAddr,
    /// Give up (unhealthy) after this long
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_nonzero_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Print the page of this command only (e.g. `refresh`, `datasources extend`)
    #[arg(value_name = "COMMAND", conflicts_with = "dir")]
    pub command: Vec<String>,
    /// Write every page (webex-token.1, webex-token-refresh.1, ...) into this directory
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// A timeout: zero would make every wait or request fail at once.
fn parse_nonzero_duration(v: &str) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    if d.is_zero() {
        return Err("a timeout of zero would fail at once; use e.g. 30s".into());
    }
    Ok(d)
}

fn parse_recipient(v: &str) -> Result<crate::webex::Recipient, String> {
    crate::webex::Recipient::parse(v)
}

/// `--reauth-window`: 0 (never start the device grant), or from 5 minutes
/// (one code's life at Webex) to 30 days (a person who has not answered in
/// a month is not reading these channels).
fn parse_reauth_window(v: &str) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    if !d.is_zero() && (d < Duration::from_secs(300) || d > Duration::from_secs(30 * 86_400)) {
        return Err("0 (never ask a person) or from 5m to 30d (e.g. 24h)".into());
    }
    Ok(d)
}

/// A duration that is not zero (an interval of 0 would spin).
fn parse_positive_duration(v: &str) -> Result<Duration, String> {
    match parse_duration(v)? {
        d if d.is_zero() => Err(format!("`{v}` must be more than zero")),
        d => Ok(d),
    }
}

fn parse_base_url(v: &str) -> Result<String, String> {
    let t = v.trim().trim_end_matches('/');
    // An empty value (`WEBEX_API_BASE_URL=` in a unit file) means "not
    // set": the config's `apiBaseUrl` or the default applies.
    if t.is_empty() {
        return Ok(String::new());
    }
    if !((t.starts_with("http://") || t.starts_with("https://")) && t.len() > "https://".len()) {
        return Err(format!(
            "`{v}` is not an http(s) URL; use e.g. https://webexapis.com/v1"
        ));
    }
    crate::webex::check_base_url(t)?;
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_before_or_after() {
        let a = Cli::try_parse_from(["webex-token", "--env-file", "x.env", "refresh", "--force"])
            .unwrap();
        let b = Cli::try_parse_from(["webex-token", "refresh", "--force", "--env-file", "x.env"])
            .unwrap();
        assert_eq!(a.global.env_file, b.global.env_file);
        assert_eq!(a.global.env_file, PathBuf::from("x.env"));
    }

    #[test]
    fn durations_and_bad_values() {
        let c = Cli::try_parse_from(["webex-token", "refresh", "--min-valid", "30m"]).unwrap();
        match c.command {
            Command::Refresh(r) => assert_eq!(r.min_valid, Duration::from_secs(1800)),
            _ => panic!(),
        }
        let e = Cli::try_parse_from(["webex-token", "refresh", "--min-valid", "soon"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e =
            Cli::try_parse_from(["webex-token", "--api-base", "ftp://x", "status"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn datasources_extend_flags() {
        let c = Cli::try_parse_from(["webex-token", "datasources", "extend", "--all"]).unwrap();
        let Command::Datasources(DatasourcesArgs {
            command: DatasourcesCommand::Extend(e),
        }) = c.command
        else {
            panic!()
        };
        assert!(e.all && e.ids.is_empty() && !e.dry_run);
        assert_eq!(e.lifetime, 1440);
        assert_eq!(e.min_valid, Duration::from_secs(6 * 3600));

        let c = Cli::try_parse_from([
            "webex-token",
            "ds",
            "extend",
            "a",
            "b",
            "--lifetime",
            "60",
            "--min-valid",
            "2h",
        ])
        .unwrap();
        let Command::Datasources(DatasourcesArgs {
            command: DatasourcesCommand::Extend(e),
        }) = c.command
        else {
            panic!()
        };
        assert_eq!(e.ids, vec!["a", "b"]);
        assert_eq!((e.lifetime, e.min_valid.as_secs()), (60, 7200));

        for bad in [
            vec!["extend"],
            vec!["extend", "--all", "x"],
            vec!["extend", "--all", "--lifetime", "1441"],
            vec!["extend", "--all", "--lifetime", "0"],
            vec!["extend", "--all", "--lifetime", "-5"],
            vec![
                "register",
                "--schema-id",
                "s",
                "--url",
                "u",
                "--audience",
                "a",
            ],
        ] {
            let mut argv = vec!["webex-token", "datasources"];
            argv.extend(bad.iter().copied());
            let e = Cli::try_parse_from(&argv).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{argv:?}");
        }
    }

    #[test]
    fn org_flags_are_global_and_repeatable() {
        let c = Cli::try_parse_from([
            "webex-token",
            "refresh",
            "--org",
            "acme",
            "--org",
            "beta",
            "--concurrency",
            "3",
        ])
        .unwrap();
        assert_eq!(c.global.orgs, ["acme", "beta"]);
        assert_eq!(c.global.concurrency, 3);
        let c = Cli::try_parse_from(["webex-token", "--org", "acme", "token"]).unwrap();
        assert_eq!(c.global.orgs, ["acme"]);
        let c = Cli::try_parse_from(["webex-token", "status", "--all-orgs"]).unwrap();
        assert!(c.global.all_orgs && c.global.orgs.is_empty());
        assert_eq!(c.global.concurrency, 8);
        for bad in [
            vec!["webex-token", "--org", "a", "--all-orgs", "refresh"],
            vec!["webex-token", "refresh", "--concurrency", "0"],
            vec![
                "webex-token",
                "ds",
                "extend",
                "--all",
                "--concurrency",
                "65",
            ],
        ] {
            assert_eq!(
                Cli::try_parse_from(&bad).unwrap_err().exit_code(),
                2,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn exec_takes_the_rest() {
        let c = Cli::try_parse_from(["webex-token", "exec", "--", "sh", "-c", "echo $X"]).unwrap();
        match c.command {
            Command::Exec(e) => assert_eq!(e.command.len(), 3),
            _ => panic!(),
        }
        let c = Cli::try_parse_from(["webex-token", "exec", "env", "-i"]).unwrap();
        match c.command {
            Command::Exec(e) => assert_eq!(e.command, vec!["env", "-i"]),
            _ => panic!(),
        }
    }
}
