//! The tenants routes, black-box through the local API, with real tokens from moto.

use futures_util::future::join_all;
use mongodb::bson::doc;
use reqwest::Method;
use serde_json::{json, Value};
use tenancy_tests::app::{spawn_app, TestApp};
use tenancy_tests::raw_collection;

async fn count(app: &TestApp, collection: &str, filter: mongodb::bson::Document) -> u64 {
    raw_collection(&app.db, collection).await.count_documents(filter).await.unwrap()
}

fn acme() -> Value {
    json!({"name": "Acme Corp", "domain": "acme.example", "adminEmail": "admin@acme.example", "plan": "basic"})
}

fn free_co() -> Value {
    json!({"name": "Free Co", "adminEmail": "a@free.example"})
}

/// A running app, a superadmin's token, and one tenant made from `body` with its admin's token.
struct WithTenant {
    app: TestApp,
    superadmin: String,
    id: String,
    admin: String,
}

async fn with_tenant(body: Value) -> WithTenant {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let id = app.create_tenant(&superadmin, body.clone()).await["tenantId"].as_str().unwrap().to_owned();
    let admin = app.member(body["adminEmail"].as_str().unwrap(), &id).await;
    WithTenant { app, superadmin, id, admin }
}

#[tokio::test]
async fn creating_a_tenant_makes_its_three_system_roles_and_its_admin_user() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    let tenant = app.create_tenant(&token, acme()).await;
    let id = tenant["tenantId"].as_str().unwrap();
    assert!(id.starts_with("tn_") && id.len() == 29, "{id}");
    assert_eq!(tenant["settings"]["billing"]["plan"], "basic");
    assert_eq!(tenant["settings"]["maxUsers"], 25);
    assert_eq!(tenant["settings"]["billing"]["maxApiCalls"], 10_000);
    assert_eq!(tenant["status"], "active");

    let roles = raw_collection(&app.db, "roles").await;
    let mut found = Vec::new();
    for name in ["admin", "user", "viewer"] {
        let role = roles.find_one(doc! {"tenantId": id, "name": name}).await.unwrap().expect(name);
        assert!(role.get_bool("isSystem").unwrap());
        found.push(role);
    }
    let perms = |i: usize| found[i].get_array("permissions").unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(perms(0), ["*"]);
    assert_eq!(perms(1), ["read:profile", "update:profile"]);
    assert_eq!(perms(2), ["read:*"]);

    let admin = raw_collection(&app.db, "users").await.find_one(doc! {"tenantId": id}).await.unwrap().unwrap();
    assert_eq!(tenancy_tests::user_by_email(&app.db, "admin@acme.example").await.unwrap().get_object_id("_id"), admin.get_object_id("_id"));
    assert!(matches!(admin.get("email"), Some(mongodb::bson::Bson::Binary(_))), "the e-mail is stored sealed: {admin:?}");
    assert_eq!(admin.get_array("roles").unwrap()[0].as_str().unwrap(), found[0].get_object_id("_id").unwrap().to_hex());
    // The admin was created in Cognito (which sends the invitation) and linked by its sub.
    let cognito = app.cognito.admin_get_user().user_pool_id(&app.pool.user_pool_id).username("admin@acme.example").send().await.unwrap();
    let sub = cognito.user_attributes().iter().find(|a| a.name() == "sub").and_then(|a| a.value()).unwrap();
    assert_eq!(admin.get_str("cognitoUserId").unwrap(), sub);
    assert_eq!(admin.get_str("status").unwrap(), "pending", "active only once it signs in");
    let tenant_id = cognito.user_attributes().iter().find(|a| a.name() == "custom:tenantId").and_then(|a| a.value());
    assert_eq!(tenant_id, Some(id));

    let audit = raw_collection(&app.db, "auditLogs").await.find_one(doc! {"tenantId": id}).await.unwrap().unwrap();
    assert_eq!(audit.get_str("action").unwrap(), "tenant.created");
    assert!(!audit.get_str("requestId").unwrap().is_empty());
    assert_eq!(audit.get_str("ip").unwrap(), "127.0.0.1");
}

