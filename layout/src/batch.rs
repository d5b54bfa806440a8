//! An owned batch: the wire bytes plus the start of every event.

use crate::read::{BatchView, EventView, MetricValue};
use crate::spec::{self, EventKind, MetricKind};
use crate::write::{Encoder, LogBuilder, ObjectBuilder};
use crate::{Bitmap, LayoutError};

/// A batch of events in the wire layout, ready to hand to a plugin as is.
///
/// The header's count is kept current on every push, so [`BatchBuf::as_bytes`]
/// is free. `starts` indexes the events for random access and compaction.
#[derive(Clone, PartialEq, Eq)]
pub struct BatchBuf {
    bytes: Vec<u8>,
    starts: Vec<u32>,
}

impl std::fmt::Debug for BatchBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuf")
            .field("events", &self.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Default for BatchBuf {
    fn default() -> Self {
        Self::new()
    }
}

fn header() -> [u8; spec::HEADER_LEN] {
    let mut h = [0; spec::HEADER_LEN];
    h[..4].copy_from_slice(&spec::MAGIC);
    h[4..6].copy_from_slice(&spec::VERSION.to_le_bytes());
    h
}

/// Finishes the log event that starts at `start` with `count` fields.
pub(crate) fn close_event(
    buf: &mut [u8],
    starts: &mut Vec<u32>,
    start: usize,
    count: u32,
) -> Result<(), LayoutError> {
    let len = buf.len() - start - 4;
    let len32 = u32::try_from(len).map_err(|_| LayoutError::TooLarge(len))?;
    buf[start..start + 4].copy_from_slice(&len32.to_le_bytes());
    buf[start + 13..start + 17].copy_from_slice(&count.to_le_bytes());
    starts.push(start as u32);
    let n = starts.len() as u32;
    buf[spec::COUNT_OFFSET..spec::COUNT_OFFSET + 4].copy_from_slice(&n.to_le_bytes());
    Ok(())
}

impl BatchBuf {
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// Room for `events` events totalling `bytes` bytes.
    pub fn with_capacity(events: usize, bytes: usize) -> Self {
        let mut b = Vec::with_capacity(spec::HEADER_LEN + bytes);
        b.extend_from_slice(&header());
        BatchBuf {
            bytes: b,
            starts: Vec::with_capacity(events),
        }
    }

    /// Takes bytes from elsewhere (a plugin's output), validating all of them.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, LayoutError> {
        let starts = BatchView::new(&bytes)?.validate()?;
        Ok(BatchBuf { bytes, starts })
    }

    /// Takes bytes weir wrote itself from a batch and kept under a checksum
    /// (a disk buffer): the header and each event's framing are checked,
    /// the values are not walked again.
    ///
    /// ```
    /// let mut batch = weir_layout::BatchBuf::new();
    /// batch.log(1).field("n", 1).finish().unwrap();
    /// let back = weir_layout::BatchBuf::from_own_bytes(batch.as_bytes().to_vec()).unwrap();
    /// assert_eq!(back.len(), 1);
    /// assert!(weir_layout::BatchBuf::from_own_bytes(vec![1, 2, 3]).is_err());
    /// ```
    pub fn from_own_bytes(bytes: Vec<u8>) -> Result<Self, LayoutError> {
        let starts = BatchView::new(&bytes)?.frames()?;
        Ok(BatchBuf { bytes, starts })
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The wire bytes, header included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The wire bytes, giving up the index.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The wire bytes as the vector that holds them (for bindings that take
    /// `&Vec<u8>`).
    pub fn as_vec(&self) -> &Vec<u8> {
        &self.bytes
    }

    /// Size of the encoded events, header excluded.
    pub fn byte_len(&self) -> usize {
        self.bytes.len() - spec::HEADER_LEN
    }

    pub fn clear(&mut self) {
        self.bytes.truncate(spec::HEADER_LEN);
        self.bytes[spec::COUNT_OFFSET..spec::COUNT_OFFSET + 4].fill(0);
        self.starts.clear();
    }

    fn span(&self, i: usize) -> (usize, usize) {
        let start = self.starts[i] as usize;
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.bytes.len(), |&s| s as usize);
        (start, end)
    }

    /// Event `i`. Events in a `BatchBuf` were written or validated by this
    /// crate, so parsing cannot fail.
    pub fn get(&self, i: usize) -> Option<EventView<'_>> {
        if i >= self.len() {
            return None;
        }
        let (start, end) = self.span(i);
        EventView::parse(&self.bytes[start + 4..end]).ok()
    }

    /// Events in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EventView<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i).expect("events of a BatchBuf are valid"))
    }

    /// Appends a copy of an event read from another batch.
    pub fn push_raw(&mut self, raw: &[u8]) -> Result<(), LayoutError> {
        let len = u32::try_from(raw.len()).map_err(|_| LayoutError::TooLarge(raw.len()))?;
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(raw);
        self.starts.push(start as u32);
        self.write_count();
        Ok(())
    }

    /// Appends all events of `other`.
    pub fn append(&mut self, other: &BatchBuf) {
        let shift = self.bytes.len() as u32 - spec::HEADER_LEN as u32;
        self.bytes
            .extend_from_slice(&other.bytes[spec::HEADER_LEN..]);
        self.starts.extend(other.starts.iter().map(|s| s + shift));
        self.write_count();
    }

    fn write_count(&mut self) {
        let n = self.starts.len() as u32;
        self.bytes[spec::COUNT_OFFSET..spec::COUNT_OFFSET + 4].copy_from_slice(&n.to_le_bytes());
    }

    /// Starts a log event with the builder API.
    ///
    /// ```
    /// let mut batch = weir_layout::BatchBuf::new();
    /// batch.log(0).field("msg", "hello").object("http", |h| {
    ///     h.field("status", 200);
    /// }).finish().unwrap();
    /// assert_eq!(batch.get(0).unwrap().lookup("http.status").unwrap().as_i64(), Some(200));
    /// ```
    pub fn log(&mut self, timestamp: i64) -> LogBuilder<'_> {
        let start = self.begin_log(timestamp);
        LogBuilder {
            fields: ObjectBuilder::new(&mut self.bytes),
            start,
            done: false,
            on_finish: &mut self.starts,
        }
    }

    /// Low-level: starts a log event and returns its start, for a decoder that
    /// writes fields through [`BatchBuf::encoder`] and ends with
    /// [`BatchBuf::end_log`] or [`BatchBuf::abort`].
    #[inline]
    pub fn begin_log(&mut self, timestamp: i64) -> usize {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        self.bytes.push(EventKind::Log as u8);
        self.bytes.extend_from_slice(&timestamp.to_le_bytes());
        self.bytes.extend_from_slice(&[0; 4]);
        start
    }

    /// Low-level: the encoder for the fields of the open event.
    #[inline]
    pub fn encoder(&mut self) -> Encoder<'_> {
        Encoder::new(&mut self.bytes)
    }

    /// Low-level: sets the timestamp of the open event.
    #[inline]
    pub fn set_timestamp(&mut self, start: usize, timestamp: i64) {
        self.bytes[start + 5..start + 13].copy_from_slice(&timestamp.to_le_bytes());
    }

    /// Low-level: closes the open event with `count` fields.
    #[inline]
    pub fn end_log(&mut self, start: usize, count: u32) -> Result<(), LayoutError> {
        close_event(&mut self.bytes, &mut self.starts, start, count)
    }

    /// Low-level: discards the open event.
    #[inline]
    pub fn abort(&mut self, start: usize) {
        self.bytes.truncate(start);
    }

    /// Appends a metric event.
    ///
    /// ```
    /// use weir_layout::{BatchBuf, MetricKind, MetricValue};
    /// let mut batch = BatchBuf::new();
    /// batch.push_metric(0, "http_requests_total", MetricKind::Counter,
    ///     &[("service", "api")], &MetricValue::Single(42.0)).unwrap();
    /// let m = batch.get(0).unwrap().metric().unwrap().unwrap();
    /// assert_eq!((m.name, m.value), ("http_requests_total", MetricValue::Single(42.0)));
    /// ```
    pub fn push_metric(
        &mut self,
        timestamp: i64,
        name: &str,
        kind: MetricKind,
        labels: &[(&str, &str)],
        value: &MetricValue,
    ) -> Result<(), LayoutError> {
        let start = self.bytes.len();
        let r = self.write_metric(timestamp, name, kind, labels, value);
        if r.is_err() {
            self.bytes.truncate(start);
            return r;
        }
        let len = self.bytes.len() - start - 4;
        let len32 = u32::try_from(len).map_err(|_| LayoutError::TooLarge(len))?;
        self.bytes[start..start + 4].copy_from_slice(&len32.to_le_bytes());
        self.starts.push(start as u32);
        self.write_count();
        Ok(())
    }

    fn write_metric(
        &mut self,
        timestamp: i64,
        name: &str,
        kind: MetricKind,
        labels: &[(&str, &str)],
        value: &MetricValue,
    ) -> Result<(), LayoutError> {
        let b = &mut self.bytes;
        b.extend_from_slice(&[0; 4]);
        b.push(EventKind::Metric as u8);
        b.extend_from_slice(&timestamp.to_le_bytes());
        let mut enc = Encoder::new(b);
        enc.key(name)?;
        enc.buf.push(kind as u8);
        enc.buf
            .extend_from_slice(&(labels.len() as u32).to_le_bytes());
        for (k, v) in labels {
            enc.key(k)?;
            let len = u32::try_from(v.len()).map_err(|_| LayoutError::TooLarge(v.len()))?;
            enc.buf.extend_from_slice(&len.to_le_bytes());
            enc.buf.extend_from_slice(v.as_bytes());
        }
        let pairs: Vec<[u8; 16]> = match (kind, value) {
            (MetricKind::Counter | MetricKind::Gauge, MetricValue::Single(v)) => {
                enc.buf.extend_from_slice(&v.to_le_bytes());
                return Ok(());
            }
            (
                MetricKind::Histogram,
                MetricValue::Histogram {
                    count,
                    sum,
                    buckets,
                },
            ) => {
                enc.buf.extend_from_slice(&count.to_le_bytes());
                enc.buf.extend_from_slice(&sum.to_le_bytes());
                buckets
                    .iter()
                    .map(|(le, c)| pair(le.to_le_bytes(), c.to_le_bytes()))
                    .collect()
            }
            (
                MetricKind::Summary,
                MetricValue::Summary {
                    count,
                    sum,
                    quantiles,
                },
            ) => {
                enc.buf.extend_from_slice(&count.to_le_bytes());
                enc.buf.extend_from_slice(&sum.to_le_bytes());
                quantiles
                    .iter()
                    .map(|(q, v)| pair(q.to_le_bytes(), v.to_le_bytes()))
                    .collect()
            }
            _ => {
                return Err(LayoutError::BadTag {
                    at: 0,
                    tag: kind as u8,
                })
            }
        };
        enc.buf
            .extend_from_slice(&(pairs.len() as u32).to_le_bytes());
        for p in pairs {
            enc.buf.extend_from_slice(&p);
        }
        Ok(())
    }

    /// Keeps the events whose bit is set, compacting in place (no allocation).
    pub fn retain_bitmap(&mut self, keep: &[u8]) {
        self.retain(|i| Bitmap::get(keep, i));
    }

    /// Keeps the events for which `keep(index)` is true, compacting in place.
    pub fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let mut write = spec::HEADER_LEN;
        let mut kept = 0;
        for i in 0..self.starts.len() {
            let (start, end) = self.span(i);
            if keep(i) {
                if start != write {
                    self.bytes.copy_within(start..end, write);
                }
                self.starts[kept] = write as u32;
                kept += 1;
                write += end - start;
            }
        }
        self.starts.truncate(kept);
        self.bytes.truncate(write);
        self.write_count();
    }

    /// Keeps the first `events` events, dropping the rest (a decoder undoing
    /// what it appended for a request it refuses).
    pub fn truncate(&mut self, events: usize) {
        if events >= self.len() {
            return;
        }
        self.bytes.truncate(self.starts[events] as usize);
        self.starts.truncate(events);
        self.write_count();
    }

    /// The events in batches of at most `size`, each copied once: splitting
    /// a large batch from the end or the front would copy the rest every
    /// time, quadratic in its length.
    ///
    /// ```
    /// let mut batch = weir_layout::BatchBuf::new();
    /// for i in 0..5 {
    ///     batch.log(i).field("i", i).finish().unwrap();
    /// }
    /// let sizes: Vec<usize> = batch.chunks(2).map(|b| b.len()).collect();
    /// assert_eq!(sizes, [2, 2, 1]);
    /// ```
    pub fn chunks(&self, size: usize) -> impl Iterator<Item = BatchBuf> + '_ {
        let size = size.max(1);
        (0..self.len()).step_by(size).map(move |first| {
            let last = (first + size).min(self.len());
            let (from, _) = self.span(first);
            let to = self
                .starts
                .get(last)
                .map_or(self.bytes.len(), |&s| s as usize);
            let mut chunk = BatchBuf::with_capacity(last - first, to - from);
            chunk.bytes.extend_from_slice(&self.bytes[from..to]);
            let shift = (from - spec::HEADER_LEN) as u32;
            chunk
                .starts
                .extend(self.starts[first..last].iter().map(|s| s - shift));
            chunk.write_count();
            chunk
        })
    }

    /// Splits off the events from `at` on into a new batch.
    pub fn split_off(&mut self, at: usize) -> BatchBuf {
        if at >= self.len() {
            return BatchBuf::new();
        }
        let cut = self.starts[at] as usize;
        let shift = cut - spec::HEADER_LEN;
        let mut tail = BatchBuf::with_capacity(self.len() - at, self.bytes.len() - cut);
        tail.bytes.extend_from_slice(&self.bytes[cut..]);
        tail.starts
            .extend(self.starts[at..].iter().map(|s| s - shift as u32));
        tail.write_count();
        self.bytes.truncate(cut);
        self.starts.truncate(at);
        self.write_count();
        tail
    }
}

