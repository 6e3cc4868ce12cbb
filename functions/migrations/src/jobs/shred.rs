//! `shred`: destroys a tenant's personal-data keys (docs/ARCHITECTURE.md §20).

use crate::error::MigrationError;
use crate::report::ShredReport;
use shared::db::{Db, SystemContext};
use shared::ids::TenantId;

/// Marks the tenant `keysShreddedAt` in the registry, then destroys its wrapped data and index
/// keys in the vault, with a tombstone, and its global e-mail index entries. Every sealed value
/// of the tenant is unreadable from then on, in live data and in any backup of the data cluster.
///
/// The marker comes first, so that from the moment the keys start to go no one is admitted to
/// the tenant, its views stop asking for them, and its status and billing stop changing
/// (docs/ARCHITECTURE.md §20). A run that stops in between is finished by running it again:
/// it is idempotent, and the marker keeps its first date. A tenant id the registry does not
/// hold is refused ([`MigrationError::UnknownTenant`]) before anything is written: a typo must
/// not tombstone an id for ever.
pub async fn shred(db: &Db, tenant: &TenantId) -> Result<ShredReport, MigrationError> {
    let registry = db.tenants(&SystemContext::new("shred"));
    if registry.field(tenant, "tenantId").await?.is_none() {
        return Err(MigrationError::UnknownTenant(tenant.clone()));
    }
    onboarding::purge::shred_keys(db, tenant, db.clock().now()).await?;
    tracing::warn!(tenantId = %tenant, "personal-data keys shredded");
    Ok(ShredReport { tenant_id: tenant.to_string(), shredded: true })
}
