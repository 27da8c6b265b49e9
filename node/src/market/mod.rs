//! The compute market: hosts quote and run jobs, brokers auction them.
//!
//! - [`scoring`]: the pure auction score;
//! - [`executor`]: how a host runs a job (`echo`, `exec`, `http`);
//! - [`host`]: quotes, runs and signed receipts on the host;
//! - [`broker`]: candidates, quote window, dispatch, failover, verification, reputation;
//! - [`receipts`]: receipt batches with Merkle proofs for the ledger;
//! - [`size`]: token-billed sizes: the broker's estimate, the host's bill from usage.

pub mod broker;
#[cfg(test)]
mod broker_fixture;
#[cfg(test)]
mod broker_service_tests;
pub mod executor;
pub mod host;
#[cfg(test)]
mod host_tests;
pub mod openai;
mod openai_stream;
pub mod payer;
mod quotes;
pub mod receipts;
pub mod reputation;
pub mod scoring;
pub mod size;
