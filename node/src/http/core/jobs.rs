//! Core's jobs: idempotency by `job_id`, and the state of asynchronous jobs.
//!
//! Before a job runs, a durable "running" record (`job_id` → hash of the job's content)
//! is committed; when it ends, its HTTP answer is committed beside it. So:
//! - a retry of the same job (same content, even re-signed with a new timestamp) waits for
//!   or replays the first answer, and the job never runs twice, across restarts too;
//! - the same `job_id` with other content is a conflict;
//! - an answer where no host received the job (`no_hosts`, overload, invalid input) is not
//!   kept: running it on a retry is not running it twice, and Core retries exactly then;
//! - a record left "running" by a crash answers `503 interrupted` (the job may or may not
//!   have run; Core must decide with a new `job_id`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::{
    now_ms,
    store::{Op, Store, StoreError, Table},
};

/// An HTTP answer to replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

impl Outcome {
    /// Whether a host may have received the job, so the answer must be replayed rather
    /// than the job re-run.
    pub fn is_final(&self) -> bool {
        !matches!(self.status, 400 | 402 | 429 | 503)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    content_hash: String,
    running: bool,
    outcome: Option<Outcome>,
    created_ms: u64,
}

/// What to do with a submitted job.
pub enum Admission {
    /// New: run it, then call [`JobBook::finish`].
    Run(Ticket),
    /// The same job is running: wait for its answer.
    Wait(watch::Receiver<Option<Outcome>>),
    /// The same job already ended: replay.
    Done(Outcome),
    /// Same `job_id`, other content.
    Conflict,
}

/// The right to run one job.
pub struct Ticket {
    job_id: String,
    content_hash: String,
    created_ms: u64,
    tx: watch::Sender<Option<Outcome>>,
}

impl Ticket {
    /// The job id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }
}

/// The state of a job for `GET /jobs/{id}`.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Still running.
    Running,
    /// Ended with this answer.
    Done(Outcome),
}

/// Jobs running in this process: id → (content hash, where their answer will appear).
type Live = HashMap<String, (String, watch::Receiver<Option<Outcome>>)>;

/// The job book.
pub struct JobBook {
    store: Arc<Store>,
    live: Mutex<Live>,
}

