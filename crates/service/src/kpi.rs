//! Live KPIs (考核): the counters every committed event adds to (`core::kpi::projection`), kept up to
//! date by a reader of the global event log, rebuilt from every history on demand, and read as tables
//! per unit with rates, scores, grades, 环比 and 同比, as JSON or as an XLSX workbook. A table of
//! people (`dim=person`) lists the patrol workers, shift leaders and dispatchers with their post scores.
//!
//! The reader ([`Services::project_kpis`], run by [`crate::readers`] on every turn of the job runner)
//! replays the cases of each batch of log entries up to each event (the rule needs the status before
//! it), and adds a window of batches' counters and moves its position in one transaction, only if no
//! other node moved it first, so every event is counted once however many nodes read. The rebuild
//! ([`Services::rebuild_kpis`]) counts every history up to a log position and replaces the counters
//! and the reader's position together, so the live reader carries on exactly where it stopped.

use std::collections::{BTreeMap, BTreeSet};

use civicgrid_core::access::{Actor, Role};
use civicgrid_core::case::{CaseEvent, CaseId, ReplayError, Source};
use civicgrid_core::kpi::projection::{Bucket, Counters, Dim, Post, Projection, Rates};
use civicgrid_store::CaseLogEntry;
use jiff::ToSpan;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::require;
use crate::{ServiceError, ServiceResult, Services};

/// The log reader that keeps the KPI counters.
pub const KPI_CONSUMER: &str = "kpi";
/// Log entries one write of the counters covers at most (ten reads).
pub(crate) const KPI_WINDOW: usize = 5_000;
/// Cases read per page by the rebuild.
const REBUILD_PAGE: u32 = 2000;
/// Longest period of one table, in days (a year and a bit).
const MAX_DAYS: i32 = 400;

/// Posts that read the KPI tables.
const READERS: [Role; 7] =
    [Role::Commander, Role::Leader, Role::Analyst, Role::Supervisor, Role::ShiftLeader, Role::Coordinator, Role::Admin];

/// What a KPI table is asked for: a kind of unit and a span of local dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KpiQuery {
    /// The kind of unit, one row each.
    pub dim: Dim,
    /// First day.
    #[schema(value_type = String, format = Date)]
    pub from: Date,
    /// Last day (inclusive).
    #[schema(value_type = String, format = Date)]
    pub to: Date,
}

/// One unit's figures over the period, beside the period before (环比) and the same dates a year
/// earlier (同比).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KpiRow {
    /// The unit's code.
    pub key: String,
    /// Its name.
    pub name: String,
    /// The counts.
    pub counts: Counters,
    /// Rates, score and grade.
    pub rates: Rates,
    /// The counts of the period of equal length just before (环比).
    pub previous: Counters,
    /// The counts of the same dates a year earlier (同比).
    pub last_year: Counters,
}

/// A KPI table.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KpiTable {
    /// What was asked.
    pub query: KpiQuery,
    /// The period before, for 环比.
    #[schema(value_type = [String; 2])]
    pub previous: (Date, Date),
    /// The period a year earlier, for 同比.
    #[schema(value_type = [String; 2])]
    pub last_year: (Date, Date),
    /// One row per unit with any count, by code.
    pub rows: Vec<KpiRow>,
    /// Every unit together.
    pub total: KpiRow,
}

impl Services {
    /// Where the KPI reader stands in the event log; `None` on its first run on a database, which
    /// rebuilds the counters from every history instead (and leaves the reader at the end of the log).
    pub(crate) async fn kpi_reader_position(&self) -> ServiceResult<Option<i64>> {
        if let Some(position) = self.store.consumer_position(KPI_CONSUMER).await? {
            return Ok(Some(position));
        }
        self.rebuild_kpis(&|_, _| {}).await?;
        Ok(None)
    }

