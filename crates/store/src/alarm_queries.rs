//! The SQL of [`crate::AlarmStore`] — alarms, their events in the global log, and the rules' memory of
//! each device with the turn to follow them — shared by both backends the way
//! [`queries`](super::queries) is: this file is compiled once per backend with that backend's `Db`,
//! `This` and `BACKEND`.

use civicgrid_core::alarm::{Alarm, Fault, RuleState, Subject};
use civicgrid_core::iot::DeviceId;
use sqlx::QueryBuilder;

use super::{BACKEND, Db, This};
use crate::shared::{advance, from_json, map_db_error, parse, to_json};
use crate::{AlarmFilter, AlarmStore, Backend, Result, RulesTurn, StoreError, micros};

/// Devices (or states) per statement: well under either backend's limit on bound values.
const CHUNK: usize = 1000;

/// Appends an alarm's event and numbers it in the global log, in the caller's transaction. PostgreSQL
/// numbers from the shared counter, whose row lock orders the commits; SQLite, with one writer at a
/// time, from the log itself. Its sequence number.
async fn append_event(tx: &mut <Db as sqlx::Database>::Connection, a: &Alarm, note: &str) -> Result<i64> {
    let at = micros(a.evidence.last().map_or(a.last_raised_at, |e| e.at));
    sqlx::query("INSERT INTO alarm_events (alarm_id, version, at, note, body) VALUES ($1, $2, $3, $4, $5)")
        .bind(a.id)
        .bind(a.version)
        .bind(at)
        .bind(note)
        .bind(to_json(a)?)
        .execute(&mut *tx)
        .await?;
    let log = match BACKEND {
        Backend::Postgres => {
            "WITH c AS (UPDATE event_counter SET last = last + 1 WHERE id = 1 RETURNING last) \
             INSERT INTO event_log (seq, stream, stream_id, version, at) SELECT c.last, 'alarm', $1, $2, $3 FROM c \
             RETURNING seq"
        }
        Backend::Sqlite => {
            "INSERT INTO event_log (stream, stream_id, version, at) VALUES ('alarm', $1, $2, $3) RETURNING seq"
        }
    };
    Ok(sqlx::query_scalar(log).bind(a.id).bind(a.version).bind(at).fetch_one(&mut *tx).await?)
}

pub(super) fn alarm_from_row((id, version, body): (i64, i64, String)) -> Result<Alarm> {
    let a: Alarm = from_json(&body)?;
    Ok(Alarm { id, version, ..a })
}

const ALARM_COLUMNS: &str = "id, version, body";

