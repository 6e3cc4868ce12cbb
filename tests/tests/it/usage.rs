//! Data growth: the `usage-snapshot` job measures every tenant's documents and bytes per
//! collection exactly, keeps one snapshot per tenant and day, and a superadmin (only) reads them
//! back through `GET /tenants/{tenantId}/usage/history`.

use futures_util::TryStreamExt;
use migrations::{Action, Report};
use mongodb::bson::{doc, DateTime, RawDocumentBuf};
use reqwest::Method;
use serde_json::{json, Value};
use shared::clock::ManualClock;
use shared::db::TenantCollection;
use shared::ids::TenantId;
use shared::models::{CollectionUsage, UsageSnapshot};
use tenancy_tests::app::{spawn_app, spawn_app_with_clock, TestApp};
use tenancy_tests::raw_collection;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// What the database holds for `tenant` in `collection`, read raw by a client of the test's own:
/// the count, and the sum of the documents' BSON lengths.
async fn raw_usage(app: &TestApp, tenant: &str, collection: &str) -> CollectionUsage {
    let documents: Vec<RawDocumentBuf> = raw_collection(&app.db, collection)
        .await
        .clone_with_type::<RawDocumentBuf>()
        .find(doc! {"tenantId": tenant})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let counted = raw_collection(&app.db, collection).await.count_documents(doc! {"tenantId": tenant}).await.unwrap();
    assert_eq!(counted, documents.len() as u64, "{collection}");
    CollectionUsage { documents: counted, bytes: documents.iter().map(|d| d.as_bytes().len() as u64).sum() }
}

/// The stored snapshot of `tenant` on `day`.
async fn stored(app: &TestApp, tenant: &str, day: &str) -> UsageSnapshot {
    let id = format!("{tenant}:{day}");
    raw_collection(&app.db, "usageSnapshots")
        .await
        .clone_with_type::<UsageSnapshot>()
        .find_one(doc! {"_id": &id})
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no snapshot {id}"))
}

/// Runs the job and returns its report's day, tenants measured and snapshots written.
async fn snapshot(app: &TestApp) -> (String, u64, u64) {
    let report = migrations::run(&app.db, app.deps.directory.as_ref(), Action::UsageSnapshot).await.unwrap();
    match report {
        Report::UsageSnapshot { day, tenants_measured, snapshots_written } => (day, tenants_measured, snapshots_written),
        other => panic!("a usage-snapshot report: {other:?}"),
    }
}

/// Asserts that the snapshot of `tenant` on `day` holds exactly what the database holds now.
async fn assert_exact(app: &TestApp, tenant: &str, day: &str) -> UsageSnapshot {
    let snapshot = stored(app, tenant, day).await;
    assert_eq!(snapshot.tenant_id.as_str(), tenant);
    assert_eq!(snapshot.day, day);
    let mut totals = CollectionUsage::default();
    for collection in TenantCollection::ALL {
        let expected = raw_usage(app, tenant, collection.name()).await;
        assert_eq!(snapshot.collections.get(collection.name()), Some(&expected), "{tenant} {}", collection.name());
        totals = totals.plus(expected);
    }
    assert_eq!(snapshot.collections.len(), TenantCollection::ALL.len());
    assert_eq!(snapshot.totals, totals, "{tenant}");
    snapshot
}

/// An app whose clock stands still: every run and read of a test falls on one UTC day.
async fn app_on_one_day() -> TestApp {
    spawn_app_with_clock(ManualClock::starting_now()).await
}

/// `GET /tenants/{tenant}/usage/history{query}` as `token`, which must succeed: its `data`.
async fn history(app: &TestApp, token: &str, tenant: &str, query: &str) -> Value {
    let path = format!("/tenants/{tenant}/usage/history{query}");
    let (status, _, body) = app.call(app.request(Method::GET, &path, Some(token))).await;
    assert_eq!(status, 200, "{path}: {body}");
    assert_eq!(body["success"], true, "{path}");
    body["data"].clone()
}

async fn create_role(app: &TestApp, admin: &str, name: &str) {
    let body = json!({"name": name, "description": "x".repeat(name.len() * 10), "permissions": ["read:users"]});
    let (status, _, body) = app.call(app.request(Method::POST, "/roles", Some(admin)).json(&body)).await;
    assert_eq!(status, 201, "{body}");
}

/// Two tenants of different sizes, one of them suspended: users, roles and audit entries.
async fn two_tenants(app: &TestApp) -> (String, String, String) {
    let superadmin = app.superadmin().await;
    let (admin_a, a) = app.tenant_with_admin("basic", "admin@usage-a.example").await;
    let (admin_b, b) = app.tenant_with_admin("premium", "admin@usage-b.example").await;
    for name in ["Auditors", "Support", "Billing"] {
        create_role(app, &admin_a, name).await;
    }
    create_role(app, &admin_b, "Readers").await;
    app.seed_user(&a, "one@usage-a.example", "user", "active").await;
    app.seed_user(&b, "one@usage-b.example", "viewer", "active").await;
    app.seed_user(&b, "two@usage-b.example", "user", "inactive").await;
    // A suspended tenant's data is still stored: it is measured like any other.
    let (status, _, body) = app.call(app.request(Method::POST, &format!("/tenants/{b}/suspend"), Some(&superadmin))).await;
    assert_eq!(status, 200, "{body}");
    (superadmin, a, b)
}

