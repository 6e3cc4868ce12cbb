//! The route table, read from the OpenAPI document that `template.yaml` imports: the same
//! paths, methods, security and target function as API Gateway.

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

/// Every route of the document.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

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

impl RouteTable {
    /// Reads the routes. Every operation must name one of the `hosted` functions.
    pub fn from_openapi(doc: &Value, hosted: &[&str]) -> Result<Self, String> {
        // The first scheme of the first requirement: API Gateway allows one authorizer a method.
        let scheme = |list: &Value| -> Option<String> {
            list.as_array()?.first()?.as_object()?.keys().next().cloned()
        };
        let global_security = doc.get("security").and_then(scheme);
        let paths = doc.get("paths").and_then(Value::as_object).ok_or("the document has no paths")?;
        let mut routes = Vec::new();
        for (path, item) in paths {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let integration = op.get("x-amazon-apigateway-integration").ok_or(format!("{method} {path}: no integration"))?;
                let id = logical_id(integration).ok_or(format!("{method} {path}: no Lambda function in its integration"))?;
                if !hosted.contains(&id) {
                    return Err(format!("{method} {path}: {id} is not hosted locally"));
                }
                let function = id.to_owned();
                let auth = match op.get("security") {
                    Some(list) => scheme(list),
                    None => global_security.clone(),
                };
                let segments = path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) => Segment::Param(name.to_owned()),
                        None => Segment::Literal(s.to_owned()),
                    })
                    .collect();
                routes.push(Route { method: method.to_ascii_uppercase(), resource: path.clone(), function, auth, segments });
            }
        }
        Ok(Self { routes })
    }

    /// The route for a method and a concrete path, preferring literal segments over parameters.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.routes
            .iter()
            .filter(|r| r.method == method && r.segments.len() == parts.len())
            .filter_map(|route| {
                let mut params = Vec::new();
                for (segment, part) in route.segments.iter().zip(&parts) {
                    match segment {
                        Segment::Literal(l) if l == part => {}
                        Segment::Literal(_) => return None,
                        Segment::Param(name) => params.push((name.clone(), (*part).to_owned())),
                    }
                }
                Some(Matched { route, params })
            })
            .min_by_key(|m| m.params.len())
    }

    /// How many operations the table has.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table is empty.
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
        let operations: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| METHODS.iter().filter(|m| item.get(**m).is_some()).count())
            .sum();
        assert_eq!(table().len(), operations);
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
