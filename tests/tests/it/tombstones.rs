//! Backups that cannot resurrect what was shredded (docs/ARCHITECTURE.md §22,
//! docs/operations/backups.md): a tenant with data is dumped raw from both databases, offboarded
//! and purged; the old dumps are restored as an operator's restore would; `reconcile-tombstones`
//! then leaves no key set, no e-mail index entry, no document and no working API key of it, and
//! the tombstones on both sides. Each side's lost tombstone is written back from the other, and a
//! second run changes nothing.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use reqwest::Method;
use serde_json::{json, Value};
use shared::ids::TenantId;
use std::time::Duration;
use tenancy_tests::app::{spawn_app, TestApp};
use tenancy_tests::{raw_collection, vault_name};

/// The collections that hold tombstones, per side: a restore keeps them (the runbook's step).
const DATA_TOMBSTONES: &str = "tenantTombstones";
const VAULT_TOMBSTONES: &str = "tombstones";

/// A tenant made through the API: its id, and an API key that authenticates.
struct Made {
    id: String,
    key: String,
}

/// A tenant with a domain, its admin, and an API key, all through the API. The key's probe is
/// `GET /roles`, which opens no personal data: a restored data cluster whose vault side is
/// shredded answers it, so that it shows whether the key authenticates and nothing else.
async fn tenant_with_key(app: &TestApp, admin_email: &str) -> Made {
    let domain = admin_email.split('@').nth(1).unwrap();
    let body = json!({"name": "Acme", "domain": domain, "adminEmail": admin_email, "plan": "premium"});
    let id = app.create_tenant(&app.superadmin().await, body).await["tenantId"].as_str().unwrap().to_owned();
    let admin = app.member(admin_email, &id).await;
    let body = json!({"name": "machine", "permissions": ["read:users", "read:roles"]});
    let (status, _, reply) = app.call(app.request(Method::POST, "/api-keys", Some(&admin)).json(&body)).await;
    assert_eq!(status, 201, "{reply}");
    let key = reply["data"]["key"].as_str().unwrap().to_owned();
    assert_eq!(app.call(app.key_request(Method::GET, "/roles", &key)).await.0, 200, "the key authenticates");
    Made { id, key }
}

/// Every document of every collection of one database, in memory: a backup.
type Dump = Vec<(String, Vec<Document>)>;

async fn client() -> mongodb::Client {
    mongodb::Client::with_uri_str(tenancy_tests::mongodb_uri()).await.unwrap()
}

async fn dump(database: &str) -> Dump {
    let database = client().await.database(database);
    let mut out = Vec::new();
    let mut names = database.list_collection_names().await.unwrap();
    names.sort();
    for name in names.into_iter().filter(|n| !n.starts_with("system.")) {
        let mut documents: Vec<Document> = database.collection::<Document>(&name).find(doc! {}).await.unwrap().try_collect().await.unwrap();
        documents.sort_by_key(|d| d.get("_id").map(|id| id.to_string()).unwrap_or_default());
        out.push((name, documents));
    }
    out
}

/// Both databases of `app`: the data cluster's and the vault's.
async fn dump_both(app: &TestApp) -> (Dump, Dump) {
    (dump(app.db.name()).await, dump(&vault_name(&app.db)).await)
}

/// Restores `backup` into `database`: every document of every collection deleted, and the
/// dumped ones inserted, as a restore of a cluster replaces everything, except the tombstone
/// collection `keep`, which the runbook exports before a restore and loads back after it.
async fn restore(database: &str, backup: &Dump, keep: &str) {
    let database = client().await.database(database);
    for name in database.list_collection_names().await.unwrap() {
        if name != keep && !name.starts_with("system.") {
            database.collection::<Document>(&name).delete_many(doc! {}).await.unwrap();
        }
    }
    for (name, documents) in backup {
        if name != keep && !documents.is_empty() {
            database.collection::<Document>(name).insert_many(documents).await.unwrap();
        }
    }
}

