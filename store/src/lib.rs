//! The node's persistent store: one redb database in the data directory.
//!
//! Values are JSON documents keyed by string, grouped in named tables. Anyone holding the
//! [`Store`] reads (redb readers never wait for the writer). Writing has one path: the
//! store's writer thread. Callers hand it [`Op`]s and wait for the durable acknowledgement
//! ([`Store::commit`] from async code, [`Store::commit_blocking`] from a blocking thread),
//! or queue soft state without waiting ([`Store::commit_later`]). The thread folds every
//! change queued meanwhile into one transaction, so under load N callers cost one fsync, and
//! no async task ever waits on the disk. redb commits are ACID and fsynced before the
//! acknowledgement: whatever a caller acknowledges after a commit survives `kill -9` and
//! power loss.
//!
//! The schema version lives in the `meta` table. A database written by a newer schema is
//! refused with [`StoreError::NewerSchema`] rather than misread.

use std::{
    path::Path,
    sync::{mpsc as std_mpsc, Arc},
    thread::JoinHandle,
};

use redb::{backends::InMemoryBackend, Database, ReadableDatabase, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::{mpsc, oneshot};

/// Schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// A named table of JSON documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Schema version and other single values.
    Meta,
    /// Peer registry: peer id → the registry's record of the peer.
    Peers,
    /// Host settings changed at run time (announcement, active flag).
    Settings,
    /// Signed receipts this node issued as a host, keyed by job id.
    Receipts,
    /// Receipt batches exported for the ledger, keyed by Merkle root.
    Batches,
    /// Broker-side reputation of hosts, keyed by peer id.
    Reputation,
    /// Core-adapter jobs (idempotency records), keyed by job id.
    Jobs,
    /// Signed manifests of assets this node can read (its own, or shared with it), keyed by
    /// asset id.
    Manifests,
    /// Signed manifests this node keeps as a host for other owners, keyed by asset id.
    HostedManifests,
    /// Uploads in progress (resume state), keyed by source path.
    Uploads,
    /// Ledger blocks, keyed by block id.
    Blocks,
    /// Wallet transactions with their state and certificate, keyed by tx id.
    Txs,
    /// A witness's durable `(slot → tx id)` promises, keyed by slot.
    WitnessRecords,
    /// Quorum engine items (jobs, uploads), keyed by `<kind>:<id>`.
    Quorum,
    /// Shards this node keeps as a host, keyed by shard hash: which peer stored each one and
    /// its length, from which the per-peer quotas are recomputed at start.
    HostedShards,
    /// Store-and-forward bundles this node holds in custody, keyed by bundle id (hex): the
    /// signed bundle, its hop count and when custody began (`offgrid_ledger::bundle`).
    Bundles,
}

impl Table {
    const ALL: [Table; 16] = [
        Table::Meta,
        Table::Peers,
        Table::Settings,
        Table::Receipts,
        Table::Batches,
        Table::Reputation,
        Table::Jobs,
        Table::Manifests,
        Table::HostedManifests,
        Table::Uploads,
        Table::Blocks,
        Table::Txs,
        Table::WitnessRecords,
        Table::Quorum,
        Table::HostedShards,
        Table::Bundles,
    ];

    fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.name())
    }

    /// The table's name inside the database file.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Peers => "peers",
            Table::Settings => "settings",
            Table::Receipts => "receipts",
            Table::Batches => "batches",
            Table::Reputation => "reputation",
            Table::Jobs => "jobs",
            Table::Manifests => "manifests",
            Table::HostedManifests => "hosted_manifests",
            Table::Uploads => "uploads",
            Table::Blocks => "blocks",
            Table::Txs => "txs",
            Table::WitnessRecords => "witness_records",
            Table::Quorum => "quorum",
            Table::HostedShards => "hosted_shards",
            Table::Bundles => "bundles",
        }
    }
}

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// Database path.
        path: String,
        /// Underlying error.
        source: Box<redb::DatabaseError>,
    },
    /// The database was written by a newer version of offgrid-node.
    #[error("database schema version {found} is newer than this build supports ({supported}); upgrade offgrid-node")]
    NewerSchema {
        /// Version found on disk.
        found: u32,
        /// Highest version this build supports.
        supported: u32,
    },
    /// A read or write failed inside redb.
    #[error("database error: {0}")]
    Db(#[from] Box<redb::Error>),
    /// The write failed in the writer thread (the message says why), or the writer has
    /// stopped (the store is closing).
    #[error("store write failed: {0}")]
    Io(String),
    /// The writer's queue is full; [`Store::commit_later`] does not wait.
    #[error("store writer busy")]
    Busy,
    /// The disk is full: nothing was written. Writes work again once space returns.
    #[error("no space left for the database: {0}")]
    NoSpace(String),
    /// The database is being reopened after an I/O error; try again.
    #[error("the database is reopening after an I/O error")]
    Unavailable,
    /// A stored value could not be encoded or decoded.
    #[error("corrupt value in table {table} key {key}: {source}")]
    Codec {
        /// Table name.
        table: &'static str,
        /// Key.
        key: String,
        /// Underlying error.
        source: serde_json::Error,
    },
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// One write transaction: several puts and deletes committed atomically.
struct Batch<'a> {
    txn: &'a redb::WriteTransaction,
}

