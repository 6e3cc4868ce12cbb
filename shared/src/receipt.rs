//! The signed erasure receipt of a purged tenant (docs/ARCHITECTURE.md §22): what was deleted,
//! when the keys were shredded, the date after which no backup can bring them back, and what
//! was never sealed. Signed with a KMS asymmetric key (ECDSA P-256, SHA-256) over canonical
//! bytes, so that anyone holding the public key can verify it offline, without us.
//!
//! - [`Receipt`] is the statement; [`Receipt::canonical_bytes`] the bytes that are signed.
//! - [`BackupBounds`] are the backup retentions the runbook sets, read from the environment;
//!   they decide [`Receipt::unrecoverable_after`].
//! - [`ReceiptSigner`] is KMS behind a trait, like the keyring's `KeyWrapper`: the AWS
//!   implementation ([`KmsReceiptSigner`]) is behind the `kms` cargo feature.
//! - [`sign`] makes what the tenant's tombstone stores ([`SignedReceipt`]).

use crate::config::{ConfigError, Env};
use crate::ids::TenantId;
use data_encoding::BASE64;
use futures_util::future::BoxFuture;
use mongodb::bson::{DateTime, Document};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most bytes a receipt's canonical form may take: KMS signs a raw message of at most
/// 4,096 bytes (and moto, which ignores `MessageType: DIGEST`, leaves no way round it).
pub const MAX_RECEIPT_BYTES: usize = 4096;

/// The KMS signing algorithm, as KMS and the stored receipt name it.
pub const SIGNING_ALGORITHM: &str = "ECDSA_SHA_256";

/// The variable naming the receipt-signing key (an ARN, id or alias).
pub const RECEIPT_KEY_VARIABLE: &str = "RECEIPT_KEY_ID";

/// What the payload is, first in it: a verifier knows which statement it checks, and a later
/// form of the receipt gets a new one.
pub const FORMAT: &str = "tenancy.erasure-receipt/1";

/// The fields of a tenant that are never sealed, as `collection.path`: stored in the clear,
/// they are deleted by the purge but stay readable in the data cluster's backups until those
/// expire ([`BackupBounds::data_cluster_days`]). Personal data proper (e-mails, names,
/// department, title, the billing e-mail) is sealed under the tenant's keys and dies with them.
/// `auditLogs.details` is listed whole: an entry's details may name a person (an e-mail, a
/// name), which only a person's erasure removes.
pub const NEVER_SEALED: [&str; 18] = [
    "tenants.name",
    "tenants.domain",
    "tenants.suspensionReason",
    "tenants.settings.customization.logo",
    "tenantDomains._id",
    "sagas.params",
    "users.cognitoUserId",
    "users.profile.avatar",
    "userErasures.formerSub",
    "roles.name",
    "roles.description",
    "apiKeys.name",
    "auditLogs.userId",
    "auditLogs.ip",
    "auditLogs.userAgent",
    "auditLogs.action",
    "auditLogs.resourceId",
    "auditLogs.details",
];

/// Why a receipt could not be made, signed or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// This process was started without a signing key (`RECEIPT_KEY_ID`).
    #[error("erasure receipts are not configured in this function (set {RECEIPT_KEY_VARIABLE})")]
    NotConfigured,
    /// The canonical form is over [`MAX_RECEIPT_BYTES`].
    #[error("the receipt is {0} bytes, over the signing bound of {MAX_RECEIPT_BYTES}")]
    TooLarge(usize),
    /// KMS could not be reached, timed out, throttled or failed on its side: a retry may help.
    #[error("the signing key service is unavailable: {0}")]
    Unavailable(String),
    /// KMS refused for good: the key is missing, disabled, not a signing key, or access is
    /// denied. Someone must act; alarmed through `DependencyErrors`.
    #[error("the signing key service refused the request: {0}")]
    Refused(String),
    /// A stored receipt is not what [`sign`] writes.
    #[error("a stored receipt is malformed: {0}")]
    Malformed(String),
}

impl ReceiptError {
    /// Whether the failure is of a service that may come back: a 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ReceiptError::Unavailable(_))
    }
}

