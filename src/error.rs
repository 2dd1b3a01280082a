//! The one top-level error, and the one place where errors become the
//! contract's exit codes and the hints people read.

use crate::chain::{AttemptResult, ChainError, Level};
use crate::config::ConfigError;
use crate::datasources::DsError;
use crate::oauth_setup::SetupError;
use crate::store::StoreError;
use crate::store::env_file::EnvFileError;
use crate::webex::ApiError;

/// Exit codes of the contract.
pub mod exit {
    pub const OK: u8 = 0;
    pub const TRANSIENT: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const CONFIG: u8 = 3;
    pub const REAUTH: u8 = 4;
    pub const CHECK: u8 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    DataSource(#[from] DsError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("{message}")]
    CheckFailed { message: String, hint: String },
    #[error("could not run `{program}`: {source}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The contract's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => exit::CONFIG,
            Error::Store(StoreError::LockTimeout { .. }) => exit::TRANSIENT,
            Error::Store(_) => exit::CONFIG,
            Error::Chain(c) => match c {
                ChainError::Transient { .. } => exit::TRANSIENT,
                ChainError::ValidationRefused { .. } => exit::CONFIG,
                ChainError::Exhausted { .. } => exit::REAUTH,
                ChainError::NothingToTry { .. } => exit::CONFIG,
                ChainError::Config(_) => exit::CONFIG,
                ChainError::Persist(_) => exit::CONFIG,
            },
            Error::DataSource(e) => e.exit_code(),
            Error::Setup(e) => e.exit_code(),
            Error::CheckFailed { .. } => exit::CHECK,
            Error::Exec { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            },
            Error::Usage(_) => exit::USAGE,
            Error::Other(_) => exit::TRANSIENT,
        }
    }

    /// A short machine name for `--json`.
    pub fn kind(&self) -> &'static str {
        match self.exit_code() {
            exit::TRANSIENT => "transient",
            exit::USAGE => "usage",
            exit::CONFIG => "config",
            exit::REAUTH => "reauthorization_required",
            exit::CHECK => "expiring",
            _ => "exec",
        }
    }

    /// The chain levels tried before the error, if it came from the chain.
    pub fn attempts(&self) -> &[crate::chain::Attempt] {
        match self {
            Error::Chain(
                ChainError::Exhausted { attempts }
                | ChainError::NothingToTry { attempts }
                | ChainError::Transient { attempts, .. },
            ) => attempts,
            _ => &[],
        }
    }

    /// Lines that explain the error further (one per chain level).
    pub fn details(&self) -> Vec<String> {
        match self {
            Error::Chain(
                ChainError::Exhausted { attempts } | ChainError::NothingToTry { attempts },
            ) => attempts.iter().map(|a| a.to_string()).collect(),
            // The failing level is the error's own message; list the ones
            // before it.
            Error::Chain(ChainError::Transient { attempts, .. }) => attempts
                .iter()
                .filter(|a| !matches!(a.result, AttemptResult::Unavailable { .. }))
                .map(|a| a.to_string())
                .collect(),
            Error::Store(StoreError::Write {
                source, recovery, ..
            }) => {
                let mut v = vec![format!("cause: {source}")];
                match recovery {
                    Some(p) => v.push(format!(
                        "the new values are kept in {} (mode 0600): copy them into place by hand, then delete that file",
                        p.display()
                    )),
                    None => v.push("they could not be kept anywhere else either; run `webex-token refresh` again once the file is writable".into()),
                }
                v
            }
            _ => Vec::new(),
        }
    }

    /// What to do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config(e) => Some(e.hint()),
            Error::Chain(ChainError::Config(e)) => Some(e.hint()),
            Error::Setup(e) => e.hint(),
            Error::Store(StoreError::EnvFile(e)) => Some(match e {
                EnvFileError::Read { .. } => "check the path (--env-file / WEBEX_TOKEN_ENV_FILE) and its permissions".into(),
                EnvFileError::IsDirectory { .. } => "point --env-file at a file (it is created on the first refresh)".into(),
                _ => "fix the env file by hand (it must parse as a .env file); nothing was changed".into(),
            }),
            Error::Store(StoreError::LockTimeout { .. }) => Some(
                "another run is still refreshing; try again, or raise --lock-timeout".into(),
            ),
            Error::Store(StoreError::Lock { .. }) => Some("make sure the env file's directory is writable".into()),
            Error::Store(StoreError::Write { source, .. }) => Some(match source.to_string().contains("in-place") {
                true => "re-run with --write-mode in-place".into(),
                false => "make sure the file and its directory are writable, then run `webex-token refresh` again".into(),
            }),
            Error::Chain(ChainError::Transient { error, .. }) => Some(transient_hint(error)),
            Error::Chain(ChainError::ValidationRefused { .. }) => Some(
                "check --api-base / WEBEX_API_BASE_URL / `apiBaseUrl`: it should end in /v1, e.g. https://webexapis.com/v1".into(),
            ),
            Error::Chain(ChainError::Exhausted { attempts }) => {
                let forbidden = attempts.iter().any(|a| {
                    a.level == Level::PersonalAccessToken
                        && matches!(&a.result, AttemptResult::Rejected { error } if error.status() == Some(403))
                });
                let not_found = attempts.iter().any(|a| {
                    a.level == Level::PersonalAccessToken
                        && matches!(&a.result, AttemptResult::Rejected { error } if error.status() == Some(404))
                });
                Some(if forbidden {
                    "the personal access token needs scope spark:applications_token, and a Full Admin of `serviceApp.targetOrgId` must have authorized the service app in Control Hub; then run `webex-token setup-oauth`".into()
                } else if not_found {
                    "check `serviceApp.appId` in the config file (the service app's id on developer.webex.com)".into()
                } else {
                    "run `webex-token setup-oauth` to authorize the token-manager integration again, then `webex-token refresh`".into()
                })
            }
            Error::Chain(ChainError::NothingToTry { .. }) => Some(
                "fill in `tokenManager.personalAccessToken` in the config file, or run `webex-token setup-oauth` to configure the integration".into(),
            ),
            Error::Chain(ChainError::Persist(_)) => Some(
                "make sure the config file and its directory are writable".into(),
            ),
            Error::CheckFailed { hint, .. } => Some(hint.clone()),
            Error::DataSource(e) => e.hint(),
            Error::Exec { source, .. } => Some(match source.kind() {
                std::io::ErrorKind::NotFound => "check the command name and PATH".into(),
                std::io::ErrorKind::PermissionDenied => {
                    "the file is not executable (or a directory on its path is not searchable); check its permissions".into()
                }
                _ => "check that the command is a program this system can run".into(),
            }),
            Error::Usage(_) | Error::Other(_) => None,
        }
    }
}

