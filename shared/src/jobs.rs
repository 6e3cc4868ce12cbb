//! Long work on a tenant's data as jobs (docs/ARCHITECTURE.md §22): a tenant's export and its
//! restore. The job document in `jobs` is the truth; a message on the jobs queue only wakes the
//! worker. The worker takes the job's lease, does one bounded step, records the step's cursor
//! with a write conditional on its lease, and queues the job again until it is done. SQS may
//! deliver a message twice, and a process may die anywhere: a second delivery finds the lease
//! held and leaves, and a job whose worker died is taken again once its lease has ended, from
//! its last recorded cursor.

use crate::db::{Db, DbError, GlobalCollection, GlobalFind, GlobalStore, SystemContext};
use crate::ids::{InvalidValue, TenantId};
use mongodb::bson::{doc, DateTime, Document};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a worker holds a job: longer than one bounded step (the worker's timeout is 5
/// minutes, and a step aims at well under one), so that a live worker never loses its lease,
/// and short enough that a dead one's job is taken again at its message's next delivery.
pub const LEASE_TTL: Duration = Duration::from_secs(6 * 60);

/// Takes of a job that made no progress before it fails for good: a step that fails every time
/// (a permanent fault the worker could not name) ends, instead of cycling through the queue.
pub const MAX_IDLE_ATTEMPTS: i32 = 5;

/// Who asks for the nightly exports: the schedule.
pub const SCHEDULE: &str = "schedule";

/// Who asked for a job, once that person was erased.
pub const ERASED_REQUESTER: &str = "erased user";

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// A tenant's data, written as files to the export bucket.
    Export,
    /// An export's files, loaded into a new tenant.
    Restore,
}

impl JobKind {
    /// The id prefix of this kind's jobs.
    fn prefix(self) -> &'static str {
        match self {
            JobKind::Export => "ex_",
            JobKind::Restore => "rs_",
        }
    }
}

/// Where a job stands. An export whose files are gone (their expiry, or an erasure that removed
/// them) shows as `expired`, which is not stored: [`Job::shown_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Completed,
    Failed,
}

/// One file a job wrote: its name, how many documents it holds, and the SHA-256 and length of
/// its stored bytes, read back from the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFile {
    pub name: String,
    pub count: i64,
    pub sha256: String,
    pub bytes: i64,
}

/// Why a job failed: a code and a message with no personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFailure {
    pub code: String,
    pub message: String,
}

/// One job document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    #[serde(rename = "_id")]
    pub id: String,
    pub kind: JobKind,
    /// The tenant whose data it reads (an export, and the export a restore loads).
    pub tenant_id: TenantId,
    pub state: JobState,
    /// Who asked for it: a superadmin's or a member's `sub`, or `schedule` for a nightly export.
    pub requested_by: String,
    /// Where the job's next step starts; its kind decides the fields.
    #[serde(default)]
    pub cursor: Document,
    /// What the kind fixed up front (a restore's export and new tenant).
    #[serde(default)]
    pub params: Document,
    /// The files written so far, in order.
    #[serde(default)]
    pub files: Vec<JobFile>,
    #[serde(default)]
    pub lease_owner: Option<String>,
    pub lease_until: DateTime,
    /// Takes since the job last recorded progress ([`MAX_IDLE_ATTEMPTS`]).
    #[serde(default)]
    pub idle_attempts: i32,
    #[serde(default)]
    pub error: Option<JobFailure>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    #[serde(default)]
    pub completed_at: Option<DateTime>,
    /// When its files were deleted before their expiry (an erasure of a person they held).
    #[serde(default)]
    pub files_deleted_at: Option<DateTime>,
    /// When its files expire in the bucket (an export's, set when it completes).
    #[serde(default)]
    pub files_expire_at: Option<DateTime>,
}

/// How a job shows to its reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShownState {
    Queued,
    Running,
    Completed,
    Failed,
    /// Completed, and its files are gone.
    Expired,
}

impl ShownState {
    /// The name the API shows.
    pub fn as_str(self) -> &'static str {
        match self {
            ShownState::Queued => "queued",
            ShownState::Running => "running",
            ShownState::Completed => "completed",
            ShownState::Failed => "failed",
            ShownState::Expired => "expired",
        }
    }
}

