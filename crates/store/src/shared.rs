//! Helpers both backends share that hold no SQL of their own: migrators from a step list, encoding of
//! stored JSON columns, case numbers, the status columns of a case row, database-error mapping and the
//! idempotent-create pattern. The shared SQL is in `queries.rs`; the writer's in [`crate::batch`].

use civicgrid_core::case::{Case, CaseStatus};
use jiff::civil::Date;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Result, StoreError};

/// A migrator from (version, description, SQL) steps, up to and including version `until`.
pub(crate) fn migrator(steps: &[(i64, &'static str, &'static str)], until: i64) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType};
    sqlx::migrate::Migrator::with_migrations(
        steps
            .iter()
            .take_while(|(version, _, _)| *version <= until)
            .map(|&(version, description, sql)| {
                Migration::new(version, description.into(), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

/// Moves the commit hint readers wake on forward to `last` (never back: a late notification from
/// another node may carry an older number).
pub(crate) fn advance(feed: &tokio::sync::watch::Sender<i64>, last: i64) {
    feed.send_if_modified(|seen| std::mem::replace(seen, (*seen).max(last)) < last);
}

/// Case row columns, in the order `case_from_row` expects.
pub(crate) const CASE_COLUMNS: &str = "id, number, facts, status";

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn from_json<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn parse<T: std::str::FromStr>(s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| StoreError::Corrupt(format!("{s:?}: {e}")))
}

pub(crate) fn case_from_row((id, number, facts, status): (i64, String, String, String)) -> Result<Case> {
    Ok(Case { id, number, facts: from_json(&facts)?, status: from_json(&status)? })
}

/// The local (UTC+8) day of an instant as `YYYYMMDD`, the middle part of a case number.
pub(crate) fn day_key(t: jiff::Timestamp) -> String {
    let d: Date = civicgrid_core::calendar::local(t).date();
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

/// Case number: town code + day + 6-digit serial.
pub(crate) fn case_number(town: &str, day: &str, serial: i64) -> String {
    format!("{town}{day}{serial:06}")
}

/// A case status as the columns of its row: the indexed fields timers, lists and KPIs filter on, and
/// the whole status as JSON. Encoded before the row is written.
#[derive(Debug, Clone)]
pub(crate) struct StatusColumns {
    pub(crate) state: &'static str,
    pub(crate) version: i64,
    pub(crate) lead_dept: Option<String>,
    /// The co-department list as a JSON array.
    pub(crate) co_depts: String,
    pub(crate) due_at: Option<i64>,
    pub(crate) handle_due_at: Option<i64>,
    pub(crate) replied_at: Option<i64>,
    pub(crate) closed_at: Option<i64>,
    pub(crate) close_type: Option<&'static str>,
    pub(crate) escalation_level: i64,
    pub(crate) merged_into: Option<i64>,
    pub(crate) updated_at: i64,
    pub(crate) json: String,
}

impl StatusColumns {
    pub(crate) fn of(s: &CaseStatus) -> Result<Self> {
        use civicgrid_core::case::CloseType;
        Ok(StatusColumns {
            state: s.state.as_str(),
            version: s.version,
            lead_dept: s.lead_dept.as_ref().map(ToString::to_string),
            co_depts: to_json(&s.co_depts)?,
            due_at: s.due_at.map(crate::micros),
            handle_due_at: s.handle_due_at.map(crate::micros),
            replied_at: s.replied_at.map(crate::micros),
            closed_at: s.closed_at.map(crate::micros),
            close_type: s.close_type.map(|c| match c {
                CloseType::Normal => "normal",
                CloseType::Late => "late",
            }),
            escalation_level: i64::from(s.escalation_level),
            merged_into: s.merged_into,
            updated_at: crate::micros(s.updated_at),
            json: to_json(s)?,
        })
    }
}

/// Runs a create under an optional idempotency key. If it fails on a unique value while a key was
/// given, another request with the same key may have committed first (two nodes, or a retry racing
/// the original): one more attempt then finds the key and answers with that request's result; a real
/// duplicate fails again.
pub(crate) async fn once<T, F, Fut>(key: Option<&crate::IdempotencyKey>, mut attempt: F) -> Result<crate::Created<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<crate::Created<T>>>,
{
    match attempt().await {
        Err(StoreError::Duplicate { .. }) if key.is_some() => attempt().await,
        other => other,
    }
}

/// The answer to a repeated idempotency key: the first result, which must still exist.
pub(crate) fn replay<T>(first: Option<T>) -> Result<crate::Created<T>> {
    let value = first.ok_or_else(|| StoreError::Corrupt("an idempotency key names a record that is gone".into()))?;
    Ok(crate::Created { value, replayed: true })
}

/// Maps constraint violations to typed errors.
pub(crate) fn map_db_error(e: sqlx::Error, unique_field: &'static str) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::Duplicate { field: unique_field };
        }
        if db.is_foreign_key_violation() {
            return StoreError::BadReference;
        }
    }
    StoreError::Database(e)
}

/// A keyset page from rows fetched with `LIMIT limit + 1`, newest first: the extra row only says that
/// there is a next page, which starts below the last item kept.
pub(crate) fn keyset_page<R, T>(
    rows: Vec<R>,
    limit: usize,
    item: impl Fn(R) -> Result<T>,
    id: impl Fn(&T) -> i64,
) -> Result<crate::Page<T>> {
    let more = rows.len() > limit;
    let items = rows.into_iter().take(limit).map(item).collect::<Result<Vec<_>>>()?;
    let next = if more { items.last().map(&id) } else { None };
    Ok(crate::Page { items, next })
}
