//! `--manual`: the person pastes the address the browser was redirected to.
//!
//! One line is read from stdin, at most [`MAX_LINE`] bytes: a real callback
//! address is a few hundred bytes, and stdin may be a pipe that never ends,
//! so nothing is ever read without a bound.

use super::callback::{Callback, judge};
use crate::error::SetupError;
use oauth2::CsrfToken;
use oauth2::url::Url;
use std::io::BufRead;
use std::time::Duration;

/// The longest pasted line accepted (without its line end).
pub(super) const MAX_LINE: usize = 16 * 1024;

/// Why a line could not be read.
#[derive(Debug, PartialEq, Eq)]
enum LineError {
    TooLong,
    NotText,
    Io(String),
}

/// Reads one line of at most `max` bytes (the line end not counted).
fn read_line_capped(r: impl BufRead, max: usize) -> Result<String, LineError> {
    let mut buf = Vec::new();
    r.take(max as u64 + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|e| LineError::Io(e.to_string()))?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() > max {
        return Err(LineError::TooLong);
    }
    String::from_utf8(buf).map_err(|_| LineError::NotText)
}

/// Reads the pasted address from stdin, waiting up to `timeout`, and
/// judges it like a callback.
pub(super) fn read_pasted(
    state: &CsrfToken,
    timeout: Duration,
    redirect_uri: &str,
) -> Result<Callback, SetupError> {
    let (tx, rx) = std::sync::mpsc::channel();
    // A thread, so the read can time out; it is left behind on timeout and
    // ends with the process.
    std::thread::spawn(move || {
        let _ = tx.send(read_line_capped(std::io::stdin().lock(), MAX_LINE));
    });
    let line = match rx.recv_timeout(timeout) {
        Ok(Ok(l)) => l,
        Ok(Err(LineError::TooLong)) => {
            return Err(SetupError::ManualInput(format!(
                "the pasted line is longer than {} KiB, which no callback address is",
                MAX_LINE / 1024
            )));
        }
        Ok(Err(LineError::NotText)) => {
            return Err(SetupError::ManualInput("it is not UTF-8 text".into()));
        }
        Ok(Err(LineError::Io(e))) => {
            return Err(SetupError::ManualInput(format!(
                "stdin could not be read ({e})"
            )));
        }
        Err(_) => {
            return Err(SetupError::TimedOut {
                after: timeout,
                refused: 0,
            });
        }
    };
    parse_pasted(&line, state, redirect_uri)
}

/// The whole address, or only its query string.
fn parse_pasted(line: &str, state: &CsrfToken, redirect_uri: &str) -> Result<Callback, SetupError> {
    let text = line.trim();
    if text.is_empty() {
        return Err(SetupError::ManualInput("nothing was pasted".into()));
    }
    let url = if text.contains("://") {
        Url::parse(text)
    } else {
        Url::parse(redirect_uri).map(|mut u| {
            u.set_query(Some(text.trim_start_matches('?')));
            u
        })
    }
    .map_err(|_| SetupError::ManualInput("it is not an address".into()))?;
    if url.path() != "/callback" {
        tracing::warn!(
            "the pasted address's path is {}, not /callback; using its parameters anyway",
            super::printable(url.path())
        );
    }
    judge(url.query_pairs(), state).map_err(|r| SetupError::ManualInput(r.text().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_capped() {
        let read = |s: &[u8], max| read_line_capped(s, max);
        assert_eq!(read(b"abc\r\nrest", 10), Ok("abc".into()));
        assert_eq!(read(b"abc", 10), Ok("abc".into()));
        assert_eq!(read(b"", 10), Ok(String::new()));
        // Exactly the cap, with or without a line end.
        assert_eq!(read(b"0123456789\n", 10), Ok("0123456789".into()));
        assert_eq!(read(b"0123456789", 10), Ok("0123456789".into()));
        assert_eq!(read(b"01234567890\n", 10), Err(LineError::TooLong));
        assert_eq!(read(b"\xff\xfe\n", 10), Err(LineError::NotText));
        // An endless source is read only up to the cap.
        let endless = std::io::BufReader::new(std::io::repeat(b'a'));
        assert_eq!(read_line_capped(endless, MAX_LINE), Err(LineError::TooLong));
    }

    #[test]
    fn pasted_addresses() {
        let st = CsrfToken::new("abc".into());
        let r = "http://localhost:3000/callback";
        assert!(matches!(
            parse_pasted("http://localhost:3000/callback?code=c&state=abc", &st, r),
            Ok(Callback::Code(_))
        ));
        assert!(matches!(
            parse_pasted("?code=c&state=abc", &st, r),
            Ok(Callback::Code(_))
        ));
        assert!(matches!(
            parse_pasted("  ", &st, r),
            Err(SetupError::ManualInput(_))
        ));
        assert!(matches!(
            parse_pasted("http://localhost:3000/callback?code=c&state=x", &st, r),
            Err(SetupError::ManualInput(m)) if m.contains("does not match")
        ));
    }
}
