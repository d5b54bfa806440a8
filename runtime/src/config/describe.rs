//! A pipeline described as a graph of nodes: what `weir graph` draws and
//! the admin API's `GET /pipeline` returns.

use super::secrets::{redact, redact_url};
use super::{Pipeline, ReceiverConfig, SinkConfig, SourceConfig, TransformConfig};
use serde::Serialize;

/// A component (or alert rule, or receiver) and what it reads.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// Unique across kinds: alerts and receivers have names of their own
    /// (`alert/NAME`, `receiver/NAME`).
    pub id: String,
    pub name: String,
    pub kind: Kind,
    /// Its type and main setting: `file app.log`, `wasm redact.wasm`, ...
    pub what: String,
    /// Ids of what it reads (with `.dead_letter` / `.late` outputs).
    pub inputs: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Source,
    Transform,
    Query,
    Sink,
    Alert,
    Receiver,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Transform => "transform",
            Kind::Query => "query",
            Kind::Sink => "sink",
            Kind::Alert => "alert",
            Kind::Receiver => "receiver",
        }
    }
}

impl Pipeline {
    /// Every node, in the file's order within each kind. URLs are shown
    /// without credentials or query, and no text carries a secret.
    pub fn describe(&self) -> Vec<Node> {
        let f = &self.file;
        let mut out = Vec::new();
        let mut add = |id: String, name: &str, kind: Kind, what: String, inputs: Vec<String>| {
            out.push(Node {
                id,
                name: name.to_string(),
                kind,
                what: redact(&what).into_owned(),
                inputs,
            })
        };
        let urls = |urls: &[String]| {
            urls.iter()
                .map(|u| redact_url(u))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (n, s) in &f.sources {
            let what = match s {
                SourceConfig::File(x) => format!("file {}", x.path.display()),
                SourceConfig::Stdin(_) => "stdin".into(),
                SourceConfig::Generator(_) => "generator".into(),
                SourceConfig::Kafka(k) => format!("kafka {}", k.topics.join(", ")),
                SourceConfig::PrometheusScrape(s) => format!("scrape {}", urls(&s.targets)),
                SourceConfig::PrometheusRemoteWrite(r) => format!("remote write {}", r.address),
                SourceConfig::FluentForward(f) => format!("forward {}", f.address),
                SourceConfig::Syslog(s) => format!("syslog {} {}", s.mode.as_str(), s.address),
                SourceConfig::Http(h) => format!("http {}", h.address),
            };
            add(n.clone(), n, Kind::Source, what, vec![]);
        }
        for (n, t) in &f.transforms {
            let TransformConfig::Wasm(w) = t;
            let plugin = w.plugin.file_name().unwrap_or_default().to_string_lossy();
            let what = format!("wasm {plugin}");
            add(n.clone(), n, Kind::Transform, what, t.inputs().to_vec());
        }
        for (n, q) in &f.queries {
            add(n.clone(), n, Kind::Query, "sql".into(), q.inputs.clone());
        }
        for (n, s) in &f.sinks {
            let what = match s {
                SinkConfig::Stdout(_) => "stdout".to_string(),
                SinkConfig::File(x) => format!("file {}", x.path.display()),
                SinkConfig::Blackhole(_) => "blackhole".into(),
                SinkConfig::PrometheusExporter(x) => format!("prometheus {}", x.address),
                SinkConfig::Kafka(x) => format!("kafka {}", x.topic),
                SinkConfig::Http(x) => format!("http {}", redact_url(&x.uri)),
                SinkConfig::Elasticsearch(x) => format!("elasticsearch {}", x.index),
                SinkConfig::Loki(x) => format!("loki {}", redact_url(&x.endpoint)),
                SinkConfig::PrometheusRemoteWrite(x) => {
                    format!("remote write {}", redact_url(&x.endpoint))
                }
            };
            add(n.clone(), n, Kind::Sink, what, s.inputs().to_vec());
        }
        for (n, a) in &f.alerts {
            let id = format!("alert/{n}");
            add(
                id,
                n,
                Kind::Alert,
                a.condition.clone(),
                vec![a.query.clone()],
            );
        }
        if !f.alerts.is_empty() {
            let rules: Vec<String> = f.alerts.keys().map(|a| format!("alert/{a}")).collect();
            for (n, r) in &f.receivers {
                let what = match r {
                    ReceiverConfig::Slack(_) => "slack",
                    ReceiverConfig::Webhook(_) => "webhook",
                    ReceiverConfig::Stdout(_) => "stdout",
                    ReceiverConfig::File(_) => "file",
                    ReceiverConfig::Kafka(_) => "kafka",
                };
                add(
                    format!("receiver/{n}"),
                    n,
                    Kind::Receiver,
                    what.into(),
                    rules.clone(),
                );
            }
        }
        out
    }
}
