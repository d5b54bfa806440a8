//! Sinks that POST each batch to an HTTP API: a generic JSON endpoint,
//! Elasticsearch's `_bulk`, Loki's push and Prometheus remote write.
//!
//! What they share lives here: one request per batch; 408, 429, 5xx and
//! connection failures retried with backoff for as long as the pipeline
//! runs (the pipeline waits behind them, as behind a Kafka outage); a
//! request refused for good counted, logged with the endpoint's answer, and
//! its batch failed so its sources do not commit it. An API with per-item
//! answers (Elasticsearch) sends again only the items that may succeed.

pub mod elasticsearch;
pub mod json;
pub mod loki;
pub mod remote_write;

use super::component::Runner;
use crate::component::BuildContext;
use crate::config::{Compression, SinkConfig};
use crate::topology::{drain, Rx, Shutdown, Stats};
use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use weir_layout::BatchBuf;

/// What differs between the HTTP sinks.
pub trait Api {
    /// Writes the request body for `batch` into `body` (cleared); returns
    /// how many events it holds (0: nothing to send).
    fn encode(&mut self, batch: &BatchBuf, body: &mut Vec<u8>) -> usize;

    /// Judges a 2xx `answer` to `body` (the last encoded, or the last
    /// `again` of a [`Verdict::Partial`]).
    fn judge(&mut self, _body: &[u8], _answer: &[u8]) -> Verdict {
        Verdict::Accepted
    }
}

/// What an answer means for the request.
pub enum Verdict {
    Accepted,
    /// Some items were refused for good (`refused` of them, `why`), and
    /// `again`, if any, is a body of the items worth sending again.
    Partial {
        refused: usize,
        why: String,
        again: Option<Vec<u8>>,
    },
}

/// How a request ended.
enum Outcome {
    /// Taken, but for `refused` items the endpoint will never take.
    Accepted {
        refused: usize,
    },
    Refused(String),
    /// The pipeline stopped while the endpoint was still failing.
    GaveUp(String),
}

/// Where requests go and how.
pub struct Endpoint {
    pub name: String,
    pub url: String,
    pub timeout: Duration,
    pub headers: HeaderMap,
    pub basic: Option<(String, String)>,
    pub gzip: bool,
    pub tls: Option<crate::tls::ClientTls>,
}

/// What an HTTP sink's settings say about reaching its endpoint.
struct Access<'a> {
    url: String,
    request_timeout: &'a str,
    token: Option<&'a str>,
    basic: Option<(&'a str, &'a str)>,
    headers: &'a indexmap::IndexMap<String, String>,
    compression: Compression,
    tls: Option<&'a crate::tls::TlsConfig>,
}

impl Endpoint {
    /// The endpoint with auth (a bearer token, or basic user and password)
    /// and the user's headers; the error names the setting that is wrong.
    fn new(name: &str, a: Access<'_>) -> Result<Endpoint, (&'static str, String)> {
        let timeout = weir_sql::parse_duration(a.request_timeout)
            .ok()
            .filter(|ns| *ns > 0)
            .map(|ns| Duration::from_nanos(ns as u64))
            .ok_or_else(|| {
                let what = format!("{:?} is not a duration like \"30s\"", a.request_timeout);
                ("request_timeout", what)
            })?;
        let mut headers = HeaderMap::new();
        for (k, v) in a.headers {
            let bad = |e: &dyn std::fmt::Display| ("headers", format!("`{k}`: {e}"));
            let key = HeaderName::try_from(k.as_str()).map_err(|e| bad(&e))?;
            let value = HeaderValue::try_from(v.as_str()).map_err(|e| bad(&e))?;
            headers.insert(key, value);
        }
        if let Some(t) = a.token {
            let mut value = HeaderValue::try_from(format!("Bearer {t}"))
                .map_err(|e| ("token", e.to_string()))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let gzip = a.compression == Compression::Gzip;
        if gzip {
            headers.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            );
        }
        let tls = a.tls.map(|t| t.client()).transpose();
        let tls = tls.map_err(|(key, what)| ("tls", format!("{key}: {what}")))?;
        Ok(Endpoint {
            name: name.to_string(),
            url: a.url,
            timeout,
            headers,
            basic: a.basic.map(|(u, p)| (u.to_string(), p.to_string())),
            gzip,
            tls,
        })
    }

