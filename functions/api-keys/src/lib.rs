//! The api-keys context: tenants' API keys, and the one REQUEST authorizer that admits both
//! people (a Cognito JWT) and machines (an API key) at the gateway (docs/ARCHITECTURE.md §13).

pub mod authorizer;
pub mod error;
pub mod input;
pub mod jwt;
mod routes;
pub mod secret;
pub mod service;
pub mod view;

use lambda_http::{Body, Request, Response};
use shared::db::Db;
use shared::error::ApiError;
use shared::http::{route_key, serve};

/// This function's logical id in template.yaml, which openapi.json's integrations name.
pub const LOGICAL_ID: &str = "ApiKeysFunction";

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
            "GET /api-keys" => routes::list(state, &req).await,
            "POST /api-keys" => routes::create(state, &req, &meta).await,
            "GET /api-keys/{keyId}" => routes::get(state, &req).await,
            "PATCH /api-keys/{keyId}" => routes::update(state, &req, &meta).await,
            "POST /api-keys/{keyId}/revoke" => routes::revoke(state, &req, &meta).await,
            "POST /api-keys/{keyId}/rotate" => routes::rotate(state, &req, &meta).await,
            _ => Err(ApiError::NotFound(format!("No route for {route}"))),
        }
    })
    .await
}
