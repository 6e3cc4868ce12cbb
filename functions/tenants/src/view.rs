//! Response bodies, as the OpenAPI document describes them. Internal fields (`_id`, the usage
//! counter) stay inside.

use serde::Serialize;
use shared::clock::rfc3339_millis as rfc3339;
use shared::models::{Tenant, TenantSettings, TenantStatus};

/// A tenant as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantView {
    pub tenant_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub settings: TenantSettings,
    pub status: TenantStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspension_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        Self {
            tenant_id: t.tenant_id.to_string(),
            name: t.name.clone(),
            domain: t.domain.clone(),
            settings: t.settings.clone(),
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
