//! The shape of a pipeline file. Every struct rejects unknown keys, so a
//! typo is an error that names the key rather than a setting silently ignored.

use super::http_sinks::*;
use super::listen::*;
use crate::codec::{Format, DEFAULT_MAX_LINE_BYTES};
use indexmap::IndexMap;
use serde::Deserialize;
use std::path::PathBuf;

pub type Sources = IndexMap<String, SourceConfig>;
pub type Transforms = IndexMap<String, TransformConfig>;
pub type Queries = IndexMap<String, QueryConfig>;
pub type Sinks = IndexMap<String, SinkConfig>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    #[serde(default)]
    pub settings: Settings,
    /// The admin HTTP API; off unless the section is there.
    pub api: Option<ApiConfig>,
    #[serde(default)]
    pub sources: Sources,
    #[serde(default)]
    pub transforms: Transforms,
    #[serde(default)]
    pub queries: Queries,
    #[serde(default)]
    pub sinks: Sinks,
    #[serde(default)]
    pub alerts: super::Alerts,
    /// Where alert notifications go; by default, every alert to the only
    /// receiver.
    pub route: Option<super::RouteConfig>,
    #[serde(default)]
    pub receivers: super::Receivers,
    /// Unit tests of transforms, queries and alert rules (`weir test`).
    #[serde(default)]
    pub tests: Vec<PipelineTest>,
}

/// Pipeline-wide tuning; the defaults suit most pipelines.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Most events a source puts in one batch.
    pub batch_size: usize,
    /// A source that is waiting for input sends what it has after this long
    /// (files and the generator send as soon as they would wait).
    pub batch_timeout_ms: u64,
    /// Batches each component's input queue holds before its producers wait.
    pub channel_capacity: usize,
    /// Where compiled plugins are cached (default: `~/.cache/weir`).
    pub plugin_cache_dir: Option<PathBuf>,
    /// Reload a plugin when its `.wasm` file changes (default: on).
    pub watch_plugins: bool,
    /// Where state that outlives a restart is kept (alert states, silences,
    /// what was notified). Default: `.weir/` beside the pipeline file.
    pub data_dir: Option<PathBuf>,
    /// Threads that decode the lines of each `file` and `stdin` source,
    /// their batches kept in order. Default: the cores weir may run on;
    /// 1 decodes on the source's own thread.
    pub decode_threads: Option<usize>,
}

impl Settings {
    /// `decode_threads`, or the cores this process may run on.
    pub fn decode_threads(&self) -> usize {
        self.decode_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            batch_size: 1024,
            batch_timeout_ms: 100,
            channel_capacity: 8,
            plugin_cache_dir: None,
            watch_plugins: true,
            data_dir: None,
            decode_threads: None,
        }
    }
}

/// `[api]`: the admin HTTP API (health, metrics, taps, live SQL, alerts).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where to listen (default `127.0.0.1:8686`; keep it on loopback).
    #[serde(default = "default_api_address")]
    pub address: String,
    /// When set, every route but `/health` wants `Authorization: Bearer
    /// TOKEN`; keep it in the environment: `token = "${WEIR_API_TOKEN}"`.
    /// An empty token is refused: it would open the API silently.
    pub token: Option<String>,
    /// Serve an address beyond loopback without a token anyway (events,
    /// live SQL and silences are then anyone's who reaches it).
    #[serde(default)]
    pub allow_no_token: bool,
    /// Serve the API over TLS (`crt_file`, `key_file`, `ca_file`).
    pub tls: Option<crate::tls::TlsConfig>,
}

fn default_api_address() -> String {
    "127.0.0.1:8686".into()
}

pub(super) fn default_timestamp_field() -> String {
    "timestamp".into()
}
fn default_max_line_bytes() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    File(FileSource),
    Stdin(StdinSource),
    Generator(GeneratorSource),
    Kafka(KafkaSource),
    PrometheusScrape(PrometheusScrapeSource),
    PrometheusRemoteWrite(RemoteWriteSource),
    FluentForward(FluentForwardSource),
    Syslog(SyslogSource),
    Http(HttpSource),
}

