//! The admission step, black-box through the local API with real moto tokens: only an active
//! member is admitted, nothing is counted before it is, a pending record is linked once, the
//! permission cache's bound holds (with a moved clock, not a sleep), no write to the tenant record
//! is lost under member traffic, and group names cannot smuggle superadmin.

use futures_util::future::join_all;
use mongodb::bson::doc;
use reqwest::Method;
use serde_json::{json, Value};
use shared::clock::{Clock, ManualClock};
use shared::seam::{NoSeam, Seam};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenancy_tests::app::{spawn_app, spawn_app_with_clock, TestApp};
use tenancy_tests::raw_collection;

async fn tenant(app: &TestApp, superadmin: &str, body: Value) -> (String, String) {
    let id = app.create_tenant(superadmin, body.clone()).await["tenantId"].as_str().unwrap().to_owned();
    let admin = app.member(body["adminEmail"].as_str().unwrap(), &id).await;
    (id, admin)
}

fn acme() -> Value {
    json!({"name": "Acme", "domain": "acme.example", "adminEmail": "admin@acme.example", "plan": "basic"})
}

async fn user(app: &TestApp, id: mongodb::bson::oid::ObjectId) -> mongodb::bson::Document {
    raw_collection(&app.db, "users").await.find_one(doc! {"_id": id}).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_token_naming_a_tenant_without_a_user_record_is_refused_and_not_counted() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (id, admin) = tenant(&app, &superadmin, acme()).await;
    app.call(app.request(Method::GET, &format!("/tenants/{id}"), Some(&admin))).await;
    let before = app.usage(&id).await;
    let outsider = app.member("outsider@elsewhere.example", &id).await;
    for path in [format!("/tenants/{id}"), format!("/tenants/{id}/limits")] {
        for _ in 0..5 {
            let (status, _, body) = app.call(app.request(Method::GET, &path, Some(&outsider))).await;
            assert_eq!(status, 403, "{body}");
            assert!(!body.to_string().contains("admin@acme.example"), "nothing of the tenant leaks: {body}");
        }
    }
    assert_eq!(app.usage(&id).await, before, "refused calls are not counted");
}

#[tokio::test]
async fn an_inactive_user_is_refused_and_not_counted() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (id, admin) = tenant(&app, &superadmin, acme()).await;
    app.call(app.request(Method::GET, &format!("/tenants/{id}"), Some(&admin))).await;
    let before = app.usage(&id).await;
    let (gone, token) = app.seed_user(&id, "gone@acme.example", "admin", "inactive").await;
    let (status, _, body) = app.call(app.request(Method::GET, &format!("/tenants/{id}/limits"), Some(&token))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(app.usage(&id).await, before);
    assert_eq!(user(&app, gone).await.get_str("status").unwrap(), "inactive", "admission never reactivates");
}

#[tokio::test]
async fn racing_first_calls_activate_a_pending_invitation_once() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (id, _) = tenant(&app, &superadmin, acme()).await;
    let (invited, token) = app.seed_user(&id, "new@acme.example", "viewer", "pending").await;
    let sub_before = user(&app, invited).await.get_str("cognitoUserId").unwrap().to_owned();
    let calls = (0..10).map(|_| app.call(app.request(Method::GET, &format!("/tenants/{id}"), Some(&token))));
    for (status, _, body) in join_all(calls).await {
        assert_eq!(status, 200, "{body}");
    }
    let record = user(&app, invited).await;
    assert_eq!(record.get_str("cognitoUserId").unwrap(), sub_before, "found by its sub, which the invitation stored");
    assert_eq!(record.get_str("status").unwrap(), "active", "its first call activated it");
    assert!(record.get_datetime("lastLoginAt").is_ok());
    assert_eq!(app.usage(&id).await, 10, "each admitted call counted once");
}

