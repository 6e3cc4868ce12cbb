//! The api-keys context's rules. It works only through scoped collections and the tenant's own
//! registry record (for the plan's number of keys).

use crate::error::KeysError;
use crate::input::NewKey;
use crate::secret;
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use shared::db::{Db, FindOptions, Scoped, TenantCollection, TenantScope};
use shared::ids::Permission;
use shared::models::{ApiKey, ApiKeyStatus, RateLimit, MARKED_AT};
use shared::permissions::first_not_held;
use shared::plans::KeyLimits;
use shared::seam::{NoSeam, Seam};
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
pub async fn list(
    db: &Db,
    ctx: &TenantContext,
    status: Option<ApiKeyStatus>,
    page: u64,
    limit: u64,
) -> Result<(Vec<ApiKey>, u64), KeysError> {
    let filter = status.map(|s| status_filter(s, db.clock().now())).unwrap_or_default();
    let coll = keys(db, ctx);
    let total = coll.count_documents(filter.clone()).await?;
    let options = FindOptions { sort: Some(doc! {"createdAt": -1, "_id": -1}), skip: Some((page - 1) * limit), limit: Some(limit as i64) };
    Ok((coll.find(filter, options).await?, total))
}

/// One key of the tenant.
pub async fn get(db: &Db, ctx: &TenantContext, id: ObjectId) -> Result<ApiKey, KeysError> {
    keys(db, ctx).find_one(doc! {"_id": id}).await?.ok_or(KeysError::NotFound(id))
}

/// What a caller asks to act through: a key about to be made, or one that exists.
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    /// A new key carrying these permissions: they are granted now, so the caller must hold
    /// them all, creator though it will be.
    New(&'a [Permission]),
    /// An existing key: its new secret, or a change of its limits.
    Existing(&'a ApiKey),
}

/// The one grant check of every path that hands out a usable secret (creation, rotation) or
/// changes what a key may do (its name and limits): whoever receives the secret can act as the
/// key's creator, so this is an issuance (docs/ARCHITECTURE.md §13).
///
/// A new key's permissions must all be held by the caller, read afresh. An existing key may be
/// handled by its creator (the key acts for its creator and never holds more than the creator
/// holds now, so a creator gains nothing through it), or by a member holding, read afresh,
/// every permission the key carries. Anyone else gets a 403, which `shared::http::serve`
/// audits as `access.denied`. Callers run it before any secret is drawn or anything written.
pub async fn may_issue(db: &Db, ctx: &TenantContext, grant: Grant<'_>) -> Result<(), KeysError> {
    let (carried, refused): (&[Permission], fn(String) -> KeysError) = match grant {
        Grant::New(permissions) => (permissions, KeysError::Escalation),
        Grant::Existing(key) if ctx.user_id() == Some(key.created_by) => return Ok(()),
        Grant::Existing(key) => (&key.permissions, KeysError::ActsBeyond),
    };
    match first_not_held(&ctx.fresh_permissions(db).await?.ok_or(KeysError::NotMember)?, carried) {
        Some(missing) => Err(refused(missing.to_string())),
        None => Ok(()),
    }
}

/// A new key's public id: 12 bytes from the OS generator in the 24-hex form of an `ObjectId`,
/// so that the key format and the path parsing stay as they were and older keys keep working.
/// Not `ObjectId::new()`: its time, process and counter would let two keys of one's own tenant
/// bracket another tenant's key made between them (docs/ARCHITECTURE.md §13).
fn new_key_id() -> Result<ObjectId, KeysError> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|_| KeysError::Entropy)?;
    Ok(ObjectId::from_bytes(bytes))
}

/// Issues a key: its permissions within the caller's (the grant check, [`may_issue`]), and a
/// place among the plan's keys taken by one conditional update before the key is written
/// (given back if the write fails). Returns the key and its whole secret.
pub async fn create(db: &Db, ctx: &TenantContext, limits: KeyLimits, new: &NewKey) -> Result<(ApiKey, String), KeysError> {
    create_with(db, ctx, limits, new, &NoSeam).await
}

/// The point of a key's creation between its place and its insert, where a test runs the
/// recount (docs/ARCHITECTURE.md §12).
pub const PLACE_TAKEN: &str = "api_keys.create.placed";

/// [`create`], telling `seam` when the place is taken and the key not yet written
/// ([`PLACE_TAKEN`]); deployments pass `NoSeam`.
pub async fn create_with(
    db: &Db,
    ctx: &TenantContext,
    limits: KeyLimits,
    new: &NewKey,
    seam: &dyn Seam,
) -> Result<(ApiKey, String), KeysError> {
    may_issue(db, ctx, Grant::New(&new.permissions)).await?;
    let id = new_key_id()?;
    let creator = ctx.user_id().ok_or(KeysError::NoOwner)?;
    take_place(db, ctx, limits).await?;
    seam.reached(PLACE_TAKEN).await;
    let issued = secret::issue().map_err(|_| KeysError::Entropy);
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
                // It holds the place just taken (§13): the reconciliation job counts it.
                place_held: Some(true),
                marker_op: None,
                created_by: creator,
                rotated_at: None,
                revoked_at: None,
                created_at: None,
                updated_at: None,
            };
            insert_key(db, ctx, &key).await.map(|k| (k, issued.secret))
        }
        Err(e) => Err((e, true)),
    };
    match written {
        Ok((key, secret)) => Ok((key, secret::full_key(id, &secret))),
        Err((e, false)) => Err(e),
        Err((e, true)) => {
            if let Err(error) = db.own_tenant(ctx).give_back_key_places(1).await {
                tracing::error!(%error, "could not give back an API key place; the reconciliation job corrects apiKeyCount");
            }
            Err(e)
        }
    }
}

