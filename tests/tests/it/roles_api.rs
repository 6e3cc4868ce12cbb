//! Roles through the API: names that could pass for a system role's.

use mongodb::bson::doc;
use reqwest::Method;
use serde_json::json;
use tenancy_tests::app::spawn_app;
use tenancy_tests::raw_collection;

/// A custom role named like a system role whatever the case (`Admin`, `VIEWER`) would pass for
/// it in any list of roles: a 409 at creation and at rename, and nothing is written.
#[tokio::test]
async fn a_custom_role_cannot_take_a_system_role_s_name_in_any_case() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@names.example").await;
    for name in ["Admin", "VIEWER", "User", "admin"] {
        let body = json!({"name": name, "permissions": ["read:users"]});
        let (status, _, reply) = app.call(app.request(Method::POST, "/roles", Some(&admin)).json(&body)).await;
        assert_eq!(status, 409, "{name}: {reply}");
    }
    let roles = raw_collection(&app.db, "roles").await;
    assert_eq!(roles.count_documents(doc! {"tenantId": &tenant}).await.unwrap(), 3, "only the system roles");
    let (status, _, support) =
        app.call(app.request(Method::POST, "/roles", Some(&admin)).json(&json!({"name": "Support", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 201, "{support}");
    let id = support["data"]["id"].as_str().unwrap();
    for name in ["ADMIN", "Viewer"] {
        let (status, _, reply) =
            app.call(app.request(Method::PATCH, &format!("/roles/{id}"), Some(&admin)).json(&json!({"name": name}))).await;
        assert_eq!(status, 409, "{name}: {reply}");
    }
    let stored = roles.find_one(doc! {"_id": mongodb::bson::oid::ObjectId::parse_str(id).unwrap()}).await.unwrap().unwrap();
    assert_eq!(stored.get_str("name").unwrap(), "Support");
    let (status, _, _) =
        app.call(app.request(Method::PATCH, &format!("/roles/{id}"), Some(&admin)).json(&json!({"name": "Administrators"}))).await;
    assert_eq!(status, 200, "a name that merely contains one is free");
}
