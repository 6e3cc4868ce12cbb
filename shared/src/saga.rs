//! The durable sagas (docs/ARCHITECTURE.md §21): multi-step work that spans MongoDB, KMS and
//! Cognito, so that no transaction can hold it, kept in the database step by step so that a
//! crash, a lost reply or a client's retry finishes it or undoes it, never leaves half of it.
//!
//! One document per saga in the global `sagas` collection ([`GlobalCollection::Sagas`]):
//! - its `_id` is derived from its caller and idempotency key (a keyed digest: no other caller's
//!   key can land on it, and nothing about either can be read back), or random without a key;
//!   the insert comes first, so of two racing first calls exactly one makes the saga;
//! - it is inserted with no personal data: a context seals the request's personal fields with
//!   the tenant's keys in its first step and stores them then ([`Run::record`]);
//! - each step is marked started before it runs and recorded before the next begins, so that a
//!   compensation undoes every recorded step and the one started but not recorded;
//! - whoever works on it holds its lease (`leaseOwner`, a random id drawn once per process, and
//!   `leaseUntil`), renewed by every write; a write that finds the lease gone stops the work
//!   ([`SagaError::LeaseLost`]), and a caller or the sweeper takes an expired lease at once.
//!
//! What the steps are, how each is undone, and what ends a saga is the owning context's; this
//! module keeps the documents, the leases, idempotency and the sweep loop ([`sweep`]).

use crate::db::{merge_operator, Db, DbError, GlobalCollection, GlobalFind, GlobalStore, SystemContext};
use crate::ids::{InvalidValue, TenantId};
use futures_util::future::BoxFuture;
use mongodb::bson::{doc, Bson, DateTime, Document};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use std::time::Duration;

/// How long a lease lasts without renewal. Every step renews it; a step is one call to the
/// database, KMS or Cognito, each bounded well below this by its client's timeouts.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How many times a saga is taken (by callers and the sweeper together) before it is
/// compensated instead of resumed.
pub const MAX_ATTEMPTS: i32 = 5;
/// How old a saga may grow before it is compensated instead of resumed.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long a finished saga (and so its idempotency key) is kept: FerretDB has no TTL index,
/// so the sweeper deletes them.
pub const KEEP_FINISHED: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long the sweeper waits after a lease expired before it acts, deployed (the serving local
/// API uses its own, shorter wait).
pub const SWEEP_AFTER: Duration = Duration::from_secs(15 * 60);
/// How old a leftover of a never-registered tenant (a key set, a domain or e-mail claim) must be
/// before the sweeper removes it when no open saga explains it.
pub const ORPHAN_AGE: Duration = Duration::from_secs(3600);
/// The request header of an idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// This process's lease owner id: random, drawn once, so that two execution environments (or a
/// process and its restart) never take each other's lease for their own.
static PROCESS_OWNER: LazyLock<String> = LazyLock::new(|| {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
    format!("p_{}", data_encoding::HEXLOWER.encode(&bytes))
});

/// This process's lease owner id, which the jobs' leases use too.
pub fn process_owner() -> String {
    PROCESS_OWNER.clone()
}

/// A client's idempotency key: 8 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key, or why it is not one.
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let ok = (8..=255).contains(&value.len()) && value.bytes().all(|b| (0x20..=0x7e).contains(&b));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidValue("Idempotency-Key must be 8 to 255 printable ASCII characters".into()))
        }
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whom an idempotency key belongs to: the same key from another caller is another key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A person: their tenant (none for a platform superadmin) and their `sub`.
    Person { tenant: Option<TenantId>, sub: String },
    /// An API key, by its id.
    ApiKey(String),
    /// An anonymous caller by its source address (self-service sign-up).
    Source(String),
}

impl Caller {
    /// The caller as one string, the input of the saga id's digest.
    fn tag(&self) -> String {
        match self {
            Caller::Person { tenant: Some(t), sub } => format!("tenant:{t}:{sub}"),
            Caller::Person { tenant: None, sub } => format!("platform:{sub}"),
            Caller::ApiKey(id) => format!("apikey:{id}"),
            Caller::Source(ip) => format!("ip:{ip}"),
        }
    }
}

/// What a saga does; its context decides its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SagaKind {
    Onboarding,
    Invitation,
    /// A self-service sign-up: an onboarding queued by an anonymous caller, run by the sweeper.
    Signup,
    /// A person's erasure: rolled forward to its end, never undone (docs/ARCHITECTURE.md §22).
    Erasure,
    /// An offboarded tenant's purge: rolled forward to its end, never undone (§22).
    Purge,
}

impl SagaKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SagaKind::Onboarding => "onboarding",
            SagaKind::Invitation => "invitation",
            SagaKind::Signup => "signup",
            SagaKind::Erasure => "erasure",
            SagaKind::Purge => "purge",
        }
    }
}

