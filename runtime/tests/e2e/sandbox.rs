//! Plugins that misbehave hurt only the events they failed on: a batch
//! whose call fails is run again in halves until the bad events are alone.

use crate::common::*;
use serde_json::Value;

/// Runs a pipeline around the hostile plugin and returns (out, dlq, stderr).
fn run_hostile(
    input: &str,
    plugin_settings: &str,
    extra: &str,
) -> (Vec<Value>, Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[settings]
batch_size = 100

[sources.app]
type = "file"
path = "in.jsonl"

[transforms.hostile]
type = "wasm"
inputs = ["app"]
plugin = "{{plugin:hostile}}"
{plugin_settings}

[sinks.out]
type = "file"
path = "out.jsonl"
inputs = ["hostile"]
{extra}
"#
        ),
    );
    let out = run(weir().args(["run", "-c"]).arg(&p), b"", 120);
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |f: &str| {
        std::fs::read(dir.path().join(f))
            .map(|b| json_lines(&b))
            .unwrap_or_default()
    };
    (read("out.jsonl"), read("dlq.jsonl"), stderr(&out))
}

const DLQ: &str =
    "[sinks.dlq]\ntype = \"file\"\npath = \"dlq.jsonl\"\ninputs = [\"hostile.dead_letter\"]";

fn is(e: &Value) -> i64 {
    e["i"].as_i64().unwrap()
}

#[test]
fn a_runaway_plugin_is_stopped_and_only_its_event_fails() {
    let dir = tempfile::tempdir().unwrap();
    let calm = numbered(1000, |_| "");
    std::fs::write(dir.path().join("calm.jsonl"), calm).unwrap();
    let input = numbered(3000, |k| if k == 1500 { ",\"spin\":true" } else { "" });
    let other_path = format!(
        "[sources.other]\ntype = \"file\"\npath = \"{}\"\n\n[transforms.calm]\ntype = \"wasm\"\ninputs = [\"other\"]\nplugin = \"{{plugin:level_filter}}\"\n\n[sinks.calm_out]\ntype = \"file\"\npath = \"{}\"\ninputs = [\"calm\"]\n",
        dir.path().join("calm.jsonl").display(),
        dir.path().join("calm_out.jsonl").display()
    );
    let (out, dlq, err) = run_hostile(
        &input,
        "config = { mode = \"spin\" }\ntimeout_ms = 200\non_error = \"dead_letter\"",
        &format!("{DLQ}\n{other_path}"),
    );
    // Event 1500 alone went to the dead-letter sink, not its batch.
    assert_eq!(dlq.iter().map(is).collect::<Vec<_>>(), [1500]);
    assert!(
        dlq[0]["_error"]
            .as_str()
            .unwrap()
            .contains("ran past its 200 ms deadline (timeout_ms)"),
        "{}",
        dlq[0]
    );
    // Every other event went through (rebuilt instances).
    assert_eq!(out.len(), 2999);
    assert!(out.iter().all(|e| e["version"] == 1 && is(e) != 1500));
    // The other path of the pipeline never noticed.
    let calm = json_lines(&std::fs::read(dir.path().join("calm_out.jsonl")).unwrap());
    assert_eq!(calm.len(), 1000);
    assert!(
        err.contains("hostile: 3000 in, 2999 out, 1 errors (rebuild=")
            && err.contains(" timeout=1)"),
        "{err}"
    );
}

#[test]
fn a_memory_bomb_hits_the_cap_and_the_pipeline_goes_on() {
    let input = numbered(500, |k| if k == 250 { ",\"bomb\":true" } else { "" });
    let (out, _, err) = run_hostile(
        &input,
        "config = { mode = \"bomb\" }\nmemory_limit_mb = 32",
        "",
    );
    assert_eq!(out.len(), 500, "on_error = pass keeps every event");
    let failed: Vec<_> = out.iter().filter(|e| e.get("_error").is_some()).collect();
    assert_eq!(failed.iter().map(|e| is(e)).collect::<Vec<_>>(), [250]);
    assert!(
        failed[0]["_error"]
            .as_str()
            .unwrap()
            .contains("memory past 32 MiB (memory_limit_mb)"),
        "{}",
        failed[0]
    );
    assert!(err.contains("(memory=1 rebuild="), "{err}");
}

