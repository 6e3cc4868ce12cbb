//! `sam local invoke` without Docker: runs a built Lambda binary as Lambda would, under a local
//! Runtime API on 127.0.0.1 that hands it one event and takes its answer. The arm64 zips can't
//! run on an x86_64 machine; the host build of the same binary can, with the same `main`, the
//! same cold start (the connection string read from Secrets Manager) and the same stdout.

use crate::BoxError;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

/// template.yaml: which binary each function runs (its `BuildProperties.Binary`).
const TEMPLATE: &str = include_str!("../../../template.yaml");

/// What one invocation came to.
#[derive(Debug)]
pub struct Invocation {
    /// The handler's response, or the error document it (or its init) posted; `None` when the
    /// process exited before posting anything (a failed cold start).
    pub outcome: Option<Result<Value, Value>>,
    /// The process's exit status, if it exited by itself.
    pub exit: Option<std::process::ExitStatus>,
    /// Its stdout, line by line: the JSON log lines and the metric (EMF) lines.
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Invocation {
    /// The EMF lines of stdout (the JSON objects with an `_aws` member).
    pub fn metric_lines(&self) -> Vec<Value> {
        self.stdout.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get("_aws").is_some()).collect()
    }
}

/// Every function's binary, by logical id, as template.yaml builds them.
pub fn function_binaries() -> HashMap<String, String> {
    let mut binaries = HashMap::new();
    let mut resource: Option<&str> = None;
    for line in TEMPLATE.lines() {
        // Resources sit at two spaces of indent; their properties deeper.
        if line.len() > 2 && line.starts_with("  ") && !line.starts_with("   ") && line.trim_end().ends_with(':') {
            resource = Some(line.trim().trim_end_matches(':'));
        } else if let (Some(name), Some(binary)) = (resource, line.trim().strip_prefix("Binary:")) {
            binaries.insert(name.to_owned(), binary.trim().to_owned());
        }
    }
    binaries
}

/// The binary of the function an event goes to.
pub fn binary_for_event(file_name: &str, event: &Value) -> Result<String, String> {
    let function = crate::dispatch::function_for_event(file_name, event)?;
    function_binaries().remove(&function).ok_or(format!("template.yaml builds no binary for {function}"))
}

#[derive(Default)]
struct Exchange {
    event: Option<Value>,
    done: Option<oneshot::Sender<Result<Value, Value>>>,
}

type Shared = Arc<Mutex<Exchange>>;

const PREFIX: &str = "/2018-06-01/runtime";

/// Runs `binary` with exactly `env` (plus the Lambda runtime's own variables), hands it `event`,
/// and returns what it answered with its output. The process is stopped afterwards; `timeout`
/// bounds the whole invocation.
pub async fn invoke(binary: &Path, env: &[(String, String)], event: Value, timeout: Duration) -> Result<Invocation, BoxError> {
    let (done_tx, done_rx) = oneshot::channel();
    let exchange: Shared = Arc::new(Mutex::new(Exchange { event: Some(event), done: Some(done_tx) }));
    let app = Router::new()
        .route(&format!("{PREFIX}/invocation/next"), get(next))
        .route(&format!("{PREFIX}/invocation/{{id}}/response"), post(respond))
        .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(fail))
        .route(&format!("{PREFIX}/init/error"), post(fail))
        .with_state(exchange);
    // Loopback only, on a port of its own.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let name = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", &name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    // Read both pipes while the process runs, so that a full pipe never stalls it.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let stdout = tokio::spawn(async move {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s).await;
        s
    });
    let stderr = tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    });

    let (outcome, exit) = tokio::select! {
        answered = done_rx => (answered.ok(), None),
        exited = child.wait() => (None, exited.ok()),
        _ = tokio::time::sleep(timeout) => (None, None),
    };
    // An answered process waits for its next event: stop it, as Lambda freezes it.
    let _ = child.start_kill();
    let exit = match exit {
        Some(status) => Some(status),
        None => child.wait().await.ok().filter(|_| outcome.is_none()),
    };
    server.abort();
    let stdout = stdout.await.unwrap_or_default();
    Ok(Invocation { outcome, exit, stdout: stdout.lines().map(str::to_owned).collect(), stderr: stderr.await.unwrap_or_default() })
}

