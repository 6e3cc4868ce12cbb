//! Any operation that hands out a usable secret is an issuance (docs/ARCHITECTURE.md §13): the
//! routes that return one are found in openapi.json, and each is attempted by a member holding
//! only the permission the route needs, against an admin's `*` key. Whoever receives a key's
//! secret acts as the key's creator, so the one grant check (`api_keys::service::may_issue`)
//! guards every such route, and the change of a key's limits too.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Document};
use reqwest::Method;
use serde_json::{json, Value};
use tenancy_tests::app::{spawn_app, TestApp};
use tenancy_tests::raw_collection;

/// An operation of openapi.json whose 2xx response carries a secret.
#[derive(Debug, Clone)]
struct SecretRoute {
    operation_id: String,
    /// `METHOD /resource`, as `shared::http::serve` names the route in an audit entry.
    route: String,
    /// The permission the operation's description says it needs ("Needs `…`").
    permission: String,
}

/// The operations this file knows how to attempt. A route that returns a secret and is not
/// here fails [`every_route_that_returns_a_secret_checks_the_grant`]: teach it the new route.
const KNOWN: [&str; 2] = ["createApiKey", "rotateApiKey"];

/// `$ref`s resolved against the document; `None` for a reference already followed (a cycle).
fn resolve<'a>(doc: &'a Value, schema: &'a Value, seen: &mut Vec<String>) -> Option<&'a Value> {
    let mut schema = schema;
    while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        if seen.iter().any(|s| s == reference) {
            return None;
        }
        seen.push(reference.to_owned());
        schema = doc.pointer(reference.trim_start_matches('#')).unwrap_or_else(|| panic!("dangling {reference}"));
    }
    Some(schema)
}

/// Whether `schema` has a property named exactly `key`, at any depth: through `$ref`, `allOf`
/// (and `oneOf`, `anyOf`), every property (`data` included) and array items.
fn has_key_property(doc: &Value, schema: &Value, seen: &[String]) -> bool {
    let mut seen = seen.to_vec();
    let Some(schema) = resolve(doc, schema, &mut seen) else { return false };
    let properties = schema.get("properties").and_then(Value::as_object);
    if properties.is_some_and(|p| p.contains_key("key")) {
        return true;
    }
    let combined = ["allOf", "oneOf", "anyOf"].iter().filter_map(|k| schema.get(*k).and_then(Value::as_array)).flatten();
    let nested = properties.into_iter().flat_map(|p| p.values());
    let items = schema.get("items").into_iter().chain(schema.get("additionalProperties").filter(|a| a.is_object()));
    combined.chain(nested).chain(items).any(|s| has_key_property(doc, s, &seen))
}

/// Every operation of openapi.json whose 2xx response schema has a property named `key`.
fn secret_routes() -> Vec<SecretRoute> {
    let doc: Value = serde_json::from_str(local_api::OPENAPI).expect("openapi.json");
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let Some(responses) = op.get("responses").and_then(Value::as_object) else { continue };
            let secret = responses.iter().filter(|(code, _)| code.starts_with('2')).any(|(_, response)| {
                let response = resolve(&doc, response, &mut vec![]).expect("a response");
                let contents = response.get("content").and_then(Value::as_object).into_iter().flat_map(|c| c.values());
                contents.filter_map(|c| c.get("schema")).any(|s| has_key_property(&doc, s, &[]))
            });
            if !secret {
                continue;
            }
            let operation_id = op["operationId"].as_str().expect("an operationId").to_owned();
            let description = op["description"].as_str().unwrap_or_default();
            let permission = description
                .split_once("Needs `")
                .and_then(|(_, rest)| rest.split_once('`'))
                .map(|(p, _)| p.to_owned())
                .unwrap_or_else(|| panic!("{operation_id}'s description names no permission (\"Needs `…`\")"));
            found.push(SecretRoute { operation_id, route: format!("{} {path}", method.to_ascii_uppercase()), permission });
        }
    }
    found
}

/// A member of `tenant` whose one role grants exactly `permissions` (a custom role the admin
/// makes, named after the member): its record id, its token and its role's id.
async fn member_holding(app: &TestApp, admin: &str, tenant: &str, email: &str, permissions: &[&str]) -> (ObjectId, String, ObjectId) {
    let name = format!("Role of {}", email.split('@').next().unwrap());
    let (status, _, role) =
        app.call(app.request(Method::POST, "/roles", Some(admin)).json(&json!({"name": name, "permissions": permissions}))).await;
    assert_eq!(status, 201, "{role}");
    let (id, token) = app.seed_user(tenant, email, &name, "active").await;
    (id, token, ObjectId::parse_str(role["data"]["id"].as_str().unwrap()).unwrap())
}

