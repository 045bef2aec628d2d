//! The PostgreSQL store, for a county that outgrows one machine: several stateless app nodes share one
//! database. Case numbers come from a counter row locked per day, so nodes never hand out the same
//! number; every node batches its own case writes (group commit) into one transaction.
//!
//! Each commit that adds events sends `NOTIFY` on a channel named after the schema, and every node
//! `LISTEN`s on it, so a reader on node B wakes when node A commits. A missed notification (a dropped
//! listener connection) only delays readers: they also look again every second.

use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};

mod writer;

use crate::writer::Writer;
use writer::PgApplier;

/// The schema migrations of the PostgreSQL backend, oldest first. Append only.
const MIGRATIONS: [(i64, &str, &str); 22] = [
    (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
    (2, "case departments", include_str!("../migrations/postgres/0002_case_departments.sql")),
    (3, "cases by grid and time", include_str!("../migrations/postgres/0003_cases_grid_time.sql")),
    (4, "event log", include_str!("../migrations/postgres/0004_event_log.sql")),
    (5, "jobs", include_str!("../migrations/postgres/0005_jobs.sql")),
    (6, "integrations", include_str!("../migrations/postgres/0006_integrations.sql")),
    (7, "account state", include_str!("../migrations/postgres/0007_account_state.sql")),
    (8, "attachments", include_str!("../migrations/postgres/0008_attachments.sql")),
    (9, "idempotent administration", include_str!("../migrations/postgres/0009_idempotent_admin.sql")),
    (10, "dispatch", include_str!("../migrations/postgres/0010_dispatch.sql")),
    (11, "workflow", include_str!("../migrations/postgres/0011_workflow.sql")),
    (12, "kpi", include_str!("../migrations/postgres/0012_kpi.sql")),
    (13, "post kpis", include_str!("../migrations/postgres/0013_post_kpis.sql")),
    (14, "queue indexes", include_str!("../migrations/postgres/0014_queue_indexes.sql")),
    (15, "devices", include_str!("../migrations/postgres/0015_devices.sql")),
    (16, "telemetry rollups", include_str!("../migrations/postgres/0016_telemetry_rollups.sql")),
    (17, "alarms", include_str!("../migrations/postgres/0017_alarms.sql")),
    (18, "telemetry reports", include_str!("../migrations/postgres/0018_telemetry_reports.sql")),
    (19, "device location", include_str!("../migrations/postgres/0019_device_location.sql")),
    (20, "throttles", include_str!("../migrations/postgres/0020_throttles.sql")),
    (21, "world version", include_str!("../migrations/postgres/0021_world_version.sql")),
    (22, "telemetry pending hour", include_str!("../migrations/postgres/0022_telemetry_pending_hour.sql")),
];

/// The schema migrations of the PostgreSQL backend.
pub fn migrator() -> Migrator {
    migrator_until(i64::MAX)
}

/// The migrations up to and including `version`: a database as an older release left it, for tests
/// of the upgrade path.
pub fn migrator_until(version: i64) -> Migrator {
    crate::shared::migrator(&MIGRATIONS, version)
}

/// The PostgreSQL implementation of [`crate::Store`].
#[derive(Debug)]
pub struct PgStore {
    read: PgPool,
    write: PgPool,
    /// Always open: PostgreSQL's writers do not exclude each other.
    gate: crate::gate::WriteGate,
    writer: Writer,
    /// The newest committed event-log number known here, as a hint for readers.
    feed: tokio::sync::watch::Sender<i64>,
    /// This node's writer's recent commits, for the log readers.
    recent: std::sync::Arc<crate::recent::RecentLog>,
    /// Ends the listener task when the store is dropped.
    _listener: AbortOnDrop,
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PgStore {
    /// Connects to `url` and migrates the database.
    pub async fn open(url: &str) -> crate::Result<Self> {
        Self::open_in_schema(url, None).await
    }

    /// Connects to `url` using its own schema (created if needed), so that several test runs or
    /// installations can share one database without meeting.
    pub async fn open_in_schema(url: &str, schema: Option<&str>) -> crate::Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| crate::StoreError::BadUrl(crate::redact_url(url)))?
            .application_name(&format!("civicgrid:{}", schema.unwrap_or("public")));
        let mut pool_options = PgPoolOptions::new().max_connections(8);
        if let Some(schema) = schema {
            let schema = schema_name(schema)?;
            let setup = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
            setup.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"))).await?;
            setup.close().await;
            pool_options = in_schema(pool_options, schema)?;
        }
        let writer_pool = (pool_options.clone(), options.clone());
        let pool = pool_options.connect_with(options).await?;
        migrator().run(&pool).await?;
        let current: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await?;
        let channel = format!("civicgrid_events_{current}");
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM event_log").fetch_one(&pool).await?;
        let feed = tokio::sync::watch::Sender::new(last);
        let listener = tokio::spawn(listen(pool.clone(), channel.clone(), feed.clone()));
        let (writer, queue) = Writer::new();
        let recent = std::sync::Arc::new(crate::recent::RecentLog::off());
        spawn_writer(writer_pool, feed.clone(), recent.clone(), queue)?;
        Ok(Self {
            read: pool.clone(),
            write: pool,
            gate: crate::gate::WriteGate::open(),
            writer,
            feed,
            recent,
            _listener: AbortOnDrop(listener.abort_handle()),
        })
    }

    /// Table → column names of the current schema, for comparing the two backends' schemas.
    pub async fn schema(&self) -> crate::Result<Vec<(String, String)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name NOT LIKE '_sqlx%' ORDER BY 1, 2",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows)
    }

    /// Drops every table and function civicgrid's migrations create in the default schema (what
    /// `demo --fresh` starts from); anything else in the database is left alone.
    pub async fn wipe(url: &str) -> crate::Result<()> {
        Self::wipe_in_schema(url, None).await
    }

    /// [`PgStore::wipe`] in `schema` (the default schema when `None`).
    pub async fn wipe_in_schema(url: &str, schema: Option<&str>) -> crate::Result<()> {
        let mut options = PgPoolOptions::new().max_connections(1);
        if let Some(schema) = schema {
            options = in_schema(options, schema)?;
        }
        let pool = options.connect(url).await?;
        let (tables, functions) = created_objects();
        let tables: Vec<&str> = tables.into_iter().rev().chain(["_sqlx_migrations"]).collect();
        pool.execute(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {} CASCADE", tables.join(", ")))).await?;
        for f in functions {
            pool.execute(sqlx::AssertSqlSafe(format!("DROP FUNCTION IF EXISTS {f} CASCADE"))).await?;
        }
        pool.close().await;
        Ok(())
    }

    /// Drops a schema and everything in it (test clean-up).
    pub async fn drop_schema(url: &str, schema: &str) -> crate::Result<()> {
        let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
        pool.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).await?;
        pool.close().await;
        Ok(())
    }
}

