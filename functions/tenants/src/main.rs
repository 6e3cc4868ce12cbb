//! The tenants Lambda binary: wiring only. It makes no tenant (the onboarding function does), so
//! it needs no user directory. It queues exports and signs their download URLs.

use shared::config::{process_env, DbConfig};
use shared::db::Db;
use shared::exports::{Exports, ExportsConfig};
use shared::http::Deps;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init("tenants");
    let config = DbConfig::load("tenancy-tenants").await?;
    let exports = Arc::new(Exports::new(ExportsConfig::from_env(&process_env())?));
    let db = Db::cached_with_keyring(&config).await?.with_exports(exports);
    shared::http::run(Deps::new(db), tenants::handle).await
}
