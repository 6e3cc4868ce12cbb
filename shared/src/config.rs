//! Typed configuration from the environment, read once at cold start. A missing variable fails
//! fast and is named; values are never logged.

use std::time::Duration;

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("missing environment variable {0}")]
    Missing(&'static str),
    #[error("environment variable {0} is invalid: {1}")]
    Invalid(&'static str, String),
}

/// Where the database is and how the client is sized.
#[derive(Clone, PartialEq, Eq)]
pub struct DbConfig {
    pub uri: String,
    pub database: String,
    pub app_name: String,
    pub max_pool_size: u32,
    pub server_selection_timeout: Duration,
}

impl std::fmt::Debug for DbConfig {
    // The URI may carry a password: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConfig").field("database", &self.database).field("app_name", &self.app_name).finish()
    }
}

/// The Cognito user pool, and where its tokens are checked. The issuer and the JWKS URL are
/// separate settings: locally the issuer names AWS while the keys come from moto
/// (docs/ARCHITECTURE.md §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoConfig {
    pub region: String,
    pub user_pool_id: String,
    pub client_id: String,
    pub issuer: String,
    pub jwks_url: String,
}

/// The user pool the platform administers through the admin API (users, tenants, migrations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub user_pool_id: String,
}

impl PoolConfig {
    /// `COGNITO_USER_POOL_ID`. The endpoint comes from the SDK's own configuration
    /// (`AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER` locally, for moto).
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self { user_pool_id: env.required("COGNITO_USER_POOL_ID")? })
    }
}

/// Reads variables through a lookup function, so that tests need not touch the process env.
pub struct Env<F: Fn(&str) -> Option<String>>(pub F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        (self.0)(name).filter(|v| !v.trim().is_empty()).ok_or(ConfigError::Missing(name))
    }
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }
}

/// The process environment.
pub fn process_env() -> Env<impl Fn(&str) -> Option<String>> {
    Env(|name: &str| std::env::var(name).ok())
}

/// The variable that names the Secrets Manager secret holding the connection string.
pub const URI_SECRET_VARIABLE: &str = "MONGODB_URI_SECRET_ARN";

impl DbConfig {
    /// What every binary reads at cold start: the connection string from `MONGODB_URI` if set
    /// (tests, tools), else from the Secrets Manager secret named by `MONGODB_URI_SECRET_ARN`
    /// (deployed functions, and the local stack through moto), and the rest as
    /// [`DbConfig::from_env`]. A missing or bad secret fails the cold start with one clear log
    /// line, which names the variable and never the value. The fetch's time is logged apart
    /// (`secretFetchMs`), so that the bench can report it apart from init.
    pub async fn load(app_name: &str) -> Result<Self, ConfigError> {
        let env = process_env();
        let result = match env.optional("MONGODB_URI") {
            Some(_) => Self::from_env(&env, app_name),
            None => Self::from_secret(&env, app_name).await,
        };
        if let Err(error) = &result {
            tracing::error!(%error, "cold start failed: no database configuration");
        }
        result
    }

    async fn from_secret<F: Fn(&str) -> Option<String>>(env: &Env<F>, app_name: &str) -> Result<Self, ConfigError> {
        let arn = env.optional(URI_SECRET_VARIABLE).ok_or(ConfigError::Missing("MONGODB_URI or MONGODB_URI_SECRET_ARN"))?;
        let started = std::time::Instant::now();
        let uri = crate::secrets::secret_string(&arn).await.map_err(|e| ConfigError::Invalid(URI_SECRET_VARIABLE, e.to_string()))?;
        tracing::info!(
            secretFetchMs = started.elapsed().as_secs_f64() * 1000.0,
            "read the database connection string from Secrets Manager"
        );
        let uri = uri.trim();
        if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
            return Err(ConfigError::Invalid(
                URI_SECRET_VARIABLE,
                "the secret is not a mongodb:// or mongodb+srv:// connection string".into(),
            ));
        }
        Self::with_uri(env, app_name, uri.to_owned())
    }

    /// `MONGODB_URI`, `MONGODB_DATABASE`; `MONGODB_MAX_POOL_SIZE` (default 4) and
    /// `MONGODB_SERVER_SELECTION_TIMEOUT_MS` (default 3000) are optional.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>, app_name: &str) -> Result<Self, ConfigError> {
        Self::with_uri(env, app_name, env.required("MONGODB_URI")?)
    }

    fn with_uri<F: Fn(&str) -> Option<String>>(env: &Env<F>, app_name: &str, uri: String) -> Result<Self, ConfigError> {
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            env.optional(name).map(|v| v.parse::<u64>().map_err(|e| ConfigError::Invalid(name, e.to_string()))).unwrap_or(Ok(default))
        };
        Ok(Self {
            uri,
            database: env.required("MONGODB_DATABASE")?,
            app_name: app_name.to_owned(),
            max_pool_size: number("MONGODB_MAX_POOL_SIZE", 4)? as u32,
            server_selection_timeout: Duration::from_millis(number("MONGODB_SERVER_SELECTION_TIMEOUT_MS", 3000)?),
        })
    }
}