fn pair(a: [u8; 8], b: [u8; 8]) -> [u8; 16] {
    let mut p = [0; 16];
    p[..8].copy_from_slice(&a);
    p[8..].copy_from_slice(&b);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    fn sample() -> BatchBuf {
        let mut b = BatchBuf::new();
        for i in 0..10 {
            b.log(i)
                .field("i", i)
                .field("level", if i % 3 == 0 { "error" } else { "info" })
                .object("http", |h| {
                    h.field("status", 200 + i).array("tags", ["a", "b"]);
                })
                .finish()
                .unwrap();
        }
        b
    }

    #[test]
    fn round_trips_nested_values_and_validates() {
        let b = sample();
        let again = BatchBuf::from_bytes(b.as_bytes().to_vec()).unwrap();
        assert_eq!(again, b);
        let e = again.get(4).unwrap();
        assert_eq!(e.timestamp(), 4);
        assert_eq!(e.get("i"), Some(Value::Int(4)));
        assert_eq!(e.lookup("http.status").and_then(|v| v.as_i64()), Some(204));
        assert_eq!(e.lookup("http.tags.1").and_then(|v| v.as_str()), Some("b"));
        let keys: Vec<_> = e.fields().map(|(k, _)| k).collect();
        assert_eq!(keys, ["i", "level", "http"]);
    }

    #[test]
    fn chunks_and_truncate_keep_every_event_valid() {
        let b = sample();
        for size in [1, 3, 10, 11] {
            let chunks: Vec<BatchBuf> = b.chunks(size).collect();
            assert_eq!(chunks.len(), 10usize.div_ceil(size));
            let mut all = BatchBuf::new();
            for c in &chunks {
                assert!(c.len() <= size);
                all.append(&BatchBuf::from_bytes(c.as_bytes().to_vec()).unwrap());
            }
            assert_eq!(all, b);
        }
        assert_eq!(BatchBuf::new().chunks(4).count(), 0);
        let mut t = sample();
        t.truncate(4);
        assert_eq!(t.len(), 4);
        assert_eq!(BatchBuf::from_bytes(t.as_bytes().to_vec()).unwrap(), t);
        assert_eq!(t.get(3).unwrap().timestamp(), 3);
        t.truncate(9);
        assert_eq!(t.len(), 4);
        t.truncate(0);
        assert!(t.is_empty() && t.byte_len() == 0);
    }

    #[test]
    fn retain_compacts_in_place() {
        let mut b = sample();
        let mut keep = Bitmap::with_len(10);
        for i in [0, 3, 9] {
            keep.set(i);
        }
        b.retain_bitmap(keep.as_bytes());
        let is: Vec<_> = b
            .iter()
            .map(|e| e.get("i").unwrap().as_i64().unwrap())
            .collect();
        assert_eq!(is, [0, 3, 9]);
        assert_eq!(BatchBuf::from_bytes(b.as_bytes().to_vec()).unwrap(), b);
    }

    #[test]
    fn strings_are_checked_whether_ascii_or_not() {
        let mut b = BatchBuf::new();
        let long = "é".repeat(40);
        b.log(0)
            .field("a", "plain")
            .field("b", "naïve")
            .field("c", long.as_str())
            .finish()
            .unwrap();
        let e = b.get(0).unwrap();
        assert_eq!(e.get_str("b"), Some("naïve"));
        assert_eq!(e.get_str("c"), Some(long.as_str()));
        // Break the `ï` of "naïve" (a short, non-ASCII value).
        let mut bad = b.as_bytes().to_vec();
        let at = bad.windows(2).position(|w| w == "ï".as_bytes()).unwrap();
        bad[at] = 0xff;
        assert!(matches!(
            BatchBuf::from_bytes(bad.clone()),
            Err(LayoutError::BadUtf8 { .. })
        ));
        let view = crate::BatchView::new(&bad).unwrap();
        let e = view.iter().next().unwrap().unwrap();
        assert_eq!((e.get_str("a"), e.get_str("b")), (Some("plain"), None));
    }

    #[test]
    fn split_off_and_append_keep_every_event_once() {
        let mut a = sample();
        let tail = a.split_off(7);
        assert_eq!((a.len(), tail.len()), (7, 3));
        a.append(&tail);
        assert_eq!(a, sample());
    }

    #[test]
    fn copying_values_between_events_keeps_them_intact() {
        let src = sample();
        let mut dst = BatchBuf::new();
        let e = src.get(2).unwrap();
        dst.log(e.timestamp())
            .fields_from(e.object().unwrap(), |k| k == "level")
            .field("copied", true)
            .finish()
            .unwrap();
        let d = dst.get(0).unwrap();
        assert_eq!(d.get("level"), None);
        assert_eq!(d.lookup("http.tags.0").and_then(|v| v.as_str()), Some("a"));
        assert_eq!(d.get("copied"), Some(Value::Bool(true)));
        BatchBuf::from_bytes(dst.as_bytes().to_vec()).unwrap();
    }

    #[test]
    fn a_failed_or_dropped_builder_leaves_no_half_event() {
        let mut b = sample();
        let before = b.clone();
        let long = "k".repeat(70_000);
        assert_eq!(
            b.log(0).field(&long, 1).finish(),
            Err(LayoutError::KeyTooLong(70_000))
        );
        b.log(0).field("unfinished", 1);
        assert_eq!(b, before);
    }

    #[test]
    fn histograms_and_summaries_round_trip() {
        let mut b = BatchBuf::new();
        let h = MetricValue::Histogram {
            count: 3,
            sum: 1.5,
            buckets: vec![(0.1, 1), (1.0, 3), (f64::INFINITY, 3)],
        };
        b.push_metric(5, "lat", MetricKind::Histogram, &[("svc", "a")], &h)
            .unwrap();
        let s = MetricValue::Summary {
            count: 2,
            sum: 3.0,
            quantiles: vec![(0.5, 1.0), (0.99, 2.0)],
        };
        b.push_metric(6, "q", MetricKind::Summary, &[], &s).unwrap();
        let bad = b.push_metric(7, "x", MetricKind::Counter, &[], &s);
        assert!(bad.is_err());
        let b = BatchBuf::from_bytes(b.as_bytes().to_vec()).unwrap();
        assert_eq!(b.len(), 2);
        let m = b.get(0).unwrap().metric().unwrap().unwrap();
        assert_eq!((m.labels, m.value), (vec![("svc", "a")], h));
        assert_eq!(b.get(1).unwrap().metric().unwrap().unwrap().value, s);
    }

    #[test]
    fn malformed_bytes_are_errors_never_panics() {
        let good = sample().as_bytes().to_vec();
        assert_eq!(
            BatchBuf::from_bytes(b"nope".to_vec()),
            Err(LayoutError::BadMagic)
        );
        // Every truncation and every single-byte corruption must be handled.
        for cut in 0..good.len() {
            let _ = BatchBuf::from_bytes(good[..cut].to_vec());
            if let Ok(v) = BatchView::new(&good[..cut]) {
                for e in v.iter().flatten() {
                    let _ = e.fields().count();
                    let _ = e.lookup("http.tags.1");
                }
            }
        }
        for i in 0..good.len() {
            for x in [0u8, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = x;
                if let Ok(b) = BatchBuf::from_bytes(bad.clone()) {
                    // Whatever validated must read back fully.
                    for e in b.iter() {
                        let _ = e.fields().count();
                    }
                }
                if let Ok(v) = BatchView::new(&bad) {
                    for e in v.iter().flatten() {
                        e.fields().for_each(|(_, v)| {
                            std::hint::black_box(v.type_name());
                        });
                        let _ = e.lookup("http.status");
                    }
                }
            }
        }
        let mut wrong_count = good.clone();
        wrong_count[8] = 11;
        assert_eq!(
            BatchBuf::from_bytes(wrong_count),
            Err(LayoutError::CountMismatch {
                header: 11,
                found: 10
            })
        );
    }
}
