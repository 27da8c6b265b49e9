//! `GET /radio` (links, frames, airtime against budget, peers per link) and `GET /mesh`
//! (mesh metrics). Both read-only.

use axum::{extract::State, routing::get, Json, Router};
use offgrid_api as api;

use super::{convert, error::ApiError, AppState};

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/radio", get(radio))
        .route("/mesh", get(mesh))
}

#[utoipa::path(get, path = "/radio", tag = "radio",
    responses((status = 200, description = "Radio links: frames in and out, airtime against the budget, peers per link", body = api::radio::RadioResponse),
        (status = 503, description = "The peer service did not answer (unavailable)", body = api::ErrorBody)))]
pub(crate) async fn radio(
    State(s): State<AppState>,
) -> Result<Json<api::radio::RadioResponse>, ApiError> {
    let status = s
        .peers
        .radio_status()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(api::radio::RadioResponse {
        enabled: status.is_some(),
        status: status.as_ref().map(convert).transpose()?,
    }))
}

#[utoipa::path(get, path = "/mesh", tag = "radio",
    responses((status = 200, description = "Mesh metrics (BATMAN-adv, Babel or manual) and the factor they give host scores", body = api::radio::MeshResponse),
        (status = 503, description = "The peer service did not answer (unavailable)", body = api::ErrorBody)))]
pub(crate) async fn mesh(
    State(s): State<AppState>,
) -> Result<Json<api::radio::MeshResponse>, ApiError> {
    let status = s
        .peers
        .mesh_status()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let factor = status.as_ref().map_or(1.0, |m| {
        crate::market::scoring::mesh_factor(Some(m.mesh_ok), m.neighbours, m.path_metric)
    });
    Ok(Json(api::radio::MeshResponse {
        available: status.is_some(),
        mesh: status.as_ref().map(convert).transpose()?,
        mesh_factor: factor,
    }))
}
