//! Thin handlers: admit a person, check the plan feature and the permission, parse, call the
//! service, shape the response, audit.

use crate::input::{status_filter, CreateKeyBody, RotateBody, UpdateKeyBody};
use crate::service;
use crate::view::{ApiKeyView, IssuedKeyView};
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use mongodb::bson::doc;
use shared::audit::Action;
use shared::db::Db;
use shared::error::ApiError;
use shared::http::{admit, json_body, optional_json_body, path_object_id, respond_list, respond_one, Pagination, Query, RequestMeta};
use shared::models::ApiKey;
use shared::plans::KeyLimits;
use shared::TenantContext;

type Reply = Result<Response<Body>, ApiError>;

/// Every key route: a person (never a key), on a plan with `api_keys`, holding `permission`.
async fn admit_manager(db: &Db, req: &Request, permission: &str) -> Result<(TenantContext, KeyLimits), ApiError> {
    let ctx = admit(db, req, None).await?;
    ctx.require_person("API keys cannot manage API keys")?;
    let limits = ctx.key_limits()?;
    ctx.require(permission)?;
    Ok((ctx, limits))
}

fn view(db: &Db, key: &ApiKey) -> ApiKeyView {
    ApiKeyView::of(key, db.clock().now())
}

/// `GET /api-keys` (`read:api-keys`).
pub async fn list(db: &Db, req: &Request) -> Reply {
    let (ctx, _) = admit_manager(db, req, "read:api-keys").await?;
    let q = Query::from_request(req, &["page", "limit", "status"])?;
    let (page, limit) = q.paging()?;
    let status = status_filter(q.get("status"))?;
    let (keys, total) = service::list(db, &ctx, status, page, limit).await?;
    let views: Vec<ApiKeyView> = keys.iter().map(|k| view(db, k)).collect();
    respond_list("apiKeys", &views, &Pagination::new(page, limit, total))
}

/// `POST /api-keys` (`create:api-keys`): the key's permissions within the caller's
/// (`service::may_issue`).
pub async fn create(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let (ctx, limits) = admit_manager(db, req, "create:api-keys").await?;
    let new = json_body::<CreateKeyBody>(req)?.validate(limits, db.clock().now())?;
    let (key, secret) = service::create(db, &ctx, limits, &new).await?;
    let permissions: Vec<&str> = key.permissions.iter().map(|p| p.as_str()).collect();
    ctx.audit(db, meta, Action::ApiKeyCreated, key.id.to_hex(), doc! {"name": &key.name, "permissions": permissions}).await;
    shared::metrics::business(shared::metrics::Business::KeysCreated, ctx.tenant_id().as_str());
    respond_one(StatusCode::CREATED, &IssuedKeyView { key: view(db, &key), secret })
}

/// `GET /api-keys/{keyId}` (`read:api-keys`).
pub async fn get(db: &Db, req: &Request) -> Reply {
    let (ctx, _) = admit_manager(db, req, "read:api-keys").await?;
    let id = path_object_id(req, "keyId")?;
    respond_one(StatusCode::OK, &view(db, &service::get(db, &ctx, id).await?))
}

/// `PATCH /api-keys/{keyId}` (`update:api-keys`): name and limits, by the key's creator or a
/// member holding all the key carries (`service::may_issue`).
pub async fn update(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let (ctx, limits) = admit_manager(db, req, "update:api-keys").await?;
    let id = path_object_id(req, "keyId")?;
    let changes = json_body::<UpdateKeyBody>(req)?.validate()?;
    let current = service::changeable(db, &ctx, id).await?;
    let rate_limit = changes.limits(current.key().rate_limit, limits)?;
    let key = service::update(db, &ctx, current, changes.name.as_deref(), rate_limit).await?;
    let details = doc! {"name": changes.name.as_deref(), "rateLimit": changes.rate_limit.is_some()};
    ctx.audit(db, meta, Action::ApiKeyUpdated, key.id.to_hex(), details).await;
    respond_one(StatusCode::OK, &view(db, &key))
}

/// `POST /api-keys/{keyId}/revoke` (`delete:api-keys`), whoever made the key: revocation takes
/// a grant away and hands out nothing, and whoever may revoke must be able to stop a leaked key
/// at once. It is audited (`api-key.revoked`), so its author is known.
pub async fn revoke(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let (ctx, _) = admit_manager(db, req, "delete:api-keys").await?;
    let id = path_object_id(req, "keyId")?;
    let key = service::revoke(db, &ctx, id).await?;
    ctx.audit(db, meta, Action::ApiKeyRevoked, key.id.to_hex(), doc! {"name": &key.name}).await;
    respond_one(StatusCode::OK, &view(db, &key))
}

/// `POST /api-keys/{keyId}/rotate` (`update:api-keys`): a new secret is an issuance, so only
/// the key's creator or a member holding all the key carries gets one (`service::may_issue`).
pub async fn rotate(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let (ctx, _) = admit_manager(db, req, "update:api-keys").await?;
    let id = path_object_id(req, "keyId")?;
    let grace = optional_json_body::<RotateBody>(req)?.validate()?;
    let (key, secret) = service::rotate(db, &ctx, id, grace).await?;
    ctx.audit(db, meta, Action::ApiKeyRotated, key.id.to_hex(), doc! {"gracePeriodSeconds": grace.as_secs() as i64}).await;
    respond_one(StatusCode::OK, &IssuedKeyView { key: view(db, &key), secret })
}
