use super::*;

fn path(raw: &str) -> Result<String, CanonicalError> {
    canonical_path(raw)
}

#[test]
fn dot_segments_resolve_and_slashes_merge() {
    assert_eq!(path("/").as_deref(), Ok("/"));
    assert_eq!(path("/a/b/../c").as_deref(), Ok("/a/c"));
    assert_eq!(path("/public/../admin").as_deref(), Ok("/admin"));
    assert_eq!(path("/public/%2e%2e/admin").as_deref(), Ok("/admin"));
    assert_eq!(path("/public/.%2E/admin").as_deref(), Ok("/admin"));
    assert_eq!(path("//admin").as_deref(), Ok("/admin"));
    assert_eq!(path("/a//b///c").as_deref(), Ok("/a/b/c"));
    assert_eq!(path("/a/./b/.").as_deref(), Ok("/a/b/"));
    assert_eq!(path("/a/b/").as_deref(), Ok("/a/b/"));
    assert_eq!(path("/a/..").as_deref(), Ok("/"));
}

#[test]
fn unreserved_escapes_decode_and_others_are_normalised() {
    assert_eq!(path("/%61dmin").as_deref(), Ok("/admin"));
    assert_eq!(path("/a%20b").as_deref(), Ok("/a%20b"));
    assert_eq!(path("/a%3fb").as_deref(), Ok("/a%3Fb"));
    assert_eq!(path("/%252e%252e/x").as_deref(), Ok("/%252e%252e/x"));
}

#[test]
fn dangerous_paths_are_refused() {
    assert_eq!(path("/a%2Fb"), Err(CanonicalError::EncodedSlash));
    assert_eq!(path("/a%2fb"), Err(CanonicalError::EncodedSlash));
    assert_eq!(path("/a\\b"), Err(CanonicalError::Backslash));
    assert_eq!(path("/a%5Cb"), Err(CanonicalError::Backslash));
    assert_eq!(path("/a%00b"), Err(CanonicalError::Nul));
    assert_eq!(path("/a#b"), Err(CanonicalError::Fragment));
    assert_eq!(path("/a%23b"), Err(CanonicalError::Fragment));
    assert_eq!(path("/.."), Err(CanonicalError::AboveRoot));
    assert_eq!(path("/a/../../b"), Err(CanonicalError::AboveRoot));
    assert_eq!(path("/%2e%2e/etc"), Err(CanonicalError::AboveRoot));
    assert_eq!(path("/a%zz"), Err(CanonicalError::BadEscape));
    assert_eq!(path("/a%4"), Err(CanonicalError::BadEscape));
    assert_eq!(path("/a%0d%0a"), Err(CanonicalError::Control));
    assert_eq!(path("admin"), Err(CanonicalError::NotAbsolute));
    assert_eq!(path("*"), Err(CanonicalError::NotAbsolute));
}

#[test]
fn canonicalization_is_idempotent_on_samples() {
    for raw in ["/a/../b/./c//d/", "/%7Euser/x%20y", "/x/%2e/y", "/"] {
        let once = path(raw).unwrap();
        assert_eq!(path(&once).unwrap(), once, "{raw}");
    }
}

#[test]
fn hosts_lose_case_port_and_trailing_dot() {
    assert_eq!(
        canonical_host("App.Example.COM:8443").as_deref(),
        Ok("app.example.com")
    );
    assert_eq!(
        canonical_host("app.example.com.").as_deref(),
        Ok("app.example.com")
    );
    assert_eq!(canonical_host("[::1]:80").as_deref(), Ok("[::1]"));
    assert_eq!(canonical_host("").as_deref(), Ok(""));
    assert!(canonical_host("evil.com/x").is_err());
    assert!(canonical_host("a b").is_err());
    assert!(canonical_host("host:port").is_err());
}

#[test]
fn prefixes_match_on_segment_boundaries() {
    assert!(under_prefix("/admin", "/admin"));
    assert!(under_prefix("/admin/x", "/admin"));
    assert!(under_prefix("/admin;jsessionid=1", "/admin"));
    assert!(!under_prefix("/admin-old", "/admin"));
    assert!(!under_prefix("/adm", "/admin"));
    assert!(under_prefix("/anything", "/"));
}

