//! The local stack's own surface (docs/ARCHITECTURE.md §6): the control route and its token,
//! the local gateway's answers when it cannot decide, its header cap, and a handler that runs to
//! completion after its client hangs up.
//!
//! `the_serving_binary_*` runs the built `target/debug/local-api` (as `binaries` runs the
//! functions' binaries): the test command builds every binary before the suites.

use futures_util::future::BoxFuture;
use local_api::control::{self, ControlToken, CONTROL_TOKEN_HEADER};
use local_api::Stack;
use mongodb::bson::doc;
use reqwest::Method;
use serde_json::{json, Value};
use shared::directory::{Directory, DirectoryError, DirectoryUser, SharedDirectory};
use shared::http::{BoxedResponse, Hosted, HttpFunction, Request};
use shared::ids::{Email, TenantId};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenancy_tests::app::{moto_url, spawn_app, spawn_app_on_db, spawn_app_with};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};

const REGION: &str = "us-east-1";
/// A well-formed key (`tk_<24 hex>_<43 base64url>`) that names no key.
const WELL_FORMED_KEY: &str = "tk_0123456789abcdef01234567_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn the_local_control_route_refuses_a_caller_without_the_serving_process_s_token() {
    let app = spawn_app().await;
    let url = format!("{}{}", app.address, local_api::LOCAL_MIGRATIONS_PATH);
    let up = json!({"action": "up"});
    let another = ControlToken::generate().unwrap();
    let refused = [
        app.http.post(&url).json(&up),
        app.http.post(&url).header(CONTROL_TOKEN_HEADER, another.expose()).json(&up),
        app.http.post(&url).header(CONTROL_TOKEN_HEADER, &app.control_token.expose()[..63]).json(&up),
        app.http.post(&url).header(CONTROL_TOKEN_HEADER, "").json(&up),
        // The right token in another header is no credential.
        app.http.post(&url).bearer_auth(app.control_token.expose()).json(&up),
    ];
    for call in refused {
        let (status, _, body) = app.call(call).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["message"], "Unauthorized");
    }
    let migrations::Report::Status { applied, .. } =
        migrations::run(&app.db, app.deps.directory.as_ref(), migrations::Action::Status).await.unwrap()
    else {
        panic!("a status report")
    };
    assert!(applied.is_empty(), "no refused call ran anything");
    let (status, _, body) =
        app.call(app.http.post(&url).header(CONTROL_TOKEN_HEADER, app.control_token.expose()).json(&json!({"action": "status"}))).await;
    assert_eq!(status, 200, "{body}");
}

/// `shred` of a tenant the registry does not hold is refused with a 404 naming the id, and
/// writes nothing.
#[tokio::test]
async fn shredding_an_unknown_tenant_through_the_local_route_is_a_404() {
    let app = spawn_app().await;
    let url = format!("{}{}", app.address, local_api::LOCAL_MIGRATIONS_PATH);
    let event = json!({"action": "shred", "tenantId": "tn_nosuchtenant"});
    let (status, headers, body) = app.call(app.http.post(&url).header(CONTROL_TOKEN_HEADER, app.control_token.expose()).json(&event)).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("tn_nosuchtenant")), "{body}");
    assert!(retry_after(&headers).is_none());
}

