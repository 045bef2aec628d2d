//! Cases (案卷) and their state machine: the one place that decides which change may happen to a case,
//! what it does to the case, and what event records it.
//!
//! The flow is event-sourced in two steps:
//! - [`decide`] takes the current [`CaseStatus`], an [`Action`] and a [`Context`] (now, calendar, SLA
//!   policy) and either refuses with a typed [`TransitionError`] or returns the [`CaseEvent`] to append.
//!   Deadlines are computed here, once, and written into the event.
//! - [`CaseStatus::apply`] folds an event into the status. It is pure and needs no calendar, so
//!   [`CaseStatus::replay`] rebuilds the stored row exactly from the stored events.
//!
//! A case's facts (what, where, who reported) never change after the report; everything that does change
//! lives in [`CaseStatus`].

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::codes::{ComponentId, GridCode, MatterCode, MicroGridCode};
pub use crate::cotask::{CoTask, TaskState};
use crate::org::DeptCode;
use crate::routing::Route;
use crate::sla::{Clocks, SlaPolicy, StepTimers};

/// Database identity of a case.
pub type CaseId = i64;

/// Where a case came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Grid worker patrol (网格巡查).
    GridPatrol,
    /// 12345 government hotline.
    Hotline12345,
    /// Citizen H5 page / mini-program.
    CitizenH5,
    /// 110 non-police diversion.
    Police110,
    /// IoT sensor alarm.
    Iot,
    /// Video or drone.
    Video,
    /// Assigned by a leader.
    Leader,
    /// An opinion or suggestion (意见建议) left at a deputies' liaison station, in a suggestion box, or
    /// online: answered by a department, not fixed on site.
    Suggestion,
}

impl Source {
    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::GridPatrol => "grid_patrol",
            Source::Hotline12345 => "hotline12345",
            Source::CitizenH5 => "citizen_h5",
            Source::Police110 => "police110",
            Source::Iot => "iot",
            Source::Video => "video",
            Source::Leader => "leader",
            Source::Suggestion => "suggestion",
        }
    }

    /// Reports from the public (12345, the H5 page, 110 diversion, suggestions): voiding one needs the
    /// shift leader, and a poor rating of one opens a rectification.
    pub fn is_public(self) -> bool {
        matches!(self, Source::Hotline12345 | Source::CitizenH5 | Source::Police110 | Source::Suggestion)
    }

    /// All sources, for iteration.
    pub const ALL: [Source; 8] = [
        Source::GridPatrol,
        Source::Hotline12345,
        Source::CitizenH5,
        Source::Police110,
        Source::Iot,
        Source::Video,
        Source::Leader,
        Source::Suggestion,
    ];
}

/// How urgent a case is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Normal.
    #[default]
    Normal,
    /// Urgent (紧急: shorter limits).
    Urgent,
    /// Very urgent (特急: the shortest limits).
    Critical,
}

/// The level of a deadline warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WarnLevel {
    /// 黄灯: most of the step's time has passed.
    Yellow,
    /// 红灯: the step is past its deadline.
    Red,
}

/// A WGS84 point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GeoPoint {
    /// Longitude, degrees east.
    pub lon: f64,
    /// Latitude, degrees north.
    pub lat: f64,
}

impl GeoPoint {
    /// Whether both coordinates are finite and in range (longitude ±180°, latitude ±90°).
    pub fn is_wgs84(&self) -> bool {
        self.lon.is_finite() && self.lat.is_finite() && self.lon.abs() <= 180.0 && self.lat.abs() <= 90.0
    }
}

/// Metadata of an attached file (the bytes live elsewhere). An attachment uploaded to civicgrid is
/// named by its `id`; its other fields are then taken from the upload, not from the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attachment {
    /// The uploaded attachment (`POST /api/v1/attachments`), when it was uploaded here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// File name as uploaded.
    pub name: String,
    /// MIME type, e.g. image/jpeg.
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the content, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// When the photo was taken (its EXIF time), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub taken_at: Option<Timestamp>,
}

/// Most attachments on a report or a transition.
pub const MAX_ATTACHMENTS: usize = 20;
/// Largest attachment, in bytes (a phone photo or a scanned document).
pub const MAX_ATTACHMENT_BYTES: u64 = 20 << 20;
/// Longest reason accepted, in characters.
pub const MAX_REASON: usize = 1000;
/// The highest escalation level (督办): department head → centre shift leader → town leader.
pub const MAX_ESCALATION_LEVEL: i32 = 3;

/// Checks attachment metadata: at most [`MAX_ATTACHMENTS`], names that are file names, a known
/// image/PDF type, a size within [`MAX_ATTACHMENT_BYTES`], a hex SHA-256 when one is given.
pub fn check_attachments(field: &str, items: &[Attachment]) -> Result<Vec<Attachment>, crate::DomainError> {
    use crate::DomainError;
    if items.len() > MAX_ATTACHMENTS {
        return Err(DomainError::invalid(field, format!("at most {MAX_ATTACHMENTS} attachments")));
    }
    items
        .iter()
        .map(|a| {
            let name = crate::text::file_name(field, &a.name)?;
            if !matches!(a.mime.as_str(), "image/jpeg" | "image/png" | "image/webp" | "application/pdf") {
                return Err(DomainError::invalid(field, "attachments are JPEG, PNG or WebP images, or PDF"));
            }
            if a.size == 0 || a.size > MAX_ATTACHMENT_BYTES {
                return Err(DomainError::invalid(field, format!("1 byte to {} MiB", MAX_ATTACHMENT_BYTES >> 20)));
            }
            if a.sha256.as_deref().is_some_and(|h| h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit())) {
                return Err(DomainError::invalid(field, "sha256 is 64 hex digits"));
            }
            Ok(Attachment { name, ..a.clone() })
        })
        .collect()
}

/// Who reported a case.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct Reporter {
    /// The user, when reported by a logged-in user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// Name given by an outside reporter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Phone number given by an outside reporter (personal data: masked for most roles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// SHA-256 (hex) of the query code a public reporter was given with their tracking number; it
    /// lets them follow and rate their report. Never shown (stripped from every answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub tracking: Option<String>,
}

/// The facts of a case, fixed when it is reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CaseFacts {
    /// What kind of problem.
    pub matter: MatterCode,
    /// The component concerned, for component faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_id: Option<ComponentId>,
    /// Channel it came in on.
    pub source: Source,
    /// Urgency.
    pub urgency: Urgency,
    /// Free-text description.
    pub description: String,
    /// Where.
    pub location: GeoPoint,
    /// Address text.
    pub address: String,
    /// The unit grid the location falls in.
    pub grid: GridCode,
    /// The micro-grid the location falls in.
    pub micro_grid: MicroGridCode,
    /// Who reported.
    pub reporter: Reporter,
    /// Photos and other files.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// When it was reported.
    #[schema(value_type = String, format = DateTime)]
    pub reported_at: Timestamp,
    /// The upstream ticket (12345, 110) it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<crate::ticket::Upstream>,
}

