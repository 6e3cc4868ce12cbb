//! Audit retention per plan: `expireAt` at write time, recomputed in resumable batches when the
//! plan changes, and the scheduled job that deletes what has expired and nothing else.

use audit::retention::RETENTION_BATCH;
use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use reqwest::Method;
use serde_json::json;
use tenancy_tests::app::spawn_app;
use tenancy_tests::raw_collection;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Entries of `tenant` written `age_days` ago, with the expiry they were written with.
async fn backdated(db: &shared::Db, tenant: &str, count: usize, age_days: i64, kept_days: i64) -> Vec<ObjectId> {
    let now = DateTime::now().timestamp_millis();
    let at = DateTime::from_millis(now - age_days * DAY_MS);
    let docs: Vec<Document> = (0..count)
        .map(|i| {
            doc! {"_id": ObjectId::new(), "tenantId": tenant, "action": "role.created", "resource": "role", "details": {"i": i as i64},
            "ip": "", "userAgent": "", "requestId": "backdated", "timestamp": at,
            "expireAt": DateTime::from_millis(at.timestamp_millis() + kept_days * DAY_MS)}
        })
        .collect();
    let ids = docs.iter().map(|d| d.get_object_id("_id").unwrap()).collect();
    raw_collection(db, "auditLogs").await.insert_many(docs).await.unwrap();
    ids
}

async fn expiry_days(db: &shared::Db, id: ObjectId) -> i64 {
    let entry = raw_collection(db, "auditLogs").await.find_one(doc! {"_id": id}).await.unwrap().unwrap();
    let (at, expire) = (entry.get_datetime("timestamp").unwrap(), entry.get_datetime("expireAt").unwrap());
    (expire.timestamp_millis() - at.timestamp_millis()).div_euclid(DAY_MS)
}

#[tokio::test]
async fn entries_are_kept_as_long_as_the_plan_says() {
    let app = spawn_app().await;
    for (plan, days) in [("free", 30), ("basic", 90), ("premium", 365), ("enterprise", 365)] {
        let (admin, tenant) = app.tenant_with_admin(plan, &format!("admin@{plan}-retention.example")).await;
        let body = json!({"name": format!("R {plan}"), "permissions": ["read:users"]});
        assert_eq!(app.call(app.request(Method::POST, "/roles", Some(&admin)).json(&body)).await.0, 201);
        let entry = raw_collection(&app.db, "auditLogs")
            .await
            .find_one(doc! {"tenantId": &tenant, "action": "role.created"})
            .await
            .unwrap()
            .unwrap();
        assert_eq!(expiry_days(&app.db, entry.get_object_id("_id").unwrap()).await, days, "{plan}");
    }
}

