//! SQL over streams through the real binary: `weir sql` over files, and
//! `[queries.*]` in a running pipeline with its late-events output.

use crate::common::*;
use std::collections::BTreeMap;

/// `n` events over ~`n / 10` seconds, ten services, some errors; every
/// 50th event is two minutes old (late beyond any lateness used here).
fn events(n: usize) -> String {
    let base = 1_764_000_000i64; // seconds
    (0..n)
        .map(|i| {
            let mut t = base * 1000 + (i as i64) * 100;
            if i % 50 == 49 {
                t -= 120_000;
            }
            let level = if i % 7 == 0 { "error" } else { "info" };
            format!(
                "{{\"timestamp\":{t},\"service\":\"svc{}\",\"level\":\"{level}\",\"latency_ms\":{}}}\n",
                i % 10,
                (i * 37) % 500
            )
        })
        .collect()
}

/// Errors per (10-second window, service) computed from the lines, with
/// the same lateness rule (no lateness allowed).
fn expected(text: &str) -> (BTreeMap<(i64, String), i64>, usize) {
    let mut want = BTreeMap::new();
    let (mut max, mut late) = (i64::MIN, 0);
    for line in text.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = e["timestamp"].as_i64().unwrap();
        let start = t - t.rem_euclid(10_000);
        if start + 10_000 <= max {
            late += 1;
            continue;
        }
        max = max.max(t);
        if e["level"] == "error" {
            *want
                .entry((start, e["service"].as_str().unwrap().to_string()))
                .or_insert(0) += 1;
        }
    }
    (want, late)
}

const ERRORS_SQL: &str = "SELECT window_start, service, count(*) AS errors FROM events \
     WHERE level = 'error' GROUP BY tumble(interval '10 seconds'), service";

#[test]
fn weir_sql_counts_windows_over_files_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let text = events(5_000);
    // Two files, read in order as one stream.
    let (a, b) = text.split_at(text.match_indices('\n').nth(2_499).unwrap().0 + 1);
    std::fs::write(dir.path().join("a.log"), a).unwrap();
    std::fs::write(dir.path().join("b.log"), b).unwrap();
    let out = run(
        weir()
            .args(["sql", ERRORS_SQL, "--output", "json"])
            .arg(dir.path().join("a.log"))
            .arg(dir.path().join("b.log")),
        b"",
        120,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let mut got = BTreeMap::new();
    for row in json_lines(&out.stdout) {
        let start = chrono_ms(row["window_start"].as_str().unwrap());
        got.insert(
            (start, row["service"].as_str().unwrap().to_string()),
            row["errors"].as_i64().unwrap(),
        );
    }
    let (want, late) = expected(&text);
    assert_eq!(got, want);
    assert!(late > 0);
    assert!(
        stderr(&out).contains(&format!("5000 events, {} rows, {late} late", want.len())),
        "{}",
        stderr(&out)
    );

    // The same query as CSV and as a table.
    let csv = run(
        weir()
            .args(["sql", ERRORS_SQL, "-o", "csv"])
            .arg(dir.path().join("a.log")),
        b"",
        120,
    );
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(csv.starts_with("window_start,service,errors\n"), "{csv}");
    let table = run(weir().args(["sql", "SELECT count(*) AS n, max(latency_ms) AS m FROM events GROUP BY tumble(interval '1 day')"]).arg(dir.path().join("a.log")), b"", 120);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("| n ") && table.contains("| 499 "),
        "{table}"
    );
}

/// Milliseconds since the epoch of an RFC 3339 time with milliseconds.
fn chrono_ms(s: &str) -> i64 {
    let t = chrono::DateTime::parse_from_rfc3339(s).unwrap();
    t.timestamp_millis()
}

#[test]
fn weir_sql_explains_what_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.log");
    std::fs::write(&file, "{\"a\":1}\n{\"a\":\"two\"}\nnot json\n").unwrap();
    let out = run(
        weir()
            .args(["sql", "SELECT a, count(*) FROM events GROUP BY a"])
            .arg(&file),
        b"",
        60,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("needs a window"), "{}", stderr(&out));
    // Inferred, `a` is text (1 and "two" disagree): comparing it with a
    // number fails on "two" alone, which is left out and said.
    let out = run(
        weir()
            .args([
                "sql",
                "SELECT a FROM events WHERE a > 0",
                "--output",
                "json",
            ])
            .arg(&file),
        b"",
        60,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&out.stdout), [serde_json::json!({"a": "1"})]);
    let err = stderr(&out);
    assert!(
        err.contains("1 events could not be evaluated and were left out, first: ")
            && err.contains("Cannot cast string 'two'"),
        "{err}"
    );
    // Declared, "two" is a misfit: NULL, counted and described.
    let out = run(
        weir()
            .args([
                "sql",
                "SELECT a FROM events WHERE a > 0",
                "--schema",
                "a=int",
                "-o",
                "json",
            ])
            .arg(&file),
        b"",
        60,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&out.stdout), [serde_json::json!({"a": 1})]);
    let err = stderr(&out);
    assert!(err.contains("1 lines could not be decoded"), "{err}");
    assert!(err.contains("1 values did not fit the schema"), "{err}");
    assert!(err.contains("`a` is string (\"two\")"), "{err}");
}

