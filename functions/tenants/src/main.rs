//! The tenants Lambda binary: wiring only. It makes no tenant (the onboarding function does), so
//! it needs no user directory.

use shared::config::DbConfig;
use shared::db::Db;
use shared::http::Deps;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init("tenants");
    let config = DbConfig::load("tenancy-tenants").await?;
    shared::http::run(Deps::new(Db::cached_with_keyring(&config).await?), tenants::handle).await
}
