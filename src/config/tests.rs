//! Unit tests of the config reader and writer (beside `mod.rs`, as the
//! other big leaves keep theirs).

use super::*;
use serde_json::Value;

fn p() -> PathBuf {
    PathBuf::from("/abs/token-config.json")
}

const FULL: &str = r#"{
  "comment": "kept",
  "serviceApp": {
"appId": "app-1",
"clientId": "sa-client",
"clientSecret": "sa-secret",
"targetOrgId": "org-1",
"extra": 42
  },
  "tokenManager": {
"personalAccessToken": "pat-1",
"integration": {
  "clientId": "int-client",
  "clientSecret": "int-secret",
  "refreshToken": "int-refresh"
}
  },
  "zzz": [1, 2]
}"#;

#[test]
fn reads_the_contract_layout() {
    let c = Config::parse(FULL.as_bytes(), &p()).unwrap();
    assert_eq!(c.service_app.app_id.get().unwrap(), "app-1");
    assert_eq!(
        c.service_app.client_secret.get().unwrap().expose_secret(),
        "sa-secret"
    );
    assert_eq!(
        c.personal_access_token.get().unwrap().expose_secret(),
        "pat-1"
    );
    let i = c.usable_integration().unwrap();
    assert_eq!(i.layout, IntegrationLayout::Nested);
    assert_eq!(
        i.refresh_token.get().unwrap().expose_secret(),
        "int-refresh"
    );
    assert!(c.notes.is_empty());
    assert!(!format!("{c:?}").contains("sa-secret"));
    assert!(!format!("{c:?}").contains("pat-1"));
}

#[test]
fn orgs_list_is_read_and_checked() {
    let cfg = Config::parse(
        br#"{"serviceApp":{"targetOrgId":"single","orgs":[
            {"name":"acme","targetOrgId":" o1 "},
            {"name":"beta-2_x","targetOrgId":"o2","envFile":"envs/beta.env"}]}}"#,
        &p(),
    )
    .unwrap();
    let orgs = &cfg.service_app.orgs;
    assert_eq!(orgs.len(), 2);
    assert_eq!(
        (orgs[0].name.as_str(), orgs[0].target_org_id.as_str()),
        ("acme", "o1")
    );
    assert_eq!(orgs[0].env_file, None);
    assert_eq!(
        orgs[1].env_file.as_deref(),
        Some(Path::new("envs/beta.env"))
    );
    let view = cfg.service_app.for_org(1, "o2");
    assert_eq!(view.target_org_id.get().map(String::as_str), Some("o2"));
    assert_eq!(view.target_org_id.key, "serviceApp.orgs[1].targetOrgId");

    // No list (or null): the single org, as before.
    for text in [
        r#"{"serviceApp":{"targetOrgId":"x"}}"#,
        r#"{"serviceApp":{"orgs":null}}"#,
    ] {
        assert!(
            Config::parse(text.as_bytes(), &p())
                .unwrap()
                .service_app
                .orgs
                .is_empty()
        );
    }
    for (text, key) in [
        (
            r#"{"serviceApp":{"orgs":[]}}"#,
            "`serviceApp.orgs` is empty",
        ),
        (
            r#"{"serviceApp":{"orgs":"acme"}}"#,
            "`serviceApp.orgs` must be an array",
        ),
        (
            r#"{"serviceApp":{"orgs":[1]}}"#,
            "`serviceApp.orgs[0]` must be a JSON object",
        ),
        (
            r#"{"serviceApp":{"orgs":[{"targetOrgId":"o"}]}}"#,
            "`serviceApp.orgs[0].name` is not set",
        ),
        (
            r#"{"serviceApp":{"orgs":[{"name":"a/b","targetOrgId":"o"}]}}"#,
            "`serviceApp.orgs[0].name` may hold only",
        ),
        (
            r#"{"serviceApp":{"orgs":[{"name":"a","targetOrgId":"o"},{"name":"a","targetOrgId":"p"}]}}"#,
            "`serviceApp.orgs[1].name` repeats",
        ),
        (
            r#"{"serviceApp":{"orgs":[{"name":"a","targetOrgId":"<your org id>"}]}}"#,
            "`serviceApp.orgs[0].targetOrgId` is not set",
        ),
        (
            r#"{"serviceApp":{"orgs":[{"name":"a","targetOrgId":5}]}}"#,
            "`serviceApp.orgs[0].targetOrgId` must be a string",
        ),
    ] {
        let e = Config::parse(text.as_bytes(), &p()).unwrap_err();
        assert!(e.to_string().contains(key), "{text}: {e}");
        assert!(matches!(e, ConfigError::BadOrgs { .. }));
    }
}

