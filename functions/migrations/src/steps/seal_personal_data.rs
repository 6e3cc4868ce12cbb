//! `005-seal-personal-data` ([`shared::pii::SEAL_MIGRATION`]), personal data at rest
//! (docs/ARCHITECTURE.md §20): seals every plaintext value stored before encryption, fills the
//! blind indexes and the global e-mail index, rewrites the admin e-mails of old audit entries,
//! and only then builds the unique `{tenantId, emailHash}` index and drops the plaintext one.
//! Shredded tenants are skipped: nothing of theirs can be sealed any more.
//!
//! The record and billing rewrites are [`crate::reseal`]'s, conditional on the value read, in
//! bounded batches and idempotent: a run that stops is resumed by running it again.

use crate::indexes::email_hash_index;
use crate::migration::{MigrationDeps, TENANT_BATCH};
use crate::report::Remaining;
use crate::reseal::{self, pii, rewrite_billing, rewrite_users};
use futures_util::future::BoxFuture;
use mongodb::bson::{doc, Bson};
use serde::Serialize;
use shared::db::{Db, DbError, FindOptions, SystemContext, TenantCollection};
use shared::ids::{Email, TenantId};
use shared::models::AuditLog;
use shared::pii::{EmailClaim, Field, PiiError};

/// The index the plaintext e-mails were unique by, dropped once they are sealed (random nonces
/// make every ciphertext distinct, so it would hold nothing).
const PLAINTEXT_EMAIL_INDEX: &str = "tenantId_1_email_1";

/// An e-mail found in more than one tenant: which record of which tenant (never the e-mail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SharedEmail {
    pub tenant_id: String,
    pub user_id: String,
}

/// What the sealing migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SealReport {
    pub tenants: u64,
    pub records_sealed: u64,
    pub audit_entries_rewritten: u64,
    pub shared_emails: Vec<SharedEmail>,
}

