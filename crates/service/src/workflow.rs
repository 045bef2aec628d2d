//! The side paths of a case that need more than the case itself: duplicate suggestions (并单 by place
//! or component), the checks a merge and a void need (the primary, the merged cases), the draw of a
//! fix on the spot for a sampled verification, and closing merged cases when their primary closes.
//!
//! Closing the merged cases is a reaction to the event log: the log reader that schedules timers
//! ([`Services::schedule_timers`]) enqueues one `case.close_merged` job per closure of a case, keyed
//! by case and version, and the job closes every case still merged into it. A crash between the
//! primary's closure and its followers' loses nothing: the job is durable and runs again.

use civicgrid_core::access::{Actor, Role};
use civicgrid_core::case::{Action, Case, CaseEvent, CaseId, CaseState, Command, distance_m};
use civicgrid_store::{Area, CaseFilter, Job, NewJob, PageRequest, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::require;
use crate::{ServiceError, ServiceResult, Services};

/// Job kind: close the cases merged into a primary that closed.
pub const CLOSE_MERGED: &str = "case.close_merged";
/// Most duplicate suggestions answered.
const MAX_SUGGESTIONS: usize = 20;
/// Most open cases merged into one primary.
pub const MAX_MERGED: u32 = 200;

/// Posts that see duplicate suggestions and merge: the centre's intake, shift leader and dispatcher.
const MERGERS: [Role; 3] = [Role::IntakeOperator, Role::ShiftLeader, Role::Dispatcher];

/// An open case that may be the same problem as another.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Duplicate {
    /// The case.
    #[schema(value_type = i64)]
    pub id: CaseId,
    /// Its number.
    pub number: String,
    /// Its state.
    pub state: CaseState,
    /// When it was reported.
    #[schema(value_type = String, format = DateTime)]
    pub reported_at: jiff::Timestamp,
    /// Metres between the two reports.
    pub distance_m: f64,
    /// Both are about the same component.
    pub same_component: bool,
}

/// Input of a close-merged job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CloseMerged {
    primary: CaseId,
}

impl Services {
    /// Open cases that may report the same problem as case `id`: the same matter within the matter's
    /// duplicate radius, or the same component; nearest first. Cases merged into others are not
    /// offered (merge into their primary instead).
    pub async fn duplicates(&self, actor: &Actor, id: CaseId) -> ServiceResult<Vec<Duplicate>> {
        require(actor, &MERGERS)?;
        let case = self.case(actor, id).await?;
        let radius = f64::from(self.world().sla.duplicate_radius(case.facts.matter));
        let open: Vec<CaseState> =
            CaseState::ALL.into_iter().filter(|s| s.is_open() && *s != CaseState::Merged).collect();
        let page = PageRequest { before: None, limit: 100 };
        let near = CaseFilter {
            matter: Some(case.facts.matter),
            states: open.clone(),
            within: Some(Area::around(case.facts.location, radius)),
            ..CaseFilter::default()
        };
        let mut found = self.store.list_cases(&near, page).await?.items;
        if let Some(c) = case.facts.component_id {
            let same = CaseFilter { component: Some(c), states: open, ..CaseFilter::default() };
            found.extend(self.store.list_cases(&same, page).await?.items);
        }
        let mut out: Vec<Duplicate> = Vec::new();
        for c in found {
            let distance = distance_m(case.facts.location, c.facts.location);
            let same_component = case.facts.component_id.is_some() && c.facts.component_id == case.facts.component_id;
            if c.id == id || out.iter().any(|d| d.id == c.id) || !(same_component || distance <= radius) {
                continue;
            }
            out.push(Duplicate {
                id: c.id,
                number: c.number,
                state: c.status.state,
                reported_at: c.facts.reported_at,
                distance_m: (distance * 10.0).round() / 10.0,
                same_component,
            });
        }
        out.sort_by(|a, b| b.same_component.cmp(&a.same_component).then(a.distance_m.total_cmp(&b.distance_m)));
        out.truncate(MAX_SUGGESTIONS);
        Ok(out)
    }

