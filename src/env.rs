//! The process environment. The one place that reads it (`clippy.toml` bans `std::env::var`
//! elsewhere): `${VAR}` in the config, `RUST_LOG`, `GATEHOUSE_EXPRESS_LANE`.

/// The variable's value, if set and valid UTF-8.
#[allow(clippy::disallowed_methods)]
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
