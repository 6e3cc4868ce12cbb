//! Personal data at rest (docs/ARCHITECTURE.md §20), against real FerretDB and moto's KMS:
//! sealed storage read back through the API, ciphertexts moved between tenants or fields, KMS
//! down, the key cache's KMS calls, rotation under concurrent PATCHes, shredding proven from a
//! restored dump, and the sealing migration on a half-migrated database.

use futures_util::future::BoxFuture;
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use reqwest::Method;
use serde_json::{json, Value};
use shared::db::{Db, SystemContext};
use shared::ids::{Email, TenantId};
use shared::pii::{Field, Key, KeyWrapper, PiiError, Sealed, WrappedKey};
use shared::seam::Seam;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tenancy_tests::app::{spawn_app, TestApp};
use tenancy_tests::raw_collection;

struct Tenant {
    id: String,
    admin: String,
}

async fn tenant(app: &TestApp, admin_email: &str) -> Tenant {
    let superadmin = app.superadmin().await;
    let body = json!({"name": "Acme", "adminEmail": admin_email, "plan": "premium"});
    let id = app.create_tenant(&superadmin, body).await["tenantId"].as_str().unwrap().to_owned();
    Tenant { admin: app.member(admin_email, &id).await, id }
}

/// Invites `email` as `t`'s admin; the new user's id.
async fn invite(app: &TestApp, t: &Tenant, email: &str, first: &str, last: &str) -> String {
    let body = json!({"email": email, "firstName": first, "lastName": last});
    let (status, _, body) = app.call(app.request(Method::POST, "/users", Some(&t.admin)).json(&body)).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

async fn user_doc(app: &TestApp, id: &str) -> Document {
    raw_collection(&app.db, "users").await.find_one(doc! {"_id": ObjectId::parse_str(id).unwrap()}).await.unwrap().unwrap()
}

fn field<'a>(doc: &'a Document, path: &str) -> &'a Bson {
    let (first, rest) = path.split_once('.').map_or((path, None), |(a, b)| (a, Some(b)));
    match rest {
        None => doc.get(first).unwrap_or_else(|| panic!("no {path}")),
        Some(rest) => field(doc.get_document(first).unwrap(), rest),
    }
}

/// The data-key version a stored value names.
fn version(value: &Bson) -> Option<u32> {
    mongodb::bson::from_bson::<Sealed>(value.clone()).ok()?.key_version()
}

async fn count(db: &Db, collection: &str) -> u64 {
    raw_collection(db, collection).await.count_documents(doc! {}).await.unwrap()
}

async fn vault_count(db: &Db, collection: &str) -> u64 {
    tenancy_tests::vault_database(db).await.collection::<Document>(collection).count_documents(doc! {}).await.unwrap()
}

