//! Logs on stderr: plain `warning: …` lines by default, the full format
//! with `-v`, JSON lines with `--log-format json`. Initialised once per
//! process (a second in-process run keeps the first subscriber).

use crate::cli::LogFormat;
use std::io::IsTerminal;

/// Logs go to stderr. Quiet by default (warnings only), `-q` errors only,
/// `-v` our debug, `-vv` our trace. Other crates stay at `warn` unless
/// RUST_LOG says otherwise: their debug output may include request details,
/// and nothing secret may reach a log.
///
/// `service` (the long-running `watch`) shows our notes by default too: a
/// service's log is where its events are read.
pub fn init(verbose: u8, quiet: bool, format: LogFormat, service: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) if service => "warn,webex_token=info",
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
        LogFormat::Json => {
            let _ = builder.json().flatten_event(true).try_init();
        }
        LogFormat::Text if verbose > 0 => {
            let _ = builder.try_init();
        }
        LogFormat::Text => {
            let _ = builder.event_format(Plain { ansi }).try_init();
        }
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
        // Inside one org's work of several (the `org` span `watch` opens
        // per org): the org's name first, `note: acme: …`.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root().filter(|s| s.name() == "org") {
                let ext = span.extensions();
                if let Some(f) = ext.get::<tracing_subscriber::fmt::FormattedFields<N>>() {
                    let plain = strip_ansi(&f.fields);
                    let name = plain.strip_prefix("org=").unwrap_or(&plain);
                    write!(writer, "{name}: ")?;
                }
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// `s` without ANSI colour sequences (the field formatter may add them).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