/// The personal-data keys (docs/ARCHITECTURE.md §20): the platform's KMS master key and the key
/// vault. In production the vault is a cluster of its own, its connection string in the secret
/// `KEY_VAULT_URI_SECRET_ARN`; locally (no secret) it is a second database on the data server.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultConfig {
    pub kms_key_id: String,
    pub database: String,
    /// The vault cluster's connection string; `None`: the data cluster's client.
    pub uri: Option<String>,
}

impl std::fmt::Debug for VaultConfig {
    // The URI may carry a password: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConfig")
            .field("kms_key_id", &self.kms_key_id)
            .field("database", &self.database)
            .field("own_cluster", &self.uri.is_some())
            .finish()
    }
}

/// The variable naming the Secrets Manager secret with the vault cluster's connection string.
pub const VAULT_URI_SECRET_VARIABLE: &str = "KEY_VAULT_URI_SECRET_ARN";

impl VaultConfig {
    /// `KMS_KEY_ID` (required), `KEY_VAULT_DATABASE` (default `<data database>_vault`), and the
    /// vault's connection string from `KEY_VAULT_URI` (tests, tools) or the secret named by
    /// `KEY_VAULT_URI_SECRET_ARN` (deployed functions); with neither, the data cluster's.
    pub async fn load(data: &DbConfig) -> Result<Self, ConfigError> {
        let env = process_env();
        let result = async {
            let uri = match (env.optional("KEY_VAULT_URI"), env.optional(VAULT_URI_SECRET_VARIABLE)) {
                (Some(uri), _) => Some(uri),
                (None, Some(arn)) => {
                    let uri = crate::secrets::secret_string(&arn)
                        .await
                        .map_err(|e| ConfigError::Invalid(VAULT_URI_SECRET_VARIABLE, e.to_string()))?;
                    let uri = uri.trim().to_owned();
                    if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
                        return Err(ConfigError::Invalid(
                            VAULT_URI_SECRET_VARIABLE,
                            "the secret is not a mongodb:// or mongodb+srv:// connection string".into(),
                        ));
                    }
                    Some(uri)
                }
                (None, None) => None,
            };
            Self::from_env(&env, data, uri)
        }
        .await;
        if let Err(error) = &result {
            tracing::error!(%error, "cold start failed: no key vault configuration");
        }
        result
    }

    /// The settings other than the connection string, from `env`.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>, data: &DbConfig, uri: Option<String>) -> Result<Self, ConfigError> {
        let database = env.optional("KEY_VAULT_DATABASE").unwrap_or_else(|| format!("{}_vault", data.database));
        if database == data.database {
            return Err(ConfigError::Invalid("KEY_VAULT_DATABASE", "the vault must not be the data database".into()));
        }
        Ok(Self { kms_key_id: env.required("KMS_KEY_ID")?, database, uri })
    }

    /// The vault as a database config of its own (a small pool: it is read once per tenant and
    /// cache period).
    pub fn db_config(&self, data: &DbConfig) -> DbConfig {
        DbConfig {
            uri: self.uri.clone().unwrap_or_else(|| data.uri.clone()),
            database: self.database.clone(),
            app_name: format!("{}-vault", data.app_name),
            max_pool_size: 2,
            server_selection_timeout: data.server_selection_timeout,
        }
    }
}

impl CognitoConfig {
    /// `COGNITO_REGION`, `COGNITO_USER_POOL_ID`, `COGNITO_CLIENT_ID`, `COGNITO_ISSUER` and
    /// `COGNITO_JWKS_URL`. The issuer defaults to AWS's form for the region and pool, the JWKS
    /// URL to the issuer's well-known path.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let region = env.required("COGNITO_REGION")?;
        let user_pool_id = env.required("COGNITO_USER_POOL_ID")?;
        let issuer = env.optional("COGNITO_ISSUER").unwrap_or_else(|| format!("https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"));
        let jwks_url = env.optional("COGNITO_JWKS_URL").unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
        Ok(Self { client_id: env.required("COGNITO_CLIENT_ID")?, region, user_pool_id, issuer, jwks_url })
    }
}

/// The switches a deployment turns on with its template's parameters: all off unless set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// Self-service sign-up (`POST /signup`), when on.
    pub signup: Option<SignupSettings>,
}

/// Self-service sign-up's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupSettings {
    /// The platform-wide bound of sign-ups an hour: below what the invitation e-mail's sending
    /// account may send, since each sign-up that runs sends one.
    pub hourly_cap: u64,
}

/// The platform-wide bound of sign-ups an hour when `SIGNUP_HOURLY_CAP` is not set.
pub const DEFAULT_SIGNUP_HOURLY_CAP: u64 = 40;

