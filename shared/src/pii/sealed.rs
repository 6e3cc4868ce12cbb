//! The stored form of one personal-data value, and the two primitives behind it: AES-256-GCM
//! under a data key, with the tenant, collection and field as associated data, and the HMAC
//! blind index (docs/ARCHITECTURE.md §20).

use super::{Field, PiiError};
use crate::ids::TenantId;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, KeyInit as _, Mac};
use mongodb::bson::{spec::BinarySubtype, Binary, Bson};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The layout version of a sealed value (the first byte).
const FORMAT: u8 = 1;
/// The algorithm byte: AES-256-GCM with a 96-bit random nonce and a 128-bit tag.
const AES_256_GCM: u8 = 1;
const NONCE_LEN: usize = 12;
/// format, algorithm, key version (u32, big-endian), nonce.
const HEADER_LEN: usize = 2 + 4 + NONCE_LEN;
/// The BSON binary subtype of sealed values: user-defined, so no driver or tool mistakes the
/// bytes for a UUID or for text.
const SUBTYPE: u8 = 0x80;

/// A 256-bit key in memory only. Its bytes are zeroed when it is dropped, and never printed.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl Key {
    /// A key from exactly 32 bytes (a KMS data key's plaintext).
    pub fn from_slice(bytes: &[u8]) -> Result<Key, PiiError> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| PiiError::Kms("a data key that is not 256 bits".into()))?;
        Ok(Key(bytes))
    }
    fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // Volatile, so that the compiler cannot drop a write to memory about to be freed.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// A personal-data value as stored: a versioned AES-256-GCM ciphertext, or (only in records
/// written before encryption, until the migration has sealed them) the old plaintext. There is
/// no way to make one from plaintext except sealing it; its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Cipher(Vec<u8>),
    Legacy(String),
}

impl Sealed {
    /// The data-key version it was sealed under; `None` for an unencrypted legacy value.
    pub fn key_version(&self) -> Option<u32> {
        match &self.0 {
            Repr::Cipher(bytes) if bytes.len() >= HEADER_LEN => Some(u32::from_be_bytes(bytes[2..6].try_into().expect("4 bytes"))),
            _ => None,
        }
    }

    /// Whether this is an unencrypted value from before the migration.
    pub fn is_legacy(&self) -> bool {
        matches!(self.0, Repr::Legacy(_))
    }

    /// The stored BSON value, for conditional writes that pin what they read.
    pub fn to_bson(&self) -> Bson {
        match &self.0 {
            Repr::Cipher(bytes) => Bson::Binary(Binary { subtype: BinarySubtype::UserDefined(SUBTYPE), bytes: bytes.clone() }),
            Repr::Legacy(text) => Bson::String(text.clone()),
        }
    }

    /// Encrypts `plaintext` of `field` for `tenant` under `key` (its `version`), with a fresh
    /// random nonce.
    pub fn seal(key: &Key, version: u32, tenant: &TenantId, field: Field, plaintext: &str) -> Result<Sealed, PiiError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| PiiError::Kms(format!("no randomness for a nonce: {e}")))?;
        let aad = associated_data(tenant, field);
        let cipher = Aes256Gcm::new(key.bytes().into());
        let body = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: &aad })
            .map_err(|_| PiiError::Kms("encryption failed".into()))?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
        bytes.extend_from_slice(&[FORMAT, AES_256_GCM]);
        bytes.extend_from_slice(&version.to_be_bytes());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&body);
        Ok(Sealed(Repr::Cipher(bytes)))
    }

    /// Decrypts with `key`, which must be the key of [`Sealed::key_version`]. A value moved to
    /// another tenant or field, or altered in any byte, fails authentication. A legacy value is
    /// returned as it is.
    pub fn open(&self, key: &Key, tenant: &TenantId, field: Field) -> Result<String, PiiError> {
        let bytes = match &self.0 {
            Repr::Legacy(text) => return Ok(text.clone()),
            Repr::Cipher(bytes) => bytes,
        };
        if bytes.len() < HEADER_LEN + 16 || bytes[0] != FORMAT || bytes[1] != AES_256_GCM {
            return Err(PiiError::Integrity { field: field.path() });
        }
        let aad = associated_data(tenant, field);
        let cipher = Aes256Gcm::new(key.bytes().into());
        let plain = cipher
            .decrypt(Nonce::from_slice(&bytes[6..HEADER_LEN]), Payload { msg: &bytes[HEADER_LEN..], aad: &aad })
            .map_err(|_| PiiError::Integrity { field: field.path() })?;
        String::from_utf8(plain).map_err(|_| PiiError::Integrity { field: field.path() })
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key_version() {
            Some(v) => write!(f, "Sealed(v{v})"),
            None => f.write_str("Sealed(legacy)"),
        }
    }
}

impl Serialize for Sealed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_bson().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Sealed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Bson::deserialize(d)? {
            Bson::Binary(Binary { subtype: BinarySubtype::UserDefined(SUBTYPE), bytes }) => Ok(Sealed(Repr::Cipher(bytes))),
            Bson::String(text) => Ok(Sealed(Repr::Legacy(text))),
            _ => Err(serde::de::Error::custom("a personal-data field that is neither sealed nor text")),
        }
    }
}

/// What binds a ciphertext to its place: the tenant, the collection and the field.
fn associated_data(tenant: &TenantId, field: Field) -> Vec<u8> {
    format!("tenancy-pii\u{1f}{tenant}\u{1f}{}\u{1f}{}", field.collection(), field.path()).into_bytes()
}

