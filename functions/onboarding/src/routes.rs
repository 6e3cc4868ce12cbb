//! Thin handlers: admit, read the idempotency key, parse, call the service, shape, audit.

use crate::input::{self, OnboardingBody};
use crate::offboarding;
use crate::service::{self, Outcome};
use crate::signup::{self, SignupBody};
use crate::view::OnboardingView;
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use mongodb::bson::doc;
use shared::audit::Action;
use shared::db::{Db, DbError, GlobalCollection, SystemContext};
use shared::directory::SharedDirectory;
use shared::error::ApiError;
use shared::http::{admit_superadmin, idempotency, idempotency_key, json_body, path_param, respond_one, Deps, RequestMeta};
use shared::models::TenantTombstone;
use shared::receipt::{ReceiptError, SignedReceipt};
use shared::saga::{NoFaults, Sagas};
use shared::SuperadminContext;
use tenants::input::CreateTenantBody;

type Reply = Result<Response<Body>, ApiError>;

/// The answer of both creating routes: 201 when this call finished the onboarding, 200 when it
/// replayed one; the tenant's view, and with `onboarding_id` the saga's id beside it. A fresh
/// tenant is audited and counted here, once.
async fn answer(db: &Db, admin: &SuperadminContext, meta: &RequestMeta, outcome: Outcome, onboarding_id: bool) -> Reply {
    let Outcome { saga, tenant, fresh } = outcome;
    if fresh {
        tracing::info!(tenantId = %tenant.tenant_id, sagaId = %saga.id, "tenant onboarded");
        let details = doc! {"name": &tenant.name, "domain": tenant.domain.as_deref(), "plan": tenant.settings.billing.plan.as_str()};
        admin.audit(db, &tenant, meta, Action::TenantCreated, details).await;
        shared::metrics::business(shared::metrics::Business::TenantsCreated, tenant.tenant_id.as_str());
    }
    let mut data = serde_json::to_value(tenants::service::view(db, &tenant).await?).map_err(ApiError::internal)?;
    if onboarding_id {
        data["onboardingId"] = saga.id.into();
    }
    respond_one(if fresh { StatusCode::CREATED } else { StatusCode::OK }, &data)
}

/// `POST /onboarding` (superadmin): an `Idempotency-Key` is required.
pub async fn onboard(deps: &Deps<SharedDirectory>, req: &Request, meta: &RequestMeta) -> Reply {
    let db = &deps.db;
    let admin = admit_superadmin(req, None)?;
    let key = idempotency(req, admin.identity(), true)?;
    let input = json_body::<OnboardingBody>(req)?.validate()?;
    let idempotency = key.as_ref().map(|(caller, key)| (caller, key));
    let outcome = service::onboard(db, deps.directory.as_ref(), &Sagas::new(db), idempotency, &input, &NoFaults).await?;
    answer(db, &admin, meta, outcome, true).await
}

/// `POST /tenants` (superadmin): today's contract, served by the same saga. The key is
/// optional: without one, a retry is not safe (it makes another tenant, or meets a 409).
pub async fn create_tenant(deps: &Deps<SharedDirectory>, req: &Request, meta: &RequestMeta) -> Reply {
    let db = &deps.db;
    let admin = admit_superadmin(req, None)?;
    let key = idempotency(req, admin.identity(), false)?;
    let input = input::from_create_tenant(json_body::<CreateTenantBody>(req)?)?;
    let idempotency = key.as_ref().map(|(caller, key)| (caller, key));
    let outcome = service::onboard(db, deps.directory.as_ref(), &Sagas::new(db), idempotency, &input, &NoFaults).await?;
    answer(db, &admin, meta, outcome, false).await
}

/// The longest onboarding id: `sg_` and a digest or random bytes in base64url.
const MAX_ID: usize = 80;

/// `GET /onboarding/{onboardingId}` (superadmin).
pub async fn status(db: &Db, req: &Request) -> Reply {
    admit_superadmin(req, None)?;
    let id = path_param(req, "onboardingId")?;
    let well_formed =
        id.starts_with("sg_") && id.len() <= MAX_ID && id[3..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(ApiError::invalid("onboardingId", "is not an onboarding id"));
    }
    respond_one(StatusCode::OK, &OnboardingView::new(&service::status(db, &id).await?))
}

