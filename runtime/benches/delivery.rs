//! What delivery guarantees cost, against the same pipeline without them,
//! in the same run: a file read into a blackhole with checkpoints on and
//! off, and a file sink behind a disk buffer against a memory buffer.
//!
//! `cargo bench -p weir --bench delivery`. The whole pipeline in this
//! process (every thread); medians of 5 interleaved runs of ~200-byte JSON log lines.
//! `WEIR_BENCH_EVENTS` sets the count.

mod common;

use std::path::Path;
use std::time::Instant;
use weir::config::Pipeline;
use weir::plugin::PluginEngine;

const RUNS: usize = 5;

/// CPU time of this process (all threads), in seconds.
fn process_cpu() -> f64 {
    common::process_cpu(std::process::id())
}

/// Runs the pipeline `text` to its end once: (wall, CPU) seconds.
fn run_once(dir: &Path, engine: &PluginEngine, text: &str, i: usize) -> (f64, f64) {
    let data = dir.join(format!("data-{}", rand_suffix(i)));
    let text = text.replace("DATA", &data.display().to_string());
    let p = Pipeline::parse(&dir.join("pipeline.toml"), &text).unwrap();
    let built = weir::topology::build(&p, engine).unwrap();
    // What earlier runs left for the disk to write is written first, so
    // that it does not slow this run down.
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    let (wall, cpu) = (Instant::now(), process_cpu());
    built.start().wait();
    let t = (wall.elapsed().as_secs_f64(), process_cpu() - cpu);
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(dir.join("out.jsonl"));
    t
}

/// Median (wall, CPU) seconds of each pipeline, the runs interleaved so
/// that whatever else the machine does falls on all of them alike.
fn run_all(dir: &Path, texts: &[&str]) -> Vec<(f64, f64)> {
    let engine = PluginEngine::new(None).unwrap();
    let mut times = vec![Vec::new(); texts.len()];
    for i in 0..RUNS {
        for (t, text) in texts.iter().enumerate() {
            times[t].push(run_once(dir, &engine, text, i * texts.len() + t));
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(|a, b| a.0.total_cmp(&b.0));
            t[RUNS / 2]
        })
        .collect()
}

fn rand_suffix(i: usize) -> String {
    format!("{}-{i}", std::process::id())
}

fn main() {
    let n: usize = std::env::var("WEIR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, common::lines(n, 42)).unwrap();
    let source = |checkpoint: bool| {
        format!(
            "[settings]\ndata_dir = \"DATA\"\n\n[sources.app]\ntype = \"file\"\npath = \"{}\"\ncheckpoint = {checkpoint}\n\n",
            input.display()
        )
    };
    let sink = |kind: &str, buffer: &str| {
        let path = dir.path().join("out.jsonl");
        format!(
            "[sinks.out]\ntype = \"{kind}\"\ninputs = [\"app\"]\n{}{buffer}\n",
            if kind == "file" {
                format!("path = \"{}\"\n", path.display())
            } else {
                String::new()
            }
        )
    };
    let disk = "buffer = { type = \"disk\", max_size = \"8GiB\" }";
    println!("weir delivery bench: {n} JSON log lines of ~200 bytes, median of {RUNS} interleaved runs, whole process");
    println!(
        "\n{:<52}{:>14}{:>14}{:>10}",
        "pipeline", "events/s", "events/cpu-s", "cost"
    );
    let cases = [
        (
            "file -> blackhole, checkpoints off",
            source(false) + &sink("blackhole", ""),
            None,
        ),
        (
            "file -> blackhole, checkpoints on",
            source(true) + &sink("blackhole", ""),
            Some(0),
        ),
        (
            "file -> file sink, memory buffer",
            source(false) + &sink("file", ""),
            None,
        ),
        (
            "file -> file sink, disk buffer",
            source(false) + &sink("file", disk),
            Some(2),
        ),
    ];
    let texts: Vec<&str> = cases.iter().map(|c| c.1.as_str()).collect();
    let results = run_all(dir.path(), &texts);
    for ((name, _, baseline), &(wall, cpu)) in cases.iter().zip(&results) {
        let cost = baseline.map_or(String::new(), |b: usize| {
            format!("{:+.1} %", (wall / results[b].0 - 1.0) * 100.0)
        });
        println!(
            "{name:<52}{:>14.0}{:>14.0}{cost:>10}",
            n as f64 / wall,
            n as f64 / cpu
        );
    }
    println!("\ncost: wall time against the line above it without the guarantee (targets: checkpoints < 5 %, disk buffer < 30 %)");
}
