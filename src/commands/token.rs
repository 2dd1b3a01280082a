//! `token`: a working access token alone on stdout.

use crate::cli::TokenArgs;
use crate::clock;
use crate::engine;
use crate::error::Error;
use crate::output::Printer;
use crate::settings::Settings;

/// The fresh case without an async runtime: two small files read, one line
/// printed. `None` when the token must be checked or refreshed (or
/// `--validate` asks for a request).
pub fn fast(settings: &Settings, printer: &Printer, a: &TokenArgs) -> Option<u8> {
    if a.validate {
        return None;
    }
    let store = match settings.one_org("token") {
        Ok((_, store)) => store,
        Err(e) => {
            printer.error("token", &e);
            return Some(e.exit_code());
        }
    };
    match store.local_now() {
        Ok(snap) if engine::is_fresh(&snap.tokens, a.min_valid) => {
            let access = snap.tokens.access_token.as_ref()?;
            tracing::debug!("fresh stored token: answered before any runtime or HTTP client");
            printer.token(access, snap.tokens.access_expires_at, clock::now());
            Some(0)
        }
        Ok(_) => None,
        Err(e) => {
            let e = Error::from(e);
            printer.error("token", &e);
            Some(e.exit_code())
        }
    }
}

pub async fn run(settings: &Settings, printer: &Printer, a: &TokenArgs) -> Result<u8, Error> {
    let policy = engine::working_policy(a.min_valid, a.validate);
    let (org, store) = settings.one_org("token")?;
    let tokens = engine::ensure_or_still_valid(
        &store,
        |c| settings.api(c),
        &policy,
        &org,
        &super::ctx_for(settings, "token", store.env_path()),
    )
    .await?;
    let access = tokens
        .access_token
        .as_ref()
        .expect("a working token is present");
    printer.token(access, tokens.access_expires_at, clock::now());
    Ok(0)
}
