//! Offgrid-Net libp2p protocols and their wire messages.