/// Days S3 may take beyond a lifecycle rule's expiry to remove an object: expiry runs
/// asynchronously from the next midnight UTC, and the version it leaves goes with the rule for
/// noncurrent versions, a day later.
pub const EXPORT_EXPIRY_LAG_DAYS: u32 = 2;

/// The backup retentions the runbook sets, in days: what the receipt's dates are computed from,
/// and stated in it. The runbook gives both clusters the same snapshot policy, daily snapshots
/// and their cross-region copies, with no weekly or monthly snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupBounds {
    /// The key vault's continuous backup (point-in-time restore) window.
    pub vault_pitr_days: u32,
    /// The data cluster's continuous backup window.
    pub data_pitr_days: u32,
    /// How long a snapshot is kept, on either cluster.
    pub snapshot_retention_days: u32,
    /// How long a snapshot's copy in the other region is kept.
    pub cross_region_copy_retention_days: u32,
    /// When the export bucket expires an object (its lifecycle rule).
    pub export_expiry_days: u32,
}

/// The defaults of [`BackupBounds`], which template.yaml's parameters repeat.
pub const DEFAULT_BACKUP_BOUNDS: BackupBounds = BackupBounds {
    vault_pitr_days: 1,
    data_pitr_days: 7,
    snapshot_retention_days: 7,
    cross_region_copy_retention_days: 7,
    export_expiry_days: 7,
};

/// The longest retention a bound may state: ten years keeps every date representable and
/// catches a value in hours or seconds typed by mistake.
pub const MAX_BOUND_DAYS: u32 = 3650;

/// One day in ms.
const DAY_MS: i64 = 86_400_000;

impl Default for BackupBounds {
    fn default() -> Self {
        DEFAULT_BACKUP_BOUNDS
    }
}

impl BackupBounds {
    /// The variables, each with its default: `BACKUP_VAULT_PITR_DAYS` (1),
    /// `BACKUP_DATA_PITR_DAYS` (7), `BACKUP_SNAPSHOT_RETENTION_DAYS` (7),
    /// `BACKUP_CROSS_REGION_COPY_RETENTION_DAYS` (7) and `EXPORT_EXPIRY_DAYS` (7).
    pub const VARIABLES: [&'static str; 5] = [
        "BACKUP_VAULT_PITR_DAYS",
        "BACKUP_DATA_PITR_DAYS",
        "BACKUP_SNAPSHOT_RETENTION_DAYS",
        "BACKUP_CROSS_REGION_COPY_RETENTION_DAYS",
        "EXPORT_EXPIRY_DAYS",
    ];

    /// The bounds from [`BackupBounds::VARIABLES`], each a whole number of days from 0 to
    /// [`MAX_BOUND_DAYS`]; an unset (or blank) one takes its default, anything else is a
    /// configuration error naming the variable.
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let days = |name: &'static str, default: u32| -> Result<u32, ConfigError> {
            let Some(value) = (env.0)(name).filter(|v| !v.trim().is_empty()) else { return Ok(default) };
            value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|d| *d <= MAX_BOUND_DAYS)
                .ok_or_else(|| ConfigError::Invalid(name, format!("must be a whole number of days from 0 to {MAX_BOUND_DAYS}")))
        };
        let [vault, data, snapshots, copies, exports] = Self::VARIABLES;
        let d = DEFAULT_BACKUP_BOUNDS;
        Ok(Self {
            vault_pitr_days: days(vault, d.vault_pitr_days)?,
            data_pitr_days: days(data, d.data_pitr_days)?,
            snapshot_retention_days: days(snapshots, d.snapshot_retention_days)?,
            cross_region_copy_retention_days: days(copies, d.cross_region_copy_retention_days)?,
            export_expiry_days: days(exports, d.export_expiry_days)?,
        })
    }

    /// How long after the shred a copy of the tenant's keys, or of its opened data, may still
    /// exist: the longest of the vault's point-in-time window, the snapshots' retention, their
    /// cross-region copies', and the export bucket's expiry with S3's lag
    /// ([`EXPORT_EXPIRY_LAG_DAYS`]).
    pub fn unrecoverable_days(&self) -> u32 {
        let exports = if self.export_expiry_days == 0 { 0 } else { self.export_expiry_days + EXPORT_EXPIRY_LAG_DAYS };
        self.vault_pitr_days.max(self.snapshot_retention_days).max(self.cross_region_copy_retention_days).max(exports)
    }

    /// The data cluster's longest backup retention: how long the never-sealed fields stay in
    /// its backups after the purge.
    pub fn data_cluster_days(&self) -> u32 {
        self.data_pitr_days.max(self.snapshot_retention_days).max(self.cross_region_copy_retention_days)
    }
}

