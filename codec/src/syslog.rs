//! Syslog: one message into an event, and a TCP stream into messages.
//!
//! Parsing is syslog_loose's, which tells RFC 5424 from RFC 3164 by content
//! and never rejects a message: what does not parse becomes the `message`.
//! The framer hands out frames as slices of one reusable buffer, so a busy
//! connection costs no allocation per message and a hostile one no more
//! memory than `max_frame_bytes`.

use crate::{message_event, Extra};
use chrono::{DateTime, Datelike, TimeDelta, TimeZone, Utc};
use std::borrow::Cow;
use syslog_loose::{IncompleteDate, Message, ProcId, Protocol, Variant};
use weir_layout::{BatchBuf, Encoder, LayoutError};

/// Appends the event of one syslog message to `batch`.
///
/// Fields: `message`, and where the message has them `hostname`, `appname`,
/// `procid` (an int when numeric), `msgid`, `facility` and `severity` (by
/// name), `version` (RFC 5424 only) and `structured_data` (`{id: {param:
/// value}}`); then the `extra` fields. Absent parts are left out rather than
/// written as null, so a query tells "not sent" from a value.
///
/// The event time is the message's own. RFC 3164 times have neither year nor
/// zone: they are read as UTC, in the latest year that does not put them
/// more than a day after `arrival_ns`, so December messages arriving in
/// January land in the year they were sent.
///
/// A message that is not syslog at all (no PRI, no timestamp) is still kept,
/// whole, as `message`: senders of plain lines to a syslog port are common
/// and their lines are not errors.
///
/// Always appends one event. `Err` says the event was kept with an `_error`
/// field holding the returned reason (invalid UTF-8, decoded lossily), so the
/// caller can count it as the other decoders' errors are counted.
pub fn decode(
    batch: &mut BatchBuf,
    msg: &[u8],
    arrival_ns: i64,
    extra: Extra<'_>,
) -> Result<(), String> {
    let (text, mut error) = match std::str::from_utf8(msg) {
        Ok(s) => (Cow::Borrowed(s), None),
        Err(e) => (
            String::from_utf8_lossy(msg),
            Some(format!(
                "invalid UTF-8 at byte {}; decoded with U+FFFD in its place",
                e.valid_up_to()
            )),
        ),
    };
    // Datagram senders often end a message with a newline (or NUL).
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let parsed = syslog_loose::parse_message_with_year_tz(
        text,
        move |date| year_of(date, arrival_ns),
        Some(Utc),
        Variant::Either,
    );
    let time = parsed
        .timestamp
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(arrival_ns);
    let written = write_event(batch, time, |enc| {
        write_message(enc, &parsed, error.as_deref()).and_then(|n| Ok(n + extra(enc)?))
    });
    if let Err(e) = written {
        // Only a field too large for the layout (a 64 KiB SD-ID, say) gets
        // here: keep the text as it came, with the reason.
        let reason = match error.take() {
            Some(utf8) => format!("{utf8}; {e}"),
            None => format!("syslog message not representable as an event: {e}"),
        };
        let _ = message_event(batch, arrival_ns, text, Some(&reason), extra);
        return Err(reason);
    }
    error.map_or(Ok(()), Err)
}

