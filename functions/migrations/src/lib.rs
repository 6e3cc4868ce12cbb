//! The migrations Lambda: `setup` builds the indexes, `up` runs pending migrations under a
//! lease, `status` reports, `usage-snapshot` records each tenant's data growth. An EventBridge
//! scheduled event means `up`.

pub mod counters;
pub mod deploy;
pub mod indexes;
pub mod personal;
pub mod registry;
pub mod usage;

use mongodb::bson::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::db::{Db, DbError, LockGuard, MigrationRecord, SystemContext};
use shared::directory::Directory;
use shared::seam::Seam;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// What an invocation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Setup,
    Up,
    Status,
    /// Measures every tenant's documents and bytes per collection, emits them as metrics and
    /// writes today's snapshot ([`usage`]).
    #[serde(rename = "usage-snapshot")]
    UsageSnapshot,
    /// A new data key for the event's `tenantId`, and its personal data re-encrypted under it;
    /// with `"resume": true`, finishes an earlier rotation without a new key ([`personal`]).
    #[serde(rename = "rotate-key")]
    RotateKey,
    /// Destroys the event's `tenantId`'s personal-data keys ([`personal::shred`]).
    Shred,
    /// Recounts every tenant's seats, admins and key places and corrects a counter that drifted
    /// ([`counters`]).
    #[serde(rename = "reconcile-counters")]
    ReconcileCounters,
}

/// The lease that keeps `up` runs apart.
pub const LOCK_NAME: &str = "migrations";
/// How long a lease lasts: past the Lambda timeout (300 s), so that a live run never loses it.
pub const LOCK_TTL: Duration = Duration::from_secs(360);
/// How long a second `up` waits for the first before giving up (it can retry later).
pub const LOCK_WAIT: Duration = Duration::from_secs(20);