/// What the purge knows when it signs: the facts a receipt states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts {
    pub tenant_id: TenantId,
    pub offboarded_at: DateTime,
    /// The actor id of whoever offboarded the tenant.
    pub offboarded_by: String,
    pub purged_at: DateTime,
    /// Documents deleted, per collection.
    pub deleted: BTreeMap<String, u64>,
    pub cognito_users_deleted: u64,
    pub keys_shredded_at: DateTime,
}

/// The erasure receipt. Its JSON, in this field order, is what is signed
/// ([`Receipt::canonical_bytes`]); timestamps are RFC 3339 UTC with milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receipt {
    /// [`FORMAT`].
    pub format: String,
    pub tenant_id: TenantId,
    pub offboarded_at: String,
    pub offboarded_by: String,
    pub purged_at: String,
    /// Documents deleted, per collection (sorted by name).
    pub deleted: BTreeMap<String, u64>,
    pub cognito_users_deleted: u64,
    pub keys_shredded_at: String,
    /// After this instant no backup holds the tenant's keys or its opened data.
    pub unrecoverable_after: String,
    pub backup_bounds: BackupBounds,
    /// [`NEVER_SEALED`].
    pub never_sealed: Vec<String>,
    /// How many days the never-sealed fields stay in the data cluster's backups after the purge.
    pub never_sealed_backup_bound_days: u32,
}

impl Receipt {
    /// The receipt of `facts` under `bounds`.
    pub fn new(facts: ReceiptFacts, bounds: &BackupBounds) -> Receipt {
        let at = crate::clock::rfc3339_millis;
        Receipt {
            format: FORMAT.to_owned(),
            unrecoverable_after: at(Receipt::unrecoverable_after(facts.keys_shredded_at, bounds)),
            tenant_id: facts.tenant_id,
            offboarded_at: at(facts.offboarded_at),
            offboarded_by: facts.offboarded_by,
            purged_at: at(facts.purged_at),
            deleted: facts.deleted,
            cognito_users_deleted: facts.cognito_users_deleted,
            keys_shredded_at: at(facts.keys_shredded_at),
            backup_bounds: *bounds,
            never_sealed: NEVER_SEALED.iter().map(|f| (*f).to_owned()).collect(),
            never_sealed_backup_bound_days: bounds.data_cluster_days(),
        }
    }

    /// The shred time plus the longest retention of anything that could bring the keys or the
    /// opened data back ([`BackupBounds::unrecoverable_days`]).
    pub fn unrecoverable_after(shredded_at: DateTime, bounds: &BackupBounds) -> DateTime {
        DateTime::from_millis(shredded_at.timestamp_millis().saturating_add(i64::from(bounds.unrecoverable_days()) * DAY_MS))
    }

    /// The bytes that are signed: the compact JSON of the receipt, its fields in declaration
    /// order and `deleted` sorted, so that the same receipt always gives the same bytes. More
    /// than [`MAX_RECEIPT_BYTES`] is an error.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, ReceiptError> {
        let bytes = serde_json::to_vec(self).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        if bytes.len() > MAX_RECEIPT_BYTES {
            return Err(ReceiptError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    /// A receipt read back from its canonical bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Receipt, ReceiptError> {
        serde_json::from_slice(bytes).map_err(|e| ReceiptError::Malformed(e.to_string()))
    }
}

/// KMS's asymmetric signing as the receipt uses it. Services never hold an SDK client, and a
/// test can put a failing or counting signer in front.
pub trait ReceiptSigner: Send + Sync + std::fmt::Debug {
    /// The signing key's id, as configured: what a stored receipt names.
    fn key_id(&self) -> &str;
    /// `Sign` of the raw `message` (ECDSA P-256 over its SHA-256): the DER signature.
    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, ReceiptError>>;
    /// The key's public half, as a DER SubjectPublicKeyInfo.
    fn public_key(&self) -> BoxFuture<'_, Result<Vec<u8>, ReceiptError>>;
}

/// A receipt as the tombstone stores it: the signed bytes and the signature (both base64), the
/// key's id and the algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedReceipt {
    pub payload: String,
    pub signature: String,
    pub key_id: String,
    pub signing_algorithm: String,
}

