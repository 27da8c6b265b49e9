//! `GET /storage/assets/{id}/content`: an asset's plaintext as a stream, whole (`200`) or
//! one HTTP byte range (`Range: bytes=START-END`, `206` with `Content-Range`). Only the
//! segments the range covers are fetched from the hosts, each verified; a whole-file read
//! checks the whole-file BLAKE3 before its last chunk, and cuts the body short (the client
//! sees fewer bytes than `Content-Length`) if it does not match. A range that cannot be
//! served — past the end, inverted, malformed, several ranges, numbers beyond 64 bits — is
//! `416 range_not_satisfiable` with `Content-Range: bytes */SIZE`. The bearer token is
//! required: the answer is decrypted content.

use axum::{
    body::Body,
    extract::{Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use offgrid_api as api;

use super::{doc::AUTH, error::ApiError, extract::Authorized, AppState};
use crate::files::get::stream::{parse_range, RangeError};

/// The header naming a content key given explicitly (hex) instead of this node's own.
pub const KEY_HEADER: &str = "x-offgrid-key";
/// The header naming the segments fetched, `FIRST-LAST` (absent for an empty asset).
pub const SEGMENTS_HEADER: &str = "x-offgrid-segments";

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/storage/assets/{id}/content", get(content))
}

#[utoipa::path(get, path = "/storage/assets/{id}/content", tag = "storage", security(("bearer" = [])),
    params(("id" = String, Path, description = "Asset id, 64 lower-case hex digits"),
        ("range" = Option<String>, Header, description = "One byte range, END inclusive: bytes=START-END, bytes=START- or bytes=-SUFFIX; an END past the end is cut to the last byte"),
        ("x-offgrid-key" = Option<String>, Header, description = "The content key (64 hex digits) instead of this node's wrapped key")),
    responses((status = 200, description = "The whole file, verified (segments, then the whole-file BLAKE3 before the last chunk)", content_type = "application/octet-stream", body = String),
        (status = 206, description = "The byte range asked for; only the segments it covers are fetched, each verified", content_type = "application/octet-stream", body = String,
            headers(("content-range" = String, description = "bytes START-END/SIZE"))),
        (status = 400, description = "An asset id that is not 64 lower-case hex digits, or a malformed key (invalid_request)", body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 403, description = "Not shared with this node (not_shared), or the key does not open it (wrong_key)", body = api::ErrorBody),
        (status = 404, description = "No such asset here or on the connected peers (not_found)", body = api::ErrorBody),
        (status = 416, description = "A range past the end, inverted, malformed, huge or several (range_not_satisfiable); Content-Range: bytes */SIZE", body = api::ErrorBody),
        (status = 502, description = "Too few shards reachable, or an integrity failure (not_enough_shards, integrity)", body = api::ErrorBody),
        (status = 503, description = "Too many reads being served (busy)", body = api::ErrorBody)))]
pub(crate) async fn content(
    State(s): State<AppState>,
    _: Authorized,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !offgrid_storage::is_valid_hash(&id) {
        return Err(ApiError::invalid_request(
            "asset must be 64 lower-case hex digits",
        ));
    }
    let key = match headers.get(KEY_HEADER) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|k| hex::decode(k.trim()).ok())
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| {
                    ApiError::invalid_request(format!("{KEY_HEADER} must be 64 hex digits"))
                })?,
        ),
        None => None,
    };
    let range = headers.get(header::RANGE).map(|v| v.to_str().ok());
    let opened = s
        .storage
        .open_content(&id, key, |size| match range {
            None => Ok(None),
            Some(Some(h)) => parse_range(h, size).map(Some),
            Some(None) => Err(RangeError::Malformed("(not visible ASCII)".into())),
        })
        .await?;
    let content = match opened {
        Ok(c) => c,
        Err((e, size)) => {
            let mut resp = ApiError::other(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                e.to_string(),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let mut resp = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, content.len())
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some((a, b)) = content.segments {
        resp = resp.header(SEGMENTS_HEADER, format!("{a}-{b}"));
    }
    resp = match content.range {
        Some((a, b)) => resp.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {a}-{b}/{}", content.size),
        ),
        None => resp.status(StatusCode::OK),
    };
    resp.body(Body::from_stream(content.body)).map_err(|e| {
        tracing::warn!(error = %e, "building a content response");
        ApiError::internal()
    })
}
