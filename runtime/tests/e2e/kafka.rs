//! Kafka in and out against real Kafka-protocol brokers: tansu (started
//! here on loopback; `scripts/tansu` fetches it) for the end-to-end paths,
//! and librdkafka's mock cluster where a broker has to fail on cue.

use crate::common::tansu::Tansu;
use crate::common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// One test at a time. The outage test takes its mock broker's port down
/// and up again; another test's new socket could take that port meanwhile,
/// and librdkafka aborts when it cannot listen again.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn producer(brokers: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces `(key, value)` records and waits until all are delivered.
fn produce(brokers: &str, topic: &str, records: impl IntoIterator<Item = (String, String)>) {
    let p = producer(brokers);
    for (k, v) in records {
        let headers = OwnedHeaders::new().insert(Header {
            key: "origin",
            value: Some("test"),
        });
        let mut rec = BaseRecord::to(topic).key(&k).payload(&v).headers(headers);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60))
        .expect("every record delivered");
}

/// Every record of `topic`, read by a fresh group until `n` arrived.
fn consume(brokers: &str, topic: &str, n: usize) -> Vec<(Option<String>, serde_json::Value)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("check-{}", free_port()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
            let v = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
            out.push((key, v));
        }
    }
    out
}

/// The `i` of every event in `path`, counted.
fn ids(path: &Path) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for e in events_in(path) {
        if let Some(i) = e["i"].as_i64() {
            *m.entry(i).or_default() += 1;
        }
    }
    m
}

fn stop(child: Child) -> String {
    signal(&child, libc::SIGTERM);
    stderr(&wait_output(child, 60))
}

