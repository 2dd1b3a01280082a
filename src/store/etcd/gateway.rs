//! etcd's v3 API through its JSON gateway, with the HTTP client the program
//! already has (reqwest + rustls).
//!
//! Every etcd v3 member serves its gRPC API as HTTP/JSON on the same client
//! port (grpc-gateway, on by default since 3.3), so a fleet host needs no
//! gRPC stack: no tonic, no prost, no `protoc` at build time (BENCHMARKS.md,
//! "The etcd client"). This module is the only place the etcd store sends
//! anything, and the only place outside `src/webex/` that names reqwest.
//!
//! Wire facts, checked against etcd 3.4 (Debian 12) on loopback:
//! - `POST /v3/<service>/<method>` with a JSON body; keys and values are
//!   base64; 64-bit integers travel as JSON strings (a lease id does not fit
//!   a double); fields at their zero value are left out of answers.
//! - A failure is `{"error": "...", "message": "...", "code": N}` (N the
//!   gRPC code), or `{"error": {"grpc_code": N, "message": ...}}` from a
//!   streaming method; newer gateways write `{"code": N, "message": ...}`.
//! - `Grpc-Metadata-hasleader: true` reaches the member as the gRPC metadata
//!   `hasleader`: a member without a leader then answers 14 "no leader" at
//!   once instead of holding the request until one is elected.
//! - `/v3/auth/authenticate` gives a token, sent as the `Authorization`
//!   header (no scheme); an expired one is refused with 16 "invalid auth
//!   token" and replaced by authenticating again.
//! - `/v3/lease/keepalive` is a stream: one request in the body gives one
//!   `{"result": ...}` answer (TTL left out, i.e. 0, once the lease is gone).
//! - `/v3/lock/lock` answers when the lock is taken (etcd's fair queue),
//!   however long that takes.

use super::EtcdSettings;
use crate::secret::{ExposeSecret, SecretString};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Why one request failed.
#[derive(Debug)]
pub enum Failure {
    /// No answer from the member asked (refused, reset, timed out at
    /// connect): another member may answer.
    Transport(String),
    /// The TLS handshake failed (a certificate this host cannot verify).
    Tls(String),
    /// etcd answered with a gRPC status: `code` is the gRPC code.
    Status { code: i32, message: String },
    /// An answer that is not etcd's JSON (not an etcd client URL?).
    Garbled(String),
}

impl Failure {
    /// A failure another member (or a moment later) may not have: no
    /// answer, or a member without a leader (gRPC 14, unavailable).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Failure::Transport(_) | Failure::Status { code: 14, .. }
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(d) | Failure::Tls(d) | Failure::Garbled(d) => f.write_str(d),
            Failure::Status { code, message } => write!(f, "{message} (gRPC code {code})"),
        }
    }
}

/// A user and password from `--etcd-user` and `--etcd-password-file`.
pub struct Login {
    pub user: String,
    pub password: SecretString,
}

/// The members of one cluster, reached over HTTP(S).
pub struct Gateway {
    http: reqwest::Client,
    /// `http://host:port` or `https://host:port`, one per member.
    bases: Vec<String>,
    /// The member asked first; moves on when one does not answer.
    current: AtomicUsize,
    login: Option<Login>,
    /// The auth token of `login`, once authenticated.
    token: tokio::sync::Mutex<Option<SecretString>>,
}

