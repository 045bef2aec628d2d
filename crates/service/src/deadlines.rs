//! Deadlines: the SLA policy an administrator edits, and the timers that act on it. Every event that
//! sets a step's deadline carries the step's timers (computed once, by `core::case::decide`); a reader
//! of the global event log ([`Services::schedule_timers`]) turns them into durable jobs keyed by case,
//! deadline and timer, so however many nodes read the log, each timer is one job (the reading itself is
//! [`crate::readers`]'s, shared with the KPI counters). A deadline's timers
//! are chained: the reader enqueues the first, and each timer job, while the case is still set on that
//! deadline, enqueues the next before it acts (a step done in time costs one job, not five). When a
//! job runs it acts only if the case still has that deadline, and only if the effect is not there yet:
//!
//! - `sla.warn`: a yellow (at the policy's share of the limit) or red (at the deadline) warning event,
//!   and a notification to whoever owns the step, per the duty roster;
//! - `sla.escalate`: rung k of the ladder (department head → centre shift leader → town leader): a
//!   督办 event by the system if the case is below level k, and a notification to that rung.
//!
//! A job can run twice (a lease that ran out); the event is then found in the history and the
//! notifications are deduplicated per recipient, so each effect happens once.
//!
//! The same reader hands each event to [`crate::workflow`] too (a closed primary's followers) and to
//! [`crate::tickets`] (replies to upstream systems), and runs for closed cases while a rectification
//! (整改) gives them a deadline.

use civicgrid_core::access::{Actor, Role};
use civicgrid_core::case::{Case, CaseId, CaseState, CoTask, Command, WarnLevel};
use civicgrid_core::duty::{self, Severity};
use civicgrid_core::org::DeptCode;
pub use civicgrid_core::sla::Timer;
use civicgrid_core::sla::{SlaPolicy, StepTimers};
use civicgrid_store::{CaseFilter, CaseLogEntry, Job, NewJob, PageRequest, StoreError};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::accounts::require;
use crate::notify::Alert;
use crate::{ServiceError, ServiceResult, Services};

/// The log reader that schedules timers.
pub const TIMERS_CONSUMER: &str = "sla_timers";
/// Job kind of a yellow or red warning.
pub const WARN: &str = "sla.warn";
/// Job kind of a rung of the escalation ladder.
pub const ESCALATE: &str = "sla.escalate";

/// Input of a timer job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerPayload {
    /// The case.
    pub case_id: CaseId,
    /// The deadline the timer belongs to; the timer does nothing once the case has another.
    pub due_at: Timestamp,
    /// What to do.
    pub timer: Timer,
    /// The co-department whose task the deadline belongs to; absent for the case's own step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<DeptCode>,
}

impl TimerPayload {
    /// The job's effect key: one job per case (and co-department task), deadline and timer.
    pub fn effect_key(&self) -> String {
        let what = match self.timer {
            Timer::Warn(WarnLevel::Yellow) => "yellow".to_owned(),
            Timer::Warn(WarnLevel::Red) => "red".to_owned(),
            Timer::Rung(k) => format!("rung{k}"),
        };
        let task = self.task.as_ref().map(|d| format!("{d}:")).unwrap_or_default();
        format!("sla:{}:{task}{}:{what}", self.case_id, self.due_at.as_microsecond())
    }

    fn kind(&self) -> &'static str {
        match self.timer {
            Timer::Warn(_) => WARN,
            Timer::Rung(_) => ESCALATE,
        }
    }
}

/// The job of the timer that follows `after` on the deadline `due_at` (the first timer when `None`),
/// keyed so that it exists once however often the deadline is read; `None` after the last one.
fn timer_job(
    case_id: CaseId,
    task: Option<&DeptCode>,
    due_at: Timestamp,
    timers: &StepTimers,
    after: Option<Timer>,
) -> ServiceResult<Option<NewJob>> {
    let schedule = timers.schedule(due_at);
    let next = match after {
        None => schedule.first(),
        Some(t) => schedule.iter().skip_while(|(_, s)| *s != t).nth(1),
    };
    let Some(&(run_at, timer)) = next else { return Ok(None) };
    let p = TimerPayload { case_id, due_at, timer, task: task.cloned() };
    let payload = serde_json::to_value(&p).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(Some(NewJob { kind: p.kind().to_owned(), effect_key: p.effect_key(), payload, run_at, max_attempts: 8 }))
}

/// The first timer jobs of a case's unfinished co-department tasks.
fn task_timer_jobs(case_id: CaseId, tasks: &[CoTask]) -> ServiceResult<Vec<NewJob>> {
    let mut jobs = Vec::new();
    for t in tasks.iter().filter(|t| !t.state.is_finished()) {
        if let (Some(due), Some(timers)) = (t.due_at, &t.timers) {
            jobs.extend(timer_job(case_id, Some(&t.dept), due, timers, None)?);
        }
    }
    Ok(jobs)
}

