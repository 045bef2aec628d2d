//! From telemetry to alarms to cases, and back: the rules ([`civicgrid_core::alarm`]) follow each
//! batch of readings as it is stored (`follow_rules` before the commit, which stores what they now
//! remember with the readings, and `act_on` after it) and the passing of time ([`Services::iot_sweep`],
//! the `iot.sweep` job every minute); what they find becomes an alarm, one per subject and fault, which
//! a repeat raises again.
//!
//! An alarm at or above its rule's case severity opens a case — matter from the component's class,
//! reported, accepted, filed and dispatched by the system to the component's department, or for a
//! device's own health to the IoT maintenance contractor. The department replies as usual; the system
//! verifies and closes the case only once telemetry has been normal for the recovery period, and a
//! relapse sends it back as rework (返工) or reopens it.
//!
//! A lamp-out alarm waits the storm window before it opens a case: when more than the policy's share
//! of one cabinet's lamps are out, the cabinet gets one alarm and one case, and the lamps' alarms are
//! held back until it recovers. Critical alarms are pushed to the shift leader on duty (in-app and
//! every outbound channel) and escalate if nobody acknowledges them. People counters' checkpoints
//! raise a crowd alarm above their occupancy threshold.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use civicgrid_core::access::{Actor, Role};
use civicgrid_core::alarm::{Alarm, AlarmSeverity, Change, Evidence, Fault, Rule, RuleSet, RuleState, Subject};
use civicgrid_core::case::{Action, Case, CaseId, CaseState, Command, Source, Urgency};
use civicgrid_core::duty::{Addressee, DutyPost, Severity};
use civicgrid_core::intake::ReportInput;
use civicgrid_core::iot::{Device, DeviceId, DeviceKind, Metric, Reading, RollupSpan};
use civicgrid_core::org::DeptCode;
use civicgrid_store::{AlarmFilter, Backend, StoreError};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::require;
use crate::notify::Alert;
use crate::{ServiceError, ServiceResult, Services};

/// The recurring job that follows the passing of time (silence, held conditions, storms, crowds,
/// cases to open, advance and close).
pub const SWEEP: &str = "iot.sweep";
/// The system job recorded on what the rules do.
const JOB: &str = "iot_alarms";
/// The rule name of a cabinet outage.
const STORM_RULE: &str = "storm";
/// The rule name of a crowd.
const CROWD_RULE: &str = "crowd";
/// Most alarms a list answers.
pub const MAX_ALARMS: u32 = 500;

/// Who may read alarms and acknowledge them: the centre's posts.
pub const WATCHERS: [Role; 7] = [
    Role::Commander,
    Role::Leader,
    Role::ShiftLeader,
    Role::Dispatcher,
    Role::IntakeOperator,
    Role::Supervisor,
    Role::Analyst,
];

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct SweepReport {
    /// Alarms raised (or raised again).
    pub raised: u32,
    /// Alarms cleared.
    pub cleared: u32,
    /// Cases opened.
    pub cases_opened: u32,
    /// Cases closed after telemetry recovered.
    pub cases_closed: u32,
    /// Alarms ended.
    pub ended: u32,
}

/// A checkpoint's people flow today.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CheckpointFlow {
    /// The checkpoint.
    pub checkpoint: String,
    /// Where it is: the middle of its people counters that have a place (none: not on the map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<civicgrid_core::case::GeoPoint>,
    /// The grid it is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub grid: Option<civicgrid_core::codes::GridCode>,
    /// People in the area now (in minus out since local midnight).
    pub occupancy: i64,
    /// The crowd threshold.
    pub max: u32,
    /// Per 5 minutes, oldest first.
    pub flow: Vec<FlowSpan>,
}

/// People in and out over five minutes.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FlowSpan {
    /// Where the span starts.
    #[schema(value_type = String, format = DateTime)]
    pub start: Timestamp,
    /// In.
    pub count_in: i64,
    /// Out.
    pub count_out: i64,
}

fn system() -> Actor {
    Actor::system(JOB)
}

fn subject_of(d: &Device) -> Subject {
    match d.component_id {
        Some(c) => Subject::Component(c),
        None => Subject::Device(d.id.clone()),
    }
}

fn evidence(
    at: Timestamp,
    device: Option<&Device>,
    metric: Option<Metric>,
    value: Option<f64>,
    note: &str,
) -> Evidence {
    Evidence { at, device: device.map(|d| d.id.clone()), metric, value, note: note.into() }
}

/// What a rule found in a device's readings.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    rule: Rule,
    device: Arc<Device>,
    change: Change,
    metric: Metric,
}

/// What the rules remember of one device: (rule id, memory), one entry a rule at most.
pub(crate) type DeviceMemory = Vec<(String, RuleState)>;

/// This node's copy of what the rules remember of devices (SQLite only; see `rule_memory`).
#[derive(Debug, Default)]
pub(crate) struct RuleMemory {
    /// Each device whose memory has been read from the store, with it.
    devices: HashMap<DeviceId, DeviceMemory>,
}

