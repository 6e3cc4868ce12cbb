//! The jobs worker of the tenants context (docs/ARCHITECTURE.md §22), the `tenant-jobs`
//! binary: a tenant's exports and restores, woken by the jobs queue.
//!
//! One message names one job. The worker takes the job's lease (a second delivery of the same
//! message finds it held, or the job ended, and does nothing), runs units of it within a
//! bounded budget, recording the cursor after each unit, then gives the lease back and queues
//! the job again, until it is done. A transient fault gives the lease back and fails the
//! invocation, so that SQS delivers the message again after its visibility timeout (and to the
//! dead-letter queue, alarmed, after its last try); a permanent one fails the job.
//!
//! The schedule's sweep queues again every job that nobody has touched for a while: its
//! message was lost (a send that failed after the job was written, or the dead-letter queue).

pub mod export;
pub mod restore;

use crate::error::TenantsError;
use mongodb::bson::DateTime;
use shared::db::{Db, DbError};
use shared::directory::Directory;
use shared::event_kind::{EventFunction, EventKind};
use shared::jobs::{Job, JobFailure, JobFile, JobKind, Jobs, Taken, MAX_IDLE_ATTEMPTS};
use shared::models::TenantStatus;
use shared::pii::PiiError;
use tracing::Instrument;

/// Bytes one invocation uploads at most before it queues the job again: a few parts, well
/// within the worker's timeout and memory, whatever the tenant's size.
pub const INVOCATION_BYTES: usize = 4 * shared::exports::MIN_PART_BYTES;

/// Units one invocation runs at most (a unit of a small collection uploads little).
const INVOCATION_UNITS: usize = 32;

/// How long a job may go untouched before the sweep queues it again: longer than a lease and
/// than a message's visibility timeout, so that a live delivery is never doubled.
pub const STALLED_AFTER_MS: i64 = 40 * 60 * 1000;

/// The worker as the local `invoke` finds it: the jobs queue's messages and its schedule.
pub const FUNCTION: EventFunction =
    EventFunction { logical_id: "TenantJobsFunction", takes: &[EventKind::SqsQueue("JobsQueue"), EventKind::ScheduledEvent] };

/// What a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Nothing to do: the job ended, is gone, or another worker holds it.
    Nothing,
    /// Some of it done; queued again.
    Requeued,
    /// The job ended: completed or failed.
    Ended,
}

/// Handles one message body of the jobs queue: `{"jobId": "…"}`. A malformed body is dropped
/// (logged): no delivery of it could ever succeed.
pub async fn handle_message(db: &Db, directory: &dyn Directory, body: &str) -> Result<Handled, TenantsError> {
    let id = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v.get("jobId").and_then(|j| j.as_str()).map(str::to_owned));
    let Some(id) = id else {
        tracing::error!(bodyLength = body.len(), "a jobs-queue message without a jobId was dropped");
        return Ok(Handled::Nothing);
    };
    run(db, directory, &Jobs::new(db), &id).await
}

/// Takes the job `id` and runs it for one invocation's budget.
pub async fn run(db: &Db, directory: &dyn Directory, jobs: &Jobs, id: &str) -> Result<Handled, TenantsError> {
    let job = match jobs.take(id).await? {
        Taken::Job(job) => *job,
        Taken::Nothing => return Ok(Handled::Nothing),
    };
    let span = tracing::info_span!("job", jobId = %job.id, tenantId = %job.tenant_id, kind = ?job.kind);
    run_taken(db, directory, jobs, job).instrument(span).await
}

async fn run_taken(db: &Db, directory: &dyn Directory, jobs: &Jobs, job: Job) -> Result<Handled, TenantsError> {
    if job.idle_attempts > MAX_IDLE_ATTEMPTS {
        let failure = JobFailure { code: "STALLED".into(), message: format!("no progress in {MAX_IDLE_ATTEMPTS} attempts") };
        return end(db, directory, jobs, &job, failure).await;
    }
    match work(db, directory, jobs, &job).await {
        Ok(handled) => Ok(handled),
        Err(e) => match permanent(&e) {
            Some(failure) => {
                tracing::warn!(code = %failure.code, error = %e, "job failed");
                end(db, directory, jobs, &job, failure).await
            }
            None => {
                // Best effort: an unreleased lease ends by itself before the next delivery.
                let _ = jobs.release(&job).await;
                Err(e)
            }
        },
    }
}