    /// The checks a transition needs beyond the case itself: a merge names an open primary the actor
    /// may see, not the case itself, not a merged case, and the case has no followers of its own; a
    /// case that others follow is not voided (split them first).
    pub(crate) async fn check_related(&self, actor: &Actor, case: &Case, action: &Action) -> ServiceResult<()> {
        match action {
            Action::Merge { into } => {
                if *into == case.id {
                    return Err(ServiceError::invalid("into", "a case cannot be merged into itself"));
                }
                let primary = match self.store.case(*into).await? {
                    Some(p) if actor.can_see(&p) => p,
                    _ => return Err(ServiceError::invalid("into", format!("case {into} does not exist"))),
                };
                if !primary.status.state.is_open() || primary.status.state == CaseState::Merged {
                    return Err(ServiceError::invalid(
                        "into",
                        format!("case {} is {}: merge into an open primary case", primary.number, primary.status.state),
                    ));
                }
                if self.followers(*into).await?.len() >= MAX_MERGED as usize {
                    return Err(ServiceError::invalid(
                        "into",
                        format!("at most {MAX_MERGED} cases follow one primary"),
                    ));
                }
                if !self.followers(case.id).await?.is_empty() {
                    return Err(ServiceError::invalid(
                        "into",
                        "other cases are merged into this one: split them first",
                    ));
                }
                Ok(())
            }
            Action::Void | Action::RefuteCheck if !self.followers(case.id).await?.is_empty() => Err(
                ServiceError::invalid("merged", "other cases are merged into this one: split them before voiding it"),
            ),
            _ => Ok(()),
        }
    }

    /// Whether a fix on the spot of case `id` is drawn for verification by someone else: a fixed
    /// share of cases, spread evenly over the ids (a multiplicative hash), so the draw is the same on
    /// every node and on a retry. Reads the caller's reference snapshot.
    pub(crate) fn drawn_for_sampling(world: &crate::World, id: CaseId) -> bool {
        let share = u64::from(world.sla.sample_percent);
        let hashed = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        hashed % 100 < share
    }

    /// The open cases merged into `primary`.
    async fn followers(&self, primary: CaseId) -> ServiceResult<Vec<Case>> {
        let filter =
            CaseFilter { merged_into: Some(primary), states: vec![CaseState::Merged], ..CaseFilter::default() };
        Ok(self.store.list_cases(&filter, PageRequest { before: None, limit: MAX_MERGED }).await?.items)
    }

    /// What the log reader does with a committed event besides its timers: a case that has just
    /// closed gets a job that closes its followers.
    pub(crate) fn merge_job(case_id: CaseId, event: &CaseEvent) -> ServiceResult<Option<NewJob>> {
        if event.to != CaseState::Closed || event.from.is_none_or(|f| f == CaseState::Closed) {
            return Ok(None);
        }
        let payload = serde_json::to_value(CloseMerged { primary: case_id })
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(Some(NewJob {
            kind: CLOSE_MERGED.to_owned(),
            effect_key: format!("merge:{case_id}:{}", event.seq),
            payload,
            run_at: event.at,
            max_attempts: 8,
        }))
    }

    /// Closes every case still merged into `primary` (the system, as `merge`). A case split or closed
    /// meanwhile is left alone; one that moves under the job is tried again on the next run.
    async fn close_followers(&self, primary: CaseId) -> ServiceResult<usize> {
        let system = Actor::system("merge");
        let mut closed = 0;
        for f in self.followers(primary).await? {
            let cmd = Command::new(Action::CloseWithPrimary).because(format!("随主案卷 {primary} 结案"));
            match self.transition(&system, f.id, &cmd, Some(f.status.version)).await {
                Ok(_) => closed += 1,
                Err(ServiceError::Store(StoreError::Conflict { .. })) => {
                    return Err(ServiceError::Internal(format!("case {} moved while closing it", f.id)));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(closed)
    }
}

/// The handler of [`CLOSE_MERGED`] jobs.
pub(crate) async fn run_close_merged(services: &Services, job: &Job) -> Result<(), String> {
    let p: CloseMerged = serde_json::from_value(job.payload.clone()).map_err(|e| e.to_string())?;
    let n = services.close_followers(p.primary).await.map_err(|e| e.to_string())?;
    if n > 0 {
        tracing::info!(primary = p.primary, closed = n, "merged cases closed with their primary");
    }
    Ok(())
}
