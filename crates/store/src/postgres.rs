//! The PostgreSQL store, for a county that outgrows one machine: several stateless app nodes share one
//! database. Case numbers come from a counter row locked per day, so nodes never hand out the same
//! number; every node batches its own case writes (group commit) into one transaction.

use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};

use crate::writer::Writer;

/// The schema migrations of the PostgreSQL backend, oldest first. Append only.
const MIGRATIONS: [(i64, &str, &str); 3] = [
    (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
    (2, "case departments", include_str!("../migrations/postgres/0002_case_departments.sql")),
    (3, "cases by grid and time", include_str!("../migrations/postgres/0003_cases_grid_time.sql")),
];

/// The schema migrations of the PostgreSQL backend.
pub fn migrator() -> Migrator {
    crate::shared::migrator(&MIGRATIONS)
}

/// The PostgreSQL implementation of [`crate::Store`].
#[derive(Debug)]
pub struct PgStore {
    read: PgPool,
    write: PgPool,
    writer: Writer,
}

#[derive(Debug)]
struct PgApplier {
    pool: PgPool,
    /// The connection the writer keeps between batches.
    conn: tokio::sync::Mutex<Option<sqlx::pool::PoolConnection<sqlx::Postgres>>>,
}

impl PgStore {
    /// Connects to `url` and migrates the database.
    pub async fn open(url: &str) -> crate::Result<Self> {
        Self::open_in_schema(url, None).await
    }

    /// Connects to `url` using its own schema (created if needed), so that several test runs or
    /// installations can share one database without meeting.
    pub async fn open_in_schema(url: &str, schema: Option<&str>) -> crate::Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|_| crate::StoreError::BadUrl(url.to_owned()))?;
        let mut pool_options = PgPoolOptions::new().max_connections(8);
        if let Some(schema) = schema {
            if schema.is_empty() || !schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                return Err(crate::StoreError::BadUrl(format!("bad schema name {schema:?}")));
            }
            let setup = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
            setup.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}"))).await?;
            setup.close().await;
            let set_path = format!("SET search_path TO {schema}");
            pool_options = pool_options.after_connect(move |conn, _meta| {
                let set_path = set_path.clone();
                Box::pin(async move {
                    conn.execute(sqlx::AssertSqlSafe(set_path)).await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options.connect_with(options).await?;
        migrator().run(&pool).await?;
        let writer = Writer::spawn(PgApplier { pool: pool.clone(), conn: Default::default() });
        Ok(Self { read: pool.clone(), write: pool, writer })
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

    /// Drops every civicgrid table of the database's current schema (for `demo --fresh`).
    pub async fn wipe(url: &str) -> crate::Result<()> {
        let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
        pool.execute(
            "DROP TABLE IF EXISTS case_departments, case_events, cases, case_counters, sessions, users, components, work_calendar, \
             matters, component_classes, departments, micro_grids, grids, workstations, town, _sqlx_migrations CASCADE",
        )
        .await?;
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

impl PgApplier {
    /// Nothing to set up on the writer's connection.
    async fn prepare_connection(_conn: &mut sqlx::PgConnection) -> crate::Result<()> {
        Ok(())
    }
}

crate::shared::store_impl!(PgStore, PgApplier, sqlx::Postgres, Backend::Postgres);
