//! A Slack incoming-webhook message in Block Kit: a header with the state
//! and alert name, each alert's summary and description, its labels, and
//! the optional link; inside an attachment so the bar shows the state's
//! colour.

use crate::alerts::alert::{Alert, State};
use crate::alerts::notification::Notification;
use serde_json::{json, Value};

const FIRING: &str = "#E01E5A";
const RESOLVED: &str = "#2EB67D";
/// Slack's limit is 50 blocks a message; a few go to the header and link.
const MAX_ALERTS: usize = 20;

pub fn message(n: &Notification, link: Option<&str>, channel: Option<&str>) -> Value {
    let title = n.title();
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": truncate(&title, 150) }
    })];
    let alerts: Vec<&Alert> = n.alerts().collect();
    for a in alerts.iter().take(MAX_ALERTS) {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": truncate(&alert_text(a), 3000) }
        }));
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("`{k}={v}`")).collect();
        blocks.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": truncate(&labels.join(" "), 3000) }]
        }));
    }
    if alerts.len() > MAX_ALERTS {
        blocks.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": format!("and {} more", alerts.len() - MAX_ALERTS) }]
        }));
    }
    if let Some(link) = link {
        // Templated over the labels every alert shares.
        let env = minijinja::Environment::new();
        let link = env
            .render_str(link, n.common_labels())
            .unwrap_or_else(|_| link.to_string());
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": format!("<{link}|Open>") }
        }));
    }
    let color = match n.status() {
        State::Firing => FIRING,
        _ => RESOLVED,
    };
    let mut msg = json!({
        "text": title,
        "attachments": [{ "color": color, "blocks": blocks }],
    });
    if let Some(c) = channel {
        msg["channel"] = json!(c);
    }
    msg
}

fn alert_text(a: &Alert) -> String {
    let state = match a.state {
        State::Resolved => "resolved",
        _ => "firing",
    };
    let mut t = format!("*{}* ({state})", a.name());
    for key in ["summary", "description"] {
        if let Some(v) = a.annotations.get(key).filter(|v| !v.is_empty()) {
            t.push('\n');
            t.push_str(v);
        }
    }
    for (k, v) in a
        .annotations
        .iter()
        .filter(|(k, _)| *k != "summary" && *k != "description")
    {
        t.push_str(&format!("\n_{k}_: {v}"));
    }
    t
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}
