//! The free-space floor of a shard host: below `storage.min_free_bytes` free on the data
//! directory's file system, new shards are refused, so that a full disk never takes the
//! database (and the rest of the node) down with it.
//!
//! Asking the file system (`statvfs`) for every shard would cost a syscall per store, so the
//! answer is cached: it is asked again after [`MAX_AGE`], or once the shards admitted since
//! the last answer add up to [`REFRESH_BYTES`]. Meanwhile the admitted bytes are taken off
//! the cached figure, so the estimate only errs towards refusing. When the file system
//! cannot be asked, shards are admitted (a write that then finds the disk full is refused as
//! well, and forces a fresh answer).

use std::{
    io,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tracing::warn;

use super::quota::Refusal;
use offgrid_behaviours::shards::LimitCode;

/// Longest a free-space answer is trusted.
pub const MAX_AGE: Duration = Duration::from_secs(1);
/// Shard bytes admitted after which the file system is asked again, however recent its
/// last answer.
pub const REFRESH_BYTES: u64 = 16 << 20;

/// Free bytes for an unprivileged writer on the file system that holds a path.
pub type Probe = Arc<dyn Fn() -> io::Result<u64> + Send + Sync>;

/// The real probe: `statvfs` of `dir`'s file system (blocks available to unprivileged users
/// times the fragment size).
pub fn statvfs_probe(dir: PathBuf) -> Probe {
    Arc::new(move || free_bytes(&dir))
}

#[cfg(unix)]
fn free_bytes(dir: &std::path::Path) -> io::Result<u64> {
    let s = rustix::fs::statvfs(dir).map_err(io::Error::from)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(not(unix))]
fn free_bytes(_dir: &std::path::Path) -> io::Result<u64> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no free-space query on this platform",
    ))
}

#[derive(Debug, Default)]
struct Cached {
    /// The last answer, and when it came.
    free: Option<(u64, Instant)>,
    /// Bytes admitted since.
    admitted: u64,
    /// A failed probe was already logged.
    warned: bool,
}

/// The floor, with its cached free-space figure.
pub struct FreeSpace {
    probe: Probe,
    floor: u64,
    max_age: Duration,
    state: Mutex<Cached>,
}

impl std::fmt::Debug for FreeSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreeSpace")
            .field("floor", &self.floor)
            .finish_non_exhaustive()
    }
}

impl FreeSpace {
    /// A floor of `floor` bytes over what `probe` answers, asked at most every `max_age`.
    pub fn new(probe: Probe, floor: u64, max_age: Duration) -> Self {
        FreeSpace {
            probe,
            floor,
            max_age,
            state: Mutex::default(),
        }
    }

    /// The floor, bytes.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Admits `cost` more bytes on disk, or says that they would leave less than the floor.
    ///
    /// # Errors
    /// A [`LimitCode::FreeSpace`] refusal with the free bytes that would be left.
    pub fn admit(&self, cost: u64) -> Result<(), Refusal> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let stale = match s.free {
            Some((_, at)) => at.elapsed() >= self.max_age || s.admitted >= REFRESH_BYTES,
            None => true,
        };
        if stale {
            match (self.probe)() {
                Ok(free) => {
                    s.free = Some((free, Instant::now()));
                    s.admitted = 0;
                }
                Err(e) => {
                    if !s.warned {
                        warn!(error = %e, "cannot query the free space of the shard directory; the floor is not enforced");
                        s.warned = true;
                    }
                    s.free = None;
                    return Ok(());
                }
            }
        }
        let Some((free, _)) = s.free else {
            return Ok(());
        };
        let left = free.saturating_sub(s.admitted).saturating_sub(cost);
        if left < self.floor {
            return Err(Refusal {
                code: LimitCode::FreeSpace,
                used: left,
                limit: self.floor,
            });
        }
        s.admitted += cost;
        Ok(())
    }

    /// The disk was found full: the next admission asks the file system again.
    pub fn invalidate(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).free = None;
    }

    /// The free bytes last seen, less what was admitted since (`None` before the first
    /// answer, or when the file system cannot be asked).
    pub fn estimate(&self) -> Option<u64> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.free.map(|(free, _)| free.saturating_sub(s.admitted))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn counted(free: Arc<AtomicU64>, asked: Arc<AtomicU64>) -> Probe {
        Arc::new(move || {
            asked.fetch_add(1, Ordering::Relaxed);
            Ok(free.load(Ordering::Relaxed))
        })
    }

    #[test]
    fn the_answer_is_cached_and_admitted_bytes_come_off_it() {
        let free = Arc::new(AtomicU64::new(10 << 20));
        let asked = Arc::new(AtomicU64::new(0));
        let fs = FreeSpace::new(counted(free.clone(), asked.clone()), 4 << 20, MAX_AGE);
        for _ in 0..6 {
            fs.admit(1 << 20).unwrap();
        }
        assert_eq!(
            asked.load(Ordering::Relaxed),
            1,
            "one statvfs for six shards"
        );
        assert_eq!(fs.estimate(), Some(4 << 20));
        // The seventh would leave 3 MiB, under the 4 MiB floor.
        let r = fs.admit(1 << 20).unwrap_err();
        assert_eq!(
            (r.code, r.used, r.limit),
            (LimitCode::FreeSpace, 3 << 20, 4 << 20)
        );
        // Space came back (the cache does not know yet); a full disk makes it ask again.
        free.store(100 << 20, Ordering::Relaxed);
        fs.invalidate();
        fs.admit(1 << 20).unwrap();
        assert_eq!(asked.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn many_admitted_bytes_refresh_the_answer_before_it_ages() {
        let free = Arc::new(AtomicU64::new(1 << 40));
        let asked = Arc::new(AtomicU64::new(0));
        let fs = FreeSpace::new(counted(free, asked.clone()), 0, Duration::from_secs(3600));
        for _ in 0..(2 * REFRESH_BYTES / (1 << 20)) {
            fs.admit(1 << 20).unwrap();
        }
        assert_eq!(asked.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_file_system_that_cannot_be_asked_admits() {
        let fs = FreeSpace::new(
            Arc::new(|| Err(io::Error::other("no statvfs"))),
            u64::MAX,
            MAX_AGE,
        );
        assert!(fs.admit(1).is_ok());
        assert_eq!(fs.estimate(), None);
    }

    #[test]
    fn statvfs_of_a_real_directory_answers() {
        let dir = tempfile::tempdir().unwrap();
        let free = (statvfs_probe(dir.path().to_path_buf()))().unwrap();
        assert!(free > 0);
    }
}