/// Consumes Kafka topics as a member of a consumer group; an offset is
/// committed once every sink that got its record has accepted it.
///
/// ```toml
/// [sources.app]
/// type = "kafka"
/// brokers = "kafka-1:9092,kafka-2:9092"
/// topics = ["app-logs", "^svc-.*"]        # a leading ^ makes a regex
/// group_id = "weir"
/// start_from = "earliest"                 # for a group with no commit yet
/// librdkafka_options = { "security.protocol" = "SASL_SSL", "sasl.mechanism" = "PLAIN" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSource {
    /// `bootstrap.servers`: `host:port`, comma-separated.
    pub brokers: String,
    pub topics: Vec<String>,
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Where a group without a committed offset starts (`latest` by
    /// default, as Kafka's own consumers do).
    #[serde(default)]
    pub start_from: StartFrom,
    /// `json` (default), `text` or `msgpack`: what a record's value holds.
    #[serde(default)]
    pub format: Format,
    /// The event time; without it, the record's Kafka timestamp.
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// The field that holds `topic`, `partition`, `offset`, `timestamp_ms`,
    /// `key` and `headers` (`kafka`; `""` leaves them out).
    #[serde(default = "default_kafka_field")]
    pub metadata_field: String,
    /// Any librdkafka setting (TLS, SASL, timeouts), passed as is.
    #[serde(default)]
    pub librdkafka_options: IndexMap<String, String>,
}

fn default_group_id() -> String {
    "weir".into()
}

fn default_kafka_field() -> String {
    "kafka".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    Earliest,
    #[default]
    Latest,
}

impl StartFrom {
    /// librdkafka's `auto.offset.reset` value.
    pub fn as_str(self) -> &'static str {
        match self {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        }
    }
}

/// Reads a file, or every file a glob matches; with `follow`, keeps reading
/// as they grow and across rotation, like `tail -F`, and checkpoints how far
/// every sink accepted each file (in `data_dir`), so a restart resumes there.
///
/// ```toml
/// [sources.app]
/// type = "file"
/// path = "/var/log/app/*.log"
/// exclude = ["*.gz", "/var/log/app/debug-*"]
/// follow = true
/// read_from = "end"        # for files first seen at start; a restart resumes at the checkpoint
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// A file, or a glob (`*`, `?`, `[a-z]`, `**`) of files.
    pub path: PathBuf,
    /// Globs of paths not to read; one without a `/` matches file names.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub follow: bool,
    /// `beginning` (default) or `end`: where to start in a file seen for the
    /// first time when weir starts. Files that appear later are read from
    /// their beginning; files with a checkpoint resume at it.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Keep checkpoints in `data_dir` (default: when `follow` is on; a file
    /// read once is read whole on every run).
    #[serde(default)]
    pub checkpoint: Option<bool>,
    #[serde(default)]
    pub format: Format,
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinSource {
    #[serde(default)]
    pub format: Format,
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

/// Synthesises microservice JSON logs, for demos and benchmarks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSource {
    /// Events per second; 0 means as fast as the pipeline takes them.
    #[serde(default)]
    pub rate: f64,
    /// Stop after this many events (default: never).
    pub count: Option<u64>,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformConfig {
    Wasm(WasmTransform),
}

impl TransformConfig {
    pub fn on_error(&self) -> OnError {
        match self {
            TransformConfig::Wasm(w) => w.on_error,
        }
    }

    pub fn inputs(&self) -> &[String] {
        match self {
            TransformConfig::Wasm(w) => &w.inputs,
        }
    }

    pub fn plugin_config(&self) -> Vec<(String, String)> {
        match self {
            TransformConfig::Wasm(w) => {
                let mut out = Vec::new();
                flatten("", &w.config, &mut out);
                out
            }
        }
    }
}

/// Runs a Wasm filter or transform plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmTransform {
    pub inputs: Vec<String>,
    /// Path to the component (`.wasm`).
    pub plugin: PathBuf,
    /// Passed to the plugin's `init` as key/value strings.
    #[serde(default)]
    pub config: toml::Table,
    /// What happens to an event the plugin fails on.
    #[serde(default)]
    pub on_error: OnError,
    /// Instances running batches in parallel (order across batches is not
    /// kept when above 1).
    #[serde(default = "one")]
    pub workers: usize,
    /// Cap on each instance's memory, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_limit_mb: usize,
    /// Longest one batch may run in the plugin before it is stopped.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Directories the plugin may read (read-only, at the same path).
    /// Nothing by default.
    #[serde(default)]
    pub allow_read: Vec<PathBuf>,
    /// `host:port` addresses the plugin may connect to over TCP. Nothing by
    /// default.
    #[serde(default)]
    pub allow_connect: Vec<String>,
}

fn default_timeout_ms() -> u64 {
    1000
}

fn one() -> usize {
    1
}
fn default_memory_mb() -> usize {
    256
}

