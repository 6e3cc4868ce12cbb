//! The users Lambda binary: wiring only.

use shared::config::{process_env, DbConfig, PoolConfig};
use shared::db::Db;
use shared::directory::{LazyCognitoDirectory, SharedDirectory};
use shared::exports::{Exports, ExportsConfig};
use shared::http::Deps;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init("users");
    let env = process_env();
    let config = DbConfig::load("tenancy-users").await?;
    let pool = PoolConfig::from_env(&env)?;
    let directory: SharedDirectory = Arc::new(LazyCognitoDirectory::new(pool.user_pool_id));
    // An erasure deletes the export files that hold its person.
    let exports = Arc::new(Exports::new(ExportsConfig::from_env(&env)?));
    let deps = Deps::new(Db::cached_with_keyring(&config).await?.with_exports(exports)).with_directory(directory);
    shared::http::run(deps, users::handle).await
}
