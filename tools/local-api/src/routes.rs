//! The route table, read from the OpenAPI document that `template.yaml` imports: the same
//! paths, methods, security and target function as API Gateway. The CORS preflights (OPTIONS)
//! are mock integrations that API Gateway answers itself: the table keeps them apart from the
//! Lambda routes, and the gateway answers them from their documented headers.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// One operation of the document.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: String,
    pub resource: String,
    /// The logical id of the function the integration invokes (`TenantsFunction`).
    pub function: String,
    /// The security scheme the operation names (`CognitoAuth`, `TenantAuth`), if any.
    pub auth: Option<String>,
    segments: Vec<Segment>,
}

/// A matched route and its path parameters.
#[derive(Debug, Clone)]
pub struct Matched<'a> {
    pub route: &'a Route,
    pub params: Vec<(String, String)>,
}

/// A `mock` integration: API Gateway answers it without a Lambda (the CORS preflights).
#[derive(Debug, Clone)]
pub struct MockRoute {
    pub method: String,
    pub resource: String,
    /// The response headers, API Gateway's quotes removed; `${AdminPanelOrigin}` is filled in
    /// when answering, since the origin is a stack parameter.
    headers: Vec<(String, String)>,
    segments: Vec<Segment>,
}

/// Every route of the document.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// The operations integrated with a Lambda function.
    routes: Vec<Route>,
    /// The operations API Gateway answers itself.
    mocks: Vec<MockRoute>,
}

/// The one stack parameter a mock's headers may name (template.yaml).
pub const ADMIN_PANEL_ORIGIN: &str = "${AdminPanelOrigin}";

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

/// The function a `x-amazon-apigateway-integration` URI points at: the logical id inside
/// `${…Function.Arn}` of its `Fn::Sub`.
fn logical_id(integration: &Value) -> Option<&str> {
    let uri = integration.get("uri")?;
    let sub = uri.get("Fn::Sub").and_then(Value::as_str).or_else(|| uri.as_str())?;
    let start = sub.find("functions/${")? + "functions/${".len();
    let rest = &sub[start..];
    rest.split(".Arn}").next()
}

fn segments(path: &str) -> Vec<Segment> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => Segment::Param(name.to_owned()),
            None => Segment::Literal(s.to_owned()),
        })
        .collect()
}

/// The path parameters if `segments` match `parts`, else `None`.
fn bind(segments: &[Segment], parts: &[&str]) -> Option<Vec<(String, String)>> {
    if segments.len() != parts.len() {
        return None;
    }
    let mut params = Vec::new();
    for (segment, part) in segments.iter().zip(parts) {
        match segment {
            Segment::Literal(l) if l == part => {}
            Segment::Literal(_) => return None,
            Segment::Param(name) => params.push((name.clone(), (*part).to_owned())),
        }
    }
    Some(params)
}

