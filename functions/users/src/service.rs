//! The users context's rules. Every counter move rides on a user-record write that matched:
//! the record filter pins the state (its status, exact roles and markers) that the counter
//! decision was made from, and a miss gives the counter back and reads again. The write sets
//! the markers (`seatHeld`, `adminHeld`) with its operation id, so that after a lost reply a
//! re-read tells whether it applied (docs/ARCHITECTURE.md §12).

use crate::error::UsersError;
use crate::input::{Invitation, ProfileChanges, UserChanges};
use crate::person::{self, Person};
use mongodb::bson::{doc, oid::ObjectId, Document};
use roles::service::{by_ids, system_role_id, ADMIN_ROLE};
use shared::admission::forget_tenant_members;
use shared::db::{Db, DbError, FindOptions, Scoped, TenantCollection, TenantScope};
use shared::directory::{Directory, DirectoryError};
use shared::ids::{Email, Permission};
use shared::models::{Role, User, UserStatus, MARKED_AT};
use shared::permissions::first_not_held;
use shared::pii::EmailClaim;
use shared::saga::{Caller, IdempotencyKey, StepFaults};
use shared::seam::{NoSeam, Seam};
use shared::TenantContext;

/// How often a state-dependent change re-reads and tries again before answering 409.
const TRIES: usize = 3;

fn users(db: &Db, scope: &impl TenantScope) -> Scoped<User> {
    db.scoped(scope, TenantCollection::Users)
}

/// Filters of `GET /users`.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub status: Option<UserStatus>,
    pub role: Option<ObjectId>,
    pub email: Option<Email>,
    pub page: u64,
    pub limit: u64,
}

/// A page of the tenant's users, newest first, opened, and how many match.
pub async fn list(db: &Db, ctx: &TenantContext, query: &UserQuery) -> Result<(Vec<Person>, u64), UsersError> {
    let mut filter = Document::new();
    if let Some(status) = query.status {
        filter.insert("status", status.as_str());
    }
    if let Some(role) = query.role {
        filter.insert("roles", role.to_hex());
    }
    if let Some(email) = &query.email {
        filter.extend(person::email_filter(db, ctx.tenant_id(), email).await?);
    }
    let options = FindOptions {
        sort: Some(doc! {"createdAt": -1, "_id": -1}),
        skip: Some((query.page - 1) * query.limit),
        limit: Some(query.limit as i64),
    };
    let users = users(db, ctx);
    let (page, total) = tokio::try_join!(users.find(filter.clone(), options), users.count_documents(filter))?;
    Ok((person::open_all(db, ctx.tenant_id(), page).await?, total))
}

/// One user of the caller's tenant; another tenant's id is as unknown as a missing one.
pub async fn get(db: &Db, ctx: &TenantContext, id: ObjectId) -> Result<User, UsersError> {
    users(db, ctx).find_one(doc! {"_id": id}).await?.ok_or(UsersError::NotFound(id))
}

/// The caller's own record.
pub async fn me(db: &Db, ctx: &TenantContext) -> Result<User, UsersError> {
    let id = ctx.user_id().ok_or(UsersError::SelfChange("read a profile for"))?;
    get(db, ctx, id).await
}

/// The tenant's admin role id: its holders (pending or active) are counted as admins. A tenant
/// always has one; its absence means the tenant is still being set up.
async fn admin_role(db: &Db, scope: &impl TenantScope) -> Result<ObjectId, UsersError> {
    system_role_id(db, scope, ADMIN_ROLE).await?.ok_or(UsersError::CountersMissing)
}

fn holds(user: &User, role: &ObjectId) -> bool {
    user.roles.iter().any(|r| *r == role.to_hex())
}

/// The record as read: its status, its exact roles and its markers (`seatHeld`, `adminHeld`,
/// absent pinned as absent). A write filtered on it matches only if none changed since, so the
/// counter moves and permission checks made from the read hold.
pub(crate) fn as_read(user: &User) -> Document {
    // A record held by an erasure (§22) is the erasure's alone: every other writer misses it.
    let mut filter = doc! {"_id": user.id, "status": user.status.as_str(), "roles": user.roles.clone(), "erasing": {"$exists": false}};
    for (field, held) in [("seatHeld", user.seat_held), ("adminHeld", user.admin_held)] {
        match held {
            Some(held) => filter.insert(field, held),
            None => filter.insert(field, doc! {"$exists": false}),
        };
    }
    filter
}

