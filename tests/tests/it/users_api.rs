//! The users and roles routes, black-box through the local API with real moto tokens: the
//! permission matrix, the invitation saga (Cognito failing, or losing its reply), exact seats,
//! the last admin under races, counters against a recount, foreign ids and operator objects.

use futures_util::future::{join_all, BoxFuture};
use mongodb::bson::{doc, oid::ObjectId, Document};
use reqwest::Method;
use serde_json::{json, Value};
use shared::directory::{Directory, DirectoryError, DirectoryUser, SharedDirectory};
use shared::ids::{Email, TenantId};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tenancy_tests::app::{spawn_app, spawn_app_with, TestApp};
use tenancy_tests::raw_collection;

/// A tenant with its admin's token.
struct Tenant {
    id: String,
    admin: String,
}

async fn tenant(app: &TestApp, plan: &str, admin_email: &str) -> Tenant {
    let superadmin = app.superadmin().await;
    let body = json!({"name": "Acme", "adminEmail": admin_email, "plan": plan});
    let id = app.create_tenant(&superadmin, body).await["tenantId"].as_str().unwrap().to_owned();
    Tenant { admin: app.member(admin_email, &id).await, id }
}

/// The stored record of `email`, found by blind index (e-mails are stored sealed).
async fn record(app: &TestApp, email: &str) -> Option<Document> {
    tenancy_tests::user_by_email(&app.db, email).await
}

/// The stored record with `id`.
async fn record_by_id(app: &TestApp, id: mongodb::bson::oid::ObjectId) -> Option<Document> {
    raw_collection(&app.db, "users").await.find_one(doc! {"_id": id}).await.unwrap()
}

async fn role_id(app: &TestApp, tenant: &str, name: &str) -> String {
    let role = raw_collection(&app.db, "roles").await.find_one(doc! {"tenantId": tenant, "name": name}).await.unwrap().unwrap();
    role.get_object_id("_id").unwrap().to_hex()
}

/// The tenant's counters, and what a recount of its user records gives.
async fn counters_and_recount(app: &TestApp, tenant: &str) -> ((i64, i64), (i64, i64)) {
    let t = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": tenant}).await.unwrap().unwrap();
    let c = t.get_document("counters").unwrap();
    let number = |k: &str| c.get_i64(k).or_else(|_| c.get_i32(k).map(i64::from)).unwrap();
    let users = raw_collection(&app.db, "users").await;
    let seats = users.count_documents(doc! {"tenantId": tenant}).await.unwrap() as i64;
    let admin = role_id(app, tenant, "admin").await;
    let admins =
        users.count_documents(doc! {"tenantId": tenant, "roles": &admin, "status": {"$in": ["pending", "active"]}}).await.unwrap() as i64;
    ((number("seats"), number("admins")), (seats, admins))
}

async fn cognito_user(app: &TestApp, email: &str) -> Option<(String, Option<String>)> {
    let found = app.cognito.admin_get_user().user_pool_id(&app.pool.user_pool_id).username(email).send().await.ok()?;
    let attr = |n: &str| found.user_attributes().iter().find(|a| a.name() == n).and_then(|a| a.value()).map(str::to_owned);
    Some((attr("sub")?, attr("custom:tenantId")))
}

