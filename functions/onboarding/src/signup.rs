//! Self-service sign-up (docs/ARCHITECTURE.md §21), behind the `SELF_SERVICE_SIGNUP` switch: an
//! anonymous caller asks for a tenant, and gets one later, on the free plan with no domain, if
//! the address can take one. The request only validates, counts the bounds, seals the personal
//! fields under the new tenant's keys and queues the saga; the sweeper runs it. The answer is the
//! same 202, in the same shape, whatever the address: nothing tells who has an account.
//!
//! The bounds are exact, each one conditional write before any work:
//! - [`PER_SOURCE_PER_HOUR`] sign-ups an hour per source address (IPv6 per /64), whose window
//!   stores the source only as a keyed digest and expires with the hour;
//! - one pending sign-up per address, held until the sign-up ends or could have been confirmed;
//! - the platform's cap an hour (`SIGNUP_HOURLY_CAP`), below what the sending account may send,
//!   with an alarm on the metric it emits when reached.
//!
//! There is no bound per domain: twenty requests could then shut out every user of a mail
//! provider.

use crate::error::OnboardingError;
use crate::input::Onboarding;
use crate::saga::{self, Env, Params};
use mongodb::bson::{self, doc, Bson, DateTime, Document};
use serde::Deserialize;
use shared::config::SignupSettings;
use shared::db::{Db, DbError, GlobalCollection, GlobalStore, SystemContext};
use shared::error::{ApiError, Check};
use shared::ids::{Email, TenantId};
use shared::plans::Plan;
use shared::saga::{Begun, Caller, IdempotencyKey, NewSaga, SagaKind, Sagas, StepFaults, LEASE_TTL};
use shared::text::free_text;
use std::net::IpAddr;

/// Sign-ups an hour per source address (per /64 for IPv6).
pub const PER_SOURCE_PER_HOUR: i64 = 5;

/// How long an address's pending sign-up blocks another one: past the temporary password's
/// validity, by when the first one was confirmed or removed.
const PENDING_FOR: std::time::Duration = std::time::Duration::from_secs(8 * 24 * 3600);

/// `POST /signup`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignupBody {
    company_name: String,
    admin_email: String,
    admin_first_name: String,
    admin_last_name: String,
}

impl SignupBody {
    /// Checks every field: an onboarding on the free plan with no domain (a domain is never
    /// claimed by an unverified caller).
    pub fn validate(self) -> Result<Onboarding, ApiError> {
        let mut c = Check::default();
        let tenant_name = c.field("companyName", free_text(&self.company_name, tenants::input::MAX_NAME));
        let admin_email = c.field("adminEmail", Email::parse(self.admin_email));
        let first = c.field("adminFirstName", free_text(&self.admin_first_name, crate::input::MAX_PERSON_NAME));
        let last = c.field("adminLastName", free_text(&self.admin_last_name, crate::input::MAX_PERSON_NAME));
        c.done(|| Onboarding {
            tenant_name: tenant_name.expect("checked"),
            domain: None,
            plan: Plan::Free,
            admin_email: admin_email.expect("checked"),
            admin_first_name: first.expect("checked"),
            admin_last_name: last.expect("checked"),
            customization: None,
        })
    }
}

/// The source a sign-up is counted by: an IPv4 address, or an IPv6 address's /64 (one host's
/// allocation); `None` for what is no address (the gateway always gives one).
pub fn source_of(ip: &str) -> Option<String> {
    match ip.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(v4.to_string()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(v4.to_string()),
            None => {
                let s = v6.segments();
                Some(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]))
            }
        },
    }
}

fn windows(db: &Db) -> GlobalStore<Document> {
    db.global(&SystemContext::new("sign-up bounds"), GlobalCollection::RefusalWindows)
}

