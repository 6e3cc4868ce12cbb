//! The onboarding Lambda binary: wiring only. It takes API Gateway's requests and its
//! schedule's sweep events.

use shared::config::{process_env, DbConfig, Features, PoolConfig};
use shared::db::Db;
use shared::directory::{LazyCognitoDirectory, SharedDirectory};
use shared::exports::{Exports, ExportsConfig};
use shared::http::Deps;
use shared::receipt::ReceiptConfig;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init("onboarding");
    let env = process_env();
    let config = DbConfig::load("tenancy-onboarding").await?;
    let pool = PoolConfig::from_env(&env)?;
    let directory: SharedDirectory = Arc::new(LazyCognitoDirectory::new(pool.user_pool_id));
    // Refuses to start with sign-up on and no SES sender configured.
    let features = Features::from_env(&env)?;
    // The purge signs erasure receipts, and `GET /tenants/{tenantId}/receipt` serves them.
    let receipts = ReceiptConfig::from_env(&env)?;
    // The purge deletes the tenant's export files.
    let exports = Arc::new(Exports::new(ExportsConfig::from_env(&env)?));
    let db = Db::cached_with_keyring(&config).await?.with_receipts(&receipts).with_exports(exports);
    let deps = Deps::new(db).with_directory(directory).with_features(features);
    shared::http::run_with_events(deps, onboarding::handle, onboarding::FUNCTION, onboarding::on_schedule).await
}
