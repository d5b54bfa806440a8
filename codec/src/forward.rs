//! Fluentd's forward protocol (v1), as Fluent Bit's and Fluentd's `forward`
//! outputs speak it over TCP.
//!
//! The stream is MessagePack arrays back to back with no framing of their
//! own, so the only way to find where one ends is to walk it. [`decode`]
//! first finds the extent of a message without decoding it, trusting no
//! declared length further than the bytes buffered behind it (a short read is
//! cheap to detect, and a forged length costs nothing), then writes its
//! records with the visitor Kafka's MessagePack records go through, so events
//! from either look alike.

use crate::json_decode::{decode_msgpack, Extra};
use crate::DecodeBudget;
use std::fmt;
use std::io::Read;
use std::ops::Range;
use weir_layout::BatchBuf;

/// Bounds on what one peer can make us buffer or inflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One forward message as it is on the wire.
    pub max_message_bytes: usize,
    /// The entries of one compressed message, once inflated: gzip compresses
    /// zeros a thousandfold, so the wire size alone bounds nothing.
    pub max_decompressed_bytes: usize,
    /// The events one message decodes to: the tag is copied into each of
    /// them, so a 4 KiB tag over 200,000 small entries makes a gigabyte.
    pub max_decoded_bytes: usize,
}

impl Default for Limits {
    /// Fluent Bit sends chunks of about 2 MiB; this leaves room to spare.
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 << 20,
            max_decompressed_bytes: 64 << 20,
            max_decoded_bytes: 64 << 20,
        }
    }
}

/// One decoded forward message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Bytes of the buffer it took: the next message starts there.
    pub consumed: usize,
    /// Events appended to the batch, `_error` events included.
    pub events: usize,
    /// Of those, entries kept as `_error` events.
    pub errors: usize,
    /// The sender wants `ack(chunk)` once the events are safe.
    pub chunk: Option<String>,
}

