//! Plays API Gateway: routes by the OpenAPI document, runs the operation's authorizer (the
//! Cognito authorizer, or the same REQUEST authorizer code the deployed `authorizer` Lambda
//! runs), builds the REST API proxy event Lambda would receive, and calls the context's handler
//! in-process.

use crate::routes::RouteTable;
use authorizer::jwt::{TokenError, Verifier};
use authorizer::{Authorizer, Verdict};
use axum::body::{to_bytes, Body as AxumBody};
use axum::extract::{ConnectInfo, State};
use axum::response::Response as AxumResponse;
use http::StatusCode;
use lambda_http::Body;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// API Gateway's own payload limit is 10 MB; the local one refuses past 1 MB (the handlers'
/// limit is far lower, and they answer 413 themselves).
const MAX_PAYLOAD: usize = 1024 * 1024;

/// API Gateway's quota on a REST API request's "total combined size of request line and header
/// values": 10,240 bytes. Past it API Gateway refuses the request with its `REQUEST_TOO_LARGE`
/// gateway response, a 413 (not a 431, which it never sends), and so does the local gateway.
/// Counted here as the request line plus every header's name and value, which is at least what
/// API Gateway counts: nothing the local gateway lets through would be refused when deployed.
pub const MAX_REQUEST_LINE_AND_HEADERS: usize = 10_240;

/// The `Retry-After` of the gateway's own 503s (an authorizer that cannot decide): long enough
/// for a blip of the database or the JWKS to pass, short enough not to stall a client. The
/// deployed `AUTHORIZER_FAILURE` gateway response in openapi.json says the same.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// Everything the local gateway serves with.
pub struct Gateway {
    pub routes: RouteTable,
    /// The Cognito authorizer of the superadmin-only routes (`CognitoAuth`).
    pub verifier: Verifier,
    /// The REQUEST authorizer of the tenant-scoped routes (`TenantAuth`).
    pub authorizer: Authorizer,
    /// The hosted functions by logical id.
    pub functions: std::collections::HashMap<&'static str, Arc<dyn shared::http::HttpFunction>>,
    /// The database and directory, for the migrations `local-api migrate` runs through here.
    pub stack: crate::Stack,
    /// The credential `POST /_local/migrations` demands (`crate::control`); `local-api serve`
    /// writes it to the token file.
    pub control_token: crate::control::ControlToken,
}

