//! Thin handlers: parse, authorize, call the service, shape the response, audit.

use crate::input::{BillingBody, CreateTenantBody, CustomizationBody, SuspendBody, UpdateTenantBody};
use crate::service;
use crate::view::{Pagination, TenantList, TenantView};
use crate::AppState;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use mongodb::bson::{doc, Document};
use shared::audit::{self, AuditEvent};
use shared::db::{TenantQuery, MAX_SEARCH_LEN};
use shared::error::ApiError;
use shared::http::{json_body, optional_json_body, path_param, record_tenant, respond, Query, RequestMeta};
use shared::ids::TenantId;
use shared::models::{Tenant, TenantStatus};
use shared::{Identity, SuperadminContext, TenantContext};

type Reply = Result<Response<Body>, ApiError>;

fn tenant_param(req: &Request) -> Result<TenantId, ApiError> {
    let raw = path_param(req, "tenantId")?;
    let id = TenantId::parse(raw).map_err(|e| ApiError::invalid("tenantId", e.0))?;
    record_tenant(id.as_str());
    Ok(id)
}

/// Writes the audit entry of a mutation that has already happened. A failure here is logged,
/// not returned: the caller's change stands, and a 500 would claim it did not.
async fn audit(state: &AppState, tenant: &Tenant, meta: &RequestMeta, identity: &Identity, action: &'static str, details: Document) {
    let event = AuditEvent { action, resource: "tenant", resource_id: Some(tenant.tenant_id.to_string()), details };
    if let Err(error) = audit::record(&state.db, &tenant.tenant_id, meta, Some(identity.actor_id()), event).await {
        tracing::error!(%error, action, "could not write the audit entry");
    }
}

/// The caller, who must be a superadmin.
fn superadmin(req: &Request) -> Result<SuperadminContext, ApiError> {
    SuperadminContext::require(&Identity::from_request(req)?)
}

fn one(status: StatusCode, tenant: &Tenant) -> Reply {
    respond(status, &TenantView::from(tenant))
}

/// `POST /tenants` (superadmin).
pub async fn create(state: &AppState, req: &Request, meta: &RequestMeta) -> Reply {
    let admin = superadmin(req)?;
    let new = json_body::<CreateTenantBody>(req)?.validate()?;
    let tenant = service::create(&state.db, &admin, &new).await?;
    record_tenant(tenant.tenant_id.as_str());
    let details = doc! {
        "name": &tenant.name, "domain": tenant.domain.as_deref(), "plan": new.plan.as_str(),
        "adminEmail": new.admin_email.as_str(), "actingAs": "superadmin",
    };
    audit(state, &tenant, meta, admin.identity(), "tenant.created", details).await;
    one(StatusCode::CREATED, &tenant)
}

/// `GET /tenants` (superadmin).
pub async fn list(state: &AppState, req: &Request) -> Reply {
    let admin = superadmin(req)?;
    let query = Query::from_request(req, &["page", "limit", "status", "search"])?;
    let page = query.integer("page", 1, 100_000, 1)?;
    let limit = query.integer("limit", 1, 100, 10)?;
    let status = query
        .get("status")
        .map(|s| serde_json::from_value::<TenantStatus>(serde_json::Value::String(s.to_owned())))
        .transpose()
        .map_err(|_| ApiError::invalid("status", "must be one of active, suspended, inactive"))?;
    let search = query.get("search").map(str::to_owned);
    if search.as_ref().is_some_and(|s| s.chars().count() > MAX_SEARCH_LEN || s.chars().any(char::is_control)) {
        return Err(ApiError::invalid("search", format!("must be at most {MAX_SEARCH_LEN} characters, none of them control characters")));
    }
    let found = service::list(&state.db, &admin, &TenantQuery { status, search, page, limit }).await?;
    let body = TenantList {
        tenants: found.tenants.iter().map(TenantView::from).collect(),
        pagination: Pagination { page, limit, total: found.total, pages: found.total.div_ceil(limit) },
    };
    respond(StatusCode::OK, &body)
}

/// `GET /tenants/{tenantId}` (superadmin, or a member of that tenant).
pub async fn get(state: &AppState, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit(state, req, meta).await?;
    one(StatusCode::OK, ctx.tenant())
}

