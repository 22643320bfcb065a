use super::*;

/// What hyper reads when `stream` arrives in pieces of `step` bytes: the bytes the gate
/// lets through (and a stand-in after a refused head, where the stream ends for hyper), the
/// flags, and the tracker's state at the end.
struct Gated {
    read: Vec<u8>,
    flags: Vec<(u64, Flag)>,
    framing: Framing,
    heads: u64,
    held: usize,
}

fn gate(stream: &[u8], step: usize, max_head: usize, preface_possible: bool) -> Gated {
    let flags = Flags::default();
    let mut tracker = Tracker::new(max_head, preface_possible);
    let mut read = Vec::new();
    for piece in stream.chunks(step) {
        let fed = tracker.feed(piece, &flags);
        match fed.release {
            Release::Prefix(n) => read.extend_from_slice(&piece[..n]),
            Release::Joined(bytes) => read.extend_from_slice(&bytes),
        }
        if let Some(stand_in) = fed.stand_in {
            read.extend_from_slice(&stand_in);
            break;
        }
    }
    let flags = flags.flagged.lock().unwrap().iter().cloned().collect();
    Gated {
        read,
        flags,
        framing: tracker.framing,
        heads: tracker.heads,
        held: tracker.partial.len(),
    }
}

/// Feeds `stream` in pieces of `step` bytes; returns the fragment flags (head index, target),
/// the tracker's state at the end and the heads counted.
fn track(stream: &[u8], step: usize) -> (Vec<(u64, String)>, Framing, u64) {
    let gated = gate(stream, step, 8192, false);
    let flags = gated
        .flags
        .iter()
        .filter_map(|(i, flag)| match flag {
            Flag::Fragment(uri) => Some((*i, uri.to_string())),
            Flag::Refused(_) => None,
        })
        .collect();
    (flags, gated.framing, gated.heads)
}

/// The same flags however the stream is cut into reads.
fn flags(stream: &[u8]) -> Vec<(u64, String)> {
    let whole = track(stream, stream.len().max(1));
    for step in 1..stream.len() {
        assert_eq!(track(stream, step), whole, "read in pieces of {step} bytes");
    }
    whole.0
}

fn uri(s: &str) -> http::Uri {
    s.parse().unwrap()
}

