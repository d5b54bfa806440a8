//! `prometheus_exporter`: query rows as metrics for Prometheus to scrape.
//!
//! Each event (a row of a closed window) updates one gauge per numeric
//! field, named `NAMESPACE_FIELD`, with the row's text fields as labels
//! (by default every text field but `window_start`/`window_end`: the
//! `GROUP BY` columns). A series keeps the value of its newest row and is
//! dropped after `expire_after` without one, so groups that went quiet do
//! not linger. Served as OpenMetrics text on `http://ADDRESS/metrics`.

use super::component::{Runner, Sink};
use crate::component::BuildContext;
use crate::config::PrometheusExporterSink;
use crate::topology::{drain, Rx, Shutdown, Stats};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_layout::{EventKind, EventView, Value};

type Labels = Vec<(String, String)>;
type Series = Family<Labels, Gauge<f64, AtomicU64>>;

/// The metrics being served, and when each series was last set.
#[derive(Default)]
struct Exposition {
    registry: Registry,
    families: HashMap<String, Series>,
    seen: HashMap<(String, Labels), Instant>,
}

impl Exposition {
    fn set(&mut self, name: &str, labels: Labels, value: f64, now: Instant) {
        let family = match self.families.get(name) {
            Some(f) => f.clone(),
            None => {
                let f = Series::default();
                self.registry
                    .register(name, format!("weir query result `{name}`"), f.clone());
                self.families.insert(name.to_string(), f.clone());
                f
            }
        };
        family.get_or_create(&labels).set(value);
        self.seen.insert((name.to_string(), labels), now);
    }

    fn expire(&mut self, older_than: Instant) {
        let families = &self.families;
        self.seen.retain(|(name, labels), at| {
            let keep = *at >= older_than;
            if !keep {
                families[name].remove(labels);
            }
            keep
        });
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Runs the exporter until its input closes.
impl Sink for PrometheusExporterSink {
    fn build(&self, cx: &mut BuildContext<'_>) -> Option<Runner> {
        if let Err(msg) = weir_sql::parse_duration(&self.expire_after) {
            cx.problem("expire_after", msg);
        }
        cx.check_address(&self.address);
        let (name, cfg) = (cx.name.to_string(), self.clone());
        Some(Box::new(move |input, stats, shutdown| {
            run(&name, &cfg, input, stats, shutdown)
        }))
    }
}

pub fn run(
    name: &str,
    cfg: &PrometheusExporterSink,
    input: Rx,
    stats: Arc<Stats>,
    shutdown: Shutdown,
) {
    // Checked when the pipeline was built.
    let expire_after = weir_sql::parse_duration(&cfg.expire_after)
        .map_or(Duration::from_secs(300), |ns| {
            Duration::from_nanos(ns as u64)
        });
    let namespace = cfg
        .namespace
        .clone()
        .unwrap_or_else(|| cfg.inputs.first().cloned().unwrap_or_default());
    let exposition = Arc::new(Mutex::new(Exposition::default()));
    let listener = match std::net::TcpListener::bind(&cfg.address) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                sink = name,
                "cannot listen on {}: {e}; stopping the pipeline",
                cfg.address
            );
            shutdown.trigger();
            return drain(&input);
        }
    };
    tracing::info!(
        sink = name,
        "serving metrics on http://{}/metrics",
        cfg.address
    );
    let served = exposition.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = served.lock().unwrap_or_else(|p| p.into_inner()).render();
            async move { crate::api::openmetrics(body) }
        }),
    );
    if let Err(e) = crate::api::serve(&format!("{name}-http"), listener, app) {
        tracing::error!(
            sink = name,
            "cannot serve metrics: {e}; stopping the pipeline"
        );
        shutdown.trigger();
        return drain(&input);
    }

    while let Ok(batch) = input.recv_blocking() {
        Stats::add(&stats.events_in, batch.len());
        let now = Instant::now();
        let mut e = exposition.lock().unwrap_or_else(|p| p.into_inner());
        for event in batch.iter() {
            for (metric, labels, value) in samples(&event, &namespace, cfg.labels.as_deref()) {
                e.set(&metric, labels, value, now);
            }
        }
        if let Some(cutoff) = now.checked_sub(expire_after) {
            e.expire(cutoff);
        }
        Stats::add(&stats.events_out, batch.len());
    }
}

/// The gauges one row sets: `(name, labels, value)`.
pub(crate) fn samples(
    event: &EventView<'_>,
    namespace: &str,
    labels: Option<&[String]>,
) -> Vec<(String, Labels, f64)> {
    if event.kind() != EventKind::Log {
        return Vec::new();
    }
    let mut set: Labels = Vec::new();
    let mut values = Vec::new();
    for (k, v) in event.fields() {
        let is_label = match labels {
            Some(l) => l.iter().any(|x| x == k),
            None => matches!(v, Value::Str(_)) && k != "window_start" && k != "window_end",
        };
        if is_label {
            let text = match v {
                Value::Str(s) => s.to_string(),
                Value::Null => String::new(),
                other => other.as_f64().map(|f| f.to_string()).unwrap_or_default(),
            };
            set.push((sanitize(k), text));
        } else if let Some(f) = v
            .as_f64()
            .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
        {
            values.push((k, f));
        }
    }
    values
        .into_iter()
        .map(|(k, f)| (sanitize(&format!("{namespace}_{k}")), set.clone(), f))
        .collect()
}

/// A valid Prometheus name: letters, digits and `_`, not starting with a digit.
fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_layout::BatchBuf;

    #[test]
    fn rows_become_gauges_labelled_by_their_text_fields() {
        let mut b = BatchBuf::new();
        b.log(0)
            .field("window_start", "2025-01-01T00:00:00Z")
            .field("service", "api")
            .field("errors", 3)
            .field("p99 ms", 250.5)
            .finish()
            .unwrap();
        let mut e = Exposition::default();
        let now = Instant::now();
        for (n, l, v) in samples(&b.get(0).unwrap(), "per_minute", None) {
            e.set(&n, l, v, now);
        }
        let text = e.render();
        assert!(
            text.contains("per_minute_errors{service=\"api\"} 3.0"),
            "{text}"
        );
        assert!(
            text.contains("per_minute_p99_ms{service=\"api\"} 250.5"),
            "{text}"
        );
        e.expire(now + Duration::from_secs(1));
        assert!(!e.render().contains("service=\"api\""));
    }
}
