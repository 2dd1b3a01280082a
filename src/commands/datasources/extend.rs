//! `datasources extend`: renew the tokens of the data sources that expire
//! within `--min-valid`, at most `--concurrency` PUTs in flight.

use crate::cli::DsExtendArgs;
use crate::clock;
use crate::engine::datasources::extend::{ExtendParams, Extended, Fate, extend_org};
use crate::engine::datasources::{OrgFiles, shown};
use crate::error::Error;
use crate::error::exit;
use crate::output::OrgResult;
use crate::output::progress::Progress;
use crate::output::{self, Printer};
use crate::settings::Settings;
use futures_util::StreamExt;
use jiff::Timestamp;
use serde_json::Value;

pub(super) async fn extend(
    settings: &Settings,
    printer: &Printer,
    name: &'static str,
    a: &DsExtendArgs,
) -> Result<u8, Error> {
    let params = ExtendParams {
        all: a.all,
        ids: &a.ids,
        min_valid: a.min_valid,
        lifetime: a.lifetime,
        dry_run: a.dry_run,
        concurrency: settings.concurrency,
    };
    // `--all` covers every chosen org; ids belong to one org.
    let several = match a.all {
        true => settings.org_targets(None)?,
        false => None,
    };
    let Some(targets) = several else {
        let org = OrgFiles::one(settings, name)?;
        let done = extend_org(settings, name, &params, &org).await?;
        let now = clock::now();
        let (v, human) = extend_report(printer, name, a, &done, now);
        printer.report(&v, &human);
        extend_failures(printer, name, &done, "");
        return Ok(done.code);
    };
    // Orgs side by side, each with its share of `--concurrency` (at least
    // one request at a time), so requests in flight stay within it: with
    // 1,000 orgs that is 8 orgs at once, one request each, instead of one
    // org at a time with its two PUTs.
    let orgs: Vec<OrgFiles> = targets.into_iter().map(OrgFiles::from).collect();
    let cap = settings.concurrency.max(1);
    let side_by_side = cap.min(orgs.len()).max(1);
    let share = ExtendParams {
        concurrency: (cap / side_by_side).max(1),
        ..params
    };
    let share = &share;
    let mut progress = Progress::new(printer, orgs.len(), "org");
    let mut done: Vec<(usize, Result<Extended, Error>)> = futures_util::stream::iter(
        orgs.iter()
            .enumerate()
            .map(|(i, org)| async move { (i, extend_org(settings, name, share, org).await) }),
    )
    .buffer_unordered(side_by_side)
    .inspect(|(i, r): &(usize, Result<Extended, Error>)| {
        let org = orgs[*i].org.name().unwrap_or_default();
        match r {
            Ok(d) if d.code != 0 => {
                let failed = d
                    .results
                    .iter()
                    .filter(|(_, f)| matches!(f, Fate::Failed(_)))
                    .count();
                progress.failed(org, &format!("{failed} data sources not renewed"));
            }
            Ok(d)
                if d.results
                    .iter()
                    .any(|(_, f)| matches!(f, Fate::Extended { .. })) =>
            {
                progress.done("renewed")
            }
            Ok(_) => progress.done("ok"),
            Err(e) => progress.failed(org, &e.to_string()),
        }
    })
    .collect()
    .await;
    progress.clear();
    done.sort_by_key(|(i, _)| *i);
    let done: Vec<Result<Extended, Error>> = done.into_iter().map(|(_, r)| r).collect();
    let now = clock::now();
    let results: Vec<OrgResult<'_, Extended>> = orgs
        .iter()
        .zip(done)
        .map(|(o, result)| OrgResult {
            name: o.org.name().unwrap_or_default(),
            target_org_id: o.org.listed_target().map(|(_, id)| id).unwrap_or_default(),
            env_path: o.store.env_path(),
            result,
        })
        .collect();
    let code = exit::worst(results.iter().map(|r| match &r.result {
        Ok(done) => done.code,
        Err(e) => e.exit_code(),
    }));
    let mut sections = Vec::new();
    let mut objects = Vec::new();
    for r in &results {
        let (v, body) = match &r.result {
            Ok(done) => extend_report(printer, name, a, done, now),
            Err(e) => (output::failure_json(name, e), format!("error: {e}")),
        };
        objects.push(r.object(v));
        sections.push(r.section(&body));
    }
    let v = output::orgs_json(name, code == 0, code, objects);
    printer.report(&v, &sections.join("\n\n"));
    // Failures on stderr: whole orgs, then single data sources.
    let org_failures: Vec<(String, &Error)> = results
        .iter()
        .filter_map(|r| r.result.as_ref().err().map(|e| (r.name.to_string(), e)))
        .collect();
    if !org_failures.is_empty() {
        printer.stderr_failures(
            name,
            &format!(
                "{} of {} orgs could not be worked on",
                org_failures.len(),
                results.len()
            ),
            code,
            &org_failures,
        );
    }
    for r in &results {
        if let Ok(done) = &r.result {
            extend_failures(printer, name, done, r.name);
        }
    }
    progress.finish();
    Ok(code)
}

