//! The local stand-in for API Gateway and Cognito's authorizer, and the local user pool's
//! bootstrap.

pub mod cognito;
pub mod gateway;
pub mod jwt;
pub mod routes;

use axum::Router;
use shared::config::{CognitoConfig, DbConfig};
use shared::db::Db;
use shared::http::HttpFunction;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The OpenAPI document `template.yaml` imports: the one source of the routes.
pub const OPENAPI: &str = include_str!("../../../openapi.json");

/// The logical ids of every HTTP function, as template.yaml names them.
pub const HOSTED: &[&str] = &[tenants::LOGICAL_ID];

/// Every HTTP context, built for one database: registering a context is one entry here (and
/// its id in [`HOSTED`]).
pub fn functions(db: &Db) -> Vec<Arc<dyn HttpFunction>> {
    vec![Arc::new(tenants::AppState::new(db.clone()))]
}

/// The route table of openapi.json, checked against the hosted functions.
pub fn route_table() -> Result<routes::RouteTable, String> {
    let doc = serde_json::from_str(OPENAPI).map_err(|e| format!("openapi.json: {e}"))?;
    routes::RouteTable::from_openapi(&doc, HOSTED)
}

/// Builds the gateway for a database and a user pool.
pub fn gateway(db: Db, cognito: CognitoConfig) -> Result<gateway::Gateway, String> {
    gateway_with(functions(&db), cognito)
}

/// Builds the gateway around given functions (tests that step into one pass their own).
pub fn gateway_with(functions: Vec<Arc<dyn HttpFunction>>, cognito: CognitoConfig) -> Result<gateway::Gateway, String> {
    Ok(gateway::Gateway {
        routes: route_table()?,
        verifier: jwt::Verifier::new(cognito),
        functions: functions.into_iter().map(|f| (f.logical_id(), f)).collect(),
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
