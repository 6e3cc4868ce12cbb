//! A tenant whose personal data is unavailable (docs/ARCHITECTURE.md §20): after `shred`, the
//! operators' views still answer, list pages open no personal data at all, a value that fails
//! authentication shows as `corrupt`, no member or key is admitted to a shredded tenant, its
//! status and billing are frozen, and shredding an unknown id writes nothing.

use futures_util::future::BoxFuture;
use mongodb::bson::{doc, Bson, Document};
use mongodb::event::command::CommandEvent;
use reqwest::Method;
use serde_json::{json, Value};
use shared::db::Db;
use shared::ids::TenantId;
use shared::pii::{Key, KeyWrapper, PiiError, WrappedKey};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tenancy_tests::app::{spawn_app, TestApp};
use tenancy_tests::raw_collection;

/// A tenant made through the API, with its admin's token.
struct Made {
    id: String,
    admin: String,
}

async fn tenant(app: &TestApp, name: &str, admin_email: &str) -> Made {
    let superadmin = app.superadmin().await;
    let body = json!({"name": name, "adminEmail": admin_email, "plan": "premium"});
    let id = app.create_tenant(&superadmin, body).await["tenantId"].as_str().unwrap().to_owned();
    Made { admin: app.member(admin_email, &id).await, id }
}

/// Runs the `shred` action as the local route and the Lambda run it.
async fn shred(app: &TestApp, id: &str) -> Result<Value, migrations::MigrationError> {
    migrations::handle_event(&app.db, app.deps.directory.as_ref(), json!({"action": "shred", "tenantId": id})).await
}

async fn record(app: &TestApp, id: &str) -> Document {
    raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": id}).await.unwrap().unwrap()
}

async fn vault_count(db: &Db, collection: &str) -> u64 {
    tenancy_tests::vault_database(db).await.collection::<Document>(collection).count_documents(doc! {}).await.unwrap()
}

/// The tenant `id` in a list page's `tenants`.
fn listed<'a>(page: &'a Value, id: &str) -> &'a Value {
    page["data"]["tenants"].as_array().unwrap().iter().find(|t| t["tenantId"] == id).unwrap_or_else(|| panic!("{id} is not listed: {page}"))
}

#[tokio::test]
async fn after_shred_a_list_page_and_a_search_answer_200_listing_the_tenant_with_no_personal_field() {
    let app = spawn_app().await;
    let (gone, kept) = (tenant(&app, "Shredco", "admin@shredco.example").await, tenant(&app, "Keptco", "admin@keptco.example").await);
    shred(&app, &gone.id).await.unwrap();
    let ops = app.superadmin().await;

    let (status, _, page) = app.call(app.request(Method::GET, "/tenants?limit=100", Some(&ops))).await;
    assert_eq!(status, 200, "{page}");
    let shredded = listed(&page, &gone.id);
    assert!(shredded["keysShreddedAt"].is_string(), "the marker is shown: {shredded}");
    let billing = shredded["settings"]["billing"].as_object().unwrap();
    assert!(
        !billing.contains_key("billingEmail") && !billing.contains_key("billingEmailUnavailable"),
        "a list opens no personal data: {shredded}"
    );
    assert_eq!(billing["plan"], "premium");
    let other = listed(&page, &kept.id);
    assert!(other.get("keysShreddedAt").is_none(), "{other}");
    assert!(other["settings"]["billing"].get("billingEmail").is_none(), "not even a readable one: {other}");
    assert!(!page.to_string().contains("@"), "no e-mail on a list page: {page}");

    let (status, _, found) = app.call(app.request(Method::GET, "/tenants?search=shredco", Some(&ops))).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["data"]["tenants"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["data"]["tenants"][0]["tenantId"], gone.id.as_str());
}

#[tokio::test]
async fn after_shred_the_detail_view_answers_200_with_the_billing_email_unavailable_as_shredded() {
    let app = spawn_app().await;
    let (gone, kept) =
        (tenant(&app, "Detailgone", "admin@detailgone.example").await, tenant(&app, "Detailkept", "admin@detailkept.example").await);
    shred(&app, &gone.id).await.unwrap();
    let ops = app.superadmin().await;

    let (status, _, body) = app.call(app.request(Method::GET, &format!("/tenants/{}", gone.id), Some(&ops))).await;
    assert_eq!(status, 200, "a superadmin still reads a shredded tenant: {body}");
    let billing = &body["data"]["settings"]["billing"];
    assert_eq!(billing["billingEmail"], Value::Null, "{body}");
    assert_eq!(billing["billingEmailUnavailable"], "shredded", "{body}");
    assert!(body["data"]["keysShreddedAt"].is_string(), "{body}");
    assert!(record(&app, &gone.id).await.get_datetime("keysShreddedAt").is_ok(), "the marker is on the registry record");

    // A tenant whose keys went without the marker (shredded before it existed) reads the same.
    app.db.keyring().unwrap().shred(&TenantId::parse(&kept.id).unwrap()).await.unwrap();
    let (status, _, body) = app.call(app.request(Method::GET, &format!("/tenants/{}", kept.id), Some(&ops))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["settings"]["billing"]["billingEmail"], Value::Null, "{body}");
    assert_eq!(body["data"]["settings"]["billing"]["billingEmailUnavailable"], "shredded", "{body}");
}

