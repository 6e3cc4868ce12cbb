//! A person's export (`GET /users/{userId}/export`, `GET /users/me/export`), black-box through
//! the local API with real moto tokens: what it holds and never holds, when its audit part is
//! there, whose addresses it leaves out, its cursor, who may ask, and its own audit entry.

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;
use tenancy_tests::app::{spawn_app, TestApp};
use tenancy_tests::raw_collection;

async fn get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let (status, _, body) = app.call(app.request(Method::GET, path, Some(token))).await;
    (status, body)
}

async fn role_id(app: &TestApp, tenant: &str, name: &str) -> ObjectId {
    let role = raw_collection(&app.db, "roles").await.find_one(doc! {"tenantId": tenant, "name": name}).await.unwrap().unwrap();
    role.get_object_id("_id").unwrap()
}

/// The `sub` a record is linked to.
async fn sub_of(app: &TestApp, id: ObjectId) -> String {
    let record = raw_collection(&app.db, "users").await.find_one(doc! {"_id": id}).await.unwrap().unwrap();
    record.get_str("cognitoUserId").unwrap().to_owned()
}

/// The tenant's `user.exported` entries on record `id`.
async fn exports_audited(app: &TestApp, tenant: &str, id: ObjectId) -> Vec<Document> {
    let filter = doc! {"tenantId": tenant, "action": "user.exported", "resourceId": id.to_hex()};
    let entries = raw_collection(&app.db, "auditLogs").await.find(filter).await.unwrap();
    futures_util::TryStreamExt::try_collect(entries).await.unwrap()
}

