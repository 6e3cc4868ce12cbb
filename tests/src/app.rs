//! `spawn_app`: a running local API on an ephemeral loopback port, with a fresh database (its
//! indexes set up) and a fresh user pool in moto, and helpers for real Cognito tokens.

use aws_sdk_cognitoidentityprovider::Client as Cognito;
use local_api::cognito::{self, PoolIds};
use local_api::Stack;
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use shared::config::CognitoConfig;
use shared::db::Db;
use shared::http::HttpFunction;
use shared::identity::SUPERADMIN_GROUP;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A password for moto's test users (fake, local only).
pub const PASSWORD: &str = "Test-Passw0rd!";
pub const REGION: &str = "us-east-1";

/// The moto server the test command started.
pub fn moto_url() -> String {
    std::env::var("TEST_MOTO_URL").unwrap_or_else(|_| "http://127.0.0.1:5000".into())
}

/// A running local API and what it talks to.
pub struct TestApp {
    pub address: String,
    pub db: Db,
    /// What the hosted functions were built from (the database and moto's directory).
    pub deps: Stack,
    pub http: reqwest::Client,
    pub cognito: Cognito,
    pub pool: PoolIds,
    /// The credential of the local control route (`POST /_local/migrations`).
    pub control_token: local_api::control::ControlToken,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Starts the local API for one test.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(local_api::functions).await
}

/// Starts the local API reading the time from `clock`, for tests of time bounds.
pub async fn spawn_app_with_clock(clock: shared::clock::SharedClock) -> TestApp {
    spawn_app_on(crate::fresh_db_with_indexes().await.with_clock(clock), local_api::functions).await
}

/// Starts the local API on a database whose client counts the commands it sends to that
/// database (`Db::connect_counting`): for tests that hold routes to their round trips. The
/// indexes are set up and the server's flavor asked (`buildInfo`, once per handle) before the
/// counter is zeroed; a test zeroes it again before each call it measures.
pub async fn spawn_app_counting() -> (TestApp, Arc<AtomicU64>) {
    let (db, commands) = Db::connect_counting(&crate::fresh_db_config()).await.expect("connect to the test database");
    let db = crate::with_keyring(db).await;
    migrations::setup(&db).await.expect("setup");
    db.flavor().await.expect("the server's flavor");
    commands.store(0, Ordering::SeqCst);
    // Sign-up on, so that every route of openapi.json can be measured.
    let moto = moto_url();
    let cognito = cognito::client(&moto, REGION);
    let pool = cognito::bootstrap(&cognito, &moto, REGION, &crate::unique_name("pool")).await.expect("bootstrap the pool");
    let features = shared::config::Features { signup: Some(shared::config::SignupSettings { hourly_cap: 1_000 }) };
    (serve_with(db, local_api::functions, cognito, pool, features).await, commands)
}

/// Starts the local API with the deployment's switches `features` (self-service sign-up on),
/// reading the time from `clock`.
pub async fn spawn_app_with_features(clock: shared::clock::SharedClock, features: shared::config::Features) -> TestApp {
    let db = crate::fresh_db_with_indexes().await.with_clock(clock);
    let moto = moto_url();
    let cognito = cognito::client(&moto, REGION);
    let pool = cognito::bootstrap(&cognito, &moto, REGION, &crate::unique_name("pool")).await.expect("bootstrap the pool");
    serve_with(db, local_api::functions, cognito, pool, features).await
}

/// Starts the local API on a fresh database reached through `uri` (a fault proxy's, see
/// [`crate::proxy::FaultProxy`]), its indexes set up through it.
pub async fn spawn_app_at(uri: &str) -> TestApp {
    spawn_app_on(crate::fresh_db_at(uri).await, local_api::functions).await
}

/// Starts the local API with functions of the test's making (e.g. one with a seam).
pub async fn spawn_app_with(functions: impl FnOnce(&Stack) -> Vec<Arc<dyn HttpFunction>>) -> TestApp {
    spawn_app_on(crate::fresh_db_with_indexes().await, functions).await
}

/// Starts the local API on a database of the test's making (e.g. one whose keyring's KMS is
/// down), with a fresh user pool.
pub async fn spawn_app_on_db(db: Db) -> TestApp {
    spawn_app_on(db, local_api::functions).await
}

/// Starts the local API on a database of the test's making with functions of the test's making:
/// e.g. a database through a fault proxy, and a directory seam that stops it mid-saga.
pub async fn spawn_app_on_db_with(db: Db, functions: impl FnOnce(&Stack) -> Vec<Arc<dyn HttpFunction>>) -> TestApp {
    spawn_app_on(db, functions).await
}

