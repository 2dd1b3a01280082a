//! The Webex notice for `watch --notify-webex`: when a person must
//! re-authorize the token-manager integration, a bot tells them in a room
//! (or 1:1) with the link, the user code and when the code expires — one
//! message, edited in place each time a new code is needed, and edited
//! again to say "done" (who, when) or that the agent stopped asking (why,
//! and what to do).
//!
//! Never in a message: the device code, any token, the bot token. Sending
//! is best effort: a failure is logged with Webex's (redacted) error and
//! never stops the re-authorization flow. A message someone deleted (404
//! on edit), or one this bot can no longer edit (another room or another
//! bot after a config change: 400/403), is replaced by a new post.
//!
//! The re-authorization flow calls [`Notifier::code`], [`Notifier::done`]
//! and [`Notifier::stopped`]; it saves [`Notifier::message_id`] with its
//! state so that a restarted agent [`Notifier::resume`]s editing the same
//! message. Calls are made one at a time (they queue on a lock).

use super::reauth::Tell;
use crate::clock;
use crate::config::{Config, ConfigError};
use crate::secret::{SecretString, printable};
use crate::settings::Settings;
use crate::webex::{ApiError, HttpApi, HttpSettings, MessagesApi, Posted, Recipient};
use futures_util::future::BoxFuture;
use jiff::Timestamp;
use std::sync::Mutex;

