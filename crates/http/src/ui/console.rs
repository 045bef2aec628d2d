//! The landing page of a logged-in person: their post's queues (待受理, 待派遣, 处置中, …) as tabs
//! with counts, one queue's cases as a table with warning colours and keyset paging, and filters.
//! The queue refreshes itself (`GET /queue`, htmx) when the live feed reports a change, at most
//! once a second.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use civicgrid_core::access::Role;
use civicgrid_core::case::{Case, CaseState, Source};
use civicgrid_core::codes::{GridCode, MatterCode};
use civicgrid_store::{CaseFilter, PageRequest};
use jiff::Timestamp;
use serde::Deserialize;

use super::i18n::{Lang, local_time, working_span};
use super::{Frame, Session, render, urlencode};
use crate::state::AppState;
use civicgrid_service::World;

use CaseState as S;

/// One queue of a post: the cases in some states, or the overdue or escalated ones among them.
#[derive(Debug, Clone, Copy)]
pub struct Queue {
    /// Its name in the address and the catalogue (`queue.{key}`).
    pub key: &'static str,
    /// The states it lists.
    pub states: &'static [CaseState],
    /// Only cases past their step's deadline.
    pub overdue: bool,
    /// Only cases escalated (督办) at least once.
    pub escalated: bool,
    /// Only the cases this person reported.
    pub mine: bool,
}

const OPEN: &[CaseState] = &CaseState::ACTIVE;

const fn q(key: &'static str, states: &'static [CaseState]) -> Queue {
    Queue { key, states, overdue: false, escalated: false, mine: false }
}

const OVERDUE: Queue = Queue { key: "overdue", states: OPEN, overdue: true, escalated: false, mine: false };
const ESCALATED: Queue = Queue { key: "escalated", states: OPEN, overdue: false, escalated: true, mine: false };
/// Everything this person reported, open or not: a grid worker's own history.
const MINE: Queue = Queue { key: "mine", states: &[], overdue: false, escalated: false, mine: true };

const INTAKE: &[Queue] = &[
    q("new", &[S::Reported]),
    q("checking", &[S::Checking]),
    q("void_requested", &[S::VoidRequested]),
    q("closed", &[S::Closed]),
];
const SHIFT: &[Queue] = &[
    q("to_file", &[S::Accepted]),
    q("to_close", &[S::Verified]),
    q("requests", &[S::ParkRequested, S::VoidRequested]),
    q("parked", &[S::Parked]),
    OVERDUE,
    q("closed", &[S::Closed]),
];
const DISPATCH: &[Queue] = &[
    q("to_dispatch", &[S::Filed]),
    q("returns", &[S::ReturnRequested]),
    q("extensions", &[S::ExtensionRequested]),
    q("unsigned", &[S::Dispatched]),
    OVERDUE,
];
const DEPARTMENT: &[Queue] = &[
    q("to_sign", &[S::Dispatched]),
    q("handling", &[S::Handling]),
    q("requested", &[S::ReturnRequested, S::ExtensionRequested, S::ParkRequested]),
    q("replied", &[S::Replied, S::Verified]),
    OVERDUE,
    q("closed", &[S::Closed]),
];
const GRID: &[Queue] = &[
    q("to_check", &[S::Checking]),
    q("to_verify", &[S::Replied]),
    q("reported", &[S::Reported]),
    MINE,
    q("open", OPEN),
    q("closed", &[S::Closed]),
];
const SUPERVISE: &[Queue] = &[OVERDUE, ESCALATED, q("to_verify", &[S::Replied]), q("open", OPEN)];
const WATCH: &[Queue] = &[OVERDUE, ESCALATED, q("open", OPEN), q("closed", &[S::Closed])];
const OTHERS: &[Queue] = &[q("open", OPEN), q("closed", &[S::Closed])];

/// The queues of each post, the first being its default.
pub fn queues(role: Role) -> &'static [Queue] {
    match role {
        Role::IntakeOperator => INTAKE,
        Role::ShiftLeader => SHIFT,
        Role::Dispatcher => DISPATCH,
        Role::DeptHandler => DEPARTMENT,
        Role::GridWorker => GRID,
        Role::Supervisor => SUPERVISE,
        Role::Commander | Role::Leader | Role::Coordinator | Role::Analyst => WATCH,
        _ => OTHERS,
    }
}

