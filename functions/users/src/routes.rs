//! Thin handlers: admit, authorize, parse, call the service, shape the response, audit. Audit
//! entries name users by id, never by e-mail.

use crate::error::UsersError;
use crate::export::AuditPart;
use crate::input::{AssignRoleBody, InviteBody, UpdateProfileBody, UpdateUserBody};
use crate::service::{self, UserQuery};
use crate::view::UserView;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use mongodb::bson::{doc, oid::ObjectId, Document};
use shared::audit::{Action, PageCursor};
use shared::db::Db;
use shared::directory::SharedDirectory;
use shared::error::ApiError;
use shared::http::{
    admit, idempotency, json_body, no_body, path_object_id, respond_list, respond_one, Deps, Pagination, Query, RequestMeta,
};
use shared::ids::{parse_object_id, Email};
use shared::models::{User, UserStatus};
use shared::saga::NoFaults;
use shared::TenantContext;

type Reply = Result<Response<Body>, ApiError>;

/// A record as the API shows it: its personal data opened.
async fn one(db: &Db, ctx: &TenantContext, status: StatusCode, user: User) -> Reply {
    let person = crate::person::open(db, ctx.tenant_id(), user).await?;
    respond_one(status, &UserView::from(&person))
}

/// `GET /users` (`read:users`): `page`, `limit`, `status`, `role`, and an exact `email`.
pub async fn list(db: &Db, req: &Request) -> Reply {
    let ctx = admit(db, req, None).await?;
    ctx.require("read:users")?;
    let query = Query::from_request(req, &["page", "limit", "status", "role", "email"])?;
    let (page, limit) = query.paging()?;
    let status = query
        .get("status")
        .map(|s| serde_json::from_value::<UserStatus>(serde_json::Value::String(s.to_owned())))
        .transpose()
        .map_err(|_| ApiError::invalid("status", "must be one of active, inactive, pending"))?;
    let role = query.get("role").map(parse_object_id).transpose().map_err(|e| ApiError::invalid("role", e.0))?;
    let email = query.get("email").map(Email::parse).transpose().map_err(|e| ApiError::invalid("email", e.0))?;
    let (users, total) = service::list(db, &ctx, &UserQuery { status, role, email, page, limit }).await?;
    let views: Vec<UserView> = users.iter().map(UserView::from).collect();
    respond_list("users", &views, &Pagination::new(page, limit, total))
}

/// `POST /users` (`create:users`): the invitation. A global refusal (the address is held
/// outside the tenant) is audited, naming the address by its blind index only; the service
/// bounds how many an hour there can be, and the invitations refused past that bound are
/// counted in one summary entry a minute (`access.refusals-dropped`, source `invite:<tenant>`).
pub async fn invite(deps: &Deps<SharedDirectory>, req: &Request, meta: &RequestMeta) -> Reply {
    let db = &deps.db;
    let ctx = admit(db, req, None).await?;
    ctx.require("create:users")?;
    let key = idempotency(req, ctx.identity(), false)?;
    let invitation = json_body::<InviteBody>(req)?.validate()?;
    let idempotency = key.as_ref().map(|(caller, key)| (caller, key));
    let invited = match service::invite(db, deps.directory.as_ref(), &ctx, idempotency, &invitation, &NoFaults).await {
        Ok(invited) => invited,
        Err(refused @ UsersError::EmailTaken) => {
            audit_refused_invitation(db, &ctx, meta, &invitation.email, &refused).await;
            return Err(refused.into());
        }
        // Past the hour's budget nothing is looked up, and the 429s are counted, not listed.
        Err(spent @ UsersError::RefusalsSpent(_)) => {
            let source = shared::db::RefusalSource::Invitations(ctx.tenant_id().clone());
            shared::audit::record_past_budget(db, ctx.tenant_id(), &source, meta, Some(ctx.identity().actor_id())).await;
            return Err(spent.into());
        }
        Err(e) => return Err(e.into()),
    };
    let user = &invited.person.user;
    if !invited.fresh {
        // A replay of an invitation made and audited before.
        return respond_one(StatusCode::OK, &UserView::from(&invited.person));
    }
    ctx.audit(db, meta, Action::UserInvited, user.id.to_hex(), doc! {"roles": &user.roles}).await;
    shared::metrics::business(shared::metrics::Business::UsersInvited, ctx.tenant_id().as_str());
    respond_one(StatusCode::CREATED, &UserView::from(&invited.person))
}

