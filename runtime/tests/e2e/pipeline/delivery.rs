//! Nothing lost, nothing duplicated without reason: weir is killed on
//! purpose (SIGKILL) while it reads files that grow and rotate, and every
//! line must come out at least once, with no more duplicates than lines
//! that were in flight (read, not yet checkpointed) at the kills.

use crate::common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every line is this long, newline included: a checkpoint's offset says
/// how many lines of a file it covers.
const LINE: u64 = 40;

fn line(i: u64) -> String {
    let head = format!("{{\"i\":{i},\"pad\":\"");
    let pad = LINE as usize - head.len() - 3;
    format!("{head}{}\"}}\n", "x".repeat(pad))
}

/// How the application rotates its log while it writes.
#[derive(Clone, Copy, PartialEq)]
enum Rotation {
    Never,
    /// Every second, by turns: renamed to `app.log.N` and a new `app.log`
    /// opened, or copied to `app.log.N` and truncated (copytruncate).
    RenameAndCopytruncate,
}

/// An application writing numbered lines to `logs/app.log` at a steady
/// rate, from a thread of its own.
struct App {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl App {
    fn start(logs: &Path, per_sec: u64, rotation: Rotation) -> App {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (s, w, logs) = (stop.clone(), written.clone(), logs.to_path_buf());
        let thread = std::thread::spawn(move || {
            let path = logs.join("app.log");
            let open = || {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap()
            };
            let mut file = open();
            let started = Instant::now();
            let (mut i, mut rotations) = (0u64, 0u32);
            while !s.load(Ordering::SeqCst) {
                let due = (started.elapsed().as_secs_f64() * per_sec as f64) as u64;
                let mut chunk = String::new();
                while i < due {
                    chunk.push_str(&line(i));
                    i += 1;
                }
                file.write_all(chunk.as_bytes()).unwrap();
                w.store(i, Ordering::SeqCst);
                if rotation == Rotation::RenameAndCopytruncate
                    && started.elapsed() > Duration::from_secs(rotations as u64 + 1)
                {
                    rotations += 1;
                    let rotated = logs.join(format!("app.log.{rotations}"));
                    if rotations % 2 == 1 {
                        std::fs::rename(&path, &rotated).unwrap();
                        file = open();
                    } else {
                        std::fs::copy(&path, &rotated).unwrap();
                        file.set_len(0).unwrap();
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        App {
            stop,
            written,
            thread,
        }
    }

    /// Stops writing; the number of lines written.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        self.written.load(Ordering::SeqCst)
    }
}

/// Starts weir with its log appended to `log`.
fn spawn(pipeline: &Path, log: &Path) -> Child {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    weir()
        .args(["run", "-c"])
        .arg(pipeline)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn weir")
}

/// How often each `i` came out in the JSON lines of `path`.
fn counts(path: &Path) -> BTreeMap<u64, u32> {
    let mut seen = BTreeMap::new();
    for e in events_in(path) {
        if let Some(i) = e["i"].as_u64() {
            *seen.entry(i).or_default() += 1;
        }
    }
    seen
}

/// How often each `i` was posted (as JSON arrays) to `receiver`.
fn posted(receiver: &Recorder) -> BTreeMap<u64, u32> {
    let mut seen = BTreeMap::new();
    for r in receiver.received() {
        for e in r.body.as_array().into_iter().flatten() {
            *seen.entry(e["i"].as_u64().unwrap()).or_insert(0u32) += 1;
        }
    }
    seen
}

/// The numbers below `n` that never came out, and the duplicates.
fn missing_and_duplicates(seen: &BTreeMap<u64, u32>, n: u64) -> (Vec<u64>, u64) {
    let missing = (0..n).filter(|i| !seen.contains_key(i)).collect();
    let dups = seen.values().map(|&c| u64::from(c) - 1).sum();
    (missing, dups)
}

/// Waits (up to a minute) until every line below `n` is in `out`; the
/// missing ones and the duplicates then.
fn all_of(out: &Path, n: u64) -> (Vec<u64>, u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (missing, dups) = missing_and_duplicates(&counts(out), n);
        if missing.is_empty() || Instant::now() > deadline {
            return (missing, dups);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The offset checkpointed for `app.log` (0 before the first save).
fn checkpointed(data: &Path) -> u64 {
    let path = data.join("checkpoints/app.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return 0;
    };
    let saved: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    saved["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path"].as_str().unwrap().ends_with("app.log"))
        .map(|f| f["offset"].as_u64().unwrap())
        .max()
        .unwrap_or(0)
}

/// A small deterministic generator for the kill points (the seed is printed).
fn kill_points(n: usize) -> Vec<Duration> {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill points seeded with {x}");
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_millis(300 + x % 1200)
        })
        .collect()
}

fn weir_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("weir.log")).unwrap_or_default()
}

#[test]
fn sigkill_at_random_points_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, data) = (dir.path().join("logs"), dir.path().join("data"));
    std::fs::create_dir(&logs).unwrap();
    let receiver = Recorder::start(Vec::new());
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[settings]
data_dir = "{data}"
batch_size = 256
channel_capacity = 4

[sources.app]
type = "file"
path = "{logs}/*.log"
follow = true

[transforms.tag]
type = "wasm"
inputs = ["app"]
plugin = "{{plugin:hostile}}"

[queries.per_second]
inputs = ["tag"]
sql = "SELECT count(*) AS n FROM events GROUP BY tumble(interval '1 second')"

[sinks.out]
type = "file"
path = "out.jsonl"
inputs = ["tag"]

[sinks.counts]
type = "file"
path = "counts.jsonl"
inputs = ["per_second"]

[sinks.remote]
type = "http"
inputs = ["tag"]
uri = "{uri}"
encoding = "json"
buffer = {{ type = "disk", max_size = "256MiB" }}
"#,
            data = data.display(),
            logs = logs.display(),
            uri = receiver.url,
        ),
    );
    let out = dir.path().join("out.jsonl");
    let log = dir.path().join("weir.log");
    let app = App::start(&logs, 4000, Rotation::Never);
    // Lines that were out, beyond what was checkpointed, at each kill.
    let mut in_flight = 0;
    for wait in kill_points(12) {
        let child = spawn(&p, &log);
        std::thread::sleep(wait);
        signal(&child, libc::SIGKILL);
        let _ = wait_output(child, 30);
        let committed = checkpointed(&data) / LINE;
        in_flight += counts(&out)
            .range(committed..)
            .map(|(_, &c)| c as u64)
            .sum::<u64>();
        // Lines counted at an earlier kill that are still past the checkpoint
        // are counted again: the bound only grows.
    }
    let n = app.finish();
    assert!(n > 20_000, "the application wrote {n} lines");

    let child = spawn(&p, &log);
    let (missing, _) = all_of(&out, n);
    assert!(
        missing.is_empty(),
        "lost {} lines: {missing:?}",
        missing.len()
    );
    let received = || missing_and_duplicates(&posted(&receiver), n);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !received().0.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(child);
    let (missing, _) = received();
    assert!(
        missing.is_empty(),
        "the HTTP sink behind a disk buffer lost {} lines, first {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(20)],
        weir_log(dir.path())
    );

    let (missing, dups) = missing_and_duplicates(&counts(&out), n);
    eprintln!("{n} lines, 12 kills: {dups} duplicates, {in_flight} in flight at the kills");
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(
        dups <= in_flight,
        "{dups} duplicates, more than the {in_flight} lines in flight at the kills"
    );
    // The query counted every line at least once, in windows that closed.
    let counted: u64 = events_in(&dir.path().join("counts.jsonl"))
        .iter()
        .map(|r| r["n"].as_u64().unwrap())
        .sum();
    assert!(counted >= n, "the query counted {counted} of {n} lines");
    assert!(!weir_log(dir.path()).contains("\"_error\""));
}

