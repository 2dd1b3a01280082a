//! `webex-token`: keeps Webex service-app tokens working without a person in
//! the loop.
//!
//! This library backs the `webex-token` binary and its tests. It is not a
//! stable API: anything here may change in any release. The layers, each
//! importing only those below it:
//!
//! ```text
//! lib.rs (run: parse, dispatch)
//! commands/             one file per subcommand
//! agent/                the `watch` loop; reports through agent::Report
//! engine/ oauth/ output/
//! error.rs settings.rs
//! chain/ store/ audit.rs
//! config.rs tokens.rs cli.rs
//! webex/                the only place reqwest appears
//! clock.rs secret.rs secret_source.rs names.rs fs_atomic.rs
//! ```

mod agent;
mod audit;
mod chain;
mod cli;
mod clock;
mod commands;
mod config;
mod engine;
mod error;
mod fs_atomic;
mod names;
mod oauth;
mod output;
pub mod secret;
mod secret_source;
mod settings;
pub mod store;
mod tokens;
mod webex;

use cli::{Command, LogFormat};
use output::Printer;
use settings::Settings;
use std::ffi::OsString;

/// Runs one command line (`args[0]` is the program name) and returns the
/// exit code. The binary's `main` is this and nothing else; tests may call
/// it in-process.
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let code = run_parsed(&args);
    // Output that never reached stdout is a failure, whatever the command
    // concluded: `$(webex-token token)` must not carry on with nothing.
    match output::stdout_failure() {
        Some(e) if code == 0 => {
            Printer::new(false, false).stderr_error("output", &e);
            e.exit_code()
        }
        _ => code,
    }
}

fn run_parsed(args: &[OsString]) -> u8 {
    let cli = match output::help::parse(args) {
        Ok(cli) => cli,
        Err(e) => return output::usage_error(e, args),
    };
    let service = matches!(cli.command, Command::Watch(_));
    output::logging::init(
        cli.global.verbose,
        cli.global.quiet,
        cli.global.log_format,
        service,
    );
    let settings = Settings::from_args(&cli.global);
    let printer = Printer::new(settings.json, settings.quiet)
        .with_json_logs(cli.global.log_format == LogFormat::Json);
    if !matches!(
        cli.command,
        Command::Completions(_) | Command::Man(_) | Command::Healthcheck(_)
    ) && let Err(e) = settings.check_paths()
    {
        printer.error(command_name(&cli.command), &e);
        return e.exit_code();
    }
    // Nowhere to put renewed state: said before any request.
    let may_write = match &cli.command {
        Command::Refresh(a) => !a.dry_run,
        Command::Token(_)
        | Command::Exec(_)
        | Command::Datasources(_)
        | Command::SetupOauth(_)
        | Command::Watch(_) => true,
        _ => false,
    };
    if may_write
        && let Err(e) = settings.check_state_location(matches!(cli.command, Command::SetupOauth(_)))
    {
        printer.error(command_name(&cli.command), &e);
        return e.exit_code();
    }
    // The common `token` case (a stored expiry far enough away) is answered
    // before any async runtime exists: two small files read, one line out.
    if let Command::Token(a) = &cli.command
        && let Some(code) = commands::token::fast(&settings, &printer, a)
    {
        return code;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return error::exit::TRANSIENT;
        }
    };
    runtime.block_on(dispatch(cli.command, &settings, &printer))
}

async fn dispatch(command: Command, settings: &Settings, printer: &Printer) -> u8 {
    // `watch` stops by itself (exit 0) once an exchange in flight is saved.
    engine::signals::install(match command {
        Command::Watch(_) => engine::signals::Mode::Report,
        _ => engine::signals::Mode::Exit,
    });
    let name = command_name(&command);
    let result = match command {
        Command::Init(a) => commands::init::run(settings, printer, &a),
        Command::Refresh(a) => commands::refresh::run(settings, printer, &a).await,
        Command::Status(a) => commands::status::run(settings, printer, &a).await,
        Command::Token(a) => commands::token::run(settings, printer, &a).await,
        Command::Exec(a) => commands::exec::run(settings, &a).await,
        Command::Datasources(a) => commands::datasources::run(settings, printer, &a).await,
        Command::SetupOauth(a) => commands::setup_oauth::run(settings, printer, &a).await,
        Command::Watch(a) => commands::watch::run(settings, printer, &a).await,
        Command::Healthcheck(a) => commands::watch::healthcheck(&a),
        Command::Completions(a) => commands::completions::run(a.shell),
        Command::Man(a) => commands::completions::man(&a),
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
        Command::Init(_) => "init",
        Command::Refresh(_) => "refresh",
        Command::Status(_) => "status",
        Command::Token(_) => "token",
        Command::Exec(_) => "exec",
        Command::Datasources(a) => a.command.name(),
        Command::SetupOauth(_) => "setup-oauth",
        Command::Watch(_) => "watch",
        Command::Healthcheck(_) => "healthcheck",
        Command::Completions(_) => "completions",
        Command::Man(_) => "man",
    }
}
