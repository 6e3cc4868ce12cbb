//! A person's erasure (`POST /users/{userId}/erase`, docs/ARCHITECTURE.md §22) against real
//! FerretDB and moto: a raw read of every collection of both databases finds nothing of the
//! person afterwards (and did before, so the read can fail); the tombstone, the audit log's
//! "erased user", the refused token and key, the counters and the freed address; the refusals;
//! and the saga crashed, failed or cut off after every step, then finished by a retry or the
//! sweeper, always to the same end.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use reqwest::Method;
use serde_json::{json, Value};
use shared::clock::ManualClock;
use shared::saga::{Fault, NoFaults, SagaState, SweepOptions, LEASE_TTL};
use std::time::Duration;
use tenancy_tests::app::{spawn_app, spawn_app_with_clock, TestApp};
use tenancy_tests::faults::{crashes, At};
use tenancy_tests::{raw_collection, vault_name};
use users::erasure::STEPS;
use users::error::UsersError;

/// Names no other test uses, so that a raw read for them means this person.
const FIRST: &str = "Zephyrine";
const LAST: &str = "Quillfeather";

struct Tenant {
    id: String,
    admin: String,
    admin_sub: String,
}

struct Person {
    id: ObjectId,
    sub: String,
    email: String,
    token: String,
    key: String,
    blind_index: String,
}

async fn tenant(app: &TestApp, admin_email: &str) -> Tenant {
    let (admin, id) = app.tenant_with_admin("basic", admin_email).await;
    let record = raw_collection(&app.db, "users").await.find_one(doc! {"tenantId": &id}).await.unwrap().expect("the admin");
    Tenant { id, admin, admin_sub: record.get_str("cognitoUserId").unwrap().to_owned() }
}

async fn role_id(app: &TestApp, tenant: &str, name: &str) -> String {
    let role = raw_collection(&app.db, "roles").await.find_one(doc! {"tenantId": tenant, "name": name}).await.unwrap().unwrap();
    role.get_object_id("_id").unwrap().to_hex()
}

