//! BYODS data sources below the commands: the [`DataSource`] model, the
//! service-app session with its 401 rule ([`session`]), listing with paging
//! and renewing the tokens that are due ([`extend`]). `datasources
//! list|show|extend|register` and `watch --datasources` render what these
//! return; nothing here prints.
//!
//! A data source's `jwsToken` is a bearer credential that Webex presents to
//! the data provider. It is held as a [`SecretString`] from the moment a
//! response is parsed, and people only ever see its expiry and fingerprint.

pub mod extend;
mod model;
pub mod session;

#[cfg(test)]
pub(crate) use model::test_support;
pub use model::{DataSource, parse_list, parse_source, shown};

use crate::chain::{Action, Check, Policy};
use crate::config::Config;
use crate::engine::{self, Ctx};
use crate::error::{DsError, Error};
use crate::secret::SecretString;
use crate::settings::{OrgTarget, Settings};
use crate::store::{LockScope, Snapshot, Store, StoreError, TokenStore};
use crate::tokens::{OrgId, RenewableUpdate, StoredTokens};
use crate::webex::{DataSourcesApi, HttpApi, MAX_PAGES, NextPage, Page};
use session::{NoRenewal, Renew, Renewed, Session};
use std::cell::RefCell;
use std::time::Duration;

/// How long the service-app token must still be valid before a data-source
/// call; the same default as `refresh`/`token`, so at most one refresh.
pub const SERVICE_TOKEN_MIN_VALID: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// The session: a working service-app token and the HTTP client

/// Renews the service-app token through the engine after Webex rejected it.
pub struct EngineRenew<'a> {
    settings: &'a Settings,
    command: &'static str,
    org: &'a OrgFiles,
}

/// The org a data-source command works on and its files.
pub struct OrgFiles {
    pub org: OrgId,
    pub store: Store,
}

impl OrgFiles {
    /// The one org of a command that needs exactly one (`show`, `register`,
    /// `extend`): the single org, or the one `--org` names.
    pub fn one(settings: &Settings, command: &str) -> Result<OrgFiles, Error> {
        let (org, store) = settings.one_org(command)?;
        Ok(OrgFiles { org, store })
    }

    /// The single org of a config without `serviceApp.orgs`.
    pub fn single(settings: &Settings) -> OrgFiles {
        OrgFiles {
            org: OrgId::configured(),
            store: settings.store(),
        }
    }
}

impl From<OrgTarget> for OrgFiles {
    fn from(t: OrgTarget) -> OrgFiles {
        OrgFiles {
            org: t.org,
            store: t.store,
        }
    }
}

impl Renew for EngineRenew<'_> {
    async fn renew_rejected(&self) -> Result<Renewed, Error> {
        // The 401 already told us the token is rejected: refresh without
        // asking Webex a second time (`force`).
        let policy = Policy {
            min_valid: SERVICE_TOKEN_MIN_VALID,
            force: true,
            mint: false,
            dry_run: false,
            check: Check::TrustExpiry,
        };
        let outcome = engine::ensure(
            &self.org.store,
            |c| self.settings.api(c),
            &policy,
            &self.org.org,
            &Ctx::of(self.settings, self.command, self.org.store.env_path()),
        )
        .await?;
        Ok(Renewed {
            refreshed: matches!(outcome.action, Action::Refreshed { .. }),
            token: outcome.tokens.access_token,
        })
    }
}

pub type Live<'a> = Session<HttpApi, EngineRenew<'a>>;

/// A store that keeps the config it last read, so the run reads the env
/// file and config once (the engine reads them again only to refresh).
struct Remembering<S> {
    inner: S,
    config: RefCell<Option<Config>>,
}

impl<S: TokenStore> TokenStore for Remembering<S> {
    type Guard = S::Guard;
    async fn lock(&self, scope: &LockScope, wait: Duration) -> Result<S::Guard, StoreError> {
        self.inner.lock(scope, wait).await
    }
    async fn load(&self, org: &OrgId) -> Result<Snapshot, StoreError> {
        let snap = self.inner.load(org).await?;
        *self.config.borrow_mut() = Some(snap.config.clone());
        Ok(snap)
    }
    async fn save_service(
        &self,
        guard: &S::Guard,
        org: &OrgId,
        tokens: &StoredTokens,
    ) -> Result<(), StoreError> {
        self.inner.save_service(guard, org, tokens).await
    }
    async fn save_renewable(
        &self,
        guard: &S::Guard,
        update: &RenewableUpdate,
    ) -> Result<(), StoreError> {
        self.inner.save_renewable(guard, update).await
    }
    async fn release(&self, guard: S::Guard) {
        self.inner.release(guard).await
    }
    async fn load_local(&self, org: &OrgId) -> Result<Snapshot, StoreError> {
        let snap = self.inner.load_local(org).await?;
        *self.config.borrow_mut() = Some(snap.config.clone());
        Ok(snap)
    }
}

/// A working service-app token (the stored one when its expiry is beyond
/// [`SERVICE_TOKEN_MIN_VALID`], else through the engine) and a client for
/// the API base the config names, taken from the config the engine read.
pub async fn open<'a>(
    settings: &'a Settings,
    org: &'a OrgFiles,
    command: &'static str,
    retries: bool,
) -> Result<Live<'a>, Error> {
    let store = Remembering {
        inner: org.store.clone(),
        config: RefCell::new(None),
    };
    let working = engine::working_tokens(
        &store,
        |c| settings.api(c),
        SERVICE_TOKEN_MIN_VALID,
        &org.org,
        &Ctx::of(settings, command, org.store.env_path()),
    )
    .await?;
    let config = store.config.into_inner();
    let mut http = settings.http(config.as_ref());
    if !retries {
        http.retry.max_attempts = 1;
    }
    let token = working
        .tokens
        .access_token
        .ok_or_else(|| Error::Other("no service-app access token after the refresh".into()))?;
    Ok(Session::new(
        HttpApi::new(http),
        EngineRenew {
            settings,
            command,
            org,
        },
        token,
        working.refreshed,
    ))
}

