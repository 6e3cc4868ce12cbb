//! The one REQUEST authorizer of the tenant-scoped routes (docs/ARCHITECTURE.md §13). A REST
//! API method has exactly one authorizer, and machines need the same routes as people, so it
//! accepts either a Cognito JWT (`Authorization`) or an API key (`x-api-key`), and hands the
//! function one context shape for both, which `shared::identity` reads.
//!
//! For a key it checks, in order: the key parses; it exists, by its global id; the secret's
//! hash matches in constant time (the current secret, or the one a rotation replaced while its
//! grace lasts); the key is active and not expired. An id that names no key goes the same way
//! up to and including the comparison (one key read, two comparisons with a dummy digest) and
//! spends the same refusal budgets, so that neither time nor round trips tell it from a known
//! key with a wrong secret; only a known key's audit entry, inside its budgets, differs. It
//! then counts the call in the key's minute, hour and day windows with one conditional update.
//! A full window does not deny: an authorizer can only allow or deny, and a deny is a 403, so
//! the verdict rides in the context (`retryAfter`) and admission answers the 429 before it
//! counts anything. The tenant's status and monthly quota stay with admission.
//!
//! A warm key call costs two round trips: the key, then the windows. `lastUsedAt` adds a third,
//! concurrent with the second, at most once a minute per key.
//!
//! This crate is the gateway's authorizer, not a bounded context (like `tools/local-api`, it
//! serves every context): it admits people and keys, and owns the keys' request windows (the
//! global `apiKeyWindows`, through a [`shared::db::GlobalStore`]). The key lookup and its
//! `lastUsedAt` are `shared`'s isolation machinery (`Db::key_auth`): only that and the api-keys
//! context write `apiKeys`.

pub mod jwt;

use api_keys::secret::{Presented, DUMMY_HASH};
use jwt::{TokenError, Verifier};
use lru::LruCache;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use serde_json::{json, Map, Value};
use shared::audit::{record_key_refusal, Action, AuditEvent};
use shared::clock::{day_window, hour_window, minute_window};
use shared::config::CognitoConfig;
use shared::db::{Db, DbError, GlobalCollection, GlobalStore, KeyAuth, SystemContext, WindowCounts};
use shared::event_kind::{EventFunction, EventKind};
use shared::http::RequestMeta;
use shared::models::{ApiKey, ApiKeyStatus};
use std::num::NonZeroUsize;
use std::sync::{LazyLock, Mutex};

/// The authorizer's function: API Gateway's REQUEST authorizer events.
pub const FUNCTION: EventFunction = EventFunction { logical_id: "AuthorizerFunction", takes: &[EventKind::ApiGatewayAuthorizer] };

/// The header an API key arrives in.
pub const API_KEY_HEADER: &str = "x-api-key";
/// `lastUsedAt` is written at most this often per key.
pub const LAST_USED_EVERY_MS: i64 = 60_000;

/// What the authorizer decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Let the call through to the function, with this principal and context.
    Allow { principal_id: String, context: Map<String, Value> },
    /// Refuse it: API Gateway answers 401. The reason is for logs only.
    Unauthorized(&'static str),
}

/// The authorizer could not decide (the database or the JWKS is unreachable): a 5xx, never an
/// allow.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizerFailure {
    #[error("the database is unavailable")]
    Db(#[from] DbError),
    #[error("the token signing keys could not be fetched: {0}")]
    Jwks(String),
}

/// A key, by database and id.
type KeyOfDb = (String, ObjectId);

/// Window fields last seen per key, so that the counting update can trim the stale ones.
static WINDOW_HINTS: LazyLock<Mutex<LruCache<KeyOfDb, Vec<String>>>> =
    LazyLock::new(|| Mutex::new(LruCache::new(NonZeroUsize::new(10_000).expect("non-zero"))));

/// The bounds one key call is counted under: the current minute, hour and day (UTC) and the
/// key's limits in each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowBounds {
    /// `YYYYMMDDHHMM`, `YYYYMMDDHH` and `YYYYMMDD` (UTC): the current windows.
    pub minute: String,
    pub hour: String,
    pub day: String,
    pub per_minute: i64,
    pub per_hour: i64,
    pub per_day: i64,
    /// Window fields last seen on the key's document (`m.…`, `h.…`, `d.…`), removed unless
    /// current: old windows are trimmed as they pass.
    pub seen: Vec<String>,
}

impl WindowBounds {
    /// The window fields and their bounds, as the counting update takes them.
    pub fn fields(&self) -> [(String, i64); 3] {
        [
            (format!("m.{}", self.minute), self.per_minute),
            (format!("h.{}", self.hour), self.per_hour),
            (format!("d.{}", self.day), self.per_day),
        ]
    }
}

