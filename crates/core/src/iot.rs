//! Smart components' devices and their telemetry: what a device is (a sensor or controller attached to
//! a component, a lamp cabinet or a checkpoint), which measurements each kind reports and in what
//! range, and how a payload — one reading or a batch, over MQTT or HTTP — is parsed, or refused with
//! a reason. Rules, alarms and cases build on the readings parsed here.
//!
//! Payload (JSON, at most [`MAX_PAYLOAD`] bytes):
//! - one reading: `{"ts": "2026-11-24T20:00:00+08:00", "values": {"current_a": 0.0, "voltage_v": 221}}`
//!   (`ts` optional: the time it arrived);
//! - a batch: `[{"ts": …, "values": {…}}, …]` or `{"readings": [ … ]}`, at most [`MAX_BATCH`].
//!
//! Booleans (`cover_open`, `lamp_on`, `tamper`) are carried as 1.0 and 0.0.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::DomainError;
use wire::{RawPayload, Scalar};

mod wire;

/// Largest payload accepted, in bytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Most readings in one batch.
pub const MAX_BATCH: usize = 500;
/// A reading may be stamped this far ahead of the receiver's clock (clock drift).
pub const MAX_AHEAD: SignedDuration = SignedDuration::from_mins(5);
/// The longest a device's stored last-heard time may lag the arrival of its newest report (ingest
/// writes it at most every half reporting interval, capped at this, so a silence rule, which waits
/// several intervals, never mistakes the lag; and the newest report is never later than the last-heard
/// time plus this and [`MAX_AHEAD`]).
pub const MAX_HEARD_LAG: SignedDuration = SignedDuration::from_secs(60);
/// A reading older than this is refused (a gateway's backlog is replayed within a week).
pub const MAX_AGE: SignedDuration = SignedDuration::from_hours(7 * 24);

/// A device's identity as it names itself on the broker: 1–64 of `A–Z a–z 0–9 _ - . :`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
pub struct DeviceId(String);

impl DeviceId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if ok {
            Ok(DeviceId(s))
        } else {
            Err(format!("{s:?} is not a device id (1–64 of A–Z a–z 0–9 _ - . :)"))
        }
    }
}

impl std::str::FromStr for DeviceId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DeviceId::try_from(s.to_owned())
    }
}

impl From<DeviceId> for String {
    fn from(d: DeviceId) -> String {
        d.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a device watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// A smart hydrant's pressure and tamper sensor.
    Hydrant,
    /// A street lamp's single-lamp controller.
    StreetLamp,
    /// A lamp cabinet's (路灯配电箱) meter.
    LampCabinet,
    /// A manhole cover's tilt and water-level sensor.
    ManholeCover,
    /// A people counter at a checkpoint or intersection.
    PeopleCounter,
}

impl DeviceKind {
    /// Every kind.
    pub const ALL: [DeviceKind; 5] = [
        DeviceKind::Hydrant,
        DeviceKind::StreetLamp,
        DeviceKind::LampCabinet,
        DeviceKind::ManholeCover,
        DeviceKind::PeopleCounter,
    ];

    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Hydrant => "hydrant",
            DeviceKind::StreetLamp => "street_lamp",
            DeviceKind::LampCabinet => "lamp_cabinet",
            DeviceKind::ManholeCover => "manhole_cover",
            DeviceKind::PeopleCounter => "people_counter",
        }
    }

    /// The measurements this kind reports (every kind also reports its health: battery, signal,
    /// tamper).
    pub fn metrics(self) -> &'static [Metric] {
        use Metric::*;
        match self {
            DeviceKind::Hydrant => &[PressureMpa, Tamper, BatteryPct, SignalDbm],
            DeviceKind::StreetLamp => &[LampOn, CurrentA, VoltageV, PowerW, Tamper, SignalDbm],
            DeviceKind::LampCabinet => &[VoltageV, CurrentA, PowerW, Tamper, SignalDbm],
            DeviceKind::ManholeCover => &[TiltDeg, CoverOpen, WaterLevelM, Tamper, BatteryPct, SignalDbm],
            DeviceKind::PeopleCounter => &[CountIn, CountOut, Tamper, BatteryPct, SignalDbm],
        }
    }
}

