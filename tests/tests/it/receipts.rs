//! The erasure receipt (docs/ARCHITECTURE.md §22): signed through `shared::receipt::sign` by
//! moto's KMS (Python's `cryptography` makes the signature), served by
//! `GET /tenants/{tenantId}/receipt`, and verified here offline with RustCrypto's `p256`, a
//! library that had no part in signing it: only the public key the route gives is used.

use data_encoding::BASE64;
use mongodb::bson::{doc, DateTime};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use reqwest::Method;
use serde_json::Value;
use shared::ids::TenantId;
use shared::receipt::{BackupBounds, Receipt, ReceiptFacts, SignedReceipt};
use tenancy_tests::app::{spawn_app, TestApp};

/// A receipt of `tenant` as a purge would state it.
fn receipt_of(tenant: &TenantId) -> Receipt {
    let now = DateTime::now().timestamp_millis();
    let facts = ReceiptFacts {
        tenant_id: tenant.clone(),
        offboarded_at: DateTime::from_millis(now - 30 * 86_400_000),
        offboarded_by: "ops-sub".into(),
        purged_at: DateTime::from_millis(now),
        deleted: [("auditLogs".to_owned(), 41), ("roles".to_owned(), 4), ("users".to_owned(), 3)].into_iter().collect(),
        cognito_users_deleted: 3,
        keys_shredded_at: DateTime::from_millis(now - 2_000),
    };
    Receipt::new(facts, &BackupBounds::default())
}

/// Writes `tenant`'s tombstone straight into `tenantTombstones`, with `receipt` as stored.
async fn plant(app: &TestApp, tenant: &TenantId, receipt: Option<mongodb::bson::Document>) {
    let now = DateTime::now();
    let mut tombstone = doc! {"_id": tenant.as_str(), "offboardedAt": now, "offboardedBy": "ops-sub", "purgedAt": now};
    if let Some(receipt) = receipt {
        tombstone.insert("receipt", receipt);
    }
    tenancy_tests::raw_collection(&app.db, "tenantTombstones").await.insert_one(tombstone).await.expect("the tombstone");
}

fn decoded(value: &Value) -> Vec<u8> {
    BASE64.decode(value.as_str().unwrap_or_else(|| panic!("not a string: {value}")).as_bytes()).expect("base64")
}

/// Whether `signature` (DER) over `payload` verifies under `public_key` (DER SubjectPublicKeyInfo).
fn verifies(public_key: &[u8], payload: &[u8], signature: &[u8]) -> bool {
    let key = VerifyingKey::from_public_key_der(public_key).expect("a P-256 public key");
    let signature = Signature::from_der(signature).expect("a DER ECDSA signature");
    key.verify(payload, &signature).is_ok()
}

#[tokio::test]
async fn a_purged_tenant_s_receipt_verifies_offline_with_another_library_and_a_tampered_one_does_not() {
    let app = spawn_app().await;
    let tenant = TenantId::generate();
    let receipt = receipt_of(&tenant);
    let signer = tenancy_tests::receipt_signer().await;
    let stored = shared::receipt::sign(&*signer, &receipt).await.expect("moto signs");
    plant(&app, &tenant, Some(stored.clone())).await;

    let ops = app.superadmin().await;
    let (status, _, body) = app.call(app.request(Method::GET, &format!("/tenants/{tenant}/receipt"), Some(&ops))).await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    let mut keys: Vec<&str> = data.as_object().expect("data").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["keyId", "payload", "publicKey", "receipt", "signature", "signingAlgorithm"], "{data}");
    assert_eq!(data["keyId"], tenancy_tests::receipt_key_id().await);
    assert_eq!(data["signingAlgorithm"], "ECDSA_SHA_256");
    let stored = SignedReceipt::from_document(&stored).unwrap();
    assert_eq!((data["payload"].as_str(), data["signature"].as_str()), (Some(stored.payload.as_str()), Some(stored.signature.as_str())));
    assert_eq!(data["receipt"], serde_json::to_value(&receipt).unwrap(), "the payload, parsed");
    assert_eq!(data["receipt"]["unrecoverableAfter"], receipt.unrecoverable_after);
    assert_eq!(data["receipt"]["neverSealed"].as_array().map(Vec::len), Some(shared::receipt::NEVER_SEALED.len()));

    // Offline: the bytes, the signature and the public key from the answer, nothing else.
    let (payload, signature, public_key) = (decoded(&data["payload"]), decoded(&data["signature"]), decoded(&data["publicKey"]));
    assert_eq!(payload, receipt.canonical_bytes().unwrap(), "the bytes signed are the canonical receipt");
    assert!(payload.len() <= shared::receipt::MAX_RECEIPT_BYTES);
    assert!(verifies(&public_key, &payload, &signature), "the receipt verifies under the served public key");

    // One changed count, or another tenant's receipt under this signature, fails.
    let text = String::from_utf8(payload.clone()).unwrap();
    let tampered = text.replace("\"cognitoUsersDeleted\":3", "\"cognitoUsersDeleted\":0");
    assert_ne!(tampered, text, "the test changed the payload");
    assert!(!verifies(&public_key, tampered.as_bytes(), &signature), "a tampered payload must not verify");
    let other = receipt_of(&TenantId::generate()).canonical_bytes().unwrap();
    assert!(!verifies(&public_key, &other, &signature), "the signature is of this receipt only");
    let mut flipped = payload.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert!(!verifies(&public_key, &flipped, &signature));
}

