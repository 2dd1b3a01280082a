//! The only module that speaks HTTP to Webex.
//!
//! Every failure is classified once, here, into what the refresh chain needs
//! to know: [`ApiError::Rejected`] (the credential is no good: 401, or 400
//! with an OAuth error such as `invalid_grant`), [`ApiError::Refused`] (any
//! other 4xx: the request itself is wrong or not allowed), and
//! [`ApiError::Transient`] (connection errors, timeouts, 5xx, 429, a cut-off
//! body). Transient failures are retried here with capped, jittered
//! exponential backoff that honours `Retry-After`, within a time budget; they
//! never reach the chain as "rejected", because a Webex outage must not make
//! the tool throw away a good refresh token or walk the chain as if it had.
//!
//! Why the retry loop is ours and not `reqwest-retry`/`backon`: what counts
//! as transient here needs the response *body* (a 200 whose token JSON is
//! cut off must be retried; a 400 is final unless it is not), which
//! middleware that sees only status codes cannot judge; `Retry-After` would
//! need a second middleware crate (`reqwest-retry-after`) in the same stack;
//! and the total time budget and the "give up at once when Retry-After is
//! beyond the budget" rule are not expressible in their policies. The loop
//! is small ([`HttpApi::send`], [`RetryPolicy::backoff`]) and unit-tested.
//!
//! The client is built lazily: commands that make no request (a fresh
//! `token`, `status`) never pay for TLS setup.

mod error;
mod http;
mod oauth;

pub use error::ApiError;
#[cfg(test)]
pub use error::{ErrorBody, TransientReason, classify};
pub use http::{HttpApi, HttpSettings, RetryPolicy};
pub use oauth::{CodeExchange, DeviceAuthorization, DevicePoll, OAuthApi};

use crate::secret::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Largest response body we read; Webex token and list responses are a few
/// KiB, so anything bigger is a misbehaving proxy, not an answer.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A token response from `/access_token` or `/applications/{id}/token`.
#[derive(Debug, Deserialize)]
pub struct TokenGrant {
    pub access_token: SecretString,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    #[serde(default)]
    pub refresh_token_expires_in: Option<u64>,
}

/// Client credentials for a form-encoded `/access_token` call.
pub struct ClientCredentials<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
}

/// Body of `POST /applications/{appId}/token`.
pub struct MintRequest<'a> {
    pub app_id: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub target_org_id: &'a str,
}
/// The Webex calls the refresh chain makes. A trait so the chain can be
/// unit-tested with a fake.
#[allow(async_fn_in_trait)]
pub trait WebexApi {
    /// `GET /dataSources` with the service-app access token.
    async fn validate(&self, access_token: &SecretString) -> Result<(), ApiError>;
    /// `POST /access_token`, `grant_type=refresh_token`.
    async fn refresh(
        &self,
        client: &ClientCredentials<'_>,
        refresh_token: &SecretString,
    ) -> Result<TokenGrant, ApiError>;
    /// `POST /applications/{appId}/token` with a personal access token.
    async fn mint(
        &self,
        bearer: &SecretString,
        req: &MintRequest<'_>,
    ) -> Result<TokenGrant, ApiError>;
}

/// Parses a token answer; the reason on failure never includes the body
/// (it may hold a token).
pub fn parse_grant(body: &[u8]) -> Result<TokenGrant, String> {
    let grant: TokenGrant = serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() {
            "the token response was cut off".to_string()
        } else {
            format!(
                "the token response is not the expected JSON ({})",
                e.classify_name()
            )
        }
    })?;
    if grant.access_token.expose_secret().trim().is_empty() {
        return Err("the token response has an empty access_token".into());
    }
    let mut grant = grant;
    // An empty `refresh_token` is no refresh token: storing it would
    // replace a good one by nothing.
    if grant
        .refresh_token
        .as_ref()
        .is_some_and(|r| r.expose_secret().trim().is_empty())
    {
        grant.refresh_token = None;
        grant.refresh_token_expires_in = None;
    }
    Ok(grant)
}

pub(crate) trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}
impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "missing or mistyped field",
            serde_json::error::Category::Eof => "cut off",
        }
    }
}

/// Percent-encodes a path segment (app ids are base64 and may hold `/`, `+`, `=`).
pub fn urlencode_path(seg: &str) -> String {
    let mut out = String::with_capacity(seg.len());
    for b in seg.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Makes a token for tests and fakes.
#[cfg(test)]
pub(crate) fn grant(access: &str, expires_in: u64, refresh: Option<(&str, u64)>) -> TokenGrant {
    TokenGrant {
        access_token: crate::secret::secret(access),
        expires_in: Some(expires_in),
        refresh_token: refresh.map(|(r, _)| crate::secret::secret(r)),
        refresh_token_expires_in: refresh.map(|(_, e)| e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_parsing_never_echoes_the_body() {
        let err = parse_grant(br#"{"access_token":"SECRETVALUE","expires_in":"#).unwrap_err();
        assert!(err.contains("cut off"));
        assert!(!err.contains("SECRETVALUE"));
        let err = parse_grant(br#"{"access_token":"","expires_in":5}"#).unwrap_err();
        assert!(err.contains("empty"));
        let g =
            parse_grant(br#"{"access_token":"a","expires_in":5,"token_type":"Bearer"}"#).unwrap();
        assert!(g.refresh_token.is_none());
    }

    #[test]
    fn path_encoding() {
        assert_eq!(urlencode_path("Y2lz/Y2+=="), "Y2lz%2FY2%2B%3D%3D");
    }
}
