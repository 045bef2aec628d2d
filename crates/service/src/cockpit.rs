//! What the big screen shows, in two reads of different pace:
//!
//! - [`Services::situation`] — the open cases now: tallies per state, grid and workstation, the points
//!   on the map, the cases most overdue, each department's load and the latest events. Cheap (one read
//!   of the open cases from the state index), so a screen reads it again after every burst of events.
//! - [`Services::figures`] — the KPI counters: today and this month beside their 环比 and 同比, trends
//!   of thirty days and twelve months, and the league tables of workstations, departments, classes and
//!   sources. A screen reads it every half minute.
//!
//! Both say when they were taken and how far into the event log they reach, so the screen can show the
//! age of every figure and a stalled feed is visible. Only the posts that read KPI tables may read them.

use std::collections::BTreeMap;

use civicgrid_core::access::{Actor, Role};
use civicgrid_core::calendar::{from_local, local};
use civicgrid_core::case::{CaseId, CaseState};
use civicgrid_core::codes::{CommunityCode, GridCode};
use civicgrid_core::kpi::projection::{Bucket, Counters, Dim, Rates};
use jiff::civil::Date;
use jiff::{Timestamp, ToSpan};
use serde::Serialize;
use utoipa::ToSchema;

use civicgrid_store::CaseFilter;

use crate::accounts::require;
use crate::kpi::{KPI_CONSUMER, KpiQuery, KpiRow};
use crate::{ServiceError, ServiceResult, Services};

/// The posts that watch the big screen (those who read KPI tables).
pub const WATCHERS: [Role; 7] =
    [Role::Commander, Role::Leader, Role::Analyst, Role::Supervisor, Role::ShiftLeader, Role::Coordinator, Role::Admin];
/// Open cases read at most (a town has a few thousand; past this the tallies say they are partial).
pub const MAX_OPEN: u32 = 50_000;
/// Points drawn at most, newest first.
pub const MAX_POINTS: usize = 10_000;
/// Cases in the "most overdue" list.
const LATE_LIST: usize = 12;
/// Events in the ticker.
const TICKER: i64 = 24;
/// Cases counted at most in one span of a day (a town reports a few thousand a day).
const SPAN_CAP: u32 = 1_000_000;
/// Days in the daily trend.
const TREND_DAYS: i64 = 30;
/// Months in the monthly trend.
const TREND_MONTHS: i64 = 12;

/// Open, overdue and escalated cases of one area.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Load {
    /// The area's (or department's) code.
    pub code: String,
    /// Its name.
    pub name: String,
    /// Open cases.
    pub open: i64,
    /// Open cases past their current step's deadline.
    pub overdue: i64,
    /// Open cases escalated (督办) at least once.
    pub escalated: i64,
}

impl Load {
    fn count(&mut self, overdue: bool, escalated: bool) {
        self.open += 1;
        self.overdue += i64::from(overdue);
        self.escalated += i64::from(escalated);
    }
}

/// One open case on the map.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CasePoint {
    /// The case.
    #[schema(value_type = i64)]
    pub id: CaseId,
    /// Longitude.
    pub lon: f64,
    /// Latitude.
    pub lat: f64,
    /// Its grid.
    #[schema(value_type = String)]
    pub grid: GridCode,
    /// Where it stands.
    pub state: CaseState,
    /// Past its current step's deadline.
    pub overdue: bool,
    /// Escalated at least once.
    pub escalated: bool,
}

/// An overdue case, for the supervisor's list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LateCase {
    /// The case.
    #[schema(value_type = i64)]
    pub id: CaseId,
    /// Its number.
    pub number: String,
    /// Its matter's name.
    pub matter: String,
    /// Its grid's name.
    pub grid: String,
    /// The lead department's name, once dispatched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Where it stands.
    pub state: CaseState,
    /// The deadline it missed.
    #[schema(value_type = String)]
    pub due_at: Timestamp,
    /// 督办 rungs reached.
    pub escalation_level: i64,
}

/// One event in the ticker.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tick {
    /// Global sequence number.
    pub seq: i64,
    /// When.
    #[schema(value_type = String)]
    pub at: Timestamp,
    /// The case.
    #[schema(value_type = i64)]
    pub case_id: CaseId,
    /// Its number.
    pub number: String,
    /// The step's snake_case name.
    pub action: String,
    /// The state it led to.
    pub to: CaseState,
    /// The grid's name.
    pub grid: String,
}