#[tokio::test]
async fn personal_data_is_stored_sealed_and_read_back_in_the_clear_through_the_api() {
    let app = spawn_app().await;
    let t = tenant(&app, "boss@sealed.example").await;
    let id = invite(&app, &t, "Grace.Hopper@Sealed.example", "Grace", "Hopper").await;
    let path = format!("/users/{id}");
    let (status, _, body) =
        app.call(app.request(Method::PATCH, &path, Some(&t.admin)).json(&json!({"department": "Navy", "title": "Rear Admiral"}))).await;
    assert_eq!(status, 200, "{body}");

    let stored = user_doc(&app, &id).await;
    for path in ["email", "profile.firstName", "profile.lastName", "profile.department", "profile.title"] {
        assert!(matches!(field(&stored, path), Bson::Binary(_)), "{path} is sealed: {stored:?}");
        assert_eq!(version(field(&stored, path)), Some(1), "{path} names key version 1");
    }
    assert!(stored.get_str("emailHash").is_ok(), "the blind index is stored");
    let text = format!("{stored:?}");
    for plain in ["grace", "Grace", "Hopper", "Navy", "Admiral", "sealed.example"] {
        assert!(!text.contains(plain), "{plain} appears in the stored record");
    }
    let tenant = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": &t.id}).await.unwrap().unwrap();
    assert!(matches!(field(&tenant, "settings.billing.billingEmail"), Bson::Binary(_)), "the billing e-mail is sealed");

    let (status, _, body) = app.call(app.request(Method::GET, &path, Some(&t.admin))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["email"], "grace.hopper@sealed.example");
    assert_eq!(body["data"]["profile"], json!({"firstName": "Grace", "lastName": "Hopper", "department": "Navy", "title": "Rear Admiral"}));
    let (_, _, found) = app.call(app.request(Method::GET, "/users?email=GRACE.hopper@sealed.example", Some(&t.admin))).await;
    assert_eq!(found["data"]["users"].as_array().unwrap().len(), 1, "the e-mail filter goes through the blind index: {found}");
    assert_eq!(found["data"]["users"][0]["id"], id.as_str());
    let (_, _, own) = app.call(app.request(Method::GET, &format!("/tenants/{}", t.id), Some(&t.admin))).await;
    assert_eq!(own["data"]["settings"]["billing"]["billingEmail"], "boss@sealed.example");

    // The vault holds wrapped keys only, under the tenant's id, and the two e-mails' global entries.
    let keys = tenancy_tests::tenant_keys(&app.db, &t.id).await;
    assert_eq!(keys.get_i64("currentVersion").unwrap(), 1);
    assert_eq!(keys.get_array("dataKeys").unwrap().len(), 1);
    assert_eq!(vault_count(&app.db, "emailIndex").await, 2);
    // A second invitation of the same address is refused before anything is written.
    let body = json!({"email": "grace.hopper@sealed.example", "firstName": "G", "lastName": "H"});
    let (status, _, _) = app.call(app.request(Method::POST, "/users", Some(&t.admin)).json(&body)).await;
    assert_eq!(status, 409);
    assert_eq!(count(&app.db, "users").await, 2);
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_tenant_or_field_fails_and_is_never_shown() {
    let app = spawn_app().await;
    let (a, b) = (tenant(&app, "a@moved.example").await, tenant(&app, "b@moved.example").await);
    let from_a = invite(&app, &a, "alice@moved.example", "Alice", "Able").await;
    let in_b = invite(&app, &b, "bob@moved.example", "Bob", "Baker").await;
    let users = raw_collection(&app.db, "users").await;
    let a_email = field(&user_doc(&app, &from_a).await, "email").clone();
    users.update_one(doc! {"_id": ObjectId::parse_str(&in_b).unwrap()}, doc! {"$set": {"email": a_email}}).await.unwrap();
    let (status, _, body) = app.call(app.request(Method::GET, &format!("/users/{in_b}"), Some(&b.admin))).await;
    assert_eq!(status, 500, "another tenant's ciphertext does not open: {body}");
    assert!(!body.to_string().contains("alice"), "{body}");

    // Within one record: the first name's ciphertext in the last name's place.
    let own = user_doc(&app, &from_a).await;
    let (first, last) = (field(&own, "profile.firstName").clone(), field(&own, "profile.lastName").clone());
    users
        .update_one(
            doc! {"_id": ObjectId::parse_str(&from_a).unwrap()},
            doc! {"$set": {"profile.firstName": last, "profile.lastName": first}},
        )
        .await
        .unwrap();
    let (status, _, body) = app.call(app.request(Method::GET, &format!("/users/{from_a}"), Some(&a.admin))).await;
    assert_eq!(status, 500, "a ciphertext of another field does not open: {body}");
    assert_eq!(body["message"], "An unexpected error occurred");
}

/// A port on loopback where nothing listens.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

async fn kms_down(db: &Db) -> Db {
    let down = Arc::new(shared::pii::AwsKms::with_client(tenancy_tests::kms_client(&closed_port()), tenancy_tests::kms_key_id().await));
    db.clone().with_keyring(tenancy_tests::keyring_with(db, down).await)
}

#[tokio::test]
async fn with_kms_down_a_call_that_needs_an_uncached_key_is_a_503_and_writes_nothing() {
    let app = spawn_app().await;
    let t = tenant(&app, "admin@kmsdown.example").await;
    let before = (count(&app.db, "users").await, count(&app.db, "tenants").await, count(&app.db, "roles").await);
    let vault_before = (vault_count(&app.db, "tenantKeys").await, vault_count(&app.db, "emailIndex").await);
    // Another execution environment, cold: it holds no key, and KMS does not answer.
    let cold = app.beside(kms_down(&app.db).await).await;
    let superadmin = cold.superadmin().await;
    let body = json!({"name": "Nope", "adminEmail": "admin@nope.example", "domain": "nope.example"});
    let (status, _, body) = cold.call(cold.request(Method::POST, "/tenants", Some(&superadmin)).json(&body)).await;
    assert_eq!(status, 503, "{body}");
    let body = json!({"email": "new@kmsdown.example", "firstName": "N", "lastName": "W"});
    let (status, _, body) = cold.call(cold.request(Method::POST, "/users", Some(&t.admin)).json(&body)).await;
    assert_eq!(status, 503, "{body}");
    let (status, _, _) = cold.call(cold.request(Method::GET, "/users", Some(&t.admin))).await;
    assert_eq!(status, 503, "a read that must open a value needs its key too");
    assert_eq!((count(&app.db, "users").await, count(&app.db, "tenants").await, count(&app.db, "roles").await), before, "nothing written");
    assert_eq!((vault_count(&app.db, "tenantKeys").await, vault_count(&app.db, "emailIndex").await), vault_before, "nothing claimed");
    assert_eq!(count(&app.db, "tenantDomains").await, 0, "no domain claimed");
    // The warm environment, which holds the keys, is unaffected.
    let (status, _, _) = app.call(app.request(Method::GET, "/users", Some(&t.admin))).await;
    assert_eq!(status, 200);
}

/// KMS, counted.
#[derive(Debug)]
struct CountingKms {
    inner: Arc<shared::pii::AwsKms>,
    generated: AtomicU64,
    decrypted: AtomicU64,
}

impl KeyWrapper for CountingKms {
    fn generate<'a>(&'a self, context: &'a [(&'a str, &'a str)]) -> BoxFuture<'a, Result<WrappedKey, PiiError>> {
        self.generated.fetch_add(1, Ordering::SeqCst);
        self.inner.generate(context)
    }
    fn unwrap_key<'a>(&'a self, wrapped: &'a [u8], context: &'a [(&'a str, &'a str)]) -> BoxFuture<'a, Result<Key, PiiError>> {
        self.decrypted.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap_key(wrapped, context)
    }
}

