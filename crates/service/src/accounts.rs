//! Accounts and log-in: argon2id password hashes, random session tokens of which only the SHA-256 is
//! kept, and the throttles that keep password guessing and hashing floods away:
//! - a username is locked while its last [`LOCKOUT`] holds [`MAX_FAILURES`] wrong passwords, counting
//!   attempts still being checked, so parallel guesses cannot slip past the limit;
//! - one client address gets at most [`MAX_PER_ADDRESS`] attempts per [`LOCKOUT`] window;
//! - both counts are the store's ([`crate::throttles`]), so they hold across the nodes of a cluster;
//! - at most [`HASH_WORKERS`] password hashes run at once, and a bounded queue waits for them.
//!
//! Failed and successful log-ins and lockouts are logged (username and address, never the password).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use civicgrid_core::access::{AccountInput, Actor, Role};
use civicgrid_store::{Created, IdempotencyKey, NewUser, User};
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};

use crate::throttles::{LOGIN_ADDRESS, LOGIN_FAILURE, seconds_until};
use crate::{ServiceError, ServiceResult, Services};

/// Wrong passwords allowed per username before it is locked.
pub const MAX_FAILURES: u32 = 5;
/// How long a locked username stays locked (and the window failures are counted in).
pub const LOCKOUT: SignedDuration = SignedDuration::from_mins(15);
/// Log-in attempts one client address may make per [`LOCKOUT`] window (a whole command centre may sit
/// behind one address).
pub const MAX_PER_ADDRESS: u32 = 60;
/// Password hashes computed at once (each takes ~19 MiB and one core for ~50 ms).
pub const HASH_WORKERS: usize = 2;
/// Log-ins that may wait for a hash worker before more are turned away.
const HASH_QUEUE: usize = 32;
/// Longest username looked up at all.
const MAX_USERNAME: usize = 32;
/// How long a checked session is trusted on this node without asking the store again; a log-out or
/// expiry on another node takes effect here within this time.
const SESSION_CACHE_TTL: Duration = Duration::from_secs(5);
/// A hash to verify against when the user does not exist, so timing does not reveal usernames.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Yx2Nc6e3dCk3cYxAGi0sMTlbq9tFQJvGk4pF3D7x9Gk";

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> ServiceResult<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(e.to_string()))
}

/// Checks a password against a PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), phc).is_ok()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// SHA-256 of a token, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// SHA-256 of some bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A random 16-character password (for generated admin accounts).
pub fn random_password() -> ServiceResult<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect())
}

/// `bytes` random bytes, hex (tokens, key prefixes and secrets, node names).
pub fn random_hex(bytes: usize) -> ServiceResult<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(hex(&buf))
}

fn new_token() -> ServiceResult<String> {
    random_hex(32)
}

/// The actor of a user account.
pub fn actor_of(user: &User) -> Actor {
    Actor {
        user_id: user.id,
        username: user.username.clone(),
        role: user.role,
        grids: user.grids.clone(),
        department: user.department.clone(),
        job: None,
        channel: None,
    }
}

/// Log-in attempts on this node: the passwords being checked, per username, and the hash workers.
/// The counts that must hold across nodes (attempts per address, wrong passwords per username) are
/// the store's ([`crate::throttles`]).
#[derive(Debug)]
pub(crate) struct LoginGuard {
    /// Attempts per username whose passwords are still being checked here.
    in_flight: Mutex<HashMap<String, u32>>,
    hashing: tokio::sync::Semaphore,
    waiting: AtomicUsize,
}

impl LoginGuard {
    /// Counts an attempt for `username` as in flight unless, with `failures` wrong passwords already
    /// in the window, it would pass [`MAX_FAILURES`]; whether it did.
    fn enter(&self, username: &str, failures: u32) -> ServiceResult<bool> {
        let mut map = self.in_flight.lock().map_err(|e| ServiceError::Internal(e.to_string()))?;
        let n = map.entry(username.to_owned()).or_insert(0);
        if failures + *n >= MAX_FAILURES {
            if *n == 0 {
                map.remove(username);
            }
            return Ok(false);
        }
        *n += 1;
        Ok(true)
    }

    /// The attempt's password has been judged.
    fn leave(&self, username: &str) {
        let Ok(mut map) = self.in_flight.lock() else { return };
        if let Some(n) = map.get_mut(username) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(username);
            }
        }
    }

    /// Runs `f` on a hash worker, waiting in a bounded queue.
    async fn hash<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> ServiceResult<T> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= HASH_QUEUE {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ServiceError::Throttled { retry_after_secs: 1 });
        }
        let permit = self.hashing.acquire().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let _permit = permit.map_err(|e| ServiceError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(f).await.map_err(|e| ServiceError::Internal(e.to_string()))
    }
}

