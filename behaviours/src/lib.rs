//! Offgrid-Net's libp2p protocols and their wire messages.
//!
//! Each protocol is a module: [`announce`] (signed host announcements spread on gossipsub)
//! and [`auction`] (quotes and job runs over request-response). Messages are size-capped;
//! nothing here trusts a byte it has not verified.

pub mod announce;
pub mod auction;
pub mod ledger_sync;
pub mod shards;
