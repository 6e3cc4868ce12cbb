//! The tenant registry: the global `tenants` collection and its domain claims. Reached only
//! through `Db::tenants`, which takes a superadmin or system context.

use super::guard;
use super::{global, Db, DbError, Keyset};
use crate::ids::{Domain, TenantId};
use crate::models::{Counted, Tenant, TenantStatus, COUNTER_MOVE};
use futures_util::TryStreamExt;
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::options::ReturnDocument;
use mongodb::Collection;

/// Filters and paging for listing tenants. `search` is matched literally (regex-escaped).
#[derive(Debug, Clone, Default)]
pub struct TenantQuery {
    pub status: Option<TenantStatus>,
    pub search: Option<String>,
    pub page: u64,
    pub limit: u64,
}

/// One page of tenants and how many match in all.
#[derive(Debug, Clone)]
pub struct TenantPage {
    pub tenants: Vec<Tenant>,
    pub total: u64,
}

/// The bounds one call is counted under (see [`TenantRegistry::count_call`]).
#[derive(Debug, Clone)]
pub struct CallBounds {
    /// `YYYY-MM`.
    pub month: String,
    /// `YYYYMMDDHHMM`.
    pub minute: String,
    /// The plan the bounds come from; it guards `per_minute`.
    pub plan: crate::plans::Plan,
    /// The plan's monthly quota as stored on the tenant (`-1`: unlimited).
    pub max_calls: i64,
    /// The plan's per-minute bound for the whole tenant.
    pub per_minute: i64,
    /// Window fields last seen on the record, removed unless current.
    pub stale_minutes: Vec<String>,
    /// Whether the month is bounded and counted too (not for a tenant over its quota reading
    /// its limits: only the minute window applies then).
    pub count_month: bool,
    /// A plan feature the call needs (an API key needs `api_keys`): a condition of the same
    /// filter, so that a refused call is not counted.
    pub feature: Option<&'static str>,
}

/// What a domain claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainClaim {
    /// Claimed now, by this call: release it if what it was for fails.
    Claimed,
    /// The tenant already held it: not this call's to release.
    AlreadyHeld,
    /// Another tenant holds it.
    Taken,
}

/// The narrow API of the global tenant registry.
#[derive(Debug, Clone)]
pub struct TenantRegistry {
    db: Db,
    tenants: Collection<Document>,
    domains: Collection<Document>,
    /// Read only: whether an open saga explains an unregistered tenant's claim.
    sagas: Collection<Document>,
}

/// How old a claim of an unregistered tenant must be before another tenant may take it over:
/// far longer than any creation in flight.
pub const STALE_CLAIM: std::time::Duration = std::time::Duration::from_secs(600);

/// Longest search text accepted; longer input is a client error before it gets here.
pub const MAX_SEARCH_LEN: usize = 100;

/// The marker of a tenant whose personal-data keys were shredded ([`Tenant::keys_shredded_at`]).
pub const KEYS_SHREDDED_AT: &str = "keysShreddedAt";

/// The condition of a write that must not apply to a shredded, ending or restoring tenant (a
/// status, billing or profile change): with it in the filter, a shred or an offboarding that lands
/// between a read and the write wins (docs/ARCHITECTURE.md §20, §22).
pub fn changeable() -> Document {
    doc! {
        KEYS_SHREDDED_AT: {"$exists": false},
        "status": {"$nin": [TenantStatus::Offboarding.as_str(), TenantStatus::Inactive.as_str()]},
        // A tenant a restore is still loading is the restore's alone until its commit.
        RESTORING: {"$exists": false},
    }
}

/// The registry field of a tenant a restore is still loading (docs/ARCHITECTURE.md §22).
pub const RESTORING: &str = "restoring";

/// The filter of the tenants a daily job still walks: every one but the purged (`inactive`) and
/// those being purged, which hold nothing to count, measure or keep (docs/ARCHITECTURE.md §22).
pub fn not_purged() -> Document {
    doc! {"status": {"$ne": TenantStatus::Inactive.as_str()}, "offboarding.purgeStartedAt": {"$exists": false}}
}

