//! One service app authorized by many orgs: tokens per org, data sources per
//! org, and `Link: rel="next"` paging of `GET /v1/dataSources`.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use webex_sim::{NewDataSource, Sim, SimOptions, TokenKind};

use common::*;

const HOUR: Duration = Duration::from_secs(3600);

fn mint(s: &Sim, pat: &str, org: &str) -> Reply {
    let c = s.credentials();
    send_json(
        "POST",
        &format!("{}/applications/{}/token", s.base_url(), c.app_id),
        Some(pat),
        &json!({"clientId": c.service_client_id, "clientSecret": c.service_client_secret, "targetOrgId": org}),
    )
}

fn org_uuid(org_id: &str) -> String {
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(org_id)
        .unwrap();
    String::from_utf8(raw)
        .unwrap()
        .strip_prefix("ciscospark://us/ORGANIZATION/")
        .unwrap()
        .to_string()
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn default_is_one_org_and_other_orgs_are_forbidden() {
    let s = Sim::start(SimOptions::default()).unwrap();
    assert_eq!(s.orgs(), vec![s.credentials().target_org_id]);
    let pat = s.issue_personal_token(HOUR);
    assert_eq!(mint(&s, &pat, &webex_sim::random_org_id()).status, 403);
    assert_eq!(mint(&s, &pat, &s.credentials().target_org_id).status, 200);
    // an empty list is the default too
    let s2 = Sim::start(SimOptions {
        orgs: vec![],
        ..SimOptions::default()
    })
    .unwrap();
    assert_eq!(s2.orgs(), vec![s.credentials().target_org_id]);
    // a malformed org id is refused at start
    assert!(
        Sim::start(SimOptions {
            orgs: vec!["acme".into()],
            ..SimOptions::default()
        })
        .is_err()
    );
}

#[test]
fn tokens_and_data_sources_are_per_org() {
    let s = Sim::start(SimOptions::default().with_org_count(3)).unwrap();
    let orgs = s.orgs();
    assert_eq!(orgs.len(), 3);
    assert_eq!(orgs[0], s.credentials().target_org_id);
    assert_eq!(orgs.iter().collect::<HashSet<_>>().len(), 3);
    let pat = s.issue_personal_token(HOUR);

    // a token pair per org; tokens end with their org's uuid and remember the org
    let mut pairs = Vec::new();
    for org in &orgs {
        let r = mint(&s, &pat, org);
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        let a = v["access_token"].as_str().unwrap().to_string();
        let rt = v["refresh_token"].as_str().unwrap().to_string();
        assert!(a.ends_with(&format!("_PF84_{}", org_uuid(org))));
        assert_eq!(s.token_info(&a).unwrap().org_id, *org);
        assert_eq!(s.token_info(&rt).unwrap().org_id, *org);
        pairs.push((a, rt));
    }
    assert_eq!(s.token_info(&pat).unwrap().org_id, orgs[0]);

    // data sources: two in org2, one in org1 (the default org)
    let d1 = s.add_data_source(NewDataSource::default());
    let d2a = s
        .add_data_source_in(&orgs[1], NewDataSource::default())
        .unwrap();
    let d2b = s
        .add_data_source_in(&orgs[1], NewDataSource::default())
        .unwrap();
    assert_eq!(
        s.add_data_source_in(&webex_sim::random_org_id(), NewDataSource::default()),
        None
    );
    assert_eq!(s.data_sources().len(), 3);
    assert_eq!(s.data_sources_in(&orgs[1]).len(), 2);
    assert_eq!(s.data_sources_in(&orgs[2]).len(), 0);

    let list = |tok: &str| get(&format!("{}/dataSources", s.base_url()), Some(tok));
    assert_eq!(ids(&list(&pairs[0].0).json()), vec![d1.clone()]);
    assert_eq!(
        ids(&list(&pairs[1].0).json()),
        vec![d2a.clone(), d2b.clone()]
    );
    assert!(ids(&list(&pairs[2].0).json()).is_empty());
    let one = get(
        &format!("{}/dataSources/{d2a}", s.base_url()),
        Some(&pairs[1].0),
    );
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["orgId"], orgs[1].as_str());
    let jws = one.json()["jwsToken"].as_str().unwrap().to_string();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jws.split('.').nth(1).unwrap())
        .unwrap();
    let payload: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(payload["com.cisco.org.uuid"], org_uuid(&orgs[1]).as_str());

    // another org's data source is not found, for GET, PUT and DELETE
    let url = format!("{}/dataSources/{d2a}", s.base_url());
    assert_eq!(get(&url, Some(&pairs[0].0)).status, 404);
    let put = send_json(
        "PUT",
        &url,
        Some(&pairs[2].0),
        &json!({"nonce": "n-cross-org", "tokenLifetimeMinutes": 60}),
    );
    assert_eq!(put.status, 404);
    assert_eq!(
        request(
            "DELETE",
            &url,
            &[("Authorization", &format!("Bearer {}", pairs[0].0))],
            None
        )
        .unwrap()
        .status,
        404
    );
    // ...but works for its own org
    let put = send_json(
        "PUT",
        &url,
        Some(&pairs[1].0),
        &json!({"nonce": "n-own-org", "tokenLifetimeMinutes": 60}),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["orgId"], orgs[1].as_str());

    // register lands in the token's org
    let reg = send_json(
        "POST",
        &format!("{}/dataSources", s.base_url()),
        Some(&pairs[2].0),
        &json!({"schemaId": "s", "url": "https://x.example/d", "audience": "a",
                "subject": "b", "nonce": "n-org3", "tokenLifetimeMinutes": 30}),
    );
    assert_eq!(reg.status, 200, "{}", reg.body);
    assert_eq!(reg.json()["orgId"], orgs[2].as_str());
    assert_eq!(s.data_sources_in(&orgs[2]).len(), 1);
    assert_eq!(s.data_sources_in(&orgs[0]).len(), 1);

    // a refresh keeps the org
    let c = s.credentials();
    let r = post_form(
        &format!("{}/access_token", s.base_url()),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &c.service_client_id),
            ("client_secret", &c.service_client_secret),
            ("refresh_token", &pairs[2].1),
        ],
    );
    assert_eq!(r.status, 200);
    let a = r.json()["access_token"].as_str().unwrap().to_string();
    let info = s.token_info(&a).unwrap();
    assert_eq!(
        (info.kind, info.org_id.as_str()),
        (TokenKind::ServiceAccess, orgs[2].as_str())
    );
    assert_eq!(ids(&list(&a).json()).len(), 1);
    // /people/me names the token's org
    let me = get(&format!("{}/people/me", s.base_url()), Some(&a)).json();
    assert_eq!(me["orgId"], orgs[2].as_str());
    // the library helper issues for an org too
    let (a3, _) = s.issue_service_tokens_in(&orgs[1], HOUR, HOUR).unwrap();
    assert_eq!(ids(&list(&a3).json()).len(), 2);
    assert!(
        s.issue_service_tokens_in(&webex_sim::random_org_id(), HOUR, HOUR)
            .is_none()
    );
}