/// The blind index of an e-mail under `key`: HMAC-SHA256 of the normalised address (lower
/// case, trimmed: what [`crate::ids::Email`] holds), base64url without padding. Equal e-mails
/// give equal indexes under one key, and nothing about the e-mail can be read back.
pub fn blind_index(key: &Key, email: &crate::ids::Email) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key.bytes()).expect("HMAC takes any key length");
    mac.update(b"email\x1f");
    mac.update(email.as_str().trim().to_lowercase().as_bytes());
    data_encoding::BASE64URL_NOPAD.encode(&mac.finalize().into_bytes())
}

/// HMAC-SHA256 under `key` of `purpose` and each part of `data`, every one length-prefixed so
/// that no two different inputs share an encoding; base64url without padding.
pub fn keyed_digest(key: &Key, purpose: &str, data: &[&[u8]]) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key.bytes()).expect("HMAC takes any key length");
    mac.update(b"digest\x1f");
    for part in std::iter::once(purpose.as_bytes()).chain(data.iter().copied()) {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    data_encoding::BASE64URL_NOPAD.encode(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Email;
    use mongodb::bson;

    fn key(byte: u8) -> Key {
        Key([byte; 32])
    }
    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_tenant_and_field() {
        let (k, a, b) = (key(7), tenant("tn_alpha"), tenant("tn_beta"));
        let sealed = Sealed::seal(&k, 1, &a, Field::UserEmail, "ada@example.test").unwrap();
        assert_eq!(sealed.open(&k, &a, Field::UserEmail).unwrap(), "ada@example.test");
        assert!(matches!(sealed.open(&k, &b, Field::UserEmail), Err(PiiError::Integrity { .. })), "moved to another tenant");
        assert!(matches!(sealed.open(&k, &a, Field::UserFirstName), Err(PiiError::Integrity { .. })), "moved to another field");
        assert!(matches!(sealed.open(&k, &a, Field::BillingEmail), Err(PiiError::Integrity { .. })), "moved to another collection");
        assert!(matches!(sealed.open(&key(8), &a, Field::UserEmail), Err(PiiError::Integrity { .. })), "another key");
    }

    #[test]
    fn any_altered_byte_fails_authentication() {
        let (k, a) = (key(1), tenant("tn_alpha"));
        let Bson::Binary(stored) = Sealed::seal(&k, 3, &a, Field::UserLastName, "Lovelace").unwrap().to_bson() else { panic!() };
        for i in 6..stored.bytes.len() {
            let mut bytes = stored.bytes.clone();
            bytes[i] ^= 0x01;
            let tampered: Sealed = bson::from_bson(Bson::Binary(Binary { subtype: stored.subtype, bytes })).unwrap();
            assert!(tampered.open(&k, &a, Field::UserLastName).is_err(), "byte {i} altered");
        }
    }

    #[test]
    fn the_stored_form_carries_format_algorithm_and_key_version_and_a_fresh_nonce() {
        let (k, a) = (key(2), tenant("tn_alpha"));
        let one = Sealed::seal(&k, 258, &a, Field::UserTitle, "CTO").unwrap();
        let two = Sealed::seal(&k, 258, &a, Field::UserTitle, "CTO").unwrap();
        assert_ne!(one, two, "a random nonce per value");
        assert_eq!(one.key_version(), Some(258));
        let Bson::Binary(b) = one.to_bson() else { panic!("sealed values are binary") };
        assert_eq!(b.subtype, BinarySubtype::UserDefined(0x80));
        assert_eq!(&b.bytes[..6], &[1, 1, 0, 0, 1, 2]);
        assert!(!String::from_utf8_lossy(&b.bytes).contains("CTO"));
        let back: Sealed = bson::from_bson(Bson::Binary(b)).unwrap();
        assert_eq!(back.open(&k, &a, Field::UserTitle).unwrap(), "CTO");
    }

    #[test]
    fn a_legacy_plaintext_reads_as_old_data_and_never_prints() {
        let legacy: Sealed = bson::from_bson(Bson::String("old@example.test".into())).unwrap();
        assert!(legacy.is_legacy());
        assert_eq!(legacy.key_version(), None);
        assert_eq!(legacy.open(&key(0), &tenant("tn_alpha"), Field::UserEmail).unwrap(), "old@example.test");
        assert_eq!(format!("{legacy:?}"), "Sealed(legacy)");
        assert!(bson::from_bson::<Sealed>(Bson::Int32(5)).is_err());
    }

    #[test]
    fn a_keyed_digest_separates_purposes_and_part_boundaries() {
        let k = key(9);
        let one = keyed_digest(&k, "idempotency", &[b"tn_a:sub", b"key-1"]);
        assert_eq!(one, keyed_digest(&k, "idempotency", &[b"tn_a:sub", b"key-1"]));
        assert_ne!(one, keyed_digest(&k, "request", &[b"tn_a:sub", b"key-1"]), "another purpose");
        assert_ne!(one, keyed_digest(&k, "idempotency", &[b"tn_a:subk", b"ey-1"]), "the same bytes split elsewhere");
        assert_ne!(one, keyed_digest(&key(10), "idempotency", &[b"tn_a:sub", b"key-1"]), "another key");
    }

    #[test]
    fn the_blind_index_is_stable_per_key_and_differs_across_keys() {
        let email = Email::parse("Ada@Example.TEST").unwrap();
        let same = Email::parse("ada@example.test").unwrap();
        assert_eq!(blind_index(&key(5), &email), blind_index(&key(5), &same));
        assert_ne!(blind_index(&key(5), &email), blind_index(&key(6), &email));
        assert!(!blind_index(&key(5), &email).contains("ada"));
        assert_eq!(blind_index(&key(5), &email).len(), 43);
    }
}