/// The fate of an event a plugin returns an error for, or of a whole batch
/// when the plugin fails or traps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Pass the event on unchanged, with the reason in `_error` (nothing is lost).
    #[default]
    Pass,
    /// Drop the event; it is counted and logged.
    Drop,
    /// Send the event, with `_error`, to the component's `NAME.dead_letter`
    /// output, which a sink (or transform) names in its `inputs`.
    DeadLetter,
}

/// The output of a transform that carries its failed events.
pub const DEAD_LETTER: &str = "dead_letter";

/// The output of a query that carries events too late for their window.
pub const LATE: &str = "late";

/// The output of a query that carries the events it could not evaluate,
/// with the reason in `_error`.
pub const ERRORS: &str = "errors";

/// SQL over the events of its inputs, run continuously; each closed
/// window's rows leave as events (`NAME`), late events as `NAME.late`, and
/// events it could not evaluate as `NAME.errors`.
///
/// ```toml
/// [queries.errors_per_minute]
/// inputs = ["app"]
/// sql = """
/// SELECT window_start, service, count(*) AS errors
/// FROM app WHERE level = 'error'
/// GROUP BY tumble(interval '1 minute'), service
/// """
/// allowed_lateness = "5s"
/// schema = { service = "string", level = "string" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    pub inputs: Vec<String>,
    /// One DataFusion `SELECT`; the table is named after any of the
    /// inputs, or `events`.
    pub sql: String,
    /// How far behind the newest event time an event still counts for its
    /// window (`"0s"` by default): windows close that much later.
    #[serde(default = "zero_duration")]
    pub allowed_lateness: String,
    /// When no event has arrived for this long, event time is taken to
    /// move on with the wall clock, so open windows still close (`"10s"`
    /// by default; `"0s"` waits for the next event instead).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: String,
    /// Column types (`string`, `int`, `float`, `bool`, `timestamp`, `any`;
    /// dotted names for nested fields). Inferred from the first batch when
    /// absent.
    #[serde(default)]
    pub schema: Option<IndexMap<String, String>>,
    /// Groups open at once over all of the query's windows (100,000 by
    /// default): past it, rows that would open a new group are left out and
    /// counted (`max_groups`), so a GROUP BY over trace ids cannot take the
    /// memory. Groups already open keep aggregating.
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
}

fn default_max_groups() -> usize {
    100_000
}

fn zero_duration() -> String {
    "0s".into()
}

fn default_idle_timeout() -> String {
    "10s".into()
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            toml::Value::String(s) => out.push((key, s.clone())),
            toml::Value::Array(a) => {
                let json = serde_json::to_string(a).unwrap_or_default();
                out.push((key, json));
            }
            other => out.push((key, other.to_string())),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    Stdout(StdoutSink),
    File(FileSink),
    Blackhole(BlackholeSink),
    PrometheusExporter(PrometheusExporterSink),
    Kafka(KafkaSink),
    Http(HttpSink),
    Elasticsearch(ElasticsearchSink),
    Loki(LokiSink),
    PrometheusRemoteWrite(RemoteWriteSink),
}

impl SinkConfig {
    pub fn inputs(&self) -> &[String] {
        match self {
            SinkConfig::Stdout(s) => &s.inputs,
            SinkConfig::File(s) => &s.inputs,
            SinkConfig::Blackhole(s) => &s.inputs,
            SinkConfig::PrometheusExporter(s) => &s.inputs,
            SinkConfig::Kafka(s) => &s.inputs,
            SinkConfig::Http(s) => &s.inputs,
            SinkConfig::Elasticsearch(s) => &s.inputs,
            SinkConfig::Loki(s) => &s.inputs,
            SinkConfig::PrometheusRemoteWrite(s) => &s.inputs,
        }
    }

    pub fn buffer(&self) -> &crate::buffers::BufferConfig {
        match self {
            SinkConfig::Stdout(s) => &s.buffer,
            SinkConfig::File(s) => &s.buffer,
            SinkConfig::Blackhole(s) => &s.buffer,
            SinkConfig::PrometheusExporter(s) => &s.buffer,
            SinkConfig::Kafka(s) => &s.buffer,
            SinkConfig::Http(s) => &s.buffer,
            SinkConfig::Elasticsearch(s) => &s.buffer,
            SinkConfig::Loki(s) => &s.buffer,
            SinkConfig::PrometheusRemoteWrite(s) => &s.buffer,
        }
    }
}

/// JSON lines on standard output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSink {
    pub inputs: Vec<String>,
    /// `memory` (default) or a `disk` buffer: see [`crate::buffers`].
    #[serde(default)]
    pub buffer: crate::buffers::BufferConfig,
}

