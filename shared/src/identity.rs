//! The one identity extractor (docs/ARCHITECTURE.md §4). It reads all three authorizer shapes
//! API Gateway can hand a Lambda, and nothing else: the tenant comes from verified claims, never
//! a header.
//!
//! **Superadmin and group names.** API Gateway's Cognito authorizer hands `cognito:groups` on
//! flattened (`a,b` for REST APIs, `[a b]` for HTTP APIs), and Cognito allows group names with
//! commas, brackets, quotes and spaces, so a flattened list cannot be split back unambiguously:
//! a group named `ops,superadmin` flattens exactly like the two groups `ops` and `superadmin`.
//! So where only the flattened form is available, a caller is a superadmin only if the whole
//! list is the one element `superadmin`; where the raw JSON array is available (a JWT verified
//! here, or our authorizer's `groups` context key), only if the array holds `superadmin`
//! exactly. Superadmin accounts are therefore dedicated accounts, in that group alone.

use crate::ids::{parse_object_id, Permission, TenantId};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use mongodb::bson::oid::ObjectId;
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
    /// An API key, by its id, with the user record of the person who created it.
    ApiKey { key_id: String, created_by: ObjectId },
}

/// The caller's Cognito groups, in the form they arrived in (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Groups {
    /// No groups claim.
    #[default]
    None,
    /// The raw JSON array, element by element.
    Raw(Vec<String>),
    /// A REST API Cognito authorizer's comma-joined string.
    FlattenedRest(String),
    /// An HTTP API JWT authorizer's `[a b]` string.
    FlattenedHttp(String),
}

impl Groups {
    /// Whether these groups make a superadmin, by the exact rule of the module docs.
    pub fn include_superadmin(&self) -> bool {
        match self {
            Groups::None => false,
            Groups::Raw(items) => items.iter().any(|g| g == SUPERADMIN_GROUP),
            Groups::FlattenedRest(s) => s.trim() == SUPERADMIN_GROUP,
            Groups::FlattenedHttp(s) => s.trim() == format!("[{SUPERADMIN_GROUP}]"),
        }
    }

    /// A best-effort list for display and logs. Never use it for a decision: flattened names
    /// that contain separators come apart here.
    pub fn display_list(&self) -> Vec<String> {
        match self {
            Groups::None => vec![],
            Groups::Raw(items) => items.clone(),
            Groups::FlattenedRest(s) | Groups::FlattenedHttp(s) => parse_list(&Value::String(s.clone())),
        }
    }
}

/// The verified caller, before its tenant is checked against the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub principal: Principal,
    tenant: Option<TenantId>,
    groups: Groups,
    key_permissions: Option<Vec<Permission>>,
    retry_after: Option<u64>,
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
    #[error("the authorizer context names no known principal type")]
    UnknownPrincipal,
}

impl From<IdentityError> for crate::error::ApiError {
    fn from(e: IdentityError) -> Self {
        use crate::error::ApiError;
        match e {
            IdentityError::MissingClaims
            | IdentityError::MissingSubject
            | IdentityError::MalformedApiKeyContext(_)
            | IdentityError::UnknownPrincipal => ApiError::Unauthorized(e.to_string()),
            IdentityError::MissingTenant | IdentityError::MalformedTenant => ApiError::Forbidden(e.to_string()),
        }
    }
}

