//! Each attack of an adversarial or buggy client, against the real binary on
//! loopback: weir stays up, its peak RSS stays within its idle RSS and the
//! budgets configured, a well-behaved client is served while the attack
//! runs, and no secret of the pipeline is printed anywhere.
//!
//! The attacker connects from 127.0.0.2, the good client from 127.0.0.1, as
//! two hosts would. Every loop is bounded in count and time.

use super::{closed_within, failures, post};
use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

/// A connection from `from` (another loopback address) to `port`.
fn connect_from(from: &str, port: u16) -> TcpStream {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    });
    let s = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(format!("{from}:0").parse().unwrap())?;
            socket
                .connect(format!("127.0.0.1:{port}").parse().unwrap())
                .await
        })
        .unwrap()
        .into_std()
        .unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

/// The peak resident size of a process so far, in MiB.
fn peak_rss_mb(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024
}

fn alive(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_none()
}

/// A Fluent forward message in Forward mode: `entries` `[time, {}]` entries
/// under `tag`, with an ack asked for as `chunk`.
fn forward_message(tag: &str, entries: usize, chunk: &str) -> Vec<u8> {
    let mut m = vec![0x93];
    m.extend(rmp_serde::to_vec(tag).unwrap());
    m.push(0xdd);
    m.extend((entries as u32).to_be_bytes());
    for i in 0..entries {
        m.extend([0x92, 0xce]);
        m.extend((1_700_000_000u32 + (i % 1000) as u32).to_be_bytes());
        m.extend([0x81, 0xa1, b'i', 0xcd]);
        m.extend(((i % 65536) as u16).to_be_bytes());
    }
    m.extend([0x81, 0xa5]);
    m.extend(b"chunk");
    m.extend(rmp_serde::to_vec(chunk).unwrap());
    m
}

/// Whether the forward source acks `chunk` on `s` within `secs`.
fn acked(s: &mut TcpStream, chunk: &str, secs: u64) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 256];
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.windows(chunk.len()).any(|w| w == chunk.as_bytes()) {
            return true;
        }
    }
    false
}

/// A remote write body: one series of `samples` samples under a label of
/// `label_bytes`.
fn remote_write_body(label_bytes: usize, samples: usize) -> Vec<u8> {
    use weir::codec::remote_write::{encode, Label, Sample, TimeSeries};
    let series = TimeSeries {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: "up".into(),
            },
            Label {
                name: "big".into(),
                value: "x".repeat(label_bytes),
            },
        ],
        samples: (0..samples as i64)
            .map(|t| Sample {
                value: 1.0,
                timestamp: t,
            })
            .collect(),
    };
    encode(vec![series]).unwrap()
}

