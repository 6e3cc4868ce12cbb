//! CloudWatch metrics as Embedded Metric Format (EMF) lines on stdout: CloudWatch Logs extracts
//! them from the function's log stream, so a metric costs no API call and no latency.
//!
//! One namespace, [`NAMESPACE`]. Every line names the `Service` (the stack, from
//! `METRICS_SERVICE`) and the `Function` (the binary). Per-tenant counts (`ApiCalls`,
//! `ScopeRefusals`, the business counts, data growth) carry the tenant as a plain property, never
//! as a dimension: Logs Insights and Contributor Insights rank tenants from the lines, and the
//! metric count stays fixed however many tenants there are. The alarms in template.yaml watch
//! these exact dimension sets (`tests/template_test.py` checks them against captured lines).

use serde_json::{json, Map, Value};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "Tenancy";

/// Dimension sets. `Service` is in each, so two stacks in one account never mix.
const BY_ROUTE: &[&str] = &["Service", "Function", "Route"];
const BY_FUNCTION: &[&str] = &["Service", "Function"];
const BY_SERVICE: &[&str] = &["Service"];
const BY_COLLECTION: &[&str] = &["Service", "Collection"];
const BY_DEPENDENCY: &[&str] = &["Service", "Dependency"];

/// Where lines go, and the two values every line carries. Unset (tests of the code in process)
/// means nothing is written.
struct Sink {
    service: String,
    function: &'static str,
}

static SINK: OnceLock<Sink> = OnceLock::new();
/// Whether this process has yet to write its first line: that line also counts the cold start.
static COLD: AtomicBool = AtomicBool::new(true);

/// Turns emission on for this process, as `function` (the binary's name). `METRICS_SERVICE`
/// names the stack (template.yaml sets it); locally it is `tenancy-local`.
pub fn init(function: &'static str) {
    let service = std::env::var("METRICS_SERVICE").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "tenancy-local".into());
    let _ = SINK.set(Sink { service, function });
}

/// A business event worth counting per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Business {
    TenantsCreated,
    UsersInvited,
    KeysCreated,
}

impl Business {
    fn name(self) -> &'static str {
        match self {
            Business::TenantsCreated => "TenantsCreated",
            Business::UsersInvited => "UsersInvited",
            Business::KeysCreated => "KeysCreated",
        }
    }
}

/// What one HTTP request came to, as [`crate::http::serve`] saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestOutcome<'a> {
    /// The matched route (`GET /users/{userId}`).
    pub route: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    pub request_id: &'a str,
    /// The caller's own tenant, when it has one.
    pub tenant: Option<&'a str>,
    /// A refusal of another tenant's data: a cross-tenant 403, or the scope guard refusing an
    /// operation.
    pub scope_refusal: bool,
}

/// One HTTP request: `Requests`, `Latency`, `4xx`, `5xx`, `AuthFailures` (401) and `Throttles`
/// (429) by route, function and service; `ApiCalls` and `ScopeRefusals` by service, with the tenant.
pub fn request(outcome: &RequestOutcome<'_>) {
    emit(|line| request_line(line, outcome));
}

fn request_line(mut line: Line, o: &RequestOutcome<'_>) -> Line {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    line.set("Route", if o.route.is_empty() { "unknown" } else { o.route });
    line.set("status", o.status);
    line.set("requestId", o.request_id);
    if let Some(tenant) = o.tenant {
        line.set("tenantId", tenant);
    }
    line.metrics(
        &[BY_ROUTE, BY_FUNCTION, BY_SERVICE],
        &[
            ("Requests", Unit::Count, 1.0),
            ("Latency", Unit::Milliseconds, o.latency_ms),
            ("4xx", Unit::Count, flag((400..500).contains(&o.status))),
            ("5xx", Unit::Count, flag(o.status >= 500)),
            ("AuthFailures", Unit::Count, flag(o.status == 401)),
            ("Throttles", Unit::Count, flag(o.status == 429)),
        ],
    );
    line.metrics(
        &[BY_SERVICE],
        &[("ApiCalls", Unit::Count, flag(o.tenant.is_some())), ("ScopeRefusals", Unit::Count, flag(o.scope_refusal))],
    );
    line
}