/// Where a case is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// 待受理: reported, waiting for intake.
    Reported,
    /// 核实中: intake sent the report to the grid's worker for an on-site check before filing.
    Checking,
    /// 待立案: accepted and checked, waiting for filing.
    Accepted,
    /// 待派遣: filed, waiting for dispatch.
    Filed,
    /// 待签收: dispatched, waiting for the lead department to sign for it.
    Dispatched,
    /// 处置中: the lead department is handling it.
    Handling,
    /// 退单申请: the department asks to return the assignment.
    ReturnRequested,
    /// 延期申请: the department asks for more time.
    ExtensionRequested,
    /// 挂账申请: the department asks to park the case; the shift leader decides, the clock runs on.
    ParkRequested,
    /// 挂账: parked (e.g. needs budget); the clock is stopped.
    Parked,
    /// 待核查: the department replied, waiting for on-site verification.
    Replied,
    /// 待结案: verified fixed, waiting for closure.
    Verified,
    /// 已结案: closed.
    Closed,
    /// 已并单: merged into another case (the primary), which it follows; it closes with the primary.
    Merged,
    /// 作废申请: intake asks to void a public report; the shift leader decides.
    VoidRequested,
    /// 已作废: voided (invalid report or duplicate).
    Void,
}

impl CaseState {
    /// Every state, for iteration.
    pub const ALL: [CaseState; 16] = [
        CaseState::Reported,
        CaseState::Checking,
        CaseState::Accepted,
        CaseState::Filed,
        CaseState::Dispatched,
        CaseState::Handling,
        CaseState::ReturnRequested,
        CaseState::ExtensionRequested,
        CaseState::ParkRequested,
        CaseState::Parked,
        CaseState::Replied,
        CaseState::Verified,
        CaseState::Closed,
        CaseState::Merged,
        CaseState::VoidRequested,
        CaseState::Void,
    ];

    /// The states in which someone still has to act: open, and not merged into another case (a
    /// follower moves with its primary). The queues, the big screen and their indexes count these.
    pub const ACTIVE: [CaseState; 13] = [
        CaseState::Reported,
        CaseState::Checking,
        CaseState::Accepted,
        CaseState::Filed,
        CaseState::Dispatched,
        CaseState::Handling,
        CaseState::ReturnRequested,
        CaseState::ExtensionRequested,
        CaseState::ParkRequested,
        CaseState::Parked,
        CaseState::Replied,
        CaseState::Verified,
        CaseState::VoidRequested,
    ];

    /// Closed and void cases are finished: no clock runs on them.
    pub fn is_open(self) -> bool {
        !matches!(self, CaseState::Closed | CaseState::Void)
    }

    /// States in which a request waits for someone's decision; the state before it is kept in
    /// [`CaseStatus::request_from`].
    pub fn is_request(self) -> bool {
        matches!(
            self,
            CaseState::ReturnRequested
                | CaseState::ExtensionRequested
                | CaseState::ParkRequested
                | CaseState::VoidRequested
        )
    }

    /// States in which the departments work: co-department tasks may act (a pending request of the
    /// lead department does not block them).
    pub fn departments_at_work(self) -> bool {
        matches!(
            self,
            CaseState::Dispatched
                | CaseState::Handling
                | CaseState::ReturnRequested
                | CaseState::ExtensionRequested
                | CaseState::ParkRequested
        )
    }

    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Reported => "reported",
            CaseState::Checking => "checking",
            CaseState::Accepted => "accepted",
            CaseState::Filed => "filed",
            CaseState::Dispatched => "dispatched",
            CaseState::Handling => "handling",
            CaseState::ReturnRequested => "return_requested",
            CaseState::ExtensionRequested => "extension_requested",
            CaseState::ParkRequested => "park_requested",
            CaseState::Parked => "parked",
            CaseState::Replied => "replied",
            CaseState::Verified => "verified",
            CaseState::Closed => "closed",
            CaseState::Merged => "merged",
            CaseState::VoidRequested => "void_requested",
            CaseState::Void => "void",
        }
    }

    /// The Chinese label shown in the UI.
    pub fn label_zh(self) -> &'static str {
        match self {
            CaseState::Reported => "待受理",
            CaseState::Checking => "核实中",
            CaseState::Accepted => "待立案",
            CaseState::Filed => "待派遣",
            CaseState::Dispatched => "待签收",
            CaseState::Handling => "处置中",
            CaseState::ReturnRequested => "退单申请",
            CaseState::ExtensionRequested => "延期申请",
            CaseState::ParkRequested => "挂账申请",
            CaseState::Parked => "挂账",
            CaseState::Replied => "待核查",
            CaseState::Verified => "待结案",
            CaseState::Closed => "已结案",
            CaseState::Merged => "已并单",
            CaseState::VoidRequested => "作废申请",
            CaseState::Void => "已作废",
        }
    }
}

impl Satisfaction {
    /// The rating as 1 (very dissatisfied) to 5 (very satisfied).
    pub fn score(self) -> u8 {
        match self {
            Satisfaction::VerySatisfied => 5,
            Satisfaction::Satisfied => 4,
            Satisfaction::BasicallySatisfied => 3,
            Satisfaction::Dissatisfied => 2,
            Satisfaction::VeryDissatisfied => 1,
        }
    }

    /// A poor rating (1–2 of 5): dissatisfied or very dissatisfied.
    pub fn is_poor(self) -> bool {
        self.score() <= 2
    }
}

impl fmt::Display for CaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CaseState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CaseState::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| format!("unknown case state {s:?}"))
    }
}

/// How a case was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloseType {
    /// Handled within the deadline.
    Normal,
    /// Handled after the deadline.
    Late,
}

/// A citizen's rating on call-back (回访), five levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Satisfaction {
    /// 非常满意.
    VerySatisfied,
    /// 满意.
    Satisfied,
    /// 基本满意.
    BasicallySatisfied,
    /// 不满意.
    Dissatisfied,
    /// 非常不满意.
    VeryDissatisfied,
}

