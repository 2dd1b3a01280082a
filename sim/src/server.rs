//! HTTP handling: routing, the simulated Webex endpoints and the `/_sim/` control API.

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::wire::{
    Body, Incoming, JSON, Resp, access_auth, bearer_of, client_credentials, oauth_error, reason,
    service_scopes, token_json, tracking_id, webex_error,
};
use crate::{APPLICATIONS_TOKEN_SCOPE, CodeRec, FaultKind, Inner, RecordedRequest, TokenKind};
use crate::{control, datasources, device, messages, util};

const CODE_TTL: Duration = Duration::from_secs(300);

pub(crate) fn serve_one(inner: &Inner, rq: crate::http::Request) {
    let started = Instant::now();
    let method = rq.method.to_ascii_uppercase();
    let url = rq.url.clone();
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (url.clone(), String::new()),
    };
    let headers: Vec<(String, String)> = rq
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let body = String::from_utf8_lossy(&rq.body).into_owned();
    let is_form = headers.iter().any(|(k, v)| {
        k == "content-type"
            && v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
    });
    let form = is_form.then(|| util::parse_urlencoded(&body));
    let req = Incoming {
        method,
        path,
        query,
        headers,
        body,
        form,
    };

    let control = req.path == "/_sim" || req.path.starts_with("/_sim/");
    let fault = if control {
        None
    } else {
        inner.enter();
        let latency = inner.lock().latency;
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        take_fault(inner, &req.method, &req.path)
    };
    let mut delay_after = None;
    let resp = match fault {
        None => handle(inner, &req),
        Some(FaultKind::Delay(d)) => {
            std::thread::sleep(d);
            handle(inner, &req)
        }
        Some(FaultKind::DelayAfter(d)) => {
            delay_after = Some(d);
            handle(inner, &req)
        }
        Some(FaultKind::Status {
            status,
            body,
            retry_after,
            content_type,
        }) => {
            let mut r = if body.is_empty() {
                let msg = match status {
                    429 => "Too many requests have been made. Please retry after the time given in the Retry-After header.".to_string(),
                    s => format!("{} (simulated fault)", reason(s)),
                };
                if req.path == "/v1/access_token" && status < 500 && status != 429 {
                    oauth_error(status, "invalid_request", &msg)
                } else {
                    webex_error(status, &msg)
                }
            } else {
                let tid = tracking_id();
                Resp {
                    status,
                    headers: vec![("Content-Type".into(), JSON.into())],
                    body: Body::Normal(body),
                }
                .header("trackingid", &tid)
            };
            if let Some(ct) = content_type {
                r = r.header("Content-Type", &ct);
            }
            if let Some(ra) = retry_after {
                r = r.header("Retry-After", &ra);
            }
            r
        }
        Some(FaultKind::Truncated) => {
            let cut = if req.path.starts_with("/v1/dataSources") {
                format!("{{\"items\":[{{\"id\":\"{}", &util::uuid_v4()[..13])
            } else {
                format!(
                    "{{\"access_token\":\"{}\",\"expires_in\":12",
                    util::random_alnum(40)
                )
            };
            Resp {
                status: 200,
                headers: vec![("Content-Type".into(), JSON.into())],
                body: Body::Normal(cut),
            }
            .header("trackingid", &tracking_id())
        }
        Some(FaultKind::CloseConnection) => Resp {
            status: 0,
            headers: vec![],
            body: Body::Garbage,
        },
    };

    {
        let mut st = inner.lock();
        if !control {
            let at = st.now();
            st.requests.push(RecordedRequest {
                method: req.method.clone(),
                path: req.path.clone(),
                query: req.query.clone(),
                headers: req.headers.clone(),
                body: req.body.clone(),
                form: req.form.clone(),
                status: resp.status,
                at,
            });
        }
        if st.log_requests {
            eprintln!(
                "{} {}{} -> {} ({} ms)",
                req.method,
                req.path,
                log_detail(&req),
                if resp.status == 0 {
                    "connection dropped".to_string()
                } else {
                    resp.status.to_string()
                },
                started.elapsed().as_millis()
            );
        }
    }
    if let Some(d) = delay_after {
        // The state change is done (and recorded); only the answer is late.
        std::thread::sleep(d);
    }
    if !control {
        // Before the answer goes out: a client never sees more requests in
        // flight than it really has (its next request can only come after).
        inner.leave();
    }
    send(rq, resp);
}

