//! JSON lines straight into the batch layout.
//!
//! A flat object of plain values, as most log lines are, is scanned by
//! [`flat`]; any other line is parsed by serde_json driving a visitor that
//! writes each key and value into the batch as it is parsed: no
//! `serde_json::Value` tree, no allocation per field (strings without
//! escapes are borrowed from the line).

mod flat;

use super::timestamp;
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use std::fmt;
use weir_layout::{BatchBuf, Encoder, Value};

/// A source's own fields (a Kafka record's topic and offset, say), written
/// after the record's; returns how many it wrote.
pub type Extra<'a> = &'a dyn Fn(&mut Encoder<'_>) -> Result<u32, weir_layout::LayoutError>;

/// Decodes one JSON object into a log event appended to `batch`.
///
/// The event time comes from `timestamp_field` when present and parseable,
/// else `arrival_ns` (always, if `timestamp_field` is ""). On error nothing
/// is appended and the message says what was wrong and at which column.
pub fn decode_object(
    batch: &mut BatchBuf,
    line: &[u8],
    timestamp_field: &str,
    arrival_ns: i64,
) -> Result<(), String> {
    decode_json(batch, line, timestamp_field, arrival_ns, &|_| Ok(0))
}

/// [`decode_object`], with `extra` fields after the object's.
pub fn decode_json(
    batch: &mut BatchBuf,
    line: &[u8],
    timestamp_field: &str,
    arrival_ns: i64,
    extra: Extra<'_>,
) -> Result<(), String> {
    match flat::decode(batch, line, timestamp_field, arrival_ns, extra) {
        Some(decoded) => decoded,
        None => decode_serde(batch, line, timestamp_field, arrival_ns, extra),
    }
}

/// Any JSON line, through serde_json.
fn decode_serde(
    batch: &mut BatchBuf,
    line: &[u8],
    timestamp_field: &str,
    arrival_ns: i64,
    extra: Extra<'_>,
) -> Result<(), String> {
    decode_with(batch, timestamp_field, arrival_ns, extra, |top| {
        let mut de = serde_json::Deserializer::from_slice(line);
        (&mut de)
            .deserialize_any(top)
            .and_then(|()| de.end())
            .map_err(|e| format!("invalid JSON: {e}"))
    })
}

/// One MessagePack map into a log event, as [`decode_json`] does JSON; the
/// same visitor writes both, so the events are alike.
pub fn decode_msgpack(
    batch: &mut BatchBuf,
    record: &[u8],
    timestamp_field: &str,
    arrival_ns: i64,
    extra: Extra<'_>,
) -> Result<(), String> {
    decode_with(batch, timestamp_field, arrival_ns, extra, |top| {
        let mut de = rmp_serde::Deserializer::from_read_ref(record);
        (&mut de)
            .deserialize_any(top)
            .map_err(|e| format!("invalid MessagePack: {e}"))
    })
}

fn decode_with(
    batch: &mut BatchBuf,
    timestamp_field: &str,
    arrival_ns: i64,
    extra: Extra<'_>,
    parse: impl FnOnce(&mut TopLevel<'_, '_>) -> Result<(), String>,
) -> Result<(), String> {
    let start = batch.begin_log(arrival_ns);
    let mut top = TopLevel {
        enc: batch.encoder(),
        timestamp_field,
        timestamp: None,
        count: 0,
    };
    let parsed = parse(&mut top).and_then(|()| {
        top.count += extra(&mut top.enc).map_err(|e| e.to_string())?;
        Ok(())
    });
    let (count, ts) = (top.count, top.timestamp);
    match parsed {
        Ok(()) => {
            if let Some(ts) = ts {
                batch.set_timestamp(start, ts);
            }
            batch.end_log(start, count).map_err(|e| e.to_string())
        }
        Err(e) => {
            batch.abort(start);
            Err(e)
        }
    }
}

struct TopLevel<'e, 'b> {
    enc: Encoder<'b>,
    timestamp_field: &'e str,
    timestamp: Option<i64>,
    count: u32,
}

impl<'de> Visitor<'de> for &mut TopLevel<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        loop {
            // A key is written as u16 length + bytes; the value follows it.
            let key_at = self.enc.written().len() + 2;
            if map.next_key_seed(KeySeed(&mut self.enc))?.is_none() {
                break;
            }
            let at = self.enc.written().len();
            map.next_value_seed(ValueSeed(&mut self.enc))?;
            self.count += 1;
            let key = &self.enc.written()[key_at..at];
            if self.timestamp.is_none()
                && !self.timestamp_field.is_empty()
                && key == self.timestamp_field.as_bytes()
            {
                if let Ok(v) = Value::decode(&self.enc.written()[at..]) {
                    self.timestamp = timestamp::from_value(v);
                }
            }
        }
        Ok(())
    }
}