#[test]
fn a_pipeline_query_emits_closed_windows_and_routes_late_events() {
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join("rows.jsonl");
    let late = dir.path().join("late.jsonl");
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[sources.app]
type = "stdin"

[queries.errors]
inputs = ["app"]
sql = "{ERRORS_SQL}"
schema = {{ service = "string", level = "string" }}

[sinks.rows]
type = "file"
path = "{}"
inputs = ["errors"]

[sinks.late]
type = "file"
path = "{}"
inputs = ["errors.late"]
"#,
            rows.display(),
            late.display()
        )
        .replace("FROM events", "FROM app"),
    );
    let text = events(3_000);
    let out = run(weir().args(["run", "-c"]).arg(&p), text.as_bytes(), 120);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut got = BTreeMap::new();
    for row in json_lines(&std::fs::read(&rows).unwrap()) {
        let start = chrono_ms(row["window_start"].as_str().unwrap());
        let prev = got.insert(
            (start, row["service"].as_str().unwrap().to_string()),
            row["errors"].as_i64().unwrap(),
        );
        assert!(prev.is_none(), "each window is emitted once: {row}");
    }
    let (want, want_late) = expected(&text);
    assert_eq!(got, want);
    let late_events = json_lines(&std::fs::read(&late).unwrap());
    assert_eq!(late_events.len(), want_late);
    assert!(
        late_events.iter().all(|e| e["service"].is_string()),
        "late events leave unchanged"
    );
    assert!(
        stderr(&out).contains(&format!("(late={want_late})")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_points_at_the_queries_and_sinks_that_are_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        r#"
[sources.app]
type = "generator"
count = 1

[queries.bad]
inputs = ["app"]
allowed_lateness = "5 fortnights"
sql = "SELECT count(*) FROM app GROUP BY tumble(interval '1 minute')"

[queries.worse]
inputs = ["app"]
schema = { service = "string" }
sql = "SELECT service, count(*) FROM app GROUP BY service"

[sinks.out]
type = "blackhole"
inputs = ["bad", "worse", "worse.late"]

[sinks.metrics]
type = "prometheus_exporter"
inputs = ["bad"]
expire_after = "5 mins ago"
address = "localhost"
"#,
    );
    let out = run(weir().args(["validate", "-c"]).arg(&p), b"", 60);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "pipeline.toml:8: [queries.bad] allowed_lateness: `5 fortnights` is not a duration"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "pipeline.toml:14: [queries.worse] sql: an aggregate over a stream needs a window"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "pipeline.toml:23: [sinks.metrics] expire_after: `5 mins ago` is not a duration"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "pipeline.toml:24: [sinks.metrics] address: `localhost` is not a host:port address"
        ),
        "{err}"
    );
}

#[test]
fn a_live_query_attaches_streams_windows_and_detaches() {
    use std::io::{BufRead, Write};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let all = dir.path().join("all.jsonl");
    let p = pipeline(
        dir.path(),
        &format!(
            "[api]\naddress = \"127.0.0.1:{port}\"\n\n[sources.app]\ntype = \"stdin\"\n\n[sinks.all]\ntype = \"file\"\npath = \"{}\"\ninputs = [\"app\"]\n",
            all.display()
        ),
    );
    let mut pipeline = start(&p, &[]);
    eventually(60, "the admin API", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    let url = format!("http://127.0.0.1:{port}");
    let mut live = weir()
        .args(["sql", "--live", &url])
        .arg("SELECT window_start, count(*) AS n FROM app GROUP BY tumble(interval '10 seconds')")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (err_tx, err_rx) = mpsc::channel();
    let err = live.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    let attached = err_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the live client starts");
    assert!(attached.starts_with("attached to"), "{attached}");
    let (row_tx, row_rx) = mpsc::channel();
    let out = live.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = row_tx.send(line);
        }
    });

    // Three windows of 10 events, then one event that closes them.
    let mut stdin = pipeline.stdin.take().unwrap();
    let base = 1_764_000_000_000i64;
    let mut feed = String::new();
    for s in 0..30 {
        feed.push_str(&format!(
            "{{\"timestamp\":{},\"s\":{s}}}\n",
            base + s * 1000
        ));
    }
    feed.push_str(&format!("{{\"timestamp\":{}}}\n", base + 35_000));
    stdin.write_all(feed.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let rows: Vec<serde_json::Value> = (0..3)
        .map(|_| {
            let line = row_rx
                .recv_timeout(Duration::from_secs(60))
                .expect("a row per closed window");
            serde_json::from_str(&line).unwrap()
        })
        .collect();
    assert!(rows.iter().all(|r| r["n"] == 10), "{rows:?}");

    // Detach; the pipeline goes on untouched.
    signal(&live, libc::SIGINT);
    let _ = wait_output(live, 30);
    stdin.write_all(numbered(500, |_| "").as_bytes()).unwrap();
    drop(stdin);
    let done = wait_output(pipeline, 60);
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(json_lines(&std::fs::read(&all).unwrap()).len(), 531);
    assert!(
        stderr(&done).contains("live query attached"),
        "{}",
        stderr(&done)
    );
}