/// Ends a job that failed for good. An export fails; a restore is undone first (its cursor
/// says so from now on, so that every later delivery goes on undoing it until it is gone).
async fn end(db: &Db, directory: &dyn Directory, jobs: &Jobs, job: &Job, failure: JobFailure) -> Result<Handled, TenantsError> {
    if job.kind == JobKind::Restore {
        let mut cursor = restore::Cursor::of(job)?;
        if cursor.discarding.is_none() {
            cursor.discarding = Some(failure);
            if !jobs.record(job, cursor.to_document()?, &[]).await? {
                jobs.let_go(job).await?;
                return Ok(Handled::Nothing);
            }
        }
        return restore_units(db, directory, jobs, job, cursor).await;
    }
    if !jobs.fail(job, &failure).await? {
        jobs.let_go(job).await?;
    }
    Ok(Handled::Ended)
}

/// The failure a job ends with for `e`, or `None` when a later delivery may succeed.
fn permanent(e: &TenantsError) -> Option<JobFailure> {
    let (code, message) = match e {
        TenantsError::Db(db) if db.is_retryable() => return None,
        TenantsError::Directory(shared::directory::DirectoryError::Unavailable(_)) => return None,
        TenantsError::EmailTaken => ("EMAIL_TAKEN", other_tenant_message()),
        TenantsError::DomainTaken(domain) => ("DOMAIN_TAKEN", format!("the domain {domain} belongs to another tenant")),
        TenantsError::Db(DbError::Pii(PiiError::Shredded(_))) => {
            ("KEYS_SHREDDED", "the tenant's personal-data keys were shredded".to_owned())
        }
        TenantsError::NotFound(_) => ("TENANT_GONE", "the tenant no longer exists".to_owned()),
        TenantsError::Ending(_, status) => ("TENANT_ENDED", format!("the tenant is {status}")),
        other => ("JOB_FAILED", other.to_string()),
    };
    Some(JobFailure { code: code.into(), message })
}

fn other_tenant_message() -> String {
    "an e-mail address of the export belongs to another tenant".to_owned()
}

/// Runs units of `job` until it ends or the budget is spent.
async fn work(db: &Db, directory: &dyn Directory, jobs: &Jobs, job: &Job) -> Result<Handled, TenantsError> {
    match job.kind {
        JobKind::Export => export_units(db, jobs, job).await,
        JobKind::Restore => restore_units(db, directory, jobs, job, restore::Cursor::of(job)?).await,
    }
}

