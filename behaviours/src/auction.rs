//! The auction protocol: a broker asks hosts for quotes and runs a job on the winner.
//!
//! Request-response on [`PROTOCOL_NAME`] with a size-capped CBOR codec. Money is in
//! micro-credits and sizes in micro-units, always integers. A host answers a quote with a
//! price or a refusal, and a run with the output and an Ed25519-signed receipt.
//!
//! **Heartbeats.** While a run is out, the broker polls the host with [`Request::Progress`]
//! on its own stream every heartbeat interval; the host answers [`Response::Progress`] at
//! once from its table of running jobs. A host that stops answering for three intervals is
//! failed over, and one that keeps answering may run until the job's deadline.

use std::time::Duration;

use libp2p::{request_response, StreamProtocol};
use offgrid_ledger::receipt::SignedReceipt;
use serde::{Deserialize, Serialize};

/// Protocol name.
pub const PROTOCOL_NAME: StreamProtocol = StreamProtocol::new("/offgrid/auction/1.0.0");

/// Largest request on the wire (a job payload plus framing).
pub const MAX_REQUEST_BYTES: u64 = 512 * 1024;
/// Largest response on the wire (an output plus its receipt).
pub const MAX_RESPONSE_BYTES: u64 = 2 * 1024 * 1024;

/// A job as dispatched to a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    /// Job id (idempotency key at the broker).
    pub job_id: String,
    /// Job type; selects the host's executor.
    pub job_type: String,
    /// Job size in micro-units.
    pub units: u64,
    /// Payload as JSON text.
    pub payload: String,
    /// Price per unit agreed in the quote, micro-credits.
    pub price: u64,
    /// Unix milliseconds by which the host must be done; it gives up after.
    pub deadline_ms: u64,
    /// The requester's signed promise to pay this host for this job; the host's receipt
    /// embeds it. Absent on a mesh without a wallet (older brokers send none either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<offgrid_ledger::PaymentOrder>,
}

/// Broker → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// What would you charge for this job now?
    Quote {
        /// Job type.
        job_type: String,
        /// Size in micro-units.
        units: u64,
    },
    /// Run this job.
    Run(RunRequest),
    /// Is this job, which this broker sent, still running here? (a heartbeat poll)
    Progress {
        /// The job's id.
        job_id: String,
    },
}

/// Host → broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A price, valid until a time.
    Quote {
        /// Price per unit, micro-credits.
        price: u64,
        /// Unix milliseconds until which the price holds.
        valid_until_ms: u64,
        /// Jobs the host could still take at once.
        capacity_left: u32,
    },
    /// The host will not take this job (inactive, no executor, price changed, …).
    Declined {
        /// Why.
        reason: String,
    },
    /// The host is at its concurrency limit.
    Busy {
        /// Suggested wait before asking again, milliseconds.
        retry_after_ms: u64,
    },
    /// The job ran.
    Done {
        /// The executor's output (UTF-8 text, often JSON).
        output: String,
        /// The signed receipt.
        receipt: SignedReceipt,
    },
    /// The job failed on the host.
    Failed {
        /// Why, for people.
        error: String,
    },
    /// A heartbeat: the state of a job this broker sent.
    Progress {
        /// Whether the job is running here now (false: unknown, or already answered).
        running: bool,
        /// Milliseconds since it started here.
        elapsed_ms: u64,
        /// Work done so far as the executor counts it (tokens generated, bytes written);
        /// 0 when the executor reports none.
        progress: u64,
    },
}

/// The libp2p behaviour of the auction protocol.
pub type Behaviour = crate::CborBehaviour<Request, Response>;

/// Event of [`Behaviour`].
pub type Event = request_response::Event<Request, Response>;

/// Builds the behaviour. `request_timeout` must cover the longest job a host may run.
/// `inbound` bounds what peers may make this node buffer.
pub fn behaviour(request_timeout: Duration, inbound: &crate::Inbound) -> Behaviour {
    crate::capped_cbor(
        PROTOCOL_NAME,
        MAX_REQUEST_BYTES,
        MAX_RESPONSE_BYTES,
        request_timeout,
        inbound,
    )
}
