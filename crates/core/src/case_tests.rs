//! Tests of the case state machine: the standard flow, side paths, refusals, and property tests that
//! random command sequences keep the status consistent and replayable.

use super::*;
use crate::access::Role;
use crate::calendar::{TimeLimit, WorkCalendar, from_local};
use crate::sla::Clocks;
use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

fn facts(at: Timestamp) -> CaseFacts {
    CaseFacts {
        matter: "06010".parse().expect("matter"),
        component_id: None,
        source: Source::GridPatrol,
        urgency: Urgency::Normal,
        description: "暴露垃圾".into(),
        location: GeoPoint { lon: 120.9, lat: 31.3 },
        address: "张浦镇".into(),
        grid: "320583100001001".parse().expect("grid"),
        micro_grid: "32058310000100101".parse().expect("micro"),
        reporter: Reporter::default(),
        attachments: vec![],
        reported_at: at,
        upstream: None,
    }
}

fn photo() -> Attachment {
    Attachment {
        id: None,
        name: "现场.jpg".into(),
        mime: "image/jpeg".into(),
        size: 2048,
        sha256: None,
        taken_at: None,
    }
}

fn actor() -> EventActor {
    EventActor::user(7, Role::ShiftLeader)
}

fn dept(s: &str) -> DeptCode {
    s.parse().expect("dept")
}

struct World {
    cal: WorkCalendar,
    clocks: Clocks,
    sla: SlaPolicy,
    now: Timestamp,
    facts: CaseFacts,
    status: CaseStatus,
    events: Vec<CaseEvent>,
    sampled: bool,
}

impl World {
    fn new() -> Self {
        let now = from_local(date(2026, 11, 23).at(9, 0, 0, 0)); // a Monday
        let cal = WorkCalendar::china_2026();
        let sla = SlaPolicy::default();
        let facts = facts(now);
        let clocks = sla.clocks(&cal).expect("valid policy");
        let (status, event) = CaseStatus::report(&facts, actor(), &Context::new(now, &clocks, &sla));
        World { cal, clocks, sla, now, facts, status, events: vec![event], sampled: false }
    }

    /// A world whose case was reported with other facts.
    fn reported(change: impl FnOnce(&mut CaseFacts)) -> Self {
        let mut w = World::new();
        change(&mut w.facts);
        let (status, event) = CaseStatus::report(&w.facts, actor(), &Context::new(w.now, &w.clocks, &w.sla));
        (w.status, w.events) = (status, vec![event]);
        w
    }

    /// Runs `action` with a reason and one photo as evidence.
    fn with_photo(&mut self, action: Action) -> Result<&CaseEvent, TransitionError> {
        self.run(&Command { evidence: vec![photo()], ..Command::new(action).because("现场照片") })
    }

    fn cmd(&mut self, action: Action, reason: Option<&str>) -> Result<&CaseEvent, TransitionError> {
        let cmd = Command { reason: reason.map(str::to_owned), ..Command::new(action) };
        self.run(&cmd)
    }

    fn run(&mut self, cmd: &Command) -> Result<&CaseEvent, TransitionError> {
        let ctx = Context::new(self.now, &self.clocks, &self.sla).with_sample(self.sampled);
        let event = decide(&self.facts, &self.status, cmd, actor(), &ctx)?;
        self.status.apply(&event).expect("decided events apply");
        self.events.push(event);
        Ok(self.events.last().expect("just pushed"))
    }

    /// Runs `action`, which must be legal, with a reason and, where it needs one, an on-site photo.
    fn ok(&mut self, action: Action) {
        let evidence = if action.needs_on_site_evidence() { vec![photo()] } else { vec![] };
        self.run(&Command { evidence, ..Command::new(action).because("因为") }).expect("legal");
    }

    /// A step of `dept`'s co-department task.
    fn task(&mut self, d: &str, action: Action) -> Result<&CaseEvent, TransitionError> {
        self.run(&Command::new(action).because("因为").for_task(dept(d)))
    }

    fn task_of(&self, d: &str) -> &CoTask {
        self.status.tasks.iter().find(|t| t.dept == dept(d)).expect("task")
    }

    fn wait(&mut self, minutes: i64) {
        self.now += SignedDuration::from_mins(minutes);
    }
}

#[test]
fn standard_flow_closes_on_time() {
    let mut w = World::new();
    assert_eq!(w.status.due_at, Some(w.now + SignedDuration::from_mins(30)), "dispatch within 30 min");
    w.ok(Action::Accept);
    w.ok(Action::File);
    w.ok(Action::Dispatch { lead: dept("huanwei"), co: vec![dept("chengguan")] });
    assert_eq!(w.status.state, CaseState::Dispatched);
    // Exposed rubbish: 4 working hours from 09:00 Monday → 15:00 (lunch skipped).
    assert_eq!(w.status.handle_due_at, Some(from_local(date(2026, 11, 23).at(15, 0, 0, 0))));
    w.ok(Action::Sign);
    w.wait(120);
    w.ok(Action::Reply);
    w.task("chengguan", Action::Sign).expect("co sign");
    w.task("chengguan", Action::Reply).expect("co reply");
    w.ok(Action::VerifyPass);
    w.ok(Action::Close);
    assert_eq!(w.status.state, CaseState::Closed);
    assert_eq!(w.status.close_type, Some(CloseType::Normal));
    assert_eq!(w.status.closed_at, Some(w.now));
    assert_eq!(w.status.due_at, None);
    assert_eq!(w.status.version, 10);
    assert_eq!(CaseStatus::replay(&w.events).expect("replays"), w.status);
}

