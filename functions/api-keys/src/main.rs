//! The api-keys Lambda binary: wiring only.

use lambda_http::{run, service_fn, Error, Request};
use api_keys::AppState;
use shared::config::{process_env, DbConfig};
use shared::db::Db;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = DbConfig::from_env(&process_env(), "tenancy-api-keys")?;
    let state = AppState::new(Db::cached(&config).await?);
    run(service_fn(|req: Request| {
        let state = state.clone();
        async move { Ok::<_, Error>(api_keys::handle(&state, req).await) }
    }))
    .await
}
