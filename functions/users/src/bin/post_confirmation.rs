//! The Cognito PostConfirmation trigger: wiring only. It calls no Cognito action and takes the
//! pool from its event, so the pool and this function never reference each other.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::config::DbConfig;
use shared::db::Db;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init("post-confirmation");
    let config = DbConfig::load("tenancy-post-confirmation").await?;
    let db = Db::cached_with_keyring(&config).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let db = db.clone();
        async move {
            let outcome = users::trigger::post_confirmation(&db, event.payload).await;
            shared::metrics::invocation(outcome.is_err());
            outcome
        }
    }))
    .await
}
