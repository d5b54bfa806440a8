//! Bytes in, events out, and back: where a line becomes an event.

pub mod forward;
pub mod http_body;
mod json_decode;
pub mod json_encode;
pub mod lines;
pub mod prom_text;
pub mod remote_write;
pub mod syslog;
pub mod timestamp;

pub use json_decode::{decode_object, Extra};
pub use lines::{for_each_line, Line, LineSplitter};

use serde::Deserialize;
use weir_layout::BatchBuf;

/// How a source's lines become events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line.
    #[default]
    Json,
    /// Each line is the `message` field.
    Text,
    /// One MessagePack map per record: for framed records (Kafka), not lines.
    Msgpack,
}

impl Format {
    /// `json` or `text`, as the command line spells them.
    pub fn parse(name: &str) -> anyhow::Result<Format> {
        match name {
            "json" => Ok(Format::Json),
            "text" => Ok(Format::Text),
            other => anyhow::bail!("--format: `{other}` is not json or text"),
        }
    }
}

/// Bounds what one request or message may add to a batch as it is decoded.
///
/// A value shared by many entries (a Loki stream's labels, a forward tag,
/// remote write labels) is copied into every event, so a small request can
/// decode to a thousand times its size. Decoders check the budget after
/// every event they append, so the overshoot is one event, and on refusal
/// they take back everything the request appended.
///
/// ```
/// use weir_codec::DecodeBudget;
/// let mut batch = weir_layout::BatchBuf::new();
/// let budget = DecodeBudget::new(&batch, 64);
/// batch.log(0).field("message", "x".repeat(100).as_str()).finish().unwrap();
/// let over = budget.check(&batch).unwrap_err();
/// assert_eq!(over.to_string(), "decoded events exceed max_decoded_bytes (64)");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct DecodeBudget {
    max: usize,
    /// The batch's size when the request started.
    start: usize,
    /// Its events then, to take the request's back.
    events: usize,
}

/// A request decoded to more than its [`DecodeBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    pub max: usize,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "decoded events exceed max_decoded_bytes ({})", self.max)
    }
}

impl std::error::Error for OverBudget {}

impl DecodeBudget {
    /// A budget of `max` bytes for what is appended to `batch` from now on.
    pub fn new(batch: &BatchBuf, max: usize) -> Self {
        DecodeBudget {
            max,
            start: batch.byte_len(),
            events: batch.len(),
        }
    }

    /// `Err` once what was appended since [`DecodeBudget::new`] is over the
    /// budget.
    #[inline]
    pub fn check(&self, batch: &BatchBuf) -> Result<(), OverBudget> {
        if batch.byte_len().saturating_sub(self.start) > self.max {
            return Err(OverBudget { max: self.max });
        }
        Ok(())
    }

    /// Takes back what was appended since [`DecodeBudget::new`].
    pub fn undo(&self, batch: &mut BatchBuf) {
        batch.truncate(self.events);
    }
}

/// Default cap on a line, as in Vector (`max_line_bytes`).
pub const DEFAULT_MAX_LINE_BYTES: usize = 100 * 1024;

/// Turns lines into events; a line that cannot be decoded still becomes an
/// event, carrying the raw text in `message` and the reason in `_error`, so
/// nothing is dropped silently.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub format: Format,
    pub timestamp_field: String,
    pub max_line_bytes: usize,
    /// Lines that became `_error` events.
    pub errors: u64,
}

impl Decoder {
    pub fn new(format: Format, timestamp_field: &str, max_line_bytes: usize) -> Self {
        Decoder {
            format,
            timestamp_field: timestamp_field.to_string(),
            max_line_bytes,
            errors: 0,
        }
    }

