//! The shared test harness: a fresh database per test on the FerretDB that the test command
//! started, and (see `app`) a running local API with its own Cognito pool in moto.


pub mod app;

use shared::config::DbConfig;
use shared::db::Db;
use std::time::Duration;

/// The FerretDB (or MongoDB) the tests use; the test command exports it.
pub fn mongodb_uri() -> String {
    std::env::var("TEST_MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017/".into())
}

/// A database name no other test uses: tests run in parallel.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", mongodb::bson::oid::ObjectId::new().to_hex())
}

/// Config for a fresh, uniquely named database.
pub fn fresh_db_config() -> DbConfig {
    DbConfig {
        uri: mongodb_uri(),
        database: unique_name("t"),
        app_name: "tenancy-tests".into(),
        max_pool_size: 8,
        server_selection_timeout: Duration::from_secs(10),
    }
}

/// A fresh database with its own client (each test has its own runtime).
pub async fn fresh_db() -> Db {
    Db::connect(&fresh_db_config()).await.expect("connect to the test database")
}

/// A fresh database with the migrations `setup` applied (indexes in place).
pub async fn fresh_db_with_indexes() -> Db {
    let db = fresh_db().await;
    migrations::setup(&db).await.expect("setup");
    db
}

/// A superadmin's context, as the admission step makes it from a REST authorizer's claims: for
/// tests that call services directly.
pub fn superadmin_context() -> shared::SuperadminContext {
    let event = serde_json::json!({
        "resource": "/tenants", "path": "/tenants", "httpMethod": "POST", "headers": {},
        "requestContext": {"requestId": "test", "resourcePath": "/tenants", "httpMethod": "POST",
            "authorizer": {"claims": {"sub": "ops-sub", "cognito:groups": "superadmin"}}},
        "body": null, "isBase64Encoded": false
    });
    let request = lambda_http::request::from_str(&event.to_string()).expect("a REST event");
    let identity = shared::Identity::from_request(&request).expect("claims");
    shared::SuperadminContext::require(&identity).expect("a superadmin")
}

/// A user directory on a fresh pool in moto, for code that needs one outside the API.
pub async fn test_directory() -> shared::directory::SharedDirectory {
    let moto = app::moto_url();
    let client = local_api::cognito::client(&moto, "us-east-1");
    let pool = local_api::cognito::bootstrap(&client, &moto, "us-east-1", &unique_name("pool")).await.expect("a pool");
    local_api::moto_directory(&moto, "us-east-1", &pool.user_pool_id)
}

/// A raw collection of a test database, through a client of the test's own: for seeding
/// legacy shapes and checking stored bytes, never used by the code under test.
pub async fn raw_collection(db: &Db, collection: &str) -> mongodb::Collection<mongodb::bson::Document> {
    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.expect("client");
    client.database(db.name()).collection(collection)
}
