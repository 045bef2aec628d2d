//! The big screen's three reads: the open cases now (`/api/v1/cockpit/situation`), the KPI figures
//! with their trends (`/api/v1/cockpit/figures`) and the smart components now
//! (`/api/v1/cockpit/sensing`). Thin: the service layer gathers them.

use axum::Json;
use axum::extract::State;
use civicgrid_service::cockpit::{Figures, Situation};
use civicgrid_service::sensing::Sensing;

use crate::auth::Authed;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

/// The open cases now: tallies per state, grid, workstation and department, map points, the most
/// overdue cases and the latest events, with the event-log position they reflect.
#[utoipa::path(get, path = "/api/v1/cockpit/situation", tag = "kpi",
    responses((status = 200, body = Situation), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn situation(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<Situation>> {
    Ok(Json(state.services.situation(&actor).await?))
}

/// The KPI figures: today and this month with 环比/同比, 30-day and 12-month trends beside a year
/// earlier, league tables of workstations, departments, classes and sources.
#[utoipa::path(get, path = "/api/v1/cockpit/figures", tag = "kpi",
    responses((status = 200, body = Figures), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn figures(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<Figures>> {
    Ok(Json(state.services.figures(&actor).await?))
}

/// The smart components now: open alarms per severity and fault, each device kind's health, the
/// alarms to look at first, active alarms on the map and each checkpoint's people flow today.
#[utoipa::path(get, path = "/api/v1/cockpit/sensing", tag = "iot",
    responses((status = 200, body = Sensing), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn sensing(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<Sensing>> {
    Ok(Json(state.services.sensing(&actor).await?))
}
