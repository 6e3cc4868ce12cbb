//! The invitation (`POST /users`) as a durable saga under injected faults, against real FerretDB
//! and moto: every step failed, its reply lost, or the saga stopped there as a crash would (its
//! future dropped), then a retry by the same caller with the same key or a sweep. Once the saga
//! has ended, the invitee is whole (a record linked to its Cognito user, a seat, the global
//! claim) or nothing, and the tenant's counters equal a recount. Also: a keyless re-invitation
//! rejoins an open saga, the replay rules of `Idempotency-Key` over HTTP, and a global refusal
//! that leaves nothing behind.

use mongodb::bson::{doc, Bson, Document};
use reqwest::{Method, RequestBuilder};
use serde_json::json;
use shared::clock::ManualClock;
use shared::ids::{Email, TenantId};
use shared::saga::{Caller, Fault, IdempotencyKey, NoFaults, SagaState, SweepOptions, LEASE_TTL};
use shared::TenantContext;
use std::time::Duration;
use tenancy_tests::app::{spawn_app, spawn_app_with_clock, TestApp};
use tenancy_tests::faults::{crashes, At};
use tenancy_tests::invariants::{all, assert_whole_or_nothing};
use tenancy_tests::raw_collection;
use users::error::UsersError;
use users::input::Invitation;
use users::invitation::STEPS;

/// A tenant with its admin: the admin's token (for HTTP), and the admin as the service sees it
/// (its admitted context and its caller, the owner of its idempotency keys).
struct Tenant {
    id: String,
    token: String,
    ctx: TenantContext,
    caller: Caller,
}

/// A tenant on the basic plan (25 seats: room for every case of a matrix) named `name`; the
/// names differ because the invariants take two tenants of one name for a doubled onboarding.
async fn tenant(app: &TestApp, name: &str, admin_email: &str) -> Tenant {
    let superadmin = app.superadmin().await;
    let made = app.create_tenant(&superadmin, json!({"name": name, "adminEmail": admin_email, "plan": "basic"})).await;
    let id = made["tenantId"].as_str().unwrap().to_owned();
    let token = app.member(admin_email, &id).await;
    let admin = raw_collection(&app.db, "users").await.find_one(doc! {"tenantId": &id}).await.unwrap().expect("the admin's record");
    let sub = admin.get_str("cognitoUserId").unwrap().to_owned();
    let ctx = tenancy_tests::member_context(&app.db, &id, &sub).await;
    let caller = Caller::Person { tenant: Some(TenantId::parse(id.clone()).unwrap()), sub };
    Tenant { id, token, ctx, caller }
}

fn invitation(email: &str) -> Invitation {
    Invitation { email: Email::parse(email).unwrap(), first_name: "Ada".into(), last_name: "Lovelace".into(), roles: None }
}

/// The tenant's blind index of `email`: what its records hold as `emailHash` and its invitation
/// sagas as `lookup`.
async fn blind_index(app: &TestApp, tenant: &str, email: &str) -> String {
    let (tenant, email) = (TenantId::parse(tenant).unwrap(), Email::parse(email).unwrap());
    users::person::email_index(&app.db, &tenant, &email).await.unwrap()
}

/// The invitation sagas of one address in one tenant, oldest first.
async fn sagas_of(app: &TestApp, tenant: &str, email: &str) -> Vec<Document> {
    let lookup = blind_index(app, tenant, email).await;
    let mut found: Vec<Document> = all(app, false, "sagas")
        .await
        .into_iter()
        .filter(|s| s.get_str("kind") == Ok("invitation") && s.get_str("tenantId") == Ok(tenant) && s.get_str("lookup") == Ok(&lookup))
        .collect();
    found.sort_by_key(|s| s.get_datetime("createdAt").map(|d| d.timestamp_millis()).unwrap_or_default());
    found
}

/// The records of one address in one tenant.
async fn records_of(app: &TestApp, tenant: &str, email: &str) -> Vec<Document> {
    let hash = blind_index(app, tenant, email).await;
    all(app, false, "users")
        .await
        .into_iter()
        .filter(|u| u.get_str("tenantId") == Ok(tenant) && u.get_str("emailHash") == Ok(&hash))
        .collect()
}

