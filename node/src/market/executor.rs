//! Executors run jobs on a host: `echo`, `exec` (a program, no shell) and `http`.
//!
//! Every executor has a time limit and an output size limit; going over either is a
//! clear job error, and a program that overruns is killed.

use std::{process::Stdio, sync::atomic::AtomicU64, time::Duration};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{ExecutorConfig, ExecutorKind};

/// Why a job failed on the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// No executor for this job type.
    #[error("no executor for job type {0:?}")]
    NoExecutor(String),
    /// The program could not be started.
    #[error("cannot start {program:?}: {reason}")]
    Spawn {
        /// Program.
        program: String,
        /// OS error.
        reason: String,
    },
    /// The program exited with a non-zero status.
    #[error("{program:?} exited with {status}: {stderr}")]
    Exit {
        /// Program.
        program: String,
        /// Exit status.
        status: String,
        /// Last part of its stderr.
        stderr: String,
    },
    /// The job ran over its time limit and was stopped.
    #[error("job exceeded its time limit of {0:?}")]
    Timeout(Duration),
    /// The output exceeded the size limit.
    #[error("output exceeds {limit} bytes")]
    OutputTooLarge {
        /// Limit in bytes.
        limit: usize,
    },
    /// The output is not UTF-8 text.
    #[error("output is not UTF-8 text")]
    NotUtf8,
    /// The HTTP backend failed.
    #[error("http executor: {0}")]
    Http(String),
    /// I/O with the program failed.
    #[error("executor i/o: {0}")]
    Io(String),
    /// The payload does not fit the executor (e.g. no prompt for an LLM backend).
    #[error("bad payload: {0}")]
    Payload(String),
    /// The executor's settings are unusable (e.g. an unreadable CA file).
    #[error("executor misconfigured: {0}")]
    Config(String),
}

impl ExecError {
    /// What a remote broker is told: the kind of failure and the exit status, never the
    /// program's path or its stderr (which may hold secrets). The host logs the whole error.
    pub fn for_peer(&self) -> String {
        match self {
            ExecError::Spawn { .. } => {
                "executor_unavailable: the host cannot start its executor".into()
            }
            ExecError::Exit { status, .. } => format!("executor_failed: exited with {status}"),
            ExecError::Config(_) => {
                "executor_unavailable: the host's executor is misconfigured".into()
            }
            other => other.to_string(),
        }
    }
}

/// What an executor produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The output text.
    pub output: String,
    /// Tokens the backend reports having used, if it says.
    pub tokens: Option<u64>,
}

/// One configured executor.
#[derive(Debug, Clone)]
pub struct Executor {
    cfg: ExecutorConfig,
    http: Option<reqwest::Client>,
    openai: Option<Result<super::openai::Backend, String>>,
}

impl Executor {
    /// Builds an executor from its config section.
    pub fn new(cfg: ExecutorConfig) -> Self {
        let http = (cfg.kind == ExecutorKind::Http).then(reqwest::Client::new);
        let openai = (cfg.kind == ExecutorKind::Openai).then(|| super::openai::Backend::new(&cfg));
        Executor { cfg, http, openai }
    }

