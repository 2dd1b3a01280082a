//! `refresh`: make sure the stored access token works (each org's, with
//! `serviceApp.orgs`).

use crate::chain::{Action, Check, Outcome, Policy};
use crate::cli::RefreshArgs;
use crate::clock;
use crate::engine::{self, Ctx};
use crate::error::{Error, exit};
use crate::output::progress::Progress;
use crate::output::{OrgResult, Printer};
use crate::settings::{OrgTarget, Settings};
use crate::store::Store;
use crate::tokens::OrgId;
use futures_util::{StreamExt, stream};
use std::time::Duration;

pub async fn run(settings: &Settings, printer: &Printer, a: &RefreshArgs) -> Result<u8, Error> {
    super::warn_if_readable_by_others(settings);
    let policy = Policy {
        min_valid: a.min_valid,
        force: a.force,
        mint: a.mint,
        dry_run: a.dry_run,
        check: Check::Validate,
    };
    if let Some(targets) = settings.org_targets(None)? {
        return Ok(over_orgs(settings, printer, &policy, a.rt_min_valid, &targets).await);
    }
    let outcome = ensure_one(
        settings,
        &settings.store(),
        &OrgId::configured(),
        &super::ctx(settings, "refresh"),
        &policy,
        a.rt_min_valid,
    )
    .await?;
    printer.refresh(
        &outcome,
        clock::now(),
        &settings.env_path,
        (&settings.config_path, &settings.store().renewable_place()),
    );
    Ok(0)
}

/// One org's refresh; with `--rt-min-valid`, rolls the pair through level 2
/// while the old refresh token still works (the policy `watch` follows, for
/// cron users).
async fn ensure_one(
    settings: &Settings,
    store: &Store,
    org: &OrgId,
    ctx: &Ctx<'_>,
    policy: &Policy,
    rt_min_valid: Option<Duration>,
) -> Result<Outcome, Error> {
    // A dry run writes nothing, not even the etcd store's export.
    let read_only;
    let store = if policy.dry_run {
        read_only = store.read_only();
        &read_only
    } else {
        store
    };
    let roll = !policy.mint
        && match rt_min_valid {
            Some(window) => engine::refresh_token_expiring(store, org, window).await?,
            None => false,
        };
    if !roll {
        return engine::ensure(store, |c| settings.api(c), policy, org, ctx).await;
    }
    tracing::info!(
        "the service-app refresh token expires within --rt-min-valid: minting a new pair with level 2"
    );
    let mint = Policy {
        mint: true,
        ..policy.clone()
    };
    match engine::ensure(store, |c| settings.api(c), &mint, org, ctx).await {
        Ok(o) => Ok(o),
        // The old pair still works: keep the token working with it and
        // say the roll failed (a transient failure is reported as such).
        Err(e) if e.exit_code() != exit::TRANSIENT => {
            tracing::warn!(
                "could not mint a new token pair ({e}); the service-app refresh token will lapse unless this is fixed"
            );
            engine::ensure(store, |c| settings.api(c), policy, org, ctx).await
        }
        Err(e) => Err(e),
    }
}

/// `refresh` for each org of `serviceApp.orgs`, at most `--concurrency` at
/// once; one org's failure never stops the others. Exit code: the worst.
async fn over_orgs(
    settings: &Settings,
    printer: &Printer,
    policy: &Policy,
    rt_min_valid: Option<Duration>,
    targets: &[OrgTarget],
) -> u8 {
    let runs = targets.iter().enumerate().map(|(i, t)| async move {
        let ctx = super::ctx_for(settings, "refresh", t.store.env_path());
        let r = ensure_one(settings, &t.store, &t.org, &ctx, policy, rt_min_valid).await;
        (i, r)
    });
    let mut progress = Progress::new(printer, targets.len(), "org");
    let mut done: Vec<(usize, Result<_, Error>)> = stream::iter(runs)
        .buffer_unordered(settings.concurrency)
        .inspect(|(i, r): &(usize, Result<Outcome, Error>)| match r {
            Ok(o) => progress.done(match o.action {
                Action::Kept(_) => "ok",
                Action::Refreshed { .. } => "refreshed",
                Action::WouldRefresh { .. } => "would refresh",
            }),
            Err(e) => progress.failed(targets[*i].name(), &e.to_string()),
        })
        .collect()
        .await;
    progress.clear();
    done.sort_by_key(|(i, _)| *i);
    let results: Vec<OrgResult<'_, _>> = done
        .into_iter()
        .map(|(i, result)| {
            let t = &targets[i];
            OrgResult {
                name: t.name(),
                target_org_id: t.org.listed_target().map(|(_, id)| id).unwrap_or_default(),
                env_path: t.store.env_path(),
                result,
            }
        })
        .collect();
    let code = exit::worst(results.iter().map(|r| match &r.result {
        Ok(_) => 0,
        Err(e) => e.exit_code(),
    }));
    printer.refresh_orgs(
        &results,
        clock::now(),
        (&settings.config_path, &settings.store().renewable_place()),
        code,
    );
    progress.finish();
    code
}
