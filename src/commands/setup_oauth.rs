//! `webex-token setup-oauth`: the one-time, person-in-the-loop
//! authorization that gives the token-manager integration its refresh token.
//!
//! A thin command: read the integration's client id and secret from the
//! config (whichever layout is filled in, checked before anything is bound
//! or opened), let `oauth::authorize` get the tokens from the person
//! (browser callback, pasted address or device grant), store them under the
//! config lock into the layout in use, answer the browser, append the audit
//! line and print fingerprints of what was stored.

use crate::audit;
use crate::cli::SetupOauthArgs;
use crate::clock;
use crate::config::{Absence, Config};
use crate::engine;
use crate::error::{Error, SetupError};
use crate::oauth::{self, Authorized, Mode};
use crate::output::{self, Printer, expiry_text};
use crate::secret::{SecretString, fingerprint};
use crate::settings::Settings;
use crate::webex::{ClientCredentials, HttpApi, TokenGrant};
use std::io::IsTerminal;
use std::path::PathBuf;

/// Runs `setup-oauth`; returns the exit code on success.
pub async fn run(settings: &Settings, printer: &Printer, a: &SetupOauthArgs) -> Result<u8, Error> {
    let config = settings.load_config()?;
    let (client_id, client_secret) = config
        .integration_client()
        .map_err(|gaps| missing_client(&config, gaps))?;

    if a.manual && a.port == 0 {
        return Err(SetupError::ManualNeedsPort.into());
    }
    let mode = if a.device {
        Mode::Device
    } else if a.manual {
        Mode::Manual { port: a.port }
    } else {
        Mode::Browser { port: a.port }
    };
    let http = settings.http(Some(&config));
    let opts = oauth::Options {
        timeout: a.timeout,
        open_browser: !a.no_browser,
        countdown: std::io::stderr().is_terminal() && !printer.quiet,
        no_delay: http.retry.no_delay,
    };
    let api = HttpApi::new(http);
    let client = ClientCredentials {
        client_id: &client_id,
        client_secret: &client_secret,
    };
    let Authorized {
        grant,
        flow,
        redirect_uri,
        browser,
    } = oauth::authorize(&api, &client, mode, &opts).await?;
    let result = store_grant(settings, &config, grant, &client_id, &client_secret, flow).await;
    if let Some(b) = browser {
        b.done(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
    }
    let stored = result?;
    report(printer, &stored, redirect_uri.as_deref(), flow);
    Ok(0)
}

/// Every key that keeps the integration's client from being used.
fn missing_client(config: &Config, gaps: Vec<(String, Absence)>) -> Error {
    let fields = gaps.iter().map(|(k, _)| format!("`{k}`")).collect();
    let reasons = gaps.iter().map(|(k, a)| format!("`{k}` {a}")).collect();
    SetupError::MissingClient {
        path: config.path.clone(),
        fields,
        reasons,
    }
    .into()
}

/// What was stored, for the report and the audit line.
struct Stored {
    config_path: PathBuf,
    /// The state file the tokens went to instead of the config, if any.
    state_path: Option<PathBuf>,
    /// The etcd key the tokens went to instead (`--store etcd://`).
    etcd_key: Option<String>,
    personal: SecretString,
    personal_expires_at: Option<jiff::Timestamp>,
    refresh: Option<SecretString>,
    refresh_expires_at: Option<jiff::Timestamp>,
    client_id: String,
    client_secret_fp: String,
}

/// Writes the tokens (and the client credentials they belong to) into the
/// config file, and appends the audit line.
async fn store_grant(
    settings: &Settings,
    config: &Config,
    grant: TokenGrant,
    client_id: &str,
    client_secret: &SecretString,
    flow: &str,
) -> Result<Stored, Error> {
    let update = engine::authorization_update(grant, client_id, client_secret, clock::now());
    let refresh_expires_at = update.integration_refresh_expires_at;
    if update.integration_refresh_token.is_none() {
        tracing::warn!(
            "the token endpoint returned no refresh token; the personal access token is stored, but level 3 will not be able to renew it"
        );
    }
    let store = settings.store();
    engine::save_authorization(&store, &update, settings.lock_timeout).await?;
    // A link `watch` saved for a person (docs/reauthorize.md) is stale now,
    // on this host and (etcd) for the fleet.
    crate::agent::reauth::forget(settings).await;
    let stored = Stored {
        config_path: config.path.clone(),
        state_path: config.state_path.clone(),
        etcd_key: store.etcd_manager_key(),
        personal: update.personal_access_token,
        personal_expires_at: update.personal_expires_at,
        refresh: update.integration_refresh_token,
        refresh_expires_at,
        client_id: client_id.to_string(),
        client_secret_fp: fingerprint(client_secret),
    };
    if let Some(path) = &settings.audit_log {
        audit::record(
            path,
            &audit::SetupEvent {
                command: "setup-oauth",
                operation: "setup",
                flow,
                outcome: "ok",
                personal_token_fingerprint: fingerprint(&stored.personal),
                personal_token_expires_at: stored.personal_expires_at.map(clock::format_utc),
                integration_refresh_token_fingerprint: stored.refresh.as_ref().map(fingerprint),
                integration_refresh_token_expires_at: stored
                    .refresh_expires_at
                    .map(clock::format_utc),
                integration_client_id: &stored.client_id,
                integration_client_secret_fingerprint: &stored.client_secret_fp,
                config_file: stored.config_path.display().to_string(),
            },
        );
    }
    Ok(stored)
}

/// Prints what was stored: fingerprints and expiry times, never values.
fn report(printer: &Printer, s: &Stored, redirect_uri: Option<&str>, flow: &str) {
    let now = clock::now();
    let value = output::setup_json(
        &output::Setup {
            flow,
            config_file: &s.config_path,
            redirect_uri,
            client_id: &s.client_id,
            client_secret_fingerprint: &s.client_secret_fp,
            personal: &s.personal,
            personal_expires_at: s.personal_expires_at,
            refresh: s.refresh.as_ref(),
            refresh_expires_at: s.refresh_expires_at,
            state_file: s.state_path.as_deref(),
            etcd_key: s.etcd_key.as_deref(),
        },
        now,
    );
    let mut human = match &s.etcd_key {
        Some(key) => format!(
            "ok: authorized the token-manager integration; saved in the etcd key {key} (the integration client in {}):\n",
            s.state_path.as_ref().unwrap_or(&s.config_path).display()
        ),
        None => format!(
            "ok: authorized the token-manager integration; saved in {}:\n",
            s.state_path.as_ref().unwrap_or(&s.config_path).display()
        ),
    };
    human.push_str(&format!(
        "  personal access token      {}  {}\n",
        fingerprint(&s.personal),
        expiry_text(s.personal_expires_at, now)
    ));
    match &s.refresh {
        Some(r) => human.push_str(&format!(
            "  integration refresh token  {}  {}\n",
            fingerprint(r),
            expiry_text(s.refresh_expires_at, now)
        )),
        None => human.push_str(
            "  integration refresh token  none returned by Webex (the old one, if any, is kept)\n",
        ),
    }
    human.push_str(&format!(
        "  integration client         {} (secret {})\n",
        s.client_id, s.client_secret_fp
    ));
    if s.refresh.is_some() {
        human.push_str(
            "`webex-token refresh` will now renew the personal access token by itself when it expires.",
        );
    } else {
        human.push_str("without a refresh token the personal access token cannot be renewed by itself; run `webex-token setup-oauth` again before it expires.");
    }
    printer.report(&value, &human);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webex::ApiError;
    use std::time::Duration;

    #[test]
    fn exit_codes() {
        assert_eq!(
            Error::from(SetupError::PortInUse { port: 1 }).exit_code(),
            3
        );
        assert_eq!(
            Error::from(SetupError::TimedOut {
                after: Duration::from_secs(1),
                refused: 0
            })
            .exit_code(),
            1
        );
        let denied = SetupError::Authorization {
            error: "access_denied".into(),
            description: None,
        };
        assert_eq!(Error::from(denied).exit_code(), 4);
        let expired = SetupError::Authorization {
            error: "invalid_grant".into(),
            description: None,
        };
        assert_eq!(Error::from(expired).exit_code(), 1);
        assert!(
            Error::from(SetupError::PortInUse { port: 3000 })
                .hint()
                .unwrap()
                .contains("redirect URI")
        );
        let port_hint = Error::from(SetupError::PortInUse { port: 3000 })
            .hint()
            .unwrap();
        assert!(port_hint.contains("--manual") && port_hint.contains("--device"));
        let device = |status| {
            SetupError::Device(ApiError::Refused {
                status,
                body: Default::default(),
            })
        };
        assert_eq!(Error::from(device(404)).exit_code(), 3);
        assert!(
            Error::from(device(404))
                .hint()
                .unwrap()
                .contains("--api-base")
        );
        assert_eq!(Error::from(device(400)).exit_code(), 4);
        let hint = Error::from(device(400)).hint().unwrap();
        assert!(hint.contains("redirect URIs"));
        for helper in ["a", "r", "k", "d"] {
            assert!(
                hint.contains(&format!("https://oauth-helper-{helper}.wbx2.com/helperservice/v1/actions/device/callback")),
                "{hint}"
            );
        }
    }
}
