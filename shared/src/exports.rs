//! The export bucket (S3) and the jobs queue (SQS) of a tenant's exports and restores
//! (docs/ARCHITECTURE.md §22), through the process's one SDK configuration
//! ([`crate::secrets::sdk_config`]; locally `AWS_ENDPOINT_URL_S3` and `AWS_ENDPOINT_URL_SQS`,
//! moto). Only the functions that write, read or delete export files link these SDKs (the
//! `exports` feature).
//!
//! Files are written as multipart uploads, one part per bounded step of the worker, so that a
//! collection of any size is one file and no step holds more than a part in memory. Every part
//! but the last is at least [`MIN_PART_BYTES`], S3's rule. Each part is a whole gzip member, and
//! a file of concatenated members is one gzip stream to every reader (RFC 1952, §2.2).

use crate::config::{ConfigError, Env};
use crate::db::{Db, DbError};
use crate::ids::TenantId;
pub use crate::jobs::ExportError;
use crate::jobs::Jobs;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::sync::OnceCell;

/// S3's smallest part but the last of a multipart upload.
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;

/// The longest a download URL is valid: URLs are made per read and never stored.
pub const URL_TTL: Duration = Duration::from_secs(15 * 60);

/// The export bucket's name.
pub const BUCKET_VARIABLE: &str = "EXPORT_BUCKET";
/// The jobs queue's URL.
pub const QUEUE_VARIABLE: &str = "JOBS_QUEUE_URL";
/// Days before the bucket expires an export's files (its lifecycle rule says the same).
pub const EXPIRY_VARIABLE: &str = "EXPORT_EXPIRY_DAYS";
/// `true` where the bucket is addressed by path (moto: URLs that resolve from the host).
pub const PATH_STYLE_VARIABLE: &str = "S3_FORCE_PATH_STYLE";

/// Sorts an SDK failure: no answer, a timeout, throttling or a 5xx is transient.
fn sorted<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    service: &'static str,
    operation: &'static str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> ExportError {
    let text = format!("{operation}: {}", DisplayErrorContext(&e));
    let transient = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => {
            s.raw().status().as_u16() >= 500
                || s.raw().status().as_u16() == 429
                || matches!(s.err().code(), Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestTimeout"))
        }
        _ => false,
    };
    if transient {
        ExportError::Unavailable(service, text)
    } else {
        tracing::error!(dependency = service, operation, error = %text, "refused: check the bucket, the queue and the function's permissions");
        ExportError::Refused(service, text)
    }
}

/// Where exports go: the bucket, the queue and the files' expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportsConfig {
    pub bucket: String,
    pub queue_url: String,
    pub expiry_days: u32,
    pub path_style: bool,
}

impl ExportsConfig {
    /// [`BUCKET_VARIABLE`] and [`QUEUE_VARIABLE`] (required), [`EXPIRY_VARIABLE`] (1 to 365,
    /// the template parameter's bounds; default 7) and [`PATH_STYLE_VARIABLE`].
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let required =
            |name: &'static str| (env.0)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).ok_or(ConfigError::Missing(name));
        let expiry_days = match (env.0)(EXPIRY_VARIABLE) {
            None => 7,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|d| (1..=365).contains(d))
                .ok_or(ConfigError::Invalid(EXPIRY_VARIABLE, "a number of days from 1 to 365".into()))?,
        };
        Ok(Self {
            bucket: required(BUCKET_VARIABLE)?,
            queue_url: required(QUEUE_VARIABLE)?,
            expiry_days,
            path_style: (env.0)(PATH_STYLE_VARIABLE).is_some_and(|v| v.trim() == "true"),
        })
    }
}

/// The export bucket and the jobs queue, with clients made when first used.
#[derive(Debug)]
pub struct Exports {
    config: ExportsConfig,
    s3: OnceCell<aws_sdk_s3::Client>,
    sqs: OnceCell<aws_sdk_sqs::Client>,
}

/// Deletes the files of every export of `tenant` begun until now, for an erasure of a person
/// they hold or the tenant's purge: each export is marked first (an unfinished one fails, and
/// its worker stops at its next step), then, once no worker holds a live lease on one, the
/// files of each marked export are deleted, every version and unfinished upload included. An
/// export still being written is a transient failure: the caller tries again shortly. Redone
/// after a crash, it deletes what is left. How many objects and uploads went.
pub async fn delete_tenant_exports(db: &Db, tenant: &TenantId) -> Result<u64, DbError> {
    let jobs = Jobs::new(db);
    jobs.mark_files_deleted(tenant, db.clock().now()).await?;
    if jobs.export_being_written(tenant).await? {
        let why = "an export of the tenant is still being written; its worker stops at its next step".to_owned();
        return Err(ExportError::Unavailable("the jobs worker", why).into());
    }
    let exports = db.exports()?;
    let mut deleted = 0;
    for job in jobs.files_to_delete(tenant).await? {
        deleted += exports.delete_under(&format!("{}{}/", tenant_prefix(tenant), job.id)).await?;
        jobs.files_purged(&job).await?;
    }
    Ok(deleted)
}

