//! The group-commit writer: one loop that takes case writes from a queue, applies everything waiting
//! in one transaction, commits once, then answers every caller. Under load a batch holds hundreds of
//! writes and costs one fsync; when idle a write commits alone at once.
//!
//! PostgreSQL's writer is an async task ([`run`]) on a thread and runtime of its own, so the answers to
//! its round trips wake it at once; SQLite's is a plain thread ([`run_blocking`]), where its statements
//! run without a hop per statement.
//!
//! If a batch fails as a whole (a constraint violation in one write), each write is retried alone so
//! one bad write cannot fail its neighbours.
//!
//! The writer trusts no status computed by a caller: a new case's status is replayed from its report
//! event, and an appended event is folded into the status read inside the transaction.

use civicgrid_core::case::{CaseEvent, CaseId, CaseStatus};
use tokio::sync::{mpsc, oneshot};

use crate::{ImportCase, NewCase, Result, StoreError};

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
    /// Import whole historical cases.
    Import(Box<PreparedImport>),
}

/// Historical cases to import, their JSON encoded in the caller's task.
#[derive(Debug, Clone)]
pub(crate) struct PreparedImport {
    pub(crate) town: String,
    pub(crate) cases: Vec<ImportCase>,
    /// Per case: facts JSON and status columns.
    pub(crate) encoded: Vec<(String, crate::shared::StatusColumns)>,
    /// Per case: each event's JSON.
    pub(crate) event_json: Vec<Vec<String>>,
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
    /// The import is stored: the ids of its cases, in the order given.
    Imported(Vec<CaseId>),
}

/// Applies a batch of writes in one transaction.
pub(crate) trait ApplyBatch {
    /// Applies all ops in one transaction and commits. The outer error fails the whole batch (nothing
    /// was committed); inner errors are per-op outcomes such as a version conflict.
    async fn apply_batch(&mut self, ops: &[WriteOp]) -> Result<Vec<Result<Written>>>;
}

type Reply = oneshot::Sender<Result<Written>>;
type Job = (WriteOp, Reply);

/// The writer's end of the queue.
pub(crate) type Queue = mpsc::Receiver<Job>;

/// Handle to the writer.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    /// A handle and the queue the backend's writer loop ([`run`] or [`run_blocking`]) serves.
    pub(crate) fn new() -> (Self, Queue) {
        let (queue, rx) = mpsc::channel(MAX_BATCH * 8);
        (Self { queue }, rx)
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
            _ => Err(StoreError::Corrupt("the writer answered a create with something else".into())),
        }
    }

    /// Imports historical cases in one transaction. Each case's status must be what its events replay
    /// to: the writer stores no status it has not checked.
    pub(crate) async fn import(&self, town: String, cases: Vec<ImportCase>) -> Result<Vec<CaseId>> {
        let mut encoded = Vec::with_capacity(cases.len());
        let mut event_json = Vec::with_capacity(cases.len());
        for c in &cases {
            let replayed = CaseStatus::replay(&c.events).map_err(|e| StoreError::BadEvent(e.to_string()))?;
            if replayed != c.status {
                return Err(StoreError::BadEvent("the status is not what the events replay to".into()));
            }
            encoded.push((crate::shared::to_json(&c.facts)?, crate::shared::StatusColumns::of(&c.status)?));
            event_json.push(c.events.iter().map(crate::shared::to_json).collect::<Result<Vec<_>>>()?);
        }
        match self.submit(WriteOp::Import(Box::new(PreparedImport { town, cases, encoded, event_json }))).await? {
            Written::Imported(ids) => Ok(ids),
            _ => Err(StoreError::Corrupt("the writer answered an import with something else".into())),
        }
    }

    /// Appends an event if the case is still at `expected`; returns the new status.
    pub(crate) async fn append(&self, id: CaseId, expected: i64, event: CaseEvent) -> Result<CaseStatus> {
        let event_json = crate::shared::to_json(&event)?;
        match self.submit(WriteOp::Append { id, expected, event, event_json }).await? {
            Written::Appended(status) => Ok(status),
            _ => Err(StoreError::Corrupt("the writer answered an append with something else".into())),
        }
    }

    /// Whether the writer is still running.
    pub(crate) fn is_alive(&self) -> bool {
        !self.queue.is_closed()
    }
}

