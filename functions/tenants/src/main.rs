//! The tenants Lambda binary: wiring only.

use shared::config::{process_env, DbConfig, PoolConfig};
use shared::db::Db;
use shared::directory::LazyCognitoDirectory;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init("tenants");
    let env = process_env();
    let config = DbConfig::load("tenancy-tenants").await?;
    let pool = PoolConfig::from_env(&env)?;
    let directory = Arc::new(LazyCognitoDirectory::new(pool.user_pool_id));
    shared::http::run_function(tenants::AppState::new(Db::cached_with_keyring(&config).await?, directory)).await
}
