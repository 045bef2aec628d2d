//! The KPI page (`/kpi`): one table of live counters, rates, scores and grades per unit — town,
//! workstation, grid, department, class, source or post — over a chosen period with 环比 and 同比, and
//! the same table as an XLSX workbook (`/api/v1/kpi.xlsx`, which the session cookie opens too).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use civicgrid_core::calendar::local;
use civicgrid_core::kpi::projection::Dim;
use civicgrid_service::kpi::{KpiQuery, KpiRow};
use jiff::ToSpan;
use jiff::civil::Date;
use serde::Deserialize;

use super::{Frame, Session, render};
use crate::state::AppState;

/// The kinds of unit, in the order of the tabs.
const DIMS: [Dim; 7] = [Dim::Town, Dim::Workstation, Dim::Grid, Dim::Department, Dim::Class, Dim::Source, Dim::Person];

/// The page's address.
#[derive(Debug, Default, Deserialize)]
pub struct KpiPageQuery {
    dim: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// A link to another period or unit.
#[derive(Debug)]
pub struct Link {
    href: String,
    label: String,
    active: bool,
}

/// One row as shown.
#[derive(Debug)]
pub struct Line {
    name: String,
    reported: i64,
    dispatched: i64,
    closed: i64,
    on_time_closure: String,
    rework: String,
    satisfaction: String,
    hours: String,
    score: String,
    grade: String,
    mom: String,
    yoy: String,
    total: bool,
}

#[derive(Template)]
#[template(path = "kpi.html")]
struct KpiPage {
    frame: Frame,
    dims: Vec<Link>,
    periods: Vec<Link>,
    dim: &'static str,
    from: String,
    to: String,
    lines: Vec<Line>,
    xlsx: String,
    error: String,
}

fn change(now: i64, before: i64) -> String {
    if before == 0 {
        return "–".into();
    }
    let pct = 100.0 * (now - before) as f64 / before as f64;
    format!("{}{:.1}%", if pct > 0.0 { "+" } else { "" }, pct)
}

fn line(r: &KpiRow, total: bool) -> Line {
    let pct = |v: f64| format!("{v:.1}%");
    Line {
        name: r.name.clone(),
        reported: r.counts.reported,
        dispatched: r.counts.dispatched,
        closed: r.counts.closed,
        on_time_closure: pct(r.rates.on_time_closure),
        rework: pct(r.rates.rework),
        satisfaction: pct(r.rates.satisfaction),
        hours: format!("{:.1}", r.rates.mean_close_hours),
        score: format!("{:.1}", r.rates.score),
        grade: format!("{:?}", r.rates.grade),
        mom: change(r.counts.reported, r.previous.reported),
        yoy: change(r.counts.reported, r.last_year.reported),
        total,
    }
}

/// The named periods offered as links: today, this week, this month, last month, this year.
fn periods(today: Date) -> Vec<(&'static str, Date, Date)> {
    let week = today.checked_sub((i64::from(today.weekday().to_monday_zero_offset())).days()).unwrap_or(today);
    let month = today.first_of_month();
    let last_month = month.checked_sub(1.month()).unwrap_or(month);
    let year = today.first_of_year();
    vec![
        ("kpi.today", today, today),
        ("kpi.week", week, today),
        ("kpi.month", month, today),
        ("kpi.last_month", last_month, last_month.last_of_month()),
        ("kpi.year", year, today),
    ]
}

/// `GET /kpi`.
pub async fn page(State(state): State<AppState>, s: Session, Query(q): Query<KpiPageQuery>) -> Response {
    let t = s.t();
    let today = local(state.clock.now()).date();
    let dim = q.dim.as_deref().and_then(|d| d.parse::<Dim>().ok()).unwrap_or(Dim::Workstation);
    let from = q.from.as_deref().and_then(|d| d.parse::<Date>().ok()).unwrap_or(today.first_of_month());
    let to = q.to.as_deref().and_then(|d| d.parse::<Date>().ok()).unwrap_or(today);
    let query = KpiQuery { dim, from, to };
    let (lines, error) = match state.services.kpi_table(&s.actor, query).await {
        Ok(table) => {
            let mut lines: Vec<Line> = table.rows.iter().map(|r| line(r, false)).collect();
            lines.push(line(&table.total, true));
            (lines, String::new())
        }
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            if e.status == StatusCode::FORBIDDEN {
                return super::message(s.lang, StatusCode::FORBIDDEN, "kpi.forbidden");
            }
            (Vec::new(), e.body.message)
        }
    };
    let href = |d: Dim, a: Date, b: Date| format!("/kpi?dim={}&from={a}&to={b}", d.as_str());
    let dims = DIMS
        .iter()
        .map(|d| Link {
            href: href(*d, from, to),
            label: t.get(&format!("kpi.dim.{}", d.as_str())).to_owned(),
            active: *d == dim,
        })
        .collect();
    let periods = periods(today)
        .into_iter()
        .map(|(key, a, b)| Link { href: href(dim, a, b), label: t.get(key).to_owned(), active: (a, b) == (from, to) })
        .collect();
    let frame = Frame::new(&state, &s, "/kpi", "kpi.title").await;
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    render(
        status,
        &KpiPage {
            frame,
            dims,
            periods,
            dim: dim.as_str(),
            from: from.to_string(),
            to: to.to_string(),
            xlsx: format!("/api/v1/kpi.xlsx?dim={}&from={from}&to={to}", dim.as_str()),
            lines,
            error,
        },
    )
}
