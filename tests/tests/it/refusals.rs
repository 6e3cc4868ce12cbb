//! The audit of refusals cannot be blinded (docs/ARCHITECTURE.md §13): each source of refusals
//! has its own budget (a key id, a source address, an authenticated actor), dropped entries are
//! counted in one summary entry per minute and source, stored request fields are bounded, and an
//! unknown key id costs what a known key with a wrong secret costs.

use authorizer::{Authorizer, Verdict};
use mongodb::bson::{doc, oid::ObjectId, Document};
use reqwest::Method;
use serde_json::json;
use shared::clock::ManualClock;
use shared::db::REFUSALS_PER_MINUTE;
use shared::http::RequestMeta;
use std::sync::atomic::Ordering::SeqCst;
use tenancy_tests::app::{spawn_app_with_clock, TestApp};
use tenancy_tests::raw_collection;

/// Issues a key as `token`: its id and its whole key.
async fn issue(app: &TestApp, token: &str, name: &str) -> (String, String) {
    let body = json!({"name": name, "permissions": ["read:users"]});
    let (status, _, reply) = app.call(app.request(Method::POST, "/api-keys", Some(token)).json(&body)).await;
    assert_eq!(status, 201, "{reply}");
    (reply["data"]["id"].as_str().unwrap().to_owned(), reply["data"]["key"].as_str().unwrap().to_owned())
}

/// The same key id with another well-formed secret.
fn wrong_secret(key: &str) -> String {
    format!("{}{}", &key[..key.len() - 4], if key.ends_with("AAAA") { "BBBB" } else { "AAAA" })
}

async fn entries(app: &TestApp, filter: Document) -> Vec<Document> {
    use futures_util::TryStreamExt;
    raw_collection(&app.db, "auditLogs").await.find(filter).await.unwrap().try_collect().await.unwrap()
}

fn meta(ip: &str) -> RequestMeta {
    RequestMeta { request_id: ObjectId::new().to_hex(), ip: ip.into(), user_agent: "probe".into() }
}

/// Asks the authorizer directly, as API Gateway would from `ip`: refused, whatever the budgets.
async fn refused(authorizer: &Authorizer, key: &str, ip: &str) {
    let header = |name: &str| (name == "x-api-key").then(|| key.to_owned());
    let verdict = authorizer.authorize(&header, &meta(ip)).await.expect("a decision");
    assert!(matches!(verdict, Verdict::Unauthorized(_)), "{verdict:?}");
}

#[tokio::test]
async fn a_flood_of_bad_secrets_for_one_key_cannot_hide_an_insiders_cross_tenant_403() {
    // A still clock: the flood and the insider's call fall in the same minute.
    let app = spawn_app_with_clock(ManualClock::starting_now()).await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@blind.example").await;
    let (_, other) = app.tenant_with_admin("basic", "admin@elsewhere.example").await;
    let (_, key) = issue(&app, &admin, "public").await;
    let bad = wrong_secret(&key);
    let flood = (0..2 * REFUSALS_PER_MINUTE).map(|_| app.call(app.key_request(Method::GET, "/users", &bad)));
    assert!(futures_util::future::join_all(flood).await.iter().all(|r| r.0 == 401));
    let (_, insider) = app.seed_user(&tenant, "insider@blind.example", "user", "active").await;
    let (status, _, _) = app.call(app.request(Method::GET, &format!("/tenants/{other}"), Some(&insider))).await;
    assert_eq!(status, 403);
    let cross = entries(&app, doc! {"tenantId": &tenant, "action": "access.cross-tenant"}).await;
    assert_eq!(cross.len(), 1, "the insider's refusal is audited whatever the flood spent");
    assert_eq!(cross[0].get_document("details").unwrap().get_str("namedTenantId").unwrap(), other);
    let rejected = entries(&app, doc! {"tenantId": &tenant, "action": "access.key-rejected"}).await;
    assert_eq!(rejected.len() as i64, REFUSALS_PER_MINUTE, "the flood's own budget, and no more");
}

