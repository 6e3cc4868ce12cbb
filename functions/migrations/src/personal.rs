//! Personal data at rest, the system's side (docs/ARCHITECTURE.md §20):
//! - migration 005 seals every plaintext value stored before encryption, fills the blind
//!   indexes and the global e-mail index, rewrites the admin e-mails of old audit entries, and
//!   only then builds the unique `{tenantId, emailHash}` index;
//! - `rotate-key` gives a tenant a new data key and re-encrypts its values under it;
//! - `shred` destroys a tenant's keys.
//!
//! Every rewrite of a stored value is conditional on the value it read, and reads again on a
//! mismatch, so that no concurrent edit is undone. All of it runs in bounded batches and is
//! idempotent: a run that stops is resumed by running it again.

use crate::registry::Deps;
use crate::MigrationError;
use futures_util::future::BoxFuture;
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use serde::Serialize;
use shared::db::{Db, DbError, FindOptions, Scoped, SystemContext, TenantCollection, KEYS_SHREDDED_AT};
use shared::ids::{Email, TenantId};
use shared::models::{AuditLog, User};
use shared::pii::{EmailClaim, Field, PiiError, Sealed};
use shared::seam::Seam;

/// How many records a batch reads.
const BATCH: i64 = 100;
/// How often one record's rewrite reads again after a concurrent change before giving up.
const TRIES: usize = 5;

/// The unique index that makes an e-mail unique per tenant once every record has its blind
/// index. `setup` must not make it: on MongoDB a missing field indexes as null, so building it
/// while old records lack `emailHash` fails on the second of them.
pub fn email_hash_index() -> crate::indexes::IndexSpec {
    crate::indexes::IndexSpec::new(TenantCollection::Users.name(), doc! {"tenantId": 1, "emailHash": 1}).unique()
}

/// The index the plaintext e-mails were unique by, dropped once they are sealed (random nonces
/// make every ciphertext distinct, so it would hold nothing).
const PLAINTEXT_EMAIL_INDEX: &str = "tenantId_1_email_1";

/// The users' personal-data fields, with their place in a record.
const USER_FIELDS: [Field; 5] = [Field::UserEmail, Field::UserFirstName, Field::UserLastName, Field::UserDepartment, Field::UserTitle];

fn sealed_of(user: &User, field: Field) -> Option<&Sealed> {
    let p = &user.profile;
    match field {
        Field::UserEmail => Some(&user.email),
        Field::UserFirstName => Some(&p.first_name),
        Field::UserLastName => Some(&p.last_name),
        Field::UserDepartment => p.department.as_ref(),
        Field::UserTitle => p.title.as_ref(),
        Field::BillingEmail => None,
    }
}

fn users(db: &Db, tenant: &TenantId) -> Scoped<User> {
    db.scoped(&SystemContext::new("personal data").for_tenant(tenant.clone()), TenantCollection::Users)
}

fn pii(e: PiiError) -> DbError {
    DbError::Pii(e)
}

/// Whether a record has a value not yet under `version`, or no blind index.
fn needs_rewrite(user: &User, version: u32) -> bool {
    user.email_hash.is_none() || USER_FIELDS.iter().any(|f| sealed_of(user, *f).is_some_and(|v| v.key_version() != Some(version)))
}

/// What to rewrite in one record: each field that is not yet under `version` (legacy plaintext
/// included), resealed, and the blind index if it is missing. `None` when nothing is.
async fn rewrite_of(db: &Db, tenant: &TenantId, user: &User, version: u32) -> Result<Option<(Document, Document)>, DbError> {
    let keys = db.keyring()?;
    let (mut filter, mut set) = (doc! {"_id": user.id}, Document::new());
    for field in USER_FIELDS {
        let Some(value) = sealed_of(user, field) else { continue };
        if value.key_version() == Some(version) {
            continue;
        }
        let plain = keys.open(tenant, field, value).await.map_err(|error| {
            tracing::error!(tenantId = %tenant, userId = %user.id, field = field.path(), %error, "a stored value does not open; left as it is");
            pii(error)
        })?;
        filter.insert(field.path(), value.to_bson());
        set.insert(field.path(), keys.seal(tenant, field, &plain).await.map_err(pii)?.to_bson());
    }
    if user.email_hash.is_none() {
        let email = users::person::email(db, tenant, user).await?;
        filter.insert("emailHash", doc! {"$exists": false});
        set.insert("emailHash", keys.email_index(tenant, &email).await.map_err(pii)?);
    }
    Ok((!set.is_empty()).then_some((filter, set)))
}

