//! The `openai` executor: a job's payload becomes a request to an OpenAI-compatible backend
//! (Ollama, llama.cpp's server, vLLM, a hosted API), and the backend's answer text becomes
//! the job's output, with the tokens its `usage` reports.
//!
//! The payload is a JSON object: `prompt` (text) or `messages` (chat messages), and
//! optionally `max_tokens` and `temperature`. Other fields are refused by name, so a typo is
//! an error rather than a silently different request. HTTPS uses rustls with the public
//! roots plus the executor's `ca_file`; the API key comes from the environment variable
//! `api_key_env` and is sent only as a bearer token.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use super::{
    executor::{ExecError, ExecOutput},
    openai_stream::{Pieces, StreamReader},
};
use crate::config::ExecutorConfig;

/// How long a backend has to answer the start-up probe.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// `compute` on a local backend when none is configured: the first of
/// `[host] llm_backends` whose `GET {base}/models` lists a model runs `compute` jobs with
/// it. A node with no backend answering runs no `compute` and announces no price for it.
pub async fn with_local_backend(mut cfg: crate::config::Config) -> crate::config::Config {
    if cfg.executors.contains_key("compute") || cfg.host.llm_backends.is_empty() {
        return cfg;
    }
    let Ok(http) = reqwest::Client::builder().timeout(PROBE_TIMEOUT).build() else {
        return cfg;
    };
    for base in &cfg.host.llm_backends {
        let base = base.trim_end_matches('/');
        let Ok(resp) = http.get(format!("{base}/models")).send().await else {
            continue;
        };
        if !resp.status().is_success() {
            continue;
        }
        let Ok(v) = resp.json::<Value>().await else {
            continue;
        };
        let Some(model) = v.pointer("/data/0/id").and_then(Value::as_str) else {
            continue;
        };
        tracing::info!(%base, %model, "compute jobs run on a local OpenAI-compatible backend");
        let ex = ExecutorConfig {
            kind: crate::config::ExecutorKind::Openai,
            base_url: Some(base.to_owned()),
            model: Some(model.to_owned()),
            timeout_s: 120,
            ..ExecutorConfig::default()
        };
        cfg.executors.insert("compute".into(), ex);
        return cfg;
    }
    tracing::info!("no local LLM backend answers; this node runs no compute jobs");
    cfg
}

/// Which API the executor calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST {base_url}/chat/completions`.
    Chat,
    /// `POST {base_url}/completions`.
    Completions,
    /// `POST {base_url}/embeddings`.
    Embeddings,
}

impl Endpoint {
    fn parse(s: Option<&str>) -> Result<Self, String> {
        match s.unwrap_or("chat") {
            "chat" => Ok(Endpoint::Chat),
            "completions" => Ok(Endpoint::Completions),
            "embeddings" => Ok(Endpoint::Embeddings),
            other => Err(format!(
                "endpoint must be chat, completions or embeddings, not {other:?}"
            )),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }
}

/// A configured OpenAI-compatible backend.
#[derive(Debug, Clone)]
pub struct Backend {
    url: String,
    model: String,
    endpoint: Endpoint,
    /// Whether answers are streamed (chat and completions only).
    stream: bool,
    key_env: Option<String>,
    http: reqwest::Client,
}

impl Backend {
    /// Builds the backend of an `openai` executor section; errors name the bad setting.
    pub fn new(cfg: &ExecutorConfig) -> Result<Self, String> {
        let base = cfg
            .base_url
            .as_deref()
            .ok_or("an openai executor needs base_url")?
            .trim_end_matches('/');
        let endpoint = Endpoint::parse(cfg.endpoint.as_deref())?;
        let mut builder = reqwest::Client::builder().use_rustls_tls();
        if let Some(path) = &cfg.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(Backend {
            url: format!("{base}{}", endpoint.path()),
            model: cfg.model.clone().unwrap_or_else(|| "default".into()),
            endpoint,
            stream: endpoint != Endpoint::Embeddings && cfg.stream.unwrap_or(true),
            key_env: cfg.api_key_env.clone(),
            http,
        })
    }

