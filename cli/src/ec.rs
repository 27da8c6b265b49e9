//! `offgrid ec encode FILE DIR [--k K --n N]` and `offgrid ec decode DIR FILE`: erasure
//! coding to and from a folder of n shard files, any k of which give the file back. No node
//! is needed (the format is in `offgrid_storage::folder`); the shards are not encrypted.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use offgrid_storage::folder;

use crate::output;

/// `offgrid ec …`
#[derive(Debug, Subcommand)]
pub enum EcCmd {
    /// Cut FILE into n shard files in DIR, any k of which rebuild it (not encrypted).
    Encode {
        /// The file.
        file: PathBuf,
        /// The folder for the shard files (created if missing).
        dir: PathBuf,
        /// Data shards.
        #[arg(long, default_value_t = 12)]
        k: u16,
        /// Total shards (files).
        #[arg(long, default_value_t = 20)]
        n: u16,
        /// Bytes per shard and segment, e.g. 64KiB.
        #[arg(long, default_value = "64KiB", value_parser = crate::storage::parse_size)]
        shard_size: u32,
    },
    /// Rebuild FILE from the shard files in DIR (any k of the n).
    Decode {
        /// The folder of shard files.
        dir: PathBuf,
        /// Where to write the file.
        file: PathBuf,
    },
}

/// Runs an `ec` command (no node involved).
pub fn run(json: bool, cmd: EcCmd) -> anyhow::Result<()> {
    match cmd {
        EcCmd::Encode {
            file,
            dir,
            k,
            n,
            shard_size,
        } => {
            let r = folder::encode(&file, &dir, k, n, shard_size)
                .with_context(|| format!("encoding {}", file.display()))?;
            let v = serde_json::to_value(&r)?;
            output(json, &v, || {
                format!(
                    "wrote     {} shard files to {} ({k} of {n} rebuild it; not encrypted)\nsize      {} bytes in {} segments, BLAKE3 {}\n",
                    r.files.len(),
                    dir.display(),
                    r.size,
                    r.segments,
                    r.file_blake3
                )
            })
        }
        EcCmd::Decode { dir, file } => {
            let out = std::path::absolute(&file)
                .with_context(|| format!("resolving {}", file.display()))?;
            let r = folder::decode(&dir, &out)
                .with_context(|| format!("decoding {}", dir.display()))?;
            let v = serde_json::to_value(&r)?;
            output(json, &v, || {
                format!(
                    "wrote     {} ({} bytes, whole-file BLAKE3 verified) from {} shard files, {} corrupt shards skipped\n",
                    r.out.display(),
                    r.size,
                    r.files_used,
                    r.corrupt_shards
                )
            })
        }
    }
}
