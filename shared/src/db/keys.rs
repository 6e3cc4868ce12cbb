//! What API-key authentication needs before it knows the tenant: one key by its global id, and
//! its `lastUsedAt` (reached only through `Db::key_auth`, which takes a system context); and the
//! budgets of audited refusals that every refusal path spends, the authorizer's and `serve`'s.
//! The key's request windows are the authorizer's own (`functions/authorizer`), through a
//! [`super::GlobalStore`].

use super::{Db, DbError, GlobalCollection, GlobalFind, GlobalStore, SystemContext, TenantCollection};
use crate::ids::TenantId;
use crate::models::ApiKey;
use mongodb::bson::{self, doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::Collection;

/// The narrow API of key authentication.
#[derive(Debug, Clone)]
pub struct KeyAuth {
    db: Db,
    keys: Collection<Document>,
}

impl KeyAuth {
    pub(super) fn new(db: &Db) -> Self {
        Self { db: db.clone(), keys: db.database.collection(TenantCollection::ApiKeys.name()) }
    }

    /// One key by its global id, with the tenant it belongs to. The only read of a tenant
    /// collection without a tenant condition: the id is unique across tenants, and the tenant
    /// comes back from the stored key, never from the caller.
    pub async fn get(&self, key_id: ObjectId) -> Result<Option<(TenantId, ApiKey)>, DbError> {
        let Some(mut document) = self.keys.find_one(doc! {"_id": key_id}).await? else { return Ok(None) };
        let tenant = match document.remove("tenantId") {
            Some(Bson::String(t)) => TenantId::parse(t).map_err(|_| malformed("a stored key with a malformed tenantId"))?,
            _ => return Err(malformed("a stored key without tenantId")),
        };
        Ok(Some((tenant, bson::from_document(document)?)))
    }

    /// Records `lastUsedAt`, conditional on the value read, so that racing calls write it once.
    pub async fn touch_last_used(&self, key_id: ObjectId, seen: Option<DateTime>, now: DateTime) -> Result<(), DbError> {
        let seen = match seen {
            Some(at) => Bson::DateTime(at),
            None => Bson::Document(doc! {"$exists": false}),
        };
        let _serial = self.db.serial().await?;
        self.keys.update_one(doc! {"_id": key_id, "lastUsedAt": seen}, doc! {"$set": {"lastUsedAt": now}}).await?;
        Ok(())
    }
}

fn malformed(what: &'static str) -> DbError {
    DbError::Decode(<bson::de::Error as serde::de::Error>::custom(what))
}

/// Whose budget an audited refusal spends (docs/ARCHITECTURE.md §13). Each source has a budget
/// of its own, so that no source can spend another's: a flood of made-up secrets for one key
/// id, from one address, leaves every other address, key and member its room.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RefusalSource {
    /// A key id presented with a secret that failed (whether or not the key exists).
    Key(ObjectId),
    /// The address a refused key call came from: API Gateway's `sourceIp`, never a header the
    /// caller writes. An IPv6 address counts by its /64, which one host can hold whole.
    Ip(String),
    /// An authenticated caller refused by a route: its tenant and principal (the `sub`, or
    /// `apikey:<id>`).
    Actor(TenantId, String),
    /// A tenant's invitations refused past its hourly budget of refused invitations (the 429s,
    /// counted in summary entries only: the budget's own document is `invite:<tenant>`).
    Invitations(TenantId),
}

/// Longest source address kept (an IPv6 address is at most 45 characters).
const MAX_SOURCE_CHARS: usize = 64;

impl RefusalSource {
    /// The source of a request that came from `address` (`requestContext.identity.sourceIp`).
    pub fn ip(address: &str) -> Self {
        let address = address.trim();
        let subject = match address.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
            Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
            // Not an address (a gateway that sent none): one shared budget for all such.
            Err(_) => address.chars().take(MAX_SOURCE_CHARS).collect(),
        };
        Self::Ip(subject)
    }

    /// The `_id` of the source's document in `refusalWindows`, and its name in summary entries:
    /// `key:<id>`, `ip:<address>` or `actor:<tenant>:<principal>`.
    pub fn id(&self) -> String {
        match self {
            Self::Key(id) => format!("key:{}", id.to_hex()),
            Self::Ip(address) => format!("ip:{address}"),
            Self::Actor(tenant, principal) => format!("actor:{tenant}:{principal}"),
            Self::Invitations(tenant) => format!("invite:{tenant}"),
        }
    }
}

/// The budgets of audited refusals, one per [`RefusalSource`]: at most
/// [`REFUSALS_PER_MINUTE`] entries a minute each, across every process, so that a flood of
/// refused calls can neither fill a log nor spend anyone else's room in it.
#[derive(Debug, Clone)]
pub struct RefusalBudget {
    db: Db,
    windows: GlobalStore<Document>,
}

/// A value per (database, source), in this process, bounded in size.
type PerSource<V> = std::sync::LazyLock<std::sync::Mutex<lru::LruCache<(String, String), V>>>;

