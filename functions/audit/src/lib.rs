//! The audit context: a tenant reads its own audit log, filtered, newest first, a page at a
//! time by an opaque cursor. There is no write or delete route: entries are written by the
//! routes they record (`shared::audit`) and removed only by retention.

pub mod retention;
mod routes;
pub mod service;

use lambda_http::{Body, Request, Response};
use shared::db::Db;
use shared::error::ApiError;
use shared::http::{route_key, serve};

/// This function's logical id in template.yaml, which openapi.json's integrations name.
pub const LOGICAL_ID: &str = "AuditFunction";

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
    serve(&state.db, req, |req, _meta| async move {
        let route = route_key(&req).unwrap_or_default();
        match route.as_str() {
            "GET /audit-logs" => routes::list(state, &req).await,
            "GET /audit-logs/{auditLogId}" => routes::get(state, &req).await,
            _ => Err(ApiError::NotFound(format!("No route for {route}"))),
        }
    })
    .await
}
