//! Every file in `events/` goes through its handler, as `sam local invoke -e` would send it.

use serde_json::Value;
use std::path::PathBuf;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn event_files(prefix: &str) -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(events_dir())
        .expect("events/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .filter(|(name, _)| name.starts_with(prefix))
        .collect();
    files.sort();
    files
}

#[test]
fn every_event_file_belongs_to_a_handler_this_suite_runs() {
    for (name, _) in event_files("") {
        assert!(
            ["migrations-", "tenants-"].iter().any(|p| name.starts_with(p)),
            "{name}: no test runs this event through a handler"
        );
    }
}

#[tokio::test]
async fn every_migrations_event_runs_through_the_handler() {
    let db = tenancy_tests::fresh_db().await;
    // setup first, so that the order of the other files does not matter.
    let files = event_files("migrations-");
    assert!(files.len() >= 2, "a scheduled and a manual event at least");
    let (setup, rest): (Vec<_>, Vec<_>) = files.into_iter().partition(|(n, _)| n.contains("setup"));
    for (name, body) in setup.into_iter().chain(rest) {
        let event: Value = serde_json::from_str(&body).unwrap();
        let expected = migrations::parse_event(&event).unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = migrations::handle_event(&db, event).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(report["action"], serde_json::to_value(expected).unwrap(), "{name}");
    }
}

/// The tenant the tenants-* events act on, with the admin they name.
async fn seed_events_tenant(db: &shared::db::Db) {
    let new = tenants::input::NewTenant {
        name: "Demo Events".into(),
        domain: None,
        admin_email: shared::ids::Email::parse("admin@demo-events.example").unwrap(),
        plan: shared::plans::Plan::Basic,
    };
    let id = shared::ids::TenantId::parse("tn_demoevents000000000000000").unwrap();
    // The superadmin of the superadmin events seeds it.
    let (_, create) = event_files("tenants-create").remove(0);
    let identity = shared::Identity::from_request(&lambda_http::request::from_str(&create).unwrap()).unwrap();
    let admin = shared::SuperadminContext::require(&identity).expect("the create event's caller is a superadmin");
    tenants::service::create_with_id(db, &admin, id, &new).await.expect("seed the events tenant");
}

#[tokio::test]
async fn every_tenants_event_runs_through_the_handler() {
    let files = event_files("tenants-");
    assert_eq!(files.len(), 9, "one event per route");
    for (name, body) in files {
        let db = tenancy_tests::fresh_db_with_indexes().await;
        seed_events_tenant(&db).await;
        let request = lambda_http::request::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let response = tenants::handle(&tenants::AppState { db }, request).await;
        let status = response.status().as_u16();
        let text = match response.body() {
            lambda_http::Body::Text(t) => t.clone(),
            other => format!("{other:?}"),
        };
        let expected = if name == "tenants-create.json" { 201 } else { 200 };
        assert_eq!(status, expected, "{name}: {text}");
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["success"], true, "{name}");
    }
}
