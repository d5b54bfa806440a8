//! The listening sources under good and bad input: the request shapes the
//! `http` source takes, and garbage on every port (random bytes, truncated
//! frames, a 100 MB line, slow clients, invalid protobuf, wrong content
//! types) answered, counted, and survived while others are still served.

mod attacks;
mod tls;

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A raw HTTP/1.1 POST; returns the status code and body.
fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn the_http_source_takes_json_lines_arrays_bulk_and_loki_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out.jsonl");
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[sources.http]
type = "http"
address = "127.0.0.1:{port}"
path = "/events"
token = "t0ken"

[sinks.out]
type = "file"
path = "{}"
inputs = ["http"]
"#,
            out.display()
        ),
    );
    let weir = start(&p, &[]);
    eventually(30, "the http listener", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let auth = ("Authorization", "Bearer t0ken");

    let (status, body) = post(
        port,
        "/events",
        &[auth],
        b"{\"via\":\"ndjson\",\"n\":1}\n{\"via\":\"ndjson\",\"n\":2}\nnot json\n",
    );
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer, serde_json::json!({"events": 3, "errors": 1}));
    let (status, _) = post(
        port,
        "/events",
        &[
            auth,
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        &gzip(b"[{\"via\":\"array\",\"n\":1},{\"via\":\"array\",\"n\":2}]"),
    );
    assert_eq!(status, 200);

    let bulk = b"{\"index\":{\"_index\":\"app\",\"_id\":\"1\"}}\n{\"via\":\"bulk\",\"n\":1}\n{\"create\":{}}\n{\"via\":\"bulk\",\"n\":2}\n{\"delete\":{\"_id\":\"9\"}}\n";
    let (status, body) = post(
        port,
        "/logs/_bulk",
        &[auth, ("Content-Type", "application/x-ndjson")],
        bulk,
    );
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["errors"], true, "{answer}");
    let items = answer["items"].as_array().unwrap();
    assert_eq!(items[0]["index"]["status"], 201, "{answer}");
    assert_eq!(items[1]["create"]["_index"], "logs", "{answer}");
    assert_eq!(items[2]["delete"]["status"], 400, "{answer}");

    let push = serde_json::json!({"streams": [{
        "stream": {"job": "promtail", "host": "web-1"},
        "values": [["1700000000000000000", "GET / 200"], ["1700000000500000000", "GET /x 404"]]
    }]});
    let (status, body) = post(
        port,
        "/loki/api/v1/push",
        &[auth, ("Content-Type", "application/json")],
        push.to_string().as_bytes(),
    );
    assert_eq!(status, 204, "{body}");

    // Refusals, each in the protocol's terms.
    let (status, _) = post(port, "/events", &[], b"{}");
    assert_eq!(status, 401);
    let (status, _) = post(port, "/events", &[("Authorization", "Bearer wrong")], b"{}");
    assert_eq!(status, 401);
    let (status, body) = post(
        port,
        "/events",
        &[auth, ("Content-Type", "application/x-protobuf")],
        b"{}",
    );
    assert_eq!(status, 415, "{body}");
    let (status, body) = post(
        port,
        "/loki/api/v1/push",
        &[auth, ("Content-Type", "application/json")],
        b"{\"streams\":[{\"values\":[[1,2]]}]}",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("streams[0]"), "{body}");

    eventually(30, "the events in the sink", || events_in(&out).len() >= 9);
    stop(weir);
    let events = events_in(&out);
    let via = |v: &str| events.iter().filter(|e| e["via"] == v).count();
    assert_eq!(
        (via("ndjson"), via("array"), via("bulk")),
        (2, 2, 2),
        "{events:?}"
    );
    let bad = events.iter().find(|e| e["message"] == "not json").unwrap();
    assert!(bad["_error"].is_string(), "{bad}");
    let indexed = events
        .iter()
        .find(|e| e["via"] == "bulk" && e["n"] == 1)
        .unwrap();
    assert_eq!(indexed["_index"], "app", "{indexed}");
    let line = events
        .iter()
        .find(|e| e["message"] == "GET /x 404")
        .unwrap();
    assert_eq!(
        (&line["job"], &line["host"]),
        (&"promtail".into(), &"web-1".into()),
        "{line}"
    );
}

