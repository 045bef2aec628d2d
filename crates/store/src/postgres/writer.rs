//! PostgreSQL's side of the group-commit writer: the connection a batch runs on and the statements of
//! [`BatchTx`], each sending as many rows as it can at once (every statement is a round trip).

use civicgrid_core::case::{Case, CaseEvent};
use jiff::Timestamp;
use sqlx::{PgPool, QueryBuilder};

use crate::batch::{self, BatchTx};
use crate::rows::{CaseInsert, KeyTarget};
use crate::shared::{CASE_COLUMNS, LogRow, StatusColumns, map_db_error};
use crate::writer::{ApplyBatch, WriteOp, Written};
use crate::{IdempotencyKey, Result, StoreError};

/// The writer's pool, the connection it keeps between batches, and whom it tells about commits.
pub(crate) struct PgApplier {
    pool: PgPool,
    /// The connection the writer keeps between batches.
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    /// Told about every commit.
    feed: tokio::sync::watch::Sender<i64>,
}

impl PgApplier {
    /// A writer on `pool` that tells `feed` about its commits.
    pub(crate) fn new(pool: PgPool, feed: tokio::sync::watch::Sender<i64>) -> Self {
        Self { pool, conn: None, feed }
    }
}

impl ApplyBatch for PgApplier {
    async fn apply_batch(&mut self, ops: &[WriteOp]) -> Result<Vec<Result<Written>>> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            held => held.insert(self.pool.acquire().await?),
        };
        let outcome = async {
            let mut tx = sqlx::Acquire::begin(&mut **conn).await?;
            let applied = batch::apply(&mut PgBatch(&mut tx), ops).await?;
            tx.commit().await?;
            Ok(applied)
        }
        .await;
        if matches!(outcome, Err(StoreError::Database(_))) {
            // The connection may be broken (e.g. the server restarted): take a fresh one next time.
            self.conn = None;
        }
        let (outcomes, last) = outcome?;
        if let Some(last) = last {
            crate::shared::advance(&self.feed, last);
        }
        Ok(outcomes)
    }
}

/// A batch's statements on one PostgreSQL transaction. Rows go in as few statements as they can: every
/// statement is a round trip.
struct PgBatch<'c>(&'c mut sqlx::PgConnection);

/// Rows per multi-row INSERT (21 binds a row; PostgreSQL allows 65,535).
const ROWS_PER_INSERT: usize = 1000;