/// `POST /signup` (no authorizer), behind the `SELF_SERVICE_SIGNUP` switch: off, the route does
/// not exist (404) and nothing is read. On, every accepted sign-up answers the same 202,
/// whatever its address; a bound reached is a 429 with `Retry-After`.
pub async fn signup(deps: &Deps<SharedDirectory>, req: &Request, meta: &RequestMeta) -> Reply {
    let Some(settings) = &deps.features.signup else {
        return Err(ApiError::NotFound("No route for POST /signup".into()));
    };
    let key = idempotency_key(req, true)?.ok_or_else(|| ApiError::invalid("Idempotency-Key", "this request requires one"))?;
    let input = json_body::<SignupBody>(req)?.validate()?;
    let source = signup::source_of(&meta.ip).ok_or_else(|| ApiError::Forbidden("The request has no source address".into()))?;
    signup::sign_up(&deps.db, settings, &source, &key, &input, &NoFaults).await?;
    let received = serde_json::json!({
        "status": "received",
        "message": "If this address can be used, an invitation with a temporary password will be sent to it.",
    });
    respond_one(StatusCode::ACCEPTED, &received)
}

/// The path's tenant id: a malformed one is a 400.
fn tenant_param(req: &Request) -> Result<shared::ids::TenantId, ApiError> {
    shared::http::path_id(req, "tenantId")
}

/// `POST /tenants/{tenantId}/offboard` (superadmin): `gracePeriodDays` (default 30, 0 allowed).
/// The offboarding is audited in the tenant's log before anything changes; 202, since the
/// purge follows (at once with no grace period, else once the grace ends).
pub async fn offboard(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let tenant_id = tenant_param(req)?;
    let admin = admit_superadmin(req, Some(&tenant_id))?;
    let grace_days = shared::http::optional_json_body::<offboarding::OffboardBody>(req)?.validate()?;
    let tenant = offboarding::offboardable(db, &tenant_id).await?;
    // The entry is written, not attempted: an offboarding that could not be audited does not
    // happen (a 503, nothing changed).
    let event = shared::audit::AuditEvent {
        action: Action::TenantOffboarded,
        resource_id: Some(tenant_id.to_string()),
        details: doc! {"gracePeriodDays": grace_days},
    };
    let days = tenant.settings.audit_retention_days();
    shared::audit::record(db, &tenant_id, days, meta, Some(admin.identity().actor_id()), event).await?;
    let written = offboarding::offboard(db, &admin, &tenant, grace_days).await?;
    let state = written.offboarding.as_ref().ok_or_else(|| ApiError::internal(shared::db::DbError::Duplicate))?;
    let data = serde_json::json!({
        "tenantId": tenant_id.as_str(),
        "status": written.status.as_str(),
        "gracePeriodDays": grace_days,
        "purgeAfter": state.grace_ends_at.try_to_rfc3339_string().unwrap_or_default(),
    });
    respond_one(StatusCode::ACCEPTED, &data)
}

/// `POST /tenants/{tenantId}/offboard/cancel` (superadmin): within the grace period, the tenant
/// goes back to the status it had. No body.
pub async fn cancel_offboarding(db: &Db, req: &Request, meta: &RequestMeta) -> Reply {
    let tenant_id = tenant_param(req)?;
    let admin = admit_superadmin(req, Some(&tenant_id))?;
    shared::http::no_body(req)?;
    let tenant = offboarding::cancel(db, &admin, &tenant_id).await?;
    admin.audit(db, &tenant, meta, Action::TenantOffboardingCancelled, doc! {"status": tenant.status.as_str()}).await;
    respond_one(StatusCode::OK, &tenants::service::view(db, &tenant).await?)
}

/// `GET /tenants/{tenantId}/receipt` (superadmin): a purged tenant's signed erasure receipt,
/// with the public key that verifies it offline (docs/ARCHITECTURE.md §22). A tenant that was
/// not purged has no tombstone: a 404. Not audited: the tenant's log went with it.
pub async fn receipt(db: &Db, req: &Request) -> Reply {
    let tenant_id = tenant_param(req)?;
    admit_superadmin(req, Some(&tenant_id))?;
    let tombstones = db.global::<TenantTombstone>(&SystemContext::new("receipt"), GlobalCollection::TenantTombstones);
    let not_found = || ApiError::NotFound(format!("Tenant {tenant_id} has no erasure receipt: it was not purged"));
    let tombstone = tombstones.find_one(doc! {"_id": tenant_id.as_str()}).await?.ok_or_else(not_found)?;
    // A tombstone the reconciliation restored from the vault's side carries no receipt.
    let stored = tombstone.receipt.ok_or_else(not_found)?;
    let signed = SignedReceipt::from_document(&stored).map_err(DbError::from)?;
    let signer = db.signer()?;
    // The public key must be the signing key's: serving another's would make a true receipt
    // fail to verify.
    if signed.key_id != signer.key_id() {
        let other = ReceiptError::Malformed(format!("signed with key {}, not with this function's key {}", signed.key_id, signer.key_id()));
        return Err(DbError::from(other).into());
    }
    let public_key = signer.public_key().await.map_err(DbError::from)?;
    respond_one(StatusCode::OK, &signed.publish(&public_key).map_err(DbError::from)?)
}
