//! Shell completions and man pages, generated from the clap definition the
//! parser uses (`output::help`): flags, their environment variables and
//! defaults, the examples of each command, and the exit codes of error.rs
//! cannot drift from what the program accepts.

use crate::cli::ManArgs;
use crate::error::{Error, exit};
use crate::names::{DEFAULT_CONFIG, DEFAULT_ENV_FILE, KEY_REFRESH_TOKEN};
use crate::output::help::{self, GLOBAL_POINTER};
use crate::store::files::{audit_path, lock_path};
use clap::{Arg, Command};
use std::io::Write;
use std::path::Path;

const BIN: &str = "webex-token";

/// `completions SHELL`: the script on stdout.
pub fn run(shell: clap_complete::Shell) -> Result<u8, Error> {
    crate::output::write_generated(&script(shell), "completion script")
}

/// The completion script for `shell`.
pub fn script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = help::completion_command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut buf);
    if shell == clap_complete::Shell::Bash {
        buf = fix_bash(buf);
    }
    buf
}

/// clap_complete's bash script names the top-level state `webex__token`
/// where it starts, but spells the case arms of every subcommand
/// `webex__subcmd__token__subcmd__...` (it turns each `-` of the whole path,
/// the binary's own included, into its separator), so nothing after the
/// subcommand ever completed: the upstream bug for binary names with a
/// hyphen, clap-rs/clap#6421. The arms are renamed to what the script sets;
/// once upstream is fixed the wrong spelling no longer occurs and this
/// changes nothing. The shell tests (tests/cli/completions.rs) catch either.
fn fix_bash(script: Vec<u8>) -> Vec<u8> {
    let bad = format!("{}__subcmd__{}", "webex", "token");
    let good = BIN.replace('-', "__");
    String::from_utf8(script)
        .map(|s| s.replace(&bad, &good).into_bytes())
        .unwrap_or_else(|e| e.into_bytes())
}

/// `man [COMMAND...]` prints one page; `man --dir DIR` writes them all.
pub fn man(args: &ManArgs) -> Result<u8, Error> {
    let mut cmd = help::completion_command();
    cmd.build();
    if let Some(dir) = &args.dir {
        return write_all_pages(&cmd, dir).map(|n| {
            // The one line of a successful run goes to stderr: stdout stays
            // free for the pages when they are printed instead.
            eprintln!("wrote {n} man pages to {}", dir.display());
            0
        });
    }
    let mut page = Vec::new();
    if args.command.is_empty() {
        write_top_page(&cmd, &mut page)
    } else {
        let Some(sub) = find(&cmd, &args.command) else {
            return Err(Error::Usage {
                message: format!("`{}` is not a command", args.command.join(" ")),
                hint: format!("the commands: {}", page_names(&cmd).join(", ")),
            });
        };
        write_command_page(&args.command.join(" "), sub, &mut page)
    }
    .map_err(|e| Error::Other(format!("could not render the man page: {e}")))?;
    crate::output::write_generated(&page, "man page")
}

fn find<'a>(cmd: &'a Command, path: &[String]) -> Option<&'a Command> {
    let mut c = cmd;
    for name in path {
        c = c
            .get_subcommands()
            .find(|s| s.get_name() == name || s.get_all_aliases().any(|a| a == name))?;
    }
    (!std::ptr::eq(c, cmd)).then_some(c)
}

/// Every page name: `webex-token`, `webex-token-refresh`, ...
fn page_names(cmd: &Command) -> Vec<String> {
    let mut v = Vec::new();
    for (path, _) in subcommands(cmd) {
        v.push(path.join(" "));
    }
    v
}

/// Each subcommand (at any depth) with its path, `help` left out.
fn subcommands(cmd: &Command) -> Vec<(Vec<String>, &Command)> {
    let mut out = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        out.push((vec![sub.get_name().to_string()], sub));
        for (mut path, s) in subcommands(sub) {
            path.insert(0, sub.get_name().to_string());
            out.push((path, s));
        }
    }
    out
}

