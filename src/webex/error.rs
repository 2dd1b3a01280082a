//! Webex error bodies and the one classification of failures.

use serde::Deserialize;
use std::fmt;

/// What a Webex error body says (all fields optional; Webex is not uniform).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    pub message: Option<String>,
    pub descriptions: Vec<String>,
    pub tracking_id: Option<String>,
    /// OAuth `error` code, e.g. `invalid_grant`.
    pub oauth_error: Option<String>,
}

impl ErrorBody {
    /// Parses a Webex or OAuth error body; unknown shapes give an empty body.
    /// Every string is redacted of `secrets` first and only then cleaned
    /// and cut to one short line, so a secret the server echoes near the cut
    /// cannot survive in part.
    pub fn parse(bytes: &[u8], tracking_header: Option<String>, secrets: &[String]) -> ErrorBody {
        #[derive(Deserialize, Default)]
        struct Raw {
            message: Option<String>,
            #[serde(default)]
            errors: Vec<RawItem>,
            #[serde(rename = "trackingId")]
            tracking_id: Option<String>,
            error: Option<serde_json::Value>,
            error_description: Option<String>,
        }
        #[derive(Deserialize)]
        struct RawItem {
            description: Option<String>,
        }
        let raw: Raw = serde_json::from_slice(bytes).unwrap_or_default();
        let oauth_error = match raw.error {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        let mut descriptions: Vec<String> = raw
            .errors
            .into_iter()
            .filter_map(|i| i.description)
            .collect();
        if let Some(d) = raw.error_description {
            descriptions.push(d);
        }
        let shown = |t: &str| clip(&redact(t, secrets));
        ErrorBody {
            message: raw.message.as_deref().map(shown),
            descriptions: descriptions.iter().map(|d| shown(d)).collect(),
            tracking_id: raw.tracking_id.or(tracking_header).as_deref().map(shown),
            oauth_error: oauth_error.as_deref().map(shown),
        }
    }

    /// True when the body names an OAuth error meaning "this credential is
    /// no good" (Webex reports an expired refresh token this way, as 400).
    pub fn says_bad_credential(&self) -> bool {
        const CODES: [&str; 2] = ["invalid_grant", "invalid_token"];
        if let Some(e) = &self.oauth_error {
            return CODES.contains(&e.as_str());
        }
        let text = format!(
            "{} {}",
            self.message.as_deref().unwrap_or(""),
            self.descriptions.join(" ")
        );
        CODES.iter().any(|c| text.contains(c))
    }

    fn detail(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.message {
            parts.push(m.clone());
        } else if let Some(e) = &self.oauth_error {
            parts.push(e.clone());
        }
        for d in &self.descriptions {
            if Some(d) != self.message.as_ref() {
                parts.push(d.clone());
            }
        }
        let mut s = parts.join("; ");
        if let Some(t) = &self.tracking_id {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&format!("(trackingId {t})"));
        }
        s
    }
}

/// Error text from a server is shown to people; keep it to one short line
/// with no control characters (no fake log lines, no terminal escapes).
fn clip(s: &str) -> String {
    let one_line = crate::secret::printable(s);
    if one_line.chars().count() > 300 {
        format!("{}…", one_line.chars().take(300).collect::<String>())
    } else {
        one_line
    }
}

/// Why a request failed for a reason that may pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransientReason {
    /// 5xx, 429, 408 or 423.
    Status(u16),
    Timeout,
    Connect(String),
    /// The body was cut off, not JSON, too large, or the transfer broke.
    BadResponse(String),
    /// A 3xx: Webex's API never redirects, so something between (a proxy,
    /// a captive portal, a wrong `--api-base`) answered instead.
    Redirect {
        status: u16,
        host: Option<String>,
    },
}

/// A classified failure of one Webex request.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// The credential was rejected: 401, or 400 with `invalid_grant`/`invalid_token`.
    Rejected { status: u16, body: ErrorBody },
    /// Any other 4xx: the request is not allowed or is malformed.
    Refused { status: u16, body: ErrorBody },
    /// Gave up after retries on a failure that may pass.
    Transient {
        reason: TransientReason,
        body: Option<ErrorBody>,
        attempts: u32,
    },
}

