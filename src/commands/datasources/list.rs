//! `datasources list` and `datasources show`: every server-supplied text
//! goes through [`shown`] before it reaches the terminal.

use crate::clock;
use crate::engine::datasources::{DataSource, OrgFiles, get_one, list_all, open, shown};
use crate::error::{Error, exit};
use crate::output::{self, OrgResult, Printer};
use crate::secret::fingerprint;
use crate::settings::Settings;
use futures_util::{StreamExt, stream};
use jiff::Timestamp;
use serde_json::Value;

pub(super) async fn list(
    settings: &Settings,
    printer: &Printer,
    name: &'static str,
    wide: bool,
) -> Result<u8, Error> {
    let Some(targets) = settings.org_targets(None)? else {
        let org = OrgFiles::single(settings);
        let (json_value, human, _) = list_org(settings, printer, name, &org).await?;
        printer.report(&json_value, &human);
        return Ok(0);
    };
    // Every chosen org with its own session, at most `--concurrency` at once.
    let orgs: Vec<OrgFiles> = targets.into_iter().map(OrgFiles::from).collect();
    let runs = orgs.iter().map(|o| async move {
        OrgResult {
            name: o.org.name().unwrap_or_default(),
            target_org_id: o.org.listed_target().map(|(_, id)| id).unwrap_or_default(),
            env_path: o.store.env_path(),
            result: list_org(settings, printer, name, o).await,
        }
    });
    let results: Vec<OrgResult<'_, Listed>> = stream::iter(runs)
        .buffered(settings.concurrency)
        .collect()
        .await;
    let code = exit::worst(
        results
            .iter()
            .map(|r| r.result.as_ref().map_or_else(Error::exit_code, |_| 0)),
    );
    let failed: Vec<(String, &Error)> = results
        .iter()
        .filter_map(|r| r.result.as_ref().err().map(|e| (r.name.to_string(), e)))
        .collect();
    let objects = results
        .iter()
        .map(|r| {
            r.object(match &r.result {
                Ok((v, _, _)) => v.clone(),
                Err(e) => output::failure_json(name, e),
            })
        })
        .collect();
    let json_value = output::orgs_json(name, failed.is_empty(), code, objects);
    // One row per data source unless the person asked for detail: --wide,
    // or naming the orgs with --org.
    let human = match !wide && settings.orgs.is_empty() && results.len() > 1 {
        true => table(&results),
        false => results
            .iter()
            .map(|r| {
                let body = match &r.result {
                    Ok((_, h, _)) => h.clone(),
                    Err(e) => format!("error: {e}"),
                };
                r.section(&body)
            })
            .collect::<Vec<_>>()
            .join("\n\n"),
    };
    printer.report(&json_value, &human);
    if !failed.is_empty() {
        printer.stderr_failures(
            name,
            &format!(
                "{} of {} orgs could not be listed",
                failed.len(),
                results.len()
            ),
            code,
            &failed,
        );
    }
    Ok(code)
}

/// One org's listing: its `--json` object, its human text, and a table row
/// per data source (id, status, token time left).
type Listed = (Value, String, Vec<[String; 3]>);

