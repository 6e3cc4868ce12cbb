//! Verifies Cognito JWTs as API Gateway's Cognito authorizer does: RS256 against the pool's
//! JWKS, with `iss`, audience or client id, `token_use` and `exp` all checked. The authorizer
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
        let http = self.http.get_or_init(|| {
            reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_else(|_| reqwest::Client::new())
        });
        let set: JwkSet = http
            .get(&self.config.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| TokenError::Jwks(e.to_string()))?
            .json()
            .await
            .map_err(|e| TokenError::Jwks(e.to_string()))?;
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
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
        validation.leeway = 0;
        // ID tokens carry the client in `aud`, access tokens in `client_id`: checked below.
        validation.validate_aud = false;
        let claims = decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?
            .claims;
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
