//! The `/_sim/` control API (JSON in, JSON out; not recorded).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::datasources::ds_json;
use crate::wire::{Incoming, Resp, service_scopes};
use crate::{
    APPLICATIONS_TOKEN_SCOPE, Fault, FaultKind, Inner, NewDataSource, RecordedRequest, State,
    TokenKind, device, messages, util,
};

const ENDPOINTS: &[&str] = &[
    "GET /_sim/requests",
    "GET /_sim/stats",
    "POST /_sim/reset-stats",
    "GET /_sim/in-flight",
    "POST /_sim/in-flight/reset",
    "GET /_sim/credentials",
    "GET /_sim/now",
    "POST /_sim/expire",
    "POST /_sim/revoke",
    "POST /_sim/advance",
    "POST /_sim/fault",
    "POST /_sim/clear-faults",
    "POST /_sim/authorize-denied",
    "POST /_sim/issue",
    "GET /_sim/datasources",
    "POST /_sim/datasources",
    "GET /_sim/orgs",
    "POST /_sim/orgs",
    "GET /_sim/settings",
    "POST /_sim/settings",
    "GET /_sim/devices",
    "POST /_sim/device/approve",
    "POST /_sim/device/deny",
    "GET /_sim/device/verify",
    "GET /_sim/messages",
    "POST /_sim/messages/delete",
    "POST /_sim/rooms",
];

fn bad(msg: &str) -> Resp {
    Resp::json(400, &json!({ "error": msg }))
}

fn ok() -> Resp {
    Resp::json(200, &json!({"ok": true}))
}

