//! The SQL of [`crate::DeviceStore`] — devices, their ingest tokens, their reports (one row per device
//! and moment, values as a JSON object), latest values read back from the newest reports, and the
//! 5-minute and hourly summaries made from the reports of every (device, hour) marked pending — shared
//! by both backends the way [`queries`](super::queries) is: this file is compiled once per backend with
//! that backend's `Db`, `This` and `BACKEND`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use civicgrid_core::iot::{
    Device, DeviceId, MAX_AHEAD, MAX_HEARD_LAG, Metric, Reading, Rollup, RollupSpan, Summary, summarise,
};
use jiff::Timestamp;
use sqlx::QueryBuilder;

use super::{BACKEND, Db, This};
use crate::rows::ts;
use crate::shared::parse;
use crate::{
    Backend, DeviceReadings, DeviceStore, LATEST_REPORTS, Result, StoreError, SummaryPass, TelemetryBatch, micros,
};

/// The next marks of a summary pass: (hour, device) pairs of hours over by `$1`, after `($2, $3)`, in
/// that order, at most `$4` (read through the `telemetry_pending_hour` index).
pub(super) const PENDING_PASS: &str = "SELECT device_id, hour_at, touched FROM telemetry_pending \
     WHERE hour_at <= $1 AND (hour_at, device_id) > ($2, $3) \
     ORDER BY hour_at, device_id LIMIT $4";
/// Rows per statement: well under either backend's limit on bound values.
const CHUNK: usize = 2000;
/// An hour, in microseconds.
const HOUR_US: i64 = 3_600_000_000;
/// A day, in microseconds.
const DAY_US: i64 = 24 * HOUR_US;
/// The span that leads the reports' key (5 minutes), in microseconds.
const BUCKET_US: i64 = 300_000_000;

const DEVICE_COLUMNS: &str = "id, kind, model, firmware, component_id, cabinet, feeder, checkpoint, \
    expected_interval_s, created_at, retired_at, last_seen_at, lon, lat";
type DeviceRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<f64>,
    Option<f64>,
);

fn device_from_row(r: DeviceRow) -> Result<Device> {
    let (id, kind, model, firmware, component, cabinet, feeder, checkpoint, interval, created, retired, seen, lon, lat) =
        r;
    Ok(Device {
        id: parse(&id)?,
        kind: parse(&kind)?,
        model,
        firmware,
        component_id: component.as_deref().map(parse).transpose()?,
        cabinet: cabinet.as_deref().map(parse).transpose()?,
        feeder,
        checkpoint,
        location: lon.zip(lat).map(|(lon, lat)| civicgrid_core::case::GeoPoint { lon, lat }),
        expected_interval_s: u32::try_from(interval).unwrap_or(u32::MAX),
        created_at: ts(created)?,
        retired_at: retired.map(ts).transpose()?,
        last_seen_at: seen.map(ts).transpose()?,
    })
}

#[async_trait::async_trait]
impl DeviceStore for This {
    async fn put_device(&self, d: &Device) -> Result<()> {
        sqlx::query(
            "INSERT INTO devices (id, kind, model, firmware, component_id, cabinet, feeder, checkpoint, \
             expected_interval_s, created_at, retired_at, lon, lat) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, model = excluded.model, \
             firmware = excluded.firmware, component_id = excluded.component_id, cabinet = excluded.cabinet, \
             feeder = excluded.feeder, checkpoint = excluded.checkpoint, \
             expected_interval_s = excluded.expected_interval_s, retired_at = excluded.retired_at, \
             lon = excluded.lon, lat = excluded.lat",
        )
        .bind(d.id.as_str())
        .bind(d.kind.as_str())
        .bind(&d.model)
        .bind(&d.firmware)
        .bind(d.component_id.as_ref().map(ToString::to_string))
        .bind(d.cabinet.as_ref().map(DeviceId::as_str))
        .bind(&d.feeder)
        .bind(&d.checkpoint)
        .bind(i64::from(d.expected_interval_s))
        .bind(micros(d.created_at))
        .bind(d.retired_at.map(micros))
        .bind(d.location.map(|p| p.lon))
        .bind(d.location.map(|p| p.lat))
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(())
    }

