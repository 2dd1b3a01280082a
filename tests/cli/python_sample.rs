//! A drop-in successor: the config files each era of the Python sample
//! (WebexSamples/webex-byods-manager) wrote, used as they are.

use crate::common::*;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/python-sample");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

async fn mock_mint_for(t: &TestEnv, app_id: &str, pat: &str, resp: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(
            format!("/v1/applications/{}/token", urlenc(app_id)).as_str(),
        ))
        .and(header("authorization", format!("Bearer {pat}").as_str()))
        .respond_with(resp)
        .mount(&t.server)
        .await;
}

/// Every key path and value of a JSON document, for "all else unchanged".
fn flatten(v: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(v, &format!("{prefix}.{k}"), out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

#[tokio::test]
async fn every_era_renews_through_its_own_layout() {
    // (fixture, the keys of the integration in use, relative to tokenManager)
    let eras = [
        (
            "2025-08-nested-integration.json",
            ["integration.clientId", "integration.refreshToken"],
        ),
        (
            "2025-12-05-oauth-keys.json",
            ["oauthClientId", "oauthRefreshToken"],
        ),
        ("2025-12-24-head-mixed.json", ["clientId", "refreshToken"]),
    ];
    for (name, [client_key, rt_key]) in eras {
        let mut t = TestEnv::new().await;
        let text = fixture(name);
        std::fs::write(t.config_path(), &text).unwrap();
        let cfg: Value = serde_json::from_str(&text).unwrap();
        let get = |dotted: &str| {
            dotted
                .split('.')
                .fold(&cfg["tokenManager"], |v, k| &v[k])
                .as_str()
                .unwrap()
                .to_string()
        };
        let (client_id, rt) = (get(client_key), get(rt_key));
        let app_id = cfg["serviceApp"]["appId"].as_str().unwrap().to_string();
        let old_pat = cfg["tokenManager"]["personalAccessToken"]
            .as_str()
            .unwrap()
            .to_string();
        for s in [&rt, &old_pat] {
            t.secret(s);
        }
        let new_pat = t.secret(&format!("SECRET-new-pat-{name}"));
        let new_irt = t.secret(&format!("SECRET-new-irt-{name}"));
        let at = t.secret(&format!("SECRET-at-{name}"));
        mock_mint_for(
            &t,
            &app_id,
            &old_pat,
            ResponseTemplate::new(401).set_body_json(webex_error("expired")),
        )
        .await;
        t.mock_refresh(
            &client_id,
            &rt,
            token_response(&new_pat, 3600 * 12, Some((&new_irt, 86_400 * 90))),
        )
        .await;
        mock_mint_for(
            &t,
            &app_id,
            &new_pat,
            token_response(&at, 3600 * 24 * 14, Some(("SECRET-sa-rt", 86_400 * 90))),
        )
        .await;
        t.secret("SECRET-sa-rt");

        let out = t.run(&["--json", "status"]);
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
        let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let l3 = &v["levels"][2];
        assert_eq!(l3["available"], true, "{name}: {l3}");
        // `status` names the layout level 3 will use (the contract's own
        // nested layout needs no note).
        if !client_key.starts_with("integration.") {
            let notes = v["notes"].to_string();
            let named = format!("tokenManager.{{{client_key}");
            assert!(notes.contains(&named), "{name}: {notes}");
        }

        let out = t.run(&["refresh"]);
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
        assert_eq!(
            t.env_values()["WEBEX_SERVICE_APP_ACCESS_TOKEN"],
            at,
            "{name}"
        );
        let after: Value =
            serde_json::from_str(&std::fs::read_to_string(t.config_path()).unwrap()).unwrap();
        let tm = &after["tokenManager"];
        assert_eq!(tm["personalAccessToken"], json!(new_pat), "{name}");
        let rt_now = rt_key.split('.').fold(tm, |v, k| &v[k]);
        assert_eq!(
            rt_now,
            &json!(new_irt),
            "{name}: renewed into the layout in use"
        );
        // Every key that was there is unchanged, but the two renewed ones.
        let (mut before_keys, mut after_keys) = (Vec::new(), Vec::new());
        flatten(&cfg, "", &mut before_keys);
        flatten(&after, "", &mut after_keys);
        let renewed = [
            ".tokenManager.personalAccessToken".to_string(),
            format!(".tokenManager.{rt_key}"),
        ];
        for (k, v) in before_keys {
            if renewed.contains(&k) {
                continue;
            }
            let now = after_keys.iter().find(|(a, _)| *a == k).map(|(_, v)| v);
            assert_eq!(now, Some(&v), "{name}: {k} changed");
        }
    }
}

#[tokio::test]
async fn a_pasted_personal_token_is_tried_although_the_old_one_expired() {
    let mut t = TestEnv::new().await;
    let pasted = t.secret("SECRET-pasted-portal-token");
    let at = t.secret("SECRET-access-from-pasted");
    // webex-token stored the old token's expiry (now passed) with its
    // fingerprint; a person then pasted a fresh portal token.
    let mut cfg = default_config(false);
    cfg["tokenManager"]["personalAccessToken"] = json!(pasted);
    cfg["tokenManager"]["personalAccessTokenExpiresAt"] = json!(in_secs(-3600));
    cfg["tokenManager"]["personalAccessTokenFingerprint"] =
        json!(webex_token::secret::fingerprint_str(PAT));
    t.write_config(&cfg);
    t.mock_mint(&pasted, token_response(&at, 3600 * 24, None))
        .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(t.env_values()["WEBEX_SERVICE_APP_ACCESS_TOKEN"], at);
    assert_eq!(
        t.count("POST", &format!("/v1/applications/{APP_ID}/token"))
            .await,
        1
    );
}

#[tokio::test]
async fn python_dotenv_quoting_is_read_and_kept() {
    let mut t = TestEnv::new().await;
    let at = t.secret("SECRET-access-next-to-python-quotes");
    let motto = "MOTTO='it\\'s fine'\n";
    t.write_env(&format!(
        "{motto}WEBEX_SERVICE_APP_ACCESS_TOKEN='{OLD_ACCESS}'\nWEBEX_SERVICE_APP_ACCESS_TOKEN_EXPIRES_AT='{}'\nWEBEX_SERVICE_APP_REFRESH_TOKEN='{OLD_REFRESH}'\n",
        in_secs(-60)
    ));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&at, 3600 * 24, None),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = t.read_env();
    assert!(text.starts_with(motto), "{text}");
    assert!(text.contains(&at));
}

#[tokio::test]
async fn an_env_expiry_does_not_vouch_for_a_token_another_tool_wrote() {
    let mut t = TestEnv::new().await;
    let at = t.secret("SECRET-access-written-by-webex-token");
    t.write_env(&env_with(
        OLD_ACCESS,
        Some(&in_secs(-60)),
        Some(OLD_REFRESH),
    ));
    t.mock_refresh(
        SA_CLIENT_ID,
        OLD_REFRESH,
        token_response(&at, 3600 * 24 * 14, None),
    )
    .await;
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The file carries one comment tying the expiries to their tokens; a
    // .env reader sees only the four keys.
    let text = t.read_env();
    assert_eq!(
        text.matches("# webex-token: expiries above are for")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(t.env_values().len(), 4, "{text}");
    // A fresh token answers from the file with no request.
    let out = t.run_allowing(&["token"], &[&at]);
    assert_eq!(code(&out), 0);
    let before = t.requests().await.len();
    // Another tool replaces the token line and leaves the expiry behind.
    let other = t.secret("SECRET-token-from-another-tool");
    std::fs::write(t.env_path(), text.replace(&at, &other)).unwrap();
    t.mock_validate(&other, 200).await;
    let out = t.run_allowing(&["token"], &[&other]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), other);
    let gets = t
        .requests()
        .await
        .iter()
        .skip(before)
        .filter(|r| r.url.path() == "/v1/dataSources")
        .count();
    assert_eq!(
        gets, 1,
        "the stale expiry must not be trusted: the token is checked"
    );
    // A second refresh keeps one mark, updated.
    let out = t.run(&["refresh", "--force"]);
    assert!(matches!(code(&out), 0 | 4), "{}", stderr(&out));
    assert!(
        t.read_env()
            .matches("# webex-token: expiries above are for")
            .count()
            <= 1
    );
}
