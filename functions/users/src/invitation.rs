//! The invitation as a durable saga (docs/ARCHITECTURE.md §21), on the same machinery as
//! onboarding, in the same collection, keyed by its tenant. The checks that read only (the
//! roles, the caller's own permissions, an existing member with the address) run before it; its
//! steps each survive a crash, a lost reply and a retry:
//! 1. `record`: the pending record, sealed, under an id fixed up front (stored sealed on the saga
//!    with this step: the first personal data the saga holds);
//! 2. `seat`: a seat (and an admin place with the admin role), marked on the tenant record by the
//!    saga's id so that a redo never takes a second one;
//! 3. `email`: the address claimed in the global index (another tenant's: the one global refusal);
//! 4. `directory`: the Cognito user, which sends the invitation, linked by its `sub`: the commit
//!    point. Once the record is linked the invitation is made, whatever was lost after.
//!
//! A failure undoes, in reverse, what was recorded and the step started; a re-invitation of an
//! address whose saga is still open in this tenant resumes that saga instead of answering 409.

use crate::error::UsersError;
use crate::input::Invitation;
use crate::person::{self, Person};
use futures_util::future::BoxFuture;
use mongodb::bson::{self, doc, oid::ObjectId, Document};
use roles::service::{by_ids, system_role_id, ADMIN_ROLE, DEFAULT_ROLE};
use serde::{Deserialize, Serialize};
use shared::db::{Db, DbError, SystemContext, SystemTenantScope, TenantCollection};
use shared::directory::Directory;
use shared::error::ApiError;
use shared::ids::{Email, TenantId};
use shared::models::{CognitoLink, Profile, User};
use shared::saga::{run_steps, Begun, Caller, IdempotencyKey, NewSaga, Run, Saga, SagaKind, SagaState, Sagas, StepFaults, Steps};
use shared::TenantContext;

pub const RECORD: &str = "record";
pub const SEAT: &str = "seat";
pub const EMAIL: &str = "email";
pub const DIRECTORY: &str = "directory";
/// The steps, in order.
pub const STEPS: [&str; 4] = [RECORD, SEAT, EMAIL, DIRECTORY];

/// What an invitation fixes up front: no personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    record_id: ObjectId,
    /// The roles' ids, checked against the caller's permissions before the saga began.
    roles: Vec<String>,
    /// Whether the roles include the admin role (an admin place with the seat).
    admin: bool,
}

impl Params {
    fn of(saga: &Saga) -> Result<Self, DbError> {
        Ok(bson::from_document(saga.params.clone())?)
    }
}

/// What an invitation came to: the invited person, and whether this call made it (201) or
/// replayed an earlier call's outcome (200).
#[derive(Debug)]
pub struct Invited {
    pub person: Person,
    pub fresh: bool,
}

fn scope(tenant: &TenantId) -> SystemTenantScope {
    SystemContext::new("invitation").for_tenant(tenant.clone())
}

