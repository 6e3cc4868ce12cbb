//! `reconcile-tombstones`: what a restored backup brought back of an ended tenant, ended again
//! (docs/ARCHITECTURE.md §22, docs/operations/backups.md).
//!
//! A purged tenant leaves two tombstones: the vault's (`tombstones`, written by the shred) and
//! the data cluster's (`tenantTombstones`, written by the purge). Each cluster is backed up and
//! restored on its own, so a restore of either can bring back what the purge removed: an older
//! vault its wrapped keys and e-mail index entries (and no tombstone), an older data cluster the
//! registry record `active`, its documents, its domain claims and its API keys, which
//! authenticate without any personal-data key. The tombstone that survived in the other cluster
//! says the tenant ended. This job takes the union of both sides and, per tombstoned tenant:
//! 1. writes the missing side's tombstone (the vault's with the date the data side gives; the
//!    data side's without a receipt, which only the purge signs, with the dates the vault and
//!    the registry still know);
//! 2. marks the registry `keysShreddedAt` if a restore lost the mark, and destroys whatever the
//!    vault holds of the tenant: its key set and its e-mail index entries (the shred's own
//!    code, [`onboarding::purge::shred_keys`]);
//! 3. if any of its documents are present (the registry record not `inactive`, or a document in
//!    a tenant collection), runs the purge's leftovers pass again: keys revoked, documents and
//!    global documents deleted, status `inactive` ([`onboarding::purge::purge_leftovers`]).
//!
//! A tenant whose purge saga is still open is the purge's to finish: the vault-side repairs are
//! made (the same as the purge's own), and the rest is left to the saga, so that the data side's
//! tombstone is the one with the signed receipt. Every step is idempotent, so two runs at once,
//! or a run cut short, leave nothing half done that the next run does not finish. The walk is
//! a keyset walk over each side in batches, so memory stays bounded. The logs name tenant ids
//! and counts, never anything personal.

use crate::error::MigrationError;
use crate::report::{Report, TombstoneReport};
use mongodb::bson::{doc, DateTime, Document};
use shared::db::{Db, GlobalCollection, GlobalFind, SystemContext, TenantCollection, KEYS_SHREDDED_AT};
use shared::ids::TenantId;
use shared::models::{OffboardingState, TenantStatus, TenantTombstone};
use shared::saga::{SagaState, Sagas};

/// How many tombstones are read at a time from each side.
const BATCH: i64 = 100;

fn system() -> SystemContext {
    SystemContext::new("tombstone reconciliation")
}

/// What one side lacks of a tenant's tombstones.
#[derive(Debug, Clone, Copy)]
struct Missing {
    vault: bool,
    data: bool,
}

/// One run over the union of both sides' tombstones.
pub async fn reconcile(db: &Db) -> Result<Report, MigrationError> {
    let vault = db.keyring()?.vault();
    let data = db.global::<Document>(&system(), GlobalCollection::TenantTombstones);
    let mut report = TombstoneReport::default();

    // The vault's tombstones, each looked up on the data side a batch at a time.
    let mut after: Option<String> = None;
    loop {
        let batch = vault.tombstones_after(after.as_deref(), BATCH).await?;
        let Some((last, _, _)) = batch.last() else { break };
        after = Some(last.clone());
        let ids: Vec<&str> = batch.iter().map(|(id, _, _)| id.as_str()).collect();
        let options = GlobalFind { projection: Some(doc! {"_id": 1}), limit: Some(BATCH), ..Default::default() };
        let present = data.find(doc! {"_id": {"$in": &ids}}, options).await?;
        let present: Vec<&str> = present.iter().filter_map(|d| d.get_str("_id").ok()).collect();
        for (id, shredded_at, purged) in &batch {
            let Ok(tenant) = TenantId::parse(id) else {
                tracing::warn!("a vault tombstone whose id is not a tenant id; left alone");
                continue;
            };
            report.tenants_checked += 1;
            let data = present.contains(&id.as_str());
            // An operator's shred of a tenant that lives on (no purge marked it, no data-side
            // tombstone): only its keys are the reconciliation's, never its documents.
            let ended = *purged || data;
            let missing = Missing { vault: false, data: ended && !data };
            reconcile_tenant(db, &tenant, *shredded_at, missing, ended, &mut report).await?;
        }
    }

    // The data side's tombstones that the vault lacks: a vault restored from before the shred.
    let mut after: Option<String> = None;
    loop {
        let filter = match &after {
            Some(after) => doc! {"_id": {"$gt": after}},
            None => doc! {},
        };
        let options = GlobalFind { sort: Some(doc! {"_id": 1}), limit: Some(BATCH), projection: Some(doc! {"_id": 1, "purgedAt": 1}) };
        let batch = data.find(filter, options).await?;
        let Some(last) = batch.last().and_then(|d| d.get_str("_id").ok()) else { break };
        after = Some(last.to_owned());
        let ids: Vec<&str> = batch.iter().filter_map(|d| d.get_str("_id").ok()).collect();
        let in_vault = vault.tombstoned_among(&ids).await?;
        for tombstone in &batch {
            let Some(id) = tombstone.get_str("_id").ok().filter(|id| !in_vault.iter().any(|v| v == id)) else { continue };
            let Ok(tenant) = TenantId::parse(id) else {
                tracing::warn!("a tenant tombstone whose id is not a tenant id; left alone");
                continue;
            };
            report.tenants_checked += 1;
            let purged_at = tombstone.get_datetime("purgedAt").ok().copied();
            reconcile_tenant(db, &tenant, purged_at, Missing { vault: true, data: false }, true, &mut report).await?;
        }
    }

    tracing::info!(
        tenants_checked = report.tenants_checked,
        vault_tombstones_written = report.vault_tombstones_written,
        data_tombstones_written = report.data_tombstones_written,
        key_sets_deleted = report.key_sets_deleted,
        email_entries_deleted = report.email_entries_deleted,
        tenants_purged = report.tenants_purged,
        purges_in_flight = report.purges_in_flight,
        "tombstone reconciliation"
    );
    Ok(Report::ReconcileTombstones(report))
}

