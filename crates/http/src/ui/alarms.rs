//! The smart components' console (物联告警): open alarms, most severe and newest first, with their
//! subject, device, count, state, case and an acknowledge button; and each checkpoint's people in
//! the area against its crowd threshold.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use civicgrid_core::alarm::AlarmSeverity;
use civicgrid_store::AlarmFilter;
use serde::Deserialize;

use super::i18n::local_time;
use super::{Frame, Session, render, see_other};
use crate::state::AppState;

/// One alarm as listed.
#[derive(Debug)]
pub struct Row {
    id: i64,
    severity: &'static str,
    critical: bool,
    fault: &'static str,
    subject: String,
    device: String,
    raised: String,
    last: String,
    count: u32,
    active: bool,
    acked: bool,
    case_id: Option<i64>,
    held: Option<i64>,
}

/// One checkpoint as listed.
#[derive(Debug)]
pub struct Checkpoint {
    name: String,
    occupancy: i64,
    max: u32,
    /// Occupancy as a share of the threshold, 0–100 (for the bar).
    pct: i64,
    crowded: bool,
}

#[derive(Template)]
#[template(path = "alarms.html")]
struct AlarmsPage {
    frame: Frame,
    rows: Vec<Row>,
    checkpoints: Vec<Checkpoint>,
    may_ack: bool,
}

/// `GET /alarms`.
pub async fn page(State(state): State<AppState>, s: Session) -> Response {
    let filter = AlarmFilter { open_only: true, limit: 500, ..Default::default() };
    let (alarms, flows) =
        match (state.services.alarms(&s.actor, filter).await, state.services.people_flow(&s.actor).await) {
            (Ok(a), Ok(f)) => (a, f),
            (Err(e), _) | (_, Err(e)) => return super::refusal(s.lang, e),
        };
    let mut alarms = alarms;
    // Most severe first, active before cleared, newest first within.
    alarms.sort_by_key(|a| std::cmp::Reverse((a.severity, a.active, a.last_raised_at)));
    let rows = alarms
        .into_iter()
        .map(|a| Row {
            id: a.id,
            severity: a.severity.as_str(),
            critical: a.severity == AlarmSeverity::Critical,
            fault: a.fault.as_str(),
            subject: a.subject.to_string(),
            device: a.device.map(|d| d.to_string()).unwrap_or_default(),
            raised: local_time(a.raised_at),
            last: local_time(a.last_raised_at),
            count: a.count,
            active: a.active,
            acked: a.acked_at.is_some(),
            case_id: a.case_id,
            held: a.suppressed_by,
        })
        .collect();
    let checkpoints = flows
        .into_iter()
        .map(|f| Checkpoint {
            pct: (f.occupancy * 100 / i64::from(f.max.max(1))).clamp(0, 100),
            crowded: f.occupancy > i64::from(f.max),
            name: f.checkpoint,
            occupancy: f.occupancy,
            max: f.max,
        })
        .collect();
    let may_ack = s.actor.role != civicgrid_core::access::Role::Analyst;
    let frame = Frame::new(&state, &s, "/alarms", "alarms.title").await;
    render(StatusCode::OK, &AlarmsPage { frame, rows, checkpoints, may_ack })
}

/// Acknowledging an alarm.
#[derive(Debug, Deserialize)]
pub struct AckForm {
    csrf: String,
}

/// `POST /alarms/{id}/ack`.
pub async fn acknowledge(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<i64>,
    Form(f): Form<AckForm>,
) -> Response {
    if let Some(r) = s.csrf_refusal(&f.csrf) {
        return r;
    }
    match state.services.acknowledge_alarm(&s.actor, id).await {
        Ok(_) => see_other("/alarms"),
        Err(e) => super::refusal(s.lang, e),
    }
}
