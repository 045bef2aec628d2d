//! Reference endpoints: the town, workstations, grids (JSON and GeoJSON), point lookup, departments,
//! the code tables, the working calendar and components. Any logged-in user may read them; the data
//! comes from the service layer's reference snapshot or its reference use cases.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use civicgrid_core::calendar::CalendarEntry;
use civicgrid_core::case::GeoPoint;
use civicgrid_core::catalog::{ComponentClass, Matter};
use civicgrid_core::codes::{ComponentClassCode, ComponentId, GridCode, MicroGridCode};
use civicgrid_core::component::{Component, ComponentStatus};
use civicgrid_core::grid::{Town, Workstation, polygon_to_geojson};
use civicgrid_core::org::Department;
use civicgrid_store::ComponentFilter;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authed;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The town.
#[utoipa::path(get, path = "/api/v1/town", tag = "grids", responses((status = 200, body = Town), (status = 404, body = ErrorBody)))]
pub async fn town(State(state): State<AppState>, _: Authed) -> ApiResult<Json<Town>> {
    state.world().town.clone().map(Json).ok_or_else(|| ApiError::not_found("town"))
}

/// Village and community workstations.
#[utoipa::path(get, path = "/api/v1/workstations", tag = "grids", responses((status = 200, body = [Workstation])))]
pub async fn workstations(State(state): State<AppState>, _: Authed) -> ApiResult<Json<Vec<Workstation>>> {
    Ok(Json(state.services.workstations().await?))
}

/// A grid without its polygon.
#[derive(Debug, Serialize, ToSchema)]
pub struct GridSummary {
    /// 15-digit code.
    pub code: GridCode,
    /// Workstation code.
    pub community: String,
    /// Name.
    pub name_zh: String,
    /// Households.
    pub households: u32,
    /// Responsible grid worker.
    pub worker_user_id: Option<i64>,
}

/// Unit grids (without polygons; see `/api/v1/grids.geojson`).
#[utoipa::path(get, path = "/api/v1/grids", tag = "grids", responses((status = 200, body = [GridSummary])))]
pub async fn grids(State(state): State<AppState>, _: Authed) -> ApiResult<Json<Vec<GridSummary>>> {
    let grids = state.services.grids().await?;
    Ok(Json(
        grids
            .into_iter()
            .map(|g| GridSummary {
                code: g.code,
                community: g.community.to_string(),
                name_zh: g.name_zh,
                households: g.households,
                worker_user_id: g.worker_user_id,
            })
            .collect(),
    ))
}

fn geojson_response(value: serde_json::Value) -> Response {
    ([(CONTENT_TYPE, "application/geo+json")], value.to_string()).into_response()
}

/// Unit grids as a GeoJSON FeatureCollection (WGS84).
#[utoipa::path(get, path = "/api/v1/grids.geojson", tag = "grids", responses((status = 200, content_type = "application/geo+json", body = Object)))]
pub async fn grids_geojson(State(state): State<AppState>, _: Authed) -> ApiResult<Response> {
    grids_feature_collection(&state).await
}

/// The unit grids as a GeoJSON FeatureCollection: the API's, and the public page's map.
pub async fn grids_feature_collection(state: &AppState) -> ApiResult<Response> {
    let features: Vec<serde_json::Value> = state
        .services
        .grids()
        .await?
        .iter()
        .map(|g| {
            json!({"type": "Feature", "id": g.code, "geometry": polygon_to_geojson(&g.polygon),
                "properties": {"code": g.code, "name_zh": g.name_zh, "community": g.community, "households": g.households}})
        })
        .collect();
    Ok(geojson_response(json!({"type": "FeatureCollection", "features": features})))
}

/// Micro-grids as a GeoJSON FeatureCollection (WGS84).
#[utoipa::path(get, path = "/api/v1/micro-grids.geojson", tag = "grids", responses((status = 200, content_type = "application/geo+json", body = Object)))]
pub async fn micro_grids_geojson(State(state): State<AppState>, _: Authed) -> ApiResult<Response> {
    let features: Vec<serde_json::Value> = state
        .services
        .micro_grids()
        .await?
        .iter()
        .map(|m| {
            json!({"type": "Feature", "id": m.code, "geometry": polygon_to_geojson(&m.polygon),
                "properties": {"code": m.code, "grid": m.grid(), "name_zh": m.name_zh, "households": m.households}})
        })
        .collect();
    Ok(geojson_response(json!({"type": "FeatureCollection", "features": features})))
}

