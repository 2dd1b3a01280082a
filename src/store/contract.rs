//! The [`TokenStore`] contract, one test body per rule, run against every
//! backend: the files store, [`MemStore`] and the
//! etcd store on a real single-member etcd that the test starts on
//! loopback. The engine relies on exactly these rules.

use super::*;
use crate::config::Config;
use crate::secret::{ExposeSecret, secret};
use std::path::Path;

const CONFIG: &str = r#"{"serviceApp":{"appId":"app-1","clientId":"sa-client","clientSecret":"sa-secret","targetOrgId":"org-1"},"tokenManager":{"personalAccessToken":"pat-1","integration":{"clientId":"int-client","clientSecret":"int-secret","refreshToken":"int-rt-1"}}}"#;

fn tokens(access: &str, refresh: Option<&str>) -> StoredTokens {
    StoredTokens {
        access_token: Some(secret(access)),
        access_expires_at: Some(crate::clock::after(crate::clock::now(), 3600)),
        refresh_token: refresh.map(secret),
        refresh_expires_at: None,
    }
}

fn text(s: &Option<crate::secret::SecretString>) -> Option<String> {
    s.as_ref().map(|s| s.expose_secret().to_string())
}

const SHORT: Duration = Duration::from_millis(300);

/// Every rule, in order, on one fresh store.
async fn contract<S: TokenStore>(store: &S) {
    let org = OrgId::configured();

    // An empty store: no tokens, the config's own state.
    let snap = store.load(&org).await.unwrap();
    assert!(snap.tokens.access_token.is_none());
    assert_eq!(
        text(&snap.config.personal_access_token.get().cloned()),
        Some("pat-1".into())
    );

    // What is saved under the org lock is what is loaded.
    let g = store
        .lock(&LockScope::Org(org.clone()), SHORT)
        .await
        .unwrap();
    store
        .save_service(&g, &org, &tokens("at-1", Some("rt-1")))
        .await
        .unwrap();
    let snap = store.load(&org).await.unwrap();
    assert_eq!(text(&snap.tokens.access_token), Some("at-1".into()));
    assert_eq!(text(&snap.tokens.refresh_token), Some("rt-1".into()));
    assert!(snap.tokens.access_expires_at.is_some());

    // A refresh token is never replaced by nothing.
    store
        .save_service(&g, &org, &tokens("at-2", None))
        .await
        .unwrap();
    let snap = store.load(&org).await.unwrap();
    assert_eq!(text(&snap.tokens.access_token), Some("at-2".into()));
    assert_eq!(text(&snap.tokens.refresh_token), Some("rt-1".into()));

    // The lock is exclusive while held...
    let err = store
        .lock(&LockScope::Org(org.clone()), SHORT)
        .await
        .err()
        .expect("a second lock on the same scope waits, then gives up");
    assert!(matches!(err, StoreError::LockTimeout { .. }), "{err}");

    // ...and the wrong scope's guard saves nothing.
    let cg = store.lock(&LockScope::Config, SHORT).await.unwrap();
    assert!(
        store
            .save_service(&cg, &org, &tokens("at-x", Some("rt-x")))
            .await
            .is_err()
    );
    let update = RenewableUpdate {
        personal_access_token: secret("pat-x"),
        personal_expires_at: None,
        integration_refresh_token: None,
        integration_refresh_expires_at: None,
        integration_client: None,
    };
    assert!(store.save_renewable(&g, &update).await.is_err());
    let snap = store.load(&org).await.unwrap();
    assert_eq!(text(&snap.tokens.access_token), Some("at-2".into()));

    // Renewed token-manager state under the config lock is loaded back; a
    // missing integration refresh token keeps the stored one.
    let update = RenewableUpdate {
        personal_access_token: secret("pat-2"),
        personal_expires_at: Some(crate::clock::after(crate::clock::now(), 7200)),
        integration_refresh_token: None,
        integration_refresh_expires_at: None,
        integration_client: None,
    };
    store.save_renewable(&cg, &update).await.unwrap();
    let snap = store.load(&org).await.unwrap();
    assert_eq!(
        text(&snap.config.personal_access_token.get().cloned()),
        Some("pat-2".into())
    );
    assert!(snap.config.personal_expires_at.is_some());
    let irt = snap
        .config
        .integration
        .as_ref()
        .and_then(|i| i.refresh_token.get().cloned());
    assert_eq!(text(&irt), Some("int-rt-1".into()));

    // Released locks can be taken again at once.
    store.release(cg).await;
    store.release(g).await;
    let g = store
        .lock(&LockScope::Org(org.clone()), SHORT)
        .await
        .unwrap();
    store.release(g).await;
    let g = store.lock(&LockScope::Config, SHORT).await.unwrap();
    store.release(g).await;
}

