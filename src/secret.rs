//! Secrets and how people get to see them.
//!
//! Every token, client secret and authorization code lives in a
//! [`SecretString`] from the moment it is read. Its `Debug` prints
//! `[REDACTED]`, it has no `Display`, and the value only comes out through
//! [`ExposeSecret::expose_secret`], which the code calls only where a value is
//! sent to Webex or written to a file. What a person sees is a
//! [`fingerprint`]: a short hash, never part of the value itself.

pub use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// A short, stable, non-reversible label for a secret, e.g. `sha256:3f9a1c2b`.
///
/// Why a hash and not the last four characters: Webex tokens end with the
/// organization id (`..._PF84_<org uuid>`), so every token of one org shares
/// its tail, and a tail fingerprint would tell tokens apart badly. Eight hex
/// digits of SHA-256 tell them apart and reveal nothing usable.
pub fn fingerprint(secret: &SecretString) -> String {
    fingerprint_str(secret.expose_secret())
}

/// [`fingerprint`] for a value that is not (yet) wrapped.
pub fn fingerprint_str(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::from("sha256:");
    for byte in &digest[..4] {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Wraps a string into a secret.
pub fn secret(value: impl Into<String>) -> SecretString {
    SecretString::from(value.into())
}

/// Every static secret this process has loaded (client secrets, store
/// passwords), however it was loaded: inline, from a file, a command, the
/// environment or a systemd credential. Text from a server is redacted of
/// these as well as of the secrets its own request carried.
///
/// Process-wide on purpose: secrets are loaded by the config and the
/// settings, layers that never see the HTTP client, and a secret learned
/// anywhere must be hidden everywhere (a proxy may quote the service-app
/// secret back in the answer to an integration request). Only grows; a
/// run knows a handful of them.
static REMEMBERED: std::sync::Mutex<Vec<SecretString>> = std::sync::Mutex::new(Vec::new());

/// Adds `s` to the secrets every server text is redacted of (see
/// [`remembered`]). Values under 8 characters are not kept: they would
/// redact ordinary words, and no real secret is that short.
pub fn remember(s: &SecretString) {
    if s.expose_secret().len() < 8 {
        return;
    }
    let mut known = REMEMBERED.lock().unwrap_or_else(|e| e.into_inner());
    if !known.iter().any(|k| k.expose_secret() == s.expose_secret()) {
        known.push(s.clone());
    }
}

/// The secrets [`remember`] was given, for redaction.
pub fn remembered() -> Vec<String> {
    REMEMBERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|s| s.expose_secret().to_string())
        .collect()
}

/// Compares two secrets in time that does not depend on where they differ
/// (used for OAuth `state`), so a timing side channel reveals nothing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Text from outside (a server's message, a data-source field) as it may be
/// shown: line breaks and tabs become spaces, every other control character
/// (ESC and the rest: terminal escapes, fake log lines) is dropped.
pub fn printable(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_short_and_hides_the_value() {
        let s = secret("ZDI3MGEyYzQtNmFlNS00NDNhLWFkNzktYjUxNzQ0ZjZhYmI4_PF84_org");
        let fp = fingerprint(&s);
        assert_eq!(fp.len(), "sha256:".len() + 8);
        assert!(!fp.contains("org"));
        assert_eq!(
            fp,
            fingerprint_str("ZDI3MGEyYzQtNmFlNS00NDNhLWFkNzktYjUxNzQ0ZjZhYmI4_PF84_org")
        );
        assert_ne!(fp, fingerprint_str("another"));
    }

    #[test]
    fn debug_is_redacted() {
        let s = secret("supersecretvalue");
        assert!(!format!("{s:?}").contains("supersecretvalue"));
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

#[cfg(test)]
mod redaction {
    use crate::config::PersonalUpdate;
    use crate::secret::secret;
    use crate::tokens::StoredTokens;
    use crate::webex::grant;

    /// Every type that carries a token prints a redacted form.
    #[test]
    fn token_carrying_types_debug_redacted() {
        let t = StoredTokens {
            access_token: Some(secret("AAAA-secret-access")),
            access_expires_at: None,
            refresh_token: Some(secret("RRRR-secret-refresh")),
            refresh_expires_at: None,
        };
        let u = PersonalUpdate {
            personal_access_token: secret("PPPP-secret-personal"),
            personal_expires_at: None,
            integration_refresh_token: Some(secret("IIII-secret-int")),
            integration_refresh_expires_at: None,
            integration_client: Some(("client".into(), secret("CCCC-secret-client"))),
        };
        let g = grant("GGGG-secret-grant", 1, Some(("HHHH-secret-grant-rt", 2)));
        let shown = format!("{t:?} {u:?} {g:?}");
        for s in ["AAAA", "RRRR", "PPPP", "IIII", "CCCC", "GGGG", "HHHH"] {
            assert!(!shown.contains(s), "{s} leaked in {shown}");
        }
    }
}
