//! From a parsed pipeline to running threads, and from one pipeline to the
//! next without stopping.
//!
//! [`build`] does everything that can fail before any event moves: resolving
//! paths, compiling plugins, instantiating and `init`ing every worker. It
//! reports every problem at once, and `weir validate` is exactly this step.
//! [`Running::reload`] does the same for only the components that are new
//! or changed, so a bad file changes nothing; then it rewires the components
//! that stay (they keep their state) and lets the replaced ones drain.

use super::edge::{Batch, Output, Rx, Shutdown, Stats, Tx, WeakOutput};
use super::reload::Watched;
use crate::alerts::Hub;
use crate::buffers::{self, BufferConfig};
use crate::component::Job;
use crate::config::{OnError, Pipeline, Problems, TransformConfig, DEAD_LETTER, ERRORS, LATE};
use crate::plugin::{Limits, PluginEngine};
use crate::sources::Batcher;
use crate::transforms;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Appended to the counters' names of a component a reload replaced.
const BEFORE_RELOAD: &str = " (before reload)";

/// What a reload needs to know of a running component.
struct Live {
    /// Its configuration (and the pipeline settings) as text: equal text,
    /// same component.
    spec: String,
    /// A consumer's input queue, for producers to be wired to. Weak, so a
    /// queue still closes when its last producer ends.
    input: Option<async_channel::WeakSender<Batch>>,
    /// A source's own stop flag.
    stop: Option<Shutdown>,
    /// Its outputs by name (`NAME`, `NAME.dead_letter`), to rewire.
    outputs: Vec<(String, WeakOutput)>,
}

/// A pipeline (or the changed part of one) ready to start.
pub struct Built {
    jobs: Vec<(String, Job)>,
    watched: Vec<Watched>,
    live: BTreeMap<String, Live>,
    /// Outputs of components that stay, with their new consumers.
    rewires: Vec<(WeakOutput, Vec<Tx>)>,
    pub stats: Vec<(String, Arc<Stats>)>,
    pub shutdown: Shutdown,
    pub alerts: Option<Arc<Hub>>,
    alerting_spec: String,
    capacity: usize,
}

/// What the admin API sees of a running pipeline, taken again after each
/// reload.
#[derive(Clone, Default)]
pub struct Snapshot {
    pub outputs: BTreeMap<String, WeakOutput>,
    pub stats: Vec<(String, Arc<Stats>)>,
    /// Each consumer's input queue (batches), and how many it holds at most.
    pub queues: Vec<(String, async_channel::WeakSender<Batch>)>,
    pub capacity: usize,
    /// Per thread: set when it has ended.
    pub done: Vec<(String, Arc<AtomicBool>)>,
}

impl Snapshot {
    /// Whether each component (by name) still has a thread running.
    pub fn components(&self) -> BTreeMap<String, bool> {
        let mut out = BTreeMap::new();
        for (thread, done) in &self.done {
            let name = thread.split('#').next().unwrap_or(thread);
            *out.entry(name.to_string()).or_insert(false) |= !done.load(Ordering::Relaxed);
        }
        out
    }
}
pub struct Running {
    handles: Vec<(String, JoinHandle<()>)>,
    /// Per thread (`NAME` or `NAME#worker`): set when it has ended.
    done: Vec<(String, Arc<AtomicBool>)>,
    capacity: usize,
    live: BTreeMap<String, Live>,
    pub stats: Vec<(String, Arc<Stats>)>,
    pub shutdown: Shutdown,
    pub alerts: Option<Arc<Hub>>,
    /// The alerting sections as started, to notice edits on reload.
    alerting_spec: String,
}

/// What a reload changed.
#[derive(Debug, Default)]
pub struct Change {
    pub added: Vec<String>,
    pub replaced: Vec<String>,
    pub removed: Vec<String>,
    pub kept: usize,
}

