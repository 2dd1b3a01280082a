//! The data-source object as Webex returns it, its expiry (from
//! `tokenExpiryTime` or the JWS claims) and the parsing of one object or a
//! listing. Pure: no requests, no files.

use crate::clock;
use crate::error::DsError;
use crate::secret::{ExposeSecret, SecretString};
use base64::Engine;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

/// A server-supplied value as it may be shown on a terminal: control
/// characters (ESC sequences, newlines, carriage returns) are dropped, so a
/// data source cannot repaint the screen or forge lines of output.
pub fn shown(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

// ---------------------------------------------------------------------------
// The data source object

/// A data source as Webex returns it. Unknown fields are ignored; every
/// field but `id` may be missing (Webex is not uniform across versions).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    pub id: String,
    #[serde(default)]
    pub schema_id: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub token_lifetime_minutes: Option<u64>,
    /// Not in the spec's examples, but returned (Webex's own sample reads it).
    #[serde(default)]
    pub token_expiry_time: Option<Value>,
    #[serde(default, deserialize_with = "crate::secret::remembered_opt")]
    pub jws_token: Option<SecretString>,
    #[serde(default)]
    pub org_id: Option<String>,
    #[serde(default)]
    pub application_id: Option<String>,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Where a token expiry was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpirySource {
    TokenExpiryTime,
    Jws,
}

impl ExpirySource {
    pub fn name(self) -> &'static str {
        match self {
            ExpirySource::TokenExpiryTime => "tokenExpiryTime",
            ExpirySource::Jws => "jws",
        }
    }
}

impl DataSource {
    pub fn is_disabled(&self) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("disabled"))
    }

    /// The token's expiry: `tokenExpiryTime` when present and readable, else
    /// the JWS payload's `exp`.
    pub fn token_expiry(&self) -> Option<(Timestamp, ExpirySource)> {
        if let Some(t) = self.token_expiry_time.as_ref().and_then(parse_expiry_value) {
            return Some((t, ExpirySource::TokenExpiryTime));
        }
        let claims = self.jws_token.as_ref().and_then(jws_claims)?;
        let exp = claims.get("exp").and_then(number_as_seconds)?;
        Some((Timestamp::from_second(exp).ok()?, ExpirySource::Jws))
    }

    /// A field a renewal must send back, taken from the object or, as the
    /// original tool did, from the token's claims.
    fn field(&self, name: &'static str) -> Result<String, DsError> {
        let (own, claim) = match name {
            "schemaId" => (&self.schema_id, "com.cisco.datasource.schema.uuid"),
            "url" => (&self.url, "com.cisco.datasource.url"),
            "audience" => (&self.audience, "aud"),
            "subject" => (&self.subject, "sub"),
            _ => unreachable!("only the four fields above are sent back"),
        };
        if let Some(v) = own.as_ref().filter(|v| !v.is_empty()) {
            return Ok(v.clone());
        }
        self.jws_token
            .as_ref()
            .and_then(jws_claims)
            .and_then(|c| match c.get(claim) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                // `aud` may be an array in JWTs in general.
                Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_string),
                _ => None,
            })
            .ok_or(DsError::MissingField {
                id: shown(&self.id),
                field: name,
            })
    }

    /// The `PUT /dataSources/{id}` body that renews the token and changes
    /// nothing else: the same schemaId, url, audience, subject and status,
    /// a fresh nonce and the lifetime. `errorMessage` is sent only for a
    /// disabled source, since Webex accepts `disabled` only together with
    /// one; sending it keeps the source disabled with its message.
    pub fn renewal_body(&self, nonce: &str, lifetime_minutes: u32) -> Result<Value, DsError> {
        let mut body = json!({
            "schemaId": self.field("schemaId")?,
            "url": self.field("url")?,
            "audience": self.field("audience")?,
            "subject": self.field("subject")?,
            "nonce": nonce,
            "tokenLifetimeMinutes": lifetime_minutes,
        });
        if let Some(status) = &self.status {
            body["status"] = json!(status);
        }
        if self.is_disabled()
            && let Some(m) = &self.error_message
        {
            body["errorMessage"] = json!(m);
        }
        Ok(body)
    }
}

/// The claims of a JWS, decoded without verifying the signature: we only
/// read its expiry (and, as a fallback, the fields it was issued for); the
/// data provider is the one that verifies it.
pub fn jws_claims(token: &SecretString) -> Option<serde_json::Map<String, Value>> {
    let payload = token.expose_secret().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn number_as_seconds(v: &Value) -> Option<i64> {
    let n = v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))?;
    // Epoch milliseconds are 13 digits until the year 2286.
    Some(if n > 100_000_000_000 { n / 1000 } else { n })
}

/// `tokenExpiryTime` as RFC 3339 (with or without an offset; without one
/// it is UTC) or as epoch seconds/milliseconds.
fn parse_expiry_value(v: &Value) -> Option<Timestamp> {
    match v {
        Value::String(s) => clock::parse(s).or_else(|| clock::parse(&format!("{}Z", s.trim()))),
        Value::Number(_) => Timestamp::from_second(number_as_seconds(v)?).ok(),
        _ => None,
    }
}

pub fn parse_source(what: &str, body: &[u8]) -> Result<DataSource, DsError> {
    serde_json::from_slice(body).map_err(|e| DsError::BadResponse {
        what: what.to_string(),
        // Never the body itself: it holds a token.
        why: format!(
            "the answer is not a data source (line {}, column {})",
            e.line(),
            e.column()
        ),
    })
}

