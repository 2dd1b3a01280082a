//! `refresh`: make sure the stored access token works.

use crate::chain::{Check, Policy};
use crate::cli::RefreshArgs;
use crate::clock;
use crate::engine;
use crate::error::{Error, exit};
use crate::output::{OrgResult, Printer};
use crate::settings::{OrgTarget, Settings};
use crate::tokens::OrgId;
use futures_util::{StreamExt, stream};

pub async fn run(settings: &Settings, printer: &Printer, a: &RefreshArgs) -> Result<u8, Error> {
    let policy = Policy {
        min_valid: a.min_valid,
        force: a.force,
        mint: a.mint,
        dry_run: a.dry_run,
        check: Check::Validate,
    };
    if let Some(targets) = settings.org_targets(None)? {
        return Ok(over_orgs(settings, printer, &policy, &targets).await);
    }
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

/// `refresh` for each org of `serviceApp.orgs`, at most `--concurrency` at
/// once; one org's failure never stops the others. Exit code: the worst.
async fn over_orgs(
    settings: &Settings,
    printer: &Printer,
    policy: &Policy,
    targets: &[OrgTarget],
) -> u8 {
    let runs = targets.iter().enumerate().map(|(i, t)| async move {
        let ctx = super::ctx_for(settings, "refresh", &t.store.env_path);
        let r = engine::ensure(&t.store, |c| settings.api(c), policy, &t.org, &ctx).await;
        (i, r)
    });
    let mut done: Vec<(usize, Result<_, Error>)> = stream::iter(runs)
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    done.sort_by_key(|(i, _)| *i);
    let results: Vec<OrgResult<'_, _>> = done
        .into_iter()
        .map(|(i, result)| {
            let t = &targets[i];
            OrgResult {
                name: t.name(),
                target_org_id: t.org.listed_target().map(|(_, id)| id).unwrap_or_default(),
                env_path: &t.store.env_path,
                result,
            }
        })
        .collect();
    let code = exit::worst(results.iter().map(|r| match &r.result {
        Ok(_) => 0,
        Err(e) => e.exit_code(),
    }));
    printer.refresh_orgs(&results, clock::now(), &settings.config_path, code);
    code
}