impl std::str::FromStr for DeviceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DeviceKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| format!("{s:?} is not a device kind"))
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Metric::parse(s).ok_or_else(|| format!("{s:?} is not a metric"))
    }
}

/// A device as registered: what it is, what it watches, and when it was last heard from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    /// Its id on the broker.
    pub id: DeviceId,
    /// What it watches.
    pub kind: DeviceKind,
    /// Maker's model.
    pub model: String,
    /// Firmware version.
    pub firmware: String,
    /// The component it is attached to (a hydrant, a lamp, a cover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub component_id: Option<crate::codes::ComponentId>,
    /// A street lamp's cabinet (路灯配电箱): the cabinet's own device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cabinet: Option<DeviceId>,
    /// A cabinet's feeder (馈线).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feeder: Option<String>,
    /// A people counter's checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Where it stands (WGS84), for a device with no component to place it: a checkpoint is drawn at
    /// the middle of its people counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<crate::case::GeoPoint>,
    /// How often it reports, in seconds; silent for several of these, it is offline.
    pub expected_interval_s: u32,
    /// When it was registered.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it was retired; a retired device's payloads are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retired_at: Option<Timestamp>,
    /// When a reading of it last arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen_at: Option<Timestamp>,
}

/// A measurement, with the range a working sensor can report; a value outside it is refused as
/// absurd rather than stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Water pressure, MPa.
    PressureMpa,
    /// Whether the lamp is lit (1/0).
    LampOn,
    /// Current, A.
    CurrentA,
    /// Voltage, V.
    VoltageV,
    /// Power, W.
    PowerW,
    /// Cover tilt, degrees.
    TiltDeg,
    /// Whether the cover is open (1/0).
    CoverOpen,
    /// Water level under the cover, m.
    WaterLevelM,
    /// Someone opened or moved the device (1/0).
    Tamper,
    /// Battery, %.
    BatteryPct,
    /// Radio signal, dBm.
    SignalDbm,
    /// People in since the last reading.
    CountIn,
    /// People out since the last reading.
    CountOut,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 13] = [
        Metric::PressureMpa,
        Metric::LampOn,
        Metric::CurrentA,
        Metric::VoltageV,
        Metric::PowerW,
        Metric::TiltDeg,
        Metric::CoverOpen,
        Metric::WaterLevelM,
        Metric::Tamper,
        Metric::BatteryPct,
        Metric::SignalDbm,
        Metric::CountIn,
        Metric::CountOut,
    ];

    /// The snake_case name used in payloads, JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::PressureMpa => "pressure_mpa",
            Metric::LampOn => "lamp_on",
            Metric::CurrentA => "current_a",
            Metric::VoltageV => "voltage_v",
            Metric::PowerW => "power_w",
            Metric::TiltDeg => "tilt_deg",
            Metric::CoverOpen => "cover_open",
            Metric::WaterLevelM => "water_level_m",
            Metric::Tamper => "tamper",
            Metric::BatteryPct => "battery_pct",
            Metric::SignalDbm => "signal_dbm",
            Metric::CountIn => "count_in",
            Metric::CountOut => "count_out",
        }
    }

    /// The metric named `name`.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// Whether it is a yes/no reading (sent as `true`/`false` or 1/0).
    pub fn is_flag(self) -> bool {
        matches!(self, Metric::LampOn | Metric::CoverOpen | Metric::Tamper)
    }

    /// The values a working sensor can report, inclusive.
    pub fn range(self) -> (f64, f64) {
        match self {
            Metric::PressureMpa => (0.0, 2.5),
            Metric::LampOn | Metric::CoverOpen | Metric::Tamper => (0.0, 1.0),
            Metric::CurrentA => (0.0, 400.0),
            Metric::VoltageV => (0.0, 500.0),
            Metric::PowerW => (0.0, 200_000.0),
            Metric::TiltDeg => (0.0, 180.0),
            Metric::WaterLevelM => (0.0, 20.0),
            Metric::BatteryPct => (0.0, 100.0),
            Metric::SignalDbm => (-150.0, 0.0),
            Metric::CountIn | Metric::CountOut => (0.0, 100_000.0),
        }
    }
}