#[tokio::test]
async fn an_admin_s_export_holds_the_opened_record_its_roles_and_its_keys_without_secrets() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@export.example").await;
    let (person, token) = app.seed_user(&tenant, "second.admin@export.example", "admin", "active").await;
    // The person creates a key, and rotates it: a hash and a previous hash are stored.
    let (status, _, issued) =
        app.call(app.request(Method::POST, "/api-keys", Some(&token)).json(&json!({"name": "CI", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 201, "{issued}");
    let key_id = issued["data"]["id"].as_str().unwrap().to_owned();
    let (status, _, rotated) = app
        .call(app.request(Method::POST, &format!("/api-keys/{key_id}/rotate"), Some(&token)).json(&json!({"gracePeriodSeconds": 60})))
        .await;
    assert_eq!(status, 200, "{rotated}");
    // Someone else's key is not the person's.
    let (status, _, other) =
        app.call(app.request(Method::POST, "/api-keys", Some(&admin)).json(&json!({"name": "Other", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 201, "{other}");

    let (status, body) = get(&app, &format!("/users/{}/export", person.to_hex()), &admin).await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    let (_, shown) = get(&app, &format!("/users/{}", person.to_hex()), &admin).await;
    assert_eq!(data["user"], shown["data"], "the record as GET /users/{{id}} shows it");
    assert_eq!(data["user"]["email"], "second.admin@export.example", "opened");
    assert_eq!((data["user"]["profile"]["firstName"].as_str(), data["user"]["profile"]["lastName"].as_str()), (Some("Test"), Some("User")));
    let admin_role = role_id(&app, &tenant, "admin").await;
    let roles = data["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!((roles[0]["id"].as_str(), roles[0]["name"].as_str()), (Some(admin_role.to_hex().as_str()), Some("admin")));
    assert_eq!(roles[0]["permissions"], json!(["*"]));
    assert!(roles[0]["description"].is_string());
    let keys = data["apiKeys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "only the keys the person created: {keys:?}");
    let (_, listed) = get(&app, &format!("/api-keys/{key_id}"), &token).await;
    assert_eq!(keys[0], listed["data"], "the key's metadata as GET /api-keys/{{id}} shows it");
    assert_eq!(keys[0]["prefix"], format!("tk_{key_id}"));
    assert_eq!(data["apiKeysTruncated"], false);
    assert!(data["exportedAt"].is_string());

    let text = body.to_string();
    let stored =
        raw_collection(&app.db, "apiKeys").await.find_one(doc! {"_id": ObjectId::parse_str(&key_id).unwrap()}).await.unwrap().unwrap();
    for hash in [stored.get_str("keyHash").unwrap(), stored.get_str("previousKeyHash").unwrap()] {
        assert!(!text.contains(hash), "no hash of a key");
    }
    for secret in [issued["data"]["key"].as_str().unwrap(), rotated["data"]["key"].as_str().unwrap()] {
        assert!(!text.contains(&secret[28..]), "no secret");
    }
    assert!(
        !text.contains("keyHash") && !text.contains("previousKeyHash") && !text.contains("cognitoUserId") && !text.contains("emailHash")
    );
}

#[tokio::test]
async fn the_audit_part_needs_read_audit_logs_and_a_plan_with_audit_logs() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@audited.example").await;
    let (member, _) = app.seed_user(&tenant, "member@audited.example", "user", "active").await;
    let path = format!("/users/{}/export", member.to_hex());
    let (status, body) = get(&app, &path, &admin).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["auditLog"]["entries"].is_array(), "the admin holds read:audit-logs on basic: {body}");

    // A reader of users who may not read the audit log gets the rest, and no audit part.
    let (status, _, reader_role) =
        app.call(app.request(Method::POST, "/roles", Some(&admin)).json(&json!({"name": "Reader", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 201, "{reader_role}");
    let (reader, reader_token) = app.seed_user(&tenant, "reader@audited.example", "user", "active").await;
    let (status, _, assigned) = app
        .call(
            app.request(Method::POST, &format!("/users/{}/roles", reader.to_hex()), Some(&admin))
                .json(&json!({"roleId": reader_role["data"]["id"]})),
        )
        .await;
    assert_eq!(status, 200, "{assigned}");
    let (status, body) = get(&app, &path, &reader_token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"].get("auditLog").is_none(), "no read:audit-logs, no audit part: {body}");
    assert_eq!(body["data"]["user"]["id"], member.to_hex());

    // On a plan without `audit_logs`, not even an admin gets it.
    let (free_admin, free) = app.tenant_with_admin("free", "admin@free-export.example").await;
    let (free_member, _) = app.seed_user(&free, "member@free-export.example", "user", "active").await;
    let (status, body) = get(&app, &format!("/users/{}/export", free_member.to_hex()), &free_admin).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"].get("auditLog").is_none(), "free has no audit_logs: {body}");
    assert_eq!(body["data"]["apiKeys"], json!([]));
}

#[tokio::test]
async fn entries_where_the_person_is_only_the_subject_leave_out_the_actor_s_address_and_agent() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@subject.example").await;
    let (person, token) = app.seed_user(&tenant, "person@subject.example", "admin", "active").await;
    // The person acts (a profile change), and is acted on (a role given by the admin).
    let (status, _, _) = app.call(app.request(Method::PATCH, "/users/me", Some(&token)).json(&json!({"title": "Lead"}))).await;
    assert_eq!(status, 200);
    let viewer = role_id(&app, &tenant, "viewer").await;
    let grant =
        app.request(Method::POST, &format!("/users/{}/roles", person.to_hex()), Some(&admin)).json(&json!({"roleId": viewer.to_hex()}));
    assert_eq!(app.call(grant).await.0, 200);

    let (status, body) = get(&app, &format!("/users/{}/export", person.to_hex()), &admin).await;
    assert_eq!(status, 200, "{body}");
    let sub = sub_of(&app, person).await;
    let entries = body["data"]["auditLog"]["entries"].as_array().unwrap();
    let by = |action: &str| entries.iter().find(|e| e["action"] == action).unwrap_or_else(|| panic!("{action} in {entries:?}")).clone();
    let own = by("user.profile.updated");
    assert_eq!(own["userId"], sub.as_str());
    assert!(own["ip"].is_string() && own["userAgent"].is_string(), "the person's own act keeps its address: {own}");
    let about = by("user.role.assigned");
    assert_ne!(about["userId"], sub.as_str());
    assert_eq!(about["resourceId"], person.to_hex());
    assert!(about.get("ip").is_none() && about.get("userAgent").is_none(), "someone else's address is left out: {about}");
    for entry in entries {
        let actor = entry["userId"] == sub.as_str();
        assert!(actor || entry["resourceId"] == person.to_hex(), "only entries about the person: {entry}");
        assert_eq!(entry.get("ip").is_some(), actor, "{entry}");
    }
    // The admin's own entries about nobody in particular are not the person's.
    assert!(!entries.iter().any(|e| e["action"] == "tenant.created"));
}

#[tokio::test]
async fn the_audit_cursor_returns_every_entry_about_the_person_exactly_once() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@paged.example").await;
    let (person, _) = app.seed_user(&tenant, "person@paged.example", "user", "active").await;
    let sub = sub_of(&app, person).await;
    // 250 entries about or by the person, in pairs sharing a timestamp so that pages are cut
    // inside a millisecond, and 30 about someone else.
    let base = DateTime::now().timestamp_millis() - 3_600_000;
    let entry = |i: i64, actor: &str, subject: &str| {
        doc! {"_id": ObjectId::new(), "tenantId": &tenant, "userId": actor, "action": "user.updated", "resource": "user",
        "resourceId": subject, "details": {"n": i}, "ip": "198.51.100.7", "userAgent": "seed", "requestId": format!("seed-{i}"),
        "timestamp": DateTime::from_millis(base + i / 2), "expireAt": DateTime::from_millis(base + 86_400_000)}
    };
    let someone = ObjectId::new().to_hex();
    let mut seeded: Vec<Document> =
        (0..250).map(|i| if i % 3 == 0 { entry(i, &sub, &someone) } else { entry(i, "other-sub", &person.to_hex()) }).collect();
    seeded.extend((250..280).map(|i| entry(i, "other-sub", &someone)));
    raw_collection(&app.db, "auditLogs").await.insert_many(&seeded).await.unwrap();
    let about = doc! {"tenantId": &tenant, "$or": [{"userId": &sub}, {"resource": "user", "resourceId": person.to_hex()}]};
    let expected: HashSet<String> =
        futures_util::TryStreamExt::try_collect::<Vec<Document>>(raw_collection(&app.db, "auditLogs").await.find(about).await.unwrap())
            .await
            .unwrap()
            .iter()
            .map(|d| d.get_object_id("_id").unwrap().to_hex())
            .collect();
    assert_eq!(expected.len(), 250, "the seeded entries by or about the person");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut previous: Option<(String, String)> = None;
    for page in 1.. {
        assert!(page <= 4, "pages never end");
        let path = match &cursor {
            Some(c) => format!("/users/{}/export?auditCursor={c}", person.to_hex()),
            None => format!("/users/{}/export", person.to_hex()),
        };
        let (status, body) = get(&app, &path, &admin).await;
        assert_eq!(status, 200, "{body}");
        let log = &body["data"]["auditLog"];
        let entries = log["entries"].as_array().unwrap();
        assert!(entries.len() <= 100, "{}", entries.len());
        for e in entries {
            let key = (e["timestamp"].as_str().unwrap().to_owned(), e["id"].as_str().unwrap().to_owned());
            assert!(previous.as_ref().is_none_or(|p| *p > key), "newest first: {key:?} after {previous:?}");
            previous = Some(key);
            seen.push(e["id"].as_str().unwrap().to_owned());
        }
        match log["nextCursor"].as_str() {
            Some(next) => {
                assert_eq!(entries.len(), 100, "a page short of 100 is the last (no entry here nears the size cut)");
                cursor = Some(next.to_owned());
            }
            None => break,
        }
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no entry twice");
    assert_eq!(unique, expected, "every entry about the person, and only those");

    let (status, body) = get(&app, &format!("/users/{}/export?auditCursor=bm9wZQ", person.to_hex()), &admin).await;
    assert_eq!(status, 400, "a cursor this API did not issue: {body}");
    let (status, body) = get(&app, &format!("/users/{}/export?cursor=x", person.to_hex()), &admin).await;
    assert_eq!(status, 400, "an unknown parameter: {body}");
}

#[tokio::test]
async fn a_member_exports_their_own_data_and_only_with_read_users_another_s() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@mine.example").await;
    let (member, token) = app.seed_user(&tenant, "member@mine.example", "user", "active").await;
    let (status, body) = get(&app, "/users/me/export", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["user"]["id"], member.to_hex());
    assert_eq!(body["data"]["user"]["email"], "member@mine.example");
    assert_eq!(body["data"]["roles"][0]["name"], "user");
    assert!(body["data"].get("auditLog").is_none(), "the user role lacks read:audit-logs");

    // Any member, whatever their roles: one whose only role grants nothing of its profile.
    let (status, _, narrow) =
        app.call(app.request(Method::POST, "/roles", Some(&admin)).json(&json!({"name": "Narrow", "permissions": ["read:roles"]}))).await;
    assert_eq!(status, 201, "{narrow}");
    let (status, _, _) = app
        .call(
            app.request(Method::POST, &format!("/users/{}/roles", member.to_hex()), Some(&admin))
                .json(&json!({"roleId": narrow["data"]["id"]})),
        )
        .await;
    assert_eq!(status, 200);
    let user_role = role_id(&app, &tenant, "user").await;
    let (status, _, _) =
        app.call(app.request(Method::DELETE, &format!("/users/{}/roles/{}", member.to_hex(), user_role.to_hex()), Some(&admin))).await;
    assert_eq!(status, 200);
    assert_eq!(get(&app, "/users/me", &token).await.0, 403, "read:profile is gone");
    let (status, body) = get(&app, "/users/me/export", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["roles"][0]["name"], "Narrow");

    let (_, me) = get(&app, "/users/me", &admin).await;
    let admin_id = me["data"]["id"].as_str().unwrap().to_owned();
    let (status, body) = get(&app, &format!("/users/{admin_id}/export"), &token).await;
    assert_eq!(status, 403, "another's export needs read:users: {body}");
    let (status, body) = get(&app, "/users/me/export?auditCursor=x&x=1", &token).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn an_api_key_gets_a_403_and_another_tenant_s_user_a_404() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@keyed.example").await;
    let (member, _) = app.seed_user(&tenant, "member@keyed.example", "user", "active").await;
    let (status, _, issued) = app
        .call(
            app.request(Method::POST, "/api-keys", Some(&admin))
                .json(&json!({"name": "All", "permissions": ["read:users", "read:audit-logs"]})),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let key = issued["data"]["key"].as_str().unwrap();
    for path in [format!("/users/{}/export", member.to_hex()), "/users/me/export".to_owned()] {
        let (status, _, body) = app.call(app.key_request(Method::GET, &path, key)).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.to_string().contains("sign in as a person"), "{body}");
    }
    let path = format!("/users/{}/export", member.to_hex());
    assert_eq!(app.call(app.key_request(Method::GET, "/users", key)).await.0, 200, "the key itself works");

    let (other_admin, other) = app.tenant_with_admin("basic", "admin@elsewhere.example").await;
    let (status, body) = get(&app, &path, &other_admin).await;
    assert_eq!(status, 404, "another tenant's user is unknown: {body}");
    let (status, body) = get(&app, &format!("/users/{}/export", ObjectId::new().to_hex()), &admin).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(&app, "/users/not-an-id/export", &admin).await;
    assert_eq!(status, 400, "{body}");
    assert!(exports_audited(&app, &other, member).await.is_empty() && exports_audited(&app, &tenant, member).await.is_empty());
}

#[tokio::test]
async fn every_export_writes_a_user_exported_entry_without_personal_data() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@trail.example").await;
    let (member, token) = app.seed_user(&tenant, "member@trail.example", "user", "active").await;
    assert_eq!(get(&app, &format!("/users/{}/export", member.to_hex()), &admin).await.0, 200);
    assert_eq!(get(&app, "/users/me/export", &token).await.0, 200);
    assert_eq!(get(&app, "/users/me/export", &token).await.0, 200);
    let entries = exports_audited(&app, &tenant, member).await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    let admin_sub = {
        let (_, me) = get(&app, "/users/me", &admin).await;
        sub_of(&app, ObjectId::parse_str(me["data"]["id"].as_str().unwrap()).unwrap()).await
    };
    let member_sub = sub_of(&app, member).await;
    let by = |sub: &str| entries.iter().filter(|e| e.get_str("userId").ok() == Some(sub)).collect::<Vec<_>>();
    let (by_admin, by_member) = (by(&admin_sub), by(&member_sub));
    assert_eq!((by_admin.len(), by_member.len()), (1, 2));
    let details = by_admin[0].get_document("details").unwrap();
    assert!(!details.get_bool("own").unwrap());
    assert!(details.get_i32("auditEntries").is_ok() || details.get_i64("auditEntries").is_ok(), "{details}");
    assert_eq!(details.get_str("actingAs").unwrap(), "member");
    let details = by_member[0].get_document("details").unwrap();
    assert!(details.get_bool("own").unwrap());
    assert_eq!(details.get("auditEntries"), Some(&mongodb::bson::Bson::Null), "no audit part for the user role");
    for entry in &entries {
        let text = entry.to_string();
        assert!(!text.contains("member@trail.example") && !text.contains("profile"), "no personal data: {text}");
        assert_eq!(entry.get_str("resource").unwrap(), "user");
    }
}
