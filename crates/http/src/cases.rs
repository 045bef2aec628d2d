//! Case endpoints: report, read, list with filters, transition, history. Handlers are thin: they
//! gather what the core's rules need, call [`civicgrid_core::case::decide`] or
//! [`civicgrid_core::intake::check_report`], and hand the result to the store.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use civicgrid_core::access::{Actor, mask_phone};
use civicgrid_core::case::{Case, CaseEvent, CaseState, CaseStatus, Command, Context, EventActor, Source, decide};
use civicgrid_core::codes::{GridCode, MatterCode};
use civicgrid_core::intake::{ReportInput, check_report};
use civicgrid_core::org::DeptCode;
use civicgrid_store::{CaseFilter, NewCase, Page, PageRequest};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authed;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

/// A case as returned by the API: personal data masked for roles that do not need it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseView {
    /// The case.
    #[serde(flatten)]
    pub case: Case,
    /// State label in Chinese.
    pub state_zh: &'static str,
    /// Whether the current step is past its deadline now.
    pub overdue: bool,
}

fn view(mut case: Case, actor: &Actor, now: Timestamp) -> CaseView {
    if !actor.role.sees_personal_data() {
        case.facts.reporter.phone = case.facts.reporter.phone.as_deref().map(mask_phone);
    }
    let overdue = case.is_overdue(now);
    CaseView { state_zh: case.status.state.label_zh(), overdue, case }
}

fn event_actor(actor: &Actor) -> EventActor {
    EventActor { user_id: actor.user_id, role: actor.role }
}

/// Loads a case the actor may see; cases out of scope are reported as missing.
async fn visible_case(state: &AppState, actor: &Actor, id: i64) -> ApiResult<Case> {
    match state.store.case(id).await? {
        Some(c) if actor.can_see(&c) => Ok(c),
        _ => Err(ApiError::not_found("case")),
    }
}

/// Report a new case.
#[utoipa::path(post, path = "/api/v1/cases", tag = "cases", request_body = ReportInput,
    responses((status = 201, body = CaseView), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_case(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiJson(input): ApiJson<ReportInput>,
) -> ApiResult<(StatusCode, Json<CaseView>)> {
    let world = state.world();
    let town = world.town.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_town",
            "no town is set up yet; run `civicgrid demo` or import one",
        )
    })?;
    let component = match input.component_id {
        Some(id) => state.store.component(id).await?,
        None => None,
    };
    let now = state.clock.now();
    let facts = check_report(input, &actor, &world.catalog, &world.index, component.as_ref(), now)?;
    let ctx = Context { now, calendar: &world.calendar, sla: &world.sla };
    let (status, event) = CaseStatus::report(&facts, event_actor(&actor), &ctx);
    let case = state.store.create_case(NewCase { town: town.code, facts, status, event }).await?;
    Ok((StatusCode::CREATED, Json(view(case, &actor, now))))
}

/// Read one case.
#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "cases", params(("id" = i64, Path, description = "case id")),
    responses((status = 200, body = CaseView), (status = 404, body = ErrorBody)))]
pub async fn get_case(
    State(state): State<AppState>,
    Authed(actor): Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<CaseView>> {
    let case = visible_case(&state, &actor, id).await?;
    Ok(Json(view(case, &actor, state.clock.now())))
}

/// A case's history, oldest first.
#[utoipa::path(get, path = "/api/v1/cases/{id}/events", tag = "cases", params(("id" = i64, Path, description = "case id")),
    responses((status = 200, body = [CaseEvent]), (status = 404, body = ErrorBody)))]
pub async fn case_events(
    State(state): State<AppState>,
    Authed(actor): Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Vec<CaseEvent>>> {
    visible_case(&state, &actor, id).await?;
    Ok(Json(state.store.case_events(id).await?))
}

/// A requested change to a case.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TransitionRequest {
    /// The change, its reason and evidence.
    #[serde(flatten)]
    pub command: Command,
    /// The version the client saw; a mismatch is a 409 instead of acting on a changed case.
    #[serde(default)]
    pub expected_version: Option<i64>,
}