    /// Made when the sink starts, not when the pipeline is checked.
    fn client(&self) -> Result<Client, String> {
        crate::install_tls_provider();
        let builder = Client::builder();
        let builder = match &self.tls {
            Some(tls) => tls.apply_blocking(builder),
            None => builder,
        };
        builder
            .timeout(self.timeout)
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))
    }

    fn post(&self, client: &Client, body: &[u8]) -> Result<(StatusCode, Vec<u8>), String> {
        let body = match self.gzip {
            true => gzip(body),
            false => body.to_vec(),
        };
        let mut request = client.post(&self.url).headers(self.headers.clone());
        if let Some((user, password)) = &self.basic {
            request = request.basic_auth(user, Some(password));
        }
        let chain = |e: reqwest::Error| crate::sources::net::error_chain(&e);
        let resp = request.body(body).send().map_err(chain)?;
        let status = resp.status();
        let answer = resp.bytes().map_err(chain)?;
        Ok((status, answer.to_vec()))
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

/// An HTTP sink, ready to send.
pub type Prepared = (Endpoint, Box<dyn Api + Send>);

/// `cfg` with the paths of its `tls` setting taken from `base` (the
/// pipeline file's directory).
pub fn with_tls_resolved(cfg: &SinkConfig, base: &std::path::Path) -> SinkConfig {
    let mut cfg = cfg.clone();
    let tls = match &mut cfg {
        SinkConfig::Http(c) => &mut c.tls,
        SinkConfig::Elasticsearch(c) => &mut c.tls,
        SinkConfig::Loki(c) => &mut c.tls,
        SinkConfig::PrometheusRemoteWrite(c) => &mut c.tls,
        _ => return cfg,
    };
    if let Some(t) = tls {
        *t = t.resolved(base);
    }
    cfg
}

/// The endpoint and API of an HTTP sink's settings; the error names the
/// setting that is wrong. `weir validate` calls this too.
pub fn prepare(name: &str, cfg: &SinkConfig) -> Result<Prepared, (&'static str, String)> {
    let base = |endpoint: &str, path: &str| format!("{}{path}", endpoint.trim_end_matches('/'));
    let access = match cfg {
        SinkConfig::Http(c) => Access {
            url: c.uri.clone(),
            request_timeout: &c.request_timeout,
            token: c.token.as_deref(),
            basic: None,
            headers: &c.headers,
            compression: c.compression,
            tls: c.tls.as_ref(),
        },
        SinkConfig::Elasticsearch(c) => Access {
            url: base(&c.endpoint, "/_bulk"),
            request_timeout: &c.request_timeout,
            token: c.token.as_deref(),
            basic: c
                .user
                .as_deref()
                .map(|u| (u, c.password.as_deref().unwrap_or(""))),
            headers: &c.headers,
            compression: c.compression,
            tls: c.tls.as_ref(),
        },
        SinkConfig::Loki(c) => Access {
            url: base(&c.endpoint, "/loki/api/v1/push"),
            request_timeout: &c.request_timeout,
            token: c.token.as_deref(),
            basic: None,
            headers: &c.headers,
            compression: c.compression,
            tls: c.tls.as_ref(),
        },
        SinkConfig::PrometheusRemoteWrite(c) => Access {
            url: c.endpoint.clone(),
            request_timeout: &c.request_timeout,
            token: c.token.as_deref(),
            basic: None,
            headers: &c.headers,
            compression: Compression::None,
            tls: c.tls.as_ref(),
        },
        _ => return Err(("type", "not an HTTP sink".into())),
    };
    let mut endpoint = Endpoint::new(name, access)?;
    let (api, content_type): (Box<dyn Api + Send>, _) = match cfg {
        SinkConfig::Elasticsearch(c) => {
            let es = elasticsearch::Elasticsearch::new(&c.index, c.action);
            (
                Box::new(es.map_err(|e| ("index", e))?),
                "application/x-ndjson",
            )
        }
        SinkConfig::Loki(c) => {
            if let Some(t) = &c.tenant_id {
                let v =
                    HeaderValue::try_from(t.as_str()).map_err(|e| ("tenant_id", e.to_string()))?;
                endpoint.headers.insert("X-Scope-OrgID", v);
            }
            let loki = loki::Loki::new(&c.labels, c.line_field.clone());
            (
                Box::new(loki.map_err(|e| ("labels", e))?),
                "application/json",
            )
        }
        SinkConfig::PrometheusRemoteWrite(c) => {
            let h = &mut endpoint.headers;
            h.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static("snappy"),
            );
            h.insert(
                "X-Prometheus-Remote-Write-Version",
                HeaderValue::from_static("0.1.0"),
            );
            let namespace = c.namespace.clone();
            let namespace =
                namespace.unwrap_or_else(|| c.inputs.first().cloned().unwrap_or_default());
            let labels = c.labels.clone();
            (
                Box::new(remote_write::RemoteWrite { namespace, labels }),
                "application/x-protobuf",
            )
        }
        SinkConfig::Http(c) => {
            let json = json::Json {
                encoding: c.encoding,
            };
            let content_type = json.content_type();
            (Box::new(json), content_type)
        }
        _ => unreachable!("not an HTTP sink: refused above"),
    };
    endpoint.headers.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    if let Err(e) = reqwest::Url::parse(&endpoint.url) {
        let key = if matches!(cfg, SinkConfig::Http(_)) {
            "uri"
        } else {
            "endpoint"
        };
        return Err((key, format!("{:?}: {e}", endpoint.url)));
    }
    Ok((endpoint, api))
}

