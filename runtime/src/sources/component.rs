//! How a source is built: its config checks itself and returns the job
//! that runs it (see [`crate::component`]). The topology builds every source through [`Source`]
//! without knowing any of them by name; [`SourceConfig::source`] is the
//! registry, one line per type.

use super::net::{self, Net};
use super::Batcher;
pub use crate::component::{BuildContext, Job};
use crate::config::{ListenSettings, SourceConfig};
use crate::topology::Shutdown;

/// A source's config, able to build the source.
pub trait Source {
    /// Checks the config (every problem into `cx`) and returns the job
    /// that reads into `out` until `shutdown`; `None` when it cannot run
    /// at all.
    fn build(&self, cx: &mut BuildContext<'_>, out: Batcher, shutdown: Shutdown) -> Option<Job>;
}

impl SourceConfig {
    /// The source this config builds.
    pub fn source(&self) -> &dyn Source {
        match self {
            SourceConfig::File(c) => c,
            SourceConfig::Stdin(c) => c,
            SourceConfig::Generator(c) => c,
            SourceConfig::Kafka(c) => c,
            SourceConfig::PrometheusScrape(c) => c,
            SourceConfig::PrometheusRemoteWrite(c) => c,
            SourceConfig::FluentForward(c) => c,
            SourceConfig::Syslog(c) => c,
            SourceConfig::Http(c) => c,
        }
    }
}

impl BuildContext<'_> {
    /// A listening source's connections, served into `out` until
    /// `shutdown`: its address, budgets (durations parse and are above
    /// zero, counts and byte budgets are above zero) and TLS checked.
    pub fn listener(&mut self, l: &ListenSettings<'_>, out: Batcher, shutdown: Shutdown) -> Net {
        self.check_address(l.address);
        let base = self.pipeline.base_dir();
        let tls = l.tls.and_then(|t| match t.resolved(base).acceptor() {
            Ok(a) => Some(a),
            Err((key, what)) => {
                self.problem("tls", format!("{key}: {what}"));
                None
            }
        });
        let read_timeout = self.positive_duration("read_timeout", l.read_timeout);
        let idle_timeout = match l.idle_timeout {
            Some(t) => self.positive_duration("idle_timeout", t),
            None => read_timeout,
        };
        for (key, n) in [
            ("max_connections", l.max_connections),
            ("max_connections_per_peer", l.max_connections_per_peer),
            ("max_buffered_bytes", l.max_buffered_bytes),
        ] {
            if n == 0 {
                self.problem(key, "must be more than 0");
            }
        }
        let limits = net::Limits {
            max_connections: l.max_connections.max(1),
            max_connections_per_peer: l.max_connections_per_peer.max(1),
            read_timeout,
            idle_timeout,
            buffered: net::Budget::new(l.max_buffered_bytes),
        };
        out.into_net(self.name, shutdown).with_limits(limits, tls)
    }

    /// An HTTP `path` setting starts with `/`.
    pub fn check_path(&mut self, path: &str) {
        if !path.starts_with('/') {
            self.problem("path", "must start with `/`");
        }
    }

    /// Lines need a line format: `msgpack` is for framed records.
    pub fn check_lines_format(&mut self, format: crate::codec::Format) {
        if format == crate::codec::Format::Msgpack {
            self.problem(
                "format",
                "`msgpack` needs framed records (a kafka source); lines are `json` or `text`",
            );
        }
    }
}
