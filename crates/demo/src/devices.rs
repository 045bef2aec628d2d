//! The demo town's smart components and what they report: a tenth of the street lamps with a controller
//! (each on the nearest of the lamp cabinets, one per thirty lamps, which hang on four feeders), a tenth
//! of the hydrants with a pressure sensor, a tenth of the sewage and storm covers with a tilt and
//! water-level sensor, and a people counter at six checkpoints; and the telemetry each would send at a
//! given moment (a people counter: what passed in its five minutes) — lamps lit from the town's sunset
//! to its sunrise, pressure with a little noise, people arriving with the morning rush and leaving with
//! the evening one — with a few faults injected (lamps dark at night, a hydrant losing pressure, a cover
//! knocked open), so the demo and `civicgrid simulate` show something to act on.

use civicgrid_core::case::GeoPoint;
use civicgrid_core::iot::{Device, DeviceId, DeviceKind};
use jiff::Timestamp;

use crate::TownData;

/// Lamps per cabinet.
const LAMPS_PER_CABINET: usize = 30;
/// The checkpoints people are counted at.
const CHECKPOINTS: [&str; 6] = ["镇政府广场", "客运站", "中心菜场", "实验小学", "工业园北门", "滨河公园"];

fn id(s: String) -> DeviceId {
    s.parse().unwrap_or_else(|e| panic!("demo device id: {e}"))
}

fn device(id: DeviceId, kind: DeviceKind, model: &str, interval: u32, at: Timestamp) -> Device {
    Device {
        id,
        kind,
        model: model.into(),
        firmware: "2.4.1".into(),
        component_id: None,
        cabinet: None,
        feeder: None,
        checkpoint: None,
        location: None,
        expected_interval_s: interval,
        created_at: at,
        retired_at: None,
        last_seen_at: None,
    }
}

fn near(a: GeoPoint, b: GeoPoint) -> f64 {
    (a.lon - b.lon).powi(2) + (a.lat - b.lat).powi(2)
}

/// The demo's devices (cabinets before the lamps that name them), registered at `at`.
pub fn devices(data: &TownData, at: Timestamp) -> Vec<Device> {
    let of_class = |class: &'static str| data.components.iter().filter(move |c| c.id.class().as_str() == class);
    let lamps: Vec<_> = of_class("01037").step_by(10).collect();
    let cabinets = lamps.len().div_ceil(LAMPS_PER_CABINET).max(1);
    let mut out = Vec::new();
    let mut cabinet_at = Vec::new();
    for (i, lamp) in lamps.iter().step_by(LAMPS_PER_CABINET).enumerate().take(cabinets) {
        let mut d = device(id(format!("cab-{:03}", i + 1)), DeviceKind::LampCabinet, "PDX-3", 300, at);
        d.feeder = Some(format!("10kV 清源{}线", ["一", "二", "三", "四"][i % 4]));
        cabinet_at.push((d.id.clone(), lamp.location));
        out.push(d);
    }
    for lamp in &lamps {
        let mut d = device(id(format!("lamp-{}", lamp.id.serial())), DeviceKind::StreetLamp, "SLC-20", 600, at);
        d.component_id = Some(lamp.id);
        d.cabinet = cabinet_at
            .iter()
            .min_by(|a, b| near(a.1, lamp.location).total_cmp(&near(b.1, lamp.location)))
            .map(|(c, _)| c.clone());
        out.push(d);
    }
    for hydrant in of_class("01013").step_by(10) {
        let mut d = device(id(format!("hyd-{}", hydrant.id.serial())), DeviceKind::Hydrant, "XFS-NB", 900, at);
        d.component_id = Some(hydrant.id);
        out.push(d);
    }
    let covers = of_class("01002").chain(of_class("01003")).step_by(10);
    for cover in covers {
        let mut d = device(
            id(format!("cover-{}-{}", cover.id.class(), cover.id.serial())),
            DeviceKind::ManholeCover,
            "JG-T2",
            1800,
            at,
        );
        d.component_id = Some(cover.id);
        out.push(d);
    }
    // Each checkpoint in a micro-grid of its own, spread over the town.
    let micro = &data.layout.micro_grids;
    for (i, name) in CHECKPOINTS.iter().enumerate() {
        let mut d = device(id(format!("pc-{:02}", i + 1)), DeviceKind::PeopleCounter, "PC-3D", 300, at);
        d.checkpoint = Some((*name).into());
        d.location = micro.get(i * micro.len() / CHECKPOINTS.len()).map(|m| {
            let p = crate::layout::point_in(&m.polygon, 0.5, 0.5);
            GeoPoint { lon: p.x, lat: p.y }
        });
        out.push(d);
    }
    out
}

/// A stable number in 0..n for a device (which ones are faulty, their phase).
fn pick(device: &DeviceId, n: u64) -> u64 {
    device.as_str().bytes().fold(1469598103934665603u64, |h, b| (h ^ u64::from(b)).wrapping_mul(1099511628211)) % n
}

/// Whether it is dark at `at` in the demo town (between its sunset and sunrise).
fn dark(at: Timestamp) -> bool {
    let origin = crate::layout::origin();
    civicgrid_core::iot::sun::is_dark(at, origin.lat, origin.lon)
}