#[tokio::test]
async fn invalid_creations_are_400s_and_create_nothing() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    let cases: Vec<(&str, String)> = vec![
        ("missing adminEmail", json!({"name": "A"}).to_string()),
        ("unknown field", json!({"name": "A", "adminEmail": "a@a.example", "status": "suspended"}).to_string()),
        ("operator injection", json!({"name": {"$ne": ""}, "adminEmail": "a@a.example"}).to_string()),
        ("operator in email", json!({"name": "A", "adminEmail": {"$gt": ""}}).to_string()),
        ("wrong type", json!({"name": 42, "adminEmail": "a@a.example"}).to_string()),
        ("unknown plan", json!({"name": "A", "adminEmail": "a@a.example", "plan": "platinum"}).to_string()),
        ("bad email", json!({"name": "A", "adminEmail": "not-an-email"}).to_string()),
        ("bad domain", json!({"name": "A", "adminEmail": "a@a.example", "domain": "$where.com"}).to_string()),
        ("blank name", json!({"name": "   ", "adminEmail": "a@a.example"}).to_string()),
        ("malformed JSON", "{\"name\": ".to_string()),
        ("empty body", String::new()),
        ("an array", "[]".to_string()),
    ];
    for (what, body) in cases {
        let (status, _, json) =
            app.call(app.request(Method::POST, "/tenants", Some(&token)).header("content-type", "application/json").body(body)).await;
        assert_eq!(status, 400, "{what}: {json}");
        assert_eq!(json["error"], "Bad Request", "{what}");
        assert!(json["requestId"].as_str().is_some_and(|r| !r.is_empty()), "{what}");
    }
    let (status, _, json) = app
        .call(app.request(Method::POST, "/tenants", Some(&token)).json(&json!({"name": "A", "adminEmail": "a@a.example", "plan": "gold"})))
        .await;
    assert_eq!((status, json["details"][0]["field"].as_str()), (400, Some("plan")));
    let huge = json!({"name": "x".repeat(70 * 1024), "adminEmail": "a@a.example"});
    let (status, _, _) = app.call(app.request(Method::POST, "/tenants", Some(&token)).json(&huge)).await;
    assert_eq!(status, 413);
    assert_eq!(count(&app, "tenants", doc! {}).await, 0);
    assert_eq!(count(&app, "roles", doc! {}).await, 0);
}

#[tokio::test]
async fn callers_without_a_valid_token_get_401_and_non_superadmins_403() {
    let app = spawn_app().await;
    let (status, _, body) = app.call(app.request(Method::GET, "/tenants", None)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["message"], "Unauthorized");
    let (status, _, _) = app.call(app.request(Method::GET, "/tenants", Some("not.a.jwt"))).await;
    assert_eq!(status, 401);
    // A real token, tampered with: the signature no longer matches.
    let token = app.superadmin().await;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    let (status, _, _) = app.call(app.request(Method::GET, "/tenants", Some(&parts.join(".")))).await;
    assert_eq!(status, 401);
    // A real token of another pool: wrong issuer and audience.
    let other = spawn_app().await;
    let foreign = other.superadmin().await;
    let (status, _, _) = app.call(app.request(Method::GET, "/tenants", Some(&foreign))).await;
    assert_eq!(status, 401);
    let member = app.member("someone@acme.example", "tn_acmeacmeacme").await;
    for (method, path) in [(Method::GET, "/tenants"), (Method::POST, "/tenants")] {
        let (status, _, body) = app.call(app.request(method, path, Some(&member)).json(&acme())).await;
        assert_eq!(status, 403, "{body}");
    }
    assert_eq!(count(&app, "tenants", doc! {}).await, 0);
}

#[tokio::test]
async fn a_taken_domain_is_a_409() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    app.create_tenant(&token, acme()).await;
    let mut again = acme();
    again["domain"] = json!("ACME.example");
    let (status, _, body) = app.call(app.request(Method::POST, "/tenants", Some(&token)).json(&again)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(count(&app, "tenants", doc! {}).await, 1);
    assert_eq!(count(&app, "roles", doc! {}).await, 3, "the refused creation made no roles");
}

