//! `spawn_app`: a running local API on an ephemeral loopback port, with a fresh database (its
//! indexes set up) and a fresh user pool in moto, and helpers for real Cognito tokens.

use aws_sdk_cognitoidentityprovider::Client as Cognito;
use local_api::cognito::{self, PoolIds};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use shared::config::CognitoConfig;
use shared::db::Db;
use shared::identity::SUPERADMIN_GROUP;

/// A password for moto's test users (fake, local only).
pub const PASSWORD: &str = "Test-Passw0rd!";
const REGION: &str = "us-east-1";

/// The moto server the test command started.
pub fn moto_url() -> String {
    std::env::var("TEST_MOTO_URL").unwrap_or_else(|_| "http://127.0.0.1:5000".into())
}

/// A running local API and what it talks to.
pub struct TestApp {
    pub address: String,
    pub db: Db,
    pub http: reqwest::Client,
    pub cognito: Cognito,
    pub pool: PoolIds,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Starts the local API for one test.
pub async fn spawn_app() -> TestApp {
    let db = crate::fresh_db_with_indexes().await;
    let moto = moto_url();
    let cognito = cognito::client(&moto, REGION);
    let pool = cognito::bootstrap(&cognito, &moto, REGION, &crate::unique_name("pool")).await.expect("bootstrap the pool");
    let config = CognitoConfig {
        region: pool.region.clone(),
        user_pool_id: pool.user_pool_id.clone(),
        client_id: pool.client_id.clone(),
        issuer: pool.issuer.clone(),
        jwks_url: pool.jwks_url.clone(),
    };
    let gateway = local_api::gateway(db.clone(), config).expect("the gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let address = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        local_api::serve(listener, gateway).await.expect("serve");
    });
    TestApp { address, db, http: reqwest::Client::new(), cognito, pool, server }
}

impl TestApp {
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

    /// A request to the API, with a token if given.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.address));
        match token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
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
