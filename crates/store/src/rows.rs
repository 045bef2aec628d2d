//! Row mapping shared by both backends: the column lists, the tuple each query returns and the pure
//! functions that turn those tuples into domain values (and back). Nothing here touches a database, so
//! it is plain Rust that both backends and the writer share.

use civicgrid_core::access::CaseScope;
use civicgrid_core::case::{Case, CaseFacts};
use civicgrid_core::component::Component;
use civicgrid_core::grid::{polygon_from_geojson, polygon_to_geojson};
use jiff::Timestamp;

use crate::shared::{StatusColumns, from_json, parse};
use crate::{CaseFilter, Result, StoreError, User};

/// A case row to insert, its JSON already encoded.
pub(crate) struct CaseInsert<'a> {
    pub(crate) number: String,
    pub(crate) facts: &'a CaseFacts,
    pub(crate) facts_json: &'a str,
    pub(crate) cols: &'a StatusColumns,
}

/// What an idempotency key made: its column in `idempotency`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyTarget {
    /// A reported case.
    Case,
    /// An upload.
    Attachment,
    /// An account.
    User,
    /// A service account.
    ServiceAccount,
    /// An API key.
    ApiKey,
}

/// The statements that find and store a key of one target column.
macro_rules! key_sql {
    ($column:literal) => {
        (
            concat!("SELECT fingerprint, ", $column, " FROM idempotency WHERE scope = $1 AND idem_key = $2"),
            concat!(
                "INSERT INTO idempotency (scope, idem_key, fingerprint, ",
                $column,
                ", created_at) VALUES ($1, $2, $3, $4, $5)"
            ),
        )
    };
}

impl KeyTarget {
    fn statements(self) -> (&'static str, &'static str) {
        match self {
            KeyTarget::Case => key_sql!("case_id"),
            KeyTarget::Attachment => key_sql!("attachment_id"),
            KeyTarget::User => key_sql!("user_id"),
            KeyTarget::ServiceAccount => key_sql!("service_account_id"),
            KeyTarget::ApiKey => key_sql!("api_key_id"),
        }
    }

    /// The fingerprint and id stored for key (`$1` scope, `$2` key).
    pub(crate) fn find_sql(self) -> &'static str {
        self.statements().0
    }

    /// Stores (scope, key, fingerprint, id, created at).
    pub(crate) fn store_sql(self) -> &'static str {
        self.statements().1
    }
}

/// What to do with one create of a batch.
pub(crate) enum CreatePlan {
    /// Insert it (op index).
    Insert(usize),
    /// Its key is known: return that case.
    Replay(usize, Box<Case>),
    /// Its key is known for a different request.
    Refuse(usize, StoreError),
    /// Its key was used earlier in this batch (op index, first op index).
    SameAs(usize, usize),
}

impl CreatePlan {
    /// The index of the write in its batch.
    pub(crate) fn op(&self) -> usize {
        match self {
            CreatePlan::Insert(i) | CreatePlan::Replay(i, _) | CreatePlan::Refuse(i, _) | CreatePlan::SameAs(i, _) => {
                *i
            }
        }
    }
}

pub(crate) type UserRow = (i64, String, String, String, String, Option<String>, Option<String>, String, Option<i64>);

