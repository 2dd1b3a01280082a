//! The device authorization grant (RFC 8628) as Webex answers it: ask for a
//! code, show it, poll until the person approved, declined, or the code
//! lapsed.
//!
//! Polling rules: wait `interval` (Webex: 5 s) before each poll; on
//! `slow_down` (and on 429, which Webex uses for the same purpose) add 5 s
//! to the interval for good, and wait at least what `Retry-After` asks;
//! a transient failure (network, 5xx) is retried at the next interval, up
//! to [`TRANSIENT_LIMIT`] times in a row. The wait ends at `--timeout` or
//! when the device code expires (`expires_in`), whichever is first.

use super::{Countdown, Options, has_display, open_browser, printable};
use crate::clock;
use crate::error::SetupError;
use crate::names::SCOPE_APPLICATIONS_TOKEN;
use crate::secret::SecretString;
use crate::webex::{ClientCredentials, DeviceAuthorization, DevicePoll, OAuthApi, TokenGrant};
use std::io::Write;
use std::time::{Duration, Instant};

/// What RFC 8628 says to add to the interval on `slow_down`.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// The interval when the server names none (RFC 8628 §3.2).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Transient poll failures in a row before giving up.
const TRANSIENT_LIMIT: u32 = 3;

/// Time as the poll loop sees it: real in the program, virtual in tests.
#[allow(async_fn_in_trait)]
pub(crate) trait Pacer {
    /// Time since the wait began.
    fn elapsed(&self) -> Duration;
    /// Waits `d`; `left` is what remains of the whole wait after it.
    async fn sleep(&mut self, d: Duration, left: Duration);
    /// The wait is over (clears a countdown).
    fn finish(&mut self) {}
}

/// The real clock, with a countdown on a terminal.
struct RealPacer {
    start: Instant,
    countdown: Countdown,
    no_delay: bool,
}

impl Pacer for RealPacer {
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    async fn sleep(&mut self, d: Duration, left: Duration) {
        if self.no_delay {
            return;
        }
        let wake = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= wake {
                return;
            }
            self.countdown.tick(left + (wake - now));
            tokio::time::sleep((wake - now).min(Duration::from_millis(200))).await;
        }
    }

    fn finish(&mut self) {
        self.countdown.clear();
    }
}

/// Asks for a device code, shows it, and polls for the tokens.
pub(super) async fn run<A: OAuthApi>(
    api: &A,
    client: &ClientCredentials<'_>,
    opts: &Options,
) -> Result<TokenGrant, SetupError> {
    let d = api
        .device_authorize(client.client_id, SCOPE_APPLICATIONS_TOKEN)
        .await
        .map_err(SetupError::Device)?;
    let shown = Shown::of(&d)?;
    shown.print(opts.timeout);
    if opts.open_browser && has_display() {
        let target = shown.complete.as_deref().unwrap_or(&shown.uri);
        if let Err(e) = open_browser(target) {
            tracing::info!("could not open a browser ({e})");
        }
    }
    let lifetime = d
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(opts.timeout);
    let interval = d
        .interval
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_INTERVAL)
        .max(Duration::from_secs(1));
    let mut pacer = RealPacer {
        start: Instant::now(),
        countdown: Countdown::new(opts.countdown, "the sign-in"),
        no_delay: opts.no_delay,
    };
    let result = poll(
        api,
        client,
        &d.device_code,
        interval,
        opts.timeout.min(lifetime),
        &mut pacer,
    )
    .await;
    pacer.finish();
    result
}

/// The server's texts, made fit for a terminal.
struct Shown {
    uri: String,
    complete: Option<String>,
    user_code: String,
}

impl Shown {
    fn of(d: &DeviceAuthorization) -> Result<Shown, SetupError> {
        let uri = printable(d.verification_uri.trim());
        let user_code = printable(d.user_code.trim());
        if uri.is_empty() || user_code.is_empty() {
            return Err(SetupError::DeviceAnswer(
                "it has no verification address or no user code".into(),
            ));
        }
        Ok(Shown {
            uri,
            user_code,
            complete: d
                .verification_uri_complete
                .as_deref()
                .map(|c| printable(c.trim()))
                .filter(|c| !c.is_empty()),
        })
    }

    fn print(&self, timeout: Duration) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "On any device with a browser, open\n\n  {}\n\nand enter the code\n\n  {}\n",
            self.uri, self.user_code
        );
        if let Some(c) = &self.complete {
            let _ = writeln!(err, "(or open {c} , which fills in the code)");
        }
        let _ = writeln!(
            err,
            "Sign in as the user whose personal access token the integration should keep renewing. This waits up to {}.",
            clock::human_span(timeout.as_secs())
        );
    }
}

