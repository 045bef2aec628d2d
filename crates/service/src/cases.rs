//! Case use cases: report, read, list, history and change. Each takes the acting [`Actor`], checks
//! role and scope (`core::access`), asks the core for the facts or the event (`core::intake`,
//! `core::case::decide`), and hands the event to the store, which folds it and numbers it in the
//! global log. Out-of-scope cases are "not found", so their existence is not revealed.

use civicgrid_core::access::{Actor, Role, mask_name, mask_phone};
use civicgrid_core::case::{Action, Case, CaseEvent, CaseId, CaseStatus, Command, Context, Source};
use civicgrid_core::intake::{ReportInput, check_report};
use civicgrid_core::org::DeptCode;
use civicgrid_store::{CaseFilter, Created, NewCase, Page, PageRequest, StoreError};

use crate::{ServiceError, ServiceResult, Services};

/// Largest page of a case list.
pub const MAX_PAGE: u32 = 500;
/// Highest cap of a case count.
pub const MAX_COUNT: u32 = 10_000;

/// A step offered to an actor on a case (see [`Services::offered_actions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The step; its fields are samples the form replaces.
    pub action: Action,
    /// The co-department task it concerns, when it is one.
    pub task: Option<DeptCode>,
}

/// One sample of every step a person takes (never the system's warnings, merge closures or the
/// report itself). Dispatch and reassignment are sampled only when a department exists.
fn sample_actions(case: &Case, dept: Option<DeptCode>) -> Vec<Action> {
    use civicgrid_core::case::Satisfaction;
    let mut all = vec![
        Action::Accept,
        Action::RequestCheck,
        Action::ConfirmCheck,
        Action::RefuteCheck,
        Action::FixOnSpot,
        Action::Merge { into: case.id },
        Action::Split,
        Action::Rectify,
        Action::File,
        Action::Sign,
        Action::RejectAssignment,
        Action::ApproveReturn,
        Action::DenyReturn,
        Action::SendBack,
        Action::RequestExtension { working_hours: 8 },
        Action::ApproveExtension,
        Action::DenyExtension,
        Action::RequestPark,
        Action::ApprovePark,
        Action::DenyPark,
        Action::Park,
        Action::Unpark,
        Action::Reply,
        Action::VerifyPass,
        Action::VerifyFail,
        Action::Close,
        Action::CallBack { satisfaction: Satisfaction::Satisfied },
        Action::Escalate,
        Action::Reopen,
        Action::RequestVoid,
        Action::DenyVoid,
        Action::Void,
    ];
    if let Some(lead) = dept {
        all.push(Action::Dispatch { lead: lead.clone(), co: Vec::new() });
        all.push(Action::Reassign { lead, co: Vec::new() });
    }
    all
}

impl Services {
    /// Reports a new case; `actor` is its reporter (or the system, for ingest).
    pub async fn report_case(&self, actor: &Actor, input: ReportInput) -> ServiceResult<Case> {
        Ok(self.report_case_once(actor, input, None).await?.value)
    }

    /// Reports a new case at most once per `idempotency_key` of this actor: a repeated key with the
    /// same report returns the first case (`replayed`), with a different report a refusal. The key is
    /// stored in the same transaction as the case, so even a retry after a lost connection during the
    /// commit cannot create a second case.
    pub async fn report_case_once(
        &self,
        actor: &Actor,
        input: ReportInput,
        idempotency_key: Option<&str>,
    ) -> ServiceResult<Created> {
        let idempotency = crate::idempotency::key_for(actor, idempotency_key, &input)?;
        self.report_keyed(actor, input, idempotency).await
    }

    /// Reports a new case, at most once per stored key when one is given.
    pub(crate) async fn report_keyed(
        &self,
        actor: &Actor,
        mut input: ReportInput,
        idempotency: Option<civicgrid_store::IdempotencyKey>,
    ) -> ServiceResult<Created> {
        if let Some(key) = &idempotency
            && let Some(first) = self.store.case_made_by(key).await?
        {
            return Ok(Created { value: first, replayed: true });
        }
        let world = self.world();
        let town = world
            .town
            .as_ref()
            .ok_or(ServiceError::NotReady("no town is set up yet; run `civicgrid demo` or import one"))?;
        input.attachments = self.resolve_attachments(actor, "attachments", &input.attachments, None).await?;
        let component = match input.component_id {
            Some(id) => self.store.component(id).await?,
            None => None,
        };
        let now = self.clock.now();
        let facts = check_report(input, actor, &world.catalog, &world.index, component.as_ref(), now)?;
        let ctx = Context::new(now, &world.clocks, &world.sla);
        let (_, event) = CaseStatus::report(&facts, actor.event_actor(), &ctx);
        Ok(self.store.create_case_once(NewCase { town: town.code, facts, event, idempotency }).await?)
    }

