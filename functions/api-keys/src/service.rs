//! The api-keys context's rules. It works only through scoped collections and the tenant's own
//! registry record (for the plan's number of keys).

use crate::error::KeysError;
use crate::input::{KeyChanges, NewKey};
use crate::secret;
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use shared::db::{Db, FindOptions, Scoped, TenantCollection};
use shared::error::ApiError;
use shared::models::{ApiKey, ApiKeyStatus};
use shared::permissions::first_not_held;
use shared::plans::KeyLimits;
use shared::TenantContext;
use std::time::Duration;

fn keys(db: &Db, ctx: &TenantContext) -> Scoped<ApiKey> {
    db.scoped::<ApiKey>(ctx, TenantCollection::ApiKeys)
}

/// The filter of a status as the API shows it: an active key past its expiry is expired.
fn status_filter(status: ApiKeyStatus, now: DateTime) -> Document {
    match status {
        ApiKeyStatus::Active => doc! {"status": "active", "$or": [{"expiresAt": {"$exists": false}}, {"expiresAt": {"$gt": now}}]},
        ApiKeyStatus::Expired => doc! {"$or": [{"status": "expired"}, {"status": "active", "expiresAt": {"$lte": now}}]},
        ApiKeyStatus::Revoked => doc! {"status": "revoked"},
    }
}

/// A page of the tenant's keys, newest first, and the total.
pub async fn list(db: &Db, ctx: &TenantContext, status: Option<ApiKeyStatus>, page: u64, limit: u64) -> Result<(Vec<ApiKey>, u64), KeysError> {
    let filter = status.map(|s| status_filter(s, db.clock().now())).unwrap_or_default();
    let coll = keys(db, ctx);
    let total = coll.count_documents(filter.clone()).await?;
    let options = FindOptions {
        sort: Some(doc! {"createdAt": -1, "_id": -1}),
        skip: Some((page - 1) * limit),
        limit: Some(limit as i64),
    };
    Ok((coll.find(filter, options).await?, total))
}

/// One key of the tenant.
pub async fn get(db: &Db, ctx: &TenantContext, id: ObjectId) -> Result<ApiKey, KeysError> {
    keys(db, ctx).find_one(doc! {"_id": id}).await?.ok_or(KeysError::NotFound(id))
}

/// Issues a key: its permissions within the caller's, checked against its roles as they are
/// now, and a place among the plan's keys taken by one conditional update before the key is
/// written (given back if the write fails). Returns the key and its whole secret.
pub async fn create(db: &Db, ctx: &TenantContext, limits: KeyLimits, new: &NewKey) -> Result<(ApiKey, String), KeysError> {
    let held = ctx.fresh_permissions(db).await?;
    if let Some(missing) = first_not_held(&held, &new.permissions) {
        return Err(KeysError::Escalation(missing.to_string()));
    }
    let creator = ctx.user_id().ok_or_else(|| ApiError::Forbidden("Only a member of the tenant can own an API key".into()))?;
    take_place(db, ctx, limits).await?;
    let issued = secret::issue().map_err(|_| KeysError::Entropy);
    let id = ObjectId::new();
    let written = match issued {
        Ok(issued) => {
            let key = ApiKey {
                id,
                tenant_id: None,
                key_id: id.to_hex(),
                name: new.name.clone(),
                key_hash: issued.hash.clone(),
                previous_key_hash: None,
                previous_key_valid_until: None,
                permissions: new.permissions.clone(),
                rate_limit: new.rate_limit,
                expires_at: new.expires_at,
                last_used_at: None,
                status: ApiKeyStatus::Active,
                created_by: creator,
                rotated_at: None,
                revoked_at: None,
                created_at: None,
                updated_at: None,
            };
            keys(db, ctx).insert_one(&key).await.map(|k| (k, issued.secret)).map_err(KeysError::from)
        }
        Err(e) => Err(e),
    };
    match written {
        Ok((key, secret)) => Ok((key, secret::full_key(id, &secret))),
        Err(e) => {
            if let Err(error) = db.own_tenant(ctx).give_back_key_places(1).await {
                tracing::error!(%error, "could not give back an API key place");
            }
            Err(e)
        }
    }
}

