//! The roles context's errors and their one mapping onto HTTP.

use mongodb::bson::oid::ObjectId;
use shared::db::DbError;
use shared::error::ApiError;

/// What can go wrong in the roles context.
#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    #[error("Role {0} not found")]
    NotFound(ObjectId),
    #[error("The system role {0} cannot be changed or deleted")]
    System(String),
    #[error("A role named {0} already exists")]
    NameTaken(String),
    #[error("The name {0} is a system role's, whatever its case; choose another")]
    SystemName(String),
    #[error("The role is held by {0} user(s); remove it from them first, or delete with ?force=true")]
    Held(u64),
    #[error("The caller cannot grant {0}, which it does not hold")]
    Escalation(String),
    /// The caller stopped being an active member after admission (its membership was cached).
    #[error("{}", shared::admission::NOT_MEMBER)]
    NotMember,
    #[error("The role was changed concurrently; read it again and retry")]
    Concurrent,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<RolesError> for ApiError {
    fn from(e: RolesError) -> Self {
        match e {
            RolesError::NotFound(_) => ApiError::NotFound(e.to_string()),
            RolesError::System(_) | RolesError::Escalation(_) | RolesError::NotMember => ApiError::Forbidden(e.to_string()),
            RolesError::NameTaken(_) | RolesError::SystemName(_) | RolesError::Held(_) | RolesError::Concurrent => {
                ApiError::Conflict(e.to_string())
            }
            RolesError::Db(db) => db.into(),
        }
    }
}
