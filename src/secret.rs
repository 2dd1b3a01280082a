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

/// Wraps a string into a secret, and remembers it for redaction
/// ([`remember`]).
pub fn secret(value: impl Into<String>) -> SecretString {
    let value = value.into();
    remember(&value);
    SecretString::from(value)
}

/// Every secret this run has seen (read from a file, a source or an
/// answer), so that server text is redacted of all of them, whichever
/// request it answered (CONTRACT: "every secret the run knows"). A process-
/// wide list on purpose: a secret read by the store must be hidden in an
/// error of the HTTP layer, two floors apart, and threading the list through
/// every call would be a parameter on nearly every function. Bounded, so a
/// long-running agent cannot grow it without end (the newest are kept).
static KNOWN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
/// Most secrets remembered (a 1,000-org agent holds about 2,000 tokens).
const KNOWN_CAP: usize = 8192;
/// Shorter values would redact ordinary words; real secrets are long.
pub const MIN_SECRET_LEN: usize = 8;

/// Adds `value` to the redaction list (see [`KNOWN`]).
pub fn remember(value: &str) {
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    if known.iter().any(|k| k == value) {
        return;
    }
    if known.len() >= KNOWN_CAP {
        known.remove(0);
    }
    known.push(value.to_string());
}

/// [`remember`] for a value already wrapped.
pub fn remember_secret(value: &SecretString) {
    remember(value.expose_secret());
}

/// `#[serde(deserialize_with = "crate::secret::remembered")]`: a secret
/// read from a server's answer joins the redaction list as it is read.
pub fn remembered<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    Ok(secret(s))
}

/// [`remembered`] for an optional field (with `#[serde(default)]`).
pub fn remembered_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SecretString>, D::Error> {
    let s = <Option<String> as serde::Deserialize>::deserialize(d)?;
    Ok(s.map(secret))
}

/// Every remembered secret.
pub fn known() -> Vec<String> {
    KNOWN.lock().unwrap_or_else(|p| p.into_inner()).clone()
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

/// A token or id as Webex issues them: printable, no whitespace, no
/// control characters (one that has them would read back differently from
/// a .env file, or break the header it is sent in), and none of the quoting
/// and substitution characters `'"\$` and backtick, which no Webex token
/// holds and which .env readers (dotenvy, python-dotenv, shells sourcing the
/// file) read in different ways: such an answer is malformed, not stored.
pub fn is_token_text(s: &str) -> bool {
    !s.is_empty()
        && !s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '\'' | '"' | '\\' | '$' | '`')
        })
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
