//! `rotate-key`: a new data key for a tenant, and its personal data re-encrypted under it
//! (docs/ARCHITECTURE.md §20); with `"resume": true`, finishes an earlier rotation without a new
//! key. The rewrites are [`crate::reseal`]'s.

use crate::error::MigrationError;
use crate::lease;
use crate::report::RotationReport;
use crate::reseal::{pii, rewrite_billing, rewrite_users};
use shared::db::{Db, DbError, SystemContext};
use shared::ids::TenantId;
use shared::pii::PiiError;
use shared::seam::Seam;

/// The action as invoked: [`rotate`] holding the migrations lease, so that it never runs
/// beside `up` or another rotation.
pub async fn leased(db: &Db, tenant: &TenantId, resume: bool) -> Result<RotationReport, MigrationError> {
    let system = SystemContext::new("migrations");
    lease::holding(db, &system, async { Ok(rotate(db, &system, tenant, resume, &shared::seam::NoSeam).await?) }).await
}

/// A new data key for the tenant, then every value re-encrypted under it in bounded batches.
/// Reads work throughout (old versions stay until `shred`). With `resume`, no new key: the
/// values not yet under the current one are re-encrypted (after a run that stopped). `seam` is
/// told between each record's read and its write.
pub async fn rotate(db: &Db, system: &SystemContext, tenant: &TenantId, resume: bool, seam: &dyn Seam) -> Result<RotationReport, DbError> {
    if db.tenants(system).field(tenant, "tenantId").await?.is_none() {
        return Err(DbError::Pii(PiiError::NoKeys(tenant.clone())));
    }
    let keys = db.keyring()?;
    let version = if resume { keys.current_version(tenant).await.map_err(pii)? } else { keys.rotate(tenant).await.map_err(pii)? };
    let mut records = rewrite_users(db, tenant, version, seam).await?;
    records += u64::from(rewrite_billing(db, system, tenant, version).await?);
    tracing::info!(tenantId = %tenant, version, records, "data key rotated");
    Ok(RotationReport { tenant_id: tenant.to_string(), version, new_key: !resume, records_reencrypted: records })
}
