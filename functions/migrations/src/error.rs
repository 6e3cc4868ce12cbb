//! Why an invocation failed, and how the Lambda runtime reports it.

use shared::db::DbError;

/// Why an invocation failed, and whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("unrecognised event: {0}")]
    BadEvent(String),
    /// `shred` named a tenant the registry does not hold; nothing was written.
    #[error("Tenant {0} not found")]
    UnknownTenant(shared::ids::TenantId),
    #[error("another run holds the migrations lease")]
    LockBusy,
    #[error("the migrations lease was lost (it expired and another run took it); stopped before {0}")]
    LockLost(&'static str),
    #[error("migration {name} failed")]
    Failed { name: &'static str, source: DbError },
    #[error("database error")]
    Db(#[from] DbError),
    #[error("could not deliver the response to CloudFormation: {0}")]
    Undelivered(String),
}

impl From<shared::pii::PiiError> for MigrationError {
    fn from(e: shared::pii::PiiError) -> Self {
        MigrationError::Db(DbError::Pii(e))
    }
}

impl MigrationError {
    /// Whether invoking again later may succeed: a busy lease or a transient database error.
    pub fn is_retryable(&self) -> bool {
        match self {
            MigrationError::BadEvent(_) | MigrationError::UnknownTenant(_) => false,
            MigrationError::LockBusy | MigrationError::LockLost(_) | MigrationError::Undelivered(_) => true,
            MigrationError::Failed { source, .. } | MigrationError::Db(source) => source.is_retryable(),
        }
    }
}

impl From<MigrationError> for lambda_runtime::Diagnostic {
    fn from(e: MigrationError) -> Self {
        let retry = if e.is_retryable() { "Retryable" } else { "Permanent" };
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        lambda_runtime::Diagnostic { error_type: format!("MigrationError.{retry}"), error_message: message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_lease_is_retryable() {
        assert!(MigrationError::LockBusy.is_retryable());
    }
}
