//! Time-limit rules (SLA policy): which limit applies to which step of which case, on whose clock, and
//! when a step's timers (yellow warning, escalation ladder) fall due, and what each does when it fires. The calendar turns a limit into a
//! deadline; this module chooses the limit and the clock. Defaults follow city practice recorded in
//! `shared/reference/README.md`; an administrator edits the policy as a whole ([`SlaPolicy::check`]).

use std::collections::BTreeMap;

use jiff::civil::Time;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::DomainError;
use crate::calendar::{TimeLimit, WorkCalendar};
use crate::case::{Action, CaseEvent, CaseFacts, CaseStatus, MAX_ESCALATION_LEVEL, Source, Urgency, WarnLevel};
use crate::codes::MatterCode;
use crate::org::DeptCode;

/// One limit per urgency (一般 / 紧急 / 特急).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ByUrgency {
    /// 一般.
    pub normal: TimeLimit,
    /// 紧急.
    pub urgent: TimeLimit,
    /// 特急.
    pub critical: TimeLimit,
}

impl ByUrgency {
    /// The limit for `urgency`.
    pub fn get(&self, urgency: Urgency) -> TimeLimit {
        match urgency {
            Urgency::Normal => self.normal,
            Urgency::Urgent => self.urgent,
            Urgency::Critical => self.critical,
        }
    }

    fn all(&self) -> [TimeLimit; 3] {
        [self.normal, self.urgent, self.critical]
    }
}

/// A working period of a day, in local time, e.g. 08:00–12:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkPeriod {
    /// Start, e.g. "08:00".
    #[schema(value_type = String, example = "08:00")]
    pub start: Time,
    /// End, e.g. "12:00".
    #[schema(value_type = String, example = "12:00")]
    pub end: Time,
}

/// The time-limit rules of the town, edited by an administrator as one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    /// Accept + file + dispatch, on the centre's clock.
    pub dispatch: ByUrgency,
    /// For the lead department to sign for a dispatched case, on the department's clock.
    pub sign: TimeLimit,
    /// Handling when no matter rule applies, on the department's clock.
    pub handle: ByUrgency,
    /// Handling of 110 non-police diversions without a matter rule.
    pub handle_police_110: TimeLimit,
    /// On-site verification after a reply (grid worker, standard working hours).
    pub verify: TimeLimit,
    /// Closing after verification, on the centre's clock.
    pub close: TimeLimit,
    /// Handling limits per matter and urgency; they win over `handle`.
    #[schema(value_type = BTreeMap<String, ByUrgency>)]
    pub per_matter: BTreeMap<MatterCode, ByUrgency>,
    /// The yellow warning falls when this share of a step's limit has passed (50–95 %).
    pub warn_percent: u8,
    /// The escalation ladder (督办): rung k (department head, centre shift leader, town leader) is
    /// climbed when `escalate_multiples[k-1]` times the step's limit has passed; the first is normally
    /// 1 (at breach). Ascending, at most three rungs.
    pub escalate_multiples: Vec<u8>,
    /// A critical notification nobody acknowledges within this many minutes goes to the next post up
    /// (5–1440).
    pub ack_within_minutes: u16,
    /// A passed on-site verification's photo (or reported position) lies within this many metres of
    /// the case (10–1000).
    pub verify_radius_m: u16,
    /// Whether the centre's own steps (dispatch, close) count every hour of every day.
    pub centre_around_the_clock: bool,
    /// Departments whose working hours differ from the standard 08:00–12:00, 14:00–18:00.
    #[schema(value_type = BTreeMap<String, Vec<WorkPeriod>>)]
    pub department_hours: BTreeMap<DeptCode, Vec<WorkPeriod>>,
    /// Answering a suggestion (意见建议), on the lead department's clock.
    #[serde(default = "default_suggestion")]
    pub handle_suggestion: TimeLimit,
    /// On-site check (核实) of a public report by the grid's worker, standard working hours.
    #[serde(default = "default_check")]
    pub check: TimeLimit,
    /// Rectification (整改) after a poor rating, on the lead department's clock.
    #[serde(default = "default_rectify")]
    pub rectify: TimeLimit,
    /// Share of fixes on the spot (自行处置) drawn for verification by someone else, in percent.
    #[serde(default = "default_sample_percent")]
    pub sample_percent: u8,
    /// Open cases of the same matter within this many metres of a new report are suggested as
    /// duplicates (并单), unless the matter has its own radius (10–2000).
    #[serde(default = "default_duplicate_radius")]
    pub duplicate_radius_m: u16,
    /// Duplicate radius per matter, in metres.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, u16>)]
    pub duplicate_radius_per_matter: BTreeMap<MatterCode, u16>,
}

