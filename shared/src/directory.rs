//! The user directory: the Cognito user pool, behind a trait so that services never hold an SDK
//! client and tests can put a seam in front of it (a call that succeeds but whose reply is
//! lost). The Cognito implementation is behind the `cognito` cargo feature, so that functions
//! which never call Cognito do not link its SDK.

use crate::ids::{Email, TenantId};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// A user as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The stable subject id (Cognito `sub`).
    pub sub: String,
    /// The `custom:tenantId` attribute, if set.
    pub tenant: Option<String>,
    /// Whether the user may sign in.
    pub enabled: bool,
}

/// What can go wrong in the directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("the e-mail already has an account in the user directory")]
    Exists,
    #[error("no such user in the user directory")]
    NotFound,
    #[error("the user directory is unavailable: {0}")]
    Unavailable(String),
    #[error("the user directory refused the request: {0}")]
    Rejected(String),
    #[error("the user directory refused the value: {0}")]
    InvalidInput(String),
}

/// The operations the platform performs on its user pool. Users are keyed by e-mail, the
/// pool's username attribute. Group operations are deliberately absent: they would mint
/// superadmins.
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// Creates a user with a verified e-mail and `custom:tenantId`, and has the directory send
    /// its invitation and temporary password (never seen here). Returns its `sub`.
    fn create_user<'a>(&'a self, email: &'a Email, tenant: &'a TenantId) -> BoxFuture<'a, Result<String, DirectoryError>>;
    /// The user with this e-mail, if any.
    fn get_user<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<Option<DirectoryUser>, DirectoryError>>;
    /// Deletes the user; `NotFound` if there is none.
    fn delete_user<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<(), DirectoryError>>;
    /// Enables or disables sign-in.
    fn set_enabled<'a>(&'a self, email: &'a Email, enabled: bool) -> BoxFuture<'a, Result<(), DirectoryError>>;
}

/// The shared handle services keep.
pub type SharedDirectory = Arc<dyn Directory>;

#[cfg(feature = "cognito")]
pub use cognito::{CognitoDirectory, LazyCognitoDirectory};

#[cfg(feature = "cognito")]
mod cognito {
    use super::*;
    use aws_sdk_cognitoidentityprovider::config::http::HttpResponse;
    use aws_sdk_cognitoidentityprovider::error::{ProvideErrorMetadata, SdkError};
    use aws_sdk_cognitoidentityprovider::types::{AttributeType, DeliveryMediumType};
    use aws_sdk_cognitoidentityprovider::Client;

    /// The Cognito user pool through the AWS SDK.
    #[derive(Debug, Clone)]
    pub struct CognitoDirectory {
        client: Client,
        pool_id: String,
    }

    impl CognitoDirectory {
        /// A directory on `pool_id` through an SDK client.
        pub fn new(client: Client, pool_id: impl Into<String>) -> Self {
            Self { client, pool_id: pool_id.into() }
        }

        /// A directory on `pool_id` from the environment's AWS configuration, read once at cold
        /// start and shared with Secrets Manager ([`crate::secrets::sdk_config`]): the region,
        /// credentials and, locally, the endpoint from `AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER`.
        /// Calls time out after 5 s, so that a hung Cognito becomes a clean 503.
        pub async fn from_env(pool_id: impl Into<String>) -> Self {
            Self::new(Client::new(crate::secrets::sdk_config().await), pool_id)
        }
    }

    /// The Cognito directory of a Lambda function, whose SDK configuration is loaded on the first
    /// call that needs it rather than at cold start: most invocations never call Cognito, and
    /// loading the AWS configuration is most of an SDK function's init time.
    #[derive(Debug)]
    pub struct LazyCognitoDirectory {
        pool_id: String,
        directory: tokio::sync::OnceCell<CognitoDirectory>,
    }

    impl LazyCognitoDirectory {
        /// A directory on `pool_id`, configured from the environment when first used.
        pub fn new(pool_id: impl Into<String>) -> Self {
            Self { pool_id: pool_id.into(), directory: tokio::sync::OnceCell::new() }
        }

        async fn get(&self) -> &CognitoDirectory {
            self.directory.get_or_init(|| CognitoDirectory::from_env(self.pool_id.clone())).await
        }
    }

