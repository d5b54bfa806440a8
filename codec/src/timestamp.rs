//! Event time from a field value.

use weir_layout::Value;

/// RFC 3339 strings, or epoch numbers whose unit is guessed from their size
/// (seconds before 1e11, then millis, micros, nanos) as Vector and Fluent Bit
/// do. `None` when the value is not a time.
pub fn from_value(v: Value<'_>) -> Option<i64> {
    match v {
        Value::Str(s) => rfc3339(s),
        Value::Int(i) => Some(scale_epoch(i as f64)),
        Value::Float(f) if f.is_finite() => Some(scale_epoch(f)),
        _ => None,
    }
}

/// An RFC 3339 time in ns since the epoch, `None` past what i64 holds.
pub fn rfc3339(s: &str) -> Option<i64> {
    match canonical_rfc3339(s.as_bytes()) {
        Some(ns) => Some(ns),
        None => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt()),
    }
}

/// The shape nearly every log writes, `2024-05-01T12:00:00.123Z` (a
/// fraction of up to 9 digits, `Z` or `±HH:MM`), read without chrono's
/// general parser, which was a tenth of a JSON line's decode. `None` for
/// any other shape and any value out of range: chrono decides those.
fn canonical_rfc3339(b: &[u8]) -> Option<i64> {
    let num = |at: usize, len: usize| -> Option<i64> {
        let digits = b.get(at..at + len)?;
        digits.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + (c - b'0') as i64)
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0;
    if at(i, b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(i + 1, digits)? * 10i64.pow(9 - digits as u32);
        i += 1 + digits;
    }
    let offset = match b.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
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

    #[test]
    fn canonical_times_read_as_chrono_reads_them() {
        let chrono = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
        };
        let mut n = 0;
        for date in [
            "2024-05-01",
            "1970-01-01",
            "1969-12-31",
            "2000-02-29",
            "1900-02-29",
            "2023-02-29",
            "2024-02-29",
            "2262-04-11",
            "2262-04-12",
            "1677-09-21",
            "2024-13-01",
            "2024-04-31",
            "0000-01-01",
            "9999-12-31",
        ] {
            for time in [
                "00:00:00", "23:59:59", "12:34:56", "24:00:00", "12:60:00", "12:00:60",
            ] {
                for frac in ["", ".5", ".123", ".123456789", ".1234567891", "."] {
                    for zone in [
                        "Z", "+00:00", "-07:30", "+14:00", "+24:00", "z", "", "+0100",
                    ] {
                        let s = format!("{date}T{time}{frac}{zone}");
                        assert_eq!(rfc3339(&s), chrono(&s), "{s}");
                        n += canonical_rfc3339(s.as_bytes()).is_some() as usize;
                    }
                }
            }
        }
        assert!(n > 250, "the fast path took {n}");
        for other in [
            "2024-05-01 12:00:00Z",
            "2024-05-01t12:00:00z",
            "yesterday",
            "",
        ] {
            assert_eq!(rfc3339(other), chrono(other), "{other}");
        }
    }
}