#[tokio::test]
async fn a_failure_part_way_through_creation_leaves_nothing_behind() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    // A trap: a global unique index on users.status and a record elsewhere that is already
    // pending, so that the admin's pending record insert (after the roles) fails.
    let users = raw_collection(&app.db, "users").await;
    users
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! {"status": 1})
                .options(mongodb::options::IndexOptions::builder().unique(true).name("trap".to_string()).build())
                .build(),
        )
        .await
        .unwrap();
    users.insert_one(doc! {"tenantId": "tn_elsewhere", "status": "pending"}).await.unwrap();
    let (status, _, body) = app.call(app.request(Method::POST, "/tenants", Some(&token)).json(&acme())).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["message"], "An unexpected error occurred");
    assert_eq!(count(&app, "tenants", doc! {}).await, 0);
    assert_eq!(count(&app, "roles", doc! {}).await, 0, "the roles were compensated");
    assert_eq!(count(&app, "users", doc! {}).await, 1, "only the trap's user remains");
    let claims = tenancy_tests::vault_database(&app.db)
        .await
        .collection::<mongodb::bson::Document>("emailIndex")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(claims, 0, "the admin's global e-mail claim was released");
    assert_eq!(count(&app, "tenantDomains", doc! {}).await, 0, "the domain claim was released");
    users.drop_index("trap").await.unwrap();
    app.create_tenant(&token, acme()).await;
}

#[tokio::test]
async fn tenants_are_listed_newest_first_with_pagination() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    for i in 0..3 {
        app.create_tenant(&token, json!({"name": format!("Tenant {i}"), "adminEmail": format!("a{i}@t.example")})).await;
    }
    let (status, _, page1) = app.call(app.request(Method::GET, "/tenants?page=1&limit=2", Some(&token))).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = page1["data"]["tenants"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Tenant 2", "Tenant 1"]);
    assert_eq!(page1["data"]["pagination"], json!({"page": 1, "limit": 2, "total": 3, "pages": 2}));
    let (_, _, page2) = app.call(app.request(Method::GET, "/tenants?page=2&limit=2", Some(&token))).await;
    assert_eq!(page2["data"]["tenants"][0]["name"], "Tenant 0");
    for bad in ["limit=101", "limit=0", "page=0", "page=x", "status=deleted", "sort=name", "limit=1&limit=2"] {
        let (status, _, body) = app.call(app.request(Method::GET, &format!("/tenants?{bad}"), Some(&token))).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let long = "a".repeat(101);
    let (status, _, _) = app.call(app.request(Method::GET, &format!("/tenants?search={long}"), Some(&token))).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn search_treats_regex_metacharacters_literally() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    for (i, name) in ["a.c", "abc", "x(y", "Plus+One"].into_iter().enumerate() {
        app.create_tenant(&token, json!({"name": name, "adminEmail": format!("a{i}@t.example")})).await;
    }
    let search = |q: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            let url = format!("/tenants?search={}", q);
            let (status, _, body) = app.call(app.request(Method::GET, &url, Some(&token))).await;
            assert_eq!(status, 200, "{q}: {body}");
            let mut names: Vec<String> =
                body["data"]["tenants"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
            names.sort();
            names
        }
    };
    assert_eq!(search("a.c").await, ["a.c"]);
    assert_eq!(search("x%28").await, ["x(y"]);
    assert_eq!(search("plus%2B").await, ["Plus+One"], "case-insensitive, + literal");
    assert!(search(".*").await.is_empty());
    assert!(search("%5B").await.is_empty(), "an unbalanced [ is not a regex error");
    let (_, _, suspended) = app.call(app.request(Method::GET, "/tenants?status=suspended", Some(&token))).await;
    assert_eq!(suspended["data"]["pagination"]["total"], 0);
}

