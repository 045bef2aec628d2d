//! Rules and alarms of the smart components: which conditions of a device's readings are faults (a
//! threshold held for a while, a flag that flips, a level that rises, a lamp dark at night or lit at
//! noon, a device gone silent), how a rule follows one device's readings ([`Rule::observe`],
//! [`Rule::elapse`]), and what an alarm is and how it changes ([`Alarm`]).
//!
//! The rules are one settings document ([`RuleSet`]): per device kind, with the storm policy for lamp
//! cabinets, the crowd thresholds of people-counting checkpoints, who maintains the devices, and how
//! long telemetry must stay normal before a case closes. [`RuleSet::standard`] is the town's starting
//! point.
//!
//! An alarm is one per subject (a component, a device without one, a checkpoint) and fault while it is
//! open: a repeat raises the same alarm again, counts it and adds evidence. It ends when it is cleared
//! and acknowledged — by a person, or by the closing of the case it opened.

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::case::{CaseId, GeoPoint};
use crate::codes::{ComponentId, MatterCode};
use crate::error::DomainError;
use crate::iot::{DeviceId, DeviceKind, Metric, Reading};
use crate::org::DeptCode;

/// Most rules in a rule set.
pub const MAX_RULES: usize = 100;
/// Evidence kept on an alarm: the newest this many entries.
pub const MAX_EVIDENCE: usize = 20;
/// Longest duration a condition may be asked to hold, and longest window, in seconds (one day).
pub const MAX_HOLD_S: u32 = 86_400;

/// How much an alarm matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlarmSeverity {
    /// 提示.
    Warning,
    /// 次要.
    Minor,
    /// 重要.
    Major,
    /// 紧急: pushed to the officers on duty, escalated until someone acknowledges it.
    Critical,
}

impl AlarmSeverity {
    /// Every severity, least first.
    pub const ALL: [AlarmSeverity; 4] =
        [AlarmSeverity::Warning, AlarmSeverity::Minor, AlarmSeverity::Major, AlarmSeverity::Critical];

    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmSeverity::Warning => "warning",
            AlarmSeverity::Minor => "minor",
            AlarmSeverity::Major => "major",
            AlarmSeverity::Critical => "critical",
        }
    }

    /// The Chinese label.
    pub fn label_zh(self) -> &'static str {
        match self {
            AlarmSeverity::Warning => "提示",
            AlarmSeverity::Minor => "次要",
            AlarmSeverity::Major => "重要",
            AlarmSeverity::Critical => "紧急",
        }
    }
}

impl std::str::FromStr for AlarmSeverity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AlarmSeverity::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| format!("{s:?} is not a severity"))
    }
}

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// A hydrant's pressure is too low (水压不足).
    LowPressure,
    /// A cover is open (井盖开启).
    CoverOpen,
    /// A cover is tilted (井盖倾斜).
    CoverTilt,
    /// Water is rising under a cover (积水上涨).
    WaterRising,
    /// A lamp draws no current at night (路灯不亮).
    LampOut,
    /// A lamp burns in daylight (白天亮灯).
    LampWaste,
    /// Many lamps of one cabinet are out at once (配电箱故障): one case for the cabinet.
    CabinetOutage,
    /// Too many people in an area (人员聚集).
    Crowd,
    /// The device has gone silent (设备离线).
    Offline,
    /// The device's battery is low (电量低).
    LowBattery,
    /// Someone opened or moved the device (设备被拆动).
    Tamper,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 11] = [
        Fault::LowPressure,
        Fault::CoverOpen,
        Fault::CoverTilt,
        Fault::WaterRising,
        Fault::LampOut,
        Fault::LampWaste,
        Fault::CabinetOutage,
        Fault::Crowd,
        Fault::Offline,
        Fault::LowBattery,
        Fault::Tamper,
    ];

    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::LowPressure => "low_pressure",
            Fault::CoverOpen => "cover_open",
            Fault::CoverTilt => "cover_tilt",
            Fault::WaterRising => "water_rising",
            Fault::LampOut => "lamp_out",
            Fault::LampWaste => "lamp_waste",
            Fault::CabinetOutage => "cabinet_outage",
            Fault::Crowd => "crowd",
            Fault::Offline => "offline",
            Fault::LowBattery => "low_battery",
            Fault::Tamper => "tamper",
        }
    }

    /// The Chinese label.
    pub fn label_zh(self) -> &'static str {
        match self {
            Fault::LowPressure => "水压不足",
            Fault::CoverOpen => "井盖开启",
            Fault::CoverTilt => "井盖倾斜",
            Fault::WaterRising => "积水上涨",
            Fault::LampOut => "路灯不亮",
            Fault::LampWaste => "白天亮灯",
            Fault::CabinetOutage => "配电箱故障",
            Fault::Crowd => "人员聚集",
            Fault::Offline => "设备离线",
            Fault::LowBattery => "电量低",
            Fault::Tamper => "设备被拆动",
        }
    }

    /// A fault of the device itself, not of the asset it watches: its case goes to the IoT
    /// maintenance contractor, not to the asset's department.
    pub fn is_device_health(self) -> bool {
        matches!(self, Fault::Offline | Fault::LowBattery | Fault::Tamper)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Fault::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| format!("{s:?} is not a fault"))
    }
}