/// One decision of the REQUEST authorizer. Its own names, so that a call through the authorizer
/// and then a function is not counted twice in `Requests` or `Latency`; `AuthFailures` is shared
/// with the functions' 401s, so that one alarm sees both.
pub fn authorization(allowed: bool, latency_ms: f64, request_id: &str) {
    emit(|mut line| {
        line.set("requestId", request_id);
        let refused = if allowed { 0.0 } else { 1.0 };
        line.metrics(
            &[BY_FUNCTION, BY_SERVICE],
            &[
                ("Authorizations", Unit::Count, 1.0),
                ("AuthFailures", Unit::Count, refused),
                ("AuthorizerLatency", Unit::Milliseconds, latency_ms),
            ],
        );
        line
    });
}

/// A business event of one tenant.
pub fn business(event: Business, tenant: &str) {
    emit(|mut line| {
        line.set("tenantId", tenant);
        line.metrics(&[BY_SERVICE], &[(event.name(), Unit::Count, 1.0)]);
        line
    });
}

/// One run of the migrations function: how many migrations it applied, and whether it failed.
pub fn migration_run(action: &str, applied: u64, failed: bool) {
    emit(|mut line| {
        line.set("action", action);
        line.metrics(
            &[BY_FUNCTION],
            &[("MigrationsApplied", Unit::Count, applied as f64), ("MigrationErrors", Unit::Count, if failed { 1.0 } else { 0.0 })],
        );
        line
    });
}

/// One invocation of a function that serves no HTTP route (a trigger, a scheduled job).
pub fn invocation(failed: bool) {
    emit(|mut line| {
        line.metrics(&[BY_FUNCTION], &[("Invocations", Unit::Count, 1.0), ("Errors", Unit::Count, if failed { 1.0 } else { 0.0 })]);
        line
    });
}

/// One saga sweep: the sagas it took, how many it completed and undid, and how many it had to
/// leave open (a compensation that could not finish: the alarm's signal), or a failed sweep.
pub fn saga_sweep(taken: u64, completed: u64, failed: u64, left_open: u64, errored: bool) {
    emit(|mut line| {
        line.metrics(
            &[BY_FUNCTION],
            &[
                ("SagasTaken", Unit::Count, taken as f64),
                ("SagasCompleted", Unit::Count, completed as f64),
                ("SagasFailed", Unit::Count, failed as f64),
                ("SagasLeftOpen", Unit::Count, left_open as f64),
                ("SweepErrors", Unit::Count, if errored { 1.0 } else { 0.0 }),
            ],
        );
        line
    });
}

/// A sign-up refused because the platform's sign-ups of the hour are spent: its alarm says the
/// cap (or an attack) needs a look.
pub fn signup_cap_reached() {
    emit(|mut line| {
        line.metrics(&[BY_SERVICE], &[("SignupCapReached", Unit::Count, 1.0)]);
        line
    });
}

/// One tenant's stored data in one collection, from the usage snapshot.
pub fn data_growth(tenant: &crate::ids::TenantId, collection: &str, documents: u64, bytes: u64) {
    emit(|mut line| {
        line.set("tenantId", tenant.as_str());
        line.set("Collection", collection);
        line.metrics(&[BY_COLLECTION], &[("Documents", Unit::Count, documents as f64), ("Bytes", Unit::Bytes, bytes as f64)]);
        line
    });
}

/// One correction of a tenant counter by the reconciliation job (`seats`, `admins` or
/// `apiKeyCount`): `CounterCorrections` is its size, `|to - from|`, so any non-zero Sum is a
/// drift found (docs/ARCHITECTURE.md §12). The tenant, counter and values are properties.
pub fn counter_correction(tenant: &crate::ids::TenantId, counter: &str, from: i64, to: i64) {
    emit(|mut line| {
        line.set("tenantId", tenant.as_str());
        line.set("counter", counter);
        line.set("from", from);
        line.set("to", to);
        line.metrics(&[BY_SERVICE], &[("CounterCorrections", Unit::Count, (to - from).unsigned_abs() as f64)]);
        line
    });
}

/// A service the platform depends on, as the `Dependency` dimension names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Kms,
    Cognito,
}

