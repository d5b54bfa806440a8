//! Zero-copy views over packed batches.
//!
//! Every read is bounds-checked: malformed bytes give a [`LayoutError`] (or end
//! an iteration) and never a panic, so a guest can read what it is handed
//! without trusting it. The host validates whole batches it receives from
//! plugins with [`BatchView::validate`].

use crate::spec::{self, tag, EventKind, MetricKind};
use crate::{words, LayoutError};

type Result<T> = std::result::Result<T, LayoutError>;

#[inline]
pub(crate) fn bytes_at(b: &[u8], at: usize, len: usize) -> Result<&[u8]> {
    at.checked_add(len)
        .and_then(|end| b.get(at..end))
        .ok_or(LayoutError::Truncated { at })
}

#[inline]
fn u8_at(b: &[u8], at: usize) -> Result<u8> {
    b.get(at).copied().ok_or(LayoutError::Truncated { at })
}

macro_rules! read_le {
    ($name:ident, $ty:ty, $n:expr) => {
        #[inline]
        pub(crate) fn $name(b: &[u8], at: usize) -> Result<$ty> {
            let s = bytes_at(b, at, $n)?;
            Ok(<$ty>::from_le_bytes(s.try_into().expect("length checked")))
        }
    };
}
read_le!(u16_at, u16, 2);
read_le!(u32_at, u32, 4);
read_le!(u64_at, u64, 8);
read_le!(i64_at, i64, 8);
read_le!(f64_at, f64, 8);

#[inline]
fn str_at(b: &[u8], at: usize, len: usize) -> Result<&str> {
    utf8(bytes_at(b, at, len)?, at)
}

/// Checks UTF-8. Most keys and values are short ASCII: an inlined check
/// beats a call to the general validator, above all in a Wasm guest (no
/// SIMD, costly calls).
#[inline]
fn utf8(bytes: &[u8], at: usize) -> Result<&str> {
    if bytes.len() <= 32 && words::ascii(bytes) {
        // SAFETY: ASCII bytes are valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|_| LayoutError::BadUtf8 { at })
}

/// A key: u16 length and UTF-8 bytes. Returns the raw bytes and the next position.
#[inline]
fn key_at(b: &[u8], at: usize) -> Result<(&[u8], usize)> {
    let len = u16_at(b, at)? as usize;
    Ok((bytes_at(b, at + 2, len)?, at + 2 + len))
}

/// A field value or an element of an array.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Array(Array<'a>),
    Object(Object<'a>),
}

impl<'a> Value<'a> {
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Integers, and floats with no fractional part.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
            _ => None,
        }
    }

    /// Any number, as a float.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<Object<'a>> {
        match *self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<Array<'a>> {
        match *self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Str(s)
    }
}
impl<'a> From<&'a String> for Value<'a> {
    fn from(s: &'a String) -> Self {
        Value::Str(s)
    }
}
impl From<i64> for Value<'_> {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<i32> for Value<'_> {
    fn from(i: i32) -> Self {
        Value::Int(i.into())
    }
}
impl From<u32> for Value<'_> {
    fn from(i: u32) -> Self {
        Value::Int(i.into())
    }
}
impl From<f64> for Value<'_> {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl From<bool> for Value<'_> {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl<'a> Value<'a> {
    /// Reads one encoded value (tag first) from the start of `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Value<'a>> {
        value_at(bytes, 0).map(|(v, _)| v)
    }
}

/// Reads the value at `at`; returns it and the position after it.
#[inline]
pub(crate) fn value_at(b: &[u8], at: usize) -> Result<(Value<'_>, usize)> {
    let t = u8_at(b, at)?;
    let p = at + 1;
    Ok(match t {
        tag::NULL => (Value::Null, p),
        tag::FALSE => (Value::Bool(false), p),
        tag::TRUE => (Value::Bool(true), p),
        tag::INT => (Value::Int(i64_at(b, p)?), p + 8),
        tag::FLOAT => (Value::Float(f64_at(b, p)?), p + 8),
        tag::STR => {
            let len = u32_at(b, p)? as usize;
            (Value::Str(str_at(b, p + 4, len)?), p + 4 + len)
        }
        tag::BYTES => {
            let len = u32_at(b, p)? as usize;
            (Value::Bytes(bytes_at(b, p + 4, len)?), p + 4 + len)
        }
        tag::ARRAY | tag::OBJECT => {
            let size = u32_at(b, p)? as usize;
            let content = bytes_at(b, p + 4, size)?;
            let count = u32_at(content, 0)?;
            let body = &content[4..];
            let v = if t == tag::ARRAY {
                Value::Array(Array { count, body })
            } else {
                Value::Object(Object { count, body })
            };
            (v, p + 4 + size)
        }
        other => return Err(LayoutError::BadTag { at, tag: other }),
    })
}