/// When a rule's fault is present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The metric stays below `value` for `for_s` seconds (0: at once).
    Below {
        /// The metric.
        metric: Metric,
        /// The threshold.
        value: f64,
        /// How long it must hold.
        #[serde(default)]
        for_s: u32,
    },
    /// The metric stays above `value` for `for_s` seconds (0: at once; a flag is above 0.5 when set).
    Above {
        /// The metric.
        metric: Metric,
        /// The threshold.
        value: f64,
        /// How long it must hold.
        #[serde(default)]
        for_s: u32,
    },
    /// The metric rises by at least `by` within `within_s` seconds.
    Rising {
        /// The metric.
        metric: Metric,
        /// The rise.
        by: f64,
        /// The window.
        within_s: u32,
    },
    /// Between sunset and sunrise at the town, the metric stays below `value` for `for_s` seconds (a
    /// lamp drawing no current at night). By day the rule neither raises nor clears.
    DarkBelow {
        /// The metric.
        metric: Metric,
        /// The threshold.
        value: f64,
        /// How long it must hold.
        #[serde(default)]
        for_s: u32,
    },
    /// Between sunrise and sunset, the metric stays above `value` for `for_s` seconds (a lamp burning
    /// at noon). At night the rule neither raises nor clears.
    DaylightAbove {
        /// The metric.
        metric: Metric,
        /// The threshold.
        value: f64,
        /// How long it must hold.
        #[serde(default)]
        for_s: u32,
    },
    /// Nothing heard from the device for `intervals` times its expected reporting interval.
    Silent {
        /// How many intervals.
        intervals: u32,
    },
}

impl Condition {
    /// The metric it watches (none for silence).
    pub fn metric(&self) -> Option<Metric> {
        match self {
            Condition::Below { metric, .. }
            | Condition::Above { metric, .. }
            | Condition::Rising { metric, .. }
            | Condition::DarkBelow { metric, .. }
            | Condition::DaylightAbove { metric, .. } => Some(*metric),
            Condition::Silent { .. } => None,
        }
    }

    /// How long it must hold before it raises.
    fn hold(&self) -> SignedDuration {
        match self {
            Condition::Below { for_s, .. }
            | Condition::Above { for_s, .. }
            | Condition::DarkBelow { for_s, .. }
            | Condition::DaylightAbove { for_s, .. } => SignedDuration::from_secs(i64::from(*for_s)),
            Condition::Rising { .. } | Condition::Silent { .. } => SignedDuration::ZERO,
        }
    }
}

/// One rule: for devices of one kind, a condition that is a fault of some severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A short name, unique in the set (1–40 of a–z 0–9 _ -).
    pub id: String,
    /// The kind of device it watches.
    pub device: DeviceKind,
    /// The fault it finds.
    pub fault: Fault,
    /// When.
    pub condition: Condition,
    /// How much it matters.
    pub severity: AlarmSeverity,
    /// Opens (or joins) a case when the alarm's severity is at least this; never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_at: Option<AlarmSeverity>,
    /// The case's matter; by default the matter of the component's class (e.g. 01037 路灯异常).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub matter: Option<MatterCode>,
}

impl Rule {
    /// Whether the alarm it raises opens a case.
    pub fn opens_case(&self) -> bool {
        self.case_at.is_some_and(|at| self.severity >= at)
    }

    /// Follows one reading of the device: the change of the rule's alarm it makes, if any. `place` is
    /// where day and night are reckoned (the town).
    pub fn observe(&self, state: &mut RuleState, r: &Reading, place: GeoPoint) -> Option<Change> {
        if let Condition::Silent { .. } = self.condition {
            // Any reading ends a silence.
            return state.active.then(|| {
                state.active = false;
                Change::Clear { at: r.at, value: None }
            });
        }
        if self.condition.metric() != Some(r.metric) {
            return None;
        }
        state.last = Some(r.value);
        let dark = || crate::iot::sun::is_dark(r.at, place.lat, place.lon);
        let holds = match &self.condition {
            Condition::Below { value, .. } => Some(r.value < *value),
            Condition::Above { value, .. } => Some(r.value > *value),
            Condition::DarkBelow { value, .. } => dark().then_some(r.value < *value),
            Condition::DaylightAbove { value, .. } => (!dark()).then_some(r.value > *value),
            Condition::Rising { by, within_s, .. } => {
                let since = r.at - SignedDuration::from_secs(i64::from(*within_s));
                state.window.retain(|(at, _)| *at >= since && *at <= r.at);
                state.window.push((r.at, r.value));
                state.window.sort_by_key(|(at, _)| *at);
                let low = state.window.iter().map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
                keep_minima(&mut state.window);
                Some(r.value - low >= *by)
            }
            Condition::Silent { .. } => None,
        };
        match holds? {
            true => {
                let since = *state.since.get_or_insert(r.at);
                (!state.active && r.at.duration_since(since) >= self.condition.hold()).then(|| {
                    state.active = true;
                    Change::Raise { at: r.at, value: Some(r.value) }
                })
            }
            false => {
                state.since = None;
                state.active.then(|| {
                    state.active = false;
                    Change::Clear { at: r.at, value: Some(r.value) }
                })
            }
        }
    }

