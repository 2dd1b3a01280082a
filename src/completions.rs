//! Shell completions and the man page, generated from the clap definition.

use clap::CommandFactory;

/// Writes the completion script for `shell`.
pub fn write(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(shell, &mut cmd, "webex-token", out);
}

/// Writes the man page (roff) for `webex-token`.
pub fn write_man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let cmd = crate::cli::Cli::command();
    clap_mangen::Man::new(cmd).render(out)
}
