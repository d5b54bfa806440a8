//! Request bodies of the HTTP source: JSON (lines or an array), the
//! Elasticsearch `_bulk` API and Loki's JSON push, so shippers that speak
//! those can send to weir unchanged.
//!
//! Documents are decoded straight into the batch, as lines are; only Loki's
//! envelope is parsed first, into structs borrowing from the body, because
//! its labels may follow its lines.

use crate::json_decode::decode_json as decode_object;
use crate::syslog::write_event;
use crate::{message_event, DecodeBudget, Extra, OverBudget};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use weir_layout::{BatchBuf, Encoder, LayoutError};

/// Why a body was refused whole (nothing of it is left in the batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not a request of this API; says what and where (answer 400).
    Invalid(String),
    /// It decodes to more than `max_decoded_bytes` (answer 413).
    OverBudget(OverBudget),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Invalid(what) => f.write_str(what),
            BodyError::OverBudget(o) => o.fmt(f),
        }
    }
}

impl std::error::Error for BodyError {}

impl From<OverBudget> for BodyError {
    fn from(o: OverBudget) -> Self {
        BodyError::OverBudget(o)
    }
}

/// What a body became; `errors` of the `events` are `_error` events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    pub events: usize,
    pub errors: usize,
    /// The first error, for the response or a log line.
    pub first_error: Option<String>,
}

impl Decoded {
    /// Keeps what did not decode as an `_error` event, as [`crate::Decoder`]
    /// does, so a bad line costs that line and is seen.
    fn keep_failed(
        &mut self,
        batch: &mut BatchBuf,
        raw: &[u8],
        reason: String,
        arrival_ns: i64,
        extra: Extra<'_>,
    ) {
        let text = String::from_utf8_lossy(raw);
        if message_event(batch, arrival_ns, &text, Some(&reason), extra).is_ok() {
            self.events += 1;
        }
        self.errors += 1;
        self.first_error.get_or_insert(reason);
    }

    fn object(
        &mut self,
        batch: &mut BatchBuf,
        raw: &[u8],
        whence: fmt::Arguments<'_>,
        timestamp_field: &str,
        arrival_ns: i64,
        extra: Extra<'_>,
    ) {
        match decode_object(batch, raw, timestamp_field, arrival_ns, extra) {
            Ok(()) => self.events += 1,
            Err(e) => self.keep_failed(batch, raw, format!("{whence}: {e}"), arrival_ns, extra),
        }
    }
}

