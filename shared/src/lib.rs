//! What two or more contexts share, and the isolation machinery that every one of them goes
//! through (docs/ARCHITECTURE.md §2). Three layers, each module in exactly one; a layer uses the
//! layers below it, with one exception: the data layer's clients of AWS (`directory`, `pii`,
//! `receipt`) report a dependency's failure through `metrics::dependency_error`.
//!
//! - **edge**, where a request or an event meets the code: the HTTP plumbing and `serve`,
//!   admission, the caller's identity, the error envelope, the audit writer, metrics, request
//!   facts and telemetry;
//! - **data**: the tenant scope and every narrow handle on the database (`db`), the stored
//!   models, sealed personal data (`pii`), the signed erasure receipt (`receipt`), the user
//!   directory, and the permission catalogue;
//! - **kernel**, which knows no database and no request: ids and validated values, the clock,
//!   text rules, plans, configuration, secrets, and the test seams.

// edge
pub mod admission;
pub mod audit;
pub mod error;
pub mod event_kind;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod request;
pub mod telemetry;

// data
pub mod db;
pub mod directory;
#[cfg(feature = "exports")]
pub mod exports;
pub mod jobs;
pub mod models;
pub mod permissions;
pub mod pii;
pub mod receipt;
pub mod saga;

// kernel
pub mod clock;
pub mod config;
pub mod ids;
pub mod plans;
pub mod seam;
pub mod secrets;
pub mod text;

pub use admission::{SuperadminContext, TenantContext};
pub use db::{Db, DbError, SystemContext};
pub use error::ApiError;
pub use identity::Identity;
