//! One file per subcommand. They never import each other; what they share
//! lives below them (engine, output, settings). This file holds only the
//! two small constructors every token-using command needs.

pub mod completions;
pub mod datasources;
pub mod exec;
pub mod init;
pub mod refresh;
pub mod setup_oauth;
pub mod status;
pub mod token;
pub mod watch;

use crate::engine::Ctx;
use crate::settings::Settings;
use std::path::Path;

/// The engine's view of this run.
fn ctx<'a>(settings: &'a Settings, command: &'static str) -> Ctx<'a> {
    ctx_for(settings, command, &settings.env_path)
}

/// The engine's view of this run for the org whose env file is `target`.
fn ctx_for<'a>(settings: &'a Settings, command: &'static str, target: &'a Path) -> Ctx<'a> {
    Ctx::of(settings, command, target)
}

/// Warns (once per file and run, as ssh does for a private key) when the
/// config or env file, which hold secrets, can be read by the group or by
/// others. Never an error: the file may be shared on purpose (a group that
/// runs the bot), but it should be a choice.
fn warn_if_readable_by_others(settings: &Settings) {
    use std::os::unix::fs::PermissionsExt;
    for (what, path) in [
        ("config file", &settings.config_path),
        ("env file", &settings.env_path),
    ] {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            tracing::warn!(
                "the {what} {} holds secrets and is readable by {} (mode {mode:04o}); run `chmod 600 {}` unless that is meant",
                path.display(),
                match (mode & 0o040 != 0, mode & 0o004 != 0) {
                    (true, true) => "its group and everyone else",
                    (true, false) => "its group",
                    _ => "everyone",
                },
                path.display()
            );
        }
    }
}
