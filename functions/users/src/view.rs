//! Response bodies, as the OpenAPI document describes them. The Cognito link, the sealed
//! values and the blind index stay inside: a view is made from an opened [`Person`].

use crate::person::Person;
use serde::Serialize;
use shared::clock::rfc3339_millis;
use shared::models::{Profile, UserStatus};

/// A user as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub profile: Profile,
    pub roles: Vec<String>,
    pub status: UserStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_login_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Person> for UserView {
    fn from(p: &Person) -> Self {
        let u = &p.user;
        Self {
            id: u.id.to_hex(),
            email: p.email.to_string(),
            profile: p.profile.clone(),
            roles: u.roles.clone(),
            status: u.status,
            last_login_at: u.last_login_at.map(rfc3339_millis),
            created_at: u.created_at.map(rfc3339_millis).unwrap_or_default(),
            updated_at: u.updated_at.map(rfc3339_millis).unwrap_or_default(),
        }
    }
}
