//! Every file in `events/` through the built host binary of its function (`target/debug/<bin>`)
//! under a local Lambda Runtime API, as `sam local invoke -e` would run it, with its cold start:
//! the connection string read from moto's Secrets Manager. The metric lines the binaries print
//! are checked against the EMF specification and kept in `target/emf/`, where
//! `tests/template_test.py` finds the alarms' metrics.

use local_api::runtime::{self, Invocation};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tenancy_tests::app::moto_url;

const REGION: &str = "us-east-1";
const TIMEOUT: Duration = runtime::INVOCATION_TIMEOUT;

/// Where cargo put the binaries: beside this test's own executable (`target/debug/deps/..`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.parent().and_then(|deps| deps.parent()).expect("target/debug").to_path_buf()
}

/// Keeps the metric lines of a run for the template test.
fn keep_metric_lines(file: &str, lines: &[Value]) {
    let dir = bin_dir().parent().expect("target").join("emf");
    std::fs::create_dir_all(&dir).unwrap();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join(file), text).unwrap();
}

/// The local stack as a deployed function sees it: a pool, and the URI's secret.
async fn stack() -> (local_api::cognito::PoolIds, String) {
    let moto = moto_url();
    let client = local_api::cognito::client(&moto, REGION);
    let pool = local_api::cognito::bootstrap(&client, &moto, REGION, &tenancy_tests::unique_name("pool")).await.unwrap();
    let arn = runtime::put_secret(&moto, REGION, &tenancy_tests::unique_name("uri"), &tenancy_tests::mongodb_uri()).await.unwrap();
    (pool, arn)
}

/// Keeps a run's log lines for the personal-data log scan, when the test command asks for it.
fn keep_log_lines(run: &Invocation) {
    let Some(dir) = std::env::var_os("TEST_LOG_DIR") else { return };
    use std::io::Write;
    let path = std::path::Path::new(&dir).join(format!("binaries-{}.jsonl", std::process::id()));
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("the binaries' log file");
    for line in &run.stdout {
        writeln!(file, "{line}").expect("a log line");
    }
}

fn answered(name: &str, run: &Invocation) -> Value {
    keep_log_lines(run);
    match &run.outcome {
        Some(Ok(response)) => response.clone(),
        other => panic!("{name}: {other:?}\nstdout: {:?}\nstderr: {}", run.stdout, run.stderr),
    }
}