fn loki_push(label_bytes: usize, lines: usize) -> Vec<u8> {
    let values: Vec<String> = (0..lines).map(|i| format!(r#"["{i}","l"]"#)).collect();
    format!(
        r#"{{"streams":[{{"stream":{{"big":"{}"}},"values":[{}]}}]}}"#,
        "v".repeat(label_bytes),
        values.join(",")
    )
    .into_bytes()
}

const DECODED_MB: u64 = 16;
const BUFFERED_MB: u64 = 64;

/// Small requests that decode to gigabytes (a label, a tag, shared by
/// every entry) are refused once their events pass `max_decoded_bytes`:
/// no abort, memory within the budgets, and good requests still served.
#[test]
fn small_requests_that_decode_to_gigabytes_are_refused_as_they_decode() {
    let dir = tempfile::tempdir().unwrap();
    let [api, http, forward, write] = [(); 4].map(|()| free_port());
    let limits = format!(
        "max_decoded_bytes = {}\nmax_buffered_bytes = {}",
        DECODED_MB << 20,
        BUFFERED_MB << 20
    );
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[api]
address = "127.0.0.1:{api}"

[sources.http]
type = "http"
address = "127.0.0.1:{http}"
{limits}

[sources.forward]
type = "fluent_forward"
address = "127.0.0.1:{forward}"
{limits}

[sources.write]
type = "prometheus_remote_write"
address = "127.0.0.1:{write}"
{limits}

[sinks.out]
type = "blackhole"
inputs = ["http", "forward", "write"]
"#
        ),
    );
    let mut weir = start(&p, &[]);
    listening(&[api, http, forward, write]);
    std::thread::sleep(Duration::from_millis(300));
    let idle = peak_rss_mb(&weir);

    // Loki: a 2 KiB label over 200,000 lines (1.7 MB) would be ~450 MB of
    // events; a 64 KiB label over 100,000 lines, 6.5 GB.
    for (label, lines) in [(2048, 200_000), (64 << 10, 100_000)] {
        let body = loki_push(label, lines);
        let (status, answer) = post(
            http,
            "/loki/api/v1/push",
            &[("Content-Type", "application/json")],
            &body,
        );
        assert_eq!(status, 413, "{answer}");
        assert!(answer.contains("max_decoded_bytes"), "{answer}");
    }
    let (status, _) = post(
        http,
        "/loki/api/v1/push",
        &[("Content-Type", "application/json")],
        &loki_push(16, 10),
    );
    assert_eq!(status, 204, "a small push is still taken");

    // Remote write: a 1 KiB label over 200,000 samples (~400 KB).
    let body = remote_write_body(1024, 200_000);
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
    ];
    let (status, answer) = post(write, "/api/v1/write", &headers, &body);
    assert_eq!(status, 413, "{answer}");
    let (status, _) = post(write, "/api/v1/write", &headers, &remote_write_body(8, 10));
    assert_eq!(status, 204);

    // Forward: a 4 KiB tag over 200,000 entries (~2 MB) would be ~1 GB; a
    // 64 KiB tag over 100,000 entries, 6.5 GB. The connection is closed
    // without an ack; a good message on another is acked.
    for (tag, entries) in [(4096, 200_000), (64 << 10, 100_000)] {
        let mut s = connect_from("127.0.0.2", forward);
        let _ = s.write_all(&forward_message(&"t".repeat(tag), entries, "bomb"));
        assert!(closed_within(&mut s, 30), "a forward bomb was not refused");
    }
    let mut good = TcpStream::connect(("127.0.0.1", forward)).unwrap();
    good.write_all(&forward_message("app", 100, "good-chunk"))
        .unwrap();
    assert!(
        acked(&mut good, "good-chunk", 10),
        "a good message is acked"
    );

    assert!(alive(&mut weir), "weir died");
    let peak = peak_rss_mb(&weir);
    let bound = 2 * idle + BUFFERED_MB + DECODED_MB + 64;
    assert!(
        peak < bound,
        "peak RSS {peak} MB, over 2 x idle ({idle}) + budgets = {bound} MB"
    );
    for (component, reason) in [("http", "too_large"), ("write", "too_large")] {
        assert!(
            failures(api, component, reason) >= 1,
            "{component}/{reason}"
        );
    }
    assert!(failures(api, "forward", "protocol_error") >= 2);
    eprintln!("amplification: idle {idle} MB, peak {peak} MB, bound {bound} MB");
    stop(weir);
}

/// Idle sockets and one-byte-at-a-time clients from one address cannot
/// take the slots of a syslog or forward listener: one address gets
/// `max_connections_per_peer`, a message must be whole within
/// `read_timeout`, an idle connection is closed after `idle_timeout`, and a
/// good client from elsewhere is served throughout.
#[test]
fn idle_and_trickling_clients_cannot_hold_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let [api, syslog, forward, http] = [(); 4].map(|()| free_port());
    let out = dir.path().join("out.jsonl");
    let limits = "read_timeout = \"1s\"\nidle_timeout = \"2s\"\nmax_connections = 256\nmax_connections_per_peer = 32";
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[api]
address = "127.0.0.1:{api}"

[sources.syslog]
type = "syslog"
address = "127.0.0.1:{syslog}"
{limits}

[sources.forward]
type = "fluent_forward"
address = "127.0.0.1:{forward}"
{limits}

[sources.http]
type = "http"
address = "127.0.0.1:{http}"
read_timeout = "1s"
max_connections = 256
max_connections_per_peer = 32

