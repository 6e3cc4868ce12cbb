//! The roles context's rules. It works only through scoped collections.

use crate::error::RolesError;
use crate::input::{NewRole, RoleChanges};
use lru::LruCache;
use mongodb::bson::{doc, oid::ObjectId, Document};
use shared::admission::forget_tenant_members;
use shared::db::{Db, DbError, FindOptions, TenantCollection, TenantScope};
use shared::ids::Permission;
use shared::models::{Role, SYSTEM_PRINCIPAL};
use shared::permissions::first_not_held;
use shared::TenantContext;
use std::num::NonZeroUsize;
use std::sync::{LazyLock, Mutex};

/// The name of the system role whose holders count as admins (the last one cannot go).
pub const ADMIN_ROLE: &str = "admin";
/// The role an invitation gives when it names none.
pub const DEFAULT_ROLE: &str = "user";

/// The three roles every tenant starts with. They are system roles: never changed or deleted.
pub const SYSTEM_ROLES: [(&str, &str, &[&str]); 3] = [
    (ADMIN_ROLE, "Full access to all resources", &["*"]),
    (DEFAULT_ROLE, "Basic user access", &["read:profile", "update:profile"]),
    ("viewer", "Read-only access", &["read:*"]),
];

/// A tenant's system roles with fresh ids, created by the well-known system principal. Their ids
/// are fixed before anything is written, so that a saga can compensate exactly these.
pub fn system_roles() -> Vec<Role> {
    SYSTEM_ROLES
        .iter()
        .map(|(name, description, permissions)| Role {
            id: ObjectId::new(),
            tenant_id: None,
            name: (*name).to_owned(),
            description: Some((*description).to_owned()),
            permissions: permissions.iter().map(|p| Permission::parse(*p).expect("catalogue permissions are valid")).collect(),
            is_system: true,
            created_by: SYSTEM_PRINCIPAL,
            created_at: None,
            updated_at: None,
        })
        .collect()
}

/// Writes a new tenant's system roles (the tenant-creation saga's step).
pub async fn seed_system_roles(db: &Db, scope: &impl TenantScope, roles: &[Role]) -> Result<(), DbError> {
    db.scoped::<Role>(scope, TenantCollection::Roles).insert_many(roles).await.map(drop)
}

/// A tenant's role by name.
pub async fn by_name(db: &Db, scope: &impl TenantScope, name: &str) -> Result<Option<Role>, DbError> {
    db.scoped::<Role>(scope, TenantCollection::Roles).find_one(doc! {"name": name}).await
}

/// A system role by database, tenant and name.
type RoleKey = (String, String, &'static str);

/// System role ids by database, tenant and name. System roles are immutable and never deleted
/// while their tenant lives, so a process may remember their ids for good (bounded, LRU).
static SYSTEM_ROLE_IDS: LazyLock<Mutex<LruCache<RoleKey, ObjectId>>> =
    LazyLock::new(|| Mutex::new(LruCache::new(NonZeroUsize::new(10_000).expect("non-zero"))));

/// The id of one of the tenant's system roles (`admin`, `user`, `viewer`): read once per process.
pub async fn system_role_id(db: &Db, scope: &impl TenantScope, name: &'static str) -> Result<Option<ObjectId>, DbError> {
    let key = (db.name().to_owned(), scope.scope_tenant().to_string(), name);
    if let Some(id) = SYSTEM_ROLE_IDS.lock().expect("poisoned").get(&key) {
        return Ok(Some(*id));
    }
    let role = db.scoped::<Role>(scope, TenantCollection::Roles).find_one(doc! {"name": name, "isSystem": true}).await?;
    if let Some(role) = &role {
        SYSTEM_ROLE_IDS.lock().expect("poisoned").put(key, role.id);
    }
    Ok(role.map(|r| r.id))
}

/// Roles by id, in this tenant only (ids of another tenant's roles find nothing).
pub async fn by_ids(db: &Db, scope: &impl TenantScope, ids: &[ObjectId]) -> Result<Vec<Role>, DbError> {
    db.scoped::<Role>(scope, TenantCollection::Roles).find(doc! {"_id": {"$in": ids.to_vec()}}, FindOptions::default()).await
}

/// A page of the tenant's roles, oldest first (the system roles lead), and the total.
pub async fn list(db: &Db, ctx: &TenantContext, page: u64, limit: u64) -> Result<(Vec<Role>, u64), RolesError> {
    let roles = db.scoped::<Role>(ctx, TenantCollection::Roles);
    let options = FindOptions { sort: Some(doc! {"createdAt": 1, "_id": 1}), skip: Some((page - 1) * limit), limit: Some(limit as i64) };
    let (found, total) = tokio::try_join!(roles.find(doc! {}, options), roles.count_documents(doc! {}))?;
    Ok((found, total))
}

/// One role.
pub async fn get(db: &Db, ctx: &TenantContext, id: ObjectId) -> Result<Role, RolesError> {
    db.scoped::<Role>(ctx, TenantCollection::Roles).find_one(doc! {"_id": id}).await?.ok_or(RolesError::NotFound(id))
}

/// Nobody grants, or manages a role granting, what they lack: judged on the caller's
/// permissions as they are now (a grant outlives the permission cache's 60 s).
async fn no_escalation(db: &Db, ctx: &TenantContext, wanted: &[Permission]) -> Result<(), RolesError> {
    match first_not_held(&ctx.fresh_permissions(db).await?.ok_or(RolesError::NotMember)?, wanted) {
        Some(p) => Err(RolesError::Escalation(p.to_string())),
        None => Ok(()),
    }
}

/// A custom role may not take a system role's name in any case (`Admin`, `VIEWER`): a holder
/// or an admin reading a list of roles would take it for the system role.
fn not_a_system_name(name: &str) -> Result<(), RolesError> {
    let lower = name.to_lowercase();
    if SYSTEM_ROLES.iter().any(|(system, _, _)| lower == *system) {
        return Err(RolesError::SystemName(name.to_owned()));
    }
    Ok(())
}

fn named(name: &str) -> impl Fn(DbError) -> RolesError + '_ {
    move |e| match e {
        DbError::Duplicate => RolesError::NameTaken(name.to_owned()),
        other => RolesError::Db(other),
    }
}

