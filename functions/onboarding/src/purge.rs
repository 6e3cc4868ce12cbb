//! An offboarded tenant's purge (docs/ARCHITECTURE.md §22): a durable saga on the machinery of
//! §21 that only rolls forward, one per tenant (`purge:<tenantId>`), queued by the offboarding
//! (at once with no grace period, else by the sweep's scan once the grace has ended) and run by
//! the sweeper. Nothing writes into the tenant while it is `offboarding`, so every step acts on
//! what is there and is safe to redo. The steps:
//! 1. `keys`: every key revoked; the documents of each collection counted for the receipt;
//! 2. `directory`: the Cognito user of every linked record deleted (if it is the record's own);
//! 3. `documents`: every document of the tenant deleted in bounded batches, in every tenant
//!    collection, and its global documents: usage snapshots, other sagas, domain claims, key
//!    windows and its refusal budget;
//! 4. `exports`: the tenant's export files deleted, every version and unfinished upload
//!    included (its exports marked first, and no worker left writing one), then its exports' jobs;
//! 5. `shred`: the registry marked `keysShreddedAt`, then the keys destroyed in the vault (its
//!    tombstone, its key set, its global e-mail index entries);
//! 6. `tombstone`: the data cluster's tombstone, with the signed erasure receipt;
//! 7. `inactive`: the registry record `inactive`: the commit of the purge.

use crate::error::OnboardingError;
use futures_util::future::BoxFuture;
use mongodb::bson::{doc, Bson, DateTime, Document};
use shared::db::{Db, DbError, GlobalCollection, SystemContext, SystemTenantScope, TenantCollection, KEYS_SHREDDED_AT};
use shared::directory::Directory;
use shared::error::ApiError;
use shared::ids::TenantId;
use shared::models::{Tenant, TenantStatus, TenantTombstone, User};
use shared::pii::PiiError;
use shared::receipt::{Receipt, ReceiptFacts};
use shared::saga::{run_steps, Begun, NewSaga, Run, Saga, SagaKind, Sagas, StepFaults, Steps};
use std::collections::BTreeMap;

pub const KEYS: &str = "keys";
pub const DIRECTORY: &str = "directory";
pub const DOCUMENTS: &str = "documents";
pub const EXPORTS: &str = "exports";
pub const SHRED: &str = "shred";
pub const TOMBSTONE: &str = "tombstone";
pub const INACTIVE: &str = "inactive";
/// The steps, in order.
pub const STEPS: [&str; 7] = [KEYS, DIRECTORY, DOCUMENTS, EXPORTS, SHRED, TOMBSTONE, INACTIVE];

/// Documents one delete removes at most: a tenant of 100,000 documents is purged in bounded
/// commands, none of which holds the server for long.
const BATCH: i64 = 1_000;

fn scope(tenant: &TenantId) -> SystemTenantScope {
    SystemContext::new("purge").for_tenant(tenant.clone())
}

/// The saga's id: one per tenant.
pub fn saga_id(tenant: &TenantId) -> String {
    format!("purge:{tenant}")
}

/// Queues the purge of `tenant` for the sweeper (its offboarding handed it over). Queuing twice
/// finds the first saga.
pub async fn queue(db: &Db, tenant: &TenantId) -> Result<(), OnboardingError> {
    let new = NewSaga {
        kind: SagaKind::Purge,
        tenant_id: tenant.clone(),
        idempotency: None,
        request: &[],
        params: Document::new(),
        lookup: None,
        id: Some(saga_id(tenant)),
        first: Some(KEYS),
    };
    match Sagas::new(db).begin(new).await? {
        Begun::Run(run) => {
            run.queue().await?;
        }
        // Queued before, running, or done.
        Begun::Finished(_) | Begun::InProgress { .. } | Begun::Mismatch => {}
    }
    Ok(())
}

/// Runs the purge whose lease `run` holds to its end, from its last recorded step. Any error
/// leaves it running for the next sweep; nothing is undone.
pub async fn drive(db: &Db, directory: &dyn Directory, mut run: Run, faults: &dyn StepFaults) -> Result<Saga, OnboardingError> {
    let steps = PurgeSteps { db, directory };
    match run_steps(&steps, &mut run, faults).await {
        Ok(()) => {
            let result = doc! {"tenantId": run.saga().tenant_id.as_str()};
            Ok(run.complete(result).await?)
        }
        // Not offboarding (cancelled before the purge was handed over): nothing was done.
        Err(error @ (OnboardingError::NotCancellable(_) | OnboardingError::TenantNotFound(_))) if !run.saga().did(KEYS) => {
            let mut failure = ApiError::from(OnboardingError::NotCancellable(run.saga().tenant_id.clone())).into_failure("not_offboarding");
            // A later offboarding queues the same saga again: it starts over.
            failure.retryable = true;
            run.fail(failure).await?;
            Err(error)
        }
        Err(error) => {
            run.pause(&error.to_string()).await;
            Err(error)
        }
    }
}