/// A local control action's JSON body (anything else reads as `null`, which the action refuses
/// by its own rules), or the 413 of one too large.
async fn control_body(body: axum::body::Body, request_id: &str) -> Result<Value, AxumResponse> {
    let Ok(bytes) = to_bytes(body, MAX_PAYLOAD).await else {
        return Err(gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large", request_id));
    };
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A local control action's report, as a 200.
fn report_response(report: &impl serde::Serialize) -> AxumResponse {
    AxumResponse::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(AxumBody::from(serde_json::to_string(report).expect("reports serialise")))
        .expect("a valid response")
}

/// Runs a migrations action in this process for `local-api migrate` (see `SERVE_LEASE`).
async fn local_migration(gateway: &Gateway, body: axum::body::Body, request_id: &str) -> AxumResponse {
    let event = match control_body(body, request_id).await {
        Ok(event) => event,
        Err(response) => return response,
    };
    match migrations::run_event(&gateway.stack.db, gateway.stack.directory.as_ref(), &event).await {
        Ok(report) => report_response(&report),
        Err(error) => {
            let (status, message) = migration_failure(&error);
            if status.is_server_error() {
                tracing::error!(error = %error, cause = ?std::error::Error::source(&error), "local migration failed");
            } else {
                tracing::info!(error = %error, "local migration refused");
            }
            gateway_error(status, &message, request_id)
        }
    }
}

/// Runs a saga sweep for `local-api onboarding sweep`: `{"olderThanSeconds": N}` (60 if
/// absent); 0 also takes the leases of every other owner, this process being the only one
/// alive locally.
async fn local_sweep(gateway: &Gateway, body: axum::body::Body, request_id: &str) -> AxumResponse {
    let request = match control_body(body, request_id).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let older_than = match request.get("olderThanSeconds") {
        None => crate::LOCAL_SWEEP_AFTER.as_secs(),
        Some(v) => match v.as_u64() {
            Some(n) => n,
            None => return gateway_error(StatusCode::BAD_REQUEST, "olderThanSeconds must be a whole number of seconds", request_id),
        },
    };
    match crate::sweep_all(&gateway.stack, std::time::Duration::from_secs(older_than)).await {
        Ok(report) => report_response(&report),
        Err(error) => {
            tracing::error!(%error, "local sweep failed");
            gateway_error(StatusCode::SERVICE_UNAVAILABLE, "The sweep could not run; the local API's log says why", request_id)
        }
    }
}

/// How a failed migrations action answers on the local route: the status, and a message of our
/// own. Only a refused event's text (which names what the event lacks, or the unknown tenant it
/// named) is shown as it is; a fault's cause goes to the log, never into the body.
fn migration_failure(error: &migrations::MigrationError) -> (StatusCode, String) {
    use migrations::MigrationError as E;
    match error {
        E::BadEvent(_) => (StatusCode::BAD_REQUEST, error.to_string()),
        // It names the id the caller gave, nothing else: `shred` of a typo writes nothing.
        E::UnknownTenant(_) => (StatusCode::NOT_FOUND, error.to_string()),
        E::LockBusy | E::LockLost(_) => (StatusCode::CONFLICT, "Another migrations run holds the lease; try again when it ends".into()),
        e if e.is_retryable() => (StatusCode::SERVICE_UNAVAILABLE, "The database is temporarily unavailable; try again shortly".into()),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "The migration failed; the local API's log says why".into()),
    }
}

fn gateway_error(status: StatusCode, message: &str, request_id: &str) -> AxumResponse {
    let body = json!({
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": message,
        "requestId": request_id,
    });
    let mut response = AxumResponse::builder()
        .status(status)
        .header("content-type", "application/json")
        // As the deployed gateway responses do (openapi.json): a browser can read the error.
        .header("access-control-allow-origin", admin_panel_origin())
        .header("vary", "Origin");
    // A 503 is worth retrying, and says when; no other status of the gateway's is.
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response =
            response.header("retry-after", UNAVAILABLE_RETRY_AFTER_SECS.to_string()).header("access-control-expose-headers", "Retry-After");
    }
    response.body(AxumBody::from(body.to_string())).expect("a valid response")
}

/// The admin panel's origin that the preflights name: the deployed stack's `AdminPanelOrigin`
/// parameter, which reaches the functions as `CORS_ALLOWED_ORIGIN` (template.yaml); locally the
/// same variable, or the local admin panel's address.
fn admin_panel_origin() -> String {
    std::env::var(CORS_ALLOWED_ORIGIN).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| DEFAULT_ADMIN_PANEL_ORIGIN.to_owned())
}

/// The variable naming the admin panel's origin.
pub const CORS_ALLOWED_ORIGIN: &str = "CORS_ALLOWED_ORIGIN";
/// The origin allowed when `CORS_ALLOWED_ORIGIN` is unset.
pub const DEFAULT_ADMIN_PANEL_ORIGIN: &str = "http://127.0.0.1:3000";

/// A mock's answer: 200, its headers, no body.
fn preflight_response(headers: Vec<(String, String)>, request_id: &str) -> AxumResponse {
    let mut response = AxumResponse::builder().status(StatusCode::OK);
    for (name, value) in &headers {
        response = response.header(name.as_str(), value.as_str());
    }
    // Only a malformed origin in the environment can make a header invalid.
    response.body(AxumBody::empty()).unwrap_or_else(|error| {
        tracing::error!(%error, "invalid preflight header (check CORS_ALLOWED_ORIGIN)");
        gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error", request_id)
    })
}