fn write_all_pages(cmd: &Command, dir: &Path) -> Result<usize, Error> {
    let fail = |what: &Path, e: std::io::Error| {
        Error::Other(format!(
            "could not write the man page {}: {e}",
            what.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    let mut n = 0;
    let mut page = Vec::new();
    write_top_page(cmd, &mut page).map_err(|e| fail(dir, e))?;
    let path = dir.join(format!("{BIN}.1"));
    std::fs::write(&path, &page).map_err(|e| fail(&path, e))?;
    n += 1;
    for (names, sub) in subcommands(cmd) {
        let mut page = Vec::new();
        write_command_page(&names.join(" "), sub, &mut page).map_err(|e| fail(dir, e))?;
        let path = dir.join(format!("{BIN}-{}.1", names.join("-")));
        std::fs::write(&path, &page).map_err(|e| fail(&path, e))?;
        n += 1;
    }
    Ok(n)
}

/// `webex-token(1)`: every flag, a section per command (so the one page is
/// enough where only it is installed), and the shared sections.
fn write_top_page(cmd: &Command, out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    writeln!(out, ".SH COMMANDS")?;
    for (path, sub) in subcommands(cmd) {
        write_command_section(out, &path.join(" "), sub)?;
    }
    write_shared_sections(cmd, out)?;
    writeln!(out, ".SH \"SEE ALSO\"")?;
    let pages: Vec<String> = subcommands(cmd)
        .iter()
        .map(|(p, _)| format!("\\fB{}\\fR(1)", roff(&format!("{BIN}-{}", p.join("-")))))
        .collect();
    writeln!(out, "{}", pages.join(", "))?;
    man.render_version_section(out)?;
    Ok(())
}

/// `webex-token-refresh(1)` and the like: the command's own flags, its
/// examples, a pointer to the global flags, and the shared sections.
fn write_command_page(path: &str, sub: &Command, out: &mut dyn Write) -> std::io::Result<()> {
    let title = format!("{BIN}-{}", path.replace(' ', "-"));
    let version = sub.get_version().unwrap_or(env!("CARGO_PKG_VERSION"));
    writeln!(
        out,
        ".TH {} 1 \"\" \"{} {}\" \"User Commands\"",
        roff(&title).to_uppercase(),
        BIN,
        roff(version)
    )?;
    writeln!(out, ".SH NAME")?;
    let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
    writeln!(out, "{} \\- {}", roff(&title), roff(&about))?;
    writeln!(out, ".SH SYNOPSIS")?;
    let args = own_args(sub);
    let mut synopsis = vec![format!("{BIN} {path}")];
    synopsis.extend(args.iter().map(|a| match a.is_required_set() {
        true => usage_of(a),
        false => format!("[{}]", usage_of(a)),
    }));
    if sub.has_subcommands() {
        synopsis.push("<COMMAND>".into());
    }
    writeln!(out, "\\fB{}\\fR", roff(&synopsis.join(" ")))?;
    if let Some(long) = sub.get_long_about() {
        writeln!(out, ".SH DESCRIPTION\n{}", roff(&long.to_string()))?;
    }
    if !args.is_empty() {
        writeln!(out, ".SH OPTIONS")?;
        write_args(out, &args)?;
    }
    let subs: Vec<_> = sub
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .collect();
    if !subs.is_empty() {
        writeln!(out, ".SH COMMANDS")?;
        for s in subs {
            let about = s.get_about().map(|a| a.to_string()).unwrap_or_default();
            writeln!(
                out,
                ".TP\n\\fB{}\\fR\n{} (\\fB{}\\fR(1))",
                roff(s.get_name()),
                roff(&about),
                roff(&format!("{title}-{}", s.get_name()))
            )?;
        }
    }
    if let Some(examples) = examples(sub) {
        writeln!(out, ".SH EXAMPLES\n.nf")?;
        for line in examples.lines() {
            writeln!(out, "{}", roff(line))?;
        }
        writeln!(out, ".fi")?;
    }
    writeln!(out, ".SH \"GLOBAL OPTIONS\"")?;
    writeln!(
        out,
        "The global options (\\-\\-config, \\-\\-env\\-file, \\-\\-org, \\-\\-json, \\-q, \\-v, ...) go before or after the command; they are listed in \\fB{BIN}\\fR(1)."
    )?;
    write_shared_sections(sub, out)?;
    writeln!(out, ".SH \"SEE ALSO\"\n\\fB{BIN}\\fR(1)")?;
    Ok(())
}

/// A command's examples: its `after_help` without the pointer that
/// `output::help` appends.
fn examples(cmd: &Command) -> Option<String> {
    let text = cmd.get_after_help()?.to_string();
    let text = text.replace(GLOBAL_POINTER, "");
    let text = text.trim();
    let body = text
        .strip_prefix("Examples:")
        .unwrap_or(text)
        .trim_matches('\n');
    (!body.trim().is_empty()).then(|| body.to_string())
}

/// ENVIRONMENT, FILES and EXIT STATUS, from the parser's own definitions.
fn write_shared_sections(cmd: &Command, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, ".SH ENVIRONMENT")?;
    for a in cmd.get_arguments().filter(|a| a.get_env().is_some()) {
        let var = a.get_env().unwrap_or_default().to_string_lossy();
        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        writeln!(
            out,
            ".TP\n\\fB{}\\fR\n{} (as {})",
            roff(&var),
            roff(&help),
            roff_bold(&format!("--{}", a.get_long().unwrap_or_default()))
        )?;
    }
    for (var, what) in OTHER_ENV {
        writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(var), roff(what))?;
    }

    writeln!(out, ".SH FILES")?;
    let config = default_of(cmd, "config").unwrap_or_else(|| DEFAULT_CONFIG.into());
    let env = default_of(cmd, "env_file").unwrap_or_else(|| DEFAULT_ENV_FILE.into());
    let lock = lock_path(Path::new(&env)).display().to_string();
    let audit = audit_path(Path::new(&env)).display().to_string();
    for (file, what) in [
        (
            config.as_str(),
            "the config file (--config): service app and token-manager credentials; rewritten (keeping unknown keys) when level 3 or setup-oauth renews the personal token",
        ),
        (
            env.as_str(),
            "the env file (--env-file): the four WEBEX_SERVICE_APP_* keys; every other line is kept byte for byte",
        ),
        (lock.as_str(), "serializes runs on the same env file"),
        (
            audit.as_str(),
            "the audit log (--audit-log): one JSON line per token operation; fingerprints, never tokens",
        ),
    ] {
        writeln!(out, ".TP\n\\fI{}\\fR\n{}", roff(file), roff(what))?;
    }

    writeln!(out, ".SH \"EXIT STATUS\"")?;
    for (code, _, what) in exit::TABLE {
        writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff(code), roff(what))?;
    }
    Ok(())
}

