//! The loopback callback listener and the judging of callbacks.
//!
//! The redirect URI says `localhost`, which a browser may resolve to
//! 127.0.0.1 or to [::1]. Listening on 127.0.0.1 alone would leave [::1]
//! to any other program on the same port, and the browser (with the
//! authorization code) could end up there. So the listener takes the port
//! on both loopback addresses, or refuses with "port in use" when either is
//! taken. A machine without an IPv6 loopback gets 127.0.0.1 only.

use super::{Countdown, printable};
use crate::error::SetupError;
use crate::secret::{SecretString, constant_time_eq, secret};
use oauth2::CsrfToken;
use oauth2::url::Url;
use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// What a callback (received or pasted) says.
#[derive(Debug)]
pub(super) enum Callback {
    Code(SecretString),
    Error {
        error: String,
        description: Option<String>,
    },
}

/// Why a callback was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    StateMismatch,
    StateMissing,
    NoCode,
}

impl Refusal {
    pub(super) fn text(&self) -> &'static str {
        match self {
            Refusal::StateMismatch => {
                "its `state` does not match this run (an old browser tab, or a forged request)"
            }
            Refusal::StateMissing => "it has no `state`",
            Refusal::NoCode => "it has neither a `code` nor an `error`",
        }
    }
}

/// Judges the query pairs of a callback against the expected state, which
/// is compared in constant time. An OAuth error with the right state, or
/// with no state at all (an error carries no code, so believing it can at
/// worst end this run), is accepted as the outcome.
pub(super) fn judge<'a>(
    pairs: impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
    expected_state: &CsrfToken,
) -> Result<Callback, Refusal> {
    let (mut code, mut state, mut error, mut description) = (None, None, None, None);
    for (k, v) in pairs {
        match k.as_ref() {
            "code" if !v.is_empty() => code = Some(secret(v.into_owned())),
            "state" => state = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {}
        }
    }
    let state_ok = state
        .as_deref()
        .map(|s| constant_time_eq(s.as_bytes(), expected_state.secret().as_bytes()));
    if let Some(error) = error {
        return match state_ok {
            Some(false) => Err(Refusal::StateMismatch),
            _ => Ok(Callback::Error {
                error: clip(&error),
                description: description.map(|d| clip(&d)),
            }),
        };
    }
    match (code, state_ok) {
        (None, _) => Err(Refusal::NoCode),
        (Some(_), None) => Err(Refusal::StateMissing),
        (Some(_), Some(false)) => Err(Refusal::StateMismatch),
        (Some(c), Some(true)) => Ok(Callback::Code(c)),
    }
}

/// Text from the query string is shown to people; one short line.
fn clip(s: &str) -> String {
    printable(s).chars().take(200).collect()
}

/// The callback listener: one port on each loopback address there is.
pub(super) struct Listener {
    servers: Vec<(SocketAddr, tiny_http::Server)>,
    port: u16,
}

fn serve(listener: TcpListener, port: u16) -> Result<tiny_http::Server, SetupError> {
    tiny_http::Server::from_listener(listener, None).map_err(|e| SetupError::Bind {
        port,
        source: std::io::Error::other(e.to_string()),
    })
}

