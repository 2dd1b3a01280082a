//! The engine on `MemStore` with a scripted fake Webex: the transaction's
//! guarantees without files or HTTP.

use super::*;
use crate::config::Config;
use crate::secret::secret;
use crate::store::MemStore;
use crate::webex::{ErrorBody, grant};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

type Reply = Result<TokenGrant, ApiError>;
type Hook<'a> = Box<dyn Fn(&str) + 'a>;

/// Replies by client id (refresh) or bearer (mint); counts every call. A
/// hook may run before a mint answers (to act as a concurrent run).
#[derive(Default)]
struct Fake<'a> {
    refresh: RefCell<HashMap<String, Vec<Reply>>>,
    mint: RefCell<HashMap<String, Vec<Reply>>>,
    calls: RefCell<Vec<String>>,
    delay_ms: u64,
    before_mint: Option<Hook<'a>>,
}

impl Fake<'_> {
    fn on_refresh(self, client: &str, r: Reply) -> Self {
        self.refresh
            .borrow_mut()
            .entry(client.into())
            .or_default()
            .push(r);
        self
    }
    fn on_mint(self, bearer: &str, r: Reply) -> Self {
        self.mint
            .borrow_mut()
            .entry(bearer.into())
            .or_default()
            .push(r);
        self
    }
    fn count(&self, prefix: &str) -> usize {
        self.calls
            .borrow()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }
}

impl WebexApi for &Fake<'_> {
    async fn validate(&self, _t: &SecretString) -> Result<(), ApiError> {
        self.calls.borrow_mut().push("validate".into());
        Ok(())
    }
    async fn refresh(&self, c: &ClientCredentials<'_>, rt: &SecretString) -> Reply {
        self.calls
            .borrow_mut()
            .push(format!("refresh {} {}", c.client_id, rt.expose_secret()));
        tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
        let mut map = self.refresh.borrow_mut();
        let q = map.get_mut(c.client_id).expect("unexpected refresh");
        q.remove(0)
    }
    async fn mint(&self, bearer: &SecretString, _r: &MintRequest<'_>) -> Reply {
        let b = bearer.expose_secret().to_string();
        self.calls.borrow_mut().push(format!("mint {b}"));
        if let Some(hook) = &self.before_mint {
            hook(&b);
        }
        if self.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
        }
        let mut map = self.mint.borrow_mut();
        let q = map.get_mut(&b).expect("unexpected mint");
        q.remove(0)
    }
}

fn config(pat: &str) -> Config {
    let text = format!(
        r#"{{"serviceApp":{{"appId":"app-1","clientId":"sa-client","clientSecret":"sa-secret","targetOrgId":"org-1"}},"tokenManager":{{"personalAccessToken":"{pat}","integration":{{"clientId":"int-client","clientSecret":"int-secret","refreshToken":"int-rt-1"}}}}}}"#
    );
    Config::parse(text.as_bytes(), Path::new("/abs/token-config.json")).unwrap()
}

fn expired(refresh: Option<&str>) -> StoredTokens {
    StoredTokens {
        access_token: Some(secret("at-old")),
        access_expires_at: Some(clock::now() - jiff::SignedDuration::from_secs(60)),
        refresh_token: refresh.map(secret),
        refresh_expires_at: None,
    }
}

fn rejected(status: u16) -> ApiError {
    ApiError::Rejected {
        status,
        body: ErrorBody::default(),
    }
}

fn refused(status: u16) -> ApiError {
    ApiError::Refused {
        status,
        body: ErrorBody::default(),
    }
}

fn ctx() -> Ctx<'static> {
    Ctx {
        command: "test",
        lock_timeout: Duration::from_secs(5),
        audit: None,
        target: Path::new("/abs/.env"),
    }
}

fn refresh_policy() -> Policy {
    Policy {
        min_valid: Duration::from_secs(3600),
        force: false,
        mint: false,
        dry_run: false,
        check: Check::Validate,
    }
}

