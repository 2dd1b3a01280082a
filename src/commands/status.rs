//! `status`: gather what is stored and what could renew it; `output::status`
//! renders it. Never writes.

use crate::agent::reauth;
use crate::chain::{self, Level};
use crate::cli::StatusArgs;
use crate::clock;
use crate::config::Absence;
use crate::config::Config;
use crate::error::{Error, exit};
use crate::output::status::{
    CheckResult, Credential, Online, Reauth, StatusReport, check_message, expiring_line,
};
use crate::output::{OrgResult, Printer, expiry_text};
use crate::settings::{OrgTarget, Settings};
use crate::store::EnvState;
use crate::tokens::OrgId;
use crate::webex::{ApiError, WebexApi};
use futures_util::{StreamExt, stream};

pub async fn run(settings: &Settings, printer: &Printer, a: &StatusArgs) -> Result<u8, Error> {
    super::warn_if_readable_by_others(settings);
    // The config first (its errors come first for `status`), then the env file.
    let config = settings.load_config()?;
    if let Some(targets) = settings.org_targets_in(&config, None)? {
        return Ok(over_orgs(settings, printer, a, &config, &targets).await);
    }
    let (state, shared) = settings.store().peek(&OrgId::configured()).await?;
    let config = shared.unwrap_or(config);
    let report = gather(settings, a, &config, &state).await;
    let code = report.failure.as_ref().map_or(0, Error::exit_code);
    printer.status(&report);
    Ok(code)
}

/// A section per org of `serviceApp.orgs` (at most `--concurrency` online
/// checks at once); `--check` covers every org. Exit code: the worst.
async fn over_orgs(
    settings: &Settings,
    printer: &Printer,
    a: &StatusArgs,
    config: &Config,
    targets: &[OrgTarget],
) -> u8 {
    let runs = targets.iter().map(|t| async move {
        let mut config = config.clone();
        if let Some((index, id)) = t.org.listed_target() {
            config.service_app = config.service_app.for_org(index, id);
        }
        let result = match t.store.peek(&t.org).await {
            Ok((state, shared)) => {
                if let Some(mut c) = shared {
                    c.service_app = config.service_app.clone();
                    config = c;
                }
                Ok(gather(settings, a, &config, &state).await)
            }
            Err(e) => Err(Error::from(e)),
        };
        OrgResult {
            name: t.name(),
            target_org_id: t.org.listed_target().map(|(_, id)| id).unwrap_or_default(),
            env_path: t.store.env_path(),
            result,
        }
    });
    let reports: Vec<OrgResult<'_, StatusReport>> = stream::iter(runs)
        .buffered(settings.concurrency)
        .collect()
        .await;
    let code = exit::worst(reports.iter().map(|r| match &r.result {
        Ok(report) => report.failure.as_ref().map_or(0, Error::exit_code),
        Err(e) => e.exit_code(),
    }));
    // One row per org unless the person asked for detail: --wide, or
    // naming the orgs with --org.
    let compact = !a.wide && settings.orgs.is_empty();
    printer.status_orgs(&reports, code, compact);
    code
}

/// `watch --rt-min-valid`'s default (what `status` says a person is asked
/// within).
const WATCH_RT_MIN_VALID: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