/// Posts that may read the SLA policy.
const POLICY_READERS: [Role; 8] = [
    Role::Admin,
    Role::ShiftLeader,
    Role::Dispatcher,
    Role::Commander,
    Role::Supervisor,
    Role::Leader,
    Role::Analyst,
    Role::IntakeOperator,
];

impl Services {
    /// The SLA policy in force.
    pub fn sla_policy(&self, actor: &Actor) -> ServiceResult<SlaPolicy> {
        require(actor, &POLICY_READERS)?;
        Ok(self.world().sla.clone())
    }

    /// Replaces the SLA policy (administrators). New deadlines follow it at once on this node, and on
    /// other nodes once their refresh sees the reference data's version move (within seconds);
    /// deadlines already set are kept.
    pub async fn set_sla_policy(&self, actor: &Actor, policy: SlaPolicy) -> ServiceResult<SlaPolicy> {
        require(actor, &[Role::Admin])?;
        let world = self.world();
        policy.check(|m| world.catalog.matter(*m).is_some(), |d| world.has_department(d))?;
        self.store.put_sla_policy(&policy, actor.user_id, self.clock.now()).await?;
        self.reload_world().await?;
        tracing::info!(admin = actor.user_id, "SLA policy replaced");
        Ok(policy)
    }

    /// Where the timer scheduler stands in the event log; `None` on its first run, which starts at the
    /// end of the log and schedules the timers of every open case instead of reading the whole history.
    pub(crate) async fn timer_reader_position(&self) -> ServiceResult<Option<i64>> {
        if let Some(position) = self.store.consumer_position(TIMERS_CONSUMER).await? {
            return Ok(Some(position));
        }
        let end = self.store.last_seq().await?;
        self.schedule_open_cases().await?;
        self.store.advance_consumer(TIMERS_CONSUMER, end).await?;
        Ok(None)
    }

    /// Enqueues the jobs of a read of the log (`entries`, all after the scheduler's position) and moves
    /// the scheduler to `last`, in one transaction: the first timer of every deadline set, the closing
    /// of a closed primary's followers, and replies to upstream systems.
    pub(crate) async fn schedule_entries(&self, entries: &[&CaseLogEntry], last: i64) -> ServiceResult<()> {
        let mut jobs = Vec::new();
        for e in entries {
            jobs.extend(Self::merge_job(e.case_id, &e.event)?);
            jobs.extend(self.upstream_reply_job(e.case_id, &e.event).await?);
            // A finished case has a deadline only while a rectification is open.
            if e.event.to == CaseState::Parked {
                continue;
            }
            if let (Some(due), Some(timers)) = (e.event.due_at, &e.event.timers) {
                jobs.extend(timer_job(e.case_id, None, due, timers, None)?);
            }
            if let Some(tasks) = &e.event.tasks {
                jobs.extend(task_timer_jobs(e.case_id, tasks)?);
            }
        }
        self.store.enqueue_many(&jobs, Some((TIMERS_CONSUMER, last)), self.clock.now()).await?;
        Ok(())
    }

