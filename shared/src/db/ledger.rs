//! The global `migrations` ledger and `locks` leases, for the system context only.

use super::{Db, DbError};
use futures_util::TryStreamExt;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::ReturnDocument;
use mongodb::Collection;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One applied migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationRecord {
    #[serde(rename = "_id")]
    pub name: String,
    pub applied_at: DateTime,
    pub duration_ms: i64,
}

/// Which migrations have run. A record's `_id` is the migration's name, so a name can be
/// recorded once only, whatever races.
#[derive(Debug, Clone)]
pub struct MigrationLedger {
    collection: Collection<MigrationRecord>,
}

impl MigrationLedger {
    pub(super) fn new(collection: Collection<MigrationRecord>) -> Self {
        Self { collection }
    }

    /// Every applied migration, by name.
    pub async fn applied(&self) -> Result<Vec<MigrationRecord>, DbError> {
        let cursor = self.collection.find(doc! {}).sort(doc! {"_id": 1}).await?;
        Ok(cursor.try_collect().await?)
    }

    /// Whether the migration `name` has been applied: one read by `_id`.
    pub async fn is_applied(&self, name: &str) -> Result<bool, DbError> {
        Ok(self.collection.find_one(doc! {"_id": name}).await?.is_some())
    }

    /// Records a migration as applied. `false` if it was already recorded.
    pub async fn record(&self, record: &MigrationRecord) -> Result<bool, DbError> {
        match self.collection.insert_one(record).await.map_err(DbError::from) {
            Ok(_) => Ok(true),
            Err(DbError::Duplicate) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Expiring leases: a crashed holder blocks others only until its lease runs out.
#[derive(Debug, Clone)]
pub struct Locks {
    db: Db,
    collection: Collection<Document>,
}

/// A held lease. Release it when done; if the holder dies, it expires by itself.
#[derive(Debug)]
pub struct LockGuard {
    db: Db,
    collection: Collection<Document>,
    name: String,
    owner: String,
}

impl Locks {
    pub(super) fn new(db: &Db, collection: Collection<Document>) -> Self {
        Self { db: db.clone(), collection }
    }

    /// Takes the lease `name` for `ttl` if it is free or expired. `None` if someone holds it.
    /// Atomic: the upsert either takes an expired lease, or inserts a new one, and a held
    /// lease makes the insert fail on its unique `_id`.
    pub async fn try_acquire(&self, name: &str, owner: &str, ttl: Duration) -> Result<Option<LockGuard>, DbError> {
        // On FerretDB taking an expired lease is a read and a blind write: the serialisation
        // keeps two takers in this process apart. On MongoDB the upsert is atomic.
        let _serial = self.db.serial().await?;
        let now = self.db.clock().now();
        let expires = DateTime::from_millis(now.timestamp_millis() + ttl.as_millis() as i64);
        let taken = self
            .collection
            .find_one_and_update(
                doc! {"_id": name, "expiresAt": {"$lt": now}},
                doc! {"$set": {"owner": owner, "acquiredAt": now, "expiresAt": expires}},
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(DbError::from);
        match taken {
            Ok(Some(lease)) if lease.get_str("owner").ok() == Some(owner) => Ok(Some(LockGuard {
                db: self.db.clone(),
                collection: self.collection.clone(),
                name: name.to_owned(),
                owner: owner.to_owned(),
            })),
            Ok(_) | Err(DbError::Duplicate) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Locks {
    /// Who holds the lease `name` now, if anyone does (an expired lease is nobody's).
    pub async fn holder(&self, name: &str) -> Result<Option<String>, DbError> {
        let live = self.collection.find_one(doc! {"_id": name, "expiresAt": {"$gte": self.db.clock().now()}}).await?;
        Ok(live.and_then(|d| d.get_str("owner").ok().map(str::to_owned)))
    }
}

impl LockGuard {
    /// Extends the lease by `ttl` from now if it is still ours. `false` if it was lost (it
    /// expired and another run took it): the holder must stop.
    pub async fn renew(&self, ttl: Duration) -> Result<bool, DbError> {
        let expires = DateTime::from_millis(self.db.clock().now_ms() + ttl.as_millis() as i64);
        let _serial = self.db.serial().await?;
        let renewed = self
            .collection
            .find_one_and_update(doc! {"_id": &self.name, "owner": &self.owner}, doc! {"$set": {"expiresAt": expires}})
            .return_document(ReturnDocument::After)
            .await?;
        Ok(renewed.is_some())
    }

    /// Gives the lease back (only if still ours).
    pub async fn release(self) -> Result<(), DbError> {
        let _serial = self.db.serial().await?;
        self.collection.delete_one(doc! {"_id": &self.name, "owner": &self.owner}).await?;
        Ok(())
    }
}
