//! Upstream tickets: the 12345 hotline platform and the 110 police system push tickets with a
//! service account's key; each becomes one case, however often it is pushed, because its ticket
//! number is stored as the idempotency key of its channel (`ticket:<channel>`) in the transaction
//! that creates the case, and such keys are never purged. The 110 diversion catalogue is the
//! administrator's document (the example list until one is set).
//!
//! Replies flow back through the account's reply hook: the log reader turns a diverted urgent
//! ticket's arrival (回退110), dispatch, the department's reply, closure and voiding of an upstream
//! case into one `upstream.reply` job each (keyed by case and log sequence), which posts a signed JSON
//! body and is retried with backoff until the receiver answers 2xx.

use std::collections::BTreeMap;

use civicgrid_core::access::{Actor, Channel, Role};
use civicgrid_core::case::{Action, Case, CaseEvent, CaseId, CaseState};
use civicgrid_core::ticket::{DiversionCatalogue, TicketInput, ticket_report};
use civicgrid_store::{Created, IdempotencyKey, Job, NewJob, ReplyHook};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::accounts::{require, sha256_hex};
use crate::{ServiceError, ServiceResult, Services};

/// Job kind: one reply to one upstream system.
pub const REPLY: &str = "upstream.reply";
/// Attempts before a reply is kept as a dead letter (with backoff, about a day and a half).
const REPLY_ATTEMPTS: u32 = 40;

/// What a reply tells the upstream system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    /// An urgent diversion police must attend themselves (回退110); the town keeps its part.
    PoliceReturn,
    /// Dispatched to a department (已派遣), with the handling deadline.
    Dispatched,
    /// The department's answer (办理结果).
    Replied,
    /// Closed (办结).
    Closed,
    /// Voided (作废): not a matter for the town, with the reason.
    Voided,
}

impl ReplyKind {
    /// The reply an event calls for, if any (`police_return` when the case's ticket asked for it).
    fn of(event: &CaseEvent, police_return: bool) -> Option<Self> {
        match (&event.action, event.from, event.to) {
            (Action::Report, ..) if police_return => Some(ReplyKind::PoliceReturn),
            (Action::Dispatch { .. } | Action::Reassign { .. }, ..) if event.task.is_none() => {
                Some(ReplyKind::Dispatched)
            }
            (_, Some(CaseState::Handling), CaseState::Replied) => Some(ReplyKind::Replied),
            (_, Some(from), CaseState::Closed) if from != CaseState::Closed => Some(ReplyKind::Closed),
            (_, Some(from), CaseState::Void) if from != CaseState::Void => Some(ReplyKind::Voided),
            _ => None,
        }
    }

    /// The events that may call for a reply: only for these is the case read. A report calls for one
    /// only when an upstream system's account made it, so new cases from every other channel cost the
    /// log reader no read.
    fn may_follow(event: &CaseEvent) -> bool {
        match event.action {
            Action::Report => event.actor.role == Role::Integration,
            Action::Dispatch { .. } | Action::Reassign { .. } => true,
            _ => matches!(event.to, CaseState::Replied | CaseState::Closed | CaseState::Void),
        }
    }
}

/// Input of a reply job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyPayload {
    /// The case.
    pub case_id: CaseId,
    /// The event's place in the global log.
    pub seq: i64,
    /// What to tell.
    pub kind: ReplyKind,
}

/// What a reply says, as posted to the upstream system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyBody {
    /// Same on every retry: the receiver drops repeats by it.
    pub delivery: String,
    /// The upstream ticket number.
    pub ticket_no: String,
    /// `hotline12345` or `police110`.
    pub channel: Channel,
    /// What happened.
    pub kind: ReplyKind,
    /// The case.
    pub case_id: CaseId,
    /// The case number.
    pub case_number: String,
    /// The case's state when the event was made.
    pub state: CaseState,
    /// The lead department's name, once dispatched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// The handling deadline, once dispatched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    /// The department's answer or the reason given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// When it happened.
    pub at: Timestamp,
}

