//! The ledger migrations, one file per step, each named after its step. Their order, and the
//! names the ledger knows them by, are `crate::registry`'s.

pub mod add_tenant_features;
pub mod audit_retention_per_plan;
pub mod link_cognito_users;
pub mod seal_personal_data;
pub mod tenant_counters;