impl TenantRegistry {
    fn stamp_updated(&self, update: &mut Document) {
        let now = self.db.clock().now();
        match update.get_mut("$set") {
            Some(Bson::Document(set)) => {
                set.insert("updatedAt", now);
            }
            _ => {
                update.insert("$set", doc! {"updatedAt": now});
            }
        }
    }

    pub(super) fn new(db: &Db) -> Self {
        Self {
            db: db.clone(),
            tenants: db.database.collection(global::TENANTS),
            domains: db.database.collection(global::TENANT_DOMAINS),
            sagas: db.database.collection(global::SAGAS),
        }
    }

    /// One tenant by its public id.
    pub async fn get(&self, tenant_id: &TenantId) -> Result<Option<Tenant>, DbError> {
        let found = self.tenants.find_one(doc! {"tenantId": tenant_id.as_str()}).await?;
        found.map(bson::from_document).transpose().map_err(Into::into)
    }

    /// A tenant's record as stored, every field included (a tenant's export, §22).
    pub async fn document(&self, tenant_id: &TenantId) -> Result<Option<Document>, DbError> {
        Ok(self.tenants.find_one(doc! {"tenantId": tenant_id.as_str()}).await?)
    }

    /// One field of a tenant's record (`path` dotted), read alone: for system jobs that must not
    /// depend on the rest of a record decoding (an old record's unknown plan, say).
    pub async fn field(&self, tenant_id: &TenantId, path: &str) -> Result<Option<Bson>, DbError> {
        let found = self.tenants.find_one(doc! {"tenantId": tenant_id.as_str()}).projection(doc! {path: 1}).await?;
        let mut value = found.map(Bson::Document);
        for part in path.split('.') {
            value = match value {
                Some(Bson::Document(mut d)) => d.remove(part),
                _ => None,
            };
        }
        Ok(value)
    }

    /// Several fields of a tenant's record (top-level names or dotted paths), read together in
    /// one read so that they are of one moment; `None` if the tenant is missing.
    pub async fn fields(&self, tenant_id: &TenantId, paths: &[&str]) -> Result<Option<Document>, DbError> {
        let projection: Document = paths.iter().map(|p| (p.to_string(), Bson::Int32(1))).collect();
        Ok(self.tenants.find_one(doc! {"tenantId": tenant_id.as_str()}).projection(projection).await?)
    }

