//! The local stand-in for API Gateway and Cognito's authorizer, and the local user pool's
//! bootstrap.

pub mod cognito;
pub mod control;
pub mod dispatch;
pub mod exports;
pub mod fixtures;
pub mod gateway;
pub mod routes;
pub mod runtime;

use axum::Router;
use shared::config::{CognitoConfig, DbConfig};
use shared::db::Db;
use shared::directory::{CognitoDirectory, SharedDirectory};
use shared::http::{Deps, Handler, Hosted, HttpFunction};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The error of the local tools: any error, shown as its message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The OpenAPI document `template.yaml` imports: the one source of the routes.
pub const OPENAPI: &str = include_str!("../../../openapi.json");

/// What the local stack's functions are built from: the database and the user pool (moto's),
/// the dependencies a deployed context with a directory is given.
pub type Stack = Deps<SharedDirectory>;

/// Every HTTP context, by its logical id in template.yaml. Registering a new context is one
/// entry here.
pub const CONTEXTS: &[(&str, Handler<SharedDirectory>)] = &[
    (tenants::LOGICAL_ID, tenants::handle),
    (roles::LOGICAL_ID, roles::handle),
    (users::LOGICAL_ID, users::handle),
    (audit::LOGICAL_ID, audit::handle),
    (api_keys::LOGICAL_ID, api_keys::handle),
    (onboarding::LOGICAL_ID, onboarding::handle),
];

/// Every HTTP context, hosted on `stack`.
pub fn functions(stack: &Stack) -> Vec<Arc<dyn HttpFunction>> {
    CONTEXTS
        .iter()
        .map(|&(logical_id, handler)| Arc::new(Hosted::new(logical_id, stack.clone(), handler)) as Arc<dyn HttpFunction>)
        .collect()
}

/// Every HTTP context, hosted on `stack`, except that `logical_id`'s is given `directory` (a
/// test's faulty one).
pub fn functions_with_directory(stack: &Stack, logical_id: &str, directory: SharedDirectory) -> Vec<Arc<dyn HttpFunction>> {
    CONTEXTS
        .iter()
        .map(|&(id, handler)| {
            let deps = if id == logical_id { stack.clone().with_directory(directory.clone()) } else { stack.clone() };
            Arc::new(Hosted::new(id, deps, handler)) as Arc<dyn HttpFunction>
        })
        .collect()
}

/// The route table of openapi.json, checked against the hosted functions.
pub fn route_table() -> Result<routes::RouteTable, String> {
    let doc = serde_json::from_str(OPENAPI).map_err(|e| format!("openapi.json: {e}"))?;
    let hosted: Vec<&str> = CONTEXTS.iter().map(|&(logical_id, _)| logical_id).collect();
    routes::RouteTable::from_openapi(&doc, &hosted)
}

/// Builds the gateway for a database and a user pool.
pub fn gateway(stack: Stack, cognito: CognitoConfig) -> Result<gateway::Gateway, String> {
    let functions = functions(&stack);
    gateway_with(stack, functions, cognito)
}

/// Builds the gateway around given functions (tests that step into one pass their own).
pub fn gateway_with(stack: Stack, functions: Vec<Arc<dyn HttpFunction>>, cognito: CognitoConfig) -> Result<gateway::Gateway, String> {
    Ok(gateway::Gateway {
        routes: route_table()?,
        verifier: authorizer::jwt::Verifier::new(cognito.clone()),
        authorizer: authorizer::Authorizer::new(stack.db.clone(), Some(cognito)),
        functions: functions.into_iter().map(|f| (f.logical_id(), f)).collect(),
        stack,
        control_token: control::ControlToken::generate().map_err(|e| e.to_string())?,
    })
}

/// The directory of a pool in moto: the same Cognito code path as a deployment.
pub fn moto_directory(moto_url: &str, region: &str, pool_id: &str) -> SharedDirectory {
    Arc::new(CognitoDirectory::new(cognito::client(moto_url, region), pool_id))
}

