//! The simulator's HTTP/1.1 server: one thread per connection, keep-alive,
//! `Content-Length` (and chunked) request bodies, `Content-Length` answers.
//!
//! Written here rather than taken from tiny_http: tiny_http 0.12 hands each
//! new connection to a thread pool whose "is a worker idle?" check can race
//! with a worker that is already waking up for an earlier connection; under
//! a burst of new connections (a client renewing 8 data sources at once) one
//! connection then waits until some other connection closes, which the
//! client sees as a 30 s timeout. The simulator needs very little of HTTP,
//! and a thread per connection cannot lose a connection.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest request head and body the simulator reads.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: u64 = 16 * 1024 * 1024;

/// One request, read whole, and the way to answer it.
pub struct Request {
    pub method: String,
    pub url: String,
    /// Header names as sent (callers compare case-insensitively).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    stream: TcpStream,
    keep_alive: bool,
}

impl Request {
    /// Writes a complete answer.
    pub fn respond(mut self, status: u16, reason: &str, headers: &[(String, String)], body: &[u8]) {
        let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("connection") {
                continue;
            }
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        if !self.keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        let _ = self
            .stream
            .write_all(&out)
            .and_then(|()| self.stream.flush());
    }

    /// Writes raw bytes that are not an HTTP answer, then closes the
    /// connection (the `close` fault).
    pub fn garbage(mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.flush();
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A listening server; `run` serves until `stop` is set (and the accept is
/// woken by a connection, see [`Server::wake`]).
pub struct Server {
    listener: TcpListener,
}

impl Server {
    pub fn bind(addr: &str) -> io::Result<Server> {
        Ok(Server {
            listener: TcpListener::bind(addr)?,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `stop`; each gets a thread that reads its
    /// requests one after another and hands each to `handle`.
    pub fn run(self, stop: Arc<AtomicBool>, handle: Arc<dyn Fn(Request) + Send + Sync>) {
        for conn in self.listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = conn else {
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            };
            let handle = handle.clone();
            let _ = std::thread::Builder::new()
                .name("webex-sim-conn".into())
                .spawn(move || serve_connection(stream, &*handle));
        }
    }

    /// Wakes a blocked `run` so it can see `stop`.
    pub fn wake(addr: SocketAddr) {
        let _ = TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200));
    }
}

fn serve_connection(stream: TcpStream, handle: &(dyn Fn(Request) + Send + Sync)) {
    let _ = stream.set_nodelay(true);
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let req = match read_request(&mut reader, &write_half) {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        let keep_alive = req.keep_alive;
        handle(req);
        if !keep_alive {
            let _ = write_half.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// Reads one request; `None` at a clean end of the connection.
fn read_request(
    reader: &mut BufReader<TcpStream>,
    stream: &TcpStream,
) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take(MAX_HEAD as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if line == b"\r\n" || line == b"\n" {
            if head.is_empty() {
                continue; // stray blank line between requests
            }
            break;
        }
        head.push(String::from_utf8_lossy(&line).trim_end().to_string());
        if head.iter().map(String::len).sum::<usize>() > MAX_HEAD {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
    let mut parts = head[0].split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let url = parts.next().unwrap_or("/").to_string();
    let version = parts.next().unwrap_or("HTTP/1.1").to_string();
    let headers: Vec<(String, String)> = head[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let keep_alive = match header("connection").as_deref() {
        Some(v) if v.contains("close") => false,
        Some(v) if v.contains("keep-alive") => true,
        _ => version != "HTTP/1.0",
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            if n == 0 {
                let mut end = String::new();
                reader.read_line(&mut end)?;
                break;
            }
            if body.len() as u64 + n > MAX_BODY {
                return Err(io::ErrorKind::InvalidData.into());
            }
            reader.by_ref().take(n).read_to_end(&mut body)?;
            let mut crlf = String::new();
            reader.read_line(&mut crlf)?;
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<u64>().ok()) {
        if len > MAX_BODY {
            return Err(io::ErrorKind::InvalidData.into());
        }
        reader.by_ref().take(len).read_to_end(&mut body)?;
        if (body.len() as u64) < len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(Some(Request {
        method,
        url,
        headers,
        body,
        stream: stream.try_clone()?,
        keep_alive,
    }))
}
