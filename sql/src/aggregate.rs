//! The windowed aggregate: partial state per open window (or session),
//! updated batch by batch and turned into rows when the window closes.
//!
//! Memory follows the number of open windows times their groups, never the
//! number of events: each batch is folded into DataFusion's own
//! accumulators (`GroupsAccumulator`, vectorised; others through
//! `GroupsAccumulatorAdapter`) and then dropped. The groups open at once,
//! over all windows, are capped (`max_groups`): rows that would open a group
//! past the cap are left out and counted, so a GROUP BY over a
//! high-cardinality field (trace ids) cannot take the memory.

use crate::schema::SchemaRef;
use crate::window::{Window, WINDOW_END, WINDOW_START};
use crate::Error;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampNanosecondArray, UInt32Array};
use arrow::datatypes::{DataType, TimestampNanosecondType};
use arrow::row::{RowConverter, SortField};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::group_values::{new_group_values, GroupValues};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::aggregates::AggregateExec;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Where each group column of the output comes from.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Start,
    End,
    Key(usize),
}

pub struct WindowedAggregate {
    window: Window,
    /// The window start column of the aggregate's input: the window for
    /// fixed windows, the event time for sessions.
    start: Arc<dyn PhysicalExpr>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    key_schema: SchemaRef,
    slots: Vec<Slot>,
    aggs: Vec<Arc<AggregateFunctionExpr>>,
    args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Group columns, then aggregate values.
    output: SchemaRef,
    fixed: BTreeMap<i64, Groups>,
    sessions: Sessions,
    max_groups: usize,
    /// Rows left out because their group would have passed `max_groups`.
    over_max_groups: u64,
}

/// The groups of one window and their accumulators.
struct Groups {
    values: Option<Box<dyn GroupValues>>,
    accs: Vec<Box<dyn GroupsAccumulator>>,
    count: usize,
}

