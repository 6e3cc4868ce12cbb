//! The onboarding context's rules: starting or rejoining an onboarding saga, reading one, and
//! the sweep that finishes or undoes every kind of saga.

use crate::error::OnboardingError;
use crate::input::Onboarding;
use crate::saga::{self, Env, Params};
use futures_util::future::BoxFuture;
use mongodb::bson::{self, doc};
use shared::audit::{Action, AuditEvent};
use shared::db::{Db, DbError, SystemContext};
use shared::directory::Directory;
use shared::http::RequestMeta;
use shared::ids::TenantId;
use shared::metrics::Business;
use shared::models::Tenant;
use shared::saga::{
    Begun, Caller, IdempotencyKey, NewSaga, Run, Saga, SagaError, SagaKind, SagaState, Sagas, StepFaults, SweepOptions, SweepReport,
};

/// What an onboarding came to: the saga, its tenant, and whether this call finished it (201)
/// or replayed an outcome (200).
#[derive(Debug)]
pub struct Outcome {
    pub saga: Saga,
    pub tenant: Tenant,
    pub fresh: bool,
}

/// Onboards a tenant: a new saga, or, with an idempotency key its caller used before, that
/// saga's outcome (a replay), a 409 while another call works on it, or its resumption once its
/// lease expired. A key reused with another body is a 422.
pub async fn onboard(
    db: &Db,
    directory: &dyn Directory,
    sagas: &Sagas,
    idempotency: Option<(&Caller, &IdempotencyKey)>,
    input: &Onboarding,
    faults: &dyn StepFaults,
) -> Result<Outcome, OnboardingError> {
    start(&Env { db, directory, faults }, sagas, idempotency, input, TenantId::generate(), None).await
}

/// Onboards a tenant under a given id, its saga under a given id, with no idempotency key: for
/// fixtures that other fixtures name (the events' seed). An id already registered is refused
/// before anything is written.
pub async fn onboard_fixed(
    db: &Db,
    directory: &dyn Directory,
    tenant_id: TenantId,
    saga_id: &str,
    input: &Onboarding,
) -> Result<Outcome, OnboardingError> {
    if db.tenants(&SystemContext::new("onboarding")).get(&tenant_id).await?.is_some() {
        return Err(OnboardingError::Exists(tenant_id));
    }
    let env = Env { db, directory, faults: &shared::saga::NoFaults };
    start(&env, &Sagas::new(db), None, input, tenant_id, Some(saga_id.to_owned())).await
}

async fn start(
    env: &Env<'_>,
    sagas: &Sagas,
    idempotency: Option<(&Caller, &IdempotencyKey)>,
    input: &Onboarding,
    tenant_id: TenantId,
    id: Option<String>,
) -> Result<Outcome, OnboardingError> {
    let db = env.db;
    let params = bson::to_document(&Params::new(input)).map_err(DbError::from)?;
    let request = input.canonical();
    let new = NewSaga {
        kind: SagaKind::Onboarding,
        tenant_id,
        idempotency,
        request: &request,
        params,
        lookup: None,
        id,
        first: Some(saga::KEYS),
    };
    match sagas.begin(new).await? {
        Begun::Run(run) => {
            let saga = saga::drive(env, *run, Some(input)).await?;
            Ok(Outcome { tenant: registered(db, &saga).await?, saga, fresh: true })
        }
        Begun::Finished(saga) => outcome_of(db, *saga).await,
        Begun::InProgress { retry_after } => Err(OnboardingError::InProgress(retry_after)),
        Begun::Mismatch => Err(OnboardingError::KeyReused),
    }
}

/// The recorded outcome of a finished saga, answered again.
async fn outcome_of(db: &Db, saga: Saga) -> Result<Outcome, OnboardingError> {
    match (saga.state, &saga.error) {
        (SagaState::Completed, _) => Ok(Outcome { tenant: registered(db, &saga).await?, saga, fresh: false }),
        (_, Some(failure)) => Err(OnboardingError::Replayed(failure.clone())),
        _ => Err(OnboardingError::InProgress(shared::saga::LEASE_TTL.as_secs())),
    }
}

/// The tenant a completed onboarding registered.
async fn registered(db: &Db, saga: &Saga) -> Result<Tenant, OnboardingError> {
    let tenant = db.tenants(&SystemContext::new("onboarding")).get(&saga.tenant_id).await?;
    // A completed onboarding's tenant exists until it is offboarded.
    tenant.ok_or_else(|| OnboardingError::NotFound(saga.id.clone()))
}

/// One onboarding saga by id; an invitation's id, or a malformed one, is as unknown as a
/// missing one.
pub async fn status(db: &Db, id: &str) -> Result<Saga, OnboardingError> {
    let found = Sagas::new(db).get(id).await?;
    found.filter(|s| s.kind == SagaKind::Onboarding).ok_or_else(|| OnboardingError::NotFound(id.to_owned()))
}

