//! A typed handle on one global collection that a context or job owns (docs/ARCHITECTURE.md §5):
//! a key's request windows for the authorizer, the refusal budgets, the usage snapshots. Like
//! [`super::Scoped`] for tenant collections, it is the only way to such a collection: it opens
//! only with a [`SystemContext`], names only the collections of [`GlobalCollection`] (never a
//! tenant collection), and exposes a narrow set of operations, never the driver's collection.
//! The owner keeps its logic (what a document means, its bounds and rules) in its own crate.

use super::{global, Db, DbError, SystemContext};
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use mongodb::Collection;
use serde::{de::DeserializeOwned, Serialize};

/// The global collections a context or job owns. Closed: a new one is a variant here, so that
/// no code can open a tenant collection, or the registry, through a [`GlobalStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalCollection {
    /// Each API key's request windows, one document per key (`_id` = the key id): the
    /// authorizer's.
    ApiKeyWindows,
    /// The budgets of audited refusals (`key:…`, `ip:…`, `actor:…`) and of refused invitations
    /// (`invite:<tenant>`).
    RefusalWindows,
    /// Each tenant's daily data-growth snapshot (`_id` = `<tenantId>:<YYYY-MM-DD>`): written by
    /// the migrations job, read by the tenants context.
    UsageSnapshots,
    /// The durable sagas (onboardings, invitations, sign-ups), each carrying the `tenantId` it
    /// acts on: the saga machinery's (`shared::saga`).
    Sagas,
    /// The tombstones of purged tenants (`_id` = the tenant id), with their signed erasure
    /// receipts: the data cluster's half of the record that a tenant ended (the vault keeps the
    /// other, docs/ARCHITECTURE.md §22).
    TenantTombstones,
    /// A tenant's exports and restores (`shared::jobs`), each carrying its `tenantId`.
    Jobs,
}

impl GlobalCollection {
    /// The collection's name in the database.
    pub fn name(self) -> &'static str {
        match self {
            GlobalCollection::ApiKeyWindows => global::API_KEY_WINDOWS,
            GlobalCollection::RefusalWindows => global::REFUSAL_WINDOWS,
            GlobalCollection::UsageSnapshots => global::USAGE_SNAPSHOTS,
            GlobalCollection::Sagas => global::SAGAS,
            GlobalCollection::TenantTombstones => global::TENANT_TOMBSTONES,
            GlobalCollection::Jobs => global::JOBS,
        }
    }
}

/// Sorting and bounds of a [`GlobalStore::find`].
#[derive(Debug, Clone, Default)]
pub struct GlobalFind {
    pub sort: Option<Document>,
    pub limit: Option<i64>,
    pub projection: Option<Document>,
}

/// One global collection of documents `T` ([`Db::global`]).
#[derive(Debug, Clone)]
pub struct GlobalStore<T: Send + Sync> {
    db: Db,
    collection: Collection<T>,
}

impl Db {
    /// The global collection `collection`, as documents `T`: only the system opens one.
    pub fn global<T: Send + Sync>(&self, _system: &SystemContext, collection: GlobalCollection) -> GlobalStore<T> {
        GlobalStore { db: self.clone(), collection: self.database.collection(collection.name()) }
    }
}

