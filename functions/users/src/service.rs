//! The users context's rules. Every counter move rides on a user-record write that matched:
//! the record filter pins the state (status, whether the admin role is held) that the counter
//! decision was made from, and a miss gives the counter back and reads again.

use crate::error::UsersError;
use crate::input::{Invitation, ProfileChanges, UserChanges};
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use roles::service::{by_ids, system_role_id, ADMIN_ROLE, DEFAULT_ROLE};
use shared::context::forget_tenant_members;
use shared::db::{Db, DbError, FindOptions, Scoped, TenantCollection, TenantScope};
use shared::directory::{Directory, DirectoryError};
use shared::ids::{Email, Permission};
use shared::models::{CognitoLink, Profile, Role, User, UserStatus};
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

/// A page of the tenant's users, newest first, and how many match.
pub async fn list(db: &Db, ctx: &TenantContext, query: &UserQuery) -> Result<(Vec<User>, u64), UsersError> {
    let mut filter = Document::new();
    if let Some(status) = query.status {
        filter.insert("status", status.as_str());
    }
    if let Some(role) = query.role {
        filter.insert("roles", role.to_hex());
    }
    if let Some(email) = &query.email {
        filter.insert("email", email.as_str());
    }
    let options = FindOptions {
        sort: Some(doc! {"createdAt": -1, "_id": -1}),
        skip: Some((query.page - 1) * query.limit),
        limit: Some(query.limit as i64),
    };
    let users = users(db, ctx);
    Ok(tokio::try_join!(users.find(filter.clone(), options), users.count_documents(filter))?)
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

/// The record as read: status and whether it holds the admin role. A write filtered on it
/// matches only if neither changed since.
fn as_read(user: &User, admin_role: &ObjectId) -> Document {
    let admin = if holds(user, admin_role) { Bson::String(admin_role.to_hex()) } else { Bson::Document(doc! {"$ne": admin_role.to_hex()}) };
    doc! {"_id": user.id, "status": user.status.as_str(), "roles": admin}
}

/// Nobody acts on a user who holds a permission the caller lacks: managing a user is bounded by
/// the caller's permissions, as granting is. (Otherwise an operator with `update:users` could
/// deactivate, delete or strip an admin.)
async fn not_above_caller(db: &Db, ctx: &TenantContext, user: &User) -> Result<(), UsersError> {
    let ids: Vec<ObjectId> = user.roles.iter().filter_map(|r| ObjectId::parse_str(r).ok()).collect();
    let held: Vec<Permission> = by_ids(db, ctx, &ids).await?.into_iter().flat_map(|r| r.permissions).collect();
    match first_not_held(ctx.permissions(), &held) {
        Some(p) => Err(UsersError::Outranked(p.to_string())),
        None => Ok(()),
    }
}

fn no_escalation(ctx: &TenantContext, roles: &[Role]) -> Result<(), UsersError> {
    for role in roles {
        if let Some(p) = first_not_held(ctx.permissions(), &role.permissions) {
            return Err(UsersError::Escalation(p.to_string()));
        }
    }
    Ok(())
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
    let sub = match directory.create_user(&record.email, tenant).await {
        Ok(sub) => sub,
        Err(first) => match directory.get_user(&record.email).await.map_err(UsersError::Directory)? {
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
            if let Err(error) = directory.delete_user(&record.email).await {
                tracing::error!(userId = %record.id, %error, "could not delete the directory user of a failed invitation");
            }
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

/// A new pending record with its id fixed up front (the sentinel `pending:<id>` until linked).
pub fn pending_record(email: &Email, profile: Profile, roles: &[Role]) -> User {
    let id = ObjectId::new();
    User {
        id,
        tenant_id: None,
        cognito_user_id: CognitoLink::Pending(id),
        email: email.clone(),
        profile,
        roles: roles.iter().map(|r| r.id.to_hex()).collect(),
        status: UserStatus::Pending,
        last_login_at: None,
        created_at: None,
        updated_at: None,
    }
}

/// The invitation: a small saga. (1) The pending record is written; (2) a seat is taken, and an
/// admin place if it carries the admin role; (3) Cognito creates the user and sends the
/// invitation; (4) its `sub` is stored. A failure undoes what was done, in reverse: no orphan
/// record, no orphan Cognito user, and the seat is free again.
pub async fn invite(db: &Db, directory: &dyn Directory, ctx: &TenantContext, inv: &Invitation) -> Result<User, UsersError> {
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
    no_escalation(ctx, &roles)?;
    let admin = roles.iter().any(|r| r.is_system && r.name == ADMIN_ROLE);
    let profile = Profile { first_name: inv.first_name.clone(), last_name: inv.last_name.clone(), ..Profile::default() };
    let record = pending_record(&inv.email, profile, &roles);
    let users = users(db, ctx);
    users.insert_one(&record).await.map_err(|e| match e {
        DbError::Duplicate => UsersError::AlreadyUser(inv.email.to_string()),
        other => other.into(),
    })?;
    if let Err(e) = take_seat(db, ctx, admin).await {
        undo_record(db, ctx, &record, None).await;
        return Err(e);
    }
    match provision(db, directory, ctx, &record).await {
        Ok(user) => Ok(user),
        Err(e) => {
            undo_record(db, ctx, &record, Some(admin)).await;
            Err(e)
        }
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

fn profile_set(changes: &ProfileChanges) -> Document {
    let mut set = Document::new();
    for (field, value) in [
        ("profile.firstName", &changes.first_name),
        ("profile.lastName", &changes.last_name),
        ("profile.avatar", &changes.avatar),
        ("profile.department", &changes.department),
        ("profile.title", &changes.title),
    ] {
        if let Some(value) = value {
            set.insert(field, value);
        }
    }
    set
}

/// Changes the caller's own profile (never its status, roles or e-mail).
pub async fn update_me(db: &Db, ctx: &TenantContext, changes: &ProfileChanges) -> Result<User, UsersError> {
    let id = ctx.user_id().ok_or(UsersError::SelfChange("change a profile for"))?;
    users(db, ctx).find_one_and_update(doc! {"_id": id}, doc! {"$set": profile_set(changes)}, false).await?.ok_or(UsersError::NotFound(id))
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
        let mut set = profile_set(&changes.profile);
        let Some(status) = changes.status.filter(|s| *s != user.status) else {
            if set.is_empty() {
                return Ok(user);
            }
            return users.find_one_and_update(doc! {"_id": id}, doc! {"$set": set}, false).await?.ok_or(UsersError::NotFound(id));
        };
        if user.status == UserStatus::Pending {
            return Err(UsersError::Pending);
        }
        let admin = holds(&user, &admin_role);
        set.insert("status", status.as_str());
        let written = if status == UserStatus::Inactive {
            if admin && !own.take_admin_place().await? {
                return Err(UsersError::LastAdmin);
            }
            if let Err(e) = directory_done(directory.set_enabled(&user.email, false).await) {
                if admin {
                    own.adjust_counters(0, 1).await?;
                }
                return Err(e);
            }
            let written = users.find_one_and_update(as_read(&user, &admin_role), doc! {"$set": set}, false).await?;
            if written.is_none() && admin {
                own.adjust_counters(0, 1).await?;
            }
            written
        } else {
            directory_done(directory.set_enabled(&user.email, true).await)?;
            let written = users.find_one_and_update(as_read(&user, &admin_role), doc! {"$set": set}, false).await?;
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
    let admin_role = admin_role(db, ctx).await?;
    let (users, own) = (users(db, ctx), db.own_tenant(ctx));
    for _ in 0..TRIES {
        let user = get(db, ctx, id).await?;
        not_above_caller(db, ctx, &user).await?;
        let admin = counted_admin(&user, &admin_role);
        if admin && !own.take_admin_place().await? {
            return Err(UsersError::LastAdmin);
        }
        if let Err(e) = directory_done(directory.delete_user(&user.email).await) {
            if admin {
                own.adjust_counters(0, 1).await?;
            }
            return Err(e);
        }
        if users.delete_one(as_read(&user, &admin_role)).await? == 1 {
            own.adjust_counters(-1, 0).await?;
            forget_tenant_members(db, ctx.tenant_id());
            return Ok(());
        }
        if admin {
            own.adjust_counters(0, 1).await?;
        }
    }
    Err(UsersError::Concurrent)
}

/// Gives a user a role of this tenant; the caller must hold all of the role's permissions.
pub async fn assign_role(db: &Db, ctx: &TenantContext, id: ObjectId, role_id: ObjectId) -> Result<User, UsersError> {
    if ctx.user_id() == Some(id) {
        return Err(UsersError::SelfChange("change the roles of"));
    }
    let role = by_ids(db, ctx, &[role_id]).await?.pop().ok_or(UsersError::RoleNotFound(role_id))?;
    no_escalation(ctx, std::slice::from_ref(&role))?;
    let admin_role = admin_role(db, ctx).await?;
    let users = users(db, ctx);
    for _ in 0..TRIES {
        let user = get(db, ctx, id).await?;
        not_above_caller(db, ctx, &user).await?;
        if holds(&user, &role_id) {
            return Ok(user);
        }
        let mut filter = as_read(&user, &admin_role);
        if role_id != admin_role {
            filter.insert("$and", vec![doc! {"roles": {"$ne": role_id.to_hex()}}]);
        }
        if let Some(user) = users.find_one_and_update(filter, doc! {"$addToSet": {"roles": role_id.to_hex()}}, false).await? {
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
    let admin_role = admin_role(db, ctx).await?;
    let (users, own) = (users(db, ctx), db.own_tenant(ctx));
    for _ in 0..TRIES {
        let user = get(db, ctx, id).await?;
        not_above_caller(db, ctx, &user).await?;
        if !holds(&user, &role_id) {
            return Err(UsersError::RoleNotHeld(role_id));
        }
        let admin = role_id == admin_role && user.status != UserStatus::Inactive;
        if admin && !own.take_admin_place().await? {
            return Err(UsersError::LastAdmin);
        }
        let mut filter = as_read(&user, &admin_role);
        if role_id != admin_role {
            filter.insert("$and", vec![doc! {"roles": role_id.to_hex()}]);
        }
        if let Some(user) = users.find_one_and_update(filter, doc! {"$pull": {"roles": role_id.to_hex()}}, false).await? {
            forget_tenant_members(db, ctx.tenant_id());
            return Ok(user);
        }
        if admin {
            own.adjust_counters(0, 1).await?;
        }
    }
    Err(UsersError::Concurrent)
}
