//! Faults (docs/ARCHITECTURE.md §6, §7), against the real FerretDB through a fault proxy
//! (`tenancy_tests::proxy::FaultProxy`) that can refuse connections or lose one write's reply,
//! so that no test stops the FerretDB the parallel suites share.

use mongodb::bson::{doc, Document};
use reqwest::Method;
use serde_json::{json, Value};
use shared::db::{DbError, ServerState};
use shared::pii::{AwsKms, KeyWrapper, PiiError};
use std::time::Duration;
use tenancy_tests::app::{spawn_app_at, TestApp};
use tenancy_tests::proxy::FaultProxy;

/// A raw client through `proxy`, failing fast.
async fn client_through(proxy: &FaultProxy) -> mongodb::Client {
    let mut options = mongodb::options::ClientOptions::parse(proxy.uri()).await.unwrap();
    options.server_selection_timeout = Some(std::time::Duration::from_secs(2));
    options.connect_timeout = Some(std::time::Duration::from_secs(2));
    mongodb::Client::with_options(options).unwrap()
}

#[tokio::test]
async fn the_fault_proxy_forwards_refuses_and_loses_one_named_reply() {
    let proxy = FaultProxy::start(&tenancy_tests::mongodb_uri()).await;
    let client = client_through(&proxy).await;
    let things = client.database(&tenancy_tests::unique_name("proxy")).collection::<Document>("things");
    things.insert_one(doc! {"_id": 1, "n": 0}).await.expect("forwarded");

    // The named command is forwarded and applied, but its caller never hears so.
    proxy.drop_reply_of_next("findAndModify");
    let lost = things.find_one_and_update(doc! {"_id": 1}, doc! {"$inc": {"n": 1}}).await;
    assert!(lost.is_err(), "the reply should be lost: {lost:?}");
    assert_eq!(proxy.replies_dropped(), 1);
    assert!(!proxy.drop_pending());
    let direct = mongodb::Client::with_uri_str(tenancy_tests::mongodb_uri()).await.unwrap();
    let stored =
        direct.database(things.namespace().db.as_str()).collection::<Document>("things").find_one(doc! {"_id": 1}).await.unwrap().unwrap();
    assert_eq!(stored.get_i32("n").unwrap(), 1, "the write whose reply was lost happened");

    // Refusing: every call fails, none reaches the server.
    proxy.set_refusing(true);
    let refused = things.find_one(doc! {"_id": 1}).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(proxy.refused() > 0);

    // Forwarding again: calls succeed.
    proxy.set_refusing(false);
    let again = things.find_one(doc! {"_id": 1}).await.expect("forwarded again");
    assert!(again.is_some());
    direct.database(things.namespace().db.as_str()).drop().await.unwrap();
}

/// A tenant on the enterprise plan (no quota in the way) through `app`, and its admin's token,
/// admitted once so that its membership is cached: a warm call's first round trip is then the
/// call count, a write under FerretDB's write serialisation.
async fn warm_admin(app: &TestApp) -> (String, String) {
    let (admin, tenant) = app.tenant_with_admin("enterprise", &format!("admin-{}@faults.test", tenancy_tests::unique_name("a"))).await;
    let (status, _, body) = app.call(app.request(Method::GET, "/roles", Some(&admin))).await;
    assert_eq!(status, 200, "{body}");
    (admin, tenant)
}

fn new_role(n: usize) -> Value {
    json!({"name": format!("Role {n}"), "permissions": ["read:users"]})
}