    async fn device(&self, id: &DeviceId) -> Result<Option<Device>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1"));
        let row: Option<DeviceRow> = sqlx::query_as(sql).bind(id.as_str()).fetch_optional(&self.read).await?;
        row.map(device_from_row).transpose()
    }

    async fn devices(&self) -> Result<Vec<Device>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY id"));
        let rows: Vec<DeviceRow> = sqlx::query_as(sql).fetch_all(&self.read).await?;
        rows.into_iter().map(device_from_row).collect()
    }

    async fn set_device_token(&self, id: &DeviceId, token_hash: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE devices SET token_hash = $1 WHERE id = $2")
            .bind(token_hash)
            .bind(id.as_str())
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn device_by_token(&self, token_hash: &str) -> Result<Option<Device>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE token_hash = $1"));
        let row: Option<DeviceRow> = sqlx::query_as(sql).bind(token_hash).fetch_optional(&self.read).await?;
        row.map(device_from_row).transpose()
    }

    async fn record_telemetry(&self, batch: &TelemetryBatch) -> Result<()> {
        let TelemetryBatch { readings: batch, heard, heard_at, rule_states } = batch;
        let heard_at = *heard_at;
        let (rows, hours) = reports_of(batch);
        if rows.is_empty() && heard.is_empty() && rule_states.is_empty() {
            return Ok(());
        }
        let merge = match BACKEND {
            Backend::Sqlite => {
                " ON CONFLICT (bucket, device_id, at) DO UPDATE SET vals = json_patch(telemetry_reports.vals, excluded.vals)"
            }
            Backend::Postgres => {
                " ON CONFLICT (bucket, device_id, at) DO UPDATE \
                 SET vals = (telemetry_reports.vals::jsonb || excluded.vals::jsonb)::text"
            }
        };
        let mut tx = self.write_tx().await?;
        for chunk in rows.chunks(CHUNK) {
            let mut q: QueryBuilder<Db> =
                QueryBuilder::new("INSERT INTO telemetry_reports (bucket, device_id, at, vals) ");
            q.push_values(chunk, |mut b, (d, at, vals)| {
                b.push_bind(bucket_of(*at)).push_bind(*d).push_bind(*at).push_bind(vals.as_str());
            });
            q.push(merge);
            q.build().execute(&mut *tx).await?;
        }
        for chunk in hours.chunks(CHUNK) {
            let mut q: QueryBuilder<Db> =
                QueryBuilder::new("INSERT INTO telemetry_pending (device_id, hour_at, touched) ");
            q.push_values(chunk, |mut b, (d, hour)| {
                b.push_bind(*d).push_bind(*hour).push_bind(1_i64);
            });
            q.push(" ON CONFLICT (device_id, hour_at) DO UPDATE SET touched = telemetry_pending.touched + 1");
            q.build().execute(&mut *tx).await?;
        }
        for chunk in heard.chunks(CHUNK) {
            let mut q: QueryBuilder<Db> = QueryBuilder::new("UPDATE devices SET last_seen_at = ");
            q.push_bind(micros(heard_at)).push(" WHERE (last_seen_at IS NULL OR last_seen_at < ");
            q.push_bind(micros(heard_at)).push(") AND id IN (");
            let mut ids = q.separated(", ");
            for d in chunk {
                ids.push_bind(d.as_str());
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        super::alarm_queries::upsert_rule_states(&mut tx, rule_states).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn summarise_telemetry(
        &self,
        ended_by: Timestamp,
        after: Option<&SummaryPass>,
        limit: u32,
    ) -> Result<(u32, Option<SummaryPass>)> {
        let mut tx = self.write_tx().await?;
        let (after_hour, after_device) = after.map_or((i64::MIN, ""), |(h, d)| (*h, d.as_str()));
        let marks: Vec<(String, i64, i64)> = sqlx::query_as(PENDING_PASS)
            .bind(micros(ended_by) - HOUR_US)
            .bind(after_hour)
            .bind(after_device)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        for (device, hour, touched) in &marks {
            let summaries = summarise_hour(&mut *tx, device, *hour).await?;
            sqlx::query(
                "DELETE FROM telemetry_rollup WHERE device_id = $1 AND start_at >= $2 AND start_at < $3 \
                 AND (span_s = $4 OR start_at = $2)",
            )
            .bind(device)
            .bind(hour)
            .bind(hour + HOUR_US)
            .bind(RollupSpan::FiveMinutes.seconds())
            .execute(&mut *tx)
            .await?;
            if !summaries.is_empty() {
                let mut q: QueryBuilder<Db> = QueryBuilder::new(
                    "INSERT INTO telemetry_rollup (device_id, metric, span_s, start_at, n, total, low, high) ",
                );
                q.push_values(&summaries, |mut b, s| {
                    b.push_bind(device.as_str())
                        .push_bind(s.metric.as_str())
                        .push_bind(s.span.seconds())
                        .push_bind(micros(s.start))
                        .push_bind(i64::try_from(s.count).unwrap_or(i64::MAX))
                        .push_bind(s.sum)
                        .push_bind(s.min)
                        .push_bind(s.max);
                });
                q.build().execute(&mut *tx).await?;
            }
            // A report stored since the mark was read touched it again: the mark stays for the next run.
            sqlx::query("DELETE FROM telemetry_pending WHERE device_id = $1 AND hour_at = $2 AND touched = $3")
                .bind(device)
                .bind(hour)
                .bind(touched)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let last = marks.last().map(|(device, hour, _)| (*hour, device.clone()));
        Ok((u32::try_from(marks.len()).unwrap_or(u32::MAX), last))
    }

    async fn latest_readings(&self, id: &DeviceId) -> Result<Vec<Reading>> {
        // Span by span back from the newest report, for at most the raw history's month. The newest can
        // be no later than the last-heard time plus its lag and a reading's clock drift; a device never
        // heard from has none.
        let Some(heard) = self.last_heard(id).await? else { return Ok(Vec::new()) };
        let newest = heard + (MAX_HEARD_LAG + MAX_AHEAD).as_micros() as i64;
        let mut latest: BTreeMap<Metric, Reading> = BTreeMap::new();
        let mut seen = 0u32;
        let mut to = bucket_of(newest) + BUCKET_US;
        let mut conn = self.read.acquire().await?;
        for _ in 0..31 {
            let from = to - DAY_US;
            let rows = reports_in(&mut *conn, id.as_str(), from, to, true).await?;
            for (at, vals) in rows {
                for r in report_readings(at, &vals)? {
                    latest.entry(r.metric).or_insert(r);
                }
                seen += 1;
                if seen >= LATEST_REPORTS {
                    break;
                }
            }
            if seen >= LATEST_REPORTS {
                break;
            }
            to = from;
        }
        let mut out: Vec<Reading> = latest.into_values().collect();
        out.sort_by_key(|r| r.metric.as_str());
        Ok(out)
    }

    async fn rollups(
        &self,
        id: &DeviceId,
        metric: Metric,
        span: RollupSpan,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<Rollup>> {
        let rows: Vec<(i64, i64, f64, f64, f64)> = sqlx::query_as(
            "SELECT start_at, n, total, low, high FROM telemetry_rollup WHERE device_id = $1 AND metric = $2 \
             AND span_s = $3 AND start_at >= $4 AND start_at < $5 ORDER BY start_at LIMIT $6",
        )
        .bind(id.as_str())
        .bind(metric.as_str())
        .bind(span.seconds())
        .bind(micros(from))
        .bind(micros(to))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        let mut out: BTreeMap<i64, Rollup> = BTreeMap::new();
        for (start, n, total, low, high) in rows {
            out.insert(start, rollup(ts(start)?, u64::try_from(n).unwrap_or(0), total, low, high));
        }
        // Hours marked since they were last summarised are summarised from their reports for this answer.
        let pending: Vec<(i64,)> = sqlx::query_as(
            "SELECT hour_at FROM telemetry_pending WHERE device_id = $1 AND hour_at > $2 AND hour_at < $3",
        )
        .bind(id.as_str())
        .bind(micros(from) - HOUR_US)
        .bind(micros(to))
        .fetch_all(&self.read)
        .await?;
        if !pending.is_empty() {
            let mut conn = self.read.acquire().await?;
            for (hour,) in pending {
                for s in summarise_hour(&mut *conn, id.as_str(), hour).await? {
                    let start = micros(s.start);
                    if s.metric == metric && s.span == span && start >= micros(from) && start < micros(to) {
                        out.insert(start, rollup(s.start, s.count, s.sum, s.min, s.max));
                    }
                }
            }
        }
        Ok(out.into_values().take(limit as usize).collect())
    }

    async fn purge_telemetry(&self, raw_before: Timestamp, five_minutes_before: Timestamp) -> Result<u64> {
        let raw = sqlx::query("DELETE FROM telemetry_reports WHERE bucket < $1")
            .bind(bucket_of(micros(raw_before)))
            .execute(&mut *self.write_conn().await?)
            .await?;
        let five = sqlx::query("DELETE FROM telemetry_rollup WHERE span_s = $1 AND start_at < $2")
            .bind(RollupSpan::FiveMinutes.seconds())
            .bind(micros(five_minutes_before))
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(raw.rows_affected() + five.rows_affected())
    }

    async fn readings(
        &self,
        id: &DeviceId,
        metric: Metric,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<Reading>> {
        // A day of spans at a time, until `limit` readings are found.
        let mut out = Vec::new();
        let (from, to) = (micros(from), micros(to));
        let mut start = from;
        let mut conn = self.read.acquire().await?;
        while start < to {
            let end = (bucket_of(start) + DAY_US).min(to);
            for (at, vals) in reports_in(&mut *conn, id.as_str(), start, end, false).await? {
                out.extend(report_readings(at, &vals)?.into_iter().filter(|r| r.metric == metric));
                if out.len() >= limit as usize {
                    out.truncate(limit as usize);
                    return Ok(out);
                }
            }
            start = end;
        }
        Ok(out)
    }
}

impl This {
    /// A device's last-heard time (microseconds), if it was ever heard from.
    async fn last_heard(&self, id: &DeviceId) -> Result<Option<i64>> {
        let seen: Option<(Option<i64>,)> = sqlx::query_as("SELECT last_seen_at FROM devices WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.read)
            .await?;
        Ok(seen.and_then(|(s,)| s))
    }
}

/// The 5-minute span a time (in microseconds) falls in, as its start.
fn bucket_of(at: i64) -> i64 {
    at.div_euclid(BUCKET_US) * BUCKET_US
}

/// A device's reports taken in `from..to` (microseconds), in time order (newest first if `newest_first`),
/// read span by span along the key.
async fn reports_in<'c, E>(conn: E, device: &str, from: i64, to: i64, newest_first: bool) -> Result<Vec<(i64, String)>>
where
    E: sqlx::Executor<'c, Database = Db>,
{
    let first = bucket_of(from);
    if from >= to {
        return Ok(Vec::new());
    }
    let mut q: QueryBuilder<Db> = QueryBuilder::new("SELECT at, vals FROM telemetry_reports WHERE device_id = ");
    q.push_bind(device).push(" AND at >= ").push_bind(from).push(" AND at < ").push_bind(to).push(" AND bucket IN (");
    let mut spans = q.separated(", ");
    let mut b = first;
    while b < to {
        spans.push_bind(b);
        b += BUCKET_US;
    }
    q.push(if newest_first { ") ORDER BY at DESC" } else { ") ORDER BY at" });
    Ok(q.build_query_as().fetch_all(conn).await?)
}

/// A report to store: device, time (µs) and its values as a JSON object.
type Report<'a> = (&'a str, i64, String);

/// A batch's reports and the hours they fall in. One report per (device, moment), in (device, time)
/// order, its values as a JSON object in metric order (values taken at the same moment merge, here and
/// in the table; a metric given twice keeps the later value; `f64`'s `Display` is the shortest text that
/// reads back to the same value, and never an exponent); and each (device, hour) once, in order.
fn reports_of(batch: &[DeviceReadings]) -> (Vec<Report<'_>>, Vec<(&str, i64)>) {
    let mut all: Vec<(&str, i64, Metric, f64)> = batch
        .iter()
        .flat_map(|b| b.readings.iter().map(move |r| (b.device.as_str(), micros(r.at), r.metric, r.value)))
        .collect();
    // Stable, so that among equal keys the later reading stays later; linear on a batch already in order.
    all.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    let mut rows: Vec<Report<'_>> = Vec::new();
    let mut hours: Vec<(&str, i64)> = Vec::new();
    for report in all.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        let (device, at) = (report[0].0, report[0].1);
        let mut vals = String::with_capacity(16 * report.len() + 2);
        vals.push('{');
        for (i, &(_, _, metric, value)) in report.iter().enumerate() {
            if report.get(i + 1).is_some_and(|next| next.2 == metric) {
                continue;
            }
            if vals.len() > 1 {
                vals.push(',');
            }
            let _ = write!(vals, "\"{}\":{value}", metric.as_str());
        }
        vals.push('}');
        rows.push((device, at, vals));
        let hour = (device, at.div_euclid(HOUR_US) * HOUR_US);
        if hours.last() != Some(&hour) {
            hours.push(hour);
        }
    }
    (rows, hours)
}

/// The readings of one stored report.
fn report_readings(at: i64, vals: &str) -> Result<Vec<Reading>> {
    let at = ts(at)?;
    let map: BTreeMap<String, f64> =
        serde_json::from_str(vals).map_err(|e| StoreError::Corrupt(format!("telemetry values {vals:?}: {e}")))?;
    map.into_iter()
        .map(|(name, value)| {
            let metric = Metric::parse(&name).ok_or_else(|| StoreError::Corrupt(format!("unknown metric {name:?}")))?;
            Ok(Reading { at, metric, value })
        })
        .collect()
}

/// The 5-minute and hourly summaries of one device's reports in the hour starting at `hour`.
async fn summarise_hour<'c, E>(conn: E, device: &str, hour: i64) -> Result<Vec<Summary>>
where
    E: sqlx::Executor<'c, Database = Db>,
{
    let rows = reports_in(conn, device, hour, hour + HOUR_US, false).await?;
    let mut readings = Vec::new();
    for (at, vals) in rows {
        readings.extend(report_readings(at, &vals)?);
    }
    Ok(summarise(&readings))
}

fn rollup(start: Timestamp, count: u64, total: f64, min: f64, max: f64) -> Rollup {
    let mean = if count == 0 { 0.0 } else { total / count as f64 };
    Rollup { start, count, mean, min, max }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readings out of order, one device in two entries, a metric given twice at one moment: one report
    /// per (device, moment) in order, the later value kept, each (device, hour) once.
    #[test]
    fn a_batch_makes_one_report_per_device_and_moment() {
        let t0: Timestamp = "2026-12-07T09:59:00Z".parse().expect("time");
        let at = |mins: i64| t0 + jiff::SignedDuration::from_mins(mins);
        let r = |mins: i64, metric: Metric, value: f64| Reading { at: at(mins), metric, value };
        let lamp: DeviceId = "lamp-1".parse().expect("id");
        let meter: DeviceId = "counter-1".parse().expect("id");
        let batch = [
            DeviceReadings {
                device: meter.clone(),
                readings: vec![r(2, Metric::CountIn, 7.0), r(0, Metric::CountIn, 5.0)],
            },
            DeviceReadings {
                device: lamp.clone(),
                readings: vec![r(1, Metric::LampOn, 1.0), r(1, Metric::CurrentA, 0.5), r(0, Metric::CurrentA, 0.4)],
            },
            DeviceReadings { device: lamp.clone(), readings: vec![r(1, Metric::CurrentA, 0.6)] },
        ];
        let (rows, hours) = reports_of(&batch);
        let hour = |mins: i64| micros(at(mins)).div_euclid(HOUR_US) * HOUR_US;
        assert_eq!(
            rows,
            vec![
                ("counter-1", micros(at(0)), r#"{"count_in":5}"#.to_owned()),
                ("counter-1", micros(at(2)), r#"{"count_in":7}"#.to_owned()),
                ("lamp-1", micros(at(0)), r#"{"current_a":0.4}"#.to_owned()),
                ("lamp-1", micros(at(1)), r#"{"lamp_on":1,"current_a":0.6}"#.to_owned()),
            ]
        );
        assert_eq!(
            hours,
            vec![("counter-1", hour(0)), ("counter-1", hour(2)), ("lamp-1", hour(0)), ("lamp-1", hour(1))]
        );
    }
}