#[tokio::test]
async fn an_invited_user_is_created_in_cognito_linked_by_sub_and_activated_by_its_first_call() {
    let app = spawn_app().await;
    let t = tenant(&app, "basic", "admin@acme.example").await;
    let (status, _, body) = app
        .call(
            app.request(Method::POST, "/users", Some(&t.admin))
                .json(&json!({"email": "New.Hire@Acme.example", "firstName": "New", "lastName": "Hire"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["status"], "pending");
    assert_eq!(body["data"]["email"], "new.hire@acme.example");
    assert_eq!(body["data"]["roles"], json!([role_id(&app, &t.id, "user").await]), "the user role by default");
    let (sub, tenant_attr) = cognito_user(&app, "new.hire@acme.example").await.expect("a Cognito user");
    assert_eq!(tenant_attr.as_deref(), Some(t.id.as_str()));
    let stored = record(&app, "new.hire@acme.example").await.unwrap();
    assert_eq!(stored.get_str("cognitoUserId").unwrap(), sub, "the invitation stored the sub at once");
    assert_eq!(counters_and_recount(&app, &t.id).await, ((2, 1), (2, 1)));
    let token = app.member("new.hire@acme.example", &t.id).await;
    let (status, _, me) = app.call(app.request(Method::GET, "/users/me", Some(&token))).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["data"]["status"], "active", "the first call activated it");
    let (status, _, _) = app.call(app.request(Method::GET, "/users", Some(&token))).await;
    assert_eq!(status, 403, "the user role lacks read:users");
    let (status, _, mine) = app.call(app.request(Method::PATCH, "/users/me", Some(&token)).json(&json!({"title": "Engineer"}))).await;
    assert_eq!((status, mine["data"]["profile"]["title"].as_str()), (200, Some("Engineer")));
    let (status, _, _) = app.call(app.request(Method::PATCH, "/users/me", Some(&token)).json(&json!({"status": "inactive"}))).await;
    assert_eq!(status, 400, "a profile change has no status");
}

#[tokio::test]
async fn an_email_belongs_to_one_tenant_and_a_duplicate_invitation_is_a_409() {
    let app = spawn_app().await;
    let a = tenant(&app, "basic", "admin@a.example").await;
    let b = tenant(&app, "basic", "admin@b.example").await;
    let invite = |token: &str, email: &str| {
        app.request(Method::POST, "/users", Some(token)).json(&json!({"email": email, "firstName": "F", "lastName": "L"}))
    };
    assert_eq!(app.call(invite(&a.admin, "shared@x.example")).await.0, 201);
    let (status, _, body) = app.call(invite(&a.admin, "shared@x.example")).await;
    assert_eq!(status, 409, "{body}");
    let (status, _, body) = app.call(invite(&b.admin, "shared@x.example")).await;
    assert_eq!(status, 409, "{body}");
    assert!(!body.to_string().contains(&a.id), "the 409 never names the other tenant: {body}");
    assert!(record(&app, "shared@x.example").await.is_some_and(|r| r.get_str("tenantId").unwrap() == a.id), "no orphan record");
    assert_eq!(counters_and_recount(&app, &b.id).await, ((1, 1), (1, 1)), "the seat was given back");
}

/// A directory that fails creations, or performs them and then loses the reply.
#[derive(Debug)]
struct Faulty {
    inner: SharedDirectory,
    lose_reply: bool,
    tripped: AtomicBool,
}

impl Directory for Faulty {
    fn create_user<'a>(&'a self, email: &'a Email, tenant: &'a TenantId) -> BoxFuture<'a, Result<String, DirectoryError>> {
        Box::pin(async move {
            if self.tripped.swap(true, Ordering::SeqCst) {
                return self.inner.create_user(email, tenant).await;
            }
            if self.lose_reply {
                self.inner.create_user(email, tenant).await?;
            }
            Err(DirectoryError::Unavailable("injected: no reply".into()))
        })
    }
    fn get_user<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<Option<DirectoryUser>, DirectoryError>> {
        self.inner.get_user(email)
    }
    fn delete_user<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<(), DirectoryError>> {
        self.inner.delete_user(email)
    }
    fn set_enabled<'a>(&'a self, email: &'a Email, enabled: bool) -> BoxFuture<'a, Result<(), DirectoryError>> {
        self.inner.set_enabled(email, enabled)
    }
}

/// The app with the users function's directory wrapped; the tenants function's is left alone.
async fn app_with_faulty_users_directory(lose_reply: bool) -> TestApp {
    spawn_app_with(move |deps| {
        let faulty: SharedDirectory = Arc::new(Faulty { inner: deps.directory.clone(), lose_reply, tripped: AtomicBool::new(false) });
        local_api::functions_with_directory(deps, users::LOGICAL_ID, faulty)
    })
    .await
}

#[tokio::test]
async fn when_cognito_fails_the_invitation_leaves_no_record_no_user_and_a_free_seat() {
    let app = app_with_faulty_users_directory(false).await;
    let t = tenant(&app, "basic", "admin@acme.example").await;
    let body = json!({"email": "unlucky@acme.example", "firstName": "U", "lastName": "L"});
    let (status, _, reply) = app.call(app.request(Method::POST, "/users", Some(&t.admin)).json(&body)).await;
    assert_eq!(status, 503, "{reply}");
    assert!(record(&app, "unlucky@acme.example").await.is_none());
    assert!(cognito_user(&app, "unlucky@acme.example").await.is_none());
    assert_eq!(counters_and_recount(&app, &t.id).await, ((1, 1), (1, 1)));
    let (status, _, reply) = app.call(app.request(Method::POST, "/users", Some(&t.admin)).json(&body)).await;
    assert_eq!(status, 201, "a retry succeeds: {reply}");
}

#[tokio::test]
async fn a_lost_cognito_reply_is_adopted_instead_of_leaving_a_permanent_409() {
    let app = app_with_faulty_users_directory(true).await;
    let t = tenant(&app, "basic", "admin@acme.example").await;
    let body = json!({"email": "lost@acme.example", "firstName": "L", "lastName": "R"});
    let (status, _, reply) = app.call(app.request(Method::POST, "/users", Some(&t.admin)).json(&body)).await;
    assert_eq!(status, 201, "the user Cognito made is adopted: {reply}");
    let (sub, _) = cognito_user(&app, "lost@acme.example").await.unwrap();
    assert_eq!(record(&app, "lost@acme.example").await.unwrap().get_str("cognitoUserId").unwrap(), sub);
    assert_eq!(counters_and_recount(&app, &t.id).await, ((2, 1), (2, 1)));
}