/// A change someone asks for. `Report` only ever comes from creating a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// 上报: the case was created.
    Report,
    /// 受理: intake accepts the report as genuine.
    Accept,
    /// 核实: intake sends a public report to the grid's worker for an on-site check before filing.
    RequestCheck,
    /// 核实属实: the grid worker found the problem on site; the case is filed (立案).
    ConfirmCheck,
    /// 核实不属实: the grid worker found nothing on site; the case is void, with the worker's photos
    /// (reason required).
    RefuteCheck,
    /// 自行处置: the grid worker who reported the problem fixed it on the spot (after photos as
    /// evidence); the case closes, or waits for a sampled verification by someone else.
    FixOnSpot,
    /// 并单: merge into the primary case `into`, which this case then follows.
    Merge {
        /// The primary case.
        #[schema(value_type = i64)]
        into: CaseId,
    },
    /// 拆单: undo a merge; the case goes on on its own from where it was (reason required).
    Split,
    /// The system closes a merged case when its primary closes.
    CloseWithPrimary,
    /// 整改反馈: the lead department reports the rectification a poor rating asked for (reason
    /// required).
    Rectify,
    /// 立案: the shift leader files it.
    File,
    /// 派遣: send to a lead department (主办) and co-departments (协办).
    Dispatch {
        /// Lead department.
        lead: DeptCode,
        /// Co-departments.
        #[serde(default)]
        co: Vec<DeptCode>,
    },
    /// 签收: the lead department signs for the case.
    Sign,
    /// 退单: the department asks to return the assignment (reason required).
    RejectAssignment,
    /// The dispatcher accepts a return: the case goes back to be dispatched again.
    ApproveReturn,
    /// The dispatcher refuses a return: the department keeps handling.
    DenyReturn,
    /// 改派: send to another department.
    Reassign {
        /// New lead department.
        lead: DeptCode,
        /// New co-departments.
        #[serde(default)]
        co: Vec<DeptCode>,
    },
    /// 回退: the dispatcher sends a filed case back to the shift leader (reason required).
    SendBack,
    /// 延期申请: the department asks for more working hours (reason required).
    RequestExtension {
        /// Extra working hours asked for.
        working_hours: u32,
    },
    /// Approve the pending extension: the deadline moves.
    ApproveExtension,
    /// Refuse the pending extension.
    DenyExtension,
    /// 挂账申请: the lead department asks the shift leader to park the case (reason required).
    RequestPark,
    /// The shift leader approves the pending parking: the clock stops.
    ApprovePark,
    /// The shift leader refuses the pending parking: the department handles on.
    DenyPark,
    /// 挂账: the shift leader parks the case on the centre's own authority; its clock stops (reason
    /// required).
    Park,
    /// Resume a parked case; the remaining working time starts again.
    Unpark,
    /// 反馈: the department reports the problem handled.
    Reply,
    /// 核查通过: verified fixed on site.
    VerifyPass,
    /// 核查不通过: not fixed; back to the department as rework (返工, reason required).
    VerifyFail,
    /// 结案: close a verified case.
    Close,
    /// 回访: record the reporter's rating of a closed case.
    CallBack {
        /// The rating.
        satisfaction: Satisfaction,
    },
    /// 督办: escalate one level; the state does not change.
    Escalate,
    /// 预警: the system warns that the current step's deadline is near (yellow) or passed (red); the
    /// state does not change.
    Warn {
        /// Yellow or red.
        level: WarnLevel,
    },
    /// 重新办理: reopen a closed case for re-dispatch (reason required).
    Reopen,
    /// 作废申请: intake asks the shift leader to void a public report (reason required).
    RequestVoid,
    /// The shift leader refuses the pending void: the case goes on where it was.
    DenyVoid,
    /// 作废: void an invalid or duplicate case (reason required); from a pending request, the shift
    /// leader's approval.
    Void,
}

impl Action {
    /// The snake_case name used in JSON and SQL.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Report => "report",
            Action::Accept => "accept",
            Action::RequestCheck => "request_check",
            Action::ConfirmCheck => "confirm_check",
            Action::RefuteCheck => "refute_check",
            Action::FixOnSpot => "fix_on_spot",
            Action::Merge { .. } => "merge",
            Action::Split => "split",
            Action::CloseWithPrimary => "close_with_primary",
            Action::Rectify => "rectify",
            Action::File => "file",
            Action::Dispatch { .. } => "dispatch",
            Action::Sign => "sign",
            Action::RejectAssignment => "reject_assignment",
            Action::ApproveReturn => "approve_return",
            Action::DenyReturn => "deny_return",
            Action::Reassign { .. } => "reassign",
            Action::SendBack => "send_back",
            Action::RequestExtension { .. } => "request_extension",
            Action::ApproveExtension => "approve_extension",
            Action::DenyExtension => "deny_extension",
            Action::RequestPark => "request_park",
            Action::ApprovePark => "approve_park",
            Action::DenyPark => "deny_park",
            Action::Park => "park",
            Action::Unpark => "unpark",
            Action::Reply => "reply",
            Action::VerifyPass => "verify_pass",
            Action::VerifyFail => "verify_fail",
            Action::Close => "close",
            Action::CallBack { .. } => "call_back",
            Action::Escalate => "escalate",
            Action::Warn { .. } => "warn",
            Action::Reopen => "reopen",
            Action::RequestVoid => "request_void",
            Action::DenyVoid => "deny_void",
            Action::Void => "void",
        }
    }

    /// Actions after which the case's lead and co-departments may differ.
    pub fn changes_departments(&self) -> bool {
        matches!(self, Action::Dispatch { .. } | Action::Reassign { .. } | Action::ApproveReturn | Action::Reopen)
    }

    /// Actions a co-department's task takes or receives (a command naming a `task`): sign, return and
    /// its decision, extension and its decision, reply, and the system's warnings.
    pub fn applies_to_tasks(&self) -> bool {
        matches!(
            self,
            Action::Sign
                | Action::RejectAssignment
                | Action::ApproveReturn
                | Action::DenyReturn
                | Action::RequestExtension { .. }
                | Action::ApproveExtension
                | Action::DenyExtension
                | Action::Reply
                | Action::Warn { .. }
        )
    }

    /// Actions that must carry a reason.
    pub fn needs_reason(&self) -> bool {
        matches!(
            self,
            Action::RejectAssignment
                | Action::SendBack
                | Action::RequestExtension { .. }
                | Action::RequestPark
                | Action::Park
                | Action::VerifyFail
                | Action::Reopen
                | Action::RequestVoid
                | Action::Void
                | Action::RefuteCheck
                | Action::Split
                | Action::Rectify
        )
    }

    /// Actions whose evidence must show the actor on site (photos with GPS, or the phone's position):
    /// a passed verification, both outcomes of a check, and a fix on the spot.
    pub fn needs_on_site_evidence(&self) -> bool {
        matches!(self, Action::VerifyPass | Action::ConfirmCheck | Action::RefuteCheck | Action::FixOnSpot)
    }

    /// The centre's steps the system takes itself on a case a sensor's alarm opened: a sensor's alarm
    /// is its own evidence, so the system accepts, files and dispatches it to the component's
    /// department, and telemetry verifies the repair (or, relapsing, sends it back as rework) and
    /// closes it. Every other step stays with people.
    pub fn is_sensor_step(&self) -> bool {
        matches!(
            self,
            Action::Accept
                | Action::File
                | Action::Dispatch { .. }
                | Action::VerifyPass
                | Action::VerifyFail
                | Action::Close
                | Action::Reopen
        )
    }

    /// Whether this step, taken by `role` on a case with `facts`, must carry a photo taken on site: an
    /// on-site step, unless the system takes it on a sensor's case, whose evidence is its telemetry.
    pub fn needs_photos(&self, facts: &CaseFacts, role: crate::access::Role) -> bool {
        self.is_on_site(facts) && !(role == crate::access::Role::System && facts.source == Source::Iot)
    }

    /// Whether this step of a case with `facts` is made on site (with photos taken there): verifying
    /// the answer to a suggestion is reading it, not a visit.
    pub fn is_on_site(&self, facts: &CaseFacts) -> bool {
        self.needs_on_site_evidence() && !(facts.source == Source::Suggestion && *self == Action::VerifyPass)
    }
}

