//! The tenant-jobs Lambda binary: wiring only (`tenants::jobs`). Its SQS event source delivers
//! one job message at a time; its schedule's event runs the sweep of stalled jobs.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::config::{process_env, DbConfig, PoolConfig};
use shared::db::Db;
use shared::directory::{LazyCognitoDirectory, SharedDirectory};
use shared::exports::{Exports, ExportsConfig};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init("tenant-jobs");
    let config = DbConfig::load("tenancy-tenant-jobs").await?;
    let exports = Arc::new(Exports::new(ExportsConfig::from_env(&process_env())?));
    let db = Db::cached_with_keyring(&config).await?.with_exports(exports);
    // A restore invites each person of the new tenant through the user pool.
    let pool = PoolConfig::from_env(&process_env())?;
    let directory: SharedDirectory = Arc::new(LazyCognitoDirectory::new(pool.user_pool_id));
    run(service_fn(|event: LambdaEvent<Value>| {
        let (db, directory) = (db.clone(), directory.clone());
        async move {
            let outcome = tenants::jobs::on_event(&db, directory.as_ref(), event.payload).await;
            shared::metrics::invocation(outcome.is_err());
            Ok::<_, Error>(outcome?)
        }
    }))
    .await
}
