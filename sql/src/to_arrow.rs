//! Events into Arrow record batches, straight from the packed layout.
//!
//! One pass over each event's fields appends to per-column builders; no
//! intermediate JSON or tree. Fields usually arrive in the same order in
//! every event, so each position remembers the key it saw last time and
//! its column (or that the query does not read it): the hash lookup is the
//! exception.

use crate::schema::{is_any, SchemaRef, TIME};
use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    StructArray, TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Fields, TimeUnit};
use hashbrown::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use weir_layout::{BatchBuf, EventKind, EventView, Metric, MetricValue, Value};

/// Fills record batches of one schema from event batches.
pub struct Converter {
    schema: SchemaRef,
    root: Group,
    time: TimestampNanosecondBuilder,
    /// Values whose type disagreed with the schema (each became NULL).
    pub misfits: u64,
    /// The first misfit, described, for the log.
    pub first_misfit: Option<String>,
}

impl Converter {
    pub fn new(schema: SchemaRef) -> Self {
        let fields: Fields = schema
            .fields()
            .iter()
            .filter(|f| f.name() != TIME)
            .cloned()
            .collect();
        Converter {
            root: Group::new(fields),
            time: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            schema,
            misfits: 0,
            first_misfit: None,
        }
    }

    /// Converts a whole batch.
    pub fn convert(&mut self, batch: &BatchBuf) -> RecordBatch {
        for event in batch.iter() {
            self.push(&event);
        }
        self.finish()
    }

    /// Appends one event as a row.
    pub fn push(&mut self, event: &EventView<'_>) {
        self.time.append_value(event.timestamp());
        let mut misfit = Misfit::default();
        match event.kind() {
            EventKind::Log => self.root.append_fields(event.fields(), &mut misfit, ""),
            EventKind::Metric => match event.metric() {
                Some(Ok(m)) => self.root.append_metric(&m, &mut misfit),
                _ => self.root.append_nothing(),
            },
        }
        if misfit.count > 0 {
            self.misfits += misfit.count;
            if self.first_misfit.is_none() {
                self.first_misfit = misfit.first;
            }
        }
    }

    /// The rows appended since the last call.
    pub fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.time.finish())];
        columns.extend(self.root.finish_columns());
        RecordBatch::try_new(self.schema.clone(), columns).expect("builders follow the schema")
    }
}

#[derive(Default)]
struct Misfit {
    count: u64,
    first: Option<String>,
}

impl Misfit {
    fn record(&mut self, path: &str, name: &str, want: &DataType, found: Value<'_>) {
        self.count += 1;
        if self.first.is_none() {
            let sep = if path.is_empty() { "" } else { "." };
            self.first = Some(format!(
                "field `{path}{sep}{name}` is {} ({}) where the schema says {want}",
                found.type_name(),
                preview(found)
            ));
        }
    }
}

fn preview(v: Value<'_>) -> String {
    let mut s = String::new();
    json_text(v, &mut s);
    if s.len() > 40 {
        let cut = (0..=40).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The columns of one object level (the event, or a struct).
struct Group {
    fields: Fields,
    index: HashMap<String, usize>,
    cols: Vec<Col>,
    filled: Vec<bool>,
    /// The key at each field position last time, and its column.
    hint: Vec<(Box<str>, Option<usize>)>,
    nulls: NullBufferBuilder,
}

enum Col {
    Str(StringBuilder),
    Any(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Time(TimestampNanosecondBuilder),
    Struct(Box<Group>),
}

impl Group {
    fn new(fields: Fields) -> Group {
        let cols = fields
            .iter()
            .map(|f| match f.data_type() {
                _ if is_any(f) => Col::Any(StringBuilder::new()),
                DataType::Int64 => Col::Int(Int64Builder::new()),
                DataType::Float64 => Col::Float(Float64Builder::new()),
                DataType::Boolean => Col::Bool(BooleanBuilder::new()),
                DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
                    Col::Time(TimestampNanosecondBuilder::new().with_timezone_opt(tz.clone()))
                }
                DataType::Struct(children) => Col::Struct(Box::new(Group::new(children.clone()))),
                // Declared and inferred schemas only hold the types above.
                _ => Col::Str(StringBuilder::new()),
            })
            .collect::<Vec<_>>();
        Group {
            index: fields
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name().clone(), i))
                .collect(),
            filled: vec![false; cols.len()],
            hint: Vec::new(),
            nulls: NullBufferBuilder::new(0),
            cols,
            fields,
        }
    }

    #[inline]
    fn column_of(&mut self, pos: usize, key: &str) -> Option<usize> {
        if let Some((k, c)) = self.hint.get(pos) {
            if **k == *key {
                return *c;
            }
        }
        let c = self.index.get(key).copied();
        if pos < self.hint.len() {
            self.hint[pos] = (key.into(), c);
        } else if pos == self.hint.len() {
            self.hint.push((key.into(), c));
        }
        c
    }

    fn append_fields<'a>(
        &mut self,
        fields: impl Iterator<Item = (&'a str, Value<'a>)>,
        misfit: &mut Misfit,
        path: &str,
    ) {
        self.filled.fill(false);
        for (pos, (key, value)) in fields.enumerate() {
            let Some(c) = self.column_of(pos, key) else {
                continue;
            };
            if std::mem::replace(&mut self.filled[c], true) {
                continue; // a repeated key: the first one counts
            }
            if !self.cols[c].append(value, misfit, path, key) {
                misfit.record(path, key, self.fields[c].data_type(), value);
                self.cols[c].append_null();
            }
        }
        self.fill_rest();
        self.nulls.append_non_null();
    }

    fn append_metric(&mut self, m: &Metric<'_>, misfit: &mut Misfit) {
        let (value, count) = match &m.value {
            MetricValue::Single(v) => (*v, None),
            MetricValue::Histogram { count, sum, .. } | MetricValue::Summary { count, sum, .. } => {
                (*sum, Some(*count as i64))
            }
        };
        let fixed = [
            ("name", Value::Str(m.name)),
            ("kind", Value::Str(m.kind.as_str())),
            ("value", Value::Float(value)),
        ];
        let count = count.map(|c| ("count", Value::Int(c)));
        let labels = m.labels.iter().map(|&(k, v)| (k, Value::Str(v)));
        self.append_fields(fixed.into_iter().chain(count).chain(labels), misfit, "");
    }

    fn append_nothing(&mut self) {
        self.filled.fill(false);
        self.fill_rest();
        self.nulls.append_non_null();
    }

    fn fill_rest(&mut self) {
        for (c, col) in self.cols.iter_mut().enumerate() {
            if !self.filled[c] {
                col.append_null();
            }
        }
    }

    fn append_null_row(&mut self) {
        for col in &mut self.cols {
            col.append_null();
        }
        self.nulls.append_null();
    }

    fn finish_columns(&mut self) -> Vec<ArrayRef> {
        self.cols.iter_mut().map(Col::finish).collect()
    }
}

