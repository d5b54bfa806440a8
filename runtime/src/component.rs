//! What building any component shares: the pipeline it is part of, its
//! name, and where its problems go. Each kind has its own trait and
//! registry beside its components ([`crate::sources::Source`],
//! [`crate::sinks::Sink`]); the topology builds through them without
//! naming a component type.

use crate::config::{Pipeline, Problem};
use std::time::Duration;

/// What runs a component, on a thread of its own.
pub type Job = Box<dyn FnOnce() + Send>;

/// What a component's build may look at, and where its problems go.
pub struct BuildContext<'a> {
    pub pipeline: &'a Pipeline,
    /// `sources`, `sinks`, ...: the table the component is in.
    pub section: &'static str,
    /// The component's name in the pipeline.
    pub name: &'a str,
    pub problems: &'a mut Vec<Problem>,
}

impl BuildContext<'_> {
    /// A problem with the component's `key`, placed at its line.
    pub fn problem(&mut self, key: &str, what: impl Into<String>) {
        let problem = self
            .pipeline
            .problem(self.section, self.name, Some(key), what);
        self.problems.push(problem);
    }

    /// How long a batch may wait for more input (`batch_timeout_ms`).
    pub fn flush_after(&self) -> Duration {
        Duration::from_millis(self.pipeline.file.settings.batch_timeout_ms.max(1))
    }

    /// The duration setting `key`, which must be more than zero ("15s",
    /// "500ms"); one second, and a problem, when it is not.
    pub fn positive_duration(&mut self, key: &str, text: &str) -> Duration {
        match weir_sql::parse_duration(text) {
            Ok(ns) if ns > 0 => Duration::from_nanos(ns as u64),
            Ok(_) => {
                self.problem(key, "must be more than 0");
                Duration::from_secs(1)
            }
            Err(e) => {
                self.problem(key, e);
                Duration::from_secs(1)
            }
        }
    }

    /// `address` must be a `host:port` that resolves.
    pub fn check_address(&mut self, address: &str) {
        if let Err(err) = std::net::ToSocketAddrs::to_socket_addrs(address) {
            let what = format!("`{address}` is not a host:port address: {err}");
            self.problem("address", what);
        }
    }
}
