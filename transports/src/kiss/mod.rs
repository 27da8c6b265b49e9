//! KISS: the framing LoRa TNC firmware speaks on its serial port (⚖ radio contract).
//!
//! A frame on the wire is `FEND type data… FEND`, where `type` is `port << 4 | command`
//! (command 0 = a data frame) and every FEND (0xC0) or FESC (0xDB) inside is escaped as
//! FESC TFEND (0xDB 0xDC) or FESC TFESC (0xDB 0xDD).
//!
//! - [`codec`]: the pure encoder and a streaming [`KissDecoder`] that survives garbage, partial
//!   frames and bad escapes, and drops (and counts) frames over a size cap;
//! - [`link`]: [`KissLink`], a [`crate::Link`] over any byte stream — a serial port
//!   ([`KissLink::open`]), a PTY, or a TCP KISS port such as Direwolf's.
//!
//! A LoRa KISS TNC has no addressing: every frame is a broadcast, received frames come from
//! [`crate::LinkAddr::Unknown`], and the upper layer carries addresses.

pub mod codec;
pub mod link;

pub use codec::{
    encode_data, encode_frame, DecoderStats, KissDecoder, KissFrame, CMD_DATA, FEND, FESC, TFEND,
    TFESC,
};
pub use link::{KissConfig, KissLink, KissTx};
