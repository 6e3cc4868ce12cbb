//! The Cognito PostConfirmation trigger. It serves self sign-up (off today; onboarding may turn
//! it on) and repairs records that have no `sub` yet: for `PostConfirmation_ConfirmSignUp` it
//! links the user record of that e-mail, in the tenant its `custom:tenantId` names, to the
//! confirmed `sub`, only where no `sub` is set, and activates it if it was pending (never an
//! inactive one). It is idempotent, never blocks a sign-up (an unknown tenant or user is
//! logged), and passes every other trigger source through. The event is always returned as
//! received, as Cognito requires.

use aws_lambda_events::event::cognito::CognitoEventUserPoolsPostConfirmation;
use mongodb::bson::doc;
use serde_json::Value;
use shared::db::{Db, DbError, SystemContext, TenantCollection};
use shared::event_kind::{EventFunction, EventKind};
use shared::ids::{Email, TenantId};
use shared::models::{User, UserStatus};

/// The trigger's function (the `post-confirmation` binary): Cognito's PostConfirmation trigger.
pub const FUNCTION: EventFunction =
    EventFunction { logical_id: "PostConfirmationFunction", takes: &[EventKind::CognitoTrigger("PostConfirmation")] };

const CONFIRM_SIGN_UP: &str = "PostConfirmation_ConfirmSignUp";

/// A failed link: the database failed. Cognito then fails the confirmation, which the user can
/// retry; the error type says whether a retry can help.
#[derive(Debug, thiserror::Error)]
#[error("the post-confirmation link failed")]
pub struct TriggerError(#[from] DbError);

impl From<TriggerError> for lambda_runtime::Diagnostic {
    fn from(e: TriggerError) -> Self {
        let retry = if e.0.is_retryable() { "Retryable" } else { "Permanent" };
        lambda_runtime::Diagnostic { error_type: format!("PostConfirmation.{retry}"), error_message: format!("{e}: {}", e.0) }
    }
}

/// Handles one trigger invocation. Only a database failure is an error; everything else returns
/// the event.
pub async fn post_confirmation(db: &Db, event: Value) -> Result<Value, TriggerError> {
    if event.get("triggerSource").and_then(Value::as_str) != Some(CONFIRM_SIGN_UP) {
        return Ok(event);
    }
    let parsed: CognitoEventUserPoolsPostConfirmation = match serde_json::from_value(event.clone()) {
        Ok(parsed) => parsed,
        Err(error) => {
            tracing::warn!(%error, "a PostConfirmation event that does not parse; passed through");
            return Ok(event);
        }
    };
    let attributes = &parsed.request.user_attributes;
    let sub = attributes.get("sub").cloned().unwrap_or_default();
    let (Ok(tenant), Ok(email)) = (
        TenantId::parse(attributes.get("custom:tenantId").cloned().unwrap_or_default()),
        Email::parse(attributes.get("email").cloned().unwrap_or_default()),
    ) else {
        tracing::warn!(%sub, "a confirmed user without a valid tenant or e-mail; nothing to link");
        return Ok(event);
    };
    if sub.is_empty() {
        tracing::warn!(tenantId = %tenant, "a confirmed user without a sub; nothing to link");
        return Ok(event);
    }
    link(db, &tenant, &email, &sub).await?;
    Ok(event)
}

/// Links the record of `email` in `tenant` to `sub` where it still holds `pending:<id>`, and
/// activates it if pending: one conditional update each, so a repeat changes nothing.
pub async fn link(db: &Db, tenant: &TenantId, email: &Email, sub: &str) -> Result<(), DbError> {
    let system = SystemContext::new("post-confirmation");
    if db.tenants(&system).get(tenant).await?.is_none() {
        tracing::warn!(tenantId = %tenant, %sub, "a confirmed user of an unknown tenant; not linked");
        return Ok(());
    }
    let users = db.scoped::<User>(&system.for_tenant(tenant.clone()), TenantCollection::Users);
    let Some(record) = users.find_one(crate::person::email_filter(db, tenant, email).await?).await? else {
        tracing::warn!(tenantId = %tenant, %sub, "a confirmed user without a user record; not linked");
        return Ok(());
    };
    if record.cognito_user_id.sub().is_some() {
        if record.cognito_user_id.sub() != Some(sub) {
            tracing::warn!(tenantId = %tenant, userId = %record.id, "the record is linked to another sub; left alone");
        }
        return Ok(());
    }
    let mut set = doc! {"cognitoUserId": sub};
    let mut filter = doc! {"_id": record.id, "cognitoUserId": record.cognito_user_id.stored()};
    if record.status == UserStatus::Pending {
        set.insert("status", UserStatus::Active.as_str());
        filter.insert("status", UserStatus::Pending.as_str());
    }
    let outcome = users.update_one(filter, doc! {"$set": set}, false).await?;
    tracing::info!(tenantId = %tenant, userId = %record.id, linked = outcome.matched == 1, "post-confirmation link");
    Ok(())
}
