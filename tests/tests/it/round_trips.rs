//! Database round trips per route, counted with the driver's command monitor and never timed.
//! Every route of openapi.json declares the budget of its warm call once, per caller, as the
//! operation's `x-round-trips`; docs/performance.md prints them ("Database round trips of a warm
//! call") and a test below keeps the two equal. A route that takes more than its budget fails
//! here, naming the route, the budget and the count; one that takes fewer fails too, so that the
//! budgets stay what the code does.
//!
//! What is counted: every command the app's client sends to the test's own database
//! (`Db::connect_counting`), `getMore` included; not the driver's handshakes, nor `buildInfo`
//! (asked once per handle, before anything is measured), nor Cognito's calls.
//!
//! A warm call is one made after the same route was called once: admission then holds the
//! member (60 s) and the tenant's quota bounds, the roles context the system roles' ids, the
//! authorizer the key's windows and its fresh `lastUsedAt`. Right before each measured call
//! the caller is admitted once more (a change of users or roles drops the member cache of the
//! process, as it must), then the counter is zeroed. Only successful calls are measured.

use reqwest::{Method, RequestBuilder};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use tenancy_tests::app::{spawn_app_counting, TestApp};

/// Who makes the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// A platform superadmin's token (the Cognito authorizer; on the tenant-scoped routes, our
    /// REQUEST authorizer, which costs a token no round trip).
    Superadmin,
    /// The tenant's admin, with a token: the REQUEST authorizer costs it no round trip.
    TenantAdmin,
    /// An API key of the tenant admin's: the local gateway runs the REQUEST authorizer in
    /// process, so its two round trips (the key, its windows) are counted with the route's.
    ApiKey,
    /// No credential at all (self-service sign-up).
    Anonymous,
}

impl Caller {
    const ALL: [Caller; 4] = [Caller::Superadmin, Caller::TenantAdmin, Caller::ApiKey, Caller::Anonymous];

    fn as_str(self) -> &'static str {
        match self {
            Caller::Superadmin => "superadmin",
            Caller::TenantAdmin => "tenant admin",
            Caller::ApiKey => "API key",
            Caller::Anonymous => "anonymous",
        }
    }

    fn parse(name: &str) -> Option<Caller> {
        Caller::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// A route's warm call as one caller: at most (and exactly) this many round trips.
struct Budget {
    /// `METHOD /resource`, as openapi.json names the operation.
    route: String,
    caller: Caller,
    round_trips: u64,
    /// What they are, for the docs.
    what: String,
}

/// One entry of an operation's `x-round-trips`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Declared {
    caller: String,
    round_trips: u64,
    what: String,
}

/// A JSON object's entries in the document's order, which serde_json's own map (sorted by key)
/// does not keep: the docs' table lists the budgets in openapi.json's order.
struct Ordered<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Entries<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        deserializer.deserialize_map(Entries(PhantomData))
    }
}

/// The parts of openapi.json the budgets are read from: its paths, each path's operations.
#[derive(Deserialize)]
struct Document {
    paths: Ordered<Ordered<Value>>,
}

/// The budgets, the one declaration of them: every `x-round-trips` of openapi.json, in the
/// document's order. A tenant-scoped call's first round trip is admission's counting update of
/// the tenant record (the member itself comes from the cache); a superadmin-only route has no
/// admission round trip.
fn budgets() -> Vec<Budget> {
    let doc: Document = serde_json::from_str(local_api::OPENAPI).expect("openapi.json");
    let mut budgets = Vec::new();
    for (path, item) in doc.paths.0 {
        for (method, op) in item.0 {
            let Some(declared) = op.get("x-round-trips") else { continue };
            let route = format!("{} {path}", method.to_ascii_uppercase());
            let declared: Vec<Declared> = serde_json::from_value(declared.clone())
                .unwrap_or_else(|e| panic!("openapi.json: {route}: x-round-trips is not a list of {{caller, roundTrips, what}}: {e}"));
            for d in declared {
                let caller = Caller::parse(&d.caller).unwrap_or_else(|| {
                    let known: Vec<&str> = Caller::ALL.iter().map(|c| c.as_str()).collect();
                    panic!("openapi.json: {route}: x-round-trips names caller {:?}, not one of {known:?}", d.caller)
                });
                budgets.push(Budget { route: route.clone(), caller, round_trips: d.round_trips, what: d.what });
            }
        }
    }
    budgets
}

