//! Documents of the brief's five collections (§4.1.2), plus the usage counter. Field names are
//! the brief's camelCase; timestamps are BSON dates.

use crate::ids::{Permission, TenantId};
use crate::pii::Sealed;
use crate::plans::Plan;
use mongodb::bson::{oid::ObjectId, DateTime};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a tenant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
    /// Offboarded and within its grace period, or being purged: no member or key is admitted,
    /// its data is kept, and nothing writes into it (docs/ARCHITECTURE.md §22).
    Offboarding,
    /// Purged: its documents deleted and its keys shredded; only its registry record remains.
    Inactive,
}

impl TenantStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Offboarding => "offboarding",
            TenantStatus::Inactive => "inactive",
        }
    }

    /// Whether the tenant is ending: offboarding or purged. Its settings no longer change.
    pub fn is_ending(self) -> bool {
        matches!(self, TenantStatus::Offboarding | TenantStatus::Inactive)
    }
}

/// An offboarding as the registry record keeps it (docs/ARCHITECTURE.md §22).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffboardingState {
    pub requested_at: DateTime,
    /// The actor id of the superadmin who asked.
    pub requested_by: String,
    pub grace_period_days: i64,
    /// When the purge may start; a cancellation is accepted only before it.
    pub grace_ends_at: DateTime,
    /// The status a cancellation puts back.
    pub previous_status: TenantStatus,
    /// Set by the one write that hands the tenant to its purge: no cancellation after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_started_at: Option<DateTime>,
    /// The tenant a restore of its export is making, which takes its people and domain over:
    /// no cancellation after it either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_into: Option<TenantId>,
}

/// Branding a tenant admin may change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customization {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theme: Option<String>,
}

/// The tenant's plan and billing contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Billing {
    pub plan: Plan,
    pub max_api_calls: i64,
    /// Personal data: sealed under the tenant's data key (`pii::Field::BillingEmail`).
    pub billing_email: Sealed,
}

/// Limits, features and branding of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantSettings {
    pub max_users: i64,
    pub features: Vec<String>,
    #[serde(default)]
    pub customization: Customization,
    pub billing: Billing,
    /// An enterprise tenant's own audit retention in days (up to 7 years); others keep their
    /// plan's, and a plan change clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_retention_days: Option<i64>,
    /// Whether the tenant opted in to a nightly export of its data, which runs while its plan
    /// allows it (`PlanLimits::nightly_exports`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nightly_export: bool,
}

impl TenantSettings {
    /// Settings for a new tenant on `plan`, straight from the catalogue.
    pub fn for_plan(plan: Plan, billing_email: Sealed) -> Self {
        let limits = plan.limits();
        Self {
            max_users: limits.max_users,
            features: plan.features(),
            customization: Customization { theme: Some("default".into()), ..Customization::default() },
            billing: Billing { plan, max_api_calls: limits.max_api_calls, billing_email },
            audit_retention_days: None,
            nightly_export: false,
        }
    }

    /// How long the tenant's audit entries are kept, in days.
    pub fn audit_retention_days(&self) -> i64 {
        self.billing.plan.retention_days(self.audit_retention_days)
    }
}

/// A tenant in the global registry (`tenants`, no tenant scope).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub tenant_id: TenantId,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub settings: TenantSettings,
    pub status: TenantStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspension_reason: Option<String>,
    /// API calls per calendar month (UTC), keyed `YYYY-MM`: the atomic usage counter.
    #[serde(default)]
    pub api_usage: BTreeMap<String, i64>,
    /// Calls in the current per-minute window, keyed `YYYYMMDDHHMM`; stale windows are removed
    /// by the update that counts the next call.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub minute_usage: BTreeMap<String, i64>,
    /// Seats and admins; absent on tenants made before they existed, until migration 002.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<TenantCounters>,
    /// Active API keys, each bounded by the plan's number of keys in the filter of the one
    /// conditional update that takes a place (absent counts as 0).
    #[serde(default)]
    pub api_key_count: i64,
    /// A change of audit retention not yet applied to every existing entry's `expireAt`
    /// (docs/ARCHITECTURE.md §13); cleared once it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_retention: Option<PendingRetention>,
    /// When the tenant's personal-data keys were shredded (docs/ARCHITECTURE.md §20), set by
    /// the `shred` job before it destroys them. From then on no one is admitted to the tenant,
    /// its personal fields show as unavailable without a key being asked for, and its status
    /// and billing no longer change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_shredded_at: Option<DateTime>,
    /// Set while the tenant is `offboarding`, and kept once it is `inactive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offboarding: Option<OffboardingState>,
    /// Set while a restore loads the tenant (docs/ARCHITECTURE.md §22): no route changes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restoring: Option<bool>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
}

