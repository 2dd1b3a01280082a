//! Several orgs: one service app authorized by many customer orgs
//! (`serviceApp.orgs`), against webex-sim with the real binary.

use crate::common::{code, stderr, stdout};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;
use tempfile::TempDir;
use webex_sim::{Sim, SimOptions};

struct OrgsEnv {
    sim: Sim,
    dir: TempDir,
}

impl OrgsEnv {
    /// A simulator with `n` authorized orgs and the demo config listing
    /// them (`org1`, `org2`, ...), no env files yet.
    fn new(opts: SimOptions) -> OrgsEnv {
        let sim = Sim::start(opts).unwrap();
        let dir = tempfile::tempdir().unwrap();
        sim.write_demo_files(dir.path()).unwrap();
        // Only the config: every org starts without tokens.
        let _ = std::fs::remove_file(dir.path().join(".env"));
        OrgsEnv { sim, dir }
    }

    fn config(&self) -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.dir.path().join("token-config.json")).unwrap(),
        )
        .unwrap()
    }

    fn write_config(&self, v: &Value) {
        std::fs::write(
            self.dir.path().join("token-config.json"),
            serde_json::to_vec_pretty(v).unwrap(),
        )
        .unwrap();
    }

    fn org_names(&self) -> Vec<String> {
        let cfg = self.config();
        let Some(orgs) = cfg["serviceApp"]["orgs"].as_array() else {
            return Vec::new();
        };
        orgs.iter()
            .filter_map(|o| o["name"].as_str().map(str::to_string))
            .collect()
    }

    fn env_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!(".env.{name}"))
    }

    fn env_value(&self, name: &str, key: &str) -> Option<String> {
        dotenvy::from_path_iter(self.env_path(name))
            .ok()?
            .map(|r| r.unwrap())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn access_token(&self, name: &str) -> Option<String> {
        self.env_value(name, "WEBEX_SERVICE_APP_ACCESS_TOKEN")
    }

    /// Every secret in the config and in every org's env file.
    fn secrets(&self) -> Vec<String> {
        let c = self.config();
        let mut out: Vec<String> = [
            &c["serviceApp"]["clientSecret"],
            &c["tokenManager"]["personalAccessToken"],
            &c["tokenManager"]["integration"]["clientSecret"],
            &c["tokenManager"]["integration"]["refreshToken"],
        ]
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .filter(|s| !s.is_empty())
        .collect();
        for name in self.org_names() {
            for key in [
                "WEBEX_SERVICE_APP_ACCESS_TOKEN",
                "WEBEX_SERVICE_APP_REFRESH_TOKEN",
            ] {
                out.extend(self.env_value(&name, key).filter(|s| !s.is_empty()));
            }
        }
        out
    }

    fn cmd(&self) -> Command {
        crate::common::scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), self.dir.path())
    }

    /// Runs the binary; no secret (before or after) may appear in its
    /// output, except `allowed` on stdout.
    fn run_allowing(&self, args: &[&str], allowed: &[&str]) -> Output {
        let before = self.secrets();
        let out = self.cmd().args(args).output().unwrap();
        let (o, e) = (stdout(&out), stderr(&out));
        for s in before.iter().chain(self.secrets().iter()) {
            assert!(!e.contains(s.as_str()), "secret leaked on stderr:\n{e}");
            if !allowed.contains(&s.as_str()) {
                assert!(!o.contains(s.as_str()), "secret leaked on stdout:\n{o}");
            }
        }
        out
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_allowing(args, &[])
    }
}