impl Job {
    /// A new queued job of `kind` on `tenant`, with a random id (`ex_…`, `rs_…`).
    pub fn new(kind: JobKind, tenant: TenantId, requested_by: impl Into<String>, params: Document, now: DateTime) -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
        Job {
            id: format!("{}{}", kind.prefix(), data_encoding::BASE32_NOPAD.encode(&bytes).to_ascii_lowercase()),
            kind,
            tenant_id: tenant,
            state: JobState::Queued,
            requested_by: requested_by.into(),
            cursor: Document::new(),
            params,
            files: Vec::new(),
            lease_owner: None,
            lease_until: DateTime::from_millis(0),
            idle_attempts: 0,
            error: None,
            created_at: now,
            updated_at: now,
            completed_at: None,
            files_deleted_at: None,
            files_expire_at: None,
        }
    }

    /// The state as the API shows it at `now`: a completed export whose files are gone is
    /// `expired`.
    pub fn shown_state(&self, now: DateTime) -> ShownState {
        match self.state {
            JobState::Queued => ShownState::Queued,
            JobState::Running => ShownState::Running,
            JobState::Failed => ShownState::Failed,
            JobState::Completed if self.files_gone(now) => ShownState::Expired,
            JobState::Completed => ShownState::Completed,
        }
    }

    /// Whether its files were deleted or have expired at `now`.
    pub fn files_gone(&self, now: DateTime) -> bool {
        self.files_deleted_at.is_some() || self.files_expire_at.is_some_and(|at| at <= now)
    }
}

/// An S3 or SQS failure: transient ones may pass on a retry (a 503 with `Retry-After`, or the
/// job's next delivery); the others are an operator's to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("{0} is unavailable: {1}")]
    Unavailable(&'static str, String),
    #[error("{0} refused the request: {1}")]
    Refused(&'static str, String),
    /// A multipart upload is no longer there: completed or aborted. The caller reads the
    /// object back to tell which.
    #[error("the upload is no longer there")]
    UploadGone,
    /// An object is not there (expired by the bucket's rule, or deleted).
    #[error("the export's file is no longer there")]
    Gone,
    /// The function was started without the bucket or the queue.
    #[error("exports are not configured in this function: {0} is not set")]
    NotConfigured(&'static str),
}

impl ExportError {
    /// Whether a retry may help.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ExportError::Unavailable(..))
    }
}

/// A job id as a path names it: the prefix of its kind (`ex_`, `rs_`) and 26 base32 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobId(String);

impl JobId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, InvalidValue> {
        let body = value.strip_prefix(JobKind::Export.prefix()).or_else(|| value.strip_prefix(JobKind::Restore.prefix()));
        match body {
            Some(b) if b.len() == 26 && b.bytes().all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c)) => Ok(JobId(value)),
            _ => Err(InvalidValue("must be a job id: ex_ or rs_ and 26 characters of a-z, 2-7".into())),
        }
    }
}

/// What a take found.
#[derive(Debug)]
pub enum Taken {
    /// The lease is this worker's.
    Job(Box<Job>),
    /// The job ended, is gone, or another worker holds it: nothing to do for this delivery.
    Nothing,
}

/// The jobs' collection, leased as this process.
#[derive(Debug, Clone)]
pub struct Jobs {
    db: Db,
    store: GlobalStore<Job>,
    owner: String,
}

impl Jobs {
    /// The jobs of `db`, leased as this process.
    pub fn new(db: &Db) -> Self {
        Self::with_owner(db, crate::saga::process_owner())
    }

    /// The jobs leased as `owner` (a test's second worker).
    pub fn with_owner(db: &Db, owner: impl Into<String>) -> Self {
        Self { db: db.clone(), store: db.global(&SystemContext::new("jobs"), GlobalCollection::Jobs), owner: owner.into() }
    }

    fn now(&self) -> DateTime {
        self.db.clock().now()
    }

    fn lease_end(&self) -> DateTime {
        DateTime::from_millis(self.db.clock().now_ms() + LEASE_TTL.as_millis() as i64)
    }

    /// Writes a new job.
    pub async fn create(&self, job: &Job) -> Result<(), DbError> {
        self.store.insert(job).await
    }

    /// The job `id` of `tenant`: another tenant's id finds nothing.
    pub async fn of_tenant(&self, tenant: &TenantId, id: &str) -> Result<Option<Job>, DbError> {
        self.store.find_one(doc! {"_id": id, "tenantId": tenant.as_str()}).await
    }

    /// The job `id`, whoever's it is (the worker, from its message).
    pub async fn get(&self, id: &str) -> Result<Option<Job>, DbError> {
        self.store.find_one(doc! {"_id": id}).await
    }

    /// Takes the job's lease if it is unfinished and nobody else holds it. A job that has made
    /// no progress in [`MAX_IDLE_ATTEMPTS`] takes is taken all the same: the caller fails it.
    pub async fn take(&self, id: &str) -> Result<Taken, DbError> {
        let now = self.now();
        let filter = doc! {
            "_id": id,
            "state": {"$in": ["queued", "running"]},
            "$or": [{"leaseOwner": null}, {"leaseUntil": {"$lte": now}}],
        };
        let update = doc! {
            "$set": {"state": "running", "leaseOwner": &self.owner, "leaseUntil": self.lease_end(), "updatedAt": now},
            "$inc": {"idleAttempts": 1},
        };
        Ok(match self.store.find_one_and_update(filter, update).await? {
            Some(job) => Taken::Job(Box::new(job)),
            None => Taken::Nothing,
        })
    }

