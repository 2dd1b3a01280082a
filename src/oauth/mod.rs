//! The person-in-the-loop part of `setup-oauth`: getting an OAuth grant for
//! the token-manager integration out of a person, in one of three ways.
//!
//! - **Browser** ([`callback`]): the authorization-code flow with PKCE S256
//!   and a random `state` (RFC 7636 / RFC 8252). A listener on loopback
//!   only (127.0.0.1 and [::1], the same port on both, so that the
//!   browser's `localhost` cannot reach another program) waits for one valid
//!   callback; stale or forged callbacks are refused and the wait goes on.
//! - **Manual** ([`manual`]): the same flow without a listener; the person
//!   pastes the address the browser was sent to (one line, at most 16 KiB).
//! - **Device** ([`device`]): the device authorization grant (RFC 8628) as
//!   Webex answers it: show a code, poll for the tokens.
//!
//! The HTTP requests are `webex::OAuthApi`'s; nothing here prints on
//! stdout: the person's instructions go to stderr, the result is the
//! caller's to report. Every text that came from a server or a browser is
//! stripped of control characters before it is shown ([`printable`]).

mod callback;
mod device;
mod manual;

pub use callback::BrowserReply;
pub(crate) use device::{Pacer, poll as poll_device};

use crate::clock;
use crate::error::SetupError;
use crate::names::SCOPE_APPLICATIONS_TOKEN;
use crate::secret::secret;
use crate::webex::{ClientCredentials, CodeExchange, OAuthApi, TokenGrant};
use callback::Callback;
use oauth2::basic::BasicClient;
use oauth2::url::Url;
use oauth2::{AuthUrl, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope};
use std::io::Write;
use std::time::{Duration, Instant};

/// How the person authorizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Open (or print) the authorize URL and receive the callback on
    /// `localhost:port` (0: any free port).
    Browser { port: u16 },
    /// Print the authorize URL; the redirected address is pasted on stdin.
    Manual { port: u16 },
    /// The device authorization grant.
    Device,
}

/// Plain settings of one authorization.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long the person has.
    pub timeout: Duration,
    /// Try to open a browser (when there is a display).
    pub open_browser: bool,
    /// Draw a countdown on stderr (a terminal, not `--quiet`).
    pub countdown: bool,
    /// Tests: do not wait between device polls.
    pub no_delay: bool,
}

/// A grant obtained from the person.
pub struct Authorized {
    pub grant: TokenGrant,
    /// `browser`, `manual` or `device`.
    pub flow: &'static str,
    /// The redirect URI used (not for the device grant).
    pub redirect_uri: Option<String>,
    /// The browser's callback request, to be answered once the tokens are
    /// saved (or not), so that the page tells the truth.
    pub browser: Option<BrowserReply>,
}

/// Runs the authorization in `mode` and returns the tokens.
pub async fn authorize<A: OAuthApi>(
    api: &A,
    client: &ClientCredentials<'_>,
    mode: Mode,
    opts: &Options,
) -> Result<Authorized, SetupError> {
    let started = Instant::now();
    let result = match mode {
        Mode::Device => device::run(api, client, opts)
            .await
            .map(|grant| Authorized {
                grant,
                flow: "device",
                redirect_uri: None,
                browser: None,
            }),
        Mode::Browser { port } => code_flow(api, client, port, true, opts).await,
        Mode::Manual { port } => code_flow(api, client, port, false, opts).await,
    };
    tracing::debug!(
        "authorization finished after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    result
}

/// The authorization-code flow: with `listen`, a callback listener on
/// `port` (0: any free one); without, the manual variant, which uses `port`
/// only in the redirect URI and reads the pasted address.
async fn code_flow<A: OAuthApi>(
    api: &A,
    client: &ClientCredentials<'_>,
    port: u16,
    listen: bool,
    opts: &Options,
) -> Result<Authorized, SetupError> {
    let (listener, port, flow) = if listen {
        let l = callback::Listener::bind(port)?;
        let p = l.port();
        (Some(l), p, "browser")
    } else {
        (None, port, "manual")
    };
    let redirect_uri = format!("http://localhost:{port}/callback");
    let build = |e: oauth2::url::ParseError| SetupError::Build(e.to_string());
    let oauth = BasicClient::new(ClientId::new(client.client_id.to_string()))
        .set_auth_uri(AuthUrl::new(api.endpoint("/authorize")).map_err(build)?)
        .set_redirect_uri(RedirectUrl::new(redirect_uri.clone()).map_err(build)?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, state) = oauth
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new(SCOPE_APPLICATIONS_TOKEN.to_string()))
        .set_pkce_challenge(challenge)
        .url();
    instructions(&auth_url, &redirect_uri, port, opts, listener.as_ref());
    let (callback, browser) = match &listener {
        Some(l) => {
            let (cb, reply) = l.wait(&state, opts.timeout, opts.countdown)?;
            (cb, Some(reply))
        }
        None => (
            manual::read_pasted(&state, opts.timeout, &redirect_uri)?,
            None,
        ),
    };
    let code = match callback {
        Callback::Code(code) => code,
        Callback::Error { error, description } => {
            return Err(SetupError::Authorization { error, description });
        }
    };
    let verifier = secret(verifier.secret().clone());
    let exchange = CodeExchange {
        code: &code,
        redirect_uri: &redirect_uri,
        code_verifier: &verifier,
    };
    match api.exchange_code(client, &exchange).await {
        Ok(grant) => Ok(Authorized {
            grant,
            flow,
            redirect_uri: Some(redirect_uri),
            browser,
        }),
        Err(e) => {
            let err = SetupError::Exchange(e);
            if let Some(b) = browser {
                b.done(Err(err.to_string()));
            }
            Err(err)
        }
    }
}

