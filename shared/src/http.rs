//! Request plumbing shared by every HTTP context: typed input, the success envelope, and the
//! wrapper that gives each request its tracing span and turns errors into JSON.

use crate::admission::{Quota, SuperadminContext, TenantContext};
use crate::db::Db;
use crate::error::{ApiError, FieldError};
use crate::identity::Identity;
use crate::ids::{InvalidValue, TenantId};
use http::StatusCode;
use lambda_http::request::RequestContext;
pub use lambda_http::Request;
use lambda_http::{Body, RequestExt, Response};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::future::Future;
use tracing::Instrument;

pub use crate::request::RequestMeta;

/// Largest request body accepted; API Gateway allows far more, we need far less.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a context's handler is given, built once per execution environment by its `main`: the
/// database and, for the contexts that call the user pool, the directory. The others keep
/// `Dir = ()`: they build no directory and link no Cognito SDK.
#[derive(Debug, Clone)]
pub struct Deps<Dir = ()> {
    pub db: Db,
    pub directory: Dir,
    /// The deployment's switches (`crate::config::Features`): all off unless turned on.
    pub features: crate::config::Features,
}

impl Deps {
    /// A context's dependencies without a directory, every switch off.
    pub fn new(db: Db) -> Self {
        Self { db, directory: (), features: Default::default() }
    }
}

impl<Dir> Deps<Dir> {
    /// The same database and switches, with `directory`.
    pub fn with_directory<D>(self, directory: D) -> Deps<D> {
        Deps { db: self.db, directory, features: self.features }
    }

    /// The same, with `features`.
    pub fn with_features(self, features: crate::config::Features) -> Self {
        Self { features, ..self }
    }
}

/// A context's Lambda handler: each context crate exports one as `handle`, beside its
/// `LOGICAL_ID`. A context without a directory is generic over `Dir`, so that a host holding
/// one lists every context with the same type.
pub type Handler<Dir> = for<'a> fn(&'a Deps<Dir>, Request) -> BoxedResponse<'a>;

/// What a [`Handler`] returns.
pub type BoxedResponse<'a> = futures_util::future::BoxFuture<'a, Response<Body>>;

/// Serves a context's Lambda: the one loop every HTTP binary's `main` ends in.
pub async fn run<Dir: Send + Sync + 'static>(deps: Deps<Dir>, handler: Handler<Dir>) -> Result<(), lambda_http::Error> {
    let deps = std::sync::Arc::new(deps);
    lambda_http::run(lambda_http::service_fn(move |req: Request| {
        let deps = deps.clone();
        async move { Ok::<_, lambda_http::Error>(handler(&deps, req).await) }
    }))
    .await
}

/// What a context's binary that also takes another kind of event (a schedule) does with one.
pub type EventHandler<Dir> =
    for<'a> fn(&'a Deps<Dir>, serde_json::Value) -> futures_util::future::BoxFuture<'a, Result<serde_json::Value, lambda_http::Error>>;

/// Serves a context's Lambda that takes API Gateway's requests and the events `function`
/// declares (its schedule): an event of the declared kind goes to `on_event`, any other is read
/// as API Gateway's REST proxy event and answered as [`run`] would.
pub async fn run_with_events<Dir: Send + Sync + 'static>(
    deps: Deps<Dir>,
    handler: Handler<Dir>,
    function: crate::event_kind::EventFunction,
    on_event: EventHandler<Dir>,
) -> Result<(), lambda_http::Error> {
    use lambda_http::lambda_runtime::{self, LambdaEvent};
    let deps = std::sync::Arc::new(deps);
    lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let deps = deps.clone();
        async move {
            if function.takes(&event.payload) {
                return on_event(&deps, event.payload).await;
            }
            let request = lambda_http::request::from_str(&event.payload.to_string())?;
            Ok(proxy_response(handler(&deps, request).await)?)
        }
    }))
    .await
}

/// A response as API Gateway's REST proxy integration takes it (what `lambda_http` writes).
fn proxy_response(response: Response<Body>) -> Result<serde_json::Value, serde_json::Error> {
    let (parts, body) = response.into_parts();
    let mut out = lambda_http::aws_lambda_events::apigw::ApiGatewayProxyResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.multi_value_headers = parts.headers;
    out.is_base64_encoded = matches!(body, Body::Binary(_));
    out.body = match body {
        Body::Empty => None,
        other => Some(other),
    };
    serde_json::to_value(out)
}