/// Admission matches by `sub` only: a self-registered account that carries a pending user's
/// e-mail and tenant gets a 403 and links nothing.
#[tokio::test]
async fn an_account_with_a_pending_user_s_email_links_nothing() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (id, _) = tenant(&app, &superadmin, acme()).await;
    let invited = app.seed_record(&id, "claim@acme.example", "admin", "pending", "").await;
    let token = app.member("claim@acme.example", &id).await;
    let (status, _, body) = app.call(app.request(Method::GET, &format!("/tenants/{id}"), Some(&token))).await;
    assert_eq!(status, 403, "{body}");
    let record = user(&app, invited).await;
    assert!(record.get_str("cognitoUserId").unwrap().starts_with("pending:"));
    assert_eq!(record.get_str("status").unwrap(), "pending");
}

#[tokio::test]
async fn a_call_refused_for_the_quota_is_not_counted() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (id, admin) = tenant(&app, &superadmin, json!({"name": "Free", "adminEmail": "a@free.example"})).await;
    app.set_usage(&id, 1_000).await;
    for _ in 0..3 {
        let (status, headers, _) = app.call(app.request(Method::GET, &format!("/tenants/{id}"), Some(&admin))).await;
        assert_eq!(status, 429);
        assert!(headers.contains_key("retry-after"));
    }
    assert_eq!(app.usage(&id).await, 1_000, "the bound is in the filter: a 429 never counts");
}

#[tokio::test]
async fn a_role_change_takes_effect_within_the_permission_cache_bound() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let superadmin = app.superadmin().await;
    let (id, _) = tenant(&app, &superadmin, acme()).await;
    let (_, viewer) = app.seed_user(&id, "viewer@acme.example", "viewer", "active").await;
    let path = format!("/tenants/{id}/settings/customization");
    let patch = || app.request(Method::PATCH, &path, Some(&viewer)).json(&json!({"theme": "dark"}));
    assert_eq!(app.call(patch()).await.0, 403, "a viewer lacks update:tenant");
    raw_collection(&app.db, "roles")
        .await
        .update_one(doc! {"tenantId": &id, "name": "viewer"}, doc! {"$push": {"permissions": "update:tenant"}})
        .await
        .unwrap();
    clock.advance(Duration::from_secs(59));
    assert_eq!(app.call(patch()).await.0, 403, "within 60 s the cached permissions may still be used");
    clock.advance(Duration::from_secs(2));
    let (status, _, body) = app.call(patch()).await;
    assert_eq!(status, 200, "past 60 s the change has taken effect: {body}");
}

#[tokio::test]
async fn a_deactivated_member_is_refused_once_the_cache_bound_has_passed() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let superadmin = app.superadmin().await;
    let (id, _) = tenant(&app, &superadmin, acme()).await;
    let (member, token) = app.seed_user(&id, "leaving@acme.example", "viewer", "active").await;
    assert_eq!(app.call(app.request(Method::GET, &format!("/tenants/{id}"), Some(&token))).await.0, 200);
    raw_collection(&app.db, "users").await.update_one(doc! {"_id": member}, doc! {"$set": {"status": "inactive"}}).await.unwrap();
    clock.advance(Duration::from_secs(61));
    assert_eq!(app.call(app.request(Method::GET, &format!("/tenants/{id}"), Some(&token))).await.0, 403);
}

#[tokio::test]
async fn group_names_that_merely_contain_superadmin_get_no_superadmin_rights() {
    let app = spawn_app().await;
    for (i, group) in ["ops,superadmin", "[superadmin]", "\"superadmin\"", "a,b,superadmin,c"].into_iter().enumerate() {
        app.cognito.create_group().user_pool_id(&app.pool.user_pool_id).group_name(group).send().await.unwrap();
        let token = app.token(&format!("smuggler{i}@evil.example"), None, &[group]).await;
        let (status, _, body) = app.call(app.request(Method::GET, "/tenants", Some(&token))).await;
        assert_eq!(status, 403, "{group}: {body}");
    }
    // A real operator is in the one group superadmin and nothing else.
    let (status, _, _) = app.call(app.request(Method::GET, "/tenants", Some(&app.superadmin().await))).await;
    assert_eq!(status, 200);
}

