//! The migrations Lambda against FerretDB: setup is idempotent, up applies each migration once
//! even when two runs race, status tells the truth.

use futures_util::future::BoxFuture;
use migrations::migration::{Migration, MigrationDeps};
use migrations::registry::MIGRATIONS;
use migrations::{up, Action, Guard, MigrationError, Report};
use mongodb::bson::{doc, DateTime};
use shared::db::{Db, SystemContext, TenantCollection};
use shared::ids::{Email, TenantId};
use shared::models::{Profile, User};
use shared::seam::{NoSeam, Seam};
use shared::DbError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenancy_tests::{fresh_db, fresh_db_with_indexes};
use tokio::sync::Notify;
use tokio::time::timeout;

/// A migrations action with a directory on a fresh moto pool.
async fn run(db: &Db, action: Action) -> Result<Report, MigrationError> {
    migrations::run(db, tenancy_tests::test_directory().await.as_ref(), action).await
}

async fn index_names(db: &Db) -> Vec<(String, String)> {
    let indexes = db.indexes(&SystemContext::new("test"));
    let mut all = Vec::new();
    for collection in [
        "tenants",
        "tenantDomains",
        "users",
        "roles",
        "apiKeys",
        "auditLogs",
        "userErasures",
        "locks",
        "usageSnapshots",
        "refusalWindows",
        "sagas",
        "jobs",
    ] {
        for model in indexes.list(collection).await.unwrap() {
            all.push((collection.to_owned(), model.options.and_then(|o| o.name).unwrap_or_default()));
        }
    }
    all.sort();
    all
}

#[tokio::test]
async fn setup_creates_every_index_and_a_second_setup_changes_nothing() {
    let db = fresh_db().await;
    let Report::Setup { created, existing, .. } = run(&db, Action::Setup).await.unwrap() else { panic!() };
    assert_eq!(existing, 0);
    assert_eq!(created, migrations::indexes::wanted().len());
    let after_first = index_names(&db).await;
    for spec in migrations::indexes::wanted() {
        assert!(after_first.contains(&(spec.collection.to_owned(), spec.name())), "{} missing", spec.name());
    }
    let Report::Setup { created, existing, .. } = run(&db, Action::Setup).await.unwrap() else { panic!() };
    assert_eq!((created, existing), (0, migrations::indexes::wanted().len()));
    assert_eq!(index_names(&db).await, after_first);
}

/// A pending record of `tenant`, sealed by its keys (made if absent).
async fn user(db: &Db, tenant: &TenantId, email: &str) -> User {
    db.keyring().unwrap().create_tenant_keys(tenant).await.unwrap();
    let profile = Profile { first_name: "A".into(), last_name: "B".into(), ..Default::default() };
    users::person::pending_record(db, tenant, &Email::parse(email).unwrap(), &profile, &[]).await.unwrap()
}

#[tokio::test]
async fn unique_indexes_hold_per_tenant_and_allow_many_pending_users() {
    let db = fresh_db_with_indexes().await;
    // The per-tenant uniqueness of e-mails is the blind index's, built by the sealing migration.
    run(&db, Action::Up).await.unwrap();
    let system = SystemContext::new("test");
    let (a, b) = (TenantId::generate(), TenantId::generate());
    let users_a = db.scoped::<User>(&system.for_tenant(a.clone()), TenantCollection::Users);
    let users_b = db.scoped::<User>(&system.for_tenant(b.clone()), TenantCollection::Users);
    users_a.insert_one(&user(&db, &a, "one@x.example").await).await.unwrap();
    users_a.insert_one(&user(&db, &a, "two@x.example").await).await.expect("a second pending user must not collide");
    users_b.insert_one(&user(&db, &b, "one@x.example").await).await.expect("the same e-mail in another tenant is fine");
    let dup = users_a.insert_one(&user(&db, &a, "one@x.example").await).await.unwrap_err();
    assert!(matches!(dup, DbError::Duplicate), "{dup:?}");
}

#[tokio::test]
async fn two_concurrent_up_runs_apply_each_migration_exactly_once() {
    let db = fresh_db_with_indexes().await;
    let (first, second) = tokio::join!(run(&db, Action::Up), run(&db, Action::Up));
    let mut applied = Vec::new();
    for report in [first.unwrap(), second.unwrap()] {
        let Report::Up { applied: a, .. } = report else { panic!() };
        applied.extend(a.into_iter().map(|m| m.name));
    }
    applied.sort();
    let all: Vec<String> = MIGRATIONS.iter().map(|m| m.name.to_owned()).collect();
    assert_eq!(applied, all, "each migration recorded by exactly one of the runs");
    let Report::Up { applied, already_applied } = run(&db, Action::Up).await.unwrap() else { panic!() };
    assert!(applied.is_empty());
    assert_eq!(already_applied, all);
}

