//! Encoding events into the layout.
//!
//! [`Encoder`] is the low-level writer a streaming decoder drives (the host's
//! JSON decoder writes through it without building a tree first);
//! [`LogBuilder`] and [`ObjectBuilder`] are the convenient form for plugins.

use crate::read::Value;
use crate::spec::tag;
use crate::LayoutError;

/// Position of a container or event whose size and count are patched on `end`.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    size_at: usize,
}

/// Appends encoded values to a byte buffer.
pub struct Encoder<'b> {
    pub(crate) buf: &'b mut Vec<u8>,
}

impl<'b> Encoder<'b> {
    pub fn new(buf: &'b mut Vec<u8>) -> Self {
        Encoder { buf }
    }

    /// Everything written to the buffer so far.
    pub fn written(&self) -> &[u8] {
        self.buf
    }

    /// An object key (u16 length + bytes).
    #[inline]
    pub fn key(&mut self, key: &str) -> Result<(), LayoutError> {
        let len = u16::try_from(key.len()).map_err(|_| LayoutError::KeyTooLong(key.len()))?;
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(key.as_bytes());
        Ok(())
    }

    #[inline]
    pub fn null(&mut self) {
        self.buf.push(tag::NULL);
    }

    #[inline]
    pub fn bool(&mut self, b: bool) {
        self.buf.push(if b { tag::TRUE } else { tag::FALSE });
    }

    #[inline]
    pub fn int(&mut self, i: i64) {
        self.buf.push(tag::INT);
        self.buf.extend_from_slice(&i.to_le_bytes());
    }

    #[inline]
    pub fn float(&mut self, f: f64) {
        self.buf.push(tag::FLOAT);
        self.buf.extend_from_slice(&f.to_le_bytes());
    }

    #[inline]
    pub fn str(&mut self, s: &str) -> Result<(), LayoutError> {
        self.tagged_bytes(tag::STR, s.as_bytes())
    }

    #[inline]
    pub fn bytes(&mut self, b: &[u8]) -> Result<(), LayoutError> {
        self.tagged_bytes(tag::BYTES, b)
    }

    #[inline]
    fn tagged_bytes(&mut self, t: u8, b: &[u8]) -> Result<(), LayoutError> {
        let len = u32::try_from(b.len()).map_err(|_| LayoutError::TooLarge(b.len()))?;
        self.buf.push(t);
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(b);
        Ok(())
    }

    /// Starts an array or object; write its elements, then call [`Encoder::end`].
    #[inline]
    pub fn begin(&mut self, is_object: bool) -> Mark {
        self.buf
            .push(if is_object { tag::OBJECT } else { tag::ARRAY });
        let size_at = self.buf.len();
        self.buf.extend_from_slice(&[0; 8]); // size, count
        Mark { size_at }
    }

    /// Closes a container with `count` elements (pairs, for an object).
    #[inline]
    pub fn end(&mut self, mark: Mark, count: u32) -> Result<(), LayoutError> {
        let size = self.buf.len() - mark.size_at - 4;
        let size = u32::try_from(size).map_err(|_| LayoutError::TooLarge(size))?;
        self.buf[mark.size_at..mark.size_at + 4].copy_from_slice(&size.to_le_bytes());
        self.buf[mark.size_at + 4..mark.size_at + 8].copy_from_slice(&count.to_le_bytes());
        Ok(())
    }

    /// Any value; nested arrays and objects are copied as bytes, not walked.
    pub fn value(&mut self, v: Value<'_>) -> Result<(), LayoutError> {
        match v {
            Value::Null => self.null(),
            Value::Bool(b) => self.bool(b),
            Value::Int(i) => self.int(i),
            Value::Float(f) => self.float(f),
            Value::Str(s) => self.str(s)?,
            Value::Bytes(b) => self.bytes(b)?,
            Value::Array(a) => {
                let m = self.begin(false);
                let (count, body) = a.raw_parts();
                self.buf.extend_from_slice(body);
                self.end(m, count)?;
            }
            Value::Object(o) => {
                let m = self.begin(true);
                let (count, body) = o.raw_parts();
                self.buf.extend_from_slice(body);
                self.end(m, count)?;
            }
        }
        Ok(())
    }
}

/// Builds the fields of an object; errors are kept and reported by the
/// builder that owns it, so calls chain without `?`.
pub struct ObjectBuilder<'b> {
    enc: Encoder<'b>,
    count: u32,
    error: Option<LayoutError>,
}

impl<'b> ObjectBuilder<'b> {
    pub(crate) fn new(buf: &'b mut Vec<u8>) -> Self {
        ObjectBuilder {
            enc: Encoder::new(buf),
            count: 0,
            error: None,
        }
    }

    fn record(&mut self, r: Result<(), LayoutError>) {
        if let (Err(e), None) = (r, &self.error) {
            self.error = Some(e);
        }
    }

