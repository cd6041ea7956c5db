//! The metrics HTTP server: `GET /metrics` and `GET /healthz`, nothing else.
//!
//! One thread with its own current-thread runtime: the agent's event loop never waits for a
//! client, and a stuck event loop cannot keep `/healthz` from saying so. Each connection is
//! one request and one response (`Connection: close`), with a bounded request head
//! ([`MAX_REQUEST`]), a deadline for the whole exchange ([`DEADLINE`]) and at most
//! [`MAX_CONNECTIONS`] at once (more are closed at once): a slow or hostile client costs a
//! task and a buffer, for a few seconds.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::AsyncWrite,
    net::TcpStream,
    sync::{oneshot, Semaphore},
};

use super::Shared;

/// The request head, at most.
pub const MAX_REQUEST: usize = 8192;
/// One exchange (reading the request, writing the response), at most.
pub const DEADLINE: Duration = Duration::from_secs(10);
pub const MAX_CONNECTIONS: usize = 32;
/// After the response: what the client sent beyond the request head is read and dropped (at
/// most this much, for at most [`LINGER`]), so closing does not reset the connection before
/// the client has read the response.
const DRAIN: usize = 64 * 1024;
const LINGER: Duration = Duration::from_secs(1);

pub struct Server {
    pub local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Server {
    pub fn spawn(listener: std::net::TcpListener, shared: Arc<Shared>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || runtime.block_on(serve(listener, shared, stopped)))?;
        Ok(Self {
            local_addr,
            stop,
            thread,
        })
    }

    /// Stop accepting, drop every connection, and wait for the thread.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(err) => {
            tracing::warn!("metrics: cannot serve: {err}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        // Out of descriptors, say: do not spin.
                        tracing::debug!("metrics: accept: {err}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    continue; // Too many at once: closed.
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(DEADLINE, exchange(stream, &shared)).await;
                    drop(slot);
                });
            }
        }
    }
}

/// Read one request head, answer it, close.
async fn exchange(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let response = loop {
        let n = read(&stream, &mut buf[len..]).await?;
        if n == 0 {
            return Ok(()); // Closed before a whole request.
        }
        len += n;
        match parse(&buf[..len]) {
            Parsed::Complete { method, path } => break respond(&method, &path, shared),
            Parsed::Partial if len == buf.len() => {
                break Response::text(
                    431,
                    "Request Header Fields Too Large",
                    "request too large\n",
                )
            }
            Parsed::Partial => continue,
            Parsed::Invalid(status, reason) => {
                break Response::text(status, reason, "bad request\n")
            }
        }
    };
    write_all(&stream, &response.to_bytes()).await?;
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_shutdown(cx)).await?;
    let _ = tokio::time::timeout(LINGER, async {
        let mut drained = 0;
        while drained < DRAIN {
            match read(&stream, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
    Ok(())
}

async fn read(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Complete { method: String, path: String },
    Partial,
    Invalid(u16, &'static str),
}

fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => Parsed::Complete {
            method: request.method.unwrap_or_default().to_string(),
            path: request.path.unwrap_or_default().to_string(),
        },
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            Parsed::Invalid(431, "Request Header Fields Too Large")
        }
        Err(_) => Parsed::Invalid(400, "Bad Request"),
    }
}

pub struct Response {
    pub status: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    pub allow: bool,
    pub body: String,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            allow: false,
            body: body.into(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if self.allow {
            head.push_str("Allow: GET\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }
}

/// The answer to one request.
pub fn respond(method: &str, target: &str, shared: &Shared) -> Response {
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let known = matches!(path, "/metrics" | "/healthz");
    if !known {
        return Response::text(404, "Not Found", "not found: try /metrics or /healthz\n");
    }
    if method != "GET" {
        let mut response = Response::text(405, "Method Not Allowed", "only GET\n");
        response.allow = true;
        return response;
    }
    match path {
        "/metrics" => Response {
            status: 200,
            reason: "OK",
            content_type: super::CONTENT_TYPE,
            allow: false,
            body: shared.exposition(),
        },
        _ => {
            let health = shared.state.health();
            let body = format!("{health}\n");
            if health.ok() {
                Response::text(200, "OK", body)
            } else {
                Response::text(503, "Service Unavailable", body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Parsed::Complete {
                method: "GET".into(),
                path: "/metrics".into()
            }
        );
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHo"), Parsed::Partial);
        assert_eq!(
            parse(b"\x00\x01garbage\r\n\r\n"),
            Parsed::Invalid(400, "Bad Request")
        );
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse(head.as_bytes()),
            Parsed::Invalid(431, "Request Header Fields Too Large")
        );
    }
}
