//! Logging set-up (SPEC §9). One line per request is written by `gateway::finish`; audit
//! events go to target `audit`. Nothing here ever formats a token, cookie, password or hash.

pub mod audit;
pub mod metrics;

/// The `logging:` section, built.
#[derive(Debug, Clone)]
pub struct Logging {
    pub json: bool,
    pub level: String,
}

/// Logs the config's warnings (things that load but deserve a look), one line each: at
/// start-up, for the binary and the demo alike.
pub fn log_warnings(warnings: &[String]) {
    for w in warnings {
        tracing::warn!(warning = %w, "config warning");
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `logging.level`.
pub fn init(logging: &Logging) {
    use tracing_subscriber::EnvFilter;
    let filter = crate::env::var("RUST_LOG")
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&logging.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Colours only for a person at a terminal: a file, a pipe or a container log gets none.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
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
