//! The SQL of [`crate::KpiStore`] — the live KPI counters and what their rebuild reads — shared by both
//! backends the way [`queries`](super::queries) is: this file is compiled once per backend with that
//! backend's `Db` and `This`.

use civicgrid_core::case::{CaseEvent, CaseFacts, CaseId};
use civicgrid_core::kpi::projection::{Bucket, Counters, Dim, KpiFacts, RowKey};
use sqlx::{QueryBuilder, Row};

use super::{Db, This};
use crate::shared::{from_json, parse};
use crate::{KpiStore, Result};

/// Rows per INSERT: 26 values each, well under both backends' limit on bound values.
const ROWS_PER_INSERT: usize = 500;

fn counter_columns() -> String {
    Counters::NAMES.join(", ")
}

/// Adds `rows` to the counters (or, with `replace`, writes them as they are) inside `tx`.
async fn upsert(tx: &mut <Db as sqlx::Database>::Connection, rows: &[(RowKey, Counters)]) -> Result<()> {
    let add: Vec<String> = Counters::NAMES.iter().map(|c| format!("{c} = kpi_counts.{c} + excluded.{c}")).collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut qb: QueryBuilder<Db> =
            QueryBuilder::new(format!("INSERT INTO kpi_counts (dim, bucket, period, key, {}) ", counter_columns()));
        qb.push_values(chunk, |mut b, (k, c)| {
            b.push_bind(k.dim.as_str())
                .push_bind(k.bucket.as_str())
                .push_bind(k.period.clone())
                .push_bind(k.key.clone());
            for v in c.values() {
                b.push_bind(v);
            }
        });
        qb.push(format!(" ON CONFLICT (dim, bucket, period, key) DO UPDATE SET {}", add.join(", ")));
        qb.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// A row of a label (column 0) and the counters after it.
fn labelled_counters(r: &<Db as sqlx::Database>::Row) -> Result<(String, Counters)> {
    let values: Vec<i64> =
        (1..=Counters::NAMES.len()).map(|i| r.try_get::<i64, _>(i)).collect::<std::result::Result<_, _>>()?;
    Ok((r.try_get::<String, _>(0)?, Counters::from_values(&values)))
}

#[async_trait::async_trait]
impl KpiStore for This {
    async fn kpi_advance(&self, consumer: &str, from: i64, to: i64, rows: &[(RowKey, Counters)]) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let moved = sqlx::query("UPDATE log_consumers SET position = $1 WHERE name = $2 AND position = $3")
            .bind(to)
            .bind(consumer.to_owned())
            .bind(from)
            .execute(&mut *tx)
            .await?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        upsert(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn kpi_replace(&self, consumer: &str, position: i64, rows: &[(RowKey, Counters)]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM kpi_counts").execute(&mut *tx).await?;
        upsert(&mut tx, rows).await?;
        sqlx::query(
            "INSERT INTO log_consumers (name, position) VALUES ($1, $2) ON CONFLICT (name) \
             DO UPDATE SET position = excluded.position",
        )
        .bind(consumer.to_owned())
        .bind(position)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn kpi_totals(&self, dim: Dim, bucket: Bucket, from: &str, to: &str) -> Result<Vec<(String, Counters)>> {
        let sums: Vec<String> = Counters::NAMES.iter().map(|c| format!("CAST(SUM({c}) AS BIGINT)")).collect();
        let sql = format!(
            "SELECT key, {} FROM kpi_counts WHERE dim = $1 AND bucket = $2 AND period >= $3 AND period <= $4 \
             GROUP BY key ORDER BY key",
            sums.join(", ")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(dim.as_str())
            .bind(bucket.as_str())
            .bind(from.to_owned())
            .bind(to.to_owned())
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(labelled_counters).collect()
    }

    async fn kpi_series(
        &self,
        dim: Dim,
        bucket: Bucket,
        key: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, Counters)>> {
        let sql = format!(
            "SELECT period, {} FROM kpi_counts WHERE dim = $1 AND bucket = $2 AND key = $3 AND period >= $4 \
             AND period <= $5 ORDER BY period",
            counter_columns()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(dim.as_str())
            .bind(bucket.as_str())
            .bind(key.to_owned())
            .bind(from.to_owned())
            .bind(to.to_owned())
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(labelled_counters).collect()
    }

    async fn kpi_dump(&self) -> Result<Vec<(RowKey, Counters)>> {
        let sql = format!(
            "SELECT dim, bucket, period, key, {} FROM kpi_counts ORDER BY dim, bucket, period, key",
            counter_columns()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.read).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let bucket = match r.try_get::<String, _>(1)?.as_str() {
                "day" => Bucket::Day,
                _ => Bucket::Month,
            };
            let values: Vec<i64> = (4..4 + Counters::NAMES.len())
                .map(|i| r.try_get::<i64, _>(i))
                .collect::<std::result::Result<_, _>>()?;
            let key =
                RowKey { dim: parse(&r.try_get::<String, _>(0)?)?, bucket, period: r.try_get(2)?, key: r.try_get(3)? };
            out.push((key, Counters::from_values(&values)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn logged_versions(&self, upto: i64) -> Result<Vec<(CaseId, i64)>> {
        Ok(sqlx::query_as(
            "SELECT stream_id, MAX(version) FROM event_log WHERE seq <= $1 AND stream = 'case' GROUP BY stream_id",
        )
        .bind(upto)
        .fetch_all(&self.read)
        .await?)
    }

    async fn case_histories(&self, after: CaseId, limit: u32) -> Result<Vec<(CaseId, CaseFacts, Vec<CaseEvent>)>> {
        let cases: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, facts FROM cases WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(i64::from(limit.clamp(1, 5000)))
                .fetch_all(&self.read)
                .await?;
        let (Some(first), Some(last)) = (cases.first(), cases.last()) else { return Ok(Vec::new()) };
        let events: Vec<(i64, String)> = sqlx::query_as(
            "SELECT case_id, body FROM case_events WHERE case_id >= $1 AND case_id <= $2 ORDER BY case_id, seq",
        )
        .bind(first.0)
        .bind(last.0)
        .fetch_all(&self.read)
        .await?;
        assemble(cases, events)
    }

    async fn histories_of(&self, ids: &[CaseId]) -> Result<Vec<(CaseId, CaseFacts, Vec<CaseEvent>)>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in distinct(ids).chunks(super::queries::IDS_PER_QUERY) {
            let cases = self.facts_json(chunk).await?;
            let mut q: QueryBuilder<Db> = QueryBuilder::new("SELECT case_id, body FROM case_events WHERE case_id IN (");
            super::queries::push_list(&mut q, chunk.iter().copied());
            q.push(") ORDER BY case_id, seq");
            let events: Vec<(i64, String)> = q.build_query_as().fetch_all(&self.read).await?;
            out.extend(assemble(cases, events)?);
        }
        Ok(out)
    }

    async fn facts_of(&self, ids: &[CaseId]) -> Result<Vec<(CaseId, KpiFacts)>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in distinct(ids).chunks(super::queries::IDS_PER_QUERY) {
            for (id, grid, matter, source, reporter, reported_at) in self.kpi_columns(chunk).await? {
                let facts = KpiFacts {
                    grid: parse(&grid)?,
                    matter: parse(&matter)?,
                    source: crate::rows::source_column(&source)?,
                    reporter_user_id: reporter,
                    reported_at: crate::rows::ts(reported_at)?,
                };
                out.push((id, facts));
            }
        }
        Ok(out)
    }
}

/// A case's id and the columns of its [`KpiFacts`].
type KpiColumns = (i64, String, String, String, Option<i64>, i64);

impl This {
    /// The facts JSON of the cases `ids` (at most one query's worth), in id order.
    async fn facts_json(&self, ids: &[CaseId]) -> Result<Vec<(i64, String)>> {
        let mut q: QueryBuilder<Db> = QueryBuilder::new("SELECT id, facts FROM cases WHERE id IN (");
        super::queries::push_list(&mut q, ids.iter().copied());
        q.push(") ORDER BY id");
        Ok(q.build_query_as().fetch_all(&self.read).await?)
    }

    /// The columns of the cases `ids` (at most one query's worth) that their KPI facts are made of, in
    /// id order.
    async fn kpi_columns(&self, ids: &[CaseId]) -> Result<Vec<KpiColumns>> {
        let mut q: QueryBuilder<Db> = QueryBuilder::new(
            "SELECT id, grid, matter, source, reporter_user_id, reported_at FROM cases WHERE id IN (",
        );
        super::queries::push_list(&mut q, ids.iter().copied());
        q.push(") ORDER BY id");
        Ok(q.build_query_as().fetch_all(&self.read).await?)
    }
}

/// `ids` without repeats, in order.
fn distinct(ids: &[CaseId]) -> Vec<CaseId> {
    ids.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect()
}

/// Cases (id, facts JSON) and their events (case id, event JSON), both in case order, as histories.
fn assemble(cases: Vec<(i64, String)>, events: Vec<(i64, String)>) -> Result<Vec<(CaseId, CaseFacts, Vec<CaseEvent>)>> {
    let mut events = events.into_iter().peekable();
    let mut out = Vec::with_capacity(cases.len());
    for (id, facts) in cases {
        // Events of a case not read (created after the case query) are skipped.
        while events.next_if(|(c, _)| *c < id).is_some() {}
        let mut history = Vec::new();
        while let Some((_, body)) = events.next_if(|(c, _)| *c == id) {
            history.push(from_json(&body)?);
        }
        out.push((id, from_json(&facts)?, history));
    }
    Ok(out)
}