impl Identity {
    /// Reads the caller from a REST API Cognito authorizer (`authorizer.claims`), an HTTP API
    /// JWT authorizer (`authorizer.jwt.claims`) or the API-key authorizer's context.
    pub fn from_request(req: &Request) -> Result<Identity, IdentityError> {
        match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV1(ctx)) => from_authorizer_fields(&ctx.authorizer.fields, Flattening::Rest),
            Some(RequestContext::ApiGatewayV2(ctx)) => match ctx.authorizer.as_ref() {
                Some(a) if a.jwt.as_ref().is_some_and(|j| !j.claims.is_empty()) => {
                    let claims = &a.jwt.as_ref().expect("checked above").claims;
                    from_claims(&|k| claims.get(k).map(|v| Value::String(v.clone())), Flattening::Http)
                }
                Some(a) => from_authorizer_fields(&a.fields, Flattening::Http),
                None => Err(IdentityError::MissingClaims),
            },
            _ => Err(IdentityError::MissingClaims),
        }
    }

    /// The tenant the caller belongs to, if any. A superadmin may have none.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    /// The Cognito groups the caller is in, as they arrived.
    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// Whether the caller is a platform operator (the exact rule is in the module docs). API
    /// keys never are.
    pub fn is_superadmin(&self) -> bool {
        matches!(self.principal, Principal::User { .. }) && self.groups.include_superadmin()
    }

    /// The permissions an API key was issued with; `None` for users, whose come from roles.
    pub fn key_permissions(&self) -> Option<&[Permission]> {
        self.key_permissions.as_deref()
    }

    /// Set by the authorizer when one of the key's windows is full: the seconds until it has
    /// room. Admission answers 429 before it counts anything.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// A stable id of the caller for audit entries: the Cognito `sub` or `apikey:<id>`.
    pub fn actor_id(&self) -> String {
        match &self.principal {
            Principal::User { sub, .. } => sub.clone(),
            Principal::ApiKey { key_id, .. } => format!("apikey:{key_id}"),
        }
    }
}

/// Which API Gateway flattened the claims, when they arrive as strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flattening {
    Rest,
    Http,
}

fn from_authorizer_fields(fields: &HashMap<String, Value>, flattening: Flattening) -> Result<Identity, IdentityError> {
    match fields.get("claims") {
        Some(Value::Object(claims)) => from_claims(&|k| claims.get(k).cloned(), flattening),
        // Some integrations pass the claims object as a JSON string.
        Some(Value::String(raw)) => match serde_json::from_str::<serde_json::Map<String, Value>>(raw) {
            Ok(claims) => from_claims(&|k| claims.get(k).cloned(), flattening),
            Err(_) => Err(IdentityError::MissingClaims),
        },
        _ if fields.contains_key("principalType") || fields.contains_key("apiKeyId") => from_context(fields),
        // An HTTP API hands a Lambda authorizer's context on under `lambda`.
        _ => match fields.get("lambda") {
            Some(Value::Object(context)) => {
                let context: HashMap<String, Value> = context.clone().into_iter().collect();
                from_authorizer_fields(&context, flattening)
            }
            _ => Err(IdentityError::MissingClaims),
        },
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

/// The groups claim: a JSON array is the raw form; a string is the authorizer's flattening.
fn groups_claim(value: Option<Value>, flattening: Flattening) -> Groups {
    match value {
        Some(Value::Array(items)) => Groups::Raw(items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect()),
        Some(Value::String(s)) if !s.trim().is_empty() => match flattening {
            Flattening::Rest => Groups::FlattenedRest(s),
            Flattening::Http => Groups::FlattenedHttp(s),
        },
        _ => Groups::None,
    }
}

fn from_claims(claim: &dyn Fn(&str) -> Option<Value>, flattening: Flattening) -> Result<Identity, IdentityError> {
    let sub = text(claim("sub")).ok_or(IdentityError::MissingSubject)?;
    let verified = matches!(claim("email_verified"), Some(Value::Bool(true)))
        || text(claim("email_verified")).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(Identity {
        principal: Principal::User { sub, email: text(claim("email")).filter(|_| verified) },
        tenant: tenant_claim(claim("custom:tenantId"))?,
        groups: groups_claim(claim("cognito:groups"), flattening),
        key_permissions: None,
        retry_after: None,
    })
}

/// A boolean the authorizer may have put in its context as a boolean or (API Gateway
/// stringifies context values) as `"true"`.
fn flag(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// Our REQUEST authorizer's context (docs/ARCHITECTURE.md §13): one shape for people and keys.
/// `groups` is the raw array as a JSON string; anything else there is no group at all, so that
/// a malformed value can never make a superadmin.
fn from_context(fields: &HashMap<String, Value>) -> Result<Identity, IdentityError> {
    let field = |k: &str| text(fields.get(k).cloned());
    let kind = field("principalType").unwrap_or_else(|| "apiKey".into());
    match kind.as_str() {
        "user" => {
            let sub = field("sub").ok_or(IdentityError::MissingSubject)?;
            let groups = match fields.get("groups") {
                Some(Value::Array(items)) => Groups::Raw(items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect()),
                Some(Value::String(raw)) => serde_json::from_str::<Vec<String>>(raw).map(Groups::Raw).unwrap_or_default(),
                _ => Groups::None,
            };
            Ok(Identity {
                principal: Principal::User { sub, email: field("email").filter(|_| flag(fields.get("emailVerified"))) },
                tenant: tenant_claim(fields.get("tenantId").cloned())?,
                groups,
                key_permissions: None,
                retry_after: None,
            })
        }
        "apiKey" => from_api_key_context(fields),
        _ => Err(IdentityError::UnknownPrincipal),
    }
}

fn from_api_key_context(fields: &HashMap<String, Value>) -> Result<Identity, IdentityError> {
    let key_id = text(fields.get("apiKeyId").cloned()).ok_or(IdentityError::MalformedApiKeyContext("apiKeyId"))?;
    let created_by = text(fields.get("createdBy").cloned())
        .and_then(|c| parse_object_id(&c).ok())
        .ok_or(IdentityError::MalformedApiKeyContext("createdBy"))?;
    let retry_after = match text(fields.get("retryAfter").cloned()) {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| IdentityError::MalformedApiKeyContext("retryAfter"))?.max(1)),
    };
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
        principal: Principal::ApiKey { key_id, created_by },
        tenant: Some(tenant),
        groups: Groups::None,
        key_permissions: Some(permissions),
        retry_after,
    })
}

