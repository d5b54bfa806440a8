//! A continuous query: events in, rows of closed windows out.
//!
//! Event time is each event's timestamp (the source sets it from its
//! `timestamp_field`, or to the arrival time). The watermark is the largest
//! event time seen minus the allowed lateness; a window closes, and emits
//! its rows once, when the watermark reaches its end. An event is late when
//! a window it belongs to has already closed (for sessions: when it is older
//! than the watermark): it is left out of every window, counted, and handed
//! back so the caller can route it to a side output. The watermark moves per
//! event, so results do not depend on how events were batched.

use crate::aggregate::WindowedAggregate;
use crate::plan::{Plan, Post, Prefilter};
use crate::schema::{self, SchemaRef};
use crate::to_arrow::Converter;
use crate::window::{self, Rewritten, Window};
use crate::Error;
use arrow::array::{
    ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampNanosecondArray, UInt32Array,
};
use arrow::datatypes::{Schema, TimestampNanosecondType};
use std::sync::Arc;
use weir_layout::BatchBuf;

/// How a query reads its input.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Names the input table answers to (`FROM <name>`).
    pub tables: Vec<String>,
    /// The table's columns; inferred from the first batch when absent.
    pub schema: Option<Schema>,
    /// How far behind the newest event time a late event may still count,
    /// in nanoseconds.
    pub allowed_lateness: i64,
    /// Groups open at once over all windows; rows that would open one more
    /// are left out and counted (`over_max_groups`). `None`: no bound.
    pub max_groups: Option<usize>,
}

/// What one batch produced.
#[derive(Debug, Default)]
pub struct Pushed {
    /// Rows of the windows this batch closed (or, without a window, the
    /// batch's own result rows).
    pub rows: Vec<Rows>,
    /// The events that came too late for their windows, unchanged.
    pub late: BatchBuf,
    /// Events the query could not evaluate (a division by zero, a cast of
    /// a value that does not convert), unchanged; the other events of their
    /// batch are in the results.
    pub failed: BatchBuf,
    /// Why each of `failed` failed, in the same order.
    pub reasons: Vec<String>,
}

impl Pushed {
    /// Takes the rows of the evaluated table that failed as events of
    /// `batch`; `on_time` says which events the rows are when late ones
    /// were left out of the table.
    fn fail(&mut self, batch: &BatchBuf, on_time: Option<&[bool]>, failed: Vec<(usize, String)>) {
        if failed.is_empty() {
            return;
        }
        let events: Vec<usize> = match on_time {
            Some(mask) => (0..mask.len()).filter(|&i| mask[i]).collect(),
            None => (0..batch.len()).collect(),
        };
        for (row, reason) in failed {
            if let Some(e) = events.get(row).and_then(|&i| batch.get(i)) {
                let _ = self.failed.push_raw(e.raw());
                self.reasons.push(reason);
            }
        }
    }
}

/// Runs a batch through a query without an aggregate whose `WHERE` reads
/// fewer columns than the query: the predicate is evaluated on its own
/// columns, and only the rows it keeps are converted whole and run through
/// the steps (the filter again, then the projections). `None` when the
/// predicate fails on the batch: the whole path then finds the rows that
/// fail, alone.
fn prefiltered(
    run: &mut Running,
    stats: &mut QueryStats,
    batch: &BatchBuf,
) -> Result<Option<Pushed>, Error> {
    use arrow::array::Array;
    let Some((pre, probe)) = run.prefilter.as_mut() else {
        return Ok(None);
    };
    let table = probe.convert(batch);
    let n = table.num_rows();
    let Ok(mask) = pre.predicate.evaluate(&table).and_then(|v| v.into_array(n)) else {
        return Ok(None);
    };
    let Some(mask) = mask.as_boolean_opt() else {
        return Ok(None);
    };
    let keep: Vec<bool> = (0..n).map(|i| mask.is_valid(i) && mask.value(i)).collect();
    for (event, _) in batch.iter().zip(&keep).filter(|(_, k)| **k) {
        run.converter.push(&event);
    }
    let kept = run.converter.finish();
    let times = table.column(0).as_primitive::<TimestampNanosecondType>();
    let mut out = Pushed::default();
    row_by_row(
        run,
        stats,
        batch,
        &kept,
        Some(&keep),
        times.values(),
        &mut out,
    )?;
    Ok(Some(out))
}

