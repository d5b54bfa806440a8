//! An alert: one group of one rule's rows, and where it stands.

use super::matcher::Labels;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Pending until its condition has held for the rule's `for`, then firing
/// until it stops holding (and `keep_firing_for` has passed): resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

/// Times are event times in nanoseconds since the epoch: the ends of the
/// windows the rule saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule's labels, the group's values and `alertname`.
    pub labels: Labels,
    /// Rendered `summary`, `description` and other annotations.
    pub annotations: Labels,
    pub state: State,
    /// When the condition started to hold.
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    /// Identifies the alert across restarts: a hash of its labels.
    pub fingerprint: String,
}

impl Alert {
    pub fn new(labels: Labels, active_at: i64) -> Alert {
        let fingerprint = fingerprint(&labels);
        Alert {
            labels,
            annotations: Labels::new(),
            state: State::Pending,
            active_at,
            fired_at: None,
            resolved_at: None,
            fingerprint,
        }
    }

    pub fn name(&self) -> &str {
        self.labels.get(ALERTNAME).map_or("", String::as_str)
    }
}

/// The label that carries the rule's name, as in Prometheus.
pub const ALERTNAME: &str = "alertname";

/// 16 hex digits of SHA-256 over the sorted labels: stable across
/// restarts and versions, unlike std's hasher.
pub fn fingerprint(labels: &Labels) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xfe]);
    }
    hex::encode(&h.finalize()[..8])
}
