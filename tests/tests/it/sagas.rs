//! The durable onboarding saga under injected faults, against real FerretDB and moto: every step
//! failed, its reply lost, or the saga stopped there as a crash would (its future dropped), then
//! a retry with the same key or a sweep. Once the saga has ended, what exists must be whole or
//! nothing: no Cognito user without its tenant, no claim or key set of an unregistered tenant,
//! counters equal to a recount, and never a second tenant.

use onboarding::error::OnboardingError;
use onboarding::input::Onboarding;
use onboarding::saga::STEPS;
use onboarding::service;
use serde_json::{json, Value};
use shared::clock::ManualClock;
use shared::ids::{Domain, Email};
use shared::plans::Plan;
use shared::saga::{Caller, Fault, IdempotencyKey, SagaState, Sagas, SweepOptions, LEASE_TTL};
use std::collections::BTreeSet;
use tenancy_tests::app::{spawn_app, spawn_app_with_clock, TestApp};
use tenancy_tests::faults::{crashes, At};
use tenancy_tests::invariants::{all, assert_whole_or_nothing, tenant_of};

fn input(n: &str) -> Onboarding {
    Onboarding {
        tenant_name: format!("Saga {n}"),
        domain: Some(Domain::parse(format!("saga-{n}.example")).unwrap()),
        plan: Plan::Basic,
        admin_email: Email::parse(format!("admin@saga-{n}.example")).unwrap(),
        admin_first_name: "Ada".into(),
        admin_last_name: "Lovelace".into(),
        customization: None,
    }
}

fn caller() -> Caller {
    Caller::Person { tenant: None, sub: "ops-sub".into() }
}

/// How a faulted onboarding is followed up.
#[derive(Debug, Clone, Copy)]
enum Then {
    /// The same caller retries with the same key (after the lease expired, for a crash).
    Retry,
    /// The sweeper takes it (as `local-api onboarding sweep --older-than 0`).
    Sweep,
}

/// One onboarding faulted at `step`, then followed up; returns the state its saga ended in.
async fn faulted(app: &TestApp, clock: &ManualClock, n: &str, step: &'static str, fault: Fault, then: Then) -> SagaState {
    let db = &app.db;
    let directory = app.deps.directory.as_ref();
    let key = IdempotencyKey::parse(&format!("key-{n}-0001")).unwrap();
    let who = caller();
    let onboarding = input(n);
    let at = At::new(step, fault);
    // The faulted attempt runs as another process, whose lease outlives it on a crash.
    let crashed = Sagas::with_owner(db, format!("crashed-{n}"));
    let first = {
        let (db, directory, onboarding, key, who, reached) =
            (db.clone(), app.deps.directory.clone(), onboarding.clone(), key.clone(), who.clone(), at.reached.clone());
        let task = tokio::spawn(async move {
            service::onboard(&db, directory.as_ref(), &crashed, Some((&who, &key)), &onboarding, &at).await.map(|o| o.saga.id)
        });
        if crashes(fault) {
            reached.notified().await;
            task.abort();
            None
        } else {
            Some(task.await.unwrap())
        }
    };
    let context = format!("{step} x {fault:?} then {then:?}");
    match (&first, fault) {
        (Some(Ok(_)), _) => assert_eq!(step, "register", "{context}: only a lost reply at the commit completes at once"),
        (Some(Err(OnboardingError::Replayed(f))), _) => assert!(f.retryable && f.status == 503, "{context}: {f:?}"),
        (Some(Err(e)), _) => panic!("{context}: {e}"),
        (None, _) => {}
    }
    match then {
        Then::Retry => {
            // A crash leaves a live lease: the retry meets a 409 until it expires.
            if crashes(fault) {
                let busy = service::onboard(db, directory, &Sagas::new(db), Some((&who, &key)), &onboarding, &shared::saga::NoFaults).await;
                assert!(matches!(busy, Err(OnboardingError::InProgress(_))), "{context}: {busy:?}");
                clock.advance(LEASE_TTL + std::time::Duration::from_secs(1));
            }
            let retried = service::onboard(db, directory, &Sagas::new(db), Some((&who, &key)), &onboarding, &shared::saga::NoFaults).await;
            let outcome = retried.unwrap_or_else(|e| panic!("{context}: the retry failed: {e}"));
            let replay = service::onboard(db, directory, &Sagas::new(db), Some((&who, &key)), &onboarding, &shared::saga::NoFaults).await;
            let replay = replay.unwrap_or_else(|e| panic!("{context}: the replay failed: {e}"));
            assert!(
                !replay.fresh && replay.tenant.tenant_id == outcome.tenant.tenant_id,
                "{context}: the replay answers the first outcome"
            );
        }
        Then::Sweep => {
            let options = SweepOptions { older_than: std::time::Duration::ZERO, any_other_owner: true, limit: 100 };
            let report = service::sweep(db, directory, options).await.unwrap();
            assert!(report.all_ended(), "{context}: {report:?}");
        }
    }
    assert_whole_or_nothing(app, &context).await;
    let sagas = all(app, false, "sagas").await;
    let mine =
        sagas.iter().filter(|s| s.get_document("params").ok().and_then(|p| p.get_str("tenantName").ok()) == Some(&format!("Saga {n}")));
    let states: Vec<String> = mine.map(|s| s.get_str("state").unwrap().to_owned()).collect();
    assert_eq!(states.len(), 1, "{context}: one saga per key: {states:?}");
    match states[0].as_str() {
        "completed" => SagaState::Completed,
        "failed" => SagaState::Failed,
        other => panic!("{context}: the saga is still {other}"),
    }
}

