//! SQLite's group-commit writer: one connection, opened with rusqlite on a thread of its own, running
//! each batch as one `BEGIN IMMEDIATE` transaction of cached prepared statements.
//!
//! sqlx runs every SQLite connection on a worker thread and each statement is a message to it and an
//! answer back; a batch of a few hundred case writes is a few thousand statements, so those hops were
//! most of the writer's time. Here a statement is a function call. Reads and other writes (jobs,
//! sessions, reference data) stay on sqlx's pools. Readers never wait (WAL); the other writes take
//! turns with this thread's batches at the store's write gate ([`crate::gate`]), in the order they came.

use std::sync::LazyLock;
use std::time::Duration;

use civicgrid_core::case::{Case, CaseEvent};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, ToSql, TransactionBehavior, params, params_from_iter};

use crate::batch::{self, BatchTx, sql};
use crate::gate::WriteGate;
use crate::recent::RecentLog;
use crate::rows::{CaseInsert, KeyTarget};
use crate::shared::{CASE_COLUMNS, StatusColumns, case_from_row};
use crate::writer::{ApplyBatch, Queue, WriteOp, Written};
use crate::{IdempotencyKey, Result, SqliteSync, StoreError, micros};

/// The writer's connection and whom it tells about commits.
pub(crate) struct SqliteApplier {
    conn: Connection,
    /// Told the last event-log number of every commit.
    feed: tokio::sync::watch::Sender<i64>,
    /// Told the case events of every commit.
    recent: std::sync::Arc<RecentLog>,
    /// Taken for each batch, shared with the store's pool of other writes.
    gate: WriteGate,
}

impl SqliteApplier {
    /// Opens the writer's connection to the (already migrated, WAL) database at `path`.
    ///
    /// It checkpoints rarely: copying WAL pages into the database file sits on the commit path, so the
    /// store's background checkpointer does most of it. This connection's own checkpoint every 4,000
    /// pages (16 MiB) then finds little left to copy, and lets the next commit start the WAL over, so
    /// it stays small under sustained load.
    pub(crate) fn open(
        path: &str,
        sync: SqliteSync,
        feed: tokio::sync::watch::Sender<i64>,
        recent: std::sync::Arc<RecentLog>,
        gate: WriteGate,
    ) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let synchronous = match sync {
            SqliteSync::Full => "FULL",
            SqliteSync::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.pragma_update(None, "journal_size_limit", 67_108_864)?;
        conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(Self { conn, feed, recent, gate })
    }

    /// Starts the writer thread serving `queue`. It ends when every writer handle is dropped.
    pub(crate) fn spawn(self, queue: Queue) -> Result<()> {
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || crate::writer::run_blocking(self, queue))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(())
    }
}

impl ApplyBatch for SqliteApplier {
    async fn apply_batch(&mut self, ops: &[WriteOp]) -> Result<Vec<Result<Written>>> {
        // This thread is outside the runtime, so it may block for its turn; writes queue meanwhile and
        // join the batch after this one.
        let _turn = self.gate.blocking_turn();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied = batch::apply(&mut SqliteBatch(&tx), ops, self.recent.is_on()).await?;
        tx.commit()?;
        Ok(applied.publish(&self.recent, &self.feed))
    }
}

/// A batch's statements on the writer's open transaction. Every primitive completes before it returns,
/// so the batch's future never waits.
struct SqliteBatch<'t>(&'t rusqlite::Transaction<'t>);

/// One case row: [`sql::INSERT_CASE`] with its 24 values.
static INSERT_CASE_ROW: LazyLock<String> =
    LazyLock::new(|| format!("{}VALUES ({})", sql::INSERT_CASE, placeholders(24)));
/// One event row.
static INSERT_EVENT_ROW: LazyLock<String> =
    LazyLock::new(|| format!("{}VALUES ({})", sql::INSERT_EVENT, placeholders(7)));
/// One case by id.
static CASE_BY_ID: LazyLock<String> = LazyLock::new(|| format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = $1"));

/// A case's status columns in the order [`sql::INSERT_CASE`] and [`sql::UPDATE_STATUS`] name them.
fn status_params(st: &StatusColumns) -> [&dyn ToSql; 13] {
    [
        &st.state,
        &st.version,
        &st.lead_dept,
        &st.co_depts,
        &st.due_at,
        &st.handle_due_at,
        &st.replied_at,
        &st.closed_at,
        &st.close_type,
        &st.escalation_level,
        &st.merged_into,
        &st.updated_at,
        &st.json,
    ]
}

/// `$1, $2, …, $n`.
fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// A constraint violation as the store's error; anything else as it is.
fn constraint(e: rusqlite::Error, unique_field: &'static str) -> StoreError {
    use rusqlite::ffi;
    match e.sqlite_error().map(|f| f.extended_code) {
        Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
            StoreError::Duplicate { field: unique_field }
        }
        Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => StoreError::BadReference,
        _ => StoreError::Sqlite(e),
    }
}