    /// The ids of every tenant matching `filter`, in `_id` order, `size` at a time: how system
    /// jobs walk the registry (a keyset walk, so memory stays bounded; ids only, so a tenant's
    /// other fields need not decode).
    pub fn batches(&self, filter: Document, size: i64) -> TenantBatches<'_> {
        TenantBatches { registry: self, filter, size, keyset: Keyset::default() }
    }

    /// Inserts a new tenant; a taken tenantId is `DbError::Duplicate`.
    pub async fn insert(&self, tenant: &Tenant) -> Result<(), DbError> {
        self.tenants.insert_one(bson::to_document(tenant)?).await?;
        Ok(())
    }

    /// Removes a tenant record (compensation of a failed creation). Whether one was removed.
    pub async fn delete(&self, tenant_id: &TenantId) -> Result<bool, DbError> {
        let _serial = self.db.serial().await?;
        Ok(self.tenants.delete_one(doc! {"tenantId": tenant_id.as_str()}).await?.deleted_count == 1)
    }

    /// A page of tenants, newest first, with the total count.
    pub async fn list(&self, query: &TenantQuery) -> Result<TenantPage, DbError> {
        let mut filter = Document::new();
        if let Some(status) = query.status {
            filter.insert("status", status.as_str());
        }
        if let Some(search) = query.search.as_deref().filter(|s| !s.is_empty()) {
            let pattern = escape_regex(&search.chars().take(MAX_SEARCH_LEN).collect::<String>());
            filter.insert(
                "$or",
                vec![doc! {"name": {"$regex": &pattern, "$options": "i"}}, doc! {"domain": {"$regex": &pattern, "$options": "i"}}],
            );
        }
        let limit = query.limit.clamp(1, 100);
        let skip = query.page.saturating_sub(1).saturating_mul(limit);
        let find = async {
            let cursor = self.tenants.find(filter.clone()).sort(doc! {"createdAt": -1, "_id": -1}).skip(skip).limit(limit as i64).await?;
            cursor.try_collect::<Vec<_>>().await
        };
        let (documents, total) = tokio::try_join!(find, async { self.tenants.count_documents(filter.clone()).await })?;
        let tenants = documents.into_iter().map(bson::from_document).collect::<Result<_, _>>()?;
        Ok(TenantPage { tenants, total })
    }

    /// Applies `$set` / `$unset` to one tenant and returns it afterwards (one round trip).
    /// The same guard as the tenant scope refuses any change to tenantId or the timestamps.
    pub async fn update(&self, tenant_id: &TenantId, set: Document, unset: &[&str]) -> Result<Option<Tenant>, DbError> {
        self.update_where(tenant_id, Document::new(), set, unset).await
    }

    /// `update`, applied only if the tenant also matches `condition` (e.g. still holds the
    /// domain the caller read); `None` if it does not.
    pub async fn update_where(
        &self,
        tenant_id: &TenantId,
        condition: Document,
        set: Document,
        unset: &[&str],
    ) -> Result<Option<Tenant>, DbError> {
        guard::check_filter(&condition, tenant_id.as_str(), guard::Site::Filter)?;
        if set.is_empty() && unset.is_empty() {
            // Nothing to change (e.g. a PATCH to the values already held): no write, no new updatedAt.
            return self.get(tenant_id).await;
        }
        let mut update = Document::new();
        if !set.is_empty() {
            update.insert("$set", set);
        }
        if !unset.is_empty() {
            update.insert("$unset", unset.iter().map(|f| (f.to_string(), Bson::String(String::new()))).collect::<Document>());
        }
        guard::check_update(&update)?;
        self.stamp_updated(&mut update);
        let mut filter = doc! {"tenantId": tenant_id.as_str()};
        filter.extend(condition);
        let _serial = self.db.serial().await?;
        let found = self.tenants.find_one_and_update(filter, update).return_document(ReturnDocument::After).await?;
        found.map(bson::from_document).transpose().map_err(Into::into)
    }

    /// One guarded, stamped, serialised update of one tenant record: whether it matched.
    async fn write_one(&self, filter: Document, mut update: Document) -> Result<bool, DbError> {
        guard::check_update(&update)?;
        self.stamp_updated(&mut update);
        let _serial = self.db.serial().await?;
        Ok(self.tenants.update_one(filter, update).await?.matched_count == 1)
    }

    /// `$set`s fields of one tenant if it also matches `condition`, without reading it back
    /// (for migrations, which must not depend on every stored record decoding). Whether it matched.
    pub async fn set_if(&self, tenant_id: &TenantId, condition: Document, set: Document) -> Result<bool, DbError> {
        guard::check_filter(&condition, tenant_id.as_str(), guard::Site::Filter)?;
        let mut filter = doc! {"tenantId": tenant_id.as_str()};
        filter.extend(condition);
        self.write_one(filter, doc! {"$set": set}).await
    }

    /// Counts one API call, in the month and in the per-minute window, for an active tenant
    /// under both bounds: one round trip. Each bound is a literal in the filter, guarded by what
    /// it was read from (the plan and its `maxApiCalls`), so a refused call is never counted;
    /// the window fields the caller knows to be stale are removed in the same update. `None` if
    /// the tenant is missing, not active, shredded, at a bound, or on another plan.
    pub async fn count_call(&self, tenant_id: &TenantId, bounds: &CallBounds) -> Result<Option<Tenant>, DbError> {
        let month = format!("apiUsage.{}", bounds.month);
        let minute = format!("minuteUsage.{}", bounds.minute);
        let mut filter = doc! {
            "tenantId": tenant_id.as_str(),
            "status": TenantStatus::Active.as_str(),
            // A shredded tenant admits no one, whatever its status (docs/ARCHITECTURE.md §20).
            KEYS_SHREDDED_AT: {"$exists": false},
            "settings.billing.plan": bounds.plan.as_str(),
            "settings.billing.maxApiCalls": bounds.max_calls,
            // `$not: {$gte}` also matches a window with no field yet; FerretDB has no `$expr` `$lt`.
            minute.clone(): {"$not": {"$gte": bounds.per_minute}},
        };
        if let Some(feature) = bounds.feature {
            filter.insert("settings.features", feature);
        }
        let mut update = doc! {"$inc": {minute: 1_i64}};
        if bounds.count_month {
            if bounds.max_calls != crate::plans::UNLIMITED {
                filter.insert(month.clone(), doc! {"$not": {"$gte": bounds.max_calls}});
            }
            update.get_document_mut("$inc").expect("just made").insert(month, 1_i64);
        }
        let stale: Document = bounds
            .stale_minutes
            .iter()
            .filter(|m| **m != bounds.minute)
            .map(|m| (format!("minuteUsage.{m}"), Bson::String(String::new())))
            .collect();
        if !stale.is_empty() {
            update.insert("$unset", stale);
        }
        let _serial = self.db.serial().await?;
        let found = self.tenants.find_one_and_update(filter, update).return_document(ReturnDocument::After).await?;
        found.map(bson::from_document).transpose().map_err(Into::into)
    }

    /// Updates every tenant matching `filter` (for migrations); guarded like `update`.
    pub async fn update_many(&self, filter: Document, update: Document) -> Result<u64, DbError> {
        guard::check_update(&update)?;
        let mut update = update;
        self.stamp_updated(&mut update);
        let _serial = self.db.serial().await?;
        Ok(self.tenants.update_many(filter, update).await?.modified_count)
    }

    /// Claims a domain for a tenant. `false` if another tenant holds it. The claim's `_id` is the
    /// domain itself, so uniqueness needs no sparse index. A claim whose tenant was never
    /// registered (a creation that died before it could compensate) is taken over once it is
    /// older than [`STALE_CLAIM`], so that a crash cannot block a domain for ever; never while
    /// an open saga acts on that tenant (it is finished or undone by its retry or the sweeper).
    pub async fn claim_domain(&self, domain: &Domain, tenant_id: &TenantId) -> Result<DomainClaim, DbError> {
        for _ in 0..2 {
            let claim = doc! {"_id": domain.as_str(), "tenantId": tenant_id.as_str(), "createdAt": self.db.clock().now()};
            match self.domains.insert_one(claim).await.map_err(DbError::from) {
                Ok(_) => return Ok(DomainClaim::Claimed),
                Err(DbError::Duplicate) => {}
                Err(e) => return Err(e),
            }
            let Some(holder) = self.domains.find_one(doc! {"_id": domain.as_str()}).await? else {
                continue; // released in between: try again
            };
            let holder_tenant = holder.get_str("tenantId").unwrap_or_default().to_owned();
            if holder_tenant == tenant_id.as_str() {
                return Ok(DomainClaim::AlreadyHeld);
            }
            let claimed_at = holder.get_datetime("createdAt").map(|d| d.timestamp_millis()).unwrap_or(0);
            let stale = self.db.clock().now_ms() - claimed_at > STALE_CLAIM.as_millis() as i64;
            let registered = self.tenants.find_one(doc! {"tenantId": &holder_tenant}).await?.is_some();
            if !stale || registered || self.saga_open(&holder_tenant).await? {
                return Ok(DomainClaim::Taken);
            }
            tracing::warn!(domain = domain.as_str(), holder = %holder_tenant, "taking over a stale domain claim");
            let _serial = self.db.serial().await?;
            self.domains.delete_one(doc! {"_id": domain.as_str(), "tenantId": &holder_tenant}).await?;
        }
        Ok(DomainClaim::Taken)
    }

    /// Moves the claim on `domain` from `from` to `to`, if `from` holds it: a restore taking over
    /// the domain of the ending tenant it restores. Whether it moved.
    pub async fn move_domain(&self, domain: &str, from: &TenantId, to: &TenantId) -> Result<bool, DbError> {
        let _serial = self.db.serial().await?;
        let moved =
            self.domains.update_one(doc! {"_id": domain, "tenantId": from.as_str()}, doc! {"$set": {"tenantId": to.as_str()}}).await?;
        Ok(moved.matched_count == 1)
    }

    /// Releases a tenant's claim on a domain (only its own), and only after a fresh read shows
    /// that the tenant does not hold the domain. The request that made a claim is not always
    /// the one whose move committed: of two identical moves, the loser may have made the claim
    /// the winner relies on. Whether the claim was released.
    pub async fn release_domain(&self, domain: &str, tenant_id: &TenantId) -> Result<bool, DbError> {
        if self.holds_domain(tenant_id, domain).await? {
            return Ok(false);
        }
        {
            let _serial = self.db.serial().await?;
            self.domains.delete_one(doc! {"_id": domain, "tenantId": tenant_id.as_str()}).await?;
        }
        // A move that committed between the read and the delete: put its claim back.
        if self.holds_domain(tenant_id, domain).await? {
            let claim = doc! {"_id": domain, "tenantId": tenant_id.as_str(), "createdAt": self.db.clock().now()};
            match self.domains.insert_one(claim).await.map_err(DbError::from) {
                Ok(_) => {}
                Err(DbError::Duplicate) => {
                    tracing::error!(domain, tenantId = %tenant_id, "a domain was claimed by another tenant while its holder moved onto it")
                }
                Err(e) => return Err(e),
            }
            return Ok(false);
        }
        Ok(true)
    }

    async fn holds_domain(&self, tenant_id: &TenantId, domain: &str) -> Result<bool, DbError> {
        Ok(self.tenants.find_one(doc! {"tenantId": tenant_id.as_str(), "domain": domain}).await?.is_some())
    }

    /// Whether an open saga acts on `tenant` (`shared::saga`): its claims are not stale.
    async fn saga_open(&self, tenant: &str) -> Result<bool, DbError> {
        let open = doc! {"tenantId": tenant, "state": "running"};
        Ok(self.sagas.find_one(open).await?.is_some())
    }

    /// Releases every domain claim `tenant_id` holds (its purge): the domains are free again.
    pub async fn release_domains_of(&self, tenant_id: &TenantId) -> Result<u64, DbError> {
        let _serial = self.db.serial().await?;
        Ok(self.domains.delete_many(doc! {"tenantId": tenant_id.as_str()}).await?.deleted_count)
    }

    /// Up to `limit` domain claims made before `before`, as `(domain, tenant)`, oldest first:
    /// the candidates of the saga sweep's reaping of claims no registered tenant holds.
    pub async fn domain_claims_made_before(&self, before: mongodb::bson::DateTime, limit: i64) -> Result<Vec<(String, String)>, DbError> {
        let found = self.domains.find(doc! {"createdAt": {"$lt": before}}).sort(doc! {"createdAt": 1}).limit(limit).await?;
        let claims: Vec<Document> = futures_util::TryStreamExt::try_collect(found).await?;
        Ok(claims.into_iter().filter_map(|c| Some((c.get_str("_id").ok()?.to_owned(), c.get_str("tenantId").ok()?.to_owned()))).collect())
    }

    /// The tenant that holds a domain's claim, if any.
    pub async fn domain_holder(&self, domain: &str) -> Result<Option<TenantId>, DbError> {
        let claim = self.domains.find_one(doc! {"_id": domain}).await?;
        Ok(claim.and_then(|c| c.get_str("tenantId").ok().and_then(|t| TenantId::parse(t).ok())))
    }
}

