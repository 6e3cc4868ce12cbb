//! A tenant's exports as the API shows them (docs/ARCHITECTURE.md §22): the request that
//! writes the job and wakes the worker, and the status with its manifest and, once completed,
//! download URLs made per read.

use crate::error::TenantsError;
use crate::jobs::export::{file_name, Lines};
use crate::jobs::restore;
use mongodb::bson::doc;
use serde::Serialize;
use shared::db::SystemContext;
use shared::db::{Db, DbError};
use shared::exports::file_key;
use shared::ids::{Email, TenantId};
use shared::jobs::{Job, JobFile, JobKind, Jobs, ShownState};
use shared::models::Tenant;
use shared::plans::Plan;

/// A new export job of `tenant` for `requested_by`, once it may be exported: not shredded, not
/// purged or being purged (the purge deletes its exports' files once), and no other export of
/// it unfinished (one at a time: each is a whole copy of its personal data). Not written yet:
/// the caller audits the request first, then [`start`]s it.
pub async fn prepare(db: &Db, tenant: &Tenant, requested_by: String) -> Result<Job, TenantsError> {
    if tenant.keys_shredded_at.is_some() {
        return Err(TenantsError::Shredded(tenant.tenant_id.clone()));
    }
    if tenant.status == shared::models::TenantStatus::Inactive {
        return Err(TenantsError::Ending(tenant.tenant_id.clone(), "inactive"));
    }
    if tenant.offboarding.as_ref().is_some_and(|o| o.purge_started_at.is_some()) {
        return Err(TenantsError::Ending(tenant.tenant_id.clone(), "being purged"));
    }
    if let Some(running) = Jobs::new(db).unfinished_export(&tenant.tenant_id).await? {
        return Err(TenantsError::ExportUnderWay(running.id));
    }
    db.exports().map_err(DbError::from)?;
    Ok(Job::new(JobKind::Export, tenant.tenant_id.clone(), requested_by, Default::default(), db.clock().now()))
}

/// Writes `job` and wakes the worker. The job is the truth: a wake-up that fails is logged, and
/// the sweep queues the job again later, so the answer is the same 202 (the job only starts
/// later).
pub async fn start(db: &Db, job: &Job) -> Result<(), TenantsError> {
    Jobs::new(db).create(job).await?;
    if let Err(e) = db.exports().map_err(DbError::from)?.enqueue(&job.id).await {
        tracing::warn!(jobId = %job.id, error = %e, "the job's wake-up was not sent; the jobs sweep queues it again");
    }
    Ok(())
}

/// An export file that is gone (expired, or deleted by an erasure) is the export's state, not a
/// fault.
fn expired_if_gone(export_id: &str) -> impl Fn(TenantsError) -> TenantsError + '_ {
    move |e| match e {
        TenantsError::Db(DbError::Files(shared::jobs::ExportError::Gone)) => TenantsError::NotRestorable(export_id.to_owned(), "expired"),
        other => other,
    }
}

/// People whose addresses one vault read checks.
const HOLDERS_PER_READ: usize = 500;

/// Starts the restore of the export `export_id` of `source` into a new tenant, once everything
/// that would stop it half way is checked: the export completed with its files, its domain and
/// each of its e-mail addresses held by no tenant (read from its files, a line at a time, the
/// holders a batch at a time). The job, not written yet (the caller audits first, then
/// [`start`]s it), and the new tenant's audit retention (its plan's, from the export).
pub async fn request_restore(db: &Db, source: &TenantId, export_id: &str, requested_by: String) -> Result<(Job, i64), TenantsError> {
    let jobs = Jobs::new(db);
    let export = jobs.of_tenant(source, export_id).await?.filter(|j| j.kind == JobKind::Export);
    let export = export.ok_or_else(|| TenantsError::ExportNotFound(export_id.to_owned()))?;
    match export.shown_state(db.clock().now()) {
        ShownState::Completed => {}
        other => return Err(TenantsError::NotRestorable(export_id.to_owned(), other.as_str())),
    }
    let mut tenant = Lines::open(db, source, export_id, &file_name("tenant")).await.map_err(expired_if_gone(export_id))?;
    let record = tenant.next().await?.ok_or_else(|| TenantsError::Export("the export's tenant file is empty".into()))?;
    let settings = record.get_document("settings").ok();
    let plan = settings.and_then(|s| s.get_document("billing").ok()).and_then(|b| b.get("plan").cloned());
    let plan: Plan = plan
        .and_then(|p| mongodb::bson::from_bson(p).ok())
        .ok_or_else(|| TenantsError::Export("the export's tenant has no plan".into()))?;
    let retention_days = plan.retention_days(settings.and_then(|s| s.get_i64("auditRetentionDays").ok()));
    // What the exported tenant still holds moves to the new one only if it is ending and has
    // not begun its purge (which deletes the export's files) or handed its people to another
    // restore; anyone else's holding is a 409.
    let registry = db.tenants(&SystemContext::new("restore"));
    let yielding = match registry.get(source).await? {
        Some(t) => match &t.offboarding {
            Some(o) if t.status == shared::models::TenantStatus::Offboarding => {
                // Another restore took its people over, unless that one failed and was undone.
                let restored = match &o.restored_into {
                    Some(into) => registry.get(into).await?.is_some(),
                    None => false,
                };
                if o.purge_started_at.is_some() || restored {
                    return Err(TenantsError::NotRestorable(export_id.to_owned(), "of a tenant whose purge or restore has begun"));
                }
                true
            }
            _ => false,
        },
        None => false,
    };
    let free = |holder: Option<TenantId>| holder.is_none() || (yielding && holder.as_ref() == Some(source));
    if let Ok(domain) = record.get_str("domain") {
        if !free(registry.domain_holder(domain).await?) {
            return Err(TenantsError::DomainTaken(domain.to_owned()));
        }
    }
    let keyring = db.keyring()?;
    let mut users = Lines::open(db, source, export_id, &file_name("users")).await.map_err(expired_if_gone(export_id))?;
    let mut batch: Vec<Email> = Vec::with_capacity(HOLDERS_PER_READ);
    loop {
        let next = users.next().await?;
        if let Some(user) = &next {
            let email = user.get_str("email").ok().and_then(|e| Email::stored(e.to_owned()).ok());
            batch.push(email.ok_or_else(|| TenantsError::Export("a user of the export has no e-mail".into()))?);
        }
        if batch.len() == HOLDERS_PER_READ || (next.is_none() && !batch.is_empty()) {
            let holders = keyring.email_holders(&batch).await.map_err(DbError::from)?;
            if !holders.into_iter().all(|h| free(Some(h))) {
                return Err(TenantsError::EmailTaken);
            }
            batch.clear();
        }
        if next.is_none() {
            break;
        }
    }
    let target = TenantId::generate();
    let params = restore::Params { export_id: export_id.to_owned(), target_tenant_id: target };
    let job = Job::new(
        JobKind::Restore,
        source.clone(),
        requested_by,
        mongodb::bson::to_document(&params).map_err(DbError::from)?,
        db.clock().now(),
    );
    Ok((job, retention_days))
}