/// Offboards `tenant` with no grace period and lets the sweeper run its purge to the end, as the
/// local API does within a minute.
async fn end(app: &TestApp, tenant: &str) {
    let id = TenantId::parse(tenant).unwrap();
    let record = onboarding::offboarding::offboardable(&app.db, &id).await.expect("an offboardable tenant");
    onboarding::offboarding::offboard(&app.db, &tenancy_tests::superadmin_context(), &record, 0).await.expect("offboarded");
    local_api::sweep_all(&app.deps, Duration::ZERO).await.expect("a sweep");
    let saga = shared::saga::Sagas::new(&app.db).get(&onboarding::purge::saga_id(&id)).await.unwrap().expect("the purge saga");
    assert_eq!(saga.state, shared::saga::SagaState::Completed, "the purge ran to its end");
}

/// `reconcile-tombstones` as the Lambda and the local route run it: its report.
async fn reconcile(app: &TestApp) -> Value {
    let report = migrations::handle_event(&app.db, app.deps.directory.as_ref(), json!({"action": "reconcile-tombstones"})).await.unwrap();
    assert_eq!(report["action"], "reconcile-tombstones", "{report}");
    report
}

async fn count(database: &str, collection: &str, filter: Document) -> u64 {
    client().await.database(database).collection::<Document>(collection).count_documents(filter).await.unwrap()
}

/// What is left of `tenant`: vault key sets, e-mail index entries, documents in tenant
/// collections, domain claims, and the registry's status.
#[derive(Debug, PartialEq)]
struct Left {
    key_sets: u64,
    email_entries: u64,
    documents: u64,
    domain_claims: u64,
    status: String,
}

async fn left(app: &TestApp, tenant: &str) -> Left {
    let (data, vault) = (app.db.name().to_owned(), vault_name(&app.db));
    let mut documents = 0;
    for collection in shared::db::TenantCollection::ALL {
        documents += count(&data, collection.name(), doc! {"tenantId": tenant}).await;
    }
    let registry = client().await.database(&data).collection::<Document>("tenants").find_one(doc! {"tenantId": tenant}).await.unwrap();
    Left {
        key_sets: count(&vault, "tenantKeys", doc! {"_id": tenant}).await,
        email_entries: count(&vault, "emailIndex", doc! {"tenantId": tenant}).await,
        documents,
        domain_claims: count(&data, "tenantDomains", doc! {"tenantId": tenant}).await,
        status: registry.and_then(|r| r.get_str("status").ok().map(str::to_owned)).unwrap_or_default(),
    }
}

/// A purged tenant: nothing left but its registry record, `inactive`.
fn ended() -> Left {
    Left { key_sets: 0, email_entries: 0, documents: 0, domain_claims: 0, status: "inactive".into() }
}

/// Both tombstones of `tenant`: (vault, data cluster).
async fn tombstones(app: &TestApp, tenant: &str) -> (Option<Document>, Option<Document>) {
    let vault = client().await.database(&vault_name(&app.db)).collection::<Document>(VAULT_TOMBSTONES);
    let data = client().await.database(app.db.name()).collection::<Document>(DATA_TOMBSTONES);
    (vault.find_one(doc! {"_id": tenant}).await.unwrap(), data.find_one(doc! {"_id": tenant}).await.unwrap())
}

/// The report's counts of what a run changed (everything but `tenantsChecked`).
fn changes(report: &Value) -> Vec<(String, Value)> {
    report
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !["action", "tenantsChecked"].contains(&k.as_str()))
        .filter(|(_, v)| *v != &json!(0) && *v != &json!({}))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A second run changes nothing: its report counts nothing, and both databases are as they were.
async fn a_second_run_changes_nothing(app: &TestApp) {
    let before = dump_both(app).await;
    let report = reconcile(app).await;
    assert_eq!(changes(&report), vec![], "{report}");
    assert!(before == dump_both(app).await, "a second run wrote something");
}