/// Change a case: accept, file, dispatch, sign, reply, verify, close, … (see `Action`).
#[utoipa::path(post, path = "/api/v1/cases/{id}/transitions", tag = "cases", params(("id" = i64, Path, description = "case id")),
    request_body = TransitionRequest,
    responses((status = 200, body = CaseView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn transition(
    State(state): State<AppState>,
    Authed(actor): Authed,
    Path(id): Path<i64>,
    ApiJson(req): ApiJson<TransitionRequest>,
) -> ApiResult<Json<CaseView>> {
    let case = visible_case(&state, &actor, id).await?;
    let action = &req.command.action;
    if !actor.can_act(&case, action) {
        return Err(ApiError::forbidden(format!("{} may not {} this case", actor.role.label_zh(), action.name())));
    }
    if let Some(v) = req.expected_version.filter(|v| *v != case.status.version) {
        return Err(civicgrid_store::StoreError::Conflict { expected: v }.into());
    }
    if let civicgrid_core::case::Action::Dispatch { lead, co } | civicgrid_core::case::Action::Reassign { lead, co } =
        action
    {
        for d in std::iter::once(lead).chain(co) {
            if !state.world().departments.contains_key(d) {
                return Err(ApiError::invalid("lead", format!("department {d} does not exist")));
            }
        }
    }
    let now = state.clock.now();
    let world = state.world();
    let ctx = Context { now, calendar: &world.calendar, sla: &world.sla };
    let event = decide(&case.facts, &case.status, &req.command, event_actor(&actor), &ctx)?;
    let mut status = case.status.clone();
    status.apply(&event).map_err(ApiError::internal)?;
    let updated = state.store.append_event(id, event, status).await?;
    Ok(Json(view(updated, &actor, now)))
}

/// Case list filters. Lists are comma-separated.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CaseQuery {
    /// Grid codes, comma-separated.
    pub grid: Option<String>,
    /// Matter code.
    pub matter: Option<String>,
    /// States, comma-separated (e.g. `handling,replied`).
    pub state: Option<String>,
    /// Department (lead or co).
    pub department: Option<String>,
    /// Source channel.
    pub source: Option<Source>,
    /// Reported at or after (RFC 3339).
    pub from: Option<String>,
    /// Reported before (RFC 3339).
    pub to: Option<String>,
    /// Only cases whose current step is overdue.
    pub overdue: Option<bool>,
    /// Keyset cursor: the `next` of the previous page.
    pub before: Option<i64>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<u32>,
}

fn parse_list<T: std::str::FromStr>(field: &str, s: &Option<String>) -> ApiResult<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    s.iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|v| v.parse().map_err(|e: T::Err| ApiError::invalid(field, e.to_string())))
        .collect()
}

fn parse_time(field: &str, s: &Option<String>) -> ApiResult<Option<Timestamp>> {
    s.as_deref().map(|v| v.parse().map_err(|e: jiff::Error| ApiError::invalid(field, e.to_string()))).transpose()
}

/// List cases the caller may see, newest first, with keyset pagination.
#[utoipa::path(get, path = "/api/v1/cases", tag = "cases", params(CaseQuery),
    responses((status = 200, body = Page<CaseView>), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_cases(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiQuery(q): ApiQuery<CaseQuery>,
) -> ApiResult<Json<Page<CaseView>>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be between 1 and 500"));
    }
    let now = state.clock.now();
    let matter: Vec<MatterCode> = parse_list("matter", &q.matter)?;
    let department: Vec<DeptCode> = parse_list("department", &q.department)?;
    let filter = CaseFilter {
        grids: parse_list::<GridCode>("grid", &q.grid)?,
        matter: matter.first().copied(),
        states: parse_list::<CaseState>("state", &q.state)?,
        department: department.first().cloned(),
        source: q.source,
        reported_from: parse_time("from", &q.from)?,
        reported_to: parse_time("to", &q.to)?,
        overdue_at: q.overdue.unwrap_or(false).then_some(now),
        scope: Some(actor.case_scope()),
    };
    let page = state.store.list_cases(&filter, PageRequest { before: q.before, limit }).await?;
    Ok(Json(Page { items: page.items.into_iter().map(|c| view(c, &actor, now)).collect(), next: page.next }))
}