#[test]
fn late_reply_closes_late() {
    let mut w = World::new();
    for a in [Action::Accept, Action::File, Action::Dispatch { lead: dept("huanwei"), co: vec![] }, Action::Sign] {
        w.ok(a);
    }
    w.wait(24 * 60);
    w.ok(Action::Reply);
    w.ok(Action::VerifyPass);
    w.ok(Action::Close);
    assert_eq!(w.status.close_type, Some(CloseType::Late));
}

#[test]
fn failed_verification_is_rework_with_a_fresh_deadline() {
    let mut w = World::new();
    for a in [
        Action::Accept,
        Action::File,
        Action::Dispatch { lead: dept("huanwei"), co: vec![] },
        Action::Sign,
        Action::Reply,
    ] {
        w.ok(a);
    }
    assert_eq!(
        w.cmd(Action::VerifyFail, None).map(|_| ()),
        Err(TransitionError::ReasonRequired { action: "verify_fail" })
    );
    w.wait(60);
    w.ok(Action::VerifyFail);
    assert_eq!(w.status.state, CaseState::Handling);
    assert_eq!(w.status.rework_count, 1);
    assert_eq!(w.status.handle_due_at, Some(w.cal.deadline(w.now, TimeLimit::WorkingHours(4))));
}

#[test]
fn illegal_transitions_are_typed_errors_and_change_nothing() {
    let mut w = World::new();
    let before = w.status.clone();
    assert_eq!(
        w.cmd(Action::Close, None).map(|_| ()),
        Err(TransitionError::Illegal { from: CaseState::Reported, action: "close" })
    );
    assert_eq!(
        w.cmd(Action::Report, None).map(|_| ()),
        Err(TransitionError::Illegal { from: CaseState::Reported, action: "report" })
    );
    assert_eq!(w.status, before);
    assert_eq!(w.events.len(), 1);
}

#[test]
fn dispatch_refuses_lead_repeated_as_co() {
    let mut w = World::new();
    w.ok(Action::Accept);
    w.ok(Action::File);
    let r = w.cmd(Action::Dispatch { lead: dept("a"), co: vec![dept("a")] }, None);
    assert!(matches!(r, Err(TransitionError::Invalid(_))));
}

#[test]
fn parking_stops_the_clock_and_unparking_restores_the_remaining_time() {
    let mut w = World::new();
    for a in [Action::Accept, Action::File, Action::Dispatch { lead: dept("huanwei"), co: vec![] }, Action::Sign] {
        w.ok(a);
    }
    let due = w.status.handle_due_at.expect("due");
    w.wait(60); // 10:00, 3 working hours left (10–12, 14–15)
    w.ok(Action::Park);
    assert_eq!(w.status.due_at, None);
    w.now = from_local(date(2026, 11, 30).at(9, 0, 0, 0)); // a week later
    w.ok(Action::Unpark);
    let expected = from_local(date(2026, 11, 30).at(12, 0, 0, 0));
    assert_eq!(w.status.handle_due_at, Some(expected));
    assert!(expected > due);
}

#[test]
fn extension_request_and_approval_move_the_deadline_by_working_hours() {
    let mut w = World::new();
    for a in [Action::Accept, Action::File, Action::Dispatch { lead: dept("huanwei"), co: vec![] }, Action::Sign] {
        w.ok(a);
    }
    let due = w.status.handle_due_at.expect("due"); // Monday 15:00
    w.ok(Action::RequestExtension { working_hours: 8 });
    assert_eq!(w.status.state, CaseState::ExtensionRequested);
    assert_eq!(w.status.request_from, Some(CaseState::Handling));
    w.ok(Action::ApproveExtension);
    assert_eq!(w.status.state, CaseState::Handling);
    assert_eq!(w.status.handle_due_at, Some(w.cal.add_working_seconds(due, 8 * 3600)));
    assert_eq!(w.status.requested_extension_hours, None);
}

#[test]
fn return_request_goes_back_to_where_it_came_from_when_denied() {
    let mut w = World::new();
    for a in [Action::Accept, Action::File, Action::Dispatch { lead: dept("huanwei"), co: vec![] }] {
        w.ok(a);
    }
    w.ok(Action::RejectAssignment);
    w.ok(Action::DenyReturn);
    assert_eq!(w.status.state, CaseState::Dispatched);
    w.ok(Action::RejectAssignment);
    w.ok(Action::ApproveReturn);
    assert_eq!(w.status.state, CaseState::Filed);
    assert_eq!(w.status.lead_dept, None);
}