/// A retention change in progress: the days it was made for, and the last entry already moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRetention {
    pub days: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ObjectId>,
}

/// Counts that must be exact, each moved only by one conditional update on the tenant record
/// together with the user-record write that matched (docs/ARCHITECTURE.md §12).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCounters {
    /// User records of any status: each holds a seat of the plan's `maxUsers`.
    pub seats: i64,
    /// Pending or active users holding the admin role: the last one cannot go.
    pub admins: i64,
}

/// The tenant-record field holding the id of the last counter move: after a lost reply, whether
/// the move was this one; and the recount's condition (docs/ARCHITECTURE.md §12).
pub const COUNTER_MOVE: &str = "counterMove";

/// The tenant-record field holding when each collection's counters last moved, by the
/// collection they count ([`Counted::moved_at`]). Stamped with the db clock by the move itself,
/// so that the recount can tell a saga still between its two writes from a drift (§12).
pub const COUNTER_MOVED_AT: &str = "counterMovedAt";

/// The field a write that changes what a user or key record holds stamps (with the db clock),
/// together with its markers and `markerOp`; a record's creation is its `createdAt`. The recount
/// leaves a counter alone while one of its records has either within the settle window (§12).
pub const MARKED_AT: &str = "markedAt";

/// Which counters a move changes, named by the collection of the records they count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// `counters.seats` and `counters.admins`, counted from `users`.
    Users,
    /// `apiKeyCount`, counted from `apiKeys`.
    ApiKeys,
}

impl Counted {
    /// The collection's name: its key under [`COUNTER_MOVED_AT`].
    pub fn collection(self) -> &'static str {
        match self {
            Counted::Users => "users",
            Counted::ApiKeys => "apiKeys",
        }
    }

    /// The path of this collection's stamp under [`COUNTER_MOVED_AT`].
    pub fn moved_at(self) -> &'static str {
        match self {
            Counted::Users => "counterMovedAt.users",
            Counted::ApiKeys => "counterMovedAt.apiKeys",
        }
    }
}

/// How a user record is tied to Cognito. A pending user has no Cognito id yet; it stores a
/// placeholder unique to the record, so that the unique `{tenantId, cognitoUserId}` index holds
/// without a sparse or partial index (FerretDB has neither, and the brief's `''` collides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CognitoLink {
    Linked(String),
    Pending(ObjectId),
}

const PENDING_PREFIX: &str = "pending:";

impl CognitoLink {
    /// The Cognito `sub`, once linked.
    pub fn sub(&self) -> Option<&str> {
        match self {
            CognitoLink::Linked(sub) => Some(sub),
            CognitoLink::Pending(_) => None,
        }
    }
    /// The stored form.
    pub fn stored(&self) -> String {
        match self {
            CognitoLink::Linked(sub) => sub.clone(),
            CognitoLink::Pending(id) => format!("{PENDING_PREFIX}{id}"),
        }
    }
}

impl Serialize for CognitoLink {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.stored())
    }
}

impl<'de> Deserialize<'de> for CognitoLink {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        match raw.strip_prefix(PENDING_PREFIX) {
            Some(id) => ObjectId::parse_str(id).map(CognitoLink::Pending).map_err(serde::de::Error::custom),
            None if raw.is_empty() => Err(serde::de::Error::custom("empty cognitoUserId")),
            None => Ok(CognitoLink::Linked(raw)),
        }
    }
}

/// A user's name and job, in the clear: what the API takes and shows. It is stored only as a
/// [`SealedProfile`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub first_name: String,
    pub last_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A user's name and job as stored: the names, department and title are personal data, sealed
/// under the tenant's data key; the avatar is a URL of the tenant's choosing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedProfile {
    pub first_name: Sealed,
    pub last_name: Sealed,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<Sealed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Sealed>,
}

/// Where a user is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Inactive,
    Pending,
}

impl UserStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Inactive => "inactive",
            UserStatus::Pending => "pending",
        }
    }
}

/// A user of a tenant (`users`, tenant-scoped). `tenantId` and the timestamps are stamped by
/// the scope, so they are optional here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    pub cognito_user_id: CognitoLink,
    /// Personal data: sealed under the tenant's data key. Lookups go through `emailHash`.
    pub email: Sealed,
    /// The tenant's blind index of the e-mail (HMAC under its index key): lookups and the
    /// unique `{tenantId, emailHash}` index. Absent only on records from before encryption,
    /// until the migration reaches them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_hash: Option<String>,
    pub profile: SealedProfile,
    /// Role ids (hex ObjectIds), as in the brief.
    pub roles: Vec<String>,
    pub status: UserStatus,
    /// Whether the record holds a seat of `counters.seats` (docs/ARCHITECTURE.md §12). Absent
    /// on records from before the markers: a user record always held one ([`User::holds_seat`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat_held: Option<bool>,
    /// Whether the record holds a place of `counters.admins`. Absent on records from before the
    /// markers: held iff pending or active with the admin role ([`User::holds_admin_place`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_held: Option<bool>,
    /// The operation that last wrote the markers: after a lost reply, whether the write was ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_op: Option<ObjectId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime>,
}