pub(crate) fn transient_hint(e: &ApiError) -> String {
    match e.status() {
        Some(429) => "Webex is rate-limiting; the next scheduled run will try again".into(),
        Some(s) if s >= 500 => "Webex had a server error; try again later (quote the trackingId to Webex support if it persists)".into(),
        _ => "check the network and --api-base; the next scheduled run will try again".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Attempt;
    use crate::webex::{ErrorBody, TransientReason};
    use std::path::PathBuf;

    #[test]
    fn exit_codes_follow_the_contract() {
        let cfg = Error::Config(ConfigError::NotFound {
            path: PathBuf::from("/x"),
        });
        assert_eq!(cfg.exit_code(), 3);
        let transient = Error::Chain(ChainError::Transient {
            level: Level::ServiceRefreshToken,
            error: ApiError::Transient {
                reason: TransientReason::Timeout,
                body: None,
                attempts: 3,
            },
            attempts: vec![],
        });
        assert_eq!(transient.exit_code(), 1);
        let exhausted = Error::Chain(ChainError::Exhausted {
            attempts: vec![Attempt {
                level: Level::PersonalAccessToken,
                result: AttemptResult::Rejected {
                    error: ApiError::Rejected {
                        status: 401,
                        body: ErrorBody::default(),
                    },
                },
            }],
        });
        assert_eq!(exhausted.exit_code(), 4);
        assert!(
            exhausted
                .hint()
                .unwrap()
                .contains("webex-token setup-oauth")
        );
        assert_eq!(exhausted.details().len(), 1);
        let lock = Error::Store(StoreError::LockTimeout {
            path: "/x.lock".into(),
            waited: std::time::Duration::from_secs(1),
        });
        assert_eq!(lock.exit_code(), 1);
        assert_eq!(
            Error::CheckFailed {
                message: "x".into(),
                hint: "y".into()
            }
            .exit_code(),
            5
        );
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        let nf = Error::Exec {
            program: "x".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(nf.exit_code(), 127);
    }
}
