//! The audit retention Lambda binary, run on a schedule: wiring only (`audit::retention`).

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;
use shared::config::DbConfig;
use shared::db::Db;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init("audit-retention");
    let config = DbConfig::load("tenancy-audit-retention").await?;
    let db = Db::cached(&config).await?;
    // Any event runs it: EventBridge's scheduled event, or a manual invoke.
    run(service_fn(|_event: LambdaEvent<Value>| {
        let db = db.clone();
        async move {
            let report = audit::retention::run(&db, audit::retention::Budget::default()).await;
            shared::metrics::invocation(report.is_err());
            Ok::<_, Error>(serde_json::to_value(report?)?)
        }
    }))
    .await
}
