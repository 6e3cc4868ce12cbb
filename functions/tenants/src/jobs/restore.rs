//! A tenant's restore (docs/ARCHITECTURE.md §22): an export's files loaded into a new tenant,
//! through the tenant scope (its guard checks every document, and stamps the new tenant), with
//! every personal field sealed under the new tenant's own keys. API keys are not restored: a key
//! is a secret its holder had, and an export never held its hash.
//!
//! The worker calls [`step`] until it says the restore is done. The first unit registers the new
//! tenant, `suspended` with the reason "restoring", so that nobody is admitted into it and its
//! domain claim is a registered tenant's (never taken over as stale), and makes its keys. Each
//! later unit loads a bounded number of documents of one file, resuming at the cursor's line.
//! The last one counts the seats and admin places and sets the status the export had. Ids are
//! new, derived from the restore and the old id, so that a unit redone after a crash writes the
//! same documents (a duplicate is one already written) and references between documents (a
//! user's roles, a role's creator) follow without a table of ids.
//!
//! Each person gets a Cognito user afresh, which sends them an invitation (a temporary
//! password). A restore of a tenant that is offboarding (its grace running, its purge not
//! begun) takes its people and domain over: their claims move to the new tenant, their old
//! Cognito users are replaced, and the old tenant's offboarding can no longer be cancelled. A
//! restore that fails for good is undone whole by [`discard`]: the tenant never half exists.

use crate::error::TenantsError;
use crate::jobs::export::Lines;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{doc, Bson, Document};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::db::{Db, DbError, DomainClaim, SystemContext, TenantCollection};
use shared::directory::{Directory, DirectoryError};
use shared::ids::{Domain, Email, TenantId};
use shared::jobs::Job;
use shared::models::{Tenant, TenantStatus, SYSTEM_PRINCIPAL};
use shared::pii::{EmailClaim, Field};

/// The collections a restore loads, in order: roles before the users that name them.
pub const LOADED: [TenantCollection; 4] =
    [TenantCollection::Roles, TenantCollection::Users, TenantCollection::AuditLogs, TenantCollection::UserErasures];

/// Users loaded per unit: each is a claim, a Cognito call and an insert.
const USERS_PER_UNIT: usize = 100;
/// Other documents loaded per unit.
const DOCUMENTS_PER_UNIT: usize = 1_000;

/// The reason a restoring tenant is suspended for.
pub const RESTORING: &str = "restoring from an export";

/// What a restore fixed up front.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    pub export_id: String,
    pub target_tenant_id: TenantId,
}

impl Params {
    pub fn of(job: &Job) -> Result<Params, TenantsError> {
        Ok(mongodb::bson::from_document(job.params.clone()).map_err(DbError::from)?)
    }
}

/// Where a restore stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    /// The new tenant is registered (restoring) and has its keys.
    #[serde(default)]
    pub registered: bool,
    /// The index in [`LOADED`] of the file being loaded.
    #[serde(default)]
    pub file: i32,
    /// Lines of that file loaded.
    #[serde(default)]
    pub line: i64,
    /// The restore failed for good with this failure, and is being undone.
    #[serde(default)]
    pub discarding: Option<shared::jobs::JobFailure>,
}

impl Cursor {
    pub fn of(job: &Job) -> Result<Cursor, TenantsError> {
        Ok(mongodb::bson::from_document(job.cursor.clone()).map_err(DbError::from)?)
    }
    pub fn to_document(&self) -> Result<Document, TenantsError> {
        Ok(mongodb::bson::to_document(self).map_err(DbError::from)?)
    }
}

/// What a unit did.
#[derive(Debug)]
pub enum Unit {
    /// More to do from this cursor.
    More(Cursor),
    /// The new tenant is whole and live.
    Done,
}

/// The new id of a restored document: the old id's timestamp (its order and time of creation
/// are kept), then the first 8 bytes of a digest of the restore and the old id. The system's own
/// principal stays itself.
pub fn new_id(job_id: &str, old: ObjectId) -> ObjectId {
    if old == SYSTEM_PRINCIPAL {
        return old;
    }
    let digest = Sha256::new().chain_update(job_id.as_bytes()).chain_update(old.bytes()).finalize();
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&old.bytes()[..4]);
    bytes[4..].copy_from_slice(&digest[..8]);
    ObjectId::from_bytes(bytes)
}

fn scope(tenant: &TenantId) -> shared::db::SystemTenantScope {
    SystemContext::new("restore").for_tenant(tenant.clone())
}

