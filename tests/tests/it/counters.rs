//! Exact counters under lost replies, and their reconciliation (docs/ARCHITECTURE.md §12,
//! §13). The service runs on a database handle reached through the
//! fault proxy in front of the real FerretDB; the proxy forwards one write and drops its reply.
//! Each case ends with the tenant's counters equal to a recount of the records' markers.

use futures_util::future::BoxFuture;
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use reqwest::Method;
use serde_json::json;
use shared::clock::ManualClock;
use shared::config::DbConfig;
use shared::db::Db;
use shared::seam::{NoSeam, Seam};
use shared::TenantContext;
use std::sync::Mutex;
use std::time::Duration;
use tenancy_tests::app::{spawn_app, spawn_app_on_db, spawn_app_with_clock, TestApp};
use tenancy_tests::proxy::FaultProxy;
use tenancy_tests::raw_collection;

/// The app on a fresh database, and a second handle on the same database through a fault proxy.
async fn app_and_proxied() -> (TestApp, Db, FaultProxy) {
    let db = tenancy_tests::fresh_db_with_indexes().await;
    let proxy = FaultProxy::start(&tenancy_tests::mongodb_uri()).await;
    let config = DbConfig { uri: proxy.uri(), database: db.name().to_owned(), ..tenancy_tests::fresh_db_config() };
    let proxied = tenancy_tests::with_keyring(Db::connect(&config).await.expect("connect through the proxy")).await;
    proxied.flavor().await.expect("the server's flavor, asked before any fault");
    (spawn_app_on_db(db).await, proxied, proxy)
}

/// The tenant admin admitted as the local API admits it (through the direct handle).
async fn admin_context(db: &Db, tenant: &str) -> TenantContext {
    let admin = raw_collection(db, "users").await.find_one(doc! {"tenantId": tenant}).await.unwrap().expect("the admin's record");
    let event = json!({
        "resource": "/api-keys", "path": "/api-keys", "httpMethod": "POST", "headers": {},
        "requestContext": {"requestId": "counters", "resourcePath": "/api-keys", "httpMethod": "POST",
            "authorizer": {"principalType": "user", "sub": admin.get_str("cognitoUserId").unwrap(), "email": "", "emailVerified": false,
                "groups": "[]", "tenantId": tenant, "apiKeyId": "", "createdBy": "", "permissions": "[]"}},
        "body": null, "isBase64Encoded": false
    });
    let identity = shared::Identity::from_request(&lambda_http::request::from_str(&event.to_string()).unwrap()).expect("an identity");
    TenantContext::admit(db, &identity, None, shared::admission::Quota::Enforce).await.expect("admitted")
}

fn count(value: Option<&Bson>) -> i64 {
    match value {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Double(n)) => *n as i64,
        None => 0,
        other => panic!("not a count: {other:?}"),
    }
}

/// The tenant's counters as stored: seats, admins, key places.
async fn counters(db: &Db, tenant: &str) -> (i64, i64, i64) {
    let record = raw_collection(db, "tenants").await.find_one(doc! {"tenantId": tenant}).await.unwrap().unwrap();
    let c = record.get_document("counters").unwrap();
    (count(c.get("seats")), count(c.get("admins")), count(record.get("apiKeyCount")))
}

/// The same three, recounted from the records: users holding a seat, pending or active admins,
/// active keys (each record's marker, or its state where it has none).
async fn recount(db: &Db, tenant: &str) -> (i64, i64, i64) {
    let admin =
        raw_collection(db, "roles").await.find_one(doc! {"tenantId": tenant, "name": "admin", "isSystem": true}).await.unwrap().unwrap();
    let admin = admin.get_object_id("_id").unwrap().to_hex();
    let users: Vec<Document> =
        futures_util::TryStreamExt::try_collect(raw_collection(db, "users").await.find(doc! {"tenantId": tenant}).await.unwrap())
            .await
            .unwrap();
    let seats = users.iter().filter(|u| u.get_bool("seatHeld").unwrap_or(true)).count() as i64;
    let admins = users
        .iter()
        .filter(|u| {
            u.get_bool("adminHeld").unwrap_or_else(|_| {
                u.get_str("status").unwrap() != "inactive"
                    && u.get_array("roles").unwrap().iter().any(|r| r.as_str() == Some(admin.as_str()))
            })
        })
        .count() as i64;
    let keys: Vec<Document> =
        futures_util::TryStreamExt::try_collect(raw_collection(db, "apiKeys").await.find(doc! {"tenantId": tenant}).await.unwrap())
            .await
            .unwrap();
    let places = keys.iter().filter(|k| k.get_bool("placeHeld").unwrap_or(k.get_str("status").unwrap() == "active")).count() as i64;
    (seats, admins, places)
}