impl ApiError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ApiError::Transient { .. })
    }

    pub fn tracking_id(&self) -> Option<&str> {
        match self {
            ApiError::Rejected { body, .. } | ApiError::Refused { body, .. } => {
                body.tracking_id.as_deref()
            }
            ApiError::Transient { body, .. } => {
                body.as_ref().and_then(|b| b.tracking_id.as_deref())
            }
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Rejected { status, .. } | ApiError::Refused { status, .. } => Some(*status),
            ApiError::Transient {
                reason: TransientReason::Status(s) | TransientReason::Redirect { status: s, .. },
                ..
            } => Some(*s),
            ApiError::Transient { .. } => None,
        }
    }

    /// The error body Webex sent, if any.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            ApiError::Rejected { body, .. } | ApiError::Refused { body, .. } => Some(body),
            ApiError::Transient { body, .. } => body.as_ref(),
        }
    }

    /// True when Webex named the OAuth error `code` (in `error`, `message`
    /// or a description: Webex is not uniform about where it puts it).
    pub fn names_code(&self, code: &str) -> bool {
        self.body().is_some_and(|b| {
            b.oauth_error.as_deref() == Some(code)
                || b.message.as_deref().is_some_and(|m| m.contains(code))
                || b.descriptions.iter().any(|d| d.contains(code))
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_detail = |f: &mut fmt::Formatter<'_>, head: String, body: &ErrorBody| {
            let d = body.detail();
            if d.is_empty() {
                write!(f, "{head}")
            } else {
                write!(f, "{head}: {d}")
            }
        };
        match self {
            ApiError::Rejected { status, body } | ApiError::Refused { status, body } => {
                with_detail(f, format!("HTTP {status}"), body)
            }
            ApiError::Transient {
                reason,
                body,
                attempts,
            } => {
                let head = match reason {
                    TransientReason::Status(s) => format!("HTTP {s}"),
                    TransientReason::Timeout => "timed out".to_string(),
                    TransientReason::Connect(e) => format!("could not connect ({e})"),
                    TransientReason::BadResponse(e) => format!("bad response ({e})"),
                    TransientReason::Redirect { status, host } => match host {
                        Some(h) => format!(
                            "HTTP {status}: redirected to {h}, not answered by the Webex API (a proxy or captive portal in the way, or a wrong --api-base)"
                        ),
                        None => format!(
                            "HTTP {status}: a redirect, not an answer from the Webex API (a proxy or captive portal in the way, or a wrong --api-base)"
                        ),
                    },
                };
                let head = if *attempts > 1 {
                    format!("{head}, after {attempts} tries")
                } else {
                    head
                };
                match body {
                    Some(b) => with_detail(f, head, b),
                    None => write!(f, "{head}"),
                }
            }
        }
    }
}

/// Turns an HTTP error status and body into the chain's categories.
pub fn classify(status: u16, body: ErrorBody) -> Result<ApiError, (TransientReason, ErrorBody)> {
    match status {
        401 => Ok(ApiError::Rejected { status, body }),
        400 if body.says_bad_credential() => Ok(ApiError::Rejected { status, body }),
        408 | 423 | 429 | 500..=599 => Err((TransientReason::Status(status), body)),
        _ => Ok(ApiError::Refused { status, body }),
    }
}

