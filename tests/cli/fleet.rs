//! `--store etcd://`: several "hosts" (separate dirs, env files and
//! processes) sharing one service app's tokens through a real 3-member etcd
//! cluster on loopback, against webex-sim.

use crate::common::{code, free_port, stderr, stdout};
use crate::etcd_cluster::EtcdCluster;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use webex_sim::{Fault, FaultKind, Sim, SimOptions, TokenKind};

const ACCESS: &str = "WEBEX_SERVICE_APP_ACCESS_TOKEN";
const REFRESH: &str = "WEBEX_SERVICE_APP_REFRESH_TOKEN";
/// Short leases so take-overs happen within the tests' seconds.
const LOCK_TTL: &str = "2s";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A simulator, an etcd cluster and `n` hosts, each a directory with its
/// own copy of one config file (as a fleet's hosts would have).
struct Fleet {
    sim: Sim,
    cluster: EtcdCluster,
    hosts: Vec<TempDir>,
    prefix: String,
}

impl Fleet {
    /// A working store (one `refresh`), then every token revoked at Webex
    /// (the service-app pair, the personal token, the integration refresh
    /// token), as after the integration was de-authorized.
    fn refreshed_then_revoked(&self) {
        assert_eq!(code(&self.run(0, &["refresh"])), 0);
        for kind in [
            TokenKind::ServiceAccess,
            TokenKind::ServiceRefresh,
            TokenKind::Personal,
            TokenKind::IntegrationRefresh,
        ] {
            self.sim.expire_all(kind);
        }
    }

    fn new(opts: SimOptions, n: usize) -> Option<Fleet> {
        let cluster = EtcdCluster::start_or_skip(3)?;
        let sim = Sim::start(opts).unwrap();
        let first = tempfile::tempdir().unwrap();
        sim.write_demo_files(first.path()).unwrap();
        let config = std::fs::read(first.path().join("token-config.json")).unwrap();
        let mut hosts = vec![first];
        for _ in 1..n {
            let d = tempfile::tempdir().unwrap();
            write_private(&d.path().join("token-config.json"), &config);
            hosts.push(d);
        }
        Some(Fleet {
            sim,
            cluster,
            hosts,
            prefix: format!("fleet-{}", uuid_ish()),
        })
    }

    fn dir(&self, host: usize) -> &Path {
        self.hosts[host].path()
    }

    fn env_file(&self, host: usize) -> PathBuf {
        self.dir(host).join(".env")
    }

    /// `webex-token` on `host` with the etcd store (no other setting
    /// inherited from the test's environment).
    fn cmd(&self, host: usize) -> Command {
        let mut c =
            crate::common::scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), self.dir(host));
        c.env("WEBEX_TOKEN_STORE", self.cluster.url(&self.prefix))
            .env("WEBEX_TOKEN_LOCK_TTL", LOCK_TTL)
            .env("WEBEX_TOKEN_ETCD_TIMEOUT", "2s")
            .env("WEBEX_TOKEN_LOCK_TIMEOUT", "60s");
        c
    }

    fn run(&self, host: usize, args: &[&str]) -> Output {
        let out = self.cmd(host).args(args).output().unwrap();
        self.assert_clean(&out);
        out
    }

    fn spawn(&self, host: usize, args: &[&str]) -> Child {
        self.cmd(host)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `refresh` on hosts `0..n` at once; each must succeed, quietly.
    fn refresh_together(&self, n: usize) {
        let children: Vec<Child> = (0..n).map(|h| self.spawn(h, &["refresh"])).collect();
        for (h, c) in children.into_iter().enumerate() {
            let out = wait_output(c);
            assert_eq!(code(&out), 0, "host {h}: {}", stderr(&out));
            self.assert_clean(&out);
        }
    }

    fn env_value(&self, host: usize, key: &str) -> Option<String> {
        let it = dotenvy::from_path_iter(self.env_file(host)).ok()?;
        it.filter_map(Result::ok)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// What etcd holds under this fleet's prefix: (key, JSON value).
    fn stored(&self) -> Vec<(String, Value)> {
        self.cluster
            .get_prefix(&format!("/{}/", self.prefix))
            .into_iter()
            .map(|(k, v)| {
                let json = serde_json::from_str(&v).unwrap_or(Value::Null);
                (k, json)
            })
            .collect()
    }

    /// The access token etcd holds for the single org.
    fn stored_access(&self) -> Option<String> {
        self.stored()
            .into_iter()
            .find(|(k, _)| k.contains("/tokens/"))
            .and_then(|(_, v)| v["accessToken"].as_str().map(String::from))
    }

    /// Every secret any host's files or the store hold.
    fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for h in 0..self.hosts.len() {
            if let Ok(text) = std::fs::read_to_string(self.dir(h).join("token-config.json"))
                && let Ok(c) = serde_json::from_str::<Value>(&text)
            {
                for v in [
                    &c["serviceApp"]["clientSecret"],
                    &c["tokenManager"]["personalAccessToken"],
                    &c["tokenManager"]["integration"]["clientSecret"],
                    &c["tokenManager"]["integration"]["refreshToken"],
                ] {
                    out.extend(v.as_str().map(String::from));
                }
            }
            out.extend(self.env_value(h, ACCESS));
            out.extend(self.env_value(h, REFRESH));
        }
        out.sort();
        out.dedup();
        out
    }

    fn assert_clean(&self, out: &Output) {
        let (o, e) = (stdout(out), stderr(out));
        for s in self.secrets() {
            assert!(
                !e.contains(&s) && (!o.contains(&s) || o.trim() == s),
                "secret leaked:\n{o}\n{e}"
            );
        }
    }

    fn token_requests(&self) -> Vec<webex_sim::RecordedRequest> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| {
                r.method == "POST" && (r.path == "/v1/access_token" || r.path.ends_with("/token"))
            })
            .collect()
    }

    /// Service-app refreshes (level 1) and mints (level 2) answered 200.
    fn service_issues(&self) -> usize {
        let c = self.sim.credentials();
        self.token_requests()
            .iter()
            .filter(|r| r.status == 200)
            .filter(|r| {
                r.path.ends_with("/token")
                    || r.form_value("client_id") == Some(c.service_client_id.as_str())
            })
            .count()
    }

    /// Integration refreshes (level 3) sent.
    fn level3(&self) -> usize {
        let c = self.sim.credentials();
        self.token_requests()
            .iter()
            .filter(|r| r.form_value("client_id") == Some(c.integration_client_id.as_str()))
            .count()
    }

    fn mint_path(&self) -> String {
        format!("/v1/applications/{}/token", self.sim.credentials().app_id)
    }
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
}