async fn issue(app: &TestApp, token: &str) -> ObjectId {
    let body = json!({"name": "CI", "permissions": ["read:users"]});
    let (status, _, reply) = app.call(app.request(Method::POST, "/api-keys", Some(token)).json(&body)).await;
    assert_eq!(status, 201, "{reply}");
    ObjectId::parse_str(reply["data"]["id"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_revocation_whose_reply_was_lost_gives_its_place_back_once() {
    let (app, proxied, proxy) = app_and_proxied().await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@lost-revoke.example").await;
    let key = issue(&app, &admin).await;
    assert_eq!(counters(&app.db, &tenant).await.2, 1);
    let ctx = admin_context(&app.db, &tenant).await;

    proxy.drop_reply_of_next("findAndModify");
    let revoked = api_keys::service::revoke(&proxied, &ctx, key).await;
    assert_eq!(proxy.replies_dropped(), 1, "the revocation's reply was lost");
    assert_eq!(counters(&app.db, &tenant).await, recount(&app.db, &tenant).await);
    let revoked = revoked.expect("the re-read finds the revocation applied");
    assert_eq!(revoked.status, shared::models::ApiKeyStatus::Revoked);
    assert_eq!(counters(&app.db, &tenant).await.2, 0);

    // A retry finds nothing left to give back.
    let again = api_keys::service::revoke(&proxied, &ctx, key).await;
    assert!(again.is_err(), "a revoked key is not revoked twice");
    assert_eq!(counters(&app.db, &tenant).await.2, 0);
}

#[tokio::test]
async fn a_role_grant_whose_reply_was_lost_still_counts_its_admin() {
    let (app, proxied, proxy) = app_and_proxied().await;
    let (_, tenant) = app.tenant_with_admin("basic", "admin@lost-grant.example").await;
    let (member, _) = app.seed_user(&tenant, "member@lost-grant.example", "user", "active").await;
    let ctx = admin_context(&app.db, &tenant).await;
    let admin_role = raw_collection(&app.db, "roles").await.find_one(doc! {"tenantId": &tenant, "name": "admin"}).await.unwrap().unwrap();
    let admin_role = admin_role.get_object_id("_id").unwrap();
    assert_eq!(counters(&app.db, &tenant).await, (2, 1, 0));

    proxy.drop_reply_of_next("findAndModify");
    let granted = users::service::assign_role(&proxied, &ctx, member, admin_role).await;
    assert_eq!(proxy.replies_dropped(), 1, "the grant's reply was lost");
    assert_eq!(counters(&app.db, &tenant).await, recount(&app.db, &tenant).await);
    let granted = granted.expect("the re-read finds the grant applied");
    assert!(granted.roles.contains(&admin_role.to_hex()));
    assert_eq!(counters(&app.db, &tenant).await, (2, 2, 0));

    // And taking it away again, its reply lost too, frees the place once.
    proxy.drop_reply_of_next("findAndModify");
    let removed = users::service::remove_role(&proxied, &ctx, member, admin_role).await;
    assert_eq!(proxy.replies_dropped(), 2);
    removed.expect("the re-read finds the removal applied");
    assert_eq!(counters(&app.db, &tenant).await, (2, 1, 0));
    assert_eq!(counters(&app.db, &tenant).await, recount(&app.db, &tenant).await);
}

#[tokio::test]
async fn a_key_creation_whose_place_taking_reply_was_lost_keeps_one_place() {
    let (app, proxied, proxy) = app_and_proxied().await;
    let (_, tenant) = app.tenant_with_admin("basic", "admin@lost-place.example").await;
    let ctx = admin_context(&app.db, &tenant).await;
    let limits = shared::plans::Plan::Basic.limits().api_keys.expect("basic has keys");
    let new = api_keys::input::NewKey {
        name: "CI".into(),
        permissions: vec![shared::ids::Permission::parse("read:users").unwrap()],
        rate_limit: shared::models::RateLimit { requests_per_minute: 60, requests_per_hour: 1_000, requests_per_day: 10_000 },
        expires_at: None,
    };

    proxy.drop_reply_of_next("update");
    let created = api_keys::service::create(&proxied, &ctx, limits, &new).await;
    assert_eq!(proxy.replies_dropped(), 1, "the place-taking reply was lost");
    assert_eq!(counters(&app.db, &tenant).await, recount(&app.db, &tenant).await);
    let (key, _) = created.expect("the re-read finds the place taken");
    assert_eq!(key.place_held, Some(true));
    assert_eq!(counters(&app.db, &tenant).await.2, 1);
}

#[tokio::test]
async fn a_user_deletion_whose_reply_was_lost_frees_its_seat_once() {
    let (app, proxied, proxy) = app_and_proxied().await;
    let (_, tenant) = app.tenant_with_admin("basic", "admin@lost-delete.example").await;
    let (member, _) = app.seed_user(&tenant, "member@lost-delete.example", "user", "active").await;
    let ctx = admin_context(&app.db, &tenant).await;
    assert_eq!(counters(&app.db, &tenant).await, (2, 1, 0));

    proxy.drop_reply_of_next("delete");
    let deleted = users::service::delete(&proxied, app.deps.directory.as_ref(), &ctx, member).await;
    assert_eq!(proxy.replies_dropped(), 1, "the deletion's reply was lost");
    assert_eq!(counters(&app.db, &tenant).await, recount(&app.db, &tenant).await);
    deleted.expect("the re-read finds the record gone");
    assert_eq!(counters(&app.db, &tenant).await, (1, 1, 0));
}

/// Plants a drift: the counters moved without their records, as a lost reply once left them.
async fn plant(db: &Db, tenant: &str, inc: Document) {
    raw_collection(db, "tenants").await.update_one(doc! {"tenantId": tenant}, doc! {"$inc": inc}).await.unwrap();
}

/// Past the settle window: every trace made so far is old. With a margin: records seeded
/// straight into the database carry the wall clock, which runs on while this one stands.
fn settle(clock: &ManualClock) {
    clock.advance(migrations::jobs::reconcile_counters::SETTLE + Duration::from_secs(600));
}

async fn reconcile(db: &Db) -> serde_json::Value {
    serde_json::to_value(migrations::jobs::reconcile_counters::reconcile(db, &NoSeam).await.expect("a run")).unwrap()
}

#[tokio::test]
async fn the_reconciliation_corrects_a_planted_drift_and_reports_it() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@drift.example").await;
    issue(&app, &admin).await;
    app.seed_user(&tenant, "member@drift.example", "admin", "active").await;
    let (other_admin, other) = app.tenant_with_admin("basic", "admin@steady.example").await;
    issue(&app, &other_admin).await;
    assert_eq!(counters(&app.db, &tenant).await, recount(&app.db, &tenant).await);
    plant(&app.db, &tenant, doc! {"apiKeyCount": 2_i64, "counters.admins": -1_i64, "counters.seats": 1_i64}).await;
    assert_eq!(counters(&app.db, &tenant).await, (3, 1, 3));
    settle(&clock);

    let report = migrations::jobs::reconcile_counters::reconcile(&app.db, &NoSeam).await.expect("a run");
    let report = serde_json::to_value(report).unwrap();
    assert_eq!(report["action"], "reconcile-counters");
    assert_eq!(report["tenantsChecked"], 2, "{report}");
    let mut corrected: Vec<_> = report["corrected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["tenantId"].as_str().unwrap().to_owned(),
                c["counter"].as_str().unwrap().to_owned(),
                c["from"].as_i64().unwrap(),
                c["to"].as_i64().unwrap(),
            )
        })
        .collect();
    corrected.sort();
    assert_eq!(
        corrected,
        vec![(tenant.clone(), "admins".into(), 1, 2), (tenant.clone(), "apiKeyCount".into(), 3, 1), (tenant.clone(), "seats".into(), 3, 2)],
        "{report}"
    );
    assert_eq!(report["skipped"], json!([]), "{report}");
    assert_eq!(counters(&app.db, &tenant).await, (2, 2, 1));
    assert_eq!(counters(&app.db, &other).await, recount(&app.db, &other).await, "a steady tenant is left alone");

    // A second run finds nothing to correct.
    let again = serde_json::to_value(migrations::jobs::reconcile_counters::reconcile(&app.db, &NoSeam).await.unwrap()).unwrap();
    assert_eq!(again["corrected"], json!([]), "{again}");
}

