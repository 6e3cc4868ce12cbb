//! The api-keys context's errors and their one mapping onto HTTP.

use mongodb::bson::oid::ObjectId;
use shared::db::DbError;
use shared::error::ApiError;

/// What can go wrong in the api-keys context.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("API key {0} not found")]
    NotFound(ObjectId),
    #[error("API key {0} is {1}; only an active key can be changed")]
    NotActive(ObjectId, &'static str),
    #[error("The {plan} plan allows {max} active API keys; revoke one first")]
    NoPlace { plan: &'static str, max: i64 },
    #[error("The caller cannot give a key {0}, which it does not hold")]
    Escalation(String),
    /// The caller stopped being an active member after admission (its membership was cached).
    #[error("{}", shared::admission::NOT_MEMBER)]
    NotMember,
    /// An existing key's secret or limits, asked for by a member who neither made the key nor
    /// holds all it carries: that member would act as the key's creator (§13).
    #[error("The key carries {0}, which the caller does not hold; only the key's creator, or a member holding all of its permissions, may rotate or change it")]
    ActsBeyond(String),
    /// A key acts for its creator, a member: a caller without a user record (a superadmin) can
    /// own none.
    #[error("Only a member of the tenant can own an API key")]
    NoOwner,
    #[error("The key was changed concurrently; read it again and retry")]
    Concurrent,
    #[error("No secret could be drawn from the operating system")]
    Entropy,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<KeysError> for ApiError {
    fn from(e: KeysError) -> Self {
        match e {
            KeysError::NotFound(_) => ApiError::NotFound(e.to_string()),
            KeysError::Escalation(_) | KeysError::NotMember | KeysError::ActsBeyond(_) | KeysError::NoOwner => {
                ApiError::Forbidden(e.to_string())
            }
            KeysError::NotActive(..) | KeysError::NoPlace { .. } | KeysError::Concurrent => ApiError::Conflict(e.to_string()),
            KeysError::Entropy => ApiError::internal(e),
            KeysError::Db(db) => db.into(),
        }
    }
}