impl Batch<'_> {
    /// Inserts or replaces `key` in `table`.
    fn put<T: Serialize + ?Sized>(
        &mut self,
        table: Table,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Codec {
            table: table.name(),
            key: key.to_owned(),
            source,
        })?;
        let mut t = self.txn.open_table(table.def()).map_err(db_err)?;
        t.insert(key, bytes.as_slice()).map_err(db_err)?;
        Ok(())
    }

    /// Inserts already-encoded JSON bytes.
    fn put_raw(&mut self, table: Table, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(table.def()).map_err(db_err)?;
        t.insert(key, bytes).map_err(db_err)?;
        Ok(())
    }

    /// Removes `key` from `table`; absent keys are fine.
    fn delete(&mut self, table: Table, key: &str) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(table.def()).map_err(db_err)?;
        t.remove(key).map_err(db_err)?;
        Ok(())
    }
}

/// The store: reads on the caller's thread, writes through the writer thread. Share it
/// behind an `Arc`; dropping the last one lets the writer finish what is queued, and
/// closes the database.
pub struct Store {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Item>>,
    writer: Option<JoinHandle<()>>,
}

/// The database, which the writer reopens after an I/O error (redb refuses every write
/// after one until then), and the failure counter.
struct Shared {
    db: std::sync::RwLock<Option<Database>>,
    path: Option<std::path::PathBuf>,
    failures: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// Runs `f` on the database; `Unavailable` while it is being reopened.
    fn with<R>(&self, f: impl FnOnce(&Database) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let g = self.db.read().unwrap_or_else(|p| p.into_inner());
        f(g.as_ref().ok_or(StoreError::Unavailable)?)
    }