/// On FerretDB an update is a read then a whole-document write: without the one serialisation,
/// a usage increment racing a suspension could write the old status back.
#[tokio::test]
async fn suspensions_plan_changes_and_domain_moves_never_revert_under_member_traffic() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (id, admin) = tenant(&app, &superadmin, acme()).await;
    let path = format!("/tenants/{id}");
    let members = || join_all((0..50).map(|_| app.request(Method::GET, &path, Some(&admin)).send()));
    let record = || async { raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": &id}).await.unwrap().unwrap() };

    let plan = app.request(Method::PATCH, &format!("{path}/settings/billing"), Some(&superadmin)).json(&json!({"plan": "premium"}));
    let (changed, calls) = tokio::join!(plan.send(), members());
    assert_eq!(changed.unwrap().status(), 200);
    let ok = calls.into_iter().filter(|r| r.as_ref().unwrap().status() == 200).count() as i64;
    let after = record().await;
    assert_eq!(after.get_document("settings").unwrap().get_document("billing").unwrap().get_str("plan").unwrap(), "premium");
    assert_eq!(after.get_document("settings").unwrap().get_i64("maxUsers").unwrap_or(0), 100, "{after}");

    let usage_before_move = app.usage(&id).await;
    let mv = app.request(Method::PATCH, &path, Some(&superadmin)).json(&json!({"domain": "acme-moved.example"}));
    let (moved, calls) = tokio::join!(mv.send(), members());
    assert_eq!(moved.unwrap().status(), 200);
    let moved_ok = calls.into_iter().filter(|r| r.as_ref().unwrap().status() == 200).count() as i64;
    assert_eq!(record().await.get_str("domain").unwrap(), "acme-moved.example");
    assert_eq!(app.usage(&id).await, usage_before_move + moved_ok, "no increment lost to the move");
    assert!(ok > 0);

    let suspend = app.request(Method::POST, &format!("{path}/suspend"), Some(&superadmin));
    let (suspended, _) = tokio::join!(suspend.send(), members());
    assert_eq!(suspended.unwrap().status(), 200);
    assert_eq!(record().await.get_str("status").unwrap(), "suspended", "the suspension stands");
    let (status, _, _) = app.call(app.request(Method::GET, &path, Some(&admin))).await;
    assert_eq!(status, 403);
}

/// A competing, identical domain move, run at the exact point where this one has made its claim.
#[derive(Debug)]
struct CompetingMove {
    db: shared::db::Db,
    tenant: shared::ids::TenantId,
    changes: tenants::input::TenantChanges,
    done: AtomicBool,
}

impl Seam for CompetingMove {
    fn reached<'a>(&'a self, point: &'static str) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            if point == "tenant.update.claimed" && !self.done.swap(true, Ordering::SeqCst) {
                let admin = tenancy_tests::superadmin_context();
                tenants::service::update(&self.db, &admin, &self.tenant, &self.changes, &NoSeam).await.expect("the competing move wins");
            }
        })
    }
}