    /// Follows the passing of time with no new reading: a condition that has held long enough
    /// raises, and a device silent for too long is offline. `last_heard` is when the device was last
    /// heard from — a device never heard from is not yet commissioned (未接入), which is not being
    /// offline — and `interval` its expected reporting interval.
    pub fn elapse(
        &self,
        state: &mut RuleState,
        now: Timestamp,
        last_heard: Option<Timestamp>,
        interval: SignedDuration,
    ) -> Option<Change> {
        if state.active {
            return None;
        }
        let due = match &self.condition {
            Condition::Silent { intervals } => {
                let silent = interval.checked_mul(i32::try_from(*intervals).unwrap_or(i32::MAX))?;
                now.duration_since(last_heard?) > silent
            }
            _ => state.since.is_some_and(|since| now.duration_since(since) >= self.condition.hold()),
        };
        due.then(|| {
            state.active = true;
            Change::Raise { at: now, value: state.last }
        })
    }
}

/// Drops from a window (oldest first) every reading that can no longer be the lowest of any later
/// window: one with a later reading at or below it, which stays in the window longer. What is left
/// rises from oldest to newest, and a noisy level keeps only a handful.
fn keep_minima(window: &mut Vec<(Timestamp, f64)>) {
    let mut floor = f64::INFINITY;
    let mut kept: Vec<(Timestamp, f64)> = Vec::with_capacity(window.len());
    for &(at, v) in window.iter().rev() {
        if v < floor {
            kept.push((at, v));
            floor = v;
        }
    }
    kept.reverse();
    *window = kept;
}

/// A window's readings as stored: `[microseconds since the epoch, value]` pairs (older states, with
/// timestamps written out, still read).
mod compact_window {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum At {
        Micros(i64),
        Text(Timestamp),
    }

    pub fn serialize<S: Serializer>(window: &[(Timestamp, f64)], s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(i64, f64)> = window.iter().map(|(at, v)| (at.as_microsecond(), *v)).collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(Timestamp, f64)>, D::Error> {
        let pairs: Vec<(At, f64)> = Vec::deserialize(d)?;
        pairs
            .into_iter()
            .map(|(at, v)| match at {
                At::Text(t) => Ok((t, v)),
                At::Micros(us) => Timestamp::from_microsecond(us).map(|t| (t, v)).map_err(serde::de::Error::custom),
            })
            .collect()
    }
}

/// What a rule remembers of one device between readings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// Since when the condition has held (none while it does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Whether the rule's alarm is raised.
    #[serde(default)]
    pub active: bool,
    /// The last value of the metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<f64>,
    /// Recent readings, for a rising level: only those that may yet be a window's lowest, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "compact_window")]
    pub window: Vec<(Timestamp, f64)>,
}

/// A change a rule makes to its alarm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// The fault is present (again).
    Raise {
        /// When.
        at: Timestamp,
        /// The value that showed it.
        value: Option<f64>,
    },
    /// The fault is gone.
    Clear {
        /// When.
        at: Timestamp,
        /// The value that showed it.
        value: Option<f64>,
    },
}

/// When many lamps of one cabinet go out together, the cabinet (or its feeder) has failed: one case
/// for the cabinet, and the lamps' own alarms held back until it recovers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StormPolicy {
    /// More than this share of a cabinet's lamps out (percent) is a cabinet outage.
    pub share_pct: u8,
    /// And at least this many lamps.
    pub min_lamps: u32,
    /// A lamp-out alarm waits this long (seconds) before it opens a case, so a storm forming in it
    /// is seen first.
    pub window_s: u32,
    /// The cabinet alarm's severity.
    pub severity: AlarmSeverity,
}

/// Crowd thresholds of people-counting checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrowdPolicy {
    /// Most people present in a checkpoint's area, unless it has its own.
    pub default_max: u32,
    /// Per checkpoint.
    #[serde(default)]
    pub checkpoints: BTreeMap<String, u32>,
    /// The crowd alarm's severity.
    pub severity: AlarmSeverity,
}

