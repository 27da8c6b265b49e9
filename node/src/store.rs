//! The node's persistent store: one redb database in the data directory.
//!
//! Values are JSON documents keyed by string, grouped in named tables. redb commits are
//! ACID and, with the default durability, fsynced before `commit` returns: whatever a
//! caller acknowledges after a write call survives `kill -9` and power loss.
//!
//! The schema version lives in the `meta` table. A database written by a newer schema is
//! refused with [`StoreError::NewerSchema`] rather than misread.

use std::path::Path;

use redb::{backends::InMemoryBackend, Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

/// Schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// A named table of JSON documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Schema version and other single values.
    Meta,
    /// Peer registry: peer id → [`crate::peers::registry::PeerRecord`].
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
}

impl Table {
    const ALL: [Table; 14] = [
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
    /// A blocking store task could not run (the runtime is shutting down).
    #[error("store task failed: {0}")]
    Io(String),
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
pub struct Batch<'a> {
    txn: &'a redb::WriteTransaction,
}

impl Batch<'_> {
    /// Inserts or replaces `key` in `table`.
    pub fn put<T: Serialize + ?Sized>(
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
    pub fn put_raw(&mut self, table: Table, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(table.def()).map_err(db_err)?;
        t.insert(key, bytes).map_err(db_err)?;
        Ok(())
    }

    /// Removes `key` from `table`; absent keys are fine.
    pub fn delete(&mut self, table: Table, key: &str) -> Result<(), StoreError> {
        let mut t = self.txn.open_table(table.def()).map_err(db_err)?;
        t.remove(key).map_err(db_err)?;
        Ok(())
    }
}

/// The store. Cheap to share behind an `Arc`; redb serialises writers internally.
pub struct Store {
    db: Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(e),
        })?;
        Self::init(db)
    }

    /// A store that lives only in memory, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = redb::Builder::new()
            .create_with_backend(InMemoryBackend::new())
            .map_err(|e| StoreError::Open {
                path: "<memory>".into(),
                source: Box::new(e),
            })?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        let store = Store { db };
        let found: Option<u32> = store.get(Table::Meta, "schema_version").or_else(|e| {
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
        store.write(|b| {
            // Opening every table creates it, so readers never see TableDoesNotExist.
            for t in Table::ALL {
                b.txn.open_table(t.def()).map_err(db_err)?;
            }
            b.put(Table::Meta, "schema_version", &SCHEMA_VERSION)
        })?;
        Ok(store)
    }

    /// Runs `f` in one write transaction and commits it durably.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&mut Batch<'_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let r = {
            let mut batch = Batch { txn: &txn };
            f(&mut batch)?
        };
        txn.commit().map_err(db_err)?;
        Ok(r)
    }

    /// Inserts or replaces one value, durably.
    pub fn put<T: Serialize + ?Sized>(
        &self,
        table: Table,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        self.write(|b| b.put(table, key, value))
    }

    /// Reads one value.
    pub fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
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

    /// Reads every entry of a table in key order.
    pub fn scan<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table.def()).map_err(db_err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db_err)? {
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

    /// Reads up to `limit` entries with keys strictly after `after` (all when `None`), in
    /// key order.
    pub fn scan_after<T: DeserializeOwned>(
        &self,
        table: Table,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, T)>, StoreError> {
        use std::ops::Bound;
        let txn = self.db.begin_read().map_err(db_err)?;
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

    /// Number of entries in a table.
    pub fn len(&self, table: Table) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(table.def()).map_err(db_err)?;
        t.len().map_err(db_err)
    }

    /// Removes one key, durably.
    pub fn delete(&self, table: Table, key: &str) -> Result<(), StoreError> {
        self.write(|b| b.delete(table, key))
    }
}

/// One change for a [`GroupWriter`].
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
}

type GroupItem = (Vec<Op>, tokio::sync::oneshot::Sender<Result<(), String>>);

