//! Webex messages a bot posts and edits in place (`POST /messages`,
//! `GET /messages/{id}`, `PUT /messages/{id}`), for the agent's notice
//! that a person must re-authorize. Failures are classified like every
//! other Webex call ([`ApiError`]); the bot token travels as the bearer, so
//! an error body that quotes it is redacted like any other secret (and the
//! config reader has put it on the redaction list already).
//!
//! A post is retried on a transient failure like every call; a post that
//! Webex took but whose answer was lost may so show twice in the room.
//! Harmless here: the notifier keeps editing the one it got an id for.

use super::{ApiError, HttpApi, TransientReason, urlencode_path};
use crate::secret::{ExposeSecret, SecretString};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use std::fmt;

/// Who gets the message: a room (a space the bot was added to) or a
/// person, by email (Webex opens a 1:1 space with the bot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    Room(String),
    Person(String),
}

impl Recipient {
    /// `ROOM_ID` or `PERSON_EMAIL`: an `@` means an email. A room id is
    /// what Webex shows (`Y2lzY29zcGFyazovL3VzL1JPT00v…`, base64 of
    /// `ciscospark://…/ROOM/…`); anything else is refused here, before any
    /// request, with the reason.
    pub fn parse(value: &str) -> Result<Recipient, String> {
        let v = value.trim();
        if v.is_empty() {
            return Err("is empty; give a Webex room id or a person's email".into());
        }
        if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("holds whitespace or control characters".into());
        }
        if v.contains('@') {
            let (local, domain) = v.split_once('@').unwrap_or_default();
            let ok = !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.');
            return if ok {
                Ok(Recipient::Person(v.to_string()))
            } else {
                Err(format!("`{v}` is not an email address (name@example.com)"))
            };
        }
        if is_room_id(v) {
            Ok(Recipient::Room(v.to_string()))
        } else {
            Err(format!(
                "`{v}` is neither a person's email nor a Webex room id (a room id is base64 of ciscospark://us/ROOM/…; copy it from the space's details or GET /v1/rooms)"
            ))
        }
    }

    /// The room, when it is known without asking Webex.
    pub fn room_id(&self) -> Option<&str> {
        match self {
            Recipient::Room(r) => Some(r),
            Recipient::Person(_) => None,
        }
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::Room(r) => write!(f, "room {r}"),
            Recipient::Person(e) => write!(f, "{e}"),
        }
    }
}

/// True for base64 (padded or not) of `ciscospark://<region>/ROOM/<id>`.
fn is_room_id(v: &str) -> bool {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let raw = STANDARD_NO_PAD
        .decode(v)
        .or_else(|_| STANDARD.decode(v))
        .or_else(|_| URL_SAFE_NO_PAD.decode(v));
    let Ok(raw) = raw else { return false };
    let Ok(text) = String::from_utf8(raw) else {
        return false;
    };
    text.strip_prefix("ciscospark://")
        .and_then(|rest| rest.split_once("/ROOM/"))
        .is_some_and(|(region, id)| !region.is_empty() && !id.is_empty())
}

/// A message as Webex answers it (the fields the notifier needs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Posted {
    pub id: String,
    #[serde(rename = "roomId")]
    pub room_id: String,
}

/// The message calls, each with the bot's token.
#[allow(async_fn_in_trait)]
pub trait MessagesApi {
    /// `POST /messages` with `markdown` (and `text`, the same words without
    /// markdown, for clients that show plain text).
    async fn create(
        &self,
        bot: &SecretString,
        to: &Recipient,
        markdown: &str,
    ) -> Result<Posted, ApiError>;
    /// `GET /messages/{id}` (to learn a message's room).
    async fn details(&self, bot: &SecretString, id: &str) -> Result<Posted, ApiError>;
    /// `PUT /messages/{id}`: Webex wants the message's own `roomId` with the
    /// new content.
    async fn edit(
        &self,
        bot: &SecretString,
        id: &str,
        room_id: &str,
        markdown: &str,
    ) -> Result<Posted, ApiError>;
}