/// Invites `inv` into the caller's tenant. With an idempotency key, a replay answers the first
/// outcome (a 422 for another body, a 409 while another call holds it); without one, an open
/// saga for the same address in this tenant is resumed; else a new saga begins once the
/// read-only checks pass.
pub async fn invite(
    db: &Db,
    directory: &dyn Directory,
    ctx: &TenantContext,
    idempotency: Option<(&Caller, &IdempotencyKey)>,
    inv: &Invitation,
    faults: &dyn StepFaults,
) -> Result<Invited, UsersError> {
    let tenant = ctx.tenant_id();
    let sagas = Sagas::new(db);
    let lookup = person::email_index(db, tenant, &inv.email).await?;
    let roles = match &inv.roles {
        Some(ids) => {
            let found = by_ids(db, ctx, ids).await?;
            if let Some(missing) = ids.iter().find(|id| !found.iter().any(|r| r.id == **id)) {
                return Err(UsersError::RoleNotFound(*missing));
            }
            found
        }
        None => {
            let id = system_role_id(db, ctx, DEFAULT_ROLE).await?.ok_or(UsersError::CountersMissing)?;
            by_ids(db, ctx, &[id]).await?
        }
    };
    crate::service::no_escalation(db, ctx, &roles).await?;
    let begun = match (idempotency, sagas.open_by_lookup(SagaKind::Invitation, tenant, &lookup).await?) {
        (None, Some(open)) => sagas.rejoin_open(open).await?,
        (idempotency, _) => {
            if idempotency.is_none() {
                // The tenant's own answer, before anything is written: the address is a member.
                let users = db.scoped::<User>(ctx, TenantCollection::Users);
                if users.find_one(person::email_filter(db, tenant, &inv.email).await?).await?.is_some() {
                    return Err(UsersError::AlreadyUser);
                }
            }
            let params = Params {
                record_id: ObjectId::new(),
                roles: roles.iter().map(|r| r.id.to_hex()).collect(),
                admin: roles.iter().any(|r| r.is_system && r.name == ADMIN_ROLE),
            };
            let request = canonical(inv);
            let new = NewSaga {
                kind: SagaKind::Invitation,
                tenant_id: tenant.clone(),
                idempotency,
                request: &request,
                params: bson::to_document(&params).map_err(DbError::from)?,
                lookup: Some(lookup),
                id: None,
                first: Some(RECORD),
            };
            sagas.begin(new).await?
        }
    };
    match begun {
        Begun::Run(run) => {
            let max_users = Some(ctx.tenant().settings.max_users);
            let person = match drive_with(db, directory, *run, Some(inv), max_users, faults).await? {
                (_, Some(user)) => person::open(db, tenant, user).await?,
                (saga, None) => invited(db, &saga).await?,
            };
            Ok(Invited { person, fresh: true })
        }
        Begun::Finished(saga) if saga.state == SagaState::Completed => Ok(Invited { person: invited(db, &saga).await?, fresh: false }),
        Begun::Finished(saga) => Err(saga.error.map(UsersError::Replayed).unwrap_or(UsersError::Concurrent)),
        Begun::InProgress { retry_after } => Err(UsersError::InProgress(retry_after)),
        Begun::Mismatch => Err(UsersError::KeyReused),
    }
}

/// The request in one canonical form (what a replay's body is compared by, as a keyed digest).
fn canonical(inv: &Invitation) -> Vec<u8> {
    let roles = inv.roles.as_ref().map(|r| r.iter().map(|id| id.to_hex()).collect::<Vec<_>>());
    serde_json::json!([inv.email.as_str(), inv.first_name, inv.last_name, roles]).to_string().into_bytes()
}

/// The person a completed invitation made, opened.
async fn invited(db: &Db, saga: &Saga) -> Result<Person, UsersError> {
    let params = Params::of(saga)?;
    let users = db.scoped::<User>(&scope(&saga.tenant_id), TenantCollection::Users);
    let user = users.find_one(doc! {"_id": params.record_id}).await?.ok_or(UsersError::NotFound(params.record_id))?;
    Ok(person::open(db, &saga.tenant_id, user).await?)
}

/// The invitation's steps for [`run_steps`].
struct InvitationSteps<'a> {
    db: &'a Db,
    directory: &'a dyn Directory,
    params: &'a Params,
    input: Option<&'a Invitation>,
    /// The plan's `maxUsers` as admission read it (a caller's run), tried first.
    max_users: Option<i64>,
    /// The record as the commit point left it, linked (no read to answer with it).
    linked: std::sync::Mutex<Option<User>>,
}

impl Steps for InvitationSteps<'_> {
    type Error = UsersError;

    fn order(&self) -> &'static [&'static str] {
        &STEPS
    }

    fn act<'a>(&'a self, run: &'a Run, step: &'static str) -> BoxFuture<'a, Result<Document, UsersError>> {
        Box::pin(act(self, run, step))
    }
}