#[tokio::test]
async fn a_warm_read_calls_kms_never_and_a_cold_one_at_most_once_per_wrapped_key() {
    let db = tenancy_tests::fresh_db().await;
    let counting = || async {
        Arc::new(CountingKms { inner: tenancy_tests::moto_kms().await, generated: AtomicU64::new(0), decrypted: AtomicU64::new(0) })
    };
    let (first_kms, tenant, email) = (counting().await, TenantId::generate(), Email::parse("count@kms.example").unwrap());
    let first = shared::pii::Keyring::new(
        first_kms.clone(),
        shared::pii::KeyVault::new(tenancy_tests::vault_database(&db).await),
        db.clock().clone(),
    );
    first.create_tenant_keys(&tenant).await.unwrap();
    let sealed = first.seal(&tenant, Field::UserEmail, email.as_str()).await.unwrap();
    assert_eq!(first.open(&tenant, Field::UserEmail, &sealed).await.unwrap(), "count@kms.example");
    first.email_index(&tenant, &email).await.unwrap();
    assert_eq!(
        (first_kms.generated.load(Ordering::SeqCst), first_kms.decrypted.load(Ordering::SeqCst)),
        (2, 0),
        "the keys it made stay in memory"
    );

    // A cold process: ten concurrent reads unwrap each key once.
    let clock = shared::clock::ManualClock::starting_now();
    let cold_kms = counting().await;
    let cold =
        shared::pii::Keyring::new(cold_kms.clone(), shared::pii::KeyVault::new(tenancy_tests::vault_database(&db).await), clock.clone());
    let reads = (0..10).map(|_| async {
        (cold.open(&tenant, Field::UserEmail, &sealed).await.unwrap(), cold.email_index(&tenant, &email).await.unwrap())
    });
    let results = futures_util::future::join_all(reads).await;
    assert!(results.iter().all(|(plain, _)| plain == "count@kms.example"));
    assert_eq!(cold_kms.decrypted.load(Ordering::SeqCst), 2, "one Decrypt for the data key, one for the index key");
    cold.open(&tenant, Field::UserEmail, &sealed).await.unwrap();
    assert_eq!(cold_kms.decrypted.load(Ordering::SeqCst), 2, "a warm read calls KMS never");
    clock.advance(shared::pii::KEY_CACHE_TTL + std::time::Duration::from_secs(1));
    cold.open(&tenant, Field::UserEmail, &sealed).await.unwrap();
    assert_eq!(cold_kms.decrypted.load(Ordering::SeqCst), 3, "a plaintext key lives at most the cache's bound");
}