/// A rule's entry in a device's memory, made (empty) if it has none.
fn state_of<'m>(memory: &'m mut DeviceMemory, rule: &str) -> &'m mut RuleState {
    let i = match memory.iter().position(|(r, _)| r == rule) {
        Some(i) => i,
        None => {
            memory.push((rule.to_owned(), RuleState::default()));
            memory.len() - 1
        }
    };
    &mut memory[i].1
}

/// Rows of remembered states, by device.
fn by_device(rows: Vec<(DeviceId, String, RuleState)>) -> HashMap<DeviceId, DeviceMemory> {
    let mut out: HashMap<DeviceId, DeviceMemory> = HashMap::new();
    for (d, rule, s) in rows {
        out.entry(d).or_default().push((rule, s));
    }
    out
}

/// What the rules found, and what they now remember of devices (device, rule, memory).
pub(crate) type Followed = (Vec<Found>, Vec<(DeviceId, String, RuleState)>);

/// A raising to apply: which alarm, why, and what showed it.
struct Raise<'a> {
    subject: Subject,
    rule: &'a str,
    fault: Fault,
    severity: AlarmSeverity,
    device: Option<&'a Device>,
    metric: Option<Metric>,
    value: Option<f64>,
    at: Timestamp,
    /// It opens no case before this.
    hold_until: Option<Timestamp>,
}

/// A turn to follow the rules ([`Services::rules_turn`]); the next follower goes when it is dropped.
#[derive(Debug)]
#[must_use = "the turn ends when it is dropped"]
pub struct RulesTurn {
    // Fields drop in order: the cluster's turn ends before the node's next follower may ask for it.
    _cluster: civicgrid_store::RulesTurn,
    _node: tokio::sync::OwnedMutexGuard<()>,
}

impl Services {
    /// Waits for the turn every rule follower takes (ingest, from whatever transport, and the minute's
    /// sweep): from reading what the rules remember of devices to storing what they now remember, one
    /// follower at a time, so that two never start from the same memory and the later one's write
    /// undoes the earlier one's. This node's followers queue here first, then take the store's turn,
    /// which on PostgreSQL is shared by every node on the database. Public so that a tool or a test
    /// can hold the rules still.
    pub async fn rules_turn(&self) -> ServiceResult<RulesTurn> {
        let node = self.rule_followers.clone().lock_owned().await;
        Ok(RulesTurn { _cluster: self.store.rules_turn().await?, _node: node })
    }

    /// The smart components' rules (the centre's posts and the administrator).
    pub fn alarm_rules(&self, actor: &Actor) -> ServiceResult<RuleSet> {
        crate::iot::may_read(actor)?;
        Ok(self.world().alarm_rules.clone())
    }

    /// Replaces the smart components' rules (administrators).
    pub async fn set_alarm_rules(&self, actor: &Actor, rules: RuleSet) -> ServiceResult<RuleSet> {
        require(actor, &[Role::Admin])?;
        rules.check()?;
        let world = self.world();
        if !world.has_department(&rules.maintenance_dept) {
            return Err(ServiceError::invalid(
                "maintenance_dept",
                format!("department {} does not exist", rules.maintenance_dept),
            ));
        }
        if let Some((i, m)) = rules.rules.iter().enumerate().find_map(|(i, r)| Some((i, r.matter?)))
            && world.catalog.matter(m).is_none()
        {
            return Err(ServiceError::invalid(
                &format!("rules[{i}].matter"),
                format!("matter {m} is not in the code table"),
            ));
        }
        self.store.put_alarm_rules(&rules, actor.user_id, self.clock.now()).await?;
        self.reload_world().await?;
        tracing::info!(admin = actor.user_id, rules = rules.rules.len(), "alarm rules replaced");
        Ok(rules)
    }

    /// Alarms, newest raising first (the centre's posts).
    pub async fn alarms(&self, actor: &Actor, mut filter: AlarmFilter) -> ServiceResult<Vec<Alarm>> {
        require(actor, &WATCHERS)?;
        filter.limit = filter.limit.clamp(1, MAX_ALARMS);
        Ok(self.store.alarms(&filter).await?)
    }

    /// One alarm (the centre's posts).
    pub async fn alarm(&self, actor: &Actor, id: i64) -> ServiceResult<Alarm> {
        require(actor, &WATCHERS)?;
        self.store.alarm(id).await?.ok_or(ServiceError::NotFound("alarm"))
    }

    /// Acknowledges an alarm (the centre's posts, not analysts); it ends if it is also cleared and
    /// has no open case.
    pub async fn acknowledge_alarm(&self, actor: &Actor, id: i64) -> ServiceResult<Alarm> {
        require(actor, &WATCHERS)?;
        if actor.role == Role::Analyst {
            return Err(ServiceError::forbidden("analysts read alarms; the posts on duty acknowledge them"));
        }
        let mut a = self.store.alarm(id).await?.ok_or(ServiceError::NotFound("alarm"))?;
        a.acknowledge(Some(actor.user_id), self.clock.now())?;
        a.add_evidence(evidence(self.clock.now(), None, None, None, &format!("acknowledged by {}", actor.username)));
        self.store.update_alarm(&mut a, "acknowledged").await?;
        self.end_if_done(&mut a).await?;
        Ok(a)
    }

