//! The SQL both backends share, as ordinary Rust: this file is compiled twice, once as a module of
//! [`crate::sqlite`] and once of [`crate::postgres`] (`#[path = "queries.rs"] mod queries;`), each
//! parent naming its own `Db` (the sqlx database), `This` (its store type) and `BACKEND`. Placeholders
//! are written `$N`, which PostgreSQL and SQLite both accept, so the same text runs on either. sqlx's
//! generic bounds across databases cost more clarity than compiling the file twice does.
//!
//! What differs per backend stays in the parent: connecting, the group-commit writer (its own module
//! there) and `SKIP_LOCKED`.
//!
//! The parent's store must have fields `read: sqlx::Pool<Db>` (queries), `write: sqlx::Pool<Db>`
//! (writes other than the writer's), `writer` and `feed`.

use super::{BACKEND, Db, This};
use crate::rows::*;
use crate::shared::{CASE_COLUMNS, case_from_row, from_json, map_db_error, parse, to_json};
use crate::{
    AccountStore, Backend, CaseFilter, CaseStore, ComponentFilter, EventLog, ImportCase, LogEntry, NewCase, NewUser,
    Page, PageRequest, ReferenceStore, Result, Store, StoreError, User, micros,
};
use civicgrid_core::access::CaseScope;
use civicgrid_core::calendar::{CalendarEntry, DayKind};
use civicgrid_core::case::{Case, CaseEvent, CaseId, CaseState, CaseStatus};
use civicgrid_core::catalog::{ComponentClass, Matter};
use civicgrid_core::codes::ComponentId;
use civicgrid_core::component::Component;
use civicgrid_core::grid::{Grid, MicroGrid, Town, Workstation};
use civicgrid_core::org::Department;
use jiff::Timestamp;
use sqlx::QueryBuilder;

type Tx = crate::gate::WriteTx<Db>;

/// Ids bound in one `IN (…)` list (well under either backend's limit on parameters).
pub(super) const IDS_PER_QUERY: usize = 500;

/// `a, b, …` as bound parameters, for an `IN (…)` list.
pub(super) fn push_list<T>(q: &mut QueryBuilder<Db>, items: impl IntoIterator<Item = T>)
where
    T: for<'t> sqlx::Encode<'t, Db> + sqlx::Type<Db>,
{
    let mut list = q.separated(", ");
    for item in items {
        list.push_bind(item);
    }
}

/// The fingerprint and id stored for an idempotency key, if any (the group-commit writer's PostgreSQL
/// statements use this too).
pub(super) async fn find_key(
    conn: &mut <Db as sqlx::Database>::Connection,
    k: &crate::IdempotencyKey,
    target: KeyTarget,
) -> Result<Option<(String, Option<i64>)>> {
    Ok(sqlx::query_as(target.find_sql()).bind(&k.scope).bind(&k.key).fetch_optional(conn).await?)
}

/// Records what an idempotency key made, in the transaction that made it.
pub(super) async fn store_key(
    conn: &mut <Db as sqlx::Database>::Connection,
    k: &crate::IdempotencyKey,
    target: KeyTarget,
    id: i64,
    at: Timestamp,
) -> Result<()> {
    sqlx::query(target.store_sql())
        .bind(&k.scope)
        .bind(&k.key)
        .bind(&k.fingerprint)
        .bind(id)
        .bind(micros(at))
        .execute(conn)
        .await
        .map_err(|e| map_db_error(e, "idempotency_key"))?;
    Ok(())
}

impl This {
    /// A write transaction, once it is this task's turn at the store's write gate.
    pub(super) async fn write_tx(&self) -> Result<Tx> {
        Ok(self.gate.begin(&self.write).await?)
    }

    /// A write-pool connection for a statement that commits alone, once it is this task's turn.
    pub(super) async fn write_conn(&self) -> Result<crate::gate::WriteConn<Db>> {
        Ok(self.gate.acquire(&self.write).await?)
    }

    /// Opens a write transaction for a create under `key`: `Err(id)` if the key already made
    /// something (what to replay).
    async fn begin_once(
        &self,
        key: Option<&crate::IdempotencyKey>,
        target: KeyTarget,
    ) -> Result<std::result::Result<Tx, i64>> {
        let mut tx = self.write_tx().await?;
        match key {
            Some(k) => match crate::batch::key_match(find_key(&mut tx, k, target).await?, k)? {
                Some(id) => Ok(Err(id)),
                None => Ok(Ok(tx)),
            },
            None => Ok(Ok(tx)),
        }
    }
}

/// Records `key` as having made `id` and commits.
async fn commit_once(
    mut tx: Tx,
    key: Option<&crate::IdempotencyKey>,
    target: KeyTarget,
    id: i64,
    at: Timestamp,
) -> Result<()> {
    if let Some(k) = key {
        store_key(&mut tx, k, target, id, at).await?;
    }
    tx.commit().await?;
    Ok(())
}

impl This {
    /// Upserts area rows with `sql` (an INSERT … ON CONFLICT of six binds) in one transaction.
    async fn put_areas(&self, sql: &'static str, rows: Vec<AreaRow>) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for (code, parent, name, households, worker, polygon) in rows {
            sqlx::query(sql)
                .bind(code)
                .bind(parent)
                .bind(name)
                .bind(households)
                .bind(worker)
                .bind(polygon)
                .execute(&mut *tx)
                .await
                .map_err(|e| map_db_error(e, "code"))?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A settings document (a JSON value an administrator edits as a whole), if set.
    async fn setting<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let doc: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        doc.as_deref().map(from_json).transpose()
    }

    /// Replaces a settings document; `by` is the administrator.
    async fn put_setting<T: serde::Serialize>(&self, key: &str, value: &T, by: i64, now: Timestamp) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, \
             updated_by = excluded.updated_by",
        )
        .bind(key)
        .bind(to_json(value)?)
        .bind(micros(now))
        .bind(by)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(())
    }
}