/// What `device` reports at `at`, as a payload; `noise` in 0..1 varies it.
pub fn payload(device: &Device, at: Timestamp, noise: f64) -> String {
    let ts = at.to_string();
    let faulty = pick(&device.id, 40) == 0;
    let values = match device.kind {
        DeviceKind::StreetLamp => {
            let lit = dark(at) && !faulty;
            let current = if lit { 0.78 + noise * 0.08 } else { 0.0 };
            format!(r#""lamp_on":{lit},"current_a":{current:.3},"voltage_v":{:.1}"#, 218.0 + noise * 6.0)
        }
        DeviceKind::LampCabinet => {
            let load = if dark(at) { 22.0 + noise * 3.0 } else { 0.4 };
            format!(r#""voltage_v":{:.1},"current_a":{load:.2},"power_w":{:.0}"#, 380.0 + noise * 8.0, load * 380.0)
        }
        DeviceKind::Hydrant => {
            let pressure = if faulty { 0.05 + noise * 0.02 } else { 0.28 + noise * 0.04 };
            format!(r#""pressure_mpa":{pressure:.3},"battery_pct":{:.0}"#, 96.0 - pick(&device.id, 30) as f64)
        }
        DeviceKind::ManholeCover => {
            let (tilt, open) = if faulty { (35.0, true) } else { (noise * 2.0, false) };
            format!(r#""tilt_deg":{tilt:.1},"cover_open":{open},"water_level_m":{:.2}"#, 0.1 + noise * 0.2)
        }
        DeviceKind::PeopleCounter => {
            let t = civicgrid_core::calendar::local(at).time();
            let hour = f64::from(t.hour()) + f64::from(t.minute()) / 60.0;
            // People arrive with the morning rush and leave with the evening one, so an area fills
            // through the day and empties at night; busier checkpoints count more.
            let morning = (-((hour - 8.0) / 1.2).powi(2)).exp();
            let evening = (-((hour - 17.5) / 1.5).powi(2)).exp();
            let day = if (6.0..22.0).contains(&hour) { 0.3 } else { 0.02 };
            let size = 120.0 + 12.0 * pick(&device.id, 10) as f64;
            let jitter = 0.9 + noise * 0.2;
            let came = (size * (morning + 0.6 * evening + day) * jitter).round();
            let left = (size * (0.6 * morning + evening + day) * jitter).round();
            format!(r#""count_in":{came},"count_out":{left}"#)
        }
    };
    format!(r#"{{"ts":"{ts}","values":{{{values}}}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A day of one counter's reports, one per five minutes from local midnight: (in, out) each.
    fn day_of(counter: &Device) -> Vec<(f64, f64)> {
        let midnight: Timestamp = "2026-11-23T16:00:00Z".parse().expect("local midnight");
        (0..288)
            .map(|i| {
                let p = payload(counter, midnight + jiff::SignedDuration::from_mins(5 * i), 0.5);
                let v: serde_json::Value = serde_json::from_str(&p).expect("json");
                (v["values"]["count_in"].as_f64().expect("in"), v["values"]["count_out"].as_f64().expect("out"))
            })
            .collect()
    }

    #[test]
    fn checkpoints_fill_in_the_morning_and_empty_in_the_evening() {
        let at: Timestamp = "2026-11-24T00:00:00Z".parse().expect("time");
        let counters: Vec<Device> = CHECKPOINTS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut d = device(id(format!("pc-{:02}", i + 1)), DeviceKind::PeopleCounter, "PC-3D", 300, at);
                d.checkpoint = Some((*name).into());
                d
            })
            .collect();
        let mut peaks = Vec::new();
        for c in &counters {
            let mut present = 0.0_f64;
            let (mut peak, mut at_noon) = (0.0_f64, 0.0);
            for (i, (came, left)) in day_of(c).into_iter().enumerate() {
                present = (present + came - left).max(0.0);
                peak = peak.max(present);
                if i == 12 * 12 {
                    at_noon = present;
                }
            }
            assert!(at_noon > 500.0, "{}: people present at noon: {at_noon}", c.id);
            assert!(present < 0.05 * peak, "{}: the area empties by midnight ({present} of {peak})", c.id);
            peaks.push(peak);
        }
        // Against the standard crowd threshold of 2,000: some checkpoints pass it at their busiest, most do not.
        let crowded = peaks.iter().filter(|p| **p > 2000.0).count();
        assert!((1..counters.len() / 2).contains(&crowded), "{peaks:?}");
    }

    #[test]
    fn every_device_and_payload_is_valid() {
        let now: Timestamp = "2026-11-24T13:00:00Z".parse().expect("time"); // 21:00 local
        let opts = crate::DemoOptions {
            scale: 0.05,
            case_scale: 0.0,
            seed: 3,
            now,
            demo_password_hash: String::new(),
            admin_password_hash: String::new(),
        };
        let data = crate::town(&opts).expect("town");
        let list = devices(&data, now);
        assert!(list.iter().any(|d| d.kind == DeviceKind::LampCabinet));
        let cabinets: Vec<_> = list.iter().filter(|d| d.kind == DeviceKind::LampCabinet).map(|d| &d.id).collect();
        assert!(
            list.iter()
                .filter(|d| d.kind == DeviceKind::StreetLamp)
                .all(|d| d.cabinet.as_ref().is_some_and(|c| cabinets.contains(&c)))
        );
        for d in &list {
            for noise in [0.0, 0.5, 0.999] {
                let p = payload(d, now, noise);
                civicgrid_core::iot::parse_payload(d.kind, p.as_bytes(), now)
                    .unwrap_or_else(|e| panic!("{}: {p}: {e}", d.id));
            }
        }
        // At night most lamps are lit; a few are dark (the injected faults).
        let lit = list
            .iter()
            .filter(|d| d.kind == DeviceKind::StreetLamp)
            .filter(|d| payload(d, now, 0.5).contains(r#""lamp_on":true"#))
            .count();
        assert!(lit > 0);
    }
}
