//! The api-keys Lambda binary: wiring only.

use shared::config::DbConfig;
use shared::db::Db;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init("api-keys");
    let config = DbConfig::load("tenancy-api-keys").await?;
    shared::http::run_function(api_keys::AppState::new(Db::cached(&config).await?)).await
}