/// The cases matching `filter`, as `head` followed by a `SELECT` of the case columns (or, for
/// `ids_only`, of the id alone: a count reads no JSON) and its conditions, and the id column to page
/// on. A department's list walks its (dept, case_id) index newest first; others walk the ids.
fn case_query(head: &str, filter: &CaseFilter, ids_only: bool) -> (QueryBuilder<Db>, &'static str) {
    let mut qb: QueryBuilder<Db> = QueryBuilder::new(head);
    let key = match driving_department(filter) {
        Some(d) => {
            let columns = if ids_only { "c.id" } else { "c.id, c.number, c.facts, c.status" };
            qb.push(format!(
                "SELECT {columns} FROM case_departments d JOIN cases c ON c.id = d.case_id WHERE d.dept = "
            ));
            qb.push_bind(d.to_string());
            "d.case_id"
        }
        None => {
            let columns = if ids_only { "id" } else { CASE_COLUMNS };
            qb.push(format!("SELECT {columns} FROM cases WHERE 1 = 1"));
            "id"
        }
    };
    push_case_filter(&mut qb, filter);
    (qb, key)
}

/// Appends "the case is assigned to `d`" as a probe of the (dept, case_id) key per candidate row: the
/// candidates are few (open states, a grid), a department's whole list is long.
fn push_member_of(qb: &mut QueryBuilder<Db>, d: &civicgrid_core::org::DeptCode) {
    qb.push(" AND EXISTS (SELECT 1 FROM case_departments m WHERE m.dept = ")
        .push_bind(d.to_string())
        .push(" AND m.case_id = id)");
}

/// Appends the filter's conditions. A department list is driven by `case_departments` (see
/// `list_cases`); any second department condition becomes a membership test.
fn push_case_filter(qb: &mut QueryBuilder<Db>, f: &CaseFilter) {
    if !f.grids.is_empty() {
        qb.push(" AND grid IN (");
        let mut sep = qb.separated(", ");
        for g in &f.grids {
            sep.push_bind(g.to_string());
        }
        sep.push_unseparated(")");
    }
    if let Some(m) = f.matter {
        qb.push(" AND matter = ").push_bind(m.to_string());
    }
    if !f.states.is_empty() {
        qb.push(" AND state IN (");
        let mut sep = qb.separated(", ");
        for s in &f.states {
            sep.push_bind(s.as_str());
        }
        sep.push_unseparated(")");
    }
    if let Some(d) = &f.department
        && Some(d) != driving_department(f)
    {
        push_member_of(qb, d);
    }
    if let Some(s) = f.source {
        qb.push(" AND source = ").push_bind(s.as_str());
    }
    if let Some(u) = f.reporter {
        qb.push(" AND reporter_user_id = ").push_bind(u);
    }
    if let Some(t) = f.reported_from {
        qb.push(" AND reported_at >= ").push_bind(micros(t));
    }
    if let Some(t) = f.reported_to {
        qb.push(" AND reported_at < ").push_bind(micros(t));
    }
    if let Some(t) = f.overdue_at {
        qb.push(" AND due_at IS NOT NULL AND due_at < ").push_bind(micros(t));
    }
    if let Some(t) = f.closed_from {
        // As a set from the closed_at index: a queue of recent closures then walks only index
        // entries (a membership test each) past a year of older closures, never their rows.
        qb.push(" AND id IN (SELECT id FROM cases WHERE closed_at >= ").push_bind(micros(t)).push(")");
    }
    if let Some(t) = f.closed_to {
        qb.push(" AND closed_at < ").push_bind(micros(t));
    }
    if f.escalated {
        qb.push(" AND escalation_level > 0");
    }
    if let Some(c) = f.component {
        qb.push(" AND component_id = ").push_bind(c.to_string());
    }
    if let Some(a) = &f.within {
        qb.push(" AND lat BETWEEN ").push_bind(a.south).push(" AND ").push_bind(a.north);
        qb.push(" AND lon BETWEEN ").push_bind(a.west).push(" AND ").push_bind(a.east);
    }
    if let Some(p) = f.merged_into {
        qb.push(" AND merged_into = ").push_bind(p);
    }
    match &f.scope {
        None | Some(CaseScope::All) => {}
        Some(CaseScope::Department(d)) => {
            if driving_department(f) != Some(d) {
                push_member_of(qb, d);
            }
        }
        Some(CaseScope::Grids(grids)) if grids.is_empty() => {
            qb.push(" AND 1 = 0");
        }
        Some(CaseScope::Grids(grids)) => {
            qb.push(" AND grid IN (");
            let mut sep = qb.separated(", ");
            for g in grids {
                sep.push_bind(g.to_string());
            }
            sep.push_unseparated(")");
        }
        Some(CaseScope::Reporter(u)) => {
            qb.push(" AND reporter_user_id = ").push_bind(*u);
        }
        Some(CaseScope::Nothing) => {
            qb.push(" AND 1 = 0");
        }
    }
}