impl Dependency {
    fn name(self) -> &'static str {
        match self {
            Dependency::Kms => "KMS",
            Dependency::Cognito => "Cognito",
        }
    }
}

/// A permanent error of a dependency (a missing or disabled key, a missing user pool, access
/// denied): `DependencyErrors`, by service (what the alarm watches) and by dependency. The
/// error code is a property.
pub fn dependency_error(dependency: Dependency, code: &str) {
    emit(|mut line| {
        line.set("Dependency", dependency.name());
        line.set("code", code);
        line.metrics(&[BY_SERVICE, BY_DEPENDENCY], &[("DependencyErrors", Unit::Count, 1.0)]);
        line
    });
}

/// The units this crate emits (a subset of CloudWatch's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Count,
    Milliseconds,
    Bytes,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
        }
    }
}

/// One EMF document being built: its root members and its metric directives.
struct Line {
    root: Map<String, Value>,
    directives: Vec<Value>,
}

impl Line {
    fn new(service: &str, function: &str) -> Self {
        let mut root = Map::new();
        root.insert("Service".into(), service.into());
        root.insert("Function".into(), function.into());
        Self { root, directives: Vec::new() }
    }

    fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.root.insert(key.into(), value.into());
    }

    /// A directive: these metrics under these dimension sets, their values at the root.
    fn metrics(&mut self, dimensions: &[&[&str]], metrics: &[(&str, Unit, f64)]) {
        let definitions: Vec<Value> = metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()})).collect();
        self.directives.push(json!({"Namespace": NAMESPACE, "Dimensions": dimensions, "Metrics": definitions}));
        for (name, _, value) in metrics {
            self.root.insert((*name).into(), json!(value));
        }
    }

    fn into_json(mut self, timestamp_ms: u64, cold: bool) -> Value {
        if cold {
            self.metrics(&[BY_FUNCTION], &[("ColdStart", Unit::Count, 1.0)]);
        }
        self.root.insert("_aws".into(), json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": self.directives}));
        Value::Object(self.root)
    }
}

