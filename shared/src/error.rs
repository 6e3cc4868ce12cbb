//! The one HTTP error type, its JSON envelope and its single status mapping
//! (docs/ARCHITECTURE.md §7). Context errors convert into it; a client never sees a driver
//! message or a stack trace.

use crate::db::DbError;
use crate::ids::InvalidValue;
use http::StatusCode;
use lambda_http::{Body, Response};
use serde::Serialize;

/// One invalid input field, as listed in a 400.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    /// A field and what is wrong with it.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Collects field errors while a body is validated, so that one 400 lists all of them.
#[derive(Debug, Default)]
pub struct Check(Vec<FieldError>);

impl Check {
    /// Records `r`'s error against `name`, if any, and passes its value on.
    pub fn field<T, E: std::fmt::Display>(&mut self, name: &str, r: Result<T, E>) -> Option<T> {
        r.map_err(|e| self.0.push(FieldError::new(name, e.to_string()))).ok()
    }
    /// Whether no error has been recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The validated value, or a 400 listing every recorded error.
    pub fn done<T>(self, value: impl FnOnce() -> T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(ApiError::invalid_fields(self.0))
        }
    }
}

/// The `Retry-After` of every 503: the database's monitor looks again within a second of a
/// refused call, and KMS, Cognito or the vault are retried by their SDKs already.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// Every error an HTTP handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String, details: Vec<FieldError> },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A body that is not declared `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_secs: u64 },
    /// A 409 that will resolve on its own: another call holds the work's lease.
    #[error("{message}")]
    InProgress { message: String, retry_after_secs: u64 },
    /// A 422: the request is well formed but cannot be taken as it is (an idempotency key
    /// reused with another body).
    #[error("{0}")]
    Unprocessable(String),
    /// A recorded outcome answered again: a saga's failure, replayed to its caller's retry.
    #[error("{message}")]
    Replayed { status: u16, message: String },
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: &'a str,
    message: &'a str,
    #[serde(rename = "requestId")]
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a [FieldError]>,
}

impl ApiError {
    /// A 400 about one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let detail = FieldError::new(field, message);
        ApiError::BadRequest { message: format!("Invalid {}: {}", detail.field, detail.message), details: vec![detail] }
    }

    /// A 400 about several fields.
    pub fn invalid_fields(details: Vec<FieldError>) -> Self {
        ApiError::BadRequest { message: "The request is invalid".into(), details }
    }

    /// An opaque 500 around any cause (logged, never shown); a 503 when somewhere in its chain
    /// a service that may come back failed (the database, KMS, the vault, the user directory):
    /// an outage is never a 500, whichever context's error wraps it.
    pub fn internal(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        if transient_cause(&cause) {
            ApiError::Unavailable(Box::new(cause))
        } else {
            ApiError::Internal(Box::new(cause))
        }
    }

    /// The error as a saga records it (`shared::saga::Failure`), so that a replay answers it
    /// again: `code`, the status, what a client may read, and whether a retry may succeed (an
    /// outage's 503; a replay then starts the saga over instead).
    pub fn into_failure(self, code: &str) -> crate::saga::Failure {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, cause = %cause_chain(&self), "a saga failed");
        }
        let retryable = status == StatusCode::SERVICE_UNAVAILABLE;
        let code = match code {
            _ if retryable => "unavailable",
            "" if status.is_server_error() => "internal",
            "" => "refused",
            code => code,
        };
        crate::saga::Failure { code: code.to_owned(), message: self.public_message(), status: status.as_u16(), retryable }
    }

    /// The failure a saga keeps when an outage left its outcome unknown: a 503 a retry may get
    /// past.
    pub fn outage_failure() -> crate::saga::Failure {
        ApiError::Unavailable(Box::new(std::io::Error::other("the outcome is unknown"))).into_failure("")
    }

    /// The status: the only place errors become numbers.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InProgress { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Replayed { status, .. } => StatusCode::from_u16(*status).unwrap_or(StatusCode::CONFLICT),
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the tenant scope refused the operation (a query that could reach another tenant's
    /// data): a 500 to the client, and a scope refusal in the metrics.
    pub fn is_scope_refusal(&self) -> bool {
        let ApiError::Internal(cause) = self else { return false };
        cause.downcast_ref::<DbError>().is_some_and(|e| matches!(e, DbError::Refused(_)))
    }

    /// What the client may read.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Unavailable(_) => "The service is temporarily unavailable; try again shortly".into(),
            ApiError::Internal(_) => "An unexpected error occurred".into(),
            other => other.to_string(),
        }
    }

    /// The JSON response; server-side failures are logged here with their cause chain.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, cause = %cause_chain(&self), "request failed");
        } else {
            tracing::info!(status = status.as_u16(), error = %self, "request refused");
        }
        let message = self.public_message();
        let details = match &self {
            ApiError::BadRequest { details, .. } if !details.is_empty() => Some(details.as_slice()),
            _ => None,
        };
        let body = serde_json::to_string(&Envelope {
            error: status.canonical_reason().unwrap_or("Error"),
            message: &message,
            request_id,
            details,
        })
        .expect("the error envelope always serialises");
        let mut builder = Response::builder().status(status).header("content-type", "application/json");
        // Every 503 says when to come back, whatever made it; a 4xx other than a 429 never does.
        if let ApiError::TooManyRequests { retry_after_secs, .. } | ApiError::InProgress { retry_after_secs, .. } = &self {
            builder = builder.header("retry-after", retry_after_secs.to_string());
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            builder = builder.header("retry-after", UNAVAILABLE_RETRY_AFTER_SECS.to_string());
        }
        builder.body(Body::Text(body)).expect("a valid response")
    }
}

