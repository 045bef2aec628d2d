//! What each committed case event adds to the KPI counters: per unit (town, workstation, grid,
//! department, matter class, source) and per person (for post scores), per day and per month. One
//! pure rule, [`contributions`], used by the live projection (as events commit) and by its rebuild
//! (replaying every history), so both give the same numbers by construction; the rates, scores and
//! grades are computed from the counters when they are read ([`Counters::rates`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::calendar::local;
use crate::case::{Action, CaseEvent, CaseFacts, CaseState, CaseStatus, CloseType, ReplayError, Source};
use crate::codes::{GridCode, MatterCode};
use crate::org::DeptCode;

use super::{CaseCounts, Grade, grade, rate};

/// The facts of a case that its counts depend on: where (the grid, and through it the workstation and
/// town), what (the matter's class), from which channel and whom, and when. The store reads them from
/// the case's own columns, so a log reader never decodes a whole report to count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiFacts {
    /// The unit grid.
    pub grid: GridCode,
    /// The matter.
    pub matter: MatterCode,
    /// The channel.
    pub source: Source,
    /// The reporting user (a grid worker's patrol report counts for them).
    pub reporter_user_id: Option<i64>,
    /// When it was reported.
    pub reported_at: jiff::Timestamp,
}

impl From<&CaseFacts> for KpiFacts {
    fn from(f: &CaseFacts) -> Self {
        Self {
            grid: f.grid,
            matter: f.matter,
            source: f.source,
            reporter_user_id: f.reporter.user_id,
            reported_at: f.reported_at,
        }
    }
}

/// The kinds of unit counters are kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    /// The whole town (key: the town code).
    Town,
    /// A workstation (community or village).
    Workstation,
    /// A unit grid.
    Grid,
    /// A department: what it was dispatched, handled, closed, …
    Department,
    /// A matter's major class (两位大类).
    Class,
    /// The channel a case came in on.
    Source,
    /// A person (key: the user id): what they reported, filed, dispatched, checked, verified and
    /// closed, for their post's score.
    Person,
}

impl Dim {
    /// Every dimension.
    pub const ALL: [Dim; 7] =
        [Dim::Town, Dim::Workstation, Dim::Grid, Dim::Department, Dim::Class, Dim::Source, Dim::Person];

    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Town => "town",
            Dim::Workstation => "workstation",
            Dim::Grid => "grid",
            Dim::Department => "department",
            Dim::Class => "class",
            Dim::Source => "source",
            Dim::Person => "person",
        }
    }
}

impl std::str::FromStr for Dim {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Dim::ALL.into_iter().find(|d| d.as_str() == s).ok_or_else(|| format!("unknown dimension {s:?}"))
    }
}

/// How long a counter row's period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// One local day; period `YYYY-MM-DD`.
    Day,
    /// One local month; period `YYYY-MM`.
    Month,
}

impl Bucket {
    /// The name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Day => "day",
            Bucket::Month => "month",
        }
    }
}

macro_rules! counters {
    ($($field:ident: $zh:literal),+ $(,)?) => {
        /// The counts kept per unit and period. All are event counts except `close_secs`.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        pub struct Counters {
            $(#[doc = $zh] pub $field: i64,)+
        }

        impl Counters {
            /// Column names, in the order of [`Counters::values`].
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),+];

            /// The counts, in the order of [`Counters::NAMES`].
            pub fn values(&self) -> Vec<i64> {
                vec![$(self.$field),+]
            }

            /// Counters from values in the order of [`Counters::NAMES`] (missing ones are 0).
            pub fn from_values(v: &[i64]) -> Counters {
                let mut it = v.iter().copied();
                Counters { $($field: it.next().unwrap_or(0)),+ }
            }

            /// Adds `other` to these counts.
            pub fn add(&mut self, other: &Counters) {
                $(self.$field += other.$field;)+
            }
        }
    };
}

