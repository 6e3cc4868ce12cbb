//! The onboarding saga (docs/ARCHITECTURE.md §21): a tenant, its system roles and its admin,
//! made in steps that each survive a crash, a lost reply and a retry. Every id is fixed up
//! front, in the saga's parameters, so that a resumption redoes a step onto the same documents
//! and a compensation removes exactly those:
//! 1. `keys`: the tenant's personal-data keys (insert-if-absent under its id); then the admin's
//!    record and the billing e-mail are sealed with them and stored on the saga, the first
//!    personal data the saga holds;
//! 2. `domain`: the domain is claimed (another tenant's is a permanent 409);
//! 3. `email`: the admin's e-mail is claimed in the global index (another tenant's: a 409);
//! 4. `roles`: the three system roles, under their fixed ids;
//! 5. `admin`: the admin's pending record;
//! 6. `directory`: the admin's Cognito user, which sends the invitation, linked by its `sub`
//!    (the users crate's provisioning, which adopts the user of a lost reply);
//! 7. `register`: the registry insert, with the seat and admin counters at one each: the
//!    commit point. After it nothing fails, and no compensation runs.
//!
//! A failure before the commit point undoes, in reverse, every step recorded and the one started
//! but not recorded. Before undoing anything the registry is read: a registered tenant is made
//! (the commit's reply was lost), and the saga completes instead.

use crate::error::OnboardingError;
use crate::input::Onboarding;
use futures_util::future::BoxFuture;
use mongodb::bson::{self, doc, oid::ObjectId, Document};
use serde::{Deserialize, Serialize};
use shared::db::{Db, DbError, DomainClaim, FindOptions, SystemContext, SystemTenantScope, TenantCollection};
use shared::directory::Directory;
use shared::ids::{Domain, Email, TenantId};
use shared::models::{CognitoLink, Customization, Profile, Role, Tenant, TenantCounters, TenantSettings, TenantStatus, User};
use shared::pii::{Field, Sealed};
use shared::plans::Plan;
use shared::saga::{run_steps, Run, Saga, StepFaults, Steps};

pub const KEYS: &str = "keys";
pub const DOMAIN: &str = "domain";
pub const EMAIL: &str = "email";
pub const ROLES: &str = "roles";
pub const ADMIN: &str = "admin";
pub const DIRECTORY: &str = "directory";
pub const REGISTER: &str = "register";
/// The steps, in order.
pub const STEPS: [&str; 7] = [KEYS, DOMAIN, EMAIL, ROLES, ADMIN, DIRECTORY, REGISTER];

/// What an onboarding fixes up front: no personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    pub tenant_name: String,
    pub domain: Option<Domain>,
    pub plan: Plan,
    pub admin_id: ObjectId,
    /// The system roles' ids, in the order of `roles::service::system_roles`.
    pub role_ids: Vec<ObjectId>,
    pub customization: Customization,
}

impl Params {
    /// Fresh ids for `input`.
    pub fn new(input: &Onboarding) -> Self {
        let mut customization = Customization { theme: Some("default".into()), ..Customization::default() };
        if let Some(c) = &input.customization {
            customization.logo = c.logo.clone().or(customization.logo);
            customization.primary_color = c.primary_color.clone().or(customization.primary_color);
            customization.theme = c.theme.clone().or(customization.theme);
        }
        Self {
            tenant_name: input.tenant_name.clone(),
            domain: input.domain.clone(),
            plan: input.plan,
            admin_id: ObjectId::new(),
            role_ids: roles::service::system_roles().iter().map(|_| ObjectId::new()).collect(),
            customization,
        }
    }

    fn of(saga: &Saga) -> Result<Self, DbError> {
        Ok(bson::from_document(saga.params.clone())?)
    }
}

/// The personal fields, sealed under the tenant's keys once they exist (step 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SealedFields {
    admin: User,
    billing_email: Sealed,
}

