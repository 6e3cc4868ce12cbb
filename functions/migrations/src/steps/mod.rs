//! The ledger migrations, one file per step, each named after its step. Their order, and the
//! names the ledger knows them by, are `crate::registry`'s.

pub mod add_tenant_features;
pub mod audit_retention_per_plan;
pub mod link_cognito_users;
pub mod seal_personal_data;
pub mod tenant_counters;

use crate::migration::MigrationDeps;
use mongodb::bson::Document;
use shared::db::DbError;
use shared::plans::Plan;

/// Sets, on each plan's tenants, what that plan gives: `per_plan` is the filter and the update
/// for one plan. Returns how many tenants changed.
async fn set_per_plan(deps: MigrationDeps<'_>, per_plan: fn(Plan) -> (Document, Document)) -> Result<u64, DbError> {
    let registry = deps.db.tenants(deps.system);
    let mut changed = 0;
    for plan in Plan::ALL {
        let (filter, update) = per_plan(plan);
        changed += registry.update_many(filter, update).await?;
    }
    Ok(changed)
}
