//! The jobs this function runs beside the ledger migrations: scheduled or asked for by name,
//! never recorded in the ledger, each safe to run again.

pub mod reconcile_counters;
pub mod reconcile_tombstones;
pub mod rotate_key;
pub mod shred;
pub mod usage_snapshot;