pub fn parse_list(what: &str, body: &[u8]) -> Result<Vec<DataSource>, DsError> {
    #[derive(Deserialize)]
    struct List {
        items: Vec<Value>,
    }
    let list: List = serde_json::from_slice(body).map_err(|_| DsError::BadResponse {
        what: what.to_string(),
        why: "the answer is not a list of data sources (`{\"items\": [...]}`)".into(),
    })?;
    let mut out = Vec::new();
    for (i, item) in list.items.into_iter().enumerate() {
        match serde_json::from_value::<DataSource>(item) {
            Ok(ds) => out.push(ds),
            Err(e) => tracing::warn!("{what}: item {i} is not a data source ({e}); left out"),
        }
    }
    Ok(out)
}

/// Data sources for unit tests here and in `output::datasources`.
#[cfg(test)]
pub(crate) mod test_support {
    use super::DataSource;
    use base64::Engine;
    use serde_json::{Value, json};

    /// `v` as unpadded base64url JSON, as a JWS segment.
    pub fn b64(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// A JWS with `claims` as its payload (the signature is not checked).
    pub fn jws(claims: Value) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(&json!({"alg": "RS256", "kid": "k"})),
            b64(&claims)
        )
    }

    /// A data source from its JSON.
    pub fn source(v: Value) -> DataSource {
        serde_json::from_value(v).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{b64, jws, source};
    use super::*;
    use crate::error::Error;
    use crate::secret::secret;

    #[test]
    fn expiry_from_token_expiry_time_or_jws() {
        let token = jws(json!({"exp": 1_800_000_000, "aud": "a", "sub": "s"}));
        let d = source(json!({"id": "x", "jwsToken": token}));
        assert_eq!(
            d.token_expiry(),
            Some((
                Timestamp::from_second(1_800_000_000).unwrap(),
                ExpirySource::Jws
            ))
        );
        let d = source(json!({
            "id": "x", "jwsToken": token, "tokenExpiryTime": "2027-01-02T03:04:05.000Z"
        }));
        let (t, src) = d.token_expiry().unwrap();
        assert_eq!(src, ExpirySource::TokenExpiryTime);
        assert_eq!(clock::format_utc(t), "2027-01-02T03:04:05Z");
        // Without an offset it is UTC; numbers are epoch seconds or millis.
        for v in [
            json!("2027-01-02T03:04:05"),
            json!(1_798_859_045),
            json!(1_798_859_045_000u64),
        ] {
            let d = source(json!({"id": "x", "tokenExpiryTime": v}));
            assert_eq!(
                clock::format_utc(d.token_expiry().unwrap().0),
                "2027-01-02T03:04:05Z"
            );
        }
        // Garbage: unknown, never a panic.
        for t in [
            "",
            "abc",
            "a.b.c",
            "a.!!!.c",
            &format!("a.{}.c", b64(&json!([1]))),
        ] {
            let d = source(json!({"id": "x", "jwsToken": t}));
            assert_eq!(d.token_expiry(), None, "{t}");
        }
        assert!(jws_claims(&secret(token)).is_some());
    }

    #[test]
    fn renewal_body_keeps_fields_and_adds_nonce() {
        let d = source(json!({
            "id": "x", "schemaId": "schema", "url": "https://u", "audience": "aud",
            "subject": "sub", "status": "active", "errorMessage": "old", "nonce": "n0",
            "tokenLifetimeMinutes": "60", "jwsToken": "h.p.s",
        }));
        assert_eq!(d.token_lifetime_minutes, Some(60));
        let b = d.renewal_body("n1", 1440).unwrap();
        assert_eq!(
            b,
            json!({
                "schemaId": "schema", "url": "https://u", "audience": "aud", "subject": "sub",
                "nonce": "n1", "tokenLifetimeMinutes": 1440, "status": "active",
            })
        );
        let d = source(json!({
            "id": "x", "schemaId": "schema", "url": "https://u", "audience": "aud",
            "subject": "sub", "status": "disabled", "errorMessage": "down",
        }));
        assert_eq!(d.renewal_body("n", 5).unwrap()["errorMessage"], "down");
    }

    #[test]
    fn missing_fields_come_from_the_token_claims() {
        let token = jws(json!({
            "aud": ["from-aud"], "sub": "from-sub",
            "com.cisco.datasource.url": "https://claim",
            "com.cisco.datasource.schema.uuid": "schema-claim",
        }));
        let d = source(json!({"id": "x", "jwsToken": token, "url": ""}));
        let b = d.renewal_body("n", 60).unwrap();
        assert_eq!(b["audience"], "from-aud");
        assert_eq!(b["subject"], "from-sub");
        assert_eq!(b["url"], "https://claim");
        assert_eq!(b["schemaId"], "schema-claim");
        let bare = source(json!({"id": "x"}));
        let e = bare.renewal_body("n", 60).unwrap_err();
        assert!(matches!(
            e,
            DsError::MissingField {
                field: "schemaId",
                ..
            }
        ));
        assert_eq!(Error::from(e).exit_code(), 3);
    }

    #[test]
    fn list_skips_malformed_items() {
        let l = parse_list("GET", br#"{"items":[{"id":"a"},{"noid":1},{"id":"b"}]}"#).unwrap();
        assert_eq!(l.len(), 2);
        assert!(parse_list("GET", b"[]").is_err());
        let e = parse_source("PUT", br#"{"jwsToken":"SECRETJWS""#).unwrap_err();
        assert!(!e.to_string().contains("SECRETJWS"));
    }
}