/// Moves a tenant's `apiKeyCount` once, when the reconciliation has read it and counted.
#[derive(Debug)]
struct MovesTheCounter {
    db: Db,
    tenant: String,
}

impl Seam for MovesTheCounter {
    fn reached<'a>(&'a self, point: &'static str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if point == migrations::jobs::reconcile_counters::COUNTED {
                plant(&self.db, &self.tenant, doc! {"apiKeyCount": 1_i64}).await;
            }
        })
    }
}

#[tokio::test]
async fn the_reconciliation_never_overwrites_a_counter_that_moved_after_it_read_it() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@moving.example").await;
    issue(&app, &admin).await;
    plant(&app.db, &tenant, doc! {"apiKeyCount": 3_i64}).await;
    assert_eq!(counters(&app.db, &tenant).await.2, 4);
    settle(&clock);

    let seam = MovesTheCounter { db: app.db.clone(), tenant: tenant.clone() };
    let report = serde_json::to_value(migrations::jobs::reconcile_counters::reconcile(&app.db, &seam).await.expect("a run")).unwrap();
    assert_eq!(report["corrected"], json!([]), "{report}");
    assert_eq!(report["skipped"], json!([{"tenantId": tenant, "counter": "apiKeyCount", "reason": "the counter moved since it was read"}]));
    assert_eq!(counters(&app.db, &tenant).await.2, 5, "the move made after the read stands");

    // The next run, undisturbed, corrects it.
    let next = serde_json::to_value(migrations::jobs::reconcile_counters::reconcile(&app.db, &NoSeam).await.unwrap()).unwrap();
    assert_eq!(next["corrected"][0]["to"], 1, "{next}");
    assert_eq!(counters(&app.db, &tenant).await, recount(&app.db, &tenant).await);
}

