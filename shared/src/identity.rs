//! The one identity extractor (DESIGN.md §4). It reads all three authorizer shapes API Gateway
//! can hand a Lambda, and nothing else: the tenant comes from verified claims, never a header.

use crate::ids::{Permission, TenantId};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use serde_json::Value;
use std::collections::HashMap;

/// The Cognito group of platform operators.
pub const SUPERADMIN_GROUP: &str = "superadmin";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A Cognito user, by `sub`, with its e-mail only if Cognito marks it verified: an
    /// unverified address proves nothing and must never link the caller to a user record.
    User { sub: String, email: Option<String> },
    /// An API key, by its id.
    ApiKey { key_id: String },
}

/// The verified caller, before its tenant is checked against the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub principal: Principal,
    tenant: Option<TenantId>,
    groups: Vec<String>,
    key_permissions: Option<Vec<Permission>>,
}

/// Why no usable identity could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the request carries no authorizer claims")]
    MissingClaims,
    #[error("the token has no subject")]
    MissingSubject,
    #[error("the caller belongs to no tenant")]
    MissingTenant,
    #[error("the caller's tenant id is malformed")]
    MalformedTenant,
    #[error("the API key context is incomplete: {0}")]
    MalformedApiKeyContext(&'static str),
}

impl From<IdentityError> for crate::error::ApiError {
    fn from(e: IdentityError) -> Self {
        use crate::error::ApiError;
        match e {
            IdentityError::MissingClaims | IdentityError::MissingSubject | IdentityError::MalformedApiKeyContext(_) => {
                ApiError::Unauthorized(e.to_string())
            }
            IdentityError::MissingTenant | IdentityError::MalformedTenant => ApiError::Forbidden(e.to_string()),
        }
    }
}

impl Identity {
    /// Reads the caller from a REST API Cognito authorizer (`authorizer.claims`), an HTTP API
    /// JWT authorizer (`authorizer.jwt.claims`) or the API-key authorizer's context.
    pub fn from_request(req: &Request) -> Result<Identity, IdentityError> {
        match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV1(ctx)) => from_authorizer_fields(&ctx.authorizer.fields),
            Some(RequestContext::ApiGatewayV2(ctx)) => match ctx.authorizer.as_ref() {
                Some(a) if a.jwt.as_ref().is_some_and(|j| !j.claims.is_empty()) => {
                    let claims = &a.jwt.as_ref().expect("checked above").claims;
                    from_claims(&|k| claims.get(k).map(|v| Value::String(v.clone())))
                }
                Some(a) => from_authorizer_fields(&a.fields),
                None => Err(IdentityError::MissingClaims),
            },
            _ => Err(IdentityError::MissingClaims),
        }
    }

    /// The tenant the caller belongs to, if any. A superadmin may have none.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    /// The Cognito groups the caller is in.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// Whether the caller is a platform operator (Cognito group `superadmin`). API keys never are.
    pub fn is_superadmin(&self) -> bool {
        matches!(self.principal, Principal::User { .. }) && self.groups.iter().any(|g| g == SUPERADMIN_GROUP)
    }

    /// The permissions an API key was issued with; `None` for users, whose come from roles.
    pub fn key_permissions(&self) -> Option<&[Permission]> {
        self.key_permissions.as_deref()
    }

    /// A stable id of the caller for audit entries: the Cognito `sub` or `apikey:<id>`.
    pub fn actor_id(&self) -> String {
        match &self.principal {
            Principal::User { sub, .. } => sub.clone(),
            Principal::ApiKey { key_id } => format!("apikey:{key_id}"),
        }
    }
}

fn from_authorizer_fields(fields: &HashMap<String, Value>) -> Result<Identity, IdentityError> {
    match fields.get("claims") {
        Some(Value::Object(claims)) => from_claims(&|k| claims.get(k).cloned()),
        // Some integrations pass the claims object as a JSON string.
        Some(Value::String(raw)) => match serde_json::from_str::<serde_json::Map<String, Value>>(raw) {
            Ok(claims) => from_claims(&|k| claims.get(k).cloned()),
            Err(_) => Err(IdentityError::MissingClaims),
        },
        _ if fields.contains_key("apiKeyId") => from_api_key_context(fields),
        _ => Err(IdentityError::MissingClaims),
    }
}