/// One tenant's own registry record, for its admitted members: only the settings they may change.
#[derive(Debug, Clone)]
pub struct OwnTenant {
    registry: TenantRegistry,
    tenant_id: TenantId,
}

impl OwnTenant {
    pub(super) fn new(registry: TenantRegistry, tenant_id: TenantId) -> Self {
        Self { registry, tenant_id }
    }

    /// The tenant record as it is now.
    pub async fn get(&self) -> Result<Option<Tenant>, DbError> {
        self.registry.get(&self.tenant_id).await
    }

    /// Takes a seat, and an admin place if `admin`, for a durable saga (`shared::saga`, an
    /// invitation): one conditional update whose bound is the literal `max_users` (the plan's
    /// `settings.maxUsers` as read, which guards it; `-1`: unlimited). It is made idempotent by a
    /// mark the same update sets on the tenant record, `sagaSeats.<saga id>` (its value: whether
    /// it took an admin place). A redo after a crash or a lost reply finds the mark and takes nothing more:
    /// `Ok(true)` if the saga holds its seat now, `Ok(false)` if the plan's seats are full (or the
    /// plan changed). [`Self::give_back_saga_seat`] undoes it, [`Self::settle_saga_seat`] drops
    /// the mark once the saga completed.
    pub async fn take_saga_seat(&self, saga: &str, max_users: i64, admin: bool) -> Result<bool, DbError> {
        let mark = saga_seat(saga);
        let mut filter = doc! {"tenantId": self.tenant_id.as_str(), "settings.maxUsers": max_users, mark.clone(): {"$exists": false}};
        if max_users == crate::plans::UNLIMITED {
            filter.insert("counters.seats", doc! {"$exists": true});
        } else {
            filter.insert("counters.seats", doc! {"$lt": max_users});
        }
        let update = doc! {"$inc": {"counters.seats": 1_i64, "counters.admins": i64::from(admin)}, "$set": {mark.clone(): admin}};
        if self.move_counter(Counted::Users, filter, update).await? {
            return Ok(true);
        }
        Ok(self.registry.field(&self.tenant_id, &mark).await?.is_some())
    }