/// An HTTP context's Lambda as a host sees it (the local API, the events test): the logical id
/// that its integrations name in openapi.json, and its handler. Hosts keep one list of them.
pub trait HttpFunction: Send + Sync {
    /// The function's logical id in template.yaml (`TenantsFunction`).
    fn logical_id(&self) -> &'static str;
    /// Handles one API Gateway request.
    fn handle(&self, req: Request) -> BoxedResponse<'_>;
}

/// A context hosted in-process: its handler with the dependencies it was given.
#[derive(Debug, Clone)]
pub struct Hosted<Dir> {
    pub logical_id: &'static str,
    pub deps: Deps<Dir>,
    pub handler: Handler<Dir>,
}

impl<Dir> Hosted<Dir> {
    /// `handler`, named `logical_id`, serving with `deps`.
    pub fn new(logical_id: &'static str, deps: Deps<Dir>, handler: Handler<Dir>) -> Self {
        Self { logical_id, deps, handler }
    }
}

impl<Dir: Send + Sync> HttpFunction for Hosted<Dir> {
    fn logical_id(&self) -> &'static str {
        self.logical_id
    }

    fn handle(&self, req: Request) -> BoxedResponse<'_> {
        (self.handler)(&self.deps, req)
    }
}

/// Runs a handler inside a span carrying `requestId` (and, once admitted, `tenantId`), and
/// turns its error into the JSON envelope. Every HTTP Lambda's entry point goes through here,
/// so this is also where every 403 of a caller with a tenant is audited in that tenant's log
/// (on a budget per actor, see [`crate::audit::record_refusal`]).
pub async fn serve<F, Fut>(db: &Db, req: Request, handler: F) -> Response<Body>
where
    F: FnOnce(Request, RequestMeta) -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    let meta = RequestMeta::from_request(&req);
    let caller = Identity::from_request(&req).ok();
    let named_tenant = req.path_parameters().first("tenantId").map(str::to_owned);
    let route = route_key(&req).unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        requestId = %meta.request_id,
        tenantId = tracing::field::Empty,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let request_id = meta.request_id.clone();
    let started = std::time::Instant::now();
    async move {
        let own_tenant = caller.as_ref().filter(|i| !i.is_superadmin()).and_then(|i| i.tenant().map(|t| t.as_str().to_owned()));
        let cross_tenant = matches!((&own_tenant, &named_tenant), (Some(own), Some(named)) if own != named);
        let mut scope_refusal = false;
        // A write's body is JSON or nothing, on every route, those that read none included.
        let outcome = match json_or_no_body(&req) {
            Ok(()) => handler(req, meta.clone()).await,
            Err(unsupported) => Err(unsupported),
        };
        let mut response = match outcome {
            Ok(response) => response,
            Err(error) => {
                if error.status() == 403 {
                    scope_refusal = cross_tenant;
                    audit_refusal(db, &meta, caller.as_ref(), named_tenant.as_deref(), &route, &error).await;
                }
                scope_refusal |= error.is_scope_refusal();
                error.into_response(&request_id)
            }
        };
        add_cors_headers(&mut response);
        let status = response.status().as_u16();
        tracing::info!(status, "request done");
        crate::metrics::request(&crate::metrics::RequestOutcome {
            route: &route,
            status,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            request_id: &request_id,
            tenant: own_tenant.as_deref(),
            scope_refusal,
        });
        response
    }
    .instrument(span)
    .await
}

/// The admin panel's origin (`CORS_ALLOWED_ORIGIN`, a template parameter), read once. Lambda
/// proxy responses carry their CORS headers themselves: API Gateway adds none to them.
static CORS_ORIGIN: std::sync::LazyLock<Option<http::HeaderValue>> = std::sync::LazyLock::new(|| {
    std::env::var("CORS_ALLOWED_ORIGIN").ok().filter(|o| !o.trim().is_empty()).and_then(|o| http::HeaderValue::from_str(o.trim()).ok())
});

