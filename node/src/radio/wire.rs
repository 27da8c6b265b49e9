//! The compact radio profile of the auction protocol (pure codec, no I/O).
//!
//! On IP the auction runs as libp2p request-response with CBOR messages and full receipts.
//! A LoRa frame holds 220 bytes and a 1 % duty cycle allows a few dozen frames an hour, so
//! radio sessions carry the same requests in a tighter binary form (integers as LEB128
//! varints, strings as a varint length and bytes, one type byte per message). Receipts are
//! the big saving: the broker already knows everything a receipt says except the host's
//! timings and signature, so a `DONE` carries only those and the broker rebuilds the exact
//! signed bytes ([`rebuild_receipt`]); a verifier downstream sees an ordinary receipt. If the
//! host's receipt cannot be rebuilt that way (say it lists content ids), it is sent whole.
//!
//! ```text
//! QUOTE     0x01 job_type:str units:var
//! RUN       0x02 job_id:id job_type:str units:var payload:str price:var deadline_in_ms:var
//! QUOTED    0x11 price:var valid_for_ms:var capacity:var
//! DECLINED  0x12 reason:str
//! BUSY      0x13 retry_after_ms:var
//! DONE      0x14 flags:u8 [output:str] (started_at_ms:var took_ms:var latency_ms:var
//!                tokens:var cluster_tag:u16 | receipt_bytes:str) sig:64
//!                (flags: bit0 output is the payload, omitted; bit2 whole receipt bytes
//!                instead of the compact fields. cluster_tag: the first two bytes of
//!                BLAKE3(cluster id); a broker rebuilds only receipts of its own cluster)
//! FAILED    0x15 error:str
//! PROGRESS  0x03 job_id:id                      (a heartbeat poll)
//! PROGRESSED 0x16 running:u8 elapsed_ms:var progress:var
//! id:       0x00 str | 0x01 16-byte UUID (canonical lowercase hyphenated text)
//! ```

use offgrid_behaviours::auction::{Request, Response, RunRequest};
use offgrid_ledger::{
    receipt::{Metrics, Proofs, ReceiptBody, SignedReceipt, RECEIPT_VERSION},
    signed::Signed,
};

/// Largest message accepted (a job payload and its output are capped well below).
pub const MAX_MESSAGE: usize = 16 * 1024;

const QUOTE: u8 = 0x01;
const RUN: u8 = 0x02;
const PROGRESS: u8 = 0x03;
const QUOTED: u8 = 0x11;
const DECLINED: u8 = 0x12;
const BUSY: u8 = 0x13;
const DONE: u8 = 0x14;
const FAILED: u8 = 0x15;
const PROGRESSED: u8 = 0x16;

const DONE_OUTPUT_IS_PAYLOAD: u8 = 0x01;
const DONE_WHOLE: u8 = 0x04;

/// Why a message could not be decoded or a receipt rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes end inside a field.
    #[error("message truncated")]
    Truncated,
    /// Unknown message or field type.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// A string is not UTF-8.
    #[error("string is not UTF-8")]
    Utf8,
    /// A varint runs past 64 bits.
    #[error("bad varint")]
    Varint,
    /// Bytes after the last field.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// Over [`MAX_MESSAGE`].
    #[error("message of {0} bytes is too large")]
    TooLarge(usize),
    /// The rebuilt receipt does not serialise.
    #[error("cannot rebuild the receipt: {0}")]
    Receipt(String),
}

/// What the broker side must remember to rebuild a receipt from a `DONE`.
#[derive(Debug, Clone)]
pub struct ReceiptContext {
    /// The run request that was sent.
    pub run: RunRequest,
    /// The broker's peer id.
    pub broker_id: String,
    /// The broker's cluster id (assumed unless the host says otherwise).
    pub cluster_id: String,
    /// The host's peer id.
    pub host_id: String,
    /// The host's Ed25519 public key.
    pub host_key: [u8; 32],
}

