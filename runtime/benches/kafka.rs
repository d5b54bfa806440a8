//! Kafka → JSON decode → Wasm filter → Kafka, against a plain rdkafka
//! consumer → producer copy loop (no decoding, no processing: the ceiling)
//! on the same local tansu broker, in one run.
//!
//! `scripts/bench` (or `scripts/tansu && cargo bench -p weir --bench kafka`).
//! Both read the same pre-produced topic of ~200-byte JSON log lines, each
//! with a group of its own, and write every record to a topic of their own.
//! Each is timed from its first record in to its last record acknowledged
//! by the broker (weir's through its admin API), so start-up and group
//! joins are left out.
//! `WEIR_BENCH_EVENTS` sets the count.

mod common;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::Message;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;

fn main() {
    let n: usize = std::env::var("WEIR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join("plugins/dist/level_filter.wasm");
    assert!(wasm.is_file(), "run scripts/build-plugins first");

    let dir = tempfile::tempdir().unwrap();
    let broker = common::tansu::Tansu::start();
    for t in ["in", "copy-out", "weir-out"] {
        broker.create_topic(t, PARTITIONS as u32);
    }
    let addr = broker.addr.clone();
    let lines = common::lines(n, 42);
    println!(
        "weir kafka bench: {n} JSON log lines, {} bytes on average, {PARTITIONS} partitions, tansu on loopback",
        lines.len() / n
    );
    let started = Instant::now();
    produce(&addr, &lines);
    println!(
        "  produced the input in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let cpu = common::process_cpu(std::process::id());
    let copy = copy_loop(&addr, n);
    let copy_cpu = common::process_cpu(std::process::id()) - cpu;
    let weir = {
        let api = common::free_port();
        let pipeline = dir.path().join("bench.toml");
        std::fs::write(&pipeline, pipeline_toml(&addr, &wasm, api)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "-c"])
            .arg(&pipeline)
            .env("WEIR_CACHE_DIR", root.join("target/test-plugin-cache"))
            .env("WEIR_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (secs, cpu) = common::watch_weir(api, "in", "out", n, child.id());
        // SAFETY: our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
        (secs, cpu)
    };
    let (weir, weir_cpu) = weir;
    let rate = |s: f64| n as f64 / s;
    println!(
        "  copy loop (rdkafka consume → produce): {:>9.0} events/s",
        rate(copy)
    );
    println!(
        "  weir (kafka → json → wasm filter → kafka): {:>9.0} events/s",
        rate(weir)
    );
    println!(
        "  weir / copy loop: {:.0}% (target ≥ 70%)",
        100.0 * copy / weir
    );
    println!(
        "  CPU seconds (all threads, librdkafka's included): copy loop {copy_cpu:.2}, weir {weir_cpu:.2} ({:.0} events per CPU-second)",
        n as f64 / weir_cpu
    );
}

fn pipeline_toml(addr: &str, wasm: &Path, api: u16) -> String {
    format!(
        r#"
[api]
address = "127.0.0.1:{api}"

[sources.in]
type = "kafka"
brokers = "{addr}"
topics = ["in"]
group_id = "weir-bench"
start_from = "earliest"
# Records are forwarded as they came, as the copy loop does: without the
# `kafka` metadata field.
metadata_field = ""

[transforms.keep]
type = "wasm"
inputs = ["in"]
plugin = "{wasm}"
# Every line is info or above: the filter runs on each, all pass, and
# both sides write the same records.
config = {{ level = "info" }}

[sinks.out]
type = "kafka"
inputs = ["keep"]
brokers = "{addr}"
topic = "weir-out"
"#,
        wasm = wasm.display()
    )
}

/// The ceiling: records copied as they are, timed from the first record in
/// to the last one acknowledged. It commits nothing and decodes nothing:
/// strictly less work than weir does.
fn copy_loop(addr: &str, n: usize) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "copy-bench")
        .set("auto.offset.reset", "earliest")
        // The fetch settings weir's source uses, so both fetch alike.
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .unwrap();
    consumer.subscribe(&["in"]).unwrap();
    let producer = producer(addr);
    let mut copied = 0;
    let mut first = None;
    while copied < n {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            let mut rec: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to("copy-out").payload(m.payload().unwrap_or_default());
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        rec = r;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            copied += 1;
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    first.unwrap().elapsed().as_secs_f64()
}

fn producer(addr: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

fn produce(addr: &str, lines: &[u8]) {
    let p = producer(addr);
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to("in").payload(line);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    p.flush(Duration::from_secs(120)).unwrap();
}
