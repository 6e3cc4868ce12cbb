//! The key itself: `tk_<keyId>_<secret>`. The key id is public (it names the key in URLs and
//! finds it at authentication); the secret is 32 bytes from the OS CSPRNG, base64url.
//!
//! **Why SHA-256 and not a password hash.** Slow hashes (bcrypt, scrypt, Argon2) exist to make
//! guessing a *low-entropy* secret expensive after a leak. These secrets are 256 uniformly random
//! bits: no dictionary applies, and a preimage search of 2^256 is out of reach at any hash speed.
//! A slow hash would add nothing but latency to every machine call, in front of every route.
//! The comparison is constant-time all the same, so that response timing reveals nothing of the
//! stored hash.

use mongodb::bson::oid::ObjectId;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every key starts with.
pub const PREFIX: &str = "tk_";
/// Random bytes in a secret.
pub const SECRET_BYTES: usize = 32;
/// Characters of a secret: 32 bytes in unpadded base64url.
pub const SECRET_CHARS: usize = 43;

/// A newly issued secret and the hash that is stored for it.
#[derive(Clone)]
pub struct Issued {
    pub secret: String,
    pub hash: String,
}

// The secret must never reach a log through `{:?}`.
impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("hash", &self.hash).finish_non_exhaustive()
    }
}

/// A new secret from the OS CSPRNG.
pub fn issue() -> Result<Issued, getrandom::Error> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes)?;
    let secret = data_encoding::BASE64URL_NOPAD.encode(&bytes);
    Ok(Issued { hash: hash(&secret), secret })
}

/// The whole key as the client holds it.
pub fn full_key(key_id: ObjectId, secret: &str) -> String {
    format!("{PREFIX}{}_{secret}", key_id.to_hex())
}

/// The public part of a key, shown in listings.
pub fn prefix_of(key_id: ObjectId) -> String {
    format!("{PREFIX}{}", key_id.to_hex())
}

/// SHA-256 of the secret, lowercase hex: what is stored.
pub fn hash(secret: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(secret.as_bytes())[..])
}

/// What a presented secret is compared with when its key id names no key: SHA-256 of the
/// empty string, which no well-formed (43-character) secret hashes to. Comparing with it costs
/// what comparing with a stored hash costs, so that an unknown id and a known id with a wrong
/// secret take the same time (docs/ARCHITECTURE.md §13).
pub const DUMMY_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A key as presented: its id and its secret, both well-formed. Anything else is `None`, before
/// any database read.
#[derive(Clone, PartialEq, Eq)]
pub struct Presented {
    pub key_id: ObjectId,
    secret: String,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl Presented {
    /// Parses `tk_<24 hex>_<43 base64url>`.
    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.trim().strip_prefix(PREFIX)?;
        let (id, secret) = (rest.get(..24)?, rest.get(24..)?.strip_prefix('_')?);
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        let b64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if !id.chars().all(hex) || secret.len() != SECRET_CHARS || !secret.chars().all(b64url) {
            return None;
        }
        Some(Self { key_id: ObjectId::parse_str(id).ok()?, secret: secret.to_owned() })
    }

    /// Whether the secret hashes to `stored` (hex), compared in constant time: every byte of
    /// both digests is looked at whatever the first difference.
    pub fn matches(&self, stored: &str) -> bool {
        let Ok(stored) = data_encoding::HEXLOWER.decode(stored.as_bytes()) else { return false };
        let presented = Sha256::digest(self.secret.as_bytes());
        stored.len() == presented.len() && bool::from(presented[..].ct_eq(&stored[..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_key_parses_back_and_matches_only_its_own_hash() {
        let id = ObjectId::new();
        let issued = issue().unwrap();
        assert_eq!(issued.secret.len(), SECRET_CHARS);
        let key = full_key(id, &issued.secret);
        let presented = Presented::parse(&key).expect("a key we issued parses");
        assert_eq!(presented.key_id, id);
        assert!(presented.matches(&issued.hash));
        let other = issue().unwrap();
        assert!(!presented.matches(&other.hash));
        assert!(!presented.matches("not hex"));
        assert!(!presented.matches(""));
        assert!(!format!("{presented:?} {issued:?}").contains(&issued.secret), "secrets stay out of Debug");
    }

    #[test]
    fn malformed_keys_are_refused_before_any_lookup() {
        let good = full_key(ObjectId::new(), &issue().unwrap().secret);
        let too_short = &good[..good.len() - 1];
        let bad_id = good.replacen("tk_", "tk_Z", 1);
        let bad_prefix = good.replacen("tk_", "sk_", 1);
        let bad_char = format!("{}!", &good[..good.len() - 1]);
        let operator = format!("tk_{{\"$ne\":1}}_{}", "a".repeat(43));
        for bad in ["", "tk_", too_short, &bad_id, &bad_prefix, &bad_char, &operator] {
            assert!(Presented::parse(bad).is_none(), "{bad}");
        }
    }

    /// The comparison goes through `subtle`'s constant-time equality over whole digests, never
    /// `==` on strings (which stops at the first differing byte).
    #[test]
    fn the_comparison_is_over_whole_digests() {
        let issued = issue().unwrap();
        let presented = Presented::parse(&full_key(ObjectId::new(), &issued.secret)).unwrap();
        let mut flipped_last = data_encoding::HEXLOWER.decode(issued.hash.as_bytes()).unwrap();
        *flipped_last.last_mut().unwrap() ^= 1;
        assert!(!presented.matches(&data_encoding::HEXLOWER.encode(&flipped_last)), "a difference in the last byte counts");
        let truncated = &issued.hash[..62];
        assert!(!presented.matches(truncated), "a shorter stored hash never matches");
    }

    #[test]
    fn the_dummy_digest_is_a_real_digest_no_secret_matches() {
        assert_eq!(DUMMY_HASH, hash(""));
        let presented = Presented::parse(&full_key(ObjectId::new(), &issue().unwrap().secret)).unwrap();
        assert!(!presented.matches(DUMMY_HASH));
    }
}
