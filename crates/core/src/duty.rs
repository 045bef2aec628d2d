//! The duty roster (值班表) and who is told about a case's deadline: the posts on duty per date and
//! shift, the post a warning or an escalation rung addresses, and notification severities and channel
//! kinds. Pure rules; the store keeps the roster and the service resolves posts to people.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::Role;
use crate::calendar::local;
use crate::case::CaseState;
use crate::org::DeptCode;

/// A shift of the roster. The day shift runs 08:00–20:00; the night shift from 20:00 to 08:00 the next
/// morning belongs to the date it starts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Shift {
    /// 白班 08:00–20:00.
    Day,
    /// 夜班 20:00–08:00.
    Night,
}

impl Shift {
    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Shift::Day => "day",
            Shift::Night => "night",
        }
    }

    /// The roster date and shift an instant falls in.
    pub fn at(at: Timestamp) -> (Date, Shift) {
        let t = local(at);
        match t.hour() {
            8..=19 => (t.date(), Shift::Day),
            20..=23 => (t.date(), Shift::Night),
            _ => (t.date().yesterday().unwrap_or(t.date()), Shift::Night),
        }
    }
}

impl std::str::FromStr for Shift {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "day" => Ok(Shift::Day),
            "night" => Ok(Shift::Night),
            _ => Err(format!("unknown shift {s:?}")),
        }
    }
}

/// A post on the roster: the centre's posts, and the departments' heads and handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DutyPost {
    /// 受理员 on duty.
    IntakeOperator,
    /// 值班长 on duty.
    ShiftLeader,
    /// 派遣员 on duty.
    Dispatcher,
    /// 带班领导: the town leader on duty.
    Leader,
    /// 部门负责人: a department's head (a department handler named on the roster).
    DeptHead,
    /// A department's handler on duty.
    DeptHandler,
}

impl DutyPost {
    /// Every post.
    pub const ALL: [DutyPost; 6] = [
        DutyPost::IntakeOperator,
        DutyPost::ShiftLeader,
        DutyPost::Dispatcher,
        DutyPost::Leader,
        DutyPost::DeptHead,
        DutyPost::DeptHandler,
    ];

    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            DutyPost::IntakeOperator => "intake_operator",
            DutyPost::ShiftLeader => "shift_leader",
            DutyPost::Dispatcher => "dispatcher",
            DutyPost::Leader => "leader",
            DutyPost::DeptHead => "dept_head",
            DutyPost::DeptHandler => "dept_handler",
        }
    }

    /// The Chinese name.
    pub fn label_zh(self) -> &'static str {
        match self {
            DutyPost::IntakeOperator => "值班受理员",
            DutyPost::ShiftLeader => "值班长",
            DutyPost::Dispatcher => "值班派遣员",
            DutyPost::Leader => "带班领导",
            DutyPost::DeptHead => "部门负责人",
            DutyPost::DeptHandler => "部门值班处置人员",
        }
    }

    /// The role an account must hold to stand this post.
    pub fn role(self) -> Role {
        match self {
            DutyPost::IntakeOperator => Role::IntakeOperator,
            DutyPost::ShiftLeader => Role::ShiftLeader,
            DutyPost::Dispatcher => Role::Dispatcher,
            DutyPost::Leader => Role::Leader,
            DutyPost::DeptHead | DutyPost::DeptHandler => Role::DeptHandler,
        }
    }

    /// Whether the post belongs to a department (and a roster entry must name one).
    pub fn is_departmental(self) -> bool {
        matches!(self, DutyPost::DeptHead | DutyPost::DeptHandler)
    }
}

impl std::str::FromStr for DutyPost {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DutyPost::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| format!("unknown duty post {s:?}"))
    }
}

/// One line of the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DutyEntry {
    /// Local date the shift starts on.
    #[schema(value_type = String, format = Date)]
    pub date: Date,
    /// Day or night.
    pub shift: Shift,
    /// The post.
    pub post: DutyPost,
    /// The department, for departmental posts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<DeptCode>,
    /// Who stands it.
    pub user_id: i64,
}

/// Who is told about a step's deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addressee {
    /// A post on duty (with the department, for departmental posts).
    Post(DutyPost, Option<DeptCode>),
    /// The grid workers of the case's grid.
    GridWorkers,
}

