//! The embedded SQLite store: one file, WAL journal, `synchronous = FULL` by default (a committed case
//! survives a power cut, not only a killed process; `normal` trades that for throughput), a busy
//! timeout, foreign keys on. Case writes go through the group-commit writer's own connection
//! ([`writer`]), other writes through a one-connection pool; the two take turns at SQLite's write
//! lock through a fair gate ([`crate::gate`]), so writers queue in the process, in order, instead of
//! polling SQLite's busy handler or meeting "database is locked"; reads use their own pool and never wait for a
//! writer (WAL).

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::SqliteSync;
mod writer;

use crate::writer::Writer;
use writer::SqliteApplier;

/// The schema migrations of the SQLite backend, oldest first. Append only.
const MIGRATIONS: [(i64, &str, &str); 22] = [
    (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
    (2, "case departments", include_str!("../migrations/sqlite/0002_case_departments.sql")),
    (3, "cases by grid and time", include_str!("../migrations/sqlite/0003_cases_grid_time.sql")),
    (4, "event log", include_str!("../migrations/sqlite/0004_event_log.sql")),
    (5, "jobs", include_str!("../migrations/sqlite/0005_jobs.sql")),
    (6, "integrations", include_str!("../migrations/sqlite/0006_integrations.sql")),
    (7, "account state", include_str!("../migrations/sqlite/0007_account_state.sql")),
    (8, "attachments", include_str!("../migrations/sqlite/0008_attachments.sql")),
    (9, "idempotent administration", include_str!("../migrations/sqlite/0009_idempotent_admin.sql")),
    (10, "dispatch", include_str!("../migrations/sqlite/0010_dispatch.sql")),
    (11, "workflow", include_str!("../migrations/sqlite/0011_workflow.sql")),
    (12, "kpi", include_str!("../migrations/sqlite/0012_kpi.sql")),
    (13, "post kpis", include_str!("../migrations/sqlite/0013_post_kpis.sql")),
    (14, "queue indexes", include_str!("../migrations/sqlite/0014_queue_indexes.sql")),
    (15, "devices", include_str!("../migrations/sqlite/0015_devices.sql")),
    (16, "telemetry rollups", include_str!("../migrations/sqlite/0016_telemetry_rollups.sql")),
    (17, "alarms", include_str!("../migrations/sqlite/0017_alarms.sql")),
    (18, "telemetry reports", include_str!("../migrations/sqlite/0018_telemetry_reports.sql")),
    (19, "device location", include_str!("../migrations/sqlite/0019_device_location.sql")),
    (20, "throttles", include_str!("../migrations/sqlite/0020_throttles.sql")),
    (21, "world version", include_str!("../migrations/sqlite/0021_world_version.sql")),
    (22, "telemetry pending hour", include_str!("../migrations/sqlite/0022_telemetry_pending_hour.sql")),
];

/// The schema migrations of the SQLite backend.
pub fn migrator() -> Migrator {
    migrator_until(i64::MAX)
}

/// The migrations up to and including `version`: a database as an older release left it, for tests
/// of the upgrade path.
pub fn migrator_until(version: i64) -> Migrator {
    crate::shared::migrator(&MIGRATIONS, version)
}

/// The SQLite implementation of [`crate::Store`].
#[derive(Debug)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    /// Shared with the group-commit writer's thread: the pool's writes and the writer's batches take
    /// turns at SQLite's one write lock in order.
    gate: crate::gate::WriteGate,
    writer: Writer,
    /// The newest committed event-log number, as a hint for readers.
    feed: tokio::sync::watch::Sender<i64>,
    /// The writer's recent commits, for the log readers.
    recent: std::sync::Arc<crate::recent::RecentLog>,
    /// Dropping the store stops its checkpointer.
    _stop_checkpoints: tokio::sync::oneshot::Sender<()>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and migrates it; commits are fsynced.
    pub async fn open(path: &str) -> crate::Result<Self> {
        Self::open_with(path, SqliteSync::Full).await
    }

    /// Opens with the given commit durability.
    pub async fn open_with(path: &str, sync: SqliteSync) -> crate::Result<Self> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(|_| crate::StoreError::BadUrl(path.to_owned()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match sync {
                SqliteSync::Full => SqliteSynchronous::Full,
                SqliteSync::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory")
            .pragma("journal_size_limit", "67108864");
        // Case writes go through the group-commit writer's own connection; other writes (jobs, sessions,
        // reference data, telemetry) take this one, each after its turn at the gate. The busy timeout
        // remains for other processes (a backup, an operator's sqlite3).
        let write = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        migrator().run(&write).await?;
        let read = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM event_log").fetch_one(&read).await?;
        let feed = tokio::sync::watch::Sender::new(last);
        let (writer, queue) = Writer::new();
        let gate = crate::gate::WriteGate::fair();
        let recent = std::sync::Arc::new(crate::recent::RecentLog::default());
        SqliteApplier::open(path, sync, feed.clone(), recent.clone(), gate.clone())?.spawn(queue)?;
        let (stop_checkpoints, stop) = tokio::sync::oneshot::channel();
        tokio::spawn(checkpointer(read.clone(), stop));
        Ok(Self { read, write, gate, writer, feed, recent, _stop_checkpoints: stop_checkpoints })
    }

    /// Writes a consistent copy of the whole database to `target` while the store keeps serving
    /// (`VACUUM INTO`: a snapshot taken in one read transaction, compacted). Refuses an existing file.
    pub async fn backup_to(&self, target: &std::path::Path) -> crate::Result<()> {
        if target.exists() {
            return Err(crate::StoreError::BadUrl(format!("{} exists already; choose a new file", target.display())));
        }
        let path = target.to_str().ok_or_else(|| crate::StoreError::BadUrl("the backup path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO $1").bind(path.to_owned()).execute(&self.read).await?;
        Ok(())
    }

    /// Checks a database file: SQLite's integrity check passes and it holds civicgrid's schema.
    pub async fn verify_file(path: &std::path::Path) -> crate::Result<()> {
        let options = SqliteConnectOptions::new().filename(path).read_only(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&pool).await?;
        if check != "ok" {
            return Err(crate::StoreError::Corrupt(format!("integrity check: {check}")));
        }
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('cases', 'event_log', '_sqlx_migrations')",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        if tables != 3 {
            return Err(crate::StoreError::Corrupt("not a civicgrid database".into()));
        }
        Ok(())
    }

    /// Table → column names, for comparing the two backends' schemas.
    pub async fn schema(&self) -> crate::Result<Vec<(String, String)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%' ORDER BY 1, 2",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows)
    }
}

impl SqliteStore {
    /// SQLite has one writer at a time, so a claim needs no row locks.
    const SKIP_LOCKED: &str = "";
}

/// Checkpoints the WAL into the database file every second, off the writer's path. PASSIVE never blocks
/// the writer; once a checkpoint has caught up, the next write starts the WAL over, and
/// `journal_size_limit` trims the file. Ends when the store is dropped.
async fn checkpointer(pool: SqlitePool, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => return,
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// What [`queries`] is compiled for here.
type Db = sqlx::Sqlite;
/// The store [`queries`] implements here.
type This = SqliteStore;
/// This backend.
const BACKEND: crate::Backend = crate::Backend::Sqlite;

// Compiled once per backend on purpose: see the module's own documentation.
#[allow(clippy::duplicate_mod)]
#[path = "alarm_queries.rs"]
mod alarm_queries;
#[allow(clippy::duplicate_mod)]
#[path = "iot_queries.rs"]
mod iot_queries;
#[allow(clippy::duplicate_mod)]
#[path = "kpi_queries.rs"]
mod kpi_queries;
#[allow(clippy::duplicate_mod)]
#[path = "notify_queries.rs"]
mod notify_queries;
#[allow(clippy::duplicate_mod)]
#[path = "queries.rs"]
mod queries;
#[allow(clippy::duplicate_mod)]
#[path = "throttle_queries.rs"]
mod throttle_queries;

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep's pass reads the pending marks through the hour index, in its order: no scan and
    /// sort of every mark for each transaction.
    #[tokio::test]
    async fn a_summary_pass_reads_the_marks_in_index_order() {
        let dir = std::env::temp_dir().join(format!("civicgrid-store-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let store = SqliteStore::open(&dir.join("plan.db").to_string_lossy()).await.expect("open");
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {}", iot_queries::PENDING_PASS)))
                .bind(0_i64)
                .bind(0_i64)
                .bind("")
                .bind(100_i64)
                .fetch_all(&store.read)
                .await
                .expect("plan");
        let steps: Vec<&str> = plan.iter().map(|(_, _, _, detail)| detail.as_str()).collect();
        assert!(steps.iter().any(|s| s.contains("telemetry_pending_hour")), "{steps:?}");
        assert!(!steps.iter().any(|s| s.contains("TEMP B-TREE")), "{steps:?}");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