[sinks.out]
type = "file"
path = "{}"
inputs = ["syslog", "forward", "http"]
"#,
            out.display()
        ),
    );
    let mut weir = start(&p, &[]);
    listening(&[api, syslog, forward, http]);
    for port in [syslog, forward, http] {
        // 300 sockets from one address: ones that send a byte of a message
        // that never ends every 200 ms, and idle ones.
        // Syslog: a line with no end; forward: a 64 KiB string's first bytes.
        let byte = |n: usize| match port {
            p if p == forward => [0x93, 0xda, 0xff, 0xff].get(n).copied().unwrap_or(b'a'),
            _ => b"<13>x"[n % 5],
        };
        // The trickling ones start their message at once, so that it is
        // under way however long the idle ones take to open.
        let mut trickle: Vec<TcpStream> = (0..20)
            .map(|_| {
                let mut s = connect_from("127.0.0.2", port);
                s.write_all(&[byte(0)]).unwrap();
                s
            })
            .collect();
        let mut idle: Vec<TcpStream> = (0..280).map(|_| connect_from("127.0.0.2", port)).collect();
        let started = Instant::now();
        let mut n = 1;
        while started.elapsed() < Duration::from_secs(3) {
            for s in &mut trickle {
                let _ = s.write_all(&[byte(n)]);
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        // Meanwhile a good client from another address is served.
        let line = format!("good client on {port}");
        if port == http {
            let (status, _) = post(
                http,
                "/",
                &[],
                format!("{{\"message\":\"{line}\"}}").as_bytes(),
            );
            assert_eq!(status, 200, "a good HTTP client is served");
        } else if port == syslog {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(format!("<13>Oct 11 22:14:15 host app: {line}\n").as_bytes())
                .unwrap();
        } else {
            let msg = fluent_message("app", &[("message", line.as_str())]);
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(&msg).unwrap();
        }
        let sent = Instant::now();
        eventually(10, "the good client's event", || {
            events_in(&out)
                .iter()
                .any(|e| e["message"] == line.as_str())
        });
        eprintln!(
            "slots: port {port}: 300 attacker sockets, good client served in {:?}",
            sent.elapsed()
        );
        // Every attacker connection is closed: past the per-peer limit at
        // once, the trickling ones after read_timeout, idle ones after
        // idle_timeout (HTTP: read_timeout for the next request's headers).
        for s in trickle.iter_mut().chain(idle.iter_mut()) {
            assert!(
                closed_within(s, 5),
                "an attacker's connection to {port} was kept"
            );
        }
    }
    assert!(alive(&mut weir));
    for component in ["syslog", "forward", "http"] {
        assert!(
            failures(api, component, "peer_connection_limit") >= 200,
            "{component}"
        );
    }
    for component in ["syslog", "forward"] {
        assert!(failures(api, component, "slow_client") >= 20, "{component}");
    }
    stop(weir);
}

/// A 10 MB body of small lines is taken in time linear in its size, and a
/// small request is not held up behind it; 40 half-sent forward messages
/// together cannot pass `max_buffered_bytes`.
#[test]
fn one_large_body_or_many_half_messages_stall_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let [api, http, forward] = [(); 3].map(|()| free_port());
    let out = dir.path().join("out.jsonl");
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[api]
address = "127.0.0.1:{api}"

[sources.http]
type = "http"
address = "127.0.0.1:{http}"
max_body_bytes = 16777216

[sources.forward]
type = "fluent_forward"
address = "127.0.0.1:{forward}"
read_timeout = "2s"
max_buffered_bytes = {}

[sinks.big]
type = "blackhole"
inputs = ["http"]

[sinks.out]
type = "file"
path = "{}"
inputs = ["forward"]
"#,
            BUFFERED_MB << 20,
            out.display()
        ),
    );
    let mut weir = start(&p, &[]);
    listening(&[api, http, forward]);
    let idle = peak_rss_mb(&weir);
    let body: String = (0..300_000)
        .map(|i| format!("{{\"i\":{i},\"msg\":\"hello world\"}}\n"))
        .collect();
    assert!(body.len() > 9 << 20);
    let big = std::thread::spawn(move || {
        let started = Instant::now();
        let answer = post(http, "/", &[], body.as_bytes());
        eprintln!(
            "large body: 10 MB of lines taken in {:?}",
            started.elapsed()
        );
        answer
    });
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let (status, _) = post(http, "/", &[], b"{\"small\":1}");
    let small_took = started.elapsed();
    assert_eq!(status, 200);
    // A body cut short is a bad request, not one too large.
    let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\":1}")
        .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("cut short"), "{answer}");
    let (status, answer) = big.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"events\":300000"), "{answer}");
    assert!(
        small_took < Duration::from_secs(5),
        "a small POST waited {small_took:?} behind a large one"
    );
    eprintln!("large body: a small POST beside it answered in {small_took:?}");

    // 40 connections each sit on 2 MB of a 4 MB message: 80 MB against a
    // 64 MB budget. Those past it are closed at once.
    let half = forward_message("app", 300_000, "half");
    let part = &half[..2 << 20];
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..40 {
        let mut s = connect_from("127.0.0.2", forward);
        let _ = s.write_all(part);
        held.push(s);
    }
    eventually(10, "the budget to refuse", || {
        failures(api, "forward", "buffer_full") >= 1
    });
    assert!(alive(&mut weir));
    let peak = peak_rss_mb(&weir);
    assert!(
        peak < 2 * idle + BUFFERED_MB + 64,
        "peak RSS {peak} MB (idle {idle} MB)"
    );
    eprintln!("half messages: 40 x 2 MB held, peak RSS {peak} MB (idle {idle} MB)");
    // After read_timeout the half messages are let go, and a good client
    // is acked.
    for s in &mut held {
        assert!(closed_within(s, 10));
    }
    let mut good = TcpStream::connect(("127.0.0.1", forward)).unwrap();
    good.write_all(&forward_message("app", 10, "after"))
        .unwrap();
    assert!(acked(&mut good, "after", 10));
    stop(weir);
}

