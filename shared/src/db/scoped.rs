//! A collection confined to one tenant. Every operation of the brief's TenantAwareCollection,
//! plus `find_one_and_update` and `distinct`, checked by `guard` before it leaves the process.

use super::guard::{self, Site, TENANT_FIELD};
use super::{Db, DbError, Keyset};
use crate::ids::TenantId;
use futures_util::TryStreamExt;
use mongodb::bson::{self, doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::options::ReturnDocument;
use mongodb::Collection;
use serde::{de::DeserializeOwned, Serialize};
use std::marker::PhantomData;

/// Sorting and paging for `find`.
#[derive(Debug, Clone, Default)]
pub struct FindOptions {
    pub sort: Option<Document>,
    pub skip: Option<u64>,
    pub limit: Option<i64>,
}

/// What an update did.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateOutcome {
    pub matched: u64,
    pub modified: u64,
    pub upserted_id: Option<Bson>,
}

/// A collection of documents `T`, every operation confined to one tenant.
#[derive(Debug, Clone)]
pub struct Scoped<T> {
    db: Db,
    collection: Collection<Document>,
    tenant: TenantId,
    model: PhantomData<fn() -> T>,
}

impl<T> Scoped<T>
where
    T: Serialize + DeserializeOwned,
{
    pub(super) fn new(db: Db, collection: Collection<Document>, tenant: TenantId) -> Self {
        Self { db, collection, tenant, model: PhantomData }
    }

    /// The tenant this collection is confined to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The caller's filter with the tenant condition first. The guard has already refused any
    /// other mention of tenantId, so a merge cannot widen the filter.
    fn scope_filter(&self, filter: Document) -> Result<Document, DbError> {
        guard::check_filter(&filter, self.tenant.as_str(), Site::Filter)?;
        let mut scoped = doc! { TENANT_FIELD: self.tenant.as_str() };
        scoped.extend(filter.into_iter().filter(|(k, _)| k != TENANT_FIELD));
        Ok(scoped)
    }

    /// The caller's update with `updatedAt` stamped and, for upserts, the tenant and
    /// `createdAt` set on insert (the server copies equality fields of the filter too; setting
    /// them explicitly does not depend on that).
    /// An update is a `Document`, never an array, so a pipeline update (whose effect on tenantId
    /// cannot be checked) cannot even be expressed here.
    fn scope_update(&self, update: Document, upsert: bool) -> Result<Document, DbError> {
        guard::check_update(&update)?;
        let now = self.db.clock().now();
        let mut update = update;
        stamp(&mut update, "$set", "updatedAt", now);
        if upsert {
            stamp(&mut update, "$setOnInsert", TENANT_FIELD, self.tenant.as_str());
            stamp(&mut update, "$setOnInsert", "createdAt", now);
        }
        Ok(update)
    }

    /// A document to insert: checked, given an `_id` if it has none, tenant and timestamps set.
    fn scope_document(&self, item: &T, now: DateTime) -> Result<Document, DbError> {
        let mut document = bson::to_document(item)?;
        guard::check_document(&document, self.tenant.as_str())?;
        if !document.contains_key("_id") {
            document.insert("_id", ObjectId::new());
        }
        document.insert(TENANT_FIELD, self.tenant.as_str());
        document.insert("createdAt", now);
        document.insert("updatedAt", now);
        Ok(document)
    }

    /// `find`: every matching document of this tenant.
    pub async fn find(&self, filter: Document, options: FindOptions) -> Result<Vec<T>, DbError> {
        let cursor = self
            .collection
            .find(self.scope_filter(filter)?)
            .with_options(mongodb::options::FindOptions::builder().sort(options.sort).skip(options.skip).limit(options.limit).build())
            .await?;
        decode_all(cursor.try_collect().await?)
    }

    /// `findOne`.
    pub async fn find_one(&self, filter: Document) -> Result<Option<T>, DbError> {
        let found = self.collection.find_one(self.scope_filter(filter)?).await?;
        found.map(bson::from_document).transpose().map_err(Into::into)
    }

    /// Every matching document of this tenant in `_id` order, as one query read `batch` at a
    /// time: a job's walk through a large collection, its memory bounded by the batch, in one
    /// sort of the server's (a keyset walk of many queries makes a server without an index on
    /// the sort, FerretDB's SQLite backend, sort the rest of the collection for each).
    pub async fn walk(&self, filter: Document, batch: u32) -> Result<futures_util::stream::BoxStream<'static, Result<T, DbError>>, DbError>
    where
        T: Send + 'static,
    {
        let cursor = self.collection.find(self.scope_filter(filter)?).sort(doc! {"_id": 1}).batch_size(batch).await?;
        Ok(Box::pin(cursor.map_err(DbError::from).and_then(|d| async move { bson::from_document(d).map_err(DbError::from) })))
    }

    /// Every matching document of this tenant, in `_id` order, `size` at a time: a keyset walk
    /// (each batch resumes after the last `_id` seen), so that a job's memory stays bounded and a
    /// document written behind the walk is not read twice.
    pub fn batches(&self, filter: Document, size: i64) -> Batches<'_, T> {
        Batches { collection: self, filter, size, keyset: Keyset::default() }
    }

    /// `insertOne`: one round trip; returns the document as stored.
    pub async fn insert_one(&self, item: &T) -> Result<T, DbError> {
        let document = self.scope_document(item, self.db.clock().now())?;
        self.collection.insert_one(&document).await?;
        Ok(bson::from_document(document)?)
    }

    /// `insertMany`: all documents or, on the first refusal, none (checked before sending).
    pub async fn insert_many(&self, items: &[T]) -> Result<Vec<T>, DbError> {
        let now = self.db.clock().now();
        let documents = items.iter().map(|i| self.scope_document(i, now)).collect::<Result<Vec<_>, _>>()?;
        if documents.is_empty() {
            return Ok(vec![]);
        }
        self.collection.insert_many(&documents).await?;
        decode_all(documents)
    }

    /// `updateOne`, optionally an upsert.
    pub async fn update_one(&self, filter: Document, update: Document, upsert: bool) -> Result<UpdateOutcome, DbError> {
        self.update(filter, update, upsert, false).await
    }

    /// `updateMany`, optionally an upsert.
    pub async fn update_many(&self, filter: Document, update: Document, upsert: bool) -> Result<UpdateOutcome, DbError> {
        self.update(filter, update, upsert, true).await
    }

    async fn update(&self, filter: Document, update: Document, upsert: bool, many: bool) -> Result<UpdateOutcome, DbError> {
        let (filter, update) = (self.scope_filter(filter)?, self.scope_update(update, upsert)?);
        let _serial = self.db.serial().await?;
        let result = if many {
            self.collection.update_many(filter, update).upsert(upsert).await?
        } else {
            self.collection.update_one(filter, update).upsert(upsert).await?
        };
        Ok(UpdateOutcome { matched: result.matched_count, modified: result.modified_count, upserted_id: result.upserted_id })
    }

    /// `findOneAndUpdate`, returning the document after the update: one round trip.
    pub async fn find_one_and_update(&self, filter: Document, update: Document, upsert: bool) -> Result<Option<T>, DbError> {
        let (filter, update) = (self.scope_filter(filter)?, self.scope_update(update, upsert)?);
        let _serial = self.db.serial().await?;
        let found = self.collection.find_one_and_update(filter, update).upsert(upsert).return_document(ReturnDocument::After).await?;
        found.map(bson::from_document).transpose().map_err(Into::into)
    }

    /// `deleteOne`: how many were deleted (0 or 1).
    pub async fn delete_one(&self, filter: Document) -> Result<u64, DbError> {
        let filter = self.scope_filter(filter)?;
        let _serial = self.db.serial().await?;
        Ok(self.collection.delete_one(filter).await?.deleted_count)
    }

    /// `deleteMany`: how many were deleted.
    pub async fn delete_many(&self, filter: Document) -> Result<u64, DbError> {
        let filter = self.scope_filter(filter)?;
        let _serial = self.db.serial().await?;
        Ok(self.collection.delete_many(filter).await?.deleted_count)
    }

    /// `countDocuments`.
    pub async fn count_documents(&self, filter: Document) -> Result<u64, DbError> {
        Ok(self.collection.count_documents(self.scope_filter(filter)?).await?)
    }

    /// `distinct`: the distinct values of a field among this tenant's matching documents.
    pub async fn distinct(&self, field: &str, filter: Document) -> Result<Vec<Bson>, DbError> {
        Ok(self.collection.distinct(field, self.scope_filter(filter)?).await?)
    }

    /// `aggregate`: the pipeline, checked, after a leading `$match` on the tenant. Results are
    /// plain documents, since stages reshape them.
    pub async fn aggregate(&self, pipeline: Vec<Document>) -> Result<Vec<Document>, DbError> {
        guard::check_pipeline(&pipeline, self.tenant.as_str())?;
        let scoped = std::iter::once(doc! {"$match": { TENANT_FIELD: self.tenant.as_str() }}).chain(pipeline);
        let cursor = self.collection.aggregate(scoped).await?;
        Ok(cursor.try_collect().await?)
    }
}

