//! The group-commit writer: one task that takes case writes from a queue, applies everything waiting
//! in one transaction, commits once, then answers every caller. Under load a batch holds hundreds of
//! writes and costs one fsync; when idle a write commits alone at once.
//!
//! If a batch fails as a whole (a constraint violation in one write), each write is retried alone so
//! one bad write cannot fail its neighbours.

use civicgrid_core::case::{Case, CaseEvent, CaseId, CaseStatus};
use tokio::sync::{mpsc, oneshot};

use crate::{NewCase, Result, StoreError};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

/// One write.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // queued briefly, never stored in bulk
pub(crate) enum WriteOp {
    /// Create a case.
    Create(NewCase),
    /// Append an event to a case.
    Append {
        /// The case.
        id: CaseId,
        /// The event (its `seq` is the expected version + 1).
        event: CaseEvent,
        /// The status after the event.
        status: CaseStatus,
    },
}

/// Applies a batch of writes in one transaction.
#[async_trait::async_trait]
pub(crate) trait ApplyBatch: Send + Sync + 'static {
    /// Applies all ops in one transaction and commits. The outer error fails the whole batch (nothing
    /// was committed); inner errors are per-op outcomes such as a version conflict.
    async fn apply_batch(&self, ops: &[WriteOp]) -> Result<Vec<Result<Case>>>;
}

type Job = (WriteOp, oneshot::Sender<Result<Case>>);

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
    pub(crate) async fn submit(&self, op: WriteOp) -> Result<Case> {
        let (tx, rx) = oneshot::channel();
        self.queue.send((op, tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run<A: ApplyBatch>(applier: A, mut rx: mpsc::Receiver<Job>) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Some((op, reply)) = rx.recv().await {
        ops.push(op);
        replies.push(reply);
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((op, reply)) => {
                    ops.push(op);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        match applier.apply_batch(&ops).await {
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
