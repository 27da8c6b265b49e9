//! Offgrid-Net's libp2p protocols and their wire messages.
//!
//! Each protocol is a module: [`announce`] (signed host announcements spread on gossipsub)
//! and [`auction`] (quotes and job runs over request-response). Messages are size-capped;
//! nothing here trusts a byte it has not verified. Every request-response protocol uses the
//! [`codec`], whose inbound reads are capped, charged to a node-wide [`Budget`] and given a
//! deadline, so that a hostile peer cannot turn open streams into memory.

pub mod announce;
pub mod auction;
pub mod codec;
pub mod ledger_sync;
pub mod shards;

use std::time::Duration;

use libp2p::{request_response, StreamProtocol};

pub use codec::{Budget, Inbound};

/// A request-response behaviour over CBOR.
pub type CborBehaviour<Req, Resp> = request_response::Behaviour<codec::Codec<Req, Resp>>;

/// A request-response behaviour with a CBOR codec capped at `max_request` and
/// `max_response` bytes and the `inbound` limits: the one shape of every Offgrid protocol.
pub fn capped_cbor<Req, Resp>(
    protocol: StreamProtocol,
    max_request: u64,
    max_response: u64,
    request_timeout: Duration,
    inbound: &Inbound,
) -> CborBehaviour<Req, Resp>
where
    Req: Send + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
    Resp: Send + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    request_response::Behaviour::with_codec(
        codec::Codec::new(max_request, max_response, inbound),
        [(protocol, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(request_timeout)
            .with_max_concurrent_streams(inbound.max_streams),
    )
}

/// The codec of [`capped_cbor`] for one stream: it refuses a request past `max_request`
/// bytes and a response past `max_response` bytes. Public so that the fuzz targets (`fuzz/`)
/// decode peer bytes with exactly the codec the node uses.
pub fn capped_codec<Req, Resp>(max_request: u64, max_response: u64) -> codec::Codec<Req, Resp> {
    codec::Codec::new(max_request, max_response, &Inbound::streams(1))
}
