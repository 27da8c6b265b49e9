//! Peers: the registry of every peer heard of, on any link, with its verified announcement.

pub mod registry;
