//! `--store etcd://`: what the store holds is checked before any host
//! exports it (trust round 3, item 15), a personal token pasted into a
//! host's config is newer than the store's (item 17), and level 3 says the
//! renewed state went to etcd. A real etcd member on loopback and
//! webex-sim; every output is scanned for every secret.

use crate::common::{code, stderr, stdout};
use crate::etcd_cluster::EtcdCluster;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tempfile::TempDir;
use webex_sim::{Sim, SimOptions, TokenKind};

const ACCESS: &str = "WEBEX_SERVICE_APP_ACCESS_TOKEN";
const REFRESH: &str = "WEBEX_SERVICE_APP_REFRESH_TOKEN";

/// One etcd member, the simulator and `n` hosts with copies of one config.
struct Hosts {
    sim: Sim,
    cluster: EtcdCluster,
    hosts: Vec<TempDir>,
    prefix: String,
    /// Values the tests put in etcd or configs that must never be shown.
    extra_secrets: std::cell::RefCell<Vec<String>>,
}

impl Hosts {
    fn new(n: usize) -> Option<Hosts> {
        let cluster = EtcdCluster::start_or_skip(1)?;
        let sim = Sim::start(SimOptions::default()).unwrap();
        let first = tempfile::tempdir().unwrap();
        sim.write_demo_files(first.path()).unwrap();
        let mut hosts = vec![first];
        for _ in 1..n {
            let d = tempfile::tempdir().unwrap();
            std::fs::copy(
                hosts[0].path().join("token-config.json"),
                d.path().join("token-config.json"),
            )
            .unwrap();
            hosts.push(d);
        }
        Some(Hosts {
            sim,
            cluster,
            hosts,
            prefix: format!("values-{}", std::process::id()),
            extra_secrets: Default::default(),
        })
    }

    /// [`new`](Self::new), then a first `refresh` on host 0 (which puts
    /// the state in etcd).
    fn refreshed(n: usize) -> Option<Hosts> {
        let f = Hosts::new(n)?;
        f.run_ok(0, &["refresh"]);
        Some(f)
    }

    fn dir(&self, h: usize) -> &Path {
        self.hosts[h].path()
    }

    fn env_file(&self, h: usize) -> PathBuf {
        self.dir(h).join(".env")
    }

    fn config_file(&self, h: usize) -> PathBuf {
        self.dir(h).join("token-config.json")
    }

    /// The binary on host `h`, with the store.
    fn cmd(&self, h: usize) -> Command {
        let mut c =
            crate::common::scrubbed(assert_cmd::cargo::cargo_bin("webex-token"), self.dir(h));
        c.env("WEBEX_TOKEN_STORE", self.cluster.url(&self.prefix))
            .env("WEBEX_TOKEN_ETCD_TIMEOUT", "3s");
        c
    }

    fn run(&self, h: usize, args: &[&str]) -> Output {
        let out = self
            .cmd(h)
            .env("WEBEX_TOKEN_LOCK_TIMEOUT", "30s")
            .args(args)
            .output()
            .unwrap();
        self.assert_clean(&out);
        out
    }