    /// Closes and reopens the file (no reader holds it meanwhile).
    fn reopen(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut g = self.db.write().unwrap_or_else(|p| p.into_inner());
        drop(g.take());
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(e),
        })?;
        *g = Some(db);
        tracing::warn!(path = %path.display(), "database reopened after an I/O error");
        Ok(())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has committed what is queued; joining
        // it means a reopen of the same file right after never finds it still held.
        drop(self.tx.take());
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(e),
        })?;
        Self::init(db, Some(path.to_owned()))
    }

    /// A store that lives only in memory, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = redb::Builder::new()
            .create_with_backend(InMemoryBackend::new())
            .map_err(|e| StoreError::Open {
                path: "<memory>".into(),
                source: Box::new(e),
            })?;
        Self::init(db, None)
    }

    /// Commits that failed (each logged at ERROR) since the store opened.
    pub fn write_failures(&self) -> u64 {
        self.shared
            .failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn init(db: Database, path: Option<std::path::PathBuf>) -> Result<Self, StoreError> {
        let found: Option<u32> = read_one(&db, Table::Meta, "schema_version").or_else(|e| {
            // A fresh file has no tables yet.
            match e {
                StoreError::Db(ref inner)
                    if matches!(**inner, redb::Error::TableDoesNotExist(_)) =>
                {
                    Ok(None)
                }
                other => Err(other),
            }
        })?;
        if let Some(found) = found {
            if found > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
        }
        write(&db, |b| {
            // Opening every table creates it, so readers never see TableDoesNotExist.
            for t in Table::ALL {
                b.txn.open_table(t.def()).map_err(db_err)?;
            }
            b.put(Table::Meta, "schema_version", &SCHEMA_VERSION)
        })?;
        let shared = Arc::new(Shared {
            db: std::sync::RwLock::new(Some(db)),
            path,
            failures: Default::default(),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || run_writer(&shared, rx))
                .map_err(|e| StoreError::Io(format!("cannot start the store writer: {e}")))?
        };
        Ok(Store {
            shared,
            tx: Some(tx),
            writer: Some(writer),
        })
    }

    /// Commits `ops` durably, in one transaction with whatever else is queued, and waits
    /// for the acknowledgement. For async code: the caller's task yields, no thread blocks.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let (ack, rx) = oneshot::channel();
        self.sender()?
            .send((ops, Ack::Async(ack)))
            .await
            .map_err(|_| stopped())?;
        rx.await
            .map_err(|_| stopped())?
            .map_err(WriteFailure::into_error)
    }

    /// [`Store::commit`] for a blocking thread (inside `spawn_blocking`, a plain thread or a
    /// synchronous test).
    ///
    /// # Panics
    /// When called from an async task: the queue's blocking send refuses to block a runtime
    /// thread. Use [`Store::commit`] there.
    pub fn commit_blocking(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let (ack, rx) = std_mpsc::sync_channel(1);
        self.sender()?
            .blocking_send((ops, Ack::Blocking(ack)))
            .map_err(|_| stopped())?;
        rx.recv()
            .map_err(|_| stopped())?
            .map_err(WriteFailure::into_error)
    }

    /// Queues `ops` without waiting, for soft state that is rebuilt or re-sent anyway (the
    /// writer logs a failure). [`StoreError::Busy`] when the queue is full.
    pub fn commit_later(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.sender()?
            .try_send((ops, Ack::None))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Busy,
                mpsc::error::TrySendError::Closed(_) => stopped(),
            })
    }

    /// [`Store::commit_blocking`] of one put.
    pub fn put_blocking<T: Serialize + ?Sized>(
        &self,
        table: Table,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        self.commit_blocking(vec![Op::put(table, key, value)?])
    }

    fn sender(&self) -> Result<&mpsc::Sender<Item>, StoreError> {
        self.tx.as_ref().ok_or_else(stopped)
    }

    /// Reads one value.
    pub fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        self.shared.with(|db| read_one(db, table, key))
    }

    /// Reads every entry of a table in key order.
    pub fn scan<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>, StoreError> {
        self.scan_after(table, None, usize::MAX)
    }

    /// Reads up to `limit` entries with keys strictly after `after` (all when `None`), in
    /// key order.
    pub fn scan_after<T: DeserializeOwned>(
        &self,
        table: Table,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.shared.with(|db| scan_db(db, table, after, limit))
    }

    /// Number of entries in a table.
    pub fn len(&self, table: Table) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        self.shared.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(table.def()).map_err(db_err)?;
            t.len().map_err(db_err)
        })
    }
}

fn scan_db<T: DeserializeOwned>(
    db: &Database,
    table: Table,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, T)>, StoreError> {
    use std::ops::Bound;
    let txn = db.begin_read().map_err(db_err)?;
    let t = txn.open_table(table.def()).map_err(db_err)?;
    let lower = match after {
        Some(k) => Bound::Excluded(k),
        None => Bound::Unbounded,
    };
    let mut out = Vec::new();
    for item in t
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(db_err)?
        .take(limit)
    {
        let (k, v) = item.map_err(db_err)?;
        let key = k.value().to_owned();
        let value = serde_json::from_slice(v.value()).map_err(|source| StoreError::Codec {
            table: table.name(),
            key: key.clone(),
            source,
        })?;
        out.push((key, value));
    }
    Ok(out)
}

/// One change for the writer.
#[derive(Debug, Clone)]
pub enum Op {
    /// Insert or replace (value already JSON-encoded).
    Put(Table, String, Vec<u8>),
    /// Remove.
    Delete(Table, String),
}

impl Op {
    /// A put of a serialisable value.
    pub fn put<T: Serialize + ?Sized>(
        table: Table,
        key: impl Into<String>,
        value: &T,
    ) -> Result<Op, StoreError> {
        let key = key.into();
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Codec {
            table: table.name(),
            key: key.clone(),
            source,
        })?;
        Ok(Op::Put(table, key, bytes))
    }

    /// A delete; absent keys are fine.
    pub fn delete(table: Table, key: impl Into<String>) -> Op {
        Op::Delete(table, key.into())
    }
}

/// Reads one value from `db`.
fn read_one<T: DeserializeOwned>(
    db: &Database,
    table: Table,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let txn = db.begin_read().map_err(db_err)?;
    let t = txn.open_table(table.def()).map_err(db_err)?;
    let Some(v) = t.get(key).map_err(db_err)? else {
        return Ok(None);
    };
    serde_json::from_slice(v.value())
        .map(Some)
        .map_err(|source| StoreError::Codec {
            table: table.name(),
            key: key.to_owned(),
            source,
        })
}