struct PurgeSteps<'a> {
    db: &'a Db,
    directory: &'a dyn Directory,
}

impl Steps for PurgeSteps<'_> {
    type Error = OnboardingError;

    fn order(&self) -> &'static [&'static str] {
        &STEPS
    }

    fn act<'a>(&'a self, run: &'a Run, step: &'static str) -> BoxFuture<'a, Result<Document, OnboardingError>> {
        Box::pin(act(self, run, step))
    }
}

async fn act(steps: &PurgeSteps<'_>, run: &Run, step: &'static str) -> Result<Document, OnboardingError> {
    let db = steps.db;
    let saga = run.saga();
    let tenant = &saga.tenant_id;
    match step {
        KEYS => {
            // Only an offboarded tenant is purged: a queue that raced a cancellation finds it
            // active again and stops here, before anything changed.
            let record = registry_record(db, tenant).await?.ok_or_else(|| OnboardingError::TenantNotFound(tenant.clone()))?;
            if !record.status.is_ending() {
                return Err(OnboardingError::NotCancellable(tenant.clone()));
            }
            // A restore of its export is still reading the files this purge deletes: it waits
            // for the restore to end (the sweeper takes it up again), so that it is not undone.
            if shared::jobs::Jobs::new(db).restore_open(tenant).await? {
                let why = "a restore of the tenant's export is under way".to_owned();
                return Err(DbError::Files(shared::jobs::ExportError::Unavailable("the jobs worker", why)).into());
            }
            // Counted before anything goes, while the tenant is frozen: what the receipt states.
            let mut counts = Document::new();
            for collection in TenantCollection::ALL {
                let n = db.scoped::<Document>(&scope(tenant), collection).count_documents(doc! {}).await?;
                counts.insert(collection.name(), n as i64);
            }
            revoke_keys(db, tenant).await?;
            Ok(doc! {"params.deleted": counts})
        }
        DIRECTORY => Ok(doc! {"params.cognitoUsersDeleted": delete_directory_users(db, steps.directory, tenant).await? as i64}),
        DOCUMENTS => {
            delete_documents(db, tenant, &saga.id).await?;
            Ok(Document::new())
        }
        EXPORTS => {
            let tracked = shared::exports::delete_tenant_exports(db, tenant).await?;
            // And whatever lies under the tenant's prefix that no job names any more.
            let stray =
                db.exports().map_err(DbError::from)?.delete_under(&shared::exports::tenant_prefix(tenant)).await.map_err(DbError::from)?;
            shared::jobs::Jobs::new(db).delete_exports(tenant).await?;
            Ok(doc! {"params.exportObjectsDeleted": (tracked + stray) as i64})
        }
        SHRED => {
            shred_keys(db, tenant, db.clock().now()).await?;
            // The vault's tombstone says the tenant ended (not only shredded), for the
            // reconciliation of a restored data cluster that no longer has the data side's.
            db.keyring()?.vault().mark_purged(tenant).await.map_err(DbError::Pii)?;
            Ok(Document::new())
        }
        TOMBSTONE => {
            write_tombstone(db, saga).await?;
            Ok(Document::new())
        }
        INACTIVE => {
            set_inactive(db, tenant).await?;
            Ok(Document::new())
        }
        _ => Err(OnboardingError::Db(DbError::Duplicate)),
    }
}

/// Revokes every key of the tenant that is not revoked yet: the authorizer refuses them from the
/// next call (their places need no giving back: the tenant is ending).
async fn revoke_keys(db: &Db, tenant: &TenantId) -> Result<u64, DbError> {
    let keys = db.scoped::<Document>(&scope(tenant), TenantCollection::ApiKeys);
    let update = doc! {"$set": {"status": "revoked", "revokedAt": db.clock().now(), "placeHeld": false}};
    Ok(keys.update_many(doc! {"status": {"$ne": "revoked"}}, update, false).await?.modified)
}

