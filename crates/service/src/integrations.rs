//! Service accounts and API keys for outside systems: an administrator creates an account bound to a
//! channel (Open311 app, 12345 upstream, 110 upstream, IoT gateway) and issues keys for it. A key is
//! shown once (`cgk_<prefix>_<secret>`); only its SHA-256 is kept, it can be revoked, and its last use
//! is recorded to the minute. A request with a key acts as [`Role::Integration`] on its channel.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use civicgrid_core::access::{Actor, Channel, Role};
use civicgrid_store::{ApiKeyInfo, Created, ServiceAccount};
use jiff::{SignedDuration, Timestamp};

use crate::accounts::{TtlCache, random_hex, require, sha256_hex};
use crate::{ServiceError, ServiceResult, Services};

/// The prefix every API key starts with.
pub const KEY_PREFIX: &str = "cgk_";
/// How long a checked key is trusted on this node; a revocation elsewhere takes effect within this.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// How often a key's last use is written (at most).
const TOUCH_EVERY: SignedDuration = SignedDuration::from_mins(1);

/// A service account with its keys.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ServiceAccountView {
    /// The account.
    #[serde(flatten)]
    pub account: ServiceAccount,
    /// Its keys, newest first.
    pub keys: Vec<ApiKeyInfo>,
}

/// A key just issued: the only time the key itself is shown.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct IssuedKey {
    /// The key: send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Store it now; it
    /// cannot be shown again. `null` when a repeated `Idempotency-Key` answers with the key issued the
    /// first time: its secret is not kept (revoke that key if the first answer was lost).
    pub key: Option<String>,
    /// What is kept of it.
    pub info: ApiKeyInfo,
}

/// Recently checked keys (hash → actor and key id), and when each key's use was last written.
#[derive(Debug)]
pub(crate) struct KeyCache {
    checked: TtlCache<(Actor, i64)>,
    touched: Mutex<HashMap<i64, Timestamp>>,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self { checked: TtlCache::new(KEY_CACHE_TTL, 10_000), touched: Mutex::default() }
    }
}

impl Services {
    /// Creates a service account (administrators). With an `idempotency_key`, a repeat of the same
    /// request returns the first account (`replayed`).
    pub async fn create_service_account(
        &self,
        actor: &Actor,
        name: &str,
        channel: Channel,
        idempotency_key: Option<&str>,
    ) -> ServiceResult<Created<ServiceAccount>> {
        require(actor, &[Role::Admin])?;
        let ok = (3..=40).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(ServiceError::invalid("name", "3–40 characters of a–z, 0–9, '-', '_', '.'"));
        }
        let key = crate::idempotency::key_for(actor, idempotency_key, &(name, channel))?;
        let created = self.store.create_service_account(name, channel, self.clock.now(), key.as_ref()).await?;
        if !created.replayed {
            tracing::info!(account = name, channel = channel.as_str(), by = actor.username, "service account created");
        }
        Ok(created)
    }

    /// Every service account with its keys (administrators).
    pub async fn service_accounts(&self, actor: &Actor) -> ServiceResult<Vec<ServiceAccountView>> {
        require(actor, &[Role::Admin])?;
        let mut out = Vec::new();
        for account in self.store.service_accounts().await? {
            let keys = self.store.api_keys(account.id).await?;
            out.push(ServiceAccountView { account, keys });
        }
        Ok(out)
    }

    /// Disables (or re-enables) a service account; its keys stop (or start) working (administrators).
    pub async fn set_service_account_enabled(&self, actor: &Actor, id: i64, enabled: bool) -> ServiceResult<()> {
        require(actor, &[Role::Admin])?;
        let at = (!enabled).then(|| self.clock.now());
        if !self.store.set_service_account_disabled(id, at).await? {
            return Err(ServiceError::NotFound("service account"));
        }
        self.keys.checked.clear();
        tracing::info!(account = id, enabled, by = actor.username, "service account changed");
        Ok(())
    }

    /// Issues a new key for a service account (administrators). The key is in the answer only. With an
    /// `idempotency_key`, a repeat of the same request issues no second key: it answers the first key's
    /// record (`replayed`) without the secret, which is not kept; whoever lost it revokes that key.
    pub async fn issue_api_key(
        &self,
        actor: &Actor,
        account_id: i64,
        idempotency_key: Option<&str>,
    ) -> ServiceResult<Created<IssuedKey>> {
        require(actor, &[Role::Admin])?;
        let idem = crate::idempotency::key_for(actor, idempotency_key, &account_id)?;
        let prefix = format!("{KEY_PREFIX}{}", random_hex(4)?);
        let key = format!("{prefix}_{}", random_hex(24)?);
        let hash = sha256_hex(key.as_bytes());
        let created = match self.store.add_api_key(account_id, &prefix, &hash, self.clock.now(), idem.as_ref()).await {
            Err(civicgrid_store::StoreError::BadReference) => return Err(ServiceError::NotFound("service account")),
            other => other?,
        };
        let (info, replayed) = (created.value, created.replayed);
        if replayed {
            return Ok(Created { value: IssuedKey { key: None, info }, replayed });
        }
        tracing::info!(account = account_id, key = prefix, by = actor.username, "API key issued");
        Ok(Created { value: IssuedKey { key: Some(key), info }, replayed })
    }

    /// Revokes a key (administrators).
    pub async fn revoke_api_key(&self, actor: &Actor, key_id: i64) -> ServiceResult<()> {
        require(actor, &[Role::Admin])?;
        if !self.store.revoke_api_key(key_id, self.clock.now()).await? {
            return Err(ServiceError::NotFound("live API key"));
        }
        self.keys.checked.clear();
        tracing::info!(key = key_id, by = actor.username, "API key revoked");
        Ok(())
    }

    /// The actor of an API key.
    pub async fn api_key_actor(&self, key: &str) -> ServiceResult<Actor> {
        if !key.starts_with(KEY_PREFIX) || key.len() > 100 {
            return Err(ServiceError::Unauthenticated);
        }
        let hash = sha256_hex(key.as_bytes());
        let now = self.clock.now();
        let (actor, key_id) = match self.keys.checked.get(&hash) {
            Some(hit) => hit,
            None => {
                let (account, info) = self.store.api_key_account(&hash).await?.ok_or(ServiceError::Unauthenticated)?;
                let actor = Actor::integration(account.id, &account.name, account.channel);
                self.keys.checked.put(hash, (actor.clone(), info.id));
                (actor, info.id)
            }
        };
        if self.keys.should_touch(key_id, now) {
            self.store.touch_api_key(key_id, now).await?;
        }
        Ok(actor)
    }
}

impl KeyCache {
    /// Whether this use should be written (the first in [`TOUCH_EVERY`]).
    fn should_touch(&self, key_id: i64, now: Timestamp) -> bool {
        let Ok(mut touched) = self.touched.lock() else { return false };
        match touched.get(&key_id) {
            Some(last) if now < *last + TOUCH_EVERY => false,
            _ => {
                if touched.len() > 10_000 {
                    touched.clear();
                }
                touched.insert(key_id, now);
                true
            }
        }
    }
}