/// Appends one log event whose fields `fields` writes (returning their count),
/// or nothing if it fails.
pub(crate) fn write_event(
    batch: &mut BatchBuf,
    time: i64,
    fields: impl FnOnce(&mut Encoder<'_>) -> Result<u32, LayoutError>,
) -> Result<(), LayoutError> {
    let start = batch.begin_log(time);
    match fields(&mut batch.encoder()) {
        Ok(n) => batch.end_log(start, n),
        Err(e) => {
            batch.abort(start);
            Err(e)
        }
    }
}

fn write_message(
    enc: &mut Encoder<'_>,
    m: &Message<&str>,
    error: Option<&str>,
) -> Result<u32, LayoutError> {
    // RFC 5424 marks a UTF-8 MSG with a BOM; it is not part of the text.
    let message = m.msg.strip_prefix('\u{feff}').unwrap_or(m.msg);
    let mut n = string(enc, "message", Some(message))?;
    n += string(enc, "_error", error)?;
    n += string(enc, "hostname", m.hostname)?;
    n += string(enc, "appname", m.appname)?;
    match &m.procid {
        Some(ProcId::PID(pid)) => {
            enc.key("procid")?;
            enc.int(i64::from(*pid));
            n += 1;
        }
        Some(ProcId::Name(name)) => n += string(enc, "procid", Some(name))?,
        None => {}
    }
    n += string(enc, "msgid", m.msgid)?;
    n += string(enc, "facility", m.facility.map(|f| f.as_str()))?;
    n += string(enc, "severity", m.severity.map(|s| s.as_str()))?;
    if let Protocol::RFC5424(version) = m.protocol {
        enc.key("version")?;
        enc.int(i64::from(version));
        n += 1;
    }
    if !m.structured_data.is_empty() {
        enc.key("structured_data")?;
        let sd = enc.begin(true);
        for element in &m.structured_data {
            enc.key(element.id)?;
            let params = enc.begin(true);
            let mut count = 0;
            // `params()` undoes the `\"`, `\\` and `\]` escapes.
            for (name, value) in element.params() {
                enc.key(name)?;
                enc.str(&value)?;
                count += 1;
            }
            enc.end(params, count)?;
        }
        enc.end(sd, m.structured_data.len() as u32)?;
        n += 1;
    }
    Ok(n)
}

/// Writes `key` if there is a value; returns the fields written.
fn string(enc: &mut Encoder<'_>, key: &str, value: Option<&str>) -> Result<u32, LayoutError> {
    let Some(v) = value else { return Ok(0) };
    enc.key(key)?;
    enc.str(v)?;
    Ok(1)
}

/// The year of a year-less RFC 3164 time: the latest that puts it no more
/// than a day after arrival (a day allows for skewed clocks).
fn year_of((month, day, h, min, s): IncompleteDate, arrival_ns: i64) -> i32 {
    let arrival = DateTime::from_timestamp_nanos(arrival_ns);
    let limit = arrival
        .checked_add_signed(TimeDelta::days(1))
        .unwrap_or(arrival);
    let year = arrival.year();
    [year + 1, year, year - 1]
        .into_iter()
        .find(|&y| {
            Utc.with_ymd_and_hms(y, month, day, h, min, s)
                .single()
                .is_some_and(|t| t <= limit)
        })
        .unwrap_or(year)
}

/// Why a stretch of a syslog stream was not handed out as a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A frame longer than `max_frame_bytes`; its bytes are skipped.
    TooLong { len: usize, max: usize },
    /// A frame starting with a digit whose length prefix is not 1 to 10
    /// digits and a space; the frame is read as newline-terminated instead.
    Malformed,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLong { len, max } => write!(
                f,
                "syslog frame of at least {len} bytes exceeds max_frame_bytes ({max}); skipped"
            ),
            FrameError::Malformed => f.write_str(
                "frame starts with a digit but not with an octet count (1 to 10 digits and a space); read up to its newline instead",
            ),
        }
    }
}

impl std::error::Error for FrameError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a frame.
    Frame,
    /// At the start of a frame read up to its newline even if it starts with
    /// a digit, after its length prefix was found malformed.
    Line,
    /// Skipping the rest of an over-long octet-counted frame.
    SkipOctets(usize),
    /// Skipping the rest of an over-long line, through its newline.
    SkipLine,
}

/// Bytes read at a time into the framer's buffer.
const READ_CHUNK: usize = 64 * 1024;
/// At most 10 digits and a space.
const MAX_PREFIX: usize = 11;

/// Splits a TCP syslog stream into frames (RFC 6587): octet-counted
/// (`LEN SP MSG`) when a frame starts with a digit, else ended by LF (a CR
/// before it dropped) or NUL. Senders mix the two, so it is decided per frame.
///
/// Frames are slices of one buffer that is reused, not reallocated: after
/// [`Framer::next_frame`] returns `None`, at most `max_frame_bytes` and a
/// length prefix are buffered, whatever the input.
pub struct Framer {
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    max: usize,
    state: State,
}

impl Framer {
    pub fn new(max_frame_bytes: usize) -> Self {
        Framer {
            buf: vec![0; max_frame_bytes.saturating_add(MAX_PREFIX + READ_CHUNK)],
            start: 0,
            end: 0,
            max: max_frame_bytes,
            state: State::Frame,
        }
    }