fn invalid(what: impl Into<String>) -> TenantsError {
    TenantsError::Export(format!("the export does not restore: {}", what.into()))
}

/// Does one unit of `job`'s restore from `cursor`.
pub async fn step(db: &Db, directory: &dyn Directory, job: &Job, mut cursor: Cursor) -> Result<Unit, TenantsError> {
    let params = Params::of(job)?;
    if !cursor.registered {
        register(db, job, &params).await?;
        cursor.registered = true;
        return Ok(Unit::More(cursor));
    }
    let Some(collection) = LOADED.get(cursor.file as usize).copied() else {
        commit(db, &params).await?;
        return Ok(Unit::Done);
    };
    let mut lines = Lines::open(db, &job.tenant_id, &params.export_id, &crate::jobs::export::file_name(collection.name())).await?;
    lines.skip(cursor.line).await?;
    let bound = if collection == TenantCollection::Users { USERS_PER_UNIT } else { DOCUMENTS_PER_UNIT };
    let mut batch = Vec::with_capacity(bound);
    let mut ended = false;
    while batch.len() < bound {
        match lines.next().await? {
            Some(document) => batch.push(document),
            None => {
                ended = true;
                break;
            }
        }
    }
    let read = batch.len() as i64;
    if collection == TenantCollection::Users {
        // One person at a time, each written as soon as their address is claimed: whatever
        // a failure leaves, the undoing finds in the new tenant's records.
        let yielded = yielded(db, job, &params.target_tenant_id).await?;
        for document in batch {
            restore_user(db, directory, job, &params, yielded, document).await?;
        }
    } else {
        let mut restored = Vec::with_capacity(batch.len());
        for document in batch {
            restored.push(restored_document(job, &params, collection, document)?);
        }
        insert_all(db, &params.target_tenant_id, collection, restored).await?;
    }
    if ended {
        cursor.file += 1;
        cursor.line = 0;
    } else {
        cursor.line += read;
    }
    Ok(Unit::More(cursor))
}

