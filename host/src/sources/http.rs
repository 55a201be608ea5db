//! HTTP collector: `POST /v1/events` takes NDJSON or a JSON array of events
//! and answers 202 only once they are durable in bronze.
//!
//! 413 for a body over the limit, 400 with a reason for a body that is not
//! NDJSON or a JSON array at all. Individual malformed events in a good body
//! are accepted and land in quarantine, with their raw bytes, like any other
//! bad event.
//!
//! A request waits at most `collector.ack_timeout_ms`, first for room in the
//! pipeline, then for its bronze commit; past that it is answered 503 with
//! `Retry-After`, never left hanging. The answer says which: refused before
//! the events were handed over means nothing was stored; after, they may
//! have been (the commit may still land), and retrying is safe because
//! silver deduplicates on `event_id`.
//!
//! Who may post ([`access`]: bearer tokens, CORS) and how long and how many
//! clients may take ([`listener`]) are decided before the body is read.
//!
//! The collector is one stream: every event gets the next offset of the
//! partition [`PARTITION`], so the positions the lake keeps do not grow
//! with the number of requests. A request's id names its offsets.

pub mod access;
pub mod config;
pub mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Envelope, RawRecord, SourceContext};
use config::{CollectorAuth, CollectorConfig};

pub const SOURCE: &str = "http";
/// The collector's one partition.
pub const PARTITION: &str = "collector";

/// `Retry-After` when the pipeline is backed up or failed: storage outages
/// and refine stalls last seconds, not milliseconds.
pub const RETRY_AFTER_PIPELINE_SECS: u64 = 5;

/// What a client is told about events whose fate it cannot know.
const MAY_BE_STORED: &str = "the events may have been stored; retrying is safe \
                             (events are deduplicated by event_id)";

#[derive(Clone)]
struct Collector {
    tx: mpsc::Sender<Envelope>,
    source: Arc<str>,
    partition: Arc<str>,
    next_offset: Arc<AtomicI64>,
    ack_timeout: Duration,
}

/// The collector's routes, sending envelopes into `tx`; offsets continue
/// from `first_offset`.
pub fn router(tx: mpsc::Sender<Envelope>, config: &CollectorConfig, first_offset: i64) -> Router {
    let state = Collector {
        tx,
        source: Arc::from(SOURCE),
        partition: Arc::from(PARTITION),
        next_offset: Arc::new(AtomicI64::new(first_offset)),
        ack_timeout: config.ack_timeout(),
    };
    let mut router = Router::new().route("/v1/events", post(ingest));
    if config.auth == CollectorAuth::Bearer {
        let tokens = access::Tokens::new(&config.tokens);
        router = router.route_layer(middleware::from_fn_with_state(
            tokens,
            access::require_bearer,
        ));
    }
    let cors = access::Cors::new(&config.cors_origins);
    router
        .route("/health", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(cors, access::cors))
        .with_state(state)
}

/// Binds the collector; returns the bound address (port 0 picks one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// The collector's connection limits.
pub fn limits(config: &CollectorConfig) -> listener::Limits {
    listener::Limits {
        header_timeout: config.header_timeout(),
        body_timeout: config.body_timeout(),
        max_connections: config.max_connections,
    }
}

async fn ingest(State(collector): State<Collector>, body: Bytes) -> Response {
    let payloads = match split_body(&body) {
        Ok(p) => p,
        Err(reason) => return error(StatusCode::BAD_REQUEST, &reason),
    };
    let deadline = Instant::now() + collector.ack_timeout;
    let slot = match tokio::time::timeout_at(deadline, collector.tx.reserve()).await {
        Ok(Ok(slot)) => slot,
        Ok(Err(_)) => {
            return unavailable("the pipeline is shutting down: nothing was stored", None);
        }
        Err(_) => {
            return unavailable(
                "the pipeline is backed up: nothing was stored; retry later",
                None,
            );
        }
    };
    let (envelope, ack, request_id) = collector.envelope(payloads);
    let count = envelope.records.len();
    slot.send(envelope);
    match tokio::time::timeout_at(deadline, ack).await {
        Ok(Ok(Ok(()))) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"accepted": count, "request_id": request_id})),
        )
            .into_response(),
        Ok(Ok(Err(reason))) => {
            tracing::warn!(%request_id, "collector request not committed: {reason}");
            let message = format!("the pipeline could not commit the batch: {MAY_BE_STORED}");
            unavailable(&message, Some(&request_id))
        }
        Ok(Err(_)) => {
            let message = format!("the pipeline stopped before confirming: {MAY_BE_STORED}");
            unavailable(&message, Some(&request_id))
        }
        Err(_) => {
            let message = format!(
                "no bronze commit within {} ms: {MAY_BE_STORED}",
                collector.ack_timeout.as_millis()
            );
            unavailable(&message, Some(&request_id))
        }
    }
}

impl Collector {
    /// The records of `payloads` at the next offsets, the receiver of their
    /// acknowledgement and the request id naming the offsets.
    fn envelope(
        &self,
        payloads: Vec<Bytes>,
    ) -> (Envelope, oneshot::Receiver<Result<(), String>>, String) {
        let n = payloads.len() as i64;
        let first = self.next_offset.fetch_add(n, Ordering::Relaxed);
        let request_id = format!("{}:{first}-{}", self.partition, first + n - 1);
        let records = payloads
            .into_iter()
            .zip(first..)
            .map(|(payload, offset)| RawRecord {
                payload,
                source: self.source.clone(),
                partition: self.partition.clone(),
                offset,
            })
            .collect();
        let (ack_tx, ack_rx) = oneshot::channel();
        let envelope = Envelope {
            records,
            ack: Some(ack_tx),
        };
        (envelope, ack_rx, request_id)
    }
}

fn error(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(json!({"error": reason}))).into_response()
}

/// 503 with `Retry-After`; `request_id` once the events were handed over.
fn unavailable(reason: &str, request_id: Option<&str>) -> Response {
    let body = match request_id {
        Some(id) => json!({"error": reason, "request_id": id}),
        None => json!({"error": reason}),
    };
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(RETRY_AFTER_PIPELINE_SECS),
    );
    response
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

/// Serves the collector until the service stops; offsets continue from one
/// past the lake's position of the collector.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: CollectorConfig,
    ctx: SourceContext,
) -> std::io::Result<()> {
    let first_offset = ctx.next_offset(SOURCE, PARTITION);
    let (tx, mut stop) = (ctx.tx, ctx.stop);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, first_offset, auth = ?config.auth, "collector listening");
    let router = router(tx, &config, first_offset);
    listener::serve(listener, router, limits(&config), shutdown).await
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
