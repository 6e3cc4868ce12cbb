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
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<TenantsError> for ApiError {
    fn from(e: TenantsError) -> Self {
        match e {
            TenantsError::DomainTaken(_) => ApiError::Conflict(e.to_string()),
            TenantsError::NotFound(_) => ApiError::NotFound(e.to_string()),
            TenantsError::Concurrent(_) | TenantsError::Shredded(_) | TenantsError::Ending(..) => ApiError::Conflict(e.to_string()),
            TenantsError::CountersMissing => ApiError::Unavailable(Box::new(e)),
            TenantsError::RetentionFixed(_) => ApiError::invalid("auditRetentionDays", e.to_string()),
            TenantsError::Db(db) => db.into(),
        }
    }
}