#[tokio::test]
async fn only_a_superadmin_reads_a_receipt_and_a_tenant_that_was_not_purged_has_none() {
    let app = spawn_app().await;
    let purged = TenantId::generate();
    let stored = shared::receipt::sign(&*tenancy_tests::receipt_signer().await, &receipt_of(&purged)).await.unwrap();
    plant(&app, &purged, Some(stored)).await;
    let (admin, live) = app.tenant_with_admin("basic", "admin@receipts.example").await;
    let ops = app.superadmin().await;
    let get = |tenant: &str, token: &str| app.request(Method::GET, &format!("/tenants/{tenant}/receipt"), Some(token));

    // A tenant's own admin is no superadmin, for its own tenant or the purged one.
    for tenant in [live.as_str(), purged.as_str()] {
        let (status, _, body) = app.call(get(tenant, &admin)).await;
        assert_eq!(status, 403, "{tenant}: {body}");
    }
    // (Those refusals are audited in the admin's own tenant, as every member's 403 is.)
    let entries = tenancy_tests::raw_collection(&app.db, "auditLogs").await;
    let logged = entries.count_documents(doc! {"tenantId": &live}).await.unwrap();
    // A live tenant, an unknown id: no tombstone, no receipt.
    for tenant in [live.clone(), TenantId::generate().to_string()] {
        let (status, _, body) = app.call(get(&tenant, &ops)).await;
        assert_eq!(status, 404, "{tenant}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| m.contains("not purged")), "{body}");
    }
    // A tombstone the reconciliation wrote from the vault's side carries no receipt.
    let restored = TenantId::generate();
    plant(&app, &restored, None).await;
    let (status, _, body) = app.call(get(restored.as_str(), &ops)).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = app.call(get("x", &ops)).await;
    assert_eq!(status, 400, "a malformed id: {body}");
    let (status, _, body) = app.call(get(purged.as_str(), &ops)).await;
    assert_eq!(status, 200, "{body}");
    // Not audited: the superadmin's reads wrote nothing into the live tenant's log.
    assert_eq!(entries.count_documents(doc! {"tenantId": &live}).await.unwrap(), logged);
}

#[tokio::test]
async fn a_receipt_signed_under_another_key_is_refused_rather_than_served_with_the_wrong_public_key() {
    let app = spawn_app().await;
    let tenant = TenantId::generate();
    let stored = shared::receipt::sign(&*tenancy_tests::receipt_signer().await, &receipt_of(&tenant)).await.unwrap();
    let mut elsewhere = stored.clone();
    elsewhere.insert("keyId", "another-key");
    plant(&app, &tenant, Some(elsewhere)).await;
    let ops = app.superadmin().await;
    let (status, _, body) = app.call(app.request(Method::GET, &format!("/tenants/{tenant}/receipt"), Some(&ops))).await;
    assert_eq!(status, 500, "{body}");
}
