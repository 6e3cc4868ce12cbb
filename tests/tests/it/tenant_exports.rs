//! A tenant's export (`POST /tenants/{tenantId}/exports`, `GET …/exports/{exportId}`), black-box
//! through the local API, its worker run over moto's SQS and its files read back from moto's S3
//! through the URLs the API hands out: what the files hold and never hold, that they match the
//! manifest, that an export holds nothing of another tenant, who may ask, and the audit.

use flate2::read::MultiGzDecoder;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use tenancy_tests::app::{spawn_app, TestApp};
use tenancy_tests::raw_collection;

const FILES: [(&str, &str); 6] = [
    ("tenant.ndjson.gz", "tenants"),
    ("users.ndjson.gz", "users"),
    ("roles.ndjson.gz", "roles"),
    ("apiKeys.ndjson.gz", "apiKeys"),
    ("auditLogs.ndjson.gz", "auditLogs"),
    ("userErasures.ndjson.gz", "userErasures"),
];

async fn call(app: &TestApp, method: Method, path: &str, token: &str) -> (u16, Value) {
    let (status, _, body) = app.call(app.request(method, path, Some(token))).await;
    (status, body)
}

/// Requests an export of `tenant` as `token`: its id.
async fn request_export(app: &TestApp, tenant: &str, token: &str) -> String {
    let (status, body) = call(app, Method::POST, &format!("/tenants/{tenant}/exports"), token).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["status"], "queued");
    body["data"]["exportId"].as_str().unwrap().to_owned()
}

/// Exports `tenant` to its end: the completed export's answer, and each collection's stored
/// documents as they were when the worker was done (the read after it is audited too).
async fn completed_export(app: &TestApp, tenant: &str, token: &str) -> (Value, BTreeMap<&'static str, Vec<Document>>) {
    let id = request_export(app, tenant, token).await;
    let (status, queued) = call(app, Method::GET, &format!("/tenants/{tenant}/exports/{id}"), token).await;
    assert_eq!(status, 200, "{queued}");
    assert_eq!(queued["data"]["status"], "queued");
    assert_eq!(queued["data"]["files"], json!([]), "no URL before it completes");
    assert!(app.run_jobs().await >= 1, "the worker took the job");
    let mut snapshot = BTreeMap::new();
    for (_, collection) in FILES {
        snapshot.insert(collection, stored(app, collection, tenant).await);
    }
    let (status, done) = call(app, Method::GET, &format!("/tenants/{tenant}/exports/{id}"), token).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["data"]["status"], "completed", "{done}");
    (done, snapshot)
}

/// Downloads every file of a completed export through its URL: each file's lines as JSON, by
/// name, after checking its bytes against the manifest.
async fn download(export: &Value) -> BTreeMap<String, Vec<Value>> {
    let manifest: BTreeMap<String, &Value> =
        export["data"]["manifest"]["files"].as_array().unwrap().iter().map(|f| (f["name"].as_str().unwrap().to_owned(), f)).collect();
    let mut out = BTreeMap::new();
    for file in export["data"]["files"].as_array().unwrap() {
        let name = file["name"].as_str().unwrap().to_owned();
        let url = file["url"].as_str().unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "a path-style URL that resolves from the host: {url}");
        assert!(url.contains("X-Amz-Expires=900") || url.contains("X-Amz-Expires=") && expires(url) <= 900, "at most 15 minutes: {url}");
        let bytes = reqwest::get(url).await.unwrap().error_for_status().unwrap().bytes().await.unwrap();
        let entry = manifest[&name];
        assert_eq!(entry["sha256"], data_encoding::HEXLOWER.encode(&Sha256::digest(&bytes)), "{name}: the SHA-256 of the stored bytes");
        let mut text = String::new();
        MultiGzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(entry["count"], json!(lines.len()), "{name}: the manifest's count");
        out.insert(name, lines);
    }
    assert_eq!(out.len(), manifest.len(), "one URL per file of the manifest");
    out
}

fn expires(url: &str) -> u64 {
    url.split("X-Amz-Expires=").nth(1).and_then(|r| r.split('&').next()).and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)
}