/// Where a saga stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SagaState {
    /// Accepted, its personal data sealed, waiting for the sweeper to run it (a sign-up).
    Queued,
    /// Being worked on, or waiting for a caller's retry or the sweeper.
    Running,
    /// Done: its result stands.
    Completed,
    /// Undone: nothing it made remains. A `retryable` failure starts over on a replay.
    Failed,
}

impl SagaState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::Queued => "queued",
            SagaState::Running => "running",
            SagaState::Completed => "completed",
            SagaState::Failed => "failed",
        }
    }
}

/// Why a saga failed, as a replay answers it: a code, a message with no personal data, the
/// HTTP status, and whether trying again may succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub status: u16,
    pub retryable: bool,
}

/// One saga document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saga {
    #[serde(rename = "_id")]
    pub id: String,
    pub kind: SagaKind,
    /// The tenant it acts on (a new tenant's id, fixed up front, for an onboarding).
    pub tenant_id: TenantId,
    /// The keyed digest of the request's body, when it came with an idempotency key.
    #[serde(default)]
    pub request_hash: Option<String>,
    pub state: SagaState,
    /// The steps recorded, in order.
    #[serde(default)]
    pub steps: Vec<String>,
    /// The step started and not yet recorded.
    #[serde(default)]
    pub current: Option<String>,
    pub attempts: i32,
    #[serde(default)]
    pub lease_owner: Option<String>,
    pub lease_until: DateTime,
    /// Set when a compensation could not finish: the next taker finishes it first.
    #[serde(default)]
    pub compensating: bool,
    /// The failure that started an unfinished compensation: what the saga ends with once the
    /// compensation is done (a retryable one lets a caller's retry start over instead).
    #[serde(default)]
    pub pending_failure: Option<Failure>,
    /// What the context fixed up front, with no personal data (ids, a domain, a plan).
    #[serde(default)]
    pub params: Document,
    /// The request's personal fields, sealed with the tenant's keys, once its keys exist.
    #[serde(default)]
    pub sealed: Option<Document>,
    /// A tenant-keyed blind index that finds an open saga again (an invitation's e-mail).
    #[serde(default)]
    pub lookup: Option<String>,
    #[serde(default)]
    pub result: Option<Document>,
    #[serde(default)]
    pub error: Option<Failure>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    #[serde(default)]
    pub finished_at: Option<DateTime>,
}

impl Saga {
    /// Whether `step` was recorded.
    pub fn did(&self, step: &str) -> bool {
        self.steps.iter().any(|s| s == step)
    }

    /// Whether `step` was recorded or started: what a compensation must undo.
    pub fn touched(&self, step: &str) -> bool {
        self.did(step) || self.current.as_deref() == Some(step)
    }
}

/// What the data layer of the sagas can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    /// Another process took the lease (this one was too slow, or presumed dead): it stops.
    #[error("the saga's lease was taken by another process")]
    LeaseLost,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A new saga, as a context describes it.
#[derive(Debug, Clone)]
pub struct NewSaga<'a> {
    pub kind: SagaKind,
    pub tenant_id: TenantId,
    /// The caller and its key, if it sent one.
    pub idempotency: Option<(&'a Caller, &'a IdempotencyKey)>,
    /// The request's canonical body (digested only with a key).
    pub request: &'a [u8],
    pub params: Document,
    pub lookup: Option<String>,
    /// An id of the caller's choosing, for a saga with no idempotency key (a fixture that other
    /// fixtures name); random when `None`.
    pub id: Option<String>,
    /// The first step, marked started by the insert itself (one round trip less).
    pub first: Option<&'static str>,
}

/// What [`Sagas::begin`] found.
#[derive(Debug)]
pub enum Begun {
    /// The lease is this call's: a new saga, or one taken over (expired lease, retryable
    /// failure) to resume or, when [`Run::exhausted`], to compensate.
    Run(Box<Run>),
    /// The saga ended: its outcome is the answer (`completed` or a permanent `failed`).
    Finished(Box<Saga>),
    /// Another call holds a live lease: try again after this many seconds.
    InProgress { retry_after: u64 },
    /// The same caller and key came with another body.
    Mismatch,
}

/// The sagas' collection, with this process's lease owner id.
#[derive(Debug, Clone)]
pub struct Sagas {
    db: Db,
    store: GlobalStore<Saga>,
    owner: String,
}

impl Sagas {
    /// The sagas of `db`, leased as this process.
    pub fn new(db: &Db) -> Self {
        Self::with_owner(db, PROCESS_OWNER.clone())
    }

    /// The sagas leased as `owner` (a test's second "process").
    pub fn with_owner(db: &Db, owner: impl Into<String>) -> Self {
        let store = db.global(&SystemContext::new("sagas"), GlobalCollection::Sagas);
        Self { db: db.clone(), store, owner: owner.into() }
    }

    /// This handle's lease owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The database the sagas live in.
    pub fn db(&self) -> &Db {
        &self.db
    }

    fn lease_end(&self) -> DateTime {
        DateTime::from_millis(self.db.clock().now_ms() + LEASE_TTL.as_millis() as i64)
    }

