//! The audit writer every context uses: one entry per mutating call, with secrets redacted.

use crate::db::{Db, DbError, RefusalSource, SystemContext, TenantCollection};
use crate::identity::{Identity, Principal};
use crate::ids::TenantId;
use crate::models::{AuditLog, Tenant};
use crate::request::RequestMeta;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use sha2::{Digest, Sha256};
use std::num::NonZeroUsize;
use std::sync::{LazyLock, Mutex};

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
        TenantOffboarded => "tenant.offboarded";
        TenantOffboardingCancelled => "tenant.offboarding-cancelled";
        TenantExportRequested => "tenant.export-requested";
        TenantExportRead => "tenant.export-read";
        TenantRestoreRequested => "tenant.restore-requested";
        TenantExportSettingsUpdated => "tenant.export-settings.updated";
        UserInvited => "user.invited";
        UserInvitationRefused => "user.invitation-refused";
        UserUpdated => "user.updated";
        UserProfileUpdated => "user.profile.updated";
        UserDeleted => "user.deleted";
        UserErased => "user.erased";
        UserRoleAssigned => "user.role.assigned";
        UserRoleRemoved => "user.role.removed";
        UserExported => "user.exported";
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
        AccessRefusalsDropped => "access.refusals-dropped";
    }
);

impl Action {
    /// The resource the action is about.
    pub fn resource(self) -> Resource {
        let prefix = self.as_str().split('.').next().unwrap_or_default();
        Resource::parse(prefix).expect("every action's prefix is a resource")
    }
}

/// Where a page of audit entries ends, newest first: the last entry's timestamp and id. Pages
/// cut on `(timestamp, _id)` are not shifted by entries written while a client pages, as an
/// offset's would be. Its opaque form is the one `GET /audit-logs` hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    pub timestamp_ms: i64,
    pub id: ObjectId,
}

impl PageCursor {
    /// The cursor after `entry`.
    pub fn after(entry: &AuditLog) -> Self {
        Self { timestamp_ms: entry.timestamp.timestamp_millis(), id: entry.id }
    }

    /// The opaque form clients hand back: base64url of `<ms>.<id>`.
    pub fn encode(self) -> String {
        data_encoding::BASE64URL_NOPAD.encode(format!("{}.{}", self.timestamp_ms, self.id.to_hex()).as_bytes())
    }

    /// A cursor this API issued; anything else is `None` (a 400 for the caller).
    pub fn decode(text: &str) -> Option<Self> {
        let raw = data_encoding::BASE64URL_NOPAD.decode(text.as_bytes()).ok()?;
        let (ms, id) = std::str::from_utf8(&raw).ok()?.split_once('.')?;
        Some(Self { timestamp_ms: ms.parse().ok()?, id: ObjectId::parse_str(id).ok()? })
    }

    /// The filter of the entries after this cursor, newest first.
    pub fn filter(self) -> Document {
        let at = DateTime::from_millis(self.timestamp_ms);
        doc! {"$or": [{"timestamp": {"$lt": at}}, {"timestamp": at, "_id": {"$lt": self.id}}]}
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

/// The detail keys an erasure removes from the entries about a person (docs/ARCHITECTURE.md
/// §22): the personal keys (their values are redacted at write, but not every entry was written
/// by today's code) and an address's blind index (`emailHash`), which would confirm a guess.
pub const ERASED_DETAIL_KEYS: [&str; 11] =
    ["email", "emailHash", "adminEmail", "billingEmail", "firstName", "lastName", "department", "title", "phone", "sub", "formerSub"];

/// Whether `identity` is a person whose erasure left a tombstone in `tenant` (their token is
/// still signed, and refused). Only a refusal asks, so the read costs nothing on admitted calls;
/// a failed read answers no.
pub async fn erased_actor(db: &Db, tenant: &TenantId, identity: &Identity) -> bool {
    let Principal::User { sub, .. } = &identity.principal else { return false };
    let scope = SystemContext::new("erasure check").for_tenant(tenant.clone());
    let tombstones = db.scoped::<Document>(&scope, TenantCollection::UserErasures);
    matches!(tombstones.find_one(doc! {"formerSub": sub}).await, Ok(Some(_)))
}

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

/// Longest user agent an entry keeps, in characters (a caller writes it, and API Gateway lets
/// a header reach 10 KiB).
pub const MAX_USER_AGENT_CHARS: usize = 256;
/// Longest string an entry's details keep, at any depth, in characters: a refusal's `reason`,
/// a `route` or a `path`, a tenant id named in a path.
pub const MAX_DETAIL_CHARS: usize = 512;
/// Longest source address, request id, actor and resource id an entry keeps, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// `text` cut to at most `max` characters, on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_owned(),
        None => text.to_owned(),
    }
}

