//! The write gate: who may write next, on a backend with one write lock.
//!
//! SQLite lets one connection write at a time. Case writes go through the group-commit writer's own
//! connection; everything else (jobs and their leases, log-reader positions, sessions, notifications,
//! telemetry, alarms, reference data) through a one-connection pool. Left to SQLite's busy handler,
//! that pool polls for the lock with growing sleeps (1 ms up to 100 ms) while the writer, busy batch
//! after batch under load, takes it again microseconds after each commit: the rare writes starved for
//! seconds and the event log's readers fell tens of thousands of entries behind.
//!
//! The gate is a fair (first come, first served) lock that both take before they begin a write
//! transaction, so a rare write waits for at most the batch in progress, and the writer for at most
//! one rare write. PostgreSQL's writers do not exclude each other, so its gate is always open.
//!
//! [`WriteTx`] and [`WriteConn`] are a transaction and a connection from the write pool that hold
//! their turn until they are dropped (or committed); they dereference to the connection, so queries
//! run on them as on sqlx's own.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Whose turn it is to write. Cloning shares the gate.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteGate(Option<Arc<Mutex<()>>>);

/// A held turn; the next in line goes when it is dropped.
pub(crate) type Turn = Option<OwnedMutexGuard<()>>;

impl WriteGate {
    /// A gate that lets writers through one at a time, in the order they came.
    pub(crate) fn fair() -> Self {
        Self(Some(Arc::new(Mutex::new(()))))
    }

    /// A gate that is always open: the backend orders its writers itself.
    pub(crate) fn open() -> Self {
        Self(None)
    }

    /// Waits for this task's turn.
    pub(crate) async fn turn(&self) -> Turn {
        match &self.0 {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        }
    }

    /// Waits for this thread's turn, blocking it. Only for a thread outside the async runtime (the
    /// SQLite writer's).
    pub(crate) fn blocking_turn(&self) -> Turn {
        self.0.as_ref().map(|lock| lock.clone().blocking_lock_owned())
    }

    /// Begins a transaction on `pool` once it is this task's turn.
    pub(crate) async fn begin<DB: Database>(&self, pool: &Pool<DB>) -> Result<WriteTx<DB>, sqlx::Error> {
        let turn = self.turn().await;
        Ok(WriteTx { tx: pool.begin().await?, _turn: turn })
    }

    /// Takes a connection from `pool` (for a statement that commits alone) once it is this task's turn.
    pub(crate) async fn acquire<DB: Database>(&self, pool: &Pool<DB>) -> Result<WriteConn<DB>, sqlx::Error> {
        let turn = self.turn().await;
        Ok(WriteConn { conn: pool.acquire().await?, _turn: turn })
    }
}

/// A write transaction holding its turn at the gate until it commits or is dropped (rolled back).
pub(crate) struct WriteTx<DB: Database> {
    tx: Transaction<'static, DB>,
    _turn: Turn,
}

impl<DB: Database> WriteTx<DB> {
    /// Commits, then gives up the turn.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl<DB: Database> Deref for WriteTx<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.tx
    }
}

impl<DB: Database> DerefMut for WriteTx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.tx
    }
}

/// A write-pool connection holding its turn at the gate until it is dropped.
pub(crate) struct WriteConn<DB: Database> {
    conn: PoolConnection<DB>,
    _turn: Turn,
}

impl<DB: Database> Deref for WriteConn<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.conn
    }
}

impl<DB: Database> DerefMut for WriteConn<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Turns are served in the order they were asked for, and a thread outside the runtime waits its
    /// turn like a task does.
    #[tokio::test]
    async fn turns_are_first_come_first_served() {
        let gate = WriteGate::fair();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let first = gate.turn().await;
        assert!(first.is_some());
        let mut waiting = Vec::new();
        for i in 0..5 {
            let (gate, order) = (gate.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _turn = gate.turn().await;
                order.lock().expect("order").push(i);
            }));
            // Let the task queue up before the next one is spawned.
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (thread_gate, thread_order) = (gate.clone(), order.clone());
        let thread = std::thread::spawn(move || {
            let _turn = thread_gate.blocking_turn();
            thread_order.lock().expect("order").push(5);
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(order.lock().expect("order").is_empty(), "nobody writes while a turn is held");
        drop(first);
        for task in waiting {
            task.await.expect("task");
        }
        tokio::task::spawn_blocking(move || thread.join().expect("thread")).await.expect("join");
        assert_eq!(*order.lock().expect("order"), vec![0, 1, 2, 3, 4, 5]);
        assert!(WriteGate::open().turn().await.is_none(), "an open gate holds no turn");
    }
}
