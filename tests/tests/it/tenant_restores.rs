//! A tenant's restore (`POST /tenants/{tenantId}/restore`), black-box through the local API with
//! its worker run over moto's SQS and S3: the round trip (export, offboard, restore), after which
//! every document comes back but for ids and times, the admin signs in after a fresh invitation,
//! and the old tenant's purge leaves the new one whole; what is refused before anything starts;
//! and a restore that fails half way, undone whole.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tenancy_tests::app::{spawn_app, TestApp, PASSWORD};
use tenancy_tests::raw_collection;

async fn call(app: &TestApp, method: Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app.request(method, path, Some(token));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let (status, _, body) = app.call(request).await;
    (status, body)
}

/// A completed export of `tenant`: its id.
async fn exported(app: &TestApp, tenant: &str, token: &str) -> String {
    let (status, body) = call(app, Method::POST, &format!("/tenants/{tenant}/exports"), token, None).await;
    assert_eq!(status, 202, "{body}");
    let id = body["data"]["exportId"].as_str().unwrap().to_owned();
    app.run_jobs().await;
    let (_, done) = call(app, Method::GET, &format!("/tenants/{tenant}/exports/{id}"), token, None).await;
    assert_eq!(done["data"]["status"], "completed", "{done}");
    id
}

/// Offboards `tenant` with the default grace: its data and its export kept.
async fn offboarded(app: &TestApp, tenant: &str, ops: &str) {
    let (status, body) = call(app, Method::POST, &format!("/tenants/{tenant}/offboard"), ops, None).await;
    assert_eq!(status, 202, "{body}");
}

/// Ends `tenant`'s grace and purges it to `inactive`.
async fn purged(app: &TestApp, tenant: &str, ops: &str) {
    let past = mongodb::bson::DateTime::from_millis(0);
    raw_collection(&app.db, "tenants")
        .await
        .update_one(doc! {"tenantId": tenant}, doc! {"$set": {"offboarding.graceEndsAt": past}})
        .await
        .unwrap();
    let options = shared::saga::SweepOptions { older_than: std::time::Duration::ZERO, any_other_owner: false, limit: 100 };
    onboarding::service::sweep(&app.db, app.deps.directory.as_ref(), options).await.unwrap();
    onboarding::service::sweep(&app.db, app.deps.directory.as_ref(), options).await.unwrap();
    let (_, record) = call(app, Method::GET, &format!("/tenants/{tenant}"), ops, None).await;
    assert_eq!(record["data"]["status"], "inactive", "{record}");
}

async fn documents(app: &TestApp, collection: &str, tenant: &str) -> Vec<Document> {
    raw_collection(&app.db, collection).await.find(doc! {"tenantId": tenant}).await.unwrap().try_collect().await.unwrap()
}

/// A person as a restore must give them back: the opened record but its ids and times.
async fn people(app: &TestApp, tenant: &str, ops: &str) -> BTreeMap<String, Value> {
    let superadmin_users = call(app, Method::GET, &format!("/tenants/{tenant}"), ops, None).await;
    assert_eq!(superadmin_users.0, 200);
    let mut out = BTreeMap::new();
    for record in documents(app, "users", tenant).await {
        let id = record.get_object_id("_id").unwrap();
        let person = users::person::open(
            &app.db,
            &shared::ids::TenantId::parse(tenant).unwrap(),
            mongodb::bson::from_document(record.clone()).unwrap(),
        )
        .await
        .unwrap();
        let roles: Vec<String> = {
            let mut names = Vec::new();
            for role in record.get_array("roles").unwrap() {
                let role = mongodb::bson::oid::ObjectId::parse_str(role.as_str().unwrap()).unwrap();
                let found = raw_collection(&app.db, "roles").await.find_one(doc! {"_id": role}).await.unwrap().unwrap();
                names.push(found.get_str("name").unwrap().to_owned());
            }
            names
        };
        let _ = id;
        out.insert(person.email.as_str().to_owned(), json!({"profile": serde_json::to_value(&person.profile).unwrap(), "roles": roles}));
    }
    out
}

/// What of a document survives a restore: every field but its ids, times, tenant and the
/// bookkeeping its writes leave.
fn content(document: &Document, drop: &[&str]) -> Value {
    let mut d = document.clone();
    for field in ["_id", "tenantId", "createdAt", "updatedAt"].iter().chain(drop) {
        d.remove(*field);
    }
    mongodb::bson::Bson::Document(d).into_relaxed_extjson()
}

fn sorted(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by_key(|v| v.to_string());
    values
}