#[tokio::test]
async fn with_the_database_unreachable_every_write_is_a_503_at_once_and_none_waits_on_the_lock() {
    let proxy = FaultProxy::start(&tenancy_tests::mongodb_uri()).await;
    let app = spawn_app_at(&proxy.uri()).await;
    let (admin, _) = warm_admin(&app).await;
    assert_eq!(app.db.server_state(), ServerState::Available);

    // The outage: the driver learns it from its own monitoring (a cut connection, a failed
    // heartbeat), here provoked by one command on a cut connection.
    proxy.set_refusing(true);
    let _ = app.db.ping().await;
    tokio::time::timeout(Duration::from_secs(30), app.db.until_server_state(ServerState::Unavailable))
        .await
        .expect("the driver's monitoring reports the outage");

    // Ten writes at once: each is refused before the write serialisation, none reaches the
    // server, and so none can wait behind another.
    let taken = app.db.serial_taken();
    let forwarded = proxy.accepted();
    let calls = (0..10).map(|n| app.call(app.request(Method::POST, "/roles", Some(&admin)).json(&new_role(n))));
    for (status, headers, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 503, "{body}");
        assert!(headers.contains_key("retry-after"), "a 503 without Retry-After: {headers:?}");
        assert_eq!(body["error"], "Service Unavailable");
    }
    assert_eq!(app.db.serial_taken(), taken, "a call took the write serialisation during the outage");
    assert_eq!(proxy.accepted(), forwarded, "a call reached the database during the outage");

    // The database back: the monitor sees it (a refused call wakes it), and writes succeed.
    proxy.set_refusing(false);
    let _ = app.call(app.request(Method::POST, "/roles", Some(&admin)).json(&new_role(100))).await;
    tokio::time::timeout(Duration::from_secs(30), app.db.until_server_state(ServerState::Available))
        .await
        .expect("the driver's monitoring reports the recovery");
    let (status, _, body) = app.call(app.request(Method::POST, "/roles", Some(&admin)).json(&new_role(101))).await;
    assert_eq!(status, 201, "{body}");
    assert!(app.db.serial_taken() > taken);
}

#[tokio::test]
async fn a_write_right_after_a_blip_takes_the_monitor_s_fresh_look_instead_of_a_503() {
    let proxy = FaultProxy::start(&tenancy_tests::mongodb_uri()).await;
    let app = spawn_app_at(&proxy.uri()).await;
    let (admin, _) = warm_admin(&app).await;

    // One cut connection marks the server unknown; the server itself is back at once.
    proxy.set_refusing(true);
    let _ = app.db.ping().await;
    tokio::time::timeout(Duration::from_secs(30), app.db.until_server_state(ServerState::Unavailable))
        .await
        .expect("the driver's monitoring reports the cut");
    proxy.set_refusing(false);

    // The write asks the monitor to look again (its next heartbeat would come only seconds
    // later), finds the server, and goes through: a blip is no refusal.
    let (status, _, body) = app.call(app.request(Method::POST, "/roles", Some(&admin)).json(&new_role(0))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(app.db.server_state(), ServerState::Available);
}

/// `clients` concurrent clients, `each` calls apiece, half reads and half writes, against the
/// local API with the database up: the statuses that were not a success, and the p99 in ms.
async fn mixed_load(app: &TestApp, admin: &str, tenant: &str, clients: usize, each: usize) -> (Vec<u16>, f64) {
    let customization = format!("/tenants/{tenant}/settings/customization");
    let client = |c: usize| {
        let customization = customization.clone();
        async move {
            let mut outcomes = Vec::with_capacity(each);
            for i in 0..each {
                let request = match (c + i) % 4 {
                    0 => app.request(Method::GET, "/roles", Some(admin)),
                    1 => app.request(Method::GET, "/users/me", Some(admin)),
                    2 => app
                        .request(Method::PATCH, &customization, Some(admin))
                        .json(&json!({"primaryColor": format!("#{:06x}", c * 1000 + i)})),
                    _ => app
                        .request(Method::PATCH, &customization, Some(admin))
                        .json(&json!({"theme": if i % 2 == 0 { "light" } else { "dark" }})),
                };
                let started = std::time::Instant::now();
                let status = request.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                outcomes.push((status, started.elapsed().as_secs_f64() * 1000.0));
            }
            outcomes
        }
    };
    let outcomes: Vec<(u16, f64)> = futures_util::future::join_all((0..clients).map(client)).await.into_iter().flatten().collect();
    let errors = outcomes.iter().map(|(s, _)| *s).filter(|s| !(200..300).contains(s)).collect();
    let mut latencies: Vec<f64> = outcomes.iter().map(|(_, ms)| *ms).collect();
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies[(latencies.len() * 99).div_ceil(100).saturating_sub(1)];
    (errors, p99)
}

#[tokio::test]
async fn a_mixed_load_at_50_and_200_clients_with_the_database_up_sheds_nothing() {
    let app = tenancy_tests::app::spawn_app().await;
    let (admin, tenant) = warm_admin(&app).await;
    // Bounded: 400 and 800 calls. The latencies are reported, not asserted (shared machines).
    for (clients, each) in [(50, 8), (200, 4)] {
        let (errors, p99) = mixed_load(&app, &admin, &tenant, clients, each).await;
        println!("mixed load: {clients} clients, {} calls, {} errors, p99 {p99:.0} ms", clients * each, errors.len());
        assert!(errors.is_empty(), "{clients} clients: statuses {errors:?}");
        assert_eq!(app.db.server_state(), ServerState::Available);
    }
}

/// Every operation of openapi.json, its path parameters filled (the tenant's id, else a
/// made-up id), with `{}` as the body of those that take one.
fn every_operation(tenant: &str) -> Vec<(Method, String, bool)> {
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json")).unwrap()).unwrap();
    let made_up = mongodb::bson::oid::ObjectId::new().to_hex();
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else { continue };
            if !matches!(method, Method::GET | Method::POST | Method::PATCH | Method::PUT | Method::DELETE) {
                continue;
            }
            let mut filled = path.replace("{tenantId}", tenant);
            for name in ["roleId", "userId", "keyId", "auditLogId"] {
                filled = filled.replace(&format!("{{{name}}}"), &made_up);
            }
            operations.push((method, filled, operation.get("requestBody").is_some()));
        }
    }
    operations
}