async fn every_step(fault: Fault) {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    for (i, step) in STEPS.iter().enumerate() {
        for (j, then) in [Then::Retry, Then::Sweep].into_iter().enumerate() {
            let n = format!("{}{i}{j}", format!("{fault:?}").to_lowercase());
            let state = faulted(&app, &clock, &n, step, fault, then).await;
            let registered = all(&app, false, "tenants").await.iter().any(|t| tenant_of(t, "name") == format!("Saga {n}"));
            match then {
                Then::Retry => assert!(state == SagaState::Completed && registered, "{step} x {fault:?}: a retry completes"),
                Then::Sweep => {
                    // A failure was undone at once, and so was a lost reply (but the commit's,
                    // which the registry settles); a crash is finished from what the saga sealed,
                    // unless it died before it sealed anything.
                    let finished = match fault {
                        Fault::Fail => false,
                        Fault::LoseReply => *step == "register",
                        Fault::Crash | Fault::CrashAfter => *step != "keys",
                    };
                    let expected = if finished { SagaState::Completed } else { SagaState::Failed };
                    assert_eq!(state, expected, "{step} x {fault:?} then a sweep");
                    assert_eq!(registered, finished, "{step} x {fault:?}: the registry matches the saga");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_failure_at_any_step_is_undone_at_once_and_a_retry_or_sweep_ends_whole_or_nothing() {
    every_step(Fault::Fail).await;
}

#[tokio::test]
async fn a_lost_reply_at_any_step_is_settled_by_reading_and_ends_whole_or_nothing() {
    every_step(Fault::LoseReply).await;
}

#[tokio::test]
async fn a_crash_at_any_step_is_finished_by_a_retry_or_the_sweeper() {
    every_step(Fault::Crash).await;
}

#[tokio::test]
async fn a_crash_after_any_step_acted_and_before_it_was_recorded_is_finished_by_a_retry_or_the_sweeper() {
    every_step(Fault::CrashAfter).await;
}

fn onboarding_body(n: &str) -> Value {
    json!({"tenantName": format!("Http {n}"), "domain": format!("http-{n}.example"), "adminEmail": format!("admin@http-{n}.example"),
        "adminFirstName": "Grace", "adminLastName": "Hopper", "customization": {"theme": "dark"}})
}

#[tokio::test]
async fn an_idempotency_key_replays_its_first_outcome_and_refuses_another_body() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    let post = |key: Option<&str>, body: &Value| {
        let builder = app.request(http::Method::POST, "/onboarding", Some(&token)).json(body);
        match key {
            Some(k) => builder.header("Idempotency-Key", k),
            None => builder,
        }
    };
    // The key is checked before the body: a keyless or malformed one is a 400 and writes nothing.
    for key in [None, Some("short"), Some("naïve-key-but-long")] {
        let (status, _, body) = app.call(post(key, &json!({"not": "even valid"}))).await;
        assert_eq!(status, 400, "{key:?}: {body}");
        assert!(body["message"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    }
    assert!(all(&app, false, "sagas").await.is_empty());
    let (status, _, first) = app.call(post(Some("first-key-1"), &onboarding_body("a"))).await;
    assert_eq!(status, 201, "{first}");
    let id = first["data"]["onboardingId"].as_str().unwrap().to_owned();
    assert_eq!(first["data"]["settings"]["customization"]["theme"], "dark");
    let (status, _, again) = app.call(post(Some("first-key-1"), &onboarding_body("a"))).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["data"], first["data"], "the replay answers the first result");
    let (status, _, other) = app.call(post(Some("first-key-1"), &onboarding_body("b"))).await;
    assert_eq!(status, 422, "{other}");
    // The same key from another caller is another key: a new onboarding, not a replay.
    let other_ops = app.token("ops2@platform.test", None, &[shared::identity::SUPERADMIN_GROUP]).await;
    let (status, _, theirs) = app
        .call(
            app.request(http::Method::POST, "/onboarding", Some(&other_ops))
                .header("Idempotency-Key", "first-key-1")
                .json(&onboarding_body("c")),
        )
        .await;
    assert_eq!(status, 201, "{theirs}");
    assert_ne!(theirs["data"]["onboardingId"], first["data"]["onboardingId"]);
    // Its state, with no personal data.
    let (status, _, state) = app.call(app.request(http::Method::GET, &format!("/onboarding/{id}"), Some(&token))).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["data"]["state"], "completed");
    assert_eq!(state["data"]["tenantId"], first["data"]["tenantId"]);
    assert_eq!(state["data"]["steps"].as_array().unwrap().len(), STEPS.len());
    let text = state.to_string();
    assert!(!text.contains("admin@http-a") && !text.contains("Grace"), "{text}");
    for missing in ["/onboarding/sg_doesnotexist0000", "/onboarding/nope"] {
        let (status, _, _) = app.call(app.request(http::Method::GET, missing, Some(&token))).await;
        assert!(status == 404 || status == 400, "{missing}: {status}");
    }
    // A member is no superadmin.
    let (admin, _) = app.tenant_with_admin("basic", "member@http-m.example").await;
    let (status, _, _) = app.call(app.request(http::Method::GET, &format!("/onboarding/{id}"), Some(&admin))).await;
    assert_eq!(status, 403);
    assert_whole_or_nothing(&app, "http").await;
}

#[tokio::test]
async fn twenty_concurrent_calls_with_one_key_make_one_tenant_and_no_5xx() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    let body = onboarding_body("burst");
    let calls = (0..20).map(|_| {
        app.call(app.request(http::Method::POST, "/onboarding", Some(&token)).header("Idempotency-Key", "burst-key-0001").json(&body))
    });
    let answers = futures_util::future::join_all(calls).await;
    let mut tenants = BTreeSet::new();
    for (status, headers, reply) in &answers {
        match status {
            200 | 201 => {
                tenants.insert(reply["data"]["tenantId"].as_str().unwrap().to_owned());
            }
            409 => assert!(headers.contains_key("retry-after"), "an in-progress 409 says when to retry: {reply}"),
            other => panic!("{other}: {reply}"),
        }
    }
    assert_eq!(answers.iter().filter(|(s, _, _)| *s == 201).count(), 1, "one first completion");
    assert!(tenants.len() <= 1, "{tenants:?}");
    assert_eq!(all(&app, false, "tenants").await.len(), 1);
    assert_eq!(all(&app, false, "sagas").await.len(), 1, "one saga");
    assert_eq!(app.cognito_users().await.iter().filter(|(_, t)| t.is_some()).count(), 1, "one Cognito user");
    assert_whole_or_nothing(&app, "burst").await;
}

#[tokio::test]
async fn post_tenants_is_the_same_saga_and_takes_an_optional_key() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    let body = json!({"name": "Brief", "adminEmail": "admin@brief.example", "domain": "brief.example"});
    let post = |key: Option<&str>| {
        let b = app.request(http::Method::POST, "/tenants", Some(&token)).json(&body);
        match key {
            Some(k) => b.header("Idempotency-Key", k),
            None => b,
        }
    };
    let (status, _, first) = app.call(post(Some("brief-key-01"))).await;
    assert_eq!(status, 201, "{first}");
    assert!(first["data"].get("onboardingId").is_none(), "today's contract: the tenant view alone");
    let (status, _, replay) = app.call(post(Some("brief-key-01"))).await;
    assert_eq!((status, &replay["data"]["tenantId"]), (200, &first["data"]["tenantId"]));
    // Without a key a retry is not safe: it meets the domain it claimed itself.
    let (status, _, _) = app.call(post(None)).await;
    assert_eq!(status, 409);
    assert_eq!(all(&app, false, "tenants").await.len(), 1);
    assert_whole_or_nothing(&app, "post tenants").await;
}