/// The audit entry of a refused invitation, `user.invitation-refused`, with the reason
/// the caller was given (never why: the tenant's admins read this log too) and the address's
/// blind index (`emailHash`, as user records hold it). Best effort, like every audit write.
async fn audit_refused_invitation(db: &Db, ctx: &TenantContext, meta: &RequestMeta, email: &Email, refused: &UsersError) {
    let email_hash = match crate::person::email_index(db, ctx.tenant_id(), email).await {
        Ok(hash) => hash,
        Err(error) => {
            tracing::error!(%error, "could not index the address of a refused invitation; audited without it");
            String::new()
        }
    };
    let details = doc! {"reason": refused.to_string(), "emailHash": email_hash};
    ctx.audit(db, meta, Action::UserInvitationRefused, None, details).await;
}

const NO_PROFILE: &str = "An API key has no profile of its own";

/// `GET /users/me` (`read:profile`).
pub async fn me(db: &Db, req: &Request) -> Reply {
    let ctx = admit(db, req, None).await?;
    ctx.require_person(NO_PROFILE)?;
    ctx.require("read:profile")?;
    let user = service::me(db, &ctx).await?;
    one(db, &ctx, StatusCode::OK, user).await
}

const NO_EXPORT: &str = "An export is of a person's own data, given to a person";

/// `GET /users/me/export`: any member, whatever their roles (a person's access to their own data
/// is not a permission an admin grants); a person, never a key.
pub async fn export_me(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit(db, req, None).await?;
    ctx.require_person(NO_EXPORT)?;
    let id = ctx.user_id().ok_or_else(|| ApiError::Forbidden("A platform operator has no record of its own in a tenant".into()))?;
    export_of(db, req, meta, &ctx, id).await
}

/// `GET /users/{userId}/export` (`read:users`); a person, never a key.
pub async fn export(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit(db, req, None).await?;
    ctx.require_person(NO_EXPORT)?;
    ctx.require("read:users")?;
    let id = path_object_id(req, "userId")?;
    export_of(db, req, meta, &ctx, id).await
}

/// The export of user `id`, with its audit part if the caller may have it, and its audit entry,
/// which names the record by id and says what the answer held, never a value of it.
async fn export_of(db: &Db, req: &Request, meta: &RequestMeta, ctx: &TenantContext, id: ObjectId) -> Reply {
    let query = Query::from_request(req, &["auditCursor"])?;
    let after = query
        .get("auditCursor")
        .map(|c| PageCursor::decode(c).ok_or_else(|| ApiError::invalid("auditCursor", "is not a cursor this API issued")))
        .transpose()?;
    let export = crate::export::export(db, ctx, id, AuditPart::for_caller(ctx, after)).await?;
    let entries = export.audit_log.as_ref().map(|a| a.entries.len() as i64);
    let details = doc! {"own": ctx.user_id() == Some(id), "auditEntries": entries, "continued": after.is_some()};
    ctx.audit(db, meta, Action::UserExported, id.to_hex(), details).await;
    respond_one(StatusCode::OK, &export)
}

/// `PATCH /users/me` (`update:profile`).
pub async fn update_me(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit(db, req, None).await?;
    ctx.require_person(NO_PROFILE)?;
    ctx.require("update:profile")?;
    let changes = json_body::<UpdateProfileBody>(req)?.validate()?;
    let user = service::update_me(db, &ctx, &changes).await?;
    ctx.audit(db, meta, Action::UserProfileUpdated, user.id.to_hex(), changed_fields(&changes, None)).await;
    one(db, &ctx, StatusCode::OK, user).await
}

