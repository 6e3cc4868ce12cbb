//! The audit context: a tenant reads its own audit log, filtered, newest first, a page at a
//! time by an opaque cursor. There is no write or delete route: entries are written by the
//! routes they record (`shared::audit`) and removed only by retention.

pub mod retention;
mod routes;
pub mod service;

use shared::error::ApiError;
use shared::http::{route_key, serve, BoxedResponse, Deps, Request};

/// This function's logical id in template.yaml, which openapi.json's integrations name.
pub const LOGICAL_ID: &str = "AuditFunction";

/// The Lambda handler: routes by API Gateway's matched resource, never by raw path.
pub fn handle<Dir: Sync>(deps: &Deps<Dir>, req: Request) -> BoxedResponse<'_> {
    let db = &deps.db;
    Box::pin(serve(db, req, move |req, _meta| async move {
        let route = route_key(&req).unwrap_or_default();
        match route.as_str() {
            "GET /audit-logs" => routes::list(db, &req).await,
            "GET /audit-logs/{auditLogId}" => routes::get(db, &req).await,
            _ => Err(ApiError::NotFound(format!("No route for {route}"))),
        }
    }))
}
