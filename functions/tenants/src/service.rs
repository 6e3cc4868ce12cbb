//! The tenants context's business rules. It works only through the shared data layer: the
//! registry for tenants, scoped collections for each tenant's roles and users.

use crate::error::TenantsError;
use crate::input::{BillingChanges, CustomizationChanges, TenantChanges};
use crate::view::{Opened, TenantLimits, TenantView, Unavailable};
use mongodb::bson::{doc, Document};
use shared::clock::month_window;
use shared::db::{changeable, Db, DomainClaim, GlobalCollection, GlobalFind, SystemContext, TenantPage, TenantQuery, TenantRegistry};
use shared::ids::TenantId;
use shared::models::{Tenant, TenantStatus, UsageSnapshot};
use shared::pii::{Field, PiiError};
use shared::plans::{KeyLimits, Plan};
use shared::seam::Seam;
use shared::{SuperadminContext, TenantContext};

/// The API's view of one tenant, its billing e-mail opened (list pages open nothing:
/// [`TenantView::listed`]).
pub async fn view(db: &Db, tenant: &Tenant) -> Result<TenantView, TenantsError> {
    Ok(TenantView::new(tenant, billing_email(db, tenant).await?))
}

/// The billing e-mail, or why it can't be shown. What is wrong with the record (its tenant
/// shredded, the value failing authentication) is shown as unavailable, never as garbage and
/// never as a failure of the page; a failing key service stays an error (503, or 500 if
/// permanent). A shredded tenant's value is not even tried: no vault read, no KMS call.
async fn billing_email(db: &Db, tenant: &Tenant) -> Result<Opened, TenantsError> {
    if tenant.keys_shredded_at.is_some() {
        return Ok(Opened::Unavailable(Unavailable::Shredded));
    }
    let sealed = &tenant.settings.billing.billing_email;
    match db.keyring()?.open(&tenant.tenant_id, Field::BillingEmail, sealed).await {
        Ok(email) => Ok(Opened::Value(email)),
        // Keys destroyed without the marker: shredded before it existed, or a shred under way.
        Err(PiiError::Shredded(_)) => Ok(Opened::Unavailable(Unavailable::Shredded)),
        Err(error @ (PiiError::Integrity { .. } | PiiError::UnknownVersion { .. })) => {
            tracing::error!(tenantId = %tenant.tenant_id, %error, "the billing e-mail does not open; shown as corrupt");
            Ok(Opened::Unavailable(Unavailable::Corrupt))
        }
        Err(error) => {
            tracing::error!(tenantId = %tenant.tenant_id, %error, "the billing e-mail could not be opened");
            Err(shared::db::DbError::from(error).into())
        }
    }
}

/// A page of tenants.
pub async fn list(db: &Db, admin: &SuperadminContext, query: &TenantQuery) -> Result<TenantPage, TenantsError> {
    Ok(db.tenants(admin).list(query).await?)
}

fn found(tenant_id: &TenantId, tenant: Option<Tenant>) -> Result<Tenant, TenantsError> {
    tenant.ok_or_else(|| TenantsError::NotFound(tenant_id.clone()))
}

/// The outcome of a write guarded by [`changeable`]: the tenant it returned, or on a miss
/// why (missing, shredded, or changed in between).
async fn unless_shredded(registry: &TenantRegistry, tenant_id: &TenantId, updated: Option<Tenant>) -> Result<Tenant, TenantsError> {
    if let Some(tenant) = updated {
        return Ok(tenant);
    }
    Err(match registry.get(tenant_id).await? {
        None => TenantsError::NotFound(tenant_id.clone()),
        Some(t) if t.keys_shredded_at.is_some() => TenantsError::Shredded(tenant_id.clone()),
        Some(t) if t.status.is_ending() => TenantsError::Ending(tenant_id.clone(), t.status.as_str()),
        Some(_) => TenantsError::Concurrent(tenant_id.clone()),
    })
}

