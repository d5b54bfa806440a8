//! `weir run` and `weir validate`.

use crate::config::{Pipeline, Problems};
use crate::plugin::PluginEngine;
use crate::topology::{self, Stats};
use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code for a pipeline that does not validate (as `sysexits` EX_CONFIG).
const EX_CONFIG: u8 = 78;

fn engine(p: &Pipeline) -> Result<PluginEngine> {
    let dir = match &p.file.settings.plugin_cache_dir {
        Some(d) => Some(p.resolve(d)),
        None => PluginEngine::default_cache_dir(),
    };
    PluginEngine::new(dir)
}

fn report(problems: &Problems) -> ExitCode {
    eprintln!("{problems}");
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
            println!(
                "{}: ok ({} sources, {} transforms, {} sinks)",
                path.display(),
                f.sources.len(),
                f.transforms.len(),
                f.sinks.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => Ok(report(&problems)),
    }
}

pub fn run(path: &Path) -> Result<ExitCode> {
    let p = match Pipeline::load(path) {
        Ok(p) => p,
        Err(problems) => return Ok(report(&problems)),
    };
    let built = match topology::build(&p, &engine(&p)?) {
        Ok(b) => b,
        Err(problems) => return Ok(report(&problems)),
    };
    let running = built.start();
    let shutdown = running.shutdown.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stats = rt.block_on(async move {
        let mut done = tokio::task::spawn_blocking(move || running.wait());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut signals = 0;
        loop {
            tokio::select! {
                stats = &mut done => return anyhow::Ok(stats?),
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            signals += 1;
            if signals > 1 {
                eprintln!("second signal: exiting without draining");
                std::process::exit(130);
            }
            tracing::info!(
                "shutting down: draining events in flight (signal again to exit at once)"
            );
            shutdown.trigger();
        }
    })?;
    print_summary(&stats);
    Ok(ExitCode::SUCCESS)
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