    /// Adds a field. Values: `&str`, `i64`, `f64`, `bool`, or a [`Value`]
    /// read from another event (copied without re-encoding).
    pub fn field<'v>(&mut self, key: &str, value: impl Into<Value<'v>>) -> &mut Self {
        let r = self.enc.key(key).and_then(|_| self.enc.value(value.into()));
        self.record(r);
        self.count += 1;
        self
    }

    /// Adds a nested object built by `f`.
    pub fn object(&mut self, key: &str, f: impl FnOnce(&mut ObjectBuilder<'_>)) -> &mut Self {
        let r = self.enc.key(key);
        self.record(r);
        let mark = self.enc.begin(true);
        let mut inner = ObjectBuilder::new(self.enc.buf);
        f(&mut inner);
        let (count, err) = (inner.count, inner.error);
        if let Some(e) = err {
            self.record(Err(e));
        }
        let r = self.enc.end(mark, count);
        self.record(r);
        self.count += 1;
        self
    }

    /// Adds an array of values.
    pub fn array<'v, I, V>(&mut self, key: &str, items: I) -> &mut Self
    where
        I: IntoIterator<Item = V>,
        V: Into<Value<'v>>,
    {
        let r = self.enc.key(key);
        self.record(r);
        let mark = self.enc.begin(false);
        let mut count = 0;
        for item in items {
            let r = self.enc.value(item.into());
            self.record(r);
            count += 1;
        }
        let r = self.enc.end(mark, count);
        self.record(r);
        self.count += 1;
        self
    }

    /// Adds an array built element by element by `f`.
    pub fn array_with(&mut self, key: &str, f: impl FnOnce(&mut ArrayBuilder<'_>)) -> &mut Self {
        let r = self.enc.key(key);
        self.record(r);
        let mark = self.enc.begin(false);
        let mut inner = ArrayBuilder(ObjectBuilder::new(self.enc.buf));
        f(&mut inner);
        let (count, err) = (inner.0.count, inner.0.error);
        if let Some(e) = err {
            self.record(Err(e));
        }
        let r = self.enc.end(mark, count);
        self.record(r);
        self.count += 1;
        self
    }

    /// Number of fields written so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Builds the elements of an array; see [`ObjectBuilder::array_with`].
pub struct ArrayBuilder<'b>(ObjectBuilder<'b>);

impl ArrayBuilder<'_> {
    pub fn push<'v>(&mut self, value: impl Into<Value<'v>>) -> &mut Self {
        let r = self.0.enc.value(value.into());
        self.0.record(r);
        self.0.count += 1;
        self
    }

    pub fn object(&mut self, f: impl FnOnce(&mut ObjectBuilder<'_>)) -> &mut Self {
        let o = &mut self.0;
        let mark = o.enc.begin(true);
        let mut inner = ObjectBuilder::new(o.enc.buf);
        f(&mut inner);
        let (count, err) = (inner.count, inner.error);
        if let Some(e) = err {
            o.record(Err(e));
        }
        let r = o.enc.end(mark, count);
        o.record(r);
        o.count += 1;
        self
    }
}

/// Builds one log event in a [`crate::BatchBuf`]; nothing is added unless
/// [`LogBuilder::finish`] succeeds.
pub struct LogBuilder<'b> {
    pub(crate) fields: ObjectBuilder<'b>,
    pub(crate) start: usize,
    pub(crate) done: bool,
    pub(crate) on_finish: &'b mut Vec<u32>,
}

impl<'b> LogBuilder<'b> {
    /// Adds a field; see [`ObjectBuilder::field`].
    pub fn field<'v>(&mut self, key: &str, value: impl Into<Value<'v>>) -> &mut Self {
        self.fields.field(key, value);
        self
    }

    /// Adds a nested object; see [`ObjectBuilder::object`].
    pub fn object(&mut self, key: &str, f: impl FnOnce(&mut ObjectBuilder<'_>)) -> &mut Self {
        self.fields.object(key, f);
        self
    }

    /// Adds an array; see [`ObjectBuilder::array`].
    pub fn array<'v, I, V>(&mut self, key: &str, items: I) -> &mut Self
    where
        I: IntoIterator<Item = V>,
        V: Into<Value<'v>>,
    {
        self.fields.array(key, items);
        self
    }

    /// The field writer, for helpers shared between events and nested objects.
    pub fn fields(&mut self) -> &mut ObjectBuilder<'b> {
        &mut self.fields
    }

    /// Copies every field of `object` (e.g. another event's fields) except
    /// those `skip` returns true for.
    pub fn fields_from(
        &mut self,
        object: crate::Object<'_>,
        skip: impl Fn(&str) -> bool,
    ) -> &mut Self {
        for (k, v) in object.iter() {
            if !skip(k) {
                self.fields.field(k, v);
            }
        }
        self
    }

    /// Completes the event and adds it to the batch.
    pub fn finish(&mut self) -> Result<(), LayoutError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        if let Some(e) = self.fields.error.take() {
            self.fields.enc.buf.truncate(self.start);
            return Err(e);
        }
        crate::batch::close_event(
            self.fields.enc.buf,
            self.on_finish,
            self.start,
            self.fields.count,
        )
    }
}

impl Drop for LogBuilder<'_> {
    /// An unfinished event is removed, so a batch never holds half an event.
    fn drop(&mut self) {
        if !self.done {
            self.fields.enc.buf.truncate(self.start);
        }
    }
}