/// Where docs/performance.md prints the table: the first table after this line's start.
const DOCS_SECTION: &str = "**Database round trips of a warm call**";

/// The docs file that prints the budgets, from the workspace root.
const DOCS_FILE: &str = "docs/performance.md";

/// The table as docs/performance.md prints it.
fn markdown(budgets: &[Budget]) -> String {
    let mut out = String::from("| route | caller | round trips | what they are |\n| --- | --- | --- | --- |\n");
    for b in budgets {
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", b.route, b.caller.as_str(), b.round_trips, b.what));
    }
    out
}

/// A row of the table: route, caller, round trips, what they are.
type Row = (String, String, u64, String);

/// The rows of the docs' table.
fn docs_rows() -> Vec<Row> {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(DOCS_FILE);
    let docs = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{DOCS_FILE}: {e}"));
    let start = docs.find(DOCS_SECTION).unwrap_or_else(|| panic!("{DOCS_FILE} has no {DOCS_SECTION}"));
    docs[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').map(str::trim).collect();
            assert!(cells.len() >= 4, "{DOCS_FILE}: a row of the round-trip table without route, caller, count and what: {line}");
            let round_trips: u64 = cells[2].parse().unwrap_or_else(|_| panic!("{DOCS_FILE}: not a number of round trips in {line}"));
            (cells[0].trim_matches('`').to_owned(), cells[1].to_owned(), round_trips, cells[3..].join(" | "))
        })
        .collect()
}

#[test]
fn the_docs_print_the_budget_table() {
    let budgets = budgets();
    let expected: Vec<Row> =
        budgets.iter().map(|b| (b.route.clone(), b.caller.as_str().to_owned(), b.round_trips, b.what.clone())).collect();
    assert_eq!(
        docs_rows(),
        expected,
        "{DOCS_FILE}'s round-trip table differs from openapi.json's x-round-trips; it should read:\n\n{}",
        markdown(&budgets)
    );
}

/// Every operation of openapi.json (the CORS preflights, mock integrations, aside).
fn documented_routes() -> Vec<String> {
    let doc: Value = serde_json::from_str(local_api::OPENAPI).expect("openapi.json");
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("the document's paths") {
        for method in ["get", "put", "post", "patch", "delete", "head"] {
            if item.get(method).is_some() {
                routes.push(format!("{} {path}", method.to_ascii_uppercase()));
            }
        }
    }
    routes
}

#[test]
fn every_route_of_openapi_json_has_a_budget() {
    let routes = documented_routes();
    let budgets = budgets();
    let missing: Vec<&String> = routes.iter().filter(|r| !budgets.iter().any(|b| &b.route == *r)).collect();
    assert!(
        missing.is_empty(),
        "routes of openapi.json without a round-trip budget (give each an x-round-trips, and a row in {DOCS_FILE}): {missing:?}"
    );
    let unknown: Vec<&str> = budgets.iter().map(|b| b.route.as_str()).filter(|b| !routes.iter().any(|r| r == b)).collect();
    assert!(unknown.is_empty(), "x-round-trips on operations that are no route a caller calls (CORS preflights): {unknown:?}");
    let mut twice: Vec<String> = budgets
        .iter()
        .enumerate()
        .filter(|(i, b)| budgets[..*i].iter().any(|a| a.route == b.route && a.caller == b.caller))
        .map(|(_, b)| format!("{} as {}", b.route, b.caller.as_str()))
        .collect();
    twice.dedup();
    assert!(twice.is_empty(), "x-round-trips names a caller twice on one route: {twice:?}");
}

/// Who calls, with what credential.
struct Who {
    caller: Caller,
    /// An ID token, or an API key.
    credential: String,
}