/// What a counter-coupled write of a user record came to (docs/ARCHITECTURE.md §12).
enum Written<T> {
    /// It applied: its reply, or the re-read after a lost one, says so.
    Applied(T),
    /// Its filter matched nothing: the record changed since it was read.
    Missed,
    /// It did not apply: a definite refusal, or a lost reply whose re-read shows no change.
    Failed(DbError),
    /// Its reply was lost and the re-read failed too: nothing is compensated, and the
    /// reconciliation job corrects whatever counter is off.
    Unknown(DbError),
}

/// The markers a record holds after a write, `$set` by that same write with the operation's id
/// (`markerOp`), so that after a lost reply a re-read tells whether the write was this one, and
/// its time (`markedAt`), so that the recount leaves the counters alone while the saga may still
/// be between this write and its counter move (docs/ARCHITECTURE.md §12).
fn markers(db: &Db, seat: bool, admin: bool, op: ObjectId) -> Document {
    doc! {"seatHeld": seat, "adminHeld": admin, "markerOp": op, MARKED_AT: db.clock().now()}
}

/// A record whose seat marker is cleared is being removed (a deletion, or an invitation's
/// compensation, stopped between clearing it and deleting it): only a deletion acts on it.
fn removing(user: &User) -> Result<(), UsersError> {
    match user.seat_held {
        Some(false) => Err(UsersError::NotFound(user.id)),
        _ => Ok(()),
    }
}

/// One `findAndModify` of a user record whose `$set` carries [`markers`] with `op`. A lost reply
/// is settled by reading the record again: it applied iff the record carries `op`.
async fn write_record(users: &Scoped<User>, id: ObjectId, filter: Document, update: Document, op: ObjectId) -> Written<User> {
    let error = match users.find_one_and_update(filter, update, false).await {
        Ok(Some(user)) => return Written::Applied(user),
        Ok(None) => return Written::Missed,
        Err(e) if !e.outcome_unknown() => return Written::Failed(e),
        Err(e) => e,
    };
    match users.find_one(doc! {"_id": id}).await {
        Ok(Some(user)) if user.marker_op == Some(op) => {
            tracing::warn!(userId = %id, %error, "a user write's reply was lost; it was applied");
            Written::Applied(user)
        }
        Ok(_) => Written::Failed(error),
        Err(reread) => {
            tracing::error!(userId = %id, %error, %reread, "a user write's outcome is unknown; the reconciliation job corrects the counters");
            Written::Unknown(error)
        }
    }
}

/// One conditional delete of a user record. A lost reply is settled by reading again: the
/// record gone means removed by this delete (a racing delete of the same record is the one case
/// this cannot tell; it would free the seat twice, and the reconciliation job corrects that).
async fn delete_record(users: &Scoped<User>, id: ObjectId, filter: Document) -> Written<()> {
    let error = match users.delete_one(filter).await {
        Ok(1) => return Written::Applied(()),
        Ok(_) => return Written::Missed,
        Err(e) if !e.outcome_unknown() => return Written::Failed(e),
        Err(e) => e,
    };
    match users.find_one(doc! {"_id": id}).await {
        Ok(None) => {
            tracing::warn!(userId = %id, %error, "a user delete's reply was lost; it was applied");
            Written::Applied(())
        }
        Ok(Some(_)) => Written::Failed(error),
        Err(reread) => {
            tracing::error!(userId = %id, %error, %reread, "a user delete's outcome is unknown; the reconciliation job corrects the counters");
            Written::Unknown(error)
        }
    }
}

/// Moves the counters after the record write that justifies them applied. The change stands
/// whatever happens here: a failure is logged, and the reconciliation job corrects the counter.
async fn follow_record(db: &Db, ctx: &TenantContext, seats: i64, admins: i64) {
    if let Err(error) = db.own_tenant(ctx).adjust_counters(seats, admins).await {
        tracing::error!(tenantId = %ctx.tenant_id(), seats, admins, %error, "a counter did not follow its record; the reconciliation job corrects it");
    }
}