fn default_check() -> TimeLimit {
    TimeLimit::WorkingHours(1)
}

fn default_suggestion() -> TimeLimit {
    TimeLimit::WorkingDays(5)
}

fn default_rectify() -> TimeLimit {
    TimeLimit::WorkingDays(5)
}

fn default_sample_percent() -> u8 {
    10
}

fn default_duplicate_radius() -> u16 {
    50
}

impl Default for SlaPolicy {
    fn default() -> Self {
        use TimeLimit::*;
        let same = |l: TimeLimit| ByUrgency { normal: l, urgent: l, critical: l };
        let rules = [
            ("01037", ByUrgency { normal: WorkingDays(1), urgent: WorkingHours(4), critical: WorkingHours(2) }), // street lamp out
            ("01060", ByUrgency { normal: WorkingDays(1), urgent: WorkingHours(4), critical: WorkingHours(2) }), // lighting cabinet
            ("01002", ByUrgency { normal: CalendarHours(2), urgent: CalendarHours(2), critical: CalendarHours(1) }), // sewage manhole cover
            ("01001", ByUrgency { normal: CalendarHours(2), urgent: CalendarHours(2), critical: CalendarHours(1) }), // water manhole cover
            ("01003", ByUrgency { normal: CalendarHours(2), urgent: CalendarHours(2), critical: CalendarHours(1) }), // storm drain cover
            ("01013", ByUrgency { normal: WorkingDays(1), urgent: WorkingHours(4), critical: CalendarHours(2) }), // hydrant fault
            ("06010", ByUrgency { normal: WorkingHours(4), urgent: WorkingHours(2), critical: WorkingHours(1) }), // exposed rubbish
            ("06011", ByUrgency { normal: WorkingHours(4), urgent: WorkingHours(2), critical: WorkingHours(1) }), // accumulated rubbish
            ("06012", ByUrgency { normal: WorkingHours(4), urgent: WorkingHours(2), critical: WorkingHours(1) }), // dirty road
            ("06029", same(CalendarHours(2))), // open-air barbecue
            ("06001", ByUrgency { normal: WorkingDays(20), urgent: WorkingDays(7), critical: WorkingHours(4) }), // unauthorised structure
        ];
        SlaPolicy {
            dispatch: ByUrgency {
                normal: CalendarMinutes(30),
                urgent: CalendarMinutes(10),
                critical: CalendarMinutes(5),
            },
            sign: WorkingHours(2),
            handle: ByUrgency { normal: WorkingDays(3), urgent: WorkingHours(4), critical: WorkingHours(2) },
            handle_police_110: WorkingDays(1),
            verify: WorkingHours(2),
            close: WorkingHours(4),
            per_matter: rules.iter().filter_map(|(c, l)| c.parse::<MatterCode>().ok().map(|c| (c, *l))).collect(),
            warn_percent: 80,
            escalate_multiples: vec![1, 2, 3],
            ack_within_minutes: 30,
            verify_radius_m: 50,
            centre_around_the_clock: true,
            department_hours: BTreeMap::new(),
            check: default_check(),
            handle_suggestion: default_suggestion(),
            rectify: default_rectify(),
            sample_percent: default_sample_percent(),
            duplicate_radius_m: default_duplicate_radius(),
            // Noise and smells carry: a wider radius for an open-air barbecue.
            duplicate_radius_per_matter: "06029".parse::<MatterCode>().map(|m| (m, 150)).into_iter().collect(),
        }
    }
}

