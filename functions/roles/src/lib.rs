//! The roles context: each tenant's roles. The system roles (admin, user, viewer) are seeded
//! here at tenant creation and are immutable; custom roles grant only catalogue permissions
//! their creator holds.

pub mod error;
pub mod input;
mod routes;
pub mod service;
pub mod view;

use shared::error::ApiError;
use shared::http::{route_key, serve, BoxedResponse, Deps, Request};

/// This function's logical id in template.yaml, which openapi.json's integrations name.
pub const LOGICAL_ID: &str = "RolesFunction";

/// The Lambda handler: routes by API Gateway's matched resource, never by raw path.
pub fn handle<Dir: Sync>(deps: &Deps<Dir>, req: Request) -> BoxedResponse<'_> {
    let db = &deps.db;
    Box::pin(serve(db, req, move |req, meta| async move {
        let route = route_key(&req).unwrap_or_default();
        match route.as_str() {
            "GET /roles" => routes::list(db, &req).await,
            "POST /roles" => routes::create(db, &req, &meta).await,
            "GET /roles/{roleId}" => routes::get(db, &req).await,
            "PATCH /roles/{roleId}" => routes::update(db, &req, &meta).await,
            "DELETE /roles/{roleId}" => routes::delete(db, &req, &meta).await,
            _ => Err(ApiError::NotFound(format!("No route for {route}"))),
        }
    }))
}
