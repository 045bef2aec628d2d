//! Co-department tasks (协办任务): the part of the case state machine that belongs to each 协办
//! department. [`crate::case::decide`] hands every command that names a `task` to [`decide_task`];
//! nothing else changes a task.
//!
//! Each co-department signs, handles and replies on its own deadline (counted on its own working
//! clock), may ask to return its assignment (退单) or for more time (延期), and the dispatcher decides
//! those requests for that task alone. The lead's pending requests do not stop a co-department, and a
//! co-department's do not stop the lead. The case becomes 待核查 (replied) only when the lead and every
//! co-department whose task was not returned have replied; whichever reply comes last moves it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::calendar::WorkCalendar;
use crate::case::{Action, CaseFacts, CaseState, CaseStatus, Context, TransitionError};
use crate::org::DeptCode;
use crate::sla::StepTimers;

/// Where a co-department's task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// 待签收: sent, waiting for the co-department to sign.
    Dispatched,
    /// 处置中: the co-department is at work.
    Handling,
    /// 退单申请: it asks to be released; the dispatcher decides.
    ReturnRequested,
    /// 延期申请: it asks for more time; the dispatcher decides.
    ExtensionRequested,
    /// 已反馈: its part is done.
    Replied,
    /// 已退回: released by the dispatcher; the case no longer waits for it.
    Returned,
}

impl TaskState {
    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Dispatched => "dispatched",
            TaskState::Handling => "handling",
            TaskState::ReturnRequested => "return_requested",
            TaskState::ExtensionRequested => "extension_requested",
            TaskState::Replied => "replied",
            TaskState::Returned => "returned",
        }
    }

    /// The Chinese label shown in the UI.
    pub fn label_zh(self) -> &'static str {
        match self {
            TaskState::Dispatched => "待签收",
            TaskState::Handling => "处置中",
            TaskState::ReturnRequested => "退单申请",
            TaskState::ExtensionRequested => "延期申请",
            TaskState::Replied => "已反馈",
            TaskState::Returned => "已退回",
        }
    }

    /// Replied or returned: the case no longer waits for this task.
    pub fn is_finished(self) -> bool {
        matches!(self, TaskState::Replied | TaskState::Returned)
    }
}

/// One co-department's task on a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CoTask {
    /// The co-department.
    #[schema(value_type = String)]
    pub dept: DeptCode,
    /// Where the task is.
    pub state: TaskState,
    /// Deadline of the task's current step (signing, then handling); none once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_at: Option<Timestamp>,
    /// When the current step's warning and escalations fall due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timers: Option<StepTimers>,
    /// The task's handling deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub handle_due_at: Option<Timestamp>,
    /// Its timers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle_timers: Option<StepTimers>,
    /// Working hours a pending extension request asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_extension_hours: Option<u32>,
    /// The state a pending request came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_from: Option<TaskState>,
    /// When the co-department replied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub replied_at: Option<Timestamp>,
}

impl CoTask {
    /// Whether the task's current step is past its deadline at `now`.
    pub fn is_overdue(&self, now: Timestamp) -> bool {
        !self.state.is_finished() && self.due_at.is_some_and(|d| d < now)
    }
}

/// Fresh tasks for the co-departments of a dispatch: each signs and handles on its own clock.
pub fn dispatch_tasks(facts: &CaseFacts, co: &[DeptCode], ctx: &Context<'_>) -> Vec<CoTask> {
    co.iter()
        .map(|dept| {
            let clock = ctx.clocks.department(Some(dept));
            let (due, timers) = ctx.sla.step(clock, ctx.now, ctx.sla.sign);
            let (handle_due, handle_timers) = ctx.sla.handle_step(clock, ctx.now, facts);
            CoTask {
                dept: dept.clone(),
                state: TaskState::Dispatched,
                due_at: Some(due),
                timers: Some(timers),
                handle_due_at: Some(handle_due),
                handle_timers: Some(handle_timers),
                requested_extension_hours: None,
                request_from: None,
                replied_at: None,
            }
        })
        .collect()
}

