//! The migrations Lambda: `setup` builds the indexes, `up` runs pending migrations under a
//! lease, `status` reports, `usage-snapshot` records each tenant's data growth. An EventBridge
//! scheduled event means `up`; a CloudFormation custom resource request is the setup on deploy.
//!
//! This file reads the event and dispatches it; the work is elsewhere:
//! - [`migration`], [`steps`] and [`registry`]: what a ledger migration is, one file per step,
//!   and their order;
//! - [`runner`] and [`lease`]: `setup`, `up` and `status`, and the lease that keeps runs apart;
//! - [`jobs`]: the jobs outside the ledger (`usage-snapshot`, `rotate-key`, `shred`,
//!   `reconcile-counters`, `reconcile-tombstones`);
//! - [`deploy`]: the custom resource; [`indexes`]: every index; [`reseal`]: the personal-data
//!   rewrites that migration 005 and `rotate-key` share;
//! - [`report`] and [`error`]: what an invocation answers.

pub mod deploy;
pub mod error;
pub mod indexes;
pub mod jobs;
pub mod lease;
pub mod migration;
pub mod registry;
pub mod report;
pub mod reseal;
pub mod runner;
pub mod steps;

pub use error::MigrationError;
pub use report::Report;
pub use runner::setup;
#[doc(hidden)]
pub use runner::{up, Guard};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::db::{Db, SystemContext};
use shared::directory::Directory;
use shared::event_kind::{EventFunction, EventKind};
use std::time::Duration;

/// The migrations function: an action (`{"action": "up"}`), the schedule's EventBridge
/// Scheduled Event (`up`), or the deploy's CloudFormation custom resource (`setup` and `up`).
pub const FUNCTION: EventFunction = EventFunction {
    logical_id: "MigrationsFunction",
    takes: &[EventKind::ScheduledAction, EventKind::ScheduledEvent, EventKind::CustomResource],
};

/// What an invocation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Setup,
    Up,
    Status,
    /// Measures every tenant's documents and bytes per collection, emits them as metrics and
    /// writes today's snapshot ([`jobs::usage_snapshot`]).
    #[serde(rename = "usage-snapshot")]
    UsageSnapshot,
    /// A new data key for the event's `tenantId`, and its personal data re-encrypted under it;
    /// with `"resume": true`, finishes an earlier rotation without a new key ([`jobs::rotate_key`]).
    #[serde(rename = "rotate-key")]
    RotateKey,
    /// Destroys the event's `tenantId`'s personal-data keys ([`jobs::shred`]).
    Shred,
    /// Recounts every tenant's seats, admins and key places and corrects a counter that drifted
    /// ([`jobs::reconcile_counters`]).
    #[serde(rename = "reconcile-counters")]
    ReconcileCounters,
    /// Ends again whatever a restored backup of either cluster brought back of a tenant that was
    /// purged, from the tombstones of both ([`jobs::reconcile_tombstones`]).
    #[serde(rename = "reconcile-tombstones")]
    ReconcileTombstones,
}

/// Reads the action: `{"action": "setup" | "up" | "status" | "usage-snapshot" | "reconcile-counters" | "reconcile-tombstones" | …}`, or a scheduled
/// event, which means `up`.
pub fn parse_event(event: &Value) -> Result<Action, MigrationError> {
    if let Some(action) = event.get("action") {
        return serde_json::from_value(action.clone()).map_err(|_| {
            MigrationError::BadEvent(
                "action must be one of setup, up, status, usage-snapshot, rotate-key, shred, reconcile-counters, reconcile-tombstones"
                    .into(),
            )
        });
    }
    let scheduled = event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
        && event.get("source").and_then(Value::as_str) == Some("aws.events");
    if scheduled {
        Ok(Action::Up)
    } else {
        Err(MigrationError::BadEvent("expected {\"action\": …} or an EventBridge scheduled event".into()))
    }
}

/// Runs one action that names no tenant. `directory` is the user pool, for the migrations that
/// repair user records. `rotate-key` and `shred` name their tenant: see [`run_event`].
#[tracing::instrument(skip(db, directory))]
pub async fn run(db: &Db, directory: &dyn Directory, action: Action) -> Result<Report, MigrationError> {
    let system = SystemContext::new("migrations");
    match action {
        Action::Setup => runner::setup(db).await,
        Action::Up => runner::up_registered(db, directory).await,
        Action::Status => runner::status(db, &system).await,
        Action::UsageSnapshot => jobs::usage_snapshot::snapshot(db).await,
        Action::ReconcileCounters => jobs::reconcile_counters::reconcile(db, &shared::seam::NoSeam).await,
        Action::ReconcileTombstones => jobs::reconcile_tombstones::reconcile(db).await,
        Action::RotateKey | Action::Shred => {
            Err(MigrationError::BadEvent("rotate-key and shred name a tenant: {\"action\": …, \"tenantId\": …}".into()))
        }
    }
}

