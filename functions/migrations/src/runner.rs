//! The ledger runner: `setup` (every index), `up` (each pending migration, in order, under the
//! lease) and `status` (the ledger against the registry).

use crate::error::MigrationError;
use crate::indexes;
use crate::lease::{self, LOCK_TTL};
use crate::migration::{Migration, MigrationDeps};
use crate::registry::MIGRATIONS;
use crate::report::{Applied, PersonalDataStatus, Report, StatusEntry};
use crate::steps::seal_personal_data;
use mongodb::bson::DateTime;
use shared::db::{Db, LockGuard, MigrationRecord, SystemContext};
use shared::directory::Directory;
use shared::seam::{NoSeam, Seam};
use std::collections::HashSet;
use std::time::Instant;

/// How `up` keeps concurrent runs apart. Deployments always take the lease; `Unguarded` exists
/// only so that a test can show its check catches a migration that runs twice without it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    Lease,
    Unguarded,
}

/// `setup`: every index, idempotently. It touches no document and needs no directory.
pub async fn setup(db: &Db) -> Result<Report, MigrationError> {
    let outcomes = indexes::ensure(&db.indexes(&SystemContext::new("migrations"))).await?;
    let created = outcomes.iter().filter(|o| o.status == "created").count();
    Ok(Report::Setup { created, existing: outcomes.len() - created, indexes: outcomes })
}

/// `up` as deployed: every registered migration, under the lease.
pub async fn up_registered(db: &Db, directory: &dyn Directory) -> Result<Report, MigrationError> {
    up(db, directory, MIGRATIONS, Guard::Lease, &NoSeam).await
}

/// `up` over a given list of migrations. A run waits (bounded by [`lease::LOCK_WAIT`]) for
/// another's lease, telling `seam` each time it finds the lease held (`migrations.lease.busy`).
#[doc(hidden)]
pub async fn up(
    db: &Db,
    directory: &dyn Directory,
    migrations: &[Migration],
    guard: Guard,
    seam: &dyn Seam,
) -> Result<Report, MigrationError> {
    let system = SystemContext::new("migrations");
    let deps = MigrationDeps { db, system: &system, directory };
    if guard == Guard::Unguarded {
        return apply_pending(deps, migrations, None).await;
    }
    let lease = lease::wait_for(db, &system, seam).await?;
    let result = apply_pending(deps, migrations, Some(&lease)).await;
    // Release even after a failure.
    lease::release(lease).await;
    result
}

async fn apply_pending(deps: MigrationDeps<'_>, migrations: &[Migration], lease: Option<&LockGuard>) -> Result<Report, MigrationError> {
    let ledger = deps.db.migration_ledger(deps.system);
    let done: HashSet<String> = ledger.applied().await?.into_iter().map(|r| r.name).collect();
    let (mut applied, mut already_applied) = (Vec::new(), Vec::new());
    for migration in migrations {
        if done.contains(migration.name) {
            already_applied.push(migration.name.to_owned());
            continue;
        }
        // Each migration starts with a full lease, and only while the lease is still ours.
        if let Some(lease) = lease {
            if !lease.renew(LOCK_TTL).await? {
                return Err(MigrationError::LockLost(migration.name));
            }
        }
        let started = Instant::now();
        let applied_at = DateTime::now();
        let changed = (migration.run)(deps).await.map_err(|source| MigrationError::Failed { name: migration.name, source })?;
        let duration_ms = started.elapsed().as_millis() as i64;
        let record = MigrationRecord { name: migration.name.to_owned(), applied_at, duration_ms };
        if ledger.record(&record).await? {
            tracing::info!(migration = migration.name, duration_ms, changed, "migration applied");
            applied.push(Applied { name: migration.name.to_owned(), duration_ms, documents_changed: changed });
        } else {
            already_applied.push(migration.name.to_owned());
        }
    }
    Ok(Report::Up { applied, already_applied })
}

/// `status`: the applied migrations, the pending ones, and what the sealing migration has
/// still to seal.
pub async fn status(db: &Db, system: &SystemContext) -> Result<Report, MigrationError> {
    let records = db.migration_ledger(system).applied().await?;
    let done: HashSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
    let pending = MIGRATIONS.iter().filter(|m| !done.contains(m.name)).map(|m| m.name.to_owned()).collect();
    let applied = records
        .iter()
        .map(|r| StatusEntry { name: r.name.clone(), applied_at: shared::clock::rfc3339_millis(r.applied_at), duration_ms: r.duration_ms })
        .collect();
    let remaining = seal_personal_data::remaining(db, system).await?;
    let tenants_with_keys = db.keyring()?.vault().tenants_with_keys().await?.len() as u64;
    let personal_data = PersonalDataStatus { remaining, remaining_total: remaining.total(), tenants_with_keys };
    Ok(Report::Status { applied, pending, personal_data })
}
