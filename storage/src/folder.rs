//! Offline erasure coding to a folder (`offgrid ec encode FILE DIR`, `offgrid ec decode DIR
//! FILE`), with no node and no mesh: n shard files of which any k give the file back, so
//! they can go on USB sticks. The original design's `ec_encode.py` / `ec_decode.py`.
//!
//! The shards are **not encrypted** (encrypt the file first if the sticks may be lost). Each
//! file stands alone — there is no separate manifest to lose — and is laid out as:
//!
//! ```text
//! OFFGRID-EC 1\n
//! {"index":i,"k":k,"n":n,"shard_size":s,"size":bytes,"segments":m}\n
//! m × ( shard i of segment j, s bytes  ‖  BLAKE3 of it, 32 bytes )
//! BLAKE3 of the whole file, 32 bytes
//! ```
//!
//! A segment is k × s bytes of the file (the last one shorter, zero padded), Reed–Solomon
//! coded into n shards with [`Codec`]. Decoding reads one segment at a time from every file
//! present (memory: n × s), skips a shard whose hash does not match, rebuilds from any k,
//! and writes through [`FileAssembler`] (temporary file, size and whole-file BLAKE3 checked,
//! renamed into place), so a failed decode leaves nothing at the destination.

use std::{
    fs::File,
    io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    ec::{Codec, Scheme},
    FileAssembler,
};

/// First line of every shard file.
pub const MAGIC: &str = "OFFGRID-EC 1";
/// Longest header line read.
const MAX_HEADER: u64 = 4096;

/// The header line of a shard file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderHeader {
    /// This file's shard index.
    pub index: u16,
    /// Data shards.
    pub k: u16,
    /// Total shards.
    pub n: u16,
    /// Bytes per shard.
    pub shard_size: u32,
    /// Bytes of the original file.
    pub size: u64,
    /// Segments.
    pub segments: u64,
}

impl FolderHeader {
    fn same_encoding(&self, other: &FolderHeader) -> bool {
        (self.k, self.n, self.shard_size, self.size, self.segments)
            == (
                other.k,
                other.n,
                other.shard_size,
                other.size,
                other.segments,
            )
    }
}

/// Why an offline encode or decode failed.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// Reading or writing a file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A bad k, n or shard size.
    #[error("{0}")]
    Scheme(String),
    /// Fewer than k usable shard files (or shards of one segment).
    #[error("{0}")]
    NotEnough(String),
    /// The decoded file does not match (size or whole-file BLAKE3).
    #[error("integrity check failed: {0}")]
    Integrity(String),
}

/// The name of shard file `index` of `n`.
pub fn shard_file_name(index: u16, n: u16) -> String {
    let width = n.saturating_sub(1).to_string().len().max(2);
    format!("shard-{index:0width$}.ogec")
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FolderError + 'a {
    move |source| FolderError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// What an encode wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncodeReport {
    /// The shard files, in index order.
    pub files: Vec<PathBuf>,
    /// Segments.
    pub segments: u64,
    /// Bytes of the original file.
    pub size: u64,
    /// Hex BLAKE3 of the original file.
    pub file_blake3: String,
}

/// Encodes `input` into n shard files in `dir` (created if missing), k of which give it
/// back. Each file is written to a temporary name and renamed once complete.
///
/// # Errors
/// [`FolderError`]: bad scheme, unreadable input, unwritable folder.
pub fn encode(
    input: &Path,
    dir: &Path,
    k: u16,
    n: u16,
    shard_size: u32,
) -> Result<EncodeReport, FolderError> {
    let scheme = Scheme::ReedSolomon { k, n };
    scheme
        .validate()
        .map_err(|e| FolderError::Scheme(e.to_string()))?;
    let codec = Codec::new(scheme, shard_size).map_err(|e| FolderError::Scheme(e.to_string()))?;
    let mut src = File::open(input).map_err(io("cannot open", input))?;
    let size = src.metadata().map_err(io("cannot read", input))?.len();
    let seg_len = codec.segment_capacity() as u64;
    let segments = size.div_ceil(seg_len).max(1);
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    let mut outs = Vec::with_capacity(usize::from(n));
    for index in 0..n {
        let path = dir.join(shard_file_name(index, n));
        let tmp = dir.join(format!(".{}.partial", shard_file_name(index, n)));
        let mut w = BufWriter::new(File::create(&tmp).map_err(io("cannot create", &tmp))?);
        let header = FolderHeader {
            index,
            k,
            n,
            shard_size,
            size,
            segments,
        };
        let line =
            serde_json::to_string(&header).map_err(|e| FolderError::Scheme(e.to_string()))?;
        writeln!(w, "{MAGIC}\n{line}").map_err(io("cannot write", &tmp))?;
        outs.push((path, tmp, w));
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; seg_len as usize];
    let mut left = size;
    for _ in 0..segments {
        let len = left.min(seg_len) as usize;
        src.read_exact(&mut buf[..len])
            .map_err(io("cannot read", input))?;
        left -= len as u64;
        hasher.update(&buf[..len]);
        let shards = codec
            .encode(&buf[..len])
            .map_err(|e| FolderError::Scheme(e.to_string()))?;
        for ((_, tmp, w), shard) in outs.iter_mut().zip(&shards) {
            w.write_all(shard).map_err(io("cannot write", tmp))?;
            w.write_all(blake3::hash(shard).as_bytes())
                .map_err(io("cannot write", tmp))?;
        }
    }
    let file_hash = hasher.finalize();
    let mut files = Vec::with_capacity(outs.len());
    for (path, tmp, mut w) in outs {
        w.write_all(file_hash.as_bytes())
            .map_err(io("cannot write", &tmp))?;
        let f = w.into_inner().map_err(|e| FolderError::Io {
            what: "cannot write",
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io("cannot sync", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("cannot rename", &tmp))?;
        files.push(path);
    }
    Ok(EncodeReport {
        files,
        segments,
        size,
        file_blake3: file_hash.to_hex().to_string(),
    })
}

/// A shard file opened for decoding.
struct Source {
    header: FolderHeader,
    reader: BufReader<File>,
    trailer: [u8; 32],
    /// Still usable (readable, of the right length).
    ok: bool,
}

fn open_source(path: &Path) -> Option<Source> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut head = BufReader::new((&mut file).take(MAX_HEADER));
    let mut magic = String::new();
    head.read_line(&mut magic).ok()?;
    if magic.trim_end() != MAGIC {
        return None;
    }
    let mut line = String::new();
    head.read_line(&mut line).ok()?;
    let header: FolderHeader = serde_json::from_str(line.trim_end()).ok()?;
    let body_at = (magic.len() + line.len()) as u64;
    let chunk = u64::from(header.shard_size) + 32;
    let expected = header
        .segments
        .checked_mul(chunk)?
        .checked_add(body_at + 32)?;
    if len != expected || header.index >= header.n {
        return None;
    }
    file.seek(SeekFrom::End(-32)).ok()?;
    let mut trailer = [0u8; 32];
    file.read_exact(&mut trailer).ok()?;
    file.seek(SeekFrom::Start(body_at)).ok()?;
    Some(Source {
        header,
        reader: BufReader::new(file),
        trailer,
        ok: true,
    })
}

/// What a decode did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecodeReport {
    /// The file written.
    pub out: PathBuf,
    /// Its size.
    pub size: u64,
    /// Shard files used (of n).
    pub files_used: usize,
    /// Shards in the files whose hash did not match (skipped).
    pub corrupt_shards: u64,
}

