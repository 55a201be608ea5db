//! HTTP collector: `POST /v1/events` takes NDJSON or a JSON array of events
//! and answers 202 only once they are durable in bronze.
//!
//! 413 for a body over the limit, 400 with a reason for a body that is not
//! NDJSON or a JSON array at all, 503 if the pipeline could not commit.
//! Individual malformed events in a good body are accepted and land in
//! quarantine, with their raw bytes, like any other bad event.
//!
//! The collector is one stream: every event gets the next offset of the
//! partition [`PARTITION`], so the positions the lake keeps do not grow
//! with the number of requests. A request's id names its offsets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::{Envelope, RawRecord};

pub const SOURCE: &str = "http";
/// The collector's one partition.
pub const PARTITION: &str = "collector";

/// How long a request waits for its bronze commit before giving up with 503.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Collector {
    tx: mpsc::Sender<Envelope>,
    source: Arc<str>,
    partition: Arc<str>,
    next_offset: Arc<AtomicI64>,
}

/// The collector's routes, sending envelopes into `tx`; offsets continue
/// from `first_offset`.
pub fn router(tx: mpsc::Sender<Envelope>, max_body_bytes: usize, first_offset: i64) -> Router {
    let state = Collector {
        tx,
        source: Arc::from(SOURCE),
        partition: Arc::from(PARTITION),
        next_offset: Arc::new(AtomicI64::new(first_offset)),
    };
    Router::new()
        .route("/v1/events", post(ingest))
        .route("/health", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Binds the collector; returns the bound address (port 0 picks one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn ingest(State(collector): State<Collector>, body: Bytes) -> Response {
    let payloads = match split_body(&body) {
        Ok(p) => p,
        Err(reason) => return error(StatusCode::BAD_REQUEST, &reason),
    };
    let n = payloads.len() as i64;
    let first = collector.next_offset.fetch_add(n, Ordering::Relaxed);
    let request_id = format!("{}:{first}-{}", collector.partition, first + n - 1);
    let records: Vec<RawRecord> = payloads
        .into_iter()
        .zip(first..)
        .map(|(payload, offset)| RawRecord {
            payload,
            source: collector.source.clone(),
            partition: collector.partition.clone(),
            offset,
        })
        .collect();
    let count = records.len();
    let (ack_tx, ack_rx) = oneshot::channel();
    let envelope = Envelope {
        records,
        ack: Some(ack_tx),
    };
    if collector.tx.send(envelope).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline is shutting down",
        );
    }
    match tokio::time::timeout(ACK_TIMEOUT, ack_rx).await {
        Ok(Ok(Ok(()))) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"accepted": count, "request_id": request_id})),
        )
            .into_response(),
        Ok(Ok(Err(reason))) => error(StatusCode::SERVICE_UNAVAILABLE, &reason),
        Ok(Err(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline stopped before committing",
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "timed out waiting for the bronze commit",
        ),
    }
}

fn error(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(json!({"error": reason}))).into_response()
}

/// Splits a body into one payload per event. A JSON array gives its
/// elements; anything else is read as NDJSON, one event per non-blank line.
/// Lines are bytes: one that is not UTF-8 is passed on like any malformed
/// event (it lands in quarantine with its raw bytes) instead of costing the
/// whole body. Refuses bodies with no event or where no line even starts
/// like JSON.
pub fn split_body(body: &Bytes) -> Result<Vec<Bytes>, String> {
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Err("body holds no events".into());
    };
    if body[first] == b'['
        && let Ok(items) = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(body)
    {
        if items.is_empty() {
            return Err("the JSON array holds no events".into());
        }
        return Ok(items
            .into_iter()
            .map(|raw| body.slice_ref(raw.get().as_bytes()))
            .collect());
    }
    let lines: Vec<Bytes> = body
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| body.slice_ref(line.strip_suffix(b"\r").unwrap_or(line)))
        .collect();
    let looks_like_json = |l: &Bytes| {
        matches!(
            l.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{' | b'[')
        )
    };
    if !lines.iter().any(looks_like_json) {
        return Err("body is neither NDJSON nor a JSON array: no line starts with `{`".into());
    }
    Ok(lines)
}

/// Serves the collector until `shutdown` resolves; offsets continue from
/// `first_offset` (one past the lake's position of the collector).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tx: mpsc::Sender<Envelope>,
    max_body_bytes: usize,
    first_offset: i64,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, first_offset, "collector listening");
    axum::serve(listener, router(tx, max_body_bytes, first_offset))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines_and_arrays_split_into_events() {
        let body = Bytes::from_static(b"{\"a\":1}\n\n{\"b\":2}\r\nnot json\n");
        let parts = split_body(&body).unwrap();
        assert_eq!(
            parts,
            vec![
                Bytes::from_static(b"{\"a\":1}"),
                Bytes::from_static(b"{\"b\":2}"),
                Bytes::from_static(b"not json")
            ]
        );
        let body = Bytes::from_static(b"[{\"a\":1}, {\"b\": [2]}]");
        let parts = split_body(&body).unwrap();
        assert_eq!(
            parts,
            vec![
                Bytes::from_static(b"{\"a\":1}"),
                Bytes::from_static(b"{\"b\": [2]}")
            ]
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_is_one_event_not_a_refused_body() {
        let body = Bytes::from_static(b"{\"a\":1}\n{\"b\":\"\xff\xfe\"}\n{\"c\":3}\n");
        let parts = split_body(&body).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1], Bytes::from_static(b"{\"b\":\"\xff\xfe\"}"));
    }

    #[test]
    fn bodies_that_are_not_ndjson_are_refused_with_a_reason() {
        for body in [&b""[..], b"   \n", b"hello world\nfoo", b"\xff\xfe", b"[]"] {
            let err = split_body(&Bytes::copy_from_slice(body)).unwrap_err();
            assert!(!err.is_empty());
        }
    }
}