/// Whether `error` or one of its sources is a failure that a retry may get past.
fn transient_cause(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        let transient = e.downcast_ref::<DbError>().is_some_and(DbError::is_retryable)
            || e.downcast_ref::<crate::pii::PiiError>().is_some_and(crate::pii::PiiError::is_unavailable)
            || e.downcast_ref::<crate::directory::DirectoryError>()
                .is_some_and(|d| matches!(d, crate::directory::DirectoryError::Unavailable(_)));
        if transient {
            return true;
        }
        current = e.source();
    }
    false
}

fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut chain = Vec::new();
    let mut current = error.source();
    while let Some(cause) = current {
        chain.push(cause.to_string());
        current = cause.source();
    }
    chain.join(": ")
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(_) => ApiError::Unavailable(Box::new(e)),
            // KMS or the vault down, or a tenant whose keys the migration has not made yet:
            // nothing was written, and a retry can succeed.
            DbError::Pii(ref p) if p.is_unavailable() || matches!(p, crate::pii::PiiError::NoKeys(_)) => ApiError::Unavailable(Box::new(e)),
            DbError::Files(ref f) if f.is_unavailable() => ApiError::Unavailable(Box::new(e)),
            DbError::Duplicate => ApiError::Conflict("The resource already exists".into()),
            other => ApiError::internal(other),
        }
    }
}

impl From<InvalidValue> for ApiError {
    fn from(e: InvalidValue) -> Self {
        ApiError::BadRequest { message: e.0, details: vec![] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Response<Body>) -> serde_json::Value {
        match r.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => panic!("text body expected"),
        }
    }

    #[test]
    fn a_bad_request_carries_field_details_and_the_request_id() {
        let r = ApiError::invalid("name", "must not be empty").into_response("req-1");
        assert_eq!(r.status(), 400);
        let b = body(&r);
        assert_eq!(b["error"], "Bad Request");
        assert_eq!(b["requestId"], "req-1");
        assert_eq!(b["details"][0]["field"], "name");
    }

    #[test]
    fn an_internal_error_hides_its_cause() {
        let cause = std::io::Error::other("driver said: secret-host:27017 refused");
        let r = ApiError::internal(cause).into_response("req-2");
        assert_eq!(r.status(), 500);
        let text = body(&r).to_string();
        assert!(!text.contains("secret-host"), "{text}");
        assert!(body(&r).get("details").is_none());
    }

    #[test]
    fn too_many_requests_sets_retry_after() {
        let r = ApiError::TooManyRequests { message: "quota".into(), retry_after_secs: 42 }.into_response("r");
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "42");
    }

    #[test]
    fn an_unavailable_database_is_a_503() {
        let e = ApiError::from(DbError::Unavailable(mongodb::error::Error::custom("down")));
        assert_eq!(e.status(), 503);
    }

    #[test]
    fn an_outage_wrapped_in_a_context_s_error_is_a_503_not_a_500() {
        #[derive(Debug, thiserror::Error)]
        #[error("creation failed at a step")]
        struct Step(#[source] DbError);
        let wrapped = ApiError::internal(Step(DbError::Unavailable(mongodb::error::Error::custom("down"))));
        assert_eq!(wrapped.status(), 503);
        let kms = ApiError::internal(Step(DbError::Pii(crate::pii::PiiError::Kms("timeout".into()))));
        assert_eq!(kms.status(), 503);
        let permanent = ApiError::internal(Step(DbError::Duplicate));
        assert_eq!(permanent.status(), 500);
    }

    #[test]
    fn every_503_carries_retry_after_and_a_404_or_413_does_not() {
        let unavailable = ApiError::from(DbError::Unavailable(mongodb::error::Error::custom("down"))).into_response("r");
        assert_eq!(unavailable.status(), 503);
        assert_eq!(unavailable.headers()["retry-after"], UNAVAILABLE_RETRY_AFTER_SECS.to_string());
        let kms = ApiError::from(DbError::Pii(crate::pii::PiiError::Kms("throttled".into()))).into_response("r");
        assert_eq!(kms.status(), 503);
        assert!(kms.headers().contains_key("retry-after"));
        for refusal in
            [ApiError::NotFound("no".into()), ApiError::PayloadTooLarge("big".into()), ApiError::internal(std::io::Error::other("x"))]
        {
            let response = refusal.into_response("r");
            assert!(!response.headers().contains_key("retry-after"), "{}", response.status());
        }
    }
}