/// Text from a server or a browser, fit to be shown on a terminal: no
/// control characters (no escape sequences, no carriage returns), one line,
/// at most 2,000 characters.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(2000).collect()
}

/// True when a browser can be opened here.
fn has_display() -> bool {
    if cfg!(any(target_os = "macos", target_os = "windows")) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Opens `url` in a browser when it is an http(s) address.
fn open_browser(url: &str) -> Result<(), String> {
    match Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {
            open::that_detached(u.as_str()).map_err(|e| e.to_string())
        }
        _ => Err("not an http(s) address".into()),
    }
}

/// Prints what the person has to do (stderr), and opens the browser.
fn instructions(
    url: &Url,
    redirect_uri: &str,
    port: u16,
    opts: &Options,
    listener: Option<&callback::Listener>,
) {
    let mut err = std::io::stderr().lock();
    let try_browser = opts.open_browser && has_display();
    let opened = try_browser
        && match open_browser(url.as_str()) {
            Ok(()) => true,
            Err(e) => {
                let _ = writeln!(
                    err,
                    "could not open a browser ({e}); open the address below yourself"
                );
                false
            }
        };
    if opened {
        let _ = writeln!(
            err,
            "Opened your browser to authorize the token-manager integration. If it did not open, visit:"
        );
    } else {
        let _ = writeln!(
            err,
            "Open this address in a browser and sign in as the user whose personal access token the integration should keep renewing:"
        );
    }
    let _ = writeln!(err, "\n  {url}\n");
    match listener {
        Some(l) => {
            let _ = writeln!(
                err,
                "Waiting for the redirect to {redirect_uri} (listening on {} only).",
                l.describe()
            );
            if !opened {
                let _ = writeln!(
                    err,
                    "The browser is sent back to localhost:{port} of the machine it runs on. If that is not this machine, connect from it first with\n  ssh -L {port}:localhost:{port} {}\nand open the address there; or run `webex-token setup-oauth --manual` (or `--device`) instead.",
                    ssh_target()
                );
            }
        }
        None => {
            let _ = writeln!(
                err,
                "After signing in, the browser is sent to {redirect_uri}?code=... and shows an error page (nothing listens there): that is expected. Copy the whole address from the address bar and paste it here, then press Enter."
            );
        }
    }
    let _ = writeln!(
        err,
        "This waits up to {}.",
        clock::human_span(opts.timeout.as_secs())
    );
}

/// `user@host` for the SSH hint, as well as we can tell.
fn ssh_target() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "this-host".into());
    match std::env::var("USER") {
        Ok(u) if !u.is_empty() => format!("{u}@{host}"),
        _ => host,
    }
}

/// A countdown with a spinner on stderr, drawn only on a terminal.
struct Countdown {
    on: bool,
    what: &'static str,
    frame: usize,
    last: Option<Instant>,
}

impl Countdown {
    fn new(on: bool, what: &'static str) -> Countdown {
        Countdown {
            on,
            what,
            frame: 0,
            last: None,
        }
    }

    fn tick(&mut self, left: Duration) {
        if !self.on
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        self.frame = (self.frame + 1) % FRAMES.len();
        self.last = Some(Instant::now());
        let s = left.as_millis().div_ceil(1000);
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r{} waiting for {} ... {}:{:02} left (Ctrl-C to stop) ",
            FRAMES[self.frame],
            self.what,
            s / 60,
            s % 60
        );
        let _ = e.flush();
    }

    fn clear(&mut self) {
        if self.on && self.last.is_some() {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K");
            let _ = e.flush();
            self.last = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_drops_control_characters() {
        assert_eq!(
            printable("https://x.test/d\x1b[2J\x1b]0;pwned\x07\r\nok"),
            "https://x.test/d[2J]0;pwnedok"
        );
        assert_eq!(printable(&"a".repeat(5000)).len(), 2000);
    }

    #[test]
    fn only_web_addresses_are_opened() {
        assert!(open_browser("file:///etc/passwd").is_err());
        assert!(open_browser("javascript:alert(1)").is_err());
        assert!(open_browser("not a url").is_err());
    }
}