/// The position after the value at `at`, without decoding strings.
#[inline]
fn skip_value(b: &[u8], at: usize) -> Result<usize> {
    let t = u8_at(b, at)?;
    let p = at + 1;
    let next = match t {
        tag::NULL | tag::FALSE | tag::TRUE => p,
        tag::INT | tag::FLOAT => p + 8,
        tag::STR | tag::BYTES | tag::ARRAY | tag::OBJECT => p + 4 + u32_at(b, p)? as usize,
        other => return Err(LayoutError::BadTag { at, tag: other }),
    };
    if next > b.len() {
        return Err(LayoutError::Truncated { at });
    }
    Ok(next)
}

/// An array value: a count and its encoded elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Array<'a> {
    count: u32,
    body: &'a [u8],
}

impl<'a> Array<'a> {
    /// Element count and encoded elements, for copying verbatim.
    pub(crate) fn raw_parts(&self) -> (u32, &'a [u8]) {
        (self.count, self.body)
    }
    pub fn len(&self) -> usize {
        self.count as usize
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// The elements; iteration stops early at malformed bytes.
    pub fn iter(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        let body = self.body;
        let mut pos = 0;
        (0..self.count).map_while(move |_| {
            let (v, next) = value_at(body, pos).ok()?;
            pos = next;
            Some(v)
        })
    }
}

/// An object value (and the fields of a log event): keys and values in order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Object<'a> {
    count: u32,
    body: &'a [u8],
}

impl<'a> Object<'a> {
    /// Pair count and encoded pairs, for copying verbatim.
    pub(crate) fn raw_parts(&self) -> (u32, &'a [u8]) {
        (self.count, self.body)
    }
    pub fn len(&self) -> usize {
        self.count as usize
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    pub fn iter(&self) -> Fields<'a> {
        Fields {
            body: self.body,
            pos: 0,
            left: self.count,
        }
    }
    /// The first value under `key`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        let (b, want) = (self.body, key.as_bytes());
        let mut pos = 0;
        for _ in 0..self.count {
            let (k, vpos) = key_at(b, pos).ok()?;
            if words::same(k, want) {
                return value_at(b, vpos).ok().map(|(v, _)| v);
            }
            pos = skip_value(b, vpos).ok()?;
        }
        None
    }
}

/// Key/value pairs of an object; stops early at malformed bytes.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    body: &'a [u8],
    pos: usize,
    left: u32,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = (|| {
            let (k, vpos) = key_at(self.body, self.pos)?;
            let k = utf8(k, self.pos)?;
            let (v, next) = value_at(self.body, vpos)?;
            self.pos = next;
            Ok::<_, LayoutError>((k, v))
        })();
        if item.is_err() {
            self.left = 0;
        }
        item.ok()
    }
}

/// One event of a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventView<'a> {
    kind: EventKind,
    timestamp: i64,
    /// Everything after the timestamp.
    body: &'a [u8],
    /// The whole encoded event body (kind, timestamp, rest), for copying.
    raw: &'a [u8],
}

/// Bytes of kind + timestamp at the start of an event body.
const EVENT_PREFIX: usize = 9;