/// Every org's data sources, one row each: ORG, ID, STATUS, TOKEN.
fn table(results: &[OrgResult<'_, Listed>]) -> String {
    let mut rows: Vec<[String; 4]> = vec![[
        "ORG".into(),
        "DATA SOURCE".into(),
        "STATUS".into(),
        "TOKEN".into(),
    ]];
    let mut count = 0;
    for r in results {
        match &r.result {
            Ok((_, _, list)) if list.is_empty() => rows.push([
                r.name.to_string(),
                "-".into(),
                String::new(),
                "no data sources".into(),
            ]),
            Ok((_, _, list)) => {
                for [id, status, token] in list {
                    count += 1;
                    rows.push([
                        r.name.to_string(),
                        id.clone(),
                        status.clone(),
                        token.clone(),
                    ]);
                }
            }
            Err(e) => rows.push([
                r.name.to_string(),
                "-".into(),
                String::new(),
                format!("error: {e}"),
            ]),
        }
    }
    let mut widths = [0usize; 3];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out: Vec<String> = rows
        .iter()
        .map(|[a, b, c, d]| {
            let [wa, wb, wc] = widths;
            format!("{a:<wa$}  {b:<wb$}  {c:<wc$}  {d}")
                .trim_end()
                .to_string()
        })
        .collect();
    out.push(format!(
        "{count} data sources in {} orgs; every field: `webex-token datasources list --wide` or `--org NAME`",
        results.len()
    ));
    out.join("\n")
}

async fn list_org(
    settings: &Settings,
    printer: &Printer,
    name: &'static str,
    org: &OrgFiles,
) -> Result<Listed, Error> {
    let s = open(settings, org, name, true).await?;
    let sources = list_all(&s).await?;
    let now = clock::now();
    let disabled = sources.iter().filter(|d| d.is_disabled()).count();
    let json_value = output::datasources::list_json(name, &sources, disabled, now);
    let mut human = match (sources.len(), disabled) {
        (0, _) => "no data sources are registered for this service app".to_string(),
        (1, 0) => "1 data source".to_string(),
        (n, 0) => format!("{n} data sources"),
        (n, d) => format!(
            "{n} data source{}, {}",
            if n == 1 { "" } else { "s" },
            printer.paint("1;31", &format!("{d} disabled"))
        ),
    };
    for d in &sources {
        human.push_str("\n\n");
        human.push_str(&human_block(printer, d, now, false));
    }
    let rows = sources
        .iter()
        .map(|d| {
            let status = match (d.status.as_deref(), d.is_disabled()) {
                (_, true) => "DISABLED".to_string(),
                (Some(s), false) => shown(s),
                (None, false) => "unknown".into(),
            };
            let token = match d.token_expiry() {
                Some((t, _)) => clock::human_left(clock::seconds_until(now, t)),
                None if d.jws_token.is_none() => "none".into(),
                None => "expiry unknown".into(),
            };
            [shown(&d.id), status, token]
        })
        .collect();
    Ok((json_value, human, rows))
}

pub(super) async fn show(
    settings: &Settings,
    printer: &Printer,
    name: &'static str,
    id: &str,
) -> Result<u8, Error> {
    let org = OrgFiles::one(settings, name)?;
    let s = open(settings, &org, name, true).await?;
    let d = get_one(&s, id).await?;
    let now = clock::now();
    let v = output::datasources::one_source_json(name, &d, now);
    printer.report(&v, &human_block(printer, &d, now, true));
    Ok(0)
}

/// One data source as text: the id, then indented fields.
pub(super) fn human_block(p: &Printer, d: &DataSource, now: Timestamp, full: bool) -> String {
    let mut lines = vec![p.paint("1", &shown(&d.id))];
    // Values start two columns after the longest label of the block.
    let width = if full {
        "expiry from".len()
    } else {
        "lifetime".len()
    } + 2;
    let mut row = |k: &str, v: String| lines.push(format!("  {k:<width$}{v}"));
    let status = match (d.status.as_deref(), d.is_disabled()) {
        (_, true) => {
            let msg = d
                .error_message
                .as_deref()
                .map(|m| format!(": {}", shown(m)))
                .unwrap_or_default();
            p.paint("1;31", &format!("DISABLED{msg}"))
        }
        (Some(s), false) => p.paint("32", &shown(s)),
        (None, false) => "unknown".into(),
    };
    row("status", status);
    let expiry = d.token_expiry();
    let mut token = match expiry {
        Some((t, _)) if t <= now => p.paint("31", &output::expiry_text(Some(t), now)),
        Some((t, _)) => output::expiry_text(Some(t), now),
        None if d.jws_token.is_none() => "none".into(),
        None => "expiry unknown".into(),
    };
    if let Some(j) = &d.jws_token {
        token.push_str(&format!("  {}", fingerprint(j)));
    }
    row("token", token);
    let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "-".into(), shown);
    row(
        "lifetime",
        d.token_lifetime_minutes
            .map(|m| format!("{m} min"))
            .unwrap_or_else(|| "-".into()),
    );
    row("schema", opt(&d.schema_id));
    row("url", opt(&d.url));
    row("audience", opt(&d.audience));
    row("subject", opt(&d.subject));
    if full {
        row(
            "expiry from",
            expiry.map_or("-".into(), |e| e.1.name().to_string()),
        );
        row("nonce", opt(&d.nonce));
        row("org", opt(&d.org_id));
        row("app", opt(&d.application_id));
        row(
            "created",
            format!("{} by {}", opt(&d.created_at), opt(&d.created_by)),
        );
        row("updated", opt(&d.updated_at));
    }
    lines.join("\n")
}
