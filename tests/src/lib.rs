//! The shared test harness: a fresh database per test on the FerretDB that the test command
//! started, and (see `app`) a running local API with its own Cognito pool in moto.

pub mod app;
pub mod faults;
pub mod invariants;
pub mod proxy;

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

/// When `TEST_LOG_DIR` is set (the test command sets it), every log line of this test process,
/// at `trace` (the SDK and HTTP stacks held at `info`, as in the functions), goes to
/// `$TEST_LOG_DIR/it-<pid>.jsonl`, for the scan that finds no personal data in logs. Every
/// test's harness calls this; the first call installs it.
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(dir) = std::env::var_os("TEST_LOG_DIR") else { return };
        std::fs::create_dir_all(&dir).expect("the log directory");
        let path = std::path::Path::new(&dir).join(format!("it-{}.jsonl", std::process::id()));
        let file = std::fs::File::create(&path).expect("the log file");
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter(shared::telemetry::filter("trace"))
            .with_current_span(true)
            .flatten_event(true)
            .with_writer(std::sync::Mutex::new(file))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// A fresh database with its own client (each test has its own runtime), and its personal-data
/// keyring: moto's KMS, and a fresh vault database beside it (`<name>_vault`).
pub async fn fresh_db() -> Db {
    capture_logs();
    with_keyring(Db::connect(&fresh_db_config()).await.expect("connect to the test database")).await
}

/// The KMS master key of this test process, made once in moto (the id outlives the runtime of
/// the test that made it; every test has its own client).
pub async fn kms_key_id() -> String {
    static KEY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    KEY.get_or_init(|| async {
        let client = kms_client(&app::moto_url());
        let key = client.create_key().description("tenancy tests: personal data").send().await.expect("a KMS key in moto");
        key.key_metadata.expect("key metadata").key_id
    })
    .await
    .clone()
}

/// The erasure receipts' signing key of this test process (ECC_NIST_P256, SIGN_VERIFY), made
/// once in moto like the master key.
pub async fn receipt_key_id() -> String {
    static KEY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    KEY.get_or_init(|| async {
        let client = kms_client(&app::moto_url());
        let key = client
            .create_key()
            .description("tenancy tests: erasure receipts")
            .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
            .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
            .send()
            .await
            .expect("a signing key in moto");
        key.key_metadata.expect("key metadata").key_id
    })
    .await
    .clone()
}

/// moto's KMS signing with this process's receipt key.
pub async fn receipt_signer() -> std::sync::Arc<shared::receipt::KmsReceiptSigner> {
    std::sync::Arc::new(shared::receipt::KmsReceiptSigner::with_client(kms_client(&app::moto_url()), receipt_key_id().await))
}

/// A KMS client for an endpoint (moto, or a closed port for the KMS-down path).
pub fn kms_client(endpoint: &str) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&local_api::cognito::moto_config(endpoint, "us-east-1"))
}

/// The name of `db`'s vault database.
pub fn vault_name(db: &Db) -> String {
    format!("{}_vault", db.name())
}

/// The vault of `db`, through a client of the test's own.
pub async fn vault_database(db: &Db) -> mongodb::Database {
    mongodb::Client::with_uri_str(mongodb_uri()).await.expect("client").database(&vault_name(db))
}

/// The vault's record of `tenant`'s data keys (wrapped keys only), read directly.
pub async fn tenant_keys(db: &Db, tenant: &str) -> mongodb::bson::Document {
    let vault = vault_database(db).await.collection::<mongodb::bson::Document>("tenantKeys");
    vault.find_one(mongodb::bson::doc! {"_id": tenant}).await.expect("the vault answers").expect("the tenant's keys")
}

/// A keyring on `db`'s vault over `wrapper` (a counting or failing KMS in some tests).
pub async fn keyring_with(db: &Db, wrapper: std::sync::Arc<dyn shared::pii::KeyWrapper>) -> std::sync::Arc<shared::pii::Keyring> {
    let vault = shared::pii::KeyVault::new(vault_database(db).await);
    std::sync::Arc::new(shared::pii::Keyring::new(wrapper, vault, db.clock().clone()))
}

/// moto's KMS under this process's master key.
pub async fn moto_kms() -> std::sync::Arc<shared::pii::AwsKms> {
    std::sync::Arc::new(shared::pii::AwsKms::with_client(kms_client(&app::moto_url()), kms_key_id().await))
}

/// `db` with a keyring on moto's KMS and its own vault, and the erasure receipts' signer.
pub async fn with_keyring(db: Db) -> Db {
    capture_logs();
    let keyring = keyring_with(&db, moto_kms().await).await;
    let exports = test_exports().await;
    db.with_keyring(keyring).with_signer(receipt_signer().await).with_exports(exports)
}