/// Polls `/device/token` until the tokens come, the person declines, the
/// code lapses, or `timeout` has passed.
pub(crate) async fn poll<A: OAuthApi, P: Pacer>(
    api: &A,
    client: &ClientCredentials<'_>,
    device_code: &SecretString,
    interval: Duration,
    timeout: Duration,
    pacer: &mut P,
) -> Result<TokenGrant, SetupError> {
    let mut interval = interval;
    let mut wait = interval;
    let mut transient = 0u32;
    loop {
        let left = timeout.saturating_sub(pacer.elapsed());
        if wait >= left {
            pacer.sleep(left, Duration::ZERO).await;
            return Err(SetupError::TimedOut {
                after: timeout,
                refused: 0,
            });
        }
        pacer.sleep(wait, left - wait).await;
        match api.device_token(client, device_code).await {
            Ok(DevicePoll::Granted(g)) => return Ok(g),
            Ok(DevicePoll::Pending) => {
                transient = 0;
                wait = interval;
            }
            Ok(DevicePoll::SlowDown { retry_after }) => {
                transient = 0;
                interval += SLOW_DOWN_STEP;
                wait = interval.max(retry_after.unwrap_or(Duration::ZERO));
                tracing::debug!(
                    "asked to poll more slowly; next poll in {}s",
                    wait.as_secs()
                );
            }
            Ok(DevicePoll::Denied { code }) => {
                return Err(SetupError::Authorization {
                    error: code,
                    description: None,
                });
            }
            Ok(DevicePoll::Expired { code }) => {
                return Err(SetupError::Authorization {
                    error: code,
                    description: Some(
                        "the device code expired before it was approved, or was already used"
                            .into(),
                    ),
                });
            }
            Ok(DevicePoll::Unusable(why)) => return Err(SetupError::BadGrant(why)),
            Err(e) if e.is_transient() && transient + 1 < TRANSIENT_LIMIT => {
                transient += 1;
                tracing::warn!(
                    "POST /device/token: {e}; polling again in {}s",
                    interval.as_secs()
                );
                wait = interval;
            }
            Err(e) => return Err(SetupError::Exchange(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::secret;
    use crate::webex::{ApiError, CodeExchange, ErrorBody, TransientReason};
    use std::cell::RefCell;
    use std::collections::VecDeque;

    /// Answers polls from a script; records when each poll came.
    struct Script {
        answers: RefCell<VecDeque<Result<DevicePoll, ApiError>>>,
    }

    impl Script {
        fn new(answers: Vec<Result<DevicePoll, ApiError>>) -> Script {
            Script {
                answers: RefCell::new(answers.into()),
            }
        }
    }

    impl OAuthApi for Script {
        fn endpoint(&self, path: &str) -> String {
            format!("http://fake.test/v1{path}")
        }
        async fn device_authorize(
            &self,
            _: &str,
            _: &str,
        ) -> Result<DeviceAuthorization, ApiError> {
            unreachable!("not used by poll")
        }
        async fn device_token(
            &self,
            _: &ClientCredentials<'_>,
            _: &SecretString,
        ) -> Result<DevicePoll, ApiError> {
            self.answers
                .borrow_mut()
                .pop_front()
                .unwrap_or(Ok(DevicePoll::Pending))
        }
        async fn exchange_code(
            &self,
            _: &ClientCredentials<'_>,
            _: &CodeExchange<'_>,
        ) -> Result<TokenGrant, ApiError> {
            unreachable!("not used by poll")
        }
    }

    /// Virtual time: sleeping only moves a counter.
    #[derive(Default)]
    struct FakeClock {
        now: Duration,
        sleeps: Vec<Duration>,
    }

    impl Pacer for FakeClock {
        fn elapsed(&self) -> Duration {
            self.now
        }
        async fn sleep(&mut self, d: Duration, _: Duration) {
            self.now += d;
            self.sleeps.push(d);
        }
    }

    fn granted() -> Result<DevicePoll, ApiError> {
        Ok(DevicePoll::Granted(crate::webex::grant(
            "access",
            3600,
            Some(("refresh", 7200)),
        )))
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    async fn run_poll(
        answers: Vec<Result<DevicePoll, ApiError>>,
        interval: u64,
        timeout: u64,
    ) -> (Result<TokenGrant, SetupError>, FakeClock, usize) {
        let api = Script::new(answers);
        let id_secret = secret("client-secret");
        let client = ClientCredentials {
            client_id: "client",
            client_secret: &id_secret,
        };
        let mut clock = FakeClock::default();
        let r = poll(
            &api,
            &client,
            &secret("device-code"),
            secs(interval),
            secs(timeout),
            &mut clock,
        )
        .await;
        let left = api.answers.borrow().len();
        (r, clock, left)
    }

    #[tokio::test]
    async fn pending_pending_then_tokens() {
        let (r, clock, left) = run_poll(
            vec![Ok(DevicePoll::Pending), Ok(DevicePoll::Pending), granted()],
            5,
            300,
        )
        .await;
        assert!(r.is_ok());
        assert_eq!(clock.sleeps, vec![secs(5), secs(5), secs(5)]);
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn slow_down_adds_five_seconds_for_good() {
        let (r, clock, _) = run_poll(
            vec![
                Ok(DevicePoll::Pending),
                Ok(DevicePoll::SlowDown { retry_after: None }),
                Ok(DevicePoll::Pending),
                Ok(DevicePoll::SlowDown { retry_after: None }),
                granted(),
            ],
            5,
            300,
        )
        .await;
        assert!(r.is_ok(), "{:?}", r.err());
        assert_eq!(
            clock.sleeps,
            vec![secs(5), secs(5), secs(10), secs(10), secs(15)]
        );
    }

    #[tokio::test]
    async fn rate_limited_honours_retry_after() {
        let (r, clock, _) = run_poll(
            vec![
                Ok(DevicePoll::SlowDown {
                    retry_after: Some(secs(30)),
                }),
                // A short Retry-After does not undercut the interval.
                Ok(DevicePoll::SlowDown {
                    retry_after: Some(secs(1)),
                }),
                granted(),
            ],
            5,
            300,
        )
        .await;
        assert!(r.is_ok());
        assert_eq!(clock.sleeps, vec![secs(5), secs(30), secs(15)]);
    }

    #[tokio::test]
    async fn access_denied_ends_the_wait() {
        let (r, _, left) = run_poll(
            vec![
                Ok(DevicePoll::Pending),
                Ok(DevicePoll::Denied {
                    code: "access_denied".into(),
                }),
                granted(),
            ],
            5,
            300,
        )
        .await;
        let e = crate::error::Error::from(r.unwrap_err());
        assert_eq!(e.exit_code(), 4);
        assert!(e.to_string().contains("access_denied"), "{e}");
        assert_eq!(left, 1, "no poll after the refusal");
    }

    #[tokio::test]
    async fn invalid_grant_means_start_again() {
        let (r, _, _) = run_poll(
            vec![
                Ok(DevicePoll::Pending),
                Ok(DevicePoll::Expired {
                    code: "invalid_grant".into(),
                }),
            ],
            5,
            300,
        )
        .await;
        let e = crate::error::Error::from(r.unwrap_err());
        assert_eq!(e.exit_code(), 1, "{e}");
        assert!(e.to_string().contains("expired"), "{e}");
        assert!(
            e.hint().unwrap().contains("setup-oauth --device"),
            "{:?}",
            e.hint()
        );
    }

    #[tokio::test]
    async fn deadline_reached_is_a_timeout() {
        let (r, clock, _) = run_poll(vec![], 5, 12).await;
        match r {
            Err(SetupError::TimedOut { after, refused: 0 }) => assert_eq!(after, secs(12)),
            other => panic!("{:?}", other.err()),
        }
        // Two polls (at 5 s and 10 s), then the rest of the wait.
        assert_eq!(clock.sleeps, vec![secs(5), secs(5), secs(2)]);
        assert_eq!(clock.now, secs(12));
    }

    #[tokio::test]
    async fn transient_failures_are_retried_a_few_times() {
        let flaky = || {
            Err(ApiError::Transient {
                reason: TransientReason::Status(503),
                body: Some(ErrorBody::default()),
                attempts: 1,
            })
        };
        let (r, _, _) = run_poll(vec![flaky(), flaky(), granted()], 5, 300).await;
        assert!(r.is_ok());
        let (r, _, _) = run_poll(vec![flaky(), flaky(), flaky(), granted()], 5, 300).await;
        let e = crate::error::Error::from(r.unwrap_err());
        assert_eq!(e.exit_code(), 1);
        // A refusal that is not a device code is final at once.
        let (r, _, left) = run_poll(
            vec![
                Err(ApiError::Rejected {
                    status: 401,
                    body: ErrorBody::default(),
                }),
                granted(),
            ],
            5,
            300,
        )
        .await;
        assert_eq!(crate::error::Error::from(r.unwrap_err()).exit_code(), 4);
        assert_eq!(left, 1);
    }
}
