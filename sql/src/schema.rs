//! The table a query reads: one column per top-level field, nested objects
//! as structs (reachable as `http['status']`), plus the event time.
//!
//! A schema is declared in the query's config or inferred from the first
//! events. Inference widens where it can lose nothing (int and float become
//! float) and falls back to text where types disagree, so the first batch
//! never fails a query; a later event that disagrees with the schema is
//! counted as a misfit and its value becomes NULL.

use crate::Error;
use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use std::collections::HashMap;
use std::sync::Arc;
use weir_layout::{BatchBuf, EventKind, Fields as LayoutFields, MetricValue, Value};

/// The event time of each row (UTC nanoseconds).
pub const TIME: &str = "_time";

/// Field metadata marking a text column that takes any value (as text or JSON).
pub(crate) const ANY: &str = "weir.any";

pub(crate) fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// A text column that takes values of any type.
pub(crate) fn any_field(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
        .with_metadata(HashMap::from([(ANY.to_string(), "true".to_string())]))
}

#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Any,
    Struct(Vec<(String, Ty)>),
}

impl Ty {
    fn of(v: Value<'_>) -> Ty {
        match v {
            Value::Null => Ty::Null,
            Value::Bool(_) => Ty::Bool,
            Value::Int(_) => Ty::Int,
            Value::Float(_) => Ty::Float,
            Value::Str(_) => Ty::Str,
            Value::Bytes(_) | Value::Array(_) => Ty::Any,
            Value::Object(o) => {
                let mut fields = Vec::new();
                merge_fields(&mut fields, o.iter());
                Ty::Struct(fields)
            }
        }
    }

    fn merge(self, other: Ty) -> Ty {
        match (self, other) {
            (a, b) if a == b => a,
            (Ty::Null, b) => b,
            (a, Ty::Null) => a,
            (Ty::Int, Ty::Float) | (Ty::Float, Ty::Int) => Ty::Float,
            (Ty::Struct(mut a), Ty::Struct(b)) => {
                for (k, t) in b {
                    add(&mut a, &k, t);
                }
                Ty::Struct(a)
            }
            _ => Ty::Any,
        }
    }

    fn field(self, name: &str) -> Field {
        let t = match self {
            Ty::Bool => DataType::Boolean,
            Ty::Int => DataType::Int64,
            Ty::Float => DataType::Float64,
            Ty::Str => DataType::Utf8,
            Ty::Null | Ty::Any => return any_field(name),
            Ty::Struct(fields) => DataType::Struct(
                fields
                    .into_iter()
                    .map(|(k, t)| t.field(&k))
                    .collect::<Fields>(),
            ),
        };
        Field::new(name, t, true)
    }
}

fn add(fields: &mut Vec<(String, Ty)>, key: &str, t: Ty) {
    match fields.iter_mut().find(|(k, _)| k == key) {
        Some((_, have)) => *have = std::mem::replace(have, Ty::Null).merge(t),
        None => fields.push((key.to_string(), t)),
    }
}

fn merge_fields<'a>(into: &mut Vec<(String, Ty)>, fields: LayoutFields<'a>) {
    for (k, v) in fields {
        add(into, k, Ty::of(v));
    }
}

/// Infers a table from events: every field seen, in order of first sight.
pub fn infer<'a>(batches: impl IntoIterator<Item = &'a BatchBuf>) -> Schema {
    let mut fields: Vec<(String, Ty)> = Vec::new();
    for batch in batches {
        for event in batch.iter() {
            match event.kind() {
                EventKind::Log => merge_fields(&mut fields, event.fields()),
                EventKind::Metric => {
                    if let Some(Ok(m)) = event.metric() {
                        add(&mut fields, "name", Ty::Str);
                        add(&mut fields, "kind", Ty::Str);
                        for (k, _) in m.labels.iter() {
                            add(&mut fields, k, Ty::Str);
                        }
                        add(&mut fields, "value", Ty::Float);
                        if !matches!(m.value, MetricValue::Single(_)) {
                            add(&mut fields, "count", Ty::Int);
                        }
                    }
                }
            }
        }
    }
    table(fields.into_iter().map(|(k, t)| t.field(&k)).collect())
}