async fn stored(app: &TestApp, collection: &str, tenant: &str) -> Vec<Document> {
    raw_collection(&app.db, collection).await.find(doc! {"tenantId": tenant}).await.unwrap().try_collect().await.unwrap()
}

/// Every field path of a document, nested documents walked (arrays are leaves).
fn paths(prefix: &str, document: &serde_json::Map<String, Value>, out: &mut BTreeSet<String>) {
    for (key, value) in document {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match value {
            // Extended JSON's wrappers ({"$oid"}, {"$date"}, {"$numberLong"}) are values.
            Value::Object(inner) if !inner.keys().any(|k| k.starts_with('$')) => paths(&path, inner, out),
            _ => {
                out.insert(path);
            }
        }
    }
}

fn paths_of_stored(document: &Document) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Value::Object(map) = Bson::Document(document.clone()).into_relaxed_extjson() {
        paths("", &map, &mut out);
    }
    out
}

#[tokio::test]
async fn an_export_holds_every_stored_field_opened_and_no_secret_and_its_files_match_the_manifest() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (admin, tenant) = app.tenant_with_admin("premium", "owner@tenant-export.example").await;
    let (_, member) = app.seed_user(&tenant, "member@tenant-export.example", "admin", "active").await;
    // Writes through the API: a role, a key (rotated: a previous hash is stored), a profile.
    let (status, _, role) = app
        .call(app.request(Method::POST, "/roles", Some(&admin)).json(&json!({"name": "Auditor", "permissions": ["read:audit-logs"]})))
        .await;
    assert_eq!(status, 201, "{role}");
    let (status, _, key) =
        app.call(app.request(Method::POST, "/api-keys", Some(&member)).json(&json!({"name": "CI", "permissions": ["read:users"]}))).await;
    assert_eq!(status, 201, "{key}");
    let key_id = key["data"]["id"].as_str().unwrap();
    let (status, _, _) = app
        .call(app.request(Method::POST, &format!("/api-keys/{key_id}/rotate"), Some(&member)).json(&json!({"gracePeriodSeconds": 60})))
        .await;
    assert_eq!(status, 200);
    let (status, _, _) =
        app.call(app.request(Method::PATCH, "/users/me", Some(&member)).json(&json!({"department": "Ops", "title": "Lead"}))).await;
    assert_eq!(status, 200);

    let (export, snapshot) = completed_export(&app, &tenant, &superadmin).await;
    let names: Vec<&str> = export["data"]["manifest"]["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, FILES.iter().map(|(n, _)| *n).collect::<Vec<_>>(), "one file per collection, in order");
    let files = download(&export).await;

    // Every document, and every stored field of it, is in its file, but key hashes and blind
    // indexes; personal fields opened.
    for (name, collection) in FILES {
        let documents = &snapshot[collection];
        let lines = &files[name];
        assert_eq!(lines.len(), documents.len(), "{name}: every document");
        for document in documents {
            let id = Bson::ObjectId(document.get_object_id("_id").unwrap()).into_relaxed_extjson();
            let line = lines.iter().find(|l| l["_id"] == id).unwrap_or_else(|| panic!("{name}: {id} exported"));
            let mut exported = BTreeSet::new();
            paths("", line.as_object().unwrap(), &mut exported);
            let withheld: &[&str] = match collection {
                "apiKeys" => &["keyHash", "previousKeyHash"],
                "users" => &["emailHash"],
                "auditLogs" => &["details.emailHash"],
                _ => &[],
            };
            let mut expected = paths_of_stored(document);
            expected.retain(|p| !withheld.contains(&p.as_str()));
            // A sealed value is a document ({"$binary"}) stored and a string exported.
            assert_eq!(exported, expected, "{name}: every stored field but the withheld ones");
        }
    }
    let users = &files["users.ndjson.gz"];
    let emails: BTreeSet<&str> = users.iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails, BTreeSet::from(["owner@tenant-export.example", "member@tenant-export.example"]), "opened");
    let member_line = users.iter().find(|u| u["email"] == "member@tenant-export.example").unwrap();
    assert_eq!((member_line["profile"]["department"].as_str(), member_line["profile"]["title"].as_str()), (Some("Ops"), Some("Lead")));
    assert_eq!(files["tenant.ndjson.gz"][0]["settings"]["billing"]["billingEmail"], "owner@tenant-export.example");
    let text = serde_json::to_string(&files).unwrap();
    for key in stored(&app, "apiKeys", &tenant).await {
        for field in ["keyHash", "previousKeyHash"] {
            if let Ok(hash) = key.get_str(field) {
                assert!(!text.contains(hash), "no key hash");
            }
        }
        assert!(!text.contains("keyHash"), "no key hash field");
    }
    assert!(!text.contains("emailHash"), "no blind index");

    // The audit: the request and each read, by the superadmin, naming the export.
    let id = export["data"]["exportId"].as_str().unwrap();
    let entries = stored(&app, "auditLogs", &tenant).await;
    let of = |action: &str| {
        entries
            .iter()
            .filter(|e| e.get_str("action") == Ok(action) && e.get_document("details").unwrap().get_str("exportId") == Ok(id))
            .count()
    };
    assert_eq!((of("tenant.export-requested"), of("tenant.export-read")), (1, 2));
    // No URL is stored or audited.
    let audited = format!("{entries:?}");
    assert!(!audited.contains("X-Amz-Signature"), "no URL in the audit log");
    let job = raw_collection(&app.db, "jobs").await.find_one(doc! {"_id": id}).await.unwrap().unwrap();
    assert!(!format!("{job:?}").contains("X-Amz-Signature"), "no URL in the job");
}

