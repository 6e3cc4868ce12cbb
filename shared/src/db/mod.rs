//! The data layer: the cached client, tenant-scoped collections and the narrow APIs of the
//! global collections. Nothing here hands out a raw `Collection` of a tenant collection.

pub mod guard;
mod health;
mod keys;
mod ledger;
mod registry;
mod retention;
mod scoped;
mod store;
#[cfg(any(test, feature = "testing"))]
mod testing;
mod usage;

pub use guard::Refusal;
pub use health::{NoAvailableServer, ServerState};
pub use keys::{KeyAuth, RefusalBudget, RefusalSource, REFUSALS_PER_MINUTE};
pub use ledger::{LockGuard, Locks, MigrationLedger, MigrationRecord};
pub use registry::{
    changeable, not_purged, CallBounds, DomainClaim, OwnTenant, TenantPage, TenantQuery, TenantRegistry, KEYS_SHREDDED_AT, MAX_SEARCH_LEN,
    RESTORING,
};
pub use retention::AuditRetention;
pub use scoped::{Batches, FindOptions, Scoped, UpdateOutcome};
pub use store::{GlobalCollection, GlobalFind, GlobalStore, WindowCounts};
pub use usage::{UsageMeter, MEASURE_BATCH};

use crate::clock::{self, SharedClock};
use crate::config::DbConfig;
use crate::ids::TenantId;
use crate::pii::Keyring;
#[cfg(feature = "kms")]
use crate::receipt::ReceiptConfig;
use crate::receipt::{BackupBounds, ReceiptSigner};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use tokio::sync::{Mutex, OnceCell, OwnedMutexGuard};

/// One client per execution environment: Lambda reuses it across invocations. Its monitoring
/// events feed the [`health::Health`] beside it.
static CLIENT: OnceCell<(Client, Arc<health::Health>)> = OnceCell::const_new();

/// The tenant-scoped collections of the brief. Each document carries `tenantId`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantCollection {
    Users,
    Roles,
    ApiKeys,
    AuditLogs,
    /// The tombstones of erased people (docs/ARCHITECTURE.md §22): kept out of `users`, where
    /// they would collide on the unique indexes and count as seats.
    UserErasures,
}

impl TenantCollection {
    /// Every tenant collection.
    pub const ALL: [TenantCollection; 5] = [
        TenantCollection::Users,
        TenantCollection::Roles,
        TenantCollection::ApiKeys,
        TenantCollection::AuditLogs,
        TenantCollection::UserErasures,
    ];

    /// The collection's name in the database.
    pub fn name(self) -> &'static str {
        match self {
            TenantCollection::Users => "users",
            TenantCollection::Roles => "roles",
            TenantCollection::ApiKeys => "apiKeys",
            TenantCollection::AuditLogs => "auditLogs",
            TenantCollection::UserErasures => "userErasures",
        }
    }
}

/// Names of the global collections, which have no tenant scope and their own narrow APIs.
pub mod global {
    /// The tenant registry.
    pub const TENANTS: &str = "tenants";
    /// Claimed tenant domains, keyed by the domain itself: uniqueness without a sparse index.
    pub const TENANT_DOMAINS: &str = "tenantDomains";
    /// Applied migrations.
    pub const MIGRATIONS: &str = "migrations";
    /// Leases that keep concurrent runs apart.
    pub const LOCKS: &str = "locks";
    /// Each API key's request windows, one document per key (`_id` = the key id).
    pub const API_KEY_WINDOWS: &str = "apiKeyWindows";
    /// Each tenant's budget of audited refusals, one document per tenant.
    pub const REFUSAL_WINDOWS: &str = "refusalWindows";
    /// Each tenant's daily data-growth snapshot, one document per tenant and UTC day
    /// (`_id` = `<tenantId>:<YYYY-MM-DD>`).
    pub const USAGE_SNAPSHOTS: &str = "usageSnapshots";
    /// The durable sagas, one document per saga (`_id` derived from its caller and idempotency
    /// key, or random), each with the `tenantId` it acts on.
    pub const SAGAS: &str = "sagas";
    /// The tombstones of purged tenants, one per tenant (`_id` = the tenant id).
    pub const TENANT_TOMBSTONES: &str = "tenantTombstones";
    /// A tenant's exports and restores, one document per job (`_id` = `ex_…` or `rs_…`).
    pub const JOBS: &str = "jobs";
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// Who may open a tenant-scoped collection: a resolved `TenantContext`, or a `SystemContext`
/// that names the tenant it acts for. Sealed: no other type can claim a tenant.
pub trait TenantScope: sealed::Sealed {
    /// The tenant every operation is confined to.
    fn scope_tenant(&self) -> &TenantId;
}

/// Who may open a global collection: a superadmin or the system. Sealed.
pub trait GlobalAccess: sealed::Sealed {}

/// The platform itself (migrations, onboarding, identity resolution), named explicitly in code.
#[derive(Debug, Clone, Copy)]
pub struct SystemContext {
    purpose: &'static str,
}

impl SystemContext {
    /// A system context; `purpose` appears in logs.
    pub fn new(purpose: &'static str) -> Self {
        Self { purpose }
    }
    /// What this context is for.
    pub fn purpose(&self) -> &'static str {
        self.purpose
    }
    /// The system acting for one tenant, e.g. onboarding seeding its roles.
    pub fn for_tenant(&self, tenant: TenantId) -> SystemTenantScope {
        SystemTenantScope { tenant, purpose: self.purpose }
    }
}

