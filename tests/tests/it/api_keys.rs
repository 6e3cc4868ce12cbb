//! API keys end to end, through the local API and the same REQUEST authorizer the deployed
//! `authorizer` Lambda runs: issuing, the permission matrix, key callers at admission, exact
//! per-key windows at 2N concurrency, revocation and rotation timing, and audited refusals.

use mongodb::bson::doc;
use reqwest::Method;
use serde_json::{json, Value};
use shared::clock::{Clock, ManualClock};
use std::time::Duration;
use tenancy_tests::app::{spawn_app, spawn_app_with_clock, TestApp};
use tenancy_tests::raw_collection;

/// Issues a key as `token`: its id and its whole key.
async fn issue(app: &TestApp, token: &str, body: Value) -> (String, String) {
    let (status, _, reply) = app.call(app.request(Method::POST, "/api-keys", Some(token)).json(&body)).await;
    assert_eq!(status, 201, "{reply}");
    let data = &reply["data"];
    (data["id"].as_str().unwrap().to_owned(), data["key"].as_str().unwrap().to_owned())
}

async fn audit_actions(app: &TestApp, tenant: &str, action: &str) -> u64 {
    raw_collection(&app.db, "auditLogs").await.count_documents(doc! {"tenantId": tenant, "action": action}).await.unwrap()
}

#[tokio::test]
async fn a_key_is_shown_once_stored_as_a_hash_and_listed_without_it() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@keys.example").await;
    let (id, key) = issue(&app, &admin, json!({"name": "CI", "permissions": ["read:users"]})).await;
    assert!(key.starts_with(&format!("tk_{id}_")), "{key}");
    let stored = raw_collection(&app.db, "apiKeys")
        .await
        .find_one(doc! {"_id": mongodb::bson::oid::ObjectId::parse_str(&id).unwrap()})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_str("tenantId").unwrap(), tenant);
    // tk_ + 24 hex + _: the rest is the secret (base64url, which may itself hold `_`).
    let secret = &key[28..];
    assert_eq!(secret.len(), 43);
    assert!(!stored.to_string().contains(secret), "the secret is never stored");
    let (status, _, listed) = app.call(app.request(Method::GET, "/api-keys", Some(&admin))).await;
    assert_eq!(status, 200, "{listed}");
    let first = &listed["data"]["apiKeys"][0];
    assert_eq!(first["prefix"], format!("tk_{id}"));
    assert_eq!(
        first["rateLimit"],
        json!({"requestsPerMinute": 60, "requestsPerHour": 1000, "requestsPerDay": 10000}),
        "the plan's bounds by default"
    );
    assert_eq!(first["status"], "active");
    let text = listed.to_string();
    assert!(!text.contains(&key) && !text.contains("keyHash") && first.get("key").is_none(), "{text}");
    let (_, _, one) = app.call(app.request(Method::GET, &format!("/api-keys/{id}"), Some(&admin))).await;
    assert!(one["data"].get("key").is_none());
    assert_eq!(audit_actions(&app, &tenant, "api-key.created").await, 1);
}

