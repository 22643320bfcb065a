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

/// The log filter for `RUST_LOG` or `logging.level`. rustls reports a client's protocol
/// oddities (an IP address sent as SNI, say) as warnings: a line per handshake that any client
/// can cause and no operator can act on. They are errors-only unless the filter names rustls.
fn directives(filter: &str) -> String {
    if filter.contains("rustls") {
        filter.to_string()
    } else {
        format!("{filter},rustls=error")
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `logging.level`.
pub fn init(logging: &Logging) {
    use tracing_subscriber::EnvFilter;
    let filter = crate::env::var("RUST_LOG")
        .and_then(|f| EnvFilter::try_new(directives(&f)).ok())
        .or_else(|| EnvFilter::try_new(directives(&logging.level)).ok())
        .unwrap_or_else(|| EnvFilter::new(directives("info")));
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

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn rustls_warnings_are_quiet_unless_the_filter_names_rustls() {
        assert_eq!(directives("info"), "info,rustls=error");
        assert_eq!(
            directives("gatehouse=debug,warn"),
            "gatehouse=debug,warn,rustls=error"
        );
        assert_eq!(directives("info,rustls=warn"), "info,rustls=warn");
        for level in ["info", "debug", "warn,hyper=trace"] {
            assert!(tracing_subscriber::EnvFilter::try_new(directives(level)).is_ok());
        }
    }
}