async fn next(State(exchange): State<Shared>) -> axum::response::Response {
    let event = exchange.lock().expect("poisoned").event.take();
    let Some(event) = event else {
        // One event per process: the next one never comes, as for a frozen Lambda.
        return std::future::pending().await;
    };
    let deadline = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default() + Duration::from_secs(60);
    axum::response::Response::builder()
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", "local-invocation-1")
        .header("lambda-runtime-deadline-ms", deadline.as_millis().to_string())
        .header("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:local")
        .header("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000")
        .body(axum::body::Body::from(event.to_string()))
        .expect("a valid response")
}

async fn respond(State(exchange): State<Shared>, body: axum::body::Bytes) -> http::StatusCode {
    finish(&exchange, Ok(serde_json::from_slice(&body).unwrap_or(Value::Null)));
    http::StatusCode::ACCEPTED
}

async fn fail(State(exchange): State<Shared>, body: axum::body::Bytes) -> http::StatusCode {
    finish(&exchange, Err(serde_json::from_slice(&body).unwrap_or(Value::Null)));
    http::StatusCode::ACCEPTED
}

fn finish(exchange: &Shared, outcome: Result<Value, Value>) {
    if let Some(done) = exchange.lock().expect("poisoned").done.take() {
        let _ = done.send(outcome);
    }
}

/// The admin panel's origin the local functions allow (template.yaml's `AdminPanelOrigin`).
pub const LOCAL_ADMIN_PANEL_ORIGIN: &str = crate::gateway::DEFAULT_ADMIN_PANEL_ORIGIN;

/// The name under which the local stack keeps the connection string in moto's Secrets Manager.
pub const URI_SECRET_NAME: &str = "tenancy-local/mongodb-uri";

/// What a deployed function finds in AWS, locally: the user pool, moto's URL (every AWS
/// endpoint), the connection string's secret, the KMS master key and the receipt-signing key.
#[derive(Debug, Clone, Copy)]
pub struct LocalAws<'a> {
    pub pool: &'a crate::cognito::PoolIds,
    pub moto_url: &'a str,
    pub secret_arn: &'a str,
    pub kms_key_id: &'a str,
    pub receipt_key_id: &'a str,
}

/// A clearly fake SES identity for the local stack: sign-up refuses to start without one, and
/// moto sends no mail anyway.
pub const LOCAL_SES_IDENTITY_ARN: &str = "arn:aws:ses:us-east-1:000000000000:identity/local.example";

/// The switches the local stack's functions run with: sign-up on ([`function_env`]'s).
pub fn local_features() -> shared::config::Features {
    let env = shared::config::Env(|name: &str| match name {
        "SELF_SERVICE_SIGNUP" => Some("true".to_owned()),
        "SES_IDENTITY_ARN" => Some(LOCAL_SES_IDENTITY_ARN.to_owned()),
        _ => None,
    });
    shared::config::Features::from_env(&env).expect("the local switches are valid")
}