#[tokio::test]
async fn issuing_is_bounded_by_the_plan_the_creator_and_the_body() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@bounds.example").await;
    let bad = [
        json!({"name": "x", "permissions": ["read:users"], "rateLimit": {"requestsPerMinute": 61}}),
        json!({"name": "x", "permissions": ["read:users"], "expiresAt": "2020-01-01T00:00:00Z"}),
        json!({"name": "x", "permissions": ["launch:rockets"]}),
        json!({"name": "x", "permissions": []}),
        json!({"name": "x", "permissions": ["read:users"], "tenantId": "tn_other"}),
        json!({"name": {"$ne": 1}, "permissions": ["read:users"]}),
    ];
    for body in bad {
        let (status, _, reply) = app.call(app.request(Method::POST, "/api-keys", Some(&admin)).json(&body)).await;
        assert_eq!(status, 400, "{body}: {reply}");
    }
    // A viewer may read keys but not issue them; a key never holds more than its creator.
    let (_, viewer) = app.seed_user(&tenant, "viewer@bounds.example", "viewer", "active").await;
    assert_eq!(app.call(app.request(Method::GET, "/api-keys", Some(&viewer))).await.0, 200);
    let (status, _, _) =
        app.call(app.request(Method::POST, "/api-keys", Some(&viewer)).json(&json!({"name": "v", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 403);
    let (_, user) = app.seed_user(&tenant, "user@bounds.example", "user", "active").await;
    assert_eq!(app.call(app.request(Method::GET, "/api-keys", Some(&user))).await.0, 403);
    // Five keys on basic; the sixth is a 409 until one is revoked.
    let mut ids = vec![];
    for i in 0..5 {
        ids.push(issue(&app, &admin, json!({"name": format!("k{i}"), "permissions": ["read:users"]})).await.0);
    }
    let (status, _, reply) =
        app.call(app.request(Method::POST, "/api-keys", Some(&admin)).json(&json!({"name": "six", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(app.call(app.request(Method::POST, &format!("/api-keys/{}/revoke", ids[0]), Some(&admin))).await.0, 200);
    issue(&app, &admin, json!({"name": "six", "permissions": ["read:users"]})).await;
    assert_eq!(raw_collection(&app.db, "apiKeys").await.count_documents(doc! {"tenantId": &tenant}).await.unwrap(), 6);
    // A plan without the feature: a 403 that names it.
    let (free_admin, _) = app.tenant_with_admin("free", "admin@free-keys.example").await;
    let (status, _, reply) = app.call(app.request(Method::GET, "/api-keys", Some(&free_admin))).await;
    assert_eq!(status, 403);
    assert_eq!(reply["message"], "The free plan does not include the feature api_keys");
}

#[tokio::test]
async fn a_key_acts_in_its_tenant_with_what_both_it_and_its_creator_hold() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@machine.example").await;
    let (_, key) = issue(&app, &admin, json!({"name": "reader", "permissions": ["read:users", "create:users"]})).await;
    let (status, _, users) = app.call(app.key_request(Method::GET, "/users", &key)).await;
    assert_eq!(status, 200, "{users}");
    assert_eq!(users["data"]["users"][0]["email"], "admin@machine.example");
    // Not granted to the key: refused, and the refusal is audited.
    assert_eq!(app.call(app.key_request(Method::GET, "/roles", &key)).await.0, 403);
    assert_eq!(audit_actions(&app, &tenant, "access.denied").await, 1);
    // A key never manages keys, whatever it holds.
    let (_, all) = issue(&app, &admin, json!({"name": "all", "permissions": ["*"]})).await;
    for (method, path) in [(Method::GET, "/api-keys"), (Method::POST, "/api-keys")] {
        let (status, _, reply) =
            app.call(app.key_request(method, path, &all).json(&json!({"name": "x", "permissions": ["read:users"]}))).await;
        assert_eq!(status, 403, "{path}: {reply}");
    }
    // Its calls count against the tenant's monthly quota like anyone's.
    let before = app.usage(&tenant).await;
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &key)).await.0, 200);
    assert_eq!(app.usage(&tenant).await, before + 1);
    // No key, a malformed key, a wrong secret, or both credentials at once: 401.
    let wrong = format!("{}{}", &key[..key.len() - 4], if key.ends_with("AAAA") { "BBBB" } else { "AAAA" });
    for bad in ["", "tk_nope", wrong.as_str()] {
        assert_eq!(app.call(app.key_request(Method::GET, "/users", bad)).await.0, 401, "{bad}");
    }
    assert_eq!(app.call(app.request(Method::GET, "/users", None)).await.0, 401);
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &key).bearer_auth(&admin)).await.0, 401);
    assert_eq!(audit_actions(&app, &tenant, "access.key-rejected").await, 1, "a wrong secret of a known key is audited");
    // The creator demoted to viewer: the key keeps read:users, loses create:users at once in
    // this process (other processes within the 60 s cache bound).
    let superadmin = app.superadmin().await;
    let admin_id = tenancy_tests::user_by_email(&app.db, "admin@machine.example").await.unwrap().get_object_id("_id").unwrap();
    let viewer = raw_collection(&app.db, "roles")
        .await
        .find_one(doc! {"tenantId": &tenant, "name": "viewer"})
        .await
        .unwrap()
        .unwrap()
        .get_object_id("_id")
        .unwrap();
    raw_collection(&app.db, "users").await.update_one(doc! {"_id": admin_id}, doc! {"$set": {"roles": [viewer.to_hex()]}}).await.unwrap();
    shared::admission::forget_tenant_members(&app.db, &shared::ids::TenantId::parse(&tenant).unwrap());
    let (status, _, reply) = app
        .call(
            app.key_request(Method::POST, "/users", &key).json(&json!({"email": "new@machine.example", "firstName": "N", "lastName": "U"})),
        )
        .await;
    assert_eq!(status, 403, "{reply}");
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &key)).await.0, 200);
    // The creator no longer active: every call of the key is refused.
    raw_collection(&app.db, "users").await.update_one(doc! {"_id": admin_id}, doc! {"$set": {"status": "inactive"}}).await.unwrap();
    shared::admission::forget_tenant_members(&app.db, &shared::ids::TenantId::parse(&tenant).unwrap());
    let (status, _, reply) = app.call(app.key_request(Method::GET, "/users", &key)).await;
    assert_eq!(status, 403, "{reply}");
    // The plan losing api_keys: refused, naming the feature, and not counted.
    raw_collection(&app.db, "users").await.update_one(doc! {"_id": admin_id}, doc! {"$set": {"status": "active"}}).await.unwrap();
    let (status, _, _) = app
        .call(app.request(Method::PATCH, &format!("/tenants/{tenant}/settings/billing"), Some(&superadmin)).json(&json!({"plan": "free"})))
        .await;
    assert_eq!(status, 200);
    let before = app.usage(&tenant).await;
    let (status, _, reply) = app.call(app.key_request(Method::GET, "/users", &key)).await;
    assert_eq!((status, reply["message"].as_str()), (403, Some("The free plan does not include the feature api_keys")));
    assert_eq!(app.usage(&tenant).await, before, "a refused key call is not counted");
}