/// Who did something, as recorded on an event: a user in their post, or the system itself (a timer,
/// an ingest channel) named by its job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventActor {
    /// The user's id; absent when the system acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// The user's role at the time (`system` for the system).
    pub role: crate::access::Role,
    /// The system job that acted (e.g. `sla_timer`, `mqtt_ingest`); absent for users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

impl EventActor {
    /// A user acting in their post.
    pub fn user(user_id: i64, role: crate::access::Role) -> Self {
        Self { user_id: Some(user_id), role, job: None }
    }

    /// The system acting through `job`.
    pub fn system(job: &str) -> Self {
        Self { user_id: None, role: crate::access::Role::System, job: Some(job.to_owned()) }
    }
}

/// One appended change to a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CaseEvent {
    /// 1-based position in the case's history; equals the case version after it.
    pub seq: i64,
    /// When it happened.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Who did it.
    pub actor: EventActor,
    /// What was done.
    pub action: Action,
    /// State before (none for the report).
    pub from: Option<CaseState>,
    /// State after.
    pub to: CaseState,
    /// Why (required for some actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Evidence files (photos of the fix, etc.).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Attachment>,
    /// The current step's deadline after this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_at: Option<Timestamp>,
    /// The handling deadline after this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub handle_due_at: Option<Timestamp>,
    /// How the case was closed (close events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_type: Option<CloseType>,
    /// When the current step's warning and escalations fall due (with `due_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timers: Option<StepTimers>,
    /// The same for the handling deadline (with `handle_due_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle_timers: Option<StepTimers>,
    /// The co-department whose task this event concerns; absent for the case's own steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub task: Option<DeptCode>,
    /// The co-department tasks after this event, when it changed them (dispatch, a task's step, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<CoTask>>,
    /// The route the routing rules proposed when the case entered 待派遣 (filing, a return, a reopening).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

/// Everything about a case that changes; derived from its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CaseStatus {
    /// Current state.
    pub state: CaseState,
    /// Number of events so far (optimistic-concurrency version).
    pub version: i64,
    /// Lead department (主办).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_dept: Option<DeptCode>,
    /// Co-departments (协办).
    #[serde(default)]
    pub co_depts: Vec<DeptCode>,
    /// Deadline of the current step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_at: Option<Timestamp>,
    /// Deadline for the department's handling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub handle_due_at: Option<Timestamp>,
    /// When the case was replied: the last of the lead's and the co-departments' replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub replied_at: Option<Timestamp>,
    /// When the lead department replied while co-departments were still at work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub lead_replied_at: Option<Timestamp>,
    /// One task per co-department (协办), each with its own state and deadline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<CoTask>,
    /// The route the rules proposed, while the case waits for dispatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_route: Option<Route>,
    /// When the case was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_at: Option<Timestamp>,
    /// How it was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_type: Option<CloseType>,
    /// Times verification failed (返工).
    pub rework_count: i32,
    /// Times the case was reopened after closing.
    pub reopen_count: i32,
    /// The highest escalation level (督办) the case has reached, 0 = never escalated.
    pub escalation_level: i32,
    /// The escalation level of the current step's deadline: the ladder's rungs and the top rung's cap
    /// go by it, and a new deadline starts it over at 0.
    #[serde(default)]
    pub step_escalation: i32,
    /// When the case was parked, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub parked_at: Option<Timestamp>,
    /// Working hours asked for by a pending extension request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_extension_hours: Option<u32>,
    /// The state a pending return or extension request came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_from: Option<CaseState>,
    /// The reporter's rating, once called back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satisfaction: Option<Satisfaction>,
    /// The rectification (整改) a poor rating of a public report opened for the lead department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rectification: Option<Rectification>,
    /// The primary case this one was merged into (并单), while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub merged_into: Option<CaseId>,
    /// The state the case was merged from; a split returns it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<CaseState>,
    /// The reporting grid worker fixed it on the spot (自行处置).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fixed_on_spot: bool,
    /// Who filed the case (立案), for the shift leader's 准确立案率.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filed_by: Option<i64>,
    /// Who made the standing dispatch, for the dispatcher's 准确派遣率.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatched_by: Option<i64>,
    /// When the current step's warning and escalations fall due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timers: Option<StepTimers>,
    /// When the handling deadline's warning and escalations fall due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle_timers: Option<StepTimers>,
    /// Time of the latest event.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// A rectification (整改) after a poor rating: the lead department's task, with its own deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rectification {
    /// The department that rectifies (the case's lead).
    #[schema(value_type = String)]
    pub dept: DeptCode,
    /// When it was opened (the call-back).
    #[schema(value_type = String, format = DateTime)]
    pub opened_at: Timestamp,
    /// Its deadline.
    #[schema(value_type = String, format = DateTime)]
    pub due_at: Timestamp,
    /// When the department reported it done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub rectified_at: Option<Timestamp>,
}

impl Rectification {
    /// Whether the department still has to report it.
    pub fn is_open(&self) -> bool {
        self.rectified_at.is_none()
    }
}