fn files_in(dir: &Path) -> FilesStore {
    std::fs::write(dir.join("token-config.json"), CONFIG).unwrap();
    FilesStore {
        env_path: dir.join(".env"),
        config_path: dir.join("token-config.json"),
        mode: Default::default(),
        config_cache: Default::default(),
    }
}

#[tokio::test]
async fn files_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&files_in(dir.path())).await;
}

#[tokio::test]
async fn mem_store_keeps_the_contract() {
    let config = Config::parse(CONFIG.as_bytes(), Path::new("/abs/token-config.json")).unwrap();
    contract(&MemStore::new(StoredTokens::default(), config)).await;
}

mod etcd_backend {
    use super::*;
    use crate::store::etcd::{Cluster, EtcdSettings, EtcdStore};
    use std::process::{Child, Command, Stdio};

    /// One etcd member on free loopback ports in `dir`, killed on drop.
    struct Member(Child);

    impl Drop for Member {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// `None` when etcd is not installed and `WEBEX_TOKEN_SKIP_ETCD=1`
    /// says to skip (never in CI).
    fn start(dir: &Path) -> Option<(Member, String)> {
        let installed = Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            let skip = std::env::var("WEBEX_TOKEN_SKIP_ETCD").as_deref() == Ok("1")
                && std::env::var("CI").as_deref() != Ok("true");
            assert!(
                skip,
                "etcd-server is not installed: apt-get install etcd-server etcd-client (or set WEBEX_TOKEN_SKIP_ETCD=1 to skip the etcd tests)"
            );
            return None;
        }
        let (client, peer) = (free_port(), free_port());
        let child = Command::new("etcd")
            .args([
                "--name",
                "contract",
                "--data-dir",
                &dir.join("etcd").display().to_string(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("contract=http://127.0.0.1:{peer}"),
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Some((Member(child), format!("127.0.0.1:{client}")))
    }

    #[tokio::test]
    async fn etcd_store_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let Some((_member, endpoint)) = start(dir.path()) else {
            return;
        };
        let store = EtcdStore {
            cluster: Cluster::new(EtcdSettings {
                endpoints: vec![endpoint],
                prefix: "contract".into(),
                tls: false,
                ca_file: None,
                user: None,
                password_file: None,
                password: None,
                lock_ttl: Duration::from_secs(5),
                // The member may still be starting: the first request waits.
                timeout: Duration::from_secs(15),
            }),
            files: files_in(dir.path()),
            export: true,
        };
        contract(&Store::Etcd(store.clone())).await;
        // The export holds what the store holds.
        let env = std::fs::read_to_string(dir.path().join(".env")).unwrap();
        assert!(env.contains("WEBEX_SERVICE_APP_ACCESS_TOKEN=at-2"), "{env}");
        assert!(env.contains("# webex-token: exported from etcd, revision"));
        // The config file keeps its own personal token: the renewed one
        // lives in etcd.
        let config = std::fs::read_to_string(dir.path().join("token-config.json")).unwrap();
        assert!(config.contains("pat-1") && !config.contains("pat-2"));
    }
}
