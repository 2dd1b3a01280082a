//! The clap command as the parser, `--help`, completions and man pages see
//! it: `cli.rs` holds the definitions, this module adds what is made from
//! other tables (the exit codes of error.rs) and the one thing clap cannot
//! express: global flags listed once, on `webex-token --help`, instead of
//! on every subcommand's page.

use crate::cli::Cli;
use crate::error::exit;
use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches};
use std::ffi::OsString;

/// The line each subcommand's page ends with, in place of ~40 lines of
/// global flags.
pub const GLOBAL_POINTER: &str =
    "Global options (--config, --env-file, --org, --json, -q, -v, ...): see `webex-token --help`";

/// The command the parser uses, and whose `--help` people read.
pub fn command() -> Command {
    let cmd = completion_command();
    let globals: Vec<Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let mut cmd = cmd;
    for name in names {
        cmd = cmd.mut_subcommand(name, |sc| hide_globals(sc, &globals));
    }
    cmd
}

/// The command with every flag shown everywhere: completions offer the
/// global flags after any subcommand too (`refresh --env-file <TAB>`).
pub fn completion_command() -> Command {
    Cli::command().after_help(exit_code_footer())
}

/// A subcommand with a hidden copy of each global flag: clap propagates a
/// global flag only to subcommands that lack one of that id, so the copy
/// (still global, so it reaches `datasources list` too) parses the same and
/// keeps the page short. The pointer goes after the examples.
fn hide_globals(sc: Command, globals: &[Arg]) -> Command {
    let after = match sc.get_after_help() {
        Some(examples) => format!("{examples}\n\n{GLOBAL_POINTER}"),
        None => GLOBAL_POINTER.to_string(),
    };
    let mut sc = sc.after_help(after);
    for a in globals {
        sc = sc.arg(a.clone().hide(true));
    }
    let names: Vec<String> = sc
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        sc = sc.mut_subcommand(name, |s| {
            let after = match s.get_after_help() {
                Some(examples) => format!("{examples}\n\n{GLOBAL_POINTER}"),
                None => GLOBAL_POINTER.to_string(),
            };
            s.after_help(after)
        });
    }
    sc
}

/// "Exit codes: 0 ok · 1 transient · ..." from error.rs's table.
fn exit_code_footer() -> String {
    let codes: Vec<String> = exit::TABLE
        .iter()
        .map(|(code, short, _)| format!("{code} {short}"))
        .collect();
    format!(
        "Exit codes: {} (`webex-token man` has the details)",
        codes.join(" · ")
    )
}

/// Parses a command line. A global flag given both before and after the
/// subcommand is combined when it repeats (`--org`, `-v`) and refused
/// otherwise: clap alone would keep the last level's value and silently
/// drop the other (`--org a refresh --org b` would work on `b` only).
pub fn parse(args: &[OsString]) -> Result<Cli, clap::Error> {
    let mut real = command();
    let mut matches = real.try_get_matches_from_mut(args)?;
    let mut cli = Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut real))?;
    let levels = match flags_on_both_sides(&real, args) {
        true => per_level_globals(args),
        // The common case (`webex-token token`, `webex-token -q refresh`):
        // no second parse.
        false => Vec::new(),
    };
    let mut orgs = Vec::new();
    let mut verbose = 0u8;
    let mut seen: Vec<&str> = Vec::new();
    for (id, values, count) in levels.iter().flatten() {
        match id.as_str() {
            "orgs" => orgs.extend(values.iter().cloned()),
            "verbose" => verbose = verbose.saturating_add(*count),
            // A flag without a value (`--json`, `-q`) means the same on
            // either side, or on both.
            _ if values.is_empty() => {}
            _ if seen.contains(&id.as_str()) => {
                let long = real
                    .get_arguments()
                    .find(|a| a.get_id() == id.as_str())
                    .and_then(|a| a.get_long())
                    .map(|l| format!("--{l}"))
                    .unwrap_or_else(|| id.clone());
                return Err(real.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "{long} is given both before and after the subcommand; give it once (a global flag may go on either side)"
                    ),
                ));
            }
            _ => seen.push(id),
        }
    }
    if levels.iter().flatten().any(|(id, _, _)| id == "orgs") {
        cli.global.orgs = orgs;
    }
    if levels.iter().flatten().any(|(id, _, _)| id == "verbose") {
        cli.global.verbose = verbose;
    }
    // clap checks `conflicts_with` within one level only.
    if cli.global.verbose > 0 && cli.global.quiet {
        return Err(real.error(
            clap::error::ErrorKind::ArgumentConflict,
            "-v/--verbose and -q/--quiet contradict each other; give one of them",
        ));
    }
    Ok(cli)
}

/// Whether some flag comes before, and some after, the first word that
/// names a subcommand: only then can a global flag be on two levels. (A
/// flag's value that happens to name a subcommand comes after its flag, so
/// this never misses a line that needs the second parse.)
fn flags_on_both_sides(cmd: &Command, args: &[OsString]) -> bool {
    let words: Vec<&str> = args
        .iter()
        .skip(1)
        .map(|a| a.to_str().unwrap_or_default())
        .take_while(|a| *a != "--")
        .collect();
    let is_sub = |w: &str| {
        cmd.get_subcommands()
            .any(|s| s.get_name() == w || s.get_all_aliases().any(|a| a == w))
    };
    let Some(at) = words.iter().position(|w| is_sub(w)) else {
        return false;
    };
    let flag = |w: &&str| w.starts_with('-') && *w != "-";
    words[..at].iter().any(flag) && words[at + 1..].iter().any(flag)
}