fn stamp(update: &mut Document, operator: &str, field: &str, value: impl Into<Bson>) {
    match update.get_mut(operator) {
        Some(Bson::Document(fields)) => {
            fields.insert(field, value);
        }
        _ => {
            update.insert(operator, doc! { field: value.into() });
        }
    }
}

/// A keyset walk over a [`Scoped`] collection ([`Scoped::batches`]).
pub struct Batches<'a, T> {
    collection: &'a Scoped<T>,
    filter: Document,
    size: i64,
    keyset: Keyset,
}

impl<T> Batches<'_, T>
where
    T: Serialize + DeserializeOwned,
{
    /// The next batch, or `None` once the walk has passed the last match.
    pub async fn next(&mut self) -> Result<Option<Vec<T>>, DbError> {
        let Some(filter) = self.keyset.filter(&self.filter) else { return Ok(None) };
        let options = mongodb::options::FindOptions::builder().sort(doc! {"_id": 1}).limit(self.size).build();
        let found: Vec<Document> =
            self.collection.collection.find(self.collection.scope_filter(filter)?).with_options(options).await?.try_collect().await?;
        // The `_id` is read from the stored document, so the walk needs nothing of `T`.
        if !self.keyset.advance(&found) {
            return Ok(None);
        }
        decode_all(found).map(Some)
    }
}

fn decode_all<T: DeserializeOwned>(documents: Vec<Document>) -> Result<Vec<T>, DbError> {
    documents.into_iter().map(|d| bson::from_document(d).map_err(Into::into)).collect()
}