impl Gateway {
    /// The client for `settings` (`ca_pem`: the bytes of `--etcd-ca`).
    /// Connects nowhere yet.
    pub fn new(
        settings: &EtcdSettings,
        ca_pem: Option<&[u8]>,
        login: Option<Login>,
    ) -> Result<Gateway, String> {
        // One process-wide crypto provider (as in src/webex/http.rs).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "grpc-metadata-hasleader",
            reqwest::header::HeaderValue::from_static("true"),
        );
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            // A try gets a third of --etcd-timeout (the caller's clock);
            // connecting gets no more than that either.
            .connect_timeout(per_try(settings.timeout))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("webex-token/", env!("CARGO_PKG_VERSION")));
        let scheme = if settings.tls {
            if let Some(pem) = ca_pem {
                let certs = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| format!("not a PEM certificate: {e}"))?;
                if certs.is_empty() {
                    return Err("holds no PEM certificate".into());
                }
                // The cluster's own CA, and only it: the members'
                // certificates are signed by it, not by a public CA.
                builder = builder.tls_certs_only(certs);
            }
            "https"
        } else {
            // Plain HTTP: no TLS, so no system CA store to load.
            builder = builder.tls_certs_only(std::iter::empty());
            "http"
        };
        let http = builder.build().map_err(|e| chain(&e))?;
        Ok(Gateway {
            http,
            bases: settings
                .endpoints
                .iter()
                .map(|e| format!("{scheme}://{e}"))
                .collect(),
            current: AtomicUsize::new(0),
            login,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// `POST path` with `body` to the current member, authenticated when
    /// a user is set (once more with a new token if etcd says the old one
    /// expired). A member that does not answer, or has no leader, makes the
    /// next request go to the next member.
    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        let at = self.current.load(Ordering::Relaxed) % self.bases.len();
        let result = self.post_to(at, path, body).await;
        if let Err(e) = &result
            && e.retryable()
        {
            self.move_on(at);
        }
        result
    }

    /// The next request goes to the next member (this one did not answer
    /// in time).
    pub fn next_member(&self) {
        self.move_on(self.current.load(Ordering::Relaxed) % self.bases.len());
    }

    fn move_on(&self, from: usize) {
        // Only one of several requests failing at `from` moves the choice on.
        let _ = self.current.compare_exchange(
            from,
            (from + 1) % self.bases.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    async fn post_to<B: Serialize, T: DeserializeOwned>(
        &self,
        at: usize,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        let body = serde_json::to_vec(body).expect("serializable");
        if self.login.is_none() {
            return self.send(at, path, &body, None).await;
        }
        let token = self.token(at).await?;
        match self.send(at, path, &body, Some(&token)).await {
            Err(Failure::Status { code, message })
                if code == 16 || message.contains("auth revision is old") =>
            {
                tracing::debug!("etcd: {message}; authenticating again");
                let mut held = self.token.lock().await;
                if held
                    .as_ref()
                    .is_some_and(|t| t.expose_secret() == token.expose_secret())
                {
                    *held = None;
                }
                drop(held);
                let token = self.token(at).await?;
                self.send(at, path, &body, Some(&token)).await
            }
            other => other,
        }
    }

    /// The auth token, authenticating first if there is none.
    async fn token(&self, at: usize) -> Result<SecretString, Failure> {
        let mut held = self.token.lock().await;
        if let Some(t) = held.as_ref() {
            return Ok(t.clone());
        }
        let login = self.login.as_ref().expect("called only with a login");
        #[derive(Serialize)]
        struct Authenticate<'a> {
            name: &'a str,
            password: &'a str,
        }
        #[derive(Deserialize)]
        struct Authenticated {
            token: String,
        }
        let body = serde_json::to_vec(&Authenticate {
            name: &login.user,
            password: login.password.expose_secret(),
        })
        .expect("serializable");
        let answer: Authenticated = self.send(at, "/v3/auth/authenticate", &body, None).await?;
        let token = SecretString::from(answer.token);
        *held = Some(token.clone());
        Ok(token)
    }

    /// One request to member `at`, no retry.
    async fn send<T: DeserializeOwned>(
        &self,
        at: usize,
        path: &str,
        body: &[u8],
        token: Option<&SecretString>,
    ) -> Result<T, Failure> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.bases[at]))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if let Some(t) = token {
            req = req.header(reqwest::header::AUTHORIZATION, t.expose_secret());
        }
        let resp = req.send().await.map_err(|e| self.transport(at, &e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport(at, &e))?;
        if let Some(f) = failure_in(&bytes) {
            return Err(f);
        }
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                Failure::Garbled(format!(
                    "{}{path} answered what etcd does not: {e}",
                    self.bases[at]
                ))
            });
        }
        let text = crate::secret::printable(&String::from_utf8_lossy(&bytes));
        let text: String = text.chars().take(200).collect();
        let what = format!("{}{path} answered HTTP {status}: {text}", self.bases[at]);
        // A proxy or a member on its way down: another may answer.
        if status.is_server_error() {
            Err(Failure::Transport(what))
        } else {
            Err(Failure::Garbled(what))
        }
    }

    fn transport(&self, at: usize, e: &reqwest::Error) -> Failure {
        let detail = format!("{}: {}", self.bases[at], chain(e));
        // A certificate this host cannot verify: no retry will help.
        if detail.contains("certificate") || detail.contains("UnknownIssuer") {
            Failure::Tls(detail)
        } else {
            Failure::Transport(detail)
        }
    }

    /// Reads `keys` in one transaction: each key's value and revision.
    pub async fn get_all(&self, keys: &[&str]) -> Result<Read, Failure> {
        let gets: Vec<Op> = keys
            .iter()
            .map(|k| Op::Get(k.as_bytes().to_vec()))
            .collect();
        let resp = self.txn(&[], &gets, &[]).await?;
        Ok(Read {
            cluster: resp.header.cluster_id,
            values: resp
                .responses
                .into_iter()
                .map(|r| {
                    r.response_range
                        .and_then(|r| r.kvs.into_iter().next())
                        .map(|kv| (kv.value, kv.mod_revision))
                })
                .collect(),
        })
    }

    /// A transaction: `then` if every compare in `when` holds, else
    /// `otherwise`.
    pub async fn txn(
        &self,
        when: &[Compare],
        then: &[Op],
        otherwise: &[Op],
    ) -> Result<TxnResponse, Failure> {
        #[derive(Serialize)]
        struct TxnRequest<'a> {
            compare: &'a [Compare],
            success: &'a [Op],
            failure: &'a [Op],
        }
        self.post(
            "/v3/kv/txn",
            &TxnRequest {
                compare: when,
                success: then,
                failure: otherwise,
            },
        )
        .await
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub async fn lease_grant(&self, ttl: i64) -> Result<i64, Failure> {
        #[derive(Serialize)]
        struct Grant {
            #[serde(rename = "TTL", serialize_with = "as_text")]
            ttl: i64,
        }
        #[derive(Deserialize)]
        struct Granted {
            #[serde(rename = "ID", default, deserialize_with = "int")]
            id: i64,
            #[serde(default)]
            error: String,
        }
        let g: Granted = self.post("/v3/lease/grant", &Grant { ttl }).await?;
        if !g.error.is_empty() || g.id == 0 {
            return Err(Failure::Status {
                code: 2,
                message: format!("no lease granted: {}", g.error),
            });
        }
        Ok(g.id)
    }

    /// Renews `lease` once; returns the seconds it has left (0: it is gone).
    pub async fn lease_keep_alive(&self, lease: i64) -> Result<i64, Failure> {
        #[derive(Deserialize)]
        struct Streamed {
            result: Option<KeptAlive>,
        }
        #[derive(Deserialize)]
        struct KeptAlive {
            #[serde(rename = "TTL", default, deserialize_with = "int")]
            ttl: i64,
        }
        let s: Streamed = self
            .post("/v3/lease/keepalive", &Lease { id: lease })
            .await?;
        Ok(s.result.map_or(0, |r| r.ttl))
    }

    /// Revokes `lease`, deleting every key bound to it.
    pub async fn lease_revoke(&self, lease: i64) -> Result<(), Failure> {
        let _: serde::de::IgnoredAny = self.post("/v3/lease/revoke", &Lease { id: lease }).await?;
        Ok(())
    }

    /// Waits in etcd's queue for the lock `name`, bound to `lease`; returns
    /// the key that exists while the lock is held.
    pub async fn lock(&self, name: &str, lease: i64) -> Result<Vec<u8>, Failure> {
        #[derive(Serialize)]
        struct LockRequest<'a> {
            #[serde(serialize_with = "as_base64")]
            name: &'a [u8],
            #[serde(serialize_with = "as_text")]
            lease: i64,
        }
        #[derive(Deserialize)]
        struct Locked {
            #[serde(default, deserialize_with = "base64")]
            key: Vec<u8>,
        }
        let l: Locked = self
            .post(
                "/v3/lock/lock",
                &LockRequest {
                    name: name.as_bytes(),
                    lease,
                },
            )
            .await?;
        if l.key.is_empty() {
            return Err(Failure::Garbled(
                "etcd took the lock but named no key".into(),
            ));
        }
        Ok(l.key)
    }
}

