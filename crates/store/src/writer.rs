//! The group-commit writer: one task that takes case writes from a queue, applies everything waiting
//! in one transaction, commits once, then answers every caller. Under load a batch holds hundreds of
//! writes and costs one fsync; when idle a write commits alone at once.
//!
//! If a batch fails as a whole (a constraint violation in one write), each write is retried alone so
//! one bad write cannot fail its neighbours.
//!
//! The writer trusts no status computed by a caller: a new case's status is replayed from its report
//! event, and an appended event is folded into the status read inside the transaction.

use civicgrid_core::case::{CaseEvent, CaseId, CaseStatus};
use tokio::sync::{mpsc, oneshot};

use crate::{NewCase, Result, StoreError};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// A batch at least this large means load: wait a few scheduler turns for more.
const GATHER_FROM: usize = 4;
/// Scheduler turns to wait for more writes while they keep coming.
const GATHER_TURNS: usize = 4;

/// One write.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // queued briefly, never stored in bulk
pub(crate) enum WriteOp {
    /// Create a case with the status its report event replays to.
    Create(Box<PreparedCreate>),
    /// Append an event to a case.
    Append {
        /// The case.
        id: CaseId,
        /// The version the caller saw.
        expected: i64,
        /// The event.
        event: CaseEvent,
        /// The event as stored.
        event_json: String,
    },
}

/// A case to create with its JSON encoded in the caller's task, off the writer's critical path.
#[derive(Debug, Clone)]
pub(crate) struct PreparedCreate {
    pub(crate) new: NewCase,
    pub(crate) status: CaseStatus,
    pub(crate) facts_json: String,
    pub(crate) cols: crate::shared::StatusColumns,
    pub(crate) event_json: String,
}

/// What one write produced.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // handed straight back to one caller, never stored in bulk
pub(crate) enum Written {
    /// The created case, or the case an earlier request with the same idempotency key created.
    Created(crate::Created),
    /// The appended case's new status.
    Appended(CaseStatus),
}

/// Applies a batch of writes in one transaction.
#[async_trait::async_trait]
pub(crate) trait ApplyBatch: Send + Sync + 'static {
    /// Applies all ops in one transaction and commits. The outer error fails the whole batch (nothing
    /// was committed); inner errors are per-op outcomes such as a version conflict.
    async fn apply_batch(&self, ops: &[WriteOp]) -> Result<Vec<Result<Written>>>;
}

type Job = (WriteOp, oneshot::Sender<Result<Written>>);

/// Handle to the writer task.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task on the current runtime.
    pub(crate) fn spawn<A: ApplyBatch>(applier: A) -> Self {
        let (queue, rx) = mpsc::channel(MAX_BATCH * 8);
        tokio::spawn(run(applier, rx));
        Self { queue }
    }

    /// Queues a write and waits until it is committed (or refused).
    async fn submit(&self, op: WriteOp) -> Result<Written> {
        let (tx, rx) = oneshot::channel();
        self.queue.send((op, tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Creates a case, its status replayed from the report event here, not taken from the caller.
    pub(crate) async fn create(&self, new: NewCase) -> Result<crate::Created> {
        let status =
            CaseStatus::replay(std::slice::from_ref(&new.event)).map_err(|e| StoreError::BadEvent(e.to_string()))?;
        let prepared = PreparedCreate {
            facts_json: crate::shared::to_json(&new.facts)?,
            cols: crate::shared::StatusColumns::of(&status)?,
            event_json: crate::shared::to_json(&new.event)?,
            new,
            status,
        };
        match self.submit(WriteOp::Create(Box::new(prepared))).await? {
            Written::Created(case) => Ok(case),
            Written::Appended(_) => Err(StoreError::Corrupt("the writer answered a create with an append".into())),
        }
    }

    /// Appends an event if the case is still at `expected`; returns the new status.
    pub(crate) async fn append(&self, id: CaseId, expected: i64, event: CaseEvent) -> Result<CaseStatus> {
        let event_json = crate::shared::to_json(&event)?;
        match self.submit(WriteOp::Append { id, expected, event, event_json }).await? {
            Written::Appended(status) => Ok(status),
            Written::Created(_) => Err(StoreError::Corrupt("the writer answered an append with a create".into())),
        }
    }

    /// Whether the writer task is still running.
    pub(crate) fn is_alive(&self) -> bool {
        !self.queue.is_closed()
    }
}

async fn run<A: ApplyBatch>(applier: A, mut rx: mpsc::Receiver<Job>) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Some((op, reply)) = rx.recv().await {
        ops.push(op);
        replies.push(reply);
        let mut drain = |ops: &mut Vec<WriteOp>, replies: &mut Vec<_>| {
            let before = ops.len();
            while ops.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok((op, reply)) => {
                        ops.push(op);
                        replies.push(reply);
                    }
                    Err(_) => break,
                }
            }
            ops.len() > before
        };
        drain(&mut ops, &mut replies);
        // Under load, give the request tasks that are about to queue a write a moment to do so (a few
        // scheduler turns, no timer): larger batches mean fewer commits, fewer WAL frames and fsyncs.
        // A lone write never waits.
        if ops.len() >= GATHER_FROM {
            for _ in 0..GATHER_TURNS {
                tokio::task::yield_now().await;
                if !drain(&mut ops, &mut replies) {
                    break;
                }
            }
        }
        let started = std::time::Instant::now();
        let result = applier.apply_batch(&ops).await;
        metrics::histogram!("civicgrid_writer_batch_size").record(ops.len() as f64);
        metrics::histogram!("civicgrid_writer_commit_seconds").record(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!("civicgrid_writer_failed_batches_total").increment(1);
        }
        match result {
            Ok(outcomes) => {
                for (reply, outcome) in replies.drain(..).zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) if ops.len() == 1 => {
                if let Some(reply) = replies.pop() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, size = ops.len(), "batch failed; retrying its writes one by one");
                for (op, reply) in ops.iter().zip(replies.drain(..)) {
                    let outcome = match applier.apply_batch(std::slice::from_ref(op)).await {
                        Ok(mut v) => v.pop().unwrap_or(Err(StoreError::Closed)),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(outcome);
                }
            }
        }
        ops.clear();
    }
}
