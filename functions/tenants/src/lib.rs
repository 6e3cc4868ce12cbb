//! The tenants context: the tenant registry, plans, settings, suspension, usage limits and the
//! usage history (data growth).

pub mod error;
pub mod input;
mod routes;
pub mod service;
pub mod view;

use lambda_http::{Body, Request, Response};
use shared::db::Db;
use shared::error::ApiError;
use shared::http::{route_key, serve};

/// What the handler needs, built once per execution environment.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Db,
    /// The user pool, where each new tenant's admin is created.
    pub directory: shared::directory::SharedDirectory,
    /// Where tests step into multi-step operations; nothing in a deployment.
    pub seam: shared::seam::SharedSeam,
}

impl AppState {
    /// The state of a deployed function.
    pub fn new(db: Db, directory: shared::directory::SharedDirectory) -> Self {
        Self { db, directory, seam: shared::seam::none() }
    }
}

/// This function's logical id in template.yaml, which openapi.json's integrations name.
pub const LOGICAL_ID: &str = "TenantsFunction";

shared::http_function!(AppState, LOGICAL_ID, handle);

/// The Lambda handler: routes by API Gateway's matched resource, never by raw path.
pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    serve(&state.db, req, |req, meta| async move {
        let route = route_key(&req).unwrap_or_default();
        match route.as_str() {
            "POST /tenants" => routes::create(state, &req, &meta).await,
            "GET /tenants" => routes::list(state, &req).await,
            "GET /tenants/{tenantId}" => routes::get(state, &req, &meta).await,
            "PATCH /tenants/{tenantId}" => routes::update(state, &req, &meta).await,
            "POST /tenants/{tenantId}/suspend" => routes::suspend(state, &req, &meta).await,
            "POST /tenants/{tenantId}/reactivate" => routes::reactivate(state, &req, &meta).await,
            "PATCH /tenants/{tenantId}/settings/customization" => routes::customize(state, &req, &meta).await,
            "PATCH /tenants/{tenantId}/settings/billing" => routes::billing(state, &req, &meta).await,
            "GET /tenants/{tenantId}/limits" => routes::limits(state, &req, &meta).await,
            "GET /tenants/{tenantId}/usage/history" => routes::usage_history(state, &req, &meta).await,
            _ => Err(ApiError::NotFound(format!("No route for {route}"))),
        }
    })
    .await
}
