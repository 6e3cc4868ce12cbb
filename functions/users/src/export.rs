//! A person's export (`GET /users/{userId}/export`, `GET /users/me/export`): one JSON document
//! with the record opened, its roles resolved, the API keys the person created as metadata and,
//! for a caller who may read the audit log on a plan that has it, a page of the entries where the
//! person is the actor or the subject. Every list is capped, so that the answer stays under
//! Lambda's 6 MB response limit whatever the tenant stores: the audit part is paged with a cursor
//! and cut by count and by size, the roles and keys by count (each bounded at input), the keys
//! with a flag saying so.

use crate::error::UsersError;
use crate::person;
use crate::view::UserView;
use api_keys::view::ApiKeyView;
use mongodb::bson::{doc, oid::ObjectId, Bson};
use roles::view::RoleView;
use serde::Serialize;
use shared::audit::{PageCursor, Resource};
use shared::clock::rfc3339_millis;
use shared::db::{Db, FindOptions, TenantCollection};
use shared::models::{ApiKey, AuditLog, User};
use shared::TenantContext;

/// Audit entries in one answer at most; `auditCursor` asks for the next ones.
pub const MAX_AUDIT_ENTRIES: usize = 100;
/// The serialized size past which a page of audit entries ends early (its cursor then continues
/// after the last entry shown). An entry's stored strings are bounded at write (`shared::audit`),
/// but not how many details it has, so the page is cut by size as well as by count.
pub const MAX_AUDIT_PAGE_BYTES: usize = 3 * 1024 * 1024;
/// Roles resolved in one answer. The record's own `roles` lists every id it holds; each role is
/// bounded at input (a 64-character name, a 500-character description, 50 permissions).
pub const MAX_RESOLVED_ROLES: usize = 100;
/// API keys in one answer, newest first. The plan bounds a tenant's active keys (at most 100),
/// but revoked and expired keys stay on record, so a person's keys are capped here: each is
/// bounded at input (a 100-character name, 50 permissions), a few kilobytes at most.
pub const MAX_API_KEYS: usize = 500;

/// The permission, besides the route's own, that adds the audit part.
pub const AUDIT_PERMISSION: &str = "read:audit-logs";
/// The plan feature that adds the audit part.
pub const AUDIT_FEATURE: &str = "audit_logs";

/// Whether the answer carries audit entries, and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditPart {
    /// The caller lacks [`AUDIT_PERMISSION`], or the plan [`AUDIT_FEATURE`]: no audit part at all.
    Left,
    /// The newest entries, or those after a cursor of an earlier answer.
    From(Option<PageCursor>),
}

impl AuditPart {
    /// The audit part a caller gets: only with [`AUDIT_PERMISSION`] on a plan with
    /// [`AUDIT_FEATURE`], as `GET /audit-logs` itself requires.
    pub fn for_caller(ctx: &TenantContext, after: Option<PageCursor>) -> Self {
        if ctx.require_feature(AUDIT_FEATURE).is_ok() && ctx.require(AUDIT_PERMISSION).is_ok() {
            AuditPart::From(after)
        } else {
            AuditPart::Left
        }
    }
}

/// The export, as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Export {
    pub user: UserView,
    pub roles: Vec<RoleView>,
    /// As `GET /api-keys/{keyId}` shows them: never a secret or a hash.
    pub api_keys: Vec<ApiKeyView>,
    /// True when the person created more than [`MAX_API_KEYS`] keys: the oldest are left out.
    pub api_keys_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<AuditPage>,
    pub exported_at: String,
}

/// A page of the person's audit entries, newest first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub entries: Vec<EntryView>,
    /// The `auditCursor` of the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// An audit entry as the export shows it: as `GET /audit-logs` does, but where the person is only
/// the subject, without the actor's source address and user agent (someone else's data).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub action: String,
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    pub details: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    pub request_id: String,
    pub timestamp: String,
}

