//! No answer of `POST /users` tells a tenant's admin whether an address has an account outside
//! the tenant (docs/ARCHITECTURE.md §12): the tenant's own checks (members, seats) answer first, every
//! global refusal is one indistinguishable 409, refusals are audited by blind index only, and
//! past 20 refusals an hour every invitation of the tenant is a 429 until the hour ends.

use futures_util::future::BoxFuture;
use mongodb::bson::{doc, Document};
use reqwest::Method;
use serde_json::{json, Value};
use shared::clock::{Clock, ManualClock};
use shared::directory::{Directory, DirectoryError, DirectoryUser, SharedDirectory};
use shared::ids::{Email, TenantId};
use std::sync::Arc;
use std::time::Duration;
use tenancy_tests::app::{spawn_app, spawn_app_with, spawn_app_with_clock, TestApp};
use tenancy_tests::raw_collection;

/// What a global refusal says, whatever its cause.
const REFUSAL: &str = "This address cannot be invited. Check it, or ask the person to contact support.";

/// A tenant: its id and its admin's token.
async fn tenant(app: &TestApp, plan: &str, admin_email: &str) -> (String, String) {
    let (token, id) = app.tenant_with_admin(plan, admin_email).await;
    (id, token)
}

async fn invite(app: &TestApp, admin: &str, email: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    app.call(app.request(Method::POST, "/users", Some(admin)).json(&json!({"email": email, "firstName": "F", "lastName": "L"}))).await
}

/// The answer as a caller compares answers: status, `error` and `message` (the request id
/// differs on every call).
fn answer(reply: &(u16, reqwest::header::HeaderMap, Value)) -> (u16, Value, Value) {
    (reply.0, reply.2["error"].clone(), reply.2["message"].clone())
}

/// The tenant's counters and a recount of its records (seats).
async fn seats(app: &TestApp, tenant: &str) -> (i64, i64) {
    let t = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": tenant}).await.unwrap().unwrap();
    let counters = t.get_document("counters").unwrap();
    let counted = counters.get_i64("seats").or_else(|_| counters.get_i32("seats").map(i64::from)).unwrap();
    let recount = raw_collection(&app.db, "users").await.count_documents(doc! {"tenantId": tenant}).await.unwrap() as i64;
    (counted, recount)
}

async fn refusal_entries(app: &TestApp, tenant: &str) -> Vec<Document> {
    use futures_util::TryStreamExt;
    let entries = raw_collection(&app.db, "auditLogs").await;
    let filter = doc! {"tenantId": tenant, "action": "user.invitation-refused"};
    entries.find(filter).await.unwrap().try_collect().await.unwrap()
}

async fn blind_index(app: &TestApp, tenant: &str, email: &str) -> String {
    let (tenant, email) = (TenantId::parse(tenant).unwrap(), Email::parse(email).unwrap());
    app.db.keyring().unwrap().email_index(&tenant, &email).await.unwrap()
}

#[tokio::test]
async fn with_its_seats_full_a_tenant_gets_the_same_answer_for_an_unknown_address_and_another_tenant_s_member() {
    let app = spawn_app().await;
    let (a, admin) = tenant(&app, "free", "admin@a.example").await;
    let (_b, _) = tenant(&app, "basic", "member@b.example").await;
    for i in 0..4 {
        app.seed_record(&a, &format!("u{i}@a.example"), "user", "active", &format!("sub-{i}")).await;
    }
    assert_eq!(seats(&app, &a).await, (5, 5), "the free plan's five seats are taken");
    let unknown = invite(&app, &admin, "nobody-anywhere@x.example").await;
    let elsewhere = invite(&app, &admin, "member@b.example").await;
    assert_eq!(unknown.0, 409, "{}", unknown.2);
    assert_eq!(
        answer(&elsewhere),
        answer(&unknown),
        "the seats answer first, whoever else holds the address: {} / {}",
        elsewhere.2,
        unknown.2
    );
    assert_eq!(seats(&app, &a).await, (5, 5));
}

/// A directory in which one address "exists" at creation, yet is gone when looked up (deleted
/// in between): the refusal must look like every other one, never a 500.
#[derive(Debug)]
struct ExistsThenGone {
    inner: SharedDirectory,
    address: &'static str,
}

