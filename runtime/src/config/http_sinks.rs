//! Sinks that POST batches over HTTP: a generic JSON endpoint,
//! Elasticsearch, Loki and Prometheus remote write.
//!
//! All of them send one request per batch, retry 408, 429, 5xx and
//! connection failures with backoff for as long as the pipeline runs, and
//! count and log a batch the endpoint refuses for good (its sources do not
//! commit it).

use indexmap::IndexMap;
use serde::Deserialize;

/// Generic batched JSON over HTTP.
///
/// ```toml
/// [sinks.collector]
/// type = "http"
/// inputs = ["errors"]
/// uri = "https://collector.example.com/ingest"
/// encoding = "ndjson"          # or "json": one array per request
/// compression = "gzip"
/// headers = { "X-Team" = "platform" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSink {
    pub inputs: Vec<String>,
    /// `memory` (default) or a `disk` buffer: see [`crate::buffers`].
    #[serde(default)]
    pub buffer: crate::buffers::BufferConfig,
    /// Trust `ca_file`, present `crt_file`/`key_file`, `verify`.
    pub tls: Option<crate::tls::TlsConfig>,
    pub uri: String,
    #[serde(default)]
    pub encoding: BodyEncoding,
    #[serde(default)]
    pub compression: Compression,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
}

/// Documents into Elasticsearch (or OpenSearch) with the `_bulk` API.
///
/// ```toml
/// [sinks.es]
/// type = "elasticsearch"
/// inputs = ["app"]
/// endpoint = "http://es:9200"
/// index = "logs-{{ service }}-%Y.%m.%d"   # fields and the event's date
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchSink {
    pub inputs: Vec<String>,
    /// `memory` (default) or a `disk` buffer: see [`crate::buffers`].
    #[serde(default)]
    pub buffer: crate::buffers::BufferConfig,
    /// Trust `ca_file`, present `crt_file`/`key_file`, `verify`.
    pub tls: Option<crate::tls::TlsConfig>,
    pub endpoint: String,
    /// `{{ field }}` takes an event's field; `%Y`, `%m`, `%d` (any strftime
    /// item) the event time's date, in UTC.
    #[serde(default = "default_index")]
    pub index: String,
    /// `index` (default) or `create` (data streams want `create`).
    #[serde(default)]
    pub action: BulkAction,
    #[serde(default)]
    pub compression: Compression,
    pub token: Option<String>,
    /// Basic authentication, with `password`.
    pub user: Option<String>,
    pub password: Option<String>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
}

fn default_index() -> String {
    "weir-%Y.%m.%d".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    #[default]
    Index,
    Create,
}

/// Log lines into Loki's push API; labels come from fields.
///
/// ```toml
/// [sinks.loki]
/// type = "loki"
/// inputs = ["app"]
/// endpoint = "http://loki:3100"
/// labels = { job = "weir", service = "{{ service }}" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiSink {
    pub inputs: Vec<String>,
    /// `memory` (default) or a `disk` buffer: see [`crate::buffers`].
    #[serde(default)]
    pub buffer: crate::buffers::BufferConfig,
    /// Trust `ca_file`, present `crt_file`/`key_file`, `verify`.
    pub tls: Option<crate::tls::TlsConfig>,
    pub endpoint: String,
    /// Label name → value template; keep them few (Loki indexes them).
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// The field that is the log line (default: the whole event as JSON).
    pub line_field: Option<String>,
    /// `X-Scope-OrgID`, for a multi-tenant Loki.
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub compression: Compression,
    pub token: Option<String>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
}

/// Metrics to anything that takes Prometheus remote write (Prometheus with
/// `--web.enable-remote-write-receiver`, Mimir, Thanos, VictoriaMetrics).
/// Metric events go as they are; query rows as the `prometheus_exporter`
/// sink shows them: a gauge per numeric field, text fields as labels.
///
/// ```toml
/// [sinks.mimir]
/// type = "prometheus_remote_write"
/// inputs = ["errors_per_minute"]
/// endpoint = "http://mimir:9009/api/v1/push"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteSink {
    pub inputs: Vec<String>,
    /// `memory` (default) or a `disk` buffer: see [`crate::buffers`].
    #[serde(default)]
    pub buffer: crate::buffers::BufferConfig,
    /// Trust `ca_file`, present `crt_file`/`key_file`, `verify`.
    pub tls: Option<crate::tls::TlsConfig>,
    pub endpoint: String,
    /// Prefix of row-made metric names (default: the first input's name).
    pub namespace: Option<String>,
    /// Row fields to use as labels (default: every text field but the
    /// window's start and end).
    pub labels: Option<Vec<String>>,
    pub token: Option<String>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    /// One JSON array of events per request.
    Json,
    /// One event per line.
    #[default]
    Ndjson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

fn default_request_timeout() -> String {
    "30s".into()
}
