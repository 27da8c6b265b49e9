//! Request and response types of the node's local HTTP API.
//!
//! The node builds these and the CLI decodes them, so both sides agree on one shape. They are
//! plain data: peer ids are strings, amounts integers of micro-credits (the `price` floats
//! are display copies the node has always sent beside `price_micro`). The serde attributes
//! keep the JSON exactly as the node emits it; doc comments become the OpenAPI descriptions.

pub mod error;
pub mod events;
pub mod ledger;
pub mod market;
pub mod node;
pub mod peers;
pub mod radio;
pub mod storage;

pub use error::ErrorBody;