#[test]
fn a_cached_parse_is_used_only_for_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    let cache = ParsedCache::default();
    std::fs::write(&path, r#"{"tokenManager":{"personalAccessToken":"one"}}"#).unwrap();
    let a = Config::load_with(&path, &cache).unwrap();
    assert_eq!(
        a.personal_access_token.get().unwrap().expose_secret(),
        "one"
    );
    // Another process renews the personal token: the next read sees it.
    std::fs::write(&path, r#"{"tokenManager":{"personalAccessToken":"two"}}"#).unwrap();
    let b = Config::load_with(&path, &cache).unwrap();
    assert_eq!(
        b.personal_access_token.get().unwrap().expose_secret(),
        "two"
    );
    let c = Config::load_with(&path, &cache).unwrap();
    assert_eq!(
        c.personal_access_token.get().unwrap().expose_secret(),
        "two"
    );
    // A broken file is an error, not the cached parse.
    std::fs::write(&path, "{").unwrap();
    assert!(Config::load_with(&path, &cache).is_err());
    assert!(!format!("{cache:?}").contains("two"));
}

#[test]
fn reads_flat_layouts_with_a_note() {
    let flat = r#"{"serviceApp":{},"tokenManager":{"personalAccessToken":"p","clientId":"c","clientSecret":"s","refreshToken":"r"}}"#;
    let c = Config::parse(flat.as_bytes(), &p()).unwrap();
    let i = c.usable_integration().unwrap();
    assert_eq!(i.layout, IntegrationLayout::FlatPlain);
    assert_eq!(i.refresh_token.key, "tokenManager.refreshToken");
    assert_eq!(c.notes.len(), 1);

    let oauth =
        r#"{"tokenManager":{"oauthClientId":"c","oauthClientSecret":"s","oauthRefreshToken":"r"}}"#;
    let c = Config::parse(oauth.as_bytes(), &p()).unwrap();
    let i = c.usable_integration().unwrap();
    assert_eq!(i.layout, IntegrationLayout::FlatOauth);
    assert_eq!(i.client_id.get().unwrap(), "c");
}

#[test]
fn placeholders_are_not_values() {
    let t = r#"{"serviceApp":{"appId":"your_service_app_id","clientId":"","targetOrgId":"YOUR_ORG"},"tokenManager":{"personalAccessToken":"your_personal_access_token","integration":{"clientId":"your_integration_client_id","clientSecret":"x","refreshToken":"y"}}}"#;
    let c = Config::parse(t.as_bytes(), &p()).unwrap();
    assert_eq!(
        c.service_app.app_id.value.as_ref().unwrap_err(),
        &Absence::Placeholder
    );
    assert_eq!(
        c.service_app.client_id.value.as_ref().unwrap_err(),
        &Absence::Empty
    );
    assert_eq!(
        c.service_app.client_secret.value.as_ref().unwrap_err(),
        &Absence::Missing
    );
    assert!(c.usable_integration().is_none());
    assert!(
        c.integration
            .as_ref()
            .unwrap()
            .first_gap()
            .unwrap()
            .contains("tokenManager.integration.clientId")
    );
    let err = c.service_app.app_id.require(&c.path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("/abs/token-config.json"), "{msg}");
    assert!(msg.contains("serviceApp.appId"), "{msg}");
    assert!(msg.contains("not filled in"), "{msg}");
    assert!(err.hint().contains("developer.webex.com"));
}

#[test]
fn json_errors_carry_line_and_column() {
    let bad = "{\n  \"serviceApp\": {\n    \"appId\": \"x\",\n  }\n}";
    let err = Config::parse(bad.as_bytes(), &p()).unwrap_err();
    match &err {
        ConfigError::Json { line, column, .. } => {
            assert_eq!(*line, 4);
            assert!(*column > 0);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("line 4"));
    let not_obj = Config::parse(b"[1]", &p()).unwrap_err();
    assert!(matches!(not_obj, ConfigError::NotObject { .. }));
    let wrong_type = Config::parse(br#"{"serviceApp":{"clientId":5}}"#, &p()).unwrap_err();
    assert!(wrong_type.to_string().contains("serviceApp.clientId"));
}

#[test]
fn rewrite_keeps_unknown_keys_and_order() {
    let c = Config::parse(FULL.as_bytes(), &p()).unwrap();
    let ts: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
    let out = c.render_with(&PersonalUpdate {
        personal_access_token: secret("pat-2"),
        personal_expires_at: Some(ts),
        integration_refresh_token: Some(secret("int-refresh-2")),
        integration_refresh_expires_at: Some(ts),
        integration_client: None,
    });
    let text = String::from_utf8(out).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["comment"], "kept");
    assert_eq!(v["serviceApp"]["extra"], 42);
    assert_eq!(v["zzz"], serde_json::json!([1, 2]));
    assert_eq!(v["tokenManager"]["personalAccessToken"], "pat-2");
    assert_eq!(
        v["tokenManager"]["personalAccessTokenExpiresAt"],
        "2026-12-01T00:00:00Z"
    );
    assert_eq!(
        v["tokenManager"]["integration"]["refreshToken"],
        "int-refresh-2"
    );
    assert_eq!(
        v["tokenManager"]["integration"]["clientSecret"],
        "int-secret"
    );
    // Order kept: comment first, zzz last.
    assert!(text.find("comment").unwrap() < text.find("serviceApp").unwrap());
    assert!(text.find("tokenManager").unwrap() < text.find("zzz").unwrap());
    // Reads back.
    let again = Config::parse(text.as_bytes(), &p()).unwrap();
    assert_eq!(again.personal_expires_at, Some(ts));
}

#[test]
fn rewrite_keeps_flat_layout_and_indent() {
    let flat = "{\n    \"tokenManager\": {\n        \"oauthClientId\": \"c\",\n        \"oauthClientSecret\": \"s\",\n        \"oauthRefreshToken\": \"r\"\n    }\n}";
    let c = Config::parse(flat.as_bytes(), &p()).unwrap();
    let out = String::from_utf8(c.render_with(&PersonalUpdate {
        personal_access_token: secret("pat"),
        personal_expires_at: None,
        integration_refresh_token: Some(secret("r2")),
        integration_refresh_expires_at: None,
        integration_client: None,
    }))
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tokenManager"]["oauthRefreshToken"], "r2");
    assert!(v["tokenManager"].get("integration").is_none());
    assert!(out.contains("\n    \"tokenManager\""), "{out}");
}

// ---- The Python sample's files, era by era (WebexSamples/webex-byods-manager).
// Written the way its `json.dump(config, f, indent=4)` writes: four
// spaces, no newline at the end, keys in insertion order.

/// Aug 2025 (76a5556): a personal token only, no integration yet.
const ERA_2025_08_PAT_ONLY: &str = "{\n    \"serviceApp\": {\n        \"appId\": \"app-1\",\n        \"clientId\": \"sa-client\",\n        \"clientSecret\": \"sa-secret\",\n        \"targetOrgId\": \"org-1\"\n    },\n    \"tokenManager\": {\n        \"personalAccessToken\": \"pat-1\"\n    }\n}";

/// Aug 2025 (04c7741…b486061): nested `integration`, filled by its setup_oauth.py.
const ERA_2025_08_NESTED: &str = "{\n    \"serviceApp\": {\n        \"appId\": \"app-1\",\n        \"clientId\": \"sa-client\",\n        \"clientSecret\": \"sa-secret\",\n        \"targetOrgId\": \"org-1\"\n    },\n    \"tokenManager\": {\n        \"personalAccessToken\": \"pat-1\",\n        \"integration\": {\n            \"clientId\": \"int-nested\",\n            \"clientSecret\": \"int-nested-secret\",\n            \"refreshToken\": \"rt-nested\"\n        }\n    }\n}";

/// Dec 2025 (50f9552): template and setup_oauth.py both use `oauth*`.
const ERA_2025_12_OAUTH: &str = "{\n    \"serviceApp\": {\n        \"appId\": \"app-1\",\n        \"clientId\": \"sa-client\",\n        \"clientSecret\": \"sa-secret\",\n        \"targetOrgId\": \"org-1\"\n    },\n    \"tokenManager\": {\n        \"personalAccessToken\": \"pat-1\",\n        \"oauthClientId\": \"int-oauth\",\n        \"oauthClientSecret\": \"int-oauth-secret\",\n        \"oauthRefreshToken\": \"rt-oauth\"\n    }\n}";

/// Dec 2025 HEAD (731d4d6): the template's `oauth*` placeholders, and the
/// flat keys its setup_oauth.py appended (the only ones its code reads).
const ERA_2025_12_HEAD_MIXED: &str = "{\n    \"serviceApp\": {\n        \"appId\": \"app-1\",\n        \"clientId\": \"sa-client\",\n        \"clientSecret\": \"sa-secret\",\n        \"targetOrgId\": \"org-1\"\n    },\n    \"tokenManager\": {\n        \"personalAccessToken\": \"pat-1\",\n        \"oauthClientId\": \"YOUR_OAUTH_CLIENT_ID_HERE\",\n        \"oauthClientSecret\": \"YOUR_OAUTH_CLIENT_SECRET_HERE\",\n        \"oauthRefreshToken\": \"YOUR_OAUTH_REFRESH_TOKEN_HERE\",\n        \"clientId\": \"int-flat\",\n        \"clientSecret\": \"int-flat-secret\",\n        \"refreshToken\": \"rt-flat\"\n    }\n}";

fn level3_update(pat: &str, rt: &str) -> PersonalUpdate {
    let ts: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
    PersonalUpdate {
        personal_access_token: secret(pat),
        personal_expires_at: Some(ts),
        integration_refresh_token: Some(secret(rt)),
        integration_refresh_expires_at: Some(ts),
        integration_client: None,
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn template_placeholders_of_every_era_are_not_values() {
    for v in [
        "YOUR_SERVICE_APP_ID_HERE",
        "YOUR_TARGET_ORG_ID_HERE",
        "YOUR_PERSONAL_ACCESS_TOKEN_HERE",
        "YOUR_TOKEN_MANAGER_INTEGRATION_CLIENT_ID_HERE",
        "YOUR_TOKEN_MANAGER_INTEGRATION_REFRESH_TOKEN_HERE",
        "YOUR_OAUTH_CLIENT_ID_HERE",
        "YOUR_OAUTH_CLIENT_SECRET_HERE",
        "YOUR_OAUTH_REFRESH_TOKEN_HERE",
        "your_client_id",
        " your-token ",
        "<your token>",
        "changeme",
    ] {
        assert!(is_placeholder(v), "{v}");
    }
    for v in ["int-flat", "Y2lzY29zcGFyazovL3Vz", "here", "ZmFyYW_HERE"] {
        assert!(!is_placeholder(v), "{v}");
    }
}

#[test]
fn era_pat_only_has_no_integration() {
    let c = Config::parse(ERA_2025_08_PAT_ONLY.as_bytes(), &p()).unwrap();
    assert!(c.integration.is_none());
    assert!(c.integration_candidates().is_empty());
    assert!(c.notes.is_empty(), "{:?}", c.notes);
    // setup-oauth names the contract's keys.
    let gaps = c.integration_client().unwrap_err();
    assert_eq!(gaps[0].0, "tokenManager.integration.clientId");
}

#[test]
fn era_nested_and_era_oauth_each_read_alone() {
    let c = Config::parse(ERA_2025_08_NESTED.as_bytes(), &p()).unwrap();
    let i = c.usable_integration().unwrap();
    assert_eq!(i.layout, IntegrationLayout::Nested);
    assert_eq!(i.refresh_token.get().unwrap().expose_secret(), "rt-nested");
    assert!(c.notes.is_empty());

    let c = Config::parse(ERA_2025_12_OAUTH.as_bytes(), &p()).unwrap();
    let i = c.usable_integration().unwrap();
    assert_eq!(i.layout, IntegrationLayout::FlatOauth);
    assert_eq!(c.integration_candidates().len(), 1);
    let out = json(&c.render_with(&level3_update("pat-2", "rt-oauth-2")));
    assert_eq!(out["tokenManager"]["oauthRefreshToken"], "rt-oauth-2");
    assert_eq!(
        out["tokenManager"]["oauthRefreshTokenFingerprint"],
        crate::secret::fingerprint_str("rt-oauth-2")
    );
    assert!(out["tokenManager"].get("refreshToken").is_none());
}

#[test]
fn head_mixed_layout_uses_the_filled_flat_keys_not_the_placeholders() {
    let c = Config::parse(ERA_2025_12_HEAD_MIXED.as_bytes(), &p()).unwrap();
    let i = c.usable_integration().expect("the flat keys are filled in");
    assert_eq!(i.layout, IntegrationLayout::FlatPlain);
    assert_eq!(i.client_id.get().unwrap(), "int-flat");
    assert_eq!(i.refresh_token.get().unwrap().expose_secret(), "rt-flat");
    // The placeholder layout is no candidate.
    let cands = c.integration_candidates();
    assert_eq!(cands.len(), 1);
    assert_eq!(cands[0].layout, IntegrationLayout::FlatPlain);
    // A note says which and why, naming the placeholder key.
    assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
    let note = &c.notes[0];
    assert!(note.contains("2 layouts"), "{note}");
    assert!(note.contains("using `tokenManager.{clientId"), "{note}");
    assert!(
        note.contains("`tokenManager.oauthClientId` is not filled in"),
        "{note}"
    );
    assert!(!note.contains("rt-flat") && !note.contains("int-flat-secret"));

    // Level 3 writes into the flat keys; the placeholders stay byte for byte.
    let out = c.render_with(&level3_update("pat-2", "rt-flat-2"));
    let text = String::from_utf8(out.clone()).unwrap();
    for line in [
        "        \"oauthClientId\": \"YOUR_OAUTH_CLIENT_ID_HERE\",\n",
        "        \"oauthClientSecret\": \"YOUR_OAUTH_CLIENT_SECRET_HERE\",\n",
        "        \"oauthRefreshToken\": \"YOUR_OAUTH_REFRESH_TOKEN_HERE\",\n",
        "        \"clientId\": \"int-flat\",\n",
    ] {
        assert!(text.contains(line), "{text}");
    }
    let v = json(&out);
    assert_eq!(v["tokenManager"]["refreshToken"], "rt-flat-2");
    assert_eq!(v["tokenManager"]["personalAccessToken"], "pat-2");
    assert!(v["tokenManager"].get("integration").is_none());
    assert!(!text.ends_with('\n'), "json.dump writes no final newline");
    let again = Config::parse(&out, &p()).unwrap();
    assert_eq!(
        again.usable_integration().unwrap().refresh_expires_at,
        Some("2026-12-01T00:00:00Z".parse().unwrap())
    );
}

#[test]
fn several_filled_layouts_prefer_flat_and_keep_the_others_as_fallbacks() {
    // The 50f9552 file after running HEAD's setup_oauth.py, plus the
    // August nested object: all three filled in.
    let text = r#"{"serviceApp":{},"tokenManager":{"personalAccessToken":"pat-1",
        "integration":{"clientId":"int-nested","clientSecret":"sn","refreshToken":"rt-nested"},
        "oauthClientId":"int-oauth","oauthClientSecret":"so","oauthRefreshToken":"rt-oauth",
        "clientId":"int-flat","clientSecret":"sf","refreshToken":"rt-flat"}}"#;
    let c = Config::parse(text.as_bytes(), &p()).unwrap();
    let order: Vec<_> = c
        .integration_candidates()
        .iter()
        .map(|i| i.layout)
        .collect();
    assert_eq!(order, IntegrationLayout::PREFERENCE.to_vec());
    assert_eq!(
        c.usable_integration().unwrap().layout,
        IntegrationLayout::FlatPlain
    );
    assert!(c.notes[0].contains("tried next"), "{:?}", c.notes);

    // Renewed through the first: only the flat keys change.
    let v = json(&c.render_with(&level3_update("pat-2", "rt-flat-2")));
    let tm = &v["tokenManager"];
    assert_eq!(tm["refreshToken"], "rt-flat-2");
    assert_eq!(tm["oauthRefreshToken"], "rt-oauth");
    assert_eq!(tm["integration"]["refreshToken"], "rt-nested");
    assert!(tm.get("oauthRefreshTokenExpiresAt").is_none());

    // Renewed through a fallback (level 3 names its client): only that
    // layout changes.
    let mut u = level3_update("pat-3", "rt-nested-2");
    u.integration_client = Some(("int-nested".into(), secret("sn")));
    assert_eq!(c.write_layout(&u), IntegrationLayout::Nested);
    let v = json(&c.render_with(&u));
    let tm = &v["tokenManager"];
    assert_eq!(tm["integration"]["refreshToken"], "rt-nested-2");
    assert_eq!(tm["integration"]["clientId"], "int-nested");
    assert_eq!(tm["refreshToken"], "rt-flat");
    assert_eq!(tm["oauthRefreshToken"], "rt-oauth");
    assert!(tm.get("refreshTokenExpiresAt").is_none());
    assert!(tm["integration"].get("refreshTokenExpiresAt").is_some());
}

#[test]
fn setup_oauth_takes_the_client_from_whichever_layout_has_one() {
    // HEAD template with only the flat client filled in (no refresh token yet).
    let text = r#"{"tokenManager":{"personalAccessToken":"YOUR_PERSONAL_ACCESS_TOKEN_HERE",
        "oauthClientId":"YOUR_OAUTH_CLIENT_ID_HERE","oauthClientSecret":"YOUR_OAUTH_CLIENT_SECRET_HERE",
        "oauthRefreshToken":"YOUR_OAUTH_REFRESH_TOKEN_HERE","clientId":"int-flat","clientSecret":"sf"}}"#;
    let c = Config::parse(text.as_bytes(), &p()).unwrap();
    assert!(c.usable_integration().is_none());
    let (id, sec) = c.integration_client().unwrap();
    assert_eq!((id.as_str(), sec.expose_secret()), ("int-flat", "sf"));
    let mut u = level3_update("pat-new", "rt-new");
    u.integration_client = Some((id, sec));
    let v = json(&c.render_with(&u));
    assert_eq!(v["tokenManager"]["refreshToken"], "rt-new");
    assert_eq!(
        v["tokenManager"]["oauthRefreshToken"],
        "YOUR_OAUTH_REFRESH_TOKEN_HERE"
    );

    // Only the template's oauth* client filled in: that layout.
    let text = r#"{"tokenManager":{"oauthClientId":"int-oauth","oauthClientSecret":"so",
        "oauthRefreshToken":"YOUR_OAUTH_REFRESH_TOKEN_HERE"}}"#;
    let c = Config::parse(text.as_bytes(), &p()).unwrap();
    assert_eq!(
        c.integration.as_ref().unwrap().layout,
        IntegrationLayout::FlatOauth
    );
    assert_eq!(c.integration_client().unwrap().0, "int-oauth");

    // Nothing filled in: the gaps name the keys of the file's own layout.
    let c = Config::parse(
        ERA_2025_12_HEAD_MIXED.replace("int-flat", "").as_bytes(),
        &p(),
    );
    let c = c.unwrap();
    let gaps = c.integration_client().unwrap_err();
    assert!(
        gaps.iter()
            .any(|(k, a)| k == "tokenManager.clientId" && *a == Absence::Empty),
        "{gaps:?}"
    );
    let c = Config::parse(br#"{"tokenManager":{"oauthClientId":"YOUR_OAUTH_CLIENT_ID_HERE","oauthClientSecret":"YOUR_OAUTH_CLIENT_SECRET_HERE"}}"#, &p()).unwrap();
    let gaps = c.integration_client().unwrap_err();
    assert_eq!(
        gaps[0],
        ("tokenManager.oauthClientId".into(), Absence::Placeholder)
    );
}

