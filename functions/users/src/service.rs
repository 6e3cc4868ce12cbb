//! The users context's rules. Every counter move rides on a user-record write that matched:
//! the record filter pins the state (its status and exact roles) that the counter
//! decision was made from, and a miss gives the counter back and reads again.

use crate::error::UsersError;
use crate::input::{Invitation, ProfileChanges, UserChanges};
use crate::person::{self, Person};
use mongodb::bson::{doc, oid::ObjectId, Document};
use roles::service::{by_ids, system_role_id, ADMIN_ROLE, DEFAULT_ROLE};
use shared::context::forget_tenant_members;
use shared::db::{Db, DbError, FindOptions, Scoped, TenantCollection, TenantScope};
use shared::directory::{Directory, DirectoryError};
use shared::ids::{Email, Permission};
use shared::models::{Profile, Role, User, UserStatus};
use shared::pii::EmailClaim;
use shared::permissions::first_not_held;
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

/// Whether the user counts against the admins counter: pending or active, with the admin role.
fn counted_admin(user: &User, admin_role: &ObjectId) -> bool {
    user.status != UserStatus::Inactive && holds(user, admin_role)
}

/// The record as read: its status and its exact roles. A write filtered on it matches only if
/// neither changed since, so the counter moves and permission checks made from the read hold.
fn as_read(user: &User) -> Document {
    doc! {"_id": user.id, "status": user.status.as_str(), "roles": user.roles.clone()}
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
async fn not_above_caller(db: &Db, ctx: &TenantContext, user: &User) -> Result<(), UsersError> {
    let ids: Vec<ObjectId> = user.roles.iter().filter_map(|r| ObjectId::parse_str(r).ok()).collect();
    let held: Vec<Permission> = by_ids(db, ctx, &ids).await?.into_iter().flat_map(|r| r.permissions).collect();
    match first_not_held(&ctx.fresh_permissions(db).await?, &held) {
        Some(p) => Err(UsersError::Outranked(p.to_string())),
        None => Ok(()),
    }
}

/// Nobody grants what they lack, judged on the caller's permissions as they are now (a grant
/// outlives the permission cache's 60 s).
async fn no_escalation(db: &Db, ctx: &TenantContext, roles: &[Role]) -> Result<(), UsersError> {
    let held = ctx.fresh_permissions(db).await?;
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
async fn act_on_own_directory_user(db: &Db, directory: &dyn Directory, ctx: &TenantContext, user: &User, action: DirectoryAction) -> Result<(), UsersError> {
    let Some(sub) = user.cognito_user_id.sub() else { return Ok(()) };
    let email = person::email(db, ctx.tenant_id(), user).await?;
    match directory.get_user(&email).await.map_err(UsersError::Directory)? {
        Some(found) if found.sub == sub && found.tenant.as_deref() == Some(ctx.tenant_id().as_str()) => {}
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

/// Takes a seat (and an admin place) bounded by the plan's `maxUsers` as read by admission;
/// a plan change in between moves the bound, and the take is retried with the new one.
async fn take_seat(db: &Db, ctx: &TenantContext, admin: bool) -> Result<(), UsersError> {
    let own = db.own_tenant(ctx);
    let mut max = ctx.tenant().settings.max_users;
    for _ in 0..TRIES {
        if own.take_seat(max, admin).await? {
            return Ok(());
        }
        let tenant = own.get().await?.ok_or(UsersError::CountersMissing)?;
        if tenant.counters.is_none() {
            return Err(UsersError::CountersMissing);
        }
        if tenant.settings.max_users == max {
            return Err(UsersError::NoSeat(max));
        }
        max = tenant.settings.max_users;
    }
    Err(UsersError::Concurrent)
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
            Some(found) if found.tenant.as_deref() == Some(tenant.as_str()) && !linked(db, scope, &found.sub).await? => {
                tracing::warn!(userId = %record.id, error = %first, "adopting the directory user of a lost reply");
                found.sub
            }
            Some(_) => return Err(UsersError::EmailTaken),
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

/// The invitation: a small saga. (0) The record is sealed (the tenant's keys: a KMS outage
/// fails here, before any write), checked against the tenant's users by blind index, and its
/// e-mail claimed in the global index (an e-mail belongs to one tenant); (1) the pending record
/// is written; (2) a seat is taken, and an admin place if it carries the admin role; (3) Cognito
/// creates the user and sends the invitation; (4) its `sub` is stored. A failure undoes what was
/// done, in reverse: no orphan record, claim or Cognito user, and the seat is free again.
pub async fn invite(db: &Db, directory: &dyn Directory, ctx: &TenantContext, inv: &Invitation) -> Result<Person, UsersError> {
    if ctx.tenant().counters.is_none() {
        return Err(UsersError::CountersMissing);
    }
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
    no_escalation(db, ctx, &roles).await?;
    let admin = roles.iter().any(|r| r.is_system && r.name == ADMIN_ROLE);
    let profile = Profile { first_name: inv.first_name.clone(), last_name: inv.last_name.clone(), ..Profile::default() };
    let tenant = ctx.tenant_id();
    let record = person::pending_record(db, tenant, &inv.email, &profile, &roles).await?;
    let users = users(db, ctx);
    // The unique {tenantId, emailHash} index catches a race once the sealing migration has
    // built it; this lookup answers before anything is written, and also finds old plaintext.
    if users.find_one(person::email_filter(db, tenant, &inv.email).await?).await?.is_some() {
        return Err(UsersError::AlreadyUser);
    }
    let claimed = claim_email(db, ctx, &inv.email).await?;
    let undo_claim = || async {
        if claimed {
            release_email(db, tenant, &inv.email).await;
        }
    };
    if let Err(e) = users.insert_one(&record).await {
        undo_claim().await;
        return Err(match e {
            DbError::Duplicate => UsersError::AlreadyUser,
            other => other.into(),
        });
    }
    if let Err(e) = take_seat(db, ctx, admin).await {
        undo_record(db, ctx, &record, None).await;
        undo_claim().await;
        return Err(e);
    }
    match provision(db, directory, ctx, &record).await {
        Ok(user) => Ok(Person { user, email: inv.email.clone(), profile }),
        Err(e) => {
            undo_record(db, ctx, &record, Some(admin)).await;
            undo_claim().await;
            Err(e)
        }
    }
}

/// Claims `email` for the scope's tenant in the global e-mail index (the platform-keyed HMAC):
/// another tenant's is a 409. Returns whether this call made the claim, so that only a claim it
/// made is undone.
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

/// Compensation: removes the record and, if `seat` (with whether it took an admin place),
/// frees what the removal justifies. Best effort, logged.
async fn undo_record(db: &Db, ctx: &TenantContext, record: &User, seat: Option<bool>) {
    let removed = users(db, ctx).delete_one(doc! {"_id": record.id}).await;
    let outcome = match (removed, seat) {
        (Ok(1), Some(admin)) => db.own_tenant(ctx).adjust_counters(-1, -i64::from(admin)).await,
        (Ok(_), _) => Ok(()),
        (Err(e), _) => Err(e),
    };
    if let Err(error) = outcome {
        tracing::error!(userId = %record.id, %error, "compensation of an invitation failed; manual clean-up needed");
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
pub async fn update(db: &Db, directory: &dyn Directory, ctx: &TenantContext, id: ObjectId, changes: &UserChanges) -> Result<User, UsersError> {
    if changes.status.is_some() && ctx.user_id() == Some(id) {
        return Err(UsersError::SelfChange("change the status of"));
    }
    let admin_role = admin_role(db, ctx).await?;
    let (users, own) = (users(db, ctx), db.own_tenant(ctx));
    for _ in 0..TRIES {
        let user = get(db, ctx, id).await?;
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
        let admin = holds(&user, &admin_role);
        set.insert("status", status.as_str());
        let written = if status == UserStatus::Inactive {
            if admin && !own.take_admin_place().await? {
                return Err(UsersError::LastAdmin);
            }
            let written = match act_on_own_directory_user(db, directory, ctx, &user, DirectoryAction::Enable(false)).await {
                Ok(()) => users.find_one_and_update(as_read(&user), doc! {"$set": set}, false).await.map_err(UsersError::from),
                Err(e) => Err(e),
            };
            if admin && !matches!(written, Ok(Some(_))) {
                give_back_admin_place(db, ctx).await;
            }
            written?
        } else {
            act_on_own_directory_user(db, directory, ctx, &user, DirectoryAction::Enable(true)).await?;
            let written = users.find_one_and_update(as_read(&user), doc! {"$set": set}, false).await?;
            if written.is_some() && admin {
                own.adjust_counters(0, 1).await?;
            }
            written
        };
        if let Some(user) = written {
            forget_tenant_members(db, ctx.tenant_id());
            return Ok(user);
        }
    }
    Err(UsersError::Concurrent)
}

/// Deletes a user: its admin place first (the last admin stays), then the Cognito user, then
/// the record; the seat is freed only by the request whose removal matched.
pub async fn delete(db: &Db, directory: &dyn Directory, ctx: &TenantContext, id: ObjectId) -> Result<(), UsersError> {
    if ctx.user_id() == Some(id) {
        return Err(UsersError::SelfChange("delete"));
    }
    counted(ctx)?;
    let admin_role = admin_role(db, ctx).await?;
    let (users, own) = (users(db, ctx), db.own_tenant(ctx));
    for _ in 0..TRIES {
        let user = get(db, ctx, id).await?;
        not_above_caller(db, ctx, &user).await?;
        let admin = counted_admin(&user, &admin_role);
        if admin && !own.take_admin_place().await? {
            return Err(UsersError::LastAdmin);
        }
        let email = person::email(db, ctx.tenant_id(), &user).await?;
        let removed = match act_on_own_directory_user(db, directory, ctx, &user, DirectoryAction::Delete).await {
            Ok(()) => users.delete_one(as_read(&user)).await.map_err(UsersError::from),
            Err(e) => Err(e),
        };
        if removed.as_ref().is_ok_and(|n| *n == 1) {
            release_email(db, ctx.tenant_id(), &email).await;
            own.adjust_counters(-1, 0).await?;
            forget_tenant_members(db, ctx.tenant_id());
            return Ok(());
        }
        if admin {
            give_back_admin_place(db, ctx).await;
        }
        removed?;
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
        not_above_caller(db, ctx, &user).await?;
        if user.cognito_user_id.sub().is_none() {
            return Err(UsersError::Unlinked);
        }
        if holds(&user, &role_id) {
            return Ok(user);
        }
        if let Some(user) = users.find_one_and_update(as_read(&user), doc! {"$addToSet": {"roles": role_id.to_hex()}}, false).await? {
            if role_id == admin_role && user.status != UserStatus::Inactive {
                db.own_tenant(ctx).adjust_counters(0, 1).await?;
            }
            forget_tenant_members(db, ctx.tenant_id());
            return Ok(user);
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
        not_above_caller(db, ctx, &user).await?;
        if user.cognito_user_id.sub().is_none() {
            return Err(UsersError::Unlinked);
        }
        if !holds(&user, &role_id) {
            return Err(UsersError::RoleNotHeld(role_id));
        }
        let admin = role_id == admin_role && user.status != UserStatus::Inactive;
        if admin && !own.take_admin_place().await? {
            return Err(UsersError::LastAdmin);
        }
        let written = users.find_one_and_update(as_read(&user), doc! {"$pull": {"roles": role_id.to_hex()}}, false).await;
        if admin && !matches!(written, Ok(Some(_))) {
            give_back_admin_place(db, ctx).await;
        }
        if let Some(user) = written? {
            forget_tenant_members(db, ctx.tenant_id());
            return Ok(user);
        }
    }
    Err(UsersError::Concurrent)
}