impl sealed::Sealed for SystemContext {}
impl GlobalAccess for SystemContext {}

/// The system acting for exactly one tenant.
#[derive(Debug, Clone)]
pub struct SystemTenantScope {
    tenant: TenantId,
    purpose: &'static str,
}

impl SystemTenantScope {
    /// What this context is for.
    pub fn purpose(&self) -> &'static str {
        self.purpose
    }
}

impl sealed::Sealed for SystemTenantScope {}
impl TenantScope for SystemTenantScope {
    fn scope_tenant(&self) -> &TenantId {
        &self.tenant
    }
}

/// Where a keyset walk in `_id` order stands ([`Scoped::batches`], [`TenantRegistry::batches`]):
/// each batch resumes after the last `_id` seen, so that a job's memory stays bounded and a
/// document written behind the walk is not read twice.
#[derive(Debug, Clone, Default)]
struct Keyset {
    after: Option<mongodb::bson::oid::ObjectId>,
    done: bool,
}

impl Keyset {
    /// `base` narrowed to the documents after the last one seen; `None` once the walk is over.
    fn filter(&self, base: &mongodb::bson::Document) -> Option<mongodb::bson::Document> {
        if self.done {
            return None;
        }
        let mut filter = base.clone();
        if let Some(after) = self.after {
            filter.insert("_id", mongodb::bson::doc! {"$gt": after});
        }
        Some(filter)
    }

    /// Moves past a batch read with [`Self::filter`] (sorted by `_id`): `false`, and the walk
    /// over, when it was empty.
    fn advance(&mut self, batch: &[mongodb::bson::Document]) -> bool {
        match batch.last().and_then(|last| last.get_object_id("_id").ok()) {
            Some(last) => self.after = Some(last),
            None => self.done = true,
        }
        !self.done
    }
}

/// Adds `fields` under `operator` (`$set`, `$unset`) of `update`, beside any fields the update
/// has there already: a write's own fields and the bookkeeping a layer stamps on it.
pub(crate) fn merge_operator(update: &mut mongodb::bson::Document, operator: &str, fields: mongodb::bson::Document) {
    match update.get_document_mut(operator) {
        Ok(existing) => existing.extend(fields),
        Err(_) => {
            update.insert(operator, fields);
        }
    }
}

