//! Named points inside multi-step operations (sagas, conditional moves) where a test can step
//! in: to run a competing request at an exact interleaving, or to fail a step. Production code
//! passes [`NoSeam`], which does nothing. Races are then tested deterministically, never by
//! timing.

use futures_util::future::BoxFuture;
use std::sync::Arc;

/// Something that may act when an operation reaches a named point.
pub trait Seam: Send + Sync + std::fmt::Debug {
    /// Called when the operation reaches `point`; the operation waits for the returned future.
    fn reached<'a>(&'a self, point: &'static str) -> BoxFuture<'a, ()>;
}

/// No interference: what every deployed function uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSeam;

impl Seam for NoSeam {
    fn reached<'a>(&'a self, _point: &'static str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// The shared handle a context's state keeps.
pub type SharedSeam = Arc<dyn Seam>;

/// No interference, as a shared handle.
pub fn none() -> SharedSeam {
    Arc::new(NoSeam)
}
