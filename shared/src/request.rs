//! Who sent a request: the facts logs and audit entries carry. Below both `http` and `audit`,
//! which use it.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

/// Who sent a request, for logs and audit entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    pub request_id: String,
    pub ip: String,
    pub user_agent: String,
}

impl RequestMeta {
    /// API Gateway's request id (else Lambda's), the source IP (`requestContext.identity.sourceIp`,
    /// never a header) and the user agent. The audit writer bounds what it stores of them.
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
        // The gateway's own view of the peer only: `X-Forwarded-For` is whatever the caller
        // wrote, and refusal budgets are kept per source address (docs/ARCHITECTURE.md §13).
        let ip = source_ip.unwrap_or_default();
        Self { request_id, ip, user_agent: header("user-agent").unwrap_or_default() }
    }
}
