//! The SQL of [`crate::ThrottleStore`]: one row per use, counted over a sliding window. Shared by both
//! backends the way [`queries`](super::queries) is: this file is compiled once per backend with that
//! backend's `Db`, `This` and `BACKEND`.
//!
//! Taking a slot counts and inserts in one write transaction. On SQLite the store's write gate already
//! runs those one at a time; on PostgreSQL, where several nodes write, a transaction-scoped advisory
//! lock on the (scope, key) pair makes two nodes taking the last slot at once queue, so one of them
//! finds the window full.

use jiff::Timestamp;

use super::{BACKEND, Db, This};
use crate::rows::ts;
use crate::{Backend, Result, Slot, ThrottleStore, micros};

/// Count and oldest use of a key after an instant.
const USES: &str = "SELECT COUNT(*), MIN(at) FROM throttle_uses WHERE scope = $1 AND key = $2 AND at > $3";
const INSERT: &str = "INSERT INTO throttle_uses (scope, key, at) VALUES ($1, $2, $3)";

/// Count and oldest use of `key` in `scope` after `since`, on `conn`.
async fn count(
    conn: &mut <Db as sqlx::Database>::Connection,
    scope: &str,
    key: &str,
    since: Timestamp,
) -> Result<(u32, Option<Timestamp>)> {
    let (n, oldest): (i64, Option<i64>) =
        sqlx::query_as(USES).bind(scope).bind(key).bind(micros(since)).fetch_one(conn).await?;
    Ok((u32::try_from(n).unwrap_or(u32::MAX), oldest.map(ts).transpose()?))
}

#[async_trait::async_trait]
impl ThrottleStore for This {
    async fn take_slot(&self, scope: &str, key: &str, limit: u32, since: Timestamp, now: Timestamp) -> Result<Slot> {
        let mut tx = self.write_tx().await?;
        if BACKEND == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("throttle {scope} {key}"))
                .execute(&mut *tx)
                .await?;
        }
        let (n, oldest) = count(&mut tx, scope, key, since).await?;
        if n >= limit {
            return Ok(Slot::Full { earliest: oldest.unwrap_or(now) });
        }
        sqlx::query(INSERT).bind(scope).bind(key).bind(micros(now)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Slot::Taken)
    }

    async fn uses(&self, scope: &str, key: &str, since: Timestamp) -> Result<(u32, Option<Timestamp>)> {
        count(&mut *self.read.acquire().await?, scope, key, since).await
    }

    async fn record_use(&self, scope: &str, key: &str, at: Timestamp) -> Result<()> {
        sqlx::query(INSERT).bind(scope).bind(key).bind(micros(at)).execute(&mut *self.write_conn().await?).await?;
        Ok(())
    }

    async fn forget_uses(&self, scope: &str, key: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM throttle_uses WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn purge_uses(&self, before: Timestamp) -> Result<u64> {
        let done = sqlx::query("DELETE FROM throttle_uses WHERE at < $1")
            .bind(micros(before))
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected())
    }
}
