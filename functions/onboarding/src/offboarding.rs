//! Offboarding (docs/ARCHITECTURE.md §22): a superadmin ends a tenant. It becomes `offboarding`
//! at once (no member or key is admitted, its data is kept and nothing writes into it), may be
//! cancelled within its grace period, and is then purged ([`crate::purge`]) by the sweeper.

use crate::error::OnboardingError;
use crate::purge;
use mongodb::bson::{doc, DateTime};
use serde::Deserialize;
use shared::db::{Db, SystemContext};
use shared::error::ApiError;
use shared::ids::TenantId;
use shared::models::{OffboardingState, Tenant, TenantStatus};
use shared::SuperadminContext;

/// The longest grace period, in days.
pub const MAX_GRACE_DAYS: i64 = 365;
/// The grace period when none is given, in days.
pub const DEFAULT_GRACE_DAYS: i64 = 30;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// `POST /tenants/{tenantId}/offboard`'s body: all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OffboardBody {
    grace_period_days: Option<i64>,
}

impl OffboardBody {
    /// The grace period in days: 0 to [`MAX_GRACE_DAYS`], [`DEFAULT_GRACE_DAYS`] when absent.
    pub fn validate(self) -> Result<i64, ApiError> {
        match self.grace_period_days.unwrap_or(DEFAULT_GRACE_DAYS) {
            days @ 0..=MAX_GRACE_DAYS => Ok(days),
            _ => Err(ApiError::invalid("gracePeriodDays", format!("must be between 0 and {MAX_GRACE_DAYS}"))),
        }
    }
}

/// The registry's view of whoever is not the route's own superadmin (the sweep's scan).
fn system() -> SystemContext {
    SystemContext::new("offboarding")
}

/// The tenant as it stands before an offboarding, or why it cannot be offboarded.
pub async fn offboardable(db: &Db, tenant_id: &TenantId) -> Result<Tenant, OnboardingError> {
    let tenant = purge::registry_record(db, tenant_id).await?.ok_or_else(|| OnboardingError::TenantNotFound(tenant_id.clone()))?;
    if tenant.status.is_ending() {
        return Err(OnboardingError::Ending(tenant_id.clone(), tenant.status.as_str()));
    }
    // A restore is still loading it: it is the restore's until its commit (or its undoing).
    if tenant.restoring.is_some() {
        return Err(OnboardingError::Ending(tenant_id.clone(), "being restored"));
    }
    Ok(tenant)
}

/// Makes `tenant` (as read by [`offboardable`], and audited by the route before this) offboarding,
/// by one write conditional on the status it was read with. With no grace period the purge is
/// handed over in the same write and queued at once. The tenant as written.
pub async fn offboard(db: &Db, admin: &SuperadminContext, tenant: &Tenant, grace_days: i64) -> Result<Tenant, OnboardingError> {
    let now = db.clock().now();
    let state = OffboardingState {
        requested_at: now,
        requested_by: admin.identity().actor_id(),
        grace_period_days: grace_days,
        grace_ends_at: DateTime::from_millis(now.timestamp_millis() + grace_days * DAY_MS),
        previous_status: tenant.status,
        purge_started_at: (grace_days == 0).then_some(now),
        restored_into: None,
    };
    let set = doc! {"status": TenantStatus::Offboarding.as_str(), "offboarding": mongodb::bson::to_bson(&state).map_err(shared::db::DbError::from)?};
    // A shredded tenant is offboarded too: its documents and its keys' records are still there.
    let condition = doc! {"status": tenant.status.as_str()};
    let registry = db.tenants(admin);
    let Some(written) = registry.update_where(&tenant.tenant_id, condition, set, &[]).await? else {
        // Changed since read: offboarded by another call, or gone.
        return Err(match offboardable(db, &tenant.tenant_id).await {
            Ok(_) => OnboardingError::Ending(tenant.tenant_id.clone(), TenantStatus::Offboarding.as_str()),
            Err(e) => e,
        });
    };
    shared::admission::forget_tenant_members(db, &tenant.tenant_id);
    if grace_days == 0 {
        purge::queue(db, &tenant.tenant_id).await?;
    }
    Ok(written)
}

/// Puts an offboarding tenant back in the status it had, while its grace period runs and its
/// purge has not been handed over: one write conditional on both.
pub async fn cancel(db: &Db, admin: &SuperadminContext, tenant_id: &TenantId) -> Result<Tenant, OnboardingError> {
    let tenant = purge::registry_record(db, tenant_id).await?.ok_or_else(|| OnboardingError::TenantNotFound(tenant_id.clone()))?;
    let Some(state) = tenant.offboarding.filter(|_| tenant.status == TenantStatus::Offboarding) else {
        return Err(OnboardingError::NotCancellable(tenant_id.clone()));
    };
    let condition = doc! {
        "status": TenantStatus::Offboarding.as_str(),
        "offboarding.requestedAt": state.requested_at,
        "offboarding.purgeStartedAt": {"$exists": false},
        "offboarding.graceEndsAt": {"$gt": db.clock().now()},
        // A restore of its export took its people and domain over: it cannot come back.
        "offboarding.restoredInto": {"$exists": false},
    };
    let set = doc! {"status": state.previous_status.as_str()};
    let registry = db.tenants(admin);
    registry
        .update_where(tenant_id, condition, set, &["offboarding"])
        .await?
        .ok_or_else(|| OnboardingError::NotCancellable(tenant_id.clone()))
}

/// The sweep's scan: hands every offboarding whose grace period ended to its purge (one write
/// each, conditional on no purge having begun, so that a cancellation racing it loses or wins
/// whole) and queues the purge; then queues again any purge handed over whose saga is missing
/// (a crash between the two). At most `limit` tenants. How many purges it queued.
pub async fn start_due_purges(db: &Db, limit: i64) -> Result<u64, OnboardingError> {
    let registry = db.tenants(&system());
    let now = db.clock().now();
    let due = doc! {"status": TenantStatus::Offboarding.as_str(), "offboarding.graceEndsAt": {"$lte": now}};
    let mut batches = registry.batches(due, limit.max(1));
    let mut queued = 0;
    if let Some(batch) = batches.next().await? {
        for tenant in batch {
            // A restore of its export is reading the files its purge deletes, and takes its
            // people over: the grace is extended until the restore ends (the next scan).
            if shared::jobs::Jobs::new(db).restore_open(&tenant).await? {
                continue;
            }
            let unstarted = doc! {"status": TenantStatus::Offboarding.as_str(), "offboarding.purgeStartedAt": {"$exists": false}};
            registry.set_if(&tenant, unstarted, doc! {"offboarding.purgeStartedAt": now}).await?;
            // Handed over, by this write or an earlier one, and still offboarding: a cancellation
            // that won the race leaves no `purgeStartedAt`, and no purge is queued.
            let Some(record) = registry.get(&tenant).await? else { continue };
            let handed = record.status == TenantStatus::Offboarding && record.offboarding.is_some_and(|o| o.purge_started_at.is_some());
            if handed && !purge::exists(db, &tenant).await? {
                purge::queue(db, &tenant).await?;
                queued += 1;
            }
        }
    }
    Ok(queued)
}