/// Encodes a request.
pub fn encode_request(req: &Request, now_ms: u64) -> Vec<u8> {
    let mut out = Vec::new();
    match req {
        Request::Quote { job_type, units } => {
            out.push(QUOTE);
            put_str(&mut out, job_type);
            put_var(&mut out, *units);
        }
        Request::Run(r) => {
            out.push(RUN);
            put_id(&mut out, &r.job_id);
            put_str(&mut out, &r.job_type);
            put_var(&mut out, r.units);
            put_str(&mut out, &r.payload);
            put_var(&mut out, r.price);
            put_var(&mut out, r.deadline_ms.saturating_sub(now_ms));
        }
        Request::Progress { job_id } => {
            out.push(PROGRESS);
            put_id(&mut out, job_id);
        }
    }
    out
}

/// Decodes a request; relative deadlines become absolute against `now_ms`.
pub fn decode_request(b: &[u8], now_ms: u64) -> Result<Request, WireError> {
    check_len(b)?;
    let mut r = Reader { b, pos: 0 };
    let req = match r.byte()? {
        QUOTE => Request::Quote {
            job_type: r.str()?,
            units: r.var()?,
        },
        RUN => Request::Run(RunRequest {
            job_id: r.id()?,
            job_type: r.str()?,
            units: r.var()?,
            payload: r.str()?,
            price: r.var()?,
            deadline_ms: now_ms.saturating_add(r.var()?),
            // The compact profile carries no payment order yet: radio jobs run unpaid.
            order: None,
        }),
        PROGRESS => Request::Progress { job_id: r.id()? },
        t => return Err(WireError::UnknownType(t)),
    };
    r.end()?;
    Ok(req)
}

/// Encodes a response. `request` is the request it answers (a `DONE` leaves out what the
/// broker can rebuild from it); `cluster_id` is the broker's cluster as the host assumes it.
pub fn encode_response(resp: &Response, request: &Request, now_ms: u64) -> Vec<u8> {
    let mut out = Vec::new();
    match resp {
        Response::Quote {
            price,
            valid_until_ms,
            capacity_left,
        } => {
            out.push(QUOTED);
            put_var(&mut out, *price);
            put_var(&mut out, valid_until_ms.saturating_sub(now_ms));
            put_var(&mut out, u64::from(*capacity_left));
        }
        Response::Declined { reason } => {
            out.push(DECLINED);
            put_str(&mut out, reason);
        }
        Response::Busy { retry_after_ms } => {
            out.push(BUSY);
            put_var(&mut out, *retry_after_ms);
        }
        Response::Failed { error } => {
            out.push(FAILED);
            put_str(&mut out, error);
        }
        Response::Done { output, receipt } => encode_done(&mut out, output, receipt, request),
        Response::Progress {
            running,
            elapsed_ms,
            progress,
        } => {
            out.push(PROGRESSED);
            out.push(u8::from(*running));
            put_var(&mut out, *elapsed_ms);
            put_var(&mut out, *progress);
        }
    }
    out
}

