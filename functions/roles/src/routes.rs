//! Thin handlers: admit, authorize, parse, call the service, shape the response, audit.

use crate::input::{CreateRoleBody, UpdateRoleBody};
use crate::service;
use crate::view::RoleView;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use mongodb::bson::doc;
use shared::audit::Action;
use shared::db::Db;
use shared::error::ApiError;
use shared::http::{admit, json_body, path_object_id, respond_list, respond_one, Pagination, Query, RequestMeta};

type Reply = Result<Response<Body>, ApiError>;

/// `GET /roles` (`read:roles`).
pub async fn list(db: &Db, req: &Request) -> Reply {
    let ctx = admit(db, req, None).await?;
    ctx.require("read:roles")?;
    let (page, limit) = Query::from_request(req, &["page", "limit"])?.paging()?;
    let (roles, total) = service::list(db, &ctx, page, limit).await?;
    let views: Vec<RoleView> = roles.iter().map(RoleView::from).collect();
    respond_list("roles", &views, &Pagination::new(page, limit, total))
}

/// `POST /roles` (`create:roles`).
pub async fn create(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit(db, req, None).await?;
    ctx.require("create:roles")?;
    let new = json_body::<CreateRoleBody>(req)?.validate()?;
    let role = service::create(db, &ctx, &new).await?;
    let permissions: Vec<&str> = role.permissions.iter().map(|p| p.as_str()).collect();
    ctx.audit(db, meta, Action::RoleCreated, role.id.to_hex(), doc! {"name": &role.name, "permissions": permissions}).await;
    respond_one(StatusCode::CREATED, &RoleView::from(&role))
}

/// `GET /roles/{roleId}` (`read:roles`).
pub async fn get(db: &Db, req: &Request) -> Reply {
    let ctx = admit(db, req, None).await?;
    ctx.require("read:roles")?;
    let id = path_object_id(req, "roleId")?;
    respond_one(StatusCode::OK, &RoleView::from(&service::get(db, &ctx, id).await?))
}

/// `PATCH /roles/{roleId}` (`update:roles`).
pub async fn update(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit(db, req, None).await?;
    ctx.require("update:roles")?;
    let id = path_object_id(req, "roleId")?;
    let changes = json_body::<UpdateRoleBody>(req)?.validate()?;
    let role = service::update(db, &ctx, id, &changes).await?;
    let permissions = changes.permissions.as_ref().map(|ps| ps.iter().map(|p| p.as_str()).collect::<Vec<_>>());
    let details = doc! {"name": changes.name.as_deref(), "description": changes.description.is_some(), "permissions": permissions};
    ctx.audit(db, meta, Action::RoleUpdated, id.to_hex(), details).await;
    respond_one(StatusCode::OK, &RoleView::from(&role))
}

/// `DELETE /roles/{roleId}` (`delete:roles`); `?force=true` first removes it from its holders.
pub async fn delete(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit(db, req, None).await?;
    ctx.require("delete:roles")?;
    let id = path_object_id(req, "roleId")?;
    let force = match Query::from_request(req, &["force"])?.get("force") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("force", "must be true or false")),
    };
    let removed = service::delete(db, &ctx, id, force).await?;
    ctx.audit(db, meta, Action::RoleDeleted, id.to_hex(), doc! {"force": force, "removedFromUsers": removed as i64}).await;
    respond_one(StatusCode::OK, &serde_json::json!({"deleted": true, "id": id.to_hex(), "removedFromUsers": removed}))
}
