//! Who may talk to an HTTP endpoint: bearer tokens (the collector's, several
//! at once so they can be rotated, and the admin API's) and, for the
//! collector, browser origins (CORS).
//!
//! Tokens are kept as SHA-256 digests and a presented token is hashed and
//! compared with every one of them without an early exit, so timing tells
//! neither a token's content nor its length nor which one matched. A token
//! is never logged or echoed.
//!
//! CORS is off unless origins are listed: a request that carries an `Origin`
//! header (a browser's, cross-site) from an origin not on the list is
//! refused with 403 before its body is read, preflight or not, so a web
//! page cannot post `text/plain` events to a collector on the visitor's
//! machine. Requests without `Origin` (SDKs, curl, servers) are not affected.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// The bearer tokens an endpoint accepts.
#[derive(Clone)]
pub struct Tokens(Arc<[[u8; 32]]>);

impl Tokens {
    pub fn new<S: AsRef<str>>(tokens: &[S]) -> Tokens {
        Tokens(tokens.iter().map(|t| digest(t.as_ref())).collect())
    }

    /// True if `presented` is one of the tokens.
    pub fn admits(&self, presented: &str) -> bool {
        let presented = digest(presented);
        self.0.iter().fold(false, |found, token| {
            found | constant_time_eq(&presented, token)
        })
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens(<{} redacted>)", self.0.len())
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares without an early exit, so timing does not leak where two
/// equally long values differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware: 401 unless the request carries one of `tokens`.
pub async fn require_bearer(
    State(tokens): State<Tokens>,
    request: Request,
    next: Next,
) -> Response {
    if bearer(request.headers()).is_some_and(|token| tokens.admits(token)) {
        return next.run(request).await;
    }
    let mut response = refusal(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn refusal(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Browser origins allowed to call the collector.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Arc<[String]>,
    any: bool,
}

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: &str = "600";

impl Cors {
    /// `origins` as configured (checked already): exact origins, or `*`.
    pub fn new(origins: &[String]) -> Cors {
        Cors {
            any: origins.iter().any(|o| o == "*"),
            origins: origins.iter().filter(|o| *o != "*").cloned().collect(),
        }
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any
            || self
                .origins
                .iter()
                .any(|o| o.as_bytes() == origin.as_bytes())
    }
}

/// Middleware: passes requests without `Origin`; refuses (403) those from
/// an origin not allowed; answers an allowed origin's preflight and adds
/// `Access-Control-Allow-Origin` to its other answers.
pub async fn cors(State(cors): State<Cors>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    if !cors.allows(&origin) {
        return refusal(
            StatusCode::FORBIDDEN,
            "cross-origin requests are refused unless their origin is in collector.cors_origins",
        );
    }
    if is_preflight(&request) {
        return preflight(origin);
    }
    let mut response = next.run(request).await;
    allow_origin(response.headers_mut(), origin);
    response
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn preflight(origin: HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    allow_origin(headers, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS),
    );
    response
}

fn allow_origin(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
    }

    #[test]
    fn any_of_several_tokens_is_admitted() {
        let tokens = Tokens::new(&["old-token-0123456789", "new-token-0123456789"]);
        assert!(tokens.admits("old-token-0123456789"));
        assert!(tokens.admits("new-token-0123456789"));
        assert!(!tokens.admits("new-token-012345678"));
        assert!(!tokens.admits(""));
        assert!(!format!("{tokens:?}").contains("token-0"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn origins_match_exactly_or_by_wildcard() {
        let cors = Cors::new(&["https://app.example.com".to_string()]);
        assert!(cors.allows(&HeaderValue::from_static("https://app.example.com")));
        assert!(!cors.allows(&HeaderValue::from_static("https://app.example.com.evil")));
        assert!(!cors.allows(&HeaderValue::from_static("null")));
        assert!(!Cors::new(&[]).allows(&HeaderValue::from_static("http://localhost")));
        assert!(Cors::new(&["*".to_string()]).allows(&HeaderValue::from_static("null")));
    }
}