struct KeySeed<'a, 'b>(&'a mut Encoder<'b>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<(), E> {
        self.0.key(k).map_err(E::custom)
    }
}

struct ValueSeed<'a, 'b>(&'a mut Encoder<'b>);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.null();
        Ok(())
    }
    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.0.bool(b);
        Ok(())
    }
    fn visit_i64<E>(self, i: i64) -> Result<(), E> {
        self.0.int(i);
        Ok(())
    }
    fn visit_u64<E>(self, u: u64) -> Result<(), E> {
        match i64::try_from(u) {
            Ok(i) => self.0.int(i),
            Err(_) => self.0.float(u as f64),
        }
        Ok(())
    }
    fn visit_f64<E>(self, f: f64) -> Result<(), E> {
        self.0.float(f);
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        self.0.str(s).map_err(E::custom)
    }
    /// MessagePack's binary: text when it is UTF-8, as Fluentd senders mean it.
    fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<(), E> {
        match std::str::from_utf8(b) {
            Ok(s) => self.0.str(s),
            Err(_) => self.0.bytes(b),
        }
        .map_err(E::custom)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mark = self.0.begin(false);
        let mut n = 0;
        while seq.next_element_seed(ValueSeed(self.0))?.is_some() {
            n += 1;
        }
        self.0.end(mark, n).map_err(A::Error::custom)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mark = self.0.begin(true);
        let mut n = 0;
        while map.next_key_seed(KeySeed(self.0))?.is_some() {
            map.next_value_seed(ValueSeed(self.0))?;
            n += 1;
        }
        self.0.end(mark, n).map_err(A::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(line: &str) -> Result<BatchBuf, String> {
        let mut b = BatchBuf::new();
        decode_object(&mut b, line.as_bytes(), "timestamp", 7)?;
        Ok(b)
    }

    #[test]
    fn nested_values_and_event_time() {
        let b = decode(
            r#"{"timestamp":"2024-05-01T12:00:00.5Z","level":"error","http":{"status":503,"tags":["a",1,2.5,null,true]},"big":18446744073709551615,"esc":"a\"b\u00e9"}"#,
        )
        .unwrap();
        let e = b.get(0).unwrap();
        assert_eq!(e.timestamp(), 1_714_564_800_500_000_000);
        assert_eq!(e.get_str("level"), Some("error"));
        assert_eq!(e.lookup("http.status").and_then(|v| v.as_i64()), Some(503));
        assert_eq!(e.lookup("http.tags.2").and_then(|v| v.as_f64()), Some(2.5));
        assert_eq!(e.lookup("http.tags.3"), Some(Value::Null));
        assert_eq!(
            e.get("big").and_then(|v| v.as_f64()),
            Some(18446744073709551615.0)
        );
        assert_eq!(e.get_str("esc"), Some("a\"bé"));
        BatchBuf::from_bytes(b.as_bytes().to_vec()).unwrap();
    }

    #[test]
    fn arrival_time_when_no_timestamp_field() {
        let b = decode(r#"{"msg":"hi","ts":"not the field"}"#).unwrap();
        assert_eq!(b.get(0).unwrap().timestamp(), 7);
    }

    #[test]
    fn bad_json_appends_nothing_and_says_where() {
        let mut b = BatchBuf::new();
        decode_object(&mut b, br#"{"ok":1}"#, "timestamp", 0).unwrap();
        for bad in [
            &br#"{"a":1"#[..],
            b"[1,2]",
            b"{\"a\":\"\xff\"}",
            b"{\"a\":1} trailing",
            b"",
        ] {
            let err = decode_object(&mut b, bad, "timestamp", 0).unwrap_err();
            assert!(err.starts_with("invalid JSON"), "{err}");
        }
        assert_eq!(b.len(), 1);
        BatchBuf::from_bytes(b.as_bytes().to_vec()).unwrap();
        let err = decode_object(&mut b, br#"{"a":"x"#, "timestamp", 0).unwrap_err();
        assert!(err.contains("column"), "{err}");
    }
}