impl EntryView {
    fn of(entry: &AuditLog, sub: Option<&str>) -> Self {
        let actor = sub.is_some() && entry.user_id.as_deref() == sub;
        Self {
            id: entry.id.to_hex(),
            user_id: entry.user_id.clone(),
            action: entry.action.clone(),
            resource: entry.resource.clone(),
            resource_id: entry.resource_id.clone(),
            details: Bson::Document(entry.details.clone()).into_relaxed_extjson(),
            ip: actor.then(|| entry.ip.clone()),
            user_agent: actor.then(|| entry.user_agent.clone()),
            request_id: entry.request_id.clone(),
            timestamp: rfc3339_millis(entry.timestamp),
        }
    }
}

/// The export of user `id` of the caller's tenant; another tenant's id is as unknown as a
/// missing one. The record is read first (it names the roles and the `sub`), then its roles,
/// keys and audit entries together.
pub async fn export(db: &Db, ctx: &TenantContext, id: ObjectId, audit: AuditPart) -> Result<Export, UsersError> {
    let user = crate::service::get(db, ctx, id).await?;
    let (roles, (api_keys, api_keys_truncated), audit_log) =
        tokio::try_join!(roles_of(db, ctx, &user), keys_of(db, ctx, id), audit_of(db, ctx, &user, audit))?;
    let person = person::open(db, ctx.tenant_id(), user).await?;
    Ok(Export {
        user: UserView::from(&person),
        roles,
        api_keys,
        api_keys_truncated,
        audit_log,
        exported_at: rfc3339_millis(db.clock().now()),
    })
}

/// The roles the record holds, resolved, in the record's order; an id whose role is gone is left
/// out (the record's `roles` still lists it).
async fn roles_of(db: &Db, ctx: &TenantContext, user: &User) -> Result<Vec<RoleView>, UsersError> {
    let ids: Vec<ObjectId> = user.roles.iter().filter_map(|r| ObjectId::parse_str(r).ok()).take(MAX_RESOLVED_ROLES).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let found = roles::service::by_ids(db, ctx, &ids).await?;
    Ok(ids.iter().filter_map(|id| found.iter().find(|r| r.id == *id)).map(RoleView::from).collect())
}

/// The keys the person created, newest first, at most [`MAX_API_KEYS`], and whether there were
/// more (one more is read to tell).
async fn keys_of(db: &Db, ctx: &TenantContext, id: ObjectId) -> Result<(Vec<ApiKeyView>, bool), UsersError> {
    let options = FindOptions { sort: Some(doc! {"createdAt": -1, "_id": -1}), skip: None, limit: Some(MAX_API_KEYS as i64 + 1) };
    let mut keys = db.scoped::<ApiKey>(ctx, TenantCollection::ApiKeys).find(doc! {"createdBy": id}, options).await?;
    let truncated = keys.len() > MAX_API_KEYS;
    keys.truncate(MAX_API_KEYS);
    let now = db.clock().now();
    Ok((keys.iter().map(|k| ApiKeyView::of(k, now)).collect(), truncated))
}

/// A page of the entries where the person is the actor (their Cognito `sub`: entries name a
/// person who acted by it) or the subject (a `user` entry on their record's id), newest first. A
/// record never linked to a `sub` has acted in no entry.
async fn audit_of(db: &Db, ctx: &TenantContext, user: &User, part: AuditPart) -> Result<Option<AuditPage>, UsersError> {
    let AuditPart::From(after) = part else { return Ok(None) };
    let sub = user.cognito_user_id.sub();
    let mut about = vec![doc! {"resource": Resource::User.as_str(), "resourceId": user.id.to_hex()}];
    if let Some(sub) = sub {
        about.push(doc! {"userId": sub});
    }
    let mut filter = doc! {"$or": about};
    if let Some(after) = after {
        filter = doc! {"$and": [filter, after.filter()]};
    }
    let options = FindOptions { sort: Some(doc! {"timestamp": -1, "_id": -1}), skip: None, limit: Some(MAX_AUDIT_ENTRIES as i64 + 1) };
    let entries = db.scoped::<AuditLog>(ctx, TenantCollection::AuditLogs).find(filter, options).await?;
    Ok(Some(page(entries, sub)))
}