#[tokio::test]
async fn a_billing_email_that_fails_authentication_is_shown_as_corrupt_never_as_garbage() {
    let app = spawn_app().await;
    let t = tenant(&app, "Corruptco", "admin@corruptco.example").await;
    let stored = record(&app, &t.id).await;
    let Some(Bson::Binary(mut sealed)) =
        stored.get_document("settings").unwrap().get_document("billing").unwrap().get("billingEmail").cloned()
    else {
        panic!("the billing e-mail is sealed: {stored:?}")
    };
    let last = sealed.bytes.len() - 1;
    sealed.bytes[last] ^= 0x01;
    let tenants = raw_collection(&app.db, "tenants").await;
    tenants.update_one(doc! {"tenantId": &t.id}, doc! {"$set": {"settings.billing.billingEmail": Bson::Binary(sealed)}}).await.unwrap();

    for token in [app.superadmin().await, t.admin.clone()] {
        let (status, _, body) = app.call(app.request(Method::GET, &format!("/tenants/{}", t.id), Some(&token))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["settings"]["billing"]["billingEmail"], Value::Null, "{body}");
        assert_eq!(body["data"]["settings"]["billing"]["billingEmailUnavailable"], "corrupt", "{body}");
        assert!(body["data"].get("keysShreddedAt").is_none(), "{body}");
    }
}

