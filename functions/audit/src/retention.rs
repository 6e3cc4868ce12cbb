//! The retention job (the `audit-retention` binary, on a schedule): brings each tenant's
//! entries to its plan's retention after a change, then deletes what has expired, in bounded
//! batches, idempotently, and the refusal budgets past their last minute. With a TTL index (MongoDB) it is the backstop; on FerretDB, which has
//! none, it does the work (docs/ARCHITECTURE.md §13).

use mongodb::bson::doc;
use mongodb::bson::Bson;
use serde::Serialize;
use shared::db::{Db, DbError, SystemContext};
use shared::event_kind::{EventFunction, EventKind};
use shared::ids::TenantId;

/// The job's function (the `audit-retention` binary): run by a schedule of its own, an
/// EventBridge Scheduled Event.
pub const FUNCTION: EventFunction = EventFunction { logical_id: "AuditRetentionFunction", takes: &[EventKind::ScheduledEvent] };

/// How much one run may do, so that it ends well within its Lambda's timeout; what is left
/// waits for the next run.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Batches of expired entries deleted per run.
    pub delete_batches: u32,
    /// Batches of entries moved per tenant with a retention change pending.
    pub catch_up_batches: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Self { delete_batches: 200, catch_up_batches: 20 }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionReport {
    /// Tenants whose pending retention change is now fully applied.
    pub tenants_caught_up: u64,
    /// Tenants with a change still pending after this run's batches.
    pub tenants_pending: u64,
    /// Expired entries deleted.
    pub deleted: u64,
    /// Whether every expired entry is gone (else the budget ran out first).
    pub complete: bool,
    /// Refusal budgets (`refusalWindows`, one per key id, address or actor) past their last
    /// minute, deleted: anyone can name a new source, so they would otherwise grow for good.
    pub refusal_budgets_deleted: u64,
}

/// One run of the job.
pub async fn run(db: &Db, budget: Budget) -> Result<RetentionReport, DbError> {
    let system = SystemContext::new("audit retention job");
    let mut report = RetentionReport::default();
    let registry = db.tenants(&system);
    let mut pending = registry.batches(doc! {"auditRetention.days": {"$gt": 0}}, 100);
    while let Some(batch) = pending.next().await? {
        for tenant in &batch {
            if catch_up_retention(db, tenant, budget.catch_up_batches).await? {
                report.tenants_caught_up += 1;
            } else {
                report.tenants_pending += 1;
            }
        }
    }
    let retention = db.audit_retention(&system);
    for _ in 0..budget.delete_batches {
        let deleted = retention.delete_expired(RETENTION_BATCH).await?;
        report.deleted += deleted;
        if deleted < RETENTION_BATCH as u64 {
            report.complete = true;
            break;
        }
    }
    let budgets = db.refusal_budget(&system);
    for _ in 0..budget.delete_batches {
        let deleted = budgets.delete_expired(RETENTION_BATCH).await?;
        report.refusal_budgets_deleted += deleted;
        if deleted < RETENTION_BATCH as u64 {
            break;
        }
    }
    tracing::info!(
        deleted = report.deleted,
        refusal_budgets_deleted = report.refusal_budgets_deleted,
        complete = report.complete,
        pending = report.tenants_pending,
        "audit retention run"
    );
    Ok(report)
}

/// Entries a retention batch reads and moves at a time.
pub const RETENTION_BATCH: i64 = 500;

/// Applies a tenant's pending retention change to its existing entries, at most `max_batches`
/// batches now: each batch moves `expireAt` of the next entries to the retention the tenant has
/// *now*, then records how far it got, conditional on the change it started from, so that a
/// newer change starts over and a rerun resumes. `true` once nothing is pending.
pub async fn catch_up_retention(db: &Db, tenant: &TenantId, max_batches: u32) -> Result<bool, DbError> {
    let system = SystemContext::new("audit retention");
    let registry = db.tenants(&system);
    let retention = db.audit_retention(&system);
    for _ in 0..max_batches {
        let Some(record) = registry.get(tenant).await? else { return Ok(true) };
        let Some(pending) = record.audit_retention else { return Ok(true) };
        let days = record.settings.audit_retention_days();
        let next = retention.reapply(tenant, days, pending.after, RETENTION_BATCH).await?;
        let mut seen = doc! {"auditRetention.days": pending.days};
        seen.insert("auditRetention.after", pending.after.map_or(Bson::Document(doc! {"$exists": false}), Bson::ObjectId));
        let progress = match next {
            Some(after) => doc! {"auditRetention.after": after},
            None => doc! {"auditRetention": Bson::Null},
        };
        // A change made meanwhile moved the marker: it starts over, on a later run.
        if !registry.set_if(tenant, seen, progress).await? {
            return Ok(false);
        }
        if next.is_none() {
            return Ok(true);
        }
    }
    Ok(false)
}