/// Why an invocation failed, and whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("unrecognised event: {0}")]
    BadEvent(String),
    /// `shred` named a tenant the registry does not hold; nothing was written.
    #[error("Tenant {0} not found")]
    UnknownTenant(shared::ids::TenantId),
    #[error("another run holds the migrations lease")]
    LockBusy,
    #[error("the migrations lease was lost (it expired and another run took it); stopped before {0}")]
    LockLost(&'static str),
    #[error("migration {name} failed")]
    Failed { name: &'static str, source: DbError },
    #[error("database error")]
    Db(#[from] DbError),
    #[error("could not deliver the response to CloudFormation: {0}")]
    Undelivered(String),
}

impl From<shared::pii::PiiError> for MigrationError {
    fn from(e: shared::pii::PiiError) -> Self {
        MigrationError::Db(DbError::Pii(e))
    }
}

impl MigrationError {
    /// Whether invoking again later may succeed: a busy lease or a transient database error.
    pub fn is_retryable(&self) -> bool {
        match self {
            MigrationError::BadEvent(_) | MigrationError::UnknownTenant(_) => false,
            MigrationError::LockBusy | MigrationError::LockLost(_) | MigrationError::Undelivered(_) => true,
            MigrationError::Failed { source, .. } | MigrationError::Db(source) => source.is_retryable(),
        }
    }
}

impl From<MigrationError> for lambda_runtime::Diagnostic {
    fn from(e: MigrationError) -> Self {
        let retry = if e.is_retryable() { "Retryable" } else { "Permanent" };
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        lambda_runtime::Diagnostic { error_type: format!("MigrationError.{retry}"), error_message: message }
    }
}

/// Reads the action: `{"action": "setup" | "up" | "status" | "usage-snapshot" | "reconcile-counters" | …}`, or a scheduled
/// event, which means `up`.
pub fn parse_event(event: &Value) -> Result<Action, MigrationError> {
    if let Some(action) = event.get("action") {
        return serde_json::from_value(action.clone()).map_err(|_| {
            MigrationError::BadEvent(
                "action must be one of setup, up, status, usage-snapshot, rotate-key, shred, reconcile-counters".into(),
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

/// One applied migration in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub name: String,
    pub duration_ms: i64,
    pub documents_changed: u64,
}

/// What an invocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Report {
    Setup {
        created: usize,
        existing: usize,
        indexes: Vec<indexes::IndexOutcome>,
    },
    #[serde(rename_all = "camelCase")]
    Up {
        applied: Vec<Applied>,
        already_applied: Vec<String>,
    },
    #[serde(rename_all = "camelCase")]
    Status {
        applied: Vec<StatusEntry>,
        pending: Vec<String>,
        personal_data: PersonalDataStatus,
    },
    /// The UTC day the snapshots are of, how many tenants were measured and how many snapshots
    /// written (a rerun the same day replaces them).
    #[serde(rename = "usage-snapshot", rename_all = "camelCase")]
    UsageSnapshot {
        day: String,
        tenants_measured: u64,
        snapshots_written: u64,
    },
    #[serde(rename = "rotate-key")]
    RotateKey(personal::RotationReport),
    #[serde(rename = "shred")]
    Shred(personal::ShredReport),
    #[serde(rename = "reconcile-counters")]
    ReconcileCounters(counters::ReconcileReport),
}

/// What `status` reports of personal data: how much plaintext the sealing migration has still
/// to seal (zero once it has run), and how many tenants have keys in the vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonalDataStatus {
    pub remaining: personal::Remaining,
    pub remaining_total: u64,
    pub tenants_with_keys: u64,
}

/// An applied migration as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusEntry {
    pub name: String,
    pub applied_at: String,
    pub duration_ms: i64,
}

/// Runs one action that names no tenant. `directory` is the user pool, for the migrations that
/// repair user records. `rotate-key` and `shred` name their tenant: see [`run_event`].
#[tracing::instrument(skip(db, directory))]
pub async fn run(db: &Db, directory: &dyn Directory, action: Action) -> Result<Report, MigrationError> {
    let system = SystemContext::new("migrations");
    match action {
        Action::Setup => setup(db).await,
        Action::Up => up(db, directory, registry::MIGRATIONS, Guard::Lease, &shared::seam::NoSeam).await,
        Action::Status => status(db, &system).await,
        Action::UsageSnapshot => usage::snapshot(db).await,
        Action::ReconcileCounters => counters::reconcile(db, &shared::seam::NoSeam).await,
        Action::RotateKey | Action::Shred => {
            Err(MigrationError::BadEvent("rotate-key and shred name a tenant: {\"action\": …, \"tenantId\": …}".into()))
        }
    }
}

/// Runs the action an event asks for, tenant-naming ones included:
/// `{"action": "rotate-key", "tenantId": "tn_…", "resume": false}` or
/// `{"action": "shred", "tenantId": "tn_…"}`. A rotation holds the migrations lease, so that it
/// never runs beside `up` or another rotation.
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
    let system = SystemContext::new("migrations");
    if action == Action::Shred {
        return Ok(Report::Shred(personal::shred(db, &tenant).await?));
    }
    let resume = event.get("resume").and_then(Value::as_bool).unwrap_or(false);
    let owner = mongodb::bson::oid::ObjectId::new().to_hex();
    let Some(lease) = db.locks(&system).try_acquire(LOCK_NAME, &owner, LOCK_TTL).await? else {
        return Err(MigrationError::LockBusy);
    };
    let result = personal::rotate(db, &system, &tenant, resume, &shared::seam::NoSeam).await;
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "could not release the migrations lease");
    }
    Ok(Report::RotateKey(result?))
}

/// How `up` keeps concurrent runs apart. Deployments always take the lease; `Unguarded` exists
/// only so that a test can show its check catches a migration that runs twice without it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    Lease,
    Unguarded,
}

/// `setup`: every index, idempotently. It touches no document and needs no directory.
pub async fn setup(db: &Db) -> Result<Report, MigrationError> {
    let outcomes = indexes::ensure(&db.indexes(&SystemContext::new("migrations"))).await?;
    let created = outcomes.iter().filter(|o| o.status == "created").count();
    Ok(Report::Setup { created, existing: outcomes.len() - created, indexes: outcomes })
}