/// At the first record's read, before its rewrite: edits every user's first name through the
/// API, and reads them all back while the rotation is half done.
#[derive(Debug)]
struct EditDuringRotation {
    http: reqwest::Client,
    address: String,
    admin: String,
    users: Vec<String>,
    done: AtomicBool,
    read_ok: AtomicBool,
}

impl Seam for EditDuringRotation {
    fn reached<'a>(&'a self, point: &'static str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if point != "personal.rewrite.read" || self.done.swap(true, Ordering::SeqCst) {
                return;
            }
            // The admin's own record is the one being rewritten (the first in `_id` order):
            // its write, pinned to the values read, must miss and read again.
            let response = self
                .http
                .patch(format!("{}/users/me", self.address))
                .bearer_auth(&self.admin)
                .json(&json!({"firstName": "EditedAdmin"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            for (i, id) in self.users.iter().enumerate() {
                let response = self
                    .http
                    .patch(format!("{}/users/{id}", self.address))
                    .bearer_auth(&self.admin)
                    .json(&json!({"firstName": format!("Edited{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
            let list: Value =
                self.http.get(format!("{}/users", self.address)).bearer_auth(&self.admin).send().await.unwrap().json().await.unwrap();
            self.read_ok.store(list["data"]["users"].as_array().is_some_and(|u| u.len() == self.users.len() + 1), Ordering::SeqCst);
        })
    }
}

#[tokio::test]
async fn rotation_re_encrypts_everything_while_reads_and_patches_go_on_and_undoes_no_edit() {
    let app = spawn_app().await;
    let t = tenant(&app, "admin@rotate.example").await;
    let mut users = Vec::new();
    for i in 0..3 {
        users.push(invite(&app, &t, &format!("u{i}@rotate.example"), "Before", "Rotation").await);
    }
    let seam = EditDuringRotation {
        http: reqwest::Client::new(),
        address: app.address.clone(),
        admin: t.admin.clone(),
        users: users.clone(),
        done: AtomicBool::new(false),
        read_ok: AtomicBool::new(false),
    };
    let tenant_id = TenantId::parse(&t.id).unwrap();
    let report = migrations::jobs::rotate_key::rotate(&app.db, &SystemContext::new("test"), &tenant_id, false, &seam).await.unwrap();
    assert!(seam.done.load(Ordering::SeqCst), "the edits ran between a read and its write");
    assert!(seam.read_ok.load(Ordering::SeqCst), "reads worked with old and new versions mixed");
    assert_eq!(report.version, 2);
    assert_eq!(report.records_reencrypted, 5, "four user records and the billing e-mail");
    for (i, id) in users.iter().enumerate() {
        let stored = user_doc(&app, id).await;
        for path in ["email", "profile.firstName", "profile.lastName"] {
            assert_eq!(version(field(&stored, path)), Some(2), "{path} of {id} under the new key");
        }
        let (_, _, body) = app.call(app.request(Method::GET, &format!("/users/{id}"), Some(&t.admin))).await;
        assert_eq!(body["data"]["profile"]["firstName"], format!("Edited{i}"), "the concurrent edit was not undone");
        assert_eq!(body["data"]["profile"]["lastName"], "Rotation");
    }
    let (_, _, me) = app.call(app.request(Method::GET, "/users/me", Some(&t.admin))).await;
    assert_eq!(me["data"]["profile"]["firstName"], "EditedAdmin", "the edit that raced the admin's own rewrite stands");
    let admin = tenancy_tests::user_by_email(&app.db, "admin@rotate.example").await.unwrap();
    assert_eq!(version(field(&admin, "email")), Some(2), "and the rewrite still happened, after reading again");
    let tenant = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": &t.id}).await.unwrap().unwrap();
    assert_eq!(version(field(&tenant, "settings.billing.billingEmail")), Some(2));
    let keys = tenancy_tests::tenant_keys(&app.db, &t.id).await;
    assert_eq!(keys.get_array("dataKeys").unwrap().len(), 2, "the old version stays for older backups");
    // A resumed rotation finds nothing left to do.
    let again =
        migrations::jobs::rotate_key::rotate(&app.db, &SystemContext::new("test"), &tenant_id, true, &shared::seam::NoSeam).await.unwrap();
    assert_eq!((again.version, again.records_reencrypted), (2, 0));
}

#[tokio::test]
async fn after_shred_nothing_of_the_tenant_decrypts_even_from_a_restored_dump() {
    let app = spawn_app().await;
    let (gone, kept) = (tenant(&app, "admin@gone.example").await, tenant(&app, "admin@kept.example").await);
    invite(&app, &gone, "victim@gone.example", "Gone", "Girl").await;
    invite(&app, &kept, "stays@kept.example", "Kept", "Safe").await;
    // The dump: every document of the data database, as a backup holds it.
    let mut dump: Vec<(String, Document)> = Vec::new();
    for collection in ["users", "tenants", "auditLogs"] {
        use futures_util::TryStreamExt;
        let docs: Vec<Document> = raw_collection(&app.db, collection).await.find(doc! {}).await.unwrap().try_collect().await.unwrap();
        dump.extend(docs.into_iter().map(|d| (collection.to_owned(), d)));
    }

    let event = json!({"action": "shred", "tenantId": &gone.id});
    let report = migrations::handle_event(&app.db, app.deps.directory.as_ref(), event).await.unwrap();
    assert_eq!(report, json!({"action": "shred", "tenantId": &gone.id, "shredded": true}));
    let (status, _, _) = app.call(app.request(Method::GET, "/users", Some(&gone.admin))).await;
    assert_eq!(status, 403, "no member is admitted to a shredded tenant (shredded.rs)");

    // The restore: the dump into a fresh database; the vault is another cluster, never restored.
    let restored = tenancy_tests::fresh_db().await;
    for (collection, doc) in &dump {
        raw_collection(&restored, collection).await.insert_one(doc).await.unwrap();
    }
    let keyring = tenancy_tests::keyring_with(&app.db, tenancy_tests::moto_kms().await).await;
    let (mut opened, mut refused) = (0, 0);
    for (collection, doc) in dump.iter().filter(|(c, _)| c == "users" || c == "tenants") {
        let tenant = TenantId::parse(doc.get_str("tenantId").unwrap()).unwrap();
        let (field_of, value) = match collection.as_str() {
            "users" => (Field::UserEmail, field(doc, "email").clone()),
            _ => (Field::BillingEmail, field(doc, "settings.billing.billingEmail").clone()),
        };
        let sealed: Sealed = mongodb::bson::from_bson(value).unwrap();
        match keyring.open(&tenant, field_of, &sealed).await {
            Ok(_) => {
                assert_eq!(tenant.as_str(), kept.id, "only the kept tenant's values open");
                opened += 1;
            }
            Err(e) => {
                assert_eq!(tenant.as_str(), gone.id, "{e}");
                assert_eq!(e, PiiError::Shredded(tenant.clone()));
                refused += 1;
            }
        }
    }
    assert_eq!((opened, refused), (3, 3), "two users and a billing e-mail each");
    let held: Vec<Document> = {
        use futures_util::TryStreamExt;
        let emails = tenancy_tests::vault_database(&app.db).await.collection::<Document>("emailIndex");
        emails.find(doc! {}).await.unwrap().try_collect().await.unwrap()
    };
    assert_eq!(held.len(), 2, "only the kept tenant's e-mails remain in the global index");
    assert!(held.iter().all(|e| e.get_str("tenantId").unwrap() == kept.id));
    // The tombstone stops the tenant from ever getting keys again.
    let again = app.db.keyring().unwrap().create_tenant_keys(&TenantId::parse(&gone.id).unwrap()).await;
    assert_eq!(again, Err(PiiError::Shredded(TenantId::parse(&gone.id).unwrap())));
}

#[tokio::test]
async fn the_api_works_on_a_half_migrated_database_and_the_migration_seals_the_rest() {
    let app = spawn_app().await;
    let (t, other) = (tenant(&app, "admin@half.example").await, tenant(&app, "shared@other.example").await);
    let viewer = raw_collection(&app.db, "roles")
        .await
        .find_one(doc! {"tenantId": &t.id, "name": "viewer"})
        .await
        .unwrap()
        .unwrap()
        .get_object_id("_id")
        .unwrap();
    // Records as stored before encryption: plaintext, no blind index.
    let legacy = |email: &str, sub: &str| {
        let id = ObjectId::new();
        let now = mongodb::bson::DateTime::now();
        (
            id,
            doc! {"_id": id, "tenantId": &t.id, "cognitoUserId": sub, "email": email, "profile": {"firstName": "Old", "lastName": "Timer", "title": "Elder"},
            "roles": [viewer.to_hex()], "status": "active", "createdAt": now, "updatedAt": now},
        )
    };
    let sub = local_api::cognito::ensure_user(&app.cognito, &app.pool, "old@half.example", tenancy_tests::app::PASSWORD, Some(&t.id), &[])
        .await
        .unwrap();
    let (old_id, old) = legacy("old@half.example", &sub);
    let (shared_id, shared) = legacy("shared@other.example", "not-a-real-sub");
    let users = raw_collection(&app.db, "users").await;
    users.insert_many([old, shared]).await.unwrap();
    raw_collection(&app.db, "tenants")
        .await
        .update_one(
            doc! {"tenantId": &t.id},
            doc! {"$set": {"settings.billing.billingEmail": "billing@half.example"}, "$inc": {"counters.seats": 2_i64}},
        )
        .await
        .unwrap();
    let now = mongodb::bson::DateTime::now();
    raw_collection(&app.db, "auditLogs").await.insert_one(doc! {"tenantId": &t.id, "action": "tenant.created", "resource": "tenant", "details": {"adminEmail": "admin@half.example"},
        "ip": "127.0.0.1", "userAgent": "old", "requestId": "old", "timestamp": now, "expireAt": now, "createdAt": now, "updatedAt": now}).await.unwrap();

    // Half migrated: old plaintext reads as old data; e-mail lookups fall back to the plaintext field.
    let token = app.member("old@half.example", &t.id).await;
    let (status, _, me) = app.call(app.request(Method::GET, "/users/me", Some(&token))).await;
    assert_eq!(
        (status, me["data"]["email"].as_str(), me["data"]["profile"]["title"].as_str()),
        (200, Some("old@half.example"), Some("Elder")),
        "{me}"
    );
    let (_, _, found) = app.call(app.request(Method::GET, "/users?email=old@half.example", Some(&t.admin))).await;
    assert_eq!(found["data"]["users"][0]["id"], old_id.to_hex(), "{found}");
    let (_, _, own) = app.call(app.request(Method::GET, &format!("/tenants/{}", t.id), Some(&t.admin))).await;
    assert_eq!(own["data"]["settings"]["billing"]["billingEmail"], "billing@half.example");
    let migrations::Report::Status { personal_data, .. } =
        migrations::run(&app.db, app.deps.directory.as_ref(), migrations::Action::Status).await.unwrap()
    else {
        panic!()
    };
    assert_eq!((personal_data.remaining.users, personal_data.remaining.tenants, personal_data.remaining.audit_entries), (2, 1, 1));

    let report = migrations::steps::seal_personal_data::seal(&app.db, &SystemContext::new("test")).await.unwrap();
    assert_eq!(report.records_sealed, 3, "two user records and a billing e-mail");
    assert_eq!(report.audit_entries_rewritten, 1);
    assert_eq!(
        report.shared_emails,
        vec![migrations::steps::seal_personal_data::SharedEmail { tenant_id: t.id.clone(), user_id: shared_id.to_hex() }],
        "reported, not failed on"
    );
    let _ = other;
    for id in [old_id, shared_id] {
        let stored = users.find_one(doc! {"_id": id}).await.unwrap().unwrap();
        for path in ["email", "profile.firstName", "profile.lastName", "profile.title"] {
            assert_eq!(version(field(&stored, path)), Some(1), "{path} sealed");
        }
        assert!(stored.get_str("emailHash").is_ok());
    }
    let entry = raw_collection(&app.db, "auditLogs").await.find_one(doc! {"requestId": "old"}).await.unwrap().unwrap();
    let details = entry.get_document("details").unwrap();
    assert!(!details.contains_key("adminEmail") && details.get_str("adminEmailHash").is_ok(), "{details:?}");
    let names: Vec<String> = app
        .db
        .indexes(&SystemContext::new("test"))
        .list("users")
        .await
        .unwrap()
        .iter()
        .filter_map(|m| m.options.as_ref()?.name.clone())
        .collect();
    assert!(names.contains(&"tenantId_1_emailHash_1".to_owned()), "{names:?}");
    assert!(!names.contains(&"tenantId_1_email_1".to_owned()), "{names:?}");
    // The same reads, now from sealed values; then `up` records the migration, finding nothing left.
    let (_, _, me) = app.call(app.request(Method::GET, "/users/me", Some(&token))).await;
    assert_eq!(me["data"]["email"], "old@half.example");
    let (_, _, own) = app.call(app.request(Method::GET, &format!("/tenants/{}", t.id), Some(&t.admin))).await;
    assert_eq!(own["data"]["settings"]["billing"]["billingEmail"], "billing@half.example");
    migrations::run(&app.db, app.deps.directory.as_ref(), migrations::Action::Up).await.unwrap();
    let migrations::Report::Status { personal_data, .. } =
        migrations::run(&app.db, app.deps.directory.as_ref(), migrations::Action::Status).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(personal_data.remaining_total, 0);
    let again = migrations::steps::seal_personal_data::seal(&app.db, &SystemContext::new("test")).await.unwrap();
    assert_eq!((again.records_sealed, again.audit_entries_rewritten), (0, 0), "idempotent");
}
