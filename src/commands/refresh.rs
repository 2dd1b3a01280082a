//! `refresh`: make sure the stored access token works.

use crate::chain::{Check, Policy};
use crate::cli::RefreshArgs;
use crate::clock;
use crate::engine;
use crate::error::Error;
use crate::output::Printer;
use crate::settings::Settings;
use crate::tokens::OrgId;

pub async fn run(settings: &Settings, printer: &Printer, a: &RefreshArgs) -> Result<u8, Error> {
    let store = settings.files_store();
    let org = OrgId::configured();
    let ctx = super::ctx(settings, "refresh");
    let policy = Policy {
        min_valid: a.min_valid,
        force: a.force,
        mint: a.mint,
        dry_run: a.dry_run,
        check: Check::Validate,
    };
    // `--rt-min-valid`: roll the pair through level 2 while the old refresh
    // token still works (the policy `watch` follows, for cron users).
    let roll = !a.mint
        && match a.rt_min_valid {
            Some(window) => engine::refresh_token_expiring(&store, &org, window).await?,
            None => false,
        };
    let outcome = if roll {
        tracing::info!(
            "the service-app refresh token expires within --rt-min-valid: minting a new pair with level 2"
        );
        let mint = Policy {
            mint: true,
            ..policy.clone()
        };
        match engine::ensure(&store, |c| settings.api(c), &mint, &org, &ctx).await {
            Ok(o) => o,
            // The old pair still works: keep the token working with it and
            // say the roll failed (a transient failure is reported as such).
            Err(e) if e.exit_code() != crate::error::exit::TRANSIENT => {
                tracing::warn!(
                    "could not mint a new token pair ({e}); the service-app refresh token will lapse unless this is fixed"
                );
                engine::ensure(&store, |c| settings.api(c), &policy, &org, &ctx).await?
            }
            Err(e) => return Err(e),
        }
    } else {
        engine::ensure(&store, |c| settings.api(c), &policy, &org, &ctx).await?
    };
    printer.refresh(
        &outcome,
        clock::now(),
        &settings.env_path,
        &settings.config_path,
    );
    Ok(0)
}