/// The lease a serving local API holds on its database, naming where it listens. Writers in
/// another process (`local-api migrate`) must not run beside it: FerretDB serialises writes only
/// within one process (docs/ARCHITECTURE.md §6), so they go through the API instead.
pub const SERVE_LEASE: &str = "local-api-serve";
/// How long the serve lease lasts without renewal; it is renewed at a third of that.
pub const SERVE_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The path, outside openapi.json, where a serving local API runs a migrations action for
/// `local-api migrate`. Loopback only, like the whole local API, and only with the serving
/// process's control token ([`control`]).
pub const LOCAL_MIGRATIONS_PATH: &str = "/_local/migrations";

/// The path, outside openapi.json, where a serving local API runs a saga sweep for
/// `local-api onboarding sweep`: loopback only, with the control token, like the migrations'.
pub const LOCAL_SWEEP_PATH: &str = "/_local/onboarding/sweep";

/// How long after a lease expired the serving local API's own sweep acts (the deployed
/// schedule waits `shared::saga::SWEEP_AFTER`).
pub const LOCAL_SWEEP_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
/// How often the serving local API sweeps.
pub const LOCAL_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// One sweep of every eligible saga on `stack`, until none is left: `older_than` zero also
/// takes the leases of every owner but this process (locally the only one alive).
pub async fn sweep_all(stack: &Stack, older_than: std::time::Duration) -> Result<shared::saga::SweepReport, shared::saga::SagaError> {
    let options = shared::saga::SweepOptions { older_than, any_other_owner: older_than.is_zero(), limit: usize::MAX };
    onboarding::service::sweep(&stack.db, stack.directory.as_ref(), options).await
}

/// Sweeps every [`LOCAL_SWEEP_EVERY`], for as long as the returned task runs.
pub fn sweep_periodically(stack: Stack) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(LOCAL_SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if stack.db.exports().is_ok() {
                // The worker's own schedule, every minute here: stalled jobs, nightly exports.
                let swept = async {
                    Ok::<_, tenants::error::TenantsError>((
                        tenants::jobs::requeue_stalled(&stack.db).await?,
                        tenants::jobs::start_nightly_exports(&stack.db).await?,
                    ))
                };
                match swept.await {
                    Ok((0, 0)) => {}
                    Ok((queued, nightly)) => tracing::info!(queued, nightly, "local jobs sweep"),
                    Err(error) => tracing::warn!(%error, "local jobs sweep failed; the next one tries again"),
                }
            }
            match sweep_all(&stack, LOCAL_SWEEP_AFTER).await {
                Ok(report) if report.taken > 0 || report.reaped_key_sets > 0 || report.reaped_claims > 0 => {
                    tracing::info!(?report, "local sweep");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "local sweep failed; the next one tries again"),
            }
        }
    })
}

/// Serves until the listener fails (or the task is dropped).
pub async fn serve(listener: TcpListener, gateway: gateway::Gateway) -> std::io::Result<()> {
    serve_until(listener, gateway, std::future::pending()).await
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn serve_until(
    listener: TcpListener,
    gateway: gateway::Gateway,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().fallback(gateway::handle).with_state(Arc::new(gateway));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown).await
}

/// Connects to the configured database through the cached client, with the personal-data
/// keyring (`KMS_KEY_ID`, the vault database beside it; moto's KMS locally) and, when
/// `RECEIPT_KEY_ID` is set, the erasure receipts' signer and backup bounds (`serve` requires it;
/// the commands that only migrate, seed or sweep do not).
pub async fn database(config: &DbConfig) -> Result<Db, BoxError> {
    let db = Db::cached_with_keyring(config).await.map_err(|e| e.to_string())?;
    let env = shared::config::process_env();
    if (env.0)(shared::receipt::RECEIPT_KEY_VARIABLE).is_some_and(|v| !v.trim().is_empty()) {
        return Ok(db.with_receipts(&shared::receipt::ReceiptConfig::from_env(&env)?));
    }
    Ok(db)
}