    /// Gives back the seat (and admin place) a saga took, if it holds one: the mark and the
    /// counters go in one update. Whether one was given back.
    pub async fn give_back_saga_seat(&self, saga: &str) -> Result<bool, DbError> {
        let mark = saga_seat(saga);
        let Some(admin) = self.registry.field(&self.tenant_id, &mark).await? else { return Ok(false) };
        let admin = admin.as_bool().unwrap_or(false);
        let filter = doc! {"tenantId": self.tenant_id.as_str(), mark.clone(): {"$exists": true}};
        let update = doc! {"$inc": {"counters.seats": -1_i64, "counters.admins": -i64::from(admin)}, "$unset": {mark: ""}};
        self.move_counter(Counted::Users, filter, update).await
    }

    /// Drops a completed saga's seat mark: its seat is the record's now, like any other.
    pub async fn settle_saga_seat(&self, saga: &str) -> Result<(), DbError> {
        let mark = saga_seat(saga);
        self.registry
            .write_one(doc! {"tenantId": self.tenant_id.as_str(), mark.clone(): {"$exists": true}}, doc! {"$unset": {mark: ""}})
            .await?;
        Ok(())
    }

    /// Gives up the seat and, with `admin`, the admin place of a record that a saga removes (an
    /// erasure), once: the counters move in the same update that marks the tenant record with
    /// the saga's id and what it gave up (`sagaReleases.<id>`), so that a redo after a crash or
    /// a lost reply finds the mark and moves nothing. An admin place goes only if it is not the
    /// last. What the mark says was given up (`(seat, admin)`, this call's or an earlier one's),
    /// or `None` if the admin place is the last. [`Self::give_back_saga_release`] undoes it, and
    /// [`Self::settle_saga_release`] drops the mark once the record is gone.
    pub async fn release_for_saga(&self, saga: &str, seat: bool, admin: bool) -> Result<Option<(bool, bool)>, DbError> {
        let mark = saga_release(saga);
        let mut filter = doc! {"tenantId": self.tenant_id.as_str(), "counters": {"$exists": true}, mark.clone(): {"$exists": false}};
        if admin {
            filter.insert("counters.admins", doc! {"$gt": 1_i64});
        }
        let update = doc! {
            "$inc": {"counters.seats": -i64::from(seat), "counters.admins": -i64::from(admin)},
            "$set": {mark.clone(): {"seat": seat, "admin": admin}},
        };
        if self.move_counter(Counted::Users, filter, update).await? {
            return Ok(Some((seat, admin)));
        }
        self.saga_release(saga).await
    }