/// The longest one try may take: a third of `--etcd-timeout` (so a member
/// that hangs leaves time for two others), at least half a second.
pub fn per_try(timeout: Duration) -> Duration {
    (timeout / 3).max(Duration::from_millis(500))
}

/// An error and its causes, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    crate::secret::printable(&text)
}

/// etcd's failure in an answer's body, in any of the gateway's shapes.
fn failure_in(body: &[u8]) -> Option<Failure> {
    #[derive(Deserialize)]
    struct Body {
        error: Option<serde_json::Value>,
        code: Option<i32>,
        message: Option<String>,
    }
    let b: Body = serde_json::from_slice(body).ok()?;
    let (code, message) = match &b.error {
        Some(serde_json::Value::Object(o)) => (
            o.get("grpc_code")
                .or_else(|| o.get("code"))
                .and_then(serde_json::Value::as_i64)
                .map(|c| c as i32),
            o.get("message").and_then(|m| m.as_str()).map(String::from),
        ),
        Some(serde_json::Value::String(s)) => (b.code, b.message.clone().or(Some(s.clone()))),
        // {"code": N, "message": ...} (grpc-gateway v2), N > 0.
        _ => (b.code.filter(|c| *c > 0 && b.message.is_some()), b.message),
    };
    Some(Failure::Status {
        code: code?,
        message: crate::secret::printable(&message.unwrap_or_default()),
    })
}

