//! Webex messages as a bot sends them: `POST /v1/messages` (to a room or
//! to a person by email) and `PUT /v1/messages/{id}` (edit in place), with
//! the bot token's `spark:messages_write` scope checked. Every version of a
//! message is kept, so a test can read what was sent and how often it was
//! edited (`GET /_sim/messages`, [`crate::Sim::messages`]).
//!
//! What Webex does and the simulator copies: a message goes to exactly one
//! of `roomId` / `toPersonEmail`; it needs `text` or `markdown`; an edit
//! names the message's own `roomId` and new `text`/`markdown`; only the
//! author edits; an unknown (or deleted) message is 404. Errors are the
//! usual `{message, errors:[{description}], trackingId}`.

use std::collections::HashMap;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::wire::{Incoming, MSG_401, Resp, bearer_of, webex_error};
use crate::{Inner, State, TokenKind, util};

/// The scope a token needs to post or edit a message.
pub const MESSAGES_WRITE_SCOPE: &str = "spark:messages_write";

/// The scope a token needs to read a message.
const MESSAGES_READ_SCOPE: &str = "spark:messages_read";

/// Scopes of a bot token the simulator issues (a bot has these on Webex).
pub(crate) const BOT_SCOPES: &[&str] = &[
    "spark:messages_write",
    "spark:messages_read",
    "spark:rooms_read",
    "spark:memberships_read",
    "spark:people_read",
];

/// The one bot the simulator knows.
pub(crate) const BOT_EMAIL: &str = "webex-token-sim@webex.bot";
pub(crate) const BOT_CLIENT_ID: &str =
    "Cbot0sim0000000000000000000000000000000000000000000000000000000";
const BOT_UUID: &str = "2f0c5e7a-9b14-4c3d-8e6f-1a2b3c4d5e6f";

/// Webex refuses a message longer than this (in bytes).
const MAX_MESSAGE_BYTES: usize = 7439;

#[derive(Debug, Clone)]
struct Version {
    text: Option<String>,
    markdown: Option<String>,
    at: SystemTime,
}

#[derive(Debug, Clone)]
struct Message {
    id: String,
    room_id: String,
    room_type: &'static str,
    to_person_email: Option<String>,
    /// The `client_id` of the token that posted it (its author).
    author: String,
    created: SystemTime,
    /// Oldest first; the first is what was posted.
    versions: Vec<Version>,
}

impl Message {
    fn current(&self) -> &Version {
        self.versions.last().expect("a message has a version")
    }

    fn api_json(&self) -> Value {
        let v = self.current();
        let mut out = json!({
            "id": self.id,
            "roomId": self.room_id,
            "roomType": self.room_type,
            "text": v.text.clone().or_else(|| v.markdown.clone()),
            "personId": bot_person_id(),
            "personEmail": BOT_EMAIL,
            "created": util::rfc3339(self.created),
        });
        if let Some(m) = &v.markdown {
            out["markdown"] = json!(m);
        }
        if let Some(e) = &self.to_person_email {
            out["toPersonEmail"] = json!(e);
        }
        if self.versions.len() > 1 {
            out["updated"] = json!(util::rfc3339(v.at));
        }
        out
    }

    fn control_json(&self) -> Value {
        let mut out = self.api_json();
        out["edits"] = json!(self.versions.len() - 1);
        out["history"] = Value::Array(
            self.versions
                .iter()
                .map(|v| json!({"text": v.text, "markdown": v.markdown, "at": util::rfc3339(v.at)}))
                .collect(),
        );
        out
    }
}

/// Every message sent, and the direct rooms opened by `toPersonEmail`.
#[derive(Debug, Default)]
pub(crate) struct Messages {
    list: Vec<Message>,
    direct_rooms: HashMap<String, String>,
}

impl Messages {
    /// Every message, oldest first, with its edit history.
    pub fn to_json(&self) -> Value {
        json!({"items": self.list.iter().map(|m| m.control_json()).collect::<Vec<_>>()})
    }

    /// Forgets a message as if someone deleted it; true if it existed.
    pub fn delete(&mut self, id: &str) -> bool {
        let before = self.list.len();
        self.list.retain(|m| m.id != id);
        self.list.len() != before
    }
}

pub(crate) fn bot_person_id() -> String {
    util::webex_id("PEOPLE", BOT_UUID)
}

/// The uuid inside a Webex room id, or `None` if it is not shaped like one.
fn room_uuid(id: &str) -> Option<String> {
    let rest = util::webex_id_path(id)?;
    let (_, uuid) = rest.split_once("/ROOM/")?;
    (!uuid.is_empty() && uuid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then(|| uuid.to_string())
}

/// A room id shaped like Webex's, for a test to send to.
pub(crate) fn new_room_id() -> String {
    util::webex_id("ROOM", &util::uuid_v4())
}

/// The author of a request allowed to write messages, or the error.
fn writer(st: &State, req: &Incoming) -> Result<String, Resp> {
    let Some(tok) = bearer_of(req.header("authorization")) else {
        return Err(webex_error(401, MSG_401));
    };
    let Some(rec) = st.live(tok) else {
        return Err(webex_error(401, MSG_401));
    };
    if !matches!(rec.kind, TokenKind::Bot | TokenKind::Personal)
        || !rec.scopes.iter().any(|s| s == MESSAGES_WRITE_SCOPE)
    {
        return Err(webex_error(
            403,
            "The server understood the request, but refused to fulfill it because the access token is missing required scopes: spark:messages_write.",
        ));
    }
    Ok(rec.client_id.clone())
}

/// What a create or an edit needs first: the author (allowed to write
/// messages) and the body as a JSON object, or the error (auth first).
fn write_request(
    st: &State,
    req: &Incoming,
) -> Result<(String, serde_json::Map<String, Value>), Resp> {
    Ok((writer(st, req)?, body_object(req)?))
}

fn body_object(req: &Incoming) -> Result<serde_json::Map<String, Value>, Resp> {
    match serde_json::from_str(&req.body) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(webex_error(
            400,
            "The request body must be a JSON object (Content-Type: application/json).",
        )),
    }
}

