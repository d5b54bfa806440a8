//! Turns nginx/apache access-log lines into fields.
//!
//! ```toml
//! [transforms.access]
//! type = "wasm"
//! plugin = "parse.wasm"
//! config = { field = "message", keep_original = false }
//! ```
//!
//! Reads the common and combined formats:
//! `1.2.3.4 - frank [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 2326 "http://ref/" "curl/8"`
//! and adds `client`, `user`, `time`, `method`, `path`, `protocol`, `status`,
//! `bytes`, and, when present, `referrer` and `user_agent`. `-` becomes null.
//! The event time becomes the request time. Other fields of the event are
//! kept. A line in another shape is an error for that event.

use weir_sdk::{export_transform, Config, Event, Output, Result, Transform, Value};

pub struct Parse {
    field: String,
    keep_original: bool,
}

/// One parsed line, borrowing from it.
#[derive(Debug, PartialEq)]
pub struct Access<'a> {
    pub client: &'a str,
    pub user: Option<&'a str>,
    pub time: &'a str,
    pub time_ns: i64,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub protocol: Option<&'a str>,
    pub status: i64,
    pub bytes: Option<i64>,
    pub referrer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

struct Cursor<'a> {
    s: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn fail<T>(&self, what: &str) -> Result<T> {
        Err(format!(
            "not an access log line: expected {what} at byte {}",
            self.at
        )
        .into())
    }

    fn space(&mut self) {
        while self.s.as_bytes().get(self.at) == Some(&b' ') {
            self.at += 1;
        }
    }

    fn token(&mut self, what: &str) -> Result<&'a str> {
        self.space();
        let rest = &self.s[self.at..];
        let end = rest.find(' ').unwrap_or(rest.len());
        if end == 0 {
            return self.fail(what);
        }
        self.at += end;
        Ok(&rest[..end])
    }

    fn delimited(&mut self, open: u8, close: u8, what: &str) -> Result<&'a str> {
        self.space();
        if self.s.as_bytes().get(self.at) != Some(&open) {
            return self.fail(what);
        }
        let start = self.at + 1;
        let bytes = self.s.as_bytes();
        let mut i = start;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if open == b'"' => i += 2,
                c if c == close => {
                    self.at = i + 1;
                    return Ok(&self.s[start..i]);
                }
                _ => i += 1,
            }
        }
        self.fail(what)
    }

    fn done(&mut self) -> bool {
        self.space();
        self.at >= self.s.len()
    }
}

fn opt(v: Option<&str>) -> Value<'_> {
    v.map_or(Value::Null, Value::Str)
}

fn dash(s: &str) -> Option<&str> {
    (s != "-" && !s.is_empty()).then_some(s)
}

pub fn parse_line(line: &str) -> Result<Access<'_>> {
    let mut c = Cursor { s: line, at: 0 };
    let client = c.token("a client address")?;
    let _ident = c.token("an ident field")?;
    let user = dash(c.token("a user field")?);
    let time = c.delimited(b'[', b']', "`[time]`")?;
    let time_ns = parse_time(time).ok_or_else(|| format!("not an access log time: `{time}`"))?;
    let request = c.delimited(b'"', b'"', "a quoted request")?;
    let mut parts = request.splitn(3, ' ');
    let (method, path, protocol) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(p), proto) if !m.is_empty() => (Some(m), Some(p), proto),
        _ => (None, None, None),
    };
    let status_text = c.token("a status code")?;
    let status = status_text
        .parse()
        .map_err(|_| format!("not an access log line: status `{status_text}` is not a number"))?;
    let bytes_text = c.token("a byte count")?;
    let bytes = match bytes_text {
        "-" => None,
        b => Some(
            b.parse()
                .map_err(|_| format!("not an access log line: bytes `{b}` is not a number"))?,
        ),
    };
    let (mut referrer, mut user_agent) = (None, None);
    if !c.done() {
        referrer = dash(c.delimited(b'"', b'"', "a quoted referrer")?);
        if !c.done() {
            user_agent = dash(c.delimited(b'"', b'"', "a quoted user agent")?);
        }
    }
    Ok(Access {
        client,
        user,
        time,
        time_ns,
        method,
        path,
        protocol,
        status,
        bytes,
        referrer,
        user_agent,
    })
}

