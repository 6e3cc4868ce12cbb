//! The ordered list of data migrations. Append only: a migration's name is its identity in the
//! ledger, so renaming or reordering one would run it again.

use futures_util::future::BoxFuture;
use mongodb::bson::doc;
use shared::db::{Db, DbError, SystemContext};
use shared::plans::Plan;

/// One migration: a name (`NNN-description`) and its body, which returns how many documents
/// it changed. Bodies must be idempotent: a lease that expires mid-run could let one repeat.
pub struct Migration {
    pub name: &'static str,
    pub run: for<'a> fn(&'a Db, &'a SystemContext) -> BoxFuture<'a, Result<u64, DbError>>,
}

/// Every migration, in the order they run.
pub const MIGRATIONS: &[Migration] = &[Migration { name: "001-add-tenant-features", run: add_tenant_features }];

/// 001 (the brief's): tenants without `settings.features` get their plan's features; a tenant
/// with no known plan gets the free plan's.
fn add_tenant_features<'a>(db: &'a Db, system: &'a SystemContext) -> BoxFuture<'a, Result<u64, DbError>> {
    Box::pin(async move {
        let registry = db.tenants(system);
        let mut changed = 0;
        for plan in Plan::ALL {
            changed += registry
                .update_many(
                    doc! {"settings.features": {"$exists": false}, "settings.billing.plan": plan.as_str()},
                    doc! {"$set": {"settings.features": plan.features()}},
                )
                .await?;
        }
        changed += registry
            .update_many(
                doc! {"settings.features": {"$exists": false}},
                doc! {"$set": {"settings.features": Plan::Free.features()}},
            )
            .await?;
        Ok(changed)
    })
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn migration_names_are_unique_and_ordered() {
        let names: Vec<_> = MIGRATIONS.iter().map(|m| m.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
    }
}
