//! Who may do what: roles (the posts of `shared/README.md`), the actor of a request, and the checks of
//! role and scope (grid, department, own report) for reading and changing cases.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::case::{Action, Case, EventActor};
use crate::codes::GridCode;
use crate::error::DomainError;
use crate::org::DeptCode;

/// A post in the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 网格员: patrols a grid, reports, verifies.
    GridWorker,
    /// 受理员: takes reports, accepts or rejects them.
    IntakeOperator,
    /// 值班长: files, approves, closes.
    ShiftLeader,
    /// 派遣员: dispatches to departments.
    Dispatcher,
    /// 专业部门处置人员: handles cases of their department.
    DeptHandler,
    /// 指挥长: the big picture.
    Commander,
    /// 协调: cross-department coordination.
    Coordinator,
    /// 情报: analysis.
    Analyst,
    /// 督查: supervision and escalation.
    Supervisor,
    /// 窗口人员: service-hall clerk.
    HallClerk,
    /// 企业服务专员: enterprise commissioner.
    EnterpriseCommissioner,
    /// 群众/企业: reports and tracks own cases.
    Citizen,
    /// 镇领导: cockpit, reports, escalations.
    Leader,
    /// 系统管理员: users, roles, grids, code tables.
    Admin,
    /// The system itself: timers and ingest channels. Never an account's post.
    System,
    /// 接口账号: an outside system (Open311 app, 12345 or 110 upstream, IoT gateway) through a service
    /// account and its API key. Never a person's post.
    Integration,
}

/// The outside channel a service account is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An Open311 GeoReport v2 client (apps, FixMyStreet-style sites).
    Open311,
    /// The 12345 hotline's upstream system.
    Hotline12345,
    /// The 110 police system diverting non-police matters.
    Police110,
    /// An IoT gateway pushing telemetry.
    IotGateway,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 4] = [Channel::Open311, Channel::Hotline12345, Channel::Police110, Channel::IotGateway];

    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Open311 => "open311",
            Channel::Hotline12345 => "hotline12345",
            Channel::Police110 => "police110",
            Channel::IotGateway => "iot_gateway",
        }
    }

    /// The source of the cases this channel reports.
    pub fn source(self) -> crate::case::Source {
        use crate::case::Source;
        match self {
            Channel::Open311 => Source::CitizenH5,
            Channel::Hotline12345 => Source::Hotline12345,
            Channel::Police110 => Source::Police110,
            Channel::IotGateway => Source::Iot,
        }
    }
}