/// 2N concurrent calls against a per-minute limit of N: exactly N pass, the rest get a 429 with
/// `Retry-After`, and only the N are counted in the tenant's month.
#[tokio::test]
async fn per_key_windows_are_exact_at_twice_the_limit() {
    const N: usize = 12;
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@burst.example").await;
    let (_, key) =
        issue(&app, &admin, json!({"name": "burst", "permissions": ["read:roles"], "rateLimit": {"requestsPerMinute": N}})).await;
    let before = app.usage(&tenant).await;
    let calls = (0..2 * N).map(|_| app.call(app.key_request(Method::GET, "/roles", &key)));
    let results = futures_util::future::join_all(calls).await;
    let allowed = results.iter().filter(|(s, _, _)| *s == 200).count();
    let limited: Vec<_> = results.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!((allowed, limited.len()), (N, N), "{:?}", results.iter().map(|r| r.0).collect::<Vec<_>>());
    for (_, headers, body) in limited {
        let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(body["message"], "The API key's rate limit is reached");
    }
    assert_eq!(app.usage(&tenant).await, before + N as i64, "a 429 is never counted");
}

/// The windows' counting update itself, straight against the database: 2N concurrent counts
/// under a bound of N give exactly N. On FerretDB this holds through the documented in-process
/// write serialisation (docs/ARCHITECTURE.md §6), as for the tenant's usage counter.
#[tokio::test]
async fn the_window_update_admits_exactly_its_bound() {
    const N: i64 = 20;
    let db = tenancy_tests::fresh_db().await;
    let windows_of = authorizer::key_windows(&db);
    let key = mongodb::bson::oid::ObjectId::new();
    let bounds = authorizer::WindowBounds {
        minute: "202611290130".into(),
        hour: "2026112901".into(),
        day: "20261129".into(),
        per_minute: N,
        per_hour: 1_000,
        per_day: 1_000,
        seen: vec!["m.202611290129".into()],
    };
    let results = futures_util::future::join_all((0..2 * N).map(|_| authorizer::count_call(&windows_of, key, &bounds))).await;
    let counted = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count() as i64;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(counted, N);
    let windows = windows_of.windows(key.into()).await.unwrap();
    assert_eq!((windows.get("m.202611290130"), windows.get("h.2026112901"), windows.get("d.20261129")), (N, N, N));
    // The next minute: a fresh window, and the stale one trimmed by the same update.
    let next = authorizer::WindowBounds { minute: "202611290131".into(), seen: windows.fields(), ..bounds };
    let after = authorizer::count_call(&windows_of, key, &next).await.unwrap().expect("room in the next minute");
    assert_eq!(after.get("m.202611290131"), 1);
    assert!(!after.fields().contains(&"m.202611290130".to_string()), "{:?}", after.fields());
    assert_eq!(after.get("h.2026112901"), N + 1);
}