impl<'a> EventView<'a> {
    /// Reads one event body (without its length prefix).
    #[inline]
    pub fn parse(raw: &'a [u8]) -> Result<Self> {
        let k = u8_at(raw, 0)?;
        let kind = EventKind::from_u8(k).ok_or(LayoutError::BadTag { at: 0, tag: k })?;
        let timestamp = i64_at(raw, 1)?;
        Ok(EventView {
            kind,
            timestamp,
            body: &raw[EVENT_PREFIX..],
            raw,
        })
    }

    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// Event time in nanoseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The encoded body, as [`crate::BatchBuf::push_raw`] takes it.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The fields of a log event (empty for a metric).
    pub fn fields(&self) -> Fields<'a> {
        self.object().map(|o| o.iter()).unwrap_or(Fields {
            body: &[],
            pos: 0,
            left: 0,
        })
    }

    /// The fields of a log event as an object value.
    #[inline]
    pub fn object(&self) -> Option<Object<'a>> {
        if self.kind != EventKind::Log {
            return None;
        }
        let count = u32_at(self.body, 0).ok()?;
        Some(Object {
            count,
            body: &self.body[4..],
        })
    }

    /// A top-level field of a log event.
    #[inline]
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.object()?.get(key)
    }

    /// A top-level string field.
    #[inline]
    pub fn get_str(&self, key: &str) -> Option<&'a str> {
        self.get(key)?.as_str()
    }

    /// A nested field by dotted path, e.g. `"http.status"`. A key that itself
    /// contains a dot is found by [`EventView::get`] instead.
    pub fn lookup(&self, path: &str) -> Option<Value<'a>> {
        let mut parts = path.split('.');
        let mut v = self.get(parts.next()?)?;
        for part in parts {
            v = match v {
                Value::Object(o) => o.get(part)?,
                Value::Array(a) => a.iter().nth(part.parse().ok()?)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// The metric of a metric event.
    pub fn metric(&self) -> Option<Result<Metric<'a>>> {
        (self.kind == EventKind::Metric).then(|| Metric::parse(self.body))
    }
}

/// A metric event's name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric<'a> {
    pub name: &'a str,
    pub kind: MetricKind,
    pub labels: Vec<(&'a str, &'a str)>,
    pub value: MetricValue,
}

/// The value of a metric, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// Counters and gauges.
    Single(f64),
    /// `(upper bound, cumulative count)` buckets, as Prometheus exposes them.
    Histogram {
        count: u64,
        sum: f64,
        buckets: Vec<(f64, u64)>,
    },
    /// `(quantile, value)` pairs.
    Summary {
        count: u64,
        sum: f64,
        quantiles: Vec<(f64, f64)>,
    },
}

impl<'a> Metric<'a> {
    fn parse(b: &'a [u8]) -> Result<Self> {
        let (name, mut p) = key_at(b, 0)?;
        let name = std::str::from_utf8(name).map_err(|_| LayoutError::BadUtf8 { at: 0 })?;
        let k = u8_at(b, p)?;
        let kind = MetricKind::from_u8(k).ok_or(LayoutError::BadTag { at: p, tag: k })?;
        p += 1;
        let n = u32_at(b, p)?;
        p += 4;
        let mut labels = Vec::with_capacity(n.min(64) as usize);
        for _ in 0..n {
            let (key, next) = key_at(b, p)?;
            let key = std::str::from_utf8(key).map_err(|_| LayoutError::BadUtf8 { at: p })?;
            let len = u32_at(b, next)? as usize;
            let val = str_at(b, next + 4, len)?;
            labels.push((key, val));
            p = next + 4 + len;
        }
        let value = match kind {
            MetricKind::Counter | MetricKind::Gauge => MetricValue::Single(f64_at(b, p)?),
            MetricKind::Histogram | MetricKind::Summary => {
                let count = u64_at(b, p)?;
                let sum = f64_at(b, p + 8)?;
                let n = u32_at(b, p + 16)? as usize;
                p += 20;
                bytes_at(
                    b,
                    p,
                    n.checked_mul(16).ok_or(LayoutError::Truncated { at: p })?,
                )?;
                let pairs = (0..n).map(|i| (f64_at(b, p + i * 16), f64_at(b, p + i * 16 + 8)));
                if kind == MetricKind::Histogram {
                    let buckets = pairs
                        .map(|(le, c)| Ok((le?, c?.to_bits())))
                        .collect::<Result<_>>()?;
                    MetricValue::Histogram {
                        count,
                        sum,
                        buckets,
                    }
                } else {
                    let quantiles = pairs.map(|(q, v)| Ok((q?, v?))).collect::<Result<_>>()?;
                    MetricValue::Summary {
                        count,
                        sum,
                        quantiles,
                    }
                }
            }
        };
        Ok(Metric {
            name,
            kind,
            labels,
            value,
        })
    }
}

/// A whole batch: the header checked, events read as they are iterated.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
    count: u32,
}

