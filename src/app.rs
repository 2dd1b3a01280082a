//! One function per subcommand: load, lock, run the chain, write, report.
//! Nothing here speaks HTTP (that is `webex`) or decides levels (`chain`).

use crate::audit;
use crate::chain::{self, Action, ChainError, Check, Outcome, Persist, Policy, Validation};
use crate::cli::{Cli, Command, ExecArgs, RefreshArgs, StatusArgs, TokenArgs};
use crate::clock;
use crate::config::{Config, PersonalUpdate};
use crate::error::Error;
use crate::output::{self, Printer, SCHEMA_VERSION, token_json};
use crate::secret::{ExposeSecret, fingerprint};
use crate::settings::Settings;
use crate::store::fs_atomic::WriteMode;
use crate::store::{self, EnvState};
use crate::tokens::StoredTokens;
use crate::webex::{ApiError, HttpApi, WebexApi};
use serde_json::{Value, json};
use std::time::Duration;

/// Runs the parsed command line and returns the exit code. The common
/// `token` case (a stored expiry far enough away) is answered before any
/// async runtime exists: it reads two small files and prints, nothing more.
pub fn main(cli: Cli) -> u8 {
    if let Command::Token(a) = &cli.command
        && !a.validate
    {
        let settings = Settings::from_args(&cli.global);
        let printer = Printer::new(settings.json, settings.quiet)
            .with_json_logs(cli.global.log_format == crate::cli::LogFormat::Json);
        match fresh_tokens(&settings, a.min_valid) {
            Ok(Some(tokens)) => {
                let access = tokens.access_token.as_ref().expect("fresh tokens have one");
                printer.token(access, tokens.access_expires_at, clock::now());
                return 0;
            }
            Ok(None) => {}
            Err(e) => {
                printer.error("token", &e);
                return e.exit_code();
            }
        }
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            crate::error::exit::TRANSIENT
        }
    }
}

/// The stored tokens when their expiry is beyond `min_valid` (no lock, no
/// request); `None` when they must be checked or refreshed.
fn fresh_tokens(settings: &Settings, min_valid: Duration) -> Result<Option<StoredTokens>, Error> {
    let state = store::read_env(&settings.env_path)?;
    Config::load(&settings.config_path)?;
    let threshold = clock::after(clock::now(), min_valid.as_secs());
    let fresh = state.tokens.access_token.is_some()
        && state
            .tokens
            .access_expires_at
            .is_some_and(|e| e > threshold);
    Ok(fresh.then_some(state.tokens))
}

/// Runs the parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    let settings = Settings::from_args(&cli.global);
    let printer = Printer::new(settings.json, settings.quiet)
        .with_json_logs(cli.global.log_format == crate::cli::LogFormat::Json);
    let name = command_name(&cli.command);
    let result = match cli.command {
        Command::Refresh(a) => refresh(&settings, &printer, &a).await,
        Command::Status(a) => status(&settings, &printer, &a).await,
        Command::Token(a) => token(&settings, &printer, &a).await,
        Command::Exec(a) => exec(&settings, &a).await,
        Command::Datasources(a) => crate::datasources::run(&settings, &printer, &a).await,
        Command::SetupOauth(a) => crate::oauth_setup::run(&settings, &printer, &a).await,
        Command::Completions(a) => {
            crate::completions::write(a.shell, &mut std::io::stdout());
            Ok(0)
        }
        // A closed pipe (`webex-token man | head`) is the reader's choice,
        // not a failure.
        Command::Man => match crate::completions::write_man(&mut std::io::stdout()) {
            Ok(()) => Ok(0),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
            Err(e) => Err(Error::Other(format!("could not write the man page: {e}"))),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            printer.error(name, &e);
            e.exit_code()
        }
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Refresh(_) => "refresh",
        Command::Status(_) => "status",
        Command::Token(_) => "token",
        Command::Exec(_) => "exec",
        Command::Datasources(a) => crate::datasources::command_name(&a.command),
        Command::SetupOauth(_) => "setup-oauth",
        Command::Completions(_) => "completions",
        Command::Man => "man",
    }
}

/// Saves what level 3 renewed into the config file, the moment it exists.
struct ConfigSink<'a> {
    config: &'a Config,
    mode: WriteMode,
    audit: Option<&'a std::path::Path>,
    command: &'static str,
}