    /// Moves the unconsumed bytes to the front when that makes room.
    fn compact(&mut self) {
        if self.start > 0 && (self.start == self.end || self.buf.len() - self.end < READ_CHUNK) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Space to read into; call [`Framer::filled`] with the count read.
    pub fn spare(&mut self) -> &mut [u8] {
        self.compact();
        &mut self.buf[self.end..]
    }

    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Adds bytes received. The tail of a frame being skipped is dropped
    /// here rather than buffered. A push larger than the free space grows
    /// the buffer for good: reading into [`Framer::spare`] avoids that.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.start == self.end {
            match self.state {
                State::SkipOctets(left) => {
                    let n = left.min(bytes.len());
                    bytes = &bytes[n..];
                    self.state = if n < left {
                        State::SkipOctets(left - n)
                    } else {
                        State::Frame
                    };
                }
                State::SkipLine => match memchr::memchr2(b'\n', 0, bytes) {
                    Some(i) => {
                        bytes = &bytes[i + 1..];
                        self.state = State::Frame;
                    }
                    None => bytes = &[],
                },
                State::Frame | State::Line => {}
            }
        }
        if bytes.is_empty() {
            return;
        }
        self.compact();
        if self.buf.len() - self.end < bytes.len() {
            self.buf.resize(self.end + bytes.len(), 0);
        }
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Bytes held, not yet handed out or skipped.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The next frame, if a whole one is buffered. An error is reported once
    /// per bad frame; keep calling to get the frames after it. Empty frames
    /// (blank lines, a newline after an octet-counted frame) are passed over.
    pub fn next_frame(&mut self) -> Option<Result<&[u8], FrameError>> {
        let max = self.max;
        loop {
            let avail = &self.buf[self.start..self.end];
            match self.state {
                State::SkipOctets(left) => {
                    let n = left.min(avail.len());
                    self.start += n;
                    if n < left {
                        self.state = State::SkipOctets(left - n);
                        return None;
                    }
                    self.state = State::Frame;
                }
                State::SkipLine => match memchr::memchr2(b'\n', 0, avail) {
                    Some(i) => {
                        self.start += i + 1;
                        self.state = State::Frame;
                    }
                    None => {
                        self.start = self.end;
                        return None;
                    }
                },
                State::Frame | State::Line => {
                    if avail.is_empty() {
                        return None;
                    }
                    if self.state == State::Frame && avail[0].is_ascii_digit() {
                        match octet_prefix(avail) {
                            Prefix::Incomplete => return None,
                            Prefix::Malformed => {
                                self.state = State::Line;
                                return Some(Err(FrameError::Malformed));
                            }
                            Prefix::Len { len, skip } if len > max => {
                                self.start += skip;
                                self.state = State::SkipOctets(len);
                                return Some(Err(FrameError::TooLong { len, max }));
                            }
                            Prefix::Len { len, skip } => {
                                if avail.len() - skip < len {
                                    return None;
                                }
                                let s = self.start + skip;
                                self.start = s + len;
                                if len == 0 {
                                    continue;
                                }
                                return Some(Ok(&self.buf[s..s + len]));
                            }
                        }
                    }
                    match memchr::memchr2(b'\n', 0, avail) {
                        Some(i) => {
                            let s = self.start;
                            self.start += i + 1;
                            self.state = State::Frame;
                            let frame = trim_cr(&self.buf[s..s + i]);
                            if frame.len() > max {
                                let len = frame.len();
                                return Some(Err(FrameError::TooLong { len, max }));
                            }
                            if !frame.is_empty() {
                                return Some(Ok(frame));
                            }
                        }
                        // A frame of `max` bytes may be followed by its CR
                        // while the LF is still on its way.
                        None if avail.len() > max + 1
                            || (avail.len() == max + 1 && avail[max] != b'\r') =>
                        {
                            let len = avail.len();
                            self.start = self.end;
                            self.state = State::SkipLine;
                            return Some(Err(FrameError::TooLong { len, max }));
                        }
                        None => return None,
                    }
                }
            }
        }
    }

    /// At end of input, once [`Framer::next_frame`] has returned `None`: the
    /// last frame if it was not terminated (for an octet-counted frame cut
    /// short, what arrived of it).
    pub fn finish(&mut self) -> Option<&[u8]> {
        let state = std::mem::replace(&mut self.state, State::Frame);
        let (mut s, e) = (self.start, self.end);
        self.start = self.end;
        if !matches!(state, State::Frame | State::Line) || s == e {
            return None;
        }
        if state == State::Frame {
            if let Prefix::Len { skip, .. } = octet_prefix(&self.buf[s..e]) {
                s += skip;
            }
        }
        let frame = trim_cr(&self.buf[s..e]);
        (!frame.is_empty() && frame.len() <= self.max).then_some(frame)
    }
}

enum Prefix {
    /// All digits so far, and not yet too many.
    Incomplete,
    Malformed,
    /// A frame of `len` bytes after the `skip` bytes of its prefix.
    Len {
        len: usize,
        skip: usize,
    },
}

