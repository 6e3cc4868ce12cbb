//! The migrations Lambda against FerretDB: setup is idempotent, up applies each migration once
//! even when two runs race, status tells the truth.

use migrations::{registry::MIGRATIONS, run, Action, Report};
use mongodb::bson::{doc, DateTime};
use shared::db::{Db, SystemContext, TenantCollection};
use shared::ids::{Email, TenantId};
use shared::models::{CognitoLink, Profile, User, UserStatus};
use shared::DbError;
use tenancy_tests::{fresh_db, fresh_db_with_indexes};

async fn index_names(db: &Db) -> Vec<(String, String)> {
    let indexes = db.indexes(&SystemContext::new("test"));
    let mut all = Vec::new();
    for collection in ["tenants", "tenantDomains", "users", "roles", "apiKeys", "auditLogs", "locks"] {
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

#[tokio::test]
async fn setup_reports_how_audit_retention_is_enforced() {
    let db = fresh_db().await;
    let Report::Setup { indexes, .. } = run(&db, Action::Setup).await.unwrap() else { panic!() };
    let retention = indexes.iter().find(|i| i.name == "expireAt_1").unwrap();
    assert!(matches!(retention.expiry, Some("ttl" | "retention-job")));
}

fn user(email: &str) -> User {
    let id = mongodb::bson::oid::ObjectId::new();
    User {
        id,
        tenant_id: None,
        cognito_user_id: CognitoLink::Pending(id),
        email: Email::parse(email).unwrap(),
        profile: Profile { first_name: "A".into(), last_name: "B".into(), ..Default::default() },
        roles: vec![],
        status: UserStatus::Pending,
        last_login_at: None,
        created_at: None,
        updated_at: None,
    }
}

#[tokio::test]
async fn unique_indexes_hold_per_tenant_and_allow_many_pending_users() {
    let db = fresh_db_with_indexes().await;
    let system = SystemContext::new("test");
    let (a, b) = (TenantId::generate(), TenantId::generate());
    let users_a = db.scoped::<User>(&system.for_tenant(a), TenantCollection::Users);
    let users_b = db.scoped::<User>(&system.for_tenant(b), TenantCollection::Users);
    users_a.insert_one(&user("one@x.example")).await.unwrap();
    users_a.insert_one(&user("two@x.example")).await.expect("a second pending user must not collide");
    users_b.insert_one(&user("one@x.example")).await.expect("the same e-mail in another tenant is fine");
    let dup = users_a.insert_one(&user("one@x.example")).await.unwrap_err();
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
    assert_eq!(applied, all, "each migration applied by exactly one of the runs");
    let Report::Up { applied, already_applied } = run(&db, Action::Up).await.unwrap() else { panic!() };
    assert!(applied.is_empty());
    assert_eq!(already_applied, all);
}

#[tokio::test]
async fn status_tells_the_truth_before_and_after_up() {
    let db = fresh_db_with_indexes().await;
    let all: Vec<String> = MIGRATIONS.iter().map(|m| m.name.to_owned()).collect();
    let Report::Status { applied, pending } = run(&db, Action::Status).await.unwrap() else { panic!() };
    assert!(applied.is_empty());
    assert_eq!(pending, all);
    run(&db, Action::Up).await.unwrap();
    let Report::Status { applied, pending } = run(&db, Action::Status).await.unwrap() else { panic!() };
    assert!(pending.is_empty());
    assert_eq!(applied.iter().map(|a| a.name.clone()).collect::<Vec<_>>(), all);
    assert!(applied[0].applied_at.starts_with("20"));
}

#[tokio::test]
async fn migration_001_gives_tenants_without_features_their_plan_s_features() {
    let db = fresh_db_with_indexes().await;
    let tenants = tenancy_tests::raw_collection(&db, "tenants").await;
    // Tenants as an older version stored them: no settings.features; one with a retired plan.
    let legacy = |id: &str, plan: &str| doc! {
        "tenantId": id, "name": id, "status": "active",
        "settings": {"maxUsers": 5, "billing": {"plan": plan, "maxApiCalls": 1000, "billingEmail": "a@b.example"}},
        "createdAt": DateTime::now(), "updatedAt": DateTime::now(),
    };
    let with_features = doc! {"tenantId": "tn_current", "settings": {"features": ["custom"], "billing": {"plan": "free"}}};
    tenants
        .insert_many([legacy("tn_legacy_basic", "basic"), legacy("tn_legacy_gold", "gold"), with_features])
        .await
        .unwrap();
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
