//! What one group-commit batch does, written once for both backends: settle each create's idempotency
//! key, number and insert the new cases, fold each appended event into the status read inside the
//! transaction, link attachments, record department assignments, insert the events and number them in
//! the global log.
//!
//! The statements themselves are the backend's: [`BatchTx`] is the handful of primitives a batch needs,
//! implemented on PostgreSQL with sqlx and on SQLite with rusqlite (on the writer's own thread, where
//! every primitive completes at once). Beginning and committing the transaction is the caller's.

use std::collections::BTreeMap;
use std::sync::Arc;

use civicgrid_core::case::{Case, CaseEvent, CaseFacts, CaseId, CaseStatus};
use jiff::Timestamp;

use crate::recent::RecentLog;
use crate::rows::{CaseInsert, CreatePlan, KeyTarget};
use crate::shared::{StatusColumns, case_number, day_key, from_json};
use crate::writer::{PreparedCreate, PreparedImport, WriteOp, Written};
use crate::{Created, IdempotencyKey, Result, StoreError};

/// The statements a batch runs inside one open transaction.
pub(crate) trait BatchTx {
    /// The fingerprint and id an idempotency key was stored with, if it was.
    async fn find_key(&mut self, k: &IdempotencyKey, target: KeyTarget) -> Result<Option<(String, Option<i64>)>>;
    /// Stores what an idempotency key made.
    async fn store_key(&mut self, k: &IdempotencyKey, target: KeyTarget, id: i64, at: Timestamp) -> Result<()>;
    /// One case.
    async fn case(&mut self, id: i64) -> Result<Case>;
    /// Adds `n` to the day's case counter and returns its new value.
    async fn bump_counter(&mut self, day: &str, n: i64) -> Result<i64>;
    /// Inserts case rows; returns their ids in the order given.
    async fn insert_cases(&mut self, rows: &[CaseInsert<'_>]) -> Result<Vec<i64>>;
    /// A case's stored version and status JSON.
    async fn case_status(&mut self, id: i64) -> Result<Option<(i64, String)>>;
    /// Overwrites a case's status columns, if it is still at `expected`; whether it was. (On
    /// PostgreSQL another node may move the case between reading its status and this update: the
    /// update then waits for that transaction and finds the version changed.)
    async fn update_status(&mut self, id: i64, expected: i64, st: &StatusColumns) -> Result<bool>;
    /// Adds (department, case) rows.
    async fn add_departments(&mut self, rows: &[(String, i64)]) -> Result<()>;
    /// Removes one (department, case) row.
    async fn remove_department(&mut self, dept: &str, case_id: i64) -> Result<()>;
    /// Gives an uploaded attachment to a case, if it has no case or already this one; whether it did.
    async fn link_attachment(&mut self, case_id: i64, attachment_id: i64) -> Result<bool>;
    /// Inserts events (case id, event, event JSON) and numbers them in the global event log, in the
    /// order given; returns the last number handed out. Called once per batch, as its last statement:
    /// on PostgreSQL the numbers come from a counter row held from here to the commit, so readers see
    /// them in order.
    async fn insert_events(&mut self, rows: &[(i64, &CaseEvent, &str)]) -> Result<i64>;
}

/// What a batch did, for its caller to act on once it has committed.
pub(crate) struct Applied {
    /// Each op's outcome, in order.
    pub(crate) outcomes: Vec<Result<Written>>,
    /// The last event-log number handed out, if any was.
    pub(crate) last: Option<i64>,
    /// The batch's case events in log order (numbered up to `last`), for [`crate::recent::RecentLog`];
    /// empty when the memory is off, or the batch imported history (read back from the database).
    pub(crate) logged: Vec<(CaseId, Arc<CaseEvent>)>,
}

impl Applied {
    /// Tells `recent` about the committed batch's case events and moves the commit hint `feed`; the
    /// ops' outcomes, to answer their callers.
    pub(crate) fn publish(self, recent: &RecentLog, feed: &tokio::sync::watch::Sender<i64>) -> Vec<Result<Written>> {
        if let Some(last) = self.last {
            if !self.logged.is_empty() {
                recent.record(last, self.logged);
            }
            crate::shared::advance(feed, last);
        }
        self.outcomes
    }
}

/// Applies `ops` inside the open transaction `tx`; with `keep`, the batch's case events are kept for
/// the memory of recent commits. An outer error means the whole batch must be rolled back.
pub(crate) async fn apply<T: BatchTx>(tx: &mut T, ops: &[WriteOp], keep: bool) -> Result<Applied> {
    let plans = plan_creates(tx, ops).await?;
    let creates: Vec<&PreparedCreate> = plans
        .iter()
        .filter_map(|p| match (p, ops.get(p.op())) {
            (CreatePlan::Insert(_), Some(WriteOp::Create(c))) => Some(c.as_ref()),
            _ => None,
        })
        .collect();
    let mut inserted = match creates.first() {
        Some(first) => {
            let rows = creates.iter().map(|c| (&c.new.facts, c.facts_json.as_str(), &c.cols));
            insert_new(tx, &first.new.town.to_string(), rows).await?
        }
        None => Vec::new(),
    }
    .into_iter();
    let mut plans = plans.into_iter();
    let mut created: BTreeMap<usize, Case> = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(ops.len());
    let mut events: Vec<(i64, &CaseEvent, &str)> = Vec::with_capacity(ops.len());
    let mut assigned: Vec<(String, i64)> = Vec::new();
    for op in ops {
        match op {
            WriteOp::Create(prepared) => {
                let outcome = match plans.next() {
                    Some(CreatePlan::Insert(i)) => {
                        let (number, id) =
                            inserted.next().ok_or(StoreError::Corrupt("insert returned no id".into()))?;
                        let (n, status) = (&prepared.new, &prepared.status);
                        events.push((id, &n.event, prepared.event_json.as_str()));
                        assigned.extend(departments(status).map(|d| (d, id)));
                        if let Some(k) = &n.idempotency {
                            tx.store_key(k, KeyTarget::Case, id, n.facts.reported_at).await?;
                        }
                        link_attachments(tx, id, &n.facts.attachments).await?;
                        let case = Case { id, number, facts: n.facts.clone(), status: status.clone() };
                        created.insert(i, case.clone());
                        Ok(Written::Created(Created { value: case, replayed: false }))
                    }
                    Some(CreatePlan::Replay(i, case)) => {
                        created.insert(i, (*case).clone());
                        Ok(Written::Created(Created { value: *case, replayed: true }))
                    }
                    Some(CreatePlan::Refuse(_, e)) => Err(e),
                    Some(CreatePlan::SameAs(_, first)) => same_as(ops, first, &created, prepared),
                    None => return Err(StoreError::Corrupt("create without a plan".into())),
                };
                outcomes.push(outcome);
            }
            WriteOp::Append { id, expected, event, event_json } => {
                match fold_and_update(tx, *id, *expected, event).await {
                    Ok(Some(status)) => {
                        link_attachments(tx, *id, &event.evidence).await?;
                        events.push((*id, event, event_json.as_str()));
                        outcomes.push(Ok(Written::Appended(status)));
                    }
                    Ok(None) => outcomes.push(Err(StoreError::Conflict { expected: *expected })),
                    Err(e @ (StoreError::NotFound | StoreError::BadEvent(_))) => outcomes.push(Err(e)),
                    Err(e) => return Err(e),
                }
            }
            WriteOp::Import(import) => {
                let ids = add_import(tx, import, &mut events, &mut assigned).await?;
                outcomes.push(Ok(Written::Imported(ids)));
            }
        }
    }
    if !assigned.is_empty() {
        tx.add_departments(&assigned).await?;
    }
    let last = if events.is_empty() { None } else { Some(tx.insert_events(&events).await?) };
    let imported = ops.iter().any(|op| matches!(op, WriteOp::Import(_)));
    let logged = match keep && !imported {
        true => events.iter().map(|(id, e, _)| (*id, Arc::new((*e).clone()))).collect(),
        false => Vec::new(),
    };
    Ok(Applied { outcomes, last, logged })
}

/// Inserts an import's cases and queues their events, oldest first, and departments; the cases' ids.
async fn add_import<'a, T: BatchTx>(
    tx: &mut T,
    import: &'a PreparedImport,
    events: &mut Vec<(i64, &'a CaseEvent, &'a str)>,
    assigned: &mut Vec<(String, i64)>,
) -> Result<Vec<i64>> {
    let rows = import.cases.iter().zip(&import.encoded).map(|(c, (json, cols))| (&c.facts, json.as_str(), cols));
    let inserted = insert_new(tx, &import.town, rows).await?;
    let mut history = Vec::new();
    let mut ids = Vec::with_capacity(inserted.len());
    for ((c, (_, id)), bodies) in import.cases.iter().zip(inserted).zip(&import.event_json) {
        // Uploaded photos a history names become the case's, as they do when a live step names them.
        link_attachments(tx, id, &c.facts.attachments).await?;
        for e in &c.events {
            link_attachments(tx, id, &e.evidence).await?;
        }
        history.extend(c.events.iter().zip(bodies).map(|(e, body)| (id, e, body.as_str())));
        assigned.extend(departments(&c.status).map(|d| (d, id)));
        ids.push(id);
    }
    // History enters the global log in the order it happened.
    history.sort_by_key(|(id, e, _)| (e.at, *id, e.seq));
    events.extend(history);
    Ok(ids)
}

/// Numbers and inserts new case rows (facts, facts JSON, status columns); returns each one's number and
/// id, in the order given.
async fn insert_new<'a, T: BatchTx>(
    tx: &mut T,
    town: &str,
    rows: impl Iterator<Item = (&'a CaseFacts, &'a str, &'a StatusColumns)> + Clone,
) -> Result<Vec<(String, i64)>> {
    let numbers = allocate_numbers(tx, town, rows.clone().map(|(facts, _, _)| facts.reported_at)).await?;
    let inserts: Vec<CaseInsert<'_>> = rows
        .zip(&numbers)
        .map(|((facts, facts_json, cols), number)| CaseInsert { number: number.clone(), facts, facts_json, cols })
        .collect();
    let ids = tx.insert_cases(&inserts).await?;
    Ok(numbers.into_iter().zip(ids).collect())
}

/// Decides, for every create of the batch, whether to insert it: a key already stored gets the first
/// case back; a key repeated within the batch follows its first use.
async fn plan_creates<T: BatchTx>(tx: &mut T, ops: &[WriteOp]) -> Result<Vec<CreatePlan>> {
    let mut plans = Vec::new();
    let mut seen_keys: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let WriteOp::Create(p) = op else { continue };
        let plan = match &p.new.idempotency {
            None => CreatePlan::Insert(i),
            Some(k) => match seen_keys.get(&(k.scope.as_str(), k.key.as_str())) {
                Some(first) => CreatePlan::SameAs(i, *first),
                None => {
                    seen_keys.insert((&k.scope, &k.key), i);
                    match known_key(tx, k, KeyTarget::Case).await {
                        Ok(Some(id)) => CreatePlan::Replay(i, Box::new(tx.case(id).await?)),
                        Ok(None) => CreatePlan::Insert(i),
                        Err(e @ StoreError::IdempotencyMismatch) => CreatePlan::Refuse(i, e),
                        Err(e) => return Err(e),
                    }
                }
            },
        };
        plans.push(plan);
    }
    Ok(plans)
}