/// A schema name as the store accepts it: lower-case letters, digits and underscores.
fn schema_name(schema: &str) -> crate::Result<&str> {
    if schema.is_empty() || !schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(crate::StoreError::BadUrl(format!("bad schema name {schema:?}")));
    }
    Ok(schema)
}

/// Pool options whose every connection works in `schema` (checked by [`schema_name`]).
fn in_schema(options: PgPoolOptions, schema: &str) -> crate::Result<PgPoolOptions> {
    let set_path = format!("SET search_path TO {}", schema_name(schema)?);
    Ok(options.after_connect(move |conn, _meta| {
        let set_path = set_path.clone();
        Box::pin(async move {
            conn.execute(sqlx::AssertSqlSafe(set_path)).await?;
            Ok(())
        })
    }))
}

/// The tables and the functions (with their argument lists) that the migrations create, in the order
/// they create them, read from their SQL (written with upper-case keywords, one `CREATE` a line): what
/// [`PgStore::wipe`] drops, so that a new migration's objects need no list kept by hand.
fn created_objects() -> (Vec<&'static str>, Vec<&'static str>) {
    let (mut tables, mut functions) = (Vec::new(), Vec::new());
    for line in MIGRATIONS.iter().flat_map(|(_, _, sql)| sql.lines()).map(str::trim_start) {
        let table = ["CREATE TABLE IF NOT EXISTS ", "CREATE TABLE "].iter().find_map(|p| line.strip_prefix(p));
        let function = ["CREATE OR REPLACE FUNCTION ", "CREATE FUNCTION "].iter().find_map(|p| line.strip_prefix(p));
        if let Some(rest) = table {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            tables.push(&rest[..end]);
        } else if let Some(signature) = function.and_then(|rest| rest.find(')').map(|end| &rest[..=end])) {
            functions.push(signature);
        }
    }
    (tables, functions)
}

