//! Sources that listen or pull over the network: the agents users already
//! run (Fluent Bit, rsyslog, shippers that speak Elasticsearch or Loki) and
//! Prometheus targets.

use serde::Deserialize;

/// Connections open at once; more are closed as they arrive.
fn default_max_connections() -> usize {
    1024
}

/// Connections open at once from one address, so that one client cannot
/// take every slot; an agent uses one or a few.
fn default_max_connections_per_peer() -> usize {
    64
}

/// A message (a frame, a forward message, a request's headers and body)
/// that has begun must be whole within this, however it trickles in: slow
/// clients do not pin memory or slots.
fn default_read_timeout() -> String {
    "30s".into()
}

/// A connection with no message under way that sends nothing for this long
/// is closed. Agents reconnect by themselves.
fn default_idle_timeout() -> String {
    "5m".into()
}

/// Bytes a listening source holds for all its connections at once:
/// messages not yet whole, bodies being read, events decoded and not yet
/// queued. Past it new input is refused until some is let go.
fn default_max_buffered_bytes() -> usize {
    256 << 20
}

/// Events one request or message may decode to: a value shared by many
/// entries (a tag, a stream's labels) is copied into each.
fn default_max_decoded_bytes() -> usize {
    64 << 20
}

/// The budgets every listening source has, read from its own keys (serde's
/// `flatten` would lose `deny_unknown_fields`, which catches typos).
#[derive(Debug, Clone)]
pub struct ListenSettings<'a> {
    /// `host:port`.
    pub address: &'a str,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub read_timeout: &'a str,
    /// None where the protocol's own deadline covers it (HTTP: the header
    /// deadline starts when a connection waits for its next request).
    pub idle_timeout: Option<&'a str>,
    pub max_buffered_bytes: usize,
    pub tls: Option<&'a crate::tls::TlsConfig>,
}

/// The listening settings shared by every listening source's config; the
/// second form for those with an `idle_timeout` of their own.
macro_rules! listen_settings {
    ($t:ty) => {
        listen_settings!($t, |_| None);
    };
    ($t:ty, idle_timeout) => {
        listen_settings!($t, |s: &$t| Some(s.idle_timeout.as_str()));
    };
    ($t:ty, $idle:expr) => {
        impl $t {
            pub fn listen(&self) -> ListenSettings<'_> {
                let idle: fn(&$t) -> Option<&str> = $idle;
                ListenSettings {
                    address: &self.address,
                    max_connections: self.max_connections,
                    max_connections_per_peer: self.max_connections_per_peer,
                    read_timeout: &self.read_timeout,
                    idle_timeout: idle(self),
                    max_buffered_bytes: self.max_buffered_bytes,
                    tls: self.tls.as_ref(),
                }
            }
        }
    };
}

listen_settings!(RemoteWriteSource);
listen_settings!(HttpSource);
listen_settings!(FluentForwardSource, idle_timeout);
listen_settings!(SyslogSource, idle_timeout);

/// Pulls `/metrics` from Prometheus targets, the way Prometheus does.
///
/// ```toml
/// [sources.node]
/// type = "prometheus_scrape"
/// targets = ["http://10.0.0.5:9100/metrics", "http://10.0.0.6:9100/metrics"]
/// interval = "15s"
/// job = "node"            # default: the source's name
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusScrapeSource {
    pub targets: Vec<String>,
    #[serde(default = "default_scrape_interval")]
    pub interval: String,
    /// Per scrape; at most the interval.
    #[serde(default = "default_scrape_timeout")]
    pub timeout: String,
    /// The `job` label (default: the source's name).
    pub job: Option<String>,
    /// A bigger response is a failed scrape.
    #[serde(default = "default_max_scrape_bytes")]
    pub max_bytes: usize,
    /// Trust `ca_file`, present `crt_file`/`key_file`, `verify`.
    pub tls: Option<crate::tls::TlsConfig>,
}

fn default_scrape_interval() -> String {
    "15s".into()
}
fn default_scrape_timeout() -> String {
    "10s".into()
}
fn default_max_scrape_bytes() -> usize {
    64 << 20
}

