//! One file per subcommand. They never import each other; what they share
//! lives below them (engine, output, settings). This file holds only the
//! two small constructors every token-using command needs.

pub mod completions;
pub mod datasources;
pub mod exec;
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
