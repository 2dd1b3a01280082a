//! The health endpoint (`--health`: `GET /healthz`, `GET /metrics`) and
//! its probe (`webex-token healthcheck`).

use super::monitor::Monitor;
use crate::clock;
use crate::error::Error;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

/// `webex-token healthcheck`: the probe a container's `HEALTHCHECK` runs,
/// since a `FROM scratch` image has no curl. Silent when `GET /healthz`
/// answers 200 (exit 0); one `error:` line and exit 1 otherwise (another
/// status, nothing listening, no answer within `--timeout`).
pub fn healthcheck(addr: SocketAddr, timeout: Duration) -> Result<u8, Error> {
    let url = format!("http://{addr}/healthz");
    match probe_healthz(addr, timeout) {
        Ok(200) => Ok(0),
        Ok(status) => Err(Error::Other(format!("GET {url} answered {status}"))),
        // A read or write past its time-out surfaces as EAGAIN/EWOULDBLOCK
        // ("Resource temporarily unavailable"): say what it means.
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err(Error::Other(format!(
                "GET {url}: no answer within {} (the agent is busy, stuck or not serving there)",
                humantime::format_duration(timeout)
            )))
        }
        Err(e) => Err(Error::Other(format!("GET {url}: {e}"))),
    }
}

/// One `GET /healthz` and the answer's status code. Written by hand on a
/// std `TcpStream` rather than with the HTTP client the rest of the tool
/// uses: it is one plain-HTTP request to our own endpoint (normally on
/// loopback), needs no TLS, proxy or async runtime, and must stay cheap
/// when a container engine runs it every few seconds. Every step is bounded
/// by what is left of `timeout`.
fn probe_healthz(addr: SocketAddr, timeout: Duration) -> std::io::Result<u16> {
    use std::io::{BufRead, BufReader, Error as IoError, Read, Write};
    let deadline = std::time::Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(std::time::Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| IoError::new(ErrorKind::TimedOut, "no answer in time"))
    };
    let mut stream = std::net::TcpStream::connect_timeout(&addr, left()?)?;
    stream.set_write_timeout(Some(left()?))?;
    // One write of the whole request: `write!` on the stream would send
    // it in pieces, and a server that answers after the first piece and
    // closes turns the next one into a broken pipe instead of its answer.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: webex-token-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    stream.set_read_timeout(Some(left()?))?;
    // The status line is all that matters: `HTTP/1.1 200 OK`.
    let mut line = String::new();
    BufReader::new(stream.take(512)).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok(code),
        _ => Err(IoError::new(
            ErrorKind::InvalidData,
            "the answer is not HTTP/1.x",
        )),
    }
}

pub(super) fn serve(server: tiny_http::Server, m: &Monitor) {
    use tiny_http::{Header, Method, Response};
    for req in server.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("").to_string();
        let (status, body, ctype) = match (req.method(), path.as_str()) {
            (Method::Get, "/healthz") => {
                let (status, v) = m.health(clock::now());
                (status, v.to_string(), "application/json")
            }
            (Method::Get, "/metrics") => {
                let accept = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Accept"))
                    .map(|h| h.value.as_str().to_string());
                if wants_openmetrics(accept.as_deref()) {
                    (
                        200,
                        m.metrics(),
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )
                } else {
                    (
                        200,
                        m.metrics_text(),
                        "text/plain; version=0.0.4; charset=utf-8",
                    )
                }
            }
            (Method::Get, _) => (404, "not found\n".to_string(), "text/plain"),
            _ => (405, "method not allowed\n".to_string(), "text/plain"),
        };
        let mut resp = Response::from_string(body).with_status_code(status);
        if let Ok(h) = Header::from_bytes("Content-Type", ctype) {
            resp = resp.with_header(h);
        }
        let _ = req.respond(resp);
    }
}

/// True when `Accept` asks for OpenMetrics at least as much as for plain
/// text (Prometheus sends `application/openmetrics-text;version=1.0.0,…,
/// text/plain;version=0.0.4;q=0.5,…`); anything else, or no header, gets
/// the Prometheus text format 0.0.4.
fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let (mut om, mut text) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|v| v.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" => text = text.max(q),
            _ => {}
        }
    }
    om > 0.0 && om >= text
}

#[cfg(test)]
mod tests {
    use super::wants_openmetrics;

    #[test]
    fn metrics_format_follows_accept() {
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain; version=0.0.4")));
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(wants_openmetrics(Some("application/openmetrics-text")));
        assert!(!wants_openmetrics(Some(
            "text/plain;q=1, application/openmetrics-text;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
    }
}
