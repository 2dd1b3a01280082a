//! BYODS data sources: list and show them, renew their tokens, register new
//! ones (`webex-token datasources …`).
//!
//! Every call uses the service-app access token the refresh chain keeps in
//! the env file. The command first makes sure that token works (the same
//! path as `token`/`exec`: trust a stored expiry more than an hour away,
//! otherwise refresh once through the chain), so one invocation per timer
//! tick both keeps the service-app token fresh and rolls the data-source
//! tokens. If Webex still answers 401 to a data-source call although the
//! stored expiry said the token was good (revoked, rotated by hand), the token
//! is refreshed once (the 401 already says it is rejected, so it is not
//! validated again) and the call retried; a second 401 is reported as
//! "re-authorization required" (exit 4). See `engine::datasources::session`.
//!
//! Layout: `list.rs` (list, show), `extend.rs`, `register.rs` render; the
//! model, the session with its 401 rule (`session`), paging and renewal live
//! in [`crate::engine::datasources`] (shared with `watch --datasources`); the
//! requests themselves are in [`crate::webex`].
//!
//! A data source's `jwsToken` is a bearer credential that Webex presents to
//! the data provider. It is held as a [`SecretString`] from the moment a
//! response is parsed, and people only ever see its expiry and fingerprint.
//!
//! This module owns the data-source requests and their output; HTTP retries
//! and error classification stay in [`crate::webex`], exit codes in
//! [`crate::error`].

mod extend;
mod list;
mod register;

use crate::cli::{DatasourcesArgs, DatasourcesCommand};
use crate::engine::datasources::DataSource;
use crate::error::Error;
use crate::output::{self, Printer};
use crate::settings::Settings;
use jiff::Timestamp;
use serde_json::{Value, json};

/// Runs a `datasources` subcommand; returns the exit code.
pub async fn run(settings: &Settings, printer: &Printer, a: &DatasourcesArgs) -> Result<u8, Error> {
    let name = a.command.name();
    match &a.command {
        DatasourcesCommand::List(l) => list::list(settings, printer, name, l.wide).await,
        DatasourcesCommand::Show(s) => list::show(settings, printer, name, &s.id).await,
        DatasourcesCommand::Extend(e) => extend::extend(settings, printer, name, e).await,
        DatasourcesCommand::Register(r) => register::register(settings, printer, name, r).await,
    }
}

/// How a data source is shown under `--json`.
trait ToJson {
    fn to_json(&self, now: Timestamp) -> Value;
}

impl ToJson for DataSource {
    /// The `--json` view: every field but the token, which appears as
    /// fingerprint and expiry only.
    fn to_json(&self, now: Timestamp) -> Value {
        let expiry = self.token_expiry();
        let mut token = output::token_json(self.jws_token.as_ref(), expiry.map(|e| e.0), now);
        token["expirySource"] = json!(expiry.map(|e| e.1.name()));
        json!({
            "id": self.id,
            "schemaId": self.schema_id,
            "url": self.url,
            "audience": self.audience,
            "subject": self.subject,
            "status": self.status,
            "errorMessage": self.error_message,
            "tokenLifetimeMinutes": self.token_lifetime_minutes,
            "nonce": self.nonce,
            "orgId": self.org_id,
            "applicationId": self.application_id,
            "createdBy": self.created_by,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "token": token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn jws(claims: Value) -> String {
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(&json!({"alg": "RS256", "kid": "k"})),
            b64(&claims)
        )
    }

    fn source(v: Value) -> DataSource {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn json_view_never_holds_the_token() {
        let token = jws(json!({"exp": 1_800_000_000}));
        let d = source(json!({"id": "x", "jwsToken": token, "status": "active"}));
        let v = d.to_json(Timestamp::from_second(1_799_999_000).unwrap());
        let text = v.to_string();
        assert!(!text.contains(&token));
        assert_eq!(v["token"]["secondsLeft"], 1000);
        assert_eq!(v["token"]["expirySource"], "jws");
        assert!(
            v["token"]["fingerprint"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert!(!format!("{d:?}").contains(&token));
    }
}