pub(crate) fn user_from_row(
    (id, username, display_name, role, password_hash, department, phone, grids, disabled_at): UserRow,
) -> Result<User> {
    Ok(User {
        id,
        username,
        display_name,
        role: parse(&role)?,
        password_hash,
        department: department.as_deref().map(parse).transpose()?,
        phone,
        grids: from_json(&grids)?,
        disabled_at: disabled_at
            .map(|t| Timestamp::from_microsecond(t).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()?,
    })
}

pub(crate) const USER_COLUMNS: &str =
    "id, username, display_name, role, password_hash, department, phone, grids, disabled_at";

/// The columns grids and micro-grids share: code, parent code, name, households, worker, polygon.
pub(crate) type AreaRow = (String, String, String, i64, Option<i64>, String);

pub(crate) fn area_row(
    code: String,
    parent: String,
    name: &str,
    households: u32,
    worker: Option<i64>,
    polygon: &civicgrid_core::grid::Polygon<f64>,
) -> AreaRow {
    (code, parent, name.to_owned(), i64::from(households), worker, polygon_to_geojson(polygon).to_string())
}

/// Parses an area row's polygon and hands the parts to `build`.
pub(crate) fn from_area_row<T>(
    (code, parent, name, households, worker, polygon): AreaRow,
    build: impl FnOnce(String, String, String, u32, Option<i64>, civicgrid_core::grid::Polygon<f64>) -> Result<T>,
) -> Result<T> {
    let json: serde_json::Value = from_json(&polygon)?;
    let polygon = polygon_from_geojson(&json).map_err(|e| StoreError::Corrupt(format!("{code}: {e}")))?;
    build(code, parent, name, u32::try_from(households).unwrap_or_default(), worker, polygon)
}

pub(crate) fn component_from_row(
    (id, name, status, lon, lat, grid, micro_grid, department): (
        String,
        String,
        String,
        f64,
        f64,
        String,
        String,
        String,
    ),
) -> Result<Component> {
    Ok(Component {
        id: parse(&id)?,
        name,
        status: parse(&status)?,
        location: civicgrid_core::case::GeoPoint { lon, lat },
        grid: parse(&grid)?,
        micro_grid: parse(&micro_grid)?,
        department: parse(&department)?,
    })
}

/// The department a case list is driven by: the actor's department scope, else the filter's.
pub(crate) fn driving_department(f: &CaseFilter) -> Option<&civicgrid_core::org::DeptCode> {
    // Open cases are few: the state index finds a department's cases in some open states faster than
    // a walk through the department's whole history, which such a filter may match nowhere in.
    let open = |s: &civicgrid_core::case::CaseState| s.is_open() && *s != civicgrid_core::case::CaseState::Merged;
    // So are recent closures, found newest first in the state index.
    if (!f.states.is_empty() && f.states.iter().all(open)) || f.closed_from.is_some() {
        return None;
    }
    match &f.scope {
        Some(CaseScope::Department(d)) => Some(d),
        _ => f.department.as_ref(),
    }
}

pub(crate) const JOB_COLUMNS: &str = "id, kind, effect_key, payload, state, run_at, attempts, max_attempts, last_error";
pub(crate) type JobRow = (i64, String, String, String, String, i64, i64, i64, Option<String>);

pub(crate) fn job_from_row(
    (id, kind, effect_key, payload, state, run_at, attempts, max_attempts, last_error): JobRow,
) -> Result<crate::Job> {
    Ok(crate::Job {
        id,
        kind,
        effect_key,
        payload: from_json(&payload)?,
        state: parse(&state)?,
        run_at: Timestamp::from_microsecond(run_at).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
        last_error,
    })
}

pub(crate) fn ts(micros: i64) -> Result<Timestamp> {
    Timestamp::from_microsecond(micros).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) type AccountRow = (i64, String, String, i64, Option<i64>);

pub(crate) fn service_account_from_row(
    (id, name, channel, created_at, disabled_at): AccountRow,
) -> Result<crate::ServiceAccount> {
    Ok(crate::ServiceAccount {
        id,
        name,
        channel: parse(&channel)?,
        created_at: ts(created_at)?,
        disabled_at: disabled_at.map(ts).transpose()?,
    })
}

pub(crate) const KEY_COLUMNS: &str = "k.id, k.account_id, k.prefix, k.created_at, k.last_used_at, k.revoked_at";
pub(crate) type KeyRow = (i64, i64, String, i64, Option<i64>, Option<i64>);

pub(crate) fn api_key_from_row(
    (id, account_id, prefix, created_at, last_used_at, revoked_at): KeyRow,
) -> Result<crate::ApiKeyInfo> {
    Ok(crate::ApiKeyInfo {
        id,
        account_id,
        prefix,
        created_at: ts(created_at)?,
        last_used_at: last_used_at.map(ts).transpose()?,
        revoked_at: revoked_at.map(ts).transpose()?,
    })
}

pub(crate) const ATTACHMENT_COLUMNS: &str = "id, sha256, name, mime, size, uploaded_by, uploaded_at, taken_at, lon, lat, \
                                  width, height, thumb_sha256, case_id";
pub(crate) type AttachmentRow = (
    i64,
    String,
    String,
    String,
    i64,
    String,
    i64,
    Option<i64>,
    Option<f64>,
    Option<f64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

pub(crate) fn attachment_from_row(r: AttachmentRow) -> Result<crate::StoredAttachment> {
    let (id, sha256, name, mime, size, uploaded_by, uploaded_at, taken_at, lon, lat, width, height, thumb, case_id) = r;
    Ok(crate::StoredAttachment {
        id,
        sha256,
        name,
        mime,
        size: u64::try_from(size).unwrap_or_default(),
        uploaded_by,
        uploaded_at: ts(uploaded_at)?,
        taken_at: taken_at.map(ts).transpose()?,
        location: lon.zip(lat).map(|(lon, lat)| civicgrid_core::case::GeoPoint { lon, lat }),
        width: width.and_then(|w| u32::try_from(w).ok()),
        height: height.and_then(|h| u32::try_from(h).ok()),
        thumb_sha256: thumb,
        case_id,
    })
}

pub(crate) type OpenCaseRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<f64>,
    Option<f64>,
    i64,
    Option<i64>,
    i64,
    bool,
);

/// A case's `source` column.
pub(crate) fn source_column(text: &str) -> Result<civicgrid_core::case::Source> {
    civicgrid_core::case::Source::ALL
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| StoreError::Corrupt(format!("source {text:?}")))
}

pub(crate) fn open_case_from_row(
    (id, number, grid, matter, source, state, lead, lon, lat, reported_at, due_at, level, component): OpenCaseRow,
) -> Result<crate::OpenCase> {
    let source = source_column(&source)?;
    Ok(crate::OpenCase {
        id,
        number,
        grid: parse(&grid)?,
        matter: parse(&matter)?,
        source,
        state: parse(&state)?,
        lead_dept: lead.as_deref().map(parse).transpose()?,
        lon,
        lat,
        reported_at: ts(reported_at)?,
        due_at: due_at.map(ts).transpose()?,
        escalation_level: level,
        component,
    })
}