impl Persist for ConfigSink<'_> {
    fn personal_renewed(&mut self, update: &PersonalUpdate) -> Result<(), String> {
        store::write_config(self.config, update, self.mode).map_err(|e| {
            let err = Error::Store(e);
            let mut s = err.to_string();
            for d in err.details() {
                s.push_str("; ");
                s.push_str(&d);
            }
            s
        })?;
        tracing::info!(
            "saved the renewed personal access token {} in {}",
            fingerprint(&update.personal_access_token),
            self.config.path.display()
        );
        if let Some(path) = self.audit {
            audit::append(
                path,
                json!({
                    "command": self.command,
                    "operation": "oauth_renewal",
                    "level": 3,
                    "outcome": "ok",
                    "personalTokenFingerprint": fingerprint(&update.personal_access_token),
                    "personalTokenExpiresAt": update.personal_expires_at.map(clock::format_utc),
                    "integrationRefreshTokenFingerprint": update.integration_refresh_token.as_ref().map(fingerprint),
                    "integrationRefreshTokenExpiresAt": update.integration_refresh_expires_at.map(clock::format_utc),
                }),
            );
        }
        Ok(())
    }
}

/// The shared core of `refresh`, `token` and `exec`: make sure a working
/// token is stored, under the lock, and return what happened.
pub(crate) async fn ensure(
    settings: &Settings,
    policy: &Policy,
    command: &'static str,
) -> Result<Outcome, Error> {
    // Read once before the lock: a broken file fails fast, and if the token
    // changes while we wait, another run has just refreshed it.
    let before = store::read_env(&settings.env_path)?;
    Config::load(&settings.config_path)?;
    let _guard = if policy.dry_run {
        None
    } else {
        Some(store::lock(&settings.env_path, settings.lock_timeout)?)
    };
    // Re-read both files under the lock: another run may have rotated a
    // refresh token or renewed the personal token meanwhile.
    let config = Config::load(&settings.config_path)?;
    for note in &config.notes {
        tracing::info!("config file {}: {note}", config.path.display());
    }
    let state = store::read_env(&settings.env_path)?;
    let now = clock::now();

    if !(policy.force || policy.mint) && changed_meanwhile(&before.tokens, &state.tokens) {
        let threshold = clock::after(now, policy.min_valid.as_secs());
        if state
            .tokens
            .access_expires_at
            .is_some_and(|e| e > threshold)
        {
            tracing::debug!("another run refreshed the token while this one waited for the lock");
            return Ok(Outcome {
                action: Action::Kept(Validation::JustRefreshed),
                tokens: state.tokens,
                attempts: Vec::new(),
                personal_renewed: false,
                tracking_id: None,
            });
        }
    }

    let api = HttpApi::new(settings.http(Some(&config)));
    tracing::debug!(
        "env file {}, config file {}, api base {}",
        state.path.display(),
        config.path.display(),
        api.base_url()
    );
    let mut sink = ConfigSink {
        config: &config,
        mode: settings.write_mode,
        audit: settings.audit_log.as_deref(),
        command,
    };
    let result = chain::ensure_fresh(&state.tokens, &config, policy, &api, now, &mut sink).await;
    match result {
        Ok(outcome) => {
            if let Action::Refreshed { level, .. } = &outcome.action {
                let written = store::write_env(&state, &outcome.tokens, settings.write_mode);
                audit_refresh(
                    settings,
                    command,
                    &outcome,
                    level.number(),
                    written.as_ref().err(),
                );
                written?;
            }
            Ok(outcome)
        }
        Err(e) => {
            audit_failure(settings, command, &e);
            Err(e.into())
        }
    }
}

fn changed_meanwhile(before: &StoredTokens, now: &StoredTokens) -> bool {
    match (&before.access_token, &now.access_token) {
        (Some(a), Some(b)) => a.expose_secret() != b.expose_secret(),
        (None, Some(_)) => true,
        _ => false,
    }
}