impl SignedReceipt {
    /// As the tombstone's `receipt`.
    pub fn to_document(&self) -> Document {
        mongodb::bson::doc! {
            "payload": &self.payload,
            "signature": &self.signature,
            "keyId": &self.key_id,
            "signingAlgorithm": &self.signing_algorithm,
        }
    }

    /// Read back from a tombstone's `receipt`.
    pub fn from_document(document: &Document) -> Result<SignedReceipt, ReceiptError> {
        mongodb::bson::from_document(document.clone()).map_err(|e| ReceiptError::Malformed(e.to_string()))
    }

    /// The signed bytes.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, ReceiptError> {
        BASE64.decode(self.payload.as_bytes()).map_err(|e| ReceiptError::Malformed(format!("payload: {e}")))
    }

    /// The DER signature.
    pub fn signature_bytes(&self) -> Result<Vec<u8>, ReceiptError> {
        BASE64.decode(self.signature.as_bytes()).map_err(|e| ReceiptError::Malformed(format!("signature: {e}")))
    }

    /// The receipt as it is published, with the public key of the key that signed it (DER).
    /// `receipt` is the payload parsed as it was signed, not as this build's [`Receipt`] reads
    /// it: an older form shows what it said.
    pub fn publish(&self, public_key: &[u8]) -> Result<PublishedReceipt, ReceiptError> {
        let receipt = serde_json::from_slice(&self.payload_bytes()?).map_err(|e| ReceiptError::Malformed(format!("payload: {e}")))?;
        Ok(PublishedReceipt {
            receipt,
            payload: self.payload.clone(),
            signature: self.signature.clone(),
            key_id: self.key_id.clone(),
            signing_algorithm: self.signing_algorithm.clone(),
            public_key: BASE64.encode(public_key),
        })
    }
}

/// What `GET /tenants/{tenantId}/receipt` answers: the receipt, the signed bytes and the
/// signature (base64), the key and algorithm, and the public key (base64 DER
/// SubjectPublicKeyInfo) to verify them with.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedReceipt {
    pub receipt: serde_json::Value,
    pub payload: String,
    pub signature: String,
    pub key_id: String,
    pub signing_algorithm: String,
    pub public_key: String,
}

/// Signs `receipt` with `signer`: what the tombstone's `receipt` holds
/// (`{payload, signature, keyId, signingAlgorithm}`, [`SignedReceipt::to_document`]).
pub async fn sign(signer: &dyn ReceiptSigner, receipt: &Receipt) -> Result<Document, ReceiptError> {
    let payload = receipt.canonical_bytes()?;
    let signature = signer.sign(&payload).await?;
    let signed = SignedReceipt {
        payload: BASE64.encode(&payload),
        signature: BASE64.encode(&signature),
        key_id: signer.key_id().to_owned(),
        signing_algorithm: SIGNING_ALGORITHM.to_owned(),
    };
    Ok(signed.to_document())
}

/// The signing configuration a function reads at cold start: the key and the bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptConfig {
    pub key_id: String,
    pub bounds: BackupBounds,
}

impl ReceiptConfig {
    /// `RECEIPT_KEY_ID` (required) and [`BackupBounds::from_env`].
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let key_id = (env.0)(RECEIPT_KEY_VARIABLE).filter(|v| !v.trim().is_empty()).ok_or(ConfigError::Missing(RECEIPT_KEY_VARIABLE))?;
        Ok(Self { key_id: key_id.trim().to_owned(), bounds: BackupBounds::from_env(env)? })
    }
}