/// Why a connection must be closed: past one of these the stream cannot be
/// resynchronised (there is no frame boundary to look for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `limit` (the [`Limits`] field) is `max` bytes; what it bounds is at
    /// least `size`.
    TooLarge {
        limit: &'static str,
        max: usize,
        size: usize,
    },
    /// Not a forward message; says what and, where it helps, at which byte.
    Malformed(String),
    /// Compressed entries that could not be inflated.
    Decompress(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLarge { limit, max, size } => {
                write!(
                    f,
                    "forward message: {size} bytes or more exceed {limit} ({max})"
                )
            }
            Error::Malformed(what) => write!(f, "malformed forward message: {what}"),
            Error::Decompress(what) => write!(f, "forward entries: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// Decodes the first complete forward message at the start of `buf` into log
/// events in `batch`, each timed by its entry and carrying the tag in
/// `tag_field` (after the record's own fields; none if `tag_field` is "").
///
/// `Ok(None)`: `buf` holds only part of a message, read more. An entry that
/// does not decode (a record that is not a map, a time that is not a time)
/// is kept as an event with `message` and `_error`, as lines are; an `Err`
/// means the connection is to be closed, and then nothing of the message is
/// in `batch`.
pub fn decode(
    buf: &[u8],
    limits: &Limits,
    tag_field: &str,
    arrival_ns: i64,
    batch: &mut BatchBuf,
) -> Result<Option<Message>, Error> {
    decode_from(
        &mut Scan::default(),
        buf,
        limits,
        tag_field,
        arrival_ns,
        batch,
    )
}

/// [`decode`] for a stream read piece by piece: `scan` remembers how far
/// the walk of a message that is not all in yet got, so each read walks
/// only what it added and a large message costs linear time, not a walk
/// from its start per read. Keep one per connection; it starts over by
/// itself after each message.
pub fn decode_from(
    scan: &mut Scan,
    buf: &[u8],
    limits: &Limits,
    tag_field: &str,
    arrival_ns: i64,
    batch: &mut BatchBuf,
) -> Result<Option<Message>, Error> {
    let max = limits.max_message_bytes;
    let too_large = |size| Error::TooLarge {
        limit: "max_message_bytes",
        max,
        size,
    };
    // Looking no further than one byte past the limit bounds the walk.
    let window = &buf[..buf.len().min(max.saturating_add(1))];
    let found = scan.run(window);
    if !matches!(found, Err(Short::Need(_))) {
        *scan = Scan::default();
    }
    let end = match found {
        Ok(end) if end > max => return Err(too_large(end)),
        Ok(end) => end,
        Err(Short::Need(need)) if need > max => return Err(too_large(need)),
        Err(Short::Need(_)) => return Ok(None),
        Err(Short::Bad(what)) => return Err(Error::Malformed(what)),
    };
    let msg = &buf[..end];
    let Parts {
        tag,
        body,
        chunk,
        gzip,
    } = parts(msg)?;

    let extra = |enc: &mut weir_layout::Encoder<'_>| {
        if tag_field.is_empty() {
            return Ok(0);
        }
        enc.key(tag_field)?;
        enc.str(tag)?;
        Ok(1)
    };
    let mut w = Writer {
        budget: DecodeBudget::new(batch, limits.max_decoded_bytes),
        batch,
        extra: &extra,
        arrival_ns,
        events: 0,
        errors: 0,
    };
    match body {
        Body::Message { time_at } => {
            let record_at = skip(msg, time_at).unwrap_or(msg.len());
            let end = skip(msg, record_at).unwrap_or(msg.len());
            w.event(0, msg, time_at, record_at..end);
            w.within_budget()?;
        }
        Body::Forward { at } => {
            let (mut at, n) = match head(msg, at) {
                Ok(h) => (h.body, h.len),
                Err(_) => (at, 0),
            };
            for i in 0..n {
                let Ok(end) = skip(msg, at) else { break };
                w.entry(i, msg, at, end);
                at = end;
                w.within_budget()?;
            }
        }
        Body::Packed(packed) => {
            let inflated;
            let entries = if gzip {
                inflated = gunzip(packed, limits.max_decompressed_bytes)?;
                &inflated[..]
            } else {
                packed
            };
            // All of them are walked before any is written, so that an error
            // leaves nothing of the message in the batch; walked twice
            // rather than remembered, as a million one-byte entries would
            // make a list of ends eight times their size.
            let (mut at, mut n) = (0, 0);
            while at < entries.len() {
                at = skip(entries, at).map_err(|short| {
                    Error::Malformed(match short {
                        Short::Need(_) => format!(
                            "packed entries end inside entry {n} (at byte {at} of {})",
                            entries.len()
                        ),
                        Short::Bad(what) => format!("packed entry {n}: {what}"),
                    })
                })?;
                n += 1;
            }
            let mut at = 0;
            for i in 0..n {
                let Ok(end) = skip(entries, at) else { break };
                w.entry(i, entries, at, end);
                at = end;
                w.within_budget()?;
            }
        }
    }
    Ok(Some(Message {
        consumed: end,
        events: w.events,
        errors: w.errors,
        chunk: chunk.map(str::to_string),
    }))
}

/// The bytes of `{"ack": chunk}`, the answer a sender waits for before it
/// lets go of a chunk it sent with the `chunk` option.
pub fn ack(chunk: &str) -> Vec<u8> {
    let b = chunk.as_bytes();
    // A chunk id came in as a MessagePack string, so it fits in one.
    let b = &b[..b.len().min(u32::MAX as usize)];
    let mut out = Vec::with_capacity(b.len() + 9);
    out.extend_from_slice(b"\x81\xa3ack");
    let n = b.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
    out
}

/// Deep enough for any real record, shallow enough for the stack.
const MAX_DEPTH: u32 = 64;

/// Why a value could not be walked.
#[derive(Debug)]
enum Short {
    /// It goes on past the buffer: at least this many bytes are needed.
    Need(usize),
    /// It is not MessagePack.
    Bad(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nil,
    Bool,
    Int,
    Float,
    Str,
    Bin,
    Ext,
    Array,
    Map,
}

/// A value's marker, read.
#[derive(Debug, Clone, Copy)]
struct Head {
    kind: Kind,
    /// Where its payload (an ext's type byte, for an ext) or first element
    /// starts.
    body: usize,
    /// Payload bytes; elements for an array, pairs for a map.
    len: usize,
}

fn describe(kind: Kind) -> &'static str {
    match kind {
        Kind::Nil => "nil",
        Kind::Bool => "a boolean",
        Kind::Int => "an integer",
        Kind::Float => "a float",
        Kind::Str => "a string",
        Kind::Bin => "binary",
        Kind::Ext => "an extension value",
        Kind::Array => "an array",
        Kind::Map => "a map",
    }
}

/// Reads the marker (and length) of the value at `at`.
fn head(b: &[u8], at: usize) -> Result<Head, Short> {
    let m = *b.get(at).ok_or(Short::Need(at + 1))?;
    let p = at + 1;
    // A length of `w` bytes, big-endian, right after the marker.
    let len = |w: usize| -> Result<usize, Short> {
        let bytes = b.get(p..p + w).ok_or(Short::Need(p + w))?;
        Ok(bytes.iter().fold(0usize, |n, &x| (n << 8) | x as usize))
    };
    let fixed = |kind, len| Ok(Head { kind, body: p, len });
    let sized = |kind, w| {
        Ok(Head {
            kind,
            body: p + w,
            len: len(w)?,
        })
    };
    match m {
        0x00..=0x7f | 0xe0..=0xff => fixed(Kind::Int, 0),
        0x80..=0x8f => fixed(Kind::Map, (m & 0x0f) as usize),
        0x90..=0x9f => fixed(Kind::Array, (m & 0x0f) as usize),
        0xa0..=0xbf => fixed(Kind::Str, (m & 0x1f) as usize),
        0xc0 => fixed(Kind::Nil, 0),
        0xc1 => Err(Short::Bad(format!("byte 0xc1 (never used) at byte {at}"))),
        0xc2 | 0xc3 => fixed(Kind::Bool, 0),
        0xc4..=0xc6 => sized(Kind::Bin, 1 << (m - 0xc4)),
        // ext 8/16/32: length, then the type byte, then the data.
        0xc7..=0xc9 => {
            let w = 1 << (m - 0xc7);
            Ok(Head {
                kind: Kind::Ext,
                body: p + w,
                len: len(w)?.saturating_add(1),
            })
        }
        0xca => fixed(Kind::Float, 4),
        0xcb => fixed(Kind::Float, 8),
        0xcc..=0xcf => fixed(Kind::Int, 1 << (m - 0xcc)),
        0xd0..=0xd3 => fixed(Kind::Int, 1 << (m - 0xd0)),
        0xd4..=0xd8 => fixed(Kind::Ext, 1 + (1 << (m - 0xd4))),
        0xd9..=0xdb => sized(Kind::Str, 1 << (m - 0xd9)),
        0xdc => sized(Kind::Array, 2),
        0xdd => sized(Kind::Array, 4),
        0xde => sized(Kind::Map, 2),
        0xdf => sized(Kind::Map, 4),
    }
}

/// The end of the value at `at` of a buffer that holds it whole, without
/// decoding it: the hot path of every entry, so a recursion with nothing
/// to set up, where [`Scan`] is for a message still arriving.
///
/// Every element takes at least a byte, so a container whose count alone
/// runs past `b` is short before any of it is walked, and the walk is
/// bounded by `b.len()` whatever the counts say.
fn skip(b: &[u8], at: usize) -> Result<usize, Short> {
    skip_nested(b, at, 0)
}

fn skip_nested(b: &[u8], at: usize, depth: usize) -> Result<usize, Short> {
    let h = head(b, at)?;
    let items = match container_items(&h) {
        None => return leaf_end(&h, b.len()),
        Some(n) => n,
    };
    enter(&h, items, b.len(), depth, at)?;
    let mut p = h.body;
    for _ in 0..items {
        p = skip_nested(b, p, depth + 1)?;
    }
    Ok(p)
}

/// Elements of an array, keys and values of a map; `None` for a leaf.
fn container_items(h: &Head) -> Option<usize> {
    match h.kind {
        Kind::Array => Some(h.len),
        Kind::Map => Some(h.len.saturating_mul(2)),
        _ => None,
    }
}

/// Where a leaf ends, if the buffer holds it.
fn leaf_end(h: &Head, len: usize) -> Result<usize, Short> {
    let end = h.body.saturating_add(h.len);
    if end > len {
        return Err(Short::Need(end));
    }
    Ok(end)
}

/// Checks that a container of `items` at `depth` may be walked.
fn enter(h: &Head, items: usize, len: usize, depth: usize, at: usize) -> Result<(), Short> {
    let least = h.body.saturating_add(items);
    if least > len {
        return Err(Short::Need(least));
    }
    if items > 0 && depth >= MAX_DEPTH as usize {
        return Err(Short::Bad(format!(
            "nested deeper than {MAX_DEPTH} at byte {at}"
        )));
    }
    Ok(())
}

/// A walk over one MessagePack value that can stop where the buffer ends
/// and go on from there once more is read, with the same checks as
/// [`skip`]. The open containers are an array: no allocation.
#[derive(Debug, Clone)]
pub struct Scan {
    at: usize,
    /// Values still to walk in each open container; `[0]` is the one value
    /// the walk is for.
    left: [usize; MAX_DEPTH as usize + 2],
    depth: usize,
}

impl Default for Scan {
    fn default() -> Self {
        let mut left = [0; MAX_DEPTH as usize + 2];
        left[0] = 1;
        Scan {
            at: 0,
            left,
            depth: 0,
        }
    }
}

impl Scan {
    /// Walks on through `b` (the same bytes as before, and maybe more) to
    /// the value's end. On `Short::Need` it keeps its place.
    fn run(&mut self, b: &[u8]) -> Result<usize, Short> {
        loop {
            while self.left[self.depth] == 0 {
                if self.depth == 0 {
                    return Ok(self.at);
                }
                self.depth -= 1;
            }
            let h = head(b, self.at)?;
            let Some(items) = container_items(&h) else {
                self.at = leaf_end(&h, b.len())?;
                self.left[self.depth] -= 1;
                continue;
            };
            enter(&h, items, b.len(), self.depth, self.at)?;
            self.left[self.depth] -= 1;
            self.at = h.body;
            if items > 0 {
                self.depth += 1;
                self.left[self.depth] = items;
            }
        }
    }
}

/// The UTF-8 string at `at` and where it ends.
fn text(b: &[u8], at: usize) -> Option<(&str, usize)> {
    let h = head(b, at).ok()?;
    if h.kind != Kind::Str {
        return None;
    }
    let end = h.body.checked_add(h.len)?;
    let s = std::str::from_utf8(b.get(h.body..end)?).ok()?;
    Some((s, end))
}

/// What a message holds, located in it.
struct Parts<'a> {
    tag: &'a str,
    body: Body<'a>,
    chunk: Option<&'a str>,
    gzip: bool,
}

