//! Events out as JSON, written straight from the layout.

use weir_layout::{EventKind, EventView, MetricValue, Value};

/// Appends every event of `batch` as a JSON line.
pub fn write_lines(out: &mut Vec<u8>, batch: &weir_layout::BatchBuf) {
    for event in batch.iter() {
        write_event(out, &event);
        out.push(b'\n');
    }
}

/// Appends `event` as one JSON object (no newline).
///
/// Logs print their fields; metrics print name, kind, labels, value and time.
pub fn write_event(out: &mut Vec<u8>, event: &EventView<'_>) {
    match event.kind() {
        EventKind::Log => write_value(
            out,
            Value::Object(event.object().expect("log events have fields")),
        ),
        EventKind::Metric => match event.metric() {
            Some(Ok(m)) => {
                out.extend_from_slice(b"{\"name\":");
                write_str(out, m.name);
                out.extend_from_slice(b",\"kind\":");
                write_str(out, m.kind.as_str());
                out.extend_from_slice(b",\"labels\":{");
                for (i, (k, v)) in m.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, k);
                    out.push(b':');
                    write_str(out, v);
                }
                out.extend_from_slice(b"},");
                match &m.value {
                    MetricValue::Single(v) => {
                        out.extend_from_slice(b"\"value\":");
                        write_f64(out, *v);
                    }
                    MetricValue::Histogram {
                        count,
                        sum,
                        buckets,
                    } => write_agg(
                        out,
                        *count,
                        *sum,
                        "buckets",
                        buckets.iter().map(|(le, c)| (*le, *c as f64)),
                    ),
                    MetricValue::Summary {
                        count,
                        sum,
                        quantiles,
                    } => write_agg(out, *count, *sum, "quantiles", quantiles.iter().copied()),
                }
                out.extend_from_slice(b",\"timestamp\":");
                write_str(out, &super::timestamp::to_rfc3339(event.timestamp()));
                out.push(b'}');
            }
            _ => out.extend_from_slice(b"{\"_error\":\"malformed metric event\"}"),
        },
    }
}

fn write_agg(
    out: &mut Vec<u8>,
    count: u64,
    sum: f64,
    name: &str,
    pairs: impl Iterator<Item = (f64, f64)>,
) {
    out.extend_from_slice(b"\"count\":");
    out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
    out.extend_from_slice(b",\"sum\":");
    write_f64(out, sum);
    out.extend_from_slice(format!(",\"{name}\":[").as_bytes());
    for (i, (a, b)) in pairs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        write_f64(out, a);
        out.push(b',');
        write_f64(out, b);
        out.push(b']');
    }
    out.push(b']');
}

pub fn write_value(out: &mut Vec<u8>, v: Value<'_>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        Value::Float(f) => write_f64(out, f),
        Value::Str(s) => write_str(out, s),
        // JSON has no bytes; invalid UTF-8 becomes U+FFFD.
        Value::Bytes(b) => write_str(out, &String::from_utf8_lossy(b)),
        Value::Array(a) => {
            out.push(b'[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(o) => {
            out.push(b'{');
            for (i, (k, v)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, v);
            }
            out.push(b'}');
        }
    }
}

/// Non-finite floats have no JSON form and print as `null`.
fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// 0: as is; b'u': \u00XX; other: a two-character escape.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[b as usize];
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[from..i]);
        from = i + 1;
        if esc == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', esc]);
        }
    }
    out.extend_from_slice(&bytes[from..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_layout::BatchBuf;

    #[test]
    fn decode_then_encode_is_the_same_json() {
        let line = r#"{"a":1,"b":"q\"\\\n\u0001é","c":[true,null,1.5,{"d":-2}],"e":{}}"#;
        let mut b = BatchBuf::new();
        super::super::json_decode::decode_object(&mut b, line.as_bytes(), "timestamp", 0).unwrap();
        let mut out = Vec::new();
        write_event(&mut out, &b.get(0).unwrap());
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(line).unwrap()
        );
    }
}