/// The answer to a create whose key an earlier create of the same batch used.
fn same_as(ops: &[WriteOp], first: usize, created: &BTreeMap<usize, Case>, this: &PreparedCreate) -> Result<Written> {
    let first_key = ops.get(first).and_then(|op| match op {
        WriteOp::Create(f) => f.new.idempotency.as_ref(),
        _ => None,
    });
    match (created.get(&first), first_key) {
        (Some(case), Some(k)) if Some(k) == this.new.idempotency.as_ref() => {
            Ok(Written::Created(Created { value: case.clone(), replayed: true }))
        }
        (Some(_), _) => Err(StoreError::IdempotencyMismatch),
        // The first use was refused; a retry, alone, gets the right answer.
        (None, _) => Err(StoreError::Conflict { expected: 0 }),
    }
}

/// The id of what an idempotency key made; `IdempotencyMismatch` if the key came with another request,
/// or made another kind of record.
async fn known_key<T: BatchTx>(tx: &mut T, k: &IdempotencyKey, target: KeyTarget) -> Result<Option<i64>> {
    key_match(tx.find_key(k, target).await?, k)
}

/// Whether a stored idempotency row (fingerprint, id) answers `k`: the id, nothing stored, or
/// `IdempotencyMismatch`.
pub(crate) fn key_match(row: Option<(String, Option<i64>)>, k: &IdempotencyKey) -> Result<Option<i64>> {
    match row {
        None => Ok(None),
        Some((fingerprint, Some(id))) if fingerprint == k.fingerprint => Ok(Some(id)),
        Some(_) => Err(StoreError::IdempotencyMismatch),
    }
}

