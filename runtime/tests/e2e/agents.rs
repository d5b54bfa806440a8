//! The agents users already run, sending to weir unchanged: a real
//! prometheus-node-exporter scraped, real Prometheus scraping weir and
//! remote-writing to it, rsyslog forwarding over TCP and UDP, and Fluent
//! clients (Python's and Node's fluent-logger) in every mode they have,
//! acks included; rsyslog and Node's fluent-logger over TLS. Debian packages and the clients are installed by
//! `scripts/test`.

use crate::common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A peer process killed when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Peer {
    Peer(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test installs it)")),
    )
}

#[test]
fn node_exporter_is_scraped_and_its_metrics_are_rolled_up_by_sql() {
    let dir = tempfile::tempdir().unwrap();
    let node = free_port();
    let dead = free_port();
    let _exporter = spawn(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{node}")),
    );
    eventually(30, "node exporter", || {
        std::net::TcpStream::connect(("127.0.0.1", node)).is_ok()
    });
    let raw = dir.path().join("raw.jsonl");
    let rows = dir.path().join("rows.jsonl");
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[sources.node]
type = "prometheus_scrape"
targets = ["http://127.0.0.1:{node}/metrics", "http://127.0.0.1:{dead}/metrics"]
interval = "1s"
timeout = "900ms"

[queries.fleet]
inputs = ["node"]
sql = """SELECT window_start, instance, min(value) FILTER (WHERE name = 'up') AS up,
  sum(value) FILTER (WHERE name = 'node_cpu_seconds_total') AS cpu_seconds
  FROM node GROUP BY tumble(interval '2 seconds'), instance"""

[sinks.raw]
type = "file"
path = "{}"
inputs = ["node"]

[sinks.rows]
type = "file"
path = "{}"
inputs = ["fleet"]
"#,
            raw.display(),
            rows.display()
        ),
    );
    let weir = start(&p, &[]);
    let live = format!("127.0.0.1:{node}");
    let down = format!("127.0.0.1:{dead}");
    eventually(60, "rolled-up rows for both targets", || {
        let rows = events_in(&rows);
        rows.iter().any(|r| r["instance"] == *live.as_str())
            && rows.iter().any(|r| r["instance"] == *down.as_str())
    });
    stop(weir);

    let events = events_in(&raw);
    let cpu = events
        .iter()
        .find(|e| e["name"] == "node_cpu_seconds_total")
        .expect("node_cpu_seconds_total scraped");
    assert_eq!(cpu["kind"], "counter", "{cpu}");
    assert_eq!(cpu["labels"]["instance"], *live.as_str(), "{cpu}");
    assert_eq!(cpu["labels"]["job"], "node", "{cpu}");
    assert!(
        cpu["labels"]["cpu"].is_string() && cpu["labels"]["mode"].is_string(),
        "{cpu}"
    );
    assert!(cpu["value"].as_f64().unwrap() > 0.0, "{cpu}");
    let summary = events
        .iter()
        .find(|e| e["name"] == "go_gc_duration_seconds")
        .expect("the go_gc_duration_seconds summary");
    assert_eq!(summary["kind"], "summary", "{summary}");
    let up = |instance: &str| {
        events
            .iter()
            .filter(|e| e["name"] == "up" && e["labels"]["instance"] == instance)
            .map(|e| e["value"].as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    assert!(
        !up(&live).is_empty() && up(&live).iter().all(|v| *v == 1.0),
        "{:?}",
        up(&live)
    );
    assert!(
        !up(&down).is_empty() && up(&down).iter().all(|v| *v == 0.0),
        "{:?}",
        up(&down)
    );

    let rows = events_in(&rows);
    let row = |instance: &str| rows.iter().find(|r| r["instance"] == instance).unwrap();
    assert_eq!(row(&live)["up"], 1.0, "{rows:?}");
    assert!(
        row(&live)["cpu_seconds"].as_f64().unwrap() > 0.0,
        "{rows:?}"
    );
    assert_eq!(row(&down)["up"], 0.0, "{rows:?}");
    assert!(row(&down)["cpu_seconds"].is_null(), "{rows:?}");
}

#[test]
fn prometheus_scrapes_the_rollups_and_remote_writes_both_ways() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let exporter = free_port();
    let receiver = free_port();
    let written_file = dir.path().join("written.jsonl");
    // Prometheus is started first: weir's remote-write sink needs its URL.
    let prom = Prometheus::start(
        dir.path(),
        &format!(
            "  - job_name: weir\n    static_configs:\n      - targets: ['127.0.0.1:{exporter}']\nremote_write:\n  - url: http://127.0.0.1:{receiver}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n"
        ),
        &["--web.enable-remote-write-receiver"],
    );
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[sources.app]
type = "stdin"

[sources.prom]
type = "prometheus_remote_write"
address = "127.0.0.1:{receiver}"

[queries.errors]
inputs = ["app"]
sql = "SELECT window_start, service, count(*) AS errors FROM app GROUP BY tumble(interval '10 seconds'), service"

[sinks.metrics]
type = "prometheus_exporter"
inputs = ["errors"]
address = "127.0.0.1:{exporter}"

[sinks.pushed]
type = "prometheus_remote_write"
inputs = ["errors"]
endpoint = "{}/api/v1/write"
namespace = "pushed"

[sinks.written]
type = "file"
path = "{}"
inputs = ["prom"]
"#,
            prom.url,
            written_file.display()
        ),
    );
    let mut weir = start(&p, &[]);
    // Two closed windows' worth of errors, a minute ago: 3 for api and 5
    // for db in the first, then one event that closes it.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start_ms = (now_ms - 60_000) / 10_000 * 10_000;
    let mut lines = String::new();
    for (svc, n) in [("api", 3), ("db", 5)] {
        for k in 0..n {
            lines.push_str(&format!(
                "{{\"timestamp\":{},\"service\":\"{svc}\"}}\n",
                start_ms + k * 100
            ));
        }
    }
    lines.push_str(&format!(
        "{{\"timestamp\":{},\"service\":\"api\"}}\n",
        start_ms + 25_000
    ));
    let mut stdin = weir.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).unwrap();
    stdin.flush().unwrap();

    // Scraped from the exporter.
    eventually(60, "Prometheus to scrape the rolled-up values", || {
        prom.query("errors_errors{job=\"weir\",service=\"db\"}") == Some(5.0)
    });
    assert_eq!(
        prom.query("errors_errors{job=\"weir\",service=\"api\"}"),
        Some(3.0)
    );
    // Pushed by the remote-write sink, stamped with the window's start.
    eventually(60, "the remote-written rollups in Prometheus", || {
        prom.query("pushed_errors{service=\"db\"}") == Some(5.0)
    });
    assert_eq!(prom.query("pushed_errors{service=\"api\"}"), Some(3.0));
    // And Prometheus remote-writes what it scraped to weir's source.
    eventually(60, "Prometheus' remote write to reach weir", || {
        events_in(&written_file).iter().any(|e| {
            e["name"] == "errors_errors" && e["labels"]["service"] == "db" && e["value"] == 5.0
        })
    });
    let written = events_in(&written_file);
    let up = written
        .iter()
        .find(|e| e["name"] == "up")
        .expect("Prometheus' own `up` series");
    assert_eq!(up["labels"]["job"], "weir", "{up}");
    assert_eq!(up["value"], 1.0, "{up}");
    drop(stdin);
    stop(weir);
}

