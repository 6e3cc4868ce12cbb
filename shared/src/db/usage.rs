//! Data growth: how many documents, and how many bytes of them, each tenant keeps in each tenant
//! collection. The tenant scope refuses `$collStats` by design, and the collection statistics of
//! a shared collection could not be split by tenant anyway, so this measures around the scope:
//! only through `Db::usage`, which takes a system context. It reads documents only to measure
//! them and writes nothing; the daily snapshots (`usageSnapshots`) are the migrations job's
//! (docs/ARCHITECTURE.md §5, §13).

use super::{Db, DbError, ServerFlavor, TenantCollection};
use crate::ids::TenantId;
use crate::models::CollectionUsage;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::Collection;

/// How many documents the server sends per batch while a collection is measured client-side:
/// the job holds one batch at a time, never a whole collection.
pub const MEASURE_BATCH: u32 = 500;

/// The narrow API of measuring: counts and bytes of any tenant (the snapshots it feeds are the
/// migrations job's, through a [`super::GlobalStore`]).
#[derive(Debug, Clone)]
pub struct UsageMeter {
    db: Db,
}

impl UsageMeter {
    pub(super) fn new(db: &Db) -> Self {
        Self { db: db.clone() }
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