#[test]
fn call_back_only_once_and_reopen_clears_the_closure() {
    let mut w = closed(Source::GridPatrol);
    w.ok(Action::CallBack { satisfaction: Satisfaction::Dissatisfied });
    assert_eq!(
        w.cmd(Action::CallBack { satisfaction: Satisfaction::Satisfied }, None).map(|_| ()),
        Err(TransitionError::AlreadyRated)
    );
    w.ok(Action::Reopen);
    assert_eq!(w.status.state, CaseState::Filed);
    assert_eq!((w.status.reopen_count, w.status.closed_at, w.status.satisfaction), (1, None, None));
}

fn dispatched_with_co(co: &[&str]) -> World {
    let mut w = World::new();
    let co = co.iter().map(|d| dept(d)).collect();
    for a in [Action::Accept, Action::File, Action::Dispatch { lead: dept("huanwei"), co }] {
        w.ok(a);
    }
    w
}

#[test]
fn each_co_department_gets_a_task_on_its_own_clock_and_the_last_reply_makes_the_case_replied() {
    let mut w = World::new();
    // The water company works 07:00–22:00; the others keep standard hours.
    let period = |a: i8, b: i8| crate::sla::WorkPeriod {
        start: jiff::civil::time(a, 0, 0, 0),
        end: jiff::civil::time(b, 0, 0, 0),
    };
    w.sla.department_hours.insert(dept("shuiwu"), vec![period(7, 22)]);
    w.clocks = w.sla.clocks(&w.cal).expect("clocks");
    for a in [Action::Accept, Action::File] {
        w.ok(a);
    }
    w.now = from_local(date(2026, 11, 23).at(18, 30, 0, 0));
    w.ok(Action::Dispatch { lead: dept("huanwei"), co: vec![dept("chengguan"), dept("shuiwu")] });
    assert_eq!(w.status.tasks.len(), 2);
    let (cg, sw) = (w.task_of("chengguan").clone(), w.task_of("shuiwu").clone());
    assert_eq!((cg.state, sw.state), (TaskState::Dispatched, TaskState::Dispatched));
    assert_eq!(cg.due_at, w.status.due_at, "same standard clock as the lead");
    assert!(sw.due_at < cg.due_at, "the late-working department's sign deadline falls tonight");
    assert!(cg.timers.is_some() && sw.handle_timers.is_some(), "each task has its own timers");

    // The co-departments act before the lead has even signed: nothing waits for the lead.
    w.wait(10);
    w.task("chengguan", Action::Sign).expect("co sign");
    assert_eq!(w.status.state, CaseState::Dispatched, "a task's step leaves the case where it is");
    assert_eq!(w.events.last().map(|e| e.task.clone()), Some(Some(dept("chengguan"))));
    w.task("chengguan", Action::Reply).expect("co reply");
    assert_eq!(w.task_of("chengguan").state, TaskState::Replied);
    assert_eq!(w.task_of("chengguan").due_at, None);

    w.ok(Action::Sign);
    w.ok(Action::Reply);
    assert_eq!(w.status.state, CaseState::Handling, "shuiwu has not replied yet");
    assert!(w.status.lead_replied_at.is_some());
    assert_eq!(w.status.due_at, None, "the lead's step is done; the open task carries the clock");
    assert!(matches!(w.cmd(Action::Reply, None), Err(TransitionError::Invalid(_))), "the lead replies once");

    w.wait(30);
    assert!(matches!(w.task("shuiwu", Action::Reply), Err(TransitionError::IllegalTask { .. })), "sign first");
    w.task("shuiwu", Action::Sign).expect("sign");
    w.task("shuiwu", Action::Reply).expect("last reply");
    assert_eq!(w.status.state, CaseState::Replied, "the last reply moves the case");
    assert_eq!(w.status.replied_at, Some(w.now));
    assert_eq!(w.status.lead_replied_at, None);
    assert!(w.status.due_at.is_some(), "the verification deadline runs");
    assert_eq!(CaseStatus::replay(&w.events).expect("replays"), w.status);
}

#[test]
fn a_returned_co_task_is_not_waited_for_and_requests_never_block_the_other_parties() {
    let mut w = dispatched_with_co(&["chengguan", "shuiwu"]);
    w.ok(Action::Sign);
    // The lead asks for more time; the co-departments go on regardless.
    w.ok(Action::RequestExtension { working_hours: 4 });
    w.task("chengguan", Action::Sign).expect("sign");
    w.task("chengguan", Action::RequestExtension { working_hours: 8 }).expect("co extension");
    assert_eq!(w.task_of("chengguan").state, TaskState::ExtensionRequested);
    assert_eq!(w.status.state, CaseState::ExtensionRequested, "the lead's request is untouched");
    w.task("shuiwu", Action::RejectAssignment).expect("co return request");
    // The dispatcher decides the co-department requests one by one.
    let lead_due = w.status.handle_due_at;
    let co_due = w.task_of("chengguan").handle_due_at.expect("due");
    w.task("chengguan", Action::ApproveExtension).expect("approve");
    let t = w.task_of("chengguan");
    assert_eq!(t.state, TaskState::Handling);
    assert_eq!(t.handle_due_at, Some(w.cal.add_working_seconds(co_due, 8 * 3600)));
    assert_eq!(t.due_at, t.handle_due_at);
    assert_eq!(w.status.handle_due_at, lead_due, "the lead's deadline does not move");
    w.task("shuiwu", Action::ApproveReturn).expect("approve return");
    assert_eq!(w.task_of("shuiwu").state, TaskState::Returned);
    assert_eq!(w.status.lead_dept, Some(dept("huanwei")), "a co-department's return keeps the lead");
    w.ok(Action::DenyExtension);
    w.ok(Action::Reply);
    assert_eq!(w.status.state, CaseState::Handling, "chengguan still at work");
    w.task("chengguan", Action::Reply).expect("reply");
    assert_eq!(w.status.state, CaseState::Replied, "the returned task is not waited for");
}

