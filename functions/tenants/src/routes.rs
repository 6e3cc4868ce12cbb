//! Thin handlers: parse, authorize, call the service, shape the response, audit.

use crate::input::{BillingBody, CustomizationBody, ExportSettingsBody, RestoreBody, SuspendBody, UpdateTenantBody};
use crate::service;
use crate::view::{TenantView, UsageHistoryView};
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use mongodb::bson::doc;
use shared::audit::Action;
use shared::db::{Db, TenantQuery, MAX_SEARCH_LEN};
use shared::error::ApiError;
use shared::http::{
    admit, admit_over_quota, admit_superadmin, json_body, optional_json_body, path_id, respond_list, respond_one, Pagination, Query,
    RequestMeta,
};
use shared::ids::TenantId;
use shared::models::{Tenant, TenantStatus};
use shared::seam::NoSeam;
use shared::{SuperadminContext, TenantContext};

type Reply = Result<Response<Body>, ApiError>;

fn tenant_param(req: &Request) -> Result<TenantId, ApiError> {
    path_id(req, "tenantId")
}

/// The caller, a superadmin, acting on the tenant the path names.
fn superadmin_on(req: &Request) -> Result<(SuperadminContext, TenantId), ApiError> {
    let tenant_id = tenant_param(req)?;
    Ok((admit_superadmin(req, Some(&tenant_id))?, tenant_id))
}

/// One tenant as the API shows it: its billing e-mail opened, or shown as unavailable.
async fn one(db: &Db, status: StatusCode, tenant: &Tenant) -> Reply {
    respond_one(status, &service::view(db, tenant).await?)
}

/// `GET /tenants` (superadmin).
pub async fn list(db: &Db, req: &Request) -> Reply {
    let admin = admit_superadmin(req, None)?;
    let query = Query::from_request(req, &["page", "limit", "status", "search"])?;
    let (page, limit) = query.paging()?;
    let status = query
        .get("status")
        .map(|s| serde_json::from_value::<TenantStatus>(serde_json::Value::String(s.to_owned())))
        .transpose()
        .map_err(|_| ApiError::invalid("status", "must be one of active, suspended, inactive"))?;
    let search = query.get("search").map(str::to_owned);
    if search.as_ref().is_some_and(|s| s.chars().count() > MAX_SEARCH_LEN || s.chars().any(char::is_control)) {
        return Err(ApiError::invalid("search", format!("must be at most {MAX_SEARCH_LEN} characters, none of them control characters")));
    }
    let found = service::list(db, &admin, &TenantQuery { status, search, page, limit }).await?;
    // A page opens no personal data: no key read, no KMS call, and a shredded tenant lists.
    let tenants: Vec<TenantView> = found.tenants.iter().map(TenantView::listed).collect();
    respond_list("tenants", &tenants, &Pagination::new(page, limit, found.total))
}

/// `GET /tenants/{tenantId}` (superadmin, or a member of that tenant).
pub async fn get(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit_reader(db, req, meta, false).await?;
    one(db, StatusCode::OK, ctx.tenant()).await
}

/// Admits the caller to the path's tenant: any member (an active user of that tenant) may read
/// its own tenant, no role needed (the brief's rule). A superadmin acting for a tenant is
/// audited there, reads included (docs/ARCHITECTURE.md §4), unless the tenant is offboarding
/// or inactive (§22).
async fn admit_reader(db: &Db, req: &Request, meta: &RequestMeta, over_quota: bool) -> Result<TenantContext, ApiError> {
    let tenant_id = tenant_param(req)?;
    let ctx = if over_quota { admit_over_quota(db, req, Some(&tenant_id)).await? } else { admit(db, req, Some(&tenant_id)).await? };
    // An ending tenant's log takes nothing more: its offboarding was its last entry (§22).
    if ctx.is_superadmin() && !ctx.tenant().status.is_ending() {
        let details = doc! {"route": shared::http::route_key(req)};
        ctx.audit(db, meta, Action::TenantAccessed, ctx.tenant_id().to_string(), details).await;
    }
    Ok(ctx)
}

/// `PATCH /tenants/{tenantId}` (superadmin): name and domain only.
pub async fn update(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let (admin, tenant_id) = superadmin_on(req)?;
    let changes = json_body::<UpdateTenantBody>(req)?.validate()?;
    let tenant = service::update(db, &admin, &tenant_id, &changes, &NoSeam).await?;
    let details = doc! {"name": changes.name.as_deref(), "domain": changes.domain.as_ref().map(|d| d.as_str())};
    admin.audit(db, &tenant, meta, Action::TenantUpdated, details).await;
    one(db, StatusCode::OK, &tenant).await
}

