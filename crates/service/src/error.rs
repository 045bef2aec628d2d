//! The service layer's one error type: what a use case refuses or fails with. Adapters map it to their
//! protocol (HTTP status and `{code, message, field}`, a CLI message, a job retry).

use civicgrid_core::DomainError;
use civicgrid_core::case::TransitionError;
use civicgrid_store::StoreError;

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The domain refuses: bad input, an illegal transition, a role or scope that does not allow it.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The thing asked for does not exist, or the actor may not know it exists.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// No valid session or credentials.
    #[error("not logged in")]
    Unauthenticated,
    /// Wrong username or password.
    #[error("wrong username or password")]
    BadCredentials,
    /// Too many attempts; try again after the given number of seconds.
    #[error("too many attempts; try again in {retry_after_secs} s")]
    Throttled {
        /// Seconds until a new attempt may succeed.
        retry_after_secs: u64,
    },
    /// The installation is not ready for this (e.g. no town set up yet).
    #[error("{0}")]
    NotReady(&'static str),
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug or an unexpected failure; the detail is for the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<TransitionError> for ServiceError {
    fn from(e: TransitionError) -> Self {
        ServiceError::Domain(e.into())
    }
}

impl ServiceError {
    /// An invalid input value in `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ServiceError::Domain(DomainError::invalid(field, message))
    }

    /// The role or scope does not allow it.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ServiceError::Domain(DomainError::Forbidden(message.into()))
    }
}

/// Result of a use case.
pub type ServiceResult<T> = Result<T, ServiceError>;