/// Issues a key as `token`: its id and its whole key.
async fn issue(app: &TestApp, token: &str, permissions: &[&str]) -> (String, String) {
    let body = json!({"name": "k", "permissions": permissions});
    let (status, _, reply) = app.call(app.request(Method::POST, "/api-keys", Some(token)).json(&body)).await;
    assert_eq!(status, 201, "{reply}");
    (reply["data"]["id"].as_str().unwrap().to_owned(), reply["data"]["key"].as_str().unwrap().to_owned())
}

/// The tenant's keys as stored, and its count of active keys: what a refusal must leave as is.
async fn key_state(app: &TestApp, tenant: &str) -> (Vec<Document>, i64) {
    let keys = raw_collection(&app.db, "apiKeys").await;
    let stored: Vec<Document> = keys.find(doc! {"tenantId": tenant}).sort(doc! {"_id": 1}).await.unwrap().try_collect().await.unwrap();
    let record = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": tenant}).await.unwrap().unwrap();
    (stored, record.get_i64("apiKeyCount").or_else(|_| record.get_i32("apiKeyCount").map(i64::from)).unwrap_or(0))
}

/// The `access.denied` entries of `route` in the tenant's log.
async fn denials(app: &TestApp, tenant: &str, route: &str) -> u64 {
    let filter = doc! {"tenantId": tenant, "action": "access.denied", "details.route": route};
    raw_collection(&app.db, "auditLogs").await.count_documents(filter).await.unwrap()
}

/// Asserts a refusal: a 403 carrying no secret, nothing changed, one `access.denied` entry.
async fn assert_refused(app: &TestApp, tenant: &str, route: &str, before: &(Vec<Document>, i64), reply: (u16, Value)) {
    let (status, body) = reply;
    assert_eq!(status, 403, "{route}: {body}");
    assert!(body.get("data").is_none() && !body.to_string().contains("tk_"), "{route} handed out no secret: {body}");
    assert_eq!(&key_state(app, tenant).await, before, "{route}: a refusal changes nothing");
    assert_eq!(denials(app, tenant, route).await, 1, "{route}: the refusal is audited as access.denied");
}

#[test]
fn the_routes_that_return_a_secret_are_found_in_openapi_json() {
    let found = secret_routes();
    let mut ids: Vec<&str> = found.iter().map(|r| r.operation_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, KNOWN, "the operations whose 2xx response has a `key` property: {found:?}");
    let rotate = found.iter().find(|r| r.operation_id == "rotateApiKey").unwrap();
    assert_eq!((rotate.route.as_str(), rotate.permission.as_str()), ("POST /api-keys/{keyId}/rotate", "update:api-keys"));
}

/// For each route that returns a secret, a member holding only the permission the route needs
/// tries to get a secret worth an admin's `*`: the admin's own `*` key, or a new key with more
/// than the member holds. Each is a 403 without a secret, changes nothing, and is audited.
#[tokio::test]
async fn every_route_that_returns_a_secret_checks_the_grant() {
    let routes = secret_routes();
    let unknown: Vec<&str> = routes.iter().map(|r| r.operation_id.as_str()).filter(|id| !KNOWN.contains(id)).collect();
    assert!(unknown.is_empty(), "routes returning a secret that this test cannot attempt yet (teach it): {unknown:?}");
    assert_eq!(routes.len(), KNOWN.len(), "an operation this test knows no longer returns a secret: {routes:?}");
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("premium", "admin@issuance.example").await;
    let (admin_key_id, admin_key) = issue(&app, &admin, &["*"]).await;
    for (i, route) in routes.iter().enumerate() {
        let email = format!("member{i}@issuance.example");
        let (_, member, _) = member_holding(&app, &admin, &tenant, &email, &[route.permission.as_str()]).await;
        let before = key_state(&app, &tenant).await;
        let request = match route.operation_id.as_str() {
            "createApiKey" => app.request(Method::POST, "/api-keys", Some(&member)).json(&json!({"name": "mine", "permissions": ["*"]})),
            "rotateApiKey" => app.request(Method::POST, &format!("/api-keys/{admin_key_id}/rotate"), Some(&member)).json(&json!({})),
            other => unreachable!("{other} is in KNOWN but has no attempt"),
        };
        let (status, _, body) = app.call(request).await;
        assert_refused(&app, &tenant, &route.route, &before, (status, body)).await;
    }
    // The admin's key was neither replaced nor given a grace: it still acts, as the admin.
    assert_eq!(app.call(app.key_request(Method::GET, "/roles", &admin_key)).await.0, 200);
}