/// rsyslog (Debian's) listening on UDP for `logger`, forwarding everything
/// to weir over TCP (octet-counted, RFC 5424) and UDP (RFC 3164).
#[test]
fn rsyslog_forwards_to_the_syslog_source_over_tcp_and_udp() {
    let dir = tempfile::tempdir().unwrap();
    let (tcp, udp, rsyslog_in) = (free_port(), free_port(), free_port());
    let out = dir.path().join("out.jsonl");
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[sources.syslog_tcp]
type = "syslog"
address = "127.0.0.1:{tcp}"

[sources.syslog_udp]
type = "syslog"
mode = "udp"
address = "127.0.0.1:{udp}"

[sinks.out]
type = "file"
path = "{}"
inputs = ["syslog_tcp", "syslog_udp"]
"#,
            out.display()
        ),
    );
    let weir = start(&p, &[]);
    eventually(30, "weir's syslog listener", || {
        std::net::TcpStream::connect(("127.0.0.1", tcp)).is_ok()
    });
    let conf = dir.path().join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{dir}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{rsyslog_in}")
*.* action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
*.* action(type="omfwd" target="127.0.0.1" port="{udp}" protocol="udp" template="RSYSLOG_TraditionalForwardFormat")
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let _rsyslog = spawn(
        Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.path().join("rsyslog.pid")),
    );
    let host = String::from_utf8(Command::new("hostname").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let short = host.split('.').next().unwrap().to_string();
    // rsyslog may still be starting: send until messages come through.
    let mut sent = 0;
    eventually(60, "messages through rsyslog over both transports", || {
        sent += 1;
        let status = Command::new("logger")
            .args(["-d", "-n", "127.0.0.1", "-P", &rsyslog_in.to_string()])
            .args(["-t", "billing", "-p", "local3.warning"])
            .arg(format!("card declined {sent} with \"quotes\" and ünïcode"))
            .status()
            .unwrap();
        assert!(status.success());
        std::thread::sleep(Duration::from_millis(200));
        let events = events_in(&out);
        events
            .iter()
            .any(|e| e["source_ip"] == "127.0.0.1" && e.get("version").is_some())
            && events
                .iter()
                .any(|e| e.get("version").is_none() && e["appname"] == "billing")
    });
    stop(weir);
    let events = events_in(&out);
    for rfc5424 in [true, false] {
        let e = events
            .iter()
            .find(|e| e.get("version").is_some() == rfc5424 && e["appname"] == "billing")
            .unwrap_or_else(|| {
                panic!(
                    "an RFC {} event in {events:?}",
                    if rfc5424 { 5424 } else { 3164 }
                )
            });
        assert_eq!(e["severity"], "warning", "{e}");
        assert_eq!(e["facility"], "local3", "{e}");
        let hostname = e["hostname"].as_str().unwrap();
        assert!(
            hostname == host || hostname == short,
            "{hostname} vs {host}: {e}"
        );
        let message = e["message"].as_str().unwrap();
        assert!(
            message.starts_with("card declined ")
                && message.ends_with(" with \"quotes\" and ünïcode"),
            "{e}"
        );
    }
}