impl BatchTx for PgBatch<'_> {
    async fn find_key(&mut self, k: &IdempotencyKey, target: KeyTarget) -> Result<Option<(String, Option<i64>)>> {
        Ok(sqlx::query_as(target.find_sql()).bind(&k.scope).bind(&k.key).fetch_optional(&mut *self.0).await?)
    }

    async fn store_key(&mut self, k: &IdempotencyKey, target: KeyTarget, id: i64, at: Timestamp) -> Result<()> {
        sqlx::query(target.store_sql())
            .bind(&k.scope)
            .bind(&k.key)
            .bind(&k.fingerprint)
            .bind(id)
            .bind(crate::micros(at))
            .execute(&mut *self.0)
            .await
            .map_err(|e| map_db_error(e, "idempotency_key"))?;
        Ok(())
    }

    async fn case(&mut self, id: i64) -> Result<Case> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = $1"));
        crate::shared::case_from_row(sqlx::query_as(sql).bind(id).fetch_one(&mut *self.0).await?)
    }

    async fn bump_counter(&mut self, day: &str, n: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(batch::sql::BUMP_COUNTER).bind(day).bind(n).fetch_one(&mut *self.0).await?)
    }

    async fn insert_cases(&mut self, rows: &[CaseInsert<'_>]) -> Result<Vec<i64>> {
        let mut ids = std::collections::HashMap::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut qb: QueryBuilder<sqlx::Postgres> = QueryBuilder::new(batch::sql::INSERT_CASE);
            qb.push_values(chunk, |mut b, r| {
                let (f, st) = (r.facts, r.cols);
                b.push_bind(r.number.as_str())
                    .push_bind(f.matter.to_string())
                    .push_bind(f.source.as_str())
                    .push_bind(f.grid.to_string())
                    .push_bind(f.micro_grid.to_string())
                    .push_bind(f.reporter.user_id)
                    .push_bind(crate::micros(f.reported_at))
                    .push_bind(f.component_id.map(|c| c.to_string()))
                    .push_bind(r.facts_json)
                    .push_bind(st.state)
                    .push_bind(st.version)
                    .push_bind(st.lead_dept.as_deref())
                    .push_bind(st.co_depts.as_str())
                    .push_bind(st.due_at)
                    .push_bind(st.handle_due_at)
                    .push_bind(st.replied_at)
                    .push_bind(st.closed_at)
                    .push_bind(st.close_type)
                    .push_bind(st.escalation_level)
                    .push_bind(st.updated_at)
                    .push_bind(st.json.as_str());
            });
            qb.push(" RETURNING id, number");
            let returned: Vec<(i64, String)> =
                qb.build_query_as().fetch_all(&mut *self.0).await.map_err(|e| map_db_error(e, "number"))?;
            // RETURNING promises no order: match the ids back by number.
            ids.extend(returned.into_iter().map(|(id, number)| (number, id)));
        }
        rows.iter()
            .map(|r| ids.get(&r.number).copied().ok_or_else(|| StoreError::Corrupt("insert returned no id".into())))
            .collect()
    }

    async fn case_status(&mut self, id: i64) -> Result<Option<(i64, String)>> {
        Ok(sqlx::query_as(batch::sql::CASE_STATUS).bind(id).fetch_optional(&mut *self.0).await?)
    }

    async fn update_status(&mut self, id: i64, expected: i64, st: &StatusColumns) -> Result<()> {
        sqlx::query(batch::sql::UPDATE_STATUS)
            .bind(st.state)
            .bind(st.version)
            .bind(st.lead_dept.as_deref())
            .bind(st.co_depts.as_str())
            .bind(st.due_at)
            .bind(st.handle_due_at)
            .bind(st.replied_at)
            .bind(st.closed_at)
            .bind(st.close_type)
            .bind(st.escalation_level)
            .bind(st.updated_at)
            .bind(st.json.as_str())
            .bind(id)
            .bind(expected)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn add_departments(&mut self, rows: &[(String, i64)]) -> Result<()> {
        let depts: Vec<&str> = rows.iter().map(|(d, _)| d.as_str()).collect();
        let ids: Vec<i64> = rows.iter().map(|(_, id)| *id).collect();
        sqlx::query("INSERT INTO case_departments (dept, case_id) SELECT * FROM unnest($1::text[], $2::bigint[])")
            .bind(depts)
            .bind(ids)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn remove_department(&mut self, dept: &str, case_id: i64) -> Result<()> {
        sqlx::query(batch::sql::REMOVE_DEPARTMENT).bind(dept).bind(case_id).execute(&mut *self.0).await?;
        Ok(())
    }

    async fn link_attachment(&mut self, case_id: i64, attachment_id: i64) -> Result<bool> {
        let done =
            sqlx::query(batch::sql::LINK_ATTACHMENT).bind(case_id).bind(attachment_id).execute(&mut *self.0).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_events(&mut self, rows: &[(i64, &CaseEvent, &str)]) -> Result<()> {
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut qb: QueryBuilder<sqlx::Postgres> = QueryBuilder::new(batch::sql::INSERT_EVENT);
            qb.push_values(chunk, |mut b, (id, e, body)| {
                b.push_bind(*id)
                    .push_bind(e.seq)
                    .push_bind(crate::micros(e.at))
                    .push_bind(e.actor.user_id.unwrap_or(0))
                    .push_bind(e.action.name())
                    .push_bind(e.to.as_str())
                    .push_bind(*body);
            });
            qb.build().execute(&mut *self.0).await.map_err(|e| map_db_error(e, "event"))?;
        }
        Ok(())
    }

    /// Numbers the rows from the counter row. The row stays locked until this transaction commits, so
    /// another node's batch gets its numbers only after these are visible; a trigger on the row sends
    /// `NOTIFY` with the new last number, delivered at commit. One round trip: take the counter, insert
    /// the rows numbered from it, answer the last number.
    async fn append_log(&mut self, rows: &[LogRow]) -> Result<i64> {
        let n = i64::try_from(rows.len()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let ids: Vec<i64> = rows.iter().map(|r| r.stream_id).collect();
        let versions: Vec<i64> = rows.iter().map(|r| r.version).collect();
        let ats: Vec<i64> = rows.iter().map(|r| r.at).collect();
        let last: i64 = sqlx::query_scalar(
            "WITH c AS (UPDATE event_counter SET last = last + $1 WHERE id = 1 RETURNING last), \
             ins AS (INSERT INTO event_log (seq, stream, stream_id, version, at) \
                     SELECT c.last - $1 + t.ord, $2, t.stream_id, t.version, t.at \
                     FROM c, unnest($3::bigint[], $4::bigint[], $5::bigint[]) WITH ORDINALITY AS t(stream_id, version, at, ord)) \
             SELECT last FROM c",
        )
        .bind(n)
        .bind(crate::Stream::Case.as_str())
        .bind(ids)
        .bind(versions)
        .bind(ats)
        .fetch_one(&mut *self.0)
        .await?;
        Ok(last)
    }
}
