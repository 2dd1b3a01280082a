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
use crate::error::Error;
use crate::output::Printer;
use crate::settings::Settings;

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