impl<'a> BatchView<'a> {
    /// Checks the header. Events are checked as they are read.
    pub fn new(bytes: &'a [u8]) -> Result<Self> {
        if bytes.get(..4) != Some(&spec::MAGIC[..]) {
            return Err(LayoutError::BadMagic);
        }
        let version = u16_at(bytes, 4)?;
        if version != spec::VERSION {
            return Err(LayoutError::UnsupportedVersion(version));
        }
        let count = u32_at(bytes, spec::COUNT_OFFSET)?;
        Ok(BatchView { bytes, count })
    }

    /// The event count the header declares.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Events in order; an `Err` ends the iteration.
    pub fn iter(&self) -> EventIter<'a> {
        EventIter {
            bytes: self.bytes,
            pos: spec::HEADER_LEN,
            left: self.count,
        }
    }

    /// Checks the framing only: each event's length, and the count. For
    /// bytes weir wrote itself and kept under a checksum (a disk buffer),
    /// where walking every value again would double the cost of reading
    /// them back; reads still check what they read.
    pub fn frames(&self) -> Result<Vec<u32>> {
        self.walk(|_, _| Ok(()))
    }

    /// Walks every event and value: afterwards, reads cannot fail.
    /// Returns the start offset of each event's length prefix.
    pub fn validate(&self) -> Result<Vec<u32>> {
        self.walk(|raw, at| validate_event(raw).map_err(|e| offset_error(e, at)))
    }

    /// The start of each event's length prefix, each event's bytes handed
    /// to `check` with their offset; the count must match the header's.
    fn walk(&self, check: impl Fn(&[u8], usize) -> Result<()>) -> Result<Vec<u32>> {
        let mut starts = Vec::with_capacity(self.len());
        let mut pos = spec::HEADER_LEN;
        while pos < self.bytes.len() {
            starts.push(pos as u32);
            let len = u32_at(self.bytes, pos)? as usize;
            check(bytes_at(self.bytes, pos + 4, len)?, pos + 4)?;
            pos += 4 + len;
        }
        if starts.len() != self.len() {
            return Err(LayoutError::CountMismatch {
                header: self.count,
                found: starts.len() as u32,
            });
        }
        Ok(starts)
    }
}

fn offset_error(e: LayoutError, base: usize) -> LayoutError {
    match e {
        LayoutError::Truncated { at } => LayoutError::Truncated { at: at + base },
        LayoutError::BadTag { at, tag } => LayoutError::BadTag { at: at + base, tag },
        LayoutError::BadUtf8 { at } => LayoutError::BadUtf8 { at: at + base },
        other => other,
    }
}

fn validate_event(raw: &[u8]) -> Result<()> {
    let ev = EventView::parse(raw)?;
    let end = match ev.kind {
        EventKind::Log => {
            let count = u32_at(ev.body, 0)?;
            validate_entries(ev.body, 4, count)?
        }
        EventKind::Metric => {
            Metric::parse(ev.body)?;
            return Ok(());
        }
    };
    if end != ev.body.len() {
        return Err(LayoutError::Truncated { at: end });
    }
    Ok(())
}

/// Validates `count` key/value pairs from `pos`; returns the end position.
fn validate_entries(b: &[u8], mut pos: usize, count: u32) -> Result<usize> {
    for _ in 0..count {
        let (k, vpos) = key_at(b, pos)?;
        std::str::from_utf8(k).map_err(|_| LayoutError::BadUtf8 { at: pos })?;
        pos = validate_value(b, vpos)?;
    }
    Ok(pos)
}

fn validate_value(b: &[u8], at: usize) -> Result<usize> {
    let (v, next) = value_at(b, at)?;
    let content = at + 1 + 4 + 4; // tag, size, count
    let end = match v {
        Value::Object(o) => validate_entries(b, content, o.count)?,
        Value::Array(a) => {
            let mut pos = content;
            for _ in 0..a.count {
                pos = validate_value(b, pos)?;
            }
            pos
        }
        _ => return Ok(next),
    };
    if end != next {
        return Err(LayoutError::Truncated { at });
    }
    Ok(next)
}

/// Iterator over the events of a [`BatchView`].
#[derive(Debug, Clone)]
pub struct EventIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    left: u32,
}

impl<'a> Iterator for EventIter<'a> {
    type Item = Result<EventView<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = (|| {
            let len = u32_at(self.bytes, self.pos)? as usize;
            let raw = bytes_at(self.bytes, self.pos + 4, len)?;
            self.pos += 4 + len;
            EventView::parse(raw)
        })();
        if item.is_err() {
            self.left = 0;
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}