/// A reply hook as an administrator sets it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyHookInput {
    /// Where replies are posted (http://, on the intranet).
    pub url: String,
    /// Signing secret, 16–256 characters; never shown again.
    pub secret: String,
}

impl Services {
    /// Takes a ticket pushed by an upstream system (a 12345 or 110 service account): the case made the
    /// first time the ticket number arrived (`replayed`), or a new one.
    pub async fn push_ticket(&self, actor: &Actor, input: TicketInput) -> ServiceResult<Created> {
        let channel = match (actor.role, actor.channel) {
            (Role::Integration, Some(c @ (Channel::Hotline12345 | Channel::Police110))) => c,
            _ => return Err(ServiceError::forbidden("only a 12345 or 110 service account pushes tickets")),
        };
        let world = self.world();
        let report = ticket_report(input, channel, actor.user_id, &world.diversions, self.clock.now())?;
        let ticket_no = report.upstream.as_ref().map(|u| u.ticket_no.clone()).unwrap_or_default();
        let key = IdempotencyKey {
            scope: format!("ticket:{}", channel.as_str()),
            fingerprint: sha256_hex(ticket_no.as_bytes()),
            key: ticket_no,
        };
        self.report_keyed(actor, report, Some(key)).await
    }

    /// The 110 diversion catalogue (staff, and the 110 system's own account).
    pub fn diversion_catalogue(&self, actor: &Actor) -> ServiceResult<DiversionCatalogue> {
        let police = actor.role == Role::Integration && actor.channel == Some(Channel::Police110);
        if !police && matches!(actor.role, Role::Integration | Role::Citizen | Role::System) {
            return Err(ServiceError::forbidden("the diversion catalogue is for staff and the 110 system"));
        }
        Ok(self.world().diversions.clone())
    }

    /// Replaces the 110 diversion catalogue (administrators).
    pub async fn set_diversion_catalogue(
        &self,
        actor: &Actor,
        catalogue: DiversionCatalogue,
    ) -> ServiceResult<DiversionCatalogue> {
        require(actor, &[Role::Admin])?;
        catalogue.check(&self.world().catalog)?;
        self.store.put_diversion_catalogue(&catalogue, actor.user_id, self.clock.now()).await?;
        self.reload_world().await?;
        tracing::info!(admin = actor.user_id, entries = catalogue.items.len(), "diversion catalogue replaced");
        Ok(catalogue)
    }

    /// Where each upstream account's replies go (administrators): account id → URL.
    pub async fn reply_hooks(&self, actor: &Actor) -> ServiceResult<BTreeMap<i64, String>> {
        require(actor, &[Role::Admin])?;
        Ok(self.store.reply_hooks().await?.into_iter().map(|(id, h)| (id, h.url)).collect())
    }

    /// Sets (or, with `None`, removes) the reply hook of a 12345 or 110 service account
    /// (administrators).
    pub async fn set_reply_hook(
        &self,
        actor: &Actor,
        account_id: i64,
        hook: Option<ReplyHookInput>,
    ) -> ServiceResult<()> {
        require(actor, &[Role::Admin])?;
        let account = self
            .store
            .service_accounts()
            .await?
            .into_iter()
            .find(|a| a.id == account_id)
            .ok_or(ServiceError::NotFound("service account"))?;
        if !matches!(account.channel, Channel::Hotline12345 | Channel::Police110) {
            return Err(ServiceError::invalid("account", "only 12345 and 110 accounts take replies"));
        }
        let mut hooks = self.store.reply_hooks().await?;
        match hook {
            Some(h) => {
                let (url, secret) = crate::outbound::check_target(&h.url, &h.secret)?;
                hooks.insert(account_id, ReplyHook { url, secret });
            }
            None => {
                hooks.remove(&account_id);
            }
        }
        self.store.put_reply_hooks(&hooks, actor.user_id, self.clock.now()).await?;
        tracing::info!(admin = actor.user_id, account = account_id, "reply hook set");
        Ok(())
    }