impl std::str::FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| format!("unknown channel {s:?}"))
    }
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 16] = [
        Role::GridWorker,
        Role::IntakeOperator,
        Role::ShiftLeader,
        Role::Dispatcher,
        Role::DeptHandler,
        Role::Commander,
        Role::Coordinator,
        Role::Analyst,
        Role::Supervisor,
        Role::HallClerk,
        Role::EnterpriseCommissioner,
        Role::Citizen,
        Role::Leader,
        Role::Admin,
        Role::System,
        Role::Integration,
    ];

    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::GridWorker => "grid_worker",
            Role::IntakeOperator => "intake_operator",
            Role::ShiftLeader => "shift_leader",
            Role::Dispatcher => "dispatcher",
            Role::DeptHandler => "dept_handler",
            Role::Commander => "commander",
            Role::Coordinator => "coordinator",
            Role::Analyst => "analyst",
            Role::Supervisor => "supervisor",
            Role::HallClerk => "hall_clerk",
            Role::EnterpriseCommissioner => "enterprise_commissioner",
            Role::Citizen => "citizen",
            Role::Leader => "leader",
            Role::Admin => "admin",
            Role::System => "system",
            Role::Integration => "integration",
        }
    }

    /// The Chinese name of the post.
    pub fn label_zh(self) -> &'static str {
        match self {
            Role::GridWorker => "网格员",
            Role::IntakeOperator => "受理员",
            Role::ShiftLeader => "值班长",
            Role::Dispatcher => "派遣员",
            Role::DeptHandler => "专业部门处置人员",
            Role::Commander => "指挥长",
            Role::Coordinator => "协调员",
            Role::Analyst => "情报员",
            Role::Supervisor => "督查员",
            Role::HallClerk => "窗口人员",
            Role::EnterpriseCommissioner => "企业服务专员",
            Role::Citizen => "群众",
            Role::Leader => "镇领导",
            Role::Admin => "系统管理员",
            Role::System => "系统",
            Role::Integration => "接口账号",
        }
    }

    /// Whether the post needs to see reporters' phone numbers and ID numbers unmasked
    /// (intake and shift leaders call reporters back; nobody else does).
    pub fn sees_personal_data(self) -> bool {
        matches!(self, Role::IntakeOperator | Role::ShiftLeader | Role::Admin)
    }

    /// Whether the post may create (report) cases at all.
    pub fn may_report(self) -> bool {
        matches!(
            self,
            Role::GridWorker
                | Role::IntakeOperator
                | Role::ShiftLeader
                | Role::Commander
                | Role::Supervisor
                | Role::Leader
                | Role::Citizen
                | Role::System
                | Role::Integration
        )
    }

    /// Whether the post may take this action on a case it can see (scope is checked separately).
    ///
    /// Separation of duties: the administrator administers (accounts, reference data) and takes no
    /// case step, so no single account can carry a case from report to a "very satisfied" closure.
    /// The system may only escalate, warn, close merged followers, and record the rating a public
    /// reporter gave on the public page (回访 by the reporter themself).
    pub fn may(self, action: &Action) -> bool {
        use Role::*;
        if matches!(self, Admin | System | Integration) {
            return self == System
                && matches!(
                    action,
                    Action::Escalate | Action::Warn { .. } | Action::CloseWithPrimary | Action::CallBack { .. }
                );
        }
        match action {
            Action::Report | Action::Warn { .. } | Action::CloseWithPrimary => false,
            Action::Accept | Action::RequestCheck => matches!(self, IntakeOperator | ShiftLeader),
            Action::ConfirmCheck | Action::RefuteCheck | Action::FixOnSpot => self == GridWorker,
            Action::Merge { .. } | Action::Split => matches!(self, IntakeOperator | ShiftLeader | Dispatcher),
            Action::Rectify => self == DeptHandler,
            Action::File
            | Action::Close
            | Action::Park
            | Action::Unpark
            | Action::ApprovePark
            | Action::DenyPark
            | Action::DenyVoid => self == ShiftLeader,
            Action::RequestPark => self == DeptHandler,
            Action::RequestVoid => self == IntakeOperator,
            Action::Dispatch { .. }
            | Action::Reassign { .. }
            | Action::ApproveReturn
            | Action::DenyReturn
            | Action::SendBack => matches!(self, Dispatcher | ShiftLeader),
            Action::ApproveExtension | Action::DenyExtension => {
                matches!(self, Dispatcher | ShiftLeader)
            }
            Action::Sign | Action::RejectAssignment | Action::RequestExtension { .. } | Action::Reply => {
                self == DeptHandler
            }
            Action::VerifyPass | Action::VerifyFail => {
                matches!(self, GridWorker | Supervisor | ShiftLeader)
            }
            Action::CallBack { .. } => matches!(self, IntakeOperator | ShiftLeader),
            Action::Escalate => matches!(self, Supervisor | Commander | Leader),
            Action::Reopen => matches!(self, ShiftLeader | Supervisor),
            Action::Void => matches!(self, IntakeOperator | ShiftLeader),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| format!("unknown role {s:?}"))
    }
}

/// The authenticated user behind a request, with the scope of their post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    /// User id.
    pub user_id: i64,
    /// Login name.
    pub username: String,
    /// Post.
    pub role: Role,
    /// Grids a grid worker is responsible for.
    #[serde(default)]
    pub grids: Vec<GridCode>,
    /// Department of a department handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<DeptCode>,
    /// The job, when the system itself acts (`role` is then [`Role::System`]), or the service account,
    /// when an outside system does ([`Role::Integration`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The channel of a service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
}

/// Which cases an actor may see, as a filter the store can apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseScope {
    /// Every case.
    All,
    /// Cases in these grids.
    Grids(Vec<GridCode>),
    /// Cases assigned (lead or co) to this department.
    Department(DeptCode),
    /// Cases this user reported.
    Reporter(i64),
    /// No case at all.
    Nothing,
}

