//! Request bodies: typed, unknown fields refused, then validated into domain types.

use serde::Deserialize;
use shared::error::{ApiError, Check};
use shared::ids::Permission;
use shared::text::free_text;

/// The longest role name.
pub const MAX_NAME: usize = 64;
/// The longest description.
pub const MAX_DESCRIPTION: usize = 500;
/// The most permissions a role may list.
pub const MAX_PERMISSIONS: usize = shared::permissions::MAX_LISTED;

fn permissions(raw: Vec<String>) -> Result<Vec<Permission>, String> {
    shared::permissions::parse_requested(raw)
}

/// `POST /roles`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleBody {
    name: String,
    description: Option<String>,
    permissions: Vec<String>,
}

/// A validated new role.
#[derive(Debug, Clone)]
pub struct NewRole {
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<Permission>,
}

impl CreateRoleBody {
    /// Checks every field: free text, catalogue permissions without repeats.
    pub fn validate(self) -> Result<NewRole, ApiError> {
        let mut c = Check::default();
        let name = c.field("name", free_text(&self.name, MAX_NAME));
        let description = self.description.map(|d| c.field("description", free_text(&d, MAX_DESCRIPTION)));
        let permissions = c.field("permissions", permissions(self.permissions));
        c.done(|| NewRole { name: name.expect("checked"), description: description.flatten(), permissions: permissions.expect("checked") })
    }
}

/// `PATCH /roles/{roleId}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleBody {
    name: Option<String>,
    description: Option<String>,
    permissions: Option<Vec<String>>,
}

/// A validated change of a role; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RoleChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub permissions: Option<Vec<Permission>>,
}

impl UpdateRoleBody {
    /// Checks the given fields; at least one must be given.
    pub fn validate(self) -> Result<RoleChanges, ApiError> {
        if self.name.is_none() && self.description.is_none() && self.permissions.is_none() {
            return Err(ApiError::invalid("body", "give at least one of name, description, permissions"));
        }
        let mut c = Check::default();
        let name = self.name.map(|n| c.field("name", free_text(&n, MAX_NAME)));
        let description = self.description.map(|d| c.field("description", free_text(&d, MAX_DESCRIPTION)));
        let permissions = self.permissions.map(|p| c.field("permissions", permissions(p)));
        c.done(|| RoleChanges { name: name.flatten(), description: description.flatten(), permissions: permissions.flatten() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(json: &str) -> Result<NewRole, ApiError> {
        serde_json::from_str::<CreateRoleBody>(json).map_err(|e| ApiError::invalid("body", e.to_string()))?.validate()
    }

    #[test]
    fn an_unknown_permission_is_a_400_that_names_it() {
        let Err(ApiError::BadRequest { details, .. }) = create(r#"{"name":"R","permissions":["read:users","fly:planes"]}"#) else {
            panic!()
        };
        assert_eq!(details[0].field, "permissions");
        assert!(details[0].message.contains("fly:planes"), "{}", details[0].message);
    }

    #[test]
    fn operators_unknown_fields_and_repeats_are_refused() {
        assert!(serde_json::from_str::<CreateRoleBody>(r#"{"name":{"$ne":""},"permissions":["*"]}"#).is_err());
        assert!(serde_json::from_str::<CreateRoleBody>(r#"{"name":"R","permissions":["*"],"isSystem":true}"#).is_err());
        assert!(create(r#"{"name":"R","permissions":["read:users","read:users"]}"#).is_err());
        assert!(create(r#"{"name":"R","permissions":[]}"#).is_err());
        assert!(create(r#"{"name":"R\u202e","permissions":["*"]}"#).is_err());
    }

    #[test]
    fn a_valid_role_keeps_its_permissions_in_order() {
        let r = create(r#"{"name":" Support ","permissions":["read:users","update:*"]}"#).unwrap();
        assert_eq!(r.name, "Support");
        assert_eq!(r.permissions.iter().map(Permission::as_str).collect::<Vec<_>>(), ["read:users", "update:*"]);
    }

    #[test]
    fn an_empty_patch_is_refused() {
        assert!(serde_json::from_str::<UpdateRoleBody>("{}").unwrap().validate().is_err());
    }
}