impl CrowdPolicy {
    /// The most people allowed at `checkpoint`.
    pub fn max_for(&self, checkpoint: &str) -> u32 {
        self.checkpoints.get(checkpoint).copied().unwrap_or(self.default_max)
    }
}

/// Every rule and policy of the smart components (one settings document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// The rules.
    pub rules: Vec<Rule>,
    /// Lamp cabinets.
    pub storm: StormPolicy,
    /// People-counting checkpoints.
    pub crowd: CrowdPolicy,
    /// The IoT maintenance contractor: device-health cases go to it.
    #[schema(value_type = String)]
    pub maintenance_dept: DeptCode,
    /// How long telemetry must stay normal (seconds) before a case an alarm opened may close.
    pub recovery_s: u32,
    /// A fault back within this long (seconds) of its case closing reopens that case as rework.
    pub relapse_s: u32,
}

impl RuleSet {
    /// The town's starting rules.
    pub fn standard() -> RuleSet {
        use AlarmSeverity::*;
        use Condition::*;
        use DeviceKind::*;
        use Metric::*;
        let rule = |id: &str, device, fault, condition, severity, case_at| Rule {
            id: id.into(),
            device,
            fault,
            condition,
            severity,
            case_at,
            matter: None,
        };
        let health = |kind: DeviceKind, prefix: &str| {
            let mut out = vec![
                rule(&format!("{prefix}-offline"), kind, Fault::Offline, Silent { intervals: 3 }, Minor, Some(Minor)),
                rule(
                    &format!("{prefix}-tamper"),
                    kind,
                    Fault::Tamper,
                    Above { metric: Tamper, value: 0.5, for_s: 0 },
                    Major,
                    Some(Major),
                ),
            ];
            if kind.metrics().contains(&BatteryPct) {
                out.push(rule(
                    &format!("{prefix}-battery"),
                    kind,
                    Fault::LowBattery,
                    Below { metric: BatteryPct, value: 15.0, for_s: 0 },
                    Warning,
                    Some(Warning),
                ));
            }
            out
        };
        let mut rules = vec![
            rule(
                "hydrant-pressure",
                Hydrant,
                Fault::LowPressure,
                Below { metric: PressureMpa, value: 0.14, for_s: 600 },
                Major,
                Some(Minor),
            ),
            rule(
                "cover-open",
                ManholeCover,
                Fault::CoverOpen,
                Above { metric: CoverOpen, value: 0.5, for_s: 0 },
                Critical,
                Some(Minor),
            ),
            rule(
                "cover-tilt",
                ManholeCover,
                Fault::CoverTilt,
                Above { metric: TiltDeg, value: 15.0, for_s: 0 },
                Major,
                Some(Minor),
            ),
            rule(
                "cover-water",
                ManholeCover,
                Fault::WaterRising,
                Rising { metric: WaterLevelM, by: 0.3, within_s: 1800 },
                Major,
                Some(Minor),
            ),
            rule(
                "lamp-out",
                StreetLamp,
                Fault::LampOut,
                DarkBelow { metric: CurrentA, value: 0.05, for_s: 600 },
                Minor,
                Some(Minor),
            ),
            rule(
                "lamp-waste",
                StreetLamp,
                Fault::LampWaste,
                DaylightAbove { metric: CurrentA, value: 0.2, for_s: 3600 },
                Warning,
                Some(Warning),
            ),
            rule("cabinet-offline", LampCabinet, Fault::Offline, Silent { intervals: 3 }, Minor, Some(Minor)),
            rule("counter-offline", PeopleCounter, Fault::Offline, Silent { intervals: 3 }, Warning, None),
        ];
        for (kind, prefix) in [(Hydrant, "hydrant"), (ManholeCover, "cover"), (StreetLamp, "lamp")] {
            rules.extend(health(kind, prefix));
        }
        RuleSet {
            rules,
            storm: StormPolicy { share_pct: 30, min_lamps: 3, window_s: 300, severity: Major },
            crowd: CrowdPolicy { default_max: 2000, checkpoints: BTreeMap::new(), severity: Critical },
            maintenance_dept: "iot-maint".parse().unwrap_or_else(|_| unreachable!("a valid department code")),
            recovery_s: 1800,
            relapse_s: 72 * 3600,
        }
    }

