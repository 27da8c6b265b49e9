//! `[executors.<job type>]`: how a host runs each job type.

use serde::{Deserialize, Serialize};

/// How an executor runs a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Returns the payload.
    #[default]
    Echo,
    /// Runs `program` with `args`, payload JSON on stdin, stdout as output.
    Exec,
    /// POSTs the payload to `url`, the response body as output.
    Http,
    /// An OpenAI-compatible backend at `base_url`: the payload's `prompt` or `messages`
    /// (with `max_tokens`, `temperature`) become a chat completion, completion or embedding
    /// request for `model`; the answer's text is the output, its `usage` the tokens.
    Openai,
}

/// One executor, `[executors.<job type>]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorConfig {
    /// `echo`, `exec` or `http`.
    pub kind: ExecutorKind,
    /// Program to run (`exec`); no shell is involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// Arguments (`exec`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// URL to POST to (`http`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The backend's API root, e.g. `http://127.0.0.1:11434/v1` (`openai`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The model to ask for (`openai`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `chat` (default), `completions` or `embeddings` (`openai`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Environment variable holding the backend's API key, sent as a bearer token and never
    /// logged (`openai`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// PEM file of a CA to trust for an HTTPS backend, besides the public roots (`openai`,
    /// `http`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Stream the answer from the backend (`openai` chat and completions; default true):
    /// the host counts its pieces as progress for the broker's heartbeats.
    pub stream: Option<bool>,
    /// Seconds a job may run.
    pub timeout_s: u64,
    /// Largest output accepted, in bytes.
    pub max_output_bytes: usize,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            kind: ExecutorKind::Echo,
            program: None,
            args: Vec::new(),
            url: None,
            base_url: None,
            model: None,
            endpoint: None,
            api_key_env: None,
            ca_file: None,
            stream: None,
            timeout_s: 30,
            max_output_bytes: 1024 * 1024,
        }
    }
}
