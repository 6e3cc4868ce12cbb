//! Audit retention across tenants: deleting what has expired, and moving a tenant's `expireAt`
//! when its retention changes. Reached only through `Db::audit_retention`, which takes a system
//! context; it can delete nothing but expired audit entries and set nothing but `expireAt`.

use super::{Db, DbError, TenantCollection};
use crate::ids::TenantId;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::Collection;
use std::collections::BTreeMap;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The narrow API of audit retention.
#[derive(Debug, Clone)]
pub struct AuditRetention {
    db: Db,
    entries: Collection<Document>,
}

impl AuditRetention {
    pub(super) fn new(db: &Db) -> Self {
        Self { db: db.clone(), entries: db.database.collection(TenantCollection::AuditLogs.name()) }
    }

    /// Deletes up to `batch` entries whose `expireAt` has passed, of any tenant: how many went.
    /// Idempotent: the delete re-checks `expireAt`, so a rerun or a racing run deletes nothing
    /// twice and nothing unexpired.
    pub async fn delete_expired(&self, batch: i64) -> Result<u64, DbError> {
        let now = self.db.clock().now();
        let expired = doc! {"expireAt": {"$lte": now}};
        let ids: Vec<Bson> = self
            .entries
            .find(expired.clone())
            .projection(doc! {"_id": 1})
            .sort(doc! {"expireAt": 1})
            .limit(batch)
            .await?
            .try_collect::<Vec<Document>>()
            .await?
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let mut filter = expired;
        filter.insert("_id", doc! {"$in": ids});
        let _serial = self.db.serial().await?;
        Ok(self.entries.delete_many(filter).await?.deleted_count)
    }

    /// Sets `expireAt` of up to `batch` of `tenant`'s entries after `after` (by `_id`) for a
    /// retention of `days`: the end of each entry's UTC day plus `days`, so that one update per
    /// day of entries serves the batch (an entry is kept at most a day longer, never shorter).
    /// Returns the last id handled, or `None` when the tenant has no more entries.
    pub async fn reapply(&self, tenant: &TenantId, days: i64, after: Option<ObjectId>, batch: i64) -> Result<Option<ObjectId>, DbError> {
        let mut filter = doc! {"tenantId": tenant.as_str()};
        if let Some(after) = after {
            filter.insert("_id", doc! {"$gt": after});
        }
        let entries: Vec<Document> = self
            .entries
            .find(filter)
            .projection(doc! {"_id": 1, "timestamp": 1})
            .sort(doc! {"_id": 1})
            .limit(batch)
            .await?
            .try_collect()
            .await?;
        let mut by_day: BTreeMap<i64, Vec<ObjectId>> = BTreeMap::new();
        let mut last = None;
        for entry in &entries {
            let Ok(id) = entry.get_object_id("_id") else { continue };
            let at = entry.get_datetime("timestamp").map(|t| t.timestamp_millis()).unwrap_or_else(|_| id.timestamp().timestamp_millis());
            by_day.entry(at.div_euclid(DAY_MS)).or_default().push(id);
            last = Some(id);
        }
        for (day, ids) in by_day {
            let expire = DateTime::from_millis((day + 1).saturating_add(days).saturating_mul(DAY_MS));
            let _serial = self.db.serial().await?;
            self.entries.update_many(doc! {"tenantId": tenant.as_str(), "_id": {"$in": ids}}, doc! {"$set": {"expireAt": expire}}).await?;
        }
        Ok(last)
    }

    /// Holds `tenant`'s entries that expire before `until` until then: after a change to a
    /// longer retention, so that none is deleted (by a TTL index) before the retention job has
    /// moved it. One update, whatever the size of the log.
    pub async fn hold_until(&self, tenant: &TenantId, until: DateTime) -> Result<u64, DbError> {
        let _serial = self.db.serial().await?;
        let result = self
            .entries
            .update_many(doc! {"tenantId": tenant.as_str(), "expireAt": {"$lt": until}}, doc! {"$set": {"expireAt": until}})
            .await?;
        Ok(result.modified_count)
    }
}