fn encode_done(out: &mut Vec<u8>, output: &str, receipt: &SignedReceipt, request: &Request) {
    let body: Option<ReceiptBody> = serde_json::from_slice(&receipt.bytes).ok();
    let run = match request {
        Request::Run(r) => Some(r),
        Request::Quote { .. } | Request::Progress { .. } => None,
    };
    // Send the compact form only when the broker's rebuild gives the very bytes we signed.
    let compact = match (&body, run) {
        (Some(b), Some(run)) => {
            let ctx = ReceiptContext {
                run: run.clone(),
                broker_id: b.broker_id.clone(),
                cluster_id: b.cluster_id.clone(),
                host_id: b.node_id.clone(),
                host_key: receipt.pubkey,
            };
            let rebuilt = build_body(&ctx, output, &b.cluster_id, timings(b));
            serde_json::to_vec(&rebuilt).ok().as_deref() == Some(&receipt.bytes[..])
        }
        _ => false,
    };
    out.push(DONE);
    let mut flags = 0u8;
    let payload_is_output = run.is_some_and(|r| r.payload == output);
    if payload_is_output {
        flags |= DONE_OUTPUT_IS_PAYLOAD;
    }
    if !compact {
        flags |= DONE_WHOLE;
    }
    out.push(flags);
    if !payload_is_output {
        put_str(out, output);
    }
    if let (true, Some(b)) = (compact, &body) {
        let (started, took, latency, tokens) = timings(b);
        put_var(out, started);
        put_var(out, took);
        put_var(out, latency);
        put_var(out, tokens);
        out.extend_from_slice(&cluster_tag(&b.cluster_id));
    } else {
        put_bytes(out, &receipt.bytes);
    }
    out.extend_from_slice(&receipt.sig);
}

fn timings(b: &ReceiptBody) -> (u64, u64, u64, u64) {
    (
        b.started_at_ms,
        b.finished_at_ms.saturating_sub(b.started_at_ms),
        b.metrics.latency_ms,
        b.metrics.compute_tokens,
    )
}

fn build_body(
    ctx: &ReceiptContext,
    output: &str,
    cluster: &str,
    (started, took, latency, tokens): (u64, u64, u64, u64),
) -> ReceiptBody {
    ReceiptBody {
        version: RECEIPT_VERSION.into(),
        cluster_id: cluster.to_owned(),
        job_id: ctx.run.job_id.clone(),
        resource_type: ctx.run.job_type.clone(),
        units: ctx.run.units,
        metrics: Metrics {
            compute_tokens: tokens,
            latency_ms: latency,
            input_bytes: ctx.run.payload.len() as u64,
            output_bytes: output.len() as u64,
        },
        proofs: Proofs {
            input_blake3: blake3::hash(ctx.run.payload.as_bytes())
                .to_hex()
                .to_string(),
            output_blake3: blake3::hash(output.as_bytes()).to_hex().to_string(),
        },
        cids: Vec::new(),
        node_id: ctx.host_id.clone(),
        host_pubkey: hex::encode(ctx.host_key),
        broker_id: ctx.broker_id.clone(),
        started_at_ms: started,
        finished_at_ms: started.saturating_add(took),
        price: ctx.run.price,
        order: None,
    }
}

/// Rebuilds the signed receipt of a compact `DONE` (see the module docs).
pub fn rebuild_receipt(
    ctx: &ReceiptContext,
    output: &str,
    cluster: &str,
    timing: (u64, u64, u64, u64),
    sig: [u8; 64],
) -> Result<SignedReceipt, WireError> {
    let body = build_body(ctx, output, cluster, timing);
    let bytes = serde_json::to_vec(&body).map_err(|e| WireError::Receipt(e.to_string()))?;
    Ok(Signed::from_parts(bytes, sig, ctx.host_key))
}