counters! {
    reported: "上报数",
    filed: "立案数",
    filed_on_time: "按时立案数",
    voided: "作废数",
    dispatched: "派遣数",
    misdispatched: "错派数",
    handled: "处置数",
    handled_on_time: "按期处置数",
    closed: "结案数",
    closed_on_time: "按期结案数",
    closed_late: "超期结案数",
    close_secs: "结案用时合计(秒)",
    rework: "返工数",
    extended: "延期数",
    parked: "挂账数",
    returned: "退单数",
    rated: "回访数",
    satisfied: "满意数",
    escalated: "督办数",
    fixed_on_spot: "自行处置数",
    merged: "并单数",
    rectifications: "整改数",
    filed_voided: "立案后作废数",
    dispatched_on_time: "按时派遣数",
    checks: "核实数",
    checks_on_time: "按时核实数",
    verifies: "核查数",
    verifies_on_time: "按时核查数",
    valid_reports: "有效上报数",
    missed: "漏报数",
}

/// The rates of a unit over a period, in percent, with its score and grade.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rates {
    /// 按时立案率 = filed on time ÷ filed.
    pub on_time_filing: f64,
    /// 准确派遣率 = dispatches not undone by an approved 退单 or a 改派 ÷ dispatches.
    pub accurate_dispatch: f64,
    /// 按期处置率 = replies within the handling deadline ÷ replies.
    pub on_time_handling: f64,
    /// 按期结案率 = closed on time ÷ closed.
    pub on_time_closure: f64,
    /// 结案率 = closed ÷ dispatched (at most 100).
    pub closure: f64,
    /// 返工率 = failed verifications ÷ replies.
    pub rework: f64,
    /// 满意率 = satisfied (5, 4 or 3 of 5) ÷ called back.
    pub satisfaction: f64,
    /// Mean hours from report to closure.
    pub mean_close_hours: f64,
    /// 准确立案率 = (filed − voided after filing) ÷ filed.
    pub accurate_filing: f64,
    /// 按时派遣率 = dispatches within the dispatch deadline ÷ dispatches.
    pub on_time_dispatch: f64,
    /// 按时核实率 = checks answered within their deadline ÷ checks.
    pub on_time_check: f64,
    /// 按时核查率 = verifications within their deadline ÷ verifications.
    pub on_time_verify: f64,
    /// 有效上报率 = patrol reports filed (or fixed on the spot) ÷ patrol reports.
    pub valid_report: f64,
    /// 主动发现率 = valid patrol reports ÷ (those + public reports filed): what the patrols found before
    /// the public had to call. A patrol worker's 漏报 score.
    pub discovery: f64,
    /// Department score by the reference formula (count score + closure, on-time handling and
    /// 100 − rework, 30 % each); for a person, their post's score ([`Rates::post_score`]).
    pub score: f64,
    /// A ≥ 90, B ≥ 75, C ≥ 60, D ≥ 40, else E.
    pub grade: Grade,
}

fn r(n: i64, d: i64) -> f64 {
    rate(n.max(0) as u64, d.max(0) as u64)
}

impl Counters {
    /// The rates, score and grade of these counts.
    pub fn rates(&self) -> Rates {
        let counts = CaseCounts {
            cases: self.dispatched.max(0) as u64,
            due_for_closure: self.dispatched.max(0) as u64,
            closed: self.closed.min(self.dispatched).max(0) as u64,
            closed_on_time: self.closed_on_time.max(0) as u64,
            handled_on_time: self.handled_on_time.max(0) as u64,
            due_for_handling: self.handled.max(0) as u64,
            rework: self.rework.min(self.dispatched).max(0) as u64,
        };
        let score = (counts.department_score() * 100.0).round() / 100.0;
        Rates {
            on_time_filing: r(self.filed_on_time, self.filed),
            accurate_dispatch: r(self.dispatched - self.misdispatched, self.dispatched),
            on_time_handling: r(self.handled_on_time, self.handled),
            on_time_closure: r(self.closed_on_time, self.closed),
            closure: r(self.closed.min(self.dispatched), self.dispatched),
            rework: if self.handled == 0 { 0.0 } else { r(self.rework, self.handled) },
            satisfaction: r(self.satisfied, self.rated),
            mean_close_hours: if self.closed == 0 { 0.0 } else { self.close_secs as f64 / self.closed as f64 / 3600.0 },
            accurate_filing: r(self.filed - self.filed_voided, self.filed),
            on_time_dispatch: r(self.dispatched_on_time, self.dispatched),
            on_time_check: r(self.checks_on_time, self.checks),
            on_time_verify: r(self.verifies_on_time, self.verifies),
            valid_report: r(self.valid_reports, self.reported),
            discovery: r(self.valid_reports, self.valid_reports + self.missed),
            score,
            grade: grade(score),
        }
    }
}