/// A secret planted in every place a pipeline holds one (`${VAR}`, URL
/// user info and query, a webhook's path, tokens, passwords, headers)
/// appears in no log line, in neither `weir graph` format, in `GET
/// /pipeline` or `/components`, nor in `weir validate`'s problems.
#[test]
fn secrets_appear_in_no_output() {
    const SECRET: &str = "s3cr3t-5a1t";
    let dir = tempfile::tempdir().unwrap();
    let [api, dead, scrape] = [(); 3].map(|()| free_port());
    let alert = firing_alert("slack");
    let text = format!(
        r#"
[api]
address = "127.0.0.1:{api}"
token = "${{WEIR_TEST_API_TOKEN}}"

{alert}
[sources.node]
type = "prometheus_scrape"
targets = ["http://scraper:{SECRET}@127.0.0.1:{scrape}/metrics?api_key={SECRET}"]
interval = "1s"
timeout = "500ms"

[receivers.slack]
type = "slack"
url = "${{WEIR_TEST_SLACK_URL}}"
retry_for = "30s"

[sinks.api]
type = "http"
inputs = ["gen"]
uri = "http://weir:{SECRET}@127.0.0.1:{dead}/ingest?token={SECRET}"
headers = {{ X-Api-Key = "{SECRET}" }}

[sinks.es]
type = "elasticsearch"
inputs = ["gen"]
endpoint = "http://127.0.0.1:{dead}"
index = "logs"
user = "elastic"
password = "{SECRET}"
"#
    );
    let p = dir.path().join("pipeline.toml");
    std::fs::write(&p, &text).unwrap();
    let env = [
        ("WEIR_TEST_API_TOKEN", format!("tok-{SECRET}")),
        (
            "WEIR_TEST_SLACK_URL",
            format!("http://127.0.0.1:{dead}/services/T000/B000/{SECRET}"),
        ),
    ];
    let with_env = |mut c: std::process::Command| {
        for (k, v) in &env {
            c.env(k, v);
        }
        c
    };

    let mut outputs: Vec<(String, String)> = Vec::new();
    for format in ["dot", "mermaid"] {
        let mut c = with_env(weir());
        c.args(["graph", "--format", format, "-c"]).arg(&p);
        let out = run(&mut c, b"", 120);
        assert!(out.status.success(), "{}", stderr(&out));
        outputs.push((
            format!("graph {format}"),
            String::from_utf8_lossy(&out.stdout).into(),
        ));
        outputs.push((format!("graph {format} stderr"), stderr(&out)));
    }
    // A pipeline that does not validate, with the secret in a bad value.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        text.replace("rate = 100", &format!("rate = \"{SECRET}\"")),
    )
    .unwrap();
    let mut c = with_env(weir());
    c.args(["validate", "-c"]).arg(&bad);
    let out = run(&mut c, b"", 120);
    assert!(!out.status.success());
    outputs.push((
        "validate".into(),
        stderr(&out) + &String::from_utf8_lossy(&out.stdout),
    ));

    let mut c = with_env(weir());
    c.args(["run", "-c"])
        .arg(&p)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    listening(&[api]);
    let get = |path: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", api)).unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-{SECRET}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
        text
    };
    // Let the sinks fail, the scrape fail and the alert's delivery retry.
    std::thread::sleep(Duration::from_secs(6));
    for path in ["/pipeline", "/components", "/metrics", "/health"] {
        outputs.push((path.into(), get(path)));
    }
    signal(&child, libc::SIGTERM);
    let out = wait_output(child, 60);
    let logs = stderr(&out);
    // The failures were logged, each naming its endpoint.
    for said in ["127.0.0.1", "retrying", "scrape failed"] {
        assert!(logs.contains(said), "no `{said}` in the logs:\n{logs}");
    }
    outputs.push(("logs".into(), logs));
    for (what, text) in &outputs {
        assert!(!text.contains(SECRET), "{what} shows the secret:\n{text}");
    }
    eprintln!(
        "secrets: 0 of {} outputs show the planted secret",
        outputs.len()
    );
    assert!(outputs[4].1.contains("1 problem"), "{}", outputs[4].1);
}

