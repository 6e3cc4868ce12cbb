//! The onboarding Lambda binary: wiring only. It takes API Gateway's requests and its
//! schedule's sweep events.

use shared::config::{process_env, DbConfig, PoolConfig};
use shared::db::Db;
use shared::directory::{LazyCognitoDirectory, SharedDirectory};
use shared::http::Deps;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init("onboarding");
    let env = process_env();
    let config = DbConfig::load("tenancy-onboarding").await?;
    let pool = PoolConfig::from_env(&env)?;
    let directory: SharedDirectory = Arc::new(LazyCognitoDirectory::new(pool.user_pool_id));
    let deps = Deps::new(Db::cached_with_keyring(&config).await?).with_directory(directory);
    shared::http::run_with_events(deps, onboarding::handle, onboarding::FUNCTION, onboarding::on_schedule).await
}