#[test]
fn co_task_refusals_name_the_task() {
    let mut w = dispatched_with_co(&["chengguan"]);
    assert!(matches!(w.task("shuiwu", Action::Sign), Err(TransitionError::Invalid(_))), "not a co-department");
    assert!(matches!(w.task("chengguan", Action::Close), Err(TransitionError::Invalid(_))), "not a task step");
    match w.task("chengguan", Action::ApproveReturn) {
        Err(TransitionError::IllegalTask { from: TaskState::Dispatched, .. }) => {}
        other => panic!("expected a task refusal, got {other:?}"),
    }
    w.task("chengguan", Action::RejectAssignment).expect("return request");
    w.task("chengguan", Action::DenyReturn).expect("denied");
    assert_eq!(w.task_of("chengguan").state, TaskState::Dispatched, "back to where it came from");
    let before = w.status.clone();
    assert!(w.task("chengguan", Action::RequestExtension { working_hours: 0 }).is_err());
    assert_eq!(w.status, before);
    // Once the case is parked or finished, tasks wait too.
    w.ok(Action::Sign);
    w.ok(Action::Park);
    assert!(matches!(w.task("chengguan", Action::Sign), Err(TransitionError::Illegal { .. })));
}

#[test]
fn parking_needs_the_shift_leaders_approval_and_stops_every_task_clock() {
    let mut w = dispatched_with_co(&["chengguan"]);
    w.ok(Action::Sign);
    w.task("chengguan", Action::Sign).expect("sign");
    let due = w.status.due_at;
    w.ok(Action::RequestPark);
    assert_eq!((w.status.state, w.status.request_from), (CaseState::ParkRequested, Some(CaseState::Handling)));
    assert_eq!(w.status.due_at, due, "the clock runs while the request waits");
    assert_eq!(w.status.parked_at, None);
    w.task("chengguan", Action::RequestExtension { working_hours: 2 }).expect("a pending park blocks no task");
    w.ok(Action::DenyPark);
    assert_eq!((w.status.state, w.status.due_at), (CaseState::Handling, due));
    w.wait(60); // 10:00
    w.ok(Action::RequestPark);
    w.ok(Action::ApprovePark);
    assert_eq!(w.status.state, CaseState::Parked);
    assert_eq!(w.status.parked_at, Some(w.now));
    let co_left = w.cal.working_seconds_between(w.now, w.task_of("chengguan").handle_due_at.expect("due"));
    w.now = from_local(date(2026, 11, 30).at(9, 0, 0, 0));
    w.ok(Action::Unpark);
    let t = w.task_of("chengguan");
    assert_eq!(t.handle_due_at, Some(w.cal.add_working_seconds(w.now, co_left)), "the task got its time back");
}

#[test]
fn a_void_request_waits_for_the_shift_leader_and_a_refusal_goes_back() {
    let mut w = World::new();
    w.ok(Action::Accept);
    w.ok(Action::RequestVoid);
    assert_eq!((w.status.state, w.status.request_from), (CaseState::VoidRequested, Some(CaseState::Accepted)));
    w.ok(Action::Escalate);
    assert_eq!(w.status.request_from, Some(CaseState::Accepted), "a 督办 keeps the pending request");
    w.ok(Action::DenyVoid);
    assert_eq!(w.status.state, CaseState::Accepted);
    w.ok(Action::RequestVoid);
    w.ok(Action::Void);
    assert_eq!(w.status.state, CaseState::Void);
}