    /// What the log reader does for upstream tickets: an event that may call for a reply reads its
    /// case, and a case from upstream gets one reply job per such event.
    pub(crate) async fn upstream_reply_job(&self, case_id: CaseId, event: &CaseEvent) -> ServiceResult<Option<NewJob>> {
        if !ReplyKind::may_follow(event) {
            return Ok(None);
        }
        let Some(case) = self.store.case(case_id).await? else { return Ok(None) };
        let Some(upstream) = &case.facts.upstream else { return Ok(None) };
        let Some(kind) = ReplyKind::of(event, upstream.police_return) else { return Ok(None) };
        let payload = ReplyPayload { case_id, seq: event.seq, kind };
        Ok(Some(NewJob {
            kind: REPLY.to_owned(),
            effect_key: format!("upstream:{case_id}:{}", event.seq),
            payload: serde_json::to_value(&payload).map_err(|e| ServiceError::Internal(e.to_string()))?,
            run_at: event.at,
            max_attempts: REPLY_ATTEMPTS,
        }))
    }

    /// The body of a reply, or `None` when the case is not (or no longer) an upstream one.
    async fn reply_body(&self, p: &ReplyPayload, delivery: &str) -> ServiceResult<Option<(i64, ReplyBody)>> {
        let Some(case) = self.store.case(p.case_id).await? else { return Ok(None) };
        let Some(upstream) = case.facts.upstream.clone() else { return Ok(None) };
        let events = self.store.case_events(p.case_id).await?;
        let event = events.iter().find(|e| e.seq == p.seq);
        let world = self.world();
        let lead = lead_at(&case, &events, p.seq);
        let body = ReplyBody {
            delivery: delivery.to_owned(),
            ticket_no: upstream.ticket_no,
            channel: upstream.channel,
            kind: p.kind,
            case_id: case.id,
            case_number: case.number.clone(),
            state: event.map_or(case.status.state, |e| e.to),
            department: lead.map(|d| world.department_name(&d)),
            due_at: event.and_then(|e| e.handle_due_at),
            text: event.and_then(|e| e.reason.clone()),
            at: event.map_or(case.status.updated_at, |e| e.at),
        };
        Ok(Some((upstream.account_id, body)))
    }
}

/// The lead department as of log position `seq`.
fn lead_at(case: &Case, events: &[CaseEvent], seq: i64) -> Option<civicgrid_core::org::DeptCode> {
    let dispatched = events.iter().rev().filter(|e| e.seq <= seq).find_map(|e| match &e.action {
        Action::Dispatch { lead, .. } | Action::Reassign { lead, .. } if e.task.is_none() => Some(lead.clone()),
        _ => None,
    });
    dispatched.or_else(|| case.status.lead_dept.clone())
}

/// The handler of [`REPLY`]: posts the reply to the account's hook. An account without a hook is
/// skipped (logged): there is nowhere to send it.
pub(crate) async fn run_reply(services: &Services, job: &Job) -> Result<(), String> {
    let p: ReplyPayload = serde_json::from_value(job.payload.clone()).map_err(|e| e.to_string())?;
    let Some((account, body)) = services.reply_body(&p, &job.effect_key).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let hooks = services.store.reply_hooks().await.map_err(|e| e.to_string())?;
    let Some(hook) = hooks.get(&account) else {
        tracing::warn!(account, case = p.case_id, "no reply hook for the upstream account; reply not sent");
        return Ok(());
    };
    let json = serde_json::to_string(&body).map_err(|e| e.to_string())?;
    let out = crate::outbound::signed(&hook.url, &hook.secret, json, &job.effect_key, services.clock.now());
    crate::outbound::post(&out).await
}