    /// Runs one job: builds the request from `payload`, reads at most `max` bytes of answer.
    /// A streamed answer adds each piece to `progress` as it arrives.
    pub async fn run(
        &self,
        payload: &str,
        max: usize,
        progress: &AtomicU64,
    ) -> Result<ExecOutput, ExecError> {
        let mut request = self.request(payload)?;
        if self.stream {
            request["stream"] = json!(true);
            request["stream_options"] = json!({ "include_usage": true });
        }
        let mut req = self.http.post(&self.url).json(&request);
        if let Some(var) = &self.key_env {
            if let Ok(key) = std::env::var(var) {
                req = req.bearer_auth(key);
            }
        }
        let mut resp = req.send().await.map_err(|e| {
            // reqwest's text may carry the URL, never the key.
            ExecError::Http(format!("backend unreachable: {}", without_url(&e)))
        })?;
        let status = resp.status();
        let is_stream = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        // A backend that ignores `stream` answers one JSON document: read it as such.
        if self.stream && status.is_success() && is_stream {
            let pieces = match self.endpoint {
                Endpoint::Completions => Pieces::Text,
                _ => Pieces::Delta,
            };
            let mut reader = StreamReader::new(pieces, max);
            while let Some(chunk) = resp.chunk().await.map_err(|e| {
                ExecError::Http(format!("backend stopped answering: {}", without_url(&e)))
            })? {
                let n = reader.feed(&chunk)?;
                progress.fetch_add(n, Ordering::Relaxed);
            }
            let (output, tokens) = reader.finish()?;
            return Ok(ExecOutput { output, tokens });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            ExecError::Http(format!("backend stopped answering: {}", without_url(&e)))
        })? {
            body.extend_from_slice(&chunk);
            if body.len() > max {
                return Err(ExecError::OutputTooLarge { limit: max });
            }
        }
        if !status.is_success() {
            return Err(ExecError::Http(format!("backend answered {status}")));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| ExecError::Http("backend answer is not JSON".into()))?;
        let tokens = v.pointer("/usage/total_tokens").and_then(Value::as_u64);
        let output = match self.endpoint {
            Endpoint::Chat => v
                .pointer("/choices/0/message/content")
                .and_then(Value::as_str),
            Endpoint::Completions => v.pointer("/choices/0/text").and_then(Value::as_str),
            Endpoint::Embeddings => None,
        }
        .map(str::to_owned);
        let output = match (self.endpoint, output) {
            (Endpoint::Embeddings, _) => v
                .pointer("/data/0/embedding")
                .filter(|e| e.is_array())
                .map(Value::to_string)
                .ok_or_else(|| ExecError::Http("backend answer has no embedding".into()))?,
            (_, Some(text)) => text,
            (_, None) => return Err(ExecError::Http("backend answer has no text".into())),
        };
        if output.len() > max {
            return Err(ExecError::OutputTooLarge { limit: max });
        }
        Ok(ExecOutput { output, tokens })
    }

