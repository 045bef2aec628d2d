//! The big screen's third read, [`Services::sensing`]: the smart components now (物联感知) — open
//! alarms by severity and fault, each device kind's health, the alarms to look at first with where
//! they are, and each checkpoint's people flow today against its crowd threshold.
//!
//! Everything is derived from what the rules already decided: a device is offline while it has an
//! active offline alarm, so the screen and the alarm console never disagree about silence.

use std::collections::{HashMap, HashSet};

use civicgrid_core::access::Actor;
use civicgrid_core::alarm::{Alarm, AlarmSeverity, Fault, Subject};
use civicgrid_core::case::CaseId;
use civicgrid_core::codes::{ComponentId, GridCode};
use civicgrid_core::component::Component;
use civicgrid_core::iot::{Device, DeviceKind};
use civicgrid_store::AlarmFilter;
use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::require;
use crate::alarms::{CheckpointFlow, MAX_ALARMS};
use crate::cockpit::WATCHERS;
use crate::{ServiceResult, Services};

/// Alarms in the "look here first" list.
const FIRST_LIST: usize = 12;
/// Alarm points drawn at most.
pub const MAX_ALARM_POINTS: usize = 300;

/// Open alarms of one severity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct SeverityTally {
    /// The severity.
    pub severity: Option<AlarmSeverity>,
    /// Whose fault is present now.
    pub active: i64,
    /// Not yet acknowledged (active or cleared).
    pub unacknowledged: i64,
    /// Cleared but not yet acknowledged, so not yet ended.
    pub cleared: i64,
}

/// Active alarms of one fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FaultTally {
    /// The fault.
    pub fault: Fault,
    /// Active alarms.
    pub active: i64,
    /// Of them, held back by a cabinet's alarm.
    pub suppressed: i64,
    /// Of them, with a case opened or joined.
    pub with_case: i64,
}

/// The health of one kind of device, each device counted once under the worst that is true of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeviceHealth {
    /// The kind.
    pub kind: DeviceKind,
    /// Devices in service.
    pub total: i64,
    /// Silent past their rule (an active offline alarm).
    pub offline: i64,
    /// Otherwise with another active device-health alarm (battery, tamper).
    pub unwell: i64,
    /// Otherwise reporting a fault of the asset they watch (an active alarm on its subject).
    pub faulty: i64,
}

/// One alarm as the big screen lists or draws it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AlarmLine {
    /// The alarm.
    pub id: i64,
    /// How much it matters.
    pub severity: AlarmSeverity,
    /// What is wrong.
    pub fault: Fault,
    /// What it is about, by name: the component's, the device's id or the checkpoint's.
    pub subject: String,
    /// The component's grid, when it is about a component.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub grid: Option<GridCode>,
    /// Longitude, when it is about a component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    /// Latitude, when it is about a component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    /// Whether the fault is present now.
    pub active: bool,
    /// Whether someone has acknowledged it.
    pub acknowledged: bool,
    /// How often it was raised.
    pub count: u32,
    /// When it was last raised.
    #[schema(value_type = String, format = DateTime)]
    pub last_raised_at: Timestamp,
    /// The case it opened or joined.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub case_id: Option<CaseId>,
    /// Held back by a cabinet's alarm.
    pub suppressed: bool,
}

/// The smart components now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Sensing {
    /// When this was read.
    #[schema(value_type = String, format = DateTime)]
    pub as_of: Timestamp,
    /// Open alarms per severity, most severe first; the town's total last (no severity).
    pub severities: Vec<SeverityTally>,
    /// Active alarms per fault, every fault (zeros included).
    pub faults: Vec<FaultTally>,
    /// Every device kind's health.
    pub devices: Vec<DeviceHealth>,
    /// The alarms to look at first: unacknowledged before acknowledged, most severe, newest.
    pub first: Vec<AlarmLine>,
    /// Active alarms about a component, on the map (most severe first).
    pub points: Vec<AlarmLine>,
    /// Whether more alarms were open than were read or drawn.
    pub truncated: bool,
    /// Each checkpoint's occupancy now and its flow per 5 minutes today.
    pub checkpoints: Vec<CheckpointFlow>,
}

/// The order the screen looks at alarms in: unacknowledged first, then active, most severe, newest.
fn urgency(a: &Alarm) -> std::cmp::Reverse<(bool, bool, AlarmSeverity, Timestamp)> {
    std::cmp::Reverse((a.acked_at.is_none(), a.active, a.severity, a.last_raised_at))
}

/// Open alarms per severity (most severe first) and in all.
fn severities(open: &[Alarm]) -> Vec<SeverityTally> {
    let mut rows: Vec<SeverityTally> = AlarmSeverity::ALL
        .into_iter()
        .rev()
        .map(|s| SeverityTally { severity: Some(s), ..SeverityTally::default() })
        .chain(std::iter::once(SeverityTally::default()))
        .collect();
    for a in open {
        for row in rows.iter_mut().filter(|r| r.severity.is_none_or(|s| s == a.severity)) {
            row.active += i64::from(a.active);
            row.cleared += i64::from(!a.active);
            row.unacknowledged += i64::from(a.acked_at.is_none());
        }
    }
    rows
}

