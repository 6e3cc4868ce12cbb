//! The keyring: what services seal, open and index personal data with. Plaintext keys live in
//! memory only, in an LRU of [`KEY_CACHE_ENTRIES`] that expire after [`KEY_CACHE_TTL`] against
//! the injectable clock. Concurrent misses of one key share one KMS `Decrypt` (a single-flight
//! cell per slot), so a cold start costs at most one `Decrypt` per wrapped key per tenant
//! touched, and a warm read none.

use super::vault::{binary, DataKeyRecord, EmailClaim, KeyVault, TenantKeyRecord};
use super::{blind_index, Field, Key, KeyWrapper, PiiError, Sealed};
use crate::clock::SharedClock;
use crate::ids::{Email, TenantId};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// How many plaintext keys (and wrapped key sets) a process holds at most.
pub const KEY_CACHE_ENTRIES: usize = 1024;
/// How long a plaintext key stays in memory after it was unwrapped.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(300);

/// The KMS encryption context of the platform's e-mail index key.
const PLATFORM_CONTEXT: [(&str, &str); 1] = [("purpose", "platform-email-index")];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Slot {
    /// A tenant's index key.
    Index(TenantId),
    /// A tenant's data key of a version.
    Data(TenantId, u32),
    /// The platform key of the global e-mail index.
    Platform,
}

type Cell<T> = Arc<OnceCell<Arc<T>>>;

/// One cached entry: filled once, by whoever missed first; expires at `until` (ms).
struct Entry<T> {
    cell: Cell<T>,
    until: i64,
}

/// An LRU of single-flight cells with an expiry.
struct Cache<K: std::hash::Hash + Eq, T> {
    entries: Mutex<LruCache<K, Entry<T>>>,
}

impl<K: std::hash::Hash + Eq + Clone, T> Cache<K, T> {
    fn new() -> Self {
        Self { entries: Mutex::new(LruCache::new(NonZeroUsize::new(KEY_CACHE_ENTRIES).expect("non-zero"))) }
    }

    /// The cell for `key`, fresh at `now` (a new one if absent or expired).
    fn cell(&self, key: &K, now: i64) -> Cell<T> {
        let mut entries = self.entries.lock().expect("poisoned");
        if let Some(entry) = entries.get(key) {
            if entry.until > now {
                return entry.cell.clone();
            }
        }
        let cell: Cell<T> = Arc::new(OnceCell::new());
        entries.put(key.clone(), Entry { cell: cell.clone(), until: now + KEY_CACHE_TTL.as_millis() as i64 });
        cell
    }

    fn forget(&self, keep: impl Fn(&K) -> bool) {
        let mut entries = self.entries.lock().expect("poisoned");
        let gone: Vec<K> = entries.iter().filter(|(k, _)| !keep(k)).map(|(k, _)| k.clone()).collect();
        for k in gone {
            entries.pop(&k);
        }
    }

    fn len(&self) -> usize {
        self.entries.lock().expect("poisoned").len()
    }
}

/// Seals, opens and indexes personal data; creates, rotates and shreds tenants' keys.
pub struct Keyring {
    wrapper: Arc<dyn KeyWrapper>,
    vault: KeyVault,
    clock: SharedClock,
    keys: Cache<Slot, Key>,
    /// Wrapped key sets, so that a warm seal needs no vault read either.
    records: Cache<TenantId, TenantKeyRecord>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("vault", &self.vault.name()).field("cachedKeys", &self.keys.len()).finish()
    }
}