/// The keys' request windows, one document per key (`_id` = the key id).
pub fn key_windows(db: &Db) -> GlobalStore<Document> {
    db.global(&SystemContext::new("authorizer"), GlobalCollection::ApiKeyWindows)
}

/// Counts one call of `key_id` in its windows: one conditional upsert with every bound a
/// literal in its filter. `None` when a window is full: nothing is counted then.
pub async fn count_call(windows: &GlobalStore<Document>, key_id: ObjectId, bounds: &WindowBounds) -> Result<Option<WindowCounts>, DbError> {
    windows.count_windows(Bson::ObjectId(key_id), &bounds.fields(), &bounds.seen, Document::new()).await
}

/// The authorizer's state, built once per execution environment.
pub struct Authorizer {
    db: Db,
    /// `None` where no user pool is configured: every JWT is then refused.
    verifier: Option<Verifier>,
}

impl Authorizer {
    /// An authorizer over `db`, verifying JWTs of `cognito`'s pool.
    pub fn new(db: Db, cognito: Option<CognitoConfig>) -> Self {
        Self { db, verifier: cognito.map(Verifier::new) }
    }

    /// Decides on a request by its headers (`header` looks one up, case-insensitively).
    pub async fn authorize(
        &self,
        header: &(dyn Fn(&str) -> Option<String> + Sync),
        meta: &RequestMeta,
    ) -> Result<Verdict, AuthorizerFailure> {
        let key = header(API_KEY_HEADER).filter(|v| !v.trim().is_empty());
        let token = header("authorization").filter(|v| !v.trim().is_empty());
        match (key, token) {
            (Some(_), Some(_)) => Ok(Verdict::Unauthorized("both a token and an API key: send one")),
            (Some(key), None) => self.authorize_key(&key, meta).await,
            (None, Some(token)) => self.authorize_token(&token).await,
            (None, None) => Ok(Verdict::Unauthorized("no credentials")),
        }
    }

    async fn authorize_token(&self, token: &str) -> Result<Verdict, AuthorizerFailure> {
        let Some(verifier) = &self.verifier else { return Ok(Verdict::Unauthorized("no user pool is configured")) };
        let claims = match verifier.verify(Some(token)).await {
            Ok(claims) => claims,
            Err(TokenError::Jwks(e)) => return Err(AuthorizerFailure::Jwks(e)),
            Err(error) => {
                tracing::info!(%error, "authorizer refused the token");
                return Ok(Verdict::Unauthorized("invalid token"));
            }
        };
        let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let sub = text("sub");
        // The raw array, unflattened: the superadmin rule then applies exactly (shared::identity).
        let groups: Vec<&str> = claims
            .get("cognito:groups")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let verified = matches!(claims.get("email_verified"), Some(Value::Bool(true)))
            || claims.get("email_verified").and_then(Value::as_str).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let context = context(json!({
            "principalType": "user",
            "sub": sub,
            "email": text("email"),
            "emailVerified": verified,
            "groups": serde_json::to_string(&groups).unwrap_or_else(|_| "[]".into()),
            "tenantId": text("custom:tenantId"),
            "apiKeyId": "",
            "createdBy": "",
            "permissions": "[]",
        }));
        Ok(Verdict::Allow { principal_id: sub, context })
    }

    async fn authorize_key(&self, raw: &str, meta: &RequestMeta) -> Result<Verdict, AuthorizerFailure> {
        let Some(presented) = Presented::parse(raw) else { return Ok(Verdict::Unauthorized("malformed API key")) };
        let auth = self.db.key_auth(&SystemContext::new("authorizer"));
        let found = auth.get(presented.key_id).await?;
        let now = self.db.clock().now();
        let Some((tenant, key)) = found else {
            // The same work as a known key's wrong secret: two comparisons, then the budgets.
            let _ = std::hint::black_box(presented.matches(DUMMY_HASH) | presented.matches(DUMMY_HASH));
            record_key_refusal(&self.db, presented.key_id, meta, None).await;
            return Ok(Verdict::Unauthorized("unknown API key"));
        };
        if let Some(reason) = rejection(&presented, &key, now) {
            let event = AuditEvent {
                action: Action::AccessKeyRejected,
                resource_id: Some(key.id.to_hex()),
                details: doc! {"reason": reason, "keyName": &key.name},
            };
            record_key_refusal(&self.db, key.id, meta, Some((&tenant, event))).await;
            tracing::info!(reason, tenantId = %tenant, "authorizer refused an API key");
            return Ok(Verdict::Unauthorized("API key refused"));
        }
        let retry_after = self.count(&auth, &key, now).await?;
        let permissions: Vec<&str> = key.permissions.iter().map(|p| p.as_str()).collect();
        let mut context = context(json!({
            "principalType": "apiKey",
            "sub": "",
            "email": "",
            "emailVerified": false,
            "groups": "[]",
            "tenantId": tenant.as_str(),
            "apiKeyId": key.id.to_hex(),
            "createdBy": key.created_by.to_hex(),
            "permissions": serde_json::to_string(&permissions).unwrap_or_else(|_| "[]".into()),
        }));
        if let Some(secs) = retry_after {
            context.insert("retryAfter".into(), Value::String(secs.to_string()));
        }
        Ok(Verdict::Allow { principal_id: format!("apikey:{}", key.id.to_hex()), context })
    }

