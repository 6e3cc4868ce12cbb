//! The plan catalogue: one place for each plan's limits and features. `-1` means unlimited.

use serde::{Deserialize, Serialize};

/// A billing plan. An unknown name is an error, never a silent `free`
/// (docs/ARCHITECTURE.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Free,
    Basic,
    Premium,
    Enterprise,
}

/// Marks a limit with no bound.
pub const UNLIMITED: i64 = -1;

/// What a plan grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanLimits {
    pub max_users: i64,
    pub max_api_calls: i64,
    /// Calls per minute for the whole tenant, people and keys alike: one tenant's burst cannot
    /// starve the others.
    pub calls_per_minute: i64,
    pub features: &'static [&'static str],
    /// How many API keys the tenant may hold and the bounds (and defaults) of their windows;
    /// `None` where the plan lacks the `api_keys` feature.
    pub api_keys: Option<KeyLimits>,
    /// How long audit entries are kept, in days (`expireAt` is set from it at write time).
    pub audit_retention_days: i64,
    /// Whether the tenant may opt in to a nightly export of its data (docs/ARCHITECTURE.md §22).
    pub nightly_exports: bool,
}

/// A plan's API-key allowance: the number of keys, and per key the largest (and default)
/// number of calls a minute, an hour and a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    pub max_keys: i64,
    pub per_minute: i64,
    pub per_hour: i64,
    pub per_day: i64,
}

/// Enterprise audit retention may be configured up to this many days (7 years).
pub const MAX_AUDIT_RETENTION_DAYS: i64 = 7 * 365;

const FREE_FEATURES: &[&str] = &["basic_auth", "basic_rbac"];
const BASIC_FEATURES: &[&str] = &["basic_auth", "basic_rbac", "api_keys", "audit_logs"];
const PREMIUM_FEATURES: &[&str] = &["basic_auth", "basic_rbac", "api_keys", "audit_logs", "sso", "advanced_analytics"];
const ENTERPRISE_FEATURES: &[&str] =
    &["basic_auth", "basic_rbac", "api_keys", "audit_logs", "sso", "advanced_analytics", "custom_domains", "priority_support"];

impl Plan {
    /// How long a tenant on this plan keeps its audit entries, in days: the plan's, or on
    /// enterprise the tenant's own `configured` setting, within bounds.
    pub fn retention_days(self, configured: Option<i64>) -> i64 {
        match (self, configured) {
            (Plan::Enterprise, Some(days)) => days.clamp(1, MAX_AUDIT_RETENTION_DAYS),
            (plan, _) => plan.limits().audit_retention_days,
        }
    }

    /// Every plan, cheapest first.
    pub const ALL: [Plan; 4] = [Plan::Free, Plan::Basic, Plan::Premium, Plan::Enterprise];

    /// The plan's name as stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Basic => "basic",
            Plan::Premium => "premium",
            Plan::Enterprise => "enterprise",
        }
    }

    /// The plan's limits and features.
    pub fn limits(self) -> PlanLimits {
        match self {
            Plan::Free => PlanLimits {
                max_users: 5,
                max_api_calls: 1_000,
                calls_per_minute: 120,
                features: FREE_FEATURES,
                api_keys: None,
                audit_retention_days: 30,
                nightly_exports: false,
            },
            Plan::Basic => PlanLimits {
                max_users: 25,
                max_api_calls: 10_000,
                calls_per_minute: 1_200,
                features: BASIC_FEATURES,
                api_keys: Some(KeyLimits { max_keys: 5, per_minute: 60, per_hour: 1_000, per_day: 10_000 }),
                audit_retention_days: 90,
                nightly_exports: false,
            },
            Plan::Premium => PlanLimits {
                max_users: 100,
                max_api_calls: 100_000,
                calls_per_minute: 6_000,
                features: PREMIUM_FEATURES,
                api_keys: Some(KeyLimits { max_keys: 25, per_minute: 600, per_hour: 20_000, per_day: 200_000 }),
                audit_retention_days: 365,
                nightly_exports: true,
            },
            Plan::Enterprise => PlanLimits {
                max_users: UNLIMITED,
                max_api_calls: UNLIMITED,
                calls_per_minute: 24_000,
                features: ENTERPRISE_FEATURES,
                api_keys: Some(KeyLimits { max_keys: 100, per_minute: 6_000, per_hour: 200_000, per_day: 2_000_000 }),
                // The default; a tenant's own setting may raise it to MAX_AUDIT_RETENTION_DAYS.
                audit_retention_days: 365,
                nightly_exports: true,
            },
        }
    }

    /// The plan's features as owned strings, as stored on a tenant.
    pub fn features(self) -> Vec<String> {
        self.limits().features.iter().map(|f| (*f).to_owned()).collect()
    }
}

impl std::str::FromStr for Plan {
    type Err = crate::ids::InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Plan::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| crate::ids::InvalidValue("plan must be one of free, basic, premium, enterprise".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_matches_the_brief() {
        assert_eq!(Plan::Free.limits().max_users, 5);
        assert_eq!(Plan::Basic.limits().max_api_calls, 10_000);
        assert_eq!(Plan::Premium.limits().max_users, 100);
        assert_eq!(Plan::Enterprise.limits().max_api_calls, UNLIMITED);
        assert!(Plan::Enterprise.features().contains(&"priority_support".to_owned()));
        assert_eq!(Plan::Free.features(), vec!["basic_auth", "basic_rbac"]);
    }

    #[test]
    fn a_plan_has_api_key_limits_exactly_when_it_has_the_feature() {
        for plan in Plan::ALL {
            let limits = plan.limits();
            assert_eq!(limits.api_keys.is_some(), limits.features.contains(&"api_keys"), "{plan:?}");
        }
        assert_eq!(Plan::Basic.limits().api_keys.unwrap().max_keys, 5);
        assert_eq!(Plan::Enterprise.limits().api_keys.unwrap().per_day, 2_000_000);
        assert_eq!(Plan::Free.limits().audit_retention_days, 30);
    }

    #[test]
    fn an_unknown_plan_is_an_error_not_free() {
        assert!("platinum".parse::<Plan>().is_err());
        assert_eq!("premium".parse::<Plan>().unwrap(), Plan::Premium);
    }
}
