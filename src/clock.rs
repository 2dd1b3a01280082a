//! "Now", read in one place so tests can pin it (see
//! [`crate::names::ENV_TEST_NOW`]) or shift it while a process runs
//! ([`crate::names::ENV_TEST_CLOCK_OFFSET_FILE`]), plus the time helpers the
//! rest shares.

use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// The current instant, or the test override when one is set.
pub fn now() -> Timestamp {
    if let Ok(v) = std::env::var(crate::names::ENV_TEST_NOW)
        && let Ok(ts) = v.parse::<Timestamp>()
    {
        return ts;
    }
    let now = Timestamp::now();
    match test_offset() {
        Some(shift) => now.checked_add(shift).unwrap_or(now),
        None => now,
    }
}

/// The test hook's shift of the wall clock: the whole seconds written in
/// the file [`crate::names::ENV_TEST_CLOCK_OFFSET_FILE`] names (read anew
/// each time, so a test can move the clock of a running agent). Unset, a
/// missing file or anything but a number: no shift.
fn test_offset() -> Option<SignedDuration> {
    let path = std::env::var_os(crate::names::ENV_TEST_CLOCK_OFFSET_FILE)?;
    let text = std::fs::read_to_string(path).ok()?;
    text.trim()
        .parse::<i64>()
        .ok()
        .map(SignedDuration::from_secs)
}

/// `now + seconds`, saturating instead of overflowing on absurd values.
pub fn after(now: Timestamp, seconds: u64) -> Timestamp {
    let secs = i64::try_from(seconds).unwrap_or(i64::MAX);
    now.checked_add(SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MAX)
}

/// Formats an instant the way the program stores it: RFC 3339, UTC, seconds.
pub fn format_utc(ts: Timestamp) -> String {
    // Round down to whole seconds: sub-second precision is noise in a .env.
    let secs = ts.as_second();
    Timestamp::from_second(secs)
        .unwrap_or(ts)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Parses a stored instant. Any RFC 3339 offset is accepted (a person may
/// have written one by hand); the program itself always writes UTC.
pub fn parse(value: &str) -> Option<Timestamp> {
    value.trim().parse::<Timestamp>().ok()
}

/// Signed seconds from `now` until `then` (negative when passed).
pub fn seconds_until(now: Timestamp, then: Timestamp) -> i64 {
    then.as_second() - now.as_second()
}

/// Human "time left": `13d 23h`, `2h 5m`, `42s`, or `expired 3h ago`.
pub fn human_left(seconds: i64) -> String {
    if seconds < 0 {
        format!("expired {} ago", human_span(seconds.unsigned_abs()))
    } else {
        format!("in {}", human_span(seconds as u64))
    }
}

/// "expires 2026-12-07T19:00:00Z (in 13d 23h)" or "expiry unknown" (for
/// people: messages and logs).
pub fn expiry_text(at: Option<Timestamp>, now: Timestamp) -> String {
    match at {
        Some(t) => format!(
            "expires {} ({})",
            format_utc(t),
            human_left(seconds_until(now, t))
        ),
        None => "expiry unknown".into(),
    }
}

/// Two largest units of a span: `13d 23h`, `5m 2s`.
pub fn human_span(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// Parses a duration flag: `90s`, `30m`, `1h`, `2d`, `1h 30m`, or bare
/// seconds (`3600`).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v).map_err(|e| {
        format!("`{value}` is not a duration ({e}); use e.g. 90s, 30m, 1h, 2d or 1h30m")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_whole_seconds() {
        let ts: Timestamp = "2026-11-23T20:15:30.789+02:00".parse().unwrap();
        assert_eq!(format_utc(ts), "2026-11-23T18:15:30Z");
    }

    #[test]
    fn parses_offsets() {
        let a = parse("2026-11-23T18:15:30Z").unwrap();
        let b = parse("2026-11-23T20:15:30+02:00").unwrap();
        assert_eq!(a, b);
        assert!(parse("tomorrow").is_none());
        assert!(parse("").is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3600").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
    }

    #[test]
    fn human_spans() {
        assert_eq!(human_left(13 * 86_400 + 23 * 3600 + 5), "in 13d 23h");
        assert_eq!(human_left(-3 * 3600), "expired 3h 0m ago");
        assert_eq!(human_span(42), "42s");
        assert_eq!(human_span(302), "5m 2s");
    }

    #[test]
    fn after_saturates() {
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(after(now, 60).as_second(), 60);
        assert_eq!(after(now, u64::MAX), Timestamp::MAX);
    }
}
