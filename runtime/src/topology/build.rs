//! From a parsed pipeline to running threads.
//!
//! [`build`] does everything that can fail before any event moves: resolving
//! paths, compiling plugins, instantiating and `init`ing every worker. It
//! reports every problem at once, and `weir validate` is exactly this step.

use super::edge::{Output, Rx, Shutdown, Stats, Tx};
use super::reload::Watched;
use crate::config::{
    OnError, Pipeline, Problems, SinkConfig, SourceConfig, TransformConfig, DEAD_LETTER,
};
use crate::plugin::{Limits, PluginEngine};
use crate::sources::{self, Batcher};
use crate::{sinks, transforms};
use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// A pipeline ready to start: every component checked and built.
pub struct Built {
    jobs: Vec<(String, Job)>,
    watched: Vec<Watched>,
    pub stats: Vec<(String, Arc<Stats>)>,
    pub shutdown: Shutdown,
}

/// A started pipeline.
pub struct Running {
    handles: Vec<(String, JoinHandle<()>)>,
    pub stats: Vec<(String, Arc<Stats>)>,
    pub shutdown: Shutdown,
}

pub fn build(p: &Pipeline, engine: &PluginEngine) -> Result<Built, Problems> {
    let f = &p.file;
    let cap = f.settings.channel_capacity.max(1);
    let shutdown = Shutdown::default();
    let mut problems = Vec::new();

    // One bounded input queue per consumer; producers get its sender.
    let mut inputs: HashMap<&str, (Tx, Rx)> = HashMap::new();
    let consumers = f
        .transforms
        .iter()
        .map(|(n, t)| (n.as_str(), t.inputs()))
        .chain(f.sinks.iter().map(|(n, s)| (n.as_str(), s.inputs())));
    let mut downstream: HashMap<&str, Vec<Tx>> = HashMap::new();
    for (name, ins) in consumers {
        let (tx, rx) = async_channel::bounded(cap);
        for input in ins {
            downstream
                .entry(input.as_str())
                .or_default()
                .push(tx.clone());
        }
        inputs.insert(name, (tx, rx));
    }
    let mut stats = Vec::new();
    let mut output = |name: &str| {
        let s = Arc::new(Stats::default());
        stats.push((name.to_string(), s.clone()));
        let txs = downstream.remove(name).unwrap_or_default();
        if txs.is_empty() {
            tracing::warn!(
                component = name,
                "nothing reads from this component; its events are discarded"
            );
        }
        Output::new(txs, s)
    };
    let mut jobs: Vec<(String, Job)> = Vec::new();
    let mut watched = Vec::new();

    for (name, src) in &f.sources {
        let out = output(name);
        let batch_size = f.settings.batch_size.max(1);
        let batcher = Batcher::new(out, batch_size);
        let (n, sd) = (name.clone(), shutdown.clone());
        let job: Job = match src.clone() {
            SourceConfig::File(cfg) => {
                let path = p.resolve(&cfg.path);
                if !cfg.follow && !path.is_file() {
                    problems.push(p.problem(
                        "sources",
                        name,
                        Some("path"),
                        format!(
                            "no file at {} (set `follow = true` to wait for it)",
                            path.display()
                        ),
                    ));
                }
                Box::new(move || sources::file::run(&n, &cfg, &path, batcher, sd))
            }
            SourceConfig::Stdin(cfg) => {
                Box::new(move || sources::stdin::run(&n, &cfg, batcher, sd))
            }
            SourceConfig::Generator(cfg) => {
                Box::new(move || sources::generator::run(&n, &cfg, batcher, batch_size, sd))
            }
        };
        jobs.push((name.clone(), job));
    }

    for (name, t) in &f.transforms {
        let out = output(name);
        let (_, rx) = inputs
            .get(name.as_str())
            .expect("every transform has an input queue")
            .clone();
        match t {
            TransformConfig::Wasm(w) => {
                let path = p.resolve(&w.plugin);
                if !path.is_file() {
                    problems.push(p.problem(
                        "transforms",
                        name,
                        Some("plugin"),
                        format!(
                        "no file at {} (build the bundled plugins with `scripts/build-plugins`)",
                        path.display()
                    ),
                    ));
                    continue;
                }
                let limits = Limits {
                    memory_bytes: w.memory_limit_mb.saturating_mul(1 << 20),
                    timeout: std::time::Duration::from_millis(w.timeout_ms.max(1)),
                };
                let plugin = match engine.load(name, &path, t.plugin_config(), limits) {
                    Ok(plugin) => plugin,
                    Err(e) => {
                        problems.push(p.problem(
                            "transforms",
                            name,
                            Some("plugin"),
                            format!("{e:#}"),
                        ));
                        continue;
                    }
                };
                let workers = w.workers.max(1);
                let (watch, mut swaps) = Watched::new(&plugin, workers, out.stats.clone());
                if f.settings.watch_plugins {
                    watched.push(watch);
                }
                let dead = (w.on_error == OnError::DeadLetter)
                    .then(|| output(&format!("{name}.{DEAD_LETTER}")));
                for i in 0..workers {
                    let instance = match plugin.instantiate() {
                        Ok(inst) => inst,
                        Err(e) => {
                            problems.push(p.problem(
                                "transforms",
                                name,
                                Some("config"),
                                format!("{e:#}"),
                            ));
                            break;
                        }
                    };
                    let worker =
                        transforms::wasm::Worker::new(plugin.clone(), instance, w.on_error)
                            .with_swaps(swaps.remove(0));
                    let (rx, out, dead) = (rx.clone(), out.clone(), dead.clone());
                    let job: Job = Box::new(move || worker.run(rx, out, dead));
                    jobs.push((format!("{name}#{i}"), job));
                }
            }
        }
    }

    for (name, s) in &f.sinks {
        let s_stats = Arc::new(Stats::default());
        stats.push((name.clone(), s_stats.clone()));
        let (_, rx) = inputs
            .get(name.as_str())
            .expect("every sink has an input queue")
            .clone();
        let path = match s {
            SinkConfig::File(fs) => {
                let path = p.resolve(&fs.path);
                if let Some(dir) = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
                {
                    problems.push(p.problem(
                        "sinks",
                        name,
                        Some("path"),
                        format!("directory {} does not exist", dir.display()),
                    ));
                }
                Some(path)
            }
            _ => None,
        };
        let (n, cfg, sd) = (name.clone(), s.clone(), shutdown.clone());
        let job: Job = Box::new(move || sinks::run(&n, &cfg, path.as_deref(), rx, s_stats, sd));
        jobs.push((name.clone(), job));
    }

    // The queues' own handles must go, so that each closes when its last
    // producer ends.
    drop(inputs);
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Ok(Built {
        jobs,
        watched,
        stats,
        shutdown,
    })
}

impl Built {
    /// Starts every component on its own thread.
    pub fn start(self) -> Running {
        super::reload::spawn(self.watched, self.shutdown.clone());
        let handles = self
            .jobs
            .into_iter()
            .map(|(name, job)| {
                let h = std::thread::Builder::new()
                    .name(name.clone())
                    .spawn(job)
                    .expect("spawn component thread");
                (name, h)
            })
            .collect();
        Running {
            handles,
            stats: self.stats,
            shutdown: self.shutdown,
        }
    }
}

impl Running {
    /// Waits until every component has finished (inputs ended, or shutdown
    /// triggered and everything in flight drained).
    pub fn wait(self) -> Vec<(String, Arc<Stats>)> {
        for (name, h) in self.handles {
            if h.join().is_err() {
                tracing::error!(component = %name, "component thread panicked");
            }
        }
        self.stats
    }
}
