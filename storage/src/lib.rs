//! Offgrid-Net storage: segment encryption, erasure coding, manifests and the shard file store.
