//! The admin API's client, as the CLI uses it: bearer token from the
//! environment, JSON in and out, errors carrying the server's reason.

use anyhow::Context as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ErrorBody;
use crate::config::ADMIN_TOKEN_ENV;

pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for the admin API at `base` (e.g. `http://127.0.0.1:7070`),
    /// with the token from [`ADMIN_TOKEN_ENV`].
    pub fn from_env(base: &str) -> anyhow::Result<AdminClient> {
        let token = std::env::var(ADMIN_TOKEN_ENV)
            .with_context(|| format!("set {ADMIN_TOKEN_ENV} to the admin API's token"))?;
        Ok(AdminClient::new(base, &token))
    }

    pub fn new(base: &str, token: &str) -> AdminClient {
        AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        let request = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body)?);
        self.send(request).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.delete(self.url(path))).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("reaching the admin API at {}", self.base))?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            let reason = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            anyhow::bail!("{status}: {reason}");
        }
        serde_json::from_slice(&body).context("reading the admin API's answer")
    }
}