impl User {
    /// Whether the record holds a seat: its marker, or (absent) always.
    pub fn holds_seat(&self) -> bool {
        self.seat_held.unwrap_or(true)
    }

    /// Whether the record holds an admin place: its marker, or (absent) whether it is pending or
    /// active with `admin_role` (the tenant's admin role id, hex).
    pub fn holds_admin_place(&self, admin_role: &str) -> bool {
        self.admin_held.unwrap_or_else(|| self.status != UserStatus::Inactive && self.roles.iter().any(|r| r == admin_role))
    }
}

/// The well-known principal that system-made records name as their creator
/// (docs/ARCHITECTURE.md §9).
pub const SYSTEM_PRINCIPAL: ObjectId = ObjectId::from_bytes([0; 12]);

/// A role of a tenant (`roles`, tenant-scoped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub permissions: Vec<Permission>,
    pub is_system: bool,
    pub created_by: ObjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime>,
}

/// Per-key request budgets, each bounded by the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub requests_per_minute: i64,
    pub requests_per_hour: i64,
    pub requests_per_day: i64,
}

/// Where an API key is in its life. `expired` is written lazily, when a place is reclaimed;
/// an active key past its `expiresAt` is refused all the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyStatus {
    Active,
    Revoked,
    Expired,
}

impl ApiKeyStatus {
    /// The status as stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyStatus::Active => "active",
            ApiKeyStatus::Revoked => "revoked",
            ApiKeyStatus::Expired => "expired",
        }
    }
}

/// An API key of a tenant (`apiKeys`, tenant-scoped). Its `_id` is the public key id, globally
/// unique, because authentication looks the key up before it knows the tenant
/// (docs/ARCHITECTURE.md §9); `keyId` repeats it for the unique index. Only hashes of secrets
/// are stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    pub key_id: String,
    pub name: String,
    /// SHA-256 of the current secret, hex.
    pub key_hash: String,
    /// The secret a rotation replaced, and until when it still works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key_valid_until: Option<DateTime>,
    pub permissions: Vec<Permission>,
    pub rate_limit: RateLimit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime>,
    pub status: ApiKeyStatus,
    /// Whether the key holds a place of the tenant's `apiKeyCount` (docs/ARCHITECTURE.md §13).
    /// Absent on keys from before the marker: held iff active ([`ApiKey::holds_place`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_held: Option<bool>,
    /// The operation that last wrote the marker: after a lost reply, whether the write was ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_op: Option<ObjectId>,
    /// The creating user's record: the key never holds more than its creator holds now.
    pub created_by: ObjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime>,
}

impl ApiKey {
    /// Whether the key holds a place: its marker, or (absent) whether its stored status is active.
    pub fn holds_place(&self) -> bool {
        self.place_held.unwrap_or(self.status == ApiKeyStatus::Active)
    }
}

/// One audit entry (`auditLogs`, tenant-scoped). `expireAt` drives retention: a TTL index where
/// the server has one, and the scheduled retention job everywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditLog {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub action: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    pub details: mongodb::bson::Document,
    pub ip: String,
    pub user_agent: String,
    pub request_id: String,
    pub timestamp: DateTime,
    pub expire_at: DateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime>,
    /// Set by an erasure on the entries its person made (docs/ARCHITECTURE.md §22): the actor id
    /// is a `sub` that a `userErasures` tombstone holds as `formerSub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_erased: Option<bool>,
}

/// The tombstone of a purged tenant, in the global `tenantTombstones` (docs/ARCHITECTURE.md
/// §22): the data cluster's record that the tenant ended, which a restore of an older backup
/// cannot undo without the reconciliation seeing it (the vault keeps its own). No personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantTombstone {
    /// The tenant id.
    #[serde(rename = "_id")]
    pub id: TenantId,
    pub offboarded_at: DateTime,
    /// The actor id of the superadmin who offboarded it.
    pub offboarded_by: String,
    pub purged_at: DateTime,
    /// The receipt as signed: its payload's bytes (base64), the signature (base64), and the
    /// signing key's id and algorithm. Absent on a tombstone written by the reconciliation of a
    /// restored backup (the receipt stays on the tombstone it restores from the other side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<mongodb::bson::Document>,
}

