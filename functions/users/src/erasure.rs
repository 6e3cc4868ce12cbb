//! A person's erasure (docs/ARCHITECTURE.md §22), a durable saga on the machinery of §21 that
//! only rolls forward: once the directory user is deleted nothing can be put back, so a failed
//! step leaves the saga for the next taker (a retry, or the sweeper), which resumes it from its
//! last recorded step. Its id is fixed by the tenant and the user, so every request for the same
//! person finds the same saga. The steps:
//! 1. `hold`: the seat and the admin place given back, once, marked by the saga's id on the
//!    tenant record (the last admin stays: a 409 before anything else changes), then the record
//!    made `inactive`, its markers cleared and `erasing` set, and the tombstone written in
//!    `userErasures`: admission refuses the person's tokens from here, their refusals are
//!    audited without their address, and no other change touches the record;
//! 2. `directory`: the Cognito user deleted, if it carries the record's `sub` and this tenant;
//! 3. `keys`: every key the person created, revoked;
//! 4. `audit`: the personal values of every entry about the person removed: the actor's address
//!    and user agent where they acted, the personal detail keys where they acted or were acted
//!    on, and an address's blind index wherever an entry holds theirs;
//! 5. `traces`: their finished invitation sagas deleted, and their global e-mail claim released;
//! 6. `exports`: the files of every export of the tenant begun until now deleted (they hold the
//!    person; an export begun later skips the held record, and its audit entries are scrubbed
//!    already), once no worker is still writing one;
//! 7. `record`: the record deleted, the mark dropped.

use crate::error::UsersError;
use crate::person;
use futures_util::future::BoxFuture;
use mongodb::bson::{self, doc, oid::ObjectId, Bson, DateTime, Document};
use roles::service::{system_role_id, ADMIN_ROLE};
use serde::{Deserialize, Serialize};
use shared::admission::forget_tenant_members;
use shared::audit::ERASED_DETAIL_KEYS;
use shared::db::{Db, DbError, SystemContext, SystemTenantScope, TenantCollection};
use shared::directory::Directory;
use shared::error::ApiError;
use shared::ids::TenantId;
use shared::models::{User, UserErasure, UserStatus, MARKED_AT};
use shared::saga::{run_steps, Begun, NewSaga, Run, Saga, SagaKind, SagaState, Sagas, StepFaults, Steps};
use shared::TenantContext;

pub const HOLD: &str = "hold";
pub const DIRECTORY: &str = "directory";
pub const KEYS: &str = "keys";
pub const AUDIT: &str = "audit";
pub const TRACES: &str = "traces";
pub const EXPORTS: &str = "exports";
pub const RECORD: &str = "record";
/// The steps, in order.
pub const STEPS: [&str; 7] = [HOLD, DIRECTORY, KEYS, AUDIT, TRACES, EXPORTS, RECORD];

/// How often `hold` reads the record again when it changed under it before answering 409.
const TRIES: usize = 3;

/// What an erasure fixes up front: ids only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    user_id: ObjectId,
    /// The `sub` the record links, if any: the actor id of the person's audit entries.
    #[serde(default)]
    former_sub: Option<String>,
    /// The actor id of whoever asked.
    erased_by: String,
}

impl Params {
    fn of(saga: &Saga) -> Result<Self, DbError> {
        Ok(bson::from_document(saga.params.clone())?)
    }
}

/// What an erasure came to: when it ended, and whether this call finished it (a replay of an
/// erasure done before answers the same, `fresh: false`).
#[derive(Debug, Clone)]
pub struct Erased {
    pub user_id: ObjectId,
    pub erased_at: DateTime,
    pub fresh: bool,
}

fn scope(tenant: &TenantId) -> SystemTenantScope {
    SystemContext::new("erasure").for_tenant(tenant.clone())
}

/// The saga's id: one per tenant and user, whoever asks and however often.
fn saga_id(tenant: &TenantId, user: ObjectId) -> String {
    format!("erasure:{tenant}:{}", user.to_hex())
}

/// The tombstone of `user`, if the person was erased.
async fn tombstone(db: &Db, tenant: &TenantId, user: ObjectId) -> Result<Option<UserErasure>, DbError> {
    db.scoped::<UserErasure>(&scope(tenant), TenantCollection::UserErasures).find_one(doc! {"_id": user}).await
}