/// The seat marks sagas hold on the tenant's record (`sagaSeats`): none once every saga ended.
async fn seat_marks(app: &TestApp, tenant: &str) -> Vec<String> {
    let record = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": tenant}).await.unwrap().unwrap();
    record.get_document("sagaSeats").map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

/// How the one invitation saga of `email` ended: its state and, if it failed, its code. Checks
/// on the way that what exists is whole or nothing: the invariants of every tenant, then the
/// invitee itself (a completed saga's record linked to the invitee's Cognito user; a failed
/// saga's neither record, Cognito user nor claim), and no seat mark left.
async fn ended(app: &TestApp, tenant: &str, email: &str, context: &str) -> (SagaState, Option<String>) {
    assert_whole_or_nothing(app, context).await;
    let sagas = sagas_of(app, tenant, email).await;
    assert_eq!(sagas.len(), 1, "{context}: one saga per key: {sagas:?}");
    let saga = &sagas[0];
    assert!(saga.get("sealed").is_none(), "{context}: an ended saga keeps nothing sealed: {saga}");
    assert_eq!(seat_marks(app, tenant).await, Vec::<String>::new(), "{context}: a seat mark outlived its saga");
    let records = records_of(app, tenant, email).await;
    let address = Email::parse(email).unwrap();
    let cognito = app.deps.directory.get_user(&address).await.unwrap();
    let holder = app.db.keyring().unwrap().email_holder(&address).await.unwrap();
    match saga.get_str("state").unwrap() {
        "completed" => {
            assert_eq!(records.len(), 1, "{context}: one record of the invitee");
            let record = &records[0];
            let id = record.get_object_id("_id").unwrap();
            assert_eq!(saga.get_document("result").unwrap().get_object_id("userId").unwrap(), id, "{context}: the saga's result");
            let sub = record.get_str("cognitoUserId").unwrap();
            let user = cognito.unwrap_or_else(|| panic!("{context}: a completed invitation has its Cognito user"));
            assert_eq!((user.sub.as_str(), user.tenant.as_deref()), (sub, Some(tenant)), "{context}: the record links its user");
            assert_eq!(holder.as_ref().map(|t| t.as_str()), Some(tenant), "{context}: the tenant holds the address");
            (SagaState::Completed, None)
        }
        "failed" => {
            assert!(records.is_empty(), "{context}: a failed invitation left its record: {records:?}");
            assert!(cognito.is_none(), "{context}: a failed invitation left a Cognito user: {cognito:?}");
            assert_eq!(holder, None, "{context}: a failed invitation left its claim");
            let code = saga.get_document("error").unwrap().get_str("code").unwrap().to_owned();
            (SagaState::Failed, Some(code))
        }
        other => panic!("{context}: the saga is still {other}: {saga}"),
    }
}

/// How a faulted invitation is followed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// The same caller sends it again with the same key (after the lease expired, for a crash).
    Retry,
    /// The sweeper takes it.
    Sweep,
}

const NOW: SweepOptions = SweepOptions { older_than: Duration::ZERO, any_other_owner: true, limit: 100 };

fn past_the_lease(clock: &ManualClock) {
    clock.advance(LEASE_TTL + Duration::from_secs(1));
}

