//! Unit tests of the etcd store's own logic (no etcd needed): key segments,
//! the manager merge, the export's revision line, the checks of stored
//! values, the config token's newness.

use super::*;

#[test]
fn segments_never_hold_a_slash() {
    assert_eq!(segment("abc-DEF_1.2"), "abc-DEF_1.2");
    assert_eq!(segment("Y2lz/Y28+="), "Y2lz%2FY28%2B%3D");
}

#[test]
fn manager_merge_keeps_the_stored_integration_token() {
    let old = ManagerDoc {
        personal_access_token: "p1".into(),
        integration_refresh_token: Some("irt".into()),
        integration_refresh_token_expires_at: Some("2030-01-01T00:00:00Z".into()),
        ..Default::default()
    };
    let up = PersonalUpdate {
        personal_access_token: secret("p2"),
        personal_expires_at: None,
        integration_refresh_token: None,
        integration_refresh_expires_at: None,
        integration_client: None,
    };
    let m = ManagerDoc::merged(Some(old), &up, Some("sha256:0000000a".into()));
    assert_eq!(m.personal_access_token, "p2");
    assert_eq!(m.integration_refresh_token.as_deref(), Some("irt"));
    assert_eq!(m.config_tokens_seen, ["sha256:0000000a"]);
}

#[test]
fn export_revision_is_read_back() {
    let at = Revision {
        revision: 42,
        cluster: 0xabc,
    };
    let text = format!("A=1\n{} {at}\n", files::EXPORT_MARK);
    assert_eq!(export_revision(text.as_bytes()), Some(at));
    assert_eq!(export_revision(b"A=1\n"), None);
}

fn tokens_key() -> &'static str {
    "/p/app/tokens/org"
}

fn refused(json: &str) -> String {
    match checked_doc::<TokensDoc>(tokens_key(), json.as_bytes(), TokensDoc::TEXT)
        .and_then(|d| d.check(tokens_key()))
    {
        Err(e @ StoreError::EtcdData { .. }) => e.to_string(),
        Err(e) => panic!("another error: {e}"),
        Ok(()) => panic!("accepted {json}"),
    }
}