/// The parts of a case that decide who may see it (a case row, or an entry of the event log).
#[derive(Debug, Clone, Copy)]
pub struct CaseScopeKey<'a> {
    /// The case's grid.
    pub grid: GridCode,
    /// Lead department.
    pub lead: Option<&'a DeptCode>,
    /// Co-departments.
    pub co: &'a [DeptCode],
    /// The reporting user.
    pub reporter: Option<i64>,
}

impl<'a> From<&'a Case> for CaseScopeKey<'a> {
    fn from(c: &'a Case) -> Self {
        CaseScopeKey {
            grid: c.facts.grid,
            lead: c.status.lead_dept.as_ref(),
            co: &c.status.co_depts,
            reporter: c.facts.reporter.user_id,
        }
    }
}

impl Actor {
    /// The system acting through `job` (a timer, an ingest channel): it sees every case.
    pub fn system(job: &str) -> Actor {
        Actor {
            user_id: 0,
            username: format!("system:{job}"),
            role: Role::System,
            grids: Vec::new(),
            department: None,
            job: Some(job.to_owned()),
            channel: None,
        }
    }

    /// An outside system acting through service account `id` named `name` on `channel`.
    pub fn integration(id: i64, name: &str, channel: Channel) -> Actor {
        Actor {
            user_id: id,
            username: format!("svc:{name}"),
            role: Role::Integration,
            grids: Vec::new(),
            department: None,
            job: Some(format!("{}:{name}", channel.as_str())),
            channel: Some(channel),
        }
    }

    /// How this actor is recorded on an event.
    pub fn event_actor(&self) -> EventActor {
        match (&self.job, self.role) {
            (Some(job), Role::System | Role::Integration) => {
                EventActor { user_id: None, role: self.role, job: Some(job.clone()) }
            }
            _ => EventActor::user(self.user_id, self.role),
        }
    }

    /// The reporter recorded on a case this actor reports (none for the system).
    pub fn reporter_id(&self) -> Option<i64> {
        (!matches!(self.role, Role::System | Role::Integration)).then_some(self.user_id)
    }

    /// Where a case needs a scope key for an idempotency record: whose keys these are.
    pub fn idempotency_scope(&self) -> String {
        match self.role {
            Role::Integration => format!("svc:{}", self.user_id),
            Role::System => format!("job:{}", self.job.as_deref().unwrap_or("")),
            _ => format!("user:{}", self.user_id),
        }
    }

    /// The cases this actor may see.
    pub fn case_scope(&self) -> CaseScope {
        match self.role {
            Role::GridWorker => CaseScope::Grids(self.grids.clone()),
            Role::DeptHandler => match &self.department {
                Some(d) => CaseScope::Department(d.clone()),
                None => CaseScope::Nothing,
            },
            Role::Citizen => CaseScope::Reporter(self.user_id),
            Role::HallClerk | Role::EnterpriseCommissioner | Role::Integration => CaseScope::Nothing,
            _ => CaseScope::All,
        }
    }

    /// Whether this actor may see the case.
    pub fn can_see(&self, case: &Case) -> bool {
        self.can_see_key(CaseScopeKey::from(case))
    }

    /// Whether this actor may see a case with these scope parts.
    pub fn can_see_key(&self, key: CaseScopeKey<'_>) -> bool {
        match self.case_scope() {
            CaseScope::All => true,
            CaseScope::Grids(g) => g.contains(&key.grid),
            CaseScope::Department(d) => key.lead == Some(&d) || key.co.contains(&d),
            CaseScope::Reporter(u) => key.reporter == Some(u),
            CaseScope::Nothing => false,
        }
    }