/// Renames a tenant and/or moves it to another domain. The new domain is claimed first; the
/// update applies only if the tenant still holds the domain it had when read (a concurrent
/// move loses); the old domain is released after the move. A claim is only ever given back
/// after a fresh read shows the tenant does not hold it (`TenantRegistry::release_domain`):
/// of two identical moves, the loser may have made the claim that the winner relies on.
/// `seam` lets a test run a competing move right after the claim.
pub async fn update(
    db: &Db,
    admin: &SuperadminContext,
    tenant_id: &TenantId,
    changes: &TenantChanges,
    seam: &dyn Seam,
) -> Result<Tenant, TenantsError> {
    let registry = db.tenants(admin);
    let current = found(tenant_id, registry.get(tenant_id).await?)?;
    let mut set = Document::new();
    if let Some(name) = &changes.name {
        set.insert("name", name);
    }
    let new_domain = changes.domain.as_ref().filter(|d| current.domain.as_deref() != Some(d.as_str()));
    if let Some(domain) = new_domain {
        if registry.claim_domain(domain, tenant_id).await? == DomainClaim::Taken {
            return Err(TenantsError::DomainTaken(domain.to_string()));
        }
        set.insert("domain", domain.as_str());
    }
    seam.reached("tenant.update.claimed").await;
    let mut held = match &current.domain {
        Some(d) => doc! {"domain": d},
        None => doc! {"domain": {"$exists": false}},
    };
    held.extend(changeable());
    let outcome = registry.update_where(tenant_id, held, set, &[]).await;
    let give_back = || async {
        if let Some(domain) = new_domain {
            if let Err(error) = registry.release_domain(domain.as_str(), tenant_id).await {
                tracing::error!(%error, domain = domain.as_str(), "could not release a domain claim");
            }
        }
    };
    let updated = match outcome {
        Ok(Some(t)) => t,
        Ok(None) => {
            give_back().await;
            return Err(unless_shredded(&registry, tenant_id, None).await.err().unwrap_or(TenantsError::Concurrent(tenant_id.clone())));
        }
        Err(e) => {
            give_back().await;
            return Err(e.into());
        }
    };
    if let (Some(_), Some(old)) = (new_domain, current.domain.as_deref()) {
        // The move is done; a claim left behind only blocks that domain until cleaned up.
        if let Err(error) = registry.release_domain(old, tenant_id).await {
            tracing::error!(%error, domain = old, "could not release the old domain claim");
        }
    }
    Ok(updated)
}

/// Suspends a tenant: its members' calls get a 403 until it is reactivated. A shredded tenant's
/// status no longer changes (409).
pub async fn suspend(db: &Db, admin: &SuperadminContext, tenant_id: &TenantId, reason: Option<&str>) -> Result<Tenant, TenantsError> {
    let mut set = doc! {"status": TenantStatus::Suspended.as_str(), "suspendedAt": db.clock().now()};
    let unset: &[&str] = match reason {
        Some(r) => {
            set.insert("suspensionReason", r);
            &[]
        }
        None => &["suspensionReason"],
    };
    let registry = db.tenants(admin);
    let updated = registry.update_where(tenant_id, changeable(), set, unset).await?;
    unless_shredded(&registry, tenant_id, updated).await
}

/// Reactivates a tenant, unless it is shredded (409): its members could not sign in to it again.
pub async fn reactivate(db: &Db, admin: &SuperadminContext, tenant_id: &TenantId) -> Result<Tenant, TenantsError> {
    let set = doc! {"status": TenantStatus::Active.as_str()};
    let registry = db.tenants(admin);
    let updated = registry.update_where(tenant_id, changeable(), set, &["suspendedAt", "suspensionReason"]).await?;
    unless_shredded(&registry, tenant_id, updated).await
}

/// Merges the given customization fields into the tenant's, leaving the others as they are.
pub async fn customize(db: &Db, ctx: &TenantContext, changes: &CustomizationChanges) -> Result<Tenant, TenantsError> {
    let mut set = Document::new();
    for (field, value) in [("logo", &changes.logo), ("primaryColor", &changes.primary_color), ("theme", &changes.theme)] {
        if let Some(value) = value {
            set.insert(format!("settings.customization.{field}"), value);
        }
    }
    if ctx.tenant().status.is_ending() {
        return Err(TenantsError::Ending(ctx.tenant_id().clone(), ctx.tenant().status.as_str()));
    }
    // A miss: gone, or offboarded since admission read it.
    db.own_tenant(ctx)
        .customize(set)
        .await?
        .ok_or_else(|| TenantsError::Ending(ctx.tenant_id().clone(), TenantStatus::Offboarding.as_str()))
}

