//! Newtypes for ids and validated strings. A raw string never reaches the data layer: each type
//! is built with `parse`/`TryFrom`, which says precisely what was wrong.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a value could not be parsed into one of these types. The message is safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps a value.
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
                let check: fn(String) -> Result<String, InvalidValue> = $check;
                check(value.into()).map(Self)
            }
            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, InvalidValue> {
                Self::parse(value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// A tenant's public id: 3 to 64 of `A-Z a-z 0-9 _ -`. New ids come from [`TenantId::generate`].
    TenantId,
    |s| {
        let ok = (3..=64).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok { Ok(s) } else { Err(InvalidValue("tenantId must be 3-64 characters of A-Z, a-z, 0-9, '_' or '-'".into())) }
    }
);

impl TenantId {
    /// A new id from the operating system's CSPRNG: `tn_` and 128 random bits in base32.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
        Self(format!("tn_{}", base32_lower(&bytes)))
    }
}

/// RFC 4648 base32, lower case, no padding: ids that are URL- and filename-safe.
fn base32_lower(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(bytes).to_ascii_lowercase()
}

/// An e-mail address, trimmed and lower-cased; at most 254 characters, one `@`, a dotted domain.
/// [`Email::parse`] checks new input strictly; a value read back from the database is only
/// normalised and checked for its basic shape, so that an address an earlier, laxer rule let
/// in never makes a stored record unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct Email(String);

impl Email {
    /// Validates and wraps new input.
    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let check: fn(String) -> Result<String, InvalidValue> = |s| {
            let s = s.trim().to_ascii_lowercase();
            let valid = s.len() <= 254
                && s.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
                    && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                    // The common, conservative subset of RFC 5322 that every mail system and
                    // Cognito accept: no quoting, no backticks, braces or other rarities.
                    && local.bytes().all(|b| b.is_ascii_alphanumeric() || b".!#%&'*+/=?^_~-".contains(&b))
                    && !local.starts_with('.')
                    && !local.ends_with('.')
                    && !local.contains("..")
                });
            if valid {
                Ok(s)
            } else {
                Err(InvalidValue("must be a valid e-mail address".into()))
            }
        };
        check(value.into()).map(Self)
    }
    /// The validated string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A stored (or decrypted) value: normalised, and refused only if it is not shaped like an
    /// address at all.
    pub fn stored(value: String) -> Result<Self, InvalidValue> {
        let s = value.trim().to_ascii_lowercase();
        let shaped = s.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if shaped {
            Ok(Self(s))
        } else {
            Err(InvalidValue("a stored e-mail address is malformed".into()))
        }
    }
}

impl TryFrom<String> for Email {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, InvalidValue> {
        Self::parse(value)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Email::stored(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> String {
        value.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

string_newtype!(
    /// A DNS domain name, lower-cased: labels of `a-z 0-9 -`, at least two, a TLD of letters.
    Domain,
    |s| {
        let s = s.trim().to_ascii_lowercase();
        let labels: Vec<&str> = s.split('.').collect();
        let valid = s.len() <= 253
            && labels.len() >= 2
            && labels.iter().all(|l| {
                (1..=63).contains(&l.len())
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
            && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_lowercase()));
        if valid { Ok(s) } else { Err(InvalidValue("must be a domain name such as example.com".into())) }
    }
);

string_newtype!(
    /// A permission `action:resource` (`read:users`, `read:*`) or the wildcard `*`.
    Permission,
    |s| {
        let part = |p: &str| {
            !p.is_empty() && p.len() <= 64 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        let valid = s == "*"
            || s.split_once(':').is_some_and(|(action, resource)| part(action) && (resource == "*" || part(resource)));
        if valid { Ok(s) } else { Err(InvalidValue("permission must be '*' or 'action:resource'".into())) }
    }
);

impl Permission {
    /// Whether this granted permission covers `wanted`: `*` covers all, `read:*` covers every
    /// `read:` permission, anything else only itself.
    pub fn covers(&self, wanted: &str) -> bool {
        if self.0 == "*" || self.0 == wanted {
            return true;
        }
        match (self.0.strip_suffix(":*"), wanted.split_once(':')) {
            (Some(action), Some((wanted_action, _))) => action == wanted_action,
            _ => false,
        }
    }
}

/// A MongoDB ObjectId taken from a path or body: a malformed one is a 400, never a 500.
pub fn parse_object_id(value: &str) -> Result<mongodb::bson::oid::ObjectId, InvalidValue> {
    mongodb::bson::oid::ObjectId::parse_str(value).map_err(|_| InvalidValue("must be a 24-character hexadecimal ObjectId".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tenant_ids_are_valid_and_distinct() {
        let a = TenantId::generate();
        let b = TenantId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 3 + 26);
        assert!(TenantId::parse(a.as_str()).is_ok());
    }

    #[test]
    fn tenant_ids_reject_operators_and_blanks() {
        for bad in ["", "  ", "ab", "$ne", "a.b.c", "tn a", &"x".repeat(65)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base32_matches_rfc_4648() {
        assert_eq!(base32_lower(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn a_stored_address_an_earlier_rule_let_in_still_reads() {
        let stored: Email = serde_json::from_str("\"A..B@x.example\"").unwrap();
        assert_eq!(stored.as_str(), "a..b@x.example");
        assert!(Email::parse("a..b@x.example").is_err(), "new input is checked strictly");
        assert!(serde_json::from_str::<Email>("\"no at sign\"").is_err());
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse(" Admin@Example.COM ").unwrap().as_str(), "admin@example.com");
        assert_eq!(Email::parse("O'Brien+tag@x.example").unwrap().as_str(), "o'brien+tag@x.example");
        for bad in [
            "",
            "a",
            "a@b",
            "@b.com",
            "a@@b.com",
            "a@b..com",
            "$ne@x.com",
            "a@.b.com",
            "`140+@l5.example",
            ".a@x.example",
            "a..b@x.example",
            "a{b}@x.example",
            "a\"b@x.example",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails_with_non_ascii_or_control_characters_are_refused() {
        let bad =
            ["a\u{202E}b@x.example", "a\u{200B}b@x.example", "zoë@x.example", "a\tb@x.example", "a\u{7}b@x.example", "a@x\u{202E}.example"];
        for bad in bad {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn domains_are_checked() {
        assert_eq!(Domain::parse("Acme.Example").unwrap().as_str(), "acme.example");
        for bad in ["localhost", "-a.com", "a-.com", "a..com", "a.c", "a.b1", "ex ample.com"] {
            assert!(Domain::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wildcards_match_as_documented() {
        let p = |s: &str| Permission::parse(s).unwrap();
        assert!(p("*").covers("delete:users"));
        assert!(p("read:*").covers("read:users"));
        assert!(!p("read:*").covers("update:users"));
        assert!(p("read:users").covers("read:users"));
        assert!(!p("read:users").covers("read:roles"));
        assert!(!p("read:users").covers("read:*"));
    }

    #[test]
    fn permissions_reject_malformed_strings() {
        for bad in ["", "read", "read:", ":users", "*:users", "read:users:x", "read :users"] {
            assert!(Permission::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_object_ids_are_rejected() {
        assert!(parse_object_id("abc").is_err());
        assert!(parse_object_id("65a1b2c3d4e5f60718293a4b").is_ok());
    }
}