#[test]
fn records_flow_through_a_plugin_to_kafka_and_a_file_with_their_metadata() {
    let _one = serial();
    let broker = Tansu::start();
    broker.create_topic("app", 3);
    broker.create_topic("out-cart", 1);
    broker.create_topic("out-pay", 1);
    let n = 3000;
    let records = (0..n).map(|i| {
        let service = if i % 3 == 0 { "cart" } else { "pay" };
        let level = if i % 2 == 0 { "error" } else { "info" };
        (
            format!("k{}", i % 7),
            format!(r#"{{"i":{i},"service":"{service}","level":"{level}"}}"#),
        )
    });
    produce(
        &broker.addr,
        "app",
        records.chain([("bad".into(), "{not json".into())]),
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let pipeline = crate::common::pipeline(
        dir.path(),
        &format!(
            r#"
[sources.app]
type = "kafka"
brokers = "{addr}"
topics = ["^ap+$"]
group_id = "weir-e2e"
start_from = "earliest"

[transforms.errors]
type = "wasm"
inputs = ["app"]
plugin = "{{plugin:level_filter}}"
config = {{ level = "error", missing = "keep" }}

[sinks.file]
type = "file"
inputs = ["errors"]
path = "{out}"

[sinks.rollup]
type = "kafka"
inputs = ["errors"]
brokers = "{addr}"
topic = "out-{{{{ service }}}}"
key_field = "service"
compression = "zstd"
"#,
            addr = broker.addr,
            out = out.display()
        ),
    );
    let weir = start(&pipeline, &[]);
    // Errors are the even i's; the undecodable record is kept with `_error`.
    let expected = n / 2 + 1;
    eventually(90, "the errors in the file", || {
        events_in(&out).len() >= expected
    });
    let log = stop(weir);

    let events = events_in(&out);
    assert_eq!(events.len(), expected, "{log}");
    let bad = events
        .iter()
        .find(|e| e["_error"].is_string())
        .expect("the bad record");
    let err = bad["_error"].as_str().unwrap();
    assert!(
        err.starts_with("app/") && err.contains("invalid JSON"),
        "{err}"
    );
    assert_eq!(bad["message"], "{not json");
    assert_eq!(bad["kafka"]["key"], "bad");
    let mut partitions = std::collections::BTreeSet::new();
    for e in events.iter().filter(|e| e["i"].is_i64()) {
        let i = e["i"].as_i64().unwrap();
        assert_eq!(i % 2, 0, "the filter ran: {e}");
        let k = &e["kafka"];
        assert_eq!(k["topic"], "app");
        assert_eq!(k["key"], format!("k{}", i % 7));
        assert_eq!(k["headers"]["origin"], "test");
        assert!(k["offset"].as_i64().unwrap() >= 0 && k["timestamp_ms"].as_i64().unwrap() > 0);
        partitions.insert(k["partition"].as_i64().unwrap());
    }
    assert_eq!(partitions.len(), 3, "all partitions were read");

    // The Kafka sink: one topic per service, keyed by it.
    let even_cart = (0..n).filter(|i| i % 6 == 0).count();
    let cart = consume(&broker.addr, "out-cart", even_cart);
    let pay = consume(&broker.addr, "out-pay", n / 2 - even_cart);
    assert_eq!(cart.len(), even_cart);
    assert_eq!(pay.len(), n / 2 - even_cart);
    assert!(cart
        .iter()
        .all(|(k, v)| k.as_deref() == Some("cart") && v["service"] == "cart"));
    assert!(pay
        .iter()
        .all(|(k, v)| k.as_deref() == Some("pay") && v["level"] == "error"));

    // Everything was committed: a restart of the group reads nothing again.
    let again = start(&pipeline, &[]);
    std::thread::sleep(Duration::from_secs(8));
    let log = stop(again);
    assert_eq!(
        events_in(&out).len(),
        expected,
        "records were consumed twice:\n{log}"
    );
}

fn numbered_records(from: usize, to: usize) -> Vec<(String, String)> {
    (from..to)
        .map(|i| {
            (
                format!("k{}", i % 16),
                format!(r#"{{"i":{i},"service":"s{}"}}"#, i % 16),
            )
        })
        .collect()
}

fn file_pipeline(
    dir: &Path,
    brokers: &str,
    topic: &str,
    group: &str,
    out: &Path,
    extra: &str,
) -> PathBuf {
    let p = dir.join(format!(
        "{group}-{}.toml",
        out.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::write(
        &p,
        format!(
            r#"
[settings]
batch_size = 200

[sources.in]
type = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
start_from = "earliest"
librdkafka_options = {{ "session.timeout.ms" = "6000" }}

[sinks.file]
type = "file"
inputs = ["in"]
path = "{out}"
{extra}
"#,
            out = out.display()
        ),
    )
    .unwrap();
    p
}

/// A FIFO for a file sink: the test reads it at its own pace, so the
/// pipeline behind it has batches in flight for as long as the test likes.
fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    path
}

type Seen = std::sync::Arc<std::sync::Mutex<Vec<i64>>>;

/// Reads `path` until its writer goes, resting `pause` after each line;
/// the `i` of each event lands in the returned list.
fn read_slowly(path: &Path, pause: Duration) -> (Seen, std::thread::JoinHandle<()>) {
    let seen = Seen::default();
    let (s, path) = (seen.clone(), path.to_path_buf());
    let t = std::thread::spawn(move || {
        let r = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        for line in std::io::BufRead::lines(r) {
            let Ok(line) = line else { break };
            // A crash can cut the last line short.
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            s.lock().unwrap().push(v["i"].as_i64().unwrap());
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    });
    (seen, t)
}

fn count(seen: &[&Seen]) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for s in seen {
        for i in s.lock().unwrap().iter() {
            *m.entry(*i).or_default() += 1;
        }
    }
    m
}

fn get(url: &str) -> String {
    weir::install_tls_provider();
    reqwest::blocking::get(url)
        .and_then(|r| r.text())
        .unwrap_or_default()
}

/// Partitions assigned to the source `in` of the pipeline at `api`.
fn partitions(api: u16) -> u64 {
    let body = get(&format!("http://127.0.0.1:{api}/components"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v.as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "in"))
        .and_then(|c| c["kafka"]["partitions"].as_u64())
        .unwrap_or(0)
}

fn api(port: u16) -> String {
    format!("[api]\naddress = \"127.0.0.1:{port}\"\n")
}

#[test]
fn a_crash_loses_nothing_and_repeats_only_what_was_in_flight() {
    let _one = serial();
    let broker = Tansu::start();
    broker.create_topic("crash", 2);
    let n = 30_000;
    produce(&broker.addr, "crash", numbered_records(0, n));
    let dir = tempfile::tempdir().unwrap();
    let out = fifo(dir.path(), "out");
    let p = file_pipeline(dir.path(), &broker.addr, "crash", "crashers", &out, "");

    let weir = start(&p, &[]);
    let (first, reader) = read_slowly(&out, Duration::from_micros(50));
    eventually(120, "some records", || first.lock().unwrap().len() >= 3_000);
    signal(&weir, libc::SIGKILL);
    let _ = wait_output(weir, 10);
    reader.join().unwrap();
    let before = first.lock().unwrap().len();
    assert!(
        before < n,
        "the crash came after the end; nothing was tested"
    );

    let weir = start(&p, &[]);
    let (second, reader) = read_slowly(&out, Duration::ZERO);
    eventually(120, "every record after the restart", || {
        count(&[&first, &second]).len() == n
    });
    let log = stop(weir);
    reader.join().unwrap();
    let seen = count(&[&first, &second]);
    assert_eq!(seen.len(), n, "{log}");
    let dups: usize = seen.values().map(|c| c - 1).sum();
    // Only what the first run wrote but had not committed comes again.
    assert!(
        dups <= before,
        "{dups} duplicates, more than the {before} written before the crash"
    );
    eprintln!("crash after {before} of {n} records; {dups} consumed twice");
}

#[test]
fn two_instances_in_one_group_process_every_record_once() {
    let _one = serial();
    let broker = Tansu::start();
    broker.create_topic("shared", 4);
    let n = 20_000;
    produce(&broker.addr, "shared", numbered_records(0, n));
    let dir = tempfile::tempdir().unwrap();
    let (out_a, out_b) = (fifo(dir.path(), "a"), fifo(dir.path(), "b"));
    let (api_a, api_b) = (free_port(), free_port());
    let pa = file_pipeline(
        dir.path(),
        &broker.addr,
        "shared",
        "pair",
        &out_a,
        &api(api_a),
    );
    let pb = file_pipeline(
        dir.path(),
        &broker.addr,
        "shared",
        "pair",
        &out_b,
        &api(api_b),
    );

    // The first instance is slow to write: it has records in flight when
    // the second joins and its partitions are taken away.
    let a = start(&pa, &[]);
    let (seen_a, reader_a) = read_slowly(&out_a, Duration::from_micros(100));
    eventually(120, "the first instance to start", || {
        seen_a.lock().unwrap().len() >= 2_000
    });
    let b = start(&pb, &[]);
    let (seen_b, reader_b) = read_slowly(&out_b, Duration::from_micros(100));
    eventually(120, "the second instance to get partitions", || {
        partitions(api_b) > 0
    });
    produce(&broker.addr, "shared", numbered_records(n, 2 * n));
    eventually(120, "every record across both", || {
        count(&[&seen_a, &seen_b]).len() == 2 * n
    });
    std::thread::sleep(Duration::from_secs(2));
    let (log_a, log_b) = (stop(a), stop(b));
    reader_a.join().unwrap();
    reader_b.join().unwrap();
    assert!(
        !seen_b.lock().unwrap().is_empty(),
        "the second instance wrote nothing:\n{log_b}"
    );
    let all = count(&[&seen_a, &seen_b]);
    let once: BTreeMap<i64, usize> = (0..2 * n as i64).map(|i| (i, 1)).collect();
    assert!(
        all == once,
        "not every record exactly once: {} distinct, {} in all\nA:\n{log_a}\nB:\n{log_b}",
        all.len(),
        all.values().sum::<usize>()
    );
    assert!(
        log_a.contains("released"),
        "the first instance handed partitions over:\n{log_a}"
    );
}

#[test]
fn windowed_rows_split_by_key_across_instances_add_up_to_one_instances_rows() {
    let _one = serial();
    let broker = Tansu::start();
    broker.create_topic("keyed", 4);
    let dir = tempfile::tempdir().unwrap();
    let query = r#"
[queries.per_minute]
inputs = ["in"]
sql = "SELECT window_start, service, count(*) AS n FROM in GROUP BY tumble(interval '1 minute'), service"
schema = { service = "string" }
idle_timeout = "0s"
# Partitions are read in turns: event time runs ahead on one while another
# waits, so the windows wait for the slowest.
allowed_lateness = "10m"

[sinks.rows]
type = "file"
inputs = ["per_minute"]
path = "ROWS"
"#;
    let run = |name: &str| {
        let out = dir.path().join(format!("{name}.jsonl"));
        let rows = dir.path().join(format!("{name}-rows.jsonl"));
        let port = free_port();
        let extra = query.replace("ROWS", &rows.display().to_string()) + &api(port);
        let p = file_pipeline(dir.path(), &broker.addr, "keyed", "rollup", &out, &extra);
        (p, out, rows, port)
    };
    let (pa, out_a, rows_a, api_a) = run("a");
    let (pb, out_b, rows_b, api_b) = run("b");
    let a = start(&pa, &[]);
    let b = start(&pb, &[]);
    // Both are in the group before anything arrives: no partition moves
    // while a window is open.
    eventually(120, "both instances to share the partitions", || {
        let (x, y) = (partitions(api_a), partitions(api_b));
        x > 0 && y > 0 && x + y == 4
    });
    let n = 6_000;
    let base = 1_767_225_600; // 2026-01-01T00:00:00Z
    let records: Vec<(String, String)> = (0..n)
        .map(|i| {
            let service = format!("s{}", i % 8);
            let ts = base + (i as i64) / 50; // 50 events a second: two minutes
            (
                service.clone(),
                format!(r#"{{"i":{i},"service":"{service}","timestamp":{ts}}}"#),
            )
        })
        .collect();
    let mut expected: HashMap<(String, String), i64> = HashMap::new();
    for (k, v) in &records {
        let v: serde_json::Value = serde_json::from_str(v).unwrap();
        let minute = (v["timestamp"].as_i64().unwrap() - base) / 60;
        *expected.entry((k.clone(), minute.to_string())).or_default() += 1;
    }
    produce(&broker.addr, "keyed", records);
    eventually(90, "every event through", || {
        ids(&out_a).len() + ids(&out_b).len() == n
    });
    let (la, lb) = (stop(a), stop(b));
    let mut got: HashMap<(String, String), i64> = HashMap::new();
    for r in events_in(&rows_a).into_iter().chain(events_in(&rows_b)) {
        let start = r["window_start"].as_str().unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(start)
            .unwrap()
            .timestamp();
        let minute = ((at - base) / 60).to_string();
        let key = (r["service"].as_str().unwrap().to_string(), minute);
        assert!(
            got.insert(key.clone(), r["n"].as_i64().unwrap()).is_none(),
            "two rows for {key:?}: the key was split\n{la}\n{lb}"
        );
    }
    assert_eq!(got, expected);
}

/// librdkafka's mock cluster, where a broker can be taken down on cue.
struct Mock {
    // Owns the cluster; dropping it stops the brokers.
    holder: ThreadedProducer<DefaultProducerContext>,
    brokers: String,
}

impl Mock {
    fn start() -> Mock {
        let holder: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .create()
            .unwrap();
        let brokers = holder
            .client()
            .mock_cluster()
            .expect("a mock cluster")
            .bootstrap_servers();
        // SAFETY: the cluster lives as long as `holder`.
        unsafe {
            let native =
                rdkafka::bindings::rd_kafka_handle_mock_cluster(holder.client().native_ptr());
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(native, 0);
        }
        Mock { holder, brokers }
    }

    fn cluster(&self) -> rdkafka::mocking::MockCluster<'_, DefaultProducerContext> {
        self.holder.client().mock_cluster().unwrap()
    }
}

#[test]
fn a_broker_outage_is_logged_and_measured_and_nothing_is_lost() {
    let _one = serial();
    let mock = Mock::start();
    mock.cluster().create_topic("flaky", 2, 1).unwrap();
    produce(&mock.brokers, "flaky", numbered_records(0, 1000));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let port = free_port();
    let p = file_pipeline(
        dir.path(),
        &mock.brokers,
        "flaky",
        "outage",
        &out,
        &api(port),
    );
    let metrics = || get(&format!("http://127.0.0.1:{port}/metrics"));
    // Down before weir starts: it waits, says so, and reads once it is up.
    mock.cluster().broker_down(1).unwrap();
    let weir = start(&p, &[]);
    eventually(60, "the outage at start in the metrics", || {
        let m = metrics();
        m.contains("weir_kafka_connected{component=\"in\"} 0")
            && m.contains("weir_component_failures_total{component=\"in\",reason=\"broker_down\"}")
    });
    assert!(ids(&out).is_empty());
    mock.cluster().broker_up(1).unwrap();
    eventually(60, "the first records", || ids(&out).len() == 1000);
    eventually(10, "a connected source", || {
        metrics().contains("weir_kafka_connected{component=\"in\"} 1")
    });

    mock.cluster().broker_down(1).unwrap();
    eventually(60, "the outage in the metrics", || {
        let m = metrics();
        m.contains("weir_kafka_connected{component=\"in\"} 0")
            && m.contains("weir_component_failures_total{component=\"in\",reason=\"broker_down\"}")
    });
    // Records produced during the outage wait in the producer.
    let more = std::thread::spawn({
        let b = mock.brokers.clone();
        move || produce(&b, "flaky", numbered_records(1000, 2000))
    });
    std::thread::sleep(Duration::from_secs(2));
    mock.cluster().broker_up(1).unwrap();
    more.join().unwrap();
    eventually(60, "every record after the outage", || {
        ids(&out).len() == 2000
    });
    let log = stop(weir);
    assert!(log.contains("Kafka brokers unreachable"), "{log}");
    assert!(log.contains("reachable again"), "{log}");
}

#[test]
fn a_config_typo_or_a_reserved_setting_is_refused_with_its_place() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "[sources.k]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:1\"\ntopics = [\"t\"]\nlibrdkafka_options = { \"enable.auto.offset.store\" = \"true\" }\n\n[sinks.o]\ntype = \"kafka\"\ninputs = [\"k\"]\nbrokers = \"127.0.0.1:1\"\ntopic = \"x-{{ service\"\n",
    )
    .unwrap();
    let out = run(weir().args(["validate", "-c"]).arg(&p), b"", 60);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("sources.k") && err.contains("enable.auto.offset.store"),
        "{err}"
    );
    assert!(err.contains("sinks.o") && err.contains("topic"), "{err}");

    std::fs::write(
        &p,
        "[sources.k]\ntype = \"kafka\"\nbroker = \"x\"\ntopics = [\"t\"]\n",
    )
    .unwrap();
    let err = stderr(&run(weir().args(["validate", "-c"]).arg(&p), b"", 60));
    assert!(err.contains("broker"), "{err}");
}

#[test]
fn a_slow_sink_holds_consumption_back_instead_of_memory() {
    let _one = serial();
    let broker = Tansu::start();
    broker.create_topic("flood", 1);
    let n = 40_000;
    produce(&broker.addr, "flood", numbered_records(0, n));
    let dir = tempfile::tempdir().unwrap();
    // A FIFO nobody reads yet: the sink blocks on its first write.
    let fifo = fifo(dir.path(), "slow");
    let port = free_port();
    let p = file_pipeline(dir.path(), &broker.addr, "flood", "slow", &fifo, &api(port));
    let weir = start(&p, &[]);
    std::thread::sleep(Duration::from_secs(4));
    let body = get(&format!("http://127.0.0.1:{port}/components"));
    let components: serde_json::Value = serde_json::from_str(&body).unwrap();
    let source = components
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "in")
        .unwrap()
        .clone();
    let taken = source["events_out"].as_u64().unwrap();
    // Held back: the bounded queues (capacity x batch) and no more.
    assert!(
        taken < n as u64 / 2,
        "the source read {taken} of {n} with its sink blocked: {source}"
    );
    // Now the sink drains, and everything comes through.
    let reader = std::io::BufReader::new(std::fs::File::open(&fifo).unwrap());
    let got = std::io::BufRead::lines(reader).take(n).count();
    let log = stop(weir);
    assert_eq!(got, n, "{log}");
}