/// Values read by [`Gateway::get_all`], in the order of the keys:
/// `(value, mod revision)` or `None` for a missing key.
pub struct Read {
    pub cluster: u64,
    pub values: Vec<Option<(Vec<u8>, i64)>>,
}

/// A transaction's condition.
pub enum Compare {
    /// The key exists (its version is above 0).
    Exists(Vec<u8>),
    /// The key does not exist (its create revision is 0).
    Absent(Vec<u8>),
}

impl Serialize for Compare {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(serialize_with = "as_base64")]
            key: &'a [u8],
            target: &'static str,
            result: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            version: Option<&'static str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            create_revision: Option<&'static str>,
        }
        let wire = match self {
            Compare::Exists(key) => Wire {
                key,
                target: "VERSION",
                result: "GREATER",
                version: Some("0"),
                create_revision: None,
            },
            Compare::Absent(key) => Wire {
                key,
                target: "CREATE",
                result: "EQUAL",
                version: None,
                create_revision: Some("0"),
            },
        };
        wire.serialize(s)
    }
}

/// One operation of a transaction.
pub enum Op {
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    /// Deletes the one key (absent: nothing happens).
    Delete(Vec<u8>),
}

impl Serialize for Op {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Key<'a> {
            #[serde(serialize_with = "as_base64")]
            key: &'a [u8],
        }
        #[derive(Serialize)]
        struct KeyValue<'a> {
            #[serde(serialize_with = "as_base64")]
            key: &'a [u8],
            #[serde(serialize_with = "as_base64")]
            value: &'a [u8],
        }
        #[derive(Serialize)]
        enum Wire<'a> {
            #[serde(rename = "request_range")]
            Range(Key<'a>),
            #[serde(rename = "request_put")]
            Put(KeyValue<'a>),
            #[serde(rename = "request_delete_range")]
            Delete(Key<'a>),
        }
        match self {
            Op::Get(key) => Wire::Range(Key { key }),
            Op::Put(key, value) => Wire::Put(KeyValue { key, value }),
            Op::Delete(key) => Wire::Delete(Key { key }),
        }
        .serialize(s)
    }
}

#[derive(Serialize)]
struct Lease {
    #[serde(rename = "ID", serialize_with = "as_text")]
    id: i64,
}

/// What a transaction answered.
#[derive(Deserialize, Default)]
pub struct TxnResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub succeeded: bool,
    #[serde(default)]
    pub responses: Vec<ResponseOp>,
}