    /// What a saga's release mark says it gave up, if there is one.
    async fn saga_release(&self, saga: &str) -> Result<Option<(bool, bool)>, DbError> {
        Ok(match self.registry.field(&self.tenant_id, &saga_release(saga)).await? {
            Some(Bson::Document(mark)) => Some((mark.get_bool("seat").unwrap_or(false), mark.get_bool("admin").unwrap_or(false))),
            _ => None,
        })
    }

    /// Takes back what a saga's release gave up (its record changed before the saga could hold
    /// it): the counters and the mark go in one update.
    pub async fn give_back_saga_release(&self, saga: &str) -> Result<(), DbError> {
        let Some((seat, admin)) = self.saga_release(saga).await? else { return Ok(()) };
        let mark = saga_release(saga);
        let filter = doc! {"tenantId": self.tenant_id.as_str(), mark.clone(): {"$exists": true}};
        let update = doc! {"$inc": {"counters.seats": i64::from(seat), "counters.admins": i64::from(admin)}, "$unset": {mark: ""}};
        self.move_counter(Counted::Users, filter, update).await.map(drop)
    }

    /// Drops a saga's release mark: the record it was for is gone.
    pub async fn settle_saga_release(&self, saga: &str) -> Result<(), DbError> {
        let mark = saga_release(saga);
        self.registry
            .write_one(doc! {"tenantId": self.tenant_id.as_str(), mark.clone(): {"$exists": true}}, doc! {"$unset": {mark: ""}})
            .await?;
        Ok(())
    }

