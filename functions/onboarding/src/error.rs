//! The onboarding context's errors and their one mapping onto HTTP.

use shared::db::DbError;
use shared::error::ApiError;
use shared::saga::{Failure, Injected, SagaError};

/// What can go wrong in the onboarding context.
#[derive(Debug, thiserror::Error)]
pub enum OnboardingError {
    #[error("Domain {0} already exists")]
    DomainTaken(String),
    #[error("The admin e-mail already belongs to an existing account")]
    AdminEmailTaken,
    #[error("Onboarding {0} not found")]
    NotFound(String),
    #[error("Tenant {0} already exists")]
    Exists(shared::ids::TenantId),
    #[error("Tenant {0} not found")]
    TenantNotFound(shared::ids::TenantId),
    /// An offboarding of a tenant that is offboarding or inactive already.
    #[error("Tenant {0} is {1} already")]
    Ending(shared::ids::TenantId, &'static str),
    /// A cancellation of a tenant that is not offboarding, or whose purge began.
    #[error("Tenant {0} is not offboarding, or its grace period is over and its purge has begun")]
    NotCancellable(shared::ids::TenantId),
    /// Another call (or the sweeper) holds this saga's lease.
    #[error("The onboarding with this Idempotency-Key is in progress; try again shortly")]
    InProgress(u64),
    #[error("This Idempotency-Key was used with another request body")]
    KeyReused,
    /// A sign-up bound is reached: try again after this many seconds.
    #[error("Too many sign-ups; try again later")]
    TooMany(u64),
    /// The saga was taken too often or grew too old, and was undone.
    #[error("The onboarding was abandoned after too many attempts and undone; send it again with a new Idempotency-Key")]
    Abandoned,
    /// A failed saga's outcome, answered again to its caller's replay.
    #[error("{}", .0.message)]
    Replayed(Failure),
    #[error("the user directory refused the admin")]
    Users(#[source] users::error::UsersError),
    /// A step met a document it did not write under one of its own fixed ids: something outside
    /// this saga is wrong (a 500), not a conflict the caller can resolve.
    #[error("onboarding step {step} met a document it did not write")]
    Unexpected { step: &'static str, source: DbError },
    #[error(transparent)]
    Injected(#[from] Injected),
    #[error(transparent)]
    Saga(SagaError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<SagaError> for OnboardingError {
    fn from(e: SagaError) -> Self {
        match e {
            // Another process took over (this one was presumed dead): it finishes the work.
            SagaError::LeaseLost => OnboardingError::InProgress(shared::saga::LEASE_TTL.as_secs()),
            SagaError::Db(db) => OnboardingError::Db(db),
        }
    }
}

impl From<users::error::UsersError> for OnboardingError {
    fn from(e: users::error::UsersError) -> Self {
        match e {
            users::error::UsersError::EmailTaken => OnboardingError::AdminEmailTaken,
            users::error::UsersError::Db(db) => OnboardingError::Db(db),
            other => OnboardingError::Users(other),
        }
    }
}

impl From<OnboardingError> for ApiError {
    fn from(e: OnboardingError) -> Self {
        match e {
            OnboardingError::DomainTaken(_) | OnboardingError::AdminEmailTaken => ApiError::Conflict(e.to_string()),
            OnboardingError::NotFound(_) => ApiError::NotFound(e.to_string()),
            OnboardingError::Exists(_) | OnboardingError::Ending(..) | OnboardingError::NotCancellable(_) => {
                ApiError::Conflict(e.to_string())
            }
            OnboardingError::TenantNotFound(_) => ApiError::NotFound(e.to_string()),
            OnboardingError::InProgress(retry_after_secs) => ApiError::InProgress { message: e.to_string(), retry_after_secs },
            OnboardingError::KeyReused => ApiError::Unprocessable(e.to_string()),
            OnboardingError::TooMany(retry_after_secs) => ApiError::TooManyRequests { message: e.to_string(), retry_after_secs },
            OnboardingError::Abandoned => ApiError::Conflict(e.to_string()),
            OnboardingError::Replayed(failure) => ApiError::Replayed { status: failure.status, message: failure.message },
            OnboardingError::Users(inner) => inner.into(),
            OnboardingError::Injected(_) => ApiError::Unavailable(Box::new(e)),
            OnboardingError::Saga(_) | OnboardingError::Unexpected { .. } => ApiError::internal(e),
            OnboardingError::Db(db) => db.into(),
        }
    }
}

impl OnboardingError {
    /// The error as a saga records it, so that a replay answers it again.
    pub fn failure(self) -> Failure {
        let code = match &self {
            OnboardingError::DomainTaken(_) => "domain_taken",
            OnboardingError::AdminEmailTaken => "admin_email_taken",
            OnboardingError::Abandoned => "abandoned",
            _ => "",
        };
        ApiError::from(self).into_failure(code)
    }
}
