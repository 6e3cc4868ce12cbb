//! Request plumbing shared by every HTTP context: typed input, the success envelope, and the
//! wrapper that gives each request its tracing span and turns errors into JSON.

use crate::error::{ApiError, FieldError};
use http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::future::Future;
use tracing::Instrument;

/// Largest request body accepted; API Gateway allows far more, we need far less.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Who sent a request, for logs and audit entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    pub request_id: String,
    pub ip: String,
    pub user_agent: String,
}

impl RequestMeta {
    /// API Gateway's request id (else Lambda's), the source IP and the user agent.
    pub fn from_request(req: &Request) -> Self {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (gateway_id, source_ip) = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV1(c)) => (c.request_id.clone(), c.identity.source_ip.clone()),
            Some(RequestContext::ApiGatewayV2(c)) => (c.request_id.clone(), c.http.source_ip.clone()),
            _ => (None, None),
        };
        let request_id = gateway_id
            .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()))
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| mongodb::bson::oid::ObjectId::new().to_hex());
        let ip = source_ip
            .or_else(|| header("x-forwarded-for").and_then(|v| v.split(',').next().map(|s| s.trim().to_owned())))
            .unwrap_or_default();
        Self { request_id, ip, user_agent: header("user-agent").unwrap_or_default() }
    }
}

/// Runs a handler inside a span carrying `requestId` (and, once admitted, `tenantId`), and
/// turns its error into the JSON envelope. Every HTTP Lambda's entry point goes through here.
pub async fn serve<F, Fut>(req: Request, handler: F) -> Response<Body>
where
    F: FnOnce(Request, RequestMeta) -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    let meta = RequestMeta::from_request(&req);
    let span = tracing::info_span!(
        "request",
        requestId = %meta.request_id,
        tenantId = tracing::field::Empty,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let request_id = meta.request_id.clone();
    async move {
        let response = match handler(req, meta).await {
            Ok(response) => response,
            Err(error) => error.into_response(&request_id),
        };
        tracing::info!(status = response.status().as_u16(), "request done");
        response
    }
    .instrument(span)
    .await
}

/// The route API Gateway matched: method and resource template (`GET /tenants/{tenantId}`).
pub fn route_key(req: &Request) -> Option<String> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(c)) => c.resource_path.as_ref().map(|r| format!("{} {r}", req.method())),
        Some(RequestContext::ApiGatewayV2(c)) => c.route_key.clone(),
        _ => None,
    }
}

/// Records the tenant on the current request span.
pub fn record_tenant(tenant: &str) {
    tracing::Span::current().record("tenantId", tenant);
}

/// The success envelope `{"success": true, "data": …}`.
pub fn respond<T: Serialize>(status: StatusCode, data: &T) -> Result<Response<Body>, ApiError> {
    let body = serde_json::to_string(&serde_json::json!({"success": true, "data": data})).map_err(ApiError::internal)?;
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(body))
        .map_err(ApiError::internal)
}

fn body_bytes(req: &Request) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(format!("The body exceeds {MAX_BODY_BYTES} bytes")));
    }
    Ok(bytes)
}

/// A required JSON body as `T` (which should deny unknown fields). Malformed JSON, a wrong
/// type or an unknown field is a 400 naming the field; an oversized body is a 413.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(req)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid("body", "a JSON body is required"));
    }
    parse_json(bytes)
}

/// An optional JSON body: absent or empty is `T::default()`.
pub fn optional_json_body<T: DeserializeOwned + Default>(req: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(req)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(bytes)
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path.is_empty() || path == "." { "body".to_owned() } else { path };
        // serde_json appends " at line L column C"; the position means nothing to a client.
        let message = e.inner().to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        ApiError::invalid(field, message)
    })?;
    de.end().map_err(|_| ApiError::invalid("body", "trailing characters after the JSON value"))?;
    Ok(value)
}

/// A path parameter, required.
pub fn path_param(req: &Request, name: &str) -> Result<String, ApiError> {
    req.path_parameters()
        .first(name)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid(name, "missing path parameter"))
}

/// Query parameters, each given at most once, from an allow-list.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Reads the query string; an unknown or repeated parameter is a 400.
    pub fn from_request(req: &Request, allowed: &[&str]) -> Result<Self, ApiError> {
        let params = req.query_string_parameters();
        let mut out = HashMap::new();
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (name, _) in params.iter() {
            if !seen.insert(name) {
                continue;
            }
            let values = params.all(name).unwrap_or_default();
            if !allowed.contains(&name) {
                errors.push(FieldError::new(name, "unknown query parameter"));
            } else if values.len() > 1 {
                errors.push(FieldError::new(name, "given more than once"));
            } else if let Some(v) = values.first() {
                out.insert(name.to_owned(), (*v).to_owned());
            }
        }
        if errors.is_empty() {
            Ok(Self(out))
        } else {
            Err(ApiError::invalid_fields(errors))
        }
    }

    /// A parameter's text, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// An integer parameter within `min..=max`, or `default` if absent.
    pub fn integer(&self, name: &str, min: u64, max: u64, default: u64) -> Result<u64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| ApiError::invalid(name, format!("must be an integer from {min} to {max}"))),
        }
    }
}
