//! Core's adapter: HMAC and Ed25519 job signatures, canonical JSON, the idempotent job
//! book and the routes Core calls (`POST /auction`, `POST /jobs`, `GET /jobs/{id}`,
//! `GET /metrics`).

pub mod auth;
pub mod canonical;
pub mod jobs;
pub mod routes;

pub use routes::{routes, CoreState};