    /// Counts the call in the key's windows (and, at most once a minute, records `lastUsedAt`
    /// alongside). `Some(seconds)` when a window is full: nothing was counted.
    async fn count(&self, auth: &KeyAuth, key: &ApiKey, now: DateTime) -> Result<Option<u64>, AuthorizerFailure> {
        let now_ms = now.timestamp_millis();
        let ((minute, minute_retry), (hour, hour_retry), (day, day_retry)) =
            (minute_window(now_ms), hour_window(now_ms), day_window(now_ms));
        let hint_key = (self.db.name().to_owned(), key.id);
        let seen = WINDOW_HINTS.lock().expect("poisoned").get(&hint_key).cloned().unwrap_or_default();
        let limits = key.rate_limit;
        let bounds = WindowBounds {
            minute: minute.clone(),
            hour: hour.clone(),
            day: day.clone(),
            per_minute: limits.requests_per_minute,
            per_hour: limits.requests_per_hour,
            per_day: limits.requests_per_day,
            seen,
        };
        let due = key.last_used_at.is_none_or(|at| now_ms - at.timestamp_millis() >= LAST_USED_EVERY_MS);
        let touch = async {
            if due {
                if let Err(error) = auth.touch_last_used(key.id, key.last_used_at, now).await {
                    tracing::warn!(%error, "could not record lastUsedAt");
                }
            }
        };
        let windows = key_windows(&self.db);
        let (counted, ()) = tokio::join!(count_call(&windows, key.id, &bounds), touch);
        let counts = match counted? {
            Some(counts) => {
                WINDOW_HINTS.lock().expect("poisoned").put(hint_key, counts.fields());
                return Ok(None);
            }
            None => windows.windows(Bson::ObjectId(key.id)).await?,
        };
        WINDOW_HINTS.lock().expect("poisoned").put(hint_key, counts.fields());
        Ok(Some(retry_after(&counts, &bounds, [minute_retry, hour_retry, day_retry])))
    }
}

/// Why a presented key is refused, if it is. Two hashes are always compared (the previous one,
/// or the dummy digest when there is none), so that the time taken tells neither a current
/// secret from a replaced one nor a key from an unknown id.
fn rejection(presented: &Presented, key: &ApiKey, now: DateTime) -> Option<&'static str> {
    let current = presented.matches(&key.key_hash);
    let previous = presented.matches(key.previous_key_hash.as_deref().unwrap_or(DUMMY_HASH)) && key.previous_key_hash.is_some();
    let in_grace = key.previous_key_valid_until.is_some_and(|until| until > now);
    if !current && !previous {
        Some("wrong secret")
    } else if !current && !in_grace {
        Some("a rotated-out secret past its grace period")
    } else if key.status == ApiKeyStatus::Revoked {
        Some("revoked")
    } else if key.status == ApiKeyStatus::Expired || key.expires_at.is_some_and(|at| at <= now) {
        Some("expired")
    } else {
        None
    }
}

/// The wait until every full window has room: the longest of their waits.
fn retry_after(counts: &WindowCounts, bounds: &WindowBounds, waits: [u64; 3]) -> u64 {
    let windows = bounds.fields();
    let full = windows.iter().zip(waits).filter(|((field, bound), _)| counts.get(field) >= *bound).map(|(_, wait)| wait).max();
    // None full any more (a window turned over in between): the shortest wait is still right.
    full.unwrap_or(waits[0]).max(1)
}

fn context(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The REST API's response to an allow: a policy for exactly this method (results are never
/// cached, so nothing is replayed across routes), the principal and the context.
pub fn allow_response(method_arn: &str, principal_id: &str, context: Map<String, Value>) -> Value {
    json!({
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": method_arn}],
        },
        "context": context,
    })
}

/// Looks a header up case-insensitively in an authorizer event's `headers` object.
pub fn event_header(event: &Value, name: &str) -> Option<String> {
    event.get("headers")?.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str()).map(str::to_owned)
}

/// The request facts of an authorizer event, for the audit entries of refused keys.
pub fn event_meta(event: &Value) -> RequestMeta {
    let ctx = event.get("requestContext");
    let field = |path: &[&str]| {
        let mut v = ctx?;
        for p in path {
            v = v.get(p)?;
        }
        v.as_str().map(str::to_owned)
    };
    RequestMeta {
        request_id: field(&["requestId"]).unwrap_or_else(|| ObjectId::new().to_hex()),
        ip: field(&["identity", "sourceIp"]).unwrap_or_default(),
        user_agent: event_header(event, "user-agent").unwrap_or_default(),
    }
}