/// Runs the reconciliation once, when a saga reaches `point`, and keeps its report.
#[derive(Debug)]
struct RecountsAt {
    db: Db,
    point: &'static str,
    report: Mutex<Option<serde_json::Value>>,
}

impl RecountsAt {
    fn new(db: &Db, point: &'static str) -> Self {
        Self { db: db.clone(), point, report: Mutex::new(None) }
    }

    fn report(&self) -> serde_json::Value {
        self.report.lock().unwrap().clone().expect("the saga reached the point, and the reconciliation ran there")
    }
}

impl Seam for RecountsAt {
    fn reached<'a>(&'a self, point: &'static str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if point == self.point {
                let report = reconcile(&self.db).await;
                *self.report.lock().unwrap() = Some(report);
            }
        })
    }
}

/// The same recount before a saga's step (its name the point).
impl shared::saga::StepFaults for RecountsAt {
    fn at<'a>(&'a self, step: &'static str, when: shared::saga::When) -> BoxFuture<'a, Option<shared::saga::Fault>> {
        Box::pin(async move {
            if when == shared::saga::When::Before {
                self.reached(step).await;
            }
            None
        })
    }
}

#[tokio::test]
async fn the_reconciliation_leaves_alone_an_invitation_between_its_record_and_its_seat() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let (_, tenant) = app.tenant_with_admin("basic", "admin@paused-invite.example").await;
    let ctx = admin_context(&app.db, &tenant).await;
    assert_eq!(counters(&app.db, &tenant).await, (1, 1, 0));
    // Only the invitation's own record is fresh.
    settle(&clock);
    let invitation = users::input::Invitation {
        email: shared::ids::Email::parse("new@paused-invite.example").unwrap(),
        first_name: "New".into(),
        last_name: "Member".into(),
        roles: None,
    };

    let seam = RecountsAt::new(&app.db, users::invitation::SEAT);
    users::service::invite(&app.db, app.deps.directory.as_ref(), &ctx, None, &invitation, &seam).await.expect("invited");
    let report = seam.report();
    assert_eq!(report["corrected"], json!([]), "the record without its seat yet is no drift: {report}");
    assert_eq!(report["skipped"], json!([{"tenantId": tenant, "counter": "seats", "reason": "in flight"}]));
    assert_eq!(counters(&app.db, &tenant).await, (2, 1, 0));
    assert_eq!(counters(&app.db, &tenant).await, recount(&app.db, &tenant).await);
}