/// The one configured origin, never a wildcard and never with credentials: the API takes its
/// credentials in headers (a bearer token, a key), which need no cookies. `Retry-After` is
/// exposed so that a browser client can honour a 429.
fn add_cors_headers(response: &mut Response<Body>) {
    let Some(origin) = CORS_ORIGIN.as_ref() else { return };
    let headers = response.headers_mut();
    headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, http::HeaderValue::from_static("Retry-After"));
    headers.append(http::header::VARY, http::HeaderValue::from_static("Origin"));
}

/// Audits a 403 in the caller's own tenant: `access.cross-tenant` when the request named
/// another tenant, `access.denied` otherwise. A superadmin's refusals, and callers without a
/// tenant, have no tenant log to go to.
async fn audit_refusal(db: &Db, meta: &RequestMeta, caller: Option<&Identity>, named: Option<&str>, route: &str, error: &ApiError) {
    use crate::audit::{record_refusal, Action, AuditEvent};
    let Some(identity) = caller.filter(|i| !i.is_superadmin()) else { return };
    let Some(own) = identity.tenant() else { return };
    let cross = named.is_some_and(|n| n != own.as_str());
    let action = if cross { Action::AccessCrossTenant } else { Action::AccessDenied };
    let mut details = mongodb::bson::doc! {"route": route, "reason": error.to_string(), "actingAs": crate::audit::acting_as(identity)};
    if let Some(named) = named.filter(|_| cross) {
        details.insert("namedTenantId", named);
    }
    let event = AuditEvent { action, resource_id: None, details };
    // An erased person's token is refused until it expires: its refusals keep no address or
    // user agent of theirs (docs/ARCHITECTURE.md §22).
    if crate::audit::erased_actor(db, own, identity).await {
        let blank = RequestMeta { ip: String::new(), user_agent: String::new(), ..meta.clone() };
        return record_refusal(db, own, &blank, Some(identity.actor_id()), event).await;
    }
    record_refusal(db, own, meta, Some(identity.actor_id()), event).await;
}

/// The route API Gateway matched: method and resource template (`GET /tenants/{tenantId}`).
pub fn route_key(req: &Request) -> Option<String> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(c)) => c.resource_path.as_ref().map(|r| format!("{} {r}", req.method())),
        Some(RequestContext::ApiGatewayV2(c)) => c.route_key.clone(),
        _ => None,
    }
}

/// The admission step for tenant-scoped routes: every such handler starts here. It extracts
/// the identity, admits the caller to `target` (the tenant the request names, if any) or to its
/// own tenant (docs/ARCHITECTURE.md §12), and records the tenant on the request span.
pub async fn admit(db: &Db, req: &Request, target: Option<&TenantId>) -> Result<TenantContext, ApiError> {
    admit_with(db, req, target, Quota::Enforce).await
}

/// The same admission step, for the one route a tenant over its monthly quota may still call:
/// the one that shows it its limits (the call is then not counted).
pub async fn admit_over_quota(db: &Db, req: &Request, target: Option<&TenantId>) -> Result<TenantContext, ApiError> {
    admit_with(db, req, target, Quota::ReadLimits).await
}

async fn admit_with(db: &Db, req: &Request, target: Option<&TenantId>, quota: Quota) -> Result<TenantContext, ApiError> {
    let identity = Identity::from_request(req)?;
    record_tenant(target.or(identity.tenant()));
    TenantContext::admit(db, &identity, target, quota).await
}

/// The admission step for superadmin-only routes: the caller must be a superadmin. `target` is
/// the tenant the route acts on, if it names one, recorded on the request span.
pub fn admit_superadmin(req: &Request, target: Option<&TenantId>) -> Result<SuperadminContext, ApiError> {
    let identity = Identity::from_request(req)?;
    record_tenant(target);
    SuperadminContext::require(&identity)
}

/// The one place a tenant is put on the request span (handlers never do it themselves).
fn record_tenant(tenant: Option<&TenantId>) {
    if let Some(tenant) = tenant {
        tracing::Span::current().record("tenantId", tenant.as_str());
    }
}