/// One org's report: the `--json` object and the human text.
fn extend_report(
    printer: &Printer,
    name: &'static str,
    a: &DsExtendArgs,
    done: &Extended,
    now: Timestamp,
) -> (Value, String) {
    let (results, refreshed) = (&done.results, done.refreshed);
    let [extended, skipped, would, failed, not_tried] = output::datasources::counts(done);
    let v = output::datasources::extend_json(
        name,
        a.dry_run,
        a.min_valid.as_secs(),
        a.lifetime,
        done,
        now,
    );

    // Pad before painting, so escape codes do not upset the columns.
    let label = |colour: Option<&str>, text: &str| {
        let padded = format!("{text:<11}");
        colour.map_or(padded.clone(), |c| printer.paint(c, &padded))
    };
    let mut human = Vec::new();
    if refreshed {
        human.push("the service-app access token was refreshed first".to_string());
    }
    for (id, f) in results {
        let id = shown(id);
        human.push(match f {
            Fate::Skipped { expires } => format!(
                "{} {id}  {} (beyond --min-valid {})",
                label(None, "skipped"),
                output::expiry_text(Some(*expires), now),
                clock::human_span(a.min_valid.as_secs())
            ),
            Fate::WouldExtend { expires } => format!(
                "{} {id}  {}",
                label(Some("33"), "would renew"),
                output::expiry_text(*expires, now)
            ),
            Fate::Extended { after, .. } => format!(
                "{} {id}  {}",
                label(Some("32"), "renewed"),
                match after {
                    Some(_) => output::expiry_text(*after, now),
                    None => "new expiry not reported".into(),
                }
            ),
            Fate::Failed(e) => format!("{} {id}  {e}", label(Some("1;31"), "failed")),
            Fate::NotAttempted => format!(
                "{} {id}  (the service-app token stopped working)",
                label(Some("31"), "not tried")
            ),
        });
    }
    let mut summary = if a.dry_run {
        format!("dry run: {would} would be renewed, {skipped} skipped; nothing was sent")
    } else {
        format!("{extended} renewed, {skipped} skipped")
    };
    if failed > 0 {
        summary.push_str(&format!(", {failed} failed"));
    }
    if not_tried > 0 {
        summary.push_str(&format!(", {not_tried} not tried"));
    }
    if results.is_empty() {
        summary = "no data sources are registered for this service app".into();
    }
    human.push(summary);
    (v, human.join("\n"))
}

/// Failed data sources also go to stderr, so `-q` in cron still says what
/// broke. `org` (empty for the single org) prefixes the summary.
fn extend_failures(printer: &Printer, name: &'static str, done: &Extended, org: &str) {
    let (results, code) = (&done.results, done.code);
    let failed = results
        .iter()
        .filter(|(_, f)| matches!(f, Fate::Failed(_)))
        .count();
    if failed > 0 {
        let summary = format!(
            "{}{failed} of {} data source{} could not be renewed",
            if org.is_empty() {
                String::new()
            } else {
                format!("org {org}: ")
            },
            results.len(),
            if results.len() == 1 { "" } else { "s" }
        );
        let items: Vec<(String, &Error)> = results
            .iter()
            .filter_map(|(id, f)| match f {
                Fate::Failed(e) => Some((shown(id), e)),
                _ => None,
            })
            .collect();
        printer.stderr_failures(name, &summary, code, &items);
    }
}
