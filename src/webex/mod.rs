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

mod datasources;
mod error;
mod http;
mod messages;
mod oauth;
mod people;

pub use datasources::{DataSourcesApi, MAX_PAGES, NextPage, Page};
pub use error::ApiError;
pub use error::TransientReason;
#[cfg(test)]
pub use error::{ErrorBody, classify};
pub use http::{ClientPool, HttpApi, HttpSettings, RetryPolicy};
pub use messages::{MessagesApi, Posted, Recipient};
pub use oauth::{CodeExchange, DeviceAuthorization, DevicePoll, OAuthApi};
pub use people::PeopleApi;

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
    #[derive(Deserialize)]
    struct Raw {
        #[serde(deserialize_with = "crate::secret::remembered")]
        access_token: SecretString,
        #[serde(default)]
        expires_in: Option<serde_json::Value>,
        #[serde(default, deserialize_with = "crate::secret::remembered_opt")]
        refresh_token: Option<SecretString>,
        #[serde(default)]
        refresh_token_expires_in: Option<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() {
            "the token response was cut off".to_string()
        } else {
            format!(
                "the token response is not the expected JSON ({})",
                e.classify_name()
            )
        }
    })?;
    if raw.access_token.expose_secret().trim().is_empty() {
        return Err("the token response has an empty access_token".into());
    }
    if !is_token_text(raw.access_token.expose_secret()) {
        return Err(
            "the token response's access_token holds whitespace, control or quoting characters"
                .into(),
        );
    }
    let expires_in = match &raw.expires_in {
        None | Some(serde_json::Value::Null) => {
            return Err("the token response has no expires_in".into());
        }
        Some(v) => lifetime(v).map_err(|why| format!("the token response's expires_in {why}"))?,
    };
    // An empty `refresh_token` is no refresh token: storing it would
    // replace a good one by nothing.
    let refresh_token = raw
        .refresh_token
        .filter(|r| !r.expose_secret().trim().is_empty());
    if let Some(r) = &refresh_token
        && !is_token_text(r.expose_secret())
    {
        return Err(
            "the token response's refresh_token holds whitespace, control or quoting characters"
                .into(),
        );
    }
    let refresh_token_expires_in = match (&refresh_token, &raw.refresh_token_expires_in) {
        (None, _) | (_, None | Some(serde_json::Value::Null)) => None,
        (Some(_), Some(v)) => Some(
            lifetime(v)
                .map_err(|why| format!("the token response's refresh_token_expires_in {why}"))?,
        ),
    };
    Ok(TokenGrant {
        access_token: raw.access_token,
        expires_in: Some(expires_in),
        refresh_token,
        refresh_token_expires_in,
    })
}

/// A token or id as Webex issues them (checked the same way where tokens
/// are stored: the etcd store's values).
pub use crate::secret::is_token_text;

/// A lifetime in seconds from a JSON value: an integer, a float or a
/// numeric string, positive and at most ten years (anything longer is not
/// a token lifetime but a bug or an attack on our arithmetic).
fn lifetime(v: &serde_json::Value) -> Result<u64, String> {
    const TEN_YEARS: f64 = 10.0 * 365.25 * 86_400.0;
    let secs = match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(|| "is not a number".to_string())?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("is not a positive number ({v})"));
    }
    if secs > TEN_YEARS {
        return Err(format!("is absurd ({v} seconds is over ten years)"));
    }
    Ok(secs.round().max(1.0) as u64)
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

/// Refuses an API base that would send credentials in clear text over a
/// network: `http://` is for a local stand-in on a loopback address only.
/// Also one with no path at all: every Webex API base ends in `/v1`, and
/// without it each call answers 404, which would read as a wrong app id.
pub fn check_base_url(url: &str) -> Result<(), String> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Err(format!(
            "`{url}` is not a URL; use e.g. https://webexapis.com/v1"
        ));
    };
    if parsed.path().trim_matches('/').is_empty() && parsed.host_str().is_some() {
        return Err(format!(
            "`{url}` has no /v1: Webex's API base ends in /v1, e.g. {}/v1",
            url.trim_end_matches('/')
        ));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(format!(
                    "`{url}` is plain http to a host that is not this machine; tokens would cross the network unencrypted: use https (http:// is allowed only for 127.0.0.1, [::1] or localhost)"
                ))
            }
        }
        _ => Err(format!(
            "`{url}` is not an http(s) URL; use e.g. https://webexapis.com/v1"
        )),
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
    fn a_base_without_a_path_says_v1() {
        for bare in [
            "https://webexapis.com",
            "https://webexapis.com/",
            "http://127.0.0.1:9",
        ] {
            let e = check_base_url(bare).unwrap_err();
            assert!(e.contains("/v1"), "{bare}: {e}");
        }
        for ok in [
            "https://webexapis.com/v1",
            "http://127.0.0.1:9/v1",
            "https://proxy.example/webex/v1",
        ] {
            assert_eq!(check_base_url(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn path_encoding() {
        assert_eq!(urlencode_path("Y2lz/Y2+=="), "Y2lz%2FY2%2B%3D%3D");
    }

    #[test]
    fn lifetimes_are_checked() {
        let g = |e: &str| {
            parse_grant(format!(r#"{{"access_token":"abc","expires_in":{e}}}"#).as_bytes())
        };
        assert_eq!(g("3600").unwrap().expires_in, Some(3600));
        assert_eq!(g("3600.5").unwrap().expires_in, Some(3601));
        assert_eq!(g(r#""3600""#).unwrap().expires_in, Some(3600));
        for bad in ["0", "-5", "1e17", r#""soon""#, "null", "true"] {
            assert!(g(bad).is_err(), "{bad} must be refused");
        }
        assert!(parse_grant(br#"{"access_token":"abc"}"#).is_err());
    }

    #[test]
    fn token_text_is_checked() {
        assert!(parse_grant(br#"{"access_token":"a b","expires_in":1}"#).is_err());
        assert!(parse_grant(b"{\"access_token\":\"a\\u001bb\",\"expires_in\":1}").is_err());
        for bad in [r"a'$b", r#"a"b"#, r"a\b", "a$(id)", "a`id`"] {
            let body = serde_json::json!({"access_token": bad, "expires_in": 1}).to_string();
            assert!(parse_grant(body.as_bytes()).is_err(), "{bad}");
        }
        let r = parse_grant(br#"{"access_token":"ab","expires_in":1,"refresh_token":"r\nx"}"#);
        assert!(r.is_err());
        let empty = parse_grant(br#"{"access_token":"ab","expires_in":1,"refresh_token":"","refresh_token_expires_in":5}"#).unwrap();
        assert!(empty.refresh_token.is_none() && empty.refresh_token_expires_in.is_none());
    }
}
