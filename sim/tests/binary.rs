//! The `webex-sim serve` binary and the `/_sim/` control API.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use common::*;

struct Server {
    child: Child,
    base: String,
    root: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_webex-sim"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim_end()
        .strip_prefix("webex-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:") && base.ends_with("/v1"));
    let root = base.trim_end_matches("/v1").to_string();
    Server { child, base, root }
}

fn ctl(s: &Server, method: &str, path: &str, body: Value) -> Reply {
    send_json(method, &format!("{}{path}", s.root), None, &body)
}

#[test]
fn init_writes_config_and_the_chain_works_end_to_end() {
    let dir = std::env::temp_dir().join(format!("webex-sim-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut s = serve(&["--access-ttl", "30s", "--init", dir.to_str().unwrap()]);
    let path = dir.join("token-config.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!dir.join(".env").exists());
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(cfg["apiBaseUrl"], s.base.as_str());
    let app = &cfg["serviceApp"];
    let tm = &cfg["tokenManager"];
    let pat = tm["personalAccessToken"].as_str().unwrap();
    let irt = tm["integration"]["refreshToken"].as_str().unwrap();

    // level 2: mint with the personal token
    let url = format!(
        "{}/applications/{}/token",
        s.base,
        app["appId"].as_str().unwrap()
    );
    let body = json!({"clientId": app["clientId"], "clientSecret": app["clientSecret"], "targetOrgId": app["targetOrgId"]});
    let r = send_json("POST", &url, Some(pat), &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["expires_in"], 30);
    let access = v["access_token"].as_str().unwrap().to_string();
    let list = get(&format!("{}/dataSources", s.base), Some(&access)).json();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    // expire every personal token → mint 401; integration refresh → new personal token
    let e = ctl(&s, "POST", "/_sim/expire", json!({"kind": "personal"})).json();
    assert!(e["expired"].as_u64().unwrap() >= 1);
    assert_eq!(send_json("POST", &url, Some(pat), &body).status, 401);
    let ir = post_form(
        &format!("{}/access_token", s.base),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", tm["integration"]["clientId"].as_str().unwrap()),
            (
                "client_secret",
                tm["integration"]["clientSecret"].as_str().unwrap(),
            ),
            ("refresh_token", irt),
        ],
    );
    assert_eq!(ir.status, 200);
    let pat2 = ir.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(send_json("POST", &url, Some(&pat2), &body).status, 200);

    // advance past the 30 s access lifetime
    assert_eq!(
        get(&format!("{}/dataSources", s.base), Some(&access)).status,
        200
    );
    ctl(&s, "POST", "/_sim/advance", json!({"seconds": 31}));
    assert_eq!(
        get(&format!("{}/dataSources", s.base), Some(&access)).status,
        401
    );

    // stats, requests, reset
    let stats = get(&format!("{}/_sim/stats", s.root), None).json();
    assert_eq!(stats["GET /v1/dataSources"], 3);
    assert_eq!(stats["POST /v1/access_token"], 1);
    let reqs = get(&format!("{}/_sim/requests", s.root), None).json();
    assert_eq!(reqs.as_array().unwrap().len(), 7);
    assert_eq!(reqs[0]["method"], "POST");
    assert_eq!(reqs[0]["status"], 200);
    ctl(&s, "POST", "/_sim/reset-stats", json!({}));
    assert_eq!(
        get(&format!("{}/_sim/stats", s.root), None).json(),
        json!({})
    );

    // log on stderr: one line per request, no whole tokens
    let _ = s.child.kill();
    let _ = s.child.wait();
    let mut err = String::new();
    s.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("GET /v1/dataSources"), "{err}");
    for secret in [pat, irt, access.as_str(), pat2.as_str()] {
        assert!(!err.contains(secret), "secret leaked into the log");
    }
    assert!(!err.contains(app["clientSecret"].as_str().unwrap()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn control_faults_revoke_deny_and_datasources() {
    let s = serve(&["--quiet", "--rotate-refresh-tokens"]);
    let creds = get(&format!("{}/_sim/credentials", s.root), None).json();
    let svc = ctl(
        &s,
        "POST",
        "/_sim/issue",
        json!({"kind": "service", "ttlSeconds": 600}),
    )
    .json();
    let access = svc["access_token"].as_str().unwrap();
    let rt = svc["refresh_token"].as_str().unwrap();

    // faults
    let f = json!({"path": "/v1/dataSources", "method": "GET", "times": 2, "kind": "status", "status": 503, "retryAfter": 1});
    assert_eq!(ctl(&s, "POST", "/_sim/fault", f).status, 200);
    for _ in 0..2 {
        let r = get(&format!("{}/dataSources", s.base), Some(access));
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    assert_eq!(
        get(&format!("{}/dataSources", s.base), Some(access)).status,
        200
    );
    ctl(
        &s,
        "POST",
        "/_sim/fault",
        json!({"path": "/v1/dataSources", "kind": "truncated"}),
    );
    let r = get(&format!("{}/dataSources", s.base), Some(access));
    assert_eq!(r.status, 200);
    assert!(serde_json::from_str::<Value>(&r.body).is_err());
    ctl(
        &s,
        "POST",
        "/_sim/fault",
        json!({"path": "/v1/dataSources", "kind": "delay", "ms": 300}),
    );
    let t = std::time::Instant::now();
    assert_eq!(
        get(&format!("{}/dataSources", s.base), Some(access)).status,
        200
    );
    assert!(t.elapsed().as_millis() >= 300);
    ctl(
        &s,
        "POST",
        "/_sim/fault",
        json!({"path": "/v1/dataSources", "kind": "close"}),
    );
    assert!(request("GET", &format!("{}/dataSources", s.base), &[], None).is_err());
    assert_eq!(
        ctl(
            &s,
            "POST",
            "/_sim/fault",
            json!({"kind": "bogus", "path": "/x"})
        )
        .status,
        400
    );

    // rotation through the binary flag
    let refresh = |rt: &str| {
        post_form(
            &format!("{}/access_token", s.base),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", creds["serviceClientId"].as_str().unwrap()),
                (
                    "client_secret",
                    creds["serviceClientSecret"].as_str().unwrap(),
                ),
                ("refresh_token", rt),
            ],
        )
    };
    let r = refresh(rt).json();
    assert_ne!(r["refresh_token"], rt);
    assert_eq!(refresh(rt).status, 400);

    // revoke
    ctl(&s, "POST", "/_sim/revoke", json!({"token": access}));
    assert_eq!(
        get(&format!("{}/dataSources", s.base), Some(access)).status,
        401
    );

    // authorize denied
    ctl(
        &s,
        "POST",
        "/_sim/authorize-denied",
        json!({"denied": true}),
    );
    let r = get(
        &format!(
            "{}/authorize?client_id={}&response_type=code&redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Fcallback&scope=spark%3Aapplications_token&state=s1",
            s.base,
            creds["integrationClientId"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(r.status, 302);
    assert_eq!(
        query_param(r.header("location").unwrap(), "error").as_deref(),
        Some("access_denied")
    );

    // data sources via control
    let ds = ctl(
        &s,
        "POST",
        "/_sim/datasources",
        json!({"subject": "near-expiry", "expiresInSeconds": 120}),
    )
    .json();
    assert_eq!(ds["subject"], "near-expiry");
    let all = get(&format!("{}/_sim/datasources", s.root), None).json();
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    assert_eq!(get(&format!("{}/_sim/nope", s.root), None).status, 404);
}

#[test]
fn orgs_latency_page_size_and_device_interval_flags() {
    let dir = std::env::temp_dir().join(format!("webex-sim-orgs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = serve(&[
        "--orgs",
        "3",
        "--latency",
        "50ms",
        "--page-size=1",
        "--device-interval",
        "2s",
        "--init",
        dir.to_str().unwrap(),
        "--quiet",
    ]);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("token-config.json")).unwrap())
            .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let app = &config["serviceApp"];
    let orgs = app["orgs"].as_array().unwrap();
    assert_eq!(orgs.len(), 3);
    assert_eq!(orgs[0]["name"], "org1");
    assert_eq!(orgs[2]["name"], "org3");
    assert_eq!(app["targetOrgId"], orgs[0]["targetOrgId"]);
    let listed = get(&format!("{}/_sim/orgs", s.root), None).json();
    for (i, o) in listed["items"].as_array().unwrap().iter().enumerate() {
        assert_eq!(o["orgId"], orgs[i]["targetOrgId"]);
        assert_eq!(o["dataSources"], 2, "two demo data sources per org");
    }
    let settings = get(&format!("{}/_sim/settings", s.root), None).json();
    assert_eq!(
        settings,
        json!({"latencyMs": 50.0, "pageSize": 1, "deviceIntervalSeconds": 2.0, "deviceCodeSeconds": 300.0})
    );

    // mint for the third org; its list pages one at a time, each answer late
    let pat = config["tokenManager"]["personalAccessToken"]
        .as_str()
        .unwrap();
    let r = send_json(
        "POST",
        &format!(
            "{}/applications/{}/token",
            s.base,
            app["appId"].as_str().unwrap()
        ),
        Some(pat),
        &json!({"clientId": app["clientId"], "clientSecret": app["clientSecret"],
                "targetOrgId": orgs[2]["targetOrgId"]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    let t = std::time::Instant::now();
    let page = get(&format!("{}/dataSources", s.base), Some(&access));
    assert!(t.elapsed() >= std::time::Duration::from_millis(50));
    assert_eq!(page.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(page.json()["items"][0]["orgId"], orgs[2]["targetOrgId"]);
    assert!(page.header("link").unwrap().ends_with("; rel=\"next\""));

    let integration = &config["tokenManager"]["integration"];
    let d = post_form(
        &format!("{}/device/authorize", s.base),
        &[
            ("client_id", integration["clientId"].as_str().unwrap()),
            ("scope", "spark:applications_token"),
        ],
    );
    assert_eq!(d.json()["interval"], 2);

    // one org (the default): no orgs list, as before
    let dir1 = std::env::temp_dir().join(format!("webex-sim-orgs1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir1);
    let _s1 = serve(&["--init", dir1.to_str().unwrap(), "--quiet"]);
    let config1: Value =
        serde_json::from_str(&std::fs::read_to_string(dir1.join("token-config.json")).unwrap())
            .unwrap();
    let _ = std::fs::remove_dir_all(&dir1);
    assert!(config1["serviceApp"].get("orgs").is_none());
}

#[test]
fn bad_flags_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_webex-sim"))
        .args(["serve", "--access-ttl", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    for bad in [
        &["--orgs", "0"][..],
        &["--orgs", "many"],
        &["--page-size", "0"],
        &["--latency", "fast"],
        &["--device-interval"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_webex-sim"))
            .arg("serve")
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_webex-sim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
}
