//! Response bodies, as the OpenAPI document describes them.

use serde::Serialize;
use shared::clock::rfc3339_millis;
use shared::ids::Permission;
use shared::models::Role;

/// A role as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleView {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub permissions: Vec<Permission>,
    pub is_system: bool,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Role> for RoleView {
    fn from(r: &Role) -> Self {
        Self {
            id: r.id.to_hex(),
            name: r.name.clone(),
            description: r.description.clone(),
            permissions: r.permissions.clone(),
            is_system: r.is_system,
            created_by: r.created_by.to_hex(),
            created_at: r.created_at.map(rfc3339_millis).unwrap_or_default(),
            updated_at: r.updated_at.map(rfc3339_millis).unwrap_or_default(),
        }
    }
}
