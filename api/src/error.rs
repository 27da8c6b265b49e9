//! The error body every route answers with on failure.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A failed request: `{"error": code, "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `invalid_request`, `no_hosts`.
    pub error: String,
    /// Human-readable explanation.
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let raw = r#"{"error":"no_hosts","message":"no hosts available: compute"}"#;
        let e: ErrorBody = serde_json::from_str(raw).unwrap();
        assert_eq!(e.error, "no_hosts");
        assert_eq!(serde_json::to_string(&e).unwrap(), raw);
    }
}