/// A path parameter parsed into its typed id: a malformed id is a 400 naming the parameter.
pub fn path_id<T: TryFrom<String, Error = InvalidValue>>(req: &Request, name: &str) -> Result<T, ApiError> {
    T::try_from(path_param(req, name)?).map_err(|e| ApiError::invalid(name, e.0))
}

/// The request's `Idempotency-Key` and whom it belongs to (docs/ARCHITECTURE.md §21): the
/// caller's tenant and `sub`, `apikey:<id>`, or the platform and the superadmin's `sub`. A
/// malformed key is a 400; a missing one is a 400 only where `required`. Read before the body,
/// so that a keyless request is refused before anything else is looked at.
pub fn idempotency(
    req: &Request,
    identity: &Identity,
    required: bool,
) -> Result<Option<(crate::saga::Caller, crate::saga::IdempotencyKey)>, ApiError> {
    use crate::saga::Caller;
    let Some(key) = idempotency_key(req, required)? else { return Ok(None) };
    let caller = match &identity.principal {
        crate::identity::Principal::User { sub, .. } => {
            Caller::Person { tenant: if identity.is_superadmin() { None } else { identity.tenant().cloned() }, sub: sub.clone() }
        }
        crate::identity::Principal::ApiKey { key_id, .. } => Caller::ApiKey(key_id.clone()),
    };
    Ok(Some((caller, key)))
}

/// The request's `Idempotency-Key` alone (a caller with no identity: sign-up, keyed by its
/// source). Malformed, more than one, or missing where `required`: a 400.
pub fn idempotency_key(req: &Request, required: bool) -> Result<Option<crate::saga::IdempotencyKey>, ApiError> {
    use crate::saga::{IdempotencyKey, IDEMPOTENCY_KEY_HEADER};
    let mut values = req.headers().get_all(IDEMPOTENCY_KEY_HEADER).iter();
    match (values.next(), values.next()) {
        (None, _) if required => Err(ApiError::invalid("Idempotency-Key", "this request requires an Idempotency-Key header")),
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(ApiError::invalid("Idempotency-Key", "give one Idempotency-Key header")),
        (Some(v), None) => {
            let text = v.to_str().map_err(|_| ApiError::invalid("Idempotency-Key", "must be printable ASCII"))?;
            Ok(Some(IdempotencyKey::parse(text).map_err(|e| ApiError::invalid("Idempotency-Key", e.0))?))
        }
    }
}

/// A path parameter that must be an ObjectId: a malformed one is a 400, never a 500.
pub fn path_object_id(req: &Request, name: &str) -> Result<mongodb::bson::oid::ObjectId, ApiError> {
    crate::ids::parse_object_id(&path_param(req, name)?).map_err(|e| ApiError::invalid(name, e.0))
}

/// Paging facts of a list, as every list response carries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pagination {
    pub page: u64,
    pub limit: u64,
    pub total: u64,
    pub pages: u64,
}

impl Pagination {
    /// Paging facts for `total` items in pages of `limit`.
    pub fn new(page: u64, limit: u64, total: u64) -> Self {
        Self { page, limit, total, pages: total.div_ceil(limit.max(1)) }
    }
}

/// The largest page a list returns.
pub const MAX_PAGE_SIZE: u64 = 100;

/// A page of a list: `{"success": true, "data": {"<key>": [...], "pagination": {...}}}`.
pub fn respond_list<T: Serialize>(key: &str, items: &[T], pagination: &Pagination) -> Result<Response<Body>, ApiError> {
    let mut data = serde_json::Map::new();
    data.insert(key.to_owned(), serde_json::to_value(items).map_err(ApiError::internal)?);
    data.insert("pagination".to_owned(), serde_json::to_value(pagination).map_err(ApiError::internal)?);
    respond_one(StatusCode::OK, &data)
}

/// One item in the success envelope: `{"success": true, "data": item}`.
pub fn respond_one<T: Serialize>(status: StatusCode, data: &T) -> Result<Response<Body>, ApiError> {
    let body = serde_json::to_string(&serde_json::json!({"success": true, "data": data})).map_err(ApiError::internal)?;
    Response::builder().status(status).header("content-type", "application/json").body(Body::Text(body)).map_err(ApiError::internal)
}