/// The tasks after a parked case resumes at `now`: each unfinished task gets back the working time it
/// had left when the case was parked.
pub fn resume_tasks(status: &CaseStatus, ctx: &Context<'_>) -> Option<Vec<CoTask>> {
    let parked = status.parked_at?;
    if status.tasks.is_empty() {
        return None;
    }
    let shift = |clock: &WorkCalendar, due: Option<Timestamp>| due.map(|d| ctx.sla.resume(clock, parked, ctx.now, d));
    let tasks = status
        .tasks
        .iter()
        .map(|t| {
            if t.state.is_finished() {
                return t.clone();
            }
            let clock = ctx.clocks.department(Some(&t.dept));
            let (due_at, timers) = shift(clock, t.due_at).unzip();
            let (handle_due_at, handle_timers) = shift(clock, t.handle_due_at).unzip();
            CoTask { due_at, timers, handle_due_at, handle_timers, ..t.clone() }
        })
        .collect();
    Some(tasks)
}

/// Whether every task is replied or returned.
pub fn all_finished(tasks: &[CoTask]) -> bool {
    tasks.iter().all(|t| t.state.is_finished())
}

/// What a task command decided: the task list after it, and whether the case is now replied (the
/// lead had replied and this was the last task the case waited for).
#[derive(Debug)]
pub struct TaskOutcome {
    /// Every task, the changed one included.
    pub tasks: Vec<CoTask>,
    /// The case moves to 待核查.
    pub case_replied: bool,
}

/// Decides a command aimed at `dept`'s task. The case's own state is not changed here, except that
/// the last reply the case waited for makes it replied ([`TaskOutcome::case_replied`]).
pub fn decide_task(
    status: &CaseStatus,
    action: &Action,
    dept: &DeptCode,
    ctx: &Context<'_>,
) -> Result<TaskOutcome, TransitionError> {
    use TaskState as T;
    let index = status
        .tasks
        .iter()
        .position(|t| &t.dept == dept)
        .ok_or_else(|| TransitionError::Invalid(format!("{dept} is not a co-department of this case")))?;
    let task = &status.tasks[index];
    let illegal = || TransitionError::IllegalTask { dept: dept.clone(), from: task.state, action: action.name() };
    if !status.state.departments_at_work() {
        return Err(TransitionError::Illegal { from: status.state, action: action.name() });
    }
    let (now, sla) = (ctx.now, ctx.sla);
    let clock = ctx.clocks.department(Some(dept));
    let step = |limit| {
        let (at, timers) = sla.step(clock, now, limit);
        (Some(at), Some(timers))
    };
    let handle = (task.handle_due_at, task.handle_timers.clone());
    let mut next = task.clone();
    let mut set = |state: TaskState, (due_at, timers): (Option<Timestamp>, Option<StepTimers>)| {
        next.state = state;
        next.due_at = due_at;
        next.timers = timers;
    };
    match (action, task.state) {
        (Action::Sign, T::Dispatched) => set(T::Handling, handle),
        (Action::RejectAssignment, T::Dispatched | T::Handling) => {
            set(T::ReturnRequested, (task.due_at, task.timers.clone()));
            next.request_from = Some(task.state);
        }
        (Action::ApproveReturn, T::ReturnRequested) => {
            set(T::Returned, (None, None));
            next.request_from = None;
        }
        (Action::DenyReturn, T::ReturnRequested) => {
            match task.request_from {
                Some(T::Dispatched) => set(T::Dispatched, step(sla.sign)),
                _ => set(T::Handling, handle),
            }
            next.request_from = None;
        }
        (Action::RequestExtension { working_hours }, T::Handling) => {
            crate::case::check_extension_hours(*working_hours)?;
            set(T::ExtensionRequested, handle);
            next.requested_extension_hours = Some(*working_hours);
            next.request_from = Some(T::Handling);
        }
        (Action::ApproveExtension, T::ExtensionRequested) => {
            let hours = task.requested_extension_hours.unwrap_or(0);
            let (at, timers) = sla.extend(clock, now, task.handle_due_at, hours);
            let extended = (Some(at), Some(timers));
            set(T::Handling, extended.clone());
            (next.handle_due_at, next.handle_timers) = extended;
            next.requested_extension_hours = None;
            next.request_from = None;
        }
        (Action::DenyExtension, T::ExtensionRequested) => {
            set(T::Handling, handle);
            next.requested_extension_hours = None;
            next.request_from = None;
        }
        (Action::Reply, T::Handling) => {
            set(T::Replied, (None, None));
            next.replied_at = Some(now);
        }
        (Action::Warn { .. }, s) if !s.is_finished() && task.due_at.is_some() => {}
        _ => return Err(illegal()),
    }
    let mut tasks = status.tasks.clone();
    tasks[index] = next;
    let case_replied = status.state == CaseState::Handling && status.lead_replied_at.is_some() && all_finished(&tasks);
    Ok(TaskOutcome { tasks, case_replied })
}
