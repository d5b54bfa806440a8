//! Event time from a field value.

use weir_layout::Value;

/// RFC 3339 strings, or epoch numbers whose unit is guessed from their size
/// (seconds before 1e11, then millis, micros, nanos) as Vector and Fluent Bit
/// do. `None` when the value is not a time.
pub fn from_value(v: Value<'_>) -> Option<i64> {
    match v {
        Value::Str(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt()),
        Value::Int(i) => Some(scale_epoch(i as f64)),
        Value::Float(f) if f.is_finite() => Some(scale_epoch(f)),
        _ => None,
    }
}

fn scale_epoch(x: f64) -> i64 {
    let a = x.abs();
    let ns = if a < 1e11 {
        x * 1e9
    } else if a < 1e14 {
        x * 1e6
    } else if a < 1e17 {
        x * 1e3
    } else {
        x
    };
    ns as i64
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// RFC 3339 text with millisecond precision, as sinks print event times
/// (query rows too).
pub fn to_rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_units_are_inferred() {
        let want = 1_700_000_000_000_000_000;
        for v in [
            Value::Int(1_700_000_000),
            Value::Int(1_700_000_000_000),
            Value::Int(1_700_000_000_000_000),
            Value::Int(want),
            Value::Float(1_700_000_000.0),
        ] {
            assert_eq!(from_value(v), Some(want), "{v:?}");
        }
        assert_eq!(
            from_value(Value::Str("2023-11-14T22:13:20+00:00")),
            Some(want)
        );
        assert_eq!(from_value(Value::Str("yesterday")), None);
        assert_eq!(to_rfc3339(want), "2023-11-14T22:13:20.000Z");
    }
}