/// Runs the steps of a query without an aggregate over `table`, the rows
/// of the events of `batch` that `mask` keeps (all without one): a row
/// that fails to evaluate fails alone, and the rows are as of the newest
/// of `times`.
fn row_by_row(
    run: &Running,
    stats: &mut QueryStats,
    batch: &BatchBuf,
    table: &RecordBatch,
    mask: Option<&[bool]>,
    times: &[i64],
    out: &mut Pushed,
) -> Result<(), Error> {
    let (mut parts, mut failed) = (Vec::new(), Vec::new());
    let steps = &run.plan.steps;
    let mut eval = |t: &RecordBatch| {
        parts.push(steps.run(t.clone())?);
        Ok(())
    };
    isolate(table, 0, &mut eval, &mut failed, &mut 64);
    out.fail(batch, mask, failed);
    let rows = match parts.len() {
        0 => RecordBatch::new_empty(run.plan.output.clone()),
        1 => parts.pop().expect("one part"),
        _ => arrow::compute::concat_batches(&parts[0].schema(), &parts)?,
    };
    stats.rows += rows.num_rows() as u64;
    let window_end = times.iter().copied().max().unwrap_or(i64::MIN);
    out.rows.push(Rows {
        window_end,
        batch: rows,
    });
    Ok(())
}

/// Result rows, with the event time they are as of: alert rules evaluate
/// them at that time, so a replay fires as the live stream would have.
#[derive(Debug, Clone)]
pub struct Rows {
    /// The end of the window the rows are of; without a window, the newest
    /// event time of the batch.
    pub window_end: i64,
    pub batch: RecordBatch,
}

/// Just the batches, for callers that do not need the times.
pub fn batches(rows: impl IntoIterator<Item = Rows>) -> Vec<RecordBatch> {
    rows.into_iter().map(|r| r.batch).collect()
}

/// Counters of a running query.
#[derive(Debug, Default, Clone, Copy)]
pub struct QueryStats {
    pub events: u64,
    pub late: u64,
    /// Values that did not fit the schema's type (they became NULL).
    pub misfits: u64,
    pub rows: u64,
    pub open_windows: usize,
    /// Groups holding state over all open windows.
    pub open_groups: usize,
    /// Rows left out because their group would have passed `max_groups`.
    pub over_max_groups: u64,
    /// The current watermark (ns), `i64::MIN` before any event.
    pub watermark: i64,
}

/// Without a declared schema, events are held until the query plans over
/// the columns seen so far, or this many have arrived.
const INFER_EVENTS: usize = 10_000;

pub struct Query {
    rewritten: Rewritten,
    opts: QueryOptions,
    run: Option<Running>,
    /// Events seen before the query could plan (a column it names had not
    /// appeared yet).
    pending: Vec<BatchBuf>,
    max_time: i64,
    watermark: i64,
    stats: QueryStats,
}

struct Running {
    plan: Plan,
    converter: Converter,
    aggregate: Option<(WindowedAggregate, Post)>,
    /// A query without an aggregate: its `WHERE` over the columns it reads,
    /// and their converter.
    prefilter: Option<(Prefilter, Converter)>,
}

impl Query {
    /// Parses the query, and plans it when the schema is declared.
    pub fn new(sql: &str, opts: QueryOptions) -> Result<Query, Error> {
        let rewritten = window::rewrite(sql)?;
        let mut q = Query {
            rewritten,
            opts,
            run: None,
            pending: Vec::new(),
            max_time: i64::MIN,
            watermark: i64::MIN,
            stats: QueryStats::default(),
        };
        if let Some(schema) = q.opts.schema.clone() {
            q.run = Some(q.start(&schema)?);
        }
        Ok(q)
    }

    /// The columns of the rows, once planned.
    pub fn output_schema(&self) -> Option<SchemaRef> {
        self.run.as_ref().map(|r| r.plan.output.clone())
    }

    /// The window in its `GROUP BY`, if any.
    pub fn window(&self) -> Option<Window> {
        self.rewritten.window
    }

    /// The output columns that come from the `GROUP BY` (other than the
    /// window's): together they name a group, once planned.
    pub fn key_columns(&self) -> Option<&[String]> {
        self.run.as_ref().map(|r| &r.plan.keys[..])
    }

    /// The columns converted from each batch: the ones the query reads.
    pub fn read_schema(&self) -> Option<SchemaRef> {
        self.run.as_ref().map(|r| r.plan.read.clone())
    }

    pub fn stats(&self) -> QueryStats {
        let mut s = self.stats;
        s.watermark = self.watermark;
        if let Some(r) = &self.run {
            s.misfits = r.converter.misfits + r.prefilter.as_ref().map_or(0, |p| p.1.misfits);
            if let Some((a, _)) = &r.aggregate {
                s.open_windows = a.open_windows();
                s.open_groups = a.open_groups();
                s.over_max_groups = a.over_max_groups();
            }
        }
        s
    }

    /// The newest event time seen (ns), `i64::MIN` before any event.
    pub fn max_event_time(&self) -> i64 {
        self.max_time
    }