pub(crate) fn control(inner: &Inner, req: &Incoming) -> Resp {
    if req.method == "GET" && req.path == "/_sim/device/verify" {
        return device::verify_page(inner, req);
    }
    let body: Value = if req.body.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str(&req.body) {
            Ok(v) => v,
            Err(e) => return bad(&format!("bad JSON: {e}")),
        }
    };
    let mut st = inner.lock();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/_sim/requests") => {
            let v: Vec<Value> = st.requests.iter().map(RecordedRequest::to_json).collect();
            Resp::json(200, &Value::Array(v))
        }
        ("GET", "/_sim/stats") => {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for r in &st.requests {
                *counts
                    .entry(format!("{} {}", r.method, r.path))
                    .or_default() += 1;
            }
            Resp::json(200, &json!(counts))
        }
        // Kept out of /_sim/stats, which stays a plain map of counts.
        ("GET", "/_sim/in-flight") => Resp::json(
            200,
            &json!({
                "inFlight": inner.in_flight.load(Ordering::SeqCst),
                "maxInFlight": inner.max_in_flight.load(Ordering::SeqCst),
            }),
        ),
        ("POST", "/_sim/in-flight/reset") => {
            inner.reset_max_in_flight();
            ok()
        }
        ("POST", "/_sim/reset-stats") => {
            st.requests.clear();
            inner.reset_max_in_flight();
            ok()
        }
        ("GET", "/_sim/credentials") => {
            let c = &inner.creds;
            Resp::json(
                200,
                &json!({
                    "apiBaseUrl": inner.base_url,
                    "appId": c.app_id,
                    "serviceClientId": c.service_client_id,
                    "serviceClientSecret": c.service_client_secret,
                    "targetOrgId": c.target_org_id,
                    "integrationClientId": c.integration_client_id,
                    "integrationClientSecret": c.integration_client_secret,
                }),
            )
        }
        ("GET", "/_sim/now") => Resp::json(
            200,
            &json!({"now": util::rfc3339(st.now()), "offsetSeconds": st.clock_offset.as_secs()}),
        ),
        ("POST", "/_sim/expire") => expire(&mut st, &body),
        ("POST", "/_sim/revoke") => match body.get("token").and_then(Value::as_str) {
            Some(t) => {
                let n = match st.tokens.get_mut(t) {
                    Some(r) => {
                        r.revoked = true;
                        1
                    }
                    None => 0,
                };
                Resp::json(200, &json!({"revoked": n}))
            }
            None => bad("expected {\"token\": ...}"),
        },
        ("POST", "/_sim/advance") => match body.get("seconds").and_then(Value::as_f64) {
            Some(s) if s >= 0.0 && s.is_finite() => {
                st.clock_offset += Duration::from_secs_f64(s);
                Resp::json(200, &json!({"now": util::rfc3339(st.now())}))
            }
            _ => bad("expected {\"seconds\": N} with N >= 0"),
        },
        ("POST", "/_sim/fault") => match fault_from_json(&body) {
            Ok(f) => {
                if f.times > 0 {
                    st.faults.push(f);
                }
                ok()
            }
            Err(e) => bad(&e),
        },
        ("POST", "/_sim/clear-faults") => {
            st.faults.clear();
            ok()
        }
        ("POST", "/_sim/authorize-denied") => match body.get("denied").and_then(Value::as_bool) {
            Some(d) => {
                st.authorize_denied = d;
                ok()
            }
            None => bad("expected {\"denied\": true|false}"),
        },
        ("POST", "/_sim/issue") => issue(inner, &mut st, &body),
        ("GET", "/_sim/datasources") => {
            let q = util::parse_urlencoded(&req.query);
            let only = match q.get("orgId") {
                None => None,
                Some(id) => match st.orgs.position(id) {
                    Some(o) => Some(o),
                    None => return bad("unknown orgId"),
                },
            };
            let v: Vec<Value> = st
                .orgs
                .iter()
                .enumerate()
                .filter(|(i, _)| only.is_none_or(|o| o == *i))
                .flat_map(|(_, org)| org.data_sources.iter().map(move |d| (org, d)))
                .map(|(org, d)| ds_json(inner, org, d))
                .collect();
            Resp::json(200, &json!({ "items": v }))
        }
        ("POST", "/_sim/datasources") => add_data_source(inner, &mut st, &body),
        ("GET", "/_sim/orgs") => {
            let v: Vec<Value> = st.orgs.iter().map(|o| o.to_json()).collect();
            Resp::json(200, &json!({ "items": v }))
        }
        ("POST", "/_sim/orgs") => {
            let added: Result<Vec<usize>, String> =
                match (body.get("count"), body.get("orgId").and_then(Value::as_str)) {
                    (Some(n), None) => match n.as_u64() {
                        Some(n) if n <= 100_000 => Ok(st.add_random_orgs(n as usize)),
                        _ => Err("\"count\" must be a number 0..=100000".into()),
                    },
                    (None, Some(id)) => st.orgs.add(id).map(|i| vec![i]),
                    _ => Err("expected {\"count\": N} or {\"orgId\": \"...\"}".into()),
                };
            match added {
                Ok(list) => {
                    let v: Vec<Value> = list.iter().map(|&i| st.orgs.get(i).to_json()).collect();
                    Resp::json(200, &json!({ "items": v }))
                }
                Err(e) => bad(&e),
            }
        }
        ("GET", "/_sim/settings") => Resp::json(200, &settings_json(&st)),
        ("POST", "/_sim/settings") => {
            let ms = |k: &str| {
                body.get(k)
                    .map(|v| v.as_f64().filter(|x| *x >= 0.0 && x.is_finite()))
            };
            let mut latency = None;
            let mut interval = None;
            let mut code_ttl = None;
            let mut page = None;
            match ms("latencyMs") {
                Some(None) => return bad("latencyMs must be a number >= 0"),
                Some(Some(x)) => latency = Some(Duration::from_secs_f64(x / 1000.0)),
                None => {}
            }
            match ms("deviceIntervalSeconds") {
                Some(None) => return bad("deviceIntervalSeconds must be a number >= 0"),
                Some(Some(x)) => interval = Some(Duration::from_secs_f64(x)),
                None => {}
            }
            match ms("deviceCodeSeconds") {
                Some(Some(x)) if x >= 1.0 => code_ttl = Some(Duration::from_secs_f64(x)),
                Some(_) => return bad("deviceCodeSeconds must be a number >= 1"),
                None => {}
            }
            match body.get("pageSize").map(Value::as_u64) {
                Some(Some(n)) if n >= 1 => page = Some(n as usize),
                Some(_) => return bad("pageSize must be a number >= 1"),
                None => {}
            }
            if let Some(l) = latency {
                st.latency = l;
            }
            if let Some(i) = interval {
                st.device_interval = i;
            }
            if let Some(p) = page {
                st.page_size = p;
            }
            if let Some(t) = code_ttl {
                st.device_code_ttl = t;
            }
            Resp::json(200, &settings_json(&st))
        }
        ("GET", "/_sim/messages") => Resp::json(200, &st.messages.to_json()),
        ("POST", "/_sim/messages/delete") => match body.get("id").and_then(Value::as_str) {
            Some(id) => Resp::json(200, &json!({"deleted": st.messages.delete(id)})),
            None => bad("expected {\"id\": \"<message id>\"}"),
        },
        ("POST", "/_sim/rooms") => Resp::json(200, &json!({"roomId": messages::new_room_id()})),
        ("GET", "/_sim/devices") => {
            let now = st.now();
            Resp::json(200, &st.devices.to_json(now))
        }
        ("POST", "/_sim/device/approve") | ("POST", "/_sim/device/deny") => {
            let approve = req.path.ends_with("approve");
            let code = match body.get("userCode") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.as_str()),
                Some(_) => return bad("userCode must be a string"),
            };
            let now = st.now();
            match st.devices.decide(code, now, approve) {
                Some(c) => Resp::json(200, &json!({ "userCode": c })),
                None => Resp::json(
                    404,
                    &json!({"error": "no pending (unexpired) device authorization with that user code"}),
                ),
            }
        }
        _ => Resp::json(
            404,
            &json!({"error": "unknown control endpoint", "endpoints": ENDPOINTS}),
        ),
    }
}

