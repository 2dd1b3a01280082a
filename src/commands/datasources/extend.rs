//! `datasources extend`: renew the tokens of the data sources that expire
//! within `--min-valid`, at most `--concurrency` PUTs in flight.

use super::session::{Renew, Session};
use super::{DataSource, OrgFiles, get_one, list_all, new_nonce, open, parse_source, shown};
use crate::audit;
use crate::cli::DsExtendArgs;
use crate::clock;
use crate::error::exit;
use crate::error::{DsError, Error};
use crate::output::OrgResult;
use crate::output::{self, Printer, SCHEMA_VERSION};
use crate::secret::{SecretString, fingerprint};
use crate::settings::Settings;
use crate::webex::{ApiError, DataSourcesApi};
use futures_util::stream::{self, StreamExt};
use jiff::Timestamp;
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};

/// What happened to one data source in `extend`.
enum Fate {
    Skipped {
        expires: Timestamp,
    },
    WouldExtend {
        expires: Option<Timestamp>,
    },
    Extended {
        before: Option<Timestamp>,
        after: Option<Timestamp>,
        nonce: String,
        jws: Option<String>,
    },
    Failed(Error),
    /// Not tried: the service-app token stopped working on an earlier one.
    NotAttempted,
}

pub(super) async fn extend(
    settings: &Settings,
    printer: &Printer,
    name: &'static str,
    a: &DsExtendArgs,
) -> Result<u8, Error> {
    // `--all` covers every chosen org; ids belong to one org.
    let several = match a.all {
        true => settings.org_targets(None)?,
        false => None,
    };
    let Some(targets) = several else {
        let org = OrgFiles::one(settings, name)?;
        let done = extend_org(settings, name, a, &org).await?;
        let now = clock::now();
        let (v, human) = extend_report(printer, name, a, &done, now);
        printer.report(&v, &human);
        extend_failures(printer, name, &done, "");
        return Ok(done.code);
    };
    // One org after another: each org's renewals already fill
    // `--concurrency`, so requests in flight stay within it.
    let orgs: Vec<OrgFiles> = targets.into_iter().map(OrgFiles::from).collect();
    let mut done = Vec::new();
    for org in &orgs {
        done.push(extend_org(settings, name, a, org).await);
    }
    let now = clock::now();
    let results: Vec<OrgResult<'_, Extended>> = orgs
        .iter()
        .zip(done)
        .map(|(o, result)| OrgResult {
            name: o.org.name().unwrap_or_default(),
            target_org_id: o.org.listed_target().map(|(_, id)| id).unwrap_or_default(),
            env_path: &o.store.env_path,
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
        let body: Vec<String> = body
            .lines()
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("  {l}")
                }
            })
            .collect();
        sections.push(format!(
            "org {} ({})\n{}",
            r.name,
            r.target_org_id,
            body.join("\n")
        ));
    }
    let v = json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": name,
        "ok": code == 0,
        "exitCode": code,
        "orgs": objects,
    });
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
    Ok(code)
}

/// One org's `extend`: what happened to each data source.
struct Extended {
    results: Vec<(String, Fate)>,
    refreshed: bool,
    code: u8,
}

