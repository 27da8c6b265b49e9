//! A content-addressed shard store on disk.
//!
//! Layout under the store directory:
//!
//! ```text
//! shards/<aa>/<rest>           shard whose BLAKE3 hex is <aa><rest>
//! shards/<aa>/.tmp-<hash>-<n>  a write in progress (removed at open)
//! quarantine/<hash>-<ms>-<n>   a shard found corrupt, kept for inspection
//! ```
//!
//! **The ack contract:** [`ShardStore::put`] returns only after the bytes are in a temporary
//! file in the final directory, that file is fsynced, renamed to its final name, and the
//! directory is fsynced. A shard acknowledged to a peer therefore survives `kill -9` and power
//! loss. Methods take `&self` and are safe to call from several threads; they block on disk
//! I/O, so async callers use `spawn_blocking`.
//!
//! **Accounting by blocks on disk.** The bytes used (and the quota) count what each shard
//! takes on disk, [`disk_cost`]: whole file-system blocks plus its inode and directory entry,
//! not its payload, so that many tiny shards cannot take many times their accounted size.
//!
//! **Group commit.** [`ShardStore::put_many`] stores a batch under the same contract with a
//! fixed number of durability barriers whatever the batch size: write every temporary file,
//! one barrier (the data is durable), rename them all, one barrier (the names are durable),
//! and only then report any of them stored. See [`GroupSync`] for what a barrier is.