    /// Lets each device's rules see its readings in time order (what they remember of the devices is
    /// read in one go): what they found, and the memories that changed, to be stored with the readings.
    /// None when the memories could not be read (counted and logged; the readings are stored all the
    /// same).
    pub(crate) async fn follow_rules(&self, batch: &mut [(Arc<Device>, Vec<Reading>)]) -> Option<Followed> {
        let world = self.world();
        let rules = &world.alarm_rules;
        let watched = |d: &Device| rules.for_kind(d.kind).next().is_some();
        let ids: Vec<DeviceId> = batch.iter().filter(|(d, _)| watched(d)).map(|(d, _)| d.id.clone()).collect();
        if ids.is_empty() {
            return None;
        }
        let memories = match self.rule_memory(&ids).await {
            Ok(m) => m,
            Err(e) => {
                rule_failure("rule memory not read", &e);
                return None;
            }
        };
        let mut memories = memories.into_iter();
        let mut changed = Vec::new();
        let mut found = Vec::new();
        for (device, readings) in batch.iter_mut() {
            readings.sort_by_key(|r| r.at);
            if !watched(device) {
                continue;
            }
            let mut memory = memories.next().unwrap_or_default();
            for rule in rules.for_kind(device.kind) {
                let state = state_of(&mut memory, &rule.id);
                let before = state.clone();
                for r in readings.iter() {
                    if let Some(c) = rule.observe(state, r, world.place) {
                        found.push(Found { rule: rule.clone(), device: device.clone(), change: c, metric: r.metric });
                    }
                }
                if remembered(&before) != remembered(state) {
                    changed.push((device.id.clone(), rule.id.clone(), std::mem::take(state)));
                }
            }
        }
        Some((found, changed))
    }

    /// What the rules remember of each of these devices, in their order: on SQLite (one node by
    /// construction) from this node's copy, read from the store once per device; on PostgreSQL, where
    /// another node may have followed a device's last readings, from the store every time.
    async fn rule_memory(&self, ids: &[DeviceId]) -> ServiceResult<Vec<DeviceMemory>> {
        if self.store.backend() != Backend::Sqlite {
            let mut known = by_device(self.store.rule_states(ids).await?);
            return Ok(ids.iter().map(|d| known.remove(d).unwrap_or_default()).collect());
        }
        let poisoned = || ServiceError::Internal("rule memory poisoned".into());
        let missing: Vec<DeviceId> = {
            let memory = self.rule_memory.lock().map_err(|_| poisoned())?;
            ids.iter().filter(|d| !memory.devices.contains_key(*d)).cloned().collect()
        };
        let mut read =
            if missing.is_empty() { HashMap::new() } else { by_device(self.store.rule_states(&missing).await?) };
        let mut memory = self.rule_memory.lock().map_err(|_| poisoned())?;
        for d in missing {
            let stored = read.remove(&d).unwrap_or_default();
            memory.devices.entry(d).or_insert(stored);
        }
        Ok(ids.iter().map(|d| memory.devices.get(d).cloned().unwrap_or_default()).collect())
    }

    /// Notes in this node's copy what the rules now remember (once it is stored). A device not in
    /// the copy is read from the store when next needed.
    pub(crate) fn remember(&self, states: &[(DeviceId, String, RuleState)]) {
        if self.store.backend() != Backend::Sqlite || states.is_empty() {
            return;
        }
        if let Ok(mut memory) = self.rule_memory.lock() {
            for (d, rule, s) in states {
                if let Some(known) = memory.devices.get_mut(d) {
                    *state_of(known, rule) = s.clone();
                }
            }
        }
    }

    /// Raises and clears the alarms the rules found (after their readings were stored); one alarm's
    /// trouble is logged and counted and never stops the others.
    pub(crate) async fn act_on(&self, found: Vec<Found>) {
        if found.is_empty() {
            return;
        }
        let world = self.world();
        for f in found {
            if let Err(e) = self.apply_change(&world.alarm_rules, &f.rule, &f.device, f.change, Some(f.metric)).await {
                rule_failure("alarm not raised or cleared", &e);
            }
        }
    }

    async fn apply_change(
        &self,
        rules: &RuleSet,
        rule: &Rule,
        device: &Device,
        change: Change,
        metric: Option<Metric>,
    ) -> ServiceResult<()> {
        match change {
            Change::Raise { at, value } => {
                let hold = (rule.fault == Fault::LampOut)
                    .then(|| at + SignedDuration::from_secs(i64::from(rules.storm.window_s)));
                self.raise_alarm(Raise {
                    subject: subject_of(device),
                    rule: &rule.id,
                    fault: rule.fault,
                    severity: rule.severity,
                    device: Some(device),
                    metric,
                    value,
                    at,
                    hold_until: hold,
                })
                .await?;
            }
            Change::Clear { at, value } => {
                self.clear_alarm(&subject_of(device), rule.fault, at, Some(device), metric, value).await?;
            }
        }
        Ok(())
    }