/// The local route answers a fault as a function would: a status and a message of our own, the
/// cause in the log only; and its event errors are a 400, not a 500.
#[tokio::test]
async fn a_failing_local_migration_answers_without_its_internal_error_text() {
    let mut cfg = tenancy_tests::fresh_db_config();
    // A loopback port nothing listens on; a short timeout keeps the test quick.
    cfg.uri = "mongodb://127.0.0.1:9/".into();
    cfg.server_selection_timeout = Duration::from_millis(300);
    let app = spawn_app_on_db(shared::db::Db::connect(&cfg).await.unwrap()).await;
    let url = format!("{}{}", app.address, local_api::LOCAL_MIGRATIONS_PATH);
    let post = |event: Value| app.http.post(&url).header(CONTROL_TOKEN_HEADER, app.control_token.expose()).json(&event);
    let (status, headers, body) = app.call(post(json!({"action": "status"}))).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after(&headers).is_some_and(|s| s > 0), "a 503 says when to retry: {headers:?}");
    assert_eq!(body["message"], "The database is temporarily unavailable; try again shortly");
    let text = body.to_string().to_lowercase();
    for internal in ["127.0.0.1:9", "server selection", "database error", "timed out", "kind:"] {
        assert!(!text.contains(internal), "{internal:?} leaked: {body}");
    }
    let (status, headers, body) = app.call(post(json!({"action": "shred"}))).await;
    assert_eq!(status, 400, "an event without its tenant is the caller's mistake: {body}");
    assert!(retry_after(&headers).is_none());
}

/// A key whose authorizer cannot reach the database, and a token whose signing keys cannot be
/// fetched: each is API Gateway's AUTHORIZER_FAILURE, a 503 with Retry-After, never an allow
/// and never a 500.
#[tokio::test]
async fn an_authorizer_that_cannot_decide_answers_503_with_retry_after() {
    let mut cfg = tenancy_tests::fresh_db_config();
    cfg.uri = "mongodb://127.0.0.1:9/".into();
    cfg.server_selection_timeout = Duration::from_millis(300);
    let app = spawn_app_on_db(shared::db::Db::connect(&cfg).await.unwrap()).await;
    let (status, headers, body) = app.call(app.key_request(Method::GET, "/users", WELL_FORMED_KEY)).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after(&headers).is_some_and(|s| s > 0), "{headers:?}");
    assert!(headers.get("access-control-allow-origin").is_some(), "a gateway response a browser can read");

    // The JWKS unreachable: a gateway whose pool's keys are at a closed port, and a real token.
    let healthy = spawn_app().await;
    let token = healthy.superadmin().await;
    let member = healthy.member("m@jwks.example", "tn_jwksdown").await;
    let config = shared::config::CognitoConfig {
        region: healthy.pool.region.clone(),
        user_pool_id: healthy.pool.user_pool_id.clone(),
        client_id: healthy.pool.client_id.clone(),
        issuer: healthy.pool.issuer.clone(),
        jwks_url: "http://127.0.0.1:9/.well-known/jwks.json".into(),
    };
    let deps = healthy.deps.clone();
    let gateway = local_api::gateway_with(deps.clone(), local_api::functions(&deps), config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(local_api::serve(listener, gateway));
    for (path, token) in [("/tenants", &token), ("/users", &member)] {
        let response = healthy.http.get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 503, "{path}: {body}");
        assert!(retry_after(&headers).is_some_and(|s| s > 0), "{path}: {headers:?}");
    }
    server.abort();
}

/// API Gateway caps a REST request's line and headers at 10,240 bytes and answers a 413 past
/// it; a 413 or a 404 says nothing about retrying.
#[tokio::test]
async fn the_local_gateway_caps_request_headers_as_api_gateway_does() {
    let app = spawn_app().await;
    let token = app.superadmin().await;
    let fits = "a".repeat(8_000);
    let (status, _, body) = app.call(app.request(Method::GET, "/tenants", Some(&token)).header("x-filler", &fits)).await;
    assert_eq!(status, 200, "{body}");
    let too_long = "a".repeat(local_api::gateway::MAX_REQUEST_LINE_AND_HEADERS);
    let (status, headers, body) = app.call(app.request(Method::GET, "/tenants", Some(&token)).header("x-filler", &too_long)).await;
    assert_eq!(status, 413, "{body}");
    assert!(retry_after(&headers).is_none());
    // Split over many headers, the sum counts.
    let mut split = app.request(Method::GET, "/tenants", Some(&token));
    for i in 0..12 {
        split = split.header(format!("x-filler-{i}"), "b".repeat(1_000));
    }
    assert_eq!(app.call(split).await.0, 413);
    let (status, headers, _) = app.call(app.request(Method::GET, "/nowhere", None)).await;
    assert_eq!(status, 404);
    assert!(retry_after(&headers).is_none());
}