/// Most cases a tab counts (it shows "999+" above).
const COUNT_CAP: u32 = 1000;
/// Cases per page of a queue.
const PAGE: u32 = 30;

/// The console's address: which queue, filters, the page.
#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    q: Option<String>,
    grid: Option<String>,
    source: Option<String>,
    matter: Option<String>,
    before: Option<i64>,
}

/// One tab.
#[derive(Debug)]
pub struct Tab {
    /// The queue's key.
    pub key: &'static str,
    /// Its label.
    pub label: String,
    /// Its count ("999+" above the cap).
    pub count: String,
    /// Whether it is shown.
    pub active: bool,
    /// Where it goes (with the filters kept).
    pub href: String,
}

/// One case in a queue.
#[derive(Debug)]
pub struct Row {
    /// Id.
    pub id: i64,
    /// Number.
    pub number: String,
    /// Matter name.
    pub matter: String,
    /// State label.
    pub state: &'static str,
    /// Grid code.
    pub grid: String,
    /// Address (shortened).
    pub address: String,
    /// When reported.
    pub reported: String,
    /// The current step's deadline.
    pub due: String,
    /// Working time left on that step (negative when past).
    pub left: String,
    /// `red` (past its deadline), `yellow` (warned) or empty.
    pub warn: &'static str,
    /// The colour's meaning, for its tooltip.
    pub warn_label: String,
    /// Escalation level.
    pub escalation: i32,
    /// Urgent.
    pub urgent: bool,
}

/// The tabs, filters and one page of a queue: the part `/queue` refreshes.
#[derive(Debug, Template)]
#[template(path = "queue.html")]
pub struct QueueView {
    t: &'static super::i18n::Catalog,
    tabs: Vec<Tab>,
    rows: Vec<Row>,
    current: &'static str,
    grid: String,
    matter: String,
    sources: Vec<(&'static str, String, bool)>,
    next: Option<String>,
    first: Option<String>,
    refresh: String,
}

#[derive(Template)]
#[template(path = "console.html")]
struct ConsolePage {
    frame: Frame,
    queue: QueueView,
}

/// The warning colour of a case at `now`.
pub fn warn_of(case: &Case, now: Timestamp) -> &'static str {
    if case.is_overdue(now) {
        "red"
    } else if case.status.state.is_open() && case.status.timers.as_ref().is_some_and(|t| t.warn_at <= now) {
        "yellow"
    } else {
        ""
    }
}

/// The working time left on a case's current step, on the clock that step is counted on.
pub fn time_left(world: &World, case: &Case, now: Timestamp, lang: Lang) -> String {
    let Some(due) = case.status.due_at.filter(|_| case.status.state.is_open()) else {
        return String::new();
    };
    let clock = world.clocks.of_step(case.status.state, case.status.lead_dept.as_ref());
    let secs =
        if due >= now { clock.working_seconds_between(now, due) } else { -clock.working_seconds_between(due, now) };
    working_span(secs, lang)
}

fn row(world: &World, case: &Case, now: Timestamp, lang: Lang) -> Row {
    let t = lang.catalog();
    let matter = world.catalog.matter(case.facts.matter).map_or_else(
        || case.facts.matter.to_string(),
        |m| if lang == Lang::Zh { m.name_zh.clone() } else { m.name_en.clone() },
    );
    Row {
        id: case.id,
        number: case.number.clone(),
        matter,
        state: t.state(case.status.state),
        grid: case.facts.grid.to_string(),
        address: case.facts.address.chars().take(24).collect(),
        reported: local_time(case.facts.reported_at),
        due: case.status.due_at.filter(|_| case.status.state.is_open()).map(local_time).unwrap_or_default(),
        left: time_left(world, case, now, lang),
        warn: warn_of(case, now),
        warn_label: match warn_of(case, now) {
            "" => String::new(),
            w => t.get(&format!("warn.{w}")).to_owned(),
        },
        escalation: case.status.escalation_level,
        urgent: case.facts.urgency == civicgrid_core::case::Urgency::Urgent,
    }
}

