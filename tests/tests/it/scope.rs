//! Every scoped operation, against FerretDB: it sees and changes only its own tenant's data,
//! and refusals never reach the server.

use mongodb::bson::{doc, Bson, Document};
use shared::db::{Db, DbError, FindOptions, Refusal, Scoped, SystemContext, TenantCollection};
use shared::ids::TenantId;
use tenancy_tests::fresh_db;

fn scoped(db: &Db, tenant: &TenantId) -> Scoped<Document> {
    db.scoped(&SystemContext::new("test").for_tenant(tenant.clone()), TenantCollection::Users)
}

async fn two_tenants() -> (Db, Scoped<Document>, Scoped<Document>) {
    let db = fresh_db().await;
    let (a, b) = (TenantId::generate(), TenantId::generate());
    let (sa, sb) = (scoped(&db, &a), scoped(&db, &b));
    sa.insert_many(&[doc! {"name": "x", "n": 1}, doc! {"name": "y", "n": 2}]).await.unwrap();
    sb.insert_many(&[doc! {"name": "x", "n": 1}, doc! {"name": "z", "n": 3}]).await.unwrap();
    (db, sa, sb)
}

async fn snapshot(s: &Scoped<Document>) -> Vec<Document> {
    s.find(doc! {}, FindOptions { sort: Some(doc! {"_id": 1}), ..Default::default() }).await.unwrap()
}

#[tokio::test]
async fn inserts_are_stamped_with_the_tenant_and_timestamps() {
    let (_db, a, _b) = two_tenants().await;
    let stored = a.insert_one(&doc! {"name": "new"}).await.unwrap();
    assert_eq!(stored.get_str("tenantId").unwrap(), a.tenant().as_str());
    assert!(stored.get_datetime("createdAt").is_ok() && stored.get_datetime("updatedAt").is_ok());
    let read = a.find_one(doc! {"_id": stored.get_object_id("_id").unwrap()}).await.unwrap().unwrap();
    assert_eq!(read, stored);
}

#[tokio::test]
async fn reads_see_only_the_scope_s_tenant() {
    let (_db, a, b) = two_tenants().await;
    let found = a.find(doc! {"name": "x"}, FindOptions::default()).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get_str("tenantId").unwrap(), a.tenant().as_str());
    assert_eq!(a.count_documents(doc! {}).await.unwrap(), 2);
    assert!(a.find_one(doc! {"name": "z"}).await.unwrap().is_none(), "B's document must be invisible");
    let mut names = a.distinct("name", doc! {}).await.unwrap();
    names.sort_by_key(|b| b.to_string());
    assert_eq!(names, vec![Bson::String("x".into()), Bson::String("y".into())]);
    let grouped = a.aggregate(vec![doc! {"$group": {"_id": null, "total": {"$sum": "$n"}}}]).await.unwrap();
    assert_eq!(grouped[0].get("total").and_then(Bson::as_i32), Some(3));
    assert_eq!(b.count_documents(doc! {}).await.unwrap(), 2);
}

#[tokio::test]
async fn writes_change_only_the_scope_s_tenant() {
    let (_db, a, b) = two_tenants().await;
    let before = snapshot(&b).await;
    let outcome = a.update_many(doc! {}, doc! {"$inc": {"n": 10}}, false).await.unwrap();
    assert_eq!(outcome.matched, 2);
    a.update_one(doc! {"name": "x"}, doc! {"$set": {"flag": true}}, false).await.unwrap();
    let after = a.find_one_and_update(doc! {"name": "y"}, doc! {"$set": {"name": "yy"}}, false).await.unwrap().unwrap();
    assert_eq!(after.get_str("name").unwrap(), "yy", "findOneAndUpdate returns the document after the update");
    assert_eq!(a.delete_one(doc! {"name": "x"}).await.unwrap(), 1);
    assert_eq!(a.delete_many(doc! {}).await.unwrap(), 1);
    assert_eq!(snapshot(&b).await, before, "B's documents must be byte-for-byte unchanged");
}

#[tokio::test]
async fn an_upsert_creates_the_document_inside_the_scope() {
    let (_db, a, b) = two_tenants().await;
    let before = snapshot(&b).await;
    let created = a.find_one_and_update(doc! {"name": "z"}, doc! {"$set": {"n": 9}}, true).await.unwrap().expect("upserted");
    assert_eq!(created.get_str("tenantId").unwrap(), a.tenant().as_str());
    assert!(created.get_datetime("createdAt").is_ok());
    let outcome = a.update_one(doc! {"name": "w"}, doc! {"$set": {"n": 1}}, true).await.unwrap();
    assert!(outcome.upserted_id.is_some());
    assert_eq!(a.count_documents(doc! {"name": {"$in": ["z", "w"]}}).await.unwrap(), 2);
    assert_eq!(snapshot(&b).await, before);
}

#[tokio::test]
async fn refused_operations_never_reach_the_server() {
    let (_db, a, b) = two_tenants().await;
    let before_a = snapshot(&a).await;
    let before_b = snapshot(&b).await;
    let other = b.tenant().as_str();
    let refusals: Vec<DbError> = vec![
        a.update_many(doc! {"tenantId": other}, doc! {"$set": {"n": 0}}, false).await.unwrap_err(),
        a.update_many(doc! {}, doc! {"$set": {"tenantId": other}}, false).await.unwrap_err(),
        a.update_one(doc! {}, doc! {"name": "replacement"}, false).await.unwrap_err(),
        a.delete_many(doc! {"$or": [{"tenantId": other}]}).await.unwrap_err(),
        a.insert_one(&doc! {"tenantId": other, "name": "smuggled"}).await.unwrap_err(),
        a.insert_many(&[doc! {"name": "ok"}, doc! {"tenantId": other}]).await.unwrap_err(),
        a.aggregate(vec![doc! {"$lookup": {"from": "users", "pipeline": [], "as": "all"}}]).await.unwrap_err(),
        a.find(doc! {"$where": "true"}, FindOptions::default()).await.unwrap_err(),
        a.count_documents(doc! {"tenantId": {"$ne": "nobody"}}).await.unwrap_err(),
    ];
    for r in &refusals {
        assert!(matches!(r, DbError::Refused(_)), "{r:?}");
    }
    assert!(matches!(&refusals[0], DbError::Refused(Refusal::TenantMismatch { found, .. }) if found == other));
    assert_eq!(snapshot(&a).await, before_a, "a refused insert_many inserts nothing");
    assert_eq!(snapshot(&b).await, before_b);
}

#[tokio::test]
async fn an_unreachable_database_is_reported_as_unavailable() {
    let mut cfg = tenancy_tests::fresh_db_config();
    // A loopback port nothing listens on; a short timeout keeps the test quick.
    cfg.uri = "mongodb://127.0.0.1:9/".into();
    cfg.server_selection_timeout = std::time::Duration::from_millis(300);
    let db = Db::connect(&cfg).await.unwrap();
    let err = scoped(&db, &TenantId::generate()).count_documents(doc! {}).await.unwrap_err();
    assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(shared::ApiError::from(err).status(), 503);
}
