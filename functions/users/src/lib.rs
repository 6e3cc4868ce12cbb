//! The users context: invitations (a saga across the record, the tenant's seat counter and
//! Cognito), profiles, status, role assignment, and the post-confirmation trigger.

pub mod error;
pub mod input;
pub mod person;
mod routes;
pub mod service;
pub mod trigger;
pub mod view;

use lambda_http::{Body, Request, Response};
use shared::db::Db;
use shared::directory::SharedDirectory;
use shared::error::ApiError;
use shared::http::{route_key, serve};

/// This function's logical id in template.yaml, which openapi.json's integrations name.
pub const LOGICAL_ID: &str = "UsersFunction";

/// What the handler needs, built once per execution environment.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Db,
    pub directory: SharedDirectory,
}

impl AppState {
    /// The state of a deployed function.
    pub fn new(db: Db, directory: SharedDirectory) -> Self {
        Self { db, directory }
    }
}

shared::http_function!(AppState, LOGICAL_ID, handle);

/// The Lambda handler: routes by API Gateway's matched resource, never by raw path.
pub async fn handle(state: &AppState, req: Request) -> Response<Body> {
    serve(&state.db, req, |req, meta| async move {
        let route = route_key(&req).unwrap_or_default();
        match route.as_str() {
            "GET /users" => routes::list(state, &req).await,
            "POST /users" => routes::invite(state, &req, &meta).await,
            "GET /users/me" => routes::me(state, &req).await,
            "PATCH /users/me" => routes::update_me(state, &req, &meta).await,
            "GET /users/{userId}" => routes::get(state, &req).await,
            "PATCH /users/{userId}" => routes::update(state, &req, &meta).await,
            "DELETE /users/{userId}" => routes::delete(state, &req, &meta).await,
            "POST /users/{userId}/roles" => routes::assign_role(state, &req, &meta).await,
            "DELETE /users/{userId}/roles/{roleId}" => routes::remove_role(state, &req, &meta).await,
            _ => Err(ApiError::NotFound(format!("No route for {route}"))),
        }
    })
    .await
}