/// A table from declared column types: `{ service = "string", "http.status" = "int" }`.
///
/// Types: `string`, `int`, `float`, `bool`, `timestamp`, and `any` (text that
/// takes every value, nested ones as JSON). Dotted names build structs.
pub fn declared(columns: &[(String, String)]) -> Result<Schema, Error> {
    #[derive(Default)]
    struct Node(Vec<(String, Result<DataType, Node>)>);
    fn insert(node: &mut Node, path: &[&str], t: DataType, full: &str) -> Result<(), Error> {
        let clash = || {
            Error::Schema(format!(
                "column `{full}` is declared twice or both as a value and as a struct"
            ))
        };
        match path {
            [leaf] => {
                if node.0.iter().any(|(k, _)| k == leaf) {
                    return Err(clash());
                }
                node.0.push((leaf.to_string(), Ok(t)));
            }
            [head, rest @ ..] => {
                let pos = match node.0.iter().position(|(k, _)| k == head) {
                    Some(p) => p,
                    None => {
                        node.0.push((head.to_string(), Err(Node::default())));
                        node.0.len() - 1
                    }
                };
                match &mut node.0[pos].1 {
                    Err(child) => insert(child, rest, t, full)?,
                    Ok(_) => return Err(clash()),
                }
            }
            [] => {}
        }
        Ok(())
    }
    fn fields(node: Node) -> Fields {
        node.0
            .into_iter()
            .map(|(k, v)| match v {
                Ok(DataType::Null) => any_field(&k),
                Ok(t) => Field::new(k, t, true),
                Err(child) => Field::new(k, DataType::Struct(fields(child)), true),
            })
            .collect()
    }
    let mut root = Node::default();
    for (name, ty) in columns {
        let t = match ty.to_ascii_lowercase().as_str() {
            "string" | "text" | "utf8" | "varchar" => DataType::Utf8,
            "int" | "integer" | "bigint" | "int64" => DataType::Int64,
            "float" | "double" | "float64" | "real" => DataType::Float64,
            "bool" | "boolean" => DataType::Boolean,
            "timestamp" => time_type(),
            "any" | "json" => DataType::Null,
            other => {
                return Err(Error::Schema(format!(
                    "column `{name}`: unknown type `{other}` (use string, int, float, bool, timestamp or any)"
                )))
            }
        };
        if name == TIME {
            return Err(Error::Schema(format!(
                "`{TIME}` is the event time and always present; do not declare it"
            )));
        }
        let path: Vec<&str> = name.split('.').collect();
        insert(&mut root, &path, t, name)?;
    }
    Ok(table(
        fields(root).iter().map(|f| f.as_ref().clone()).collect(),
    ))
}

/// `_time` first, then the fields.
fn table(fields: Vec<Field>) -> Schema {
    let mut all = vec![Field::new(TIME, time_type(), false)];
    all.extend(fields.into_iter().filter(|f| f.name() != TIME));
    Schema::new(all)
}

pub(crate) fn is_any(f: &Field) -> bool {
    f.metadata().contains_key(ANY)
}

pub(crate) type SchemaRef = Arc<Schema>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_widens_and_nests() {
        let mut b = BatchBuf::new();
        b.log(0)
            .field("n", 1)
            .field("s", "x")
            .field("mixed", 1)
            .object("http", |h| {
                h.field("status", 200);
            })
            .finish()
            .unwrap();
        b.log(0)
            .field("n", 2.5)
            .field("mixed", "y")
            .field("nothing", weir_layout::Value::Null)
            .object("http", |h| {
                h.field("path", "/");
            })
            .finish()
            .unwrap();
        let s = infer([&b]);
        let t = |n: &str| s.field_with_name(n).unwrap().data_type().clone();
        assert_eq!(t("_time"), time_type());
        assert_eq!(t("n"), DataType::Float64);
        assert_eq!(t("s"), DataType::Utf8);
        assert!(is_any(s.field_with_name("mixed").unwrap()));
        assert!(is_any(s.field_with_name("nothing").unwrap()));
        let DataType::Struct(http) = t("http") else {
            panic!("struct")
        };
        assert_eq!(http.len(), 2);
    }

    fn describe(schema: &Schema) -> String {
        schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn declared_types_and_mistakes() {
        let s = declared(&[
            ("service".into(), "string".into()),
            ("http.status".into(), "int".into()),
            ("http.path".into(), "string".into()),
        ])
        .unwrap();
        assert_eq!(
            describe(&s),
            "_time Timestamp(ns, \"UTC\"), service Utf8, http Struct(\"status\": Int64, \"path\": Utf8)"
        );
        let e = declared(&[("x".into(), "number".into())]).unwrap_err();
        assert!(e.to_string().contains("unknown type `number`"), "{e}");
        let e = declared(&[("a".into(), "int".into()), ("a.b".into(), "int".into())]).unwrap_err();
        assert!(e.to_string().contains("declared twice"), "{e}");
    }
}
