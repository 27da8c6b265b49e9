//! ARQ packet format (pure). All integers big-endian.
//!
//! ```text
//! DATA      0xD0  conn:u16 seq:u32 payload…      (7-byte header)
//! DATA+FIN  0xD1  conn:u16 seq:u32 payload…      (the last segment of the stream)
//! ACK       0xA0  conn:u16 cum:u32 sack:u32      (cum: next expected seq; bit i of sack:
//!                                                 seq cum + 1 + i is held out of order)
//! PING      0xB0  conn:u16                       (keep-alive; answered by an ACK)
//! ```
//!
//! The first byte never equals the beacon magic (0x4F), so both can share a link.

/// Header bytes of a DATA packet.
pub const DATA_HEADER: usize = 7;
/// Length of an ACK packet.
pub const ACK_LEN: usize = 11;

const DATA: u8 = 0xD0;
const DATA_FIN: u8 = 0xD1;
const ACK: u8 = 0xA0;
const PING: u8 = 0xB0;

/// One ARQ packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// A segment of the byte stream.
    Data {
        /// Connection id.
        conn: u16,
        /// Segment number.
        seq: u32,
        /// Whether this is the stream's last segment.
        fin: bool,
        /// Segment bytes.
        payload: Vec<u8>,
    },
    /// Acknowledgement.
    Ack {
        /// Connection id.
        conn: u16,
        /// Every segment below this has arrived.
        cum: u32,
        /// Segments `cum + 1 + i` held out of order, for each set bit `i`.
        sack: u32,
    },
    /// Keep-alive probe.
    Ping {
        /// Connection id.
        conn: u16,
    },
}

impl Packet {
    /// The connection id.
    pub fn conn(&self) -> u16 {
        match self {
            Packet::Data { conn, .. } | Packet::Ack { conn, .. } | Packet::Ping { conn } => *conn,
        }
    }

    /// Serialises the packet.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Packet::Data {
                conn,
                seq,
                fin,
                payload,
            } => {
                let mut out = Vec::with_capacity(DATA_HEADER + payload.len());
                out.push(if *fin { DATA_FIN } else { DATA });
                out.extend_from_slice(&conn.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(payload);
                out
            }
            Packet::Ack { conn, cum, sack } => {
                let mut out = Vec::with_capacity(ACK_LEN);
                out.push(ACK);
                out.extend_from_slice(&conn.to_be_bytes());
                out.extend_from_slice(&cum.to_be_bytes());
                out.extend_from_slice(&sack.to_be_bytes());
                out
            }
            Packet::Ping { conn } => {
                let mut out = vec![PING];
                out.extend_from_slice(&conn.to_be_bytes());
                out
            }
        }
    }

    /// Parses a packet; `None` for anything that is not one.
    pub fn decode(b: &[u8]) -> Option<Packet> {
        let (&ty, rest) = b.split_first()?;
        let conn = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?);
        let be32 = |at: usize| -> Option<u32> {
            Some(u32::from_be_bytes(rest.get(at..at + 4)?.try_into().ok()?))
        };
        match ty {
            DATA | DATA_FIN => Some(Packet::Data {
                conn,
                seq: be32(2)?,
                fin: ty == DATA_FIN,
                payload: rest.get(6..)?.to_vec(),
            }),
            ACK if b.len() == ACK_LEN => Some(Packet::Ack {
                conn,
                cum: be32(2)?,
                sack: be32(6)?,
            }),
            PING if b.len() == 3 => Some(Packet::Ping { conn }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn round_trips() {
        for p in [
            Packet::Data {
                conn: 7,
                seq: 1 << 31,
                fin: false,
                payload: vec![1, 2, 3],
            },
            Packet::Data {
                conn: 0,
                seq: 0,
                fin: true,
                payload: vec![],
            },
            Packet::Ack {
                conn: 65535,
                cum: 9,
                sack: 0b101,
            },
            Packet::Ping { conn: 3 },
        ] {
            assert_eq!(Packet::decode(&p.encode()), Some(p.clone()));
        }
        assert_eq!(Packet::Ping { conn: 1 }.encode().len(), 3);
        assert_eq!(
            Packet::Ack {
                conn: 1,
                cum: 1,
                sack: 1
            }
            .encode()
            .len(),
            ACK_LEN
        );
        assert_eq!(Packet::decode(&[0x4F, 1, 2, 3, 4, 5, 6]), None);
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Some(p) = Packet::decode(&b) {
                prop_assert_eq!(p.encode(), b);
            }
        }
    }
}