use std::{
    collections::HashSet,
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{is_valid_hash, shard_hash};

mod batch;

pub use batch::GroupSync;
#[cfg(test)]
use batch::TestHook;

/// Bytes of one file-system block: a shard file takes whole blocks.
pub const BLOCK_BYTES: u64 = 4096;
/// What a file costs besides its blocks: its inode and directory entry.
pub const FILE_OVERHEAD_BYTES: u64 = 512;

/// The bytes a shard of `len` bytes takes on disk, as accounted: whole blocks (at least one)
/// plus the per-file overhead. A 64-byte shard costs 4608 bytes, 72 times its payload, which
/// is what such shards were measured to take.
pub fn disk_cost(len: u64) -> u64 {
    len.div_ceil(BLOCK_BYTES).max(1) * BLOCK_BYTES + FILE_OVERHEAD_BYTES
}

const SHARDS_DIR: &str = "shards";
const QUARANTINE_DIR: &str = "quarantine";
const TMP_PREFIX: &str = ".tmp-";

/// Errors of the shard store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The hash is not 64 lower-case hex digits.
    #[error("invalid shard hash {0:?}: expected 64 lower-case hex digits")]
    InvalidHash(String),
    /// The bytes do not hash to the name they were offered under.
    #[error("shard bytes hash to {actual}, not to the claimed {expected}")]
    HashMismatch {
        /// The claimed hash.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// Storing would exceed the quota.
    #[error("shard store quota exceeded: {used} of {quota} bytes used")]
    QuotaExceeded {
        /// Bytes used on disk ([`disk_cost`], including stores in progress).
        used: u64,
        /// The quota.
        quota: u64,
    },
    /// Another store of the same shard is in progress; retry shortly.
    #[error("a store of shard {0} is already in progress")]
    InFlight(String),
    /// No such shard.
    #[error("shard {0} not found")]
    NotFound(String),
    /// The file on disk no longer matches its hash; it was moved to the quarantine directory.
    #[error("shard {hash} is corrupt on disk; moved to {quarantined}")]
    Corrupt {
        /// The shard hash.
        hash: String,
        /// Where the corrupt file went.
        quarantined: PathBuf,
    },
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What [`ShardStore::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The shard was written and made durable.
    Stored,
    /// The shard was already there (and is durable).
    AlreadyHad,
}

#[derive(Debug, Default)]
struct Accounting {
    /// Bytes on disk ([`disk_cost`]) of stored shards plus those reserved by puts in
    /// progress.
    used: u64,
    /// Shards stored.
    count: u64,
    /// Hashes being written right now.
    in_flight: HashSet<String>,
    /// Makes temporary names unique within this process.
    next_tmp: u64,
}

/// The content-addressed shard store. See the module docs for the layout and guarantees.
#[derive(Debug)]
pub struct ShardStore {
    dir: PathBuf,
    quota: u64,
    state: Mutex<Accounting>,
    group_sync: GroupSync,
    /// Called before each barrier of a batch; tests inject failures and crashes here.
    #[cfg(test)]
    hook: Option<TestHook>,
}

/// What [`ShardStore::reserve`] decided for one shard.
enum Reserved {
    /// A sound copy is already stored at this path.
    Had(PathBuf),
    /// Write it: quota and the in-flight mark are taken.
    New {
        path: PathBuf,
        tmp_id: u64,
        len: u64,
    },
}

impl ShardStore {
    /// Opens (creating if needed) the store in `dir` with a quota of `quota_bytes`.
    ///
    /// Scans the shard files to compute the bytes used and removes temporary files left by
    /// writes that were interrupted (they were never acknowledged).
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directories cannot be created or read.
    pub fn open(dir: impl AsRef<Path>, quota_bytes: u64) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let shards = dir.join(SHARDS_DIR);
        for sub in [&shards, &dir.join(QUARANTINE_DIR)] {
            fs::create_dir_all(sub).map_err(io_err("create", sub))?;
        }
        let mut accounting = Accounting::default();
        for prefix in fs::read_dir(&shards).map_err(io_err("read dir", &shards))? {
            let prefix = prefix.map_err(io_err("read dir", &shards))?.path();
            if !prefix.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&prefix).map_err(io_err("read dir", &prefix))? {
                let entry = entry.map_err(io_err("read dir", &prefix))?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(TMP_PREFIX) {
                    fs::remove_file(&path).map_err(io_err("remove temp file", &path))?;
                    continue;
                }
                let meta = entry.metadata().map_err(io_err("stat", &path))?;
                if meta.is_file() {
                    accounting.used += disk_cost(meta.len());
                    accounting.count += 1;
                }
            }
        }
        Ok(ShardStore {
            dir,
            quota: quota_bytes,
            state: Mutex::new(accounting),
            group_sync: GroupSync::default(),
            #[cfg(test)]
            hook: None,
        })
    }

    /// Chooses how [`ShardStore::put_many`] makes a batch durable.
    #[must_use]
    pub fn with_group_sync(mut self, group_sync: GroupSync) -> Self {
        self.group_sync = group_sync;
        self
    }

    fn state(&self) -> MutexGuard<'_, Accounting> {
        // The accounting is updated in single statements, so a panic elsewhere while the lock
        // was held cannot leave it half-changed: recovering from poison is safe.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn path_of(&self, hash: &str) -> Result<PathBuf, StoreError> {
        if !is_valid_hash(hash) {
            return Err(StoreError::InvalidHash(hash.to_owned()));
        }
        Ok(self.dir.join(SHARDS_DIR).join(&hash[..2]).join(&hash[2..]))
    }

    /// Bytes on disk of shards stored (plus stores in progress), see [`disk_cost`].
    pub fn used_bytes(&self) -> u64 {
        self.state().used
    }

    /// Number of shards stored.
    pub fn shard_count(&self) -> u64 {
        self.state().count
    }

    /// The quota in bytes.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a shard with this hash is stored (false for a malformed hash).
    pub fn has(&self, hash: &str) -> bool {
        self.path_of(hash).is_ok_and(|path| path.is_file())
    }

    /// Stores `bytes` under `hash` after checking that they hash to it, durably; see the
    /// module docs for the ack contract.
    ///
    /// # Errors
    /// [`StoreError::HashMismatch`], [`StoreError::QuotaExceeded`], [`StoreError::InFlight`],
    /// [`StoreError::InvalidHash`] or [`StoreError::Io`].
    pub fn put(&self, hash: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let (path, tmp_id, len) = match self.reserve(hash, bytes)? {
            Reserved::Had(path) => {
                // The earlier put fsynced the file before its rename; fsync the directory
                // again in case that put was killed between the rename and its directory
                // fsync.
                sync_dir(path.parent().unwrap_or(&self.dir))?;
                return Ok(PutOutcome::AlreadyHad);
            }
            Reserved::New { path, tmp_id, len } => (path, tmp_id, len),
        };
        let result = self.write_durably(hash, &path, bytes, tmp_id);
        self.release(hash, len, result.is_ok());
        result.map(|()| PutOutcome::Stored)
    }

    /// Checks a shard offered for storing and, unless a sound copy is already there, takes
    /// its quota and marks it in flight (undone by [`ShardStore::release`]).
    fn reserve(&self, hash: &str, bytes: &[u8]) -> Result<Reserved, StoreError> {
        let path = self.path_of(hash)?;
        let actual = shard_hash(bytes);
        if actual != hash {
            return Err(StoreError::HashMismatch {
                expected: hash.to_owned(),
                actual,
            });
        }
        if path.is_file() && self.existing_is_sound(hash, &path)? {
            return Ok(Reserved::Had(path));
        }
        let len = disk_cost(bytes.len() as u64);
        let mut state = self.state();
        if state.in_flight.contains(hash) {
            return Err(StoreError::InFlight(hash.to_owned()));
        }
        if path.is_file() {
            // Stored by a put that finished after our check; it did its own barriers.
            return Ok(Reserved::Had(path));
        }
        if state.used.saturating_add(len) > self.quota {
            return Err(StoreError::QuotaExceeded {
                used: state.used,
                quota: self.quota,
            });
        }
        state.used += len;
        state.in_flight.insert(hash.to_owned());
        state.next_tmp += 1;
        Ok(Reserved::New {
            path,
            tmp_id: state.next_tmp,
            len,
        })
    }

    /// Ends a reservation: the shard now counts as stored, or its quota is given back.
    fn release(&self, hash: &str, len: u64, stored: bool) {
        let mut state = self.state();
        state.in_flight.remove(hash);
        if stored {
            state.count += 1;
        } else {
            state.used -= len;
        }
    }

    /// The temporary name a write of `hash` uses before its rename.
    fn tmp_path(parent: &Path, hash: &str, tmp_id: u64) -> PathBuf {
        parent.join(format!(
            "{TMP_PREFIX}{hash}-{}-{tmp_id}",
            std::process::id()
        ))
    }

    /// Whether the file already stored under `hash` still matches it; a rotten one is
    /// quarantined so that the put can replace it.
    fn existing_is_sound(&self, hash: &str, path: &Path) -> Result<bool, StoreError> {
        match fs::read(path) {
            Ok(existing) if shard_hash(&existing) == hash => Ok(true),
            Ok(existing) => {
                self.quarantine(hash, path, existing.len() as u64)?;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("read", path)(e)),
        }
    }

    fn write_durably(
        &self,
        hash: &str,
        path: &Path,
        bytes: &[u8],
        tmp_id: u64,
    ) -> Result<(), StoreError> {
        let parent = path.parent().unwrap_or(&self.dir);
        if !parent.is_dir() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
            // The new prefix directory's own entry must survive a crash too.
            sync_dir(&self.dir.join(SHARDS_DIR))?;
        }
        let tmp = Self::tmp_path(parent, hash, tmp_id);
        let written = (|| {
            let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
            file.write_all(bytes).map_err(io_err("write", &tmp))?;
            file.sync_all().map_err(io_err("fsync", &tmp))?;
            fs::rename(&tmp, path).map_err(io_err("rename", &tmp))
        })();
        if written.is_err() {
            // Best effort: open() removes any temp file this leaves behind.
            let _ = fs::remove_file(&tmp);
        }
        written?;
        sync_dir(parent)
    }

    /// Reads a shard and checks it against its hash.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; [`StoreError::Corrupt`] when the file no longer matches its
    /// hash (it is then moved to `quarantine/` and no longer counted); [`StoreError::Io`].
    pub fn get(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(hash)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(hash.to_owned()))
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        if shard_hash(&bytes) == hash {
            return Ok(bytes);
        }
        let quarantined = self.quarantine(hash, &path, bytes.len() as u64)?;
        Err(StoreError::Corrupt {
            hash: hash.to_owned(),
            quarantined,
        })
    }

    fn quarantine(&self, hash: &str, path: &Path, len: u64) -> Result<PathBuf, StoreError> {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let quarantine_dir = self.dir.join(QUARANTINE_DIR);
        let mut state = self.state();
        state.next_tmp += 1;
        let target = quarantine_dir.join(format!("{hash}-{millis}-{}", state.next_tmp));
        match fs::rename(path, &target) {
            Ok(()) => {
                state.used = state.used.saturating_sub(disk_cost(len));
                state.count = state.count.saturating_sub(1);
            }
            // Another reader quarantined it first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("quarantine", path)(e)),
        }
        drop(state);
        sync_dir(&quarantine_dir)?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        Ok(target)
    }

    /// Removes a shard. Returns whether it was there.
    ///
    /// # Errors
    /// [`StoreError::InvalidHash`] or [`StoreError::Io`].
    pub fn delete(&self, hash: &str) -> Result<bool, StoreError> {
        let path = self.path_of(hash)?;
        let mut state = self.state();
        let len = match fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("stat", &path)(e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("remove", &path)(e)),
        }
        state.used = state.used.saturating_sub(disk_cost(len));
        state.count = state.count.saturating_sub(1);
        drop(state);
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        Ok(true)
    }
}

/// fsyncs a directory so that renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync dir", dir))
}

#[cfg(test)]
#[path = "shardstore_tests.rs"]
mod tests;