/// Replaces every occurrence of each secret in `text` by its fingerprint,
/// and every run of 8 or more characters that is the start of a secret (a
/// server may quote a secret cut short) by `[redacted]`.
pub fn redact(text: &str, sent: &[String]) -> String {
    const MIN_RUN: usize = 8;
    // The secrets this request carried and every other one the run knows:
    // a server may quote any of them (a personal token in a level-1 error).
    let mut secrets: Vec<String> = sent.to_vec();
    secrets.extend(crate::secret::known());
    // Longest first, so a secret that contains another is hidden whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    let mut out = text.to_string();
    for s in &secrets {
        if out.contains(s.as_str()) {
            out = out.replace(
                s.as_str(),
                &format!("[redacted {}]", crate::secret::fingerprint_str(s)),
            );
        }
    }
    for s in secrets.iter().filter(|s| s.len() >= MIN_RUN) {
        let secret = s.as_bytes();
        let mut i = 0;
        while i + MIN_RUN <= out.len() {
            let rest = &out.as_bytes()[i..];
            let run = rest.iter().zip(secret).take_while(|(a, b)| a == b).count();
            if run >= MIN_RUN && out.is_char_boundary(i) && out.is_char_boundary(i + run) {
                out.replace_range(i..i + run, "[redacted]");
                i += "[redacted]".len();
            } else {
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let body = |e: Option<&str>| ErrorBody {
            oauth_error: e.map(str::to_string),
            ..Default::default()
        };
        assert!(matches!(
            classify(401, body(None)),
            Ok(ApiError::Rejected { .. })
        ));
        assert!(matches!(
            classify(400, body(Some("invalid_grant"))),
            Ok(ApiError::Rejected { .. })
        ));
        assert!(matches!(
            classify(400, body(Some("invalid_token"))),
            Ok(ApiError::Rejected { .. })
        ));
        assert!(matches!(
            classify(400, body(Some("invalid_request"))),
            Ok(ApiError::Refused { .. })
        ));
        assert!(matches!(
            classify(400, body(None)),
            Ok(ApiError::Refused { .. })
        ));
        assert!(matches!(
            classify(403, body(None)),
            Ok(ApiError::Refused { .. })
        ));
        assert!(matches!(
            classify(404, body(None)),
            Ok(ApiError::Refused { .. })
        ));
        for s in [408, 423, 429, 500, 502, 503, 504] {
            assert!(classify(s, body(None)).is_err(), "{s} must be transient");
        }
    }

    #[test]
    fn parses_webex_error_bodies() {
        let b = ErrorBody::parse(
            br#"{"message":"The request requires a valid access token set in the Authorization request header.","errors":[{"description":"The request requires a valid access token set in the Authorization request header."}],"trackingId":"ROUTER_123"}"#,
            None,
            &[],
        );
        assert_eq!(b.tracking_id.as_deref(), Some("ROUTER_123"));
        let shown = ApiError::Rejected {
            status: 401,
            body: b,
        }
        .to_string();
        assert_eq!(
            shown,
            "HTTP 401: The request requires a valid access token set in the Authorization request header. (trackingId ROUTER_123)"
        );
        let o = ErrorBody::parse(
            br#"{"error":"invalid_grant","error_description":"expired"}"#,
            Some("HDR".into()),
            &[],
        );
        assert!(o.says_bad_credential());
        assert_eq!(o.tracking_id.as_deref(), Some("HDR"));
        let m = ErrorBody::parse(
            br#"{"message":"invalid_grant: refresh token expired"}"#,
            None,
            &[],
        );
        assert!(m.says_bad_credential());
        let junk = ErrorBody::parse(b"<html>bad gateway</html>", None, &[]);
        assert_eq!(junk, ErrorBody::default());
    }

    #[test]
    fn redaction_runs_before_the_cut() {
        // A secret quoted right where the message is cut: before, most of
        // it survived the cut; now it is gone whole.
        let secret = "R".repeat(20) + &"x".repeat(92);
        let msg = format!("{}{secret} trailing", "a".repeat(250));
        let body = format!(r#"{{"message":"{msg}"}}"#);
        let b = ErrorBody::parse(body.as_bytes(), None, std::slice::from_ref(&secret));
        let m = b.message.unwrap();
        assert!(!m.contains("RRRRRRRR"), "{m}");
        assert!(m.contains("[redacted sha256:"), "{m}");
    }

    #[test]
    fn a_secret_cut_short_is_still_redacted() {
        let secret = "abcdefghijklmnopqrstuvwxyz0123456789".to_string();
        // The server quotes only its first 12 characters.
        let text = "bad token abcdefghijkl… please retry";
        let out = redact(text, std::slice::from_ref(&secret));
        assert!(!out.contains("abcdefgh"), "{out}");
        assert!(out.contains("[redacted]"), "{out}");
        // Seven characters are not a run worth hiding.
        assert_eq!(
            redact("abcdefg!", std::slice::from_ref(&secret)),
            "abcdefg!"
        );
    }

    #[test]
    fn server_text_loses_control_characters() {
        let b = ErrorBody::parse(
            b"{\"message\":\"line1\\nerror: fake\\u001b]8;;http://x\\u0007link\",\"trackingId\":\"T\\u001b[2J\"}",
            None,
            &[],
        );
        let m = b.message.unwrap();
        assert!(!m.chars().any(char::is_control), "{m:?}");
        assert!(!b.tracking_id.unwrap().chars().any(char::is_control));
    }
}
