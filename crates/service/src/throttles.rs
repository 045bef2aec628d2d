//! The throttles every node of a cluster shares, counted in the store ([`ThrottleStore`]) so that a
//! limit holds however many app nodes stand behind the load balancer: log-in attempts per client
//! address and wrong passwords per username ([`crate::accounts`] applies them around the password
//! check), and the citizen pages' reports and look-ups per address ([`PublicUse`]).
//!
//! Each is a sliding window: a use is refused while the window already holds the limit, and the
//! answer says when its oldest use ages out.

use std::net::IpAddr;

use civicgrid_store::Slot;
use jiff::{SignedDuration, Timestamp};

use crate::{ServiceError, ServiceResult, Services};

/// Log-in attempts per client address.
pub(crate) const LOGIN_ADDRESS: &str = "login.address";
/// Wrong passwords per username.
pub(crate) const LOGIN_FAILURE: &str = "login.failure";
/// Reports sent from the citizen pages per address in [`PUBLIC_WINDOW`].
pub const REPORTS_PER_HOUR: u32 = 5;
/// Look-ups and answers on the citizen pages per address in [`PUBLIC_WINDOW`].
pub const LOOKUPS_PER_HOUR: u32 = 60;
/// The citizen pages' window.
pub const PUBLIC_WINDOW: SignedDuration = SignedDuration::from_hours(1);
/// The longest window of any throttle: uses older than this are purged.
pub const LONGEST_WINDOW: SignedDuration = PUBLIC_WINDOW;

/// What a citizen does on the public pages, each with its own hourly limit per address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicUse {
    /// Sends a report or a suggestion.
    Report,
    /// Looks up a report, or answers on it (a rating, "not fixed", a word).
    Lookup,
}

impl PublicUse {
    fn scope(self) -> &'static str {
        match self {
            PublicUse::Report => "public.report",
            PublicUse::Lookup => "public.lookup",
        }
    }

    fn limit(self) -> u32 {
        match self {
            PublicUse::Report => REPORTS_PER_HOUR,
            PublicUse::Lookup => LOOKUPS_PER_HOUR,
        }
    }
}

/// Whole seconds from `now` until `until`, at least one.
pub(crate) fn seconds_until(now: Timestamp, until: Timestamp) -> u64 {
    u64::try_from(until.duration_since(now).as_secs()).unwrap_or(0).max(1)
}

impl Services {
    /// Takes a slot of `scope`'s throttle for `key`: `Throttled` (with when to retry, and a warning in
    /// the log) while its `window` already holds `limit` uses.
    pub(crate) async fn take_slot(
        &self,
        scope: &str,
        key: &str,
        limit: u32,
        window: SignedDuration,
    ) -> ServiceResult<()> {
        let now = self.clock.now();
        match self.store.take_slot(scope, key, limit, now - window, now).await? {
            Slot::Taken => Ok(()),
            Slot::Full { earliest } => {
                tracing::warn!(scope, key, "throttled: the window's uses are spent");
                Err(ServiceError::Throttled { retry_after_secs: seconds_until(now, earliest + window) })
            }
        }
    }

    /// Takes a use of the citizen pages for the client at `addr` (no address, as in tests without a
    /// socket: no limit). `Throttled` once the address has used its hour's share, on any node.
    pub async fn public_use(&self, what: PublicUse, addr: Option<IpAddr>) -> ServiceResult<()> {
        let Some(addr) = addr else { return Ok(()) };
        self.take_slot(what.scope(), &addr.to_string(), what.limit(), PUBLIC_WINDOW).await
    }

    /// Deletes the throttles' uses older than every window; how many (the purge job).
    pub async fn purge_throttles(&self) -> ServiceResult<u64> {
        Ok(self.store.purge_uses(self.clock.now() - LONGEST_WINDOW).await?)
    }
}