impl JobBook {
    /// A book over the store's `jobs` table.
    pub fn new(store: Arc<Store>) -> Self {
        JobBook {
            store,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        // Poisoning would only follow a panic while inserting into the map.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides what to do with a job; for a new one, durably marks it running first.
    pub async fn admit(&self, job_id: &str, content_hash: &str) -> Result<Admission, StoreError> {
        let created_ms = now_ms();
        let tx = {
            let mut live = self.live();
            if let Some((hash, rx)) = live.get(job_id) {
                return Ok(if hash == content_hash {
                    Admission::Wait(rx.clone())
                } else {
                    Admission::Conflict
                });
            }
            if let Some(rec) = self.store.get::<Record>(Table::Jobs, job_id)? {
                if rec.content_hash != content_hash {
                    return Ok(Admission::Conflict);
                }
                return Ok(Admission::Done(rec.outcome.unwrap_or_else(interrupted)));
            }
            let (tx, rx) = watch::channel(None);
            live.insert(job_id.to_owned(), (content_hash.to_owned(), rx));
            tx
        };
        let rec = Record {
            content_hash: content_hash.to_owned(),
            running: true,
            outcome: None,
            created_ms,
        };
        if let Err(e) = self
            .store
            .commit(vec![Op::put(Table::Jobs, job_id, &rec)?])
            .await
        {
            self.live().remove(job_id);
            return Err(e);
        }
        Ok(Admission::Run(Ticket {
            job_id: job_id.to_owned(),
            content_hash: content_hash.to_owned(),
            created_ms,
            tx,
        }))
    }

    /// Records a job's answer (durably, when final) and wakes everyone waiting for it.
    pub async fn finish(&self, ticket: Ticket, outcome: Outcome) -> Result<(), StoreError> {
        let op = if outcome.is_final() {
            let rec = Record {
                content_hash: ticket.content_hash.clone(),
                running: false,
                outcome: Some(outcome.clone()),
                created_ms: ticket.created_ms,
            };
            Op::put(Table::Jobs, ticket.job_id.clone(), &rec)?
        } else {
            Op::Delete(Table::Jobs, ticket.job_id.clone())
        };
        let result = self.store.commit(vec![op]).await;
        let _ = ticket.tx.send(Some(outcome));
        self.live().remove(&ticket.job_id);
        result
    }

    /// A job's state, if the book knows it.
    pub fn state(&self, job_id: &str) -> Result<Option<JobState>, StoreError> {
        if self.live().contains_key(job_id) {
            return Ok(Some(JobState::Running));
        }
        Ok(self
            .store
            .get::<Record>(Table::Jobs, job_id)?
            .map(|r| JobState::Done(r.outcome.unwrap_or_else(interrupted))))
    }

    /// Deletes ended records older than `max_age_ms`; returns how many.
    pub async fn prune(&self, max_age_ms: u64) -> Result<usize, StoreError> {
        let cutoff = now_ms().saturating_sub(max_age_ms);
        let old: Vec<String> = self
            .store
            .scan::<Record>(Table::Jobs)?
            .into_iter()
            .filter(|(_, r)| !r.running && r.created_ms <= cutoff)
            .map(|(k, _)| k)
            .collect();
        let ops = old
            .iter()
            .map(|k| Op::delete(Table::Jobs, k.as_str()))
            .collect();
        self.store.commit(ops).await?;
        Ok(old.len())
    }
}

fn interrupted() -> Outcome {
    Outcome {
        status: 503,
        body: serde_json::json!({
            "error": "interrupted",
            "message": "the node restarted while this job was running; it may or may not have run — submit it again with a new job_id",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> (Arc<Store>, JobBook) {
        let s = Arc::new(Store::in_memory().unwrap());
        (s.clone(), JobBook::new(s))
    }

    fn ok() -> Outcome {
        Outcome {
            status: 200,
            body: serde_json::json!({"status": "completed"}),
        }
    }

    #[tokio::test]
    async fn a_retry_replays_and_other_content_conflicts() {
        let (_, b) = book();
        let Admission::Run(t) = b.admit("j", "h1").await.unwrap() else {
            panic!("new job")
        };
        let Admission::Wait(mut rx) = b.admit("j", "h1").await.unwrap() else {
            panic!("running")
        };
        assert!(matches!(
            b.admit("j", "h2").await.unwrap(),
            Admission::Conflict
        ));
        assert_eq!(b.state("j").unwrap(), Some(JobState::Running));
        b.finish(t, ok()).await.unwrap();
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow().clone(), Some(ok()));
        assert!(matches!(b.admit("j", "h1").await.unwrap(), Admission::Done(o) if o == ok()));
        assert!(matches!(
            b.admit("j", "h2").await.unwrap(),
            Admission::Conflict
        ));
    }

    #[tokio::test]
    async fn answers_where_no_host_got_the_job_are_not_kept() {
        let (_, b) = book();
        let Admission::Run(t) = b.admit("j", "h").await.unwrap() else {
            panic!()
        };
        b.finish(
            t,
            Outcome {
                status: 503,
                body: Value::Null,
            },
        )
        .await
        .unwrap();
        assert!(
            matches!(b.admit("j", "h").await.unwrap(), Admission::Run(_)),
            "runs again"
        );
    }

    #[tokio::test]
    async fn prune_forgets_only_old_ended_jobs() {
        let (_, b) = book();
        let Admission::Run(t) = b.admit("old", "h").await.unwrap() else {
            panic!()
        };
        b.finish(t, ok()).await.unwrap();
        let Admission::Run(_running) = b.admit("running", "h").await.unwrap() else {
            panic!()
        };
        assert_eq!(b.prune(60_000).await.unwrap(), 0, "nothing is old yet");
        assert_eq!(b.prune(0).await.unwrap(), 1, "only the ended job goes");
        assert_eq!(b.state("old").unwrap(), None);
        assert_eq!(b.state("running").unwrap(), Some(JobState::Running));
    }

    #[tokio::test]
    async fn a_job_left_running_by_a_crash_answers_interrupted() {
        let (s, b) = book();
        let Admission::Run(_t) = b.admit("j", "h").await.unwrap() else {
            panic!()
        };
        // A new process: same store, empty memory.
        let b2 = JobBook::new(s.clone());
        match b2.admit("j", "h").await.unwrap() {
            Admission::Done(o) => assert_eq!(o.body["error"], "interrupted"),
            _ => panic!("must not run again"),
        }
    }
}