/// The clocks deadlines are counted on: the standard working hours, the centre's own, and each
/// department's where it keeps other hours. All share the calendar's holidays and make-up days.
#[derive(Debug, Clone)]
pub struct Clocks {
    /// Standard working hours (grid workers, departments without their own hours).
    pub standard: WorkCalendar,
    /// The command centre's clock (24 h when the policy says so).
    pub centre: WorkCalendar,
    departments: BTreeMap<DeptCode, WorkCalendar>,
}

impl Clocks {
    /// One clock for everything (tests, tools).
    pub fn single(calendar: WorkCalendar) -> Self {
        Self { centre: calendar.clone(), standard: calendar, departments: BTreeMap::new() }
    }

    /// The clock of a department (the standard one when it has no hours of its own).
    pub fn department(&self, dept: Option<&DeptCode>) -> &WorkCalendar {
        dept.and_then(|d| self.departments.get(d)).unwrap_or(&self.standard)
    }

    /// The clock a case's current step is counted on, as `case::decide` sets its deadline: the grid
    /// worker's check and verification on the standard hours, the lead department's signing,
    /// handling, requests and rectification on its own, and the centre's steps on the centre's.
    pub fn of_step(&self, state: crate::case::CaseState, lead: Option<&DeptCode>) -> &WorkCalendar {
        use crate::case::CaseState as S;
        match state {
            S::Checking | S::Replied => &self.standard,
            S::Dispatched | S::Handling | S::ExtensionRequested | S::ParkRequested | S::Parked | S::Closed => {
                self.department(lead)
            }
            _ => &self.centre,
        }
    }
}

/// When a step's timers fall due: the yellow warning, then each rung of the escalation ladder (the
/// first rung is the deadline itself when the ladder starts at breach).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StepTimers {
    /// Yellow warning (预警).
    #[schema(value_type = String, format = DateTime)]
    pub warn_at: Timestamp,
    /// Escalation rungs, in order.
    #[schema(value_type = Vec<String>)]
    pub escalate_at: Vec<Timestamp>,
}

impl StepTimers {
    /// Every timer of the deadline `due`, with when it falls due: the yellow warning, the red one at
    /// the deadline, and each rung of the ladder.
    pub fn schedule(&self, due: Timestamp) -> Vec<(Timestamp, Timer)> {
        let mut all = vec![(self.warn_at, Timer::Warn(WarnLevel::Yellow)), (due, Timer::Warn(WarnLevel::Red))];
        all.extend(self.escalate_at.iter().enumerate().map(|(i, at)| (*at, Timer::Rung(i as u8 + 1))));
        all
    }
}

/// One timer of a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "timer", content = "value")]
pub enum Timer {
    /// A warning of this level.
    Warn(WarnLevel),
    /// Rung k (1-based) of the escalation ladder.
    Rung(u8),
}

impl Timer {
    /// The reason the system's event gives.
    pub fn reason(self) -> String {
        match self {
            Timer::Warn(WarnLevel::Yellow) => "临近时限 (deadline near)".into(),
            Timer::Warn(WarnLevel::Red) => "已超时 (deadline passed)".into(),
            Timer::Rung(k) => format!("超时自动督办，第{k}级 (overdue: escalated by the system, rung {k})"),
        }
    }