#[async_trait::async_trait]
impl Store for This {
    fn backend(&self) -> Backend {
        BACKEND
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        if !self.writer.is_alive() {
            return Err(StoreError::Closed);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ReferenceStore for This {
    async fn world_version(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT n FROM world_version WHERE id = 1").fetch_one(&self.read).await?)
    }

    async fn put_catalog(&self, classes: &[ComponentClass], matters: &[Matter]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM component_classes").execute(&mut *tx).await?;
        sqlx::query("DELETE FROM matters").execute(&mut *tx).await?;
        for c in classes {
            sqlx::query("INSERT INTO component_classes (code, body) VALUES ($1, $2)")
                .bind(c.code.to_string())
                .bind(to_json(c)?)
                .execute(&mut *tx)
                .await?;
        }
        for m in matters {
            sqlx::query("INSERT INTO matters (code, body) VALUES ($1, $2)")
                .bind(m.code.to_string())
                .bind(to_json(m)?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn component_classes(&self) -> Result<Vec<ComponentClass>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT body FROM component_classes ORDER BY code").fetch_all(&self.read).await?;
        rows.iter().map(|(b,)| from_json(b)).collect()
    }

    async fn matters(&self) -> Result<Vec<Matter>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT body FROM matters ORDER BY code").fetch_all(&self.read).await?;
        rows.iter().map(|(b,)| from_json(b)).collect()
    }

    async fn put_calendar(&self, entries: &[CalendarEntry]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for e in entries {
            sqlx::query(
                "INSERT INTO work_calendar (day, kind, name_zh, name_en) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (day) DO UPDATE SET kind = excluded.kind, name_zh = excluded.name_zh, \
                 name_en = excluded.name_en",
            )
            .bind(e.date.to_string())
            .bind(match e.kind {
                DayKind::Holiday => "holiday",
                DayKind::Workday => "workday",
            })
            .bind(&e.name_zh)
            .bind(&e.name_en)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn calendar(&self) -> Result<Vec<CalendarEntry>> {
        let rows: Vec<(String, String, String, String)> =
            sqlx::query_as("SELECT day, kind, name_zh, name_en FROM work_calendar ORDER BY day")
                .fetch_all(&self.read)
                .await?;
        rows.into_iter()
            .map(|(day, kind, name_zh, name_en)| {
                Ok(CalendarEntry {
                    date: parse(&day)?,
                    kind: if kind == "workday" { DayKind::Workday } else { DayKind::Holiday },
                    name_zh,
                    name_en,
                })
            })
            .collect()
    }

    async fn sla_policy(&self) -> Result<Option<civicgrid_core::sla::SlaPolicy>> {
        self.setting("sla_policy").await
    }

    async fn put_sla_policy(&self, policy: &civicgrid_core::sla::SlaPolicy, by: i64, now: Timestamp) -> Result<()> {
        self.put_setting("sla_policy", policy, by, now).await
    }

    async fn diversion_catalogue(&self) -> Result<Option<civicgrid_core::ticket::DiversionCatalogue>> {
        self.setting("diversion_catalogue").await
    }

    async fn put_diversion_catalogue(
        &self,
        catalogue: &civicgrid_core::ticket::DiversionCatalogue,
        by: i64,
        now: Timestamp,
    ) -> Result<()> {
        self.put_setting("diversion_catalogue", catalogue, by, now).await
    }

    async fn alarm_rules(&self) -> Result<Option<civicgrid_core::alarm::RuleSet>> {
        self.setting("alarm_rules").await
    }

    async fn put_alarm_rules(&self, rules: &civicgrid_core::alarm::RuleSet, by: i64, now: Timestamp) -> Result<()> {
        self.put_setting("alarm_rules", rules, by, now).await
    }

    async fn reply_hooks(&self) -> Result<std::collections::BTreeMap<i64, crate::ReplyHook>> {
        Ok(self.setting("reply_hooks").await?.unwrap_or_default())
    }

    async fn put_reply_hooks(
        &self,
        hooks: &std::collections::BTreeMap<i64, crate::ReplyHook>,
        by: i64,
        now: Timestamp,
    ) -> Result<()> {
        self.put_setting("reply_hooks", hooks, by, now).await
    }

    async fn routing_rules(&self) -> Result<Option<civicgrid_core::routing::RoutingTable>> {
        self.setting("routing_rules").await
    }

    async fn put_routing_rules(
        &self,
        table: &civicgrid_core::routing::RoutingTable,
        by: i64,
        now: Timestamp,
    ) -> Result<()> {
        self.put_setting("routing_rules", table, by, now).await
    }

    async fn put_town(&self, town: &Town) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM town").execute(&mut *tx).await?;
        sqlx::query("INSERT INTO town (code, name_zh, name_en) VALUES ($1, $2, $3)")
            .bind(town.code.to_string())
            .bind(&town.name_zh)
            .bind(&town.name_en)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn town(&self) -> Result<Option<Town>> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT code, name_zh, name_en FROM town").fetch_optional(&self.read).await?;
        row.map(|(code, name_zh, name_en)| Ok(Town { code: parse(&code)?, name_zh, name_en })).transpose()
    }

    async fn put_workstations(&self, items: &[Workstation]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for w in items {
            sqlx::query(
                "INSERT INTO workstations (code, name_zh, kind) VALUES ($1, $2, $3) \
                 ON CONFLICT (code) DO UPDATE SET name_zh = excluded.name_zh, kind = excluded.kind",
            )
            .bind(w.code.to_string())
            .bind(&w.name_zh)
            .bind(to_json(&w.kind)?.trim_matches('"').to_owned())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn workstations(&self) -> Result<Vec<Workstation>> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT code, name_zh, kind FROM workstations ORDER BY code").fetch_all(&self.read).await?;
        rows.into_iter()
            .map(|(code, name_zh, kind)| {
                Ok(Workstation { code: parse(&code)?, name_zh, kind: from_json(&format!("\"{kind}\""))? })
            })
            .collect()
    }

    async fn put_grids(&self, items: &[Grid]) -> Result<()> {
        let rows = items
            .iter()
            .map(|g| {
                area_row(
                    g.code.to_string(),
                    g.community.to_string(),
                    &g.name_zh,
                    g.households,
                    g.worker_user_id,
                    &g.polygon,
                )
            })
            .collect();
        self.put_areas(
            "INSERT INTO grids (code, community, name_zh, households, worker_user_id, polygon) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (code) DO UPDATE SET \
             community = excluded.community, name_zh = excluded.name_zh, households = excluded.households, \
             worker_user_id = excluded.worker_user_id, polygon = excluded.polygon",
            rows,
        )
        .await
    }

    async fn grids(&self) -> Result<Vec<Grid>> {
        let rows: Vec<AreaRow> = sqlx::query_as(
            "SELECT code, community, name_zh, households, worker_user_id, polygon FROM grids ORDER BY code",
        )
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|row| {
                from_area_row(row, |code, community, name_zh, households, worker_user_id, polygon| {
                    Ok(Grid {
                        code: parse(&code)?,
                        community: parse(&community)?,
                        name_zh,
                        households,
                        worker_user_id,
                        polygon,
                    })
                })
            })
            .collect()
    }

    async fn put_micro_grids(&self, items: &[MicroGrid]) -> Result<()> {
        let rows = items
            .iter()
            .map(|m| {
                area_row(
                    m.code.to_string(),
                    m.grid().to_string(),
                    &m.name_zh,
                    m.households,
                    m.worker_user_id,
                    &m.polygon,
                )
            })
            .collect();
        self.put_areas(
            "INSERT INTO micro_grids (code, grid, name_zh, households, worker_user_id, polygon) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (code) DO UPDATE SET \
             grid = excluded.grid, name_zh = excluded.name_zh, households = excluded.households, \
             worker_user_id = excluded.worker_user_id, polygon = excluded.polygon",
            rows,
        )
        .await
    }

    async fn micro_grids(&self) -> Result<Vec<MicroGrid>> {
        let rows: Vec<AreaRow> = sqlx::query_as(
            "SELECT code, grid, name_zh, households, worker_user_id, polygon FROM micro_grids ORDER BY code",
        )
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|row| {
                from_area_row(row, |code, _grid, name_zh, households, worker_user_id, polygon| {
                    Ok(MicroGrid { code: parse(&code)?, name_zh, households, worker_user_id, polygon })
                })
            })
            .collect()
    }

    async fn put_departments(&self, items: &[Department]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for d in items {
            sqlx::query(
                "INSERT INTO departments (code, name_zh, name_en, parent) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (code) DO UPDATE SET name_zh = excluded.name_zh, name_en = excluded.name_en, \
                 parent = excluded.parent",
            )
            .bind(d.code.to_string())
            .bind(&d.name_zh)
            .bind(&d.name_en)
            .bind(d.parent.as_ref().map(|p| p.to_string()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn departments(&self) -> Result<Vec<Department>> {
        let rows: Vec<(String, String, String, Option<String>)> =
            sqlx::query_as("SELECT code, name_zh, name_en, parent FROM departments ORDER BY code")
                .fetch_all(&self.read)
                .await?;
        rows.into_iter()
            .map(|(code, name_zh, name_en, parent)| {
                Ok(Department {
                    code: parse(&code)?,
                    name_zh,
                    name_en,
                    parent: parent.as_deref().map(parse).transpose()?,
                })
            })
            .collect()
    }

    async fn put_components(&self, items: &[Component]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for chunk in items.chunks(2000) {
            let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                "INSERT INTO components (id, class_code, name, status, lon, lat, grid, micro_grid, department) ",
            );
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(c.id.to_string())
                    .push_bind(c.id.class().to_string())
                    .push_bind(c.name.clone())
                    .push_bind(c.status.as_str())
                    .push_bind(c.location.lon)
                    .push_bind(c.location.lat)
                    .push_bind(c.grid.to_string())
                    .push_bind(c.micro_grid.to_string())
                    .push_bind(c.department.to_string());
            });
            qb.push(
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status, \
                 lon = excluded.lon, lat = excluded.lat, grid = excluded.grid, \
                 micro_grid = excluded.micro_grid, department = excluded.department",
            );
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn component(&self, id: ComponentId) -> Result<Option<Component>> {
        let row = sqlx::query_as(
            "SELECT id, name, status, lon, lat, grid, micro_grid, department FROM components WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await?;
        row.map(component_from_row).transpose()
    }

    async fn components_by_ids(&self, ids: &[ComponentId]) -> Result<Vec<Component>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                "SELECT id, name, status, lon, lat, grid, micro_grid, department FROM components WHERE id IN (",
            );
            push_list(&mut qb, chunk.iter().map(ToString::to_string));
            qb.push(")");
            let rows = qb.build_query_as().fetch_all(&self.read).await?;
            for row in rows {
                out.push(component_from_row(row)?);
            }
        }
        out.sort_by_key(|c| c.id);
        out.dedup_by_key(|c| c.id);
        Ok(out)
    }

    async fn list_components(&self, f: &ComponentFilter) -> Result<Vec<Component>> {
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(
            "SELECT id, name, status, lon, lat, grid, micro_grid, department FROM components WHERE 1 = 1",
        );
        if let Some(g) = f.grid {
            qb.push(" AND grid = ").push_bind(g.to_string());
        }
        if let Some(c) = f.class {
            qb.push(" AND class_code = ").push_bind(c.to_string());
        }
        if let Some(s) = f.status {
            qb.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(a) = f.after {
            qb.push(" AND id > ").push_bind(a.to_string());
        }
        qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(f.limit.clamp(1, 1000)));
        let rows = qb.build_query_as().fetch_all(&self.read).await?;
        rows.into_iter().map(component_from_row).collect()
    }
}

#[async_trait::async_trait]
impl AccountStore for This {
    async fn create_user(
        &self,
        u: &NewUser,
        key: Option<&crate::IdempotencyKey>,
        now: Timestamp,
    ) -> Result<crate::Created<User>> {
        crate::shared::once(key, move || async move {
            let mut tx = match self.begin_once(key, KeyTarget::User).await? {
                Ok(tx) => tx,
                Err(id) => return crate::shared::replay(self.user(id).await?),
            };
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO users (username, display_name, role, password_hash, department, phone, grids, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(&u.username)
            .bind(&u.display_name)
            .bind(u.role.as_str())
            .bind(&u.password_hash)
            .bind(u.department.as_ref().map(|d| d.to_string()))
            .bind(&u.phone)
            .bind(to_json(&u.grids)?)
            .bind(micros(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| map_db_error(e, "username"))?;
            commit_once(tx, key, KeyTarget::User, id, now).await?;
            let user = User {
                id,
                disabled_at: None,
                username: u.username.clone(),
                display_name: u.display_name.clone(),
                role: u.role,
                department: u.department.clone(),
                phone: u.phone.clone(),
                grids: u.grids.clone(),
                password_hash: u.password_hash.clone(),
            };
            Ok(crate::Created { value: user, replayed: false })
        })
        .await
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"));
        let row = sqlx::query_as(sql).bind(username.to_owned()).fetch_optional(&self.read).await?;
        row.map(user_from_row).transpose()
    }

    async fn user(&self, id: i64) -> Result<Option<User>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"));
        let row = sqlx::query_as(sql).bind(id).fetch_optional(&self.read).await?;
        row.map(user_from_row).transpose()
    }

    async fn users(&self) -> Result<Vec<User>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"));
        let rows = sqlx::query_as(sql).fetch_all(&self.read).await?;
        rows.into_iter().map(user_from_row).collect()
    }

    async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<()> {
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash.to_owned())
            .bind(user_id)
            .bind(micros(now))
            .bind(micros(expires_at))
            .execute(&mut *self.write_conn().await?)
            .await
            .map_err(|e| map_db_error(e, "token"))?;
        Ok(())
    }

    async fn session_user(&self, token_hash: &str, now: Timestamp) -> Result<Option<User>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM users u JOIN sessions s ON s.user_id = u.id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
            USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
        ));
        let row = sqlx::query_as(sql).bind(token_hash.to_owned()).bind(micros(now)).fetch_optional(&self.read).await?;
        row.map(user_from_row).transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash.to_owned())
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn delete_user_sessions(&self, user_id: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected())
    }

