//! Continuous SQL in a pipeline: `[queries.NAME]` feeds every batch of its
//! inputs to a [`weir_sql::Query`] and sends the rows of each closed window
//! on as events, to sinks like any other events, and to the alert rules
//! that read the query.
//!
//! Events too late for their window go to `NAME.late`, and are counted
//! (reason `late`) whether or not anything reads that output. An event the
//! query cannot evaluate (a division by zero, a failed cast) fails alone:
//! it goes to `NAME.errors` with the reason in `_error`, counted as
//! `eval_error`, and the rest of its batch is aggregated. When the input
//! ends, every open window closes, so the last windows are never lost.

use crate::alerts::Evaluator;
use crate::codec::json_encode;
use crate::config::{Pipeline, Problem, QueryConfig};
use crate::topology::{drain, Ack, Batch, Output, Rx, Stats};
use crate::transforms::wasm::attach_error;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use weir_layout::{BatchBuf, LayoutError};
use weir_sql::arrow::array::RecordBatch;
use weir_sql::{Query, QueryOptions, Rows};

/// A query ready to run, with how long its input may idle before event
/// time moves on with the wall clock.
pub struct QueryJob {
    pub query: Query,
    idle_timeout: Option<Duration>,
    /// The alert rules that read this query's rows.
    pub alerts: Option<Evaluator>,
}

/// Builds the query of `[queries.NAME]`, or says what is wrong with it.
pub fn build(p: &Pipeline, name: &str, q: &QueryConfig) -> Result<QueryJob, Problem> {
    let lateness = weir_sql::parse_duration(&q.allowed_lateness)
        .map_err(|e| p.problem("queries", name, Some("allowed_lateness"), e))?;
    let idle = weir_sql::parse_duration(&q.idle_timeout)
        .map_err(|e| p.problem("queries", name, Some("idle_timeout"), e))?;
    let schema = match &q.schema {
        Some(cols) => {
            let cols: Vec<(String, String)> =
                cols.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let s = weir_sql::schema::declared(&cols)
                .map_err(|e| p.problem("queries", name, Some("schema"), e.to_string()))?;
            Some(s)
        }
        None => None,
    };
    if q.max_groups == 0 {
        return Err(p.problem("queries", name, Some("max_groups"), "must be more than 0"));
    }
    let opts = QueryOptions {
        tables: table_names(&q.inputs),
        schema,
        allowed_lateness: lateness,
        max_groups: Some(q.max_groups),
    };
    let query = Query::new(&q.sql, opts)
        .map_err(|e| p.problem("queries", name, Some("sql"), e.to_string()))?;
    Ok(QueryJob {
        query,
        idle_timeout: (idle > 0).then(|| Duration::from_nanos(idle as u64)),
        alerts: None,
    })
}

/// The names a query's table answers to: each input without an output
/// suffix, and `events`.
pub fn table_names(inputs: &[String]) -> Vec<String> {
    let mut names: Vec<String> = inputs
        .iter()
        .filter(|i| !i.contains('.'))
        .cloned()
        .collect();
    if !names.iter().any(|n| n == "events") {
        names.push("events".into());
    }
    names
}

/// A query's outputs beside its rows.
pub struct Sides {
    /// Events too late for their window.
    pub late: Output,
    /// Events the query could not evaluate, with `_error`.
    pub errors: Output,
}