/// A case: its number, facts and derived status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Case {
    /// Database id.
    #[schema(value_type = i64)]
    pub id: CaseId,
    /// Human-readable number: town code + date + serial, e.g. 32058510020261123000042.
    pub number: String,
    /// Fixed facts.
    #[serde(flatten)]
    pub facts: CaseFacts,
    /// Derived status.
    #[serde(flatten)]
    pub status: CaseStatus,
}

impl Case {
    /// Whether the current step is past its deadline at `now`.
    pub fn is_overdue(&self, now: Timestamp) -> bool {
        self.status.state.is_open()
            && self.status.state != CaseState::Parked
            && self.status.due_at.is_some_and(|d| d < now)
    }
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The action is not allowed from the current state.
    #[error("cannot {action} a case that is {from}")]
    Illegal {
        /// Current state.
        from: CaseState,
        /// The refused action's name.
        action: &'static str,
    },
    /// The action needs a reason and none was given.
    #[error("{action} needs a reason")]
    ReasonRequired {
        /// The action's name.
        action: &'static str,
    },
    /// The action's data is invalid (e.g. a co-department equal to the lead).
    #[error("{0}")]
    Invalid(String),
    /// A case can be rated once.
    #[error("the case has already been called back")]
    AlreadyRated,
    /// The action is not allowed from the co-department task's current state.
    #[error("cannot {action} the task of {dept}, which is {from:?}")]
    IllegalTask {
        /// The co-department.
        dept: DeptCode,
        /// The task's state.
        from: crate::cotask::TaskState,
        /// The refused action's name.
        action: &'static str,
    },
}

/// Checks the working hours of an extension request: 1 to 2,400.
pub(crate) fn check_extension_hours(working_hours: u32) -> Result<(), TransitionError> {
    if working_hours == 0 || working_hours > 2400 {
        return Err(TransitionError::Invalid("working_hours must be between 1 and 2400".into()));
    }
    Ok(())
}

/// What [`decide`] needs besides the case: the time, the clocks and the rules.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The current instant.
    pub now: Timestamp,
    /// The working-time clocks (standard, centre, per department).
    pub clocks: &'a Clocks,
    /// The time-limit rules.
    pub sla: &'a SlaPolicy,
    /// The route the routing rules propose for the case, which a step into 待派遣 records.
    pub route: Option<&'a Route>,
    /// Whether a fix on the spot is drawn for a sampled verification (the service draws it).
    pub sampled: bool,
    /// For a case a sensor's alarm opened: whether its telemetry has been normal for the recovery
    /// period, without which the repair is not verified (the service reads the alarms).
    pub telemetry_recovered: bool,
}

impl<'a> Context<'a> {
    /// A context without a route proposal.
    pub fn new(now: Timestamp, clocks: &'a Clocks, sla: &'a SlaPolicy) -> Self {
        Context { now, clocks, sla, route: None, sampled: false, telemetry_recovered: true }
    }

    /// The same context with a sensor case's telemetry recovered (or not).
    pub fn with_telemetry(self, telemetry_recovered: bool) -> Self {
        Context { telemetry_recovered, ..self }
    }

    /// The same context with a fix on the spot drawn (or not) for a sampled verification.
    pub fn with_sample(self, sampled: bool) -> Self {
        Context { sampled, ..self }
    }

    /// The same context with the rules' route proposal.
    pub fn with_route(self, route: Option<&'a Route>) -> Self {
        Context { route, ..self }
    }
}

/// A requested change with its reason and evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Command {
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Evidence files.
    #[serde(default)]
    pub evidence: Vec<Attachment>,
    /// Where the actor's phone says they are (on-site verification, when the photos carry no GPS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<GeoPoint>,
    /// The co-department whose task the action concerns (sign, return, extension, reply and their
    /// decisions); absent for the lead's and the centre's steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub task: Option<DeptCode>,
}

impl Command {
    /// A command with no reason, evidence, position or task.
    pub fn new(action: Action) -> Self {
        Command { action, reason: None, evidence: Vec::new(), position: None, task: None }
    }

    /// The same command with a reason.
    pub fn because(self, reason: impl Into<String>) -> Self {
        Command { reason: Some(reason.into()), ..self }
    }

    /// The same command aimed at a co-department's task.
    pub fn for_task(self, dept: DeptCode) -> Self {
        Command { task: Some(dept), ..self }
    }
}

/// Great-circle distance between two WGS84 points, in metres (haversine on a 6,371 km sphere; well
/// under a metre off at the distances of an on-site check).
pub fn distance_m(a: GeoPoint, b: GeoPoint) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let (dla, dlo) = ((b.lat - a.lat).to_radians(), (b.lon - a.lon).to_radians());
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * h.sqrt().asin()
}

/// The on-site rule of a passed verification (核查通过), a check (核实) and a fix on the spot: at least one
/// uploaded photo, and a position — the nearest photo's EXIF GPS, or else the phone's reported
/// `position` — within `radius_m` of the case. `photos` holds each evidence photo's GPS position, if it has one.
pub fn check_on_site(
    case: GeoPoint,
    photos: &[Option<GeoPoint>],
    reported: Option<GeoPoint>,
    radius_m: f64,
) -> Result<(), crate::DomainError> {
    use crate::DomainError;
    if reported.is_some_and(|p| !p.is_wgs84()) {
        return Err(DomainError::invalid("position", "a WGS84 longitude and latitude"));
    }
    if photos.is_empty() {
        return Err(DomainError::invalid(
            "evidence",
            "an on-site step (verification, check, fix on the spot) needs at least one uploaded photo",
        ));
    }
    let nearest = photos.iter().flatten().map(|p| distance_m(case, *p)).fold(f64::INFINITY, f64::min);
    let (distance, what) = match (nearest.is_finite(), reported) {
        (true, _) => (nearest, "the photo was taken"),
        (false, Some(p)) => (distance_m(case, p), "the reported position is"),
        (false, None) => {
            return Err(DomainError::invalid(
                "position",
                "no photo carries a GPS position: send the phone's position with the step",
            ));
        }
    };
    if distance > radius_m {
        return Err(DomainError::invalid(
            "evidence",
            format!("{what} {distance:.0} m from the case; this step is taken on site, within {radius_m:.0} m"),
        ));
    }
    Ok(())
}