/// Counter-coupled changes need the tenant's counters (set by migration 002 on older tenants).
fn counted(ctx: &TenantContext) -> Result<(), UsersError> {
    if ctx.tenant().counters.is_none() {
        return Err(UsersError::CountersMissing);
    }
    Ok(())
}

/// Gives an admin place back after the write it was taken for failed; best effort, logged.
async fn give_back_admin_place(db: &Db, ctx: &TenantContext) {
    if let Err(error) = db.own_tenant(ctx).adjust_counters(0, 1).await {
        tracing::error!(tenantId = %ctx.tenant_id(), %error, "could not give an admin place back; counters.admins is one low");
    }
}

/// Nobody acts on a user who holds a permission the caller lacks: managing a user is bounded by
/// the caller's permissions, as granting is. (Otherwise an operator with `update:users` could
/// deactivate, delete or strip an admin.)
pub(crate) async fn not_above_caller(db: &Db, ctx: &TenantContext, user: &User) -> Result<(), UsersError> {
    let ids: Vec<ObjectId> = user.roles.iter().filter_map(|r| ObjectId::parse_str(r).ok()).collect();
    let held: Vec<Permission> = by_ids(db, ctx, &ids).await?.into_iter().flat_map(|r| r.permissions).collect();
    match first_not_held(&ctx.fresh_permissions(db).await?.ok_or(UsersError::NotMember)?, &held) {
        Some(p) => Err(UsersError::Outranked(p.to_string())),
        None => Ok(()),
    }
}

/// Nobody grants what they lack, judged on the caller's permissions as they are now (a grant
/// outlives the permission cache's 60 s).
pub(crate) async fn no_escalation(db: &Db, ctx: &TenantContext, roles: &[Role]) -> Result<(), UsersError> {
    let held = ctx.fresh_permissions(db).await?.ok_or(UsersError::NotMember)?;
    for role in roles {
        if let Some(p) = first_not_held(&held, &role.permissions) {
            return Err(UsersError::Escalation(p.to_string()));
        }
    }
    Ok(())
}

/// What to do to a record's directory user.
#[derive(Debug, Clone, Copy)]
enum DirectoryAction {
    Delete,
    Enable(bool),
}

/// Acts on the directory user of `user`, but only if it is this record's own: the record is
/// linked, and the directory's user with its e-mail carries the record's `sub` and this
/// tenant's `custom:tenantId`. Anything else (a record whose invitation is still being made or
/// that predates links, an e-mail changed or reused, another tenant's account) is not this
/// record's to delete or disable, and is left alone.
async fn act_on_own_directory_user(
    db: &Db,
    directory: &dyn Directory,
    scope: &impl TenantScope,
    user: &User,
    action: DirectoryAction,
) -> Result<(), UsersError> {
    let Some(sub) = user.cognito_user_id.sub() else { return Ok(()) };
    let tenant = scope.scope_tenant();
    let email = person::email(db, tenant, user).await?;
    match directory.get_user(&email).await.map_err(UsersError::Directory)? {
        Some(found) if found.sub == sub && found.tenant.as_deref() == Some(tenant.as_str()) => {}
        _ => {
            tracing::warn!(userId = %user.id, "the directory user of this e-mail is not this record's; left alone");
            return Ok(());
        }
    }
    directory_done(match action {
        DirectoryAction::Delete => directory.delete_user(&email).await,
        DirectoryAction::Enable(enabled) => directory.set_enabled(&email, enabled).await,
    })
}

/// Deletes the directory user of `user` if it is the record's own (an erasure's step): gone
/// already is done.
pub async fn delete_own_directory_user(
    db: &Db,
    directory: &dyn Directory,
    scope: &impl TenantScope,
    user: &User,
) -> Result<(), UsersError> {
    act_on_own_directory_user(db, directory, scope, user, DirectoryAction::Delete).await
}

/// Deletes the directory user a failed saga made, unless a record links it by now (another
/// request adopted it) or the e-mail's directory user is not the one with `sub`.
pub async fn discard_directory_user(db: &Db, directory: &dyn Directory, scope: &impl TenantScope, email: &Email, sub: &str) {
    let outcome = async {
        if linked(db, scope, sub).await? {
            return Ok::<_, UsersError>(());
        }
        match directory.get_user(email).await.map_err(UsersError::Directory)? {
            Some(found) if found.sub == sub => directory_done(directory.delete_user(email).await),
            _ => Ok(()),
        }
    };
    if let Err(error) = outcome.await {
        tracing::error!(tenantId = %scope.scope_tenant(), %error, "could not delete the directory user of a failed saga");
    }
}