    async fn set_user_disabled(&self, user_id: i64, at: Option<Timestamp>) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(at.map(micros))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if at.is_some() {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_password_hash(&self, user_id: i64, hash: &str, keep_session: Option<&str>) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash.to_owned())
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(user_id)
            .bind(keep_session.unwrap_or("").to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_sessions(&self, now: Timestamp) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(micros(now))
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait::async_trait]
impl CaseStore for This {
    async fn create_case(&self, new: NewCase) -> Result<Case> {
        Ok(self.writer.create(new).await?.value)
    }

    async fn create_case_once(&self, new: NewCase) -> Result<crate::Created> {
        self.writer.create(new).await
    }

    async fn case_made_by(&self, key: &crate::IdempotencyKey) -> Result<Option<Case>> {
        let mut conn = self.read.acquire().await?;
        let Some((fingerprint, id)) = find_key(&mut conn, key, KeyTarget::Case).await? else {
            return Ok(None);
        };
        if fingerprint != key.fingerprint {
            return Err(StoreError::IdempotencyMismatch);
        }
        drop(conn);
        match id {
            Some(id) => self.case(id).await,
            None => Ok(None),
        }
    }

    async fn purge_idempotency(&self, before: Timestamp) -> Result<u64> {
        // Upstream ticket numbers (scope `ticket:<channel>`) are kept for good: a ticket pushed again
        // months later is still the same case.
        let done = sqlx::query("DELETE FROM idempotency WHERE created_at < $1 AND scope NOT LIKE 'ticket:%'")
            .bind(micros(before))
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected())
    }

