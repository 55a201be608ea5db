//! Serving HTTP to clients that may be slow, many or hostile; the collector
//! and the admin API both serve through [`serve`].
//!
//! - A client must send a request head within [`Limits::header_timeout`]
//!   (which is also how long a kept-alive connection may sit idle), else
//!   hyper closes the connection: a slowloris holds a slot for that long at
//!   most.
//! - A request body must arrive within [`Limits::body_timeout`] of its head,
//!   else `408` and the connection is closed.
//! - At most [`Limits::max_connections`] connections are served at once; one
//!   more is answered `503` with `Retry-After` as soon as it has sent its
//!   request head (within a second) and closed, instead of waiting
//!   unanswered in the accept backlog.
//! - On shutdown no connection is accepted any more; open ones finish the
//!   request in flight and close.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// How long a client may take, and how many may be served at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// To send a request head; also the idle limit of a kept-alive connection.
    pub header_timeout: Duration,
    /// To send a request body, counted from its head.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// `Retry-After` of a connection refused over the cap: a slot frees as soon
/// as any request ends.
pub const RETRY_AFTER_CAP_SECS: u64 = 1;

/// Refusals being written at once; beyond this an excess connection is
/// closed without an answer (so a flood cannot pile up sockets).
const REFUSALS_AT_ONCE: usize = 64;

/// How long a refused connection is kept to deliver its answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Pause after an accept error that is not about one connection (say, out
/// of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

/// Serves `router` on `listener` within `limits` until `shutdown` resolves,
/// then waits for the connections in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router.layer(middleware::from_fn_with_state(
        limits.body_timeout,
        body_deadline,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let refusal = Bytes::from(busy_response());
    let (closing_tx, closing) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if !is_connection_error(&e) {
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let connection = serve_connection(
                    stream,
                    router.clone(),
                    limits.header_timeout,
                    closing.clone(),
                    slot,
                );
                tokio::spawn(connection);
            }
            Err(_) => refuse(stream, &refusals, refusal.clone()),
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Each connection holds its slot until it is closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

/// Errors about one connection (it went away before it was accepted), as
/// opposed to the listener's own.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

/// Serves one connection over HTTP/1.1 until the client or the server
/// closes it; `slot` is given back when it ends.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    header_timeout: Duration,
    mut closing: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut connection = std::pin::pin!(connection);
    let closed = async move {
        let _ = closing.wait_for(|closing| *closing).await;
    };
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = closed => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection closed: {e}");
    }
    drop(slot);
}

/// The whole answer to a connection over the cap.
fn busy_response() -> Vec<u8> {
    let body = r#"{"error":"too many connections: retry later"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: {RETRY_AFTER_CAP_SECS}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers a connection over the cap with `answer` in a task of its own, or
/// closes it at once if too many refusals are already being written.
fn refuse(stream: TcpStream, refusals: &Arc<Semaphore>, answer: Bytes) {
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_LINGER, answer_and_close(stream, &answer)).await;
        drop(permit);
    });
}

/// Largest request head read from a connection that is refused.
const REFUSED_HEAD_BYTES: usize = 16 << 10;

/// Reads the request head (a client may not expect an answer before it
/// has asked), writes `answer`, then reads what else the client sent until
/// it closes: a socket closed with unread input resets the connection, and
/// the client could lose the answer.
async fn answer_and_close(mut stream: TcpStream, answer: &[u8]) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REFUSED_HEAD_BYTES {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    stream.write_all(answer).await?;
    stream.shutdown().await?;
    while stream.read(&mut buf).await? > 0 {}
    Ok(())
}

/// Gives the request's body until `limit` from now to arrive; answers 408
/// (and closes the connection) if it does not.
async fn body_deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(Deadline {
            inner: body,
            sleep: Box::pin(tokio::time::sleep(limit)),
            expired: expired.clone(),
        })
    });
    let response = next.run(request).await;
    if expired.load(Ordering::Relaxed) {
        return body_timed_out();
    }
    response
}

fn body_timed_out() -> Response {
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({"error": "the request body did not arrive in time"})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The error of a body read past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

/// A request body that fails once its deadline has passed.
struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_one_whole_response() {
        let text = String::from_utf8(busy_response()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("retry-after: 1\r\n"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