#[tokio::test]
async fn the_snapshot_counts_every_tenant_s_documents_and_bytes_exactly_and_a_rerun_replaces_it() {
    let app = app_on_one_day().await;
    let (_, a, b) = two_tenants(&app).await;

    let (day, measured, written) = snapshot(&app).await;
    assert_eq!((measured, written), (2, 2));
    assert_eq!(day, shared::clock::calendar_day(app.db.clock().now_ms()));
    // Nothing has written since the run: the snapshots must equal the raw counts and lengths.
    let first_a = assert_exact(&app, &a, &day).await;
    let first_b = assert_exact(&app, &b, &day).await;
    assert_eq!(first_a.collections["roles"].documents, 6, "three system roles and three custom ones");
    assert_eq!(first_b.collections["users"].documents, 3);
    assert_eq!(first_a.collections["apiKeys"], CollectionUsage::default(), "no keys: zero, not missing");
    assert!(first_a.collections["auditLogs"].documents >= 4 && first_a.collections["auditLogs"].bytes > 0);
    assert_ne!(first_a.totals, first_b.totals);

    // The same day again, after a change: still one snapshot per tenant, now with the change.
    app.seed_user(&a, "two@usage-a.example", "viewer", "active").await;
    let (again, measured, written) = snapshot(&app).await;
    assert_eq!((again.as_str(), measured, written), (day.as_str(), 2, 2));
    let second_a = assert_exact(&app, &a, &day).await;
    assert_eq!(second_a.collections["users"].documents, first_a.collections["users"].documents + 1);
    assert_eq!(stored(&app, &b, &day).await.collections, first_b.collections, "an unchanged tenant measures the same");
    let snapshots = raw_collection(&app.db, "usageSnapshots").await;
    for tenant in [&a, &b] {
        assert_eq!(snapshots.count_documents(doc! {"tenantId": tenant}).await.unwrap(), 1, "{tenant}");
    }
    assert_eq!(snapshots.count_documents(doc! {}).await.unwrap(), 2);
}

#[tokio::test]
async fn a_superadmin_reads_the_history_newest_first_within_the_days_asked() {
    let app = app_on_one_day().await;
    let (superadmin, a, b) = two_tenants(&app).await;
    let (day, _, _) = snapshot(&app).await;
    let today = stored(&app, &a, &day).await;
    // Earlier days, as earlier runs would have left them.
    let snapshots = raw_collection(&app.db, "usageSnapshots").await;
    for age in [5, 40] {
        let taken_at = DateTime::from_millis(today.taken_at.timestamp_millis() - age * DAY_MS);
        let earlier = UsageSnapshot::new(TenantId::parse(a.as_str()).unwrap(), taken_at, today.collections.clone());
        snapshots.insert_one(mongodb::bson::to_document(&earlier).unwrap()).await.unwrap();
    }

    let data = history(&app, &superadmin, &a, "").await;
    assert_eq!(data["tenantId"], a.as_str());
    let listed = data["snapshots"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "today and 5 days ago, within the default 30: {data}");
    assert_eq!(listed[0]["day"], day.as_str(), "newest first");
    assert_eq!(listed[1]["day"], shared::clock::calendar_day(today.taken_at.timestamp_millis() - 5 * DAY_MS).as_str());
    let first = &listed[0];
    assert_eq!(first["takenAt"], shared::clock::rfc3339_millis(today.taken_at).as_str());
    for collection in TenantCollection::ALL {
        let usage = &today.collections[collection.name()];
        assert_eq!(first["collections"][collection.name()], json!({"documents": usage.documents, "bytes": usage.bytes}));
    }
    assert_eq!(first["totals"], json!({"documents": today.totals.documents, "bytes": today.totals.bytes}));
    assert_eq!(first.as_object().unwrap().len(), 4, "day, takenAt, collections, totals: {first}");
    assert_eq!(history(&app, &superadmin, &a, "?days=1").await["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(history(&app, &superadmin, &a, "?days=366").await["snapshots"].as_array().unwrap().len(), 3);
    // The superadmin's reads are audited in the tenant's log, one entry each.
    let accessed =
        raw_collection(&app.db, "auditLogs").await.count_documents(doc! {"tenantId": &a, "action": "tenant.accessed"}).await.unwrap();
    assert_eq!(accessed, 3);
    // The other tenant's history (suspended: its history is still there) holds its own snapshot only.
    let theirs = history(&app, &superadmin, &b, "?days=366").await;
    assert_eq!(theirs["tenantId"], b.as_str());
    let theirs = theirs["snapshots"].as_array().unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["totals"]["documents"], stored(&app, &b, &day).await.totals.documents);
}

#[tokio::test]
async fn the_history_is_for_superadmins_only_of_existing_tenants_within_366_days() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (admin, id) = app.tenant_with_admin("enterprise", "admin@usage-c.example").await;
    let path = format!("/tenants/{id}/usage/history");
    let (status, _, body) = app.call(app.request(Method::GET, &path, Some(&admin))).await;
    assert_eq!(status, 403, "a tenant admin, even of this tenant: {body}");
    let (status, _, _) = app.call(app.request(Method::GET, &path, None)).await;
    assert_eq!(status, 401);
    let (status, _, body) = app.call(app.request(Method::GET, "/tenants/tn_nosuchtenant0000/usage/history", Some(&superadmin))).await;
    assert_eq!(status, 404, "{body}");
    for bad in ["days=0", "days=367", "days=-1", "days=ten", "days=1&days=2", "limit=5"] {
        let (status, _, body) = app.call(app.request(Method::GET, &format!("{path}?{bad}"), Some(&superadmin))).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // No run yet: an empty history, not an error.
    assert_eq!(history(&app, &superadmin, &id, "").await, json!({"tenantId": id, "snapshots": []}));
}