/// Decodes a response. `ctx` is needed for a `DONE` answering a run.
pub fn decode_response(
    b: &[u8],
    ctx: Option<&ReceiptContext>,
    now_ms: u64,
) -> Result<Response, WireError> {
    check_len(b)?;
    let mut r = Reader { b, pos: 0 };
    let resp = match r.byte()? {
        QUOTED => Response::Quote {
            price: r.var()?,
            valid_until_ms: now_ms.saturating_add(r.var()?),
            capacity_left: u32::try_from(r.var()?).unwrap_or(u32::MAX),
        },
        DECLINED => Response::Declined { reason: r.str()? },
        BUSY => Response::Busy {
            retry_after_ms: r.var()?,
        },
        FAILED => Response::Failed { error: r.str()? },
        DONE => {
            let flags = r.byte()?;
            let output = if flags & DONE_OUTPUT_IS_PAYLOAD != 0 {
                ctx.map(|c| c.run.payload.clone())
                    .ok_or(WireError::Receipt("no run to take the output from".into()))?
            } else {
                r.str()?
            };
            let receipt = if flags & DONE_WHOLE != 0 {
                let bytes = r.bytes()?;
                let sig = r.sig()?;
                let key = ctx
                    .map(|c| c.host_key)
                    .ok_or(WireError::Receipt("unknown host key".into()))?;
                Signed::from_parts(bytes, sig, key)
            } else {
                let timing = (r.var()?, r.var()?, r.var()?, r.var()?);
                let tag = r.take(2)?;
                let sig = r.sig()?;
                let ctx = ctx.ok_or(WireError::Receipt("no run to rebuild from".into()))?;
                if tag != cluster_tag(&ctx.cluster_id) {
                    return Err(WireError::Receipt("receipt of another cluster".into()));
                }
                rebuild_receipt(ctx, &output, &ctx.cluster_id, timing, sig)?
            };
            Response::Done { output, receipt }
        }
        PROGRESSED => Response::Progress {
            running: match r.byte()? {
                0 => false,
                1 => true,
                t => return Err(WireError::UnknownType(t)),
            },
            elapsed_ms: r.var()?,
            progress: r.var()?,
        },
        t => return Err(WireError::UnknownType(t)),
    };
    r.end()?;
    Ok(resp)
}

/// Two bytes that tell clusters apart in a compact `DONE`.
fn cluster_tag(cluster: &str) -> [u8; 2] {
    let h = blake3::hash(cluster.as_bytes());
    [h.as_bytes()[0], h.as_bytes()[1]]
}

fn check_len(b: &[u8]) -> Result<(), WireError> {
    if b.len() > MAX_MESSAGE {
        Err(WireError::TooLarge(b.len()))
    } else {
        Ok(())
    }
}

/// Appends an unsigned LEB128 varint.
pub fn put_var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_var(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_id(out: &mut Vec<u8>, id: &str) {
    match parse_uuid(id) {
        Some(raw) => {
            out.push(1);
            out.extend_from_slice(&raw);
        }
        None => {
            out.push(0);
            put_str(out, id);
        }
    }
}

/// The 16 bytes of a canonical lowercase hyphenated UUID, `None` for any other text.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hexs: String = s.chars().filter(|c| *c != '-').collect();
    if hexs.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let v = hex::decode(hexs).ok()?;
    v.try_into().ok()
}

fn format_uuid(raw: &[u8; 16]) -> String {
    let h = hex::encode(raw);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Reads fields of a message.
pub struct Reader<'a> {
    /// The message.
    pub b: &'a [u8],
    /// Read position.
    pub pos: usize,
}

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.b.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// One byte.
    pub fn byte(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    /// A varint.
    pub fn var(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err(WireError::Varint);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError::Varint)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, WireError> {
        let n = usize::try_from(self.var()?).map_err(|_| WireError::Truncated)?;
        Ok(self.take(n)?.to_vec())
    }

    fn str(&mut self) -> Result<String, WireError> {
        String::from_utf8(self.bytes()?).map_err(|_| WireError::Utf8)
    }

    fn id(&mut self) -> Result<String, WireError> {
        match self.byte()? {
            0 => self.str(),
            1 => {
                let mut raw = [0u8; 16];
                raw.copy_from_slice(self.take(16)?);
                Ok(format_uuid(&raw))
            }
            t => Err(WireError::UnknownType(t)),
        }
    }

    fn sig(&mut self) -> Result<[u8; 64], WireError> {
        let mut s = [0u8; 64];
        s.copy_from_slice(self.take(64)?);
        Ok(s)
    }

    /// Fails unless every byte was read.
    pub fn end(&self) -> Result<(), WireError> {
        match self.b.len() - self.pos.min(self.b.len()) {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

#[cfg(test)]
// A panic in a test is a failure with a message, which is what a test wants.
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