    /// Raises an alarm: the subject's open one of that fault again, or a new one (which, after a
    /// recently closed case of the same fault, rejoins that case).
    async fn raise_alarm(&self, r: Raise<'_>) -> ServiceResult<Alarm> {
        let note = |what: &str| evidence(r.at, r.device, r.metric, r.value, what);
        for _ in 0..5 {
            if let Some(mut a) = self.store.open_alarm(&r.subject, r.fault).await? {
                let relapsed = a.repeat(r.at);
                a.severity = a.severity.max(r.severity);
                a.add_evidence(note("raised again"));
                match self.store.update_alarm(&mut a, "raised again").await {
                    Err(StoreError::Conflict { .. }) => continue,
                    other => other?,
                }
                metrics::counter!("civicgrid_alarms_raised_total", "fault" => r.fault.as_str()).increment(1);
                if relapsed && let Some(case) = a.case_id {
                    self.relapse(case, &a).await?;
                }
                self.push_if_critical(&a).await?;
                return Ok(a);
            }
            let mut a = Alarm::raise(r.subject.clone(), r.rule, r.fault, r.severity, r.at);
            a.device = r.device.map(|d| d.id.clone());
            a.hold_until = r.hold_until;
            a.add_evidence(note("raised"));
            let rules = &self.world().alarm_rules;
            if let Some(last) = self.store.last_ended_alarm(&r.subject, r.fault).await?
                && let Some(case) = last.case_id
                && last.ended_at.is_some_and(|e| r.at.duration_since(e) <= secs(rules.relapse_s))
            {
                // The same fault back soon after its case closed: that case again, as rework.
                a.case_id = Some(case);
            }
            let a = match self.store.insert_alarm(&a, "raised").await {
                Err(StoreError::Duplicate { .. }) => continue,
                other => other?,
            };
            metrics::counter!("civicgrid_alarms_raised_total", "fault" => r.fault.as_str()).increment(1);
            tracing::info!(alarm = a.id, subject = %a.subject, fault = a.fault.as_str(), "alarm raised");
            if let Some(case) = a.case_id {
                self.relapse(case, &a).await?;
            }
            self.push_if_critical(&a).await?;
            let mut a = a;
            if a.hold_until.is_none_or(|h| h <= r.at) {
                self.open_case_if_due(&mut a, r.at).await?;
            }
            return Ok(a);
        }
        Err(ServiceError::Internal("an alarm kept changing under its raising".into()))
    }

    /// Clears the subject's open alarm of that fault, if it is active.
    async fn clear_alarm(
        &self,
        subject: &Subject,
        fault: Fault,
        at: Timestamp,
        device: Option<&Device>,
        metric: Option<Metric>,
        value: Option<f64>,
    ) -> ServiceResult<Option<Alarm>> {
        for _ in 0..5 {
            let Some(mut a) = self.store.open_alarm(subject, fault).await? else { return Ok(None) };
            if !a.active {
                return Ok(Some(a));
            }
            a.clear(at);
            a.add_evidence(evidence(at, device, metric, value, "cleared"));
            match self.store.update_alarm(&mut a, "cleared").await {
                Err(StoreError::Conflict { .. }) => continue,
                other => other?,
            }
            tracing::info!(alarm = a.id, subject = %a.subject, fault = a.fault.as_str(), "alarm cleared");
            self.end_if_done(&mut a).await?;
            return Ok(Some(a));
        }
        Err(ServiceError::Internal("an alarm kept changing under its clearing".into()))
    }

    /// Ends an alarm that is cleared and acknowledged and whose case, if any, is closed.
    async fn end_if_done(&self, a: &mut Alarm) -> ServiceResult<bool> {
        if let Some(id) = a.case_id {
            let closed = self.store.case(id).await?.is_none_or(|c| !c.status.state.is_open());
            if !closed {
                return Ok(false);
            }
        }
        if !a.end_if_done(self.clock.now()) {
            return Ok(false);
        }
        match self.store.update_alarm(a, "ended").await {
            Err(StoreError::Conflict { .. }) => Ok(false),
            other => other.map(|()| true).map_err(Into::into),
        }
    }

    /// Pushes a critical alarm to the shift leader on duty, in-app and on every channel; the
    /// notification escalates to the next post up if nobody acknowledges it in time.
    async fn push_if_critical(&self, a: &Alarm) -> ServiceResult<()> {
        if a.severity != AlarmSeverity::Critical || !a.active {
            return Ok(());
        }
        let case = match a.case_id {
            Some(id) => self.store.case(id).await?,
            None => None,
        };
        let last = a.evidence.last();
        self.raise(Alert {
            dedup_key: format!("alarm:{}:{}", a.id, a.count),
            kind: "alarm",
            severity: Severity::Critical,
            case,
            addressee: Some(Addressee::Post(DutyPost::ShiftLeader, None)),
            title: format!("【紧急告警】{} · {}", a.fault.label_zh(), a.subject),
            body: format!(
                "告警 #{} 第 {} 次：{}{}",
                a.id,
                a.count,
                last.and_then(|e| e.device.as_ref()).map_or(String::new(), |d| format!("设备 {d} ")),
                last.and_then(|e| Some(format!("{} = {}", e.metric?.as_str(), e.value?))).unwrap_or_default()
            ),
        })
        .await
    }

