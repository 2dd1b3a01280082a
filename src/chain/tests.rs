//! Every branch of the chain, with a scripted fake Webex and a fixed clock.

use super::*;
use crate::config::Config;
use crate::secret::{ExposeSecret, secret};
use crate::webex::{ErrorBody, TransientReason, grant};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;

type Reply = Result<TokenGrant, ApiError>;

#[derive(Default)]
struct Fake {
    validate: RefCell<VecDeque<Result<(), ApiError>>>,
    /// Keyed by client id: "sa-client" (level 1) or "int-client" (level 3).
    refresh: RefCell<Vec<(String, VecDeque<Reply>)>>,
    mint: RefCell<VecDeque<Reply>>,
    calls: RefCell<Vec<String>>,
}

impl Fake {
    fn on_validate(self, r: Result<(), ApiError>) -> Self {
        self.validate.borrow_mut().push_back(r);
        self
    }
    fn on_refresh(self, client: &str, r: Reply) -> Self {
        {
            let mut v = self.refresh.borrow_mut();
            match v.iter_mut().find(|(c, _)| c == client) {
                Some((_, q)) => q.push_back(r),
                None => v.push((client.into(), VecDeque::from([r]))),
            }
        }
        self
    }
    fn on_mint(self, r: Reply) -> Self {
        self.mint.borrow_mut().push_back(r);
        self
    }
    fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl WebexApi for Fake {
    async fn validate(&self, t: &SecretString) -> Result<(), ApiError> {
        self.calls
            .borrow_mut()
            .push(format!("validate {}", t.expose_secret()));
        self.validate
            .borrow_mut()
            .pop_front()
            .expect("unexpected validate")
    }
    async fn refresh(&self, c: &ClientCredentials<'_>, rt: &SecretString) -> Reply {
        self.calls
            .borrow_mut()
            .push(format!("refresh {} {}", c.client_id, rt.expose_secret()));
        let mut v = self.refresh.borrow_mut();
        let q = v
            .iter_mut()
            .find(|(id, _)| id == c.client_id)
            .expect("unexpected refresh");
        q.1.pop_front().expect("no more refresh replies")
    }
    async fn mint(&self, bearer: &SecretString, req: &MintRequest<'_>) -> Reply {
        assert_eq!(req.app_id, "app-1");
        assert_eq!(req.target_org_id, "org-1");
        self.calls
            .borrow_mut()
            .push(format!("mint {}", bearer.expose_secret()));
        self.mint.borrow_mut().pop_front().expect("unexpected mint")
    }
}

/// Records renewals; level 3 proceeds with the config it was given (or, when
/// `renewed_meanwhile` is set, hears that another run renewed the token).
#[derive(Default)]
struct Sink(Vec<String>, Option<Config>, Option<String>);
impl Persist for Sink {
    async fn begin_renewal(&mut self) -> Result<Renewal, String> {
        if let Some(t) = self.2.take() {
            return Ok(Renewal::AlreadyRenewed(secret(t)));
        }
        Ok(Renewal::Proceed(Box::new(
            self.1.clone().expect("the sink knows the config"),
        )))
    }
    async fn personal_renewed(&mut self, u: &PersonalUpdate) -> Result<(), String> {
        self.0.push(format!(
            "{} {}",
            u.personal_access_token.expose_secret(),
            u.integration_refresh_token
                .as_ref()
                .map(|s| s.expose_secret().to_string())
                .unwrap_or_default()
        ));
        Ok(())
    }
}

fn now() -> Timestamp {
    "2026-11-23T12:00:00Z".parse().unwrap()
}

fn config(pat: &str, integration: bool) -> Config {
    let integ = if integration {
        r#","integration":{"clientId":"int-client","clientSecret":"int-secret","refreshToken":"int-rt"}"#
    } else {
        ""
    };
    let text = format!(
        r#"{{"serviceApp":{{"appId":"app-1","clientId":"sa-client","clientSecret":"sa-secret","targetOrgId":"org-1"}},"tokenManager":{{"personalAccessToken":"{pat}"{integ}}}}}"#
    );
    Config::parse(text.as_bytes(), Path::new("/abs/token-config.json")).unwrap()
}

fn stored(access: Option<(&str, i64)>, refresh: Option<&str>) -> StoredTokens {
    StoredTokens {
        access_token: access.map(|(a, _)| secret(a)),
        access_expires_at: access.filter(|(_, s)| *s != i64::MIN).map(|(_, s)| {
            now()
                .checked_add(jiff::SignedDuration::from_secs(s))
                .unwrap()
        }),
        refresh_token: refresh.map(secret),
        refresh_expires_at: None,
    }
}

fn policy() -> Policy {
    Policy {
        min_valid: Duration::from_secs(3600),
        force: false,
        mint: false,
        dry_run: false,
        check: Check::Validate,
    }
}

fn rejected(status: u16, oauth: Option<&str>) -> ApiError {
    ApiError::Rejected {
        status,
        body: ErrorBody {
            oauth_error: oauth.map(str::to_string),
            tracking_id: Some("TRACK-1".into()),
            ..Default::default()
        },
    }
}

fn refused(status: u16) -> ApiError {
    ApiError::Refused {
        status,
        body: ErrorBody::default(),
    }
}

fn transient() -> ApiError {
    ApiError::Transient {
        reason: TransientReason::Status(503),
        body: None,
        attempts: 4,
    }
}

async fn run(
    fake: &Fake,
    st: &StoredTokens,
    cfg: &Config,
    p: &Policy,
) -> (Result<Outcome, ChainError>, Sink) {
    let mut sink = Sink(Vec::new(), Some(cfg.clone()), None);
    let r = ensure_fresh(st, cfg, p, fake, now(), &mut sink).await;
    (r, sink)
}

fn level_of(o: &Outcome) -> Level {
    match &o.action {
        Action::Refreshed { level, .. } => *level,
        other => panic!("not refreshed: {other:?}"),
    }
}

#[tokio::test]
async fn valid_token_is_validated_once_and_kept() {
    let fake = Fake::default().on_validate(Ok(()));
    let (r, _) = run(
        &fake,
        &stored(Some(("at", 86_400)), Some("rt")),
        &config("pat", false),
        &policy(),
    )
    .await;
    assert!(matches!(
        r.unwrap().action,
        Action::Kept(Validation::Checked)
    ));
    assert_eq!(fake.calls(), ["validate at"]);
}

#[tokio::test]
async fn unknown_expiry_is_validated() {
    let fake = Fake::default().on_validate(Ok(()));
    let (r, _) = run(
        &fake,
        &stored(Some(("at", i64::MIN)), None),
        &config("pat", false),
        &policy(),
    )
    .await;
    assert!(matches!(
        r.unwrap().action,
        Action::Kept(Validation::Checked)
    ));
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn token_command_trusts_a_fresh_expiry_without_requests() {
    let fake = Fake::default();
    let p = Policy {
        check: Check::TrustExpiry,
        ..policy()
    };
    let (r, _) = run(
        &fake,
        &stored(Some(("at", 86_400)), Some("rt")),
        &config("pat", false),
        &p,
    )
    .await;
    assert!(matches!(
        r.unwrap().action,
        Action::Kept(Validation::TrustedExpiry)
    ));
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn expiring_token_skips_validation_and_uses_level1() {
    let fake = Fake::default().on_refresh(
        "sa-client",
        Ok(grant("at2", 1_209_600, Some(("rt2", 7_776_000)))),
    );
    let (r, _) = run(
        &fake,
        &stored(Some(("at", 600)), Some("rt")),
        &config("pat", false),
        &policy(),
    )
    .await;
    let o = r.unwrap();
    assert_eq!(level_of(&o), Level::ServiceRefreshToken);
    assert_eq!(fake.calls(), ["refresh sa-client rt"]);
    assert_eq!(o.tokens.access_token.unwrap().expose_secret(), "at2");
    assert_eq!(o.tokens.refresh_token.unwrap().expose_secret(), "rt2");
    assert_eq!(
        o.tokens.access_expires_at.unwrap(),
        now()
            .checked_add(jiff::SignedDuration::from_secs(1_209_600))
            .unwrap()
    );
    match o.action {
        Action::Refreshed {
            trigger: Trigger::Expiring(_),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn min_valid_window_decides() {
    // 2h left, min-valid 3h → refresh without validating.
    let fake = Fake::default().on_refresh("sa-client", Ok(grant("at2", 100, None)));
    let p = Policy {
        min_valid: Duration::from_secs(3 * 3600),
        ..policy()
    };
    let (r, _) = run(
        &fake,
        &stored(Some(("at", 7200)), Some("rt")),
        &config("pat", false),
        &p,
    )
    .await;
    assert_eq!(level_of(&r.unwrap()), Level::ServiceRefreshToken);
    assert_eq!(fake.calls(), ["refresh sa-client rt"]);
}

#[tokio::test]
async fn rejected_validation_then_level1() {
    let fake = Fake::default()
        .on_validate(Err(rejected(401, None)))
        .on_refresh("sa-client", Ok(grant("at2", 100, None)));
    let (r, _) = run(
        &fake,
        &stored(Some(("at", i64::MIN)), Some("rt")),
        &config("pat", false),
        &policy(),
    )
    .await;
    let o = r.unwrap();
    assert_eq!(level_of(&o), Level::ServiceRefreshToken);
    assert_eq!(fake.calls(), ["validate at", "refresh sa-client rt"]);
    // No refresh token in the answer: the old one is kept, never erased.
    assert_eq!(o.tokens.refresh_token.unwrap().expose_secret(), "rt");
}

#[tokio::test]
async fn same_token_back_is_success() {
    let fake = Fake::default().on_refresh("sa-client", Ok(grant("at", 100, Some(("rt", 50)))));
    let (r, _) = run(
        &fake,
        &stored(Some(("at", 10)), Some("rt")),
        &config("pat", false),
        &policy(),
    )
    .await;
    assert_eq!(level_of(&r.unwrap()), Level::ServiceRefreshToken);
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn level1_rejected_falls_to_level2() {
    for err in [
        rejected(400, Some("invalid_grant")),
        rejected(401, None),
        refused(400),
    ] {
        let fake = Fake::default()
            .on_refresh("sa-client", Err(err))
            .on_mint(Ok(grant("at2", 100, Some(("rt2", 200)))));
        let (r, _) = run(
            &fake,
            &stored(None, Some("rt")),
            &config("pat", false),
            &policy(),
        )
        .await;
        let o = r.unwrap();
        assert_eq!(level_of(&o), Level::PersonalAccessToken);
        assert_eq!(fake.calls(), ["refresh sa-client rt", "mint pat"]);
        assert_eq!(o.tokens.refresh_token.unwrap().expose_secret(), "rt2");
        assert_eq!(o.attempts.len(), 2);
    }
}

#[tokio::test]
async fn no_refresh_token_goes_straight_to_level2() {
    let fake = Fake::default().on_mint(Ok(grant("at2", 100, None)));
    let (r, _) = run(
        &fake,
        &StoredTokens::default(),
        &config("pat", false),
        &policy(),
    )
    .await;
    let o = r.unwrap();
    assert_eq!(level_of(&o), Level::PersonalAccessToken);
    assert_eq!(fake.calls(), ["mint pat"]);
    assert!(
        matches!(&o.attempts[0].result, AttemptResult::Skipped(s) if s.contains("no service-app refresh token"))
    );
    assert!(o.tokens.refresh_token.is_none());
}

#[tokio::test]
async fn known_expired_refresh_token_is_not_sent() {
    let fake = Fake::default().on_mint(Ok(grant("at2", 100, None)));
    let mut st = stored(None, Some("rt"));
    st.refresh_expires_at = Some(now() - jiff::SignedDuration::from_secs(1));
    let (r, _) = run(&fake, &st, &config("pat", false), &policy()).await;
    assert_eq!(level_of(&r.unwrap()), Level::PersonalAccessToken);
    assert_eq!(fake.calls(), ["mint pat"]);
}

#[tokio::test]
async fn level3_renews_personal_token_then_level2_retries() {
    let fake = Fake::default()
        .on_refresh("sa-client", Err(rejected(400, Some("invalid_grant"))))
        .on_mint(Err(rejected(401, None)))
        .on_refresh(
            "int-client",
            Ok(grant("pat2", 1_209_600, Some(("int-rt2", 7_776_000)))),
        )
        .on_mint(Ok(grant("at2", 100, Some(("rt2", 200)))));
    let (r, sink) = run(
        &fake,
        &stored(Some(("at", 5)), Some("rt")),
        &config("pat", true),
        &policy(),
    )
    .await;
    let o = r.unwrap();
    assert_eq!(level_of(&o), Level::IntegrationRefreshToken);
    assert!(o.personal_renewed);
    assert_eq!(
        fake.calls(),
        [
            "refresh sa-client rt",
            "mint pat",
            "refresh int-client int-rt",
            "mint pat2"
        ]
    );
    assert_eq!(sink.0, ["pat2 int-rt2"]);
}

#[tokio::test]
async fn placeholder_personal_token_with_integration_goes_to_level3_first() {
    let fake = Fake::default()
        .on_refresh("int-client", Ok(grant("pat2", 100, None)))
        .on_mint(Ok(grant("at2", 100, None)));
    let (r, sink) = run(
        &fake,
        &StoredTokens::default(),
        &config("your_personal_access_token", true),
        &policy(),
    )
    .await;
    assert_eq!(level_of(&r.unwrap()), Level::IntegrationRefreshToken);
    assert_eq!(fake.calls(), ["refresh int-client int-rt", "mint pat2"]);
    assert_eq!(sink.0, ["pat2 "]);
}

#[tokio::test]
async fn everything_rejected_is_exhausted() {
    let fake = Fake::default()
        .on_refresh("sa-client", Err(rejected(401, None)))
        .on_mint(Err(rejected(401, None)))
        .on_refresh("int-client", Err(rejected(400, Some("invalid_grant"))));
    let (r, sink) = run(
        &fake,
        &stored(None, Some("rt")),
        &config("pat", true),
        &policy(),
    )
    .await;
    match r.unwrap_err() {
        ChainError::Exhausted { attempts, .. } => {
            assert_eq!(attempts.len(), 3);
            assert!(
                attempts
                    .iter()
                    .all(|a| matches!(a.result, AttemptResult::Rejected { .. }))
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(sink.0.is_empty());
}

#[tokio::test]
async fn renewed_personal_token_rejected_again_stops() {
    let fake = Fake::default()
        .on_mint(Err(rejected(401, None)))
        .on_refresh("int-client", Ok(grant("pat2", 100, None)))
        .on_mint(Err(rejected(401, None)));
    let (r, sink) = run(
        &fake,
        &StoredTokens::default(),
        &config("pat", true),
        &policy(),
    )
    .await;
    assert!(matches!(r.unwrap_err(), ChainError::Exhausted { .. }));
    assert_eq!(fake.calls().len(), 3);
    // The renewed token was persisted even though the chain failed after.
    assert_eq!(sink.0.len(), 1);
}

#[tokio::test]
async fn forbidden_mint_does_not_try_level3() {
    let fake = Fake::default().on_mint(Err(refused(403)));
    let (r, _) = run(
        &fake,
        &StoredTokens::default(),
        &config("pat", true),
        &policy(),
    )
    .await;
    assert!(matches!(r.unwrap_err(), ChainError::Exhausted { .. }));
    assert_eq!(fake.calls(), ["mint pat"]);
}

#[tokio::test]
async fn transient_failures_stop_the_chain() {
    let fake = Fake::default().on_refresh("sa-client", Err(transient()));
    let (r, _) = run(
        &fake,
        &stored(None, Some("rt")),
        &config("pat", true),
        &policy(),
    )
    .await;
    assert!(matches!(
        r.unwrap_err(),
        ChainError::Transient {
            level: Level::ServiceRefreshToken,
            ..
        }
    ));
    assert_eq!(fake.calls().len(), 1);

    let fake = Fake::default().on_validate(Err(transient()));
    let (r, _) = run(
        &fake,
        &stored(Some(("at", i64::MIN)), Some("rt")),
        &config("pat", true),
        &policy(),
    )
    .await;
    assert!(matches!(
        r.unwrap_err(),
        ChainError::Transient {
            level: Level::Validation,
            ..
        }
    ));

    let fake = Fake::default()
        .on_mint(Err(rejected(401, None)))
        .on_refresh("int-client", Err(transient()));
    let (r, _) = run(
        &fake,
        &StoredTokens::default(),
        &config("pat", true),
        &policy(),
    )
    .await;
    assert!(matches!(
        r.unwrap_err(),
        ChainError::Transient {
            level: Level::IntegrationRefreshToken,
            ..
        }
    ));
}

#[tokio::test]
async fn nothing_configured() {
    let fake = Fake::default();
    let (r, _) = run(
        &fake,
        &StoredTokens::default(),
        &config("your_personal_access_token", false),
        &policy(),
    )
    .await;
    match r.unwrap_err() {
        ChainError::NothingToTry { attempts } => assert_eq!(attempts.len(), 3),
        other => panic!("{other:?}"),
    }
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn forbidden_validation_counts_as_working() {
    let fake = Fake::default().on_validate(Err(refused(403)));
    let (r, _) = run(
        &fake,
        &stored(Some(("at", 86_400)), None),
        &config("pat", false),
        &policy(),
    )
    .await;
    assert!(matches!(
        r.unwrap().action,
        Action::Kept(Validation::CheckedWithoutScope)
    ));
}

#[tokio::test]
async fn force_skips_validation() {
    let fake = Fake::default().on_refresh("sa-client", Ok(grant("at2", 100, None)));
    let p = Policy {
        force: true,
        ..policy()
    };
    let (r, _) = run(
        &fake,
        &stored(Some(("at", 86_400)), Some("rt")),
        &config("pat", false),
        &p,
    )
    .await;
    assert_eq!(level_of(&r.unwrap()), Level::ServiceRefreshToken);
    assert_eq!(fake.calls(), ["refresh sa-client rt"]);
}

#[tokio::test]
async fn dry_run_posts_nothing() {
    let p = Policy {
        dry_run: true,
        ..policy()
    };
    let fake = Fake::default();
    let (r, _) = run(
        &fake,
        &stored(Some(("at", 5)), Some("rt")),
        &config("pat", false),
        &p,
    )
    .await;
    assert!(matches!(
        r.unwrap().action,
        Action::WouldRefresh {
            level: Level::ServiceRefreshToken,
            ..
        }
    ));
    let (r, _) = run(&fake, &StoredTokens::default(), &config("your_x", true), &p).await;
    assert!(matches!(
        r.unwrap().action,
        Action::WouldRefresh {
            level: Level::IntegrationRefreshToken,
            ..
        }
    ));
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn missing_service_app_field_is_a_config_error_before_any_request() {
    let cfg = Config::parse(
        br#"{"serviceApp":{"appId":"app-1","clientId":"your_client_id","clientSecret":"s","targetOrgId":"org-1"},"tokenManager":{"personalAccessToken":"pat"}}"#,
        Path::new("/abs/c.json"),
    )
    .unwrap();
    let fake = Fake::default();
    let (r, _) = run(&fake, &stored(None, Some("rt")), &cfg, &policy()).await;
    match r.unwrap_err() {
        ChainError::Config(e) => assert!(e.to_string().contains("serviceApp.clientId")),
        other => panic!("{other:?}"),
    }
    assert!(fake.calls().is_empty());
}

#[test]
fn availability_explains_each_level() {
    let full = availability(&config("pat", true), &stored(None, Some("rt")), now());
    assert!(full.iter().all(|(_, gap)| gap.is_none()), "{full:?}");

    let cfg = Config::parse(
        br#"{"serviceApp":{"appId":"a","clientId":"c","clientSecret":"s"},"tokenManager":{"personalAccessToken":"your_pat"}}"#,
        Path::new("/abs/c.json"),
    )
    .unwrap();
    let [(l1, g1), (l2, g2), (l3, g3)] = availability(&cfg, &StoredTokens::default(), now());
    assert_eq!(
        (l1, l2, l3),
        (
            Level::ServiceRefreshToken,
            Level::PersonalAccessToken,
            Level::IntegrationRefreshToken
        )
    );
    assert!(g1.unwrap().contains("no service-app refresh token"));
    assert!(g2.unwrap().contains("not filled in"));
    assert!(g3.unwrap().contains("no integration"));

    let cfg = Config::parse(
        br#"{"serviceApp":{"appId":"a","clientId":"c","clientSecret":"s"},"tokenManager":{"personalAccessToken":"pat"}}"#,
        Path::new("/abs/c.json"),
    )
    .unwrap();
    let [_, (_, g2), _] = availability(&cfg, &StoredTokens::default(), now());
    assert!(
        g2.unwrap().contains("serviceApp.targetOrgId"),
        "level 2 needs the org"
    );
}

#[tokio::test]
async fn mint_skips_level1() {
    let fake = Fake::default().on_mint(Ok(grant("at2", 100, Some(("rt2", 7_776_000)))));
    let p = Policy {
        mint: true,
        ..policy()
    };
    let (r, _) = run(
        &fake,
        &stored(Some(("at", 86_400)), Some("rt")),
        &config("pat", false),
        &p,
    )
    .await;
    let o = r.unwrap();
    assert_eq!(level_of(&o), Level::PersonalAccessToken);
    assert_eq!(fake.calls(), ["mint pat"]);
    assert_eq!(o.tokens.refresh_token.unwrap().expose_secret(), "rt2");
}

#[tokio::test]
async fn level3_defers_to_a_renewal_made_meanwhile() {
    // Level 2 is rejected; before level 3 runs, the sink (under the config
    // lock) finds that another run renewed the personal token: level 2 is
    // retried with it and the integration refresh token is not spent.
    let fake = Fake::default()
        .on_mint(Err(rejected(401, None)))
        .on_mint(Ok(grant("at2", 100, Some(("rt2", 200)))));
    let cfg = config("pat", true);
    let mut sink = Sink(Vec::new(), Some(cfg.clone()), Some("pat-other".into()));
    let r = ensure_fresh(
        &stored(None, None),
        &cfg,
        &policy(),
        &fake,
        now(),
        &mut sink,
    )
    .await
    .unwrap();
    assert_eq!(fake.calls(), ["mint pat", "mint pat-other"]);
    assert!(sink.0.is_empty());
    assert!(matches!(r.action, Action::Refreshed { .. }));
}