/// Non-secret details for the log line.
fn log_detail(req: &Incoming) -> String {
    let mut parts = Vec::new();
    if let Some(t) = bearer_of(req.header("authorization")) {
        parts.push(format!("bearer {}", util::fingerprint(t)));
    }
    if let Some(f) = &req.form {
        if let Some(g) = f.get("grant_type") {
            parts.push(format!("grant_type={g}"));
        }
        if let Some(t) = f.get("refresh_token") {
            parts.push(format!("refresh_token {}", util::fingerprint(t)));
        }
        if let Some(c) = f.get("client_id") {
            parts.push(format!("client {}", util::fingerprint(c)));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", parts.join(", "))
    }
}

fn send(rq: crate::http::Request, resp: Resp) {
    match resp.body {
        Body::Garbage => {
            rq.garbage(b"\x00\x00 webex-sim dropped this connection \x00\r\n\r\n");
        }
        Body::Normal(body) => {
            rq.respond(
                resp.status,
                reason(resp.status),
                &resp.headers,
                body.as_bytes(),
            );
        }
    }
}

fn take_fault(inner: &Inner, method: &str, path: &str) -> Option<FaultKind> {
    let mut st = inner.lock();
    let idx = st.faults.iter().position(|f| {
        f.path == path
            && f.times > 0
            && f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    })?;
    let f = &mut st.faults[idx];
    let kind = f.kind.clone();
    if f.times != usize::MAX {
        f.times -= 1;
        if f.times == 0 {
            st.faults.remove(idx);
        }
    }
    Some(kind)
}

// ---------------------------------------------------------------- routing

fn handle(inner: &Inner, req: &Incoming) -> Resp {
    let path = req.path.as_str();
    let m = req.method.as_str();
    if path == "/_sim" || path.starts_with("/_sim/") {
        return control::control(inner, req);
    }
    let segs: Vec<&str> = path
        .strip_prefix("/v1/")
        .map(|p| p.trim_end_matches('/').split('/').collect())
        .unwrap_or_default();
    let wrong_method = || {
        webex_error(
            405,
            "The requested HTTP method is not supported by this resource.",
        )
    };
    match segs.as_slice() {
        ["access_token"] => match m {
            "POST" => access_token(inner, req),
            _ => wrong_method(),
        },
        ["authorize"] => match m {
            "GET" => authorize(inner, req),
            _ => wrong_method(),
        },
        ["applications", app_id, "token"] => match m {
            "POST" => mint(inner, req, app_id),
            _ => wrong_method(),
        },
        ["device", "authorize"] => match m {
            "POST" => device::authorize(inner, req),
            _ => wrong_method(),
        },
        ["device", "token"] => match m {
            "POST" => device::token(inner, req),
            _ => wrong_method(),
        },
        ["dataSources"] => match m {
            "GET" => datasources::list(inner, req),
            "POST" => datasources::register(inner, req),
            _ => wrong_method(),
        },
        ["dataSources", "schemas"] => match m {
            "GET" => schemas(inner, req, None),
            _ => wrong_method(),
        },
        ["dataSources", "schemas", id] => match m {
            "GET" => schemas(inner, req, Some(id)),
            _ => wrong_method(),
        },
        ["dataSources", id] => match m {
            "GET" => datasources::get(inner, req, id),
            "PUT" => datasources::update(inner, req, id),
            "DELETE" => datasources::delete(inner, req, id),
            _ => wrong_method(),
        },
        ["authorizations", "tokenExpiry"] => match m {
            "GET" => token_expiry(inner, req),
            _ => wrong_method(),
        },
        ["messages"] => match m {
            "POST" => messages::create(inner, req),
            _ => wrong_method(),
        },
        ["messages", id] => match m {
            "GET" => messages::get(inner, req, id),
            "PUT" => messages::edit(inner, req, id),
            _ => wrong_method(),
        },
        ["people", "me"] => match m {
            "GET" => people_me(inner, req),
            _ => wrong_method(),
        },
        _ => webex_error(404, "The requested resource could not be found."),
    }
}

// ---------------------------------------------------------------- /access_token

fn access_token(inner: &Inner, req: &Incoming) -> Resp {
    let Some(form) = &req.form else {
        return oauth_error(
            400,
            "invalid_request",
            "The request must be form-encoded (Content-Type: application/x-www-form-urlencoded).",
        );
    };
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let (client_id, client_secret) = client_credentials(req, form);
    let grant = match get("grant_type") {
        None => {
            return oauth_error(
                400,
                "invalid_request",
                "The request is missing the grant_type parameter.",
            );
        }
        Some(g @ ("refresh_token" | "authorization_code")) => g,
        Some(_) => {
            return oauth_error(
                400,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            );
        }
    };
    let c = &inner.creds;
    let client_ok = (client_id == c.service_client_id && client_secret == c.service_client_secret)
        || (client_id == c.integration_client_id && client_secret == c.integration_client_secret);
    if !client_ok {
        return oauth_error(
            401,
            "invalid_client",
            "Client authentication failed: the client_id or client_secret is invalid.",
        );
    }
    let is_service = client_id == c.service_client_id;
    let mut st = inner.lock();

    match grant {
        "refresh_token" => {
            let Some(rt) = get("refresh_token") else {
                return oauth_error(
                    400,
                    "invalid_request",
                    "The request is missing the refresh_token parameter.",
                );
            };
            let want = if is_service {
                TokenKind::ServiceRefresh
            } else {
                TokenKind::IntegrationRefresh
            };
            let (scopes, org) = match st.live(rt) {
                Some(r) if r.kind == want && r.client_id == client_id => (r.scopes.clone(), r.org),
                _ => {
                    return oauth_error(
                        400,
                        "invalid_grant",
                        "The refresh token provided is expired, revoked, malformed, or invalid.",
                    );
                }
            };
            let (access_kind, access_ttl, refresh_ttl) = if is_service {
                (
                    TokenKind::ServiceAccess,
                    inner.opts.access_ttl,
                    inner.opts.refresh_ttl,
                )
            } else {
                (
                    TokenKind::Personal,
                    inner.opts.integration_access_ttl,
                    inner.opts.integration_refresh_ttl,
                )
            };
            let access = st.issue_in(org, access_kind, &client_id, &scopes, access_ttl);
            let refresh = if inner.opts.rotate_refresh_tokens {
                if let Some(r) = st.tokens.get_mut(rt) {
                    r.revoked = true;
                }
                st.issue_in(org, want, &client_id, &scopes, refresh_ttl)
            } else {
                rt.to_string()
            };
            Resp::json(200, &token_json(&st, &access, &refresh))
        }
        _ => {
            let (Some(code), Some(redirect_uri)) = (get("code"), get("redirect_uri")) else {
                return oauth_error(
                    400,
                    "invalid_request",
                    "The request is missing the code or redirect_uri parameter.",
                );
            };
            let now = st.now();
            let bad = |why: &str| oauth_error(400, "invalid_grant", why);
            let rec: CodeRec = match st.codes.get(code) {
                Some(r) => r.clone(),
                None => return bad("The authorization code is invalid."),
            };
            if rec.used {
                return bad("The authorization code has already been used.");
            }
            if rec.expires_at <= now {
                return bad("The authorization code has expired.");
            }
            if rec.client_id != client_id {
                return bad("The authorization code was issued to another client.");
            }
            if rec.redirect_uri != redirect_uri {
                return bad(
                    "The redirect_uri does not match the one used in the authorization request.",
                );
            }
            if let Some((method, challenge)) = &rec.challenge {
                let Some(verifier) = get("code_verifier") else {
                    return bad("PKCE verification failed: code_verifier is required.");
                };
                let computed = if method == "S256" {
                    util::pkce_s256(verifier)
                } else {
                    verifier.to_string()
                };
                if !(43..=128).contains(&verifier.len()) || &computed != challenge {
                    return bad(
                        "PKCE verification failed: the code_verifier does not match the code_challenge.",
                    );
                }
            }
            if let Some(r) = st.codes.get_mut(code) {
                r.used = true;
            }
            let access = st.issue(
                TokenKind::Personal,
                &client_id,
                &rec.scopes,
                inner.opts.integration_access_ttl,
            );
            let refresh = st.issue(
                TokenKind::IntegrationRefresh,
                &client_id,
                &rec.scopes,
                inner.opts.integration_refresh_ttl,
            );
            Resp::json(200, &token_json(&st, &access, &refresh))
        }
    }
}

// ---------------------------------------------------------------- /authorize

fn authorize(inner: &Inner, req: &Incoming) -> Resp {
    let q = util::parse_urlencoded(&req.query);
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let Some(client_id) = get("client_id") else {
        return Resp::html(400, "Invalid request: client_id is missing.");
    };
    if client_id != inner.creds.integration_client_id {
        return Resp::html(400, "Invalid client_id: no such integration.");
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return Resp::html(400, "Invalid request: redirect_uri is missing.");
    };
    if !(redirect_uri.starts_with("http://") || redirect_uri.starts_with("https://")) {
        return Resp::html(400, "Invalid redirect_uri.");
    }
    let state = get("state");
    let back = |params: Vec<(&str, String)>| {
        let mut url = redirect_uri.to_string();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        let mut all = params;
        if let Some(s) = state {
            all.push(("state", s.to_string()));
        }
        for (k, v) in all {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(&util::percent_encode(&v));
            sep = '&';
        }
        Resp::redirect(url)
    };
    let err = |e: &str, d: &str| {
        back(vec![
            ("error", e.to_string()),
            ("error_description", d.to_string()),
        ])
    };
    if get("response_type") != Some("code") {
        return err(
            "unsupported_response_type",
            "Only response_type=code is supported.",
        );
    }
    let Some(scope) = get("scope") else {
        return err("invalid_scope", "The scope parameter is required.");
    };
    let challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, _) => None,
        (Some(c), Some("S256")) => Some(("S256".to_string(), c.to_string())),
        (Some(c), None | Some("plain")) => Some(("plain".to_string(), c.to_string())),
        (Some(_), Some(_)) => {
            return err("invalid_request", "Unsupported code_challenge_method.");
        }
    };
    let mut st = inner.lock();
    if st.authorize_denied {
        return err("access_denied", "The user denied the request.");
    }
    let code = util::random_alnum(64);
    let now = st.now();
    st.codes.insert(
        code.clone(),
        CodeRec {
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.to_string(),
            scopes: scope.split_whitespace().map(str::to_string).collect(),
            challenge,
            expires_at: now + CODE_TTL,
            used: false,
        },
    );
    back(vec![("code", code)])
}

