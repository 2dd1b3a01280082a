//! The service-app token for data-source calls, and the rule for a 401:
//! the token is renewed once per run (a refresh without a second
//! validation request, since the 401 already said it is rejected) and the
//! call retried; a 401 after that — or after a refresh this run already
//! made up front — is final ("re-authorization required").
//!
//! `watch --datasources` uses a session that never renews ([`Session::fixed`]):
//! the watcher's own tick is the one place that refreshes (and announces
//! it), so a 401 is reported as the failure of the call that got it.
//!
//! Generic over the API and over how a token is renewed, so the rule is
//! unit-tested with fakes. Calls may run concurrently (`extend`): they share
//! the token, and only one of them renews it.

use crate::error::{DsError, Error};
use crate::secret::SecretString;
use crate::webex::ApiError;
use std::cell::RefCell;

/// A token renewed after a 401.
pub struct Renewed {
    pub token: Option<SecretString>,
    /// The chain really refreshed it (not just found another run's).
    pub refreshed: bool,
}

/// Gives a new service-app token after Webex rejected the current one.
#[allow(async_fn_in_trait)]
pub trait Renew {
    async fn renew_rejected(&self) -> Result<Renewed, Error>;
}

/// The renewal of a session that never renews ([`Session::fixed`]).
pub struct NoRenewal;

impl Renew for NoRenewal {
    async fn renew_rejected(&self) -> Result<Renewed, Error> {
        Err(Error::Other(
            "internal error: a fixed-token data-source session tried to renew its token".into(),
        ))
    }
}

struct State {
    token: SecretString,
    /// Bumped when the token is replaced, so a call that failed with an old
    /// token just retries with the new one.
    generation: u32,
    /// The chain refreshed the token in this run (up front or after a 401).
    refreshed: bool,
    /// No more renewals in this run: one was made (or the token is brand
    /// new from an up-front refresh, which another refresh cannot cure).
    spent: bool,
}

pub struct Session<A, R> {
    pub api: A,
    renew: R,
    state: RefCell<State>,
    /// Held while a renewal runs, so concurrent 401s renew only once.
    gate: tokio::sync::Mutex<()>,
    /// A 401 renews the token (else it is the failure of that call).
    renews: bool,
}

impl<A> Session<A, NoRenewal> {
    /// A session with `token` as it is: a 401 is never answered by a
    /// refresh, it fails the call as a [`DsError::Api`] with the 401.
    pub fn fixed(api: A, token: SecretString) -> Self {
        let mut s = Session::new(api, NoRenewal, token, false);
        s.renews = false;
        s
    }
}

impl<A, R: Renew> Session<A, R> {
    pub fn new(api: A, renew: R, token: SecretString, refreshed_up_front: bool) -> Self {
        Session {
            api,
            renew,
            state: RefCell::new(State {
                token,
                generation: 0,
                refreshed: refreshed_up_front,
                spent: refreshed_up_front,
            }),
            gate: tokio::sync::Mutex::new(()),
            renews: true,
        }
    }

    /// The chain refreshed the service-app token in this run.
    pub fn refreshed(&self) -> bool {
        self.state.borrow().refreshed
    }

