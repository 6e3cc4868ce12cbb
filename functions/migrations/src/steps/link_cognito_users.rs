//! `003-link-cognito-users`: every user record still holding `pending:<id>`, whatever its status
//! (tenant admins were written `active` with it), is linked to a Cognito user through the admin
//! API, never from a token, by the invitation's own provisioning (the users crate): the user is
//! created, which sends its invitation, or, if the e-mail has one already, adopted only under
//! the invitation's rule (this tenant's `custom:tenantId`, and no record links it). Anything else
//! (an e-mail several tenants shared before e-mails belonged to one tenant) is left as it is and
//! reported in the log by ids.

use crate::migration::{MigrationDeps, TENANT_BATCH};
use futures_util::future::BoxFuture;
use mongodb::bson::doc;
use shared::db::{DbError, TenantCollection};
use shared::models::User;
use users::error::UsersError;

/// The step's body.
pub fn run(deps: MigrationDeps<'_>) -> BoxFuture<'_, Result<u64, DbError>> {
    Box::pin(async move {
        let registry = deps.db.tenants(deps.system);
        let mut walk = registry.batches(doc! {}, TENANT_BATCH);
        let mut changed = 0;
        while let Some(batch) = walk.next().await? {
            for tenant in batch {
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