/// One measured value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reading {
    /// When it was measured.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// What.
    pub metric: Metric,
    /// The value (flags as 1.0/0.0).
    pub value: f64,
}

/// The spans readings are summarised over, so a year of history stays small: 5-minute summaries are
/// kept for a year or so, hourly ones for good, raw readings for a month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum RollupSpan {
    /// Five minutes.
    #[serde(rename = "5m")]
    FiveMinutes,
    /// One hour.
    #[serde(rename = "1h")]
    Hour,
}

impl RollupSpan {
    /// Both spans.
    pub const ALL: [RollupSpan; 2] = [RollupSpan::FiveMinutes, RollupSpan::Hour];

    /// The span in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            RollupSpan::FiveMinutes => 300,
            RollupSpan::Hour => 3600,
        }
    }

    /// The start of the span `at` falls in (spans are aligned on the epoch, so on whole hours of
    /// China's time too).
    pub fn start_of(self, at: Timestamp) -> Timestamp {
        let s = at.as_second().div_euclid(self.seconds()) * self.seconds();
        Timestamp::from_second(s).unwrap_or(at)
    }
}

/// A summary of one metric's readings over one span.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rollup {
    /// Where the span starts.
    #[schema(value_type = String, format = DateTime)]
    pub start: Timestamp,
    /// Readings in it.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// The lowest.
    pub min: f64,
    /// The highest.
    pub max: f64,
}

/// What a batch of readings adds to one metric's summary of one span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// The metric.
    pub metric: Metric,
    /// The span.
    pub span: RollupSpan,
    /// Where the span starts.
    pub start: Timestamp,
    /// Readings.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The lowest.
    pub min: f64,
    /// The highest.
    pub max: f64,
}

/// The summaries a batch of readings adds, one per metric, span and span start.
pub fn summarise(readings: &[Reading]) -> Vec<Summary> {
    let mut out: Vec<Summary> = Vec::new();
    for r in readings {
        for span in RollupSpan::ALL {
            let start = span.start_of(r.at);
            match out.iter_mut().find(|o| o.metric == r.metric && o.span == span && o.start == start) {
                Some(o) => {
                    o.count += 1;
                    o.sum += r.value;
                    o.min = o.min.min(r.value);
                    o.max = o.max.max(r.value);
                }
                None => out.push(Summary {
                    metric: r.metric,
                    span,
                    start,
                    count: 1,
                    sum: r.value,
                    min: r.value,
                    max: r.value,
                }),
            }
        }
    }
    out
}

/// Why a payload was refused; each is counted in the metrics under its [`Rejection::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Larger than [`MAX_PAYLOAD`].
    #[error("payload larger than {MAX_PAYLOAD} bytes")]
    TooLarge,
    /// Not JSON, or not in one of the accepted shapes.
    #[error("not a reading or a batch of readings: {0}")]
    Malformed(String),
    /// No reading in it.
    #[error("no reading")]
    Empty,
    /// More than [`MAX_BATCH`] readings.
    #[error("more than {MAX_BATCH} readings")]
    TooMany,
    /// A metric this kind of device does not report.
    #[error("{0} is not reported by this kind of device")]
    UnknownMetric(String),
    /// A value of the wrong type.
    #[error("{0}: not a number (or, for a flag, true/false)")]
    WrongType(String),
    /// A value outside what a working sensor can report.
    #[error("{0} = {1} is outside its range")]
    OutOfRange(String, String),
    /// A time that is not ISO 8601 with an offset, too far ahead, or too old.
    #[error("ts: {0}")]
    BadTime(String),
    /// No such device (or it is retired).
    #[error("unknown device")]
    UnknownDevice,
}

