//! Admission (docs/ARCHITECTURE.md §12): from a verified identity to a `TenantContext`.
//!
//! Exactly one step admits a caller, and nothing is counted before it has succeeded:
//! 1. **Membership.** A person is admitted to its own tenant only through an active user record
//!    found by its Cognito `sub`. A pending record found by `sub` (an invitation stores the `sub`
//!    Cognito returns) is activated by a conditional update on its first call: pending → active
//!    only. Admission never matches by e-mail: a self-registered account with a pending user's
//!    e-mail links nothing. No record, or an inactive one, is a 403.
//! 2. **Counting.** Then one `findOneAndUpdate` on the tenant record checks that the tenant is
//!    active and under its monthly quota (the bound is a literal in the filter, never
//!    increment-then-check) and counts the call. Past the quota it is a 429 and nothing is
//!    counted.
//!
//! A member's status and permissions are cached in-process for at most [`PERMISSION_TTL`], so a
//! warm call costs that one round trip. A superadmin names the tenant it acts for explicitly; it
//! is not counted.

use crate::clock::month_window;
use crate::db::{Db, DbError, SystemContext, TenantCollection, TenantScope};
use crate::error::ApiError;
use crate::identity::{Identity, Principal};
use crate::ids::{parse_object_id, Permission, TenantId};
use crate::models::{Role, Tenant, TenantStatus, User, UserStatus};
use crate::plans::UNLIMITED;
use lru::LruCache;
use mongodb::bson::{doc, oid::ObjectId, Bson};
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// How long a member's status and permissions may be reused in-process (at most 60 s).
pub const PERMISSION_TTL: Duration = Duration::from_secs(60);
/// `lastLoginAt` is written at most this often per user.
pub const LAST_LOGIN_EVERY: Duration = Duration::from_secs(3600);
/// How many members and quota hints a process remembers; the least recently used go first.
pub const CACHE_CAPACITY: usize = 10_000;

/// A caller admitted to one tenant, with its permissions. Scoped collections are opened from it.
#[derive(Debug, Clone)]
pub struct TenantContext {
    tenant: Tenant,
    identity: Identity,
    permissions: Arc<[Permission]>,
    user_id: Option<ObjectId>,
}

impl crate::db::sealed::Sealed for TenantContext {}
impl TenantScope for TenantContext {
    fn scope_tenant(&self) -> &TenantId {
        &self.tenant.tenant_id
    }
}

/// A caller proven to be a superadmin: it may open the global registry.
#[derive(Debug, Clone)]
pub struct SuperadminContext {
    identity: Identity,
}

impl crate::db::sealed::Sealed for SuperadminContext {}
impl crate::db::GlobalAccess for SuperadminContext {}

impl SuperadminContext {
    /// The superadmin, or a 403 for anyone else.
    pub fn require(identity: &Identity) -> Result<Self, ApiError> {
        if identity.is_superadmin() {
            Ok(Self { identity: identity.clone() })
        } else {
            Err(ApiError::Forbidden("This operation is reserved to platform superadmins".into()))
        }
    }
    /// The caller.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The superadmin acting explicitly for one tenant (e.g. creating its roles).
    pub fn acting_for(&self, tenant: TenantId) -> SuperadminTenantScope {
        SuperadminTenantScope { tenant }
    }
}

/// A superadmin's explicit scope on one tenant.
#[derive(Debug, Clone)]
pub struct SuperadminTenantScope {
    tenant: TenantId,
}

impl crate::db::sealed::Sealed for SuperadminTenantScope {}
impl TenantScope for SuperadminTenantScope {
    fn scope_tenant(&self) -> &TenantId {
        &self.tenant
    }
}