#[tokio::test]
async fn no_member_and_no_key_of_a_shredded_tenant_is_admitted_and_nothing_is_counted() {
    let app = spawn_app().await;
    let t = tenant(&app, "Lockedco", "admin@lockedco.example").await;
    let (status, _, issued) =
        app.call(app.request(Method::POST, "/api-keys", Some(&t.admin)).json(&json!({"name": "CI", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 201, "{issued}");
    let key = issued["data"]["key"].as_str().unwrap().to_owned();
    let limits = format!("/tenants/{}/limits", t.id);
    assert_eq!(app.call(app.request(Method::GET, &limits, Some(&t.admin))).await.0, 200, "admitted before the shred");
    assert_eq!(app.call(app.key_request(Method::GET, &limits, &key)).await.0, 200, "the key too");

    shred(&app, &t.id).await.unwrap();
    let used = app.usage(&t.id).await;
    let (status, _, body) = app.call(app.request(Method::GET, &limits, Some(&t.admin))).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("shredded"), "{body}");
    let (status, _, body) = app.call(app.key_request(Method::GET, &limits, &key)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(app.call(app.request(Method::GET, "/users", Some(&t.admin))).await.0, 403);
    assert_eq!(app.usage(&t.id).await, used, "a refused call is not counted");
}

#[tokio::test]
async fn reactivation_suspension_and_billing_changes_of_a_shredded_tenant_are_a_409_and_change_nothing() {
    let app = spawn_app().await;
    let t = tenant(&app, "Frozenco", "admin@frozenco.example").await;
    let ops = app.superadmin().await;
    let suspend = format!("/tenants/{}/suspend", t.id);
    assert_eq!(app.call(app.request(Method::POST, &suspend, Some(&ops)).json(&json!({"reason": "offboarding"}))).await.0, 200);
    shred(&app, &t.id).await.unwrap();
    let before = record(&app, &t.id).await;

    let calls = [
        (Method::POST, format!("/tenants/{}/reactivate", t.id), None),
        (Method::POST, suspend.clone(), Some(json!({"reason": "again"}))),
        (Method::PATCH, format!("/tenants/{}/settings/billing", t.id), Some(json!({"plan": "enterprise"}))),
        (Method::PATCH, format!("/tenants/{}/settings/billing", t.id), Some(json!({"billingEmail": "new@frozenco.example"}))),
    ];
    for (method, path, body) in calls {
        let mut request = app.request(method.clone(), &path, Some(&ops));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let (status, _, reply) = app.call(request).await;
        assert_eq!(status, 409, "{method} {path}: {reply}");
        assert!(reply["message"].as_str().unwrap().contains("shredded"), "{reply}");
    }
    assert_eq!(record(&app, &t.id).await, before, "nothing changed");
}

#[tokio::test]
async fn shredding_an_unknown_tenant_id_fails_naming_it_and_writes_nothing() {
    let app = spawn_app().await;
    let known = tenant(&app, "Knownco", "admin@knownco.example").await;
    let unknown = TenantId::generate();
    let vault_before =
        (vault_count(&app.db, "tombstones").await, vault_count(&app.db, "tenantKeys").await, vault_count(&app.db, "emailIndex").await);
    let registry_before = record(&app, &known.id).await;

    let error = shred(&app, unknown.as_str()).await.unwrap_err();
    assert!(matches!(&error, migrations::MigrationError::UnknownTenant(id) if *id == unknown), "{error:?}");
    assert!(error.to_string().contains(unknown.as_str()), "the error names the id: {error}");
    assert!(!error.is_retryable());
    let after =
        (vault_count(&app.db, "tombstones").await, vault_count(&app.db, "tenantKeys").await, vault_count(&app.db, "emailIndex").await);
    assert_eq!(after, vault_before, "no tombstone, no key or e-mail removed");
    assert_eq!(
        raw_collection(&app.db, "tenants").await.count_documents(doc! {"keysShreddedAt": {"$exists": true}}).await.unwrap(),
        0,
        "no marker"
    );
    assert_eq!(record(&app, &known.id).await, registry_before);
    // The id is still free: no tombstone stops it from getting keys.
    app.db.keyring().unwrap().create_tenant_keys(&unknown).await.unwrap();
}

/// KMS, counted: every `Decrypt` of a wrapped key.
#[derive(Debug)]
struct CountingKms {
    inner: Arc<shared::pii::AwsKms>,
    decrypted: AtomicU64,
}

impl KeyWrapper for CountingKms {
    fn generate<'a>(&'a self, context: &'a [(&'a str, &'a str)]) -> BoxFuture<'a, Result<WrappedKey, PiiError>> {
        self.inner.generate(context)
    }
    fn unwrap_key<'a>(&'a self, wrapped: &'a [u8], context: &'a [(&'a str, &'a str)]) -> BoxFuture<'a, Result<Key, PiiError>> {
        self.decrypted.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap_key(wrapped, context)
    }
}

/// `db`'s vault through a client that counts the commands it sends there (not the driver's
/// handshakes).
async fn counting_vault(db: &Db) -> (mongodb::Database, Arc<AtomicU64>) {
    let name = tenancy_tests::vault_name(db);
    let mut options = mongodb::options::ClientOptions::parse(tenancy_tests::mongodb_uri()).await.unwrap();
    let (counter, vault) = (Arc::new(AtomicU64::new(0)), name.clone());
    let seen = counter.clone();
    options.command_event_handler = Some(mongodb::event::EventHandler::callback(move |event: CommandEvent| {
        if let CommandEvent::Started(started) = event {
            let handshake = matches!(started.command_name.as_str(), "hello" | "isMaster" | "ismaster" | "saslStart" | "saslContinue");
            if started.db == vault && !handshake {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    }));
    (mongodb::Client::with_options(options).unwrap().database(&name), counter)
}

#[tokio::test]
async fn a_list_page_of_many_tenants_makes_no_kms_call_and_no_vault_read() {
    const N: usize = 4;
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(tenant(&app, &format!("Pageco {i}"), &format!("admin{i}@pageco.example")).await.id);
    }
    // Another execution environment, cold: it holds no key, so anything it opens costs a vault
    // read and a KMS Decrypt, both counted.
    let kms = Arc::new(CountingKms { inner: tenancy_tests::moto_kms().await, decrypted: AtomicU64::new(0) });
    let (vault, vault_commands) = counting_vault(&app.db).await;
    let keyring = Arc::new(shared::pii::Keyring::new(kms.clone(), shared::pii::KeyVault::new(vault), app.db.clock().clone()));
    let cold = app.beside(app.db.clone().with_keyring(keyring)).await;
    let ops = cold.superadmin().await;

    let (status, _, page) = cold.call(cold.request(Method::GET, "/tenants?limit=100", Some(&ops))).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"]["tenants"].as_array().unwrap().len(), N, "{page}");
    assert_eq!((kms.decrypted.load(Ordering::SeqCst), vault_commands.load(Ordering::SeqCst)), (0, 0), "a list page opens no key");
    let (status, _, _) = cold.call(cold.request(Method::GET, "/tenants?search=pageco", Some(&ops))).await;
    assert_eq!(status, 200);
    assert_eq!((kms.decrypted.load(Ordering::SeqCst), vault_commands.load(Ordering::SeqCst)), (0, 0), "nor does a search");

    // The measure sees what a detail view opens: its key set read once, its data key unwrapped once.
    let (status, _, one) = cold.call(cold.request(Method::GET, &format!("/tenants/{}", ids[0]), Some(&ops))).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["data"]["settings"]["billing"]["billingEmail"], "admin0@pageco.example");
    assert_eq!(kms.decrypted.load(Ordering::SeqCst), 1);
    assert!(vault_commands.load(Ordering::SeqCst) >= 1);
}