/// Case numbers for cases reported at `reported`, in order: town code, local day, serial of the day.
async fn allocate_numbers<T: BatchTx>(
    tx: &mut T,
    town: &str,
    reported: impl Iterator<Item = Timestamp> + Clone,
) -> Result<Vec<String>> {
    let mut per_day: BTreeMap<String, i64> = BTreeMap::new();
    for t in reported.clone() {
        *per_day.entry(day_key(t)).or_default() += 1;
    }
    let mut next: BTreeMap<String, i64> = BTreeMap::new();
    for (day, n) in per_day {
        let last = tx.bump_counter(&day, n).await?;
        next.insert(day, last - n + 1);
    }
    Ok(reported
        .map(|t| {
            let day = day_key(t);
            let serial = next.get_mut(&day).map(|s| {
                *s += 1;
                *s - 1
            });
            case_number(town, &day, serial.unwrap_or_default())
        })
        .collect())
}

/// The departments a status assigns the case to: lead first, then co-departments.
fn departments(s: &CaseStatus) -> impl Iterator<Item = String> + '_ {
    s.lead_dept.iter().chain(&s.co_depts).map(ToString::to_string)
}

/// Reads a case's status, folds `event` into it and stores the result, if the case is still at
/// `expected`. `Ok(None)` means the case moved on (a conflict).
async fn fold_and_update<T: BatchTx>(
    tx: &mut T,
    id: CaseId,
    expected: i64,
    event: &CaseEvent,
) -> Result<Option<CaseStatus>> {
    let Some((version, json)) = tx.case_status(id).await? else { return Err(StoreError::NotFound) };
    if version != expected {
        return Ok(None);
    }
    let old: CaseStatus = from_json(&json)?;
    let mut status = old.clone();
    status.apply(event).map_err(|e| StoreError::BadEvent(e.to_string()))?;
    if !tx.update_status(id, expected, &StatusColumns::of(&status)?).await? {
        return Ok(None);
    }
    if (&old.lead_dept, &old.co_depts) != (&status.lead_dept, &status.co_depts) {
        for dept in departments(&old) {
            tx.remove_department(&dept, id).await?;
        }
        let rows: Vec<(String, i64)> = departments(&status).map(|d| (d, id)).collect();
        tx.add_departments(&rows).await?;
    }
    Ok(Some(status))
}