/// Group commit: callers hand in changes and wait for their durable acknowledgement; one
/// background task commits everything that queued up meanwhile in a single transaction
/// (one fsync for many callers). Under load this turns N fsyncs into one.
#[derive(Clone, Debug)]
pub struct GroupWriter {
    tx: tokio::sync::mpsc::Sender<GroupItem>,
}

/// Most callers folded into one commit.
const MAX_GROUP: usize = 512;

impl GroupWriter {
    /// Starts the writer task on the current runtime.
    pub fn spawn(store: std::sync::Arc<Store>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<GroupItem>(MAX_GROUP * 4);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
                let items: Vec<GroupItem> = std::mem::take(&mut group);
                let store = store.clone();
                let (ops, acks): (Vec<Vec<Op>>, Vec<_>) = items.into_iter().unzip();
                let result = tokio::task::spawn_blocking(move || {
                    store.write(|b| {
                        for op in ops.iter().flatten() {
                            match op {
                                Op::Put(t, k, v) => b.put_raw(*t, k, v)?,
                                Op::Delete(t, k) => b.delete(*t, k)?,
                            }
                        }
                        Ok(())
                    })
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
                for ack in acks {
                    let _ = ack.send(result.clone());
                }
            }
        });
        GroupWriter { tx }
    }

    /// Commits `ops` durably (together with whatever else is queued).
    pub async fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let (ack, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send((ops, ack))
            .await
            .map_err(|_| StoreError::Io("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Io("store writer stopped".into()))?
            .map_err(StoreError::Io)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn group_writer_commits_concurrent_callers_durably() {
        let s = std::sync::Arc::new(Store::in_memory().unwrap());
        let w = GroupWriter::spawn(s.clone());
        let mut tasks = Vec::new();
        for i in 0..100u32 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                w.commit(vec![Op::put(Table::Jobs, format!("{i:03}"), &i).unwrap()])
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(s.len(Table::Jobs).unwrap(), 100);
        w.commit(vec![Op::Delete(Table::Jobs, "000".into())])
            .await
            .unwrap();
        assert_eq!(s.get::<u32>(Table::Jobs, "000").unwrap(), None);
    }

    use super::*;

    #[test]
    fn put_get_scan_delete_round_trip() {
        let s = Store::in_memory().unwrap();
        s.put(Table::Peers, "b", &2u32).unwrap();
        s.put(Table::Peers, "a", &1u32).unwrap();
        assert_eq!(s.get::<u32>(Table::Peers, "a").unwrap(), Some(1));
        let all: Vec<(String, u32)> = s.scan(Table::Peers).unwrap();
        assert_eq!(all, vec![("a".into(), 1), ("b".into(), 2)]);
        let after: Vec<(String, u32)> = s.scan_after(Table::Peers, Some("a"), 10).unwrap();
        assert_eq!(after, vec![("b".into(), 2)]);
        s.delete(Table::Peers, "a").unwrap();
        assert_eq!(s.get::<u32>(Table::Peers, "a").unwrap(), None);
        assert_eq!(s.len(Table::Peers).unwrap(), 1);
    }

    #[test]
    fn failed_batch_writes_nothing() {
        let s = Store::in_memory().unwrap();
        let r: Result<(), StoreError> = s.write(|b| {
            b.put(Table::Peers, "x", &1u32)?;
            Err(StoreError::NewerSchema {
                found: 0,
                supported: 0,
            })
        });
        assert!(r.is_err());
        assert_eq!(s.get::<u32>(Table::Peers, "x").unwrap(), None);
    }

    #[test]
    fn reopen_keeps_data_and_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        {
            let s = Store::open(&path).unwrap();
            s.put(Table::Peers, "p", &"v").unwrap();
        }
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(
                s.get::<String>(Table::Peers, "p").unwrap().as_deref(),
                Some("v")
            );
            s.put(Table::Meta, "schema_version", &(SCHEMA_VERSION + 1))
                .unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(err.to_string().contains("newer"));
    }
}