impl MessagesApi for HttpApi {
    async fn create(
        &self,
        bot: &SecretString,
        to: &Recipient,
        markdown: &str,
    ) -> Result<Posted, ApiError> {
        let mut body = json!({"markdown": markdown, "text": plain_text(markdown)});
        match to {
            Recipient::Room(r) => body["roomId"] = json!(r),
            Recipient::Person(e) => body["toPersonEmail"] = json!(e),
        }
        message_call(
            self,
            bot,
            (Method::POST, "POST /messages"),
            "/messages",
            Some(&body),
        )
        .await
    }

    async fn details(&self, bot: &SecretString, id: &str) -> Result<Posted, ApiError> {
        let path = format!("/messages/{}", urlencode_path(id));
        message_call(self, bot, (Method::GET, "GET /messages/{id}"), &path, None).await
    }

    async fn edit(
        &self,
        bot: &SecretString,
        id: &str,
        room_id: &str,
        markdown: &str,
    ) -> Result<Posted, ApiError> {
        let path = format!("/messages/{}", urlencode_path(id));
        let body = json!({"roomId": room_id, "markdown": markdown, "text": plain_text(markdown)});
        message_call(
            self,
            bot,
            (Method::PUT, "PUT /messages/{id}"),
            &path,
            Some(&body),
        )
        .await
    }
}

/// One message call (`what` names it in logs and errors): `method` on
/// `path` with the bot's token (and `body` as JSON), its answer read as
/// the message.
async fn message_call(
    api: &HttpApi,
    bot: &SecretString,
    (method, what): (Method, &str),
    path: &str,
    body: Option<&Value>,
) -> Result<Posted, ApiError> {
    let url = api.url(path);
    let bytes = api
        .send(what, |c| {
            let req = c
                .request(method.clone(), &url)
                .bearer_auth(bot.expose_secret())
                .header("accept", "application/json");
            match body {
                Some(b) => req.json(b),
                None => req,
            }
        })
        .await?;
    parse_posted(&bytes)
}

fn parse_posted(bytes: &[u8]) -> Result<Posted, ApiError> {
    let p: Posted = serde_json::from_slice(bytes).map_err(|e| ApiError::Transient {
        reason: TransientReason::BadResponse(format!(
            "the message answer is not the expected JSON ({e})"
        )),
        body: None,
        attempts: 1,
    })?;
    if p.id.trim().is_empty() || p.room_id.trim().is_empty() {
        return Err(ApiError::Transient {
            reason: TransientReason::BadResponse(
                "the message answer has an empty id or roomId".into(),
            ),
            body: None,
            attempts: 1,
        });
    }
    Ok(p)
}

/// The message without markdown's emphasis and code marks, for the
/// `text` Webex shows where markdown is not rendered (notifications).
pub fn plain_text(markdown: &str) -> String {
    markdown.replace("**", "").replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_rooms_or_emails() {
        let room = "Y2lzY29zcGFyazovL3VzL1JPT00vYmJjZWIxYWQtNDNmMS0zYjU4LTkxNDctZjE0YmIwYzRkMTU0";
        assert_eq!(
            Recipient::parse(room),
            Ok(Recipient::Room(room.to_string()))
        );
        assert_eq!(
            Recipient::parse(" admin@example.com "),
            Ok(Recipient::Person("admin@example.com".into()))
        );
        for bad in [
            "",
            "general",
            "admin@",
            "@example.com",
            "a@b@example.com",
            "a@localhost",
            "a b@example.com",
            // base64 of a PEOPLE id, not a ROOM.
            "Y2lzY29zcGFyazovL3VzL1BFT1BMRS8x",
        ] {
            assert!(Recipient::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn plain_text_drops_emphasis_and_code_marks() {
        assert_eq!(plain_text("**Code** `ABCD`"), "Code ABCD");
    }
}