#[test]
fn query_with_fragment_marker_is_refused() {
    assert_eq!(
        canonicalize(Some("h"), "/a", Some("x#y")),
        Err(CanonicalError::Fragment)
    );
    let c = canonicalize(Some("H:1"), "/a/../b", Some("q=1")).unwrap();
    assert_eq!((c.host(), c.path_and_query().as_str()), ("h", "/b?q=1"));
}

mod fast_path {
    use super::super::{already_canonical, rebuild_path};
    use proptest::prelude::*;

    proptest! {
        // Failures are kept with the others, in tests/proptest-regressions/.
        #![proptest_config(ProptestConfig {
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct(
                    "tests/proptest-regressions/canonicalize_unit.txt",
                ),
            )),
            ..ProptestConfig::with_cases(20_000)
        })]
        /// A path the fast path passes through is one the full rebuild gives back unchanged.
        #[test]
        fn a_path_taken_as_it_is_is_what_the_rebuild_gives(
            raw in "/[a./%2Ff\\\\#; ~\u{e9}\t]{0,10}",
        ) {
            if already_canonical(&raw) {
                prop_assert_eq!(rebuild_path(&raw), Ok(raw.clone()));
            }
        }
    }

    #[test]
    fn the_fast_path_takes_plain_paths_and_leaves_the_rest() {
        for plain in ["/", "/a", "/a/b/", "/..a/b.", "/~u/x-y_z"] {
            assert!(already_canonical(plain), "{plain}");
        }
        for other in [
            "//",
            "/a//b",
            "/.",
            "/a/./b",
            "/a/..",
            "/%41",
            "/a\\b",
            "/a b",
            "/\u{e9}",
            // Segment parameters are checked by the rebuild.
            "/a.b/c;d=e",
        ] {
            assert!(!already_canonical(other), "{other}");
        }
    }
}

mod trim_fast {
    use super::super::trim;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct(
                    "tests/proptest-regressions/canonicalize_trim.txt",
                ),
            )),
            ..Default::default()
        })]
        #[test]
        fn trim_is_str_trim(s in "[ \t\r\n\u{b}\u{c}\u{1c}\u{85}\u{a0}\u{3000}ab=;\u{e9}]{0,6}") {
            proptest::prop_assert_eq!(trim(&s), s.trim());
        }
    }
}

#[test]
fn servlet_path_parameters_on_dot_or_empty_segments_are_refused() {
    // What Tomcat, Jetty and Spring resolve to another path than the one we would check.
    for path in [
        "/public/..;/admin",
        "/public/..;x=1/admin",
        "/;/admin",
        "/.;/admin",
        "/;jsessionid=1/admin",
        "/a/.;x",
        "/public/%2e%2e;/admin",
        "/public/.%2E;/admin",
        "/public/..%3B/admin",
        "/public/..%3b/admin",
        "/%2e;/admin",
        "/x//;a/admin",
    ] {
        assert_eq!(
            canonicalize(Some("h"), path, None),
            Err(CanonicalError::DotSegmentParameter),
            "{path}"
        );
    }
}

#[test]
fn routes_match_the_path_a_servlet_container_serves() {
    let c = |p: &str| canonicalize(Some("h"), p, None).unwrap();
    // Forwarded as sent (the parameter is the app's), matched without it.
    let r = c("/admin;jsessionid=1/panel");
    assert_eq!(r.path(), "/admin;jsessionid=1/panel");
    assert_eq!(r.match_path(), "/admin/panel");
    assert_eq!(c("/admin%3Bx/panel").match_path(), "/admin/panel");
    assert_eq!(c("/app/page;jsessionid=A1").match_path(), "/app/page");
    // A parameter on a named segment is fine; so is a plain path.
    assert_eq!(c("/a;b=c/d").path(), "/a;b=c/d");
    assert_eq!(c("/plain/path").match_path(), "/plain/path");
}