/// An S3 client on `sdk`, addressing buckets by path where `path_style`.
pub fn s3_client(sdk: &aws_config::SdkConfig, path_style: bool) -> aws_sdk_s3::Client {
    // A part is up to a few MiB: the shared 5-second budget is for small calls.
    let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .operation_timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(2))
        .build();
    // Checksums only where S3 requires them: every body is whole and small enough to send
    // plainly, and moto reads no streaming trailers.
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(path_style)
        .timeout_config(timeouts)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A message received from the jobs queue (the local API's in-process worker, and tests).
#[derive(Debug, Clone)]
pub struct QueueMessage {
    pub receipt: String,
    pub body: String,
}

/// The object key of an export's file: every file of a tenant under one prefix, which its purge
/// deletes.
pub fn file_key(tenant: &TenantId, export_id: &str, name: &str) -> String {
    format!("{}{export_id}/{name}", tenant_prefix(tenant))
}

/// The prefix of every export file of `tenant`.
pub fn tenant_prefix(tenant: &TenantId) -> String {
    format!("exports/{tenant}/")
}

impl Exports {
    /// Exports as `config` describes them.
    pub fn new(config: ExportsConfig) -> Self {
        Self { config, s3: OnceCell::new(), sqs: OnceCell::new() }
    }

    /// The configuration.
    pub fn config(&self) -> &ExportsConfig {
        &self.config
    }

    /// Exports through given clients (tests and the local API point them at moto).
    pub fn with_clients(config: ExportsConfig, s3: aws_sdk_s3::Client, sqs: aws_sdk_sqs::Client) -> Self {
        Self { config, s3: OnceCell::from(s3), sqs: OnceCell::from(sqs) }
    }

    async fn s3(&self) -> &aws_sdk_s3::Client {
        self.s3.get_or_init(|| async { s3_client(crate::secrets::sdk_config().await, self.config.path_style) }).await
    }

    async fn sqs(&self) -> &aws_sdk_sqs::Client {
        self.sqs.get_or_init(|| async { aws_sdk_sqs::Client::new(crate::secrets::sdk_config().await) }).await
    }

    /// Puts `job_id` on the jobs queue: the worker's wake-up.
    pub async fn enqueue(&self, job_id: &str) -> Result<(), ExportError> {
        let body = serde_json::json!({"jobId": job_id}).to_string();
        self.sqs()
            .await
            .send_message()
            .queue_url(&self.config.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| sorted("SQS", "SendMessage", e))?;
        Ok(())
    }

    /// Receives up to 10 messages of the jobs queue, waiting up to `wait_seconds` for one, each
    /// hidden for `visibility_seconds`: what SQS's event source does for a deployed worker.
    pub async fn receive(&self, wait_seconds: i32, visibility_seconds: i32) -> Result<Vec<QueueMessage>, ExportError> {
        let out = self
            .sqs()
            .await
            .receive_message()
            .queue_url(&self.config.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .visibility_timeout(visibility_seconds)
            .send()
            .await
            .map_err(|e| sorted("SQS", "ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| QueueMessage { receipt: m.receipt_handle.unwrap_or_default(), body: m.body.unwrap_or_default() })
            .collect())
    }

    /// Deletes a handled message.
    pub async fn acknowledge(&self, message: &QueueMessage) -> Result<(), ExportError> {
        self.sqs()
            .await
            .delete_message()
            .queue_url(&self.config.queue_url)
            .receipt_handle(&message.receipt)
            .send()
            .await
            .map_err(|e| sorted("SQS", "DeleteMessage", e))?;
        Ok(())
    }

    /// Starts a multipart upload of `key`: its upload id.
    pub async fn begin_file(&self, key: &str) -> Result<String, ExportError> {
        let out = self
            .s3()
            .await
            .create_multipart_upload()
            .bucket(&self.config.bucket)
            .key(key)
            .content_type("application/x-ndjson")
            .content_encoding("gzip")
            .send()
            .await
            .map_err(|e| sorted("S3", "CreateMultipartUpload", e))?;
        out.upload_id.ok_or_else(|| ExportError::Unavailable("S3", "CreateMultipartUpload returned no upload id".into()))
    }

    /// Uploads part `number` (from 1) of an upload: its ETag. Uploading a part again replaces it.
    pub async fn put_part(&self, key: &str, upload_id: &str, number: i32, bytes: Vec<u8>) -> Result<String, ExportError> {
        let out = self
            .s3()
            .await
            .upload_part()
            .bucket(&self.config.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| match e {
                SdkError::ServiceError(ref s) if s.err().code() == Some("NoSuchUpload") => ExportError::UploadGone,
                e => sorted("S3", "UploadPart", e),
            })?;
        out.e_tag.ok_or_else(|| ExportError::Unavailable("S3", "UploadPart returned no ETag".into()))
    }

    /// Completes an upload of `parts` (number, ETag). An upload completed before, whose reply
    /// was lost, is no longer there: the object is read back instead of assumed.
    pub async fn finish_file(&self, key: &str, upload_id: &str, parts: &[(i32, String)]) -> Result<(), ExportError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(parts.iter().map(|(n, tag)| CompletedPart::builder().part_number(*n).e_tag(tag).build()).collect()))
            .build();
        let sent = self
            .s3()
            .await
            .complete_multipart_upload()
            .bucket(&self.config.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().code() == Some("NoSuchUpload") && self.exists(key).await? => Ok(()),
            Err(e) => Err(sorted("S3", "CompleteMultipartUpload", e)),
        }
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, ExportError> {
        match self.s3().await.head_object().bucket(&self.config.bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => Ok(false),
            Err(e) => Err(sorted("S3", "HeadObject", e)),
        }
    }

    /// The SHA-256 (hex) and length of the stored bytes of `key`, read back as they are stored:
    /// streamed, never held whole.
    pub async fn digest(&self, key: &str) -> Result<(String, i64), ExportError> {
        let mut body = self.open(key).await?;
        let mut hash = Sha256::new();
        let mut length = 0i64;
        while let Some(chunk) = body.try_next().await.map_err(|e| ExportError::Unavailable("S3", format!("GetObject body: {e}")))? {
            length += chunk.len() as i64;
            hash.update(&chunk);
        }
        Ok((data_encoding::HEXLOWER.encode(&hash.finalize()), length))
    }

    /// The stored bytes of `key`, as a stream.
    pub async fn open(&self, key: &str) -> Result<ByteStream, ExportError> {
        let out = self.s3().await.get_object().bucket(&self.config.bucket).key(key).send().await.map_err(|e| match e {
            SdkError::ServiceError(ref s) if s.raw().status().as_u16() == 404 => ExportError::Gone,
            e => sorted("S3", "GetObject", e),
        })?;
        Ok(out.body)
    }

    /// A URL that downloads `key` for [`URL_TTL`]: made per read, never stored or logged.
    pub async fn download_url(&self, key: &str) -> Result<String, ExportError> {
        let presigning = PresigningConfig::expires_in(URL_TTL).map_err(|e| ExportError::Refused("S3", e.to_string()))?;
        let request = self
            .s3()
            .await
            .get_object()
            .bucket(&self.config.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|e| sorted("S3", "GetObject (presign)", e))?;
        Ok(request.uri().to_owned())
    }

    /// Deletes every object under `prefix`, every version and delete marker included (the
    /// bucket is versioned): how many versions went. Redone after a crash, it deletes what is
    /// left.
    pub async fn delete_under(&self, prefix: &str) -> Result<u64, ExportError> {
        let s3 = self.s3().await;
        let mut deleted = 0u64;
        // Unfinished uploads first: their parts hold data too, and no listing of versions
        // shows them.
        loop {
            let page = s3
                .list_multipart_uploads()
                .bucket(&self.config.bucket)
                .prefix(prefix)
                .send()
                .await
                .map_err(|e| sorted("S3", "ListMultipartUploads", e))?;
            if page.uploads().is_empty() {
                break;
            }
            for upload in page.uploads() {
                let aborted = s3
                    .abort_multipart_upload()
                    .bucket(&self.config.bucket)
                    .key(upload.key().unwrap_or_default())
                    .upload_id(upload.upload_id().unwrap_or_default())
                    .send()
                    .await;
                match aborted {
                    Ok(_) => deleted += 1,
                    // Aborted or completed meanwhile: listed no more on the next page.
                    Err(SdkError::ServiceError(e)) if e.err().code() == Some("NoSuchUpload") => {}
                    Err(e) => return Err(sorted("S3", "AbortMultipartUpload", e)),
                }
            }
        }
        loop {
            // Always the first page: what was deleted is no longer listed.
            let page = s3
                .list_object_versions()
                .bucket(&self.config.bucket)
                .prefix(prefix)
                .max_keys(1000)
                .send()
                .await
                .map_err(|e| sorted("S3", "ListObjectVersions", e))?;
            let mut versions: Vec<(String, Option<String>)> = Vec::new();
            for v in page.versions() {
                versions.push((v.key().unwrap_or_default().to_owned(), v.version_id().map(str::to_owned)));
            }
            for m in page.delete_markers() {
                versions.push((m.key().unwrap_or_default().to_owned(), m.version_id().map(str::to_owned)));
            }
            if versions.is_empty() {
                return Ok(deleted);
            }
            // One by one: DeleteObjects needs a checksum header some S3 emulators refuse, and
            // a tenant has few files.
            for (key, version) in versions {
                s3.delete_object()
                    .bucket(&self.config.bucket)
                    .key(key)
                    .set_version_id(version)
                    .send()
                    .await
                    .map_err(|e| sorted("S3", "DeleteObject", e))?;
                deleted += 1;
            }
        }
    }
}