impl WindowedAggregate {
    pub fn new(window: Window, agg: &AggregateExec, output: SchemaRef) -> Result<Self, Error> {
        let input = agg.input().schema();
        let mut start = None;
        let mut keys = Vec::new();
        let mut key_fields = Vec::new();
        let mut slots = Vec::new();
        for (expr, name) in agg.group_expr().expr() {
            let col = expr.downcast_ref::<Column>().map(|c| c.name());
            match col {
                Some(WINDOW_START) => {
                    start = Some(expr.clone());
                    slots.push(Slot::Start);
                }
                Some(WINDOW_END) => slots.push(Slot::End),
                _ => {
                    if references_window(expr) {
                        return Err(Error::Unsupported(format!(
                            "GROUP BY `{name}`: group by the window itself, not an expression over it"
                        )));
                    }
                    slots.push(Slot::Key(keys.len()));
                    key_fields.push(arrow::datatypes::Field::new(
                        name,
                        expr.data_type(&input)?,
                        true,
                    ));
                    keys.push(expr.clone());
                }
            }
        }
        let start = start
            .ok_or_else(|| Error::Unsupported("GROUP BY must include the window call".into()))?;
        let aggs = agg.aggr_expr().to_vec();
        let args = aggs
            .iter()
            .map(|a| {
                if !a.order_bys().is_empty() {
                    return Err(Error::Unsupported(format!(
                        "`{}`: ORDER BY inside an aggregate does not run over streams",
                        a.name()
                    )));
                }
                Ok(a.expressions())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key_schema = Arc::new(arrow::datatypes::Schema::new(key_fields));
        Ok(WindowedAggregate {
            window,
            start,
            keys,
            key_schema,
            slots,
            aggs,
            args,
            filters: agg.filter_expr().to_vec(),
            output,
            fixed: BTreeMap::new(),
            sessions: Sessions::default(),
            max_groups: usize::MAX,
            over_max_groups: 0,
        })
    }

    /// Windows (or sessions) holding state.
    pub fn open_windows(&self) -> usize {
        self.fixed.len() + self.sessions.open
    }

    /// Groups holding state, over all open windows (a session is one).
    pub fn open_groups(&self) -> usize {
        self.fixed.values().map(|g| g.count).sum::<usize>() + self.sessions.open
    }

    /// Caps the groups open at once (the default is unbounded).
    pub fn set_max_groups(&mut self, max: usize) {
        self.max_groups = max;
    }

    /// Rows left out so far because their group would have passed the cap.
    pub fn over_max_groups(&self) -> u64 {
        self.over_max_groups
    }

    /// Folds a batch of aggregate input rows into the open windows.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let starts = self.start.evaluate(batch)?.into_array(n)?;
        let starts = cast_ns(&starts)?;
        let keys = self
            .keys
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(n))
            .collect::<Result<Vec<_>, _>>()?;
        let args = self
            .args
            .iter()
            .map(|exprs| {
                exprs
                    .iter()
                    .map(|e| e.evaluate(batch)?.into_array(n))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let filters = self
            .filters
            .iter()
            .map(|f| match f {
                Some(f) => Ok(Some(f.evaluate(batch)?.into_array(n)?)),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let input = Input {
            n,
            keys,
            args,
            filters,
        };
        match self.window {
            Window::Session { gap } => self.update_sessions(gap, starts.values(), &input),
            _ => self.update_fixed(starts.values(), &input),
        }
    }

    fn update_fixed(&mut self, starts: &[i64], input: &Input) -> Result<(), Error> {
        let first = starts[0];
        if starts.iter().all(|s| *s == first) {
            return self.fold_window(first, input);
        }
        let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, s) in starts.iter().enumerate() {
            rows.entry(*s).or_default().push(i as u32);
        }
        for (start, idx) in rows {
            let part = input.take(&UInt32Array::from(idx))?;
            self.fold_window(start, &part)?;
        }
        Ok(())
    }

    /// Folds rows into the window starting at `start`, with the room
    /// `max_groups` leaves; rows left out are counted.
    fn fold_window(&mut self, start: i64, input: &Input) -> Result<(), Error> {
        let room = self.max_groups.saturating_sub(self.open_groups());
        let groups = self.groups_for(start)?;
        self.over_max_groups += Self::fold(groups, input, room)?;
        Ok(())
    }

    fn groups_for(&mut self, start: i64) -> Result<&mut Groups, Error> {
        if !self.fixed.contains_key(&start) {
            let g = Groups::new(Some(&self.key_schema), &self.aggs)?;
            self.fixed.insert(start, g);
        }
        Ok(self.fixed.get_mut(&start).expect("inserted above"))
    }

    /// Folds `input` into `groups`, opening at most `room` new groups; the
    /// rows of groups past that are left out, and their number returned.
    fn fold(groups: &mut Groups, input: &Input, room: usize) -> Result<u64, Error> {
        let n = input.len();
        let mut idx = Vec::with_capacity(n);
        let mut dropped = 0;
        let mut kept = None;
        match &mut groups.values {
            Some(values) => {
                let before = values.len();
                values.intern(&input.keys, &mut idx)?;
                let keep = before.saturating_add(room);
                if values.len() > keep {
                    // Forget the groups past the room: take the keys out and
                    // put the first `keep` back in order, so each keeps its id.
                    let all = values.emit(EmitTo::All)?;
                    let first: Vec<ArrayRef> = all.iter().map(|a| a.slice(0, keep)).collect();
                    values.intern(&first, &mut Vec::with_capacity(keep))?;
                    let rows: Vec<u32> =
                        (0..n as u32).filter(|&i| idx[i as usize] < keep).collect();
                    dropped = (n - rows.len()) as u64;
                    idx.retain(|&g| g < keep);
                    kept = Some(input.take(&UInt32Array::from(rows))?);
                }
                groups.count = values.len();
            }
            None => {
                // A single group (no GROUP BY keys, or a session's): it is
                // opened only with room for it.
                if groups.count == 0 && room == 0 {
                    return Ok(n as u64);
                }
                idx.resize(n, 0);
                groups.count = 1;
            }
        }
        let input = kept.as_ref().unwrap_or(input);
        for (i, acc) in groups.accs.iter_mut().enumerate() {
            let filter = input.filters[i].as_ref().map(|f| f.as_boolean());
            acc.update_batch(&input.args[i], &idx, filter, groups.count)?;
        }
        Ok(dropped)
    }

    /// Closes every window whose end is at or before `watermark` and returns
    /// each one's end and rows (group columns, then aggregate values),
    /// oldest first.
    pub fn close(&mut self, watermark: i64) -> Result<Vec<(i64, RecordBatch)>, Error> {
        let mut out = Vec::new();
        match self.window {
            Window::Session { gap } => {
                for (key, start, last, mut g) in self.sessions.close(watermark, gap) {
                    let keys = if self.keys.is_empty() {
                        Vec::new()
                    } else {
                        self.sessions.decode(&key)?
                    };
                    out.push((last + gap, self.rows(start, last + gap, keys, &mut g)?));
                }
            }
            _ => {
                let width = self.window.width().expect("fixed windows have a width");
                while let Some(entry) = self.fixed.first_entry() {
                    let start = *entry.key();
                    if start.saturating_add(width) > watermark {
                        break;
                    }
                    let mut g = entry.remove();
                    let keys = match &mut g.values {
                        Some(v) => v.emit(EmitTo::All)?,
                        None => Vec::new(),
                    };
                    out.push((
                        start + width,
                        self.rows(start, start + width, keys, &mut g)?,
                    ));
                }
            }
        }
        Ok(out)
    }

    fn rows(
        &self,
        start: i64,
        end: i64,
        keys: Vec<ArrayRef>,
        g: &mut Groups,
    ) -> Result<RecordBatch, Error> {
        let n = g.count;
        let time = |v: i64| -> ArrayRef {
            Arc::new(TimestampNanosecondArray::from(vec![v; n]).with_timezone("UTC"))
        };
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        for slot in &self.slots {
            cols.push(match slot {
                Slot::Start => time(start),
                Slot::End => time(end),
                Slot::Key(i) => keys[*i].clone(),
            });
        }
        for acc in &mut g.accs {
            cols.push(acc.evaluate(EmitTo::All)?);
        }
        // Types follow the planned output (time zones, nullability).
        let cols = cols
            .into_iter()
            .zip(self.output.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    arrow::compute::cast(&c, f.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.output.clone(), cols)?)
    }

    fn update_sessions(&mut self, gap: i64, times: &[i64], input: &Input) -> Result<(), Error> {
        let n = times.len();
        let rows = if self.keys.is_empty() {
            None
        } else {
            Some(self.sessions.encode(&input.keys)?)
        };
        // Rows of each key, in time order.
        let mut by_key: HashMap<&[u8], Vec<u32>> = HashMap::new();
        for i in 0..n {
            let key: &[u8] = match &rows {
                Some(r) => r.row(i).data(),
                None => &[],
            };
            by_key.entry(key).or_default().push(i as u32);
        }
        for (key, mut idx) in by_key {
            // A key with no session yet opens one only with room for it.
            if self.sessions.open >= self.max_groups && !self.sessions.by_key.contains_key(key) {
                self.over_max_groups += idx.len() as u64;
                continue;
            }
            idx.sort_by_key(|i| times[*i as usize]);
            let assigned = self.sessions.assign(key, &idx, times, gap, &self.aggs)?;
            for (session, rows) in assigned {
                let part = input.take(&UInt32Array::from(rows))?;
                let g = self.sessions.groups(key, session);
                Self::fold(g, &part, 1)?;
            }
        }
        Ok(())
    }
}

/// Whether an expression reads the window columns.
fn references_window(expr: &Arc<dyn PhysicalExpr>) -> bool {
    if let Some(c) = expr.downcast_ref::<Column>() {
        return c.name() == WINDOW_START || c.name() == WINDOW_END;
    }
    expr.children().iter().any(|c| references_window(c))
}

fn cast_ns(a: &ArrayRef) -> Result<arrow::array::PrimitiveArray<TimestampNanosecondType>, Error> {
    let c = arrow::compute::cast(
        a,
        &DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None),
    )?;
    Ok(c.as_primitive::<TimestampNanosecondType>().clone())
}

impl Groups {
    /// State for the groups of `key_schema`; `None` (or no key columns)
    /// keeps a single group.
    fn new(
        key_schema: Option<&SchemaRef>,
        aggs: &[Arc<AggregateFunctionExpr>],
    ) -> Result<Groups, Error> {
        let values = match key_schema {
            Some(k) if !k.fields().is_empty() => {
                Some(new_group_values(k.clone(), &GroupOrdering::None)?)
            }
            _ => None,
        };
        let accs = aggs
            .iter()
            .map(|a| -> Result<Box<dyn GroupsAccumulator>, Error> {
                if a.groups_accumulator_supported() {
                    Ok(a.create_groups_accumulator()?)
                } else {
                    let a = a.clone();
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                        a.create_accumulator()
                    })))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Groups {
            values,
            accs,
            count: 0,
        })
    }