/// `watch --notify-webex` at start, before any request: a config without
/// a bot token is a set-up error now (exit 3), not a silent gap when a
/// person is needed. A config that cannot be read at all is left to the
/// agent's loop, which reports it (and keeps running) as without the flag;
/// the flow builds its [`Notifier`] from the config of the moment
/// ([`Notifier::from_config`]), so a bot token fixed or rotated later is
/// the one used.
pub fn preflight(settings: &Settings, to: &Recipient) -> Result<(), ConfigError> {
    match settings.load_config() {
        Ok(config) => {
            config.require_notify_bot_token()?;
            tracing::info!(
                "when a person must re-authorize, the bot of `notify.webexBotToken` tells {to} on Webex"
            );
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

/// What the message is about: the service app, its org(s), the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// The service app, as the config names it (`serviceApp.appId`).
    pub app: String,
    /// The orgs whose tokens wait for the person: names or org ids.
    pub orgs: Vec<String>,
    /// The machine the agent runs on, when known.
    pub host: Option<String>,
}

impl Subject {
    /// The app id (else the client id) and the orgs of the config (each
    /// `serviceApp.orgs` entry by name, else the one `targetOrgId`), and
    /// this machine's name.
    pub fn from_config(config: &Config) -> Subject {
        let sa = &config.service_app;
        let app = sa
            .app_id
            .get()
            .or(sa.client_id.get())
            .cloned()
            .unwrap_or_else(|| "(not set)".into());
        let orgs = if sa.orgs.is_empty() {
            sa.target_org_id.get().cloned().into_iter().collect()
        } else {
            sa.orgs.iter().map(|o| o.name.clone()).collect()
        };
        let host = crate::audit::hostname();
        Subject {
            app,
            orgs,
            host: (host != "unknown").then_some(host),
        }
    }

    fn line(&self) -> String {
        let mut out = format!("Service app `{}`", code_span(&self.app));
        match self.orgs.as_slice() {
            [] => {}
            [one] => out.push_str(&format!(" · org `{}`", code_span(one))),
            many => out.push_str(&format!(
                " · orgs {}",
                many.iter()
                    .map(|o| format!("`{}`", code_span(o)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
        if let Some(h) = &self.host {
            out.push_str(&format!(" · host `{}`", code_span(h)));
        }
        out
    }
}

/// The message being kept up to date.
#[derive(Debug, Clone)]
struct Current {
    id: String,
    /// Unknown after [`Notifier::resume`] with a person as recipient
    /// (Webex then says which 1:1 room it is in).
    room_id: Option<String>,
}

/// Posts and edits the re-authorization message (see the module docs).
pub struct Notifier {
    api: HttpApi,
    bot: SecretString,
    to: Recipient,
    subject: Subject,
    current: Mutex<Option<Current>>,
    /// One send at a time: two notices at once would post two messages.
    turn: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier talking to the Webex API at `http.base_url` with the
    /// bot's token (wrapped, and on the redaction list already when it was
    /// read from the config).
    pub fn new(http: HttpSettings, bot: SecretString, to: Recipient, subject: Subject) -> Notifier {
        Notifier {
            api: HttpApi::new(http),
            bot,
            to,
            subject,
            current: Mutex::new(None),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// [`Notifier::new`] with the config's bot token and [`Subject`]; the
    /// exit-3 error when the config has no bot token (nothing is sent).
    pub fn from_config(
        http: HttpSettings,
        config: &Config,
        to: Recipient,
    ) -> Result<Notifier, ConfigError> {
        let bot = config.require_notify_bot_token()?.clone();
        Ok(Notifier::new(http, bot, to, Subject::from_config(config)))
    }

    /// The id of the message being edited, once one was posted (to save
    /// with the flow's state).
    pub fn message_id(&self) -> Option<String> {
        self.lock().as_ref().map(|c| c.id.clone())
    }

    /// Edit this message from now on (a restarted agent's saved id).
    pub fn resume(&self, id: String) {
        let room_id = self.to.room_id().map(str::to_string);
        *self.lock() = Some(Current { id, room_id });
    }

    /// A person must re-authorize: the link, the user code, its expiry.
    /// The first call posts; later ones edit the same message.
    pub async fn code(&self, url: &str, user_code: &str, expires_at: Timestamp) {
        let now = clock::now();
        let text = format!(
            "**webex-token: a person must re-authorize the token-manager integration**\n\n\
             {}\n\n\
             1. Open {}\n\
             2. Enter the code **{}** and sign in with the Webex account the integration acts for (an admin of the org).\n\n\
             The code expires at {} UTC ({}). If it expires first, a new code replaces it in this message.",
            self.subject.line(),
            link(url),
            user_code_text(user_code),
            utc(expires_at),
            clock::human_left(clock::seconds_until(now, expires_at)),
        );
        self.deliver("the re-authorization code", text).await;
    }

    /// The person approved: the message says so (who, when); the code is
    /// gone from it.
    pub async fn done(&self, who: Option<&str>, at: Timestamp) {
        let by = match who.map(plain).filter(|w| !w.is_empty()) {
            Some(w) => format!(" by {w}"),
            None => String::new(),
        };
        let text = format!(
            "**webex-token: re-authorized ✅**\n\n\
             {}\n\n\
             Approved{by} at {} UTC. The tokens work again; nothing more to do.",
            self.subject.line(),
            utc(at),
        );
        self.deliver("the done notice", text).await;
    }

    /// The agent stopped asking (window over, or denied): why, and what
    /// brings it back.
    pub async fn stopped(&self, reason: &str) {
        let text = format!(
            "**webex-token: stopped asking for re-authorization**\n\n\
             {}\n\n\
             Why: {}\n\n\
             What to do: run `webex-token setup-oauth --device` with this config, \
             or send the agent SIGHUP (`systemctl reload webex-token-watch`) or change its config \
             to ask again with a new code. Until then its health check answers 503.",
            self.subject.line(),
            plain(reason),
        );
        self.deliver("the stopped notice", text).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Current>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Edits the current message, or posts one; logs what failed.
    async fn deliver(&self, what: &str, markdown: String) {
        let _turn = self.turn.lock().await;
        let current = self.lock().clone();
        let Some(current) = current else {
            return self.post(what, &markdown).await;
        };
        let room = match current.room_id.clone() {
            Some(r) => r,
            None => match self.api.details(&self.bot, &current.id).await {
                Ok(p) => p.room_id,
                Err(e) if replaceable(&e) => {
                    tracing::info!(
                        "Webex notice to {}: the earlier message is gone ({e}); posting a new one",
                        self.to
                    );
                    return self.post(what, &markdown).await;
                }
                Err(e) => {
                    return tracing::warn!(
                        "Webex notice to {}: could not look up the earlier message to edit it with {what}: {e}",
                        self.to
                    );
                }
            },
        };
        match self
            .api
            .edit(&self.bot, &current.id, &room, &markdown)
            .await
        {
            Ok(p) => self.keep(p),
            Err(e) if replaceable(&e) => {
                tracing::info!(
                    "Webex notice to {}: the earlier message cannot be edited ({e}); posting a new one",
                    self.to
                );
                self.post(what, &markdown).await;
            }
            Err(e) => tracing::warn!(
                "Webex notice to {}: could not edit the message with {what}: {e}{}",
                self.to,
                hint(&e)
            ),
        }
    }

    async fn post(&self, what: &str, markdown: &str) {
        match self.api.create(&self.bot, &self.to, markdown).await {
            Ok(p) => {
                tracing::info!("Webex notice to {}: posted {what}", self.to);
                self.keep(p);
            }
            Err(e) => tracing::warn!(
                "Webex notice to {}: could not post {what}: {e}{}",
                self.to,
                hint(&e)
            ),
        }
    }

    fn keep(&self, p: Posted) {
        *self.lock() = Some(Current {
            id: p.id,
            room_id: Some(p.room_id),
        });
    }
}

/// An edit refused because the message is gone (404) or not this bot's to
/// edit in this room (400/403: the room or the bot changed): post anew.
fn replaceable(e: &ApiError) -> bool {
    matches!(e, ApiError::Refused { status, .. } if matches!(status, 400 | 403 | 404))
}

fn hint(e: &ApiError) -> &'static str {
    match e.status() {
        Some(401) => {
            " (the bot token in `notify.webexBotToken` is not accepted: make a new one on developer.webex.com)"
        }
        Some(403) => " (the bot needs scope spark:messages_write and must be a member of the room)",
        Some(404) => " (is the bot a member of that room?)",
        _ => "",
    }
}

fn utc(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// Text from elsewhere (a reason, a name), as one plain line: no control
/// characters, no markdown that could restyle the message or hide a link
/// in it (emphasis, code, links, HTML). Underscores stay: inside a word
/// (`access_denied`, an email) they are no emphasis.
fn plain(s: &str) -> String {
    let one = printable(s);
    let cleaned: String = one
        .chars()
        .filter(|c| !matches!(c, '*' | '`' | '[' | ']' | '<' | '>'))
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.chars().count() > 300 {
        format!("{}…", cleaned.chars().take(300).collect::<String>())
    } else {
        cleaned.to_string()
    }
}

fn code_span(s: &str) -> String {
    printable(s).replace('`', "")
}

/// The user code as a person types it: letters, digits and dashes only.
fn user_code_text(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect()
}

/// The verification link as an autolink, when it is an http(s) URL without
/// spaces or markdown brackets; anything else is shown as plain text.
fn link(url: &str) -> String {
    let u = url.trim();
    let ok = (u.starts_with("https://") || u.starts_with("http://"))
        && !u
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '`'));
    if ok { format!("<{u}>") } else { plain(u) }
}

#[cfg(test)]
mod tests;

/// The [`Tell`] that `watch --notify-webex` gives the re-authorization
/// flow. Each notice builds its [`Notifier`] from the config of the moment
/// (a bot token fixed or rotated since the start is the one used) and edits
/// the message whose id the flow kept in its record (so a restarted agent
/// edits the same message). A config that cannot be read, or has lost its
/// bot token, is logged and that notice is skipped: the flow goes on.
pub struct WebexTell {
    settings: Settings,
    to: Recipient,
}

impl WebexTell {
    pub fn new(settings: Settings, to: Recipient) -> WebexTell {
        WebexTell { settings, to }
    }

    fn notifier(&self, notice_id: Option<&str>) -> Option<Notifier> {
        let built = self.settings.load_config().and_then(|config| {
            Notifier::from_config(self.settings.http(Some(&config)), &config, self.to.clone())
        });
        match built {
            Ok(n) => {
                if let Some(id) = notice_id {
                    n.resume(id.to_string());
                }
                Some(n)
            }
            Err(e) => {
                tracing::warn!("could not send the Webex notice to {}: {e}", self.to);
                None
            }
        }
    }
}

impl Tell for WebexTell {
    fn code<'a>(
        &'a self,
        notice_id: Option<&'a str>,
        url: &'a str,
        user_code: &'a str,
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let n = self.notifier(notice_id)?;
            n.code(url, user_code, expires_at).await;
            n.message_id()
        })
    }

    fn done<'a>(
        &'a self,
        notice_id: Option<&'a str>,
        who: Option<&'a str>,
        at: Timestamp,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(n) = self.notifier(notice_id) {
                n.done(who, at).await;
            }
        })
    }

    fn stopped<'a>(&'a self, notice_id: Option<&'a str>, reason: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(n) = self.notifier(notice_id) {
                n.stopped(reason).await;
            }
        })
    }
}
