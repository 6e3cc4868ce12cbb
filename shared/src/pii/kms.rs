//! KMS behind a trait: it generates data keys under the platform's master key and unwraps them,
//! each bound to an encryption context. Services never hold an SDK client, and a test can count
//! the calls or put a failing KMS in front. The AWS implementation is behind the `kms` cargo
//! feature, so that functions that handle no personal data do not link its SDK.

use super::{Key, PiiError};
use futures_util::future::BoxFuture;

/// A new data key: its plaintext, for memory only, and its KMS ciphertext, for the vault.
pub struct WrappedKey {
    pub plaintext: Key,
    pub wrapped: Vec<u8>,
}

/// The encryption context of a wrapped key: KMS refuses to unwrap it under any other.
pub type Context<'a> = &'a [(&'a str, &'a str)];

/// KMS as the keyring uses it.
pub trait KeyWrapper: Send + Sync + std::fmt::Debug {
    /// `GenerateDataKey` (AES-256) under the master key, bound to `context`.
    fn generate<'a>(&'a self, context: Context<'a>) -> BoxFuture<'a, Result<WrappedKey, PiiError>>;
    /// `Decrypt` of a wrapped key, under the same `context` it was generated with.
    fn unwrap_key<'a>(&'a self, wrapped: &'a [u8], context: Context<'a>) -> BoxFuture<'a, Result<Key, PiiError>>;
}

#[cfg(feature = "kms")]
pub use aws::AwsKms;
#[cfg(feature = "kms")]
pub(crate) use aws::{sort_failure, KmsFailure};

#[cfg(feature = "kms")]
mod aws {
    use super::*;
    use aws_sdk_kms::config::http::HttpResponse;
    use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
    use aws_sdk_kms::primitives::Blob;
    use aws_sdk_kms::types::DataKeySpec;
    use aws_sdk_kms::Client;
    use std::collections::HashMap;
    use tokio::sync::OnceCell;

    /// AWS KMS through the SDK, configured from the environment when first used (the region,
    /// credentials and, locally, `AWS_ENDPOINT_URL_KMS` for moto), sharing the process's one
    /// SDK configuration ([`crate::secrets::sdk_config`]). Calls time out after 5 s, so a hung
    /// KMS becomes a clean 503.
    #[derive(Debug)]
    pub struct AwsKms {
        key_id: String,
        client: OnceCell<Client>,
    }

    impl AwsKms {
        /// KMS with the master key `key_id` (an ARN, id or alias), configured lazily.
        pub fn new(key_id: impl Into<String>) -> Self {
            Self { key_id: key_id.into(), client: OnceCell::new() }
        }

        /// KMS through a given client (tests point one at moto, or at a closed port).
        pub fn with_client(client: Client, key_id: impl Into<String>) -> Self {
            Self { key_id: key_id.into(), client: OnceCell::from(client) }
        }

        async fn client(&self) -> &Client {
            self.client.get_or_init(|| async { Client::new(crate::secrets::sdk_config().await) }).await
        }
    }

    fn context_map(context: Context<'_>) -> HashMap<String, String> {
        context.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// KMS error codes a retry may get past: throttling, KMS's own failures, a key that is
    /// briefly unavailable. Any other refusal is about the key or our permissions (missing,
    /// disabled, pending deletion, access denied, a ciphertext under another key): no retry
    /// helps, and someone must act.
    const TRANSIENT: &[&str] =
        &["ThrottlingException", "LimitExceededException", "KMSInternalException", "DependencyTimeoutException", "KeyUnavailableException"];

    /// How a KMS failure sorts, for every caller of KMS (the keyring, the receipt's signer).
    pub(crate) enum KmsFailure {
        /// The network, a timeout, throttling, a 5xx: a retry may get past it.
        Transient(String),
        /// Anything else, with its code; already counted as a `DependencyErrors` metric, which
        /// an alarm watches.
        Permanent { code: String, text: String },
    }

    /// Sorts a KMS failure ([`KmsFailure`]).
    pub(crate) fn sort_failure<E>(error: SdkError<E, HttpResponse>) -> KmsFailure
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let text = aws_sdk_kms::error::DisplayErrorContext(&error).to_string();
        let code = match &error {
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or("Unknown");
                let status = service.raw().status().as_u16();
                if TRANSIENT.contains(&code) || status >= 500 || status == 429 {
                    return KmsFailure::Transient(text);
                }
                code.to_owned()
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => return KmsFailure::Transient(text),
            // The request could not even be built: configuration (region, credentials).
            _ => "ConstructionFailure".to_owned(),
        };
        crate::metrics::dependency_error(crate::metrics::Dependency::Kms, &code);
        KmsFailure::Permanent { code, text }
    }

    /// A keyring's KMS failure: transient is [`PiiError::Kms`], a 503; permanent is
    /// [`PiiError::KmsRefused`], a 500 with an error line.
    fn failed<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> PiiError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match sort_failure(error) {
            KmsFailure::Transient(text) => PiiError::Kms(text),
            KmsFailure::Permanent { code, text } => {
                // The code and operation only: KMS's message names the key, which says enough with them.
                tracing::error!(dependency = "KMS", operation, code = %code, "KMS refused the request permanently: check the master key (exists, enabled) and the function's permissions on it");
                PiiError::KmsRefused(format!("{operation}: {code}: {text}"))
            }
        }
    }

    impl KeyWrapper for AwsKms {
        fn generate<'a>(&'a self, context: Context<'a>) -> BoxFuture<'a, Result<WrappedKey, PiiError>> {
            Box::pin(async move {
                let out = self
                    .client()
                    .await
                    .generate_data_key()
                    .key_id(&self.key_id)
                    .key_spec(DataKeySpec::Aes256)
                    .set_encryption_context(Some(context_map(context)))
                    .send()
                    .await
                    .map_err(|e| failed("GenerateDataKey", e))?;
                let plaintext = out.plaintext.ok_or_else(|| PiiError::Kms("GenerateDataKey returned no plaintext".into()))?;
                let wrapped = out.ciphertext_blob.ok_or_else(|| PiiError::Kms("GenerateDataKey returned no ciphertext".into()))?;
                Ok(WrappedKey { plaintext: Key::from_slice(plaintext.as_ref())?, wrapped: wrapped.into_inner() })
            })
        }

        fn unwrap_key<'a>(&'a self, wrapped: &'a [u8], context: Context<'a>) -> BoxFuture<'a, Result<Key, PiiError>> {
            Box::pin(async move {
                let out = self
                    .client()
                    .await
                    .decrypt()
                    .key_id(&self.key_id)
                    .ciphertext_blob(Blob::new(wrapped.to_vec()))
                    .set_encryption_context(Some(context_map(context)))
                    .send()
                    .await
                    .map_err(|e| failed("Decrypt", e))?;
                let plaintext = out.plaintext.ok_or_else(|| PiiError::Kms("Decrypt returned no plaintext".into()))?;
                Key::from_slice(plaintext.as_ref())
            })
        }
    }
}