    /// Folds `other` (one group, a session) into this one-group state.
    fn merge(&mut self, mut other: Groups) -> Result<(), Error> {
        if other.count == 0 {
            return Ok(());
        }
        for (mine, theirs) in self.accs.iter_mut().zip(&mut other.accs) {
            let state = theirs.state(EmitTo::All)?;
            mine.merge_batch(&state, &[0], 1)?;
        }
        self.count = 1;
        Ok(())
    }
}

/// Evaluated inputs of one batch.
struct Input {
    n: usize,
    keys: Vec<ArrayRef>,
    args: Vec<Vec<ArrayRef>>,
    filters: Vec<Option<ArrayRef>>,
}

impl Input {
    fn len(&self) -> usize {
        self.n
    }

    fn take(&self, idx: &UInt32Array) -> Result<Input, Error> {
        let take = |a: &ArrayRef| arrow::compute::take(a.as_ref(), idx, None);
        Ok(Input {
            n: idx.len(),
            keys: self.keys.iter().map(take).collect::<Result<_, _>>()?,
            args: self
                .args
                .iter()
                .map(|v| v.iter().map(take).collect::<Result<Vec<_>, _>>())
                .collect::<Result<_, _>>()?,
            filters: self
                .filters
                .iter()
                .map(|f| f.as_ref().map(take).transpose())
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Open sessions by group key, each with its own one-group state.
#[derive(Default)]
struct Sessions {
    converter: Option<RowConverter>,
    by_key: HashMap<Vec<u8>, Vec<Session>>,
    open: usize,
    next_id: u64,
}

struct Session {
    id: u64,
    start: i64,
    last: i64,
    groups: Groups,
}

impl Sessions {
    fn encode(&mut self, keys: &[ArrayRef]) -> Result<arrow::row::Rows, Error> {
        if self.converter.is_none() {
            let fields = keys
                .iter()
                .map(|k| SortField::new(k.data_type().clone()))
                .collect();
            self.converter = Some(RowConverter::new(fields)?);
        }
        let conv = self.converter.as_ref().expect("set above");
        Ok(conv.convert_columns(keys)?)
    }

    fn decode(&self, key: &[u8]) -> Result<Vec<ArrayRef>, Error> {
        let conv = self.converter.as_ref().expect("keys were encoded");
        let parser = conv.parser();
        Ok(conv.convert_rows([parser.parse(key)])?)
    }

    /// Puts rows (sorted by time) into sessions of `key`, creating and
    /// merging sessions as the gaps say; returns the rows for each session.
    fn assign(
        &mut self,
        key: &[u8],
        idx: &[u32],
        times: &[i64],
        gap: i64,
        aggs: &[Arc<AggregateFunctionExpr>],
    ) -> Result<Vec<(u64, Vec<u32>)>, Error> {
        let sessions = self.by_key.entry(key.to_vec()).or_default();
        let mut rows: HashMap<u64, Vec<u32>> = HashMap::new();
        let mut merged_into: HashMap<u64, u64> = HashMap::new();
        for &i in idx {
            let t = times[i as usize];
            // Sessions this event touches: within `gap` of their span.
            let touching: Vec<usize> = sessions
                .iter()
                .enumerate()
                .filter(|(_, s)| t > s.start - gap && t < s.last + gap)
                .map(|(p, _)| p)
                .collect();
            let target = match touching.as_slice() {
                [] => {
                    self.next_id += 1;
                    self.open += 1;
                    sessions.push(Session {
                        id: self.next_id,
                        start: t,
                        last: t,
                        groups: Groups::new(None, aggs)?,
                    });
                    sessions.len() - 1
                }
                [one] => *one,
                [first, rest @ ..] => {
                    // The event bridges sessions: they become one.
                    for &p in rest.iter().rev() {
                        let other = sessions.remove(p);
                        self.open -= 1;
                        merged_into.insert(other.id, sessions[*first].id);
                        let s = &mut sessions[*first];
                        s.start = s.start.min(other.start);
                        s.last = s.last.max(other.last);
                        s.groups.merge(other.groups)?;
                    }
                    *first
                }
            };
            let s = &mut sessions[target];
            s.start = s.start.min(t);
            s.last = s.last.max(t);
            rows.entry(s.id).or_default().push(i);
        }
        // Rows assigned to a session that a later row merged away follow it.
        let resolve = |mut id: u64| {
            while let Some(&to) = merged_into.get(&id) {
                id = to;
            }
            id
        };
        let mut out: HashMap<u64, Vec<u32>> = HashMap::new();
        for (id, r) in rows {
            out.entry(resolve(id)).or_default().extend(r);
        }
        Ok(out.into_iter().collect())
    }

    fn groups(&mut self, key: &[u8], id: u64) -> &mut Groups {
        let sessions = self.by_key.get_mut(key).expect("assigned above");
        let s = sessions
            .iter_mut()
            .find(|s| s.id == id)
            .expect("assigned sessions exist");
        &mut s.groups
    }

    /// Removes the sessions whose end (last event + gap) is at or before the
    /// watermark: `(key, start, last, state)`, oldest first.
    fn close(&mut self, watermark: i64, gap: i64) -> Vec<(Vec<u8>, i64, i64, Groups)> {
        let mut out = Vec::new();
        self.by_key.retain(|key, sessions| {
            let mut i = 0;
            while i < sessions.len() {
                if sessions[i].last.saturating_add(gap) <= watermark {
                    let s = sessions.remove(i);
                    out.push((key.clone(), s.start, s.last, s.groups));
                } else {
                    i += 1;
                }
            }
            !sessions.is_empty()
        });
        self.open -= out.len();
        out.sort_by_key(|(k, start, _, _)| (*start, k.clone()));
        out
    }
}
