//! Shell completions and the man page, generated from the clap definition.

use clap::{Arg, Command, CommandFactory};

/// Writes the completion script for `shell`.
pub fn write(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(shell, &mut cmd, "webex-token", out);
}

/// Writes the man page (roff) for `webex-token`: clap_mangen's page for the
/// top level, then one section per command with its own options (clap_mangen
/// alone would point to `webex-token-refresh(1)` pages nobody installs), and
/// the ENVIRONMENT, FILES and EXIT STATUS sections from the README.
pub fn write_man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut cmd = crate::cli::Cli::command();
    // Building fills in what the derive leaves implicit (value counts).
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;

    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_command(out, "webex-token", sub)?;
    }

    writeln!(out, ".SH ENVIRONMENT")?;
    for (var, what) in [
        ("WEBEX_TOKEN_CONFIG", "config file (--config)"),
        ("WEBEX_TOKEN_ENV_FILE", "env file (--env-file)"),
        (
            "WEBEX_API_BASE_URL",
            "API base URL (--api-base); then the config's apiBaseUrl; default https://webexapis.com/v1",
        ),
        ("WEBEX_TOKEN_LOCK_TIMEOUT", "--lock-timeout"),
        ("WEBEX_TOKEN_WRITE_MODE", "--write-mode"),
        ("WEBEX_TOKEN_AUDIT_LOG", "--audit-log"),
        ("WEBEX_TOKEN_LOG_FORMAT", "--log-format"),
        ("WEBEX_TOKEN_HTTP_TIMEOUT", "--http-timeout"),
        ("WEBEX_TOKEN_RETRY_BUDGET", "--retry-budget"),
        (
            "WEBEX_SERVICE_APP_REFRESH_TOKEN",
            "used for level 1 when the env file holds no refresh token (first run)",
        ),
        ("RUST_LOG", "overrides the log filter set by -v/-q"),
        ("NO_COLOR", "no colour even on a terminal"),
    ] {
        writeln!(out, ".TP\n\\fB{var}\\fR\n{}", roff(what))?;
    }

    writeln!(out, ".SH FILES")?;
    for (file, what) in [
        (
            "token-config.json",
            "service app and token-manager credentials; rewritten (keeping unknown keys) when level 3 or setup-oauth renews the personal token",
        ),
        (
            ".env",
            "the four WEBEX_SERVICE_APP_* keys; every other line is kept byte for byte",
        ),
        (".env.lock", "serializes runs on the same env file"),
        (
            ".env.audit.jsonl",
            "one JSON line per token operation; fingerprints, never tokens",
        ),
    ] {
        writeln!(out, ".TP\n\\fI{}\\fR\n{}", roff(file), roff(what))?;
    }

    writeln!(out, ".SH \"EXIT STATUS\"")?;
    for (code, what) in [
        (
            "0",
            "the access token works (for status: the report was made)",
        ),
        (
            "1",
            "transient failure: network, timeout, 5xx, 429 after retries, lock wait timed out",
        ),
        ("2", "usage error (bad flags)"),
        (
            "3",
            "config or input error: missing or malformed config, malformed or unreadable env file, missing field",
        ),
        (
            "4",
            "re-authorization required: every available level of the chain was rejected; run webex-token setup-oauth",
        ),
        (
            "5",
            "(status --check only) a credential that cannot renew itself expires within the window",
        ),
    ] {
        writeln!(out, ".TP\n\\fB{code}\\fR\n{}", roff(what))?;
    }
    man.render_version_section(out)?;
    Ok(())
}

fn write_command(out: &mut dyn std::io::Write, parent: &str, cmd: &Command) -> std::io::Result<()> {
    let name = format!("{parent} {}", cmd.get_name());
    let args: Vec<&Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_global_set() && !a.is_hide_set() && a.get_id() != "help")
        .collect();
    let usage: Vec<String> = args.iter().map(|a| usage_of(a)).collect();
    writeln!(out, ".SS \"{} {}\"", roff(&name), roff(&usage.join(" ")))?;
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        writeln!(out, "{}", roff(&about.to_string()))?;
    }
    for a in args {
        let help = a
            .get_long_help()
            .or(a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let default: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if default.is_empty() {
            String::new()
        } else {
            format!(" [default: {}]", default.join(", "))
        };
        writeln!(
            out,
            ".TP\n{}\n{}{}",
            roff_bold(&usage_of(a)),
            roff(&help),
            roff(&default)
        )?;
    }
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_command(out, &name, sub)?;
    }
    Ok(())
}

fn usage_of(a: &Arg) -> String {
    let value = a
        .get_value_names()
        .map(|v| {
            v.iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| format!("<{}>", a.get_id().as_str().to_uppercase()));
    let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
    match (a.get_long(), a.get_short()) {
        (Some(l), _) if takes_value => format!("--{l} {value}"),
        (Some(l), _) => format!("--{l}"),
        (None, Some(s)) => format!("-{s}"),
        (None, None) => value,
    }
}

/// Escapes text for roff: backslashes, and a leading dot or quote.
fn roff(s: &str) -> String {
    let t = s.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

fn roff_bold(s: &str) -> String {
    format!("\\fB{}\\fR", roff(s))
}