/// Whether any document of the tenant is present: its registry record not `inactive`, or a
/// document in a tenant collection.
async fn documents_present(db: &Db, tenant: &TenantId, registry: Option<&Document>) -> Result<bool, MigrationError> {
    if registry.is_some_and(|r| r.get_str("status").ok() != Some(TenantStatus::Inactive.as_str())) {
        return Ok(true);
    }
    let scope = system().for_tenant(tenant.clone());
    for collection in TenantCollection::ALL {
        if db.scoped::<Document>(&scope, collection).find_one(doc! {}).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the tenant's purge saga is still open: the purge then writes its own tombstone, with
/// the receipt, and ends the tenant itself.
async fn purge_open(db: &Db, tenant: &TenantId) -> Result<bool, MigrationError> {
    let saga = Sagas::new(db).get(&onboarding::purge::saga_id(tenant)).await?;
    Ok(saga.is_some_and(|s| matches!(s.state, SagaState::Queued | SagaState::Running)))
}

/// One tombstoned tenant: `known_at` is the shred's date as the surviving tombstone gives it;
/// `ended` whether it was purged (a purge's tombstone on either side), not only shredded.
async fn reconcile_tenant(
    db: &Db,
    tenant: &TenantId,
    known_at: Option<DateTime>,
    missing: Missing,
    ended: bool,
    report: &mut TombstoneReport,
) -> Result<(), MigrationError> {
    let vault = db.keyring()?.vault();
    let registry = db.tenants(&system()).fields(tenant, &["status", KEYS_SHREDDED_AT, "offboarding"]).await?;
    let marked_at = registry.as_ref().and_then(|r| r.get_datetime(KEYS_SHREDDED_AT).ok().copied());
    let unmarked = registry.is_some() && marked_at.is_none();
    let key_set = vault.tenant_keys(tenant).await?.is_some();
    let emails = vault.emails_held(tenant).await?;
    let present = ended && documents_present(db, tenant, registry.as_ref()).await?;
    if !(missing.vault || missing.data || unmarked || key_set || emails > 0 || present) {
        return Ok(());
    }
    // The shred's date: the vault's tombstone has it exactly, and so has the registry's mark; the
    // data side's tombstone only its purge's end, a moment later.
    let exact = if missing.vault { marked_at.or(known_at) } else { known_at.or(marked_at) };
    let shredded_at = exact.unwrap_or_else(|| db.clock().now());

    if missing.vault {
        if vault.insert_tombstone(tenant, shredded_at).await? {
            report.vault_tombstones_written += 1;
        }
        vault.mark_purged(tenant).await?;
    }
    if unmarked || key_set || emails > 0 {
        onboarding::purge::shred_keys(db, tenant, shredded_at).await?;
        report.shred_marks_set += u64::from(unmarked);
        report.key_sets_deleted += u64::from(key_set);
        report.email_entries_deleted += emails;
        tracing::warn!(tenantId = %tenant, key_set, emails, "a restored backup held keys of a shredded tenant; destroyed");
    }
    if (missing.data || present) && purge_open(db, tenant).await? {
        tracing::info!(tenantId = %tenant, "the tenant's purge is still open; left to it");
        report.purges_in_flight += 1;
        return Ok(());
    }
    if missing.data {
        // The offboarding's date and actor, if the registry still holds them; otherwise the
        // shred's date, the latest the offboarding can have been.
        let offboarding = registry
            .as_ref()
            .and_then(|r| r.get_document("offboarding").ok())
            .and_then(|o| mongodb::bson::from_document::<OffboardingState>(o.clone()).ok());
        let tombstone = TenantTombstone {
            id: tenant.clone(),
            offboarded_at: offboarding.as_ref().map_or(shredded_at, |o| o.requested_at),
            offboarded_by: offboarding.map(|o| o.requested_by).unwrap_or_default(),
            purged_at: shredded_at,
            receipt: None,
        };
        let store = db.global::<TenantTombstone>(&system(), GlobalCollection::TenantTombstones);
        match store.insert(&tombstone).await {
            Ok(()) => report.data_tombstones_written += 1,
            Err(shared::db::DbError::Duplicate) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if present {
        let deleted = onboarding::purge::purge_leftovers(db, tenant).await?;
        let total: u64 = deleted.values().sum();
        for (collection, n) in deleted {
            *report.documents_deleted.entry(collection).or_default() += n;
        }
        report.tenants_purged += 1;
        tracing::warn!(tenantId = %tenant, documents = total, "a restored backup held a purged tenant; purged again");
    }
    if missing.vault || missing.data {
        tracing::warn!(tenantId = %tenant, vault = missing.vault, data = missing.data, "a tenant tombstone was missing on one side; written");
    }
    Ok(())
}