enum Body<'a> {
    /// `[tag, time, record]`: the time is at `time_at`.
    Message { time_at: usize },
    /// `[tag, [[time, record], ...]]`: the array is at `at`.
    Forward { at: usize },
    /// `[tag, entries]`: concatenated `[time, record]` arrays.
    Packed(&'a [u8]),
}

/// Tells the mode apart and reads the tag and the option. `msg` is one whole
/// value (walked by [`skip`]), so nothing in it is short.
fn parts(msg: &[u8]) -> Result<Parts<'_>, Error> {
    let bad = |s: String| Error::Malformed(s);
    let walk = |at| skip(msg, at).map_err(|_| bad(format!("truncated value at byte {at}")));
    let top = head(msg, 0).map_err(|_| bad("empty".into()))?;
    if top.kind != Kind::Array {
        return Err(bad(format!(
            "a forward message is an array, not {}",
            describe(top.kind)
        )));
    }
    if !(2..=4).contains(&top.len) {
        return Err(bad(format!(
            "a forward message has 2 to 4 elements, not {}",
            top.len
        )));
    }
    let tag_at = top.body;
    let (tag, second_at) = match (text(msg, tag_at), head(msg, tag_at)) {
        (Some(tag), _) => tag,
        (None, Ok(h)) if h.kind == Kind::Str => {
            return Err(bad(format!("the tag (at byte {tag_at}) is not UTF-8")))
        }
        (None, h) => {
            let what = h.map_or("nothing", |h| describe(h.kind));
            return Err(bad(format!(
                "the tag (at byte {tag_at}) is not a string but {what}"
            )));
        }
    };
    let second = head(msg, second_at).map_err(|_| bad("truncated".into()))?;
    let (body, option_at) = match (second.kind, top.len) {
        (Kind::Array, 2 | 3) => (Body::Forward { at: second_at }, 3),
        (Kind::Str | Kind::Bin, 2 | 3) => {
            let end = walk(second_at)?;
            (Body::Packed(&msg[second.body..end]), 3)
        }
        // Whatever the time is, the record can be kept: an `_error` entry.
        (_, 3 | 4) if !matches!(second.kind, Kind::Array | Kind::Str | Kind::Bin) => {
            (Body::Message { time_at: second_at }, 4)
        }
        (kind, n) => {
            return Err(bad(format!(
                "no forward mode has {n} elements with {} second (at byte {second_at})",
                describe(kind)
            )))
        }
    };
    let (mut chunk, mut compressed) = (None, None);
    if top.len == option_at {
        // The option is the last element.
        let mut at = second_at;
        for _ in 2..top.len {
            at = walk(at)?;
        }
        let h = head(msg, at).map_err(|_| bad("truncated option".into()))?;
        match h.kind {
            Kind::Nil => {}
            Kind::Map => {
                let mut p = h.body;
                for _ in 0..h.len {
                    let value_at = walk(p)?;
                    let key = text(msg, p).map(|(k, _)| k);
                    match key {
                        Some("chunk") => {
                            let (c, _) = text(msg, value_at).ok_or_else(|| {
                                bad(format!(
                                    "option `chunk` (at byte {value_at}) is not a string"
                                ))
                            })?;
                            chunk = Some(c);
                        }
                        Some("compressed") => {
                            compressed = Some(text(msg, value_at).map(|(c, _)| c));
                        }
                        _ => {}
                    }
                    p = walk(value_at)?;
                }
            }
            kind => {
                return Err(bad(format!(
                    "the option (at byte {at}) is a map, not {}",
                    describe(kind)
                )))
            }
        }
    }
    // Only packed entries are ever compressed; "text" is Fluentd's none.
    let gzip = match (&body, compressed) {
        (Body::Packed(_), Some(Some("gzip"))) => true,
        (Body::Packed(_), Some(Some(c))) if c != "text" => {
            return Err(Error::Decompress(format!(
                "compressed `{c}` is not supported (gzip is)"
            )))
        }
        (Body::Packed(_), Some(None)) => {
            return Err(Error::Decompress(
                "option `compressed` is not a string".into(),
            ))
        }
        _ => false,
    };
    Ok(Parts {
        tag,
        body,
        chunk,
        gzip,
    })
}

