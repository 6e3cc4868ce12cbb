//! The Cognito PostConfirmation trigger: wiring only. It calls no Cognito action and takes the
//! pool from its event, so the pool and this function never reference each other.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::config::{process_env, DbConfig};
use shared::db::Db;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = DbConfig::from_env(&process_env(), "tenancy-post-confirmation")?;
    let db = Db::cached(&config).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let db = db.clone();
        async move { users::trigger::post_confirmation(&db, event.payload).await }
    }))
    .await
}
