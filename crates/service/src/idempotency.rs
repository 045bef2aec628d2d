//! `Idempotency-Key` for every creating use case: the key's form, and the fingerprint of the request
//! it came with. The store keeps (caller, key, fingerprint) in the transaction that creates the record,
//! so a retry with the same key and request gets the first record back, and the same key with another
//! request is refused.

use civicgrid_core::access::Actor;
use civicgrid_store::IdempotencyKey;

use crate::accounts::sha256_hex;
use crate::{ServiceError, ServiceResult};

/// Checks a key: 1–100 visible ASCII characters.
pub fn check_key(key: &str) -> ServiceResult<()> {
    if key.is_empty() || key.len() > 100 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ServiceError::invalid("Idempotency-Key", "1–100 visible ASCII characters"));
    }
    Ok(())
}

/// The stored form of `actor`'s `key` for a request described by `request` (what it asks for; leave
/// out secrets such as a password, which would otherwise sit in the table as an unsalted hash).
pub fn key_for(
    actor: &Actor,
    key: Option<&str>,
    request: &impl serde::Serialize,
) -> ServiceResult<Option<IdempotencyKey>> {
    let Some(key) = key else { return Ok(None) };
    check_key(key)?;
    let body = serde_json::to_vec(request).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(Some(IdempotencyKey { scope: actor.idempotency_scope(), key: key.to_owned(), fingerprint: sha256_hex(&body) }))
}
