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

use mongodb::bson::{doc, Bson, Document};
use shared::admission::TenantContext;
use shared::db::{Db, DbError, GlobalCollection, GlobalStore, SystemContext};

/// How many refused invitations a tenant may have an hour.
pub const REFUSED_INVITATIONS_PER_HOUR: i64 = 20;

/// One tenant's budget of refused invitations.
#[derive(Debug, Clone)]
pub struct InvitationRefusals {
    db: Db,
    windows: GlobalStore<Document>,
    id: Bson,
}

impl InvitationRefusals {
    /// The admitted tenant's budget: confined to the context's own tenant, so that no tenant can
    /// read or spend another's.
    pub fn of(db: &Db, ctx: &TenantContext) -> Self {
        let windows = db.global(&SystemContext::new("invitation refusals"), GlobalCollection::RefusalWindows);
        Self { db: db.clone(), windows, id: Bson::String(format!("invite:{}", ctx.tenant_id())) }
    }

    /// The current hour's field and the whole seconds until the next hour begins.
    fn hour(&self) -> (String, u64) {
        let (hour, retry_after) = shared::clock::hour_window(self.db.clock().now_ms());
        (format!("h.{hour}"), retry_after)
    }

    /// Whether this hour's budget is spent: the seconds until the next hour if so. Read only,
    /// so that an invitation checks it before it does anything, and a spent budget costs one
    /// read and writes nothing.
    pub async fn spent(&self) -> Result<Option<u64>, DbError> {
        let (field, retry_after) = self.hour();
        let count = self.windows.windows(self.id.clone()).await?.get(&field);
        Ok((count >= REFUSED_INVITATIONS_PER_HOUR).then_some(retry_after))
    }

    /// Takes one place in this hour for a refusal: one conditional upsert with the bound as a
    /// literal in its filter, never increment-then-check. `false` if the hour is full (racing
    /// refusals took the last place): nothing is counted then.
    pub async fn take(&self) -> Result<bool, DbError> {
        let (field, _) = self.hour();
        let seen = self.windows.windows(self.id.clone()).await?.fields();
        let counted = self.windows.count_windows(self.id.clone(), &[(field, REFUSED_INVITATIONS_PER_HOUR)], &seen, doc! {}).await?;
        Ok(counted.is_some())
    }
}