/// Creates the directory user for a pending record and stores its `sub` at once. On a
/// directory error or timeout, the directory is asked before anything is undone: a user that
/// exists with this tenant's `custom:tenantId` and that no record links was made by this very
/// request whose reply was lost, and is adopted. If storing the `sub` fails, the directory user
/// is deleted again. The caller owns the record and its seat, and undoes them on an error.
pub async fn provision(db: &Db, directory: &dyn Directory, scope: &impl TenantScope, record: &User) -> Result<User, UsersError> {
    let tenant = scope.scope_tenant();
    let email = person::email(db, tenant, record).await?;
    let sub = match directory.create_user(&email, tenant).await {
        Ok(sub) => sub,
        Err(first) => match directory.get_user(&email).await.map_err(UsersError::Directory)? {
            Some(found) if found.tenant.as_deref() == Some(tenant.as_str()) => {
                match users(db, scope).find_one(doc! {"cognitoUserId": &found.sub}).await? {
                    None => {
                        tracing::warn!(userId = %record.id, error = %first, "adopting the directory user of a lost reply");
                        found.sub
                    }
                    // This very record links it already: a redo after the link was written
                    // (a saga's step resumed after a crash or a lost reply). Done before.
                    Some(linked) if linked.id == record.id => return Ok(linked),
                    Some(_) => return Err(UsersError::EmailTaken),
                }
            }
            Some(_) => return Err(UsersError::EmailTaken),
            // The directory said "exists" and then found none (deleted in between): a refusal
            // like the others, never a different answer.
            None if matches!(first, DirectoryError::Exists) => return Err(UsersError::EmailTaken),
            None => return Err(UsersError::Directory(first)),
        },
    };
    let stored = users(db, scope)
        .find_one_and_update(
            doc! {"_id": record.id, "cognitoUserId": record.cognito_user_id.stored()},
            doc! {"$set": {"cognitoUserId": &sub}},
            false,
        )
        .await;
    match stored {
        Ok(Some(user)) => Ok(user),
        other => {
            discard_directory_user(db, directory, scope, &email, &sub).await;
            Err(match other {
                Err(e) => e.into(),
                _ => UsersError::Concurrent,
            })
        }
    }
}

async fn linked(db: &Db, scope: &impl TenantScope, sub: &str) -> Result<bool, DbError> {
    Ok(users(db, scope).find_one(doc! {"cognitoUserId": sub}).await?.is_some())
}

/// The invitation (a durable saga: [`crate::invitation`]), under the tenant's budget of
/// refused invitations: a spent budget is a 429 for every address before anything is looked
/// up; a global refusal ([`UsersError::EmailTaken`], whatever its cause) takes a place in it,
/// and with none left is a 429 like the rest of the hour. The tenant's own answers (its roles,
/// its members, its seats) come before anything global, so that none depends on other tenants.
pub async fn invite(
    db: &Db,
    directory: &dyn Directory,
    ctx: &TenantContext,
    idempotency: Option<(&Caller, &IdempotencyKey)>,
    inv: &Invitation,
    faults: &dyn StepFaults,
) -> Result<crate::invitation::Invited, UsersError> {
    if ctx.tenant().counters.is_none() {
        return Err(UsersError::CountersMissing);
    }
    let refusals = crate::refusals::InvitationRefusals::of(db, ctx);
    if let Some(retry_after) = refusals.spent().await? {
        return Err(UsersError::RefusalsSpent(retry_after));
    }
    match crate::invitation::invite(db, directory, ctx, idempotency, inv, faults).await {
        Err(UsersError::EmailTaken) => {
            // Racing refusals may have taken the hour's last place since the check.
            if !refusals.take().await? {
                let (_, retry_after) = shared::clock::hour_window(db.clock().now_ms());
                return Err(UsersError::RefusalsSpent(retry_after));
            }
            Err(UsersError::EmailTaken)
        }
        other => other,
    }
}