#[test]
fn rolled_up_rows_and_alert_notifications_go_to_kafka() {
    let _one = serial();
    let broker = Tansu::start();
    broker.create_topic("logs", 1);
    broker.create_topic("rollups", 1);
    broker.create_topic("alerts", 1);
    let base = 1_767_225_600; // a minute's start
    let mut records: Vec<(String, String)> = (0..60)
        .map(|i| {
            let (service, level) = if i % 3 == 0 {
                ("pay", "error")
            } else {
                ("cart", "info")
            };
            (
                service.into(),
                format!(
                    r#"{{"service":"{service}","level":"{level}","timestamp":{}}}"#,
                    base + i
                ),
            )
        })
        .collect();
    // An event of the next minute closes the first minute's window (and
    // keeps `pay` failing, so its alert stays firing).
    records.push((
        "pay".into(),
        format!(
            r#"{{"service":"pay","level":"error","timestamp":{}}}"#,
            base + 61
        ),
    ));
    produce(&broker.addr, "logs", records);

    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[settings]
data_dir = "{data}"

[sources.logs]
type = "kafka"
brokers = "{addr}"
topics = ["logs"]
start_from = "earliest"
librdkafka_options = {{ "session.timeout.ms" = "6000" }}

[queries.per_minute]
inputs = ["logs"]
sql = "SELECT window_start, service, count(*) FILTER (WHERE level = 'error') AS errors, count(*) AS n FROM logs GROUP BY tumble(interval '1 minute'), service"
schema = {{ service = "string", level = "string" }}

[sinks.rollups]
type = "kafka"
inputs = ["per_minute"]
brokers = "{addr}"
topic = "rollups"
key_field = "service"

[alerts.errors]
query = "per_minute"
condition = "errors > 0"
summary = "{{{{ service }}}}: {{{{ errors }}}} errors"

[route]
receiver = "bus"
group_wait = "100ms"

[receivers.bus]
type = "kafka"
brokers = "{addr}"
topic = "alerts"
"#,
            addr = broker.addr,
            data = dir.path().join("state").display()
        ),
    )
    .unwrap();
    let weir = start(&pipeline, &[]);
    let rows = consume(&broker.addr, "rollups", 2);
    let alerts = consume(&broker.addr, "alerts", 1);
    let log = stop(weir);
    let mut by_service: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|(k, v)| {
            assert_eq!(k.as_deref(), v["service"].as_str(), "keyed by service");
            (
                v["service"].as_str().unwrap().to_string(),
                v["errors"].as_i64().unwrap(),
                v["n"].as_i64().unwrap(),
            )
        })
        .collect();
    by_service.sort();
    assert_eq!(
        by_service,
        vec![("cart".into(), 0, 40), ("pay".into(), 20, 20)],
        "{log}"
    );
    let (key, note) = alerts
        .first()
        .unwrap_or_else(|| panic!("no notification:\n{log}"));
    assert!(key.is_some(), "keyed by its group");
    assert_eq!(note["status"], "firing");
    assert_eq!(note["alerts"][0]["labels"]["service"], "pay");
    assert_eq!(
        note["alerts"][0]["annotations"]["summary"],
        "pay: 20 errors"
    );
}