#[test]
fn planted_panics_fail_only_their_events() {
    let (out, dlq, err) = run_hostile(
        &numbered(5000, |_| ""),
        "config = { mode = \"trap\", n = 1000 }\non_error = \"dead_letter\"",
        DLQ,
    );
    assert_eq!((out.len(), dlq.len()), (4995, 5));
    for e in &dlq {
        assert_eq!(is(e) % 1000, 999, "only i = 999, 1999, ... fail");
        assert!(
            e["_error"].as_str().unwrap().contains("plugin trapped"),
            "{e}"
        );
    }
    // Every other event of the batches that trapped went through.
    let mut kept: Vec<i64> = out.iter().map(is).collect();
    kept.sort();
    assert!(kept.iter().all(|i| i % 1000 != 999) && kept.len() == 4995);
    assert!(err.contains(" trap=5)"), "{err}");

    // `drop`: the five events are dropped, counted, and nothing else is.
    let (out, dlq, err) = run_hostile(
        &numbered(5000, |_| ""),
        "config = { mode = \"trap\", n = 1000 }\non_error = \"drop\"",
        "",
    );
    assert_eq!((out.len(), dlq.len()), (4995, 0));
    assert!(out.iter().all(|e| is(e) % 1000 != 999));
    assert!(err.contains("5 errors, 5 dropped on error"), "{err}");
}

#[test]
fn per_event_errors_follow_on_error() {
    let (out, dlq, err) = run_hostile(
        &numbered(5000, |_| ""),
        "config = { mode = \"error\", n = 100 }\non_error = \"drop\"",
        "",
    );
    assert_eq!((out.len(), dlq.len()), (4950, 0));
    assert!(out.iter().all(|e| is(e) % 100 != 0));
    assert!(
        err.contains("50 errors, 50 dropped on error (event_error=50)"),
        "{err}"
    );

    let (out, dlq, _) = run_hostile(
        &numbered(5000, |_| ""),
        "config = { mode = \"error\", n = 100 }\non_error = \"dead_letter\"",
        DLQ,
    );
    assert_eq!((out.len(), dlq.len()), (4950, 50));
    assert_eq!(
        dlq[0]["_error"],
        "plugin `hostile`: planted error at event 0"
    );
}

#[test]
fn plugins_reach_files_and_sockets_only_when_granted() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "s3cret").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (out, _, err) = run_hostile(
        &numbered(3, |_| ""),
        &format!(
            "config = {{ mode = \"probe\", path = \"{}\", addr = \"{addr}\" }}",
            secret.display()
        ),
        "",
    );
    assert_eq!(out.len(), 3, "{err}");
    for e in &out {
        assert!(e.get("_error").is_none(), "the sandbox leaked: {e}");
        let probe = e["probe"].as_str().unwrap();
        assert!(
            probe.starts_with("file: ") && probe.contains("; net: "),
            "{probe}"
        );
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a plugin connected"
    );

    // What the pipeline grants, the plugin gets: a directory to read, an
    // address to connect to (the probe reports success as a breach).
    let probe = format!(
        "config = {{ mode = \"probe\", path = \"{}\", addr = \"{addr}\" }}",
        secret.display()
    );
    let (out, _, _) = run_hostile(
        &numbered(1, |_| ""),
        &format!("{probe}\nallow_read = [\"{}\"]", dir.path().display()),
        "",
    );
    assert!(
        out[0]["_error"]
            .as_str()
            .unwrap()
            .contains("sandbox breach: read"),
        "{}",
        out[0]
    );
    let (out, _, _) = run_hostile(
        &numbered(1, |_| ""),
        &format!("{probe}\nallow_connect = [\"{addr}\"]"),
        "",
    );
    assert!(
        out[0]["_error"]
            .as_str()
            .unwrap()
            .contains("sandbox breach: connected"),
        "{}",
        out[0]
    );
    listener.set_nonblocking(false).unwrap();
    assert!(listener.accept().is_ok(), "the granted connection arrived");
}