/// One place among the plan's keys. When they are all taken, the keys that have expired since
/// give theirs back first (marked `expired`), and the place is tried once more.
async fn take_place(db: &Db, ctx: &TenantContext, limits: KeyLimits) -> Result<(), KeysError> {
    let own = db.own_tenant(ctx);
    let plan = ctx.tenant().settings.billing.plan;
    if own.take_key_place(plan, limits.max_keys).await? {
        return Ok(());
    }
    let now = db.clock().now();
    let expired = keys(db, ctx)
        .update_many(doc! {"status": "active", "expiresAt": {"$lte": now}}, doc! {"$set": {"status": "expired"}}, false)
        .await?;
    own.give_back_key_places(expired.modified as i64).await?;
    if own.take_key_place(plan, limits.max_keys).await? {
        return Ok(());
    }
    Err(KeysError::NoPlace { plan: plan.as_str(), max: limits.max_keys })
}

/// Why a conditional write on an active key missed: it is gone, or no longer active.
async fn not_active(db: &Db, ctx: &TenantContext, id: ObjectId) -> KeysError {
    match get(db, ctx, id).await {
        Ok(key) => KeysError::NotActive(id, crate::view::status_at(&key, db.clock().now()).as_str()),
        Err(e) => e,
    }
}

/// The filter of a key that may still be changed: active and not past its expiry.
fn active(id: ObjectId, now: DateTime) -> Document {
    doc! {"_id": id, "status": "active", "$or": [{"expiresAt": {"$exists": false}}, {"expiresAt": {"$gt": now}}]}
}

/// Renames a key and/or changes its limits, within the plan's bounds.
pub async fn update(db: &Db, ctx: &TenantContext, limits: KeyLimits, id: ObjectId, changes: &KeyChanges) -> Result<ApiKey, KeysError> {
    let current = get(db, ctx, id).await?;
    let mut set = Document::new();
    if let Some(name) = &changes.name {
        set.insert("name", name.as_str());
    }
    if let Some(rate) = changes.limits(current.rate_limit, limits)? {
        set.insert("rateLimit", mongodb::bson::to_bson(&rate).map_err(shared::db::DbError::from)?);
    }
    match keys(db, ctx).find_one_and_update(active(id, db.clock().now()), doc! {"$set": set}, false).await? {
        Some(key) => Ok(key),
        None => Err(not_active(db, ctx, id).await),
    }
}

/// Revokes an active key: the authorizer refuses it from the next call. Its place is given
/// back. An expired key is a 409: it is refused already, and its place is reclaimed when needed.
pub async fn revoke(db: &Db, ctx: &TenantContext, id: ObjectId) -> Result<ApiKey, KeysError> {
    let now = db.clock().now();
    let update = doc! {"$set": {"status": "revoked", "revokedAt": now}, "$unset": {"previousKeyHash": "", "previousKeyValidUntil": ""}};
    match keys(db, ctx).find_one_and_update(active(id, now), update, false).await? {
        Some(key) => {
            db.own_tenant(ctx).give_back_key_places(1).await?;
            Ok(key)
        }
        None => Err(not_active(db, ctx, id).await),
    }
}

/// Issues a new secret; the old one keeps working for `grace`, then stops. Conditional on the
/// secret read, so that two racing rotations cannot both claim to have replaced it.
pub async fn rotate(db: &Db, ctx: &TenantContext, id: ObjectId, grace: Duration) -> Result<(ApiKey, String), KeysError> {
    let current = get(db, ctx, id).await?;
    let issued = secret::issue().map_err(|_| KeysError::Entropy)?;
    let now = db.clock().now();
    let until = DateTime::from_millis(now.timestamp_millis() + grace.as_millis() as i64);
    let mut filter = active(id, now);
    filter.insert("keyHash", current.key_hash.as_str());
    let update = doc! {"$set": {
        "keyHash": issued.hash.as_str(),
        "previousKeyHash": current.key_hash.as_str(),
        "previousKeyValidUntil": until,
        "rotatedAt": now,
    }};
    match keys(db, ctx).find_one_and_update(filter, update, false).await? {
        Some(key) => Ok((key, secret::full_key(id, &issued.secret))),
        None => match get(db, ctx, id).await {
            Ok(key) if crate::view::status_at(&key, now) == ApiKeyStatus::Active => Err(KeysError::Concurrent),
            Ok(key) => Err(KeysError::NotActive(id, crate::view::status_at(&key, now).as_str())),
            Err(e) => Err(e),
        },
    }
}
