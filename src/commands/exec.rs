//! `exec`: run a command with a working token in its environment.

use crate::cli::ExecArgs;
use crate::engine;
use crate::error::Error;
use crate::settings::Settings;
use crate::store;

pub async fn run(settings: &Settings, a: &ExecArgs) -> Result<u8, Error> {
    let (org, store) = settings.one_org("exec")?;
    let tokens = match engine::fresh_tokens(&store, &org, a.min_valid).await? {
        Some(t) => t,
        None => {
            engine::ensure_or_still_valid(
                &store,
                |c| settings.api(c),
                &engine::working_policy(a.min_valid, false),
                &org,
                &super::ctx_for(settings, "exec", store.env_path()),
            )
            .await?
        }
    };
    let (program, args) = a.command.split_first().expect("clap requires a command");
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    // A client secret handed to this run in the environment is not the
    // command's business.
    for k in crate::names::SECRET_ENV_VARS {
        cmd.env_remove(k);
    }
    for (k, v) in store::owned_values(&tokens) {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let program_name = program.to_string_lossy().into_owned();
    tracing::debug!("running `{program_name}` with the service-app token in its environment");
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Replace this process: signals, stdin and the exit status belong
        // to the command, as with `exec` in a shell. The lock was released
        // above (its file is closed on exec anyway).
        let err = cmd.exec();
        Err(Error::Exec {
            program: program_name,
            source: err,
        })
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status().map_err(|e| Error::Exec {
            program: program_name,
            source: e,
        })?;
        Ok(status.code().unwrap_or(1).clamp(0, 255) as u8)
    }
}