/// Errors of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("refused by the tenant scope: {0}")]
    Refused(Refusal),
    #[error("duplicate key")]
    Duplicate,
    #[error("the database is unavailable")]
    Unavailable(#[source] mongodb::error::Error),
    #[error("stored document does not match its model")]
    Decode(#[from] mongodb::bson::de::Error),
    /// Boxed: the encoder's error is the largest of these by far, and every `Result` of the
    /// data layer and the contexts would carry its size.
    #[error("document could not be encoded")]
    Encode(#[source] Box<mongodb::bson::ser::Error>),
    #[error("database error")]
    Other(#[source] mongodb::error::Error),
    /// Personal data could not be sealed, opened or indexed (docs/ARCHITECTURE.md §20).
    #[error("personal data: {0}")]
    Pii(#[from] crate::pii::PiiError),
    /// An erasure receipt could not be signed or read (docs/ARCHITECTURE.md §22).
    #[error("erasure receipt: {0}")]
    Receipt(#[from] crate::receipt::ReceiptError),
    /// The export bucket or the jobs queue failed (docs/ARCHITECTURE.md §22).
    #[error("export files: {0}")]
    Files(#[from] crate::jobs::ExportError),
}

impl From<mongodb::bson::ser::Error> for DbError {
    fn from(e: mongodb::bson::ser::Error) -> Self {
        DbError::Encode(Box::new(e))
    }
}

// By hand rather than `#[from]`, which would also make the refusal the error's source and
// print it twice in a cause chain.
impl From<Refusal> for DbError {
    fn from(r: Refusal) -> Self {
        DbError::Refused(r)
    }
}

impl DbError {
    /// Whether trying again later may succeed (decided from the driver's kinds and labels).
    pub fn is_retryable(&self) -> bool {
        match self {
            DbError::Unavailable(_) => true,
            DbError::Pii(e) => e.is_unavailable(),
            DbError::Receipt(e) => e.is_unavailable(),
            DbError::Files(e) => e.is_unavailable(),
            DbError::Other(e) => {
                e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR) || e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
            }
            _ => false,
        }
    }

    /// Whether a write that failed this way may have been applied all the same: the command may
    /// have reached the server and only its reply was lost (a connection cut, a timeout). Not a
    /// definite refusal: a server's answer, a scope refusal, an encoding error, or no server
    /// selected (nothing was sent). Such a write is re-read before anything is compensated or a
    /// counter moved (docs/ARCHITECTURE.md §12).
    pub fn outcome_unknown(&self) -> bool {
        use mongodb::error::{ErrorKind, WriteFailure};
        match self {
            DbError::Unavailable(e) | DbError::Other(e) => {
                // A retried write's error may follow a first attempt that was applied.
                if e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR) && !e.contains_label("NoWritesPerformed") {
                    return true;
                }
                match e.kind.as_ref() {
                    // Applied, only its write concern was not met.
                    ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
                    ErrorKind::InsertMany(m) => m.write_concern_error.is_some(),
                    // `Custom`: refused before sending, no server being available (`NoAvailableServer`).
                    ErrorKind::ServerSelection { .. } | ErrorKind::Command(_) | ErrorKind::Write(_) | ErrorKind::Custom(_) => false,
                    _ => true,
                }
            }
            _ => false,
        }
    }
}

impl From<mongodb::error::Error> for DbError {
    fn from(e: mongodb::error::Error) -> Self {
        use mongodb::error::{ErrorKind, WriteFailure};
        match e.kind.as_ref() {
            ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => DbError::Unavailable(e),
            // A primary stepping down or a server shutting down (an election, Atlas maintenance):
            // the driver retries once, and if its retry finds no primary within the selection
            // timeout it returns this first error, which a later call gets past.
            ErrorKind::Command(c) if STATE_CHANGE_CODES.contains(&c.code) => DbError::Unavailable(e),
            ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000 => DbError::Duplicate,
            ErrorKind::Command(c) if c.code == 11000 => DbError::Duplicate,
            // FerretDB reports a unique-index violation inside findAndModify as an internal
            // error (code 1) carrying SQLite's message, not as MongoDB's 11000.
            ErrorKind::Command(c) if c.code == 1 && c.message.contains("UNIQUE constraint failed") => DbError::Duplicate,
            ErrorKind::InsertMany(m) if m.write_errors.as_ref().is_some_and(|errs| errs.iter().any(|w| w.code == 11000)) => {
                DbError::Duplicate
            }
            _ => DbError::Other(e),
        }
    }
}

/// The server's "not primary" and "shutting down" error codes (HostUnreachable,
/// HostNotFound, NetworkTimeout, ShutdownInProgress, PrimarySteppedDown,
/// ExceededTimeLimit, SocketException, NotWritablePrimary, InterruptedAtShutdown,
/// InterruptedDueToReplStateChange, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary).
const STATE_CHANGE_CODES: &[i32] = &[6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436];

/// Which server is behind the URI: it decides one workaround (see [`Db::serial`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFlavor {
    MongoDb,
    /// FerretDB runs `findAndModify`, `update` and `delete` as a read, then an unconditional
    /// write by `_id` (its SQLite backend's `UpdateAll`), so concurrent writes to one document
    /// lose updates, conditional ones included: compare-and-set is not atomic there either.
    FerretDb,
}

/// How long a write waits for the monitor's fresh look before it is refused (see
/// [`Db::serial`]): longer than a check of a live server takes, far shorter than a queue.
const RECHECK: std::time::Duration = std::time::Duration::from_millis(1_000);

/// One write at a time per database, in this process, on FerretDB only (see [`Db::serial`]).
static SERIALS: LazyLock<std::sync::Mutex<HashMap<String, Arc<Serial>>>> = LazyLock::new(Default::default);

/// A database's write serialisation, and how often it was taken (tests check that an outage
/// takes it never).
#[derive(Debug, Default)]
struct Serial {
    lock: Arc<Mutex<()>>,
    taken: std::sync::atomic::AtomicU64,
}

/// A handle on the application database.
#[derive(Debug, Clone)]
pub struct Db {
    database: Database,
    flavor: Arc<OnceCell<ServerFlavor>>,
    clock: SharedClock,
    /// Seals and opens personal data; only the functions that handle it have one.
    keyring: Option<Arc<Keyring>>,
    /// Signs erasure receipts; only the function that purges tenants has one.
    signer: Option<Arc<dyn ReceiptSigner>>,
    /// The export bucket and the jobs queue; only the functions that use them have them.
    #[cfg(feature = "exports")]
    exports: Option<Arc<crate::exports::Exports>>,
    /// The backup retentions a receipt states.
    backup_bounds: BackupBounds,
    /// The client's servers as its monitoring events describe them.
    health: Arc<health::Health>,
}

impl Db {
    /// The database through the per-process cached client (Lambda, the local API). The first
    /// caller's URI wins; the client connects lazily, on the first operation.
    pub async fn cached(cfg: &DbConfig) -> Result<Db, DbError> {
        let (client, health) = CLIENT.get_or_try_init(|| monitored_client(client_options(cfg))).await?;
        Ok(Db::new(client.database(&cfg.database), health.clone()))
    }

    fn new(database: Database, health: Arc<health::Health>) -> Db {
        Db {
            database,
            flavor: Arc::new(OnceCell::new()),
            clock: clock::system(),
            keyring: None,
            signer: None,
            #[cfg(feature = "exports")]
            exports: None,
            backup_bounds: BackupBounds::default(),
            health,
        }
    }

    /// The same database, sealing and opening personal data with `keyring`.
    pub fn with_keyring(mut self, keyring: Arc<Keyring>) -> Db {
        self.keyring = Some(keyring);
        self
    }

    /// The same database with the personal-data keyring that `vault` describes: KMS (the SDK,
    /// configured from the environment when first used) and the vault database, through the
    /// data cluster's client or, when the vault has a cluster of its own, a cached client of
    /// its own. Nothing connects before the first use.
    #[cfg(feature = "kms")]
    pub async fn with_vault(self, data: &DbConfig, vault: &crate::config::VaultConfig) -> Result<Db, DbError> {
        static VAULT_CLIENT: OnceCell<Client> = OnceCell::const_new();
        let database = match &vault.uri {
            None => self.database.client().database(&vault.database),
            Some(_) => {
                let config = vault.db_config(data);
                let client = VAULT_CLIENT
                    .get_or_try_init(|| async { Ok::<_, DbError>(Client::with_options(client_options(&config).await?)?) })
                    .await?;
                client.database(&vault.database)
            }
        };
        let kms = Arc::new(crate::pii::AwsKms::new(vault.kms_key_id.clone()));
        let keyring = Keyring::new(kms, crate::pii::KeyVault::new(database), self.clock.clone());
        Ok(self.with_keyring(Arc::new(keyring)))
    }

    /// The cached database with the keyring the environment describes ([`VaultConfig::load`]):
    /// what the functions that handle personal data open at cold start.
    ///
    /// [`VaultConfig::load`]: crate::config::VaultConfig::load
    #[cfg(feature = "kms")]
    pub async fn cached_with_keyring(data: &DbConfig) -> Result<Db, Box<dyn std::error::Error + Send + Sync>> {
        let vault = crate::config::VaultConfig::load(data).await?;
        Ok(Db::cached(data).await?.with_vault(data, &vault).await?)
    }

    /// The keyring of personal data. A function built without one refuses to touch personal
    /// data rather than store it in the clear.
    pub fn keyring(&self) -> Result<&Keyring, DbError> {
        self.keyring.as_deref().ok_or(DbError::Pii(crate::pii::PiiError::NotConfigured))
    }

    /// The same database, signing erasure receipts with `signer`.
    pub fn with_signer(mut self, signer: Arc<dyn ReceiptSigner>) -> Db {
        self.signer = Some(signer);
        self
    }

    /// The same database, stating `bounds` in the receipts it signs.
    pub fn with_backup_bounds(mut self, bounds: BackupBounds) -> Db {
        self.backup_bounds = bounds;
        self
    }

    /// The same database with the receipt signing that `config` describes: its key in KMS (the
    /// SDK, configured from the environment when first used) and its backup bounds.
    #[cfg(feature = "kms")]
    pub fn with_receipts(self, config: &ReceiptConfig) -> Db {
        let signer = Arc::new(crate::receipt::KmsReceiptSigner::new(config.key_id.clone()));
        self.with_signer(signer).with_backup_bounds(config.bounds)
    }

    /// The erasure receipts' signer. A function built without one refuses to sign or serve a
    /// receipt: [`ReceiptError::NotConfigured`], which names `RECEIPT_KEY_ID`.
    ///
    /// [`ReceiptError::NotConfigured`]: crate::receipt::ReceiptError::NotConfigured
    pub fn signer(&self) -> Result<Arc<dyn ReceiptSigner>, DbError> {
        self.signer.clone().ok_or(DbError::Receipt(crate::receipt::ReceiptError::NotConfigured))
    }

    /// The same database, with the export bucket and the jobs queue of `exports`.
    #[cfg(feature = "exports")]
    pub fn with_exports(mut self, exports: Arc<crate::exports::Exports>) -> Db {
        self.exports = Some(exports);
        self
    }

    /// The export bucket and the jobs queue. A function built without them refuses:
    /// [`crate::exports::ExportError::NotConfigured`].
    #[cfg(feature = "exports")]
    pub fn exports(&self) -> Result<&crate::exports::Exports, crate::exports::ExportError> {
        self.exports.as_deref().ok_or(crate::exports::ExportError::NotConfigured(crate::exports::BUCKET_VARIABLE))
    }

    /// The backup retentions the receipts state ([`BackupBounds::default`] unless configured).
    pub fn backup_bounds(&self) -> BackupBounds {
        self.backup_bounds
    }

    /// The same database, reading the time from `clock` (tests move time instead of sleeping).
    pub fn with_clock(mut self, clock: SharedClock) -> Db {
        self.clock = clock;
        self
    }

    /// Where this handle reads the time.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The local server's write serialisation. On FerretDB every update, `findAndModify` and
    /// delete through this crate takes it, so that no write can revert another one in this
    /// process (docs/ARCHITECTURE.md §6). On MongoDB, whose writes are atomic per document,
    /// nothing waits. Across processes FerretDB offers no such guarantee: the local stack runs
    /// every writer in one process (`local-api migrate` goes through the running API).
    ///
    /// An outage must not turn it into a queue (each holder waiting out its server selection in
    /// turn): with no server known available ([`Db::server_state`], from the driver's monitoring
    /// events, no round trip), a write asks the monitor for one fresh look and, unless it
    /// finds a server within [`RECHECK`], is refused as [`DbError::Unavailable`], before the
    /// lock; and a write already waiting for it takes the same look as soon as the state
    /// turns. Every caller of an outage is refused side by side, never one after another.
    pub(crate) async fn serial(&self) -> Result<Option<OwnedMutexGuard<()>>, DbError> {
        self.refuse_if_no_server().await?;
        if self.flavor().await? == ServerFlavor::MongoDb {
            return Ok(None);
        }
        let serial = SERIALS.lock().expect("poisoned").entry(self.name().to_owned()).or_default().clone();
        let guard = loop {
            let mut state = self.health.subscribe();
            let turned = async move {
                let _ = state.wait_for(|s| *s == ServerState::Unavailable).await;
            };
            tokio::select! {
                guard = serial.lock.clone().lock_owned() => break guard,
                () = turned => {}
            }
            // The state turned while waiting: leave the queue, and come back only if the
            // monitor sees a server again at once (a blip), never to wait out an outage.
            self.refuse_if_no_server().await?;
        };
        // The state may have turned as the lock came free: the same fresh look, lock in hand
        // (the other waiters, seeing the same state, look side by side, not after it).
        self.refuse_if_no_server().await?;
        serial.taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Some(guard))
    }

    /// With no server known available, asks the monitor to look again and refuses unless it
    /// finds one within [`RECHECK`]: one failed heartbeat, or a connection reset that marked
    /// the server unknown, is then no refusal, and a real outage still fails every caller
    /// side by side.
    async fn refuse_if_no_server(&self) -> Result<(), DbError> {
        if self.health.state() != ServerState::Unavailable {
            return Ok(());
        }
        self.health.probe(self.database.client());
        let mut state = self.health.subscribe();
        // The watch's guard must not live across an await: only whether the state turned.
        let turned = async move { state.wait_for(|s| *s != ServerState::Unavailable).await.is_ok() };
        if matches!(tokio::time::timeout(RECHECK, turned).await, Ok(true)) {
            return Ok(());
        }
        Err(DbError::Unavailable(mongodb::error::Error::custom(NoAvailableServer)))
    }

    /// What the driver's monitoring events say of the servers now.
    pub fn server_state(&self) -> ServerState {
        self.health.state()
    }

    /// The server's flavor, asked once (`buildInfo`) and remembered.
    pub async fn flavor(&self) -> Result<ServerFlavor, DbError> {
        let flavor = self
            .flavor
            .get_or_try_init(|| async {
                let info = self.database.run_command(mongodb::bson::doc! {"buildInfo": 1}).await?;
                Ok::<_, DbError>(if info.contains_key("ferretdbVersion") { ServerFlavor::FerretDb } else { ServerFlavor::MongoDb })
            })
            .await?;
        Ok(*flavor)
    }

    /// The database name.
    pub fn name(&self) -> &str {
        self.database.name()
    }

    /// A tenant-scoped collection, confined to the scope's tenant.
    pub fn scoped<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        scope: &impl TenantScope,
        collection: TenantCollection,
    ) -> Scoped<T> {
        Scoped::new(self.clone(), self.database.collection(collection.name()), scope.scope_tenant().clone())
    }

    /// The tenant registry.
    pub fn tenants(&self, _access: &impl GlobalAccess) -> TenantRegistry {
        TenantRegistry::new(self)
    }

    /// The scope's own registry record (the settings its members may change).
    pub fn own_tenant(&self, scope: &impl TenantScope) -> OwnTenant {
        OwnTenant::new(TenantRegistry::new(self), scope.scope_tenant().clone())
    }

    /// API-key authentication: a key by its global id, and its request windows.
    pub fn key_auth(&self, _system: &SystemContext) -> KeyAuth {
        KeyAuth::new(self)
    }

    /// Audit retention across tenants: expired entries, and `expireAt` after a plan change.
    pub fn audit_retention(&self, _system: &SystemContext) -> AuditRetention {
        AuditRetention::new(self)
    }

    /// Data growth across tenants: documents and bytes of every tenant collection, measured
    /// around the scope (which refuses `$collStats`).
    pub fn usage(&self, _system: &SystemContext) -> UsageMeter {
        UsageMeter::new(self)
    }

    /// The budgets of audited refusals, one per source (a key id, an address, an actor).
    pub fn refusal_budget(&self, system: &SystemContext) -> RefusalBudget {
        RefusalBudget::new(self, system)
    }

    /// Whether records from before personal data was encrypted may remain: until the sealing
    /// migration ([`crate::pii::SEAL_MIGRATION`]) is applied, reads take unversioned plaintext
    /// as old data and e-mail lookups also try the plaintext field. Once applied, remembered for
    /// the process's life; until then asked again at most once a minute, so a warm call pays
    /// no round trip for it.
    pub async fn plaintext_may_remain(&self) -> Result<bool, DbError> {
        static SEEN: LazyLock<std::sync::Mutex<HashMap<String, (bool, i64)>>> = LazyLock::new(Default::default);
        let now = self.clock.now_ms();
        if let Some((migrated, at)) = SEEN.lock().expect("poisoned").get(self.name()).copied() {
            if migrated || now - at < 60_000 {
                return Ok(!migrated);
            }
        }
        let migrated = self.migration_ledger(&SystemContext::new("personal data")).is_applied(crate::pii::SEAL_MIGRATION).await?;
        SEEN.lock().expect("poisoned").insert(self.name().to_owned(), (migrated, now));
        Ok(!migrated)
    }

    /// The record of applied migrations.
    pub fn migration_ledger(&self, _system: &SystemContext) -> MigrationLedger {
        MigrationLedger::new(self.database.collection(global::MIGRATIONS))
    }

    /// Leases for work that must not run twice at once.
    pub fn locks(&self, _system: &SystemContext) -> Locks {
        Locks::new(self, self.database.collection(global::LOCKS))
    }

    /// Index management, for the migrations `setup`: indexes only, no access to documents.
    pub fn indexes(&self, _system: &SystemContext) -> Indexes {
        Indexes { database: self.database.clone() }
    }

    /// A round trip to the server: `ping`.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.database.run_command(mongodb::bson::doc! {"ping": 1}).await?;
        Ok(())
    }
}

