//! The tenants context: the tenant registry, plans, settings, suspension, usage limits and the
//! usage history (data growth).

pub mod error;
pub mod exports;
pub mod input;
pub mod jobs;
mod routes;
pub mod service;
pub mod view;

use shared::error::ApiError;
use shared::http::{route_key, serve, BoxedResponse, Deps, Request};

/// This function's logical id in template.yaml, which openapi.json's integrations name.
pub const LOGICAL_ID: &str = "TenantsFunction";

/// The Lambda handler: routes by API Gateway's matched resource, never by raw path. A tenant is
/// made by the onboarding context (`POST /tenants` is its route).
pub fn handle<Dir>(deps: &Deps<Dir>, req: Request) -> BoxedResponse<'_> {
    let db = &deps.db;
    Box::pin(serve(db, req, move |req, meta| async move {
        let route = route_key(&req).unwrap_or_default();
        match route.as_str() {
            "GET /tenants" => routes::list(db, &req).await,
            "GET /tenants/{tenantId}" => routes::get(db, &req, &meta).await,
            "PATCH /tenants/{tenantId}" => routes::update(db, &req, &meta).await,
            "POST /tenants/{tenantId}/suspend" => routes::suspend(db, &req, &meta).await,
            "POST /tenants/{tenantId}/reactivate" => routes::reactivate(db, &req, &meta).await,
            "PATCH /tenants/{tenantId}/settings/customization" => routes::customize(db, &req, &meta).await,
            "PATCH /tenants/{tenantId}/settings/billing" => routes::billing(db, &req, &meta).await,
            "GET /tenants/{tenantId}/limits" => routes::limits(db, &req, &meta).await,
            "GET /tenants/{tenantId}/usage/history" => routes::usage_history(db, &req, &meta).await,
            "POST /tenants/{tenantId}/exports" => routes::export(db, &req, &meta).await,
            "GET /tenants/{tenantId}/exports/{exportId}" => routes::export_status(db, &req, &meta).await,
            "POST /tenants/{tenantId}/restore" => routes::restore(db, &req, &meta).await,
            "PATCH /tenants/{tenantId}/settings/exports" => routes::export_settings(db, &req, &meta).await,
            _ => Err(ApiError::NotFound(format!("No route for {route}"))),
        }
    }))
}
