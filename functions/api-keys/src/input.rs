//! Request bodies: typed, unknown fields refused, then validated into domain types against the
//! plan's bounds.

use mongodb::bson::DateTime;
use serde::Deserialize;
use shared::error::{ApiError, Check};
use shared::ids::Permission;
use shared::models::{ApiKeyStatus, RateLimit};
use shared::plans::KeyLimits;
use shared::text::free_text;
use std::time::Duration;

/// The longest key name.
pub const MAX_NAME: usize = 100;
/// How long a rotated-out secret keeps working unless the request says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// The longest grace a rotation may give the old secret.
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// `rateLimit` as a request gives it: each window optional, defaulting to the plan's bound.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitBody {
    requests_per_minute: Option<i64>,
    requests_per_hour: Option<i64>,
    requests_per_day: Option<i64>,
}

impl RateLimitBody {
    /// The limits over `base` (the plan's bounds for a new key, the key's own for a change),
    /// each from 1 to the plan's bound.
    fn apply(&self, c: &mut Check, base: RateLimit, plan: KeyLimits) -> RateLimit {
        let mut window = |name: &str, given: Option<i64>, base: i64, bound: i64| match given {
            None => base,
            Some(n) => c
                .field(
                    &format!("rateLimit.{name}"),
                    if (1..=bound).contains(&n) { Ok(n) } else { Err(format!("must be from 1 to {bound}, the plan's bound")) },
                )
                .unwrap_or(base),
        };
        RateLimit {
            requests_per_minute: window("requestsPerMinute", self.requests_per_minute, base.requests_per_minute, plan.per_minute),
            requests_per_hour: window("requestsPerHour", self.requests_per_hour, base.requests_per_hour, plan.per_hour),
            requests_per_day: window("requestsPerDay", self.requests_per_day, base.requests_per_day, plan.per_day),
        }
    }
}

/// The plan's bounds, which are also a new key's defaults.
pub fn plan_default(plan: KeyLimits) -> RateLimit {
    RateLimit { requests_per_minute: plan.per_minute, requests_per_hour: plan.per_hour, requests_per_day: plan.per_day }
}

/// `POST /api-keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateKeyBody {
    name: String,
    permissions: Vec<String>,
    #[serde(default)]
    rate_limit: Option<RateLimitBody>,
    #[serde(default)]
    expires_at: Option<String>,
}

/// A validated new key.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub permissions: Vec<Permission>,
    pub rate_limit: RateLimit,
    pub expires_at: Option<DateTime>,
}

impl CreateKeyBody {
    /// Checks every field against the plan's key limits; `now` bounds `expiresAt`.
    pub fn validate(self, plan: KeyLimits, now: DateTime) -> Result<NewKey, ApiError> {
        let mut c = Check::default();
        let name = c.field("name", free_text(&self.name, MAX_NAME));
        let permissions = c.field("permissions", shared::permissions::parse_requested(self.permissions));
        let rate_limit = self.rate_limit.unwrap_or_default().apply(&mut c, plan_default(plan), plan);
        let expires_at = self.expires_at.map(|raw| {
            let parsed = shared::clock::parse_rfc3339(&raw)
                .ok_or("must be an RFC 3339 date-time such as 2027-01-01T00:00:00Z")
                .and_then(|at| if at > now { Ok(at) } else { Err("must be in the future") });
            c.field("expiresAt", parsed)
        });
        c.done(|| NewKey {
            name: name.expect("checked"),
            permissions: permissions.expect("checked"),
            rate_limit,
            expires_at: expires_at.flatten(),
        })
    }
}

/// `PATCH /api-keys/{keyId}`: the name and the limits only. Permissions and expiry are fixed at
/// creation: a different grant is a different key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateKeyBody {
    name: Option<String>,
    rate_limit: Option<RateLimitBody>,
}

/// A validated change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    pub name: Option<String>,
    pub rate_limit: Option<RateLimitBody>,
}

