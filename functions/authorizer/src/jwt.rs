//! Verifies Cognito JWTs as API Gateway's Cognito authorizer does: RS256 against the pool's
//! JWKS, with `iss`, audience or client id, `token_use`, `exp` and any `nbf` all checked. The authorizer
//! Lambda and the local API both use it.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use shared::config::CognitoConfig;
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

/// Why a token was refused. The client only ever sees "Unauthorized".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("unknown signing key")]
    UnknownKey,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token_use must be id or access")]
    WrongUse,
    #[error("the token was issued for another app client")]
    WrongClient,
    #[error("could not fetch the JWKS: {0}")]
    Jwks(String),
}

/// The pool's keys, refreshed when a token names an unknown key (at most every 30 s).
pub struct Verifier {
    config: CognitoConfig,
    /// Made on the first fetch, not at cold start: most warm calls never fetch.
    http: OnceLock<reqwest::Client>,
    keys: RwLock<(HashMap<String, DecodingKey>, Option<Instant>)>,
}

const REFRESH_EVERY: Duration = Duration::from_secs(30);

impl Verifier {
    /// A verifier for the configured pool; keys are fetched on first use.
    pub fn new(config: CognitoConfig) -> Self {
        Self { config, http: OnceLock::new(), keys: RwLock::new((HashMap::new(), None)) }
    }

