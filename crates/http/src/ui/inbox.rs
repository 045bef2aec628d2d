//! The person's notifications (warnings, breaches, 督办, unacknowledged alerts): newest first, unread
//! ones marked, each with its case and a button to mark it read or acknowledge a critical one.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use civicgrid_store::PageRequest;
use serde::Deserialize;

use super::i18n::local_time;
use super::{Frame, Session, render, see_other};
use crate::state::AppState;

/// One notification as listed.
#[derive(Debug)]
pub struct Item {
    id: i64,
    title: String,
    body: String,
    at: String,
    case_id: Option<i64>,
    unread: bool,
    critical: bool,
    acked: bool,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    frame: Frame,
    items: Vec<Item>,
    next: Option<i64>,
    unread_only: bool,
}

/// The inbox's address.
#[derive(Debug, Default, Deserialize)]
pub struct InboxQuery {
    unread: Option<bool>,
    before: Option<i64>,
}

/// `GET /inbox`.
pub async fn page(State(state): State<AppState>, s: Session, Query(q): Query<InboxQuery>) -> Response {
    let unread_only = q.unread.unwrap_or(false);
    let page = match state.services.inbox(&s.actor, unread_only, PageRequest { before: q.before, limit: 50 }).await {
        Ok(p) => p,
        Err(e) => return super::refusal(s.lang, e),
    };
    let items = page
        .items
        .into_iter()
        .map(|n| Item {
            id: n.id,
            title: n.title,
            body: n.body,
            at: local_time(n.created_at),
            case_id: n.case_id,
            unread: n.read_at.is_none(),
            critical: n.severity == civicgrid_core::duty::Severity::Critical,
            acked: n.acked_at.is_some(),
        })
        .collect();
    let frame = Frame::new(&state, &s, "/inbox", "inbox.title").await;
    render(StatusCode::OK, &InboxPage { frame, items, next: page.next, unread_only })
}

/// Marking a notification.
#[derive(Debug, Deserialize)]
pub struct MarkForm {
    csrf: String,
    ack: Option<String>,
}

/// `POST /inbox/{id}`: read, or (with `ack`) read and acknowledged.
pub async fn mark(State(state): State<AppState>, s: Session, Path(id): Path<i64>, Form(f): Form<MarkForm>) -> Response {
    if let Some(r) = s.csrf_refusal(&f.csrf) {
        return r;
    }
    match state.services.mark_notification(&s.actor, id, f.ack.is_some()).await {
        Ok(_) => see_other("/inbox"),
        Err(e) => super::refusal(s.lang, e),
    }
}
