//! The same keep-errors filter in four languages, the cost of metering, and
//! the pause a hot swap causes: `scripts/bench` (after `scripts/build-examples`).

mod common;

use common::{batches, cpu_now};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weir::config::OnError;
use weir::plugin::{Limits, Metering, Plugin, PluginEngine, Reply};
use weir::topology::{Output, Stats};
use weir::transforms::wasm::Worker;
use weir_layout::BatchBuf;

const EVENTS: usize = 102_400;

/// Median ns/event of calling `plugin` over `bs`, 3 runs after a warm-up.
fn ns_per_event(plugin: &Plugin, bs: &[BatchBuf]) -> f64 {
    let mut inst = plugin.instantiate().unwrap();
    let n: usize = bs.iter().map(|b| b.len()).sum();
    let mut run = || {
        let t = cpu_now();
        for b in bs {
            match inst.call(b) {
                Ok((Reply::Keep(bits), _)) => {
                    std::hint::black_box(bits);
                }
                other => panic!("unexpected reply {other:?}"),
            }
        }
        (cpu_now() - t) * 1e9 / n as f64
    };
    run();
    let mut t = [run(), run(), run()];
    t.sort_by(f64::total_cmp);
    t[1]
}

fn load(engine: &PluginEngine, path: &Path) -> Plugin {
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-examples",
        path.display()
    );
    let limits = Limits {
        timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    engine.load("keep_errors", path, vec![], limits).unwrap()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let example = |lang: &str| {
        root.join("plugins/examples")
            .join(lang)
            .join("build/keep_errors.wasm")
    };
    let cache = Some(root.join("target/bench-plugin-cache"));
    let engine = PluginEngine::new(cache.clone()).unwrap();
    let (b1024, b1) = (batches(EVENTS, 1024), batches(2048, 1));

    println!("keep-errors filter, ns per event (thread CPU time, median of 3), epoch deadline on:");
    println!("{:<12}{:>14}{:>14}", "language", "batch 1024", "batch 1");
    for lang in ["rust", "c", "js", "python"] {
        let p = load(&engine, &example(lang));
        println!(
            "{lang:<12}{:>14.0}{:>14.0}",
            ns_per_event(&p, &b1024),
            ns_per_event(&p, &b1)
        );
    }

    println!("\nstopping runaway calls, Rust filter, batch 1024:");
    let mut base = 0.0;
    for (name, m) in [
        ("no metering", Metering::None),
        ("epoch deadline", Metering::Epoch),
        ("fuel", Metering::Fuel),
    ] {
        let e = PluginEngine::with_metering(None, m).unwrap();
        let ns = ns_per_event(&load(&e, &example("rust")), &b1024);
        if m == Metering::None {
            base = ns;
        }
        println!("  {name:<16}{ns:>8.1} ns/event  ({:.2}x)", ns / base);
    }

    let test = root.join("plugins/dist/test");
    swap_pause(
        &engine,
        &test.join("hostile.wasm"),
        &test.join("hostile_v2.wasm"),
    );
}

/// A steady stream (a 64-event batch every millisecond) through one worker
/// running a pass-through plugin, swapping between its two versions 10
/// times: the longest gap between batches out, against no swaps.
fn swap_pause(engine: &PluginEngine, a: &PathBuf, b: &PathBuf) {
    let versions = [std::fs::read(a).unwrap(), std::fs::read(b).unwrap()];
    let plugin = load(engine, a);
    let stream = batches(64 * 2000, 64);
    let gap = |swaps: bool| {
        let (in_tx, in_rx) = async_channel::bounded(1024);
        let (out_tx, out_rx) = async_channel::bounded(4096);
        let (swap_tx, swap_rx) = std::sync::mpsc::channel();
        let worker = Worker::new(plugin.clone(), plugin.instantiate().unwrap(), OnError::Pass)
            .with_swaps(swap_rx);
        let out = Output::new(vec![out_tx], std::sync::Arc::new(Stats::default()));
        let w = std::thread::spawn(move || worker.run(in_rx, out, None));
        let batches = stream.clone();
        let feeder = std::thread::spawn(move || {
            for b in batches {
                in_tx.send_blocking(b.into()).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let swapper = swaps.then(|| {
            let (plugin, versions) = (plugin.clone(), versions.clone());
            std::thread::spawn(move || {
                for i in 0..10 {
                    std::thread::sleep(Duration::from_millis(150));
                    let p = plugin.reload_from(&versions[(i + 1) % 2]).unwrap();
                    let inst = p.instantiate().unwrap();
                    swap_tx.send((p, inst)).unwrap();
                }
            })
        });
        let (mut last, mut worst, mut n) = (Instant::now(), Duration::ZERO, 0);
        while let Ok(b) = out_rx.recv_blocking() {
            n += b.len();
            let now = Instant::now();
            if n > 64 * 10 {
                worst = worst.max(now - last);
            }
            last = now;
        }
        feeder.join().unwrap();
        w.join().unwrap();
        if let Some(s) = swapper {
            s.join().unwrap();
        }
        (worst, n)
    };
    let (calm, n_calm) = gap(false);
    let (swapping, n_swap) = gap(true);
    println!(
        "\nhot swap, steady stream of 64-event batches every 1 ms, 10 swaps:\n  longest gap between batches: {:.1} ms without swaps, {:.1} ms with; events out {n_calm} and {n_swap} of {}",
        calm.as_secs_f64() * 1e3,
        swapping.as_secs_f64() * 1e3,
        64 * 2000
    );
}