/// Appends the events of a JSON body: one object per line (NDJSON, which a
/// single object also is, even pretty-printed), or an array of objects when
/// the body starts with `[`. A line or element that is not an object becomes
/// an `_error` event and the rest still count: one bad record should not
/// make a shipper resend the whole batch.
///
/// `Err` when the events come to more than `max_decoded` bytes; then
/// nothing of the body is left in `batch`.
pub fn decode_json(
    body: &[u8],
    timestamp_field: &str,
    arrival_ns: i64,
    extra: Extra<'_>,
    max_decoded: usize,
    batch: &mut BatchBuf,
) -> Result<Decoded, OverBudget> {
    let budget = DecodeBudget::new(batch, max_decoded);
    let mut over = Ok(());
    let mut out = Decoded::default();
    let body = body.trim_ascii();
    match body.first() {
        None => {}
        Some(b'[') => {
            array_elements(body, |element| {
                if over.is_err() {
                    return;
                }
                match element {
                    Element::Item(i, raw) => out.object(
                        batch,
                        raw,
                        format_args!("[{i}]"),
                        timestamp_field,
                        arrival_ns,
                        extra,
                    ),
                    Element::Unclosed(i, raw) => out.keep_failed(
                        batch,
                        raw,
                        format!("[{i}]: the body ends before the array's closing `]`"),
                        arrival_ns,
                        extra,
                    ),
                    Element::Trailing(raw) => out.keep_failed(
                        batch,
                        raw,
                        "text after the array's closing `]`".into(),
                        arrival_ns,
                        extra,
                    ),
                }
                over = budget.check(batch);
            });
        }
        Some(_) => {
            // One object over several lines is tried whole first; NDJSON
            // fails that at the end of its first line, which is cheap.
            if memchr::memchr(b'\n', body).is_some()
                && decode_object(batch, body, timestamp_field, arrival_ns, extra).is_ok()
            {
                out.events += 1;
                over = budget.check(batch);
            } else {
                for (n, line) in body.split(|&b| b == b'\n').enumerate() {
                    let line = line.trim_ascii();
                    if !line.is_empty() {
                        out.object(
                            batch,
                            line,
                            format_args!("line {}", n + 1),
                            timestamp_field,
                            arrival_ns,
                            extra,
                        );
                        over = budget.check(batch);
                        if over.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    }
    if let Err(e) = over {
        budget.undo(batch);
        return Err(e);
    }
    Ok(out)
}

enum Element<'a> {
    /// Element `i` of the array, not yet checked to be JSON.
    Item(usize, &'a [u8]),
    /// What follows element `i`'s start when the array is not closed.
    Unclosed(usize, &'a [u8]),
    /// Text after the closing `]`.
    Trailing(&'a [u8]),
}

/// Calls `each` with each element of the array `body` (which starts with
/// `[`), found by matching brackets and strings only, so that one element
/// that is not valid JSON costs just that element.
fn array_elements<'a>(body: &'a [u8], mut each: impl FnMut(Element<'a>)) {
    let mut i = 1;
    let skip_space = |i: &mut usize| {
        while body.get(*i).is_some_and(u8::is_ascii_whitespace) {
            *i += 1;
        }
    };
    skip_space(&mut i);
    if body.get(i) == Some(&b']') {
        i += 1;
    } else {
        let mut index = 0;
        loop {
            skip_space(&mut i);
            let start = i;
            let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
            let end = loop {
                let Some(&b) = body.get(i) else { break None };
                i += 1;
                if in_string {
                    match b {
                        _ if escaped => escaped = false,
                        b'\\' => escaped = true,
                        b'"' => in_string = false,
                        _ => {}
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b',' | b']' if depth == 0 => break Some(b),
                    b'}' | b']' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            };
            match end {
                None => return each(Element::Unclosed(index, body[start..].trim_ascii())),
                Some(_) => each(Element::Item(index, body[start..i - 1].trim_ascii())),
            }
            if end == Some(b']') {
                break;
            }
            index += 1;
        }
    }
    let rest = body[i..].trim_ascii();
    if !rest.is_empty() {
        each(Element::Trailing(rest));
    }
}

/// What to answer for one item of a `_bulk` request, in ES's terms.
///
/// An index or create item whose status is not 201 is a document that was
/// not a JSON object: it was kept as an `_error` event and is answered 400
/// so the sender learns of it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItem {
    /// `index`, `create`, `update` or `delete`, as the request said.
    pub action: &'static str,
    pub index: Option<String>,
    pub id: Option<String>,
    pub status: u16,
    /// The reason, when `status` is not 201.
    pub error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Index(Meta),
    Create(Meta),
    Update(Meta),
    Delete(Meta),
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "_index")]
    index: Option<String>,
    /// ES wants a string; clients also send numbers.
    #[serde(rename = "_id")]
    id: Option<serde_json::Value>,
}

impl Meta {
    fn id(&self) -> Option<String> {
        match self.id.as_ref()? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// Appends the documents of an Elasticsearch `_bulk` body, so Beats, Logstash,
/// Fluent Bit and Vector can ship to weir as to ES.
///
/// Index and create documents become events with the target index in
/// `_index` (the action's, else `default_index` from `/{index}/_bulk`; left
/// out when neither names one) and the action's `_id`, if any, in `_id`.
/// Update and delete make no sense for a stream and are refused per item.
///
/// `Err` (answer 400, nothing appended) when the body is not a bulk request:
/// no actions, or an action line that is not one, after which ES also gives
/// up since it cannot tell actions from documents any more; also (413) when
/// the documents come to more than `max_decoded` bytes.
pub fn decode_es_bulk(
    body: &[u8],
    default_index: Option<&str>,
    timestamp_field: &str,
    arrival_ns: i64,
    extra: Extra<'_>,
    max_decoded: usize,
    batch: &mut BatchBuf,
) -> Result<Vec<BulkItem>, BodyError> {
    let budget = DecodeBudget::new(batch, max_decoded);
    let mut lines = body
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(n, line)| (n + 1, line.trim_ascii()))
        .filter(|(_, line)| !line.is_empty());
    let mut items = Vec::new();
    while let Some((n, line)) = lines.next() {
        let action = match serde_json::from_slice::<Action>(line) {
            Ok(action) => action,
            Err(e) => {
                budget.undo(batch);
                return Err(BodyError::Invalid(format!(
                    "line {n}: not a bulk action ({{\"index\"|\"create\"|\"update\"|\"delete\": {{...}}}}): {e}"
                )));
            }
        };
        let (name, meta) = match action {
            Action::Index(m) => ("index", m),
            Action::Create(m) => ("create", m),
            Action::Update(m) => {
                lines.next(); // its partial document or script
                ("update", m)
            }
            Action::Delete(m) => ("delete", m),
        };
        let mut item = BulkItem {
            action: name,
            id: meta.id(),
            index: meta.index.or_else(|| default_index.map(str::to_string)),
            status: 201,
            error: None,
        };
        if matches!(name, "update" | "delete") {
            item.status = 400;
            item.error = Some("weir accepts index and create".into());
            items.push(item);
            continue;
        }
        let Some((doc_n, doc)) = lines.next() else {
            item.status = 400;
            item.error = Some(format!("line {n}: {name} has no document after it"));
            items.push(item);
            continue;
        };
        let (index, id) = (item.index.as_deref(), item.id.as_deref());
        let fields = |enc: &mut Encoder<'_>| -> Result<u32, LayoutError> {
            let mut count = 0;
            for (key, value) in [("_index", index), ("_id", id)] {
                if let Some(v) = value {
                    enc.key(key)?;
                    enc.str(v)?;
                    count += 1;
                }
            }
            Ok(count + extra(enc)?)
        };
        if let Err(e) = decode_object(batch, doc, timestamp_field, arrival_ns, &fields) {
            let reason = format!("line {doc_n}: {e}");
            let text = String::from_utf8_lossy(doc);
            let _ = message_event(batch, arrival_ns, &text, Some(&reason), &fields);
            item.status = 400;
            item.error = Some(reason);
        }
        items.push(item);
        if let Err(e) = budget.check(batch) {
            budget.undo(batch);
            return Err(e.into());
        }
    }
    if items.is_empty() {
        return Err(BodyError::Invalid("no bulk actions in the body".into()));
    }
    Ok(items)
}

/// The `_bulk` response for `items`: ES's shape, with the fields clients read
/// (`errors`, and per item `status` and `error.reason`).
pub fn es_bulk_response(items: &[BulkItem], took_ms: u64) -> String {
    use serde_json::{json, Map, Value};
    let rendered: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut o = Map::new();
            if let Some(index) = &item.index {
                o.insert("_index".into(), index.as_str().into());
            }
            if let Some(id) = &item.id {
                o.insert("_id".into(), id.as_str().into());
            }
            o.insert("status".into(), item.status.into());
            match &item.error {
                Some(reason) => o.insert(
                    "error".into(),
                    json!({"type": "illegal_argument_exception", "reason": reason}),
                ),
                None => o.insert("result".into(), "created".into()),
            };
            json!({ item.action: o })
        })
        .collect();
    let errors = items.iter().any(|i| i.status >= 300);
    json!({"took": took_ms, "errors": errors, "items": rendered}).to_string()
}

/// Appends one event per line of a Loki push (`/loki/api/v1/push`, JSON):
/// `message` is the line, the stream's labels and the line's structured
/// metadata become string fields, the time is the line's own.
///
/// `Err` (answer 400, nothing appended) when the body is not a push, saying
/// where, e.g. `streams[0].values[3]: ...`: Loki rejects such a push whole,
/// and promtail-style clients then log the reason; also (413) when the
/// lines come to more than `max_decoded` bytes, which a stream's labels,
/// copied into each of its lines, can make of a small push. Every line
/// carries its time, so `_arrival_ns` is not needed.
pub fn decode_loki_push(
    body: &[u8],
    _arrival_ns: i64,
    extra: Extra<'_>,
    max_decoded: usize,
    batch: &mut BatchBuf,
) -> Result<Decoded, BodyError> {
    let at = Cell::new(Loc::Top);
    let mut de = serde_json::Deserializer::from_slice(body);
    let streams = PushSeed(&at)
        .deserialize(&mut de)
        .and_then(|s| de.end().map(|()| s))
        .map_err(|e| {
            BodyError::Invalid(match at.get() {
                Loc::Top => e.to_string(),
                loc => format!("{loc}: {e}"),
            })
        })?;
    let budget = DecodeBudget::new(batch, max_decoded);
    let before = batch.len();
    for (s, stream) in streams.iter().enumerate() {
        for (v, entry) in stream.entries.iter().enumerate() {
            let written = write_event(batch, entry.ns, |enc| {
                enc.key("message")?;
                enc.str(&entry.line)?;
                let mut n = 1;
                for (k, v) in stream.labels.iter().chain(&entry.metadata) {
                    enc.key(k)?;
                    enc.str(v)?;
                    n += 1;
                }
                Ok(n + extra(enc)?)
            });
            if let Err(e) = written {
                budget.undo(batch);
                return Err(BodyError::Invalid(format!("streams[{s}].values[{v}]: {e}")));
            }
            if let Err(e) = budget.check(batch) {
                budget.undo(batch);
                return Err(e.into());
            }
        }
    }
    Ok(Decoded {
        events: batch.len() - before,
        ..Decoded::default()
    })
}

/// Where the Loki parser is, for its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    Top,
    Stream(usize),
    Labels(usize),
    Value(usize, usize),
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Top => Ok(()),
            Loc::Stream(s) => write!(f, "streams[{s}]"),
            Loc::Labels(s) => write!(f, "streams[{s}].stream"),
            Loc::Value(s, v) => write!(f, "streams[{s}].values[{v}]"),
        }
    }
}