    /// Appends the event for `line` (line `line_no` of `origin`) to `batch`.
    pub fn decode(
        &mut self,
        batch: &mut BatchBuf,
        line: Line<'_>,
        origin: &str,
        line_no: u64,
        now: i64,
    ) {
        let (raw, result) = match line {
            Line::Full(bytes) => (bytes, self.parse(batch, bytes, now, &|_| Ok(0))),
            Line::Truncated { head, len } => (
                head,
                Err(format!(
                    "line of at least {len} bytes exceeds max_line_bytes ({}); kept its first {} bytes",
                    self.max_line_bytes, self.max_line_bytes
                )),
            ),
        };
        if let Err(reason) = result {
            self.keep_failed(
                batch,
                raw,
                format!("{origin}:{line_no}: {reason}"),
                now,
                &|_| Ok(0),
            );
        }
    }

    /// Appends the event for one framed record (a Kafka message), with the
    /// source's `extra` fields; `whence` names the record in errors.
    pub fn decode_record(
        &mut self,
        batch: &mut BatchBuf,
        record: &[u8],
        whence: &dyn std::fmt::Display,
        now: i64,
        extra: Extra<'_>,
    ) {
        let result = if record.len() > self.max_line_bytes {
            Err(format!(
                "record of {} bytes exceeds max_line_bytes ({}); kept its first {} bytes",
                record.len(),
                self.max_line_bytes,
                self.max_line_bytes
            ))
        } else {
            self.parse(batch, record, now, extra)
        };
        if let Err(reason) = result {
            let raw = &record[..record.len().min(self.max_line_bytes)];
            self.keep_failed(batch, raw, format!("{whence}: {reason}"), now, extra);
        }
    }

