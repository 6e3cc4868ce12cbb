//! The tenants Lambda binary: wiring only.

use lambda_http::{run, service_fn, Error, Request};
use shared::config::{process_env, DbConfig, PoolConfig};
use shared::db::Db;
use shared::directory::LazyCognitoDirectory;
use std::sync::Arc;
use tenants::AppState;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let env = process_env();
    let config = DbConfig::from_env(&env, "tenancy-tenants")?;
    let pool = PoolConfig::from_env(&env)?;
    let directory = Arc::new(LazyCognitoDirectory::new(pool.user_pool_id));
    let state = AppState::new(Db::cached(&config).await?, directory);
    run(service_fn(|req: Request| {
        let state = state.clone();
        async move { Ok::<_, Error>(tenants::handle(&state, req).await) }
    }))
    .await
}
