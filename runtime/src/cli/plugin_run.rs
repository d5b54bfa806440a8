//! `weir plugin run`: one plugin over events from stdin, for trying it out.

use crate::codec::{for_each_line, json_encode, Decoder, Format, Line, DEFAULT_MAX_LINE_BYTES};
use crate::config::OnError;
use crate::plugin::{Limits, PluginEngine};
use crate::topology::Stats;
use crate::transforms::wasm::Worker;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use weir_layout::BatchBuf;

const BATCH: usize = 1024;

pub fn run(path: &Path, config: &[String], format: &str) -> Result<ExitCode> {
    let format = Format::parse(format)?;
    let config = config
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_string(), v.to_string())),
            None => bail!("--config `{kv}`: expected KEY=VALUE"),
        })
        .collect::<Result<Vec<_>>>()?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin");
    let engine = PluginEngine::new(PluginEngine::default_cache_dir())?;
    let plugin = engine.load(name, path, config, Limits::default())?;
    let instance = plugin.instantiate()?;
    let kind = plugin.kind;
    let mut worker = Worker::new(plugin, instance, OnError::Pass);
    let stats = Stats::default();

    let mut decoder = Decoder::new(format, "timestamp", DEFAULT_MAX_LINE_BYTES);
    let mut out = std::io::stdout().lock();
    let mut batch = BatchBuf::new();
    let (mut seen, mut emitted) = (0usize, 0usize);
    let now = crate::codec::timestamp::now_ns();
    let mut flush = |batch: BatchBuf, out: &mut dyn Write| -> Result<usize> {
        let result = worker.process(batch, &stats).out;
        let mut buf = Vec::new();
        json_encode::write_lines(&mut buf, &result);
        out.write_all(&buf)?;
        Ok(result.len())
    };
    let stdin = std::io::stdin().lock();
    for_each_line(
        stdin,
        DEFAULT_MAX_LINE_BYTES,
        |line, line_no| -> Result<()> {
            // Blank lines are skipped here (they are not events to try a plugin on).
            if line == Line::Full(b"") {
                return Ok(());
            }
            decoder.decode(&mut batch, line, "stdin", line_no, now);
            seen += 1;
            if batch.len() >= BATCH {
                emitted += flush(std::mem::take(&mut batch), &mut out)?;
            }
            Ok(())
        },
    )
    .context("reading stdin")?;
    let errors = decoder.errors;
    emitted += flush(batch, &mut out)?;
    out.flush()?;
    eprintln!(
        "{name} ({}): {seen} events in, {emitted} out, {} failed in the plugin, {} could not be decoded",
        kind.as_str(),
        Stats::get(&stats.errors),
        errors
    );
    Ok(ExitCode::SUCCESS)
}