/// Reads a list that API Gateway may have flattened: a JSON array, a JSON-encoded array in a
/// string (`["a","b"]`), a bracketed space list (`[a b]`, HTTP APIs) or a comma list (`a,b`).
/// Best effort, for lists whose elements cannot contain separators (permissions); never for
/// group names (see [`Groups`]).
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

    fn rest(claims: &Value) -> Result<Identity, IdentityError> {
        from_claims(&|k| claims.get(k).cloned(), Flattening::Rest)
    }

    fn http(claims: &Value) -> Result<Identity, IdentityError> {
        from_claims(&|k| claims.get(k).cloned(), Flattening::Http)
    }

    #[test]
    fn a_flattened_rest_list_is_superadmin_only_when_it_is_exactly_superadmin() {
        let is = |groups: &str| rest(&json!({"sub": "u", "cognito:groups": groups})).unwrap().is_superadmin();
        assert!(is("superadmin"));
        // A group named "ops,superadmin", or the groups ops and superadmin: indistinguishable.
        for smuggled in ["ops,superadmin", "a,b,superadmin,c", "[superadmin]", "\"superadmin\"", "superadmin,", "admin, superadmin"] {
            assert!(!is(smuggled), "{smuggled}");
        }
    }

    #[test]
    fn a_flattened_http_list_is_superadmin_only_when_it_is_exactly_the_one_element() {
        let is = |groups: &str| http(&json!({"sub": "u", "cognito:groups": groups})).unwrap().is_superadmin();
        assert!(is("[superadmin]"));
        for smuggled in ["[ops superadmin]", "[[superadmin]]", "superadmin", "[\"superadmin\"]", "[a,b,superadmin,c]"] {
            assert!(!is(smuggled), "{smuggled}");
        }
    }

    #[test]
    fn a_raw_array_is_superadmin_when_it_holds_superadmin_exactly() {
        let is = |groups: Value| rest(&json!({"sub": "u", "cognito:groups": groups})).unwrap().is_superadmin();
        assert!(is(json!(["superadmin"])));
        assert!(is(json!(["ops", "superadmin"])), "the raw array is unambiguous");
        for smuggled in [json!(["ops,superadmin"]), json!(["[superadmin]"]), json!(["\"superadmin\""]), json!(["Superadmin"])] {
            assert!(!is(smuggled.clone()), "{smuggled}");
        }
    }

    #[test]
    fn an_unverified_email_is_not_taken() {
        let claims = json!({"sub": "u1", "email": "boss@acme.example", "email_verified": "false"});
        let id = rest(&claims).unwrap();
        assert_eq!(id.principal, Principal::User { sub: "u1".into(), email: None });
        let claims = json!({"sub": "u1", "email": "boss@acme.example", "email_verified": true});
        let id = rest(&claims).unwrap();
        assert_eq!(id.principal, Principal::User { sub: "u1".into(), email: Some("boss@acme.example".into()) });
    }

    #[test]
    fn a_blank_tenant_claim_is_no_tenant() {
        let claims = json!({"sub": "u1", "custom:tenantId": "  "});
        let id = rest(&claims).unwrap();
        assert_eq!(id.tenant(), None);
    }

    #[test]
    fn a_malformed_tenant_claim_is_refused() {
        let claims = json!({"sub": "u1", "custom:tenantId": "{\"$ne\":1}"});
        assert_eq!(rest(&claims), Err(IdentityError::MalformedTenant));
    }

    #[test]
    fn an_api_key_is_never_a_superadmin() {
        let fields: HashMap<String, Value> = serde_json::from_value(json!({
            "apiKeyId": "k1", "tenantId": "tn_abc", "permissions": "read:users,read:roles",
            "createdBy": "6565650000000000000000b2"
        }))
        .unwrap();
        let id = from_authorizer_fields(&fields, Flattening::Rest).unwrap();
        assert!(!id.is_superadmin());
        assert_eq!(id.key_permissions().unwrap().len(), 2);
    }

    #[test]
    fn an_api_key_context_without_tenant_or_creator_is_refused() {
        let fields: HashMap<String, Value> =
            serde_json::from_value(json!({"apiKeyId": "k1", "createdBy": "6565650000000000000000b2"})).unwrap();
        assert_eq!(from_authorizer_fields(&fields, Flattening::Rest), Err(IdentityError::MissingTenant));
        let fields: HashMap<String, Value> = serde_json::from_value(json!({"apiKeyId": "k1", "tenantId": "tn_abc"})).unwrap();
        assert_eq!(from_authorizer_fields(&fields, Flattening::Rest), Err(IdentityError::MalformedApiKeyContext("createdBy")));
    }

    fn context(value: Value) -> Result<Identity, IdentityError> {
        from_authorizer_fields(&serde_json::from_value(value).unwrap(), Flattening::Rest)
    }

    #[test]
    fn a_user_context_carries_the_raw_groups_and_a_verified_email_only() {
        let id = context(json!({"principalType": "user", "sub": "u1", "email": "a@b.example", "emailVerified": "true",
            "groups": "[\"ops\",\"superadmin\"]", "tenantId": "", "apiKeyId": "", "permissions": "[]"}))
        .unwrap();
        assert!(id.is_superadmin());
        assert_eq!(id.principal, Principal::User { sub: "u1".into(), email: Some("a@b.example".into()) });
        assert_eq!(id.tenant(), None);
        let id = context(json!({"principalType": "user", "sub": "u1", "email": "a@b.example", "emailVerified": false,
            "groups": "[\"ops,superadmin\"]", "tenantId": "tn_abc"}))
        .unwrap();
        assert!(!id.is_superadmin(), "one group named ops,superadmin");
        assert_eq!(id.principal, Principal::User { sub: "u1".into(), email: None });
        for groups in ["superadmin", "ops,superadmin", "[superadmin]", "{}"] {
            let id = context(json!({"principalType": "user", "sub": "u1", "groups": groups})).unwrap();
            assert!(!id.is_superadmin(), "a groups value that is not a JSON array is no group: {groups}");
        }
    }

    #[test]
    fn a_full_window_rides_in_the_key_context() {
        let id = context(json!({"principalType": "apiKey", "apiKeyId": "k1", "tenantId": "tn_abc",
            "createdBy": "6565650000000000000000b2", "permissions": "[\"read:users\"]", "retryAfter": "17"}))
        .unwrap();
        assert_eq!(id.retry_after(), Some(17));
        assert!(context(json!({"principalType": "robot", "sub": "x"})).is_err());
    }
}
