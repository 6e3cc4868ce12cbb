//! The users context: invitations (a saga across the record, the tenant's seat counter and
//! Cognito), profiles, status, role assignment, and the post-confirmation trigger.

pub mod erasure;
pub mod error;
pub mod export;
pub mod input;
pub mod invitation;
pub mod person;
pub mod refusals;
mod routes;
pub mod service;
pub mod signups;
pub mod trigger;
pub mod view;

use shared::directory::SharedDirectory;
use shared::error::ApiError;
use shared::http::{route_key, serve, BoxedResponse, Deps, Request};

/// This function's logical id in template.yaml, which openapi.json's integrations name.
pub const LOGICAL_ID: &str = "UsersFunction";

/// The Lambda handler: routes by API Gateway's matched resource, never by raw path.
pub fn handle(deps: &Deps<SharedDirectory>, req: Request) -> BoxedResponse<'_> {
    let db = &deps.db;
    Box::pin(serve(db, req, move |req, meta| async move {
        let route = route_key(&req).unwrap_or_default();
        match route.as_str() {
            "GET /users" => routes::list(db, &req).await,
            "POST /users" => routes::invite(deps, &req, &meta).await,
            "GET /users/me" => routes::me(db, &req).await,
            "PATCH /users/me" => routes::update_me(db, &req, &meta).await,
            "GET /users/me/export" => routes::export_me(db, &req, &meta).await,
            "GET /users/{userId}" => routes::get(db, &req).await,
            "GET /users/{userId}/export" => routes::export(db, &req, &meta).await,
            "PATCH /users/{userId}" => routes::update(deps, &req, &meta).await,
            "DELETE /users/{userId}" => routes::delete(deps, &req, &meta).await,
            "POST /users/{userId}/erase" => routes::erase(deps, &req, &meta).await,
            "POST /users/{userId}/roles" => routes::assign_role(db, &req, &meta).await,
            "DELETE /users/{userId}/roles/{roleId}" => routes::remove_role(db, &req, &meta).await,
            _ => Err(ApiError::NotFound(format!("No route for {route}"))),
        }
    }))
}