    /// What this timer of the deadline `due` (the case's own, or co-department `task`'s) does to the
    /// case when it fires, given its status and history: a warning, unless the history already has it
    /// for that deadline; for the case's own deadline, a 督办 while the open case's current step is below
    /// rung k.
    /// `None` when it only notifies. The live timers and the demo's simulated year both ask this.
    pub fn action(
        self,
        status: &CaseStatus,
        history: &[CaseEvent],
        due: Timestamp,
        task: Option<&DeptCode>,
    ) -> Option<Action> {
        match (self, task) {
            (Timer::Warn(level), _) => {
                let made =
                    history.iter().any(|e| e.action == Action::Warn { level } && warned_due(e, task) == Some(due));
                (!made).then_some(Action::Warn { level })
            }
            (Timer::Rung(k), None) => {
                (status.state.is_open() && status.step_escalation < i32::from(k)).then_some(Action::Escalate)
            }
            (Timer::Rung(_), Some(_)) => None,
        }
    }
}

/// The deadline a warning event was made for.
fn warned_due(e: &CaseEvent, task: Option<&DeptCode>) -> Option<Timestamp> {
    match task {
        None if e.task.is_none() => e.due_at,
        Some(d) if e.task.as_ref() == Some(d) => e.tasks.as_ref()?.iter().find(|t| &t.dept == d)?.due_at,
        _ => None,
    }
}

/// The longest limit an administrator may set: a year of working days.
const MAX_LIMIT_MINUTES: u64 = 366 * 24 * 60;

fn limit_minutes(l: TimeLimit) -> u64 {
    match l {
        TimeLimit::WorkingMinutes(m) | TimeLimit::CalendarMinutes(m) => u64::from(m),
        TimeLimit::WorkingHours(h) | TimeLimit::CalendarHours(h) => u64::from(h) * 60,
        TimeLimit::WorkingDays(d) | TimeLimit::CalendarDays(d) => u64::from(d) * 24 * 60,
    }
}

fn scaled(l: TimeLimit, k: u32) -> TimeLimit {
    let m = |a: u32| a.saturating_mul(k);
    match l {
        TimeLimit::WorkingMinutes(a) => TimeLimit::WorkingMinutes(m(a)),
        TimeLimit::WorkingHours(a) => TimeLimit::WorkingHours(m(a)),
        TimeLimit::WorkingDays(a) => TimeLimit::WorkingDays(m(a)),
        TimeLimit::CalendarMinutes(a) => TimeLimit::CalendarMinutes(m(a)),
        TimeLimit::CalendarHours(a) => TimeLimit::CalendarHours(m(a)),
        TimeLimit::CalendarDays(a) => TimeLimit::CalendarDays(m(a)),
    }
}

fn is_working(l: TimeLimit) -> bool {
    matches!(l, TimeLimit::WorkingMinutes(_) | TimeLimit::WorkingHours(_) | TimeLimit::WorkingDays(_))
}

impl SlaPolicy {
    /// How far apart two reports of `matter` may be and still be suggested as one problem, in metres.
    pub fn duplicate_radius(&self, matter: MatterCode) -> u16 {
        self.duplicate_radius_per_matter.get(&matter).copied().unwrap_or(self.duplicate_radius_m)
    }

    /// Limit for getting a new case dispatched.
    pub fn dispatch_limit(&self, urgency: Urgency) -> TimeLimit {
        self.dispatch.get(urgency)
    }

    /// Limit for the department's handling of this case.
    pub fn handle_limit(&self, facts: &CaseFacts) -> TimeLimit {
        // A suggestion is answered, whatever its subject's own limit for fixing it.
        if facts.source == Source::Suggestion {
            return self.handle_suggestion;
        }
        if let Some(limits) = self.per_matter.get(&facts.matter) {
            return limits.get(facts.urgency);
        }
        match (facts.source, facts.urgency) {
            (Source::Police110, Urgency::Normal) => self.handle_police_110,
            _ => self.handle.get(facts.urgency),
        }
    }

