//! The audit writer every context uses: one entry per mutating call, with secrets redacted.

use crate::db::{Db, DbError, SystemContext, TenantCollection};
use crate::http::RequestMeta;
use crate::identity::{Identity, Principal};
use crate::ids::TenantId;
use crate::models::AuditLog;
use mongodb::bson::{oid::ObjectId, Bson, DateTime, Document};
use std::time::Duration;

/// How long entries are kept before the retention job (or a TTL index) removes them.
pub const RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);

macro_rules! closed_list {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal $(, $resource:ident)?;)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)*
        }

        impl $name {
            /// Every value, in the documented order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The value as stored and as the API spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The value of a filter, if it is one of the list.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }
    };
}

closed_list!(
    /// What an audit entry is about: the `resource` filter's closed list (openapi.json's
    /// `AuditResource`).
    Resource {
        Tenant => "tenant";
        User => "user";
        Role => "role";
    }
);

closed_list!(
    /// What happened: the `action` filter's closed list (openapi.json's `AuditAction`). Each
    /// action is about one resource, named by its prefix.
    Action {
        TenantCreated => "tenant.created";
        TenantUpdated => "tenant.updated";
        TenantSuspended => "tenant.suspended";
        TenantReactivated => "tenant.reactivated";
        TenantCustomizationUpdated => "tenant.customization.updated";
        TenantBillingUpdated => "tenant.billing.updated";
        TenantAccessed => "tenant.accessed";
        UserInvited => "user.invited";
        UserUpdated => "user.updated";
        UserProfileUpdated => "user.profile.updated";
        UserDeleted => "user.deleted";
        UserRoleAssigned => "user.role.assigned";
        UserRoleRemoved => "user.role.removed";
        RoleCreated => "role.created";
        RoleUpdated => "role.updated";
        RoleDeleted => "role.deleted";
    }
);

impl Action {
    /// The resource the action is about.
    pub fn resource(self) -> Resource {
        let prefix = self.as_str().split('.').next().unwrap_or_default();
        Resource::parse(prefix).expect("every action's prefix is a resource")
    }
}

/// What happened, to which resource.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub action: Action,
    pub resource_id: Option<String>,
    pub details: Document,
}

/// Keys whose values never reach an audit entry, at any depth (matched case-insensitively,
/// as substrings: `adminPassword`, `apiKeySecret`, `Authorization`…).
const SECRET_KEYS: [&str; 7] = ["password", "secret", "token", "authorization", "apikey", "keyhash", "credential"];

/// Replaces the values of secret-looking keys with `"[REDACTED]"`.
pub fn redact(details: Document) -> Document {
    details
        .into_iter()
        .map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            if SECRET_KEYS.iter().any(|s| lower.contains(s)) {
                (k, Bson::String("[REDACTED]".into()))
            } else {
                (k, redact_value(v))
            }
        })
        .collect()
}

fn redact_value(value: Bson) -> Bson {
    match value {
        Bson::Document(d) => Bson::Document(redact(d)),
        Bson::Array(items) => Bson::Array(items.into_iter().map(redact_value).collect()),
        other => other,
    }
}

/// Writes one audit entry into `tenant`'s log. `actor` is the caller's id (a Cognito `sub` or
/// `apikey:<id>`).
pub async fn record(db: &Db, tenant: &TenantId, meta: &RequestMeta, actor: Option<String>, event: AuditEvent) -> Result<(), DbError> {
    let now = db.clock().now();
    let entry = AuditLog {
        id: ObjectId::new(),
        tenant_id: None,
        user_id: actor,
        action: event.action.as_str().to_owned(),
        resource: event.action.resource().as_str().to_owned(),
        resource_id: event.resource_id,
        details: redact(event.details),
        ip: meta.ip.clone(),
        user_agent: meta.user_agent.clone(),
        request_id: meta.request_id.clone(),
        timestamp: now,
        expire_at: DateTime::from_millis(now.timestamp_millis() + RETENTION.as_millis() as i64),
        created_at: None,
        updated_at: None,
    };
    let scope = SystemContext::new("audit").for_tenant(tenant.clone());
    db.scoped::<AuditLog>(&scope, TenantCollection::AuditLogs).insert_one(&entry).await?;
    Ok(())
}

/// How the caller acted: `superadmin` (a platform operator acting for the tenant), `apiKey` or
/// `member`.
pub fn acting_as(identity: &Identity) -> &'static str {
    match identity.principal {
        _ if identity.is_superadmin() => "superadmin",
        Principal::ApiKey { .. } => "apiKey",
        Principal::User { .. } => "member",
    }
}

/// Writes the audit entry of a mutation that has already happened, with `actingAs` added to its
/// details. A failure is logged, not returned: the caller's change stands, and a 500 would
/// claim it did not.
pub async fn record_best_effort(db: &Db, tenant: &TenantId, meta: &RequestMeta, identity: &Identity, mut event: AuditEvent) {
    event.details.insert("actingAs", acting_as(identity));
    let action = event.action.as_str();
    if let Err(error) = record(db, tenant, meta, Some(identity.actor_id()), event).await {
        tracing::error!(%error, action, "could not write the audit entry");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn every_action_is_about_a_resource_of_the_list() {
        for action in Action::ALL {
            assert_eq!(action.resource().as_str(), action.as_str().split('.').next().unwrap());
        }
        assert_eq!(Action::parse("user.invited"), Some(Action::UserInvited));
        assert_eq!(Action::parse("user.exploded"), None);
    }

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let d = redact(doc! {
            "name": "Acme",
            "adminPassword": "hunter2",
            "nested": {"apiKey": "sk_live", "list": [{"refreshToken": "t"}]},
        });
        assert_eq!(d.get_str("name").unwrap(), "Acme");
        assert_eq!(d.get_str("adminPassword").unwrap(), "[REDACTED]");
        let nested = d.get_document("nested").unwrap();
        assert_eq!(nested.get_str("apiKey").unwrap(), "[REDACTED]");
        let first = nested.get_array("list").unwrap()[0].as_document().unwrap();
        assert_eq!(first.get_str("refreshToken").unwrap(), "[REDACTED]");
        assert!(!d.to_string().contains("hunter2"));
    }
}