pub fn build(p: &Pipeline, engine: &PluginEngine) -> Result<Built, Problems> {
    let hub = crate::alerts::build(p);
    let built = build_against(
        p,
        engine,
        Shutdown::default(),
        &BTreeMap::new(),
        hub.as_ref().ok().and_then(|h| h.as_ref()),
    );
    match (built, hub) {
        (Ok(mut b), Ok(hub)) => {
            b.alerts = hub;
            b.alerting_spec = alerting_spec(p);
            Ok(b)
        }
        (Ok(_), Err(alerts)) => Err(Problems(alerts)),
        (Err(mut problems), hub) => {
            problems.0.extend(hub.err().unwrap_or_default());
            Err(problems)
        }
    }
}

fn alerting_spec(p: &Pipeline) -> String {
    let f = &p.file;
    format!(
        "{:?}{:?}{:?}{:?}",
        f.alerts, f.route, f.receivers, f.settings.data_dir
    )
}

fn specs(p: &Pipeline) -> HashMap<&str, String> {
    let f = &p.file;
    let settings = format!("{:?}", f.settings);
    let mut out = HashMap::new();
    for (n, c) in &f.sources {
        out.insert(n.as_str(), format!("{settings}{c:?}"));
    }
    for (n, c) in &f.transforms {
        out.insert(n.as_str(), format!("{settings}{c:?}"));
    }
    for (n, c) in &f.queries {
        out.insert(n.as_str(), format!("{settings}{c:?}"));
    }
    for (n, c) in &f.sinks {
        out.insert(n.as_str(), format!("{settings}{c:?}"));
    }
    out
}

/// Takes the consumers of output `name` (none if nothing reads it).
fn take(downstream: &mut HashMap<String, Vec<Tx>>, name: &str) -> Vec<Tx> {
    downstream.remove(name).unwrap_or_default()
}

/// A new output for `name` and its counters.
fn new_output(
    downstream: &mut HashMap<String, Vec<Tx>>,
    stats: &mut Vec<(String, Arc<Stats>)>,
    name: &str,
) -> Output {
    let s = Arc::new(Stats::default());
    stats.push((name.to_string(), s.clone()));
    let txs = take(downstream, name);
    if txs.is_empty() {
        tracing::warn!(
            component = name,
            "nothing reads from this component; its events are discarded"
        );
    }
    Output::new(txs, s)
}