/// Writes a new key. A lost reply is settled by reading the key back before its place is given
/// back: a key stored with this very hash was written by this call. An error says whether the
/// key surely was not written (its place is then given back).
async fn insert_key(db: &Db, ctx: &TenantContext, key: &ApiKey) -> Result<ApiKey, (KeysError, bool)> {
    let error = match keys(db, ctx).insert_one(key).await {
        Ok(key) => return Ok(key),
        Err(e) if !e.outcome_unknown() => return Err((e.into(), true)),
        Err(e) => e,
    };
    match keys(db, ctx).find_one(doc! {"_id": key.id}).await {
        Ok(Some(stored)) if stored.key_hash == key.key_hash => {
            tracing::warn!(keyId = %key.id, %error, "an API key insert's reply was lost; it was applied");
            Ok(stored)
        }
        Ok(_) => Err((error.into(), true)),
        Err(reread) => {
            // The key may exist, holding its place: the place stays taken, and the job corrects
            // apiKeyCount if it does not.
            tracing::error!(keyId = %key.id, %error, %reread, "an API key insert's outcome is unknown; the reconciliation job corrects apiKeyCount");
            Err((error.into(), false))
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
    // Each key gives back only the place it holds, and the marker is cleared by the same write;
    // after a lost reply the keys tagged with this operation are the ones it expired. `markedAt`
    // keeps the recount off apiKeyCount until the places given back below have surely moved it.
    let op = ObjectId::new();
    let filter = doc! {"status": "active", "expiresAt": {"$lte": now}, "placeHeld": {"$ne": false}};
    let update = doc! {"$set": {"status": "expired", "placeHeld": false, "markerOp": op, MARKED_AT: now}};
    let expired = match keys(db, ctx).update_many(filter, update, false).await {
        Ok(outcome) => outcome.modified,
        Err(e) if !e.outcome_unknown() => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "expiring keys: the reply was lost; counting what it did");
            keys(db, ctx).count_documents(doc! {"markerOp": op}).await?
        }
    };
    own.give_back_key_places(expired as i64).await?;
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

/// A key the caller may change: [`changeable`] has run the grant check on it.
#[derive(Debug)]
pub struct Changeable(ApiKey);

impl Changeable {
    /// The key as it was read, before the change.
    pub fn key(&self) -> &ApiKey {
        &self.0
    }
}

/// The key `id`, once the caller may change it. The key's calls are its creator's, so changing
/// it is acting through it: the grant check ([`may_issue`]) comes before any change is judged.
pub async fn changeable(db: &Db, ctx: &TenantContext, id: ObjectId) -> Result<Changeable, KeysError> {
    let current = get(db, ctx, id).await?;
    may_issue(db, ctx, Grant::Existing(&current)).await?;
    Ok(Changeable(current))
}

/// Renames a key and/or sets its limits (already judged against the key's current ones and
/// the plan's bounds: [`crate::input::KeyChanges::limits`]), while it is active.
pub async fn update(
    db: &Db,
    ctx: &TenantContext,
    key: Changeable,
    name: Option<&str>,
    rate_limit: Option<RateLimit>,
) -> Result<ApiKey, KeysError> {
    let id = key.0.id;
    let mut set = Document::new();
    if let Some(name) = name {
        set.insert("name", name);
    }
    if let Some(rate) = rate_limit {
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
    match revoke_where(db, ctx, active(id, db.clock().now()), id).await? {
        Some(key) => Ok(key),
        None => Err(not_active(db, ctx, id).await),
    }
}

/// Revokes every key `creator` made that is not revoked yet, expired ones included (a person's
/// erasure, docs/ARCHITECTURE.md §22), giving back the places they hold. Safe to run again: a
/// revoked key is never matched twice. How many this call revoked.
pub async fn revoke_all_of(db: &Db, scope: &impl TenantScope, creator: ObjectId) -> Result<u64, KeysError> {
    let keys = db.scoped::<ApiKey>(scope, TenantCollection::ApiKeys);
    let mut revoked = 0;
    loop {
        let batch =
            keys.find(doc! {"createdBy": creator, "status": "active"}, FindOptions { limit: Some(100), ..FindOptions::default() }).await?;
        if batch.is_empty() {
            return Ok(revoked);
        }
        for key in batch {
            let filter = doc! {"_id": key.id, "status": "active"};
            let written = if key.holds_place() {
                revoke_where(db, scope, filter, key.id).await?
            } else {
                // Its place went back already (an expired key's, reclaimed): only its status moves.
                let update = doc! {"$set": {"status": "revoked", "revokedAt": db.clock().now()}};
                keys.find_one_and_update(filter, update, false).await?
            };
            revoked += u64::from(written.is_some());
        }
    }
}

/// The revoking write of key `id`, on `filter`, and its place given back: `None` if the filter
/// matched nothing.
async fn revoke_where(db: &Db, scope: &impl TenantScope, mut filter: Document, id: ObjectId) -> Result<Option<ApiKey>, KeysError> {
    let keys = db.scoped::<ApiKey>(scope, TenantCollection::ApiKeys);
    let now = db.clock().now();
    // The marker is cleared by the revoking write itself, conditional on the key holding it; the
    // place follows only a write that applied (after a lost reply, one the re-read shows to be
    // this one), so a retry never gives it back twice.
    let op = ObjectId::new();
    filter.insert("placeHeld", doc! {"$ne": false});
    let update = doc! {
        "$set": {"status": "revoked", "revokedAt": now, "placeHeld": false, "markerOp": op, MARKED_AT: now},
        "$unset": {"previousKeyHash": "", "previousKeyValidUntil": ""},
    };
    let written = match keys.find_one_and_update(filter, update, false).await {
        Ok(written) => written,
        Err(e) if !e.outcome_unknown() => return Err(e.into()),
        Err(e) => match keys.find_one(doc! {"_id": id}).await {
            Ok(Some(key)) if key.marker_op == Some(op) => {
                tracing::warn!(keyId = %id, error = %e, "a revocation's reply was lost; it was applied");
                Some(key)
            }
            Ok(_) => return Err(e.into()),
            Err(reread) => {
                tracing::error!(keyId = %id, error = %e, %reread, "a revocation's outcome is unknown; the reconciliation job corrects apiKeyCount");
                return Err(e.into());
            }
        },
    };
    if written.is_some() {
        // The key is revoked whatever happens here: a failure is the job's to correct.
        if let Err(error) = db.own_tenant(scope).give_back_key_places(1).await {
            tracing::error!(keyId = %id, %error, "a revoked key's place was not given back; the reconciliation job corrects apiKeyCount");
        }
    }
    Ok(written)
}

/// Issues a new secret; the old one keeps working for `grace`, then stops. A new secret is an
/// issuance: the grant check ([`may_issue`]) runs before any secret is drawn. The key's
/// permissions and creator never change, so the check cannot go stale before the write, which
/// is conditional on the secret read, so that two racing rotations cannot both claim to have
/// replaced it.
pub async fn rotate(db: &Db, ctx: &TenantContext, id: ObjectId, grace: Duration) -> Result<(ApiKey, String), KeysError> {
    let current = get(db, ctx, id).await?;
    may_issue(db, ctx, Grant::Existing(&current)).await?;
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

/// A plan change takes effect on the next call for keys too: every key of the scope's tenant is
/// brought within `limits` (`$min` leaves smaller windows as they are). The tenants context
/// calls it on a downgrade; the write stays here, with every other write of `apiKeys`.
pub async fn clamp_to_plan(db: &Db, scope: &impl shared::db::TenantScope, limits: KeyLimits) -> Result<(), shared::db::DbError> {
    let bounds = doc! {
        "rateLimit.requestsPerMinute": limits.per_minute,
        "rateLimit.requestsPerHour": limits.per_hour,
        "rateLimit.requestsPerDay": limits.per_day,
    };
    db.scoped::<ApiKey>(scope, TenantCollection::ApiKeys).update_many(doc! {}, doc! {"$min": bounds}, false).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ObjectId::new()` starts with the current time in seconds and ends with a per-process
    /// counter, so ids made in a row sit a second apart and count up by one. Random ids do
    /// neither (for 32 of them, a chance below one in a million of a false failure).
    #[test]
    fn key_ids_carry_neither_the_time_nor_a_counter() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let ids: Vec<ObjectId> = (0..32).map(|_| new_key_id().unwrap()).collect();
        let near_now = ids.iter().filter(|id| (id.timestamp().timestamp_millis() / 1000 - now).abs() <= 86_400).count();
        assert!(near_now <= 1, "{near_now} of 32 ids start with today's time: {ids:?}");
        let counter = |id: &ObjectId| u32::from_be_bytes([0, id.bytes()[9], id.bytes()[10], id.bytes()[11]]);
        let successive = ids.windows(2).filter(|w| counter(&w[1]) == counter(&w[0]).wrapping_add(1) & 0xff_ffff).count();
        assert!(successive <= 1, "{successive} ids follow their predecessor's counter: {ids:?}");
        assert_eq!(ids.iter().map(|id| id.to_hex()).collect::<std::collections::HashSet<_>>().len(), 32);
        assert!(ids.iter().all(|id| id.to_hex().len() == 24), "the 24-hex form of today's keys");
    }
}