/// `GET path` on loopback, the body as text.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

#[test]
fn query_rows_are_served_to_prometheus_as_labelled_gauges() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[sources.app]
type = "stdin"

[queries.errors]
inputs = ["app"]
sql = "{ERRORS_SQL}"

[sinks.metrics]
type = "prometheus_exporter"
inputs = ["errors"]
address = "127.0.0.1:{port}"
"#
        )
        .replace("FROM events", "FROM app"),
    );
    let mut child = start(&p, &[]);
    let text = events(400);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The newest closed window's errors per service, counted from the lines.
    let (want, _) = expected(&text);
    let last_closed = want.keys().map(|(s, _)| *s).max().unwrap() - 10_000;
    let mut body = String::new();
    eventually(60, "the exporter to serve the closed windows", || {
        body = http_get(port, "/metrics");
        body.contains("errors_errors{service=")
    });
    for ((start, svc), n) in &want {
        if *start == last_closed {
            let line = format!("errors_errors{{service=\"{svc}\"}} {n}.0");
            assert!(body.contains(&line), "{line} in\n{body}");
        }
    }
    assert!(body.contains("# TYPE errors_errors gauge"), "{body}");
    drop(stdin);
    let out = wait_output(child, 60);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn windows_of_an_idle_stream_close_with_the_wall_clock() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join("rows.jsonl");
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[sources.app]
type = "stdin"

[queries.per_10s]
inputs = ["app"]
sql = "SELECT window_start, count(*) AS n FROM app GROUP BY tumble(interval '10 seconds')"
idle_timeout = "1s"

[sinks.rows]
type = "file"
path = "{}"
inputs = ["per_10s"]
"#,
            rows.display()
        ),
    );
    let mut child = start(&p, &[]);
    let mut stdin = child.stdin.take().unwrap();
    let base = 1_764_000_000_000i64;
    let feed: String = (0..10)
        .map(|s| format!("{{\"timestamp\":{}}}\n", base + s * 1000))
        .collect();
    stdin.write_all(feed.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // No later event comes: the window closes once the input has idled
    // for a second, while weir keeps running.
    eventually(30, "the idle window to close", || {
        std::fs::read(&rows).is_ok_and(|b| !b.is_empty())
    });
    let got = json_lines(&std::fs::read(&rows).unwrap());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["n"], 10);
    assert!(child.try_wait().unwrap().is_none(), "still running");
    drop(stdin);
    let out = wait_output(child, 60);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json_lines(&std::fs::read(&rows).unwrap()).len(),
        1,
        "emitted once"
    );
}

/// A row the query cannot evaluate fails alone: 2 divisions by zero in
/// 1,003 events leave 1,001 counted, and the 2 go to `NAME.errors` with
/// the reason.
#[test]
fn a_division_by_zero_fails_only_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..1003)
        .map(|i| {
            let d = if i == 17 || i == 900 { 0 } else { 1 };
            format!(
                "{{\"timestamp\":{},\"i\":{i},\"d\":{d}}}\n",
                1_764_000_000_000i64 + i
            )
        })
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), text).unwrap();
    let p = pipeline(
        dir.path(),
        r#"
[sources.app]
type = "file"
path = "in.jsonl"

[queries.ratio]
inputs = ["app"]
sql = "SELECT count(*) AS n, sum(10 / d) AS s FROM events GROUP BY tumble(interval '1 minute')"

[sinks.rows]
type = "file"
path = "rows.jsonl"
inputs = ["ratio"]

[sinks.failed]
type = "file"
path = "failed.jsonl"
inputs = ["ratio.errors"]
"#,
    );
    let out = run(weir().args(["run", "-c"]).arg(&p), b"", 60);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = events_in(&dir.path().join("rows.jsonl"));
    assert_eq!(
        (rows[0]["n"].as_i64(), rows[0]["s"].as_i64()),
        (Some(1001), Some(10_010))
    );
    let failed = events_in(&dir.path().join("failed.jsonl"));
    let ids: Vec<_> = failed.iter().map(|e| e["i"].as_i64().unwrap()).collect();
    assert_eq!(ids, [17, 900]);
    let why = failed[0]["_error"].as_str().unwrap();
    assert!(
        why.starts_with("query `ratio`:") && why.to_lowercase().contains("divide by zero"),
        "{why}"
    );
    assert!(stderr(&out).contains("eval_error=2"), "{}", stderr(&out));
}