/// Builds the components of `p` that `running` does not already run as they
/// are; the ones that stay are wired in through their queues.
fn build_against(
    p: &Pipeline,
    engine: &PluginEngine,
    shutdown: Shutdown,
    running: &BTreeMap<String, Live>,
    alerts: Option<&Arc<Hub>>,
) -> Result<Built, Problems> {
    let f = &p.file;
    let cap = f.settings.channel_capacity.max(1);
    let specs = specs(p);
    // Kept: same settings, and still running (a consumer whose producers all
    // ended has closed its queue and is rebuilt).
    let kept = |name: &str| {
        running.get(name).filter(|l| {
            Some(&l.spec) == specs.get(name)
                && l.input.as_ref().is_none_or(|w| w.upgrade().is_some())
        })
    };
    let mut problems = Vec::new();

    // Each consumer's input queue: the running one if it stays, else new.
    let mut new_queues: HashMap<String, (Tx, Rx)> = HashMap::new();
    let mut downstream: HashMap<String, Vec<Tx>> = HashMap::new();
    let consumers = f
        .transforms
        .iter()
        .map(|(n, t)| (n, t.inputs()))
        .chain(f.queries.iter().map(|(n, q)| (n, &q.inputs[..])))
        .chain(f.sinks.iter().map(|(n, s)| (n, s.inputs())));
    for (name, ins) in consumers {
        let tx = match kept(name).and_then(|l| l.input.as_ref()?.upgrade()) {
            Some(tx) => tx,
            None => {
                let (tx, rx) = async_channel::bounded(cap);
                new_queues.insert(name.clone(), (tx.clone(), rx));
                tx
            }
        };
        for input in ins {
            downstream
                .entry(input.clone())
                .or_default()
                .push(tx.clone());
        }
    }

    let mut stats = Vec::new();
    let mut jobs: Vec<(String, Job)> = Vec::new();
    let mut watched = Vec::new();
    let mut live = BTreeMap::new();
    let mut rewires = Vec::new();
    for name in p.components().map(|(_, n)| n) {
        if let Some(l) = kept(name) {
            for (out_name, out) in &l.outputs {
                rewires.push((out.clone(), take(&mut downstream, out_name)));
            }
        }
    }
    let spec = |name: &str| specs[name].clone();

    for (name, src) in f.sources.iter().filter(|(n, _)| kept(n).is_none()) {
        let out = new_output(&mut downstream, &mut stats, name);
        let outputs = vec![(name.clone(), out.downgrade())];
        let batch_size = f.settings.batch_size.max(1);
        let batcher = Batcher::new(out, batch_size).decode_threads(f.settings.decode_threads());
        let stop = shutdown.child();
        let mut cx = crate::component::BuildContext {
            pipeline: p,
            section: "sources",
            name,
            problems: &mut problems,
        };
        let Some(job) = src.source().build(&mut cx, batcher, stop.clone()) else {
            continue;
        };
        jobs.push((name.clone(), job));
        let l = Live {
            spec: spec(name),
            input: None,
            stop: Some(stop),
            outputs,
        };
        live.insert(name.clone(), l);
    }

    for (name, t) in f.transforms.iter().filter(|(n, _)| kept(n).is_none()) {
        let out = new_output(&mut downstream, &mut stats, name);
        let (tx, rx) = new_queues
            .get(name)
            .expect("a new transform has a new queue")
            .clone();
        let TransformConfig::Wasm(w) = t;
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
        let limits = match limits(p, w) {
            Ok(l) => l,
            Err(msg) => {
                problems.push(p.problem("transforms", name, Some("allow_connect"), msg));
                continue;
            }
        };
        let plugin = match engine.load(name, &path, t.plugin_config(), limits) {
            Ok(plugin) => plugin,
            Err(e) => {
                problems.push(p.problem("transforms", name, Some("plugin"), format!("{e:#}")));
                continue;
            }
        };
        let _ = out.stats.plugin_counters.set(plugin.counters.clone());
        let workers = w.workers.max(1);
        let (watch, mut swaps) = Watched::new(&plugin, workers, out.stats.clone());
        if f.settings.watch_plugins {
            watched.push(watch);
        }
        let mut outputs = vec![(name.clone(), out.downgrade())];
        let dead = (w.on_error == OnError::DeadLetter).then(|| {
            let dead_name = format!("{name}.{DEAD_LETTER}");
            let d = new_output(&mut downstream, &mut stats, &dead_name);
            outputs.push((dead_name, d.downgrade()));
            d
        });
        for i in 0..workers {
            let instance = match plugin.instantiate() {
                Ok(inst) => inst,
                Err(e) => {
                    problems.push(p.problem("transforms", name, Some("config"), format!("{e:#}")));
                    break;
                }
            };
            let worker = transforms::wasm::Worker::new(plugin.clone(), instance, w.on_error)
                .with_swaps(swaps.remove(0));
            let (rx, out, dead) = (rx.clone(), out.clone(), dead.clone());
            let job: Job = Box::new(move || worker.run(rx, out, dead));
            jobs.push((format!("{name}#{i}"), job));
        }
        let l = Live {
            spec: spec(name),
            input: Some(tx.downgrade()),
            stop: None,
            outputs,
        };
        live.insert(name.clone(), l);
    }

    for (name, q) in f.queries.iter().filter(|(n, _)| kept(n).is_none()) {
        let mut query = match crate::sql::build(p, name, q) {
            Ok(job) => job,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        if let Some(hub) = alerts {
            match hub.attach(p, name, &query.query) {
                Ok(evaluator) => query.alerts = evaluator,
                Err(found) => problems.extend(found),
            }
        }
        let out = new_output(&mut downstream, &mut stats, name);
        let (tx, rx) = new_queues
            .get(name)
            .expect("a new query has a new queue")
            .clone();
        let mut outputs = vec![(name.clone(), out.downgrade())];
        // Always there (late and failed events are counted even when
        // nothing reads them), so a reload can wire a reader to a query
        // that stays.
        let mut side = |output: &str| {
            let side_name = format!("{name}.{output}");
            let side_stats = Arc::new(Stats::default());
            stats.push((side_name.clone(), side_stats.clone()));
            let o = Output::new(take(&mut downstream, &side_name), side_stats);
            outputs.push((side_name, o.downgrade()));
            o
        };
        let sides = crate::sql::Sides {
            late: side(LATE),
            errors: side(ERRORS),
        };
        let n = name.clone();
        let job: Job = Box::new(move || crate::sql::run(&n, query, rx, out, sides));
        jobs.push((name.clone(), job));
        let l = Live {
            spec: spec(name),
            input: Some(tx.downgrade()),
            stop: None,
            outputs,
        };
        live.insert(name.clone(), l);
    }

    for (name, s) in f.sinks.iter().filter(|(n, _)| kept(n).is_none()) {
        let s_stats = Arc::new(Stats::default());
        stats.push((name.clone(), s_stats.clone()));
        let (tx, rx) = new_queues
            .get(name)
            .expect("a new sink has a new queue")
            .clone();
        let mut cx = crate::component::BuildContext {
            pipeline: p,
            section: "sinks",
            name,
            problems: &mut problems,
        };
        let Some(sink) = s.build(&mut cx) else {
            continue;
        };
        let sd = shutdown.clone();
        let job: Job = match s.buffer().clone() {
            BufferConfig::Memory => Box::new(move || sink(rx, s_stats, sd)),
            BufferConfig::Disk(d) => {
                if d.max_size.0 == 0 {
                    problems.push(p.problem(
                        "sinks",
                        name,
                        Some("buffer"),
                        "max_size must be more than 0",
                    ));
                }
                let (n, dir) = (name.clone(), p.state_path("buffers", name));
                Box::new(move || {
                    let (stats, stop) = (s_stats.clone(), sd.clone());
                    buffers::run_disk(&n, &d, &dir, rx, cap, stats, stop, |rx| {
                        sink(rx, s_stats, sd)
                    })
                })
            }
        };
        jobs.push((name.clone(), job));
        let l = Live {
            spec: spec(name),
            input: Some(tx.downgrade()),
            stop: None,
            outputs: Vec::new(),
        };
        live.insert(name.clone(), l);
    }

    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Ok(Built {
        jobs,
        watched,
        live,
        rewires,
        stats,
        shutdown,
        alerts: None,
        alerting_spec: String::new(),
        capacity: cap,
    })
}

type Spawned = (
    Vec<(String, JoinHandle<()>)>,
    Vec<(String, Arc<AtomicBool>)>,
);

/// A Wasm transform's sandbox, from its settings.
pub fn limits(p: &Pipeline, w: &crate::config::WasmTransform) -> Result<Limits, String> {
    let mut connect = Vec::new();
    for a in &w.allow_connect {
        match std::net::ToSocketAddrs::to_socket_addrs(a) {
            Ok(addrs) => connect.extend(addrs),
            Err(e) => return Err(format!("`{a}` is not a host:port address: {e}")),
        }
    }
    Ok(Limits {
        memory_bytes: w.memory_limit_mb.saturating_mul(1 << 20),
        timeout: std::time::Duration::from_millis(w.timeout_ms.max(1)),
        read_dirs: w.allow_read.iter().map(|d| p.resolve(d)).collect(),
        connect,
    })
}

fn spawn(jobs: Vec<(String, Job)>) -> Spawned {
    /// Marks its thread ended, however it ends.
    struct Ended(Arc<AtomicBool>);
    impl Drop for Ended {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let mut handles = Vec::new();
    let mut done = Vec::new();
    for (name, job) in jobs {
        let flag = Arc::new(AtomicBool::new(false));
        let ended = Ended(flag.clone());
        let h = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let _ended = ended;
                job()
            })
            .expect("spawn component thread");
        handles.push((name.clone(), h));
        done.push((name, flag));
    }
    (handles, done)
}