impl CaseStatus {
    /// The status of a freshly reported case, and the report event that records it.
    pub fn report(facts: &CaseFacts, actor: EventActor, ctx: &Context<'_>) -> (CaseStatus, CaseEvent) {
        let (due, timers) = ctx.sla.step(&ctx.clocks.centre, facts.reported_at, ctx.sla.dispatch_limit(facts.urgency));
        let event = CaseEvent {
            seq: 1,
            at: facts.reported_at,
            actor,
            action: Action::Report,
            from: None,
            to: CaseState::Reported,
            reason: None,
            evidence: Vec::new(),
            due_at: Some(due),
            handle_due_at: None,
            close_type: None,
            timers: Some(timers),
            handle_timers: None,
            task: None,
            tasks: None,
            route: None,
        };
        let status =
            CaseStatus::replay(std::slice::from_ref(&event)).unwrap_or_else(|_| CaseStatus::empty(facts.reported_at));
        (status, event)
    }

    fn empty(at: Timestamp) -> CaseStatus {
        CaseStatus {
            state: CaseState::Reported,
            version: 0,
            lead_dept: None,
            co_depts: Vec::new(),
            due_at: None,
            handle_due_at: None,
            replied_at: None,
            lead_replied_at: None,
            tasks: Vec::new(),
            proposed_route: None,
            closed_at: None,
            close_type: None,
            rework_count: 0,
            reopen_count: 0,
            escalation_level: 0,
            step_escalation: 0,
            parked_at: None,
            requested_extension_hours: None,
            request_from: None,
            satisfaction: None,
            rectification: None,
            merged_into: None,
            merged_from: None,
            fixed_on_spot: false,
            filed_by: None,
            dispatched_by: None,
            timers: None,
            handle_timers: None,
            updated_at: at,
        }
    }

    /// Rebuilds a status from its full event history.
    pub fn replay(events: &[CaseEvent]) -> Result<CaseStatus, ReplayError> {
        let first = events.first().ok_or(ReplayError::Empty)?;
        if first.action != Action::Report {
            return Err(ReplayError::NoReport);
        }
        let mut status = CaseStatus::empty(first.at);
        for e in events {
            status.apply(e)?;
        }
        Ok(status)
    }

    /// Folds one event into the status. Pure: no calendar, no clock.
    pub fn apply(&mut self, e: &CaseEvent) -> Result<(), ReplayError> {
        if e.seq != self.version + 1 {
            return Err(ReplayError::OutOfOrder { expected: self.version + 1, got: e.seq });
        }
        if e.seq > 1 && e.from != Some(self.state) {
            return Err(ReplayError::WrongFrom { seq: e.seq });
        }
        match &e.action {
            Action::Dispatch { lead, co } | Action::Reassign { lead, co } => {
                self.lead_dept = Some(lead.clone());
                self.co_depts = co.clone();
                self.lead_replied_at = None;
                self.dispatched_by = e.actor.user_id;
            }
            Action::ApproveReturn if e.task.is_none() => {
                self.dispatched_by = None;
                self.lead_dept = None;
                self.co_depts.clear();
                self.lead_replied_at = None;
            }
            Action::RequestExtension { working_hours } if e.task.is_none() => {
                self.requested_extension_hours = Some(*working_hours)
            }
            Action::ApproveExtension | Action::DenyExtension if e.task.is_none() => {
                self.requested_extension_hours = None
            }
            Action::Park | Action::ApprovePark => self.parked_at = Some(e.at),
            Action::Unpark => self.parked_at = None,
            Action::Reply if e.task.is_none() && e.to == CaseState::Handling => self.lead_replied_at = Some(e.at),
            Action::VerifyFail => {
                self.rework_count += 1;
                self.lead_replied_at = None;
            }
            Action::FixOnSpot => self.fixed_on_spot = true,
            Action::Merge { into } => {
                self.merged_into = Some(*into);
                self.merged_from = e.from;
            }
            Action::Split => {
                self.merged_into = None;
                self.merged_from = None;
            }
            Action::CallBack { satisfaction } => {
                self.satisfaction = Some(*satisfaction);
                if let (Some(dept), Some(due_at)) = (&self.lead_dept, e.due_at) {
                    self.rectification =
                        Some(Rectification { dept: dept.clone(), opened_at: e.at, due_at, rectified_at: None });
                }
            }
            Action::Rectify => {
                if let Some(r) = &mut self.rectification {
                    r.rectified_at = Some(e.at);
                }
            }
            Action::Escalate => {
                self.step_escalation += 1;
                self.escalation_level = self.escalation_level.max(self.step_escalation);
            }
            Action::Reopen => {
                self.reopen_count += 1;
                self.closed_at = None;
                self.close_type = None;
                self.satisfaction = None;
                self.rectification = None;
                self.merged_into = None;
                self.merged_from = None;
                self.replied_at = None;
                self.lead_replied_at = None;
                self.lead_dept = None;
                self.dispatched_by = None;
                self.co_depts.clear();
            }
            _ => {}
        }
        if e.to == CaseState::Closed && e.from != Some(CaseState::Closed) {
            self.closed_at = Some(e.at);
            self.close_type = e.close_type;
        }
        if e.to == CaseState::Replied && e.from != Some(CaseState::Replied) {
            self.replied_at = Some(e.at);
            self.lead_replied_at = None;
        }
        if let Some(tasks) = &e.tasks {
            self.tasks = tasks.clone();
        }
        if e.to == CaseState::Filed && matches!(e.action, Action::File | Action::ConfirmCheck) {
            self.filed_by = e.actor.user_id;
        }
        if e.to == CaseState::Filed {
            if e.route.is_some() {
                self.proposed_route = e.route.clone();
            }
        } else {
            self.proposed_route = None;
        }
        // Entering a request remembers where it came from; an event that stays in the request (a
        // warning, a 督办, a co-department's step) keeps it.
        self.request_from = match (e.to.is_request(), e.from.is_some_and(CaseState::is_request)) {
            (false, _) => None,
            (true, true) => self.request_from,
            (true, false) => e.from,
        };
        // 督办 goes to the step that is late: a new deadline for the case's own step (the next step, an
        // approved extension, a return to an earlier step) starts its ladder over.
        if e.due_at != self.due_at && e.action != Action::Escalate {
            self.step_escalation = 0;
        }
        self.state = e.to;
        self.due_at = e.due_at;
        self.handle_due_at = e.handle_due_at;
        self.timers = e.timers.clone();
        self.handle_timers = e.handle_timers.clone();
        self.version = e.seq;
        self.updated_at = e.at;
        Ok(())
    }
}

/// Why a history could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// No events at all.
    #[error("a case history cannot be empty")]
    Empty,
    /// The first event is not the report.
    #[error("a case history must start with its report")]
    NoReport,
    /// Sequence numbers are not 1, 2, 3, …
    #[error("expected event {expected}, got {got}")]
    OutOfOrder {
        /// The expected sequence number.
        expected: i64,
        /// The one found.
        got: i64,
    },
    /// An event's `from` does not match the state before it.
    #[error("event {seq} does not start from the current state")]
    WrongFrom {
        /// The event's sequence number.
        seq: i64,
    },
}