/// Brings one record under `version`: the write pins every value it read, and a concurrent
/// change (a PATCH, which writes under the current key) makes it read again. Returns whether it
/// wrote. `seam` is told between the read and the write (`personal.rewrite.read`).
async fn rewrite_user(db: &Db, tenant: &TenantId, id: ObjectId, version: u32, seam: &dyn Seam) -> Result<bool, DbError> {
    let users = users(db, tenant);
    for _ in 0..TRIES {
        let Some(user) = users.find_one(doc! {"_id": id}).await? else { return Ok(false) };
        let Some((filter, set)) = rewrite_of(db, tenant, &user, version).await? else { return Ok(false) };
        seam.reached("personal.rewrite.read").await;
        if users.update_one(filter, doc! {"$set": set}, false).await?.matched == 1 {
            return Ok(true);
        }
    }
    tracing::warn!(tenantId = %tenant, userId = %id, "a record kept changing during its rewrite; the next run takes it");
    Ok(false)
}

/// Rewrites every record of `tenant` that is not yet under `version`, in `_id` order and
/// batches. Returns how many it wrote.
async fn rewrite_users(db: &Db, tenant: &TenantId, version: u32, seam: &dyn Seam) -> Result<u64, DbError> {
    let users = users(db, tenant);
    let (mut written, mut after) = (0, None::<ObjectId>);
    loop {
        let filter = after.map(|id| doc! {"_id": {"$gt": id}}).unwrap_or_default();
        let batch = users.find(filter, FindOptions { sort: Some(doc! {"_id": 1}), skip: None, limit: Some(BATCH) }).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id);
        for user in &batch {
            if needs_rewrite(user, version) && rewrite_user(db, tenant, user.id, version, seam).await? {
                written += 1;
            }
        }
    }
    Ok(written)
}

