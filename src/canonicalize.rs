//! Phase 2 (SPEC §7): one canonical form of host and path, used for routing, for rules and
//! for forwarding, so a rule can never be checked against a different path than the one the
//! upstream serves (the root of most auth-proxy bypasses). Pure: no I/O, no clock.
//!
//! Host: lowercased, port and trailing dot dropped. Path: percent-escapes of unreserved
//! characters decoded once (so `%2e%2e` is `..`), other escapes kept with uppercase hex,
//! `//` merged, dot segments resolved. Refused with 400: an encoded `/` (`%2F`), any `\` or
//! `%5C`, `%00`, `#` or `%23`, bad escapes, control characters, and `..` above the root.
//!
//! Path parameters: servlet containers (Tomcat, Jetty, Spring) cut every segment at its first
//! `;` and then resolve dot segments, so `/public/..;/admin` is `/admin` to them while it is a
//! segment named `..;` to anyone else. A segment that is empty, `.` or `..` apart from its
//! parameters (`;x`, `.;x`, `..;x`, also with `%3B` or encoded dots) is refused with 400: no
//! reading of it is safe for both kinds of upstream. Routes and rules are matched against the
//! path with each segment's parameters removed ([`CanonicalRequest::match_path`]).

/// Put into a request's extensions by the listener when its raw request-target held a `#`
/// (which hyper's URI parser would drop): phase 2 refuses it with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFragment;

/// Put into a request's extensions by the listener when the HTTP/1 request head it read was
/// one hyper would refuse with a bare status line and no body: hyper was handed a stand-in
/// head instead, so that the refusal is the gateway's own error page (SPEC §6, §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedHead {
    /// Longer than `max_request_header_bytes`, or more header lines than hyper takes: 431.
    TooLarge,
    /// A request-target longer than hyper takes: 414.
    UriTooLong,
    /// Not a request head HTTP/1.1 allows: 400.
    Malformed,
}

/// The host a request names, as sent (before canonicalization): an absolute-form target's
/// authority — HTTP/2's `:authority` too — before `Host` (RFC 9112 §3.2.2: a server ignores
/// `Host` then). Routing and the `Host` sent upstream both take it from here, so the app is
/// always told the host the gateway routed on.
pub fn named_host<'a>(
    authority: Option<&'a http::uri::Authority>,
    host: Option<&'a http::HeaderValue>,
) -> Option<&'a [u8]> {
    authority
        .map(|a| a.as_str().as_bytes())
        .or_else(|| host.map(http::HeaderValue::as_bytes))
}

/// A request whose host and path are canonical. Built only by [`canonicalize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalRequest {
    host: String,
    path: String,
    /// The path with every segment's parameters (`;…`) removed, as a servlet container reads
    /// it, when the path has any: what routes, rules and public prefixes are matched against.
    matched: Option<String>,
    query: Option<String>,
}

impl CanonicalRequest {
    pub fn host(&self) -> &str {
        &self.host
    }
    /// The path that is forwarded (segment parameters kept: `;jsessionid=…` is the app's).
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The path that routes and rules are matched against: [`path`](Self::path) with each
    /// segment's parameters removed, so `/admin;x/panel` meets the rules of `/admin/panel`
    /// that a servlet container will serve it as.
    pub fn match_path(&self) -> &str {
        self.matched.as_deref().unwrap_or(&self.path)
    }
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }
    /// Path and query as the upstream and the `rd` parameter see them.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("the Host header is not a valid host name")]
    BadHost,
    #[error("an HTTP/1.1 request without a Host header")]
    NoHost,
    #[error("more than one Host header")]
    TwoHosts,
    #[error("the Host header names another host than :authority")]
    HostNotAuthority,
    #[error("the path does not start with `/`")]
    NotAbsolute,
    #[error("the path holds an encoded `/`")]
    EncodedSlash,
    #[error("the path holds a backslash")]
    Backslash,
    #[error("the path holds a NUL byte")]
    Nul,
    #[error("the path holds a fragment marker")]
    Fragment,
    #[error("the path holds a malformed percent-escape")]
    BadEscape,
    #[error("the path holds a control character")]
    Control,
    #[error("the path climbs above the root")]
    AboveRoot,
    #[error("a path segment is empty, `.` or `..` apart from its parameters")]
    DotSegmentParameter,
}

pub fn canonicalize(
    host: Option<&str>,
    path: &str,
    query: Option<&str>,
) -> Result<CanonicalRequest, CanonicalError> {
    with_host(canonical_host(host.unwrap_or("")), path, query)
}

fn with_host(
    host: Result<String, CanonicalError>,
    path: &str,
    query: Option<&str>,
) -> Result<CanonicalRequest, CanonicalError> {
    if query.is_some_and(|q| q.contains('#')) {
        return Err(CanonicalError::Fragment);
    }
    let path = canonical_path(path)?;
    Ok(CanonicalRequest {
        host: host?,
        matched: (path.contains(';') || path.contains("%3B")).then(|| without_parameters(&path)),
        path,
        query: query.map(str::to_string),
    })
}

/// `str::trim`, without decoding a char when both ends are ASCII that is not whitespace (a
/// header value's nearly always are; the hot path trims several per request).
pub fn trim(s: &str) -> &str {
    let solid = |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii() && !(b as char).is_whitespace());
    let bytes = s.as_bytes();
    if solid(bytes.first()) && solid(bytes.last()) {
        s
    } else {
        s.trim()
    }
}

