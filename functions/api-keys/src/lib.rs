//! The api-keys context: tenants' API keys (issue, list, rename, limit, revoke, rotate). The
//! gateway's REQUEST authorizer, which admits their calls, is its own crate,
//! `functions/authorizer` (docs/ARCHITECTURE.md §13); it reads keys in this crate's format
//! ([`secret`]).

pub mod error;
pub mod input;
mod routes;
pub mod secret;
pub mod service;
pub mod view;

use shared::error::ApiError;
use shared::http::{route_key, serve, BoxedResponse, Deps, Request};

/// This function's logical id in template.yaml, which openapi.json's integrations name.
pub const LOGICAL_ID: &str = "ApiKeysFunction";

/// The Lambda handler: routes by API Gateway's matched resource, never by raw path.
pub fn handle<Dir: Sync>(deps: &Deps<Dir>, req: Request) -> BoxedResponse<'_> {
    let db = &deps.db;
    Box::pin(serve(db, req, move |req, meta| async move {
        let route = route_key(&req).unwrap_or_default();
        match route.as_str() {
            "GET /api-keys" => routes::list(db, &req).await,
            "POST /api-keys" => routes::create(db, &req, &meta).await,
            "GET /api-keys/{keyId}" => routes::get(db, &req).await,
            "PATCH /api-keys/{keyId}" => routes::update(db, &req, &meta).await,
            "POST /api-keys/{keyId}/revoke" => routes::revoke(db, &req, &meta).await,
            "POST /api-keys/{keyId}/rotate" => routes::rotate(db, &req, &meta).await,
            _ => Err(ApiError::NotFound(format!("No route for {route}"))),
        }
    }))
}