async fn act(steps: &InvitationSteps<'_>, run: &Run, step: &'static str) -> Result<Document, UsersError> {
    let (db, params) = (steps.db, steps.params);
    let saga = run.saga();
    let tenant = &saga.tenant_id;
    let scope = scope(tenant);
    let users = db.scoped::<User>(&scope, TenantCollection::Users);
    if step == RECORD {
        let inv = steps.input.ok_or(UsersError::Abandoned)?;
        let record = sealed_record(db, tenant, params, inv).await?;
        match users.insert_one(&record).await {
            Ok(_) => {}
            Err(DbError::Duplicate) if users.find_one(doc! {"_id": params.record_id}).await?.is_some() => {}
            // The unique {tenantId, emailHash}: another record holds the address.
            Err(DbError::Duplicate) => return Err(UsersError::AlreadyUser),
            Err(e) => return Err(e.into()),
        }
        return Ok(doc! {"sealed": {"record": bson::to_document(&record).map_err(DbError::from)?}});
    }
    let record = stored_record(saga)?.ok_or(UsersError::Abandoned)?;
    match step {
        SEAT => take_seat(db, tenant, &saga.id, params.admin, steps.max_users).await?,
        EMAIL => {
            crate::signups::claim_email(db, steps.directory, &scope, &person::email(db, tenant, &record).await?).await?;
        }
        DIRECTORY => {
            let linked = match crate::service::provision(db, steps.directory, &scope, &record).await {
                Ok(user) => user,
                // Linked before (a redo after a lost reply or a crash): the record says so.
                Err(UsersError::Concurrent) => match users.find_one(doc! {"_id": params.record_id}).await? {
                    Some(user) if user.cognito_user_id.sub().is_some() => user,
                    _ => return Err(UsersError::Concurrent),
                },
                Err(e) => return Err(e),
            };
            *steps.linked.lock().expect("poisoned") = Some(linked);
        }
        _ => return Err(UsersError::Abandoned),
    }
    Ok(Document::new())
}

/// Step 1's record: sealed with the tenant's keys, under the saga's fixed id, with the roles as
/// checked when the saga began.
async fn sealed_record(db: &Db, tenant: &TenantId, params: &Params, inv: &Invitation) -> Result<User, UsersError> {
    let profile = Profile { first_name: inv.first_name.clone(), last_name: inv.last_name.clone(), ..Profile::default() };
    let mut record = person::pending_record(db, tenant, &inv.email, &profile, &[]).await?;
    record.id = params.record_id;
    record.cognito_user_id = CognitoLink::Pending(params.record_id);
    record.roles = params.roles.clone();
    Ok(record)
}

fn stored_record(saga: &Saga) -> Result<Option<User>, DbError> {
    match saga.sealed.as_ref().and_then(|s| s.get_document("record").ok()) {
        Some(record) => Ok(Some(bson::from_document(record.clone())?)),
        None => Ok(None),
    }
}

/// Step 2: a seat bounded by the plan's `maxUsers` (as admission read it, else as read now); a
/// plan change in between moves the bound, and the take is tried again with the new one.
async fn take_seat(db: &Db, tenant: &TenantId, saga: &str, admin: bool, max_users: Option<i64>) -> Result<(), UsersError> {
    let own = db.own_tenant(&scope(tenant));
    let current_max = || async {
        let current = own.get().await?.ok_or(UsersError::CountersMissing)?;
        if current.counters.is_none() {
            return Err(UsersError::CountersMissing);
        }
        Ok::<_, UsersError>(current.settings.max_users)
    };
    let mut max = match max_users {
        Some(max) => max,
        None => current_max().await?,
    };
    for _ in 0..3 {
        if own.take_saga_seat(saga, max, admin).await? {
            return Ok(());
        }
        let now = current_max().await?;
        if now == max {
            return Err(UsersError::NoSeat(max));
        }
        max = now;
    }
    Err(UsersError::Concurrent)
}