#[derive(Deserialize, Default)]
pub struct Header {
    #[serde(default, deserialize_with = "int")]
    pub cluster_id: u64,
    #[serde(default, deserialize_with = "int")]
    pub revision: i64,
}

#[derive(Deserialize, Default)]
pub struct ResponseOp {
    #[serde(default)]
    pub response_range: Option<RangeResponse>,
}

#[derive(Deserialize, Default)]
pub struct RangeResponse {
    #[serde(default)]
    pub kvs: Vec<KeyValue>,
}

#[derive(Deserialize, Default)]
pub struct KeyValue {
    #[serde(default, deserialize_with = "base64")]
    pub value: Vec<u8>,
    #[serde(default, deserialize_with = "int")]
    pub mod_revision: i64,
}

/// A 64-bit integer as the gateway writes it: a JSON string (or a number).
fn int<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr + Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire<T> {
        Text(String),
        Number(T),
    }
    match Wire::<T>::deserialize(d)? {
        Wire::Number(n) => Ok(n),
        Wire::Text(s) => s
            .parse()
            .map_err(|_| D::Error::custom(format!("not an integer: {s:?}"))),
    }
}

fn as_text<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

fn base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    B64.decode(text.as_bytes())
        .map_err(|e| D::Error::custom(format!("not base64: {e}")))
}