type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

struct Stream<'a> {
    labels: Pairs<'a>,
    entries: Vec<Entry<'a>>,
}

struct Entry<'a> {
    ns: i64,
    line: Cow<'a, str>,
    metadata: Pairs<'a>,
}

/// A string borrowed from the body unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

struct PushSeed<'l>(&'l Cell<Loc>);

impl<'de> DeserializeSeed<'de> for PushSeed<'_> {
    type Value = Vec<Stream<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PushSeed<'_> {
    type Value = Vec<Stream<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a Loki push: {"streams": [...]}"#)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut streams = None;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if key.0 == "streams" {
                streams = Some(map.next_value_seed(StreamsSeed(self.0))?);
                self.0.set(Loc::Top);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        streams.ok_or_else(|| de::Error::missing_field("streams"))
    }
}

struct StreamsSeed<'l>(&'l Cell<Loc>);

impl<'de> DeserializeSeed<'de> for StreamsSeed<'_> {
    type Value = Vec<Stream<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for StreamsSeed<'_> {
    type Value = Vec<Stream<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of streams")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut streams = Vec::new();
        loop {
            self.0.set(Loc::Stream(streams.len()));
            match seq.next_element_seed(StreamSeed(self.0, streams.len()))? {
                Some(s) => streams.push(s),
                None => return Ok(streams),
            }
        }
    }
}

