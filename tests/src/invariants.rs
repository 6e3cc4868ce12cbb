//! What must hold of the stored state once every saga has ended, whatever crashed, failed or
//! lost a reply on the way: each tenant whole, or nothing of it anywhere.

use crate::app::TestApp;
use crate::raw_collection;
use mongodb::bson::{doc, Document};
use std::collections::BTreeSet;

/// Every document of a collection of the data or the vault database.
pub async fn all(app: &TestApp, vault: bool, collection: &str) -> Vec<Document> {
    use futures_util::TryStreamExt;
    let coll = if vault {
        crate::vault_database(&app.db).await.collection::<Document>(collection)
    } else {
        raw_collection(&app.db, collection).await
    };
    coll.find(doc! {}).await.unwrap().try_collect().await.unwrap()
}

pub fn tenant_of(d: &Document, field: &str) -> String {
    d.get_str(field).unwrap_or_default().to_owned()
}

/// What must hold once every saga has ended: the whole or nothing, for every tenant.
pub async fn assert_whole_or_nothing(app: &TestApp, context: &str) {
    let registered: BTreeSet<String> = all(app, false, "tenants").await.iter().map(|t| tenant_of(t, "tenantId")).collect();
    for (vault, collection, field) in [
        (false, "roles", "tenantId"),
        (false, "users", "tenantId"),
        (false, "tenantDomains", "tenantId"),
        (true, "emailIndex", "tenantId"),
        (true, "tenantKeys", "_id"),
    ] {
        for d in all(app, vault, collection).await {
            let owner = tenant_of(&d, field);
            assert!(registered.contains(&owner), "{context}: {collection} holds a document of the unregistered tenant {owner}: {d}");
        }
    }
    let cognito = app.cognito_users().await;
    for (sub, tenant) in &cognito {
        if let Some(tenant) = tenant {
            assert!(registered.contains(tenant), "{context}: a Cognito user ({sub}) of the unregistered tenant {tenant}");
        }
    }
    let users = all(app, false, "users").await;
    let roles = all(app, false, "roles").await;
    let claims = all(app, true, "emailIndex").await;
    for tenant in all(app, false, "tenants").await {
        let id = tenant_of(&tenant, "tenantId");
        let mine: Vec<&Document> = users.iter().filter(|u| tenant_of(u, "tenantId") == id).collect();
        let admin_role = roles.iter().find(|r| tenant_of(r, "tenantId") == id && r.get_str("name") == Ok("admin")).expect("an admin role");
        let admin_hex = admin_role.get_object_id("_id").unwrap().to_hex();
        let admins = mine.iter().filter(|u| u.get_array("roles").unwrap().iter().any(|r| r.as_str() == Some(&admin_hex))).count();
        let counters = tenant.get_document("counters").unwrap();
        assert_eq!(
            counters.get_i64("seats").unwrap_or_else(|_| i64::from(counters.get_i32("seats").unwrap())),
            mine.len() as i64,
            "{context}: seats"
        );
        assert_eq!(
            counters.get_i64("admins").unwrap_or_else(|_| i64::from(counters.get_i32("admins").unwrap())),
            admins as i64,
            "{context}: admins"
        );
        // The admin's Cognito user exists, carries this tenant, and the record links it.
        for user in &mine {
            let sub = user.get_str("cognitoUserId").unwrap();
            assert!(
                cognito.iter().any(|(s, t)| s == sub && t.as_deref() == Some(id.as_str())),
                "{context}: {id}'s user is not linked to its Cognito user"
            );
        }
        let system_roles = roles.iter().filter(|r| tenant_of(r, "tenantId") == id && r.get_bool("isSystem") == Ok(true)).count();
        assert_eq!(system_roles, 3, "{context}: {id}'s system roles");
        // Every Cognito user of the tenant is some record's.
        for (sub, _) in cognito.iter().filter(|(_, t)| t.as_deref() == Some(id.as_str())) {
            assert!(
                mine.iter().any(|u| u.get_str("cognitoUserId") == Ok(sub.as_str())),
                "{context}: {id} has a Cognito user ({sub}) that no record links"
            );
        }
        // The tenant holds exactly its records' e-mails in the global index.
        let tenant_id = shared::ids::TenantId::parse(id.clone()).unwrap();
        let keyring = app.db.keyring().unwrap();
        let mut expected = BTreeSet::new();
        for user in &mine {
            let user: shared::models::User = mongodb::bson::from_document((*user).clone()).unwrap();
            let email = users::person::email(&app.db, &tenant_id, &user).await.unwrap();
            expected.insert(keyring.global_email_index(&email).await.unwrap());
        }
        let held: BTreeSet<String> = claims.iter().filter(|c| tenant_of(c, "tenantId") == id).map(|c| tenant_of(c, "_id")).collect();
        assert_eq!(held, expected, "{context}: {id}'s global e-mail claims are its records' e-mails");
    }
    let names: Vec<String> = all(app, false, "tenants").await.iter().map(|t| tenant_of(t, "name")).collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{context}: a second tenant of one onboarding: {names:?}");
}