    async fn append(&self, id: CaseId, expected_version: i64, event: CaseEvent) -> Result<CaseStatus> {
        self.writer.append(id, expected_version, event).await
    }

    async fn case(&self, id: CaseId) -> Result<Option<Case>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = $1"));
        let row = sqlx::query_as(sql).bind(id).fetch_optional(&self.read).await?;
        row.map(case_from_row).transpose()
    }

    async fn case_by_number(&self, number: &str) -> Result<Option<Case>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {CASE_COLUMNS} FROM cases WHERE number = $1"));
        let row = sqlx::query_as(sql).bind(number).fetch_optional(&self.read).await?;
        row.map(case_from_row).transpose()
    }

    async fn case_events(&self, id: CaseId) -> Result<Vec<CaseEvent>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT body FROM case_events WHERE case_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|(b,)| from_json(b)).collect()
    }

    async fn list_cases(&self, filter: &CaseFilter, page: PageRequest) -> Result<Page<Case>> {
        let limit = i64::from(page.limit.clamp(1, 500));
        let (mut qb, key) = case_query("", filter, false);
        if let Some(before) = page.before {
            qb.push(format!(" AND {key} < ")).push_bind(before);
        }
        qb.push(format!(" ORDER BY {key} DESC LIMIT ")).push_bind(limit + 1);
        let rows: Vec<(i64, String, String, String)> = qb.build_query_as().fetch_all(&self.read).await?;
        crate::shared::keyset_page(rows, limit as usize, case_from_row, |c| c.id)
    }

    async fn count_cases(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM cases").fetch_one(&self.read).await?)
    }

    async fn count_matching(&self, filter: &CaseFilter, cap: u32) -> Result<i64> {
        // Newest first, like the list the count stands beside: a capped count of recent cases (the
        // last week's closures) stops after `cap` rows instead of walking the whole year to them.
        let (mut qb, key) = case_query("SELECT COUNT(*) FROM (", filter, true);
        qb.push(format!(" ORDER BY {key} DESC LIMIT ")).push_bind(i64::from(cap)).push(") AS matching");
        Ok(qb.build_query_scalar().fetch_one(&self.read).await?)
    }

    async fn open_cases(&self, limit: u32) -> Result<Vec<crate::OpenCase>> {
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(
            "SELECT id, number, grid, matter, source, state, lead_dept, lon, lat, reported_at, due_at, \
             escalation_level, component_id IS NOT NULL FROM cases WHERE state IN (",
        );
        let mut states = qb.separated(", ");
        for s in CaseState::ACTIVE {
            states.push_bind(s.as_str());
        }
        qb.push(") ORDER BY id DESC LIMIT ").push_bind(i64::from(limit));
        let rows: Vec<OpenCaseRow> = qb.build_query_as().fetch_all(&self.read).await?;
        rows.into_iter().map(open_case_from_row).collect()
    }

    async fn import_cases(&self, town: civicgrid_core::codes::TownCode, cases: Vec<ImportCase>) -> Result<Vec<CaseId>> {
        self.writer.import(town.to_string(), cases).await
    }
}

/// Records a log reader's position; a position never moves back.
const ADVANCE_CONSUMER: &str = "INSERT INTO log_consumers (name, position) VALUES ($1, $2) ON CONFLICT (name) \
     DO UPDATE SET position = excluded.position WHERE log_consumers.position < excluded.position";

/// Jobs per multi-row insert (nine values each, well under either backend's limit on parameters).
const JOB_CHUNK: usize = 500;