#[tokio::test]
async fn export_offboard_restore_brings_every_document_back_and_the_admin_signs_in_after_a_fresh_invitation() {
    let app = spawn_app().await;
    let ops = app.superadmin().await;
    let (admin, old) = app.tenant_with_admin("premium", "owner@restored.example").await;
    app.seed_user(&old, "member@restored.example", "user", "active").await;
    let (status, role) =
        call(&app, Method::POST, "/roles", &admin, Some(json!({"name": "Auditor", "permissions": ["read:audit-logs"]}))).await;
    assert_eq!(status, 201, "{role}");
    let (status, key) = call(&app, Method::POST, "/api-keys", &admin, Some(json!({"name": "CI", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 201, "{key}");
    let (status, _) = call(&app, Method::PATCH, "/users/me", &admin, Some(json!({"department": "Ops"}))).await;
    assert_eq!(status, 200);
    let export = exported(&app, &old, &ops).await;
    // What the export holds, as the old tenant had it.
    let before_people = people(&app, &old, &ops).await;
    let before_roles: Vec<Value> = documents(&app, "roles", &old).await.iter().map(|r| content(r, &["createdBy"])).collect();
    // The entries the export holds: those written before it completed (the read that saw it
    // complete came after).
    let job = raw_collection(&app.db, "jobs").await.find_one(doc! {"_id": &export}).await.unwrap().unwrap();
    let completed = *job.get_datetime("completedAt").unwrap();
    let before_audit: Vec<Value> = documents(&app, "auditLogs", &old)
        .await
        .iter()
        .filter(|e| *e.get_datetime("timestamp").unwrap() <= completed)
        .map(|e| content(e, &["resourceId", "expireAt"]))
        .collect();
    offboarded(&app, &old, &ops).await;

    let (status, started) = call(&app, Method::POST, &format!("/tenants/{old}/restore"), &ops, Some(json!({"exportId": export}))).await;
    assert_eq!(status, 202, "{started}");
    let new = started["data"]["tenantId"].as_str().unwrap().to_owned();
    assert_ne!(new, old, "a new tenant");
    assert!(started["data"]["restoreId"].as_str().unwrap().starts_with("rs_"));
    assert!(app.run_jobs().await >= 1);

    let (status, shown) = call(&app, Method::GET, &format!("/tenants/{new}"), &ops, None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["data"]["status"], "active", "{shown}");
    assert_eq!(shown["data"]["name"], "Acme");
    assert_eq!(shown["data"]["settings"]["billing"]["billingEmail"], "owner@restored.example", "sealed anew, opened");
    assert_eq!(people(&app, &new, &ops).await, before_people, "every person, opened, with their roles");
    let after_roles: Vec<Value> = documents(&app, "roles", &new).await.iter().map(|r| content(r, &["createdBy"])).collect();
    assert_eq!(sorted(after_roles), sorted(before_roles), "every role");
    let after_audit: Vec<Value> =
        documents(&app, "auditLogs", &new).await.iter().map(|e| content(e, &["resourceId", "expireAt"])).collect();
    for entry in &before_audit {
        assert!(after_audit.contains(entry), "every audit entry comes back: {entry}");
    }
    assert!(documents(&app, "apiKeys", &new).await.is_empty(), "API keys are not restored");
    let tenant = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": &new}).await.unwrap().unwrap();
    let counters = tenant.get_document("counters").unwrap();
    assert_eq!((counters.get_i64("seats").unwrap(), counters.get_i64("admins").unwrap()), (2, 1), "counted from what came back");
    // Personal data is sealed under the new tenant's keys: the old ones are shredded.
    let record = documents(&app, "users", &new).await.into_iter().next().unwrap();
    assert!(matches!(record.get("email"), Some(mongodb::bson::Bson::Binary(_))), "sealed, not plain");

    // The admin was invited afresh: with the password they choose, they sign in to the new tenant.
    app.cognito
        .admin_set_user_password()
        .user_pool_id(&app.pool.user_pool_id)
        .username("owner@restored.example")
        .password(PASSWORD)
        .permanent(true)
        .send()
        .await
        .unwrap();
    let token = local_api::cognito::id_token(&app.cognito, &app.pool, "owner@restored.example", PASSWORD).await.unwrap();
    let (status, me) = call(&app, Method::GET, "/users/me", &token, None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["data"]["email"], "owner@restored.example");
    assert_eq!(me["data"]["status"], "active", "activated by their first call");
    let (status, users) = call(&app, Method::GET, "/users", &token, None).await;
    assert_eq!(status, 200, "{users}");
    assert_eq!(users["data"]["users"].as_array().unwrap().len(), 2);

    // The same export again: its people now belong to the restored tenant.
    let (status, again) = call(&app, Method::POST, &format!("/tenants/{old}/restore"), &ops, Some(json!({"exportId": export}))).await;
    assert_eq!(status, 409, "{again}");
    // The old tenant can no longer come back: its people moved.
    let (status, cancelled) = call(&app, Method::POST, &format!("/tenants/{old}/offboard/cancel"), &ops, None).await;
    assert_eq!(status, 409, "{cancelled}");
    // Its purge, once its grace ends, takes nothing of the new tenant: not its people's
    // addresses, nor their Cognito users, nor its domain.
    purged(&app, &old, &ops).await;
    let (status, me) = call(&app, Method::GET, "/users/me", &token, None).await;
    assert_eq!(status, 200, "{me}");
    let holder = app.db.keyring().unwrap().email_holder(&shared::ids::Email::parse("member@restored.example").unwrap()).await.unwrap();
    assert_eq!(holder.as_ref().map(|t| t.as_str()), Some(new.as_str()));
    assert_eq!(people(&app, &new, &ops).await, before_people, "still every person");
}

#[tokio::test]
async fn a_restore_is_refused_before_anything_starts_unless_its_export_is_complete_and_its_people_and_domain_are_free() {
    let app = spawn_app().await;
    let ops = app.superadmin().await;
    let (admin, tenant) = app.tenant_with_admin("premium", "owner@refused-restore.example").await;
    let export = exported(&app, &tenant, &ops).await;
    let restore = |body: Value| {
        let (app, tenant) = (&app, tenant.clone());
        async move { call(app, Method::POST, &format!("/tenants/{tenant}/restore"), &ops_token(app).await, Some(body)).await }
    };
    // The tenant still holds its people: a 409, and nothing was written.
    let (status, body) = restore(json!({"exportId": &export})).await;
    assert_eq!(status, 409, "{body}");
    // Not a superadmin, an unknown export, another job's id, no body or a bad one.
    let (status, _) = call(&app, Method::POST, &format!("/tenants/{tenant}/restore"), &admin, Some(json!({"exportId": &export}))).await;
    assert_eq!(status, 403);
    let (status, body) = restore(json!({"exportId": "ex_aaaaaaaaaaaaaaaaaaaaaaaaaa"})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = restore(json!({"exportId": "rs_aaaaaaaaaaaaaaaaaaaaaaaaaa"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = restore(json!({"exportId": {"$ne": ""}})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = restore(json!({})).await;
    assert_eq!(status, 400, "{body}");
    // A queued export is no export yet.
    let (status, queued) = call(&app, Method::POST, &format!("/tenants/{tenant}/exports"), &ops, None).await;
    assert_eq!(status, 202);
    let (status, body) = restore(json!({"exportId": queued["data"]["exportId"]})).await;
    assert_eq!(status, 409, "{body}");
    let restores = raw_collection(&app.db, "jobs").await.count_documents(doc! {"kind": "restore"}).await.unwrap();
    assert_eq!(restores, 0, "no restore was started");
}

async fn ops_token(app: &TestApp) -> String {
    app.superadmin().await
}

#[tokio::test]
async fn a_restore_that_meets_a_taken_address_half_way_is_undone_whole() {
    let app = spawn_app().await;
    let ops = app.superadmin().await;
    let (_, old) = app.tenant_with_admin("premium", "owner@undone.example").await;
    for i in 0..3 {
        app.seed_user(&old, &format!("person{i}@undone.example"), "user", "active").await;
    }
    let export = exported(&app, &old, &ops).await;
    offboarded(&app, &old, &ops).await;
    let (status, started) = call(&app, Method::POST, &format!("/tenants/{old}/restore"), &ops, Some(json!({"exportId": export}))).await;
    assert_eq!(status, 202, "{started}");
    let new = started["data"]["tenantId"].as_str().unwrap().to_owned();
    // Between the checks and the load, another tenant comes to hold one of the addresses.
    let (_, other) = app.tenant_with_admin("basic", "owner@other-undone.example").await;
    let taken = shared::ids::Email::parse("person2@undone.example").unwrap();
    let keyring = app.db.keyring().unwrap();
    let claimed = keyring.claim_email(&shared::ids::TenantId::parse(&other).unwrap(), &taken).await.unwrap();
    assert_eq!(claimed, shared::pii::EmailClaim::Claimed);
    app.run_jobs().await;

    let restore = raw_collection(&app.db, "jobs").await.find_one(doc! {"kind": "restore"}).await.unwrap().unwrap();
    assert_eq!(restore.get_str("state").unwrap(), "failed", "{restore}");
    assert_eq!(restore.get_document("error").unwrap().get_str("code").unwrap(), "EMAIL_TAKEN");
    let (status, _) = call(&app, Method::GET, &format!("/tenants/{new}"), &ops, None).await;
    assert_eq!(status, 404, "no half tenant is left");
    for collection in ["users", "roles", "auditLogs", "userErasures", "apiKeys"] {
        assert!(documents(&app, collection, &new).await.is_empty(), "{collection}: nothing of the new tenant is left");
    }
    let domains = raw_collection(&app.db, "tenantDomains").await.count_documents(doc! {"tenantId": &new}).await.unwrap();
    assert_eq!(domains, 0);
    let in_pool: Vec<_> = app.cognito_users().await.into_iter().filter(|(_, t)| t.as_deref() == Some(new.as_str())).collect();
    assert!(in_pool.is_empty(), "no Cognito user of the new tenant is left: {in_pool:?}");
    // The addresses it had taken over are not the new tenant's any more.
    let holder = keyring.email_holder(&shared::ids::Email::parse("owner@undone.example").unwrap()).await.unwrap();
    assert_ne!(holder.as_ref().map(|t| t.as_str()), Some(new.as_str()), "released");
    assert_eq!(keyring.email_holder(&taken).await.unwrap().map(|t| t.to_string()), Some(other), "the other tenant's is untouched");
}

#[tokio::test]
async fn the_purge_of_a_tenant_waits_for_the_restore_of_its_export_and_a_restoring_tenant_changes_for_no_one() {
    let app = spawn_app().await;
    let ops = app.superadmin().await;
    let (_, old) = app.tenant_with_admin("premium", "owner@waiting.example").await;
    let export = exported(&app, &old, &ops).await;
    offboarded(&app, &old, &ops).await;
    let (status, started) = call(&app, Method::POST, &format!("/tenants/{old}/restore"), &ops, Some(json!({"exportId": export}))).await;
    assert_eq!(status, 202, "{started}");
    let new = started["data"]["tenantId"].as_str().unwrap().to_owned();
    // The grace ends while the restore is still queued: the purge waits, and deletes nothing.
    let past = mongodb::bson::DateTime::from_millis(0);
    raw_collection(&app.db, "tenants")
        .await
        .update_one(doc! {"tenantId": &old}, doc! {"$set": {"offboarding.graceEndsAt": past}})
        .await
        .unwrap();
    let options = shared::saga::SweepOptions { older_than: std::time::Duration::ZERO, any_other_owner: false, limit: 100 };
    onboarding::service::sweep(&app.db, app.deps.directory.as_ref(), options).await.unwrap();
    let (_, record) = call(&app, Method::GET, &format!("/tenants/{old}"), &ops, None).await;
    assert_eq!(record["data"]["status"], "offboarding", "the purge waits: {record}");
    let files = raw_collection(&app.db, "jobs").await.find_one(doc! {"_id": &export}).await.unwrap().unwrap();
    assert!(files.get("filesDeletedAt").is_none_or(|v| v == &mongodb::bson::Bson::Null), "its export's files are kept");

    // A restoring tenant: registered, suspended, and changed by no route until its commit.
    let restore = raw_collection(&app.db, "jobs").await.find_one(doc! {"kind": "restore"}).await.unwrap().unwrap();
    let job: shared::jobs::Job = mongodb::bson::from_document(restore).unwrap();
    let (target, source) = (shared::ids::TenantId::parse(&new).unwrap(), job.tenant_id.clone());
    let _ = source;
    tenants::jobs::restore::step(&app.db, app.deps.directory.as_ref(), &job, Default::default()).await.unwrap();
    let (status, shown) = call(&app, Method::GET, &format!("/tenants/{target}"), &ops, None).await;
    assert_eq!((status, shown["data"]["status"].as_str()), (200, Some("suspended")), "{shown}");
    for (method, path, body) in [
        (Method::POST, format!("/tenants/{new}/reactivate"), None),
        (Method::POST, format!("/tenants/{new}/offboard"), Some(json!({"gracePeriodDays": 0}))),
        (Method::PATCH, format!("/tenants/{new}"), Some(json!({"name": "Renamed"}))),
        (Method::PATCH, format!("/tenants/{new}/settings/customization"), Some(json!({"theme": "dark"}))),
    ] {
        let (status, body) = call(&app, method.clone(), &path, &ops, body).await;
        assert_eq!(status, 409, "{method} {path}: {body}");
    }

    // Once the restore is done, the purge goes on, and leaves the new tenant whole.
    app.run_jobs().await;
    let (_, shown) = call(&app, Method::GET, &format!("/tenants/{new}"), &ops, None).await;
    assert_eq!(shown["data"]["status"], "active", "{shown}");
    purged(&app, &old, &ops).await;
    let (status, _) = call(&app, Method::GET, &format!("/tenants/{new}"), &ops, None).await;
    assert_eq!(status, 200);
    assert_eq!(documents(&app, "users", &new).await.len(), 1);
}