    /// Opens the case an alarm's rule asks for, if it has none and nothing holds it back.
    async fn open_case_if_due(&self, a: &mut Alarm, now: Timestamp) -> ServiceResult<bool> {
        let world = self.world();
        let opens = match a.rule.as_str() {
            STORM_RULE => true,
            CROWD_RULE => false,
            id => world.alarm_rules.rule(id).is_some_and(Rule::opens_case),
        };
        if !opens
            || !a.active
            || a.case_id.is_some()
            || a.suppressed_by.is_some()
            || a.hold_until.is_some_and(|h| h > now)
        {
            return Ok(false);
        }
        let Some(report) = self.sensor_report(a).await? else { return Ok(false) };
        let key = format!("alarm-{}", a.id);
        let case = self.report_case_once(&system(), report.input, Some(&key)).await?.value;
        a.case_id = Some(case.id);
        a.add_evidence(evidence(now, None, None, None, &format!("case {} opened", case.number)));
        self.store.update_alarm(a, "case opened").await?;
        tracing::info!(alarm = a.id, case = case.id, dept = %report.dept, "alarm opened a case");
        self.advance_sensor_case(case.id, Some(&report.dept)).await?;
        Ok(true)
    }

    /// The report a sensor's alarm makes, and the department it goes to.
    async fn sensor_report(&self, a: &Alarm) -> ServiceResult<Option<SensorReport>> {
        let world = self.world();
        let rules = &world.alarm_rules;
        let component = match &a.subject {
            Subject::Component(c) => self.store.component(*c).await?,
            // A cabinet stands where its first lamp does, and belongs to the lamps' department.
            Subject::Device(d) => {
                let first_lamp = self.store.devices().await?.into_iter().find(|l| l.cabinet.as_ref() == Some(d));
                match first_lamp.and_then(|l| l.component_id) {
                    Some(c) => self.store.component(c).await?,
                    None => None,
                }
            }
            Subject::Checkpoint(_) => None,
        };
        let Some(component) = component else {
            tracing::warn!(alarm = a.id, subject = %a.subject, "no component to place the alarm's case; none opened");
            return Ok(None);
        };
        let rule_matter = rules.rule(&a.rule).and_then(|r| r.matter);
        let Some(matter) = rule_matter.or_else(|| world.catalog.fault_matter_of(component.id.class()).map(|m| m.code))
        else {
            tracing::warn!(alarm = a.id, class = %component.id.class(), "no matter for the component's class");
            return Ok(None);
        };
        let dept =
            if a.fault.is_device_health() { rules.maintenance_dept.clone() } else { component.department.clone() };
        let on_component = matches!(a.subject, Subject::Component(_));
        let first = a.evidence.first();
        let reading = first.and_then(|e| Some(format!("，{} = {}", e.metric?.as_str(), e.value?))).unwrap_or_default();
        let device = a.device.as_ref().map_or(String::new(), |d| format!("，设备 {d}"));
        let what = match &a.subject {
            Subject::Device(d) => format!("配电箱 {d} 下多盏路灯同时不亮"),
            _ => a.fault.label_zh().to_owned(),
        };
        let input = ReportInput {
            matter,
            component_id: on_component.then_some(component.id),
            source: Some(Source::Iot),
            urgency: if a.severity == AlarmSeverity::Critical { Urgency::Urgent } else { Urgency::Normal },
            description: format!("【物联网告警 #{}】{}：{}{device}{reading}", a.id, component.name, what),
            location: component.location,
            coord_system: Default::default(),
            address: component.name.clone(),
            reporter_name: None,
            reporter_phone: None,
            attachments: Vec::new(),
            upstream: None,
            tracking: None,
        };
        Ok(Some(SensorReport { input, dept }))
    }

    /// Takes a sensor case's next centre steps the system takes itself — accept, file, dispatch to the
    /// department of its alarm (`dept`, when the caller knows it) — until a department holds it; the
    /// case as it then is.
    async fn advance_sensor_case(&self, id: CaseId, dept: Option<&DeptCode>) -> ServiceResult<Case> {
        let sys = system();
        let mut case = self.case(&sys, id).await?;
        loop {
            let action = match case.status.state {
                CaseState::Reported => Action::Accept,
                CaseState::Accepted => Action::File,
                CaseState::Filed => {
                    let lead = match dept {
                        Some(d) => d.clone(),
                        None => match self.dispatch_target(&case).await? {
                            Some(d) => d,
                            None => return Ok(case),
                        },
                    };
                    if !self.world().has_department(&lead) {
                        // Left for the dispatcher rather than refused over and over.
                        tracing::warn!(case = id, dept = %lead, "a sensor case's department does not exist");
                        return Ok(case);
                    }
                    Action::Dispatch { lead, co: Vec::new() }
                }
                _ => return Ok(case),
            };
            case = self.transition(&sys, id, &Command::new(action), Some(case.status.version)).await?;
        }
    }

