//! Each tenant's hourly budget of refused invitations (docs/ARCHITECTURE.md §12). An invitation
//! refused for a reason its caller may not learn (the address is held outside the tenant) takes
//! one place; once the hour's places are gone, every invitation of the tenant is refused with a
//! 429 until the hour ends. So neither the refusal nor the 429 can be used to test addresses at
//! scale: the 429 answers every address alike.
//!
//! One document per tenant in the global `refusalWindows` collection, `_id` `invite:<tenantId>`
//! (beside the per-minute refusal budgets' documents, `key:…`, `ip:…` and `actor:…`), with one
//! field per hour, `h.<YYYYMMDDHH>` (UTC); past hours are trimmed as new ones are counted. It
//! carries no `expireAt`: one per tenant, it is never deleted by the retention job.

use super::keys::count_windows;
use super::{global, Db, DbError, TenantScope};
use crate::ids::TenantId;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Collection;

/// How many refused invitations a tenant may have an hour.
pub const REFUSED_INVITATIONS_PER_HOUR: i64 = 20;

/// The narrow API of one tenant's budget of refused invitations.
#[derive(Debug, Clone)]
pub struct InvitationRefusals {
    db: Db,
    windows: Collection<Document>,
    tenant: TenantId,
}

impl Db {
    /// The scope's budget of refused invitations: confined to the scope's own tenant, so that
    /// no tenant can read or spend another's.
    pub fn invitation_refusals(&self, scope: &impl TenantScope) -> InvitationRefusals {
        InvitationRefusals {
            db: self.clone(),
            windows: self.database.collection(global::REFUSAL_WINDOWS),
            tenant: scope.scope_tenant().clone(),
        }
    }
}

/// The hours counted on the document: `(field, count)`, e.g. `("h.2026112821", 3)`.
fn hours(document: &Document) -> Vec<(String, i64)> {
    let Ok(hours) = document.get_document("h") else { return vec![] };
    hours
        .iter()
        .map(|(hour, n)| {
            let n = match n {
                Bson::Int32(n) => i64::from(*n),
                Bson::Int64(n) => *n,
                Bson::Double(n) => *n as i64,
                _ => 0,
            };
            (format!("h.{hour}"), n)
        })
        .collect()
}

impl InvitationRefusals {
    fn id(&self) -> Bson {
        Bson::String(format!("invite:{}", self.tenant))
    }

    async fn counted(&self) -> Result<Vec<(String, i64)>, DbError> {
        Ok(self.windows.find_one(doc! {"_id": self.id()}).await?.as_ref().map(hours).unwrap_or_default())
    }

    /// The current hour's field and the whole seconds until the next hour begins.
    fn hour(&self) -> (String, u64) {
        let (hour, retry_after) = crate::clock::hour_window(self.db.clock().now_ms());
        (format!("h.{hour}"), retry_after)
    }

    /// Whether this hour's budget is spent: the seconds until the next hour if so. Read only,
    /// so that an invitation checks it before it does anything, and a spent budget costs one
    /// read and writes nothing.
    pub async fn spent(&self) -> Result<Option<u64>, DbError> {
        let (field, retry_after) = self.hour();
        let count = self.counted().await?.into_iter().find(|(f, _)| *f == field).map_or(0, |(_, n)| n);
        Ok((count >= REFUSED_INVITATIONS_PER_HOUR).then_some(retry_after))
    }

    /// Takes one place in this hour for a refusal: one conditional upsert with the bound as a
    /// literal in its filter (`count_windows`), never increment-then-check. `false` if the hour
    /// is full (racing refusals took the last place): nothing is counted then.
    pub async fn take(&self) -> Result<bool, DbError> {
        let (field, _) = self.hour();
        let seen: Vec<String> = self.counted().await?.into_iter().map(|(f, _)| f).collect();
        Ok(count_windows(&self.db, &self.windows, self.id(), &[(field, REFUSED_INVITATIONS_PER_HOUR)], &seen).await?.is_some())
    }
}