async fn export_units(db: &Db, jobs: &Jobs, job: &Job) -> Result<Handled, TenantsError> {
    // A purged tenant has nothing to export (its purge fails its jobs first; this is the check
    // for a message that raced it).
    let record = db.tenants(&shared::db::SystemContext::new("jobs")).get(&job.tenant_id).await?;
    match record {
        None => return Err(TenantsError::NotFound(job.tenant_id.clone())),
        Some(t) if t.status == TenantStatus::Inactive => return Err(TenantsError::Ending(job.tenant_id.clone(), "inactive")),
        // Its purge deletes its exports' files once: nothing is written after it began.
        Some(t) if t.offboarding.as_ref().is_some_and(|o| o.purge_started_at.is_some()) => {
            return Err(TenantsError::Ending(job.tenant_id.clone(), "being purged"));
        }
        Some(_) => {}
    }
    let mut cursor = export::Cursor::of(job)?;
    let mut files: Vec<JobFile> = job.files.clone();
    let (mut spent, mut units) = (0usize, 0usize);
    loop {
        if cursor.done() {
            // The bucket expires an object counting from its creation, rounded to a midnight UTC:
            // shown as expired from the midnight before its files' first upload plus the days,
            // never later than they may be gone.
            let expiry_days = i64::from(db.exports().map_err(DbError::from)?.config().expiry_days);
            let started = job.created_at.timestamp_millis();
            let expire_at = DateTime::from_millis(started - started.rem_euclid(86_400_000) + expiry_days * 86_400_000);
            if !jobs.complete(job, &files, Some(expire_at)).await? {
                jobs.let_go(job).await?;
                return Ok(Handled::Nothing);
            }
            tracing::info!(files = files.len(), "export completed");
            return Ok(Handled::Ended);
        }
        if spent >= INVOCATION_BYTES || units >= INVOCATION_UNITS {
            return requeue(db, jobs, job, cursor.to_document()?, &files).await;
        }
        let unit = export::step(db, job, cursor, files).await?;
        (cursor, files) = (unit.cursor, unit.files);
        spent += unit.bytes;
        units += 1;
        if !jobs.record(job, cursor.to_document()?, &files).await? {
            // The lease was lost (this worker was presumed dead), or the job failed or went
            // (an erasure, a purge): this worker writes no more, and says so.
            jobs.let_go(job).await?;
            return Ok(Handled::Nothing);
        }
    }
}

/// Units of a restore one invocation runs at most (each loads up to a thousand documents, or a
/// hundred people).
const RESTORE_UNITS: usize = 8;

async fn restore_units(
    db: &Db,
    directory: &dyn Directory,
    jobs: &Jobs,
    job: &Job,
    mut cursor: restore::Cursor,
) -> Result<Handled, TenantsError> {
    let mut units = 0usize;
    loop {
        if units >= RESTORE_UNITS {
            return requeue(db, jobs, job, cursor.to_document()?, &[]).await;
        }
        if let Some(failure) = &cursor.discarding {
            // Failed for good: undone whole, a batch of people at a time, before it ends, so
            // that no half tenant remains.
            if restore::discard(db, directory, job).await? {
                if !jobs.fail(job, failure).await? {
                    jobs.let_go(job).await?;
                }
                tracing::warn!(code = %failure.code, "restore failed and was undone");
                return Ok(Handled::Ended);
            }
        } else {
            match restore::step(db, directory, job, cursor.clone()).await {
                Ok(restore::Unit::Done) => {
                    if !jobs.complete(job, &[], None).await? {
                        jobs.let_go(job).await?;
                    }
                    tracing::info!("restore completed");
                    return Ok(Handled::Ended);
                }
                Ok(restore::Unit::More(next)) => cursor = next,
                Err(e) => match permanent(&e) {
                    Some(failure) => cursor.discarding = Some(failure),
                    None => return Err(e),
                },
            }
        }
        units += 1;
        if !jobs.record(job, cursor.to_document()?, &[]).await? {
            jobs.let_go(job).await?;
            return Ok(Handled::Nothing);
        }
    }
}

/// Gives the lease back and queues the job again. A send that fails fails the invocation: the
/// message comes back after its visibility timeout, and the job resumes from its cursor.
async fn requeue(db: &Db, jobs: &Jobs, job: &Job, cursor: mongodb::bson::Document, files: &[JobFile]) -> Result<Handled, TenantsError> {
    if !jobs.advance(job, cursor, files).await? {
        return Ok(Handled::Nothing);
    }
    db.exports().map_err(DbError::from)?.enqueue(&job.id).await.map_err(DbError::from)?;
    Ok(Handled::Requeued)
}

/// The schedule's sweep: queues again every unfinished job nobody has touched for
/// [`STALLED_AFTER_MS`]. How many were queued.
pub async fn requeue_stalled(db: &Db) -> Result<u64, TenantsError> {
    let jobs = Jobs::new(db);
    let before = DateTime::from_millis(db.clock().now_ms() - STALLED_AFTER_MS);
    let exports = db.exports().map_err(DbError::from)?;
    let mut queued = 0;
    for job in jobs.stalled(before, 100).await? {
        exports.enqueue(&job.id).await.map_err(DbError::from)?;
        jobs.touch(&job).await?;
        queued += 1;
    }
    Ok(queued)
}