    /// Where a sensor case goes: the department its alarm's report named.
    async fn dispatch_target(&self, case: &Case) -> ServiceResult<Option<DeptCode>> {
        let alarms =
            self.store.alarms(&AlarmFilter { case_id: Some(case.id), limit: 10, ..Default::default() }).await?;
        for a in &alarms {
            if let Some(r) = self.sensor_report(a).await? {
                return Ok(Some(r.dept));
            }
        }
        Ok(case.status.lead_dept.clone())
    }

    /// A fault came back on a case: after the department's reply it goes back as rework; once
    /// closed it is reopened and dispatched again.
    async fn relapse(&self, id: CaseId, a: &Alarm) -> ServiceResult<()> {
        let sys = system();
        let case = self.case(&sys, id).await?;
        let reason = format!("遥测复发：告警 #{} {}（第 {} 次）", a.id, a.fault.label_zh(), a.count);
        let action = match case.status.state {
            CaseState::Replied => Action::VerifyFail,
            CaseState::Closed => Action::Reopen,
            _ => return Ok(()),
        };
        let cmd = Command { reason: Some(reason), ..Command::new(action) };
        self.transition(&sys, id, &cmd, Some(case.status.version)).await?;
        tracing::info!(case = id, alarm = a.id, "telemetry relapse: the case goes back as rework");
        self.advance_sensor_case(id, None).await.map(drop)
    }

    /// Whether every alarm of a sensor case has been normal for the recovery period (a case with no
    /// alarm has nothing to wait for).
    pub(crate) async fn telemetry_recovered(&self, case: CaseId) -> ServiceResult<bool> {
        let recovery = secs(self.world().alarm_rules.recovery_s);
        let now = self.clock.now();
        let alarms = self.store.alarms(&AlarmFilter { case_id: Some(case), limit: 100, ..Default::default() }).await?;
        Ok(alarms.iter().filter(|a| a.ended_at.is_none()).all(|a| a.recovered(now, recovery)))
    }

    /// Follows the passing of time: held conditions and silent devices raise, cabinets fail and
    /// recover, checkpoints fill, held lamp alarms open their cases, sensor cases move on and close
    /// once telemetry has recovered, and finished alarms end.
    pub async fn iot_sweep(&self) -> ServiceResult<SweepReport> {
        let now = self.clock.now();
        let world = self.world();
        let rules = &world.alarm_rules;
        let mut report = SweepReport::default();
        self.summarise_telemetry().await?;
        let devices = self.store.devices().await?;
        let watched: Vec<&Device> =
            devices.iter().filter(|d| d.retired_at.is_none() && rules.for_kind(d.kind).next().is_some()).collect();
        let ids: Vec<DeviceId> = watched.iter().map(|d| d.id.clone()).collect();
        let turn = self.rules_turn().await?;
        let memories = self.rule_memory(&ids).await?;
        for (d, mut memory) in watched.into_iter().zip(memories) {
            let heard = d.last_seen_at;
            let interval = SignedDuration::from_secs(i64::from(d.expected_interval_s));
            for rule in rules.for_kind(d.kind) {
                let state = state_of(&mut memory, &rule.id);
                if let Some(change) = rule.elapse(state, now, heard, interval) {
                    let changed = [(d.id.clone(), rule.id.clone(), state.clone())];
                    self.store.put_rule_states(&changed).await?;
                    self.remember(&changed);
                    self.apply_change(rules, rule, d, change, rule.condition.metric()).await?;
                    report.raised += 1;
                }
            }
        }
        drop(turn);
        self.storms(&devices, now, &mut report).await?;
        self.crowds(&devices, now, &mut report).await?;
        let open = self.store.alarms(&AlarmFilter { open_only: true, limit: 1000, ..Default::default() }).await?;
        for mut a in open {
            // One alarm's trouble (a case moved on by someone meanwhile, a department gone) is logged
            // and retried next minute; it never holds up the others.
            if let Err(e) = self.settle(&mut a, now, &mut report).await {
                metrics::counter!("civicgrid_rule_failures_total").increment(1);
                tracing::warn!(alarm = a.id, error = %e, "alarm not settled this sweep");
            }
        }
        Ok(report)
    }

    /// An open alarm's part of the sweep: its case opened, moved on or closed; the alarm ended.
    async fn settle(&self, a: &mut Alarm, now: Timestamp, report: &mut SweepReport) -> ServiceResult<()> {
        if a.case_id.is_none() {
            if self.open_case_if_due(a, now).await? {
                report.cases_opened += 1;
            }
        } else if self.settle_case(a).await? {
            report.cases_closed += 1;
        }
        if self.end_if_done(a).await? {
            report.ended += 1;
        }
        Ok(())
    }

