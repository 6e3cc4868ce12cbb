//! The key vault: wrapped keys, the tombstones of shredded tenants, and the global e-mail index.
//! In production it is a cluster of its own with a short backup retention (Atlas backs up and
//! restores per cluster), so that a restore of the data cluster can never bring a shredded key
//! back; locally it is a second database on the same server (docs/ARCHITECTURE.md §20).
//!
//! Every write here is an insert of a fixed `_id` (atomic on FerretDB too), a delete, or a
//! rotation's conditional push, which only runs under the migrations lease.

use super::PiiError;
use crate::ids::TenantId;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, spec::BinarySubtype, Binary, DateTime};
use mongodb::{Collection, Database};
use serde::{Deserialize, Serialize};

const TENANT_KEYS: &str = "tenantKeys";
const TOMBSTONES: &str = "tombstones";
const PLATFORM_KEYS: &str = "platformKeys";
const EMAIL_INDEX: &str = "emailIndex";
/// Every collection of the vault.
pub const VAULT_COLLECTIONS: [&str; 4] = [TENANT_KEYS, TOMBSTONES, PLATFORM_KEYS, EMAIL_INDEX];
/// The platform key of the global e-mail index.
const EMAIL_INDEX_KEY: &str = "email-index";

/// One data-key version of a tenant, wrapped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataKeyRecord {
    pub version: i64,
    pub wrapped: Binary,
    pub created_at: DateTime,
}

/// A tenant's wrapped keys (`tenantKeys`, `_id` = the tenant id, so that two racing first
/// writes can never make two key sets). The index key never rotates: every blind index would
/// change with it. Old data-key versions stay until the tenant is shredded, so that backups
/// taken before a rotation stay readable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantKeyRecord {
    #[serde(rename = "_id")]
    pub tenant_id: TenantId,
    pub index_key: Binary,
    pub data_keys: Vec<DataKeyRecord>,
    pub current_version: i64,
    pub created_at: DateTime,
}

impl TenantKeyRecord {
    /// The wrapped data key of `version`.
    pub fn data_key(&self, version: u32) -> Option<&Binary> {
        self.data_keys.iter().find(|k| k.version == i64::from(version)).map(|k| &k.wrapped)
    }
}

