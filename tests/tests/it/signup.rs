//! Self-service sign-up against real FerretDB and moto: the switch, the one answer whatever the
//! address, the exact bounds under concurrency, the sweeper that makes the tenant, and the
//! removal of an unconfirmed sign-up by a real invitation or by its expiry.

use futures_util::future::join_all;
use http::Method;
use mongodb::bson::doc;
use serde_json::{json, Value};
use shared::clock::ManualClock;
use shared::config::{Features, SignupSettings};
use shared::saga::SweepOptions;
use std::time::Duration;
use tenancy_tests::app::{spawn_app, spawn_app_with_features, TestApp};
use tenancy_tests::invariants::{all, assert_whole_or_nothing, tenant_of};

fn on(cap: u64) -> Features {
    Features { signup: Some(SignupSettings { hourly_cap: cap }) }
}

/// The company's name, apart from the address (only the address is personal data).
fn company(email: &str) -> String {
    format!("Signed {}", email.replace('@', " at "))
}

fn body(email: &str) -> Value {
    json!({"companyName": company(email), "adminEmail": email, "adminFirstName": "Sig", "adminLastName": "Nup"})
}

async fn sign_up(app: &TestApp, key: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    app.call(app.request(Method::POST, "/signup", None).header("Idempotency-Key", key).json(body)).await
}

/// The sweep as the schedule runs it, on a queued sign-up: due at once.
async fn sweep(app: &TestApp) -> shared::saga::SweepReport {
    let options = SweepOptions { older_than: Duration::from_secs(60), any_other_owner: false, limit: 100 };
    let report = onboarding::service::sweep(&app.db, app.deps.directory.as_ref(), options).await.expect("a sweep");
    assert!(report.all_ended(), "{report:?}");
    report
}

async fn sagas_of_kind(app: &TestApp, kind: &str) -> Vec<mongodb::bson::Document> {
    all(app, false, "sagas").await.into_iter().filter(|s| s.get_str("kind") == Ok(kind)).collect()
}

fn tenant_named<'a>(tenants: &'a [mongodb::bson::Document], name: &str) -> Option<&'a mongodb::bson::Document> {
    tenants.iter().find(|t| tenant_of(t, "name") == name)
}

#[tokio::test]
async fn with_the_switch_off_the_route_is_a_404_and_writes_nothing() {
    let app = spawn_app().await;
    let (status, _, reply) = sign_up(&app, "switch-off-1", &body("off@signup.example")).await;
    assert_eq!(status, 404, "{reply}");
    assert!(all(&app, false, "sagas").await.is_empty());
    assert!(all(&app, false, "refusalWindows").await.is_empty(), "no bound was counted");
    assert!(all(&app, true, "tenantKeys").await.is_empty(), "no key was made");
}

#[tokio::test]
async fn every_sign_up_gets_the_same_answer_and_the_sweeper_makes_only_the_tenant_an_address_can_take() {
    let app = spawn_app_with_features(ManualClock::starting_now(), on(100)).await;
    let (_, member_tenant) = app.tenant_with_admin("basic", "taken@signup.example").await;
    let fresh = sign_up(&app, "fresh-key-01", &body("fresh@signup.example")).await;
    let taken = sign_up(&app, "taken-key-01", &body("taken@signup.example")).await;
    assert_eq!((fresh.0, taken.0), (202, 202), "{} {}", fresh.2, taken.2);
    assert_eq!(fresh.2, taken.2, "one answer whatever the address");
    assert!(fresh.2["data"].get("tenantId").is_none(), "no tenant id before the sweeper runs");
    // Queued with its personal fields sealed, nothing in clear.
    let queued = sagas_of_kind(&app, "signup").await;
    assert_eq!(queued.len(), 2);
    for saga in &queued {
        assert_eq!(saga.get_str("state").unwrap(), "queued");
        assert!(!saga.to_string().contains("@signup.example"), "{saga}");
    }
    // A replay is accepted again and counts nothing; another body under the same key is a 422.
    let windows_before = all(&app, false, "refusalWindows").await;
    let replay = sign_up(&app, "fresh-key-01", &body("fresh@signup.example")).await;
    assert_eq!((replay.0, &replay.2), (202, &fresh.2));
    assert_eq!(all(&app, false, "refusalWindows").await, windows_before, "a replay counts no bound");
    let (status, _, _) = sign_up(&app, "fresh-key-01", &body("other@signup.example")).await;
    assert_eq!(status, 422);

    let report = sweep(&app).await;
    assert_eq!((report.completed, report.failed), (1, 1), "{report:?}");
    let tenants = all(&app, false, "tenants").await;
    let made = tenant_named(&tenants, &company("fresh@signup.example")).expect("the sign-up's tenant");
    assert_eq!(made.get_document("settings").unwrap().get_document("billing").unwrap().get_str("plan").unwrap(), "free");
    assert!(made.get_str("domain").is_err(), "no domain for an unverified caller");
    assert!(tenant_named(&tenants, &company("taken@signup.example")).is_none(), "the member's address took no tenant");
    assert_eq!(tenants.len(), 2, "the member's tenant and the sign-up's: {member_tenant}");
    assert_whole_or_nothing(&app, "after the sweep").await;
}