    /// Makes one call with the token; on a 401 renews the token (once per
    /// run) and retries once.
    pub async fn call<T>(
        &self,
        what: &str,
        f: impl AsyncFn(&A, &SecretString) -> Result<T, ApiError>,
    ) -> Result<T, Error> {
        let mut retried = false;
        loop {
            let (token, generation) = {
                let s = self.state.borrow();
                (s.token.clone(), s.generation)
            };
            let error = match f(&self.api, &token).await {
                Ok(v) => return Ok(v),
                Err(error @ ApiError::Rejected { .. }) => error,
                Err(error) => {
                    return Err(Error::DataSource(DsError::Api {
                        what: what.to_string(),
                        error,
                    }));
                }
            };
            let rejected = |error| {
                Err(Error::DataSource(DsError::TokenRejected {
                    what: what.to_string(),
                    error,
                    refreshed: self.refreshed(),
                }))
            };
            if !self.renews {
                // That call's own failure: whether the token itself is
                // rejected is for the caller to tell (a 401 on the listing
                // says so; one on a single data source does not).
                return Err(Error::DataSource(DsError::Api {
                    what: what.to_string(),
                    error,
                }));
            }
            if retried {
                return rejected(error);
            }
            retried = true;
            let _gate = self.gate.lock().await;
            let (current, spent) = {
                let s = self.state.borrow();
                (s.generation, s.spent)
            };
            if current != generation {
                // Another call renewed the token meanwhile: use the new one.
                continue;
            }
            if spent {
                return rejected(error);
            }
            tracing::warn!(
                "{what}: Webex rejected the service-app access token ({error}); refreshing it once"
            );
            self.state.borrow_mut().spent = true;
            let renewed = self.renew.renew_rejected().await?;
            let mut s = self.state.borrow_mut();
            s.refreshed |= renewed.refreshed;
            if let Some(t) = renewed.token {
                s.token = t;
            }
            s.generation += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{ExposeSecret, secret};
    use crate::webex::{ErrorBody, classify};
    use std::cell::Cell;

    fn status(code: u16) -> ApiError {
        classify(code, ErrorBody::default()).expect("a final status")
    }

    /// Accepts only `good`; counts calls.
    struct Fake {
        good: &'static str,
        calls: Cell<u32>,
    }

    struct FakeRenew {
        gives: Option<&'static str>,
        count: Cell<u32>,
    }

    impl Renew for FakeRenew {
        async fn renew_rejected(&self) -> Result<Renewed, Error> {
            self.count.set(self.count.get() + 1);
            Ok(Renewed {
                token: self.gives.map(secret),
                refreshed: true,
            })
        }
    }

    fn session(
        good: &'static str,
        gives: Option<&'static str>,
        up_front: bool,
    ) -> Session<Fake, FakeRenew> {
        Session::new(
            Fake {
                good,
                calls: Cell::new(0),
            },
            FakeRenew {
                gives,
                count: Cell::new(0),
            },
            secret("old"),
            up_front,
        )
    }

    async fn get(s: &Session<Fake, FakeRenew>) -> Result<String, Error> {
        s.call("GET /x", async |api: &Fake, t: &SecretString| {
            api.calls.set(api.calls.get() + 1);
            // Let the other calls of a `join!` start with the same token.
            tokio::task::yield_now().await;
            if t.expose_secret() == api.good {
                Ok(t.expose_secret().to_string())
            } else {
                Err(status(401))
            }
        })
        .await
    }

    fn rejected(r: Result<String, Error>) -> bool {
        match r {
            Err(Error::DataSource(DsError::TokenRejected { refreshed, .. })) => refreshed,
            other => panic!("not TokenRejected: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_200_passes_through() {
        let s = session("old", Some("new"), false);
        assert_eq!(get(&s).await.unwrap(), "old");
        assert_eq!(s.api.calls.get(), 1);
        assert_eq!(s.renew.count.get(), 0);
        assert!(!s.refreshed());
    }

    #[tokio::test]
    async fn a_401_renews_once_and_the_retry_succeeds() {
        let s = session("new", Some("new"), false);
        assert_eq!(get(&s).await.unwrap(), "new");
        assert_eq!(s.api.calls.get(), 2);
        assert_eq!(s.renew.count.get(), 1);
        assert!(s.refreshed());
        // Later calls use the new token and never renew again.
        assert_eq!(get(&s).await.unwrap(), "new");
        assert_eq!(s.renew.count.get(), 1);
    }

    #[tokio::test]
    async fn a_401_after_the_renewal_is_final() {
        let s = session("never", Some("new"), false);
        assert!(rejected(get(&s).await), "refreshed=true");
        assert_eq!(s.api.calls.get(), 2);
        assert_eq!(s.renew.count.get(), 1);
        // The run has spent its renewal: the next 401 is final at once.
        assert!(rejected(get(&s).await));
        assert_eq!(s.api.calls.get(), 3);
        assert_eq!(s.renew.count.get(), 1);
    }

    #[tokio::test]
    async fn a_401_right_after_an_up_front_refresh_is_final() {
        let s = session("new", Some("new"), true);
        assert!(rejected(get(&s).await));
        assert_eq!(s.api.calls.get(), 1);
        assert_eq!(s.renew.count.get(), 0);
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let s = session("old", Some("new"), false);
        let r = s
            .call("PUT /x", async |_: &Fake, _: &SecretString| {
                Err::<(), _>(status(404))
            })
            .await;
        assert!(matches!(r, Err(Error::DataSource(DsError::Api { .. }))));
        assert_eq!(s.renew.count.get(), 0);
    }

    #[tokio::test]
    async fn a_fixed_session_never_renews_and_fails_only_the_call() {
        let s = Session::fixed(
            Fake {
                good: "new",
                calls: Cell::new(0),
            },
            secret("old"),
        );
        let r = s
            .call("PUT /x", async |api: &Fake, t: &SecretString| {
                api.calls.set(api.calls.get() + 1);
                if t.expose_secret() == api.good {
                    Ok(())
                } else {
                    Err(status(401))
                }
            })
            .await;
        match r {
            Err(Error::DataSource(DsError::Api { error, .. })) => {
                assert_eq!(error.status(), Some(401));
            }
            other => panic!("not the call's own 401: {other:?}"),
        }
        // One try, no renewal, nothing refreshed.
        assert_eq!(s.api.calls.get(), 1);
        assert!(!s.refreshed());
    }

    #[tokio::test]
    async fn concurrent_401s_renew_once() {
        let s = session("new", Some("new"), false);
        let (a, b, c) = tokio::join!(get(&s), get(&s), get(&s));
        for r in [a, b, c] {
            assert_eq!(r.unwrap(), "new");
        }
        // Three 401s with the old token, one renewal, three retries.
        assert_eq!(s.renew.count.get(), 1);
        assert_eq!(s.api.calls.get(), 6);
    }
}