/// Creates and lists indexes; it cannot read or write documents.
#[derive(Debug, Clone)]
pub struct Indexes {
    database: Database,
}

impl Indexes {
    /// The indexes on a collection (none if the collection does not exist yet).
    pub async fn list(&self, collection: &str) -> Result<Vec<mongodb::IndexModel>, DbError> {
        use futures_util::TryStreamExt;
        let coll = self.database.collection::<mongodb::bson::Document>(collection);
        match coll.list_indexes().await {
            Ok(cursor) => Ok(cursor.try_collect().await?),
            // NamespaceNotFound: the collection does not exist yet, so it has no index.
            Err(e) if matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 26) => Ok(vec![]),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates one index.
    pub async fn create(&self, collection: &str, index: mongodb::IndexModel) -> Result<(), DbError> {
        self.database.collection::<mongodb::bson::Document>(collection).create_index(index).await?;
        Ok(())
    }

    /// Drops the index `name`; one that does not exist (or a collection that does not) is
    /// already gone. Returns whether it dropped one.
    pub async fn drop(&self, collection: &str, name: &str) -> Result<bool, DbError> {
        match self.database.collection::<mongodb::bson::Document>(collection).drop_index(name).await {
            Ok(()) => Ok(true),
            // IndexNotFound, NamespaceNotFound.
            Err(e) if matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 27 || c.code == 26) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// A client whose monitoring events feed a [`health::Health`] of its own.
async fn monitored_client(
    options: impl std::future::Future<Output = Result<ClientOptions, DbError>>,
) -> Result<(Client, Arc<health::Health>), DbError> {
    let mut options = options.await?;
    let health = health::Health::new();
    options.sdam_event_handler = Some(health.handler());
    Ok((Client::with_options(options)?, health))
}

async fn client_options(cfg: &DbConfig) -> Result<ClientOptions, DbError> {
    let mut options = ClientOptions::parse(&cfg.uri).await?;
    // A Lambda environment serves one request at a time: a few connections are plenty, and a
    // short selection timeout turns a dead database into a quick 503 rather than a timeout.
    options.app_name = Some(cfg.app_name.clone());
    options.max_pool_size = Some(cfg.max_pool_size);
    options.min_pool_size = Some(0);
    options.server_selection_timeout = Some(cfg.server_selection_timeout);
    options.connect_timeout = Some(cfg.server_selection_timeout);
    options.max_idle_time = Some(std::time::Duration::from_secs(60));
    Ok(options)
}
