//! BYODS data sources (`/v1/dataSources`): per org, seen through a service-app
//! access token of that org; the list pages like Webex list APIs (`max`,
//! `Link: <…>; rel="next"`).

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::orgs::Org;
use crate::wire::{Incoming, Resp, service_auth, webex_error};
use crate::{DataSource, Inner, util};

pub(crate) fn make_jws(
    ds: &DataSource,
    org_uuid: &str,
    iat: SystemTime,
    exp: SystemTime,
) -> String {
    let header = json!({"alg": "RS256", "kid": "webex-sim-datasource-1", "typ": "JWT"});
    let payload = json!({
        "aud": ds.audience,
        "sub": ds.subject,
        "iss": "https://idbroker.webex.com/idb",
        "iat": util::epoch_secs(iat),
        "exp": util::epoch_secs(exp),
        "jti": util::random_alnum(22),
        "com.cisco.datasource.url": ds.url,
        "com.cisco.datasource.schema.uuid": ds.schema_id,
        "com.cisco.org.uuid": org_uuid,
    });
    format!(
        "{}.{}.{}",
        util::b64url(header.to_string().as_bytes()),
        util::b64url(payload.to_string().as_bytes()),
        util::b64url(&util::random_bytes(256))
    )
}

pub(crate) fn ds_json(inner: &Inner, org: &Org, d: &DataSource) -> Value {
    let mut v = json!({
        "id": d.id,
        "schemaId": d.schema_id,
        "orgId": org.id,
        "applicationId": inner.creds.app_id,
        "url": d.url,
        "audience": d.audience,
        "subject": d.subject,
        "nonce": d.nonce,
        "tokenLifetimeMinutes": d.lifetime_minutes,
        "status": d.status,
        "jwsToken": d.jws,
        "tokenExpiryTime": util::rfc3339(d.token_expiry),
        "createdBy": inner.machine_account_id(),
        "createdAt": util::rfc3339(d.created_at),
        "updatedAt": util::rfc3339(d.updated_at),
    });
    if let Some(e) = &d.error_message {
        v["errorMessage"] = Value::String(e.clone());
    }
    v
}

fn not_found() -> Resp {
    webex_error(404, "Data source not found.")
}

/// The cursor is opaque to clients: base64url of `offset:N`.
fn encode_cursor(offset: usize) -> String {
    util::b64url(format!("offset:{offset}").as_bytes())
}

fn decode_cursor(c: &str) -> Option<usize> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("offset:")?
        .parse()
        .ok()
}

/// `GET /v1/dataSources[?max=N][&cursor=…]`: one page of the token's org's
/// data sources; `Link: <next>; rel="next"` while more remain.
pub(crate) fn list(inner: &Inner, req: &Incoming) -> Resp {
    let st = inner.lock();
    let org = match service_auth(&st, req) {
        Ok(o) => st.orgs.get(o),
        Err(r) => return r,
    };
    let q = util::parse_urlencoded(&req.query);
    let max = match q.get("max") {
        None => st.page_size.max(1),
        Some(m) => match m.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => return webex_error(400, "Invalid value for max: must be a positive integer."),
        },
    };
    let offset = match q.get("cursor") {
        None => 0,
        Some(c) => match decode_cursor(c) {
            Some(n) => n,
            None => return webex_error(400, "Invalid cursor."),
        },
    };
    let all = &org.data_sources;
    let end = offset.saturating_add(max).min(all.len());
    let items: Vec<Value> = all
        .get(offset.min(all.len())..end)
        .unwrap_or_default()
        .iter()
        .map(|d| ds_json(inner, org, d))
        .collect();
    let mut resp = Resp::json(200, &json!({ "items": items }));
    if end < all.len() {
        let next = format!(
            "{}/dataSources?max={max}&cursor={}",
            inner.base_url,
            encode_cursor(end)
        );
        resp = resp.header("Link", &format!("<{next}>; rel=\"next\""));
    }
    resp
}

pub(crate) fn get(inner: &Inner, req: &Incoming, id: &str) -> Resp {
    let st = inner.lock();
    let org = match service_auth(&st, req) {
        Ok(o) => st.orgs.get(o),
        Err(r) => return r,
    };
    match org.data_sources.iter().find(|d| d.id == id) {
        Some(d) => Resp::json(200, &ds_json(inner, org, d)),
        None => not_found(),
    }
}

pub(crate) fn delete(inner: &Inner, req: &Incoming, id: &str) -> Resp {
    let mut st = inner.lock();
    let o = match service_auth(&st, req) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let list = &mut st.orgs.get_mut(o).data_sources;
    let before = list.len();
    list.retain(|d| d.id != id);
    if list.len() == before {
        not_found()
    } else {
        Resp::empty(204)
    }
}

fn json_body(req: &Incoming) -> Result<serde_json::Map<String, Value>, Resp> {
    match serde_json::from_str(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(webex_error(400, "The request body must be a JSON object.")),
    }
}