/// Receives Prometheus remote write (snappy-compressed protobuf) on
/// `POST /api/v1/write`.
///
/// ```toml
/// [sources.prom]
/// type = "prometheus_remote_write"
/// address = "0.0.0.0:9090"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteSource {
    pub address: String,
    #[serde(default = "default_remote_write_path")]
    pub path: String,
    /// When set, requests need `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// Largest body, compressed or not.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    #[serde(default = "default_read_timeout")]
    pub read_timeout: String,
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// Serve TLS (`crt_file`, `key_file`; `ca_file` to require client
    /// certificates). See [`crate::tls`].
    pub tls: Option<crate::tls::TlsConfig>,
    #[serde(default = "default_max_decoded_bytes")]
    pub max_decoded_bytes: usize,
    /// Answer a request once every sink (or its disk buffer) accepted its
    /// events (default), so a client that retries loses nothing to a
    /// crash; `false` answers once they are queued.
    #[serde(default = "super::types::yes")]
    pub acknowledgements: bool,
}

fn default_remote_write_path() -> String {
    "/api/v1/write".into()
}
fn default_max_body_bytes() -> usize {
    10 << 20
}

/// Fluent forward protocol (MessagePack over TCP), for Fluent Bit's and
/// Fluentd's `forward` outputs.
///
/// ```toml
/// [sources.agents]
/// type = "fluent_forward"
/// address = "0.0.0.0:24224"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FluentForwardSource {
    pub address: String,
    /// The field that holds the Fluent tag (`""` leaves it out).
    #[serde(default = "default_tag_field")]
    pub tag_field: String,
    /// Largest forward message on the wire.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Largest gzip-compressed chunk once inflated.
    #[serde(default = "default_max_decompressed_bytes")]
    pub max_decompressed_bytes: usize,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    #[serde(default = "default_read_timeout")]
    pub read_timeout: String,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: String,
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// Serve TLS (`crt_file`, `key_file`; `ca_file` to require client
    /// certificates). See [`crate::tls`].
    pub tls: Option<crate::tls::TlsConfig>,
    #[serde(default = "default_max_decoded_bytes")]
    pub max_decoded_bytes: usize,
}

fn default_tag_field() -> String {
    "tag".into()
}
fn default_max_message_bytes() -> usize {
    16 << 20
}
fn default_max_decompressed_bytes() -> usize {
    64 << 20
}

/// Syslog (RFC 5424 and RFC 3164) over UDP or TCP (octet-counted or
/// newline-framed), as rsyslog and syslog-ng forward it.
///
/// ```toml
/// [sources.syslog]
/// type = "syslog"
/// address = "0.0.0.0:514"
/// mode = "udp"            # or "tcp" (default)
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSource {
    pub address: String,
    #[serde(default)]
    pub mode: SyslogMode,
    /// Longer messages are counted and skipped.
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    #[serde(default = "default_read_timeout")]
    pub read_timeout: String,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: String,
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// Serve TLS (`crt_file`, `key_file`; `ca_file` to require client
    /// certificates). See [`crate::tls`].
    pub tls: Option<crate::tls::TlsConfig>,
}

fn default_max_frame_bytes() -> usize {
    crate::codec::DEFAULT_MAX_LINE_BYTES
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyslogMode {
    #[default]
    Tcp,
    Udp,
}

impl SyslogMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyslogMode::Tcp => "tcp",
            SyslogMode::Udp => "udp",
        }
    }
}

/// Events POSTed over HTTP: JSON lines, NDJSON or a JSON array on `path`;
/// also the request shapes of Elasticsearch's `_bulk` and Loki's push API,
/// so shippers configured for those can send to weir.
///
/// ```toml
/// [sources.http]
/// type = "http"
/// address = "0.0.0.0:8080"
/// token = "${WEIR_HTTP_TOKEN}"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    pub address: String,
    /// Where JSON events are POSTed (`/_bulk` and `/loki/api/v1/push` are
    /// served beside it).
    #[serde(default = "default_http_path")]
    pub path: String,
    /// When set, requests need `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    #[serde(default = "super::types::default_timestamp_field")]
    pub timestamp_field: String,
    /// Largest body, compressed or not.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    #[serde(default = "default_read_timeout")]
    pub read_timeout: String,
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// Serve TLS (`crt_file`, `key_file`; `ca_file` to require client
    /// certificates). See [`crate::tls`].
    pub tls: Option<crate::tls::TlsConfig>,
    #[serde(default = "default_max_decoded_bytes")]
    pub max_decoded_bytes: usize,
    /// Answer a request once every sink (or its disk buffer) accepted its
    /// events (default), so a client that retries loses nothing to a
    /// crash; `false` answers once they are queued.
    #[serde(default = "super::types::yes")]
    pub acknowledgements: bool,
}

fn default_http_path() -> String {
    "/".into()
}