/// A function's environment as template.yaml gives it, pointed at the local stack: the
/// connection string's secret (never the URI itself), the database, the KMS master key and the
/// vault database beside the data (the local vault has no cluster of its own), the pool, moto as
/// every AWS endpoint with clearly fake credentials, the export bucket and the jobs queue, and
/// the metrics' service name; and sign-up on.
pub fn function_env(aws: &LocalAws<'_>, database: &str) -> Vec<(String, String)> {
    let LocalAws { pool, moto_url, secret_arn, kms_key_id, receipt_key_id } = *aws;
    let vault = format!("{database}_vault");
    let exports = crate::exports::local_config(moto_url);
    let pairs = [
        ("MONGODB_URI_SECRET_ARN", secret_arn),
        ("MONGODB_DATABASE", database),
        ("KMS_KEY_ID", kms_key_id),
        ("RECEIPT_KEY_ID", receipt_key_id),
        ("KEY_VAULT_DATABASE", &vault),
        ("AWS_ENDPOINT_URL_KMS", moto_url),
        ("COGNITO_REGION", &pool.region),
        ("COGNITO_USER_POOL_ID", &pool.user_pool_id),
        ("COGNITO_CLIENT_ID", &pool.client_id),
        ("COGNITO_ISSUER", &pool.issuer),
        ("COGNITO_JWKS_URL", &pool.jwks_url),
        ("AWS_REGION", &pool.region),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_url),
        ("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER", moto_url),
        ("AWS_ENDPOINT_URL_S3", moto_url),
        ("AWS_ENDPOINT_URL_SQS", moto_url),
        ("EXPORT_BUCKET", &exports.bucket),
        ("JOBS_QUEUE_URL", &exports.queue_url),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("METRICS_SERVICE", "tenancy-local"),
        ("CORS_ALLOWED_ORIGIN", LOCAL_ADMIN_PANEL_ORIGIN),
        ("RUST_LOG", "info"),
        // The local stack runs with sign-up on, as the contract run does.
        ("SELF_SERVICE_SIGNUP", "true"),
        ("SES_IDENTITY_ARN", LOCAL_SES_IDENTITY_ARN),
    ];
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Runs one event of `events/` as `sam local invoke` would: prepares what it needs in `stack`'s
/// database, and invokes the binary of its function from `bin_dir` with a deployed function's
/// environment on the local stack (`aws`). Returns the binary's name and what the invocation
/// came to.
pub async fn invoke_event(
    bin_dir: &Path,
    stack: &crate::Stack,
    aws: &LocalAws<'_>,
    file_name: &str,
    event: Value,
) -> Result<(String, Invocation), BoxError> {
    // The binary reads and writes the local bucket and queue: so do its fixtures.
    let exports = crate::exports::local_config(aws.moto_url);
    crate::exports::ensure(&exports, aws.moto_url, &aws.pool.region).await?;
    let mut stack = stack.clone();
    stack.db = stack.db.clone().with_exports(crate::exports::on_moto(exports, aws.moto_url, &aws.pool.region));
    crate::fixtures::prepare_for_event(&stack, file_name, &event).await?;
    let binary = binary_for_event(file_name, &event)?;
    let env = function_env(aws, stack.db.name());
    let run = invoke(&bin_dir.join(&binary), &env, event, INVOCATION_TIMEOUT).await?;
    Ok((binary, run))
}

/// How long one local invocation may take, cold start included.
pub const INVOCATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Stores `value` as the secret `name` in the Secrets Manager at `endpoint` (moto), creating or
/// updating it, and returns its ARN: what the run and test scripts seed for the functions.
pub async fn put_secret(endpoint: &str, region: &str, name: &str, value: &str) -> Result<String, BoxError> {
    let client = aws_sdk_secretsmanager::Client::new(&crate::cognito::moto_config(endpoint, region));
    match client.create_secret().name(name).secret_string(value).send().await {
        Ok(created) => Ok(created.arn.unwrap_or_default()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_exists_exception()) => {
            let updated = client.put_secret_value().secret_id(name).secret_string(value).send().await?;
            Ok(updated.arn.unwrap_or_default())
        }
        Err(e) => Err(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_of_the_template_has_its_binary() {
        let binaries = function_binaries();
        assert_eq!(binaries.get("UsersFunction").map(String::as_str), Some("users"));
        assert_eq!(binaries.get("AuthorizerFunction").map(String::as_str), Some("authorizer"));
        assert_eq!(binaries.get("MigrationsFunction").map(String::as_str), Some("migrations"));
        let functions = TEMPLATE.matches("Type: AWS::Serverless::Function").count();
        assert_eq!(binaries.len(), functions);
    }
}
