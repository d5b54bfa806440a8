//! What a receiver is handed: one group's firing and resolved alerts, and
//! Alertmanager's webhook JSON (version 4) for it.

use super::alert::{Alert, State};
use super::matcher::Labels;
use crate::codec::timestamp::to_rfc3339 as rfc3339;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Notification {
    pub receiver: String,
    pub group_key: String,
    /// The values of the route's `group_by` labels.
    pub group_labels: Labels,
    pub firing: Vec<Alert>,
    pub resolved: Vec<Alert>,
}

impl Notification {
    pub fn status(&self) -> State {
        if self.firing.is_empty() {
            State::Resolved
        } else {
            State::Firing
        }
    }

    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.firing.iter().chain(&self.resolved)
    }

    /// Labels every alert of the notification shares.
    pub fn common_labels(&self) -> Labels {
        common(self.alerts().map(|a| &a.labels))
    }

    pub fn common_annotations(&self) -> Labels {
        common(self.alerts().map(|a| &a.annotations))
    }

    /// `[FIRING:2] name (group values)`, as Alertmanager's default title.
    pub fn title(&self) -> String {
        let n = match self.status() {
            State::Firing => self.firing.len(),
            _ => self.resolved.len(),
        };
        let name = self
            .common_labels()
            .remove(super::alert::ALERTNAME)
            .unwrap_or_else(|| "several alerts".into());
        let rest: Vec<String> = self
            .group_labels
            .iter()
            .filter(|(k, _)| *k != super::alert::ALERTNAME)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut t = format!("[{}:{n}] {name}", self.status().as_str().to_uppercase());
        if !rest.is_empty() {
            t.push_str(&format!(" ({})", rest.join(" ")));
        }
        t
    }

    /// Alertmanager's webhook payload; `max_alerts` 0 sends them all.
    pub fn webhook_json(&self, max_alerts: usize) -> Value {
        let all: Vec<&Alert> = self.alerts().collect();
        let keep = if max_alerts == 0 {
            all.len()
        } else {
            max_alerts.min(all.len())
        };
        let alerts: Vec<Value> = all[..keep].iter().map(|a| alert_json(a)).collect();
        json!({
            "version": "4",
            "groupKey": self.group_key,
            "truncatedAlerts": all.len() - keep,
            "status": self.status().as_str(),
            "receiver": self.receiver,
            "groupLabels": self.group_labels,
            "commonLabels": self.common_labels(),
            "commonAnnotations": self.common_annotations(),
            "externalURL": "",
            "alerts": alerts,
        })
    }
}

fn alert_json(a: &Alert) -> Value {
    let starts = a.fired_at.unwrap_or(a.active_at);
    json!({
        "status": if a.state == State::Resolved { "resolved" } else { "firing" },
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(starts),
        // Alertmanager's zero time for an alert that has not ended.
        "endsAt": a.resolved_at.map_or("0001-01-01T00:00:00Z".to_string(), rfc3339),
        "generatorURL": "",
        "fingerprint": a.fingerprint,
    })
}

fn common<'a>(mut sets: impl Iterator<Item = &'a Labels>) -> Labels {
    let Some(first) = sets.next() else {
        return Labels::new();
    };
    let mut out = first.clone();
    for s in sets {
        out.retain(|k, v| s.get(k) == Some(v));
    }
    out
}