    /// Starts a saga, or finds the one its caller and key made: insert first, read on a
    /// duplicate. Without a key the saga's id is random and it is always new.
    pub async fn begin(&self, new: NewSaga<'_>) -> Result<Begun, SagaError> {
        let (id, request_hash) = match new.idempotency {
            Some((caller, key)) => {
                let (id, hash) = self.keyed(caller, key, new.kind, new.request).await?;
                (id, Some(hash))
            }
            None => match new.id {
                Some(id) => (id, None),
                None => {
                    let mut bytes = [0u8; 24];
                    getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
                    (format!("sg_{}", data_encoding::BASE64URL_NOPAD.encode(&bytes)), None)
                }
            },
        };
        let now = self.db.clock().now();
        let saga = Saga {
            id: id.clone(),
            kind: new.kind,
            tenant_id: new.tenant_id,
            request_hash: request_hash.clone(),
            state: SagaState::Running,
            steps: Vec::new(),
            current: new.first.map(str::to_owned),
            attempts: 1,
            lease_owner: Some(self.owner.clone()),
            lease_until: self.lease_end(),
            compensating: false,
            pending_failure: None,
            params: new.params,
            sealed: None,
            lookup: new.lookup,
            result: None,
            error: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
        };
        for _ in 0..3 {
            let lost = match self.store.insert(&saga).await {
                Ok(()) => return Ok(Begun::Run(Box::new(Run { sagas: self.clone(), saga, last: None }))),
                Err(DbError::Duplicate) => false,
                Err(e) if e.outcome_unknown() => true,
                Err(e) => return Err(e.into()),
            };
            let Some(found) = self.get(&id).await? else { continue };
            // A lost reply: the re-read finds our own insert, exactly as we wrote it.
            if lost && found == saga {
                return Ok(Begun::Run(Box::new(Run { sagas: self.clone(), saga: found, last: None })));
            }
            if found.request_hash != request_hash {
                return Ok(Begun::Mismatch);
            }
            return self.rejoin(found).await;
        }
        Err(SagaError::Db(DbError::Duplicate))
    }

    /// The id of the saga that `caller`'s `key` names, and the keyed digest of its request: each
    /// under the platform key, so that neither can be computed, or read back, without the vault
    /// and KMS.
    pub async fn keyed(&self, caller: &Caller, key: &IdempotencyKey, kind: SagaKind, request: &[u8]) -> Result<(String, String), DbError> {
        let keyring = self.db.keyring()?;
        let tag = caller.tag();
        let id = keyring.platform_digest("saga-id", &[tag.as_bytes(), key.as_str().as_bytes()]).await?;
        let hash = keyring.platform_digest("saga-request", &[kind.as_str().as_bytes(), request]).await?;
        Ok((format!("sg_{id}"), hash))
    }

    /// A replay met `found`: its outcome if it ended, a 409 while its lease is live, or the
    /// lease if it expired (or the saga failed in a way a retry may fix).
    async fn rejoin(&self, found: Saga) -> Result<Begun, SagaError> {
        let now = self.db.clock().now_ms();
        match found.state {
            SagaState::Completed => Ok(Begun::Finished(Box::new(found))),
            SagaState::Failed if !found.error.as_ref().is_some_and(|e| e.retryable) => Ok(Begun::Finished(Box::new(found))),
            _ if found.lease_owner.is_some() && found.lease_until.timestamp_millis() > now => {
                let left = (found.lease_until.timestamp_millis() - now) as u64;
                Ok(Begun::InProgress { retry_after: left.div_ceil(1000).max(1) })
            }
            _ => match self.take(&found).await? {
                Some(run) => Ok(Begun::Run(Box::new(run))),
                // Another caller took it between the read and the take.
                None => Ok(Begun::InProgress { retry_after: LEASE_TTL.as_secs() }),
            },
        }
    }

