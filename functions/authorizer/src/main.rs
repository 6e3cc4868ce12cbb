//! The REQUEST authorizer Lambda binary: wiring only (the logic is the crate's library).

use authorizer::{handle_event, Authorizer};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::config::{process_env, CognitoConfig, DbConfig};
use shared::db::Db;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init("authorizer");
    let env = process_env();
    let config = DbConfig::load("tenancy-authorizer").await?;
    // Without a pool, every token is refused and keys still work; a missing pool is a deploy
    // error worth a loud line, not a crash loop.
    let cognito =
        CognitoConfig::from_env(&env).map_err(|error| tracing::error!(%error, "no Cognito configuration: every JWT will be refused")).ok();
    let authorizer = Arc::new(Authorizer::new(Db::cached(&config).await?, cognito));
    run(service_fn(|event: LambdaEvent<Value>| {
        let authorizer = authorizer.clone();
        async move { handle_event(&authorizer, &event.payload).await.map_err(Error::from) }
    }))
    .await
}
