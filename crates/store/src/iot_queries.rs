//! The SQL of [`crate::DeviceStore`] — devices, their ingest tokens, latest values, history and its
//! 5-minute and hourly summaries — shared
//! by both backends the way [`queries`](super::queries) is: this file is compiled once per backend with
//! that backend's `Db` and `This`.

use civicgrid_core::iot::{Device, DeviceId, Metric, Reading, Rollup, RollupSpan, summarise};
use jiff::Timestamp;
use sqlx::QueryBuilder;

use super::{Db, This};
use crate::rows::ts;
use crate::shared::parse;
use crate::{DeviceStore, Result, micros};

const DEVICE_COLUMNS: &str = "id, kind, model, firmware, component_id, cabinet, feeder, checkpoint, \
    expected_interval_s, created_at, retired_at, last_seen_at";
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
);

fn device_from_row(r: DeviceRow) -> Result<Device> {
    let (id, kind, model, firmware, component, cabinet, feeder, checkpoint, interval, created, retired, seen) = r;
    Ok(Device {
        id: parse(&id)?,
        kind: parse(&kind)?,
        model,
        firmware,
        component_id: component.as_deref().map(parse).transpose()?,
        cabinet: cabinet.as_deref().map(parse).transpose()?,
        feeder,
        checkpoint,
        expected_interval_s: u32::try_from(interval).unwrap_or(u32::MAX),
        created_at: ts(created)?,
        retired_at: retired.map(ts).transpose()?,
        last_seen_at: seen.map(ts).transpose()?,
    })
}

fn reading_from_row((metric, at, value): (String, i64, f64)) -> Result<Reading> {
    Ok(Reading { at: ts(at)?, metric: parse(&metric)?, value })
}

#[async_trait::async_trait]
impl DeviceStore for This {
    async fn put_device(&self, d: &Device) -> Result<()> {
        sqlx::query(
            "INSERT INTO devices (id, kind, model, firmware, component_id, cabinet, feeder, checkpoint, \
             expected_interval_s, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, model = excluded.model, \
             firmware = excluded.firmware, component_id = excluded.component_id, cabinet = excluded.cabinet, \
             feeder = excluded.feeder, checkpoint = excluded.checkpoint, \
             expected_interval_s = excluded.expected_interval_s, retired_at = excluded.retired_at",
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
        .execute(&self.write)
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
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn device_by_token(&self, token_hash: &str) -> Result<Option<Device>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE token_hash = $1"));
        let row: Option<DeviceRow> = sqlx::query_as(sql).bind(token_hash).fetch_optional(&self.read).await?;
        row.map(device_from_row).transpose()
    }

    async fn record_readings(&self, id: &DeviceId, readings: &[Reading], heard_at: Timestamp) -> Result<()> {
        if readings.is_empty() {
            return Ok(());
        }
        let mut tx = self.write.begin().await?;
        let mut history: QueryBuilder<Db> = QueryBuilder::new("INSERT INTO telemetry (device_id, metric, at, value) ");
        history.push_values(readings, |mut b, r| {
            b.push_bind(id.as_str()).push_bind(r.metric.as_str()).push_bind(micros(r.at)).push_bind(r.value);
        });
        history.build().execute(&mut *tx).await?;
        // The newest reading of each metric in this batch becomes its latest value, unless a newer one
        // arrived before it.
        let mut newest: Vec<&Reading> = Vec::new();
        for r in readings {
            match newest.iter_mut().find(|n| n.metric == r.metric) {
                Some(n) if n.at <= r.at => *n = r,
                Some(_) => {}
                None => newest.push(r),
            }
        }
        let mut latest: QueryBuilder<Db> =
            QueryBuilder::new("INSERT INTO telemetry_latest (device_id, metric, value, at) ");
        latest.push_values(&newest, |mut b, r| {
            b.push_bind(id.as_str()).push_bind(r.metric.as_str()).push_bind(r.value).push_bind(micros(r.at));
        });
        latest.push(
            " ON CONFLICT (device_id, metric) DO UPDATE SET value = excluded.value, at = excluded.at \
             WHERE excluded.at >= telemetry_latest.at",
        );
        latest.build().execute(&mut *tx).await?;
        let mut rollups: QueryBuilder<Db> = QueryBuilder::new(
            "INSERT INTO telemetry_rollup (device_id, metric, span_s, start_at, n, total, low, high) ",
        );
        rollups.push_values(summarise(readings), |mut b, s| {
            b.push_bind(id.as_str())
                .push_bind(s.metric.as_str())
                .push_bind(s.span.seconds())
                .push_bind(micros(s.start))
                .push_bind(i64::try_from(s.count).unwrap_or(i64::MAX))
                .push_bind(s.sum)
                .push_bind(s.min)
                .push_bind(s.max);
        });
        rollups.push(
            " ON CONFLICT (device_id, metric, span_s, start_at) DO UPDATE SET n = telemetry_rollup.n + excluded.n, \
             total = telemetry_rollup.total + excluded.total, \
             low = CASE WHEN excluded.low < telemetry_rollup.low THEN excluded.low ELSE telemetry_rollup.low END, \
             high = CASE WHEN excluded.high > telemetry_rollup.high THEN excluded.high ELSE telemetry_rollup.high END",
        );
        rollups.build().execute(&mut *tx).await?;
        sqlx::query(
            "UPDATE devices SET last_seen_at = $1 WHERE id = $2 AND (last_seen_at IS NULL OR last_seen_at < $1)",
        )
        .bind(micros(heard_at))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn latest_readings(&self, id: &DeviceId) -> Result<Vec<Reading>> {
        let rows: Vec<(String, i64, f64)> =
            sqlx::query_as("SELECT metric, at, value FROM telemetry_latest WHERE device_id = $1 ORDER BY metric")
                .bind(id.as_str())
                .fetch_all(&self.read)
                .await?;
        rows.into_iter().map(reading_from_row).collect()
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
        rows.into_iter()
            .map(|(start, n, total, low, high)| {
                let count = u64::try_from(n).unwrap_or(0);
                let mean = if count == 0 { 0.0 } else { total / count as f64 };
                Ok(Rollup { start: ts(start)?, count, mean, min: low, max: high })
            })
            .collect()
    }

    async fn purge_telemetry(&self, raw_before: Timestamp, five_minutes_before: Timestamp) -> Result<u64> {
        let raw =
            sqlx::query("DELETE FROM telemetry WHERE at < $1").bind(micros(raw_before)).execute(&self.write).await?;
        let five = sqlx::query("DELETE FROM telemetry_rollup WHERE span_s = $1 AND start_at < $2")
            .bind(RollupSpan::FiveMinutes.seconds())
            .bind(micros(five_minutes_before))
            .execute(&self.write)
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
        let rows: Vec<(String, i64, f64)> = sqlx::query_as(
            "SELECT metric, at, value FROM telemetry WHERE device_id = $1 AND metric = $2 AND at >= $3 AND at < $4 \
             ORDER BY at LIMIT $5",
        )
        .bind(id.as_str())
        .bind(metric.as_str())
        .bind(micros(from))
        .bind(micros(to))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(reading_from_row).collect()
    }
}
