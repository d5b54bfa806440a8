//! Whole-process throughput of the `weir` binary on one core and on every
//! core, for the four workloads of a log pipeline: a file read into a
//! blackhole (A), with a SQL `WHERE` filter (B), with the Wasm level filter
//! doing the same job (C), and with a tumbling-window rollup (D).
//!
//! `cargo bench -p weir --bench cores` (or `scripts/bench`). Each run is a
//! fresh `weir run` over the same generated file of ~200-byte JSON log
//! lines (`WEIR_BENCH_EVENTS`, 2,000,000 by default); its CPU time and
//! peak memory are the child's own (wait4). One core is the process pinned
//! to CPU 0 (sched_setaffinity, as `taskset -c 0`). Medians of 3
//! interleaved runs.

use rand::{rngs::SmallRng, SeedableRng};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;
use weir::sources::generator;

const RUNS: usize = 3;

/// What one finished run of the binary took.
#[derive(Clone, Copy)]
struct Took {
    wall: f64,
    cpu: f64,
    max_rss_mb: f64,
}

/// Runs `weir run -c pipeline` to its end, on CPU 0 only when `pinned`.
fn run_once(pipeline: &Path, pinned: bool) -> Took {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args(["run", "-c"])
        .arg(pipeline)
        .env("WEIR_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if pinned {
        // SAFETY: sched_setaffinity on this (forked) process only, with a
        // set built here; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                match libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
    }
    let start = Instant::now();
    // Reaped by wait4 below, which std's `Child` does not know of.
    let child = cmd.spawn().expect("spawn weir").id() as i32;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, whose pid std does not reap (the
    // `Child` is never waited on).
    let pid = unsafe { libc::wait4(child, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    assert!(pid > 0 && status == 0, "weir run failed: status {status}");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Took {
        wall,
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
        max_rss_mb: usage.ru_maxrss as f64 / 1024.0,
    }
}

fn median(mut t: Vec<Took>) -> Took {
    t.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    t[t.len() / 2]
}

fn main() {
    let n: usize = std::env::var("WEIR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let filter = root.join("plugins/dist/level_filter.wasm");
    assert!(filter.is_file(), "run scripts/build-plugins first");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    // 10,000 events per second of event time. Written a line at a time: a
    // child forked from this process starts with its resident set, which
    // would otherwise count the whole input.
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let (mut rng, mut line) = (SmallRng::seed_from_u64(42), Vec::new());
    for i in 0..n as i64 {
        line.clear();
        generator::write_line(&mut rng, 1_700_000_000_000_000_000 + i * 100_000, &mut line);
        file.write_all(&line).unwrap();
    }
    file.flush().unwrap();
    drop(file);

    let source = format!(
        "[settings]\ndata_dir = \"{}\"\n\n[sources.app]\ntype = \"file\"\npath = \"{}\"\nfollow = false\n\n",
        dir.path().join("data").display(),
        input.display()
    );
    let sink = |from: &str| format!("[sinks.out]\ntype = \"blackhole\"\ninputs = [\"{from}\"]\n");
    let query = |sql: &str| {
        format!("[queries.q]\ninputs = [\"app\"]\nsql = \"\"\"{sql}\"\"\"\n\n") + &sink("q")
    };
    let workloads = [
        ("A file -> blackhole", sink("app")),
        (
            "B + SQL WHERE level = 'error'",
            query("SELECT * FROM app WHERE level = 'error'"),
        ),
        (
            "C + level_filter.wasm (errors)",
            format!(
                "[transforms.errors]\ntype = \"wasm\"\ninputs = [\"app\"]\nplugin = \"{}\"\nconfig = {{ level = \"error\" }}\n\n",
                filter.display()
            ) + &sink("errors"),
        ),
        (
            "D + tumble(1 s), service: count, avg",
            query(
                "SELECT tumble(interval '1 second') AS w, service, count(*) AS n, avg(latency_ms) AS mean FROM app GROUP BY 1, 2",
            ),
        ),
    ];
    let files: Vec<_> = workloads
        .iter()
        .enumerate()
        .map(|(i, (_, rest))| {
            let path = dir.path().join(format!("{i}.toml"));
            std::fs::write(&path, source.clone() + rest).unwrap();
            path
        })
        .collect();

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "weir cores bench: {n} JSON log lines of ~200 bytes, whole `weir run` process, median of {RUNS} interleaved runs, 1 core vs {cores}"
    );
    // Each run on one core, then on all, every workload in turn.
    let mut times = vec![(Vec::new(), Vec::new()); files.len()];
    for _ in 0..RUNS {
        for (i, file) in files.iter().enumerate() {
            times[i].0.push(run_once(file, true));
            times[i].1.push(run_once(file, false));
        }
    }
    println!(
        "\n{:<40}{:>14}{:>14}{:>14}{:>10}{:>10}",
        "workload", "events/cpu-s", "1 core ev/s", "all ev/s", "speed-up", "max RSS"
    );
    for ((name, _), (one, all)) in workloads.iter().zip(times) {
        let (one, all) = (median(one), median(all));
        println!(
            "{name:<40}{:>14.0}{:>14.0}{:>14.0}{:>9.2}x{:>7.0} MB",
            n as f64 / all.cpu,
            n as f64 / one.wall,
            n as f64 / all.wall,
            one.wall / all.wall,
            all.max_rss_mb
        );
    }
    println!("\ntargets: >= 2 M events per CPU-second; speed-up >= 1.8x on A, C and D; B per event at least as fast as C");
}