/// One INSERT of pending jobs (with their payloads' JSON, in the same order), each unless a job with its
/// effect key exists.
fn insert_jobs(jobs: &[&crate::NewJob], payloads: &[String], now: i64) -> QueryBuilder<Db> {
    let mut q: QueryBuilder<Db> = QueryBuilder::new(
        "INSERT INTO jobs (kind, effect_key, payload, state, run_at, attempts, max_attempts, created_at, updated_at) ",
    );
    q.push_values(jobs.iter().zip(payloads), |mut b, (job, payload)| {
        b.push_bind(job.kind.as_str())
            .push_bind(job.effect_key.as_str())
            .push_bind(payload.as_str())
            .push("'pending'")
            .push_bind(micros(job.run_at))
            .push("0")
            .push_bind(i64::from(job.max_attempts.max(1)))
            .push_bind(now)
            .push_bind(now);
    });
    q.push(" ON CONFLICT (effect_key) DO NOTHING");
    q
}

#[async_trait::async_trait]
impl crate::JobStore for This {
    async fn enqueue(&self, job: &crate::NewJob, now: Timestamp) -> Result<bool> {
        let payload = [to_json(&job.payload)?];
        let done = insert_jobs(&[job], &payload, micros(now)).build().execute(&mut *self.write_conn().await?).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn enqueue_many(&self, jobs: &[crate::NewJob], reader: Option<(&str, i64)>, now: Timestamp) -> Result<u64> {
        let now = micros(now);
        // One row per effect key: a batch may name a timer twice (two events with the same deadline).
        let mut seen = std::collections::HashSet::new();
        let jobs: Vec<&crate::NewJob> = jobs.iter().filter(|j| seen.insert(j.effect_key.as_str())).collect();
        let payloads = jobs.iter().map(|j| to_json(&j.payload)).collect::<Result<Vec<_>>>()?;
        let mut tx = self.write_tx().await?;
        let mut added = 0;
        for (chunk, payloads) in jobs.chunks(JOB_CHUNK).zip(payloads.chunks(JOB_CHUNK)) {
            added += insert_jobs(chunk, payloads, now).build().execute(&mut *tx).await?.rows_affected();
        }
        if let Some((name, position)) = reader {
            sqlx::query(ADVANCE_CONSUMER).bind(name.to_owned()).bind(position).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    async fn claim_jobs(
        &self,
        owner: &str,
        now: Timestamp,
        lease: jiff::SignedDuration,
        limit: u32,
    ) -> Result<Vec<crate::Job>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
             WHERE id IN (SELECT id FROM jobs WHERE (state = 'pending' AND run_at <= $3) \
             OR (state = 'running' AND lease_until <= $3) ORDER BY run_at LIMIT $4{}) RETURNING {JOB_COLUMNS}",
            Self::SKIP_LOCKED
        ));
        let rows: Vec<JobRow> = sqlx::query_as(sql)
            .bind(owner.to_owned())
            .bind(micros(now + lease))
            .bind(micros(now))
            .bind(i64::from(limit.clamp(1, 100)))
            .fetch_all(&mut *self.write_conn().await?)
            .await?;
        let mut jobs = rows.into_iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|j| (j.run_at, j.id));
        Ok(jobs)
    }

    async fn complete_job(&self, id: i64, owner: &str, now: Timestamp) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'done', lease_owner = NULL, lease_until = NULL, updated_at = $3 \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner.to_owned())
        .bind(micros(now))
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn fail_job(
        &self,
        id: i64,
        owner: &str,
        now: Timestamp,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<bool> {
        let error: String = error.chars().take(2000).collect();
        let done = sqlx::query(
            "UPDATE jobs SET state = $4, run_at = COALESCE($5, run_at), last_error = $6, lease_owner = NULL, \
             lease_until = NULL, updated_at = $3 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner.to_owned())
        .bind(micros(now))
        .bind(if retry_at.is_some() { "pending" } else { "dead" })
        .bind(retry_at.map(micros))
        .bind(error)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn job(&self, effect_key: &str) -> Result<Option<crate::Job>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE effect_key = $1"));
        let row: Option<JobRow> = sqlx::query_as(sql).bind(effect_key.to_owned()).fetch_optional(&self.read).await?;
        row.map(job_from_row).transpose()
    }

    async fn job_counts(&self) -> Result<crate::JobCounts> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs WHERE state <> 'done' GROUP BY state")
                .fetch_all(&self.read)
                .await?;
        let mut counts = crate::JobCounts::default();
        for (state, n) in rows {
            match state.as_str() {
                "pending" => counts.pending = n,
                "running" => counts.running = n,
                "dead" => counts.dead = n,
                _ => {}
            }
        }
        Ok(counts)
    }
}