#[test]
fn fixture_files_read_as_their_era_and_round_trip_byte_identical() {
    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                include_str!(concat!("../../tests/fixtures/python-sample/", $name)),
            )
        };
    }
    for ((name, text), layout) in [
        (fixture!("2025-08-pat-only.json"), None),
        (
            fixture!("2025-08-nested-integration.json"),
            Some(IntegrationLayout::Nested),
        ),
        (
            fixture!("2025-12-05-oauth-keys.json"),
            Some(IntegrationLayout::FlatOauth),
        ),
        (
            fixture!("2025-12-24-head-mixed.json"),
            Some(IntegrationLayout::FlatPlain),
        ),
        (fixture!("2025-12-24-head-template-only.json"), None),
    ] {
        let c = Config::parse(text.as_bytes(), &p()).unwrap();
        assert_eq!(c.usable_integration().map(|i| i.layout), layout, "{name}");
        let pat = c
            .personal_access_token
            .get()
            .map(|s| s.expose_secret().to_string());
        let out = c.render_with(&PersonalUpdate {
            personal_access_token: secret(pat.clone().unwrap_or("FAKE-new".into())),
            personal_expires_at: None,
            integration_refresh_token: None,
            integration_refresh_expires_at: None,
            integration_client: None,
        });
        let want = match pat {
            Some(_) => text.to_string(),
            None => text.replace("YOUR_PERSONAL_ACCESS_TOKEN_HERE", "FAKE-new"),
        };
        assert_eq!(String::from_utf8(out).unwrap(), want, "{name}");
    }
}

