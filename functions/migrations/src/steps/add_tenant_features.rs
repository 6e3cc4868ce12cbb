//! `001-add-tenant-features` (the brief's): tenants without `settings.features` get their
//! plan's features; a tenant with no known plan gets the free plan's.

use crate::migration::MigrationDeps;
use futures_util::future::BoxFuture;
use mongodb::bson::doc;
use shared::db::DbError;
use shared::plans::Plan;

/// The step's body.
pub fn run(deps: MigrationDeps<'_>) -> BoxFuture<'_, Result<u64, DbError>> {
    Box::pin(async move {
        let mut changed = super::set_per_plan(deps, |plan| {
            (
                doc! {"settings.features": {"$exists": false}, "settings.billing.plan": plan.as_str()},
                doc! {"$set": {"settings.features": plan.features()}},
            )
        })
        .await?;
        changed += deps
            .db
            .tenants(deps.system)
            .update_many(doc! {"settings.features": {"$exists": false}}, doc! {"$set": {"settings.features": Plan::Free.features()}})
            .await?;
        Ok(changed)
    })
}
