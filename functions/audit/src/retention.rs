//! The retention job (the `audit-retention` binary, on a schedule): brings each tenant's
//! entries to its plan's retention after a change, then deletes what has expired, in bounded
//! batches, idempotently, and the refusal budgets past their last minute. With a TTL index (MongoDB) it is the backstop; on FerretDB, which has
//! none, it does the work (docs/ARCHITECTURE.md §13).

use mongodb::bson::doc;
use serde::Serialize;
use shared::audit::{catch_up_retention, RETENTION_BATCH};
use shared::db::{Db, DbError, SystemContext};

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
    let mut after = None;
    loop {
        let pending = registry.ids(doc! {"auditRetention.days": {"$gt": 0}}, after, 100).await?;
        let Some((last, _)) = pending.last() else { break };
        after = Some(*last);
        for (_, tenant) in &pending {
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