impl Listener {
    /// Takes `port` (0: a free one) on 127.0.0.1 and on [::1].
    pub(super) fn bind(port: u16) -> Result<Listener, SetupError> {
        let in_use = |addr: SocketAddr| {
            tracing::warn!("{addr} is already taken by another program");
            SetupError::PortInUse { port: addr.port() }
        };
        // With port 0 the kernel picks a port free on 127.0.0.1; it may be
        // taken on [::1], then another is tried.
        let mut tries = 0;
        loop {
            tries += 1;
            let v4_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let v4 = TcpListener::bind(v4_addr).map_err(|e| match e.kind() {
                std::io::ErrorKind::AddrInUse => in_use(v4_addr),
                _ => SetupError::Bind { port, source: e },
            })?;
            let actual = v4
                .local_addr()
                .map_err(|e| SetupError::Bind { port, source: e })?
                .port();
            let v6_addr = SocketAddr::from((Ipv6Addr::LOCALHOST, actual));
            let mut servers = vec![(
                SocketAddr::from((Ipv4Addr::LOCALHOST, actual)),
                serve(v4, actual)?,
            )];
            match TcpListener::bind(v6_addr) {
                Ok(v6) => servers.push((v6_addr, serve(v6, actual)?)),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    if port == 0 && tries < 5 {
                        continue;
                    }
                    return Err(in_use(v6_addr));
                }
                // No IPv6 loopback here (EADDRNOTAVAIL, EAFNOSUPPORT):
                // then no other program can listen there either.
                Err(e) => tracing::debug!("not listening on {v6_addr}: {e}"),
            }
            for (a, _) in &servers {
                tracing::debug!("listening for the OAuth callback on {a}");
            }
            return Ok(Listener {
                servers,
                port: actual,
            });
        }
    }

    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:P and [::1]:P`, for the instructions.
    pub(super) fn describe(&self) -> String {
        self.servers
            .iter()
            .map(|(a, _)| a.to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// The next request on any of the addresses, waiting at most `wait`.
    fn next(&self, wait: Duration) -> Result<Option<tiny_http::Request>, std::io::Error> {
        let share = wait / self.servers.len().max(1) as u32;
        for (_, s) in &self.servers {
            if let Some(r) = s.recv_timeout(share)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Waits for one valid callback. Returns it with the browser's request,
    /// which is answered once the tokens are saved (or not). Requests for
    /// other paths get a 404; callbacks with a wrong or missing `state` get
    /// a 400 page and the wait goes on.
    pub(super) fn wait(
        &self,
        state: &CsrfToken,
        timeout: Duration,
        countdown: bool,
    ) -> Result<(Callback, BrowserReply), SetupError> {
        let deadline = Instant::now() + timeout;
        let mut refused = 0usize;
        let mut spinner = Countdown::new(countdown, "the browser");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                spinner.clear();
                return Err(SetupError::TimedOut {
                    after: timeout,
                    refused,
                });
            }
            spinner.tick(left);
            let req = match self.next(left.min(Duration::from_millis(250))) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    spinner.clear();
                    return Err(SetupError::Listener(e));
                }
            };
            let url = match Url::parse("http://localhost").and_then(|b| b.join(req.url())) {
                Ok(u) => u,
                Err(_) => {
                    let _ = req.respond(page(400, "Bad request", "This address cannot be read."));
                    continue;
                }
            };
            if *req.method() != tiny_http::Method::Get || url.path() != "/callback" {
                tracing::debug!(
                    "ignored a request for {} {}",
                    req.method(),
                    printable(url.path())
                );
                let _ = req.respond(page(404, "Not found", "Nothing here."));
                continue;
            }
            match judge(url.query_pairs(), state) {
                Ok(Callback::Error { error, description }) => {
                    spinner.clear();
                    let _ = req.respond(page(
                        400,
                        "webex-token: authorization not granted",
                        &format!(
                            "Webex reported <code>{}</code>{}. Nothing was saved; the terminal says what to do next.",
                            html_escape(&error),
                            description
                                .as_deref()
                                .map(|d| format!(" ({})", html_escape(d)))
                                .unwrap_or_default()
                        ),
                    ));
                    return Err(SetupError::Authorization { error, description });
                }
                Ok(cb) => {
                    spinner.clear();
                    return Ok((cb, BrowserReply(req)));
                }
                Err(why) => {
                    refused += 1;
                    spinner.clear();
                    tracing::warn!("refused a callback: {}; still waiting", why.text());
                    let _ = req.respond(page(
                        400,
                        "webex-token: callback refused",
                        &format!(
                            "This callback was refused: {}. Nothing was saved. If you started <code>webex-token setup-oauth</code> again, use the address it printed last.",
                            html_escape(why.text())
                        ),
                    ));
                }
            }
        }
    }
}

/// The browser's callback request, waiting for its answer.
pub struct BrowserReply(tiny_http::Request);

impl BrowserReply {
    /// Answers the browser: `Ok` when the tokens were saved, else the
    /// reason they were not.
    pub fn done(self, outcome: Result<(), String>) {
        let response = match outcome {
            Ok(()) => page(
                200,
                "webex-token: authorized",
                "The token-manager integration is authorized and its tokens are saved. You can close this tab and return to the terminal.",
            ),
            Err(why) => page(
                500,
                "webex-token: authorization not completed",
                &format!(
                    "The authorization code could not be turned into tokens; nothing was saved. The terminal says why. ({})",
                    html_escape(&why)
                ),
            ),
        };
        let _ = self.0.respond(response);
    }
}

pub(super) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A small HTML page; `body` is already escaped.
fn page(status: u16, title: &str, body: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>{t}</h1><p>{body}</p></body></html>",
        t = html_escape(title)
    );
    let header = |k: &str, v: &str| {
        tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("static header is valid")
    };
    tiny_http::Response::from_string(html)
        .with_status_code(status)
        .with_header(header("Content-Type", "text/html; charset=utf-8"))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("Referrer-Policy", "no-referrer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
        oauth2::url::form_urlencoded::parse(q.as_bytes()).collect()
    }

    #[test]
    fn judging_callbacks() {
        let st = CsrfToken::new("abc".into());
        assert!(matches!(
            judge(pairs("code=c1&state=abc").into_iter(), &st),
            Ok(Callback::Code(_))
        ));
        assert_eq!(
            judge(pairs("code=c1&state=abd").into_iter(), &st).unwrap_err(),
            Refusal::StateMismatch
        );
        assert_eq!(
            judge(pairs("code=c1").into_iter(), &st).unwrap_err(),
            Refusal::StateMissing
        );
        assert_eq!(
            judge(pairs("state=abc").into_iter(), &st).unwrap_err(),
            Refusal::NoCode
        );
        assert_eq!(
            judge(pairs("code=&state=abc").into_iter(), &st).unwrap_err(),
            Refusal::NoCode
        );
        assert!(matches!(
            judge(pairs("error=access_denied&state=abc").into_iter(), &st),
            Ok(Callback::Error { .. })
        ));
        assert!(matches!(
            judge(pairs("error=access_denied").into_iter(), &st),
            Ok(Callback::Error { .. })
        ));
        assert_eq!(
            judge(pairs("error=access_denied&state=zzz").into_iter(), &st).unwrap_err(),
            Refusal::StateMismatch
        );
        // Escape sequences in an error never reach the terminal.
        match judge(
            pairs("error=x%1B%5B2Jy&error_description=a%07b").into_iter(),
            &st,
        ) {
            Ok(Callback::Error { error, description }) => {
                assert_eq!(error, "x[2Jy");
                assert_eq!(description.as_deref(), Some("ab"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pages_escape_text() {
        assert_eq!(html_escape("<b>&\"'"), "&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn binds_both_loopbacks_and_sees_a_taken_ipv6_port() {
        let l = Listener::bind(0).unwrap();
        let port = l.port();
        assert!(l.describe().starts_with(&format!("127.0.0.1:{port}")));
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0));
        drop(l);
        let Ok(other) = v6 else {
            eprintln!("no IPv6 loopback on this machine: the [::1] half is not tested here");
            return;
        };
        let taken = other.local_addr().unwrap().port();
        match Listener::bind(taken) {
            Err(SetupError::PortInUse { port }) => assert_eq!(port, taken),
            Err(e) => panic!("{e}"),
            Ok(l) => panic!("bound {} although [::1]:{taken} is taken", l.describe()),
        }
        let both = Listener::bind(0).unwrap();
        assert!(both.describe().contains(&format!("[::1]:{}", both.port())));
    }
}