    /// The backend request for a job's payload.
    fn request(&self, payload: &str) -> Result<Value, ExecError> {
        let bad = |m: String| ExecError::Payload(m);
        let p: Map<String, Value> = serde_json::from_str(payload)
            .map_err(|_| bad("the payload must be a JSON object".into()))?;
        if let Some(k) = p.keys().find(|k| {
            !matches!(
                k.as_str(),
                "prompt" | "messages" | "max_tokens" | "temperature"
            )
        }) {
            return Err(bad(format!(
                "unknown payload field {k:?} (prompt, messages, max_tokens, temperature)"
            )));
        }
        let prompt = match p.get("prompt") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("prompt must be text".into())),
            None => None,
        };
        let messages = match p.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => Some(Value::Array(m.clone())),
            Some(_) => return Err(bad("messages must be a non-empty array".into())),
            None => None,
        };
        let mut req = json!({ "model": self.model });
        match (self.endpoint, prompt, messages) {
            (_, Some(_), Some(_)) => return Err(bad("give prompt or messages, not both".into())),
            (_, None, None) => return Err(bad("the payload needs a prompt or messages".into())),
            (Endpoint::Chat, Some(text), None) => {
                req["messages"] = json!([{ "role": "user", "content": text }]);
            }
            (Endpoint::Chat, None, Some(m)) => req["messages"] = m,
            (Endpoint::Completions, Some(text), None) => req["prompt"] = json!(text),
            (Endpoint::Embeddings, Some(text), None) => req["input"] = json!(text),
            (_, None, Some(_)) => {
                return Err(bad("messages need the chat endpoint; give a prompt".into()))
            }
        }
        if self.endpoint != Endpoint::Embeddings {
            for k in ["max_tokens", "temperature"] {
                match p.get(k) {
                    Some(v) if v.is_number() => req[k] = v.clone(),
                    Some(_) => return Err(bad(format!("{k} must be a number"))),
                    None => {}
                }
            }
        }
        Ok(req)
    }
}

/// An HTTP error's kind, without the URL (which may name a private host) or anything else
/// the request carried.
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        // Includes TLS failures (an untrusted certificate) during the handshake.
        let mut s = "connection failed".to_owned();
        let mut src = std::error::Error::source(e);
        while let Some(inner) = src {
            s = format!("{s}: {inner}");
            src = inner.source();
        }
        s
    } else if e.is_body() || e.is_decode() {
        "the answer broke off".into()
    } else {
        "request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
        sync::oneshot,
    };

    use super::*;

    /// A one-shot backend on loopback: answers the first request with a streamed chat
    /// answer, one piece, then waits for `go` before the rest (or breaks off).
    async fn backend(rest: &'static str) -> (String, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let (go, wait) = oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let _ = s.read(&mut buf).await.unwrap();
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
            let first = "data: {\"choices\":[{\"delta\":{\"content\":\"echo:\"}}]}\n\n";
            s.write_all(format!("{head}{first}").as_bytes())
                .await
                .unwrap();
            s.flush().await.unwrap();
            let _ = wait.await;
            let _ = s.write_all(rest.as_bytes()).await;
        });
        (url, go)
    }

    fn chat(url: &str) -> Backend {
        Backend::new(&ExecutorConfig {
            kind: crate::config::ExecutorKind::Openai,
            base_url: Some(url.into()),
            ..ExecutorConfig::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_streamed_answer_counts_progress_as_its_pieces_arrive() {
        let rest = "data: {\"choices\":[{\"delta\":{\"content\":\" hi\"}}],\"usage\":{\"total_tokens\":3}}\n\ndata: [DONE]\n\n";
        let (url, go) = backend(rest).await;
        let b = chat(&url);
        let progress = Arc::new(AtomicU64::new(0));
        let p = progress.clone();
        let job = tokio::spawn(async move { b.run(r#"{"prompt":"hi"}"#, 1024, &p).await });
        // The first piece is counted while the answer is still coming.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while progress.load(Ordering::Relaxed) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no progress counted"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!job.is_finished(), "the answer is not complete yet");
        go.send(()).unwrap();
        let out = job.await.unwrap().unwrap();
        assert_eq!(out.output, "echo: hi");
        assert_eq!(out.tokens, Some(3));
        assert_eq!(progress.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_stream_that_stops_mid_way_fails_the_job() {
        let (url, go) = backend("").await;
        let b = chat(&url);
        go.send(()).unwrap();
        let err = b
            .run(r#"{"prompt":"hi"}"#, 1024, &AtomicU64::new(0))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("broke off"), "{err}");
    }
}