#[cfg(feature = "kms")]
pub use aws::KmsReceiptSigner;

#[cfg(feature = "kms")]
mod aws {
    use super::*;
    use aws_sdk_kms::config::http::HttpResponse;
    use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
    use aws_sdk_kms::primitives::Blob;
    use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
    use aws_sdk_kms::Client;
    use tokio::sync::OnceCell;

    /// The receipt-signing key in AWS KMS, through the process's one SDK configuration
    /// ([`crate::secrets::sdk_config`]: locally `AWS_ENDPOINT_URL_KMS`, moto). The public key
    /// is asked once per process.
    #[derive(Debug)]
    pub struct KmsReceiptSigner {
        key_id: String,
        client: OnceCell<Client>,
        public_key: OnceCell<Vec<u8>>,
    }

    impl KmsReceiptSigner {
        /// The signer of key `key_id` (an ARN, id or alias), configured lazily.
        pub fn new(key_id: impl Into<String>) -> Self {
            Self { key_id: key_id.into(), client: OnceCell::new(), public_key: OnceCell::new() }
        }

        /// The signer through a given client (tests point one at moto).
        pub fn with_client(client: Client, key_id: impl Into<String>) -> Self {
            Self { key_id: key_id.into(), client: OnceCell::from(client), public_key: OnceCell::new() }
        }

        async fn client(&self) -> &Client {
            self.client.get_or_init(|| async { Client::new(crate::secrets::sdk_config().await) }).await
        }
    }