/// The creator of a key, or a member holding everything the key carries (read afresh, not
/// from the 60 s cache), may rotate it or change its limits; a member who holds less may do
/// neither to an admin's key, which is acting through it. Revocation stays open to any holder
/// of `delete:api-keys`: it takes a grant away and hands out nothing.
#[tokio::test]
async fn a_key_is_rotated_or_changed_by_its_creator_or_by_a_member_holding_all_it_carries() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("premium", "admin@acting.example").await;
    let manager = ["read:api-keys", "create:api-keys", "update:api-keys", "delete:api-keys", "read:users"];
    let (member_id, member, role) = member_holding(&app, &admin, &tenant, "member@acting.example", &manager).await;
    let (all_id, _) = issue(&app, &admin, &["*"]).await;
    let (readers_id, _) = issue(&app, &admin, &["read:users"]).await;
    let (own_id, _) = issue(&app, &member, &["read:users", "update:api-keys"]).await;
    let rotate = |token: &str, id: &str| app.request(Method::POST, &format!("/api-keys/{id}/rotate"), Some(token)).json(&json!({}));
    let limit = |token: &str, id: &str| {
        app.request(Method::PATCH, &format!("/api-keys/{id}"), Some(token)).json(&json!({"rateLimit": {"requestsPerMinute": 1}}))
    };
    // The admin's `*` key: neither its secret nor its limits.
    let before = key_state(&app, &tenant).await;
    let (status, _, body) = app.call(limit(&member, &all_id)).await;
    assert_refused(&app, &tenant, "PATCH /api-keys/{keyId}", &before, (status, body)).await;
    let (status, _, body) =
        app.call(app.request(Method::PATCH, &format!("/api-keys/{all_id}"), Some(&member)).json(&json!({"name": "mine now"}))).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = app.call(rotate(&member, &all_id)).await;
    assert_refused(&app, &tenant, "POST /api-keys/{keyId}/rotate", &before, (status, body)).await;
    // A key carrying only what the member holds, and the member's own key: both.
    for id in [&readers_id, &own_id] {
        let (status, _, body) = app.call(rotate(&member, id)).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["data"]["key"].as_str().is_some_and(|k| k.starts_with(&format!("tk_{id}_"))), "{body}");
        assert_eq!(app.call(limit(&member, id)).await.0, 200);
    }
    // The admin holds everything any key carries: it may rotate the member's key.
    assert_eq!(app.call(rotate(&admin, &own_id)).await.0, 200);
    // The member loses read:users, written straight into its role, so that only a fresh read
    // can know: the admin's read:users key is out of its reach at once, its own key is not.
    let held: Vec<&str> = manager.iter().copied().filter(|p| *p != "read:users").collect();
    raw_collection(&app.db, "roles").await.update_one(doc! {"_id": role}, doc! {"$set": {"permissions": held}}).await.unwrap();
    let (status, _, body) = app.call(rotate(&member, &readers_id)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("read:users"), "{body}");
    assert_eq!(app.call(rotate(&member, &own_id)).await.0, 200, "a creator may always rotate its own key");
    // Revocation of the admin's key by a holder of delete:api-keys: a denial, allowed.
    let (status, _, body) = app.call(app.request(Method::POST, &format!("/api-keys/{all_id}/revoke"), Some(&member))).await;
    assert_eq!((status, body["data"]["status"].as_str()), (200, Some("revoked")), "{body}");
    let own =
        raw_collection(&app.db, "apiKeys").await.find_one(doc! {"_id": ObjectId::parse_str(&own_id).unwrap()}).await.unwrap().unwrap();
    assert_eq!(own.get_object_id("createdBy").unwrap(), member_id);
}

/// Key ids are 12 random bytes (docs/ARCHITECTURE.md §13), not `ObjectId::new()`'s time, process and
/// counter: two keys made in a row share neither today's time nor successive counters, so
/// they bracket nothing. Their form is unchanged: `tk_<24 hex>_<secret>`.
#[tokio::test]
async fn keys_made_in_a_row_have_unrelated_random_ids() {
    let app = spawn_app().await;
    let (admin, _) = app.tenant_with_admin("premium", "admin@random-ids.example").await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (id, key) = issue(&app, &admin, &["read:users"]).await;
        assert!(id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert!(key.starts_with(&format!("tk_{id}_")) && key.len() == 28 + 43, "{key}");
        assert_eq!(app.call(app.key_request(Method::GET, "/users", &key)).await.0, 200);
        ids.push(ObjectId::parse_str(&id).unwrap());
    }
    let near_now = ids.iter().filter(|id| (id.timestamp().timestamp_millis() / 1000 - now).abs() <= 86_400).count();
    assert!(near_now <= 1, "{near_now} of 4 ids start with today's time, as ObjectId::new() makes them: {ids:?}");
    let counter = |id: &ObjectId| u32::from_be_bytes([0, id.bytes()[9], id.bytes()[10], id.bytes()[11]]);
    let ordered = ids.windows(2).filter(|w| counter(&w[1]).wrapping_sub(counter(&w[0])) & 0xff_ffff < 1 << 12).count();
    assert!(ordered <= 1, "{ordered} ids follow their predecessor's counter closely: {ids:?}");
}