#[tokio::test]
async fn a_flood_from_one_address_cannot_spend_another_addresss_budget() {
    let app = spawn_app_with_clock(ManualClock::starting_now()).await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@addresses.example").await;
    let (_, flooded) = issue(&app, &admin, "flooded").await;
    let (other_id, other) = issue(&app, &admin, "other").await;
    let authorizer = Authorizer::new(app.db.clone(), None);
    for _ in 0..2 * REFUSALS_PER_MINUTE {
        refused(&authorizer, &wrong_secret(&flooded), "198.51.100.7").await;
    }
    // The flooding address has spent its own budget: even another key's refusal from it is
    // only counted. Another address still has all of its room.
    refused(&authorizer, &wrong_secret(&other), "198.51.100.7").await;
    let of_other = doc! {"tenantId": &tenant, "action": "access.key-rejected", "resourceId": &other_id};
    assert_eq!(entries(&app, of_other.clone()).await.len(), 0);
    refused(&authorizer, &wrong_secret(&other), "203.0.113.9").await;
    let audited = entries(&app, of_other).await;
    assert_eq!(audited.len(), 1, "another address's refusal is audited");
    assert_eq!(audited[0].get_str("ip").unwrap(), "203.0.113.9");
    // X-Forwarded-For is the caller's to write: the address is the gateway's `sourceIp`.
    let (_, user) = app.seed_user(&tenant, "user@addresses.example", "user", "active").await;
    let forged = app.request(Method::GET, "/roles", Some(&user)).header("x-forwarded-for", "192.0.2.1");
    assert_eq!(app.call(forged).await.0, 403);
    let denied = entries(&app, doc! {"tenantId": &tenant, "action": "access.denied"}).await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].get_str("ip").unwrap(), "127.0.0.1");
}

#[tokio::test]
async fn dropped_refusals_are_counted_in_one_summary_entry_per_minute_and_source() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@summary.example").await;
    let (key_id, key) = issue(&app, &admin, "probed").await;
    let authorizer = Authorizer::new(app.db.clone(), None);
    let extra = 7;
    for _ in 0..REFUSALS_PER_MINUTE + extra {
        refused(&authorizer, &wrong_secret(&key), "198.51.100.20").await;
    }
    let summaries = entries(&app, doc! {"tenantId": &tenant, "action": "access.refusals-dropped"}).await;
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    let details = summaries[0].get_document("details").unwrap();
    assert_eq!(details.get_str("source").unwrap(), "ip:198.51.100.20");
    assert_eq!(details.get_i64("dropped").unwrap(), extra, "every dropped refusal is counted");
    assert_eq!(summaries[0].get_str("resource").unwrap(), "access");
    // The key's own budget is spent too: from a fresh address its refusals now count under it.
    refused(&authorizer, &wrong_secret(&key), "203.0.113.20").await;
    let by_key =
        entries(&app, doc! {"tenantId": &tenant, "action": "access.refusals-dropped", "details.source": format!("key:{key_id}")}).await;
    assert_eq!(by_key.len(), 1);
    assert_eq!(by_key[0].get_document("details").unwrap().get_i64("dropped").unwrap(), 1);
    // A member's 403s have a budget of their own, summarised the same way.
    let (_, user) = app.seed_user(&tenant, "user@summary.example", "user", "active").await;
    for _ in 0..REFUSALS_PER_MINUTE + 3 {
        assert_eq!(app.call(app.request(Method::GET, "/roles", Some(&user))).await.0, 403);
    }
    assert_eq!(entries(&app, doc! {"tenantId": &tenant, "action": "access.denied"}).await.len() as i64, REFUSALS_PER_MINUTE);
    let summaries = entries(&app, doc! {"tenantId": &tenant, "action": "access.refusals-dropped"}).await;
    let by_actor: Vec<_> =
        summaries.iter().filter(|e| e.get_document("details").unwrap().get_str("source").unwrap().starts_with("actor:")).collect();
    assert_eq!(by_actor.len(), 1);
    assert_eq!(by_actor[0].get_document("details").unwrap().get_i64("dropped").unwrap(), 3);
    // The next minute: room again, and a new summary once it is spent.
    clock.advance(std::time::Duration::from_secs(60));
    refused(&authorizer, &wrong_secret(&key), "198.51.100.20").await;
    assert_eq!(entries(&app, doc! {"tenantId": &tenant, "action": "access.key-rejected"}).await.len() as i64, REFUSALS_PER_MINUTE + 1);
    // The summaries are entries like any other: listed by the audit API, in the closed list.
    let (status, _, listed) = app.call(app.request(Method::GET, "/audit-logs?action=access.refusals-dropped", Some(&admin))).await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed["data"]["auditLogs"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|e| e["details"]["dropped"].as_i64().is_some_and(|n| n > 0)), "{listed:?}");
}