#[tokio::test]
async fn a_tenant_is_readable_by_a_superadmin_and_its_members_only() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    let a = app.create_tenant(&token, acme()).await["tenantId"].as_str().unwrap().to_owned();
    let b = app.create_tenant(&token, json!({"name": "Beta", "adminEmail": "admin@beta.example"})).await["tenantId"]
        .as_str()
        .unwrap()
        .to_owned();
    let member_of_b = app.member("admin@beta.example", &b).await;
    let (status, _, body) = app.call(app.request(Method::GET, &format!("/tenants/{b}"), Some(&member_of_b))).await;
    assert_eq!((status, body["data"]["tenantId"].as_str()), (200, Some(b.as_str())));
    let (_, plain_member) = app.seed_user(&b, "someone@beta.example", "user", "active").await;
    let (status, _, body) = app.call(app.request(Method::GET, &format!("/tenants/{b}/limits"), Some(&plain_member))).await;
    assert_eq!(status, 200, "any member reads its own tenant, whatever its role: {body}");
    let stranger = app.member("stranger@beta.example", &b).await;
    let (status, _, body) = app.call(app.request(Method::GET, &format!("/tenants/{b}"), Some(&stranger))).await;
    assert_eq!(status, 403, "a token naming the tenant is not membership: {body}");
    let (status, _, body) = app.call(app.request(Method::GET, &format!("/tenants/{a}"), Some(&member_of_b))).await;
    assert_eq!(status, 403, "a token of another tenant's user cannot read it: {body}");
    let (status, _, _) = app.call(app.request(Method::GET, &format!("/tenants/{a}"), Some(&token))).await;
    assert_eq!(status, 200);
    let (status, _, _) = app.call(app.request(Method::GET, "/tenants/tn_doesnotexist", Some(&token))).await;
    assert_eq!(status, 404);
    let (status, _, body) = app.call(app.request(Method::GET, "/tenants/bad%20id!", Some(&token))).await;
    assert_eq!(status, 400, "{body}");
    let no_tenant = app.token("drifter@nowhere.example", None, &[]).await;
    let (status, _, _) = app.call(app.request(Method::GET, &format!("/tenants/{a}"), Some(&no_tenant))).await;
    assert_eq!(status, 403, "a caller with no tenant claim is refused, never defaulted");
}

