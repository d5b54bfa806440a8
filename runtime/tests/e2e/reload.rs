//! Replacing a plugin's file under a running pipeline.

use crate::common::*;
use std::io::Write;
use std::path::Path;

/// Numbered JSON lines `{"i": n}` written to weir's stdin as the test goes.
struct Feed {
    stdin: Option<std::process::ChildStdin>,
    next: usize,
}

impl Feed {
    fn new(child: &mut std::process::Child) -> Self {
        Feed {
            stdin: child.stdin.take(),
            next: 0,
        }
    }

    fn send(&mut self, n: usize) {
        let lines: String = (self.next..self.next + n)
            .map(|i| format!("{{\"i\":{i}}}\n"))
            .collect();
        self.stdin
            .as_mut()
            .expect("open")
            .write_all(lines.as_bytes())
            .unwrap();
        self.next += n;
    }

    /// Keeps a few events a tick flowing until `cond` holds.
    fn until(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        eventually(30, what, || {
            self.send(25);
            std::thread::sleep(std::time::Duration::from_millis(10));
            cond()
        });
    }

    /// Keeps events flowing for about `ms` milliseconds.
    fn for_ms(&mut self, ms: u64) {
        for _ in 0..ms / 10 {
            self.send(25);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Closes stdin: the source ends and the pipeline drains.
    fn close(&mut self) -> usize {
        self.stdin = None;
        self.next
    }
}

fn versions(out: &Path) -> Vec<(i64, i64)> {
    std::fs::read(out)
        .map(|b| {
            json_lines(&b)
                .iter()
                .map(|e| (e["i"].as_i64().unwrap(), e["version"].as_i64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn hot_swaps_process_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("tag.wasm");
    let (v1, v2) = (
        std::fs::read(plugin("hostile")).unwrap(),
        std::fs::read(plugin("hostile_v2")).unwrap(),
    );
    std::fs::write(&live, &v1).unwrap();
    let p = pipeline(
        dir.path(),
        r#"
[settings]
batch_size = 100

[sources.in]
type = "stdin"

[transforms.tag]
type = "wasm"
inputs = ["in"]
plugin = "tag.wasm"

[sinks.out]
type = "file"
path = "out.jsonl"
inputs = ["tag"]
"#,
    );
    let out_file = dir.path().join("out.jsonl");
    let mut child = start(&p, &[]);
    let mut feed = Feed::new(&mut child);
    let last_version = || versions(&out_file).last().map(|(_, v)| *v);
    let atomic_write = |bytes: &[u8]| {
        let tmp = dir.path().join("tag.wasm.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &live).unwrap();
    };

    feed.until("version 1", || last_version() == Some(1));
    atomic_write(&v2); // a deploy by rename
    feed.until("version 2", || last_version() == Some(2));
    std::fs::write(&live, &v1).unwrap(); // a write in place
    feed.until("version 1 again", || last_version() == Some(1));
    atomic_write(b"not a component"); // a broken build: the old one stays
    feed.for_ms(400);
    atomic_write(&v2);
    feed.until("version 2 again", || last_version() == Some(2));
    feed.send(1000);
    let next = feed.close();

    let out = wait_output(child, 60);
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = versions(&out_file);
    let mut is: Vec<i64> = seen.iter().map(|(i, _)| *i).collect();
    assert_eq!(is.len(), next, "every event came out once");
    is.sort();
    assert!(
        is.iter().enumerate().all(|(k, i)| *i == k as i64),
        "no event lost or doubled"
    );
    // One worker keeps order, so each version is one unbroken run: 1, 2, 1, 2.
    let mut runs: Vec<i64> = seen.iter().map(|(_, v)| *v).collect();
    runs.dedup();
    assert_eq!(runs, [1, 2, 1, 2]);
    let err = stderr(&out);
    assert!(
        err.contains("reload failed, the running version stays"),
        "{err}"
    );
    assert!(err.contains("not a loadable Wasm component"), "{err}");
    assert!(err.contains("reload=3 reload_failed="), "{err}");
}

fn pipeline_text(plugin: &str, extra_sink: bool, typo: bool) -> String {
    let mut t = format!(
        r#"
[settings]
batch_size = 50

[sources.in]
type = "stdin"

[transforms.tag]
type = "wasm"
inputs = ["{}"]
plugin = "{plugin}"

[sinks.out]
type = "file"
path = "out.jsonl"
inputs = ["tag"]

[sinks.raw]
type = "file"
path = "raw.jsonl"
inputs = ["in"]
"#,
        if typo { "inn" } else { "in" }
    );
    if extra_sink {
        t.push_str(
            "\n[sinks.extra]\ntype = \"file\"\npath = \"extra.jsonl\"\ninputs = [\"tag\"]\n",
        );
    }
    t
}

/// Streams numbered events while the pipeline file changes under weir.
fn reload_pipeline(watch: bool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin("hostile"), dir.path().join("v1.wasm")).unwrap();
    std::fs::copy(plugin("hostile_v2"), dir.path().join("v2.wasm")).unwrap();
    let p = dir.path().join("pipeline.toml");
    std::fs::write(&p, pipeline_text("v1.wasm", false, false)).unwrap();
    let mut child = start(&p, if watch { &["--watch"] } else { &[] });
    let mut feed = Feed::new(&mut child);
    let out_file = dir.path().join("out.jsonl");
    let edit = |text: String| {
        std::fs::write(&p, text).unwrap();
        if !watch {
            signal(&child, libc::SIGHUP);
        }
    };
    let last_version = || versions(&out_file).last().map(|(_, v)| *v);
    let extra = dir.path().join("extra.jsonl");

    feed.until("version 1", || last_version() == Some(1));
    edit(pipeline_text("v2.wasm", true, false)); // replace a plugin, add a sink
    feed.until("version 2 and the new sink", || {
        last_version() == Some(2) && std::fs::metadata(&extra).is_ok_and(|m| m.len() > 0)
    });
    edit(pipeline_text("v1.wasm", true, true)); // a typo: rejected
    feed.for_ms(300);
    let extra_len = || std::fs::metadata(&extra).map(|m| m.len()).unwrap_or(0);
    edit(pipeline_text("v2.wasm", false, false)); // remove the sink
    let mut before = extra_len();
    feed.until("the removed sink to stop growing", || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = extra_len();
        std::mem::replace(&mut before, now) == now
    });
    feed.send(500);
    let next = feed.close();

    let out = wait_output(child, 60);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let all: Vec<i64> = (0..next as i64).collect();
    let mut tagged: Vec<i64> = versions(&out_file).iter().map(|(i, _)| *i).collect();
    tagged.sort();
    assert_eq!(
        tagged, all,
        "through the replaced transform, every event exactly once"
    );
    let raw: Vec<i64> = json_lines(&std::fs::read(dir.path().join("raw.jsonl")).unwrap())
        .iter()
        .map(|e| e["i"].as_i64().unwrap())
        .collect();
    assert_eq!(
        raw, all,
        "the untouched sink saw every event once, in order"
    );
    assert!(
        err.contains(&format!("raw: {next} in, {next} out")),
        "the untouched sink kept running: {err}"
    );
    let extra_events = json_lines(&std::fs::read(&extra).unwrap());
    assert!(!extra_events.is_empty() && extra_events.iter().all(|e| e["version"] == 2));
    let why = if watch {
        "a change to the file"
    } else {
        "SIGHUP"
    };
    assert!(
        err.contains(&format!("pipeline reloaded after {why}: added [\"extra\"], replaced [\"tag\"], removed [], 3 kept running")),
        "{err}"
    );
    assert!(
        err.contains("rejected; the running pipeline stays as it was"),
        "{err}"
    );
    assert!(
        err.contains("no component named `inn` (did you mean `in`?)"),
        "{err}"
    );
    assert!(err.contains("removed [\"extra\"], 4 kept running"), "{err}");
}

#[test]
fn sighup_reloads_the_pipeline_keeping_what_did_not_change() {
    reload_pipeline(false);
}

#[test]
fn watch_reloads_the_pipeline_when_its_file_changes() {
    reload_pipeline(true);
}