/// Builds a line with `build` and writes it, if emission is on.
fn emit(build: impl FnOnce(Line) -> Line) {
    let Some(sink) = SINK.get() else { return };
    let cold = COLD.swap(false, Ordering::Relaxed);
    let line = build(Line::new(&sink.service, sink.function)).into_json(now_ms(), cold);
    // One write of the whole line under stdout's lock: a line never interleaves with a log line.
    let mut text = line.to_string();
    text.push('\n');
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Checks one line against the EMF specification (CloudWatch's "Specification: Embedded metric
/// format"): the `_aws` metadata with a millisecond `Timestamp` and `CloudWatchMetrics`; each
/// directive's `Namespace` (1–255 characters), `Dimensions` (sets of at most 30 keys, each a
/// string member of the root) and `Metrics` (at most 100, each `Name` at most 1024 characters,
/// `Unit` one of CloudWatch's units, `StorageResolution` 1 or 60 if present, and a root member
/// that is a number or an array of at most 100 numbers). Returns what is wrong.
pub fn check_emf(line: &Value) -> Result<(), String> {
    const UNITS: &[&str] = &[
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];
    let root = line.as_object().ok_or("the root is not an object")?;
    let aws = root.get("_aws").and_then(Value::as_object).ok_or("no _aws object")?;
    aws.get("Timestamp").and_then(Value::as_u64).ok_or("_aws.Timestamp is not a number of milliseconds")?;
    let directives = aws.get("CloudWatchMetrics").and_then(Value::as_array).ok_or("_aws.CloudWatchMetrics is not an array")?;
    for directive in directives {
        let namespace = directive.get("Namespace").and_then(Value::as_str).ok_or("a directive has no Namespace")?;
        if namespace.is_empty() || namespace.chars().count() > 255 {
            return Err(format!("namespace {namespace:?} is not 1 to 255 characters"));
        }
        let sets = directive.get("Dimensions").and_then(Value::as_array).ok_or("a directive has no Dimensions array")?;
        for set in sets {
            let keys = set.as_array().ok_or("a dimension set is not an array")?;
            if keys.len() > 30 {
                return Err("a dimension set has more than 30 keys".into());
            }
            for key in keys {
                let key = key.as_str().ok_or("a dimension key is not a string")?;
                match root.get(key) {
                    Some(Value::String(v)) if !v.is_empty() => {}
                    _ => return Err(format!("dimension {key} has no non-empty string value at the root")),
                }
            }
        }
        let metrics = directive.get("Metrics").and_then(Value::as_array).ok_or("a directive has no Metrics array")?;
        if metrics.len() > 100 {
            return Err("a directive has more than 100 metrics".into());
        }
        for metric in metrics {
            let name = metric.get("Name").and_then(Value::as_str).ok_or("a metric has no Name")?;
            if name.is_empty() || name.chars().count() > 1024 {
                return Err(format!("metric name {name:?} is not 1 to 1024 characters"));
            }
            if let Some(unit) = metric.get("Unit") {
                if !unit.as_str().is_some_and(|u| UNITS.contains(&u)) {
                    return Err(format!("metric {name} has an invalid unit {unit}"));
                }
            }
            if let Some(resolution) = metric.get("StorageResolution") {
                if !matches!(resolution.as_u64(), Some(1 | 60)) {
                    return Err(format!("metric {name} has a StorageResolution other than 1 or 60"));
                }
            }
            match root.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(values)) if values.len() <= 100 && values.iter().all(Value::is_number) => {}
                _ => return Err(format!("metric {name} has no numeric value at the root")),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(f: impl FnOnce(Line) -> Line, cold: bool) -> Value {
        f(Line::new("stack", "users")).into_json(1_700_000_000_000, cold)
    }

    fn outcome(status: u16) -> RequestOutcome<'static> {
        RequestOutcome {
            route: "GET /users/{userId}",
            status,
            latency_ms: 3.5,
            request_id: "r1",
            tenant: Some("tn_a"),
            scope_refusal: false,
        }
    }

    #[test]
    fn a_request_line_meets_the_specification_and_counts_its_status() {
        let line = build(|l| request_line(l, &outcome(429)), false);
        check_emf(&line).unwrap();
        assert_eq!(line["Requests"], 1.0);
        assert_eq!(line["4xx"], 1.0);
        assert_eq!(line["5xx"], 0.0);
        assert_eq!(line["Throttles"], 1.0);
        assert_eq!(line["AuthFailures"], 0.0);
        assert_eq!(line["ApiCalls"], 1.0);
        assert_eq!(line["tenantId"], "tn_a");
        assert_eq!(line["Route"], "GET /users/{userId}");
        let sets = &line["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
        assert_eq!(sets, &json!([["Service", "Function", "Route"], ["Service", "Function"], ["Service"]]));
        // The tenant is never a dimension.
        assert!(!line["_aws"].to_string().contains("tenantId"));
    }

    #[test]
    fn the_first_line_of_a_process_counts_the_cold_start() {
        let cold = build(|l| request_line(l, &outcome(200)), true);
        check_emf(&cold).unwrap();
        assert_eq!(cold["ColdStart"], 1.0);
        let warm = build(|l| request_line(l, &outcome(200)), false);
        assert!(warm.get("ColdStart").is_none());
    }

    #[test]
    fn a_route_less_request_still_has_a_dimension_value() {
        let mut o = outcome(404);
        o.route = "";
        check_emf(&build(|l| request_line(l, &o), false)).unwrap();
    }

    #[test]
    fn the_checker_refuses_what_the_specification_refuses() {
        let good = build(|l| request_line(l, &outcome(200)), false);
        let broken = |f: &dyn Fn(&mut Value)| {
            let mut v = good.clone();
            f(&mut v);
            check_emf(&v).unwrap_err()
        };
        broken(&|v| {
            v.as_object_mut().unwrap().remove("_aws");
        });
        broken(&|v| v["_aws"]["Timestamp"] = json!("now"));
        broken(&|v| {
            v.as_object_mut().unwrap().remove("Route");
        });
        broken(&|v| v["Route"] = json!(3));
        broken(&|v| v["Latency"] = json!("fast"));
        broken(&|v| v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Requests"));
        broken(&|v| v["_aws"]["CloudWatchMetrics"][0]["Namespace"] = json!(""));
        broken(&|v| v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["StorageResolution"] = json!(5));
    }
}