/// The new tenant's registry record, `suspended` while it is restored, and its keys and domain.
async fn register(db: &Db, job: &Job, params: &Params) -> Result<(), TenantsError> {
    let target = &params.target_tenant_id;
    let registry = db.tenants(&SystemContext::new("restore"));
    let mut lines = Lines::open(db, &job.tenant_id, &params.export_id, &crate::jobs::export::file_name("tenant")).await?;
    let source = lines.next().await?.ok_or_else(|| invalid("the tenant file is empty"))?;
    db.keyring()?.create_tenant_keys(target).await.map_err(DbError::from)?;
    let tenant = restored_tenant(db, job, target, source).await?;
    let yielding = yields(db, job, target).await?;
    if let Some(domain) = &tenant.domain {
        let domain = Domain::parse(domain.clone()).map_err(|e| invalid(e.0))?;
        if registry.claim_domain(&domain, target).await? == DomainClaim::Taken
            && !(yielding && registry.move_domain(domain.as_str(), &job.tenant_id, target).await?)
        {
            return Err(TenantsError::DomainTaken(domain.as_str().to_owned()));
        }
    }
    match registry.insert(&tenant).await {
        // A redo finds its own record.
        Ok(()) | Err(DbError::Duplicate) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the exported tenant yields its people and domain to this restore: it is offboarding,
/// its purge has not begun, and it is marked as restored into the new tenant (by one
/// conditional write, which also keeps its offboarding from being cancelled, and a second
/// restore of it from starting).
async fn yields(db: &Db, job: &Job, target: &TenantId) -> Result<bool, TenantsError> {
    let registry = db.tenants(&SystemContext::new("restore"));
    let Some(source) = registry.get(&job.tenant_id).await? else { return Ok(false) };
    let Some(offboarding) = source.offboarding.filter(|_| source.status == TenantStatus::Offboarding) else { return Ok(false) };
    // Unmarked, marked for this restore, or for one that failed and was undone: that tenant
    // no longer exists.
    let mut marks = vec![doc! {"offboarding.restoredInto": {"$exists": false}}, doc! {"offboarding.restoredInto": target.as_str()}];
    if let Some(earlier) = offboarding.restored_into.filter(|t| t != target) {
        if registry.get(&earlier).await?.is_none() {
            marks.push(doc! {"offboarding.restoredInto": earlier.as_str()});
        }
    }
    let condition = doc! {
        "status": TenantStatus::Offboarding.as_str(),
        "offboarding.purgeStartedAt": {"$exists": false},
        "$or": marks,
    };
    if registry.set_if(&job.tenant_id, condition, doc! {"offboarding.restoredInto": target.as_str()}).await? {
        return Ok(true);
    }
    Err(TenantsError::NotRestorable(Params::of(job)?.export_id, "of a tenant whose purge or restore has begun"))
}

/// Whether the exported tenant was marked as yielding to this restore ([`yields`]).
async fn yielded(db: &Db, job: &Job, target: &TenantId) -> Result<bool, TenantsError> {
    let marked = db.tenants(&SystemContext::new("restore")).field(&job.tenant_id, "offboarding.restoredInto").await?;
    Ok(marked.as_ref().and_then(Bson::as_str) == Some(target.as_str()))
}

/// The registry record of the new tenant from the exported one: its name, domain and settings
/// (the billing e-mail sealed anew), `suspended` while restoring, and nothing of the old
/// tenant's usage, keys or end.
async fn restored_tenant(db: &Db, job: &Job, target: &TenantId, mut source: Document) -> Result<Tenant, TenantsError> {
    let status = match source.get_str("status").unwrap_or("active") {
        "suspended" => TenantStatus::Suspended,
        "active" => TenantStatus::Active,
        // An export taken while offboarding comes back as what the tenant was before.
        _ => match source.get_document("offboarding").ok().and_then(|o| o.get_str("previousStatus").ok()) {
            Some("suspended") => TenantStatus::Suspended,
            _ => TenantStatus::Active,
        },
    };
    let settings = source.get_document_mut("settings").map_err(|_| invalid("the tenant has no settings"))?;
    if let Ok(billing) = settings.get_document_mut("billing") {
        if let Ok(email) = billing.get_str("billingEmail") {
            let sealed = db.keyring()?.seal(target, Field::BillingEmail, email).await.map_err(DbError::from)?;
            billing.insert("billingEmail", sealed.to_bson());
        }
    }
    let now = db.clock().now();
    let mut record = doc! {
        "_id": new_id(&job.id, source.get_object_id("_id").map_err(|_| invalid("the tenant has no _id"))?),
        "tenantId": target.as_str(),
        "name": source.get_str("name").map_err(|_| invalid("the tenant has no name"))?,
        "settings": source.get_document("settings").map_err(|_| invalid("the tenant has no settings"))?.clone(),
        "status": TenantStatus::Suspended.as_str(),
        "suspendedAt": now,
        "suspensionReason": RESTORING,
        "apiUsage": {},
        "counters": {"seats": 0_i64, "admins": 0_i64},
        "apiKeyCount": 0_i64,
        "restoredFrom": {"tenantId": job.tenant_id.as_str(), "exportId": Params::of(job)?.export_id, "restoreId": &job.id, "status": status.as_str()},
        // Until the commit: no route changes it (`shared::db::changeable`).
        "restoring": true,
        "createdAt": now,
        "updatedAt": now,
    };
    if let Ok(domain) = source.get_str("domain") {
        record.insert("domain", domain);
    }
    Ok(mongodb::bson::from_document(record).map_err(DbError::from)?)
}

/// One exported document other than a person's as the new tenant holds it.
fn restored_document(job: &Job, params: &Params, collection: TenantCollection, mut document: Document) -> Result<Document, TenantsError> {
    let map = |id: ObjectId| new_id(&job.id, id);
    let old = document.get_object_id("_id").map_err(|_| invalid(format!("a {} document has no _id", collection.name())))?;
    document.insert("_id", map(old));
    // The scope stamps the new tenant (and refuses any other), and the times of the write.
    for field in ["tenantId", "createdAt", "updatedAt"] {
        document.remove(field);
    }
    match collection {
        TenantCollection::Roles => {
            if let Ok(by) = document.get_object_id("createdBy") {
                document.insert("createdBy", map(by));
            }
        }
        TenantCollection::Users => return Err(invalid("people are restored one by one")),
        TenantCollection::AuditLogs => {
            // What an entry is about follows the restore: a restored document's new id, or the
            // new tenant. The actor's id stays the one it was (their user is new).
            if let Ok(resource) = document.get_str("resourceId") {
                let moved = match ObjectId::parse_str(resource) {
                    Ok(id) => Some(map(id).to_hex()),
                    Err(_) if resource == job.tenant_id.as_str() => Some(params.target_tenant_id.to_string()),
                    Err(_) => None,
                };
                if let Some(moved) = moved {
                    document.insert("resourceId", moved);
                }
            }
        }
        TenantCollection::UserErasures => {
            if let Some(id) = document.get_str("userId").ok().and_then(|u| ObjectId::parse_str(u).ok()) {
                document.insert("userId", map(id).to_hex());
            }
        }
        TenantCollection::ApiKeys => return Err(invalid("API keys are not restored")),
    }
    Ok(document)
}

/// A person of the export: their e-mail claimed for the new tenant, their record written with
/// its fields sealed under the new tenant's keys and its roles' new ids, then a Cognito user of
/// their own, which invites them, linked to it (an inactive person gets none until reactivated
/// and invited). An active person is `pending` until they sign in. Each write is redone as it
/// is found: a claim the tenant holds, a record already there, a user of this tenant.
async fn restore_user(
    db: &Db,
    directory: &dyn Directory,
    job: &Job,
    params: &Params,
    yielded: bool,
    source: Document,
) -> Result<(), TenantsError> {
    let target = &params.target_tenant_id;
    let keyring = db.keyring()?;
    let old = source.get_object_id("_id").map_err(|_| invalid("a user has no _id"))?;
    let id = new_id(&job.id, old);
    let email =
        Email::stored(source.get_str("email").map_err(|_| invalid("a user has no e-mail"))?.to_owned()).map_err(|e| invalid(e.0))?;
    if keyring.claim_email(target, &email).await.map_err(DbError::from)? == EmailClaim::Taken
        && !(yielded && keyring.move_email(&job.tenant_id, target, &email).await.map_err(DbError::from)?)
    {
        return Err(TenantsError::EmailTaken);
    }
    let status = match source.get_str("status").unwrap_or("pending") {
        "inactive" => "inactive",
        _ => "pending",
    };
    let mut profile = source.get_document("profile").cloned().unwrap_or_default();
    for field in [Field::UserFirstName, Field::UserLastName, Field::UserDepartment, Field::UserTitle] {
        let key = field.path().trim_start_matches("profile.");
        if let Ok(plain) = profile.get_str(key) {
            let sealed = keyring.seal(target, field, plain).await.map_err(DbError::from)?;
            profile.insert(key, sealed.to_bson());
        }
    }
    let roles: Vec<String> = source
        .get_array("roles")
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.as_str())
                .filter_map(|r| ObjectId::parse_str(r).ok())
                .map(|r| new_id(&job.id, r).to_hex())
                .collect()
        })
        .unwrap_or_default();
    let mut record = doc! {
        "_id": id,
        "cognitoUserId": format!("pending:{}", id.to_hex()),
        "email": keyring.seal(target, Field::UserEmail, email.as_str()).await.map_err(DbError::from)?.to_bson(),
        "emailHash": keyring.email_index(target, &email).await.map_err(DbError::from)?,
        "profile": profile,
        "roles": roles,
        "status": status,
    };
    if let Ok(at) = source.get_datetime("lastLoginAt") {
        record.insert("lastLoginAt", *at);
    }
    let users = db.scoped::<Document>(&scope(target), TenantCollection::Users);
    match users.insert_one(&record).await {
        Ok(_) | Err(DbError::Duplicate) => {}
        Err(e) => return Err(e.into()),
    }
    if status == "inactive" {
        return Ok(());
    }
    let sub = match directory.get_user(&email).await.map_err(directory_failed)? {
        Some(user) if user.tenant.as_deref() == Some(target.as_str()) => user.sub,
        // The ending tenant's user of the person, who is admitted nowhere any more: replaced
        // by one of the new tenant (the username is the address).
        Some(user) if yielded && user.tenant.as_deref() == Some(job.tenant_id.as_str()) => {
            match directory.delete_user(&email).await {
                Ok(()) | Err(DirectoryError::NotFound) => {}
                Err(e) => return Err(directory_failed(e)),
            }
            directory.create_user(&email, target).await.map_err(directory_failed)?
        }
        Some(_) => return Err(TenantsError::EmailTaken),
        None => directory.create_user(&email, target).await.map_err(directory_failed)?,
    };
    users.update_one(doc! {"_id": id}, doc! {"$set": {"cognitoUserId": sub}}, false).await?;
    Ok(())
}