    /// The handling step of a case dispatched (or sent back to handling) at `start` on the lead
    /// department's `clock`: the matter's limit (or the default), never later than the 110 diversion
    /// limit for a diverted ticket, the 12345 platform's limit for the ticket's kind, nor than an
    /// upstream system's deadline that is still ahead.
    pub fn handle_step(&self, clock: &WorkCalendar, start: Timestamp, facts: &CaseFacts) -> (Timestamp, StepTimers) {
        let (due, timers) = self.step(clock, start, self.handle_limit(facts));
        let diverted = (facts.source == Source::Police110).then(|| clock.deadline(start, self.handle_police_110));
        let upstream = facts.upstream.as_ref();
        let kind = upstream.and_then(|u| u.category?.answer_limit()).map(|l| clock.deadline(start, l));
        let deadline = upstream.and_then(|u| u.deadline).filter(|d| *d > start);
        match diverted.into_iter().chain(kind).chain(deadline).min() {
            Some(cap) if cap < due => (cap, self.step_until(clock, start, cap)),
            _ => (due, timers),
        }
    }

    /// The clocks of this policy over the standard calendar.
    pub fn clocks(&self, standard: &WorkCalendar) -> Result<Clocks, DomainError> {
        let departments = self
            .department_hours
            .iter()
            .map(|(d, periods)| {
                let p: Vec<(Time, Time)> = periods.iter().map(|p| (p.start, p.end)).collect();
                standard
                    .with_periods(&p)
                    .map(|c| (d.clone(), c))
                    .map_err(|e| DomainError::invalid("department_hours", format!("department {d}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let centre = if self.centre_around_the_clock { WorkCalendar::around_the_clock() } else { standard.clone() };
        Ok(Clocks { standard: standard.clone(), centre, departments })
    }

    /// The deadline of a step of `limit` started at `start` on `clock`, and its timers.
    pub fn step(&self, clock: &WorkCalendar, start: Timestamp, limit: TimeLimit) -> (Timestamp, StepTimers) {
        let due = clock.deadline(start, limit);
        let pct = i64::from(self.warn_percent);
        let warn_at = if is_working(limit) {
            let span = clock.working_seconds_between(start, due);
            clock.add_working_seconds(start, span * pct / 100)
        } else {
            let span = due.duration_since(start).as_secs();
            start.checked_add(SignedDuration::from_secs(span * pct / 100)).unwrap_or(due)
        };
        let escalate_at =
            self.escalate_multiples.iter().map(|&k| clock.deadline(start, scaled(limit, u32::from(k)))).collect();
        (due, StepTimers { warn_at, escalate_at })
    }

    /// Timers of a step that ends at a deadline computed otherwise (an approved extension, a resumed
    /// parking): the limit is taken to be the working time from `start` to `due` on `clock`.
    pub fn step_until(&self, clock: &WorkCalendar, start: Timestamp, due: Timestamp) -> StepTimers {
        let span = clock.working_seconds_between(start, due);
        let pct = i64::from(self.warn_percent);
        StepTimers {
            warn_at: clock.add_working_seconds(start, span * pct / 100).min(due),
            escalate_at: self
                .escalate_multiples
                .iter()
                .map(|&k| clock.add_working_seconds(start, span * i64::from(k)).max(due))
                .collect(),
        }
    }

    /// An approved extension (延期) of `hours` working hours: the new handling deadline, counted from
    /// the old one (or from `now`, if that has passed), and its timers from `now`.
    pub fn extend(
        &self,
        clock: &WorkCalendar,
        now: Timestamp,
        due: Option<Timestamp>,
        hours: u32,
    ) -> (Timestamp, StepTimers) {
        let base = due.unwrap_or(now).max(now);
        let at = clock.add_working_seconds(base, i64::from(hours) * 3600);
        (at, self.step_until(clock, now, at))
    }

    /// A deadline that was stopped at `parked` and resumes at `now`: the working time it had left then,
    /// from `now`, and its timers.
    pub fn resume(
        &self,
        clock: &WorkCalendar,
        parked: Timestamp,
        now: Timestamp,
        due: Timestamp,
    ) -> (Timestamp, StepTimers) {
        let at = clock.add_working_seconds(now, clock.working_seconds_between(parked, due));
        (at, self.step_until(clock, now, at))
    }

    /// Checks a policy an administrator submits: every limit positive and at most a year, the warning
    /// between 50 % and 95 %, a rising ladder of at most three rungs, valid working hours, and matters
    /// and departments that exist.
    pub fn check(
        &self,
        matter_exists: impl Fn(&MatterCode) -> bool,
        dept_exists: impl Fn(&DeptCode) -> bool,
    ) -> Result<(), DomainError> {
        let limit = |field: &str, l: TimeLimit| {
            let m = limit_minutes(l);
            if m == 0 || m > MAX_LIMIT_MINUTES {
                return Err(DomainError::invalid(field, "a time limit is more than nothing and at most a year"));
            }
            Ok(())
        };
        let by = |field: &str, b: &ByUrgency| b.all().into_iter().try_for_each(|l| limit(field, l));
        by("dispatch", &self.dispatch)?;
        limit("sign", self.sign)?;
        by("handle", &self.handle)?;
        limit("handle_police_110", self.handle_police_110)?;
        limit("handle_suggestion", self.handle_suggestion)?;
        limit("verify", self.verify)?;
        limit("close", self.close)?;
        if self.per_matter.len() > 2000 {
            return Err(DomainError::invalid("per_matter", "at most 2000 matter rules"));
        }
        for (code, b) in &self.per_matter {
            if !matter_exists(code) {
                return Err(DomainError::invalid("per_matter", format!("matter {code} does not exist")));
            }
            by("per_matter", b)?;
        }
        limit("check", self.check)?;
        limit("rectify", self.rectify)?;
        if self.sample_percent > 100 {
            return Err(DomainError::invalid("sample_percent", "a share from 0 to 100 %"));
        }
        let radius_ok = |r: u16| (10..=2000).contains(&r);
        if !radius_ok(self.duplicate_radius_m) {
            return Err(DomainError::invalid("duplicate_radius_m", "10 to 2000 metres"));
        }
        for (code, r) in &self.duplicate_radius_per_matter {
            if self.duplicate_radius_per_matter.len() > 2000 || !matter_exists(code) || !radius_ok(*r) {
                return Err(DomainError::invalid(
                    "duplicate_radius_per_matter",
                    format!("matter {code}: an existing matter and 10 to 2000 metres"),
                ));
            }
        }
        if !(50..=95).contains(&self.warn_percent) {
            return Err(DomainError::invalid("warn_percent", "the warning falls at 50 % to 95 % of a limit"));
        }
        let m = &self.escalate_multiples;
        let rising = m.windows(2).all(|w| w[0] < w[1]);
        if m.len() > MAX_ESCALATION_LEVEL as usize
            || m.first().is_some_and(|&k| k == 0)
            || !rising
            || m.iter().any(|&k| k > 20)
        {
            return Err(DomainError::invalid(
                "escalate_multiples",
                "up to three rising multiples of the limit, from 1 to 20 (e.g. [1, 2, 3])",
            ));
        }
        if !(10..=1000).contains(&self.verify_radius_m) {
            return Err(DomainError::invalid("verify_radius_m", "10 to 1000 metres"));
        }
        if !(5..=1440).contains(&self.ack_within_minutes) {
            return Err(DomainError::invalid("ack_within_minutes", "5 to 1440 minutes"));
        }
        for (d, periods) in &self.department_hours {
            if !dept_exists(d) {
                return Err(DomainError::invalid("department_hours", format!("department {d} does not exist")));
            }
            if periods.len() > 6 {
                return Err(DomainError::invalid("department_hours", "at most six working periods a day"));
            }
            let p: Vec<(Time, Time)> = periods.iter().map(|p| (p.start, p.end)).collect();
            WorkCalendar::new(&[], &p).map_err(|e| DomainError::invalid("department_hours", format!("{d}: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::from_local;
    use jiff::civil::date;

    fn at(d: i8, h: i8, m: i8) -> Timestamp {
        from_local(date(2026, 11, d).at(h, m, 0, 0))
    }

    #[test]
    fn default_policy_passes_its_own_check() {
        SlaPolicy::default().check(|_| true, |_| true).expect("the default is valid");
    }

    #[test]
    fn timers_of_a_working_limit_count_working_time() {
        let p = SlaPolicy::default();
        let cal = WorkCalendar::china_2026();
        // Monday 23 Nov 16:00 + 4 working hours: due Tuesday 10:00; 80 % = 3 h 12 min → Tuesday 09:12.
        let (due, t) = p.step(&cal, at(23, 16, 0), TimeLimit::WorkingHours(4));
        assert_eq!(due, at(24, 10, 0));
        assert_eq!(t.warn_at, at(24, 9, 12));
        assert_eq!(t.escalate_at, vec![at(24, 10, 0), at(24, 16, 0), at(25, 10, 0)]);
    }

    #[test]
    fn timers_of_a_calendar_limit_count_wall_time() {
        let p = SlaPolicy::default();
        let (due, t) = p.step(&WorkCalendar::china_2026(), at(23, 23, 0), TimeLimit::CalendarMinutes(30));
        assert_eq!(due, at(23, 23, 30));
        assert_eq!(t.warn_at, at(23, 23, 24));
        assert_eq!(t.escalate_at, vec![at(23, 23, 30), at(24, 0, 0), at(24, 0, 30)]);
    }

    #[test]
    fn a_department_with_its_own_hours_gets_its_own_clock() {
        let dept: DeptCode = "huanwei".parse().expect("valid code");
        let mut p = SlaPolicy::default();
        let t = |h| Time::constant(h, 0, 0, 0);
        p.department_hours.insert(dept.clone(), vec![WorkPeriod { start: t(7), end: t(19) }]);
        let clocks = p.clocks(&WorkCalendar::china_2026()).expect("valid hours");
        assert_eq!(clocks.department(Some(&dept)).seconds_per_day(), 12 * 3600);
        assert_eq!(clocks.department(None).seconds_per_day(), 8 * 3600);
        assert!(clocks.centre.is_working_time(at(29, 3, 0)), "the centre runs 24 h");
    }

    #[test]
    fn bad_policies_are_refused_with_the_field() {
        let bad = |f: &dyn Fn(&mut SlaPolicy), field: &str| {
            let mut p = SlaPolicy::default();
            f(&mut p);
            let e = p.check(|_| true, |_| true).expect_err("refused");
            assert_eq!(e.field(), Some(field), "{e}");
        };
        bad(&|p| p.sign = TimeLimit::WorkingHours(0), "sign");
        bad(&|p| p.handle.critical = TimeLimit::CalendarDays(400), "handle");
        bad(&|p| p.warn_percent = 100, "warn_percent");
        bad(&|p| p.check = TimeLimit::CalendarMinutes(0), "check");
        bad(&|p| p.sample_percent = 101, "sample_percent");
        bad(&|p| p.duplicate_radius_m = 5000, "duplicate_radius_m");
        bad(&|p| p.escalate_multiples = vec![2, 1], "escalate_multiples");
        bad(&|p| p.escalate_multiples = vec![1, 2, 3, 4], "escalate_multiples");
        bad(
            &|p| {
                let t = |h| Time::constant(h, 0, 0, 0);
                p.department_hours
                    .insert("huanwei".parse().expect("code"), vec![WorkPeriod { start: t(12), end: t(8) }]);
            },
            "department_hours",
        );
        let e = SlaPolicy::default().check(|_| false, |_| true).expect_err("unknown matter");
        assert_eq!(e.field(), Some("per_matter"));
    }

    #[test]
    fn urgency_picks_its_limit_and_matter_rules_win() {
        let p = SlaPolicy::default();
        assert_eq!(p.dispatch_limit(Urgency::Critical), TimeLimit::CalendarMinutes(5));
        assert_eq!(p.handle.get(Urgency::Urgent), TimeLimit::WorkingHours(4));
    }
}