struct StreamSeed<'l>(&'l Cell<Loc>, usize);

impl<'de> DeserializeSeed<'de> for StreamSeed<'_> {
    type Value = Stream<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StreamSeed<'_> {
    type Value = Stream<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a stream: {"stream": {labels}, "values": [...]}"#)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (at, s) = (self.0, self.1);
        let mut stream = Stream {
            labels: Vec::new(),
            entries: Vec::new(),
        };
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match &*key.0 {
                "stream" => {
                    at.set(Loc::Labels(s));
                    stream.labels = map.next_value_seed(PairsSeed)?;
                }
                "values" => stream.entries = map.next_value_seed(ValuesSeed(at, s))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            at.set(Loc::Stream(s));
        }
        Ok(stream)
    }
}

struct ValuesSeed<'l>(&'l Cell<Loc>, usize);

impl<'de> DeserializeSeed<'de> for ValuesSeed<'_> {
    type Value = Vec<Entry<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ValuesSeed<'_> {
    type Value = Vec<Entry<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of values")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            self.0.set(Loc::Value(self.1, entries.len()));
            match seq.next_element_seed(EntrySeed)? {
                Some(e) => entries.push(e),
                None => return Ok(entries),
            }
        }
    }
}

struct EntrySeed;

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = Entry<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = Entry<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"["<ns>", "<line>"] or ["<ns>", "<line>", {metadata}]"#)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let ns = seq
            .next_element_seed(NanosSeed)?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let line = seq
            .next_element::<Text<'de>>()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?
            .0;
        let metadata = seq.next_element_seed(PairsSeed)?.unwrap_or_default();
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(4, &self));
        }
        Ok(Entry { ns, line, metadata })
    }
}

