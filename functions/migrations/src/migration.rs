//! What a ledger migration is: a name, a body, and the dependencies the body works with.

use futures_util::future::BoxFuture;
use shared::db::{Db, DbError, SystemContext};
use shared::directory::Directory;

/// What a migration works with. Named apart from `shared::http::Deps` (a context's bundle):
/// this one carries the system scope every migration runs under.
#[derive(Clone, Copy)]
pub struct MigrationDeps<'a> {
    pub db: &'a Db,
    pub system: &'a SystemContext,
    /// The user pool, for repairs of user records.
    pub directory: &'a dyn Directory,
}

/// One migration: a name (`NNN-description`) and its body, which returns how many documents
/// it changed. Bodies must be idempotent: a lease that expires mid-run could let one repeat.
pub struct Migration {
    pub name: &'static str,
    pub run: for<'a> fn(MigrationDeps<'a>) -> BoxFuture<'a, Result<u64, DbError>>,
}

/// How many tenants a migration reads from the registry at a time.
pub const TENANT_BATCH: i64 = 100;