/// `POST /tenants/{tenantId}/suspend` (superadmin).
pub async fn suspend(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let (admin, tenant_id) = superadmin_on(req)?;
    let reason = optional_json_body::<SuspendBody>(req)?.validate()?;
    let tenant = service::suspend(db, &admin, &tenant_id, reason.as_deref()).await?;
    admin.audit(db, &tenant, meta, Action::TenantSuspended, doc! {"reason": reason}).await;
    one(db, StatusCode::OK, &tenant).await
}

/// `POST /tenants/{tenantId}/reactivate` (superadmin).
pub async fn reactivate(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let (admin, tenant_id) = superadmin_on(req)?;
    let tenant = service::reactivate(db, &admin, &tenant_id).await?;
    admin.audit(db, &tenant, meta, Action::TenantReactivated, doc! {}).await;
    one(db, StatusCode::OK, &tenant).await
}

/// `PATCH /tenants/{tenantId}/settings/customization` (a member with `update:tenant`, or a
/// superadmin).
pub async fn customize(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let tenant_id = tenant_param(req)?;
    let ctx = admit(db, req, Some(&tenant_id)).await?;
    ctx.require("update:tenant")?;
    let changes = json_body::<CustomizationBody>(req)?.validate()?;
    let tenant = service::customize(db, &ctx, &changes).await?;
    let details = doc! {
        "logo": changes.logo.as_deref(), "primaryColor": changes.primary_color.as_deref(),
        "theme": changes.theme.as_deref(),
    };
    ctx.audit(db, meta, Action::TenantCustomizationUpdated, tenant.tenant_id.to_string(), details).await;
    one(db, StatusCode::OK, &tenant).await
}

/// `PATCH /tenants/{tenantId}/settings/billing` (superadmin).
pub async fn billing(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let (admin, tenant_id) = superadmin_on(req)?;
    let changes = json_body::<BillingBody>(req)?.validate()?;
    let tenant = service::change_billing(db, &admin, &tenant_id, &changes).await?;
    let details = doc! {
        "plan": changes.plan.map(|p| p.as_str()), "billingEmailChanged": changes.billing_email.is_some(),
    };
    admin.audit(db, &tenant, meta, Action::TenantBillingUpdated, details).await;
    one(db, StatusCode::OK, &tenant).await
}

/// `GET /tenants/{tenantId}/limits` (superadmin, or a member of that tenant).
pub async fn limits(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit_reader(db, req, meta, true).await?;
    respond_one(StatusCode::OK, &service::limits(db, &ctx).await?)
}

/// `GET /tenants/{tenantId}/usage/history` (superadmin): the tenant's daily data-growth
/// snapshots, newest first, over the last `days` days (1 to 366, default 30). A superadmin's read
/// of a tenant is audited there (docs/ARCHITECTURE.md §4).
pub async fn usage_history(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let (admin, tenant_id) = superadmin_on(req)?;
    let query = Query::from_request(req, &["days"])?;
    let days = query.integer("days", 1, service::MAX_HISTORY_DAYS, service::DEFAULT_HISTORY_DAYS)?;
    let (tenant, snapshots) = service::usage_history(db, &admin, &tenant_id, days).await?;
    let details = doc! {"route": shared::http::route_key(req)};
    admin.audit(db, &tenant, meta, Action::TenantAccessed, details).await;
    respond_one(StatusCode::OK, &UsageHistoryView::new(&tenant_id, &snapshots))
}

/// Admits the caller to the path's tenant's exports: a superadmin, or a person of the tenant
/// holding `export:tenant`. An API key is refused whatever its permissions: an export is every
/// personal field of the tenant, and a leaked key must not carry it away.
async fn admit_exporter(db: &Db, req: &Request) -> Result<TenantContext, ApiError> {
    let tenant_id = tenant_param(req)?;
    let ctx = admit(db, req, Some(&tenant_id)).await?;
    ctx.require_person("An API key cannot export a tenant")?;
    if !ctx.is_superadmin() {
        ctx.require("export:tenant")?;
    }
    Ok(ctx)
}