/// A person invited through the API as a second admin, who signs in, changes their profile (an
/// entry they act in, from their own address) and makes an API key.
async fn person(app: &TestApp, t: &Tenant, email: &str) -> Person {
    let admin_role = role_id(app, &t.id, "admin").await;
    let body = json!({"email": email, "firstName": FIRST, "lastName": LAST, "roles": [admin_role]});
    let (status, _, invited) = app.call(app.request(Method::POST, "/users", Some(&t.admin)).json(&body)).await;
    assert_eq!(status, 201, "{invited}");
    let id = ObjectId::parse_str(invited["data"]["id"].as_str().unwrap()).unwrap();
    let token = app.member(email, &t.id).await;
    let profile = app.request(Method::PATCH, "/users/me", Some(&token)).header("user-agent", "erasure-test-agent/1");
    let (status, _, body) = app.call(profile.json(&json!({"department": "Cartography"}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, key) =
        app.call(app.request(Method::POST, "/api-keys", Some(&token)).json(&json!({"name": "mine", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 201, "{key}");
    let record = raw_collection(&app.db, "users").await.find_one(doc! {"_id": id}).await.unwrap().unwrap();
    Person {
        id,
        sub: record.get_str("cognitoUserId").unwrap().to_owned(),
        email: email.to_owned(),
        token,
        key: key["data"]["key"].as_str().unwrap().to_owned(),
        blind_index: record.get_str("emailHash").unwrap().to_owned(),
    }
}

/// Every string of every document of every collection of the data and vault databases, with
/// where it is: the raw read the proof of an erasure makes.
async fn every_string(app: &TestApp) -> Vec<(String, String)> {
    fn walk(path: String, value: &Bson, out: &mut Vec<(String, String)>) {
        match value {
            Bson::String(s) => out.push((path, s.clone())),
            Bson::Document(d) => d.iter().for_each(|(k, v)| walk(format!("{path}.{k}"), v, out)),
            Bson::Array(items) => items.iter().enumerate().for_each(|(i, v)| walk(format!("{path}.{i}"), v, out)),
            _ => {}
        }
    }
    let client = mongodb::Client::with_uri_str(tenancy_tests::mongodb_uri()).await.unwrap();
    let mut out = Vec::new();
    for name in [app.db.name().to_owned(), vault_name(&app.db)] {
        let database = client.database(&name);
        for collection in database.list_collection_names().await.unwrap() {
            let docs: Vec<Document> =
                database.collection::<Document>(&collection).find(doc! {}).await.unwrap().try_collect().await.unwrap();
            for d in docs {
                walk(format!("{name}.{collection}"), &Bson::Document(d), &mut out);
            }
        }
    }
    out
}

/// Where the person's e-mail, names or blind index appear in a raw read.
async fn traces_of(app: &TestApp, p: &Person) -> Vec<String> {
    let needles = [p.email.as_str(), FIRST, LAST, p.blind_index.as_str()];
    let found = every_string(app).await;
    found.into_iter().filter(|(_, s)| needles.iter().any(|n| s.contains(n))).map(|(path, _)| path).collect()
}

async fn counters(app: &TestApp, tenant: &str) -> (i64, i64) {
    let t = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": tenant}).await.unwrap().unwrap();
    let c = t.get_document("counters").unwrap();
    (c.get_i64("seats").unwrap(), c.get_i64("admins").unwrap())
}

async fn erase(app: &TestApp, token: &str, id: &str) -> (u16, Value) {
    let (status, _, body) = app.call(app.request(Method::POST, &format!("/users/{id}/erase"), Some(token))).await;
    (status, body)
}

#[tokio::test]
async fn an_erasure_leaves_nothing_of_the_person_in_either_database_and_refuses_their_token_and_key() {
    let app = spawn_app().await;
    let t = tenant(&app, "admin@erase.example").await;
    let p = person(&app, &t, "zephyrine@erase.example").await;
    let before = traces_of(&app, &p).await;
    assert!(before.iter().any(|path| path.ends_with("users.emailHash")), "the read finds the record's blind index: {before:?}");
    assert!(before.iter().any(|path| path.ends_with("sagas.lookup")), "and the invitation saga's: {before:?}");
    let (seats, admins) = counters(&app, &t.id).await;
    let (status, _, _) = app.call(app.request(Method::GET, "/users/me", Some(&p.token))).await;
    assert_eq!(status, 200, "the person is admitted before");

    let (status, body) = erase(&app, &t.admin, &p.id.to_hex()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["erased"], true);
    let erased_at = body["data"]["erasedAt"].as_str().unwrap().to_owned();

    assert_eq!(traces_of(&app, &p).await, Vec::<String>::new(), "nothing of the person is left");
    assert_eq!(counters(&app, &t.id).await, (seats - 1, admins - 1), "the seat and the admin place go with the record");
    let (status, _, _) = app.call(app.request(Method::GET, "/users/me", Some(&p.token))).await;
    assert_eq!(status, 403, "the person's token is refused at once");
    let (status, _, _) = app.call(app.key_request(Method::GET, "/users", &p.key)).await;
    assert!(status == 401 || status == 403, "the person's key is revoked: {status}");
    assert!(!app.cognito_users().await.iter().any(|(sub, _)| *sub == p.sub), "the Cognito user is deleted");

    let tombstone = raw_collection(&app.db, "userErasures").await.find_one(doc! {"_id": p.id}).await.unwrap().expect("a tombstone");
    assert_eq!(tombstone.get_str("formerSub").unwrap(), p.sub);
    assert_eq!(tombstone.get_str("erasedBy").unwrap(), t.admin_sub);
    assert_eq!(tombstone.get_str("tenantId").unwrap(), t.id);
    let acted = raw_collection(&app.db, "auditLogs").await;
    let acted: Vec<Document> = acted.find(doc! {"tenantId": &t.id, "userId": &p.sub}).await.unwrap().try_collect().await.unwrap();
    assert!(acted.len() >= 2, "the person acted (profile, key): {acted:?}");
    for entry in &acted {
        // The refusals of the token after the erasure too: they keep no address of the person.
        assert_eq!((entry.get_str("ip").unwrap(), entry.get_str("userAgent").unwrap()), ("", ""), "{entry:?}");
        let refusal = entry.get_str("action") == Ok("access.denied");
        assert!(refusal || entry.get_bool("actorErased") == Ok(true), "{entry:?}");
    }
    let (status, _, log) = app.call(app.request(Method::GET, &format!("/audit-logs?userId={}", p.sub), Some(&t.admin))).await;
    assert_eq!(status, 200, "{log}");
    let entries = log["data"]["auditLogs"].as_array().or_else(|| log["data"].as_array()).cloned().unwrap_or_default();
    let made: Vec<&Value> = entries.iter().filter(|e| e["action"] != "access.denied").collect();
    assert!(!made.is_empty() && made.iter().all(|e| e["actor"] == "erased user"), "{log}");

    // Idempotent: the same answer, and one audit entry of the erasure.
    let (status, again) = erase(&app, &t.admin, &p.id.to_hex()).await;
    assert_eq!((status, again["data"]["erasedAt"].as_str()), (200, Some(erased_at.as_str())), "{again}");
    let erasures = raw_collection(&app.db, "auditLogs").await.count_documents(doc! {"tenantId": &t.id, "action": "user.erased"}).await;
    assert_eq!(erasures.unwrap(), 1);
    // The address is free again: the global claim went with the person.
    let (status, _, body) = app
        .call(app.request(Method::POST, "/users", Some(&t.admin)).json(&json!({"email": p.email, "firstName": "New",
        "lastName": "Person"})))
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn nobody_erases_themselves_a_stranger_a_bad_id_or_with_a_body_and_the_last_admin_stays_until_another_exists() {
    let app = spawn_app().await;
    let t = tenant(&app, "admin@keep.example").await;
    let admin_id = raw_collection(&app.db, "users").await.find_one(doc! {"tenantId": &t.id}).await.unwrap().unwrap();
    let admin_id = admin_id.get_object_id("_id").unwrap().to_hex();
    assert_eq!(erase(&app, &t.admin, &admin_id).await.0, 403, "nobody erases themselves");
    assert_eq!(erase(&app, &t.admin, "not-an-id").await.0, 400);
    assert_eq!(erase(&app, &t.admin, &ObjectId::new().to_hex()).await.0, 404);
    let other = tenant(&app, "admin@other-keep.example").await;
    let other_admin = raw_collection(&app.db, "users").await.find_one(doc! {"tenantId": &other.id}).await.unwrap().unwrap();
    let other_admin = other_admin.get_object_id("_id").unwrap().to_hex();
    assert_eq!(erase(&app, &t.admin, &other_admin).await.0, 404, "another tenant's user is unknown here");
    let with_body = app.request(Method::POST, &format!("/users/{other_admin}/erase"), Some(&other.admin)).json(&json!({"force": true}));
    assert_eq!(app.call(with_body).await.0, 400, "the route takes no body");

    // An operator with every permission (a custom role) but not the admin role: the admin is
    // the last one, and stays.
    let (status, _, role) =
        app.call(app.request(Method::POST, "/roles", Some(&t.admin)).json(&json!({"name": "Operators", "permissions": ["*"]}))).await;
    assert_eq!(status, 201, "{role}");
    let (operator_id, operator) = app.seed_user(&t.id, "operator@keep.example", "viewer", "active").await;
    let operators = role_id(&app, &t.id, "Operators").await;
    let assign = app.request(Method::POST, &format!("/users/{operator_id}/roles"), Some(&t.admin)).json(&json!({"roleId": operators}));
    assert_eq!(app.call(assign).await.0, 200);
    let (status, body) = erase(&app, &operator, &admin_id).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        raw_collection(&app.db, "users")
            .await
            .find_one(doc! {"_id": ObjectId::parse_str(&admin_id).unwrap(), "status": "active"})
            .await
            .unwrap()
            .is_some(),
        "the refusal changed nothing"
    );
    // With a second admin, the same request goes through.
    let admin_role = role_id(&app, &t.id, "admin").await;
    let assign = app.request(Method::POST, &format!("/users/{operator_id}/roles"), Some(&t.admin)).json(&json!({"roleId": admin_role}));
    assert_eq!(app.call(assign).await.0, 200);
    let (status, body) = erase(&app, &operator, &admin_id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(counters(&app, &t.id).await, (1, 1));
}

/// How an erasure faulted at one step is followed up.
#[derive(Debug, Clone, Copy)]
enum Then {
    Retry,
    Sweep,
}

const NOW: SweepOptions = SweepOptions { older_than: Duration::ZERO, any_other_owner: true, limit: 100 };

/// Every step of the erasure, under `fault`, followed by a retry and by the sweeper: the
/// person ends erased every time, exactly as an erasure that met no fault leaves them.
async fn every_step(fault: Fault) {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let name = format!("{fault:?}").to_lowercase();
    let t = tenant(&app, &format!("admin@{name}.erasure.example")).await;
    let ctx = tenancy_tests::member_context(&app.db, &t.id, &t.admin_sub).await;
    let (db, directory) = (&app.db, app.deps.directory.as_ref());
    for step in STEPS {
        for then in [Then::Retry, Then::Sweep] {
            let context = format!("{step} x {fault:?} then {then:?}");
            let p = person(&app, &t, &format!("{step}-{then:?}@{name}.erasure.example").to_lowercase()).await;
            let (seats, admins) = counters(&app, &t.id).await;
            let at = At::new(step, fault);
            let reached = at.reached.clone();
            let first = {
                let (db, directory, ctx, id) = (db.clone(), app.deps.directory.clone(), ctx.clone(), p.id);
                tokio::spawn(async move { users::erasure::erase(&db, directory.as_ref(), &ctx, id, &at).await.map(|e| e.fresh) })
            };
            if crashes(fault) {
                reached.notified().await;
                first.abort();
            } else {
                match first.await.unwrap() {
                    Err(UsersError::Injected(_)) => {}
                    other => panic!("{context}: the fault reaches the caller: {other:?}"),
                }
            }
            match then {
                Then::Retry => {
                    if crashes(fault) {
                        match users::erasure::erase(db, directory, &ctx, p.id, &NoFaults).await {
                            Err(UsersError::InProgress(_)) => {}
                            other => panic!("{context}: a live lease answers in progress: {other:?}"),
                        }
                        clock.advance(LEASE_TTL + Duration::from_secs(1));
                    }
                    let done = users::erasure::erase(db, directory, &ctx, p.id, &NoFaults).await;
                    assert!(done.is_ok(), "{context}: the retry finishes it: {done:?}");
                }
                Then::Sweep => {
                    // Past the crashed lease, and past the instant a paused saga gave its lease up.
                    clock.advance(LEASE_TTL + Duration::from_secs(1));
                    let report = onboarding::service::sweep(db, directory, SweepOptions { any_other_owner: false, ..NOW }).await.unwrap();
                    assert!(report.taken == 1 && report.all_ended(), "{context}: {report:?}");
                }
            }
            let saga = raw_collection(db, "sagas").await.find_one(doc! {"_id": format!("erasure:{}:{}", t.id, p.id.to_hex())}).await;
            let saga = saga.unwrap().unwrap_or_else(|| panic!("{context}: the saga"));
            assert_eq!(saga.get_str("state").unwrap(), SagaState::Completed.as_str(), "{context}: {saga:?}");
            assert_eq!(traces_of(&app, &p).await, Vec::<String>::new(), "{context}: nothing of the person is left");
            assert_eq!(counters(&app, &t.id).await, (seats - 1, admins - 1), "{context}: the counters moved once");
            assert!(!app.cognito_users().await.iter().any(|(sub, _)| *sub == p.sub), "{context}: the Cognito user is gone");
            let keys = raw_collection(db, "apiKeys").await;
            assert_eq!(keys.count_documents(doc! {"createdBy": p.id, "status": "active"}).await.unwrap(), 0, "{context}");
            let marks = raw_collection(db, "tenants").await.find_one(doc! {"tenantId": &t.id}).await.unwrap().unwrap();
            assert!(marks.get_document("sagaReleases").map(|m| m.is_empty()).unwrap_or(true), "{context}: the mark is dropped");
        }
    }
}

#[tokio::test]
async fn an_erasure_failed_at_any_step_is_finished_by_a_retry_or_the_sweeper() {
    every_step(Fault::Fail).await;
}

#[tokio::test]
async fn an_erasure_that_lost_a_reply_at_any_step_is_finished_by_a_retry_or_the_sweeper() {
    every_step(Fault::LoseReply).await;
}

#[tokio::test]
async fn an_erasure_crashed_at_any_step_is_finished_by_a_retry_or_the_sweeper() {
    every_step(Fault::Crash).await;
}

#[tokio::test]
async fn an_erasure_crashed_after_any_step_acted_is_finished_by_a_retry_or_the_sweeper() {
    every_step(Fault::CrashAfter).await;
}

#[tokio::test]
async fn a_record_held_by_an_erasure_is_no_other_writer_s_and_the_erasure_ends_it() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let t = tenant(&app, "admin@held.erasure.example").await;
    let p = person(&app, &t, "held@held.erasure.example").await;
    let ctx = tenancy_tests::member_context(&app.db, &t.id, &t.admin_sub).await;
    let (seats, admins) = counters(&app, &t.id).await;
    // The erasure stops right after its first step acted: the record is held.
    let at = At::new(users::erasure::HOLD, Fault::CrashAfter);
    let reached = at.reached.clone();
    let first = {
        let (db, directory, ctx, id) = (app.db.clone(), app.deps.directory.clone(), ctx.clone(), p.id);
        tokio::spawn(async move { users::erasure::erase(&db, directory.as_ref(), &ctx, id, &at).await.map(|e| e.fresh) })
    };
    reached.notified().await;
    first.abort();
    let path = format!("/users/{}", p.id.to_hex());
    let (status, _, body) = app.call(app.request(Method::DELETE, &path, Some(&t.admin))).await;
    assert_eq!(status, 409, "a deletion misses the held record: {body}");
    let (status, _, _) = app.call(app.request(Method::PATCH, &path, Some(&t.admin)).json(&json!({"status": "active"}))).await;
    assert_eq!(status, 404, "a record being removed is not changed either");
    let held = raw_collection(&app.db, "users").await.find_one(doc! {"_id": p.id}).await.unwrap().unwrap();
    assert_eq!((held.get_str("status").unwrap(), held.get_str("erasing").is_ok()), ("inactive", true), "{held:?}");
    clock.advance(LEASE_TTL + Duration::from_secs(1));
    let (status, body) = erase(&app, &t.admin, &p.id.to_hex()).await;
    assert_eq!(status, 200, "the retry finishes it: {body}");
    assert_eq!(traces_of(&app, &p).await, Vec::<String>::new());
    assert_eq!(counters(&app, &t.id).await, (seats - 1, admins - 1), "the places went once");
}