/// Who owns the step a case is in, and so receives its yellow and red warnings.
pub fn step_owner(state: CaseState, lead: Option<&DeptCode>) -> Option<Addressee> {
    use CaseState as S;
    Some(match state {
        S::Reported => Addressee::Post(DutyPost::IntakeOperator, None),
        S::Accepted | S::Verified | S::ParkRequested | S::VoidRequested => Addressee::Post(DutyPost::ShiftLeader, None),
        S::Filed | S::ReturnRequested => Addressee::Post(DutyPost::Dispatcher, None),
        S::Dispatched | S::Handling | S::ExtensionRequested => match lead {
            Some(d) => Addressee::Post(DutyPost::DeptHandler, Some(d.clone())),
            None => Addressee::Post(DutyPost::Dispatcher, None),
        },
        S::Replied | S::Checking => Addressee::GridWorkers,
        // A closed case has a deadline only while its rectification is open: the lead department's.
        S::Closed => Addressee::Post(DutyPost::DeptHandler, Some(lead?.clone())),
        S::Parked | S::Merged | S::Void => return None,
    })
}

/// Who owns a co-department task's step: its handlers, or the dispatcher while a request of the task
/// waits for a decision.
pub fn task_owner(state: crate::cotask::TaskState, dept: &DeptCode) -> Option<Addressee> {
    use crate::cotask::TaskState as T;
    Some(match state {
        T::Dispatched | T::Handling => Addressee::Post(DutyPost::DeptHandler, Some(dept.clone())),
        T::ReturnRequested | T::ExtensionRequested => Addressee::Post(DutyPost::Dispatcher, None),
        T::Replied | T::Returned => return None,
    })
}

/// Who rung `rung` (1-based) of the escalation ladder addresses: the lead department's head, then the
/// centre's shift leader, then the town leader on duty. A case without a lead department starts at the
/// shift leader.
pub fn ladder(rung: usize, lead: Option<&DeptCode>) -> Addressee {
    match (rung, lead) {
        (1, Some(d)) => Addressee::Post(DutyPost::DeptHead, Some(d.clone())),
        (0..=2, _) => Addressee::Post(DutyPost::ShiftLeader, None),
        _ => Addressee::Post(DutyPost::Leader, None),
    }
}

/// How much a notification matters; channels pass on what reaches their threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For information.
    Info,
    /// A yellow warning.
    Warning,
    /// A breach, an escalation, an unanswered alert: someone must acknowledge it.
    Critical,
}

impl Severity {
    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            _ => Err(format!("unknown severity {s:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::from_local;
    use jiff::civil::date;

    #[test]
    fn the_night_shift_belongs_to_the_evening_it_starts() {
        let at = |d, h| from_local(date(2026, 11, d).at(h, 30, 0, 0));
        assert_eq!(Shift::at(at(24, 8)), (date(2026, 11, 24), Shift::Day));
        assert_eq!(Shift::at(at(24, 19)), (date(2026, 11, 24), Shift::Day));
        assert_eq!(Shift::at(at(24, 20)), (date(2026, 11, 24), Shift::Night));
        assert_eq!(Shift::at(at(25, 3)), (date(2026, 11, 24), Shift::Night));
    }

    #[test]
    fn warnings_go_to_the_step_owner_and_the_ladder_climbs() {
        let d: DeptCode = "huanwei".parse().expect("code");
        assert_eq!(
            step_owner(CaseState::Handling, Some(&d)),
            Some(Addressee::Post(DutyPost::DeptHandler, Some(d.clone())))
        );
        assert_eq!(step_owner(CaseState::Replied, Some(&d)), Some(Addressee::GridWorkers));
        assert_eq!(step_owner(CaseState::Parked, Some(&d)), None);
        assert_eq!(ladder(1, Some(&d)), Addressee::Post(DutyPost::DeptHead, Some(d.clone())));
        assert_eq!(ladder(1, None), Addressee::Post(DutyPost::ShiftLeader, None));
        assert_eq!(ladder(2, Some(&d)), Addressee::Post(DutyPost::ShiftLeader, None));
        assert_eq!(ladder(3, Some(&d)), Addressee::Post(DutyPost::Leader, None));
    }

    #[test]
    fn names_round_trip() {
        for p in DutyPost::ALL {
            assert_eq!(p.as_str().parse::<DutyPost>(), Ok(p));
            assert_eq!(serde_json::to_value(p).expect("ser"), serde_json::json!(p.as_str()));
        }
    }
}
