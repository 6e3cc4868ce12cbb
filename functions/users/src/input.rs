//! Request bodies: typed, unknown fields refused, then validated into domain types. No string
//! from a client can become a query operator: every field is a string or a list of strings.

use mongodb::bson::oid::ObjectId;
use serde::Deserialize;
use shared::error::{ApiError, Check};
use shared::ids::{parse_object_id, Email};
use shared::models::UserStatus;
use shared::text::{free_text, https_url};

/// The longest first or last name, department or title.
pub const MAX_TEXT: usize = 100;
/// The longest avatar URL.
pub const MAX_AVATAR: usize = 2048;
/// The most roles an invitation may name.
pub const MAX_ROLES: usize = 20;

/// `POST /users`: the invitation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InviteBody {
    email: String,
    first_name: String,
    last_name: String,
    roles: Option<Vec<String>>,
}

/// A validated invitation.
#[derive(Debug, Clone)]
pub struct Invitation {
    pub email: Email,
    pub first_name: String,
    pub last_name: String,
    /// The roles to give; `None`: the `user` role.
    pub roles: Option<Vec<ObjectId>>,
}

fn role_ids(raw: Vec<String>) -> Result<Vec<ObjectId>, String> {
    if raw.is_empty() || raw.len() > MAX_ROLES {
        return Err(format!("must list 1 to {MAX_ROLES} roles (or be left out: the user role)"));
    }
    let mut ids: Vec<ObjectId> = Vec::with_capacity(raw.len());
    for r in raw {
        let id = parse_object_id(&r).map_err(|e| e.0)?;
        if ids.contains(&id) {
            return Err(format!("{r} is listed twice"));
        }
        ids.push(id);
    }
    Ok(ids)
}

impl InviteBody {
    /// Checks every field.
    pub fn validate(self) -> Result<Invitation, ApiError> {
        let mut c = Check::default();
        let email = c.field("email", Email::parse(self.email));
        let first_name = c.field("firstName", free_text(&self.first_name, MAX_TEXT));
        let last_name = c.field("lastName", free_text(&self.last_name, MAX_TEXT));
        let roles = self.roles.map(|r| c.field("roles", role_ids(r)));
        c.done(|| Invitation {
            email: email.expect("checked"),
            first_name: first_name.expect("checked"),
            last_name: last_name.expect("checked"),
            roles: roles.flatten(),
        })
    }
}

/// Profile fields a user may change about itself, and an admin about anyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChanges {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub avatar: Option<String>,
    pub department: Option<String>,
    pub title: Option<String>,
}

impl ProfileChanges {
    /// Whether nothing is to change.
    pub fn is_empty(&self) -> bool {
        *self == ProfileChanges::default()
    }
}

/// `PATCH /users/me`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateProfileBody {
    first_name: Option<String>,
    last_name: Option<String>,
    avatar: Option<String>,
    department: Option<String>,
    title: Option<String>,
}

impl UpdateProfileBody {
    /// Checks the given fields; at least one must be given.
    pub fn validate(self) -> Result<ProfileChanges, ApiError> {
        let mut c = Check::default();
        let changes = profile(&mut c, self.first_name, self.last_name, self.avatar, self.department, self.title);
        if changes.is_empty() && c.is_empty() {
            return Err(ApiError::invalid("body", "give at least one of firstName, lastName, avatar, department, title"));
        }
        c.done(|| changes)
    }
}

fn profile(
    c: &mut Check,
    first_name: Option<String>,
    last_name: Option<String>,
    avatar: Option<String>,
    department: Option<String>,
    title: Option<String>,
) -> ProfileChanges {
    ProfileChanges {
        first_name: first_name.and_then(|v| c.field("firstName", free_text(&v, MAX_TEXT))),
        last_name: last_name.and_then(|v| c.field("lastName", free_text(&v, MAX_TEXT))),
        avatar: avatar.and_then(|v| c.field("avatar", https_url(&v, MAX_AVATAR))),
        department: department.and_then(|v| c.field("department", free_text(&v, MAX_TEXT))),
        title: title.and_then(|v| c.field("title", free_text(&v, MAX_TEXT))),
    }
}

