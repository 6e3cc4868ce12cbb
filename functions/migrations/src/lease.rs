//! The migrations lease: one lock in `locks` that keeps `up` runs and key rotations apart.

use crate::error::MigrationError;
use shared::db::{Db, LockGuard, SystemContext};
use shared::seam::Seam;
use std::future::Future;
use std::time::{Duration, Instant};

/// The lease that keeps `up` runs apart.
pub const LOCK_NAME: &str = "migrations";
/// How long a lease lasts: past the Lambda timeout (300 s), so that a live run never loses it.
pub const LOCK_TTL: Duration = Duration::from_secs(360);
/// How long a second `up` waits for the first before giving up (it can retry later).
pub const LOCK_WAIT: Duration = Duration::from_secs(20);

fn owner() -> String {
    mongodb::bson::oid::ObjectId::new().to_hex()
}

/// Takes the lease, waiting (bounded by [`LOCK_WAIT`]) while another run holds it, and telling
/// `seam` each time it finds it held (`migrations.lease.busy`).
pub async fn wait_for(db: &Db, system: &SystemContext, seam: &dyn Seam) -> Result<LockGuard, MigrationError> {
    let owner = owner();
    let locks = db.locks(system);
    let waited = Instant::now();
    loop {
        if let Some(lease) = locks.try_acquire(LOCK_NAME, &owner, LOCK_TTL).await? {
            return Ok(lease);
        }
        seam.reached("migrations.lease.busy").await;
        if waited.elapsed() >= LOCK_WAIT {
            return Err(MigrationError::LockBusy);
        }
        // Waiting for another run's lease: poll, bounded by LOCK_WAIT.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `work` holding the lease, taken once without waiting ([`MigrationError::LockBusy`] if
/// another run holds it), and released after, whatever the outcome.
pub async fn holding<T>(
    db: &Db,
    system: &SystemContext,
    work: impl Future<Output = Result<T, MigrationError>>,
) -> Result<T, MigrationError> {
    let Some(lease) = db.locks(system).try_acquire(LOCK_NAME, &owner(), LOCK_TTL).await? else {
        return Err(MigrationError::LockBusy);
    };
    let result = work.await;
    release(lease).await;
    result
}

/// Gives the lease back. If that fails, the lease expires by itself, so it is only logged.
pub async fn release(lease: LockGuard) {
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "could not release the migrations lease");
    }
}