impl TenantContext {
    /// Admits `identity` to a tenant (see the module docs). `target` is the tenant the request
    /// names, if any: a member may only name its own; a superadmin must name one.
    pub async fn admit(db: &Db, identity: &Identity, target: Option<&TenantId>) -> Result<Self, ApiError> {
        if identity.is_superadmin() {
            let tenant_id =
                target.ok_or_else(|| ApiError::Forbidden("A superadmin must name the tenant it acts for".into()))?;
            let tenant = db
                .tenants(&SystemContext::new("admission"))
                .get(tenant_id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("Tenant {tenant_id} not found")))?;
            let permissions: Arc<[Permission]> = Arc::from(vec![Permission::parse("*").expect("valid")]);
            return Ok(Self { tenant, identity: identity.clone(), permissions, user_id: None });
        }
        let own = identity.tenant().ok_or_else(|| ApiError::Forbidden("The caller belongs to no tenant".into()))?;
        if target.is_some_and(|t| t != own) {
            return Err(ApiError::Forbidden("The caller may not act for another tenant".into()));
        }
        let member = membership(db, own, identity).await?;
        let tenant = count_call(db, own).await?;
        Ok(Self { tenant, identity: identity.clone(), permissions: member.permissions, user_id: Some(member.user_id) })
    }

    /// The tenant as admitted (for a member, with this call already counted).
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The tenant's id.
    pub fn tenant_id(&self) -> &TenantId {
        &self.tenant.tenant_id
    }

    /// The caller.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The caller's user record, for a member (`None` for a superadmin).
    pub fn user_id(&self) -> Option<ObjectId> {
        self.user_id
    }

    /// Whether a superadmin is acting for this tenant.
    pub fn is_superadmin(&self) -> bool {
        self.identity.is_superadmin()
    }

    /// The caller's permissions.
    pub fn permissions(&self) -> &[Permission] {
        &self.permissions
    }

    /// A 403 unless one of the caller's permissions covers `permission`.
    pub fn require(&self, permission: &str) -> Result<(), ApiError> {
        if self.permissions.iter().any(|p| p.covers(permission)) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("Missing permission {permission}")))
        }
    }
}

/// An admitted member as the cache remembers it.
#[derive(Debug, Clone)]
struct Member {
    user_id: ObjectId,
    permissions: Arc<[Permission]>,
    at_ms: i64,
}

/// Keyed by database, tenant and `sub`: several databases can share a process (tests).
type MemberKey = (String, String, String);

static MEMBERS: LazyLock<Mutex<LruCache<MemberKey, Member>>> =
    LazyLock::new(|| Mutex::new(LruCache::new(NonZeroUsize::new(CACHE_CAPACITY).expect("non-zero"))));

/// The last `maxApiCalls` seen per tenant: only a hint for the admission filter's literal bound.
/// A stale hint makes the filter miss, and admission then reads the tenant and tries again.
static QUOTA_HINTS: LazyLock<Mutex<LruCache<(String, String), i64>>> =
    LazyLock::new(|| Mutex::new(LruCache::new(NonZeroUsize::new(CACHE_CAPACITY).expect("non-zero"))));

/// Drops every cached member of a tenant in this process, so that a change of roles or status
/// made here takes effect on the next call; other processes see it within [`PERMISSION_TTL`].
pub fn forget_tenant_members(db: &Db, tenant: &TenantId) {
    let mut cache = MEMBERS.lock().expect("poisoned");
    let stale: Vec<MemberKey> =
        cache.iter().filter(|((d, t, _), _)| d == db.name() && t == tenant.as_str()).map(|(k, _)| k.clone()).collect();
    for key in stale {
        cache.pop(&key);
    }
}

fn not_member() -> ApiError {
    ApiError::Forbidden("The caller is not an active user of this tenant".into())
}

/// The caller's membership of `tenant`: from the cache while fresh, else from its user record.
async fn membership(db: &Db, tenant: &TenantId, identity: &Identity) -> Result<Member, ApiError> {
    let sub = match &identity.principal {
        Principal::User { sub, .. } => sub,
        // No authorizer issues API-key contexts yet: refuse rather than trust one.
        Principal::ApiKey { .. } => {
            return Err(ApiError::Forbidden("API-key callers are not admitted by this deployment".into()))
        }
    };
    let now = db.clock().now_ms();
    let key = (db.name().to_owned(), tenant.to_string(), sub.clone());
    if let Some(member) = MEMBERS.lock().expect("poisoned").get(&key) {
        if now - member.at_ms < PERMISSION_TTL.as_millis() as i64 {
            return Ok(member.clone());
        }
    }
    let users = db.scoped::<User>(&SystemContext::new("admission").for_tenant(tenant.clone()), TenantCollection::Users);
    let found = users.find_one(doc! {"cognitoUserId": sub}).await?;
    let user = found.ok_or_else(not_member)?;
    let user = match user.status {
        UserStatus::Inactive => return Err(not_member()),
        UserStatus::Pending => activate(db, tenant, &user, sub).await?,
        UserStatus::Active => {
            touch_last_login(db, tenant, &user).await?;
            user
        }
    };
    let member = Member { user_id: user.id, permissions: role_permissions(db, tenant, &user.roles).await?, at_ms: now };
    MEMBERS.lock().expect("poisoned").put(key, member.clone());
    Ok(member)
}

