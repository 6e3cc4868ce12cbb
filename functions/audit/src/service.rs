//! Audit queries, through the tenant scope. Pages are cut by a cursor on `(timestamp, _id)`,
//! newest first: an entry written while a client pages cannot shift the pages it has not read
//! yet, as an offset would.

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use serde::Serialize;
use shared::audit::{Action, Resource};
use shared::clock::rfc3339_millis;
use shared::db::{Db, DbError, FindOptions, TenantCollection};
use shared::models::AuditLog;
use shared::TenantContext;

/// The filters of a query; all optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub user_id: Option<String>,
    pub action: Option<Action>,
    pub resource: Option<Resource>,
    pub resource_id: Option<String>,
    /// Entries at or after this time.
    pub from: Option<DateTime>,
    /// Entries before this time.
    pub to: Option<DateTime>,
    pub limit: u64,
    pub after: Option<Cursor>,
}

/// Where a page ends: the last entry's timestamp and id (one cursor for every paged read of
/// the log, this context's and a person's export).
pub use shared::audit::PageCursor as Cursor;

/// How an entry names an actor who was erased.
pub const ERASED_ACTOR: &str = "erased user";

/// An entry as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditLogView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `"erased user"` when the actor was erased (docs/ARCHITECTURE.md §22).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<&'static str>,
    pub action: String,
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    pub details: serde_json::Value,
    pub ip: String,
    pub user_agent: String,
    pub request_id: String,
    pub timestamp: String,
}

impl From<&AuditLog> for AuditLogView {
    fn from(e: &AuditLog) -> Self {
        Self {
            id: e.id.to_hex(),
            user_id: e.user_id.clone(),
            actor: e.actor_erased.unwrap_or(false).then_some(ERASED_ACTOR),
            action: e.action.clone(),
            resource: e.resource.clone(),
            resource_id: e.resource_id.clone(),
            details: Bson::Document(e.details.clone()).into_relaxed_extjson(),
            ip: e.ip.clone(),
            user_agent: e.user_agent.clone(),
            request_id: e.request_id.clone(),
            timestamp: rfc3339_millis(e.timestamp),
        }
    }
}

/// One page, newest first, and the cursor of the next one if there is more.
pub async fn list(db: &Db, ctx: &TenantContext, query: &AuditQuery) -> Result<(Vec<AuditLog>, Option<Cursor>), DbError> {
    let mut filter = Document::new();
    if let Some(user) = &query.user_id {
        filter.insert("userId", user);
    }
    if let Some(action) = query.action {
        filter.insert("action", action.as_str());
    }
    if let Some(resource) = query.resource {
        filter.insert("resource", resource.as_str());
    }
    if let Some(id) = &query.resource_id {
        filter.insert("resourceId", id);
    }
    let mut window = Document::new();
    if let Some(from) = query.from {
        window.insert("$gte", from);
    }
    if let Some(to) = query.to {
        window.insert("$lt", to);
    }
    if !window.is_empty() {
        filter.insert("timestamp", window);
    }
    if let Some(after) = query.after {
        filter.extend(after.filter());
    }
    let options = FindOptions { sort: Some(doc! {"timestamp": -1, "_id": -1}), skip: None, limit: Some(query.limit as i64 + 1) };
    let mut entries = db.scoped::<AuditLog>(ctx, TenantCollection::AuditLogs).find(filter, options).await?;
    let next = if entries.len() as u64 > query.limit {
        entries.truncate(query.limit as usize);
        entries.last().map(Cursor::after)
    } else {
        None
    };
    Ok((entries, next))
}

/// One entry of the caller's tenant; another tenant's is as unknown as a missing one.
pub async fn get(db: &Db, ctx: &TenantContext, id: ObjectId) -> Result<Option<AuditLog>, DbError> {
    db.scoped::<AuditLog>(ctx, TenantCollection::AuditLogs).find_one(doc! {"_id": id}).await
}