fn as_base64<S: Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&B64.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_put_is_written_as_the_gateway_reads_it() {
        let when = [
            Compare::Exists(b"/p/lock/1".to_vec()),
            Compare::Absent(b"/p/k".to_vec()),
        ];
        let then = [Op::Put(b"/p/k".to_vec(), b"{}".to_vec())];
        let json = serde_json::to_value(&when).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"key": "L3AvbG9jay8x", "target": "VERSION", "result": "GREATER", "version": "0"},
                {"key": "L3Avaw==", "target": "CREATE", "result": "EQUAL", "create_revision": "0"},
            ])
        );
        assert_eq!(
            serde_json::to_value(&then).unwrap(),
            serde_json::json!([{"request_put": {"key": "L3Avaw==", "value": "e30="}}])
        );
        assert_eq!(
            serde_json::to_value(Lease { id: i64::MAX }).unwrap(),
            serde_json::json!({"ID": "9223372036854775807"})
        );
    }

    #[test]
    fn answers_are_read_with_their_zero_values_left_out() {
        // As etcd 3.4 answers a transaction whose compare failed.
        let body = br#"{"header":{"cluster_id":"14841639068965178418","revision":"5","raft_term":"2"},
            "responses":[{"response_range":{"header":{"revision":"5"},
            "kvs":[{"key":"L3A=","create_revision":"3","mod_revision":"4","version":"1","value":"aGk="}],"count":"1"}},
            {"response_range":{"header":{"revision":"5"}}}]}"#;
        let t: TxnResponse = serde_json::from_slice(body).unwrap();
        assert!(!t.succeeded);
        assert_eq!(t.header.cluster_id, 14841639068965178418);
        assert_eq!(t.header.revision, 5);
        let kv = &t.responses[0].response_range.as_ref().unwrap().kvs[0];
        assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"hi"[..], 4));
        assert!(
            t.responses[1]
                .response_range
                .as_ref()
                .unwrap()
                .kvs
                .is_empty()
        );
    }

    #[test]
    fn failures_are_read_in_every_shape() {
        let code = |body: &str| match failure_in(body.as_bytes()) {
            Some(Failure::Status { code, message }) => Some((code, message)),
            _ => None,
        };
        assert_eq!(
            code(
                r#"{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}"#
            ),
            Some((14, "etcdserver: no leader".into()))
        );
        assert_eq!(
            code(
                r#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#
            ),
            Some((14, "etcdserver: no leader".into()))
        );
        assert_eq!(
            code(r#"{"code":7,"message":"etcdserver: permission denied","details":[]}"#),
            Some((7, "etcdserver: permission denied".into()))
        );
        assert!(code(r#"{"header":{"revision":"5"}}"#).is_none());
        assert!(code(r#"{"result":{"ID":"1","TTL":"5"}}"#).is_none());
        assert!(code("not json").is_none());
        assert!(
            Failure::Status {
                code: 14,
                message: String::new()
            }
            .retryable()
        );
        assert!(
            !Failure::Status {
                code: 7,
                message: String::new()
            }
            .retryable()
        );
    }

    /// What a fake member was sent: path, `Authorization`, the
    /// require-leader header, body.
    type Seen =
        std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>, Option<String>, String)>>>;

    /// A fake etcd member on loopback answering each request with the next
    /// canned (status, body); returns its `host:port` and what it was sent.
    fn fake_member(answers: Vec<(u16, &'static str)>) -> (String, Seen) {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let addr = server.server_addr().to_ip().unwrap().to_string();
        let seen = Seen::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for (status, body) in answers {
                let mut req = server.recv().unwrap();
                let header = |name: &'static str| {
                    req.headers()
                        .iter()
                        .find(|h| h.field.equiv(name))
                        .map(|h| h.value.to_string())
                };
                let (auth, leader) = (header("Authorization"), header("Grpc-Metadata-hasleader"));
                let mut text = String::new();
                std::io::Read::read_to_string(req.as_reader(), &mut text).unwrap();
                log.lock()
                    .unwrap()
                    .push((req.url().to_string(), auth, leader, text));
                let _ =
                    req.respond(tiny_http::Response::from_string(body).with_status_code(status));
            }
        });
        (addr, seen)
    }

    fn settings(endpoints: Vec<String>) -> EtcdSettings {
        EtcdSettings {
            endpoints,
            prefix: "p".into(),
            tls: false,
            ca_file: None,
            user: None,
            password_file: None,
            password: None,
            lock_ttl: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn an_expired_token_is_replaced_and_the_request_sent_again() {
        let (addr, seen) = fake_member(vec![
            (200, r#"{"header":{},"token":"t1"}"#),
            (
                401,
                r#"{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}"#,
            ),
            (200, r#"{"header":{},"token":"t2"}"#),
            (200, r#"{"header":{"revision":"7"},"succeeded":true}"#),
        ]);
        let login = Login {
            user: "wt".into(),
            password: SecretString::from("pw".to_string()),
        };
        let g = Gateway::new(&settings(vec![addr]), None, Some(login)).unwrap();
        let t = g.txn(&[], &[Op::Get(b"k".to_vec())], &[]).await.unwrap();
        assert!(t.succeeded);
        assert_eq!(t.header.revision, 7);
        let seen = seen.lock().unwrap();
        let paths: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/v3/auth/authenticate",
                "/v3/kv/txn",
                "/v3/auth/authenticate",
                "/v3/kv/txn"
            ]
        );
        let tokens: Vec<Option<&str>> = seen.iter().map(|s| s.1.as_deref()).collect();
        assert_eq!(tokens, [None, Some("t1"), None, Some("t2")]);
        assert!(
            seen.iter().all(|s| s.2.as_deref() == Some("true")),
            "require-leader on every request"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&seen[0].3).unwrap(),
            serde_json::json!({"name": "wt", "password": "pw"})
        );
    }

    #[tokio::test]
    async fn a_member_that_does_not_answer_is_passed_over() {
        // A port nothing listens on (bound, then closed).
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let (addr, seen) = fake_member(vec![
            (200, r#"{"header":{},"ID":"9223372036854775807","TTL":"5"}"#),
            (
                503,
                r#"{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}"#,
            ),
        ]);
        let g = Gateway::new(&settings(vec![dead, addr]), None, None).unwrap();
        let first = g.lease_grant(5).await.unwrap_err();
        assert!(
            matches!(first, Failure::Transport(_)) && first.retryable(),
            "{first}"
        );
        assert_eq!(g.lease_grant(5).await.unwrap(), i64::MAX);
        // No leader: retryable, and the next try goes to the other member.
        let e = g.lease_grant(5).await.unwrap_err();
        assert!(matches!(e, Failure::Status { code: 14, .. }), "{e}");
        assert_eq!(g.current.load(Ordering::Relaxed), 0);
        assert_eq!(seen.lock().unwrap()[0].3, r#"{"TTL":"5"}"#);
    }
}
