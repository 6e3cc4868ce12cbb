//! Response bodies, as the OpenAPI document describes them. Internal fields (`_id`, the usage
//! counter) stay inside.

use serde::Serialize;
use shared::clock::rfc3339_millis as rfc3339;
use shared::ids::TenantId;
use shared::models::{CollectionUsage, Customization, Tenant, TenantStatus, UsageSnapshot};
use shared::plans::Plan;
use std::collections::BTreeMap;

/// A tenant as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantView {
    pub tenant_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub settings: SettingsView,
    pub status: TenantStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspension_reason: Option<String>,
    /// When its personal-data keys were shredded, if they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_shredded_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A tenant's settings as the API shows them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    pub max_users: i64,
    pub features: Vec<String>,
    pub customization: Customization,
    pub billing: BillingView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_retention_days: Option<i64>,
}

/// Why a personal field is not shown: something about its record, never a failing service
/// (that is a 503 or a 500 for the whole response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unavailable {
    /// The tenant's keys were shredded: the value is gone for good.
    Shredded,
    /// The stored value fails authentication (altered, moved from another record or field, or
    /// naming a key version the vault lacks): logged with the tenant's id, never shown.
    Corrupt,
}

/// A personal field of a single tenant's view: opened, or unavailable and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Value(String),
    Unavailable(Unavailable),
}

/// The plan and billing contact.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingView {
    pub plan: Plan,
    pub max_api_calls: i64,
    /// Left out of list pages, which open no personal data (`None`); `Some(None)`, shown as
    /// `null`, when it can't be opened, with `billing_email_unavailable` saying why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_email: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_email_unavailable: Option<Unavailable>,
}

impl TenantView {
    /// The view of one tenant, with its billing e-mail as it opened.
    pub fn new(t: &Tenant, billing_email: Opened) -> Self {
        Self::of(t, Some(billing_email))
    }

    /// The view of a tenant in a list page: no personal field at all, so a page costs no key.
    pub fn listed(t: &Tenant) -> Self {
        Self::of(t, None)
    }

    fn of(t: &Tenant, billing_email: Option<Opened>) -> Self {
        let s = &t.settings;
        let (billing_email, billing_email_unavailable) = match billing_email {
            None => (None, None),
            Some(Opened::Value(email)) => (Some(Some(email)), None),
            Some(Opened::Unavailable(why)) => (Some(None), Some(why)),
        };
        let billing =
            BillingView { plan: s.billing.plan, max_api_calls: s.billing.max_api_calls, billing_email, billing_email_unavailable };
        let settings = SettingsView {
            max_users: s.max_users,
            features: s.features.clone(),
            customization: s.customization.clone(),
            billing,
            audit_retention_days: s.audit_retention_days,
        };
        Self {
            tenant_id: t.tenant_id.to_string(),
            name: t.name.clone(),
            domain: t.domain.clone(),
            settings,
            status: t.status,
            suspended_at: t.suspended_at.map(rfc3339),
            suspension_reason: t.suspension_reason.clone(),
            keys_shredded_at: t.keys_shredded_at.map(rfc3339),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

/// `GET /tenants/{tenantId}/limits`.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TenantLimits {
    pub max_users: i64,
    pub current_users: u64,
    pub max_api_calls: i64,
    pub current_api_calls: i64,
    pub features: Vec<String>,
}

/// `GET /tenants/{tenantId}/usage/history`: the tenant's daily snapshots, newest first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageHistoryView {
    pub tenant_id: String,
    pub snapshots: Vec<UsageSnapshotView>,
}

impl UsageHistoryView {
    /// The history of `tenant_id` from its snapshots, in the order given.
    pub fn new(tenant_id: &TenantId, snapshots: &[UsageSnapshot]) -> Self {
        Self { tenant_id: tenant_id.to_string(), snapshots: snapshots.iter().map(UsageSnapshotView::from).collect() }
    }
}

/// One day's snapshot as the API shows it (its `_id` and tenant stay inside).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageSnapshotView {
    pub day: String,
    pub taken_at: String,
    pub collections: BTreeMap<String, CollectionUsage>,
    pub totals: CollectionUsage,
}

impl From<&UsageSnapshot> for UsageSnapshotView {
    fn from(s: &UsageSnapshot) -> Self {
        Self { day: s.day.clone(), taken_at: rfc3339(s.taken_at), collections: s.collections.clone(), totals: s.totals }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{oid::ObjectId, DateTime};
    use shared::models::TenantSettings;
    use shared::pii::{Field, Key, Sealed};

    fn tenant() -> Tenant {
        let id = TenantId::parse("tn_view").unwrap();
        let sealed = Sealed::seal(&Key::from_slice(&[7; 32]).unwrap(), 1, &id, Field::BillingEmail, "b@view.example").unwrap();
        let now = DateTime::now();
        Tenant {
            id: ObjectId::new(),
            tenant_id: id,
            name: "V".into(),
            domain: None,
            settings: TenantSettings::for_plan(Plan::Free, sealed),
            status: TenantStatus::Active,
            suspended_at: None,
            suspension_reason: None,
            api_usage: Default::default(),
            minute_usage: Default::default(),
            counters: None,
            api_key_count: 0,
            audit_retention: None,
            keys_shredded_at: Some(now),
            offboarding: None,
            restoring: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn billing(view: &TenantView) -> serde_json::Value {
        serde_json::to_value(view).unwrap()["settings"]["billing"].clone()
    }

    #[test]
    fn a_listed_tenant_carries_no_billing_email_and_no_reason() {
        let view = TenantView::listed(&tenant());
        let billing = billing(&view);
        assert_eq!(billing, serde_json::json!({"plan": "free", "maxApiCalls": 1000}));
        assert!(serde_json::to_value(&view).unwrap()["keysShreddedAt"].is_string());
    }

    #[test]
    fn an_unavailable_billing_email_is_null_with_its_reason() {
        let shredded = TenantView::new(&tenant(), Opened::Unavailable(Unavailable::Shredded));
        assert_eq!(billing(&shredded)["billingEmail"], serde_json::Value::Null);
        assert_eq!(billing(&shredded)["billingEmailUnavailable"], "shredded");
        let corrupt = TenantView::new(&tenant(), Opened::Unavailable(Unavailable::Corrupt));
        assert_eq!(billing(&corrupt)["billingEmailUnavailable"], "corrupt");
        let opened = TenantView::new(&tenant(), Opened::Value("b@view.example".into()));
        assert_eq!(billing(&opened)["billingEmail"], "b@view.example");
        assert!(billing(&opened).get("billingEmailUnavailable").is_none());
    }
}
