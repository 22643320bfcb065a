//! Whatever `rd` is, the answer is a same-origin path: `/`, or one `/` followed by neither `/`
//! nor `\`, with no control characters, spaces or backslashes, on every decoding.
#![no_main]
use gatehouse::endpoints::redirect::safe_return;
use libfuzzer_sys::fuzz_target;

fn local(s: &str) -> bool {
    let b = s.as_bytes();
    b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/') | Some(b'\\'))
        && !s.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\')
}

fuzz_target!(|data: &[u8]| {
    let Ok(rd) = std::str::from_utf8(data) else { return };
    let out = safe_return(Some(rd));
    assert!(local(&out), "{rd:?} -> {out:?}");
    assert!(http::HeaderValue::from_str(&out).is_ok());
});