/// Active alarms per fault, every fault.
fn faults(open: &[Alarm]) -> Vec<FaultTally> {
    Fault::ALL
        .into_iter()
        .map(|fault| {
            let active: Vec<&Alarm> = open.iter().filter(|a| a.active && a.fault == fault).collect();
            FaultTally {
                fault,
                active: active.len() as i64,
                suppressed: active.iter().filter(|a| a.suppressed_by.is_some()).count() as i64,
                with_case: active.iter().filter(|a| a.case_id.is_some()).count() as i64,
            }
        })
        .collect()
}

/// Each kind's devices in service, each counted once under the worst its subject's active alarms say.
fn health(devices: &[Device], open: &[Alarm]) -> Vec<DeviceHealth> {
    let mut active_on: HashMap<String, Vec<Fault>> = HashMap::new();
    for a in open.iter().filter(|a| a.active) {
        active_on.entry(a.subject.to_string()).or_default().push(a.fault);
    }
    let mut health: Vec<DeviceHealth> = DeviceKind::ALL
        .into_iter()
        .map(|kind| DeviceHealth { kind, total: 0, offline: 0, unwell: 0, faulty: 0 })
        .collect();
    for d in devices.iter().filter(|d| d.retired_at.is_none()) {
        let Some(h) = health.iter_mut().find(|h| h.kind == d.kind) else { continue };
        let subject = match d.component_id {
            Some(c) => Subject::Component(c),
            None => Subject::Device(d.id.clone()),
        };
        let faults = active_on.get(&subject.to_string()).map_or(&[][..], Vec::as_slice);
        h.total += 1;
        if faults.contains(&Fault::Offline) {
            h.offline += 1;
        } else if faults.iter().any(|f| f.is_device_health()) {
            h.unwell += 1;
        } else if !faults.is_empty() {
            h.faulty += 1;
        }
    }
    health
}

