//! Admission (docs/ARCHITECTURE.md §12): from a verified identity to a `TenantContext`.
//!
//! Exactly one step admits a caller, and nothing is counted before it has succeeded:
//! 1. **Membership.** A person is admitted to its own tenant only through an active user record
//!    found by its Cognito `sub`. A pending record found by `sub` (an invitation stores the `sub`
//!    Cognito returns) is activated by a conditional update on its first call: pending → active
//!    only. Admission never matches by e-mail: a self-registered account with a pending user's
//!    e-mail links nothing. No record, or an inactive one, is a 403.
//! 2. **Counting.** Then one `findOneAndUpdate` on the tenant record checks that the tenant is
//!    active, under its monthly quota and under its per-minute window (each bound a literal in
//!    the filter, never increment-then-check), counts the call in both, and removes stale
//!    window fields. Past either bound it is a 429 with `Retry-After`, and nothing is counted.
//!    Over the monthly quota alone, the limits route is still admitted, uncounted, so that a
//!    tenant can see why it is blocked.
//!
//! A member's status and permissions are cached in-process for at most [`PERMISSION_TTL`], so a
//! warm call costs that one round trip. A superadmin names the tenant it acts for explicitly; it
//! is not counted.

use crate::audit::{Action, AuditEvent};
use crate::clock::{minute_window, month_window};
use crate::db::{CallBounds, Db, DbError, SystemContext, TenantCollection, TenantScope};
use crate::error::ApiError;
use crate::identity::{Identity, Principal};
use crate::ids::{parse_object_id, Permission, TenantId};
use crate::models::{Role, Tenant, TenantStatus, User, UserStatus};
use crate::plans::{Plan, UNLIMITED};
use crate::request::RequestMeta;
use lru::LruCache;
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// The plan feature without which no API key is admitted.
pub const API_KEYS_FEATURE: &str = "api_keys";

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

    /// Writes the audit entry of this superadmin's act on `tenant` (the entry's resource) in
    /// that tenant's log (best effort: [`crate::audit::record_best_effort`]). A read of a tenant
    /// that is offboarding or inactive is not: its log's last entry is its offboarding
    /// (docs/ARCHITECTURE.md §22).
    pub async fn audit(&self, db: &Db, tenant: &Tenant, meta: &RequestMeta, action: Action, details: Document) {
        if action == Action::TenantAccessed && tenant.status.is_ending() {
            return;
        }
        let event = AuditEvent { action, resource_id: Some(tenant.tenant_id.to_string()), details };
        crate::audit::record_best_effort(db, tenant, meta, &self.identity, event).await;
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

/// Whether an exhausted monthly quota refuses the call (every route but one), or lets it through
/// uncounted (the route that shows a tenant its limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    Enforce,
    ReadLimits,
}