struct NanosSeed;

impl<'de> DeserializeSeed<'de> for NanosSeed {
    type Value = i64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for NanosSeed {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a timestamp as a string of nanoseconds")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<i64, E> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(ns) = s.parse() {
                return Ok(ns);
            }
        }
        let shown: String = s.chars().take(40).collect();
        Err(E::custom(format_args!(
            "timestamp is not a string of nanoseconds: {shown:?}"
        )))
    }
}

/// A JSON object of strings (labels, metadata), in its order.
struct PairsSeed;

impl<'de> DeserializeSeed<'de> for PairsSeed {
    type Value = Pairs<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PairsSeed {
    type Value = Pairs<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of strings")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::new();
        while let Some((k, v)) = map.next_entry::<Text<'de>, Text<'de>>()? {
            pairs.push((k.0, v.0));
        }
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_layout::Value;

    const MAX: usize = usize::MAX;

    fn source(enc: &mut Encoder<'_>) -> Result<u32, LayoutError> {
        enc.key("peer")?;
        enc.str("10.1.2.3")?;
        Ok(1)
    }

    fn json(body: &str) -> (BatchBuf, Decoded) {
        let mut b = BatchBuf::new();
        let d = decode_json(body.as_bytes(), "timestamp", 7, &source, usize::MAX, &mut b).unwrap();
        assert_eq!(b.len(), d.events);
        BatchBuf::from_bytes(b.as_bytes().to_vec()).unwrap();
        (b, d)
    }

    #[test]
    fn json_arrays() {
        let (b, d) = json(
            r#" [ {"a":1,"timestamp":1700000000}, {"s":"x,]}\"["} ,
                 {"nested":[{"b":[1,2]}]} ] "#,
        );
        assert_eq!((d.events, d.errors), (3, 0));
        let e = b.get(0).unwrap();
        assert_eq!(e.get("a"), Some(Value::Int(1)));
        assert_eq!(e.timestamp(), 1_700_000_000_000_000_000);
        assert_eq!(e.get_str("peer"), Some("10.1.2.3"));
        assert_eq!(b.get(1).unwrap().get_str("s"), Some("x,]}\"["));
        assert_eq!(b.get(1).unwrap().timestamp(), 7);
        assert_eq!(
            b.get(2).unwrap().lookup("nested.0.b.1"),
            Some(Value::Int(2))
        );

        let (b, d) = json(r#"[{"ok":1}, 5, "s", {"bad":}, {"ok":2}]"#);
        assert_eq!((d.events, d.errors), (5, 3));
        let bad = b.get(1).unwrap();
        assert_eq!(bad.get_str("message"), Some("5"));
        assert_eq!(bad.get_str("peer"), Some("10.1.2.3"));
        assert!(d.first_error.unwrap().starts_with("[1]: invalid JSON"));
        assert!(b
            .get(3)
            .unwrap()
            .get_str("_error")
            .unwrap()
            .starts_with("[3]: "));
        assert_eq!(b.get(4).unwrap().get("ok"), Some(Value::Int(2)));

        assert_eq!(json("[]").1, Decoded::default());
        assert_eq!(json(" [ ] ").1.events, 0);
        let (b, d) = json(r#"[{"a":1}, {"b":"#);
        assert_eq!((d.events, d.errors), (2, 1));
        assert!(b
            .get(1)
            .unwrap()
            .get_str("_error")
            .unwrap()
            .contains("closing `]`"));
        let (_, d) = json(r#"[{"a":1}] {"b":2}"#);
        assert_eq!((d.events, d.errors), (2, 1));
    }

    #[test]
    fn ndjson_with_a_bad_line_in_the_middle() {
        let (b, d) = json(
            "{\"n\":1}\r\n\n{\"n\":2, oops}\n[1]\n{\"n\":3,\"timestamp\":\"2024-05-01T12:00:00Z\"}",
        );
        assert_eq!((d.events, d.errors), (4, 2));
        let bad = b.get(1).unwrap();
        assert_eq!(bad.get_str("message"), Some("{\"n\":2, oops}"));
        assert!(bad
            .get_str("_error")
            .unwrap()
            .starts_with("line 3: invalid JSON"));
        assert_eq!(d.first_error.as_deref(), bad.get_str("_error"));
        assert!(b
            .get(2)
            .unwrap()
            .get_str("_error")
            .unwrap()
            .starts_with("line 4: "));
        assert_eq!(b.get(3).unwrap().timestamp(), 1_714_564_800_000_000_000);

        let (b, d) = json("{\n  \"pretty\": true\n}\n");
        assert_eq!((d.events, d.errors), (1, 0));
        assert_eq!(b.get(0).unwrap().get("pretty"), Some(Value::Bool(true)));
        let mut b = BatchBuf::new();
        let d = decode_json(b"{\"a\":\"\xff\"}", "t", 0, &source, MAX, &mut b).unwrap();
        assert_eq!((d.events, d.errors), (1, 1));
        assert!(b.get(0).unwrap().get_str("_error").is_some());
    }

    #[test]
    fn empty_bodies() {
        for body in ["", " \r\n\n "] {
            assert_eq!(json(body).1, Decoded::default());
            let mut b = BatchBuf::new();
            assert!(decode_es_bulk(body.as_bytes(), None, "ts", 0, &source, MAX, &mut b).is_err());
            assert!(decode_loki_push(body.as_bytes(), 0, &source, MAX, &mut b).is_err());
            assert!(b.is_empty());
        }
    }

    #[test]
    fn es_bulk_index_create_update_delete() {
        let body = br#"{"index":{"_index":"logs-a","_id":"1"}}
{"msg":"one","@timestamp":"2024-05-01T12:00:00Z"}
{"create":{}}
{"msg":"two"}

{"delete":{"_index":"logs-a","_id":"9"}}
{"update":{"_id":7}}
{"doc":{"msg":"changed"}}
{"index":{"_id":42}}
not a document
{"create":{"_index":"logs-b"}}
"#;
        let mut b = BatchBuf::new();
        let items =
            decode_es_bulk(body, Some("default"), "@timestamp", 5, &source, MAX, &mut b).unwrap();
        let got: Vec<_> = items
            .iter()
            .map(|i| (i.action, i.index.as_deref(), i.id.as_deref(), i.status))
            .collect();
        assert_eq!(
            got,
            [
                ("index", Some("logs-a"), Some("1"), 201),
                ("create", Some("default"), None, 201),
                ("delete", Some("logs-a"), Some("9"), 400),
                ("update", Some("default"), Some("7"), 400),
                ("index", Some("default"), Some("42"), 400),
                ("create", Some("logs-b"), None, 400),
            ]
        );
        assert_eq!(
            items[2].error.as_deref(),
            Some("weir accepts index and create")
        );
        assert!(items[4]
            .error
            .as_deref()
            .unwrap()
            .starts_with("line 10: invalid JSON"));
        assert!(items[5].error.as_deref().unwrap().contains("no document"));

        assert_eq!(b.len(), 3);
        let one = b.get(0).unwrap();
        assert_eq!(one.get_str("msg"), Some("one"));
        assert_eq!(one.get_str("_index"), Some("logs-a"));
        assert_eq!(one.get_str("_id"), Some("1"));
        assert_eq!(one.get_str("peer"), Some("10.1.2.3"));
        assert_eq!(one.timestamp(), 1_714_564_800_000_000_000);
        let two = b.get(1).unwrap();
        assert_eq!(
            (two.get_str("_index"), two.get("_id"), two.timestamp()),
            (Some("default"), None, 5)
        );
        let bad = b.get(2).unwrap();
        assert_eq!(bad.get_str("message"), Some("not a document"));
        assert_eq!(bad.get_str("_index"), Some("default"));
        assert_eq!(bad.get_str("_error"), items[4].error.as_deref());

        // Without an index anywhere, the event just has no `_index`.
        let mut b = BatchBuf::new();
        let items =
            decode_es_bulk(b"{\"index\":{}}\n{}\n", None, "t", 0, &source, MAX, &mut b).unwrap();
        assert_eq!((items[0].index.as_deref(), items[0].status), (None, 201));
        assert_eq!(b.get(0).unwrap().get("_index"), None);
    }

    #[test]
    fn es_bulk_body_that_is_not_bulk_appends_nothing() {
        let mut b = BatchBuf::new();
        b.log(0).field("before", 1).finish().unwrap();
        for body in [
            &b"{\"index\":{}}\n{\"a\":1}\n{\"upsert\":{}}\n{}\n"[..],
            b"{\"index\":{}}\n{\"a\":1}\nnot json\n",
            b"[{\"a\":1}]",
        ] {
            let err = decode_es_bulk(body, None, "t", 0, &source, MAX, &mut b)
                .unwrap_err()
                .to_string();
            assert!(err.contains("not a bulk action"), "{err}");
            assert_eq!(b.len(), 1, "{err}");
        }
        BatchBuf::from_bytes(b.as_bytes().to_vec()).unwrap();
    }

    #[test]
    fn es_bulk_response_shape() {
        let items = [
            BulkItem {
                action: "index",
                index: Some("logs".into()),
                id: Some("1".into()),
                status: 201,
                error: None,
            },
            BulkItem {
                action: "delete",
                index: None,
                id: None,
                status: 400,
                error: Some("weir accepts index and create".into()),
            },
        ];
        let v: serde_json::Value = serde_json::from_str(&es_bulk_response(&items, 3)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"took": 3, "errors": true, "items": [
                {"index": {"_index": "logs", "_id": "1", "status": 201, "result": "created"}},
                {"delete": {"status": 400, "error": {
                    "type": "illegal_argument_exception",
                    "reason": "weir accepts index and create"}}},
            ]})
        );
        let ok: serde_json::Value =
            serde_json::from_str(&es_bulk_response(&items[..1], 0)).unwrap();
        assert_eq!(ok["errors"], false);
    }

    fn loki(body: &str) -> Result<(BatchBuf, Decoded), String> {
        let mut b = BatchBuf::new();
        let d = decode_loki_push(body.as_bytes(), 0, &source, MAX, &mut b)
            .map_err(|e| e.to_string())?;
        BatchBuf::from_bytes(b.as_bytes().to_vec()).unwrap();
        Ok((b, d))
    }

    #[test]
    fn loki_labels_and_structured_metadata() {
        let (b, d) = loki(
            r#"{"streams":[
                {"stream":{"job":"api","env":"prod"},"values":[
                    ["1700000000000000001","GET / 200"],
                    ["1700000000000000002","GET /x 500",{"trace_id":"abc","user":"\u00e9"}]]},
                {"values":[["3","no labels"]],"stream":{"job":"late"}},
                {"stream":{"job":"idle"},"values":[]}]}"#,
        )
        .unwrap();
        assert_eq!(
            d,
            Decoded {
                events: 3,
                ..Default::default()
            }
        );
        let e = b.get(1).unwrap();
        assert_eq!(e.timestamp(), 1_700_000_000_000_000_002);
        let fields: Vec<(&str, &str)> = e.fields().map(|(k, v)| (k, v.as_str().unwrap())).collect();
        assert_eq!(
            fields,
            [
                ("message", "GET /x 500"),
                ("job", "api"),
                ("env", "prod"),
                ("trace_id", "abc"),
                ("user", "é"),
                ("peer", "10.1.2.3"),
            ]
        );
        let late = b.get(2).unwrap();
        assert_eq!(
            (
                late.get_str("message"),
                late.get_str("job"),
                late.timestamp()
            ),
            (Some("no labels"), Some("late"), 3)
        );
        assert_eq!(loki(r#"{"streams":[]}"#).unwrap().1.events, 0);
    }

    #[test]
    fn loki_errors_say_where() {
        for (body, want) in [
            (
                r#"{"streams":[{"stream":{},"values":[["1","a"]]},{"stream":{},"values":[["1","a"],["2","b"],["3","c"],["x","d"]]}]}"#,
                r#"streams[1].values[3]: timestamp is not a string of nanoseconds: "x""#,
            ),
            (
                r#"{"streams":[{"values":[[1700000000,"a"]]}]}"#,
                "streams[0].values[0]: invalid type: integer `1700000000`, expected a timestamp",
            ),
            (
                r#"{"streams":[{"values":[["-1","a"]]}]}"#,
                "streams[0].values[0]: timestamp is not",
            ),
            (
                r#"{"streams":[{"values":[["99999999999999999999","a"]]}]}"#,
                "streams[0].values[0]: timestamp is not",
            ),
            (
                r#"{"streams":[{"values":[["1"]]}]}"#,
                "streams[0].values[0]: invalid length 1",
            ),
            (
                r#"{"streams":[{"values":[["1","a",{},"extra"]]}]}"#,
                "streams[0].values[0]: invalid length 4",
            ),
            (
                r#"{"streams":[{"values":[["1","a",{"k":1}]]}]}"#,
                "streams[0].values[0]: invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"streams":[{"stream":{"job":null}}]}"#,
                "streams[0].stream: invalid type: null",
            ),
            (r#"{"streams":[7]}"#, "streams[0]: invalid type: integer"),
            (r#"{"stream":[]}"#, "missing field `streams`"),
            (r#"{"streams":[]} x"#, "trailing characters"),
            ("[]", "invalid type: sequence"),
        ] {
            let err = loki(body).err().unwrap_or_default();
            assert!(err.starts_with(want), "{body}: {err}");
        }
    }

    /// A stream's labels are copied into every line: a small push of many
    /// lines under a big label set is refused whole once its events pass
    /// the budget, not after they are built.
    #[test]
    fn shared_labels_are_bounded_by_the_decoded_budget() {
        let label = "v".repeat(2048);
        let lines: Vec<String> = (0..2000).map(|i| format!(r#"["{i}","x"]"#)).collect();
        let body = format!(
            r#"{{"streams":[{{"stream":{{"big":"{label}"}},"values":[{}]}}]}}"#,
            lines.join(",")
        );
        assert!(body.len() < 30_000);
        let mut b = BatchBuf::new();
        b.log(0).field("before", 1).finish().unwrap();
        let kept = b.clone();
        let err = decode_loki_push(body.as_bytes(), 0, &source, 1 << 20, &mut b).unwrap_err();
        assert_eq!(
            err.to_string(),
            "decoded events exceed max_decoded_bytes (1048576)"
        );
        assert_eq!(b, kept);
        // It fits a budget of its size, ~2 KiB an event.
        let d = decode_loki_push(body.as_bytes(), 0, &source, 8 << 20, &mut b).unwrap();
        assert_eq!(d.events, 2000);
        assert!(b.byte_len() > 4 << 20);

        let ndjson = "{\"a\":1}\n".repeat(1000);
        let mut b = BatchBuf::new();
        assert!(decode_json(ndjson.as_bytes(), "t", 0, &source, 2000, &mut b).is_err());
        assert!(b.is_empty());
        let array = format!("[{}]", vec!["{\"a\":1}"; 1000].join(","));
        assert!(decode_json(array.as_bytes(), "t", 0, &source, 2000, &mut b).is_err());
        assert!(b.is_empty());
        let bulk = "{\"index\":{}}\n{\"a\":1}\n".repeat(1000);
        let err = decode_es_bulk(bulk.as_bytes(), None, "t", 0, &source, 2000, &mut b);
        assert!(matches!(err, Err(BodyError::OverBudget(_))));
        assert!(b.is_empty());
    }

    /// Arbitrary bodies neither panic nor leave a batch invalid.
    #[test]
    fn arbitrary_bodies_are_safe() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces: [&[u8]; 16] = [
            b"[",
            b"]",
            b"{",
            b"}",
            b",",
            b":",
            b"\"",
            b"\\",
            b"\n",
            b" ",
            b"\"streams\"",
            b"\"values\"",
            b"{\"index\":{}}",
            b"\"1\"",
            b"1",
            b"\xff",
        ];
        for _ in 0..2000 {
            let body: Vec<u8> = (0..next() % 40)
                .flat_map(|_| pieces[(next() % 16) as usize].iter().copied())
                .collect();
            let mut b = BatchBuf::new();
            let d = decode_json(&body, "t", 0, &source, MAX, &mut b).unwrap();
            assert_eq!(d.events, b.len());
            let _ = decode_es_bulk(&body, Some("i"), "t", 0, &source, MAX, &mut b);
            let _ = decode_loki_push(&body, 0, &source, MAX, &mut b);
            // Under a small budget each either fits or leaves nothing.
            let before = b.clone();
            for max in [0, 64, 300] {
                if decode_json(&body, "t", 0, &source, max, &mut b).is_err() {
                    assert_eq!(b, before);
                }
                if let Err(BodyError::OverBudget(_)) =
                    decode_loki_push(&body, 0, &source, max, &mut b)
                {
                    assert_eq!(b.len(), before.len());
                }
                b = before.clone();
            }
            BatchBuf::from_bytes(b.as_bytes().to_vec()).unwrap();
        }
    }
}