fn org() -> OrgId {
    OrgId::configured()
}

#[tokio::test]
async fn overlapping_runs_refresh_once() {
    let store = MemStore::new(expired(Some("rt-1")), config("pat"));
    let fake = Fake {
        delay_ms: 50,
        ..Fake::default()
    }
    .on_refresh("sa-client", Ok(grant("at-new", 3600 * 24, None)));
    let (policy, org, ctx) = (refresh_policy(), org(), ctx());
    let (a, b) = tokio::join!(
        ensure(&store, |_| &fake, &policy, &org, &ctx),
        ensure(&store, |_| &fake, &policy, &org, &ctx),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(fake.count("refresh"), 1, "{:?}", fake.calls.borrow());
    assert_eq!(store.service_saves.load(Ordering::SeqCst), 1);
    let kinds = [&a.action, &b.action]
        .iter()
        .map(|x| format!("{x:?}"))
        .collect::<Vec<_>>();
    assert!(
        kinds.iter().any(|k| k.contains("JustRefreshed")),
        "{kinds:?}"
    );
    assert_eq!(
        store.tokens().access_token.unwrap().expose_secret(),
        "at-new"
    );
}

#[tokio::test]
async fn a_failed_save_is_an_error_not_a_silent_loss() {
    let mut store = MemStore::new(expired(Some("rt-1")), config("pat"));
    store.fail_service_saves = true;
    let fake = Fake::default().on_refresh("sa-client", Ok(grant("at-new", 3600, None)));
    let err = ensure(&store, |_| &fake, &refresh_policy(), &org(), &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::Write { .. })),
        "{err}"
    );
    assert_eq!(
        store.tokens().access_token.unwrap().expose_secret(),
        "at-old"
    );
}

#[tokio::test]
async fn level_3_saves_the_rotated_refresh_token_before_minting() {
    let store = MemStore::new(expired(None), config("pat-old"));
    let fake = Fake::default()
        .on_mint("pat-old", Err(rejected(401)))
        .on_refresh(
            "int-client",
            Ok(grant("pat-new", 3600, Some(("int-rt-2", 86_400)))),
        )
        // The mint with the renewed token fails: the renewal must be kept.
        .on_mint("pat-new", Err(refused(403)));
    let err = ensure(&store, |_| &fake, &refresh_policy(), &org(), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 4);
    assert_eq!(store.renewable_saves.load(Ordering::SeqCst), 1);
    let cfg = store.config();
    assert_eq!(
        cfg.personal_access_token.get().unwrap().expose_secret(),
        "pat-new"
    );
    let integ = cfg.integration.unwrap();
    assert_eq!(
        integ.refresh_token.get().unwrap().expose_secret(),
        "int-rt-2"
    );
}

#[tokio::test]
async fn level_3_uses_a_renewal_another_run_saved_meanwhile() {
    let store = MemStore::new(expired(None), config("pat-old"));
    // While this run's mint with the old token is in flight, another run
    // sharing the config renews the personal token.
    let fake = Fake {
        before_mint: Some(Box::new(|bearer: &str| {
            if bearer == "pat-old" {
                store.replace_config(config("pat-other"));
            }
        })),
        ..Fake::default()
    }
    .on_mint("pat-old", Err(rejected(401)))
    .on_mint(
        "pat-other",
        Ok(grant("at-new", 3600, Some(("rt-new", 86_400)))),
    );
    let out = ensure(&store, |_| &fake, &refresh_policy(), &org(), &ctx())
        .await
        .unwrap();
    assert!(matches!(out.action, Action::Refreshed { .. }));
    // The integration refresh token was not spent a second time.
    assert_eq!(fake.count("refresh"), 0, "{:?}", fake.calls.borrow());
    assert_eq!(store.renewable_saves.load(Ordering::SeqCst), 0);
    assert_eq!(
        store.tokens().access_token.unwrap().expose_secret(),
        "at-new"
    );
}

