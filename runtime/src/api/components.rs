//! `GET /components`: each component's counters as JSON, what `weir top`
//! polls; `/metrics` exposes the same list.

use super::Api;
use crate::config::Kind;
use crate::topology::Stats;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// One component (or output such as `NAME.late`) and its counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    /// None for outputs (`NAME.late`, `NAME.dead_letter`).
    pub kind: Option<Kind>,
    pub running: bool,
    pub events_in: u64,
    pub events_out: u64,
    pub errors: u64,
    pub dropped: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Batches in its input queue, and how many it holds.
    pub queue: Option<(usize, usize)>,
    /// Plugin calls and the time they took.
    pub calls: u64,
    pub busy_ns: u64,
    /// A plugin's own counters.
    pub plugin_counters: BTreeMap<String, u64>,
    /// A query's watermark (ns of event time), once it has one.
    pub watermark_ns: Option<i64>,
    pub open_windows: u64,
    pub reasons: BTreeMap<String, u64>,
    /// A Kafka source's connection, lag and partitions.
    #[serde(default)]
    pub kafka: Option<KafkaView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KafkaView {
    pub connected: bool,
    /// Records behind the high watermarks of its partitions.
    pub lag: i64,
    pub partitions: u64,
}

pub(super) async fn serve(State(api): State<Api>) -> impl IntoResponse {
    axum::Json(list(&api))
}

pub(super) fn list(api: &Api) -> Vec<Component> {
    let view = api.view();
    let p = &view.pipeline;
    let running = p.components();
    p.stats
        .iter()
        .map(|(name, s)| {
            let base = name.split('.').next().unwrap_or(name);
            let kind = view.nodes.iter().find(|n| n.id == *name).map(|n| n.kind);
            let queue = p
                .queues
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, tx)| (tx.upgrade().map_or(0, |t| t.len()), p.capacity));
            Component {
                name: name.clone(),
                kind,
                running: running.get(base).copied().unwrap_or(false),
                events_in: Stats::get(&s.events_in),
                events_out: Stats::get(&s.events_out),
                errors: Stats::get(&s.errors),
                dropped: Stats::get(&s.dropped),
                bytes_in: Stats::get(&s.bytes_in),
                bytes_out: Stats::get(&s.bytes_out),
                queue,
                calls: Stats::get(&s.calls),
                busy_ns: Stats::get(&s.busy_ns),
                plugin_counters: s.plugin_counters.get().map_or_else(BTreeMap::new, |c| {
                    c.snapshot()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect()
                }),
                watermark_ns: Some(s.watermark_ns.load(Ordering::Relaxed)).filter(|&w| w != 0),
                open_windows: Stats::get(&s.open_windows),
                reasons: s
                    .reasons()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                kafka: s.kafka.get().map(|k| KafkaView {
                    connected: k.connected.load(Ordering::Relaxed),
                    lag: k.lag.load(Ordering::Relaxed),
                    partitions: k.partitions.load(Ordering::Relaxed),
                }),
            }
        })
        .collect()
}