/// The step's body: [`seal`], counted in records sealed.
pub fn run(deps: MigrationDeps<'_>) -> BoxFuture<'_, Result<u64, DbError>> {
    Box::pin(async move { Ok(seal(deps.db, deps.system).await?.records_sealed) })
}

/// The body of 005, with its report.
pub async fn seal(db: &Db, system: &SystemContext) -> Result<SealReport, DbError> {
    let keys = db.keyring()?;
    let mut report = SealReport::default();
    for tenant in tenant_ids(db, system).await? {
        match keys.create_tenant_keys(&tenant).await {
            Ok(()) => {}
            Err(PiiError::Shredded(_)) => continue,
            Err(e) => return Err(pii(e)),
        }
        let version = keys.current_version(&tenant).await.map_err(pii)?;
        report.tenants += 1;
        report.records_sealed += rewrite_users(db, &tenant, version, &shared::seam::NoSeam).await?;
        report.records_sealed += u64::from(rewrite_billing(db, system, &tenant, version).await?);
        report.audit_entries_rewritten += rewrite_audit(db, &tenant).await?;
        claim_emails(db, &tenant, &mut report).await?;
    }
    let remaining = remaining(db, system).await?;
    if remaining.total() > 0 {
        // Written concurrently in the old shape (an old function still running): the index
        // would fail; the next run seals them and builds it.
        tracing::warn!(remaining = remaining.total(), "plaintext remains after the sealing pass; the index waits for the next run");
        return Err(DbError::Pii(PiiError::Vault("plaintext personal data remains; run the migration again".into())));
    }
    let indexes = db.indexes(system);
    indexes.create(TenantCollection::Users.name(), email_hash_index().model(false)).await?;
    indexes.drop(TenantCollection::Users.name(), PLAINTEXT_EMAIL_INDEX).await?;
    if !report.shared_emails.is_empty() {
        tracing::warn!(shared = report.shared_emails.len(), "e-mails found in more than one tenant (see the report's sharedEmails)");
    }
    tracing::info!(
        tenants = report.tenants,
        sealed = report.records_sealed,
        audit = report.audit_entries_rewritten,
        "personal data sealed"
    );
    Ok(report)
}

/// Counts what the sealing migration has still to do (`status` reports it).
pub async fn remaining(db: &Db, system: &SystemContext) -> Result<Remaining, DbError> {
    let registry = db.tenants(system);
    let mut remaining = Remaining::default();
    for tenant in tenant_ids(db, system).await? {
        remaining.users += reseal::users(db, &tenant).count_documents(doc! {"emailHash": {"$exists": false}}).await?;
        let scope = SystemContext::new("personal data").for_tenant(tenant.clone());
        let audit = db.scoped::<AuditLog>(&scope, TenantCollection::AuditLogs);
        remaining.audit_entries += audit.count_documents(doc! {"details.adminEmail": {"$exists": true}}).await?;
        let billing = registry.field(&tenant, Field::BillingEmail.path()).await?;
        remaining.tenants += u64::from(matches!(billing, Some(Bson::String(_))));
    }
    Ok(remaining)
}

/// Every tenant id of the registry, read in `_id` order and batches (ids only: a tenant's other
/// fields need not decode).
async fn tenant_ids(db: &Db, system: &SystemContext) -> Result<Vec<TenantId>, DbError> {
    let registry = db.tenants(system);
    let mut walk = registry.batches(doc! {}, TENANT_BATCH);
    let mut ids = Vec::new();
    while let Some(batch) = walk.next().await? {
        ids.extend(batch);
    }
    Ok(ids)
}

/// Old audit entries of tenant creation carry the admin's e-mail in the clear: each becomes its
/// blind index (`details.adminEmailHash`), conditional on the value read.
async fn rewrite_audit(db: &Db, tenant: &TenantId) -> Result<u64, DbError> {
    let scope = SystemContext::new("personal data").for_tenant(tenant.clone());
    let audit = db.scoped::<AuditLog>(&scope, TenantCollection::AuditLogs);
    let keys = db.keyring()?;
    let mut written = 0;
    // Not a keyset walk: every entry this loop reads is rewritten out of the filter, so each
    // batch reads from the start.
    loop {
        let batch = audit
            .find(doc! {"details.adminEmail": {"$exists": true}}, FindOptions { limit: Some(reseal::BATCH), ..Default::default() })
            .await?;
        if batch.is_empty() {
            break;
        }
        for entry in batch {
            let old = entry.details.get("adminEmail").cloned().unwrap_or(Bson::Null);
            let update = match old.as_str().map(|e| Email::stored(e.to_owned())) {
                Some(Ok(email)) => {
                    doc! {"$set": {"details.adminEmailHash": keys.email_index(tenant, &email).await.map_err(pii)?}, "$unset": {"details.adminEmail": ""}}
                }
                _ => doc! {"$unset": {"details.adminEmail": ""}},
            };
            written += audit.update_one(doc! {"_id": entry.id, "details.adminEmail": old}, update, false).await?.modified;
        }
    }
    Ok(written)
}

/// Claims every user's e-mail of `tenant` in the global index. An e-mail another tenant holds
/// (allowed before e-mails belonged to one tenant) is reported, by ids, not failed on.
async fn claim_emails(db: &Db, tenant: &TenantId, report: &mut SealReport) -> Result<(), DbError> {
    let users = reseal::users(db, tenant);
    let mut walk = users.batches(doc! {}, reseal::BATCH);
    while let Some(batch) = walk.next().await? {
        for user in &batch {
            let email = users::person::email(db, tenant, user).await?;
            if db.keyring()?.claim_email(tenant, &email).await.map_err(pii)? == EmailClaim::Taken {
                tracing::warn!(tenantId = %tenant, userId = %user.id, "an e-mail another tenant holds too; both records left as they are");
                report.shared_emails.push(SharedEmail { tenant_id: tenant.to_string(), user_id: user.id.to_hex() });
            }
        }
    }
    Ok(())
}