/// One invitation of `email` with an idempotency key, faulted at `step`, then followed up;
/// returns how its saga ended.
async fn faulted(
    app: &TestApp,
    clock: &ManualClock,
    t: &Tenant,
    email: &str,
    step: &'static str,
    fault: Fault,
    then: Then,
) -> (SagaState, Option<String>) {
    let (db, directory) = (&app.db, app.deps.directory.as_ref());
    let key = IdempotencyKey::parse(&format!("key-{email}")).unwrap();
    let inv = invitation(email);
    let context = format!("{step} x {fault:?} then {then:?}");
    let at = At::new(step, fault);
    let reached = at.reached.clone();
    let first = {
        let (db, directory, ctx, caller, key, inv) =
            (db.clone(), app.deps.directory.clone(), t.ctx.clone(), t.caller.clone(), key.clone(), inv.clone());
        tokio::spawn(async move {
            users::service::invite(&db, directory.as_ref(), &ctx, Some((&caller, &key)), &inv, &at).await.map(|i| i.person.user.id)
        })
    };
    if crashes(fault) {
        reached.notified().await;
        first.abort();
    } else {
        match first.await.unwrap() {
            Ok(_) => assert_eq!(step, "directory", "{context}: only a lost reply at the commit point answers the invitation"),
            Err(UsersError::Replayed(f)) => assert!(f.retryable && f.status == 503 && f.code == "unavailable", "{context}: {f:?}"),
            Err(e) => panic!("{context}: {e}"),
        }
    }
    let again = || users::service::invite(db, directory, &t.ctx, Some((&t.caller, &key)), &inv, &NoFaults);
    match then {
        Then::Retry => {
            // A crash leaves a live lease: the retry meets a 409 until it expires.
            if crashes(fault) {
                match again().await {
                    Err(UsersError::InProgress(secs)) => assert!((1..=LEASE_TTL.as_secs()).contains(&secs), "{context}: {secs}"),
                    other => panic!("{context}: a live lease answers in progress: {other:?}"),
                }
                past_the_lease(clock);
            }
            let retried = again().await.unwrap_or_else(|e| panic!("{context}: the retry failed: {e}"));
            let replay = again().await.unwrap_or_else(|e| panic!("{context}: the replay failed: {e}"));
            assert!(!replay.fresh && replay.person.user.id == retried.person.user.id, "{context}: the replay answers the first outcome");
        }
        Then::Sweep => {
            let report = onboarding::service::sweep(db, directory, NOW).await.unwrap();
            if crashes(fault) {
                // The crashed lease is this very process's (the service leases as the process):
                // `any_other_owner` takes only other processes' leases, so it waits for expiry.
                assert_eq!(report.taken, 0, "{context}: the sweep took its own process's live lease: {report:?}");
                past_the_lease(clock);
                let expired = SweepOptions { any_other_owner: false, ..NOW };
                let report = onboarding::service::sweep(db, directory, expired).await.unwrap();
                assert!(report.taken == 1 && report.all_ended(), "{context}: {report:?}");
            } else {
                assert_eq!(report.taken, 0, "{context}: the failure ended the saga at once: {report:?}");
            }
        }
    }
    ended(app, &t.id, email, &context).await
}

async fn every_step(fault: Fault) {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let name = format!("{fault:?}").to_lowercase();
    let t = tenant(&app, &format!("Matrix {name}"), &format!("admin@{name}.matrix.example")).await;
    for step in STEPS {
        for then in [Then::Retry, Then::Sweep] {
            let email = format!("{step}-{then:?}@{name}.matrix.example").to_lowercase();
            let (state, code) = faulted(&app, &clock, &t, &email, step, fault, then).await;
            let expected = match then {
                Then::Retry => (SagaState::Completed, None),
                // A failure was undone at once, and so was a lost reply (but the commit's, which
                // the linked record settles); a crash is finished from what the saga sealed,
                // unless it died before it sealed anything.
                Then::Sweep => match fault {
                    Fault::Fail => (SagaState::Failed, Some("unavailable")),
                    Fault::LoseReply if step == "directory" => (SagaState::Completed, None),
                    Fault::LoseReply => (SagaState::Failed, Some("unavailable")),
                    Fault::Crash | Fault::CrashAfter if step == "record" => (SagaState::Failed, Some("abandoned")),
                    Fault::Crash | Fault::CrashAfter => (SagaState::Completed, None),
                },
            };
            assert_eq!((state, code.as_deref()), expected, "{step} x {fault:?} then {then:?}");
        }
    }
    assert!(all(&app, false, "sagas").await.iter().all(|s| s.get_str("state") != Ok("running")), "no saga left open");
}

#[tokio::test]
async fn an_invitation_failed_at_any_step_is_undone_at_once_and_a_retry_completes_it() {
    every_step(Fault::Fail).await;
}

#[tokio::test]
async fn an_invitation_that_lost_a_reply_at_any_step_is_settled_by_reading_and_ends_whole_or_nothing() {
    every_step(Fault::LoseReply).await;
}

#[tokio::test]
async fn an_invitation_crashed_at_any_step_is_finished_by_a_retry_or_the_sweeper() {
    every_step(Fault::Crash).await;
}

#[tokio::test]
async fn an_invitation_crashed_after_any_step_acted_is_finished_by_a_retry_or_the_sweeper() {
    every_step(Fault::CrashAfter).await;
}

fn post_user(app: &TestApp, token: &str, key: Option<&str>, email: &str) -> RequestBuilder {
    let builder =
        app.request(Method::POST, "/users", Some(token)).json(&json!({"email": email, "firstName": "Ada", "lastName": "Lovelace"}));
    match key {
        Some(k) => builder.header("Idempotency-Key", k),
        None => builder,
    }
}