    /// Takes one admin place away unless it is the last one: `false` if it is (or the tenant has
    /// no counters yet). The bound is a literal in the filter.
    pub async fn take_admin_place(&self) -> Result<bool, DbError> {
        let filter = doc! {"tenantId": self.tenant_id.as_str(), "counters.admins": {"$gt": 1_i64}};
        self.move_counter(Counted::Users, filter, doc! {"$inc": {"counters.admins": -1_i64}}).await
    }

    /// Moves the counters by the given amounts, unbounded: frees a seat, or gives back or adds
    /// an admin place, after the user-record write that justifies it matched.
    pub async fn adjust_counters(&self, seats: i64, admins: i64) -> Result<(), DbError> {
        if seats == 0 && admins == 0 {
            return Ok(());
        }
        let filter = doc! {"tenantId": self.tenant_id.as_str(), "counters": {"$exists": true}};
        self.move_counter(Counted::Users, filter, doc! {"$inc": {"counters.seats": seats, "counters.admins": admins}}).await.map(drop)
    }

    /// Takes a place for one more active API key: one conditional update whose bound is the
    /// literal `max_keys` of the plan named in the filter (`$not: {$gte}` matches a tenant that
    /// never had a key). `false` if the plan's keys are all taken or the plan changed.
    pub async fn take_key_place(&self, plan: crate::plans::Plan, max_keys: i64) -> Result<bool, DbError> {
        let filter = doc! {
            "tenantId": self.tenant_id.as_str(),
            "settings.billing.plan": plan.as_str(),
            "apiKeyCount": {"$not": {"$gte": max_keys}},
        };
        self.move_counter(Counted::ApiKeys, filter, doc! {"$inc": {"apiKeyCount": 1_i64}}).await
    }

    /// Gives back `n` key places, after the key writes that freed them matched.
    pub async fn give_back_key_places(&self, n: i64) -> Result<(), DbError> {
        if n <= 0 {
            return Ok(());
        }
        let filter = doc! {"tenantId": self.tenant_id.as_str(), "apiKeyCount": {"$gte": n}};
        self.move_counter(Counted::ApiKeys, filter, doc! {"$inc": {"apiKeyCount": -n}}).await.map(drop)
    }