/// The admin API's count of `reason` failures for `component`.
fn failures(api: u16, component: &str, reason: &str) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", api)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let series =
        format!("weir_component_failures_total{{component=\"{component}\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Whether the server closed the connection (a read returns 0 or fails)
/// within `secs`.
fn closed_within(s: &mut TcpStream, secs: u64) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut buf = [0; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn garbage_on_every_port_is_answered_counted_and_survived() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let [api, syslog, syslog_udp, forward, http, write] = [(); 6].map(|()| free_port());
    let out = dir.path().join("out.jsonl");
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[api]
address = "127.0.0.1:{api}"

[sources.syslog]
type = "syslog"
address = "127.0.0.1:{syslog}"
read_timeout = "1s"

[sources.syslog_udp]
type = "syslog"
mode = "udp"
address = "127.0.0.1:{syslog_udp}"

[sources.forward]
type = "fluent_forward"
address = "127.0.0.1:{forward}"
read_timeout = "1s"
max_message_bytes = 1048576

[sources.http]
type = "http"
address = "127.0.0.1:{http}"
read_timeout = "1s"
max_body_bytes = 1048576

[sources.write]
type = "prometheus_remote_write"
address = "127.0.0.1:{write}"
read_timeout = "1s"

[sinks.out]
type = "file"
path = "{}"
inputs = ["syslog", "syslog_udp", "forward", "http", "write"]
"#,
            out.display()
        ),
    );
    let weir = start(&p, &[]);
    for port in [api, syslog, forward, http, write] {
        eventually(30, "the listeners", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut noise = vec![0u8; 256 << 10];
    rng.fill(&mut noise[..]);

    // Random bytes on every TCP port and as datagrams.
    for port in [syslog, forward, http, write] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(&noise);
        assert!(
            closed_within(&mut s, 10) || port == syslog,
            "port {port} kept a garbage connection"
        );
    }
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for chunk in noise.chunks(1400).take(20) {
        udp.send_to(chunk, ("127.0.0.1", syslog_udp)).unwrap();
    }

    // A forward message cut short, then the connection closed.
    let message = fluent_message("app", &[("k", "v")]);
    let mut s = TcpStream::connect(("127.0.0.1", forward)).unwrap();
    s.write_all(&message[..message.len() / 2]).unwrap();
    drop(s);
    // A forward message declaring more than max_message_bytes.
    let mut s = TcpStream::connect(("127.0.0.1", forward)).unwrap();
    s.write_all(&[0x93, 0xa3, b'a', b'p', b'p', 0xdd, 0xff, 0xff, 0xff, 0xff])
        .unwrap();
    assert!(
        closed_within(&mut s, 10),
        "a declared-huge message is refused"
    );

    // A 100 MB line to syslog: skipped without being held, then the next
    // message on the same connection is read.
    let rss_before = rss_kb(weir.id());
    let mut s = TcpStream::connect(("127.0.0.1", syslog)).unwrap();
    let mb = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        s.write_all(&mb).unwrap();
    }
    s.write_all(b"\n<13>Oct 11 22:14:15 host app: after the huge line\n")
        .unwrap();
    drop(s);
    eventually(30, "the message after the huge line", || {
        events_in(&out)
            .iter()
            .any(|e| e["message"] == "after the huge line")
    });
    let grown_mb = rss_kb(weir.id()).saturating_sub(rss_before) / 1024;
    assert!(grown_mb < 50, "weir grew by {grown_mb} MB on a 100 MB line");

    // Slow clients: half a syslog frame, half a forward message, half the
    // headers of an HTTP request; each is cut off after read_timeout.
    let mut slow: Vec<TcpStream> = Vec::new();
    for (port, bytes) in [
        (syslog, &b"<13>Oct 11 22:14:15 host app: no end"[..]),
        (forward, &message[..3]),
        (http, &b"POST / HTTP/1.1\r\nHost: x\r\n"[..]),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(bytes).unwrap();
        slow.push(s);
    }
    // Meanwhile others are served.
    let mut good = TcpStream::connect(("127.0.0.1", forward)).unwrap();
    good.write_all(&message).unwrap();
    let started = Instant::now();
    for s in &mut slow {
        assert!(closed_within(s, 10), "a slow client was not cut off");
    }
    assert!(started.elapsed() < Duration::from_secs(10));

    // HTTP: wrong content types, invalid protobuf, a gzip bomb, bad gzip.
    let (status, body) = post(
        write,
        "/api/v1/write",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "snappy"),
        ],
        b"{}",
    );
    assert_eq!(status, 415, "{body}");
    let (status, body) = post(
        write,
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
        ],
        &noise[..4096],
    );
    assert_eq!(status, 400, "{body}");
    let not_protobuf = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
    let (status, body) = post(
        write,
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
        ],
        &not_protobuf,
    );
    assert_eq!(status, 400, "{body}");
    let bomb = gzip(&vec![b' '; 64 << 20]);
    let (status, body) = post(http, "/", &[("Content-Encoding", "gzip")], &bomb);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("max_body_bytes"), "{body}");
    let (status, _) = post(http, "/", &[("Content-Encoding", "gzip")], &noise[..1000]);
    assert_eq!(status, 400);
    let (status, _) = post(http, "/", &[("Content-Type", "multipart/form-data")], b"{}");
    assert_eq!(status, 415);
    // Over the limit on the wire: answered 413, though the server may
    // close before the client has read the answer (then it is reset).
    let (status, _) = post(http, "/", &[], &vec![b'{'; (1 << 20) + 4096]);
    assert!(status == 413 || status == 0, "{status}");

    // Everyone else is still served, on every port.
    let (status, _) = post(http, "/", &[], b"{\"still\":\"http\"}");
    assert_eq!(status, 200);
    let mut s = TcpStream::connect(("127.0.0.1", syslog)).unwrap();
    s.write_all(b"<13>1 2024-01-01T00:00:00Z host app - - - still syslog\n")
        .unwrap();
    drop(s);
    eventually(30, "good events after the garbage", || {
        let events = events_in(&out);
        events.iter().any(|e| e["still"] == "http")
            && events.iter().any(|e| e["message"] == "still syslog")
            && events.iter().any(|e| e["tag"] == "app" && e["k"] == "v")
    });

    // And all of it was counted by reason.
    for (component, reason) in [
        ("syslog", "frame_too_large"),
        ("syslog", "slow_client"),
        ("forward", "protocol_error"),
        ("forward", "truncated"),
        ("forward", "slow_client"),
        ("http", "slow_client"),
        ("http", "bad_gzip"),
        ("http", "content_type"),
        ("http", "too_large"),
        ("write", "bad_write"),
        ("write", "content_type"),
    ] {
        let n = failures(api, component, reason);
        assert!(n >= 1, "{component}/{reason} not counted");
    }
    drop(good);
    stop(weir);
}

