//! Offgrid-Net radio links: KISS serial LoRa, UDP multicast, simulated radio, BLE, signed
//! beacons, the fragmentation/ARQ layer, and a libp2p transport over radio built on it.
//!
//! Every link speaks the same small contract ([`link::Link`]): datagrams of at most
//! [`link::Link::mtu`] bytes to a [`link::LinkAddr`] or to everyone in range, received on a
//! bounded channel of [`link::Datagram`]s, with an airtime cost model so that callers can budget
//! the channel ([`lora::DutyCycle`], [`lora::AnnounceBudget`]).
//!
//! | module | what |
//! |---|---|
//! | [`link`] | the `Link` trait, addresses, datagrams, errors, counters |
//! | [`kiss`] | KISS framing codec and a LoRa TNC link over a serial port |
//! | [`lora`] | Semtech airtime formula, duty-cycle and announce budgets |
//! | [`sim`] | simulated LoRa medium (in process, or between processes through a UDP hub) |
//! | [`udp`] | UDP multicast link for machines without radios |
//! | [`beacon`] | compact signed beacons that fit one LoRa frame, and a replay filter |
//! | [`ble`] | Bluetooth LE: service UUID, name codec, advertisement parsing, ATT chunking |
//! | [`frag`] | segmentation + selective-repeat ARQ: a reliable byte stream over a link |
//! | [`demux`] | one link shared by beacons and several ARQ streams |
//! | [`p2p`] | `RadioTransport`: a libp2p `Transport` over a link (Noise + Yamux run on it), `/offgrid-radio/<link>/<addr>` addresses |

// A panic in a test is a failure with a message, which is what a test wants.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod beacon;
pub mod ble;
pub mod demux;
pub mod frag;
pub mod kiss;
pub mod link;
pub mod lora;
pub mod p2p;
pub mod sim;
pub mod udp;

pub use link::{Datagram, Endpoint, Link, LinkAddr, LinkError, LinkKind, LinkStats};
