//! The roles Lambda binary: wiring only.

use shared::config::{process_env, DbConfig};
use shared::db::Db;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let config = DbConfig::from_env(&process_env(), "tenancy-roles")?;
    shared::http::run_function(roles::AppState::new(Db::cached(&config).await?)).await
}
