//! The `loki` sink: Loki's push API (JSON), one stream per label set, the
//! labels rendered from each event's fields.

use super::Api;
use crate::codec::json_encode;
use crate::sinks::template::Template;
use std::collections::HashMap;
use weir_layout::{BatchBuf, Value};

pub struct Loki {
    labels: Vec<(String, Template)>,
    line_field: Option<String>,
}

impl Loki {
    pub fn new(
        labels: &indexmap::IndexMap<String, String>,
        line_field: Option<String>,
    ) -> Result<Loki, String> {
        let mut parsed = Vec::new();
        for (k, v) in labels {
            let valid = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`{k}` is not a Loki label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                ));
            }
            parsed.push((
                k.clone(),
                Template::parse(v).map_err(|e| format!("labels.{k}: {e}"))?,
            ));
        }
        Ok(Loki {
            labels: parsed,
            line_field,
        })
    }
}

impl Api for Loki {
    fn encode(&mut self, batch: &BatchBuf, body: &mut Vec<u8>) -> usize {
        // Label values (in `labels` order; "" when a field is missing,
        // which Loki reads as no such label) → the stream's entries.
        let mut streams: HashMap<Vec<String>, Vec<(i64, usize)>> = HashMap::new();
        let mut lines = Vec::with_capacity(batch.byte_len());
        let mut offsets = vec![0];
        let mut json = Vec::new();
        for (i, event) in batch.iter().enumerate() {
            let key = self
                .labels
                .iter()
                .map(|(_, t)| {
                    let mut v = String::new();
                    let _ = t.render(&event, &mut v);
                    v
                })
                .collect();
            // The line is a JSON string: a text field as it is, anything
            // else written as JSON first (into one reused buffer).
            match self.line_field.as_deref().and_then(|f| event.lookup(f)) {
                Some(Value::Str(s)) => json_encode::write_str(&mut lines, s),
                other => {
                    json.clear();
                    match other {
                        Some(v) => json_encode::write_value(&mut json, v),
                        None => json_encode::write_event(&mut json, &event),
                    }
                    json_encode::write_str(&mut lines, &String::from_utf8_lossy(&json));
                }
            }
            offsets.push(lines.len());
            streams.entry(key).or_default().push((event.timestamp(), i));
        }
        body.clear();
        body.extend_from_slice(b"{\"streams\":[");
        for (s, (values, mut entries)) in streams.into_iter().enumerate() {
            if s > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"stream\":{");
            let mut first = true;
            for ((name, _), value) in self.labels.iter().zip(&values) {
                if value.is_empty() {
                    continue;
                }
                if !first {
                    body.push(b',');
                }
                first = false;
                json_encode::write_str(body, name);
                body.push(b':');
                json_encode::write_str(body, value);
            }
            body.extend_from_slice(b"},\"values\":[");
            entries.sort_by_key(|&(ts, _)| ts);
            for (j, (ts, i)) in entries.into_iter().enumerate() {
                if j > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(b"[\"");
                body.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
                body.extend_from_slice(b"\",");
                body.extend_from_slice(&lines[offsets[i]..offsets[i + 1]]);
                body.push(b']');
            }
            body.extend_from_slice(b"]}");
        }
        body.extend_from_slice(b"]}");
        batch.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_grouped_into_streams_by_their_labels() {
        let mut labels = indexmap::IndexMap::new();
        labels.insert("job".to_string(), "weir".to_string());
        labels.insert("service".to_string(), "{{ service }}".to_string());
        let mut loki = Loki::new(&labels, Some("msg".into())).unwrap();
        let mut b = BatchBuf::new();
        b.log(2)
            .field("service", "api")
            .field("msg", "second")
            .finish()
            .unwrap();
        b.log(1)
            .field("service", "api")
            .field("msg", "first")
            .finish()
            .unwrap();
        b.log(3).field("msg", "no service").finish().unwrap();
        let mut body = Vec::new();
        assert_eq!(loki.encode(&b, &mut body), 3);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let mut streams = v["streams"].as_array().unwrap().clone();
        streams.sort_by_key(|s| s["stream"].as_object().unwrap().len());
        assert_eq!(streams[0]["stream"], serde_json::json!({"job": "weir"}));
        assert_eq!(
            streams[0]["values"],
            serde_json::json!([["3", "no service"]])
        );
        assert_eq!(
            streams[1]["values"],
            serde_json::json!([["1", "first"], ["2", "second"]])
        );
        assert!(Loki::new(
            &[("bad-name".to_string(), "x".to_string())]
                .into_iter()
                .collect(),
            None
        )
        .is_err());
    }
}
