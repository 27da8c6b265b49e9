//! Offgrid-Net's libp2p protocols and their wire messages.
//!
//! Each protocol is a module: [`announce`] (signed host announcements spread on gossipsub)
//! and [`auction`] (quotes and job runs over request-response). Messages are size-capped;
//! nothing here trusts a byte it has not verified.

pub mod announce;
pub mod auction;
pub mod ledger_sync;
pub mod shards;

use std::time::Duration;

use libp2p::{request_response, StreamProtocol};

/// A request-response behaviour with a CBOR codec capped at `max_request` and
/// `max_response` bytes: the one shape of every Offgrid protocol.
pub fn capped_cbor<Req, Resp>(
    protocol: StreamProtocol,
    max_request: u64,
    max_response: u64,
    request_timeout: Duration,
    max_concurrent_streams: usize,
) -> request_response::cbor::Behaviour<Req, Resp>
where
    Req: Send + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
    Resp: Send + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    request_response::Behaviour::with_codec(
        capped_codec(max_request, max_response),
        [(protocol, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(request_timeout)
            .with_max_concurrent_streams(max_concurrent_streams),
    )
}

/// The CBOR codec of [`capped_cbor`]: it reads at most `max_request` bytes of a request and
/// `max_response` bytes of a response before decoding. Public so that the fuzz targets
/// (`fuzz/`) decode peer bytes with exactly the codec the node uses.
pub fn capped_codec<Req, Resp>(
    max_request: u64,
    max_response: u64,
) -> request_response::cbor::codec::Codec<Req, Resp> {
    request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(max_request)
        .set_response_size_maximum(max_response)
}
