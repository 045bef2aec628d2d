//! Who is told, and how: the duty roster (who stands which post per date and shift), alerts raised by
//! timers, each person's in-app inbox, and the outbound channels an alert is also sent to (delivered
//! by [`crate::outbound`] as retried jobs).
//!
//! An alert names a post, not people: the roster says who stands it at that moment; where the roster
//! names nobody, every active account of the post's role (and department) is told, so an alert never
//! falls silent for want of a roster. A critical notification nobody acknowledges within the policy's
//! window goes to the next post up (shift leader, then town leader).

use civicgrid_core::access::{Actor, Role};
use civicgrid_core::case::Case;
use civicgrid_core::duty::{Addressee, DutyEntry, DutyPost, Severity, Shift};
use civicgrid_store::{Job, NewJob, NewNotification, Notification, NotifyChannel, Page, PageRequest, User};
use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::require;
use crate::outbound::{DeliverPayload, Message};
use crate::{ServiceError, ServiceResult, Services};

/// Job kind: a critical notification's acknowledgement check.
pub const FOLLOW_UP: &str = "notify.follow_up";
/// Longest span of roster dates written at once.
pub const MAX_ROSTER_DAYS: i32 = 62;
/// Most roster entries written at once.
pub const MAX_ROSTER_ENTRIES: usize = 5000;
/// Largest inbox page.
pub const MAX_INBOX_PAGE: u32 = 200;

/// Something to tell a post.
#[derive(Debug, Clone)]
pub struct Alert {
    /// Makes it once per recipient and channel.
    pub dedup_key: String,
    /// What happened.
    pub kind: &'static str,
    /// How much it matters.
    pub severity: Severity,
    /// The case concerned.
    pub case: Option<Case>,
    /// Who is told; `None` tells nobody in-app (channels still get it).
    pub addressee: Option<Addressee>,
    /// One line.
    pub title: String,
    /// Details.
    pub body: String,
}

/// A user's unread and unacknowledged counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct InboxSummary {
    /// Unread notifications.
    pub unread: i64,
    /// Critical notifications not yet acknowledged.
    pub unacknowledged_critical: i64,
}

/// The roster of a span of dates, replaced whole.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RosterInput {
    /// First date.
    #[schema(value_type = String, format = Date)]
    pub from: Date,
    /// Last date (at most 62 days after `from`).
    #[schema(value_type = String, format = Date)]
    pub to: Date,
    /// Every entry of those dates.
    pub entries: Vec<DutyEntry>,
}

/// A new outbound channel as an administrator submits it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelInput {
    /// Name, 1–64 characters.
    pub name: String,
    /// Kind.
    pub kind: civicgrid_store::ChannelKind,
    /// `http://` URL on the intranet (a WeCom/DingTalk robot through the intranet's gateway).
    pub url: String,
    /// Signing secret, 16–256 characters (WeCom robots: the robot key is in the URL; any 16 characters).
    pub secret: String,
    /// Lowest severity sent (default warning).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
}

fn default_min_severity() -> Severity {
    Severity::Warning
}

const ROSTER_EDITORS: [Role; 2] = [Role::Admin, Role::ShiftLeader];
const ROSTER_READERS: [Role; 7] = [
    Role::Admin,
    Role::ShiftLeader,
    Role::Dispatcher,
    Role::IntakeOperator,
    Role::Commander,
    Role::Leader,
    Role::Supervisor,
];

impl Services {
    /// Tells the alert's post (per the roster) in-app, schedules the acknowledgement check of a critical
    /// alert, and queues one delivery per outbound channel whose threshold it reaches. Idempotent per
    /// dedup key: raising an alert again makes nothing new.
    pub async fn raise(&self, alert: Alert) -> ServiceResult<()> {
        let now = self.clock.now();
        let users = match &alert.addressee {
            Some(a) => self.on_duty(a, alert.case.as_ref(), now).await?,
            None => Vec::new(),
        };
        let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
        let n = NewNotification {
            dedup_key: alert.dedup_key.clone(),
            kind: alert.kind.to_owned(),
            severity: alert.severity,
            case_id: alert.case.as_ref().map(|c| c.id),
            title: alert.title.clone(),
            body: alert.body.clone(),
            created_at: now,
        };
        let made = self.store.notify(&n, &ids).await?;
        if alert.severity == Severity::Critical {
            let window = SignedDuration::from_mins(i64::from(self.world().sla.ack_within_minutes));
            for m in &made {
                let job = NewJob {
                    kind: FOLLOW_UP.to_owned(),
                    effect_key: format!("{FOLLOW_UP}:{}", m.id),
                    payload: serde_json::json!({ "notification_id": m.id }),
                    run_at: now + window,
                    max_attempts: 8,
                };
                self.store.enqueue(&job, self.clock.now()).await?;
            }
        }
        let message = Message {
            kind: alert.kind.to_owned(),
            severity: alert.severity,
            title: alert.title,
            body: alert.body,
            case_id: alert.case.as_ref().map(|c| c.id),
            case_number: alert.case.as_ref().map(|c| c.number.clone()),
            at: now,
            phones: users.iter().filter_map(|u| u.phone.clone()).collect(),
        };
        for ch in self.store.channels().await? {
            if ch.disabled_at.is_none() && alert.severity >= ch.min_severity {
                let payload = DeliverPayload { channel_id: ch.id, message: message.clone() };
                let job = NewJob {
                    kind: crate::outbound::DELIVER.to_owned(),
                    effect_key: format!("{}:{}:{}", crate::outbound::DELIVER, ch.id, alert.dedup_key),
                    payload: serde_json::to_value(&payload).map_err(|e| ServiceError::Internal(e.to_string()))?,
                    run_at: now,
                    max_attempts: 6,
                };
                self.store.enqueue(&job, self.clock.now()).await?;
            }
        }
        Ok(())
    }

