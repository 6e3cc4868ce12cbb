//! The api-keys Lambda binary: wiring only.

use shared::config::DbConfig;
use shared::db::Db;
use shared::http::Deps;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init("api-keys");
    let config = DbConfig::load("tenancy-api-keys").await?;
    shared::http::run(Deps::new(Db::cached(&config).await?), api_keys::handle).await
}
