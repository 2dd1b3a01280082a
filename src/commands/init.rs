//! `init`: starts a config file, so nobody has to copy the template by
//! hand. Values come from flags, or from questions on a terminal (secrets
//! read without echo); whatever is left keeps the template's placeholder
//! and is named in the closing line. Never overwrites a file.

use crate::cli::InitArgs;
use crate::config::NewConfig;
use crate::error::Error;
use crate::names::DEFAULT_CONFIG;
use crate::output::Printer;
use crate::secret::SecretString;
use crate::settings::Settings;
use std::io::{IsTerminal, Write};
use std::path::Path;

pub fn run(settings: &Settings, printer: &Printer, args: &InitArgs) -> Result<u8, Error> {
    let path = &settings.config_path;
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(Error::Usage {
            message: format!(
                "{} exists already; init never overwrites a config file",
                path.display()
            ),
            hint: format!(
                "edit it, or check it with `webex-token status`; to start over, move it away and run `webex-token --config {} init` again",
                path.display()
            ),
        });
    }
    let mut values = NewConfig {
        app_id: clean(args.app_id.as_deref(), "--app-id")?,
        client_id: clean(args.client_id.as_deref(), "--client-id")?,
        target_org_id: clean(args.target_org_id.as_deref(), "--target-org-id")?,
        ..NewConfig::default()
    };
    // Questions only when a person can answer them: stdin and stderr both
    // a terminal (a pipe or cron gets the placeholders and the list).
    if !args.no_input && std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        ask(&mut values).map_err(|e| Error::Other(format!("could not read the answers: {e}")))?;
    }
    write_new(path, &values.render())?;
    let default = std::env::current_dir()
        .map(|d| d.join(DEFAULT_CONFIG))
        .is_ok_and(|d| &d == path);
    let next = match default {
        true => "webex-token refresh".to_string(),
        false => format!("webex-token --config {} refresh", path.display()),
    };
    printer.init_done(path, &values.unset(), &next);
    Ok(0)
}

/// A value from a flag: trimmed; refused when it holds whitespace or
/// control characters inside (a pasted line break, two values at once).
fn clean(v: Option<&str>, flag: &str) -> Result<Option<String>, Error> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Usage {
            message: format!("{flag}: the value holds whitespace or control characters"),
            hint: "copy the id alone from developer.webex.com".into(),
        });
    }
    Ok(Some(v.to_string()))
}

/// Asks on the terminal for each value no flag gave. An empty answer
/// leaves the placeholder.
fn ask(v: &mut NewConfig) -> std::io::Result<()> {
    let term = console::Term::stderr();
    let line = |prompt: &str| -> std::io::Result<Option<String>> {
        term.write_str(prompt)?;
        let answer = term.read_line()?;
        Ok(Some(answer.trim().to_string()).filter(|a| !a.is_empty()))
    };
    let secret = |prompt: &str| -> std::io::Result<Option<SecretString>> {
        term.write_str(prompt)?;
        let answer = term.read_secure_line()?;
        let answer = answer.trim();
        Ok((!answer.is_empty()).then(|| SecretString::from(answer.to_string())))
    };
    term.write_line(
        "From developer.webex.com → My Webex Apps → your service app (Enter skips a value):",
    )?;
    if v.app_id.is_none() {
        v.app_id = line("  App ID (serviceApp.appId): ")?;
    }
    if v.client_id.is_none() {
        v.client_id = line("  Client ID (serviceApp.clientId): ")?;
    }
    v.client_secret = secret("  Client Secret (serviceApp.clientSecret, not shown): ")?;
    if v.target_org_id.is_none() {
        v.target_org_id =
            line("  Org ID of the org that authorized it (serviceApp.targetOrgId): ")?;
    }
    v.personal_access_token = secret(
        "  Personal access token of that org's admin (tokenManager.personalAccessToken, not shown): ",
    )?;
    Ok(())
}

/// Writes the new file atomically with mode 0600 (a temp file beside it,
/// then a rename that fails if the path appeared meanwhile).
fn write_new(path: &Path, text: &str) -> Result<(), Error> {
    let fail = |e: std::io::Error| Error::Other(format!("could not write {}: {e}", path.display()));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::Usage {
            message: format!("the directory {} does not exist", dir.display()),
            hint: format!("create it first (mkdir -p {})", dir.display()),
        });
    }
    // tempfile creates its files with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".webex-token-init.")
        .tempfile_in(dir)
        .map_err(fail)?;
    tmp.write_all(text.as_bytes()).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            Error::Usage {
                message: format!(
                    "{} appeared while init ran; it was left alone",
                    path.display()
                ),
                hint: "edit that file instead".into(),
            }
        } else {
            fail(e.error)
        }
    })?;
    Ok(())
}