    /// Checks a rule set an administrator submits: unique ids, metrics the device kind reports,
    /// thresholds inside the metric's range, bounded durations.
    pub fn check(&self) -> Result<(), DomainError> {
        if self.rules.len() > MAX_RULES {
            return Err(DomainError::invalid("rules", format!("at most {MAX_RULES} rules")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let field = format!("rules[{i}]");
            let id_ok = (1..=40).contains(&r.id.len())
                && r.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !id_ok {
                return Err(DomainError::invalid(&format!("{field}.id"), "1–40 of a–z 0–9 _ -"));
            }
            if !seen.insert(r.id.as_str()) {
                return Err(DomainError::invalid(&format!("{field}.id"), format!("{} is used twice", r.id)));
            }
            if let Some(m) = r.condition.metric()
                && !r.device.metrics().contains(&m)
            {
                return Err(DomainError::invalid(
                    &format!("{field}.condition"),
                    format!("a {} does not report {}", r.device.as_str(), m.as_str()),
                ));
            }
            let (lo, hi) = r.condition.metric().map_or((0.0, 0.0), Metric::range);
            let (value, secs) = match &r.condition {
                Condition::Below { value, for_s, .. }
                | Condition::Above { value, for_s, .. }
                | Condition::DarkBelow { value, for_s, .. }
                | Condition::DaylightAbove { value, for_s, .. } => (Some(*value), *for_s),
                Condition::Rising { by, within_s, .. } => {
                    if !(*by > 0.0 && *by <= hi - lo) || *within_s == 0 {
                        return Err(DomainError::invalid(&format!("{field}.condition"), "a positive rise in a window"));
                    }
                    (None, *within_s)
                }
                Condition::Silent { intervals } => {
                    if !(1..=100).contains(intervals) {
                        return Err(DomainError::invalid(&format!("{field}.condition"), "1 to 100 intervals"));
                    }
                    (None, 0)
                }
            };
            if value.is_some_and(|v| !(lo..=hi).contains(&v)) {
                return Err(DomainError::invalid(
                    &format!("{field}.condition"),
                    format!("the threshold is outside {lo}–{hi}"),
                ));
            }
            if secs > MAX_HOLD_S {
                return Err(DomainError::invalid(&format!("{field}.condition"), "at most a day"));
            }
        }
        if !(1..=100).contains(&self.storm.share_pct) || self.storm.min_lamps == 0 {
            return Err(DomainError::invalid("storm", "a share of 1–100 % and at least one lamp"));
        }
        for (name, secs) in [("storm.window_s", self.storm.window_s), ("recovery_s", self.recovery_s)] {
            if secs > MAX_HOLD_S {
                return Err(DomainError::invalid(name, "at most a day"));
            }
        }
        if self.relapse_s > 30 * MAX_HOLD_S {
            return Err(DomainError::invalid("relapse_s", "at most 30 days"));
        }
        if self.crowd.checkpoints.len() > 500 || self.crowd.checkpoints.keys().any(|k| k.chars().count() > 64) {
            return Err(DomainError::invalid(
                "crowd.checkpoints",
                "at most 500 checkpoints, names up to 64 characters",
            ));
        }
        Ok(())
    }

    /// The rules for devices of `kind`.
    pub fn for_kind(&self, kind: DeviceKind) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.device == kind)
    }

    /// The rule named `id`.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

/// What an alarm is about: one component, one device with no component, or a checkpoint's area.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Subject {
    /// A component (a lamp, a hydrant, a cover).
    Component(ComponentId),
    /// A device with no component of its own (a lamp cabinet).
    Device(DeviceId),
    /// A checkpoint's area.
    Checkpoint(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Component(c) => write!(f, "component:{c}"),
            Subject::Device(d) => write!(f, "device:{d}"),
            Subject::Checkpoint(c) => write!(f, "checkpoint:{c}"),
        }
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Subject {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("component", c)) => c.parse().map(Subject::Component).map_err(|e| format!("{e}")),
            Some(("device", d)) => d.parse().map(Subject::Device),
            Some(("checkpoint", c)) if (1..=64).contains(&c.chars().count()) => Ok(Subject::Checkpoint(c.into())),
            _ => Err(format!("{s:?} is not an alarm subject")),
        }
    }
}

impl std::str::FromStr for Subject {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Subject::try_from(s.to_owned())
    }
}

/// One piece of an alarm's evidence: what was seen, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Evidence {
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The device that showed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
    /// The metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
    /// Its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// What happened (`raised`, `cleared`, `suppressed`, …).
    pub note: String,
}

/// An alarm: a fault of one subject, open from its first raising until it is cleared and
/// acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alarm {
    /// Id.
    pub id: i64,
    /// What it is about: `component:<id>`, `device:<id>` or `checkpoint:<name>`.
    #[schema(value_type = String, example = "component:32058501037000012")]
    pub subject: Subject,
    /// What is wrong.
    pub fault: Fault,
    /// How much it matters.
    pub severity: AlarmSeverity,
    /// The rule that raised it (`storm` for a cabinet outage, `crowd` for a crowd).
    pub rule: String,
    /// The device that raised it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
    /// Whether the fault is present now (active) or gone (cleared).
    pub active: bool,
    /// When it was first raised.
    #[schema(value_type = String, format = DateTime)]
    pub raised_at: Timestamp,
    /// When it was last raised.
    #[schema(value_type = String, format = DateTime)]
    pub last_raised_at: Timestamp,
    /// When it was last cleared (while cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cleared_at: Option<Timestamp>,
    /// When someone acknowledged it (since its last raising).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub acked_at: Option<Timestamp>,
    /// Who.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_by: Option<i64>,
    /// How often it was raised.
    pub count: u32,
    /// The newest evidence, oldest first (at most [`MAX_EVIDENCE`]).
    pub evidence: Vec<Evidence>,
    /// The case it opened or joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub case_id: Option<CaseId>,
    /// The cabinet alarm that holds it back (a lamp during a cabinet outage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<i64>,
    /// It opens no case before this (a lamp waiting to see whether its cabinet failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub hold_until: Option<Timestamp>,
    /// When it ended (cleared and acknowledged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    /// How many changes it has had (optimistic concurrency; 0 before it is stored).
    #[serde(default)]
    pub version: i64,
}