/// Admits the caller to the path's tenant: any member may read its own tenant (the brief's
/// rule; no role needed). A superadmin acting for a tenant is audited there, reads included
/// (DESIGN.md §4).
async fn admit(state: &AppState, req: &Request, meta: &RequestMeta) -> Result<TenantContext, ApiError> {
    let tenant_id = tenant_param(req)?;
    let ctx = TenantContext::resolve(&state.db, &Identity::from_request(req)?, Some(&tenant_id)).await?;
    if ctx.is_superadmin() {
        let details = doc! {"route": shared::http::route_key(req), "actingAs": "superadmin"};
        audit(state, ctx.tenant(), meta, ctx.identity(), "tenant.accessed", details).await;
    }
    Ok(ctx)
}

/// `PATCH /tenants/{tenantId}` (superadmin): name and domain only.
pub async fn update(state: &AppState, req: &Request, meta: &RequestMeta) -> Reply {
    let admin = superadmin(req)?;
    let tenant_id = tenant_param(req)?;
    let changes = json_body::<UpdateTenantBody>(req)?.validate()?;
    let tenant = service::update(&state.db, &admin, &tenant_id, &changes).await?;
    let details = doc! {"name": changes.name.as_deref(), "domain": changes.domain.as_ref().map(|d| d.as_str()), "actingAs": "superadmin"};
    audit(state, &tenant, meta, admin.identity(), "tenant.updated", details).await;
    one(StatusCode::OK, &tenant)
}

/// `POST /tenants/{tenantId}/suspend` (superadmin).
pub async fn suspend(state: &AppState, req: &Request, meta: &RequestMeta) -> Reply {
    let admin = superadmin(req)?;
    let tenant_id = tenant_param(req)?;
    let reason = optional_json_body::<SuspendBody>(req)?.validate()?;
    let tenant = service::suspend(&state.db, &admin, &tenant_id, reason.as_deref()).await?;
    audit(state, &tenant, meta, admin.identity(), "tenant.suspended", doc! {"reason": reason, "actingAs": "superadmin"}).await;
    one(StatusCode::OK, &tenant)
}

/// `POST /tenants/{tenantId}/reactivate` (superadmin).
pub async fn reactivate(state: &AppState, req: &Request, meta: &RequestMeta) -> Reply {
    let admin = superadmin(req)?;
    let tenant_id = tenant_param(req)?;
    let tenant = service::reactivate(&state.db, &admin, &tenant_id).await?;
    audit(state, &tenant, meta, admin.identity(), "tenant.reactivated", doc! {"actingAs": "superadmin"}).await;
    one(StatusCode::OK, &tenant)
}

/// `PATCH /tenants/{tenantId}/settings/customization` (a member with `update:tenant`, or a
/// superadmin).
pub async fn customize(state: &AppState, req: &Request, meta: &RequestMeta) -> Reply {
    let tenant_id = tenant_param(req)?;
    let ctx = TenantContext::resolve(&state.db, &Identity::from_request(req)?, Some(&tenant_id)).await?;
    ctx.require("update:tenant")?;
    let changes = json_body::<CustomizationBody>(req)?.validate()?;
    let tenant = service::customize(&state.db, &ctx, &changes).await?;
    let details = doc! {
        "logo": changes.logo.as_deref(), "primaryColor": changes.primary_color.as_deref(),
        "theme": changes.theme.as_deref(), "actingAs": if ctx.is_superadmin() { "superadmin" } else { "member" },
    };
    audit(state, &tenant, meta, ctx.identity(), "tenant.customization.updated", details).await;
    one(StatusCode::OK, &tenant)
}

/// `PATCH /tenants/{tenantId}/settings/billing` (superadmin).
pub async fn billing(state: &AppState, req: &Request, meta: &RequestMeta) -> Reply {
    let admin = superadmin(req)?;
    let tenant_id = tenant_param(req)?;
    let changes = json_body::<BillingBody>(req)?.validate()?;
    let tenant = service::change_billing(&state.db, &admin, &tenant_id, &changes).await?;
    let details = doc! {
        "plan": changes.plan.map(|p| p.as_str()), "billingEmail": changes.billing_email.as_ref().map(|e| e.as_str()),
        "actingAs": "superadmin",
    };
    audit(state, &tenant, meta, admin.identity(), "tenant.billing.updated", details).await;
    one(StatusCode::OK, &tenant)
}

/// `GET /tenants/{tenantId}/limits` (superadmin, or a member of that tenant).
pub async fn limits(state: &AppState, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit(state, req, meta).await?;
    respond(StatusCode::OK, &service::limits(&state.db, &ctx).await?)
}