/// Anyone can name a new source of refusals (a made-up key id, another address), so each
/// budget's document ends a minute after its last counted minute and the audit retention job
/// deletes it: `refusalWindows` holds the sources of the last minutes, not of all time.
#[tokio::test]
async fn refusal_budgets_of_past_minutes_are_deleted_by_the_retention_job() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_with_clock(clock.clone()).await;
    let authorizer = Authorizer::new(app.db.clone(), None);
    let made_up: Vec<String> = (0..10).map(|_| format!("tk_{}_{}", ObjectId::new().to_hex(), "W".repeat(43))).collect();
    for (i, key) in made_up.iter().enumerate() {
        refused(&authorizer, key, &format!("198.51.100.{}", 60 + i)).await;
    }
    let windows = raw_collection(&app.db, "refusalWindows").await;
    let sources = doc! {"_id": {"$regex": "^(key|ip):"}};
    assert_eq!(windows.count_documents(sources.clone()).await.unwrap(), 20, "a key id's and an address's budget each");
    // The next minute: still within their end, nothing goes.
    clock.advance(std::time::Duration::from_secs(60));
    let report = audit::retention::run(&app.db, Default::default()).await.unwrap();
    assert_eq!(report.refusal_budgets_deleted, 0, "{report:?}");
    // One source is refused again: its two budgets live on; the other 18 are past their end.
    refused(&authorizer, &made_up[0], "198.51.100.60").await;
    clock.advance(std::time::Duration::from_secs(60));
    let report = audit::retention::run(&app.db, Default::default()).await.unwrap();
    assert_eq!(report.refusal_budgets_deleted, 18, "{report:?}");
    let left: Vec<String> = {
        use futures_util::TryStreamExt;
        let found: Vec<Document> = windows.find(sources).await.unwrap().try_collect().await.unwrap();
        found.iter().map(|d| d.get_str("_id").unwrap().to_owned()).collect()
    };
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"ip:198.51.100.60".to_owned()), "{left:?}");
}

#[tokio::test]
async fn long_user_agents_and_reasons_are_stored_bounded() {
    let app = spawn_app_with_clock(ManualClock::starting_now()).await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@bounded.example").await;
    let (_, key) = issue(&app, &admin, "bounded").await;
    let (_, user) = app.seed_user(&tenant, "user@bounded.example", "user", "active").await;
    let (status, _, _) = app.call(app.request(Method::GET, "/roles", Some(&user)).header("user-agent", "A".repeat(8000))).await;
    assert_eq!(status, 403);
    // Multi-byte characters (which an HTTP header cannot carry as text, but an event can): the
    // cut must fall on a character boundary.
    let agent = "é".repeat(4000);
    let authorizer = Authorizer::new(app.db.clone(), None);
    let header = |name: &str| match name {
        "x-api-key" => Some(wrong_secret(&key)),
        _ => None,
    };
    let long = RequestMeta { request_id: "r".repeat(5000), ip: "198.51.100.30".into(), user_agent: agent.clone() };
    assert!(matches!(authorizer.authorize(&header, &long).await.unwrap(), Verdict::Unauthorized(_)));
    let stored = entries(&app, doc! {"tenantId": &tenant, "resource": "access"}).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    for entry in &stored {
        let agent = entry.get_str("userAgent").unwrap();
        assert_eq!(agent.chars().count(), shared::audit::MAX_USER_AGENT_CHARS, "{}", entry.get_str("action").unwrap());
        assert!(agent.chars().all(|c| c == 'é') || agent.chars().all(|c| c == 'A'), "{agent}");
        assert!(entry.get_str("requestId").unwrap().chars().count() <= shared::audit::MAX_ID_CHARS);
        for (_, value) in entry.get_document("details").unwrap() {
            if let Some(text) = value.as_str() {
                assert!(text.chars().count() <= shared::audit::MAX_DETAIL_CHARS);
            }
        }
    }
}

