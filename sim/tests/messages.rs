//! `POST /v1/messages` and `PUT /v1/messages/{id}` as a bot uses them, and
//! the control API that shows what was sent.

mod common;

use serde_json::{Value, json};
use webex_sim::{Sim, SimOptions, TokenKind};

use common::*;

fn sim() -> Sim {
    Sim::start(SimOptions::default()).unwrap()
}

fn messages_url(s: &Sim) -> String {
    format!("{}/messages", s.base_url())
}

fn post(s: &Sim, bearer: Option<&str>, body: &Value) -> Reply {
    send_json("POST", &messages_url(s), bearer, body)
}

fn put(s: &Sim, bearer: Option<&str>, id: &str, body: &Value) -> Reply {
    send_json("PUT", &format!("{}/{id}", messages_url(s)), bearer, body)
}

fn assert_webex_error(r: &Reply, status: u16, needle: &str) {
    assert_eq!(r.status, status, "body: {}", r.body);
    let v = r.json();
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    assert_eq!(v["errors"][0]["description"].as_str(), Some(msg));
    assert!(
        v["trackingId"]
            .as_str()
            .is_some_and(|t| t.starts_with("WEBEXSIM_"))
    );
}

#[test]
fn a_bot_posts_to_a_room_and_edits_in_place() {
    let s = sim();
    let bot = s.issue_bot_token();
    assert_eq!(s.token_info(&bot).unwrap().kind, TokenKind::Bot);
    let room = s.new_room_id();
    let r = post(
        &s,
        Some(&bot),
        &json!({"roomId": room, "markdown": "**first**"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let m = r.json();
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["roomId"], json!(room));
    assert_eq!(m["roomType"], "group");
    assert_eq!(m["markdown"], "**first**");
    assert!(m["text"].is_string());
    assert_eq!(m["personEmail"], "webex-token-sim@webex.bot");
    assert!(m["personId"].is_string() && m["created"].is_string());
    assert!(m.get("updated").is_none());

    for n in 2..=4 {
        let r = put(
            &s,
            Some(&bot),
            &id,
            &json!({"roomId": room, "markdown": format!("version {n}")}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let e = r.json();
        assert_eq!(e["id"], json!(id));
        assert_eq!(e["markdown"], json!(format!("version {n}")));
        assert!(e["updated"].is_string());
    }
    let all = s.messages();
    assert_eq!(all.len(), 1, "edits never make a new message");
    assert_eq!(all[0]["edits"], 3);
    let history: Vec<&str> = all[0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["markdown"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        ["**first**", "version 2", "version 3", "version 4"]
    );
    // GET shows the current version.
    let g = get(&format!("{}/{id}", messages_url(&s)), Some(&bot));
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.json()["markdown"], "version 4");
    assert_eq!(g.json()["roomId"], json!(room));
    // The bot is who /people/me says; it cannot touch data sources.
    let me = get(&format!("{}/people/me", s.base_url()), Some(&bot)).json();
    assert_eq!(me["type"], "bot");
    assert_eq!(me["emails"][0], "webex-token-sim@webex.bot");
    assert_eq!(me["id"], m["personId"]);
    let ds = get(&format!("{}/dataSources", s.base_url()), Some(&bot));
    assert_eq!(ds.status, 403, "{}", ds.body);
    // The control API shows the same.
    let c = get(&format!("{}/_sim/messages", s.root_url()), None).json();
    assert_eq!(c["items"][0]["edits"], 3);
    assert_eq!(c["items"][0]["markdown"], "version 4");
}

#[test]
fn a_message_to_a_person_opens_one_direct_room() {
    let s = sim();
    let bot = s.issue_bot_token();
    let a = post(
        &s,
        Some(&bot),
        &json!({"toPersonEmail": "admin@example.com", "text": "hello"}),
    )
    .json();
    let b = post(
        &s,
        Some(&bot),
        &json!({"toPersonEmail": "Admin@Example.com", "text": "again"}),
    )
    .json();
    assert_eq!(a["roomType"], "direct");
    assert_eq!(a["toPersonEmail"], "admin@example.com");
    assert_eq!(a["roomId"], b["roomId"], "one direct room per person");
    assert_eq!(a["text"], "hello");
    // An edit names that direct room.
    let r = put(
        &s,
        Some(&bot),
        a["id"].as_str().unwrap(),
        &json!({"roomId": a["roomId"], "text": "edited"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn tokens_and_scopes_are_checked() {
    let s = sim();
    let room = s.new_room_id();
    let body = json!({"roomId": room, "text": "x"});
    assert_webex_error(&post(&s, None, &body), 401, "valid access token");
    assert_webex_error(
        &post(&s, Some("not-a-token-at-all"), &body),
        401,
        "valid access token",
    );
    let no_scope = s.issue_bot_token_with_scopes(&["spark:messages_read"]);
    assert_webex_error(
        &post(&s, Some(&no_scope), &body),
        403,
        "spark:messages_write",
    );
    // A service-app token is no bot.
    let (service, _) = s.issue_service_tokens(
        std::time::Duration::from_secs(3600),
        std::time::Duration::from_secs(7200),
    );
    assert_webex_error(
        &post(&s, Some(&service), &body),
        403,
        "spark:messages_write",
    );
    // A revoked bot token is 401, for an edit too.
    let bot = s.issue_bot_token();
    let id = post(&s, Some(&bot), &body).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_webex_error(&put(&s, Some(&no_scope), &id, &body), 403, "messages_write");
    s.revoke_token(&bot);
    assert_webex_error(&put(&s, Some(&bot), &id, &body), 401, "valid access token");
    assert_eq!(s.messages()[0]["edits"], 0);
}

#[test]
fn bad_bodies_are_webex_errors() {
    let s = sim();
    let bot = s.issue_bot_token();
    let room = s.new_room_id();
    let cases = [
        (json!({"text": "x"}), 400, "is required"),
        (
            json!({"roomId": room, "toPersonEmail": "a@example.com", "text": "x"}),
            400,
            "Only one",
        ),
        (json!({"roomId": room}), 400, "text or markdown"),
        (json!({"roomId": room, "text": 5}), 400, "must be a string"),
        (
            json!({"toPersonEmail": "not-an-email", "text": "x"}),
            400,
            "valid email",
        ),
        (
            json!({"roomId": "Y2lzY29zcGFyazovL3VzL1BFT1BMRS8x", "text": "x"}),
            404,
            "room",
        ),
        (
            json!({"roomId": room, "text": "x".repeat(7440)}),
            400,
            "length limit",
        ),
    ];
    for (body, status, needle) in cases {
        assert_webex_error(&post(&s, Some(&bot), &body), status, needle);
    }
    let r = request(
        "POST",
        &messages_url(&s),
        &[("Authorization", &format!("Bearer {bot}"))],
        Some("text=hi"),
    )
    .unwrap();
    assert_webex_error(&r, 400, "JSON object");
    assert!(s.messages().is_empty(), "nothing bad was stored");
}

#[test]
fn edits_are_refused_as_webex_refuses_them() {
    let s = sim();
    let bot = s.issue_bot_token();
    let room = s.new_room_id();
    let id = post(&s, Some(&bot), &json!({"roomId": room, "text": "x"})).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // No roomId, another room, no content.
    assert_webex_error(
        &put(&s, Some(&bot), &id, &json!({"text": "y"})),
        400,
        "roomId",
    );
    assert_webex_error(
        &put(
            &s,
            Some(&bot),
            &id,
            &json!({"roomId": s.new_room_id(), "text": "y"}),
        ),
        400,
        "does not match",
    );
    assert_webex_error(
        &put(&s, Some(&bot), &id, &json!({"roomId": room})),
        400,
        "text or markdown",
    );
    // Unknown, and deleted.
    assert_webex_error(
        &put(
            &s,
            Some(&bot),
            "Y2lzY29zcGFyazovL3VzL01FU1NBR0UvMQ",
            &json!({"roomId": room, "text": "y"}),
        ),
        404,
        "message",
    );
    assert!(s.delete_message(&id));
    assert_webex_error(
        &put(&s, Some(&bot), &id, &json!({"roomId": room, "text": "y"})),
        404,
        "message",
    );
    assert!(!s.delete_message(&id));
    let g = get(&format!("{}/{id}", messages_url(&s)), Some(&bot));
    assert_webex_error(&g, 404, "message");
}

#[test]
fn the_control_api_issues_bot_tokens_and_deletes_messages() {
    let s = sim();
    let root = s.root_url();
    let issued = send_json(
        "POST",
        &format!("{root}/_sim/issue"),
        None,
        &json!({"kind": "bot"}),
    )
    .json();
    let bot = issued["token"].as_str().unwrap().to_string();
    assert_eq!(issued["personEmail"], "webex-token-sim@webex.bot");
    let room = send_json("POST", &format!("{root}/_sim/rooms"), None, &json!({})).json()["roomId"]
        .as_str()
        .unwrap()
        .to_string();
    let m = post(&s, Some(&bot), &json!({"roomId": room, "text": "x"})).json();
    let gone = send_json(
        "POST",
        &format!("{root}/_sim/messages/delete"),
        None,
        &json!({"id": m["id"]}),
    )
    .json();
    assert_eq!(gone["deleted"], true);
    assert!(s.messages().is_empty());
    // A bot token without the scope, from the control API.
    let weak = send_json(
        "POST",
        &format!("{root}/_sim/issue"),
        None,
        &json!({"kind": "bot", "scopes": ["spark:messages_read"]}),
    )
    .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_webex_error(
        &post(&s, Some(&weak), &json!({"roomId": room, "text": "x"})),
        403,
        "messages_write",
    );
}