#[tokio::test]
async fn revocation_takes_effect_on_the_next_call_and_a_rotated_secret_after_its_grace() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let (admin, tenant) = app.tenant_with_admin("premium", "admin@rotate.example").await;
    let (id, old) = issue(&app, &admin, json!({"name": "rotating", "permissions": ["read:users"]})).await;
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &old)).await.0, 200);
    let (status, _, rotated) = app
        .call(app.request(Method::POST, &format!("/api-keys/{id}/rotate"), Some(&admin)).json(&json!({"gracePeriodSeconds": 3600})))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["data"]["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated["data"]["previousKeyValidUntil"].is_string());
    // During the grace both work; one second past it only the new one does.
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &old)).await.0, 200);
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &new)).await.0, 200);
    clock.advance(Duration::from_secs(3601));
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &old)).await.0, 401);
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &new)).await.0, 200);
    // The default grace is a day.
    let (_, _, again) = app.call(app.request(Method::POST, &format!("/api-keys/{id}/rotate"), Some(&admin))).await;
    let newest = again["data"]["key"].as_str().unwrap().to_owned();
    clock.advance(Duration::from_secs(23 * 3600));
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &new)).await.0, 200);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &new)).await.0, 401);
    // Revocation: the very next call is refused, the old secret's grace included.
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &newest)).await.0, 200);
    let (status, _, revoked) = app.call(app.request(Method::POST, &format!("/api-keys/{id}/revoke"), Some(&admin))).await;
    assert_eq!((status, revoked["data"]["status"].as_str()), (200, Some("revoked")));
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &newest)).await.0, 401);
    let (status, _, _) = app.call(app.request(Method::POST, &format!("/api-keys/{id}/revoke"), Some(&admin))).await;
    assert_eq!(status, 409, "revoked already");
    assert_eq!(app.call(app.request(Method::POST, &format!("/api-keys/{id}/rotate"), Some(&admin))).await.0, 409);
    // lastUsedAt was recorded, at most once a minute.
    let (_, _, one) = app.call(app.request(Method::GET, &format!("/api-keys/{id}"), Some(&admin))).await;
    assert!(one["data"]["lastUsedAt"].is_string(), "{one}");
    assert_eq!(audit_actions(&app, &tenant, "api-key.rotated").await, 2);
    assert_eq!(audit_actions(&app, &tenant, "api-key.revoked").await, 1);
}

#[tokio::test]
async fn an_expired_key_is_refused_and_gives_its_place_back() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let (admin, _) = app.tenant_with_admin("basic", "admin@expiry.example").await;
    let soon = shared::clock::rfc3339_millis(mongodb::bson::DateTime::from_millis(clock.now_ms() + 60_000));
    let (id, key) = issue(&app, &admin, json!({"name": "short", "permissions": ["read:users"], "expiresAt": soon})).await;
    for i in 0..4 {
        issue(&app, &admin, json!({"name": format!("k{i}"), "permissions": ["read:users"]})).await;
    }
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &key)).await.0, 200);
    clock.advance(Duration::from_secs(61));
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &key)).await.0, 401);
    let (_, _, shown) = app.call(app.request(Method::GET, &format!("/api-keys/{id}"), Some(&admin))).await;
    assert_eq!(shown["data"]["status"], "expired");
    let (_, _, listed) = app.call(app.request(Method::GET, "/api-keys?status=expired", Some(&admin))).await;
    assert_eq!(listed["data"]["pagination"]["total"], 1);
    // Five keys were issued on basic, one has expired: a sixth fits.
    issue(&app, &admin, json!({"name": "replacement", "permissions": ["read:users"]})).await;
    let (status, _, _) =
        app.call(app.request(Method::PATCH, &format!("/api-keys/{id}"), Some(&admin)).json(&json!({"name": "late"}))).await;
    assert_eq!(status, 409, "an expired key cannot be changed");
}