    /// Sorts a KMS failure as the keyring does (`pii::kms::sort_failure`): transient is
    /// [`ReceiptError::Unavailable`]; permanent is [`ReceiptError::Refused`], with an error line
    /// (the metric is counted by the sorting).
    fn failed<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> ReceiptError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match crate::pii::kms::sort_failure(error) {
            crate::pii::kms::KmsFailure::Transient(text) => ReceiptError::Unavailable(text),
            crate::pii::kms::KmsFailure::Permanent { code, text } => {
                tracing::error!(dependency = "KMS", operation, code = %code, "KMS refused the request permanently: check the receipt-signing key (exists, enabled, SIGN_VERIFY on ECC_NIST_P256) and the function's permissions on it");
                ReceiptError::Refused(format!("{operation}: {code}: {text}"))
            }
        }
    }

    impl ReceiptSigner for KmsReceiptSigner {
        fn key_id(&self) -> &str {
            &self.key_id
        }

        fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, ReceiptError>> {
            Box::pin(async move {
                if message.len() > MAX_RECEIPT_BYTES {
                    return Err(ReceiptError::TooLarge(message.len()));
                }
                // RAW, not DIGEST: KMS hashes the message itself, and moto ignores DIGEST and
                // would hash a digest again.
                let out = self
                    .client()
                    .await
                    .sign()
                    .key_id(&self.key_id)
                    .message(Blob::new(message.to_vec()))
                    .message_type(MessageType::Raw)
                    .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
                    .send()
                    .await
                    .map_err(|e| failed("Sign", e))?;
                let signature = out.signature.ok_or_else(|| ReceiptError::Unavailable("Sign returned no signature".into()))?;
                Ok(signature.into_inner())
            })
        }

        fn public_key(&self) -> BoxFuture<'_, Result<Vec<u8>, ReceiptError>> {
            Box::pin(async move {
                let key = self
                    .public_key
                    .get_or_try_init(|| async {
                        let out = self
                            .client()
                            .await
                            .get_public_key()
                            .key_id(&self.key_id)
                            .send()
                            .await
                            .map_err(|e| failed("GetPublicKey", e))?;
                        let key = out.public_key.ok_or_else(|| ReceiptError::Unavailable("GetPublicKey returned no key".into()))?;
                        Ok::<_, ReceiptError>(key.into_inner())
                    })
                    .await?;
                Ok(key.clone())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env(move |name: &str| map.get(name).cloned())
    }

    fn at(text: &str) -> DateTime {
        crate::clock::parse_rfc3339(text).expect("a date")
    }

    fn facts() -> ReceiptFacts {
        ReceiptFacts {
            tenant_id: TenantId::parse("tn_receipt").unwrap(),
            offboarded_at: at("2026-01-01T00:00:00Z"),
            offboarded_by: "0f1e2d3c-0000-4000-8000-00000000a001".into(),
            purged_at: at("2026-01-31T00:00:05.250Z"),
            deleted: [("users".to_owned(), 3), ("auditLogs".to_owned(), 120), ("apiKeys".to_owned(), 2)].into_iter().collect(),
            cognito_users_deleted: 3,
            keys_shredded_at: at("2026-01-31T00:00:04Z"),
        }
    }

    #[test]
    fn the_canonical_bytes_are_the_fields_in_order_and_read_back_the_same() {
        let receipt = Receipt::new(facts(), &BackupBounds::default());
        let bytes = receipt.canonical_bytes().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"format":"tenancy.erasure-receipt/1","tenantId":"tn_receipt","offboardedAt":"2026-01-01T00:00:00.000Z","#),
            "{text}"
        );
        assert!(text.contains(r#""deleted":{"apiKeys":2,"auditLogs":120,"users":3},"cognitoUsersDeleted":3,"#), "sorted: {text}");
        assert!(text.contains(r#""keysShreddedAt":"2026-01-31T00:00:04.000Z","unrecoverableAfter":"2026-02-09T00:00:04.000Z","#), "{text}");
        assert!(text.ends_with(r#""auditLogs.details"],"neverSealedBackupBoundDays":7}"#), "{text}");
        assert!(!text.contains(char::is_whitespace), "compact: {text}");
        assert_eq!(Receipt::from_bytes(&bytes).unwrap(), receipt);
        assert_eq!(Receipt::from_bytes(&bytes).unwrap().canonical_bytes().unwrap(), bytes, "the same bytes every time");
        assert!(Receipt::from_bytes(br#"{"format":"x"}"#).is_err());
    }

    #[test]
    fn a_receipt_at_plausible_maxima_stays_under_the_signing_bound_and_a_larger_one_is_refused() {
        let mut facts = facts();
        // Every collection the purge may count, twice the names there are today, each at the
        // largest count there can be; the longest tenant id and actor id.
        facts.tenant_id = TenantId::parse("t".repeat(64)).unwrap();
        facts.offboarded_by = format!("system:{}", "x".repeat(121));
        facts.deleted = (0..24).map(|i| (format!("{}{i:02}", "c".repeat(30)), u64::MAX)).collect();
        facts.cognito_users_deleted = u64::MAX;
        let max = BackupBounds {
            vault_pitr_days: MAX_BOUND_DAYS,
            data_pitr_days: MAX_BOUND_DAYS,
            snapshot_retention_days: MAX_BOUND_DAYS,
            cross_region_copy_retention_days: MAX_BOUND_DAYS,
            export_expiry_days: MAX_BOUND_DAYS,
        };
        let receipt = Receipt::new(facts, &max);
        let bytes = receipt.canonical_bytes().expect("within the bound");
        assert!(bytes.len() <= MAX_RECEIPT_BYTES, "{} bytes", bytes.len());
        let mut over = receipt.clone();
        over.deleted.extend((0..100).map(|i| (format!("{}{i:03}", "d".repeat(40)), u64::MAX)));
        assert!(matches!(over.canonical_bytes(), Err(ReceiptError::TooLarge(n)) if n > MAX_RECEIPT_BYTES));
    }

    #[test]
    fn unrecoverable_after_is_the_shred_plus_the_longest_retention_that_could_bring_keys_back() {
        let shredded = at("2026-03-01T12:00:00Z");
        let base = BackupBounds {
            vault_pitr_days: 2,
            data_pitr_days: 90,
            snapshot_retention_days: 5,
            cross_region_copy_retention_days: 3,
            export_expiry_days: 4,
        };
        // The data cluster's window holds no keys: it bounds the never-sealed fields instead.
        // The export bucket's 4 days, with S3's lag of 2, are the longest.
        assert_eq!(Receipt::unrecoverable_after(shredded, &base), at("2026-03-07T12:00:00Z"));
        assert_eq!(base.data_cluster_days(), 90);
        let cases = [
            (BackupBounds { vault_pitr_days: 9, ..base }, "2026-03-10T12:00:00Z"),
            (BackupBounds { cross_region_copy_retention_days: 30, ..base }, "2026-03-31T12:00:00Z"),
            (BackupBounds { export_expiry_days: 14, ..base }, "2026-03-17T12:00:00Z"),
        ];
        for (bounds, expected) in cases {
            assert_eq!(Receipt::unrecoverable_after(shredded, &bounds), at(expected), "{bounds:?}");
        }
        let zero = BackupBounds {
            vault_pitr_days: 0,
            data_pitr_days: 0,
            snapshot_retention_days: 0,
            cross_region_copy_retention_days: 0,
            export_expiry_days: 0,
        };
        assert_eq!(Receipt::unrecoverable_after(shredded, &zero), shredded);
        let receipt = Receipt::new(ReceiptFacts { keys_shredded_at: shredded, ..facts() }, &base);
        assert_eq!(receipt.unrecoverable_after, "2026-03-07T12:00:00.000Z");
        assert_eq!(receipt.never_sealed_backup_bound_days, 90);
        assert_eq!(receipt.backup_bounds, base, "the receipt states its bounds");
    }

    #[test]
    fn the_bounds_come_from_the_environment_with_defaults_and_refuse_what_is_not_a_number_of_days() {
        assert_eq!(BackupBounds::from_env(&env(&[])).unwrap(), DEFAULT_BACKUP_BOUNDS);
        let set = BackupBounds::from_env(&env(&[("BACKUP_VAULT_PITR_DAYS", "3"), ("EXPORT_EXPIRY_DAYS", " 10 ")])).unwrap();
        assert_eq!((set.vault_pitr_days, set.export_expiry_days, set.data_pitr_days), (3, 10, 7));
        for bad in ["-1", "7d", "1.5", "3651"] {
            let error = BackupBounds::from_env(&env(&[("BACKUP_SNAPSHOT_RETENTION_DAYS", bad)])).unwrap_err();
            assert!(matches!(error, ConfigError::Invalid("BACKUP_SNAPSHOT_RETENTION_DAYS", _)), "{bad}: {error}");
        }
        assert_eq!(ReceiptConfig::from_env(&env(&[])).unwrap_err(), ConfigError::Missing(RECEIPT_KEY_VARIABLE));
        let config = ReceiptConfig::from_env(&env(&[("RECEIPT_KEY_ID", "k")])).unwrap();
        assert_eq!((config.key_id.as_str(), config.bounds), ("k", DEFAULT_BACKUP_BOUNDS));
    }

    /// A signer that signs nothing real: it answers the message reversed.
    #[derive(Debug)]
    struct Mirror;

    impl ReceiptSigner for Mirror {
        fn key_id(&self) -> &str {
            "mirror"
        }
        fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, ReceiptError>> {
            Box::pin(async move { Ok(message.iter().rev().copied().collect()) })
        }
        fn public_key(&self) -> BoxFuture<'_, Result<Vec<u8>, ReceiptError>> {
            Box::pin(async { Ok(vec![]) })
        }
    }

    #[tokio::test]
    async fn sign_stores_the_canonical_bytes_the_signature_and_the_key() {
        let receipt = Receipt::new(facts(), &BackupBounds::default());
        let stored = sign(&Mirror, &receipt).await.unwrap();
        let keys: Vec<&str> = stored.keys().map(String::as_str).collect();
        assert_eq!(keys, ["payload", "signature", "keyId", "signingAlgorithm"]);
        let signed = SignedReceipt::from_document(&stored).unwrap();
        assert_eq!((signed.key_id.as_str(), signed.signing_algorithm.as_str()), ("mirror", "ECDSA_SHA_256"));
        let payload = signed.payload_bytes().unwrap();
        assert_eq!(payload, receipt.canonical_bytes().unwrap());
        assert_eq!(signed.signature_bytes().unwrap(), payload.iter().rev().copied().collect::<Vec<u8>>());
        assert!(SignedReceipt::from_document(&mongodb::bson::doc! {"payload": "x"}).is_err());
    }
}