/// A migration that counts its executions and holds still until released, so that a second run
/// can be started at the exact moment the first is inside it: the ledger's unique name alone
/// cannot hide a second execution here, only the lease can prevent it.
macro_rules! gated_migration {
    ($name:ident, $executions:ident, $started:ident, $gate:ident) => {
        static $executions: AtomicUsize = AtomicUsize::new(0);
        static $started: Notify = Notify::const_new();
        static $gate: Notify = Notify::const_new();
        fn $name(_: MigrationDeps<'_>) -> BoxFuture<'_, Result<u64, DbError>> {
            Box::pin(async {
                $executions.fetch_add(1, Ordering::SeqCst);
                $started.notify_one();
                $gate.notified().await;
                Ok(0)
            })
        }
    };
}

gated_migration!(leased_body, LEASED_RUNS, LEASED_STARTED, LEASED_GATE);
gated_migration!(unguarded_body, UNGUARDED_RUNS, UNGUARDED_STARTED, UNGUARDED_GATE);
static LEASED: [Migration; 1] = [Migration { name: "900-gated", run: leased_body }];
static UNGUARDED: [Migration; 1] = [Migration { name: "900-gated", run: unguarded_body }];

/// Tells the test when a run found the lease held.
#[derive(Debug, Default)]
struct LeaseWatch(Notify);

impl Seam for LeaseWatch {
    fn reached<'a>(&'a self, point: &'static str) -> BoxFuture<'a, ()> {
        if point == "migrations.lease.busy" {
            self.0.notify_one();
        }
        Box::pin(async {})
    }
}

const BOUND: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_second_up_started_while_the_first_runs_a_migration_waits_and_never_runs_it_again() {
    let db = fresh_db_with_indexes().await;
    let first = tokio::spawn({
        let db = db.clone();
        async move { up(&db, tenancy_tests::test_directory().await.as_ref(), &LEASED, Guard::Lease, &NoSeam).await }
    });
    timeout(BOUND, LEASED_STARTED.notified()).await.expect("the first run entered the migration");
    let watch = Arc::new(LeaseWatch::default());
    let second = tokio::spawn({
        let (db, watch) = (db.clone(), watch.clone());
        async move { up(&db, tenancy_tests::test_directory().await.as_ref(), &LEASED, Guard::Lease, watch.as_ref()).await }
    });
    timeout(BOUND, watch.0.notified()).await.expect("the second run found the lease held");
    LEASED_GATE.notify_one();
    let (first, second) = (first.await.unwrap().unwrap(), second.await.unwrap().unwrap());
    assert_eq!(LEASED_RUNS.load(Ordering::SeqCst), 1, "the migration body ran once");
    let Report::Up { applied, .. } = first else { panic!() };
    assert_eq!(applied.len(), 1);
    let Report::Up { applied, already_applied } = second else { panic!() };
    assert!(applied.is_empty());
    assert_eq!(already_applied, ["900-gated"]);
}

/// The check above can fail: without the lease, the same interleaving runs the body twice.
#[tokio::test]
async fn without_the_lease_the_same_interleaving_runs_the_migration_twice() {
    let db = fresh_db_with_indexes().await;
    let first = tokio::spawn({
        let db = db.clone();
        async move { up(&db, tenancy_tests::test_directory().await.as_ref(), &UNGUARDED, Guard::Unguarded, &NoSeam).await }
    });
    timeout(BOUND, UNGUARDED_STARTED.notified()).await.expect("the first run entered the migration");
    let second = tokio::spawn({
        let db = db.clone();
        async move { up(&db, tenancy_tests::test_directory().await.as_ref(), &UNGUARDED, Guard::Unguarded, &NoSeam).await }
    });
    timeout(BOUND, UNGUARDED_STARTED.notified()).await.expect("the second run entered it too");
    UNGUARDED_GATE.notify_one();
    UNGUARDED_GATE.notify_one();
    let _ = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(UNGUARDED_RUNS.load(Ordering::SeqCst), 2, "unguarded, both runs executed the body");
}

#[tokio::test]
async fn status_tells_the_truth_before_and_after_up() {
    let db = fresh_db_with_indexes().await;
    let all: Vec<String> = MIGRATIONS.iter().map(|m| m.name.to_owned()).collect();
    let Report::Status { applied, pending, .. } = run(&db, Action::Status).await.unwrap() else { panic!() };
    assert!(applied.is_empty());
    assert_eq!(pending, all);
    run(&db, Action::Up).await.unwrap();
    let Report::Status { applied, pending, .. } = run(&db, Action::Status).await.unwrap() else { panic!() };
    assert!(pending.is_empty());
    assert_eq!(applied.iter().map(|a| a.name.clone()).collect::<Vec<_>>(), all);
    assert!(applied[0].applied_at.starts_with("20"));
}

#[tokio::test]
async fn migration_001_gives_tenants_without_features_their_plan_s_features() {
    let db = fresh_db_with_indexes().await;
    let tenants = tenancy_tests::raw_collection(&db, "tenants").await;
    // Tenants as an older version stored them: no settings.features; one with a retired plan.
    let legacy = |id: &str, plan: &str| {
        doc! {
            "tenantId": id, "name": id, "status": "active",
            "settings": {"maxUsers": 5, "billing": {"plan": plan, "maxApiCalls": 1000, "billingEmail": "a@b.example"}},
            "createdAt": DateTime::now(), "updatedAt": DateTime::now(),
        }
    };
    let with_features = doc! {"tenantId": "tn_current", "settings": {"features": ["custom"], "billing": {"plan": "free"}}};
    tenants.insert_many([legacy("tn_legacy_basic", "basic"), legacy("tn_legacy_gold", "gold"), with_features]).await.unwrap();
    let Report::Up { applied, .. } = run(&db, Action::Up).await.unwrap() else { panic!() };
    assert_eq!(applied[0].documents_changed, 2);
    let features = |id: &'static str| {
        let tenants = tenants.clone();
        async move {
            let t = tenants.find_one(doc! {"tenantId": id}).await.unwrap().unwrap();
            let f = t.get_document("settings").unwrap().get_array("features").unwrap();
            f.iter().map(|v| v.as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(features("tn_legacy_basic").await, shared::plans::Plan::Basic.features());
    assert_eq!(features("tn_legacy_gold").await, shared::plans::Plan::Free.features());
    assert_eq!(features("tn_current").await, vec!["custom"], "existing features are left alone");
}

/// A tenant as stored before the counters existed, with its system admin role.
async fn legacy_tenant(db: &Db, id: &str) -> String {
    let now = DateTime::now();
    tenancy_tests::raw_collection(db, "tenants")
        .await
        .insert_one(doc! {
            "tenantId": id, "name": id, "status": "active",
            "settings": {"maxUsers": 25, "features": ["basic_auth"], "customization": {}, "billing": {"plan": "basic", "maxApiCalls": 10000, "billingEmail": "b@legacy.example"}},
            "apiUsage": {}, "createdAt": now, "updatedAt": now,
        })
        .await
        .unwrap();
    let admin = mongodb::bson::oid::ObjectId::new();
    tenancy_tests::raw_collection(db, "roles")
        .await
        .insert_one(doc! {"_id": admin, "tenantId": id, "name": "admin", "permissions": ["*"], "isSystem": true,
        "createdBy": mongodb::bson::oid::ObjectId::from_bytes([0; 12]), "createdAt": now, "updatedAt": now})
        .await
        .unwrap();
    admin.to_hex()
}

/// A user record as stored before invitations linked Cognito: `pending:<its id>`.
async fn legacy_user(db: &Db, tenant: &str, email: &str, role: &str, status: &str) -> mongodb::bson::oid::ObjectId {
    let id = mongodb::bson::oid::ObjectId::new();
    let now = DateTime::now();
    tenancy_tests::raw_collection(db, "users")
        .await
        .insert_one(doc! {"_id": id, "tenantId": tenant, "cognitoUserId": format!("pending:{id}"), "email": email,
        "profile": {"firstName": "L", "lastName": "U"}, "roles": [role], "status": status, "createdAt": now, "updatedAt": now})
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn migration_002_gives_legacy_tenants_counters_from_a_recount_once() {
    let db = fresh_db_with_indexes().await;
    let admin = legacy_tenant(&db, "tn_legacycounters").await;
    for (email, role, status) in [
        ("a@l.example", admin.as_str(), "active"),
        ("b@l.example", admin.as_str(), "inactive"),
        ("c@l.example", admin.as_str(), "pending"),
        ("d@l.example", "x", "active"),
    ] {
        legacy_user(&db, "tn_legacycounters", email, role, status).await;
    }
    run(&db, Action::Up).await.unwrap();
    let tenant =
        tenancy_tests::raw_collection(&db, "tenants").await.find_one(doc! {"tenantId": "tn_legacycounters"}).await.unwrap().unwrap();
    let counters = tenant.get_document("counters").unwrap();
    assert_eq!(
        (counters.get_i64("seats").unwrap(), counters.get_i64("admins").unwrap()),
        (4, 2),
        "every record a seat; pending or active admins"
    );
}

#[tokio::test]
async fn migration_003_links_legacy_records_through_the_admin_api_and_reports_the_rest() {
    let db = fresh_db_with_indexes().await;
    let directory = tenancy_tests::test_directory().await;
    let admin = legacy_tenant(&db, "tn_legacylinks").await;
    legacy_tenant(&db, "tn_legacyother").await;
    // No Cognito user yet: created (with its invitation). One that exists for this tenant and is
    // unlinked: adopted. One whose e-mail's Cognito user belongs to another tenant: left alone.
    let created = legacy_user(&db, "tn_legacylinks", "create@l.example", &admin, "active").await;
    let adopted = legacy_user(&db, "tn_legacylinks", "adopt@l.example", &admin, "pending").await;
    let shared_mail = legacy_user(&db, "tn_legacylinks", "shared@l.example", &admin, "active").await;
    let tenant = TenantId::parse("tn_legacylinks").unwrap();
    let sub = directory.create_user(&Email::parse("adopt@l.example").unwrap(), &tenant).await.unwrap();
    directory.create_user(&Email::parse("shared@l.example").unwrap(), &TenantId::parse("tn_legacyother").unwrap()).await.unwrap();
    migrations::run(&db, directory.as_ref(), Action::Up).await.unwrap();
    let users = tenancy_tests::raw_collection(&db, "users").await;
    let link = |id| {
        let users = users.clone();
        async move { users.find_one(doc! {"_id": id}).await.unwrap().unwrap().get_str("cognitoUserId").unwrap().to_owned() }
    };
    let made = directory.get_user(&Email::parse("create@l.example").unwrap()).await.unwrap().expect("created in Cognito");
    assert_eq!(made.tenant.as_deref(), Some("tn_legacylinks"));
    assert_eq!(link(created).await, made.sub);
    assert_eq!(link(adopted).await, sub);
    assert!(link(shared_mail).await.starts_with("pending:"), "another tenant's account is never adopted");
    let Report::Up { applied, .. } = migrations::run(&db, directory.as_ref(), Action::Up).await.unwrap() else { panic!() };
    assert!(applied.is_empty(), "recorded once");
}

/// The admins `POST /tenants` wrote before invitations existed (active, `pending:<id>`) keep
/// working: the migration links them, and they sign in by their `sub`.
#[tokio::test]
async fn a_legacy_tenant_admin_signs_in_after_the_migration() {
    let app = tenancy_tests::app::spawn_app().await;
    let superadmin = app.superadmin().await;
    let id = app.create_tenant(&superadmin, serde_json::json!({"name": "Old", "adminEmail": "old@legacy.example"})).await["tenantId"]
        .as_str()
        .unwrap()
        .to_owned();
    let email = Email::parse("old@legacy.example").unwrap();
    app.deps.directory.delete_user(&email).await.unwrap();
    let users = tenancy_tests::raw_collection(&app.db, "users").await;
    let record = users.find_one(doc! {"tenantId": &id}).await.unwrap().unwrap();
    let rid = record.get_object_id("_id").unwrap();
    users.update_one(doc! {"_id": rid}, doc! {"$set": {"cognitoUserId": format!("pending:{rid}"), "status": "active"}}).await.unwrap();
    migrations::run(&app.db, app.deps.directory.as_ref(), Action::Up).await.unwrap();
    let token = app.member("old@legacy.example", &id).await;
    let (status, _, body) = app.call(app.request(reqwest::Method::GET, &format!("/tenants/{id}"), Some(&token))).await;
    assert_eq!(status, 200, "{body}");
}

/// While a local API serves a database, `local-api migrate` runs its action inside that process
/// (FerretDB serialises writes within one process only). The route answers JSON from a local
/// client, and refuses a browser.
#[tokio::test]
async fn a_serving_local_api_runs_migrations_for_local_api_migrate_and_refuses_browsers() {
    let app = tenancy_tests::app::spawn_app().await;
    let url = format!("{}{}", app.address, local_api::LOCAL_MIGRATIONS_PATH);
    let post = || app.http.post(&url).header(local_api::control::CONTROL_TOKEN_HEADER, app.control_token.expose());
    let response = post().json(&serde_json::json!({"action": "status"})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let report: serde_json::Value = response.json().await.unwrap();
    assert_eq!(report["action"], "status");
    assert_eq!(report["pending"].as_array().unwrap().len(), MIGRATIONS.len());
    let from_a_page = post().header("origin", "http://evil.example").json(&serde_json::json!({"action": "up"})).send().await.unwrap();
    assert_eq!(from_a_page.status(), 403);
    let not_json = post().header("content-type", "text/plain").body("{\"action\":\"up\"}").send().await.unwrap();
    assert_eq!(not_json.status(), 403);
    let Report::Status { applied, .. } = run(&app.db, Action::Status).await.unwrap() else { panic!() };
    assert!(applied.is_empty(), "the refused calls ran nothing");
}
