//! `GET /radio` (links, frames, airtime against budget, peers per link) and `GET /mesh`
//! (mesh metrics). Both read-only.

use axum::{extract::State, routing::get, Json, Router};
use serde_json::{json, Value};

use super::{error::ApiError, AppState};

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/radio", get(radio))
        .route("/mesh", get(mesh))
}

async fn radio(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let status = s
        .peers
        .radio_status()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(match status {
        Some(st) => json!({ "enabled": true, "status": st }),
        None => json!({ "enabled": false, "status": null }),
    }))
}

async fn mesh(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let status = s
        .peers
        .mesh_status()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let factor = status.as_ref().map_or(1.0, |m| {
        crate::market::scoring::mesh_factor(Some(m.mesh_ok), m.neighbours, m.path_metric)
    });
    Ok(Json(
        json!({ "available": status.is_some(), "mesh": status, "mesh_factor": factor }),
    ))
}