fn audit_refresh(
    settings: &Settings,
    command: &str,
    o: &Outcome,
    level: u8,
    write_error: Option<&store::StoreError>,
) {
    let Some(path) = &settings.audit_log else {
        return;
    };
    audit::append(
        path,
        json!({
            "command": command,
            "operation": if level == 1 { "refresh" } else { "mint" },
            "level": level,
            "outcome": if write_error.is_some() { "issued_but_not_saved" } else { "ok" },
            "accessTokenFingerprint": o.tokens.access_token.as_ref().map(fingerprint),
            "accessTokenExpiresAt": o.tokens.access_expires_at.map(clock::format_utc),
            "refreshTokenFingerprint": o.tokens.refresh_token.as_ref().map(fingerprint),
            "refreshTokenExpiresAt": o.tokens.refresh_expires_at.map(clock::format_utc),
            "attempts": output::attempts_json(&o.attempts),
            "trackingId": o.tracking_id,
            "envFile": settings.env_path.display().to_string(),
            "error": write_error.map(|e| e.to_string()),
        }),
    );
}

fn audit_failure(settings: &Settings, command: &str, e: &ChainError) {
    let Some(path) = &settings.audit_log else {
        return;
    };
    let (attempts, tracking) = match e {
        ChainError::Exhausted { attempts } => (
            attempts.as_slice(),
            attempts.iter().rev().find_map(|a| match &a.result {
                chain::AttemptResult::Rejected { error } => error.tracking_id(),
                _ => None,
            }),
        ),
        ChainError::Transient {
            attempts, error, ..
        } => (attempts.as_slice(), error.tracking_id()),
        // Nothing was sent to Webex: no token operation to record.
        _ => return,
    };
    let err = Error::Chain(match e {
        ChainError::Exhausted { attempts } => ChainError::Exhausted {
            attempts: attempts.clone(),
        },
        ChainError::Transient {
            level,
            error,
            attempts,
        } => ChainError::Transient {
            level: *level,
            error: error.clone(),
            attempts: attempts.clone(),
        },
        _ => unreachable!("filtered above"),
    });
    audit::append(
        path,
        json!({
            "command": command,
            "operation": "refresh",
            "outcome": "failed",
            "exitCode": err.exit_code(),
            "error": e.to_string(),
            "attempts": output::attempts_json(attempts),
            "trackingId": tracking,
            "envFile": settings.env_path.display().to_string(),
        }),
    );
}

async fn refresh(settings: &Settings, printer: &Printer, a: &RefreshArgs) -> Result<u8, Error> {
    let policy = Policy {
        min_valid: a.min_valid,
        force: a.force,
        mint: a.mint,
        dry_run: a.dry_run,
        check: Check::Validate,
    };
    let outcome = ensure(settings, &policy, "refresh").await?;
    printer.refresh(
        &outcome,
        clock::now(),
        &settings.env_path,
        &settings.config_path,
    );
    Ok(0)
}

async fn token(settings: &Settings, printer: &Printer, a: &TokenArgs) -> Result<u8, Error> {
    let tokens = working_tokens(settings, a.min_valid, a.validate, "token")
        .await?
        .tokens;
    let access = tokens
        .access_token
        .as_ref()
        .expect("a working token is present");
    printer.token(access, tokens.access_expires_at, clock::now());
    Ok(0)
}

/// A working token set, and whether this run refreshed it to get there.
pub(crate) struct Working {
    pub tokens: StoredTokens,
    /// True when the chain refreshed the token in this run (so a 401 right
    /// after cannot be cured by refreshing once more).
    pub refreshed: bool,
}

/// A working token set for `token`, `exec` and `datasources`. The fast path
/// (a stored expiry beyond `min_valid`) reads two small files and makes no
/// request, takes no lock and builds no HTTP client.
pub(crate) async fn working_tokens(
    settings: &Settings,
    min_valid: Duration,
    validate: bool,
    command: &'static str,
) -> Result<Working, Error> {
    if !validate && let Some(tokens) = fresh_tokens(settings, min_valid)? {
        return Ok(Working {
            tokens,
            refreshed: false,
        });
    }
    let policy = Policy {
        min_valid,
        force: false,
        mint: false,
        dry_run: false,
        check: if validate {
            Check::Validate
        } else {
            Check::TrustExpiry
        },
    };
    let outcome = ensure(settings, &policy, command).await?;
    Ok(Working {
        refreshed: matches!(outcome.action, Action::Refreshed { .. }),
        tokens: outcome.tokens,
    })
}