impl<T> GlobalStore<T>
where
    T: Serialize + DeserializeOwned + Send + Sync,
{
    /// The document matching `filter`, if any.
    pub async fn find_one(&self, filter: Document) -> Result<Option<T>, DbError> {
        Ok(self.collection.find_one(filter).await?)
    }

    /// The documents matching `filter`, in one batch up to `limit` (these collections are read
    /// in small pages: a year of snapshots, a page of expired budgets).
    pub async fn find(&self, filter: Document, options: GlobalFind) -> Result<Vec<T>, DbError> {
        let batch = options.limit.and_then(|l| u32::try_from(l.max(1)).ok());
        let options = mongodb::options::FindOptions::builder()
            .sort(options.sort)
            .limit(options.limit)
            .projection(options.projection)
            .batch_size(batch)
            .build();
        Ok(self.collection.find(filter).with_options(options).await?.try_collect().await?)
    }

    /// Writes `item` as the document `_id = id`, replacing it if it exists. Two writers
    /// inserting the same new `_id` at once (on MongoDB): the loser's upsert meets the winner's
    /// document, and replacing it again then matches it.
    pub async fn put(&self, id: Bson, item: &T) -> Result<(), DbError> {
        let mut raced = false;
        loop {
            let written = {
                let _serial = self.db.serial().await?;
                self.collection.replace_one(doc! {"_id": id.clone()}, item).upsert(true).await.map_err(DbError::from)
            };
            match written {
                Ok(_) => return Ok(()),
                Err(DbError::Duplicate) if !raced => raced = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// Inserts `item`; an `_id` (or unique key) already taken is [`DbError::Duplicate`]. Insert
    /// first, never find-then-insert: of two racing first writes exactly one succeeds.
    pub async fn insert(&self, item: &T) -> Result<(), DbError> {
        let _serial = self.db.serial().await?;
        self.collection.insert_one(item).await?;
        Ok(())
    }

    /// Applies `update` to the document matching `filter`, if any, and returns it as it is
    /// after the update.
    pub async fn find_one_and_update(&self, filter: Document, update: Document) -> Result<Option<T>, DbError> {
        let _serial = self.db.serial().await?;
        Ok(self.collection.find_one_and_update(filter, update).return_document(ReturnDocument::After).await?)
    }

    /// How many documents match `filter`.
    pub async fn count(&self, filter: Document) -> Result<u64, DbError> {
        Ok(self.collection.count_documents(filter).await?)
    }

    /// Applies `update` to the document matching `filter`, if any: whether one matched.
    pub async fn update_one(&self, filter: Document, update: Document) -> Result<bool, DbError> {
        let _serial = self.db.serial().await?;
        Ok(self.collection.update_one(filter, update).await?.matched_count == 1)
    }

    /// Deletes every document matching `filter`: how many went.
    pub async fn delete_many(&self, filter: Document) -> Result<u64, DbError> {
        let _serial = self.db.serial().await?;
        Ok(self.collection.delete_many(filter).await?.deleted_count)
    }
}

/// The counts of a document's windows after a counting update, by field: `(field, count)`,
/// e.g. `("m.202611290130", 3)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowCounts(pub Vec<(String, i64)>);

impl WindowCounts {
    /// The windows a document holds under its `m`, `h` and `d` fields.
    pub fn of(document: &Document) -> Self {
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

impl GlobalStore<Document> {
    /// Counts one event in each of `windows` (`(field, bound)`, fields under `m.`, `h.` or `d.`)
    /// of the document `id`, in one conditional upsert, and `$set`s `set` alongside (nothing
    /// when it is empty). The filter holds each bound as a literal (`$not: {$gte: N}` also
    /// matches a window not yet counted; FerretDB has no `$expr`), the update is one `$inc` of
    /// every field and an `$unset` of the `seen` fields that are no longer current. When a window
    /// is full the filter misses the existing document, the upsert then tries to insert a second
    /// one with the same `_id`, and that duplicate-key error means "full": `None`, nothing
    /// counted. Never increment-then-check, so racing callers cannot pass a bound together.
    pub async fn count_windows(
        &self,
        id: Bson,
        windows: &[(String, i64)],
        seen: &[String],
        set: Document,
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
        if !set.is_empty() {
            update.insert("$set", set);
        }
        // Twice at most: on MongoDB two first calls can race to insert the document, and the
        // loser's duplicate-key error then means "created meanwhile", not "full". A re-read
        // tells which.
        for attempt in 0..2 {
            let result = {
                let _serial = self.db.serial().await?;
                self.collection
                    .find_one_and_update(filter.clone(), update.clone())
                    .upsert(true)
                    .return_document(ReturnDocument::After)
                    .await
            };
            match result.map_err(DbError::from) {
                Ok(found) => return Ok(found.as_ref().map(WindowCounts::of)),
                Err(DbError::Duplicate) if attempt == 0 => {
                    let now = self.collection.find_one(doc! {"_id": filter.get("_id").cloned().unwrap_or(Bson::Null)}).await?;
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

    /// The windows of the document `id` as they are now (to tell which one is full).
    pub async fn windows(&self, id: Bson) -> Result<WindowCounts, DbError> {
        Ok(self.find_one(doc! {"_id": id}).await?.as_ref().map(WindowCounts::of).unwrap_or_default())
    }
}