fn settings_json(st: &State) -> Value {
    json!({
        "latencyMs": st.latency.as_secs_f64() * 1000.0,
        "pageSize": st.page_size,
        "deviceIntervalSeconds": st.device_interval.as_secs_f64(),
        "deviceCodeSeconds": st.device_code_ttl.as_secs_f64(),
    })
}

fn expire(st: &mut State, body: &Value) -> Resp {
    if let Some(t) = body.get("token").and_then(Value::as_str) {
        let n = st.expire_where(|k, _| k == t);
        return Resp::json(200, &json!({"expired": n}));
    }
    let kinds: &[TokenKind] = match body.get("kind").and_then(Value::as_str) {
        Some("service_access") => &[TokenKind::ServiceAccess],
        Some("service_refresh") => &[TokenKind::ServiceRefresh],
        Some("personal") => &[TokenKind::Personal],
        Some("integration_refresh") => &[TokenKind::IntegrationRefresh],
        Some("all_access") => &[TokenKind::ServiceAccess, TokenKind::Personal],
        Some("bot") => &[TokenKind::Bot],
        _ => {
            return bad(
                "expected {\"token\": ...} or {\"kind\": service_access|service_refresh|personal|integration_refresh|all_access|bot}",
            );
        }
    };
    let n = st.expire_where(|_, r| kinds.contains(&r.kind));
    Resp::json(200, &json!({"expired": n}))
}

/// `orgId` from a control body: the position of a known org, the first org
/// when absent, or an error.
fn org_of(st: &State, body: &Value) -> Result<usize, Resp> {
    match body.get("orgId") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(id)) => st.orgs.position(id).ok_or_else(|| bad("unknown orgId")),
        Some(_) => Err(bad("orgId must be a string")),
    }
}

fn issue(inner: &Inner, st: &mut State, body: &Value) -> Resp {
    let ttl = body
        .get("ttlSeconds")
        .and_then(Value::as_u64)
        .map(Duration::from_secs);
    let o = &inner.opts;
    let c = &inner.creds;
    let pat_scopes = vec![
        APPLICATIONS_TOKEN_SCOPE.to_string(),
        "spark:kms".to_string(),
    ];
    let v = match body.get("kind").and_then(Value::as_str) {
        Some("personal") => {
            let t = st.issue(
                TokenKind::Personal,
                &c.integration_client_id,
                &pat_scopes,
                ttl.unwrap_or(o.personal_ttl),
            );
            json!({"token": t})
        }
        Some("personal_without_scope") => {
            let t = st.issue(
                TokenKind::Personal,
                &c.integration_client_id,
                &["spark:people_read".to_string()],
                ttl.unwrap_or(o.personal_ttl),
            );
            json!({"token": t})
        }
        Some("integration_refresh") => {
            let t = st.issue(
                TokenKind::IntegrationRefresh,
                &c.integration_client_id,
                &pat_scopes,
                ttl.unwrap_or(o.integration_refresh_ttl),
            );
            json!({"token": t})
        }
        Some("bot") => {
            let scopes: Vec<String> = match body.get("scopes") {
                None | Some(Value::Null) => {
                    messages::BOT_SCOPES.iter().map(|s| s.to_string()).collect()
                }
                Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                Some(_) => return bad("\"scopes\" must be an array of strings"),
            };
            let t = st.issue(
                TokenKind::Bot,
                messages::BOT_CLIENT_ID,
                &scopes,
                ttl.unwrap_or(Duration::from_secs(3650 * 86_400)),
            );
            json!({"token": t, "personEmail": messages::BOT_EMAIL})
        }
        Some("service") => {
            let org = match org_of(st, body) {
                Ok(x) => x,
                Err(r) => return r,
            };
            let a = st.issue_in(
                org,
                TokenKind::ServiceAccess,
                &c.service_client_id,
                &service_scopes(),
                ttl.unwrap_or(o.access_ttl),
            );
            let r = st.issue_in(
                org,
                TokenKind::ServiceRefresh,
                &c.service_client_id,
                &service_scopes(),
                o.refresh_ttl,
            );
            json!({"access_token": a, "refresh_token": r})
        }
        _ => {
            return bad(
                "expected {\"kind\": personal|personal_without_scope|integration_refresh|service|bot, \"ttlSeconds\"?: N, \"orgId\"?: \"...\", \"scopes\"?: [...] (bot)}",
            );
        }
    };
    Resp::json(200, &v)
}