#[tokio::test]
async fn the_bounds_are_exact_under_concurrency() {
    let app = spawn_app_with_features(ManualClock::starting_now(), on(100)).await;
    // Twelve at once from one source: five pass its hour.
    let bodies: Vec<Value> = (0..12).map(|i| body(&format!("burst{i}@signup.example"))).collect();
    let app = &app;
    let answers = join_all(bodies.iter().enumerate().map(|(i, b)| {
        let key = format!("burst-key-{i:04}");
        async move { sign_up(app, &key, b).await }
    }))
    .await;
    let accepted = answers.iter().filter(|(s, _, _)| *s == 202).count();
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!((accepted, refused.len()), (5, 7), "{answers:?}");
    for (_, headers, _) in refused {
        assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() <= 3600);
    }
    assert_eq!(sagas_of_kind(app, "signup").await.len(), 5);
}

#[tokio::test]
async fn one_address_has_one_pending_sign_up_and_the_platform_cap_holds() {
    let app = spawn_app_with_features(ManualClock::starting_now(), on(3)).await;
    let same = body("twice@signup.example");
    let answers = join_all(["twice-key-01", "twice-key-02"].map(|key| {
        let same = same.clone();
        let app = &app;
        async move { sign_up(app, key, &same).await.0 }
    }))
    .await;
    let mut sorted = answers.clone();
    sorted.sort();
    assert_eq!(sorted, vec![202, 429], "one pending sign-up per address");
    // The platform's hour: 3, whoever asks (the address refused above was counted by its source,
    // never by the platform).
    assert_eq!(sign_up(&app, "cap-key-0001", &body("c1@signup.example")).await.0, 202);
    assert_eq!(sign_up(&app, "cap-key-0002", &body("c2@signup.example")).await.0, 202);
    let (status, headers, _) = sign_up(&app, "cap-key-0003", &body("c3@signup.example")).await;
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
    assert_eq!(sagas_of_kind(&app, "signup").await.len(), 3);
}

#[tokio::test]
async fn a_real_invitation_cancels_an_unconfirmed_sign_up_and_a_confirmed_one_stays() {
    let app = spawn_app_with_features(ManualClock::starting_now(), on(100)).await;
    assert_eq!(sign_up(&app, "squat-key-01", &body("squatted@signup.example")).await.0, 202);
    assert_eq!(sign_up(&app, "owner-key-01", &body("owner@signup.example")).await.0, 202);
    sweep(&app).await;
    assert_eq!(all(&app, false, "tenants").await.len(), 2);
    // The owner confirms: its first call with the mailed password activates its record.
    let owner_tenant = tenant_of(tenant_named(&all(&app, false, "tenants").await, &company("owner@signup.example")).unwrap(), "tenantId");
    let owner = app.member("owner@signup.example", &owner_tenant).await;
    let (status, _, me) = app.call(app.request(Method::GET, "/users/me", Some(&owner))).await;
    assert_eq!((status, me["data"]["status"].as_str()), (200, Some("active")));

    let (admin, _) = app.tenant_with_admin("basic", "admin@inviter.example").await;
    let invite = |email: &str| json!({"email": email, "firstName": "Real", "lastName": "Person"});
    let (status, _, reply) = app.call(app.request(Method::POST, "/users", Some(&admin)).json(&invite("squatted@signup.example"))).await;
    assert_eq!(status, 201, "the unconfirmed sign-up gives the address up: {reply}");
    let (status, _, _) = app.call(app.request(Method::POST, "/users", Some(&admin)).json(&invite("owner@signup.example"))).await;
    assert_eq!(status, 409, "a confirmed sign-up keeps its address");
    let tenants = all(&app, false, "tenants").await;
    assert!(tenant_named(&tenants, &company("squatted@signup.example")).is_none(), "removed whole");
    assert!(tenant_named(&tenants, &company("owner@signup.example")).is_some());
    let states: Vec<String> = sagas_of_kind(&app, "signup").await.iter().map(|s| s.get_str("state").unwrap().to_owned()).collect();
    assert!(states.contains(&"failed".to_owned()) && states.contains(&"completed".to_owned()), "{states:?}");
    let cancelled = sagas_of_kind(&app, "signup").await.into_iter().find(|s| s.get_str("state") == Ok("failed")).unwrap();
    assert_eq!(cancelled.get_document("error").unwrap().get_str("code").unwrap(), "cancelled");
    assert_whole_or_nothing(&app, "after the cancellation").await;
}