    /// A case the actor may see.
    pub async fn case(&self, actor: &Actor, id: CaseId) -> ServiceResult<Case> {
        match self.store.case(id).await? {
            Some(c) if actor.can_see(&c) => Ok(c),
            _ => Err(ServiceError::NotFound("case")),
        }
    }

    /// A case's history, oldest first.
    pub async fn case_events(&self, actor: &Actor, id: CaseId) -> ServiceResult<Vec<CaseEvent>> {
        self.case(actor, id).await?;
        Ok(self.store.case_events(id).await?)
    }

    /// Changes a case. With `expected_version`, refuses with a conflict if the case is no longer at
    /// that version; without it, acts on the version just read (and still refuses if the case moves
    /// on between the read and the write).
    pub async fn transition(
        &self,
        actor: &Actor,
        id: CaseId,
        cmd: &Command,
        expected_version: Option<i64>,
    ) -> ServiceResult<Case> {
        let case = self.case(actor, id).await?;
        let action = &cmd.action;
        let cmd = &Command { task: self.task_of(actor, &case, cmd), ..cmd.clone() };
        if !actor.can_act(&case, action, cmd.task.as_ref()) {
            return Err(ServiceError::forbidden(format!(
                "{} may not {} this case",
                actor.role.label_zh(),
                action.name()
            )));
        }
        if let Some(v) = expected_version.filter(|v| *v != case.status.version) {
            return Err(StoreError::Conflict { expected: v }.into());
        }
        self.check_related(actor, &case, action).await?;
        let world = self.world();
        if let Action::Dispatch { lead, co } | Action::Reassign { lead, co } = action {
            if !world.has_department(lead) {
                return Err(ServiceError::invalid("lead", format!("department {lead} does not exist")));
            }
            if let Some(d) = co.iter().find(|d| !world.has_department(d)) {
                return Err(ServiceError::invalid("co", format!("department {d} does not exist")));
            }
        }
        let evidence = self.resolve_attachments(actor, "evidence", &cmd.evidence, Some(id)).await?;
        if action.needs_photos(&case.facts, actor.role) {
            self.check_on_site(&case, &evidence, cmd.position, f64::from(world.sla.verify_radius_m)).await?;
        }
        let cmd = Command { evidence, ..cmd.clone() };
        let route = match action {
            Action::File | Action::Reopen | Action::ApproveReturn | Action::ConfirmCheck | Action::Split
                if cmd.task.is_none() =>
            {
                self.route_for(&world, &case).await?
            }
            _ => None,
        };
        let sampled = *action == Action::FixOnSpot && Self::drawn_for_sampling(&world, id);
        // A sensor's case is verified only once its telemetry has been normal for the recovery period.
        let recovered = match (case.facts.source, action) {
            (Source::Iot, Action::VerifyPass) => self.telemetry_recovered(id).await?,
            _ => true,
        };
        let ctx = Context::new(self.clock.now(), &world.clocks, &world.sla)
            .with_route(route.as_ref())
            .with_sample(sampled)
            .with_telemetry(recovered);
        let event = civicgrid_core::case::decide(&case.facts, &case.status, &cmd, actor.event_actor(), &ctx)?;
        let status = self.store.append(id, case.status.version, event).await?;
        Ok(Case { status, ..case })
    }

    /// The co-department task a command concerns: the one it names, or, for a handler of a
    /// co-department (not the lead) taking a task step, their own department's.
    fn task_of(&self, actor: &Actor, case: &Case, cmd: &Command) -> Option<DeptCode> {
        if cmd.task.is_some() {
            return cmd.task.clone();
        }
        let own = actor.department.as_ref().filter(|_| actor.role == Role::DeptHandler)?;
        let co = case.status.lead_dept.as_ref() != Some(own) && case.status.tasks.iter().any(|t| &t.dept == own);
        (co && cmd.action.applies_to_tasks()).then(|| own.clone())
    }

