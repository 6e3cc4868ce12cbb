//! Thin handlers: parse, authorize, call the service, shape the response, audit.

use crate::input::{BillingBody, CustomizationBody, SuspendBody, UpdateTenantBody};
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
