//! The users context's errors and their one mapping onto HTTP.

use mongodb::bson::oid::ObjectId;
use shared::db::DbError;
use shared::directory::DirectoryError;
use shared::error::ApiError;

/// What can go wrong in the users context.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("User {0} not found")]
    NotFound(ObjectId),
    #[error("Role {0} not found")]
    RoleNotFound(ObjectId),
    #[error("The user does not hold role {0}")]
    RoleNotHeld(ObjectId),
    #[error("The e-mail is already a user of this tenant")]
    AlreadyUser,
    #[error("The user's invitation is still being made; try again shortly")]
    Unlinked,
    /// The one refusal of an invitation for a reason outside the caller's tenant: the address
    /// is claimed by another tenant, or the user directory holds an account for it that is not
    /// this invitation's (another tenant's, a platform operator's). Every such path answers
    /// exactly this, so that no answer tells an admin whether an address has an account
    /// elsewhere; the tenant's hourly budget of refusals bounds how often it can be asked.
    #[error("This address cannot be invited. Check it, or ask the person to contact support.")]
    EmailTaken,
    /// The tenant's refused invitations of this hour are spent: every invitation is refused
    /// until the hour ends (the whole seconds until then), whatever its address.
    #[error("Too many invitations were refused this hour; invitations resume at the next hour")]
    RefusalsSpent(u64),
    #[error("Every seat of the plan ({0} users) is taken")]
    NoSeat(i64),
    #[error("The tenant's counters are being set up; try again shortly")]
    CountersMissing,
    #[error("This would remove the tenant's last admin")]
    LastAdmin,
    #[error("A pending user becomes active only by signing in")]
    Pending,
    #[error("Nobody may {0} themselves")]
    SelfChange(&'static str),
    #[error("The caller cannot grant {0}, which it does not hold")]
    Escalation(String),
    /// The caller stopped being an active member after admission (its membership was cached).
    #[error("{}", shared::admission::NOT_MEMBER)]
    NotMember,
    #[error("The user holds {0}, which the caller does not: only someone who holds it may manage this user")]
    Outranked(String),
    #[error("The user was changed concurrently; read it again and retry")]
    Concurrent,
    #[error("the user directory failed")]
    Directory(#[source] DirectoryError),
    /// Another call (or the sweeper) holds this invitation's saga: try again after this many
    /// seconds.
    #[error("The invitation of this address is in progress; try again shortly")]
    InProgress(u64),
    #[error("This Idempotency-Key was used with another request body")]
    KeyReused,
    /// The saga was taken too often or grew too old (or had nothing to finish from), and was
    /// undone.
    #[error("The invitation was abandoned and undone; send it again")]
    Abandoned,
    /// A failed saga's outcome, answered as it was recorded.
    #[error("{}", .0.message)]
    Replayed(shared::saga::Failure),
    /// A key of the person could not be revoked (an erasure's step).
    #[error(transparent)]
    Keys(Box<api_keys::error::KeysError>),
    #[error(transparent)]
    Injected(#[from] shared::saga::Injected),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<UsersError> for ApiError {
    fn from(e: UsersError) -> Self {
        match e {
            UsersError::NotFound(_) | UsersError::RoleNotFound(_) | UsersError::RoleNotHeld(_) => ApiError::NotFound(e.to_string()),
            UsersError::AlreadyUser
            | UsersError::Unlinked
            | UsersError::EmailTaken
            | UsersError::NoSeat(_)
            | UsersError::LastAdmin
            | UsersError::Pending
            | UsersError::Concurrent => ApiError::Conflict(e.to_string()),
            UsersError::SelfChange(_) | UsersError::Escalation(_) | UsersError::NotMember | UsersError::Outranked(_) => {
                ApiError::Forbidden(e.to_string())
            }
            UsersError::RefusalsSpent(retry_after_secs) => ApiError::TooManyRequests { message: e.to_string(), retry_after_secs },
            UsersError::CountersMissing => ApiError::Unavailable(Box::new(e)),
            UsersError::Directory(DirectoryError::Unavailable(_)) => ApiError::Unavailable(Box::new(e)),
            // Cognito refused a value this service passed on (an address it will not take).
            UsersError::Directory(DirectoryError::InvalidInput(_)) => {
                ApiError::invalid("email", "the user directory does not accept this address")
            }
            UsersError::Directory(_) => ApiError::internal(e),
            UsersError::InProgress(retry_after_secs) => ApiError::InProgress { message: e.to_string(), retry_after_secs },
            UsersError::KeyReused => ApiError::Unprocessable(e.to_string()),
            UsersError::Abandoned => ApiError::Conflict(e.to_string()),
            UsersError::Replayed(failure) => ApiError::Replayed { status: failure.status, message: failure.message },
            UsersError::Injected(_) => ApiError::Unavailable(Box::new(e)),
            UsersError::Keys(keys) => (*keys).into(),
            UsersError::Db(db) => db.into(),
        }
    }
}

impl From<shared::saga::SagaError> for UsersError {
    fn from(e: shared::saga::SagaError) -> Self {
        match e {
            // Another process took over (this one was presumed dead): it finishes the work.
            shared::saga::SagaError::LeaseLost => UsersError::InProgress(shared::saga::LEASE_TTL.as_secs()),
            shared::saga::SagaError::Db(db) => UsersError::Db(db),
        }
    }
}