/// Erases user `id` of the caller's tenant, or answers how an earlier erasure of it ended.
/// Nobody erases themselves, nor someone holding a permission they lack; a record whose
/// invitation is still being made is a 409, as is the tenant's last admin.
pub async fn erase(
    db: &Db,
    directory: &dyn Directory,
    ctx: &TenantContext,
    id: ObjectId,
    faults: &dyn StepFaults,
) -> Result<Erased, UsersError> {
    if ctx.user_id() == Some(id) {
        return Err(UsersError::SelfChange("erase"));
    }
    let tenant = ctx.tenant_id();
    let sagas = Sagas::new(db);
    let begun_before = sagas.get(&saga_id(tenant, id)).await?;
    // An erasure left open (a crash, an outage, a lost reply after the record went) is resumed
    // even once the tombstone exists; only an ended one is answered from the tombstone.
    if begun_before.as_ref().is_none_or(|s| s.state == SagaState::Completed) {
        if let Some(done) = tombstone(db, tenant, id).await? {
            return Ok(Erased { user_id: id, erased_at: done.erased_at, fresh: false });
        }
    }
    let record = db.scoped::<User>(ctx, TenantCollection::Users).find_one(doc! {"_id": id}).await?;
    if let Some(user) = &record {
        crate::service::not_above_caller(db, ctx, user).await?;
    }
    let begun = match (begun_before, record) {
        // Begun before: taken as a replay would (a live lease is a 409, a retryable failure
        // starts over).
        (Some(open), _) => sagas.rejoin_open(open).await?,
        (None, None) => return Err(UsersError::NotFound(id)),
        (None, Some(user)) => {
            let Some(sub) = user.cognito_user_id.sub() else {
                // Its invitation's saga is still open: that saga owns the record until it ends.
                return Err(UsersError::Unlinked);
            };
            // Linked, but its saga has not ended (a crash after the link): the same.
            if sagas.invitation_open_for(tenant, id).await? {
                return Err(UsersError::Unlinked);
            }
            let params = Params { user_id: id, former_sub: Some(sub.to_owned()), erased_by: ctx.identity().actor_id() };
            let new = NewSaga {
                kind: SagaKind::Erasure,
                tenant_id: tenant.clone(),
                idempotency: None,
                request: &[],
                params: bson::to_document(&params).map_err(DbError::from)?,
                lookup: None,
                id: Some(saga_id(tenant, id)),
                first: Some(HOLD),
            };
            sagas.begin(new).await?
        }
    };
    match begun {
        Begun::Run(run) => {
            let saga = drive(db, directory, *run, faults).await?;
            Ok(Erased { user_id: id, erased_at: erased_at(&saga), fresh: true })
        }
        Begun::Finished(saga) if saga.state == SagaState::Completed => {
            Ok(Erased { user_id: id, erased_at: erased_at(&saga), fresh: false })
        }
        Begun::Finished(saga) => Err(saga.error.map(UsersError::Replayed).unwrap_or(UsersError::Concurrent)),
        Begun::InProgress { retry_after } => Err(UsersError::InProgress(retry_after)),
        Begun::Mismatch => Err(UsersError::Concurrent),
    }
}

fn erased_at(saga: &Saga) -> DateTime {
    saga.result.as_ref().and_then(|r| r.get_datetime("erasedAt").ok().copied()).or(saga.finished_at).unwrap_or(saga.updated_at)
}

