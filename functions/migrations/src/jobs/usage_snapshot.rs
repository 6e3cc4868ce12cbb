//! `usage-snapshot`: the data-growth job. It measures every tenant's documents and bytes in every
//! tenant collection (suspended and inactive tenants included: their data is still stored),
//! emits one metric line per tenant and collection, and writes today's snapshot of each tenant.
//!
//! It takes no lease: it only reads tenant data and writes snapshots, and two runs on the same
//! UTC day write the same `_id`, so the later one's numbers stand. It is bounded in memory: the
//! registry is walked in batches, and each collection is streamed (docs/ARCHITECTURE.md §13).

use crate::error::MigrationError;
use crate::report::Report;
use shared::db::{Db, GlobalCollection, SystemContext};
use shared::models::UsageSnapshot;
use std::collections::BTreeMap;

/// How many tenants are read from the registry at a time.
const TENANT_BATCH: i64 = 100;

/// One run: every registered tenant measured, and its snapshot of today (the day of `db`'s
/// clock when the run starts, in UTC) written or replaced.
pub async fn snapshot(db: &Db) -> Result<Report, MigrationError> {
    let system = SystemContext::new("usage snapshot");
    let registry = db.tenants(&system);
    let meter = db.usage(&system);
    let snapshots = db.global::<UsageSnapshot>(&system, GlobalCollection::UsageSnapshots);
    let taken_at = db.clock().now();
    let day = shared::clock::calendar_day(taken_at.timestamp_millis());
    let mut walk = registry.batches(shared::db::not_purged(), TENANT_BATCH);
    let (mut tenants_measured, mut snapshots_written) = (0_u64, 0_u64);
    while let Some(batch) = walk.next().await? {
        for tenant in batch {
            let measured = meter.measure(&tenant).await?;
            tenants_measured += 1;
            let mut collections = BTreeMap::new();
            for (collection, usage) in measured {
                shared::metrics::data_growth(&tenant, collection.name(), usage.documents, usage.bytes);
                collections.insert(collection.name().to_owned(), usage);
            }
            let snapshot = UsageSnapshot::new(tenant, taken_at, collections);
            // Replaced if the day has one: a rerun the same day leaves one snapshot, the latest.
            snapshots.put(snapshot.id.clone().into(), &snapshot).await?;
            snapshots_written += 1;
        }
    }
    tracing::info!(day = %day, tenants_measured, snapshots_written, "usage snapshot");
    Ok(Report::UsageSnapshot { day, tenants_measured, snapshots_written })
}