/// Runs the query until its input closes, then closes every window.
pub fn run(name: &str, job: QueryJob, input: Rx, out: Output, sides: Sides) {
    let Sides { late, errors } = sides;
    let QueryJob {
        mut query,
        idle_timeout,
        alerts,
    } = job;
    let stats = out.stats.clone();
    let mut failed = false;
    let mut misfit_logged = false;
    let mut over_max_groups = 0;
    let mut last_event = Instant::now();
    let mut held = Held::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a timer runtime starts");
    loop {
        let batch = match idle_timeout {
            None => input.recv_blocking(),
            Some(idle) => {
                let wait = idle.saturating_sub(last_event.elapsed()).max(IDLE_TICK);
                match rt.block_on(async { tokio::time::timeout(wait, input.recv()).await }) {
                    Ok(received) => received,
                    Err(_) => {
                        let since = last_event.elapsed();
                        if since >= idle && !failed {
                            match query.idle(since.as_nanos() as i64) {
                                Ok(rows) => {
                                    if let Some(a) = &alerts {
                                        a.observe(&query, &rows, Some(query.stats().watermark));
                                    }
                                    let acks = held.release(&query);
                                    if send_rows(name, &rows, acks, &out).is_err() {
                                        break;
                                    }
                                }
                                Err(e) => tracing::error!(
                                    query = name,
                                    "closing idle windows failed: {e}"
                                ),
                            }
                        }
                        continue;
                    }
                }
            }
        };
        let Ok(Batch {
            events: batch,
            acks,
        }) = batch
        else {
            break;
        };
        last_event = Instant::now();
        Stats::add(&stats.events_in, batch.len());
        if failed {
            Stats::add(&stats.errors, batch.len());
            continue;
        }
        let pushed = match query.push(&batch) {
            Ok(p) => p,
            Err(e) if query.output_schema().is_some() => {
                // A batch the planned query cannot evaluate (a cast that
                // fails on a value): those events are counted, the query
                // goes on with the next batch.
                let n = batch.len() as u64;
                stats.count_reason("query_error", n);
                Stats::add(&stats.errors, batch.len());
                if stats.reasons().get("query_error") == Some(&n) {
                    tracing::error!(query = name, "a batch of {n} events failed: {e}; counted as `query_error`, the query goes on");
                }
                continue;
            }
            Err(e) => {
                // Planning over the inferred schema failed: the pipeline
                // goes on without this query.
                tracing::error!(
                    query = name,
                    "query stopped: {e}; its input is counted as errors from now on"
                );
                stats.count_reason("query_failed", batch.len() as u64);
                Stats::add(&stats.errors, batch.len());
                failed = true;
                continue;
            }
        };
        if !pushed.late.is_empty() {
            stats.count_reason("late", pushed.late.len() as u64);
            let _ = late.send(Batch::new(pushed.late, acks.clone()));
        }
        if !pushed.failed.is_empty() {
            let n = pushed.failed.len();
            Stats::add(&stats.errors, n);
            stats.count_reason("eval_error", n as u64);
            if stats.reasons().get("eval_error") == Some(&(n as u64)) {
                tracing::warn!(query = name, "{n} event(s) could not be evaluated and went to `{name}.errors` (counted as `eval_error`); the first: {}", pushed.reasons[0]);
            }
            let mut failed = BatchBuf::with_capacity(n, pushed.failed.byte_len() + n * 64);
            for (event, reason) in pushed.failed.iter().zip(&pushed.reasons) {
                attach_error(&mut failed, &event, &format!("query `{name}`: {reason}"));
            }
            let _ = errors.send(Batch::new(failed, acks.clone()));
        }
        held.hold(&query, acks);
        if !misfit_logged {
            if let Some(m) = query.first_misfit() {
                tracing::warn!(query = name, "a value does not fit the query's schema and counts as NULL: {m} (declare `schema` to choose the types)");
                misfit_logged = true;
            }
        }
        let qs = query.stats();
        if qs.over_max_groups > over_max_groups {
            if over_max_groups == 0 {
                tracing::warn!(query = name, "{} groups are open, the query's max_groups: rows of new groups are left out (counted as `max_groups`) until windows close; raise max_groups if the key is meant to have that many values", qs.open_groups);
            }
            stats.count_reason("max_groups", qs.over_max_groups - over_max_groups);
            over_max_groups = qs.over_max_groups;
        }
        if qs.watermark != i64::MIN {
            stats.watermark_ns.store(qs.watermark, Ordering::Relaxed);
        }
        stats
            .open_windows
            .store(qs.open_windows as u64, Ordering::Relaxed);
        if let Some(a) = &alerts {
            a.observe(&query, &pushed.rows, Some(qs.watermark));
        }
        let acks = held.release(&query);
        if send_rows(name, &pushed.rows, acks, &out).is_err() {
            break;
        }
    }
    match query.finish() {
        Ok(rows) => {
            if let Some(a) = &alerts {
                a.observe(&query, &rows, None);
            }
            let _ = send_rows(name, &rows, held.release_all(), &out);
        }
        Err(e) => tracing::error!(query = name, "closing the last windows failed: {e}"),
    }
    let s = query.stats();
    if s.misfits > 0 {
        stats.count_reason("misfit", s.misfits);
    }
    drain(&input);
}

