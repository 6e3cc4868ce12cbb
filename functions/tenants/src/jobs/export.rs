//! A tenant's export (docs/ARCHITECTURE.md §22): one gzip NDJSON file per collection in the
//! export bucket, personal fields opened, key hashes and blind indexes left out. The worker
//! calls [`step`] until it says the export is done; each call does one unit (a part of a file,
//! or a file's last part with its completion and digest) and returns the cursor to record.
//!
//! A collection is walked in `_id` order from the cursor, so an export of a live tenant is not
//! a snapshot: a document written behind the walk is not in it. A unit redone after a crash
//! uploads its part again, which replaces it; a file completed before a crash whose record was
//! lost is found in the bucket and read back, not assumed.

use crate::error::TenantsError;
use flate2::write::GzEncoder;
use flate2::Compression;
use futures_util::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{doc, Bson, Document};
use serde::{Deserialize, Serialize};
use shared::db::{Db, DbError, SystemContext, TenantCollection};
use shared::exports::{file_key, ExportError, MIN_PART_BYTES};
use shared::ids::TenantId;
use shared::jobs::{Job, JobFile};
use shared::pii::{Field, Sealed};
use std::io::Write;

/// What an export holds, in order: the registry record, then each tenant collection.
pub const COLLECTIONS: [&str; 6] = ["tenant", "users", "roles", "apiKeys", "auditLogs", "userErasures"];

/// The file of a collection.
pub fn file_name(collection: &str) -> String {
    format!("{collection}.ndjson.gz")
}

/// Documents the driver reads at a time: a part is built from several batches.
const BATCH: u32 = 500;

/// Fields never exported: key hashes (an export must not let anyone test a key) and blind
/// indexes (keyed digests of personal data, of no use without the tenant's index key).
const WITHHELD: [(&str, &str); 3] = [("apiKeys", "keyHash"), ("apiKeys", "previousKeyHash"), ("users", "emailHash")];

/// Where an export stands: the file being written, the last `_id` in it, its upload and parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    #[serde(default)]
    pub file: i32,
    #[serde(default)]
    pub after: Option<ObjectId>,
    #[serde(default)]
    pub upload_id: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
    #[serde(default)]
    pub count: i64,
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    pub number: i32,
    pub etag: String,
}

impl Cursor {
    /// The cursor a job recorded (a new job's is empty).
    pub fn of(job: &Job) -> Result<Cursor, TenantsError> {
        Ok(mongodb::bson::from_document(job.cursor.clone()).map_err(DbError::from)?)
    }

    /// Its stored form.
    pub fn to_document(&self) -> Result<Document, TenantsError> {
        Ok(mongodb::bson::to_document(self).map_err(DbError::from)?)
    }

    /// Whether every file is written.
    pub fn done(&self) -> bool {
        self.file as usize >= COLLECTIONS.len()
    }
}

/// What one unit did.
#[derive(Debug)]
pub struct Unit {
    pub cursor: Cursor,
    pub files: Vec<JobFile>,
    /// Bytes uploaded: the worker's budget per invocation.
    pub bytes: usize,
}

/// Does one unit of `job`'s export from `cursor`.
pub async fn step(db: &Db, job: &Job, mut cursor: Cursor, mut files: Vec<JobFile>) -> Result<Unit, TenantsError> {
    let exports = db.exports().map_err(DbError::from)?;
    let tenant = &job.tenant_id;
    let collection = COLLECTIONS[cursor.file as usize];
    let name = file_name(collection);
    let key = file_key(tenant, &job.id, &name);
    let upload_id = match &cursor.upload_id {
        Some(id) => id.clone(),
        None => {
            let id = exports.begin_file(&key).await.map_err(DbError::from)?;
            cursor.upload_id = Some(id.clone());
            id
        }
    };
    let (bytes, written, last, ended) = build_part(db, tenant, collection, cursor.after).await?;
    let size = bytes.len();
    let number = cursor.parts.len() as i32 + 1;
    match exports.put_part(&key, &upload_id, number, bytes).await {
        Ok(etag) => cursor.parts.push(Part { number, etag }),
        // The upload was completed by an earlier run whose record was lost: the file is there.
        Err(ExportError::UploadGone) if exports.exists(&key).await.map_err(DbError::from)? => {
            // This part was the last, and completed the file: its documents count too.
            cursor.count += written;
            return finish(db, &key, name, cursor, files, size).await;
        }
        // Aborted (the bucket's rule for stale uploads): the file starts over.
        Err(ExportError::UploadGone) => {
            return Ok(Unit { cursor: Cursor { file: cursor.file, ..Cursor::default() }, files, bytes: 0 });
        }
        Err(e) => return Err(DbError::from(e).into()),
    }
    cursor.after = last.or(cursor.after);
    cursor.count += written;
    if !ended {
        return Ok(Unit { cursor, files, bytes: size });
    }
    let parts: Vec<(i32, String)> = cursor.parts.iter().map(|p| (p.number, p.etag.clone())).collect();
    exports.finish_file(&key, &upload_id, &parts).await.map_err(DbError::from)?;
    files.retain(|f| f.name != name);
    finish(db, &key, name, cursor, files, size).await
}