async fn gather(
    settings: &Settings,
    a: &StatusArgs,
    config: &Config,
    state: &EnvState,
) -> StatusReport {
    let now = clock::now();
    let t = &state.tokens;
    let integ = config.integration.as_ref();
    let levels = chain::availability(config, t, now).to_vec();

    let online = if a.online {
        let api = settings.api(config);
        Some(match &t.access_token {
            None => Online::NoToken,
            Some(tok) => match api.validate(tok).await {
                Ok(()) => Online::Works {
                    status: 200,
                    detail: None,
                },
                Err(e @ ApiError::Refused { status: 403, .. }) => Online::Works {
                    status: 403,
                    detail: Some(e.to_string()),
                },
                Err(e @ ApiError::Transient { .. }) => Online::Unknown {
                    status: e.status(),
                    detail: e.to_string(),
                },
                Err(e) => Online::Fails {
                    status: e.status(),
                    detail: e.to_string(),
                },
            },
        })
    } else {
        None
    };

    let placeholder = |v: Option<&Absence>| matches!(v, Some(Absence::Placeholder));
    let credentials = [
        Credential {
            label: "service-app access token",
            token: t.access_token.clone(),
            expires_at: t.access_expires_at,
            renews_itself: true,
            placeholder: false,
        },
        Credential {
            label: "service-app refresh token",
            token: t.refresh_token.clone(),
            expires_at: t.refresh_expires_at,
            renews_itself: false,
            placeholder: false,
        },
        Credential {
            label: "personal access token",
            token: config.personal_access_token.get().cloned(),
            expires_at: config.personal_expires_at,
            renews_itself: config.usable_integration().is_some(),
            placeholder: placeholder(config.personal_access_token.value.as_ref().err()),
        },
        Credential {
            label: "integration refresh token",
            token: integ.and_then(|i| i.refresh_token.get().cloned()),
            expires_at: integ.and_then(|i| i.refresh_expires_at),
            renews_itself: false,
            placeholder: placeholder(integ.and_then(|i| i.refresh_token.value.as_ref().err())),
        },
    ];

    // `--check`: credentials that cannot renew themselves. One whose
    // expiry is unknown cannot be shown to outlast the window: it fails the
    // check too (a monitor must not pass on what it cannot see).
    let check = a.check.map(|window| {
        let limit = clock::after(now, window.as_secs());
        let expiring = credentials
            .iter()
            .filter(|c| !c.renews_itself)
            .filter_map(|c| match c.expires_at {
                Some(exp) => (exp <= limit).then(|| expiring_line(c.label, exp, now)),
                None if c.token.is_some() => Some(format!("{} expiry unknown", c.label)),
                None => None,
            })
            .collect::<Vec<_>>();
        CheckResult { window, expiring }
    });
    let failure = check
        .as_ref()
        .filter(|c| !c.expiring.is_empty())
        .map(|c| check_failure(c, &levels));

    let mut notes = config.notes.clone();
    // The integration's refresh token is not extended by use: say when a
    // person will be needed (watch asks ahead, within its --rt-min-valid).
    if let Some(e) = integ
        .filter(|i| i.refresh_token.is_set())
        .and_then(|i| i.refresh_expires_at)
        && e <= clock::after(now, WATCH_RT_MIN_VALID.as_secs())
    {
        notes.push(format!(
            "the integration refresh token {} and webex-token cannot roll it: a person must authorize the integration again (`watch` asks for that with the device grant within its --rt-min-valid, 14d by default; or run `webex-token setup-oauth`)",
            expiry_text(Some(e), now)
        ));
    }
    StatusReport {
        now,
        env_file: state.path.clone(),
        env_file_exists: state.doc.is_some(),
        store: settings.store_description(),
        config_file: config.path.clone(),
        state_file: config.state_path.clone().map(|p| {
            let exists = p.exists();
            (p, exists)
        }),
        secret_sources: config
            .secret_origins
            .iter()
            .map(|(key, origin)| (key.clone(), origin.to_string()))
            .collect(),
        api_base: settings.api_base(Some(config)),
        credentials,
        levels,
        online,
        check,
        failure,
        notes,
        reauth: reauth_record(settings).await,
    }
}

/// What `watch` saved about a device grant it asked a person for (with
/// etcd: whichever host of the fleet runs it).
async fn reauth_record(settings: &Settings) -> Option<Reauth> {
    let p = reauth::read_saved(&settings.store()).await?;
    Some(Reauth {
        pending: p.is_pending(),
        reason: p.reason,
        verify_url: p.verify_url,
        user_code: p.user_code,
        code_expires_at: p.code_expires_at,
        window_started_at: p.window_started_at,
        window_ends_at: p.window_ends_at,
        codes_requested: p.codes_requested,
        stopped_reason: p.stopped_reason,
    })
}

/// `--check` failing: one concrete step per kind of credential that lapses.
fn check_failure(c: &CheckResult, levels: &[(Level, Option<String>)]) -> Error {
    let level2_ready = levels
        .iter()
        .any(|(l, gap)| *l == Level::PersonalAccessToken && gap.is_none());
    let lapsing = |label: &str| c.expiring.iter().any(|e| e.starts_with(label));
    let mut hints = Vec::new();
    if lapsing("service-app refresh token") {
        hints.push(if level2_ready {
            "`webex-token refresh --mint` replaces the service-app refresh token now (level 2 mints a new pair; left alone, level 2 takes over when it lapses)"
        } else {
            "the service-app refresh token can only be replaced by level 2: set up a working personal access token or `webex-token setup-oauth`, then `webex-token refresh --mint`"
        });
    }
    if c.expiring.iter().any(|e| e.ends_with("expiry unknown")) {
        hints.push("an unknown expiry becomes known when webex-token renews that credential (`webex-token refresh --mint` for the service-app refresh token, `webex-token setup-oauth` for the token-manager tokens)");
    }
    if lapsing("personal access token") {
        hints.push("paste a new personal access token into the config file, or run `webex-token setup-oauth` once so the integration renews it");
    }
    if lapsing("integration refresh token") {
        hints.push("run `webex-token setup-oauth` to authorize the integration again before its refresh token lapses");
    }
    Error::CheckFailed {
        message: check_message(c.window, &c.expiring),
        hint: hints.join("; "),
    }
}