/// `PATCH /users/{userId}`: profile fields and, for admins, the status.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateUserBody {
    first_name: Option<String>,
    last_name: Option<String>,
    avatar: Option<String>,
    department: Option<String>,
    title: Option<String>,
    status: Option<String>,
}

/// A validated change of a user.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub profile: ProfileChanges,
    /// `active` or `inactive` only: pending becomes active by signing in.
    pub status: Option<UserStatus>,
}

impl UpdateUserBody {
    /// Checks the given fields; at least one must be given.
    pub fn validate(self) -> Result<UserChanges, ApiError> {
        let mut c = Check::default();
        let status = self.status.map(|s| {
            c.field(
                "status",
                match s.as_str() {
                    "active" => Ok(UserStatus::Active),
                    "inactive" => Ok(UserStatus::Inactive),
                    _ => Err("must be active or inactive"),
                },
            )
        });
        let profile = profile(&mut c, self.first_name, self.last_name, self.avatar, self.department, self.title);
        if profile.is_empty() && status.is_none() && c.is_empty() {
            return Err(ApiError::invalid("body", "give at least one of firstName, lastName, avatar, department, title, status"));
        }
        c.done(|| UserChanges { profile, status: status.flatten() })
    }
}

/// `POST /users/{userId}/roles`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AssignRoleBody {
    role_id: String,
}

impl AssignRoleBody {
    /// The role's id.
    pub fn validate(self) -> Result<ObjectId, ApiError> {
        parse_object_id(&self.role_id).map_err(|e| ApiError::invalid("roleId", e.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invitation_is_checked_field_by_field() {
        let body: InviteBody = serde_json::from_str(r#"{"email":"nope","firstName":"","lastName":"B\u202e","roles":["x"]}"#).unwrap();
        let Err(ApiError::BadRequest { details, .. }) = body.validate() else { panic!() };
        let fields: Vec<_> = details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["email", "firstName", "lastName", "roles"]);
    }

    #[test]
    fn operator_objects_and_unknown_fields_do_not_parse() {
        assert!(serde_json::from_str::<InviteBody>(r#"{"email":{"$ne":null},"firstName":"a","lastName":"b"}"#).is_err());
        assert!(serde_json::from_str::<InviteBody>(r#"{"email":"a@b.example","firstName":"a","lastName":"b","status":"active"}"#).is_err());
        assert!(serde_json::from_str::<UpdateUserBody>(r#"{"email":"x@y.example"}"#).is_err());
        assert!(serde_json::from_str::<UpdateUserBody>(r#"{"roles":["x"]}"#).is_err());
        assert!(serde_json::from_str::<UpdateProfileBody>(r#"{"status":"active"}"#).is_err());
    }

    #[test]
    fn status_moves_only_between_active_and_inactive() {
        let body: UpdateUserBody = serde_json::from_str(r#"{"status":"pending"}"#).unwrap();
        assert!(body.validate().is_err());
        let body: UpdateUserBody = serde_json::from_str(r#"{"status":"inactive"}"#).unwrap();
        assert_eq!(body.validate().unwrap().status, Some(UserStatus::Inactive));
    }

    #[test]
    fn an_empty_patch_is_refused_and_a_bad_avatar_named() {
        assert!(serde_json::from_str::<UpdateProfileBody>("{}").unwrap().validate().is_err());
        let body: UpdateProfileBody = serde_json::from_str(r#"{"avatar":"http://x.example/a.png"}"#).unwrap();
        let Err(ApiError::BadRequest { details, .. }) = body.validate() else { panic!() };
        assert_eq!(details[0].field, "avatar");
    }
}