/// Reads back a completed file's digest, records it and moves to the next collection.
async fn finish(db: &Db, key: &str, name: String, cursor: Cursor, mut files: Vec<JobFile>, size: usize) -> Result<Unit, TenantsError> {
    let (sha256, stored) = db.exports().map_err(DbError::from)?.digest(key).await.map_err(DbError::from)?;
    files.retain(|f| f.name != name);
    files.push(JobFile { name, count: cursor.count, sha256, bytes: stored });
    Ok(Unit { cursor: Cursor { file: cursor.file + 1, ..Cursor::default() }, files, bytes: size })
}

/// One part: a whole gzip member of the collection's documents after `after`, at least
/// [`MIN_PART_BYTES`] unless the collection ends in it. Its bytes, how many documents it holds,
/// the last `_id`, and whether the collection ended. The documents are read as one query, a
/// batch at a time, and the query is dropped once the part is full.
async fn build_part(
    db: &Db,
    tenant: &TenantId,
    collection: &str,
    after: Option<ObjectId>,
) -> Result<(Vec<u8>, i64, Option<ObjectId>, bool), TenantsError> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    let mut written = 0i64;
    let mut last = after;
    let mut documents = read_from(db, tenant, collection, after).await?;
    let ended = loop {
        let Some(document) = documents.try_next().await? else { break true };
        last = document.get_object_id("_id").ok();
        let line = exported(db, tenant, collection, document).await?;
        serde_json::to_writer(&mut gz, &line).map_err(|e| TenantsError::Export(e.to_string()))?;
        gz.write_all(b"\n").map_err(|e| TenantsError::Export(e.to_string()))?;
        written += 1;
        if gz.get_ref().len() >= MIN_PART_BYTES {
            // Full, unless nothing follows: a last part may be any size, and an empty one would
            // only add a member.
            break false;
        }
    };
    let bytes = gz.finish().map_err(|e| TenantsError::Export(e.to_string()))?;
    Ok((bytes, written, last, ended))
}

/// The documents of `collection` after `after`, in `_id` order, through the tenant scope (the
/// registry record, for `tenant`).
async fn read_from(
    db: &Db,
    tenant: &TenantId,
    collection: &str,
    after: Option<ObjectId>,
) -> Result<futures_util::stream::BoxStream<'static, Result<Document, DbError>>, TenantsError> {
    if collection == "tenant" {
        let record = db.tenants(&SystemContext::new("export")).document(tenant).await?;
        let record = record.ok_or_else(|| TenantsError::NotFound(tenant.clone()))?;
        return Ok(Box::pin(futures_util::stream::iter([Ok(record)])));
    }
    let which =
        TenantCollection::ALL.into_iter().find(|c| c.name() == collection).expect("every exported collection is a tenant collection");
    let scope = SystemContext::new("export").for_tenant(tenant.clone());
    let mut filter = match after {
        Some(id) => doc! {"_id": {"$gt": id}},
        None => doc! {},
    };
    // A person being erased is in no new export: their erasure deletes the exports begun
    // before its last step, and one begun after must not hold them either.
    if which == TenantCollection::Users {
        filter.insert("erasing", doc! {"$exists": false});
    }
    Ok(db.scoped::<Document>(&scope, which).walk(filter, BATCH).await?)
}