    async fn refresh(&self) -> Result<(), TokenError> {
        let recently = self.keys.read().expect("poisoned").1.is_some_and(|at| at.elapsed() < REFRESH_EVERY);
        if recently {
            return Ok(());
        }
        let http = self
            .http
            .get_or_init(|| reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_else(|_| reqwest::Client::new()));
        let set: JwkSet = http
            .get(&self.config.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| TokenError::Jwks(e.to_string()))?
            .json()
            .await
            .map_err(|e| TokenError::Jwks(e.to_string()))?;
        let keys = set.keys.iter().filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?))).collect();
        *self.keys.write().expect("poisoned") = (keys, Some(Instant::now()));
        Ok(())
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().expect("poisoned").0.get(kid).cloned()
    }

    /// The verified claims of a token taken from an `Authorization` header value (`Bearer x`
    /// or the bare token, as the Cognito authorizer accepts).
    pub async fn verify(&self, header: Option<&str>) -> Result<Map<String, Value>, TokenError> {
        let token = header.map(|h| h.trim()).map(|h| h.strip_prefix("Bearer ").unwrap_or(h).trim()).filter(|t| !t.is_empty());
        let token = token.ok_or(TokenError::Missing)?;
        let header = decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::Malformed("only RS256 is accepted".into()));
        }
        let kid = header.kid.ok_or_else(|| TokenError::Malformed("no kid".into()))?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                self.refresh().await?;
                self.key(&kid).ok_or(TokenError::UnknownKey)?
            }
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_exp = true;
        // A token not yet valid is refused (Cognito's own carry no `nbf`; one that does means
        // what it says).
        validation.validate_nbf = true;
        validation.leeway = 0;
        // ID tokens carry the client in `aud`, access tokens in `client_id`: checked below.
        validation.validate_aud = false;
        let claims = decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| TokenError::Invalid(e.to_string()))?.claims;
        let client = match claims.get("token_use").and_then(Value::as_str) {
            Some("id") => claims.get("aud"),
            Some("access") => claims.get("client_id"),
            _ => return Err(TokenError::WrongUse),
        };
        if client.and_then(Value::as_str) != Some(self.config.client_id.as_str()) {
            return Err(TokenError::WrongClient);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    /// A 2048-bit RSA key pair made for these tests alone: no pool, local or deployed, trusts it.
    const TEST_PRIVATE_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\n\
MIIEpAIBAAKCAQEAx42ALCmfKPfeFw0jKlQStqPjNYAA2CweVGFT5/KUU+xM64Fy\n\
0UrJ80OOvj2DdiLxQ1eM0usTg7SRqYQCiZB/hWT/dFvylXV/j87pbJZFtohBjuII\n\
sjVP7ACNRd7Bs0iZ50F/SH+KPyNQx2cVHioOJJrBz219Fzu3bNqId0OZCQy6abkH\n\
7FQpK/H3xVG7wakexbmcdjS/7HfyqXvD/KixBSywmrvqB7+/7bQ0I/pCMimwoPeb\n\
HRei+00/a+yEzqWGQwMVqQfi0b7MXXXouUQbi+q9dnAfmu3RT3Nveofw7o6fDUd1\n\
Nqn+lvHhRGIYNbHuko6g5EK7lp43/aKroDbZ4wIDAQABAoIBAALVDnjR/b56R3kt\n\
SGP9PdIWIQ9Cf1Xnc7tqhuMtDWTkNDKdgOXZOWTjVGnSfAStD0k6O2HyUIcXL4AS\n\
mGn1FpJBR4znvIQu3ujJci+xMaZwaE8hBH2UWyDe4HfEPHHmeboPXcFHf3dQ8YBl\n\
r/uLHkNFEl4hetvduZyTvMnF4wH+rqiejeZ2qK9pwz6MBMBxzHskDOZHyg8F4mq1\n\
AgSQJ/314cKqO7G5cP0XSMB0QeOouXawYeYP/F7cFsO05Ur0RjZk4b72SG/d31F7\n\
m4x08ERRB2ldLN5fmrLCLhK1+LApCyEOii2h5o/Xp7AOcnUVET+LSpkCLFCdCwPp\n\
nrAwSK0CgYEA7823Wvca8nTeEp3dCEPGyR2jBC48vFtcV2wfZCjL6WZI+EgkXU9W\n\
WdMuVGNoy1z1yHQJcRaBwpnypcCd1uLg9jKfTWQhLtzk+HAF2BLAOF0MEL5F+vlv\n\
A2wAdQqQ3toKLyGNpHq8YeGI8K/Lwnfwa2SRWsGQLpjh9pn6ZCyika8CgYEA1QfV\n\
f1u5+bv0SxVnCpvegIQGnvqUhT8zJ3wV8q77IWbfBr9OMlKLDfqFu9y61gkwHKDu\n\
jYhiG5hRNWhuSK53l9DJwiphYwvuGOjqwiY4div9hzoukwa82LSmQuVhPc3Enwwn\n\
vyoWBBQSVD5QkCAj27lJDtNcFrScqVe9ZbuCzA0CgYBez0+5+E7AI3KVm7KDDQDw\n\
DPahtYIv2lM1ATucBwEv40/gUe2GstJqKzN7C96n4LYQLch53LMq9GDaJcCB8CuP\n\
S05uc7Mm6xDgJLI6zpcO8cLOb9wNMUcx7CZ2H9pNMZmrLrHooNoQPPI+btK5rV/x\n\
pc5OOo89zRYxwIkdyAPyYwKBgQCXK2n7aHH+n7vplBR82ML527Z/Fj5Sl9iLCmjg\n\
v/8BYuic9yBcYWq/zqkb+LS0sexsRF9EHCXSgzINfj/UX8oJ92VU3ZIiIRMiphYB\n\
E/I5GVpdnZHzT3KvLPJWwkNRAjWmz49c/laFKmEfWuD8hXIst7z6Qk405pHNMa/7\n\
Ayb7+QKBgQCzX44oaZ8XSCRTN3Oeb9pZ6vS1h88o79dJKe9eMY5/yzjhZxsBbqb1\n\
LuQ1NuDV9nWwHR2lBjRGaq55Ix6kvb9nv1iVyIm4x9+qKwKVGJ1v9Yq2aYfFYBYs\n\
HUGavd7vZbsDM4yNJ2u00O1H3jZq3k28EmdCxrgQof5zbtMoFsIwyQ==\n\
-----END RSA PRIVATE KEY-----";
    const TEST_PUBLIC_KEY: &str = "-----BEGIN RSA PUBLIC KEY-----\n\
MIIBCgKCAQEAx42ALCmfKPfeFw0jKlQStqPjNYAA2CweVGFT5/KUU+xM64Fy0UrJ\n\
80OOvj2DdiLxQ1eM0usTg7SRqYQCiZB/hWT/dFvylXV/j87pbJZFtohBjuIIsjVP\n\
7ACNRd7Bs0iZ50F/SH+KPyNQx2cVHioOJJrBz219Fzu3bNqId0OZCQy6abkH7FQp\n\
K/H3xVG7wakexbmcdjS/7HfyqXvD/KixBSywmrvqB7+/7bQ0I/pCMimwoPebHRei\n\
+00/a+yEzqWGQwMVqQfi0b7MXXXouUQbi+q9dnAfmu3RT3Nveofw7o6fDUd1Nqn+\n\
lvHhRGIYNbHuko6g5EK7lp43/aKroDbZ4wIDAQAB\n\
-----END RSA PUBLIC KEY-----";
    const KID: &str = "test-only";
    const ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_test";

    /// A verifier that already holds the test key, so that nothing is fetched.
    fn verifier() -> Verifier {
        let verifier = Verifier::new(CognitoConfig {
            region: "us-east-1".into(),
            user_pool_id: "us-east-1_test".into(),
            client_id: "client".into(),
            issuer: ISSUER.into(),
            jwks_url: "http://127.0.0.1:9/no-jwks".into(),
        });
        let key = DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes()).unwrap();
        verifier.keys.write().unwrap().0.insert(KID.into(), key);
        verifier
    }

    /// An ID token signed with the test key, valid but for `extra`'s claims.
    fn token(extra: Value) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let mut claims = json!({"sub": "u", "iss": ISSUER, "aud": "client", "token_use": "id", "exp": now + 3600, "iat": now});
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let header = Header { kid: Some(KID.into()), ..Header::new(Algorithm::RS256) };
        encode(&header, &claims, &EncodingKey::from_rsa_pem(TEST_PRIVATE_KEY.as_bytes()).unwrap()).unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    #[tokio::test]
    async fn a_token_whose_nbf_is_in_the_future_is_refused() {
        let verifier = verifier();
        assert!(verifier.verify(Some(&token(json!({})))).await.is_ok(), "no nbf, as Cognito issues them");
        assert!(verifier.verify(Some(&token(json!({"nbf": now() - 60})))).await.is_ok(), "an nbf passed");
        let early = verifier.verify(Some(&format!("Bearer {}", token(json!({"nbf": now() + 300}))))).await.unwrap_err();
        assert!(matches!(&early, TokenError::Invalid(why) if why.contains("ImmatureSignature")), "{early:?}");
        let malformed = verifier.verify(Some(&token(json!({"nbf": "soon"})))).await.unwrap_err();
        assert!(matches!(malformed, TokenError::Invalid(_)), "{malformed:?}");
    }
}
