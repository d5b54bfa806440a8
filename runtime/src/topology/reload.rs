//! Hot reload of plugin files.
//!
//! A watcher thread sees a plugin's `.wasm` change (atomic rename or write in
//! place), compiles the new component and `init`s one instance per worker
//! beside the running ones. If any of that fails, the running version stays
//! and the failure is logged and counted. If it succeeds, each worker takes
//! its new instance before its next batch: a batch is processed wholly by
//! the old version or wholly by the new, never lost, never twice.

use super::edge::{Shutdown, Stats};
use crate::plugin::{Instance, Plugin};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A new plugin version and an instance of it, for one worker.
pub type Swap = (Plugin, Instance);

/// A plugin stage the watcher keeps current.
pub struct Watched {
    plugin: Plugin,
    workers: Vec<Sender<Swap>>,
    stats: Arc<Stats>,
    digest: [u8; 32],
}

impl Watched {
    /// Registers a stage; returns the receiver each worker polls for swaps.
    pub fn new(plugin: &Plugin, workers: usize, stats: Arc<Stats>) -> (Self, Vec<Receiver<Swap>>) {
        let (txs, rxs) = (0..workers).map(|_| mpsc::channel()).unzip();
        let digest = std::fs::read(&plugin.path)
            .map(|b| digest(&b))
            .unwrap_or_default();
        (
            Watched {
                plugin: plugin.clone(),
                workers: txs,
                stats,
                digest,
            },
            rxs,
        )
    }

    /// Loads the file again and hands every worker a new instance, or keeps
    /// the running version and says why not.
    fn reload(&mut self) {
        let name = self.plugin.name.clone();
        let path = self.plugin.path.clone();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => return self.failed(&format!("cannot read {}: {e}", path.display())),
        };
        let d = digest(&bytes);
        if d == self.digest {
            return; // touched, not changed
        }
        let started = std::time::Instant::now();
        let plugin = match self.plugin.reload_from(&bytes) {
            Ok(p) => p,
            Err(e) => return self.failed(&format!("{e:#}")),
        };
        let mut instances = Vec::with_capacity(self.workers.len());
        for _ in 0..self.workers.len() {
            match plugin.instantiate() {
                Ok(i) => instances.push(i),
                Err(e) => return self.failed(&format!("{e:#}")),
            }
        }
        for (tx, instance) in self.workers.iter().zip(instances) {
            let _ = tx.send((plugin.clone(), instance));
        }
        self.digest = d;
        self.plugin = plugin;
        self.stats.count_reason("reload", 1);
        tracing::info!(
            plugin = %name,
            "reloaded {} (compiled and initialised in {} ms)",
            path.display(),
            started.elapsed().as_millis()
        );
    }

    fn failed(&self, why: &str) {
        self.stats.count_reason("reload_failed", 1);
        tracing::error!(plugin = %self.plugin.name, "reload failed, the running version stays: {why}");
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// How long a file must be quiet before it is reloaded: an in-place write
/// arrives as several events.
const SETTLE: Duration = Duration::from_millis(100);

/// Watches the plugins' files until shutdown.
pub fn spawn(mut watched: Vec<Watched>, shutdown: Shutdown) {
    if watched.is_empty() {
        return;
    }
    let (tx, rx) = mpsc::channel();
    let mut watcher = match notify::recommended_watcher(tx) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot watch plugin files, hot reload is off: {e}");
            return;
        }
    };
    let dirs: std::collections::BTreeSet<PathBuf> =
        watched.iter().map(|w| parent(&w.plugin.path)).collect();
    for dir in &dirs {
        use notify::Watcher;
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(
                "cannot watch {}, its plugins will not hot-reload: {e}",
                dir.display()
            );
        }
    }
    std::thread::Builder::new()
        .name("plugin-watch".into())
        .spawn(move || {
            let _watcher = watcher; // dropped when this thread ends
                                    // When each plugin's file last changed; reloaded once quiet.
            let mut changed: Vec<Option<Instant>> = vec![None; watched.len()];
            while !shutdown.is_triggered() {
                match rx.recv_timeout(SETTLE / 4) {
                    Ok(Ok(event)) => {
                        for (i, w) in watched.iter().enumerate() {
                            if event.paths.iter().any(|p| same_file(p, &w.plugin.path)) {
                                changed[i] = Some(Instant::now());
                            }
                        }
                    }
                    Ok(Err(e)) => tracing::warn!("plugin watch error: {e}"),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                // Other files in the same folder (a sink's output, say) may
                // change all the time: settling is per plugin file.
                for (i, w) in watched.iter_mut().enumerate() {
                    if changed[i].is_some_and(|t| t.elapsed() >= SETTLE) {
                        changed[i] = None;
                        w.reload();
                    }
                }
            }
        })
        .expect("spawn plugin watcher");
}

fn parent(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    abs.parent().map(Path::to_path_buf).unwrap_or(abs)
}

fn same_file(event_path: &Path, plugin: &Path) -> bool {
    let abs = std::path::absolute(plugin).unwrap_or_else(|_| plugin.to_path_buf());
    event_path == abs
        || (event_path.file_name() == abs.file_name() && parent(event_path) == parent(&abs))
}