/// The minute each source's budget was last seen full, per database, in this process.
static FULL_MINUTES: PerSource<String> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(lru::LruCache::new(std::num::NonZeroUsize::new(10_000).expect("non-zero"))));

/// The window fields last seen on each source's document, per database, so that the counting
/// update trims the stale ones without a read first.
static SEEN_FIELDS: PerSource<Vec<String>> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(lru::LruCache::new(std::num::NonZeroUsize::new(10_000).expect("non-zero"))));

/// How many refusals one source may have audited per minute.
pub const REFUSALS_PER_MINUTE: i64 = 20;

impl RefusalBudget {
    pub(super) fn new(db: &Db, system: &SystemContext) -> Self {
        Self { db: db.clone(), windows: db.global(system, GlobalCollection::RefusalWindows) }
    }

    /// Takes one place in `source`'s current minute: `false` if the minute is full. One round
    /// trip; once this process has seen a minute full it answers `false` without one until the
    /// minute ends, so that a flood of refusals costs the database nothing more.
    pub async fn take(&self, source: &RefusalSource) -> Result<bool, DbError> {
        let (minute, _) = crate::clock::minute_window(self.db.clock().now_ms());
        let key = (self.db.name().to_owned(), source.id());
        if FULL_MINUTES.lock().expect("poisoned").get(&key) == Some(&minute) {
            return Ok(false);
        }
        let seen = SEEN_FIELDS.lock().expect("poisoned").get(&key).cloned().unwrap_or_default();
        let id = Bson::String(key.1.clone());
        // Anyone can name a new source (a made-up key id, another address), so each document
        // carries the end of its use: a minute after its last counted minute ends, the retention
        // job ([`Self::delete_expired`]) or a TTL index removes it, and a later refusal of the
        // source simply starts it again.
        let now_ms = self.db.clock().now_ms();
        let expire = DateTime::from_millis((now_ms.div_euclid(60_000) + 2) * 60_000);
        let windows = [(format!("m.{minute}"), REFUSALS_PER_MINUTE)];
        match self.windows.count_windows(id, &windows, &seen, doc! {"expireAt": expire}).await? {
            Some(counts) => {
                // Fields another process left behind are learnt here and trimmed next time.
                SEEN_FIELDS.lock().expect("poisoned").put(key, counts.fields());
                Ok(true)
            }
            None => {
                FULL_MINUTES.lock().expect("poisoned").put(key, minute);
                Ok(false)
            }
        }
    }

    /// Counts on a spent budget's own document a dropped refusal that no log takes (an unknown
    /// key id's): `dropped`, and `droppedAt`. One write that changes the document, as a known
    /// key's summary entry costs, so that past a spent budget the two paths still cost the same.
    pub async fn note_dropped(&self, source: &RefusalSource) -> Result<(), DbError> {
        let update = doc! {"$inc": {"dropped": 1_i64}, "$set": {"droppedAt": self.db.clock().now()}};
        self.windows.update_one(doc! {"_id": source.id()}, update).await?;
        Ok(())
    }

    /// Deletes up to `batch` budget documents whose `expireAt` has passed (none of them counts
    /// a current minute): how many went. Without it every made-up key id and every address
    /// ever refused would keep a document for good. The delete re-checks `expireAt`, so a
    /// budget counted meanwhile (its `expireAt` moved on) stays. Documents without `expireAt`
    /// (the invitations' hourly budgets, one per tenant) are never touched.
    pub async fn delete_expired(&self, batch: i64) -> Result<u64, DbError> {
        let expired = doc! {"expireAt": {"$lte": self.db.clock().now()}};
        let page = GlobalFind { sort: None, limit: Some(batch), projection: Some(doc! {"_id": 1}) };
        let found = self.windows.find(expired.clone(), page).await?;
        let ids: Vec<Bson> = found.into_iter().filter_map(|d| d.get("_id").cloned()).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let mut filter = expired;
        filter.insert("_id", doc! {"$in": ids});
        self.windows.delete_many(filter).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_has_a_budget_of_its_own() {
        let id = ObjectId::parse_str("65f000000000000000000001").unwrap();
        assert_eq!(RefusalSource::Key(id).id(), "key:65f000000000000000000001");
        assert_eq!(RefusalSource::ip("198.51.100.7").id(), "ip:198.51.100.7");
        assert_eq!(RefusalSource::Actor(TenantId::parse("tn_a").unwrap(), "apikey:x".into()).id(), "actor:tn_a:apikey:x");
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64_and_a_mapped_ipv4_as_itself() {
        assert_eq!(RefusalSource::ip("2001:db8:1:2:aaaa::1"), RefusalSource::ip("2001:db8:1:2:ffff::9"));
        assert_ne!(RefusalSource::ip("2001:db8:1:2::1"), RefusalSource::ip("2001:db8:1:3::1"));
        assert_eq!(RefusalSource::ip("::ffff:198.51.100.7"), RefusalSource::ip("198.51.100.7"));
        assert_eq!(RefusalSource::ip(&"x".repeat(500)).id().len(), 3 + MAX_SOURCE_CHARS);
    }
}
