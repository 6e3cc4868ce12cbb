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
    pub created_at: String,
    pub updated_at: String,
}

/// A tenant's settings as the API shows them: the billing e-mail opened.
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

/// The plan and billing contact.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingView {
    pub plan: Plan,
    pub max_api_calls: i64,
    pub billing_email: String,
}

impl TenantView {
    /// The view of `t`, whose sealed billing e-mail opens to `billing_email`.
    pub fn new(t: &Tenant, billing_email: String) -> Self {
        let s = &t.settings;
        let settings = SettingsView {
            max_users: s.max_users,
            features: s.features.clone(),
            customization: s.customization.clone(),
            billing: BillingView { plan: s.billing.plan, max_api_calls: s.billing.max_api_calls, billing_email },
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
