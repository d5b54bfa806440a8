//! Durations as people write them: `interval '1 minute'` in SQL, `"5s"` in
//! the pipeline file.

/// Parses `1 minute`, `10s`, `1m30s`, `500 ms`, `2 hours` into nanoseconds.
///
/// ```
/// assert_eq!(weir_sql::parse_duration("1m30s"), Ok(90_000_000_000));
/// assert_eq!(weir_sql::parse_duration("250 milliseconds"), Ok(250_000_000));
/// assert!(weir_sql::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = |why: &str| {
        format!("`{text}` is not a duration ({why}); write e.g. `30s`, `1 minute`, `1h30m`")
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| bad("a number must come before each unit"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].to_ascii_lowercase();
        rest = rest[unit_len..].trim_start_matches([' ', ',']);
        let scale: f64 = match unit.as_str() {
            "ns" | "nanosecond" | "nanoseconds" => 1.0,
            "us" | "microsecond" | "microseconds" => 1e3,
            "ms" | "millisecond" | "milliseconds" | "msec" => 1e6,
            "s" | "sec" | "secs" | "second" | "seconds" => 1e9,
            "m" | "min" | "mins" | "minute" | "minutes" => 60e9,
            "h" | "hr" | "hour" | "hours" => 3600e9,
            "d" | "day" | "days" => 86_400e9,
            "" => return Err(bad("a unit is missing")),
            _ => return Err(bad(&format!("unknown unit `{unit}`"))),
        };
        let ns = number * scale;
        if !ns.is_finite() || ns > i64::MAX as f64 / 2.0 {
            return Err(bad("too long"));
        }
        total = total.saturating_add(ns as i64);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_compounds() {
        assert_eq!(parse_duration("1 minute"), Ok(60_000_000_000));
        assert_eq!(parse_duration("10 seconds"), Ok(10_000_000_000));
        assert_eq!(parse_duration("1h 30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_duration("0.5s"), Ok(500_000_000));
        assert_eq!(parse_duration("2 DAYS"), Ok(172_800_000_000_000));
        assert!(parse_duration("10")
            .unwrap_err()
            .contains("unit is missing"));
        assert!(parse_duration("3 fortnights")
            .unwrap_err()
            .contains("unknown unit `fortnights`"));
    }
}