impl SealedFields {
    fn of(saga: &Saga) -> Result<Option<Self>, DbError> {
        saga.sealed.clone().map(bson::from_document).transpose().map_err(Into::into)
    }
}

/// What a saga's steps run with.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    pub db: &'a Db,
    pub directory: &'a dyn Directory,
    pub faults: &'a dyn StepFaults,
}

impl Env<'_> {
    fn scope(&self, tenant: &TenantId) -> SystemTenantScope {
        SystemContext::new("onboarding").for_tenant(tenant.clone())
    }
}

/// Finishes the saga whose lease `run` holds: resumes it from its last recorded step, or
/// compensates it when it must (exhausted, or nothing sealed to finish from and no request in
/// hand). `input` is the request, when a caller (not the sweeper) runs it. The completed saga,
/// or the error that ended it (a failed saga's is [`OnboardingError::Replayed`]).
pub async fn drive(env: &Env<'_>, mut run: Run, input: Option<&Onboarding>) -> Result<Saga, OnboardingError> {
    let params = Params::of(run.saga())?;
    // A compensation left unfinished (the undo met an outage too) is finished first; then an
    // outage's failure lets the caller's retry start over, anything else ends the saga with it.
    if let Some(start_over) = run.unfinished_compensation(input.is_some()) {
        if registered(env, &run).await?.is_some() {
            return Ok(complete(run).await?);
        }
        let failure = run.saga().pending_failure.clone().unwrap_or_else(|| OnboardingError::Abandoned.failure());
        if !start_over {
            return finish_undo(env, run, &params, input, failure).await;
        }
        if let Err(error) = compensate(env, &run, &params, input).await {
            tracing::error!(tenantId = %run.saga().tenant_id, %error, "onboarding's compensation still does not finish");
            run.leave("compensation incomplete", Some(&failure)).await;
            return Err(OnboardingError::Replayed(failure));
        }
        run.restart(KEYS).await?;
    }
    if run.exhausted() || (input.is_none() && !run.saga().did(KEYS)) {
        if registered(env, &run).await?.is_some() {
            return Ok(complete(run).await?);
        }
        return undo(env, run, &params, input, OnboardingError::Abandoned).await;
    }
    match steps(env, &mut run, &params, input).await {
        Ok(()) => Ok(complete(run).await?),
        Err(error @ OnboardingError::InProgress(_)) => Err(error),
        Err(error) => match registered(env, &run).await {
            Ok(Some(_)) => {
                tracing::warn!(tenantId = %run.saga().tenant_id, %error, "onboarding reported a failure but the tenant is registered");
                Ok(complete(run).await?)
            }
            Ok(None) => undo(env, run, &params, input, error).await,
            Err(read) => {
                // The outcome is unknown: undo nothing; a retry or the sweeper finds out.
                tracing::error!(tenantId = %run.saga().tenant_id, %error, %read, "onboarding's outcome is unknown; left for a retry");
                run.leave("outcome unknown", Some(&shared::error::ApiError::outage_failure())).await;
                Err(read)
            }
        },
    }
}

/// Ends the saga with its tenant's id as the result.
async fn complete(run: Run) -> Result<Saga, shared::saga::SagaError> {
    let result = doc! {"tenantId": run.saga().tenant_id.as_str()};
    run.complete(result).await
}

async fn registered(env: &Env<'_>, run: &Run) -> Result<Option<Tenant>, OnboardingError> {
    Ok(env.db.tenants(&SystemContext::new("onboarding")).get(&run.saga().tenant_id).await?)
}

/// The admin's e-mail: from the request in hand, or opened from the sealed record.
async fn admin_email(env: &Env<'_>, run: &Run, input: Option<&Onboarding>) -> Result<Option<Email>, OnboardingError> {
    if let Some(input) = input {
        return Ok(Some(input.admin_email.clone()));
    }
    match SealedFields::of(run.saga())? {
        Some(sealed) => Ok(Some(users::person::email(env.db, &run.saga().tenant_id, &sealed.admin).await?)),
        None => Ok(None),
    }
}