    impl Directory for LazyCognitoDirectory {
        fn create_user<'a>(&'a self, email: &'a Email, tenant: &'a TenantId) -> BoxFuture<'a, Result<String, DirectoryError>> {
            Box::pin(async move { self.get().await.create_user(email, tenant).await })
        }
        fn get_user<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<Option<DirectoryUser>, DirectoryError>> {
            Box::pin(async move { self.get().await.get_user(email).await })
        }
        fn delete_user<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<(), DirectoryError>> {
            Box::pin(async move { self.get().await.delete_user(email).await })
        }
        fn set_enabled<'a>(&'a self, email: &'a Email, enabled: bool) -> BoxFuture<'a, Result<(), DirectoryError>> {
            Box::pin(async move { self.get().await.set_enabled(email, enabled).await })
        }
    }

    fn attribute(name: &str, value: &str) -> Result<AttributeType, DirectoryError> {
        AttributeType::builder().name(name).value(value).build().map_err(|e| DirectoryError::Rejected(e.to_string()))
    }

    /// Cognito error codes a retry may get past: throttling and Cognito's own failures.
    const TRANSIENT: &[&str] = &["TooManyRequestsException", "LimitExceededException", "InternalErrorException", "ThrottlingException"];

    /// Sorts an SDK failure: the network, a timeout, throttling or a 5xx is `Unavailable` (a
    /// 503: a retry may help); an answer `known` recognises is what it says; a refused value is
    /// `InvalidInput`. Anything else is `Rejected`, permanent (a missing user pool, access
    /// denied, an unexpected refusal): a 500 that an operator must act on, so it also writes an
    /// error line and a `DependencyErrors` metric, which an alarm watches. Only the error code
    /// goes into the line: Cognito's messages may repeat what they were given (an e-mail).
    fn classify<E>(error: SdkError<E, HttpResponse>, known: impl Fn(&E) -> Option<DirectoryError>) -> DirectoryError
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
    {
        let code = match &error {
            SdkError::ServiceError(service) => {
                if let Some(known) = known(service.err()) {
                    return known;
                }
                let code = service.err().code().unwrap_or("Unknown");
                let status = service.raw().status().as_u16();
                if code == "InvalidParameterException" {
                    return DirectoryError::InvalidInput(code.to_owned());
                }
                if TRANSIENT.contains(&code) || status >= 500 || status == 429 {
                    return DirectoryError::Unavailable(code.to_owned());
                }
                code.to_owned()
            }
            // The kind only: a response that could not be read may hold the user's attributes.
            SdkError::TimeoutError(_) => return DirectoryError::Unavailable("Cognito timed out".into()),
            SdkError::DispatchFailure(_) => return DirectoryError::Unavailable("Cognito could not be reached".into()),
            SdkError::ResponseError(_) => return DirectoryError::Unavailable("Cognito's answer could not be read".into()),
            // The request could not even be built: configuration (region, credentials).
            _ => "ConstructionFailure".to_owned(),
        };
        crate::metrics::dependency_error(crate::metrics::Dependency::Cognito, &code);
        tracing::error!(dependency = "Cognito", code = %code, "the user directory refused the request permanently: check the user pool (exists) and the function's permissions on it");
        DirectoryError::Rejected(code)
    }

    fn attr<'a>(attributes: &'a [AttributeType], name: &str) -> Option<&'a str> {
        attributes.iter().find(|a| a.name() == name).and_then(|a| a.value())
    }

    impl Directory for CognitoDirectory {
        fn create_user<'a>(&'a self, email: &'a Email, tenant: &'a TenantId) -> BoxFuture<'a, Result<String, DirectoryError>> {
            Box::pin(async move {
                let created = self
                    .client
                    .admin_create_user()
                    .user_pool_id(&self.pool_id)
                    .username(email.as_str())
                    .user_attributes(attribute("email", email.as_str())?)
                    .user_attributes(attribute("email_verified", "true")?)
                    .user_attributes(attribute("custom:tenantId", tenant.as_str())?)
                    .desired_delivery_mediums(DeliveryMediumType::Email)
                    .send()
                    .await
                    // With e-mail as the username attribute, an existing address is reported as
                    // UsernameExists by Cognito and as AliasExists by moto: the same fact.
                    .map_err(|e| {
                        classify(e, |e| {
                            (e.is_username_exists_exception() || e.code() == Some("AliasExistsException")).then_some(DirectoryError::Exists)
                        })
                    })?;
                let user = created.user().ok_or_else(|| DirectoryError::Rejected("no user in the reply".into()))?;
                attr(user.attributes(), "sub")
                    .map(str::to_owned)
                    .ok_or_else(|| DirectoryError::Rejected("the created user has no sub".into()))
            })
        }

        fn get_user<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<Option<DirectoryUser>, DirectoryError>> {
            Box::pin(async move {
                let found = self.client.admin_get_user().user_pool_id(&self.pool_id).username(email.as_str()).send().await;
                match found {
                    Ok(user) => Ok(attr(user.user_attributes(), "sub").map(|sub| DirectoryUser {
                        sub: sub.to_owned(),
                        tenant: attr(user.user_attributes(), "custom:tenantId").map(str::to_owned),
                        enabled: user.enabled(),
                    })),
                    Err(e) => match classify(e, |e| e.is_user_not_found_exception().then_some(DirectoryError::NotFound)) {
                        DirectoryError::NotFound => Ok(None),
                        other => Err(other),
                    },
                }
            })
        }

        fn delete_user<'a>(&'a self, email: &'a Email) -> BoxFuture<'a, Result<(), DirectoryError>> {
            Box::pin(async move {
                self.client
                    .admin_delete_user()
                    .user_pool_id(&self.pool_id)
                    .username(email.as_str())
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| classify(e, |e| e.is_user_not_found_exception().then_some(DirectoryError::NotFound)))
            })
        }

        fn set_enabled<'a>(&'a self, email: &'a Email, enabled: bool) -> BoxFuture<'a, Result<(), DirectoryError>> {
            Box::pin(async move {
                if enabled {
                    self.client
                        .admin_enable_user()
                        .user_pool_id(&self.pool_id)
                        .username(email.as_str())
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| classify(e, |e| e.is_user_not_found_exception().then_some(DirectoryError::NotFound)))
                } else {
                    self.client
                        .admin_disable_user()
                        .user_pool_id(&self.pool_id)
                        .username(email.as_str())
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| classify(e, |e| e.is_user_not_found_exception().then_some(DirectoryError::NotFound)))
                }
            })
        }
    }
}
