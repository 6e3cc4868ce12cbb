//! The migrations Lambda binary: wiring only.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::config::{process_env, DbConfig};
use shared::db::Db;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = DbConfig::from_env(&process_env(), "tenancy-migrations")?;
    let db = Db::cached(&config).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let db = db.clone();
        async move { migrations::handle_event(&db, event.payload).await }
    }))
    .await
}