    /// Takes `seen`'s lease if it is still as seen (the compare-and-set that makes one taker
    /// win): a retryable failure starts over with no steps, a running saga resumes.
    async fn take(&self, seen: &Saga) -> Result<Option<Run>, SagaError> {
        let filter = doc! {
            "_id": &seen.id, "state": seen.state.as_str(), "leaseOwner": seen.lease_owner.clone(),
            "leaseUntil": seen.lease_until, "attempts": seen.attempts,
        };
        let mut set = doc! {"leaseOwner": &self.owner, "leaseUntil": self.lease_end(), "updatedAt": self.db.clock().now()};
        let mut update = doc! {"$inc": {"attempts": 1}};
        match seen.state {
            SagaState::Failed => {
                set.extend(doc! {"state": SagaState::Running.as_str(), "steps": [], "compensating": false});
                update.insert("$unset", doc! {"current": "", "error": "", "finishedAt": "", "sealed": ""});
            }
            SagaState::Queued => {
                set.insert("state", SagaState::Running.as_str());
            }
            SagaState::Running | SagaState::Completed => {}
        }
        update.insert("$set", set);
        let taken = self.store.find_one_and_update(filter, update).await;
        match taken {
            Ok(Some(saga)) => Ok(Some(Run { sagas: self.clone(), saga, last: None })),
            Ok(None) => Ok(None),
            Err(e) if e.outcome_unknown() => match self.get(&seen.id).await? {
                Some(saga) if saga.lease_owner.as_deref() == Some(&self.owner) && saga.attempts == seen.attempts + 1 => {
                    Ok(Some(Run { sagas: self.clone(), saga, last: None }))
                }
                _ => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// One saga by id.
    pub async fn get(&self, id: &str) -> Result<Option<Saga>, DbError> {
        self.store.find_one(doc! {"_id": id}).await
    }

    /// The open saga of `kind` for `tenant` found by `lookup` (an invitation's e-mail index).
    pub async fn open_by_lookup(&self, kind: SagaKind, tenant: &TenantId, lookup: &str) -> Result<Option<Saga>, DbError> {
        self.store
            .find_one(doc! {"kind": kind.as_str(), "tenantId": tenant.as_str(), "lookup": lookup, "state": SagaState::Running.as_str()})
            .await
    }

    /// Takes over `saga` (found open by the caller) as a replay would.
    pub async fn rejoin_open(&self, saga: Saga) -> Result<Begun, SagaError> {
        self.rejoin(saga).await
    }

    /// Whether any open saga acts on `tenant`: its leftovers are still explained.
    pub async fn open_for(&self, tenant: &str) -> Result<bool, DbError> {
        let open = vec![SagaState::Running.as_str(), SagaState::Queued.as_str()];
        Ok(self.store.count(doc! {"tenantId": tenant, "state": {"$in": open}}).await? > 0)
    }

    /// The completed saga of `kind` that acts on `tenant`, if any (a sign-up's, to tell an
    /// unconfirmed sign-up's tenant).
    pub async fn completed_of(&self, kind: SagaKind, tenant: &TenantId) -> Result<Option<Saga>, DbError> {
        self.store.find_one(doc! {"kind": kind.as_str(), "tenantId": tenant.as_str(), "state": SagaState::Completed.as_str()}).await
    }

    /// Completed sagas of `kind` that finished before `before`, oldest first, at most `limit`.
    pub async fn completed_before(&self, kind: SagaKind, before: DateTime, limit: i64) -> Result<Vec<Saga>, DbError> {
        let filter = doc! {"kind": kind.as_str(), "state": SagaState::Completed.as_str(), "finishedAt": {"$lt": before}};
        self.store.find(filter, GlobalFind { sort: Some(doc! {"finishedAt": 1}), limit: Some(limit), projection: None }).await
    }

    /// Whether an invitation saga that made `record` in `tenant` is still open (an erasure waits
    /// for it: the saga still holds the person's blind index, and may act on the record again).
    pub async fn invitation_open_for(&self, tenant: &TenantId, record: mongodb::bson::oid::ObjectId) -> Result<bool, DbError> {
        let open = vec![SagaState::Running.as_str(), SagaState::Queued.as_str()];
        let filter =
            doc! {"kind": SagaKind::Invitation.as_str(), "tenantId": tenant.as_str(), "params.recordId": record, "state": {"$in": open}};
        Ok(self.store.count(filter).await? > 0)
    }

    /// Deletes the finished invitation sagas of one person of `tenant`, found by the e-mail's
    /// blind index (`lookup`) or the record they made (a person's erasure, docs/ARCHITECTURE.md
    /// §22): they would keep the index. How many went.
    pub async fn forget_invitations(&self, tenant: &TenantId, lookup: &str, record: mongodb::bson::oid::ObjectId) -> Result<u64, DbError> {
        let ended = vec![SagaState::Completed.as_str(), SagaState::Failed.as_str()];
        let filter = doc! {
            "kind": SagaKind::Invitation.as_str(), "tenantId": tenant.as_str(), "state": {"$in": ended},
            "$or": [{"lookup": lookup}, {"params.recordId": record}],
        };
        self.store.delete_many(filter).await
    }

    /// Ends a completed saga as `failed` with `failure`, once what it made was removed past its
    /// commit point (an unconfirmed sign-up cancelled or expired). Whether it was still completed.
    pub async fn retire(&self, id: &str, failure: &Failure) -> Result<bool, DbError> {
        let failure = mongodb::bson::to_bson(failure)?;
        let now = self.db.clock().now();
        let update = doc! {"$set": {"state": SagaState::Failed.as_str(), "error": failure, "finishedAt": now, "updatedAt": now}};
        self.store.update_one(doc! {"_id": id, "state": SagaState::Completed.as_str()}, update).await
    }

    /// One open saga the sweep may take: its lease expired more than `older_than` ago, or, with
    /// `any_other_owner`, whatever its lease, as long as it is not this process's. `skip` holds
    /// the ids this sweep touched already.
    async fn eligible(&self, older_than: Duration, any_other_owner: bool, skip: &[String]) -> Result<Option<Saga>, DbError> {
        let now = self.db.clock().now();
        let cutoff = DateTime::from_millis(now.timestamp_millis() - older_than.as_millis() as i64);
        let mut running = vec![doc! {"leaseUntil": {"$lt": cutoff}}];
        if any_other_owner {
            running.push(doc! {"leaseOwner": {"$ne": &self.owner}});
        }
        // A queued saga is due at once, unless a caller holds it (a sign-up being queued).
        let queued = doc! {"state": SagaState::Queued.as_str(), "$or": [{"leaseOwner": Bson::Null}, {"leaseUntil": {"$lt": now}}]};
        let filter = doc! {"_id": {"$nin": skip}, "$or": [{"state": SagaState::Running.as_str(), "$or": running}, queued]};
        let oldest = GlobalFind { sort: Some(doc! {"leaseUntil": 1}), limit: Some(1), projection: None };
        Ok(self.store.find(filter, oldest).await?.pop())
    }

    /// Deletes the sagas that ended more than [`KEEP_FINISHED`] ago (their idempotency keys
    /// expire with them). How many went.
    pub async fn purge_finished(&self) -> Result<u64, DbError> {
        let cutoff = DateTime::from_millis(self.db.clock().now_ms() - KEEP_FINISHED.as_millis() as i64);
        let ended = vec![SagaState::Completed.as_str(), SagaState::Failed.as_str()];
        self.store.delete_many(doc! {"state": {"$in": ended}, "finishedAt": {"$lt": cutoff}}).await
    }
}

/// A saga whose lease this process holds.
#[derive(Debug)]
pub struct Run {
    sagas: Sagas,
    saga: Saga,
    /// The last step, done and not yet recorded: the completion records it.
    last: Option<(&'static str, Document)>,
}

impl Run {
    /// The saga as last written.
    pub fn saga(&self) -> &Saga {
        &self.saga
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.sagas.db
    }

    /// Whether this saga must be compensated rather than resumed: it was taken [`MAX_ATTEMPTS`]
    /// times, or it is older than [`MAX_AGE`].
    pub fn exhausted(&self) -> bool {
        let age = self.sagas.db.clock().now_ms() - self.saga.created_at.timestamp_millis();
        self.saga.attempts > MAX_ATTEMPTS || age > MAX_AGE.as_millis() as i64
    }

    /// What a taker must do first with a saga whose compensation was left unfinished: nothing
    /// (`None`, the saga is not being compensated), or finish the compensation and then either
    /// start over (`Some(true)`: its failure was retryable, the caller has the request, and the
    /// saga is not exhausted) or end `failed` with that failure (`Some(false)`).
    pub fn unfinished_compensation(&self, with_request: bool) -> Option<bool> {
        if !self.saga.compensating {
            return None;
        }
        let retryable = self.saga.pending_failure.as_ref().is_some_and(|f| f.retryable);
        Some(retryable && with_request && !self.exhausted())
    }

    /// Starts the saga over once its compensation is done: no step recorded, `first` started,
    /// nothing sealed (a retry after an outage's 503, by the caller who has the request).
    pub async fn restart(&mut self, first: &str) -> Result<(), SagaError> {
        let update = doc! {
            "$set": {"steps": [], "compensating": false, "current": first},
            "$unset": {"sealed": "", "pendingFailure": "", "lastError": ""},
        };
        self.write(update, |s| !s.compensating && s.steps.is_empty()).await
    }

    /// One write of the saga under its lease, renewing it. `applied` tells, after a lost reply,
    /// whether the re-read saga carries this write.
    async fn write(&mut self, mut update: Document, applied: impl Fn(&Saga) -> bool) -> Result<(), SagaError> {
        let renew = doc! {"leaseUntil": self.sagas.lease_end(), "updatedAt": self.sagas.db.clock().now()};
        merge_operator(&mut update, "$set", renew);
        let owner = self.sagas.owner.clone();
        self.apply(update, |s| s.lease_owner.as_deref() == Some(owner.as_str()) && applied(s)).await
    }

    /// Applies `update` to the saga if this process still holds its lease, keeping the saga as
    /// written. A miss is [`SagaError::LeaseLost`]; a lost reply is settled by reading the saga
    /// again: `applied` tells whether it carries the update.
    async fn apply(&mut self, update: Document, applied: impl Fn(&Saga) -> bool) -> Result<(), SagaError> {
        let filter = doc! {"_id": &self.saga.id, "leaseOwner": &self.sagas.owner};
        match self.sagas.store.find_one_and_update(filter, update).await {
            Ok(Some(saga)) => {
                self.saga = saga;
                Ok(())
            }
            Ok(None) => Err(SagaError::LeaseLost),
            Err(e) if e.outcome_unknown() => match self.sagas.get(&self.saga.id).await? {
                Some(saga) if applied(&saga) => {
                    self.saga = saga;
                    Ok(())
                }
                _ => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Marks `step` started (renewing the lease): from here a compensation undoes it even if it
    /// is never recorded.
    pub async fn start(&mut self, step: &str) -> Result<(), SagaError> {
        self.write(doc! {"$set": {"current": step}}, |s| s.current.as_deref() == Some(step)).await
    }

    /// Records `step` as done, with `set` (e.g. the sealed personal fields), and marks `next`
    /// started in the same write: one round trip between two steps.
    pub async fn record(&mut self, step: &str, mut set: Document, next: Option<&str>) -> Result<(), SagaError> {
        let mut update = doc! {"$push": {"steps": step}};
        match next {
            Some(next) => {
                set.insert("current", next);
            }
            None => {
                update.insert("$unset", doc! {"current": ""});
            }
        }
        if !set.is_empty() {
            update.insert("$set", set);
        }
        self.write(update, |s| s.did(step)).await
    }

    /// Marks the saga as being compensated: if this process dies now, the sweeper undoes it
    /// instead of finishing it.
    pub async fn compensating(&mut self) -> Result<(), SagaError> {
        self.write(doc! {"$set": {"compensating": true}}, |s| s.compensating).await
    }

    /// Ends the saga with its result (past the commit point nothing fails), recording its last
    /// step in the same write.
    pub async fn complete(mut self, result: Document) -> Result<Saga, SagaError> {
        let now = self.sagas.db.clock().now();
        let update = doc! {
            "$set": {"state": SagaState::Completed.as_str(), "result": result, "finishedAt": now},
            "$unset": {"current": "", "sealed": ""},
        };
        self.end(update, SagaState::Completed).await?;
        Ok(self.saga)
    }

    /// Ends the saga, compensated, with why. A `retryable` failure lets a replay start over;
    /// either way the sealed personal fields go (their keys may be gone too).
    pub async fn fail(mut self, failure: Failure) -> Result<Saga, SagaError> {
        let now = self.sagas.db.clock().now();
        let failure = mongodb::bson::to_bson(&failure).map_err(DbError::from)?;
        let update = doc! {
            "$set": {"state": SagaState::Failed.as_str(), "error": failure, "finishedAt": now, "compensating": false},
            "$unset": {"current": "", "sealed": "", "pendingFailure": ""},
        };
        self.end(update, SagaState::Failed).await?;
        Ok(self.saga)
    }

    /// The last write under the lease: `update`, the lease given up in the same write.
    async fn end(&mut self, mut update: Document, state: SagaState) -> Result<(), SagaError> {
        let now = self.sagas.db.clock().now();
        let mut set = doc! {"leaseOwner": Bson::Null, "leaseUntil": now, "updatedAt": now};
        // The last step run, not recorded yet ([`run_steps`]): recorded by this same write.
        if let Some((step, also)) = self.last.take() {
            set.extend(also);
            update.insert("$push", doc! {"steps": step});
            merge_operator(&mut update, "$unset", doc! {"current": ""});
        }
        merge_operator(&mut update, "$set", set);
        self.apply(update, |s| s.state == state).await
    }

    /// Hands the saga to the sweeper: `queued`, its lease given up (a sign-up, once its
    /// personal data is sealed).
    pub async fn queue(mut self) -> Result<Saga, SagaError> {
        let update = doc! {"$set": {"state": SagaState::Queued.as_str()}};
        self.end(update, SagaState::Queued).await?;
        Ok(self.saga)
    }

    /// Leaves the saga running for the sweeper (its compensation could not finish), with the
    /// lease given up so that the next taker need not wait for it.
    pub async fn leave(mut self, why: &str, failure: Option<&Failure>) {
        let mut set = doc! {"compensating": true, "lastError": why};
        if let Some(failure) = failure.and_then(|f| mongodb::bson::to_bson(f).ok()) {
            set.insert("pendingFailure", failure);
        }
        let update = doc! {"$set": set};
        if let Err(error) = self.write(update, |s| s.compensating).await {
            tracing::error!(sagaId = %self.saga.id, %error, "could not mark a saga for the sweeper; its lease expires on its own");
        }
        self.release().await;
    }

    /// Leaves a saga that only rolls forward (an erasure) running for the next taker, which
    /// resumes it from its last recorded step: nothing is undone, and the lease is given up.
    pub async fn pause(mut self, why: &str) {
        if let Err(error) = self.write(doc! {"$set": {"lastError": why}}, |_| true).await {
            tracing::error!(sagaId = %self.saga.id, %error, "could not note why a saga paused; its lease expires on its own");
        }
        self.release().await;
    }

    /// Gives the lease up (best effort: it expires anyway).
    async fn release(&mut self) {
        let now = self.sagas.db.clock().now();
        let filter = doc! {"_id": &self.saga.id, "leaseOwner": &self.sagas.owner};
        let update = doc! {"$set": {"leaseOwner": Bson::Null, "leaseUntil": now}};
        match self.sagas.store.find_one_and_update(filter, update).await {
            Ok(Some(saga)) => self.saga = saga,
            Ok(None) => {}
            Err(error) => tracing::warn!(sagaId = %self.saga.id, %error, "could not release a saga's lease; it expires on its own"),
        }
    }
}

/// A fault a test injects at a saga's step: fail it before it acts, lose its reply after it
/// acted, or stop the saga there as a crash would (the step never returns, and the test drops
/// the saga's future), before the step acts or after it acted and before it is recorded.
/// Deployed code passes [`NoFaults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Fail,
    LoseReply,
    Crash,
    CrashAfter,
}

/// Before or after a step acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Before,
    After,
}

/// Where a test steps into a saga, by step name: to inject a [`Fault`], or to act at an exact
/// interleaving (run a competing request, a recount) and let the step go on.
pub trait StepFaults: Send + Sync + std::fmt::Debug {
    /// What to do at `step`, `when`: a fault, or `None` to go on.
    fn at<'a>(&'a self, step: &'static str, when: When) -> BoxFuture<'a, Option<Fault>>;
}

/// No faults: what every deployed function uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFaults;

impl StepFaults for NoFaults {
    fn at<'a>(&'a self, _step: &'static str, _when: When) -> BoxFuture<'a, Option<Fault>> {
        Box::pin(async { None })
    }
}

/// An injected failure, as transient as an outage: the context answers it with a 503.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a fault injected at step {step} (reply lost: {lost})")]
pub struct Injected {
    pub step: &'static str,
    pub lost: bool,
}

/// Before `step` acts: a `Fail` fails it, a `Crash` never returns.
pub async fn before_step(faults: &dyn StepFaults, step: &'static str) -> Result<(), Injected> {
    match faults.at(step, When::Before).await {
        Some(Fault::Fail) => Err(Injected { step, lost: false }),
        Some(Fault::Crash) => std::future::pending().await,
        _ => Ok(()),
    }
}

/// After `step` acted: a `LoseReply` reports a failure all the same.
pub async fn after_step(faults: &dyn StepFaults, step: &'static str) -> Result<(), Injected> {
    match faults.at(step, When::After).await {
        Some(Fault::LoseReply) => Err(Injected { step, lost: true }),
        Some(Fault::CrashAfter) => std::future::pending().await,
        _ => Ok(()),
    }
}

/// A saga's steps, as its context defines them.
pub trait Steps: Sync {
    type Error: From<SagaError> + From<Injected> + Send;
    /// The steps, in order.
    fn order(&self) -> &'static [&'static str];
    /// What `step` does, acting on the saga's fixed ids so that a redo finds its own earlier
    /// work; what it returns is stored on the saga with the step's record.
    fn act<'a>(&'a self, run: &'a Run, step: &'static str) -> BoxFuture<'a, Result<Document, Self::Error>>;
}

/// Runs the steps `run` has not recorded, in order. Each is marked started before it acts (in
/// the write that records the one before), passes the fault seam before and after it acts, and
/// is recorded before the next begins.
pub async fn run_steps<S: Steps>(steps: &S, run: &mut Run, faults: &dyn StepFaults) -> Result<(), S::Error> {
    let order = steps.order();
    let mut started = false;
    for (i, &name) in order.iter().enumerate() {
        if run.saga().did(name) {
            continue;
        }
        if !started && run.saga().current.as_deref() != Some(name) {
            run.start(name).await?;
        }
        started = true;
        before_step(faults, name).await?;
        let set = steps.act(run, name).await?;
        after_step(faults, name).await?;
        match order.get(i + 1) {
            Some(&next) => run.record(name, set, Some(next)).await?,
            // The last step is recorded by the completion's write ([`Run::complete`]).
            None => run.last = Some((name, set)),
        }
    }
    Ok(())
}

/// How a sweep chooses.
#[derive(Debug, Clone, Copy)]
pub struct SweepOptions {
    /// Act on sagas whose lease expired more than this long ago.
    pub older_than: Duration,
    /// Also take the live leases of every owner other than this process (`--older-than 0`
    /// locally, where the serving process is the only one alive).
    pub any_other_owner: bool,
    /// At most this many sagas per sweep (a scheduled run's bound).
    pub limit: usize,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Sagas taken.
    pub taken: u64,
    pub completed: u64,
    pub failed: u64,
    /// Sagas taken that are still open (a compensation that could not finish): their ids.
    pub left_running: Vec<String>,
    /// Finished sagas deleted after [`KEEP_FINISHED`].
    pub purged: u64,
    /// Key sets of never-registered tenants deleted.
    pub reaped_key_sets: u64,
    /// Domain and e-mail claims of never-registered tenants released.
    pub reaped_claims: u64,
    /// Self-service sign-ups removed whole, unconfirmed past their temporary password's validity.
    #[serde(default)]
    pub expired_signups: u64,
}

impl SweepReport {
    /// Whether every saga the sweep touched ended `completed` or `failed`.
    pub fn all_ended(&self) -> bool {
        self.left_running.is_empty()
    }
}

/// What finishes or undoes one taken saga: the owning context's, by kind.
pub type Finisher<'a> = &'a (dyn Fn(Run) -> BoxFuture<'a, Result<Saga, SagaError>> + Send + Sync);

/// The sweep loop: takes eligible sagas one at a time, oldest lease first, and hands each to
/// `finish` (which finishes it, keeping its claims, or compensates it, releasing them), until
/// none is left or `options.limit` is reached; then deletes old finished sagas and reaps the
/// leftovers that predate durable sagas ([`reap_orphans`]).
pub async fn sweep(sagas: &Sagas, options: SweepOptions, finish: Finisher<'_>) -> Result<SweepReport, SagaError> {
    let mut report = SweepReport::default();
    let mut touched: Vec<String> = Vec::new();
    while touched.len() < options.limit {
        let Some(seen) = sagas.eligible(options.older_than, options.any_other_owner, &touched).await? else { break };
        touched.push(seen.id.clone());
        let Some(run) = sagas.take(&seen).await? else { continue };
        report.taken += 1;
        let id = run.saga().id.clone();
        match finish(run).await {
            Ok(saga) if saga.state == SagaState::Completed => report.completed += 1,
            Ok(saga) if saga.state == SagaState::Failed => report.failed += 1,
            Ok(_) => report.left_running.push(id),
            Err(error) => {
                tracing::error!(sagaId = %id, %error, "the sweep could not end a saga; the next sweep tries again");
                report.left_running.push(id);
            }
        }
    }
    report.purged = sagas.purge_finished().await?;
    let (keys, claims) = reap_orphans(sagas).await?;
    report.reaped_key_sets = keys;
    report.reaped_claims = claims;
    Ok(report)
}

/// How many leftovers one sweep examines of each kind.
const REAP_BATCH: i64 = 200;

/// Removes what a tenant that was never registered left behind more than [`ORPHAN_AGE`] ago and
/// no open saga explains: key sets (deleted plainly), and domain and e-mail claims (released).
/// Each is checked against a fresh read of the registry first. Returns `(key sets, claims)`.
pub async fn reap_orphans(sagas: &Sagas) -> Result<(u64, u64), DbError> {
    let db = &sagas.db;
    let system = SystemContext::new("saga sweep");
    let registry = db.tenants(&system);
    let cutoff = DateTime::from_millis(db.clock().now_ms() - ORPHAN_AGE.as_millis() as i64);
    let orphan = |tenant: String| {
        let registry = registry.clone();
        async move {
            let Ok(id) = TenantId::parse(tenant.clone()) else { return Ok::<_, DbError>(None) };
            if registry.get(&id).await?.is_some() || sagas.open_for(&tenant).await? {
                return Ok(None);
            }
            Ok(Some(id))
        }
    };
    let (mut keys, mut claims) = (0, 0);
    let keyring = db.keyring()?;
    for tenant in keyring.vault().key_sets_made_before(cutoff, REAP_BATCH).await? {
        if let Some(id) = orphan(tenant.to_string()).await? {
            if keyring.discard_unregistered(&id).await? {
                tracing::warn!(tenantId = %id, "reaped the key set of a tenant that was never registered");
                keys += 1;
            }
        }
    }
    for (hash, tenant) in keyring.vault().email_claims_made_before(cutoff, REAP_BATCH).await? {
        if let Some(id) = orphan(tenant).await? {
            if keyring.vault().release_email(&hash, &id).await? {
                claims += 1;
            }
        }
    }
    for (domain, tenant) in registry.domain_claims_made_before(cutoff, REAP_BATCH).await? {
        if let Some(id) = orphan(tenant).await? {
            if registry.release_domain(&domain, &id).await? {
                tracing::warn!(tenantId = %id, domain, "reaped the domain claim of a tenant that was never registered");
                claims += 1;
            }
        }
    }
    Ok((keys, claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idempotency_key_is_8_to_255_printable_ascii_characters() {
        for good in ["abcdefgh", "2026-12-07 retry #1", &"k".repeat(255), "~!@#$%^&*()_+{}|:\"<>?"] {
            assert!(IdempotencyKey::parse(good).is_ok(), "{good:?}");
        }
        for bad in ["", "short", &"k".repeat(256), "tab\there-ok", "naïve-key-1", "line\nbreak12", "del\u{7f}deldel"] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_caller_tags_keep_callers_apart() {
        let tenant = TenantId::parse("tn_alpha").unwrap();
        let tags = [
            Caller::Person { tenant: Some(tenant.clone()), sub: "s1".into() }.tag(),
            Caller::Person { tenant: None, sub: "s1".into() }.tag(),
            Caller::ApiKey("s1".into()).tag(),
            Caller::Source("s1".into()).tag(),
            Caller::Person { tenant: Some(tenant), sub: "s2".into() }.tag(),
        ];
        for (i, a) in tags.iter().enumerate() {
            for b in &tags[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
