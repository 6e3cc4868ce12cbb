//! The identity extractor on real event shapes: REST v1 Cognito claims, HTTP v2 JWT claims and
//! the API-key authorizer context, and the ways each can be wrong.

use lambda_http::request::from_str;
use serde_json::{json, Value};
use shared::identity::{Identity, IdentityError, Principal};

fn rest_event(authorizer: Value) -> String {
    json!({
        "resource": "/tenants", "path": "/tenants", "httpMethod": "GET",
        "headers": {}, "multiValueHeaders": {}, "queryStringParameters": null,
        "multiValueQueryStringParameters": null, "pathParameters": null, "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012", "resourceId": "r1", "stage": "prod", "requestId": "req-rest",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "t"}, "resourcePath": "/tenants",
            "httpMethod": "GET", "apiId": "api", "path": "/prod/tenants", "authorizer": authorizer
        },
        "body": null, "isBase64Encoded": false
    })
    .to_string()
}

fn http_event(authorizer: Value) -> String {
    json!({
        "version": "2.0", "routeKey": "GET /tenants", "rawPath": "/tenants", "rawQueryString": "",
        "headers": {"user-agent": "t"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example", "domainPrefix": "api",
            "http": {"method": "GET", "path": "/tenants", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.8", "userAgent": "t"},
            "requestId": "req-http", "routeKey": "GET /tenants", "stage": "$default",
            "time": "28/Nov/2026:18:00:00 +0000", "timeEpoch": 1795889000000_i64, "authorizer": authorizer
        },
        "isBase64Encoded": false
    })
    .to_string()
}

fn identity(event: String) -> Result<Identity, IdentityError> {
    Identity::from_request(&from_str(&event).expect("a valid event"))
}

#[test]
fn claims_from_a_rest_api_cognito_authorizer_are_read() {
    let id = identity(rest_event(json!({"claims": {
        "sub": "u-1", "email": "a@acme.example", "email_verified": "true", "custom:tenantId": "tn_acme", "cognito:groups": "admin,editors"
    }})))
    .unwrap();
    assert_eq!(id.principal, Principal::User { sub: "u-1".into(), email: Some("a@acme.example".into()) });
    assert_eq!(id.tenant().unwrap().as_str(), "tn_acme");
    assert_eq!(id.groups().display_list(), ["admin", "editors"]);
    assert!(!id.is_superadmin());
    let operator = identity(rest_event(json!({"claims": {"sub": "u-0", "cognito:groups": "superadmin"}}))).unwrap();
    assert!(operator.is_superadmin());
}

#[test]
fn claims_from_an_http_api_jwt_authorizer_are_read() {
    let id = identity(http_event(json!({"jwt": {"claims": {
        "sub": "u-2", "custom:tenantId": "tn_beta", "cognito:groups": "[admin editors]"
    }, "scopes": null}})))
    .unwrap();
    assert_eq!(id.tenant().unwrap().as_str(), "tn_beta");
    assert_eq!(id.groups().display_list(), ["admin", "editors"]);
    assert!(!id.is_superadmin());
    let operator =
        identity(http_event(json!({"jwt": {"claims": {"sub": "u-0", "cognito:groups": "[superadmin]"}, "scopes": null}}))).unwrap();
    assert!(operator.is_superadmin());
}

/// Cognito allows commas, brackets and quotes in group names, and the flattened forms cannot be
/// split back: only a list that is exactly `superadmin` is trusted (a dedicated account).
#[test]
fn group_names_that_flatten_like_superadmin_are_not_superadmin() {
    for groups in ["ops,superadmin", "[superadmin]", "\"superadmin\"", "a,b,superadmin,c", "admin,superadmin"] {
        let rest = identity(rest_event(json!({"claims": {"sub": "u", "cognito:groups": groups}}))).unwrap();
        assert!(!rest.is_superadmin(), "REST {groups}");
        // An HTTP API brackets the list: `[superadmin]` is the one group superadmin there.
        let flattened = format!("[{groups}]");
        let http = identity(http_event(json!({"jwt": {"claims": {"sub": "u", "cognito:groups": flattened}, "scopes": null}}))).unwrap();
        assert!(!http.is_superadmin(), "HTTP {flattened}");
    }
}

#[test]
fn an_api_key_authorizer_context_is_read() {
    let id = identity(rest_event(json!({
        "principalType": "apiKey", "tenantId": "tn_gamma", "apiKeyId": "key_123", "permissions": "[\"read:users\",\"read:roles\"]",
        "createdBy": "6565650000000000000000b2", "principalId": "key_123", "integrationLatency": 12
    })))
    .unwrap();
    assert_eq!(id.principal, Principal::ApiKey { key_id: "key_123".into(), created_by: "6565650000000000000000b2".parse().unwrap() });
    assert_eq!(id.tenant().unwrap().as_str(), "tn_gamma");
    let perms: Vec<&str> = id.key_permissions().unwrap().iter().map(|p| p.as_str()).collect();
    assert_eq!(perms, ["read:users", "read:roles"]);
    assert!(!id.is_superadmin());
}

#[test]
fn an_http_api_lambda_authorizer_context_is_read() {
    let id = identity(http_event(
        json!({"lambda": {"tenantId": "tn_delta", "apiKeyId": "k9", "createdBy": "6565650000000000000000b2", "permissions": ["read:*"]}}),
    ))
    .unwrap();
    assert_eq!(id.tenant().unwrap().as_str(), "tn_delta");
    assert!(id.key_permissions().unwrap()[0].covers("read:users"));
}

#[test]
fn a_request_without_an_authorizer_is_unauthenticated() {
    assert_eq!(identity(rest_event(json!({}))), Err(IdentityError::MissingClaims));
    assert_eq!(identity(http_event(json!(null))), Err(IdentityError::MissingClaims));
}

#[test]
fn claims_without_a_subject_are_unauthenticated() {
    assert_eq!(identity(rest_event(json!({"claims": {"custom:tenantId": "tn_x"}}))), Err(IdentityError::MissingSubject));
}

#[test]
fn a_missing_or_blank_tenant_yields_no_tenant_and_never_a_default() {
    for claims in [json!({"sub": "u"}), json!({"sub": "u", "custom:tenantId": ""}), json!({"sub": "u", "custom:tenantId": "   "})] {
        let id = identity(rest_event(json!({"claims": claims}))).unwrap();
        assert_eq!(id.tenant(), None);
        assert!(!id.is_superadmin());
    }
}

#[test]
fn an_injected_tenant_claim_is_refused() {
    let r = identity(rest_event(json!({"claims": {"sub": "u", "custom:tenantId": "tn_a\",\"$ne\":\""}})));
    assert_eq!(r, Err(IdentityError::MalformedTenant));
}

#[test]
fn a_group_merely_containing_superadmin_is_not_superadmin() {
    let id = identity(rest_event(json!({"claims": {"sub": "u", "cognito:groups": "superadmins,notsuperadmin"}}))).unwrap();
    assert!(!id.is_superadmin());
}

#[test]
fn an_api_key_context_with_a_bad_permission_is_refused() {
    let r = identity(rest_event(
        json!({"tenantId": "tn_g", "apiKeyId": "k", "createdBy": "6565650000000000000000b2", "permissions": "read users"}),
    ));
    assert!(matches!(r, Err(IdentityError::MalformedApiKeyContext("permissions"))));
}