#[async_trait::async_trait]
impl AlarmStore for This {
    async fn insert_alarm(&self, a: &Alarm, note: &str) -> Result<Alarm> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO alarms (subject, fault, severity, device_id, active, case_id, suppressed_by, hold_until, \
             raised_at, last_raised_at, ended_at, version, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, '{}') RETURNING id",
        )
        .bind(a.subject.to_string())
        .bind(a.fault.as_str())
        .bind(a.severity.as_str())
        .bind(a.device.as_ref().map(DeviceId::as_str))
        .bind(i64::from(a.active))
        .bind(a.case_id)
        .bind(a.suppressed_by)
        .bind(a.hold_until.map(micros))
        .bind(micros(a.raised_at))
        .bind(micros(a.last_raised_at))
        .bind(a.ended_at.map(micros))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| map_db_error(e, "alarm"))?;
        let stored = Alarm { id, version: 1, ..a.clone() };
        sqlx::query("UPDATE alarms SET body = $1 WHERE id = $2")
            .bind(to_json(&stored)?)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let seq = append_event(&mut tx, &stored, note).await?;
        tx.commit().await?;
        // Wake the live feed (on PostgreSQL the counter's trigger tells every node as well).
        advance(&self.feed, seq);
        Ok(stored)
    }

    async fn update_alarm(&self, a: &mut Alarm, note: &str) -> Result<()> {
        let next = Alarm { version: a.version + 1, ..a.clone() };
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE alarms SET severity = $1, active = $2, case_id = $3, suppressed_by = $4, hold_until = $5, \
             last_raised_at = $6, ended_at = $7, version = $8, body = $9 WHERE id = $10 AND version = $11",
        )
        .bind(next.severity.as_str())
        .bind(i64::from(next.active))
        .bind(next.case_id)
        .bind(next.suppressed_by)
        .bind(next.hold_until.map(micros))
        .bind(micros(next.last_raised_at))
        .bind(next.ended_at.map(micros))
        .bind(next.version)
        .bind(to_json(&next)?)
        .bind(next.id)
        .bind(a.version)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict { expected: a.version });
        }
        let seq = append_event(&mut tx, &next, note).await?;
        tx.commit().await?;
        advance(&self.feed, seq);
        *a = next;
        Ok(())
    }

    async fn alarm(&self, id: i64) -> Result<Option<Alarm>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE id = $1"));
        let row: Option<(i64, i64, String)> = sqlx::query_as(sql).bind(id).fetch_optional(&self.read).await?;
        row.map(alarm_from_row).transpose()
    }

    async fn open_alarm(&self, subject: &Subject, fault: Fault) -> Result<Option<Alarm>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE subject = $1 AND fault = $2 AND ended_at IS NULL"
        ));
        // Read from the writer's side: a raise decides on what is committed now.
        let row: Option<(i64, i64, String)> = sqlx::query_as(sql)
            .bind(subject.to_string())
            .bind(fault.as_str())
            .fetch_optional(&mut *self.write_conn().await?)
            .await?;
        row.map(alarm_from_row).transpose()
    }

    async fn last_ended_alarm(&self, subject: &Subject, fault: Fault) -> Result<Option<Alarm>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE subject = $1 AND fault = $2 AND ended_at IS NOT NULL \
             ORDER BY ended_at DESC LIMIT 1"
        ));
        let row: Option<(i64, i64, String)> =
            sqlx::query_as(sql).bind(subject.to_string()).bind(fault.as_str()).fetch_optional(&self.read).await?;
        row.map(alarm_from_row).transpose()
    }

    async fn alarms(&self, f: &AlarmFilter) -> Result<Vec<Alarm>> {
        let mut q: QueryBuilder<Db> = QueryBuilder::new("SELECT id, version, body FROM alarms WHERE 1 = 1");
        if f.open_only {
            q.push(" AND ended_at IS NULL");
        }
        if f.active_only {
            q.push(" AND active = 1");
        }
        if let Some(s) = &f.subject {
            q.push(" AND subject = ").push_bind(s.to_string());
        }
        if let Some(c) = f.case_id {
            q.push(" AND case_id = ").push_bind(c);
        }
        if let Some(s) = f.suppressed_by {
            q.push(" AND suppressed_by = ").push_bind(s);
        }
        q.push(" ORDER BY last_raised_at DESC, id DESC LIMIT ").push_bind(i64::from(f.limit.clamp(1, 1000)));
        let rows: Vec<(i64, i64, String)> = q.build_query_as().fetch_all(&self.read).await?;
        rows.into_iter().map(alarm_from_row).collect()
    }

    async fn rule_states(&self, devices: &[DeviceId]) -> Result<Vec<(DeviceId, String, RuleState)>> {
        let mut out = Vec::new();
        for chunk in devices.chunks(CHUNK) {
            let mut q: QueryBuilder<Db> =
                QueryBuilder::new("SELECT device_id, rule_id, state FROM rule_states WHERE device_id IN (");
            let mut ids = q.separated(", ");
            for d in chunk {
                ids.push_bind(d.as_str());
            }
            q.push(") ORDER BY device_id, rule_id");
            let rows: Vec<(String, String, String)> = q.build_query_as().fetch_all(&self.read).await?;
            for (device, rule, state) in rows {
                out.push((parse(&device)?, rule, from_json(&state)?));
            }
        }
        Ok(out)
    }

    async fn put_rule_states(&self, states: &[(DeviceId, String, RuleState)]) -> Result<()> {
        if states.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        upsert_rule_states(&mut tx, states).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rules_turn(&self) -> Result<RulesTurn> {
        if BACKEND != Backend::Postgres {
            return Ok(RulesTurn::free());
        }
        // Held before the lock is asked for, so that a caller giving up while it waits still ends
        // the transaction (and with it the lock, once granted).
        let mut held = RulesTx(Some(self.write.begin().await?));
        if let Some(tx) = held.0.as_mut() {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('civicgrid: rule followers', 0))")
                .execute(&mut **tx)
                .await?;
        }
        Ok(RulesTurn::holding(held))
    }
}

/// The transaction that holds a rules turn's lock; dropping it rolls the transaction back at once
/// (on the runtime, when there is one), which ends the lock.
struct RulesTx(Option<sqlx::Transaction<'static, Db>>);

impl Drop for RulesTx {
    fn drop(&mut self) {
        let Some(tx) = self.0.take() else { return };
        // Without a runtime, sqlx rolls a dropped transaction back on the connection's next use.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "a rules turn's transaction did not end cleanly");
                }
            });
        }
    }
}

/// Keeps what rules remember of devices, in the caller's transaction.
pub(super) async fn upsert_rule_states(
    tx: &mut <Db as sqlx::Database>::Connection,
    states: &[(DeviceId, String, RuleState)],
) -> Result<()> {
    for chunk in states.chunks(CHUNK) {
        let json: Vec<String> = chunk.iter().map(|(_, _, s)| to_json(s)).collect::<Result<_>>()?;
        let mut q: QueryBuilder<Db> = QueryBuilder::new("INSERT INTO rule_states (device_id, rule_id, state) ");
        q.push_values(chunk.iter().zip(&json), |mut b, ((d, rule, _), state)| {
            b.push_bind(d.as_str()).push_bind(rule.as_str()).push_bind(state.as_str());
        });
        q.push(" ON CONFLICT (device_id, rule_id) DO UPDATE SET state = excluded.state");
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}
