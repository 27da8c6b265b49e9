//! Streaming a file in segments and assembling it back, in bounded memory.
//!
//! [`SegmentReader`] yields one segment at a time and hashes the whole file as it goes, so a
//! 4 GiB file never needs more than one segment in memory. [`FileAssembler`] writes segments
//! in order to a temporary file next to the destination, checks size and whole-file BLAKE3,
//! fsyncs, and renames into place: the destination either does not exist or is complete.

use std::{
    fs::{self, File},
    io::{self, Read, Write},
    path::{Path, PathBuf},
};

use rand::Rng;

use crate::shardstore::sync_dir;

/// Reads a source in segments of a fixed plaintext length.
///
/// Iterating yields `(index, bytes)`; every segment is full except the last. An empty source
/// yields no segment. After the iterator returns `None`, [`SegmentReader::file_blake3`] gives
/// the whole-file hash.
#[derive(Debug)]
pub struct SegmentReader<R> {
    reader: R,
    segment_len: usize,
    next_index: u64,
    bytes_read: u64,
    hasher: blake3::Hasher,
    finished: bool,
    failed: bool,
}

impl<R: Read> SegmentReader<R> {
    /// Segments `reader` into pieces of `segment_plain_len` bytes (at least 1).
    pub fn new(reader: R, segment_plain_len: usize) -> Self {
        SegmentReader {
            reader,
            segment_len: segment_plain_len.max(1),
            next_index: 0,
            bytes_read: 0,
            hasher: blake3::Hasher::new(),
            finished: false,
            failed: false,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// BLAKE3 of everything read, once the end of the source was reached without a read
    /// error (the hash of a partial read must never pass for the file's).
    pub fn file_blake3(&self) -> Option<[u8; 32]> {
        (self.finished && !self.failed).then(|| *self.hasher.finalize().as_bytes())
    }

    /// Number of segments a source of `size` bytes gives.
    pub fn segment_count(size: u64, segment_plain_len: usize) -> u64 {
        size.div_ceil(segment_plain_len.max(1) as u64)
    }

    fn read_segment(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; self.segment_len];
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled < buf.len() {
            self.finished = true;
        }
        if filled == 0 {
            return Ok(None);
        }
        buf.truncate(filled);
        self.hasher.update(&buf);
        self.bytes_read += filled as u64;
        Ok(Some(buf))
    }
}

impl<R: Read> Iterator for SegmentReader<R> {
    type Item = io::Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.read_segment() {
            Ok(Some(segment)) => {
                let index = self.next_index;
                self.next_index += 1;
                Some(Ok((index, segment)))
            }
            Ok(None) => None,
            Err(e) => {
                self.finished = true;
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Why a file could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// Segments must arrive in order.
    #[error("segment {got} written out of order: expected {expected}")]
    OutOfOrder {
        /// The next index expected.
        expected: u64,
        /// The index given.
        got: u64,
    },
    /// More or fewer bytes than the manifest's size.
    #[error("assembled {got} bytes, the file has {expected}")]
    SizeMismatch {
        /// Manifest size.
        expected: u64,
        /// Bytes written (or about to be).
        got: u64,
    },
    /// The whole-file hash does not match: the temporary file was deleted.
    #[error("whole-file BLAKE3 mismatch: expected {expected}, got {actual}; nothing written")]
    HashMismatch {
        /// Manifest hash, hex.
        expected: String,
        /// Hash of what was assembled, hex.
        actual: String,
    },
    /// The destination has no file name or parent directory.
    #[error("destination {0} is not a file path")]
    BadDestination(PathBuf),
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

/// Writes segments in order to a temporary file, then checks and renames it into place.
///
/// Dropping an unfinished assembler deletes its temporary file.
#[derive(Debug)]
pub struct FileAssembler {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    expected_size: u64,
    expected_blake3: [u8; 32],
    written: u64,
    next_index: u64,
    hasher: blake3::Hasher,
}

impl FileAssembler {
    /// Starts assembling `dest`, which must end up `expected_size` bytes with BLAKE3
    /// `expected_blake3`. The temporary file is created in `dest`'s directory.
    ///
    /// # Errors
    /// [`AssembleError::BadDestination`] or [`AssembleError::Io`].
    pub fn create(
        dest: impl AsRef<Path>,
        expected_size: u64,
        expected_blake3: [u8; 32],
    ) -> Result<Self, AssembleError> {
        let dest = dest.as_ref().to_path_buf();
        let bad = || AssembleError::BadDestination(dest.clone());
        let name = dest
            .file_name()
            .ok_or_else(bad)?
            .to_string_lossy()
            .into_owned();
        let parent = match dest.parent() {
            Some(p) if p.as_os_str().is_empty() => Path::new("."),
            Some(p) => p,
            None => return Err(bad()),
        };
        let tag: u64 = rand::rng().next_u64();
        let tmp = parent.join(format!(".{name}.offgrid-{tag:016x}.tmp"));
        let file = File::create_new(&tmp).map_err(|source| AssembleError::Io {
            op: "create",
            path: tmp.clone(),
            source,
        })?;
        Ok(FileAssembler {
            dest,
            tmp,
            file: Some(file),
            expected_size,
            expected_blake3,
            written: 0,
            next_index: 0,
            hasher: blake3::Hasher::new(),
        })
    }

    /// The temporary file being written.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    fn io(&self, op: &'static str) -> impl FnOnce(io::Error) -> AssembleError + '_ {
        move |source| AssembleError::Io {
            op,
            path: self.tmp.clone(),
            source,
        }
    }

    /// Appends segment `index`, which must be the next one.
    ///
    /// # Errors
    /// [`AssembleError::OutOfOrder`], [`AssembleError::SizeMismatch`] when the file would grow
    /// past its size, or [`AssembleError::Io`].
    pub fn write_segment(&mut self, index: u64, plaintext: &[u8]) -> Result<(), AssembleError> {
        if index != self.next_index {
            return Err(AssembleError::OutOfOrder {
                expected: self.next_index,
                got: index,
            });
        }
        let after = self.written + plaintext.len() as u64;
        if after > self.expected_size {
            return Err(AssembleError::SizeMismatch {
                expected: self.expected_size,
                got: after,
            });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(AssembleError::BadDestination(self.dest.clone()));
        };
        let result = file.write_all(plaintext);
        result.map_err(self.io("write"))?;
        self.hasher.update(plaintext);
        self.written = after;
        self.next_index += 1;
        Ok(())
    }

    /// Checks size and hash, fsyncs, renames to the destination and fsyncs the directory.
    /// On any mismatch the temporary file is deleted and nothing appears at the destination.
    ///
    /// # Errors
    /// [`AssembleError::SizeMismatch`], [`AssembleError::HashMismatch`] or
    /// [`AssembleError::Io`].
    pub fn finish(mut self) -> Result<PathBuf, AssembleError> {
        if self.written != self.expected_size {
            return Err(AssembleError::SizeMismatch {
                expected: self.expected_size,
                got: self.written,
            });
        }
        let actual = self.hasher.finalize();
        if actual.as_bytes() != &self.expected_blake3 {
            return Err(AssembleError::HashMismatch {
                expected: hex::encode(self.expected_blake3),
                actual: actual.to_hex().to_string(),
            });
        }
        if let Some(file) = self.file.take() {
            let synced = file.sync_all();
            synced.map_err(self.io("fsync"))?;
        }
        let renamed = fs::rename(&self.tmp, &self.dest);
        renamed.map_err(self.io("rename"))?;
        // Renamed: nothing left for Drop to clean up.
        self.tmp = PathBuf::new();
        if let Some(parent) = self.dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent).map_err(|e| AssembleError::Io {
                op: "fsync dir",
                path: parent.to_path_buf(),
                source: io::Error::other(e.to_string()),
            })?;
        }
        Ok(std::mem::take(&mut self.dest))
    }
}

impl Drop for FileAssembler {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.file.take();
            // Best effort: a leftover temp file is hidden and named as ours.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
#[path = "segmenter_tests.rs"]
mod tests;
