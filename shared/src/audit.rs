//! The audit writer every context uses: one entry per mutating call, with secrets redacted.

use crate::db::{Db, DbError, SystemContext, TenantCollection};
use crate::request::RequestMeta;
use crate::identity::{Identity, Principal};
use crate::ids::TenantId;
use crate::models::{AuditLog, Tenant};
use mongodb::bson::{oid::ObjectId, Bson, DateTime, Document};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// When an entry written at `at` expires, for a tenant keeping its log `days` days (its plan's
/// retention, docs/ARCHITECTURE.md §13). The retention job, or a TTL index, removes it then.
pub fn expire_at(at: DateTime, days: i64) -> DateTime {
    DateTime::from_millis(at.timestamp_millis().saturating_add(days.saturating_mul(DAY_MS)))
}

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
        ApiKey => "api-key";
        Access => "access";
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
        ApiKeyCreated => "api-key.created";
        ApiKeyUpdated => "api-key.updated";
        ApiKeyRevoked => "api-key.revoked";
        ApiKeyRotated => "api-key.rotated";
        AccessDenied => "access.denied";
        AccessCrossTenant => "access.cross-tenant";
        AccessKeyRejected => "access.key-rejected";
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

/// Keys whose values are personal data (docs/ARCHITECTURE.md §20): an audit entry holds ids or
/// blind indexes, never these values. Matched whole (case-insensitively), so that a key such as
/// `billingEmailChanged` keeps its boolean.
const PERSONAL_KEYS: [&str; 8] = ["email", "adminemail", "billingemail", "firstname", "lastname", "department", "title", "phone"];

/// Replaces the values of secret-looking keys, and of personal-data keys, with `"[REDACTED]"`.
pub fn redact(details: Document) -> Document {
    details
        .into_iter()
        .map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            if SECRET_KEYS.iter().any(|s| lower.contains(s)) || PERSONAL_KEYS.contains(&lower.as_str()) {
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

/// Writes one audit entry into `tenant`'s log, kept `retention_days`. `actor` is the caller's
/// id (a Cognito `sub` or `apikey:<id>`).
pub async fn record(
    db: &Db,
    tenant: &TenantId,
    retention_days: i64,
    meta: &RequestMeta,
    actor: Option<String>,
    event: AuditEvent,
) -> Result<(), DbError> {
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
        expire_at: expire_at(now, retention_days),
        created_at: None,
        updated_at: None,
    };
    let scope = SystemContext::new("audit").for_tenant(tenant.clone());
    db.scoped::<AuditLog>(&scope, TenantCollection::AuditLogs).insert_one(&entry).await?;
    Ok(())
}

/// Entries a retention batch reads and moves at a time.
pub const RETENTION_BATCH: i64 = 500;

/// Applies a tenant's pending retention change to its existing entries, at most `max_batches`
/// batches now: each batch moves `expireAt` of the next entries to the retention the tenant has
/// *now*, then records how far it got, conditional on the change it started from, so that a
/// newer change starts over and a rerun resumes. `true` once nothing is pending.
pub async fn catch_up_retention(db: &Db, tenant: &TenantId, max_batches: u32) -> Result<bool, DbError> {
    let system = crate::db::SystemContext::new("audit retention");
    let registry = db.tenants(&system);
    let retention = db.audit_retention(&system);
    for _ in 0..max_batches {
        let Some(record) = registry.get(tenant).await? else { return Ok(true) };
        let Some(pending) = record.audit_retention else { return Ok(true) };
        let days = record.settings.audit_retention_days();
        let next = retention.reapply(tenant, days, pending.after, RETENTION_BATCH).await?;
        let mut seen = mongodb::bson::doc! {"auditRetention.days": pending.days};
        seen.insert("auditRetention.after", pending.after.map_or(Bson::Document(mongodb::bson::doc! {"$exists": false}), Bson::ObjectId));
        let progress = match next {
            Some(after) => mongodb::bson::doc! {"auditRetention.after": after},
            None => mongodb::bson::doc! {"auditRetention": Bson::Null},
        };
        // A change made meanwhile moved the marker: it starts over, on a later run.
        if !registry.set_if(tenant, seen, progress).await? {
            return Ok(false);
        }
        if next.is_none() {
            return Ok(true);
        }
    }
    Ok(false)
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
pub async fn record_best_effort(db: &Db, tenant: &Tenant, meta: &RequestMeta, identity: &Identity, mut event: AuditEvent) {
    event.details.insert("actingAs", acting_as(identity));
    let action = event.action.as_str();
    let days = tenant.settings.audit_retention_days();
    if let Err(error) = record(db, &tenant.tenant_id, days, meta, Some(identity.actor_id()), event).await {
        tracing::error!(%error, action, "could not write the audit entry");
    }
}

/// Audits a refused call in `tenant`'s log, so that someone probing can be seen: a 403 on a
/// tenant-scoped route, a caller naming another tenant, or an API key of the tenant failing
/// authentication. At most [`crate::db::REFUSALS_PER_MINUTE`] such entries a minute per tenant
/// (one conditional update across every process); past that, and on any failure, it logs only.
pub async fn record_refusal(db: &Db, tenant: &TenantId, meta: &RequestMeta, actor: Option<String>, event: AuditEvent) {
    let system = crate::db::SystemContext::new("audit refusals");
    let action = event.action.as_str();
    let outcome = async {
        if !db.refusal_budget(&system).take(tenant).await? {
            return Ok::<_, DbError>(false);
        }
        // The retention comes from the tenant's plan; an unknown tenant has no log to write to.
        let Some(record_of) = db.tenants(&system).get(tenant).await? else { return Ok(false) };
        let days = record_of.settings.audit_retention_days();
        record(db, tenant, days, meta, actor, event).await?;
        Ok(true)
    }
    .await;
    match outcome {
        Ok(true) => {}
        // Debug only: a flood of refusals must not become a flood of log lines either.
        Ok(false) => tracing::debug!(action, "refusal not audited: the tenant's budget of refusal entries is spent"),
        Err(error) => tracing::error!(%error, action, "could not audit the refusal"),
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
    fn an_entry_expires_its_retention_after_it_was_written() {
        let at = DateTime::from_millis(1_700_000_000_000);
        assert_eq!(expire_at(at, 30).timestamp_millis(), 1_700_000_000_000 + 30 * DAY_MS);
        assert_eq!(expire_at(at, 7 * 365).timestamp_millis(), 1_700_000_000_000 + 2555 * DAY_MS);
    }

    #[test]
    fn personal_data_is_redacted_at_any_depth_by_whole_key() {
        let out = redact(doc! {"adminEmail": "a@b.example", "nested": {"FirstName": "Ada", "list": [{"email": "x@y.example"}]}, "billingEmailChanged": true, "fields": ["firstName"]});
        assert_eq!(out.get_str("adminEmail").unwrap(), "[REDACTED]");
        let nested = out.get_document("nested").unwrap();
        assert_eq!(nested.get_str("FirstName").unwrap(), "[REDACTED]");
        assert_eq!(nested.get_array("list").unwrap()[0].as_document().unwrap().get_str("email").unwrap(), "[REDACTED]");
        assert!(out.get_bool("billingEmailChanged").unwrap(), "a flag about a field is not the field");
        assert_eq!(out.get_array("fields").unwrap()[0].as_str(), Some("firstName"), "field names are not values");
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
