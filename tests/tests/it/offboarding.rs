//! Offboarding and the purge (docs/ARCHITECTURE.md §22) against real FerretDB and moto: the
//! tenant stops admitting at once and can be cancelled within its grace; a zero-grace
//! offboarding is purged whole by the sweeper, and one whose grace ends is purged then; the
//! purge failed, cut off or crashed at every step and resumed always ends whole; and a dump of
//! the data database taken before it opens nothing of the tenant afterwards.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use reqwest::Method;
use serde_json::json;
use shared::clock::ManualClock;
use shared::db::TenantCollection;
use shared::ids::TenantId;
use shared::pii::{Field, PiiError, Sealed};
use shared::saga::{Begun, Fault, SagaState, Sagas, SweepOptions, LEASE_TTL};
use std::time::Duration;
use tenancy_tests::app::{spawn_app, spawn_app_with_clock, TestApp};
use tenancy_tests::faults::{crashes, At};
use tenancy_tests::raw_collection;

struct Tenant {
    id: String,
    admin: String,
    key: String,
    member_sub: String,
}

/// A tenant with its admin, a second member invited through the API, and an API key.
async fn tenant(app: &TestApp, name: &str) -> Tenant {
    let (admin, id) = app.tenant_with_admin("basic", &format!("admin@{name}.offboard.example")).await;
    let invite = json!({"email": format!("member@{name}.offboard.example"), "firstName": "Mem", "lastName": "Ber"});
    let (status, _, body) = app.call(app.request(Method::POST, "/users", Some(&admin)).json(&invite)).await;
    assert_eq!(status, 201, "{body}");
    let member = raw_collection(&app.db, "users")
        .await
        .find_one(doc! {"_id": mongodb::bson::oid::ObjectId::parse_str(body["data"]["id"]
        .as_str().unwrap()).unwrap()})
        .await
        .unwrap()
        .unwrap();
    let (status, _, key) =
        app.call(app.request(Method::POST, "/api-keys", Some(&admin)).json(&json!({"name": "ci", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 201, "{key}");
    Tenant { id, admin, key: key["data"]["key"].as_str().unwrap().to_owned(), member_sub: member.get_str("cognitoUserId").unwrap().into() }
}

async fn offboard(app: &TestApp, ops: &str, tenant: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (status, _, reply) = app.call(app.request(Method::POST, &format!("/tenants/{tenant}/offboard"), Some(ops)).json(&body)).await;
    (status, reply)
}

async fn cancel(app: &TestApp, ops: &str, tenant: &str) -> (u16, serde_json::Value) {
    let (status, _, reply) = app.call(app.request(Method::POST, &format!("/tenants/{tenant}/offboard/cancel"), Some(ops))).await;
    (status, reply)
}

const NOW: SweepOptions = SweepOptions { older_than: Duration::ZERO, any_other_owner: false, limit: 100 };

/// Asserts that the purge of `t` ended whole: nothing of the tenant is left but its registry
/// record (`inactive`, shredded) and its two tombstones, and none of its people in Cognito.
async fn assert_purged(app: &TestApp, t: &Tenant, context: &str) {
    for collection in TenantCollection::ALL {
        let left = raw_collection(&app.db, collection.name()).await.count_documents(doc! {"tenantId": &t.id}).await.unwrap();
        assert_eq!(left, 0, "{context}: {} left in {}", left, collection.name());
    }
    for collection in ["usageSnapshots", "tenantDomains"] {
        let left = raw_collection(&app.db, collection).await.count_documents(doc! {"tenantId": &t.id}).await.unwrap();
        assert_eq!(left, 0, "{context}: {collection}");
    }
    let sagas: Vec<Document> =
        raw_collection(&app.db, "sagas").await.find(doc! {"tenantId": &t.id}).await.unwrap().try_collect().await.unwrap();
    assert!(sagas.len() == 1 && sagas[0].get_str("state") == Ok("completed"), "{context}: only the purge's own saga, ended: {sagas:?}");
    let record = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": &t.id}).await.unwrap().unwrap();
    assert_eq!(record.get_str("status").unwrap(), "inactive", "{context}");
    assert!(record.get_datetime("keysShreddedAt").is_ok(), "{context}");
    let tombstone = raw_collection(&app.db, "tenantTombstones").await.find_one(doc! {"_id": &t.id}).await.unwrap();
    assert!(tombstone.is_some(), "{context}: the data cluster's tombstone");
    let vault = tenancy_tests::vault_database(&app.db).await;
    assert!(vault.collection::<Document>("tombstones").find_one(doc! {"_id": &t.id}).await.unwrap().is_some(), "{context}: the vault's");
    assert!(app.db.keyring().unwrap().vault().tenant_keys(&TenantId::parse(&t.id).unwrap()).await.unwrap().is_none(), "{context}: keys");
    let users = app.cognito_users().await;
    assert!(!users.iter().any(|(_, tenant)| tenant.as_deref() == Some(t.id.as_str())), "{context}: a Cognito user of the tenant is left");
    let (status, _, _) = app.call(app.key_request(Method::GET, "/users", &t.key)).await;
    assert!(status == 401 || status == 403, "{context}: the key is refused: {status}");
}

#[tokio::test]
async fn a_zero_grace_offboarding_refuses_everyone_at_once_and_the_sweeper_purges_the_tenant_whole() {
    let app = spawn_app().await;
    let ops = app.superadmin().await;
    let t = tenant(&app, "zero").await;
    let kept = tenant(&app, "kept").await;
    let (status, reply) = offboard(&app, &ops, &t.id, json!({"gracePeriodDays": 0})).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["data"]["status"], "offboarding");
    let (status, _, _) = app.call(app.request(Method::GET, "/users", Some(&t.admin))).await;
    assert_eq!(status, 403, "no member is admitted");
    let (status, _, _) = app.call(app.key_request(Method::GET, "/users", &t.key)).await;
    assert_eq!(status, 403, "no key is admitted");
    assert_eq!(cancel(&app, &ops, &t.id).await.0, 409, "a zero grace cannot be cancelled");
    assert_eq!(offboard(&app, &ops, &t.id, json!({})).await.0, 409, "offboarding twice");
    let entries = raw_collection(&app.db, "auditLogs").await;
    assert_eq!(entries.count_documents(doc! {"tenantId": &t.id, "action": "tenant.offboarded"}).await.unwrap(), 1);
    let (status, _, _) = app.call(app.request(Method::PATCH, &format!("/tenants/{}", t.id), Some(&ops)).json(&json!({"name": "X"}))).await;
    assert_eq!(status, 409, "an offboarding tenant no longer changes");
    let before = entries.count_documents(doc! {"tenantId": &t.id}).await.unwrap();
    let (status, _, _) = app.call(app.request(Method::GET, &format!("/tenants/{}", t.id), Some(&ops))).await;
    assert_eq!(status, 200);
    let (status, _, _) = app.call(app.request(Method::GET, &format!("/tenants/{}/usage/history", t.id), Some(&ops))).await;
    assert_eq!(status, 200);
    assert_eq!(entries.count_documents(doc! {"tenantId": &t.id}).await.unwrap(), before, "a superadmin's reads are not audited there");

    let report = onboarding::service::sweep(&app.db, app.deps.directory.as_ref(), NOW).await.unwrap();
    assert!(report.completed >= 1 && report.all_ended(), "{report:?}");
    assert_purged(&app, &t, "zero grace").await;
    let (status, _, view) = app.call(app.request(Method::GET, &format!("/tenants/{}", t.id), Some(&ops))).await;
    assert_eq!((status, view["data"]["status"].as_str()), (200, Some("inactive")), "{view}");
    assert!(!app.cognito_users().await.iter().any(|(sub, _)| *sub == t.member_sub));
    // The receipt states what went: two users and their Cognito users, the key, the roles.
    let (status, _, receipt) = app.call(app.request(Method::GET, &format!("/tenants/{}/receipt", t.id), Some(&ops))).await;
    assert_eq!(status, 200, "{receipt}");
    let r = &receipt["data"]["receipt"];
    assert_eq!(
        (r["tenantId"].as_str(), r["deleted"]["users"].as_u64(), r["deleted"]["apiKeys"].as_u64()),
        (Some(t.id.as_str()), Some(2), Some(1)),
        "{r}"
    );
    assert_eq!(r["cognitoUsersDeleted"], 2, "{r}");
    assert!(r["deleted"]["roles"].as_u64().unwrap() >= 3 && r["deleted"]["auditLogs"].as_u64().unwrap() >= 1, "{r}");
    // The other tenant is untouched.
    let (status, _, _) = app.call(app.request(Method::GET, "/users", Some(&kept.admin))).await;
    assert_eq!(status, 200);
    assert!(raw_collection(&app.db, "users").await.count_documents(doc! {"tenantId": &kept.id}).await.unwrap() == 2);
}

#[tokio::test]
async fn an_offboarding_is_cancelled_within_its_grace_back_to_the_status_it_had_and_purged_once_the_grace_ends() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let ops = app.superadmin().await;
    let t = tenant(&app, "grace").await;
    assert_eq!(offboard(&app, &ops, &t.id, json!({"gracePeriodDays": 366})).await.0, 400);
    assert_eq!(offboard(&app, &ops, &t.id, json!({"gracePeriodDays": "1"})).await.0, 400);
    let (status, _, _) = app.call(app.request(Method::POST, &format!("/tenants/{}/suspend", t.id), Some(&ops)).json(&json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(offboard(&app, &ops, &t.id, json!({})).await.0, 202);
    let (status, back) = cancel(&app, &ops, &t.id).await;
    assert_eq!((status, back["data"]["status"].as_str()), (200, Some("suspended")), "{back}");
    let (status, _, _) = app.call(app.request(Method::POST, &format!("/tenants/{}/reactivate", t.id), Some(&ops))).await;
    assert_eq!(status, 200);
    let (status, _, _) = app.call(app.request(Method::GET, "/users", Some(&t.admin))).await;
    assert_eq!(status, 200, "admitted again");

    assert_eq!(offboard(&app, &ops, &t.id, json!({"gracePeriodDays": 1})).await.0, 202);
    let report = onboarding::service::sweep(&app.db, app.deps.directory.as_ref(), NOW).await.unwrap();
    assert_eq!(report.taken, 0, "the grace is running: {report:?}");
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    assert_eq!(cancel(&app, &ops, &t.id).await.0, 409, "the grace is over");
    let report = onboarding::service::sweep(&app.db, app.deps.directory.as_ref(), NOW).await.unwrap();
    assert!(report.completed == 1 && report.all_ended(), "{report:?}");
    assert_purged(&app, &t, "grace ended").await;
}

/// The purge of a tenant, faulted at `step`, then finished by the sweeper.
async fn faulted(app: &TestApp, clock: &ManualClock, ops: &str, name: &str, step: &'static str, fault: Fault) {
    let context = format!("{step} x {fault:?}");
    let t = tenant(app, name).await;
    assert_eq!(offboard(app, ops, &t.id, json!({"gracePeriodDays": 0})).await.0, 202);
    let tenant_id = TenantId::parse(&t.id).unwrap();
    let sagas = Sagas::new(&app.db);
    let queued = sagas.get(&onboarding::purge::saga_id(&tenant_id)).await.unwrap().expect("the queued purge");
    let Begun::Run(run) = sagas.rejoin_open(queued).await.unwrap() else { panic!("{context}: the purge is taken") };
    let at = At::new(step, fault);
    let reached = at.reached.clone();
    let first = {
        let (db, directory) = (app.db.clone(), app.deps.directory.clone());
        tokio::spawn(async move { onboarding::purge::drive(&db, directory.as_ref(), *run, &at).await.map(|s| s.state) })
    };
    if crashes(fault) {
        reached.notified().await;
        first.abort();
    } else {
        assert!(first.await.unwrap().is_err(), "{context}: the fault reaches the driver");
    }
    clock.advance(LEASE_TTL + Duration::from_secs(1));
    let report = onboarding::service::sweep(&app.db, app.deps.directory.as_ref(), NOW).await.unwrap();
    assert!(report.completed == 1 && report.all_ended(), "{context}: {report:?}");
    let saga = sagas.get(&onboarding::purge::saga_id(&tenant_id)).await.unwrap().unwrap();
    assert_eq!(saga.state, SagaState::Completed, "{context}");
    assert_purged(app, &t, &context).await;
}

#[tokio::test]
async fn a_purge_failed_cut_off_or_crashed_at_any_step_is_resumed_by_the_sweeper_and_ends_whole() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let ops = app.superadmin().await;
    for fault in [Fault::Fail, Fault::LoseReply, Fault::Crash, Fault::CrashAfter] {
        for step in onboarding::purge::STEPS {
            let name = format!("{step}-{fault:?}").to_lowercase();
            faulted(&app, &clock, &ops, &name, step, fault).await;
        }
    }
}

#[tokio::test]
async fn a_dump_of_the_data_database_taken_before_the_offboarding_opens_nothing_of_the_tenant_after_the_purge() {
    let app = spawn_app().await;
    let ops = app.superadmin().await;
    let t = tenant(&app, "dumped").await;
    let mut dump: Vec<(String, Document)> = Vec::new();
    for collection in ["users", "tenants"] {
        let docs: Vec<Document> =
            raw_collection(&app.db, collection).await.find(doc! {"tenantId": &t.id}).await.unwrap().try_collect().await.unwrap();
        dump.extend(docs.into_iter().map(|d| (collection.to_owned(), d)));
    }
    assert_eq!(offboard(&app, &ops, &t.id, json!({"gracePeriodDays": 0})).await.0, 202);
    onboarding::service::sweep(&app.db, app.deps.directory.as_ref(), NOW).await.unwrap();
    assert_purged(&app, &t, "dumped").await;
    let keyring = tenancy_tests::keyring_with(&app.db, tenancy_tests::moto_kms().await).await;
    let tenant = TenantId::parse(&t.id).unwrap();
    let mut refused = 0;
    for (collection, document) in &dump {
        let (field, path) = match collection.as_str() {
            "users" => (Field::UserEmail, "email"),
            _ => (Field::BillingEmail, "settings.billing.billingEmail"),
        };
        let mut value = mongodb::bson::Bson::Document(document.clone());
        for part in path.split('.') {
            value = value.as_document().and_then(|d| d.get(part)).cloned().expect("the sealed field");
        }
        let sealed: Sealed = mongodb::bson::from_bson(value).unwrap();
        assert_eq!(keyring.open(&tenant, field, &sealed).await, Err(PiiError::Shredded(tenant.clone())), "{collection}");
        refused += 1;
    }
    assert_eq!(refused, 3, "two users and the billing e-mail, all sealed and none opens");
}

#[tokio::test]
async fn a_tenant_shredded_before_its_offboarding_is_still_purged_to_its_end() {
    let app = spawn_app().await;
    let ops = app.superadmin().await;
    let t = tenant(&app, "shredded-first").await;
    let event = json!({"action": "shred", "tenantId": &t.id});
    migrations::handle_event(&app.db, app.deps.directory.as_ref(), event).await.unwrap();
    assert_eq!(offboard(&app, &ops, &t.id, json!({"gracePeriodDays": 0})).await.0, 202);
    let report = onboarding::service::sweep(&app.db, app.deps.directory.as_ref(), NOW).await.unwrap();
    assert!(report.completed == 1 && report.all_ended(), "{report:?}");
    for collection in TenantCollection::ALL {
        let left = raw_collection(&app.db, collection.name()).await.count_documents(doc! {"tenantId": &t.id}).await.unwrap();
        assert_eq!(left, 0, "{}", collection.name());
    }
    let record = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": &t.id}).await.unwrap().unwrap();
    assert_eq!(record.get_str("status").unwrap(), "inactive");
    let (status, _, receipt) = app.call(app.request(Method::GET, &format!("/tenants/{}/receipt", t.id), Some(&ops))).await;
    assert_eq!((status, receipt["data"]["receipt"]["cognitoUsersDeleted"].as_u64()), (200, Some(0)), "{receipt}");
}