impl Features {
    /// `SELF_SERVICE_SIGNUP` (`true` or `1` turns it on; off by default), which refuses to
    /// start without `SES_IDENTITY_ARN`: Cognito's own sender allows too few e-mails a day for
    /// invitations anyone can trigger. `SIGNUP_HOURLY_CAP` bounds sign-ups an hour.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let on = match env.optional("SELF_SERVICE_SIGNUP").as_deref().map(str::trim) {
            None | Some("" | "false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => return Err(ConfigError::Invalid("SELF_SERVICE_SIGNUP", format!("{other:?} is neither true nor false"))),
        };
        if !on {
            return Ok(Self::default());
        }
        if env.optional("SES_IDENTITY_ARN").is_none_or(|v| v.trim().is_empty()) {
            return Err(ConfigError::Invalid(
                "SELF_SERVICE_SIGNUP",
                "self-service sign-up needs SES_IDENTITY_ARN (the SesIdentityArn parameter): Cognito's default sender's daily quota is too small".into(),
            ));
        }
        let hourly_cap = match env.optional("SIGNUP_HOURLY_CAP") {
            None => DEFAULT_SIGNUP_HOURLY_CAP,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError::Invalid("SIGNUP_HOURLY_CAP", "must be a positive number".into()))?,
        };
        Ok(Self { signup: Some(SignupSettings { hourly_cap }) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn self_service_signup_is_off_by_default_and_refuses_to_start_without_ses() {
        assert_eq!(Features::from_env(&env(&[])).unwrap(), Features::default());
        assert_eq!(Features::from_env(&env(&[("SELF_SERVICE_SIGNUP", "false")])).unwrap(), Features::default());
        let no_ses = Features::from_env(&env(&[("SELF_SERVICE_SIGNUP", "true")])).unwrap_err();
        assert!(matches!(no_ses, ConfigError::Invalid("SELF_SERVICE_SIGNUP", _)), "{no_ses}");
        let on =
            Features::from_env(&env(&[("SELF_SERVICE_SIGNUP", "1"), ("SES_IDENTITY_ARN", "arn:aws:ses:us-east-1:1:identity/x")])).unwrap();
        assert_eq!(on.signup, Some(SignupSettings { hourly_cap: DEFAULT_SIGNUP_HOURLY_CAP }));
        assert!(Features::from_env(&env(&[("SELF_SERVICE_SIGNUP", "yes")])).is_err());
        let capped = [("SELF_SERVICE_SIGNUP", "true"), ("SES_IDENTITY_ARN", "arn"), ("SIGNUP_HOURLY_CAP", "0")];
        assert!(Features::from_env(&env(&capped)).is_err());
    }

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env(move |name: &str| map.get(name).cloned())
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = DbConfig::from_env(&env(&[("MONGODB_URI", "mongodb://127.0.0.1")]), "t").unwrap_err();
        assert_eq!(err, ConfigError::Missing("MONGODB_DATABASE"));
        assert_eq!(err.to_string(), "missing environment variable MONGODB_DATABASE");
    }

    #[test]
    fn a_blank_variable_counts_as_missing() {
        let err = DbConfig::from_env(&env(&[("MONGODB_URI", " "), ("MONGODB_DATABASE", "x")]), "t").unwrap_err();
        assert_eq!(err, ConfigError::Missing("MONGODB_URI"));
    }

    #[test]
    fn db_config_has_lambda_sized_defaults_and_hides_the_uri() {
        let cfg = DbConfig::from_env(&env(&[("MONGODB_URI", "mongodb://u:secret@h"), ("MONGODB_DATABASE", "d")]), "fn").unwrap();
        assert_eq!(cfg.max_pool_size, 4);
        assert_eq!(cfg.server_selection_timeout, Duration::from_secs(3));
        assert!(!format!("{cfg:?}").contains("secret"));
    }

    #[test]
    fn the_vault_needs_a_master_key_and_is_never_the_data_database() {
        let data = DbConfig::from_env(&env(&[("MONGODB_URI", "mongodb://h"), ("MONGODB_DATABASE", "d")]), "fn").unwrap();
        assert_eq!(VaultConfig::from_env(&env(&[]), &data, None).unwrap_err(), ConfigError::Missing("KMS_KEY_ID"));
        let vault = VaultConfig::from_env(&env(&[("KMS_KEY_ID", "k")]), &data, None).unwrap();
        assert_eq!(vault.database, "d_vault");
        assert_eq!(vault.db_config(&data).uri, "mongodb://h");
        let same = VaultConfig::from_env(&env(&[("KMS_KEY_ID", "k"), ("KEY_VAULT_DATABASE", "d")]), &data, None);
        assert!(matches!(same, Err(ConfigError::Invalid("KEY_VAULT_DATABASE", _))));
        let own = VaultConfig::from_env(&env(&[("KMS_KEY_ID", "k")]), &data, Some("mongodb://u:pw@vault".into())).unwrap();
        assert!(!format!("{own:?}").contains("pw"));
    }

    #[test]
    fn issuer_and_jwks_url_are_configured_separately() {
        let cfg = CognitoConfig::from_env(&env(&[
            ("COGNITO_REGION", "us-east-1"),
            ("COGNITO_USER_POOL_ID", "us-east-1_abc"),
            ("COGNITO_CLIENT_ID", "client"),
            ("COGNITO_JWKS_URL", "http://127.0.0.1:5000/us-east-1_abc/.well-known/jwks.json"),
        ]))
        .unwrap();
        assert_eq!(cfg.issuer, "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc");
        assert!(cfg.jwks_url.starts_with("http://127.0.0.1:5000/"));
    }
}
