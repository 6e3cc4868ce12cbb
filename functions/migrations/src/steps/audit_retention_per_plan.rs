//! `004-audit-retention-per-plan`: every tenant's audit entries were written with one year's
//! retention; now each plan has its own. Each tenant is marked as having a retention change
//! pending, which the retention job (`audit-retention`) applies in resumable batches. Only
//! tenants not already marked.

use crate::migration::MigrationDeps;
use futures_util::future::BoxFuture;
use mongodb::bson::doc;
use shared::db::DbError;

/// The step's body.
pub fn run(deps: MigrationDeps<'_>) -> BoxFuture<'_, Result<u64, DbError>> {
    Box::pin(super::set_per_plan(deps, |plan| {
        (
            doc! {"settings.billing.plan": plan.as_str(), "auditRetention": {"$exists": false}},
            doc! {"$set": {"auditRetention": {"days": plan.limits().audit_retention_days}}},
        )
    }))
}