impl Rates {
    /// A person's score by their post's reference formula, from their rates, with the A–E grade.
    /// `dispatch_count_score` (0–100) is the dispatcher's workload score, relative to the other
    /// dispatchers of the table.
    /// - patrol worker: 有效上报率 40 % + 漏报 score (主动发现率 of their grids) 20 % + 按时核实率 20 % +
    ///   按时核查率 20 %;
    /// - shift leader: 按时立案率 25 % + 准确立案率 40 % + 按期结案率 35 %;
    /// - dispatcher: workload 20 % + 按时派遣率 40 % + 准确派遣率 40 %.
    pub fn post_score(&self, post: Post, dispatch_count_score: f64) -> (f64, Grade) {
        let r = self;
        let score = match post {
            Post::Patrol => 0.4 * r.valid_report + 0.2 * r.discovery + 0.2 * r.on_time_check + 0.2 * r.on_time_verify,
            Post::ShiftLeader => 0.25 * r.on_time_filing + 0.4 * r.accurate_filing + 0.35 * r.on_time_closure,
            Post::Dispatcher => {
                0.2 * dispatch_count_score.clamp(0.0, 100.0) + 0.4 * r.on_time_dispatch + 0.4 * r.accurate_dispatch
            }
        };
        let score = (score * 100.0).round() / 100.0;
        (score, grade(score))
    }
}

/// The posts scored by a formula of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Post {
    /// 网格员.
    Patrol,
    /// 值班长.
    ShiftLeader,
    /// 派遣员.
    Dispatcher,
}

/// One counter row's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    /// The kind of unit.
    pub dim: Dim,
    /// Day or month.
    pub bucket: Bucket,
    /// `YYYY-MM-DD` or `YYYY-MM`, local time.
    pub period: String,
    /// The unit's code.
    pub key: String,
}

/// Whom a contribution is counted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    /// The case's area units only (town, workstation, grid, class, source).
    Area,
    /// The area units and this department.
    Dept(DeptCode),
    /// One person (their post's score), and nothing else.
    Person(i64),
}