async fn exec(settings: &Settings, a: &ExecArgs) -> Result<u8, Error> {
    let tokens = working_tokens(settings, a.min_valid, false, "exec")
        .await?
        .tokens;
    let (program, args) = a.command.split_first().expect("clap requires a command");
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    let values = store::owned_values(&tokens);
    for (k, v) in values {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let program_name = program.to_string_lossy().into_owned();
    tracing::debug!("running `{program_name}` with the service-app token in its environment");
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Replace this process: signals, stdin and the exit status belong
        // to the command, as with `exec` in a shell. The lock was released
        // above (its file is closed on exec anyway).
        let err = cmd.exec();
        Err(Error::Exec {
            program: program_name,
            source: err,
        })
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status().map_err(|e| Error::Exec {
            program: program_name,
            source: e,
        })?;
        Ok(status.code().unwrap_or(1).clamp(0, 255) as u8)
    }
}

async fn status(settings: &Settings, printer: &Printer, a: &StatusArgs) -> Result<u8, Error> {
    let config = Config::load(&settings.config_path)?;
    let state: EnvState = store::read_env(&settings.env_path)?;
    let now = clock::now();
    let t = &state.tokens;
    let integ = config.integration.as_ref();
    let levels = chain::availability(&config, t, now);
    let next = levels.iter().find(|l| l.1.is_none()).map(|l| l.0.number());

    let online = if a.online {
        let api = HttpApi::new(settings.http(Some(&config)));
        Some(match &t.access_token {
            None => json!({"checked": false, "valid": false, "detail": "no access token"}),
            Some(tok) => match api.validate(tok).await {
                Ok(()) => json!({"checked": true, "valid": true, "httpStatus": 200}),
                Err(e @ ApiError::Refused { status: 403, .. }) => {
                    json!({"checked": true, "valid": true, "httpStatus": 403, "detail": e.to_string()})
                }
                Err(e @ ApiError::Transient { .. }) => {
                    json!({"checked": false, "valid": Value::Null, "httpStatus": e.status(), "detail": e.to_string()})
                }
                Err(e) => {
                    json!({"checked": true, "valid": false, "httpStatus": e.status(), "detail": e.to_string()})
                }
            },
        })
    } else {
        None
    };

    let personal_json = token_json(
        config.personal_access_token.get(),
        config.personal_expires_at,
        now,
    );
    let integ_json = token_json(
        integ.and_then(|i| i.refresh_token.get()),
        integ.and_then(|i| i.refresh_expires_at),
        now,
    );
    let creds = [
        (
            "service-app access token",
            token_json(t.access_token.as_ref(), t.access_expires_at, now),
            true,
        ),
        (
            "service-app refresh token",
            token_json(t.refresh_token.as_ref(), t.refresh_expires_at, now),
            false,
        ),
        (
            "personal access token",
            personal_json.clone(),
            config.usable_integration().is_some(),
        ),
        ("integration refresh token", integ_json.clone(), false),
    ];

    // `--check`: credentials that cannot renew themselves.
    let mut expiring = Vec::new();
    if let Some(window) = a.check {
        let limit = clock::after(now, window.as_secs());
        for (name, v, renews_itself) in &creds {
            if *renews_itself {
                continue;
            }
            if let Some(exp) = v["expiresAt"].as_str().and_then(clock::parse)
                && exp <= limit
            {
                expiring.push(format!("{name} {}", output::expiry_text(Some(exp), now)));
            }
        }
    }

    // `--check` failing: the report still goes to stdout; the JSON says
    // ok=false with the exit code and the reason, like any failed command.
    let check_failure = (!expiring.is_empty()).then(|| {
        let window = a.check.unwrap_or_default();
        let level2_ready = levels
            .iter()
            .any(|(l, gap)| *l == chain::Level::PersonalAccessToken && gap.is_none());
        // One concrete step per kind of credential that is lapsing.
        let mut hints = Vec::new();
        if expiring.iter().any(|e| e.starts_with("service-app refresh token")) {
            hints.push(if level2_ready {
                "`webex-token refresh --mint` replaces the service-app refresh token now (level 2 mints a new pair; left alone, level 2 takes over when it lapses)"
            } else {
                "the service-app refresh token can only be replaced by level 2: set up a working personal access token or `webex-token setup-oauth`, then `webex-token refresh --mint`"
            });
        }
        if expiring.iter().any(|e| e.starts_with("personal access token")) {
            hints.push("paste a new personal access token into the config file, or run `webex-token setup-oauth` once so the integration renews it");
        }
        if expiring.iter().any(|e| e.starts_with("integration refresh token")) {
            hints.push("run `webex-token setup-oauth` to authorize the integration again before its refresh token lapses");
        }
        Error::CheckFailed {
            message: format!(
                "{} within {}: {}",
                if expiring.len() == 1 {
                    "a credential that cannot renew itself expires"
                } else {
                    "credentials that cannot renew themselves expire"
                },
                clock::human_span(window.as_secs()),
                expiring.join("; ")
            ),
            hint: hints.join("; "),
        }
    });

    let json_value = json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": "status",
        "ok": check_failure.is_none(),
        "exitCode": check_failure.as_ref().map_or(0, Error::exit_code),
        "error": check_failure.as_ref().map(|e| json!({
            "kind": e.kind(),
            "message": e.to_string(),
            "details": e.details(),
            "hint": e.hint(),
        })),
        "envFile": state.path.display().to_string(),
        "envFileExists": state.doc.is_some(),
        "configFile": config.path.display().to_string(),
        "apiBase": settings.api_base(Some(&config)),
        "credentials": {
            "serviceAccessToken": creds[0].1,
            "serviceRefreshToken": creds[1].1,
            "personalAccessToken": personal_json,
            "integrationRefreshToken": integ_json,
        },
        "levels": levels.iter().map(|(level, gap)| json!({
            "level": level.number(), "name": level.name(), "available": gap.is_none(), "reason": gap,
        })).collect::<Vec<_>>(),
        "nextLevel": next,
        "online": online,
        "check": a.check.map(|w| json!({
            "windowSeconds": w.as_secs(),
            "expiring": expiring,
        })),
        "notes": config.notes,
    });

    let mut human = String::new();
    human.push_str(&format!(
        "env file      {}{}\n",
        state.path.display(),
        if state.doc.is_none() {
            " (not created yet)"
        } else {
            ""
        }
    ));
    human.push_str(&format!("config file   {}\n", config.path.display()));
    human.push_str(&format!(
        "api base      {}\n\n",
        settings.api_base(Some(&config))
    ));
    for (name, v, _) in &creds {
        let line = if v["present"].as_bool() == Some(true) {
            let exp = v["expiresAt"].as_str().and_then(clock::parse);
            format!(
                "{name:<27} present  {}  {}",
                v["fingerprint"].as_str().unwrap_or(""),
                output::expiry_text(exp, now)
            )
        } else {
            let placeholder = match *name {
                "personal access token" => config.personal_access_token.value.as_ref().err(),
                "integration refresh token" => {
                    integ.and_then(|i| i.refresh_token.value.as_ref().err())
                }
                _ => None,
            };
            match placeholder {
                Some(crate::config::Absence::Placeholder) => {
                    format!("{name:<27} not filled in (template placeholder)")
                }
                _ => format!("{name:<27} missing"),
            }
        };
        human.push_str(&line);
        human.push('\n');
    }
    human.push_str("\nrefresh levels\n");
    for (level, gap) in &levels {
        let (n, name) = (level.number(), level.name());
        match gap {
            None => human.push_str(&format!("  {n} {name:<27} available\n")),
            Some(g) => human.push_str(&format!("  {n} {name:<27} not available: {g}\n")),
        }
    }
    match next {
        Some(n) => human.push_str(&format!(
            "when the access token needs renewing, level {n} is tried first"
        )),
        None => human.push_str(
            "no level can refresh the token: fill in `tokenManager.personalAccessToken`, or the integration's clientId/clientSecret and then run `webex-token setup-oauth`",
        ),
    }
    if let Some(o) = &online {
        human.push_str(&format!(
            "\nonline check  {}",
            match o["valid"].as_bool() {
                Some(true) => "the access token works".to_string(),
                Some(false) => format!(
                    "the access token does not work ({})",
                    o["detail"].as_str().unwrap_or("")
                ),
                None => format!("could not check ({})", o["detail"].as_str().unwrap_or("")),
            }
        ));
    }
    for n in &config.notes {
        human.push_str(&format!("\nnote: {n}"));
    }
    printer.report(&json_value, &human);

    if let Some(e) = check_failure {
        // The report is already on stdout; the reason goes to stderr.
        eprintln!("error: {e}");
        if let Some(h) = e.hint() {
            eprintln!("hint: {h}");
        }
        return Ok(e.exit_code());
    }
    Ok(0)
}
