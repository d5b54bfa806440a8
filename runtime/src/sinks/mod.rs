//! Where events leave weir. Each sink writes whole batches and flushes after
//! each, so what a sink accepted is on its way out.

pub mod http;
pub mod kafka;
pub mod prometheus;
pub mod template;

use crate::codec::json_encode;
use crate::config::SinkConfig;
use crate::topology::{drain, Rx, Shutdown, Stats};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Runs a sink until its input closes. A sink that cannot write stops the
/// pipeline (there is nowhere safe to put the events) and keeps draining so
/// upstream components can finish.
pub fn run(
    name: &str,
    cfg: &SinkConfig,
    path: Option<&Path>,
    input: Rx,
    stats: Arc<Stats>,
    shutdown: Shutdown,
) {
    let mut writer: Box<dyn Write> = match cfg {
        SinkConfig::PrometheusExporter(p) => {
            return prometheus::run(name, p, input, stats, shutdown)
        }
        SinkConfig::Kafka(k) => return kafka::run(name, k, input, stats, shutdown),
        SinkConfig::Http(_)
        | SinkConfig::Elasticsearch(_)
        | SinkConfig::Loki(_)
        | SinkConfig::PrometheusRemoteWrite(_) => {
            return http::run(name, cfg, input, stats, shutdown)
        }
        // Locked per batch, not for the run: alert notifications share stdout.
        SinkConfig::Stdout(_) => Box::new(std::io::stdout()),
        SinkConfig::File(f) => {
            let path = path.expect("file sinks have a resolved path");
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(f.append)
                .truncate(!f.append)
                .open(path);
            match opened {
                Ok(file) => Box::new(file),
                Err(e) => {
                    tracing::error!(sink = name, "cannot open {}: {e}", path.display());
                    shutdown.trigger();
                    return drain(&input);
                }
            }
        }
        SinkConfig::Blackhole(_) => Box::new(std::io::sink()),
    };
    let encode = !matches!(cfg, SinkConfig::Blackhole(_));
    let mut buf = Vec::with_capacity(1 << 20);
    while let Ok(batch) = input.recv_blocking() {
        Stats::add(&stats.events_in, batch.len());
        if !encode {
            Stats::add(&stats.events_out, batch.len());
            continue;
        }
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