/// Inflates gzip members (Fluent Bit may send several back to back) without
/// ever holding more than `max` bytes of them.
fn gunzip(data: &[u8], max: usize) -> Result<Vec<u8>, Error> {
    let mut gz = flate2::read::MultiGzDecoder::new(data);
    let mut out = Vec::new();
    let mut piece = [0u8; 32 * 1024];
    loop {
        let n = match gz.read(&mut piece) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Decompress(format!("gzip: {e}"))),
        };
        let need = out.len() + n;
        if need > max {
            return Err(Error::TooLarge {
                limit: "max_decompressed_bytes",
                max,
                size: need,
            });
        }
        if out.capacity() < need {
            // Doubling, as a Vec does, but never past the cap.
            let cap = out.capacity().saturating_mul(2).max(need).min(max);
            out.reserve_exact(cap - out.len());
        }
        out.extend_from_slice(&piece[..n]);
    }
}

/// An entry's time in nanoseconds: integer or float seconds, or an EventTime
/// (ext 0: big-endian u32 seconds and u32 nanoseconds).
fn entry_time(b: &[u8], at: usize) -> Result<i64, String> {
    let h = head(b, at).map_err(|_| "no time".to_string())?;
    // Fluent Bit sends `[time, metadata]` in its place (by default from 5.0.5
    // on, `retain_metadata_in_forward_mode`); the metadata is not kept.
    if h.kind == Kind::Array && h.len == 2 && head(b, h.body).is_ok_and(|t| t.kind != Kind::Array) {
        return entry_time(b, h.body);
    }
    let end = h.body.saturating_add(h.len);
    let data = b.get(h.body..end).unwrap_or_default();
    let be = |d: &[u8]| d.iter().fold(0u64, |n, &x| (n << 8) | x as u64);
    let m = b.get(at).copied().unwrap_or(0);
    let out_of_range = || {
        let raw = b.get(at..end).unwrap_or_default();
        format!("time {} is out of range", render(raw))
    };
    let secs = |s: i128| i64::try_from(s * 1_000_000_000).map_err(|_| out_of_range());
    match (h.kind, m) {
        (Kind::Int, 0x00..=0x7f) => secs(m as i128),
        (Kind::Int, 0xe0..=0xff) => secs(m as i8 as i128),
        (Kind::Int, 0xcc..=0xcf) => secs(be(data) as i128),
        (Kind::Int, _) => secs(match *data {
            [a] => a as i8 as i128,
            [a, b] => i16::from_be_bytes([a, b]) as i128,
            [a, b, c, d] => i32::from_be_bytes([a, b, c, d]) as i128,
            _ => be(data) as i64 as i128,
        }),
        (Kind::Float, _) => {
            let f = match *data {
                [a, b, c, d] => f32::from_be_bytes([a, b, c, d]) as f64,
                _ => f64::from_bits(be(data)),
            };
            let ns = f * 1e9;
            // i64::MAX as f64 rounds up to 2^63, itself out of range.
            if ns.is_finite() && ns >= i64::MIN as f64 && ns < i64::MAX as f64 {
                Ok(ns as i64)
            } else {
                Err(out_of_range())
            }
        }
        (Kind::Ext, _) if data.len() == 9 && data[0] == 0 => {
            let s = be(&data[1..5]) as i64;
            let ns = be(&data[5..9]) as i64;
            Ok(s * 1_000_000_000 + ns)
        }
        (kind, _) => Err(format!(
            "time is not an integer, a float or an EventTime but {}",
            describe(kind)
        )),
    }
}

/// Text for the `message` of an `_error` event: a string as it is, other
/// values as JSON where they have a JSON form.
fn render(v: &[u8]) -> String {
    if let Some((s, _)) = text(v, 0) {
        return s.to_string();
    }
    match rmp_serde::from_slice::<serde_json::Value>(v) {
        Ok(j) => j.to_string(),
        Err(_) => String::from_utf8_lossy(v).into_owned(),
    }
}

/// Appends the events of one message.
struct Writer<'a, 'b> {
    /// What the message may add to the batch.
    budget: DecodeBudget,
    batch: &'a mut BatchBuf,
    extra: Extra<'b>,
    arrival_ns: i64,
    events: usize,
    errors: usize,
}

impl Writer<'_, '_> {
    /// `Err`, with nothing of the message left in the batch, once its
    /// events pass `max_decoded_bytes`.
    fn within_budget(&mut self) -> Result<(), Error> {
        self.budget.check(self.batch).map_err(|e| {
            let size = self.batch.byte_len();
            self.budget.undo(self.batch);
            Error::TooLarge {
                limit: "max_decoded_bytes",
                max: e.max,
                size,
            }
        })
    }

    /// Entry `i`, `b[at..end]`: a `[time, record]` array.
    fn entry(&mut self, i: usize, b: &[u8], at: usize, end: usize) {
        match head(b, at) {
            Ok(h) if h.kind == Kind::Array && h.len == 2 => {
                // The record ends where the entry does.
                let record_at = skip(b, h.body).unwrap_or(end);
                self.event(i, b, h.body, record_at..end);
            }
            _ => {
                let raw = b.get(at..end).unwrap_or_default();
                let why = "is not a [time, record] array".to_string();
                self.failed(i, self.arrival_ns, raw, why);
            }
        }
    }

