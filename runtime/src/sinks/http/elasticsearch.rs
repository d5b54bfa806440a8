//! The `elasticsearch` sink: the `_bulk` API, an index per event from a
//! template of fields and the event's date, and per-item answers read so
//! only the items refused with 429 or 5xx are sent again.

use super::{Api, Verdict};
use crate::codec::json_encode;
use crate::config::BulkAction;
use crate::sinks::template::Template;
use serde::Deserialize;
use std::fmt::Write as _;
use std::ops::Range;
use weir_layout::{BatchBuf, EventKind};

pub struct Elasticsearch {
    index: Template,
    /// Whether the index names a date (`%Y`...): then formatted per event.
    dated: bool,
    action: &'static str,
    /// Each item's bytes (action line and document) in the current body.
    items: Vec<Range<usize>>,
    name: String,
    dated_name: String,
}

impl Elasticsearch {
    /// Checks the index pattern: fields, then strftime items.
    pub fn new(index: &str, action: BulkAction) -> Result<Elasticsearch, String> {
        let template = Template::parse(index)?;
        let dated = index.contains('%');
        if dated {
            use chrono::format::{Item, StrftimeItems};
            if StrftimeItems::new(index).any(|i| matches!(i, Item::Error)) {
                return Err(format!(
                    "{index:?} has a `%` that is not a date item (`%%` is a literal %)"
                ));
            }
        }
        Ok(Elasticsearch {
            index: template,
            dated,
            action: match action {
                BulkAction::Index => "index",
                BulkAction::Create => "create",
            },
            items: Vec::new(),
            name: String::new(),
            dated_name: String::new(),
        })
    }

    /// The index of one event; None when a field it names is missing.
    fn index_of(&mut self, event: &weir_layout::EventView<'_>) -> Option<&str> {
        self.index.render(event, &mut self.name).ok()?;
        if !self.dated {
            return Some(&self.name);
        }
        let at = chrono::DateTime::from_timestamp_nanos(event.timestamp());
        self.dated_name.clear();
        write!(self.dated_name, "{}", at.format(&self.name)).ok()?;
        Some(&self.dated_name)
    }
}

impl Api for Elasticsearch {
    fn encode(&mut self, batch: &BatchBuf, body: &mut Vec<u8>) -> usize {
        body.clear();
        self.items.clear();
        for event in batch.iter() {
            let action = self.action;
            let Some(index) = self.index_of(&event) else {
                // Counted by the caller as not sent: the batch fails.
                continue;
            };
            let start = body.len();
            body.extend_from_slice(b"{\"");
            body.extend_from_slice(action.as_bytes());
            body.extend_from_slice(b"\":{\"_index\":");
            json_encode::write_str(body, index);
            body.extend_from_slice(b"}}\n");
            let doc = body.len();
            json_encode::write_event(body, &event);
            // Kibana and data streams want `@timestamp`.
            if event.kind() == EventKind::Log && event.get("@timestamp").is_none() {
                let mut stamp = Vec::with_capacity(48);
                stamp.extend_from_slice(b"\"@timestamp\":");
                json_encode::write_str(
                    &mut stamp,
                    &crate::codec::timestamp::to_rfc3339(event.timestamp()),
                );
                if body.len() - doc > 2 {
                    stamp.push(b',');
                }
                body.splice(doc + 1..doc + 1, stamp);
            }
            body.push(b'\n');
            self.items.push(start..body.len());
        }
        self.items.len()
    }

    fn judge(&mut self, body: &[u8], answer: &[u8]) -> Verdict {
        #[derive(Deserialize)]
        struct Answer {
            errors: bool,
            #[serde(default)]
            items: Vec<std::collections::HashMap<String, Item>>,
        }
        #[derive(Deserialize)]
        struct Item {
            status: u16,
            error: Option<serde_json::Value>,
        }
        let answer: Answer = match serde_json::from_slice(answer) {
            Ok(a) => a,
            Err(e) => {
                return Verdict::Partial {
                    refused: self.items.len(),
                    why: format!("the answer is not a bulk response: {e}"),
                    again: None,
                }
            }
        };
        if !answer.errors {
            return Verdict::Accepted;
        }
        let mut again = Vec::new();
        let mut ranges = Vec::new();
        let (mut refused, mut why) = (0, String::new());
        for (range, item) in self.items.iter().zip(&answer.items) {
            let Some(item) = item.values().next() else {
                continue;
            };
            match item.status {
                200..=299 => {}
                429 | 500..=599 => {
                    let start = again.len();
                    again.extend_from_slice(&body[range.clone()]);
                    ranges.push(start..again.len());
                }
                status => {
                    refused += 1;
                    if why.is_empty() {
                        let error = item
                            .error
                            .as_ref()
                            .map(|e| e.to_string())
                            .unwrap_or_default();
                        why = format!("status {status}: {error}");
                    }
                }
            }
        }
        self.items = ranges;
        Verdict::Partial {
            refused,
            why,
            again: (!again.is_empty()).then_some(again),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> BatchBuf {
        let mut b = BatchBuf::new();
        let day = 1_700_000_000_000_000_000; // 2023-11-14
        for svc in ["api", "db", "web"] {
            b.log(day).field("service", svc).finish().unwrap();
        }
        b
    }

    #[test]
    fn items_name_their_dated_index_and_carry_a_timestamp() {
        let mut es = Elasticsearch::new("logs-{{ service }}-%Y.%m.%d", BulkAction::Create).unwrap();
        let mut body = Vec::new();
        assert_eq!(es.encode(&batch(), &mut body), 3);
        let text = String::from_utf8(body).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"create":{"_index":"logs-api-2023.11.14"}}"#);
        assert_eq!(
            lines[1],
            r#"{"@timestamp":"2023-11-14T22:13:20.000Z","service":"api"}"#
        );
        assert!(Elasticsearch::new("logs-%Q", BulkAction::Index).is_err());
    }

    #[test]
    fn only_items_worth_retrying_are_sent_again() {
        let mut es = Elasticsearch::new("logs", BulkAction::Index).unwrap();
        let mut body = Vec::new();
        es.encode(&batch(), &mut body);
        let answer = br#"{"took":3,"errors":true,"items":[
            {"index":{"status":201}},
            {"index":{"status":429,"error":{"type":"es_rejected_execution_exception"}}},
            {"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}}}]}"#;
        let Verdict::Partial {
            refused,
            why,
            again,
        } = es.judge(&body, answer)
        else {
            panic!("a partial failure");
        };
        assert_eq!(refused, 1);
        assert!(why.contains("mapper_parsing_exception"), "{why}");
        let again = String::from_utf8(again.unwrap()).unwrap();
        assert!(
            again.contains("\"db\"") && !again.contains("\"api\""),
            "{again}"
        );
        let ok = br#"{"took":1,"errors":false,"items":[{"index":{"status":201}}]}"#;
        assert!(matches!(es.judge(again.as_bytes(), ok), Verdict::Accepted));
    }
}