// ---------------------------------------------------------------- /applications/{id}/token

fn mint(inner: &Inner, req: &Incoming, app_id: &str) -> Resp {
    let mut st = inner.lock();
    let (_, kind, scopes) = match access_auth(&st, req) {
        Ok(x) => x,
        Err(r) => return r,
    };
    if kind != TokenKind::Personal || !scopes.iter().any(|s| s == APPLICATIONS_TOKEN_SCOPE) {
        return webex_error(
            403,
            "The server understood the request, but refused to fulfill it because the access token is missing required scopes: spark:applications_token.",
        );
    }
    let c = &inner.creds;
    if app_id != c.app_id {
        return webex_error(404, "Service App not found.");
    }
    let body: Value = match serde_json::from_str(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return webex_error(
                400,
                "The request body must be a JSON object with clientId, clientSecret and targetOrgId.",
            );
        }
    };
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (Some(cid), Some(secret), Some(org)) = (
        field("clientId"),
        field("clientSecret"),
        field("targetOrgId"),
    ) else {
        return webex_error(
            400,
            "Missing required field: clientId, clientSecret and targetOrgId are required.",
        );
    };
    if cid != c.service_client_id {
        return webex_error(400, "Invalid clientId.");
    }
    if secret != c.service_client_secret {
        return webex_error(400, "Invalid clientSecret.");
    }
    let Some(org) = st.orgs.position(org) else {
        return webex_error(
            403,
            "The Service App is not authorized by a Full Admin of the target organization.",
        );
    };
    let scopes = service_scopes();
    let access = st.issue_in(
        org,
        TokenKind::ServiceAccess,
        cid,
        &scopes,
        inner.opts.access_ttl,
    );
    let refresh = st.issue_in(
        org,
        TokenKind::ServiceRefresh,
        cid,
        &scopes,
        inner.opts.refresh_ttl,
    );
    Resp::json(200, &token_json(&st, &access, &refresh))
}

