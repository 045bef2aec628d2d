//! The domain layer's one error type. Each variant has a stable machine-readable code and, where it
//! concerns one input, the field it concerns; the HTTP layer maps these to status codes.

use crate::case::TransitionError;
use crate::codes::CodeError;

/// Something the domain refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// An input value is malformed or not allowed.
    #[error("{message}")]
    Invalid {
        /// The input field concerned.
        field: Option<String>,
        /// What is wrong, for people.
        message: String,
    },
    /// The state machine refuses the change.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The actor's role or scope does not allow it.
    #[error("{0}")]
    Forbidden(String),
}

impl DomainError {
    /// An invalid input value in `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        DomainError::Invalid { field: Some(field.to_owned()), message: message.into() }
    }

    /// A code string that failed to parse in `field`.
    pub fn bad_code(field: &str, e: &CodeError) -> Self {
        DomainError::invalid(field, e.to_string())
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Invalid { .. } => "invalid_input",
            DomainError::Transition(TransitionError::Illegal { .. } | TransitionError::IllegalTask { .. }) => {
                "illegal_transition"
            }
            DomainError::Transition(TransitionError::ReasonRequired { .. }) => "reason_required",
            DomainError::Transition(TransitionError::Invalid(_)) => "invalid_input",
            DomainError::Transition(TransitionError::AlreadyRated) => "already_rated",
            DomainError::Forbidden(_) => "forbidden",
        }
    }

    /// The input field concerned, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            DomainError::Invalid { field, .. } => field.as_deref(),
            DomainError::Transition(TransitionError::ReasonRequired { .. }) => Some("reason"),
            DomainError::Transition(TransitionError::IllegalTask { .. }) => Some("task"),
            _ => None,
        }
    }
}