/// Finishes or undoes one taken saga, by its kind, and reads it back as it ended.
pub async fn finish(db: &Db, directory: &dyn Directory, sagas: &Sagas, run: Run) -> Result<Saga, SagaError> {
    let id = run.saga().id.clone();
    let env = Env { db, directory, faults: &shared::saga::NoFaults };
    let ended = match run.saga().kind {
        SagaKind::Onboarding | SagaKind::Signup => saga::drive(&env, run, None).await.map(drop),
        SagaKind::Invitation => {
            users::invitation::drive(db, directory, run, None, env.faults).await.map(drop).map_err(OnboardingError::from)
        }
        SagaKind::Erasure => users::erasure::resume(db, directory, run).await.map(drop).map_err(OnboardingError::from),
        SagaKind::Purge => crate::purge::drive(db, directory, run, env.faults).await.map(drop),
    };
    if let Err(error) = ended {
        tracing::info!(sagaId = %id, %error, "the sweep ended a saga with an error");
    }
    let saga = sagas.get(&id).await?.ok_or(SagaError::Db(DbError::Duplicate))?;
    if saga.state == SagaState::Completed {
        audit_completion(db, &saga).await;
    }
    Ok(saga)
}

/// The audit entry (and business metric) of a saga the sweeper completed, as the route writes
/// for one its caller completed: by the system, since no request made it.
async fn audit_completion(db: &Db, saga: &Saga) {
    let Ok(Some(tenant)) = db.tenants(&SystemContext::new("sweep")).get(&saga.tenant_id).await else {
        tracing::error!(sagaId = %saga.id, "a completed saga's tenant could not be read; its audit entry is missing");
        return;
    };
    let (action, resource, details, metric) = match saga.kind {
        SagaKind::Onboarding | SagaKind::Signup => {
            let details = doc! {"name": &tenant.name, "plan": tenant.settings.billing.plan.as_str(), "actingAs": "system",
            "via": saga.kind.as_str()};
            (Action::TenantCreated, tenant.tenant_id.to_string(), details, Some(Business::TenantsCreated))
        }
        SagaKind::Invitation => {
            (Action::UserInvited, result_user(saga), doc! {"actingAs": "system", "via": "sweep"}, Some(Business::UsersInvited))
        }
        // No request saw this erasure end: the route audits only the ones its call ends.
        SagaKind::Erasure => (Action::UserErased, result_user(saga), doc! {"actingAs": "system", "via": "sweep"}, None),
        // A purged tenant has no log left to write to: its tombstone and receipt are the record.
        SagaKind::Purge => return,
    };
    let meta = RequestMeta { request_id: saga.id.clone(), ip: String::new(), user_agent: "saga sweep".into() };
    let event = AuditEvent { action, resource_id: Some(resource), details };
    let days = tenant.settings.audit_retention_days();
    if let Err(error) = shared::audit::record(db, &tenant.tenant_id, days, &meta, Some("system:sweep".into()), event).await {
        tracing::error!(sagaId = %saga.id, %error, "could not write the audit entry of a saga the sweep completed");
    }
    if let Some(metric) = metric {
        shared::metrics::business(metric, tenant.tenant_id.as_str());
    }
}

/// The user id a completed invitation or erasure names in its result.
fn result_user(saga: &Saga) -> String {
    saga.result.as_ref().and_then(|r| r.get_object_id("userId").ok()).map(|id| id.to_hex()).unwrap_or_default()
}

/// One sweep (docs/ARCHITECTURE.md §21): the purges of offboardings whose grace ended are
/// queued (§22), every saga whose lease expired more than `options.older_than` ago is finished
/// or compensated, old finished sagas are deleted, and the leftovers of tenants that were never
/// registered are reaped.
pub async fn sweep(db: &Db, directory: &dyn Directory, options: SweepOptions) -> Result<SweepReport, SagaError> {
    sweep_as(db, directory, &Sagas::new(db), options).await
}

/// [`sweep`] as the lease owner of `sagas` (a test's process).
pub async fn sweep_as(db: &Db, directory: &dyn Directory, sagas: &Sagas, options: SweepOptions) -> Result<SweepReport, SagaError> {
    // Before the purge of old finished sagas: an expired sign-up is told by its completed saga.
    let expired = match users::signups::expire_unconfirmed(db, directory, options.limit.min(1_000) as i64).await {
        Ok(n) => n,
        Err(error) => {
            tracing::error!(%error, "the sweep could not expire unconfirmed sign-ups; the next one tries again");
            0
        }
    };
    // Before the sagas are taken: a purge queued now is run by this very sweep.
    if let Err(error) = crate::offboarding::start_due_purges(db, options.limit as i64).await {
        tracing::error!(%error, "the sweep could not start the purges of ended grace periods; the next one tries again");
    }
    let finisher = |run: Run| -> BoxFuture<'_, Result<Saga, SagaError>> { Box::pin(finish(db, directory, sagas, run)) };
    let mut report = shared::saga::sweep(sagas, options, &finisher).await?;
    report.expired_signups = expired;
    Ok(report)
}
