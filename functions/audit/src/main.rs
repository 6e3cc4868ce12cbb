//! The audit Lambda binary: wiring only.

use shared::config::DbConfig;
use shared::db::Db;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init("audit");
    let config = DbConfig::load("tenancy-audit").await?;
    shared::http::run_function(audit::AppState::new(Db::cached(&config).await?)).await
}
