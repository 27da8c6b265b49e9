//! Request extractors whose rejections use the API's JSON error shape.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;

use super::{error::ApiError, AppState};

/// A JSON body: 413 beyond the body limit, 400 naming the problem when malformed.
pub struct JsonBody<T>(pub T);

/// Reads the raw body under the limit, mapping failures to [`ApiError`].
///
/// An oversized body is still read (and discarded) up to [`DRAIN_FACTOR`] times the limit
/// before the 413 goes out: a client that is still sending then receives the answer instead
/// of a reset connection. Beyond that the connection is simply closed.
pub async fn read_body(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    use futures::StreamExt;
    let limit = state.body_limit;
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit.saturating_mul(DRAIN_FACTOR) {
            return Err(ApiError::too_large(limit));
        }
    }
    let mut stream = req.into_body().into_data_stream();
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid_request(format!("cannot read body: {e}")))?;
        total = total.saturating_add(chunk.len());
        if total <= limit {
            buf.extend_from_slice(&chunk);
        } else if total > limit.saturating_mul(DRAIN_FACTOR) {
            break;
        }
    }
    if total > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(Bytes::from(buf))
}

/// How far past the limit an oversized body is drained before answering 413.
pub const DRAIN_FACTOR: usize = 8;

/// Parses JSON with a message that names line, column and what was expected.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::invalid_request(
            "empty body; expected a JSON object",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid_request(format!("malformed JSON: {e}")))
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Proof that the request carried the node's bearer token.
pub struct Authorized;

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        if crate::http::auth::token_matches(&state.token, presented) {
            Ok(Authorized)
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// A query string: 400 with the JSON error shape naming the bad parameter (axum's own
/// `Query` answers plain text).
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(QueryParams)
            .map_err(|e| ApiError::invalid_request(format!("bad query string: {e}")))
    }
}