fn body_bytes(req: &Request) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(format!("The body exceeds {MAX_BODY_BYTES} bytes")));
    }
    Ok(bytes)
}

/// A required JSON body as `T` (which should deny unknown fields). Malformed JSON, a wrong
/// type or an unknown field is a 400 naming the field; an oversized body is a 413; a body not
/// declared `application/json` is a 415.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(req)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid("body", "a JSON body is required"));
    }
    require_json(req)?;
    parse_json(bytes)
}

/// An optional JSON body: absent or empty is `T::default()`, whatever its content type (a
/// revocation sent with no body and no header is valid); any other body must be JSON, as for
/// [`json_body`].
pub fn optional_json_body<T: DeserializeOwned + Default>(req: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(req)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    require_json(req)?;
    parse_json(bytes)
}

/// A route that takes no body: none, or an empty JSON object (what many clients send with a
/// bare `POST`). Anything else is a 400, so that a client that believes it sent options learns
/// that none were read.
pub fn no_body(req: &Request) -> Result<(), ApiError> {
    let bytes = body_bytes(req)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    require_json(req)?;
    match parse_json::<serde_json::Value>(bytes)? {
        serde_json::Value::Object(fields) if fields.is_empty() => Ok(()),
        _ => Err(ApiError::invalid("body", "this route takes no body")),
    }
}

/// A write (`POST`, `PUT`, `PATCH`, `DELETE`) carries a JSON body or none: anything else is a
/// 415 before the handler runs, so a route that reads no body (a revocation) refuses a text
/// body just as one that reads it does.
fn json_or_no_body(req: &Request) -> Result<(), ApiError> {
    let write = matches!(*req.method(), http::Method::POST | http::Method::PUT | http::Method::PATCH | http::Method::DELETE);
    let bytes: &[u8] = req.body().as_ref();
    if !write || bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    require_json(req)
}

/// A body must be declared `application/json` (parameters such as `charset` allowed, case
/// ignored): a form or text body that happens to parse as JSON is still refused, so that a
/// browser's form post can never act as a JSON client.
fn require_json(req: &Request) -> Result<(), ApiError> {
    let declared = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = declared.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType("The body must be JSON, sent with Content-Type: application/json".into()))
    }
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
    req.path_parameters().first(name).map(str::to_owned).ok_or_else(|| ApiError::invalid(name, "missing path parameter"))
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

    /// `page` (from 1) and `limit` (1 to [`MAX_PAGE_SIZE`], default 10), as every list takes them.
    pub fn paging(&self) -> Result<(u64, u64), ApiError> {
        Ok((self.integer("page", 1, 100_000, 1)?, self.integer("limit", 1, MAX_PAGE_SIZE, 10)?))
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

#[cfg(test)]
mod body_tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    struct Named {
        #[allow(dead_code)]
        name: Option<String>,
    }

    fn request(content_type: Option<&str>, body: &str) -> Request {
        let mut builder = http::Request::builder().method("POST").uri("/roles");
        if let Some(t) = content_type {
            builder = builder.header("content-type", t);
        }
        builder.body(Body::from(body.to_owned())).unwrap()
    }

    #[test]
    fn a_body_not_declared_json_is_a_415_and_json_with_parameters_or_any_case_is_accepted() {
        for declared in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/jsonp"), None] {
            let error = json_body::<Named>(&request(declared, r#"{"name":"x"}"#)).unwrap_err();
            assert_eq!(error.status(), 415, "{declared:?}");
            assert_eq!(optional_json_body::<Named>(&request(declared, r#"{"name":"x"}"#)).unwrap_err().status(), 415);
        }
        for declared in ["application/json", "Application/JSON; charset=UTF-8", "application/json ;charset=utf-8"] {
            assert!(json_body::<Named>(&request(Some(declared), r#"{"name":"x"}"#)).is_ok(), "{declared}");
        }
    }

    #[test]
    fn an_empty_body_without_a_content_type_stays_valid_where_the_body_is_optional() {
        assert!(optional_json_body::<Named>(&request(None, "")).is_ok());
        assert!(optional_json_body::<Named>(&request(Some("text/plain"), "")).is_ok());
        assert_eq!(json_body::<Named>(&request(None, "")).unwrap_err().status(), 400);
    }
}