/// Deletes the directory user a failed saga may have made for `email`: one that carries the
/// scope's tenant id and that no record but the saga's own (`own`, being removed) links. Its
/// `sub` need not have been recorded: a user whose creation's reply was lost is found by its
/// e-mail. Any other user of that e-mail (another tenant's, a platform operator's, one a record
/// links) is left alone.
pub async fn discard_unlinked_user(
    db: &Db,
    directory: &dyn Directory,
    scope: &impl TenantScope,
    email: &Email,
    own: ObjectId,
) -> Result<(), UsersError> {
    let Some(found) = directory.get_user(email).await.map_err(UsersError::Directory)? else { return Ok(()) };
    if found.tenant.as_deref() != Some(scope.scope_tenant().as_str()) {
        return Ok(());
    }
    let others = doc! {"cognitoUserId": &found.sub, "_id": {"$ne": own}};
    if users(db, scope).find_one(others).await?.is_some() {
        return Ok(());
    }
    directory_done(directory.delete_user(email).await)
}

/// Claims `email` for the scope's tenant in the global e-mail index (the platform-keyed HMAC):
/// another tenant's is [`UsersError::EmailTaken`], the one global refusal. Returns whether this
/// call made the claim, so that only a claim it made is undone.
pub async fn claim_email(db: &Db, scope: &impl TenantScope, email: &Email) -> Result<bool, UsersError> {
    match db.keyring()?.claim_email(scope.scope_tenant(), email).await.map_err(DbError::from)? {
        EmailClaim::Claimed => Ok(true),
        EmailClaim::Held => Ok(false),
        EmailClaim::Taken => Err(UsersError::EmailTaken),
    }
}

/// Releases the tenant's global index entry of `email`; best effort, logged by tenant only.
pub async fn release_email(db: &Db, tenant: &shared::ids::TenantId, email: &Email) {
    let released = async { db.keyring()?.release_email(tenant, email).await.map_err(DbError::from) };
    if let Err(error) = released.await {
        tracing::error!(tenantId = %tenant, %error, "could not release an e-mail's global index entry");
    }
}

/// Changes the caller's own profile (never its status, roles or e-mail).
pub async fn update_me(db: &Db, ctx: &TenantContext, changes: &ProfileChanges) -> Result<User, UsersError> {
    let id = ctx.user_id().ok_or(UsersError::SelfChange("change a profile for"))?;
    let set = person::profile_set(db, ctx.tenant_id(), changes).await?;
    users(db, ctx).find_one_and_update(doc! {"_id": id}, doc! {"$set": set}, false).await?.ok_or(UsersError::NotFound(id))
}

fn directory_done(result: Result<(), DirectoryError>) -> Result<(), UsersError> {
    match result {
        Ok(()) | Err(DirectoryError::NotFound) => Ok(()),
        Err(e) => Err(UsersError::Directory(e)),
    }
}

/// An admin's change of a user: profile fields, and status between active and inactive only.
/// Deactivation takes the admin place first (the last admin stays), then disables the Cognito
/// user, then writes the record; reactivation enables first and adds the admin place after.
pub async fn update(
    db: &Db,
    directory: &dyn Directory,
    ctx: &TenantContext,
    id: ObjectId,
    changes: &UserChanges,
) -> Result<User, UsersError> {
    if changes.status.is_some() && ctx.user_id() == Some(id) {
        return Err(UsersError::SelfChange("change the status of"));
    }
    let admin_role = admin_role(db, ctx).await?;
    let (users, own) = (users(db, ctx), db.own_tenant(ctx));
    for _ in 0..TRIES {
        let user = get(db, ctx, id).await?;
        removing(&user)?;
        not_above_caller(db, ctx, &user).await?;
        let mut set = person::profile_set(db, ctx.tenant_id(), &changes.profile).await?;
        let Some(status) = changes.status.filter(|s| *s != user.status) else {
            if set.is_empty() {
                return Ok(user);
            }
            match users.find_one_and_update(as_read(&user), doc! {"$set": set}, false).await? {
                Some(user) => return Ok(user),
                None => continue,
            }
        };
        if user.status == UserStatus::Pending {
            return Err(UsersError::Pending);
        }
        counted(ctx)?;
        let held = user.holds_admin_place(&admin_role.to_hex());
        let op = ObjectId::new();
        set.insert("status", status.as_str());
        let written = if status == UserStatus::Inactive {
            // The bounded move comes first: it is the last-admin check. Given back only when the
            // record write surely did not apply.
            if held && !own.take_admin_place().await? {
                return Err(UsersError::LastAdmin);
            }
            set.extend(markers(db, user.holds_seat(), false, op));
            let written = match act_on_own_directory_user(db, directory, ctx, &user, DirectoryAction::Enable(false)).await {
                Ok(()) => write_record(&users, id, as_read(&user), doc! {"$set": set}, op).await,
                Err(e) => {
                    if held {
                        give_back_admin_place(db, ctx).await;
                    }
                    return Err(e);
                }
            };
            if held && matches!(written, Written::Missed | Written::Failed(_)) {
                give_back_admin_place(db, ctx).await;
            }
            written
        } else {
            let admin = holds(&user, &admin_role);
            act_on_own_directory_user(db, directory, ctx, &user, DirectoryAction::Enable(true)).await?;
            set.extend(markers(db, user.holds_seat(), admin, op));
            let written = write_record(&users, id, as_read(&user), doc! {"$set": set}, op).await;
            if matches!(written, Written::Applied(_)) && admin && !held {
                follow_record(db, ctx, 0, 1).await;
            }
            written
        };
        match written {
            Written::Applied(user) => {
                forget_tenant_members(db, ctx.tenant_id());
                return Ok(user);
            }
            Written::Missed => continue,
            Written::Failed(e) | Written::Unknown(e) => return Err(e.into()),
        }
    }
    Err(UsersError::Concurrent)
}