#[test]
fn refresh_mints_one_token_per_org_into_its_own_env_file() {
    let t = OrgsEnv::new(SimOptions::default().with_org_count(4));
    let names = t.org_names();
    assert_eq!(names, ["org1", "org2", "org3", "org4"]);
    let ids = t.sim.orgs();

    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (line, name) in lines.iter().zip(&names) {
        assert!(
            line.starts_with(&format!("{name}: ok: refreshed via level 2")),
            "{text}"
        );
    }
    assert_eq!(
        t.sim.count(
            "POST",
            &format!("/v1/applications/{}/token", t.sim.credentials().app_id)
        ),
        4
    );
    for (name, id) in names.iter().zip(&ids) {
        let token = t.access_token(name).expect("each org has its env file");
        assert_eq!(&t.sim.token_info(&token).unwrap().org_id, id, "{name}");
    }
    // The `--env-file` path itself is not written.
    assert!(!t.dir.path().join(".env").exists());

    // Working now: each org's token is only checked (a GET each), none minted.
    t.sim.clear_requests();
    let out = t.run(&["--json", "refresh"]);
    assert_eq!(code(&out), 0);
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["command"], "refresh");
    assert_eq!(v["ok"], true);
    let orgs = v["orgs"].as_array().unwrap();
    assert_eq!(orgs.len(), 4);
    for ((o, name), id) in orgs.iter().zip(&names).zip(&ids) {
        assert_eq!(o["org"], name.as_str());
        assert_eq!(o["targetOrgId"], id.as_str());
        assert_eq!(o["ok"], true);
        assert!(
            o["envFile"]
                .as_str()
                .unwrap()
                .ends_with(&format!(".env.{name}"))
        );
    }
    let sent = t.sim.requests();
    assert_eq!(sent.len(), 4);
    assert!(sent.iter().all(|r| r.method == "GET"), "{sent:?}");
    t.sim.clear_requests();

    // `token` and `exec` need one org: by name or by id.
    let org3 = t.access_token("org3").unwrap();
    let out = t.run_allowing(&["token", "--org", "org3"], &[&org3]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), org3);
    let org2 = t.access_token("org2").unwrap();
    let out = t.run_allowing(&["token", "--org", &ids[1]], &[&org2]);
    assert_eq!(stdout(&out).trim(), org2);
    let out = t.run_allowing(
        &[
            "exec",
            "--org",
            "org4",
            "--",
            "sh",
            "-c",
            "printf %s \"$WEBEX_SERVICE_APP_ACCESS_TOKEN\"",
        ],
        &[&t.access_token("org4").unwrap()],
    );
    assert_eq!(stdout(&out), t.access_token("org4").unwrap());

    for args in [
        vec!["token"],
        vec!["token", "--all-orgs"],
        vec!["token", "--org", "org1", "--org", "org2"],
        vec!["exec", "--", "true"],
        vec!["refresh", "--org", "nope"],
        vec!["status", "--org", "nope"],
    ] {
        let out = t.run(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("org1, org2, org3, org4"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    assert_eq!(
        t.sim.requests().len(),
        0,
        "fresh tokens, usage errors: no request"
    );
}

#[test]
fn an_org_that_did_not_authorize_the_app_fails_alone() {
    let t = OrgsEnv::new(SimOptions::default().with_org_count(3));
    let mut cfg = t.config();
    cfg["serviceApp"]["orgs"].as_array_mut().unwrap().insert(
        1,
        serde_json::json!({"name": "stranger", "targetOrgId": webex_sim::random_org_id()}),
    );
    t.write_config(&cfg);
    let before = "# kept as it is\nWEBEX_SERVICE_APP_ACCESS_TOKEN=\n";
    std::fs::write(t.env_path("stranger"), before).unwrap();

    let out = t.run(&["refresh"]);
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(code(&out) == 4 || code(&out) == 3, "{o}\n{e}");
    assert!(o.contains("stranger: error:"), "{o}");
    assert!(e.contains("1 of 4 orgs could not be refreshed"), "{e}");
    assert!(e.contains("stranger:"), "{e}");
    // The hint points at the org's own entry, not the single-org key.
    assert!(
        e.contains("this org's `targetOrgId` in `serviceApp.orgs`"),
        "{e}"
    );
    for name in ["org1", "org2", "org3"] {
        assert!(
            o.contains(&format!("{name}: ok: refreshed via level 2")),
            "{o}"
        );
        assert!(t.access_token(name).is_some(), "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(t.env_path("stranger")).unwrap(),
        before
    );

    // `--json`: each org's own object, the failure with its exit code.
    let out = t.run(&["--json", "refresh"]);
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["exitCode"], code(&out));
    let bad = &v["orgs"][1];
    assert_eq!(bad["org"], "stranger");
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["exitCode"], code(&out));
    assert!(bad["error"]["message"].as_str().is_some());
    assert_eq!(v["orgs"][0]["ok"], true);

    // `--org` picks the good ones only: exit 0.
    let out = t.run(&["refresh", "--org", "org1", "--org", "org3"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2);
}

#[test]
fn an_expired_personal_token_is_renewed_once_for_all_orgs() {
    let t = OrgsEnv::new(SimOptions {
        personal_ttl: Duration::from_secs(60),
        latency: Duration::from_millis(30),
        ..SimOptions::default().with_org_count(6)
    });
    t.sim.advance_clock(Duration::from_secs(120));
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    // One integration refresh (level 3) for the whole run.
    assert_eq!(t.sim.count("POST", "/v1/access_token"), 1);
    let app = t.sim.credentials().app_id;
    let mints: Vec<_> = t
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path == format!("/v1/applications/{app}/token") && r.status == 200)
        .collect();
    assert_eq!(mints.len(), 6, "one successful mint per org");
    for (name, id) in t.org_names().iter().zip(t.sim.orgs()) {
        let token = t.access_token(name).unwrap();
        assert_eq!(t.sim.token_info(&token).unwrap().org_id, id);
    }
}

#[test]
fn requests_in_flight_stay_within_concurrency() {
    let t = OrgsEnv::new(SimOptions {
        latency: Duration::from_millis(80),
        ..SimOptions::default().with_org_count(12)
    });
    let out = t.run(&["refresh", "--concurrency", "3"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let most = t.sim.max_in_flight();
    assert!(most <= 3, "more than --concurrency 3 in flight ({most})");
    assert!(most >= 2, "orgs were not worked in parallel ({most})");
    assert_eq!(stdout(&out).lines().count(), 12);
}

#[test]
fn a_bad_orgs_list_is_a_config_error_naming_the_field() {
    let t = OrgsEnv::new(SimOptions::default().with_org_count(2));
    for (orgs, field) in [
        (
            serde_json::json!([{"name": "a b", "targetOrgId": "x"}]),
            "serviceApp.orgs[0].name",
        ),
        (
            serde_json::json!([{"name": "a", "targetOrgId": "x"}, {"name": "a", "targetOrgId": "y"}]),
            "serviceApp.orgs[1].name",
        ),
        (
            serde_json::json!([{"name": "a"}]),
            "serviceApp.orgs[0].targetOrgId",
        ),
        (serde_json::json!([]), "serviceApp.orgs"),
        (serde_json::json!({"name": "a"}), "serviceApp.orgs"),
    ] {
        let mut cfg = t.config();
        cfg["serviceApp"]["orgs"] = orgs;
        t.write_config(&cfg);
        let out = t.run(&["refresh"]);
        assert_eq!(code(&out), 3, "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("`{field}`")),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn status_has_a_row_per_org_and_a_section_per_org_with_wide() {
    let t = OrgsEnv::new(SimOptions::default().with_org_count(3));
    let out = t.run(&["refresh", "--org", "org1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = t.run(&["status"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    // A header, a row per org, the pointer to the detail.
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].starts_with("ORG") && lines[0].contains("ACCESS TOKEN"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("org1 ") && lines[1].contains(" in "),
        "{text}"
    );
    assert!(
        lines[2].starts_with("org2 ") && lines[2].contains("none"),
        "{text}"
    );
    assert!(lines[4].contains("status --wide"), "{text}");
    // --wide, or naming the orgs, gives the full report of each.
    let wide = stdout(&t.run(&["status", "--wide"]));
    assert_eq!(wide.matches("refresh levels").count(), 3, "{wide}");
    let named = stdout(&t.run(&["--org", "org1", "--org", "org2", "status"]));
    assert_eq!(named.matches("refresh levels").count(), 2, "{named}");
}

#[test]
fn status_has_a_section_per_org_and_check_covers_every_org() {
    let t = OrgsEnv::new(SimOptions::default().with_org_count(3));
    let ids = t.sim.orgs();
    // Before any refresh: every org reported, nothing written.
    let out = t.run(&["status", "--wide"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for (name, id) in t.org_names().iter().zip(&ids) {
        assert!(
            stdout(&out).contains(&format!("org {name} ({id})")),
            "{}",
            stdout(&out)
        );
    }
    assert!(stdout(&out).contains("(not created yet)"));
    assert!(!t.env_path("org1").exists());

    let out = t.run(&["refresh", "--org", "org1", "--org", "org3"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = t.run(&["--json", "status"]);
    assert_eq!(code(&out), 0);
    crate::json_schema::assert_valid("orgs", &out);
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let orgs = v["orgs"].as_array().unwrap();
    assert_eq!(orgs.len(), 3);
    let exists: Vec<bool> = orgs
        .iter()
        .map(|o| o["envFileExists"].as_bool().unwrap())
        .collect();
    assert_eq!(exists, [true, false, true]);
    assert_eq!(orgs[1]["targetOrgId"], ids[1].as_str());

    // The demo config's integration refresh token has no known expiry, so
    // every org fails the check (exit 5), each named.
    let out = t.run(&["status", "--check", "365d"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("3 of 3 orgs failed"), "{e}");
    for name in ["org1", "org2", "org3"] {
        assert!(e.contains(&format!("  {name}: ")), "{e}");
    }
    // Org1's service-app refresh token (90 days) is within a year: its own
    // line says so.
    assert!(e.contains("service-app refresh token expires"), "{e}");
    let out = t.run(&["status", "--check", "1h", "--org", "org3"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(stderr(&out).contains("1 of 1 orgs failed"));
    assert!(!stdout(&out).contains("org org1"));
    assert!(!stderr(&out).contains("org1"));
}

#[test]
fn datasources_list_covers_every_org_and_extend_takes_one() {
    let t = OrgsEnv::new(SimOptions::default().with_org_count(3));
    let ids = t.sim.orgs();
    // write_demo_files registered demo data sources in the first org; add
    // one per org so each org's listing is its own.
    let mut mine = Vec::new();
    for id in &ids {
        mine.push(
            t.sim
                .add_data_source_in(id, webex_sim::NewDataSource::default())
                .unwrap(),
        );
    }
    let out = t.run(&["--json", "datasources", "list"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let orgs = v["orgs"].as_array().unwrap();
    assert_eq!(orgs.len(), 3);
    for ((o, id), ds) in orgs.iter().zip(&ids).zip(&mine) {
        assert_eq!(o["targetOrgId"], id.as_str());
        let listed: Vec<&str> = o["dataSources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap())
            .collect();
        assert!(listed.contains(&ds.as_str()), "{listed:?}");
        assert_eq!(listed.len(), t.sim.data_sources_in(id).len());
        // Another org's data source is never listed here.
        for other in mine.iter().filter(|m| *m != ds) {
            assert!(!listed.contains(&other.as_str()));
        }
    }
    // Each org's session refreshed its own env file.
    for name in ["org1", "org2", "org3"] {
        assert!(t.access_token(name).is_some(), "{name}");
    }

    // `show` and `extend` work on one org.
    let out = t.run(&["datasources", "show", &mine[1]]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("org1, org2, org3"));
    let out = t.run(&["--json", "datasources", "show", &mine[1], "--org", "org2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Ids belong to one org.
    let out = t.run(&["datasources", "extend", &mine[0]]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // `--all` renews in every org, each with its own token.
    t.sim.clear_requests();
    let out = t.run(&[
        "--json",
        "datasources",
        "extend",
        "--all",
        "--min-valid",
        "100d",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let orgs = v["orgs"].as_array().unwrap();
    assert_eq!(orgs.len(), 3);
    for (o, id) in orgs.iter().zip(&ids) {
        assert_eq!(o["targetOrgId"], id.as_str());
        assert_eq!(
            o["summary"]["extended"].as_u64().unwrap() as usize,
            t.sim.data_sources_in(id).len()
        );
    }
    let all_puts = t
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    let all_sources: usize = ids.iter().map(|id| t.sim.data_sources_in(id).len()).sum();
    assert_eq!(all_puts, all_sources);
    let out = t.run(&[
        "datasources",
        "extend",
        "--all",
        "--dry-run",
        "--min-valid",
        "100d",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for name in ["org1", "org2", "org3"] {
        assert!(
            stdout(&out).contains(&format!("org {name} (")),
            "{}",
            stdout(&out)
        );
    }
    t.sim.clear_requests();
    let out = t.run(&[
        "datasources",
        "extend",
        "--all",
        "--min-valid",
        "100d",
        "--org",
        "org3",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let puts: Vec<_> = t
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    let org3: Vec<String> = t
        .sim
        .data_sources_in(&ids[2])
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(puts.len(), org3.len());
    for r in &puts {
        let id = r.path.rsplit('/').next().unwrap();
        assert!(org3.iter().any(|o| o == id), "PUT outside org3: {}", r.path);
    }
}

#[test]
fn extend_over_orgs_runs_orgs_side_by_side_within_concurrency() {
    let t = OrgsEnv::new(SimOptions {
        latency: Duration::from_millis(80),
        ..SimOptions::default().with_org_count(12)
    });
    // Tokens first (not measured), then one due data source per org.
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for id in t.sim.orgs() {
        t.sim
            .add_data_source_in(
                &id,
                webex_sim::NewDataSource {
                    expires_in: Duration::from_secs(600),
                    ..webex_sim::NewDataSource::default()
                },
            )
            .unwrap();
    }
    t.sim.clear_requests();
    t.sim.reset_max_in_flight();
    let out = t.run(&[
        "--json",
        "datasources",
        "extend",
        "--all",
        "--concurrency",
        "4",
    ]);
    assert!(matches!(code(&out), 0), "{}", stderr(&out));
    let most = t.sim.max_in_flight();
    assert!(most <= 4, "more than --concurrency 4 in flight ({most})");
    assert!(most >= 3, "orgs were renewed one at a time ({most})");
    let puts = t
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert!(puts >= 12, "every org's due source renewed ({puts} PUTs)");
}

/// Trust round 3, item 5: walls between tenants. Two orgs whose env files
/// are one file (however it is spelled), an env file that is the config or
/// another org's lock or audit log, or a repeated targetOrgId: exit 3
/// naming both, before any request, and no file written.
#[test]
fn orgs_sharing_a_file_or_an_org_id_are_refused_before_any_request() {
    let t = OrgsEnv::new(SimOptions::default().with_org_count(2));
    let base = t.config();
    let ids: Vec<String> = base["serviceApp"]["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["targetOrgId"].as_str().unwrap().to_string())
        .collect();
    std::fs::create_dir(t.dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(t.dir.path().join("real.env"), t.dir.path().join("link.env"))
        .unwrap();
    let org = |name: &str, id: &str, env: Option<&str>| {
        let mut o = serde_json::json!({"name": name, "targetOrgId": id});
        if let Some(e) = env {
            o["envFile"] = e.into();
        }
        o
    };
    for (orgs, field, needle) in [
        (
            vec![
                org("a", &ids[0], Some("shared.env")),
                org("b", &ids[1], Some("./shared.env")),
            ],
            "serviceApp.orgs[1].envFile",
            "org `a`",
        ),
        (
            vec![
                org("a", &ids[0], Some("sub/../shared.env")),
                org("b", &ids[1], Some("shared.env")),
            ],
            "serviceApp.orgs[1].envFile",
            "same file",
        ),
        (
            vec![
                org("a", &ids[0], Some("real.env")),
                org("b", &ids[1], Some("link.env")),
            ],
            "serviceApp.orgs[1].envFile",
            "same file",
        ),
        (
            vec![
                org("a", &ids[0], Some("token-config.json")),
                org("b", &ids[1], None),
            ],
            "serviceApp.orgs[0].envFile",
            "config file",
        ),
        (
            vec![
                org("a", &ids[0], None),
                org("b", &ids[1], Some(".env.a.lock")),
            ],
            "serviceApp.orgs[1].envFile",
            "lock of org `a`",
        ),
        (
            vec![
                org("a", &ids[0], None),
                org("b", &ids[1], Some(".env.a.audit.jsonl")),
            ],
            "serviceApp.orgs[1].envFile",
            "audit log of org `a`",
        ),
        (
            vec![org("a", &ids[0], None), org("b", &ids[0], None)],
            "serviceApp.orgs[1].targetOrgId",
            "org `a`",
        ),
    ] {
        let mut cfg = base.clone();
        cfg["serviceApp"]["orgs"] = serde_json::Value::Array(orgs);
        t.write_config(&cfg);
        let config_before = std::fs::read(t.dir.path().join("token-config.json")).unwrap();
        let requests_before = t.sim.requests().len();
        for args in [&["refresh"][..], &["token", "--org", "b"][..]] {
            let out = t.run(args);
            assert_eq!(
                code(&out),
                3,
                "{args:?}: {}{}\n{cfg}",
                stdout(&out),
                stderr(&out)
            );
            let e = stderr(&out);
            assert!(e.contains(&format!("`{field}`")), "{args:?}: {e}");
            assert!(e.contains(needle), "{args:?}: {e}");
            assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
        }
        assert_eq!(
            t.sim.requests().len(),
            requests_before,
            "a request was sent"
        );
        assert_eq!(
            std::fs::read(t.dir.path().join("token-config.json")).unwrap(),
            config_before
        );
        for f in ["shared.env", "real.env", ".env.a", ".env.b"] {
            assert!(!t.dir.path().join(f).exists(), "{f} was written");
        }
    }
}

#[test]
fn org_flags_before_and_after_the_command_combine() {
    let t = OrgsEnv::new(SimOptions::default().with_org_count(3));
    let out = t.run(&["--org", "org1", "refresh", "--org", "org3"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("org1: ") && text.contains("org3: "), "{text}");
    assert!(t.access_token("org1").is_some() && t.access_token("org3").is_some());
    assert!(t.access_token("org2").is_none(), "org2 was not asked for");
    // A flag with one value, given on both sides: refused, nothing done.
    let out = t.run(&["--env-file", "a.env", "status", "--env-file", "b.env"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("--env-file is given both before and after the subcommand"),
        "{}",
        stderr(&out)
    );
}

/// A sweep over 40 orgs on a pseudo-terminal (`script` from util-linux
/// gives the run a terminal for stdin, stdout and stderr): a progress bar
/// with counts, then the total line. Without a terminal (the same run with
/// pipes), stderr stays empty and stdout is the per-org lines only.
#[test]
fn a_40_org_sweep_shows_progress_and_a_total_on_a_terminal_only() {
    let t = OrgsEnv::new(SimOptions {
        latency: Duration::from_millis(20),
        ..SimOptions::default().with_org_count(40)
    });
    let bin = assert_cmd::cargo::cargo_bin("webex-token");
    let out = crate::common::scrubbed("script", t.dir.path())
        .args(["-qec", &format!("{} refresh", bin.display()), "/dev/null"])
        .env("COLUMNS", "100")
        // The terminal `script` gives is a real one, whatever TERM this
        // test runs under (CI may have none, or `dumb`).
        .env("TERM", "xterm")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let screen = stdout(&out);
    // The bar counts up ("/40 orgs") and is cleared before the results.
    assert!(screen.contains("/40 orgs"), "{screen}");
    assert!(screen.contains("\u{1b}[2K"), "the bar is cleared: {screen}");
    let last = screen.trim_end().lines().last().unwrap_or_default();
    assert_eq!(last.trim(), "40 orgs: 40 refreshed", "{screen}");
    assert_eq!(screen.matches("org40: ").count(), 1);

    // The same run without a terminal: nothing but the per-org lines.
    let out = t.run(&["refresh"]);
    assert_eq!(code(&out), 0);
    assert_eq!(stderr(&out), "");
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 40, "{text}");
    assert!(!text.contains("orgs:") && !text.contains("/40"), "{text}");
    // Nor with -q on a terminal.
    let out = crate::common::scrubbed("script", t.dir.path())
        .args([
            "-qec",
            &format!("{} -q refresh", bin.display()),
            "/dev/null",
        ])
        .env("TERM", "xterm")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    assert_eq!(stdout(&out), "", "-q on a terminal prints nothing");
}

#[test]
fn datasources_list_has_a_row_per_source_over_several_orgs() {
    let t = OrgsEnv::new(SimOptions::default().with_org_count(3));
    let out = t.run(&["datasources", "list"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    // A header, two demo sources per org, the pointer to the detail.
    assert_eq!(lines.len(), 8, "{text}");
    assert!(
        lines[0].starts_with("ORG") && lines[0].contains("TOKEN"),
        "{text}"
    );
    assert_eq!(lines.iter().filter(|l| l.starts_with("org2 ")).count(), 2);
    assert!(lines[7].starts_with("6 data sources in 3 orgs"), "{text}");
    let wide = stdout(&t.run(&["datasources", "list", "--wide"]));
    assert_eq!(wide.matches("audience  ").count(), 6, "{wide}");
    let named = stdout(&t.run(&["--org", "org3", "datasources", "list"]));
    assert!(
        named.contains("  2 data sources") && !named.contains("ORG "),
        "{named}"
    );
}
