//! How a sink is built: its config checks itself and returns what runs it
//! over its input (see [`crate::component`]). The topology puts the sink's
//! buffer in front and never names a sink type; [`SinkConfig::build`] is
//! the registry, one line per type.

use super::http;
use crate::component::BuildContext;
use crate::config::SinkConfig;
use crate::topology::{Rx, Shutdown, Stats};
use std::sync::Arc;

/// Runs a sink over its input until the input closes.
pub type Runner = Box<dyn FnOnce(Rx, Arc<Stats>, Shutdown) + Send>;

/// A sink's config, able to build the sink.
pub trait Sink {
    /// Checks the config (every problem into `cx`) and returns what runs
    /// the sink; `None` when it cannot run at all.
    fn build(&self, cx: &mut BuildContext<'_>) -> Option<Runner>;
}

impl SinkConfig {
    /// Builds the sink this config describes.
    pub fn build(&self, cx: &mut BuildContext<'_>) -> Option<Runner> {
        match self {
            SinkConfig::Stdout(c) => c.build(cx),
            SinkConfig::File(c) => c.build(cx),
            SinkConfig::Blackhole(c) => c.build(cx),
            SinkConfig::PrometheusExporter(c) => c.build(cx),
            SinkConfig::Kafka(c) => c.build(cx),
            // The HTTP sinks share a client and differ in their API.
            SinkConfig::Http(_)
            | SinkConfig::Elasticsearch(_)
            | SinkConfig::Loki(_)
            | SinkConfig::PrometheusRemoteWrite(_) => http::build(self, cx),
        }
    }
}
