//! The migrations Lambda binary: wiring only.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::config::{process_env, DbConfig, PoolConfig};
use shared::db::Db;
use shared::directory::LazyCognitoDirectory;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init("migrations");
    let env = process_env();
    let config = DbConfig::load("tenancy-migrations").await?;
    let directory = std::sync::Arc::new(LazyCognitoDirectory::new(PoolConfig::from_env(&env)?.user_pool_id));
    let db = Db::cached_with_keyring(&config).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (db, directory) = (db.clone(), directory.clone());
        // The time left, so that a deploy's `up` stops in time to answer CloudFormation.
        let deadline = std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.context.deadline);
        let budget = deadline.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        async move { migrations::handle_event_within(&db, directory.as_ref(), event.payload, budget).await }
    }))
    .await
}