/// `up` over a given list of migrations. A run waits (bounded by [`LOCK_WAIT`]) for another's
/// lease, telling `seam` each time it finds the lease held (`migrations.lease.busy`).
#[doc(hidden)]
pub async fn up(
    db: &Db,
    directory: &dyn Directory,
    migrations: &[registry::Migration],
    guard: Guard,
    seam: &dyn Seam,
) -> Result<Report, MigrationError> {
    let system = SystemContext::new("migrations");
    let deps = registry::Deps { db, system: &system, directory };
    if guard == Guard::Unguarded {
        return apply_pending(deps, migrations, None).await;
    }
    let owner = mongodb::bson::oid::ObjectId::new().to_hex();
    let locks = db.locks(&system);
    let waited = Instant::now();
    let lease = loop {
        if let Some(lease) = locks.try_acquire(LOCK_NAME, &owner, LOCK_TTL).await? {
            break lease;
        }
        seam.reached("migrations.lease.busy").await;
        if waited.elapsed() >= LOCK_WAIT {
            return Err(MigrationError::LockBusy);
        }
        // Waiting for another run's lease: poll, bounded by LOCK_WAIT.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let result = apply_pending(deps, migrations, Some(&lease)).await;
    // Release even after a failure; if this fails too, the lease expires by itself.
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "could not release the migrations lease");
    }
    result
}

async fn apply_pending(
    deps: registry::Deps<'_>,
    migrations: &[registry::Migration],
    lease: Option<&LockGuard>,
) -> Result<Report, MigrationError> {
    let ledger = deps.db.migration_ledger(deps.system);
    let done: HashSet<String> = ledger.applied().await?.into_iter().map(|r| r.name).collect();
    let (mut applied, mut already_applied) = (Vec::new(), Vec::new());
    for migration in migrations {
        if done.contains(migration.name) {
            already_applied.push(migration.name.to_owned());
            continue;
        }
        // Each migration starts with a full lease, and only while the lease is still ours.
        if let Some(lease) = lease {
            if !lease.renew(LOCK_TTL).await? {
                return Err(MigrationError::LockLost(migration.name));
            }
        }
        let started = Instant::now();
        let applied_at = DateTime::now();
        let changed = (migration.run)(deps).await.map_err(|source| MigrationError::Failed { name: migration.name, source })?;
        let duration_ms = started.elapsed().as_millis() as i64;
        let record = MigrationRecord { name: migration.name.to_owned(), applied_at, duration_ms };
        if ledger.record(&record).await? {
            tracing::info!(migration = migration.name, duration_ms, changed, "migration applied");
            applied.push(Applied { name: migration.name.to_owned(), duration_ms, documents_changed: changed });
        } else {
            already_applied.push(migration.name.to_owned());
        }
    }
    Ok(Report::Up { applied, already_applied })
}

async fn status(db: &Db, system: &SystemContext) -> Result<Report, MigrationError> {
    let records = db.migration_ledger(system).applied().await?;
    let done: HashSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
    let pending = registry::MIGRATIONS.iter().filter(|m| !done.contains(m.name)).map(|m| m.name.to_owned()).collect();
    let applied = records
        .iter()
        .map(|r| StatusEntry { name: r.name.clone(), applied_at: shared::clock::rfc3339_millis(r.applied_at), duration_ms: r.duration_ms })
        .collect();
    let remaining = personal::remaining(db, system).await?;
    let tenants_with_keys = db.keyring()?.vault().tenants_with_keys().await?.len() as u64;
    let personal_data = PersonalDataStatus { remaining, remaining_total: remaining.total(), tenants_with_keys };
    Ok(Report::Status { applied, pending, personal_data })
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

    #[test]
    fn a_busy_lease_is_retryable() {
        assert!(MigrationError::LockBusy.is_retryable());
    }
}