#[test]
fn a_raw_fragment_in_the_target_is_flagged_with_the_uri_hyper_builds() {
    let got = flags(b"GET /admin#/../public/ HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(got, vec![(0, "/admin".to_string())]);
    let got = flags(b"GET /a?q=1#x HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(got, vec![(0, "/a?q=1".to_string())]);
    let got = flags(b"GET http://h.example/p#f HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(got, vec![(0, "http://h.example/p".to_string())]);
}

#[test]
fn targets_without_a_fragment_are_not_flagged() {
    let stream = b"GET /a%23b HTTP/1.1\r\nhost: x\r\nx-note: #not-the-target\r\n\r\n";
    assert_eq!(flags(stream), vec![]);
}

#[test]
fn pipelined_heads_are_counted_in_order() {
    let stream = b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n\
                   GET /two#x HTTP/1.1\r\nhost: x\r\n\r\n\
                   GET /three HTTP/1.1\r\nhost: x\r\n\r\n";
    assert_eq!(flags(stream), vec![(1, "/two".to_string())]);
    assert_eq!(track(stream, stream.len()).2, 3);
}

#[test]
fn a_request_line_inside_a_sized_body_is_not_a_head() {
    let body = b"GET /x#y HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut stream = format!(
        "POST /form HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    stream.extend_from_slice(body);
    stream.extend_from_slice(b"GET /x HTTP/1.1\r\nhost: x\r\n\r\nGET /z#1 HTTP/1.1\r\n\r\n");
    assert_eq!(flags(&stream), vec![(2, "/z".to_string())]);
}

#[test]
fn a_request_line_inside_a_chunked_body_is_not_a_head() {
    let (first, second) = ("GET /", "x#y HTTP/1.1\r\nhost: x\r\n\r\n");
    let stream = format!(
        "POST /up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, Chunked\r\n\r\n\
         {:x};ext=1\r\n{first}\r\n\
         {:X} \t\r\n{second}\r\n\
         0\r\ntrailer: #t\r\n\r\n\
         GET /after#frag HTTP/1.1\r\nhost: x\r\n\r\n",
        first.len(),
        second.len()
    );
    assert_eq!(flags(stream.as_bytes()), vec![(1, "/after".to_string())]);
}

#[test]
fn empty_lines_before_a_head_are_skipped_like_hyper_does() {
    let stream = b"GET /a HTTP/1.1\r\n\r\n\r\n\r\nGET /b#c HTTP/1.1\r\n\r\n";
    assert_eq!(flags(stream), vec![(1, "/b".to_string())]);
}

#[test]
fn tracking_stops_where_the_stream_may_not_be_http_1_any_more() {
    for stream in [
        // An upgrade: the bytes after it may be WebSocket frames.
        &b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n\r\nGET /x#y HTTP/1.1\r\n\r\n"[..],
        b"CONNECT h:443 HTTP/1.1\r\nhost: h\r\n\r\nGET /x#y HTTP/1.1\r\n\r\n",
        // HTTP/2's connection preface.
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nGET /x#y HTTP/1.1\r\n\r\n",
        // Both framings (hyper closes after this request).
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\nGET /x#y HTTP/1.1\r\n\r\n",
        // Chunked framing hyper refuses: a bare LF in an extension, a size that overflows.
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1;a\nb\r\nx\r\n0\r\n\r\nGET /x#y HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n11111111111111111\r\nGET /x#y HTTP/1.1\r\n\r\n",
    ] {
        let gated = gate(stream, stream.len(), 8192, true);
        let shown = String::from_utf8_lossy(stream);
        assert_eq!(gated.flags, vec![], "{shown}");
        assert_eq!(gated.framing, Framing::Off, "{shown}");
        // Everything after that point passes untouched.
        assert_eq!(gated.read, stream, "{shown}");
    }
}

#[test]
fn the_service_gets_the_flag_only_for_the_same_request_and_target() {
    let flags = Flags::default();
    let fragment = Some(Found::Fragment(RawFragment));
    assert_eq!(flags.take(&uri("/first")), None);
    flags.flag(1, Flag::Fragment(uri("/two")));
    flags.flag(3, Flag::Fragment(uri("/four")));
    flags.flag(4, Flag::Refused(RefusedHead::TooLarge));
    assert_eq!(flags.take(&uri("/two")), fragment);
    // Request 2 had no flag; request 3's target differs from the flagged one: no 400.
    assert_eq!(flags.take(&uri("/three")), None);
    assert_eq!(flags.take(&uri("/not-four")), None);
    // A refusal is found only on the stand-in's target.
    assert_eq!(flags.take(&uri("/x")), None);
    // Used flags are gone.
    assert!(flags.flagged.lock().unwrap().is_empty());
    assert_eq!(flags.take(&uri("/four")), None);
    flags.flag(6, Flag::Refused(RefusedHead::Malformed));
    assert_eq!(
        flags.take(&uri(STAND_IN_TARGET)),
        Some(Found::Refused(RefusedHead::Malformed))
    );
}

#[test]
fn a_flag_for_a_head_the_service_never_got_is_dropped() {
    let flags = Flags::default();
    assert_eq!(flags.take(&uri("/a")), None);
    // Head 0 was flagged only after the service had moved on.
    flags.flag(0, Flag::Fragment(uri("/a")));
    flags.flag(1, Flag::Fragment(uri("/b")));
    assert_eq!(flags.take(&uri("/b")), Some(Found::Fragment(RawFragment)));
    assert!(flags.flagged.lock().unwrap().is_empty());
}

/// A good request, a head hyper refuses, and bytes that must never reach hyper after it.
fn around(refused: &[u8]) -> Vec<u8> {
    let mut stream = b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n".to_vec();
    stream.extend_from_slice(refused);
    stream.extend_from_slice(b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n");
    stream
}

/// Heads hyper answers with a bare status line, and how the gate refuses each.
const REFUSED: [(&[u8], RefusedHead); 10] = [
    (
        b"GET / HTTP/1.1\r\nho st: x\r\n\r\n",
        RefusedHead::Malformed,
    ),
    (b"G@T / HTTP/1.1\r\nhost: x\r\n\r\n", RefusedHead::Malformed),
    (b"GET / HTTP/9.1\r\nhost: x\r\n\r\n", RefusedHead::Malformed),
    (
        b"GET / HTTP/1.1\r\nx: a\x01b\r\n\r\n",
        RefusedHead::Malformed,
    ),
    (
        b"GET / HTTP/1.1\r\n: empty-name\r\n\r\n",
        RefusedHead::Malformed,
    ),
    (
        b"POST / HTTP/1.1\r\ncontent-length: +3\r\n\r\nabc",
        RefusedHead::Malformed,
    ),
    (
        b"POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabc",
        RefusedHead::Malformed,
    ),
    (
        b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        RefusedHead::Malformed,
    ),
    (
        b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
        RefusedHead::Malformed,
    ),
    (
        b"POST / HTTP/1.1\r\ncontent-length: 18446744073709551614\r\n\r\n",
        RefusedHead::TooLarge,
    ),
];

#[test]
fn a_head_hyper_refuses_never_reaches_it_and_a_stand_in_takes_its_place() {
    let many_lines: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
    let too_many = format!("GET / HTTP/1.1\r\n{many_lines}\r\n").into_bytes();
    let mut cases: Vec<(Vec<u8>, RefusedHead)> =
        REFUSED.iter().map(|(h, r)| (h.to_vec(), *r)).collect();
    cases.push((too_many, RefusedHead::TooLarge));
    for (head, kind) in cases {
        let stream = around(&head);
        let shown = String::from_utf8_lossy(&head).into_owned();
        for step in 1..=stream.len() {
            let gated = gate(&stream, step, 8192, true);
            let mut expected = b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n".to_vec();
            expected.extend_from_slice(&stand_in(&head));
            assert_eq!(
                String::from_utf8_lossy(&gated.read),
                String::from_utf8_lossy(&expected),
                "{shown:?} in pieces of {step}"
            );
            assert_eq!(gated.flags, vec![(1, Flag::Refused(kind))], "{shown:?}");
            assert_eq!(gated.framing, Framing::Off);
            assert_eq!(gated.held, 0);
        }
    }
}

#[test]
fn a_head_longer_than_the_limit_is_refused_as_too_large_and_one_at_the_limit_passes() {
    let max = 64;
    let head = |len: usize| {
        let fixed = "GET / HTTP/1.1\r\nx-pad: \r\n\r\n".len();
        format!(
            "GET / HTTP/1.1\r\nx-pad: {}\r\n\r\n",
            "a".repeat(len - fixed)
        )
        .into_bytes()
    };
    for step in [1, 7, 64, 1000] {
        let at_limit = head(max);
        let gated = gate(&at_limit, step, max, true);
        assert_eq!(gated.read, at_limit, "in pieces of {step}");
        assert_eq!(gated.flags, vec![]);
        let over = head(max + 1);
        let gated = gate(&over, step, max, true);
        assert_eq!(gated.flags, vec![(0, Flag::Refused(RefusedHead::TooLarge))]);
        assert_eq!(gated.read, stand_in(&over), "in pieces of {step}");
        // One that never ends is refused once the limit is reached, not later.
        let endless = over[..over.len() - 4].repeat(3);
        let gated = gate(&endless, step, max, true);
        assert_eq!(gated.flags, vec![(0, Flag::Refused(RefusedHead::TooLarge))]);
    }
}

#[test]
fn the_start_of_a_head_is_held_back_until_all_of_it_has_come() {
    let flags = Flags::default();
    let mut tracker = Tracker::new(8192, true);
    let head = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n";
    let body_and_next = b"GET /b HTTP/1.1\r\nho";
    // The first piece ends inside the head: hyper gets none of it.
    let fed = tracker.feed(&head[..10], &flags);
    assert_eq!(fed.release, Release::Prefix(0));
    let fed = tracker.feed(&head[10..20], &flags);
    assert_eq!(fed.release, Release::Joined(Vec::new()));
    // The rest arrives with the start of the next head: the whole first head goes through.
    let mut piece = head[20..].to_vec();
    piece.extend_from_slice(body_and_next);
    let fed = tracker.feed(&piece, &flags);
    assert_eq!(fed.release, Release::Joined(head.to_vec()));
    assert_eq!(fed.stand_in, None);
    assert_eq!(tracker.partial, body_and_next);
    assert_eq!(tracker.heads, 1);
}

#[test]
fn a_head_trickling_in_is_parsed_when_it_may_have_ended_not_at_every_byte() {
    let flags = Flags::default();
    let mut tracker = Tracker::new(8192, true);
    let head = format!(
        "GET /a HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
        "a".repeat(4000)
    );
    let mut read = Vec::new();
    for byte in head.as_bytes().chunks(1) {
        match tracker.feed(byte, &flags).release {
            Release::Prefix(n) => read.extend_from_slice(&byte[..n]),
            Release::Joined(bytes) => read.extend_from_slice(&bytes),
        }
    }
    assert_eq!(read, head.as_bytes());
    assert_eq!(tracker.heads, 1);
    // The first byte, then only where a line ended.
    assert!(tracker.parses <= 5, "{} parses", tracker.parses);
}

#[test]
fn http2_s_preface_is_held_until_it_is_whole_and_then_passes_untouched() {
    let mut stream = H2_PREFACE.to_vec();
    stream.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    for step in 1..=stream.len() {
        let gated = gate(&stream, step, 8192, true);
        assert_eq!(gated.read, stream, "in pieces of {step}");
        assert_eq!(gated.framing, Framing::Off);
    }
    // After the express lane answered requests, the connection is HTTP/1: the preface is a
    // head hyper refuses.
    let gated = gate(&stream, stream.len(), 8192, false);
    assert_eq!(
        gated.flags,
        vec![(0, Flag::Refused(RefusedHead::Malformed))]
    );
    // A request whose method is `PRI` is not the preface.
    let pri = b"PRI /x HTTP/1.1\r\nhost: x\r\n\r\n";
    let gated = gate(pri, 3, 8192, true);
    assert_eq!(gated.read, pri);
    assert_eq!(gated.heads, 1);
}

#[test]
fn the_stand_in_asks_for_a_page_when_the_refused_head_did_and_keeps_head() {
    let refused = b"HEAD /x HTTP/1.1\r\nAccept: text/html,*/*\r\nho st: x\r\n\r\n";
    assert_eq!(
        String::from_utf8(stand_in(refused)).unwrap(),
        "HEAD /%00 HTTP/1.1\r\nhost: refused.invalid\r\naccept: text/html\r\n\
         connection: close\r\n\r\n"
    );
    let refused = b"POST /x HTTP/1.1\r\naccept: application/json\r\nx-note: text/html\r\n\x01";
    assert_eq!(
        String::from_utf8(stand_in(refused)).unwrap(),
        "GET /%00 HTTP/1.1\r\nhost: refused.invalid\r\nconnection: close\r\n\r\n"
    );
    // The stand-in is a head hyper takes, and phase 2 refuses its target.
    assert!(matches!(
        parse_head(&stand_in(refused)),
        Parsed::Complete(Head {
            next: Framing::Head,
            ..
        })
    ));
    assert!(crate::canonicalize::canonicalize(Some("x"), STAND_IN_TARGET, None).is_err());
}

/// What hyper's own HTTP/1 server, with the gateway's settings and no gate in front, answers
/// to `stream` (then the end of the input): the first response's status, or none.
async fn hyper_answers(stream: &[u8], max_head: usize) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let service = hyper::service::service_fn(|_req| async {
        Ok::<_, std::convert::Infallible>(hyper::Response::new(
            http_body_util::Empty::<bytes::Bytes>::new(),
        ))
    });
    // Half-close: the input's end must not cut off the answer to a request read before it.
    let conn = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .max_buf_size(max_head)
        .serve_connection(hyper_util::rt::TokioIo::new(server), service);
    let served = tokio::spawn(conn);
    client.write_all(stream).await.ok()?;
    client.shutdown().await.ok()?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.read_to_end(&mut out),
    )
    .await;
    served.abort();
    std::str::from_utf8(out.get(9..12)?).ok()?.parse().ok()
}

/// What the gate makes of `stream`: the status its refusal answers with, 200 (the dummy
/// service's) when the first head passes, none when it holds it.
fn gate_answers(stream: &[u8], max_head: usize) -> Option<u16> {
    let gated = gate(stream, stream.len(), max_head, false);
    match gated.flags.first() {
        Some((0, Flag::Refused(RefusedHead::Malformed))) => Some(400),
        Some((0, Flag::Refused(RefusedHead::UriTooLong))) => Some(414),
        Some((0, Flag::Refused(RefusedHead::TooLarge))) => Some(431),
        _ if gated.heads > 0 => Some(200),
        _ => None,
    }
}

mod against_hyper {
    use super::*;
    use proptest::prelude::*;

    fn head() -> impl Strategy<Value = Vec<u8>> {
        let method = prop::sample::select(vec![
            "GET", "POST", "HEAD", "G@T", "PRI", "get", "", "M-SEARCH", "GET\t",
        ]);
        let target = prop::sample::select(vec![
            "/",
            "/a#b",
            "*",
            "http://x/y",
            "/a b",
            "/\x7f",
            "/%zz",
            "/\"q",
            "/{}",
            "/\u{fc}",
            "//x",
            "/a?b=c d",
            "x",
            "/<>",
            "/|\\^`",
        ]);
        let version = prop::sample::select(vec![
            " HTTP/1.1",
            " HTTP/1.0",
            " HTTP/2.0",
            " HTTP/1.2",
            " http/1.1",
            "",
            " HTTP/1.1 ",
        ]);
        let line = prop::sample::select(vec![
            "host: x",
            "Host:x",
            "x-a: b c",
            "x-a:\tb",
            "x a: b",
            ": b",
            "x-a: \x01",
            "x-a: \u{e9}",
            "x-a b",
            " folded: x",
            "content-length: 3",
            "content-length: 0",
            "content-length: +3",
            "content-length: 3, 3",
            "content-length: 18446744073709551615",
            "transfer-encoding: chunked",
            "transfer-encoding: gzip",
            "transfer-encoding: gzip, chunked",
            "upgrade: websocket",
            "connection: close",
            "expect: 100-continue",
            "x-\u{e9}: a",
        ]);
        let eol = prop::sample::select(vec!["\r\n", "\n"]);
        (
            method,
            target,
            version,
            prop::collection::vec((line, eol.clone()), 0..5),
            eol,
        )
            .prop_map(|(method, target, version, lines, end)| {
                let mut head = format!("{method} {target}{version}\r\n");
                for (line, eol) in lines {
                    head.push_str(line);
                    head.push_str(eol);
                }
                head.push_str(end);
                // A body, so that a sized or chunked one ends here.
                head.push_str("abc0\r\n\r\n");
                head.into_bytes()
            })
    }

    proptest! {
        // Failures are kept with the others, in tests/proptest-regressions/.
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct(
                    "tests/proptest-regressions/gate_against_hyper.txt",
                ),
            )),
            ..ProptestConfig::default()
        })]
        #[test]
        fn the_gate_refuses_exactly_the_heads_hyper_refuses(stream in head()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let hyper = runtime.block_on(hyper_answers(&stream, 8192));
            prop_assert_eq!(
                gate_answers(&stream, 8192),
                hyper,
                "{:?}",
                String::from_utf8_lossy(&stream)
            );
        }
    }
}

#[tokio::test]
async fn the_gate_refuses_what_hyper_refuses_in_the_hand_picked_cases() {
    let many_lines: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70_000));
    let mut cases: Vec<Vec<u8>> = REFUSED.iter().map(|(h, _)| h.to_vec()).collect();
    cases.push(format!("GET / HTTP/1.1\r\n{many_lines}\r\n").into_bytes());
    cases.push(format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(9000)).into_bytes());
    cases.push(long_target.clone().into_bytes());
    cases.push(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n".to_vec());
    for case in &cases {
        let shown = String::from_utf8_lossy(&case[..case.len().min(80)]).into_owned();
        assert_eq!(
            gate_answers(case, 8192),
            hyper_answers(case, 8192).await,
            "{shown:?}"
        );
    }
    // A limit above hyper's longest target: hyper answers 414, and so does the gate.
    let big = 200_000;
    assert_eq!(hyper_answers(long_target.as_bytes(), big).await, Some(414));
    assert_eq!(gate_answers(long_target.as_bytes(), big), Some(414));
}