/// The open cases now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Situation {
    /// When this was read.
    #[schema(value_type = String)]
    pub as_of: Timestamp,
    /// The event log's end when it was read: a live feed opened after it misses nothing.
    pub seq: i64,
    /// The town's totals.
    pub town: Load,
    /// Open cases per state (snake_case name).
    pub by_state: BTreeMap<String, i64>,
    /// Open cases about a component (部件).
    pub components: i64,
    /// Every grid, with zeros.
    pub grids: Vec<Load>,
    /// Every workstation, with zeros.
    pub workstations: Vec<Load>,
    /// Departments with open cases they lead, most overdue first.
    pub departments: Vec<Load>,
    /// Open cases on the map, newest first.
    pub points: Vec<CasePoint>,
    /// Whether there were more open cases than were read or drawn.
    pub truncated: bool,
    /// The cases furthest past their deadline.
    pub most_overdue: Vec<LateCase>,
    /// The latest events, newest first.
    pub ticker: Vec<Tick>,
}

/// A day or month of a trend, beside the same period a year earlier.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrendPoint {
    /// `YYYY-MM-DD` or `YYYY-MM`.
    pub period: String,
    /// Reported.
    pub reported: i64,
    /// Closed.
    pub closed: i64,
    /// Closed on time.
    pub closed_on_time: i64,
    /// Called back.
    pub rated: i64,
    /// Called back and satisfied.
    pub satisfied: i64,
    /// Reported in the same period a year earlier.
    pub reported_last_year: i64,
    /// Closed in the same period a year earlier.
    pub closed_last_year: i64,
}

/// Cases reported and closed in a span of a day, from local midnight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct SpanCounts {
    /// Reported in the span.
    pub reported: i64,
    /// Closed in the span.
    pub closed: i64,
}

/// Today so far beside the same hours of yesterday and of the same date a year earlier, so that the
/// day's 环比 and 同比 compare 09:30 with 09:30 rather than with a whole day (which would show every
/// morning as a fall). Counted from the cases' own times, so the three are alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct DaySpans {
    /// Today from midnight to now.
    pub today: SpanCounts,
    /// Yesterday from midnight to the same time of day.
    pub yesterday: SpanCounts,
    /// The same date a year earlier, from midnight to the same time of day.
    pub last_year: SpanCounts,
}

/// The KPI figures of the big screen.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Figures {
    /// When this was read.
    #[schema(value_type = String)]
    pub as_of: Timestamp,
    /// How far into the event log the KPI counters have counted.
    pub counted_to: i64,
    /// The event log's end: `seq - counted_to` events are not counted yet.
    pub seq: i64,
    /// Today, local date.
    #[schema(value_type = String)]
    pub today: Date,
    /// The town today, beside yesterday (环比) and the same day a year earlier (同比).
    pub day: KpiRow,
    /// Today's counts so far beside the same hours of yesterday and a year earlier: the base of the
    /// day's count changes (`day` compares with whole days).
    pub day_spans: DaySpans,
    /// The town this month so far, beside the span just before and a year earlier.
    pub month: KpiRow,
    /// The rates of today's span before (yesterday) and a year earlier.
    pub day_before: Rates,
    /// The same, a year earlier.
    pub day_last_year: Rates,
    /// The rates of this month's span before it.
    pub month_before: Rates,
    /// The same, a year earlier.
    pub month_last_year: Rates,
    /// The last thirty days.
    pub days: Vec<TrendPoint>,
    /// The last twelve months, this one included.
    pub months: Vec<TrendPoint>,
    /// Workstations this month, best score first.
    pub workstations: Vec<KpiRow>,
    /// Departments this month, best score first.
    pub departments: Vec<KpiRow>,
    /// Classes of matter this month, most reported first.
    pub classes: Vec<KpiRow>,
    /// Sources this month, most reported first.
    pub sources: Vec<KpiRow>,
}