#[test]
fn rotation_by_rename_and_copytruncate_during_kills_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, data) = (dir.path().join("logs"), dir.path().join("data"));
    std::fs::create_dir(&logs).unwrap();
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[settings]
data_dir = "{data}"

[sources.app]
type = "file"
path = "{logs}/*"
exclude = ["*.log.*"]
follow = true

[sinks.out]
type = "file"
path = "out.jsonl"
inputs = ["app"]
"#,
            data = data.display(),
            logs = logs.display(),
        ),
    );
    let out = dir.path().join("out.jsonl");
    let log = dir.path().join("weir.log");
    let app = App::start(&logs, 3000, Rotation::RenameAndCopytruncate);
    for wait in kill_points(10) {
        let child = spawn(&p, &log);
        std::thread::sleep(wait);
        signal(&child, libc::SIGKILL);
        let _ = wait_output(child, 30);
    }
    let n = app.finish();
    let child = spawn(&p, &log);
    let (missing, dups) = all_of(&out, n);
    stop(child);
    let rotated = std::fs::read_dir(&logs).unwrap().count() - 1;
    eprintln!("{n} lines, {rotated} rotations, 10 kills: {dups} duplicates");
    assert!(
        missing.is_empty(),
        "lost {} lines: {missing:?}\n{}",
        missing.len(),
        weir_log(dir.path())
    );
    assert!(rotated >= 5, "only {rotated} rotations");
    // Each kill replays what was read and not yet checkpointed (about a
    // quarter second's worth): far from the whole files.
    assert!(dups < n / 2, "{dups} duplicates of {n} lines");
}

