//! Every file in `events/` goes through its function, as `sam local invoke -e` would send it.
//! API Gateway events are dispatched exactly as the local API does: through openapi.json's route
//! table to the function its integration names, from the one list of hosted functions. Other
//! events go to the one non-HTTP function whose declared event kinds take them.

use local_api::dispatch::{function_for_event, is_proxy_event};
use serde_json::Value;
use std::path::PathBuf;

pub(crate) fn event_files() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("events/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, json)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// The 2xx status openapi.json documents for an operation's first call, what its event must
/// get: 201 where it documents one (a creation; its 200 is a replay's), else the lowest 2xx.
pub(crate) fn documented_success(resource: &str, method: &str) -> u16 {
    let doc: Value = serde_json::from_str(local_api::OPENAPI).unwrap();
    let responses = doc["paths"][resource][method.to_ascii_lowercase()]["responses"].as_object().expect("documented operation");
    let documented: Vec<u16> = responses.keys().filter_map(|k| k.parse::<u16>().ok()).filter(|s| (200..300).contains(s)).collect();
    if documented.contains(&201) {
        return 201;
    }
    documented.into_iter().min().expect("a 2xx response")
}

const TENANT: &str = local_api::fixtures::TENANT;

fn sample_onboarding() -> onboarding::input::Onboarding {
    onboarding::input::Onboarding {
        tenant_name: "Swept".into(),
        domain: None,
        plan: shared::plans::Plan::Free,
        admin_email: shared::ids::Email::parse("admin@swept.example").unwrap(),
        admin_first_name: "S".into(),
        admin_last_name: "W".into(),
        customization: None,
    }
}

#[tokio::test]
async fn every_http_event_runs_through_the_function_its_route_names() {
    let table = local_api::route_table().unwrap();
    let files: Vec<_> = event_files().into_iter().filter(|(_, e)| is_proxy_event(e)).collect();
    let mut routes_seen = std::collections::HashSet::new();
    for (name, event) in &files {
        let (method, path) = (event["httpMethod"].as_str().unwrap(), event["path"].as_str().unwrap());
        let matched = table.find(method, path).unwrap_or_else(|| panic!("{name}: no route for {method} {path}"));
        assert_eq!(matched.route.resource, event["resource"].as_str().unwrap(), "{name}: resource");
        routes_seen.insert((matched.route.method.clone(), matched.route.resource.clone()));
        let deps =
            shared::http::Deps::new(tenancy_tests::fresh_db_with_indexes().await).with_directory(tenancy_tests::test_directory().await);
        let deps = deps.with_features(local_api::runtime::local_features());
        local_api::fixtures::prepare_for_event(&deps, name, event).await.expect("the events' fixtures");
        let functions = local_api::functions(&deps);
        let function = functions.iter().find(|f| f.logical_id() == matched.route.function).expect("a hosted function");
        let request = lambda_http::request::from_str(&event.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let entries =
            || async { tenancy_tests::raw_collection(&deps.db, "auditLogs").await.count_documents(mongodb::bson::doc! {}).await.unwrap() };
        let before = entries().await;
        let response = function.handle(request).await;
        // A sign-up has no tenant to audit in yet: the sweep that makes its tenant writes its
        // `tenant.created` entry.
        if method != "GET" && matched.route.resource != "/signup" {
            assert_eq!(entries().await, before + 1, "{name}: every mutating route writes exactly one audit entry");
        }
        let text = match response.body() {
            lambda_http::Body::Text(t) => t.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(response.status().as_u16(), documented_success(&matched.route.resource, method), "{name}: {text}");
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["success"], true, "{name}");
    }
    assert_eq!(routes_seen.len(), table.len(), "one event per route of openapi.json");
}

#[tokio::test]
async fn every_other_event_runs_through_the_function_that_takes_its_shape() {
    let others: Vec<_> = event_files().into_iter().filter(|(_, e)| !is_proxy_event(e)).collect();
    assert!(!others.is_empty(), "the migrations and trigger events at least");
    for (name, event) in others {
        let deps =
            shared::http::Deps::new(tenancy_tests::fresh_db_with_indexes().await).with_directory(tenancy_tests::test_directory().await);
        let function = function_for_event(&name, &event).unwrap_or_else(|e| panic!("{e}"));
        if function == users::trigger::FUNCTION.logical_id {
            // The PostConfirmation trigger links the pending record of the confirmed e-mail.
            local_api::fixtures::prepare_for_event(&deps, &name, &event).await.expect("the trigger's fixtures");
            let attributes = &event["request"]["userAttributes"];
            let record = tenancy_tests::user_by_email(&deps.db, attributes["email"].as_str().unwrap()).await.expect("the pending record");
            let returned = users::trigger::post_confirmation(&deps.db, event.clone()).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(returned, event, "{name}: the trigger returns its event");
            let linked = tenancy_tests::raw_collection(&deps.db, "users")
                .await
                .find_one(mongodb::bson::doc! {"_id": record.get_object_id("_id").unwrap()})
                .await
                .unwrap()
                .unwrap();
            assert_eq!(linked.get_str("cognitoUserId").unwrap(), attributes["sub"].as_str().unwrap(), "{name}");
            assert_eq!(linked.get_str("status").unwrap(), "active", "{name}");
            continue;
        }
        if function == "AuthorizerFunction" {
            // The REQUEST authorizer: the fixtures' key is let through with its tenant, its
            // permissions and its creator, and counted once in its windows.
            local_api::fixtures::seed_events_tenant(&deps).await.expect("the events' fixtures");
            let authorizer = authorizer::Authorizer::new(deps.db.clone(), None);
            let response = authorizer::handle_event(&authorizer, &event).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(response["policyDocument"]["Statement"][0]["Effect"], "Allow", "{name}");
            assert_eq!(response["policyDocument"]["Statement"][0]["Resource"], event["methodArn"], "{name}");
            let context = &response["context"];
            assert_eq!(context["principalType"], "apiKey", "{name}");
            assert_eq!(context["tenantId"], TENANT, "{name}");
            assert_eq!(context["apiKeyId"], local_api::fixtures::API_KEY, "{name}");
            assert_eq!(context["permissions"], "[\"read:users\",\"read:roles\"]", "{name}");
            assert!(context.get("retryAfter").is_none(), "{name}");
            let windows = tenancy_tests::raw_collection(&deps.db, "apiKeyWindows").await;
            let counted = windows.find_one(mongodb::bson::doc! {}).await.unwrap().expect("the key's windows");
            assert_eq!(counted.get_document("m").unwrap().len(), 1, "{name}: one minute window, counted once");
            continue;
        }
        if function == audit::retention::FUNCTION.logical_id {
            // The retention job: an expired entry goes, the fixtures' live ones stay.
            local_api::fixtures::seed_events_tenant(&deps).await.expect("the events' fixtures");
            let entries = tenancy_tests::raw_collection(&deps.db, "auditLogs").await;
            let expired = mongodb::bson::doc! {"tenantId": TENANT, "action": "tenant.updated", "resource": "tenant", "details": {},
            "ip": "", "userAgent": "", "requestId": "old", "timestamp": mongodb::bson::DateTime::from_millis(0),
            "expireAt": mongodb::bson::DateTime::from_millis(1)};
            entries.insert_one(expired).await.unwrap();
            let live = entries.count_documents(mongodb::bson::doc! {"expireAt": {"$gt": mongodb::bson::DateTime::now()}}).await.unwrap();
            let report = audit::retention::run(&deps.db, Default::default()).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(report.deleted >= 1 && report.complete, "{name}: {report:?}");
            assert_eq!(entries.count_documents(mongodb::bson::doc! {"requestId": "old"}).await.unwrap(), 0, "{name}");
            assert_eq!(entries.count_documents(mongodb::bson::doc! {}).await.unwrap(), live, "{name}: nothing unexpired goes");
            continue;
        }
        if function == onboarding::FUNCTION.logical_id {
            // The sweep: a saga whose lease expired long ago is taken and undone (it sealed
            // nothing to finish from), and the report says so.
            let sagas = shared::saga::Sagas::with_owner(&deps.db, "a process that died");
            let new = shared::saga::NewSaga {
                kind: shared::saga::SagaKind::Onboarding,
                tenant_id: shared::ids::TenantId::generate(),
                idempotency: None,
                request: b"",
                params: mongodb::bson::to_document(&onboarding::saga::Params::new(&sample_onboarding())).unwrap(),
                lookup: None,
                id: None,
                first: None,
            };
            let shared::saga::Begun::Run(run) = sagas.begin(new).await.unwrap() else { panic!("{name}: a new saga") };
            let id = run.saga().id.clone();
            drop(*run);
            let hour_ago = mongodb::bson::DateTime::from_millis(mongodb::bson::DateTime::now().timestamp_millis() - 3_600_000);
            let stored = tenancy_tests::raw_collection(&deps.db, "sagas").await;
            stored.update_one(mongodb::bson::doc! {"_id": &id}, mongodb::bson::doc! {"$set": {"leaseUntil": hour_ago}}).await.unwrap();
            let report = onboarding::on_schedule(&deps, event).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((report["taken"].as_u64(), report["failed"].as_u64()), (Some(1), Some(1)), "{name}: {report}");
            let saga = stored.find_one(mongodb::bson::doc! {"_id": &id}).await.unwrap().unwrap();
            assert_eq!(saga.get_str("state").unwrap(), "failed", "{name}");
            continue;
        }
        if function == tenants::jobs::FUNCTION.logical_id {
            // The worker: the message's job (the events' export) runs to its end; the schedule
            // finds a job whose message was lost and queues it again.
            local_api::fixtures::prepare_for_event(&deps, &name, &event).await.expect("the worker's fixtures");
            let jobs = tenancy_tests::raw_collection(&deps.db, "jobs").await;
            let export = mongodb::bson::doc! {"_id": local_api::fixtures::EXPORT};
            if event.get("Records").is_none() {
                let long_ago = mongodb::bson::DateTime::from_millis(0);
                jobs.update_one(export.clone(), mongodb::bson::doc! {"$set": {"updatedAt": long_ago}}).await.unwrap();
            }
            let report =
                tenants::jobs::on_event(&deps.db, deps.directory.as_ref(), event.clone()).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let job = jobs.find_one(export).await.unwrap().unwrap();
            if event.get("Records").is_some() {
                assert_eq!(report["handled"], serde_json::json!(["Ended"]), "{name}");
                assert_eq!(job.get_str("state").unwrap(), "completed", "{name}: {job}");
            } else {
                assert_eq!(report["requeued"], 1, "{name}: {report}");
                assert_ne!(job.get_datetime("updatedAt").unwrap().timestamp_millis(), 0, "{name}: touched");
            }
            continue;
        }
        assert_eq!(function, "MigrationsFunction", "{name}");
        let expected = migrations::parse_event(&event).unwrap_or_else(|e| panic!("{name}: no function takes this event: {e}"));
        migrations::setup(&deps.db).await.unwrap();
        let report = migrations::handle_event(&deps.db, deps.directory.as_ref(), event).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(report["action"], serde_json::to_value(expected).unwrap(), "{name}");
    }
}