/// Runs the erasure whose lease `run` holds to its end, from its last recorded step. The only
/// refusal is the last admin's, met before anything changed: the saga ends `failed` and
/// retryable (a 409), so the same request succeeds once the tenant has another admin. Any other
/// error leaves the saga running for the next taker; nothing is ever undone.
pub async fn drive(db: &Db, directory: &dyn Directory, mut run: Run, faults: &dyn StepFaults) -> Result<Saga, UsersError> {
    let params = Params::of(run.saga())?;
    let steps = ErasureSteps { db, directory, params: &params };
    match run_steps(&steps, &mut run, faults).await {
        Ok(()) => {
            let erased_at =
                tombstone(db, &run.saga().tenant_id, params.user_id).await?.map(|t| t.erased_at).unwrap_or_else(|| db.clock().now());
            Ok(run.complete(doc! {"userId": params.user_id, "erasedAt": erased_at}).await?)
        }
        Err(UsersError::LastAdmin) if !run.saga().did(HOLD) => {
            let mut failure = ApiError::from(UsersError::LastAdmin).into_failure("last_admin");
            failure.retryable = true;
            run.fail(failure).await?;
            Err(UsersError::LastAdmin)
        }
        // The record went before it was held (a deletion won the race): nothing to erase.
        Err(UsersError::NotFound(id)) if !run.saga().did(HOLD) => {
            run.fail(ApiError::from(UsersError::NotFound(id)).into_failure("not_found")).await?;
            Err(UsersError::NotFound(id))
        }
        Err(error) => {
            run.pause(&error.to_string()).await;
            Err(error)
        }
    }
}

/// The sweeper's turn at an erasure left running.
pub async fn resume(db: &Db, directory: &dyn Directory, run: Run) -> Result<Saga, UsersError> {
    drive(db, directory, run, &shared::saga::NoFaults).await
}

/// The erasure's steps for [`run_steps`].
struct ErasureSteps<'a> {
    db: &'a Db,
    directory: &'a dyn Directory,
    params: &'a Params,
}

impl Steps for ErasureSteps<'_> {
    type Error = UsersError;

    fn order(&self) -> &'static [&'static str] {
        &STEPS
    }

    fn act<'a>(&'a self, run: &'a Run, step: &'static str) -> BoxFuture<'a, Result<Document, UsersError>> {
        Box::pin(act(self, run, step))
    }
}

async fn act(steps: &ErasureSteps<'_>, run: &Run, step: &'static str) -> Result<Document, UsersError> {
    let (db, params) = (steps.db, steps.params);
    let saga = run.saga();
    let tenant = &saga.tenant_id;
    let scope = scope(tenant);
    let users = db.scoped::<User>(&scope, TenantCollection::Users);
    let held = doc! {"_id": params.user_id, "erasing": &saga.id};
    if step == HOLD {
        hold(db, &scope, &saga.id, params.user_id).await?;
        // The tombstone from the moment the record is held: the refusals of the person's
        // still-signed token are written without their address from then on.
        let erasure = UserErasure {
            id: params.user_id,
            tenant_id: None,
            user_id: params.user_id.to_hex(),
            former_sub: params.former_sub.clone(),
            erased_at: db.clock().now(),
            erased_by: params.erased_by.clone(),
        };
        match db.scoped::<UserErasure>(&scope, TenantCollection::UserErasures).insert_one(&erasure).await {
            // A redo finds its own tombstone.
            Ok(_) | Err(DbError::Duplicate) => {}
            Err(e) => return Err(e.into()),
        }
        forget_tenant_members(db, tenant);
        return Ok(Document::new());
    }
    if step == EXPORTS {
        shared::exports::delete_tenant_exports(db, tenant).await?;
        // And the jobs the person asked for no longer name them.
        if let Some(sub) = &params.former_sub {
            shared::jobs::Jobs::new(db).forget_requester(tenant, sub).await?;
        }
        return Ok(Document::new());
    }
    if step == RECORD {
        users.delete_one(held).await?;
        db.own_tenant(&scope).settle_saga_release(&saga.id).await?;
        forget_tenant_members(db, tenant);
        return Ok(Document::new());
    }
    // Steps 2 to 5 read what they need from the record, which stays until step 6.
    let Some(user) = users.find_one(held).await? else { return Err(UsersError::NotFound(params.user_id)) };
    match step {
        DIRECTORY => match crate::service::delete_own_directory_user(db, steps.directory, &scope, &user).await {
            // Shredded meanwhile: no address opens to find the Cognito user by, and the tenant
            // admits no one any more.
            Ok(()) | Err(UsersError::Db(DbError::Pii(shared::pii::PiiError::Shredded(_)))) => {}
            Err(e) => return Err(e),
        },
        KEYS => {
            api_keys::service::revoke_all_of(db, &scope, params.user_id).await.map_err(|e| UsersError::Keys(Box::new(e)))?;
        }
        AUDIT => scrub_audit(db, &scope, params, user.email_hash.as_deref()).await?,
        TRACES => {
            if let Some(lookup) = &user.email_hash {
                Sagas::new(db).forget_invitations(tenant, lookup, params.user_id).await?;
            }
            match person::email(db, tenant, &user).await {
                Ok(email) => {
                    db.keyring()?.release_email(tenant, &email).await.map_err(DbError::from)?;
                }
                // The tenant's keys were shredded meanwhile: the shred released every e-mail
                // claim of the tenant already.
                Err(DbError::Pii(shared::pii::PiiError::Shredded(_))) => {}
                Err(e) => return Err(e.into()),
            }
        }
        _ => return Err(UsersError::Concurrent),
    }
    Ok(Document::new())
}

