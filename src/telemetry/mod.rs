//! Logging set-up (SPEC §9). One line per request is written by `gateway::finish`; audit
//! events go to target `audit`. Nothing here ever formats a token, cookie, password or hash.

pub mod audit;
pub mod metrics;

use crate::config::Logging;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `logging.level`.
pub fn init(logging: &Logging) {
    use tracing_subscriber::EnvFilter;
    let filter = crate::config::process_env("RUST_LOG")
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&logging.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if logging.json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}