impl TenantContext {
    /// Admits `identity` to a tenant (see the module docs). `target` is the tenant the request
    /// names, if any: a member may only name its own; a superadmin must name one.
    pub async fn admit(db: &Db, identity: &Identity, target: Option<&TenantId>, quota: Quota) -> Result<Self, ApiError> {
        if identity.is_superadmin() {
            let tenant_id = target.ok_or_else(|| ApiError::Forbidden("A superadmin must name the tenant it acts for".into()))?;
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
        // A key whose window is full was let through by the authorizer only to be refused here,
        // before anything is counted (an authorizer can only allow or deny).
        if let Some(retry_after_secs) = identity.retry_after() {
            return Err(ApiError::TooManyRequests { message: "The API key's rate limit is reached".into(), retry_after_secs });
        }
        let (member, record) = membership(db, own, identity).await?;
        // A key is admitted only while the plan has the feature: a bound of the counting filter,
        // so that a refused key call is not counted either.
        let feature = matches!(identity.principal, Principal::ApiKey { .. }).then_some(API_KEYS_FEATURE);
        let tenant = count_call(db, own, quota, feature).await?;
        // Writes of admission itself (a first call's activation, `lastLoginAt`) come only once
        // the tenant has admitted the call: a refused call changes nothing.
        if let Some(record) = record {
            settle(db, own, &record, identity, &member).await?;
        }
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

    /// The caller's permissions read now from its record and roles, bypassing the cache: for the
    /// checks of operations that grant or manage (a grant outlives the cache's 60 s bound, so a
    /// member demoted a moment ago in another process must not still grant). `None` when the
    /// caller is no longer an active member: each context refuses that with its own 403
    /// ([`NOT_MEMBER`]), even for a grant of nothing.
    pub async fn fresh_permissions(&self, db: &Db) -> Result<Option<Arc<[Permission]>>, DbError> {
        let Some(user_id) = self.user_id else { return Ok(Some(self.permissions.clone())) };
        let scope = SystemContext::new("admission").for_tenant(self.tenant_id().clone());
        let users = db.scoped::<User>(&scope, TenantCollection::Users);
        let Some(user) = users.find_one(doc! {"_id": user_id, "status": UserStatus::Active.as_str()}).await? else { return Ok(None) };
        let held = role_permissions(db, self.tenant_id(), &user.roles).await?;
        Ok(Some(match self.identity.key_permissions() {
            Some(key) => intersect(key, &held),
            None => held,
        }))
    }

    /// A 403 saying `why` unless the caller is a person. API keys never manage API keys, so a
    /// leaked key cannot mint keys that outlive its revocation; and a key has no profile of its
    /// own, so `/users/me` is not its creator's to change.
    pub fn require_person(&self, why: &str) -> Result<(), ApiError> {
        match self.identity.principal {
            Principal::User { .. } => Ok(()),
            Principal::ApiKey { .. } => Err(ApiError::Forbidden(format!("{why}; sign in as a person"))),
        }
    }

    /// A 403 naming the feature and the plan unless the tenant's plan includes `feature`. Read
    /// from the record admission just loaded, so a downgrade takes effect on the next call.
    pub fn require_feature(&self, feature: &str) -> Result<(), ApiError> {
        if self.tenant.settings.features.iter().any(|f| f == feature) {
            Ok(())
        } else {
            Err(feature_missing(&self.tenant, feature))
        }
    }

    /// The plan's API-key limits, or the 403 naming the feature and the plan: the feature as
    /// the tenant holds it, and the limits from the catalogue.
    pub fn key_limits(&self) -> Result<crate::plans::KeyLimits, ApiError> {
        self.require_feature(API_KEYS_FEATURE)?;
        self.tenant.settings.billing.plan.limits().api_keys.ok_or_else(|| feature_missing(&self.tenant, API_KEYS_FEATURE))
    }

    /// Writes the audit entry of this caller's act in its tenant, on `resource_id` if it names
    /// one (best effort: [`crate::audit::record_best_effort`]).
    pub async fn audit(&self, db: &Db, meta: &RequestMeta, action: Action, resource_id: impl Into<Option<String>>, details: Document) {
        let event = AuditEvent { action, resource_id: resource_id.into(), details };
        crate::audit::record_best_effort(db, &self.tenant, meta, &self.identity, event).await;
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

/// What admission last saw of a tenant: its plan, its `maxApiCalls` and its window fields. Only
/// a hint for the literal bounds of the counting filter: a stale hint makes the filter miss, and
/// admission then reads the tenant and tries again.
#[derive(Debug, Clone)]
struct QuotaHint {
    plan: Plan,
    max_calls: i64,
    minutes: Vec<String>,
}

static QUOTA_HINTS: LazyLock<Mutex<LruCache<(String, String), QuotaHint>>> =
    LazyLock::new(|| Mutex::new(LruCache::new(NonZeroUsize::new(CACHE_CAPACITY).expect("non-zero"))));

impl QuotaHint {
    fn of(tenant: &Tenant) -> Self {
        Self {
            plan: tenant.settings.billing.plan,
            max_calls: tenant.settings.billing.max_api_calls,
            minutes: tenant.minute_usage.keys().cloned().collect(),
        }
    }
}

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

/// Why a caller who is no longer an active member is refused (a 403): by admission, and by the
/// contexts' grant checks when [`TenantContext::fresh_permissions`] finds no membership.
pub const NOT_MEMBER: &str = "The caller is not an active user of this tenant";

fn not_member() -> ApiError {
    ApiError::Forbidden(NOT_MEMBER.into())
}

/// The caller's membership of `tenant`: from the cache while fresh, else read from its user
/// record. Reads only; the record is returned when admission must still write it (a pending
/// record's activation, or `lastLoginAt`), which [`settle`] does once the call is admitted.
async fn membership(db: &Db, tenant: &TenantId, identity: &Identity) -> Result<(Member, Option<User>), ApiError> {
    let sub = match &identity.principal {
        Principal::User { sub, .. } => sub,
        Principal::ApiKey { key_id, created_by } => {
            let key = identity.key_permissions().unwrap_or_default();
            return Ok((key_membership(db, tenant, key_id, *created_by, key).await?, None));
        }
    };
    let now = db.clock().now_ms();
    let key = (db.name().to_owned(), tenant.to_string(), sub.clone());
    if let Some(member) = MEMBERS.lock().expect("poisoned").get(&key) {
        if now - member.at_ms < PERMISSION_TTL.as_millis() as i64 {
            return Ok((member.clone(), None));
        }
    }
    let users = db.scoped::<User>(&SystemContext::new("admission").for_tenant(tenant.clone()), TenantCollection::Users);
    let user = users.find_one(doc! {"cognitoUserId": sub}).await?.ok_or_else(not_member)?;
    if user.status == UserStatus::Inactive {
        return Err(not_member());
    }
    let member = Member { user_id: user.id, permissions: role_permissions(db, tenant, &user.roles).await?, at_ms: now };
    let due = user.status == UserStatus::Pending || last_login_due(db, &user);
    if user.status == UserStatus::Active {
        MEMBERS.lock().expect("poisoned").put(key, member.clone());
    }
    Ok((member, due.then_some(user)))
}

/// A key is admitted as a member of its tenant with its own permissions, intersected with its
/// creator's current ones, while its creator is an active user. Cached like a person's.
async fn key_membership(db: &Db, tenant: &TenantId, key_id: &str, creator: ObjectId, key: &[Permission]) -> Result<Member, ApiError> {
    let now = db.clock().now_ms();
    let cache_key = (db.name().to_owned(), tenant.to_string(), format!("apikey:{key_id}"));
    if let Some(member) = MEMBERS.lock().expect("poisoned").get(&cache_key) {
        if now - member.at_ms < PERMISSION_TTL.as_millis() as i64 && member.user_id == creator {
            return Ok(member.clone());
        }
    }
    let users = db.scoped::<User>(&SystemContext::new("admission").for_tenant(tenant.clone()), TenantCollection::Users);
    let creator_record = users
        .find_one(doc! {"_id": creator, "status": UserStatus::Active.as_str()})
        .await?
        .ok_or_else(|| ApiError::Forbidden("The API key's creator is no longer an active user of this tenant".into()))?;
    let held = role_permissions(db, tenant, &creator_record.roles).await?;
    let member = Member { user_id: creator, permissions: intersect(key, &held), at_ms: now };
    MEMBERS.lock().expect("poisoned").put(cache_key, member.clone());
    Ok(member)
}

/// What both sets grant: each permission of `a` that `b` covers, and each of `b` that `a`
/// covers (so `read:*` against `read:users` gives `read:users`).
pub fn intersect(a: &[Permission], b: &[Permission]) -> Arc<[Permission]> {
    let mut out: Vec<Permission> = a
        .iter()
        .filter(|p| b.iter().any(|q| q.covers(p.as_str())))
        .chain(b.iter().filter(|q| a.iter().any(|p| p.covers(q.as_str()))))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    Arc::from(out)
}

/// Admission's own writes, once the call is admitted: a pending record is activated (and only
/// then remembered), an active one gets its hourly `lastLoginAt`.
async fn settle(db: &Db, tenant: &TenantId, user: &User, identity: &Identity, member: &Member) -> Result<(), ApiError> {
    let Principal::User { sub, .. } = &identity.principal else { return Ok(()) };
    if user.status == UserStatus::Pending {
        activate(db, tenant, user, sub).await?;
        let key = (db.name().to_owned(), tenant.to_string(), sub.clone());
        MEMBERS.lock().expect("poisoned").put(key, member.clone());
        return Ok(());
    }
    if let Err(error) = touch_last_login(db, tenant, user).await {
        tracing::warn!(%error, "could not record lastLoginAt");
    }
    Ok(())
}

fn last_login_due(db: &Db, user: &User) -> bool {
    let now = db.clock().now_ms();
    user.last_login_at.is_none_or(|at| now - at.timestamp_millis() >= LAST_LOGIN_EVERY.as_millis() as i64)
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
    let users = db.scoped::<User>(&SystemContext::new("admission").for_tenant(tenant.clone()), TenantCollection::Users);
    let seen = match user.last_login_at {
        Some(at) => Bson::DateTime(at),
        None => Bson::Document(doc! {"$exists": false}),
    };
    users
        .update_one(
            doc! {"_id": user.id, "status": UserStatus::Active.as_str(), "lastLoginAt": seen},
            doc! {"$set": {"lastLoginAt": now}},
            false,
        )
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

/// Counts the call in the tenant record, bounded in the filter by the monthly quota and the
/// per-minute window. The first try uses the remembered bounds; a miss reads the tenant to tell
/// why (shredded, suspended, a bound reached, or a plan change that moved the bounds) and tries
/// again.
async fn count_call(db: &Db, tenant_id: &TenantId, quota: Quota, feature: Option<&'static str>) -> Result<Tenant, ApiError> {
    let registry = db.tenants(&SystemContext::new("admission"));
    let now = db.clock().now_ms();
    let (month, month_retry) = month_window(now);
    let (minute, minute_retry) = minute_window(now);
    let hint_key = (db.name().to_owned(), tenant_id.to_string());
    let mut hint = QUOTA_HINTS.lock().expect("poisoned").get(&hint_key).cloned();
    for _ in 0..3 {
        if let Some(h) = &hint {
            let bounds = CallBounds {
                month: month.clone(),
                minute: minute.clone(),
                plan: h.plan,
                max_calls: h.max_calls,
                per_minute: h.plan.limits().calls_per_minute,
                stale_minutes: h.minutes.clone(),
                count_month: true,
                feature,
            };
            if let Some(tenant) = registry.count_call(tenant_id, &bounds).await? {
                QUOTA_HINTS.lock().expect("poisoned").put(hint_key, QuotaHint::of(&tenant));
                return Ok(tenant);
            }
        }
        let tenant = registry.get(tenant_id).await?.ok_or_else(|| ApiError::Forbidden(format!("Tenant {tenant_id} does not exist")))?;
        if tenant.keys_shredded_at.is_some() {
            return Err(ApiError::Forbidden(format!("Tenant {tenant_id}'s personal data was shredded; it admits no one")));
        }
        match tenant.status {
            TenantStatus::Active => {}
            TenantStatus::Suspended => {
                return Err(ApiError::Forbidden(format!("Tenant {tenant_id} is suspended; contact the platform operator")))
            }
            other => return Err(ApiError::Forbidden(format!("Tenant {tenant_id} is {}", other.as_str()))),
        }
        if let Some(feature) = feature {
            if !tenant.settings.features.iter().any(|f| f == feature) {
                return Err(feature_missing(&tenant, feature));
            }
        }
        let fresh = QuotaHint::of(&tenant);
        QUOTA_HINTS.lock().expect("poisoned").put(hint_key.clone(), fresh.clone());
        let per_minute = fresh.plan.limits().calls_per_minute;
        let minute_full = || ApiError::TooManyRequests {
            message: format!("The tenant's limit of {per_minute} calls a minute is reached"),
            retry_after_secs: minute_retry,
        };
        if tenant.minute_usage.get(&minute).copied().unwrap_or(0) >= per_minute {
            return Err(minute_full());
        }
        let max = fresh.max_calls;
        if max != UNLIMITED && tenant.api_usage.get(&month).copied().unwrap_or(0) >= max {
            if quota == Quota::Enforce {
                return Err(quota_exhausted(max, month_retry));
            }
            // Over the month, the limits still show; the minute window still bounds them.
            let bounds = CallBounds {
                month: month.clone(),
                minute: minute.clone(),
                plan: fresh.plan,
                max_calls: max,
                per_minute,
                stale_minutes: fresh.minutes.clone(),
                count_month: false,
                feature,
            };
            return registry.count_call(tenant_id, &bounds).await?.ok_or_else(minute_full);
        }
        hint = Some(fresh);
    }
    // The plan changed under every try: rare enough that the client may simply retry.
    Err(ApiError::TooManyRequests { message: "The tenant's plan is changing; try again".into(), retry_after_secs: 1 })
}

fn feature_missing(tenant: &Tenant, feature: &str) -> ApiError {
    ApiError::Forbidden(format!("The {} plan does not include the feature {feature}", tenant.settings.billing.plan.as_str()))
}

fn quota_exhausted(max: i64, retry_after_secs: u64) -> ApiError {
    ApiError::TooManyRequests {
        message: format!("Monthly API quota of {max} calls is exhausted; it resets at the start of next month (UTC)"),
        retry_after_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::TenantSettings;
    use crate::pii::{Field, Key, Sealed};

    fn context(plan: Plan) -> TenantContext {
        let now = mongodb::bson::DateTime::now();
        let tenant = Tenant {
            id: ObjectId::new(),
            tenant_id: TenantId::parse("tn_features").unwrap(),
            name: "F".into(),
            domain: None,
            settings: TenantSettings::for_plan(plan, {
                let tenant = TenantId::parse("tn_features").unwrap();
                Sealed::seal(&Key::from_slice(&[1; 32]).unwrap(), 1, &tenant, Field::BillingEmail, "b@f.example").unwrap()
            }),
            status: TenantStatus::Active,
            suspended_at: None,
            suspension_reason: None,
            api_usage: Default::default(),
            minute_usage: Default::default(),
            counters: None,
            api_key_count: 0,
            audit_retention: None,
            keys_shredded_at: None,
            offboarding: None,
            restoring: None,
            created_at: now,
            updated_at: now,
        };
        let event = serde_json::json!({"resource": "/", "path": "/", "httpMethod": "GET", "headers": {},
            "requestContext": {"requestId": "r", "resourcePath": "/", "httpMethod": "GET",
                "authorizer": {"claims": {"sub": "u", "custom:tenantId": "tn_features"}}},
            "body": null, "isBase64Encoded": false});
        let identity = Identity::from_request(&lambda_http::request::from_str(&event.to_string()).unwrap()).unwrap();
        TenantContext { tenant, identity, permissions: Arc::from(Vec::new()), user_id: None }
    }

    #[test]
    fn a_key_holds_what_both_it_and_its_creator_hold() {
        let p = |list: &[&str]| list.iter().map(|s| Permission::parse(*s).unwrap()).collect::<Vec<_>>();
        let names = |a: Arc<[Permission]>| a.iter().map(|p| p.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(intersect(&p(&["read:*"]), &p(&["read:users", "create:users"]))), ["read:users"]);
        assert_eq!(names(intersect(&p(&["read:users", "delete:users"]), &p(&["*"]))), ["delete:users", "read:users"]);
        assert!(intersect(&p(&["delete:roles"]), &p(&["read:*"])).is_empty());
    }

    #[test]
    fn a_plan_without_a_feature_is_a_403_naming_the_feature_and_the_plan() {
        let err = context(Plan::Free).require_feature("audit_logs").unwrap_err();
        assert_eq!(err.status(), 403);
        assert_eq!(err.to_string(), "The free plan does not include the feature audit_logs");
        assert!(context(Plan::Basic).require_feature("audit_logs").is_ok());
    }
}