impl LoginGuard {
    pub(crate) fn new() -> Self {
        Self {
            in_flight: Mutex::default(),
            hashing: tokio::sync::Semaphore::new(HASH_WORKERS),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// Credentials checked recently on this node: hash → (what was found, when the entry lapses). Sessions
/// and API keys are each trusted for a short time without asking the store again; a change elsewhere
/// (a log-out, a revoked key) takes effect here within that time, a change here at once (`clear`).
#[derive(Debug)]
pub(crate) struct TtlCache<V> {
    entries: Mutex<HashMap<String, (V, Instant)>>,
    ttl: Duration,
    /// Entries kept before lapsed ones are dropped.
    cap: usize,
}

impl<V: Clone> TtlCache<V> {
    pub(crate) fn new(ttl: Duration, cap: usize) -> Self {
        Self { entries: Mutex::default(), ttl, cap }
    }

    pub(crate) fn get(&self, hash: &str) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        entries.get(hash).filter(|(_, until)| *until > Instant::now()).map(|(v, _)| v.clone())
    }

    pub(crate) fn put(&self, hash: String, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > self.cap {
                let now = Instant::now();
                entries.retain(|_, (_, until)| *until > now);
            }
            entries.insert(hash, (value, Instant::now() + self.ttl));
        }
    }

    pub(crate) fn forget(&self, hash: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(hash);
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// The session cache of a node.
pub(crate) fn session_cache() -> TtlCache<Actor> {
    TtlCache::new(SESSION_CACHE_TTL, 50_000)
}

/// A started session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The bearer token (shown once; only its hash is stored).
    pub token: String,
    /// When it ends.
    pub expires_at: Timestamp,
    /// Who logged in.
    pub user: User,
}

impl Services {
    /// Checks a username and password and starts a session. `addr` is the client's address, for the
    /// per-address throttle.
    pub async fn login(&self, username: &str, password: String, addr: Option<IpAddr>) -> ServiceResult<Session> {
        let username = username.trim();
        let now = self.clock.now();
        if username.is_empty() || username.len() > MAX_USERNAME || username.chars().any(char::is_control) {
            return Err(ServiceError::BadCredentials);
        }
        if password.len() > 1024 {
            return Err(ServiceError::BadCredentials);
        }
        let failures = self.begin_attempt(username, addr, now).await?;
        let outcome = self.check_password(username, password).await;
        self.logins.leave(username);
        self.judge_attempt(username, matches!(outcome, Ok(Some(_))), failures, now).await?;
        let user = match outcome? {
            Some(user) => user,
            None => {
                tracing::info!(username, addr = ?addr, "log-in failed: wrong username or password");
                return Err(ServiceError::BadCredentials);
            }
        };
        let token = new_token()?;
        let expires_at = now + SignedDuration::from_hours(self.config.session_hours);
        self.store.create_session(&token_hash(&token), user.id, now, expires_at).await?;
        tracing::info!(username, role = user.role.as_str(), addr = ?addr, "logged in");
        Ok(Session { token, expires_at, user })
    }

    async fn check_password(&self, username: &str, password: String) -> ServiceResult<Option<User>> {
        let user = self.store.user_by_username(username).await?;
        let hash = user.as_ref().map_or(DUMMY_HASH.to_owned(), |u| u.password_hash.clone());
        let ok = self.logins.hash(move || verify_password(&password, &hash)).await?;
        Ok(user.filter(|u| ok && u.disabled_at.is_none()))
    }

    /// Changes the acting user's own password after checking the current one; every other session of
    /// the user ends (`token` is the session to keep).
    pub async fn change_own_password(
        &self,
        actor: &Actor,
        token: Option<&str>,
        current: String,
        new: String,
    ) -> ServiceResult<()> {
        if matches!(actor.role, Role::System | Role::Integration) {
            return Err(ServiceError::forbidden("only people have passwords"));
        }
        civicgrid_core::access::check_password(&new)?;
        let user = self.me(actor).await?;
        let hash = user.password_hash.clone();
        if !self.logins.hash(move || verify_password(&current, &hash)).await? {
            return Err(ServiceError::invalid("current_password", "the current password is wrong"));
        }
        let new_hash = self.logins.hash(move || hash_password(&new)).await??;
        self.store.set_password_hash(user.id, &new_hash, token.map(token_hash).as_deref()).await?;
        self.sessions.clear();
        tracing::info!(username = user.username, "password changed; other sessions ended");
        Ok(())
    }

    /// Sets a user's password (administrators), ending all the user's sessions.
    pub async fn reset_password(&self, actor: &Actor, user_id: i64, new: String) -> ServiceResult<()> {
        require(actor, &[Role::Admin])?;
        civicgrid_core::access::check_password(&new)?;
        let new_hash = self.logins.hash(move || hash_password(&new)).await??;
        if !self.store.set_password_hash(user_id, &new_hash, None).await? {
            return Err(ServiceError::NotFound("user"));
        }
        self.sessions.clear();
        tracing::info!(user = user_id, by = actor.username, "password reset by an administrator; sessions ended");
        Ok(())
    }

    /// Disables or re-enables an account (administrators); disabling ends its sessions. Administrators
    /// cannot disable themselves, so an installation always keeps one who can undo it.
    pub async fn set_user_enabled(&self, actor: &Actor, user_id: i64, enabled: bool) -> ServiceResult<()> {
        require(actor, &[Role::Admin])?;
        if !enabled && user_id == actor.user_id {
            return Err(ServiceError::invalid("enabled", "administrators cannot disable their own account"));
        }
        let at = (!enabled).then(|| self.clock.now());
        if !self.store.set_user_disabled(user_id, at).await? {
            return Err(ServiceError::NotFound("user"));
        }
        self.sessions.clear();
        tracing::info!(user = user_id, enabled, by = actor.username, "account state changed");
        Ok(())
    }

    /// Ends every session of a user (administrators); how many.
    pub async fn end_sessions(&self, actor: &Actor, user_id: i64) -> ServiceResult<u64> {
        require(actor, &[Role::Admin])?;
        let n = self.store.delete_user_sessions(user_id).await?;
        self.sessions.clear();
        tracing::info!(user = user_id, sessions = n, by = actor.username, "sessions ended by an administrator");
        Ok(n)
    }

    /// The actor of a live session token.
    pub async fn session_actor(&self, token: &str) -> ServiceResult<Actor> {
        let hash = token_hash(token);
        if let Some(actor) = self.sessions.get(&hash) {
            return Ok(actor);
        }
        let user = self.store.session_user(&hash, self.clock.now()).await?.ok_or(ServiceError::Unauthenticated)?;
        let actor = actor_of(&user);
        self.sessions.put(hash, actor.clone());
        Ok(actor)
    }

    /// Ends a session.
    pub async fn logout(&self, token: &str) -> ServiceResult<()> {
        let hash = token_hash(token);
        self.sessions.forget(&hash);
        Ok(self.store.delete_session(&hash).await?)
    }

    /// The account of the acting user.
    pub async fn me(&self, actor: &Actor) -> ServiceResult<User> {
        self.store.user(actor.user_id).await?.ok_or(ServiceError::Unauthenticated)
    }

    /// Creates an account after checking it against the town's grids and departments (administrators).
    /// With an `idempotency_key`, a repeat of the same request returns the first account
    /// (`replayed`) instead of failing on the taken username.
    pub async fn create_account(
        &self,
        actor: &Actor,
        input: AccountInput,
        idempotency_key: Option<&str>,
    ) -> ServiceResult<Created<User>> {
        require(actor, &[Role::Admin])?;
        // The password stays out of the fingerprint: it would sit in the table as an unsalted hash.
        let request = (&input.username, &input.display_name, input.role, &input.department, &input.grids, &input.phone);
        let key = crate::idempotency::key_for(actor, idempotency_key, &request)?;
        self.add_account(input, key.as_ref()).await
    }

    /// Creates an account with no acting user: how `civicgrid user add` makes the first administrator
    /// of a fresh installation (whoever can run the binary on the database already holds it).
    pub async fn create_account_unchecked(&self, input: AccountInput) -> ServiceResult<User> {
        Ok(self.add_account(input, None).await?.value)
    }

    async fn add_account(&self, input: AccountInput, key: Option<&IdempotencyKey>) -> ServiceResult<Created<User>> {
        let world = self.world();
        let grids = self.store.grids().await?;
        input.check(|g| grids.iter().any(|x| x.code == g), |d| world.has_department(d))?;
        let password = input.password.clone();
        let hash = self.logins.hash(move || hash_password(&password)).await??;
        let user = NewUser {
            username: input.username,
            display_name: input.display_name.trim().to_owned(),
            role: input.role,
            password_hash: hash,
            department: input.department,
            phone: input.phone,
            grids: input.grids,
        };
        let created = self.store.create_user(&user, key, self.clock.now()).await?;
        if !created.replayed {
            let user = &created.value;
            tracing::info!(username = user.username, role = user.role.as_str(), "account created");
        }
        Ok(created)
    }

    /// Every account (administrators).
    pub async fn users(&self, actor: &Actor) -> ServiceResult<Vec<User>> {
        require(actor, &[Role::Admin])?;
        Ok(self.store.users().await?)
    }

    /// Lifts a username's lockout on every node (administrators): its wrong passwords are forgotten.
    /// Returns whether it was locked.
    pub async fn unlock_login(&self, actor: &Actor, username: &str) -> ServiceResult<bool> {
        require(actor, &[Role::Admin])?;
        let (failures, _) = self.store.uses(LOGIN_FAILURE, username, self.clock.now() - LOCKOUT).await?;
        self.store.forget_uses(LOGIN_FAILURE, username).await?;
        let was = failures >= MAX_FAILURES;
        tracing::info!(username, by = actor.username, was_locked = was, "log-in lockout lifted");
        Ok(was)
    }

    /// Takes an attempt slot for `username` from `addr` before the password is checked: refused while
    /// the address has used its window's attempts, or while the username's wrong passwords and the
    /// attempts still being checked here reach [`MAX_FAILURES`] (so parallel guesses cannot slip past).
    /// The username's wrong passwords in the window so far.
    async fn begin_attempt(&self, username: &str, addr: Option<IpAddr>, now: Timestamp) -> ServiceResult<u32> {
        if let Some(addr) = addr {
            self.take_slot(LOGIN_ADDRESS, &addr.to_string(), MAX_PER_ADDRESS, LOCKOUT).await?;
        }
        let (failures, oldest) = self.store.uses(LOGIN_FAILURE, username, now - LOCKOUT).await?;
        if !self.logins.enter(username, failures)? {
            tracing::warn!(username, "log-in refused: username locked after repeated failures");
            let until = oldest.map_or(now, |t| t + LOCKOUT);
            return Err(ServiceError::Throttled { retry_after_secs: seconds_until(now, until) });
        }
        Ok(failures)
    }

    /// Counts a judged attempt: a success forgets the username's wrong passwords (if it had any), a
    /// failure is one more.
    async fn judge_attempt(&self, username: &str, ok: bool, failures: u32, now: Timestamp) -> ServiceResult<()> {
        if ok {
            if failures > 0 {
                self.store.forget_uses(LOGIN_FAILURE, username).await?;
            }
            return Ok(());
        }
        self.store.record_use(LOGIN_FAILURE, username, now).await?;
        let (failures, _) = self.store.uses(LOGIN_FAILURE, username, now - LOCKOUT).await?;
        if failures == MAX_FAILURES {
            tracing::warn!(username, "username locked after {MAX_FAILURES} wrong passwords");
        }
        Ok(())
    }
}

/// Refuses unless the actor holds one of `roles`.
pub fn require(actor: &Actor, roles: &[Role]) -> ServiceResult<()> {
    if roles.contains(&actor.role) {
        Ok(())
    } else {
        Err(ServiceError::forbidden(format!("{} ({}) may not do this", actor.role.label_zh(), actor.role.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_the_lowercase_digest() {
        // FIPS 180-2, appendix B.1.
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hex(&[0x00, 0x0f, 0xf0, 0xff]), "000ff0ff");
        assert_eq!(random_hex(4).expect("random").len(), 8);
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("anything", DUMMY_HASH));
    }

    #[test]
    fn attempts_still_being_checked_count_against_the_limit() {
        let guard = LoginGuard::new();
        for _ in 0..MAX_FAILURES - 2 {
            assert!(guard.enter("admin", 2).expect("enter"));
        }
        assert!(!guard.enter("admin", 2).expect("enter"), "two failures and three in flight fill the limit");
        assert!(guard.enter("other", 2).expect("enter"), "another username has its own");
        guard.leave("admin");
        assert!(guard.enter("admin", 2).expect("enter"), "a judged attempt frees its place");
        assert!(!guard.enter("locked", MAX_FAILURES).expect("enter"));
        assert!(guard.in_flight.lock().expect("lock").get("locked").is_none(), "a refusal leaves nothing behind");
    }
}
