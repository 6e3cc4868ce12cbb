//! Response bodies, as the OpenAPI document describes them. Never the hash.

use mongodb::bson::DateTime;
use serde::Serialize;
use shared::clock::rfc3339_millis;
use shared::ids::Permission;
use shared::models::{ApiKey, ApiKeyStatus, RateLimit};

/// A key as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub permissions: Vec<Permission>,
    pub rate_limit: RateLimit,
    pub status: ApiKeyStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_key_valid_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// The key's status as of `now`: an active key past its expiry is shown as expired, whether or
/// not that has been written yet.
pub fn status_at(key: &ApiKey, now: DateTime) -> ApiKeyStatus {
    match key.status {
        ApiKeyStatus::Active if key.expires_at.is_some_and(|at| at <= now) => ApiKeyStatus::Expired,
        other => other,
    }
}

impl ApiKeyView {
    /// The view of `key` as of `now`.
    pub fn of(key: &ApiKey, now: DateTime) -> Self {
        // A grace that has run out is no longer worth showing.
        let grace = key.previous_key_valid_until.filter(|until| *until > now);
        Self {
            id: key.id.to_hex(),
            name: key.name.clone(),
            prefix: crate::secret::prefix_of(key.id),
            permissions: key.permissions.clone(),
            rate_limit: key.rate_limit,
            status: status_at(key, now),
            expires_at: key.expires_at.map(rfc3339_millis),
            last_used_at: key.last_used_at.map(rfc3339_millis),
            created_by: key.created_by.to_hex(),
            created_at: key.created_at.map(rfc3339_millis).unwrap_or_default(),
            updated_at: key.updated_at.map(rfc3339_millis).unwrap_or_default(),
            rotated_at: key.rotated_at.map(rfc3339_millis),
            previous_key_valid_until: grace.map(rfc3339_millis),
            revoked_at: key.revoked_at.map(rfc3339_millis),
        }
    }
}

/// A key with its whole secret: only in the reply to its creation or rotation. No `Debug`: the
/// secret must not reach a log.
#[derive(Serialize)]
pub struct IssuedKeyView {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// `tk_<id>_<secret>`, shown this once.
    #[serde(rename = "key")]
    pub secret: String,
}