/// Runs the action an event asks for, tenant-naming ones included:
/// `{"action": "rotate-key", "tenantId": "tn_…", "resume": false}` or
/// `{"action": "shred", "tenantId": "tn_…"}`. A rotation holds the migrations lease, so that it
/// never runs beside `up` or another rotation ([`jobs::rotate_key::leased`]).
pub async fn run_event(db: &Db, directory: &dyn Directory, event: &Value) -> Result<Report, MigrationError> {
    let action = parse_event(event)?;
    if !matches!(action, Action::RotateKey | Action::Shred) {
        return run(db, directory, action).await;
    }
    let tenant = event
        .get("tenantId")
        .and_then(Value::as_str)
        .and_then(|t| shared::ids::TenantId::parse(t).ok())
        .ok_or_else(|| MigrationError::BadEvent("rotate-key and shred need a valid tenantId".into()))?;
    if action == Action::Shred {
        return Ok(Report::Shred(jobs::shred::shred(db, &tenant).await?));
    }
    let resume = event.get("resume").and_then(Value::as_bool).unwrap_or(false);
    Ok(Report::RotateKey(jobs::rotate_key::leased(db, &tenant, resume).await?))
}

/// How long an invocation may run when its caller gives no deadline (the template's timeout is
/// 300 s).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(240);

/// The Lambda entry point: parse the event, run, return the report as JSON.
pub async fn handle_event(db: &Db, directory: &dyn Directory, event: Value) -> Result<Value, MigrationError> {
    handle_event_within(db, directory, event, DEFAULT_BUDGET).await
}

/// [`handle_event`] with the invocation's time left, which a CloudFormation custom resource
/// request needs (see [`deploy`]). Every run is counted in the metrics (`MigrationErrors`).
pub async fn handle_event_within(db: &Db, directory: &dyn Directory, event: Value, budget: Duration) -> Result<Value, MigrationError> {
    if let Some(request) = deploy::CustomResourceEvent::parse(&event) {
        let outcome = match request {
            Ok(request) => deploy::handle(db, directory, &request, budget).await,
            Err(e) => Err(e),
        };
        let failed = outcome.as_ref().map(|body| body["Status"] != "SUCCESS").unwrap_or(true);
        let applied = outcome.as_ref().ok().and_then(|body| body["Data"]["migrationsApplied"].as_u64()).unwrap_or(0);
        shared::metrics::migration_run("deploy", applied, failed);
        return outcome;
    }
    let outcome = run_event(db, directory, &event).await;
    let applied = match &outcome {
        Ok(Report::Up { applied, .. }) => applied.len() as u64,
        _ => 0,
    };
    let action = event.get("action").and_then(Value::as_str).unwrap_or("up");
    shared::metrics::migration_run(action, applied, outcome.is_err());
    Ok(serde_json::to_value(outcome?).expect("reports always serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn manual_actions_are_parsed() {
        assert_eq!(parse_event(&json!({"action": "setup"})).unwrap(), Action::Setup);
        assert_eq!(parse_event(&json!({"action": "status"})).unwrap(), Action::Status);
        assert_eq!(parse_event(&json!({"action": "usage-snapshot"})).unwrap(), Action::UsageSnapshot);
        assert_eq!(parse_event(&json!({"action": "reconcile-counters"})).unwrap(), Action::ReconcileCounters);
        assert_eq!(parse_event(&json!({"action": "reconcile-tombstones"})).unwrap(), Action::ReconcileTombstones);
    }

    #[test]
    fn the_usage_snapshot_action_and_its_report_share_one_name() {
        assert_eq!(serde_json::to_value(Action::UsageSnapshot).unwrap(), json!("usage-snapshot"));
        let report = Report::UsageSnapshot { day: "2026-11-28".into(), tenants_measured: 2, snapshots_written: 2 };
        assert_eq!(
            serde_json::to_value(report).unwrap(),
            json!({"action": "usage-snapshot", "day": "2026-11-28", "tenantsMeasured": 2, "snapshotsWritten": 2})
        );
    }

    #[test]
    fn a_scheduled_event_means_up() {
        let e = json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
        assert_eq!(parse_event(&e).unwrap(), Action::Up);
    }

    #[test]
    fn anything_else_is_a_permanent_error() {
        for e in [json!({}), json!({"action": "drop"}), json!({"detail-type": "Other", "source": "aws.events"})] {
            let err = parse_event(&e).unwrap_err();
            assert!(!err.is_retryable());
            let d = lambda_runtime::Diagnostic::from(err);
            assert_eq!(d.error_type, "MigrationError.Permanent");
        }
    }
}