/// A live query whose client went away is detached, rows or not, and no
/// more than the cap run at once.
#[test]
fn abandoned_live_queries_detach_and_live_queries_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[api]
address = "127.0.0.1:{api}"

[sources.gen]
type = "generator"
rate = 100

[sinks.out]
type = "blackhole"
inputs = ["gen"]
"#
        ),
    );
    let weir = start(&p, &[]);
    listening(&[api]);
    let sql = "SELECT tumble(interval '1 hour') AS w, service, count(*) AS n FROM gen GROUP BY w, service";
    let open = || {
        let mut s = TcpStream::connect(("127.0.0.1", api)).unwrap();
        let req = format!(
            "POST /sql HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{sql}",
            sql.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut head = [0; 12];
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.read_exact(&mut head).unwrap();
        (String::from_utf8_lossy(&head).into_owned(), s)
    };
    // Twenty rounds of eight queries opened and abandoned: each round gets
    // its eight slots back, so the queries before were detached, though
    // their windows (an hour) never closed and sent no row.
    for round in 0..20 {
        let deadline = Instant::now() + Duration::from_secs(10);
        let queries = loop {
            let queries: Vec<_> = (0..8).map(|_| open()).collect();
            if queries.iter().all(|(head, _)| head == "HTTP/1.1 200") {
                break queries;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: abandoned live queries kept their slots"
            );
            drop(queries);
            std::thread::sleep(Duration::from_millis(50));
        };
        let (head, _) = open();
        assert_eq!(head, "HTTP/1.1 429", "a ninth live query");
        drop(queries);
    }
    std::thread::sleep(Duration::from_secs(2));
    signal(&weir, libc::SIGTERM);
    let out = wait_output(weir, 60);
    let logs = stderr(&out);
    let attached = logs.matches("live query attached").count();
    let detached = logs.matches("live query detached").count();
    assert!(attached >= 160, "{attached} attached");
    assert_eq!(attached, detached, "every live query detached:\n{logs}");
    eprintln!("live queries: {attached} attached and abandoned, {detached} detached");
}
