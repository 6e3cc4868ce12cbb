//! `reconcile-counters`: the recount of every tenant's exact counters (docs/ARCHITECTURE.md §12).
//!
//! FerretDB has no multi-document transactions, so a counter on the tenant record and the
//! records it counts are written apart; a crash, or a reply lost where no re-read could settle
//! it, can leave them unequal. Each record says whether it holds its unit (users' `seatHeld` and
//! `adminHeld`, keys' `placeHeld`; absent on older records, with the meaning of
//! [`shared::models::User::holds_seat`], [`shared::models::User::holds_admin_place`] and
//! [`shared::models::ApiKey::holds_place`]), and this job sets each counter to the number of
//! records whose marker says held, those of sagas still in flight included.
//!
//! A saga moves a counter and writes a record one after the other, so a run can fall between
//! the two (an invitation's record written and its seat not yet taken; a key's place taken and
//! the key not yet written). Each such step leaves a fresh trace: a counter move stamps
//! `counterMovedAt.<collection>` on the tenant ([`shared::models::Counted`]), a record write
//! that changes what the record holds stamps `markedAt` (its creation, `createdAt`), and a
//! removal clears the record's markers (stamped) and moves the counter before it deletes the
//! record. So between any two writes of a saga, either a trace younger than [`SETTLE`] exists or
//! the markers and the counters agree. Per tenant, the run reads the counters, the last move's
//! id and the stamps first, counts the markers after, then looks for fresh record traces; a
//! counter with a trace younger than [`SETTLE`] is left alone and reported as in flight (no
//! metric: nothing drifted, as far as can be told). Otherwise the correction is one write
//! conditional on the value and the `counterMove` id read: a move after the read makes it miss
//! (reported as skipped), and the next run tries again. [`SETTLE`] is longer than any function's
//! timeout, so a saga older than it is dead and its half-done state is a drift to correct; a
//! durable saga (`shared::saga`: invitations) is the exception, since a crashed one stays open
//! until its retry or the sweeper ends it, and a tenant with one open is left alone.
//! Each correction emits `CounterCorrections` (its size), which alarms when non-zero. No lease:
//! two runs at once write the same recount, each only over the value it read.

use crate::error::MigrationError;
use crate::report::{Correction, ReconcileReport, Report, Skipped};
use mongodb::bson::{doc, Bson, DateTime, Document};
use shared::db::{Db, SystemContext, TenantCollection, TenantScope};
use shared::ids::TenantId;
use shared::models::{ApiKeyStatus, Counted, UserStatus, COUNTER_MOVE, COUNTER_MOVED_AT, MARKED_AT};
use shared::seam::Seam;
use std::time::Duration;

/// How many tenants are read from the registry at a time.
const TENANT_BATCH: i64 = 100;

/// The point between the counters' read and their correction, where a test moves one.
pub const COUNTED: &str = "reconcile.counted";

/// How long a counter and its records must have been still before a difference between them
/// is taken for a drift: longer than any function's timeout (15 s for the HTTP functions, 300 s
/// for the migrations, template.yaml), so that no saga that made a younger trace is still
/// running. A tenant busy with counted changes all the time is corrected in a quieter moment.
pub const SETTLE: Duration = Duration::from_secs(15 * 60);

/// The reason of a counter left alone because a saga may still be between its two writes.
pub const IN_FLIGHT: &str = "in flight";

/// The filter of users holding an admin place: the marker, or (absent) pending or active with
/// the admin role `admin_role` (hex).
fn admin_places(admin_role: Option<&str>) -> Document {
    let mut held = vec![doc! {"adminHeld": true}];
    if let Some(role) = admin_role {
        held.push(doc! {"adminHeld": {"$exists": false}, "status": {"$ne": UserStatus::Inactive.as_str()}, "roles": role});
    }
    doc! {"$or": held}
}

/// The filter of keys holding a place: the marker, or (absent) an active key.
fn key_places() -> Document {
    doc! {"$or": [{"placeHeld": true}, {"placeHeld": {"$exists": false}, "status": ApiKeyStatus::Active.as_str()}]}
}

fn as_count(value: Option<&Bson>) -> Option<i64> {
    match value? {
        Bson::Int64(n) => Some(*n),
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Double(n) => Some(*n as i64),
        _ => None,
    }
}

/// One run over every registered tenant. `seam` is told when a tenant's counters have been read
/// and its markers counted ([`COUNTED`]); deployments pass `NoSeam`.
pub async fn reconcile(db: &Db, seam: &dyn Seam) -> Result<Report, MigrationError> {
    let system = SystemContext::new("counter reconciliation");
    let registry = db.tenants(&system);
    let mut report = ReconcileReport::default();
    let mut walk = registry.batches(shared::db::not_purged(), TENANT_BATCH);
    while let Some(batch) = walk.next().await? {
        for tenant in batch {
            reconcile_tenant(db, &system, &tenant, seam, &mut report).await?;
            report.tenants_checked += 1;
        }
    }
    tracing::info!(
        tenants_checked = report.tenants_checked,
        corrected = report.corrected.len(),
        skipped = report.skipped.len(),
        "counter reconciliation"
    );
    Ok(Report::ReconcileCounters(report))
}

