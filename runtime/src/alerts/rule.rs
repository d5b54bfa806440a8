//! Rules over a query's rows, evaluated when each window closes.
//!
//! Each distinct set of the query's `GROUP BY` values is an instance, with
//! Prometheus's states: the condition holds → pending; it has held for
//! `for` → firing; it stops holding (and `keep_firing_for` has passed) →
//! resolved. Time is event time, the end of the window the rows are of, so
//! a replayed log fires as the live stream did. A group that has no row in
//! a window that closed (the query's watermark passed the window after the
//! group's last row, plus `no_data_after`) counts as not holding.
//!
//! The condition runs over a whole window's rows at once (one DataFusion
//! expression per rule); only the rows where it holds and the instances a
//! rule already has are looked at one by one.

use super::alert::{Alert, State, ALERTNAME};
use super::matcher::Labels;
use super::template::Templates;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use weir_sql::arrow::array::{Array, AsArray, RecordBatch};
use weir_sql::arrow::datatypes::{DataType, SchemaRef};
use weir_sql::arrow::util::display::array_value_to_string;
use weir_sql::Condition;

/// Resolved alerts stay listed this long (event time), then are forgotten.
const RESOLVED_RETENTION: i64 = 15 * 60 * 1_000_000_000;

/// A rule as configured, with durations in nanoseconds.
pub struct RuleSpec {
    pub name: String,
    pub condition: String,
    pub for_: i64,
    pub keep_firing_for: i64,
    pub no_data_after: i64,
    pub labels: Labels,
    pub templates: Templates,
}

pub struct Rule {
    pub spec: RuleSpec,
    compiled: Option<(SchemaRef, Condition)>,
    /// Why the condition does not run over the rows, if it does not.
    pub error: Option<String>,
    /// By group key (the group's values joined).
    pub instances: HashMap<String, Instance>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub alert: Alert,
    /// The end of the last window where the condition held.
    pub last_true: i64,
    /// The end of the last window that had a row for the group.
    pub last_seen: i64,
}

/// The rules that read one query.
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// How far apart a group's windows end (the query's window step).
    pub step: i64,
}

/// What one evaluation changed.
#[derive(Default)]
pub struct Changes {
    /// Alerts that fired, resolved, or changed their annotations while
    /// firing: what notifications are about.
    pub alerts: Vec<Alert>,
    /// Any instance changed (pending ones too): the state needs saving.
    pub dirty: bool,
}

impl Rule {
    pub fn new(spec: RuleSpec) -> Rule {
        Rule {
            spec,
            compiled: None,
            error: None,
            instances: HashMap::new(),
        }
    }

    fn condition(&mut self, schema: &SchemaRef) -> Option<&Condition> {
        if self.compiled.as_ref().is_none_or(|(s, _)| s != schema) {
            match Condition::new(&self.spec.condition, schema) {
                Ok(c) => {
                    self.compiled = Some((schema.clone(), c));
                    self.error = None;
                }
                Err(e) => {
                    if self.error.is_none() {
                        tracing::error!(alert = %self.spec.name, "the condition does not run over the query's rows: {e}");
                    }
                    self.error = Some(e.to_string());
                    self.compiled = None;
                }
            }
        }
        self.compiled.as_ref().map(|(_, c)| c)
    }

