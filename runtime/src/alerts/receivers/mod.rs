//! Where notifications go: Slack, Alertmanager-style webhooks, Kafka,
//! stdout and files. HTTP receivers retry with exponential backoff on network errors
//! and 5xx, wait as long as a `429`'s `Retry-After` says, and stop at the
//! first success, so a notification is delivered once.

mod slack;

use super::notification::Notification;
use crate::config::ReceiverConfig;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

pub struct Receiver {
    pub name: String,
    pub send_resolved: bool,
    kind: Kind,
    retry_for: Duration,
    /// A client of its own when the receiver has a `tls` setting.
    client: Option<reqwest::Client>,
}

enum Kind {
    Slack {
        url: String,
        link: Option<String>,
        channel: Option<String>,
    },
    Webhook {
        url: String,
        max_alerts: usize,
    },
    Stdout,
    File(PathBuf),
    Kafka {
        producer: rdkafka::producer::FutureProducer,
        topic: String,
    },
}

/// Why one attempt failed.
pub enum Failure {
    /// Worth another try (after this long, if the receiver said).
    Retry {
        after: Option<Duration>,
        why: String,
    },
    /// Another try would fail the same way (a 4xx: wrong URL or payload).
    Fatal(String),
}

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A `Retry-After` longer than this is cut to it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl Receiver {
    /// `resolve` turns a relative file path into one beside the pipeline.
    /// Errors are `(key, message)`.
    pub fn new(
        name: &str,
        cfg: &ReceiverConfig,
        resolve: impl Fn(&std::path::Path) -> PathBuf,
    ) -> Result<Receiver, (String, String)> {
        let url = |u: &str| -> Result<String, (String, String)> {
            let parsed = reqwest::Url::parse(u)
                .map_err(|e| ("url".to_string(), format!("`{u}` is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(("url".into(), format!("`{u}`: only http and https URLs")));
            }
            Ok(u.to_string())
        };
        let retry = |d: &str| -> Result<Duration, (String, String)> {
            weir_sql::parse_duration(d)
                .map(|ns| Duration::from_nanos(ns as u64))
                .map_err(|e| ("retry_for".to_string(), e))
        };
        let tls = match cfg {
            ReceiverConfig::Slack(s) => s.tls.as_ref(),
            ReceiverConfig::Webhook(w) => w.tls.as_ref(),
            _ => None,
        };
        let client = match tls {
            Some(t) => {
                // `resolve` of "" is the pipeline file's directory.
                let loaded = t.resolved(&resolve(std::path::Path::new(""))).client();
                let loaded =
                    loaded.map_err(|(key, what)| ("tls".to_string(), format!("{key}: {what}")))?;
                let built = loaded.apply(builder()).build();
                Some(built.map_err(|e| ("tls".to_string(), e.to_string()))?)
            }
            None => None,
        };
        let (kind, retry_for) = match cfg {
            ReceiverConfig::Slack(s) => (
                Kind::Slack {
                    url: url(&s.url)?,
                    link: s.link.clone(),
                    channel: s.channel.clone(),
                },
                retry(&s.retry_for)?,
            ),
            ReceiverConfig::Webhook(w) => (
                Kind::Webhook {
                    url: url(&w.url)?,
                    max_alerts: w.max_alerts,
                },
                retry(&w.retry_for)?,
            ),
            ReceiverConfig::Stdout(_) => (Kind::Stdout, Duration::ZERO),
            ReceiverConfig::File(f) => {
                let path = resolve(&f.path);
                if let Some(dir) = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
                {
                    return Err((
                        "path".into(),
                        format!("directory {} does not exist", dir.display()),
                    ));
                }
                (Kind::File(path), Duration::ZERO)
            }
            ReceiverConfig::Kafka(k) => {
                let mut c = rdkafka::ClientConfig::new();
                c.set("bootstrap.servers", &k.brokers)
                    .set("message.timeout.ms", "10000");
                for (key, v) in &k.librdkafka_options {
                    c.set(key, v);
                }
                let producer = c
                    .create()
                    .map_err(|e| ("librdkafka_options".to_string(), e.to_string()))?;
                (
                    Kind::Kafka {
                        producer,
                        topic: k.topic.clone(),
                    },
                    retry(&k.retry_for)?,
                )
            }
        };
        Ok(Receiver {
            name: name.to_string(),
            send_resolved: cfg.send_resolved(),
            kind,
            retry_for,
            client,
        })
    }

    /// Delivers `n`, retrying for up to `retry_for`; the error says why it
    /// gave up.
    pub async fn deliver(&self, client: &reqwest::Client, n: &Notification) -> Result<(), String> {
        let started = tokio::time::Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.attempt(client, n).await {
                Ok(()) => return Ok(()),
                Err(Failure::Fatal(why)) => return Err(why),
                Err(Failure::Retry { after, why }) => {
                    let wait = after.map_or(backoff, |a| a.min(MAX_RETRY_AFTER));
                    if started.elapsed() + wait > self.retry_for {
                        return Err(format!("{why}; gave up after {:?}", started.elapsed()));
                    }
                    tracing::warn!(receiver = %self.name, "{why}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn attempt(&self, client: &reqwest::Client, n: &Notification) -> Result<(), Failure> {
        let client = self.client.as_ref().unwrap_or(client);
        match &self.kind {
            Kind::Slack { url, link, channel } => {
                let body = slack::message(n, link.as_deref(), channel.as_deref());
                post_json(client, url, &body).await
            }
            Kind::Webhook { url, max_alerts } => {
                post_json(client, url, &n.webhook_json(*max_alerts)).await
            }
            Kind::Stdout => {
                let line = n.webhook_json(0).to_string() + "\n";
                std::io::stdout()
                    .lock()
                    .write_all(line.as_bytes())
                    .map_err(|e| Failure::Fatal(format!("cannot write to stdout: {e}")))
            }
            Kind::Kafka { producer, topic } => {
                let body = n.webhook_json(0).to_string();
                let record = rdkafka::producer::FutureRecord::to(topic)
                    .payload(&body)
                    .key(&n.group_key);
                match producer.send(record, Duration::from_secs(10)).await {
                    Ok(_) => Ok(()),
                    Err((e, _)) => Err(Failure::Retry {
                        after: None,
                        why: format!("producing to {topic}: {e}"),
                    }),
                }
            }
            Kind::File(path) => {
                let line = n.webhook_json(0).to_string() + "\n";
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(line.as_bytes()))
                    .map_err(|e| Failure::Retry {
                        after: None,
                        why: format!("cannot append to {}: {e}", path.display()),
                    })
            }
        }
    }
}

/// POSTs `body`: 2xx is done; 429 and 5xx and network errors are worth
/// retrying; any other status is not.
async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> Result<(), Failure> {
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            return Err(Failure::Retry {
                after: None,
                // `{:#}` prints the causes too (connection refused, ...).
                why: format!(
                    "POST {}: {:#}",
                    redact(url),
                    anyhow::Error::new(e.without_url())
                ),
            });
        }
    };
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    let why = format!(
        "POST {} answered {status}: {}",
        redact(url),
        text.chars().take(200).collect::<String>()
    );
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Err(Failure::Retry { after, why })
    } else {
        Err(Failure::Fatal(why))
    }
}

/// A webhook URL is a secret (Slack's path is the token): logs show only
/// its scheme and host.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}/...", u.scheme(), u.host_str().unwrap_or("")),
        Err(_) => "(url)".into(),
    }
}

/// One HTTP client for all receivers: TLS with the system's roots, ring
/// as the crypto provider.
pub fn client() -> reqwest::Client {
    builder()
        .build()
        .expect("an HTTP client with the ring provider builds")
}

fn builder() -> reqwest::ClientBuilder {
    crate::install_tls_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
}