    /// Adds what a read of the log (`entries`, all after what `projection` holds, in log order)
    /// contributes. Each event counts with the case's status before it: a case reported within the
    /// read is replayed from the read's own events (only its facts are fetched); any other case's
    /// history is read from the store.
    pub(crate) async fn count_entries(
        &self,
        projection: &mut Projection,
        entries: &[&CaseLogEntry],
    ) -> ServiceResult<()> {
        // The events of each case in this read, in version order (the log's order within a case).
        let mut batch: BTreeMap<CaseId, Vec<&CaseEvent>> = BTreeMap::new();
        for e in entries {
            batch.entry(e.case_id).or_default().push(&e.event);
        }
        let (mut fresh, mut known) = (Vec::new(), Vec::new());
        for (id, events) in &batch {
            if events[0].seq == 1 { fresh.push(*id) } else { known.push(*id) }
        }
        let internal = |id: CaseId, e: ReplayError| ServiceError::Internal(format!("case {id}: {e}"));
        let facts = self.store.facts_of(&fresh).await?;
        if facts.len() != fresh.len() {
            return Err(ServiceError::NotFound("case"));
        }
        for (id, facts) in &facts {
            projection.add_events(facts, batch[id].iter().copied(), |_| true).map_err(|e| internal(*id, e))?;
        }
        let histories = self.store.histories_of(&known).await?;
        if histories.len() != known.len() {
            return Err(ServiceError::NotFound("case"));
        }
        for (id, facts, events) in &histories {
            let versions: BTreeSet<i64> = batch[id].iter().map(|e| e.seq).collect();
            projection
                .add_events(&facts.into(), events, |e| versions.contains(&e.seq))
                .map_err(|e| internal(*id, e))?;
        }
        Ok(())
    }

    /// Recounts every KPI from the case histories up to the end of the event log as it is now, and
    /// replaces the counters and the reader's position together; how many cases it read. `progress`
    /// hears (cases read, cases in all).
    pub async fn rebuild_kpis(&self, progress: &(dyn Fn(u64, u64) + Sync)) -> ServiceResult<u64> {
        let upto = self.store.last_seq().await?;
        let versions: BTreeMap<CaseId, i64> = self.store.logged_versions(upto).await?.into_iter().collect();
        let total = self.store.count_cases().await?.max(0) as u64;
        let mut projection = Projection::new();
        let (mut after, mut read) = (0, 0u64);
        loop {
            let page = self.store.case_histories(after, REBUILD_PAGE).await?;
            let Some((last, _, _)) = page.last() else { break };
            after = *last;
            for (id, facts, events) in &page {
                let counted = versions.get(id).copied().unwrap_or(0).clamp(0, events.len() as i64) as usize;
                if counted > 0 {
                    projection
                        .add_history(&facts.into(), &events[..counted])
                        .map_err(|e| ServiceError::Internal(e.to_string()))?;
                }
            }
            read += page.len() as u64;
            progress(read, total);
        }
        self.store.kpi_replace(KPI_CONSUMER, upto, &projection.into_rows()).await?;
        tracing::info!(cases = read, position = upto, "KPI counters rebuilt");
        Ok(read)
    }

    /// The KPI table of `query.dim`'s units over `from..=to`, with 环比 and 同比.
    pub async fn kpi_table(&self, actor: &Actor, query: KpiQuery) -> ServiceResult<KpiTable> {
        require(actor, &READERS)?;
        let days = (query.to - query.from).get_days();
        if !(0..MAX_DAYS).contains(&days) {
            return Err(ServiceError::invalid(
                "to",
                format!("a period of 1 to {MAX_DAYS} days, ending on or after `from`"),
            ));
        }
        let previous = (query.from - (days + 1).days(), query.from - 1.day());
        let last_year = (query.from - 1.year(), query.to - 1.year());
        let now = self.totals(query.dim, query.from, query.to).await?;
        let before = self.totals(query.dim, previous.0, previous.1).await?;
        let year_ago = self.totals(query.dim, last_year.0, last_year.1).await?;
        let names = self.unit_names(query.dim).await?;
        let row = |key: &str, counts: Counters, previous: Counters, last_year: Counters| KpiRow {
            key: key.to_owned(),
            name: names.get(key).cloned().unwrap_or_else(|| key.to_owned()),
            rates: counts.rates(),
            counts,
            previous,
            last_year,
        };
        let get = |m: &BTreeMap<String, Counters>, k: &str| m.get(k).copied().unwrap_or_default();
        let rows: Vec<KpiRow> = now.iter().map(|(k, c)| row(k, *c, get(&before, k), get(&year_ago, k))).collect();
        let sum = |m: &BTreeMap<String, Counters>| {
            m.values().fold(Counters::default(), |mut acc, c| {
                acc.add(c);
                acc
            })
        };
        let mut total = row("", sum(&now), sum(&before), sum(&year_ago));
        total.name = "合计".into();
        let mut table = KpiTable { query, previous, last_year, rows, total };
        if query.dim == Dim::Person {
            self.score_posts(&mut table).await?;
        }
        Ok(table)
    }