/// Handles one authorizer event as API Gateway sends it: the allow policy, or the error whose
/// message `Unauthorized` API Gateway turns into a 401.
pub async fn handle_event(authorizer: &Authorizer, event: &Value) -> Result<Value, AuthorizerError> {
    let meta = event_meta(event);
    let header = |name: &str| event_header(event, name);
    let started = std::time::Instant::now();
    let verdict = authorizer.authorize(&header, &meta).await;
    let allowed = matches!(verdict, Ok(Verdict::Allow { .. }));
    shared::metrics::authorization(allowed, started.elapsed().as_secs_f64() * 1000.0, &meta.request_id);
    match verdict {
        Ok(Verdict::Allow { principal_id, context }) => {
            let arn = event.get("methodArn").and_then(Value::as_str).unwrap_or_default();
            Ok(allow_response(arn, &principal_id, context))
        }
        Ok(Verdict::Unauthorized(reason)) => {
            tracing::info!(reason, "unauthorized");
            Err(AuthorizerError::Unauthorized)
        }
        Err(failure) => {
            tracing::error!(error = %failure, "authorizer failure");
            Err(AuthorizerError::Failure(failure))
        }
    }
}

/// What the authorizer Lambda returns as an error. API Gateway answers 401 only to the exact
/// message `Unauthorized`; anything else is a 500.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizerError {
    #[error("Unauthorized")]
    Unauthorized,
    #[error("authorizer failure: {0}")]
    Failure(AuthorizerFailure),
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_keys::secret;
    use shared::models::RateLimit;

    fn key_with(hash: &str) -> ApiKey {
        ApiKey {
            id: ObjectId::new(),
            tenant_id: None,
            key_id: String::new(),
            name: "k".into(),
            key_hash: hash.into(),
            previous_key_hash: None,
            previous_key_valid_until: None,
            permissions: vec![],
            rate_limit: RateLimit { requests_per_minute: 1, requests_per_hour: 1, requests_per_day: 1 },
            expires_at: None,
            last_used_at: None,
            status: ApiKeyStatus::Active,
            place_held: None,
            marker_op: None,
            created_by: ObjectId::new(),
            rotated_at: None,
            revoked_at: None,
            created_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn a_rotated_out_secret_works_only_during_its_grace() {
        let (old, new) = (secret::issue().unwrap(), secret::issue().unwrap());
        let now = DateTime::from_millis(1_800_000_000_000);
        let mut key = key_with(&new.hash);
        key.previous_key_hash = Some(old.hash.clone());
        key.previous_key_valid_until = Some(DateTime::from_millis(now.timestamp_millis() + 1));
        let presented_old = Presented::parse(&secret::full_key(key.id, &old.secret)).unwrap();
        let presented_new = Presented::parse(&secret::full_key(key.id, &new.secret)).unwrap();
        assert_eq!(rejection(&presented_old, &key, now), None);
        assert_eq!(rejection(&presented_new, &key, now), None);
        let later = DateTime::from_millis(now.timestamp_millis() + 1);
        assert!(rejection(&presented_old, &key, later).is_some());
        assert_eq!(rejection(&presented_new, &key, later), None);
        key.status = ApiKeyStatus::Revoked;
        assert_eq!(rejection(&presented_new, &key, now), Some("revoked"));
        key.status = ApiKeyStatus::Active;
        key.expires_at = Some(now);
        assert_eq!(rejection(&presented_new, &key, now), Some("expired"));
    }

    #[test]
    fn the_retry_after_is_the_longest_wait_of_the_full_windows() {
        let bounds = WindowBounds {
            minute: "202611290130".into(),
            hour: "2026112901".into(),
            day: "20261129".into(),
            per_minute: 5,
            per_hour: 10,
            per_day: 100,
            seen: vec![],
        };
        let counts = WindowCounts(vec![("m.202611290130".into(), 5), ("h.2026112901".into(), 10), ("d.20261129".into(), 10)]);
        assert_eq!(retry_after(&counts, &bounds, [30, 1800, 80_000]), 1800);
        let counts = WindowCounts(vec![("m.202611290130".into(), 5), ("h.2026112901".into(), 5)]);
        assert_eq!(retry_after(&counts, &bounds, [30, 1800, 80_000]), 30);
    }

    #[test]
    fn headers_are_found_whatever_their_case() {
        let event = json!({"headers": {"X-Api-Key": "k", "Authorization": "t"}});
        assert_eq!(event_header(&event, "x-api-key").as_deref(), Some("k"));
        assert_eq!(event_header(&event, "authorization").as_deref(), Some("t"));
        assert_eq!(event_header(&event, "cookie"), None);
    }
}