#[test]
fn a_clean_stop_leaves_a_half_written_line_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let app = dir.path().join("app.log");
    std::fs::write(&app, format!("{}{}", line(0), line(1))).unwrap();
    // The writer is in the middle of line 2.
    let half = line(2);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&app)
        .unwrap()
        .write_all(&half.as_bytes()[..15])
        .unwrap();
    let p = pipeline(
        dir.path(),
        &format!(
            "[settings]\ndata_dir = \"{}\"\n\n[sources.app]\ntype = \"file\"\npath = \"app.log\"\nfollow = true\nread_from = \"end\"\n\n[sinks.out]\ntype = \"file\"\npath = \"out.jsonl\"\ninputs = [\"app\"]\n",
            data.display()
        ),
    );
    let out = dir.path().join("out.jsonl");
    // `read_from = "end"` is for files seen the first time: start over
    // with lines 0 and 1 then written after the first start.
    let child = start(&p, &[]);
    eventually(30, "the file is watched", || checkpointed(&data) > 0);
    stop(child);
    assert_eq!(
        counts(&out).len(),
        0,
        "read_from = end skips what was there"
    );

    let mut f = std::fs::OpenOptions::new().append(true).open(&app).unwrap();
    f.write_all(&half.as_bytes()[15..]).unwrap();
    f.write_all(line(3).as_bytes()).unwrap();
    f.write_all(&line(4).as_bytes()[..10]).unwrap();
    let child = start(&p, &[]);
    eventually(30, "lines 2 and 3", || counts(&out).len() == 2);
    stop(child);
    let events = events_in(&out);
    assert!(
        events.iter().all(|e| e.get("_error").is_none()),
        "a half line became an event: {events:?}"
    );

    f.write_all(&line(4).as_bytes()[10..]).unwrap();
    let child = start(&p, &[]);
    eventually(30, "line 4", || counts(&out).contains_key(&4));
    stop(child);
    let seen = counts(&out);
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [(2, 1), (3, 1), (4, 1)],
        "after clean stops, every line exactly once"
    );
}

#[test]
fn a_sink_that_is_down_holds_up_neither_the_others_nor_the_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The receiver's address, with nothing listening yet.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[settings]
data_dir = "{data}"

[sources.app]
type = "file"
path = "app.log"
follow = true

[queries.total]
inputs = ["app"]
sql = "SELECT count(*) AS n FROM events GROUP BY tumble(interval '1 second')"
idle_timeout = "1s"

[sinks.rows]
type = "file"
path = "rows.jsonl"
inputs = ["total"]

[sinks.out]
type = "file"
path = "out.jsonl"
inputs = ["app"]

[sinks.remote]
type = "http"
inputs = ["app"]
uri = "http://{addr}/hook"
encoding = "json"
buffer = {{ type = "disk", max_size = "64MiB" }}
"#,
            data = data.display(),
        ),
    );
    let n = 30_000;
    let text: String = (0..n).map(line).collect();
    std::fs::write(dir.path().join("app.log"), text).unwrap();
    let child = start(&p, &[]);
    let out = dir.path().join("out.jsonl");
    eventually(60, "every line in the file sink", || {
        counts(&out).len() == n as usize
    });
    // Event time is arrival time: the idle query closes its window.
    let rows = dir.path().join("rows.jsonl");
    let counted = || -> u64 {
        events_in(&rows)
            .iter()
            .map(|r| r["n"].as_u64().unwrap())
            .sum()
    };
    eventually(60, "the query's rows", || counted() == n);
    stop(child);

    // The receiver comes up; the next start delivers what the disk held.
    let receiver = Recorder::start_on(std::net::TcpListener::bind(addr).unwrap(), Vec::new());
    let child = start(&p, &[]);
    eventually(60, "every line at the receiver", || {
        posted(&receiver).len() == n as usize
    });
    stop(child);
    let (missing, dups) = missing_and_duplicates(&posted(&receiver), n);
    assert!(missing.is_empty(), "lost {}", missing.len());
    assert_eq!(dups, 0, "a clean stop keeps exactly what was not delivered");
    assert_eq!(
        counts(&out).len(),
        n as usize,
        "the file sink got nothing twice"
    );
}

#[test]
fn sigterm_on_stdin_sends_whole_lines_and_no_half_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        "[sources.in]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"file\"\npath = \"out.jsonl\"\ninputs = [\"in\"]\n",
    );
    let mut child = start(&p, &[]);
    let mut stdin = child.stdin.take().unwrap();
    let n = 50_000;
    let text: String = (0..n).map(line).collect();
    stdin.write_all(text.as_bytes()).unwrap();
    // A writer in the middle of a line when weir is told to stop.
    stdin.write_all(&line(n).as_bytes()[..12]).unwrap();
    stdin.flush().unwrap();
    let out = dir.path().join("out.jsonl");
    eventually(60, "the whole lines", || counts(&out).len() == n as usize);
    signal(&child, libc::SIGTERM);
    let done = wait_output(child, 60);
    drop(stdin);
    assert!(done.status.success(), "{}", stderr(&done));
    let events = events_in(&out);
    assert_eq!(events.len(), n as usize, "no event made of the half line");
    assert!(events.iter().all(|e| e.get("_error").is_none()));
    assert!(
        stderr(&done).contains("stopped in the middle of a line: its first 12 bytes were not sent"),
        "{}",
        stderr(&done)
    );
}
