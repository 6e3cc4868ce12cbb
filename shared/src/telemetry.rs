//! One JSON tracing subscriber for every binary. Each line carries the current span's fields,
//! so the request span's `requestId` and `tenantId` reach every log line of a request.

use tracing_subscriber::EnvFilter;

/// Targets held at `info` whatever `RUST_LOG` asks: at `debug` and `trace` the AWS SDK's runtime
/// and the HTTP stacks log request and response bodies, and KMS answers carry plaintext data
/// keys (docs/ARCHITECTURE.md §20: keys and personal data are never logged).
pub const QUIET_TARGETS: [&str; 9] = [
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_types",
    "aws_sdk_kms",
    "aws_config",
    "hyper",
    "hyper_util",
    "h2",
];

/// `RUST_LOG` (default `base`), with [`QUIET_TARGETS`] held at `info`.
pub fn filter(base: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(base));
    for target in QUIET_TARGETS {
        filter = filter.add_directive(format!("{target}=info").parse().expect("a valid directive"));
    }
    filter
}

/// Installs the subscriber (`RUST_LOG` filters; default `info`) and turns on the metric lines
/// of [`crate::metrics`] as `function` (the binary's name). Safe to call twice.
pub fn init(function: &'static str) {
    crate::metrics::init(function);
    let filter = filter("info");
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .try_init();
}