/// Reads `LEN SP` at the start of `bytes`, which starts with a digit.
fn octet_prefix(bytes: &[u8]) -> Prefix {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > MAX_PREFIX - 1 {
        return Prefix::Malformed;
    }
    match bytes.get(digits) {
        None => Prefix::Incomplete,
        Some(b' ') => {
            // At most 10 digits: fits a u64, so only usize can overflow.
            let len = bytes[..digits]
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            Prefix::Len {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                skip: digits + 1,
            }
        }
        Some(_) => Prefix::Malformed,
    }
}

fn trim_cr(frame: &[u8]) -> &[u8] {
    frame.strip_suffix(b"\r").unwrap_or(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_layout::Value;

    /// 2024-10-12T00:00:00Z.
    const OCT_12_2024: i64 = 1_728_691_200_000_000_000;

    fn ns(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    fn one(msg: &[u8], arrival: i64) -> (BatchBuf, Result<(), String>) {
        let mut b = BatchBuf::new();
        let r = decode(&mut b, msg, arrival, &|_| Ok(0));
        assert_eq!(b.len(), 1);
        BatchBuf::from_bytes(b.as_bytes().to_vec()).unwrap();
        (b, r)
    }

    #[test]
    fn rfc5424_with_structured_data() {
        let extra = |enc: &mut Encoder<'_>| {
            enc.key("peer")?;
            enc.str("10.0.0.7:514")?;
            Ok(1)
        };
        let mut b = BatchBuf::new();
        let msg = "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 \
            [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"]\
            [examplePriority@32473 class=\"high\" note=\"a \\\"quoted\\\" \\] bracket\"] \
            \u{feff}An application event log entry...\n";
        decode(&mut b, msg.as_bytes(), 7, &extra).unwrap();
        let e = b.get(0).unwrap();
        assert_eq!(e.timestamp(), ns("2003-10-11T22:14:15.003Z"));
        assert_eq!(
            e.get_str("message"),
            Some("An application event log entry...")
        );
        assert_eq!(e.get_str("hostname"), Some("mymachine.example.com"));
        assert_eq!(e.get_str("appname"), Some("evntslog"));
        assert_eq!(e.get("procid"), None, "`-` is absent, not null");
        assert_eq!(e.get_str("msgid"), Some("ID47"));
        assert_eq!(e.get_str("facility"), Some("local4"));
        assert_eq!(e.get_str("severity"), Some("notice"));
        assert_eq!(e.get("version"), Some(Value::Int(1)));
        assert_eq!(
            e.lookup("structured_data.exampleSDID@32473.eventSource"),
            Some(Value::Str("Application"))
        );
        assert_eq!(
            e.lookup("structured_data.examplePriority@32473.note"),
            Some(Value::Str("a \"quoted\" ] bracket"))
        );
        let sd = e.get("structured_data").unwrap().as_object().unwrap();
        assert_eq!(sd.len(), 2);
        assert_eq!(e.get_str("peer"), Some("10.0.0.7:514"));
        assert_eq!(e.get("_error"), None);
    }

    #[test]
    fn rfc3164_takes_the_year_of_arrival() {
        let msg =
            b"<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed for lonvick on /dev/pts/8";
        let (b, r) = one(msg, OCT_12_2024);
        r.unwrap();
        let e = b.get(0).unwrap();
        assert_eq!(e.timestamp(), ns("2024-10-11T22:14:15Z"));
        assert_eq!(
            e.get_str("message"),
            Some("'su root' failed for lonvick on /dev/pts/8")
        );
        assert_eq!(e.get_str("hostname"), Some("mymachine"));
        assert_eq!(e.get_str("appname"), Some("su"));
        assert_eq!(e.get("procid"), Some(Value::Int(123)));
        assert_eq!(e.get_str("facility"), Some("auth"));
        assert_eq!(e.get_str("severity"), Some("crit"));
        for absent in ["version", "msgid", "structured_data", "_error"] {
            assert_eq!(e.get(absent), None, "{absent}");
        }
    }

    #[test]
    fn rfc3164_times_near_new_year_and_skewed_clocks() {
        for (time, arrival, want) in [
            // Sent on the 31st, arrived on the 1st: last year.
            (
                "Dec 31 23:59:50",
                "2025-01-01T00:00:10Z",
                "2024-12-31T23:59:50Z",
            ),
            // A sender a little ahead at midnight: next year.
            (
                "Jan  1 00:30:00",
                "2024-12-31T23:50:00Z",
                "2025-01-01T00:30:00Z",
            ),
            // Hours ahead is skew, not last year.
            (
                "Oct 12 12:00:00",
                "2024-10-12T00:00:00Z",
                "2024-10-12T12:00:00Z",
            ),
            // More than a day ahead is last year.
            (
                "Oct 14 00:00:00",
                "2024-10-12T00:00:00Z",
                "2023-10-14T00:00:00Z",
            ),
        ] {
            let msg = format!("<13>{time} host app: hi");
            let (b, _) = one(msg.as_bytes(), ns(arrival));
            assert_eq!(
                b.get(0).unwrap().timestamp(),
                ns(want),
                "{msg} at {arrival}"
            );
        }
    }

    #[test]
    fn a_message_without_pri_is_still_a_message() {
        let (b, r) = one(b"just a line from netcat\r\n", 42);
        r.unwrap();
        let e = b.get(0).unwrap();
        assert_eq!(e.get_str("message"), Some("just a line from netcat"));
        assert_eq!(e.timestamp(), 42);
        assert_eq!(e.fields().count(), 1);

        let (b, _) = one(b"Oct 11 22:14:15 host app[7]: no pri", OCT_12_2024);
        let e = b.get(0).unwrap();
        assert_eq!(e.get_str("message"), Some("no pri"));
        assert_eq!(e.get_str("appname"), Some("app"));
        assert_eq!((e.get("facility"), e.get("severity")), (None, None));
    }

    #[test]
    fn facility_and_severity_names() {
        for (pri, facility, severity) in [
            (0, "kern", "emerg"),
            (9, "user", "alert"),
            (18, "mail", "crit"),
            (27, "daemon", "err"),
            (86, "authpriv", "info"),
            (100, "ntp", "warning"),
            (191, "local7", "debug"),
        ] {
            let msg = format!("<{pri}>1 - - - - - - x");
            let (b, _) = one(msg.as_bytes(), 0);
            let e = b.get(0).unwrap();
            assert_eq!(e.get_str("facility"), Some(facility), "{pri}");
            assert_eq!(e.get_str("severity"), Some(severity), "{pri}");
            assert_eq!(e.get_str("message"), Some("x"));
        }
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily_and_noted() {
        let (b, r) = one(b"<13>1 - host app - - - bad \xff byte", 0);
        let reason = r.unwrap_err();
        let e = b.get(0).unwrap();
        assert_eq!(e.get_str("message"), Some("bad \u{fffd} byte"));
        assert_eq!(e.get_str("hostname"), Some("host"));
        assert_eq!(e.get_str("_error"), Some(reason.as_str()));
        assert!(reason.starts_with("invalid UTF-8 at byte 27"), "{reason}");
    }

    #[test]
    fn a_field_too_large_for_the_layout_keeps_the_text() {
        let id = "x".repeat(70_000);
        let msg = format!("<13>1 - - - - - [{id} a=\"b\"] hi");
        let (b, r) = one(msg.as_bytes(), 5);
        assert!(r.unwrap_err().contains("exceeds 65535"));
        assert_eq!(b.get(0).unwrap().get_str("message"), Some(msg.as_str()));
    }

    fn octet(msg: &str) -> String {
        format!("{} {msg}", msg.len())
    }

    /// Frames (`!` + error for errors) of `input` pushed in `parts`, with
    /// the unterminated tail as `EOF:...`.
    fn frames(parts: &[&[u8]], max: usize, direct: bool) -> Vec<String> {
        let mut f = Framer::new(max);
        let mut out = Vec::new();
        for part in parts {
            if direct {
                f.spare()[..part.len()].copy_from_slice(part);
                f.filled(part.len());
            } else {
                f.push(part);
            }
            while let Some(frame) = f.next_frame() {
                out.push(match frame {
                    Ok(b) => String::from_utf8_lossy(b).into_owned(),
                    // The length seen of an unterminated line depends on
                    // how the input was split.
                    Err(FrameError::TooLong { .. }) => "!TooLong".into(),
                    Err(FrameError::Malformed) => "!Malformed".into(),
                });
            }
            assert!(f.buffered() <= max + MAX_PREFIX, "{}", f.buffered());
        }
        if let Some(tail) = f.finish() {
            out.push(format!("EOF:{}", String::from_utf8_lossy(tail)));
        }
        out
    }

    /// The same frames however the input is split: at every byte boundary,
    /// a byte at a time, and whole; pushed and read into `spare()`.
    fn frames_any_split(input: &[u8], max: usize) -> Vec<String> {
        let whole = frames(&[input], max, false);
        for direct in [false, true] {
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(frames(&bytes, max, direct), whole, "byte at a time");
            for at in 0..=input.len() {
                let (a, b) = input.split_at(at);
                assert_eq!(frames(&[a, b], max, direct), whole, "split at {at}");
            }
        }
        whole
    }

    #[test]
    fn octet_counted_and_newline_frames_mixed() {
        let input = [
            octet("<13>1 - - - - - - counted"),
            "<14>line one\n".into(),
            octet("<15>spans\na newline"),
            "\n".into(), // some senders end counted frames with LF too
            "<16>crlf\r\n".into(),
            "<17>nul\0".into(),
            "\n\n".into(),
            octet("<18>last counted"),
            "<19>tail".into(),
        ]
        .concat();
        assert_eq!(
            frames_any_split(input.as_bytes(), 100),
            [
                "<13>1 - - - - - - counted",
                "<14>line one",
                "<15>spans\na newline",
                "<16>crlf",
                "<17>nul",
                "<18>last counted",
                "EOF:<19>tail",
            ]
        );
    }

    #[test]
    fn oversized_frames_are_reported_once_and_skipped() {
        let long = "y".repeat(30);
        let input = [
            "ok\n".into(),
            "x".repeat(20),
            "\r\n".into(),
            octet(&long),
            octet("hello"),
            "12345678\r\n".into(), // exactly max
            "after\n".into(),
        ]
        .concat();
        let got = frames_any_split(input.as_bytes(), 8);
        assert_eq!(got[0], "ok");
        assert_eq!(
            got,
            [
                "ok",
                "!TooLong",
                "!TooLong",
                "hello",
                "!Malformed",
                "12345678",
                "after"
            ]
        );
    }

    #[test]
    fn skipped_bytes_are_not_buffered() {
        let mut f = Framer::new(16);
        f.push(b"1000000 ");
        assert!(matches!(
            f.next_frame(),
            Some(Err(FrameError::TooLong { len: 1_000_000, .. }))
        ));
        f.push(&vec![b'z'; 999_990]);
        assert_eq!(f.buffered(), 0);
        f.push(b"zzzzzzzzzz3 abc");
        assert_eq!(f.next_frame(), Some(Ok(&b"abc"[..])));
        f.push(&vec![b'q'; 1_000_000]);
        assert!(matches!(
            f.next_frame(),
            Some(Err(FrameError::TooLong { .. }))
        ));
        f.push(&vec![b'q'; 1_000_000]);
        assert_eq!(f.buffered(), 0);
        f.push(b"q\nok\n");
        assert_eq!(f.next_frame(), Some(Ok(&b"ok"[..])));
        assert!(f.buf.len() < 1_000_000 + 100, "grew for the pushes only");
    }

    #[test]
    fn malformed_prefixes_fall_back_to_newline_framing() {
        let input = b"2024-05-01 started\n12345678901 x\n0 \n6 <13>hi\n";
        assert_eq!(
            frames_any_split(input, 100),
            [
                "!Malformed",
                "2024-05-01 started",
                "!Malformed",
                "12345678901 x",
                "<13>hi",
            ]
        );
        assert_eq!(frames_any_split(b"12", 100), ["EOF:12"]);
        assert_eq!(frames_any_split(b"10 cut", 100), ["EOF:cut"]);
    }

    /// Arbitrary bytes neither panic nor break the memory bound.
    #[test]
    fn arbitrary_input_is_safe() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"0123456789 \n\r\0<>[]=\"\\-:abc\xff\xc3";
        for _ in 0..300 {
            let len = (next() % 200) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let max = 1 + (next() % 20) as usize;
            let mut f = Framer::new(max);
            let mut b = BatchBuf::new();
            for part in input.chunks(1 + (next() % 7) as usize) {
                f.push(part);
                while let Some(frame) = f.next_frame() {
                    if let Ok(frame) = frame {
                        assert!(frame.len() <= max);
                        let _ = decode(&mut b, frame, 0, &|_| Ok(0));
                    }
                }
                assert!(f.buffered() <= max + MAX_PREFIX);
            }
            let _ = f.finish();
            let _ = decode(&mut b, &input, i64::MAX, &|_| Ok(0));
            let _ = decode(&mut b, &input, i64::MIN, &|_| Ok(0));
            BatchBuf::from_bytes(b.as_bytes().to_vec()).unwrap();
        }
    }
}
