//! What every context shares: config, the cached client and tenant scope, identity, models,
//! errors, HTTP plumbing, the audit writer and telemetry.

pub mod audit;
pub mod clock;
pub mod config;
pub mod context;
pub mod db;
pub mod directory;
pub mod error;
pub mod http;
pub mod identity;
pub mod ids;
pub mod metrics;
pub mod models;
pub mod permissions;
pub mod pii;
pub mod plans;
pub mod request;
pub mod seam;
pub mod secrets;
pub mod telemetry;
pub mod text;

pub use context::{SuperadminContext, TenantContext};
pub use db::{Db, DbError, SystemContext};
pub use error::ApiError;
pub use identity::Identity;
