//! `002-tenant-counters`: tenants made before the seat and admin counters get them, counted
//! from their users: every record holds a seat; pending or active holders of the admin role are
//! admins. Set only where absent (`$exists: false`), so a repeat changes nothing. It runs before
//! the API serves (`setup` and `up` on deploy, and in the run script); until then writers
//! answer 503.

use crate::migration::{MigrationDeps, TENANT_BATCH};
use futures_util::future::BoxFuture;
use mongodb::bson::doc;
use shared::db::{DbError, TenantCollection};
use shared::models::{Role, TenantCounters, User, UserStatus};

/// The step's body.
pub fn run(deps: MigrationDeps<'_>) -> BoxFuture<'_, Result<u64, DbError>> {
    Box::pin(async move {
        let registry = deps.db.tenants(deps.system);
        let mut walk = registry.batches(doc! {"counters": {"$exists": false}}, TENANT_BATCH);
        let mut changed = 0;
        while let Some(batch) = walk.next().await? {
            for tenant in batch {
                let scope = deps.system.for_tenant(tenant.clone());
                let users = deps.db.scoped::<User>(&scope, TenantCollection::Users);
                let seats = users.count_documents(doc! {}).await? as i64;
                let admin_role =
                    deps.db.scoped::<Role>(&scope, TenantCollection::Roles).find_one(doc! {"name": "admin", "isSystem": true}).await?;
                let admins = match admin_role {
                    Some(role) => {
                        let counted = [UserStatus::Pending.as_str(), UserStatus::Active.as_str()];
                        users.count_documents(doc! {"roles": role.id.to_hex(), "status": {"$in": counted.to_vec()}}).await? as i64
                    }
                    None => 0,
                };
                let counters = mongodb::bson::to_bson(&TenantCounters { seats, admins })?;
                if registry.set_if(&tenant, doc! {"counters": {"$exists": false}}, doc! {"counters": counters}).await? {
                    changed += 1;
                }
            }
        }
        Ok(changed)
    })
}