/// Which fields a change touched, never their values (they are personal data).
fn changed_fields(profile: &crate::input::ProfileChanges, status: Option<UserStatus>) -> Document {
    let mut fields = Vec::new();
    for (name, given) in [
        ("firstName", profile.first_name.is_some()),
        ("lastName", profile.last_name.is_some()),
        ("avatar", profile.avatar.is_some()),
        ("department", profile.department.is_some()),
        ("title", profile.title.is_some()),
    ] {
        if given {
            fields.push(name);
        }
    }
    doc! {"fields": fields, "status": status.map(|s| s.as_str())}
}

/// `GET /users/{userId}` (`read:users`).
pub async fn get(db: &Db, req: &Request) -> Reply {
    let ctx = admit(db, req, None).await?;
    ctx.require("read:users")?;
    let id = path_object_id(req, "userId")?;
    let user = service::get(db, &ctx, id).await?;
    one(db, &ctx, StatusCode::OK, user).await
}

/// `PATCH /users/{userId}` (`update:users`).
pub async fn update(deps: &Deps<SharedDirectory>, req: &Request, meta: &RequestMeta) -> Reply {
    let db = &deps.db;
    let ctx = admit(db, req, None).await?;
    ctx.require("update:users")?;
    let id = path_object_id(req, "userId")?;
    let changes = json_body::<UpdateUserBody>(req)?.validate()?;
    let user = service::update(db, deps.directory.as_ref(), &ctx, id, &changes).await?;
    ctx.audit(db, meta, Action::UserUpdated, id.to_hex(), changed_fields(&changes.profile, changes.status)).await;
    one(db, &ctx, StatusCode::OK, user).await
}

/// `DELETE /users/{userId}` (`delete:users`).
pub async fn delete(deps: &Deps<SharedDirectory>, req: &Request, meta: &RequestMeta) -> Reply {
    let db = &deps.db;
    let ctx = admit(db, req, None).await?;
    ctx.require("delete:users")?;
    let id = path_object_id(req, "userId")?;
    service::delete(db, deps.directory.as_ref(), &ctx, id).await?;
    ctx.audit(db, meta, Action::UserDeleted, id.to_hex(), doc! {}).await;
    respond_one(StatusCode::OK, &serde_json::json!({"deleted": true, "id": id.to_hex()}))
}

/// `POST /users/{userId}/erase` (`delete:users`): the person's erasure (docs/ARCHITECTURE.md
/// §22). No body; 200 whether this call erased them or an earlier one did, and audited once.
pub async fn erase(deps: &Deps<SharedDirectory>, req: &Request, meta: &RequestMeta) -> Reply {
    let db = &deps.db;
    let ctx = admit(db, req, None).await?;
    ctx.require("delete:users")?;
    let id = path_object_id(req, "userId")?;
    no_body(req)?;
    let erased = crate::erasure::erase(db, deps.directory.as_ref(), &ctx, id, &NoFaults).await?;
    if erased.fresh {
        ctx.audit(db, meta, Action::UserErased, id.to_hex(), doc! {}).await;
    }
    let erased_at = erased.erased_at.try_to_rfc3339_string().unwrap_or_default();
    respond_one(StatusCode::OK, &serde_json::json!({"erased": true, "id": id.to_hex(), "erasedAt": erased_at}))
}

/// `POST /users/{userId}/roles` (`update:users`, and every permission of the role).
pub async fn assign_role(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit(db, req, None).await?;
    ctx.require("update:users")?;
    let id = path_object_id(req, "userId")?;
    let role = json_body::<AssignRoleBody>(req)?.validate()?;
    let user = service::assign_role(db, &ctx, id, role).await?;
    ctx.audit(db, meta, Action::UserRoleAssigned, id.to_hex(), doc! {"roleId": role.to_hex()}).await;
    one(db, &ctx, StatusCode::OK, user).await
}

/// `DELETE /users/{userId}/roles/{roleId}` (`update:users`).
pub async fn remove_role(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let ctx = admit(db, req, None).await?;
    ctx.require("update:users")?;
    let id = path_object_id(req, "userId")?;
    let role = path_object_id(req, "roleId")?;
    let user = service::remove_role(db, &ctx, id, role).await?;
    ctx.audit(db, meta, Action::UserRoleRemoved, id.to_hex(), doc! {"roleId": role.to_hex()}).await;
    one(db, &ctx, StatusCode::OK, user).await
}