#[tokio::test]
async fn an_onboarding_of_the_address_cancels_an_unconfirmed_sign_up_too() {
    let app = spawn_app_with_features(ManualClock::starting_now(), on(100)).await;
    assert_eq!(sign_up(&app, "squat-key-02", &body("boss@bigco.example")).await.0, 202);
    sweep(&app).await;
    let ops = app.superadmin().await;
    let onboarding = json!({"tenantName": "BigCo", "adminEmail": "boss@bigco.example", "adminFirstName": "B", "adminLastName": "C"});
    let (status, _, reply) =
        app.call(app.request(Method::POST, "/onboarding", Some(&ops)).header("Idempotency-Key", "bigco-key-1").json(&onboarding)).await;
    assert_eq!(status, 201, "{reply}");
    let tenants = all(&app, false, "tenants").await;
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenant_of(&tenants[0], "name"), "BigCo");
    assert_whole_or_nothing(&app, "after the onboarding").await;
}

#[tokio::test]
async fn an_unconfirmed_sign_up_is_removed_whole_after_seven_days() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_features(clock.clone(), on(100)).await;
    assert_eq!(sign_up(&app, "late-key-001", &body("late@signup.example")).await.0, 202);
    sweep(&app).await;
    assert_eq!(all(&app, false, "tenants").await.len(), 1);
    clock.advance(Duration::from_secs(6 * 24 * 3600));
    assert_eq!(sweep(&app).await.expired_signups, 0, "still within the temporary password's validity");
    clock.advance(Duration::from_secs(24 * 3600 + 60));
    let report = sweep(&app).await;
    assert_eq!(report.expired_signups, 1, "{report:?}");
    assert!(all(&app, false, "tenants").await.is_empty());
    assert!(app.cognito_users().await.iter().all(|(_, tenant)| tenant.is_none()), "its Cognito user went too");
    assert!(all(&app, true, "tenantKeys").await.is_empty() && all(&app, true, "emailIndex").await.is_empty());
    assert!(all(&app, false, "users").await.is_empty() && all(&app, false, "roles").await.is_empty());
    assert_whole_or_nothing(&app, "after the expiry").await;
    let windows = tenancy_tests::raw_collection(&app.db, "refusalWindows").await;
    assert!(windows.find_one(doc! {"_id": {"$regex": "^signup-source:"}}).await.unwrap().is_some(), "the source is held hashed only");
    assert!(windows.find_one(doc! {"_id": {"$regex": "127\\.0\\.0\\.1"}}).await.unwrap().is_none(), "never in clear");
}

#[tokio::test]
async fn a_sign_up_that_failed_holds_its_address_no_longer() {
    let app = spawn_app_with_features(ManualClock::starting_now(), on(100)).await;
    app.tenant_with_admin("basic", "member@signup.example").await;
    assert_eq!(sign_up(&app, "member-key-01", &body("member@signup.example")).await.0, 202);
    let report = sweep(&app).await;
    assert_eq!(report.failed, 1, "the address belongs to a member: {report:?}");
    // A new sign-up of the address (once the member leaves, say) is not refused by the old hold.
    assert_eq!(sign_up(&app, "member-key-02", &body("member@signup.example")).await.0, 202);
}

#[tokio::test]
async fn a_removal_that_died_after_locking_the_record_is_finished_by_the_next_one() {
    let app = spawn_app_with_features(ManualClock::starting_now(), on(100)).await;
    assert_eq!(sign_up(&app, "died-key-001", &body("died@signup.example")).await.0, 202);
    sweep(&app).await;
    let saga = sagas_of_kind(&app, "signup").await.pop().expect("the sign-up");
    let admin_id = saga.get_document("params").unwrap().get_object_id("adminId").unwrap();
    // As a removal leaves it when it dies right after its lock: the record locked, the user kept.
    let users = tenancy_tests::raw_collection(&app.db, "users").await;
    let lock = doc! {"$set": {"status": "inactive", "signupRemoval": saga.get_str("_id").unwrap()}};
    users.update_one(doc! {"_id": admin_id}, lock).await.unwrap();
    let (admin, _) = app.tenant_with_admin("basic", "admin@finisher.example").await;
    let invite = json!({"email": "died@signup.example", "firstName": "Real", "lastName": "Person"});
    let (status, _, reply) = app.call(app.request(Method::POST, "/users", Some(&admin)).json(&invite)).await;
    assert_eq!(status, 201, "{reply}");
    assert!(tenant_named(&all(&app, false, "tenants").await, &company("died@signup.example")).is_none());
    assert_whole_or_nothing(&app, "after the finished removal").await;
}