/// What one event adds, and to whom: the case's area units always; a department when it concerns one
/// (a 改派 concerns two: a dispatch to the new lead, a wrong dispatch of the old); and the people whose
/// post scores it counts in: the actor, or the reporter, filer or dispatcher whose earlier work it
/// proves right or wrong.
pub fn contributions(facts: &KpiFacts, before: &CaseStatus, e: &CaseEvent) -> Vec<(Unit, Counters)> {
    let mut out: Vec<(Unit, Counters)> = Vec::new();
    let mut add = |unit: Option<Unit>, f: &dyn Fn(&mut Counters)| {
        if let Some(unit) = unit {
            let mut c = Counters::default();
            f(&mut c);
            out.push((unit, c));
        }
    };
    let area = || Some(Unit::Area);
    let dept = |d: Option<&DeptCode>| Some(d.map_or(Unit::Area, |d| Unit::Dept(d.clone())));
    let person = |id: Option<i64>| id.map(Unit::Person);
    let actor = person(e.actor.user_id);
    let patroller = person(facts.reporter_user_id.filter(|_| facts.source == Source::GridPatrol));
    let lead = before.lead_dept.as_ref();
    let task_dept = e.task.as_ref();
    let on_time = |due: Option<jiff::Timestamp>| i64::from(due.is_none_or(|d| e.at <= d));
    let close_secs = (e.at.as_second() - facts.reported_at.as_second()).max(0);
    match &e.action {
        Action::Report => {
            add(area(), &|c| c.reported = 1);
            add(patroller.clone(), &|c| c.reported = 1);
        }
        Action::File | Action::ConfirmCheck if e.to == CaseState::Filed => {
            let t = on_time(before.due_at);
            // The first filing proves a patrol report valid, or a public one missed by the patrol.
            let first = before.filed_by.is_none();
            // A suggestion is an opinion, not a problem the patrol missed.
            let missed_one = facts.source.is_public() && facts.source != crate::case::Source::Suggestion;
            let (valid, missed) = (first && patroller.is_some(), first && missed_one);
            add(area(), &|c| {
                c.filed = 1;
                c.filed_on_time = t;
                c.valid_reports = i64::from(valid);
                c.missed = i64::from(missed);
            });
            add(actor.clone(), &|c| {
                c.filed = 1;
                c.filed_on_time = t;
            });
            add(patroller.clone().filter(|_| valid), &|c| c.valid_reports = 1);
        }
        Action::Void | Action::RefuteCheck if e.to == CaseState::Void => {
            let after_filing = before.filed_by.is_some();
            add(area(), &|c| {
                c.voided = 1;
                c.filed_voided = i64::from(after_filing);
            });
            add(person(before.filed_by), &|c| c.filed_voided = 1);
        }
        Action::Dispatch { lead: to, .. } | Action::Reassign { lead: to, .. } => {
            // A 改派 is timely by definition: its cost is the wrong dispatch it corrects.
            let t = if matches!(e.action, Action::Dispatch { .. }) { on_time(before.due_at) } else { 1 };
            let counts = move |c: &mut Counters| {
                c.dispatched = 1;
                c.dispatched_on_time = t;
            };
            add(dept(Some(to)), &counts);
            add(actor.clone(), &counts);
            if matches!(e.action, Action::Reassign { .. }) {
                add(dept(lead), &|c| c.misdispatched = 1);
                add(person(before.dispatched_by), &|c| c.misdispatched = 1);
            }
        }
        Action::ApproveReturn if task_dept.is_none() => {
            add(dept(lead), &|c| c.misdispatched = 1);
            add(person(before.dispatched_by), &|c| c.misdispatched = 1);
        }
        Action::RejectAssignment => add(dept(task_dept.or(lead)), &|c| c.returned = 1),
        Action::Reply => {
            let due = match task_dept {
                Some(d) => before.tasks.iter().find(|t| &t.dept == d).and_then(|t| t.handle_due_at),
                None => before.handle_due_at,
            };
            let t = on_time(due);
            add(dept(task_dept.or(lead)), &|c| {
                c.handled = 1;
                c.handled_on_time = t;
            })
        }
        Action::VerifyPass | Action::VerifyFail => {
            let (t, fail) = (on_time(before.due_at), e.action == Action::VerifyFail);
            let counts = move |c: &mut Counters| {
                c.verifies = 1;
                c.verifies_on_time = t;
            };
            add(area(), &counts);
            add(actor.clone(), &counts);
            add(dept(lead).filter(|_| fail), &|c| c.rework = 1);
        }
        // A closed case reopened (the problem came back, e.g. a sensor's fault relapsed) is rework of
        // the department that had closed it.
        Action::Reopen => add(dept(lead), &|c| c.rework = 1),
        Action::ApproveExtension => add(dept(task_dept.or(lead)), &|c| c.extended = 1),
        Action::Park | Action::ApprovePark => add(dept(lead), &|c| c.parked = 1),
        Action::Escalate => add(dept(lead), &|c| c.escalated = 1),
        Action::Merge { .. } => add(area(), &|c| c.merged = 1),
        Action::CallBack { satisfaction } => {
            let (ok, opened) = (i64::from(satisfaction.score() >= 3), i64::from(e.due_at.is_some()));
            add(dept(lead), &|c| {
                c.rated = 1;
                c.satisfied = ok;
                c.rectifications = opened;
            })
        }
        _ => {}
    }
    if matches!(e.action, Action::ConfirmCheck | Action::RefuteCheck) {
        let t = on_time(before.due_at);
        let counts = move |c: &mut Counters| {
            c.checks = 1;
            c.checks_on_time = t;
        };
        add(area(), &counts);
        add(actor.clone(), &counts);
    }
    let closes = e.to == CaseState::Closed && before.state != CaseState::Closed;
    if closes && matches!(e.action, Action::Close | Action::FixOnSpot) {
        let (normal, late) = (e.close_type == Some(CloseType::Normal), e.close_type == Some(CloseType::Late));
        let counts = move |c: &mut Counters| {
            c.closed = 1;
            c.closed_on_time = i64::from(normal);
            c.closed_late = i64::from(late);
            c.close_secs = close_secs;
        };
        add(dept(lead), &counts);
        add(actor.clone().filter(|_| e.action == Action::Close), &counts);
    }
    if e.action == Action::FixOnSpot {
        add(area(), &|c| {
            c.fixed_on_spot = 1;
            c.valid_reports = 1;
        });
        add(patroller, &|c| c.valid_reports = 1);
    }
    out.retain(|(_, c)| *c != Counters::default());
    out
}

