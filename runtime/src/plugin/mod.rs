//! The Wasm plugin host: loads components built against `wit/plugin.wit`,
//! caches their compiled form on disk, and runs batches through instances.
//!
//! One [`PluginEngine`] per process; a [`Plugin`] per pipeline component
//! (compiled once); an [`Instance`] per worker (its own store, memory and
//! state). Calls are synchronous and CPU-bound, so workers run them on their
//! own threads, off the async runtime.

mod bindings;
mod cache;
mod host;
mod instance;

pub use bindings::EventError;
pub use host::Counters;
pub use instance::{CallError, Failure, Instance, Reply};

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Filter,
    Transform,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Filter => "filter",
            PluginKind::Transform => "transform",
        }
    }
}

/// What a plugin instance may use beyond computing.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Cap on the instance's linear memory, in bytes.
    pub memory_bytes: usize,
    /// Longest one call may run; past it the call traps as a timeout.
    pub timeout: Duration,
    /// Directories the plugin may read, mounted read-only at the same path.
    pub read_dirs: Vec<PathBuf>,
    /// Addresses the plugin may open TCP connections to.
    pub connect: Vec<std::net::SocketAddr>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(1),
            read_dirs: Vec::new(),
            connect: Vec::new(),
        }
    }
}

/// Granularity of call deadlines. Deadlines use epoch interruption, which
/// costs a few percent per call; fuel metering, the other way to stop a
/// runaway guest, costs far more (see `scripts/bench`).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Ticks the engine's epoch for as long as the engine lives.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })
        .expect("spawn epoch ticker");
}

/// How a runaway call is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metering {
    /// Not at all: for measuring the others only.
    None,
    /// A deadline checked at loop heads and calls (the default: cheap).
    Epoch,
    /// Counted instructions: deterministic, and much dearer per call.
    Fuel,
}

/// Fuel per call under [`Metering::Fuel`]: enough for any sane batch.
pub const FUEL_PER_CALL: u64 = 10_000_000_000;

/// The shared Wasm engine, linker and compiled-component cache.
#[derive(Clone)]
pub struct PluginEngine {
    metering: Metering,
    engine: Engine,
    linker: Arc<Linker<host::HostState>>,
    cache_dir: Option<PathBuf>,
}

impl PluginEngine {
    /// An engine that caches compiled components in `cache_dir` (none: no cache).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self> {
        Self::with_metering(cache_dir, Metering::Epoch)
    }

    /// An engine that stops runaway calls the given way.
    pub fn with_metering(cache_dir: Option<PathBuf>, metering: Metering) -> Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        config.epoch_interruption(metering == Metering::Epoch);
        config.consume_fuel(metering == Metering::Fuel);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        if metering == Metering::Epoch {
            start_epoch_ticker(&engine);
        }
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker)?;
        Ok(PluginEngine {
            metering,
            engine,
            linker: Arc::new(linker),
            cache_dir,
        })
    }

    /// Where compiled components are cached unless told otherwise:
    /// `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`, else `~/.cache/weir`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("WEIR_CACHE_DIR") {
            return Some(PathBuf::from(d));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("weir"))
    }

    /// Compiles (or loads from the cache) the component at `path`.
    pub fn load(
        &self,
        name: &str,
        path: &Path,
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Plugin> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        self.load_bytes(name, path, &bytes, config, limits)
    }

    fn load_bytes(
        &self,
        name: &str,
        path: &Path,
        bytes: &[u8],
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Plugin> {
        let component = cache::compile(&self.engine, bytes, self.cache_dir.as_deref())
            .with_context(|| format!("{} is not a loadable Wasm component", path.display()))?;
        let kind = detect_kind(&self.engine, &component)
            .with_context(|| format!("{} does not implement weir:plugin@0.1.0", path.display()))?;
        let pre = instance::Pre::new(&self.linker, &component, kind).map_err(|e| format!("{e:#}"));
        Ok(Plugin {
            name: name.to_string(),
            path: path.to_path_buf(),
            kind,
            pre,
            engine: self.clone(),
            config,
            limits,
            counters: Arc::new(Counters::default()),
        })
    }
}

fn detect_kind(engine: &Engine, component: &Component) -> Result<PluginKind> {
    let ty = component.component_type();
    let names: Vec<&str> = ty.exports(engine).map(|(n, _)| n).collect();
    let has = |n| names.contains(&n);
    match (has("init"), has("filter"), has("transform")) {
        (true, true, false) => Ok(PluginKind::Filter),
        (true, false, true) => Ok(PluginKind::Transform),
        _ => bail!(
            "it exports [{}]; a plugin exports `init` and one of `filter` or `transform`",
            names.join(", ")
        ),
    }
}

/// A compiled plugin and the settings its instances start with.
#[derive(Clone)]
pub struct Plugin {
    pub name: String,
    pub path: PathBuf,
    pub kind: PluginKind,
    /// Imports resolved once: each instance (a worker, a rebuild after a
    /// failure) is made from it without linking again. The error, if the
    /// component's imports cannot be met, is reported when instantiating.
    pre: std::result::Result<instance::Pre, String>,
    engine: PluginEngine,
    config: Vec<(String, String)>,
    limits: Limits,
    pub counters: Arc<Counters>,
}

impl Plugin {
    /// The same plugin stage with new component bytes (a hot reload).
    pub fn reload_from(&self, bytes: &[u8]) -> Result<Plugin> {
        let p = self.engine.load_bytes(
            &self.name,
            &self.path,
            bytes,
            self.config.clone(),
            self.limits.clone(),
        )?;
        if p.kind != self.kind {
            bail!(
                "the new file is a {} plugin; the running one is a {}",
                p.kind.as_str(),
                self.kind.as_str()
            );
        }
        Ok(Plugin {
            counters: self.counters.clone(),
            ..p
        })
    }

    /// A fresh instance, `init`ed with the plugin's config.
    pub fn instantiate(&self) -> Result<Instance> {
        Instance::new(self)
            .with_context(|| format!("plugin `{}` ({})", self.name, self.path.display()))
    }
}
