//! Core's adapter (the external orchestrator's HTTP contract): canonical JSON exactly as
//! Core's Python signs it, job authentication with key rotation, and idempotent job
//! records. The HTTP routes are in `api::adapter`.

pub mod auth;
pub mod canonical;
pub mod jobs;
