//! What `/healthz` and `/metrics` report: one health entry per org
//! watched (working while its access token is valid for more than half of
//! `--min-valid` and was not rejected by Webex in this run) and the
//! Prometheus metric families.

use crate::chain::{Action, Outcome, Validation};
use crate::clock;
use crate::error::{Error, exit};
use crate::names::SCHEMA_VERSION;
use crate::secret::fingerprint;
use crate::tokens::{OrgId, StoredTokens};
use jiff::Timestamp;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

type Labels = Vec<(String, String)>;

/// The labels of one org's sample: `org="NAME"` first when the config lists
/// orgs (`serviceApp.orgs`); none for the single configured org, whose
/// samples keep the label sets they always had.
fn labels(org: &OrgId, pairs: &[(&str, &str)]) -> Labels {
    org.name()
        .map(|n| ("org".to_string(), n.to_string()))
        .into_iter()
        .chain(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// The key of an org's health entry ("" for the single configured org).
fn org_key(org: &OrgId) -> String {
    org.name().unwrap_or_default().to_string()
}

/// What `/healthz` and `/metrics` report, shared with the server thread:
/// one health entry per org watched, and metric families labelled by org.
pub struct Monitor {
    min_valid: Duration,
    /// By org name (sorted, so the health body lists them in a stable order).
    state: Mutex<BTreeMap<String, HealthState>>,
    registry: Registry,
    expiry: Family<Labels, Gauge>,
    refreshes: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    hooks: Family<Labels, Counter>,
    validations: Family<Labels, Counter>,
    last_success: Family<Labels, Gauge>,
    rejected: Family<Labels, Gauge>,
    /// The device-grant code a person should enter (`/healthz`'s `reauth`).
    reauth: Mutex<Option<Value>>,
    reauth_pending: Gauge,
    reauth_codes: Counter,
}

#[derive(Default)]
struct HealthState {
    access_expires_at: Option<Timestamp>,
    has_access_token: bool,
    /// The fingerprint of the access token last seen stored (to tell a
    /// newly saved token from the one Webex rejected).
    token: Option<String>,
    /// Webex rejected the stored access token (a 401) at this time, and it
    /// is still the one stored: whatever its expiry says, it does not work.
    rejected_at: Option<Timestamp>,
    last_success: Option<Timestamp>,
    last_error: Option<String>,
    needs_attention: bool,
    next: Option<(Timestamp, &'static str)>,
}

impl Monitor {
    pub fn new(min_valid: Duration) -> Monitor {
        let expiry = Family::<Labels, Gauge>::default();
        let refreshes = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let hooks = Family::<Labels, Counter>::default();
        let validations = Family::<Labels, Counter>::default();
        let last_success = Family::<Labels, Gauge>::default();
        let rejected = Family::<Labels, Gauge>::default();
        let mut r = Registry::with_prefix("webex_token");
        r.register(
            "expiry_timestamp_seconds",
            "When each stored credential expires (Unix time; absent when unknown)",
            expiry.clone(),
        );
        r.register(
            "refreshes",
            "Token refreshes and rolls by chain level and outcome",
            refreshes.clone(),
        );
        r.register(
            "failures",
            "Failed ticks by kind (transient, config, reauthorization_required)",
            failures.clone(),
        );
        r.register(
            "hook_runs",
            "--on-refresh hook runs by outcome",
            hooks.clone(),
        );
        r.register(
            "validations",
            "Ticks that found the stored access token working",
            validations.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "When a tick last ended with a working token (Unix time)",
            last_success.clone(),
        );
        r.register(
            "access_token_rejected",
            "1 while the stored service-app access token is one Webex rejected (401) in this run",
            rejected.clone(),
        );
        let reauth_pending = Gauge::default();
        let reauth_codes = Counter::default();
        r.register(
            "reauth_pending",
            "1 while watch waits for a person to approve a device-grant code",
            reauth_pending.clone(),
        );
        r.register(
            "reauth_codes_requested",
            "Device-grant codes asked for by watch to re-authorize the integration",
            reauth_codes.clone(),
        );
        Monitor {
            reauth: Mutex::new(None),
            reauth_pending,
            reauth_codes,
            min_valid,
            state: Mutex::new(BTreeMap::new()),
            registry: r,
            expiry,
            refreshes,
            failures,
            hooks,
            validations,
            last_success,
            rejected,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, HealthState>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An org to report on, before anything is known about it (so that an
    /// org whose first tick has not ended yet counts as not working).
    pub fn register(&self, org: &OrgId) {
        self.lock().entry(org_key(org)).or_default();
        // Every counter series a dashboard or an alert rule asks about is
        // exported from the start, at 0: `rate()` and `increase()` need the
        // series before its first event, and "absent" is not "none yet".
        drop(self.validations.get_or_create(&labels(org, &[])));
        self.rejected.get_or_create(&labels(org, &[])).set(0);
        for level in ["1", "2", "3"] {
            for outcome in ["ok", "rejected"] {
                drop(
                    self.refreshes
                        .get_or_create(&labels(org, &[("level", level), ("outcome", outcome)])),
                );
            }
        }
        for kind in ["transient", "config", "reauthorization_required"] {
            drop(self.failures.get_or_create(&labels(org, &[("kind", kind)])));
        }
        for outcome in ["ok", "failed", "timeout"] {
            drop(
                self.hooks
                    .get_or_create(&labels(org, &[("outcome", outcome)])),
            );
        }
    }

    /// An org no longer watched (taken out of the config): its health entry
    /// and every metric series labelled with it go, so that neither
    /// `/healthz` nor `/metrics` reports on it any more. Call it once the
    /// org's loop has ended (a last tick would report it again).
    pub fn unregister(&self, org: &OrgId) {
        self.lock().remove(&org_key(org));
        // prometheus-client removes a series only by its exact labels (no
        // "every series with org=…"): these are all the label values the
        // families are given.
        let l = |pairs: &[(&str, &str)]| labels(org, pairs);
        self.validations.remove(&l(&[]));
        self.last_success.remove(&l(&[]));
        self.rejected.remove(&l(&[]));
        for credential in [
            "service_access_token",
            "service_refresh_token",
            "personal_access_token",
            "integration_refresh_token",
        ] {
            self.expiry.remove(&l(&[("credential", credential)]));
        }
        for level in ["1", "2", "3"] {
            for outcome in ["ok", "rejected", "transient", "succeeded"] {
                self.refreshes
                    .remove(&l(&[("level", level), ("outcome", outcome)]));
            }
        }
        for kind in [
            "transient",
            "usage",
            "config",
            "reauthorization_required",
            "expiring",
            "exec",
        ] {
            self.failures.remove(&l(&[("kind", kind)]));
        }
        for outcome in ["ok", "failed", "timeout"] {
            self.hooks.remove(&l(&[("outcome", outcome)]));
        }
    }

    fn with<R>(&self, org: &OrgId, f: impl FnOnce(&mut HealthState) -> R) -> R {
        f(self.lock().entry(org_key(org)).or_default())
    }

    /// The stored access token is now `tokens`': a different token than
    /// the one Webex rejected ends the rejection.
    fn stored_now(&self, org: &OrgId, s: &mut HealthState, tokens: &StoredTokens) {
        s.access_expires_at = tokens.access_expires_at;
        s.has_access_token = tokens.access_token.is_some();
        let token = tokens.access_token.as_ref().map(fingerprint);
        if token != s.token {
            s.token = token;
            self.clear_rejection(org, s);
        }
    }

    fn clear_rejection(&self, org: &OrgId, s: &mut HealthState) {
        s.rejected_at = None;
        self.rejected.get_or_create(&labels(org, &[])).set(0);
    }

    /// Webex rejected the stored access token (a 401 on validation, or on
    /// the data-source listing) at `now`: it is not working until a new
    /// token is stored or the stored one validates again.
    pub fn rejected(&self, org: &OrgId, now: Timestamp) {
        self.rejected.get_or_create(&labels(org, &[])).set(1);
        self.with(org, |s| {
            if s.rejected_at.is_none() {
                s.rejected_at = Some(now);
            }
        });
    }

    /// When the org's stored access token expires, if it is working now
    /// (what `/healthz` reports for it): the rule for READY and STATUS too.
    pub fn working_until(&self, org: &OrgId, now: Timestamp) -> Option<Timestamp> {
        self.with(org, |s| {
            self.is_working(s, now)
                .then_some(s.access_expires_at)
                .flatten()
        })
    }

    fn is_working(&self, s: &HealthState, now: Timestamp) -> bool {
        let left = s.access_expires_at.map(|e| clock::seconds_until(now, e));
        s.has_access_token
            && s.rejected_at.is_none()
            && left.is_some_and(|l| l > 0 && l as u64 > self.min_valid.as_secs() / 2)
    }

    fn set_expiry(&self, org: &OrgId, credential: &str, at: Option<Timestamp>) {
        let l = labels(org, &[("credential", credential)]);
        match at {
            Some(t) => {
                self.expiry.get_or_create(&l).set(t.as_second());
            }
            None => {
                self.expiry.remove(&l);
            }
        }
    }

    /// The stored state as read at the start of a tick.
    pub fn observe(&self, org: &OrgId, t: &StoredTokens, config: &crate::config::Config) {
        self.set_expiry(org, "service_access_token", t.access_expires_at);
        self.set_expiry(org, "service_refresh_token", t.refresh_expires_at);
        self.set_expiry(org, "personal_access_token", config.personal_expires_at);
        self.set_expiry(
            org,
            "integration_refresh_token",
            config
                .integration
                .as_ref()
                .and_then(|i| i.refresh_expires_at),
        );
        self.with(org, |s| self.stored_now(org, s, t));
    }

    pub fn set_next(&self, org: &OrgId, at: Timestamp, task: &'static str) {
        self.with(org, |s| s.next = Some((at, task)));
    }

    pub fn succeeded(&self, org: &OrgId, now: Timestamp, o: &Outcome) {
        match &o.action {
            Action::Refreshed { level, .. } => {
                self.refreshes
                    .get_or_create(&labels(
                        org,
                        &[("level", &level.number().to_string()), ("outcome", "ok")],
                    ))
                    .inc();
            }
            _ => {
                self.validations.get_or_create(&labels(org, &[])).inc();
            }
        }
        self.last_success
            .get_or_create(&labels(org, &[]))
            .set(now.as_second());
        self.set_expiry(org, "service_access_token", o.tokens.access_expires_at);
        self.set_expiry(org, "service_refresh_token", o.tokens.refresh_expires_at);
        self.with(org, |s| {
            s.last_success = Some(now);
            s.last_error = None;
            s.needs_attention = false;
            self.stored_now(org, s, &o.tokens);
            // The same token, and Webex accepted it just now.
            if matches!(
                o.action,
                Action::Kept(Validation::Checked | Validation::CheckedWithoutScope)
            ) {
                self.clear_rejection(org, s);
            }
        });
    }

    /// A tick (`main`: of the token, not a roll or the data sources)
    /// failed with `e`. A chain that saw the stored token rejected marks
    /// it so ([`Monitor::rejected`]).
    pub fn failed(&self, org: &OrgId, e: &Error, main: bool) {
        if let Error::Chain(c) = e
            && c.stored_token_rejected()
        {
            self.rejected(org, clock::now());
        }
        self.failures
            .get_or_create(&labels(org, &[("kind", e.kind())]))
            .inc();
        for a in e.attempts() {
            let r = a.record();
            if r.result != "skipped" {
                self.refreshes
                    .get_or_create(&labels(
                        org,
                        &[("level", &r.level.to_string()), ("outcome", r.result)],
                    ))
                    .inc();
            }
        }
        self.with(org, |s| {
            s.last_error = Some(e.to_string());
            if main {
                s.needs_attention = e.exit_code() != exit::TRANSIENT;
            }
        });
    }

    /// The code a person should enter now (`None`: none is out).
    pub fn set_reauth(&self, code: Option<(&str, &str, Timestamp)>) {
        let v = code.map(|(url, user_code, expires)| {
            json!({
                "verifyUrl": url,
                "userCode": user_code,
                "codeExpiresAt": clock::format_utc(expires),
            })
        });
        self.reauth_pending.set(i64::from(v.is_some()));
        *self.reauth.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }

    pub fn reauth_code_requested(&self) {
        self.reauth_codes.inc();
    }

    pub fn hook(&self, org: &OrgId, outcome: &str) {
        self.hooks
            .get_or_create(&labels(org, &[("outcome", outcome)]))
            .inc();
    }

    /// One org's health: working while its stored access token is valid for
    /// more than half of `--min-valid` and Webex has not rejected it.
    fn org_health(
        &self,
        s: &HealthState,
        now: Timestamp,
    ) -> (bool, serde_json::Map<String, Value>) {
        let left = s.access_expires_at.map(|e| clock::seconds_until(now, e));
        let healthy = self.is_working(s, now);
        let body = json!({
            "status": if healthy { "ok" } else { "unhealthy" },
            "accessTokenPresent": s.has_access_token,
            "rejected": s.rejected_at.is_some(),
            "rejectedAt": s.rejected_at.map(clock::format_utc),
            "accessTokenExpiresAt": s.access_expires_at.map(clock::format_utc),
            "secondsLeft": left,
            "lastSuccess": s.last_success.map(clock::format_utc),
            "lastError": s.last_error,
            "needsAttention": s.needs_attention,
            "next": s.next.map(|(at, task)| json!({"task": task, "at": clock::format_utc(at)})),
        });
        let Value::Object(m) = body else {
            unreachable!("a JSON object literal")
        };
        (healthy, m)
    }

    /// `/healthz`: 200 when every org watched has a working token, 503
    /// otherwise. The single configured org's fields are the body's own;
    /// with `serviceApp.orgs`, the body has an `orgs` array (each org's
    /// fields and its `org` name) and `failingOrgs`, the names of those
    /// without a working token.
    pub fn health(&self, now: Timestamp) -> (u16, Value) {
        let states = self.lock();
        let mut all_ok = !states.is_empty();
        let mut attention = false;
        let mut failing = Vec::new();
        let mut orgs = Vec::new();
        let mut single = None;
        for (name, s) in states.iter() {
            let (ok, mut m) = self.org_health(s, now);
            all_ok &= ok;
            attention |= s.needs_attention;
            if name.is_empty() {
                single = Some(m);
                continue;
            }
            if !ok {
                failing.push(name.clone());
            }
            m.insert("org".into(), json!(name));
            orgs.push(Value::Object(m));
        }
        let mut body = serde_json::Map::new();
        body.insert("schemaVersion".into(), json!(SCHEMA_VERSION));
        match single {
            Some(m) if orgs.is_empty() => body.extend(m),
            _ => {
                body.insert(
                    "status".into(),
                    json!(if all_ok { "ok" } else { "unhealthy" }),
                );
                body.insert("needsAttention".into(), json!(attention));
                body.insert("failingOrgs".into(), json!(failing));
                body.insert("orgs".into(), Value::Array(orgs));
            }
        }
        if states.is_empty() {
            body.insert("status".into(), json!("unhealthy"));
        }
        if let Some(r) = self
            .reauth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            body.insert("reauth".into(), r);
        }
        (if all_ok { 200 } else { 503 }, Value::Object(body))
    }

    /// `/metrics` in OpenMetrics text 1.0.0 (what the registry encodes).
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!("could not encode the metrics: {e}");
        }
        out
    }

    /// `/metrics` in the Prometheus text format 0.0.4, for scrapers that do
    /// not ask for OpenMetrics (and `promtool check metrics`).
    pub fn metrics_text(&self) -> String {
        openmetrics_to_text(&self.metrics())
    }
}

/// OpenMetrics text as Prometheus text 0.0.4. prometheus-client encodes
/// only OpenMetrics, and the two differ, for the counters and gauges we
/// have, in three points (a second metrics crate for this would be heavier
/// than these lines): a counter family's `# HELP`/`# TYPE` name its samples
/// (`…_total`), there is no `# UNIT` line, and no `# EOF`.
fn openmetrics_to_text(om: &str) -> String {
    let lines: Vec<&str> = om.lines().collect();
    let mut counters = std::collections::HashSet::new();
    for l in &lines {
        if let Some(rest) = l.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(om.len());
    for l in lines {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = l.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(l));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::secret;

    fn tokens(now: Timestamp, left: u64) -> StoredTokens {
        StoredTokens {
            access_token: Some(secret("at")),
            access_expires_at: Some(clock::after(now, left)),
            refresh_token: Some(secret("rt")),
            refresh_expires_at: None,
        }
    }

    fn one() -> OrgId {
        OrgId::configured()
    }

    fn outcome(t: StoredTokens) -> Outcome {
        Outcome {
            action: Action::Refreshed {
                level: crate::chain::Level::ServiceRefreshToken,
                trigger: crate::chain::Trigger::Forced,
            },
            tokens: t,
            attempts: Vec::new(),
            personal_renewed: false,
            tracking_id: None,
        }
    }

    #[test]
    fn an_org_unregistered_leaves_health_and_every_metric_family() {
        let m = Monitor::new(Duration::from_secs(3600));
        let now = clock::now();
        let (a, b) = (OrgId::listed(0, "a", "A"), OrgId::listed(1, "b", "B"));
        for org in [&a, &b] {
            m.register(org);
            m.succeeded(org, now, &outcome(tokens(now, 7200)));
            m.hook(org, "timeout");
            let missing = crate::config::ConfigError::NotFound { path: "/c".into() };
            m.failed(org, &Error::Config(missing), true);
        }
        assert!(m.metrics().contains("org=\"b\""));
        m.unregister(&b);
        let metrics = m.metrics();
        assert!(!metrics.contains("org=\"b\""), "{metrics}");
        assert!(metrics.contains("org=\"a\",kind=\"config\""), "{metrics}");
        let (status, body) = m.health(now);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["orgs"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body["orgs"][0]["org"], "a", "{body}");
    }

    #[test]
    fn healthy_while_valid_for_more_than_half_of_min_valid() {
        let m = Monitor::new(Duration::from_secs(3600));
        let now = clock::now();
        // Nothing stored yet.
        assert_eq!(m.health(now).0, 503);
        m.succeeded(&one(), now, &outcome(tokens(now, 1801)));
        let (status, body) = m.health(now);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "ok");
        m.succeeded(&one(), now, &outcome(tokens(now, 1800)));
        assert_eq!(m.health(now).0, 503);
        // Expired: unhealthy whatever min_valid says.
        let short = Monitor::new(Duration::ZERO);
        short.succeeded(&one(), now, &outcome(tokens(now, 0)));
        assert_eq!(short.health(now).0, 503);
    }

    #[test]
    fn a_rejected_token_is_unhealthy_until_a_new_one_or_a_validation() {
        let m = Monitor::new(Duration::from_secs(3600));
        let now = clock::now();
        let config = crate::config::Config::empty_state(std::path::Path::new("c.json"));
        m.register(&one());
        let t = tokens(now, 14 * 86400);
        m.observe(&one(), &t, &config);
        assert_eq!(m.health(now).0, 200);
        m.rejected(&one(), now);
        let (status, body) = m.health(now);
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["rejected"], true, "{body}");
        assert_eq!(body["rejectedAt"], clock::format_utc(now), "{body}");
        assert!(m.working_until(&one(), now).is_none());
        assert!(
            m.metrics()
                .contains("\nwebex_token_access_token_rejected 1\n")
        );
        // Read again from the store, unchanged: still rejected.
        m.observe(&one(), &t, &config);
        assert_eq!(m.health(now).0, 503);
        // A check that kept it on the stored expiry alone proves nothing.
        let mut kept = outcome(t.clone());
        kept.action = Action::Kept(Validation::TrustedExpiry);
        m.succeeded(&one(), now, &kept);
        assert_eq!(m.health(now).0, 503);
        // Webex accepted it after all (a passing 401): working again.
        kept.action = Action::Kept(Validation::Checked);
        m.succeeded(&one(), now, &kept);
        assert_eq!(m.health(now).0, 200);
        assert!(
            m.metrics()
                .contains("\nwebex_token_access_token_rejected 0\n")
        );
        // Rejected again; then another run saves a new token.
        m.rejected(&one(), now);
        let mut new = tokens(now, 14 * 86400);
        new.access_token = Some(crate::secret::secret("at-2"));
        m.observe(&one(), &new, &config);
        let (status, body) = m.health(now);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["rejectedAt"], Value::Null, "{body}");
    }

    #[test]
    fn a_pending_code_is_in_health_and_metrics_until_a_new_token_is_saved() {
        let m = Monitor::new(Duration::from_secs(3600));
        let now = clock::now();
        m.succeeded(&one(), now, &outcome(tokens(now, 7200)));
        let rejected = Error::Chain(crate::chain::ChainError::Exhausted {
            attempts: Vec::new(),
            stored_rejected: true,
        });
        m.failed(&one(), &rejected, true);
        // The file still holds it, valid by its stored expiry.
        m.set_reauth(Some(("https://example.test/verify", "ABCD", now)));
        let (status, body) = m.health(now);
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["reauth"]["userCode"], "ABCD");
        assert!(m.metrics().contains("webex_token_reauth_pending 1"));
        m.set_reauth(None);
        let mut renewed = tokens(now, 7200);
        renewed.access_token = Some(secret("at-2"));
        m.succeeded(&one(), now, &outcome(renewed));
        let (status, body) = m.health(now);
        assert_eq!(status, 200, "{body}");
        assert!(body.get("reauth").is_none(), "{body}");
        assert!(m.metrics().contains("webex_token_reauth_pending 0"));
    }

    #[test]
    fn metrics_name_each_credential_and_count_refreshes() {
        let m = Monitor::new(Duration::from_secs(3600));
        let now = clock::now();
        m.succeeded(&one(), now, &outcome(tokens(now, 7200)));
        m.hook(&one(), "timeout");
        let text = m.metrics();
        let exp = clock::after(now, 7200).as_second();
        assert!(
            text.contains(&format!(
                "webex_token_expiry_timestamp_seconds{{credential=\"service_access_token\"}} {exp}"
            )),
            "{text}"
        );
        // Unknown expiry: no sample rather than a made-up one.
        assert!(
            !text.contains("credential=\"service_refresh_token\""),
            "{text}"
        );
        assert!(text.contains("webex_token_refreshes_total{level=\"1\",outcome=\"ok\"} 1"));
        assert!(text.contains("webex_token_hook_runs_total{outcome=\"timeout\"} 1"));
        // The single org's samples carry no org label (and no empty braces).
        assert!(
            text.contains(&format!(
                "\nwebex_token_last_success_timestamp_seconds {}\n",
                now.as_second()
            )),
            "{text}"
        );
        assert!(!text.contains("org=") && !text.contains("{}"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
        // The same in Prometheus text 0.0.4: counter families named like
        // their samples, no EOF.
        let classic = m.metrics_text();
        assert!(
            classic.contains("# TYPE webex_token_refreshes_total counter\n"),
            "{classic}"
        );
        assert!(
            classic.contains("# HELP webex_token_refreshes_total "),
            "{classic}"
        );
        assert!(
            classic.contains("# TYPE webex_token_expiry_timestamp_seconds gauge\n"),
            "{classic}"
        );
        assert!(classic.contains("webex_token_refreshes_total{level=\"1\",outcome=\"ok\"} 1\n"));
        assert!(
            !classic.contains("# EOF") && !classic.contains("# UNIT"),
            "{classic}"
        );
    }

    #[test]
    fn health_covers_every_org_and_names_the_failing_ones() {
        let m = Monitor::new(Duration::from_secs(3600));
        let now = clock::now();
        let (a, b) = (
            OrgId::listed(0, "acme", "o-a"),
            OrgId::listed(1, "bolt", "o-b"),
        );
        m.register(&a);
        m.register(&b);
        m.succeeded(&a, now, &outcome(tokens(now, 7200)));
        // One org working, the other not yet: 503 naming the other.
        let (status, body) = m.health(now);
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "unhealthy");
        assert_eq!(body["failingOrgs"], json!(["bolt"]));
        assert_eq!(body["orgs"][0]["org"], "acme");
        assert_eq!(body["orgs"][0]["status"], "ok");
        assert_eq!(body["orgs"][1]["status"], "unhealthy");
        m.succeeded(&b, now, &outcome(tokens(now, 7200)));
        let (status, body) = m.health(now);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["failingOrgs"], json!([]));
        // A later success of one org does not hide another's failure.
        m.succeeded(&b, now, &outcome(tokens(now, 60)));
        m.succeeded(&a, now, &outcome(tokens(now, 7200)));
        let (status, body) = m.health(now);
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["failingOrgs"], json!(["bolt"]));
        // Metrics: each sample carries its org.
        let text = m.metrics();
        assert!(
            text.contains("webex_token_refreshes_total{org=\"acme\",level=\"1\",outcome=\"ok\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("webex_token_last_success_timestamp_seconds{org=\"bolt\"}"),
            "{text}"
        );
    }
}