#[test]
fn a_bad_stored_value_is_named_by_key_and_field_and_never_quoted() {
    for (json, field) in [
        (r#"{"refreshToken":"abc def-SECRET"}"#, "`refreshToken`"),
        (r#"{"refreshToken":"abc\ndef-SECRET"}"#, "`refreshToken`"),
        (r#"{"accessToken":"a$b-SECRET"}"#, "`accessToken`"),
        (
            r#"{"accessToken":"ok","accessTokenExpiresAt":"tomorrow-SECRET"}"#,
            "`accessTokenExpiresAt`",
        ),
        (
            r#"{"refreshTokenExpiresAt":1767225600}"#,
            "`refreshTokenExpiresAt`",
        ),
        (r#"{"accessToken":["SECRET"]}"#, "`accessToken`"),
        (r#""SECRET""#, "not a JSON object"),
        (r#"{"accessToken":"SECRET"#, "not JSON"),
    ] {
        let msg = refused(json);
        assert!(msg.contains(tokens_key()), "{msg}");
        assert!(msg.contains(field), "{json}: {msg}");
        assert!(!msg.contains("SECRET"), "{json}: {msg}");
    }
    // What webex-token writes passes; empty is "none".
    let good = r#"{"accessToken":"a.b-c_d","accessTokenExpiresAt":"2030-01-01T00:00:00Z","refreshToken":"","writtenBy":"h/1"}"#;
    let doc: TokensDoc = checked_doc(tokens_key(), good.as_bytes(), TokensDoc::TEXT).unwrap();
    doc.check(tokens_key()).unwrap();
    assert!(doc.tokens().refresh_token.is_none());
}

#[test]
fn a_bad_manager_value_is_refused() {
    let key = "/p/app/manager";
    for (json, field) in [
        (r#"{"personalAccessToken":""}"#, "`personalAccessToken`"),
        (r#"{"personalAccessToken":"a b"}"#, "`personalAccessToken`"),
        (r#"{}"#, "personalAccessToken"),
        (r#"{"personalAccessToken":null}"#, "null"),
        (
            r#"{"personalAccessToken":"p","integrationRefreshToken":"x\ty"}"#,
            "`integrationRefreshToken`",
        ),
        (
            r#"{"personalAccessToken":"p","configTokensSeen":"sha256:1"}"#,
            "`configTokensSeen`",
        ),
    ] {
        let msg = match checked_doc::<ManagerDoc>(key, json.as_bytes(), ManagerDoc::TEXT)
            .and_then(|d| d.check(key))
        {
            Err(e) => e.to_string(),
            Ok(()) => panic!("accepted {json}"),
        };
        assert!(msg.contains(key) && msg.contains(field), "{json}: {msg}");
    }
}

fn config_with(personal: &str) -> Config {
    let text = serde_json::json!({
        "serviceApp": {"appId": "app", "clientId": "c", "clientSecret": "s", "targetOrgId": "o"},
        "tokenManager": {"personalAccessToken": personal},
    });
    Config::parse(
        &serde_json::to_vec(&text).unwrap(),
        std::path::Path::new("/x/token-config.json"),
    )
    .unwrap()
}

#[test]
fn a_config_token_the_store_has_not_seen_is_pasted() {
    let seeded = ManagerDoc::from_config(&config_with("p1")).unwrap();
    // The seed's own token, and a store that renewed it since: nothing new.
    assert!(seeded.pasted(&config_with("p1")).is_none());
    let renewed = ManagerDoc {
        personal_access_token: "p3".into(),
        ..ManagerDoc::from_config(&config_with("p1")).unwrap()
    };
    assert!(renewed.pasted(&config_with("p1")).is_none());
    // A token neither stored nor seen: pasted, and it wins.
    let t = renewed.pasted(&config_with("p2")).expect("taken as pasted");
    assert_eq!(t.expose_secret(), "p2");
    // A paste with a stray space would reach every host: not taken.
    assert!(renewed.pasted(&config_with("p2 tail")).is_none());
    let taken = renewed.with_personal_of(&config_with("p2"), &t);
    assert_eq!(taken.personal_access_token, "p2");
    // Then a host still holding the old config does not move it back.
    assert!(taken.pasted(&config_with("p1")).is_none());
    assert!(taken.pasted(&config_with("p2")).is_none());
}

#[test]
fn a_config_written_before_the_store_state_holds_an_older_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token-config.json");
    let text = serde_json::json!({
        "serviceApp": {"appId": "app", "clientId": "c", "clientSecret": "s", "targetOrgId": "o"},
        "tokenManager": {"personalAccessToken": "p1"},
    });
    std::fs::write(&path, serde_json::to_vec(&text).unwrap()).unwrap();
    let config = Config::parse(&std::fs::read(&path).unwrap(), &path).unwrap();
    let edited = config_written(&config).expect("a real file has a time");
    // As an older webex-token left it: no record of config tokens.
    let stored = |at: jiff::Timestamp| ManagerDoc {
        personal_access_token: "p3".into(),
        written_at: Some(at.to_string()),
        ..Default::default()
    };
    let later = edited
        .checked_add(jiff::SignedDuration::from_secs(60))
        .unwrap();
    assert!(
        stored(later).pasted(&config).is_none(),
        "state stored after the config was written is newer"
    );
    let earlier = edited
        .checked_sub(jiff::SignedDuration::from_secs(60))
        .unwrap();
    assert!(
        stored(earlier).pasted(&config).is_some(),
        "a config edited after the store was written holds a pasted token"
    );
}

#[test]
fn the_seen_list_is_bounded_and_keeps_the_newest() {
    let mut m = ManagerDoc::from_config(&config_with("p0")).unwrap();
    for i in 1..40 {
        m = m.seeing(Some(format!("fp{i}")));
    }
    assert_eq!(m.config_tokens_seen.len(), SEEN_KEPT);
    assert_eq!(
        m.config_tokens_seen.last().map(String::as_str),
        Some("fp39")
    );
    let again = m.seeing(Some("fp39".into()));
    assert_eq!(again.config_tokens_seen.len(), SEEN_KEPT);
}