impl BatchTx for SqliteBatch<'_> {
    async fn find_key(&mut self, k: &IdempotencyKey, target: KeyTarget) -> Result<Option<(String, Option<i64>)>> {
        let mut stmt = self.0.prepare_cached(target.find_sql())?;
        Ok(stmt.query_row(params![k.scope, k.key], |r| Ok((r.get(0)?, r.get(1)?))).optional()?)
    }

    async fn store_key(&mut self, k: &IdempotencyKey, target: KeyTarget, id: i64, at: Timestamp) -> Result<()> {
        let mut stmt = self.0.prepare_cached(target.store_sql())?;
        stmt.execute(params![k.scope, k.key, k.fingerprint, id, micros(at)])
            .map_err(|e| constraint(e, "idempotency_key"))?;
        Ok(())
    }

    async fn case(&mut self, id: i64) -> Result<Case> {
        let mut stmt = self.0.prepare_cached(&CASE_BY_ID)?;
        let row = stmt.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        case_from_row(row)
    }

    async fn bump_counter(&mut self, day: &str, n: i64) -> Result<i64> {
        let mut stmt = self.0.prepare_cached(sql::BUMP_COUNTER)?;
        Ok(stmt.query_row(params![day, n], |r| r.get(0))?)
    }

    async fn insert_cases(&mut self, rows: &[CaseInsert<'_>]) -> Result<Vec<i64>> {
        let mut stmt = self.0.prepare_cached(&INSERT_CASE_ROW)?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            let (f, st) = (r.facts, r.cols);
            let component = f.component_id.map(|c| c.to_string());
            let facts: [&dyn ToSql; 11] = [
                &r.number,
                &f.matter.as_str(),
                &f.source.as_str(),
                &f.grid.as_str(),
                &f.micro_grid.as_str(),
                &f.reporter.user_id,
                &micros(f.reported_at),
                &component,
                &f.location.lon,
                &f.location.lat,
                &r.facts_json,
            ];
            stmt.execute(params_from_iter(facts.into_iter().chain(status_params(st))))
                .map_err(|e| constraint(e, "number"))?;
            ids.push(self.0.last_insert_rowid());
        }
        Ok(ids)
    }

    async fn case_status(&mut self, id: i64) -> Result<Option<(i64, String)>> {
        let mut stmt = self.0.prepare_cached(sql::CASE_STATUS)?;
        Ok(stmt.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?)
    }

    async fn update_status(&mut self, id: i64, expected: i64, st: &StatusColumns) -> Result<bool> {
        let mut stmt = self.0.prepare_cached(sql::UPDATE_STATUS)?;
        let key: [&dyn ToSql; 2] = [&id, &expected];
        Ok(stmt.execute(params_from_iter(status_params(st).into_iter().chain(key)))? == 1)
    }

    async fn add_departments(&mut self, rows: &[(String, i64)]) -> Result<()> {
        let mut stmt = self.0.prepare_cached(sql::ADD_DEPARTMENT)?;
        for (dept, id) in rows {
            stmt.execute(params![dept, id])?;
        }
        Ok(())
    }

    async fn remove_department(&mut self, dept: &str, case_id: i64) -> Result<()> {
        self.0.prepare_cached(sql::REMOVE_DEPARTMENT)?.execute(params![dept, case_id])?;
        Ok(())
    }

    async fn link_attachment(&mut self, case_id: i64, attachment_id: i64) -> Result<bool> {
        Ok(self.0.prepare_cached(sql::LINK_ATTACHMENT)?.execute(params![case_id, attachment_id])? == 1)
    }

    /// One process writes an SQLite file, one transaction at a time, so SQLite numbers the log itself
    /// (`seq` is the rowid: the next is the largest + 1, in insertion order): no counter page is
    /// rewritten.
    async fn insert_events(&mut self, rows: &[(i64, &CaseEvent, &str)]) -> Result<i64> {
        let mut event = self.0.prepare_cached(&INSERT_EVENT_ROW)?;
        let mut log =
            self.0.prepare_cached("INSERT INTO event_log (stream, stream_id, version, at) VALUES ($1, $2, $3, $4)")?;
        for (id, e, body) in rows {
            let at = micros(e.at);
            event
                .execute(params![id, e.seq, at, e.actor.user_id.unwrap_or(0), e.action.name(), e.to.as_str(), body])
                .map_err(|e| constraint(e, "event"))?;
            log.execute(params![crate::Stream::Case.as_str(), id, e.seq, at])?;
        }
        Ok(self.0.last_insert_rowid())
    }
}