    /// A passed verification, a check and a fix on the spot are made on site: the uploaded photos' GPS
    /// positions (or the phone's) are checked against the case's location (`core::case::check_on_site`).
    async fn check_on_site(
        &self,
        case: &Case,
        evidence: &[civicgrid_core::case::Attachment],
        reported: Option<civicgrid_core::case::GeoPoint>,
        radius_m: f64,
    ) -> ServiceResult<()> {
        let mut photos = Vec::new();
        for a in evidence.iter().filter(|a| a.mime.starts_with("image/")) {
            if let Some(id) = a.id {
                photos.push(self.store.attachment(id).await?.and_then(|s| s.location));
            }
        }
        Ok(civicgrid_core::case::check_on_site(case.facts.location, &photos, reported, radius_m)?)
    }

    /// Cases the actor may see that match `filter`, newest first. The actor's scope is always applied,
    /// whatever the filter says.
    pub async fn list_cases(
        &self,
        actor: &Actor,
        mut filter: CaseFilter,
        page: PageRequest,
    ) -> ServiceResult<Page<Case>> {
        if !(1..=MAX_PAGE).contains(&page.limit) {
            return Err(ServiceError::invalid("limit", format!("limit must be between 1 and {MAX_PAGE}")));
        }
        filter.scope = Some(actor.case_scope());
        Ok(self.store.list_cases(&filter, page).await?)
    }
    /// How many cases the actor may see match `filter`, counted up to `cap` (1–10,000).
    pub async fn count_cases(&self, actor: &Actor, mut filter: CaseFilter, cap: u32) -> ServiceResult<i64> {
        if !(1..=MAX_COUNT).contains(&cap) {
            return Err(ServiceError::invalid("cap", format!("cap must be between 1 and {MAX_COUNT}")));
        }
        filter.scope = Some(actor.case_scope());
        Ok(self.store.count_matching(&filter, cap).await?)
    }

    /// The steps `actor` may take on `case` now: allowed to their post and scope
    /// (`core::access`) and accepted by the state machine from the current state (`core::case::decide`,
    /// asked with a sample of each command). Each offer names the co-department task it concerns.
    /// What the sample cannot know (the merge's primary, the departments of a dispatch, the photos'
    /// positions) is checked when the step is taken.
    pub fn offered_actions(&self, actor: &Actor, case: &Case) -> Vec<Offer> {
        let world = self.world();
        let ctx = Context::new(self.clock.now(), &world.clocks, &world.sla);
        let photo = civicgrid_core::case::Attachment {
            id: None,
            name: "sample.jpg".into(),
            mime: "image/jpeg".into(),
            size: 1,
            sha256: None,
            taken_at: None,
        };
        let some_dept = case.status.lead_dept.clone().or_else(|| world.departments.keys().next().cloned());
        sample_actions(case, some_dept)
            .into_iter()
            .filter_map(|action| {
                let sample = Command {
                    reason: Some("sample".into()),
                    evidence: vec![photo.clone()],
                    ..Command::new(action.clone())
                };
                let task = self.task_of(actor, case, &sample);
                if !actor.can_act(case, &action, task.as_ref()) {
                    return None;
                }
                let sample = Command { task: task.clone(), ..sample };
                civicgrid_core::case::decide(&case.facts, &case.status, &sample, actor.event_actor(), &ctx)
                    .ok()
                    .map(|_| Offer { action, task })
            })
            .collect()
    }
}

/// The case as `actor` may read it: the reporter's phone and name are masked for every post that does
/// not call reporters back.
pub fn masked_for(mut case: Case, actor: &Actor) -> Case {
    // The public reporter's query code is theirs alone: no post sees even its digest.
    case.facts.reporter.tracking = None;
    if !actor.role.sees_personal_data() {
        let r = &mut case.facts.reporter;
        r.phone = r.phone.as_deref().map(mask_phone);
        r.name = r.name.as_deref().map(mask_name);
    }
    case
}
