//! Configuration: defaults → `civicgrid.toml` (or `--config FILE`) → `CIVICGRID_*` environment →
//! command-line flags. Secrets (the admin password) come only from the environment.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Settings of a civicgrid process.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Database: an SQLite file path (or `sqlite://…`) or a `postgres://…` URL.
    pub database: String,
    /// Address to listen on.
    pub listen: String,
    /// Mark the session cookie `Secure` (when served behind HTTPS).
    pub secure_cookies: bool,
    /// Session lifetime in hours.
    pub session_hours: i64,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` wins when set.
    pub log: String,
    /// SQLite commit durability: `full` (fsync every commit, survives power loss) or `normal` (survives
    /// a killed process; faster).
    pub sqlite_synchronous: civicgrid_store::SqliteSync,
    /// Connections served at once (live feeds included); more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Log lines as `text` (for people) or `json` (one object a line, for a log collector).
    pub log_format: LogFormat,
    /// Where attachment content is kept: `auto` (a folder beside an SQLite file; the database with
    /// PostgreSQL, so every node sees it), `database`, or a folder path.
    pub attachments: String,
    /// An intranet map tile server for the consoles' small maps (e.g. a 天地图 node), as a URL template
    /// with `{z}`, `{x}` and `{y}`; empty for none (the maps then draw the town's own grids alone).
    pub map_tiles: String,
    /// The Open311 `jurisdiction_id` this server answers for (e.g. `qingyuan.gov.cn`); empty to accept
    /// any. A request naming another one is refused.
    pub open311_jurisdiction: String,
    /// The MQTT broker telemetry arrives on (`mqtt://host[:port]`); empty: no MQTT ingest (devices may
    /// still push over HTTP).
    pub mqtt: String,
    /// This node's MQTT client id: fixed, so its persistent session outlives restarts; unique per node.
    /// Empty: `civicgrid-<host name>`.
    pub mqtt_client_id: String,
    /// With several nodes on one database, the shared-subscription group they split the messages in
    /// (e.g. `civicgrid`); empty on a single node.
    pub mqtt_share_group: String,
    /// The load balancers or reverse proxies in front of this node, as addresses or CIDR ranges
    /// separated by commas (e.g. `10.0.0.5, 10.8.0.0/24`): their `X-Forwarded-For` names the client
    /// that log-in and public-page throttles count. Empty: the peer is the client.
    pub trusted_proxies: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database", &civicgrid_store::redact_url(&self.database))
            .field("listen", &self.listen)
            .field("secure_cookies", &self.secure_cookies)
            .field("session_hours", &self.session_hours)
            .field("log", &self.log)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .field("max_connections", &self.max_connections)
            .field("log_format", &self.log_format)
            .field("attachments", &self.attachments)
            .field("map_tiles", &self.map_tiles)
            .field("open311_jurisdiction", &self.open311_jurisdiction)
            .field("mqtt", &self.mqtt)
            .field("mqtt_client_id", &self.mqtt_client_id)
            .field("mqtt_share_group", &self.mqtt_share_group)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

/// Longest session accepted, in hours (30 days).
pub const MAX_SESSION_HOURS: i64 = 720;

impl Config {
    /// Where attachment content goes, for this configuration's database.
    pub fn blob_storage(&self) -> civicgrid_service::attachments::BlobStorage {
        use civicgrid_service::attachments::BlobStorage;
        let postgres = self.database.starts_with("postgres://") || self.database.starts_with("postgresql://");
        match self.attachments.as_str() {
            "database" => BlobStorage::Database,
            "auto" if postgres => BlobStorage::Database,
            "auto" => {
                let file = self.database.strip_prefix("sqlite://").or_else(|| self.database.strip_prefix("sqlite:"));
                BlobStorage::Disk(format!("{}.files", file.unwrap_or(&self.database)).into())
            }
            dir => BlobStorage::Disk(dir.into()),
        }
    }

    /// The MQTT subscription of this node, when `mqtt` is set.
    pub fn mqtt_config(&self) -> Result<civicgrid_ingest::MqttConfig, String> {
        let client_id = if self.mqtt_client_id.is_empty() {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            format!("civicgrid-{}", if host.is_empty() { "node" } else { &host })
        } else {
            self.mqtt_client_id.clone()
        };
        if client_id.len() > 64 || client_id.chars().any(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(c))) {
            return Err("mqtt_client_id: up to 64 of a-z, 0-9, '-', '_', '.'".into());
        }
        let group = Some(self.mqtt_share_group.clone()).filter(|g| !g.is_empty());
        if group.as_deref().is_some_and(|g| g.chars().any(|c| !(c.is_ascii_alphanumeric() || "-_".contains(c)))) {
            return Err("mqtt_share_group: a-z, 0-9, '-' and '_' only".into());
        }
        civicgrid_ingest::MqttConfig::from_url(&self.mqtt, client_id, group)
    }

    /// Store options from this configuration.
    pub fn store_options(&self) -> civicgrid_store::StoreOptions {
        civicgrid_store::StoreOptions { sqlite_synchronous: self.sqlite_synchronous }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database: "civicgrid.db".into(),
            listen: "127.0.0.1:8080".into(),
            secure_cookies: false,
            session_hours: 12,
            log: "info,sqlx=warn".into(),
            sqlite_synchronous: civicgrid_store::SqliteSync::Full,
            max_connections: 10_000,
            log_format: LogFormat::Text,
            attachments: "auto".into(),
            map_tiles: String::new(),
            open311_jurisdiction: String::new(),
            mqtt: String::new(),
            mqtt_client_id: String::new(),
            mqtt_share_group: String::new(),
            trusted_proxies: String::new(),
        }
    }
}

