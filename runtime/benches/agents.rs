//! The listening sources, against receiving the same bytes over loopback
//! and decoding nothing (the ceiling), in one run.
//!
//! `cargo bench -p weir --bench agents` (also in `scripts/bench`). Two
//! workloads of `WEIR_BENCH_EVENTS` (default 1 M) events each, sent over
//! one TCP connection as fast as the receiver takes them:
//! - syslog: ~110-byte RFC 5424 lines, newline-framed;
//! - Fluent forward: PackedForward chunks of 1,000 entries, each a record
//!   of five fields, as Fluent Bit sends them.
//!
//! weir runs `syslog`/`fluent_forward` → blackhole, timed from the source's
//! first event out to the sink's last event in by its admin API; the
//! baseline is a thread that reads the same bytes off a socket.
//!
//! Then, that a large message costs what its parts cost (linear time):
//! ~9 MB Forward-mode messages against the same entries in 15 messages
//! each, and one 10 MB HTTP body of lines against ten 1 MB bodies. A
//! ratio near 1 is linear; a walk from the start per read, or a copy of the
//! rest per batch, made it 10 and 40.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Entries per PackedForward chunk.
const CHUNK: usize = 1000;

fn main() {
    let n: usize = std::env::var("WEIR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let syslog = syslog_lines(n);
    let forward = forward_chunks(n);
    println!(
        "weir agents bench: {n} events each; syslog {} bytes per line, forward {} bytes per entry",
        syslog.len() / n,
        forward.len() / n
    );

    let dir = tempfile::tempdir().unwrap();
    let (api, syslog_port, forward_port, http_port) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let pipeline = dir.path().join("bench.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[api]
address = "127.0.0.1:{api}"

[sources.syslog]
type = "syslog"
address = "127.0.0.1:{syslog_port}"

[sources.forward]
type = "fluent_forward"
address = "127.0.0.1:{forward_port}"

[sources.http]
type = "http"
address = "127.0.0.1:{http_port}"
max_body_bytes = 16777216

[sinks.out]
type = "blackhole"
inputs = ["syslog", "forward", "http"]
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "-c"])
        .arg(&pipeline)
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    while TcpStream::connect(("127.0.0.1", forward_port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    for (what, bytes, port, source, total) in [
        ("syslog (RFC 5424, TCP)", &syslog, syslog_port, "syslog", n),
        (
            "fluent forward (PackedForward)",
            &forward,
            forward_port,
            "forward",
            2 * n,
        ),
    ] {
        let ceiling = receive_only(bytes);
        let sender = {
            let bytes = bytes.clone();
            std::thread::spawn(move || send(port, &bytes))
        };
        let (secs, cpu) = common::watch_weir(api, source, "out", total, child.id());
        sender.join().unwrap();
        println!("  {what}:");
        println!(
            "    receive only (the ceiling): {:>9.0} events/s",
            n as f64 / ceiling
        );
        println!(
            "    weir → blackhole:           {:>9.0} events/s, {:.0}% of the ceiling; {:.0} events per CPU-second",
            n as f64 / secs,
            100.0 * ceiling / secs,
            n as f64 / cpu
        );
    }

    println!("  one large message against its parts:");
    let entries = forward_entries(150_000);
    // Five of each, so the run is long enough to time by polling.
    let whole = forward_mode(&entries).repeat(5);
    let parts: Vec<u8> = entries
        .chunks(10_000)
        .flat_map(forward_mode)
        .collect::<Vec<u8>>()
        .repeat(5);
    let mut total = 2 * n;
    let mut timed = |bytes: &[u8]| {
        total += 5 * entries.len();
        let sender = {
            let bytes = bytes.to_vec();
            std::thread::spawn(move || send(forward_port, &bytes))
        };
        let (secs, _) = common::watch_weir(api, "forward", "out", total, child.id());
        sender.join().unwrap();
        secs
    };
    let (one, fifteen) = (timed(&whole), timed(&parts));
    println!(
        "    forward, five {:.1} MB messages: {one:.3} s; the same in 75 messages: {fifteen:.3} s; ratio {:.2}",
        whole.len() as f64 / 5e6,
        one / fifteen
    );
    let lines: String = (0..250_000)
        .map(|i| format!("{{\"i\":{i},\"msg\":\"GET /api/v1/items 200\"}}\n"))
        .collect();
    let started = Instant::now();
    post(http_port, lines.as_bytes());
    let one = started.elapsed().as_secs_f64();
    let tenths: Vec<String> = lines
        .lines()
        .collect::<Vec<_>>()
        .chunks(25_000)
        .map(|c| c.join("\n") + "\n")
        .collect();
    let started = Instant::now();
    for body in &tenths {
        post(http_port, body.as_bytes());
    }
    let ten = started.elapsed().as_secs_f64();
    println!(
        "    http, one {:.1} MB body: {one:.3} s; in 10 bodies: {ten:.3} s; ratio {:.2}",
        lines.len() as f64 / 1e6,
        one / ten
    );
    // SAFETY: our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// Seconds to take `bytes` off a loopback socket, decoding nothing.
fn receive_only(bytes: &[u8]) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let expected = bytes.len();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0; 64 << 10];
        let (mut got, mut first) = (0, None);
        while got < expected {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the sender stopped early");
            first.get_or_insert_with(Instant::now);
            got += n;
        }
        first.unwrap().elapsed().as_secs_f64()
    });
    send(port, bytes);
    reader.join().unwrap()
}

