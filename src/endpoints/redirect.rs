//! `rd`, the return destination after login or logout (SPEC §6). Only a local path is
//! accepted: it starts with exactly one `/`, the next character is neither `/` nor `\`, and
//! it holds no control characters, whitespace, backslashes or scheme — checked on the raw
//! value and on every percent-decoding of it (browsers and servers disagree on how often
//! they decode). Anything else becomes `/`. This closes the open-redirect class behind
//! oauth2-proxy's and others' advisories (`//evil.com`, `/\evil.com`, `/%09/evil.com`, ...).

/// Percent-decodes one layer; `None` if nothing changed.
fn decode_layer(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let bytes: Vec<u8> = percent_decode(s.as_bytes());
    let out = String::from_utf8_lossy(&bytes).into_owned();
    (out != s).then_some(out)
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            if let (Some(h), Some(l)) = (
                input.get(i + 1).copied().and_then(hex),
                input.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn is_local_path(s: &str) -> bool {
    let mut chars = s.chars();
    if chars.next() != Some('/') {
        return false;
    }
    if matches!(chars.next(), Some('/') | Some('\\')) {
        return false;
    }
    if s.chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return false;
    }
    true
}

/// The safe form of a return destination: the value itself if it is a local path on every
/// decoding layer, `/` otherwise. The result is always a valid `Location` value.
pub fn safe_return(rd: Option<&str>) -> String {
    /// More layers of encoding than this is an attack, not a link.
    const MAX_LAYERS: usize = 4;
    let Some(rd) = rd.filter(|rd| rd.is_ascii()) else {
        return "/".to_string();
    };
    let mut layer = rd.to_string();
    for _ in 0..=MAX_LAYERS {
        if !is_local_path(&layer) {
            return "/".to_string();
        }
        match decode_layer(&layer) {
            Some(next) => layer = next,
            None => return rd.to_string(),
        }
    }
    "/".to_string()
}

#[cfg(test)]
mod tests {
    use super::safe_return;

    #[test]
    fn local_paths_pass_through() {
        for ok in [
            "/",
            "/app",
            "/app/x?y=1&z=%2F",
            "/search?q=a:b",
            "/go?to=https://x",
        ] {
            assert_eq!(safe_return(Some(ok)), ok, "{ok}");
        }
        assert_eq!(safe_return(None), "/");
    }

    #[test]
    fn everything_that_leaves_the_origin_becomes_root() {
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "\\/evil.com",
            "https://evil.com",
            "evil.com",
            "/%2Fevil.com",
            "/%5Cevil.com",
            "/%09/evil.com",
            "/\t/evil.com",
            "/%2509/evil.com",
            "/ /evil.com",
            "javascript:alert(1)",
            "",
            "/é",
        ] {
            assert_eq!(safe_return(Some(bad)), "/", "{bad:?}");
        }
    }
}