#[tokio::test]
async fn dry_run_takes_no_lock_and_writes_nothing() {
    let store = MemStore::new(expired(Some("rt-1")), config("pat"));
    // Hold the org lock: a dry run must not wait for it.
    let _held = store
        .lock(&LockScope::Org(org()), Duration::from_secs(1))
        .await
        .unwrap();
    let fake = Fake::default();
    let policy = Policy {
        dry_run: true,
        ..refresh_policy()
    };
    let out = ensure(&store, |_| &fake, &policy, &org(), &ctx())
        .await
        .unwrap();
    assert!(matches!(out.action, Action::WouldRefresh { .. }));
    assert_eq!(fake.calls.borrow().len(), 0);
    assert_eq!(store.service_saves.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn overlapping_rolls_mint_once() {
    // `watch` rolls with `mint` and without `force`: a second watcher that
    // waited for the lock finds the new pair and keeps it.
    let store = MemStore::new(expired(Some("rt-1")), config("pat"));
    let fake = Fake {
        delay_ms: 50,
        ..Fake::default()
    }
    .on_mint(
        "pat",
        Ok(grant("at-new", 3600 * 24, Some(("rt-2", 3600 * 24 * 90)))),
    );
    let policy = Policy {
        mint: true,
        ..refresh_policy()
    };
    let (org, ctx) = (org(), ctx());
    let (a, b) = tokio::join!(
        ensure(&store, |_| &fake, &policy, &org, &ctx),
        ensure(&store, |_| &fake, &policy, &org, &ctx),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(fake.count("mint"), 1, "{:?}", fake.calls.borrow());
    let kinds = format!("{:?} {:?}", a.action, b.action);
    assert!(kinds.contains("JustRefreshed"), "{kinds}");
    assert_eq!(
        store.tokens().refresh_token.unwrap().expose_secret(),
        "rt-2"
    );
}

#[tokio::test]
async fn rt_expiring_needs_a_known_expiry_within_the_window() {
    let now = clock::now();
    let mut t = expired(Some("rt-1"));
    assert!(
        !rt_expiring(&t, now, Duration::from_secs(3600)),
        "unknown expiry"
    );
    t.refresh_expires_at = Some(clock::after(now, 1800));
    assert!(rt_expiring(&t, now, Duration::from_secs(3600)));
    assert!(!rt_expiring(&t, now, Duration::from_secs(600)));
    t.refresh_token = None;
    assert!(!rt_expiring(&t, now, Duration::from_secs(3600)));
}

#[tokio::test]
async fn setup_saves_the_authorization_under_the_config_lock() {
    let store = MemStore::new(expired(None), config("pat-old"));
    let update = crate::tokens::RenewableUpdate {
        personal_access_token: secret("pat-from-setup"),
        personal_expires_at: None,
        integration_refresh_token: Some(secret("int-rt-setup")),
        integration_refresh_expires_at: None,
        integration_client: None,
    };
    // While another run holds the config lock, the save waits, then fails
    // after the lock time-out without writing anything.
    let held = store
        .lock(&LockScope::Config, Duration::from_secs(1))
        .await
        .unwrap();
    let err = save_authorization(&store, &update, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert_eq!(store.renewable_saves.load(Ordering::SeqCst), 0);
    store.release(held).await;
    save_authorization(&store, &update, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(store.renewable_saves.load(Ordering::SeqCst), 1);
    let cfg = store.config();
    assert_eq!(
        cfg.personal_access_token.get().unwrap().expose_secret(),
        "pat-from-setup"
    );
    assert_eq!(
        cfg.integration
            .unwrap()
            .refresh_token
            .get()
            .unwrap()
            .expose_secret(),
        "int-rt-setup"
    );
    // The lock was given back.
    let again = store
        .lock(&LockScope::Config, Duration::from_millis(50))
        .await;
    assert!(again.is_ok());
}