/// Deletes a user: its admin place first (the last admin stays), then the Cognito user; then the
/// record gives up its seat before it goes (§12): its markers are cleared by a write conditional
/// on the record as read, the seat is freed, and the record is deleted only if that write is
/// still its last. Between any two steps a fresh trace (`counterMovedAt`, `markedAt`) exists, or
/// the markers and the counters agree, so the recount never takes a deletion for a drift. The
/// seat is freed only by the request whose clearing applied.
pub async fn delete(db: &Db, directory: &dyn Directory, ctx: &TenantContext, id: ObjectId) -> Result<(), UsersError> {
    delete_with(db, directory, ctx, id, &NoSeam).await
}

/// The point of a deletion between its record's markers cleared and its seat freed, where a
/// test runs the recount (docs/ARCHITECTURE.md §12).
pub const DELETION_CLEARED: &str = "users.delete.cleared";

/// [`delete`], telling `seam` when the record's markers are cleared and its seat not yet freed
/// ([`DELETION_CLEARED`]); deployments pass `NoSeam`.
pub async fn delete_with(db: &Db, directory: &dyn Directory, ctx: &TenantContext, id: ObjectId, seam: &dyn Seam) -> Result<(), UsersError> {
    if ctx.user_id() == Some(id) {
        return Err(UsersError::SelfChange("delete"));
    }
    counted(ctx)?;
    let admin_role = admin_role(db, ctx).await?;
    let (users, own) = (users(db, ctx), db.own_tenant(ctx));
    for _ in 0..TRIES {
        let user = get(db, ctx, id).await?;
        not_above_caller(db, ctx, &user).await?;
        // What the record holds is what its removal frees (§12); the admin place is taken first,
        // bounded (the last admin stays), and given back only if the removal surely did not apply.
        let admin = user.holds_admin_place(&admin_role.to_hex());
        if admin && !own.take_admin_place().await? {
            return Err(UsersError::LastAdmin);
        }
        let email = match person::email(db, ctx.tenant_id(), &user).await {
            Ok(email) => email,
            Err(e) => {
                if admin {
                    give_back_admin_place(db, ctx).await;
                }
                return Err(e.into());
            }
        };
        if let Err(e) = act_on_own_directory_user(db, directory, ctx, &user, DirectoryAction::Delete).await {
            if admin {
                give_back_admin_place(db, ctx).await;
            }
            return Err(e);
        }
        let op = ObjectId::new();
        let cleared = write_record(&users, id, as_read(&user), doc! {"$set": markers(db, false, false, op)}, op).await;
        match cleared {
            Written::Applied(_) => {}
            Written::Unknown(e) => return Err(e.into()),
            Written::Missed | Written::Failed(_) => {
                if admin {
                    give_back_admin_place(db, ctx).await;
                }
                if let Written::Failed(e) = cleared {
                    return Err(e.into());
                }
                continue;
            }
        }
        seam.reached(DELETION_CLEARED).await;
        follow_record(db, ctx, -i64::from(user.holds_seat()), 0).await;
        // A miss: another deletion cleared it again since, and removes it (or has).
        match delete_record(&users, id, doc! {"_id": id, "markerOp": op}).await {
            Written::Applied(()) => {
                release_email(db, ctx.tenant_id(), &email).await;
                forget_tenant_members(db, ctx.tenant_id());
                return Ok(());
            }
            Written::Missed => {}
            Written::Failed(e) | Written::Unknown(e) => return Err(e.into()),
        }
    }
    Err(UsersError::Concurrent)
}