/// Creates a custom role, never under a system role's name; it may grant only what the caller
/// holds. One round trip.
pub async fn create(db: &Db, ctx: &TenantContext, new: &NewRole) -> Result<Role, RolesError> {
    not_a_system_name(&new.name)?;
    no_escalation(db, ctx, &new.permissions).await?;
    let role = Role {
        id: ObjectId::new(),
        tenant_id: None,
        name: new.name.clone(),
        description: new.description.clone(),
        permissions: new.permissions.clone(),
        is_system: false,
        created_by: ctx.user_id().unwrap_or(SYSTEM_PRINCIPAL),
        created_at: None,
        updated_at: None,
    };
    db.scoped::<Role>(ctx, TenantCollection::Roles).insert_one(&role).await.map_err(named(&new.name))
}

/// Changes a custom role (never a system one). The caller must hold both what the role grants
/// now (or it could strip its holders of what it lacks) and any new permissions. Members
/// holding it see the change within the permission cache's bound (at once in this process).
pub async fn update(db: &Db, ctx: &TenantContext, id: ObjectId, changes: &RoleChanges) -> Result<Role, RolesError> {
    let current = get(db, ctx, id).await?;
    if current.is_system {
        return Err(RolesError::System(current.name));
    }
    if let Some(name) = &changes.name {
        not_a_system_name(name)?;
    }
    let mut wanted = current.permissions.clone();
    wanted.extend(changes.permissions.iter().flatten().cloned());
    no_escalation(db, ctx, &wanted).await?;
    let mut set = Document::new();
    if let Some(name) = &changes.name {
        set.insert("name", name);
    }
    if let Some(description) = &changes.description {
        set.insert("description", description);
    }
    if let Some(permissions) = &changes.permissions {
        set.insert("permissions", permissions.iter().map(Permission::as_str).collect::<Vec<_>>());
    }
    let roles = db.scoped::<Role>(ctx, TenantCollection::Roles);
    let name = changes.name.as_deref().unwrap_or_default();
    // Conditional on the permissions checked above, so a concurrent change cannot slip past.
    let as_checked =
        doc! {"_id": id, "isSystem": false, "permissions": current.permissions.iter().map(Permission::as_str).collect::<Vec<_>>()};
    let updated = roles.find_one_and_update(as_checked, doc! {"$set": set}, false).await.map_err(named(name))?;
    forget_tenant_members(db, ctx.tenant_id());
    match updated {
        Some(role) => Ok(role),
        None => Err(match roles.find_one(doc! {"_id": id}).await? {
            Some(_) => RolesError::Concurrent,
            None => RolesError::NotFound(id),
        }),
    }
}

/// Deletes a custom role. While users hold it, that is a 409 giving their number, unless
/// `force`: then it is first removed from every user holding it. Returns how many users lost it.
pub async fn delete(db: &Db, ctx: &TenantContext, id: ObjectId, force: bool) -> Result<u64, RolesError> {
    let role = get(db, ctx, id).await?;
    if role.is_system {
        return Err(RolesError::System(role.name));
    }
    no_escalation(db, ctx, &role.permissions).await?;
    let users = db.scoped::<Document>(ctx, TenantCollection::Users);
    let holders = doc! {"roles": id.to_hex()};
    let held = users.count_documents(holders.clone()).await?;
    if held > 0 && !force {
        return Err(RolesError::Held(held));
    }
    let removed = if held > 0 { users.update_many(holders, doc! {"$pull": {"roles": id.to_hex()}}, false).await?.modified } else { 0 };
    let deleted = db.scoped::<Role>(ctx, TenantCollection::Roles).delete_one(doc! {"_id": id, "isSystem": false}).await?;
    forget_tenant_members(db, ctx.tenant_id());
    if deleted == 0 {
        return Err(RolesError::NotFound(id));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_system_role_s_name_in_any_case_is_refused() {
        for taken in ["admin", "Admin", "VIEWER", "User", "uSeR"] {
            assert!(matches!(not_a_system_name(taken), Err(RolesError::SystemName(_))), "{taken}");
        }
        for free in ["Administrator", "viewers", "Support", "admin team"] {
            assert!(not_a_system_name(free).is_ok(), "{free}");
        }
    }
}
