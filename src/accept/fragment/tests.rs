use super::*;

/// Feeds `stream` in pieces of `step` bytes; returns the flags (head index, target) and the
/// tracker's state at the end.
fn track(stream: &[u8], step: usize) -> (Vec<(u64, String)>, Framing, u64) {
    let fragments = Fragments::default();
    let mut tracker = Tracker::new(8192);
    for piece in stream.chunks(step) {
        tracker.feed(piece, &fragments);
    }
    let flags = fragments
        .flagged
        .lock()
        .unwrap()
        .iter()
        .map(|(i, uri)| (*i, uri.to_string()))
        .collect();
    (flags, tracker.framing, tracker.heads)
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
        // Both framings (hyper closes after this request), or a coding that is not chunked.
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\nGET /x#y HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\nGET /x#y HTTP/1.1\r\n\r\n",
        // Heads hyper refuses.
        b"POST / HTTP/1.1\r\ncontent-length: +3\r\n\r\nabcGET /x#y HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcGET /x#y HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /x#y HTTP/1.1\r\n\r\n",
        // Chunked framing hyper refuses: a bare LF in an extension, a size that overflows.
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1;a\nb\r\nx\r\n0\r\n\r\nGET /x#y HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n11111111111111111\r\nGET /x#y HTTP/1.1\r\n\r\n",
    ] {
        let (got, framing, _) = track(stream, stream.len());
        assert_eq!(got, vec![], "{}", String::from_utf8_lossy(stream));
        assert_eq!(framing, Framing::Off, "{}", String::from_utf8_lossy(stream));
    }
}

#[test]
fn a_head_longer_than_hyper_allows_stops_tracking() {
    let fragments = Fragments::default();
    let mut tracker = Tracker::new(64);
    let head = format!("GET /x#y HTTP/1.1\r\nx-pad: {}\r\n\r\n", "a".repeat(100));
    for piece in head.as_bytes().chunks(16) {
        tracker.feed(piece, &fragments);
    }
    assert_eq!(tracker.framing, Framing::Off);
    assert!(tracker.partial.is_empty());
    assert!(fragments.flagged.lock().unwrap().is_empty());
}

#[test]
fn the_service_gets_the_flag_only_for_the_same_request_and_target() {
    let fragments = Fragments::default();
    assert!(!fragments.had_fragment(&uri("/first")));
    fragments.flag(1, uri("/two"));
    fragments.flag(3, uri("/four"));
    assert!(fragments.had_fragment(&uri("/two")));
    // Request 2 had no flag; request 3's target differs from the flagged one: no 400.
    assert!(!fragments.had_fragment(&uri("/three")));
    assert!(!fragments.had_fragment(&uri("/not-four")));
    // Used flags are gone.
    assert!(fragments.flagged.lock().unwrap().is_empty());
    assert!(!fragments.had_fragment(&uri("/four")));
}

#[test]
fn a_flag_for_a_head_the_service_never_got_is_dropped() {
    let fragments = Fragments::default();
    assert!(!fragments.had_fragment(&uri("/a")));
    // Head 0 was flagged only after the service had moved on (hyper refused it, say).
    fragments.flag(0, uri("/a"));
    fragments.flag(1, uri("/b"));
    assert!(fragments.had_fragment(&uri("/b")));
    assert!(fragments.flagged.lock().unwrap().is_empty());
}

#[test]
fn the_quick_path_agrees_with_the_full_parse_wherever_it_answers() {
    let heads: [&[u8]; 10] = [
        b"GET / HTTP/1.1\r\nhost: x\r\ncookie: a=b; c=d\r\n\r\n",
        b"GET /a?b=c HTTP/1.0\r\n\r\n",
        b"POST /f HTTP/1.1\r\nContent-LENGTH: 3\r\n\r\n",
        b"POST /f HTTP/1.1\r\nhost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nUPGRADE: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nupgrade-insecure-requests: 1\r\ncontent-lengthy: 9\r\n\r\n",
        b"GET / HTTP/1.1\nhost: x\n\n",
        b"\r\nGET / HTTP/1.1\r\n\r\n",
        b"CONNECT h:1 HTTP/1.1\r\n\r\n",
        b"GET /#x HTTP/1.1\r\n\r\n",
    ];
    let mut quick_answers = 0;
    for head in heads {
        for end in 1..=head.len() {
            let buf = &head[..end];
            let Some(quick) = quick_head(buf) else {
                continue;
            };
            quick_answers += 1;
            let shown = String::from_utf8_lossy(buf);
            match (quick, full_head(buf)) {
                (Parsed::Partial, Parsed::Partial) => {}
                (Parsed::Complete(q), Parsed::Complete(f)) => {
                    assert_eq!((q.len, q.next), (f.len, f.next), "{shown}");
                    assert_eq!(q.fragment, f.fragment, "{shown}");
                }
                _ => panic!("the quick path and the full parse disagree on {shown:?}"),
            }
        }
    }
    // Browsers' `Upgrade-Insecure-Requests` does not push heads off the quick path.
    assert!(matches!(quick_head(heads[5]), Some(Parsed::Complete(_))));
    assert!(quick_answers > 100);
}