#[async_trait::async_trait]
impl crate::IntegrationStore for This {
    async fn create_service_account(
        &self,
        name: &str,
        channel: civicgrid_core::access::Channel,
        now: Timestamp,
        key: Option<&crate::IdempotencyKey>,
    ) -> Result<crate::Created<crate::ServiceAccount>> {
        crate::shared::once(key, move || async move {
            let mut tx = match self.begin_once(key, KeyTarget::ServiceAccount).await? {
                Ok(tx) => tx,
                Err(id) => {
                    let first = self.service_accounts().await?.into_iter().find(|a| a.id == id);
                    return crate::shared::replay(first);
                }
            };
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO service_accounts (name, channel, created_at) VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(name.to_owned())
            .bind(channel.as_str())
            .bind(micros(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| map_db_error(e, "name"))?;
            commit_once(tx, key, KeyTarget::ServiceAccount, id, now).await?;
            let account = crate::ServiceAccount {
                id,
                name: name.to_owned(),
                channel,
                created_at: ts(micros(now))?,
                disabled_at: None,
            };
            Ok(crate::Created { value: account, replayed: false })
        })
        .await
    }

    async fn service_accounts(&self) -> Result<Vec<crate::ServiceAccount>> {
        let rows: Vec<AccountRow> =
            sqlx::query_as("SELECT id, name, channel, created_at, disabled_at FROM service_accounts ORDER BY id")
                .fetch_all(&self.read)
                .await?;
        rows.into_iter().map(service_account_from_row).collect()
    }

    async fn set_service_account_disabled(&self, id: i64, disabled_at: Option<Timestamp>) -> Result<bool> {
        let done = sqlx::query("UPDATE service_accounts SET disabled_at = $1 WHERE id = $2")
            .bind(disabled_at.map(micros))
            .bind(id)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn add_api_key(
        &self,
        account_id: i64,
        prefix: &str,
        key_hash: &str,
        now: Timestamp,
        key: Option<&crate::IdempotencyKey>,
    ) -> Result<crate::Created<crate::ApiKeyInfo>> {
        crate::shared::once(key, move || async move {
            let mut tx = match self.begin_once(key, KeyTarget::ApiKey).await? {
                Ok(tx) => tx,
                Err(id) => {
                    let first = self.api_keys(account_id).await?.into_iter().find(|k| k.id == id);
                    return crate::shared::replay(first);
                }
            };
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO api_keys (account_id, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(account_id)
            .bind(prefix.to_owned())
            .bind(key_hash.to_owned())
            .bind(micros(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| map_db_error(e, "key"))?;
            commit_once(tx, key, KeyTarget::ApiKey, id, now).await?;
            let info = crate::ApiKeyInfo {
                id,
                account_id,
                prefix: prefix.to_owned(),
                created_at: ts(micros(now))?,
                last_used_at: None,
                revoked_at: None,
            };
            Ok(crate::Created { value: info, replayed: false })
        })
        .await
    }

    async fn api_keys(&self, account_id: i64) -> Result<Vec<crate::ApiKeyInfo>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.account_id = $1 ORDER BY k.id DESC"
        ));
        let rows: Vec<KeyRow> = sqlx::query_as(sql).bind(account_id).fetch_all(&self.read).await?;
        rows.into_iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, key_id: i64, now: Timestamp) -> Result<bool> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(micros(now))
            .bind(key_id)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn api_key_account(&self, key_hash: &str) -> Result<Option<(crate::ServiceAccount, crate::ApiKeyInfo)>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT a.id, a.name, a.channel, a.created_at, a.disabled_at, {KEY_COLUMNS} FROM api_keys k \
             JOIN service_accounts a ON a.id = k.account_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND a.disabled_at IS NULL"
        ));
        let row: Option<(i64, String, String, i64, Option<i64>, i64, i64, String, i64, Option<i64>, Option<i64>)> =
            sqlx::query_as(sql).bind(key_hash.to_owned()).fetch_optional(&self.read).await?;
        row.map(|(a0, a1, a2, a3, a4, k0, k1, k2, k3, k4, k5)| {
            Ok((service_account_from_row((a0, a1, a2, a3, a4))?, api_key_from_row((k0, k1, k2, k3, k4, k5))?))
        })
        .transpose()
    }

    async fn touch_api_key(&self, key_id: i64, now: Timestamp) -> Result<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(micros(now))
            .bind(key_id)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }
}

async fn insert_attachment_row(
    tx: &mut <Db as sqlx::Database>::Connection,
    a: &crate::StoredAttachment,
) -> Result<crate::StoredAttachment> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO attachments (sha256, name, mime, size, uploaded_by, uploaded_at, taken_at, lon, lat, \
         width, height, thumb_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(a.sha256.clone())
    .bind(a.name.clone())
    .bind(a.mime.clone())
    .bind(i64::try_from(a.size).unwrap_or(i64::MAX))
    .bind(a.uploaded_by.clone())
    .bind(micros(a.uploaded_at))
    .bind(a.taken_at.map(micros))
    .bind(a.location.map(|p| p.lon))
    .bind(a.location.map(|p| p.lat))
    .bind(a.width.map(i64::from))
    .bind(a.height.map(i64::from))
    .bind(a.thumb_sha256.clone())
    .fetch_one(&mut *tx)
    .await?;
    Ok(crate::StoredAttachment { id, case_id: None, ..a.clone() })
}

#[async_trait::async_trait]
impl crate::AttachmentStore for This {
    async fn insert_attachment_once(
        &self,
        a: &crate::StoredAttachment,
        key: &crate::IdempotencyKey,
    ) -> Result<crate::Created<crate::StoredAttachment>> {
        crate::shared::once(Some(key), move || async move {
            let mut tx = match self.begin_once(Some(key), KeyTarget::Attachment).await? {
                Ok(tx) => tx,
                Err(id) => return crate::shared::replay(self.attachment(id).await?),
            };
            let stored = insert_attachment_row(&mut tx, a).await?;
            commit_once(tx, Some(key), KeyTarget::Attachment, stored.id, a.uploaded_at).await?;
            Ok(crate::Created { value: stored, replayed: false })
        })
        .await
    }

    async fn insert_attachment(&self, a: &crate::StoredAttachment) -> Result<crate::StoredAttachment> {
        let mut tx = self.write_tx().await?;
        let stored = insert_attachment_row(&mut tx, a).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn attachment(&self, id: i64) -> Result<Option<crate::StoredAttachment>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE id = $1"));
        let row: Option<AttachmentRow> = sqlx::query_as(sql).bind(id).fetch_optional(&self.read).await?;
        row.map(attachment_from_row).transpose()
    }

    async fn case_attachments(&self, case_id: CaseId) -> Result<Vec<crate::StoredAttachment>> {
        let sql =
            sqlx::AssertSqlSafe(format!("SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE case_id = $1 ORDER BY id"));
        let rows: Vec<AttachmentRow> = sqlx::query_as(sql).bind(case_id).fetch_all(&self.read).await?;
        rows.into_iter().map(attachment_from_row).collect()
    }

    async fn put_blob(&self, sha256: &str, content: &[u8]) -> Result<()> {
        sqlx::query("INSERT INTO blobs (sha256, size, content) VALUES ($1, $2, $3) ON CONFLICT (sha256) DO NOTHING")
            .bind(sha256.to_owned())
            .bind(i64::try_from(content.len()).unwrap_or(i64::MAX))
            .bind(content.to_vec())
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    async fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT content FROM blobs WHERE sha256 = $1")
            .bind(sha256.to_owned())
            .fetch_optional(&self.read)
            .await?)
    }
}

