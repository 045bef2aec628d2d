//! Shared state of the HTTP layer: the service layer (store, clock, reference data, log-in throttles),
//! the node's live feed, and the HTTP settings.

use std::sync::Arc;

use civicgrid_core::clock::Clock;
use civicgrid_service::feed::Feed;
use civicgrid_service::{ServiceConfig, Services, World};
use civicgrid_store::{Store, StoreError};

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Mark the session cookie `Secure` (serve behind HTTPS).
    pub secure_cookies: bool,
    /// Session lifetime in hours.
    pub session_hours: i64,
    /// Where attachment content is kept.
    pub blobs: civicgrid_service::attachments::BlobStorage,
    /// An intranet tile server's URL template for the small maps (checked by [`crate::tiles_origin`]).
    pub map_tiles: Option<String>,
    /// The Open311 `jurisdiction_id` this server answers for; `None` accepts any.
    pub open311_jurisdiction: Option<String>,
    /// Load balancers or reverse proxies in front of the node, whose `X-Forwarded-For` names the
    /// client ([`crate::auth::client_addr`]); empty: the peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            session_hours: 12,
            blobs: civicgrid_service::attachments::BlobStorage::Database,
            map_tiles: None,
            open311_jurisdiction: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Everything a handler needs. Cloned for every request and extractor, so it is one `Arc`.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct Shared {
    /// The use cases.
    pub services: Services,
    /// Persistence, for the operational probes (`/readyz`, `/metrics`, `/`).
    pub store: Arc<dyn Store>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The live feed of committed events.
    pub feed: Feed,
    /// Settings.
    pub config: HttpConfig,
    /// Background tasks whose death makes the node unready.
    tasks: std::sync::Mutex<Vec<Watched>>,
}

/// A background task the node cannot do without, by name.
type Watched = (&'static str, tokio::task::JoinHandle<()>);

impl AppState {
    /// Loads the reference data, starts the live feed and builds the state.
    pub async fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: HttpConfig) -> Result<Self, StoreError> {
        let services = Services::new(
            store.clone(),
            clock.clone(),
            ServiceConfig { session_hours: config.session_hours, blobs: config.blobs.clone() },
        )
        .await?;
        let (feed, feed_task) = Feed::spawn(store.clone()).await.map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Self(Arc::new(Shared {
            services,
            store,
            clock,
            feed,
            config,
            tasks: std::sync::Mutex::new(vec![("live feed", feed_task)]),
        })))
    }

    /// The current reference data.
    pub fn world(&self) -> Arc<World> {
        self.services.world()
    }

    /// Looks every `every` whether the reference data changed and reloads it if so (see
    /// [`Services::spawn_refresh`]); the task is watched by `/readyz`.
    pub fn spawn_refresh(&self, every: std::time::Duration) {
        self.watch("reference refresh", self.services.spawn_refresh(every));
    }

    /// Starts this process's job runner (standard handlers and schedules), watched by `/readyz`.
    pub fn spawn_jobs(&self) {
        let suffix = civicgrid_service::accounts::random_hex(4).unwrap_or_default();
        let owner = format!("node-{}-{suffix}", std::process::id());
        let runner = civicgrid_service::jobs::JobRunner::standard(self.services.clone(), owner);
        self.watch("job runner", runner.spawn(std::time::Duration::from_secs(1)));
    }

    /// Watches a background task: if it ends, `/readyz` fails.
    pub fn watch(&self, name: &'static str, task: tokio::task::JoinHandle<()>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push((name, task));
        }
    }

    /// The background tasks that have stopped.
    pub fn dead_tasks(&self) -> Vec<&'static str> {
        self.tasks
            .lock()
            .map(|t| t.iter().filter(|(_, h)| h.is_finished()).map(|(n, _)| *n).collect())
            .unwrap_or_default()
    }

    /// Resolves when the node cannot go on: a watched background task stopped, or the store's writer
    /// did. The server then shuts down and the process exits with an error, for its supervisor
    /// (systemd, a container runtime) to start it again, rather than serve while silently broken.
    pub async fn fatal(&self) -> String {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Some(name) = self.dead_tasks().first() {
                return format!("background task stopped: {name}");
            }
            if let Err(civicgrid_store::StoreError::Closed) = self.store.ping().await {
                return "the group-commit writer stopped".to_owned();
            }
        }
    }

    /// Stops every background task (at shutdown).
    pub fn stop_tasks(&self) {
        if let Ok(tasks) = self.tasks.lock() {
            for (_, t) in tasks.iter() {
                t.abort();
            }
        }
    }
}