fn checked_metric_lines(name: &str, run: &Invocation) -> Vec<Value> {
    let lines = run.metric_lines();
    assert!(!lines.is_empty(), "{name}: the function printed no metric line");
    for line in &lines {
        shared::metrics::check_emf(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
    }
    assert_eq!(lines[0]["ColdStart"], 1.0, "{name}: a process's first line counts its cold start");
    lines
}

#[tokio::test]
async fn every_event_runs_through_the_built_binary_of_its_function() {
    let (pool, arn) = stack().await;
    let moto = moto_url();
    let mut metric_lines = Vec::new();
    let mut binaries_run = std::collections::HashSet::new();
    let kms = tenancy_tests::kms_key_id().await;
    let receipt = tenancy_tests::receipt_key_id().await;
    for (name, event) in super::events::event_files() {
        let db = tenancy_tests::fresh_db_with_indexes().await;
        let deps = shared::http::Deps::new(db.clone()).with_directory(local_api::moto_directory(&moto, REGION, &pool.user_pool_id));
        let function = local_api::dispatch::function_for_event(&name, &event).unwrap();
        let (binary, run) = runtime::invoke_event(
            &bin_dir(),
            &deps,
            &runtime::LocalAws { pool: &pool, moto_url: &moto, secret_arn: &arn, kms_key_id: &kms, receipt_key_id: &receipt },
            &name,
            event.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let response = answered(&name, &run);
        match function.as_str() {
            "AuthorizerFunction" => {
                assert_eq!(response["policyDocument"]["Statement"][0]["Effect"], "Allow", "{name}: {response}");
                assert_eq!(response["context"]["tenantId"], local_api::fixtures::TENANT, "{name}");
            }
            "PostConfirmationFunction" => assert_eq!(response, event, "{name}: the trigger returns its event"),
            "AuditRetentionFunction" => assert_eq!(response["complete"], true, "{name}: {response}"),
            // The onboarding binary's own schedule: a sweep, answered with its report.
            "OnboardingFunction" if !local_api::dispatch::is_proxy_event(&event) => {
                assert_eq!(response["taken"], 0, "{name}: {response}");
                assert_eq!(response["leftRunning"], json!([]), "{name}: {response}");
            }
            // The jobs worker: the message's export (the fixtures' job) runs to its end; the
            // schedule finds no stalled job in a fresh database.
            "TenantJobsFunction" if event.get("Records").is_some() => {
                assert_eq!(response["handled"], json!(["Ended"]), "{name}: {response}")
            }
            "TenantJobsFunction" => assert_eq!(response["requeued"], 0, "{name}: {response}"),
            "MigrationsFunction" => {
                let expected = migrations::parse_event(&event).unwrap();
                assert_eq!(response["action"], serde_json::to_value(expected).unwrap(), "{name}: {response}");
            }
            _ => {
                let status = response["statusCode"].as_u64().unwrap_or_else(|| panic!("{name}: not a proxy response: {response}"));
                let (resource, method) = (event["resource"].as_str().unwrap(), event["httpMethod"].as_str().unwrap());
                assert_eq!(status, u64::from(super::events::documented_success(resource, method)), "{name}: {response}");
                // The function's own response carries the admin panel's CORS headers, never credentials.
                let headers = response["multiValueHeaders"].as_object().or(response["headers"].as_object()).expect("headers");
                let header = |name: &str| headers.get(name).map(|v| v.as_array().map(|a| a[0].clone()).unwrap_or(v.clone()));
                assert_eq!(header("access-control-allow-origin"), Some(json!(runtime::LOCAL_ADMIN_PANEL_ORIGIN)), "{name}: {response}");
                assert_eq!(header("vary"), Some(json!("Origin")), "{name}");
                assert!(header("access-control-allow-credentials").is_none(), "{name}");
                let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
                assert_eq!(body["success"], true, "{name}");
                let route = format!("{method} {resource}");
                let line = run
                    .metric_lines()
                    .into_iter()
                    .find(|l| l.get("Requests").is_some())
                    .unwrap_or_else(|| panic!("{name}: no request line"));
                assert_eq!(line["Route"], route.as_str(), "{name}");
                assert_eq!(line["Function"], binary.as_str(), "{name}");
            }
        }
        metric_lines.extend(checked_metric_lines(&name, &run));
        binaries_run.insert(binary);
    }
    let all: std::collections::HashSet<String> = runtime::function_binaries().into_values().collect();
    assert_eq!(binaries_run, all, "every function of template.yaml has an event");
    keep_metric_lines("events.jsonl", &metric_lines);
}

#[tokio::test]
async fn a_missing_or_bad_secret_fails_the_cold_start_with_a_clear_line() {
    let (pool, _) = stack().await;
    let moto = moto_url();
    let bad = runtime::put_secret(&moto, REGION, &tenancy_tests::unique_name("bad"), "not a connection string").await.unwrap();
    let missing = format!("arn:aws:secretsmanager:{REGION}:123456789012:secret:{}", tenancy_tests::unique_name("none"));
    for (arn, expected) in [(missing.as_str(), "GetSecretValue"), (bad.as_str(), "not a mongodb:// or mongodb+srv:// connection string")] {
        let env = runtime::function_env(
            &runtime::LocalAws {
                pool: &pool,
                moto_url: &moto,
                secret_arn: arn,
                kms_key_id: &tenancy_tests::kms_key_id().await,
                receipt_key_id: "",
            },
            "unused",
        );
        let event = super::events::event_files().into_iter().find(|(n, _)| n == "roles-list.json").unwrap().1;
        let run = runtime::invoke(&bin_dir().join("roles"), &env, event, TIMEOUT).await.unwrap();
        assert!(run.outcome.is_none(), "no invocation is served: {:?}", run.outcome);
        assert!(run.exit.is_some_and(|s| !s.success()), "the process fails: {:?}", run.exit);
        let line = run.stdout.iter().find(|l| l.contains("cold start failed")).unwrap_or_else(|| panic!("no clear line: {:?}", run.stdout));
        assert!(line.contains("MONGODB_URI_SECRET_ARN") && line.contains(expected), "{line}");
        assert!(!line.contains("not a connection string"), "the secret's value is never logged: {line}");
    }
}

/// A loopback stand-in for CloudFormation's pre-signed ResponseURL: keeps each PUT.
async fn response_url() -> (String, tokio::sync::mpsc::UnboundedReceiver<(String, Value)>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/cfn",
        axum::routing::put(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let content_type =
                    headers.get("content-type").map(|v| v.to_str().unwrap_or("?").to_owned()).unwrap_or_else(|| "absent".into());
                let _ = tx.send((content_type, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cfn", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

fn custom_resource(request: &str, url: &str) -> Value {
    json!({
        "RequestType": request, "ServiceToken": "arn:aws:lambda:us-east-1:000000000000:function:migrations",
        "ResponseURL": url, "StackId": "arn:aws:cloudformation:us-east-1:000000000000:stack/tenancy/1",
        "RequestId": format!("req-{request}"), "LogicalResourceId": "SetupOnDeploy", "ResourceType": "Custom::TenancySetup",
        "PhysicalResourceId": "tenancy-setup", "ResourceProperties": {"CodeVersion": "7"}
    })
}

/// Every index of every collection of a database, and every document count: what Delete must
/// leave as it found it.
async fn inventory(db: &shared::Db) -> Vec<(String, u64, Vec<String>)> {
    let client = mongodb::Client::with_uri_str(tenancy_tests::mongodb_uri()).await.unwrap();
    let database = client.database(db.name());
    let mut names = database.list_collection_names().await.unwrap();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let collection = database.collection::<mongodb::bson::Document>(&name);
        let mut indexes = collection.list_index_names().await.unwrap();
        indexes.sort();
        out.push((name, collection.count_documents(mongodb::bson::doc! {}).await.unwrap(), indexes));
    }
    out
}

#[tokio::test]
async fn the_setup_custom_resource_answers_cloudformation_and_delete_keeps_the_data() {
    let (pool, arn) = stack().await;
    let moto = moto_url();
    // A database nobody set up: the deploy is what makes its indexes.
    let db = tenancy_tests::fresh_db().await;
    let env = runtime::function_env(
        &runtime::LocalAws {
            pool: &pool,
            moto_url: &moto,
            secret_arn: &arn,
            kms_key_id: &tenancy_tests::kms_key_id().await,
            receipt_key_id: "",
        },
        db.name(),
    );
    let migrations = bin_dir().join("migrations");
    let (url, mut puts) = response_url().await;
    let mut metric_lines = Vec::new();

    let deliver = |request: &'static str| {
        let (env, migrations, url) = (env.clone(), migrations.clone(), url.clone());
        async move { runtime::invoke(&migrations, &env, custom_resource(request, &url), TIMEOUT).await.unwrap() }
    };
    let create = deliver("Create").await;
    let returned = answered("Create", &create);
    let (content_type, body) = puts.recv().await.expect("Create's response");
    assert_eq!(content_type, "", "the pre-signed URL takes an empty content type");
    assert_eq!(body, returned);
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["RequestId"], "req-Create");
    assert_eq!(body["StackId"], "arn:aws:cloudformation:us-east-1:000000000000:stack/tenancy/1");
    assert_eq!(body["LogicalResourceId"], "SetupOnDeploy");
    assert_eq!(body["PhysicalResourceId"], "tenancy-setup");
    assert!(body["Data"]["indexesCreated"].as_u64().unwrap() > 0, "{body}");
    assert_eq!(body["Data"]["deferred"], false);
    let ledger = tenancy_tests::raw_collection(&db, "migrations").await;
    assert_eq!(
        ledger.count_documents(mongodb::bson::doc! {}).await.unwrap() as usize,
        migrations::registry::MIGRATIONS.len(),
        "up ran too"
    );
    metric_lines.extend(checked_metric_lines("Create", &create));

    let update = deliver("Update").await;
    let (_, body) = puts.recv().await.expect("Update's response");
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["Data"]["indexesCreated"], 0, "every index exists already: {body}");
    assert_eq!(body["RequestId"], "req-Update");
    metric_lines.extend(checked_metric_lines("Update", &update));

    let deps = shared::http::Deps::new(db.clone()).with_directory(local_api::moto_directory(&moto, REGION, &pool.user_pool_id));
    local_api::fixtures::seed_events_tenant(&deps).await.unwrap();
    let before = inventory(&db).await;
    let delete = deliver("Delete").await;
    let (_, body) = puts.recv().await.expect("Delete's response");
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["RequestId"], "req-Delete");
    assert_eq!(inventory(&db).await, before, "Delete touches no data and no index");
    metric_lines.extend(checked_metric_lines("Delete", &delete));

    // A setup that cannot run is FAILED, with its reason, and still answered.
    let broken = runtime::function_env(
        &runtime::LocalAws {
            pool: &pool,
            moto_url: &moto,
            secret_arn: &arn,
            kms_key_id: &tenancy_tests::kms_key_id().await,
            receipt_key_id: "",
        },
        "no/such$database",
    );
    let failed = runtime::invoke(&migrations, &broken, custom_resource("Create", &url), TIMEOUT).await.unwrap();
    let (_, body) = puts.recv().await.expect("the failed Create's response");
    assert_eq!(body["Status"], "FAILED", "{body}");
    assert!(body["Reason"].as_str().unwrap().starts_with("setup failed"), "{body}");
    let lines = checked_metric_lines("failed Create", &failed);
    assert!(lines.iter().any(|l| l["MigrationErrors"] == 1.0), "the failure is counted: {lines:?}");
    metric_lines.extend(lines);
    keep_metric_lines("deploy.jsonl", &metric_lines);
}

#[tokio::test]
async fn a_sign_up_past_the_platform_s_hourly_cap_is_a_429_with_an_alarmed_metric_from_the_built_binary() {
    let (pool, arn) = stack().await;
    let moto = moto_url();
    let (kms, receipt) = (tenancy_tests::kms_key_id().await, tenancy_tests::receipt_key_id().await);
    let db = tenancy_tests::fresh_db_with_indexes().await;
    let (name, event) = super::events::event_files().into_iter().find(|(n, _)| n == "onboarding-signup.json").expect("the event");
    let aws = runtime::LocalAws { pool: &pool, moto_url: &moto, secret_arn: &arn, kms_key_id: &kms, receipt_key_id: &receipt };
    let binary = bin_dir().join(runtime::binary_for_event(&name, &event).unwrap());
    // A cap of one sign-up an hour: the event's first run takes it, another address's is refused.
    let mut env = runtime::function_env(&aws, db.name());
    env.push(("SIGNUP_HOURLY_CAP".into(), "1".into()));
    let first = runtime::invoke(&binary, &env, event.clone(), Duration::from_secs(60)).await.unwrap();
    assert_eq!(answered(&name, &first)["statusCode"], 202, "{name}");
    let mut second = event.clone();
    second["body"] = json!(json!({"companyName": "Second Co", "adminEmail": "second@demo-signup.example",
        "adminFirstName": "S", "adminLastName": "C"})
    .to_string());
    second["headers"]["Idempotency-Key"] = json!("demo-events-signup-0002");
    second["multiValueHeaders"]["Idempotency-Key"] = json!(["demo-events-signup-0002"]);
    let refused = runtime::invoke(&binary, &env, second, Duration::from_secs(60)).await.unwrap();
    let response = answered(&name, &refused);
    assert_eq!(response["statusCode"], 429, "{response}");
    let lines = checked_metric_lines(&name, &refused);
    assert!(lines.iter().any(|l| l.get("SignupCapReached") == Some(&json!(1.0))), "{lines:?}");
    // Kept beside the events' lines, where tests/template_test.py finds the alarms' metrics.
    keep_metric_lines("signup-cap.jsonl", &lines);
}