fn uuid_ish() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

fn wait_output(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

fn signal(child: &Child, sig: &str) {
    crate::common::send_signal(child.id(), sig);
}

/// Waits until the simulator has recorded a request matching `pred`.
fn wait_for_request(
    sim: &Sim,
    within: Duration,
    pred: impl Fn(&webex_sim::RecordedRequest) -> bool,
) {
    let end = Instant::now() + within;
    while !sim.requests().iter().any(&pred) {
        assert!(Instant::now() < end, "the expected request never came");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_empty_store_is_seeded_from_a_hosts_files_and_ten_hosts_refresh_once() {
    let Some(f) = Fleet::new(SimOptions::default(), 10) else {
        return;
    };
    // Host 0 worked alone with the files store until now.
    let out = f
        .cmd(0)
        .env("WEBEX_TOKEN_STORE", "files")
        .arg("refresh")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let local = f.env_value(0, ACCESS).unwrap();
    assert!(f.stored().is_empty());

    // Its first run with etcd seeds the store with its tokens (no request
    // issues new ones: the token works).
    f.sim.clear_requests();
    let out = f.run(0, &["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(f.service_issues(), 0);
    assert_eq!(f.stored_access().as_deref(), Some(local.as_str()));
    let stored = f.stored();
    let manager = stored
        .iter()
        .find(|(k, _)| k.ends_with("/manager"))
        .expect("token-manager state seeded");
    let config: Value =
        serde_json::from_slice(&std::fs::read(f.dir(0).join("token-config.json")).unwrap())
            .unwrap();
    assert_eq!(
        manager.1["personalAccessToken"],
        config["tokenManager"]["personalAccessToken"]
    );
    assert!(
        stored.iter().all(|(k, _)| !k.contains("/lock/")),
        "no lock key left behind: {stored:?}"
    );

    // The token dies; ten hosts refresh at once: one refresh in all, and
    // every host's export holds the new token.
    f.sim.expire_token(&local);
    f.sim.clear_requests();
    f.refresh_together(10);
    assert_eq!(f.service_issues(), 1, "{:#?}", f.token_requests());
    let new = f.stored_access().unwrap();
    assert_ne!(new, local);
    assert!(f.sim.is_token_valid(&new));
    for h in 0..10 {
        assert_eq!(
            f.env_value(h, ACCESS).as_deref(),
            Some(new.as_str()),
            "host {h}"
        );
        let text = std::fs::read_to_string(f.env_file(h)).unwrap();
        assert!(text.contains("# webex-token: exported from etcd, revision"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f.env_file(h))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "host {h}");
    }
}

#[test]
fn a_fresh_export_answers_token_with_no_etcd_call() {
    let Some(f) = Fleet::new(SimOptions::default(), 2) else {
        return;
    };
    assert_eq!(code(&f.run(0, &["refresh"])), 0);
    // A dry run on another host reads the store and writes nothing, not
    // even its export.
    let out = f.run(1, &["refresh", "--dry-run"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!f.env_file(1).exists());
    f.sim.clear_requests();
    // Nothing listens at this address: any etcd call would fail.
    let out = f
        .cmd(0)
        .env("WEBEX_TOKEN_STORE", "etcd://127.0.0.1:9/nowhere")
        .arg("token")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), f.env_value(0, ACCESS).unwrap());
    assert!(f.sim.requests().is_empty());
}

#[test]
fn a_killed_lock_holder_is_taken_over_after_the_lease_and_nothing_is_stranded() {
    let Some(f) = Fleet::new(
        SimOptions {
            rotate_refresh_tokens: true,
            ..SimOptions::default()
        },
        2,
    ) else {
        return;
    };
    assert_eq!(code(&f.run(0, &["refresh"])), 0);
    assert_eq!(code(&f.run(1, &["refresh"])), 0);
    let old_rt = f.env_value(0, REFRESH).unwrap();
    // Host 0's refresh is processed (the refresh token rotated, the old one
    // revoked) but its answer is held back; host 0 dies meanwhile.
    f.sim.push_fault(
        Fault::new("/v1/access_token", FaultKind::DelayAfter(secs(5))).with_method("POST"),
    );
    f.sim.clear_requests();
    let mut a = f.spawn(0, &["refresh", "--force"]);
    wait_for_request(&f.sim, secs(10), |r| r.path == "/v1/access_token");
    signal(&a, "KILL");
    let _ = a.wait();
    let started = Instant::now();
    let out = f.run(1, &["refresh", "--force"]);
    let took = started.elapsed();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // It waited for the lease (2 s) and recovered from the rotation the
    // dead host consumed through level 2.
    assert!(took >= Duration::from_millis(500), "took {took:?}");
    assert!(!f.sim.is_token_valid(&old_rt));
    let new = f.stored_access().unwrap();
    assert!(f.sim.is_token_valid(&new));
    assert_eq!(f.env_value(1, ACCESS).as_deref(), Some(new.as_str()));
    let stored_rt = f
        .stored()
        .into_iter()
        .find(|(k, _)| k.contains("/tokens/"))
        .and_then(|(_, v)| v["refreshToken"].as_str().map(String::from))
        .unwrap();
    assert!(
        f.sim.is_token_valid(&stored_rt),
        "the stored refresh token works"
    );
}

#[test]
fn a_paused_host_past_its_lease_cannot_overwrite_newer_tokens() {
    let Some(f) = Fleet::new(SimOptions::default(), 2) else {
        return;
    };
    assert_eq!(code(&f.run(0, &["refresh"])), 0);
    assert_eq!(code(&f.run(1, &["refresh"])), 0);
    let export_before = std::fs::read(f.env_file(0)).unwrap();
    f.sim.push_fault(
        Fault::new("/v1/access_token", FaultKind::DelayAfter(secs(2))).with_method("POST"),
    );
    f.sim.clear_requests();
    let a = f.spawn(0, &["refresh", "--force"]);
    wait_for_request(&f.sim, secs(10), |r| r.path == "/v1/access_token");
    signal(&a, "STOP");
    // Past the lease: host 1 takes the lock and stores its own new token.
    std::thread::sleep(secs(4));
    let out = f.run(1, &["refresh", "--force"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let newer = f.stored_access().unwrap();
    signal(&a, "CONT");
    let out = wait_output(a);
    f.assert_clean(&out);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("lost the etcd lock"),
        "{}",
        stderr(&out)
    );
    assert_eq!(f.stored_access().as_deref(), Some(newer.as_str()));
    assert_eq!(
        std::fs::read(f.env_file(0)).unwrap(),
        export_before,
        "the late host's export is untouched"
    );
    // Its next run takes the store's token into its export.
    assert_eq!(code(&f.run(0, &["refresh"])), 0);
    assert_eq!(f.env_value(0, ACCESS).as_deref(), Some(newer.as_str()));
}

#[test]
fn one_member_down_still_works_and_quorum_lost_changes_nothing() {
    let Some(mut f) = Fleet::new(SimOptions::default(), 2) else {
        return;
    };
    assert_eq!(code(&f.run(0, &["refresh"])), 0);
    f.cluster.kill(0);
    let out = f.run(0, &["refresh", "--force"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let working = f.env_value(0, ACCESS).unwrap();
    assert_eq!(f.stored_access().as_deref(), Some(working.as_str()));

    f.cluster.kill(1);
    let export = std::fs::read(f.env_file(0)).unwrap();
    f.sim.clear_requests();
    let out = f.run(0, &["refresh", "--force"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not be reached"),
        "{}",
        stderr(&out)
    );
    assert!(f.sim.requests().is_empty(), "nothing sent to Webex");
    assert_eq!(std::fs::read(f.env_file(0)).unwrap(), export);
    // `token` still answers from the export, fresh or not.
    let out = f.run(0, &["token"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), working);
    let out = f.run(0, &["token", "--min-valid", "100d"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), working);
    assert!(stderr(&out).contains("handing over the stored one"));
    // So does `exec`: the child gets the export's token.
    let check = format!("test \"$WEBEX_SERVICE_APP_ACCESS_TOKEN\" = '{working}'");
    for min_valid in ["1h", "100d"] {
        let out = f.run(
            0,
            &["exec", "--min-valid", min_valid, "--", "sh", "-c", &check],
        );
        assert_eq!(code(&out), 0, "{min_valid}: {}", stderr(&out));
    }
    // A host with no export yet has nothing to serve.
    let out = f.run(1, &["token", "--min-valid", "100d"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn level_3_runs_once_across_the_fleet_and_every_org_mints_once() {
    let Some(f) = Fleet::new(SimOptions::default().with_org_count(3), 3) else {
        return;
    };
    assert_eq!(code(&f.run(0, &["refresh"])), 0);
    // Every service token and the personal token die: each org needs a
    // mint, and the mints need a renewed personal token.
    f.sim.expire_all(TokenKind::ServiceAccess);
    f.sim.expire_all(TokenKind::ServiceRefresh);
    f.sim.expire_all(TokenKind::Personal);
    f.sim.clear_requests();
    f.refresh_together(3);
    assert_eq!(f.level3(), 1, "{:#?}", f.token_requests());
    let mints = f
        .token_requests()
        .iter()
        .filter(|r| r.path == f.mint_path() && r.status == 200)
        .count();
    assert_eq!(mints, 3, "one mint per org");
    // Each org's export on every host holds that org's stored token.
    let stored = f.stored();
    let per_org: Vec<_> = stored
        .iter()
        .filter(|(k, _)| k.contains("/tokens/"))
        .collect();
    assert_eq!(per_org.len(), 3);
    for h in 0..3 {
        for (i, name) in ["org1", "org2", "org3"].iter().enumerate() {
            let env = f.dir(h).join(format!(".env.{name}"));
            let it = dotenvy::from_path_iter(&env).unwrap();
            let access = it
                .filter_map(Result::ok)
                .find(|(k, _)| k == ACCESS)
                .map(|(_, v)| v)
                .unwrap();
            assert!(f.sim.is_token_valid(&access), "host {h} org {i}");
            assert!(
                per_org
                    .iter()
                    .any(|(_, v)| v["accessToken"].as_str() == Some(access.as_str())),
                "host {h} {name}"
            );
        }
    }
}

#[test]
fn watchers_on_three_hosts_refresh_once_per_expiry() {
    let ttl = 4;
    let Some(f) = Fleet::new(
        SimOptions {
            access_ttl: secs(ttl),
            ..SimOptions::default()
        },
        3,
    ) else {
        return;
    };
    assert_eq!(code(&f.run(0, &["refresh"])), 0);
    f.sim.clear_requests();
    let args = [
        "--json",
        "watch",
        "--min-valid",
        "1s",
        "--check-interval",
        "1h",
    ];
    let watchers: Vec<Child> = (0..3).map(|h| f.spawn(h, &args)).collect();
    std::thread::sleep(secs(11));
    let mut refreshed_events = 0;
    for (h, w) in watchers.into_iter().enumerate() {
        signal(&w, "TERM");
        let out = wait_output(w);
        assert_eq!(code(&out), 0, "host {h}: {}", stderr(&out));
        f.assert_clean(&out);
        refreshed_events += stdout(&out)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["event"] == "refreshed")
            .count();
    }
    let issued: Vec<_> = f
        .token_requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    assert_eq!(issued.len(), refreshed_events);
    assert!(issued.len() >= 2, "{} refreshes in 11 s", issued.len());
    // Three hosts each refreshing on their own would issue about three
    // times as many; one per expiry (a token stored for at least 3 s,
    // renewed 1 s + jitter before its end) is at most one every 1.5 s.
    assert!(
        issued.len() <= 7,
        "{} refreshes in 11 s with {ttl} s tokens",
        issued.len()
    );
    for pair in issued.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at).unwrap();
        assert!(
            gap >= Duration::from_millis(700),
            "two refreshes {gap:?} apart"
        );
    }
    // Every host's export holds the store's (working) token.
    let stored = f.stored_access().unwrap();
    for h in 0..3 {
        let v = f.env_value(h, ACCESS).unwrap();
        assert!(f.sim.is_token_valid(&v) || v == stored, "host {h}");
    }
}

#[test]
fn bad_store_settings_are_usage_or_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        crate::common::scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    for bad in [
        "etcd://127.0.0.1:2379",
        "etcd://127.0.0.1:2379/",
        "etcd://127.0.0.1/x",
        "redis://127.0.0.1:6379/x",
        "etcd://127.0.0.1:0/x",
    ] {
        let out = run(&["--store", bad, "status"]);
        assert_eq!(code(&out), 2, "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("--store"), "{bad}: {}", stderr(&out));
    }
    // Too short, and (trust round 3) absurdly long: refused at parse time,
    // never sent to etcd to fail there as an outage.
    for ttl in ["1s", "999999999d", "2h"] {
        let out = run(&[
            "--store",
            "etcd://127.0.0.1:2379/x",
            "--lock-ttl",
            ttl,
            "status",
        ]);
        assert_eq!(code(&out), 2, "{ttl}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--lock-ttl"),
            "{ttl}: {}",
            stderr(&out)
        );
    }
    let out = run(&[
        "--store",
        "etcd://127.0.0.1:2379/x",
        "--etcd-user",
        "u",
        "status",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--etcd-password-file"));
}

/// A single etcd member serving TLS (a CA made by openssl for the test)
/// with authentication on and a user limited to one prefix.
struct SecureEtcd {
    child: Child,
    dir: TempDir,
    endpoint: String,
}

impl Drop for SecureEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SecureEtcd {
    fn start() -> Option<SecureEtcd> {
        if !EtcdCluster::available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        sh(
            d,
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
               -keyout ca.key -out ca.pem -days 2 -subj /CN=webex-token-test-ca 2>/dev/null
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
               -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
             printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nkeyUsage=digitalSignature\\nextendedKeyUsage=serverAuth\\n' > ext
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
               -out server.pem -days 2 -extfile ext 2>/dev/null",
        );
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("127.0.0.1:{client}");
        let child = Command::new("etcd")
            .current_dir(d)
            .args(["--name", "secure", "--data-dir", "data"])
            .arg(format!("--listen-client-urls=https://{endpoint}"))
            .arg(format!("--advertise-client-urls=https://{endpoint}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=secure=http://127.0.0.1:{peer}"))
            .args(["--cert-file", "server.pem", "--key-file", "server.key"])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let e = SecureEtcd {
            child,
            dir,
            endpoint,
        };
        // Wait until it answers, then: root, auth on, a user for one prefix.
        let end = Instant::now() + secs(20);
        while !e.ctl(&["endpoint", "health"]).status.success() {
            assert!(Instant::now() < end, "the TLS etcd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        for args in [
            &["user", "add", "root", "--new-user-password=root-pw"][..],
            &["role", "add", "wt"],
            &[
                "role",
                "grant-permission",
                "wt",
                "--prefix=true",
                "readwrite",
                "/secure/",
            ],
            &["user", "add", "wt", "--new-user-password=wt-pw"],
            &["user", "grant-role", "wt", "wt"],
            &["auth", "enable"],
        ] {
            let out = e.ctl(args);
            assert!(out.status.success(), "etcdctl {args:?}: {}", stderr(&out));
        }
        std::fs::write(d.join("password"), "wt-pw\n").unwrap();
        std::fs::write(d.join("wrong-password"), "nope\n").unwrap();
        Some(e)
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=https://{}", self.endpoint))
            .arg(format!(
                "--cacert={}",
                self.dir.path().join("ca.pem").display()
            ))
            .arg("--dial-timeout=2s")
            .args(args)
            .output()
            .unwrap()
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

#[test]
fn etcds_with_a_ca_and_a_user_limited_to_the_prefix() {
    let Some(e) = SecureEtcd::start() else {
        return;
    };
    let sim = Sim::start(SimOptions::default()).unwrap();
    let host = tempfile::tempdir().unwrap();
    sim.write_demo_files(host.path()).unwrap();
    let run = |extra: &[&str]| {
        let mut c =
            crate::common::scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), host.path());
        c.env("WEBEX_TOKEN_ETCD_TIMEOUT", "3s")
            .arg("--store")
            .arg(format!("etcds://{}/secure", e.endpoint))
            .args(extra);
        c.output().unwrap()
    };
    let (ca, pw, bad) = (
        e.file("ca.pem"),
        e.file("password"),
        e.file("wrong-password"),
    );
    let out = run(&[
        "--etcd-ca",
        &ca,
        "--etcd-user",
        "wt",
        "--etcd-password-file",
        &pw,
        "refresh",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The same password as a systemd credential: no --etcd-password-file.
    let creds = tempfile::tempdir().unwrap();
    std::fs::copy(&pw, creds.path().join("etcd-password")).unwrap();
    let mut c = crate::common::scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), host.path());
    let out = c
        .env("WEBEX_TOKEN_ETCD_TIMEOUT", "3s")
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .arg("--store")
        .arg(format!("etcds://{}/secure", e.endpoint))
        .args(["--etcd-ca", &ca, "--etcd-user", "wt", "--json", "status"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("wt-pw") && !stdout(&out).contains("wt-pw"));
    let keys = e.ctl(&[
        "--user=root:root-pw",
        "get",
        "--prefix",
        "--keys-only",
        "/secure/",
    ]);
    assert!(stdout(&keys).contains("/tokens/"), "{}", stdout(&keys));
    assert!(!stderr(&out).contains("wt-pw"));

    // A wrong password, or a server certificate this host cannot verify:
    // exit 3 saying why, nothing written.
    let before = std::fs::read(host.path().join(".env")).unwrap();
    let out = run(&[
        "--etcd-ca",
        &ca,
        "--etcd-user",
        "wt",
        "--etcd-password-file",
        &bad,
        "refresh",
        "--force",
    ]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    assert!(stderr(&out).contains("user wt"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("nope"));
    // The right password for keys outside the user's prefix: exit 3 naming
    // the user and the prefix it was refused.
    let out = crate::common::scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), host.path())
        .env("WEBEX_TOKEN_ETCD_TIMEOUT", "3s")
        .arg("--store")
        .arg(format!("etcds://{}/elsewhere", e.endpoint))
        .args([
            "--etcd-ca",
            &ca,
            "--etcd-user",
            "wt",
            "--etcd-password-file",
            &pw,
        ])
        .args(["refresh", "--force"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("user wt") && stderr(&out).contains("/elsewhere/"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("wt-pw"));
    let out = run(&[
        "--etcd-user",
        "wt",
        "--etcd-password-file",
        &pw,
        "refresh",
        "--force",
    ]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
    assert_eq!(std::fs::read(host.path().join(".env")).unwrap(), before);
}

/// docs/reauthorize.md: every token revoked under a fleet of three
/// watchers; one of them (the holder of the etcd key `…/lock/reauth`) asks
/// the person, and every host recovers from the one approval (the others
/// see the new authorization in the store within seconds).
#[test]
fn three_hosts_ask_a_person_once_and_all_recover() {
    let Some(f) = Fleet::new(
        SimOptions {
            device_interval: secs(1),
            ..SimOptions::default()
        },
        3,
    ) else {
        return;
    };
    f.refreshed_then_revoked();
    // The default --check-interval (1h): the hosts not running the flow
    // learn of the approval from the store, not from their next check.
    let args = ["--json", "watch"];
    let watchers: Vec<Child> = (0..3).map(|h| f.spawn(h, &args)).collect();
    let asked = || f.sim.count("POST", "/v1/device/authorize");
    let end = Instant::now() + secs(30);
    while asked() == 0 {
        assert!(Instant::now() < end, "no host asked for a code");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every host has failed and asked by now (each fails its first tick;
    // 2 s lock wait): still one code.
    std::thread::sleep(secs(6));
    assert_eq!(asked(), 1, "one flow for the fleet");
    assert!(f.sim.approve_device(None).is_some());
    let end = Instant::now() + secs(30);
    while !(0..3).all(|h| {
        f.env_value(h, ACCESS)
            .is_some_and(|t| f.sim.is_token_valid(&t))
    }) {
        assert!(Instant::now() < end, "not every host recovered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut events = Vec::new();
    for (h, w) in watchers.into_iter().enumerate() {
        signal(&w, "TERM");
        let out = wait_output(w);
        assert_eq!(code(&out), 0, "host {h}: {}", stderr(&out));
        f.assert_clean(&out);
        events.extend(
            stdout(&out)
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|e| e["event"].as_str().map(String::from))
                .filter(|e| e.starts_with("reauth")),
        );
    }
    events.sort();
    assert_eq!(events, ["reauth_required", "reauthorized"]);
}

/// docs/reauthorize.md, fleets: the pending record lives in the etcd key
/// `…/reauth` too, so `status` on a host that is not asking shows the same
/// link and code, a flow taken over by another host goes on in the same
/// window, and once approved no host shows a pending re-authorization.
#[test]
fn every_host_shows_the_fleets_pending_code_and_a_taken_over_flow_resumes_its_window() {
    let Some(f) = Fleet::new(
        SimOptions {
            device_interval: secs(1),
            ..SimOptions::default()
        },
        3,
    ) else {
        return;
    };
    f.refreshed_then_revoked();
    let record_file = |h: usize| f.dir(h).join("token-config.json.reauth.json");
    let stored_record = || {
        f.stored()
            .into_iter()
            .find(|(k, _)| k.ends_with("/reauth"))
            .map(|(_, v)| v)
    };
    let status_reauth = |h: usize| {
        let out = f.run(h, &["--json", "status"]);
        let v: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
            panic!("host {h}: status --json: {e}: {}", stdout(&out));
        });
        v["reauth"].clone()
    };
    let asked = || f.sim.count("POST", "/v1/device/authorize");
    let args = ["--json", "watch", "--check-interval", "2s"];
    let mut watchers: Vec<Option<Child>> = (0..3).map(|h| Some(f.spawn(h, &args))).collect();
    let end = Instant::now() + secs(30);
    let holder = || (0..3).find(|&h| record_file(h).exists());
    while asked() == 0 || holder().is_none() {
        assert!(Instant::now() < end, "no host asked for a code");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The flow holder keeps its own copy, as on one host.
    let holder = holder().unwrap();
    let first: Value =
        serde_json::from_str(&std::fs::read_to_string(record_file(holder)).unwrap()).unwrap();
    assert_eq!(first["state"], "pending");
    assert_eq!(first["codesRequested"], 1);
    // A host that is not asking shows the same code.
    let other = (holder + 1) % 3;
    assert!(!record_file(other).exists());
    let shown = status_reauth(other);
    assert_eq!(shown["state"], "pending", "host {other}: {shown}");
    assert_eq!(shown["userCode"], first["userCode"]);
    assert_eq!(shown["verifyUrl"], first["verifyUrl"]);
    assert_eq!(shown["windowStartedAt"], first["windowStartedAt"]);
    // The key holds what the holder's file holds, never the device code.
    assert_eq!(stored_record().as_ref(), Some(&first));
    assert!(
        first
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.to_lowercase().contains("device")),
        "{first}"
    );

    // The holder stops: another host takes the flow over in the same window.
    let w = watchers[holder].take().unwrap();
    signal(&w, "TERM");
    let out = wait_output(w);
    assert_eq!(code(&out), 0, "host {holder}: {}", stderr(&out));
    f.assert_clean(&out);
    let end = Instant::now() + secs(30);
    while asked() < 2 || stored_record().is_none_or(|r| r["codesRequested"] != 2) {
        assert!(Instant::now() < end, "no other host took the flow over");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = stored_record().unwrap();
    assert_eq!(second["windowStartedAt"], first["windowStartedAt"]);
    assert_eq!(second["windowEndsAt"], first["windowEndsAt"]);
    assert_ne!(second["userCode"], first["userCode"]);
    let code_now = second["userCode"].as_str().unwrap().to_string();
    assert_eq!(status_reauth(holder)["userCode"], code_now.as_str());
    assert!(f.sim.approve_device(Some(&code_now)).is_some());

    let end = Instant::now() + secs(30);
    while !(0..3).filter(|&h| h != holder).all(|h| {
        f.env_value(h, ACCESS)
            .is_some_and(|t| f.sim.is_token_valid(&t))
    }) {
        assert!(Instant::now() < end, "not every host recovered");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        stored_record(),
        None,
        "the record key is gone once approved"
    );
    // Every host, the stopped one (whose own copy stays) included.
    for h in 0..3 {
        assert_eq!(status_reauth(h), Value::Null, "host {h}");
    }
    assert_eq!(asked(), 2);
    for (h, w) in watchers.into_iter().enumerate() {
        let Some(w) = w else { continue };
        signal(&w, "TERM");
        let out = wait_output(w);
        assert_eq!(code(&out), 0, "host {h}: {}", stderr(&out));
        f.assert_clean(&out);
    }
}

/// The etcd key `…/reauth` is read like the store's other values: one that
/// webex-token would not have written is ignored with a warning naming the
/// key (never fatal, never quoted); `setup-oauth` on any host removes it.
#[test]
fn a_bad_reauth_record_in_etcd_is_ignored_and_setup_oauth_removes_the_key() {
    let Some(f) = Fleet::new(SimOptions::default(), 2) else {
        return;
    };
    assert_eq!(code(&f.run(0, &["refresh"])), 0);
    let manager = f
        .stored()
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| k.ends_with("/manager"))
        .unwrap();
    let key = format!("{}/reauth", manager.trim_end_matches("/manager"));
    let status = |h: usize| {
        let out = f.run(h, &["--json", "status"]);
        assert_eq!(code(&out), 0, "host {h}: {}", stderr(&out));
        let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
        (v["reauth"].clone(), stderr(&out))
    };
    let record = |user_code: &str| {
        serde_json::json!({
            "state": "pending",
            "reason": "chain_rejected",
            "verifyUrl": format!("https://example.test/verify?userCode={user_code}"),
            "userCode": user_code,
            "codeExpiresAt": "2099-01-01T00:05:00Z",
            "windowStartedAt": "2099-01-01T00:00:00Z",
            "windowEndsAt": "2099-01-02T00:00:00Z",
            "codesRequested": 3,
            "lastRequestedAt": "2099-01-01T00:00:00Z",
        })
    };
    let mut escaping = record("ABCD");
    escaping["userCode"] = "AB\u{1b}[31mSENTINEL".into();
    for (value, named) in [
        ("not-json-SENTINEL".to_string(), "not JSON"),
        (
            r#"{"state":"pending","userCode":["SENTINEL"]}"#.to_string(),
            "not webex-token's",
        ),
        (escaping.to_string(), "`userCode`"),
    ] {
        f.cluster.etcdctl_ok(&["put", &key, &value]);
        let (shown, err) = status(1);
        assert_eq!(shown, Value::Null, "{value}");
        assert!(err.contains(&key) && err.contains(named), "{value}: {err}");
        assert!(!err.contains("SENTINEL"), "the value is not quoted: {err}");
    }
    // One another host wrote: shown here, though this host has no copy.
    f.cluster
        .etcdctl_ok(&["put", &key, &record("WXYZ-1234").to_string()]);
    let (shown, _) = status(1);
    assert_eq!(shown["userCode"], "WXYZ-1234");
    assert_eq!(shown["codesRequested"], 3);

    // A person authorizes the integration by hand on host 1: the fleet's
    // record is stale, and gone.
    let out = crate::common::setup_oauth_device_approved(f.cmd(1), &f.sim);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        f.stored().iter().all(|(k, _)| *k != key),
        "setup-oauth removes the key"
    );
    assert_eq!(status(0).0, Value::Null);
}

/// A person fixes the fleet on another host (pastes a new personal token
/// there and runs `refresh`): the flow holder's files do not change, but
/// it sees the store's new token before its next code, stops asking and
/// removes the fleet's record.
#[test]
fn a_flow_stops_when_another_host_authorizes_the_fleet() {
    let Some(f) = Fleet::new(
        SimOptions {
            device_interval: secs(1),
            device_code_ttl: secs(2),
            ..SimOptions::default()
        },
        2,
    ) else {
        return;
    };
    f.refreshed_then_revoked();
    let has_record = || f.stored().iter().any(|(k, _)| k.ends_with("/reauth"));
    let asked = || f.sim.count("POST", "/v1/device/authorize");
    let w = f.spawn(0, &["watch", "--check-interval", "2s"]);
    let end = Instant::now() + secs(30);
    while asked() == 0 || !has_record() {
        assert!(Instant::now() < end, "host 0 asked for no code");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Host 1: a new portal token pasted into its config, then `refresh`.
    let pasted = f.sim.issue_personal_token(secs(12 * 3600));
    let config_file = f.dir(1).join("token-config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&config_file).unwrap()).unwrap();
    c["tokenManager"]["personalAccessToken"] = Value::from(pasted);
    write_private(&config_file, &serde_json::to_vec_pretty(&c).unwrap());
    let out = f.run(1, &["refresh"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Codes live 2 s: within a few of them the holder has looked.
    let end = Instant::now() + secs(20);
    while has_record() {
        assert!(Instant::now() < end, "the flow goes on asking");
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = asked();
    // It asks no more: two more code lives pass without a request.
    std::thread::sleep(secs(5));
    assert_eq!(asked(), after);
    assert!(!has_record());
    signal(&w, "TERM");
    let out = wait_output(w);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    f.assert_clean(&out);
    assert!(
        stderr(&out).contains("authorized again meanwhile"),
        "{}",
        stderr(&out)
    );
}