/// Refusals are audited in the caller's tenant, at most 20 a minute per actor (the rest counted
/// in a summary entry, tests/tests/it/refusals.rs).
#[tokio::test]
async fn refusals_are_audited_and_rate_limited_per_actor() {
    // A still clock: the flood cannot straddle two minutes.
    let app = spawn_app_with_clock(ManualClock::starting_now()).await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@probe.example").await;
    let (_, other) = app.tenant_with_admin("basic", "admin@target.example").await;
    let (status, _, _) = app.call(app.request(Method::GET, &format!("/tenants/{other}"), Some(&admin))).await;
    assert_eq!(status, 403);
    let cross = raw_collection(&app.db, "auditLogs")
        .await
        .find_one(doc! {"tenantId": &tenant, "action": "access.cross-tenant"})
        .await
        .unwrap()
        .expect("audited");
    assert_eq!(cross.get_document("details").unwrap().get_str("namedTenantId").unwrap(), other);
    let (_, user) = app.seed_user(&tenant, "user@probe.example", "user", "active").await;
    let flood = (0..40).map(|_| app.call(app.request(Method::GET, "/roles", Some(&user))));
    assert!(futures_util::future::join_all(flood).await.iter().all(|r| r.0 == 403));
    let denied =
        raw_collection(&app.db, "auditLogs").await.count_documents(doc! {"tenantId": &tenant, "action": "access.denied"}).await.unwrap();
    assert_eq!(denied, shared::db::REFUSALS_PER_MINUTE as u64, "the flood, capped by the member's own budget");
    let summary = raw_collection(&app.db, "auditLogs")
        .await
        .find_one(doc! {"tenantId": &tenant, "action": "access.refusals-dropped"})
        .await
        .unwrap()
        .expect("a summary");
    assert_eq!(summary.get_document("details").unwrap().get_i64("dropped").unwrap(), 40 - shared::db::REFUSALS_PER_MINUTE);
}

/// A downgrade brings every key within the new plan's bounds on the next call.
#[tokio::test]
async fn a_downgrade_clamps_the_keys_limits_to_the_new_plan() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("premium", "admin@downgrade.example").await;
    let (id, _) = issue(
        &app,
        &admin,
        json!({"name": "big", "permissions": ["read:users"], "rateLimit": {"requestsPerMinute": 500, "requestsPerDay": 5000}}),
    )
    .await;
    let superadmin = app.superadmin().await;
    let (status, _, _) = app
        .call(app.request(Method::PATCH, &format!("/tenants/{tenant}/settings/billing"), Some(&superadmin)).json(&json!({"plan": "basic"})))
        .await;
    assert_eq!(status, 200);
    let (_, _, shown) = app.call(app.request(Method::GET, &format!("/api-keys/{id}"), Some(&admin))).await;
    assert_eq!(shown["data"]["rateLimit"], json!({"requestsPerMinute": 60, "requestsPerHour": 1000, "requestsPerDay": 5000}), "{shown}");
}

/// What the authorizer costs in front of every key call, counted by the driver's command
/// monitor: a warm authorization is two round trips, the key and then its windows.
#[tokio::test]
async fn a_warm_key_authorization_is_two_round_trips() {
    use authorizer::{Authorizer, Verdict};
    use std::sync::atomic::Ordering::SeqCst;
    let (db, commands) = shared::Db::connect_counting(&tenancy_tests::fresh_db_config()).await.unwrap();
    let db = tenancy_tests::with_keyring(db).await;
    migrations::setup(&db).await.unwrap();
    let deps = shared::http::Deps::new(db.clone()).with_directory(tenancy_tests::test_directory().await);
    local_api::fixtures::seed_events_tenant(&deps).await.unwrap();
    let authorizer = Authorizer::new(db.clone(), None);
    let key = format!("tk_{}_{}", local_api::fixtures::API_KEY, local_api::fixtures::API_KEY_SECRET);
    let header = |name: &str| (name == "x-api-key").then(|| key.clone());
    let meta = shared::http::RequestMeta { request_id: "r".into(), ip: "127.0.0.1".into(), user_agent: "test".into() };
    // Cold: the server's flavor is asked once, and lastUsedAt written.
    assert!(matches!(authorizer.authorize(&header, &meta).await.unwrap(), Verdict::Allow { .. }));
    let before = commands.load(SeqCst);
    assert!(matches!(authorizer.authorize(&header, &meta).await.unwrap(), Verdict::Allow { .. }));
    assert_eq!(commands.load(SeqCst) - before, 2);
}