impl Rejection {
    /// A short name for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::TooLarge => "too_large",
            Rejection::Malformed(_) => "malformed",
            Rejection::Empty => "empty",
            Rejection::TooMany => "too_many",
            Rejection::UnknownMetric(_) => "unknown_metric",
            Rejection::WrongType(_) => "wrong_type",
            Rejection::OutOfRange(..) => "out_of_range",
            Rejection::BadTime(_) => "bad_time",
            Rejection::UnknownDevice => "unknown_device",
        }
    }
}

impl From<Rejection> for DomainError {
    fn from(r: Rejection) -> Self {
        DomainError::invalid("payload", r.to_string())
    }
}

/// Parses a payload from a device of `kind` that arrived at `now`: its readings, or why it is refused.
pub fn parse_payload(kind: DeviceKind, bytes: &[u8], now: Timestamp) -> Result<Vec<Reading>, Rejection> {
    if bytes.len() > MAX_PAYLOAD {
        return Err(Rejection::TooLarge);
    }
    let raws = serde_json::from_slice::<RawPayload>(bytes).map_err(|e| Rejection::Malformed(e.to_string()))?.0;
    if raws.len() > MAX_BATCH {
        return Err(Rejection::TooMany);
    }
    let mut out = Vec::new();
    for r in raws {
        let at = match r.ts.as_deref() {
            None => now,
            Some(ts) => ts
                .parse::<Timestamp>()
                .map_err(|_| Rejection::BadTime(format!("{ts:?} is not ISO 8601 with an offset")))?,
        };
        if at.duration_since(now) > MAX_AHEAD {
            return Err(Rejection::BadTime(format!("{at} is ahead of the receiver's clock")));
        }
        if now.duration_since(at) > MAX_AGE {
            return Err(Rejection::BadTime(format!("{at} is more than a week old")));
        }
        for (name, value) in r.values {
            let metric = Metric::parse(&name)
                .filter(|m| kind.metrics().contains(m))
                .ok_or_else(|| Rejection::UnknownMetric(name.clone().into_owned()))?;
            let value = match (value, metric.is_flag()) {
                (Scalar::Bool(b), true) => f64::from(u8::from(b)),
                (Scalar::Number(n), _) => n,
                _ => return Err(Rejection::WrongType(name.into_owned())),
            };
            let (lo, hi) = metric.range();
            let whole = !metric.is_flag() || value == 0.0 || value == 1.0;
            if !value.is_finite() || value < lo || value > hi || !whole {
                return Err(Rejection::OutOfRange(name.into_owned(), value.to_string()));
            }
            out.push(Reading { at, metric, value });
        }
    }
    if out.is_empty() {
        return Err(Rejection::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-24T12:00:00Z".parse().expect("time")
    }

    #[test]
    fn one_reading_a_batch_and_a_wrapped_batch_parse() {
        let one = br#"{"ts":"2026-11-24T19:59:00+08:00","values":{"lamp_on":false,"current_a":0.0,"voltage_v":221}}"#;
        let r = parse_payload(DeviceKind::StreetLamp, one, now()).expect("parsed");
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|x| x.at == "2026-11-24T11:59:00Z".parse::<Timestamp>().expect("t")));
        assert!(r.iter().any(|x| x.metric == Metric::LampOn && x.value == 0.0));
        let batch =
            br#"[{"values":{"pressure_mpa":0.31}},{"ts":"2026-11-24T11:00:00Z","values":{"pressure_mpa":0.12}}]"#;
        let r = parse_payload(DeviceKind::Hydrant, batch, now()).expect("parsed");
        assert_eq!((r[0].at, r[1].value), (now(), 0.12));
        let wrapped = br#"{"readings":[{"values":{"count_in":12,"count_out":9}}]}"#;
        assert_eq!(parse_payload(DeviceKind::PeopleCounter, wrapped, now()).expect("parsed").len(), 2);
        // Escaped names and times read the same as plain ones; a null time is the time of arrival.
        let escaped = br#"{"ts":"2026-11-24T11:00:00\u005a","values":{"pressure\u005fmpa":0.25}}"#;
        let r = parse_payload(DeviceKind::Hydrant, escaped, now()).expect("parsed");
        assert_eq!(
            (r[0].metric, r[0].value, r[0].at),
            (Metric::PressureMpa, 0.25, now() - SignedDuration::from_hours(1))
        );
        let null_ts = br#"{"ts":null,"values":{"pressure_mpa":0.25}}"#;
        assert_eq!(parse_payload(DeviceKind::Hydrant, null_ts, now()).expect("parsed")[0].at, now());
    }

    #[test]
    fn bad_payloads_are_refused_with_a_reason() {
        let reason = |kind, bytes: &[u8]| parse_payload(kind, bytes, now()).expect_err("refused").reason();
        assert_eq!(reason(DeviceKind::Hydrant, b"not json"), "malformed");
        assert_eq!(reason(DeviceKind::Hydrant, br#"{"values":{}}"#), "empty");
        assert_eq!(reason(DeviceKind::Hydrant, br#"{"values":{"tilt_deg":3}}"#), "unknown_metric");
        assert_eq!(reason(DeviceKind::Hydrant, br#"{"values":{"pressure_mpa":"high"}}"#), "wrong_type");
        assert_eq!(reason(DeviceKind::Hydrant, br#"{"values":{"pressure_mpa":99}}"#), "out_of_range");
        assert_eq!(reason(DeviceKind::Hydrant, br#"{"values":{"pressure_mpa":-1}}"#), "out_of_range");
        assert_eq!(reason(DeviceKind::ManholeCover, br#"{"values":{"cover_open":0.5}}"#), "out_of_range");
        assert_eq!(reason(DeviceKind::Hydrant, br#"{"ts":"tomorrow","values":{"pressure_mpa":0.3}}"#), "bad_time");
        assert_eq!(
            reason(DeviceKind::Hydrant, br#"{"ts":"2026-11-25T12:00:00Z","values":{"pressure_mpa":0.3}}"#),
            "bad_time"
        );
        assert_eq!(
            reason(DeviceKind::Hydrant, br#"{"ts":"2026-10-01T12:00:00Z","values":{"pressure_mpa":0.3}}"#),
            "bad_time"
        );
        assert_eq!(reason(DeviceKind::Hydrant, br#"{"values":{"pressure_mpa":0.3},"extra":1}"#), "malformed");
        // The shapes do not mix, keys come once, and a reading inside a batch is a reading.
        for bad in [
            r#"{"readings":[{"values":{"pressure_mpa":0.3}}],"values":{"pressure_mpa":0.3}}"#,
            r#"{"readings":[],"ts":"2026-11-24T11:00:00Z"}"#,
            r#"{"values":{"pressure_mpa":0.3},"values":{"pressure_mpa":0.4}}"#,
            r#"[{"readings":[{"values":{"pressure_mpa":0.3}}]}]"#,
            r#"{"ts":"2026-11-24T11:00:00Z"}"#,
            r#"{"ts":12,"values":{"pressure_mpa":0.3}}"#,
            r#"{"values":[0.3]}"#,
            r#"3"#,
        ] {
            assert_eq!(reason(DeviceKind::Hydrant, bad.as_bytes()), "malformed", "{bad}");
        }
        assert_eq!(reason(DeviceKind::Hydrant, br#"{"values":{"pressure_mpa":null}}"#), "wrong_type");
        assert_eq!(reason(DeviceKind::Hydrant, br#"{"values":{"pressure_mpa":[1]}}"#), "wrong_type");
        assert_eq!(reason(DeviceKind::Hydrant, br#"{"values":{"pressure_mpa":true}}"#), "wrong_type");
        assert_eq!(reason(DeviceKind::Hydrant, br#"{"readings":[]}"#), "empty");
        let big = vec![b' '; MAX_PAYLOAD + 1];
        assert_eq!(reason(DeviceKind::Hydrant, &big), "too_large");
        let many = format!("[{}]", vec![r#"{"values":{"pressure_mpa":0.3}}"#; MAX_BATCH + 1].join(","));
        assert_eq!(reason(DeviceKind::Hydrant, many.as_bytes()), "too_many");
    }

    #[test]
    fn readings_are_summarised_per_span() {
        let at = |s: &str| s.parse::<Timestamp>().expect("time");
        let r = |t: &str, v: f64| Reading { at: at(t), metric: Metric::PressureMpa, value: v };
        let sums = summarise(&[
            r("2026-11-24T12:01:00Z", 0.3),
            r("2026-11-24T12:04:59Z", 0.1),
            r("2026-11-24T12:05:00Z", 0.2),
        ]);
        let five: Vec<_> = sums.iter().filter(|s| s.span == RollupSpan::FiveMinutes).collect();
        assert_eq!(five.len(), 2);
        assert_eq!((five[0].start, five[0].count, five[0].min, five[0].max), (at("2026-11-24T12:00:00Z"), 2, 0.1, 0.3));
        let hour: Vec<_> = sums.iter().filter(|s| s.span == RollupSpan::Hour).collect();
        assert_eq!((hour.len(), hour[0].count), (1, 3));
        assert!((hour[0].sum - 0.6).abs() < 1e-9);
        assert_eq!(RollupSpan::Hour.start_of(at("2026-11-24T12:59:59Z")), at("2026-11-24T12:00:00Z"));
    }

    #[test]
    fn device_ids_are_checked() {
        assert!("lamp-0001:a".parse::<DeviceId>().is_ok());
        assert!("".parse::<DeviceId>().is_err());
        assert!("has space".parse::<DeviceId>().is_err());
        assert!("a/b".parse::<DeviceId>().is_err(), "no topic separators");
        assert!("+".parse::<DeviceId>().is_err() && "#".parse::<DeviceId>().is_err(), "no MQTT wildcards");
    }

    proptest::proptest! {
        /// Whatever arrives, parsing answers (readings or a reason) and never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            for kind in DeviceKind::ALL {
                let _ = parse_payload(kind, &bytes, now());
            }
        }

        /// Arbitrary JSON values in the values map either parse in range or are refused.
        #[test]
        fn values_in_payloads_are_in_range_or_refused(v in proptest::prelude::any::<f64>(), name in 0usize..13) {
            let metric = Metric::ALL[name];
            let body = format!(r#"{{"values":{{"{}":{}}}}}"#, metric.as_str(), if v.is_finite() { v.to_string() } else { "null".into() });
            for kind in DeviceKind::ALL {
                if let Ok(readings) = parse_payload(kind, body.as_bytes(), now()) {
                    let (lo, hi) = metric.range();
                    proptest::prop_assert!(readings.iter().all(|r| r.value >= lo && r.value <= hi));
                }
            }
        }
    }
}

/// Sunrise and sunset, for rules that depend on daylight (a street lamp dark at night, one burning at
/// noon). The NOAA solar equations (equation of time and declination from the fractional year), good to
/// a minute or two at the town's latitude, which is finer than a lamp's photocell; written here on jiff
/// rather than pulling a second date library into the core for twenty lines.
pub mod sun {
    use jiff::Timestamp;
    use jiff::civil::Date;

    /// Sunrise and sunset on `date` (the town's local date) at `lat`/`lon` (WGS84 degrees), as
    /// instants; `None` in polar day or night.
    pub fn rise_and_set(date: Date, lat: f64, lon: f64) -> Option<(Timestamp, Timestamp)> {
        let days_in_year = if date.in_leap_year() { 366.0 } else { 365.0 };
        let gamma = 2.0 * std::f64::consts::PI / days_in_year * (f64::from(date.day_of_year()) - 1.0);
        let eq_time = 229.18
            * (0.000075 + 0.001868 * gamma.cos()
                - 0.032077 * gamma.sin()
                - 0.014615 * (2.0 * gamma).cos()
                - 0.040849 * (2.0 * gamma).sin());
        let decl = 0.006918 - 0.399912 * gamma.cos() + 0.070257 * gamma.sin() - 0.006758 * (2.0 * gamma).cos()
            + 0.000907 * (2.0 * gamma).sin()
            - 0.002697 * (3.0 * gamma).cos()
            + 0.00148 * (3.0 * gamma).sin();
        let lat = lat.to_radians();
        // The sun's centre 0.833° below the horizon: refraction and the sun's radius.
        let cos_ha = (90.833f64.to_radians().cos() / (lat.cos() * decl.cos())) - lat.tan() * decl.tan();
        if !(-1.0..=1.0).contains(&cos_ha) {
            return None;
        }
        let ha = cos_ha.acos().to_degrees();
        // Minutes after UTC midnight of the date.
        let rise = 720.0 - 4.0 * (lon + ha) - eq_time;
        let set = 720.0 - 4.0 * (lon - ha) - eq_time;
        let midnight = date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
        let at = |minutes: f64| midnight.checked_add(jiff::SignedDuration::from_secs_f64(minutes * 60.0)).ok();
        Some((at(rise)?, at(set)?))
    }

    /// Whether `at` falls between sunset and the next sunrise at `lat`/`lon` (local dates, UTC+8).
    pub fn is_dark(at: Timestamp, lat: f64, lon: f64) -> bool {
        let today = crate::calendar::local(at).date();
        match rise_and_set(today, lat, lon) {
            Some((rise, set)) => at < rise || at >= set,
            None => false,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use jiff::civil::date;

        fn local_hm(t: Timestamp) -> (i8, i8) {
            let l = crate::calendar::local(t);
            (l.hour(), l.minute())
        }

        fn minutes((h, m): (i8, i8)) -> i32 {
            i32::from(h) * 60 + i32::from(m)
        }

        /// Shanghai's almanac: the longest day 04:50–19:01, the shortest 06:50–16:55 (China time).
        #[test]
        fn shanghai_solstices_match_the_almanac() {
            let (lat, lon) = (31.23, 121.47);
            for (day, rise, set) in [(date(2026, 6, 21), (4, 50), (19, 1)), (date(2026, 12, 21), (6, 50), (16, 55))] {
                let (r, s) = rise_and_set(day, lat, lon).expect("sun rises");
                assert!((minutes(local_hm(r)) - minutes(rise)).abs() <= 3, "{day} sunrise {:?}", local_hm(r));
                assert!((minutes(local_hm(s)) - minutes(set)).abs() <= 3, "{day} sunset {:?}", local_hm(s));
            }
        }

        #[test]
        fn dark_at_night_light_at_noon_and_polar_night_has_no_sunrise() {
            let (lat, lon) = (31.3, 120.9);
            let at = |s: &str| s.parse::<Timestamp>().expect("time");
            assert!(is_dark(at("2026-11-24T13:00:00Z"), lat, lon), "21:00 local");
            assert!(is_dark(at("2026-11-23T21:00:00Z"), lat, lon), "05:00 local");
            assert!(!is_dark(at("2026-11-24T04:00:00Z"), lat, lon), "noon");
            assert_eq!(rise_and_set(date(2026, 12, 21), 80.0, 0.0), None);
        }
    }
}