impl PgStore {
    /// Two nodes claiming at once skip each other's rows instead of waiting or double-claiming.
    const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";
}

/// Starts the group-commit writer on a thread of its own with a runtime of its own and its own
/// connection, opened there.
///
/// A batch is five round trips to the server (begin, the day's counter, the cases, the events and
/// their log numbers, commit). On the shared runtime each answer woke the writer's task into a queue
/// behind every request task, so under load most of a batch's time was spent waiting for a worker
/// thread, not for PostgreSQL; here the thread wakes as soon as the answer arrives.
fn spawn_writer(
    (options, connect): (PgPoolOptions, PgConnectOptions),
    feed: tokio::sync::watch::Sender<i64>,
    recent: std::sync::Arc<crate::recent::RecentLog>,
    queue: crate::writer::Queue,
) -> crate::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::StoreError::Corrupt(format!("cannot start the writer's runtime: {e}")))?;
    std::thread::Builder::new()
        .name("pg-writer".into())
        .spawn(move || {
            runtime.block_on(async move {
                let pool = options.max_connections(1).connect_lazy_with(connect);
                crate::writer::run(PgApplier::new(pool, feed, recent), queue).await;
            });
        })
        .map_err(|e| crate::StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
    Ok(())
}

/// Listens for other nodes' commits and passes the numbers on to this node's readers; reconnects after
/// a lost connection (sqlx's listener does) and keeps going until the store is dropped.
async fn listen(pool: PgPool, channel: String, feed: tokio::sync::watch::Sender<i64>) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other nodes' commits; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(&channel).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        loop {
            match listener.recv().await {
                Ok(n) => {
                    if let Ok(last) = n.payload().parse::<i64>() {
                        crate::shared::advance(&feed, last);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the commit listener; reconnecting");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

/// What [`queries`] is compiled for here.
type Db = sqlx::Postgres;
/// The store [`queries`] implements here.
type This = PgStore;
/// This backend.
const BACKEND: crate::Backend = crate::Backend::Postgres;

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
    use super::created_objects;

    #[test]
    fn wipe_drops_what_the_migrations_create() {
        let (tables, functions) = created_objects();
        // The tables the hand-kept list of `wipe` named before it was read from the migrations, and those
        // added since.
        let listed = "rule_states, alarm_events, alarms, telemetry_pending, telemetry_reports, telemetry_rollup, \
             telemetry, telemetry_latest, devices, kpi_counts, notify_channels, notifications, duty_roster, \
             log_consumers, settings, blobs, attachments, idempotency, api_keys, service_accounts, jobs, event_log, \
             event_counter, case_departments, case_events, cases, case_counters, sessions, users, components, \
             work_calendar, matters, component_classes, departments, micro_grids, grids, workstations, town, \
             throttle_uses, world_version";
        let mut expected: Vec<&str> = listed.split(", ").collect();
        let mut found = tables.clone();
        expected.sort_unstable();
        found.sort_unstable();
        assert_eq!(found, expected);
        assert_eq!(tables.first(), Some(&"town"), "in the order the migrations create them");
        assert_eq!(functions, vec!["civicgrid_announce_events()", "civicgrid_world_moved()"]);
    }
}