#[tokio::test]
async fn who_may_export_a_tenant_and_whose_exports_a_path_finds() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (admin, tenant) = app.tenant_with_admin("premium", "owner@who-exports.example").await;
    let (_, other) = app.tenant_with_admin("premium", "owner@other-exports.example").await;
    let (_, viewer) = app.seed_user(&tenant, "viewer@who-exports.example", "viewer", "active").await;
    // An admin holds `*`, so `export:tenant`; a viewer does not.
    let mine = request_export(&app, &tenant, &admin).await;
    let (status, body) = call(&app, Method::POST, &format!("/tenants/{tenant}/exports"), &viewer).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(&app, Method::GET, &format!("/tenants/{tenant}/exports/{mine}"), &viewer).await;
    assert_eq!(status, 403, "{body}");
    // An API key, whatever its permissions, is refused.
    let (status, _, key) =
        app.call(app.request(Method::POST, "/api-keys", Some(&admin)).json(&json!({"name": "All", "permissions": ["read:*"]}))).await;
    assert_eq!(status, 201, "{key}");
    let secret = key["data"]["key"].as_str().unwrap();
    let (status, _, body) = app.call(app.key_request(Method::POST, &format!("/tenants/{tenant}/exports"), secret)).await;
    assert_eq!(status, 403, "{body}");
    // Another tenant's admin reaches neither the route nor the export.
    let (status, body) = call(&app, Method::GET, &format!("/tenants/{tenant}/exports/{mine}"), &other_admin(&app, &other).await).await;
    assert_eq!(status, 403, "{body}");
    // The export id is looked up under the path's tenant: another tenant's path finds nothing.
    let (status, body) = call(&app, Method::GET, &format!("/tenants/{other}/exports/{mine}"), &superadmin).await;
    assert_eq!(status, 404, "{body}");
    // A malformed id, and a body, are 400s; nothing is queued for them.
    let (status, body) = call(&app, Method::GET, &format!("/tenants/{tenant}/exports/not-an-id"), &admin).await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = app
        .call(app.request(Method::POST, &format!("/tenants/{tenant}/exports"), Some(&admin)).json(&json!({"collections": ["users"]})))
        .await;
    assert_eq!(status, 400, "{body}");
    let jobs = raw_collection(&app.db, "jobs").await.count_documents(doc! {}).await.unwrap();
    assert_eq!(jobs, 1, "only the admin's export was written");
}

async fn other_admin(app: &TestApp, tenant: &str) -> String {
    app.member("owner@other-exports.example", tenant).await
}

