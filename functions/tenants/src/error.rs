//! The tenants context's errors and their one mapping onto HTTP.

use shared::db::DbError;
use shared::error::ApiError;
use shared::ids::TenantId;
use shared::plans::Plan;

/// What can go wrong in the tenants context.
#[derive(Debug, thiserror::Error)]
pub enum TenantsError {
    #[error("Domain {0} already exists")]
    DomainTaken(String),
    #[error("Tenant {0} not found")]
    NotFound(TenantId),
    #[error("Tenant {0} was changed concurrently; read it again and retry")]
    Concurrent(TenantId),
    #[error("The tenant's counters are being set up; try again shortly")]
    CountersMissing,
    /// Its personal-data keys were shredded: its status and billing no longer change.
    #[error("Tenant {0}'s personal data was shredded; its status and billing can no longer change")]
    Shredded(TenantId),
    /// It is offboarding or inactive (docs/ARCHITECTURE.md §22): it no longer changes.
    #[error("Tenant {0} is {1}; it can no longer change")]
    Ending(TenantId, &'static str),
    /// Only an enterprise tenant sets its own audit retention; every other plan's is fixed.
    #[error("the {} plan keeps its audit log {} days; only enterprise configures it", .0.as_str(), .0.limits().audit_retention_days)]
    RetentionFixed(Plan),
    /// A person of an export being restored holds an account elsewhere (another tenant's
    /// e-mail claim or Cognito user).
    #[error("An e-mail address of the export already belongs to another tenant")]
    EmailTaken,
    #[error("the user directory failed: {0}")]
    Directory(#[from] shared::directory::DirectoryError),
    #[error("Export {0} not found")]
    ExportNotFound(String),
    /// The plan has no nightly exports (premium and enterprise do).
    #[error("the {} plan does not include nightly exports; premium and enterprise do", .0.as_str())]
    NightlyNotInPlan(Plan),
    /// One export of a tenant at a time.
    #[error("Export {0} of the tenant is still under way; read it with GET, and export again once it ends")]
    ExportUnderWay(String),
    /// Only a completed export whose files are there restores.
    #[error("Export {0} is {1}; only a completed export restores")]
    NotRestorable(String, &'static str),
    /// An export file could not be encoded or compressed (a bug, not a fault).
    #[error("the export could not be written: {0}")]
    Export(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<TenantsError> for ApiError {
    fn from(e: TenantsError) -> Self {
        match e {
            TenantsError::DomainTaken(_) => ApiError::Conflict(e.to_string()),
            TenantsError::NotFound(_) | TenantsError::ExportNotFound(_) => ApiError::NotFound(e.to_string()),
            TenantsError::Export(_) => ApiError::internal(e),
            TenantsError::NightlyNotInPlan(_) => ApiError::Forbidden(e.to_string()),
            TenantsError::Concurrent(_)
            | TenantsError::Shredded(_)
            | TenantsError::Ending(..)
            | TenantsError::EmailTaken
            | TenantsError::NotRestorable(..)
            | TenantsError::ExportUnderWay(_) => ApiError::Conflict(e.to_string()),
            TenantsError::Directory(shared::directory::DirectoryError::Unavailable(_)) => ApiError::Unavailable(Box::new(e)),
            TenantsError::Directory(_) => ApiError::internal(e),
            TenantsError::CountersMissing => ApiError::Unavailable(Box::new(e)),
            TenantsError::RetentionFixed(_) => ApiError::invalid("auditRetentionDays", e.to_string()),
            TenantsError::Db(db) => db.into(),
        }
    }
}