    /// One counter move, tagged with a fresh operation id in `counterMove` by the same update,
    /// so that a lost reply can be settled: the record is re-read, and the move happened iff the
    /// tag is this one (`Ok(true)`). A definite refusal, or a move that did not happen, is the
    /// error; so is a move whose outcome the re-read could not learn either (logged: the
    /// reconciliation job corrects the counter, docs/ARCHITECTURE.md §12). A caller therefore
    /// never moves a counter twice: `Ok(true)` means moved exactly once, an error not at all as
    /// far as can be known. The same update stamps `counterMovedAt.<collection>` ([`Counted`]):
    /// every counter write goes through here, so the recount sees each move's time.
    async fn move_counter(&self, counted: Counted, filter: Document, mut update: Document) -> Result<bool, DbError> {
        let op = bson::oid::ObjectId::new();
        let stamp = doc! {COUNTER_MOVE: op, counted.moved_at(): self.registry.db.clock().now()};
        super::merge_operator(&mut update, "$set", stamp);
        let error = match self.registry.write_one(filter, update).await {
            Ok(matched) => return Ok(matched),
            Err(e) if !e.outcome_unknown() => return Err(e),
            Err(e) => e,
        };
        match self.registry.field(&self.tenant_id, COUNTER_MOVE).await {
            Ok(Some(Bson::ObjectId(last))) if last == op => {
                tracing::warn!(tenantId = %self.tenant_id, %error, "a counter move's reply was lost; it was applied");
                Ok(true)
            }
            Ok(_) => Err(error),
            Err(reread) => {
                tracing::error!(tenantId = %self.tenant_id, %error, %reread, "a counter move's outcome is unknown; the reconciliation job will correct the counter");
                Err(error)
            }
        }
    }

    /// `$set`s fields under `settings.customization` and returns the tenant afterwards; `None`
    /// if the tenant is missing, or ending ([`changeable`]: nothing writes into it any more).
    pub async fn customize(&self, set: Document) -> Result<Option<Tenant>, DbError> {
        if let Some(field) = set.keys().find(|k| !k.starts_with("settings.customization.")) {
            return Err(DbError::Refused(super::Refusal::UnknownUpdateOperator(format!("$set {field}"))));
        }
        // Not an ending tenant's, nor a restoring one's (the restore's alone until its commit);
        // a shredded tenant's branding may still change (it holds no personal data).
        let open =
            doc! {"status": {"$nin": [TenantStatus::Offboarding.as_str(), TenantStatus::Inactive.as_str()]}, RESTORING: {"$exists": false}};
        self.registry.update_where(&self.tenant_id, open, set, &[]).await
    }
}

/// The tenant record's field that marks a seat a saga took (saga ids are base64url: no `.` or
/// `$` can reach the path).
fn saga_seat(saga: &str) -> String {
    format!("sagaSeats.{saga}")
}

fn saga_release(saga: &str) -> String {
    format!("sagaReleases.{saga}")
}

/// Escapes every regex metacharacter, so that user text matches literally.
pub fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A keyset walk over the registry's tenant ids ([`TenantRegistry::batches`]).
pub struct TenantBatches<'a> {
    registry: &'a TenantRegistry,
    filter: Document,
    size: i64,
    keyset: Keyset,
}

impl TenantBatches<'_> {
    /// The next batch of tenant ids, or `None` once the walk has passed the last match.
    pub async fn next(&mut self) -> Result<Option<Vec<TenantId>>, DbError> {
        let Some(filter) = self.keyset.filter(&self.filter) else { return Ok(None) };
        let cursor = self.registry.tenants.find(filter).sort(doc! {"_id": 1}).limit(self.size).projection(doc! {"tenantId": 1}).await?;
        let found: Vec<Document> = cursor.try_collect().await?;
        if !self.keyset.advance(&found) {
            return Ok(None);
        }
        Ok(Some(found.iter().filter_map(|d| TenantId::parse(d.get_str("tenantId").ok()?).ok()).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::escape_regex;

    #[test]
    fn regex_metacharacters_are_escaped() {
        assert_eq!(escape_regex("a.b*c"), "a\\.b\\*c");
        assert_eq!(escape_regex("(x)|[y]^$"), "\\(x\\)\\|\\[y\\]\\^\\$");
        assert_eq!(escape_regex("plain"), "plain");
    }
}
