//! `offgrid get ASSET -` and `offgrid get ASSET --range START-END [-o FILE | -]`: the
//! asset's plaintext read through `GET /storage/assets/{id}/content`, streamed in order with
//! bounded memory (one chunk at a time) to stdout or to a file.
//!
//! A file is written to a temporary name beside it and renamed into place only once every
//! byte arrived, so a failed read leaves nothing. A range's END must be inside the asset
//! (the node would cut it; the CLI says so instead). A stream that ends before its
//! `Content-Length` (the node found a segment it cannot rebuild, or the whole-file hash did
//! not match) is an error, and stdout closed by its reader (`| head`) ends the read quietly.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use serde_json::json;

use crate::{client::Api, output};

/// An inclusive byte range as `--range` takes it: `START-END` or `START-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive); `None` for the end of the asset.
    pub end: Option<u64>,
}

/// Parses `START-END` (END inclusive, as in HTTP Range) or `START-`.
pub fn parse_byte_range(s: &str) -> Result<ByteRange, String> {
    let (a, b) = s
        .trim()
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected START-END (byte offsets, END inclusive)"))?;
    let num = |t: &str| -> Result<u64, String> {
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("{s:?}: {t:?} is not a byte offset"));
        }
        t.parse()
            .map_err(|_| format!("{s:?}: {t} does not fit in 64 bits"))
    };
    let start = num(a.trim())?;
    let end = match b.trim() {
        "" => None,
        t => Some(num(t)?),
    };
    if let Some(end) = end {
        if end < start {
            return Err(format!("{s:?}: END {end} is before START {start}"));
        }
    }
    Ok(ByteRange { start, end })
}

/// Where the bytes go.
pub enum Dest {
    /// Standard output.
    Stdout,
    /// A file.
    File(PathBuf),
}

/// Reads an asset (or a range of it) from the node and writes it to `dest`.
pub async fn read(
    api: &Api,
    json: bool,
    asset: &str,
    dest: Dest,
    range: Option<ByteRange>,
    key: Option<String>,
) -> anyhow::Result<()> {
    let mut headers = Vec::new();
    if let Some(r) = range {
        let end = r.end.map(|e| e.to_string()).unwrap_or_default();
        headers.push(("range", format!("bytes={}-{end}", r.start)));
    }
    if let Some(k) = key {
        headers.push(("x-offgrid-key", k));
    }
    let mut resp = api
        .get_stream(&format!("/storage/assets/{asset}/content"), &headers)
        .await?;
    let size = total_size(&resp).unwrap_or(0);
    if let (Some(r), Some(end)) = (range, range.and_then(|r| r.end)) {
        if end >= size {
            bail!(
                "range {}-{end} is past the end of the {size}-byte asset (its last byte is {})",
                r.start,
                size.saturating_sub(1)
            );
        }
    }
    let expected = resp.content_length();
    let segments = resp
        .headers()
        .get("x-offgrid-segments")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut sink: Box<dyn std::io::Write> = match &dest {
        Dest::Stdout => Box::new(std::io::stdout().lock()),
        Dest::File(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(temp_path(path))
                .with_context(|| format!("cannot write {}", path.display()))?,
        )),
    };
    let mut written = 0u64;
    let result: anyhow::Result<()> = async {
        while let Some(chunk) = resp
            .chunk()
            .await
            .context("the node's stream broke off (see the node's log)")?
        {
            match sink.write_all(&chunk) {
                Ok(()) => written += chunk.len() as u64,
                // The reader of stdout stopped (`| head`): nothing more to do.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(e).context("writing the content"),
            }
        }
        if let Some(len) = expected.filter(|len| *len != written) {
            bail!("the node's stream ended after {written} of {len} bytes");
        }
        match sink.flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(e).context("writing the content")
            }
            _ => Ok(()),
        }
    }
    .await;
    drop(sink);
    let Dest::File(path) = dest else {
        return result;
    };
    let tmp = temp_path(&path);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("moving the content into {}", path.display()))?;
    let v = json!({
        "asset_id": asset,
        "out": path,
        "size": size,
        "range": range.map(|r| json!({"start": r.start, "end": r.start + written.saturating_sub(1)})),
        "bytes": written,
        "segments": segments,
    });
    output(json, &v, || {
        format!(
            "wrote     {} ({written} bytes{}, verified)\n",
            path.display(),
            range
                .map(|r| format!(
                    " of {size}, from byte {} to {}",
                    r.start,
                    r.start + written.saturating_sub(1)
                ))
                .unwrap_or_default(),
        )
    })
}

/// The asset's size: from `Content-Range: bytes A-B/SIZE`, else `Content-Length`.
fn total_size(resp: &reqwest::Response) -> Option<u64> {
    let range = resp
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok());
    match range {
        Some(r) => r.rsplit_once('/').and_then(|(_, s)| s.parse().ok()),
        None => resp.content_length(),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.offgrid-partial"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_with_an_inclusive_end() {
        assert_eq!(
            parse_byte_range("0-0"),
            Ok(ByteRange {
                start: 0,
                end: Some(0)
            })
        );
        assert_eq!(
            parse_byte_range("100-"),
            Ok(ByteRange {
                start: 100,
                end: None
            })
        );
        for bad in [
            "",
            "5",
            "-5",
            "a-b",
            "7-3",
            "1-2-3",
            "99999999999999999999999-1",
        ] {
            assert!(parse_byte_range(bad).is_err(), "{bad}");
        }
        assert!(parse_byte_range("7-3")
            .unwrap_err()
            .contains("before START"));
    }
}
