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
mod aws {
    use super::*;
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

    fn failed<E: std::error::Error + 'static>(e: E) -> PiiError {
        PiiError::Kms(aws_sdk_kms::error::DisplayErrorContext(&e).to_string())
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
                    .map_err(failed)?;
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
                    .map_err(failed)?;
                let plaintext = out.plaintext.ok_or_else(|| PiiError::Kms("Decrypt returned no plaintext".into()))?;
                Key::from_slice(plaintext.as_ref())
            })
        }
    }
}
