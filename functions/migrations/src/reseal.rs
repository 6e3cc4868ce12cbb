//! Bringing a tenant's personal data under one data-key version, shared by migration 005
//! (which seals legacy plaintext) and the `rotate-key` job (which re-encrypts under a new key)
//! (docs/ARCHITECTURE.md §20).
//!
//! Every rewrite of a stored value is conditional on the value it read, and reads again on a
//! mismatch, so that no concurrent edit is undone. All of it runs in bounded batches and is
//! idempotent: a run that stops is resumed by running it again.

use mongodb::bson::{doc, oid::ObjectId, Document};
use shared::db::{Db, DbError, Scoped, SystemContext, TenantCollection};
use shared::ids::TenantId;
use shared::models::User;
use shared::pii::{Field, PiiError, Sealed};
use shared::seam::Seam;

/// How many records a batch reads.
pub const BATCH: i64 = 100;
/// How often one record's rewrite reads again after a concurrent change before giving up.
const TRIES: usize = 5;

/// The users' personal-data fields, with their place in a record.
const USER_FIELDS: [Field; 5] = [Field::UserEmail, Field::UserFirstName, Field::UserLastName, Field::UserDepartment, Field::UserTitle];

fn sealed_of(user: &User, field: Field) -> Option<&Sealed> {
    let p = &user.profile;
    match field {
        Field::UserEmail => Some(&user.email),
        Field::UserFirstName => Some(&p.first_name),
        Field::UserLastName => Some(&p.last_name),
        Field::UserDepartment => p.department.as_ref(),
        Field::UserTitle => p.title.as_ref(),
        Field::BillingEmail => None,
    }
}

/// The tenant's users, under the personal-data system scope.
pub fn users(db: &Db, tenant: &TenantId) -> Scoped<User> {
    db.scoped(&SystemContext::new("personal data").for_tenant(tenant.clone()), TenantCollection::Users)
}

/// A key or vault failure, as the database error the jobs return.
pub fn pii(e: PiiError) -> DbError {
    DbError::Pii(e)
}

/// Whether a record has a value not yet under `version`, or no blind index.
fn needs_rewrite(user: &User, version: u32) -> bool {
    user.email_hash.is_none() || USER_FIELDS.iter().any(|f| sealed_of(user, *f).is_some_and(|v| v.key_version() != Some(version)))
}

/// What to rewrite in one record: each field that is not yet under `version` (legacy plaintext
/// included), resealed, and the blind index if it is missing. `None` when nothing is.
async fn rewrite_of(db: &Db, tenant: &TenantId, user: &User, version: u32) -> Result<Option<(Document, Document)>, DbError> {
    let keys = db.keyring()?;
    let (mut filter, mut set) = (doc! {"_id": user.id}, Document::new());
    for field in USER_FIELDS {
        let Some(value) = sealed_of(user, field) else { continue };
        if value.key_version() == Some(version) {
            continue;
        }
        let plain = keys.open(tenant, field, value).await.map_err(|error| {
            tracing::error!(tenantId = %tenant, userId = %user.id, field = field.path(), %error, "a stored value does not open; left as it is");
            pii(error)
        })?;
        filter.insert(field.path(), value.to_bson());
        set.insert(field.path(), keys.seal(tenant, field, &plain).await.map_err(pii)?.to_bson());
    }
    if user.email_hash.is_none() {
        let email = users::person::email(db, tenant, user).await?;
        filter.insert("emailHash", doc! {"$exists": false});
        set.insert("emailHash", keys.email_index(tenant, &email).await.map_err(pii)?);
    }
    Ok((!set.is_empty()).then_some((filter, set)))
}

/// Brings one record under `version`: the write pins every value it read, and a concurrent
/// change (a PATCH, which writes under the current key) makes it read again. Returns whether it
/// wrote. `seam` is told between the read and the write (`personal.rewrite.read`).
async fn rewrite_user(db: &Db, tenant: &TenantId, id: ObjectId, version: u32, seam: &dyn Seam) -> Result<bool, DbError> {
    let users = users(db, tenant);
    for _ in 0..TRIES {
        let Some(user) = users.find_one(doc! {"_id": id}).await? else { return Ok(false) };
        let Some((filter, set)) = rewrite_of(db, tenant, &user, version).await? else { return Ok(false) };
        seam.reached("personal.rewrite.read").await;
        if users.update_one(filter, doc! {"$set": set}, false).await?.matched == 1 {
            return Ok(true);
        }
    }
    tracing::warn!(tenantId = %tenant, userId = %id, "a record kept changing during its rewrite; the next run takes it");
    Ok(false)
}

/// Rewrites every record of `tenant` that is not yet under `version`, in `_id` order and
/// batches. Returns how many it wrote.
pub async fn rewrite_users(db: &Db, tenant: &TenantId, version: u32, seam: &dyn Seam) -> Result<u64, DbError> {
    let users = users(db, tenant);
    let mut walk = users.batches(doc! {}, BATCH);
    let mut written = 0;
    while let Some(batch) = walk.next().await? {
        for user in &batch {
            if needs_rewrite(user, version) && rewrite_user(db, tenant, user.id, version, seam).await? {
                written += 1;
            }
        }
    }
    Ok(written)
}

/// Reseals the tenant's billing e-mail under `version`, conditional on the value read.
pub async fn rewrite_billing(db: &Db, system: &SystemContext, tenant: &TenantId, version: u32) -> Result<bool, DbError> {
    let registry = db.tenants(system);
    let keys = db.keyring()?;
    let path = Field::BillingEmail.path();
    for _ in 0..TRIES {
        let Some(stored) = registry.field(tenant, path).await? else { return Ok(false) };
        let value: Sealed = mongodb::bson::from_bson(stored)?;
        let value = &value;
        if value.key_version() == Some(version) {
            return Ok(false);
        }
        let plain = keys.open(tenant, Field::BillingEmail, value).await.map_err(pii)?;
        let sealed = keys.seal(tenant, Field::BillingEmail, &plain).await.map_err(pii)?;
        if registry.set_if(tenant, doc! {path: value.to_bson()}, doc! {path: sealed.to_bson()}).await? {
            return Ok(true);
        }
    }
    Ok(false)
}