/// Counts one sign-up in the hour's window of `id`, bounded by `bound`: `Err(seconds to the next
/// hour)` when full. The window's document expires an hour after its hour.
async fn count_hour(db: &Db, id: &str, bound: i64) -> Result<Result<(), u64>, DbError> {
    let (hour, retry_after) = shared::clock::hour_window(db.clock().now_ms());
    let field = format!("h.{hour}");
    let store = windows(db);
    let seen = store.windows(Bson::String(id.to_owned())).await?.fields();
    let expire_at = DateTime::from_millis(db.clock().now_ms() + (retry_after as i64 + 3600) * 1000);
    let counted = store.count_windows(Bson::String(id.to_owned()), &[(field, bound)], &seen, doc! {"expireAt": expire_at}).await?;
    Ok(if counted.is_some() { Ok(()) } else { Err(retry_after) })
}

/// Holds the address's one pending sign-up for `saga`: an insert of a fixed `_id`, so that of
/// racing sign-ups of one address exactly one holds it. `false` if another sign-up holds it. A
/// hold whose sign-up failed, or whose saga never came to exist (its request died between the
/// hold and the saga's insert), holds nothing: it is taken over, once.
async fn hold_address(db: &Db, digest: &str, saga: &str) -> Result<bool, DbError> {
    let store = windows(db);
    let id = format!("signup-address:{digest}");
    let now = db.clock().now_ms();
    let hold = doc! {"_id": &id, "sagaId": saga, "createdAt": DateTime::from_millis(now),
    "expireAt": DateTime::from_millis(now + PENDING_FOR.as_millis() as i64)};
    for _ in 0..2 {
        match store.insert(&hold).await {
            Ok(()) => return Ok(true),
            Err(DbError::Duplicate) => {}
            Err(e) => return Err(e),
        }
        let Some(held) = store.find_one(doc! {"_id": &id}).await? else { continue };
        let holder = held.get_str("sagaId").unwrap_or_default().to_owned();
        if holder == saga {
            return Ok(true); // its own retry
        }
        let dead = match Sagas::new(db).get(&holder).await? {
            Some(found) => found.state == shared::saga::SagaState::Failed,
            None => held.get_datetime("createdAt").map_or(true, |at| now - at.timestamp_millis() > 2 * LEASE_TTL.as_millis() as i64),
        };
        if !dead {
            return Ok(false);
        }
        store.delete_many(doc! {"_id": &id, "sagaId": &holder}).await?;
    }
    Ok(false)
}

/// Gives up the address's pending hold (a sign-up refused after it took the hold).
async fn release_address(db: &Db, digest: &str, saga: &str) {
    let id = format!("signup-address:{digest}");
    if let Err(error) = windows(db).delete_many(doc! {"_id": &id, "sagaId": saga}).await {
        tracing::warn!(%error, "could not release a sign-up's address hold; it expires on its own");
    }
}

/// Accepts a sign-up from `source` under `key`: the bounds, then the saga sealed and queued.
/// A replay of the same source and key is accepted again without counting; the same key with
/// another body is a 422.
pub async fn sign_up(
    db: &Db,
    settings: &SignupSettings,
    source: &str,
    key: &IdempotencyKey,
    input: &Onboarding,
    faults: &dyn StepFaults,
) -> Result<(), OnboardingError> {
    let keyring = db.keyring()?;
    let sagas = Sagas::new(db);
    let caller = Caller::Source(source.to_owned());
    let request = input.canonical();
    let (id, hash) = sagas.keyed(&caller, key, SagaKind::Signup, &request).await?;
    if let Some(found) = sagas.get(&id).await? {
        if found.request_hash.as_deref() != Some(hash.as_str()) {
            return Err(OnboardingError::KeyReused);
        }
        if found.did(saga::KEYS) {
            return Ok(());
        }
    }
    let source_digest = keyring.platform_digest("signup-source", &[source.as_bytes()]).await.map_err(DbError::from)?;
    if let Err(retry_after) = count_hour(db, &format!("signup-source:{source_digest}"), PER_SOURCE_PER_HOUR).await? {
        return Err(OnboardingError::TooMany(retry_after));
    }
    let address = keyring.platform_digest("signup-address", &[input.admin_email.as_str().as_bytes()]).await.map_err(DbError::from)?;
    if !hold_address(db, &address, &id).await? {
        return Err(OnboardingError::TooMany(shared::clock::hour_window(db.clock().now_ms()).1));
    }
    if let Err(retry_after) = count_hour(db, "signup-platform", settings.hourly_cap as i64).await? {
        release_address(db, &address, &id).await;
        shared::metrics::signup_cap_reached();
        tracing::warn!(cap = settings.hourly_cap, "the platform's sign-ups of this hour are spent");
        return Err(OnboardingError::TooMany(retry_after));
    }
    let params = bson::to_document(&Params::new(input)).map_err(DbError::from)?;
    let new = NewSaga {
        kind: SagaKind::Signup,
        tenant_id: TenantId::generate(),
        idempotency: Some((&caller, key)),
        request: &request,
        params,
        lookup: None,
        id: None,
        first: Some(saga::KEYS),
    };
    let env = Env { db, directory: &NoDirectory, faults };
    match sagas.begin(new).await? {
        Begun::Run(run) => match saga::seal_and_queue(&env, *run, input).await {
            Ok(_) => Ok(()),
            Err(error) => {
                release_address(db, &address, &id).await;
                Err(error)
            }
        },
        // Taken already (a replay racing its first call), or ended: accepted all the same.
        Begun::Finished(_) | Begun::InProgress { .. } => Ok(()),
        Begun::Mismatch => Err(OnboardingError::KeyReused),
    }
}

