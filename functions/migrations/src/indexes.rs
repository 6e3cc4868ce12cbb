//! Every index of the brief (§4.1.4), adapted where the brief cannot hold on every server
//! (docs/ARCHITECTURE.md §6, §9), and created idempotently.

use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;
use serde::Serialize;
use shared::db::{global, DbError, Indexes, TenantCollection};
use std::time::Duration;

/// One wanted index.
#[derive(Debug, Clone)]
pub struct IndexSpec {
    pub collection: &'static str,
    pub keys: Document,
    pub unique: bool,
    /// Ask for a TTL index with this expiry; where the server cannot, a plain index is made
    /// and the scheduled retention job carries the guarantee.
    pub ttl: Option<Duration>,
}

impl IndexSpec {
    /// A plain index on `keys`.
    pub fn new(collection: &'static str, keys: Document) -> Self {
        Self { collection, keys, unique: false, ttl: None }
    }
    /// The same index, unique.
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    /// The name MongoDB would give it (`field_1_other_-1`), stated explicitly so that a second
    /// `setup` finds it by name.
    pub fn name(&self) -> String {
        self.keys.iter().map(|(k, v)| format!("{k}_{v}")).collect::<Vec<_>>().join("_")
    }
    /// The index as the driver creates it (`with_ttl`: with its expiry, where the server has TTL).
    pub fn model(&self, with_ttl: bool) -> IndexModel {
        let options = IndexOptions::builder()
            .name(self.name())
            .unique(self.unique.then_some(true))
            .expire_after(if with_ttl { self.ttl } else { None })
            .build();
        IndexModel::builder().keys(self.keys.clone()).options(options).build()
    }
}

/// The indexes `setup` makes.
pub fn wanted() -> Vec<IndexSpec> {
    let users = TenantCollection::Users.name();
    let roles = TenantCollection::Roles.name();
    let keys = TenantCollection::ApiKeys.name();
    let audit = TenantCollection::AuditLogs.name();
    vec![
        IndexSpec::new(global::TENANTS, doc! {"tenantId": 1}).unique(),
        // The brief's unique sparse {domain} index: uniqueness lives in tenantDomains, keyed
        // by the domain, which needs no sparse index; this one serves search and lookups.
        IndexSpec::new(global::TENANTS, doc! {"domain": 1}),
        IndexSpec::new(global::TENANTS, doc! {"status": 1}),
        IndexSpec::new(global::TENANTS, doc! {"createdAt": 1}),
        IndexSpec::new(global::TENANT_DOMAINS, doc! {"tenantId": 1}),
        // E-mails are sealed (random nonces: no two ciphertexts are equal), so their per-tenant
        // uniqueness is the blind index's, `{tenantId, emailHash}`, which migration 005 builds
        // once every record has one (`email_hash_index` below): never here.
        // Pending users hold "pending:<their _id>", never "", so this holds without a partial index.
        IndexSpec::new(users, doc! {"tenantId": 1, "cognitoUserId": 1}).unique(),
        IndexSpec::new(users, doc! {"tenantId": 1, "status": 1}),
        IndexSpec::new(users, doc! {"tenantId": 1, "roles": 1}),
        IndexSpec::new(users, doc! {"tenantId": 1, "lastLoginAt": 1}),
        IndexSpec::new(roles, doc! {"tenantId": 1, "name": 1}).unique(),
        IndexSpec::new(roles, doc! {"tenantId": 1, "isSystem": 1}),
        IndexSpec::new(roles, doc! {"tenantId": 1, "createdAt": 1}),
        // Authentication looks a key up before it knows the tenant: a global unique key id
        // (docs/ARCHITECTURE.md §9) instead of the brief's {tenantId, keyHash}.
        IndexSpec::new(keys, doc! {"keyId": 1}).unique(),
        IndexSpec::new(keys, doc! {"tenantId": 1, "status": 1}),
        IndexSpec::new(keys, doc! {"tenantId": 1, "expiresAt": 1}),
        IndexSpec::new(keys, doc! {"tenantId": 1, "lastUsedAt": 1}),
        IndexSpec::new(audit, doc! {"tenantId": 1, "timestamp": -1}),
        IndexSpec::new(audit, doc! {"tenantId": 1, "userId": 1, "timestamp": -1}),
        // An erasure's pass over the entries about the person (docs/ARCHITECTURE.md §22).
        IndexSpec::new(audit, doc! {"tenantId": 1, "resourceId": 1}),
        // A tombstone by the `sub` the person had: their audit entries' actor id.
        IndexSpec::new(TenantCollection::UserErasures.name(), doc! {"tenantId": 1, "formerSub": 1}),
        IndexSpec::new(audit, doc! {"tenantId": 1, "action": 1, "timestamp": -1}),
        IndexSpec::new(audit, doc! {"tenantId": 1, "resource": 1, "timestamp": -1}),
        // Retention: each entry carries its own expireAt (the brief's TTL on timestamp, made
        // per-entry). expireAfterSeconds 0 means "at expireAt".
        IndexSpec { ttl: Some(Duration::ZERO), ..IndexSpec::new(audit, doc! {"expireAt": 1}) },
        // Refusal budgets (one per key id, address or actor) end a minute after their last
        // counted minute; the audit retention job deletes them where the server cannot.
        IndexSpec { ttl: Some(Duration::ZERO), ..IndexSpec::new(global::REFUSAL_WINDOWS, doc! {"expireAt": 1}) },
        IndexSpec::new(global::LOCKS, doc! {"expiresAt": 1}),
        // A tenant's usage history, newest day first.
        IndexSpec::new(global::USAGE_SNAPSHOTS, doc! {"tenantId": 1, "day": -1}),
        // The sweep's pick (open sagas by lease end), the purge of finished ones, and a
        // tenant's open sagas (claims they explain, an invitation found again, offboarding).
        IndexSpec::new(global::SAGAS, doc! {"state": 1, "leaseUntil": 1}),
        IndexSpec::new(global::SAGAS, doc! {"state": 1, "finishedAt": 1}),
        IndexSpec::new(global::SAGAS, doc! {"tenantId": 1, "state": 1}),
        // The jobs sweep's pick (unfinished jobs untouched for a while), and a tenant's jobs by
        // kind (its unfinished export, an erasure's or a purge's exports, a nightly one).
        IndexSpec::new(global::JOBS, doc! {"state": 1, "updatedAt": 1}),
        IndexSpec::new(global::JOBS, doc! {"tenantId": 1, "kind": 1, "createdAt": -1}),
    ]
}