    /// The first value that did not fit the schema, described.
    pub fn first_misfit(&self) -> Option<&str> {
        let run = self.run.as_ref()?;
        let probe = run
            .prefilter
            .as_ref()
            .and_then(|p| p.1.first_misfit.as_deref());
        run.converter.first_misfit.as_deref().or(probe)
    }

    fn start(&self, schema: &Schema) -> Result<Running, Error> {
        let plan = Plan::new(&self.rewritten, &self.opts.tables, schema)?;
        let converter = Converter::new(plan.read.clone());
        let aggregate = match (&plan.aggregate, plan.window) {
            (Some((agg, post)), Some(w)) => {
                let mut a = WindowedAggregate::new(w, agg, post.agg_schema.clone())?;
                if let Some(max) = self.opts.max_groups {
                    a.set_max_groups(max);
                }
                Some((a, post.clone()))
            }
            _ => None,
        };
        let prefilter = match &aggregate {
            None => plan.steps.prefilter(&plan.read).map(|p| {
                let probe = Converter::new(p.schema.clone());
                (p, probe)
            }),
            Some(_) => None,
        };
        Ok(Running {
            plan,
            converter,
            aggregate,
            prefilter,
        })
    }

    /// Runs a batch of events through the query.
    pub fn push(&mut self, batch: &BatchBuf) -> Result<Pushed, Error> {
        if batch.is_empty() {
            return Ok(Pushed::default());
        }
        if self.run.is_none() {
            return self.plan_and_push(batch);
        }
        let run = self.run.as_mut().expect("planned above");
        self.stats.events += batch.len() as u64;
        if let Some(out) = prefiltered(run, &mut self.stats, batch)? {
            return Ok(out);
        }
        let table = run.converter.convert(batch);
        let times = table
            .column(0)
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .clone();

        let mut out = Pushed::default();
        let window = self.rewritten.window;
        let lateness = self.opts.allowed_lateness;
        let mut on_time: Option<Vec<bool>> = None;
        if let Some(w) = window {
            let (mut max, mut wm) = (self.max_time, self.watermark);
            for (i, &t) in times.iter().enumerate() {
                if is_late(w, t, wm) {
                    if let Some(e) = batch.get(i) {
                        let _ = out.late.push_raw(e.raw());
                    }
                    on_time.get_or_insert_with(|| vec![true; times.len()])[i] = false;
                    continue;
                }
                if t > max {
                    max = t;
                    wm = max.saturating_sub(lateness);
                }
            }
            self.max_time = max;
            self.watermark = wm;
            self.stats.late += out.late.len() as u64;
        }
        let table = match &on_time {
            Some(mask) => {
                arrow::compute::filter_record_batch(&table, &BooleanArray::from(mask.clone()))?
            }
            None => table,
        };

        let Some((agg, _)) = run.aggregate.as_mut() else {
            let mask = on_time.as_deref();
            row_by_row(run, &mut self.stats, batch, &table, mask, &times, &mut out)?;
            return Ok(out);
        };
        let mut failed = Vec::new();
        let steps = &run.plan.steps;
        let window = window.expect("aggregates are windowed");
        let schema = &run.plan.input;
        // The aggregate evaluates its arguments before it folds anything
        // in, so a part that fails to evaluate leaves no trace.
        let mut eval = |t: &RecordBatch| {
            let input = steps.run(with_window_columns(t, window, schema)?)?;
            agg.update(&input)
        };
        isolate(&table, 0, &mut eval, &mut failed, &mut 64);
        out.fail(batch, on_time.as_deref(), failed);
        out.rows = self.close(self.watermark)?;
        Ok(out)
    }

    /// Infers the schema from the events so far and plans. A column the
    /// query names may simply not have appeared yet: then the events wait,
    /// up to `INFER_EVENTS`, for a later batch to bring it.
    fn plan_and_push(&mut self, batch: &BatchBuf) -> Result<Pushed, Error> {
        self.pending.push(batch.clone());
        let inferred = schema::infer(self.pending.iter());
        match self.start(&inferred) {
            Ok(run) => self.run = Some(run),
            Err(e) => {
                let seen: usize = self.pending.iter().map(|b| b.len()).sum();
                if seen < INFER_EVENTS && e.is_unknown_column() {
                    return Ok(Pushed::default());
                }
                self.pending.clear();
                return Err(e);
            }
        }
        let mut out = Pushed::default();
        for b in std::mem::take(&mut self.pending) {
            let p = self.push(&b)?;
            out.rows.extend(p.rows);
            out.late.append(&p.late);
            out.failed.append(&p.failed);
            out.reasons.extend(p.reasons);
        }
        Ok(out)
    }

