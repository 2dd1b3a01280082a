//! Shell completions, generated from the clap definition.

use clap::CommandFactory;

/// Writes the completion script for `shell`.
pub fn write(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(shell, &mut cmd, "webex-token", out);
}