impl Who {
    fn request(&self, app: &TestApp, method: Method, path: &str, body: Option<&Value>) -> RequestBuilder {
        let keyed = method == Method::POST && (path == "/onboarding" || path == "/signup");
        let builder = match self.caller {
            Caller::ApiKey => app.key_request(method, path, &self.credential),
            Caller::Superadmin | Caller::TenantAdmin => app.request(method, path, Some(self.credential.as_str())),
            Caller::Anonymous => app.request(method, path, None),
        };
        // `POST /onboarding` and `POST /signup` require an idempotency key: each call is new.
        let builder = if keyed {
            builder.header("Idempotency-Key", format!("budget-{}", mongodb::bson::oid::ObjectId::new().to_hex()))
        } else {
            builder
        };
        match body {
            Some(body) => builder.json(body),
            None => builder,
        }
    }
}

/// Makes calls, and counts the round trips of the measured ones.
struct Meter<'a> {
    app: &'a TestApp,
    commands: Arc<AtomicU64>,
    routes: local_api::routes::RouteTable,
    /// What openapi.json declares.
    budgets: Vec<Budget>,
    /// Route, caller, round trips.
    measured: Vec<(String, Caller, u64)>,
}

impl Meter<'_> {
    /// A call that must succeed, not measured: its body.
    async fn ok(&self, who: &Who, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, _, reply) = self.app.call(who.request(self.app, method.clone(), path, body.as_ref())).await;
        assert!((200..300).contains(&status), "{method} {path} as {}: {status} {reply}", who.caller.as_str());
        reply
    }

    /// The warm call, measured: the caller admitted once more, the counter zeroed, the call
    /// made (it must succeed) and its round trips recorded under the route it matched. Its body.
    async fn measure(&mut self, who: &Who, method: Method, path: &str, body: Option<Value>) -> Value {
        let route = {
            let matched = self.routes.find(method.as_str(), path).unwrap_or_else(|| panic!("no route of openapi.json for {method} {path}"));
            format!("{} {}", matched.route.method, matched.route.resource)
        };
        match who.caller {
            Caller::TenantAdmin => {
                self.ok(who, Method::GET, "/users/me", None).await;
            }
            Caller::ApiKey => {
                self.ok(who, Method::GET, "/users", None).await;
            }
            Caller::Superadmin | Caller::Anonymous => {}
        }
        self.commands.store(0, SeqCst);
        let (status, _, reply) = self.app.call(who.request(self.app, method.clone(), path, body.as_ref())).await;
        let round_trips = self.commands.load(SeqCst);
        assert!((200..300).contains(&status), "{route} as {}: {status} {reply}", who.caller.as_str());
        self.measured.push((route, who.caller, round_trips));
        reply
    }

    /// The route's first call, then the same call warm, measured.
    async fn twice(&mut self, who: &Who, method: Method, path: &str, body: Option<Value>) -> Value {
        self.ok(who, method.clone(), path, body.clone()).await;
        self.measure(who, method, path, body).await
    }

    /// Each budget against its measured call: the failures, and the whole table.
    fn verdict(&self) -> (Vec<String>, String) {
        let mut failures = Vec::new();
        let mut table = String::from("route | caller | budget | measured\n");
        for b in &self.budgets {
            let counts: Vec<u64> = self.measured.iter().filter(|(r, c, _)| *r == b.route && *c == b.caller).map(|(_, _, n)| *n).collect();
            let who = format!("{} as {}", b.route, b.caller.as_str());
            table.push_str(&format!("{} | {} | {} | {:?}\n", b.route, b.caller.as_str(), b.round_trips, counts));
            match counts.as_slice() {
                [] => failures.push(format!("{who}: never measured")),
                [n] if *n > b.round_trips => failures.push(format!("{who}: {n} round trips, over its budget of {}", b.round_trips)),
                [n] if *n < b.round_trips => failures.push(format!(
                    "{who}: {n} round trips, under its budget of {}: lower the budget to {n} in openapi.json's x-round-trips and {DOCS_FILE}",
                    b.round_trips
                )),
                [_] => {}
                _ => failures.push(format!("{who}: measured more than once: {counts:?}")),
            }
        }
        for (route, caller, n) in &self.measured {
            if !self.budgets.iter().any(|b| b.route == *route && b.caller == *caller) {
                failures.push(format!("{route} as {}: {n} round trips, and no budget in openapi.json's x-round-trips", caller.as_str()));
            }
        }
        (failures, table)
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}")).to_owned()
}

