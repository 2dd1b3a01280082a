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
    pub fn parse(bytes: &[u8], tracking_header: Option<String>) -> ErrorBody {
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
        ErrorBody {
            message: raw.message.map(|m| clip(&m)),
            descriptions: descriptions.iter().map(|d| clip(d)).collect(),
            tracking_id: raw.tracking_id.or(tracking_header),
            oauth_error,
        }
    }

    /// The same body with every occurrence of `secrets` replaced by a
    /// fingerprint.
    pub fn redacted(self, secrets: &[String]) -> ErrorBody {
        if secrets.is_empty() {
            return self;
        }
        ErrorBody {
            message: self.message.map(|m| redact(&m, secrets)),
            descriptions: self
                .descriptions
                .iter()
                .map(|d| redact(d, secrets))
                .collect(),
            tracking_id: self.tracking_id.map(|t| redact(&t, secrets)),
            oauth_error: self.oauth_error.map(|e| redact(&e, secrets)),
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

/// Error text from a server is shown to people; keep it to one short line.
fn clip(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
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
                reason: TransientReason::Status(s),
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

/// Replaces every occurrence of each secret in `text` by its fingerprint.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(
                s.as_str(),
                &format!("[redacted {}]", crate::secret::fingerprint_str(s)),
            );
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
        );
        assert!(o.says_bad_credential());
        assert_eq!(o.tracking_id.as_deref(), Some("HDR"));
        let m = ErrorBody::parse(
            br#"{"message":"invalid_grant: refresh token expired"}"#,
            None,
        );
        assert!(m.says_bad_credential());
        let junk = ErrorBody::parse(b"<html>bad gateway</html>", None);
        assert_eq!(junk, ErrorBody::default());
    }
}