/// `text` and `markdown` from a body: at least one, strings, not too long.
fn content(o: &serde_json::Map<String, Value>) -> Result<(Option<String>, Option<String>), Resp> {
    let mut out = [None, None];
    for (i, k) in ["text", "markdown"].iter().enumerate() {
        match o.get(*k) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.trim().is_empty() => {}
            Some(Value::String(s)) if s.len() > MAX_MESSAGE_BYTES => {
                return Err(webex_error(
                    400,
                    &format!(
                        "Message length limit exceeded: {k} is over {MAX_MESSAGE_BYTES} bytes."
                    ),
                ));
            }
            Some(Value::String(s)) => out[i] = Some(s.clone()),
            Some(_) => return Err(webex_error(400, &format!("{k} must be a string."))),
        }
    }
    let [text, markdown] = out;
    if text.is_none() && markdown.is_none() {
        return Err(webex_error(
            400,
            "The message needs text or markdown (or files).",
        ));
    }
    Ok((text, markdown))
}

fn str_field<'a>(o: &'a serde_json::Map<String, Value>, k: &str) -> Result<Option<&'a str>, Resp> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(webex_error(400, &format!("{k} must be a string."))),
    }
}

fn plausible_email(e: &str) -> bool {
    match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
                && !domain.contains('@')
        }
        None => false,
    }
}

/// `POST /v1/messages`.
pub(crate) fn create(inner: &Inner, req: &Incoming) -> Resp {
    let mut st = inner.lock();
    let (author, o) = match write_request(&st, req) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (room, email) = match (str_field(&o, "roomId"), str_field(&o, "toPersonEmail")) {
        (Ok(r), Ok(e)) => (r, e),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if o.contains_key("toPersonId") {
        return webex_error(
            400,
            "toPersonId is not simulated; use roomId or toPersonEmail.",
        );
    }
    let (text, markdown) = match content(&o) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (room_id, room_type) = match (room, email) {
        (Some(_), Some(_)) => {
            return webex_error(
                400,
                "Only one of roomId, toPersonId or toPersonEmail may be given.",
            );
        }
        (None, None) => {
            return webex_error(
                400,
                "One of roomId, toPersonId or toPersonEmail is required.",
            );
        }
        (Some(r), None) => {
            if room_uuid(r).is_none() {
                return webex_error(404, "Could not find a room with provided ID.");
            }
            (r.to_string(), "group")
        }
        (None, Some(e)) => {
            if !plausible_email(e) {
                return webex_error(400, "toPersonEmail is not a valid email address.");
            }
            let key = e.to_ascii_lowercase();
            let room = st
                .messages
                .direct_rooms
                .entry(key)
                .or_insert_with(new_room_id)
                .clone();
            (room, "direct")
        }
    };
    let now = st.now();
    let msg = Message {
        id: util::webex_id("MESSAGE", &util::uuid_v4()),
        room_id,
        room_type,
        to_person_email: email.map(str::to_string),
        author,
        created: now,
        versions: vec![Version {
            text,
            markdown,
            at: now,
        }],
    };
    let v = msg.api_json();
    st.messages.list.push(msg);
    Resp::json(200, &v)
}

/// `GET /v1/messages/{id}`: a message's details (any live token with
/// `spark:messages_read`; a bot has it).
pub(crate) fn get(inner: &Inner, req: &Incoming, id: &str) -> Resp {
    let st = inner.lock();
    let Some(tok) = bearer_of(req.header("authorization")) else {
        return webex_error(401, MSG_401);
    };
    let Some(rec) = st.live(tok) else {
        return webex_error(401, MSG_401);
    };
    if !rec.scopes.iter().any(|s| s == MESSAGES_READ_SCOPE) {
        return webex_error(
            403,
            "The server understood the request, but refused to fulfill it because the access token is missing required scopes: spark:messages_read.",
        );
    }
    match st.messages.list.iter().find(|m| m.id == id) {
        Some(m) => Resp::json(200, &m.api_json()),
        None => webex_error(404, "Could not find a message with provided ID."),
    }
}

/// `PUT /v1/messages/{id}`: a new text/markdown for a message, in its own room.
pub(crate) fn edit(inner: &Inner, req: &Incoming, id: &str) -> Resp {
    let mut st = inner.lock();
    let (author, o) = match write_request(&st, req) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let room = match str_field(&o, "roomId") {
        Ok(Some(r)) => r.to_string(),
        Ok(None) => return webex_error(400, "roomId is required to edit a message."),
        Err(r) => return r,
    };
    let (text, markdown) = match content(&o) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let now = st.now();
    let Some(msg) = st.messages.list.iter_mut().find(|m| m.id == id) else {
        return webex_error(404, "Could not find a message with provided ID.");
    };
    if msg.room_id != room {
        return webex_error(
            400,
            "The roomId does not match the room of the message being edited.",
        );
    }
    if msg.author != author {
        return webex_error(403, "Only the author of a message can edit it.");
    }
    msg.versions.push(Version {
        text,
        markdown,
        at: now,
    });
    let v = msg.api_json();
    Resp::json(200, &v)
}