    fn eval(&mut self, rows: &Window, out: &mut Changes) {
        let Some(cond) = self.condition(&rows.batch.schema()) else {
            return;
        };
        let holds = match cond.evaluate(rows.batch) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(alert = %self.spec.name, "the condition failed on a window's rows: {e}");
                self.error = Some(e.to_string());
                return;
            }
        };
        let at = rows.at;
        for i in (0..holds.len()).filter(|&i| holds.value(i)) {
            let key = &rows.keys[i];
            let inst = match self.instances.get_mut(key) {
                Some(inst) => inst,
                None => {
                    let mut labels = self.spec.labels.clone();
                    labels.extend(rows.labels(i));
                    labels.insert(ALERTNAME.into(), self.spec.name.clone());
                    let inst = Instance {
                        alert: Alert::new(labels, at),
                        last_true: at,
                        last_seen: at,
                    };
                    out.dirty = true;
                    self.instances.entry(key.clone()).or_insert(inst)
                }
            };
            let before = inst.alert.state;
            inst.hold(at, self.spec.for_);
            if !self.spec.templates.is_empty() {
                let ctx = rows.context(i, &inst.alert.labels);
                let annotations = self.spec.templates.render(&ctx);
                if annotations != inst.alert.annotations {
                    inst.alert.annotations = annotations;
                    if before == State::Firing {
                        out.alerts.push(inst.alert.clone());
                    }
                }
            }
            if inst.alert.state != before {
                out.dirty = true;
                if inst.alert.state == State::Firing {
                    out.alerts.push(inst.alert.clone());
                }
            }
        }
        let keep = self.spec.keep_firing_for;
        self.instances.retain(|key, inst| {
            let Some(&i) = rows.present.get(key.as_str()) else {
                return true;
            };
            if holds.value(i) {
                return true;
            }
            inst.last_seen = at;
            inst.fail(at, keep, out)
        });
    }

    /// Event time reached `now`: groups without rows since count as not
    /// holding; long-resolved alerts are forgotten.
    fn advance(&mut self, now: i64, step: i64, out: &mut Changes) {
        let (keep, quiet) = (self.spec.keep_firing_for, self.spec.no_data_after);
        self.instances.retain(|_, inst| {
            if inst.alert.state == State::Resolved {
                let gone = inst
                    .alert
                    .resolved_at
                    .is_some_and(|r| r.saturating_add(RESOLVED_RETENTION) < now);
                out.dirty |= gone;
                return !gone;
            }
            if inst.last_seen.saturating_add(step).saturating_add(quiet) <= now {
                return inst.fail(now, keep, out);
            }
            true
        });
    }
}

impl Instance {
    fn hold(&mut self, at: i64, for_: i64) {
        self.last_true = at;
        self.last_seen = at;
        let a = &mut self.alert;
        if a.state == State::Resolved {
            (a.state, a.active_at, a.fired_at, a.resolved_at) = (State::Pending, at, None, None);
        }
        if a.state == State::Pending && at.saturating_sub(a.active_at) >= for_ {
            a.state = State::Firing;
            a.fired_at = Some(at);
        }
    }

    /// The condition does not hold at `at`; false when the instance is
    /// gone (it was only pending).
    fn fail(&mut self, at: i64, keep_firing_for: i64, out: &mut Changes) -> bool {
        let a = &mut self.alert;
        match a.state {
            State::Pending => {
                out.dirty = true;
                false
            }
            State::Firing if at.saturating_sub(self.last_true) >= keep_firing_for => {
                a.state = State::Resolved;
                a.resolved_at = Some(at);
                out.dirty = true;
                out.alerts.push(a.clone());
                true
            }
            _ => true,
        }
    }
}

impl RuleSet {
    /// Evaluates every rule over the rows of one closed window.
    pub fn eval(&mut self, batch: &RecordBatch, key_columns: &[String], at: i64) -> Changes {
        let mut out = Changes::default();
        if self.rules.is_empty() {
            return out;
        }
        let schema = batch.schema();
        let key_idx: Vec<usize> = key_columns
            .iter()
            .filter_map(|k| schema.index_of(k).ok())
            .collect();
        let keys = group_keys(batch, &key_idx);
        let window = Window {
            batch,
            at,
            present: keys
                .iter()
                .enumerate()
                .map(|(i, k)| (k.as_str(), i))
                .collect(),
            keys: &keys,
            key_idx,
        };
        for rule in &mut self.rules {
            rule.eval(&window, &mut out);
        }
        out
    }

    /// The query's watermark reached `now`.
    pub fn advance(&mut self, now: i64) -> Changes {
        let mut out = Changes::default();
        for rule in &mut self.rules {
            rule.advance(now, self.step, &mut out);
        }
        out
    }
}

/// One window's rows, with each row's group.
struct Window<'a> {
    batch: &'a RecordBatch,
    at: i64,
    key_idx: Vec<usize>,
    keys: &'a [String],
    present: HashMap<&'a str, usize>,
}

