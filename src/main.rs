//! The `webex-token` binary: parse flags, set up logging, run, exit.

use clap::{CommandFactory, Parser};
use std::io::IsTerminal;
use std::process::ExitCode;
use webex_token::cli::{Cli, LogFormat};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_logging(cli.global.verbose, cli.global.quiet, cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    ExitCode::from(runtime.block_on(webex_token::app::run(cli)))
}

/// Bad flags: clap's message on stderr and exit 2; with `--json` anywhere on
/// the command line, also the usual failure object on stdout, so a script
/// that asked for JSON always gets one. `--help`/`--version` are not errors.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let is_info = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .take_while(|a| a != "--")
        .collect();
    if !is_info && args.iter().any(|a| a == "--json") {
        // clap's own text, without its "error: " prefix and the usage
        // block: the first line, and the lines it continues with (e.g. the
        // list of missing arguments).
        let rendered = e.to_string();
        let body = rendered.split("\n\nUsage:").next().unwrap_or_default();
        let body = body
            .split("\n\nFor more information")
            .next()
            .unwrap_or_default();
        let mut lines = body.lines().map(str::trim).filter(|l| !l.is_empty());
        let first = lines.next().unwrap_or_default();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let details: Vec<String> = lines.map(str::to_string).collect();
        let message = if details.is_empty() {
            first.to_string()
        } else {
            format!("{first} {}", details.join(", "))
        };
        // The subcommand, when one was recognised, for "command" and the hint.
        let cmd = Cli::command();
        let command = args.iter().find_map(|a| {
            cmd.find_subcommand(a.as_str())
                .map(|c| c.get_name().to_string())
        });
        webex_token::output::usage_error_json(
            command.as_deref(),
            &message,
            &details,
            e.exit_code(),
        );
    }
    let _ = e.print();
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}

/// Logs go to stderr. Quiet by default (warnings only), `-q` errors only,
/// `-v` our debug, `-vv` our trace. Other crates stay at `warn` unless
/// RUST_LOG says otherwise: their debug output may include request details,
/// and nothing secret may reach a log.
fn init_logging(verbose: u8, quiet: bool, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,webex_token=debug",
        (false, _) => "warn,webex_token=trace",
    };
    let filter = match std::env::var_os("RUST_LOG") {
        Some(_) => EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default)),
        None => EnvFilter::new(default),
    };
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text if verbose > 0 => builder.init(),
        LogFormat::Text => builder.event_format(Plain { ansi }).init(),
    }
}

/// Default text logs read like the rest of the output: `warning: …`, no
/// timestamps or levels in columns (`-v` switches to the full format).
struct Plain {
    ansi: bool,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let (label, colour) = match *event.metadata().level() {
            tracing::Level::ERROR => ("error", "31"),
            tracing::Level::WARN => ("warning", "33"),
            tracing::Level::INFO => ("note", "36"),
            _ => ("debug", "2"),
        };
        if self.ansi {
            write!(writer, "\x1b[{colour}m{label}:\x1b[0m ")?;
        } else {
            write!(writer, "{label}: ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