async fn spawn_app_on(db: Db, functions: impl FnOnce(&Stack) -> Vec<Arc<dyn HttpFunction>>) -> TestApp {
    let moto = moto_url();
    let cognito = cognito::client(&moto, REGION);
    let pool = cognito::bootstrap(&cognito, &moto, REGION, &crate::unique_name("pool")).await.expect("bootstrap the pool");
    serve_on(db, functions, cognito, pool).await
}

async fn serve_on(db: Db, functions: impl FnOnce(&Stack) -> Vec<Arc<dyn HttpFunction>>, cognito: Cognito, pool: PoolIds) -> TestApp {
    serve_with(db, functions, cognito, pool, Default::default()).await
}

async fn serve_with(
    db: Db,
    functions: impl FnOnce(&Stack) -> Vec<Arc<dyn HttpFunction>>,
    cognito: Cognito,
    pool: PoolIds,
    features: shared::config::Features,
) -> TestApp {
    let moto = moto_url();
    let config = CognitoConfig {
        region: pool.region.clone(),
        user_pool_id: pool.user_pool_id.clone(),
        client_id: pool.client_id.clone(),
        issuer: pool.issuer.clone(),
        jwks_url: pool.jwks_url.clone(),
    };
    let deps = shared::http::Deps::new(db.clone())
        .with_directory(local_api::moto_directory(&moto, REGION, &pool.user_pool_id))
        .with_features(features);
    let gateway = local_api::gateway_with(deps.clone(), functions(&deps), config).expect("the gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let address = format!("http://{}", listener.local_addr().unwrap());
    let control_token = gateway.control_token.clone();
    let server = tokio::spawn(async move {
        local_api::serve(listener, gateway).await.expect("serve");
    });
    TestApp { address, db, deps, http: reqwest::Client::new(), cognito, pool, control_token, server }
}

impl TestApp {
    /// Runs the jobs worker over this app's queue until the queue is empty, as SQS runs the
    /// deployed one: each handled message is deleted, and one whose step failed stays hidden
    /// (and is not counted). How many messages were handled.
    pub async fn run_jobs(&self) -> usize {
        let exports = self.db.exports().expect("the test database has exports");
        let mut handled = 0;
        // Bounded: a job re-queues itself at most once per step.
        for _ in 0..10_000 {
            let messages = exports.receive(0, 30).await.expect("the jobs queue answers");
            if messages.is_empty() {
                return handled;
            }
            handled += local_api::exports::handle_received(&self.db, self.deps.directory.as_ref(), exports, messages).await;
        }
        panic!("the jobs queue never emptied");
    }

    /// A second local API, as another execution environment of the same deployment: the same
    /// user pool, on `db` (this app's database with, say, another keyring).
    pub async fn beside(&self, db: Db) -> TestApp {
        serve_on(db, local_api::functions, self.cognito.clone(), self.pool.clone()).await
    }

    /// An ID token for a user made on the fly.
    pub async fn token(&self, email: &str, tenant: Option<&str>, groups: &[&str]) -> String {
        cognito::ensure_user(&self.cognito, &self.pool, email, PASSWORD, tenant, groups).await.expect("user");
        cognito::id_token(&self.cognito, &self.pool, email, PASSWORD).await.expect("token")
    }

    /// A platform superadmin's token.
    pub async fn superadmin(&self) -> String {
        self.token("ops@platform.test", None, &[SUPERADMIN_GROUP]).await
    }

    /// A token for a member of `tenant`.
    pub async fn member(&self, email: &str, tenant: &str) -> String {
        self.token(email, Some(tenant), &[]).await
    }

    /// A user as an invitation leaves it, without going through the API: a Cognito user with a
    /// password, and its record (linked to its `sub`, with the named system role and status)
    /// written straight into the database. Returns the record's id and the user's token.
    pub async fn seed_user(&self, tenant: &str, email: &str, role: &str, status: &str) -> (mongodb::bson::oid::ObjectId, String) {
        let sub = cognito::ensure_user(&self.cognito, &self.pool, email, PASSWORD, Some(tenant), &[]).await.expect("user");
        let id = self.seed_record(tenant, email, role, status, &sub).await;
        (id, cognito::id_token(&self.cognito, &self.pool, email, PASSWORD).await.expect("token"))
    }

    /// Writes a user record straight into the database, holding `cognito_user_id` (a `sub`, or
    /// `pending:<id>` when given `""`), and moves the tenant's counters as an invitation would.
    pub async fn seed_record(
        &self,
        tenant: &str,
        email: &str,
        role: &str,
        status: &str,
        cognito_user_id: &str,
    ) -> mongodb::bson::oid::ObjectId {
        use mongodb::bson::doc;
        let role_id = crate::raw_collection(&self.db, "roles")
            .await
            .find_one(doc! {"tenantId": tenant, "name": role})
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("role {role}"))
            .get_object_id("_id")
            .unwrap();
        // Sealed as the service seals it, then written as a document of its own making.
        let tenant_id = shared::ids::TenantId::parse(tenant).unwrap();
        let profile = shared::models::Profile { first_name: "Test".into(), last_name: "User".into(), ..Default::default() };
        let email = shared::ids::Email::parse(email).unwrap();
        let record = users::person::pending_record(&self.db, &tenant_id, &email, &profile, &[]).await.expect("a sealed record");
        let id = record.id;
        let link = if cognito_user_id.is_empty() { format!("pending:{id}") } else { cognito_user_id.to_owned() };
        let now = mongodb::bson::DateTime::now();
        let mut document = mongodb::bson::to_document(&record).unwrap();
        document.extend(doc! {
            "tenantId": tenant, "cognitoUserId": link, "roles": [role_id.to_hex()], "status": status, "createdAt": now, "updatedAt": now,
        });
        crate::raw_collection(&self.db, "users").await.insert_one(document).await.unwrap();
        let admins = i64::from(role == "admin" && status != "inactive");
        crate::raw_collection(&self.db, "tenants")
            .await
            .update_one(doc! {"tenantId": tenant}, doc! {"$inc": {"counters.seats": 1_i64, "counters.admins": admins}})
            .await
            .unwrap();
        id
    }

    /// This month's usage count of a tenant, read straight from its record.
    pub async fn usage(&self, tenant: &str) -> i64 {
        let (month, _) = shared::clock::month_window(self.db.clock().now_ms());
        let record =
            crate::raw_collection(&self.db, "tenants").await.find_one(mongodb::bson::doc! {"tenantId": tenant}).await.unwrap().unwrap();
        record.get_document("apiUsage").ok().and_then(|u| u.get_i64(&month).ok()).unwrap_or(0)
    }

    /// Sets this month's usage count of a tenant straight in its record (to reach a quota).
    pub async fn set_usage(&self, tenant: &str, calls: i64) {
        let (month, _) = shared::clock::month_window(self.db.clock().now_ms());
        crate::raw_collection(&self.db, "tenants")
            .await
            .update_one(mongodb::bson::doc! {"tenantId": tenant}, mongodb::bson::doc! {"$set": {format!("apiUsage.{month}"): calls}})
            .await
            .unwrap();
    }

    /// A request to the API, with a token if given.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.address));
        match token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    /// A request to the API with an API key (`x-api-key`), as a machine client sends it.
    pub fn key_request(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.address)).header("x-api-key", key)
    }

    /// Creates a tenant on `plan` whose admin is `admin_email`: the admin's token and the id.
    pub async fn tenant_with_admin(&self, plan: &str, admin_email: &str) -> (String, String) {
        let superadmin = self.superadmin().await;
        let body = serde_json::json!({"name": "Acme", "adminEmail": admin_email, "plan": plan});
        let id = self.create_tenant(&superadmin, body).await["tenantId"].as_str().unwrap().to_owned();
        (self.member(admin_email, &id).await, id)
    }

    /// Every user of this app's pool in moto, as `(sub, custom:tenantId)`.
    pub async fn cognito_users(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.cognito.list_users().user_pool_id(&self.pool.user_pool_id).set_pagination_token(token.clone()).send().await;
            let page = page.expect("list the pool's users");
            for user in page.users() {
                let attr = |name: &str| user.attributes().iter().find(|a| a.name() == name).and_then(|a| a.value()).map(str::to_owned);
                out.push((attr("sub").unwrap_or_default(), attr("custom:tenantId")));
            }
            token = page.pagination_token().map(str::to_owned);
            if token.is_none() {
                return out;
            }
        }
    }

    /// Creates a tenant as `token`; panics unless it is a 201. Returns `data`.
    pub async fn create_tenant(&self, token: &str, body: Value) -> Value {
        let response = self.request(Method::POST, "/tenants", Some(token)).json(&body).send().await.unwrap();
        let status = response.status();
        let json: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "{json}");
        json["data"].clone()
    }

    /// Sends and returns status, headers and JSON body.
    pub async fn call(&self, builder: RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = builder.send().await.expect("the request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}