#[tokio::test]
async fn a_job_delivered_twice_or_resumed_after_a_lost_lease_writes_each_file_once() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (_, tenant) = app.tenant_with_admin("basic", "owner@twice.example").await;
    let id = request_export(&app, &tenant, &superadmin).await;
    // A second delivery of the same job: SQS may deliver twice.
    app.db.exports().unwrap().enqueue(&id).await.unwrap();
    // A worker that died holding the lease: another takes the job once the lease has ended.
    let dead = shared::jobs::Jobs::with_owner(&app.db, "dead-worker");
    assert!(matches!(dead.take(&id).await.unwrap(), shared::jobs::Taken::Job(_)));
    assert_eq!(app.run_jobs().await, 2, "both messages were handled");
    let (_, still) = call(&app, Method::GET, &format!("/tenants/{tenant}/exports/{id}"), &superadmin).await;
    assert_eq!(still["data"]["status"], "running", "the dead worker's lease holds until it ends");
    raw_collection(&app.db, "jobs")
        .await
        .update_one(doc! {"_id": &id}, doc! {"$set": {"leaseUntil": mongodb::bson::DateTime::from_millis(0)}})
        .await
        .unwrap();
    app.db.exports().unwrap().enqueue(&id).await.unwrap();
    app.run_jobs().await;
    let (_, done) = call(&app, Method::GET, &format!("/tenants/{tenant}/exports/{id}"), &superadmin).await;
    assert_eq!(done["data"]["status"], "completed", "{done}");
    let files = download(&done).await;
    assert_eq!(files["users.ndjson.gz"].len(), 1);
    assert_eq!(files["tenant.ndjson.gz"].len(), 1);
}

/// Every object version and unfinished upload under `prefix` in the test bucket.
async fn objects_under(app: &TestApp, prefix: &str) -> usize {
    let config = app.db.exports().unwrap().config().clone();
    let sdk = local_api::cognito::moto_config(&tenancy_tests::app::moto_url(), tenancy_tests::app::REGION);
    let s3 = shared::exports::s3_client(&sdk, true);
    let versions = s3.list_object_versions().bucket(&config.bucket).prefix(prefix).send().await.unwrap();
    let uploads = s3.list_multipart_uploads().bucket(&config.bucket).prefix(prefix).send().await.unwrap();
    versions.versions().len() + versions.delete_markers().len() + uploads.uploads().len()
}

#[tokio::test]
async fn an_erasure_deletes_the_files_of_every_export_that_holds_the_person_and_a_later_export_holds_nothing_of_them() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("premium", "owner@erased-export.example").await;
    let (person, _) = app.seed_user(&tenant, "leaving@erased-export.example", "user", "active").await;
    let (before, _) = completed_export(&app, &tenant, &admin).await;
    let before_id = before["data"]["exportId"].as_str().unwrap().to_owned();
    let prefix = format!("exports/{tenant}/{before_id}/");
    assert_eq!(objects_under(&app, &prefix).await, FILES.len(), "one object per file");
    // An export still queued when the erasure runs holds the person too: it fails.
    let queued = request_export(&app, &tenant, &admin).await;

    let (status, _, erased) = app.call(app.request(Method::POST, &format!("/users/{}/erase", person.to_hex()), Some(&admin))).await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(objects_under(&app, &prefix).await, 0, "every version of every file is gone");
    let (_, shown) = call(&app, Method::GET, &format!("/tenants/{tenant}/exports/{before_id}"), &admin).await;
    assert_eq!(shown["data"]["status"], "expired", "{shown}");
    assert_eq!(shown["data"]["files"], json!([]), "no URL to a deleted file");
    let (_, failed) = call(&app, Method::GET, &format!("/tenants/{tenant}/exports/{queued}"), &admin).await;
    assert_eq!(failed["data"]["status"], "failed", "{failed}");
    app.run_jobs().await;
    let (_, still) = call(&app, Method::GET, &format!("/tenants/{tenant}/exports/{queued}"), &admin).await;
    assert_eq!(still["data"]["status"], "failed", "a failed export's message finds nothing to do: {still}");

    let (after, _) = completed_export(&app, &tenant, &admin).await;
    let files = download(&after).await;
    let text = serde_json::to_string(&files).unwrap();
    assert!(!text.contains("leaving@erased-export.example"), "the person is in no later export");
    let record = json!({"$oid": person.to_hex()});
    assert!(files["users.ndjson.gz"].iter().all(|u| u["_id"] != record), "no record of the person");
}