fn lifetime_of(v: &Value) -> Result<u32, Resp> {
    match v.as_u64() {
        Some(n @ 1..=1440) => Ok(n as u32),
        _ => Err(webex_error(
            400,
            "tokenLifetimeMinutes must be an integer between 1 and 1440.",
        )),
    }
}

fn nonce_used() -> Resp {
    webex_error(
        400,
        "The nonce has already been used. Use a new unique nonce.",
    )
}

pub(crate) fn register(inner: &Inner, req: &Incoming) -> Resp {
    let mut st = inner.lock();
    let o = match service_auth(&st, req) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let body = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut vals = BTreeMap::new();
    for k in ["schemaId", "url", "audience", "subject", "nonce"] {
        match body
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(s) => {
                vals.insert(k, s.to_string());
            }
            None => return webex_error(400, &format!("Missing required field: {k}.")),
        }
    }
    let lifetime = match body.get("tokenLifetimeMinutes").map(lifetime_of) {
        Some(Ok(n)) => n,
        Some(Err(r)) => return r,
        None => return webex_error(400, "Missing required field: tokenLifetimeMinutes."),
    };
    if st.nonces.contains(&vals["nonce"]) {
        return nonce_used();
    }
    let now = st.now();
    let exp = now + st.ds_minutes(lifetime);
    let mut d = DataSource {
        id: util::uuid_v4(),
        schema_id: vals["schemaId"].clone(),
        url: vals["url"].clone(),
        audience: vals["audience"].clone(),
        subject: vals["subject"].clone(),
        nonce: vals["nonce"].clone(),
        lifetime_minutes: lifetime,
        status: "active".to_string(),
        error_message: None,
        jws: String::new(),
        token_expiry: exp,
        created_at: now,
        updated_at: now,
    };
    d.jws = make_jws(&d, &st.orgs.get(o).uuid, now, exp);
    st.nonces.insert(d.nonce.clone());
    let v = ds_json(inner, st.orgs.get(o), &d);
    st.orgs.get_mut(o).data_sources.push(d);
    Resp::json(200, &v)
}

pub(crate) fn update(inner: &Inner, req: &Incoming, id: &str) -> Resp {
    let mut st = inner.lock();
    let o = match service_auth(&st, req) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some(idx) = st.orgs.get(o).data_sources.iter().position(|d| d.id == id) else {
        return not_found();
    };
    let body = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let s = |k: &str| -> Result<Option<String>, Resp> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(v)) if !v.is_empty() => Ok(Some(v.clone())),
            Some(_) => Err(webex_error(400, &format!("Invalid value for {k}."))),
        }
    };
    let parsed = (|| {
        Ok::<_, Resp>((
            s("nonce")?,
            s("audience")?,
            s("subject")?,
            s("url")?,
            s("schemaId")?,
            s("status")?,
            s("errorMessage")?,
        ))
    })();
    let (nonce, audience, subject, url, schema_id, status, error_message) = match parsed {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(nonce) = nonce else {
        return webex_error(400, "Missing required field: nonce.");
    };
    if st.nonces.contains(&nonce) {
        return nonce_used();
    }
    let lifetime = match body.get("tokenLifetimeMinutes").map(lifetime_of) {
        Some(Ok(n)) => Some(n),
        Some(Err(r)) => return r,
        None => None,
    };
    if let Some(s) = &status {
        if s != "active" && s != "disabled" {
            return webex_error(400, "status must be active or disabled.");
        }
        if s == "disabled" && error_message.is_none() {
            return webex_error(
                400,
                "errorMessage is required when disabling a data source.",
            );
        }
    }
    let now = st.now();
    let ds_minute = st.ds_minute;
    st.nonces.insert(nonce.clone());
    let org = st.orgs.get_mut(o);
    let org_uuid = org.uuid.clone();
    let d = &mut org.data_sources[idx];
    d.nonce = nonce;
    if let Some(v) = audience {
        d.audience = v;
    }
    if let Some(v) = subject {
        d.subject = v;
    }
    if let Some(v) = url {
        d.url = v;
    }
    if let Some(v) = schema_id {
        d.schema_id = v;
    }
    if let Some(v) = lifetime {
        d.lifetime_minutes = v;
    }
    match status.as_deref() {
        Some("active") => {
            d.status = "active".into();
            d.error_message = None;
        }
        Some(_) => {
            d.status = "disabled".into();
            d.error_message = error_message;
        }
        None => {
            if error_message.is_some() && d.status == "disabled" {
                d.error_message = error_message;
            }
        }
    }
    let exp = now + ds_minute * d.lifetime_minutes;
    d.token_expiry = exp;
    d.updated_at = now;
    d.jws = make_jws(d, &org_uuid, now, exp);
    let org = st.orgs.get(o);
    Resp::json(200, &ds_json(inner, org, &org.data_sources[idx]))
}