    /// Whether this actor may take `action` on `case`, on the co-department `task` when one is named:
    /// the post allows it, the case is in scope, a department acts only on its own part (the lead's
    /// steps, or its own task), a fix on the spot is verified by someone other than the worker who
    /// made it, and intake does not void a public report on its own (作废 of a 12345,
    /// H5 or 110 report is the shift leader's decision, asked for with a void request).
    pub fn can_act(&self, case: &Case, action: &Action, task: Option<&DeptCode>) -> bool {
        if self.role == Role::System && case.facts.source == crate::case::Source::Iot && action.is_sensor_step() {
            return true;
        }
        if !self.role.may(action) || !self.can_see(case) {
            return false;
        }
        match (self.role, action, task) {
            (Role::DeptHandler, _, Some(d)) => self.department.as_ref() == Some(d),
            (Role::DeptHandler, _, None) => case.status.lead_dept.is_some() && case.status.lead_dept == self.department,
            (Role::IntakeOperator, Action::Void, _) => {
                !case.facts.source.is_public() && case.status.state != crate::case::CaseState::VoidRequested
            }
            // Only the worker who reported it fixes it on the spot; someone else verifies the fix.
            (_, Action::FixOnSpot, _) => case.facts.reporter.user_id == Some(self.user_id),
            (_, Action::VerifyPass | Action::VerifyFail, _) if case.status.fixed_on_spot => {
                case.facts.reporter.user_id != Some(self.user_id)
            }
            _ => true,
        }
    }

    /// Whether this actor may report a case located in `grid`.
    pub fn can_report_in(&self, grid: GridCode) -> bool {
        self.role.may_report() && (self.role != Role::GridWorker || self.grids.contains(&grid))
    }
}

/// A new account as an administrator submits it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    /// Login name: 3–32 characters of a–z, 0–9, `_`, `.`, `-`.
    pub username: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// Post.
    pub role: Role,
    /// Initial password, at least 10 characters.
    pub password: String,
    /// Department (required for department handlers, refused for other posts).
    #[serde(default)]
    pub department: Option<DeptCode>,
    /// Grids (required for grid workers, refused for other posts).
    #[serde(default)]
    pub grids: Vec<GridCode>,
    /// Phone.
    #[serde(default)]
    pub phone: Option<String>,
}

impl AccountInput {
    /// Checks the account against the rules of its post; `grid_exists` and `dept_exists` answer for
    /// the town's grids and departments.
    pub fn check(
        &self,
        grid_exists: impl Fn(GridCode) -> bool,
        dept_exists: impl Fn(&DeptCode) -> bool,
    ) -> Result<(), DomainError> {
        let u = &self.username;
        let ok_name = (3..=32).contains(&u.len())
            && u.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
        if !ok_name {
            return Err(DomainError::invalid("username", "3–32 characters of a–z, 0–9, '_', '.', '-'"));
        }
        crate::text::line("display_name", &self.display_name, 1, 64)?;
        if matches!(self.role, Role::System | Role::Integration) {
            return Err(DomainError::invalid("role", "the system and integrations are not a person's post"));
        }
        check_password(&self.password)?;
        match (self.role, self.grids.is_empty()) {
            (Role::GridWorker, true) => {
                return Err(DomainError::invalid("grids", "a grid worker needs at least one grid"));
            }
            (Role::GridWorker, false) => {}
            (_, false) => return Err(DomainError::invalid("grids", "only grid workers have grids")),
            (_, true) => {}
        }
        if let Some(g) = self.grids.iter().find(|g| !grid_exists(**g)) {
            return Err(DomainError::invalid("grids", format!("grid {g} does not exist")));
        }
        match (&self.department, self.role == Role::DeptHandler) {
            (None, true) => return Err(DomainError::invalid("department", "a department handler needs a department")),
            (Some(_), false) => return Err(DomainError::invalid("department", "only department handlers have one")),
            (Some(d), true) if !dept_exists(d) => {
                return Err(DomainError::invalid("department", format!("department {d} does not exist")));
            }
            _ => {}
        }
        if let Some(phone) = &self.phone
            && !is_phone_number(phone)
        {
            return Err(DomainError::invalid("phone", "a phone number is 5–20 digits"));
        }
        Ok(())
    }
}

/// Whether a string looks like a phone number: 5–20 characters of digits, `-` and `+`, at least five
/// of them digits, a `+` only in front.
pub fn is_phone_number(s: &str) -> bool {
    (5..=20).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'-' || b == b'+')
        && s.bytes().filter(u8::is_ascii_digit).count() >= 5
        && !s[1..].contains('+')
}

