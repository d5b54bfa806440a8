//! Result rows back into events, so a window's rows flow to sinks and alert
//! rules like any other events.
//!
//! Each row becomes a log event with one field per column. Its time is the
//! row's `_time` if the query kept it (and `_time` is not written as a
//! field), else the window's start, else now. Timestamps are written as
//! RFC 3339 text; anything without a native layout type goes as its display
//! text.

use crate::schema::TIME;
use crate::window::WINDOW_START;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit,
    TimestampNanosecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use weir_layout::{BatchBuf, Encoder, LayoutError};

/// Appends every row of `rows` to `out` as a log event.
pub fn append_rows(rows: &RecordBatch, out: &mut BatchBuf, now_ns: i64) -> Result<(), LayoutError> {
    let schema = rows.schema();
    let time_col = schema
        .index_of(TIME)
        .or_else(|_| schema.index_of(WINDOW_START))
        .ok()
        .and_then(|i| {
            let c = arrow::compute::cast(
                rows.column(i),
                &DataType::Timestamp(TimeUnit::Nanosecond, None),
            )
            .ok()?;
            Some(c)
        });
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for row in 0..rows.num_rows() {
        let ts = time_col
            .as_ref()
            .map(|c| c.as_primitive::<TimestampNanosecondType>())
            .filter(|c| c.is_valid(row))
            .map_or(now_ns, |c| c.value(row));
        let start = out.begin_log(ts);
        let mut count = 0;
        let mut enc = out.encoder();
        for (col, name) in rows.columns().iter().zip(&names) {
            if *name == TIME {
                continue;
            }
            enc.key(name)?;
            write_value(&mut enc, col.as_ref(), row)?;
            count += 1;
        }
        out.end_log(start, count)?;
    }
    Ok(())
}

fn write_value(enc: &mut Encoder<'_>, col: &dyn Array, row: usize) -> Result<(), LayoutError> {
    if col.is_null(row) {
        enc.null();
        return Ok(());
    }
    macro_rules! int {
        ($t:ty) => {
            enc.int(col.as_primitive::<$t>().value(row) as i64)
        };
    }
    match col.data_type() {
        DataType::Null => enc.null(),
        DataType::Boolean => enc.bool(col.as_boolean().value(row)),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => {
            let v = col.as_primitive::<UInt64Type>().value(row);
            match i64::try_from(v) {
                Ok(i) => enc.int(i),
                Err(_) => enc.float(v as f64),
            }
        }
        DataType::Float32 => enc.float(col.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => enc.float(col.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => enc.str(col.as_string::<i32>().value(row))?,
        DataType::LargeUtf8 => enc.str(col.as_string::<i64>().value(row))?,
        DataType::Utf8View => enc.str(col.as_string_view().value(row))?,
        DataType::Binary => enc.bytes(col.as_binary::<i32>().value(row))?,
        DataType::Struct(fields) => {
            let s = col.as_struct();
            let mark = enc.begin(true);
            for (f, child) in fields.iter().zip(s.columns()) {
                enc.key(f.name())?;
                write_value(enc, child.as_ref(), row)?;
            }
            enc.end(mark, fields.len() as u32)?;
        }
        DataType::List(_) => {
            let items = col.as_list::<i32>().value(row);
            let mark = enc.begin(false);
            for i in 0..items.len() {
                write_value(enc, items.as_ref(), i)?;
            }
            enc.end(mark, items.len() as u32)?;
        }
        DataType::Timestamp(..) => {
            let ns = arrow::compute::cast(
                &col.slice(row, 1),
                &DataType::Timestamp(TimeUnit::Nanosecond, None),
            )
            .ok()
            .map(|c| c.as_primitive::<TimestampNanosecondType>().value(0));
            match ns {
                Some(ns) => enc.str(&rfc3339(ns))?,
                None => enc.null(),
            }
        }
        DataType::Decimal128(..) | DataType::Decimal256(..) | DataType::Float16 => {
            match arrow::compute::cast(&col.slice(row, 1), &DataType::Float64) {
                Ok(c) => enc.float(c.as_primitive::<Float64Type>().value(0)),
                Err(_) => display(enc, col, row)?,
            }
        }
        _ => display(enc, col, row)?,
    }
    Ok(())
}

fn display(enc: &mut Encoder<'_>, col: &dyn Array, row: usize) -> Result<(), LayoutError> {
    match ArrayFormatter::try_new(col, &FormatOptions::default()) {
        Ok(f) => enc.str(&f.value(row).to_string()),
        Err(_) => {
            enc.null();
            Ok(())
        }
    }
}

/// RFC 3339 with milliseconds, as the sinks print event times.
pub use weir_codec::timestamp::to_rfc3339 as rfc3339;

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampNanosecondArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn rows_become_events_with_the_window_start_as_time() {
        let schema = Schema::new(vec![
            Field::new(
                WINDOW_START,
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("service", DataType::Utf8, true),
            Field::new("errors", DataType::Int64, false),
        ]);
        let rows = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(TimestampNanosecondArray::from(vec![60_000_000_000]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec![Some("api")])),
                Arc::new(Int64Array::from(vec![3])),
            ],
        )
        .unwrap();
        let mut out = BatchBuf::new();
        append_rows(&rows, &mut out, 0).unwrap();
        let e = out.get(0).unwrap();
        assert_eq!(e.timestamp(), 60_000_000_000);
        assert_eq!(e.get_str(WINDOW_START), Some("1970-01-01T00:01:00.000Z"));
        assert_eq!(e.get_str("service"), Some("api"));
        assert_eq!(e.get("errors").and_then(|v| v.as_i64()), Some(3));
    }
}