fn parts(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// A mock integration's response headers (`method.response.header.X` → `'value'`), as plain
/// strings. A value is a quoted literal or a `Fn::Sub` of one naming only `AdminPanelOrigin`:
/// anything else is a stack value the local gateway cannot know, so the table refuses it.
fn mock_headers(integration: &Value, at: &str) -> Result<Vec<(String, String)>, String> {
    let parameters = integration
        .pointer("/responses/default/responseParameters")
        .and_then(Value::as_object)
        .ok_or(format!("{at}: a mock integration without responses.default.responseParameters"))?;
    let mut headers = Vec::new();
    for (key, value) in parameters {
        let name = key.strip_prefix("method.response.header.").ok_or(format!("{at}: {key} is not a response header"))?;
        let text = value.get("Fn::Sub").unwrap_or(value).as_str().ok_or(format!("{at}: {key} is not a string"))?;
        if text.replace(ADMIN_PANEL_ORIGIN, "").contains("${") {
            return Err(format!("{at}: {key} names a stack value other than {ADMIN_PANEL_ORIGIN}"));
        }
        let literal = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')).ok_or(format!("{at}: {key} is not a quoted literal"))?;
        headers.push((name.to_owned(), literal.to_owned()));
    }
    Ok(headers)
}

impl RouteTable {
    /// Reads the routes. Every operation must name one of the `hosted` functions.
    pub fn from_openapi(doc: &Value, hosted: &[&str]) -> Result<Self, String> {
        // The first scheme of the first requirement: API Gateway allows one authorizer a method.
        let scheme = |list: &Value| -> Option<String> { list.as_array()?.first()?.as_object()?.keys().next().cloned() };
        let global_security = doc.get("security").and_then(scheme);
        let paths = doc.get("paths").and_then(Value::as_object).ok_or("the document has no paths")?;
        let mut routes = Vec::new();
        let mut mocks = Vec::new();
        for (path, item) in paths {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let integration = op.get("x-amazon-apigateway-integration").ok_or(format!("{method} {path}: no integration"))?;
                if integration.get("type").and_then(Value::as_str) == Some("mock") {
                    // Only the CORS preflights are answered by API Gateway itself.
                    if method != "options" {
                        return Err(format!("{method} {path}: only OPTIONS may be a mock integration"));
                    }
                    let headers = mock_headers(integration, &format!("{method} {path}"))?;
                    mocks.push(MockRoute {
                        method: method.to_ascii_uppercase(),
                        resource: path.clone(),
                        headers,
                        segments: segments(path),
                    });
                    continue;
                }
                let id = logical_id(integration).ok_or(format!("{method} {path}: no Lambda function in its integration"))?;
                if !hosted.contains(&id) {
                    return Err(format!("{method} {path}: {id} is not hosted locally"));
                }
                let function = id.to_owned();
                let auth = match op.get("security") {
                    Some(list) => scheme(list),
                    None => global_security.clone(),
                };
                routes.push(Route {
                    method: method.to_ascii_uppercase(),
                    resource: path.clone(),
                    function,
                    auth,
                    segments: segments(path),
                });
            }
        }
        Ok(Self { routes, mocks })
    }

    /// The Lambda route for a method and a concrete path, preferring literal segments over
    /// parameters. Mock routes are never returned: see `preflight`.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        let parts = parts(path);
        self.routes
            .iter()
            .filter(|r| r.method == method)
            .filter_map(|route| bind(&route.segments, &parts).map(|params| Matched { route, params }))
            .min_by_key(|m| m.params.len())
    }

    /// The headers of the CORS preflight (the OPTIONS mock) of a concrete path, with the admin
    /// panel's origin filled in; `None` if no mock answers that path.
    pub fn preflight(&self, path: &str, admin_panel_origin: &str) -> Option<Vec<(String, String)>> {
        let parts = parts(path);
        let mock = self
            .mocks
            .iter()
            .filter(|m| m.method == "OPTIONS")
            .filter_map(|mock| bind(&mock.segments, &parts).map(|params| (mock, params.len())))
            .min_by_key(|(_, params)| *params)?
            .0;
        Some(mock.headers.iter().map(|(name, value)| (name.clone(), value.replace(ADMIN_PANEL_ORIGIN, admin_panel_origin))).collect())
    }

    /// How many mock operations (the CORS preflights) the table has.
    pub fn mocks_len(&self) -> usize {
        self.mocks.len()
    }

    /// How many Lambda operations the table has (the mocks are counted by `mocks_len`).
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has no Lambda operation.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        crate::route_table().unwrap()
    }

    #[test]
    fn every_operation_of_the_document_is_routed() {
        let doc: Value = serde_json::from_str(crate::OPENAPI).unwrap();
        let mut ops: Vec<&Value> = Vec::new();
        for item in doc["paths"].as_object().unwrap().values() {
            ops.extend(METHODS.iter().filter_map(|m| item.get(*m)));
        }
        let mocks = ops.iter().filter(|op| op["x-amazon-apigateway-integration"]["type"] == "mock").count();
        let t = table();
        assert_eq!(t.len(), ops.len() - mocks, "every Lambda operation is a route");
        assert_eq!(t.mocks_len(), mocks, "every mock operation is a preflight");
        // Every path has its preflight (template_test.py checks the same on the deployed side).
        assert_eq!(mocks, doc["paths"].as_object().unwrap().len());
    }

    #[test]
    fn preflights_answer_the_path_s_methods_for_the_admin_origin() {
        let t = table();
        let headers = t.preflight("/tenants/tn_abc", "https://admin.test").unwrap();
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(header("Access-Control-Allow-Origin"), Some("https://admin.test"));
        assert_eq!(header("Access-Control-Allow-Methods"), Some("GET,PATCH,OPTIONS"));
        assert_eq!(header("Access-Control-Max-Age"), Some("600"));
        assert_eq!(header("Access-Control-Allow-Credentials"), None);
        assert!(t.preflight("/nope", "https://admin.test").is_none());
        // A preflight is never a Lambda route.
        assert!(t.find("OPTIONS", "/tenants/tn_abc").is_none());
    }

    /// Audit filters are a closed list: the documented enums are exactly the code's.
    #[test]
    fn the_documented_audit_actions_and_resources_are_the_code_s() {
        let doc: Value = serde_json::from_str(crate::OPENAPI).unwrap();
        let listed = |schema: &str| -> Vec<String> {
            doc["components"]["schemas"][schema]["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
        };
        let actions: Vec<String> = shared::audit::Action::ALL.iter().map(|a| a.as_str().to_owned()).collect();
        let resources: Vec<String> = shared::audit::Resource::ALL.iter().map(|r| r.as_str().to_owned()).collect();
        assert_eq!(listed("AuditAction"), actions);
        assert_eq!(listed("AuditResource"), resources);
    }

    /// An authorizer that cannot decide is a 503 with Retry-After deployed (an authorizer
    /// Lambda's error is API Gateway's AUTHORIZER_CONFIGURATION_ERROR, its failure to decide
    /// AUTHORIZER_FAILURE) as locally, with the same delay.
    #[test]
    fn the_authorizer_s_failures_are_documented_as_503s_with_the_local_retry_after() {
        let doc: Value = serde_json::from_str(crate::OPENAPI).unwrap();
        for name in ["AUTHORIZER_FAILURE", "AUTHORIZER_CONFIGURATION_ERROR"] {
            let response = &doc["x-amazon-apigateway-gateway-responses"][name];
            assert_eq!(response["statusCode"], "503", "{name}");
            let retry_after = format!("'{}'", crate::gateway::UNAVAILABLE_RETRY_AFTER_SECS);
            assert_eq!(response["responseParameters"]["gatewayresponse.header.Retry-After"], retry_after.as_str(), "{name}");
        }
    }

    #[test]
    fn paths_match_with_parameters() {
        let t = table();
        let m = t.find("GET", "/tenants/tn_abc/limits").unwrap();
        assert_eq!(m.route.resource, "/tenants/{tenantId}/limits");
        assert_eq!(m.params, vec![("tenantId".to_string(), "tn_abc".to_string())]);
        assert!(m.route.auth.is_some());
        assert!(t.find("DELETE", "/tenants/tn_abc").is_none());
        assert!(t.find("GET", "/nope").is_none());
    }
}