/// Deletes the Cognito user of every record of the tenant, where it is the record's own: a
/// linked record's by its `sub`, a pending record's (an invitation that never linked it) only if
/// no other record links it; one gone already is done. Each record is marked `directoryGone`
/// once its user is dealt with, so that a redo after a timeout goes on from where it stopped
/// instead of asking Cognito about every record again. How many linked records' users are gone.
async fn delete_directory_users(db: &Db, directory: &dyn Directory, tenant: &TenantId) -> Result<u64, OnboardingError> {
    let scope = scope(tenant);
    let users = db.scoped::<User>(&scope, TenantCollection::Users);
    loop {
        let options = shared::db::FindOptions { limit: Some(100), ..Default::default() };
        let batch = users.find(doc! {"directoryGone": {"$exists": false}}, options).await?;
        if batch.is_empty() {
            break;
        }
        for user in batch {
            let done = match user.cognito_user_id.sub() {
                Some(_) => users::service::delete_own_directory_user(db, directory, &scope, &user).await,
                None => match users::person::email(db, tenant, &user).await {
                    Ok(email) => users::service::discard_unlinked_user(db, directory, &scope, &email, user.id).await,
                    Err(e) => Err(e.into()),
                },
            };
            match done {
                Ok(()) => {}
                // Its keys were shredded before the offboarding (the operator's `shred`): no
                // address opens to find its Cognito users by. They stay, admitted nowhere (the
                // tenant is ending), and the receipt does not count them.
                Err(users::error::UsersError::Db(DbError::Pii(PiiError::Shredded(_)))) => {
                    tracing::warn!(tenantId = %tenant, userId = %user.id, "a shredded tenant's Cognito user cannot be found by its e-mail; left");
                    users.update_one(doc! {"_id": user.id}, doc! {"$set": {"directoryGone": false}}, false).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            users.update_one(doc! {"_id": user.id}, doc! {"$set": {"directoryGone": true}}, false).await?;
        }
    }
    let linked = doc! {"directoryGone": true, "cognitoUserId": {"$not": {"$regex": "^pending:"}}};
    Ok(users.count_documents(linked).await?)
}

/// Deletes every document of the tenant, in every tenant collection, in bounded batches, and its
/// global documents but the saga `keep` (the purge's own). Idempotent.
async fn delete_documents(db: &Db, tenant: &TenantId, keep: &str) -> Result<(), DbError> {
    let scope = scope(tenant);
    let system = SystemContext::new("purge");
    // The key windows are found by the keys' ids, so they go before the keys.
    let windows = db.global::<Document>(&system, GlobalCollection::ApiKeyWindows);
    let keys = db.scoped::<Document>(&scope, TenantCollection::ApiKeys);
    for id in keys.distinct("_id", doc! {}).await? {
        windows.delete_many(doc! {"_id": id}).await?;
    }
    for collection in TenantCollection::ALL {
        let documents = db.scoped::<Document>(&scope, collection);
        loop {
            let batch = documents
                .find(doc! {}, shared::db::FindOptions { limit: Some(BATCH), ..Default::default() })
                .await?
                .into_iter()
                .filter_map(|d| d.get("_id").cloned())
                .collect::<Vec<Bson>>();
            if batch.is_empty() {
                break;
            }
            documents.delete_many(doc! {"_id": {"$in": batch}}).await?;
        }
    }
    db.global::<Document>(&system, GlobalCollection::UsageSnapshots).delete_many(doc! {"tenantId": tenant.as_str()}).await?;
    db.global::<Document>(&system, GlobalCollection::RefusalWindows).delete_many(doc! {"_id": format!("invite:{tenant}")}).await?;
    db.global::<Document>(&system, GlobalCollection::Sagas).delete_many(doc! {"tenantId": tenant.as_str(), "_id": {"$ne": keep}}).await?;
    db.tenants(&system).release_domains_of(tenant).await?;
    Ok(())
}

/// The shred itself (docs/ARCHITECTURE.md §20): the registry marked `keysShreddedAt` = `at`
/// unless marked (first: from then on nothing asks for the keys; a tenant the registry no
/// longer holds has nothing to mark), then the vault's tombstone (kept if there), the wrapped
/// keys and the global e-mail index entries. Idempotent; the marker keeps its first date, which
/// it answers. The purge, the `shred` job and `reconcile-tombstones` all shred through it.
pub async fn shred_keys(db: &Db, tenant: &TenantId, at: DateTime) -> Result<DateTime, DbError> {
    let registry = db.tenants(&SystemContext::new("shred"));
    registry.set_if(tenant, doc! {KEYS_SHREDDED_AT: {"$exists": false}}, doc! {KEYS_SHREDDED_AT: at}).await?;
    db.keyring()?.shred(tenant).await.map_err(DbError::Pii)?;
    match registry.field(tenant, KEYS_SHREDDED_AT).await? {
        Some(Bson::DateTime(marked)) => Ok(marked),
        _ => Ok(at),
    }
}

/// The data cluster's tombstone, with the erasure receipt signed by the platform's receipt key:
/// what was deleted (counted by the first step), the Cognito users, when the keys were shredded
/// and after when no backup can bring them back. A redo finds its own tombstone.
async fn write_tombstone(db: &Db, saga: &Saga) -> Result<(), OnboardingError> {
    let tenant = &saga.tenant_id;
    let store = db.global::<TenantTombstone>(&SystemContext::new("purge"), GlobalCollection::TenantTombstones);
    if store.find_one(doc! {"_id": tenant.as_str()}).await?.is_some() {
        return Ok(());
    }
    let record = registry_record(db, tenant).await?.ok_or_else(|| OnboardingError::TenantNotFound(tenant.clone()))?;
    let offboarding = record.offboarding.as_ref();
    let deleted = saga
        .params
        .get_document("deleted")
        .map(|counts| counts.iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(0).max(0) as u64)).collect())
        .unwrap_or_default();
    let purged_at = db.clock().now();
    let facts = ReceiptFacts {
        tenant_id: tenant.clone(),
        offboarded_at: offboarding.map(|o| o.requested_at).unwrap_or(saga.created_at),
        offboarded_by: offboarding.map(|o| o.requested_by.clone()).unwrap_or_default(),
        purged_at,
        deleted,
        cognito_users_deleted: saga.params.get_i64("cognitoUsersDeleted").unwrap_or(0).max(0) as u64,
        keys_shredded_at: record.keys_shredded_at.unwrap_or(purged_at),
    };
    let receipt = Receipt::new(facts.clone(), &db.backup_bounds());
    let signed = shared::receipt::sign(&*db.signer()?, &receipt).await.map_err(DbError::from)?;
    let tombstone = TenantTombstone {
        id: tenant.clone(),
        offboarded_at: facts.offboarded_at,
        offboarded_by: facts.offboarded_by,
        purged_at,
        receipt: Some(signed),
    };
    match store.insert(&tombstone).await {
        Ok(()) | Err(DbError::Duplicate) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The commit of a purge: the registry record `inactive`.
async fn set_inactive(db: &Db, tenant: &TenantId) -> Result<(), DbError> {
    let registry = db.tenants(&SystemContext::new("purge"));
    registry.set_if(tenant, doc! {}, doc! {"status": TenantStatus::Inactive.as_str()}).await?;
    Ok(())
}

/// What a restored backup brought back of a tenant that was purged (the reconciliation of
/// tombstones, docs/ARCHITECTURE.md §22): its keys revoked, its documents and global documents
/// deleted, and its registry record `inactive`. Idempotent. The documents deleted, per
/// collection.
pub async fn purge_leftovers(db: &Db, tenant: &TenantId) -> Result<BTreeMap<String, u64>, DbError> {
    let mut counts = BTreeMap::new();
    for collection in TenantCollection::ALL {
        let n = db.scoped::<Document>(&scope(tenant), collection).count_documents(doc! {}).await?;
        counts.insert(collection.name().to_owned(), n);
    }
    revoke_keys(db, tenant).await?;
    delete_documents(db, tenant, "").await?;
    set_inactive(db, tenant).await?;
    Ok(counts)
}

/// Whether the tenant's purge saga exists and counts: queued, running or completed (a failed
/// one, stopped by a cancellation, is queued again by the next offboarding).
pub async fn exists(db: &Db, tenant: &TenantId) -> Result<bool, DbError> {
    Ok(Sagas::new(db).get(&saga_id(tenant)).await?.is_some_and(|s| s.state != shared::saga::SagaState::Failed))
}

/// The registry record of a tenant, if any (the offboarding's reads).
pub(crate) async fn registry_record(db: &Db, tenant: &TenantId) -> Result<Option<Tenant>, DbError> {
    db.tenants(&SystemContext::new("offboarding")).get(tenant).await
}