/// What each level of the command line (the top, the subcommand, its
/// subcommand) gave of the global flags: (id, values, times given). Parsed
/// with a shadow of the command in which the global flags are plain flags
/// of every level, so no level's values overwrite another's. Only called
/// after the real parse succeeded, so the shadow accepts the same line.
fn per_level_globals(args: &[OsString]) -> Vec<Vec<(String, Vec<String>, u8)>> {
    let real = completion_command();
    let globals: Vec<Arg> = real
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(shadow_of)
        .collect();
    let mut shadow = real;
    for g in &globals {
        shadow = shadow.mut_arg(g.get_id().clone(), |_| g.clone());
    }
    shadow = add_to_subcommands(shadow, &globals);
    let Ok(mut m) = shadow.try_get_matches_from(args) else {
        return Vec::new();
    };
    let mut levels = Vec::new();
    loop {
        let mut level = Vec::new();
        for g in &globals {
            let id = g.get_id().as_str();
            if m.value_source(id) != Some(clap::parser::ValueSource::CommandLine) {
                continue;
            }
            let (values, count) = if g.get_action().takes_values() {
                let v: Vec<String> = m
                    .get_many::<String>(id)
                    .map(|v| v.cloned().collect())
                    .unwrap_or_default();
                let n = u8::try_from(v.len()).unwrap_or(u8::MAX);
                (v, n)
            } else {
                (Vec::new(), m.get_count(id))
            };
            level.push((id.to_string(), values, count));
        }
        levels.push(level);
        match m.remove_subcommand() {
            Some((_, sub)) => m = sub,
            None => break,
        }
    }
    levels
}

/// A global flag as a plain one that accepts any text and may repeat, with
/// no environment variable, default or relation to other flags: the shadow
/// parse only records where each flag was given.
fn shadow_of(a: &Arg) -> Arg {
    use clap::builder::Resettable::Reset;
    let takes_values = matches!(a.get_action(), ArgAction::Set | ArgAction::Append);
    let s = a
        .clone()
        .global(false)
        .hide(true)
        .required(false)
        .env(Reset)
        .default_value(Reset)
        .requires(Reset)
        .conflicts_with(Reset)
        .overrides_with(Reset);
    if takes_values {
        s.action(ArgAction::Append)
            .value_parser(clap::value_parser!(String))
    } else {
        s.action(ArgAction::Count)
            .value_parser(clap::value_parser!(u8))
    }
}

fn add_to_subcommands(cmd: Command, globals: &[Arg]) -> Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let mut cmd = cmd;
    for name in names {
        cmd = cmd.mut_subcommand(name, |sc| {
            let mut sc = sc;
            for g in globals {
                sc = sc.arg(g.clone());
            }
            add_to_subcommands(sc, globals)
        });
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Cli, clap::Error> {
        let v: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse(&v)
    }

    #[test]
    fn command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn orgs_on_both_sides_combine() {
        let c = parse_str(&["webex-token", "--org", "a", "refresh", "--org", "b"]).unwrap();
        assert_eq!(c.global.orgs, ["a", "b"]);
        let c = parse_str(&["webex-token", "--org", "a", "ds", "list", "--org", "b"]).unwrap();
        assert_eq!(c.global.orgs, ["a", "b"]);
        let c = parse_str(&["webex-token", "refresh", "--org", "b", "--org", "c"]).unwrap();
        assert_eq!(c.global.orgs, ["b", "c"]);
        let c = parse_str(&["webex-token", "-v", "refresh", "-v"]).unwrap();
        assert_eq!(c.global.verbose, 2);
        let e = parse_str(&["webex-token", "-v", "refresh", "-q"])
            .err()
            .unwrap();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn a_single_valued_flag_on_both_sides_is_refused() {
        let e = match parse_str(&[
            "webex-token",
            "--env-file",
            "a",
            "refresh",
            "--env-file",
            "b",
        ]) {
            Err(e) => e,
            Ok(c) => panic!("accepted: {:?}", c.global.env_file),
        };
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--env-file is given both"), "{e}");
        // Once, on either side, is fine.
        for args in [
            &["webex-token", "--env-file", "a", "refresh"][..],
            &["webex-token", "refresh", "--env-file", "a"][..],
        ] {
            assert_eq!(parse_str(args).unwrap().global.env_file.to_str(), Some("a"));
        }
    }

    #[test]
    fn exec_arguments_are_not_global_flags() {
        let c = parse_str(&["webex-token", "--org", "a", "exec", "env", "--org", "b"]).unwrap();
        assert_eq!(c.global.orgs, ["a"]);
    }

    #[test]
    fn subcommand_pages_hide_the_globals_and_point_to_them() {
        let mut cmd = command();
        cmd.build();
        let help = cmd
            .find_subcommand_mut("refresh")
            .unwrap()
            .render_help()
            .to_string();
        assert!(!help.contains("Env file holding"), "{help}");
        assert!(help.contains("Examples:") && help.contains("webex-token --help"));
        let top = command().render_help().to_string();
        assert!(top.contains("--env-file") && top.contains("Exit codes: 0 ok"));
    }
}