#[test]
fn fluent_clients_forward_in_every_mode_and_get_their_acks() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out.jsonl");
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[sources.agents]
type = "fluent_forward"
address = "127.0.0.1:{port}"

[sinks.out]
type = "file"
path = "{}"
inputs = ["agents"]
"#,
            out.display()
        ),
    );
    let weir = start(&p, &[]);
    eventually(30, "the forward listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let tools = repo().join("target/tools");

    // Python's fluent-logger: Message mode, with EventTime (nanoseconds),
    // and Forward mode written with its msgpack.
    let python = format!(
        r#"
import socket, msgpack
from fluent import sender, event
s = sender.FluentSender("py", host="127.0.0.1", port={port}, nanosecond_precision=True)
for i in range(50):
    assert s.emit("message", {{"n": i, "text": "ünïcode"}}), s.last_error
s.close()
entries = [[1700000000 + i, {{"n": i}}] for i in range(50)]
c = socket.create_connection(("127.0.0.1", {port}))
c.sendall(msgpack.packb(["py.forward", entries, {{"chunk": "py-chunk-1"}}]))
assert msgpack.unpackb(c.recv(100)) == {{"ack": "py-chunk-1"}}
c.close()
print("ok")
"#
    );
    let py = Command::new("python3")
        .arg("-c")
        .arg(&python)
        .env("PYTHONPATH", tools.join("python"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );

    // Node's fluent-logger: Message, PackedForward and
    // CompressedPackedForward, each waiting for weir's ack of every chunk.
    let node = format!(
        r#"
const logger = require("fluent-logger");
const modes = ["Message", "PackedForward", "CompressedPackedForward"];
(async () => {{
  for (const mode of modes) {{
    const s = logger.createFluentSender("node", {{
      host: "127.0.0.1", port: {port}, eventMode: mode,
      requireAckResponse: true, ackResponseTimeout: 10000, flushInterval: 10,
    }});
    const acked = [];
    for (let i = 0; i < 50; i++) {{
      acked.push(new Promise((ok, fail) =>
        s.emit(mode.toLowerCase(), {{ n: i, mode }}, (err) => err ? fail(err) : ok())));
    }}
    await Promise.all(acked);
    s.end();
  }}
  console.log("ok");
}})().catch((e) => {{ console.error(e); process.exit(1); }});
"#
    );
    let node = Command::new("node")
        .arg("-e")
        .arg(&node)
        .env("NODE_PATH", tools.join("npm/node_modules"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&node.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&node.stderr)
    );

    eventually(30, "every record in the sink", || {
        events_in(&out).len() >= 250
    });
    stop(weir);
    let events = events_in(&out);
    assert_eq!(events.len(), 250, "no record twice");
    for tag in [
        "py.message",
        "py.forward",
        "node.message",
        "node.packedforward",
        "node.compressedpackedforward",
    ] {
        let mut ns: Vec<i64> = events
            .iter()
            .filter(|e| e["tag"] == tag)
            .map(|e| e["n"].as_i64().unwrap())
            .collect();
        ns.sort();
        assert_eq!(ns, (0..50).collect::<Vec<_>>(), "{tag}");
    }
    let py = events.iter().find(|e| e["tag"] == "py.message").unwrap();
    assert_eq!(py["text"], "ünïcode", "{py}");
}

/// rsyslog's TLS driver (gtls, from rsyslog-gnutls) and Node's
/// fluent-logger with `tls` send to weir's syslog and forward listeners
/// over TLS, checking weir's certificate against the test's CA.
#[test]
fn rsyslog_and_fluent_logger_send_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::common::tls::certificates(d);
    let (syslog, forward, rsyslog_in) = (free_port(), free_port(), free_port());
    let out = d.join("out.jsonl");
    let p = pipeline(
        d,
        &format!(
            r#"
[sources.syslog]
type = "syslog"
address = "127.0.0.1:{syslog}"
tls = {{ crt_file = "server.crt", key_file = "server.key" }}

[sources.agents]
type = "fluent_forward"
address = "127.0.0.1:{forward}"
tls = {{ crt_file = "server.crt", key_file = "server.key" }}

[sinks.out]
type = "file"
path = "{}"
inputs = ["syslog", "agents"]
"#,
            out.display()
        ),
    );
    let weir = start(&p, &[]);
    listening(&[syslog, forward]);
    let conf = d.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{dir}" DefaultNetstreamDriverCAFile="{dir}/ca.crt")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{rsyslog_in}")