fn add_data_source(inner: &Inner, st: &mut State, body: &Value) -> Resp {
    let org = match org_of(st, body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let d = NewDataSource::default();
    let s = |k: &str, def: String| {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or(def)
    };
    let lifetime = match body.get("tokenLifetimeMinutes") {
        None => d.token_lifetime_minutes,
        Some(v) => match v.as_u64() {
            Some(n) if n <= 1440 => n as u32,
            _ => return bad("tokenLifetimeMinutes must be 0..=1440"),
        },
    };
    let nd = NewDataSource {
        schema_id: s("schemaId", d.schema_id),
        url: s("url", d.url),
        audience: s("audience", d.audience),
        subject: s("subject", d.subject),
        token_lifetime_minutes: lifetime,
        expires_in: body
            .get("expiresInSeconds")
            .and_then(Value::as_u64)
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(u64::from(lifetime) * 60)),
        status: s("status", d.status),
        error_message: body
            .get("errorMessage")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    st.new_data_source(org, &nd);
    let o = st.orgs.get(org);
    let v = o
        .data_sources
        .last()
        .map(|d| ds_json(inner, o, d))
        .unwrap_or(Value::Null);
    Resp::json(200, &v)
}
/// Parses a fault from control JSON:
/// `{"path": "/v1/access_token", "method"?: "POST", "times"?: N | "forever" (default 1),
///   "kind": "status", "status": 503, "body"?: "...", "retryAfter"?: "5", "contentType"?: "..."}`
/// or `"kind": "delay"` / `"delay_after"`, `"ms": 1500` (or `"seconds": 1.5`),
/// `"kind": "truncated"`, `"kind": "close"`.
pub(crate) fn fault_from_json(v: &Value) -> Result<Fault, String> {
    let path = v
        .get("path")
        .and_then(Value::as_str)
        .ok_or("fault needs \"path\"")?
        .to_string();
    let method = v
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase);
    let times = match v.get("times") {
        None | Some(Value::Null) => 1,
        Some(Value::String(s)) if s == "forever" => usize::MAX,
        Some(t) => t
            .as_u64()
            .map(|n| n as usize)
            .ok_or("\"times\" must be a number or \"forever\"")?,
    };
    let str_of = |a: &str, b: &str| {
        v.get(a).or_else(|| v.get(b)).and_then(|x| match x {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let kind = match v.get("kind").and_then(Value::as_str).unwrap_or("status") {
        "status" => FaultKind::Status {
            status: v
                .get("status")
                .and_then(Value::as_u64)
                .filter(|s| (100..=599).contains(s))
                .ok_or("status fault needs \"status\" (100..=599)")? as u16,
            body: str_of("body", "body").unwrap_or_default(),
            retry_after: str_of("retryAfter", "retry_after"),
            content_type: str_of("contentType", "content_type"),
        },
        k @ ("delay" | "delay_after") => {
            let d = if let Some(ms) = v.get("ms").and_then(Value::as_u64) {
                Duration::from_millis(ms)
            } else if let Some(s) = v.get("seconds").and_then(Value::as_f64) {
                Duration::from_secs_f64(s.max(0.0))
            } else {
                return Err(format!("{k} fault needs \"ms\" or \"seconds\""));
            };
            if k == "delay" {
                FaultKind::Delay(d)
            } else {
                FaultKind::DelayAfter(d)
            }
        }
        "truncated" => FaultKind::Truncated,
        "close" | "close_connection" => FaultKind::CloseConnection,
        other => return Err(format!("unknown fault kind {other:?}")),
    };
    Ok(Fault {
        method,
        path,
        times,
        kind,
    })
}