    /// The filter that matches `job` only while this worker holds its lease.
    fn held(&self, job: &Job) -> Document {
        doc! {"_id": &job.id, "state": "running", "leaseOwner": &self.owner}
    }

    /// Records a unit of progress, keeping the lease: the new cursor and files, and the idle
    /// count started over. `false` when the lease was lost or the job is gone.
    pub async fn record(&self, job: &Job, cursor: Document, files: &[JobFile]) -> Result<bool, DbError> {
        let files = mongodb::bson::to_bson(files)?;
        let update =
            doc! {"$set": {"cursor": cursor, "files": files, "idleAttempts": 0, "leaseUntil": self.lease_end(), "updatedAt": self.now()}};
        self.store.update_one(self.held(job), update).await
    }

    /// Marks a stalled job as touched now, once the sweep has queued it again (a job another
    /// worker took meanwhile is left as it is).
    pub async fn touch(&self, job: &Job) -> Result<bool, DbError> {
        let filter = doc! {"_id": &job.id, "updatedAt": job.updated_at};
        self.store.update_one(filter, doc! {"$set": {"updatedAt": self.now()}}).await
    }

    /// Records a step: the new cursor and files, progress made (the idle count starts over),
    /// and the lease given up so that the next delivery takes it at once. `false` when the
    /// lease was lost (or the job deleted, by a purge): the worker stops.
    pub async fn advance(&self, job: &Job, cursor: Document, files: &[JobFile]) -> Result<bool, DbError> {
        let files = mongodb::bson::to_bson(files)?;
        let update = doc! {
            "$set": {"cursor": cursor, "files": files, "idleAttempts": 0, "leaseOwner": null, "updatedAt": self.now()},
        };
        self.store.update_one(self.held(job), update).await
    }

    /// Gives the lease back without progress (a fault the next delivery may not meet).
    pub async fn release(&self, job: &Job) -> Result<bool, DbError> {
        self.store.update_one(self.held(job), doc! {"$set": {"leaseOwner": null, "updatedAt": self.now()}}).await
    }

    /// Ends the job `completed` with its files, expiring at `files_expire_at` if they do.
    pub async fn complete(&self, job: &Job, files: &[JobFile], files_expire_at: Option<DateTime>) -> Result<bool, DbError> {
        let now = self.now();
        let files = mongodb::bson::to_bson(files)?;
        let update = doc! {"$set": {
            "state": "completed", "files": files, "leaseOwner": null, "cursor": {}, "updatedAt": now, "completedAt": now,
            "filesExpireAt": files_expire_at,
        }};
        self.store.update_one(self.held(job), update).await
    }

    /// Ends the job `failed`.
    pub async fn fail(&self, job: &Job, failure: &JobFailure) -> Result<bool, DbError> {
        let now = self.now();
        let update = doc! {"$set": {
            "state": "failed", "error": mongodb::bson::to_bson(failure)?, "leaseOwner": null, "updatedAt": now, "completedAt": now,
        }};
        self.store.update_one(self.held(job), update).await
    }

    /// Whether the schedule exported `tenant` since `since` (a nightly export runs once a day).
    pub async fn scheduled_export_since(&self, tenant: &TenantId, since: DateTime) -> Result<bool, DbError> {
        let filter = doc! {"tenantId": tenant.as_str(), "kind": "export", "requestedBy": SCHEDULE, "createdAt": {"$gt": since}};
        Ok(self.store.count(filter).await? > 0)
    }

    /// Gives up the lease of a job this worker no longer runs (it failed or went meanwhile),
    /// so that whoever waits for its writes to stop need not wait for the lease to end.
    pub async fn let_go(&self, job: &Job) -> Result<(), DbError> {
        self.store.update_one(doc! {"_id": &job.id, "leaseOwner": &self.owner}, doc! {"$set": {"leaseOwner": null}}).await?;
        Ok(())
    }

    /// Whether a worker may still be writing files of an export of `tenant` whose files are to
    /// be deleted: one holds a live lease on it. (An export begun later is not waited for.)
    pub async fn export_being_written(&self, tenant: &TenantId) -> Result<bool, DbError> {
        let filter = doc! {
            "tenantId": tenant.as_str(), "kind": "export", "filesDeletedAt": {"$ne": null},
            "leaseOwner": {"$ne": null}, "leaseUntil": {"$gt": self.now()},
        };
        Ok(self.store.count(filter).await? > 0)
    }