#[tokio::test]
async fn a_purge_deletes_the_tenant_s_export_files_and_jobs() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (admin, tenant) = app.tenant_with_admin("premium", "owner@purged-export.example").await;
    completed_export(&app, &tenant, &admin).await;
    let prefix = format!("exports/{tenant}/");
    assert_eq!(objects_under(&app, &prefix).await, FILES.len());
    let (status, _, body) = app
        .call(app.request(Method::POST, &format!("/tenants/{tenant}/offboard"), Some(&superadmin)).json(&json!({"gracePeriodDays": 0})))
        .await;
    assert_eq!(status, 202, "{body}");
    let options = shared::saga::SweepOptions { older_than: std::time::Duration::ZERO, any_other_owner: false, limit: 100 };
    onboarding::service::sweep(&app.db, app.deps.directory.as_ref(), options).await.unwrap();
    let record = raw_collection(&app.db, "tenants").await.find_one(doc! {"tenantId": &tenant}).await.unwrap().unwrap();
    assert_eq!(record.get_str("status").unwrap(), "inactive");
    assert_eq!(objects_under(&app, &prefix).await, 0, "no export file of the tenant is left, in any version");
    let jobs = raw_collection(&app.db, "jobs").await.count_documents(doc! {"tenantId": &tenant}).await.unwrap();
    assert_eq!(jobs, 0, "its jobs went with it");
}