    /// Turns a table of people into a table of posts: one row for every active patrol worker, shift
    /// leader and dispatcher (idle ones too: an idle worker is news), named with the post, scored by
    /// the post's formula. A patrol worker's 漏报 count is the public reports filed in their grids.
    async fn score_posts(&self, table: &mut KpiTable) -> ServiceResult<()> {
        let users = self.store.users().await?;
        let people: Vec<_> = users
            .into_iter()
            .filter(|u| u.disabled_at.is_none())
            .filter_map(|u| post_of(u.role).map(|post| (u, post)))
            .collect();
        let (from, to) = (table.query.from, table.query.to);
        let periods = [(from, to), table.previous, table.last_year];
        let mut missed_by_grid = Vec::new();
        for (a, b) in periods {
            let grids = self.totals(Dim::Grid, a, b).await?;
            missed_by_grid.push(grids.into_iter().map(|(k, c)| (k, c.missed)).collect::<BTreeMap<_, _>>());
        }
        let mut found: BTreeMap<String, KpiRow> =
            std::mem::take(&mut table.rows).into_iter().map(|r| (r.key.clone(), r)).collect();
        let mut rows = Vec::with_capacity(people.len());
        for (user, post) in &people {
            let key = user.id.to_string();
            let mut row = found.remove(&key).unwrap_or_else(|| KpiRow {
                key: key.clone(),
                name: String::new(),
                counts: Counters::default(),
                rates: Counters::default().rates(),
                previous: Counters::default(),
                last_year: Counters::default(),
            });
            let post_zh = user.role.label_zh();
            row.name = if user.display_name.contains(post_zh) {
                user.display_name.clone()
            } else {
                format!("{}（{post_zh}）", user.display_name)
            };
            if *post == Post::Patrol {
                let missed =
                    |m: &BTreeMap<String, i64>| user.grids.iter().filter_map(|g| m.get(&g.to_string())).sum::<i64>();
                row.counts.missed = missed(&missed_by_grid[0]);
                row.previous.missed = missed(&missed_by_grid[1]);
                row.last_year.missed = missed(&missed_by_grid[2]);
            }
            row.rates = row.counts.rates();
            rows.push((row, *post));
        }
        // The dispatcher's workload score: dispatches against the mean of the dispatchers who dispatched.
        let loads: Vec<i64> = rows
            .iter()
            .filter(|(r, p)| *p == Post::Dispatcher && r.counts.dispatched > 0)
            .map(|(r, _)| r.counts.dispatched)
            .collect();
        let mean = if loads.is_empty() { 0.0 } else { loads.iter().sum::<i64>() as f64 / loads.len() as f64 };
        for (row, post) in &mut rows {
            let workload = if mean == 0.0 { 100.0 } else { (100.0 * row.counts.dispatched as f64 / mean).min(100.0) };
            (row.rates.score, row.rates.grade) = row.rates.post_score(*post, workload);
        }
        table.rows = rows.into_iter().map(|(r, _)| r).collect();
        Ok(())
    }

    /// The counters of each unit over `from..=to`: whole months from the monthly rows, the days
    /// before and after them from the daily rows (at most three reads).
    async fn totals(&self, dim: Dim, from: Date, to: Date) -> ServiceResult<BTreeMap<String, Counters>> {
        let mut out: BTreeMap<String, Counters> = BTreeMap::new();
        for (bucket, a, b) in spans(from, to) {
            for (key, c) in self.store.kpi_totals(dim, bucket, &a, &b).await? {
                out.entry(key).or_default().add(&c);
            }
        }
        Ok(out)
    }