#[tokio::test]
async fn during_a_database_outage_no_route_answers_500_and_every_503_says_when_to_retry() {
    let proxy = FaultProxy::start(&tenancy_tests::mongodb_uri()).await;
    let app = spawn_app_at(&proxy.uri()).await;
    let (admin, tenant) = warm_admin(&app).await;
    let superadmin = app.superadmin().await;
    let (status, _, reply) =
        app.call(app.request(Method::POST, "/api-keys", Some(&admin)).json(&json!({"name": "CI", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 201, "{reply}");
    let key = reply["data"]["key"].as_str().unwrap().to_owned();
    assert_eq!(app.call(app.key_request(Method::GET, "/users", &key)).await.0, 200);
    // A member never admitted in this process: its admission must read the database.
    let (_, cold) = app.seed_user(&tenant, &format!("cold-{}@faults.test", tenancy_tests::unique_name("c")), "admin", "active").await;
    let wrong_key = format!("{}x", &key[..key.len() - 1]);

    proxy.set_refusing(true);
    let _ = app.db.ping().await;
    tokio::time::timeout(Duration::from_secs(30), app.db.until_server_state(ServerState::Unavailable)).await.expect("the outage is seen");

    // All at once: a call that reaches the driver waits out its server selection (3 s), and
    // none waits behind another.
    let callers = [
        ("admin", Some(admin.as_str()), None),
        ("cold member", Some(cold.as_str()), None),
        ("superadmin", Some(superadmin.as_str()), None),
        ("key", None, Some(key.as_str())),
        ("wrong key", None, Some(wrong_key.as_str())),
    ];
    let mut calls = Vec::new();
    for (method, path, takes_body) in every_operation(&tenant) {
        for (who, token, api_key) in callers {
            let mut request = match api_key {
                Some(k) => app.key_request(method.clone(), &path, k),
                None => app.request(method.clone(), &path, token),
            };
            if takes_body {
                request = request.json(&json!({}));
            }
            let label = format!("{who} {method} {path}");
            let app = &app;
            calls.push(async move { (label, app.call(request).await) });
        }
    }
    let mut failures = Vec::new();
    for (label, (status, headers, body)) in futures_util::future::join_all(calls).await {
        if status >= 500 && (status != 503 || !headers.contains_key("retry-after")) {
            failures.push(format!("{label}: {status} {body}"));
        }
    }
    assert!(failures.is_empty(), "during the outage:\n{}", failures.join("\n"));
}

/// A loopback stand-in for an AWS JSON service that answers every request with one error, in
/// the service's own shape: the status, `x-amzn-ErrorType` and `{"__type", "message"}`.
async fn aws_error_server(status: u16, code: &'static str) -> String {
    let app = axum::Router::new().fallback(move || async move {
        let body = json!({"__type": code, "message": format!("{code} (from the test's stand-in)")}).to_string();
        (http::StatusCode::from_u16(status).unwrap(), [("x-amzn-errortype", code), ("content-type", "application/x-amz-json-1.1")], body)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A loopback endpoint nothing listens on: a service that is down.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// The status a personal-data failure answers, through the one mapping.
fn pii_status(error: &PiiError) -> u16 {
    shared::ApiError::from(DbError::Pii(error.clone())).status().as_u16()
}

const CONTEXT: &[(&str, &str)] = &[("tenantId", "faults"), ("purpose", "test")];

#[tokio::test]
async fn kms_errors_no_retry_can_fix_are_a_500_and_only_transient_ones_a_503() {
    let moto = tenancy_tests::app::moto_url();
    let kms = |endpoint: &str, key: &str| AwsKms::with_client(tenancy_tests::kms_client(endpoint), key.to_owned());
    let mut cases: Vec<(String, PiiError, bool)> = Vec::new();

    // moto: an unknown key id.
    let error = kms(&moto, "0b6a1d0e-5d8c-4b7e-9a43-2f1c6d7e8f90").generate(CONTEXT).await.err().expect("a KMS error");
    cases.push(("moto, an unknown key".into(), error, false));
    // moto: a Decrypt that names another key than the ciphertext's.
    let wrapped = tenancy_tests::moto_kms().await.generate(CONTEXT).await.unwrap().wrapped;
    let other =
        tenancy_tests::kms_client(&moto).create_key().description("faults: another key").send().await.unwrap().key_metadata.unwrap().key_id;
    let error = kms(&moto, &other).unwrap_key(&wrapped, CONTEXT).await.unwrap_err();
    cases.push(("moto, Decrypt under another key".into(), error, false));
    // KMS down.
    let error = kms(&closed_port().await, &other).generate(CONTEXT).await.err().expect("a KMS error");
    cases.push(("KMS not reachable".into(), error, true));
    // What moto does not produce, from the service's own error bodies.
    for (status, code, transient) in [
        (400, "DisabledException", false),
        (400, "KMSInvalidStateException", false),
        (400, "NotFoundException", false),
        (400, "AccessDeniedException", false),
        (400, "ThrottlingException", true),
        (500, "KMSInternalException", true),
    ] {
        let error = kms(&aws_error_server(status, code).await, &other).generate(CONTEXT).await.err().expect("a KMS error");
        cases.push((code.into(), error, transient));
    }

    for (case, error, transient) in cases {
        if transient {
            assert!(matches!(error, PiiError::Kms(_)), "{case}: {error:?}");
            assert_eq!(pii_status(&error), 503, "{case}");
        } else {
            assert!(matches!(error, PiiError::KmsRefused(_)), "{case}: {error:?}");
            assert_eq!(pii_status(&error), 500, "{case}");
        }
    }
}

#[tokio::test]
async fn cognito_errors_no_retry_can_fix_are_a_500_and_only_transient_ones_a_503() {
    use shared::directory::{CognitoDirectory, Directory, DirectoryError};
    let moto = tenancy_tests::app::moto_url();
    let directory = |endpoint: &str, pool: &str| CognitoDirectory::new(local_api::cognito::client(endpoint, "us-east-1"), pool);
    let email = shared::ids::Email::parse("someone@faults.test").unwrap();
    let mut cases: Vec<(String, DirectoryError, bool)> = Vec::new();

    // moto: an unknown user pool.
    let error = directory(&moto, "us-east-1_NoSuchPool0").get_user(&email).await.unwrap_err();
    cases.push(("moto, an unknown pool".into(), error, false));
    // Cognito down.
    let error = directory(&closed_port().await, "us-east-1_NoSuchPool0").get_user(&email).await.unwrap_err();
    cases.push(("Cognito not reachable".into(), error, true));
    for (status, code, transient) in [
        (400, "ResourceNotFoundException", false),
        (400, "AccessDeniedException", false),
        (400, "NotAuthorizedException", false),
        (400, "TooManyRequestsException", true),
        (500, "InternalErrorException", true),
    ] {
        let error = directory(&aws_error_server(status, code).await, "us-east-1_Stand1n").get_user(&email).await.unwrap_err();
        cases.push((code.into(), error, transient));
    }

    for (case, error, transient) in cases {
        let status = shared::ApiError::from(users::error::UsersError::Directory(error.clone())).status().as_u16();
        if transient {
            assert!(matches!(error, DirectoryError::Unavailable(_)), "{case}: {error:?}");
            assert_eq!(status, 503, "{case}");
        } else {
            assert!(matches!(error, DirectoryError::Rejected(_)), "{case}: {error:?}");
            assert_eq!(status, 500, "{case}");
        }
        assert!(!error.to_string().contains("someone@faults.test"), "{case}: {error}");
    }
}

/// Where cargo put the function binaries (beside this test's executable).
fn bin_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.parent().and_then(|deps| deps.parent()).expect("target/debug").to_path_buf()
}

#[tokio::test]
async fn a_permanent_kms_error_in_a_built_function_is_a_500_with_an_alarmed_metric() {
    use local_api::runtime;
    let moto = tenancy_tests::app::moto_url();
    let cognito = local_api::cognito::client(&moto, "us-east-1");
    let pool = local_api::cognito::bootstrap(&cognito, &moto, "us-east-1", &tenancy_tests::unique_name("pool")).await.unwrap();
    let arn = runtime::put_secret(&moto, "us-east-1", &tenancy_tests::unique_name("uri"), &tenancy_tests::mongodb_uri()).await.unwrap();
    let db = tenancy_tests::fresh_db_with_indexes().await;
    let deps = shared::http::Deps::new(db.clone()).with_directory(local_api::moto_directory(&moto, "us-east-1", &pool.user_pool_id));
    let (name, event) = super::events::event_files().into_iter().find(|(n, _)| n == "tenants-create.json").expect("the event");
    // A master key that does not exist: KMS's NotFoundException, which no retry fixes.
    let missing_key = "0b6a1d0e-5d8c-4b7e-9a43-2f1c6d7e8f90";
    let receipt = tenancy_tests::receipt_key_id().await;
    let (_, run) = runtime::invoke_event(
        &bin_dir(),
        &deps,
        &runtime::LocalAws { pool: &pool, moto_url: &moto, secret_arn: &arn, kms_key_id: missing_key, receipt_key_id: &receipt },
        &name,
        event,
    )
    .await
    .unwrap();
    let response = run.outcome.clone().expect("an answer").expect("a proxy response");
    assert_eq!(response["statusCode"], 500, "{response}");
    let headers = response["multiValueHeaders"].as_object().or(response["headers"].as_object()).expect("headers");
    assert!(!headers.contains_key("retry-after"), "a permanent error says no retry: {response}");
    let lines = run.metric_lines();
    for line in &lines {
        shared::metrics::check_emf(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    let alarmed =
        lines.iter().find(|l| l.get("DependencyErrors").is_some()).unwrap_or_else(|| panic!("no DependencyErrors line: {lines:?}"));
    assert_eq!(alarmed["Dependency"], "KMS");
    assert_eq!(alarmed["code"], "NotFoundException");
    let logged = run
        .stdout
        .iter()
        .find(|l| l.contains("KMS refused the request permanently"))
        .unwrap_or_else(|| panic!("no clear line: {:?}", run.stdout));
    assert!(logged.contains("NotFoundException"), "{logged}");
    // Kept beside the events' lines, where tests/template_test.py finds the alarms' metrics.
    let dir = bin_dir().parent().expect("target").join("emf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dependency-errors.jsonl"), lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

/// The documents of every collection of `db`'s database, to show that a refusal changed nothing
/// (the audit log included).
async fn snapshot(db: &shared::Db) -> Vec<(String, Vec<Document>)> {
    let client = mongodb::Client::with_uri_str(tenancy_tests::mongodb_uri()).await.unwrap();
    let database = client.database(db.name());
    let mut names = database.list_collection_names().await.unwrap();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        use futures_util::TryStreamExt;
        let documents: Vec<Document> =
            database.collection::<Document>(&name).find(doc! {}).sort(doc! {"_id": 1}).await.unwrap().try_collect().await.unwrap();
        out.push((name, documents));
    }
    out
}

#[tokio::test]
async fn a_write_with_a_body_other_than_json_is_a_415_and_changes_nothing() {
    let app = tenancy_tests::app::spawn_app().await;
    let (admin, tenant) = warm_admin(&app).await;
    let superadmin = app.superadmin().await;
    let (status, _, reply) =
        app.call(app.request(Method::POST, "/api-keys", Some(&admin)).json(&json!({"name": "CI", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 201, "{reply}");
    let key_id = reply["data"]["id"].as_str().unwrap().to_owned();
    let (status, _, role) = app.call(app.request(Method::POST, "/roles", Some(&admin)).json(&new_role(1))).await;
    assert_eq!(status, 201, "{role}");
    let role_id = role["data"]["id"].as_str().unwrap().to_owned();

    let writes: Vec<(Method, String, &str, Value)> = vec![
        (Method::POST, "/tenants".into(), &superadmin, json!({"name": "Text", "adminEmail": "text@faults.test", "plan": "basic"})),
        (Method::PATCH, format!("/tenants/{tenant}"), &superadmin, json!({"name": "Renamed"})),
        (Method::POST, format!("/tenants/{tenant}/suspend"), &superadmin, json!({"reason": "text"})),
        (Method::PATCH, format!("/tenants/{tenant}/settings/customization"), &admin, json!({"theme": "dark"})),
        (Method::PATCH, format!("/tenants/{tenant}/settings/billing"), &admin, json!({"billingEmail": "bill@faults.test"})),
        (Method::POST, "/roles".into(), &admin, new_role(2)),
        (Method::PATCH, format!("/roles/{role_id}"), &admin, json!({"name": "Renamed"})),
        (Method::POST, "/users".into(), &admin, json!({"email": "invitee@faults.test", "firstName": "In", "lastName": "Vitee"})),
        (Method::PATCH, "/users/me".into(), &admin, json!({"firstName": "Changed"})),
        (Method::POST, "/api-keys".into(), &admin, json!({"name": "Text", "permissions": ["read:users"]})),
        (Method::PATCH, format!("/api-keys/{key_id}"), &admin, json!({"name": "Renamed"})),
        (Method::POST, format!("/api-keys/{key_id}/rotate"), &admin, json!({})),
        (Method::POST, format!("/api-keys/{key_id}/revoke"), &admin, json!({})),
        (Method::DELETE, format!("/roles/{role_id}"), &admin, json!({})),
    ];
    let before = snapshot(&app.db).await;
    for (method, path, token, body) in &writes {
        for content_type in ["text/plain", "application/x-www-form-urlencoded", "text/plain; charset=utf-8"] {
            let request = app.request(method.clone(), path, Some(token)).header("content-type", content_type).body(body.to_string());
            let (status, headers, reply) = app.call(request).await;
            assert_eq!(status, 415, "{method} {path} as {content_type}: {reply}");
            assert!(!headers.contains_key("retry-after"), "{method} {path}");
        }
    }
    // Audit entries and counters included, nothing moved.
    assert_eq!(snapshot(&app.db).await, before, "a refused write changed something");

    // A JSON body with parameters in any case is JSON; a route that takes no body takes none.
    let request = app
        .request(Method::PATCH, &format!("/tenants/{tenant}/settings/customization"), Some(&admin))
        .header("content-type", "Application/JSON; charset=UTF-8")
        .body(r#"{"theme":"dark"}"#);
    assert_eq!(app.call(request).await.0, 200);
    let (status, _, reply) = app.call(app.request(Method::POST, &format!("/api-keys/{key_id}/rotate"), Some(&admin))).await;
    assert_eq!(status, 200, "a rotation with no body and no content type: {reply}");
    let (status, _, reply) = app.call(app.request(Method::POST, &format!("/api-keys/{key_id}/revoke"), Some(&admin))).await;
    assert_eq!(status, 200, "a revocation with no body and no content type: {reply}");
}