fn schemas(inner: &Inner, req: &Incoming, id: Option<&str>) -> Resp {
    let st = inner.lock();
    if let Err(r) = access_auth(&st, req) {
        return r;
    }
    let schema = json!({
        "id": crate::DEFAULT_SCHEMA_ID,
        "name": "Generic data source schema (webex-sim)",
        "serviceType": "DATA_SOURCE",
        "description": "A schema the simulator knows about.",
    });
    match id {
        None => Resp::json(200, &json!({ "items": [schema] })),
        Some(i) if i == crate::DEFAULT_SCHEMA_ID => Resp::json(200, &schema),
        Some(_) => webex_error(404, "Schema not found."),
    }
}

fn token_expiry(inner: &Inner, req: &Incoming) -> Resp {
    let st = inner.lock();
    let (tok, _, _) = match access_auth(&st, req) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let exp = st
        .tokens
        .get(&tok)
        .map(|r| r.expires_at)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Resp::json(200, &json!({ "exp": util::epoch_millis(exp) as u64 }))
}

fn people_me(inner: &Inner, req: &Incoming) -> Resp {
    let st = inner.lock();
    let (tok, kind, _) = match access_auth(&st, req) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let org = st.tokens.get(&tok).map(|r| r.org).unwrap_or(0);
    let (id, name, email, typ) = match kind {
        TokenKind::ServiceAccess => (
            inner.machine_account_id(),
            "webex-sim service app",
            "webex-sim-service-app@example.com",
            "bot",
        ),
        TokenKind::Bot => (
            messages::bot_person_id(),
            "webex-token-sim",
            messages::BOT_EMAIL,
            "bot",
        ),
        _ => (
            util::webex_id("PEOPLE", "0c3b1f5e-2a8d-4e6b-9f71-3d5a8c2e4b19"),
            "Sim User",
            "sim.user@example.com",
            "person",
        ),
    };
    Resp::json(
        200,
        &json!({
            "id": id,
            "emails": [email],
            "displayName": name,
            "orgId": st.orgs.get(org).id,
            "type": typ,
        }),
    )
}