/// The unique index that makes an e-mail unique per tenant once every record has its blind
/// index: migration 005 builds it. `setup` must not make it: on MongoDB a missing field indexes
/// as null, so building it while old records lack `emailHash` fails on the second of them.
pub fn email_hash_index() -> IndexSpec {
    IndexSpec::new(TenantCollection::Users.name(), doc! {"tenantId": 1, "emailHash": 1}).unique()
}

/// What `setup` found or did for one index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexOutcome {
    pub collection: &'static str,
    pub name: String,
    /// `created` or `exists`.
    pub status: &'static str,
    pub unique: bool,
    /// For TTL indexes: whether the server expires documents itself (`ttl`), or only the
    /// retention job does (`retention-job`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry: Option<&'static str>,
}

/// Creates every missing index. Existing ones (by name) are left alone, so a second run
/// changes nothing.
pub async fn ensure(indexes: &Indexes) -> Result<Vec<IndexOutcome>, DbError> {
    let mut outcomes = Vec::new();
    for spec in wanted() {
        let existing = indexes.list(spec.collection).await?;
        let name = spec.name();
        let found = existing.iter().find(|m| m.options.as_ref().and_then(|o| o.name.as_deref()) == Some(name.as_str()));
        let (status, has_ttl) = match found {
            Some(model) => ("exists", model.options.as_ref().is_some_and(|o| o.expire_after.is_some())),
            None if spec.ttl.is_some() => match indexes.create(spec.collection, spec.model(true)).await {
                Ok(()) => ("created", true),
                // The server cannot expire documents (FerretDB): a plain index on expireAt
                // lets the scheduled retention job delete expired entries efficiently.
                Err(DbError::Other(e)) => {
                    tracing::warn!(index = %name, error = %e, "TTL indexes unsupported; falling back to the retention job");
                    indexes.create(spec.collection, spec.model(false)).await?;
                    ("created", false)
                }
                Err(e) => return Err(e),
            },
            None => {
                indexes.create(spec.collection, spec.model(false)).await?;
                ("created", false)
            }
        };
        outcomes.push(IndexOutcome {
            collection: spec.collection,
            name,
            status,
            unique: spec.unique,
            expiry: spec.ttl.map(|_| if has_ttl { "ttl" } else { "retention-job" }),
        });
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_never_holds_the_blind_index_s_unique_index() {
        // On MongoDB a missing field indexes as null: building {tenantId, emailHash} unique while
        // records from before encryption lack emailHash fails on the second of them. FerretDB
        // does not show that, so this test holds it: only migration 005 builds it, once every
        // record has its blind index.
        for spec in wanted() {
            assert!(!spec.keys.contains_key("emailHash"), "setup makes {}", spec.name());
            assert!(!(spec.unique && spec.keys.contains_key("email")), "a unique index on sealed e-mails holds nothing");
        }
        assert!(email_hash_index().unique);
    }

    #[test]
    fn every_unique_index_on_a_tenant_collection_starts_with_tenant_id_except_the_global_key_id() {
        for spec in wanted().iter().filter(|s| s.unique) {
            let first = spec.keys.keys().next().unwrap().as_str();
            let tenant_collection = TenantCollection::ALL.iter().any(|c| c.name() == spec.collection);
            if tenant_collection && spec.name() != "keyId_1" {
                assert_eq!(first, "tenantId", "{}", spec.name());
            }
        }
    }

    #[test]
    fn index_names_follow_mongodb_s_convention() {
        let spec = IndexSpec::new("auditLogs", doc! {"tenantId": 1, "timestamp": -1});
        assert_eq!(spec.name(), "tenantId_1_timestamp_-1");
    }

    #[test]
    fn index_names_are_unique_per_collection() {
        let mut seen = std::collections::HashSet::new();
        for spec in wanted() {
            assert!(seen.insert((spec.collection, spec.name())), "{}", spec.name());
        }
    }
}