/// Finishes the invitation whose lease `run` holds: resumes it from its last recorded step, or
/// compensates it when it must. `input` is the request, when a caller (not the sweeper) runs
/// it. The completed saga, or the error that ended it.
pub async fn drive(
    db: &Db,
    directory: &dyn Directory,
    run: Run,
    input: Option<&Invitation>,
    faults: &dyn StepFaults,
) -> Result<Saga, UsersError> {
    drive_with(db, directory, run, input, None, faults).await.map(|(saga, _)| saga)
}

/// [`drive`] for a caller's run: the plan's seats as admission read them, and the linked record
/// when this run passed the commit point.
async fn drive_with(
    db: &Db,
    directory: &dyn Directory,
    mut run: Run,
    input: Option<&Invitation>,
    max_users: Option<i64>,
    faults: &dyn StepFaults,
) -> Result<(Saga, Option<User>), UsersError> {
    let params = Params::of(run.saga())?;
    // A compensation left unfinished (the undo met an outage too) is finished first; then an
    // outage's failure lets the caller's retry start over, anything else ends the saga with it.
    if let Some(start_over) = run.unfinished_compensation(input.is_some()) {
        if linked(db, &run, &params).await? {
            return Ok((complete(db, run, &params).await?, None));
        }
        let failure = run.saga().pending_failure.clone().unwrap_or_else(|| ApiError::from(UsersError::Abandoned).into_failure("abandoned"));
        if !start_over {
            return finish_undo(db, directory, run, &params, input, failure, false).await;
        }
        if let Err(error) = compensate(db, directory, &run, &params, input).await {
            tracing::error!(userId = %params.record_id, %error, "an invitation's compensation still does not finish");
            run.leave("compensation incomplete", Some(&failure)).await;
            return Err(UsersError::Replayed(failure));
        }
        run.restart(RECORD).await?;
    }
    if run.exhausted() || (input.is_none() && !run.saga().did(RECORD)) {
        return match linked(db, &run, &params).await? {
            true => Ok((complete(db, run, &params).await?, None)),
            false => undo(db, directory, run, &params, input, UsersError::Abandoned).await,
        };
    }
    let steps = InvitationSteps { db, directory, params: &params, input, max_users, linked: std::sync::Mutex::new(None) };
    match run_steps(&steps, &mut run, faults).await {
        Ok(()) => {
            let saga = complete(db, run, &params).await?;
            Ok((saga, steps.linked.into_inner().expect("poisoned")))
        }
        Err(error @ UsersError::InProgress(_)) => Err(error),
        // Past the commit point the invitation is made: a lost reply there is no failure.
        Err(error) => match linked(db, &run, &params).await {
            Ok(true) => {
                tracing::warn!(userId = %params.record_id, %error, "an invitation reported a failure but its user is linked");
                Ok((complete(db, run, &params).await?, None))
            }
            Ok(false) => undo(db, directory, run, &params, input, error).await,
            Err(read) => {
                tracing::error!(userId = %params.record_id, %error, %read, "an invitation's outcome is unknown; left for a retry");
                run.leave("outcome unknown", Some(&ApiError::outage_failure())).await;
                Err(read)
            }
        },
    }
}

/// Whether the invitation's record is linked to its Cognito user: the commit point passed.
async fn linked(db: &Db, run: &Run, params: &Params) -> Result<bool, UsersError> {
    let users = db.scoped::<User>(&scope(&run.saga().tenant_id), TenantCollection::Users);
    Ok(users.find_one(doc! {"_id": params.record_id}).await?.is_some_and(|u| u.cognito_user_id.sub().is_some()))
}

async fn complete(db: &Db, run: Run, params: &Params) -> Result<Saga, UsersError> {
    let (tenant, id) = (run.saga().tenant_id.clone(), run.saga().id.clone());
    let saga = run.complete(doc! {"userId": params.record_id}).await?;
    // The seat is the record's now; the mark is only bookkeeping (a leftover one is harmless).
    if let Err(error) = db.own_tenant(&scope(&tenant)).settle_saga_seat(&id).await {
        tracing::warn!(tenantId = %tenant, %error, "could not drop a completed invitation's seat mark");
    }
    Ok(saga)
}