#[test]
fn validate_names_the_bad_setting_of_a_listener_or_an_http_sink() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        r#"[sources.agents]
type = "fluent_forward"
address = "nowhere"

[sources.syslog]
type = "syslog"
address = "127.0.0.1:5514"
read_timeout = "soon"

[sources.node]
type = "prometheus_scrape"
targets = []

[sinks.es]
type = "elasticsearch"
inputs = ["agents", "syslog", "node"]
endpoint = "http://es:9200"
index = "logs-%Q"

[sinks.loki]
type = "loki"
inputs = ["agents"]
endpoint = "http://loki:3100"
labels = { "bad-label" = "x" }

[sinks.hook]
type = "http"
inputs = ["agents"]
uri = "not a url"
"#,
    );
    let out = run(weir().args(["validate", "-c"]).arg(&p), b"", 30);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    for want in [
        "pipeline.toml:3: [sources.agents] address: `nowhere` is not a host:port address",
        "pipeline.toml:8: [sources.syslog] read_timeout:",
        "pipeline.toml:12: [sources.node] targets: no targets to scrape",
        "pipeline.toml:18: [sinks.es] index: \"logs-%Q\" has a `%` that is not a date item",
        "[sinks.loki] labels: `bad-label` is not a Loki label name",
        "[sinks.hook] uri: \"not a url\"",
    ] {
        assert!(err.contains(want), "{want}\nin\n{err}");
    }
}

/// The `http` source answers once every sink accepted the events: while
/// the HTTP sink behind it retries a failing endpoint, the client waits,
/// so a crash before the answer leaves the events with the client.
#[test]
fn the_http_source_answers_once_the_sinks_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Recorder::start(vec![Reply::Status(503), Reply::Status(503)]);
    let (acked, queued) = (free_port(), free_port());
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[sources.acked]
type = "http"
address = "127.0.0.1:{acked}"

[sources.queued]
type = "http"
address = "127.0.0.1:{queued}"
acknowledgements = false

[sinks.remote]
type = "http"
inputs = ["acked", "queued"]
uri = "{}"
"#,
            receiver.url
        ),
    );
    let weir = start(&p, &[]);
    listening(&[acked, queued]);
    let (status, body) = post(acked, "/", &[], b"{\"n\":1}\n");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        receiver.count(),
        3,
        "answered only after two 503s and the accepted third try"
    );
    let (status, _) = post(queued, "/", &[], b"{\"n\":2}\n");
    assert_eq!(status, 200);
    eventually(30, "the queued request delivered", || receiver.count() == 4);
    stop(weir);
}
