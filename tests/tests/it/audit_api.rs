//! The audit log queries, black-box through the local API: gated on the plan feature and the
//! permission, filtered, newest first, cursor-paged stably under inserts, and confined to the
//! caller's tenant.

use mongodb::bson::doc;
use reqwest::Method;
use serde_json::{json, Value};
use tenancy_tests::app::{spawn_app, TestApp};
use tenancy_tests::raw_collection;

async fn tenant(app: &TestApp, plan: &str, admin_email: &str) -> (String, String) {
    app.tenant_with_admin(plan, admin_email).await
}

async fn page(app: &TestApp, token: &str, query: &str) -> Value {
    let (status, _, body) = app.call(app.request(Method::GET, &format!("/audit-logs?{query}"), Some(token))).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["data"].clone()
}

#[tokio::test]
async fn the_audit_log_needs_the_plan_feature_and_the_permission() {
    let app = spawn_app().await;
    let (free_admin, _) = tenant(&app, "free", "admin@free.example").await;
    let (status, _, body) = app.call(app.request(Method::GET, "/audit-logs", Some(&free_admin))).await;
    assert_eq!(status, 403);
    assert_eq!(body["message"], "The free plan does not include the feature audit_logs");
    let (admin, id) = tenant(&app, "basic", "admin@basic.example").await;
    assert_eq!(app.call(app.request(Method::GET, "/audit-logs", Some(&admin))).await.0, 200);
    let (_, user) = app.seed_user(&id, "user@basic.example", "user", "active").await;
    let (status, _, body) = app.call(app.request(Method::GET, "/audit-logs", Some(&user))).await;
    assert_eq!(status, 403, "{body}");
    // A downgrade takes effect on the next call.
    let superadmin = app.superadmin().await;
    app.call(app.request(Method::PATCH, &format!("/tenants/{id}/settings/billing"), Some(&superadmin)).json(&json!({"plan": "free"})))
        .await;
    assert_eq!(app.call(app.request(Method::GET, "/audit-logs", Some(&admin))).await.0, 403);
}

#[tokio::test]
async fn entries_are_filtered_newest_first_and_paged_by_a_cursor_stable_under_inserts() {
    let app = spawn_app().await;
    let (admin, id) = tenant(&app, "basic", "admin@acme.example").await;
    for i in 0..5 {
        let body = json!({"name": format!("Role{i}"), "permissions": ["read:users"]});
        assert_eq!(app.call(app.request(Method::POST, "/roles", Some(&admin)).json(&body)).await.0, 201);
    }
    let first = page(&app, &admin, "resource=role&limit=2").await;
    let names = |p: &Value| {
        p["auditLogs"].as_array().unwrap().iter().map(|e| e["details"]["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(names(&first), ["Role4", "Role3"]);
    // An entry written between pages does not shift the next one.
    app.call(app.request(Method::POST, "/roles", Some(&admin)).json(&json!({"name": "Late", "permissions": ["read:users"]}))).await;
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = page(&app, &admin, &format!("resource=role&limit=2&cursor={cursor}")).await;
    assert_eq!(names(&second), ["Role2", "Role1"]);
    let third = page(&app, &admin, &format!("resource=role&limit=2&cursor={}", second["nextCursor"].as_str().unwrap())).await;
    assert_eq!(names(&third), ["Role0"]);
    assert!(third["nextCursor"].is_null());
    let created = page(&app, &admin, "action=tenant.created").await;
    assert_eq!(created["auditLogs"].as_array().unwrap().len(), 1);
    assert_eq!(created["auditLogs"][0]["resourceId"], id.as_str());
    let far = page(&app, &admin, "from=2099-01-01T00:00:00Z").await;
    assert!(far["auditLogs"].as_array().unwrap().is_empty());
    for bad in
        ["action=tenant.exploded", "resource=spaceship", "cursor=nope", "from=yesterday", "limit=0", "limit=101", "userId=", "sort=asc"]
    {
        let (status, _, body) = app.call(app.request(Method::GET, &format!("/audit-logs?{bad}"), Some(&admin))).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test]
async fn another_tenant_s_entries_are_invisible_and_malformed_ids_400s() {
    let app = spawn_app().await;
    let (a, _) = tenant(&app, "basic", "admin@a.example").await;
    let (_, b) = tenant(&app, "basic", "admin@b.example").await;
    let theirs = raw_collection(&app.db, "auditLogs").await.find_one(doc! {"tenantId": &b}).await.unwrap().unwrap();
    let theirs = theirs.get_object_id("_id").unwrap();
    assert_eq!(app.call(app.request(Method::GET, &format!("/audit-logs/{theirs}"), Some(&a))).await.0, 404);
    let mine = page(&app, &a, "limit=100").await;
    assert!(mine["auditLogs"].as_array().unwrap().iter().all(|e| e["resourceId"] != b.as_str()), "{mine}");
    assert_eq!(app.call(app.request(Method::GET, "/audit-logs/not-an-id", Some(&a))).await.0, 400);
    let own = mine["auditLogs"][0]["id"].as_str().unwrap();
    let (status, _, entry) = app.call(app.request(Method::GET, &format!("/audit-logs/{own}"), Some(&a))).await;
    assert_eq!((status, entry["data"]["id"].as_str()), (200, Some(own)));
}
