//! The `webex-token` binary: everything happens in [`webex_token::run`].

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(webex_token::run(std::env::args_os()))
}