    /// The names of the units of `dim`, by code.
    async fn unit_names(&self, dim: Dim) -> ServiceResult<BTreeMap<String, String>> {
        let world = self.world();
        Ok(match dim {
            Dim::Town => world.town.iter().map(|t| (t.code.to_string(), t.name_zh.clone())).collect(),
            Dim::Workstation => {
                self.store.workstations().await?.into_iter().map(|w| (w.code.to_string(), w.name_zh)).collect()
            }
            Dim::Grid => self.store.grids().await?.into_iter().map(|g| (g.code.to_string(), g.name_zh)).collect(),
            Dim::Department => world.departments.values().map(|d| (d.code.to_string(), d.name_zh.clone())).collect(),
            Dim::Class => world.catalog.matters().map(|m| (m.major_code.clone(), m.major_name_zh.clone())).collect(),
            Dim::Source => Source::ALL.into_iter().map(|s| (s.as_str().to_owned(), source_zh(s).to_owned())).collect(),
            // Named with their post by `score_posts`.
            Dim::Person => BTreeMap::new(),
        })
    }

    /// The KPI table as an XLSX workbook with Chinese headers: one sheet of counts and rates per unit.
    pub async fn kpi_xlsx(&self, actor: &Actor, query: KpiQuery) -> ServiceResult<Vec<u8>> {
        let table = self.kpi_table(actor, query).await?;
        workbook(&table).map_err(|e| ServiceError::Internal(format!("xlsx: {e}")))
    }
}

/// `from..=to` as (bucket, first period, last period) reads: the leading days up to the first whole
/// month, the whole months, and the trailing days.
fn spans(from: Date, to: Date) -> Vec<(Bucket, String, String)> {
    let day = |d: Date| d.strftime("%Y-%m-%d").to_string();
    let month = |d: Date| d.strftime("%Y-%m").to_string();
    let first_whole = if from.day() == 1 { from } else { from.last_of_month().tomorrow().unwrap_or(to) };
    let last_whole = if to == to.last_of_month() { to } else { to.first_of_month().yesterday().unwrap_or(from) };
    if first_whole > last_whole {
        return vec![(Bucket::Day, day(from), day(to))];
    }
    let mut out = Vec::new();
    if from < first_whole {
        out.push((Bucket::Day, day(from), day(first_whole.yesterday().unwrap_or(from))));
    }
    out.push((Bucket::Month, month(first_whole), month(last_whole)));
    if last_whole < to {
        out.push((Bucket::Day, day(last_whole.tomorrow().unwrap_or(to)), day(to)));
    }
    out
}

fn source_zh(s: Source) -> &'static str {
    match s {
        Source::GridPatrol => "网格巡查",
        Source::Hotline12345 => "12345热线",
        Source::CitizenH5 => "群众H5",
        Source::Police110 => "110联动",
        Source::Iot => "物联感知",
        Source::Video => "视频巡查",
        Source::Leader => "领导交办",
        Source::Suggestion => "意见建议",
    }
}

/// The columns of the workbook: header, and the value of a row. Counts are whole numbers; headers
/// with a unit in brackets and the score are shown with one decimal.
type Column = (&'static str, fn(&KpiRow) -> f64);

fn is_decimal(header: &str) -> bool {
    header.contains('(') || header == "考核得分"
}

const COLUMNS: [Column; 27] = [
    ("上报数", |r| r.counts.reported as f64),
    ("立案数", |r| r.counts.filed as f64),
    ("按时立案率(%)", |r| r.rates.on_time_filing),
    ("派遣数", |r| r.counts.dispatched as f64),
    ("准确派遣率(%)", |r| r.rates.accurate_dispatch),
    ("处置数", |r| r.counts.handled as f64),
    ("按期处置率(%)", |r| r.rates.on_time_handling),
    ("结案数", |r| r.counts.closed as f64),
    ("按期结案率(%)", |r| r.rates.on_time_closure),
    ("超期结案数", |r| r.counts.closed_late as f64),
    ("返工率(%)", |r| r.rates.rework),
    ("延期数", |r| r.counts.extended as f64),
    ("挂账数", |r| r.counts.parked as f64),
    ("退单数", |r| r.counts.returned as f64),
    ("满意率(%)", |r| r.rates.satisfaction),
    ("平均办结时长(小时)", |r| r.rates.mean_close_hours),
    ("考核得分", |r| r.rates.score),
    ("上报数环比(%)", |r| change(r.counts.reported, r.previous.reported)),
    ("上报数同比(%)", |r| change(r.counts.reported, r.last_year.reported)),
    ("结案数环比(%)", |r| change(r.counts.closed, r.previous.closed)),
    ("结案数同比(%)", |r| change(r.counts.closed, r.last_year.closed)),
    ("准确立案率(%)", |r| r.rates.accurate_filing),
    ("按时派遣率(%)", |r| r.rates.on_time_dispatch),
    ("按时核实率(%)", |r| r.rates.on_time_check),
    ("按时核查率(%)", |r| r.rates.on_time_verify),
    ("有效上报率(%)", |r| r.rates.valid_report),
    ("主动发现率(%)", |r| r.rates.discovery),
];

/// The post a role is scored as, if it has a formula of its own.
fn post_of(role: Role) -> Option<Post> {
    match role {
        Role::GridWorker => Some(Post::Patrol),
        Role::ShiftLeader => Some(Post::ShiftLeader),
        Role::Dispatcher => Some(Post::Dispatcher),
        _ => None,
    }
}

/// The change from `before` to `now`, in percent (0 when there was nothing before).
pub fn change(now: i64, before: i64) -> f64 {
    if before == 0 { 0.0 } else { ((now - before) as f64 * 1000.0 / before as f64).round() / 10.0 }
}

fn dim_zh(d: Dim) -> &'static str {
    match d {
        Dim::Town => "镇",
        Dim::Workstation => "工作站",
        Dim::Grid => "网格",
        Dim::Department => "部门",
        Dim::Class => "大类",
        Dim::Source => "来源",
        Dim::Person => "岗位",
    }
}