impl Built {
    /// Starts every component on its own thread.
    pub fn start(self) -> Running {
        super::reload::spawn(self.watched, self.shutdown.clone());
        if let Some(hub) = &self.alerts {
            hub.start();
        }
        let (handles, done) = spawn(self.jobs);
        Running {
            handles,
            done,
            capacity: self.capacity,
            live: self.live,
            stats: self.stats,
            shutdown: self.shutdown,
            alerts: self.alerts,
            alerting_spec: self.alerting_spec,
        }
    }
}

impl Running {
    /// Every running component's outputs by name (`NAME`, `NAME.late`, ...),
    /// for observers such as live queries.
    pub fn outputs(&self) -> BTreeMap<String, WeakOutput> {
        self.live
            .values()
            .flat_map(|l| l.outputs.iter().cloned())
            .collect()
    }

    /// What the admin API shows and taps.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            outputs: self.outputs(),
            stats: self
                .stats
                .iter()
                .filter(|(n, _)| !n.ends_with(BEFORE_RELOAD))
                .cloned()
                .collect(),
            queues: self
                .live
                .iter()
                .filter_map(|(n, l)| Some((n.clone(), l.input.clone()?)))
                .collect(),
            capacity: self.capacity,
            done: self.done.clone(),
        }
    }

    /// Every component has finished: inputs ended, or shutdown drained.
    pub fn is_finished(&self) -> bool {
        self.handles.iter().all(|(_, h)| h.is_finished())
    }

    /// Waits until every component has finished, and alert notifications
    /// still due have gone out.
    pub fn wait(self) -> Vec<(String, Arc<Stats>)> {
        for (name, h) in self.handles {
            if h.join().is_err() {
                tracing::error!(component = %name, "component thread panicked");
            }
        }
        if let Some(hub) = &self.alerts {
            hub.close();
        }
        self.stats
    }

    /// Moves to pipeline `p`: builds what is new or changed (any problem
    /// leaves everything as it was), starts it, rewires what stays, and stops
    /// what is gone; replaced consumers drain their queues before they end.
    pub fn reload(&mut self, p: &Pipeline, engine: &PluginEngine) -> Result<Change, Problems> {
        let built = build_against(
            p,
            engine,
            self.shutdown.clone(),
            &self.live,
            self.alerts.as_ref(),
        )?;
        if alerting_spec(p) != self.alerting_spec {
            tracing::warn!("[alerts], [route], [receivers] and data_dir changed: that takes effect at the next restart");
        }
        let mut change = Change::default();
        let new_names: Vec<&str> = p.components().map(|(_, n)| n).collect();
        for name in built.live.keys() {
            if self.live.contains_key(name) {
                change.replaced.push(name.clone());
            } else {
                change.added.push(name.clone());
            }
        }
        change.kept = new_names.len() - built.live.len();
        // New consumers first, so nothing is sent to a queue nobody reads.
        super::reload::spawn(built.watched, self.shutdown.clone());
        let (handles, done) = spawn(built.jobs);
        self.handles.extend(handles);
        self.done.extend(done);
        for (out, txs) in built.rewires {
            out.rewire(txs);
        }
        let gone: Vec<String> = self
            .live
            .keys()
            .filter(|n| built.live.contains_key(*n) || !new_names.contains(&n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            let old = self.live.remove(&name).expect("listed from the map");
            if let Some(stop) = old.stop {
                stop.stop_this();
            }
            if !built.live.contains_key(&name) {
                change.removed.push(name.clone());
            }
            for (n, _) in self
                .stats
                .iter_mut()
                .filter(|(n, _)| *n == name || n.starts_with(&format!("{name}.")))
            {
                n.push_str(BEFORE_RELOAD);
            }
        }
        self.live.extend(built.live);
        self.stats.extend(built.stats);
        Ok(change)
    }
}
