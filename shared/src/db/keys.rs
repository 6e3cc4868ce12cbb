//! What API-key authentication needs before it knows the tenant: one key by its global id, and
//! the key's request windows. Reached only through `Db::key_auth`, which takes a system context.

use super::{global, Db, DbError, TenantCollection};
use crate::ids::TenantId;
use crate::models::ApiKey;
use mongodb::bson::{self, doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::options::ReturnDocument;
use mongodb::Collection;

/// The bounds one key call is counted under (see [`KeyAuth::count`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowBounds {
    /// `YYYYMMDDHHMM`, `YYYYMMDDHH` and `YYYYMMDD` (UTC): the current windows.
    pub minute: String,
    pub hour: String,
    pub day: String,
    pub per_minute: i64,
    pub per_hour: i64,
    pub per_day: i64,
    /// Window fields last seen on the key's document (`m.…`, `h.…`, `d.…`), removed unless
    /// current: old windows are trimmed as they pass.
    pub seen: Vec<String>,
}

impl WindowBounds {
    fn fields(&self) -> [(String, i64); 3] {
        [
            (format!("m.{}", self.minute), self.per_minute),
            (format!("h.{}", self.hour), self.per_hour),
            (format!("d.{}", self.day), self.per_day),
        ]
    }
}

/// The counts of a key's windows after a call, by window: `(field, count)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowCounts(pub Vec<(String, i64)>);

impl WindowCounts {
    fn of(document: &Document) -> Self {
        let mut out = Vec::new();
        for prefix in ["m", "h", "d"] {
            if let Ok(windows) = document.get_document(prefix) {
                for (k, v) in windows {
                    let n = match v {
                        Bson::Int32(n) => i64::from(*n),
                        Bson::Int64(n) => *n,
                        Bson::Double(n) => *n as i64,
                        _ => 0,
                    };
                    out.push((format!("{prefix}.{k}"), n));
                }
            }
        }
        Self(out)
    }

    /// The count of one window field (`m.202611290130`), 0 if absent.
    pub fn get(&self, field: &str) -> i64 {
        self.0.iter().find(|(k, _)| k == field).map_or(0, |(_, n)| *n)
    }

    /// The window fields present.
    pub fn fields(&self) -> Vec<String> {
        self.0.iter().map(|(k, _)| k.clone()).collect()
    }
}

/// The narrow API of key authentication.
#[derive(Debug, Clone)]
pub struct KeyAuth {
    db: Db,
    keys: Collection<Document>,
    windows: Collection<Document>,
}

