//! The health endpoint (`--health`: `GET /healthz`, `GET /metrics`) and
//! its probe (`webex-token healthcheck`).
//!
//! Anyone who reaches the port can connect, so the server holds every
//! client to caps ([`MAX_CONNECTIONS`], [`MAX_HEAD_BYTES`],
//! [`HEAD_TIMEOUT`], [`CONNECTION_LIFETIME`]): its memory and descriptors
//! stay bounded whatever clients do, and a probe on a fresh connection is
//! answered while others idle, trickle, flood or never read.

use super::monitor::Monitor;
use crate::clock;
use crate::error::Error;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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

/// How many connections the server holds at once. A new connection past
/// this closes the oldest one: a probe or a scrape is a fresh connection
/// answered within milliseconds, so whoever fills the table with idle or
/// slow connections only ever pushes out their own.
pub const MAX_CONNECTIONS: usize = 64;
/// The most a request head (request line and headers) may take; past it
/// the client gets 431 and the connection is closed. hyper's read buffer
/// cannot be smaller than this (its `max_buf_size` minimum).
pub const MAX_HEAD_BYTES: usize = 8192;
/// Time for a whole request head to arrive, counted from when the server
/// starts waiting for it: on a new connection, and again after each answer
/// on a kept-alive one (so it is also the idle time-out). A client sending
/// one byte a second is closed when it runs out.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest any connection lives, whatever it does: a client that
/// pipelines requests and never reads the answers is closed when it runs
/// out (it bounds the time spent writing, too).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(10);
/// The listening socket's accept queue (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default).
const LISTEN_BACKLOG: u32 = 1024;
/// The pause after a failed `accept` that freed nothing before trying
/// again: the listener stays open and serving.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The `--health` listener, bound by `watch` before the agent starts (a
/// port already taken is exit 3 there), served on a thread of its
/// own with its own single-threaded tokio runtime: the agent's work never
/// waits on a client of the health port, and the health port keeps
/// answering while an org's loop is busy (a file lock, a hook).
pub struct Server {
    listener: tokio::net::TcpListener,
    runtime: OwnRuntime,
}

/// The server's runtime, shut down without waiting when dropped unused: a
/// plain `Runtime` dropped inside the agent's async code would panic.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    /// A listening socket on `addr`, registered with this runtime.
    fn listen(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
        let rt = self
            .0
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the health runtime is gone"))?;
        let _entered = rt.enter();
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As std's `TcpListener::bind` does: a restarted agent can bind
        // the port again while old connections are in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        // A long accept queue: a burst of connections (hundreds at once)
        // must not overflow it, or the kernel drops the SYN of the probe
        // behind them and its client retries only a second later.
        socket.listen(LISTEN_BACKLOG)
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Server {
    /// Binds `addr` (`:0` picks a free port) on the server's own runtime.
    pub fn bind(addr: SocketAddr) -> std::io::Result<Server> {
        // Wrapped at once: an error below drops it (inside `watch`'s async
        // code) on the way out.
        let runtime = OwnRuntime(Some(
            tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()?,
        ));
        let listener = runtime.listen(addr)?;
        Ok(Server { listener, runtime })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `/healthz` and `/metrics` from `monitor` on a new thread for
    /// the rest of the process.
    pub(super) fn spawn(self, monitor: Arc<Monitor>) -> std::io::Result<()> {
        let Server {
            listener,
            mut runtime,
        } = self;
        std::thread::Builder::new()
            .name("health".into())
            .spawn(move || {
                if let Some(rt) = runtime.0.take() {
                    rt.block_on(accept_loop(listener, monitor));
                }
            })
            .map(drop)
    }
}

/// Accepts for ever: a failed accept never ends the loop. Out of
/// descriptors (EMFILE, ENFILE), it closes the oldest connection and tries
/// again; otherwise it waits [`ACCEPT_BACKOFF`].
async fn accept_loop(listener: tokio::net::TcpListener, monitor: Arc<Monitor>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let live = Arc::new(Live::default());
    // One warning per run of failures, not ten a second.
    let mut failing = false;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                failing = false;
                stream
            }
            // The client gave up before it was accepted: nothing to do.
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        "the health endpoint could not accept a connection: {e} (closing the oldest connection, trying again)"
                    );
                    failing = true;
                }
                // Out of descriptors (EMFILE, ENFILE): free one by closing
                // the oldest connection, so a fresh probe gets in; with
                // none to close, wait a little rather than spin.
                let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                if out_of_fds && live.evict_oldest() {
                    // Let the runtime drop the aborted task (its socket).
                    tokio::time::sleep(Duration::from_millis(5)).await;
                } else {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let m = monitor.clone();
        let service = hyper::service::service_fn(move |req| {
            let answer = answer(&req, &m);
            async move { Ok::<_, std::convert::Infallible>(answer) }
        });
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        live.admit(async move |leave| {
            let _leave = leave;
            // Dropping the connection closes the socket, whatever state
            // it is in (reading a head, writing an answer nobody reads).
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
        });
    }
}

/// The connections being served, oldest first, so that the oldest can be
/// closed when a new one would exceed [`MAX_CONNECTIONS`].
#[derive(Default)]
struct Live {
    inner: Mutex<LiveInner>,
}

#[derive(Default)]
struct LiveInner {
    next_id: u64,
    tasks: BTreeMap<u64, tokio::task::AbortHandle>,
}

/// Takes a connection out of [`Live`] when its task ends or is aborted.
struct Leave {
    live: Arc<Live>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.live.lock().tasks.remove(&self.id);
    }
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, LiveInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the oldest connection; false when there is none.
    fn evict_oldest(&self) -> bool {
        let oldest = self.lock().tasks.pop_first();
        match oldest {
            Some((_, task)) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    /// Spawns a connection's task (given the guard that takes it out of
    /// the table when it ends), closing the oldest one if the table is full.
    fn admit<F, Fut>(self: &Arc<Self>, serve: F)
    where
        F: FnOnce(Leave) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let evicted = {
            let mut g = self.lock();
            let id = g.next_id;
            g.next_id += 1;
            let evicted = if g.tasks.len() >= MAX_CONNECTIONS {
                g.tasks.pop_first()
            } else {
                None
            };
            let leave = Leave {
                live: self.clone(),
                id,
            };
            let fut = serve(leave);
            // The lock is held until the task is in the table: its guard
            // cannot remove it before it is there (it waits for the lock).
            let task = tokio::spawn(fut);
            g.tasks.insert(id, task.abort_handle());
            evicted
        };
        // Outside the lock: an aborted task's guard takes the lock.
        if let Some((_, task)) = evicted {
            task.abort();
        }
    }
}

/// The answer to one request.
fn answer<B>(req: &hyper::Request<B>, m: &Monitor) -> hyper::Response<String> {
    use hyper::Method;
    use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
    let (status, body, ctype) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => {
            let (status, v) = m.health(clock::now());
            (status, v.to_string(), "application/json")
        }
        (&Method::GET, "/metrics") => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            if wants_openmetrics(accept) {
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
        (&Method::GET, _) => (404, "not found\n".to_string(), "text/plain"),
        _ => (405, "method not allowed\n".to_string(), "text/plain"),
    };
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    if status == 405 {
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
    }
    resp
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
