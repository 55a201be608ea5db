//! The web dashboard: one page (HTML, JS and CSS built into the binary,
//! charts drawn as SVG by its own script) over JSON endpoints that answer
//! what `sluice analysis` prints, plus the pipeline's health. Read-only: it
//! reads the lake and, inside `sluice run`, the metrics and plugin status;
//! it never writes.

mod api;
pub mod config;
mod health;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use deltalake::datafusion::prelude::SessionContext;
use tokio::sync::mpsc;

use crate::lake::Lake;
use crate::lifecycle::Control;
use crate::sources::http::listener::{self, Limits};

/// A few browser tabs and scripts; each request is a short query.
const LIMITS: Limits = Limits {
    header_timeout: Duration::from_secs(10),
    body_timeout: Duration::from_secs(10),
    max_connections: 64,
};

/// What the running service shares with the dashboard; nothing when the
/// dashboard serves a lake on its own (`sluice dashboard`).
#[derive(Clone, Default)]
pub struct Live {
    /// The Prometheus recorder's handle, when `[metrics]` is on: source lag.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The pipeline's control channel: asked for the plugin status (and so
    /// a shadow run's report) only while the history says a shadow runs.
    pub control: Option<mpsc::Sender<Control>>,
}

/// How long one session (the tables as of when it opened) answers requests:
/// a page refresh asks a dozen endpoints at once, and opening the tables is
/// most of a query's cost.
const SESSION_TTL: Duration = Duration::from_secs(2);

/// What the handlers read.
pub(crate) struct Dashboard {
    pub lake: Lake,
    /// The plugin registry, for the deploy history (read, never created),
    /// and the storage options that reach it when it is a URL.
    pub registry: (PathBuf, crate::lake::StorageOptions),
    pub live: Live,
    session: tokio::sync::Mutex<Option<(Instant, SessionContext)>>,
}

impl Dashboard {
    /// A session over the lake and the analyses' views, at most
    /// [`SESSION_TTL`] old.
    pub(crate) async fn session(&self) -> anyhow::Result<SessionContext> {
        let mut cached = self.session.lock().await;
        if let Some((opened, ctx)) = cached.as_ref()
            && opened.elapsed() < SESSION_TTL
        {
            return Ok(ctx.clone());
        }
        let ctx = crate::query::session(&self.lake).await?;
        *cached = Some((Instant::now(), ctx.clone()));
        Ok(ctx)
    }
}

/// Binds `addr` for the dashboard.
pub async fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio::net::TcpListener::bind(addr).await
}

/// Serves the dashboard over `lake` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    lake: Lake,
    registry: (PathBuf, crate::lake::StorageOptions),
    live: Live,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let dashboard = Arc::new(Dashboard {
        lake,
        registry,
        live,
        session: Default::default(),
    });
    listener::serve(listener, router(dashboard), LIMITS, shutdown).await
}

fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/quarantine",
            get(|| asset("text/html; charset=utf-8", QUARANTINE_HTML)),
        )
        .route(
            "/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE_CSS)),
        )
        .route("/api/health", get(health::health))
        .route("/api/quarantine/samples", get(health::quarantine_samples))
        .route("/api/{name}", get(api::analysis))
        .layer(axum::middleware::map_response(harden))
        .with_state(dashboard)
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const QUARANTINE_HTML: &str = include_str!("assets/quarantine.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Scripts and styles from this origin only, no framing, no sniffing: the
/// page shows event data (feature names, quarantined bytes) an attacker
/// may have written, and must never run it.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A JSON error answer.
pub(crate) fn error(status: axum::http::StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.to_string() })),
    )
        .into_response()
}
