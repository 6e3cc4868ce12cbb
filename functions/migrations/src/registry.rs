//! The ordered list of ledger migrations. Append only: a migration's name is its identity in the
//! ledger, so renaming or reordering one would run it again.

use crate::migration::Migration;
use crate::steps::{add_tenant_features, audit_retention_per_plan, link_cognito_users, seal_personal_data, tenant_counters};

/// Every migration, in the order they run.
pub const MIGRATIONS: &[Migration] = &[
    Migration { name: "001-add-tenant-features", run: add_tenant_features::run },
    Migration { name: "002-tenant-counters", run: tenant_counters::run },
    Migration { name: "003-link-cognito-users", run: link_cognito_users::run },
    Migration { name: "004-audit-retention-per-plan", run: audit_retention_per_plan::run },
    Migration { name: shared::pii::SEAL_MIGRATION, run: seal_personal_data::run },
];

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn migration_names_are_unique_and_ordered() {
        let names: Vec<_> = MIGRATIONS.iter().map(|m| m.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
    }
}