impl Col {
    /// False when the value's type does not fit the column.
    #[inline]
    fn append(&mut self, v: Value<'_>, misfit: &mut Misfit, path: &str, key: &str) -> bool {
        if matches!(v, Value::Null) {
            self.append_null();
            return true;
        }
        match self {
            Col::Str(b) => match v {
                Value::Str(s) => b.append_value(s),
                _ => return false,
            },
            Col::Any(b) => match v {
                Value::Str(s) => b.append_value(s),
                other => {
                    let mut s = String::new();
                    json_text(other, &mut s);
                    b.append_value(s);
                }
            },
            Col::Int(b) => match v.as_i64() {
                Some(i) => b.append_value(i),
                None => return false,
            },
            Col::Float(b) => match v.as_f64() {
                Some(f) => b.append_value(f),
                None => return false,
            },
            Col::Bool(b) => match v {
                Value::Bool(x) => b.append_value(x),
                _ => return false,
            },
            Col::Time(b) => {
                let ns = match v {
                    Value::Str(s) => {
                        arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s).ok()
                    }
                    Value::Int(i) => Some(i),
                    _ => None,
                };
                match ns {
                    Some(ns) => b.append_value(ns),
                    None => return false,
                }
            }
            Col::Struct(g) => match v {
                Value::Object(o) => {
                    let sub = if path.is_empty() {
                        key.to_string()
                    } else {
                        format!("{path}.{key}")
                    };
                    g.append_fields(o.iter(), misfit, &sub)
                }
                _ => return false,
            },
        }
        true
    }

    fn append_null(&mut self) {
        match self {
            Col::Str(b) | Col::Any(b) => b.append_null(),
            Col::Int(b) => b.append_null(),
            Col::Float(b) => b.append_null(),
            Col::Bool(b) => b.append_null(),
            Col::Time(b) => b.append_null(),
            Col::Struct(g) => g.append_null_row(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Str(b) | Col::Any(b) => Arc::new(b.finish()),
            Col::Int(b) => Arc::new(b.finish()),
            Col::Float(b) => Arc::new(b.finish()),
            Col::Bool(b) => Arc::new(b.finish()),
            Col::Time(b) => Arc::new(b.finish()),
            Col::Struct(g) => {
                let columns = g.finish_columns();
                let nulls = g.nulls.finish();
                Arc::new(
                    StructArray::try_new(g.fields.clone(), columns, nulls)
                        .expect("children follow the struct's fields"),
                )
            }
        }
    }
}

/// A value as JSON text (strings quoted), for `any` columns.
pub(crate) fn json_text(v: Value<'_>, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f}");
        }
        Value::Float(_) => out.push_str("null"),
        Value::Str(s) => {
            let _ = write!(out, "{}", serde_json::Value::from(s));
        }
        Value::Bytes(b) => {
            let _ = write!(
                out,
                "{}",
                serde_json::Value::from(String::from_utf8_lossy(b))
            );
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_text(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", serde_json::Value::from(k));
                json_text(x, out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;

    #[test]
    fn rows_follow_the_schema_and_misfits_become_null() {
        let mut b = BatchBuf::new();
        b.log(5)
            .field("service", "api")
            .field("latency_ms", 12)
            .object("http", |h| {
                h.field("status", 200);
            })
            .finish()
            .unwrap();
        b.log(6)
            .field("latency_ms", "slow")
            .field("service", "db")
            .array("tags", ["a", "b"])
            .finish()
            .unwrap();
        let s = Arc::new(
            schema::declared(&[
                ("service".into(), "string".into()),
                ("latency_ms".into(), "int".into()),
                ("http.status".into(), "int".into()),
                ("tags".into(), "any".into()),
            ])
            .unwrap(),
        );
        let mut c = Converter::new(s);
        let rb = c.convert(&b);
        assert_eq!(rb.num_rows(), 2);
        let service = rb.column_by_name("service").unwrap().as_string::<i32>();
        assert_eq!((service.value(0), service.value(1)), ("api", "db"));
        let lat = rb
            .column_by_name("latency_ms")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(lat.value(0), 12);
        assert!(lat.is_null(1));
        let http = rb.column_by_name("http").unwrap().as_struct();
        assert!(http.is_valid(0) && http.is_null(1));
        let tags = rb.column_by_name("tags").unwrap().as_string::<i32>();
        assert_eq!(tags.value(1), r#"["a","b"]"#);
        assert_eq!(c.misfits, 1);
        assert!(c
            .first_misfit
            .unwrap()
            .contains("field `latency_ms` is string (\"slow\")"));
    }
}