impl Services {
    /// The open cases now, as the big screen draws them.
    pub async fn situation(&self, actor: &Actor) -> ServiceResult<Situation> {
        require(actor, &WATCHERS)?;
        let world = self.world();
        let now = self.clock.now();
        // The log's end first: whatever commits after it reaches the screen through the feed.
        let seq = self.store.last_seq().await?;
        let open = self.store.open_cases(MAX_OPEN).await?;
        let grids = self.store.grids().await?;
        let workstations = self.store.workstations().await?;
        let grid_names: BTreeMap<GridCode, (&str, CommunityCode)> =
            grids.iter().map(|g| (g.code, (g.name_zh.as_str(), g.community))).collect();

        let mut town =
            Load { code: world.town.as_ref().map(|t| t.code.to_string()).unwrap_or_default(), ..Load::default() };
        town.name = world.town.as_ref().map(|t| t.name_zh.clone()).unwrap_or_default();
        let mut by_grid: BTreeMap<GridCode, Load> = grids
            .iter()
            .map(|g| (g.code, Load { code: g.code.to_string(), name: g.name_zh.clone(), ..Load::default() }))
            .collect();
        let mut by_ws: BTreeMap<CommunityCode, Load> = workstations
            .iter()
            .map(|w| (w.code, Load { code: w.code.to_string(), name: w.name_zh.clone(), ..Load::default() }))
            .collect();
        let mut by_dept: BTreeMap<String, Load> = BTreeMap::new();
        let mut by_state: BTreeMap<String, i64> = BTreeMap::new();
        let (mut components, mut points, mut late) = (0, Vec::new(), Vec::new());
        for c in &open {
            let overdue = c.due_at.is_some_and(|d| d < now);
            let escalated = c.escalation_level > 0;
            town.count(overdue, escalated);
            *by_state.entry(c.state.as_str().to_owned()).or_default() += 1;
            components += i64::from(c.component);
            if let Some(g) = by_grid.get_mut(&c.grid) {
                g.count(overdue, escalated);
            }
            if let Some(ws) = grid_names.get(&c.grid).and_then(|(_, ws)| by_ws.get_mut(ws)) {
                ws.count(overdue, escalated);
            }
            if let Some(d) = &c.lead_dept {
                by_dept
                    .entry(d.to_string())
                    .or_insert_with(|| Load { code: d.to_string(), name: world.department_name(d), ..Load::default() })
                    .count(overdue, escalated);
            }
            if let (Some(lon), Some(lat)) = (c.lon, c.lat)
                && points.len() < MAX_POINTS
            {
                points.push(CasePoint { id: c.id, lon, lat, grid: c.grid, state: c.state, overdue, escalated });
            }
            if overdue {
                late.push(c);
            }
        }
        late.sort_by_key(|c| c.due_at);
        let most_overdue = late
            .into_iter()
            .take(LATE_LIST)
            .map(|c| LateCase {
                id: c.id,
                number: c.number.clone(),
                matter: world.catalog.matter(c.matter).map_or_else(|| c.matter.to_string(), |m| m.name_zh.clone()),
                grid: grid_names.get(&c.grid).map_or_else(|| c.grid.to_string(), |(n, _)| (*n).to_owned()),
                department: c.lead_dept.as_ref().map(|d| world.department_name(d)),
                state: c.state,
                due_at: c.due_at.unwrap_or(now),
                escalation_level: c.escalation_level,
            })
            .collect();
        let mut departments: Vec<Load> = by_dept.into_values().collect();
        departments.sort_by(|a, b| b.overdue.cmp(&a.overdue).then(b.open.cmp(&a.open)));

        let ticker = self
            .store
            .events_after((seq - TICKER).max(0), TICKER as u32)
            .await?
            .into_iter()
            .rev()
            .filter(|e| actor.can_see_key(e.scope_key()))
            .map(|e| Tick {
                seq: e.seq,
                at: e.event.at,
                case_id: e.case_id,
                number: e.number.clone(),
                action: e.event.action.name().to_owned(),
                to: e.event.to,
                grid: grid_names.get(&e.grid).map_or_else(|| e.grid.to_string(), |(n, _)| (*n).to_owned()),
            })
            .collect();
        Ok(Situation {
            as_of: now,
            seq,
            truncated: open.len() >= MAX_OPEN as usize || points.len() < town.open as usize,
            town,
            by_state,
            components,
            grids: by_grid.into_values().collect(),
            workstations: by_ws.into_values().collect(),
            departments,
            points,
            most_overdue,
            ticker,
        })
    }