    /// The time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.timeout_s.max(1))
    }

    /// Runs a job with `payload` (JSON text) within the time limit.
    pub async fn run(&self, payload: &str) -> Result<ExecOutput, ExecError> {
        self.run_with_progress(payload, &AtomicU64::new(0)).await
    }

    /// [`Executor::run`], counting work done into `progress` as it goes (pieces of a
    /// streamed answer), for the host's heartbeats.
    pub async fn run_with_progress(
        &self,
        payload: &str,
        progress: &AtomicU64,
    ) -> Result<ExecOutput, ExecError> {
        let limit = self.timeout();
        match tokio::time::timeout(limit, self.run_inner(payload, progress)).await {
            Ok(r) => r,
            // Dropping the future kills a child process (kill_on_drop).
            Err(_) => Err(ExecError::Timeout(limit)),
        }
    }

    async fn run_inner(
        &self,
        payload: &str,
        progress: &AtomicU64,
    ) -> Result<ExecOutput, ExecError> {
        let max = self.cfg.max_output_bytes;
        match self.cfg.kind {
            ExecutorKind::Echo => {
                if payload.len() > max {
                    return Err(ExecError::OutputTooLarge { limit: max });
                }
                Ok(ExecOutput {
                    output: payload.to_owned(),
                    tokens: None,
                })
            }
            ExecutorKind::Exec => self.run_program(payload, max).await,
            ExecutorKind::Http => self.run_http(payload, max).await,
            ExecutorKind::Openai => match &self.openai {
                Some(Ok(b)) => b.run(payload, max, progress).await,
                Some(Err(e)) => Err(ExecError::Config(e.clone())),
                None => Err(ExecError::Config("no backend".into())),
            },
        }
    }

    async fn run_program(&self, payload: &str, max: usize) -> Result<ExecOutput, ExecError> {
        let program = self.cfg.program.clone().unwrap_or_default();
        let mut child = tokio::process::Command::new(&program)
            .args(&self.cfg.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ExecError::Spawn {
                program: program.clone(),
                reason: e.to_string(),
            })?;
        let io = |e: std::io::Error| ExecError::Io(e.to_string());
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ExecError::Io("child pipes missing".into()));
        };
        let payload = payload.as_bytes().to_vec();
        // Feed stdin concurrently: a program may write before it reads everything.
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(&payload).await;
            drop(stdin);
        });
        // Drain stderr in its own task (keeping the first 64 KiB) so a chatty program never
        // blocks on a full pipe while we read stdout.
        let stderr_task = tokio::spawn(async move {
            let mut keep = Vec::new();
            let mut stderr = stderr;
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                if keep.len() < 64 * 1024 {
                    keep.extend_from_slice(&chunk[..n]);
                }
            }
            keep
        });
        // Read one byte past the limit to tell "exactly max" from "more than max".
        let mut out = Vec::new();
        let mut limited = stdout.take(max as u64 + 1);
        limited.read_to_end(&mut out).await.map_err(io)?;
        writer.abort();
        if out.len() > max {
            let _ = child.kill().await;
            stderr_task.abort();
            return Err(ExecError::OutputTooLarge { limit: max });
        }
        let status = child.wait().await.map_err(io)?;
        let err = stderr_task.await.unwrap_or_default();
        if !status.success() {
            let text = String::from_utf8_lossy(&err);
            let tail: String = text
                .trim()
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(ExecError::Exit {
                program,
                status: status.to_string(),
                stderr: tail,
            });
        }
        let output = String::from_utf8(out).map_err(|_| ExecError::NotUtf8)?;
        Ok(ExecOutput {
            output,
            tokens: None,
        })
    }

    async fn run_http(&self, payload: &str, max: usize) -> Result<ExecOutput, ExecError> {
        let (Some(http), Some(url)) = (&self.http, &self.cfg.url) else {
            return Err(ExecError::Http("no url configured".into()));
        };
        let mut resp = http
            .post(url)
            .header("content-type", "application/json")
            .body(payload.to_owned())
            .send()
            .await
            .map_err(|e| ExecError::Http(e.to_string()))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ExecError::Http(e.to_string()))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > max {
                return Err(ExecError::OutputTooLarge { limit: max });
            }
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(ExecError::Http(format!(
                "{url} answered {status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        let output = String::from_utf8(body).map_err(|_| ExecError::NotUtf8)?;
        // OpenAI-compatible servers report usage; use it when present.
        let tokens = serde_json::from_str::<serde_json::Value>(&output)
            .ok()
            .and_then(|v| v.pointer("/usage/total_tokens").and_then(|t| t.as_u64()));
        Ok(ExecOutput { output, tokens })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(program: &str, args: &[&str], timeout_s: u64, max: usize) -> Executor {
        Executor::new(ExecutorConfig {
            kind: ExecutorKind::Exec,
            program: Some(program.into()),
            args: args.iter().map(|s| s.to_string()).collect(),
            timeout_s,
            max_output_bytes: max,
            ..ExecutorConfig::default()
        })
    }

    #[tokio::test]
    async fn echo_returns_the_payload() {
        let e = Executor::new(ExecutorConfig::default());
        assert_eq!(e.run("{\"a\":1}").await.unwrap().output, "{\"a\":1}");
    }

    #[tokio::test]
    async fn exec_feeds_stdin_and_returns_stdout_with_a_clean_environment() {
        let e = exec("/bin/cat", &[], 5, 1024);
        assert_eq!(e.run("{\"x\":2}").await.unwrap().output, "{\"x\":2}");
        let e = exec("/usr/bin/env", &[], 5, 1024);
        assert_eq!(
            e.run("{}").await.unwrap().output,
            "",
            "environment is cleared"
        );
    }

    #[tokio::test]
    async fn exec_missing_program_is_a_clear_error() {
        let e = exec("/nonexistent/program", &[], 5, 1024);
        let err = e.run("{}").await.unwrap_err();
        assert!(matches!(err, ExecError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/program"));
    }

    #[tokio::test]
    async fn exec_non_zero_exit_reports_status_and_stderr() {
        let e = exec("/bin/sh", &["-c", "echo boom >&2; exit 3"], 5, 1024);
        let err = e.run("{}").await.unwrap_err();
        match &err {
            ExecError::Exit { status, stderr, .. } => {
                assert!(status.contains('3'), "{status}");
                assert_eq!(stderr, "boom");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[tokio::test]
    async fn exec_timeout_stops_the_program() {
        let e = exec("/bin/sleep", &["30"], 1, 1024);
        let t = std::time::Instant::now();
        let err = e.run("{}").await.unwrap_err();
        assert_eq!(err, ExecError::Timeout(Duration::from_secs(1)));
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn exec_oversized_output_is_refused() {
        let e = exec("/bin/sh", &["-c", "head -c 5000 /dev/zero"], 5, 4096);
        assert_eq!(
            e.run("{}").await.unwrap_err(),
            ExecError::OutputTooLarge { limit: 4096 }
        );
        // An endless writer is stopped for its size, not left to run into the time limit.
        let e = exec("/bin/sh", &["-c", "yes; echo never"], 20, 4096);
        let t = std::time::Instant::now();
        assert_eq!(
            e.run("{}").await.unwrap_err(),
            ExecError::OutputTooLarge { limit: 4096 }
        );
        assert!(t.elapsed() < Duration::from_secs(10));
        let e = exec(
            "/bin/sh",
            &["-c", "head -c 4096 /dev/zero | tr '\\0' a"],
            5,
            4096,
        );
        assert_eq!(
            e.run("{}").await.unwrap().output.len(),
            4096,
            "exactly the limit is fine"
        );
    }

    #[tokio::test]
    async fn http_executor_posts_the_payload_and_returns_the_body() {
        use axum::{routing::post, Router};
        let app = Router::new()
            .route(
                "/v1/x",
                post(|body: String| async move {
                    format!("{{\"echo\":{body},\"usage\":{{\"total_tokens\":7}}}}")
                }),
            )
            .route(
                "/fail",
                post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "nope") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mk = |path: &str| {
            Executor::new(ExecutorConfig {
                kind: ExecutorKind::Http,
                url: Some(format!("http://{addr}{path}")),
                ..ExecutorConfig::default()
            })
        };
        let out = mk("/v1/x").run("{\"prompt\":\"hi\"}").await.unwrap();
        assert_eq!(
            out.output,
            "{\"echo\":{\"prompt\":\"hi\"},\"usage\":{\"total_tokens\":7}}"
        );
        assert_eq!(out.tokens, Some(7));
        let err = mk("/fail").run("{}").await.unwrap_err();
        assert!(err.to_string().contains("500"), "{err}");
    }
}