    /// The active accounts that stand `addressee` at `at`: the roster's, or else everyone of the post's
    /// role (and department); the grid workers of the case's grid for [`Addressee::GridWorkers`].
    pub async fn on_duty(&self, addressee: &Addressee, case: Option<&Case>, at: Timestamp) -> ServiceResult<Vec<User>> {
        let users: Vec<User> = self.store.users().await?.into_iter().filter(|u| u.disabled_at.is_none()).collect();
        let (post, dept) = match addressee {
            Addressee::GridWorkers => {
                let grid = case.map(|c| c.facts.grid);
                return Ok(users
                    .into_iter()
                    .filter(|u| u.role == Role::GridWorker && grid.is_some_and(|g| u.grids.contains(&g)))
                    .collect());
            }
            Addressee::Post(post, dept) => (*post, dept.as_ref()),
        };
        let (date, shift) = Shift::at(at);
        let rostered: Vec<i64> = self
            .store
            .roster(date, date)
            .await?
            .into_iter()
            .filter(|e| e.shift == shift && e.post == post && e.department.as_ref() == dept)
            .map(|e| e.user_id)
            .collect();
        let fits = |u: &User| u.role == post.role() && (!post.is_departmental() || u.department.as_ref() == dept);
        let on_roster: Vec<User> = users.iter().filter(|u| rostered.contains(&u.id) && fits(u)).cloned().collect();
        if !on_roster.is_empty() {
            return Ok(on_roster);
        }
        Ok(users.into_iter().filter(|u| fits(u)).collect())
    }

    /// The actor's notifications, newest first.
    pub async fn inbox(
        &self,
        actor: &Actor,
        unread_only: bool,
        page: PageRequest,
    ) -> ServiceResult<Page<Notification>> {
        person(actor)?;
        if !(1..=MAX_INBOX_PAGE).contains(&page.limit) {
            return Err(ServiceError::invalid("limit", format!("limit must be between 1 and {MAX_INBOX_PAGE}")));
        }
        Ok(self.store.notifications(actor.user_id, unread_only, page).await?)
    }

    /// The actor's unread and unacknowledged counts (the badge on every console).
    pub async fn inbox_summary(&self, actor: &Actor) -> ServiceResult<InboxSummary> {
        person(actor)?;
        let (unread, unacknowledged_critical) = self.store.unread_count(actor.user_id).await?;
        Ok(InboxSummary { unread, unacknowledged_critical })
    }

    /// Marks one of the actor's notifications read, or read and acknowledged.
    pub async fn mark_notification(&self, actor: &Actor, id: i64, ack: bool) -> ServiceResult<Notification> {
        person(actor)?;
        if !self.store.mark_notification(id, actor.user_id, self.clock.now(), ack).await? {
            return Err(ServiceError::NotFound("notification"));
        }
        self.store.notification(id).await?.ok_or(ServiceError::NotFound("notification"))
    }

    /// The roster of `from..=to`.
    pub async fn roster(&self, actor: &Actor, from: Date, to: Date) -> ServiceResult<Vec<DutyEntry>> {
        require(actor, &ROSTER_READERS)?;
        check_span(from, to)?;
        Ok(self.store.roster(from, to).await?)
    }