/// Writes the audit entry of an export's request or read, before the answer: an export that
/// could not be audited is not handed out (a 503). An ending tenant's log takes nothing more
/// (§22): its superadmin's acts there are not written.
async fn audit_export(db: &Db, ctx: &TenantContext, meta: &RequestMeta, action: Action, export_id: &str) -> Result<(), ApiError> {
    if ctx.tenant().status.is_ending() {
        // The record of who read an ending tenant's export is the job's own.
        if action == Action::TenantExportRead {
            shared::jobs::Jobs::new(db).note_read(export_id, &ctx.identity().actor_id(), db.clock().now()).await?;
        }
        return Ok(());
    }
    let event = shared::audit::AuditEvent { action, resource_id: Some(ctx.tenant_id().to_string()), details: doc! {"exportId": export_id} };
    Ok(shared::audit::record_as(db, ctx.tenant(), meta, ctx.identity(), event).await?)
}

/// `POST /tenants/{tenantId}/exports` (a superadmin, or a person holding `export:tenant`): no
/// body; 202 with the queued export's id.
pub async fn export(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit_exporter(db, req).await?;
    shared::http::no_body(req)?;
    let job = crate::exports::prepare(db, ctx.tenant(), ctx.identity().actor_id()).await?;
    audit_export(db, &ctx, meta, Action::TenantExportRequested, &job.id).await?;
    crate::exports::start(db, &job).await?;
    respond_one(StatusCode::ACCEPTED, &serde_json::json!({"exportId": job.id, "status": "queued"}))
}

/// `GET /tenants/{tenantId}/exports/{exportId}` (as the POST): the export's status and manifest,
/// and once completed its files' download URLs, pre-signed for this answer (never stored,
/// logged or audited; the read itself is audited).
pub async fn export_status(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit_exporter(db, req).await?;
    let export_id: shared::jobs::JobId = path_id(req, "exportId")?;
    let view = crate::exports::status(db, ctx.tenant(), export_id.as_str()).await?;
    audit_export(db, &ctx, meta, Action::TenantExportRead, export_id.as_str()).await?;
    respond_one(StatusCode::OK, &view)
}

/// `POST /tenants/{tenantId}/restore` (superadmin): `{exportId}`, an export of the path's
/// tenant, loaded into a new tenant by the jobs worker once nothing that would stop it half way
/// stands in its way (a domain or an e-mail address another tenant holds is a 409). 202 with the
/// new tenant's id and the restore's id. The request is audited in the new tenant's log, which
/// its restore then fills.
pub async fn restore(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let (admin, tenant_id) = superadmin_on(req)?;
    let export_id = json_body::<RestoreBody>(req)?.validate()?;
    let (job, days) = crate::exports::request_restore(db, &tenant_id, export_id.as_str(), admin.identity().actor_id()).await?;
    // The request is on record before the job exists: a restore nobody can see asked for does
    // not happen (a 503, nothing started).
    let target = crate::jobs::restore::Params::of(&job)?.target_tenant_id;
    let details = doc! {"restoreId": &job.id, "exportId": export_id.as_str(), "fromTenantId": tenant_id.as_str(), "actingAs": "superadmin"};
    let event = shared::audit::AuditEvent { action: Action::TenantRestoreRequested, resource_id: Some(target.to_string()), details };
    shared::audit::record(db, &target, days, meta, Some(admin.identity().actor_id()), event).await?;
    crate::exports::start(db, &job).await?;
    let data = serde_json::json!({"tenantId": target.as_str(), "restoreId": job.id, "exportId": export_id.as_str(), "status": "queued"});
    respond_one(StatusCode::ACCEPTED, &data)
}

/// `PATCH /tenants/{tenantId}/settings/exports` (as the exports: a superadmin, or a person
/// holding `export:tenant`): `{nightly}`, the tenant's opt-in to a nightly export, within its
/// plan (a 403 names the plan).
pub async fn export_settings(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit_exporter(db, req).await?;
    let body = json_body::<ExportSettingsBody>(req)?;
    let nightly = crate::exports::set_nightly(db, ctx.tenant(), body.nightly).await?;
    ctx.audit(db, meta, Action::TenantExportSettingsUpdated, ctx.tenant_id().to_string(), doc! {"nightly": nightly}).await;
    let plan = ctx.tenant().settings.billing.plan;
    respond_one(
        StatusCode::OK,
        &serde_json::json!({"nightly": nightly, "plan": plan.as_str(), "planAllows": plan.limits().nightly_exports}),
    )
}
