//! The wire pieces every handler shares: the parsed request, the response
//! builder, Webex-shaped errors and tracking ids, bearer and client
//! authentication, the token JSON. The router (`server`) and the handlers
//! (`control`, `datasources`, `device`) all use these and not each other.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util;
use crate::{State, TokenKind};

pub(crate) const JSON: &str = "application/json;charset=UTF-8";

pub(crate) struct Incoming {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub form: Option<BTreeMap<String, String>>,
}

impl Incoming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) enum Body {
    Normal(String),
    Garbage,
}

pub(crate) struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Resp {
    pub fn json(status: u16, v: &Value) -> Resp {
        Resp {
            status,
            headers: vec![("Content-Type".into(), JSON.into())],
            body: Body::Normal(v.to_string()),
        }
    }

    pub fn empty(status: u16) -> Resp {
        Resp {
            status,
            headers: vec![],
            body: Body::Normal(String::new()),
        }
    }

    pub fn html(status: u16, text: &str) -> Resp {
        Resp {
            status,
            headers: vec![("Content-Type".into(), "text/html;charset=UTF-8".into())],
            body: Body::Normal(format!(
                "<!DOCTYPE html><html><head><title>Webex</title></head><body><h1>{status}</h1><p>{text}</p></body></html>"
            )),
        }
    }

    pub fn redirect(location: String) -> Resp {
        Resp {
            status: 302,
            headers: vec![("Location".into(), location)],
            body: Body::Normal(String::new()),
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Resp {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

pub(crate) fn tracking_id() -> String {
    format!("WEBEXSIM_{}", util::uuid_v4())
}

/// Webex-style error: `{message, errors:[{description}], trackingId}`.
pub(crate) fn webex_error(status: u16, message: &str) -> Resp {
    let tid = tracking_id();
    Resp::json(
        status,
        &json!({
            "message": message,
            "errors": [{"description": message}],
            "trackingId": tid,
        }),
    )
    .header("trackingid", &tid)
}

/// OAuth error at `/v1/access_token`: both the OAuth and the Webex shape.
pub(crate) fn oauth_error(status: u16, error: &str, message: &str) -> Resp {
    let tid = tracking_id();
    Resp::json(
        status,
        &json!({
            "error": error,
            "error_description": message,
            "message": message,
            "errors": [{"description": message}],
            "trackingId": tid,
        }),
    )
    .header("trackingid", &tid)
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        415 => "Unsupported Media Type",
        423 => "Locked",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

pub(crate) fn bearer_of(auth: Option<&str>) -> Option<&str> {
    let auth = auth?.trim();
    let (scheme, rest) = auth.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let t = rest.trim();
        (!t.is_empty()).then_some(t)
    } else {
        None
    }
}

pub(crate) fn service_scopes() -> Vec<String> {
    [
        "spark-admin:datasource_read",
        "spark-admin:datasource_write",
        "spark:kms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

// ---------------------------------------------------------------- serving

// ---------------------------------------------------------------- auth helpers

pub(crate) const MSG_401: &str =
    "The request requires a valid access token set in the Authorization request header.";

/// A live access token (service, personal or bot) from the bearer header, or a 401.
pub(crate) fn access_auth(
    st: &State,
    req: &Incoming,
) -> Result<(String, TokenKind, Vec<String>), Resp> {
    let Some(tok) = bearer_of(req.header("authorization")) else {
        return Err(webex_error(401, MSG_401));
    };
    match st.live(tok) {
        Some(r)
            if matches!(
                r.kind,
                TokenKind::ServiceAccess | TokenKind::Personal | TokenKind::Bot
            ) =>
        {
            Ok((tok.to_string(), r.kind, r.scopes.clone()))
        }
        _ => Err(webex_error(401, MSG_401)),
    }
}

/// A live service-app access token (its org's position), else 401 (missing/invalid) or 403 (user token).
pub(crate) fn service_auth(st: &State, req: &Incoming) -> Result<usize, Resp> {
    let (tok, kind, _) = access_auth(st, req)?;
    if kind != TokenKind::ServiceAccess {
        return Err(webex_error(
            403,
            "The server understood the request, but refused to fulfill it because the access token is missing required scopes: spark-admin:datasource_read, spark-admin:datasource_write.",
        ));
    }
    Ok(st.tokens.get(&tok).map(|r| r.org).unwrap_or(0))
}

pub(crate) fn token_json(st: &State, access: &str, refresh: &str) -> Value {
    let now = st.now();
    let left = |t: &str| {
        st.tokens
            .get(t)
            .and_then(|r| r.expires_at.duration_since(now).ok())
            // rounded to the nearest second, so a fresh token reports exactly its lifetime
            .map(|d| (d + Duration::from_millis(500)).as_secs())
            .unwrap_or(0)
    };
    json!({
        "access_token": access,
        "expires_in": left(access),
        "refresh_token": refresh,
        "refresh_token_expires_in": left(refresh),
        "token_type": "Bearer",
    })
}

/// Client authentication: form `client_id` and `client_secret` when both are
/// given, else HTTP Basic. Missing parts are empty.
pub(crate) fn client_credentials(
    req: &Incoming,
    form: &BTreeMap<String, String>,
) -> (String, String) {
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let basic = req
        .header("authorization")
        .and_then(|a| a.trim().strip_prefix("Basic ").map(str::trim))
        .and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (util::percent_decode(a), util::percent_decode(b)))
        });
    match (get("client_id"), get("client_secret"), &basic) {
        (Some(id), Some(sec), _) => (id.to_string(), sec.to_string()),
        (_, _, Some((id, sec))) => (id.clone(), sec.clone()),
        (id, _, _) => (id.unwrap_or("").to_string(), String::new()),
    }
}
