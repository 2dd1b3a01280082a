//! `datasources register`: one POST with a generated nonce, never retried
//! (a 401 is the exception: nothing was registered, so after the token is
//! renewed the POST is sent again).

use super::list::human_block;
use crate::audit;
use crate::cli::DsRegisterArgs;
use crate::clock;
use crate::engine::datasources::{DataSource, OrgFiles, new_nonce, open, parse_source, shown};
use crate::error::Error;
use crate::output::{self, Printer};
use crate::secret::{SecretString, fingerprint};
use crate::settings::Settings;
use crate::webex::{DataSourcesApi, HttpApi};
use serde_json::json;

pub(super) async fn register(
    settings: &Settings,
    printer: &Printer,
    name: &'static str,
    r: &DsRegisterArgs,
) -> Result<u8, Error> {
    // No retries: a POST that timed out may have registered the source, and
    // a second one would register it twice.
    let org = OrgFiles::one(settings, name)?;
    let s = open(settings, &org, name, false).await?;
    let nonce = new_nonce();
    let body = json!({
        "schemaId": r.schema_id,
        "url": r.url,
        "audience": r.audience,
        "subject": r.subject,
        "nonce": nonce,
        "tokenLifetimeMinutes": r.lifetime,
    });
    let what = "POST /dataSources";
    let result = s
        .call(what, async |api: &HttpApi, t: &SecretString| {
            api.register(t, &body).await
        })
        .await;
    let audit_line = |outcome: &str, d: Option<&DataSource>, e: Option<&Error>| {
        if let Some(path) = &settings.audit_log {
            audit::record(
                path,
                &audit::DataSourceRegisterEvent {
                    command: name,
                    operation: "datasource_register",
                    outcome,
                    data_source_id: d.map(|d| d.id.clone()),
                    schema_id: &r.schema_id,
                    url: &r.url,
                    nonce: &nonce,
                    token_lifetime_minutes: r.lifetime,
                    token_expires_at: d
                        .and_then(|d| d.token_expiry())
                        .map(|e| clock::format_utc(e.0)),
                    jws_token_fingerprint: d.and_then(|d| d.jws_token.as_ref()).map(fingerprint),
                    error: e.map(|e| e.to_string()),
                },
            );
        }
    };
    let body = match result {
        Ok(b) => b,
        Err(e) => {
            audit_line("failed", None, Some(&e));
            return Err(e);
        }
    };
    let d = parse_source(what, &body).inspect_err(|e| {
        tracing::warn!("{e}; the data source was registered, but its answer cannot be shown")
    })?;
    audit_line("ok", Some(&d), None);
    let now = clock::now();
    let v = output::datasources::one_source_json(name, &d, now);
    let human = format!(
        "{} registered data source {}; token {}\n\n{}",
        printer.paint("32", "ok:"),
        shown(&d.id),
        output::expiry_text(d.token_expiry().map(|e| e.0), now),
        human_block(printer, &d, now, true)
    );
    printer.report(&v, &human);
    Ok(0)
}