    /// The KPI figures of the big screen, counted up to the KPI reader's position.
    pub async fn figures(&self, actor: &Actor) -> ServiceResult<Figures> {
        require(actor, &WATCHERS)?;
        let now = self.clock.now();
        let today = local(now).date();
        let seq = self.store.last_seq().await?;
        let counted_to = self.store.consumer_position(KPI_CONSUMER).await?.unwrap_or(0);
        let town_row = |t: crate::kpi::KpiTable| t.total;
        let day = town_row(self.kpi_table(actor, KpiQuery { dim: Dim::Town, from: today, to: today }).await?);
        let month_start = today.first_of_month();
        let month = KpiQuery { dim: Dim::Town, from: month_start, to: today };
        let month_row = town_row(self.kpi_table(actor, month).await?);
        let table = |dim| KpiQuery { dim, ..month };
        let by_score = |mut rows: Vec<KpiRow>| {
            rows.sort_by(|a, b| b.rates.score.total_cmp(&a.rates.score).then_with(|| a.key.cmp(&b.key)));
            rows
        };
        let by_volume = |mut rows: Vec<KpiRow>| {
            rows.sort_by(|a, b| b.counts.reported.cmp(&a.counts.reported).then_with(|| a.key.cmp(&b.key)));
            rows
        };
        let workstations = by_score(self.kpi_table(actor, table(Dim::Workstation)).await?.rows);
        let departments = by_score(self.kpi_table(actor, table(Dim::Department)).await?.rows);
        let classes = by_volume(self.kpi_table(actor, table(Dim::Class)).await?.rows);
        let sources = by_volume(self.kpi_table(actor, table(Dim::Source)).await?.rows);

        let days: Vec<Date> = (0..TREND_DAYS).rev().filter_map(|i| today.checked_sub(i.days()).ok()).collect();
        let months: Vec<Date> =
            (0..TREND_MONTHS).rev().filter_map(|i| month_start.checked_sub(i.months()).ok()).collect();
        let day_key = |d: Date| d.strftime("%Y-%m-%d").to_string();
        let month_key = |d: Date| d.strftime("%Y-%m").to_string();
        let days = self.trend(Bucket::Day, &days, day_key).await?;
        let months = self.trend(Bucket::Month, &months, month_key).await?;
        let day_spans = self.day_spans(now).await?;
        Ok(Figures {
            as_of: now,
            counted_to,
            seq,
            today,
            day_before: day.previous.rates(),
            day_last_year: day.last_year.rates(),
            month_before: month_row.previous.rates(),
            month_last_year: month_row.last_year.rates(),
            day,
            day_spans,
            month: month_row,
            days,
            months,
            workstations,
            departments,
            classes,
            sources,
        })
    }

    /// Today so far, and the same hours of yesterday and of the same date a year earlier.
    async fn day_spans(&self, now: Timestamp) -> ServiceResult<DaySpans> {
        let here = local(now);
        let hours = here.time();
        let internal = |e: jiff::Error| ServiceError::Internal(e.to_string());
        let span = |date: Date| async move {
            let (from, to) = (from_local(date.at(0, 0, 0, 0)), from_local(date.to_datetime(hours)));
            let reported = CaseFilter { reported_from: Some(from), reported_to: Some(to), ..CaseFilter::default() };
            let closed = CaseFilter { closed_from: Some(from), closed_to: Some(to), ..CaseFilter::default() };
            Ok::<_, ServiceError>(SpanCounts {
                reported: self.store.count_matching(&reported, SPAN_CAP).await?,
                closed: self.store.count_matching(&closed, SPAN_CAP).await?,
            })
        };
        let today = here.date();
        Ok(DaySpans {
            today: span(today).await?,
            yesterday: span(today.yesterday().map_err(internal)?).await?,
            last_year: span(today.checked_sub(1.year()).map_err(internal)?).await?,
        })
    }

    /// The town's counters for each of `periods` (ascending), beside a year earlier.
    async fn trend(
        &self,
        bucket: Bucket,
        periods: &[Date],
        key: impl Fn(Date) -> String,
    ) -> ServiceResult<Vec<TrendPoint>> {
        let (Some(first), Some(last)) = (periods.first(), periods.last()) else {
            return Ok(Vec::new());
        };
        let town = self.world().town.as_ref().map(|t| t.code.to_string()).unwrap_or_default();
        let year_ago = |d: &Date| d.checked_sub(1.year()).map_err(|e| ServiceError::Internal(e.to_string()));
        let read = |a: String, b: String| {
            let town = town.clone();
            async move {
                Ok::<_, ServiceError>(
                    self.store
                        .kpi_series(Dim::Town, bucket, &town, &a, &b)
                        .await?
                        .into_iter()
                        .collect::<BTreeMap<String, Counters>>(),
                )
            }
        };
        let now = read(key(*first), key(*last)).await?;
        let before = read(key(year_ago(first)?), key(year_ago(last)?)).await?;
        periods
            .iter()
            .map(|d| {
                let c = now.get(&key(*d)).copied().unwrap_or_default();
                let y = before.get(&key(year_ago(d)?)).copied().unwrap_or_default();
                Ok(TrendPoint {
                    period: key(*d),
                    reported: c.reported,
                    closed: c.closed,
                    closed_on_time: c.closed_on_time,
                    rated: c.rated,
                    satisfied: c.satisfied,
                    reported_last_year: y.reported,
                    closed_last_year: y.closed,
                })
            })
            .collect()
    }
}