/// The export bucket of this test process (made once in moto, versioned) and a jobs queue of
/// the database's own, so that a test's worker takes only its own jobs.
pub async fn test_exports() -> std::sync::Arc<shared::exports::Exports> {
    let moto = app::moto_url();
    let mut config = local_api::exports::local_config(&moto);
    config.bucket = "tenancy-test-exports".into();
    config.queue_url = config.queue_url.replace(local_api::exports::LOCAL_QUEUE, &unique_name("jobs"));
    local_api::exports::ensure(&config, &moto, app::REGION).await.expect("the export bucket and a jobs queue in moto");
    local_api::exports::on_moto(config, &moto, app::REGION)
}

/// A fresh database with its keyring, reached through `uri` (a [`proxy::FaultProxy`]'s), with
/// the migrations `setup` applied through it.
pub async fn fresh_db_at(uri: &str) -> Db {
    capture_logs();
    // The deployed selection timeout (3 s), not the tests' 10 s: a call that does reach the
    // driver during an outage fails as a deployed one would.
    let config = DbConfig { uri: uri.to_owned(), server_selection_timeout: Duration::from_secs(3), ..fresh_db_config() };
    let db = with_keyring(Db::connect(&config).await.expect("connect through the proxy")).await;
    migrations::setup(&db).await.expect("setup");
    db
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

/// A member of `tenant` (by its `sub`) admitted as the local API admits it: for tests that call
/// a context's services directly with a fault seam.
pub async fn member_context(db: &Db, tenant: &str, sub: &str) -> shared::TenantContext {
    let event = serde_json::json!({
        "resource": "/users", "path": "/users", "httpMethod": "POST", "headers": {},
        "requestContext": {"requestId": "service-test", "resourcePath": "/users", "httpMethod": "POST",
            "authorizer": {"principalType": "user", "sub": sub, "email": "", "emailVerified": false,
                "groups": "[]", "tenantId": tenant, "apiKeyId": "", "createdBy": "", "permissions": "[]"}},
        "body": null, "isBase64Encoded": false
    });
    let identity = shared::Identity::from_request(&lambda_http::request::from_str(&event.to_string()).unwrap()).expect("an identity");
    shared::TenantContext::admit(db, &identity, None, shared::admission::Quota::Enforce).await.expect("admitted")
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

/// The stored user record of `email`, in whichever tenant holds it: found as the service finds
/// it, by each tenant's blind index (the e-mail itself is stored only sealed).
pub async fn user_by_email(db: &Db, email: &str) -> Option<mongodb::bson::Document> {
    use mongodb::bson::doc;
    let email = shared::ids::Email::parse(email).expect("an e-mail");
    let users = raw_collection(db, "users").await;
    let tenants = users.distinct("tenantId", doc! {}).await.expect("tenant ids");
    for tenant in tenants.iter().filter_map(|t| t.as_str()).filter_map(|t| shared::ids::TenantId::parse(t).ok()) {
        let Ok(hash) = db.keyring().expect("a keyring").email_index(&tenant, &email).await else { continue };
        if let Some(found) = users.find_one(doc! {"tenantId": tenant.as_str(), "emailHash": hash}).await.expect("a read") {
            return Some(found);
        }
    }
    None
}

/// The built `local-api`, beside the test executable (the test command builds it first).
pub fn local_api_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.parent().and_then(|deps| deps.parent()).expect("target/debug").join("local-api")
}

/// The environment of a `local-api` process on `db` and the moto pool `pool`, with this test
/// process's KMS key (so that both read the same vault), serving on a free loopback port.
pub async fn local_api_env(db: &Db, pool: &local_api::cognito::PoolIds) -> Vec<(&'static str, String)> {
    let moto = app::moto_url();
    vec![
        ("MONGODB_URI", mongodb_uri()),
        ("MONGODB_DATABASE", db.name().to_owned()),
        ("KMS_KEY_ID", kms_key_id().await),
        ("RECEIPT_KEY_ID", receipt_key_id().await),
        ("KEY_VAULT_DATABASE", vault_name(db)),
        ("AWS_ENDPOINT_URL_KMS", moto.clone()),
        ("AWS_REGION", pool.region.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("MOTO_URL", moto),
        ("COGNITO_REGION", pool.region.clone()),
        ("COGNITO_USER_POOL_ID", pool.user_pool_id.clone()),
        ("COGNITO_CLIENT_ID", pool.client_id.clone()),
        ("COGNITO_ISSUER", pool.issuer.clone()),
        ("COGNITO_JWKS_URL", pool.jwks_url.clone()),
        ("LOCAL_API_PORT", "0".into()),
        ("RUST_LOG", "warn".into()),
    ]
}

/// `local-api serve` with exactly `env` (nothing inherited), from `dir`, its stderr piped (where
/// it names the address it listens on) and killed if dropped.
pub fn local_api_serve(env: &[(&'static str, String)], dir: &std::path::Path) -> tokio::process::Child {
    let bin = local_api_bin();
    tokio::process::Command::new(&bin)
        .arg("serve")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (the test command builds it first)", bin.display()))
}
