//! The roles Lambda binary: wiring only.

use shared::config::DbConfig;
use shared::db::Db;
use shared::http::Deps;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init("roles");
    let config = DbConfig::load("tenancy-roles").await?;
    shared::http::run(Deps::new(Db::cached(&config).await?), roles::handle).await
}
