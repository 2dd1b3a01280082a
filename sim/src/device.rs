//! OAuth 2.0 Device Authorization Grant (RFC 8628) as Webex answers it:
//! `POST /v1/device/authorize` and `POST /v1/device/token`.
//!
//! Webex puts the RFC error code in `message` and `errors[].description` (no
//! `error` field), and answers a pending authorization with **428**; an
//! expired or unknown device code is `invalid_grant` (there is no
//! `expired_token`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::wire::{Incoming, Resp, client_credentials, token_json, tracking_id};
use crate::{Inner, State, TokenKind, util};

/// `grant_type` of a device-token poll.
pub(crate) const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How long a device code / user code lives unless set otherwise.
pub(crate) const DEVICE_CODE_TTL: Duration = Duration::from_secs(300);

/// RFC 8628 §6.1: a base-20 alphabet without vowels or look-alikes.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceStatus {
    Pending,
    Approved,
    Denied,
    /// Exchanged for tokens (single use).
    Used,
}

impl DeviceStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Approved => "approved",
            DeviceStatus::Denied => "denied",
            DeviceStatus::Used => "used",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DeviceRec {
    pub client_id: String,
    pub scopes: Vec<String>,
    /// `WDJB-MJHT` style.
    pub user_code: String,
    pub expires_at: SystemTime,
    /// The interval announced to the client, in whole seconds.
    pub interval_secs: u64,
    pub last_poll: Option<SystemTime>,
    pub status: DeviceStatus,
    /// Creation order, for "approve the latest".
    pub seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Devices {
    by_code: HashMap<String, DeviceRec>,
    seq: u64,
}

/// Upper-case, without separators: what a user may type for `WDJB-MJHT`.
fn normalize_user_code(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn new_user_code() -> String {
    let mut out = String::with_capacity(9);
    while out.len() < 9 {
        for b in util::random_bytes(16) {
            // 20 * 12 = 240: accept bytes below 240 so every symbol is equally likely.
            if b < 240 && out.len() < 9 {
                if out.len() == 4 {
                    out.push('-');
                }
                out.push(USER_CODE_ALPHABET[(b % 20) as usize] as char);
            }
        }
    }
    out
}

impl Devices {
    /// Starts a pending authorization; returns (device_code, user_code).
    pub fn start(
        &mut self,
        client_id: &str,
        scopes: Vec<String>,
        now: SystemTime,
        interval_secs: u64,
        ttl: Duration,
    ) -> (String, String) {
        let device_code = loop {
            let c = util::random_alnum(64);
            if !self.by_code.contains_key(&c) {
                break c;
            }
        };
        let user_code = loop {
            let c = new_user_code();
            let n = normalize_user_code(&c);
            if !self
                .by_code
                .values()
                .any(|d| normalize_user_code(&d.user_code) == n)
            {
                break c;
            }
        };
        self.seq += 1;
        self.by_code.insert(
            device_code.clone(),
            DeviceRec {
                client_id: client_id.to_string(),
                scopes,
                user_code: user_code.clone(),
                expires_at: now + ttl,
                interval_secs,
                last_poll: None,
                status: DeviceStatus::Pending,
                seq: self.seq,
            },
        );
        (device_code, user_code)
    }

    /// The user's decision on a pending, unexpired code: the one with this
    /// user code, or the latest pending one. Returns the user code decided.
    pub fn decide(
        &mut self,
        user_code: Option<&str>,
        now: SystemTime,
        approve: bool,
    ) -> Option<String> {
        let want = user_code.map(normalize_user_code);
        let rec = self
            .by_code
            .values_mut()
            .filter(|d| d.status == DeviceStatus::Pending && d.expires_at > now)
            .filter(|d| {
                want.as_ref()
                    .is_none_or(|w| normalize_user_code(&d.user_code) == *w)
            })
            .max_by_key(|d| d.seq)?;
        rec.status = if approve {
            DeviceStatus::Approved
        } else {
            DeviceStatus::Denied
        };
        Some(rec.user_code.clone())
    }

    /// For `GET /_sim/devices`: user codes and states, oldest first (no device codes).
    pub fn to_json(&self, now: SystemTime) -> Value {
        let mut v: Vec<&DeviceRec> = self.by_code.values().collect();
        v.sort_by_key(|d| d.seq);
        let items: Vec<Value> = v
            .iter()
            .map(|d| {
                json!({
                    "userCode": d.user_code,
                    "status": if d.expires_at <= now && d.status != DeviceStatus::Used {
                        "expired"
                    } else {
                        d.status.as_str()
                    },
                    "scopes": d.scopes,
                    "interval": d.interval_secs,
                    "expiresAt": util::rfc3339(d.expires_at),
                })
            })
            .collect();
        json!({ "items": items })
    }
}

/// Webex's error shape with the RFC code in `message` and `errors[].description`.
fn device_error(status: u16, code: &str) -> Resp {
    let tid = tracking_id();
    Resp::json(
        status,
        &json!({
            "message": code,
            "errors": [{"description": code}],
            "trackingId": tid,
        }),
    )
    .header("trackingid", &tid)
}

/// `POST /v1/device/authorize` (form: `client_id`, `scope`).
pub(crate) fn authorize(inner: &Inner, req: &Incoming) -> Resp {
    let Some(form) = &req.form else {
        return device_error(400, "invalid_request");
    };
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    match get("client_id") {
        None => return device_error(400, "invalid_request"),
        Some(id) if id != inner.creds.integration_client_id => {
            return device_error(400, "invalid_client");
        }
        Some(_) => {}
    }
    let Some(scope) = get("scope") else {
        return device_error(400, "invalid_scope");
    };
    let scopes: Vec<String> = scope.split_whitespace().map(str::to_string).collect();
    let mut st = inner.lock();
    let now = st.now();
    let interval_secs = ceil_secs(st.device_interval);
    let ttl_secs = ceil_secs(st.device_code_ttl).max(1);
    let (device_code, user_code) = st.devices.start(
        &inner.creds.integration_client_id,
        scopes,
        now,
        interval_secs,
        Duration::from_secs(ttl_secs),
    );
    let verify = format!("{}/_sim/device/verify", inner.root_url());
    Resp::json(
        200,
        &json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verify,
            "verification_uri_complete": format!("{verify}?userCode={user_code}"),
            "expires_in": ttl_secs,
            "interval": interval_secs,
        }),
    )
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `POST /v1/device/token` (form: `grant_type`, `device_code`, `client_id`;
/// client secret by HTTP Basic or form `client_secret`).
pub(crate) fn token(inner: &Inner, req: &Incoming) -> Resp {
    let Some(form) = &req.form else {
        return device_error(400, "invalid_request");
    };
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    match get("grant_type") {
        None => return device_error(400, "invalid_request"),
        Some(DEVICE_GRANT) => {}
        Some(_) => return device_error(400, "unsupported_grant_type"),
    }
    let (client_id, secret) = client_credentials(req, form);
    let c = &inner.creds;
    if client_id != c.integration_client_id || secret != c.integration_client_secret {
        return device_error(401, "invalid_client");
    }
    let Some(code) = get("device_code") else {
        return device_error(400, "invalid_request");
    };
    let mut st = inner.lock();
    poll(inner, &mut st, code, &client_id)
}

fn poll(inner: &Inner, st: &mut State, code: &str, client_id: &str) -> Resp {
    let now = st.now();
    let Some(rec) = st.devices.by_code.get_mut(code) else {
        return device_error(400, "invalid_grant");
    };
    if rec.client_id != client_id || rec.expires_at <= now || rec.status == DeviceStatus::Used {
        return device_error(400, "invalid_grant");
    }
    let too_soon = rec
        .last_poll
        .is_some_and(|t| now < t + Duration::from_secs(rec.interval_secs));
    rec.last_poll = Some(now);
    if too_soon {
        return device_error(400, "slow_down");
    }
    match rec.status {
        DeviceStatus::Pending => device_error(428, "authorization_pending"),
        DeviceStatus::Denied => device_error(400, "access_denied"),
        DeviceStatus::Used => device_error(400, "invalid_grant"),
        DeviceStatus::Approved => {
            rec.status = DeviceStatus::Used;
            let scopes = rec.scopes.clone();
            let access = st.issue(
                TokenKind::Personal,
                client_id,
                &scopes,
                inner.opts.integration_access_ttl,
            );
            let refresh = st.issue(
                TokenKind::IntegrationRefresh,
                client_id,
                &scopes,
                inner.opts.integration_refresh_ttl,
            );
            Resp::json(200, &token_json(st, &access, &refresh))
        }
    }
}

/// `GET /_sim/device/verify?userCode=…`: the page a user's browser would show;
/// opening it approves that code (a stand-in for signing in and accepting).
pub(crate) fn verify_page(inner: &Inner, req: &Incoming) -> Resp {
    let q = util::parse_urlencoded(&req.query);
    let Some(code) = q.get("userCode").or_else(|| q.get("user_code")) else {
        return Resp::html(
            400,
            "Open this page with ?userCode=XXXX-XXXX to approve a device.",
        );
    };
    let mut st = inner.lock();
    let now = st.now();
    match st.devices.decide(Some(code), now, true) {
        Some(_) => Resp::html(200, "Device approved. You can close this window."),
        None => Resp::html(
            404,
            "No pending request with this code (expired or already used).",
        ),
    }
}