impl UpdateKeyBody {
    /// Checks the name; the limits are checked against the key and the plan by [`KeyChanges::limits`].
    pub fn validate(self) -> Result<KeyChanges, ApiError> {
        if self.name.is_none() && self.rate_limit.is_none() {
            return Err(ApiError::invalid("body", "give at least one of name, rateLimit"));
        }
        let mut c = Check::default();
        let name = self.name.map(|n| c.field("name", free_text(&n, MAX_NAME)));
        c.done(|| KeyChanges { name: name.flatten(), rate_limit: self.rate_limit })
    }
}

impl KeyChanges {
    /// The key's new limits, over its current ones, each within the plan's bound.
    pub fn limits(&self, current: RateLimit, plan: KeyLimits) -> Result<Option<RateLimit>, ApiError> {
        let Some(body) = &self.rate_limit else { return Ok(None) };
        let mut c = Check::default();
        let limits = body.apply(&mut c, current, plan);
        c.done(|| Some(limits))
    }
}

/// `POST /api-keys/{keyId}/rotate`: an optional grace for the old secret.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RotateBody {
    grace_period_seconds: Option<i64>,
}

impl RotateBody {
    /// The grace, 0 to [`MAX_GRACE`], by default [`DEFAULT_GRACE`].
    pub fn validate(self) -> Result<Duration, ApiError> {
        match self.grace_period_seconds {
            None => Ok(DEFAULT_GRACE),
            Some(s) if (0..=MAX_GRACE.as_secs() as i64).contains(&s) => Ok(Duration::from_secs(s as u64)),
            Some(_) => Err(ApiError::invalid("gracePeriodSeconds", format!("must be from 0 to {}", MAX_GRACE.as_secs()))),
        }
    }
}

/// The `status` filter of a listing.
pub fn status_filter(raw: Option<&str>) -> Result<Option<ApiKeyStatus>, ApiError> {
    raw.map(|s| match s {
        "active" => Ok(ApiKeyStatus::Active),
        "revoked" => Ok(ApiKeyStatus::Revoked),
        "expired" => Ok(ApiKeyStatus::Expired),
        _ => Err(ApiError::invalid("status", "must be one of active, revoked, expired")),
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::plans::Plan;

    fn basic() -> KeyLimits {
        Plan::Basic.limits().api_keys.unwrap()
    }

    fn body(json: serde_json::Value) -> CreateKeyBody {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn limits_default_to_the_plan_and_may_not_exceed_it() {
        let now = DateTime::from_millis(1_800_000_000_000);
        let key = body(serde_json::json!({"name": "ci", "permissions": ["read:users"]})).validate(basic(), now).unwrap();
        assert_eq!(key.rate_limit, plan_default(basic()));
        let key = body(serde_json::json!({"name": "ci", "permissions": ["read:users"], "rateLimit": {"requestsPerMinute": 10}}))
            .validate(basic(), now)
            .unwrap();
        assert_eq!(key.rate_limit.requests_per_minute, 10);
        assert_eq!(key.rate_limit.requests_per_day, 10_000);
        let err = body(serde_json::json!({"name": "ci", "permissions": ["read:users"], "rateLimit": {"requestsPerHour": 1001}}))
            .validate(basic(), now)
            .unwrap_err();
        assert!(err.to_string().contains("rateLimit.requestsPerHour") || format!("{err:?}").contains("rateLimit.requestsPerHour"));
    }

    #[test]
    fn expiry_must_be_in_the_future() {
        let now = DateTime::from_millis(1_800_000_000_000);
        let past = body(serde_json::json!({"name": "ci", "permissions": ["read:users"], "expiresAt": "2020-01-01T00:00:00Z"}));
        assert_eq!(past.validate(basic(), now).unwrap_err().status(), 400);
        let future = body(serde_json::json!({"name": "ci", "permissions": ["read:users"], "expiresAt": "2099-01-01T00:00:00Z"}));
        assert!(future.validate(basic(), now).unwrap().expires_at.is_some());
    }

    #[test]
    fn a_rotation_grace_is_bounded() {
        assert_eq!(RotateBody::default().validate().unwrap(), DEFAULT_GRACE);
        assert!(RotateBody { grace_period_seconds: Some(-1) }.validate().is_err());
        assert!(RotateBody { grace_period_seconds: Some(MAX_GRACE.as_secs() as i64 + 1) }.validate().is_err());
    }
}
