//! The real binary running real pipelines with the bundled Wasm plugins.

mod delivery;

use crate::common::*;
use std::io::Write;

#[test]
fn quickstart_filters_parses_and_redacts_the_sample() {
    let state = tempfile::tempdir().unwrap();
    let out = run(
        weir()
            .env("WEIR_DATA_DIR", state.path())
            .args(["run", "-c"])
            .arg(repo().join("examples/quickstart/pipeline.toml")),
        b"",
        60,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let events = json_lines(&out.stdout);
    let text = String::from_utf8_lossy(&out.stdout);

    // Personal data never leaves.
    for secret in [
        "jane.doe@example.com",
        "4111 1111 1111 1111",
        "203.0.113.42",
        "hunter2",
        "2001:db8::7334",
    ] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
    assert!(text.contains("card [CARD] declined for [EMAIL]"));

    // Only warnings and errors of the app log; access lines parsed.
    let app: Vec<_> = events
        .iter()
        .filter(|e| e.get("service").is_some() && e.get("window_start").is_none())
        .collect();
    assert!(!app.is_empty());
    assert!(
        app.iter()
            .all(|e| e["level"] == "warn" || e["level"] == "error"),
        "{app:?}"
    );
    let sample = std::fs::read_to_string(repo().join("examples/quickstart/app.log")).unwrap();
    let want =
        sample.matches(r#""level":"warn""#).count() + sample.matches(r#""level":"error""#).count();
    // One of those is inside the truncated line, which fails to decode.
    assert_eq!(app.len(), want - 1);
    let access: Vec<_> = events
        .iter()
        .filter(|e| e.get("method").is_some())
        .collect();
    assert_eq!(access.len(), 4);
    assert!(access
        .iter()
        .any(|e| e["status"] == 503 && e["path"] == "/api/v1/orders/7"));

    // The broken lines are visible, with file, line and reason.
    let errors: Vec<&str> = events.iter().filter_map(|e| e["_error"].as_str()).collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors
        .iter()
        .any(|e| e.contains("app.log:21: invalid JSON: EOF while parsing")));
    assert!(errors
        .iter()
        .any(|e| e.contains("app.log:31: invalid JSON")));
    assert!(errors
        .iter()
        .any(|e| e.starts_with("plugin `access_fields`: not an access log line")));
    // What redact masked, from its own counters (host `counter-add`).
    assert!(
        stderr(&out).contains("[plugin counters: cards=1 emails=2 fields=2 ips=6]"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("console: 20 in, 20 out"),
        "{}",
        stderr(&out)
    );

    // The SQL rollup: one row per service for the sample's one minute,
    // counted from the sample independently.
    let mut rollups: Vec<(String, i64, i64)> = events
        .iter()
        .filter(|e| e.get("window_start").is_some())
        .map(|e| {
            assert_eq!(e["window_start"], "2025-11-24T16:00:00.000Z", "{e}");
            let p99 = e["p99_ms"].as_f64().unwrap();
            assert!(p99 > 0.0 && p99 < 10_000.0, "{e}");
            let svc = e["service"].as_str().unwrap().to_string();
            (
                svc,
                e["events"].as_i64().unwrap(),
                e["errors"].as_i64().unwrap(),
            )
        })
        .collect();
    rollups.sort();
    let mut want: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for line in sample.lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let w = want
            .entry(e["service"].as_str().unwrap().to_string())
            .or_default();
        w.0 += 1;
        w.1 += i64::from(e["level"] == "error");
    }
    let want: Vec<(String, i64, i64)> = want.into_iter().map(|(k, (n, e))| (k, n, e)).collect();
    assert_eq!(rollups, want);
}

#[test]
fn bad_input_is_kept_visible_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = Vec::new();
    input.extend(br#"{"level":"error","n":1}"#);
    input.push(b'\n');
    input.extend(b"{\"level\":\"error\",\"n\":\"\xff\xfe\"}\n"); // invalid UTF-8
    input.extend(b"{not json}\n");
    input.extend(format!("{{\"level\":\"error\",\"pad\":\"{}\"}}\n", "x".repeat(300)).as_bytes());
    input.extend(br#"{"n":5}"#); // no level field
    input.push(b'\n');
    input.extend(br#"{"level":"loud","n":6}"#);
    input.push(b'\n');
    input.extend(br#"{"level":"info","n":7}"#); // last line, no newline
    std::fs::write(dir.path().join("in.log"), &input).unwrap();

    let config = |on_error: &str| {
        format!(
            r#"
[sources.app]
type = "file"
path = "in.log"
max_line_bytes = 100

[transforms.errors]
type = "wasm"
inputs = ["app"]
plugin = "{{plugin:level_filter}}"
config = {{ level = "error", missing = "error" }}
on_error = "{on_error}"

[sinks.out]
type = "file"
path = "out.jsonl"
append = false
inputs = ["errors"]
"#
        )
    };

    let p = pipeline(dir.path(), &config("pass"));
    let out = run(weir().args(["run", "-c"]).arg(&p), b"", 60);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = json_lines(&std::fs::read(dir.path().join("out.jsonl")).unwrap());
    let err_of = |needle: &str| {
        events
            .iter()
            .filter_map(|e| e["_error"].as_str())
            .find(|e| e.contains(needle))
            .unwrap_or_else(|| panic!("no _error with {needle:?} in {events:#?}"))
            .to_string()
    };
    assert!(err_of("in.log:2: invalid JSON").contains("line 1 column"));
    // A decode error survives the plugin's own error on the same event.
    assert!(err_of("in.log:3: invalid JSON").ends_with("; plugin `errors`: no `level` field"));
    err_of("in.log:4: line of at least 326 bytes exceeds max_line_bytes (100)");
    let n5 = events
        .iter()
        .find(|e| e["n"] == 5)
        .expect("the event without a level");
    assert_eq!(n5["_error"], "plugin `errors`: no `level` field");
    err_of("unknown level `loud`");
    // Kept: the one real error; passed with _error: 3 decode errors (they
    // have no level) and the 2 plugin errors; filtered out: the info line.
    assert_eq!(events.len(), 6, "{events:#?}");
    assert_eq!(events[0]["n"], 1);
    assert!(!events.iter().any(|e| e["n"] == 7));
    assert!(
        stderr(&out).contains("app: 0 in, 7 out, 3 errors"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        &p,
        config("drop").replace(
            "{plugin:level_filter}",
            &plugin("level_filter").display().to_string(),
        ),
    )
    .unwrap();
    let out = run(weir().args(["run", "-c"]).arg(&p), b"", 60);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = json_lines(&std::fs::read(dir.path().join("out.jsonl")).unwrap());
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(
        stderr(&out).contains("5 errors, 5 dropped on error"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sigterm_drains_everything_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        r#"
[sources.gen]
type = "generator"

[transforms.all]
type = "wasm"
inputs = ["gen"]
plugin = "{plugin:level_filter}"
config = { level = "trace" }

[sinks.out]
type = "file"
path = "out.jsonl"
inputs = ["all"]
"#,
    );
    let child = start(&p, &[]);
    let out_file = dir.path().join("out.jsonl");
    eventually(30, "events in the sink", || {
        std::fs::metadata(&out_file)
            .map(|m| m.len() > 100_000)
            .unwrap_or(false)
    });
    signal(&child, libc::SIGTERM);
    let out = wait_output(child, 30);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let lines = std::fs::read_to_string(&out_file).unwrap();
    // Every line complete, and every event the generator made reached the file.
    let n = lines
        .lines()
        .inspect(|l| {
            assert!(
                serde_json::from_str::<serde_json::Value>(l).is_ok(),
                "partial line {l}"
            )
        })
        .count();
    assert!(lines.ends_with('\n'));
    assert!(
        err.contains(&format!("gen: 0 in, {n} out")),
        "{n} lines written; {err}"
    );
    assert!(err.contains(&format!("out: {n} in, {n} out")), "{err}");
}

#[test]
fn follows_a_growing_and_rotated_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "{\"n\":1}\n{\"n\":2}\n").unwrap();
    let p = pipeline(
        dir.path(),
        r#"
[sources.app]
type = "file"
path = "app.log"
follow = true

[sinks.out]
type = "file"
path = "out.jsonl"
inputs = ["app"]
"#,
    );
    let child = start(&p, &[]);
    let out_file = dir.path().join("out.jsonl");
    let count = || {
        std::fs::read_to_string(&out_file)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    eventually(20, "the first two lines", || count() == 2);

    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"{\"n\":3}\n{\"n\":").unwrap();
    f.flush().unwrap();
    eventually(20, "an appended line", || count() == 3);
    f.write_all(b"4}\n").unwrap(); // the rest of a line written in two parts
    drop(f);
    eventually(20, "the completed line", || count() == 4);

    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    std::fs::write(&log, "{\"n\":5}\n{\"n\":6}\n").unwrap();
    eventually(20, "lines of the new file after rotation", || count() == 6);

    signal(&child, libc::SIGTERM);
    let out = wait_output(child, 20);
    assert!(out.status.success(), "{}", stderr(&out));
    let ns: Vec<i64> = json_lines(&std::fs::read(&out_file).unwrap())
        .iter()
        .map(|e| e["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn stdin_fans_out_to_every_sink() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        r#"
[sources.in]
type = "stdin"
format = "text"

[transforms.sampled]
type = "wasm"
inputs = ["in"]
plugin = "{plugin:sample}"
config = { rate = 2, key = "message" }
workers = 2

[sinks.a]
type = "stdout"
inputs = ["sampled"]

[sinks.b]
type = "file"
path = "b.jsonl"
inputs = ["sampled", "in"]
"#,
    );
    let input: String = (0..1000).map(|i| format!("line {i}\n")).collect();
    let out = run(weir().args(["run", "-c"]).arg(&p), input.as_bytes(), 60);
    assert!(out.status.success(), "{}", stderr(&out));
    let a = json_lines(&out.stdout);
    let b = json_lines(&std::fs::read(dir.path().join("b.jsonl")).unwrap());
    // The sample plugin keys on FNV-1a of the field: the same choice here.
    let fnv = |s: &str| {
        s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let mut want: Vec<String> = (0..1000)
        .map(|i| format!("line {i}"))
        .filter(|m| fnv(m).is_multiple_of(2))
        .collect();
    want.sort();
    assert!((400..600).contains(&want.len()));
    let mut sampled: Vec<_> = a
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    sampled.sort();
    assert_eq!(sampled, want, "two workers sample exactly as one would");
    assert_eq!(
        b.len(),
        want.len() + 1000,
        "the sampled events and every raw line"
    );
    let mut in_b: Vec<_> = b
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    in_b.sort();
    for m in &sampled {
        assert!(in_b.binary_search(m).is_ok(), "{m} missing from b");
    }
}

#[test]
fn batch_timeout_holds_a_partial_batch_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        "[settings]\nbatch_timeout_ms = 60000\n\n[sources.in]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"file\"\npath = \"out.jsonl\"\ninputs = [\"in\"]\n",
    );
    let mut child = start(&p, &[]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"n\":1}\n{\"n\":2}\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out_file = dir.path().join("out.jsonl");
    let early = std::fs::read(&out_file).map(|b| b.len()).unwrap_or(0);
    assert_eq!(early, 0, "a partial batch was sent before batch_timeout_ms");
    drop(stdin); // end of input flushes what is held
    let out = wait_output(child, 30);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&std::fs::read(&out_file).unwrap()).len(), 2);
}