#[tokio::test]
async fn old_dumps_of_both_databases_restored_after_a_purge_are_purged_again_and_the_old_key_is_refused() {
    let app = spawn_app().await;
    let gone = tenant_with_key(&app, "admin@restored.example").await;
    let kept = tenant_with_key(&app, "admin@keptalive.example").await;
    let (data_backup, vault_backup) = dump_both(&app).await;
    let before = left(&app, &gone.id).await;
    assert!(before.key_sets == 1 && before.email_entries > 0 && before.documents > 0, "the dump holds the tenant: {before:?}");
    assert_eq!(before.domain_claims, 1, "{before:?}");

    end(&app, &gone.id).await;
    assert_eq!(left(&app, &gone.id).await, ended(), "the purge left nothing");
    let (vault_stone, data_stone) = tombstones(&app, &gone.id).await;
    assert!(vault_stone.is_some() && data_stone.is_some(), "the purge wrote both tombstones");
    assert_ne!(app.call(app.key_request(Method::GET, "/roles", &gone.key)).await.0, 200, "the purge refused the key");

    // The operator restores both clusters from before the offboarding, keeping the tombstones.
    restore(app.db.name(), &data_backup, DATA_TOMBSTONES).await;
    restore(&vault_name(&app.db), &vault_backup, VAULT_TOMBSTONES).await;
    assert_eq!(left(&app, &gone.id).await, before, "the restore brought the tenant back");
    assert_eq!(app.call(app.key_request(Method::GET, "/roles", &gone.key)).await.0, 200, "and its key authenticates again");

    let report = reconcile(&app).await;
    assert_eq!(report["tenantsChecked"], 1, "{report}");
    assert_eq!((report["keySetsDeleted"].as_u64(), report["tenantsPurged"].as_u64()), (Some(1), Some(1)), "{report}");
    assert!(report["emailEntriesDeleted"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["shredMarksSet"], 1, "the restored registry had lost the mark: {report}");
    assert_eq!((report["vaultTombstonesWritten"].as_u64(), report["dataTombstonesWritten"].as_u64()), (Some(0), Some(0)), "{report}");
    assert_eq!(left(&app, &gone.id).await, ended(), "{report}");
    assert_eq!(tombstones(&app, &gone.id).await, (vault_stone, data_stone), "both tombstones, as the purge wrote them");
    let (status, _, body) = app.call(app.key_request(Method::GET, "/roles", &gone.key)).await;
    assert!(status == 401 || status == 403, "the old key is refused: {status} {body}");
    let marked = client().await.database(app.db.name()).collection::<Document>("tenants").find_one(doc! {"tenantId": &gone.id}).await;
    assert!(marked.unwrap().unwrap().get_datetime("keysShreddedAt").is_ok(), "the registry is marked shredded again");

    // The other tenant, restored as it was, is untouched, and its key still works.
    assert_eq!(left(&app, &kept.id).await.status, "active");
    assert_eq!(app.call(app.key_request(Method::GET, "/roles", &kept.key)).await.0, 200);
    a_second_run_changes_nothing(&app).await;
}

#[tokio::test]
async fn an_old_vault_restored_alone_gets_its_tombstone_back_and_loses_the_keys_again() {
    let app = spawn_app().await;
    let gone = tenant_with_key(&app, "admin@oldvault.example").await;
    let (_, vault_backup) = dump_both(&app).await;
    end(&app, &gone.id).await;
    let (_, data_stone) = tombstones(&app, &gone.id).await;

    // The whole vault restored, tombstones included: the data cluster's tombstone survives.
    restore(&vault_name(&app.db), &vault_backup, "").await;
    let restored = left(&app, &gone.id).await;
    assert!(restored.key_sets == 1 && restored.email_entries > 0, "{restored:?}");
    assert_eq!(tombstones(&app, &gone.id).await.0, None);

    let report = reconcile(&app).await;
    assert_eq!(report["vaultTombstonesWritten"], 1, "{report}");
    assert_eq!(report["keySetsDeleted"], 1, "{report}");
    assert_eq!((report["dataTombstonesWritten"].as_u64(), report["tenantsPurged"].as_u64()), (Some(0), Some(0)), "{report}");
    assert_eq!(left(&app, &gone.id).await, ended());
    let (vault_stone, data_after) = tombstones(&app, &gone.id).await;
    assert_eq!(data_after, data_stone, "the data side's tombstone is untouched");
    let vault_stone = vault_stone.expect("the vault's tombstone, written back");
    let marked = client().await.database(app.db.name()).collection::<Document>("tenants").find_one(doc! {"tenantId": &gone.id}).await;
    assert_eq!(
        vault_stone.get_datetime("shreddedAt").unwrap(),
        marked.unwrap().unwrap().get_datetime("keysShreddedAt").unwrap(),
        "dated when the keys were shredded, not when it was written back"
    );
    a_second_run_changes_nothing(&app).await;
}

#[tokio::test]
async fn an_old_data_cluster_restored_alone_gets_its_tombstone_back_and_the_tenant_is_purged_again() {
    let app = spawn_app().await;
    let gone = tenant_with_key(&app, "admin@olddata.example").await;
    let (data_backup, _) = dump_both(&app).await;
    end(&app, &gone.id).await;
    let (vault_stone, _) = tombstones(&app, &gone.id).await;
    let shredded_at = *vault_stone.as_ref().unwrap().get_datetime("shreddedAt").unwrap();

    // The whole data cluster restored, tombstones included: the vault's tombstone survives.
    restore(app.db.name(), &data_backup, "").await;
    assert_eq!(left(&app, &gone.id).await.status, "active");
    assert_eq!(tombstones(&app, &gone.id).await.1, None);
    assert_eq!(app.call(app.key_request(Method::GET, "/roles", &gone.key)).await.0, 200, "the restored key authenticates");

    let report = reconcile(&app).await;
    assert_eq!(report["dataTombstonesWritten"], 1, "{report}");
    assert_eq!(report["tenantsPurged"], 1, "{report}");
    assert_eq!((report["vaultTombstonesWritten"].as_u64(), report["keySetsDeleted"].as_u64()), (Some(0), Some(0)), "{report}");
    assert!(report["documentsDeleted"]["users"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(left(&app, &gone.id).await, ended());
    let (vault_after, data_stone) = tombstones(&app, &gone.id).await;
    assert_eq!(vault_after, vault_stone, "the vault's tombstone is untouched");
    let data_stone = data_stone.expect("the data side's tombstone, written back");
    assert!(data_stone.get("receipt").is_none(), "only the purge signs a receipt");
    assert_eq!(*data_stone.get_datetime("purgedAt").unwrap(), shredded_at, "dated by the shred: {data_stone}");
    let (status, _, body) = app.call(app.key_request(Method::GET, "/roles", &gone.key)).await;
    assert!(status == 401 || status == 403, "the old key is refused: {status} {body}");
    a_second_run_changes_nothing(&app).await;
}

#[tokio::test]
async fn a_tenant_only_shredded_by_the_operator_keeps_its_documents_through_the_reconciliation() {
    let app = spawn_app().await;
    let made = tenant_with_key(&app, "admin@only-shredded.example").await;
    let event = json!({"action": "shred", "tenantId": &made.id});
    migrations::handle_event(&app.db, app.deps.directory.as_ref(), event).await.unwrap();
    let users_before = count(app.db.name(), "users", doc! {"tenantId": &made.id}).await;
    assert!(users_before >= 1);
    let report = reconcile(&app).await;
    assert_eq!(report["tenantsPurged"], 0, "{report}");
    assert_eq!(report["dataTombstonesWritten"], 0, "{report}");
    assert_eq!(count(app.db.name(), "users", doc! {"tenantId": &made.id}).await, users_before, "its records stay");
    let record = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": &made.id}).await.unwrap().unwrap();
    assert_eq!(record.get_str("status").unwrap(), "active", "a shred is not an end");
    assert_eq!(count(app.db.name(), "tenantTombstones", doc! {"_id": &made.id}).await, 0);
}