    fn parse(
        &self,
        batch: &mut BatchBuf,
        bytes: &[u8],
        now: i64,
        extra: Extra<'_>,
    ) -> Result<(), String> {
        let ts = &self.timestamp_field;
        match self.format {
            Format::Json => json_decode::decode_json(batch, bytes, ts, now, extra),
            Format::Msgpack => json_decode::decode_msgpack(batch, bytes, ts, now, extra),
            Format::Text => match std::str::from_utf8(bytes) {
                Ok(text) => message_event(batch, now, text, None, extra),
                Err(e) => Err(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
            },
        }
    }

    /// Keeps what could not be decoded as an event with the raw text in
    /// `message` and the reason in `_error`.
    fn keep_failed(
        &mut self,
        batch: &mut BatchBuf,
        raw: &[u8],
        reason: String,
        now: i64,
        extra: Extra<'_>,
    ) {
        self.errors += 1;
        // The time of the event before it, where there is one: an
        // undecodable line sits where it sits in the stream, and
        // arrival time would jump event time ahead of a replayed file.
        let at = batch.len().checked_sub(1).and_then(|i| batch.get(i));
        let time = at.map_or(now, |e| e.timestamp());
        if self.errors <= 10 || self.errors.is_power_of_two() {
            tracing::warn!(
                "{reason} (event kept with `_error`; {} so far)",
                self.errors
            );
        }
        let text = String::from_utf8_lossy(raw);
        let _ = message_event(batch, time, &text, Some(&reason), extra);
    }
}

/// An event of `message` (and `_error`), then the source's own fields.
fn message_event(
    batch: &mut BatchBuf,
    time: i64,
    message: &str,
    error: Option<&str>,
    extra: Extra<'_>,
) -> Result<(), String> {
    let start = batch.begin_log(time);
    let mut enc = batch.encoder();
    let mut write = || -> Result<u32, weir_layout::LayoutError> {
        enc.key("message")?;
        enc.str(message)?;
        let mut n = 1;
        if let Some(e) = error {
            enc.key("_error")?;
            enc.str(e)?;
            n += 1;
        }
        Ok(n + extra(&mut enc)?)
    };
    match write() {
        Ok(n) => batch.end_log(start, n).map_err(|e| e.to_string()),
        Err(e) => {
            batch.abort(start);
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_decode_as_json_text_or_msgpack_with_the_sources_fields() {
        let extra = |enc: &mut weir_layout::Encoder<'_>| {
            enc.key("src")?;
            enc.str("k/0@7")?;
            Ok(1)
        };
        let mut b = BatchBuf::new();
        // {"level": "warn", "timestamp": 1700000000, "bin": <binary "ok">}
        let mut packed = vec![0x83, 0xa5];
        packed.extend(b"level\xa4warn\xa9timestamp\xce");
        packed.extend(1_700_000_000u32.to_be_bytes());
        packed.extend(b"\xa3bin\xc4\x02ok");
        let mut d = Decoder::new(Format::Msgpack, "timestamp", 1024);
        d.decode_record(&mut b, &packed, &"k/0@7", 5, &extra);
        d.decode_record(&mut b, b"\xc1", &"k/0@8", 5, &extra);
        let mut t = Decoder::new(Format::Text, "timestamp", 1024);
        t.decode_record(&mut b, b"plain", &"k/0@9", 5, &extra);

        let e = b.get(0).unwrap();
        assert_eq!(e.get_str("level"), Some("warn"));
        assert_eq!(e.get_str("bin"), Some("ok"));
        assert_eq!(e.timestamp(), 1_700_000_000_000_000_000);
        assert_eq!(e.get_str("src"), Some("k/0@7"));
        let bad = b.get(1).unwrap();
        assert!(bad
            .get_str("_error")
            .unwrap()
            .starts_with("k/0@8: invalid MessagePack"));
        assert_eq!(
            bad.get_str("src"),
            Some("k/0@7"),
            "the error event keeps the fields"
        );
        assert_eq!(d.errors, 1);
        let text = b.get(2).unwrap();
        assert_eq!(
            (text.get_str("message"), text.get_str("src")),
            (Some("plain"), Some("k/0@7"))
        );
    }

    #[test]
    fn an_undecodable_line_keeps_the_time_of_the_event_before_it() {
        let mut d = Decoder::new(Format::Json, "timestamp", 1024);
        let mut b = BatchBuf::new();
        d.decode(&mut b, Line::Full(b"{oops"), "a.log", 1, 7);
        d.decode(
            &mut b,
            Line::Full(br#"{"timestamp":1700000000}"#),
            "a.log",
            2,
            7,
        );
        d.decode(&mut b, Line::Full(b"{oops"), "a.log", 3, 7);
        let times: Vec<i64> = b.iter().map(|e| e.timestamp()).collect();
        assert_eq!(
            times,
            [7, 1_700_000_000_000_000_000, 1_700_000_000_000_000_000]
        );
    }

    #[test]
    fn undecodable_lines_become_visible_error_events() {
        let mut d = Decoder::new(Format::Json, "timestamp", 8);
        let mut b = BatchBuf::new();
        d.decode(&mut b, Line::Full(br#"{"a":1}"#), "app.log", 1, 0);
        d.decode(&mut b, Line::Full(b"not json \xff"), "app.log", 2, 0);
        d.decode(
            &mut b,
            Line::Truncated {
                head: b"{\"a\":\"xx",
                len: 99,
            },
            "app.log",
            3,
            0,
        );
        assert_eq!((b.len(), d.errors), (3, 2));
        let bad = b.get(1).unwrap();
        assert_eq!(bad.get_str("message"), Some("not json \u{fffd}"));
        assert!(bad
            .get_str("_error")
            .unwrap()
            .starts_with("app.log:2: invalid JSON"));
        let long = b.get(2).unwrap();
        assert!(long
            .get_str("_error")
            .unwrap()
            .contains("exceeds max_line_bytes (8)"));

        let mut t = Decoder::new(Format::Text, "timestamp", 8);
        t.decode(&mut b, Line::Full(b"plain"), "x", 1, 0);
        t.decode(&mut b, Line::Full(b"bad \xc3"), "x", 2, 0);
        assert_eq!(b.get(3).unwrap().get_str("message"), Some("plain"));
        assert!(b
            .get(4)
            .unwrap()
            .get_str("_error")
            .unwrap()
            .contains("invalid UTF-8 at byte 4"));
    }
}