    async fn schedule_open_cases(&self) -> ServiceResult<()> {
        let states = CaseState::ALL.into_iter().filter(|s| s.is_open() && *s != CaseState::Parked).collect();
        let filter = CaseFilter { states, ..CaseFilter::default() };
        let mut page = PageRequest { before: None, limit: 500 };
        loop {
            let cases = self.store.list_cases(&filter, page).await?;
            let mut jobs = Vec::new();
            for c in &cases.items {
                if let (Some(due), Some(timers)) = (c.status.due_at, &c.status.timers) {
                    jobs.extend(timer_job(c.id, None, due, timers, None)?);
                }
                jobs.extend(task_timer_jobs(c.id, &c.status.tasks)?);
            }
            self.store.enqueue_many(&jobs, None, self.clock.now()).await?;
            match cases.next {
                Some(next) => page.before = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Enqueues the timer after `p` on its deadline while the case (or its task) is still set on that
    /// deadline: a deadline's timers are one job at a time, each handing on to the next, so a step
    /// finished before its first timer costs one job, not one per timer. Answers the case as it read
    /// it, for the timer to act on.
    async fn chain_timer(&self, p: &TimerPayload) -> ServiceResult<Option<Case>> {
        let Some(case) = self.store.case(p.case_id).await? else { return Ok(None) };
        if let Some(timers) = step_timers(&case, p.task.as_ref(), p.due_at)
            && let Some(job) = timer_job(p.case_id, p.task.as_ref(), p.due_at, timers, Some(p.timer))?
        {
            self.store.enqueue(&job, self.clock.now()).await?;
        }
        Ok(Some(case))
    }

    /// Runs a timer job: the event (once), then the notifications (once per recipient). Rung k brings
    /// the case to escalation level k, whatever order the rungs run in. A co-department task's timer
    /// warns on the task (an event naming it) and escalates by notification only: 督办 levels belong
    /// to the case.
    /// `read` is the case as the caller has just read it, if it has: the first attempt acts on it.
    pub(crate) async fn fire_timer(&self, p: &TimerPayload, mut read: Option<Case>) -> ServiceResult<()> {
        let system = Actor::system("sla_timer");
        for _ in 0..10 {
            let case = match read.take() {
                Some(case) => case,
                None => match self.store.case(p.case_id).await? {
                    Some(case) => case,
                    None => return Ok(()),
                },
            };
            let st = &case.status;
            if st.state == CaseState::Parked || timer_due(&case, p.task.as_ref()) != Some(p.due_at) {
                return Ok(());
            }
            // Only a warning reads the history (is it there already?).
            let history =
                if matches!(p.timer, Timer::Warn(_)) { self.store.case_events(case.id).await? } else { Vec::new() };
            let action = p.timer.action(st, &history, p.due_at, p.task.as_ref());
            let Some(action) = action else {
                return self.raise(self.timer_alert(&case, p)).await;
            };
            let cmd = Command { task: p.task.clone(), ..Command::new(action).because(p.timer.reason()) };
            match self.transition(&system, case.id, &cmd, Some(st.version)).await {
                Ok(_) | Err(ServiceError::Store(StoreError::Conflict { .. })) => continue,
                Err(ServiceError::Domain(e)) => {
                    tracing::info!(case = case.id, reason = %e, "timer not applicable");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Err(ServiceError::Internal(format!("case {} kept changing under its timer", p.case_id)))
    }

    fn timer_alert(&self, case: &Case, p: &TimerPayload) -> Alert {
        let world = self.world();
        let matter = world.catalog.matter(case.facts.matter).map(|m| m.name_zh.clone()).unwrap_or_default();
        let due = civicgrid_core::calendar::local(p.due_at).strftime("%m-%d %H:%M").to_string();
        let task = p.task.as_ref().and_then(|d| case.status.tasks.iter().find(|t| &t.dept == d));
        let (state, owner, lead) = match task {
            Some(t) => (
                format!("{} 协办任务{}", t.dept, t.state.label_zh()),
                duty::task_owner(t.state, &t.dept),
                Some(&t.dept),
            ),
            None => (
                case.status.state.label_zh().to_owned(),
                duty::step_owner(case.status.state, case.status.lead_dept.as_ref()),
                case.status.lead_dept.as_ref(),
            ),
        };
        let (kind, severity, addressee, title) = match p.timer {
            Timer::Warn(WarnLevel::Yellow) => {
                ("sla_warning", Severity::Warning, owner, format!("黄灯预警：案卷 {} {state}，{due} 到期", case.number))
            }
            Timer::Warn(WarnLevel::Red) => (
                "sla_breach",
                Severity::Critical,
                owner,
                format!("红灯：案卷 {} {state}已超时（{due} 到期）", case.number),
            ),
            Timer::Rung(k) => (
                "escalation",
                Severity::Critical,
                Some(duty::ladder(usize::from(k), lead)),
                format!("督办（第{k}级）：案卷 {} {state}超时未办", case.number),
            ),
        };
        Alert {
            dedup_key: p.effect_key(),
            kind,
            severity,
            case: Some(case.clone()),
            addressee,
            title,
            body: format!("{matter} · {} · {}", case.facts.address, case.facts.description),
        }
    }
}

/// The deadline and timers of the case's own step, or of its co-department task while unfinished.
fn step_of<'c>(case: &'c Case, task: Option<&DeptCode>) -> Option<(Option<Timestamp>, Option<&'c StepTimers>)> {
    match task {
        None => Some((case.status.due_at, case.status.timers.as_ref())),
        Some(d) => {
            let t = case.status.tasks.iter().find(|t| &t.dept == d).filter(|t| !t.state.is_finished())?;
            Some((t.due_at, t.timers.as_ref()))
        }
    }
}

/// The timers of the deadline `due`, if the case (or its task) is still set on it.
fn step_timers<'c>(case: &'c Case, task: Option<&DeptCode>, due: Timestamp) -> Option<&'c StepTimers> {
    let (now_due, timers) = step_of(case, task)?;
    timers.filter(|_| now_due == Some(due))
}

/// The deadline a timer of the case (or of its co-department task) is now set on.
fn timer_due(case: &Case, task: Option<&DeptCode>) -> Option<Timestamp> {
    step_of(case, task)?.0
}

/// The handler of both timer kinds: hands on to the deadline's next timer, then fires this one. The
/// next job is enqueued first (keyed, so a rerun adds nothing), so that a timer that keeps failing
/// does not hold back the ones after it.
pub(crate) async fn run_timer(services: &Services, job: &Job) -> Result<(), String> {
    let p: TimerPayload = serde_json::from_value(job.payload.clone()).map_err(|e| e.to_string())?;
    let case = services.chain_timer(&p).await.map_err(|e| e.to_string())?;
    services.fire_timer(&p, case).await.map_err(|e| e.to_string())
}