    /// The unfinished export of `tenant`, if any: a tenant has one at a time.
    pub async fn unfinished_export(&self, tenant: &TenantId) -> Result<Option<Job>, DbError> {
        self.store.find_one(doc! {"tenantId": tenant.as_str(), "kind": "export", "state": {"$in": ["queued", "running"]}}).await
    }

    /// Whether a restore of an export of `tenant` is queued or running: its purge waits for it.
    pub async fn restore_open(&self, tenant: &TenantId) -> Result<bool, DbError> {
        let filter = doc! {"tenantId": tenant.as_str(), "kind": "restore", "state": {"$in": ["queued", "running"]}};
        Ok(self.store.count(filter).await? > 0)
    }

    /// Notes on the job that `actor` read it at `at`: the record of a read of an ending tenant's
    /// export, whose own log takes nothing more (the last 100 reads).
    pub async fn note_read(&self, id: &str, actor: &str, at: DateTime) -> Result<(), DbError> {
        let update = doc! {"$push": {"reads": {"$each": [{"by": actor, "at": at}], "$slice": -100}}};
        self.store.update_one(doc! {"_id": id}, update).await?;
        Ok(())
    }

    /// Forgets who asked for the jobs of `tenant` that `requester` asked for (an erasure of that
    /// person).
    pub async fn forget_requester(&self, tenant: &TenantId, requester: &str) -> Result<u64, DbError> {
        let filter = doc! {"tenantId": tenant.as_str(), "requestedBy": requester};
        let mut forgotten = 0;
        for job in self.store.find(filter, GlobalFind::default()).await? {
            if self.store.update_one(doc! {"_id": &job.id}, doc! {"$set": {"requestedBy": ERASED_REQUESTER}}).await? {
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }

    /// The exports of `tenant` marked as having lost their files whose files were not yet
    /// deleted.
    pub async fn files_to_delete(&self, tenant: &TenantId) -> Result<Vec<Job>, DbError> {
        let filter = doc! {"tenantId": tenant.as_str(), "kind": "export", "filesDeletedAt": {"$ne": null}, "filesPurgedAt": null};
        self.store.find(filter, GlobalFind::default()).await
    }

    /// Records that `job`'s files are deleted.
    pub async fn files_purged(&self, job: &Job) -> Result<(), DbError> {
        self.store.update_one(doc! {"_id": &job.id}, doc! {"$set": {"filesPurgedAt": self.now()}}).await?;
        Ok(())
    }

    /// Deletes every export of `tenant` (its purge, once their files are gone). Its restores
    /// stay: they are about the tenants they made, and one still running must finish or undo.
    pub async fn delete_exports(&self, tenant: &TenantId) -> Result<u64, DbError> {
        self.store.delete_many(doc! {"tenantId": tenant.as_str(), "kind": "export"}).await
    }

    /// Unfinished jobs nobody has touched since `before`: their message was lost (a send that
    /// failed after the job was written) or went to the dead-letter queue. The sweep queues
    /// them again.
    pub async fn stalled(&self, before: DateTime, limit: i64) -> Result<Vec<Job>, DbError> {
        let filter = doc! {
            "state": {"$in": ["queued", "running"]},
            "updatedAt": {"$lt": before},
            "$or": [{"leaseOwner": null}, {"leaseUntil": {"$lte": self.now()}}],
        };
        self.store.find(filter, GlobalFind { sort: Some(doc! {"updatedAt": 1}), limit: Some(limit), projection: None }).await
    }

    /// Marks every export of `tenant` begun up to `at` as having lost its files at `at`
    /// (unfinished ones included: they fail, and their workers stop at their next step).
    pub async fn mark_files_deleted(&self, tenant: &TenantId, at: DateTime) -> Result<u64, DbError> {
        let filter = doc! {"tenantId": tenant.as_str(), "kind": "export", "filesDeletedAt": null, "createdAt": {"$lte": at}};
        let mut marked = 0;
        // One by one through the narrow store (it has no update_many): a tenant has few exports.
        for job in self.store.find(filter, GlobalFind::default()).await? {
            let mut set = doc! {"filesDeletedAt": at, "updatedAt": self.now()};
            if matches!(job.state, JobState::Queued | JobState::Running) {
                set.insert("state", "failed");
                set.insert(
                    "error",
                    doc! {"code": "FILES_DELETED", "message": "the export's files were deleted (an erasure of a person they held, or the tenant's purge) before it finished"},
                );
            }
            if self.store.update_one(doc! {"_id": &job.id, "filesDeletedAt": null}, doc! {"$set": set}).await? {
                marked += 1;
            }
        }
        Ok(marked)
    }
}
