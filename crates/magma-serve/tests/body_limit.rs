//! Connections: the client that keeps sending after the server refused its body still gets the 413
//! and its JSON reason, not a broken pipe or a reset connection; a client stalled in its header is
//! disconnected after the header time limit, while slow-but-complete headers and idle keep-alive
//! connections are not.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const LIMIT: usize = 1 << 20;

/// Sends `head` and then `body` in full (as curl and most clients do before they read), then
/// reads the whole answer. Panics when sending fails: that is the broken pipe a client reports.
fn send_all_then_read(server: &TestServer, head: &str, body: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(head.as_bytes()).expect("sending the head");
    for chunk in body.chunks(64 << 10) {
        stream
            .write_all(chunk)
            .expect("sending the body: the server closed the connection under the client");
    }
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("reading the answer: the connection was reset");
    parse_response(&raw)
}

fn assert_413(response: &HttpResponse) {
    response.assert_error(413, &format!("over the limit of {LIMIT} bytes"));
    assert_eq!(response.json()["error"]["code"], "payload_too_large");
}

#[test]
fn oversized_bodies_get_a_413_with_json_before_the_connection_closes() {
    let server = TestServer::with_config(|c| c.limits.max_body_bytes = LIMIT);
    let body = vec![b' '; 48 << 20];

    // declared too large: refused from the header, while the client still sends 48 MiB
    for path in ["/v1/chat/completions", "/act", "/v1/som"] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        assert_413(&send_all_then_read(&server, &head, &body));
    }

    // chunked, no length: refused once the limit is passed while reading
    let mut chunked = Vec::new();
    for chunk in body[..8 << 20].chunks(32 << 10) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_413(&send_all_then_read(&server, head, &chunked));

    // a body at the limit is read and judged on its content
    let mut at_limit =
        br#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}"#.to_vec();
    at_limit.resize(LIMIT, b' ');
    let response = server.post("/v1/chat/completions", &at_limit, &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(server.get("/health").status, 200);
}

/// Reads one response with a `Content-Length` body from a kept-alive connection.
fn read_one_response(stream: &mut TcpStream) -> HttpResponse {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("response header");
        raw.push(byte[0]);
    }
    let head = parse_response(&raw);
    let length: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("response body");
    HttpResponse { body, ..head }
}

#[test]
fn a_stalled_header_is_cut_off_but_slow_headers_and_idle_keep_alive_are_not() {
    let limit = Duration::from_millis(800);
    let server = TestServer::with_config(|c| c.limits.header_timeout = limit);

    // half a header, then nothing: the server closes the connection after the limit
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let start = std::time::Instant::now();
    stalled
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nAcc")
        .unwrap();
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    let cut_off = start.elapsed();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(
        cut_off >= limit - Duration::from_millis(50) && cut_off < Duration::from_secs(20),
        "cut off after {cut_off:?}"
    );
    // a connection that never sends a byte is cut off too
    let mut silent = TcpStream::connect(server.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(silent.read(&mut [0u8; 16]).unwrap_or(0), 0);

    // a header sent slowly but within the limit is answered
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for piece in [&b"GET /health HT"[..], b"TP/1.1\r\nHost: x\r\n", b"\r\n"] {
        slow.write_all(piece).unwrap();
        std::thread::sleep(limit / 4);
    }
    assert_eq!(read_one_response(&mut slow).status, 200);

    // an idle kept-alive connection is not limited: the next request may come much later
    std::thread::sleep(limit * 2);
    slow.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let models = read_one_response(&mut slow);
    assert_eq!(models.status, 200, "{}", models.text());
    assert_eq!(models.json()["object"], "list");
}