/// Whether `counted`'s counters or records carry a trace younger than [`SETTLE`]: the counter
/// move's stamp as read with the counters (`moved_at`), or a record created or marked since.
async fn in_flight(
    db: &Db,
    scope: &shared::db::SystemTenantScope,
    counted: Counted,
    moved_at: Option<&Bson>,
    since: DateTime,
) -> Result<bool, MigrationError> {
    if matches!(moved_at, Some(Bson::DateTime(at)) if *at > since) {
        return Ok(true);
    }
    // A durable saga (an invitation) left open by a crash is finished or undone by its retry or
    // the sweeper, however old: until then its record and its seat may differ.
    if counted == Counted::Users && shared::saga::Sagas::new(db).open_for(scope.scope_tenant().as_str()).await? {
        return Ok(true);
    }
    let collection = match counted {
        Counted::Users => TenantCollection::Users,
        Counted::ApiKeys => TenantCollection::ApiKeys,
    };
    let fresh = doc! {"$or": [{"createdAt": {"$gt": since}}, {MARKED_AT: {"$gt": since}}]};
    Ok(db.scoped::<Document>(scope, collection).count_documents(fresh).await? > 0)
}

async fn reconcile_tenant(
    db: &Db,
    system: &SystemContext,
    tenant: &TenantId,
    seam: &dyn Seam,
    report: &mut ReconcileReport,
) -> Result<(), MigrationError> {
    let registry = db.tenants(system);
    // The counters, the last move's id and its stamps first, in one read: a move after it makes
    // the correction miss, and a move before it left its stamp.
    let Some(read) = registry.fields(tenant, &["counters", "apiKeyCount", COUNTER_MOVE, COUNTER_MOVED_AT]).await? else {
        return Ok(()); // deleted since the batch was listed
    };
    let counters = read.get("counters");
    let key_count = read.get("apiKeyCount");
    let last_move = read.get(COUNTER_MOVE).cloned();
    let moved_at = read.get_document(COUNTER_MOVED_AT).ok();
    let scope = system.for_tenant(tenant.clone());
    let users = db.scoped::<Document>(&scope, TenantCollection::Users);
    let admin_role = db
        .scoped::<Document>(&scope, TenantCollection::Roles)
        .find_one(doc! {"name": "admin", "isSystem": true})
        .await?
        .and_then(|r| r.get_object_id("_id").ok())
        .map(|id| id.to_hex());
    let seats = users.count_documents(doc! {"seatHeld": {"$ne": false}}).await? as i64;
    let admins = users.count_documents(admin_places(admin_role.as_deref())).await? as i64;
    let keys = db.scoped::<Document>(&scope, TenantCollection::ApiKeys).count_documents(key_places()).await? as i64;
    seam.reached(COUNTED).await;

    let mut skipped: Vec<(&'static str, &'static str)> = Vec::new();
    let mut skip = |counter, reason| skipped.push((counter, reason));
    let mut fixes: Vec<(Counted, &'static str, &'static str, Option<i64>, i64)> = Vec::new();
    match counters {
        Some(Bson::Document(counters)) => {
            for (name, path, counted) in [("seats", "counters.seats", seats), ("admins", "counters.admins", admins)] {
                match as_count(counters.get(name)) {
                    Some(read) if read == counted => {}
                    Some(read) => fixes.push((Counted::Users, name, path, Some(read), counted)),
                    None => skip(name, "the counter is not a number"),
                }
            }
        }
        // Migration 002 sets them; until then writers answer 503 for this tenant.
        _ => {
            skip("seats", "the tenant has no counters yet");
            skip("admins", "the tenant has no counters yet");
        }
    }
    match key_count {
        None if keys == 0 => {}
        None => fixes.push((Counted::ApiKeys, "apiKeyCount", "apiKeyCount", None, keys)),
        Some(value) => match as_count(Some(value)) {
            Some(read) if read == keys => {}
            Some(read) => fixes.push((Counted::ApiKeys, "apiKeyCount", "apiKeyCount", Some(read), keys)),
            None => skip("apiKeyCount", "the counter is not a number"),
        },
    }
    // The record traces are looked for after the count: a record written after this look was
    // not counted, and its saga's counter move, still to come, makes the correction miss.
    let since = DateTime::from_millis(db.clock().now_ms() - SETTLE.as_millis() as i64);
    let mut settled: Vec<(Counted, bool)> = Vec::new();
    for (counted, ..) in &fixes {
        if !settled.iter().any(|(c, _)| c == counted) {
            let stamp = moved_at.and_then(|m| m.get(counted.collection()));
            settled.push((*counted, !in_flight(db, &scope, *counted, stamp, since).await?));
        }
    }
    for (counted, counter, path, read, value) in fixes {
        if !settled.iter().any(|(c, s)| *c == counted && *s) {
            tracing::info!(tenantId = %tenant, counter, "a counter differs from its recount while a change may be in flight; left for a later run");
            skipped.push((counter, IN_FLIGHT));
            continue;
        }
        let mut condition = match read {
            Some(read) => doc! {path: read},
            None => doc! {path: {"$exists": false}},
        };
        condition.insert(COUNTER_MOVE, last_move.clone().unwrap_or_else(|| Bson::Document(doc! {"$exists": false})));
        if registry.set_if(tenant, condition, doc! {path: value}).await? {
            let from = read.unwrap_or(0);
            tracing::warn!(tenantId = %tenant, counter, from, to = value, "a counter drifted from its recount; corrected");
            shared::metrics::counter_correction(tenant, counter, from, value);
            report.corrected.push(Correction { tenant_id: tenant.to_string(), counter, from, to: value });
        } else {
            tracing::info!(tenantId = %tenant, counter, "a counter moved since it was read; left for the next run");
            skipped.push((counter, "the counter moved since it was read"));
        }
    }
    report.skipped.extend(skipped.into_iter().map(|(counter, reason)| Skipped { tenant_id: tenant.to_string(), counter, reason }));
    Ok(())
}