/// Counter rows being built: what a batch of events, or every history, adds up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    rows: BTreeMap<RowKey, Counters>,
}

impl Projection {
    /// An empty projection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds what `e` contributes, given the case's status `before` it.
    pub fn add(&mut self, facts: &KpiFacts, before: &CaseStatus, e: &CaseEvent) {
        let date = local(e.at).date();
        // ISO dates, as `Bucket` keys them (written directly: strftime parses its pattern each call).
        let day = date.to_string();
        let month = format!("{:04}-{:02}", date.year(), date.month());
        let areas = [
            (Dim::Town, facts.grid.town().to_string()),
            (Dim::Workstation, facts.grid.community().to_string()),
            (Dim::Grid, facts.grid.to_string()),
            (Dim::Class, facts.matter.major().to_owned()),
            (Dim::Source, facts.source.as_str().to_owned()),
        ];
        for (unit, c) in contributions(facts, before, e) {
            let units: Vec<(Dim, String)> = match unit {
                Unit::Area => areas.to_vec(),
                Unit::Dept(d) => areas.iter().cloned().chain([(Dim::Department, d.to_string())]).collect(),
                Unit::Person(id) => vec![(Dim::Person, id.to_string())],
            };
            for (dim, key) in units {
                for (bucket, period) in [(Bucket::Day, &day), (Bucket::Month, &month)] {
                    let k = RowKey { dim, bucket, period: period.clone(), key: key.clone() };
                    self.rows.entry(k).or_default().add(&c);
                }
            }
        }
    }

    /// Adds a whole history, replaying the status as it goes.
    pub fn add_history(&mut self, facts: &KpiFacts, events: &[CaseEvent]) -> Result<(), ReplayError> {
        self.add_events(facts, events, |_| true)
    }

    /// Replays a history (from its report) and adds the events `wanted` picks, each with the status
    /// before it: the live reader's events of one case in a batch of the log.
    pub fn add_events<'e>(
        &mut self,
        facts: &KpiFacts,
        events: impl IntoIterator<Item = &'e CaseEvent>,
        wanted: impl Fn(&CaseEvent) -> bool,
    ) -> Result<(), ReplayError> {
        let mut events = events.into_iter();
        let first = events.next().ok_or(ReplayError::Empty)?;
        let mut status = CaseStatus::replay(std::slice::from_ref(first))?;
        if wanted(first) {
            // The report's rule reads nothing of the status before it.
            self.add(facts, &CaseStatus { version: 0, ..status.clone() }, first);
        }
        for e in events {
            if wanted(e) {
                self.add(facts, &status, e);
            }
            status.apply(e)?;
        }
        Ok(())
    }

    /// The rows, in key order, taken out.
    pub fn into_rows(self) -> Vec<(RowKey, Counters)> {
        self.rows.into_iter().collect()
    }
}