/// The sign-up request's first step makes keys and seals: it never calls the user directory
/// (the sweeper does, with the real one). A call here is a bug, answered as an outage.
#[derive(Debug)]
struct NoDirectory;

impl shared::directory::Directory for NoDirectory {
    fn create_user<'a>(
        &'a self,
        _email: &'a Email,
        _tenant: &'a TenantId,
    ) -> futures_util::future::BoxFuture<'a, Result<String, shared::directory::DirectoryError>> {
        Box::pin(async { Err(unavailable()) })
    }
    fn get_user<'a>(
        &'a self,
        _email: &'a Email,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<shared::directory::DirectoryUser>, shared::directory::DirectoryError>> {
        Box::pin(async { Err(unavailable()) })
    }
    fn delete_user<'a>(&'a self, _email: &'a Email) -> futures_util::future::BoxFuture<'a, Result<(), shared::directory::DirectoryError>> {
        Box::pin(async { Err(unavailable()) })
    }
    fn set_enabled<'a>(
        &'a self,
        _email: &'a Email,
        _enabled: bool,
    ) -> futures_util::future::BoxFuture<'a, Result<(), shared::directory::DirectoryError>> {
        Box::pin(async { Err(unavailable()) })
    }
}

fn unavailable() -> shared::directory::DirectoryError {
    shared::directory::DirectoryError::Unavailable("a sign-up's request never calls the user directory".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_an_ipv4_address_or_an_ipv6_slash_64() {
        assert_eq!(source_of("203.0.113.7").as_deref(), Some("203.0.113.7"));
        assert_eq!(source_of("2001:db8:1:2:aaaa::1").as_deref(), Some("2001:db8:1:2::/64"));
        assert_eq!(source_of("2001:db8:1:2:bbbb:cccc:dddd:eeee"), source_of("2001:db8:1:2::9"), "one /64, one source");
        assert_ne!(source_of("2001:db8:1:3::1"), source_of("2001:db8:1:2::1"));
        assert_eq!(source_of("::ffff:198.51.100.1").as_deref(), Some("198.51.100.1"));
        assert_eq!(source_of("not an address"), None);
    }

    #[test]
    fn a_sign_up_is_a_free_tenant_with_no_domain_and_refuses_unknown_fields() {
        let body: SignupBody = serde_json::from_value(serde_json::json!({"companyName": "Acme", "adminEmail": "A@acme.test",
            "adminFirstName": "Ada", "adminLastName": "L"}))
        .unwrap();
        let input = body.validate().unwrap();
        assert_eq!((input.plan, input.domain.is_none()), (Plan::Free, true));
        assert!(serde_json::from_value::<SignupBody>(serde_json::json!({"companyName": "A", "adminEmail": "a@b.test",
            "adminFirstName": "A", "adminLastName": "B", "domain": "acme.test"}))
        .is_err());
    }
}