/// Step 1. The places go first, bounded (the last admin stays) and marked by the saga, then the
/// record is held by a write conditional on the record as read. If the record changed in
/// between (a role or status change), the places are given back and it is read again; a redo
/// finds the mark and, if the record is unchanged, only writes the record.
async fn hold(db: &Db, scope: &SystemTenantScope, saga: &str, id: ObjectId) -> Result<(), UsersError> {
    let users = db.scoped::<User>(scope, TenantCollection::Users);
    let own = db.own_tenant(scope);
    let admin_role = system_role_id(db, scope, ADMIN_ROLE).await?.ok_or(UsersError::CountersMissing)?.to_hex();
    for _ in 0..TRIES {
        if users.find_one(doc! {"_id": id, "erasing": saga}).await?.is_some() {
            return Ok(());
        }
        let Some(user) = users.find_one(doc! {"_id": id}).await? else {
            // Deleted before it could be held: whatever an earlier attempt gave up goes back.
            own.give_back_saga_release(saga).await?;
            return Err(UsersError::NotFound(id));
        };
        let wanted = (user.holds_seat(), user.holds_admin_place(&admin_role));
        match own.release_for_saga(saga, wanted.0, wanted.1).await? {
            None => return Err(UsersError::LastAdmin),
            Some(released) if released != wanted => {
                // Released for the record as an earlier attempt read it: give that back first.
                own.give_back_saga_release(saga).await?;
                continue;
            }
            Some(_) => {}
        }
        let op = ObjectId::new();
        let set = doc! {
            "status": UserStatus::Inactive.as_str(), "erasing": saga, "seatHeld": false, "adminHeld": false,
            "markerOp": op, MARKED_AT: db.clock().now(),
        };
        match users.update_one(crate::service::as_read(&user), doc! {"$set": set}, false).await {
            Ok(outcome) if outcome.matched == 1 => return Ok(()),
            Ok(_) => own.give_back_saga_release(saga).await?,
            // Lost or refused: the redo reads the record again, and the mark keeps the places.
            Err(e) => return Err(e.into()),
        }
    }
    Err(UsersError::Concurrent)
}

/// Step 4: one update per kind of entry, each safe to run again. The actor id (`userId`, the
/// person's `sub`) stays, resolved to "erased user" through the tombstone's `formerSub`; the
/// entries say so themselves (`actorErased`), so that reading the log needs no second query.
async fn scrub_audit(db: &Db, scope: &SystemTenantScope, params: &Params, email_hash: Option<&str>) -> Result<(), DbError> {
    let audit = db.scoped::<Document>(scope, TenantCollection::AuditLogs);
    let personal: Document = ERASED_DETAIL_KEYS.iter().map(|k| (format!("details.{k}"), Bson::String(String::new()))).collect();
    if let Some(sub) = &params.former_sub {
        // `ip` and `userAgent` are required fields of an entry: emptied, not removed.
        let update = doc! {"$set": {"ip": "", "userAgent": "", "actorErased": true}, "$unset": personal.clone()};
        audit.update_many(doc! {"userId": sub}, update, false).await?;
    }
    audit.update_many(doc! {"resourceId": params.user_id.to_hex()}, doc! {"$unset": personal}, false).await?;
    if let Some(hash) = email_hash {
        audit.update_many(doc! {"details.emailHash": hash}, doc! {"$unset": {"details.emailHash": ""}}, false).await?;
    }
    Ok(())
}