#[tokio::test]
async fn a_keyless_re_invitation_rejoins_the_open_saga_of_its_address() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let t = tenant(&app, "Rejoin", "admin@rejoin.example").await;
    let email = "again@rejoin.example";
    // A keyless invitation crashed at its seat: its record is made, its saga open, its lease live.
    let at = At::new(users::invitation::SEAT, Fault::Crash);
    let reached = at.reached.clone();
    let crashed = {
        let (db, directory, ctx, inv) = (app.db.clone(), app.deps.directory.clone(), t.ctx.clone(), invitation(email));
        tokio::spawn(async move { users::service::invite(&db, directory.as_ref(), &ctx, None, &inv, &at).await.map(drop) })
    };
    reached.notified().await;
    crashed.abort();

    // Not the 409 of a member: the saga is in progress, and says when to try again.
    let (status, headers, body) = app.call(post_user(&app, &t.token, None, email)).await;
    assert_eq!(status, 409, "{body}");
    let retry_after: u64 = headers.get("retry-after").expect("a Retry-After").to_str().unwrap().parse().unwrap();
    assert!((1..=LEASE_TTL.as_secs()).contains(&retry_after), "{retry_after}");
    assert_eq!(body["message"].as_str(), Some(UsersError::InProgress(0).to_string().as_str()), "{body}");

    // Once the lease expired, the same re-invitation takes the saga over and finishes it.
    past_the_lease(&clock);
    let (status, _, body) = app.call(post_user(&app, &t.token, None, email)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["email"], email);
    assert_eq!(records_of(&app, &t.id, email).await.len(), 1, "one record");
    let sagas = sagas_of(&app, &t.id, email).await;
    assert_eq!(sagas.len(), 1, "one saga: {sagas:?}");
    assert_eq!(sagas[0].get_i32("attempts").unwrap(), 2, "taken once more by the re-invitation");
    assert_eq!(sagas[0].get_document("result").unwrap().get_object_id("userId").unwrap().to_hex(), body["data"]["id"].as_str().unwrap());
    assert_eq!(ended(&app, &t.id, email, "rejoined").await, (SagaState::Completed, None));

    // Now the address is a member: a third invitation is the tenant's own 409.
    let (status, _, body) = app.call(post_user(&app, &t.token, None, email)).await;
    assert_eq!((status, body["message"].as_str()), (409, Some(UsersError::AlreadyUser.to_string().as_str())));
}

/// A second admin of `t`, invited through the API (so that its record is linked and its address
/// claimed like any member's): its token.
async fn second_admin(app: &TestApp, t: &Tenant, email: &str) -> String {
    let role = raw_collection(&app.db, "roles").await.find_one(doc! {"tenantId": &t.id, "name": "admin"}).await.unwrap().unwrap();
    let body = json!({"email": email, "firstName": "Second", "lastName": "Admin", "roles": [role.get_object_id("_id").unwrap().to_hex()]});
    let (status, _, reply) = app.call(app.request(Method::POST, "/users", Some(&t.token)).json(&body)).await;
    assert_eq!(status, 201, "{reply}");
    app.member(email, &t.id).await
}