/// What claiming an e-mail in the global index found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailClaim {
    /// Claimed now, for this tenant.
    Claimed,
    /// This tenant held it already.
    Held,
    /// Another tenant holds it.
    Taken,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmailEntry {
    /// The platform-keyed HMAC of the e-mail.
    #[serde(rename = "_id")]
    id: String,
    tenant_id: String,
    created_at: DateTime,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlatformKey {
    #[serde(rename = "_id")]
    id: String,
    wrapped: Binary,
    created_at: DateTime,
}

/// The vault's narrow API. It never sees a plaintext key or e-mail.
#[derive(Debug, Clone)]
pub struct KeyVault {
    database: Database,
}

pub(crate) fn binary(bytes: Vec<u8>) -> Binary {
    Binary { subtype: BinarySubtype::Generic, bytes }
}

fn vault_error(e: mongodb::error::Error) -> PiiError {
    PiiError::Vault(e.to_string())
}

/// An insert that found its `_id` taken (MongoDB and FerretDB both report 11000 for inserts).
fn is_duplicate(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    matches!(e.kind.as_ref(), ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000)
}

impl KeyVault {
    /// The vault in `database` (its own cluster's client in production).
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// The vault database's name.
    pub fn name(&self) -> &str {
        self.database.name()
    }

    fn keys(&self) -> Collection<TenantKeyRecord> {
        self.database.collection(TENANT_KEYS)
    }

    /// A tenant's wrapped keys, if it has any.
    pub async fn tenant_keys(&self, tenant: &TenantId) -> Result<Option<TenantKeyRecord>, PiiError> {
        self.keys().find_one(doc! {"_id": tenant.as_str()}).await.map_err(vault_error)
    }

    /// Stores `record` unless the tenant has keys already; returns the keys that are stored.
    pub async fn insert_tenant_keys(&self, record: &TenantKeyRecord) -> Result<TenantKeyRecord, PiiError> {
        match self.keys().insert_one(record).await {
            Ok(_) => Ok(record.clone()),
            Err(e) if is_duplicate(&e) => self
                .tenant_keys(&record.tenant_id)
                .await?
                .ok_or_else(|| PiiError::Vault("a key set vanished after a duplicate insert".into())),
            Err(e) => Err(vault_error(e)),
        }
    }

    /// Adds data-key version `next.version` and makes it current, only if the current version
    /// is still `expected`. Returns whether it did.
    pub async fn add_data_key(&self, tenant: &TenantId, expected: i64, next: DataKeyRecord) -> Result<bool, PiiError> {
        let version = next.version;
        let next = mongodb::bson::to_bson(&next).map_err(|e| PiiError::Vault(e.to_string()))?;
        let outcome = self
            .keys()
            .update_one(
                doc! {"_id": tenant.as_str(), "currentVersion": expected},
                doc! {"$push": {"dataKeys": next}, "$set": {"currentVersion": version}},
            )
            .await
            .map_err(vault_error)?;
        Ok(outcome.modified_count == 1)
    }

    /// Whether the tenant's keys were shredded.
    pub async fn is_shredded(&self, tenant: &TenantId) -> Result<bool, PiiError> {
        let found = self.tombstones().find_one(doc! {"_id": tenant.as_str()}).await;
        Ok(found.map_err(vault_error)?.is_some())
    }

    /// Destroys a tenant's keys: a tombstone first (so that no key set can be made for it
    /// again), then its wrapped keys and its entries in the global e-mail index.
    pub async fn shred(&self, tenant: &TenantId, now: DateTime) -> Result<(), PiiError> {
        self.insert_tombstone(tenant, now).await?;
        self.keys().delete_many(doc! {"_id": tenant.as_str()}).await.map_err(vault_error)?;
        self.emails().delete_many(doc! {"tenantId": tenant.as_str()}).await.map_err(vault_error)?;
        Ok(())
    }

    fn tombstones(&self) -> Collection<mongodb::bson::Document> {
        self.database.collection(TOMBSTONES)
    }

    /// Writes the tenant's tombstone, shredded at `at`, unless it has one (whose date stays).
    /// Whether it wrote it: the reconciliation of a restored vault writes the tombstones that the
    /// data cluster knows of and the vault lost (docs/ARCHITECTURE.md §22).
    pub async fn insert_tombstone(&self, tenant: &TenantId, at: DateTime) -> Result<bool, PiiError> {
        match self.tombstones().insert_one(doc! {"_id": tenant.as_str(), "shreddedAt": at}).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate(&e) => Ok(false),
            Err(e) => Err(vault_error(e)),
        }
    }

    /// Marks a tenant's tombstone as a purge's (docs/ARCHITECTURE.md §22): the tenant ended, as
    /// opposed to an operator's shred of a tenant that lives on. Idempotent.
    pub async fn mark_purged(&self, tenant: &TenantId) -> Result<(), PiiError> {
        self.tombstones().update_one(doc! {"_id": tenant.as_str()}, doc! {"$set": {"purged": true}}).await.map_err(vault_error)?;
        Ok(())
    }

    /// Up to `limit` tombstones whose tenant id sorts after `after`, in id order, as
    /// `(tenant id, shreddedAt, purged)`: a keyset walk, so that memory stays bounded however
    /// many tenants were shredded. `purged` tells a purge's tombstone from an operator's shred.
    pub async fn tombstones_after(&self, after: Option<&str>, limit: i64) -> Result<Vec<(String, Option<DateTime>, bool)>, PiiError> {
        let filter = match after {
            Some(after) => doc! {"_id": {"$gt": after}},
            None => doc! {},
        };
        let found = self.tombstones().find(filter).sort(doc! {"_id": 1}).limit(limit).await.map_err(vault_error)?;
        let found: Vec<mongodb::bson::Document> = found.try_collect().await.map_err(vault_error)?;
        Ok(found
            .into_iter()
            .filter_map(|t| {
                let purged = t.get_bool("purged").unwrap_or(false);
                Some((t.get_str("_id").ok()?.to_owned(), t.get_datetime("shreddedAt").ok().copied(), purged))
            })
            .collect())
    }

    /// Which of `tenants` have a tombstone: one read for a batch.
    pub async fn tombstoned_among(&self, tenants: &[&str]) -> Result<Vec<String>, PiiError> {
        let found = self.tombstones().find(doc! {"_id": {"$in": tenants}}).projection(doc! {"_id": 1}).await.map_err(vault_error)?;
        let found: Vec<mongodb::bson::Document> = found.try_collect().await.map_err(vault_error)?;
        Ok(found.into_iter().filter_map(|t| t.get_str("_id").ok().map(str::to_owned)).collect())
    }

    /// The wrapped platform key of the global e-mail index, if made.
    pub async fn platform_key(&self) -> Result<Option<Binary>, PiiError> {
        let keys = self.database.collection::<PlatformKey>(PLATFORM_KEYS);
        Ok(keys.find_one(doc! {"_id": EMAIL_INDEX_KEY}).await.map_err(vault_error)?.map(|k| k.wrapped))
    }

    /// Stores the platform key unless one is stored; returns the one that is.
    pub async fn insert_platform_key(&self, wrapped: Vec<u8>, now: DateTime) -> Result<Binary, PiiError> {
        let keys = self.database.collection::<PlatformKey>(PLATFORM_KEYS);
        let key = PlatformKey { id: EMAIL_INDEX_KEY.into(), wrapped: binary(wrapped), created_at: now };
        match keys.insert_one(&key).await {
            Ok(_) => Ok(key.wrapped),
            Err(e) if is_duplicate(&e) => self.platform_key().await?.ok_or_else(|| PiiError::Vault("the platform key vanished".into())),
            Err(e) => Err(vault_error(e)),
        }
    }

    fn emails(&self) -> Collection<EmailEntry> {
        self.database.collection(EMAIL_INDEX)
    }

    /// Claims the global index entry `hash` for `tenant`: one insert of a fixed `_id`.
    pub async fn claim_email(&self, hash: &str, tenant: &TenantId, now: DateTime) -> Result<EmailClaim, PiiError> {
        let entry = EmailEntry { id: hash.to_owned(), tenant_id: tenant.to_string(), created_at: now };
        match self.emails().insert_one(&entry).await {
            Ok(_) => Ok(EmailClaim::Claimed),
            Err(e) if is_duplicate(&e) => match self.email_holder(hash).await? {
                Some(holder) if holder == tenant.as_str() => Ok(EmailClaim::Held),
                Some(_) => Ok(EmailClaim::Taken),
                // Released in between: try once more.
                None => match self.emails().insert_one(&entry).await {
                    Ok(_) => Ok(EmailClaim::Claimed),
                    Err(e) if is_duplicate(&e) => Ok(EmailClaim::Taken),
                    Err(e) => Err(vault_error(e)),
                },
            },
            Err(e) => Err(vault_error(e)),
        }
    }

    /// The tenant holding the global index entry `hash`.
    pub async fn email_holder(&self, hash: &str) -> Result<Option<String>, PiiError> {
        Ok(self.emails().find_one(doc! {"_id": hash}).await.map_err(vault_error)?.map(|e| e.tenant_id))
    }

    /// The tenants holding any of the entries `hashes`, in one read (a restore's check of an
    /// export's people, a batch at a time).
    pub async fn holders_of(&self, hashes: &[String]) -> Result<Vec<String>, PiiError> {
        let found = self.emails().find(doc! {"_id": {"$in": hashes}}).await.map_err(vault_error)?;
        let entries: Vec<EmailEntry> = found.try_collect().await.map_err(vault_error)?;
        Ok(entries.into_iter().map(|e| e.tenant_id).collect())
    }

    /// Releases `hash` if `tenant` holds it; returns whether it did.
    pub async fn release_email(&self, hash: &str, tenant: &TenantId) -> Result<bool, PiiError> {
        let deleted = self.emails().delete_one(doc! {"_id": hash, "tenantId": tenant.as_str()}).await.map_err(vault_error)?;
        Ok(deleted.deleted_count == 1)
    }

    /// Moves the global index entry `hash` from `from` to `to`, if `from` holds it: a restore
    /// taking over the people of the ending tenant it restores. Whether it moved.
    pub async fn move_email(&self, hash: &str, from: &TenantId, to: &TenantId) -> Result<bool, PiiError> {
        let moved = self
            .emails()
            .update_one(doc! {"_id": hash, "tenantId": from.as_str()}, doc! {"$set": {"tenantId": to.as_str()}})
            .await
            .map_err(vault_error)?;
        Ok(moved.matched_count == 1)
    }

    /// Releases every global index entry `tenant` holds (a cancelled sign-up's tenant, removed
    /// whole). How many went.
    pub async fn release_emails_of(&self, tenant: &TenantId) -> Result<u64, PiiError> {
        Ok(self.emails().delete_many(doc! {"tenantId": tenant.as_str()}).await.map_err(vault_error)?.deleted_count)
    }

    /// How many global index entries `tenant` holds.
    pub async fn emails_held(&self, tenant: &TenantId) -> Result<u64, PiiError> {
        self.emails().count_documents(doc! {"tenantId": tenant.as_str()}).await.map_err(vault_error)
    }

    /// Deletes a tenant's key set with no tombstone (a tenant that was never registered).
    pub async fn discard_tenant_keys(&self, tenant: &TenantId) -> Result<bool, PiiError> {
        let deleted = self.keys().delete_one(doc! {"_id": tenant.as_str()}).await.map_err(vault_error)?;
        Ok(deleted.deleted_count == 1)
    }

    /// Up to `limit` tenants whose key set was made before `before`, oldest first: the
    /// candidates of the sweeper's reaping of sets that no registered tenant owns.
    pub async fn key_sets_made_before(&self, before: DateTime, limit: i64) -> Result<Vec<TenantId>, PiiError> {
        let found =
            self.keys().find(doc! {"createdAt": {"$lt": before}}).sort(doc! {"createdAt": 1}).limit(limit).await.map_err(vault_error)?;
        let records: Vec<TenantKeyRecord> = found.try_collect().await.map_err(vault_error)?;
        Ok(records.into_iter().map(|r| r.tenant_id).collect())
    }

    /// Up to `limit` global e-mail claims made before `before`, as `(hash, tenant)`, oldest
    /// first: the candidates of the sweeper's reaping of claims no registered tenant holds.
    pub async fn email_claims_made_before(&self, before: DateTime, limit: i64) -> Result<Vec<(String, String)>, PiiError> {
        let found =
            self.emails().find(doc! {"createdAt": {"$lt": before}}).sort(doc! {"createdAt": 1}).limit(limit).await.map_err(vault_error)?;
        let entries: Vec<EmailEntry> = found.try_collect().await.map_err(vault_error)?;
        Ok(entries.into_iter().map(|e| (e.id, e.tenant_id)).collect())
    }

    /// Every tenant id with keys in the vault (for the shred and restore tests and `status`).
    pub async fn tenants_with_keys(&self) -> Result<Vec<String>, PiiError> {
        let cursor = self.keys().find(doc! {}).await.map_err(vault_error)?;
        let records: Vec<TenantKeyRecord> = cursor.try_collect().await.map_err(vault_error)?;
        Ok(records.into_iter().map(|r| r.tenant_id.to_string()).collect())
    }
}