impl Config {
    /// Loads the layered configuration.
    pub fn load(file: Option<&Path>) -> Result<Config, Box<figment::Error>> {
        let file = file.unwrap_or(Path::new("civicgrid.toml"));
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("CIVICGRID_").only(&[
                "database",
                "listen",
                "secure_cookies",
                "session_hours",
                "log",
                "sqlite_synchronous",
                "max_connections",
                "log_format",
                "attachments",
                "map_tiles",
                "open311_jurisdiction",
                "mqtt",
                "mqtt_client_id",
                "mqtt_share_group",
                "trusted_proxies",
            ]))
            .extract::<Config>()
            .map_err(Box::new)?
            .checked()
    }

    /// Refuses settings no installation can work with.
    fn checked(self) -> Result<Config, Box<figment::Error>> {
        if !(1..=MAX_SESSION_HOURS).contains(&self.session_hours) {
            return Err(Box::new(figment::Error::from(format!(
                "session_hours must be between 1 and {MAX_SESSION_HOURS}, not {}",
                self.session_hours
            ))));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(Box::new(figment::Error::from("max_connections must be between 1 and 1000000".to_owned())));
        }
        if !self.map_tiles.is_empty() && civicgrid_http::tiles_origin(&self.map_tiles).is_none() {
            return Err(Box::new(figment::Error::from(format!(
                "map_tiles must be an http(s) URL template with {{z}}, {{x}} and {{y}}, not {:?}",
                self.map_tiles
            ))));
        }
        if self.open311_jurisdiction.len() > 100
            || self.open311_jurisdiction.chars().any(|c| !(c.is_ascii_alphanumeric() || ".-_".contains(c)))
        {
            return Err(Box::new(figment::Error::from(
                "open311_jurisdiction must be up to 100 characters of a-z, 0-9, '.', '-' or '_'".to_owned(),
            )));
        }
        if self.trusted_proxies.len() > 4096 {
            return Err(Box::new(figment::Error::from("trusted_proxies is longer than 4096 characters".to_owned())));
        }
        civicgrid_http::auth::trusted_proxies(&self.trusted_proxies)
            .map_err(|e| Box::new(figment::Error::from(format!("trusted_proxies: {e}"))))?;
        if !self.mqtt.is_empty() {
            self.mqtt_config().map_err(|e| Box::new(figment::Error::from(format!("mqtt: {e}"))))?;
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() && !self.listen.contains(':') {
            return Err(Box::new(figment::Error::from(format!("listen must be host:port, not {:?}", self.listen))));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("civicgrid.toml", "listen = \"0.0.0.0:9000\"\nsession_hours = 4\n")?;
            jail.set_env("CIVICGRID_SESSION_HOURS", "8");
            jail.set_env("CIVICGRID_ADMIN_PASSWORD", "not-a-config-key");
            let c = Config::load(None).expect("loads");
            assert_eq!(c.listen, "0.0.0.0:9000");
            assert_eq!(c.session_hours, 8);
            assert_eq!(c.database, "civicgrid.db");
            jail.set_env("CIVICGRID_OPEN311_JURISDICTION", "bad jurisdiction");
            assert!(Config::load(None).is_err(), "a jurisdiction with a space is refused");
            jail.set_env("CIVICGRID_OPEN311_JURISDICTION", "qingyuan.gov.cn");
            assert_eq!(Config::load(None).expect("loads").open311_jurisdiction, "qingyuan.gov.cn");
            jail.set_env("CIVICGRID_MAP_TILES", "https://tiles.local/{z}/{x}");
            assert!(Config::load(None).is_err(), "a tile URL without {{y}} is refused");
            jail.set_env("CIVICGRID_MAP_TILES", "https://tiles.local/{z}/{x}/{y}.png");
            assert_eq!(Config::load(None).expect("loads").map_tiles, "https://tiles.local/{z}/{x}/{y}.png");
            jail.set_env("CIVICGRID_TRUSTED_PROXIES", "10.0.0.5, proxy.lan");
            assert!(Config::load(None).is_err(), "a host name is not a trusted proxy");
            jail.set_env("CIVICGRID_TRUSTED_PROXIES", "10.0.0.5, 10.8.0.0/24");
            assert_eq!(Config::load(None).expect("loads").trusted_proxies, "10.0.0.5, 10.8.0.0/24");
            jail.set_env("CIVICGRID_MQTT", "tcp://broker");
            assert!(Config::load(None).is_err(), "an MQTT URL must be mqtt://");
            jail.set_env("CIVICGRID_MQTT", "mqtt://broker.local:1884");
            jail.set_env("CIVICGRID_MQTT_CLIENT_ID", "node a");
            assert!(Config::load(None).is_err(), "a client id with a space is refused");
            jail.set_env("CIVICGRID_MQTT_CLIENT_ID", "civicgrid-node-a");
            jail.set_env("CIVICGRID_MQTT_SHARE_GROUP", "civicgrid");
            let mqtt = Config::load(None).expect("loads").mqtt_config().expect("mqtt");
            assert_eq!(
                (mqtt.host.as_str(), mqtt.port, mqtt.client_id.as_str()),
                ("broker.local", 1884, "civicgrid-node-a")
            );
            assert_eq!(mqtt.share_group.as_deref(), Some("civicgrid"));
            for bad in ["0", "100000", "-3"] {
                jail.set_env("CIVICGRID_SESSION_HOURS", bad);
                assert!(Config::load(None).is_err(), "session_hours {bad} is refused");
            }
            Ok(())
        });
    }

    #[test]
    fn debug_output_hides_the_database_password() {
        let c = Config { database: "postgres://cg:hunter2@db/town".into(), ..Config::default() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