/// A directory whose user creation waits until the test lets it go.
#[derive(Debug)]
struct Held {
    inner: SharedDirectory,
    reached: Mutex<Option<oneshot::Sender<()>>>,
    release: Arc<Notify>,
}

impl Directory for Held {
    fn create_user<'a>(&'a self, email: &'a Email, tenant: &'a TenantId) -> BoxFuture<'a, Result<String, DirectoryError>> {
        Box::pin(async move {
            let reached = self.reached.lock().unwrap().take();
            if let Some(reached) = reached {
                let _ = reached.send(());
                self.release.notified().await;
            }
            self.inner.create_user(email, tenant).await
        })
    }
    fn get_user<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<Option<DirectoryUser>, DirectoryError>> {
        self.inner.get_user(email)
    }
    fn delete_user<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<(), DirectoryError>> {
        self.inner.delete_user(email)
    }
    fn set_enabled<'a>(&'a self, email: &'a Email, enabled: bool) -> BoxFuture<'a, Result<(), DirectoryError>> {
        self.inner.set_enabled(email, enabled)
    }
}

/// Says how the first request a function got ended: `completed`, or `dropped` halfway.
struct Watched {
    inner: Arc<dyn HttpFunction>,
    outcome: Mutex<Option<oneshot::Sender<&'static str>>>,
}

struct Outcome(Option<oneshot::Sender<&'static str>>);

impl Drop for Outcome {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send("dropped");
        }
    }
}

impl HttpFunction for Watched {
    fn logical_id(&self) -> &'static str {
        self.inner.logical_id()
    }
    fn handle(&self, req: Request) -> BoxedResponse<'_> {
        Box::pin(async move {
            let first = self.outcome.lock().unwrap().take();
            let mut outcome = Outcome(first);
            let response = self.inner.handle(req).await;
            if let Some(tx) = outcome.0.take() {
                let _ = tx.send("completed");
            }
            response
        })
    }
}

/// A Lambda runs to completion whatever its client does. The client sends an invitation, and
/// hangs up while the handler waits on Cognito; the server notices (it closes the connection),
/// and only then does Cognito answer. The invitation completes: the user exists in Cognito and
/// its record is linked, not left half-made.
#[tokio::test]
async fn a_request_whose_client_hangs_up_mid_flight_still_completes_its_writes() {
    let release = Arc::new(Notify::new());
    let (reached_tx, reached) = oneshot::channel();
    let (outcome_tx, outcome) = oneshot::channel();
    let held_release = release.clone();
    let app = spawn_app_with(move |deps: &Stack| {
        let held: SharedDirectory =
            Arc::new(Held { inner: deps.directory.clone(), reached: Mutex::new(Some(reached_tx)), release: held_release });
        let users: Arc<dyn HttpFunction> = Arc::new(Hosted::new(users::LOGICAL_ID, deps.clone().with_directory(held), users::handle));
        let mut functions: Vec<Arc<dyn HttpFunction>> =
            local_api::functions(deps).into_iter().filter(|f| f.logical_id() != users::LOGICAL_ID).collect();
        functions.push(Arc::new(Watched { inner: users, outcome: Mutex::new(Some(outcome_tx)) }));
        functions
    })
    .await;
    let (admin, tenant) = app.tenant_with_admin("basic", "admin@hangup.example").await;

    let body = json!({"email": "late@hangup.example", "firstName": "L", "lastName": "H"}).to_string();
    let address = app.address.trim_start_matches("http://");
    let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST /users HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(request.as_bytes()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), reached).await.expect("the invitation reaches Cognito").unwrap();
    // The client hangs up; the server closes the connection once it has noticed.
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), client.read_to_end(&mut rest)).await.expect("the server notices the hang-up").unwrap();
    assert!(rest.is_empty(), "no answer went to a client that left: {}", String::from_utf8_lossy(&rest));
    release.notify_one();
    let ended = tokio::time::timeout(Duration::from_secs(30), outcome).await.expect("the handler ends").unwrap();
    assert_eq!(ended, "completed", "the handler was cancelled with its client");

    let email = Email::parse("late@hangup.example").unwrap();
    let made = app.deps.directory.get_user(&email).await.unwrap().expect("the Cognito user was made");
    let users = tenancy_tests::raw_collection(&app.db, "users").await;
    let linked = users.count_documents(doc! {"tenantId": &tenant, "cognitoUserId": &made.sub}).await.unwrap();
    assert_eq!(linked, 1, "the invitation's record is linked to its Cognito user");
    let pending = users.count_documents(doc! {"tenantId": &tenant, "cognitoUserId": {"$regex": "^pending:"}}).await.unwrap();
    assert_eq!(pending, 0, "nothing half-made");
}