impl Alarm {
    /// A new alarm, raised at `at`.
    pub fn raise(subject: Subject, rule: &str, fault: Fault, severity: AlarmSeverity, at: Timestamp) -> Alarm {
        Alarm {
            id: 0,
            subject,
            fault,
            severity,
            rule: rule.into(),
            device: None,
            active: true,
            raised_at: at,
            last_raised_at: at,
            cleared_at: None,
            acked_at: None,
            acked_by: None,
            count: 1,
            evidence: Vec::new(),
            case_id: None,
            suppressed_by: None,
            hold_until: None,
            ended_at: None,
            version: 0,
        }
    }

    /// Adds evidence, keeping the newest [`MAX_EVIDENCE`].
    pub fn add_evidence(&mut self, e: Evidence) {
        self.evidence.push(e);
        if self.evidence.len() > MAX_EVIDENCE {
            let extra = self.evidence.len() - MAX_EVIDENCE;
            self.evidence.drain(..extra);
        }
    }

    /// The fault is back (or still there after a clearing): counted, and it must be acknowledged
    /// again. Whether it was cleared before it came back.
    pub fn repeat(&mut self, at: Timestamp) -> bool {
        let was_cleared = !self.active;
        self.active = true;
        self.count = self.count.saturating_add(1);
        self.last_raised_at = at;
        self.cleared_at = None;
        self.acked_at = None;
        self.acked_by = None;
        was_cleared
    }

    /// The fault is gone.
    pub fn clear(&mut self, at: Timestamp) {
        if self.active {
            self.active = false;
            self.cleared_at = Some(at);
        }
    }

    /// Someone (or, with `by` absent, the closing of its case) acknowledges it.
    pub fn acknowledge(&mut self, by: Option<i64>, at: Timestamp) -> Result<(), DomainError> {
        if self.ended_at.is_some() {
            return Err(DomainError::invalid("alarm", "the alarm has ended"));
        }
        if self.acked_at.is_none() {
            self.acked_at = Some(at);
            self.acked_by = by;
        }
        Ok(())
    }

    /// Whether telemetry has been normal for `recovery` by `now`.
    pub fn recovered(&self, now: Timestamp, recovery: SignedDuration) -> bool {
        !self.active && self.cleared_at.is_some_and(|c| now.duration_since(c) >= recovery)
    }