/// The onboarding's steps for [`shared::saga::run_steps`].
struct OnboardingSteps<'a> {
    env: &'a Env<'a>,
    tenant: TenantId,
    params: &'a Params,
    input: Option<&'a Onboarding>,
    /// [`STEPS`], or the first alone (a sign-up's request).
    order: &'static [&'static str],
}

impl Steps for OnboardingSteps<'_> {
    type Error = OnboardingError;

    fn order(&self) -> &'static [&'static str] {
        self.order
    }

    fn act<'a>(&'a self, run: &'a Run, step: &'static str) -> BoxFuture<'a, Result<Document, OnboardingError>> {
        Box::pin(act(self.env, run, &self.tenant, self.params, self.input, step))
    }
}

async fn steps(env: &Env<'_>, run: &mut Run, params: &Params, input: Option<&Onboarding>) -> Result<(), OnboardingError> {
    let steps = OnboardingSteps { env, tenant: run.saga().tenant_id.clone(), params, input, order: &STEPS };
    run_steps(&steps, run, env.faults).await
}

/// A sign-up's request (docs/ARCHITECTURE.md §21): only the first step, which makes the
/// tenant's keys and stores the request's personal fields sealed; then the saga is queued for
/// the sweeper, which runs the rest as an onboarding's. A failure there is compensated at once
/// (the keys of a tenant never registered are discarded) and the saga ends `failed`.
pub async fn seal_and_queue(env: &Env<'_>, mut run: Run, input: &Onboarding) -> Result<Saga, OnboardingError> {
    let params = Params::of(run.saga())?;
    if !run.saga().did(KEYS) {
        let first = OnboardingSteps { env, tenant: run.saga().tenant_id.clone(), params: &params, input: Some(input), order: &[KEYS] };
        if let Err(error) = run_steps(&first, &mut run, env.faults).await {
            return match error {
                error @ OnboardingError::InProgress(_) => Err(error),
                error => undo(env, run, &params, Some(input), error).await,
            };
        }
    }
    Ok(run.queue().await?)
}

/// What step `name` does; what it returns is stored on the saga with its record.
async fn act(
    env: &Env<'_>,
    run: &Run,
    tenant: &TenantId,
    params: &Params,
    input: Option<&Onboarding>,
    name: &str,
) -> Result<Document, OnboardingError> {
    let db = env.db;
    let scope = env.scope(tenant);
    let registry = db.tenants(&SystemContext::new("onboarding"));
    let users = db.scoped::<User>(&scope, TenantCollection::Users);
    if name == KEYS {
        // The one step that needs the request: the sweeper never gets here (see `drive`).
        let sealed = seal(db, tenant, params, input.ok_or(OnboardingError::Abandoned)?).await?;
        return Ok(doc! {"sealed": bson::to_document(&sealed).map_err(DbError::from)?});
    }
    let sealed = SealedFields::of(run.saga())?.ok_or(OnboardingError::Abandoned)?;
    match name {
        DOMAIN => {
            if let Some(domain) = &params.domain {
                if registry.claim_domain(domain, tenant).await? == DomainClaim::Taken {
                    return Err(OnboardingError::DomainTaken(domain.to_string()));
                }
            }
        }
        EMAIL => {
            let email = admin_email(env, run, input).await?.ok_or(OnboardingError::Abandoned)?;
            users::signups::claim_email(db, env.directory, &scope, &email).await?;
        }
        ROLES => seed_roles(db, &scope, params).await?,
        ADMIN => match users.insert_one(&sealed.admin).await {
            Ok(_) => {}
            // Written before (a lost reply, a crash before the record): the same document.
            Err(DbError::Duplicate) if users.find_one(doc! {"_id": params.admin_id}).await?.is_some() => {}
            Err(source @ DbError::Duplicate) => return Err(OnboardingError::Unexpected { step: ADMIN, source }),
            Err(e) => return Err(e.into()),
        },
        DIRECTORY => match users::service::provision(db, env.directory, &scope, &sealed.admin).await {
            Ok(_) => {}
            // Linked before (a redo after a lost reply or a crash): the record says so.
            Err(users::error::UsersError::Concurrent) => {
                let record = users.find_one(doc! {"_id": params.admin_id}).await?;
                if record.is_none_or(|r| r.cognito_user_id.sub().is_none()) {
                    return Err(OnboardingError::Users(users::error::UsersError::Concurrent));
                }
            }
            Err(e) => return Err(e.into()),
        },
        REGISTER => match registry.insert(&new_tenant(db, tenant, params, &sealed)).await {
            Ok(()) => {}
            Err(DbError::Duplicate) if registry.get(tenant).await?.is_some() => {}
            Err(e) => return Err(e.into()),
        },
        _ => unreachable!("a step of STEPS"),
    }
    Ok(Document::new())
}