/// Each row's group: its key columns' values, joined.
fn group_keys(batch: &RecordBatch, key_idx: &[usize]) -> Vec<String> {
    (0..batch.num_rows())
        .map(|i| {
            let mut k = String::new();
            for (n, &c) in key_idx.iter().enumerate() {
                if n > 0 {
                    k.push('\u{1f}');
                }
                k.push_str(&cell_text(batch.column(c).as_ref(), i));
            }
            k
        })
        .collect()
}

impl Window<'_> {
    /// The group's values as labels.
    fn labels(&self, row: usize) -> Labels {
        let schema = self.batch.schema();
        self.key_idx
            .iter()
            .map(|&c| {
                let name = schema.field(c).name().clone();
                (name, cell_text(self.batch.column(c).as_ref(), row))
            })
            .collect()
    }

    /// What a template sees: the row's columns, `labels`, `alertname`.
    fn context(&self, row: usize, labels: &Labels) -> minijinja::Value {
        let schema = self.batch.schema();
        let mut map: std::collections::BTreeMap<String, minijinja::Value> = schema
            .fields()
            .iter()
            .zip(self.batch.columns())
            .map(|(f, col)| (f.name().clone(), cell_value(col.as_ref(), row)))
            .collect();
        map.insert("labels".into(), minijinja::Value::from_serialize(labels));
        map.insert(
            ALERTNAME.into(),
            labels.get(ALERTNAME).cloned().unwrap_or_default().into(),
        );
        minijinja::Value::from(map)
    }
}

/// A cell as a label value; NULL is the empty string.
fn cell_text(col: &dyn Array, row: usize) -> String {
    if col.is_null(row) {
        return String::new();
    }
    match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().value(row).to_string(),
        DataType::Utf8View => col.as_string_view().value(row).to_string(),
        DataType::Timestamp(_, _) => cell_value(col, row).to_string(),
        _ => array_value_to_string(col, row).unwrap_or_default(),
    }
}

