//! The admin API server. Every route needs `Authorization: Bearer <token>`;
//! changes go to the pipeline task as [`Control`]s and are answered once
//! applied at a batch boundary. Connections are bounded like the
//! collector's ([`ADMIN_LIMITS`]): an operator's tool should not be the one
//! door a slow or flooding client can hold open.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::{DeployRequest, ErrorBody, ReplayRequest};
use crate::lifecycle::{Control, ReplayFrom, Reply, Validator};
use crate::runtime::Layer;
use crate::sources::http::access::{self, Tokens};
use crate::sources::http::listener::{self, Limits};

/// Largest request body (a component in base64 plus fixtures).
const MAX_BODY_BYTES: usize = 256 << 20;

/// A few operators and scripts, each sending a head at once; a body of up
/// to [`MAX_BODY_BYTES`] may take a few minutes over a slow link.
pub const ADMIN_LIMITS: Limits = Limits {
    header_timeout: Duration::from_secs(10),
    body_timeout: Duration::from_secs(300),
    max_connections: 64,
};

#[derive(Clone)]
struct Admin {
    control: mpsc::Sender<Control>,
    validator: Validator,
}

fn router(admin: Admin, tokens: Tokens) -> Router {
    Router::new()
        .route("/v1/plugins", get(list))
        .route("/v1/plugins/{layer}/deploy", post(deploy))
        .route("/v1/plugins/{layer}/rollback", post(rollback))
        .route("/v1/plugins/{layer}/promote", post(promote))
        .route("/v1/plugins/{layer}/shadow", delete(stop_shadow))
        .route("/v1/replay", post(replay))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            tokens,
            access::require_bearer,
        ))
        .with_state(admin)
}

/// Serves the admin API until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    control: mpsc::Sender<Control>,
    validator: Validator,
    token: String,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "admin API listening");
    let admin = Admin { control, validator };
    let tokens = Tokens::new(&[token]);
    listener::serve(listener, router(admin, tokens), ADMIN_LIMITS, shutdown).await
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.to_string(),
        }),
    )
        .into_response()
}

fn parse_layer(layer: &str) -> Result<Layer, Box<Response>> {
    layer
        .parse()
        .map_err(|e: String| Box::new(error(StatusCode::NOT_FOUND, &e)))
}

/// Sends a control to the pipeline task and waits for its answer.
async fn ask<T: Serialize>(admin: &Admin, make: impl FnOnce(Reply<T>) -> Control) -> Response {
    let (tx, rx) = oneshot::channel();
    if admin.control.send(make(tx)).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline is stopping");
    }
    match rx.await {
        Ok(Ok(answer)) => Json(answer).into_response(),
        Ok(Err(refusal)) => error(StatusCode::CONFLICT, &refusal),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline stopped"),
    }
}

async fn list(State(admin): State<Admin>) -> Response {
    ask(&admin, |reply| Control::Status { reply }).await
}

async fn deploy(
    State(admin): State<Admin>,
    Path(layer): Path<String>,
    Json(request): Json<DeployRequest>,
) -> Response {
    let layer = match parse_layer(&layer) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let wasm = match base64::engine::general_purpose::STANDARD.decode(&request.wasm_base64) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("wasm_base64: {e}")),
    };
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
    let validator = admin.validator.clone();
    let fixtures = request.fixtures.clone();
    let validated =
        tokio::task::spawn_blocking(move || validator.validate(layer, wasm, fixtures.as_ref()))
            .await;
    let candidate = match validated {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let reason = format!("{e:#}");
            let _ = admin
                .control
                .send(Control::Refused {
                    layer,
                    hash,
                    reason: reason.clone(),
                })
                .await;
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("refused: {reason}"),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let shadow = request.shadow;
    ask(&admin, |reply| Control::Deploy {
        layer,
        candidate,
        shadow,
        reply,
    })
    .await
}

async fn rollback(State(admin): State<Admin>, Path(layer): Path<String>) -> Response {
    match parse_layer(&layer) {
        Ok(layer) => ask(&admin, |reply| Control::Rollback { layer, reply }).await,
        Err(r) => *r,
    }
}

async fn promote(State(admin): State<Admin>, Path(layer): Path<String>) -> Response {
    match parse_layer(&layer) {
        Ok(layer) => ask(&admin, |reply| Control::Promote { layer, reply }).await,
        Err(r) => *r,
    }
}

async fn stop_shadow(State(admin): State<Admin>, Path(layer): Path<String>) -> Response {
    match parse_layer(&layer) {
        Ok(layer) => ask(&admin, |reply| Control::StopShadow { layer, reply }).await,
        Err(r) => *r,
    }
}

async fn replay(State(admin): State<Admin>, Json(request): Json<ReplayRequest>) -> Response {
    let layer = match parse_layer(&request.layer) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let from = match (request.from_batch, request.since.as_deref()) {
        (Some(batch), None) => ReplayFrom::Batch(batch),
        (None, Some(since)) => match chrono::DateTime::parse_from_rfc3339(since) {
            Ok(t) => ReplayFrom::Time(t.timestamp_micros()),
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("since: {e}")),
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give exactly one of from_batch and since",
            );
        }
    };
    ask(&admin, |reply| Control::Replay { layer, from, reply }).await
}
