//! The sinks that write JSON lines to a stream: `stdout` and `file`, and
//! `blackhole`, which takes every batch and writes nothing.

use super::component::{Runner, Sink};
use crate::codec::json_encode;
use crate::component::BuildContext;
use crate::config::{BlackholeSink, FileSink, StdoutSink};
use crate::topology::{drain, Rx, Shutdown, Stats};
use std::io::Write;
use std::sync::Arc;

impl Sink for StdoutSink {
    fn build(&self, cx: &mut BuildContext<'_>) -> Option<Runner> {
        let name = cx.name.to_string();
        Some(Box::new(move |input, stats, shutdown| {
            // Locked per batch, not for the run: alert notifications share stdout.
            let out = Box::new(std::io::stdout());
            run(&name, Some(out), input, stats, shutdown)
        }))
    }
}

impl Sink for FileSink {
    fn build(&self, cx: &mut BuildContext<'_>) -> Option<Runner> {
        let path = cx.pipeline.resolve(&self.path);
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
        {
            cx.problem(
                "path",
                format!("directory {} does not exist", dir.display()),
            );
        }
        let (name, append) = (cx.name.to_string(), self.append);
        Some(Box::new(move |input, stats, shutdown| {
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(&path);
            match opened {
                Ok(file) => run(&name, Some(Box::new(file)), input, stats, shutdown),
                Err(e) => {
                    tracing::error!(sink = name, "cannot open {}: {e}", path.display());
                    shutdown.trigger();
                    drain(&input)
                }
            }
        }))
    }
}

impl Sink for BlackholeSink {
    fn build(&self, cx: &mut BuildContext<'_>) -> Option<Runner> {
        let name = cx.name.to_string();
        Some(Box::new(move |input, stats, shutdown| {
            run(&name, None, input, stats, shutdown)
        }))
    }
}

/// Writes each batch as JSON lines to `out` (none: takes them) and flushes,
/// until the input closes. A sink that cannot write stops the pipeline
/// (there is nowhere safe to put the events) and keeps draining so
/// upstream components can finish.
fn run(
    name: &str,
    mut out: Option<Box<dyn Write>>,
    input: Rx,
    stats: Arc<Stats>,
    shutdown: Shutdown,
) {
    let mut buf = Vec::with_capacity(1 << 20);
    while let Ok(batch) = input.recv_blocking() {
        Stats::add(&stats.events_in, batch.len());
        let Some(writer) = out.as_mut() else {
            Stats::add(&stats.events_out, batch.len());
            continue;
        };
        buf.clear();
        json_encode::write_lines(&mut buf, &batch);
        if let Err(e) = writer.write_all(&buf).and_then(|()| writer.flush()) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                tracing::error!(sink = name, "cannot write: {e}; stopping the pipeline");
            }
            // Stopping first: a disk buffer keeps what fails while stopping.
            shutdown.trigger();
            batch.fail();
            return drain(&input);
        }
        Stats::add(&stats.events_out, batch.len());
        Stats::add(&stats.bytes_out, buf.len());
    }
}