/// Masks a person's name to its first character: 张** (a name of one character becomes *).
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match (chars.next(), chars.count()) {
        (Some(first), rest) if rest > 0 => format!("{first}{}", "*".repeat(rest)),
        _ => "*".to_owned(),
    }
}

/// Checks a new password: 10–128 characters.
pub fn check_password(password: &str) -> Result<(), DomainError> {
    let n = password.chars().count();
    if !(10..=128).contains(&n) {
        return Err(DomainError::invalid("password", "10–128 characters"));
    }
    Ok(())
}

/// Masks a phone number to its first 3 and last 4 digits: 138****5678.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() < 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// Masks an 18-character resident ID number to its first 6 and last 4: 320585********1234.
pub fn mask_id_number(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() < 11 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_the_ends() {
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone("123"), "***");
        assert_eq!(mask_id_number("320585199001011234"), "320585********1234");
        assert_eq!(mask_name("张三丰"), "张**");
        assert_eq!(mask_name("李"), "*");
    }

    #[test]
    fn phone_numbers_need_digits() {
        for bad in ["-----", "+++++", "12-34", "123+4567", "1381234567a"] {
            assert!(!is_phone_number(bad), "{bad}");
        }
        for good in ["13812345678", "+86-512-5555-1234", "0512-12345"] {
            assert!(is_phone_number(good), "{good}");
        }
    }

    #[test]
    fn only_intake_and_shift_leader_see_personal_data_among_operators() {
        let seeing: Vec<Role> = Role::ALL.into_iter().filter(|r| r.sees_personal_data()).collect();
        assert_eq!(seeing, vec![Role::IntakeOperator, Role::ShiftLeader, Role::Admin]);
    }

    #[test]
    fn the_administrator_takes_no_case_step_and_the_system_only_escalates() {
        let steps = [Action::Accept, Action::File, Action::Reply, Action::Close, Action::VerifyPass, Action::Escalate];
        assert!(steps.iter().all(|a| !Role::Admin.may(a)));
        assert!(Role::System.may(&Action::Escalate));
        assert!(steps.iter().filter(|a| **a != Action::Escalate).all(|a| !Role::System.may(a)));
        let sys = Actor::system("sla_timer");
        assert_eq!(sys.event_actor(), EventActor::system("sla_timer"));
        assert_eq!(sys.reporter_id(), None);
    }

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(serde_json::to_value(r).expect("ser"), serde_json::json!(r.as_str()));
        }
    }

    fn account(role: Role) -> AccountInput {
        AccountInput {
            username: "li.si".into(),
            display_name: "李四".into(),
            role,
            password: "long enough pw".into(),
            department: None,
            grids: vec![],
            phone: None,
        }
    }

    #[test]
    fn accounts_follow_the_rules_of_their_post() {
        let grid: GridCode = "320583116001001".parse().expect("grid");
        let yes = |_: GridCode| true;
        let dept_yes = |_: &DeptCode| true;
        assert!(account(Role::Dispatcher).check(yes, dept_yes).is_ok());
        let field = |a: AccountInput| a.check(yes, dept_yes).err().and_then(|e| e.field().map(str::to_owned));
        assert_eq!(field(account(Role::GridWorker)).as_deref(), Some("grids"));
        assert_eq!(field(AccountInput { grids: vec![grid], ..account(Role::Dispatcher) }).as_deref(), Some("grids"));
        assert_eq!(field(account(Role::DeptHandler)).as_deref(), Some("department"));
        assert_eq!(field(AccountInput { username: "X".into(), ..account(Role::Leader) }).as_deref(), Some("username"));
        assert_eq!(
            field(AccountInput { password: "short".into(), ..account(Role::Leader) }).as_deref(),
            Some("password")
        );
        let unknown = AccountInput { grids: vec![grid], ..account(Role::GridWorker) };
        assert_eq!(
            unknown.check(|_| false, dept_yes).err().and_then(|e| e.field().map(str::to_owned)).as_deref(),
            Some("grids")
        );
    }

    #[test]
    fn nobody_transitions_a_case_into_report() {
        assert!(Role::ALL.iter().all(|r| !r.may(&Action::Report)));
    }
}