/// Decodes the shard files in `dir` into `out`.
///
/// # Errors
/// [`FolderError`]: fewer than k usable files or shards of a segment, an integrity failure,
/// an unwritable destination.
pub fn decode(dir: &Path, out: &Path) -> Result<DecodeReport, FolderError> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io("cannot read", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ogec"))
        .collect();
    names.sort();
    let opened: Vec<Source> = names.iter().filter_map(|p| open_source(p)).collect();
    // The encoding most files agree on (a stray file of another encode is ignored).
    let Some(first) = opened
        .iter()
        .max_by_key(|s| {
            opened
                .iter()
                .filter(|o| o.header.same_encoding(&s.header))
                .count()
        })
        .map(|s| s.header.clone())
    else {
        return Err(FolderError::NotEnough(format!(
            "no shard files (*.ogec written by `offgrid ec encode`) in {}",
            dir.display()
        )));
    };
    let mut sources: Vec<Source> = Vec::new();
    for s in opened {
        let dup = sources.iter().any(|o| o.header.index == s.header.index);
        if s.header.same_encoding(&first) && !dup {
            sources.push(s);
        }
    }
    let (k, n) = (usize::from(first.k), usize::from(first.n));
    if sources.len() < k {
        return Err(FolderError::NotEnough(format!(
            "only {} of the {n} shard files are in {} and usable; {k} are needed",
            sources.len(),
            dir.display()
        )));
    }
    let codec = Codec::new(
        Scheme::ReedSolomon {
            k: first.k,
            n: first.n,
        },
        first.shard_size,
    )
    .map_err(|e| FolderError::Scheme(e.to_string()))?;
    let trailer = sources[0].trailer;
    let mut assembler = FileAssembler::create(out, first.size, trailer)
        .map_err(|e| FolderError::Integrity(format!("cannot write {}: {e}", out.display())))?;
    let seg_len = codec.segment_capacity() as u64;
    let shard_len = first.shard_size as usize;
    let mut corrupt = 0u64;
    let mut used = std::collections::HashSet::new();
    let mut chunk = vec![0u8; shard_len + 32];
    for segment in 0..first.segments {
        let mut slots: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut present = 0;
        for s in sources.iter_mut().filter(|s| s.ok) {
            if s.reader.read_exact(&mut chunk).is_err() {
                s.ok = false;
                continue;
            }
            let (shard, hash) = chunk.split_at(shard_len);
            if blake3::hash(shard).as_bytes() != hash {
                corrupt += 1;
                continue;
            }
            slots[usize::from(s.header.index)] = Some(shard.to_vec());
            present += 1;
            used.insert(s.header.index);
        }
        if present < k {
            return Err(FolderError::NotEnough(format!(
                "segment {segment}: only {present} valid shards of {n}, {k} needed ({corrupt} corrupt so far)"
            )));
        }
        let len = (first.size - segment * seg_len).min(seg_len) as usize;
        let plain = codec
            .reconstruct(slots, len)
            .map_err(|e| FolderError::Integrity(format!("segment {segment}: {e}")))?;
        assembler
            .write_segment(segment, &plain)
            .map_err(|e| FolderError::Integrity(e.to_string()))?;
    }
    let path = assembler
        .finish()
        .map_err(|e| FolderError::Integrity(e.to_string()))?;
    Ok(DecodeReport {
        out: path,
        size: first.size,
        files_used: used.len(),
        corrupt_shards: corrupt,
    })
}

#[cfg(test)]
#[path = "folder_tests.rs"]
mod tests;