#[tokio::test]
async fn with_one_seat_left_concurrent_invitations_give_exactly_one_201() {
    let app = spawn_app().await;
    let t = tenant(&app, "free", "admin@acme.example").await;
    for i in 0..3 {
        app.seed_record(&t.id, &format!("u{i}@acme.example"), "user", "active", &format!("sub-{i}")).await;
    }
    let calls = (0..8).map(|i| {
        let body = json!({"email": format!("racer{i}@acme.example"), "firstName": "R", "lastName": "C"});
        app.call(app.request(Method::POST, "/users", Some(&t.admin)).json(&body))
    });
    let statuses: Vec<u16> = join_all(calls).await.into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 7, "{statuses:?}");
    assert_eq!(counters_and_recount(&app, &t.id).await, ((5, 1), (5, 1)));
    let (_, _, limits) = app.call(app.request(Method::GET, &format!("/tenants/{}/limits", t.id), Some(&t.admin))).await;
    assert_eq!((limits["data"]["currentUsers"].as_i64(), limits["data"]["maxUsers"].as_i64()), (Some(5), Some(5)));
}

#[tokio::test]
async fn two_admins_deactivating_each_other_at_once_leave_one_admin() {
    let app = spawn_app().await;
    let t = tenant(&app, "basic", "first@acme.example").await;
    let (second, second_token) = app.seed_user(&t.id, "second@acme.example", "admin", "active").await;
    let first = record(&app, "first@acme.example").await.unwrap().get_object_id("_id").unwrap();
    // Both are admitted (and cached) before the race.
    for token in [&t.admin, &second_token] {
        assert_eq!(app.call(app.request(Method::GET, "/users/me", Some(token))).await.0, 200);
    }
    let off = json!({"status": "inactive"});
    let (a, b) = tokio::join!(
        app.call(app.request(Method::PATCH, &format!("/users/{second}"), Some(&t.admin)).json(&off)),
        app.call(app.request(Method::PATCH, &format!("/users/{first}"), Some(&second_token)).json(&off)),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    assert_eq!(counters_and_recount(&app, &t.id).await, ((2, 1), (2, 1)));
}

#[tokio::test]
async fn the_last_admin_cannot_be_deleted_deactivated_or_stripped_and_nobody_changes_themselves() {
    let app = spawn_app().await;
    let t = tenant(&app, "basic", "admin@acme.example").await;
    let admin_id = record(&app, "admin@acme.example").await.unwrap().get_object_id("_id").unwrap();
    // An operator with every permission (a custom role), but not the admin role: not counted.
    let (status, _, role) =
        app.call(app.request(Method::POST, "/roles", Some(&t.admin)).json(&json!({"name": "Operators", "permissions": ["*"]}))).await;
    assert_eq!(status, 201, "{role}");
    let (_, operator) = app.seed_user(&t.id, "operator@acme.example", "viewer", "active").await;
    let operator_id = record(&app, "operator@acme.example").await.unwrap().get_object_id("_id").unwrap();
    let role = role_id(&app, &t.id, "Operators").await;
    let (status, _, body) =
        app.call(app.request(Method::POST, &format!("/users/{operator_id}/roles"), Some(&t.admin)).json(&json!({"roleId": role}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = app.call(app.request(Method::DELETE, &format!("/users/{admin_id}"), Some(&operator))).await;
    assert_eq!(status, 409, "{body}");
    let (status, _, _) =
        app.call(app.request(Method::PATCH, &format!("/users/{admin_id}"), Some(&operator)).json(&json!({"status": "inactive"}))).await;
    assert_eq!(status, 409);
    let admin_role = role_id(&app, &t.id, "admin").await;
    let (status, _, body) = app
        .call(app.request(Method::POST, &format!("/users/{operator_id}/roles"), Some(&t.admin)).json(&json!({"roleId": &admin_role})))
        .await;
    assert_eq!(status, 200, "an admin may grant admin: {body}");
    let (status, _, body) =
        app.call(app.request(Method::DELETE, &format!("/users/{operator_id}/roles/{admin_role}"), Some(&operator))).await;
    assert_eq!(status, 403, "nobody changes its own roles: {body}");
    let (status, _, _) = app.call(app.request(Method::DELETE, &format!("/users/{admin_id}/roles/{admin_role}"), Some(&operator))).await;
    assert_eq!(status, 200, "with a second admin, the first may lose the role");
    let (status, _, body) =
        app.call(app.request(Method::DELETE, &format!("/users/{operator_id}/roles/{admin_role}"), Some(&t.admin))).await;
    assert_eq!(status, 403, "without a role left, the first admin may no longer manage users: {body}");
    for (method, path, body) in [
        (Method::DELETE, format!("/users/{operator_id}"), json!(null)),
        (Method::PATCH, format!("/users/{operator_id}"), json!({"status": "inactive"})),
    ] {
        let (status, _, reply) = app.call(app.request(method, &path, Some(&operator)).json(&body)).await;
        assert_eq!(status, 403, "nobody deletes or deactivates itself: {reply}");
    }
    assert_eq!(counters_and_recount(&app, &t.id).await, ((2, 1), (2, 1)));
}

#[tokio::test]
async fn nobody_manages_a_user_who_holds_more_than_they_do() {
    let app = spawn_app().await;
    let t = tenant(&app, "basic", "admin@acme.example").await;
    let (status, _, _) = app
        .call(
            app.request(Method::POST, "/roles", Some(&t.admin))
                .json(&json!({"name": "Operators", "permissions": ["read:*", "update:users", "delete:users"]})),
        )
        .await;
    assert_eq!(status, 201);
    let (operator, token) = app.seed_user(&t.id, "operator@acme.example", "viewer", "active").await;
    let operators = role_id(&app, &t.id, "Operators").await;
    raw_collection(&app.db, "users").await.update_one(doc! {"_id": operator}, doc! {"$set": {"roles": [&operators]}}).await.unwrap();
    let (second, _) = app.seed_user(&t.id, "second@acme.example", "admin", "active").await;
    let (viewer, _) = app.seed_user(&t.id, "viewer@acme.example", "viewer", "active").await;
    let admin_role = role_id(&app, &t.id, "admin").await;
    for (method, path, body) in [
        (Method::PATCH, format!("/users/{second}"), json!({"status": "inactive"})),
        (Method::PATCH, format!("/users/{second}"), json!({"title": "Former admin"})),
        (Method::DELETE, format!("/users/{second}/roles/{admin_role}"), json!(null)),
        (Method::DELETE, format!("/users/{second}"), json!(null)),
    ] {
        let (status, _, reply) = app.call(app.request(method, &path, Some(&token)).json(&body)).await;
        assert_eq!(status, 403, "{path}: {reply}");
    }
    let (status, _, reply) =
        app.call(app.request(Method::PATCH, &format!("/users/{viewer}"), Some(&token)).json(&json!({"status": "inactive"}))).await;
    assert_eq!(status, 200, "a viewer holds nothing the operator lacks: {reply}");
    assert_eq!(record_by_id(&app, second).await.unwrap().get_str("status").unwrap(), "active");
    assert_eq!(counters_and_recount(&app, &t.id).await, ((4, 2), (4, 2)));
}

#[tokio::test]
async fn identical_requests_racing_move_the_counters_once() {
    let app = spawn_app().await;
    let t = tenant(&app, "basic", "admin@acme.example").await;
    let admin_role = role_id(&app, &t.id, "admin").await;
    let (a, _) = app.seed_user(&t.id, "a@acme.example", "viewer", "active").await;
    let (b, _) = app.seed_user(&t.id, "b@acme.example", "admin", "inactive").await;
    let (c, _) = app.seed_user(&t.id, "c@acme.example", "admin", "active").await;
    let app = &app;
    let twice = |method: Method, path: String, body: Value| {
        let (first, second) =
            (app.request(method.clone(), &path, Some(&t.admin)).json(&body), app.request(method, &path, Some(&t.admin)).json(&body));
        async move { tokio::join!(app.call(first), app.call(second)) }
    };
    let (x, y) = twice(Method::POST, format!("/users/{a}/roles"), json!({"roleId": &admin_role})).await;
    assert_eq!((x.0, y.0), (200, 200), "{x:?} {y:?}");
    let (x, y) = twice(Method::PATCH, format!("/users/{b}"), json!({"status": "active"})).await;
    assert_eq!((x.0, y.0), (200, 200), "{x:?} {y:?}");
    let (x, y) = twice(Method::DELETE, format!("/users/{c}"), json!(null)).await;
    let mut statuses = [x.0, y.0];
    statuses.sort();
    assert_eq!(statuses, [200, 404], "{x:?} {y:?}");
    let (counters, recount) = counters_and_recount(app, &t.id).await;
    assert_eq!(counters, recount);
    assert_eq!(counters, (3, 3), "admin, a (now admin), b (reactivated admin)");
}

#[tokio::test]
async fn another_tenant_s_ids_are_404s_and_malformed_ids_400s() {
    let app = spawn_app().await;
    let a = tenant(&app, "basic", "admin@a.example").await;
    let b = tenant(&app, "basic", "admin@b.example").await;
    let (foreign_user, _) = app.seed_user(&b.id, "victim@b.example", "viewer", "active").await;
    let foreign_role = role_id(&app, &b.id, "viewer").await;
    let before = raw_collection(&app.db, "users").await.find_one(doc! {"_id": foreign_user}).await.unwrap();
    for (method, path, body) in [
        (Method::GET, format!("/users/{foreign_user}"), json!(null)),
        (Method::PATCH, format!("/users/{foreign_user}"), json!({"title": "pwned"})),
        (Method::DELETE, format!("/users/{foreign_user}"), json!(null)),
        (Method::POST, format!("/users/{foreign_user}/roles"), json!({"roleId": role_id(&app, &a.id, "viewer").await})),
        (Method::GET, format!("/roles/{foreign_role}"), json!(null)),
        (Method::PATCH, format!("/roles/{foreign_role}"), json!({"description": "x"})),
        (Method::DELETE, format!("/roles/{foreign_role}"), json!(null)),
    ] {
        let (status, _, reply) = app.call(app.request(method, &path, Some(&a.admin)).json(&body)).await;
        assert_eq!(status, 404, "{path}: {reply}");
    }
    let own = record(&app, "admin@a.example").await.unwrap().get_object_id("_id").unwrap();
    let _ = own;
    let (status, _, _) = app
        .call(app.request(Method::POST, "/users/000000000000000000000001/roles", Some(&a.admin)).json(&json!({"roleId": foreign_role})))
        .await;
    assert_eq!(status, 404, "a role of another tenant is not found");
    for path in ["/users/nothex", "/users/123", "/roles/zzzzzzzzzzzzzzzzzzzzzzzz", "/users/%7B%22%24ne%22%3A1%7D"] {
        let (status, _, reply) = app.call(app.request(Method::GET, path, Some(&a.admin))).await;
        assert_eq!(status, 400, "{path}: {reply}");
    }
    let after = raw_collection(&app.db, "users").await.find_one(doc! {"_id": foreign_user}).await.unwrap();
    assert_eq!(before, after, "nothing of tenant B changed");
}

#[tokio::test]
async fn operator_objects_in_every_body_field_are_400s_and_change_nothing() {
    let app = spawn_app().await;
    let t = tenant(&app, "basic", "admin@acme.example").await;
    let (target, _) = app.seed_user(&t.id, "target@acme.example", "viewer", "active").await;
    let op = json!({"$ne": null});
    let cases: Vec<(Method, String, Value)> = vec![
        (Method::POST, "/users".into(), json!({"email": op, "firstName": "a", "lastName": "b"})),
        (Method::POST, "/users".into(), json!({"email": "x@acme.example", "firstName": op, "lastName": "b"})),
        (Method::POST, "/users".into(), json!({"email": "x@acme.example", "firstName": "a", "lastName": op})),
        (Method::POST, "/users".into(), json!({"email": "x@acme.example", "firstName": "a", "lastName": "b", "roles": [op]})),
        (Method::PATCH, format!("/users/{target}"), json!({"firstName": op})),
        (Method::PATCH, format!("/users/{target}"), json!({"status": op})),
        (Method::PATCH, format!("/users/{target}"), json!({"avatar": op})),
        (Method::PATCH, "/users/me".into(), json!({"department": op})),
        (Method::POST, format!("/users/{target}/roles"), json!({"roleId": op})),
        (Method::POST, "/roles".into(), json!({"name": op, "permissions": ["read:users"]})),
        (Method::POST, "/roles".into(), json!({"name": "R", "permissions": [op]})),
        (Method::POST, "/roles".into(), json!({"name": "R", "permissions": ["read:users"], "description": op})),
        (Method::PATCH, format!("/roles/{}", role_id(&app, &t.id, "viewer").await), json!({"permissions": op})),
        (Method::POST, "/users".into(), json!({"email": "x@acme.example", "firstName": "a", "lastName": "b", "tenantId": "tn_other"})),
        (Method::PATCH, format!("/users/{target}"), json!({"email": "new@acme.example"})),
    ];
    let users_before = raw_collection(&app.db, "users").await.count_documents(doc! {}).await.unwrap();
    let target_before = record_by_id(&app, target).await;
    for (method, path, body) in cases {
        let (status, _, reply) = app.call(app.request(method, &path, Some(&t.admin)).json(&body)).await;
        assert_eq!(status, 400, "{path} {body}: {reply}");
    }
    assert_eq!(raw_collection(&app.db, "users").await.count_documents(doc! {}).await.unwrap(), users_before);
    assert_eq!(record_by_id(&app, target).await, target_before);
    assert_eq!(raw_collection(&app.db, "roles").await.count_documents(doc! {"tenantId": &t.id}).await.unwrap(), 3);
}

#[tokio::test]
async fn roles_are_validated_unique_bounded_by_their_creator_and_system_roles_immutable() {
    let app = spawn_app().await;
    let t = tenant(&app, "basic", "admin@acme.example").await;
    let create = |token: &str, body: Value| app.request(Method::POST, "/roles", Some(token)).json(&body);
    let (status, _, body) = app.call(create(&t.admin, json!({"name": "Support", "permissions": ["read:users", "launch:rockets"]}))).await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("launch:rockets"), "the 400 names the unknown permission: {body}");
    let (status, _, support) = app.call(create(&t.admin, json!({"name": "Support", "permissions": ["read:users", "create:roles"]}))).await;
    assert_eq!(status, 201, "{support}");
    assert_eq!(app.call(create(&t.admin, json!({"name": "Support", "permissions": ["read:users"]}))).await.0, 409);
    assert_eq!(app.call(create(&t.admin, json!({"name": "viewer", "permissions": ["read:users"]}))).await.0, 409, "system names are taken");
    // A support member may create roles, but only with what it holds.
    let (supporter, token) = app.seed_user(&t.id, "support@acme.example", "viewer", "active").await;
    let support_id = support["data"]["id"].as_str().unwrap().to_owned();
    raw_collection(&app.db, "users").await.update_one(doc! {"_id": supporter}, doc! {"$set": {"roles": [&support_id]}}).await.unwrap();
    let (status, _, body) = app.call(create(&token, json!({"name": "Sneaky", "permissions": ["delete:users"]}))).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = app.call(create(&token, json!({"name": "Readers", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 201, "{body}");
    for name in ["admin", "user", "viewer"] {
        let id = role_id(&app, &t.id, name).await;
        assert_eq!(
            app.call(app.request(Method::PATCH, &format!("/roles/{id}"), Some(&t.admin)).json(&json!({"description": "x"}))).await.0,
            403
        );
        assert_eq!(app.call(app.request(Method::DELETE, &format!("/roles/{id}"), Some(&t.admin))).await.0, 403);
    }
    // Deleting a held role: a 409 with the count, unless forced.
    let (status, _, body) = app.call(app.request(Method::DELETE, &format!("/roles/{support_id}"), Some(&t.admin))).await;
    assert_eq!(status, 409);
    assert!(body["message"].as_str().unwrap().contains('1'), "{body}");
    let (status, _, body) = app.call(app.request(Method::DELETE, &format!("/roles/{support_id}?force=true"), Some(&t.admin))).await;
    assert_eq!((status, body["data"]["removedFromUsers"].as_u64()), (200, Some(1)), "{body}");
    let holder = record_by_id(&app, supporter).await.unwrap();
    assert!(holder.get_array("roles").unwrap().is_empty());
    let (_, _, list) = app.call(app.request(Method::GET, "/roles?limit=2", Some(&t.admin))).await;
    assert_eq!(list["data"]["pagination"], json!({"page": 1, "limit": 2, "total": 4, "pages": 2}));
}

#[tokio::test]
async fn a_role_change_through_the_api_takes_effect_at_once_in_this_process() {
    let app = spawn_app().await;
    let t = tenant(&app, "basic", "admin@acme.example").await;
    let (status, _, role) = app
        .call(app.request(Method::POST, "/roles", Some(&t.admin)).json(&json!({"name": "Readers", "permissions": ["read:profile"]})))
        .await;
    assert_eq!(status, 201);
    let (holder, token) = app.seed_user(&t.id, "reader@acme.example", "viewer", "active").await;
    let id = role["data"]["id"].as_str().unwrap();
    raw_collection(&app.db, "users").await.update_one(doc! {"_id": holder}, doc! {"$set": {"roles": [id]}}).await.unwrap();
    assert_eq!(app.call(app.request(Method::GET, "/users", Some(&token))).await.0, 403);
    let (status, _, _) =
        app.call(app.request(Method::PATCH, &format!("/roles/{id}"), Some(&t.admin)).json(&json!({"permissions": ["read:users"]}))).await;
    assert_eq!(status, 200);
    assert_eq!(app.call(app.request(Method::GET, "/users", Some(&token))).await.0, 200, "the cache forgot the tenant's members");
}

/// Every users and roles route, for a tenant's admin, user and viewer: who may do what.
#[tokio::test]
async fn the_permission_matrix_holds_for_admin_user_and_viewer() {
    let app = spawn_app().await;
    let t = tenant(&app, "premium", "admin@acme.example").await;
    let (_, user) = app.seed_user(&t.id, "user@acme.example", "user", "active").await;
    let (_, viewer) = app.seed_user(&t.id, "viewer@acme.example", "viewer", "active").await;
    let viewer_role = role_id(&app, &t.id, "viewer").await;
    let mut n = 0;
    // Each call gets fresh targets, so that an allowed mutation never spoils the next one.
    for (who, token, reads, profile_write, writes) in
        [("admin", &t.admin, true, true, true), ("user", &user, false, true, false), ("viewer", &viewer, true, false, false)]
    {
        let routes: Vec<(Method, String, Value, bool)> = {
            n += 1;
            let (target, _) = app.seed_user(&t.id, &format!("t{n}@acme.example"), "viewer", "active").await;
            let (status, _, role) = app
                .call(
                    app.request(Method::POST, "/roles", Some(&t.admin))
                        .json(&json!({"name": format!("Custom{n}"), "permissions": ["read:users"]})),
                )
                .await;
            assert_eq!(status, 201);
            let custom = role["data"]["id"].as_str().unwrap().to_owned();
            let (holder, _) = app.seed_user(&t.id, &format!("h{n}@acme.example"), "viewer", "active").await;
            raw_collection(&app.db, "users").await.update_one(doc! {"_id": holder}, doc! {"$push": {"roles": &custom}}).await.unwrap();
            vec![
                (Method::GET, "/users".into(), json!(null), reads),
                (
                    Method::POST,
                    "/users".into(),
                    json!({"email": format!("inv{n}@acme.example"), "firstName": "I", "lastName": "N"}),
                    writes,
                ),
                (Method::GET, format!("/users/{target}"), json!(null), reads),
                (Method::PATCH, format!("/users/{target}"), json!({"title": "T"}), writes),
                (Method::POST, format!("/users/{target}/roles"), json!({"roleId": &custom}), writes),
                (Method::DELETE, format!("/users/{holder}/roles/{viewer_role}"), json!(null), writes),
                (Method::DELETE, format!("/users/{target}"), json!(null), writes),
                (Method::GET, "/users/me".into(), json!(null), true),
                (Method::PATCH, "/users/me".into(), json!({"department": "D"}), profile_write),
                (Method::GET, "/roles".into(), json!(null), reads),
                (Method::POST, "/roles".into(), json!({"name": format!("New{n}"), "permissions": ["read:users"]}), writes),
                (Method::GET, format!("/roles/{custom}"), json!(null), reads),
                (Method::PATCH, format!("/roles/{custom}"), json!({"description": "d"}), writes),
                (Method::DELETE, format!("/roles/{custom}?force=true"), json!(null), writes),
            ]
        };
        for (method, path, body, allowed) in routes {
            let (status, _, reply) = app.call(app.request(method.clone(), &path, Some(token)).json(&body)).await;
            if allowed {
                assert!((200..300).contains(&status), "{who} {method} {path}: {status} {reply}");
            } else {
                assert_eq!(status, 403, "{who} {method} {path}: {reply}");
            }
        }
    }
    let (counters, recount) = counters_and_recount(&app, &t.id).await;
    assert_eq!(counters, recount);
}

#[tokio::test]
async fn the_post_confirmation_trigger_links_once_activates_pending_only_and_passes_others_through() {
    let app = spawn_app().await;
    let t = tenant(&app, "basic", "admin@acme.example").await;
    let pending = app.seed_record(&t.id, "self@acme.example", "user", "pending", "").await;
    let inactive = app.seed_record(&t.id, "gone@acme.example", "user", "inactive", "").await;
    let event = |email: &str, sub: &str, tenant: &str, source: &str| {
        json!({
            "version": "1", "triggerSource": source, "region": "us-east-1", "userPoolId": "us-east-1_X",
            "userName": sub, "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": "client"},
            "request": {"userAttributes": {"sub": sub, "email": email, "email_verified": "true", "custom:tenantId": tenant, "cognito:user_status": "CONFIRMED"}},
            "response": {}
        })
    };
    for _ in 0..2 {
        let e = event("self@acme.example", "sub-self", &t.id, "PostConfirmation_ConfirmSignUp");
        assert_eq!(users::trigger::post_confirmation(&app.db, e.clone()).await.unwrap(), e);
    }
    let linked = record_by_id(&app, pending).await.unwrap();
    assert_eq!((linked.get_str("cognitoUserId").unwrap(), linked.get_str("status").unwrap()), ("sub-self", "active"));
    let e = event("gone@acme.example", "sub-gone", &t.id, "PostConfirmation_ConfirmSignUp");
    users::trigger::post_confirmation(&app.db, e).await.unwrap();
    assert_eq!(record_by_id(&app, inactive).await.unwrap().get_str("status").unwrap(), "inactive", "never inactive → active");
    // A second sub for the same record changes nothing; unknown tenants and users are logged only.
    users::trigger::post_confirmation(&app.db, event("self@acme.example", "sub-other", &t.id, "PostConfirmation_ConfirmSignUp"))
        .await
        .unwrap();
    assert_eq!(record_by_id(&app, pending).await.unwrap().get_str("cognitoUserId").unwrap(), "sub-self");
    for e in [
        event("x@acme.example", "sub-x", "tn_nosuchtenant", "PostConfirmation_ConfirmSignUp"),
        event("nobody@acme.example", "sub-n", &t.id, "PostConfirmation_ConfirmSignUp"),
        event("self@acme.example", "sub-self", &t.id, "PostConfirmation_ConfirmForgotPassword"),
        json!({"triggerSource": "CustomMessage_SignUp", "request": {}, "response": {}}),
    ] {
        assert_eq!(users::trigger::post_confirmation(&app.db, e.clone()).await.unwrap(), e);
    }
}

#[tokio::test]
async fn a_pending_user_s_status_changes_only_by_signing_in() {
    let app = spawn_app().await;
    let t = tenant(&app, "basic", "admin@acme.example").await;
    let (_, _, invited) = app
        .call(
            app.request(Method::POST, "/users", Some(&t.admin))
                .json(&json!({"email": "p@acme.example", "firstName": "P", "lastName": "Q"})),
        )
        .await;
    let id = invited["data"]["id"].as_str().unwrap();
    for status in ["active", "inactive"] {
        let (code, _, body) =
            app.call(app.request(Method::PATCH, &format!("/users/{id}"), Some(&t.admin)).json(&json!({"status": status}))).await;
        assert_eq!(code, 409, "{status}: {body}");
    }
    let oid = ObjectId::parse_str(id).unwrap();
    assert_eq!(record_by_id(&app, oid).await.unwrap().get_str("status").unwrap(), "pending");
}

/// Directory actions (delete, disable) touch only the record's own Cognito user: linked to the
/// record's sub, with this tenant's custom:tenantId. A record in tenant A carrying tenant B's
/// user's e-mail must never reach B's account.
#[tokio::test]
async fn a_record_never_reaches_another_tenant_s_cognito_account() {
    let app = spawn_app().await;
    let a = tenant(&app, "basic", "admin@a.example").await;
    let b = tenant(&app, "basic", "admin@b.example").await;
    let (_, _) = app.seed_user(&b.id, "victim@b.example", "viewer", "active").await;
    let (victim_sub, _) = cognito_user(&app, "victim@b.example").await.unwrap();
    // In A: an unlinked record (as mid-invitation, or from before links), and one linked to
    // another sub, both with the victim's e-mail.
    let unlinked = app.seed_record(&a.id, "victim@b.example", "viewer", "active", "").await;
    let (status, _, body) = app.call(app.request(Method::DELETE, &format!("/users/{unlinked}"), Some(&a.admin))).await;
    assert_eq!(status, 200, "{body}");
    let stale = app.seed_record(&a.id, "victim@b.example", "viewer", "active", "some-other-sub").await;
    let (status, _, body) =
        app.call(app.request(Method::PATCH, &format!("/users/{stale}"), Some(&a.admin)).json(&json!({"status": "inactive"}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = app.call(app.request(Method::DELETE, &format!("/users/{stale}"), Some(&a.admin))).await;
    assert_eq!(status, 200, "{body}");
    let found = app.cognito.admin_get_user().user_pool_id(&app.pool.user_pool_id).username("victim@b.example").send().await.unwrap();
    assert!(found.enabled(), "B's user is still enabled");
    assert_eq!(cognito_user(&app, "victim@b.example").await.unwrap().0, victim_sub, "and still there");
}

#[tokio::test]
async fn a_role_change_needs_what_the_role_grants_now_and_unlinked_records_keep_their_roles() {
    let app = spawn_app().await;
    let t = tenant(&app, "basic", "admin@acme.example").await;
    let create = |name: &str, permissions: Value| {
        app.request(Method::POST, "/roles", Some(&t.admin)).json(&json!({"name": name, "permissions": permissions}))
    };
    let (_, _, powerful) = app.call(create("Powerful", json!(["read:users", "delete:users"]))).await;
    let (_, _, editors) = app.call(create("RoleEditors", json!(["read:users", "update:roles"]))).await;
    let (editor, token) = app.seed_user(&t.id, "editor@acme.example", "viewer", "active").await;
    raw_collection(&app.db, "users")
        .await
        .update_one(doc! {"_id": editor}, doc! {"$set": {"roles": [editors["data"]["id"].as_str().unwrap()]}})
        .await
        .unwrap();
    let powerful_id = powerful["data"]["id"].as_str().unwrap();
    let (status, _, body) = app
        .call(app.request(Method::PATCH, &format!("/roles/{powerful_id}"), Some(&token)).json(&json!({"permissions": ["read:users"]})))
        .await;
    assert_eq!(status, 403, "stripping delete:users from its holders needs delete:users: {body}");
    let unlinked = app.seed_record(&t.id, "mid@acme.example", "viewer", "pending", "").await;
    let (status, _, body) = app
        .call(app.request(Method::POST, &format!("/users/{unlinked}/roles"), Some(&t.admin)).json(&json!({"roleId": powerful_id})))
        .await;
    assert_eq!(status, 409, "an invitation still being made keeps its roles: {body}");
}
