//! The OAuth calls of `setup-oauth`: the device authorization grant
//! (RFC 8628) and the authorization-code exchange (RFC 6749 §4.1.3 with
//! PKCE). Requests are built here and nowhere else; what a person sees and
//! how long anyone waits is `oauth/`'s business.
//!
//! Webex's device grant differs from RFC 8628 in ways that matter (and that
//! `webex-api.md` §7 got wrong): a pending authorization is answered with
//! **428**; `slow_down`, `access_denied` and friends arrive as 400 with the
//! code in `message` and `errors[].description`, not in an `error` field;
//! and an expired device code is `invalid_grant` (there is no
//! `expired_token`). RFC-shaped answers are read as well, to be lenient.

use super::error::{ApiError, ErrorBody, TransientReason, classify};
use super::http::HttpApi;
use super::{ClientCredentials, TokenGrant, parse_grant};
use crate::secret::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

/// The `grant_type` of a device-token poll.
pub const DEVICE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// `POST /device/authorize` answer (RFC 8628 §3.2), read leniently. The
/// texts are the server's, unfiltered: whoever shows them must strip
/// control characters first.
#[derive(Debug, Deserialize)]
pub struct DeviceAuthorization {
    #[serde(deserialize_with = "crate::secret::remembered")]
    pub device_code: SecretString,
    pub user_code: String,
    #[serde(alias = "verification_url")]
    pub verification_uri: String,
    #[serde(default, alias = "verification_url_complete")]
    pub verification_uri_complete: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub interval: Option<u64>,
}

/// What one device-token poll answered.
#[derive(Debug)]
pub enum DevicePoll {
    /// The person approved: the tokens (handed out once).
    Granted(TokenGrant),
    /// Not yet approved (Webex: 428; RFC: 400 `authorization_pending`).
    Pending,
    /// Polled too fast (`slow_down`, or 429 with its `Retry-After`).
    SlowDown { retry_after: Option<Duration> },
    /// The person declined (`access_denied`).
    Denied { code: String },
    /// The device code is no longer valid: Webex says `invalid_grant`
    /// (expired, or already used), RFC servers `expired_token`.
    Expired { code: String },
    /// A 2xx whose body is not a token answer. The code is spent by now,
    /// so polling again cannot help.
    Unusable(String),
}

/// What the code exchange sends besides the client credentials.
pub struct CodeExchange<'a> {
    pub code: &'a SecretString,
    pub redirect_uri: &'a str,
    pub code_verifier: &'a SecretString,
}

/// The OAuth endpoints `setup-oauth` talks to. A trait so the flows in
/// `oauth/` can be unit-tested with a fake.
#[allow(async_fn_in_trait)]
pub trait OAuthApi {
    /// The absolute URL of an endpoint path such as `/authorize`.
    fn endpoint(&self, path: &str) -> String;
    /// `POST /device/authorize` with the integration's client id and scope.
    async fn device_authorize(
        &self,
        client_id: &str,
        scope: &str,
    ) -> Result<DeviceAuthorization, ApiError>;
    /// One `POST /device/token` poll, never retried here: the caller's loop
    /// is the retry, and it must see 429 as "poll slower".
    async fn device_token(
        &self,
        client: &ClientCredentials<'_>,
        device_code: &SecretString,
    ) -> Result<DevicePoll, ApiError>;
    /// `POST /access_token` with `grant_type=authorization_code`.
    async fn exchange_code(
        &self,
        client: &ClientCredentials<'_>,
        exchange: &CodeExchange<'_>,
    ) -> Result<TokenGrant, ApiError>;
}

/// The OAuth error codes a device poll may carry.
const POLL_CODES: [&str; 5] = [
    "authorization_pending",
    "slow_down",
    "access_denied",
    "expired_token",
    "invalid_grant",
];

/// The OAuth code of an error body: the RFC `error` field, else a word of
/// `message` or of a description that is one of [`POLL_CODES`].
fn poll_code(body: &ErrorBody) -> Option<&'static str> {
    if let Some(e) = &body.oauth_error {
        return POLL_CODES.iter().copied().find(|c| c == e);
    }
    let words = body
        .message
        .iter()
        .chain(body.descriptions.iter())
        .flat_map(|t| t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')));
    for w in words {
        if let Some(c) = POLL_CODES.iter().copied().find(|c| *c == w) {
            return Some(c);
        }
    }
    None
}

/// Reads a non-2xx answer to a device poll.
pub(crate) fn read_poll_error(
    status: u16,
    body: ErrorBody,
    retry_after: Option<Duration>,
) -> Result<DevicePoll, ApiError> {
    match status {
        428 => return Ok(DevicePoll::Pending),
        429 => return Ok(DevicePoll::SlowDown { retry_after }),
        400 | 403 => match poll_code(&body) {
            Some("authorization_pending") => return Ok(DevicePoll::Pending),
            Some("slow_down") => return Ok(DevicePoll::SlowDown { retry_after }),
            Some(c @ "access_denied") => return Ok(DevicePoll::Denied { code: c.into() }),
            Some(c @ ("expired_token" | "invalid_grant")) => {
                return Ok(DevicePoll::Expired { code: c.into() });
            }
            _ => {}
        },
        _ => {}
    }
    match classify(status, body) {
        Ok(e) => Err(e),
        Err((reason, body)) => Err(ApiError::Transient {
            reason,
            body: Some(body),
            attempts: 1,
        }),
    }
}

impl OAuthApi for HttpApi {
    fn endpoint(&self, path: &str) -> String {
        self.url(path)
    }

