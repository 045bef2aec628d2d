//! Durable jobs and timers, run by one [`JobRunner`] per process. Jobs live in the store with leases
//! (`JobStore`): a runner claims due jobs for a while, runs each job's handler and marks it done; if
//! the process dies, the lease runs out and any node claims the job again. A failed job is retried
//! with exponential backoff and, after its last attempt, kept as a dead letter.
//!
//! A job can therefore *run* more than once, so every handler makes its *effect* happen once: each
//! effect is keyed (the job's `effect_key`, e.g. case + deadline + timer) and a handler that finds its
//! effect already made treats the job as done (see [`crate::deadlines`] for the pattern).
//!
//! Recurring work (purging expired sessions and old idempotency keys) is scheduled as one job per period, keyed by the period,
//! so several nodes enqueue it once between them. The schedule lives in one place: [`JobRunner::standard`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use civicgrid_store::{Job, NewJob};
use futures_util::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};

use crate::{ServiceError, ServiceResult, Services};

/// How long a claim lasts; a handler must finish well within it.
pub const LEASE: SignedDuration = SignedDuration::from_mins(2);
/// Attempts before a job is dead, unless its enqueuer says otherwise.
pub const MAX_ATTEMPTS: u32 = 8;
/// Jobs claimed at a time.
const CLAIM_BATCH: u32 = 20;
/// Event-log entries a log reader reads at a time.
pub(crate) const LOG_BATCH: u32 = 500;
/// Event-log entries a log reader reads in one turn of the runner at most. Under sustained load the
/// log grows as fast as it is read; a reader that read until it caught up would keep the other reader
/// and every due job (the SLA timers among them) waiting for as long as the load lasted.
pub const LOG_TURN: usize = 10_000;

/// What a handler does with a job. An `Err` is retried (with backoff) until the attempts run out.
pub type Handler = Arc<dyn Fn(Services, Job) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Work that recurs every `every`, as one job per period.
#[derive(Debug, Clone)]
struct Recurring {
    kind: &'static str,
    every: SignedDuration,
}

/// Runs the jobs of this process.
#[derive(Clone)]
pub struct JobRunner {
    services: Services,
    owner: String,
    handlers: HashMap<&'static str, Handler>,
    recurring: Vec<Recurring>,
    /// The period each recurring job was last enqueued for by this runner, so the loop writes only when
    /// a new period starts, not on every turn.
    scheduled: Arc<std::sync::Mutex<HashMap<&'static str, i64>>>,
}

impl std::fmt::Debug for JobRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRunner")
            .field("owner", &self.owner)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The delay before retry number `attempt` (1-based): 10 s, 20 s, 40 s, … at most an hour.
pub fn backoff(attempt: u32) -> SignedDuration {
    let secs = 10i64.saturating_mul(1i64 << attempt.saturating_sub(1).min(20));
    SignedDuration::from_secs(secs.min(3600))
}

/// The recurring job that deletes expired sessions.
pub const PURGE_SESSIONS: &str = "purge_sessions";
/// The recurring job that forgets old idempotency keys.
pub const PURGE_IDEMPOTENCY: &str = "purge_idempotency";
/// The recurring job that deletes the shared throttles' uses older than every window.
pub const PURGE_THROTTLES: &str = "purge_throttles";
/// How long an idempotency key is remembered (clients retry within minutes; upstream systems may
/// resend a ticket days later).
pub const IDEMPOTENCY_RETENTION: SignedDuration = SignedDuration::from_hours(7 * 24);

impl JobRunner {
    /// A runner with no handlers; `owner` names this process in leases (unique per node).
    pub fn new(services: Services, owner: impl Into<String>) -> Self {
        Self {
            services,
            owner: owner.into(),
            handlers: HashMap::new(),
            recurring: Vec::new(),
            scheduled: Arc::default(),
        }
    }

    /// The runner with every standard handler and schedule: the one place jobs are scheduled.
    pub fn standard(services: Services, owner: impl Into<String>) -> Self {
        Self::new(services, owner)
            .handle(PURGE_SESSIONS, |s, _| async move {
                let n = s.store.purge_sessions(s.clock.now()).await.map_err(|e| e.to_string())?;
                tracing::info!(sessions = n, "expired sessions purged");
                Ok(())
            })
            .every(PURGE_SESSIONS, SignedDuration::from_hours(1))
            .handle(PURGE_IDEMPOTENCY, |s, _| async move {
                let before = s.clock.now() - IDEMPOTENCY_RETENTION;
                let n = s.store.purge_idempotency(before).await.map_err(|e| e.to_string())?;
                tracing::info!(keys = n, "old idempotency keys purged");
                Ok(())
            })
            .every(PURGE_IDEMPOTENCY, SignedDuration::from_hours(1))
            .handle(PURGE_THROTTLES, |s, _| async move {
                let n = s.purge_throttles().await.map_err(|e| e.to_string())?;
                tracing::debug!(uses = n, "old throttle uses purged");
                Ok(())
            })
            .every(PURGE_THROTTLES, SignedDuration::from_mins(15))
            .handle(crate::iot::RETENTION, |s, _| async move {
                let n = s.purge_telemetry().await.map_err(|e| e.to_string())?;
                tracing::info!(rows = n, "old telemetry purged");
                Ok(())
            })
            .every(crate::iot::RETENTION, SignedDuration::from_hours(1))
            .handle(crate::alarms::SWEEP, |s, _| async move {
                let done = s.iot_sweep().await.map_err(|e| e.to_string())?;
                if done != crate::alarms::SweepReport::default() {
                    tracing::info!(?done, "iot sweep");
                }
                Ok(())
            })
            .every(crate::alarms::SWEEP, SignedDuration::from_mins(1))
            .handle(crate::deadlines::WARN, |s, job| async move { crate::deadlines::run_timer(&s, &job).await })
            .handle(crate::deadlines::ESCALATE, |s, job| async move { crate::deadlines::run_timer(&s, &job).await })
            .handle(crate::notify::FOLLOW_UP, |s, job| async move { crate::notify::run_follow_up(&s, &job).await })
            .handle(crate::outbound::DELIVER, |s, job| async move { crate::outbound::run_deliver(&s, &job).await })
            .handle(crate::tickets::REPLY, |s, job| async move { crate::tickets::run_reply(&s, &job).await })
            .handle(
                crate::workflow::CLOSE_MERGED,
                |s, job| async move { crate::workflow::run_close_merged(&s, &job).await },
            )
    }

