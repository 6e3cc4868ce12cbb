//! Secrets Manager, read once at cold start: the database connection string is never a plain
//! environment variable of a deployed function, where `lambda:GetFunctionConfiguration` would
//! show it. Locally the same path reads moto's Secrets Manager
//! (`AWS_ENDPOINT_URL_SECRETS_MANAGER`), which the run and test scripts seed.

use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Why a secret could not be read. Never carries the secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("Secrets Manager refused or failed GetSecretValue: {0}")]
    Fetch(String),
    #[error("the secret has no SecretString")]
    NotAString,
}

static CONFIG: LazyLock<OnceCell<aws_config::SdkConfig>> = LazyLock::new(OnceCell::new);

/// The AWS SDK configuration of this process (region, credentials, and locally the endpoints
/// from `AWS_ENDPOINT_URL_*`), loaded once and shared by every client: loading it is most of an
/// SDK client's cost at cold start. Calls time out, so that a hung service becomes a clean error.
pub async fn sdk_config() -> &'static aws_config::SdkConfig {
    CONFIG
        .get_or_init(|| async {
            let timeouts = aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(5))
                .connect_timeout(Duration::from_secs(2))
                .build();
            aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts).load().await
        })
        .await
}

/// The `SecretString` of the secret `arn` (an ARN or a name).
pub async fn secret_string(arn: &str) -> Result<String, SecretError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk_config().await);
    let output = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretError::Fetch(aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string()))?;
    output.secret_string.ok_or(SecretError::NotAString)
}