    async fn device_authorize(
        &self,
        client_id: &str,
        scope: &str,
    ) -> Result<DeviceAuthorization, ApiError> {
        let url = self.url("/device/authorize");
        let body = self
            .send("POST /device/authorize", |c| {
                c.post(&url)
                    .header("accept", "application/json")
                    .form(&[("client_id", client_id), ("scope", scope)])
            })
            .await?;
        serde_json::from_slice(&body).map_err(|e| ApiError::Transient {
            reason: TransientReason::BadResponse(format!(
                "the device authorization answer is not the expected JSON ({})",
                super::ClassifyName::classify_name(&e)
            )),
            body: None,
            attempts: 1,
        })
    }

    async fn device_token(
        &self,
        client: &ClientCredentials<'_>,
        device_code: &SecretString,
    ) -> Result<DevicePoll, ApiError> {
        let url = self.url("/device/token");
        let raw = self
            .send_once("POST /device/token", |c| {
                c.post(&url)
                    .basic_auth(client.client_id, Some(client.client_secret.expose_secret()))
                    .header("accept", "application/json")
                    .form(&[
                        ("grant_type", DEVICE_GRANT_TYPE),
                        ("device_code", device_code.expose_secret()),
                        ("client_id", client.client_id),
                    ])
            })
            .await
            .map_err(|reason| ApiError::Transient {
                reason,
                body: None,
                attempts: 1,
            })?;
        if (200..300).contains(&raw.status) {
            return Ok(match parse_grant(&raw.body) {
                Ok(g) => DevicePoll::Granted(g),
                Err(why) => DevicePoll::Unusable(why),
            });
        }
        let body = ErrorBody::parse(&raw.body, raw.tracking.clone(), &raw.secrets);
        read_poll_error(raw.status, body, raw.retry_after)
    }

    async fn exchange_code(
        &self,
        client: &ClientCredentials<'_>,
        x: &CodeExchange<'_>,
    ) -> Result<TokenGrant, ApiError> {
        let url = self.url("/access_token");
        // Transient failures are retried by `send` (the code is not spent
        // when the server failed); a 2xx is read once: the code is spent.
        let body = self
            .send("POST /access_token (authorization code)", |c| {
                c.post(&url).header("accept", "application/json").form(&[
                    ("grant_type", "authorization_code"),
                    ("code", x.code.expose_secret()),
                    ("redirect_uri", x.redirect_uri),
                    ("code_verifier", x.code_verifier.expose_secret()),
                    ("client_id", client.client_id),
                    ("client_secret", client.client_secret.expose_secret()),
                ])
            })
            .await?;
        parse_grant(&body).map_err(|why| ApiError::Transient {
            reason: TransientReason::BadResponse(why),
            body: None,
            attempts: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webex(status: u16, code: &str) -> Result<DevicePoll, ApiError> {
        let body = ErrorBody::parse(
            format!(
                r#"{{"message":"{code}","errors":[{{"description":"{code}"}}],"trackingId":"T"}}"#
            )
            .as_bytes(),
            None,
            &[],
        );
        read_poll_error(status, body, None)
    }

    #[test]
    fn webex_device_answers() {
        assert!(matches!(
            webex(428, "authorization_pending"),
            Ok(DevicePoll::Pending)
        ));
        // 428 with any body is pending.
        assert!(matches!(
            read_poll_error(428, ErrorBody::default(), None),
            Ok(DevicePoll::Pending)
        ));
        assert!(matches!(
            webex(400, "slow_down"),
            Ok(DevicePoll::SlowDown { retry_after: None })
        ));
        assert!(matches!(
            webex(400, "access_denied"),
            Ok(DevicePoll::Denied { .. })
        ));
        assert!(matches!(
            webex(400, "invalid_grant"),
            Ok(DevicePoll::Expired { code }) if code == "invalid_grant"
        ));
        assert!(matches!(
            read_poll_error(429, ErrorBody::default(), Some(Duration::from_secs(7))),
            Ok(DevicePoll::SlowDown { retry_after: Some(d) }) if d == Duration::from_secs(7)
        ));
        // Other failures keep their class.
        assert!(matches!(
            webex(401, "invalid_client"),
            Err(ApiError::Rejected { .. })
        ));
        assert!(matches!(
            webex(400, "invalid_request"),
            Err(ApiError::Refused { .. })
        ));
        assert!(matches!(
            webex(503, "busy"),
            Err(ApiError::Transient { .. })
        ));
        // A code inside a longer sentence counts; a longer word does not.
        assert!(matches!(
            webex(400, "slow_down: poll less often"),
            Ok(DevicePoll::SlowDown { .. })
        ));
        assert!(matches!(
            webex(400, "not_slow_down_at_all"),
            Err(ApiError::Refused { .. })
        ));
    }

    #[test]
    fn rfc_device_answers() {
        let rfc = |code: &str| {
            read_poll_error(
                400,
                ErrorBody::parse(format!(r#"{{"error":"{code}"}}"#).as_bytes(), None, &[]),
                None,
            )
        };
        assert!(matches!(
            rfc("authorization_pending"),
            Ok(DevicePoll::Pending)
        ));
        assert!(matches!(rfc("slow_down"), Ok(DevicePoll::SlowDown { .. })));
        assert!(
            matches!(rfc("expired_token"), Ok(DevicePoll::Expired { code }) if code == "expired_token")
        );
        assert!(matches!(
            rfc("access_denied"),
            Ok(DevicePoll::Denied { .. })
        ));
        assert!(matches!(
            rfc("unsupported_grant_type"),
            Err(ApiError::Refused { .. })
        ));
    }
}