/// Environment variables the program reads that belong to no flag.
const OTHER_ENV: &[(&str, &str)] = &[
    (
        KEY_REFRESH_TOKEN,
        "used for level 1 when the env file holds no refresh token (first run)",
    ),
    ("RUST_LOG", "overrides the log filter set by -v/-q"),
    ("NO_COLOR", "no colour even on a terminal"),
];

fn default_of(cmd: &Command, id: &str) -> Option<String> {
    cmd.get_arguments()
        .find(|a| a.get_id() == id)?
        .get_default_values()
        .first()
        .map(|v| v.to_string_lossy().into_owned())
}

/// A command's own arguments: not the global ones, not `--help`.
fn own_args(cmd: &Command) -> Vec<&Arg> {
    cmd.get_arguments()
        .filter(|a| !a.is_global_set() && !a.is_hide_set() && a.get_id() != "help")
        .collect()
}

fn write_command_section(out: &mut dyn Write, path: &str, cmd: &Command) -> std::io::Result<()> {
    let args = own_args(cmd);
    let usage: Vec<String> = args.iter().map(|a| usage_of(a)).collect();
    writeln!(
        out,
        ".SS \"{} {} {}\"",
        BIN,
        roff(path),
        roff(&usage.join(" "))
    )?;
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        writeln!(out, "{}", roff(&about.to_string()))?;
    }
    write_args(out, &args)?;
    if let Some(examples) = examples(cmd) {
        writeln!(out, ".PP\nExamples:\n.nf")?;
        for line in examples.lines() {
            writeln!(out, "{}", roff(line))?;
        }
        writeln!(out, ".fi")?;
    }
    Ok(())
}

fn write_args(out: &mut dyn Write, args: &[&Arg]) -> std::io::Result<()> {
    for a in args {
        let help = a
            .get_long_help()
            .or(a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
        // A flag's implicit `false` says nothing.
        let default: Vec<String> = if takes_value {
            a.get_default_values()
        } else {
            &[]
        }
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

/// Escapes text for roff: backslashes, hyphens, characters beyond ASCII
/// (as groff's `\[uXXXX]`, so the page needs no input encoding), and a
/// leading dot or quote on any line.
fn roff(s: &str) -> String {
    s.replace('\\', "\\e")
        .replace('-', "\\-")
        .chars()
        .map(|c| match c.is_ascii() {
            true => c.to_string(),
            false => format!("\\[u{:04X}]", u32::from(c)),
        })
        .collect::<String>()
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn roff_bold(s: &str) -> String {
    format!("\\fB{}\\fR", roff(s))
}
