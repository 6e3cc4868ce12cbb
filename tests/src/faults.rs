//! The fault seam the saga tests step in with: one fault at one step of a saga.

use futures_util::future::BoxFuture;
use shared::saga::{Fault, StepFaults, When};
use std::sync::Arc;

/// One fault at one step. A crash also says when it is reached, so that the test drops the
/// saga's future exactly there (no timing): before the step acts, or after it acted and before
/// it is recorded.
#[derive(Debug)]
pub struct At {
    pub step: &'static str,
    pub fault: Fault,
    pub reached: Arc<tokio::sync::Notify>,
}

impl At {
    /// `fault` at `step`.
    pub fn new(step: &'static str, fault: Fault) -> Self {
        Self { step, fault, reached: Arc::new(tokio::sync::Notify::new()) }
    }
}

/// Whether `fault` stops the saga as a crash would (the test then drops its future).
pub fn crashes(fault: Fault) -> bool {
    matches!(fault, Fault::Crash | Fault::CrashAfter)
}

impl StepFaults for At {
    fn at<'a>(&'a self, step: &'static str, when: When) -> BoxFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let acts = match self.fault {
                Fault::Fail | Fault::Crash => when == When::Before,
                Fault::LoseReply | Fault::CrashAfter => when == When::After,
            };
            if step != self.step || !acts {
                return None;
            }
            if crashes(self.fault) {
                self.reached.notify_one();
            }
            Some(self.fault)
        })
    }
}