#[tokio::test]
async fn a_tenant_that_opted_in_is_exported_nightly_within_its_plan() {
    let app = spawn_app().await;
    let superadmin = app.superadmin().await;
    let (admin, tenant) = app.tenant_with_admin("premium", "owner@nightly.example").await;
    let (basic_admin, basic) = app.tenant_with_admin("basic", "owner@nightly-basic.example").await;
    let (_, downgraded) = app.tenant_with_admin("premium", "owner@nightly-downgraded.example").await;
    let opt = |token: String, tenant: String, nightly: bool| {
        let app = &app;
        async move {
            let path = format!("/tenants/{tenant}/settings/exports");
            let (status, _, body) = app.call(app.request(Method::PATCH, &path, Some(&token)).json(&json!({"nightly": nightly}))).await;
            (status, body)
        }
    };
    let (status, body) = opt(admin.clone(), tenant.clone(), true).await;
    assert_eq!((status, &body["data"]["nightly"]), (200, &json!(true)), "{body}");
    // Basic has no nightly exports: opting in is a 403 naming the plan, opting out is fine.
    let (status, body) = opt(basic_admin.clone(), basic.clone(), true).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("basic"), "{body}");
    assert_eq!(opt(basic_admin, basic.clone(), false).await.0, 200);
    // A tenant that opted in and was then moved to a plan without them is not exported.
    assert_eq!(opt(superadmin.clone(), downgraded.clone(), true).await.0, 200);
    let (status, _, body) = app
        .call(
            app.request(Method::PATCH, &format!("/tenants/{downgraded}/settings/billing"), Some(&superadmin))
                .json(&json!({"plan": "basic"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(tenants::jobs::start_nightly_exports(&app.db).await.unwrap(), 1, "the one tenant opted in on a plan that allows it");
    assert_eq!(tenants::jobs::start_nightly_exports(&app.db).await.unwrap(), 0, "once a day");
    let job = raw_collection(&app.db, "jobs").await.find_one(doc! {"requestedBy": "schedule"}).await.unwrap().unwrap();
    assert_eq!(job.get_str("tenantId").unwrap(), tenant);
    app.run_jobs().await;
    let id = job.get_str("_id").unwrap();
    let (_, done) = call(&app, Method::GET, &format!("/tenants/{tenant}/exports/{id}"), &admin).await;
    assert_eq!(done["data"]["status"], "completed", "{done}");
    assert!(done["data"]["expiresAt"].is_string(), "under the bucket's expiry");
    let audited = raw_collection(&app.db, "auditLogs")
        .await
        .count_documents(
            doc! {"tenantId": &tenant, "action": "tenant.export-requested", "userId": "system:schedule", "details.exportId": id},
        )
        .await
        .unwrap();
    assert_eq!(audited, 1, "the schedule's export is audited");
    // An API key opts nothing in, whatever its permissions.
    let (status, _, key) =
        app.call(app.request(Method::POST, "/api-keys", Some(&admin)).json(&json!({"name": "All", "permissions": ["read:*"]}))).await;
    assert_eq!(status, 201, "{key}");
    let path = format!("/tenants/{tenant}/settings/exports");
    let (status, _, _) =
        app.call(app.key_request(Method::PATCH, &path, key["data"]["key"].as_str().unwrap()).json(&json!({"nightly": false}))).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_tenant_has_one_export_under_way_at_a_time() {
    let app = spawn_app().await;
    let (admin, tenant) = app.tenant_with_admin("premium", "owner@one-at-a-time.example").await;
    let first = request_export(&app, &tenant, &admin).await;
    let (status, body) = call(&app, Method::POST, &format!("/tenants/{tenant}/exports"), &admin).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains(&first), "names the export under way: {body}");
    app.run_jobs().await;
    let second = request_export(&app, &tenant, &admin).await;
    assert_ne!(second, first, "once the first ended, another");
}

/// What one tenant of an isolation case holds: roles, people and audit entries, by name from
/// small pools that every tenant draws from (the same names, the same resource ids).
#[derive(Debug, Clone)]
struct Holding {
    roles: Vec<usize>,
    people: Vec<(usize, usize)>,
    entries: Vec<usize>,
}

const ROLE_NAMES: [&str; 3] = ["Auditor", "Ops", "admin"];
const PEOPLE_NAMES: [&str; 3] = ["Ada", "Grace", "Alan"];

fn holding() -> impl proptest::strategy::Strategy<Value = Holding> {
    use proptest::prelude::*;
    (
        prop::collection::vec(0..ROLE_NAMES.len(), 0..4),
        prop::collection::vec((0..PEOPLE_NAMES.len(), 0..PEOPLE_NAMES.len()), 0..4),
        prop::collection::vec(0..6usize, 0..6),
    )
        .prop_map(|(roles, people, entries)| Holding { roles, people, entries })
}

/// Writes `holding` into `tenant` (registered, with keys) as the API would store it; each audit
/// entry names as its resource one of a pool shared by every tenant: the tenants' ids and a
/// fixed record id. The ids of what was written, by collection.
async fn write_holding(
    db: &shared::db::Db,
    tenant: &shared::ids::TenantId,
    others: &[String],
    case: u64,
    h: &Holding,
) -> BTreeMap<&'static str, BTreeSet<String>> {
    use shared::db::{SystemContext, TenantCollection};
    let scope = SystemContext::new("export isolation").for_tenant(tenant.clone());
    let mut written: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for (i, r) in h.roles.iter().enumerate() {
        let role = doc! {"name": format!("{} {i}", ROLE_NAMES[*r]), "permissions": ["read:users"], "isSystem": false, "createdBy": shared::models::SYSTEM_PRINCIPAL};
        let stored = db.scoped::<Document>(&scope, TenantCollection::Roles).insert_one(&role).await.unwrap();
        written.entry("roles").or_default().insert(stored.get_object_id("_id").unwrap().to_hex());
    }
    for (i, (first, last)) in h.people.iter().enumerate() {
        let email = shared::ids::Email::parse(format!("p{i}.c{case}@{}.example", tenant.as_str().replace('_', "-"))).unwrap();
        let profile = shared::models::Profile {
            first_name: PEOPLE_NAMES[*first].into(),
            last_name: PEOPLE_NAMES[*last].into(),
            ..Default::default()
        };
        let record = users::person::pending_record(db, tenant, &email, &profile, &[]).await.unwrap();
        db.scoped::<shared::models::User>(&scope, TenantCollection::Users).insert_one(&record).await.unwrap();
        written.entry("users").or_default().insert(record.id.to_hex());
    }
    let mut pool: Vec<String> = others.to_vec();
    pool.push(tenant.to_string());
    pool.push("65a000000000000000000001".into());
    for e in &h.entries {
        let entry = doc! {"action": "tenant.updated", "resource": "tenant", "resourceId": &pool[e % pool.len()], "details": {},
        "ip": "", "userAgent": "", "requestId": format!("r{e}"), "timestamp": mongodb::bson::DateTime::now(),
        "expireAt": mongodb::bson::DateTime::from_millis(mongodb::bson::DateTime::now().timestamp_millis() + 86_400_000)};
        let stored = db.scoped::<Document>(&scope, TenantCollection::AuditLogs).insert_one(&entry).await.unwrap();
        written.entry("auditLogs").or_default().insert(stored.get_object_id("_id").unwrap().to_hex());
    }
    written
}

/// A registered tenant with keys, as onboarding leaves one (no people).
async fn registered(db: &shared::db::Db) -> shared::ids::TenantId {
    let tenant = shared::ids::TenantId::generate();
    db.keyring().unwrap().create_tenant_keys(&tenant).await.unwrap();
    let billing = db.keyring().unwrap().seal(&tenant, shared::pii::Field::BillingEmail, "billing@isolation.example").await.unwrap();
    let settings = shared::models::TenantSettings::for_plan(shared::plans::Plan::Premium, billing);
    let record = doc! {"_id": mongodb::bson::oid::ObjectId::new(), "tenantId": tenant.as_str(), "name": "Same Name", "settings": mongodb::bson::to_bson(&settings).unwrap(),
    "status": "active", "apiUsage": {}, "apiKeyCount": 0_i64, "createdAt": mongodb::bson::DateTime::now(), "updatedAt": mongodb::bson::DateTime::now()};
    let tenant_record: shared::models::Tenant = mongodb::bson::from_document(record).unwrap();
    db.tenants(&shared::db::SystemContext::new("export isolation")).insert(&tenant_record).await.unwrap();
    tenant
}

/// Runs the worker over the job `id` until it ends, as the queue would.
async fn run_to_end(db: &shared::db::Db, directory: &dyn shared::directory::Directory, id: &str) {
    let jobs = shared::jobs::Jobs::new(db);
    for _ in 0..100 {
        if tenants::jobs::run(db, directory, &jobs, id).await.unwrap() == tenants::jobs::Handled::Ended {
            return;
        }
    }
    panic!("the job {id} never ended");
}

#[test]
fn an_export_never_holds_another_tenant_s_document_whatever_their_names_and_ids() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (db, directory) = rt.block_on(async { (tenancy_tests::fresh_db_with_indexes().await, tenancy_tests::test_directory().await) });
    let config = Config { cases: 8, failure_persistence: None, max_shrink_iters: 16, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let case = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&proptest::collection::vec(holding(), 3), |holdings| {
        rt.block_on(async {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut tenants = Vec::new();
            for _ in &holdings {
                tenants.push(registered(&db).await);
            }
            let ids: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
            let mut written = Vec::new();
            for (tenant, h) in tenants.iter().zip(&holdings) {
                written.push(write_holding(&db, tenant, &ids, n, h).await);
            }
            for (tenant, own) in tenants.iter().zip(&written) {
                let job =
                    shared::jobs::Job::new(shared::jobs::JobKind::Export, tenant.clone(), "isolation", Document::new(), db.clock().now());
                shared::jobs::Jobs::new(&db).create(&job).await.unwrap();
                run_to_end(&db, directory.as_ref(), &job.id).await;
                for collection in ["users", "roles", "auditLogs"] {
                    let name = tenants::jobs::export::file_name(collection);
                    let mut lines = tenants::jobs::export::Lines::open(&db, tenant, &job.id, &name).await.unwrap();
                    let mut seen = BTreeSet::new();
                    while let Some(line) = lines.next().await.unwrap() {
                        if line.get_str("tenantId").unwrap() != tenant.as_str() {
                            return Err(TestCaseError::fail(format!(
                                "{collection}: another tenant's document in {tenant}'s export: {line}"
                            )));
                        }
                        seen.insert(line.get_object_id("_id").unwrap().to_hex());
                    }
                    // Its own, every one (the audit log holds the job's own request too: none here).
                    let expected = own.get(collection).cloned().unwrap_or_default();
                    if seen != expected {
                        return Err(TestCaseError::fail(format!("{collection} of {tenant}: exported {seen:?}, held {expected:?}")));
                    }
                }
            }
            Ok(())
        })
    });
    result.unwrap();
}