impl Services {
    /// The smart components now, as the big screen draws them.
    pub async fn sensing(&self, actor: &Actor) -> ServiceResult<Sensing> {
        require(actor, &WATCHERS)?;
        let now = self.clock.now();
        let mut open =
            self.store.alarms(&AlarmFilter { open_only: true, limit: MAX_ALARMS, ..Default::default() }).await?;
        open.sort_by_key(urgency);
        let devices = self.store.devices().await?;
        let checkpoints = self.checkpoint_flows(&devices, now, true).await?;

        // Where the alarms about components are: their components, read in one query.
        let wanted: Vec<ComponentId> = {
            let mut seen = HashSet::new();
            // Those on the map (active) and those listed first (the most urgent, `open` being in that order).
            open.iter()
                .enumerate()
                .filter_map(|(i, a)| match a.subject {
                    Subject::Component(c) if a.active || i < FIRST_LIST => Some(c),
                    _ => None,
                })
                .filter(|c| seen.insert(*c))
                .take(MAX_ALARM_POINTS)
                .collect()
        };
        let components: HashMap<ComponentId, Component> =
            self.store.components_by_ids(&wanted).await?.into_iter().map(|c| (c.id, c)).collect();
        // A crowd alarm is where its checkpoint is.
        let checkpoint_at: HashMap<&str, (Option<GridCode>, civicgrid_core::case::GeoPoint)> =
            checkpoints.iter().filter_map(|c| Some((c.checkpoint.as_str(), (c.grid, c.location?)))).collect();
        let line = |a: &Alarm| {
            let component = match &a.subject {
                Subject::Component(c) => components.get(c),
                _ => None,
            };
            let place = match &a.subject {
                Subject::Checkpoint(name) => checkpoint_at.get(name.as_str()).copied(),
                _ => component.map(|c| (Some(c.grid), c.location)),
            };
            AlarmLine {
                id: a.id,
                severity: a.severity,
                fault: a.fault,
                subject: match (&a.subject, component) {
                    (_, Some(c)) => c.name.clone(),
                    (Subject::Component(c), None) => c.to_string(),
                    (Subject::Device(d), _) => d.to_string(),
                    (Subject::Checkpoint(c), _) => c.clone(),
                },
                grid: place.and_then(|(grid, _)| grid),
                lon: place.map(|(_, at)| at.lon),
                lat: place.map(|(_, at)| at.lat),
                active: a.active,
                acknowledged: a.acked_at.is_some(),
                count: a.count,
                last_raised_at: a.last_raised_at,
                case_id: a.case_id,
                suppressed: a.suppressed_by.is_some(),
            }
        };
        let first = open.iter().take(FIRST_LIST).map(line).collect();
        let mut points: Vec<AlarmLine> =
            open.iter().filter(|a| a.active).map(line).filter(|l| l.lon.is_some()).take(MAX_ALARM_POINTS).collect();
        points.sort_by_key(|l| std::cmp::Reverse(l.severity));
        let active = open.iter().filter(|a| a.active && matches!(a.subject, Subject::Component(_))).count();
        Ok(Sensing {
            as_of: now,
            severities: severities(&open),
            faults: faults(&open),
            devices: health(&devices, &open),
            first,
            truncated: open.len() >= MAX_ALARMS as usize || points.len() < active,
            points,
            checkpoints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(id: i64, severity: AlarmSeverity, fault: Fault, active: bool, acked: bool) -> Alarm {
        let at: Timestamp = "2026-11-24T12:00:00Z".parse().expect("time");
        let mut a = Alarm::raise(Subject::Checkpoint(format!("cp-{id}")), "r", fault, severity, at);
        a.id = id;
        a.last_raised_at = at + jiff::SignedDuration::from_secs(id);
        a.active = active;
        a.acked_at = acked.then_some(at);
        a
    }

    #[test]
    fn tallies_count_each_alarm_under_its_severity_and_in_all() {
        use AlarmSeverity::*;
        let open = [
            alarm(1, Critical, Fault::Crowd, true, false),
            alarm(2, Minor, Fault::LampOut, true, true),
            alarm(3, Minor, Fault::LampOut, false, false),
            alarm(4, Warning, Fault::Offline, true, false),
        ];
        let rows = severities(&open);
        let of = |s: Option<AlarmSeverity>| rows.iter().find(|r| r.severity == s).expect("a row").clone();
        assert_eq!(rows.first().expect("rows").severity, Some(Critical), "most severe first");
        assert_eq!(
            of(Some(Critical)),
            SeverityTally { severity: Some(Critical), active: 1, unacknowledged: 1, cleared: 0 }
        );
        assert_eq!(of(Some(Major)), SeverityTally { severity: Some(Major), ..SeverityTally::default() });
        assert_eq!(of(Some(Minor)), SeverityTally { severity: Some(Minor), active: 1, unacknowledged: 1, cleared: 1 });
        assert_eq!(of(None), SeverityTally { severity: None, active: 3, unacknowledged: 3, cleared: 1 });

        let by_fault = faults(&open);
        assert_eq!(by_fault.len(), Fault::ALL.len(), "every fault, zeros included");
        let lamp = by_fault.iter().find(|f| f.fault == Fault::LampOut).expect("every fault");
        assert_eq!(lamp.active, 1, "the cleared lamp alarm is not active");

        let mut sorted = open.to_vec();
        sorted.sort_by_key(urgency);
        let ids: Vec<i64> = sorted.iter().map(|a| a.id).collect();
        assert_eq!(ids, [1, 4, 3, 2], "unacknowledged first, then active, most severe, newest");
    }

    #[test]
    fn each_device_counts_once_under_the_worst_of_its_alarms() {
        use AlarmSeverity::*;
        let device = |id: &str, kind| Device {
            id: id.parse().expect("id"),
            kind,
            model: "m".into(),
            firmware: "1".into(),
            component_id: None,
            cabinet: None,
            feeder: None,
            checkpoint: None,
            location: None,
            expected_interval_s: 300,
            created_at: Timestamp::UNIX_EPOCH,
            retired_at: None,
            last_seen_at: None,
        };
        let on = |id: &str, fault, active| {
            let mut a = alarm(1, Minor, fault, active, false);
            a.subject = Subject::Device(id.parse().expect("id"));
            a
        };
        let mut retired = device("h-4", DeviceKind::Hydrant);
        retired.retired_at = Some(Timestamp::UNIX_EPOCH);
        let devices = [
            device("h-1", DeviceKind::Hydrant),
            device("h-2", DeviceKind::Hydrant),
            device("h-3", DeviceKind::Hydrant),
            retired,
            device("c-1", DeviceKind::ManholeCover),
        ];
        let open = [
            on("h-1", Fault::LowPressure, true),
            on("h-1", Fault::Offline, true),
            on("h-2", Fault::LowBattery, true),
            on("h-2", Fault::LowPressure, true),
            on("h-3", Fault::LowPressure, false),
            on("c-1", Fault::CoverOpen, true),
        ];
        let rows = health(&devices, &open);
        let of = |kind| rows.iter().find(|h| h.kind == kind).expect("every kind").clone();
        assert_eq!(
            of(DeviceKind::Hydrant),
            DeviceHealth { kind: DeviceKind::Hydrant, total: 3, offline: 1, unwell: 1, faulty: 0 },
            "offline before battery before the asset; a cleared alarm and a retired device do not count"
        );
        assert_eq!(of(DeviceKind::ManholeCover).faulty, 1);
        assert_eq!(rows.len(), DeviceKind::ALL.len());
    }
}
