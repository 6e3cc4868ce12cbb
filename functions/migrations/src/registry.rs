//! The ordered list of data migrations. Append only: a migration's name is its identity in the
//! ledger, so renaming or reordering one would run it again.

use futures_util::future::BoxFuture;
use mongodb::bson::doc;
use shared::db::{Db, DbError, SystemContext, TenantCollection};
use shared::directory::Directory;
use shared::models::{Role, TenantCounters, User, UserStatus};
use shared::plans::Plan;
use users::error::UsersError;

/// What a migration works with.
#[derive(Clone, Copy)]
pub struct Deps<'a> {
    pub db: &'a Db,
    pub system: &'a SystemContext,
    /// The user pool, for repairs of user records.
    pub directory: &'a dyn Directory,
}

/// One migration: a name (`NNN-description`) and its body, which returns how many documents
/// it changed. Bodies must be idempotent: a lease that expires mid-run could let one repeat.
pub struct Migration {
    pub name: &'static str,
    pub run: for<'a> fn(Deps<'a>) -> BoxFuture<'a, Result<u64, DbError>>,
}

/// Every migration, in the order they run.
pub const MIGRATIONS: &[Migration] = &[
    Migration { name: "001-add-tenant-features", run: add_tenant_features },
    Migration { name: "002-tenant-counters", run: tenant_counters },
    Migration { name: "003-link-cognito-users", run: link_cognito_users },
    Migration { name: "004-audit-retention-per-plan", run: audit_retention_per_plan },
    Migration { name: shared::pii::SEAL_MIGRATION, run: crate::personal::seal_personal_data },
];

/// 004: every tenant's audit entries were written with one year's retention; now each plan has
/// its own. Each tenant is marked as having a retention change pending, which the retention job
/// (`audit-retention`) applies in resumable batches. Only tenants not already marked.
fn audit_retention_per_plan(deps: Deps<'_>) -> BoxFuture<'_, Result<u64, DbError>> {
    Box::pin(async move {
        let registry = deps.db.tenants(deps.system);
        let mut changed = 0;
        for plan in Plan::ALL {
            changed += registry
                .update_many(
                    doc! {"settings.billing.plan": plan.as_str(), "auditRetention": {"$exists": false}},
                    doc! {"$set": {"auditRetention": {"days": plan.limits().audit_retention_days}}},
                )
                .await?;
        }
        Ok(changed)
    })
}

/// How many tenants a batch reads at a time.
const BATCH: i64 = 100;

/// 001 (the brief's): tenants without `settings.features` get their plan's features; a tenant
/// with no known plan gets the free plan's.
fn add_tenant_features(deps: Deps<'_>) -> BoxFuture<'_, Result<u64, DbError>> {
    Box::pin(async move {
        let registry = deps.db.tenants(deps.system);
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
            .update_many(doc! {"settings.features": {"$exists": false}}, doc! {"$set": {"settings.features": Plan::Free.features()}})
            .await?;
        Ok(changed)
    })
}

/// 002: tenants made before the seat and admin counters get them, counted from their users:
/// every record holds a seat; pending or active holders of the admin role are admins. Set only
/// where absent (`$exists: false`), so a repeat changes nothing. It runs before the API serves
/// (`setup` and `up` on deploy, and in the run script); until then writers answer 503.
fn tenant_counters(deps: Deps<'_>) -> BoxFuture<'_, Result<u64, DbError>> {
    Box::pin(async move {
        let registry = deps.db.tenants(deps.system);
        let (mut changed, mut after) = (0, None);
        loop {
            let batch = registry.ids(doc! {"counters": {"$exists": false}}, after, BATCH).await?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(*last);
            for (_, tenant) in batch {
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

/// 003: every user record still holding `pending:<id>`, whatever its status (tenant admins
/// were written `active` with it), is linked to a Cognito user through the admin API, never
/// from a token, by the invitation's own provisioning (the users crate): the user is created,
/// which sends its invitation, or, if the e-mail has one already, adopted only under the
/// invitation's rule (this tenant's `custom:tenantId`, and no record links it). Anything else
/// (an e-mail several tenants shared before e-mails belonged to one tenant) is left as it is and
/// reported in the log by ids.
fn link_cognito_users(deps: Deps<'_>) -> BoxFuture<'_, Result<u64, DbError>> {
    Box::pin(async move {
        let registry = deps.db.tenants(deps.system);
        let (mut changed, mut after) = (0, None);
        loop {
            let batch = registry.ids(doc! {}, after, BATCH).await?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(*last);
            for (_, tenant) in batch {
                let scope = deps.system.for_tenant(tenant.clone());
                let users = deps.db.scoped::<User>(&scope, TenantCollection::Users);
                // Inactive records stay unlinked: linking would create an enabled account and send an
                // invitation to someone who may no longer sign in. An admin who reactivates one
                // deletes and invites it again.
                let unlinked = doc! {"cognitoUserId": {"$regex": "^pending:"}, "status": {"$ne": "inactive"}};
                for record in users.find(unlinked, Default::default()).await? {
                    match users::service::provision(deps.db, deps.directory, &scope, &record).await {
                        Ok(_) => changed += 1,
                        Err(UsersError::Db(e)) => return Err(e),
                        Err(error) => tracing::warn!(tenantId = %tenant, userId = %record.id, %error, "not linked; left alone"),
                    }
                }
            }
        }
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