/// Flattens claims as the REST API Cognito authorizer does: every value a string, lists joined
/// by commas, `exp`/`iat` as API Gateway's date strings.
pub fn flatten_claims(claims: &Map<String, Value>) -> Map<String, Value> {
    claims
        .iter()
        .map(|(k, v)| {
            let s = match (k.as_str(), v) {
                ("exp" | "iat", Value::Number(n)) => n.as_i64().map(gateway_date).unwrap_or_else(|| n.to_string()),
                (_, Value::String(s)) => s.clone(),
                (_, Value::Array(items)) => {
                    items.iter().map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| i.to_string())).collect::<Vec<_>>().join(",")
                }
                (_, other) => other.to_string(),
            };
            (k.clone(), Value::String(s))
        })
        .collect()
}

/// `Fri Nov 28 19:22:00 UTC 2026`, the form API Gateway gives `exp` and `iat` in.
fn gateway_date(secs: i64) -> String {
    let format = time::macros::format_description!("[weekday repr:short] [month repr:short] [day] [hour]:[minute]:[second] UTC [year]");
    time::OffsetDateTime::from_unix_timestamp(secs).ok().and_then(|t| t.format(&format).ok()).unwrap_or_else(|| secs.to_string())
}

fn query_maps(query: Option<&str>) -> (Value, Value) {
    let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        multi.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    if multi.is_empty() {
        return (Value::Null, Value::Null);
    }
    let single: Map<String, Value> = multi.iter().map(|(k, v)| (k.clone(), Value::String(v.last().cloned().unwrap_or_default()))).collect();
    (Value::Object(single), json!(multi))
}

/// The REST API (payload 1.0) proxy event for a request.
#[allow(
    clippy::too_many_arguments,
    reason = "each argument is one part of the event, from a different part of the request; a struct of them would only restate this list"
)]
pub fn rest_event(
    method: &str,
    path: &str,
    resource: &str,
    query: Option<&str>,
    headers: &http::HeaderMap,
    params: &[(String, String)],
    body: &[u8],
    source_ip: &str,
    request_id: &str,
    authorizer: Value,
) -> Value {
    let mut single = Map::new();
    let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let value = value.to_str().unwrap_or_default().to_owned();
        single.insert(name.as_str().to_owned(), Value::String(value.clone()));
        multi.entry(name.as_str().to_owned()).or_default().push(value);
    }
    let (query_single, query_multi) = query_maps(query);
    let path_params = if params.is_empty() {
        Value::Null
    } else {
        Value::Object(params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
    };
    let (body, base64) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (Value::Null, false),
        Ok(text) => (Value::String(text.to_owned()), false),
        Err(_) => (Value::String(data_encoding::BASE64.encode(body)), true),
    };
    json!({
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": query_single,
        "multiValueQueryStringParameters": query_multi,
        "pathParameters": path_params,
        "stageVariables": null,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "resourceId": "local",
            "stage": "local",
            "requestId": request_id,
            "resourcePath": resource,
            "httpMethod": method,
            "path": format!("/local{path}"),
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": mongodb::bson::DateTime::now().timestamp_millis(),
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok())},
            "authorizer": authorizer,
        },
        "body": body,
        "isBase64Encoded": base64,
    })
}

