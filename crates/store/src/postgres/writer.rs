//! PostgreSQL's side of the group-commit writer: the connection a batch runs on and the statements of
//! [`BatchTx`], each sending as many rows as it can at once (every statement is a round trip).

use civicgrid_core::case::{Case, CaseEvent};
use jiff::Timestamp;
use sqlx::{PgPool, QueryBuilder};

use crate::batch::{self, BatchTx};
use crate::rows::{CaseInsert, KeyTarget};
use crate::shared::{CASE_COLUMNS, StatusColumns, map_db_error};
use crate::writer::{ApplyBatch, WriteOp, Written};
use crate::{IdempotencyKey, Result, StoreError};

/// The writer's pool, the connection it keeps between batches, and whom it tells about commits.
pub(crate) struct PgApplier {
    pool: PgPool,
    /// The connection the writer keeps between batches.
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    /// Told about every commit.
    feed: tokio::sync::watch::Sender<i64>,
    /// Told the case events of every commit.
    recent: std::sync::Arc<crate::recent::RecentLog>,
}

impl PgApplier {
    /// A writer on `pool` that tells `feed` (and `recent`) about its commits.
    pub(crate) fn new(
        pool: PgPool,
        feed: tokio::sync::watch::Sender<i64>,
        recent: std::sync::Arc<crate::recent::RecentLog>,
    ) -> Self {
        Self { pool, conn: None, feed, recent }
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
            let applied = batch::apply(&mut PgBatch(&mut tx), ops, self.recent.is_on()).await?;
            tx.commit().await?;
            Ok(applied)
        }
        .await;
        if matches!(outcome, Err(StoreError::Database(_))) {
            // The connection may be broken (e.g. the server restarted): take a fresh one next time.
            self.conn = None;
        }
        Ok(outcome?.publish(&self.recent, &self.feed))
    }
}

/// A batch's statements on one PostgreSQL transaction. Rows go in as few statements as they can: every
/// statement is a round trip.
struct PgBatch<'c>(&'c mut sqlx::PgConnection);

/// Rows per multi-row INSERT (21 binds a row; PostgreSQL allows 65,535).
const ROWS_PER_INSERT: usize = 1000;

impl BatchTx for PgBatch<'_> {
    async fn find_key(&mut self, k: &IdempotencyKey, target: KeyTarget) -> Result<Option<(String, Option<i64>)>> {
        super::queries::find_key(self.0, k, target).await
    }

    async fn store_key(&mut self, k: &IdempotencyKey, target: KeyTarget, id: i64, at: Timestamp) -> Result<()> {
        super::queries::store_key(self.0, k, target, id, at).await
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
                    .push_bind(f.location.lon)
                    .push_bind(f.location.lat)
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
                    .push_bind(st.merged_into)
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

    async fn update_status(&mut self, id: i64, expected: i64, st: &StatusColumns) -> Result<bool> {
        let done = sqlx::query(batch::sql::UPDATE_STATUS)
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
            .bind(st.merged_into)
            .bind(st.updated_at)
            .bind(st.json.as_str())
            .bind(id)
            .bind(expected)
            .execute(&mut *self.0)
            .await?;
        Ok(done.rows_affected() == 1)
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

    /// One statement, one round trip: insert the events, take the counter, and add the log rows
    /// numbered from it. The counter row stays locked until this transaction commits, so another node's
    /// batch gets its numbers only after these are visible; a trigger on the row sends `NOTIFY` with the
    /// new last number, delivered at commit.
    async fn insert_events(&mut self, rows: &[(i64, &CaseEvent, &str)]) -> Result<i64> {
        let n = i64::try_from(rows.len()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let ids: Vec<i64> = rows.iter().map(|(id, _, _)| *id).collect();
        let seqs: Vec<i64> = rows.iter().map(|(_, e, _)| e.seq).collect();
        let ats: Vec<i64> = rows.iter().map(|(_, e, _)| crate::micros(e.at)).collect();
        let actors: Vec<i64> = rows.iter().map(|(_, e, _)| e.actor.user_id.unwrap_or(0)).collect();
        let actions: Vec<&str> = rows.iter().map(|(_, e, _)| e.action.name()).collect();
        let states: Vec<&str> = rows.iter().map(|(_, e, _)| e.to.as_str()).collect();
        let bodies: Vec<&str> = rows.iter().map(|(_, _, body)| *body).collect();
        let last: i64 = sqlx::query_scalar(
            "WITH t AS (SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], \
                        $7::text[], $8::text[]) WITH ORDINALITY AS t(case_id, seq, at, actor, action, to_state, body, ord)), \
             ev AS (INSERT INTO case_events (case_id, seq, at, actor_user_id, action, to_state, body) \
                    SELECT case_id, seq, at, actor, action, to_state, body FROM t), \
             c AS (UPDATE event_counter SET last = last + $1 WHERE id = 1 RETURNING last), \
             log AS (INSERT INTO event_log (seq, stream, stream_id, version, at) \
                     SELECT c.last - $1 + t.ord, $9, t.case_id, t.seq, t.at FROM c, t) \
             SELECT last FROM c",
        )
        .bind(n)
        .bind(ids)
        .bind(seqs)
        .bind(ats)
        .bind(actors)
        .bind(actions)
        .bind(states)
        .bind(bodies)
        .bind(crate::Stream::Case.as_str())
        .fetch_one(&mut *self.0)
        .await
        .map_err(|e| map_db_error(e, "event"))?;
        Ok(last)
    }
}