    /// Replaces the roster of a span of dates (administrators and shift leaders). Every entry must fall
    /// in the span, name an active account of the post's role, and name its department for
    /// departmental posts (and only then).
    pub async fn set_roster(&self, actor: &Actor, input: RosterInput) -> ServiceResult<Vec<DutyEntry>> {
        require(actor, &ROSTER_EDITORS)?;
        check_span(input.from, input.to)?;
        if input.entries.len() > MAX_ROSTER_ENTRIES {
            return Err(ServiceError::invalid("entries", format!("at most {MAX_ROSTER_ENTRIES} entries")));
        }
        let users: std::collections::HashMap<i64, User> =
            self.store.users().await?.into_iter().map(|u| (u.id, u)).collect();
        let world = self.world();
        for e in &input.entries {
            if e.date < input.from || e.date > input.to {
                return Err(ServiceError::invalid(
                    "entries",
                    format!("{} is outside {}..{}", e.date, input.from, input.to),
                ));
            }
            match (&e.department, e.post.is_departmental()) {
                (Some(d), true) if world.has_department(d) => {}
                (Some(d), true) => {
                    return Err(ServiceError::invalid("entries", format!("department {d} does not exist")));
                }
                (None, false) => {}
                (_, true) => {
                    return Err(ServiceError::invalid("entries", format!("{} needs a department", e.post.as_str())));
                }
                (_, false) => {
                    return Err(ServiceError::invalid("entries", format!("{} takes no department", e.post.as_str())));
                }
            }
            let ok = users.get(&e.user_id).is_some_and(|u| {
                u.disabled_at.is_none()
                    && u.role == e.post.role()
                    && (!e.post.is_departmental() || u.department == e.department)
            });
            if !ok {
                return Err(ServiceError::invalid(
                    "entries",
                    format!("user {} is not an active {} of that department", e.user_id, e.post.role().as_str()),
                ));
            }
        }
        self.store.replace_roster(input.from, input.to, &input.entries).await?;
        tracing::info!(by = actor.user_id, from = %input.from, to = %input.to, entries = input.entries.len(), "duty roster replaced");
        Ok(self.store.roster(input.from, input.to).await?)
    }

    /// The outbound channels (administrators).
    pub async fn channels(&self, actor: &Actor) -> ServiceResult<Vec<NotifyChannel>> {
        require(actor, &[Role::Admin])?;
        Ok(self.store.channels().await?)
    }

    /// Adds an outbound channel (administrators).
    pub async fn create_channel(&self, actor: &Actor, input: ChannelInput) -> ServiceResult<NotifyChannel> {
        require(actor, &[Role::Admin])?;
        let name = civicgrid_core::text::line("name", &input.name, 1, 64)?;
        let (url, secret) = crate::outbound::check_target(&input.url, &input.secret)?;
        let channel = NotifyChannel {
            id: 0,
            name,
            kind: input.kind,
            url,
            secret,
            min_severity: input.min_severity,
            created_at: self.clock.now(),
            disabled_at: None,
        };
        let made = self.store.create_channel(&channel).await?;
        tracing::info!(by = actor.user_id, channel = made.id, kind = made.kind.as_str(), "notification channel added");
        Ok(made)
    }

    /// Switches a channel off or on (administrators).
    pub async fn set_channel_enabled(&self, actor: &Actor, id: i64, enabled: bool) -> ServiceResult<NotifyChannel> {
        require(actor, &[Role::Admin])?;
        let at = (!enabled).then(|| self.clock.now());
        if !self.store.set_channel_disabled(id, at).await? {
            return Err(ServiceError::NotFound("channel"));
        }
        self.store.channels().await?.into_iter().find(|c| c.id == id).ok_or(ServiceError::NotFound("channel"))
    }

    /// A critical notification's acknowledgement check: unacknowledged, it goes to the next post up.
    pub(crate) async fn follow_up(&self, notification_id: i64) -> ServiceResult<()> {
        let Some(n) = self.store.notification(notification_id).await? else { return Ok(()) };
        if n.acked_at.is_some() {
            return Ok(());
        }
        let role = self.store.user(n.user_id).await?.map(|u| u.role);
        let next = match role {
            Some(Role::Leader) => return Ok(()),
            Some(Role::ShiftLeader) => DutyPost::Leader,
            _ => DutyPost::ShiftLeader,
        };
        let case = match n.case_id {
            Some(id) => self.store.case(id).await?,
            None => None,
        };
        self.raise(Alert {
            dedup_key: format!("unacked:{}", n.id),
            kind: "unacknowledged",
            severity: Severity::Critical,
            case,
            addressee: Some(Addressee::Post(next, None)),
            title: format!("未确认：{}", n.title),
            body: format!("{} (not acknowledged by user {})", n.body, n.user_id),
        })
        .await
    }
}

fn person(actor: &Actor) -> ServiceResult<()> {
    match actor.role {
        Role::System | Role::Integration => Err(ServiceError::forbidden("only people have an inbox")),
        _ => Ok(()),
    }
}

fn check_span(from: Date, to: Date) -> ServiceResult<()> {
    let days = from.until(to).map(|s| s.get_days()).unwrap_or(-1);
    if !(0..MAX_ROSTER_DAYS).contains(&days) {
        return Err(ServiceError::invalid("to", format!("from ≤ to, at most {MAX_ROSTER_DAYS} days")));
    }
    Ok(())
}

/// The handler of [`FOLLOW_UP`].
pub(crate) async fn run_follow_up(services: &Services, job: &Job) -> Result<(), String> {
    let id = job.payload.get("notification_id").and_then(serde_json::Value::as_i64).ok_or("no notification_id")?;
    services.follow_up(id).await.map_err(|e| e.to_string())
}