/// JSON lines appended to a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    pub inputs: Vec<String>,
    /// `memory` (default) or a `disk` buffer: see [`crate::buffers`].
    #[serde(default)]
    pub buffer: crate::buffers::BufferConfig,
    pub path: PathBuf,
    /// Append (default) or truncate at start.
    #[serde(default = "yes")]
    pub append: bool,
}

pub(super) fn yes() -> bool {
    true
}

/// Counts and discards events: for benchmarks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSink {
    pub inputs: Vec<String>,
    /// `memory` (default) or a `disk` buffer: see [`crate::buffers`].
    #[serde(default)]
    pub buffer: crate::buffers::BufferConfig,
}

/// Serves rows (of queries) as gauges on `http://ADDRESS/metrics` for
/// Prometheus to scrape: one gauge per numeric field, text fields as labels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusExporterSink {
    pub inputs: Vec<String>,
    /// `memory` (default) or a `disk` buffer: see [`crate::buffers`].
    #[serde(default)]
    pub buffer: crate::buffers::BufferConfig,
    /// Where to listen (default `127.0.0.1:9598`).
    #[serde(default = "default_exporter_address")]
    pub address: String,
    /// Prefix of every metric name (default: the first input's name).
    pub namespace: Option<String>,
    /// Fields to use as labels (default: every text field but the window's
    /// start and end).
    pub labels: Option<Vec<String>>,
    /// Drop a series that no row has updated for this long (default `5m`).
    #[serde(default = "default_expire_after")]
    pub expire_after: String,
}

/// Produces each event as one JSON record; events count as accepted once
/// the brokers acknowledged them (`acks`).
///
/// ```toml
/// [sinks.out]
/// type = "kafka"
/// inputs = ["errors_per_minute"]
/// brokers = "kafka-1:9092"
/// topic = "rollups-{{ service }}"     # fields fill {{ ... }}
/// key_field = "service"
/// compression = "zstd"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSink {
    pub inputs: Vec<String>,
    /// `memory` (default) or a `disk` buffer: see [`crate::buffers`].
    #[serde(default)]
    pub buffer: crate::buffers::BufferConfig,
    pub brokers: String,
    /// The topic, or a template of one: `{{ field }}` takes an event's field.
    pub topic: String,
    /// The field whose value keys the record (and so picks its partition).
    pub key_field: Option<String>,
    /// `none` (default), `gzip`, `snappy`, `lz4` or `zstd`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// `all` (default), `1` or `0`: which brokers acknowledge a record.
    #[serde(default = "default_acks")]
    pub acks: String,
    /// How long records wait to fill a batch (`linger.ms`, default 5).
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Largest batch per partition (`batch.size`, default 1 MB).
    #[serde(default = "default_batch_bytes")]
    pub batch_max_bytes: usize,
    /// Any librdkafka setting, passed as is.
    #[serde(default)]
    pub librdkafka_options: IndexMap<String, String>,
}

fn default_compression() -> String {
    "none".into()
}
fn default_acks() -> String {
    "all".into()
}
fn default_linger_ms() -> u64 {
    5
}
fn default_batch_bytes() -> usize {
    1_000_000
}

fn default_exporter_address() -> String {
    "127.0.0.1:9598".into()
}

fn default_expire_after() -> String {
    "5m".into()
}

/// `[[tests]]`: a unit test of one transform or query, run by `weir test`.
///
/// ```toml
/// [[tests]]
/// name = "warnings and errors pass"
/// input = "warnings"                      # the transform or query the events go into
/// events = [{ level = "warn", msg = "disk 91%" }, { level = "info", msg = "ok" }]
/// expect = { count = 1, conditions = ["level = 'warn'"] }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineTest {
    pub name: String,
    /// The transform or query the events go into.
    pub input: String,
    /// Events as tables (quote timestamps: `timestamp = "2025-11-24T16:00:00Z"`).
    #[serde(default)]
    pub events: Vec<toml::Table>,
    /// Or as raw lines, decoded as the sources decode them.
    #[serde(default)]
    pub lines: Vec<String>,
    #[serde(default)]
    pub expect: Expect,
}

/// What the component's output must be; every part given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// How many events (rows, for a query) come out.
    pub count: Option<usize>,
    /// SQL conditions every output event must meet.
    #[serde(default)]
    pub conditions: Vec<String>,
    /// The exact output events, in order (fields as tables).
    pub events: Option<Vec<toml::Table>>,
    /// For a query: the alerts of the rules reading it once the events are
    /// in, each as labels plus `state` (`pending`, `firing`, `resolved`).
    pub alerts: Option<Vec<IndexMap<String, String>>>,
}