/// Runs `f` in one write transaction and commits it durably.
fn write<R>(
    db: &Database,
    f: impl FnOnce(&mut Batch<'_>) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let txn = db.begin_write().map_err(db_err)?;
    let r = {
        let mut batch = Batch { txn: &txn };
        f(&mut batch)?
    };
    txn.commit().map_err(db_err)?;
    Ok(r)
}

/// Why a group commit failed, as each caller gets it.
#[derive(Debug, Clone)]
struct WriteFailure {
    no_space: bool,
    message: String,
}

impl WriteFailure {
    fn into_error(self) -> StoreError {
        if self.no_space {
            StoreError::NoSpace(self.message)
        } else {
            StoreError::Io(self.message)
        }
    }
}

/// Whether a store error is the disk being full (ENOSPC anywhere in its chain).
fn is_no_space(e: &StoreError) -> bool {
    let mut err: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = err {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) {
                return true;
            }
        }
        err = x.source();
    }
    let text = e.to_string();
    text.contains("No space left") || text.contains("os error 28")
}

/// How the writer acknowledges one caller.
enum Ack {
    Async(oneshot::Sender<Result<(), WriteFailure>>),
    Blocking(std_mpsc::SyncSender<Result<(), WriteFailure>>),
    None,
}

type Item = (Vec<Op>, Ack);

/// Queued commits (each a caller waiting, or soft state).
const QUEUE: usize = 2048;
/// Most callers folded into one transaction.
const MAX_GROUP: usize = 512;

fn stopped() -> StoreError {
    StoreError::Io("the store writer has stopped".into())
}