fn send(port: u16, bytes: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    for chunk in bytes.chunks(256 << 10) {
        s.write_all(chunk).unwrap();
    }
}

fn syslog_lines(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 200);
    for i in 0..n {
        let (svc, ms) = (i % 20, (i * 7919) % 1000);
        writeln!(
            out,
            "<134>1 2026-11-23T10:{:02}:{:02}.{ms:03}Z web-{svc} api-{svc} {} - - GET /api/v1/items/{i} 200 {}ms trace={:016x}",
            (i / 60_000) % 60,
            (i / 1000) % 60,
            1000 + svc,
            i % 250,
            (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        )
        .unwrap();
    }
    out
}

/// PackedForward messages: `[tag, bin(entries), {"size": k}]`, entries
/// `[seconds, {level, service, msg, status, latency_ms}]`.
fn forward_chunks(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 120);
    let mut i = 0;
    while i < n {
        let k = CHUNK.min(n - i);
        let mut entries = Vec::with_capacity(k * 120);
        for j in i..i + k {
            let record = std::collections::BTreeMap::from([
                ("latency_ms", Field::Int(j as u64 % 250)),
                (
                    "level",
                    Field::Str(if j % 20 == 0 { "error" } else { "info" }),
                ),
                ("msg", Field::Str("GET /api/v1/items 200")),
                ("service", Field::Str(["api", "db", "web", "auth"][j % 4])),
                ("status", Field::Int(200)),
            ]);
            entries.extend(rmp_serde::to_vec(&(1_763_900_000 + j as u64, record)).unwrap());
        }
        out.extend([0x93, 0xa3, b'a', b'p', b'p', 0xc6]);
        out.extend((entries.len() as u32).to_be_bytes());
        out.extend(&entries);
        out.extend([0x81, 0xa4, b's', b'i', b'z', b'e', 0xcd]);
        out.extend((k as u16).to_be_bytes());
        i += k;
    }
    out
}

/// `[seconds, record]` entries, each encoded on its own.
fn forward_entries(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|j| {
            let record = std::collections::BTreeMap::from([
                ("latency_ms", Field::Int(j as u64 % 250)),
                ("msg", Field::Str("GET /api/v1/items 200")),
                ("service", Field::Str(["api", "db", "web", "auth"][j % 4])),
            ]);
            rmp_serde::to_vec(&(1_763_900_000 + j as u64, record)).unwrap()
        })
        .collect()
}

/// A Forward-mode message: `[tag, [entry, ...]]`, as Fluentd sends it.
fn forward_mode(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0x92, 0xa3, b'a', b'p', b'p', 0xdd];
    out.extend((entries.len() as u32).to_be_bytes());
    for e in entries {
        out.extend(e);
    }
    out
}

/// POSTs `body` to the http source and waits for its 200.
fn post(port: u16, body: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Record values: strings and integers, as JSON would give them.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Field {
    Str(&'static str),
    Int(u64),
}