fn directory_failed(e: DirectoryError) -> TenantsError {
    TenantsError::Directory(e)
}

/// Inserts a unit's documents; a duplicate (a unit redone after a crash) is one written before.
async fn insert_all(db: &Db, target: &TenantId, collection: TenantCollection, documents: Vec<Document>) -> Result<(), TenantsError> {
    let store = db.scoped::<Document>(&scope(target), collection);
    match store.insert_many(&documents).await {
        Ok(_) => Ok(()),
        Err(DbError::Duplicate) => {
            for document in &documents {
                match store.insert_one(document).await {
                    Ok(_) | Err(DbError::Duplicate) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The commit: the counters counted from what was loaded, and the status the export had.
async fn commit(db: &Db, params: &Params) -> Result<(), TenantsError> {
    let target = &params.target_tenant_id;
    let users = db.scoped::<Document>(&scope(target), TenantCollection::Users);
    let roles = db.scoped::<Document>(&scope(target), TenantCollection::Roles);
    let seats = users.count_documents(doc! {}).await? as i64;
    let admin_role = roles.find_one(doc! {"name": "admin", "isSystem": true}).await?.and_then(|r| r.get_object_id("_id").ok());
    let admins = match admin_role {
        Some(role) => users.count_documents(doc! {"status": {"$ne": "inactive"}, "roles": role.to_hex()}).await? as i64,
        None => 0,
    };
    let registry = db.tenants(&SystemContext::new("restore"));
    let record = registry.document(target).await?.ok_or_else(|| TenantsError::NotFound(target.clone()))?;
    let status = record.get_document("restoredFrom").ok().and_then(|r| r.get_str("status").ok()).unwrap_or("active").to_owned();
    let set = doc! {"status": &status, "counters": {"seats": seats, "admins": admins}, "restoredAt": db.clock().now()};
    let mut update = doc! {"$set": set};
    if status != TenantStatus::Suspended.as_str() {
        update.insert("$unset", doc! {"suspendedAt": "", "suspensionReason": "", "restoring": ""});
    } else {
        update.insert("$unset", doc! {"restoring": ""});
    }
    registry.update_many(doc! {"tenantId": target.as_str(), "suspensionReason": RESTORING}, update).await?;
    Ok(())
}

/// Undoes a restore that failed for good, whole and idempotently: each person's Cognito user
/// (only one of the new tenant) and e-mail claim, every document loaded, the keys, the domain
/// claim, and last the registry record. Claims taken over from the offboarding tenant it
/// restored go back to it, so that its purge releases them and a later restore of its export
/// can take them over again (its people's old Cognito users are gone: it stays uncancellable).
pub async fn discard(db: &Db, directory: &dyn Directory, job: &Job) -> Result<bool, TenantsError> {
    let params = Params::of(job)?;
    let target = &params.target_tenant_id;
    let source = &job.tenant_id;
    let yielded = yielded(db, job, target).await?;
    let scope = scope(target);
    let keyring = db.keyring()?;
    let users = db.scoped::<Document>(&scope, TenantCollection::Users);
    // A bounded batch of people per call: the caller records progress between them.
    let batch = users.find(doc! {}, shared::db::FindOptions { limit: Some(USERS_PER_UNIT as i64), ..Default::default() }).await?;
    if !batch.is_empty() {
        for user in batch {
            let sealed: shared::pii::Sealed =
                mongodb::bson::from_bson(user.get("email").cloned().unwrap_or(Bson::Null)).map_err(DbError::from)?;
            let email =
                Email::stored(keyring.open(target, Field::UserEmail, &sealed).await.map_err(DbError::from)?).map_err(|e| invalid(e.0))?;
            if let Some(found) = directory.get_user(&email).await.map_err(directory_failed)? {
                if found.tenant.as_deref() == Some(target.as_str()) {
                    match directory.delete_user(&email).await {
                        Ok(()) | Err(DirectoryError::NotFound) => {}
                        Err(e) => return Err(directory_failed(e)),
                    }
                }
            }
            if !(yielded && keyring.move_email(target, source, &email).await.map_err(DbError::from)?) {
                keyring.release_email(target, &email).await.map_err(DbError::from)?;
            }
            users.delete_one(doc! {"_id": user.get("_id").cloned().unwrap_or(Bson::Null)}).await?;
        }
        return Ok(false);
    }
    for collection in TenantCollection::ALL {
        db.scoped::<Document>(&scope, collection).delete_many(doc! {}).await?;
    }
    // A claim made just before a crash, whose record was never written.
    keyring.vault().release_emails_of(target).await.map_err(DbError::from)?;
    let registry = db.tenants(&SystemContext::new("restore"));
    if yielded {
        if let Some(domain) = registry.field(target, "domain").await?.as_ref().and_then(Bson::as_str) {
            registry.move_domain(domain, target, source).await?;
        }
    }
    registry.release_domains_of(target).await?;
    registry.delete(target).await?;
    keyring.discard_unregistered(target).await.map_err(DbError::from)?;
    Ok(true)
}