fn tenant_context(tenant: &TenantId) -> [(&'static str, &str); 1] {
    [("tenantId", tenant.as_str())]
}

impl Keyring {
    /// A keyring over KMS (`wrapper`) and the vault, reading the time from `clock`.
    pub fn new(wrapper: Arc<dyn KeyWrapper>, vault: KeyVault, clock: SharedClock) -> Self {
        Self { wrapper, vault, clock, keys: Cache::new(), records: Cache::new() }
    }

    /// The vault (for the migrations' and tests' reports).
    pub fn vault(&self) -> &KeyVault {
        &self.vault
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The tenant's wrapped key set, cached. A shredded tenant is [`PiiError::Shredded`]; one
    /// with no keys [`PiiError::NoKeys`].
    async fn record(&self, tenant: &TenantId) -> Result<Arc<TenantKeyRecord>, PiiError> {
        let cell = self.records.cell(tenant, self.now());
        let record = cell
            .get_or_try_init(|| async {
                match self.vault.tenant_keys(tenant).await? {
                    Some(record) => Ok(Arc::new(record)),
                    None if self.vault.is_shredded(tenant).await? => Err(PiiError::Shredded(tenant.clone())),
                    None => Err(PiiError::NoKeys(tenant.clone())),
                }
            })
            .await?;
        Ok(record.clone())
    }

    /// The plaintext of one wrapped key, unwrapped at most once per cache period.
    async fn unwrapped(&self, slot: Slot, wrapped: &[u8], context: &[(&str, &str)]) -> Result<Arc<Key>, PiiError> {
        let cell = self.keys.cell(&slot, self.now());
        let key = cell.get_or_try_init(|| async { Ok::<_, PiiError>(Arc::new(self.wrapper.unwrap_key(wrapped, context).await?)) }).await?;
        Ok(key.clone())
    }

    async fn data_key(&self, tenant: &TenantId, version: u32) -> Result<Arc<Key>, PiiError> {
        let mut record = self.record(tenant).await?;
        if record.data_key(version).is_none() {
            // Rotated in another process since this one cached the set: read it again.
            self.records.forget(|t| t != tenant);
            record = self.record(tenant).await?;
        }
        let wrapped = record.data_key(version).ok_or_else(|| PiiError::UnknownVersion { tenant: tenant.clone(), version })?;
        self.unwrapped(Slot::Data(tenant.clone(), version), &wrapped.bytes, &tenant_context(tenant)).await
    }

    async fn index_key(&self, tenant: &TenantId) -> Result<Arc<Key>, PiiError> {
        let record = self.record(tenant).await?;
        self.unwrapped(Slot::Index(tenant.clone()), &record.index_key.bytes, &tenant_context(tenant)).await
    }

    /// The tenant's current data-key version.
    pub async fn current_version(&self, tenant: &TenantId) -> Result<u32, PiiError> {
        Ok(self.record(tenant).await?.current_version as u32)
    }

    /// Encrypts `plaintext` of `field` for `tenant` under its current data key.
    pub async fn seal(&self, tenant: &TenantId, field: Field, plaintext: &str) -> Result<Sealed, PiiError> {
        let version = self.current_version(tenant).await?;
        let key = self.data_key(tenant, version).await?;
        Sealed::seal(&key, version, tenant, field, plaintext)
    }

    /// Decrypts a stored value of `field` of `tenant`, under the key version it names; a legacy
    /// plaintext is returned as it is (old data, until the migration has sealed it).
    pub async fn open(&self, tenant: &TenantId, field: Field, sealed: &Sealed) -> Result<String, PiiError> {
        let Some(version) = sealed.key_version() else {
            return sealed.open(&Key::from_slice(&[0; 32])?, tenant, field);
        };
        let key = self.data_key(tenant, version).await?;
        sealed.open(&key, tenant, field)
    }

    /// The tenant's blind index of `email`: for lookups and per-tenant uniqueness.
    pub async fn email_index(&self, tenant: &TenantId, email: &Email) -> Result<String, PiiError> {
        Ok(blind_index(&*self.index_key(tenant).await?, email))
    }

    /// The platform's blind index of `email`, for the global "one tenant per e-mail" index.
    /// The platform key is made on first use (insert-if-absent in the vault).
    pub async fn global_email_index(&self, email: &Email) -> Result<String, PiiError> {
        Ok(blind_index(&*self.platform_key().await?, email))
    }

    /// A keyed digest of `data` under the platform key, for `purpose` (domain-separated from
    /// the e-mail index and from each other): what the durable sagas derive an idempotency key's
    /// saga id and a request's hash from, so that neither reveals the caller, the key or any
    /// personal value in the body, and neither can be computed without the vault and KMS.
    pub async fn platform_digest(&self, purpose: &str, data: &[&[u8]]) -> Result<String, PiiError> {
        Ok(super::sealed::keyed_digest(&*self.platform_key().await?, purpose, data))
    }

    /// The platform key, unwrapped: from memory while cached (no vault read), else read (or
    /// made) in the vault and unwrapped once.
    async fn platform_key(&self) -> Result<Arc<Key>, PiiError> {
        let cell = self.keys.cell(&Slot::Platform, self.now());
        if let Some(key) = cell.get() {
            return Ok(key.clone());
        }
        let wrapped = match self.vault.platform_key().await? {
            Some(wrapped) => wrapped,
            None => {
                let fresh = self.wrapper.generate(&PLATFORM_CONTEXT).await?;
                self.vault.insert_platform_key(fresh.wrapped, self.clock.now()).await?
            }
        };
        self.unwrapped(Slot::Platform, &wrapped.bytes, &PLATFORM_CONTEXT).await
    }

    /// Deletes the key set of a tenant that was never registered (a compensated onboarding, or
    /// one that predates durable sagas): plainly, with no tombstone, since nothing was ever
    /// sealed under it that anyone may keep. The caller has read the registry and found no such
    /// tenant. Whether a set was deleted.
    pub async fn discard_unregistered(&self, tenant: &TenantId) -> Result<bool, PiiError> {
        let deleted = self.vault.discard_tenant_keys(tenant).await?;
        self.forget_tenant(tenant);
        Ok(deleted)
    }

    /// Claims `email` for `tenant` in the global index.
    pub async fn claim_email(&self, tenant: &TenantId, email: &Email) -> Result<EmailClaim, PiiError> {
        let hash = self.global_email_index(email).await?;
        self.vault.claim_email(&hash, tenant, self.clock.now()).await
    }

    /// The tenant holding `email` in the global index, if any.
    pub async fn email_holder(&self, email: &Email) -> Result<Option<TenantId>, PiiError> {
        let hash = self.global_email_index(email).await?;
        Ok(self.vault.email_holder(&hash).await?.and_then(|t| TenantId::parse(t).ok()))
    }

    /// The tenants holding any of `emails` in the global index, in one read of the vault.
    pub async fn email_holders(&self, emails: &[Email]) -> Result<Vec<TenantId>, PiiError> {
        let mut hashes = Vec::with_capacity(emails.len());
        for email in emails {
            hashes.push(self.global_email_index(email).await?);
        }
        Ok(self.vault.holders_of(&hashes).await?.into_iter().filter_map(|t| TenantId::parse(t).ok()).collect())
    }

    /// Releases `email` from the global index if `tenant` holds it.
    pub async fn release_email(&self, tenant: &TenantId, email: &Email) -> Result<bool, PiiError> {
        let hash = self.global_email_index(email).await?;
        self.vault.release_email(&hash, tenant).await
    }

    /// Moves `email`'s global claim from `from` to `to`, if `from` holds it ([`KeyVault::move_email`]).
    pub async fn move_email(&self, from: &TenantId, to: &TenantId, email: &Email) -> Result<bool, PiiError> {
        let hash = self.global_email_index(email).await?;
        self.vault.move_email(&hash, from, to).await
    }

    /// Makes the tenant's index key and first data key, unless it has keys (read from the vault,
    /// never from this process's cache): insert-if-absent with `_id` = the tenant id, so two
    /// racing first writes can never make two key sets. A shredded tenant never gets keys again.
    pub async fn create_tenant_keys(&self, tenant: &TenantId) -> Result<(), PiiError> {
        // Read afresh: a saga's compensation in another process may have discarded a set this
        // process still holds (`discard_unregistered`), and nothing may be sealed under it.
        self.forget_tenant(tenant);
        match self.record(tenant).await {
            Ok(_) => return Ok(()),
            Err(PiiError::NoKeys(_)) => {}
            Err(e) => return Err(e),
        }
        let context = tenant_context(tenant);
        let (index, data) = tokio::try_join!(self.wrapper.generate(&context), self.wrapper.generate(&context))?;
        let now = self.clock.now();
        let record = TenantKeyRecord {
            tenant_id: tenant.clone(),
            index_key: binary(index.wrapped),
            data_keys: vec![DataKeyRecord { version: 1, wrapped: binary(data.wrapped), created_at: now }],
            current_version: 1,
            created_at: now,
        };
        let stored = self.vault.insert_tenant_keys(&record).await?;
        self.records.forget(|t| t != tenant);
        if stored == record {
            // Ours won: keep the plaintexts we already hold instead of unwrapping them again.
            let now = self.now();
            for (slot, key) in [(Slot::Index(tenant.clone()), index.plaintext), (Slot::Data(tenant.clone(), 1), data.plaintext)] {
                // A racing reader may have filled the cell already, with the same key.
                let _ = self.keys.cell(&slot, now).set(Arc::new(key));
            }
        }
        Ok(())
    }

    /// A new data key for the tenant, made current; returns its version. Old versions stay, so
    /// that values sealed under them (and backups) still open until the tenant is shredded.
    pub async fn rotate(&self, tenant: &TenantId) -> Result<u32, PiiError> {
        self.records.forget(|t| t != tenant);
        let record = self.record(tenant).await?;
        let next = record.data_keys.iter().map(|k| k.version).max().unwrap_or(0) + 1;
        let fresh = self.wrapper.generate(&tenant_context(tenant)).await?;
        let key = DataKeyRecord { version: next, wrapped: binary(fresh.wrapped), created_at: self.clock.now() };
        let added = self.vault.add_data_key(tenant, record.current_version, key).await?;
        self.records.forget(|t| t != tenant);
        if !added {
            // Another rotation won: its version is current now.
            return self.current_version(tenant).await;
        }
        let _ = self.keys.cell(&Slot::Data(tenant.clone(), next as u32), self.now()).set(Arc::new(fresh.plaintext));
        Ok(next as u32)
    }

    /// Destroys the tenant's keys in the vault (with a tombstone, and its global e-mail index
    /// entries) and forgets them in this process. Other processes forget them within
    /// [`KEY_CACHE_TTL`].
    pub async fn shred(&self, tenant: &TenantId) -> Result<(), PiiError> {
        self.vault.shred(tenant, self.clock.now()).await?;
        self.forget_tenant(tenant);
        Ok(())
    }

    /// Drops every cached key and key set of `tenant` in this process.
    pub fn forget_tenant(&self, tenant: &TenantId) {
        self.records.forget(|t| t != tenant);
        self.keys.forget(|slot| match slot {
            Slot::Index(t) | Slot::Data(t, _) => t != tenant,
            Slot::Platform => true,
        });
    }
}
