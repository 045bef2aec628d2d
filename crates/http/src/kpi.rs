//! KPI endpoints: a table of live counters, rates, scores and grades per unit over a period, with 环比
//! and 同比, as JSON or as an XLSX workbook. Thin: parse, call the service layer, answer.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use civicgrid_core::kpi::projection::Dim;
use civicgrid_service::kpi::{KpiQuery, KpiTable};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Authed;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The unit and period of a KPI table.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KpiParams {
    /// One row per: town, workstation, grid, department, class or source.
    pub dim: String,
    /// First day, YYYY-MM-DD (local).
    pub from: String,
    /// Last day, inclusive; at most 400 days after `from`.
    pub to: String,
}

fn query(p: &KpiParams) -> ApiResult<KpiQuery> {
    let dim: Dim = p.dim.parse().map_err(|e: String| ApiError::invalid("dim", e))?;
    let date = |field: &str, s: &str| s.parse().map_err(|e: jiff::Error| ApiError::invalid(field, e.to_string()));
    Ok(KpiQuery { dim, from: date("from", &p.from)?, to: date("to", &p.to)? })
}

/// The KPI table of a kind of unit over a period (counted live from the event log).
#[utoipa::path(get, path = "/api/v1/kpi", tag = "kpi", params(KpiParams),
    responses((status = 200, body = KpiTable), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn table(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiQuery(p): ApiQuery<KpiParams>,
) -> ApiResult<Json<KpiTable>> {
    Ok(Json(state.services.kpi_table(&actor, query(&p)?).await?))
}

/// The same table as an XLSX workbook with Chinese headers.
#[utoipa::path(get, path = "/api/v1/kpi.xlsx", tag = "kpi", params(KpiParams),
    responses((status = 200, description = "the workbook", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn xlsx(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiQuery(p): ApiQuery<KpiParams>,
) -> ApiResult<Response> {
    let q = query(&p)?;
    let bytes = state.services.kpi_xlsx(&actor, q).await?;
    let name = format!("kpi-{}-{}-{}.xlsx", q.dim.as_str(), q.from, q.to);
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response())
}