    /// Ends it if it is cleared and acknowledged; whether it ended now.
    pub fn end_if_done(&mut self, at: Timestamp) -> bool {
        let done = self.ended_at.is_none() && !self.active && self.acked_at.is_some();
        if done {
            self.ended_at = Some(at);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn reading(at: &str, metric: Metric, value: f64) -> Reading {
        Reading { at: t(at), metric, value }
    }

    #[test]
    fn a_rising_window_keeps_only_possible_lows_and_is_stored_compactly() {
        let at = |m: i64| t("2026-11-24T12:00:00Z") + SignedDuration::from_mins(m);
        let mut window = vec![(at(0), 0.30), (at(1), 0.20), (at(2), 0.25), (at(3), 0.25), (at(4), 0.40)];
        keep_minima(&mut window);
        assert_eq!(window, vec![(at(1), 0.20), (at(3), 0.25), (at(4), 0.40)], "each later one stays longer");
        let state = RuleState { window: window.clone(), ..Default::default() };
        let json = serde_json::to_string(&state).expect("json");
        assert!(json.contains(&format!("[[{},0.2]", at(1).as_microsecond())), "{json}");
        assert_eq!(serde_json::from_str::<RuleState>(&json).expect("read back"), state);
        // A memory written before, with the times spelled out, still reads.
        let old = r#"{"active":false,"window":[["2026-11-24T12:01:00Z",0.2]]}"#;
        assert_eq!(serde_json::from_str::<RuleState>(old).expect("old").window, vec![(at(1), 0.2)]);
    }

    #[test]
    fn a_noisy_level_keeps_a_short_window_and_still_sees_a_rise() {
        let rules = RuleSet::standard();
        let rule = rules.rules.iter().find(|r| r.fault == Fault::WaterRising).expect("water rule");
        let mut state = RuleState::default();
        let place = GeoPoint { lon: 120.95, lat: 31.27 };
        let mut raised = false;
        for m in 0..29 {
            let level = 0.10 + f64::from((m * 7) % 5) * 0.01;
            let at = t("2026-11-24T12:00:00Z") + SignedDuration::from_mins(i64::from(m));
            raised |=
                rule.observe(&mut state, &Reading { at, metric: Metric::WaterLevelM, value: level }, place).is_some();
            assert!(state.window.len() <= 6, "{} readings kept", state.window.len());
        }
        assert!(!raised, "noise is not a rise");
        let at = t("2026-11-24T12:29:30Z");
        let rise = rule.observe(&mut state, &Reading { at, metric: Metric::WaterLevelM, value: 0.45 }, place);
        assert!(matches!(rise, Some(Change::Raise { .. })), "0.3 m above the half hour's low");
    }

    /// 张浦 (Zhangpu), roughly.
    const TOWN: GeoPoint = GeoPoint { lon: 120.95, lat: 31.28 };

    fn rule(id: &str) -> Rule {
        RuleSet::standard().rule(id).cloned().expect("standard rule")
    }

    #[test]
    fn the_standard_rules_pass_their_own_check() {
        RuleSet::standard().check().expect("standard rules");
    }

    #[test]
    fn a_threshold_must_hold_for_its_duration_and_clears_once() {
        let r = rule("hydrant-pressure");
        let mut s = RuleState::default();
        assert_eq!(r.observe(&mut s, &reading("2026-11-24T02:00:00Z", Metric::PressureMpa, 0.10), TOWN), None);
        assert_eq!(r.observe(&mut s, &reading("2026-11-24T02:05:00Z", Metric::PressureMpa, 0.09), TOWN), None);
        let raised = r.observe(&mut s, &reading("2026-11-24T02:10:00Z", Metric::PressureMpa, 0.08), TOWN);
        assert_eq!(raised, Some(Change::Raise { at: t("2026-11-24T02:10:00Z"), value: Some(0.08) }));
        assert_eq!(r.observe(&mut s, &reading("2026-11-24T02:11:00Z", Metric::PressureMpa, 0.08), TOWN), None);
        let cleared = r.observe(&mut s, &reading("2026-11-24T02:20:00Z", Metric::PressureMpa, 0.3), TOWN);
        assert!(matches!(cleared, Some(Change::Clear { .. })));
        assert_eq!(r.observe(&mut s, &reading("2026-11-24T02:21:00Z", Metric::PressureMpa, 0.3), TOWN), None);
    }

    #[test]
    fn a_short_dip_does_not_raise_and_time_alone_can() {
        let r = rule("hydrant-pressure");
        let mut s = RuleState::default();
        r.observe(&mut s, &reading("2026-11-24T02:00:00Z", Metric::PressureMpa, 0.10), TOWN);
        r.observe(&mut s, &reading("2026-11-24T02:05:00Z", Metric::PressureMpa, 0.30), TOWN);
        let heard = Some(t("2026-11-24T02:05:00Z"));
        assert_eq!(r.elapse(&mut s, t("2026-11-24T02:30:00Z"), heard, SignedDuration::from_mins(15)), None);
        r.observe(&mut s, &reading("2026-11-24T02:31:00Z", Metric::PressureMpa, 0.10), TOWN);
        let raised = r.elapse(&mut s, t("2026-11-24T02:41:00Z"), heard, SignedDuration::from_mins(15));
        assert!(matches!(raised, Some(Change::Raise { value: Some(v), .. }) if v == 0.10));
    }

    #[test]
    fn a_dark_lamp_is_a_fault_at_night_and_nothing_by_day() {
        let r = rule("lamp-out");
        let mut s = RuleState::default();
        // 21:00 and 21:15 in China: night.
        r.observe(&mut s, &reading("2026-11-24T13:00:00Z", Metric::CurrentA, 0.0), TOWN);
        let raised = r.observe(&mut s, &reading("2026-11-24T13:15:00Z", Metric::CurrentA, 0.0), TOWN);
        assert!(matches!(raised, Some(Change::Raise { .. })));
        // Noon the next day: a lamp drawing nothing is off, as it should be; the alarm stays.
        assert_eq!(r.observe(&mut s, &reading("2026-11-25T04:00:00Z", Metric::CurrentA, 0.0), TOWN), None);
        assert!(s.active);
        // Lit at dusk: cleared.
        let cleared = r.observe(&mut s, &reading("2026-11-25T10:00:00Z", Metric::CurrentA, 0.45), TOWN);
        assert!(matches!(cleared, Some(Change::Clear { .. })));
        // A lamp lit at noon wastes power, after an hour.
        let waste = rule("lamp-waste");
        let mut w = RuleState::default();
        waste.observe(&mut w, &reading("2026-11-25T03:00:00Z", Metric::CurrentA, 0.45), TOWN);
        assert!(waste.observe(&mut w, &reading("2026-11-25T04:00:00Z", Metric::CurrentA, 0.45), TOWN).is_some());
    }

    #[test]
    fn rising_water_and_silence() {
        let r = rule("cover-water");
        let mut s = RuleState::default();
        r.observe(&mut s, &reading("2026-11-24T02:00:00Z", Metric::WaterLevelM, 0.4), TOWN);
        assert_eq!(r.observe(&mut s, &reading("2026-11-24T02:10:00Z", Metric::WaterLevelM, 0.5), TOWN), None);
        assert!(r.observe(&mut s, &reading("2026-11-24T02:20:00Z", Metric::WaterLevelM, 0.75), TOWN).is_some());
        // The same rise spread over more than the window is not a rise.
        let mut slow = RuleState::default();
        r.observe(&mut slow, &reading("2026-11-24T02:00:00Z", Metric::WaterLevelM, 0.4), TOWN);
        r.observe(&mut slow, &reading("2026-11-24T02:40:00Z", Metric::WaterLevelM, 0.6), TOWN);
        assert_eq!(r.observe(&mut slow, &reading("2026-11-24T03:20:00Z", Metric::WaterLevelM, 0.8), TOWN), None);

        let off = rule("hydrant-offline");
        let mut o = RuleState::default();
        let heard = Some(t("2026-11-24T02:00:00Z"));
        let every = SignedDuration::from_mins(15);
        assert_eq!(off.elapse(&mut o, t("2026-11-25T02:44:00Z"), None, every), None, "never heard: not commissioned");
        assert_eq!(off.elapse(&mut o, t("2026-11-24T02:44:00Z"), heard, every), None);
        assert!(off.elapse(&mut o, t("2026-11-24T02:46:00Z"), heard, every).is_some());
        assert!(matches!(
            off.observe(&mut o, &reading("2026-11-24T02:50:00Z", Metric::BatteryPct, 80.0), TOWN),
            Some(Change::Clear { .. })
        ));
    }

    #[test]
    fn an_alarm_repeats_clears_and_ends_once_acknowledged() {
        let at = t("2026-11-24T02:00:00Z");
        let mut a = Alarm::raise(
            Subject::Component("32058501037000012".parse().expect("id")),
            "lamp-out",
            Fault::LampOut,
            AlarmSeverity::Minor,
            at,
        );
        for i in 0..30 {
            a.add_evidence(Evidence {
                at,
                device: None,
                metric: None,
                value: Some(f64::from(i)),
                note: "raised".into(),
            });
        }
        assert_eq!(a.evidence.len(), MAX_EVIDENCE);
        assert_eq!(a.evidence.last().and_then(|e| e.value), Some(29.0));
        a.clear(at + SignedDuration::from_mins(5));
        assert!(!a.end_if_done(at + SignedDuration::from_mins(6)), "cleared, not acknowledged");
        assert!(a.repeat(at + SignedDuration::from_mins(7)), "it had cleared");
        assert_eq!(a.count, 2);
        a.acknowledge(Some(7), at + SignedDuration::from_mins(8)).expect("ack");
        assert!(!a.end_if_done(at + SignedDuration::from_mins(9)), "acknowledged, still active");
        a.clear(at + SignedDuration::from_mins(10));
        assert!(!a.recovered(at + SignedDuration::from_mins(20), SignedDuration::from_mins(30)));
        assert!(a.recovered(at + SignedDuration::from_mins(40), SignedDuration::from_mins(30)));
        assert!(a.end_if_done(at + SignedDuration::from_mins(41)));
        assert!(a.acknowledge(Some(7), at + SignedDuration::from_mins(42)).is_err());
    }

    #[test]
    fn subjects_round_trip_and_bad_rules_are_refused() {
        for s in ["component:32058501037000012", "device:cab-001", "checkpoint:客运站"] {
            let parsed: Subject = s.parse().expect("subject");
            assert_eq!(parsed.to_string(), s);
        }
        assert!("lamp:1".parse::<Subject>().is_err());
        let mut bad = RuleSet::standard();
        bad.rules[0].condition = Condition::Below { metric: Metric::CurrentA, value: 1.0, for_s: 0 };
        assert!(bad.check().is_err(), "a hydrant reports no current");
        let mut bad = RuleSet::standard();
        bad.rules[0].condition = Condition::Below { metric: Metric::PressureMpa, value: 9.0, for_s: 0 };
        assert!(bad.check().is_err(), "out of range");
        let mut bad = RuleSet::standard();
        bad.rules[1].id = bad.rules[0].id.clone();
        assert!(bad.check().is_err(), "duplicate id");
    }
}