fn text(value: Option<Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn tenant_claim(value: Option<Value>) -> Result<Option<TenantId>, IdentityError> {
    text(value).map(|t| TenantId::parse(t).map_err(|_| IdentityError::MalformedTenant)).transpose()
}

fn from_claims(claim: &dyn Fn(&str) -> Option<Value>) -> Result<Identity, IdentityError> {
    let sub = text(claim("sub")).ok_or(IdentityError::MissingSubject)?;
    let verified = matches!(claim("email_verified"), Some(Value::Bool(true)))
        || text(claim("email_verified")).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(Identity {
        principal: Principal::User { sub, email: text(claim("email")).filter(|_| verified) },
        tenant: tenant_claim(claim("custom:tenantId"))?,
        groups: claim("cognito:groups").map(|v| parse_list(&v)).unwrap_or_default(),
        key_permissions: None,
    })
}

fn from_api_key_context(fields: &HashMap<String, Value>) -> Result<Identity, IdentityError> {
    let key_id = text(fields.get("apiKeyId").cloned()).ok_or(IdentityError::MalformedApiKeyContext("apiKeyId"))?;
    let tenant = tenant_claim(fields.get("tenantId").cloned())?.ok_or(IdentityError::MissingTenant)?;
    let permissions = fields
        .get("permissions")
        .map(parse_list)
        .unwrap_or_default()
        .into_iter()
        .map(Permission::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| IdentityError::MalformedApiKeyContext("permissions"))?;
    Ok(Identity {
        principal: Principal::ApiKey { key_id },
        tenant: Some(tenant),
        groups: vec![],
        key_permissions: Some(permissions),
    })
}

/// Reads a list that API Gateway may have flattened: a JSON array, a JSON-encoded array in a
/// string (`["a","b"]`), a bracketed space list (`[a b]`, HTTP APIs) or a comma list (`a,b`).
pub fn parse_list(value: &Value) -> Vec<String> {
    let raw = match value {
        Value::Array(items) => return items.iter().filter_map(|i| text(Some(i.clone()))).collect(),
        Value::String(s) => s.trim(),
        _ => return vec![],
    };
    if let Ok(items) = serde_json::from_str::<Vec<String>>(raw) {
        return items.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    }
    raw.trim_start_matches('[')
        .trim_end_matches(']')
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|s| s.trim_matches('"').trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn groups_are_read_in_every_flattened_form() {
        let want = vec!["admin".to_string(), "superadmin".to_string()];
        for form in [
            json!(["admin", "superadmin"]),
            json!("[\"admin\",\"superadmin\"]"),
            json!("[admin superadmin]"),
            json!("admin,superadmin"),
            json!("admin, superadmin"),
            json!(" admin superadmin "),
        ] {
            assert_eq!(parse_list(&form), want, "{form}");
        }
        assert_eq!(parse_list(&json!("superadmin")), vec!["superadmin"]);
        assert!(parse_list(&json!("")).is_empty());
        assert!(parse_list(&json!("[]")).is_empty());
    }

    #[test]
    fn an_unverified_email_is_not_taken() {
        let claims = json!({"sub": "u1", "email": "boss@acme.example", "email_verified": "false"});
        let id = from_claims(&|k| claims.get(k).cloned()).unwrap();
        assert_eq!(id.principal, Principal::User { sub: "u1".into(), email: None });
        let claims = json!({"sub": "u1", "email": "boss@acme.example", "email_verified": true});
        let id = from_claims(&|k| claims.get(k).cloned()).unwrap();
        assert_eq!(id.principal, Principal::User { sub: "u1".into(), email: Some("boss@acme.example".into()) });
    }

    #[test]
    fn a_blank_tenant_claim_is_no_tenant() {
        let claims = json!({"sub": "u1", "custom:tenantId": "  "});
        let id = from_claims(&|k| claims.get(k).cloned()).unwrap();
        assert_eq!(id.tenant(), None);
    }

    #[test]
    fn a_malformed_tenant_claim_is_refused() {
        let claims = json!({"sub": "u1", "custom:tenantId": "{\"$ne\":1}"});
        assert_eq!(from_claims(&|k| claims.get(k).cloned()), Err(IdentityError::MalformedTenant));
    }

    #[test]
    fn an_api_key_is_never_a_superadmin() {
        let fields: HashMap<String, Value> = serde_json::from_value(json!({
            "apiKeyId": "k1", "tenantId": "tn_abc", "permissions": "read:users,read:roles"
        }))
        .unwrap();
        let id = from_authorizer_fields(&fields).unwrap();
        assert!(!id.is_superadmin());
        assert_eq!(id.key_permissions().unwrap().len(), 2);
    }

    #[test]
    fn an_api_key_context_without_tenant_is_refused() {
        let fields: HashMap<String, Value> = serde_json::from_value(json!({"apiKeyId": "k1"})).unwrap();
        assert_eq!(from_authorizer_fields(&fields), Err(IdentityError::MissingTenant));
    }
}