/// Runs the operation's authorizer as API Gateway would: the authorizer part of the event, or
/// the gateway's own answer (401, or 5xx when the authorizer cannot decide).
async fn authorize(
    gateway: &Gateway,
    scheme: Option<&str>,
    headers: &http::HeaderMap,
    peer: &SocketAddr,
    request_id: &str,
) -> Result<Value, AxumResponse> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    match scheme {
        None => Ok(json!({})),
        Some(TENANT_AUTH) => {
            let meta = shared::http::RequestMeta {
                request_id: request_id.to_owned(),
                ip: peer.ip().to_string(),
                user_agent: header("user-agent").unwrap_or_default(),
            };
            let started = std::time::Instant::now();
            match gateway.authorizer.authorize(&header, &meta).await {
                Ok(Verdict::Allow { principal_id, mut context }) => {
                    context.insert("principalId".into(), Value::String(principal_id));
                    context.insert("integrationLatency".into(), json!(started.elapsed().as_millis() as u64));
                    Ok(Value::Object(context))
                }
                Ok(Verdict::Unauthorized(reason)) => {
                    tracing::info!(reason, "authorizer refused the call");
                    Err(gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized", request_id))
                }
                // It could not decide (the database or the JWKS unreachable): API Gateway's
                // AUTHORIZER_FAILURE, a 503 with Retry-After in openapi.json. Never an allow.
                Err(error) => {
                    tracing::error!(%error, "authorizer failure");
                    Err(gateway_error(StatusCode::SERVICE_UNAVAILABLE, "Authorizer unavailable", request_id))
                }
            }
        }
        Some(_) => match gateway.verifier.verify(header("authorization").as_deref()).await {
            Ok(claims) => Ok(json!({"claims": flatten_claims(&claims)})),
            // The keys could not be fetched: the authorizer is down, not the token bad.
            Err(error @ TokenError::Jwks(_)) => {
                tracing::error!(%error, "authorizer unavailable");
                Err(gateway_error(StatusCode::SERVICE_UNAVAILABLE, "Authorizer unavailable", request_id))
            }
            Err(error) => {
                tracing::info!(%error, "authorizer refused the token");
                Err(gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized", request_id))
            }
        },
    }
}

/// The security scheme of the one REQUEST authorizer (openapi.json).
pub const TENANT_AUTH: &str = "TenantAuth";

/// The size API Gateway's header quota counts: the request line, and every header's name and
/// value.
fn request_line_and_headers_len(parts: &http::request::Parts) -> usize {
    let line = parts.method.as_str().len() + 1 + parts.uri.to_string().len() + " HTTP/1.1".len();
    line + parts.headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum::<usize>()
}

/// Serves one request: route, authorize, invoke, answer. The request runs on a task of its
/// own, as a Lambda runs to completion whatever its client does: a client that hangs up drops
/// this future, and with it only the wait for the answer, never the handler's writes halfway.
pub async fn handle(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
) -> AxumResponse {
    let request_id = mongodb::bson::oid::ObjectId::new().to_hex();
    match tokio::spawn(serve_request(gateway, peer, req, request_id.clone())).await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(%error, "the request's task failed");
            gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error", &request_id)
        }
    }
}