    /// Moves an alarm's case on: the system's own steps; after the department's reply and the
    /// recovery period, verification and closing; once closed, the alarm counts as acknowledged.
    async fn settle_case(&self, a: &mut Alarm) -> ServiceResult<bool> {
        let Some(id) = a.case_id else { return Ok(false) };
        let sys = system();
        let mut case = self.advance_sensor_case(id, None).await?;
        let mut closed_now = false;
        if case.status.state == CaseState::Replied && self.telemetry_recovered(id).await? {
            let since = a
                .cleared_at
                .map_or(String::new(), |c| civicgrid_core::calendar::local(c).strftime("%m-%d %H:%M").to_string());
            let verify = Command {
                reason: Some(format!("遥测已恢复正常（自 {since} 起）")),
                ..Command::new(Action::VerifyPass)
            };
            case = self.transition(&sys, id, &verify, Some(case.status.version)).await?;
            case = self.transition(&sys, id, &Command::new(Action::Close), Some(case.status.version)).await?;
            tracing::info!(case = id, alarm = a.id, "telemetry recovered: the case is closed");
            closed_now = true;
        }
        if case.status.state == CaseState::Closed && a.acked_at.is_none() && !a.active {
            a.acknowledge(None, self.clock.now())?;
            a.add_evidence(evidence(self.clock.now(), None, None, None, &format!("case {} closed", case.number)));
            self.store.update_alarm(a, "case closed").await?;
        }
        Ok(closed_now)
    }

    /// Cabinet outages: more than the storm share of a cabinet's lamps out raises one alarm on the
    /// cabinet and holds the lamps' alarms back; at or below it, the cabinet clears and lets them go.
    async fn storms(&self, devices: &[Device], now: Timestamp, report: &mut SweepReport) -> ServiceResult<()> {
        let policy = self.world().alarm_rules.storm.clone();
        let open = AlarmFilter { open_only: true, active_only: true, limit: 1000, ..Default::default() };
        let out: BTreeMap<Subject, Alarm> = self
            .store
            .alarms(&open)
            .await?
            .into_iter()
            .filter(|a| a.fault == Fault::LampOut)
            .map(|a| (a.subject.clone(), a))
            .collect();
        for cabinet in devices.iter().filter(|d| d.kind == DeviceKind::LampCabinet) {
            let lamps: Vec<&Device> = devices.iter().filter(|l| l.cabinet.as_ref() == Some(&cabinet.id)).collect();
            let dark: Vec<&Alarm> = lamps.iter().filter_map(|l| out.get(&subject_of(l))).collect();
            let storm = dark.len() as u64 >= u64::from(policy.min_lamps)
                && dark.len() as u64 * 100 > u64::from(policy.share_pct) * lamps.len() as u64;
            let subject = Subject::Device(cabinet.id.clone());
            if storm {
                let (cab, raised) = self
                    .raise_if_not_active(Raise {
                        subject,
                        rule: STORM_RULE,
                        fault: Fault::CabinetOutage,
                        severity: policy.severity,
                        device: Some(cabinet),
                        metric: None,
                        value: Some(dark.len() as f64),
                        at: now,
                        hold_until: None,
                    })
                    .await?;
                report.raised += u32::from(raised);
                for lamp in dark.into_iter().filter(|l| l.suppressed_by.is_none() && l.case_id.is_none()) {
                    self.hold_back(&mut lamp.clone(), Some(cab.id), cab.id, now).await?;
                }
            } else if let Some(cab) = self
                .clear_alarm(&subject, Fault::CabinetOutage, now, Some(cabinet), None, Some(dark.len() as f64))
                .await?
            {
                if cab.cleared_at == Some(now) {
                    report.cleared += 1;
                }
                let held =
                    AlarmFilter { open_only: true, suppressed_by: Some(cab.id), limit: 1000, ..Default::default() };
                for mut lamp in self.store.alarms(&held).await? {
                    self.hold_back(&mut lamp, None, cab.id, now).await?;
                }
            }
        }
        Ok(())
    }

    /// Raises an alarm unless the subject's open alarm of that fault is already active; the alarm, and
    /// whether this raised it.
    async fn raise_if_not_active(&self, r: Raise<'_>) -> ServiceResult<(Alarm, bool)> {
        match self.store.open_alarm(&r.subject, r.fault).await? {
            Some(a) if a.active => Ok((a, false)),
            _ => Ok((self.raise_alarm(r).await?, true)),
        }
    }

    /// Holds a lamp's alarm back behind a cabinet alarm (`by`), or lets it go (`None`).
    async fn hold_back(&self, lamp: &mut Alarm, by: Option<i64>, cabinet: i64, now: Timestamp) -> ServiceResult<()> {
        lamp.suppressed_by = by;
        let (note, what) = match by {
            Some(_) => ("suppressed", format!("held back by cabinet alarm #{cabinet}")),
            None => ("released", format!("released: cabinet alarm #{cabinet} cleared")),
        };
        lamp.add_evidence(evidence(now, None, None, None, &what));
        Ok(self.store.update_alarm(lamp, note).await?)
    }