*.* action(type="omfwd" target="127.0.0.1" port="{syslog}" protocol="tcp" StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/certvalid" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
"#,
            dir = d.display()
        ),
    )
    .unwrap();
    let _rsyslog = spawn(
        Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(d.join("rsyslog.pid")),
    );
    let mut sent = 0;
    eventually(60, "a message through rsyslog over TLS", || {
        sent += 1;
        let status = Command::new("logger")
            .args(["-d", "-n", "127.0.0.1", "-P", &rsyslog_in.to_string()])
            .args(["-t", "tls-test"])
            .arg(format!("over gtls {sent}"))
            .status()
            .unwrap();
        assert!(status.success());
        std::thread::sleep(Duration::from_millis(200));
        events_in(&out).iter().any(|e| e["appname"] == "tls-test")
    });

    let node = format!(
        r#"
const fs = require("fs");
const logger = require("fluent-logger");
const s = logger.createFluentSender("node", {{
  host: "127.0.0.1", port: {forward}, requireAckResponse: true, ackResponseTimeout: 10000,
  tls: true, tlsOptions: {{ ca: fs.readFileSync("{ca}") }},
}});
s.emit("tls", {{ message: "fluent-logger over tls" }}, (err) => {{
  if (err) {{ console.error(err); process.exit(1); }}
  s.end();
  console.log("ok");
}});
"#,
        ca = d.join("ca.crt").display()
    );
    let node = Command::new("node")
        .arg("-e")
        .arg(&node)
        .env("NODE_PATH", repo().join("target/tools/npm/node_modules"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&node.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&node.stderr)
    );
    eventually(10, "the fluent-logger event", || {
        events_in(&out)
            .iter()
            .any(|e| e["message"] == "fluent-logger over tls" && e["tag"] == "node.tls")
    });
    stop(weir);
}