fn any_action() -> impl Strategy<Value = Action> {
    let d = prop_oneof![Just("huanwei"), Just("chengguan"), Just("shuiwu")].prop_map(dept);
    prop_oneof![
        Just(Action::Report),
        Just(Action::Accept),
        Just(Action::File),
        (d.clone(), proptest::collection::vec(d.clone(), 0..2)).prop_map(|(lead, co)| Action::Dispatch { lead, co }),
        Just(Action::Sign),
        Just(Action::RejectAssignment),
        Just(Action::ApproveReturn),
        Just(Action::DenyReturn),
        (d.clone(), proptest::collection::vec(d, 0..2)).prop_map(|(lead, co)| Action::Reassign { lead, co }),
        Just(Action::SendBack),
        (0u32..50).prop_map(|working_hours| Action::RequestExtension { working_hours }),
        Just(Action::ApproveExtension),
        Just(Action::DenyExtension),
        Just(Action::Park),
        Just(Action::RequestPark),
        Just(Action::ApprovePark),
        Just(Action::DenyPark),
        Just(Action::Unpark),
        Just(Action::RequestVoid),
        Just(Action::DenyVoid),
        Just(Action::Reply),
        Just(Action::VerifyPass),
        Just(Action::VerifyFail),
        Just(Action::Close),
        Just(Action::CallBack { satisfaction: Satisfaction::Satisfied }),
        Just(Action::Escalate),
        Just(Action::Reopen),
        Just(Action::Void),
        Just(Action::RequestCheck),
        Just(Action::ConfirmCheck),
        Just(Action::RefuteCheck),
        Just(Action::FixOnSpot),
        Just(Action::Merge { into: 42 }),
        Just(Action::Split),
        Just(Action::CloseWithPrimary),
        Just(Action::Rectify),
        Just(Action::CallBack { satisfaction: Satisfaction::VeryDissatisfied }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_command_sequences_stay_consistent_and_replay_exactly(
        steps in proptest::collection::vec(
            (any_action(), any::<bool>(), proptest::option::weighted(0.4, prop_oneof![Just("chengguan"), Just("shuiwu")]), 0i64..3000),
            1..60,
        ),
        public in any::<bool>(),
        sampled in any::<bool>(),
    ) {
        let mut w = World::reported(|f| {
            f.attachments = vec![photo()];
            if public {
                f.source = Source::Hotline12345;
            }
        });
        w.sampled = sampled;
        for (action, with_reason, task, minutes) in steps {
            w.wait(minutes);
            let before = w.status.clone();
            let cmd = Command {
                reason: with_reason.then(|| "原因".to_owned()),
                evidence: if with_reason { vec![photo()] } else { vec![] },
                task: task.map(dept),
                ..Command::new(action)
            };
            let accepted = w.run(&cmd).is_ok();
            if !accepted {
                prop_assert_eq!(&w.status, &before, "a refused command changes nothing");
            }
            let s = &w.status;
            prop_assert_eq!(s.version as usize, w.events.len());
            prop_assert_eq!(s.closed_at.is_some(), s.state == CaseState::Closed);
            prop_assert_eq!(s.close_type.is_some(), s.state == CaseState::Closed && s.merged_into.is_none());
            prop_assert_eq!(s.parked_at.is_some(), s.state == CaseState::Parked);
            let rectifying = s.rectification.as_ref().is_some_and(Rectification::is_open);
            prop_assert!(s.state.is_open() || s.due_at.is_none() || rectifying, "no clock on finished cases");
            prop_assert!(!rectifying || (public && s.state == CaseState::Closed));
            if s.state.departments_at_work() || s.state == CaseState::Parked {
                prop_assert!(s.lead_dept.is_some());
            }
            if s.lead_dept.is_some() {
                prop_assert!(s.state.departments_at_work()
                    || matches!(s.state, CaseState::Parked | CaseState::Replied | CaseState::Verified | CaseState::Closed));
            }
            prop_assert_eq!(s.merged_into.is_some(), s.merged_from.is_some());
            prop_assert!(s.state != CaseState::Merged || s.merged_into.is_some());
            prop_assert_eq!(s.requested_extension_hours.is_some(), s.state == CaseState::ExtensionRequested);
            prop_assert!(s.lead_dept.as_ref().is_none_or(|l| !s.co_depts.contains(l)));
            prop_assert!(s.rework_count >= 0 && s.escalation_level >= 0);
            prop_assert!(s.tasks.iter().all(|t| s.co_depts.contains(&t.dept)), "a task per co-department");
            prop_assert!(s.state != CaseState::Replied || crate::cotask::all_finished(&s.tasks), "replied waits for every task");
            prop_assert!(s.lead_replied_at.is_none() || matches!(s.state, CaseState::Handling | CaseState::Parked));
            prop_assert_eq!(s.request_from.is_some(), s.state.is_request());
        }
        prop_assert_eq!(CaseStatus::replay(&w.events).expect("history replays"), w.status.clone());
        // Events survive a JSON round trip (they are stored as JSON).
        let json = serde_json::to_string(&w.events).expect("serialise");
        let back: Vec<CaseEvent> = serde_json::from_str(&json).expect("deserialise");
        prop_assert_eq!(back, w.events.clone());
    }
}

#[test]
fn replay_rejects_broken_histories() {
    let mut w = World::new();
    w.ok(Action::Accept);
    assert_eq!(CaseStatus::replay(&[]), Err(ReplayError::Empty));
    assert_eq!(CaseStatus::replay(&w.events[1..]), Err(ReplayError::NoReport));
    let mut skipped = w.events.clone();
    skipped[1].seq = 3;
    assert_eq!(CaseStatus::replay(&skipped), Err(ReplayError::OutOfOrder { expected: 2, got: 3 }));
}

#[test]
fn source_names_match_their_json() {
    for s in Source::ALL {
        assert_eq!(serde_json::to_value(s).expect("ser"), serde_json::json!(s.as_str()));
    }
}

#[test]
fn urgent_cases_get_ten_minutes_to_dispatch() {
    let cal = WorkCalendar::china_2026();
    let sla = SlaPolicy::default();
    let now = from_local(date(2026, 10, 1).at(3, 0, 0, 0)); // night of a holiday: the centre runs 24 h
    let mut f = facts(now);
    f.urgency = Urgency::Urgent;
    let clocks = sla.clocks(&cal).expect("valid policy");
    let (status, _) = CaseStatus::report(&f, actor(), &Context::new(now, &clocks, &sla));
    assert_eq!(status.due_at, Some(now + SignedDuration::from_mins(10)));
}

#[test]
fn distances_are_great_circle_metres() {
    let a = GeoPoint { lon: 120.65, lat: 31.35 };
    // 0.001° of latitude is about 111 m anywhere.
    let d = distance_m(a, GeoPoint { lat: 31.351, ..a });
    assert!((d - 111.2).abs() < 0.5, "{d}");
    assert_eq!(distance_m(a, a), 0.0);
}

#[test]
fn on_site_check_takes_the_nearest_photo_then_the_reported_position() {
    let case = GeoPoint { lon: 120.65, lat: 31.35 };
    let near = Some(GeoPoint { lat: 31.3502, ..case }); // ~22 m
    let far = Some(GeoPoint { lat: 31.352, ..case }); // ~222 m
    assert!(check_on_site(case, &[far, near], None, 50.0).is_ok());
    assert_eq!(check_on_site(case, &[far], None, 50.0).expect_err("far").field(), Some("evidence"));
    assert_eq!(check_on_site(case, &[None], None, 50.0).expect_err("no gps").field(), Some("position"));
    assert!(check_on_site(case, &[None], near, 50.0).is_ok());
    assert_eq!(check_on_site(case, &[], near, 50.0).expect_err("no photo").field(), Some("evidence"));
    let nowhere = Some(GeoPoint { lon: f64::NAN, lat: 31.35 });
    assert_eq!(check_on_site(case, &[near], nowhere, 50.0).expect_err("bad position").field(), Some("position"));
    // A photo's own position wins over the reported one.
    assert!(check_on_site(case, &[far], near, 50.0).is_err());
}

#[test]
fn filing_records_the_proposed_route_until_the_dispatch() {
    let mut w = World::new();
    w.ok(Action::Accept);
    let route = crate::routing::Route {
        lead: dept("huanwei"),
        co: vec![dept("chengguan")],
        basis: crate::routing::RouteBasis::Rule,
        rule: Some(3),
    };
    let ctx = Context::new(w.now, &w.clocks, &w.sla).with_route(Some(&route));
    let event = decide(&w.facts, &w.status, &Command::new(Action::File), actor(), &ctx).expect("file");
    assert_eq!(event.route.as_ref(), Some(&route));
    w.status.apply(&event).expect("apply");
    w.events.push(event);
    assert_eq!(w.status.proposed_route.as_ref(), Some(&route));
    w.ok(Action::Escalate);
    assert_eq!(w.status.proposed_route.as_ref(), Some(&route), "kept while the case waits for dispatch");
    w.ok(Action::Dispatch { lead: dept("shizheng"), co: vec![] });
    assert_eq!(w.status.proposed_route, None);
    assert_eq!(CaseStatus::replay(&w.events).expect("replays"), w.status);
}

#[test]
fn a_check_on_site_files_a_true_report_and_voids_a_false_one() {
    let public = |f: &mut CaseFacts| f.source = Source::Hotline12345;
    let mut w = World::reported(public);
    w.ok(Action::RequestCheck);
    assert_eq!(w.status.state, CaseState::Checking);
    // One working hour on the standard clock: Monday 09:00 → 10:00.
    assert_eq!(w.status.due_at, Some(from_local(date(2026, 11, 23).at(10, 0, 0, 0))));
    assert!(matches!(w.cmd(Action::ConfirmCheck, None), Err(TransitionError::Invalid(_))), "no photo, no check");
    w.wait(40);
    w.with_photo(Action::ConfirmCheck).expect("confirmed");
    assert_eq!(w.status.state, CaseState::Filed);
    assert_eq!(w.status.due_at, Some(w.now + SignedDuration::from_mins(30)), "the dispatch clock starts afresh");

    let mut w = World::reported(public);
    w.ok(Action::Accept);
    w.ok(Action::RequestCheck);
    assert_eq!(
        w.run(&Command { evidence: vec![photo()], ..Command::new(Action::RefuteCheck) }).map(|_| ()),
        Err(TransitionError::ReasonRequired { action: "refute_check" })
    );
    w.with_photo(Action::RefuteCheck).expect("refuted");
    assert_eq!((w.status.state, w.status.due_at), (CaseState::Void, None));
    assert_eq!(w.events.last().map(|e| e.evidence.len()), Some(1), "the worker's photo is on the event");
    assert_eq!(CaseStatus::replay(&w.events).expect("replays"), w.status);

    // A grid worker's own patrol report is not sent back to a grid worker.
    let mut w = World::new();
    assert!(matches!(w.cmd(Action::RequestCheck, None), Err(TransitionError::Invalid(_))));
}

#[test]
fn a_fix_on_the_spot_closes_at_once_or_waits_for_its_sampled_verification() {
    // Without the report's before photo, there is nothing to compare with.
    let mut w = World::new();
    assert!(matches!(w.with_photo(Action::FixOnSpot), Err(TransitionError::Invalid(_))));

    let with_before = |f: &mut CaseFacts| f.attachments = vec![photo()];
    let mut w = World::reported(with_before);
    assert!(matches!(w.cmd(Action::FixOnSpot, None), Err(TransitionError::Invalid(_))), "needs the after photo");
    w.with_photo(Action::FixOnSpot).expect("fixed");
    let s = &w.status;
    assert_eq!(
        (s.state, s.close_type, s.closed_at, s.fixed_on_spot),
        (CaseState::Closed, Some(CloseType::Normal), Some(w.now), true)
    );

    let mut w = World::reported(with_before);
    w.sampled = true;
    w.with_photo(Action::FixOnSpot).expect("fixed");
    assert_eq!(w.status.state, CaseState::Replied);
    assert_eq!(w.status.replied_at, Some(w.now));
    assert!(w.status.due_at.is_some(), "the verification has its deadline");
    w.ok(Action::VerifyFail);
    assert_eq!((w.status.state, w.status.rework_count), (CaseState::Filed, 1), "a failed fix goes to be dispatched");
    assert_eq!(CaseStatus::replay(&w.events).expect("replays"), w.status);

    let mut w = World::reported(|f| {
        with_before(f);
        f.source = Source::CitizenH5;
    });
    assert!(matches!(w.with_photo(Action::FixOnSpot), Err(TransitionError::Invalid(_))), "only patrol reports");
}

#[test]
fn a_merged_case_follows_its_primary_until_it_is_split_or_closed_with_it() {
    let mut w = World::new();
    w.ok(Action::Accept);
    w.ok(Action::Merge { into: 42 });
    let s = &w.status;
    assert_eq!(
        (s.state, s.merged_into, s.merged_from, s.due_at),
        (CaseState::Merged, Some(42), Some(CaseState::Accepted), None)
    );
    assert!(matches!(w.cmd(Action::Split, None), Err(TransitionError::ReasonRequired { .. })));
    w.wait(10);
    w.ok(Action::Split);
    assert_eq!((w.status.state, w.status.merged_into), (CaseState::Accepted, None));
    assert_eq!(w.status.due_at, Some(w.now + SignedDuration::from_mins(30)), "its own clock starts again");
    w.ok(Action::Merge { into: 43 });
    assert_eq!(
        w.cmd(Action::Close, None).map(|_| ()),
        Err(TransitionError::Illegal { from: CaseState::Merged, action: "close" })
    );
    w.ok(Action::CloseWithPrimary);
    let s = &w.status;
    assert_eq!((s.state, s.merged_into, s.close_type), (CaseState::Closed, Some(43), None));
    assert!(s.closed_at.is_some());
    // A dispatched case is no longer merged: its department is at work.
    let mut w = dispatched_with_co(&[]);
    assert!(w.cmd(Action::Merge { into: 42 }, None).is_err());
    assert_eq!(CaseStatus::replay(&w.events).expect("replays"), w.status);
}

fn closed(source: Source) -> World {
    let mut w = World::reported(|f| f.source = source);
    for a in [
        Action::Accept,
        Action::File,
        Action::Dispatch { lead: dept("huanwei"), co: vec![] },
        Action::Sign,
        Action::Reply,
        Action::VerifyPass,
        Action::Close,
    ] {
        w.ok(a);
    }
    w
}

#[test]
fn a_poor_rating_of_a_public_report_opens_a_rectification_with_its_own_deadline() {
    let mut w = closed(Source::Hotline12345);
    w.ok(Action::CallBack { satisfaction: Satisfaction::Dissatisfied });
    let r = w.status.rectification.clone().expect("opened");
    assert_eq!((r.dept, r.opened_at, r.rectified_at), (dept("huanwei"), w.now, None));
    // Five working days from Monday 09:00 → the next Monday 09:00.
    assert_eq!(r.due_at, from_local(date(2026, 11, 30).at(9, 0, 0, 0)));
    assert_eq!(w.status.due_at, Some(r.due_at), "the deadline is the case's, so its timers warn");
    w.ok(Action::Warn { level: WarnLevel::Yellow });
    assert_eq!(w.status.state, CaseState::Closed);
    w.wait(60);
    w.ok(Action::Rectify);
    assert_eq!(w.status.rectification.as_ref().and_then(|r| r.rectified_at), Some(w.now));
    assert_eq!(w.status.due_at, None);
    assert!(matches!(w.cmd(Action::Rectify, Some("again")), Err(TransitionError::Illegal { .. })));
    assert!(matches!(w.cmd(Action::Warn { level: WarnLevel::Red }, None), Err(TransitionError::Illegal { .. })));
    // The rectification can still lead to a reopening, which supersedes it.
    w.ok(Action::Reopen);
    assert_eq!((w.status.state, w.status.rectification.clone()), (CaseState::Filed, None));
    assert_eq!(CaseStatus::replay(&w.events).expect("replays"), w.status);

    // A good rating, or a poor one of the centre's own patrol report, opens nothing.
    let mut w = closed(Source::Hotline12345);
    w.ok(Action::CallBack { satisfaction: Satisfaction::BasicallySatisfied });
    assert_eq!((w.status.rectification.clone(), w.status.due_at), (None, None));
    let mut w = closed(Source::GridPatrol);
    w.ok(Action::CallBack { satisfaction: Satisfaction::VeryDissatisfied });
    assert_eq!(w.status.rectification, None);
}

#[test]
fn the_handling_deadline_never_falls_after_an_upstream_deadline_the_12345_kind_or_the_110_limit() {
    let dispatch = |w: &mut World| {
        for a in [Action::Accept, Action::File, Action::Dispatch { lead: dept("huanwei"), co: vec![] }] {
            w.ok(a);
        }
    };
    let upstream = |deadline: Option<Timestamp>| crate::ticket::Upstream {
        channel: crate::access::Channel::Hotline12345,
        account_id: 1,
        ticket_no: "T1".into(),
        category: None,
        deadline,
        diversion: None,
        police_return: false,
    };
    // An unauthorised structure (06001) is 20 working days; a hotline deadline two hours away wins.
    let soon = from_local(date(2026, 11, 23).at(11, 0, 0, 0));
    let mut w = World::reported(|f| {
        f.matter = "06001".parse().expect("matter");
        f.source = Source::Hotline12345;
        f.upstream = Some(upstream(Some(soon)));
    });
    dispatch(&mut w);
    assert_eq!(w.status.handle_due_at, Some(soon));
    // A deadline already past shortens nothing.
    let mut w = World::reported(|f| {
        f.matter = "06001".parse().expect("matter");
        f.upstream = Some(upstream(Some(from_local(date(2026, 11, 20).at(9, 0, 0, 0)))));
    });
    dispatch(&mut w);
    assert_eq!(w.status.handle_due_at, Some(w.cal.deadline(w.now, TimeLimit::WorkingDays(20))));
    // A 12345 enquiry (咨询) is answered within one working day.
    let mut w = World::reported(|f| {
        f.matter = "06001".parse().expect("matter");
        f.upstream =
            Some(crate::ticket::Upstream { category: Some(crate::ticket::TicketCategory::Consult), ..upstream(None) });
    });
    dispatch(&mut w);
    assert_eq!(w.status.handle_due_at, Some(w.cal.deadline(w.now, TimeLimit::WorkingDays(1))));
    // A 110 diversion is due within one working day whatever the matter's own limit.
    let mut w = World::reported(|f| {
        f.matter = "06001".parse().expect("matter");
        f.source = Source::Police110;
    });
    dispatch(&mut w);
    assert_eq!(w.status.handle_due_at, Some(w.cal.deadline(w.now, TimeLimit::WorkingDays(1))));
}

#[test]
fn the_escalation_ladder_starts_over_with_each_new_deadline() {
    use crate::sla::Timer;
    let mut w = World::new();
    w.ok(Action::Accept);
    w.ok(Action::File);
    // The dispatch is late: 督办 to the top of the ladder, and no further.
    for _ in 0..MAX_ESCALATION_LEVEL {
        w.ok(Action::Escalate);
    }
    assert_eq!((w.status.escalation_level, w.status.step_escalation), (MAX_ESCALATION_LEVEL, MAX_ESCALATION_LEVEL));
    let dispatch_due = w.status.due_at.expect("a dispatch deadline");
    assert!(w.cmd(Action::Escalate, Some("再督办")).is_err(), "the top rung is the last");
    assert_eq!(Timer::Rung(1).action(&w.status, &w.events, dispatch_due, None), None, "rung 1 only notifies now");
    // A warning keeps the deadline, and with it the step's level.
    w.ok(Action::Warn { level: WarnLevel::Red });
    assert_eq!(w.status.step_escalation, MAX_ESCALATION_LEVEL);

    // The department's step has a deadline of its own: its lateness is escalated from rung 1 again,
    // while the case keeps the highest level it reached.
    w.ok(Action::Dispatch { lead: dept("huanwei"), co: vec![] });
    assert_ne!(w.status.due_at, Some(dispatch_due));
    assert_eq!((w.status.escalation_level, w.status.step_escalation), (MAX_ESCALATION_LEVEL, 0));
    let sign_due = w.status.due_at.expect("a signing deadline");
    assert_eq!(Timer::Rung(1).action(&w.status, &w.events, sign_due, None), Some(Action::Escalate));
    w.ok(Action::Escalate);
    assert_eq!((w.status.escalation_level, w.status.step_escalation), (MAX_ESCALATION_LEVEL, 1));
    assert_eq!(Timer::Rung(1).action(&w.status, &w.events, sign_due, None), None, "rung 1 of this deadline is done");

    // Signing sets the handling deadline, and an approved extension moves it: each starts over.
    w.ok(Action::Sign);
    assert_eq!(w.status.step_escalation, 0);
    w.ok(Action::Escalate);
    w.ok(Action::Escalate);
    assert_eq!(w.status.step_escalation, 2);
    w.ok(Action::RequestExtension { working_hours: 8 });
    w.ok(Action::ApproveExtension);
    assert_eq!((w.status.escalation_level, w.status.step_escalation), (MAX_ESCALATION_LEVEL, 0));
    // Closing ends the last step; the case stays one that was escalated.
    for a in [Action::Reply, Action::VerifyPass, Action::Close] {
        w.ok(a);
    }
    assert_eq!((w.status.escalation_level, w.status.step_escalation), (MAX_ESCALATION_LEVEL, 0));
    assert_eq!(CaseStatus::replay(&w.events).expect("replays"), w.status);
}
