//! Data growth: how many documents, and how many bytes of them, each tenant keeps in each tenant
//! collection, and the daily snapshots of it (`usageSnapshots`). The tenant scope refuses
//! `$collStats` by design, and the collection statistics of a shared collection could not be
//! split by tenant anyway, so this measures around the scope: only through `Db::usage`, which
//! takes a system context. It reads documents only to measure them, and it writes nothing but
//! snapshots (docs/ARCHITECTURE.md §5, §13). A superadmin reads the snapshots back through
//! `Db::usage_history`, which can only read them.

use super::{global, Db, DbError, ServerFlavor, TenantCollection};
use crate::ids::TenantId;
use crate::models::{CollectionUsage, UsageSnapshot};
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::Collection;

/// How many documents the server sends per batch while a collection is measured client-side:
/// the job holds one batch at a time, never a whole collection.
pub const MEASURE_BATCH: u32 = 500;

/// The narrow API of measuring: counts and bytes of any tenant, and writing its snapshots.
#[derive(Debug, Clone)]
pub struct UsageMeter {
    db: Db,
    snapshots: Collection<UsageSnapshot>,
}

impl UsageMeter {
    pub(super) fn new(db: &Db) -> Self {
        Self { db: db.clone(), snapshots: db.database.collection(global::USAGE_SNAPSHOTS) }
    }

    /// Documents and bytes of `tenant` in every tenant collection, in [`TenantCollection::ALL`]'s
    /// order.
    pub async fn measure(&self, tenant: &TenantId) -> Result<Vec<(TenantCollection, CollectionUsage)>, DbError> {
        let mut measured = Vec::with_capacity(TenantCollection::ALL.len());
        for collection in TenantCollection::ALL {
            measured.push((collection, self.measure_collection(tenant, collection).await?));
        }
        Ok(measured)
    }

    /// Documents and bytes of `tenant` in one collection. MongoDB sums `$bsonSize` itself;
    /// FerretDB has no `$bsonSize`, so there the documents are streamed and their lengths summed
    /// here.
    pub async fn measure_collection(&self, tenant: &TenantId, collection: TenantCollection) -> Result<CollectionUsage, DbError> {
        match self.db.flavor().await? {
            ServerFlavor::MongoDb => self.measure_on_server(tenant, collection).await,
            ServerFlavor::FerretDb => self.measure_client_side(tenant, collection).await,
        }
    }

    /// Streams the tenant's documents raw (never decoded into a model, so any stored shape
    /// counts) in batches of [`MEASURE_BATCH`], and sums their BSON lengths: the bytes the
    /// server holds for them, as the wire carries them.
    async fn measure_client_side(&self, tenant: &TenantId, collection: TenantCollection) -> Result<CollectionUsage, DbError> {
        let raw: Collection<RawDocumentBuf> = self.db.database.collection(collection.name());
        let mut cursor = raw.find(doc! {"tenantId": tenant.as_str()}).batch_size(MEASURE_BATCH).await?;
        let mut usage = CollectionUsage::default();
        while cursor.advance().await? {
            usage.documents += 1;
            usage.bytes += cursor.current().as_bytes().len() as u64;
        }
        Ok(usage)
    }

    /// One aggregation: `$match` on the tenant, then `$group` summing 1 and `$bsonSize`.
    async fn measure_on_server(&self, tenant: &TenantId, collection: TenantCollection) -> Result<CollectionUsage, DbError> {
        let coll: Collection<Document> = self.db.database.collection(collection.name());
        let pipeline = vec![
            doc! {"$match": {"tenantId": tenant.as_str()}},
            doc! {"$group": {"_id": Bson::Null, "documents": {"$sum": 1_i64}, "bytes": {"$sum": {"$bsonSize": "$$ROOT"}}}},
        ];
        let mut cursor = coll.aggregate(pipeline).await?;
        Ok(match cursor.try_next().await? {
            Some(group) => CollectionUsage { documents: count(group.get("documents")), bytes: count(group.get("bytes")) },
            None => CollectionUsage::default(),
        })
    }

    /// Writes a snapshot, replacing the one of the same tenant and day if there is one (an
    /// upsert by `_id`): a rerun the same day leaves one snapshot, the latest.
    pub async fn record(&self, snapshot: &UsageSnapshot) -> Result<(), DbError> {
        let mut raced = false;
        loop {
            let written = {
                let _serial = self.db.serial().await?;
                self.snapshots.replace_one(doc! {"_id": &snapshot.id}, snapshot).upsert(true).await.map_err(DbError::from)
            };
            match written {
                Ok(_) => return Ok(()),
                // Two runs inserting the same new day at once (on MongoDB): the loser's upsert
                // meets the winner's `_id`; replacing it now matches it.
                Err(DbError::Duplicate) if !raced => raced = true,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A count from an aggregation, whatever numeric type the server chose for it.
fn count(value: Option<&Bson>) -> u64 {
    match value {
        Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Double(n)) if n.is_finite() && *n >= 0.0 => *n as u64,
        _ => 0,
    }
}

/// The daily usage snapshots, read only: what a superadmin's usage history shows.
#[derive(Debug, Clone)]
pub struct UsageHistory {
    snapshots: Collection<UsageSnapshot>,
}

impl UsageHistory {
    pub(super) fn new(db: &Db) -> Self {
        Self { snapshots: db.database.collection(global::USAGE_SNAPSHOTS) }
    }

    /// `tenant`'s snapshots of `since` (`YYYY-MM-DD`) and later, newest first, at most `limit`.
    pub async fn since(&self, tenant: &TenantId, since: &str, limit: i64) -> Result<Vec<UsageSnapshot>, DbError> {
        let filter = doc! {"tenantId": tenant.as_str(), "day": {"$gte": since}};
        let limit = limit.max(1);
        // One batch of them all: a year of snapshots is a few hundred small documents, so that
        // the read is one round trip rather than a first batch and its `getMore`s.
        let batch = u32::try_from(limit).unwrap_or(u32::MAX);
        let cursor = self.snapshots.find(filter).sort(doc! {"day": -1}).limit(limit).batch_size(batch).await?;
        Ok(cursor.try_collect().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_an_aggregation_read_any_numeric_type() {
        assert_eq!(count(Some(&Bson::Int32(7))), 7);
        assert_eq!(count(Some(&Bson::Int64(1 << 40))), 1 << 40);
        assert_eq!(count(Some(&Bson::Double(12.0))), 12);
        assert_eq!(count(Some(&Bson::Int64(-1))), 0);
        assert_eq!(count(None), 0);
    }
}