#[test]
fn orgs_through_the_library_and_control_api() {
    let s = Sim::start(SimOptions::default()).unwrap();
    let root = s.root_url();
    let added = s.add_orgs(2);
    assert_eq!(added.len(), 2);
    let own = webex_sim::random_org_id();
    assert_eq!(s.add_org(&own), Ok(()));
    assert_eq!(s.add_org(&own), Ok(()), "idempotent");
    assert!(s.add_org("not-an-org").is_err());
    assert_eq!(s.orgs().len(), 4);

    let more = send_json(
        "POST",
        &format!("{root}/_sim/orgs"),
        None,
        &json!({"count": 3}),
    );
    assert_eq!(more.status, 200, "{}", more.body);
    assert_eq!(more.json()["items"].as_array().unwrap().len(), 3);
    let explicit = webex_sim::random_org_id();
    let one = send_json(
        "POST",
        &format!("{root}/_sim/orgs"),
        None,
        &json!({"orgId": explicit}),
    );
    assert_eq!(one.json()["items"][0]["orgId"], explicit.as_str());
    assert_eq!(one.json()["items"][0]["name"], "org8");
    for bad in [json!({"orgId": "acme"}), json!({}), json!({"count": "x"})] {
        assert_eq!(
            send_json("POST", &format!("{root}/_sim/orgs"), None, &bad).status,
            400,
            "{bad}"
        );
    }
    let listed = get(&format!("{root}/_sim/orgs"), None).json();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 8);
    assert_eq!(items[0]["name"], "org1");
    assert_eq!(items[0]["orgId"], s.credentials().target_org_id.as_str());

    // a new org can be minted for at once
    let pat = s.issue_personal_token(HOUR);
    assert_eq!(mint(&s, &pat, &explicit).status, 200);

    // data sources and service tokens through the control API, per org
    let ds = send_json(
        "POST",
        &format!("{root}/_sim/datasources"),
        None,
        &json!({"orgId": explicit, "subject": "ctl"}),
    );
    assert_eq!(ds.status, 200, "{}", ds.body);
    assert_eq!(ds.json()["orgId"], explicit.as_str());
    let unknown = send_json(
        "POST",
        &format!("{root}/_sim/datasources"),
        None,
        &json!({"orgId": webex_sim::random_org_id()}),
    );
    assert_eq!(unknown.status, 400);
    let first = send_json(
        "POST",
        &format!("{root}/_sim/datasources"),
        None,
        &json!({}),
    );
    assert_eq!(
        first.json()["orgId"],
        s.credentials().target_org_id.as_str()
    );
    let only = get(
        &format!("{root}/_sim/datasources?orgId={}", enc(&explicit)),
        None,
    )
    .json();
    assert_eq!(only["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        get(&format!("{root}/_sim/datasources"), None).json()["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let issued = send_json(
        "POST",
        &format!("{root}/_sim/issue"),
        None,
        &json!({"kind": "service", "orgId": explicit}),
    )
    .json();
    let a = issued["access_token"].as_str().unwrap();
    let v = get(&format!("{}/dataSources", s.base_url()), Some(a)).json();
    assert_eq!(v["items"][0]["subject"], "ctl");
}

#[test]
fn data_source_list_pages_with_link_next() {
    let s = Sim::start(SimOptions {
        page_size: 2,
        ..SimOptions::default()
    })
    .unwrap();
    let want: Vec<String> = (0..5)
        .map(|i| {
            s.add_data_source(NewDataSource {
                subject: format!("ds{i}"),
                ..NewDataSource::default()
            })
        })
        .collect();
    let (a, _) = s.issue_service_tokens(HOUR, HOUR);

    // default page size 2: 2 + 2 + 1, following Link: rel="next"
    let mut url = format!("{}/dataSources", s.base_url());
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let r = get(&url, Some(&a));
        assert_eq!(r.status, 200, "{}", r.body);
        pages += 1;
        got.extend(ids(&r.json()));
        match r.header("link") {
            Some(link) => {
                let (target, rel) = link.split_once(';').unwrap();
                assert_eq!(rel.trim(), "rel=\"next\"");
                url = target
                    .trim()
                    .strip_prefix('<')
                    .and_then(|t| t.strip_suffix('>'))
                    .unwrap()
                    .to_string();
                assert!(
                    url.starts_with(&format!("{}/dataSources?", s.base_url())),
                    "{url}"
                );
                assert!(query_param(&url, "cursor").is_some());
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(got, want);

    // max overrides the page size; the next link keeps it
    let r = get(&format!("{}/dataSources?max=4", s.base_url()), Some(&a));
    assert_eq!(ids(&r.json()).len(), 4);
    let link = r.header("link").unwrap();
    assert!(link.contains("max=4"), "{link}");
    let r = get(&format!("{}/dataSources?max=5", s.base_url()), Some(&a));
    assert_eq!(ids(&r.json()).len(), 5);
    assert_eq!(r.header("link"), None, "nothing left: no next link");
    // set_page_size / settings change the default
    s.set_page_size(100);
    let r = get(&format!("{}/dataSources", s.base_url()), Some(&a));
    assert_eq!((ids(&r.json()).len(), r.header("link")), (5, None));
    let set = send_json(
        "POST",
        &format!("{}/_sim/settings", s.root_url()),
        None,
        &json!({"pageSize": 1}),
    );
    assert_eq!(set.json()["pageSize"], 1);
    assert!(
        get(&format!("{}/dataSources", s.base_url()), Some(&a))
            .header("link")
            .is_some()
    );

    // bad max / cursor
    for q in [
        "max=0",
        "max=-1",
        "max=ten",
        "cursor=%21%21",
        "cursor=b2Zmc2V0Onh4",
    ] {
        let r = get(&format!("{}/dataSources?{q}", s.base_url()), Some(&a));
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(r.json()["message"].is_string());
    }
    // a cursor past the end is an empty page
    let past = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("offset:99");
    let r = get(
        &format!("{}/dataSources?cursor={past}", s.base_url()),
        Some(&a),
    );
    assert_eq!((r.status, ids(&r.json()).len()), (200, 0));
}