/// Point to look up.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LocateQuery {
    /// Longitude.
    pub lon: f64,
    /// Latitude.
    pub lat: f64,
}

/// Where a point falls.
#[derive(Debug, Serialize, ToSchema)]
pub struct Located {
    /// Micro-grid.
    pub micro_grid: MicroGridCode,
    /// Unit grid.
    pub grid: GridCode,
}

/// The micro-grid and grid containing a point.
#[utoipa::path(get, path = "/api/v1/locate", tag = "grids", params(LocateQuery),
    responses((status = 200, body = Located), (status = 404, body = ErrorBody, description = "outside the town's grids"),
        (status = 422, body = ErrorBody, description = "not a longitude/latitude")))]
pub async fn locate(
    State(state): State<AppState>,
    _: Authed,
    ApiQuery(q): ApiQuery<LocateQuery>,
) -> ApiResult<Json<Located>> {
    let m = state.services.locate(GeoPoint { lon: q.lon, lat: q.lat })?;
    Ok(Json(Located { micro_grid: m, grid: m.grid() }))
}

/// Departments.
#[utoipa::path(get, path = "/api/v1/departments", tag = "reference", responses((status = 200, body = [Department])))]
pub async fn departments(State(state): State<AppState>, _: Authed) -> ApiResult<Json<Vec<Department>>> {
    Ok(Json(state.world().departments.values().cloned().collect()))
}

/// The national matter (管理事项) table.
#[utoipa::path(get, path = "/api/v1/code-tables/matters", tag = "reference", responses((status = 200, body = [Matter])))]
pub async fn matters(State(state): State<AppState>, _: Authed) -> ApiResult<Json<Vec<Matter>>> {
    Ok(Json(state.world().catalog.matters().cloned().collect()))
}

/// The national component-class (部件) table.
#[utoipa::path(get, path = "/api/v1/code-tables/components", tag = "reference", responses((status = 200, body = [ComponentClass])))]
pub async fn component_classes(State(state): State<AppState>, _: Authed) -> ApiResult<Json<Vec<ComponentClass>>> {
    Ok(Json(state.world().catalog.component_classes().cloned().collect()))
}

/// Public holidays and make-up working days.
#[utoipa::path(get, path = "/api/v1/calendar", tag = "reference", responses((status = 200, body = [CalendarEntry])))]
pub async fn calendar(State(state): State<AppState>, _: Authed) -> ApiResult<Json<Vec<CalendarEntry>>> {
    Ok(Json(state.services.calendar().await?))
}

/// Component list filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ComponentQuery {
    /// Grid code.
    pub grid: Option<GridCode>,
    /// Class code.
    pub class: Option<ComponentClassCode>,
    /// Status.
    pub status: Option<ComponentStatus>,
    /// Keyset cursor: components with a greater id.
    pub after: Option<ComponentId>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

/// Components, by id.
#[utoipa::path(get, path = "/api/v1/components", tag = "components", params(ComponentQuery),
    responses((status = 200, body = [Component]), (status = 400, body = ErrorBody)))]
pub async fn components(
    State(state): State<AppState>,
    _: Authed,
    ApiQuery(q): ApiQuery<ComponentQuery>,
) -> ApiResult<Json<Vec<Component>>> {
    let f = ComponentFilter {
        grid: q.grid,
        class: q.class,
        status: q.status,
        after: q.after,
        limit: q.limit.unwrap_or(100),
    };
    Ok(Json(state.services.components(&f).await?))
}

/// One component.
#[utoipa::path(get, path = "/api/v1/components/{id}", tag = "components", params(("id" = String, Path, description = "17-digit component ID")),
    responses((status = 200, body = Component), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn component(State(state): State<AppState>, _: Authed, Path(id): Path<String>) -> ApiResult<Json<Component>> {
    let id: ComponentId =
        id.parse().map_err(|e: civicgrid_core::codes::CodeError| ApiError::invalid("id", e.to_string()))?;
    Ok(Json(state.services.component(id).await?))
}