// ---- Stored expiries are tied to their token.

fn with_personal(extra: &str) -> Config {
    let text = format!(r#"{{"tokenManager":{{"personalAccessToken":"pat-now"{extra}}}}}"#);
    Config::parse(text.as_bytes(), &p()).unwrap()
}

#[test]
fn personal_expiry_counts_only_for_the_token_it_was_written_for() {
    let fp = crate::secret::fingerprint_str("pat-now");
    let c = with_personal(&format!(
        r#","personalAccessTokenExpiresAt":"2026-01-01T00:00:00Z","personalAccessTokenFingerprint":"{fp}""#
    ));
    assert_eq!(
        c.personal_expires_at,
        Some("2026-01-01T00:00:00Z".parse().unwrap())
    );
    assert!(c.notes.is_empty(), "{:?}", c.notes);

    // A pasted token: the old expiry and fingerprint belong to another.
    let old = crate::secret::fingerprint_str("pat-old");
    let c = with_personal(&format!(
        r#","personalAccessTokenExpiresAt":"2026-01-01T00:00:00Z","personalAccessTokenFingerprint":"{old}""#
    ));
    assert_eq!(c.personal_expires_at, None);
    assert!(
        c.notes[0].contains("earlier personal access token"),
        "{:?}",
        c.notes
    );
    assert!(!c.notes[0].contains("pat-now"));

    // Written by an older webex-token (no fingerprint): unknown, not an error.
    let c = with_personal(r#","personalAccessTokenExpiresAt":"2026-01-01T00:00:00Z""#);
    assert_eq!(c.personal_expires_at, None);
    assert!(
        c.notes[0].contains("no `personalAccessTokenFingerprint`"),
        "{:?}",
        c.notes
    );

    // No expiry at all: unknown, nothing to say.
    let c = with_personal("");
    assert_eq!(c.personal_expires_at, None);
    assert!(c.notes.is_empty());
}

#[test]
fn integration_expiry_is_tied_to_its_refresh_token_in_every_layout() {
    let fp = crate::secret::fingerprint_str("rt");
    let other = crate::secret::fingerprint_str("rt-old");
    let exp: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
    for (layout, body) in [
        (
            IntegrationLayout::Nested,
            r#""integration":{"clientId":"c","clientSecret":"s","refreshToken":"rt","refreshTokenExpiresAt":"2026-03-01T00:00:00Z"FP}"#,
        ),
        (
            IntegrationLayout::FlatPlain,
            r#""clientId":"c","clientSecret":"s","refreshToken":"rt","refreshTokenExpiresAt":"2026-03-01T00:00:00Z"FP"#,
        ),
        (
            IntegrationLayout::FlatOauth,
            r#""oauthClientId":"c","oauthClientSecret":"s","oauthRefreshToken":"rt","oauthRefreshTokenExpiresAt":"2026-03-01T00:00:00Z"FP"#,
        ),
    ] {
        let key = layout.fingerprint_key();
        for (fp_part, want) in [
            (format!(r#","{key}":"{fp}""#), Some(exp)),
            (format!(r#","{key}":"{other}""#), None),
            (String::new(), None),
        ] {
            let text = format!(r#"{{"tokenManager":{{{}}}}}"#, body.replace("FP", &fp_part));
            let c = Config::parse(text.as_bytes(), &p()).unwrap();
            let i = c.usable_integration().unwrap();
            assert_eq!(i.layout, layout);
            assert_eq!(i.refresh_expires_at, want, "{text}");
            assert_eq!(
                c.notes.iter().any(|n| n.contains("treated as unknown")),
                want.is_none(),
                "{:?}",
                c.notes
            );
        }
    }
}

#[test]
fn writing_an_expiry_writes_the_fingerprint_beside_it() {
    let c = Config::parse(FULL.as_bytes(), &p()).unwrap();
    let out = c.render_with(&level3_update("pat-2", "int-refresh-2"));
    let text = String::from_utf8(out.clone()).unwrap();
    let v = json(&out);
    assert_eq!(
        v["tokenManager"]["personalAccessTokenFingerprint"],
        crate::secret::fingerprint_str("pat-2")
    );
    assert_eq!(
        v["tokenManager"]["integration"]["refreshTokenFingerprint"],
        crate::secret::fingerprint_str("int-refresh-2")
    );
    // Right after the expiry it belongs to.
    let e = text.find("\"personalAccessTokenExpiresAt\"").unwrap();
    let f = text.find("\"personalAccessTokenFingerprint\"").unwrap();
    assert!(e < f && !text[e..f].contains("Token\":"), "{text}");
    let again = Config::parse(&out, &p()).unwrap();
    assert!(again.personal_expires_at.is_some());
    assert!(
        again
            .usable_integration()
            .unwrap()
            .refresh_expires_at
            .is_some()
    );
    assert!(again.notes.is_empty(), "{:?}", again.notes);

    // A new personal token without an expiry drops the stale pair.
    let mut u = level3_update("pat-3", "int-refresh-3");
    u.personal_expires_at = None;
    u.integration_refresh_expires_at = None;
    let v = json(&again.render_with(&u));
    assert!(
        v["tokenManager"]
            .get("personalAccessTokenExpiresAt")
            .is_none()
    );
    assert!(
        v["tokenManager"]
            .get("personalAccessTokenFingerprint")
            .is_none()
    );
    assert!(
        v["tokenManager"]["integration"]
            .get("refreshTokenFingerprint")
            .is_none()
    );

    // Same refresh token kept, new expiry: fingerprint of the stored one.
    let mut u = level3_update("pat-4", "unused");
    u.integration_refresh_token = None;
    let v = json(&again.render_with(&u));
    assert_eq!(
        v["tokenManager"]["integration"]["refreshTokenFingerprint"],
        crate::secret::fingerprint_str("int-refresh-2")
    );
}

// ---- Unknown values come back byte for byte.

#[test]
fn rewrite_keeps_numbers_and_everything_else_byte_identical() {
    let original = "{\n    \"big\": 12345678901234567890,\n    \"bigger\": 123456789012345678901234567890,\n    \"float\": 1.0,\n    \"huge\": 1e400,\n    \"tiny\": -1.50E-7,\n    \"serviceApp\": {\n        \"appId\": \"app-1\",\n        \"n\": [1.0, 2.50, {\"x\": 100000000000000000000001}],\n        \"s\": \"caf\\u00e9 \\\"q\\\"\"\n    },\n    \"tokenManager\": {\n        \"personalAccessToken\": \"pat-1\",\n        \"keep\": 9007199254740993,\n        \"nested\": {\n            \"a\": 1e-400,\n            \"b\": []\n        },\n        \"empty\": {}\n    },\n    \"last\": null\n}";
    let c = Config::parse(original.as_bytes(), &p()).unwrap();
    let out = c.render_with(&PersonalUpdate {
        personal_access_token: secret("pat-2"),
        personal_expires_at: None,
        integration_refresh_token: None,
        integration_refresh_expires_at: None,
        integration_client: None,
    });
    let expected = original.replace("\"pat-1\"", "\"pat-2\"");
    assert_eq!(String::from_utf8(out).unwrap(), expected);

    // With a trailing newline and two-space indent (serde_json's style).
    let two = "{\n  \"a\": 1.0,\n  \"tokenManager\": {\n    \"personalAccessToken\": \"pat-1\",\n    \"z\": 12345678901234567890123\n  }\n}\n";
    let c = Config::parse(two.as_bytes(), &p()).unwrap();
    let out = c.render_with(&PersonalUpdate {
        personal_access_token: secret("pat-2"),
        personal_expires_at: None,
        integration_refresh_token: None,
        integration_refresh_expires_at: None,
        integration_client: None,
    });
    assert_eq!(
        String::from_utf8(out).unwrap(),
        two.replace("pat-1", "pat-2")
    );
}

// ---- Reading refuses what is not a config file.

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Runs `Config::load` on another thread so a blocking open fails the
/// test instead of hanging it.
fn load_soon(path: &Path) -> Result<Config, ConfigError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(Config::load(&path));
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("Config::load blocked")
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn a_fifo_or_a_link_to_one_is_refused_without_blocking() {
    let dir = temp();
    let fifo = dir.path().join("token-config.json");
    mkfifo(&fifo);
    let err = load_soon(&fifo).unwrap_err();
    assert!(
        matches!(err, ConfigError::NotRegular { kind: "a FIFO", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&*fifo.to_string_lossy()), "{err}");
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let err = load_soon(&link).unwrap_err();
    assert!(matches!(err, ConfigError::NotRegular { .. }), "{err:?}");
    assert_eq!(crate::error::Error::Config(err).exit_code(), 3);
}

#[test]
fn a_socket_or_directory_is_refused() {
    let dir = temp();
    let sock = dir.path().join("s.json");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let err = load_soon(&sock).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::NotRegular {
                kind: "a socket",
                ..
            }
        ),
        "{err:?}"
    );
    let err = load_soon(dir.path()).unwrap_err();
    assert!(matches!(err, ConfigError::IsDirectory { .. }), "{err:?}");
    let err = load_soon(&dir.path().join("absent.json")).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");
}

#[test]
fn a_file_over_one_mib_is_refused_and_one_at_the_cap_is_read() {
    let dir = temp();
    let path = dir.path().join("big.json");
    // Valid JSON of exactly the cap: read (and parsed).
    let head = "{\"pad\": \"";
    let tail = "\"}";
    let fill = MAX_CONFIG_BYTES as usize - head.len() - tail.len();
    std::fs::write(&path, format!("{head}{}{tail}", "x".repeat(fill))).unwrap();
    assert!(load_soon(&path).is_ok());
    // One byte more: refused, naming the path and the cap.
    std::fs::write(&path, format!("{head}{}{tail}", "x".repeat(fill + 1))).unwrap();
    let err = load_soon(&path).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::TooLarge {
                cap: MAX_CONFIG_BYTES,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&*path.to_string_lossy()) && msg.contains("1048576"),
        "{msg}"
    );
}

// ---- Level 3 walks the filled-in layouts (chain.rs uses
// `integration_candidates` and names a fallback's client).

mod level3_fallback {
    use super::*;
    use crate::chain::{Action, Check, Level, Persist, Policy, Renewal, ensure_fresh};
    use crate::tokens::StoredTokens;
    use crate::webex::{
        ApiError, ClientCredentials, ErrorBody, MintRequest, TokenGrant, WebexApi, grant,
    };
    use std::cell::RefCell;

    /// Answers level 3 by refresh token; level 2 by bearer.
    struct Fake {
        good_rt: &'static str,
        good_pat: &'static str,
        calls: RefCell<Vec<String>>,
    }

    fn rejected() -> ApiError {
        ApiError::Rejected {
            status: 400,
            body: ErrorBody {
                oauth_error: Some("invalid_grant".into()),
                ..Default::default()
            },
        }
    }

    impl WebexApi for Fake {
        async fn validate(&self, _: &SecretString) -> Result<(), ApiError> {
            unreachable!("no access token stored")
        }
        async fn refresh(
            &self,
            c: &ClientCredentials<'_>,
            rt: &SecretString,
        ) -> Result<TokenGrant, ApiError> {
            self.calls
                .borrow_mut()
                .push(format!("refresh {} {}", c.client_id, rt.expose_secret()));
            if rt.expose_secret() == self.good_rt {
                Ok(grant(self.good_pat, 3600, Some(("rt-rotated", 7_776_000))))
            } else {
                Err(rejected())
            }
        }
        async fn mint(
            &self,
            bearer: &SecretString,
            _: &MintRequest<'_>,
        ) -> Result<TokenGrant, ApiError> {
            self.calls
                .borrow_mut()
                .push(format!("mint {}", bearer.expose_secret()));
            if bearer.expose_secret() == self.good_pat {
                Ok(grant("access-new", 3600, Some(("sa-rt", 7_776_000))))
            } else {
                Err(ApiError::Rejected {
                    status: 401,
                    body: ErrorBody::default(),
                })
            }
        }
    }

    /// Saves like the real sink: rendered into the config's bytes.
    struct Sink<'a>(&'a Config, Vec<Vec<u8>>);
    impl Persist for Sink<'_> {
        async fn begin_renewal(&mut self) -> Result<Renewal, String> {
            Ok(Renewal::Proceed(Box::new(self.0.clone())))
        }
        async fn personal_renewed(&mut self, u: &PersonalUpdate) -> Result<(), String> {
            self.1.push(self.0.render_with(u));
            Ok(())
        }
    }

    const THREE: &str = r#"{"serviceApp":{"appId":"app-1","clientId":"sa-client","clientSecret":"sa-secret","targetOrgId":"org-1"},
        "tokenManager":{"personalAccessToken":"pat-dead",
        "integration":{"clientId":"int-nested","clientSecret":"sn","refreshToken":"rt-nested"},
        "oauthClientId":"int-oauth","oauthClientSecret":"so","oauthRefreshToken":"rt-oauth",
        "clientId":"int-flat","clientSecret":"sf","refreshToken":"rt-flat"}}"#;

    async fn run(good_rt: &'static str) -> (Vec<String>, Vec<Vec<u8>>, Option<Level>) {
        run_with(THREE, good_rt).await
    }

    async fn run_with(
        text: &str,
        good_rt: &'static str,
    ) -> (Vec<String>, Vec<Vec<u8>>, Option<Level>) {
        let c = Config::parse(text.as_bytes(), &p()).unwrap();
        let fake = Fake {
            good_rt,
            good_pat: "pat-new",
            calls: RefCell::new(Vec::new()),
        };
        let mut sink = Sink(&c, Vec::new());
        let stored = StoredTokens {
            access_token: None,
            access_expires_at: None,
            refresh_token: None,
            refresh_expires_at: None,
        };
        let policy = Policy {
            min_valid: std::time::Duration::from_secs(3600),
            force: false,
            mint: false,
            dry_run: false,
            check: Check::Validate,
        };
        let now = "2026-11-23T12:00:00Z".parse().unwrap();
        let r = ensure_fresh(&stored, &c, &policy, &fake, now, &mut sink).await;
        let level = r.ok().and_then(|o| match o.action {
            Action::Refreshed { level, .. } => Some(level),
            _ => None,
        });
        (fake.calls.take(), sink.1, level)
    }

    #[tokio::test]
    async fn a_rejected_refresh_token_moves_on_to_the_next_filled_layout() {
        let (calls, saved, level) = run("rt-nested").await;
        assert_eq!(
            calls,
            [
                "mint pat-dead",
                "refresh int-flat rt-flat",
                "refresh int-oauth rt-oauth",
                "refresh int-nested rt-nested",
                "mint pat-new",
            ]
        );
        assert_eq!(level, Some(Level::IntegrationRefreshToken));
        assert_eq!(saved.len(), 1);
        let tm = json(&saved[0])["tokenManager"].clone();
        assert_eq!(tm["integration"]["refreshToken"], "rt-rotated");
        assert_eq!(tm["refreshToken"], "rt-flat");
        assert_eq!(tm["oauthRefreshToken"], "rt-oauth");
        assert_eq!(tm["personalAccessToken"], "pat-new");
    }

    #[tokio::test]
    async fn the_first_layout_that_works_is_the_only_one_tried_and_written() {
        let (calls, saved, _) = run("rt-flat").await;
        assert_eq!(
            calls,
            ["mint pat-dead", "refresh int-flat rt-flat", "mint pat-new"]
        );
        let tm = json(&saved[0])["tokenManager"].clone();
        assert_eq!(tm["refreshToken"], "rt-rotated");
        assert_eq!(tm["integration"]["refreshToken"], "rt-nested");
    }

    #[tokio::test]
    async fn a_layout_whose_refresh_token_is_known_expired_is_skipped() {
        let fp = crate::secret::fingerprint_str("rt-flat");
        let text = THREE.replace(
            r#""refreshToken":"rt-flat""#,
            &format!(
                r#""refreshToken":"rt-flat","refreshTokenExpiresAt":"2026-01-01T00:00:00Z","refreshTokenFingerprint":"{fp}""#
            ),
        );
        let (calls, saved, level) = run_with(&text, "rt-oauth").await;
        assert_eq!(
            calls,
            [
                "mint pat-dead",
                "refresh int-oauth rt-oauth",
                "mint pat-new"
            ]
        );
        assert_eq!(level, Some(Level::IntegrationRefreshToken));
        let tm = json(&saved[0])["tokenManager"].clone();
        assert_eq!(tm["oauthRefreshToken"], "rt-rotated");
        assert_eq!(tm["refreshToken"], "rt-flat");
    }

    #[tokio::test]
    async fn all_rejected_gives_up_after_trying_each_once() {
        let (calls, saved, level) = run("none").await;
        assert_eq!(calls.len(), 4, "{calls:?}");
        assert!(saved.is_empty());
        assert_eq!(level, None);
    }
}

mod sources_and_state {
    use super::*;

    fn exposed(f: &Field<SecretString>) -> &str {
        f.get().unwrap().expose_secret()
    }

    #[test]
    fn each_layout_reads_its_own_file_and_command_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sa"), "sa-from-file-1\n").unwrap();
        std::fs::write(dir.path().join("oauth"), "oauth-from-file-2\n").unwrap();
        let text = r#"{
          "serviceApp": {"clientId": "c", "clientSecret": "inline-loses", "clientSecretFile": "sa"},
          "tokenManager": {
            "oauthClientId": "oc", "oauthClientSecretFile": "oauth", "oauthRefreshToken": "ort",
            "integration": {"clientId": "nc", "clientSecretCommand": ["echo", "nested-from-cmd-3"], "refreshToken": "nrt"}
          }
        }"#;
        let path = dir.path().join("token-config.json");
        let c = Config::parse(text.as_bytes(), &path).unwrap();
        assert_eq!(exposed(&c.service_app.client_secret), "sa-from-file-1");
        let by = |l| c.integrations.iter().find(|i| i.layout == l).unwrap();
        assert_eq!(
            exposed(&by(IntegrationLayout::FlatOauth).client_secret),
            "oauth-from-file-2"
        );
        assert_eq!(
            exposed(&by(IntegrationLayout::Nested).client_secret),
            "nested-from-cmd-3"
        );
        // The only-a-File flat layout was found, and is usable.
        assert_eq!(
            c.usable_integration().unwrap().layout,
            IntegrationLayout::FlatOauth
        );
        let shown: Vec<String> = c
            .secret_origins
            .iter()
            .map(|(k, o)| format!("{k}={o}"))
            .collect();
        assert_eq!(
            shown,
            [
                format!(
                    "serviceApp.clientSecret=file:{}",
                    dir.path().join("sa").display()
                ),
                format!(
                    "tokenManager.oauthClientSecret=file:{}",
                    dir.path().join("oauth").display()
                ),
                "tokenManager.integration.clientSecret=command".to_string(),
            ]
        );
        // Never a value in Debug.
        assert!(!format!("{c:?}").contains("from-file"));
    }

    #[test]
    fn a_command_must_be_an_argv_array() {
        for bad in [r#""cat x""#, "[]", r#"[1, 2]"#, r#"[""]"#] {
            let text = format!(r#"{{"serviceApp": {{"clientSecretCommand": {bad}}}}}"#);
            let e = Config::parse(text.as_bytes(), Path::new("/x/c.json")).unwrap_err();
            assert!(
                matches!(e, ConfigError::BadSecretSource { ref key, .. } if key == "serviceApp.clientSecretCommand"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_state_round_trips_and_stands_in_for_the_config() {
        let path = Path::new("/x/token-config.json");
        let config = Config::parse(
            br#"{"serviceApp": {"clientSecret": "sa-secret-inline"},
                 "tokenManager": {"personalAccessToken": "pat-old",
                   "integration": {"clientId": "ic", "clientSecret": "int-secret-inline", "refreshToken": "irt-old"}}}"#,
            path,
        )
        .unwrap();
        let state_path = Path::new("/x/state.json");
        // Level 3 renewed the personal token only: the integration's
        // refresh token is carried over from the config (seeded once).
        let update = PersonalUpdate {
            personal_access_token: secret("pat-new"),
            personal_expires_at: clock::parse("2030-01-01T00:00:00Z"),
            integration_refresh_token: None,
            integration_refresh_expires_at: None,
            integration_client: None,
        };
        let bytes = Config::empty_state(state_path).render_state(&update, &config);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("secret-inline"), "no client secret: {text}");
        let state = Config::parse_with(&bytes, state_path, false).unwrap();
        let mut seen = config.clone();
        seen.overlay_state(&state);
        assert_eq!(exposed(&seen.personal_access_token), "pat-new");
        assert_eq!(
            seen.personal_expires_at,
            clock::parse("2030-01-01T00:00:00Z")
        );
        let i = seen.usable_integration().unwrap();
        assert_eq!(exposed(&i.refresh_token), "irt-old");
        assert_eq!(exposed(&i.client_secret), "int-secret-inline");

        // The next renewal rotates the integration's refresh token; the
        // state keeps the client id it belongs to.
        let update = PersonalUpdate {
            personal_access_token: secret("pat-newer"),
            personal_expires_at: None,
            integration_refresh_token: Some(secret("irt-new")),
            integration_refresh_expires_at: clock::parse("2031-01-01T00:00:00Z"),
            integration_client: Some(("ic".into(), secret("int-secret-inline"))),
        };
        let bytes = state.render_state(&update, &seen);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["tokenManager"]["integration"]["clientId"], "ic");
        assert_eq!(v["tokenManager"]["integration"]["refreshToken"], "irt-new");
        assert!(
            v["tokenManager"]["integration"]
                .get("clientSecret")
                .is_none()
        );
        let state = Config::parse_with(&bytes, state_path, false).unwrap();
        let mut seen = config.clone();
        seen.overlay_state(&state);
        let i = seen.usable_integration().unwrap();
        assert_eq!(exposed(&i.refresh_token), "irt-new");
        assert_eq!(i.refresh_expires_at, clock::parse("2031-01-01T00:00:00Z"));
        assert_eq!(seen.personal_expires_at, None);
    }

    #[test]
    fn the_bot_token_has_the_static_secret_sources() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bot"), "bot-token-from-a-file\n").unwrap();
        let path = dir.path().join("token-config.json");
        let parse = |notify: &str| {
            Config::parse(
                format!(r#"{{"serviceApp": {{"clientId": "c"}}, "notify": {notify}}}"#).as_bytes(),
                &path,
            )
        };
        let c =
            parse(r#"{"webexBotToken": "bot-inline-loses", "webexBotTokenFile": "bot"}"#).unwrap();
        assert_eq!(exposed(&c.notify_bot_token), "bot-token-from-a-file");
        assert_eq!(
            c.require_notify_bot_token().unwrap().expose_secret(),
            "bot-token-from-a-file"
        );
        assert_eq!(
            c.secret_origins,
            [(
                "notify.webexBotToken".to_string(),
                Origin::File(dir.path().join("bot"))
            )]
        );
        assert!(!format!("{c:?}").contains("bot-token-from"));
        // On the redaction list as it is read.
        assert!(crate::secret::known().contains(&"bot-token-from-a-file".to_string()));

        let c = parse(r#"{"webexBotTokenCommand": ["echo", "bot-token-from-a-command"]}"#).unwrap();
        assert_eq!(exposed(&c.notify_bot_token), "bot-token-from-a-command");
        assert_eq!(c.secret_origins[0].1, Origin::Command);

        // Absent, empty, a placeholder: the exit-3 error names the key.
        for notify in [
            "{}",
            r#"{"webexBotToken": " "}"#,
            r#"{"webexBotToken": "your_bot_token"}"#,
        ] {
            let c = parse(notify).unwrap();
            assert!(c.secret_origins.is_empty(), "{notify}");
            let e = c.require_notify_bot_token().unwrap_err();
            let text = e.to_string();
            assert!(text.contains("`notify.webexBotToken`"), "{text}");
            assert!(text.contains("`webex-bot-token`"), "{text}");
            assert!(e.hint().contains("docs/reauthorize-webex.md"));
        }
        let c = Config::parse(br#"{"serviceApp": {}}"#, &path).unwrap();
        assert!(matches!(
            c.require_notify_bot_token(),
            Err(ConfigError::NotifyBotToken {
                absence: Absence::Missing,
                ..
            })
        ));
        // `notify` must be an object; a failing source is an error.
        assert!(matches!(
            parse(r#""a-token""#),
            Err(ConfigError::NotObject { .. })
        ));
        assert!(matches!(
            parse(r#"{"webexBotTokenFile": "missing"}"#),
            Err(ConfigError::SecretSource { .. })
        ));
    }
}