fn check_departments(lead: &DeptCode, co: &[DeptCode]) -> Result<(), TransitionError> {
    if co.contains(lead) {
        return Err(TransitionError::Invalid(format!("lead department {lead} cannot also be a co-department")));
    }
    let mut seen = std::collections::BTreeSet::new();
    if !co.iter().all(|d| seen.insert(d)) {
        return Err(TransitionError::Invalid("co-departments must not repeat".into()));
    }
    Ok(())
}

/// A deadline with its timers, as [`decide`] passes it around.
#[derive(Debug, Clone)]
struct Deadline {
    at: Timestamp,
    timers: Option<StepTimers>,
}

impl Deadline {
    fn kept(at: Option<Timestamp>, timers: &Option<StepTimers>) -> Option<Deadline> {
        at.map(|at| Deadline { at, timers: timers.clone() })
    }
}

/// Decides whether `cmd` may happen to a case and, if so, returns the event that records it.
///
/// This is the whole state machine: every legal `(action, state)` pair is listed here, and everything
/// else is [`TransitionError::Illegal`]. Who may do it is [`crate::access`]'s business. Deadlines are
/// counted on the clock of whoever owns the step: the centre's for dispatch and closing, the lead
/// department's for signing and handling, the standard working hours for the grid worker's check.
pub fn decide(
    facts: &CaseFacts,
    status: &CaseStatus,
    cmd: &Command,
    actor: EventActor,
    ctx: &Context<'_>,
) -> Result<CaseEvent, TransitionError> {
    use CaseState as S;
    let from = status.state;
    let action = &cmd.action;
    let illegal = || TransitionError::Illegal { from, action: action.name() };
    let reason = cmd.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned);
    if action.needs_reason() && reason.is_none() {
        return Err(TransitionError::ReasonRequired { action: action.name() });
    }
    if let Some(r) = &reason {
        crate::text::long("reason", r, 1, MAX_REASON).map_err(|e| TransitionError::Invalid(e.to_string()))?;
    }
    let evidence = check_attachments("evidence", &cmd.evidence).map_err(|e| TransitionError::Invalid(e.to_string()))?;
    if action.needs_photos(facts, actor.role) && !evidence.iter().any(|a| a.mime.starts_with("image/")) {
        return Err(TransitionError::Invalid(format!("{} needs at least one photo taken on site", action.name())));
    }
    let now = ctx.now;
    let (sla, clocks) = (ctx.sla, ctx.clocks);
    let step = |clock, limit| {
        let (at, timers) = sla.step(clock, now, limit);
        Some(Deadline { at, timers: Some(timers) })
    };
    let handle_step = |clock| {
        let (at, timers) = sla.handle_step(clock, now, facts);
        Some(Deadline { at, timers: Some(timers) })
    };
    let dept_clock = clocks.department(status.lead_dept.as_ref());
    let dispatch = || step(&clocks.centre, sla.dispatch_limit(facts.urgency));
    let keep = Deadline::kept(status.due_at, &status.timers);
    let handle = Deadline::kept(status.handle_due_at, &status.handle_timers);
    let verify = || step(&clocks.standard, sla.verify);

    if let Some(dept) = &cmd.task {
        if !action.applies_to_tasks() {
            return Err(TransitionError::Invalid(format!("{} is not a step of a co-department's task", action.name())));
        }
        let outcome = crate::cotask::decide_task(status, action, dept, ctx)?;
        let (to, due) = if outcome.case_replied { (S::Replied, verify()) } else { (from, keep) };
        return Ok(event(status, cmd, actor, now, (to, due, handle, None), evidence, reason)
            .with_tasks(Some(dept.clone()), Some(outcome.tasks)));
    }
    if status.lead_replied_at.is_some()
        && from == S::Handling
        && matches!(
            action,
            Action::Reply | Action::RejectAssignment | Action::RequestExtension { .. } | Action::RequestPark
        )
    {
        return Err(TransitionError::Invalid(
            "the lead department has replied; the case waits for its co-departments".into(),
        ));
    }
    let mut tasks = None;

    let (to, due, handle_due, close_type): (_, Option<Deadline>, Option<Deadline>, _) = match (action, from) {
        (Action::Accept, S::Reported) => (S::Accepted, keep, handle, None),
        (Action::RequestCheck, S::Reported | S::Accepted) => {
            if !facts.source.is_public() || facts.source == Source::Suggestion {
                return Err(TransitionError::Invalid(
                    "only public reports (12345, H5, 110) are sent for an on-site check".into(),
                ));
            }
            (S::Checking, step(&clocks.standard, sla.check), handle, None)
        }
        (Action::ConfirmCheck, S::Checking) => (S::Filed, dispatch(), handle, None),
        (Action::RefuteCheck, S::Checking) => (S::Void, None, handle, None),
        (Action::FixOnSpot, S::Reported) => {
            if facts.source != Source::GridPatrol {
                return Err(TransitionError::Invalid(
                    "only a grid worker's own patrol report is fixed on the spot".into(),
                ));
            }
            if !facts.attachments.iter().any(|a| a.mime.starts_with("image/")) {
                return Err(TransitionError::Invalid("a fix on the spot needs the report's before photo".into()));
            }
            match ctx.sampled {
                true => (S::Replied, verify(), handle, None),
                false => (S::Closed, None, handle, Some(CloseType::Normal)),
            }
        }
        (Action::Merge { .. }, S::Reported | S::Accepted | S::Filed) => (S::Merged, None, handle, None),
        (Action::Split, S::Merged) => (status.merged_from.unwrap_or(S::Reported), dispatch(), handle, None),
        (Action::CloseWithPrimary, S::Merged) => (S::Closed, None, handle, None),
        (Action::Rectify, S::Closed) if status.rectification.as_ref().is_some_and(Rectification::is_open) => {
            (S::Closed, None, handle, None)
        }
        (Action::File, S::Accepted) => (S::Filed, keep, handle, None),
        (Action::SendBack, S::Filed) => (S::Accepted, keep, handle, None),
        (Action::Dispatch { lead, co }, S::Filed)
        | (Action::Reassign { lead, co }, S::Dispatched | S::Handling | S::ReturnRequested) => {
            check_departments(lead, co)?;
            let clock = clocks.department(Some(lead));
            tasks = Some(crate::cotask::dispatch_tasks(facts, co, ctx));
            (S::Dispatched, step(clock, sla.sign), handle_step(clock), None)
        }
        (Action::Sign, S::Dispatched) => (S::Handling, handle.clone(), handle, None),
        (Action::RejectAssignment, S::Dispatched | S::Handling) => (S::ReturnRequested, dispatch(), handle, None),
        (Action::ApproveReturn, S::ReturnRequested) => {
            tasks = Some(Vec::new());
            (S::Filed, dispatch(), None, None)
        }
        (Action::DenyReturn, S::ReturnRequested) => match status.request_from {
            Some(S::Dispatched) => (S::Dispatched, step(dept_clock, sla.sign), handle, None),
            _ => (S::Handling, handle.clone(), handle, None),
        },
        (Action::RequestExtension { working_hours }, S::Handling) => {
            check_extension_hours(*working_hours)?;
            (S::ExtensionRequested, handle.clone(), handle, None)
        }
        (Action::ApproveExtension, S::ExtensionRequested) => {
            let hours = status.requested_extension_hours.unwrap_or(0);
            let (at, timers) = sla.extend(dept_clock, now, status.handle_due_at, hours);
            let new = Some(Deadline { at, timers: Some(timers) });
            (S::Handling, new.clone(), new, None)
        }
        (Action::DenyExtension, S::ExtensionRequested) => (S::Handling, handle.clone(), handle, None),
        (Action::RequestPark, S::Handling) => (S::ParkRequested, keep, handle, None),
        (Action::ApprovePark, S::ParkRequested) | (Action::Park, S::Handling) => (S::Parked, None, handle, None),
        (Action::DenyPark, S::ParkRequested) => (S::Handling, keep, handle, None),
        (Action::Unpark, S::Parked) => {
            tasks = crate::cotask::resume_tasks(status, ctx);
            let new = match (status.parked_at, status.handle_due_at) {
                (Some(parked), Some(due)) => {
                    let (at, timers) = sla.resume(dept_clock, parked, now, due);
                    Some(Deadline { at, timers: Some(timers) })
                }
                _ => handle_step(dept_clock),
            };
            (S::Handling, new.clone(), new, None)
        }
        (Action::Reply, S::Handling) if crate::cotask::all_finished(&status.tasks) => {
            (S::Replied, verify(), handle, None)
        }
        (Action::Reply, S::Handling) => (S::Handling, None, handle, None),
        (Action::VerifyPass, S::Replied) if facts.source == Source::Iot && !ctx.telemetry_recovered => {
            return Err(TransitionError::Invalid(
                "the sensor's telemetry has not yet been normal for the recovery period".into(),
            ));
        }
        (Action::VerifyPass, S::Replied) => (S::Verified, step(&clocks.centre, sla.close), handle, None),
        // A fix on the spot that fails its sampled verification goes the ordinary way: to be dispatched.
        (Action::VerifyFail, S::Replied) if status.lead_dept.is_none() => (S::Filed, dispatch(), None, None),
        (Action::VerifyFail, S::Replied) => {
            let new = handle_step(dept_clock);
            (S::Handling, new.clone(), new, None)
        }
        (Action::Close, S::Verified) => {
            let on_time = match (status.replied_at, status.handle_due_at) {
                (Some(replied), Some(due)) => replied <= due,
                _ => true,
            };
            (S::Closed, None, handle, Some(if on_time { CloseType::Normal } else { CloseType::Late }))
        }
        (Action::CallBack { satisfaction }, S::Closed) => {
            if status.satisfaction.is_some() {
                return Err(TransitionError::AlreadyRated);
            }
            // A poor rating (1–2 of 5) of a public report opens a rectification for the lead department.
            let rectify = satisfaction.is_poor() && facts.source.is_public() && status.lead_dept.is_some();
            (S::Closed, if rectify { step(dept_clock, sla.rectify) } else { None }, handle, None)
        }
        (Action::Escalate, s) if s.is_open() => {
            if status.step_escalation >= MAX_ESCALATION_LEVEL {
                return Err(TransitionError::Invalid(format!(
                    "the current step is already at the highest escalation level ({MAX_ESCALATION_LEVEL})"
                )));
            }
            (s, keep, handle, None)
        }
        // A closed case has a deadline only while a rectification is open.
        (Action::Warn { .. }, s) if s != S::Parked && status.due_at.is_some() => (s, keep, handle, None),
        (Action::Reopen, S::Closed) => {
            tasks = Some(Vec::new());
            (S::Filed, dispatch(), None, None)
        }
        (Action::RequestVoid, S::Reported | S::Accepted | S::Filed) => (S::VoidRequested, keep, handle, None),
        (Action::DenyVoid, S::VoidRequested) => (status.request_from.unwrap_or(S::Reported), keep, handle, None),
        (Action::Void, S::Reported | S::Accepted | S::Filed | S::VoidRequested) => (S::Void, None, handle, None),
        _ => return Err(illegal()),
    };
    // While the lead has replied and co-departments are still at work, the case's own step has no
    // deadline: each co-department's task carries its own.
    let due = if status.lead_replied_at.is_some() && to == S::Handling { None } else { due };
    let route = ctx.route.filter(|_| to == S::Filed && from != S::Filed).cloned();
    let event = event(status, cmd, actor, now, (to, due, handle_due, close_type), evidence, reason);
    Ok(CaseEvent { route, ..event.with_tasks(None, tasks) })
}

/// What a decision sets: the state after, the step's and the handling deadline, the close type.
type Decided = (CaseState, Option<Deadline>, Option<Deadline>, Option<CloseType>);

fn event(
    status: &CaseStatus,
    cmd: &Command,
    actor: EventActor,
    now: Timestamp,
    (to, due, handle_due, close_type): Decided,
    evidence: Vec<Attachment>,
    reason: Option<String>,
) -> CaseEvent {
    let (due_at, timers) = due.map_or((None, None), |d| (Some(d.at), d.timers));
    let (handle_due_at, handle_timers) = handle_due.map_or((None, None), |d| (Some(d.at), d.timers));
    CaseEvent {
        seq: status.version + 1,
        at: now,
        actor,
        action: cmd.action.clone(),
        from: Some(status.state),
        to,
        reason,
        evidence,
        due_at,
        handle_due_at,
        close_type,
        timers,
        handle_timers,
        task: None,
        tasks: None,
        route: None,
    }
}

impl CaseEvent {
    fn with_tasks(self, task: Option<DeptCode>, tasks: Option<Vec<CoTask>>) -> Self {
        CaseEvent { task, tasks, ..self }
    }
}

#[cfg(test)]
#[path = "case_tests.rs"]
mod tests;
