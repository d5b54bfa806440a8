//! `weir run` and `weir validate`.

use crate::api::View;
use crate::config::{Pipeline, Problems};
use crate::plugin::PluginEngine;
use crate::topology::{self, Stats};
use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code for a pipeline that does not validate (as `sysexits` EX_CONFIG).
const EX_CONFIG: u8 = 78;

pub fn engine(p: &Pipeline) -> Result<PluginEngine> {
    let dir = match &p.file.settings.plugin_cache_dir {
        Some(d) => Some(p.resolve(d)),
        None => PluginEngine::default_cache_dir(),
    };
    PluginEngine::new(dir)
}

pub fn report(problems: &Problems) -> ExitCode {
    eprintln!("{}", crate::config::secrets::redact(&problems.to_string()));
    let n = problems.0.len();
    eprintln!("{n} problem{} found", if n == 1 { "" } else { "s" });
    ExitCode::from(EX_CONFIG)
}

pub fn validate(path: &Path) -> Result<ExitCode> {
    let p = match Pipeline::load(path) {
        Ok(p) => p,
        Err(problems) => return Ok(report(&problems)),
    };
    match topology::build(&p, &engine(&p)?) {
        Ok(_) => {
            let f = &p.file;
            let alerts = match f.alerts.len() {
                0 => String::new(),
                n => format!(", {n} alert rules"),
            };
            println!(
                "{}: ok ({} sources, {} transforms, {} queries, {} sinks{alerts})",
                path.display(),
                f.sources.len(),
                f.transforms.len(),
                f.queries.len(),
                f.sinks.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => Ok(report(&problems)),
    }
}

pub fn run(path: &Path, watch: bool) -> Result<ExitCode> {
    let p = match Pipeline::load(path) {
        Ok(p) => p,
        Err(problems) => return Ok(report(&problems)),
    };
    let engine = engine(&p)?;
    let built = match topology::build(&p, &engine) {
        Ok(b) => b,
        Err(problems) => return Ok(report(&problems)),
    };
    let mut running = built.start();
    let view: crate::api::Shared = Arc::new(std::sync::RwLock::new(View::of(&running, &p)));
    if let Some(api) = &p.file.api {
        let tls = match &api.tls {
            Some(t) => Some(
                t.resolved(p.base_dir())
                    .acceptor()
                    .map_err(|(key, what)| anyhow::anyhow!("[api] tls: {key}: {what}"))?,
            ),
            None => None,
        };
        crate::api::start(
            &api.address,
            api.token.clone(),
            tls,
            view.clone(),
            running.alerts.clone(),
        )?;
    }
    let progress =
        finite_input(&p).map(|(sources, total)| (sources, super::progress::bytes(total)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let (changed_tx, mut changed) = tokio::sync::mpsc::channel::<()>(1);
        let _watcher = if watch {
            Some(watch_file(path, changed_tx)?)
        } else {
            None
        };
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(50));
        let mut signals = 0;
        loop {
            tokio::select! {
                _ = poll.tick() => {
                    if let Some((sources, bar)) = &progress {
                        let stats = running.stats.iter().filter(|(n, _)| sources.contains(n));
                        bar.set_position(stats.map(|(_, s)| Stats::get(&s.bytes_in)).sum());
                    }
                    if running.is_finished() {
                        if let Some((_, bar)) = &progress {
                            bar.finish();
                        }
                        return anyhow::Ok(());
                    }
                }
                _ = hup.recv() => reload(path, &mut running, &engine, &view, "SIGHUP"),
                Some(()) = changed.recv() => {
                    // An editor's save is several events: let it settle.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    while changed.try_recv().is_ok() {}
                    reload(path, &mut running, &engine, &view, "a change to the file");
                }
                _ = tokio::signal::ctrl_c() => signals += 1,
                _ = term.recv() => signals += 1,
            }
            if signals > 1 {
                eprintln!("second signal: exiting without draining");
                std::process::exit(130);
            }
            if signals == 1 && !running.shutdown.is_triggered() {
                tracing::info!(
                    "shutting down: draining events in flight (signal again to exit at once)"
                );
                running.shutdown.trigger();
            }
        }
    })?;
    print_summary(&running.wait());
    Ok(ExitCode::SUCCESS)
}

/// When every source is a file read to its end: their names and total size.
fn finite_input(p: &Pipeline) -> Option<(Vec<String>, u64)> {
    let mut total = 0;
    for s in p.file.sources.values() {
        match s {
            crate::config::SourceConfig::File(f) if !f.follow => {
                total += std::fs::metadata(p.resolve(&f.path)).ok()?.len();
            }
            _ => return None,
        }
    }
    Some((p.file.sources.keys().cloned().collect(), total))
}

/// Reloads the pipeline file into the running pipeline, or says why not.
fn reload(
    path: &Path,
    running: &mut topology::Running,
    engine: &PluginEngine,
    view: &crate::api::Shared,
    why: &str,
) {
    let result = Pipeline::load(path).and_then(|p| {
        let change = running.reload(&p, engine)?;
        *view.write().unwrap_or_else(|e| e.into_inner()) = View::of(running, &p);
        Ok(change)
    });
    match result {
        Ok(c) => tracing::info!(
            "pipeline reloaded after {why}: added {:?}, replaced {:?}, removed {:?}, {} kept running",
            c.added,
            c.replaced,
            c.removed,
            c.kept
        ),
        Err(problems) => tracing::error!(
            "pipeline reload after {why} rejected; the running pipeline stays as it was:\n{problems}"
        ),
    }
}

/// Sends on `tx` whenever the file at `path` changes.
fn watch_file(
    path: &Path,
    tx: tokio::sync::mpsc::Sender<()>,
) -> Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let file = std::path::absolute(path)?;
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|e| e.paths.iter().any(|p| p == &file) && !e.kind.is_access()) {
            let _ = tx.try_send(());
        }
    })?;
    w.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(w)
}

fn print_summary(stats: &[(String, Arc<Stats>)]) {
    let parts: Vec<String> = stats
        .iter()
        .map(|(name, s)| {
            let mut line = format!(
                "{name}: {} in, {} out",
                Stats::get(&s.events_in),
                Stats::get(&s.events_out)
            );
            let (errors, dropped) = (Stats::get(&s.errors), Stats::get(&s.dropped));
            if errors > 0 {
                line.push_str(&format!(", {errors} errors"));
            }
            if dropped > 0 {
                line.push_str(&format!(", {dropped} dropped on error"));
            }
            if let Some(c) = s
                .plugin_counters
                .get()
                .map(|c| c.snapshot())
                .filter(|c| !c.is_empty())
            {
                let c: Vec<String> = c.iter().map(|(k, v)| format!("{k}={v}")).collect();
                line.push_str(&format!(" [plugin counters: {}]", c.join(" ")));
            }
            let reasons = s.reasons();
            if !reasons.is_empty() {
                let r: Vec<String> = reasons.iter().map(|(k, v)| format!("{k}={v}")).collect();
                line.push_str(&format!(" ({})", r.join(" ")));
            }
            line
        })
        .collect();
    tracing::info!("pipeline finished: {}", parts.join("; "));
}
