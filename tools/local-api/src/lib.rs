//! The local stand-in for API Gateway and Cognito's authorizer, and the local user pool's
//! bootstrap.

pub mod cognito;
pub mod gateway;
pub mod jwt;
pub mod routes;

use axum::Router;
use shared::config::{CognitoConfig, DbConfig};
use shared::db::Db;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The OpenAPI document `template.yaml` imports: the one source of the routes.
pub const OPENAPI: &str = include_str!("../../../openapi.json");

/// Builds the gateway for a database and a user pool.
pub fn gateway(db: Db, cognito: CognitoConfig) -> Result<gateway::Gateway, String> {
    let doc = serde_json::from_str(OPENAPI).map_err(|e| format!("openapi.json: {e}"))?;
    Ok(gateway::Gateway {
        routes: routes::RouteTable::from_openapi(&doc)?,
        verifier: jwt::Verifier::new(cognito),
        tenants: tenants::AppState { db },
    })
}

/// Serves until the listener fails (or the task is dropped).
pub async fn serve(listener: TcpListener, gateway: gateway::Gateway) -> std::io::Result<()> {
    let app = Router::new().fallback(gateway::handle).with_state(Arc::new(gateway));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
}

/// Connects to the configured database through the cached client.
pub async fn database(config: &DbConfig) -> Result<Db, shared::DbError> {
    Db::cached(config).await
}