/// The acknowledgements of events still in open windows. A source commits
/// an event only once the rows of every window holding it are out, so a
/// crash replays what the windows had not yet emitted.
#[derive(Default)]
struct Held {
    /// Tokens with the watermark at which every window holding their
    /// events has closed, oldest first.
    waiting: VecDeque<(i64, Vec<Ack>)>,
}

impl Held {
    fn hold(&mut self, query: &Query, acks: Vec<Ack>) {
        if acks.is_empty() {
            return;
        }
        // The end of the last window holding the newest event so far; a
        // session can go on as long as events come, so it holds until none
        // is open.
        let until = match query.window() {
            None => i64::MIN,
            Some(w) => match w.width() {
                None => i64::MAX,
                Some(width) => {
                    let mut last = i64::MIN;
                    w.for_each_start(query.max_event_time(), |s| last = last.max(s));
                    last.saturating_add(width)
                }
            },
        };
        self.waiting.push_back((until, acks));
    }

    /// The tokens whose windows have all closed.
    fn release(&mut self, query: &Query) -> Vec<Ack> {
        let s = query.stats();
        let mut out = Vec::new();
        if query.output_schema().is_none() {
            // Events wait for the query to plan: none is in a window yet.
            return out;
        }
        while let Some((until, _)) = self.waiting.front() {
            if *until > s.watermark && s.open_windows > 0 {
                break;
            }
            out.extend(self.waiting.pop_front().map(|(_, a)| a).unwrap_or_default());
        }
        out
    }

    fn release_all(&mut self) -> Vec<Ack> {
        self.waiting.drain(..).flat_map(|(_, a)| a).collect()
    }
}

/// Sends the rows on as events, with the tokens they release.
fn send_rows(
    name: &str,
    rows: &[Rows],
    acks: Vec<Ack>,
    out: &Output,
) -> Result<(), crate::topology::Closed> {
    let n: usize = rows.iter().map(|r| r.batch.num_rows()).sum();
    if n == 0 {
        return Ok(());
    }
    let mut events = BatchBuf::with_capacity(n, n * 128);
    let now = crate::codec::timestamp::now_ns();
    for r in rows {
        if let Err(e) = weir_sql::append_rows(&r.batch, &mut events, now) {
            tracing::error!(query = name, "a result row could not become an event: {e}");
            out.stats
                .count_reason("row_error", r.batch.num_rows() as u64);
        }
    }
    out.send(Batch::new(events, acks))
}

/// Query rows as JSON lines, as a sink writes their events.
pub fn json_lines(rows: &[RecordBatch], out: &mut Vec<u8>) -> Result<(), LayoutError> {
    let mut events = BatchBuf::new();
    for r in rows {
        weir_sql::append_rows(r, &mut events, 0)?;
    }
    json_encode::write_lines(out, &events);
    Ok(())
}

/// How often an idle query checks the wall clock.
const IDLE_TICK: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_window_holds_its_events_acknowledgements_until_it_closes() {
        let schema = weir_sql::schema::declared(&[("service".into(), "string".into())]).unwrap();
        let opts = QueryOptions {
            tables: vec!["events".into()],
            schema: Some(schema),
            allowed_lateness: 0,
            max_groups: None,
        };
        let sql =
            "SELECT window_start, count(*) AS n FROM events GROUP BY tumble(interval '1 minute')";
        let mut query = Query::new(sql, opts).unwrap();
        let acked = Arc::new(Mutex::new(0));
        let a = acked.clone();
        let ack = Ack::new(Box::new(move |ok| {
            assert!(ok);
            *a.lock().unwrap() += 1;
        }));
        let at = |secs: i64| {
            let mut b = BatchBuf::new();
            b.log(secs * 1_000_000_000)
                .field("service", "cart")
                .finish()
                .unwrap();
            b
        };
        let mut held = Held::default();

        query.push(&at(10)).unwrap();
        held.hold(&query, vec![ack]);
        let open = held.release(&query);
        assert!(open.is_empty(), "the first minute is still open");

        // An event of the next minute closes the first.
        let pushed = query.push(&at(61)).unwrap();
        assert_eq!(pushed.rows.len(), 1);
        let released = held.release(&query);
        assert_eq!(released.len(), 1);
        drop(released);
        assert_eq!(*acked.lock().unwrap(), 1);
    }
}