/// Step 1: the tenant's keys, then the admin's record and billing e-mail sealed with them.
async fn seal(db: &Db, tenant: &TenantId, params: &Params, input: &Onboarding) -> Result<SealedFields, OnboardingError> {
    let keyring = db.keyring()?;
    keyring.create_tenant_keys(tenant).await.map_err(DbError::from)?;
    let profile = Profile { first_name: input.admin_first_name.clone(), last_name: input.admin_last_name.clone(), ..Profile::default() };
    let admin_role = [system_role(params, roles::service::ADMIN_ROLE)];
    let mut admin = users::person::pending_record(db, tenant, &input.admin_email, &profile, &admin_role).await?;
    admin.id = params.admin_id;
    admin.cognito_user_id = CognitoLink::Pending(params.admin_id);
    let billing_email = keyring.seal(tenant, Field::BillingEmail, input.admin_email.as_str()).await.map_err(DbError::from)?;
    Ok(SealedFields { admin, billing_email })
}

/// The system roles under the saga's ids.
fn system_roles(params: &Params) -> Vec<Role> {
    let mut roles = roles::service::system_roles();
    for (role, id) in roles.iter_mut().zip(&params.role_ids) {
        role.id = *id;
    }
    roles
}

fn system_role(params: &Params, name: &str) -> Role {
    system_roles(params).into_iter().find(|r| r.name == name).expect("a system role of the catalogue")
}