#[tokio::test]
async fn patch_updates_only_the_allow_listed_fields() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    let id = app.create_tenant(&token, acme()).await["tenantId"].as_str().unwrap().to_owned();
    app.create_tenant(&token, json!({"name": "Other", "domain": "other.example", "adminEmail": "o@other.example"})).await;
    let path = format!("/tenants/{id}");
    for bad in
        [json!({"status": "suspended"}), json!({"settings": {"maxUsers": -1}}), json!({"tenantId": "x"}), json!({}), json!({"name": ""})]
    {
        let (status, _, body) = app.call(app.request(Method::PATCH, &path, Some(&token)).json(&bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _, _) = app.call(app.request(Method::PATCH, &path, Some(&token)).json(&json!({"domain": "other.example"}))).await;
    assert_eq!(status, 409);
    let (status, _, body) =
        app.call(app.request(Method::PATCH, &path, Some(&token)).json(&json!({"name": "Acme Renamed", "domain": "acme2.example"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["data"]["name"].as_str(), body["data"]["domain"].as_str()), (Some("Acme Renamed"), Some("acme2.example")));
    assert_eq!(body["data"]["status"], "active");
    // The old domain is free again.
    app.create_tenant(&token, json!({"name": "Taker", "domain": "acme.example", "adminEmail": "t@t.example"})).await;
    let (status, _, _) = app.call(app.request(Method::PATCH, "/tenants/tn_missing", Some(&token)).json(&json!({"name": "x"}))).await;
    assert_eq!(status, 404);
    let member = app.member("admin@acme.example", &id).await;
    let (status, _, _) = app.call(app.request(Method::PATCH, &path, Some(&member)).json(&json!({"name": "Mine"}))).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn suspension_blocks_the_tenant_s_calls_and_reactivation_restores_them() {
    let WithTenant { app, superadmin: token, id, admin: member } = with_tenant(acme()).await;
    let path = format!("/tenants/{id}");
    let (status, _, _) = app.call(app.request(Method::GET, &path, Some(&member))).await;
    assert_eq!(status, 200);

    let (status, _, body) =
        app.call(app.request(Method::POST, &format!("{path}/suspend"), Some(&token)).json(&json!({"reason": "Unpaid invoice"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["data"]["status"].as_str(), body["data"]["suspensionReason"].as_str()), (Some("suspended"), Some("Unpaid invoice")));
    for sub in ["", "/limits"] {
        let (status, _, body) = app.call(app.request(Method::GET, &format!("{path}{sub}"), Some(&member))).await;
        assert_eq!(status, 403, "{body}");
        assert!(body["message"].as_str().unwrap().contains("suspended"), "{body}");
    }
    let (status, _, _) = app.call(app.request(Method::GET, &path, Some(&token))).await;
    assert_eq!(status, 200, "a superadmin still gets through");

    let (status, _, body) = app.call(app.request(Method::POST, &format!("{path}/reactivate"), Some(&token))).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status"], "active");
    assert!(body["data"].get("suspensionReason").is_none());
    let (status, _, _) = app.call(app.request(Method::GET, &path, Some(&member))).await;
    assert_eq!(status, 200);

    let actions: Vec<String> = {
        use futures_util::TryStreamExt;
        let cursor = raw_collection(&app.db, "auditLogs").await.find(doc! {"tenantId": &id}).sort(doc! {"timestamp": 1}).await.unwrap();
        let all: Vec<mongodb::bson::Document> = cursor.try_collect().await.unwrap();
        all.iter().map(|d| d.get_str("action").unwrap().to_owned()).collect()
    };
    // The member's refused calls and the superadmin's read of the suspended tenant are audited too.
    assert_eq!(actions, ["tenant.created", "tenant.suspended", "access.denied", "access.denied", "tenant.accessed", "tenant.reactivated"]);
    // Suspend without a body, and the member routes of an unknown tenant.
    let (status, _, _) = app.call(app.request(Method::POST, &format!("{path}/suspend"), Some(&token))).await;
    assert_eq!(status, 200);
    let (status, _, _) = app.call(app.request(Method::POST, "/tenants/tn_missing/suspend", Some(&token))).await;
    assert_eq!(status, 404);
    let (status, _, _) = app.call(app.request(Method::POST, &format!("{path}/reactivate"), Some(&member))).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_tenant_admin_merges_customization_field_by_field() {
    let WithTenant { app, id, admin, .. } = with_tenant(acme()).await;
    let path = format!("/tenants/{id}/settings/customization");
    let (status, _, body) = app.call(app.request(Method::PATCH, &path, Some(&admin)).json(&json!({"primaryColor": "#112233"}))).await;
    assert_eq!(status, 200, "{body}");
    let (_, _, body) =
        app.call(app.request(Method::PATCH, &path, Some(&admin)).json(&json!({"logo": "https://cdn.acme.example/logo.png"}))).await;
    assert_eq!(
        body["data"]["settings"]["customization"],
        json!({"primaryColor": "#112233", "logo": "https://cdn.acme.example/logo.png", "theme": "default"})
    );
    for bad in
        [json!({"primaryColor": "blue"}), json!({"theme": "neon"}), json!({"logo": "javascript:alert(1)"}), json!({"font": "x"}), json!({})]
    {
        let (status, _, body) = app.call(app.request(Method::PATCH, &path, Some(&admin)).json(&bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // A viewer (read:*) lacks update:tenant.
    let (_, viewer) = app.seed_user(&id, "intern@acme.example", "viewer", "active").await;
    let (status, _, body) = app.call(app.request(Method::PATCH, &path, Some(&viewer)).json(&json!({"theme": "dark"}))).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("update:tenant"));
    // Markup smuggled into a logo URL never reaches the record.
    let svg = json!({"logo": "https://x\"><svg/onload=alert(1)>@evil.example/a.png"});
    let (status, _, body) = app.call(app.request(Method::PATCH, &path, Some(&admin)).json(&svg)).await;
    assert_eq!(status, 400, "{body}");
    let (_, _, body) = app.call(app.request(Method::GET, &format!("/tenants/{id}"), Some(&admin))).await;
    assert_eq!(body["data"]["settings"]["customization"]["logo"], "https://cdn.acme.example/logo.png");
}

#[tokio::test]
async fn a_plan_change_resets_features_and_limits_from_the_catalogue() {
    let WithTenant { app, superadmin: token, id, admin: member } = with_tenant(free_co()).await;
    let path = format!("/tenants/{id}/settings/billing");
    let (status, _, body) = app.call(app.request(Method::PATCH, &path, Some(&token)).json(&json!({"plan": "premium"}))).await;
    assert_eq!(status, 200, "{body}");
    let settings = &body["data"]["settings"];
    assert_eq!(settings["maxUsers"], 100);
    assert_eq!(settings["billing"]["maxApiCalls"], 100_000);
    assert_eq!(settings["billing"]["plan"], "premium");
    assert!(settings["features"].as_array().unwrap().contains(&json!("sso")));
    let (_, _, body) = app.call(app.request(Method::PATCH, &path, Some(&token)).json(&json!({"plan": "enterprise"}))).await;
    assert_eq!(body["data"]["settings"]["maxUsers"], -1);
    let (status, _, _) = app.call(app.request(Method::PATCH, &path, Some(&token)).json(&json!({"plan": "platinum"}))).await;
    assert_eq!(status, 400);
    let (status, _, _) = app.call(app.request(Method::PATCH, &path, Some(&member)).json(&json!({"plan": "free"}))).await;
    assert_eq!(status, 403);
    let (_, _, limits) = app.call(app.request(Method::GET, &format!("/tenants/{id}/limits"), Some(&member))).await;
    assert_eq!(limits["data"]["maxUsers"], -1);
    assert_eq!(limits["data"]["currentUsers"], 1);
}

#[tokio::test]
async fn the_usage_counter_is_exact_after_50_concurrent_requests() {
    let WithTenant { app, superadmin: token, id, admin: member } = with_tenant(acme()).await;
    let path = format!("/tenants/{id}");
    let calls = (0..50).map(|_| app.request(Method::GET, &path, Some(&member)).send());
    for response in join_all(calls).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    let (_, _, limits) = app.call(app.request(Method::GET, &format!("{path}/limits"), Some(&member))).await;
    assert_eq!(limits["data"]["currentApiCalls"], 51, "50 reads and the limits call itself: {limits}");
    // A superadmin's calls are not the tenant's usage.
    app.call(app.request(Method::GET, &path, Some(&token))).await;
    let (_, _, limits) = app.call(app.request(Method::GET, &format!("{path}/limits"), Some(&token))).await;
    assert_eq!(limits["data"]["currentApiCalls"], 51);
}

#[tokio::test]
async fn the_monthly_quota_turns_into_a_429_with_retry_after_at_its_limit() {
    let WithTenant { app, superadmin: token, id, admin: member } = with_tenant(free_co()).await;
    let path = format!("/tenants/{id}");
    // Bring the counter to just below the free plan's 1,000 calls.
    app.set_usage(&id, 998).await;
    for _ in 0..2 {
        let (status, _, _) = app.call(app.request(Method::GET, &path, Some(&member))).await;
        assert_eq!(status, 200, "calls 999 and 1,000 are within the quota");
    }
    let (status, headers, body) = app.call(app.request(Method::GET, &path, Some(&member))).await;
    assert_eq!(status, 429, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 31 * 86_400, "{retry}");
    let (status, _, _) = app.call(app.request(Method::GET, &path, Some(&token))).await;
    assert_eq!(status, 200, "the superadmin is not subject to the tenant's quota");
    // An enterprise tenant (-1) is never limited.
    app.call(app.request(Method::PATCH, &format!("{path}/settings/billing"), Some(&token)).json(&json!({"plan": "enterprise"}))).await;
    let (status, _, _) = app.call(app.request(Method::GET, &path, Some(&member))).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    for (method, path) in [(Method::GET, "/nope"), (Method::DELETE, "/tenants/tn_abc"), (Method::GET, "/tenants/a/b/c")] {
        let (status, headers, body) = app.call(app.request(method, path, Some(&token))).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body["error"], "Not Found");
    }
}

#[tokio::test]
async fn a_stale_domain_claim_of_a_never_registered_tenant_is_taken_over() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    let claims = raw_collection(&app.db, "tenantDomains").await;
    let eleven_minutes_ago = mongodb::bson::DateTime::from_millis(mongodb::bson::DateTime::now().timestamp_millis() - 11 * 60_000);
    // As a creation that crashed after claiming, before it could compensate, would leave them.
    claims.insert_one(doc! {"_id": "stale.example", "tenantId": "tn_ghost", "createdAt": eleven_minutes_ago}).await.unwrap();
    claims
        .insert_one(doc! {"_id": "inflight.example", "tenantId": "tn_inflight", "createdAt": mongodb::bson::DateTime::now()})
        .await
        .unwrap();
    let body = |domain: &str| json!({"name": "Claimer", "domain": domain, "adminEmail": "c@c.example"});
    let created = app.create_tenant(&token, body("stale.example")).await;
    let holder = claims.find_one(doc! {"_id": "stale.example"}).await.unwrap().unwrap();
    assert_eq!(holder.get_str("tenantId").unwrap(), created["tenantId"].as_str().unwrap());
    let (status, _, _) = app.call(app.request(Method::POST, "/tenants", Some(&token)).json(&body("inflight.example"))).await;
    assert_eq!(status, 409, "a recent claim may belong to a creation in flight");
}
