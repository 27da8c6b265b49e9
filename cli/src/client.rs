//! A small HTTP client for the local node's API.

use std::{path::PathBuf, time::Duration};

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;

/// Where the node is and how to authenticate.
pub struct Api {
    base: String,
    token: Option<String>,
    data_dir: Option<PathBuf>,
    http: reqwest::Client,
}

/// Data directory as the node resolves it: flag/env, else the platform default.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("offgrid");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/offgrid");
    }
    PathBuf::from(".offgrid")
}

impl Api {
    /// Resolves the API URL and token: explicit flags first, else the data directory's
    /// `api.url` and `api.token`, else the default address.
    pub fn resolve(
        api: Option<String>,
        token: Option<String>,
        data_dir: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let dir = data_dir.clone().unwrap_or_else(default_data_dir);
        let base = match api {
            Some(u) => u,
            None => std::fs::read_to_string(dir.join("api.url"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "http://127.0.0.1:9000".into()),
        };
        let token = token.or_else(|| {
            std::fs::read_to_string(dir.join("api.token"))
                .ok()
                .map(|s| s.trim().to_owned())
        });
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            base: base.trim_end_matches('/').to_owned(),
            token,
            data_dir: Some(dir),
            http,
        })
    }

    fn not_running(&self, e: &reqwest::Error) -> anyhow::Error {
        let dir = self
            .data_dir
            .as_ref()
            .map(|d| format!(" --data-dir {}", d.display()))
            .unwrap_or_default();
        anyhow!(
            "cannot reach the node at {} ({}): is it running? Start it with `offgrid-node{dir}`",
            self.base,
            root_cause(e)
        )
    }

    /// GET a JSON document.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        // Some reads (receipt export) move state; the local token is always sent.
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.send(req, Duration::from_secs(30)).await
    }

    /// POST a JSON document with the bearer token.
    pub async fn post(&self, path: &str, body: &Value, timeout: Duration) -> anyhow::Result<Value> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.send(req, timeout).await
    }

    /// DELETE with the bearer token; answers the JSON document.
    pub async fn delete(&self, path: &str, timeout: Duration) -> anyhow::Result<Value> {
        let mut req = self.http.delete(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.send(req, timeout).await
    }

    /// GET a byte stream with the bearer token and extra headers, with no overall timeout
    /// (a stream lasts as long as its content): the response once its headers arrived, or
    /// the node's error (`code: message (HTTP status)`).
    pub async fn get_stream(
        &self,
        path: &str,
        headers: &[(&str, String)],
    ) -> anyhow::Result<reqwest::Response> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                self.not_running(&e)
            } else {
                anyhow!("request to {} failed: {}", self.base, root_cause(&e))
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.context("reading the node's answer")?;
        let value: Value = serde_json::from_slice(&body).unwrap_or_default();
        let code = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("error");
        let msg = value.get("message").and_then(Value::as_str).unwrap_or("");
        bail!("{code}: {msg} (HTTP {})", status.as_u16());
    }

    async fn send(&self, req: reqwest::RequestBuilder, timeout: Duration) -> anyhow::Result<Value> {
        let resp = req.timeout(timeout).send().await.map_err(|e| {
            if e.is_connect() {
                self.not_running(&e)
            } else if e.is_timeout() {
                anyhow!(
                    "the node at {} did not answer within {timeout:?}",
                    self.base
                )
            } else {
                anyhow!("request to {} failed: {}", self.base, root_cause(&e))
            }
        })?;
        let status = resp.status();
        let body = resp.bytes().await.context("reading the node's answer")?;
        let value: Value = serde_json::from_slice(&body)
            .with_context(|| format!("the node answered {status} with a body that is not JSON"))?;
        if !status.is_success() {
            let code = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("error");
            let msg = value.get("message").and_then(Value::as_str).unwrap_or("");
            bail!("{code}: {msg} (HTTP {})", status.as_u16());
        }
        Ok(value)
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