#[tokio::test]
async fn the_loser_of_two_identical_domain_moves_never_releases_the_winner_s_claim() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (id, _) = tenant(&app, &superadmin, json!({"name": "Mover", "adminEmail": "a@mover.example"})).await;
    let tenant_id = shared::ids::TenantId::parse(id.clone()).unwrap();
    let changes = tenants::input::TenantChanges { name: None, domain: Some(shared::ids::Domain::parse("wanted.example").unwrap()) };
    let seam =
        Arc::new(CompetingMove { db: app.db.clone(), tenant: tenant_id.clone(), changes: changes.clone(), done: AtomicBool::new(false) });
    // This move makes the claim; the competing one (AlreadyHeld) commits; this one then loses.
    let lost = tenants::service::update(&app.db, &tenancy_tests::superadmin_context(), &tenant_id, &changes, seam.as_ref()).await;
    assert!(lost.is_err(), "the interleaved move loses: {lost:?}");
    let registry = app.db.tenants(&shared::SystemContext::new("test"));
    assert_eq!(registry.domain_holder("wanted.example").await.unwrap().as_ref(), Some(&tenant_id), "the claim stays with its holder");
    let (status, _, body) = app
        .call(
            app.request(Method::POST, "/tenants", Some(&superadmin))
                .json(&json!({"name": "Thief", "domain": "wanted.example", "adminEmail": "t@thief.example"})),
        )
        .await;
    assert_eq!(status, 409, "nobody else can take a held domain: {body}");
}

async fn minute_fields(app: &TestApp, tenant: &str) -> Vec<String> {
    let record = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": tenant}).await.unwrap().unwrap();
    record.get_document("minuteUsage").map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

#[tokio::test]
async fn a_full_minute_window_is_a_429_that_counts_nothing_and_stale_windows_are_removed() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let superadmin = app.superadmin().await;
    let (id, admin) = tenant(&app, &superadmin, json!({"name": "Free", "adminEmail": "a@free.example"})).await;
    let path = format!("/tenants/{id}");
    assert_eq!(app.call(app.request(Method::GET, &path, Some(&admin))).await.0, 200);
    let (minute, _) = shared::clock::minute_window(clock.now_ms());
    let per_minute = shared::plans::Plan::Free.limits().calls_per_minute;
    raw_collection(&app.db, "tenants")
        .await
        .update_one(doc! {"tenantId": &id}, doc! {"$set": {format!("minuteUsage.{minute}"): per_minute}})
        .await
        .unwrap();
    let usage = app.usage(&id).await;
    let (status, headers, body) = app.call(app.request(Method::GET, &path, Some(&admin))).await;
    assert_eq!(status, 429, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(app.usage(&id).await, usage, "a refused call is counted nowhere");
    for _ in 0..4 {
        clock.advance(Duration::from_secs(61));
        assert_eq!(app.call(app.request(Method::GET, &path, Some(&admin))).await.0, 200);
        let fields = minute_fields(&app, &id).await;
        assert!(fields.len() <= 2, "stale windows are removed as time passes: {fields:?}");
    }
    assert_eq!(app.usage(&id).await, usage + 4);
}

#[tokio::test]
async fn over_its_monthly_quota_a_tenant_can_still_read_its_limits_uncounted() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (id, admin) = tenant(&app, &superadmin, json!({"name": "Free", "adminEmail": "a@free.example"})).await;
    app.set_usage(&id, 1_000).await;
    assert_eq!(app.call(app.request(Method::GET, &format!("/tenants/{id}"), Some(&admin))).await.0, 429);
    let (status, _, body) = app.call(app.request(Method::GET, &format!("/tenants/{id}/limits"), Some(&admin))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["currentApiCalls"], 1_000);
    assert_eq!(app.usage(&id).await, 1_000);
}

#[tokio::test]
async fn a_refused_call_changes_nothing_not_even_a_pending_user_s_status() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (id, _) = tenant(&app, &superadmin, acme()).await;
    let (invited, token) = app.seed_user(&id, "later@acme.example", "viewer", "pending").await;
    assert_eq!(app.call(app.request(Method::POST, &format!("/tenants/{id}/suspend"), Some(&superadmin))).await.0, 200);
    assert_eq!(app.call(app.request(Method::GET, &format!("/tenants/{id}"), Some(&token))).await.0, 403);
    let record = user(&app, invited).await;
    assert_eq!(record.get_str("status").unwrap(), "pending", "a call the tenant refused activates nothing");
    assert!(record.get_datetime("lastLoginAt").is_err());
}