    /// The event of entry `i`, whose time is at `time_at` of `b` and record
    /// is `b[record]`.
    fn event(&mut self, i: usize, b: &[u8], time_at: usize, record: Range<usize>) {
        let record = b.get(record).unwrap_or_default();
        let time = match entry_time(b, time_at) {
            Ok(t) => t,
            Err(why) => return self.failed(i, self.arrival_ns, record, why),
        };
        if let Ok(h) = head(record, 0) {
            if h.kind != Kind::Map {
                let why = format!("record is not a map but {}", describe(h.kind));
                return self.failed(i, time, record, why);
            }
        }
        match decode_msgpack(self.batch, record, "", time, self.extra) {
            Ok(()) => self.events += 1,
            Err(why) => self.failed(i, time, record, why),
        }
    }

    fn failed(&mut self, i: usize, time: i64, raw: &[u8], why: String) {
        let why = format!("forward entry {i}: {why}");
        if crate::message_event(self.batch, time, &render(raw), Some(&why), self.extra).is_ok() {
            self.events += 1;
            self.errors += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use serde_json::json;
    use std::io::Write;

    const LIMITS: Limits = Limits {
        max_message_bytes: 1 << 20,
        max_decompressed_bytes: 1 << 20,
        max_decoded_bytes: 4 << 20,
    };
    const T0: u32 = 1_700_000_000;
    const NS0: i64 = T0 as i64 * 1_000_000_000;

    fn arr(n: u32) -> Vec<u8> {
        match n {
            0..=15 => vec![0x90 | n as u8],
            16..=0xffff => [&[0xdc][..], &(n as u16).to_be_bytes()].concat(),
            _ => [&[0xdd][..], &n.to_be_bytes()].concat(),
        }
    }
    fn s(x: &str) -> Vec<u8> {
        rmp_serde::to_vec(x).unwrap()
    }
    fn bin(x: &[u8]) -> Vec<u8> {
        [&[0xc6][..], &(x.len() as u32).to_be_bytes(), x].concat()
    }
    fn event_time(secs: u32, ns: u32) -> Vec<u8> {
        [&[0xd7, 0x00][..], &secs.to_be_bytes(), &ns.to_be_bytes()].concat()
    }
    fn int(i: i64) -> Vec<u8> {
        rmp_serde::to_vec(&i).unwrap()
    }
    fn val(v: serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec(&v).unwrap()
    }
    fn entry(time: &[u8], record: serde_json::Value) -> Vec<u8> {
        [arr(2), time.to_vec(), val(record)].concat()
    }
    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(b).unwrap();
        gz.finish().unwrap()
    }

    fn run(buf: &[u8]) -> (Result<Option<Message>, Error>, BatchBuf) {
        let mut b = BatchBuf::new();
        let r = decode(buf, &LIMITS, "tag", 42, &mut b);
        BatchBuf::from_bytes(b.as_bytes().to_vec()).unwrap();
        (r, b)
    }
    fn ok(buf: &[u8]) -> (Message, BatchBuf) {
        let (r, b) = run(buf);
        let m = r.unwrap().expect("a whole message");
        assert_eq!(m.consumed, buf.len());
        assert_eq!(m.events, b.len());
        (m, b)
    }
    fn malformed(buf: &[u8]) -> String {
        match run(buf) {
            (Err(Error::Malformed(why)), b) if b.is_empty() => why,
            other => panic!("{other:?}"),
        }
    }

    /// Three entries, with an EventTime, an integer and a float time.
    fn entries() -> Vec<u8> {
        [
            entry(&event_time(T0, 5), json!({"msg": "a", "n": 1})),
            entry(&int(T0 as i64 + 1), json!({"msg": "b"})),
            entry(&val(json!(T0 as f64 + 2.5)), json!({"msg": "c"})),
        ]
        .concat()
    }
    fn check_entries(b: &BatchBuf) {
        let got: Vec<_> = b
            .iter()
            .map(|e| (e.timestamp(), e.get_str("msg"), e.get_str("tag")))
            .collect();
        assert_eq!(
            got,
            [
                (NS0 + 5, Some("a"), Some("app.web")),
                (NS0 + 1_000_000_000, Some("b"), Some("app.web")),
                (NS0 + 2_500_000_000, Some("c"), Some("app.web")),
            ]
        );
        assert_eq!(b.get(0).unwrap().get("n").unwrap().as_i64(), Some(1));
    }

    #[test]
    fn message_mode_with_and_without_ack() {
        let record = json!({"log": "hello", "kubernetes": {"pod": "p-1"}, "timestamp": 5});
        let with_ack = [
            arr(4),
            s("app.web"),
            event_time(T0, 123),
            val(record.clone()),
            val(json!({"chunk": "cnk=", "size": 1})),
        ]
        .concat();
        let (m, b) = ok(&with_ack);
        assert_eq!(
            (m.events, m.errors, m.chunk.as_deref()),
            (1, 0, Some("cnk="))
        );
        let e = b.get(0).unwrap();
        // The entry's time, not the record's `timestamp`.
        assert_eq!(e.timestamp(), NS0 + 123);
        assert_eq!(e.get_str("log"), Some("hello"));
        assert_eq!(e.lookup("kubernetes.pod").unwrap().as_str(), Some("p-1"));
        assert_eq!(e.get_str("tag"), Some("app.web"));

        for plain in [
            [arr(3), s("app.web"), int(T0 as i64), val(record.clone())].concat(),
            [
                arr(4),
                s("app.web"),
                int(T0 as i64),
                val(record),
                vec![0xc0],
            ]
            .concat(),
        ] {
            let (m, b) = ok(&plain);
            assert_eq!((m.events, m.chunk), (1, None));
            assert_eq!(b.get(0).unwrap().timestamp(), NS0);
        }
    }

    #[test]
    fn forward_mode() {
        let forward = |opt: Option<serde_json::Value>| {
            let mut m = [
                arr(2 + opt.is_some() as u32),
                s("app.web"),
                arr(3),
                entries(),
            ]
            .concat();
            m.extend(opt.map(val).unwrap_or_default());
            m
        };
        let (m, b) = ok(&forward(None));
        assert_eq!((m.events, m.errors, m.chunk), (3, 0, None));
        check_entries(&b);
        let (m, b) = ok(&forward(Some(json!({"size": 3, "chunk": "c1"}))));
        assert_eq!(m.chunk.as_deref(), Some("c1"));
        check_entries(&b);
        // `compressed` means nothing outside packed entries.
        let (m, b) = ok(&forward(Some(json!({"compressed": "zstd"}))));
        assert_eq!((m.events, m.errors), (3, 0));
        check_entries(&b);
    }

    #[test]
    fn fluent_bit_metadata_in_place_of_the_time() {
        let time = [arr(2), event_time(T0, 7), val(json!({"otlp": {}}))].concat();
        let msg = [arr(2), s("t"), arr(1), entry(&time, json!({"msg": "m"}))].concat();
        let (m, b) = ok(&msg);
        assert_eq!(m.errors, 0);
        assert_eq!(b.get(0).unwrap().timestamp(), NS0 + 7);
        assert_eq!(b.get(0).unwrap().get_str("msg"), Some("m"));
        let nested = [arr(2), arr(2), int(1), int(1), val(json!({}))].concat();
        let msg = [arr(2), s("t"), arr(1), entry(&nested, json!({"msg": "m"}))].concat();
        assert_eq!(ok(&msg).0.errors, 1);
    }

    #[test]
    fn packed_forward_in_bin_or_str() {
        let packed = [
            arr(3),
            s("app.web"),
            bin(&entries()),
            val(json!({"chunk": "c2"})),
        ]
        .concat();
        let (m, b) = ok(&packed);
        assert_eq!((m.events, m.chunk.as_deref()), (3, Some("c2")));
        check_entries(&b);
        // Old senders pack the entries as a (raw) string.
        let e = entries();
        let str8 = [&[0xda][..], &(e.len() as u16).to_be_bytes(), &e].concat();
        let (m, b) = ok(&[arr(2), s("app.web"), str8].concat());
        assert_eq!((m.events, m.chunk), (3, None));
        check_entries(&b);
    }

    #[test]
    fn compressed_packed_forward_in_one_or_several_gzip_members() {
        let e = entries();
        let opt = val(json!({"compressed": "gzip", "chunk": "c3", "size": 3}));
        let one = [arr(3), s("app.web"), bin(&gzip(&e)), opt.clone()].concat();
        let (m, b) = ok(&one);
        assert_eq!((m.events, m.chunk.as_deref()), (3, Some("c3")));
        check_entries(&b);
        // Members split mid-entry, as appending to a gzip chunk does.
        let members = [gzip(&e[..7]), gzip(&e[7..30]), gzip(&e[30..])].concat();
        let (m, b) = ok(&[arr(3), s("app.web"), bin(&members), opt].concat());
        assert_eq!(m.events, 3);
        check_entries(&b);
        // Fluentd's `compressed: text` is no compression.
        let text = val(json!({"compressed": "text"}));
        let (m, b) = ok(&[arr(3), s("app.web"), bin(&e), text].concat());
        assert_eq!(m.events, 3);
        check_entries(&b);
    }

    #[test]
    fn compression_that_cannot_be_inflated_closes_the_connection() {
        let msg = |data: &[u8], how: &str| {
            [arr(3), s("t"), bin(data), val(json!({"compressed": how}))].concat()
        };
        let corrupt = gzip(&entries())[..20].to_vec();
        for (m, want) in [
            (msg(&corrupt, "gzip"), "gzip"),
            (msg(&entries(), "gzip"), "gzip"),
            (
                msg(&entries(), "zstd"),
                "compressed `zstd` is not supported",
            ),
            (
                [arr(3), s("t"), bin(&[]), val(json!({"compressed": 1}))].concat(),
                "`compressed` is not a string",
            ),
        ] {
            match run(&m) {
                (Err(Error::Decompress(why)), b) if b.is_empty() => {
                    assert!(why.contains(want), "{why}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_gzip_bomb_is_refused_at_the_cap() {
        let zeros = vec![0u8; 8 << 20];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 64 << 10);
        let msg = [
            arr(3),
            s("t"),
            bin(&bomb),
            val(json!({"compressed": "gzip"})),
        ]
        .concat();
        let (r, b) = run(&msg);
        assert!(b.is_empty());
        match r {
            Err(Error::TooLarge {
                limit: "max_decompressed_bytes",
                max,
                size,
            }) => assert!(max == 1 << 20 && size > max),
            other => panic!("{other:?}"),
        }
        assert!(r_display(&msg).contains("max_decompressed_bytes (1048576)"));
    }

    fn r_display(msg: &[u8]) -> String {
        run(msg).0.unwrap_err().to_string()
    }

    #[test]
    fn the_tag_field_is_configurable_or_off() {
        let msg = [
            arr(3),
            s("app.web"),
            int(1),
            val(json!({"tag": "own", "a": 1})),
        ]
        .concat();
        let mut b = BatchBuf::new();
        decode(&msg, &LIMITS, "", 0, &mut b).unwrap().unwrap();
        decode(&msg, &LIMITS, "fluent_tag", 0, &mut b)
            .unwrap()
            .unwrap();
        let e = b.get(0).unwrap();
        assert_eq!(
            (e.get_str("tag"), e.get_str("fluent_tag")),
            (Some("own"), None)
        );
        let e = b.get(1).unwrap();
        assert_eq!(e.get_str("fluent_tag"), Some("app.web"));
        // Written after the record's fields, so the record's own wins.
        decode(&msg, &LIMITS, "tag", 0, &mut b).unwrap().unwrap();
        assert_eq!(b.get(2).unwrap().get_str("tag"), Some("own"));
    }

    #[test]
    fn a_message_split_anywhere_waits_for_the_rest() {
        let e = entries();
        for msg in [
            [
                arr(3),
                s("app.web"),
                arr(3),
                e.clone(),
                val(json!({"chunk": "c"})),
            ]
            .concat(),
            [
                arr(3),
                s("app.web"),
                bin(&gzip(&e)),
                val(json!({"compressed": "gzip"})),
            ]
            .concat(),
            [
                arr(4),
                s("app.web"),
                event_time(T0, 5),
                val(json!({"msg": "a", "n": 1})),
                vec![0x80],
            ]
            .concat(),
        ] {
            for cut in 0..msg.len() {
                let (r, b) = run(&msg[..cut]);
                assert_eq!(r, Ok(None), "cut at {cut}");
                assert!(b.is_empty());
            }
            let (m, b) = ok(&msg);
            assert_eq!(m.errors, 0);
            assert_eq!(b.get(0).unwrap().get_str("msg"), Some("a"));
        }
    }

    #[test]
    fn messages_back_to_back() {
        let one = [arr(3), s("a"), int(1), val(json!({"x": 1}))].concat();
        let two = [arr(2), s("b"), arr(1), entry(&int(2), json!({"x": 2}))].concat();
        let stream = [one.clone(), two.clone(), two[..5].to_vec()].concat();
        let mut b = BatchBuf::new();
        let mut at = 0;
        let mut consumed = vec![];
        while let Some(m) = decode(&stream[at..], &LIMITS, "tag", 0, &mut b).unwrap() {
            consumed.push(m.consumed);
            at += m.consumed;
        }
        assert_eq!(consumed, [one.len(), two.len()]);
        assert_eq!(at, one.len() + two.len());
        let got: Vec<_> = b
            .iter()
            .map(|e| (e.get_str("tag"), e.timestamp()))
            .collect();
        assert_eq!(
            got,
            [(Some("a"), 1_000_000_000), (Some("b"), 2_000_000_000)]
        );
    }

    #[test]
    fn entries_that_do_not_decode_are_kept_as_error_events() {
        let msg = [
            arr(3),
            s("t"),
            arr(6),
            [arr(2), int(10), s("plain text")].concat(),
            entry(&int(11), json!({"ok": true})),
            entry(&int(12), json!([1, "two"])),
            entry(&s("yesterday"), json!({"a": 1})),
            int(7),
            [arr(2), int(13), vec![0x81, 0x01, 0x02]].concat(),
            val(json!({"chunk": "c"})),
        ]
        .concat();
        let (m, b) = ok(&msg);
        assert_eq!((m.events, m.errors, m.chunk.as_deref()), (6, 5, Some("c")));
        let got: Vec<_> = b
            .iter()
            .map(|e| {
                (
                    e.timestamp(),
                    e.get_str("message"),
                    e.get_str("_error"),
                    e.get_str("tag"),
                )
            })
            .collect();
        let sec = 1_000_000_000;
        assert_eq!(
            got[0],
            (
                10 * sec,
                Some("plain text"),
                Some("forward entry 0: record is not a map but a string"),
                Some("t")
            )
        );
        assert_eq!(b.get(1).unwrap().get("ok").unwrap().as_bool(), Some(true));
        assert_eq!(got[2].1, Some(r#"[1,"two"]"#));
        assert_eq!(
            got[3],
            (
                42,
                Some(r#"{"a":1}"#),
                Some(
                    "forward entry 3: time is not an integer, a float or an EventTime but a string"
                ),
                Some("t")
            )
        );
        assert_eq!(
            (got[4].1, got[4].2),
            (
                Some("7"),
                Some("forward entry 4: is not a [time, record] array")
            )
        );
        assert_eq!(got[5].0, 13 * sec);
        assert!(got[5].2.unwrap().contains("invalid MessagePack"), "{got:?}");
    }

    #[test]
    fn times_out_of_range_are_errors_not_wraps() {
        for time in [int(i64::MAX), val(json!(u64::MAX)), val(json!(1e300))] {
            let (m, b) = ok(&[arr(3), s("t"), time, val(json!({"a": 1}))].concat());
            assert_eq!(m.errors, 1);
            let e = b.get(0).unwrap();
            assert!(e.get_str("_error").unwrap().contains("out of range"));
        }
        let (_, b) = ok(&[arr(3), s("t"), int(-2), val(json!({}))].concat());
        assert_eq!(b.get(0).unwrap().timestamp(), -2_000_000_000);
    }

    #[test]
    fn garbage_is_malformed_and_says_what() {
        let rec = val(json!({"a": 1}));
        for (msg, want) in [
            (s("just a string"), "is an array, not a string"),
            (val(json!({"a": 1})), "is an array, not a map"),
            ([arr(1), s("t")].concat(), "2 to 4 elements, not 1"),
            (
                [arr(5), s("t"), int(1), rec.clone(), vec![0x80], vec![0x80]].concat(),
                "not 5",
            ),
            (
                [arr(3), int(1), int(1), rec.clone()].concat(),
                "tag (at byte 1) is not a string but an integer",
            ),
            (
                [arr(3), vec![0xa1, 0xff], int(1), rec.clone()].concat(),
                "not UTF-8",
            ),
            (
                [arr(2), s("t"), int(1)].concat(),
                "2 elements with an integer second",
            ),
            (
                [arr(4), s("t"), arr(0), rec.clone(), vec![0x80]].concat(),
                "4 elements with an array",
            ),
            (
                [arr(3), s("t"), arr(0), int(3)].concat(),
                "option (at byte 4) is a map, not an integer",
            ),
            (
                [arr(3), s("t"), arr(0), val(json!({"chunk": 1}))].concat(),
                "option `chunk`",
            ),
            (
                [arr(2), s("t"), vec![0xc1]].concat(),
                "0xc1 (never used) at byte 3",
            ),
        ] {
            let why = malformed(&msg);
            assert!(why.contains(want), "{why:?} lacks {want:?}");
        }
        // The whole message is refused if packed entries break off, even
        // after good ones.
        let mut e = entries();
        e.pop();
        let why = malformed(&[arr(2), s("t"), bin(&e)].concat());
        assert!(why.contains("end inside entry 2"), "{why}");
        let why = malformed(&[arr(2), s("t"), bin(&[entries(), vec![0xc1]].concat())].concat());
        assert!(why.contains("packed entry 3"), "{why}");
        assert!(r_display(&s("x")).starts_with("malformed forward message: "));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing_into_it() {
        let deep = [vec![0x91; 100_000], vec![0xc0]].concat();
        let why = malformed(&[arr(3), s("t"), int(1), deep].concat());
        assert!(why.contains("nested deeper than 64"), "{why}");
    }

    #[test]
    fn declared_sizes_cost_nothing_until_backed_by_bytes() {
        let too_large = |buf: &[u8]| match run(buf) {
            (
                Err(Error::TooLarge {
                    limit: "max_message_bytes",
                    ..
                }),
                b,
            ) => assert!(b.is_empty()),
            other => panic!("{other:?}"),
        };
        // Four billion elements (or bytes) cannot fit under the limit.
        too_large(&arr(u32::MAX));
        too_large(&[arr(2), s("t"), arr(u32::MAX)].concat());
        too_large(&[arr(2), s("t"), vec![0xc6, 0xff, 0xff, 0xff, 0xff]].concat());
        too_large(&[arr(2), s("t"), vec![0xdf, 0x10, 0, 0, 0]].concat());
        // A million elements might: wait for them.
        assert_eq!(
            run(&[arr(2), s("t"), arr(1_000_000), int(1)].concat()).0,
            Ok(None)
        );
        // A whole message past the limit, and a buffer past it with no end
        // in sight.
        let small = Limits {
            max_message_bytes: 64,
            ..LIMITS
        };
        let big = [arr(3), s("t"), int(1), val(json!({"a": "x".repeat(100)}))].concat();
        let mut b = BatchBuf::new();
        for buf in [&big[..], &big[..70]] {
            let r = decode(buf, &small, "tag", 0, &mut b);
            assert!(matches!(r, Err(Error::TooLarge { max: 64, .. })), "{r:?}");
        }
        // Known as soon as the string's length is read.
        assert_eq!(decode(&big[..8], &small, "tag", 0, &mut b), Ok(None));
        let e = decode(&big[..9], &small, "tag", 0, &mut b).unwrap_err();
        assert_eq!(
            e.to_string(),
            "forward message: 109 bytes or more exceed max_message_bytes (64)"
        );
        // The limit is inclusive.
        let exact = |max| Limits {
            max_message_bytes: max,
            ..LIMITS
        };
        let r = decode(&big, &exact(big.len() - 1), "tag", 0, &mut b);
        assert!(matches!(r, Err(Error::TooLarge { size: 109, .. })), "{r:?}");
        assert!(b.is_empty());
        let r = decode(&big, &exact(big.len()), "tag", 0, &mut b);
        assert_eq!(r.unwrap().unwrap().consumed, big.len());
    }

    /// Fed a byte range at a time, a message is found where a whole read
    /// finds it, each piece walked once.
    #[test]
    fn a_message_read_in_pieces_is_walked_once() {
        let entries: Vec<u8> = (0..3000)
            .flat_map(|i| entry(&int(i), json!({"i": i, "nested": {"a": [1, 2]}})))
            .collect();
        let msg = [arr(2), s("app"), arr(3000), entries].concat();
        let (whole, whole_batch) = ok(&msg);
        for piece in [1, 7, 4096] {
            let mut scan = Scan::default();
            let mut b = BatchBuf::new();
            let mut found = None;
            for end in (piece..msg.len() + piece).step_by(piece) {
                let buf = &msg[..end.min(msg.len())];
                match decode_from(&mut scan, buf, &LIMITS, "tag", 42, &mut b).unwrap() {
                    Some(m) => {
                        found = Some(m);
                        break;
                    }
                    None => assert!(scan.at <= buf.len()),
                }
            }
            assert_eq!(found.as_ref(), Some(&whole), "pieces of {piece}");
            assert_eq!(b, whole_batch);
            // The scan starts over for the next message.
            assert_eq!((scan.at, scan.depth), (0, 0));
        }
    }

    /// The tag is copied into every event: a message of many small entries
    /// under a long tag is refused once its events pass the budget, and
    /// nothing of it stays in the batch.
    #[test]
    fn a_tag_shared_by_many_entries_is_bounded_as_written() {
        let tag = "t".repeat(4096);
        let entries: Vec<u8> = (0..2000).flat_map(|i| entry(&int(i), json!({}))).collect();
        let limits = Limits {
            max_decoded_bytes: 1 << 20,
            ..LIMITS
        };
        for msg in [
            [arr(2), s(&tag), arr(2000), entries.clone()].concat(),
            [arr(2), s(&tag), bin(&entries)].concat(),
        ] {
            assert!(msg.len() < 20_000);
            let mut b = BatchBuf::new();
            b.log(0).field("before", 1).finish().unwrap();
            let kept = b.clone();
            let e = decode(&msg, &limits, "tag", 0, &mut b).unwrap_err();
            assert!(
                e.to_string()
                    .ends_with("exceed max_decoded_bytes (1048576)"),
                "{e}"
            );
            assert_eq!(b, kept);
            let m = decode(&msg, &LIMITS, "", 0, &mut b).unwrap().unwrap();
            assert_eq!(m.events, 2000);
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let good = [
            arr(3),
            s("app"),
            bin(&entries()),
            val(json!({"chunk": "c", "compressed": "text"})),
        ]
        .concat();
        let markers = [
            0x92, 0x93, 0x94, 0xa1, 0xc4, 0xc7, 0xd7, 0xdc, 0xdd, 0xde, 0x81, 0x00,
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let buf: Vec<u8> = if round % 2 == 0 {
                let n = rand() as usize % 48;
                (0..n)
                    .map(|_| match rand() % 3 {
                        0 => markers[rand() as usize % markers.len()],
                        _ => rand() as u8,
                    })
                    .collect()
            } else {
                let mut g = good.clone();
                for _ in 0..1 + rand() % 3 {
                    let i = rand() as usize % g.len();
                    g[i] ^= 1 << (rand() % 8);
                }
                g
            };
            let (r, b) = run(&buf);
            if let Ok(Some(m)) = r {
                assert!(m.consumed <= buf.len() && m.events == b.len());
            }
        }
    }

    #[test]
    fn ack_is_a_map_of_the_chunk() {
        for chunk in [
            "c",
            &"x".repeat(31),
            &"y".repeat(200),
            &"z".repeat(300),
            &"w".repeat(70_000),
        ] {
            let got: serde_json::Value = rmp_serde::from_slice(&ack(chunk)).unwrap();
            assert_eq!(got, json!({"ack": chunk}));
        }
        assert_eq!(ack("abc"), b"\x81\xa3ack\xa3abc");
    }
}