async fn serve_request(gateway: Arc<Gateway>, peer: SocketAddr, req: axum::extract::Request, request_id: String) -> AxumResponse {
    let (parts, body) = req.into_parts();
    if request_line_and_headers_len(&parts) > MAX_REQUEST_LINE_AND_HEADERS {
        return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Too Long", &request_id);
    }
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    if method == "POST" && (path == crate::LOCAL_MIGRATIONS_PATH || path == crate::LOCAL_SWEEP_PATH) {
        // Any local process can reach loopback: only one holding the serving process's token
        // (readable by its user alone) may run an action.
        if !gateway.control_token.matches(parts.headers.get(crate::control::CONTROL_TOKEN_HEADER).map(|v| v.as_bytes())) {
            tracing::warn!(path, "a local control action without the control token was refused");
            return gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized", &request_id);
        }
        // For `local-api migrate` and `local-api onboarding sweep` only: never from a web page
        // (which sends an Origin, and cannot send JSON cross-origin without a preflight this
        // server does not answer).
        let json = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
        if parts.headers.contains_key("origin") || !json {
            return gateway_error(StatusCode::FORBIDDEN, "Local control actions are for the local-api commands only", &request_id);
        }
        if path == crate::LOCAL_SWEEP_PATH {
            return local_sweep(&gateway, body, &request_id).await;
        }
        return local_migration(&gateway, body, &request_id).await;
    }
    // A preflight is answered as API Gateway's mock integration does: no authorizer, no Lambda.
    let preflight = if method == "OPTIONS" { gateway.routes.preflight(&path, &admin_panel_origin()) } else { None };
    if let Some(headers) = preflight {
        return preflight_response(headers, &request_id);
    }
    let Some(matched) = gateway.routes.find(&method, &path) else {
        return gateway_error(StatusCode::NOT_FOUND, &format!("No route for {method} {path}"), &request_id);
    };
    let authorizer = match authorize(&gateway, matched.route.auth.as_deref(), &parts.headers, &peer, &request_id).await {
        Ok(authorizer) => authorizer,
        Err(response) => return response,
    };
    let Ok(body) = to_bytes(body, MAX_PAYLOAD).await else {
        return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large", &request_id);
    };
    let event = rest_event(
        &method,
        &path,
        &matched.route.resource,
        parts.uri.query(),
        &parts.headers,
        &matched.params,
        &body,
        &peer.ip().to_string(),
        &request_id,
        authorizer,
    );
    let request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(request) => request,
        Err(error) => {
            tracing::error!(%error, "could not build the Lambda event");
            return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error", &request_id);
        }
    };
    let Some(function) = gateway.functions.get(matched.route.function.as_str()) else {
        return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error", &request_id);
    };
    let response = function.handle(request).await;
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Empty => Vec::new(),
        Body::Text(t) => t.into_bytes(),
        Body::Binary(b) => b,
        _ => Vec::new(),
    };
    AxumResponse::from_parts(parts, AxumBody::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_migration_answers_its_own_message_never_its_cause() {
        use migrations::MigrationError as E;
        let unavailable = E::Db(shared::db::DbError::Unavailable(std::io::Error::other("server selection timeout: 127.0.0.1:9").into()));
        let (status, message) = migration_failure(&unavailable);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!message.contains("127.0.0.1"), "{message}");
        let (status, message) = migration_failure(&E::Undelivered("https://internal.example/secret-path".into()));
        assert!(!message.contains("secret-path"), "{status} {message}");
        assert_eq!(migration_failure(&E::LockBusy).0, StatusCode::CONFLICT);
        let (status, message) = migration_failure(&E::BadEvent("rotate-key and shred need a valid tenantId".into()));
        assert_eq!((status, message.contains("tenantId")), (StatusCode::BAD_REQUEST, true));
    }

    #[test]
    fn only_a_503_of_the_gateway_s_says_when_to_retry() {
        let unavailable = gateway_error(StatusCode::SERVICE_UNAVAILABLE, "Authorizer unavailable", "r");
        assert_eq!(unavailable.headers()["retry-after"], UNAVAILABLE_RETRY_AFTER_SECS.to_string().as_str());
        for status in [StatusCode::NOT_FOUND, StatusCode::PAYLOAD_TOO_LARGE, StatusCode::UNAUTHORIZED, StatusCode::INTERNAL_SERVER_ERROR] {
            assert!(gateway_error(status, "x", "r").headers().get("retry-after").is_none(), "{status}");
        }
    }

    #[test]
    fn claims_are_flattened_as_the_rest_authorizer_does() {
        let claims: Map<String, Value> = serde_json::from_value(json!({
            "sub": "u", "cognito:groups": ["admin", "superadmin"], "exp": 1_795_889_000, "auth_time": 1_795_888_000
        }))
        .unwrap();
        let flat = flatten_claims(&claims);
        assert_eq!(flat["cognito:groups"], "admin,superadmin");
        assert_eq!(flat["auth_time"], "1795888000");
        assert_eq!(flat["exp"], "Sat Nov 28 18:03:20 UTC 2026");
    }

    #[test]
    fn an_event_parses_as_a_rest_request_with_its_route() {
        let event = rest_event(
            "GET",
            "/tenants/tn_a",
            "/tenants/{tenantId}",
            Some("a=1&a=2"),
            &http::HeaderMap::new(),
            &[("tenantId".into(), "tn_a".into())],
            b"",
            "127.0.0.1",
            "req",
            json!({}),
        );
        let req = lambda_http::request::from_str(&event.to_string()).unwrap();
        assert_eq!(shared::http::route_key(&req).as_deref(), Some("GET /tenants/{tenantId}"));
    }
}
