//! The one clock the runtime reads. Pure functions take `now` instead.

/// Seconds since the Unix epoch: for JWT claims, which are whole seconds (RFC 7519 §2).
pub fn now() -> u64 {
    now_ms() / 1000
}

/// Milliseconds since the Unix epoch: for every time the gateway keeps itself (sessions,
/// refresh tokens, grace, revocations, lockouts), so that no configured lifetime is exceeded
/// by the fraction of a second a whole-second clock would round away (SPEC §4 "Time").
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seconds as milliseconds (config durations are kept in seconds).
pub fn ms(seconds: u64) -> u64 {
    seconds.saturating_mul(1000)
}

/// A time a version before millisecond times wrote in seconds, as milliseconds: any value
/// below 10^11 (1973 in milliseconds, year 5138 in seconds) is seconds.
pub fn legacy_to_ms(value: u64) -> u64 {
    if value < 100_000_000_000 {
        ms(value)
    } else {
        value
    }
}
