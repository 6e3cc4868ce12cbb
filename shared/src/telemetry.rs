//! One JSON tracing subscriber for every binary. Each line carries the current span's fields,
//! so the request span's `requestId` and `tenantId` reach every log line of a request.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber (`RUST_LOG` filters; default `info`) and turns on the metric lines
/// of [`crate::metrics`] as `function` (the binary's name). Safe to call twice.
pub fn init(function: &'static str) {
    crate::metrics::init(function);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .try_init();
}
