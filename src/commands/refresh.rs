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
    let policy = Policy {
        min_valid: a.min_valid,
        force: a.force,
        mint: a.mint,
        dry_run: a.dry_run,
        check: Check::Validate,
    };
    let outcome = engine::ensure(
        &settings.files_store(),
        |c| settings.api(c),
        &policy,
        &OrgId::configured(),
        &super::ctx(settings, "refresh"),
    )
    .await?;
    printer.refresh(
        &outcome,
        clock::now(),
        &settings.env_path,
        &settings.config_path,
    );
    Ok(0)
}