/// A case event's log entry from its parts.
#[allow(clippy::too_many_arguments)] // the columns of one row
fn case_entry(
    seq: i64,
    case_id: i64,
    body: &str,
    number: String,
    grid: &str,
    lead: Option<&str>,
    co: &str,
    reporter: Option<i64>,
) -> Result<LogEntry> {
    Ok(LogEntry {
        seq,
        stream: crate::Stream::Case,
        case_id,
        number,
        grid: parse(grid)?,
        lead_dept: lead.map(parse).transpose()?,
        co_depts: from_json(co)?,
        reporter_user_id: reporter,
        event: from_json(body)?,
    })
}

/// The log's case entries with their events: what both readings of the log select from.
const CASE_LOG: &str = "FROM event_log l JOIN case_events e ON e.case_id = l.stream_id AND e.seq = l.version";
/// A page of them: numbers above `$1`, at most `$2`, in order.
const CASE_LOG_PAGE: &str = "WHERE l.seq > $1 AND l.stream = 'case' ORDER BY l.seq LIMIT $2";

impl This {
    /// The readers' view of the log read from the database: [`EventLog::case_log_after`] without the
    /// memory of recent commits.
    async fn stored_case_log_after(&self, after: i64, limit: u32) -> Result<Vec<crate::CaseLogEntry>> {
        let sql = format!("SELECT l.seq, l.stream_id, e.body {CASE_LOG} {CASE_LOG_PAGE}");
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(&self.read)
            .await?;
        rows.into_iter()
            .map(|(seq, case_id, body)| {
                Ok(crate::CaseLogEntry { seq, case_id, event: std::sync::Arc::new(from_json(&body)?) })
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl EventLog for This {
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<LogEntry>> {
        type Row = (i64, i64, String, String, String, Option<String>, String, Option<i64>);
        let sql = format!(
            "SELECT l.seq, l.stream_id, e.body, c.number, c.grid, c.lead_dept, c.co_depts, c.reporter_user_id \
             {CASE_LOG} JOIN cases c ON c.id = l.stream_id {CASE_LOG_PAGE}"
        );
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(&self.read)
            .await?;
        rows.into_iter()
            .map(|(seq, case_id, body, number, grid, lead, co, reporter)| {
                case_entry(seq, case_id, &body, number, &grid, lead.as_deref(), &co, reporter)
            })
            .collect()
    }

    async fn case_log_after(&self, after: i64, limit: u32) -> Result<Vec<crate::CaseLogEntry>> {
        let limit = limit.clamp(1, 1000);
        let Some(mut run) = self.recent.after(after, limit as usize) else {
            return self.stored_case_log_after(after, limit).await;
        };
        // A read shorter than asked means "nothing more yet" to a reader: when the run stops at a hole
        // before the newest commit known here, the database gives the rest.
        let end = run.last().map_or(after, |e| e.seq);
        if run.len() < limit as usize && end < *self.feed.borrow() {
            run.extend(self.stored_case_log_after(end, limit - run.len() as u32).await?);
        }
        Ok(run)
    }

    async fn feed_after(&self, after: i64, limit: u32) -> Result<Vec<crate::FeedEntry>> {
        use crate::FeedEntry;
        // seq, stream, stream id, version; the case's event body, number, grid, lead, co-departments and
        // reporter; the alarm's note and body. One statement, so one snapshot of the log.
        type Row = (
            i64,
            String,
            i64,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT l.seq, l.stream, l.stream_id, l.version, e.body, c.number, c.grid, c.lead_dept, c.co_depts, \
             c.reporter_user_id, a.note, a.body FROM event_log l \
             LEFT JOIN case_events e ON l.stream = 'case' AND e.case_id = l.stream_id AND e.seq = l.version \
             LEFT JOIN cases c ON l.stream = 'case' AND c.id = l.stream_id \
             LEFT JOIN alarm_events a ON l.stream = 'alarm' AND a.alarm_id = l.stream_id AND a.version = l.version \
             WHERE l.seq > $1 AND l.stream IN ('case', 'alarm') ORDER BY l.seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(seq, stream, id, version, body, number, grid, lead, co, reporter, note, alarm)| {
                match (stream.as_str(), body, number, grid, co, note, alarm) {
                    ("case", Some(body), Some(number), Some(grid), Some(co), _, _) => {
                        Ok(FeedEntry::Case(case_entry(seq, id, &body, number, &grid, lead.as_deref(), &co, reporter)?))
                    }
                    ("alarm", _, _, _, _, Some(note), Some(alarm)) => Ok(FeedEntry::Alarm(crate::AlarmLogEntry {
                        seq,
                        stream: crate::Stream::Alarm,
                        note,
                        alarm: super::alarm_queries::alarm_from_row((id, version, alarm))?,
                    })),
                    _ => Err(StoreError::Corrupt(format!("event log entry {seq} has no {stream} event"))),
                }
            })
            .collect()
    }

    async fn first_seq_since(&self, at: Timestamp) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT seq FROM event_log WHERE at >= $1 ORDER BY at LIMIT 1")
            .bind(micros(at))
            .fetch_optional(&self.read)
            .await?)
    }

    async fn last_seq(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM event_log").fetch_one(&self.read).await?)
    }

    async fn last_case_seq(&self) -> Result<i64> {
        // Backwards from the newest entry: case entries are nearly always among the last few.
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM event_log WHERE stream = 'case' ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.read)
                .await?;
        Ok(seq.unwrap_or(0))
    }

    async fn consumer_position(&self, name: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT position FROM log_consumers WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&self.read)
            .await?)
    }

    async fn advance_consumer(&self, name: &str, position: i64) -> Result<()> {
        sqlx::query(ADVANCE_CONSUMER)
            .bind(name.to_owned())
            .bind(position)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(())
    }

    fn committed(&self) -> tokio::sync::watch::Receiver<i64> {
        self.feed.subscribe()
    }
}