/// The built binary, end to end: `serve` writes its token file (0600) under the checkout found
/// from its own path, whatever its working directory; `migrate`, from another directory, finds
/// the port in the lease and the token in the file; the lease carries neither; the file goes
/// when the server stops on SIGTERM.
#[tokio::test]
async fn the_serving_binary_writes_its_control_token_and_migrate_finds_it_from_anywhere() {
    let bin = tenancy_tests::local_api_bin();
    let db = tenancy_tests::fresh_db_with_indexes().await;
    let moto = moto_url();
    let client = local_api::cognito::client(&moto, REGION);
    let pool = local_api::cognito::bootstrap(&client, &moto, REGION, &tenancy_tests::unique_name("pool")).await.unwrap();
    let env = tenancy_tests::local_api_env(&db, &pool).await;
    let elsewhere = std::env::temp_dir();
    let mut serve = tenancy_tests::local_api_serve(&env, &elsewhere);
    let mut lines = tokio::io::BufReader::new(serve.stderr.take().unwrap()).lines();
    let port: u16 = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(address) = line.strip_prefix("local API listening on http://") {
                return address.rsplit(':').next().unwrap().parse().unwrap();
            }
            eprintln!("serve: {line}");
        }
        panic!("serve exited before listening");
    })
    .await
    .expect("serve starts");

    let checkout = control::checkout().unwrap();
    let path = control::token_path(&checkout, port);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only its user reads the token");
    }
    let token = control::read_token(&checkout, port).unwrap();
    let lease = tenancy_tests::raw_collection(&db, "locks").await.find(doc! {}).await.unwrap();
    let leases: Vec<_> = futures_util::TryStreamExt::try_collect(lease).await.unwrap();
    let stored = format!("{leases:?}");
    assert!(stored.contains(&format!("serve@127.0.0.1:{port}")), "{stored}");
    assert!(!stored.contains(token.expose()) && !stored.contains(".cache") && !stored.contains(".token"), "{stored}");

    let url = format!("http://127.0.0.1:{port}{}", local_api::LOCAL_MIGRATIONS_PATH);
    let http = reqwest::Client::new();
    let without = http.post(&url).json(&json!({"action": "status"})).send().await.unwrap();
    assert_eq!(without.status(), 401);

    let migrate = tokio::process::Command::new(&bin)
        .args(["migrate", "status"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir("/")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&migrate.stdout), String::from_utf8_lossy(&migrate.stderr));
    assert!(migrate.status.success(), "{stderr}");
    assert!(stderr.contains("running status through it"), "it went through the serving API: {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["action"], "status");

    let pid = serve.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exited = tokio::time::timeout(Duration::from_secs(30), serve.wait()).await.expect("serve stops on SIGTERM").unwrap();
    assert!(exited.success(), "{exited:?}");
    assert!(!path.exists(), "the token file goes with its server");
}
