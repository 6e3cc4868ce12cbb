//! What an invocation answers: one [`Report`] per action, and every type its variants carry, so
//! that the whole JSON shape is read in one place.

use crate::indexes::IndexOutcome;
use serde::Serialize;

/// One applied migration in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub name: String,
    pub duration_ms: i64,
    pub documents_changed: u64,
}

/// What an invocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Report {
    Setup {
        created: usize,
        existing: usize,
        indexes: Vec<IndexOutcome>,
    },
    #[serde(rename_all = "camelCase")]
    Up {
        applied: Vec<Applied>,
        already_applied: Vec<String>,
    },
    #[serde(rename_all = "camelCase")]
    Status {
        applied: Vec<StatusEntry>,
        pending: Vec<String>,
        personal_data: PersonalDataStatus,
    },
    /// The UTC day the snapshots are of, how many tenants were measured and how many snapshots
    /// written (a rerun the same day replaces them).
    #[serde(rename = "usage-snapshot", rename_all = "camelCase")]
    UsageSnapshot {
        day: String,
        tenants_measured: u64,
        snapshots_written: u64,
    },
    #[serde(rename = "rotate-key")]
    RotateKey(RotationReport),
    #[serde(rename = "shred")]
    Shred(ShredReport),
    #[serde(rename = "reconcile-counters")]
    ReconcileCounters(ReconcileReport),
    #[serde(rename = "reconcile-tombstones")]
    ReconcileTombstones(TombstoneReport),
}

/// An applied migration as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusEntry {
    pub name: String,
    pub applied_at: String,
    pub duration_ms: i64,
}

/// What `status` reports of personal data: how much plaintext the sealing migration has still
/// to seal (zero once it has run), and how many tenants have keys in the vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonalDataStatus {
    pub remaining: Remaining,
    pub remaining_total: u64,
    pub tenants_with_keys: u64,
}

/// How much plaintext personal data remains: records without a blind index (only records from
/// before encryption lack one), tenants whose billing e-mail is text, audit entries with an
/// admin e-mail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Remaining {
    pub users: u64,
    pub tenants: u64,
    pub audit_entries: u64,
}

impl Remaining {
    /// Everything that remains.
    pub fn total(&self) -> u64 {
        self.users + self.tenants + self.audit_entries
    }
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationReport {
    pub tenant_id: String,
    /// The data-key version everything is now under.
    pub version: u32,
    /// Whether this run made that version (`false`: it resumed an earlier rotation).
    pub new_key: bool,
    pub records_reencrypted: u64,
}

/// What a shred did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShredReport {
    pub tenant_id: String,
    pub shredded: bool,
}

/// One counter set to its recount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Correction {
    pub tenant_id: String,
    /// `seats`, `admins` or `apiKeyCount`.
    pub counter: &'static str,
    pub from: i64,
    pub to: i64,
}

/// A counter left as it was, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub tenant_id: String,
    pub counter: &'static str,
    pub reason: &'static str,
}

/// What one counter reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub tenants_checked: u64,
    pub corrected: Vec<Correction>,
    pub skipped: Vec<Skipped>,
}

/// What one tombstone reconciliation did, by kind (each zero when no restore brought anything
/// back).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TombstoneReport {
    /// Tenants in the union of both sides' tombstones.
    pub tenants_checked: u64,
    /// Vault tombstones written from the data cluster's.
    pub vault_tombstones_written: u64,
    /// Data cluster tombstones written from the vault's (without a receipt).
    pub data_tombstones_written: u64,
    /// Registry records marked `keysShreddedAt` again.
    pub shred_marks_set: u64,
    /// Wrapped key sets destroyed in the vault.
    pub key_sets_deleted: u64,
    /// Global e-mail index entries destroyed in the vault.
    pub email_entries_deleted: u64,
    /// Tenants whose restored documents were purged again.
    pub tenants_purged: u64,
    /// The documents those purges deleted, per tenant collection.
    pub documents_deleted: std::collections::BTreeMap<String, u64>,
    /// Tenants left to their purge saga, still open.
    pub purges_in_flight: u64,
}
