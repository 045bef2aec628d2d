//! The live feed: every committed case event and alarm change, in global order, to every subscriber
//! that may see it.
//!
//! One task per node follows the [`EventLog`]: it wakes when the store says something was committed
//! (here or, on PostgreSQL, on another node) or once a second, reads "everything after the last number
//! seen" and broadcasts each entry. A subscriber subscribes to the broadcast *before* it replays what
//! it missed from the log, so the replay and the live part meet with no gap; entries it has already
//! seen are skipped, and a subscriber too slow for the broadcast falls back to reading the log.
//! Every entry is checked against the subscriber's scope before it is handed out: a case event by the
//! case's grid and departments, an alarm change by the subscriber's post (the centre's posts watch
//! alarms, [`crate::alarms::WATCHERS`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use civicgrid_core::access::{Actor, Role};
use civicgrid_store::{FeedEntry, Store};
use tokio::sync::broadcast;

use crate::ServiceResult;

/// Entries a subscriber may fall behind by before it reads the log instead.
const BUFFER: usize = 4096;
/// Entries read from the log at a time.
const PAGE: u32 = 500;
/// How long the feed waits after a commit for more to land before reading (under load, one read
/// serves many commits; well inside the 100 ms an operator would notice).
const COALESCE: Duration = Duration::from_millis(10);

/// The node's feed of committed events.
#[derive(Debug, Clone)]
pub struct Feed {
    store: Arc<dyn Store>,
    tx: broadcast::Sender<Arc<FeedEntry>>,
    head: Arc<AtomicI64>,
}

impl Feed {
    /// Starts following the log from its current end. The task ends when the returned handle is aborted.
    pub async fn spawn(store: Arc<dyn Store>) -> ServiceResult<(Feed, tokio::task::JoinHandle<()>)> {
        let start = store.last_seq().await?;
        let (tx, _) = broadcast::channel(BUFFER);
        let feed = Feed { store, tx, head: Arc::new(AtomicI64::new(start)) };
        let task = tokio::spawn(feed.clone().follow(start));
        Ok((feed, task))
    }

    async fn follow(self, mut after: i64) {
        let mut committed = self.store.committed();
        loop {
            tokio::select! {
                _ = committed.changed() => {
                    // Let a burst of commits land, then read them in one go.
                    tokio::time::sleep(COALESCE).await;
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if self.tx.receiver_count() == 0 {
                // Nobody listens: nothing to read. A subscriber that resumes reads the log itself.
                let known = *committed.borrow_and_update();
                if known > after {
                    after = known;
                    self.head.store(after, Ordering::SeqCst);
                }
                continue;
            }
            loop {
                match self.store.feed_after(after, PAGE).await {
                    Ok(page) if page.is_empty() => break,
                    Ok(page) => {
                        // The head moves first: a subscriber that joins mid-page starts after it and
                        // skips the rest of the page, which it did not ask for.
                        after = page.last().map_or(after, FeedEntry::seq);
                        self.head.store(after, Ordering::SeqCst);
                        for e in page {
                            let _ = self.tx.send(Arc::new(e));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the live feed cannot read the event log; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
        }
    }

    /// The number of the newest entry broadcast so far.
    pub fn head(&self) -> i64 {
        self.head.load(Ordering::SeqCst)
    }

    /// Subscribers connected now.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Subscribes `actor` to entries after `after` (the `Last-Event-ID` of a reconnecting client), or
    /// to new entries only.
    pub fn subscribe(&self, actor: Actor, after: Option<i64>) -> Subscription {
        let rx = self.tx.subscribe();
        Subscription {
            store: self.store.clone(),
            rx,
            actor,
            cursor: after.unwrap_or_else(|| self.head()),
            backlog: std::collections::VecDeque::new(),
            // Even a new subscriber first reads the log after the head it starts from: the feed may
            // have moved past entries it did not broadcast while nobody listened.
            replaying: true,
        }
    }
}

/// Whether `actor` may see `entry`: a case event if the case is in the actor's scope, an alarm change
/// if the actor's post watches alarms (or the actor is the system).
fn may_see(actor: &Actor, entry: &FeedEntry) -> bool {
    match entry {
        FeedEntry::Case(e) => actor.can_see_key(e.scope_key()),
        FeedEntry::Alarm(_) => actor.role == Role::System || crate::alarms::WATCHERS.contains(&actor.role),
    }
}

/// Counts subscribers that fell behind the broadcast (they read the log instead).
fn metrics_lagged() {
    LAGGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

static LAGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times a subscriber fell behind the broadcast and read the log instead, since start.
pub fn lagged_total() -> u64 {
    LAGGED.load(std::sync::atomic::Ordering::Relaxed)
}

/// One subscriber's view of the feed.
#[derive(Debug)]
pub struct Subscription {
    store: Arc<dyn Store>,
    rx: broadcast::Receiver<Arc<FeedEntry>>,
    actor: Actor,
    /// The newest entry handed out or passed over.
    cursor: i64,
    backlog: std::collections::VecDeque<Arc<FeedEntry>>,
    /// Reading the log rather than the broadcast.
    replaying: bool,
}

impl Subscription {
    /// The next entry the subscriber may see; `None` when the feed has stopped. Cancel-safe: a call
    /// dropped while it waits loses nothing.
    pub async fn next(&mut self) -> ServiceResult<Option<Arc<FeedEntry>>> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                self.cursor = e.seq();
                if may_see(&self.actor, &e) {
                    return Ok(Some(e));
                }
                continue;
            }
            if self.replaying {
                let page = self.store.feed_after(self.cursor, PAGE).await?;
                if page.is_empty() {
                    self.replaying = false;
                } else {
                    self.backlog.extend(page.into_iter().map(Arc::new));
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(e) if e.seq() <= self.cursor => {}
                Ok(e) => self.backlog.push_back(e),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "a feed subscriber fell behind; reading the log instead");
                    metrics_lagged();
                    self.replaying = true;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }

    /// The newest entry handed out or passed over (what a client resumes from).
    pub fn cursor(&self) -> i64 {
        self.cursor
    }
}