/// Exports started by one sweep at most: the rest wait for the next sweep, 15 minutes later.
pub const NIGHTLY_PER_SWEEP: u64 = 100;

/// How long after a nightly export the next one may start: a day, less the sweep's period, so
/// that an export started late one night does not slip a night.
const NIGHTLY_EVERY_MS: i64 = 24 * 3_600_000 - 15 * 60_000;

/// The schedule's nightly exports: every tenant that opted in (`settings.nightlyExport`), while
/// its plan allows it, not ending and not shredded, and not exported by the schedule in the last
/// day, gets an export job, queued. Its files expire with the bucket's rule like any export's.
/// How many were started.
pub async fn start_nightly_exports(db: &Db) -> Result<u64, TenantsError> {
    let system = shared::db::SystemContext::new("nightly exports");
    let registry = db.tenants(&system);
    let jobs = Jobs::new(db);
    let opted_in = mongodb::bson::doc! {
        "settings.nightlyExport": true,
        "status": {"$in": [TenantStatus::Active.as_str(), TenantStatus::Suspended.as_str()]},
        shared::db::KEYS_SHREDDED_AT: {"$exists": false},
        // A tenant a restore is still loading (its setting came with the export) waits for it.
        shared::db::RESTORING: {"$exists": false},
    };
    let since = DateTime::from_millis(db.clock().now_ms() - NIGHTLY_EVERY_MS);
    let mut started = 0;
    let mut batches = registry.batches(opted_in, 100);
    while let Some(batch) = batches.next().await? {
        for tenant_id in batch {
            if started >= NIGHTLY_PER_SWEEP {
                return Ok(started);
            }
            let Some(tenant) = registry.get(&tenant_id).await? else { continue };
            if !tenant.settings.billing.plan.limits().nightly_exports
                || jobs.scheduled_export_since(&tenant_id, since).await?
                || jobs.unfinished_export(&tenant_id).await?.is_some()
            {
                continue;
            }
            let job = Job::new(JobKind::Export, tenant_id.clone(), shared::jobs::SCHEDULE, Default::default(), db.clock().now());
            let event = shared::audit::AuditEvent {
                action: shared::audit::Action::TenantExportRequested,
                resource_id: Some(tenant_id.to_string()),
                details: mongodb::bson::doc! {"exportId": &job.id, "nightly": true},
            };
            let meta = shared::http::RequestMeta { request_id: job.id.clone(), ip: String::new(), user_agent: "nightly export".into() };
            let days = tenant.settings.audit_retention_days();
            // Audited first, as a person's request is: the next sweep tries again if not.
            shared::audit::record(db, &tenant_id, days, &meta, Some("system:schedule".into()), event).await?;
            crate::exports::start(db, &job).await?;
            started += 1;
        }
    }
    Ok(started)
}

/// One event of the worker: an SQS event (its one message, batch size 1; more are handled in
/// turn) or the schedule's (the sweep of stalled jobs, and the nightly exports). What was done, for the logs.
pub async fn on_event(db: &Db, directory: &dyn Directory, event: serde_json::Value) -> Result<serde_json::Value, TenantsError> {
    if let Some(records) = event.get("Records").and_then(|r| r.as_array()) {
        let mut handled = Vec::with_capacity(records.len());
        for record in records {
            let body = record.get("body").and_then(|b| b.as_str()).unwrap_or_default();
            handled.push(format!("{:?}", handle_message(db, directory, body).await?));
        }
        return Ok(serde_json::json!({"handled": handled}));
    }
    let queued = requeue_stalled(db).await?;
    let nightly = start_nightly_exports(db).await?;
    Ok(serde_json::json!({"requeued": queued, "nightly": nightly}))
}