/// The writer as a task on the async runtime, for a backend whose statements are network round trips
/// (PostgreSQL): while one batch is in flight the next gathers in the queue.
pub(crate) async fn run<A: ApplyBatch>(mut applier: A, mut rx: Queue) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Some((op, reply)) = rx.recv().await {
        ops.push(op);
        replies.push(reply);
        drain(&mut rx, &mut ops, &mut replies);
        // Under load, give the request tasks that are about to queue a write a moment to do so (a few
        // scheduler turns, no timer): larger batches mean fewer commits. A lone write never waits.
        if ops.len() >= GATHER_FROM {
            for _ in 0..GATHER_TURNS {
                tokio::task::yield_now().await;
                if !drain(&mut rx, &mut ops, &mut replies) {
                    break;
                }
            }
        }
        commit(&mut applier, &ops, &mut replies).await;
        ops.clear();
    }
}

/// The writer on a thread of its own, for a backend whose statements complete without waiting
/// (SQLite through rusqlite): no runtime hop per statement, and while one batch commits (its fsync) the
/// next gathers in the queue. Ends when every [`Writer`] handle is gone; panics end it too, and then
/// [`Writer::is_alive`] says so.
pub(crate) fn run_blocking<A: ApplyBatch>(mut applier: A, mut rx: Queue) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Some((op, reply)) = rx.blocking_recv() {
        ops.push(op);
        replies.push(reply);
        drain(&mut rx, &mut ops, &mut replies);
        let committed = commit(&mut applier, &ops, &mut replies);
        if complete_now(committed).is_none() {
            // An applier that waits has no place on this thread; its callers were answered `Closed`.
            tracing::error!("the blocking writer's applier waited; stopping the writer");
            return;
        }
        ops.clear();
    }
}

/// Moves whatever is queued (up to a full batch) into `ops`; whether anything was.
fn drain(rx: &mut Queue, ops: &mut Vec<WriteOp>, replies: &mut Vec<Reply>) -> bool {
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
}

/// Applies one batch and answers its callers. A batch that fails as a whole is retried write by write,
/// so that one bad write cannot fail its neighbours.
async fn commit<A: ApplyBatch>(applier: &mut A, ops: &[WriteOp], replies: &mut Vec<Reply>) {
    let started = std::time::Instant::now();
    let result = applier.apply_batch(ops).await;
    metrics::histogram!("civicgrid_writer_batch_size").record(ops.len() as f64);
    metrics::histogram!("civicgrid_writer_commit_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(outcomes) => {
            for (reply, outcome) in replies.drain(..).zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(e) if ops.len() == 1 => {
            metrics::counter!("civicgrid_writer_failed_batches_total").increment(1);
            if let Some(reply) = replies.pop() {
                let _ = reply.send(Err(e));
            }
        }
        Err(e) => {
            metrics::counter!("civicgrid_writer_failed_batches_total").increment(1);
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
}

/// Runs a future that never waits to its end on this thread: one poll. `None` if it did wait.
pub(crate) fn complete_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An applier that never finishes.
    struct Waits;

    impl ApplyBatch for Waits {
        async fn apply_batch(&mut self, _: &[WriteOp]) -> Result<Vec<Result<Written>>> {
            std::future::pending().await
        }
    }

    /// An applier that stores everything.
    struct Stores;

    impl ApplyBatch for Stores {
        async fn apply_batch(&mut self, ops: &[WriteOp]) -> Result<Vec<Result<Written>>> {
            Ok(ops.iter().map(|_| Ok(Written::Imported(Vec::new()))).collect())
        }
    }

    #[tokio::test]
    async fn the_thread_writer_answers_and_ends_with_its_last_handle() {
        let (writer, queue) = Writer::new();
        let thread = std::thread::spawn(move || run_blocking(Stores, queue));
        writer.import("320583116".into(), Vec::new()).await.expect("stored");
        assert!(writer.is_alive());
        drop(writer);
        thread.join().expect("the thread ends when no handle is left");
    }

    #[tokio::test]
    async fn a_thread_writer_whose_applier_waits_stops_and_says_so() {
        let (writer, queue) = Writer::new();
        let thread = std::thread::spawn(move || run_blocking(Waits, queue));
        assert!(matches!(writer.import("320583116".into(), Vec::new()).await, Err(StoreError::Closed)));
        thread.join().expect("the writer returns");
        assert!(!writer.is_alive(), "readiness sees a stopped writer");
    }
}
