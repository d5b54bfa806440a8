//! `GET /metrics`: weir's own metrics in Prometheus exposition (OpenMetrics
//! text), read from the components' counters at each scrape.
//!
//! | metric | labels |
//! |---|---|
//! | `weir_component_received_events_total`, `weir_component_sent_events_total` | `component` (outputs: `NAME.dead_letter`, `NAME.late`) |
//! | `weir_component_errors_total`, `weir_component_dropped_events_total` | `component` |
//! | `weir_component_failures_total` (by reason: `timeout`, `trap`, `late`, `query_error`, ...) | `component`, `reason` |
//! | `weir_component_up` (1 while its threads run) | `component` |
//! | `weir_component_received_bytes_total` (sources), `weir_component_sent_bytes_total` (sinks) | `component` |
//! | `weir_plugin_calls_total`, `weir_plugin_busy_seconds_total` (batches, and time in the plugin) | `component` |
//! | `weir_query_watermark_seconds`, `weir_query_lag_seconds` (wall clock minus watermark), `weir_query_open_windows` | `component` |
//! | `weir_kafka_connected` (0 while no broker is reachable), `weir_kafka_consumer_lag` (records), `weir_kafka_partitions` (assigned) | `component` (Kafka sources) |
//! | `weir_queue_batches`, `weir_queue_capacity_batches` (input queue fill) | `component` |
//! | `weir_plugin_counter_total` (a plugin's own `counter-add`s) | `component`, `counter` |
//! | `weir_alerts` (by state; silenced firing alerts counted apart) | `state` |
//! | `weir_alert_notifications_total` | `result` (`sent`, `failed`) |

use super::Api;
use crate::config::Kind;
use axum::extract::State;
use axum::response::Response;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

type Labels = Vec<(&'static str, String)>;
type FloatCounter = Counter<f64, std::sync::atomic::AtomicU64>;
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

pub async fn serve(State(api): State<Api>) -> Response {
    super::openmetrics(render(&api))
}

fn counter(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    family(reg, name, help)
}

fn gauge(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    family(reg, name, help)
}

fn family<
    M: prometheus_client::registry::Metric
        + prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Clone
        + Default,
>(
    reg: &mut Registry,
    name: &str,
    help: &str,
) -> Family<Labels, M> {
    let f = Family::<Labels, M>::default();
    reg.register(name, help, f.clone());
    f
}

fn render(api: &Api) -> String {
    let mut reg = Registry::with_prefix("weir");
    let received = counter(
        &mut reg,
        "component_received_events",
        "Events a component took in",
    );
    let sent = counter(
        &mut reg,
        "component_sent_events",
        "Events a component (or one of its outputs) sent on",
    );
    let errors = counter(
        &mut reg,
        "component_errors",
        "Events that carried or caused an error",
    );
    let dropped = counter(
        &mut reg,
        "component_dropped_events",
        "Events dropped on error (on_error = \"drop\")",
    );
    let failures = counter(&mut reg, "component_failures", "Failures by reason");
    let plugin = counter(
        &mut reg,
        "plugin_counter",
        "Counters a plugin keeps with counter-add",
    );
    let up = gauge(
        &mut reg,
        "component_up",
        "1 while the component's threads run",
    );
    let queue = gauge(
        &mut reg,
        "queue_batches",
        "Batches waiting in a component's input queue",
    );
    let capacity = gauge(
        &mut reg,
        "queue_capacity_batches",
        "Batches a component's input queue holds",
    );
    let alerts = gauge(&mut reg, "alerts", "Alerts by state");
    let notices = counter(
        &mut reg,
        "alert_notifications",
        "Alert notifications by result",
    );
    let bytes_in = counter(&mut reg, "component_received_bytes", "Bytes a source read");
    let bytes_out = counter(&mut reg, "component_sent_bytes", "Bytes a sink wrote");
    let calls = counter(&mut reg, "plugin_calls", "Batches a plugin was called with");
    let busy: Family<Labels, FloatCounter> = family(
        &mut reg,
        "plugin_busy_seconds",
        "Time spent in plugin calls",
    );
    let watermark: Family<Labels, FloatGauge> = family(
        &mut reg,
        "query_watermark_seconds",
        "A query's watermark (event time)",
    );
    let lag: Family<Labels, FloatGauge> = family(
        &mut reg,
        "query_lag_seconds",
        "Wall clock minus a query's watermark",
    );
    let windows = gauge(&mut reg, "query_open_windows", "Windows a query holds open");
    let connected = gauge(
        &mut reg,
        "kafka_connected",
        "1 while a Kafka source reaches a broker",
    );
    let consumer_lag = gauge(
        &mut reg,
        "kafka_consumer_lag",
        "Records behind the high watermarks of a Kafka source's partitions",
    );
    let partitions = gauge(
        &mut reg,
        "kafka_partitions",
        "Partitions assigned to a Kafka source",
    );

    let now = crate::codec::timestamp::now_ns();
    for c in super::components::list(api) {
        let l = vec![("component", c.name.clone())];
        received.get_or_create(&l).inc_by(c.events_in);
        sent.get_or_create(&l).inc_by(c.events_out);
        errors.get_or_create(&l).inc_by(c.errors);
        dropped.get_or_create(&l).inc_by(c.dropped);
        for (reason, n) in &c.reasons {
            let l = vec![("component", c.name.clone()), ("reason", reason.clone())];
            failures.get_or_create(&l).inc_by(*n);
        }
        for (k, v) in &c.plugin_counters {
            let l = vec![("component", c.name.clone()), ("counter", k.clone())];
            plugin.get_or_create(&l).inc_by(*v);
        }
        if let Some((len, cap)) = c.queue {
            queue.get_or_create(&l).set(len as i64);
            capacity.get_or_create(&l).set(cap as i64);
        }
        let Some(kind) = c.kind else { continue };
        up.get_or_create(&l).set(i64::from(c.running));
        match kind {
            Kind::Source => {
                bytes_in.get_or_create(&l).inc_by(c.bytes_in);
                if let Some(k) = &c.kafka {
                    connected.get_or_create(&l).set(i64::from(k.connected));
                    consumer_lag.get_or_create(&l).set(k.lag);
                    partitions.get_or_create(&l).set(k.partitions as i64);
                }
            }
            Kind::Sink => {
                bytes_out.get_or_create(&l).inc_by(c.bytes_out);
            }
            Kind::Transform => {
                calls.get_or_create(&l).inc_by(c.calls);
                busy.get_or_create(&l).inc_by(c.busy_ns as f64 / 1e9);
            }
            Kind::Query => {
                if let Some(wm) = c.watermark_ns {
                    watermark.get_or_create(&l).set(wm as f64 / 1e9);
                    lag.get_or_create(&l)
                        .set(now.saturating_sub(wm) as f64 / 1e9);
                }
                windows.get_or_create(&l).set(c.open_windows as i64);
            }
            Kind::Alert | Kind::Receiver => {}
        }
    }
    if let Some(hub) = &api.alerts {
        for state in ["pending", "firing", "silenced", "resolved"] {
            alerts.get_or_create(&vec![("state", state.into())]).set(0);
        }
        for a in hub.list() {
            let state = if a.silenced {
                "silenced"
            } else {
                a.state.as_str()
            };
            alerts.get_or_create(&vec![("state", state.into())]).inc();
        }
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        notices
            .get_or_create(&vec![("result", "sent".into())])
            .inc_by(n(&hub.sent));
        notices
            .get_or_create(&vec![("result", "failed".into())])
            .inc_by(n(&hub.failed));
    }
    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    out
}