    /// `run`, which must exit 0.
    fn run_ok(&self, h: usize, args: &[&str]) -> Output {
        let out = self.run(h, args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        out
    }

    /// `refresh --mint` on host `h`, which must exit 0 having minted once:
    /// its output and the token it minted with.
    fn mint(&self, h: usize) -> (Output, String) {
        self.sim.clear_requests();
        let out = self.run_ok(h, &["refresh", "--mint"]);
        let mints = self.mints();
        assert_eq!(mints.len(), 1, "one mint");
        let bearer = mints[0].bearer().unwrap_or_default().to_string();
        (out, bearer)
    }

    /// A person pastes `token` as the personal token into host `h`'s config.
    fn paste_personal_token(&self, h: usize, token: &str) {
        let mut c = self.config(h);
        c["tokenManager"]["personalAccessToken"] = Value::from(token);
        std::fs::write(self.config_file(h), serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    }

    fn env_value(&self, h: usize, key: &str) -> Option<String> {
        dotenvy::from_path_iter(self.env_file(h))
            .ok()?
            .filter_map(Result::ok)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The etcd key whose name contains `part`, and its value.
    fn stored(&self, part: &str) -> (String, String) {
        self.cluster
            .get_prefix(&format!("/{}/", self.prefix))
            .into_iter()
            .find(|(k, _)| k.contains(part))
            .unwrap_or_else(|| panic!("no key with {part} under /{}/", self.prefix))
    }

    /// `stored`, its value parsed.
    fn stored_json(&self, part: &str) -> (String, Value) {
        let (k, v) = self.stored(part);
        (k, serde_json::from_str(&v).unwrap())
    }

    fn put(&self, key: &str, value: &str) {
        self.cluster.etcdctl_ok(&["put", "--", key, value]);
    }

    fn config(&self, h: usize) -> Value {
        serde_json::from_slice(&std::fs::read(self.config_file(h)).unwrap()).unwrap()
    }

    fn secrets(&self) -> Vec<String> {
        let mut out = self.extra_secrets.borrow().clone();
        for h in 0..self.hosts.len() {
            let c = self.config(h);
            for v in [
                &c["serviceApp"]["clientSecret"],
                &c["tokenManager"]["personalAccessToken"],
                &c["tokenManager"]["integration"]["clientSecret"],
                &c["tokenManager"]["integration"]["refreshToken"],
            ] {
                out.extend(v.as_str().map(String::from));
            }
            out.extend(self.env_value(h, REFRESH));
        }
        for (_, v) in self.cluster.get_prefix(&format!("/{}/", self.prefix)) {
            if let Ok(v) = serde_json::from_str::<Value>(&v) {
                for f in [
                    "refreshToken",
                    "personalAccessToken",
                    "integrationRefreshToken",
                ] {
                    out.extend(v[f].as_str().filter(|s| s.len() > 3).map(String::from));
                }
            }
        }
        out
    }

    /// No secret on stderr; on stdout only an access token alone (`token`).
    fn assert_clean(&self, out: &Output) {
        let (o, e) = (stdout(out), stderr(out));
        for s in self.secrets() {
            assert!(!e.contains(&s), "secret on stderr:\n{e}");
            assert!(!o.contains(&s), "secret on stdout:\n{o}");
        }
    }

    fn mints(&self) -> Vec<webex_sim::RecordedRequest> {
        let path = format!("/v1/applications/{}/token", self.sim.credentials().app_id);
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == path)
            .collect()
    }

    fn level3(&self) -> usize {
        let id = self.sim.credentials().integration_client_id;
        self.sim
            .requests()
            .iter()
            .filter(|r| r.form_value("client_id") == Some(id.as_str()))
            .count()
    }
}

#[test]
fn a_bad_value_in_etcd_is_exit_3_naming_the_key_and_the_export_is_untouched_until_fixed() {
    let Some(f) = Hosts::refreshed(1) else {
        return;
    };
    let (key, good) = f.stored("/tokens/");
    let doc: Value = serde_json::from_str(&good).unwrap();
    let rt = doc["refreshToken"].as_str().unwrap().to_string();
    let export = std::fs::read(f.env_file(0)).unwrap();

    let with = |field: &str, v: &str| {
        let mut d = doc.clone();
        d[field] = Value::from(v);
        d.to_string()
    };
    let bad_space = format!("{rt} tail");
    let bad_newline = format!("{rt}\nX=1");
    f.extra_secrets
        .borrow_mut()
        .extend([bad_space.clone(), bad_newline.clone()]);
    for (value, names) in [
        (with("refreshToken", &bad_space), "`refreshToken`"),
        (with("refreshToken", &bad_newline), "`refreshToken`"),
        (
            with("accessTokenExpiresAt", "in an hour"),
            "`accessTokenExpiresAt`",
        ),
        (good[..good.len() / 2].to_string(), "not JSON"),
    ] {
        f.put(&key, &value);
        for args in [
            &["refresh"][..],
            &["token", "--min-valid", "100d"],
            &["watch", "--once"],
        ] {
            let out = f.run(0, args);
            let err = stderr(&out);
            assert_eq!(code(&out), 3, "{args:?} with {names}: {err}");
            assert!(err.contains(&key), "names the key: {err}");
            assert!(err.contains(names), "names the field: {err}");
            assert!(stdout(&out).is_empty(), "{}", stdout(&out));
            assert!(
                std::fs::read(f.env_file(0)).unwrap() == export,
                "the export is untouched ({names})"
            );
        }
    }

    // The key fixed (here: the good value written back): the next run
    // exports it and everything works again, with no edit of the env file.
    f.put(&key, &good);
    f.run_ok(0, &["refresh"]);
    assert!(
        f.env_value(0, REFRESH).as_deref() == Some(rt.as_str()),
        "the export holds the store's refresh token again"
    );
    assert!(
        std::fs::read(f.env_file(0)).unwrap() != export,
        "re-exported"
    );
    // (Longer than the token lives: a refresh, through the store.)
    let out = f.run_ok(0, &["token", "--min-valid", "100d"]);
    let (_, now) = f.stored_json("/tokens/");
    assert!(stdout(&out).trim() == now["accessToken"].as_str().unwrap());
    assert!(f.env_value(0, ACCESS).as_deref() == now["accessToken"].as_str());
}

#[test]
fn an_export_holding_a_bad_value_does_not_block_reading_the_store() {
    let Some(f) = Hosts::refreshed(1) else {
        return;
    };
    let rt = f.env_value(0, REFRESH).unwrap();
    let access = f.env_value(0, ACCESS).unwrap();
    // What an older webex-token exported from a bad etcd value (the store
    // has been fixed since), beside a line of the host's own.
    let text = std::fs::read_to_string(f.env_file(0)).unwrap();
    let broken: String = text
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{REFRESH}=")) {
                format!("{REFRESH}=\"{rt} tail\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect::<String>()
        + "MY_OWN_SETTING=kept\n";
    std::fs::write(f.env_file(0), broken).unwrap();
    f.extra_secrets.borrow_mut().push(format!("{rt} tail"));

    let out = f.run_ok(0, &["token"]);
    assert!(stdout(&out).trim() == access, "the stored access token");
    assert!(stderr(&out).contains(REFRESH), "{}", stderr(&out));
    // The export now holds the store's values again; the host's line stays.
    assert!(f.env_value(0, REFRESH).as_deref() == Some(rt.as_str()));
    assert_eq!(f.env_value(0, "MY_OWN_SETTING").as_deref(), Some("kept"));
    let out = f.run_ok(0, &["token"]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn a_personal_token_pasted_into_the_config_wins_over_the_stores_older_one() {
    let Some(f) = Hosts::refreshed(2) else {
        return;
    };
    let old = f.config(0)["tokenManager"]["personalAccessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let (manager_key, m) = f.stored_json("/manager");
    assert!(m["personalAccessToken"].as_str() == Some(old.as_str()));

    // A person pastes a new portal token into host 0's config (the old one
    // is revoked: using it would take level 3).
    let pasted = f.sim.issue_personal_token(Duration::from_secs(12 * 3600));
    f.sim.revoke_token(&old);
    f.paste_personal_token(0, &pasted);

    let (out, bearer) = f.mint(0);
    assert!(bearer == pasted, "minted with the pasted token");
    assert_eq!(f.level3(), 0, "no level 3: the pasted token works");
    let err = stderr(&out);
    assert!(
        err.contains("has not seen") && err.contains(&manager_key),
        "the take-over is reported, naming the key: {err}"
    );
    let (_, m) = f.stored_json("/manager");
    assert!(m["personalAccessToken"].as_str() == Some(pasted.as_str()));

    // Host 1 still has the old config: it does not move the store back.
    let (out, bearer) = f.mint(1);
    assert!(bearer == pasted, "still the pasted one");
    assert!(!stderr(&out).contains("has not seen"), "{}", stderr(&out));
    let (_, m) = f.stored_json("/manager");
    assert!(m["personalAccessToken"].as_str() == Some(pasted.as_str()));
}

#[test]
fn level_3_with_etcd_says_the_renewed_state_went_to_the_etcd_key() {
    let Some(f) = Hosts::refreshed(1) else {
        return;
    };
    let (manager_key, _) = f.stored("/manager");
    let config_before = std::fs::read(f.config_file(0)).unwrap();
    let expire_all = || {
        f.sim.expire_all(TokenKind::ServiceAccess);
        f.sim.expire_all(TokenKind::ServiceRefresh);
        f.sim.expire_all(TokenKind::Personal);
    };

    expire_all();
    let out = f.run_ok(0, &["refresh"]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("saved in the etcd key {manager_key}")),
        "{text}"
    );
    assert!(
        !text.contains("token-config.json"),
        "the config was not written: {text}"
    );

    expire_all();
    let out = f.run_ok(0, &["--json", "refresh"]);
    crate::json_schema::assert_valid("refresh", &out);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["personalTokenRenewed"], true, "{v}");
    assert_eq!(
        v["personalTokenSavedIn"].as_str(),
        Some(format!("the etcd key {manager_key}").as_str()),
        "{v}"
    );
    assert!(
        std::fs::read(f.config_file(0)).unwrap() == config_before,
        "level 3 wrote only to etcd"
    );
}

#[test]
fn a_manager_key_an_older_version_wrote_keeps_its_state_and_a_later_paste_wins() {
    let Some(f) = Hosts::refreshed(1) else {
        return;
    };
    // As an older webex-token left it: no record of config tokens, and a
    // personal token level 3 renewed since (after the config was written;
    // the config keeps the seed's).
    let (key, mut m) = f.stored_json("/manager");
    let renewed = f.sim.issue_personal_token(Duration::from_secs(12 * 3600));
    m.as_object_mut().unwrap().remove("configTokensSeen");
    m["personalAccessToken"] = Value::from(renewed.clone());
    m["writtenAt"] = Value::from(jiff::Timestamp::now().to_string());
    f.put(&key, &m.to_string());

    let (out, bearer) = f.mint(0);
    assert!(
        bearer == renewed,
        "the store's renewed token, not the config's older one"
    );
    assert!(!stderr(&out).contains("has not seen"), "{}", stderr(&out));
    let (_, m) = f.stored_json("/manager");
    assert!(m["personalAccessToken"].as_str() == Some(renewed.as_str()));

    // From now on a token pasted into the config counts.
    let pasted = f.sim.issue_personal_token(Duration::from_secs(12 * 3600));
    f.paste_personal_token(0, &pasted);
    let (out, bearer) = f.mint(0);
    assert!(bearer == pasted, "the pasted token");
    assert!(stderr(&out).contains("has not seen"), "{}", stderr(&out));
}

/// `setup-oauth` on host `h` with the browser flow, the test playing the
/// browser against the simulator's authorize page.
fn setup_oauth(f: &Hosts, h: usize, global: &[&str]) -> Output {
    let out = crate::sim_e2e::setup_oauth_in_browser(f.cmd(h).args(global));
    f.assert_clean(&out);
    out
}

#[test]
fn setup_oauth_with_etcd_says_the_tokens_went_to_the_etcd_key() {
    let Some(f) = Hosts::refreshed(1) else {
        return;
    };
    let (key, _) = f.stored("/manager");
    let config_pat = |f: &Hosts| f.config(0)["tokenManager"]["personalAccessToken"].clone();
    let before = config_pat(&f);

    let out = setup_oauth(&f, 0, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "saved in the etcd key {key} (the integration client in "
        )),
        "{text}"
    );
    let (_, m) = f.stored_json("/manager");
    assert!(
        m["personalAccessToken"] != before,
        "the store has the new token"
    );
    assert!(config_pat(&f) == before, "the config keeps its own");

    let out = setup_oauth(&f, 0, &["--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["etcdKey"].as_str(), Some(key.as_str()), "{v}");
}
