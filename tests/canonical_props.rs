//! Property tests for canonicalization (SPEC §7): idempotent, never escapes the root, and
//! prefix matching only on segment boundaries.

use gatehouse::canonicalize::{canonical_path, under_prefix, CanonicalError};
use proptest::prelude::*;

fn raw_path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("%2e%2e".to_string()),
        Just("%2E.".to_string()),
        Just(String::new()),
        Just("admin".to_string()),
        Just("a%20b".to_string()),
        Just("%41".to_string()),
        Just("x;y".to_string()),
        "[a-zA-Z0-9._~%-]{1,8}",
    ];
    prop::collection::vec(segment, 0..8).prop_map(|segs| format!("/{}", segs.join("/")))
}

proptest! {
    // Every proptest keeps its failures in tests/proptest-regressions/ (one place).
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "tests/proptest-regressions/canonical_props.txt",
        ))),
        ..ProptestConfig::with_cases(4000)
    })]

    #[test]
    fn canonical_paths_are_fixed_points(raw in raw_path()) {
        if let Ok(once) = canonical_path(&raw) {
            prop_assert_eq!(canonical_path(&once), Ok(once.clone()));
        }
    }

    #[test]
    fn canonical_paths_never_hold_dot_segments_or_empty_segments(raw in raw_path()) {
        if let Ok(c) = canonical_path(&raw) {
            prop_assert!(c.starts_with('/'));
            let inner = c.trim_end_matches('/');
            for seg in inner.split('/').skip(1) {
                prop_assert!(seg != ".." && seg != "." && !seg.is_empty(), "{} -> {}", raw, c);
            }
            prop_assert!(!c.contains("%2F") && !c.contains("%5C") && !c.contains("%00"));
        }
    }

    #[test]
    fn climbing_above_the_root_is_always_refused(raw in raw_path()) {
        let mut depth: i64 = 0;
        let mut escaped = false;
        for seg in raw.split('/').skip(1) {
            let decoded = seg.replace("%2e", ".").replace("%2E", ".");
            match decoded.as_str() {
                ".." => { depth -= 1; if depth < 0 { escaped = true; } }
                "." | "" => {}
                _ => depth += 1,
            }
        }
        let result = canonical_path(&raw);
        if escaped {
            prop_assert!(result.is_err(), "{} climbed out but was accepted", raw);
        } else {
            prop_assert_ne!(result, Err(CanonicalError::AboveRoot), "{}", raw);
        }
    }

    #[test]
    fn prefixes_match_only_on_segment_boundaries(raw in raw_path(), prefix in "/[a-z]{1,4}") {
        if let Ok(c) = canonical_path(&raw) {
            if under_prefix(&c, &prefix) {
                let rest = &c[prefix.len()..];
                prop_assert!(rest.is_empty() || rest.starts_with('/') || rest.starts_with(';'));
            }
        }
    }
}
