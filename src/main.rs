//! The `webex-token` binary: parse flags, set up logging, run, exit.

use clap::Parser;
use std::process::ExitCode;
use webex_token::cli::{Cli, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text if verbose > 0 => builder.init(),
        LogFormat::Text => builder.without_time().init(),
    }
}