/// The page shown of `entries` (read newest first, one more than a page): at most
/// [`MAX_AUDIT_ENTRIES`], ending early once they reach [`MAX_AUDIT_PAGE_BYTES`] (always at least
/// one, so that paging moves on), with the cursor after the last one shown if any are left.
fn page(entries: Vec<AuditLog>, sub: Option<&str>) -> AuditPage {
    let (mut shown, mut bytes) = (Vec::new(), 0);
    let mut last = None;
    for entry in &entries {
        let view = EntryView::of(entry, sub);
        let size = serde_json::to_vec(&view).map_or(0, |v| v.len());
        if shown.len() == MAX_AUDIT_ENTRIES || (!shown.is_empty() && bytes + size > MAX_AUDIT_PAGE_BYTES) {
            break;
        }
        bytes += size;
        shown.push(view);
        last = Some(entry);
    }
    let next_cursor = if shown.len() < entries.len() { last.map(|e| PageCursor::after(e).encode()) } else { None };
    AuditPage { entries: shown, next_cursor }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{DateTime, Document};
    use shared::audit::{MAX_DETAIL_CHARS, MAX_ID_CHARS, MAX_USER_AGENT_CHARS};
    use shared::ids::Permission;
    use shared::models::{ApiKeyStatus, Profile, RateLimit, UserStatus};

    /// Text of `chars` characters that serializes as large as any text can: a control character
    /// takes six bytes in JSON (`\u0001`).
    fn widest(chars: usize) -> String {
        "\u{1}".repeat(chars)
    }

    /// A role's or a key's list of permissions at its bound, each as long as the catalogue has.
    fn longest_permissions() -> Vec<Permission> {
        let longest = shared::permissions::ACTIONS
            .iter()
            .flat_map(|a| shared::permissions::RESOURCES.iter().map(move |r| format!("{a}:{r}")))
            .max_by_key(String::len)
            .expect("a catalogue");
        vec![Permission::parse(&longest).expect("a catalogue permission"); shared::permissions::MAX_LISTED]
    }

    fn entry(actor: &str, details: Document, at_ms: i64) -> AuditLog {
        AuditLog {
            id: ObjectId::new(),
            tenant_id: None,
            user_id: Some(actor.to_owned()),
            action: "user.updated".into(),
            resource: "user".into(),
            resource_id: Some(ObjectId::new().to_hex()),
            details,
            ip: "198.51.100.7".into(),
            user_agent: "curl/8".into(),
            request_id: "r".into(),
            timestamp: DateTime::from_millis(at_ms),
            expire_at: DateTime::from_millis(at_ms),
            created_at: None,
            updated_at: None,
            actor_erased: None,
        }
    }

    fn role(id: ObjectId, now: DateTime) -> RoleView {
        RoleView {
            id: id.to_hex(),
            name: widest(64),
            description: Some(widest(500)),
            permissions: longest_permissions(),
            is_system: false,
            created_by: id.to_hex(),
            created_at: rfc3339_millis(now),
            updated_at: rfc3339_millis(now),
        }
    }

    /// Roles and keys at their caps with every field at its input bound, the record at its own,
    /// and a full audit page leave room under Lambda's 6 MB response limit.
    #[test]
    fn an_export_at_every_bound_stays_under_six_megabytes() {
        let now = DateTime::from_millis(1_800_000_000_000);
        let id = ObjectId::new();
        let user = UserView {
            id: id.to_hex(),
            email: format!("{}@{}.example", "a".repeat(64), "b".repeat(180)),
            profile: Profile {
                first_name: widest(100),
                last_name: widest(100),
                avatar: Some(widest(2048)),
                department: Some(widest(100)),
                title: Some(widest(100)),
            },
            roles: vec![id.to_hex(); MAX_RESOLVED_ROLES],
            status: UserStatus::Active,
            last_login_at: Some(rfc3339_millis(now)),
            created_at: rfc3339_millis(now),
            updated_at: rfc3339_millis(now),
        };
        let key = ApiKey {
            id,
            tenant_id: None,
            key_id: id.to_hex(),
            name: widest(100),
            key_hash: "f".repeat(64),
            previous_key_hash: Some("e".repeat(64)),
            previous_key_valid_until: Some(DateTime::from_millis(now.timestamp_millis() + 1)),
            permissions: longest_permissions(),
            rate_limit: RateLimit { requests_per_minute: i64::MAX, requests_per_hour: i64::MAX, requests_per_day: i64::MAX },
            expires_at: Some(now),
            last_used_at: Some(now),
            status: ApiKeyStatus::Revoked,
            place_held: None,
            marker_op: None,
            created_by: id,
            rotated_at: Some(now),
            revoked_at: Some(now),
            created_at: Some(now),
            updated_at: Some(now),
        };
        let mut details = Document::new();
        for i in 0..40 {
            details.insert(format!("detail{i}"), widest(MAX_DETAIL_CHARS));
        }
        let mut stored = entry(&widest(MAX_ID_CHARS), details, now.timestamp_millis());
        stored.ip = widest(MAX_ID_CHARS);
        stored.user_agent = widest(MAX_USER_AGENT_CHARS);
        stored.request_id = widest(MAX_ID_CHARS);
        let actor = stored.user_id.clone();
        let audit = page(vec![stored; MAX_AUDIT_ENTRIES + 1], actor.as_deref());
        assert!(audit.next_cursor.is_some() && audit.entries.len() < MAX_AUDIT_ENTRIES, "cut by size: {}", audit.entries.len());
        let export = Export {
            user,
            roles: (0..MAX_RESOLVED_ROLES).map(|_| role(id, now)).collect(),
            api_keys: (0..MAX_API_KEYS).map(|_| ApiKeyView::of(&key, now)).collect(),
            api_keys_truncated: true,
            audit_log: Some(audit),
            exported_at: rfc3339_millis(now),
        };
        let body = serde_json::to_string(&serde_json::json!({"success": true, "data": export})).unwrap();
        assert!(body.len() < 6_000_000, "{} bytes", body.len());
        assert!(!body.contains(&key.key_hash) && !body.contains("eeee"), "no hash of a key");
    }

    #[test]
    fn a_page_ends_at_its_count_with_a_cursor_after_its_last_entry() {
        let entries: Vec<AuditLog> = (0..=MAX_AUDIT_ENTRIES as i64).map(|i| entry("a", Document::new(), 1_000_000 - i)).collect();
        let full = page(entries.clone(), Some("a"));
        assert_eq!(full.entries.len(), MAX_AUDIT_ENTRIES);
        let cursor = PageCursor::decode(full.next_cursor.as_deref().expect("more")).unwrap();
        assert_eq!(cursor, PageCursor::after(&entries[MAX_AUDIT_ENTRIES - 1]));
        let last = page(entries[..MAX_AUDIT_ENTRIES].to_vec(), Some("a"));
        assert_eq!((last.entries.len(), last.next_cursor), (MAX_AUDIT_ENTRIES, None), "nothing left: no cursor");
        let one = page(vec![entries[0].clone()], Some("a"));
        assert_eq!((one.entries.len(), one.next_cursor), (1, None));
    }

    #[test]
    fn the_subject_of_an_entry_sees_no_one_else_s_address_or_user_agent() {
        let e = entry("someone-else", Document::new(), 1);
        let subject = serde_json::to_value(EntryView::of(&e, Some("the-person"))).unwrap();
        assert!(subject.get("ip").is_none() && subject.get("userAgent").is_none(), "{subject}");
        let unlinked = serde_json::to_value(EntryView::of(&e, None)).unwrap();
        assert!(unlinked.get("ip").is_none() && unlinked.get("userAgent").is_none(), "{unlinked}");
        let actor = serde_json::to_value(EntryView::of(&e, Some("someone-else"))).unwrap();
        assert_eq!((actor["ip"].as_str(), actor["userAgent"].as_str()), (Some("198.51.100.7"), Some("curl/8")));
    }
}
