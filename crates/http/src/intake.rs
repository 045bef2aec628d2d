//! Upstream intake endpoints: tickets pushed by the 12345 hotline platform and the 110 police system
//! (one case per ticket number, however often pushed), the 110 diversion catalogue, and where each
//! upstream account takes its replies. Thin: parse, call the service layer, answer.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use civicgrid_core::case::{CaseId, CaseState};
use civicgrid_core::ticket::{DiversionCatalogue, TicketInput};
use civicgrid_service::tickets::ReplyHookInput;
use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Authed;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, IdPath};
use crate::state::AppState;

/// What the upstream system keeps of a pushed ticket.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketReceipt {
    /// The case.
    pub case_id: CaseId,
    /// The case number, to quote on the phone.
    pub number: String,
    /// Its state now.
    pub state: CaseState,
    /// Whether police were told to attend themselves (回退110).
    pub police_return: bool,
    /// When it arrived.
    #[schema(value_type = String, format = DateTime)]
    pub reported_at: Timestamp,
}

/// Push a ticket (12345 or 110 service accounts, with their API key). The ticket number is the
/// idempotency key of the channel: pushing a ticket again, even months later or with other content,
/// answers with the case made the first time (`Idempotent-Replayed: true`) and creates nothing.
/// Replies (dispatched, the department's answer, closed, voided, 回退110) are posted to the account's
/// reply hook, signed, and retried until it answers 2xx.
#[utoipa::path(post, path = "/api/v1/intake/tickets", tag = "intake", request_body = TicketInput,
    responses((status = 201, body = TicketReceipt,
            description = "the ticket's case: new, or made when it was first pushed (`Idempotent-Replayed: true`)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not a 12345 or 110 service account"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "invalid ticket (field named), or a place outside the town"),
        (status = 503, body = ErrorBody, description = "no town set up yet")))]
pub async fn push_ticket(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiJson(input): ApiJson<TicketInput>,
) -> ApiResult<axum::response::Response> {
    let created = state.services.push_ticket(&actor, input).await?;
    let case = created.value;
    let receipt = TicketReceipt {
        case_id: case.id,
        number: case.number,
        state: case.status.state,
        police_return: case.facts.upstream.is_some_and(|u| u.police_return),
        reported_at: case.facts.reported_at,
    };
    Ok(crate::extract::created(receipt, created.replayed))
}

/// The 110 diversion catalogue: the non-police matters police may divert, each with the matter it
/// becomes and whether urgent ones also go back to police (staff, and the 110 system's account).
#[utoipa::path(get, path = "/api/v1/diversions", tag = "intake",
    responses((status = 200, body = DiversionCatalogue), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn diversions(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<DiversionCatalogue>> {
    Ok(Json(state.services.diversion_catalogue(&actor)?))
}

/// Replace the 110 diversion catalogue (administrators).
#[utoipa::path(put, path = "/api/v1/diversions", tag = "intake", request_body = DiversionCatalogue,
    responses((status = 200, body = DiversionCatalogue), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_diversions(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiJson(catalogue): ApiJson<DiversionCatalogue>,
) -> ApiResult<Json<DiversionCatalogue>> {
    Ok(Json(state.services.set_diversion_catalogue(&actor, catalogue).await?))
}

/// Where each upstream account's replies go: service account id → URL (administrators; secrets are
/// never shown).
#[utoipa::path(get, path = "/api/v1/reply-hooks", tag = "intake",
    responses((status = 200, body = BTreeMap<String, String>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn reply_hooks(
    State(state): State<AppState>,
    Authed(actor): Authed,
) -> ApiResult<Json<BTreeMap<i64, String>>> {
    Ok(Json(state.services.reply_hooks(&actor).await?))
}

/// Set where a 12345 or 110 account takes replies, and the secret they are signed with
/// (administrators).
#[utoipa::path(put, path = "/api/v1/service-accounts/{id}/reply-hook", tag = "intake", request_body = ReplyHookInput,
    params(("id" = i64, Path, description = "service account id")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_reply_hook(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
    ApiJson(hook): ApiJson<ReplyHookInput>,
) -> ApiResult<StatusCode> {
    state.services.set_reply_hook(&actor, id, Some(hook)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stop sending replies to a 12345 or 110 account (administrators).
#[utoipa::path(delete, path = "/api/v1/service-accounts/{id}/reply-hook", tag = "intake",
    params(("id" = i64, Path, description = "service account id")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_reply_hook(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
) -> ApiResult<StatusCode> {
    state.services.set_reply_hook(&actor, id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}