    /// Crowds: a checkpoint whose occupancy passes its threshold raises a crowd alarm, cleared when it
    /// falls back.
    async fn crowds(&self, devices: &[Device], now: Timestamp, report: &mut SweepReport) -> ServiceResult<()> {
        let policy = self.world().alarm_rules.crowd.clone();
        for flow in self.checkpoint_flows(devices, now, false).await? {
            let subject = Subject::Checkpoint(flow.checkpoint.clone());
            if flow.occupancy > i64::from(flow.max) {
                let (_, raised) = self
                    .raise_if_not_active(Raise {
                        subject,
                        rule: CROWD_RULE,
                        fault: Fault::Crowd,
                        severity: policy.severity,
                        device: None,
                        metric: None,
                        value: Some(flow.occupancy as f64),
                        at: now,
                        hold_until: None,
                    })
                    .await?;
                report.raised += u32::from(raised);
            } else if self
                .clear_alarm(&subject, Fault::Crowd, now, None, None, Some(flow.occupancy as f64))
                .await?
                .is_some_and(|a| a.cleared_at == Some(now))
            {
                report.cleared += 1;
            }
        }
        Ok(())
    }

    /// Today's people flow at each checkpoint (the centre's posts).
    pub async fn people_flow(&self, actor: &Actor) -> ServiceResult<Vec<CheckpointFlow>> {
        require(actor, &WATCHERS)?;
        let devices = self.store.devices().await?;
        self.checkpoint_flows(&devices, self.clock.now(), true).await
    }

    /// Each checkpoint's occupancy since local midnight, and (with `series`) its flow per 5 minutes.
    pub(crate) async fn checkpoint_flows(
        &self,
        devices: &[Device],
        now: Timestamp,
        series: bool,
    ) -> ServiceResult<Vec<CheckpointFlow>> {
        let policy = &self.world().alarm_rules.crowd;
        let midnight = civicgrid_core::calendar::from_local(civicgrid_core::calendar::local(now).date().into());
        let mut by_checkpoint: BTreeMap<&str, BTreeMap<Timestamp, (i64, i64)>> = BTreeMap::new();
        let mut places: BTreeMap<&str, Vec<civicgrid_core::case::GeoPoint>> = BTreeMap::new();
        let counters = devices.iter().filter(|d| d.kind == DeviceKind::PeopleCounter && d.retired_at.is_none());
        for d in counters {
            let Some(cp) = d.checkpoint.as_deref() else { continue };
            places.entry(cp).or_default().extend(d.location);
            let spans = by_checkpoint.entry(cp).or_default();
            let until = now + SignedDuration::from_secs(1);
            for (metric, inward) in [(Metric::CountIn, true), (Metric::CountOut, false)] {
                let rollups = self.store.rollups(&d.id, metric, RollupSpan::FiveMinutes, midnight, until, 400).await?;
                for r in rollups {
                    let people = (r.mean * r.count as f64).round() as i64;
                    let span = spans.entry(r.start).or_default();
                    if inward { span.0 += people } else { span.1 += people }
                }
            }
        }
        let world = self.world();
        Ok(by_checkpoint
            .into_iter()
            .map(|(cp, spans)| {
                let location = places.get(cp).and_then(|p| middle(p));
                CheckpointFlow {
                    checkpoint: cp.to_owned(),
                    location,
                    grid: location.and_then(|at| world.index.locate(at)).map(|m| m.grid()),
                    occupancy: spans.values().map(|(i, o)| i - o).sum::<i64>().max(0),
                    max: policy.max_for(cp),
                    flow: if series {
                        spans
                            .into_iter()
                            .map(|(start, (count_in, count_out))| FlowSpan { start, count_in, count_out })
                            .collect()
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect())
    }
}

/// The middle of some points (their mean: the counters of one checkpoint stand a few metres apart).
fn middle(points: &[civicgrid_core::case::GeoPoint]) -> Option<civicgrid_core::case::GeoPoint> {
    let n = points.len() as f64;
    (!points.is_empty()).then(|| civicgrid_core::case::GeoPoint {
        lon: points.iter().map(|p| p.lon).sum::<f64>() / n,
        lat: points.iter().map(|p| p.lat).sum::<f64>() / n,
    })
}

/// A sensor alarm's report and the department it is dispatched to.
struct SensorReport {
    input: ReportInput,
    dept: DeptCode,
}

/// Counts and logs what the rules could not do (the readings behind it are stored all the same).
fn rule_failure(what: &str, e: &dyn std::fmt::Display) {
    metrics::counter!("civicgrid_rule_failures_total").increment(1);
    tracing::error!(error = %e, "{what}");
}

/// What of a rule's state must survive a restart (the last value alone need not be written each time).
fn remembered(s: &RuleState) -> (Option<Timestamp>, bool, &[(Timestamp, f64)]) {
    (s.since, s.active, &s.window)
}

fn secs(s: u32) -> SignedDuration {
    SignedDuration::from_secs(i64::from(s))
}
