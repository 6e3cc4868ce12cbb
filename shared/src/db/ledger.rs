//! The global `migrations` ledger and `locks` leases, for the system context only.

use super::{Db, DbError, ServerFlavor};
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

/// On FerretDB, taking an expired lease is a read and a blind write, so two takers in one
/// process could both win; they queue here instead. (Across processes FerretDB gives no such
/// guarantee; it is a local stand-in. On MongoDB the upsert is atomic.)
static ACQUIRE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A held lease. Release it when done; if the holder dies, it expires by itself.
#[derive(Debug)]
pub struct LockGuard {
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
        let _serial = match self.db.flavor().await? {
            ServerFlavor::FerretDb => Some(ACQUIRE_LOCK.lock().await),
            ServerFlavor::MongoDb => None,
        };
        let now = DateTime::now();
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
                collection: self.collection.clone(),
                name: name.to_owned(),
                owner: owner.to_owned(),
            })),
            Ok(_) | Err(DbError::Duplicate) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl LockGuard {
    /// Extends the lease by `ttl` from now if it is still ours. `false` if it was lost (it
    /// expired and another run took it): the holder must stop.
    pub async fn renew(&self, ttl: Duration) -> Result<bool, DbError> {
        let expires = DateTime::from_millis(DateTime::now().timestamp_millis() + ttl.as_millis() as i64);
        let renewed = self
            .collection
            .find_one_and_update(doc! {"_id": &self.name, "owner": &self.owner}, doc! {"$set": {"expiresAt": expires}})
            .return_document(ReturnDocument::After)
            .await?;
        Ok(renewed.is_some())
    }

    /// Gives the lease back (only if still ours).
    pub async fn release(self) -> Result<(), DbError> {
        self.collection.delete_one(doc! {"_id": &self.name, "owner": &self.owner}).await?;
        Ok(())
    }
}