/// The known-versus-unknown id oracle (docs/ARCHITECTURE.md §13): up to the refusal both take the same
/// database round trips; the one difference is a known key's audit entry, inside its budgets
/// (the tenant's retention and the insert). Past a spent budget they cost the same again. Also
/// prints the median time of each path over 200 calls (run with `--nocapture` to see them).
#[tokio::test]
async fn an_unknown_key_id_costs_what_a_known_key_with_a_wrong_secret_costs() {
    let (db, commands) = shared::Db::connect_counting(&tenancy_tests::fresh_db_config()).await.unwrap();
    let db = tenancy_tests::with_keyring(db).await.with_clock(ManualClock::starting_now());
    migrations::setup(&db).await.unwrap();
    db.flavor().await.unwrap();
    let deps = shared::http::Deps::new(db.clone()).with_directory(tenancy_tests::test_directory().await);
    local_api::fixtures::seed_events_tenant(&deps).await.unwrap();
    let authorizer = Authorizer::new(db.clone(), None);
    let secret = "W".repeat(43);
    let known = format!("tk_{}_{secret}", local_api::fixtures::API_KEY);
    let unknown = || format!("tk_{}_{secret}", ObjectId::new().to_hex());
    let count = |key: String, ip: &'static str| {
        let (authorizer, commands) = (&authorizer, commands.clone());
        async move {
            commands.store(0, SeqCst);
            refused(authorizer, &key, ip).await;
            commands.load(SeqCst)
        }
    };
    // Fresh budgets: the key read, the address's budget, the key id's budget; a known key adds
    // its entry (the tenant's retention, the insert).
    let unknown_cost = count(unknown(), "198.51.100.40").await;
    let known_cost = count(known.clone(), "198.51.100.41").await;
    assert_eq!(unknown_cost, 3, "the key read and two budgets");
    assert_eq!(known_cost, unknown_cost + 2, "only the audit entry differs");
    // Spend every budget of both (one address, the known key's and the unknown id's), then
    // compare their steady state: one read, and one write noting the drop.
    let spent = unknown();
    for _ in 0..REFUSALS_PER_MINUTE {
        refused(&authorizer, &known, "198.51.100.42").await;
        refused(&authorizer, &spent, "198.51.100.43").await;
    }
    // Once each past the spend, so that this process has seen each budget full (a round trip
    // for both) and made the known key's summary entries (whose first drop also reads the
    // tenant's retention).
    refused(&authorizer, &known, "198.51.100.42").await;
    refused(&authorizer, &spent, "198.51.100.43").await;
    refused(&authorizer, &known, "198.51.100.44").await;
    refused(&authorizer, &spent, "198.51.100.45").await;
    let (k, u) = (count(known.clone(), "198.51.100.42").await, count(spent.clone(), "198.51.100.43").await);
    assert_eq!(k, u, "past a spent address budget");
    let (k, u) = (count(known.clone(), "198.51.100.44").await, count(spent.clone(), "198.51.100.45").await);
    assert_eq!(k, u, "past a spent key budget, from an address with room");

    // Measured, not asserted: wall-clock medians are too noisy for a gate.
    let median = |mut samples: Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    for (label, fresh_address) in [("from one address", false), ("each from a fresh address", true)] {
        let mut times: [Vec<f64>; 2] = [vec![], vec![]];
        for i in 0..400_u32 {
            let (which, key) = if i % 2 == 0 { (0, known.clone()) } else { (1, unknown()) };
            let ip = if fresh_address { format!("10.{}.{}.{}", u8::from(fresh_address), i / 256, i % 256) } else { "198.51.100.46".into() };
            let started = std::time::Instant::now();
            refused(&authorizer, &key, &ip).await;
            times[which].push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let [known_ms, unknown_ms] = times.map(median);
        println!("median of 200 refusals {label}: known id with a wrong secret {known_ms:.3} ms; unknown id {unknown_ms:.3} ms");
        assert!(known_ms.is_finite() && unknown_ms.is_finite());
    }
}