/// A pending record found by `sub` becomes active on its first call: pending → active only.
async fn activate(db: &Db, tenant: &TenantId, user: &User, sub: &str) -> Result<User, ApiError> {
    let users = db.scoped::<User>(&SystemContext::new("admission").for_tenant(tenant.clone()), TenantCollection::Users);
    let activated = users
        .find_one_and_update(
            doc! {"_id": user.id, "cognitoUserId": sub, "status": UserStatus::Pending.as_str()},
            doc! {"$set": {"status": UserStatus::Active.as_str(), "lastLoginAt": db.clock().now()}},
            false,
        )
        .await?;
    match activated {
        Some(user) => Ok(user),
        // Changed in between: a racing first call activated it, or an admin deactivated it.
        None => match users.find_one(doc! {"_id": user.id, "cognitoUserId": sub}).await? {
            Some(user) if user.status == UserStatus::Active => Ok(user),
            _ => Err(not_member()),
        },
    }
}

/// Records `lastLoginAt`, at most once per [`LAST_LOGIN_EVERY`]. It runs only when the member
/// was not cached, so a warm call never pays for it; conditional on the value read, so racing
/// calls write it once.
async fn touch_last_login(db: &Db, tenant: &TenantId, user: &User) -> Result<(), DbError> {
    let now = db.clock().now();
    let due = user.last_login_at.is_none_or(|at| now.timestamp_millis() - at.timestamp_millis() >= LAST_LOGIN_EVERY.as_millis() as i64);
    if !due {
        return Ok(());
    }
    let users = db.scoped::<User>(&SystemContext::new("admission").for_tenant(tenant.clone()), TenantCollection::Users);
    let seen = match user.last_login_at {
        Some(at) => Bson::DateTime(at),
        None => Bson::Document(doc! {"$exists": false}),
    };
    users
        .update_one(doc! {"_id": user.id, "status": UserStatus::Active.as_str(), "lastLoginAt": seen}, doc! {"$set": {"lastLoginAt": now}}, false)
        .await?;
    Ok(())
}

/// The union of the permissions of the given roles (ids as stored on the user).
async fn role_permissions(db: &Db, tenant: &TenantId, role_ids: &[String]) -> Result<Arc<[Permission]>, DbError> {
    let ids: Vec<Bson> = role_ids.iter().filter_map(|r| parse_object_id(r).ok()).map(Bson::ObjectId).collect();
    if ids.is_empty() {
        return Ok(Arc::from(Vec::new()));
    }
    let scope = SystemContext::new("admission").for_tenant(tenant.clone());
    let roles = db.scoped::<Role>(&scope, TenantCollection::Roles).find(doc! {"_id": {"$in": ids}}, Default::default()).await?;
    let mut all: Vec<Permission> = roles.into_iter().flat_map(|r| r.permissions).collect();
    all.sort();
    all.dedup();
    Ok(Arc::from(all))
}

/// Counts the call in the tenant record, bounded by the monthly quota in the filter. The first
/// try uses the remembered bound; a miss reads the tenant to tell why (suspended, over quota, or
/// a plan change that moved the bound) and tries again with the bound just read.
async fn count_call(db: &Db, tenant_id: &TenantId) -> Result<Tenant, ApiError> {
    let registry = db.tenants(&SystemContext::new("admission"));
    let (month, retry_after_secs) = month_window(db.clock().now_ms());
    let hint_key = (db.name().to_owned(), tenant_id.to_string());
    let mut bound = QUOTA_HINTS.lock().expect("poisoned").get(&hint_key).copied();
    for _ in 0..3 {
        if let Some(max) = bound {
            if let Some(tenant) = registry.count_call(tenant_id, &month, max).await? {
                return Ok(tenant);
            }
        }
        let tenant = registry
            .get(tenant_id)
            .await?
            .ok_or_else(|| ApiError::Forbidden(format!("Tenant {tenant_id} does not exist")))?;
        match tenant.status {
            TenantStatus::Active => {}
            TenantStatus::Suspended => {
                return Err(ApiError::Forbidden(format!("Tenant {tenant_id} is suspended; contact the platform operator")))
            }
            other => return Err(ApiError::Forbidden(format!("Tenant {tenant_id} is {}", other.as_str()))),
        }
        let max = tenant.settings.billing.max_api_calls;
        QUOTA_HINTS.lock().expect("poisoned").put(hint_key.clone(), max);
        let used = tenant.api_usage.get(&month).copied().unwrap_or(0);
        if max != UNLIMITED && used >= max {
            return Err(quota_exhausted(max, retry_after_secs));
        }
        bound = Some(max);
    }
    // The plan changed under every try: rare enough that the client may simply retry.
    Err(ApiError::TooManyRequests { message: "The tenant's plan is changing; try again".into(), retry_after_secs: 1 })
}

fn quota_exhausted(max: i64, retry_after_secs: u64) -> ApiError {
    ApiError::TooManyRequests {
        message: format!("Monthly API quota of {max} calls is exhausted; it resets at the start of next month (UTC)"),
        retry_after_secs,
    }
}
