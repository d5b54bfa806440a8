//! `[alerts.*]`, `[route]` and `[receivers.*]`: rules over query rows, and
//! where their notifications go, after Prometheus alerting rules and
//! Alertmanager's routing tree.
//!
//! ```toml
//! [alerts.error_burst]
//! query = "per_minute"
//! condition = "errors > 100 AND p99_ms > 250"
//! for = "2m"
//! labels = { severity = "page" }
//! summary = "{{ service }}: {{ errors }} errors a minute"
//!
//! [route]
//! receiver = "slack"
//! group_by = ["alertname", "service"]
//!
//! [receivers.slack]
//! type = "slack"
//! url = "${SLACK_WEBHOOK_URL}"
//! ```

use indexmap::IndexMap;
use serde::Deserialize;
use std::path::PathBuf;

pub type Alerts = IndexMap<String, AlertRule>;
pub type Receivers = IndexMap<String, ReceiverConfig>;

/// One rule: each group of its query's rows (each distinct set of
/// `GROUP BY` values) is an alert instance of its own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// The query whose rows the rule reads.
    pub query: String,
    /// A SQL boolean expression over a row's columns.
    pub condition: String,
    /// How long the condition must hold (in event time) before the alert
    /// fires; until then it is pending (`"0s"`: fires at once).
    #[serde(rename = "for", default = "zero")]
    pub for_: String,
    /// How long an alert keeps firing after its condition stops holding.
    #[serde(default = "zero")]
    pub keep_firing_for: String,
    /// A group that produces no row for this long after the window that
    /// would have had it counts as not meeting the condition (`"0s"`: the
    /// first window without it).
    #[serde(default = "zero")]
    pub no_data_after: String,
    /// Added to the group's values as the alert's labels.
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// Templates over the row's columns, `labels` and `value`: `{{ service }}`.
    pub summary: Option<String>,
    pub description: Option<String>,
    /// More templated annotations, e.g. `runbook_url`.
    #[serde(default)]
    pub annotations: IndexMap<String, String>,
}

fn zero() -> String {
    "0s".into()
}

/// A node of the routing tree. The root takes every alert; a child takes
/// the alerts its `matchers` match, and the first matching child wins
/// unless it says `continue`. Children inherit what they leave out.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub receiver: Option<String>,
    /// Labels whose values split alerts into notification groups
    /// (`["..."]` groups by every label).
    pub group_by: Option<Vec<String>>,
    /// How long a new group waits to collect alerts before the first
    /// notification (default `30s`).
    pub group_wait: Option<String>,
    /// How long before a group's next notification about changes
    /// (default `5m`).
    pub group_interval: Option<String>,
    /// How long before an unchanged notification is sent again (default `4h`).
    pub repeat_interval: Option<String>,
    /// `label="value"`, `label!="value"`, `label=~"regex"`, `label!~"regex"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReceiverConfig {
    Slack(SlackReceiver),
    Webhook(WebhookReceiver),
    Stdout(StdoutReceiver),
    File(FileReceiver),
    Kafka(KafkaReceiver),
}

impl ReceiverConfig {
    pub fn send_resolved(&self) -> bool {
        match self {
            ReceiverConfig::Slack(r) => r.send_resolved,
            ReceiverConfig::Webhook(r) => r.send_resolved,
            ReceiverConfig::Stdout(r) => r.send_resolved,
            ReceiverConfig::File(r) => r.send_resolved,
            ReceiverConfig::Kafka(r) => r.send_resolved,
        }
    }
}

/// A Slack incoming webhook: one Block Kit message per notification.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackReceiver {
    /// The incoming webhook URL; keep it out of the file: `"${SLACK_WEBHOOK_URL}"`.
    pub url: String,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// A link shown in the message (a dashboard, a runbook); templated
    /// over the group's common labels.
    pub link: Option<String>,
    /// Overrides the webhook's channel, where the webhook allows it.
    pub channel: Option<String>,
    /// How long to keep retrying one notification (default `5m`).
    #[serde(default = "default_retry_for")]
    pub retry_for: String,
    /// Trust `ca_file`, present `crt_file`/`key_file`, `verify`.
    pub tls: Option<crate::tls::TlsConfig>,
}

/// POSTs Alertmanager's webhook JSON (version 4).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookReceiver {
    pub url: String,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Most alerts in one message (0: all); the rest are counted in
    /// `truncatedAlerts`.
    #[serde(default)]
    pub max_alerts: usize,
    #[serde(default = "default_retry_for")]
    pub retry_for: String,
    /// Trust `ca_file`, present `crt_file`/`key_file`, `verify`.
    pub tls: Option<crate::tls::TlsConfig>,
}

/// One line per notification on standard output, for local runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutReceiver {
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

/// Notifications appended to a file as JSON lines (the webhook's JSON).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileReceiver {
    pub path: PathBuf,
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

/// Each notification as one record (the webhook's JSON), keyed by its
/// group so a group's notifications stay in order on one partition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaReceiver {
    pub brokers: String,
    pub topic: String,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    #[serde(default = "default_retry_for")]
    pub retry_for: String,
    /// Any librdkafka setting (TLS, SASL), passed as is.
    #[serde(default)]
    pub librdkafka_options: indexmap::IndexMap<String, String>,
}

fn yes() -> bool {
    true
}

fn default_retry_for() -> String {
    "5m".into()
}