/// The tombstone of an erased person, in `userErasures` (docs/ARCHITECTURE.md §22): no personal
/// data, only what resolves the person's old ids: the record's id (`_id`, also `userId`) and
/// the Cognito `sub` their audit entries name as actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserErasure {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    pub user_id: String,
    /// The `sub` the person had; absent for a person who never signed in and was never linked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub former_sub: Option<String>,
    pub erased_at: DateTime,
    /// The actor id of whoever asked for the erasure.
    pub erased_by: String,
}

/// Documents and their BSON bytes: of one tenant collection, or a snapshot's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionUsage {
    pub documents: u64,
    pub bytes: u64,
}

impl CollectionUsage {
    /// Both counts added, saturating.
    pub fn plus(self, other: CollectionUsage) -> CollectionUsage {
        CollectionUsage { documents: self.documents.saturating_add(other.documents), bytes: self.bytes.saturating_add(other.bytes) }
    }
}

/// One tenant's stored data on one day (`usageSnapshots`, global): one document per tenant and
/// UTC day, `_id` = `<tenantId>:<YYYY-MM-DD>`, so that a second run the same day replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageSnapshot {
    #[serde(rename = "_id")]
    pub id: String,
    pub tenant_id: TenantId,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub taken_at: DateTime,
    /// Per tenant collection, by its name (`users`, `roles`, `apiKeys`, `auditLogs`).
    pub collections: BTreeMap<String, CollectionUsage>,
    pub totals: CollectionUsage,
}

impl UsageSnapshot {
    /// The snapshot of `tenant_id` taken at `taken_at`: its day, its id and its totals follow.
    pub fn new(tenant_id: TenantId, taken_at: DateTime, collections: BTreeMap<String, CollectionUsage>) -> Self {
        let day = crate::clock::calendar_day(taken_at.timestamp_millis());
        let totals = collections.values().fold(CollectionUsage::default(), |sum, c| sum.plus(*c));
        Self { id: Self::id_for(&tenant_id, &day), tenant_id, day, taken_at, collections, totals }
    }

    /// The `_id` of a tenant's snapshot of a day: `<tenantId>:<YYYY-MM-DD>`.
    pub fn id_for(tenant_id: &TenantId, day: &str) -> String {
        format!("{tenant_id}:{day}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson;

    #[test]
    fn a_pending_cognito_link_round_trips_and_is_unique_per_record() {
        let a = CognitoLink::Pending(ObjectId::new());
        let b = CognitoLink::Pending(ObjectId::new());
        assert_ne!(a.stored(), b.stored());
        let back: CognitoLink = bson::from_bson(bson::to_bson(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.sub(), None);
    }

    #[test]
    fn a_usage_snapshot_is_keyed_by_tenant_and_utc_day_and_sums_its_collections() {
        let tenant = TenantId::parse("tn_usage").unwrap();
        // 2026-11-28T23:59:59.999Z: still the 28th in UTC.
        let at = DateTime::from_millis(1_795_910_399_999);
        let collections = BTreeMap::from([
            ("users".to_owned(), CollectionUsage { documents: 2, bytes: 300 }),
            ("auditLogs".to_owned(), CollectionUsage { documents: 5, bytes: 1_000 }),
        ]);
        let snapshot = UsageSnapshot::new(tenant.clone(), at, collections);
        assert_eq!(snapshot.day, "2026-11-28");
        assert_eq!(snapshot.id, "tn_usage:2026-11-28");
        assert_eq!(snapshot.totals, CollectionUsage { documents: 7, bytes: 1_300 });
        let next = UsageSnapshot::new(tenant, DateTime::from_millis(at.timestamp_millis() + 1), BTreeMap::new());
        assert_eq!(next.id, "tn_usage:2026-11-29");
        assert_eq!(next.totals, CollectionUsage::default());
        let stored = bson::to_document(&snapshot).unwrap();
        assert_eq!(stored.get_str("_id").unwrap(), "tn_usage:2026-11-28");
        assert_eq!(stored.get_document("collections").unwrap().get_document("users").unwrap().get_i64("bytes").unwrap(), 300);
        assert_eq!(bson::from_document::<UsageSnapshot>(stored).unwrap(), snapshot);
    }

    #[test]
    fn a_linked_cognito_link_exposes_its_sub() {
        let back: CognitoLink = bson::from_bson(bson::Bson::String("abc-123".into())).unwrap();
        assert_eq!(back.sub(), Some("abc-123"));
        assert!(bson::from_bson::<CognitoLink>(bson::Bson::String(String::new())).is_err());
    }
}
