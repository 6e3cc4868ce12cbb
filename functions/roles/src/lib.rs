//! The roles context: each tenant's roles. The system roles (admin, user, viewer) are seeded
//! here at tenant creation and are immutable; custom roles grant only catalogue permissions
//! their creator holds.

pub mod error;
pub mod input;
mod routes;
pub mod service;
pub mod view;

use lambda_http::{Body, Request, Response};
use shared::db::Db;
use shared::error::ApiError;
use shared::http::{route_key, serve};

/// This function's logical id in template.yaml, which openapi.json's integrations name.
pub const LOGICAL_ID: &str = "RolesFunction";

/// What the handler needs, built once per execution environment.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Db,
}

impl AppState {
    /// The state of a deployed function.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

shared::http_function!(AppState, LOGICAL_ID, handle);

/// The Lambda handler: routes by API Gateway's matched resource, never by raw path.
pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    serve(&state.db, req, |req, meta| async move {
        let route = route_key(&req).unwrap_or_default();
        match route.as_str() {
            "GET /roles" => routes::list(state, &req).await,
            "POST /roles" => routes::create(state, &req, &meta).await,
            "GET /roles/{roleId}" => routes::get(state, &req).await,
            "PATCH /roles/{roleId}" => routes::update(state, &req, &meta).await,
            "DELETE /roles/{roleId}" => routes::delete(state, &req, &meta).await,
            _ => Err(ApiError::NotFound(format!("No route for {route}"))),
        }
    })
    .await
}