#[tokio::test]
async fn every_route_s_warm_call_keeps_to_its_round_trip_budget() {
    let (app, commands) = spawn_app_counting().await;
    // The tenant's creation is POST /tenants' first call.
    let (token, tenant) = app.tenant_with_admin("basic", "admin@budgets.example").await;
    let admin = Who { caller: Caller::TenantAdmin, credential: token };
    let ops = Who { caller: Caller::Superadmin, credential: app.superadmin().await };
    let routes = local_api::route_table().expect("the route table");
    let mut m = Meter { app: &app, commands, routes, budgets: budgets(), measured: Vec::new() };

    // The admin's first call activates its record; the tenant and its settings.
    let me = m.twice(&admin, Method::GET, "/users/me", None).await;
    let admin_id = text(&me["data"]["id"]);
    let own = format!("/tenants/{tenant}");
    m.twice(&admin, Method::GET, &own, None).await;
    m.twice(&admin, Method::GET, &format!("{own}/limits"), None).await;
    let customization = format!("{own}/settings/customization");
    m.ok(&admin, Method::PATCH, &customization, Some(json!({"theme": "dark"}))).await;
    m.measure(&admin, Method::PATCH, &customization, Some(json!({"primaryColor": "#336699"}))).await;

    // Roles: each change on a role of its own, the first one cold.
    let roles = m.twice(&admin, Method::GET, "/roles", None).await;
    let viewer = roles["data"]["roles"]
        .as_array()
        .expect("the roles")
        .iter()
        .find(|r| r["name"] == "viewer")
        .map(|r| text(&r["id"]))
        .expect("the viewer role");
    let role = |name: &str| json!({"name": name, "permissions": ["read:users"]});
    let cold = text(&m.ok(&admin, Method::POST, "/roles", Some(role("Cold role"))).await["data"]["id"]);
    let warm = text(&m.measure(&admin, Method::POST, "/roles", Some(role("Warm role"))).await["data"]["id"]);
    m.twice(&admin, Method::GET, &format!("/roles/{warm}"), None).await;
    m.ok(&admin, Method::PATCH, &format!("/roles/{cold}"), Some(json!({"description": "Cold"}))).await;
    m.measure(&admin, Method::PATCH, &format!("/roles/{warm}"), Some(json!({"description": "Warm"}))).await;
    m.ok(&admin, Method::DELETE, &format!("/roles/{cold}"), None).await;
    m.measure(&admin, Method::DELETE, &format!("/roles/{warm}"), None).await;

    // Users: each change of another user on a user of its own, the first one cold.
    m.twice(&admin, Method::GET, "/users", None).await;
    m.twice(&admin, Method::GET, &format!("/users/{admin_id}"), None).await;
    m.twice(&admin, Method::PATCH, "/users/me", Some(json!({"title": "Operator"}))).await;
    // Exports, with the audit part (the admin holds `read:audit-logs`, and basic has `audit_logs`).
    m.twice(&admin, Method::GET, "/users/me/export", None).await;
    m.twice(&admin, Method::GET, &format!("/users/{admin_id}/export"), None).await;
    let invite = |email: &str| json!({"email": email, "firstName": "New", "lastName": "Hire"});
    m.ok(&admin, Method::POST, "/users", Some(invite("cold@budgets.example"))).await;
    m.measure(&admin, Method::POST, "/users", Some(invite("warm@budgets.example"))).await;
    let mut users = Vec::new();
    for i in 0..8 {
        let (id, _) = app.seed_user(&tenant, &format!("user{i}@budgets.example"), "user", "active").await;
        users.push(format!("/users/{}", id.to_hex()));
    }
    m.ok(&admin, Method::PATCH, &users[0], Some(json!({"status": "inactive"}))).await;
    m.measure(&admin, Method::PATCH, &users[1], Some(json!({"status": "inactive"}))).await;
    m.ok(&admin, Method::DELETE, &users[2], None).await;
    m.measure(&admin, Method::DELETE, &users[3], None).await;
    let grant = json!({"roleId": viewer});
    m.ok(&admin, Method::POST, &format!("{}/roles", users[4]), Some(grant.clone())).await;
    m.measure(&admin, Method::POST, &format!("{}/roles", users[5]), Some(grant)).await;
    m.ok(&admin, Method::DELETE, &format!("{}/roles/{viewer}", users[4]), None).await;
    m.measure(&admin, Method::DELETE, &format!("{}/roles/{viewer}", users[5]), None).await;
    m.ok(&admin, Method::POST, &format!("{}/erase", users[6]), None).await;
    m.measure(&admin, Method::POST, &format!("{}/erase", users[7]), None).await;

    // A tenant's export, requested and read while queued (one export of a tenant at a time:
    // the first, cold, is marked done before the measured one).
    let first = m.ok(&admin, Method::POST, &format!("{own}/exports"), None).await;
    export_done(&app, &text(&first["data"]["exportId"])).await;
    let queued = m.measure(&admin, Method::POST, &format!("{own}/exports"), None).await;
    m.twice(&admin, Method::GET, &format!("{own}/exports/{}", text(&queued["data"]["exportId"])), None).await;
    m.twice(&admin, Method::PATCH, &format!("{own}/settings/exports"), Some(json!({"nightly": false}))).await;

    // The audit log, which by now has entries.
    let logs = m.twice(&admin, Method::GET, "/audit-logs", None).await;
    let entry = text(&logs["data"]["auditLogs"][0]["id"]);
    m.twice(&admin, Method::GET, &format!("/audit-logs/{entry}"), None).await;

    // API keys: each change on a key of its own, the first one cold.
    m.twice(&admin, Method::GET, "/api-keys", None).await;
    let key = |name: &str| json!({"name": name, "permissions": ["read:users"]});
    let cold = text(&m.ok(&admin, Method::POST, "/api-keys", Some(key("cold"))).await["data"]["id"]);
    let warm = text(&m.measure(&admin, Method::POST, "/api-keys", Some(key("warm"))).await["data"]["id"]);
    let reader = text(&m.ok(&admin, Method::POST, "/api-keys", Some(key("reader"))).await["data"]["key"]);
    m.twice(&admin, Method::GET, &format!("/api-keys/{warm}"), None).await;
    m.ok(&admin, Method::PATCH, &format!("/api-keys/{cold}"), Some(json!({"name": "cold 2"}))).await;
    m.measure(&admin, Method::PATCH, &format!("/api-keys/{warm}"), Some(json!({"name": "warm 2"}))).await;
    let rotation = json!({"gracePeriodSeconds": 0});
    m.ok(&admin, Method::POST, &format!("/api-keys/{cold}/rotate"), Some(rotation.clone())).await;
    m.measure(&admin, Method::POST, &format!("/api-keys/{warm}/rotate"), Some(rotation)).await;
    m.ok(&admin, Method::POST, &format!("/api-keys/{cold}/revoke"), None).await;
    m.measure(&admin, Method::POST, &format!("/api-keys/{warm}/revoke"), None).await;

    // A read with a key: the in-process authorizer's round trips count too.
    let machine = Who { caller: Caller::ApiKey, credential: reader };
    m.twice(&machine, Method::GET, "/users", None).await;

    // The superadmin's routes, on a second tenant (its plan changes last).
    let created = m
        .measure(
            &ops,
            Method::POST,
            "/tenants",
            Some(json!({"name": "Budgets B", "adminEmail": "admin@budgets-b.example", "plan": "basic"})),
        )
        .await;
    let other = format!("/tenants/{}", text(&created["data"]["tenantId"]));
    let onboarding = |n: &str| {
        json!({"tenantName": format!("Budgets {n}"), "adminEmail": format!("admin@budgets-{n}.example"),
            "adminFirstName": "Bud", "adminLastName": "Get", "plan": "basic"})
    };
    let onboarded = m.measure(&ops, Method::POST, "/onboarding", Some(onboarding("c"))).await;
    m.twice(&ops, Method::GET, &format!("/onboarding/{}", text(&onboarded["data"]["onboardingId"])), None).await;
    let nobody = Who { caller: Caller::Anonymous, credential: String::new() };
    let signup = |n: &str| {
        json!({"companyName": format!("Budgets {n}"), "adminEmail": format!("admin@budgets-{n}.example"),
            "adminFirstName": "Bud", "adminLastName": "Get"})
    };
    m.ok(&nobody, Method::POST, "/signup", Some(signup("d"))).await;
    m.measure(&nobody, Method::POST, "/signup", Some(signup("e"))).await;
    m.twice(&ops, Method::GET, "/tenants", None).await;
    m.twice(&ops, Method::GET, &other, None).await;
    m.twice(&ops, Method::GET, &format!("{other}/usage/history"), None).await;
    m.ok(&ops, Method::PATCH, &other, Some(json!({"name": "Budgets B1"}))).await;
    m.measure(&ops, Method::PATCH, &other, Some(json!({"name": "Budgets B2"}))).await;
    m.twice(&ops, Method::POST, &format!("{other}/suspend"), Some(json!({"reason": "a budget test"}))).await;
    m.twice(&ops, Method::POST, &format!("{other}/reactivate"), None).await;
    let first = m.ok(&ops, Method::POST, &format!("{other}/exports"), None).await;
    export_done(&app, &text(&first["data"]["exportId"])).await;
    let queued = m.measure(&ops, Method::POST, &format!("{other}/exports"), None).await;
    m.twice(&ops, Method::GET, &format!("{other}/exports/{}", text(&queued["data"]["exportId"])), None).await;
    let billing = format!("{other}/settings/billing");
    m.ok(&ops, Method::PATCH, &billing, Some(json!({"billingEmail": "billing@budgets-b.example"}))).await;
    m.measure(&ops, Method::PATCH, &billing, Some(json!({"plan": "premium"}))).await;

    // Offboarding, on two tenants of their own, the first call cold; each then cancelled.
    let (_, first) = app.tenant_with_admin("basic", "admin@budgets-off1.example").await;
    let (_, second) = app.tenant_with_admin("basic", "admin@budgets-off2.example").await;
    let grace = json!({"gracePeriodDays": 30});
    m.ok(&ops, Method::POST, &format!("/tenants/{first}/offboard"), Some(grace.clone())).await;
    m.measure(&ops, Method::POST, &format!("/tenants/{second}/offboard"), Some(grace)).await;
    m.ok(&ops, Method::POST, &format!("/tenants/{first}/offboard/cancel"), None).await;
    m.measure(&ops, Method::POST, &format!("/tenants/{second}/offboard/cancel"), None).await;

    // A purged tenant's receipt: its tombstone as the purge leaves it, planted (a purge's own
    // round trips are no route's).
    let purged = shared::ids::TenantId::generate();
    local_api::fixtures::plant_tombstone(&app.db, &purged).await.expect("a signed tombstone");
    m.twice(&ops, Method::GET, &format!("/tenants/{purged}/receipt"), None).await;

    // A restore of a purged tenant's export (planted: an export's own round trips are the
    // worker's), queued twice before the worker runs.
    local_api::fixtures::plant_restorable_export(&app.deps).await.expect("a restorable export");
    let restore = json!({"exportId": local_api::fixtures::RESTORABLE_EXPORT});
    m.twice(&ops, Method::POST, &format!("/tenants/{}/restore", local_api::fixtures::RESTORABLE_TENANT), Some(restore)).await;

    let (failures, table) = m.verdict();
    println!("Database round trips of a warm call:\n{table}");
    assert!(failures.is_empty(), "{}\n\n{table}", failures.join("\n"));
}

/// Marks an export's job completed, as its worker would once done.
async fn export_done(app: &tenancy_tests::app::TestApp, id: &str) {
    let jobs = tenancy_tests::raw_collection(&app.db, "jobs").await;
    let done = jobs.update_one(mongodb::bson::doc! {"_id": id}, mongodb::bson::doc! {"$set": {"state": "completed"}}).await.unwrap();
    assert_eq!(done.matched_count, 1);
}