    /// Registers the handler of `kind`.
    pub fn handle<F, Fut>(mut self, kind: &'static str, f: F) -> Self
    where
        F: Fn(Services, Job) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        self.handlers.insert(kind, Arc::new(move |s, j| Box::pin(f(s, j))));
        self
    }

    /// Schedules `kind` once every `every` (its handler must be registered).
    pub fn every(mut self, kind: &'static str, every: SignedDuration) -> Self {
        self.recurring.push(Recurring { kind, every });
        self
    }

    /// Enqueues this period's run of every recurring job (a no-op where a node already did), and the
    /// deadline timers of every event committed since the last turn, and counts those events' KPIs;
    /// whether a log reader stopped short of the end of the log (see [`LOG_TURN`]).
    pub async fn schedule(&self, now: Timestamp) -> ServiceResult<bool> {
        let log = self.services.read_log(crate::readers::Readers::ALL).await?;
        for r in &self.recurring {
            let every = r.every.as_micros().max(1) as i64;
            let slot = now.as_microsecond().div_euclid(every);
            let done = self.scheduled.lock().map(|m| m.get(r.kind) == Some(&slot)).unwrap_or(false);
            if done {
                continue;
            }
            let run_at =
                Timestamp::from_microsecond(slot * every).map_err(|e| ServiceError::Internal(e.to_string()))?;
            let job = NewJob {
                kind: r.kind.to_owned(),
                effect_key: format!("{}@{slot}", r.kind),
                payload: serde_json::Value::Null,
                run_at,
                max_attempts: 3,
            };
            self.services.store.enqueue(&job, now).await?;
            if let Ok(mut m) = self.scheduled.lock() {
                m.insert(r.kind, slot);
            }
        }
        Ok(log.behind)
    }

    /// Claims the jobs due now.
    pub async fn claim(&self) -> ServiceResult<Vec<Job>> {
        let now = self.services.clock.now();
        Ok(self.services.store.claim_jobs(&self.owner, now, LEASE, CLAIM_BATCH).await?)
    }

    /// Runs one claimed job's handler.
    pub async fn execute(&self, job: &Job) -> Result<(), String> {
        match self.handlers.get(job.kind.as_str()) {
            Some(h) => h(self.services.clone(), job.clone()).await,
            None => Err(format!("no handler for job kind {:?}", job.kind)),
        }
    }

    /// Records how a claimed job went: done, retried later, or dead.
    pub async fn finish(&self, job: &Job, outcome: Result<(), String>) -> ServiceResult<()> {
        let now = self.services.clock.now();
        let store = &self.services.store;
        match outcome {
            Ok(()) => {
                if !store.complete_job(job.id, &self.owner, now).await? {
                    tracing::warn!(job = job.effect_key, "job finished after its lease was taken over");
                }
            }
            Err(error) if job.attempts < job.max_attempts => {
                let retry = now + backoff(job.attempts);
                tracing::warn!(job = job.effect_key, attempt = job.attempts, %error, "job failed; will retry");
                store.fail_job(job.id, &self.owner, now, &error, Some(retry)).await?;
            }
            Err(error) => {
                tracing::error!(job = job.effect_key, attempts = job.attempts, %error, "job failed for good (dead letter)");
                store.fail_job(job.id, &self.owner, now, &error, None).await?;
            }
        }
        Ok(())
    }

    /// Schedules, claims and runs everything due now; how many jobs ran.
    pub async fn run_once(&self) -> ServiceResult<usize> {
        Ok(self.turn().await?.0)
    }

    /// One turn: a bounded read of the log, then the due jobs; how many jobs ran, and whether the log
    /// readers have more to read.
    async fn turn(&self) -> ServiceResult<(usize, bool)> {
        let behind = self.schedule(self.services.clock.now()).await?;
        let jobs = self.claim().await?;
        for job in &jobs {
            let outcome = self.execute(job).await;
            self.finish(job, outcome).await?;
        }
        Ok((jobs.len(), behind))
    }

    /// Runs jobs until aborted: at once while there is work (jobs due or log left to read), otherwise
    /// every `poll`.
    pub fn spawn(self, poll: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match self.turn().await {
                    Ok((jobs, behind)) if jobs > 0 || behind => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "job runner: store unavailable; retrying"),
                }
                tokio::time::sleep(poll).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stops_at_an_hour() {
        assert_eq!(backoff(1), SignedDuration::from_secs(10));
        assert_eq!(backoff(2), SignedDuration::from_secs(20));
        assert_eq!(backoff(5), SignedDuration::from_secs(160));
        assert_eq!(backoff(30), SignedDuration::from_hours(1));
    }
}