/// Reseals the tenant's billing e-mail under `version`, conditional on the value read.
async fn rewrite_billing(db: &Db, system: &SystemContext, tenant: &TenantId, version: u32) -> Result<bool, DbError> {
    let registry = db.tenants(system);
    let keys = db.keyring()?;
    let path = Field::BillingEmail.path();
    for _ in 0..TRIES {
        let Some(stored) = registry.field(tenant, path).await? else { return Ok(false) };
        let value: Sealed = mongodb::bson::from_bson(stored)?;
        let value = &value;
        if value.key_version() == Some(version) {
            return Ok(false);
        }
        let plain = keys.open(tenant, Field::BillingEmail, value).await.map_err(pii)?;
        let sealed = keys.seal(tenant, Field::BillingEmail, &plain).await.map_err(pii)?;
        if registry.set_if(tenant, doc! {path: value.to_bson()}, doc! {path: sealed.to_bson()}).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Old audit entries of tenant creation carry the admin's e-mail in the clear: each becomes its
/// blind index (`details.adminEmailHash`), conditional on the value read.
async fn rewrite_audit(db: &Db, tenant: &TenantId) -> Result<u64, DbError> {
    let scope = SystemContext::new("personal data").for_tenant(tenant.clone());
    let audit = db.scoped::<AuditLog>(&scope, TenantCollection::AuditLogs);
    let keys = db.keyring()?;
    let mut written = 0;
    loop {
        let batch =
            audit.find(doc! {"details.adminEmail": {"$exists": true}}, FindOptions { limit: Some(BATCH), ..Default::default() }).await?;
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
    let users = users(db, tenant);
    let mut after = None::<ObjectId>;
    loop {
        let filter = after.map(|id| doc! {"_id": {"$gt": id}}).unwrap_or_default();
        let batch = users.find(filter, FindOptions { sort: Some(doc! {"_id": 1}), skip: None, limit: Some(BATCH) }).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id);
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

/// Every tenant id of the registry, read in `_id` order and batches (ids only: a tenant's other
/// fields need not decode).
async fn tenant_ids(db: &Db, system: &SystemContext) -> Result<Vec<TenantId>, DbError> {
    let registry = db.tenants(system);
    let (mut ids, mut after) = (Vec::new(), None);
    loop {
        let batch = registry.ids(doc! {}, after, BATCH).await?;
        let Some((last, _)) = batch.last() else { break };
        after = Some(*last);
        ids.extend(batch.into_iter().map(|(_, tenant)| tenant));
    }
    Ok(ids)
}

/// 005: seals everything stored before encryption (see the module docs), then builds the
/// unique `{tenantId, emailHash}` index and drops the plaintext one. Shredded tenants are
/// skipped: nothing of theirs can be sealed any more.
pub fn seal_personal_data(deps: Deps<'_>) -> BoxFuture<'_, Result<u64, DbError>> {
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

/// How much plaintext personal data remains: records without a blind index (only records from
/// before encryption lack one), tenants whose billing e-mail is text, audit entries with an
/// admin e-mail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Remaining {
    pub users: u64,
    pub tenants: u64,
    pub audit_entries: u64,
}

impl Remaining {
    /// Everything that remains.
    pub fn total(&self) -> u64 {
        self.users + self.tenants + self.audit_entries
    }
}

/// Counts what the sealing migration has still to do (`status` reports it).
pub async fn remaining(db: &Db, system: &SystemContext) -> Result<Remaining, DbError> {
    let registry = db.tenants(system);
    let mut remaining = Remaining::default();
    for tenant in tenant_ids(db, system).await? {
        remaining.users += users(db, &tenant).count_documents(doc! {"emailHash": {"$exists": false}}).await?;
        let scope = SystemContext::new("personal data").for_tenant(tenant.clone());
        let audit = db.scoped::<AuditLog>(&scope, TenantCollection::AuditLogs);
        remaining.audit_entries += audit.count_documents(doc! {"details.adminEmail": {"$exists": true}}).await?;
        let billing = registry.field(&tenant, Field::BillingEmail.path()).await?;
        remaining.tenants += u64::from(matches!(billing, Some(Bson::String(_))));
    }
    Ok(remaining)
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationReport {
    pub tenant_id: String,
    /// The data-key version everything is now under.
    pub version: u32,
    /// Whether this run made that version (`false`: it resumed an earlier rotation).
    pub new_key: bool,
    pub records_reencrypted: u64,
}

/// `rotate-key`: a new data key for the tenant, then every value re-encrypted under it in
/// bounded batches. Reads work throughout (old versions stay until `shred`). With `resume`, no
/// new key: the values not yet under the current one are re-encrypted (after a run that
/// stopped). `seam` is told between each record's read and its write.
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

/// What a shred did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShredReport {
    pub tenant_id: String,
    pub shredded: bool,
}

/// `shred`: marks the tenant `keysShreddedAt` in the registry, then destroys its wrapped data
/// and index keys in the vault, with a tombstone, and its global e-mail index entries. Every
/// sealed value of the tenant is unreadable from then on, in live data and in any backup of the
/// data cluster.
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
    let keys = db.keyring()?;
    let unmarked = doc! {KEYS_SHREDDED_AT: {"$exists": false}};
    registry.set_if(tenant, unmarked, doc! {KEYS_SHREDDED_AT: db.clock().now()}).await?;
    keys.shred(tenant).await.map_err(pii)?;
    tracing::warn!(tenantId = %tenant, "personal-data keys shredded");
    Ok(ShredReport { tenant_id: tenant.to_string(), shredded: true })
}