/// A cell as a template value: numbers stay numbers, times are RFC 3339.
fn cell_value(col: &dyn Array, row: usize) -> minijinja::Value {
    use weir_sql::arrow::datatypes::*;
    if col.is_null(row) {
        return minijinja::Value::from(());
    }
    match col.data_type() {
        DataType::Int64 => col.as_primitive::<Int64Type>().value(row).into(),
        DataType::Int32 => col.as_primitive::<Int32Type>().value(row).into(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float64 => col.as_primitive::<Float64Type>().value(row).into(),
        DataType::Float32 => col.as_primitive::<Float32Type>().value(row).into(),
        DataType::Boolean => col.as_boolean().value(row).into(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => crate::codec::timestamp::to_rfc3339(
            col.as_primitive::<TimestampNanosecondType>().value(row),
        )
        .into(),
        _ => cell_text(col, row).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use weir_sql::arrow::array::{Int64Array, StringArray};
    use weir_sql::arrow::datatypes::{Field, Schema};

    const S: i64 = 1_000_000_000;

    fn rules(for_: i64, keep: i64, no_data: i64) -> RuleSet {
        let templates =
            Templates::new(&[("summary".into(), "{{ service }} {{ errors }}".into())]).unwrap();
        let spec = RuleSpec {
            name: "errs".into(),
            condition: "errors > 2".into(),
            for_,
            keep_firing_for: keep,
            no_data_after: no_data,
            labels: Labels::from([("severity".into(), "page".into())]),
            templates,
        };
        RuleSet {
            rules: vec![Rule::new(spec)],
            step: 10 * S,
        }
    }

    fn window(rows: &[(&str, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, true),
            Field::new("errors", DataType::Int64, true),
        ]));
        let names: StringArray = rows.iter().map(|r| Some(r.0)).collect();
        let errors: Int64Array = rows.iter().map(|r| Some(r.1)).collect();
        RecordBatch::try_new(schema, vec![Arc::new(names), Arc::new(errors)]).unwrap()
    }

    /// Evaluates one window ending at `end` seconds, then moves the clock
    /// there; returns the (service, state) of each notified change.
    fn step(set: &mut RuleSet, end: i64, rows: &[(&str, i64)]) -> Vec<(String, State)> {
        let keys = ["service".to_string()];
        let mut ch = set.eval(&window(rows), &keys, end * S);
        ch.alerts.extend(set.advance(end * S).alerts);
        ch.alerts
            .iter()
            .map(|a| (a.labels["service"].clone(), a.state))
            .collect()
    }

    fn state(set: &RuleSet, service: &str) -> Option<State> {
        set.rules[0].instances.get(service).map(|i| i.alert.state)
    }

    #[test]
    fn an_alert_fires_after_for_and_resolves_once() {
        let mut set = rules(20 * S, 0, 0);
        assert!(step(&mut set, 10, &[("cart", 5), ("db", 0)]).is_empty());
        assert_eq!(state(&set, "cart"), Some(State::Pending));
        assert_eq!(
            state(&set, "db"),
            None,
            "a group that never held has no alert"
        );
        assert!(step(&mut set, 20, &[("cart", 5)]).is_empty());
        assert_eq!(
            step(&mut set, 30, &[("cart", 3)]),
            [("cart".into(), State::Firing)]
        );
        let a = &set.rules[0].instances["cart"].alert;
        assert_eq!(a.labels["severity"], "page");
        assert_eq!(a.labels["alertname"], "errs");
        assert_eq!(a.annotations["summary"], "cart 3");
        assert!(
            step(&mut set, 40, &[("cart", 9)]).len() == 1,
            "new values re-render the summary"
        );
        assert_eq!(
            step(&mut set, 50, &[("cart", 0)]),
            [("cart".into(), State::Resolved)]
        );
        assert!(
            step(&mut set, 60, &[("cart", 0)]).is_empty(),
            "resolved once"
        );
    }

    #[test]
    fn a_pending_alert_that_stops_holding_is_dropped_without_notice() {
        let mut set = rules(20 * S, 0, 0);
        step(&mut set, 10, &[("cart", 5)]);
        assert!(step(&mut set, 20, &[("cart", 1)]).is_empty());
        assert_eq!(state(&set, "cart"), None);
        // Holding again starts `for` afresh.
        step(&mut set, 30, &[("cart", 5)]);
        assert!(step(&mut set, 40, &[("cart", 5)]).is_empty());
        assert_eq!(step(&mut set, 50, &[("cart", 5)]).len(), 1);
    }

    #[test]
    fn keep_firing_for_bridges_short_dips() {
        let mut set = rules(0, 15 * S, 0);
        assert_eq!(
            step(&mut set, 10, &[("cart", 5)]),
            [("cart".into(), State::Firing)]
        );
        assert!(
            step(&mut set, 20, &[("cart", 0)]).is_empty(),
            "10 s < 15 s: still firing"
        );
        assert_eq!(
            step(&mut set, 30, &[("cart", 0)]),
            [("cart".into(), State::Resolved)]
        );
    }

    #[test]
    fn a_group_without_rows_resolves_after_no_data_after() {
        let mut set = rules(0, 0, 20 * S);
        step(&mut set, 10, &[("cart", 5), ("db", 5)]);
        // cart has no row in the windows ending 20 and 30: not yet.
        assert!(step(&mut set, 20, &[("db", 5)]).is_empty());
        assert!(step(&mut set, 30, &[("db", 5)]).is_empty());
        // The window ending 20 closed 20 s ago without cart.
        assert_eq!(
            step(&mut set, 40, &[("db", 5)]),
            [("cart".into(), State::Resolved)]
        );
        assert_eq!(state(&set, "db"), Some(State::Firing));
        // With no_data_after 0, the first window without the group does it.
        let mut set = rules(0, 0, 0);
        step(&mut set, 10, &[("cart", 5), ("db", 5)]);
        assert_eq!(
            step(&mut set, 20, &[("db", 5)]),
            [("cart".into(), State::Resolved)]
        );
    }

    #[test]
    fn a_condition_over_a_missing_column_is_reported_not_fatal() {
        let mut set = rules(0, 0, 0);
        set.rules[0].spec.condition = "nope > 1".into();
        assert!(step(&mut set, 10, &[("cart", 5)]).is_empty());
        assert!(set.rules[0].error.as_deref().unwrap_or("").contains("nope"));
    }
}
