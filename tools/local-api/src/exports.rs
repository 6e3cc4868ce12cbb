//! The export bucket and the jobs queue in moto (docs/ARCHITECTURE.md §22), and the jobs
//! worker run in-process, as the deployed `tenant-jobs` function is run by SQS.

use crate::BoxError;
use shared::db::Db;
use shared::directory::Directory;
use shared::exports::{Exports, ExportsConfig, QueueMessage};
use std::sync::Arc;
use std::time::Duration;

/// The local export bucket's name (clearly local).
pub const LOCAL_BUCKET: &str = "tenancy-local-exports";
/// The local jobs queue's name.
pub const LOCAL_QUEUE: &str = "tenancy-local-jobs";
/// moto's default account, in its queue URLs.
const MOTO_ACCOUNT: &str = "123456789012";

/// How long a received message stays hidden: the deployed queue's visibility timeout is six
/// times the worker's timeout; locally a failed job comes back within a minute.
pub const LOCAL_VISIBILITY_SECONDS: i32 = 60;

/// The exports configuration of the local stack at `moto_url`: path-style URLs that resolve
/// from the host, files expiring after the deployed default.
pub fn local_config(moto_url: &str) -> ExportsConfig {
    ExportsConfig {
        bucket: LOCAL_BUCKET.to_owned(),
        queue_url: format!("{}/{MOTO_ACCOUNT}/{LOCAL_QUEUE}", moto_url.trim_end_matches('/')),
        expiry_days: 7,
        path_style: true,
    }
}

/// Exports on moto at `moto_url`, through clients of their own.
pub fn on_moto(config: ExportsConfig, moto_url: &str, region: &str) -> Arc<Exports> {
    let sdk = crate::cognito::moto_config(moto_url, region);
    Arc::new(Exports::with_clients(config, shared::exports::s3_client(&sdk, true), aws_sdk_sqs::Client::new(&sdk)))
}

/// Makes the bucket (versioned, as the template's) and the queue named by `config` in moto,
/// keeping them if they exist.
pub async fn ensure(config: &ExportsConfig, moto_url: &str, region: &str) -> Result<(), BoxError> {
    let sdk = crate::cognito::moto_config(moto_url, region);
    let s3 = shared::exports::s3_client(&sdk, true);
    match s3.create_bucket().bucket(&config.bucket).send().await {
        Ok(_) => {}
        Err(e) if matches!(aws_sdk_s3::error::ProvideErrorMetadata::code(&e), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) => {}
        Err(e) => return Err(aws_sdk_s3::error::DisplayErrorContext(e).to_string().into()),
    }
    let versioning =
        aws_sdk_s3::types::VersioningConfiguration::builder().status(aws_sdk_s3::types::BucketVersioningStatus::Enabled).build();
    s3.put_bucket_versioning().bucket(&config.bucket).versioning_configuration(versioning).send().await?;
    let name = config.queue_url.rsplit('/').next().unwrap_or(LOCAL_QUEUE);
    aws_sdk_sqs::Client::new(&sdk).create_queue().queue_name(name).send().await?;
    Ok(())
}

/// Handles the messages of one receive: each that is handled is deleted; one that fails stays
/// and comes back after its visibility timeout, as SQS redelivers to a failed invocation. How
/// many were handled.
pub async fn handle_received(db: &Db, directory: &dyn Directory, exports: &Exports, messages: Vec<QueueMessage>) -> usize {
    let mut handled = 0;
    for message in messages {
        match tenants::jobs::handle_message(db, directory, &message.body).await {
            Ok(_) => {
                handled += 1;
                if let Err(error) = exports.acknowledge(&message).await {
                    tracing::warn!(%error, "a handled job message was not deleted; its job ignores the redelivery");
                }
            }
            Err(error) => tracing::warn!(%error, "a job step failed; its message comes back after its visibility timeout"),
        }
    }
    handled
}

/// The in-process worker of the serving local API: receives from the jobs queue (long polls)
/// and handles each message, for as long as the returned task runs. A receive that fails is
/// tried again after a pause.
pub fn work_periodically(stack: crate::Stack) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (db, directory) = (&stack.db, stack.directory.as_ref());
        let Ok(exports) = db.exports() else { return };
        loop {
            match exports.receive(10, LOCAL_VISIBILITY_SECONDS).await {
                Ok(messages) => {
                    handle_received(db, directory, exports, messages).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "the jobs queue could not be read; trying again shortly");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    })
}
