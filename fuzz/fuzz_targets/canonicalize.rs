//! Canonicalization never panics, is idempotent, and never yields a path that climbs out,
//! holds a dot segment, or an encoded slash/backslash/NUL.
#![no_main]
use gatehouse::canonicalize::{canonical_host, canonical_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (host, path) = text.split_once('\n').unwrap_or(("", text));
    let _ = canonical_host(host);
    if let Ok(c) = canonical_path(path) {
        assert!(c.starts_with('/'));
        assert_eq!(canonical_path(&c).as_deref(), Ok(c.as_str()), "not idempotent: {path:?}");
        for seg in c.trim_end_matches('/').split('/').skip(1) {
            assert!(seg != ".." && seg != "." && !seg.is_empty(), "{path:?} -> {c:?}");
        }
        let upper = c.to_ascii_uppercase();
        assert!(!upper.contains("%2F") && !upper.contains("%5C") && !upper.contains("%00"));
        assert!(!c.contains('\\') && !c.contains('#'));
    }
});