/// Compensates, then ends the saga `failed` with `error`'s failure; if the compensation cannot
/// finish, leaves it running for the sweeper. Returns `error` either way.
async fn undo(
    db: &Db,
    directory: &dyn Directory,
    mut run: Run,
    params: &Params,
    input: Option<&Invitation>,
    error: UsersError,
) -> Result<(Saga, Option<User>), UsersError> {
    tracing::warn!(tenantId = %run.saga().tenant_id, userId = %params.record_id, %error, "an invitation failed; compensating");
    // The one global refusal keeps its own kind: the route audits it and counts it against the
    // tenant's budget. Every other failure is answered as it is recorded.
    let email_taken = matches!(error, UsersError::EmailTaken);
    let code = match &error {
        UsersError::EmailTaken => "email_taken",
        UsersError::AlreadyUser => "already_user",
        UsersError::NoSeat(_) => "no_seat",
        UsersError::Abandoned => "abandoned",
        _ => "",
    };
    let failure = ApiError::from(error).into_failure(code);
    run.compensating().await?;
    finish_undo(db, directory, run, params, input, failure, email_taken).await
}

/// Compensates a saga marked `compensating` and ends it `failed` with `failure`; if the
/// compensation cannot finish, leaves it for the next taker with `failure` kept. The caller gets
/// `failure` either way (as [`UsersError::EmailTaken`] itself when `email_taken`).
async fn finish_undo(
    db: &Db,
    directory: &dyn Directory,
    run: Run,
    params: &Params,
    input: Option<&Invitation>,
    failure: shared::saga::Failure,
    email_taken: bool,
) -> Result<(Saga, Option<User>), UsersError> {
    match compensate(db, directory, &run, params, input).await {
        Ok(()) => {
            run.fail(failure.clone()).await?;
        }
        Err(undo) => {
            tracing::error!(userId = %params.record_id, error = %undo, "an invitation's compensation did not finish; left for the next taker");
            run.leave("compensation incomplete", Some(&failure)).await;
        }
    }
    Err(if email_taken { UsersError::EmailTaken } else { UsersError::Replayed(failure) })
}

/// Undoes, in reverse, every step the saga recorded or started, on its own ids and claims.
async fn compensate(db: &Db, directory: &dyn Directory, run: &Run, params: &Params, input: Option<&Invitation>) -> Result<(), UsersError> {
    let saga = run.saga();
    let tenant = &saga.tenant_id;
    let scope = scope(tenant);
    let users = db.scoped::<User>(&scope, TenantCollection::Users);
    let email: Option<Email> = match (input, stored_record(saga)?) {
        (Some(inv), _) => Some(inv.email.clone()),
        (None, Some(record)) => Some(person::email(db, tenant, &record).await?),
        (None, None) => None,
    };
    if saga.touched(DIRECTORY) {
        if let Some(email) = &email {
            crate::service::discard_unlinked_user(db, directory, &scope, email, params.record_id).await?;
        }
    }
    if saga.touched(EMAIL) {
        if let Some(email) = &email {
            // Released only if no other record of the tenant holds the address.
            let mut others = person::email_filter(db, tenant, email).await?;
            others.insert("_id", doc! {"$ne": params.record_id});
            if users.find_one(others).await?.is_none() {
                db.keyring()?.release_email(tenant, email).await.map_err(DbError::from)?;
            }
        }
    }
    if saga.touched(SEAT) {
        db.own_tenant(&scope).give_back_saga_seat(&saga.id).await?;
    }
    if saga.touched(RECORD) {
        users.delete_one(doc! {"_id": params.record_id}).await?;
    }
    Ok(())
}
