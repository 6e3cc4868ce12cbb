//! The provisional e-mail claims of unconfirmed self-service sign-ups (docs/ARCHITECTURE.md §21).
//! Anyone can sign up with any address, so a sign-up's claim proves nothing until its admin
//! signs in with the temporary password Cognito mailed. Until then an invitation or an
//! onboarding of that address by anyone else cancels the sign-up, whole (its Cognito user, its
//! records, its claims, its keys and its tenant), and proceeds; and the sweeper removes a
//! sign-up still unconfirmed after the temporary password's validity. Both are a removal past
//! the sign-up's commit point, and both go through [`cancel_unconfirmed`].

use crate::error::UsersError;
use crate::person;
use mongodb::bson::{doc, oid::ObjectId, Document};
use shared::db::{Db, DbError, SystemContext, TenantCollection, TenantScope};
use shared::directory::Directory;
use shared::ids::{Email, TenantId};
use shared::models::{User, UserStatus};
use shared::saga::{Failure, SagaKind, Sagas};

/// The field that locks a sign-up's admin record for its removal: the sign-up saga's id.
const REMOVAL: &str = "signupRemoval";

/// How long an unconfirmed sign-up lives: Cognito's temporary password's validity.
pub const UNCONFIRMED_FOR: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Claims `email` for the scope's tenant in the global index, like
/// [`crate::service::claim_email`]; when another tenant holds it only as an unconfirmed
/// sign-up, that sign-up is cancelled first and the claim made. Returns whether this call made
/// the claim.
pub async fn claim_email(db: &Db, directory: &dyn Directory, scope: &impl TenantScope, email: &Email) -> Result<bool, UsersError> {
    match crate::service::claim_email(db, scope, email).await {
        Err(UsersError::EmailTaken) => {
            let Some(holder) = db.keyring()?.email_holder(email).await.map_err(DbError::from)? else {
                // Released in between: claim it now.
                return crate::service::claim_email(db, scope, email).await;
            };
            if holder != *scope.scope_tenant() && cancel_unconfirmed(db, directory, &holder, "cancelled").await? {
                tracing::info!(tenantId = %holder, "an unconfirmed sign-up gave its address up to an invitation or onboarding");
                return crate::service::claim_email(db, scope, email).await;
            }
            Err(UsersError::EmailTaken)
        }
        other => other,
    }
}

/// Removes `tenant` whole if it is an unconfirmed sign-up's: its admin has not signed in. The
/// admin's Cognito user is disabled first, so that nobody can confirm halfway; then the pending
/// record is locked by one conditional write (pending to inactive, naming the removal: a first
/// sign-in activates only a pending record). A record no longer pending by then means the person confirmed, and
/// nothing is removed. The Cognito user goes while the locked record still holds the address,
/// and the records after it, so that a removal that died at any point is finished by the next
/// one (the sign-up's saga stays `completed` until the end). Returns whether the tenant was
/// removed; the saga then ends `failed` with `code`.
pub async fn cancel_unconfirmed(db: &Db, directory: &dyn Directory, tenant: &TenantId, code: &str) -> Result<bool, UsersError> {
    let sagas = Sagas::new(db);
    let Some(saga) = sagas.completed_of(SagaKind::Signup, tenant).await? else { return Ok(false) };
    let Ok(admin_id) = saga.params.get_object_id("adminId") else { return Ok(false) };
    let scope = SystemContext::new("sign-up removal").for_tenant(tenant.clone());
    let users = db.scoped::<User>(&scope, TenantCollection::Users);
    // No record: an earlier removal got past the Cognito user; what is left is documents.
    if let Some(admin) = users.find_one(doc! {"_id": admin_id}).await? {
        let email = person::email(db, tenant, &admin).await?;
        match admin.status {
            // Locked by an earlier removal of this sign-up that died: go on. Any other inactive
            // admin was once active: a confirmed sign-up.
            UserStatus::Inactive => {
                if users.find_one(doc! {"_id": admin_id, REMOVAL: &saga.id}).await?.is_none() {
                    return Ok(false);
                }
            }
            UserStatus::Pending => {
                enable(directory, &email, false).await?;
                let lock = doc! {"$set": {"status": UserStatus::Inactive.as_str(), REMOVAL: &saga.id}};
                let locked = users.find_one_and_update(doc! {"_id": admin_id, "status": UserStatus::Pending.as_str()}, lock, false).await?;
                if locked.is_none() {
                    // Activated meanwhile: a confirmed sign-up keeps its user.
                    enable(directory, &email, true).await?;
                    return Ok(false);
                }
            }
            UserStatus::Active => return Ok(false),
        }
        crate::service::discard_unlinked_user(db, directory, &scope, &email, admin_id).await?;
    }
    remove_tenant(db, tenant, admin_id).await?;
    let failure =
        Failure { code: code.to_owned(), message: "The sign-up was not confirmed, and was removed".into(), status: 409, retryable: false };
    sagas.retire(&saga.id, &failure).await?;
    Ok(true)
}

/// Sets the Cognito user of `email` enabled or not; a user already gone is no error.
async fn enable(directory: &dyn Directory, email: &Email, enabled: bool) -> Result<(), UsersError> {
    match directory.set_enabled(email, enabled).await {
        Ok(()) | Err(shared::directory::DirectoryError::NotFound) => Ok(()),
        Err(e) => Err(UsersError::Directory(e)),
    }
}

/// Everything of a sign-up's tenant but its admin's Cognito user: its documents in each tenant
/// collection, its claims, its registry record, then its key set (last: nothing can be sealed
/// or opened for it after). The tenant never had anyone but its admin.
async fn remove_tenant(db: &Db, tenant: &TenantId, admin_id: ObjectId) -> Result<(), UsersError> {
    let scope = SystemContext::new("sign-up removal").for_tenant(tenant.clone());
    for collection in TenantCollection::ALL {
        db.scoped::<Document>(&scope, collection).delete_many(doc! {}).await?;
    }
    let keyring = db.keyring()?;
    keyring.vault().release_emails_of(tenant).await.map_err(DbError::from)?;
    let registry = db.tenants(&SystemContext::new("sign-up removal"));
    registry.delete(tenant).await?;
    keyring.discard_unregistered(tenant).await.map_err(DbError::from)?;
    tracing::warn!(tenantId = %tenant, adminId = %admin_id, "removed an unconfirmed sign-up whole");
    Ok(())
}

/// The sweeper's pass over sign-ups: each one completed more than [`UNCONFIRMED_FOR`] ago whose
/// admin never signed in is removed whole. How many were removed.
pub async fn expire_unconfirmed(db: &Db, directory: &dyn Directory, limit: i64) -> Result<u64, UsersError> {
    let cutoff = mongodb::bson::DateTime::from_millis(db.clock().now_ms() - UNCONFIRMED_FOR.as_millis() as i64);
    let mut removed = 0;
    for saga in Sagas::new(db).completed_before(SagaKind::Signup, cutoff, limit).await? {
        if cancel_unconfirmed(db, directory, &saga.tenant_id, "expired").await? {
            removed += 1;
        }
    }
    Ok(removed)
}