/// The session of `watch --datasources`: the watcher's own access token as
/// it is (no refresh on any policy of its own, none after a 401: the
/// watcher's tick is the one place that refreshes, and announces it) and a
/// client for the API base `config` names.
pub fn fixed_session(
    settings: &Settings,
    config: &Config,
    token: SecretString,
) -> Session<HttpApi, NoRenewal> {
    Session::fixed(HttpApi::new(settings.http(Some(config))), token)
}

/// Every data source, following `Link: rel="next"` pages (at most
/// [`MAX_PAGES`], each on the API's own origin).
pub async fn list_all<A: DataSourcesApi, R: Renew>(
    s: &Session<A, R>,
) -> Result<Vec<DataSource>, Error> {
    let what = "GET /dataSources";
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    for page_no in 1..=MAX_PAGES {
        let page: Page = s
            .call(what, async |api: &A, t: &SecretString| {
                api.list_page(t, next.as_deref()).await
            })
            .await?;
        out.extend(parse_list(what, &page.body)?);
        match page.next {
            None => return Ok(out),
            Some(NextPage::Refused(why)) => {
                return Err(DsError::BadResponse {
                    what: format!("{what} (page {page_no})"),
                    why,
                }
                .into());
            }
            Some(NextPage::Url(u)) => {
                if !seen.insert(u.clone()) {
                    return Err(DsError::BadResponse {
                        what: format!("{what} (page {page_no})"),
                        why: "the next-page link repeats an earlier page; the listing would never end".into(),
                    }
                    .into());
                }
                next = Some(u);
            }
        }
    }
    Err(DsError::BadResponse {
        what: what.to_string(),
        why: format!("the listing goes on beyond {MAX_PAGES} pages; stopped there"),
    }
    .into())
}

pub async fn get_one<A: DataSourcesApi, R: Renew>(
    s: &Session<A, R>,
    id: &str,
) -> Result<DataSource, Error> {
    let what = format!("GET /dataSources/{}", shown(id));
    let body = s
        .call(&what, async |api: &A, t: &SecretString| {
            api.get(t, id).await
        })
        .await?;
    Ok(parse_source(&what, &body)?)
}

pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::secret;
    use crate::webex::ApiError;
    use serde_json::Value;

    /// Links on to a new page forever (or `pages` times); counts calls.
    struct Endless {
        pages: usize,
        calls: std::cell::Cell<usize>,
    }

    impl DataSourcesApi for Endless {
        async fn list_page(&self, _: &SecretString, next: Option<&str>) -> Result<Page, ApiError> {
            let n = self.calls.get();
            self.calls.set(n + 1);
            assert_eq!(next.is_none(), n == 0);
            Ok(Page {
                body: format!(r#"{{"items":[{{"id":"ds-{n}"}}]}}"#).into_bytes(),
                next: (n + 1 < self.pages)
                    .then(|| NextPage::Url(format!("http://h/v1/p{}", n + 1))),
            })
        }
        async fn get(&self, _: &SecretString, _: &str) -> Result<Vec<u8>, ApiError> {
            unreachable!()
        }
        async fn put(
            &self,
            _: &SecretString,
            _: &str,
            _: &dyn Fn() -> Value,
        ) -> Result<Vec<u8>, ApiError> {
            unreachable!()
        }
        async fn register(&self, _: &SecretString, _: &Value) -> Result<Vec<u8>, ApiError> {
            unreachable!()
        }
    }

    struct NoRenew;
    impl Renew for NoRenew {
        async fn renew_rejected(&self) -> Result<Renewed, Error> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn listing_follows_pages_and_stops_at_the_cap() {
        let api = |pages| Endless {
            pages,
            calls: std::cell::Cell::new(0),
        };
        let s = Session::new(api(3), NoRenew, secret("t"), false);
        let all = list_all(&s).await.unwrap();
        assert_eq!(
            all.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["ds-0", "ds-1", "ds-2"]
        );
        let s = Session::new(api(usize::MAX), NoRenew, secret("t"), false);
        let e = list_all(&s).await.unwrap_err();
        assert!(e.to_string().contains("beyond 1000 pages"), "{e}");
        assert_eq!(s.api.calls.get(), MAX_PAGES);
    }

    #[test]
    fn exit_codes() {
        use crate::webex::{ErrorBody, TransientReason};
        let api = |status| DsError::Api {
            what: "PUT".into(),
            error: crate::webex::classify(status, ErrorBody::default()).unwrap_or_else(|(r, b)| {
                ApiError::Transient {
                    reason: r,
                    body: Some(b),
                    attempts: 4,
                }
            }),
        };
        assert_eq!(Error::from(api(404)).exit_code(), 3);
        assert_eq!(Error::from(api(403)).exit_code(), 3);
        assert_eq!(Error::from(api(500)).exit_code(), 1);
        assert_eq!(Error::from(api(429)).exit_code(), 1);
        let rejected = DsError::TokenRejected {
            what: "GET".into(),
            error: ApiError::Transient {
                reason: TransientReason::Timeout,
                body: None,
                attempts: 1,
            },
            refreshed: true,
        };
        assert_eq!(Error::from(rejected).exit_code(), 4);
        assert_eq!(Error::DataSource(api(404)).exit_code(), 3);
    }
}