pub fn canonical_host(raw: &str) -> Result<String, CanonicalError> {
    host_of(trim(raw).as_bytes())
}

/// The host of a trimmed `Host` value: lowercase, without port or trailing dot.
fn host_of(raw: &[u8]) -> Result<String, CanonicalError> {
    // Only checked ASCII gets here.
    let lowercase = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_ascii_lowercase)
            .map_err(|_| CanonicalError::BadHost)
    };
    let name = if let Some(rest) = raw.strip_prefix(b"[") {
        // IPv6 literal, with an optional port after `]`.
        let at = memchr::memchr(b']', rest).ok_or(CanonicalError::BadHost)?;
        let (inside, after) = (&rest[..at], &rest[at + 1..]);
        if !(after.is_empty() || after.strip_prefix(b":").is_some_and(is_port)) {
            return Err(CanonicalError::BadHost);
        }
        if !inside
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(CanonicalError::BadHost);
        }
        return Ok(format!("[{}]", lowercase(inside)?));
    } else {
        match memchr::memrchr(b':', raw) {
            Some(at) if is_port(&raw[at + 1..]) => &raw[..at],
            Some(_) => return Err(CanonicalError::BadHost),
            None => raw,
        }
    };
    let name = name.strip_suffix(b".").unwrap_or(name);
    // Letters, digits, `-`, `.` and `_`, and no `..`: one pass.
    let mut valid = true;
    let mut after_dot = false;
    for &b in name {
        let dot = b == b'.';
        valid &=
            (b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) && !(dot && after_dot);
        after_dot = dot;
    }
    if !valid {
        return Err(CanonicalError::BadHost);
    }
    lowercase(name)
}

fn is_port(s: &[u8]) -> bool {
    !s.is_empty() && s.len() <= 5 && s.iter().all(|b| b.is_ascii_digit())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes unreserved escapes and refuses the dangerous ones; the result has the same
/// segments the upstream will see.
fn decode_once(raw: &str) -> Result<String, CanonicalError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => (hex(h), hex(l)),
                    _ => (None, None),
                };
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(CanonicalError::BadEscape);
                };
                let decoded = hi << 4 | lo;
                match decoded {
                    b'/' => return Err(CanonicalError::EncodedSlash),
                    b'\\' => return Err(CanonicalError::Backslash),
                    0 => return Err(CanonicalError::Nul),
                    b'#' => return Err(CanonicalError::Fragment),
                    d if d < 0x20 || d == 0x7f => return Err(CanonicalError::Control),
                    d if is_unreserved(d) => out.push(d as char),
                    d => {
                        out.push('%');
                        out.push(HEX[usize::from(d >> 4)] as char);
                        out.push(HEX[usize::from(d & 15)] as char);
                    }
                }
                i += 3;
            }
            b'\\' => return Err(CanonicalError::Backslash),
            b'#' => return Err(CanonicalError::Fragment),
            0 => return Err(CanonicalError::Nul),
            b if b < 0x21 || b == 0x7f => return Err(CanonicalError::Control),
            b if b >= 0x80 => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
                i += 1;
            }
            b => {
                out.push(b as char);
                i += 1;
            }
        }
    }
    Ok(out)
}

pub fn canonical_path(raw: &str) -> Result<String, CanonicalError> {
    if !raw.starts_with('/') {
        return Err(CanonicalError::NotAbsolute);
    }
    if already_canonical(raw) {
        return Ok(raw.to_owned());
    }
    rebuild_path(raw)
}

/// Decodes `raw` and resolves its dot segments and repeated slashes.
fn rebuild_path(raw: &str) -> Result<String, CanonicalError> {
    let decoded = decode_once(raw)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        trailing_slash = false;
        let (name, has_parameters) = segment_name(segment);
        if has_parameters && matches!(name, "" | "." | "..") {
            return Err(CanonicalError::DotSegmentParameter);
        }
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                segments.pop().ok_or(CanonicalError::AboveRoot)?;
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Whether `canonical_path` would give back `raw` (which starts with `/`) unchanged: visible
/// ASCII without escapes, backslashes or `#`, and no empty, `.` or `..` segment (an empty
/// last one is the trailing slash, which stays). Most requests are, and skip the rebuild.
fn already_canonical(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let plain = bytes.iter().fold(true, |ok, &b| {
        ok & (b > 0x20) & (b < 0x7f) & (b != b'%') & (b != b'\\') & (b != b'#') & (b != b';')
    });
    if !plain {
        return false;
    }
    let mut segments = raw[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if matches!(segment, "." | "..") || (segment.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// A decoded segment's name before its parameters, and whether it has any: a `;`, or a `%3B`
/// that a container decoding before it cuts would read as one.
fn segment_name(segment: &str) -> (&str, bool) {
    let semicolon = segment.find(';');
    let encoded = segment.find("%3B");
    match (semicolon, encoded) {
        (None, None) => (segment, false),
        (Some(a), Some(b)) => (&segment[..a.min(b)], true),
        (Some(at), None) | (None, Some(at)) => (&segment[..at], true),
    }
}

/// A canonical path with each segment cut at its first `;` (or `%3B`).
fn without_parameters(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment_name(segment).0);
    }
    out
}

/// Whether `path` is under `prefix` on a segment boundary: `/admin` covers `/admin`,
/// `/admin/x` and `/admin;x` (a path parameter, which servlet containers strip), but not
/// `/admin-old`. `prefix` is canonical without a trailing slash, or `/`.
pub fn under_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with(';'),
        None => false,
    }
}

#[cfg(test)]
mod tests;