/// A document as the export shows it: personal fields opened, withheld fields left out, as
/// relaxed extended JSON (ids as `{"$oid"}`, times as `{"$date"}`), which a restore reads back.
async fn exported(db: &Db, tenant: &TenantId, collection: &str, mut document: Document) -> Result<serde_json::Value, TenantsError> {
    for (c, field) in WITHHELD {
        if c == collection {
            document.remove(field);
        }
    }
    // An entry of a refused invitation names the address by the same blind index.
    if collection == "auditLogs" {
        if let Ok(details) = document.get_document_mut("details") {
            details.remove("emailHash");
        }
    }
    let registry_name = if collection == "tenant" { "tenants" } else { collection };
    for field in PERSONAL {
        if field.collection() == registry_name {
            open_at(db, tenant, field, &mut document).await?;
        }
    }
    Ok(Bson::Document(document).into_relaxed_extjson())
}

/// Every personal-data field.
const PERSONAL: [Field; 6] =
    [Field::UserEmail, Field::UserFirstName, Field::UserLastName, Field::UserDepartment, Field::UserTitle, Field::BillingEmail];

/// Replaces the sealed value at `field`'s path, if there is one, with its plaintext.
async fn open_at(db: &Db, tenant: &TenantId, field: Field, document: &mut Document) -> Result<(), TenantsError> {
    let mut path: Vec<&str> = field.path().split('.').collect();
    let leaf = path.pop().expect("a path has a last segment");
    let mut node = document;
    for segment in path {
        match node.get_document_mut(segment) {
            Ok(inner) => node = inner,
            Err(_) => return Ok(()),
        }
    }
    let Some(value) = node.get(leaf).cloned() else { return Ok(()) };
    if matches!(value, Bson::Null) {
        return Ok(());
    }
    let sealed: Sealed = mongodb::bson::from_bson(value).map_err(DbError::from)?;
    let plain = db.keyring()?.open(tenant, field, &sealed).await.map_err(DbError::from)?;
    node.insert(leaf, plain);
    Ok(())
}

/// The lines of an export's file, read back as they are stored (gzip members, one after the
/// other), a chunk at a time: a restore reads a file of any size in bounded memory.
pub struct Lines {
    body: aws_sdk_s3::primitives::ByteStream,
    decoder: flate2::write::MultiGzDecoder<Vec<u8>>,
    pending: Vec<u8>,
    done: bool,
}

impl Lines {
    /// The lines of the file `name` of the export `export_id` of `tenant`.
    pub async fn open(db: &Db, tenant: &TenantId, export_id: &str, name: &str) -> Result<Lines, TenantsError> {
        let body = db.exports().map_err(DbError::from)?.open(&file_key(tenant, export_id, name)).await.map_err(DbError::from)?;
        Ok(Lines { body, decoder: flate2::write::MultiGzDecoder::new(Vec::new()), pending: Vec::new(), done: false })
    }

    /// The next line's document, or `None` at the end of the file.
    pub async fn next(&mut self) -> Result<Option<Document>, TenantsError> {
        let corrupt = |e: String| TenantsError::Export(format!("an export file does not read back: {e}"));
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let value: serde_json::Value = serde_json::from_slice(&line[..end]).map_err(|e| corrupt(e.to_string()))?;
                return match Bson::try_from(value).map_err(|e| corrupt(e.to_string()))? {
                    Bson::Document(d) => Ok(Some(d)),
                    _ => Err(corrupt("a line is not a document".into())),
                };
            }
            if self.done {
                return if self.pending.iter().all(u8::is_ascii_whitespace) {
                    Ok(None)
                } else {
                    Err(corrupt("the last line is cut".into()))
                };
            }
            self.pull().await?;
        }
    }

    /// Skips `n` lines (a restore resuming at its cursor), counting line ends without reading
    /// what lies between them.
    pub async fn skip(&mut self, mut n: i64) -> Result<(), TenantsError> {
        while n > 0 {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                self.pending.drain(..=end);
                n -= 1;
                continue;
            }
            if self.done {
                break;
            }
            self.pull().await?;
        }
        Ok(())
    }

    /// Reads and decompresses the next chunk of the file into `pending`.
    async fn pull(&mut self) -> Result<(), TenantsError> {
        let corrupt = |e: String| TenantsError::Export(format!("an export file does not read back: {e}"));
        match self.body.try_next().await.map_err(|e| DbError::from(ExportError::Unavailable("S3", format!("GetObject body: {e}"))))? {
            Some(chunk) => self.decoder.write_all(&chunk).map_err(|e| corrupt(e.to_string()))?,
            None => {
                self.decoder.try_finish().map_err(|e| corrupt(e.to_string()))?;
                self.done = true;
            }
        }
        self.pending.append(self.decoder.get_mut());
        Ok(())
    }
}