    /// The input has been idle for `elapsed` (ns of wall-clock time since
    /// the last event): moves the watermark as far as event time would have
    /// moved in that time, and returns the rows of the windows that closes.
    /// Without it, a window stays open until a later event arrives.
    pub fn idle(&mut self, elapsed: i64) -> Result<Vec<Rows>, Error> {
        if self.max_time == i64::MIN {
            return Ok(Vec::new());
        }
        let wm = self
            .max_time
            .saturating_add(elapsed)
            .saturating_sub(self.opts.allowed_lateness);
        if wm <= self.watermark {
            return Ok(Vec::new());
        }
        self.watermark = wm;
        self.close(wm)
    }

    /// The input has ended: closes every open window and returns its rows.
    pub fn finish(&mut self) -> Result<Vec<Rows>, Error> {
        if self.run.is_none() && !self.pending.is_empty() {
            // The named columns never appeared: plan over what did, for
            // the error that says so.
            let inferred = schema::infer(self.pending.iter());
            self.pending.clear();
            self.run = Some(self.start(&inferred)?);
        }
        self.close(i64::MAX)
    }

    /// Closes the windows that end at or before `wm` and runs what sits
    /// above the aggregate over their rows.
    fn close(&mut self, wm: i64) -> Result<Vec<Rows>, Error> {
        let Some(run) = self.run.as_mut() else {
            return Ok(Vec::new());
        };
        let Some((agg, post)) = run.aggregate.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (window_end, rows) in agg.close(wm)? {
            for batch in post.run(rows, &run.plan)? {
                self.stats.rows += batch.num_rows() as u64;
                out.push(Rows { window_end, batch });
            }
        }
        Ok(out)
    }
}

/// Evaluates `table` (whose first row is row `first` of the batch) with
/// `eval`; when that fails, evaluates its halves, until the rows that fail
/// are alone: one row that cannot be evaluated fails itself, not its batch.
/// `splits` bounds the work, so a query that fails on every row costs a
/// few dozen evaluations; past it a failing part fails whole.
fn isolate(
    table: &RecordBatch,
    first: usize,
    eval: &mut impl FnMut(&RecordBatch) -> Result<(), Error>,
    failed: &mut Vec<(usize, String)>,
    splits: &mut u32,
) {
    let Err(e) = eval(table) else { return };
    let n = table.num_rows();
    if n > 1 && *splits > 0 {
        *splits -= 1;
        let half = n / 2;
        isolate(&table.slice(0, half), first, eval, failed, splits);
        isolate(
            &table.slice(half, n - half),
            first + half,
            eval,
            failed,
            splits,
        );
        return;
    }
    let reason = e.to_string();
    failed.extend((first..first + n).map(|i| (i, reason.clone())));
}

/// Whether an event at `t` is too late for the watermark `wm`.
fn is_late(w: Window, t: i64, wm: i64) -> bool {
    match w {
        Window::Session { .. } => t < wm,
        _ => {
            let mut first = None;
            w.for_each_start(t, |s| {
                first.get_or_insert(s);
            });
            let width = w.width().expect("fixed windows have a width");
            first.is_some_and(|s| s.saturating_add(width) <= wm)
        }
    }
}

/// The table rows with `window_start` and `window_end`: one row per window
/// an event is in (hop windows repeat the event), or, for sessions, the
/// event time in both until the session is known.
fn with_window_columns(
    table: &RecordBatch,
    w: Window,
    schema: &SchemaRef,
) -> Result<RecordBatch, Error> {
    let times = table.column(0).as_primitive::<TimestampNanosecondType>();
    let (rows, starts, ends): (RecordBatch, Vec<i64>, Vec<i64>) = match w {
        Window::Tumble { width } => {
            let starts: Vec<i64> = times
                .values()
                .iter()
                .map(|t| t - t.rem_euclid(width))
                .collect();
            let ends = starts.iter().map(|s| s + width).collect();
            (table.clone(), starts, ends)
        }
        Window::Hop { width, .. } => {
            let mut idx = Vec::new();
            let mut starts = Vec::new();
            for (i, &t) in times.values().iter().enumerate() {
                w.for_each_start(t, |s| {
                    idx.push(i as u32);
                    starts.push(s);
                });
            }
            let rows = arrow::compute::take_record_batch(table, &UInt32Array::from(idx))?;
            let ends = starts.iter().map(|s| s + width).collect();
            (rows, starts, ends)
        }
        Window::Session { .. } => {
            let t = times.values().to_vec();
            (table.clone(), t.clone(), t)
        }
    };
    let mut cols: Vec<ArrayRef> = rows.columns().to_vec();
    cols.push(Arc::new(
        TimestampNanosecondArray::from(starts).with_timezone("UTC"),
    ));
    cols.push(Arc::new(
        TimestampNanosecondArray::from(ends).with_timezone("UTC"),
    ));
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}