#[tokio::test]
async fn a_plan_change_moves_existing_entries_in_resumable_batches_of_the_job() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (_, tenant) = app.tenant_with_admin("premium", "admin@move.example").await;
    let old = backdated(&app.db, &tenant, 2 * RETENTION_BATCH as usize + 7, 100, 365).await;
    let billing = format!("/tenants/{tenant}/settings/billing");
    let (status, _, body) = app.call(app.request(Method::PATCH, &billing, Some(&superadmin)).json(&json!({"plan": "basic"}))).await;
    assert_eq!(status, 200, "{body}");
    let pending = || async {
        let record = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": &tenant}).await.unwrap().unwrap();
        record.get_document("auditRetention").ok().cloned()
    };
    assert_eq!(pending().await.unwrap().get_i64("days").unwrap(), 90, "the change is marked on the tenant");
    // One batch a run: the job resumes where it stopped.
    let small = audit::retention::Budget { delete_batches: 0, catch_up_batches: 1 };
    let first = audit::retention::run(&app.db, small).await.unwrap();
    assert_eq!((first.tenants_caught_up, first.tenants_pending), (0, 1), "{first:?}");
    assert!(pending().await.unwrap().get_object_id("after").is_ok(), "progress is recorded");
    assert_eq!(expiry_days(&app.db, old[0]).await, 90, "the first batch moved");
    assert_eq!(expiry_days(&app.db, *old.last().unwrap()).await, 365, "the last not yet");
    let report = audit::retention::run(&app.db, Default::default()).await.unwrap();
    assert_eq!((report.tenants_caught_up, report.tenants_pending), (1, 0), "{report:?}");
    // 100 days old on a 90-day plan: expired, and deleted by the same run.
    assert!(report.deleted >= old.len() as u64, "{report:?}");
    assert_eq!(raw_collection(&app.db, "auditLogs").await.count_documents(doc! {"requestId": "backdated"}).await.unwrap(), 0);
    assert!(pending().await.is_none());

    // A longer retention: nothing may expire before the job has moved it.
    let (status, _, _) = app
        .call(app.request(Method::PATCH, &billing, Some(&superadmin)).json(&json!({"plan": "enterprise", "auditRetentionDays": 2000})))
        .await;
    assert_eq!(status, 200);
    audit::retention::run(&app.db, Default::default()).await.unwrap();
    let kept = backdated(&app.db, &tenant, 3, 400, 365).await;
    let (status, _, _) = app.call(app.request(Method::PATCH, &billing, Some(&superadmin)).json(&json!({"auditRetentionDays": 2555}))).await;
    assert_eq!(status, 200);
    let held = raw_collection(&app.db, "auditLogs").await.find_one(doc! {"_id": kept[0]}).await.unwrap().unwrap();
    let hold = tenants::service::RETENTION_HOLD.as_millis() as i64;
    assert!(held.get_datetime("expireAt").unwrap().timestamp_millis() > DateTime::now().timestamp_millis() + hold - 60_000, "{held}");
    let report = audit::retention::run(&app.db, Default::default()).await.unwrap();
    assert_eq!(report.deleted, 0, "nothing unexpired goes: {report:?}");
    // The end of the entry's UTC day plus the retention: never shorter, at most a day longer.
    assert!((2555..=2556).contains(&expiry_days(&app.db, kept[0]).await));
    // Other plans keep theirs: a 400 that names the plan.
    let (status, _, body) =
        app.call(app.request(Method::PATCH, &billing, Some(&superadmin)).json(&json!({"plan": "basic", "auditRetentionDays": 400}))).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn the_job_deletes_what_has_expired_and_nothing_else_idempotently() {
    let db = tenancy_tests::fresh_db_with_indexes().await;
    let expired = backdated(&db, "tn_jobtenant", 3 * RETENTION_BATCH as usize + 1, 40, 30).await;
    let live = backdated(&db, "tn_jobtenant", 5, 10, 30).await;
    let other = backdated(&db, "tn_othertenant", 4, 40, 90).await;
    // A budget of two batches: the run stops short and says so; the next one finishes.
    let budget = audit::retention::Budget { delete_batches: 2, catch_up_batches: 1 };
    let first = audit::retention::run(&db, budget).await.unwrap();
    assert_eq!((first.deleted, first.complete), (2 * RETENTION_BATCH as u64, false));
    let second = audit::retention::run(&db, Default::default()).await.unwrap();
    assert_eq!((second.deleted, second.complete), ((expired.len() as u64) - 2 * RETENTION_BATCH as u64, true));
    let third = audit::retention::run(&db, Default::default()).await.unwrap();
    assert_eq!((third.deleted, third.complete), (0, true), "idempotent");
    let entries = raw_collection(&db, "auditLogs").await;
    for id in live.iter().chain(&other) {
        assert!(entries.find_one(doc! {"_id": id}).await.unwrap().is_some(), "unexpired entries stay");
    }
    assert_eq!(entries.count_documents(doc! {}).await.unwrap(), (live.len() + other.len()) as u64);
}

/// `setup` reports the mode the server really has: a TTL index on MongoDB, the job on
/// FerretDB, which cannot expire documents.
#[tokio::test]
async fn setup_reports_the_real_retention_mode() {
    let db = tenancy_tests::fresh_db().await;
    let migrations::Report::Setup { indexes, .. } =
        migrations::run(&db, tenancy_tests::test_directory().await.as_ref(), migrations::Action::Setup).await.unwrap()
    else {
        panic!("a setup report")
    };
    let retention = indexes.iter().find(|i| i.name == "expireAt_1").unwrap();
    let expected = match db.flavor().await.unwrap() {
        shared::db::ServerFlavor::MongoDb => "ttl",
        shared::db::ServerFlavor::FerretDb => "retention-job",
    };
    assert_eq!(retention.expiry, Some(expected));
}