/// Gives a user a role of this tenant; the caller must hold all of the role's permissions.
pub async fn assign_role(db: &Db, ctx: &TenantContext, id: ObjectId, role_id: ObjectId) -> Result<User, UsersError> {
    if ctx.user_id() == Some(id) {
        return Err(UsersError::SelfChange("change the roles of"));
    }
    counted(ctx)?;
    let role = by_ids(db, ctx, &[role_id]).await?.pop().ok_or(UsersError::RoleNotFound(role_id))?;
    no_escalation(db, ctx, std::slice::from_ref(&role)).await?;
    let admin_role = admin_role(db, ctx).await?;
    let users = users(db, ctx);
    for _ in 0..TRIES {
        let user = get(db, ctx, id).await?;
        removing(&user)?;
        not_above_caller(db, ctx, &user).await?;
        if user.cognito_user_id.sub().is_none() {
            return Err(UsersError::Unlinked);
        }
        if holds(&user, &role_id) {
            return Ok(user);
        }
        // The record's marker comes with the role, and the counter follows only a write that
        // applied (after a lost reply, one the re-read shows to be this one).
        let held = user.holds_admin_place(&admin_role.to_hex());
        let gains = role_id == admin_role && user.status != UserStatus::Inactive && !held;
        let op = ObjectId::new();
        let update = doc! {"$addToSet": {"roles": role_id.to_hex()}, "$set": markers(db, user.holds_seat(), held || gains, op)};
        match write_record(&users, id, as_read(&user), update, op).await {
            Written::Applied(user) => {
                if gains {
                    follow_record(db, ctx, 0, 1).await;
                }
                forget_tenant_members(db, ctx.tenant_id());
                return Ok(user);
            }
            Written::Missed => {}
            Written::Failed(e) | Written::Unknown(e) => return Err(e.into()),
        }
    }
    Err(UsersError::Concurrent)
}

/// Takes a role from a user; the last admin keeps the admin role.
pub async fn remove_role(db: &Db, ctx: &TenantContext, id: ObjectId, role_id: ObjectId) -> Result<User, UsersError> {
    if ctx.user_id() == Some(id) {
        return Err(UsersError::SelfChange("change the roles of"));
    }
    counted(ctx)?;
    let admin_role = admin_role(db, ctx).await?;
    let (users, own) = (users(db, ctx), db.own_tenant(ctx));
    for _ in 0..TRIES {
        let user = get(db, ctx, id).await?;
        removing(&user)?;
        not_above_caller(db, ctx, &user).await?;
        if user.cognito_user_id.sub().is_none() {
            return Err(UsersError::Unlinked);
        }
        if !holds(&user, &role_id) {
            return Err(UsersError::RoleNotHeld(role_id));
        }
        let held = user.holds_admin_place(&admin_role.to_hex());
        let loses = role_id == admin_role && held;
        if loses && !own.take_admin_place().await? {
            return Err(UsersError::LastAdmin);
        }
        let op = ObjectId::new();
        let update = doc! {"$pull": {"roles": role_id.to_hex()}, "$set": markers(db, user.holds_seat(), held && !loses, op)};
        let written = write_record(&users, id, as_read(&user), update, op).await;
        if loses && matches!(written, Written::Missed | Written::Failed(_)) {
            give_back_admin_place(db, ctx).await;
        }
        match written {
            Written::Applied(user) => {
                forget_tenant_members(db, ctx.tenant_id());
                return Ok(user);
            }
            Written::Missed => {}
            Written::Failed(e) | Written::Unknown(e) => return Err(e.into()),
        }
    }
    Err(UsersError::Concurrent)
}