/// Gives uploaded attachments to the case that names them; one that is gone or belongs to another case
/// fails the write (the writer then retries its writes one by one, so only this one fails).
async fn link_attachments<T: BatchTx>(
    tx: &mut T,
    case_id: i64,
    items: &[civicgrid_core::case::Attachment],
) -> Result<()> {
    for id in items.iter().filter_map(|a| a.id) {
        if !tx.link_attachment(case_id, id).await? {
            return Err(StoreError::BadReference);
        }
    }
    Ok(())
}

/// Statement texts both backends run as they are. Placeholders are `$N`, first used in ascending
/// order, which PostgreSQL reads as positions and SQLite (rusqlite) numbers in order of appearance.
pub(crate) mod sql {
    /// Adds `$2` to the counter of day `$1` and answers the new value.
    pub(crate) const BUMP_COUNTER: &str = "INSERT INTO case_counters (day, last) VALUES ($1, $2) \
         ON CONFLICT (day) DO UPDATE SET last = case_counters.last + excluded.last RETURNING last";
    /// The columns of a new case row, in the order [`super::CaseInsert`] binds them.
    pub(crate) const INSERT_CASE: &str = "INSERT INTO cases (number, matter, source, grid, micro_grid, \
         reporter_user_id, reported_at, component_id, lon, lat, facts, state, version, lead_dept, co_depts, \
         due_at, handle_due_at, replied_at, closed_at, close_type, escalation_level, merged_into, updated_at, \
         status) ";
    /// The columns of a new event row.
    pub(crate) const INSERT_EVENT: &str =
        "INSERT INTO case_events (case_id, seq, at, actor_user_id, action, to_state, body) ";
    /// A case's version and status.
    pub(crate) const CASE_STATUS: &str = "SELECT version, status FROM cases WHERE id = $1";
    /// Overwrites a case's status columns if the case is still at version `$15`.
    pub(crate) const UPDATE_STATUS: &str = "UPDATE cases SET state = $1, version = $2, lead_dept = $3, \
         co_depts = $4, due_at = $5, handle_due_at = $6, replied_at = $7, closed_at = $8, close_type = $9, \
         escalation_level = $10, merged_into = $11, updated_at = $12, status = $13 WHERE id = $14 AND version = $15";
    /// Adds one (department, case) row.
    pub(crate) const ADD_DEPARTMENT: &str = "INSERT INTO case_departments (dept, case_id) VALUES ($1, $2)";
    /// Removes one (department, case) row.
    pub(crate) const REMOVE_DEPARTMENT: &str = "DELETE FROM case_departments WHERE dept = $1 AND case_id = $2";
    /// Gives attachment `$2` to case `$1` unless another case has it.
    pub(crate) const LINK_ATTACHMENT: &str =
        "UPDATE attachments SET case_id = $1 WHERE id = $2 AND (case_id IS NULL OR case_id = $1)";
}