/// Changes the billing contact and/or the plan; a plan change resets the tenant's features and
/// limits from the catalogue. A shredded tenant's billing no longer changes (409).
///
/// A change of the audit retention it implies (a new plan's, or an enterprise tenant's own
/// `auditRetentionDays`) is marked on the tenant in the same update; the existing entries'
/// `expireAt` follow in the retention job's resumable batches.
pub async fn change_billing(
    db: &Db,
    admin: &SuperadminContext,
    tenant_id: &TenantId,
    changes: &BillingChanges,
) -> Result<Tenant, TenantsError> {
    let registry = db.tenants(admin);
    let current = registry.get(tenant_id).await?.ok_or_else(|| TenantsError::NotFound(tenant_id.clone()))?;
    if current.keys_shredded_at.is_some() {
        return Err(TenantsError::Shredded(tenant_id.clone()));
    }
    let plan = changes.plan.unwrap_or(current.settings.billing.plan);
    if changes.audit_retention_days.is_some() && plan != Plan::Enterprise {
        return Err(TenantsError::RetentionFixed(plan));
    }
    let mut set = Document::new();
    let mut unset: Vec<&str> = Vec::new();
    let mut next = current.settings.clone();
    if let Some(plan) = changes.plan {
        let limits = plan.limits();
        set.insert("settings.billing.plan", plan.as_str());
        set.insert("settings.billing.maxApiCalls", limits.max_api_calls);
        set.insert("settings.maxUsers", limits.max_users);
        set.insert("settings.features", plan.features());
        next.billing.plan = plan;
        if plan != Plan::Enterprise {
            unset.push("settings.auditRetentionDays");
            next.audit_retention_days = None;
        }
    }
    if let Some(days) = changes.audit_retention_days {
        set.insert("settings.auditRetentionDays", days);
        next.audit_retention_days = Some(days);
    }
    if let Some(email) = &changes.billing_email {
        let sealed = db.keyring()?.seal(tenant_id, Field::BillingEmail, email.as_str()).await.map_err(|e| match e {
            // Shredded since the read above.
            PiiError::Shredded(_) => TenantsError::Shredded(tenant_id.clone()),
            other => shared::db::DbError::from(other).into(),
        })?;
        set.insert("settings.billing.billingEmail", sealed.to_bson());
    }
    let retention = next.audit_retention_days();
    let moved = retention != current.settings.audit_retention_days();
    if moved {
        set.insert("auditRetention", doc! {"days": retention});
    }
    let updated = registry.update_where(tenant_id, changeable(), set, &unset).await?;
    let tenant = unless_shredded(&registry, tenant_id, updated).await?;
    if let Some(keys) = changes.plan.and_then(|p| p.limits().api_keys) {
        clamp_key_limits(db, admin, tenant_id, keys).await?;
    }
    // The entries follow on the retention job's schedule (a large log takes many batches, more
    // than a request may wait for). Meanwhile, on a longer retention, none may expire early.
    if retention > current.settings.audit_retention_days() {
        let until = mongodb::bson::DateTime::from_millis(db.clock().now_ms() + RETENTION_HOLD.as_millis() as i64);
        db.audit_retention(&shared::db::SystemContext::new("audit retention")).hold_until(tenant_id, until).await?;
    }
    Ok(tenant)
}

/// A downgrade takes effect on the next call for keys too (the api-keys context's write).
async fn clamp_key_limits(db: &Db, admin: &SuperadminContext, tenant_id: &TenantId, keys: KeyLimits) -> Result<(), TenantsError> {
    Ok(api_keys::service::clamp_to_plan(db, &admin.acting_for(tenant_id.clone()), keys).await?)
}

/// How long entries about to expire are held after a change to a longer retention: past the
/// hourly retention job's next two runs.
pub const RETENTION_HOLD: std::time::Duration = std::time::Duration::from_secs(3 * 3600);

/// The admitted tenant's limits and this month's usage: the tenant as admission loaded it, so
/// the count includes this call and the seats are the counter's (every user record holds one,
/// pending and inactive included). No further round trip.
pub async fn limits(db: &Db, ctx: &TenantContext) -> Result<TenantLimits, TenantsError> {
    let tenant = ctx.tenant();
    let current_users = tenant.counters.ok_or(TenantsError::CountersMissing)?.seats.max(0) as u64;
    let (month, _) = month_window(db.clock().now_ms());
    Ok(TenantLimits {
        max_users: tenant.settings.max_users,
        current_users,
        max_api_calls: tenant.settings.billing.max_api_calls,
        current_api_calls: tenant.api_usage.get(&month).copied().unwrap_or(0),
        features: tenant.settings.features.clone(),
    })
}

/// How many days of usage history a call may ask for.
pub const MAX_HISTORY_DAYS: u64 = 366;
/// How many it gets without asking.
pub const DEFAULT_HISTORY_DAYS: u64 = 30;

/// A tenant and its daily usage snapshots of the last `days` UTC days (today included), newest
/// first: the two reads at once. A tenant that does not exist is a 404, whatever snapshots remain.
pub async fn usage_history(
    db: &Db,
    admin: &SuperadminContext,
    tenant_id: &TenantId,
    days: u64,
) -> Result<(Tenant, Vec<UsageSnapshot>), TenantsError> {
    let days = days.clamp(1, MAX_HISTORY_DAYS);
    let first = db.clock().now_ms() - (days as i64 - 1) * 86_400_000;
    let since = shared::clock::calendar_day(first);
    // The snapshots are the migrations job's, in a global collection that only the system
    // opens: the platform reads them here for a superadmin it has admitted.
    let history = db.global::<UsageSnapshot>(&SystemContext::new("usage history"), GlobalCollection::UsageSnapshots);
    let newest_first = GlobalFind { sort: Some(doc! {"day": -1}), limit: Some(days as i64), projection: None };
    let snapshots = history.find(doc! {"tenantId": tenant_id.as_str(), "day": {"$gte": &since}}, newest_first);
    let registry = db.tenants(admin);
    let (tenant, snapshots) = tokio::try_join!(registry.get(tenant_id), snapshots)?;
    Ok((found(tenant_id, tenant)?, snapshots))
}