#[tokio::test]
async fn an_idempotency_key_on_post_users_replays_its_first_outcome_for_its_own_caller_only() {
    let app = spawn_app().await;
    let t = tenant(&app, "Keys", "admin@keys-users.example").await;
    let (first_email, other_email) = ("first@keys-users.example", "other@keys-users.example");
    let key = "users-key-0001";
    // A malformed key is refused before anything is written.
    let (status, _, body) = app.call(post_user(&app, &t.token, Some("short"), first_email)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    assert!(sagas_of(&app, &t.id, first_email).await.is_empty());

    let (status, _, first) = app.call(post_user(&app, &t.token, Some(key), first_email)).await;
    assert_eq!(status, 201, "{first}");
    let id = first["data"]["id"].as_str().unwrap().to_owned();
    let (status, _, replay) = app.call(post_user(&app, &t.token, Some(key), first_email)).await;
    assert_eq!((status, replay["data"]["id"].as_str()), (200, Some(id.as_str())), "{replay}");
    assert_eq!(replay["data"]["email"], first_email);
    let (status, _, reused) = app.call(post_user(&app, &t.token, Some(key), other_email)).await;
    assert_eq!(status, 422, "{reused}");
    assert!(records_of(&app, &t.id, other_email).await.is_empty(), "a 422 writes nothing");

    // Another admin's same key is another key: its other body is a new invitation, not a 422
    // that would tell it the first caller used that key.
    let second_admin = second_admin(&app, &t, "second-admin@keys-users.example").await;
    let (status, _, theirs) = app.call(post_user(&app, &second_admin, Some(key), other_email)).await;
    assert_eq!(status, 201, "{theirs}");
    assert_ne!(theirs["data"]["id"].as_str(), Some(id.as_str()));

    // An API key's same key and same body is not a replay of the admin's invitation either: it
    // is its own, and meets the member the first one made. (The key holds the user role's
    // permissions: nobody grants what they lack.)
    let (status, _, issued) = app
        .call(
            app.request(Method::POST, "/api-keys", Some(&t.token))
                .json(&json!({"name": "inviter", "permissions": ["read:users", "create:users", "read:profile", "update:profile"]})),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let api_key = issued["data"]["key"].as_str().unwrap();
    let body = json!({"email": first_email, "firstName": "Ada", "lastName": "Lovelace"});
    let (status, _, machine) = app.call(app.key_request(Method::POST, "/users", api_key).header("Idempotency-Key", key).json(&body)).await;
    assert_eq!(status, 409, "not a 200 replay of another caller's outcome: {machine}");
    assert!(machine.get("data").is_none(), "{machine}");

    assert_eq!(records_of(&app, &t.id, first_email).await.len(), 1);
    let states: Vec<String> = sagas_of(&app, &t.id, first_email).await.iter().map(|s| s.get_str("state").unwrap().to_owned()).collect();
    assert_eq!(states, ["completed", "failed"], "the admin's saga, then the API key's own");
    assert_whole_or_nothing(&app, "keys over http").await;
}

#[tokio::test]
async fn a_global_refusal_ends_its_saga_failed_and_leaves_nothing_behind() {
    let app = spawn_app().await;
    let a = tenant(&app, "Refusing", "admin@refusal-a.example").await;
    let b = tenant(&app, "Holding", "admin@refusal-b.example").await;
    let taken = "admin@refusal-b.example";
    let refusal = UsersError::EmailTaken.to_string();
    // Without a key, with one, and that key's replay: the one refusal, word for word.
    for (what, key) in [("keyless", None), ("keyed", Some("refusal-key-1")), ("replayed", Some("refusal-key-1"))] {
        let (status, _, body) = app.call(post_user(&app, &a.token, key, taken)).await;
        assert_eq!((status, body["message"].as_str()), (409, Some(refusal.as_str())), "{what}: {body}");
    }

    let sagas = sagas_of(&app, &a.id, taken).await;
    assert_eq!(sagas.len(), 2, "the keyless saga and the keyed one: {sagas:?}");
    for saga in &sagas {
        assert_eq!(saga.get_str("state"), Ok("failed"), "{saga}");
        let error = saga.get_document("error").unwrap();
        assert_eq!((error.get_str("code"), error.get_bool("retryable")), (Ok("email_taken"), Ok(false)), "{saga}");
        assert_eq!(error.get_str("message"), Ok(refusal.as_str()), "the saga holds the refusal, no address: {saga}");
        assert!(saga.get("sealed").is_none() && matches!(saga.get("leaseOwner"), None | Some(Bson::Null)), "{saga}");
    }
    assert!(records_of(&app, &a.id, taken).await.is_empty(), "no record in the refusing tenant");
    assert_eq!(seat_marks(&app, &a.id).await, Vec::<String>::new(), "no seat held");
    let tenant_a = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": &a.id}).await.unwrap().unwrap();
    let seats = tenant_a.get_document("counters").unwrap().get("seats").and_then(|s| s.as_i64().or(s.as_i32().map(i64::from)));
    assert_eq!(seats, Some(1), "the admin's seat alone");
    // The holder keeps its claim and its Cognito user.
    let address = Email::parse(taken).unwrap();
    let holder = app.db.keyring().unwrap().email_holder(&address).await.unwrap();
    assert_eq!(holder.as_ref().map(|t| t.as_str()), Some(b.id.as_str()));
    let user = app.deps.directory.get_user(&address).await.unwrap().expect("the holder's Cognito user");
    assert_eq!(user.tenant.as_deref(), Some(b.id.as_str()));
    assert!(all(&app, false, "sagas").await.iter().all(|s| s.get_str("state") != Ok("running")), "no saga left open");
    assert_whole_or_nothing(&app, "global refusal").await;
}