/// `10/Oct/2000:13:55:36 -0700` to nanoseconds since the epoch.
fn parse_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let day = num(0..2)?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == &t[3..6])? as i64
        + 1;
    let (year, h, m, s) = (num(7..11)?, num(12..14)?, num(15..17)?, num(18..20)?);
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset = sign * (num(22..24)? * 3600 + num(24..26)? * 60);
    let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s - offset;
    Some(secs * 1_000_000_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Transform for Parse {
    fn new(config: &Config) -> Result<Self> {
        config.reject_unknown(&["field", "keep_original"])?;
        Ok(Parse {
            field: config.get_or("field", "message").to_string(),
            keep_original: config.parse_or("keep_original", false)?,
        })
    }

    fn transform(&mut self, event: &Event, out: &mut Output) -> Result<()> {
        let line = match event.get(&self.field) {
            Some(Value::Str(s)) => s,
            Some(v) => {
                return Err(format!("`{}` is a {}, not text", self.field, v.type_name()).into())
            }
            None => return Err(format!("no `{}` field", self.field).into()),
        };
        let a = parse_line(line)?;
        let fields = event.object().ok_or("not a log event")?;
        out.log(a.time_ns)
            .fields_from(fields, |k| k == self.field && !self.keep_original)
            .field("client", a.client)
            .field("user", opt(a.user))
            .field("time", a.time)
            .field("method", opt(a.method))
            .field("path", opt(a.path))
            .field("protocol", opt(a.protocol))
            .field("status", a.status)
            .field("bytes", a.bytes.map_or(Value::Null, Value::Int))
            .field("referrer", opt(a.referrer))
            .field("user_agent", opt(a.user_agent))
            .finish()?;
        Ok(())
    }
}

export_transform!(Parse);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::{testing, BatchBuf};

    const COMBINED: &str = r#"192.168.1.20 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?a=\"b\" HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;

    #[test]
    fn combined_format() {
        let a = parse_line(COMBINED).unwrap();
        assert_eq!(a.client, "192.168.1.20");
        assert_eq!(a.user, Some("frank"));
        assert_eq!(
            (a.method, a.path, a.protocol),
            (
                Some("GET"),
                Some(r#"/apache_pb.gif?a=\"b\""#),
                Some("HTTP/1.0")
            )
        );
        assert_eq!((a.status, a.bytes), (200, Some(2326)));
        assert_eq!(a.referrer, Some("http://www.example.com/start.html"));
        assert_eq!(a.user_agent, Some("Mozilla/4.08 [en] (Win98; I ;Nav)"));
        // 2000-10-10T20:55:36Z
        assert_eq!(a.time_ns, 971_211_336_000_000_000);
    }

    #[test]
    fn common_format_and_dashes() {
        let a = parse_line(r#"::1 - - [01/Jan/2024:00:00:00 +0000] "-" 400 - "#).unwrap();
        assert_eq!(
            (a.user, a.method, a.bytes, a.referrer),
            (None, None, None, None)
        );
        assert_eq!(a.time_ns, 1_704_067_200_000_000_000);
    }

    #[test]
    fn other_lines_are_errors_that_say_why() {
        for (line, want) in [
            ("hello world", "expected a user field at byte 11"),
            ("1.2.3.4 - - no time", "expected `[time]`"),
            (
                r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" abc 1"#,
                "status `abc`",
            ),
            (
                r#"1.2.3.4 - - [yesterday] "GET /" 200 1"#,
                "not an access log time",
            ),
        ] {
            let e = parse_line(line).unwrap_err().to_string();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn transform_keeps_other_fields_and_sets_event_time() {
        let mut b = BatchBuf::new();
        b.log(0)
            .field("message", COMBINED)
            .field("host", "web-1")
            .finish()
            .unwrap();
        b.log(0).field("message", "garbage").finish().unwrap();
        b.log(0).field("other", 1).finish().unwrap();
        let run = testing::transform::<Parse>(&[], &b).unwrap();
        assert_eq!(run.output.len(), 1);
        let e = run.output.get(0).unwrap();
        assert_eq!(e.timestamp(), 971_211_336_000_000_000);
        assert_eq!(e.get_str("host"), Some("web-1"));
        assert_eq!(e.get("message"), None);
        assert_eq!(e.get("status").and_then(|v| v.as_i64()), Some(200));
        assert_eq!(run.errors.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
        assert!(run.errors[1].1.contains("no `message` field"));
    }
}