#[tokio::test]
async fn the_reconciliation_leaves_alone_a_key_creation_between_its_place_and_its_key() {
    let app = spawn_app().await;
    let (_, tenant) = app.tenant_with_admin("basic", "admin@paused-key.example").await;
    let ctx = admin_context(&app.db, &tenant).await;
    let limits = shared::plans::Plan::Basic.limits().api_keys.expect("basic has keys");
    let new = api_keys::input::NewKey {
        name: "CI".into(),
        permissions: vec![shared::ids::Permission::parse("read:users").unwrap()],
        rate_limit: shared::models::RateLimit { requests_per_minute: 60, requests_per_hour: 1_000, requests_per_day: 10_000 },
        expires_at: None,
    };

    let seam = RecountsAt::new(&app.db, api_keys::service::PLACE_TAKEN);
    api_keys::service::create_with(&app.db, &ctx, limits, &new, &seam).await.expect("created");
    let report = seam.report();
    assert_eq!(report["corrected"], json!([]), "the place without its key yet is no drift: {report}");
    assert_eq!(report["skipped"], json!([{"tenantId": tenant, "counter": "apiKeyCount", "reason": "in flight"}]));
    assert_eq!(counters(&app.db, &tenant).await, (1, 1, 1));
    assert_eq!(counters(&app.db, &tenant).await, recount(&app.db, &tenant).await);
}

#[tokio::test]
async fn the_reconciliation_corrects_a_drift_only_once_its_records_and_counters_have_settled() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@settling.example").await;
    issue(&app, &admin).await;
    plant(&app.db, &tenant, doc! {"apiKeyCount": 2_i64, "counters.seats": 1_i64}).await;
    assert_eq!(counters(&app.db, &tenant).await, (2, 1, 3));

    // Everything is minutes old: the drift may be a saga half done.
    let report = reconcile(&app.db).await;
    assert_eq!(report["corrected"], json!([]), "{report}");
    let mut skipped: Vec<_> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["counter"].as_str().unwrap().to_owned(), s["reason"].as_str().unwrap().to_owned()))
        .collect();
    skipped.sort();
    assert_eq!(skipped, vec![("apiKeyCount".into(), "in flight".into()), ("seats".into(), "in flight".into())], "{report}");
    assert_eq!(counters(&app.db, &tenant).await, (2, 1, 3));

    // Past the window, a fresh user record (an invitation's) keeps the seats alone; the keys,
    // settled, are corrected.
    settle(&clock);
    let ctx = admin_context(&app.db, &tenant).await;
    let invitation = users::input::Invitation {
        email: shared::ids::Email::parse("late@settling.example").unwrap(),
        first_name: "Late".into(),
        last_name: "Member".into(),
        roles: None,
    };
    users::service::invite(&app.db, app.deps.directory.as_ref(), &ctx, None, &invitation, &shared::saga::NoFaults).await.expect("invited");
    let report = reconcile(&app.db).await;
    assert_eq!(report["corrected"], json!([{"tenantId": tenant, "counter": "apiKeyCount", "from": 3, "to": 1}]), "{report}");
    assert_eq!(report["skipped"], json!([{"tenantId": tenant, "counter": "seats", "reason": "in flight"}]), "{report}");
    assert_eq!(counters(&app.db, &tenant).await, (3, 1, 1));

    settle(&clock);
    let report = reconcile(&app.db).await;
    assert_eq!(report["corrected"], json!([{"tenantId": tenant, "counter": "seats", "from": 3, "to": 2}]), "{report}");
    assert_eq!(counters(&app.db, &tenant).await, recount(&app.db, &tenant).await);
}

#[tokio::test]
async fn the_reconciliation_leaves_alone_a_deletion_between_its_record_and_its_seat() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let (_, tenant) = app.tenant_with_admin("basic", "admin@paused-delete.example").await;
    let (member, _) = app.seed_user(&tenant, "member@paused-delete.example", "user", "active").await;
    let ctx = admin_context(&app.db, &tenant).await;
    assert_eq!(counters(&app.db, &tenant).await, (2, 1, 0));
    // Only the deletion's own writes are fresh: the record's cleared markers are its trace.
    settle(&clock);

    let seam = RecountsAt::new(&app.db, users::service::DELETION_CLEARED);
    users::service::delete_with(&app.db, app.deps.directory.as_ref(), &ctx, member, &seam).await.expect("deleted");
    let report = seam.report();
    assert_eq!(report["corrected"], json!([]), "the record giving up its seat is no drift: {report}");
    assert_eq!(report["skipped"], json!([{"tenantId": tenant, "counter": "seats", "reason": "in flight"}]));
    assert_eq!(counters(&app.db, &tenant).await, (1, 1, 0));
    assert_eq!(counters(&app.db, &tenant).await, recount(&app.db, &tenant).await);
    let left = raw_collection(&app.db, "users").await.find_one(doc! {"_id": member}).await.unwrap();
    assert!(left.is_none(), "the record is gone");
}