fn query_string(queue: &str, q: &QueueQuery, before: Option<i64>) -> String {
    let mut s = format!("q={queue}");
    for (k, v) in [("grid", &q.grid), ("source", &q.source), ("matter", &q.matter)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            s.push_str(&format!("&{k}={}", urlencode(v)));
        }
    }
    if let Some(b) = before {
        s.push_str(&format!("&before={b}"));
    }
    s
}

/// Builds the queue view; a malformed filter is an error message for the person.
pub async fn queue_view(state: &AppState, s: &Session, q: &QueueQuery) -> Result<QueueView, Response> {
    let t = s.t();
    let now = state.clock.now();
    let all = queues(s.actor.role);
    let current = q.q.as_deref().and_then(|k| all.iter().find(|x| x.key == k)).unwrap_or(&all[0]);
    let bad = |field: &str| {
        super::message_text(s.lang, StatusCode::BAD_REQUEST, format!("{}: {field}", t.get("error.filter")))
    };
    let parse = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let grid = match parse(&q.grid) {
        Some(g) => Some(g.parse::<GridCode>().map_err(|_| bad("grid"))?),
        None => None,
    };
    let source = match parse(&q.source) {
        Some(v) => Some(super::from_snake::<Source>(&v).ok_or_else(|| bad("source"))?),
        None => None,
    };
    let matter = match parse(&q.matter) {
        Some(m) => Some(m.parse::<MatterCode>().map_err(|_| bad("matter"))?),
        None => None,
    };
    let filter_of = |queue: &Queue| CaseFilter {
        grids: grid.into_iter().collect(),
        matter,
        source,
        states: queue.states.to_vec(),
        overdue_at: queue.overdue.then_some(now),
        escalated: queue.escalated,
        reporter: queue.mine.then_some(s.actor.user_id),
        // The closed queue shows the last week's closures (call-backs, rectifications).
        closed_from: (queue.states == [S::Closed]).then(|| now - jiff::SignedDuration::from_hours(24 * 7)),
        ..CaseFilter::default()
    };
    let mut tabs = Vec::new();
    for queue in all {
        let n = state
            .services
            .count_cases(&s.actor, filter_of(queue), COUNT_CAP)
            .await
            .map_err(|e| super::refusal(s.lang, e))?;
        tabs.push(Tab {
            key: queue.key,
            label: t.get(&format!("queue.{}", queue.key)).to_owned(),
            count: if n >= i64::from(COUNT_CAP) { format!("{}+", COUNT_CAP - 1) } else { n.to_string() },
            active: queue.key == current.key,
            href: format!("/?{}", query_string(queue.key, q, None)),
        });
    }
    let page = state
        .services
        .list_cases(&s.actor, filter_of(current), PageRequest { before: q.before, limit: PAGE })
        .await
        .map_err(|e| super::refusal(s.lang, e))?;
    let world = state.world();
    let rows = page.items.iter().map(|c| row(&world, c, now, s.lang)).collect();
    let sources = Source::ALL
        .into_iter()
        .map(|src| (src.as_str(), t.get(&format!("source.{}", src.as_str())).to_owned(), Some(src) == source))
        .collect();
    Ok(QueueView {
        t,
        tabs,
        rows,
        current: current.key,
        grid: grid.map(|g| g.to_string()).unwrap_or_default(),
        matter: matter.map(|m| m.to_string()).unwrap_or_default(),
        sources,
        next: page.next.map(|n| format!("/?{}", query_string(current.key, q, Some(n)))),
        first: q.before.map(|_| format!("/?{}", query_string(current.key, q, None))),
        refresh: format!("/queue?{}", query_string(current.key, q, q.before)),
    })
}

/// `GET /`: the console of the logged-in post.
pub async fn home(State(state): State<AppState>, s: Session, Query(q): Query<QueueQuery>) -> Response {
    let queue = match queue_view(&state, &s, &q).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let frame = Frame::new(&state, &s, "/", "console.title").await;
    render(StatusCode::OK, &ConsolePage { frame, queue })
}

/// `GET /queue`: the tabs and table alone, for the live refresh.
pub async fn queue(State(state): State<AppState>, s: Session, Query(q): Query<QueueQuery>) -> Response {
    match queue_view(&state, &s, &q).await {
        Ok(v) => render(StatusCode::OK, &v),
        Err(r) => r,
    }
}