fn workbook(t: &KpiTable) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut book = Workbook::new();
    let sheet = book.add_worksheet().set_name("考核")?;
    let bold = Format::new().set_bold();
    let (decimal, whole) = (Format::new().set_num_format("0.0"), Format::new().set_num_format("0"));
    sheet.write_string_with_format(
        0,
        0,
        format!("{}考核 {} 至 {}", dim_zh(t.query.dim), t.query.from, t.query.to),
        &bold,
    )?;
    sheet.write_string_with_format(2, 0, "代码", &bold)?;
    sheet.write_string_with_format(2, 1, "名称", &bold)?;
    sheet.write_string_with_format(2, 2, "等级", &bold)?;
    for (i, (header, _)) in COLUMNS.iter().enumerate() {
        sheet.write_string_with_format(2, 3 + i as u16, *header, &bold)?;
    }
    for (n, row) in t.rows.iter().chain(std::iter::once(&t.total)).enumerate() {
        let at = 3 + n as u32;
        sheet.write_string(at, 0, &row.key)?;
        sheet.write_string(at, 1, &row.name)?;
        sheet.write_string(at, 2, format!("{:?}", row.rates.grade))?;
        for (i, (header, value)) in COLUMNS.iter().enumerate() {
            let format = if is_decimal(header) { &decimal } else { &whole };
            sheet.write_number_with_format(at, 3 + i as u16, value(row), format)?;
        }
    }
    sheet.set_column_width(1, 18)?;
    sheet.set_column_range_width(3, 3 + COLUMNS.len() as u16, 12)?;
    book.save_to_buffer()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn a_span_reads_whole_months_from_month_rows_and_the_rest_from_day_rows() {
        let s = |a, b| spans(a, b).into_iter().map(|(k, x, y)| format!("{}:{x}..{y}", k.as_str())).collect::<Vec<_>>();
        assert_eq!(s(date(2026, 1, 1), date(2026, 12, 31)), ["month:2026-01..2026-12"]);
        assert_eq!(
            s(date(2026, 10, 20), date(2026, 12, 5)),
            ["day:2026-10-20..2026-10-31", "month:2026-11..2026-11", "day:2026-12-01..2026-12-05"]
        );
        assert_eq!(s(date(2026, 11, 3), date(2026, 11, 9)), ["day:2026-11-03..2026-11-09"]);
        assert_eq!(s(date(2026, 11, 1), date(2026, 11, 9)), ["day:2026-11-01..2026-11-09"]);
    }

    #[test]
    fn change_is_relative_to_the_period_before() {
        assert_eq!(change(120, 100), 20.0);
        assert_eq!(change(5, 0), 0.0);
        assert_eq!(change(2, 3), -33.3);
    }
}