async fn extend_org(
    settings: &Settings,
    name: &'static str,
    a: &DsExtendArgs,
    org: &OrgFiles,
) -> Result<Extended, Error> {
    let s = open(settings, org, name, true).await?;
    let now = clock::now();
    let threshold = clock::after(now, a.min_valid.as_secs());
    // Only a standing job (`--all`, run by a timer) is worth warning about;
    // `ID --min-valid 1d` is the documented way to renew now, once.
    if a.all && u64::from(a.lifetime) * 60 <= a.min_valid.as_secs() {
        tracing::warn!(
            "--lifetime {} min is not longer than --min-valid {}: every run renews every token",
            a.lifetime,
            clock::human_span(a.min_valid.as_secs())
        );
    }

    // The sources to look at: `--all` takes the list's items as they are
    // (one GET in all); named ids are fetched one by one, so a wrong id is
    // a failure of that id only.
    // `None`: not fetched, because the service-app token stopped working.
    let mut chosen: Vec<(String, Option<Result<DataSource, Error>>)> = Vec::new();
    if a.all {
        for d in list_all(&s).await? {
            chosen.push((d.id.clone(), Some(Ok(d))));
        }
    } else {
        let mut seen = std::collections::HashSet::new();
        let mut token_dead = false;
        for id in a.ids.iter().filter(|id| seen.insert(id.as_str())) {
            if token_dead {
                chosen.push((id.clone(), None));
                continue;
            }
            let got = get_one(&s, id).await;
            token_dead = got.as_ref().is_err_and(stops_the_run);
            chosen.push((id.clone(), Some(got)));
        }
    }

    // Decide what each source needs; the renewals are then sent at most
    // `--concurrency` at a time. Results keep the order of `chosen`.
    let mut results: Vec<(String, Option<Fate>)> = Vec::new();
    let mut due: Vec<(usize, DataSource, Option<Timestamp>)> = Vec::new();
    let mut stop = false;
    for (id, got) in chosen {
        let d = match got {
            _ if stop => {
                results.push((id, Some(Fate::NotAttempted)));
                continue;
            }
            None => {
                results.push((id, Some(Fate::NotAttempted)));
                continue;
            }
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                stop = stops_the_run(&e);
                results.push((id, Some(Fate::Failed(e))));
                continue;
            }
        };
        let expires = d.token_expiry().map(|e| e.0);
        // An unknown expiry is renewed: better one needless PUT than a
        // token that lapses unseen.
        if let Some(t) = expires.filter(|t| *t > threshold) {
            tracing::debug!(
                "data source {}: token expires {}; skipped",
                shown(&id),
                clock::format_utc(t)
            );
            results.push((id, Some(Fate::Skipped { expires: t })));
            continue;
        }
        if a.dry_run {
            results.push((id, Some(Fate::WouldExtend { expires })));
            continue;
        }
        due.push((results.len(), d, expires));
        results.push((id, None));
    }

    // Once the service-app token is known dead, renewals not yet started
    // are not tried; those in flight finish.
    let stop = Cell::new(false);
    let s = &s;
    let stop_ref = &stop;
    let fates: Vec<(usize, Fate)> = stream::iter(due)
        .map(|(i, d, expires)| async move {
            if stop_ref.get() {
                return (i, Fate::NotAttempted);
            }
            let fate = match renew(s, &d, a.lifetime).await {
                Ok((after, nonce, jws)) => {
                    audit_extension(
                        settings,
                        name,
                        &d,
                        expires,
                        Ok((after, &nonce, jws.as_deref())),
                        a.lifetime,
                    );
                    Fate::Extended {
                        before: expires,
                        after,
                        nonce,
                        jws,
                    }
                }
                Err((e, nonce)) => {
                    audit_extension(
                        settings,
                        name,
                        &d,
                        expires,
                        Err((&e, nonce.as_deref())),
                        a.lifetime,
                    );
                    if stops_the_run(&e) {
                        stop_ref.set(true);
                    }
                    Fate::Failed(e)
                }
            };
            (i, fate)
        })
        .buffer_unordered(settings.concurrency.max(1))
        .collect()
        .await;
    for (i, fate) in fates {
        results[i].1 = Some(fate);
    }
    let results: Vec<(String, Fate)> = results
        .into_iter()
        .map(|(id, f)| (id, f.unwrap_or(Fate::NotAttempted)))
        .collect();

    let code = results
        .iter()
        .map(|(_, f)| match f {
            Fate::Failed(e) => e.exit_code(),
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    Ok(Extended {
        results,
        refreshed: s.refreshed(),
        code,
    })
}

/// Errors after which the remaining sources are not tried: the service-app
/// token does not work, so every further call would fail the same way.
fn stops_the_run(e: &Error) -> bool {
    matches!(
        e,
        Error::DataSource(DsError::TokenRejected { .. }) | Error::Chain(_)
    )
}

/// PUTs one data source back with a fresh nonce. Returns the new expiry,
/// the nonce that was accepted and the new token's fingerprint.
async fn renew<A: DataSourcesApi, R: Renew>(
    s: &Session<A, R>,
    d: &DataSource,
    lifetime: u32,
) -> Result<(Option<Timestamp>, String, Option<String>), (Error, Option<String>)> {
    // Check the body can be built before sending anything.
    d.renewal_body(&new_nonce(), lifetime)
        .map_err(|e| (Error::DataSource(e), None))?;
    let what = format!("PUT /dataSources/{}", shown(&d.id));
    // A fresh nonce for every try: if a try timed out after Webex had
    // applied it, resending the same nonce could be refused as a replay and
    // a renewal that worked would be reported as failed.
    let last_nonce = RefCell::new(String::new());
    let body = || {
        let nonce = new_nonce();
        let body = d
            .renewal_body(&nonce, lifetime)
            .expect("checked above; the fields do not change");
        *last_nonce.borrow_mut() = nonce;
        body
    };
    let sent = s
        .call(&what, async |api: &A, t: &SecretString| {
            api.put(t, &d.id, &body).await
        })
        .await;
    let nonce = last_nonce.into_inner();
    let body = sent.map_err(|e| (e, Some(nonce.clone())))?;
    // The PUT succeeded; an answer we cannot read does not undo that.
    match parse_source(&what, &body) {
        Ok(new) => Ok((
            new.token_expiry().map(|e| e.0),
            nonce,
            new.jws_token.as_ref().map(fingerprint),
        )),
        Err(e) => {
            tracing::warn!("{e}; the renewal was accepted, but its new expiry is unknown");
            Ok((None, nonce, None))
        }
    }
}

type Attempted<'a> =
    Result<(Option<Timestamp>, &'a str, Option<&'a str>), (&'a Error, Option<&'a str>)>;

/// One audit line per renewal attempt: the nonce is not secret, the new
/// token appears as a fingerprint only.
fn audit_extension(
    settings: &Settings,
    command: &str,
    d: &DataSource,
    before: Option<Timestamp>,
    result: Attempted<'_>,
    lifetime: u32,
) {
    let Some(path) = &settings.audit_log else {
        return;
    };
    let mut line = json!({
        "command": command,
        "operation": "datasource_extend",
        "dataSourceId": d.id,
        "tokenLifetimeMinutes": lifetime,
        "previousExpiresAt": before.map(clock::format_utc),
    });
    match result {
        Ok((after, nonce, jws)) => {
            line["outcome"] = json!("ok");
            line["nonce"] = json!(nonce);
            line["tokenExpiresAt"] = json!(after.map(clock::format_utc));
            line["jwsTokenFingerprint"] = json!(jws);
        }
        Err((e, nonce)) => {
            line["outcome"] = json!("failed");
            line["nonce"] = json!(nonce);
            line["exitCode"] = json!(e.exit_code());
            line["error"] = json!(e.to_string());
            if let Error::DataSource(ds) = e
                && let Some(api) = ds.api_error()
            {
                line["httpStatus"] = json!(api.status());
                line["trackingId"] = json!(api.tracking_id());
            }
        }
    }
    audit::append(path, line);
}

fn error_json(e: &Error) -> Value {
    let api = match e {
        Error::DataSource(ds) => ds.api_error(),
        _ => None,
    };
    json!({
        "kind": e.kind(),
        "exitCode": e.exit_code(),
        "message": e.to_string(),
        "httpStatus": api.and_then(ApiError::status),
        "trackingId": api.and_then(ApiError::tracking_id),
        "hint": e.hint(),
    })
}

/// One org's report: the `--json` object and the human text.
fn extend_report(
    printer: &Printer,
    name: &'static str,
    a: &DsExtendArgs,
    done: &Extended,
    now: Timestamp,
) -> (Value, String) {
    let (results, refreshed, code) = (&done.results, done.refreshed, done.code);
    let count = |f: fn(&Fate) -> bool| results.iter().filter(|(_, x)| f(x)).count();
    let extended = count(|f| matches!(f, Fate::Extended { .. }));
    let skipped = count(|f| matches!(f, Fate::Skipped { .. }));
    let would = count(|f| matches!(f, Fate::WouldExtend { .. }));
    let failed = count(|f| matches!(f, Fate::Failed(_)));
    let not_tried = count(|f| matches!(f, Fate::NotAttempted));
    let at = |t: Option<Timestamp>| {
        json!({
            "expiresAt": t.map(clock::format_utc),
            "secondsLeft": t.map(|t| clock::seconds_until(now, t)),
        })
    };
    let items: Vec<Value> = results
        .iter()
        .map(|(id, f)| match f {
            Fate::Skipped { expires } => json!({
                "id": id, "action": "skipped", "before": at(Some(*expires)),
            }),
            Fate::WouldExtend { expires } => json!({
                "id": id, "action": "would_extend", "before": at(*expires),
            }),
            Fate::Extended {
                before,
                after,
                nonce,
                jws,
            } => json!({
                "id": id, "action": "extended", "before": at(*before),
                "after": at(*after), "nonce": nonce, "jwsTokenFingerprint": jws,
            }),
            Fate::Failed(e) => json!({"id": id, "action": "failed", "error": error_json(e)}),
            Fate::NotAttempted => json!({"id": id, "action": "not_attempted"}),
        })
        .collect();
    let v = json!({
        "schemaVersion": SCHEMA_VERSION,
        "command": name,
        "ok": code == 0,
        "exitCode": code,
        "dryRun": a.dry_run,
        "minValidSeconds": a.min_valid.as_secs(),
        "lifetimeMinutes": a.lifetime,
        "serviceAppTokenRefreshed": refreshed,
        "summary": {
            "extended": extended, "skipped": skipped, "wouldExtend": would,
            "failed": failed, "notAttempted": not_tried,
        },
        "results": items,
    });

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
