//! The onboarding context: tenants made by a durable saga (`POST /onboarding`, and
//! `POST /tenants`, the brief's route, served by the same saga), the saga's state, and the
//! sweeper that finishes or undoes every saga left behind (docs/ARCHITECTURE.md §21).

pub mod error;
pub mod input;
pub mod offboarding;
pub mod purge;
mod routes;
pub mod saga;
pub mod service;
pub mod signup;
pub mod view;

use futures_util::future::BoxFuture;
use shared::directory::SharedDirectory;
use shared::error::ApiError;
use shared::event_kind::{EventFunction, EventKind};
use shared::http::{route_key, serve, BoxedResponse, Deps, Request};
use shared::saga::{SweepOptions, SWEEP_AFTER};

/// This function's logical id in template.yaml, which openapi.json's integrations name.
pub const LOGICAL_ID: &str = "OnboardingFunction";

/// The function as an event host sees it: besides API Gateway's requests it takes its own
/// schedule's events, each a sweep.
pub const FUNCTION: EventFunction = EventFunction { logical_id: LOGICAL_ID, takes: &[EventKind::ScheduledEvent] };

/// How many sagas one scheduled sweep takes at most: well within the function's timeout.
pub const SWEEP_LIMIT: usize = 100;

/// The Lambda handler of API Gateway's requests: routes by the matched resource.
pub fn handle(deps: &Deps<SharedDirectory>, req: Request) -> BoxedResponse<'_> {
    let db = &deps.db;
    Box::pin(serve(db, req, move |req, meta| async move {
        let route = route_key(&req).unwrap_or_default();
        match route.as_str() {
            "POST /onboarding" => routes::onboard(deps, &req, &meta).await,
            "POST /tenants" => routes::create_tenant(deps, &req, &meta).await,
            "GET /onboarding/{onboardingId}" => routes::status(db, &req).await,
            "POST /signup" => routes::signup(deps, &req, &meta).await,
            "POST /tenants/{tenantId}/offboard" => routes::offboard(db, &req, &meta).await,
            "POST /tenants/{tenantId}/offboard/cancel" => routes::cancel_offboarding(db, &req, &meta).await,
            "GET /tenants/{tenantId}/receipt" => routes::receipt(db, &req).await,
            _ => Err(ApiError::NotFound(format!("No route for {route}"))),
        }
    }))
}

/// The scheduled sweep: sagas whose lease expired more than [`SWEEP_AFTER`] ago. Answers the
/// report; a sweep that left a saga open is still a success (the next one tries again), and the
/// report says which.
pub fn on_schedule(
    deps: &Deps<SharedDirectory>,
    _event: serde_json::Value,
) -> BoxFuture<'_, Result<serde_json::Value, lambda_http::Error>> {
    Box::pin(async move {
        let options = SweepOptions { older_than: SWEEP_AFTER, any_other_owner: false, limit: SWEEP_LIMIT };
        let report = match service::sweep(&deps.db, deps.directory.as_ref(), options).await {
            Ok(report) => report,
            Err(error) => {
                shared::metrics::saga_sweep(0, 0, 0, 0, true);
                return Err(error.into());
            }
        };
        let open = report.left_running.len() as u64;
        tracing::info!(taken = report.taken, completed = report.completed, failed = report.failed, open, "sweep done");
        shared::metrics::saga_sweep(report.taken, report.completed, report.failed, open, false);
        Ok(serde_json::to_value(report)?)
    })
}