impl Directory for ExistsThenGone {
    fn create_user<'a>(&'a self, email: &'a Email, tenant: &'a TenantId) -> BoxFuture<'a, Result<String, DirectoryError>> {
        if email.as_str() == self.address {
            return Box::pin(async { Err(DirectoryError::Exists) });
        }
        self.inner.create_user(email, tenant)
    }
    fn get_user<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<Option<DirectoryUser>, DirectoryError>> {
        if email.as_str() == self.address {
            return Box::pin(async { Ok(None) });
        }
        self.inner.get_user(email)
    }
    fn delete_user<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<(), DirectoryError>> {
        self.inner.delete_user(email)
    }
    fn set_enabled<'a>(&'a self, email: &'a Email, enabled: bool) -> BoxFuture<'a, Result<(), DirectoryError>> {
        self.inner.set_enabled(email, enabled)
    }
}

#[tokio::test]
async fn every_global_refusal_is_one_answer_audited_by_the_address_s_blind_index_only() {
    const GONE: &str = "gone@x.example";
    let app = spawn_app_with(|deps| {
        let users_directory: SharedDirectory = Arc::new(ExistsThenGone { inner: deps.directory.clone(), address: GONE });
        local_api::functions_with_directory(deps, users::LOGICAL_ID, users_directory)
    })
    .await;
    let (a, admin) = tenant(&app, "basic", "admin@a.example").await;
    let (b, _) = tenant(&app, "basic", "admin@b.example").await;
    // A Cognito user of B that no global claim covers, and a platform operator's account.
    app.member("loner@b.example", &b).await;
    app.superadmin().await;
    let refused = [
        ("admin@b.example", "claimed by another tenant"),
        ("loner@b.example", "Cognito: another tenant's user"),
        ("ops@platform.test", "Cognito: a platform operator"),
        (GONE, "Cognito: exists, then gone"),
    ];
    for (email, why) in refused {
        let reply = invite(&app, &admin, email).await;
        assert_eq!(answer(&reply), (409, json!("Conflict"), json!(REFUSAL)), "{why}: {}", reply.2);
    }
    assert_eq!(seats(&app, &a).await, (1, 1), "every refusal gave its seat back and left no record");
    let entries = refusal_entries(&app, &a).await;
    assert_eq!(entries.len(), refused.len(), "each refusal is audited: {entries:?}");
    for (email, why) in refused {
        let hash = blind_index(&app, &a, email).await;
        assert!(entries.iter().any(|e| e.get_document("details").unwrap().get_str("emailHash") == Ok(hash.as_str())), "{why}: {entries:?}");
    }
    let stored = format!("{entries:?}").to_lowercase();
    for (email, _) in refused {
        let local = email.split('@').next().unwrap();
        assert!(!stored.contains(email) && !stored.contains(local), "no address in clear: {stored}");
    }
    // A fresh address is still welcome.
    assert_eq!(invite(&app, &admin, "new@a.example").await.0, 201);
}

#[tokio::test]
async fn past_twenty_refusals_in_an_hour_every_invitation_of_the_tenant_is_a_429_until_the_next_hour() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let (a, admin) = tenant(&app, "basic", "admin@a.example").await;
    let (_, b_admin) = tenant(&app, "basic", "admin@b.example").await;
    for i in 0..20 {
        let reply = invite(&app, &admin, "admin@b.example").await;
        assert_eq!(answer(&reply), (409, json!("Conflict"), json!(REFUSAL)), "refusal {}: {}", i + 1, reply.2);
    }
    let (_, to_next_hour) = shared::clock::hour_window(clock.now_ms());
    for email in ["admin@b.example", "fresh@a.example", "another-fresh@a.example"] {
        let (status, headers, body) = invite(&app, &admin, email).await;
        assert_eq!(status, 429, "{email}: {body}");
        let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert_eq!(retry_after, to_next_hour, "{email}: Retry-After is the end of the hour");
    }
    assert_eq!(refusal_entries(&app, &a).await.len(), 20, "audited, and bounded");
    // The 429s disappear nowhere: they are counted in the minute's summary entry.
    let summaries = raw_collection(&app.db, "auditLogs").await;
    let filter = doc! {"tenantId": &a, "action": "access.refusals-dropped", "details.source": format!("invite:{a}")};
    let summary = summaries.find_one(filter).await.unwrap().expect("a summary of the invitations refused past the budget");
    assert_eq!(summary.get_document("details").unwrap().get_i64("dropped").unwrap(), 3);
    assert_eq!(seats(&app, &a).await, (1, 1));
    assert_eq!(invite(&app, &b_admin, "fresh@b.example").await.0, 201, "another tenant's budget is its own");
    clock.advance(Duration::from_secs(to_next_hour));
    let (status, _, body) = invite(&app, &admin, "fresh@a.example").await;
    assert_eq!(status, 201, "a new hour, a new budget: {body}");
    let reply = invite(&app, &admin, "admin@b.example").await;
    assert_eq!(answer(&reply), (409, json!("Conflict"), json!(REFUSAL)), "{}", reply.2);
}