/// The writer thread: takes whatever is queued (up to [`MAX_GROUP`] callers), commits it
/// in one transaction and acknowledges each caller, until the queue closes.
fn run_writer(shared: &Shared, mut rx: mpsc::Receiver<Item>) {
    let mut group: Vec<Item> = Vec::with_capacity(MAX_GROUP);
    let mut reopen = false;
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(item) => group.push(item),
                Err(_) => break,
            }
        }
        // After an I/O error redb refuses every write until the file is reopened.
        if reopen {
            match shared.reopen() {
                Ok(()) => reopen = false,
                Err(e) => tracing::error!(error = %e, "cannot reopen the database"),
            }
        }
        let result = shared
            .with(|db| {
                write(db, |b| {
                    for (ops, _) in &group {
                        for op in ops {
                            match op {
                                Op::Put(t, k, v) => b.put_raw(*t, k, v)?,
                                Op::Delete(t, k) => b.delete(*t, k)?,
                            }
                        }
                    }
                    Ok(())
                })
            })
            .map_err(|e| {
                let no_space = is_no_space(&e);
                // Codec errors are the callers' own; anything else may have latched redb.
                if !matches!(e, StoreError::Codec { .. }) {
                    reopen = true;
                }
                shared
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, no_space, callers = group.len(), "store commit failed");
                WriteFailure {
                    no_space,
                    message: e.to_string(),
                }
            });
        for (_, ack) in group.drain(..) {
            match ack {
                Ack::Async(tx) => {
                    let _ = tx.send(result.clone());
                }
                Ack::Blocking(tx) => {
                    let _ = tx.send(result.clone());
                }
                Ack::None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_are_committed_durably_in_groups() {
        let s = Arc::new(Store::in_memory().unwrap());
        let mut tasks = Vec::new();
        for i in 0..100u32 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.commit(vec![Op::put(Table::Jobs, format!("{i:03}"), &i).unwrap()])
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(s.len(Table::Jobs).unwrap(), 100);
        s.commit(vec![Op::delete(Table::Jobs, "000")])
            .await
            .unwrap();
        assert_eq!(s.get::<u32>(Table::Jobs, "000").unwrap(), None);
    }

    #[test]
    fn put_get_scan_delete_round_trip() {
        let s = Store::in_memory().unwrap();
        s.put_blocking(Table::Peers, "b", &2u32).unwrap();
        s.put_blocking(Table::Peers, "a", &1u32).unwrap();
        assert_eq!(s.get::<u32>(Table::Peers, "a").unwrap(), Some(1));
        let all: Vec<(String, u32)> = s.scan(Table::Peers).unwrap();
        assert_eq!(all, vec![("a".into(), 1), ("b".into(), 2)]);
        let after: Vec<(String, u32)> = s.scan_after(Table::Peers, Some("a"), 10).unwrap();
        assert_eq!(after, vec![("b".into(), 2)]);
        s.commit_blocking(vec![Op::delete(Table::Peers, "a")])
            .unwrap();
        assert_eq!(s.get::<u32>(Table::Peers, "a").unwrap(), None);
        assert_eq!(s.len(Table::Peers).unwrap(), 1);
    }

    #[test]
    fn one_commit_is_all_or_nothing() {
        let s = Store::in_memory().unwrap();
        let r: Result<(), StoreError> = s.shared.with(|db| {
            write(db, |b| {
                b.put(Table::Peers, "x", &1u32)?;
                Err(StoreError::NewerSchema {
                    found: 0,
                    supported: 0,
                })
            })
        });
        assert!(r.is_err());
        assert_eq!(s.get::<u32>(Table::Peers, "x").unwrap(), None);
        s.commit_blocking(vec![
            Op::put(Table::Peers, "x", &1u32).unwrap(),
            Op::put(Table::Peers, "y", &2u32).unwrap(),
        ])
        .unwrap();
        assert_eq!(s.len(Table::Peers).unwrap(), 2);
    }

    #[tokio::test]
    async fn commit_later_lands_without_waiting() {
        let s = Store::in_memory().unwrap();
        s.commit_later(vec![Op::put(Table::Meta, "soft", &7u32).unwrap()])
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while s.get::<u32>(Table::Meta, "soft").unwrap() != Some(7) {
            assert!(tokio::time::Instant::now() < deadline, "never written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn dropping_the_store_flushes_the_queue_and_frees_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        {
            let s = Store::open(&path).unwrap();
            for i in 0..50u32 {
                s.commit_later(vec![Op::put(Table::Jobs, format!("{i:02}"), &i).unwrap()])
                    .unwrap();
            }
        }
        // Reopening at once works: the writer was joined, and what was queued is there.
        let s = Store::open(&path).unwrap();
        assert_eq!(s.len(Table::Jobs).unwrap(), 50);
    }

    #[test]
    fn reopen_keeps_data_and_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        {
            let s = Store::open(&path).unwrap();
            s.put_blocking(Table::Peers, "p", &"v").unwrap();
        }
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(
                s.get::<String>(Table::Peers, "p").unwrap().as_deref(),
                Some("v")
            );
            s.put_blocking(Table::Meta, "schema_version", &(SCHEMA_VERSION + 1))
                .unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(err.to_string().contains("newer"));
    }

    /// A tmpfs small enough to fill: the unmount runs when it drops.
    struct Tmpfs(tempfile::TempDir);

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.0.path())
                .status();
        }
    }

    /// The data dir on a full disk: a commit fails with `NoSpace` and is counted, acknowledged
    /// data stays readable, and once space returns writes work again without a restart.
    #[tokio::test]
    async fn a_full_disk_fails_writes_clearly_and_they_recover_when_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(dir.path())
            .output();
        if !matches!(&mounted, Ok(o) if o.status.success()) {
            println!("SKIP a_full_disk_fails_writes_clearly: cannot mount a tmpfs ({mounted:?})");
            return;
        }
        let fs = Tmpfs(dir);
        let store = Store::open(&fs.0.path().join("node.redb")).unwrap();
        store
            .commit(vec![Op::put(Table::Jobs, "kept", &"acknowledged").unwrap()])
            .await
            .unwrap();
        // Fill what is left.
        let filler = fs.0.path().join("filler");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            let chunk = vec![7u8; 64 * 1024];
            while f.write_all(&chunk).is_ok() {}
            let _ = f.sync_all();
        }
        let big = "x".repeat(256 * 1024);
        let mut failed = None;
        for i in 0..64 {
            if let Err(e) = store
                .commit(vec![Op::put(Table::Jobs, format!("big{i}"), &big).unwrap()])
                .await
            {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("a full disk never failed a commit");
        assert!(matches!(e, StoreError::NoSpace(_)), "{e}");
        assert!(store.write_failures() >= 1);
        assert_eq!(
            store.get::<String>(Table::Jobs, "kept").unwrap().as_deref(),
            Some("acknowledged")
        );
        // Space returns: the next commit reopens the database and succeeds.
        std::fs::remove_file(&filler).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match store
                .commit(vec![Op::put(Table::Jobs, "after", &1u32).unwrap()])
                .await
            {
                Ok(()) => break,
                Err(e) => assert!(std::time::Instant::now() < deadline, "never recovered: {e}"),
            }
        }
        assert_eq!(store.get::<u32>(Table::Jobs, "after").unwrap(), Some(1));
        assert_eq!(
            store.get::<String>(Table::Jobs, "kept").unwrap().as_deref(),
            Some("acknowledged")
        );
        drop(store);
    }
}