impl KeyAuth {
    pub(super) fn new(db: &Db) -> Self {
        Self {
            db: db.clone(),
            keys: db.database.collection(TenantCollection::ApiKeys.name()),
            windows: db.database.collection(global::API_KEY_WINDOWS),
        }
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

    /// Counts one call in the key's minute, hour and day windows: one conditional upsert whose
    /// filter holds each bound as a literal, with one `$inc` of all three (see
    /// [`count_windows`]). `None` when a window is full: nothing is counted then.
    pub async fn count(&self, key_id: ObjectId, bounds: &WindowBounds) -> Result<Option<WindowCounts>, DbError> {
        count_windows(&self.db, &self.windows, Bson::ObjectId(key_id), &bounds.fields(), &bounds.seen).await
    }

    /// The key's windows as they are now (to tell which one is full).
    pub async fn windows(&self, key_id: ObjectId) -> Result<WindowCounts, DbError> {
        Ok(self.windows.find_one(doc! {"_id": key_id}).await?.as_ref().map(WindowCounts::of).unwrap_or_default())
    }
}

fn malformed(what: &'static str) -> DbError {
    DbError::Decode(<bson::de::Error as serde::de::Error>::custom(what))
}

/// Counts one event in each of `windows` (`(field, bound)`) of the document `id`, in one
/// conditional upsert: the filter holds each bound as a literal (`$not: {$gte: N}` also matches
/// a window not yet counted; FerretDB has no `$expr`), the update one `$inc` of every field and
/// an `$unset` of the `seen` fields that are no longer current. When a window is full the filter
/// misses the existing document, the upsert then tries to insert a second one with the same
/// `_id`, and that duplicate-key error means "full": `None`, nothing counted.
pub(crate) async fn count_windows(
    db: &Db,
    collection: &Collection<Document>,
    id: Bson,
    windows: &[(String, i64)],
    seen: &[String],
) -> Result<Option<WindowCounts>, DbError> {
    let mut filter = doc! {"_id": id};
    let mut inc = Document::new();
    for (field, bound) in windows {
        filter.insert(field.clone(), doc! {"$not": {"$gte": *bound}});
        inc.insert(field.clone(), 1_i64);
    }
    let mut update = doc! {"$inc": inc};
    let stale: Document = seen
        .iter()
        .filter(|f| !windows.iter().any(|(current, _)| current == *f))
        .filter(|f| f.starts_with("m.") || f.starts_with("h.") || f.starts_with("d."))
        .map(|f| (f.clone(), Bson::String(String::new())))
        .collect();
    if !stale.is_empty() {
        update.insert("$unset", stale);
    }
    // Twice at most: on MongoDB two first calls can race to insert the document, and the loser's
    // duplicate-key error then means "created meanwhile", not "full". A re-read tells which.
    for attempt in 0..2 {
        let result = {
            let _serial = db.serial().await?;
            collection.find_one_and_update(filter.clone(), update.clone()).upsert(true).return_document(ReturnDocument::After).await
        };
        match result.map_err(DbError::from) {
            Ok(found) => return Ok(found.as_ref().map(WindowCounts::of)),
            Err(DbError::Duplicate) if attempt == 0 => {
                let now = collection.find_one(doc! {"_id": filter.get("_id").cloned().unwrap_or(Bson::Null)}).await?;
                let counts = now.as_ref().map(WindowCounts::of).unwrap_or_default();
                if windows.iter().any(|(field, bound)| counts.get(field) >= *bound) {
                    return Ok(None);
                }
            }
            Err(DbError::Duplicate) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The per-tenant budget of audited refusals: at most [`REFUSALS_PER_MINUTE`] entries a minute
/// per tenant, across every process, so that a flood of refused calls cannot fill the log.
#[derive(Debug, Clone)]
pub struct RefusalBudget {
    db: Db,
    windows: Collection<Document>,
}

/// The minute each tenant's budget was last seen full, per database, in this process.
static FULL_MINUTES: std::sync::LazyLock<std::sync::Mutex<lru::LruCache<(String, String), String>>> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(lru::LruCache::new(std::num::NonZeroUsize::new(10_000).expect("non-zero"))));

/// How many refusals a tenant's audit log takes per minute.
pub const REFUSALS_PER_MINUTE: i64 = 20;

impl RefusalBudget {
    pub(super) fn new(db: &Db) -> Self {
        Self { db: db.clone(), windows: db.database.collection(global::REFUSAL_WINDOWS) }
    }

    /// Takes one place in the tenant's current minute: `false` if the minute is full. Once
    /// this process has seen a minute full it answers `false` without a round trip until the
    /// minute ends, so that a flood of refusals costs the database nothing more.
    pub async fn take(&self, tenant: &TenantId) -> Result<bool, DbError> {
        let (minute, _) = crate::clock::minute_window(self.db.clock().now_ms());
        let key = (self.db.name().to_owned(), tenant.to_string());
        if FULL_MINUTES.lock().expect("poisoned").get(&key) == Some(&minute) {
            return Ok(false);
        }
        let field = format!("m.{minute}");
        let id = Bson::String(tenant.to_string());
        let seen = match self.windows.find_one(doc! {"_id": id.clone()}).await? {
            Some(document) => WindowCounts::of(&document).fields(),
            None => vec![],
        };
        let taken = count_windows(&self.db, &self.windows, id, &[(field, REFUSALS_PER_MINUTE)], &seen).await?.is_some();
        if !taken {
            FULL_MINUTES.lock().expect("poisoned").put(key, minute);
        }
        Ok(taken)
    }
}
