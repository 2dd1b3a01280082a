//! Renewing data-source tokens: which sources are due (their token expires
//! within `min_valid`, or its expiry is unknown), then at most
//! `--concurrency` PUTs in flight, each with a fresh nonce, one audit line
//! per attempt. Used by `datasources extend` and `watch --datasources`.

use super::session::{Renew, Session};
use super::{DataSource, OrgFiles, get_one, list_all, new_nonce, open, parse_source, shown};
use crate::audit;
use crate::clock;
use crate::error::{DsError, Error};
use crate::secret::{SecretString, fingerprint};
use crate::settings::Settings;
use crate::webex::DataSourcesApi;
use futures_util::stream::{self, StreamExt};
use jiff::Timestamp;
use std::cell::{Cell, RefCell};
use std::time::Duration;

/// What to renew and how (the flags of `datasources extend`).
pub struct ExtendParams<'a> {
    /// Every data source of the org (listed with paging), else `ids`.
    pub all: bool,
    pub ids: &'a [String],
    pub min_valid: Duration,
    pub lifetime: u32,
    pub dry_run: bool,
    /// Renewals in flight at once for this org (`--concurrency`, or its
    /// share when several orgs run side by side).
    pub concurrency: usize,
}

/// What happened to one data source in `extend`.
pub enum Fate {
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

/// One org's `extend`: what happened to each data source.
pub struct Extended {
    pub results: Vec<(String, Fate)>,
    pub refreshed: bool,
    pub code: u8,
}

/// `datasources extend`: a session of its own (which refreshes the
/// service-app token when it is near its end or rejected), then
/// [`extend_with`].
pub async fn extend_org(
    settings: &Settings,
    name: &'static str,
    a: &ExtendParams<'_>,
    org: &OrgFiles,
) -> Result<Extended, Error> {
    let s = open(settings, org, name, true).await?;
    extend_with(settings, name, a, &s).await
}

/// Renews the data sources due through the session `s` (`watch
/// --datasources` passes one with its own token, which never refreshes).
pub async fn extend_with<A: DataSourcesApi, R: Renew>(
    settings: &Settings,
    name: &'static str,
    a: &ExtendParams<'_>,
    s: &Session<A, R>,
) -> Result<Extended, Error> {
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
        for d in list_all(s).await? {
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
            let got = get_one(s, id).await;
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
        .buffer_unordered(a.concurrency.max(1))
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
pub fn stops_the_run(e: &Error) -> bool {
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
    let mut line = audit::DataSourceExtendEvent {
        command,
        operation: "datasource_extend",
        data_source_id: &d.id,
        token_lifetime_minutes: lifetime,
        previous_expires_at: before.map(clock::format_utc),
        outcome: "ok",
        nonce: None,
        token_expires_at: None,
        jws_token_fingerprint: None,
        exit_code: None,
        error: None,
        http_status: None,
        tracking_id: None,
    };
    match result {
        Ok((after, nonce, jws)) => {
            line.nonce = Some(nonce);
            line.token_expires_at = Some(after.map(clock::format_utc));
            line.jws_token_fingerprint = Some(jws);
        }
        Err((e, nonce)) => {
            line.outcome = "failed";
            line.nonce = nonce;
            line.exit_code = Some(e.exit_code());
            line.error = Some(e.to_string());
            if let Error::DataSource(ds) = e
                && let Some(api) = ds.api_error()
            {
                line.http_status = Some(api.status());
                line.tracking_id = Some(api.tracking_id());
            }
        }
    }
    audit::record(path, &line);
}