/// Opts the tenant in to (or out of) the nightly export, within its plan: opting in needs a
/// plan with nightly exports; opting out is always allowed. An ending or shredded tenant no
/// longer changes. Its setting as stored.
pub async fn set_nightly(db: &Db, tenant: &Tenant, nightly: bool) -> Result<bool, TenantsError> {
    let plan = tenant.settings.billing.plan;
    if nightly && !plan.limits().nightly_exports {
        return Err(TenantsError::NightlyNotInPlan(plan));
    }
    let registry = db.tenants(&SystemContext::new("export settings"));
    let updated = registry.update_where(&tenant.tenant_id, shared::db::changeable(), doc! {"settings.nightlyExport": nightly}, &[]).await?;
    let updated = updated.ok_or_else(|| TenantsError::Ending(tenant.tenant_id.clone(), "ending or shredded"))?;
    Ok(updated.settings.nightly_export)
}

/// The export `id` of the tenant, as its reader sees it: URLs only once completed.
pub async fn status(db: &Db, tenant: &Tenant, id: &str) -> Result<ExportView, TenantsError> {
    let job = Jobs::new(db).of_tenant(&tenant.tenant_id, id).await?.filter(|j| j.kind == JobKind::Export);
    let job = job.ok_or_else(|| TenantsError::ExportNotFound(id.to_owned()))?;
    let state = job.shown_state(db.clock().now());
    let mut files = Vec::new();
    if state == ShownState::Completed {
        let exports = db.exports().map_err(DbError::from)?;
        for file in &job.files {
            let url = exports.download_url(&file_key(&tenant.tenant_id, &job.id, &file.name)).await.map_err(DbError::from)?;
            files.push(FileUrl { name: file.name.clone(), url });
        }
    }
    Ok(ExportView {
        export_id: job.id.clone(),
        status: state.as_str(),
        manifest: Manifest { files: job.files.iter().map(ManifestFile::from).collect() },
        files,
        created_at: job.created_at.try_to_rfc3339_string().unwrap_or_default(),
        completed_at: job.completed_at.and_then(|t| t.try_to_rfc3339_string().ok()),
        expires_at: job.files_expire_at.and_then(|t| t.try_to_rfc3339_string().ok()),
        error: job.error.map(|e| ErrorView { code: e.code, message: e.message }),
    })
}

/// `GET /tenants/{tenantId}/exports/{exportId}`'s data.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportView {
    pub export_id: String,
    pub status: &'static str,
    pub manifest: Manifest,
    pub files: Vec<FileUrl>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorView>,
}

#[derive(Debug, Serialize)]
pub struct Manifest {
    pub files: Vec<ManifestFile>,
}

/// A written file: its name, documents and the SHA-256 of its stored bytes.
#[derive(Debug, Serialize)]
pub struct ManifestFile {
    pub name: String,
    pub count: i64,
    pub sha256: String,
}

impl From<&JobFile> for ManifestFile {
    fn from(f: &JobFile) -> Self {
        ManifestFile { name: f.name.clone(), count: f.count, sha256: f.sha256.clone() }
    }
}

/// A download URL: pre-signed for at most 15 minutes, made for this answer only.
#[derive(Debug, Serialize)]
pub struct FileUrl {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Serialize)]
pub struct ErrorView {
    pub code: String,
    pub message: String,
}