/// Runs an HTTP sink until its input closes.
/// Builds an HTTP sink (`http`, `elasticsearch`, `loki`,
/// `prometheus_remote_write`): its endpoint and API, checked once, are
/// what it runs with.
pub fn build(cfg: &SinkConfig, cx: &mut BuildContext<'_>) -> Option<Runner> {
    let cfg = with_tls_resolved(cfg, cx.pipeline.base_dir());
    let prepared = match prepare(cx.name, &cfg) {
        Ok(prepared) => prepared,
        Err((key, msg)) => {
            cx.problem(key, msg);
            return None;
        }
    };
    let name = cx.name.to_string();
    Some(Box::new(move |input, stats, shutdown| {
        run(&name, prepared, input, stats, shutdown)
    }))
}

fn run(name: &str, prepared: Prepared, input: Rx, stats: Arc<Stats>, shutdown: Shutdown) {
    let (endpoint, mut api) = prepared;
    let client = match endpoint.client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(sink = name, "{e}; stopping the pipeline");
            shutdown.trigger();
            return drain(&input);
        }
    };
    let mut body = Vec::with_capacity(1 << 20);
    while let Ok(batch) = input.recv_blocking() {
        Stats::add(&stats.events_in, batch.len());
        let n = api.encode(&batch, &mut body);
        if n < batch.len() {
            let what = "events could not be encoded (a field the index names is missing, or a row with no number)";
            fail(&endpoint, &stats, "unencodable", batch.len() - n, what);
        }
        if n == 0 {
            batch.fail();
            continue;
        }
        let bytes = body.len();
        match deliver(
            &endpoint,
            &client,
            api.as_mut(),
            std::mem::take(&mut body),
            &stats,
            &shutdown,
        ) {
            Outcome::Accepted { refused } => {
                Stats::add(&stats.events_out, n - refused.min(n));
                Stats::add(&stats.bytes_out, bytes);
                if refused > 0 || n < batch.len() {
                    batch.fail();
                }
            }
            Outcome::Refused(why) => {
                fail(&endpoint, &stats, "rejected", n, &why);
                batch.fail();
            }
            Outcome::GaveUp(why) => {
                fail(
                    &endpoint,
                    &stats,
                    "gave_up",
                    n,
                    &format!("stopping while it still fails: {why}"),
                );
                batch.fail();
            }
        }
    }
}

fn fail(endpoint: &Endpoint, stats: &Stats, reason: &'static str, n: usize, why: &str) {
    Stats::add(&stats.errors, n);
    stats.count_reason(reason, n as u64);
    tracing::error!(sink = %endpoint.name, "{n} events not delivered to {}: {why}", endpoint.url);
}

/// Posts `body` until it is taken, refused for good, or the pipeline stops.
fn deliver(
    endpoint: &Endpoint,
    client: &Client,
    api: &mut dyn Api,
    mut body: Vec<u8>,
    stats: &Stats,
    shutdown: &Shutdown,
) -> Outcome {
    let mut backoff = Backoff::default();
    let mut refused = 0;
    loop {
        let why = match endpoint.post(client, &body) {
            Err(e) => e,
            Ok((status, answer)) if retriable(status) => {
                format!("HTTP {status}: {}", snippet(&answer))
            }
            Ok((status, answer)) if !status.is_success() => {
                return Outcome::Refused(format!("HTTP {status}: {}", snippet(&answer)))
            }
            Ok((_, answer)) => match api.judge(&body, &answer) {
                Verdict::Accepted => return Outcome::Accepted { refused },
                Verdict::Partial {
                    refused: r,
                    why,
                    again,
                } => {
                    refused += r;
                    if r > 0 {
                        stats.count_reason("rejected", r as u64);
                        Stats::add(&stats.errors, r);
                        tracing::error!(sink = %endpoint.name, "{r} items refused: {why}");
                    }
                    match again {
                        None => return Outcome::Accepted { refused },
                        Some(b) => {
                            body = b;
                            "some items were answered 429 or 5xx".to_string()
                        }
                    }
                }
            },
        };
        stats.count_reason("retry", 1);
        if backoff.tries < 3 || backoff.tries.is_power_of_two() {
            tracing::warn!(sink = %endpoint.name, "{}: {why}; trying again", endpoint.url);
        }
        if !backoff.wait(shutdown) {
            return Outcome::GaveUp(why);
        }
    }
}

/// Worth sending again: the endpoint is busy, down or timed out.
fn retriable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// The start of an answer, for a log line.
fn snippet(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(&answer[..answer.len().min(512)]);
    text.trim().to_string()
}

/// Waits between tries: 250 ms doubling to 30 s; once the pipeline is
/// stopping, three more quick tries and then no more.
#[derive(Default)]
struct Backoff {
    tries: u32,
    after_stop: u32,
}

impl Backoff {
    fn wait(&mut self, shutdown: &Shutdown) -> bool {
        self.tries += 1;
        if shutdown.is_triggered() {
            self.after_stop += 1;
            std::thread::sleep(Duration::from_millis(200));
            return self.after_stop <= 3;
        }
        let ms = 250u64.saturating_mul(1 << self.tries.min(7)).min(30_000);
        let until = std::time::Instant::now() + Duration::from_millis(ms);
        while std::time::Instant::now() < until && !shutdown.is_triggered() {
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}
