//! Thin handlers: admit, check the plan feature and the permission, parse, query, shape.

use crate::service::{self, AuditLogView, AuditQuery, Cursor};
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use shared::audit::{Action, Resource};
use shared::db::Db;
use shared::error::ApiError;
use shared::http::{admit, path_object_id, respond_one, Query};
use shared::TenantContext;

type Reply = Result<Response<Body>, ApiError>;

/// The plan feature and permission every audit route needs.
async fn admit_reader(db: &Db, req: &Request) -> Result<TenantContext, ApiError> {
    let ctx = admit(db, req, None).await?;
    ctx.require_feature("audit_logs")?;
    ctx.require("read:audit-logs")?;
    Ok(ctx)
}

/// The longest id-like filter value.
const MAX_FILTER: usize = 128;

fn text(query: &Query, name: &str) -> Result<Option<String>, ApiError> {
    match query.get(name) {
        Some(v) if v.is_empty() || v.len() > MAX_FILTER || v.chars().any(char::is_control) => {
            Err(ApiError::invalid(name, format!("must be 1 to {MAX_FILTER} characters, none of them control characters")))
        }
        other => Ok(other.map(str::to_owned)),
    }
}

fn time(query: &Query, name: &str) -> Result<Option<mongodb::bson::DateTime>, ApiError> {
    query
        .get(name)
        .map(|v| {
            shared::clock::parse_rfc3339(v)
                .ok_or_else(|| ApiError::invalid(name, "must be an RFC 3339 date-time such as 2026-11-28T00:00:00Z"))
        })
        .transpose()
}

/// `GET /audit-logs`: filters `userId`, `action`, `resource`, `resourceId`, `from`, `to`; `limit`
/// and an opaque `cursor`.
pub async fn list(db: &Db, req: &Request) -> Reply {
    let ctx = admit_reader(db, req).await?;
    let q = Query::from_request(req, &["userId", "action", "resource", "resourceId", "from", "to", "limit", "cursor"])?;
    let action =
        q.get("action").map(|a| Action::parse(a).ok_or_else(|| ApiError::invalid("action", "is not an audited action"))).transpose()?;
    let resource = q
        .get("resource")
        .map(|r| Resource::parse(r).ok_or_else(|| ApiError::invalid("resource", "is not an audited resource")))
        .transpose()?;
    let after = q
        .get("cursor")
        .map(|c| Cursor::decode(c).ok_or_else(|| ApiError::invalid("cursor", "is not a cursor this API issued")))
        .transpose()?;
    let query = AuditQuery {
        user_id: text(&q, "userId")?,
        action,
        resource,
        resource_id: text(&q, "resourceId")?,
        from: time(&q, "from")?,
        to: time(&q, "to")?,
        limit: q.integer("limit", 1, shared::http::MAX_PAGE_SIZE, 20)?,
        after,
    };
    let (entries, next) = service::list(db, &ctx, &query).await?;
    let views: Vec<AuditLogView> = entries.iter().map(AuditLogView::from).collect();
    respond_one(StatusCode::OK, &serde_json::json!({"auditLogs": views, "nextCursor": next.map(Cursor::encode)}))
}

/// `GET /audit-logs/{auditLogId}`.
pub async fn get(db: &Db, req: &Request) -> Reply {
    let ctx = admit_reader(db, req).await?;
    let id = path_object_id(req, "auditLogId")?;
    let entry = service::get(db, &ctx, id).await?.ok_or_else(|| ApiError::NotFound(format!("Audit entry {id} not found")))?;
    respond_one(StatusCode::OK, &AuditLogView::from(&entry))
}