fn bound_details(details: Document) -> Document {
    details.into_iter().map(|(k, v)| (k, bound_value(v))).collect()
}

fn bound_value(value: Bson) -> Bson {
    match value {
        Bson::String(s) => Bson::String(truncate(&s, MAX_DETAIL_CHARS)),
        Bson::Document(d) => Bson::Document(bound_details(d)),
        Bson::Array(items) => Bson::Array(items.into_iter().map(bound_value).collect()),
        other => other,
    }
}

/// The one place an entry is built: secrets and personal data redacted, and every field a
/// caller can write bounded ([`MAX_USER_AGENT_CHARS`], [`MAX_DETAIL_CHARS`], [`MAX_ID_CHARS`]),
/// so that no request can make an entry large.
fn entry(id: ObjectId, now: DateTime, retention_days: i64, meta: &RequestMeta, actor: Option<String>, event: AuditEvent) -> AuditLog {
    AuditLog {
        id,
        tenant_id: None,
        user_id: actor.map(|a| truncate(&a, MAX_ID_CHARS)),
        action: event.action.as_str().to_owned(),
        resource: event.action.resource().as_str().to_owned(),
        resource_id: event.resource_id.map(|r| truncate(&r, MAX_ID_CHARS)),
        details: bound_details(redact(event.details)),
        ip: truncate(&meta.ip, MAX_ID_CHARS),
        user_agent: truncate(&meta.user_agent, MAX_USER_AGENT_CHARS),
        request_id: truncate(&meta.request_id, MAX_ID_CHARS),
        timestamp: now,
        expire_at: expire_at(now, retention_days),
        created_at: None,
        updated_at: None,
        actor_erased: None,
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
    let entry = entry(ObjectId::new(), db.clock().now(), retention_days, meta, actor, event);
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
pub async fn record_best_effort(db: &Db, tenant: &Tenant, meta: &RequestMeta, identity: &Identity, event: AuditEvent) {
    let action = event.action.as_str();
    if let Err(error) = record_as(db, tenant, meta, identity, event).await {
        tracing::error!(%error, action, "could not write the audit entry");
    }
}

/// Writes the audit entry of `identity`'s act in `tenant`'s log, with `actingAs` added to its
/// details, before the act's answer: for acts that do not happen unless audited (a tenant's
/// export, handed out only once its request or read is on record).
pub async fn record_as(db: &Db, tenant: &Tenant, meta: &RequestMeta, identity: &Identity, mut event: AuditEvent) -> Result<(), DbError> {
    event.details.insert("actingAs", acting_as(identity));
    let days = tenant.settings.audit_retention_days();
    record(db, &tenant.tenant_id, days, meta, Some(identity.actor_id()), event).await
}

/// Audits a route's refusal of an authenticated caller (a 403) in `tenant`'s log, the caller's
/// own: `actor` is its principal (the `sub`, or `apikey:<id>`). Each actor has its own budget of
/// [`crate::db::REFUSALS_PER_MINUTE`] entries a minute (one conditional update across every
/// process), so that no one else's refusals can crowd its out; past that the refusal is
/// counted in the minute's summary entry ([`Action::AccessRefusalsDropped`]). A failure is
/// logged, never returned: the caller gets its 403 whatever happens here.
pub async fn record_refusal(db: &Db, tenant: &TenantId, meta: &RequestMeta, actor: Option<String>, event: AuditEvent) {
    let action = event.action.as_str();
    let source = RefusalSource::Actor(tenant.clone(), actor.clone().unwrap_or_else(|| "-".into()));
    let outcome = async {
        if db.refusal_budget(&SystemContext::new("audit refusals")).take(&source).await? {
            write_refusal(db, tenant, meta, actor, event).await?;
            return Ok::<_, DbError>(true);
        }
        record_dropped(db, tenant, &source, meta, actor).await?;
        Ok(false)
    }
    .await;
    log_outcome(action, outcome);
}

/// Audits an API key refused at authentication (wrong secret, rotated out, revoked, expired):
/// `refused` names the key's tenant, from the stored key, and the entry; it is `None` for an
/// id no key has, which has no log to go to but spends the same budgets, so that the two cost
/// the same. The refusal needs room in both the source address's budget and the key id's
/// (the address first: one address cannot make the budgets of more than its own 20 ids a
/// minute). A known key's refusal past either goes into the minute's summary entry of that
/// budget in the key's tenant; an unknown id's is noted on the spent budget's document.
pub async fn record_key_refusal(db: &Db, key_id: ObjectId, meta: &RequestMeta, refused: Option<(&TenantId, AuditEvent)>) {
    let action = Action::AccessKeyRejected.as_str();
    let budget = db.refusal_budget(&SystemContext::new("audit refusals"));
    let outcome = async {
        let (ip, key) = (RefusalSource::ip(&meta.ip), RefusalSource::Key(key_id));
        let spent = if !budget.take(&ip).await? {
            Some(ip)
        } else if !budget.take(&key).await? {
            Some(key)
        } else {
            None
        };
        let actor = Some(format!("apikey:{}", key_id.to_hex()));
        match (spent, refused) {
            (None, Some((tenant, event))) => write_refusal(db, tenant, meta, actor, event).await,
            (None, None) => Ok(true),
            (Some(source), Some((tenant, _))) => record_dropped(db, tenant, &source, meta, None).await.map(|()| false),
            (Some(source), None) => budget.note_dropped(&source).await.map(|()| false),
        }
    }
    .await;
    log_outcome(action, outcome);
}

/// Counts a refusal that gets no entry of its own (its source's budget is spent) in the
/// minute's summary entry of `source` in `tenant`'s log; a failure is logged, never returned.
pub async fn record_past_budget(db: &Db, tenant: &TenantId, source: &RefusalSource, meta: &RequestMeta, actor: Option<String>) {
    let outcome = record_dropped(db, tenant, source, meta, actor).await.map(|()| false);
    log_outcome(Action::AccessRefusalsDropped.as_str(), outcome);
}

fn log_outcome(action: &str, outcome: Result<bool, DbError>) {
    match outcome {
        Ok(true) => {}
        // Debug only: a flood of refusals must not become a flood of log lines either.
        Ok(false) => tracing::debug!(action, "refusal not audited: its source's budget is spent; counted in the summary entry"),
        Err(error) => tracing::error!(%error, action, "could not audit the refusal"),
    }
}

/// Writes a refusal's entry with the tenant's retention. An unknown tenant has no log.
async fn write_refusal(db: &Db, tenant: &TenantId, meta: &RequestMeta, actor: Option<String>, event: AuditEvent) -> Result<bool, DbError> {
    let Some(record_of) = db.tenants(&SystemContext::new("audit refusals")).get(tenant).await? else { return Ok(false) };
    record(db, tenant, record_of.settings.audit_retention_days(), meta, actor, event).await?;
    Ok(true)
}

/// Summary entries this process has written, per database: later drops only increment them.
static SUMMARIES: LazyLock<Mutex<lru::LruCache<(String, ObjectId), ()>>> =
    LazyLock::new(|| Mutex::new(lru::LruCache::new(NonZeroUsize::new(10_000).expect("non-zero"))));

/// The id of the summary entry of `source`'s dropped refusals in `tenant`'s log for the minute
/// of `now_ms`: the minute's start as an ObjectId's time (so that it sorts with its minute),
/// then 8 bytes of SHA-256 over the tenant, the source and the minute. The same in every
/// process, so that one upsert creates it and every later drop increments it.
pub fn summary_id(tenant: &TenantId, source: &RefusalSource, now_ms: i64) -> ObjectId {
    let minute_start = now_ms.div_euclid(60_000) * 60;
    let digest = Sha256::digest(format!("{tenant}\n{}\n{minute_start}", source.id()).as_bytes());
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&(minute_start as u32).to_be_bytes());
    bytes[4..].copy_from_slice(&digest[..8]);
    ObjectId::from_bytes(bytes)
}

/// Counts one dropped refusal of `source` in `tenant`'s log: the minute's summary entry,
/// created at the first drop (as the audit writer builds every entry, with the tenant's
/// retention) and incremented after (`details.dropped`). So nothing is dropped silently, and a
/// flood costs the log one entry a minute per source.
async fn record_dropped(
    db: &Db,
    tenant: &TenantId,
    source: &RefusalSource,
    meta: &RequestMeta,
    actor: Option<String>,
) -> Result<(), DbError> {
    let now = db.clock().now();
    let id = summary_id(tenant, source, now.timestamp_millis());
    let log = db.scoped::<AuditLog>(&SystemContext::new("audit").for_tenant(tenant.clone()), TenantCollection::AuditLogs);
    let increment = doc! {"$inc": {"details.dropped": 1_i64}};
    let cached = (db.name().to_owned(), id);
    if SUMMARIES.lock().expect("poisoned").get(&cached).is_some()
        && log.update_one(doc! {"_id": id}, increment.clone(), false).await?.matched == 1
    {
        return Ok(());
    }
    let Some(record_of) = db.tenants(&SystemContext::new("audit refusals")).get(tenant).await? else { return Ok(()) };
    let (minute, _) = crate::clock::minute_window(now.timestamp_millis());
    let event =
        AuditEvent { action: Action::AccessRefusalsDropped, resource_id: None, details: doc! {"source": source.id(), "minute": minute} };
    let summary = entry(id, now, record_of.settings.audit_retention_days(), meta, actor, event);
    let mut on_insert = Document::new();
    for (field, value) in mongodb::bson::to_document(&summary)? {
        match (field.as_str(), value) {
            ("_id", _) => {}
            // Field by field, beside the `$inc` of `details.dropped`, which would conflict with
            // a whole `details`.
            ("details", Bson::Document(details)) => on_insert.extend(details.into_iter().map(|(k, v)| (format!("details.{k}"), v))),
            (_, value) => {
                on_insert.insert(field, value);
            }
        }
    }
    let mut upsert = increment.clone();
    upsert.insert("$setOnInsert", on_insert);
    match log.update_one(doc! {"_id": id}, upsert, true).await {
        Ok(_) => {}
        // Another process created it in between: count this drop in it.
        Err(DbError::Duplicate) => {
            log.update_one(doc! {"_id": id}, increment, false).await?;
        }
        Err(e) => return Err(e),
    }
    SUMMARIES.lock().expect("poisoned").put(cached, ());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    #[test]
    fn a_page_cursor_round_trips_and_anything_else_is_refused() {
        let c = PageCursor { timestamp_ms: 1_795_911_056_336, id: ObjectId::new() };
        assert_eq!(PageCursor::decode(&c.encode()), Some(c));
        for bad in ["", "x", "bm9wZQ", "MTIzLnp6eg", "{\"$gt\":1}"] {
            assert_eq!(PageCursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_action_is_about_a_resource_of_the_list() {
        for action in Action::ALL {
            assert_eq!(action.resource().as_str(), action.as_str().split('.').next().unwrap());
        }
        assert_eq!(Action::parse("user.invited"), Some(Action::UserInvited));
        assert_eq!(Action::parse("user.exploded"), None);
    }

    #[test]
    fn stored_fields_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("hé", 5), "hé");
        let meta = RequestMeta { request_id: "r".repeat(1000), ip: "1.2.3.4".into(), user_agent: "é".repeat(1000) };
        let event = AuditEvent {
            action: Action::AccessDenied,
            resource_id: None,
            details: doc! {"reason": "x".repeat(9000), "deep": {"path": ["y".repeat(9000)]}},
        };
        let built = entry(ObjectId::new(), DateTime::now(), 30, &meta, Some("z".repeat(500)), event);
        assert_eq!(built.user_agent.chars().count(), MAX_USER_AGENT_CHARS);
        assert_eq!(built.request_id.len(), MAX_ID_CHARS);
        assert_eq!(built.user_id.unwrap().len(), MAX_ID_CHARS);
        assert_eq!(built.details.get_str("reason").unwrap().len(), MAX_DETAIL_CHARS);
        let deep = built.details.get_document("deep").unwrap().get_array("path").unwrap();
        assert_eq!(deep[0].as_str().unwrap().len(), MAX_DETAIL_CHARS);
    }

    #[test]
    fn a_summary_has_one_id_per_tenant_source_and_minute_sorting_with_its_minute() {
        let tenant = TenantId::parse("tn_a").unwrap();
        let ip = RefusalSource::ip("198.51.100.7");
        let at = 1_800_000_000_000;
        assert_eq!(summary_id(&tenant, &ip, at), summary_id(&tenant, &ip, at + 59_999 - at % 60_000));
        assert_ne!(summary_id(&tenant, &ip, at), summary_id(&tenant, &ip, at + 60_000));
        assert_ne!(summary_id(&tenant, &ip, at), summary_id(&TenantId::parse("tn_b").unwrap(), &ip, at));
        assert_ne!(summary_id(&tenant, &ip, at), summary_id(&tenant, &RefusalSource::ip("198.51.100.8"), at));
        assert_eq!(summary_id(&tenant, &ip, at).timestamp().timestamp_millis(), at - at % 60_000);
    }

    #[test]
    fn an_entry_expires_its_retention_after_it_was_written() {
        let at = DateTime::from_millis(1_700_000_000_000);
        assert_eq!(expire_at(at, 30).timestamp_millis(), 1_700_000_000_000 + 30 * DAY_MS);
        assert_eq!(expire_at(at, 7 * 365).timestamp_millis(), 1_700_000_000_000 + 2555 * DAY_MS);
    }

    #[test]
    fn personal_data_is_redacted_at_any_depth_by_whole_key() {
        let out = redact(
            doc! {"adminEmail": "a@b.example", "nested": {"FirstName": "Ada", "list": [{"email": "x@y.example"}]}, "billingEmailChanged": true, "fields": ["firstName"]},
        );
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
