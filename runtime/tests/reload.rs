//! Replacing a plugin's file under a running pipeline.

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

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
    let mut child = weir()
        .args(["run", "-c"])
        .arg(&p)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut next = 0;
    let mut send = |n: usize| {
        let lines: String = (next..next + n)
            .map(|i| format!("{{\"i\":{i}}}\n"))
            .collect();
        stdin.write_all(lines.as_bytes()).unwrap();
        next += n;
    };
    // Keeps the stream flowing until the newest output shows `version`.
    let flow_until = |send: &mut dyn FnMut(usize), version: i64| {
        eventually(30, &format!("version {version} live"), || {
            send(50);
            std::thread::sleep(std::time::Duration::from_millis(10));
            versions(&out_file)
                .last()
                .is_some_and(|(_, v)| *v == version)
        });
    };
    let atomic_write = |bytes: &[u8]| {
        let tmp = dir.path().join("tag.wasm.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &live).unwrap();
    };

    flow_until(&mut send, 1);
    atomic_write(&v2); // a deploy by rename
    flow_until(&mut send, 2);
    std::fs::write(&live, &v1).unwrap(); // a write in place
    flow_until(&mut send, 1);
    atomic_write(b"not a component"); // a broken build: the old one stays
    for _ in 0..40 {
        send(50);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    atomic_write(&v2);
    flow_until(&mut send, 2);
    send(1000);
    drop(stdin);

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
