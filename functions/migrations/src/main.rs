//! The migrations Lambda binary: wiring only.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::config::{process_env, DbConfig, PoolConfig};
use shared::db::Db;
use shared::directory::LazyCognitoDirectory;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let env = process_env();
    let config = DbConfig::from_env(&env, "tenancy-migrations")?;
    let directory = std::sync::Arc::new(LazyCognitoDirectory::new(PoolConfig::from_env(&env)?.user_pool_id));
    let db = Db::cached(&config).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (db, directory) = (db.clone(), directory.clone());
        async move { migrations::handle_event(&db, directory.as_ref(), event.payload).await }
    }))
    .await
}