/// Step 4: writes the roles not written yet (a resumption finds some or all of them).
async fn seed_roles(db: &Db, scope: &SystemTenantScope, params: &Params) -> Result<(), OnboardingError> {
    let roles = db.scoped::<Role>(scope, TenantCollection::Roles);
    let present: Vec<ObjectId> =
        roles.find(doc! {"_id": {"$in": &params.role_ids}}, FindOptions::default()).await?.into_iter().map(|r| r.id).collect();
    let missing: Vec<Role> = system_roles(params).into_iter().filter(|r| !present.contains(&r.id)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    match roles::service::seed_system_roles(db, scope, &missing).await {
        Ok(()) => Ok(()),
        Err(e @ DbError::Duplicate) => {
            let now = roles.count_documents(doc! {"_id": {"$in": &params.role_ids}}).await?;
            if now == params.role_ids.len() as u64 {
                Ok(())
            } else {
                Err(OnboardingError::Unexpected { step: ROLES, source: e })
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The registry record: the commit point's document.
fn new_tenant(db: &Db, tenant: &TenantId, params: &Params, sealed: &SealedFields) -> Tenant {
    let now = db.clock().now();
    let mut settings = TenantSettings::for_plan(params.plan, sealed.billing_email.clone());
    settings.customization = params.customization.clone();
    Tenant {
        id: ObjectId::new(),
        tenant_id: tenant.clone(),
        name: params.tenant_name.clone(),
        domain: params.domain.as_ref().map(|d| d.to_string()),
        settings,
        status: TenantStatus::Active,
        suspended_at: None,
        suspension_reason: None,
        api_usage: Default::default(),
        minute_usage: Default::default(),
        counters: Some(TenantCounters { seats: 1, admins: 1 }),
        api_key_count: 0,
        audit_retention: None,
        keys_shredded_at: None,
        offboarding: None,
        restoring: None,
        created_at: now,
        updated_at: now,
    }
}

/// Compensates, then ends the saga `failed` with `error`'s failure. If the compensation cannot
/// finish, the saga is left running for the sweeper, marked to be compensated, and the caller
/// gets `error` all the same.
async fn undo(
    env: &Env<'_>,
    mut run: Run,
    params: &Params,
    input: Option<&Onboarding>,
    error: OnboardingError,
) -> Result<Saga, OnboardingError> {
    tracing::warn!(tenantId = %run.saga().tenant_id, %error, "onboarding failed; compensating");
    let failure = error.failure();
    if let Err(e) = run.compensating().await {
        return Err(e.into());
    }
    finish_undo(env, run, params, input, failure).await
}

/// Compensates a saga marked `compensating` and ends it `failed` with `failure`; if the
/// compensation cannot finish, leaves it for the next taker with `failure` kept. The caller gets
/// `failure` either way.
async fn finish_undo(
    env: &Env<'_>,
    run: Run,
    params: &Params,
    input: Option<&Onboarding>,
    failure: shared::saga::Failure,
) -> Result<Saga, OnboardingError> {
    match compensate(env, &run, params, input).await {
        Ok(()) => {
            let saga = run.fail(failure.clone()).await?;
            tracing::info!(sagaId = %saga.id, code = %failure.code, "onboarding compensated");
            Err(OnboardingError::Replayed(failure))
        }
        Err(undo) => {
            tracing::error!(tenantId = %run.saga().tenant_id, error = %undo, "onboarding's compensation did not finish; left for the next taker");
            run.leave("compensation incomplete", Some(&failure)).await;
            Err(OnboardingError::Replayed(failure))
        }
    }
}

/// Undoes, in reverse, every step the saga recorded or started. Each undo acts on this saga's
/// own ids and claims only, and is harmless when its step never acted. The first failure stops
/// it (the sweeper runs it again).
async fn compensate(env: &Env<'_>, run: &Run, params: &Params, input: Option<&Onboarding>) -> Result<(), OnboardingError> {
    let saga = run.saga();
    let tenant = &saga.tenant_id;
    let scope = env.scope(tenant);
    let db = env.db;
    let registry = db.tenants(&SystemContext::new("onboarding"));
    let email = if saga.touched(DIRECTORY) || saga.touched(EMAIL) { admin_email(env, run, input).await? } else { None };
    if saga.touched(DIRECTORY) {
        if let Some(email) = &email {
            users::service::discard_unlinked_user(db, env.directory, &scope, email, params.admin_id).await?;
        }
    }
    if saga.touched(ADMIN) || saga.touched(DIRECTORY) {
        db.scoped::<User>(&scope, TenantCollection::Users).delete_one(doc! {"_id": params.admin_id}).await?;
    }
    if saga.touched(ROLES) {
        db.scoped::<Role>(&scope, TenantCollection::Roles).delete_many(doc! {"_id": {"$in": &params.role_ids}}).await?;
    }
    if saga.touched(EMAIL) {
        if let Some(email) = &email {
            db.keyring()?.release_email(tenant, email).await.map_err(DbError::from)?;
        }
    }
    if saga.touched(DOMAIN) {
        if let Some(domain) = &params.domain {
            registry.release_domain(domain.as_str(), tenant).await?;
        }
    }
    if saga.touched(KEYS) && registry.get(tenant).await?.is_none() {
        db.keyring()?.discard_unregistered(tenant).await.map_err(DbError::from)?;
    }
    Ok(())
}
