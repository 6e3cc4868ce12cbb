//! From a verified identity to a `TenantContext`: the tenant exists and is active, the call is
//! counted against the monthly quota, and the caller's permissions come from the database.

use crate::db::{Db, SystemContext, TenantCollection, TenantScope};
use crate::error::ApiError;
use crate::identity::{Identity, Principal};
use crate::ids::{parse_object_id, Permission, TenantId};
use crate::models::{Role, Tenant, TenantStatus, User, UserStatus};
use crate::plans::UNLIMITED;
use mongodb::bson::{doc, Bson, DateTime};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How long resolved permissions may be reused in-process (DESIGN.md §4: at most 60 s).
pub const PERMISSION_TTL: Duration = Duration::from_secs(60);

/// A caller admitted to one tenant, with its permissions. Scoped collections are opened from it.
#[derive(Debug, Clone)]
pub struct TenantContext {
    tenant: Tenant,
    identity: Identity,
    permissions: Arc<Vec<Permission>>,
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
    /// Admits `identity` to a tenant: `target` if given (a superadmin must name one to act for
    /// a tenant), else the caller's own. A member must be of that tenant, which must exist and
    /// be active; the call is counted, and past the plan's quota it is a 429. A superadmin is
    /// admitted to any existing tenant, suspended or not, and is not counted.
    pub async fn resolve(db: &Db, identity: &Identity, target: Option<&TenantId>) -> Result<Self, ApiError> {
        let registry = db.tenants(&SystemContext::new("tenant admission"));
        if identity.is_superadmin() {
            let tenant_id = target.or(identity.tenant()).ok_or_else(|| {
                ApiError::Forbidden("A superadmin must name the tenant it acts for".into())
            })?;
            crate::http::record_tenant(tenant_id.as_str());
            let tenant = registry
                .get(tenant_id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("Tenant {tenant_id} not found")))?;
            let permissions = Arc::new(vec![Permission::parse("*").expect("valid")]);
            return Ok(Self { tenant, identity: identity.clone(), permissions });
        }

        let own = identity.tenant().ok_or_else(|| ApiError::Forbidden("The caller belongs to no tenant".into()))?;
        crate::http::record_tenant(own.as_str());
        if target.is_some_and(|t| t != own) {
            return Err(ApiError::Forbidden("The caller may not act for another tenant".into()));
        }
        let now = DateTime::now();
        let (month, retry_after_secs) = month_window(now.timestamp_millis());
        let tenant = match registry.record_api_call(own, &month).await? {
            Some(tenant) => tenant,
            None => {
                return Err(match registry.get(own).await? {
                    Some(t) if t.status == TenantStatus::Suspended => {
                        ApiError::Forbidden(format!("Tenant {own} is suspended; contact the platform operator"))
                    }
                    Some(t) => ApiError::Forbidden(format!("Tenant {own} is {}", t.status.as_str())),
                    None => ApiError::Forbidden(format!("Tenant {own} does not exist")),
                })
            }
        };
        let max = tenant.settings.billing.max_api_calls;
        let used = tenant.api_usage.get(&month).copied().unwrap_or(0);
        if max != UNLIMITED && used > max {
            return Err(ApiError::TooManyRequests {
                message: format!("Monthly API quota of {max} calls is exhausted; it resets at the start of next month (UTC)"),
                retry_after_secs,
            });
        }
        let permissions = match identity.key_permissions() {
            Some(granted) => Arc::new(granted.to_vec()),
            None => user_permissions(db, &tenant.tenant_id, identity).await?,
        };
        Ok(Self { tenant, identity: identity.clone(), permissions })
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

type CacheKey = (String, String);
static PERMISSION_CACHE: LazyLock<Mutex<HashMap<CacheKey, (Instant, Arc<Vec<Permission>>)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
const PERMISSION_CACHE_MAX: usize = 10_000;

/// A user's permissions: the union of its roles'. The user record is found by Cognito `sub`,
/// or by e-mail while it is still pending a link. Cached for [`PERMISSION_TTL`].
async fn user_permissions(db: &Db, tenant: &TenantId, identity: &Identity) -> Result<Arc<Vec<Permission>>, ApiError> {
    let Principal::User { sub, email } = &identity.principal else {
        return Ok(Arc::new(vec![]));
    };
    let key = (tenant.to_string(), sub.clone());
    if let Some((at, cached)) = PERMISSION_CACHE.lock().expect("poisoned").get(&key) {
        if at.elapsed() < PERMISSION_TTL {
            return Ok(cached.clone());
        }
    }
    let scope = SystemContext::new("permission resolution").for_tenant(tenant.clone());
    let mut by = vec![Bson::Document(doc! {"cognitoUserId": sub})];
    if let Some(email) = email {
        by.push(Bson::Document(doc! {"email": email.to_ascii_lowercase(), "cognitoUserId": {"$regex": "^pending:"}}));
    }
    let user = db.scoped::<User>(&scope, TenantCollection::Users).find_one(doc! {"$or": by}).await?;
    let permissions = match user.filter(|u| u.status == UserStatus::Active) {
        None => vec![],
        Some(user) => {
            let ids: Vec<Bson> =
                user.roles.iter().filter_map(|r| parse_object_id(r).ok()).map(Bson::ObjectId).collect();
            let roles = db
                .scoped::<Role>(&scope, TenantCollection::Roles)
                .find(doc! {"_id": {"$in": ids}}, Default::default())
                .await?;
            let mut all: Vec<Permission> = roles.into_iter().flat_map(|r| r.permissions).collect();
            all.sort();
            all.dedup();
            all
        }
    };
    let permissions = Arc::new(permissions);
    let mut cache = PERMISSION_CACHE.lock().expect("poisoned");
    if cache.len() >= PERMISSION_CACHE_MAX {
        cache.retain(|_, (at, _)| at.elapsed() < PERMISSION_TTL);
    }
    cache.insert(key, (Instant::now(), permissions.clone()));
    Ok(permissions)
}

/// The usage month (`YYYY-MM`, UTC) of a Unix time in ms, and the seconds until the next one.
pub fn month_window(now_ms: i64) -> (String, u64) {
    let days = now_ms.div_euclid(86_400_000);
    let (year, month, _) = civil_from_days(days);
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let next_ms = days_from_civil(next_year, next_month, 1) * 86_400_000;
    let secs = ((next_ms - now_ms) as u64).div_ceil(1000).max(1);
    (format!("{year:04}-{month:02}"), secs)
}

// Howard Hinnant's civil-calendar algorithms: exact for the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_month_and_retry_after_are_exact() {
        // 2026-11-28T00:00:00Z
        let now = days_from_civil(2026, 11, 28) * 86_400_000;
        let (month, secs) = month_window(now);
        assert_eq!(month, "2026-11");
        assert_eq!(secs, 3 * 86_400);
    }

    #[test]
    fn december_rolls_into_january() {
        let now = days_from_civil(2026, 12, 31) * 86_400_000 + 86_399_000;
        assert_eq!(month_window(now), ("2026-12".to_string(), 1));
    }

    #[test]
    fn civil_conversions_round_trip() {
        for days in [-1_000_000, -1, 0, 1, 19_000, 20_785, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }
}
