//! The `wasm` transform: a filter or transform plugin applied to every batch.
//!
//! A worker owns one instance. A failure fails the events that caused it,
//! not their batch: per-event errors come back per event, and a call that
//! fails as a whole (an error for the batch, a trap, a timeout) is run again
//! on halves of the batch until the failing events are alone. Failed events
//! go where `on_error` says; nothing a plugin does loses an event silently.
//! A trap leaves the instance in an unknown state, so it is rebuilt before
//! the next call.

use crate::config::OnError;
use crate::plugin::{CallError, EventError, Failure, Instance, Plugin, Reply};
use crate::topology::{Batch, Output, Rx, Stats, Swap};
use std::sync::mpsc::Receiver;
use weir_layout::{BatchBuf, EventKind, EventView};

/// One worker of a plugin stage.
pub struct Worker {
    pub plugin: Plugin,
    pub on_error: OnError,
    /// `None` after a trap, until rebuilt.
    instance: Option<Instance>,
    /// New versions from the hot-reload watcher, taken between batches.
    swaps: Option<Receiver<Swap>>,
}

/// A batch after the plugin: what goes on, and what failed when
/// `on_error = "dead_letter"`.
#[derive(Debug, Default)]
pub struct Processed {
    pub out: BatchBuf,
    pub dead: BatchBuf,
}

impl Worker {
    pub fn new(plugin: Plugin, instance: Instance, on_error: OnError) -> Self {
        Worker {
            plugin,
            on_error,
            instance: Some(instance),
            swaps: None,
        }
    }

    /// Takes new plugin versions from `swaps` at batch boundaries.
    pub fn with_swaps(mut self, swaps: Receiver<Swap>) -> Self {
        self.swaps = Some(swaps);
        self
    }

    /// Switches to the newest version waiting, if any.
    fn take_swap(&mut self) {
        let newest = self.swaps.as_ref().and_then(|rx| rx.try_iter().last());
        if let Some((plugin, instance)) = newest {
            self.plugin = plugin;
            self.instance = Some(instance);
        }
    }

    /// Runs batches from `input` until it closes; failed events go to
    /// `dead` when the policy is `dead_letter`.
    pub fn run(mut self, input: Rx, out: Output, dead: Option<Output>) {
        while let Ok(Batch { events, acks }) = input.recv_blocking() {
            Stats::add(&out.stats.events_in, events.len());
            self.take_swap();
            let started = std::time::Instant::now();
            let p = self.process(events, &out.stats);
            out.stats.record_call(started.elapsed());
            if let Some(dead) = &dead {
                // Dead letters are counted by the stage, not as its output.
                if dead.send(Batch::new(p.dead, acks.clone())).is_err() {
                    tracing::error!(plugin = %self.plugin.name, "the dead-letter output is gone");
                }
            }
            if out.send(Batch::new(p.out, acks)).is_err() {
                return;
            }
        }
    }

    /// Applies the plugin to one batch, errors handled by policy.
    pub fn process(&mut self, batch: BatchBuf, stats: &Stats) -> Processed {
        let mut budget = Retries::default();
        self.isolate(batch, stats, &mut budget)
    }

    /// Runs `batch`; when the call fails as a whole (an error for the batch,
    /// a trap, a timeout), runs its halves again, on a fresh instance after
    /// a trap, until the events that fail are found alone: one bad event
    /// fails itself, not its batch. `budget` bounds the retries, so a plugin
    /// that fails on everything costs a few calls, not one per event.
    fn isolate(&mut self, mut batch: BatchBuf, stats: &Stats, budget: &mut Retries) -> Processed {
        let name = &self.plugin.name;
        if self.instance.is_none() {
            match self.plugin.instantiate() {
                Ok(i) => {
                    tracing::info!(plugin = %name, "plugin instance rebuilt");
                    stats.count_reason("rebuild", 1);
                    self.instance = Some(i);
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    stats.count_reason("rebuild_failed", 1);
                    return self.fail_all(&batch, &msg, stats);
                }
            }
        }
        let instance = self.instance.as_mut().expect("instance present");
        let (reason, message) = match instance.call(&batch) {
            Ok((Reply::Keep(bits), errors)) if errors.is_empty() => {
                batch.retain_bitmap(&bits);
                return Processed {
                    out: batch,
                    dead: BatchBuf::new(),
                };
            }
            Ok((Reply::Output(out), errors)) if errors.is_empty() => {
                return Processed {
                    out,
                    dead: BatchBuf::new(),
                }
            }
            Ok((reply, errors)) => return self.with_event_errors(&batch, reply, errors, stats),
            Err(CallError::Returned(msg)) => ("batch_error", msg),
            Err(CallError::Broken { failure, message }) => {
                self.instance = None;
                tracing::debug!(plugin = %name, "{message}; the instance will be rebuilt");
                (failure.as_str(), message)
            }
        };
        if batch.len() > 1 && budget.take(reason) {
            let tail = batch.split_off(batch.len() / 2);
            let mut head = self.isolate(batch, stats, budget);
            let tail = self.isolate(tail, stats, budget);
            head.out.append(&tail.out);
            head.dead.append(&tail.dead);
            return head;
        }
        stats.count_reason(reason, batch.len() as u64);
        self.fail_all(&batch, &message, stats)
    }

    /// Output when some events failed: the plugin's answer for the others,
    /// and the failed ones by policy.
    fn with_event_errors(
        &self,
        batch: &BatchBuf,
        reply: Reply,
        errors: Vec<EventError>,
        stats: &Stats,
    ) -> Processed {
        let mut failed: Vec<Option<&str>> = vec![None; batch.len()];
        for e in &errors {
            if let Some(slot) = failed.get_mut(e.index as usize) {
                *slot = Some(&e.message);
            }
        }
        Stats::add(&stats.errors, errors.len());
        stats.count_reason("event_error", errors.len() as u64);
        self.log_errors(&errors);
        let mut p = match reply {
            Reply::Keep(bits) => {
                let mut out = BatchBuf::with_capacity(batch.len(), batch.byte_len());
                for (i, event) in batch.iter().enumerate() {
                    if failed[i].is_none() && weir_layout::Bitmap::get(&bits, i) {
                        let _ = out.push_raw(event.raw());
                    }
                }
                Processed {
                    out,
                    dead: BatchBuf::new(),
                }
            }
            Reply::Output(out) => Processed {
                out,
                dead: BatchBuf::new(),
            },
        };
        for (i, event) in batch.iter().enumerate() {
            if let Some(msg) = failed[i] {
                self.on_failed(&mut p, &event, msg, stats);
            }
        }
        p
    }

    fn fail_all(&self, batch: &BatchBuf, msg: &str, stats: &Stats) -> Processed {
        Stats::add(&stats.errors, batch.len());
        match batch.len() {
            1 => tracing::warn!(plugin = %self.plugin.name, "an event failed: {msg}"),
            n => {
                tracing::warn!(plugin = %self.plugin.name, events = n, "events failed together: {msg}")
            }
        }
        let mut p = Processed::default();
        for event in batch.iter() {
            self.on_failed(&mut p, &event, msg, stats);
        }
        p
    }

    /// A failed event goes on (`pass`), to the dead-letter output, or away.
    /// Under `pass`, events the plugin answered for come first, then the
    /// failed ones in their original order.
    fn on_failed(&self, p: &mut Processed, event: &EventView<'_>, msg: &str, stats: &Stats) {
        let reason = || format!("plugin `{}`: {msg}", self.plugin.name);
        match self.on_error {
            OnError::Drop => Stats::add(&stats.dropped, 1),
            OnError::Pass => attach_error(&mut p.out, event, &reason()),
            OnError::DeadLetter => attach_error(&mut p.dead, event, &reason()),
        }
    }

    fn log_errors(&self, errors: &[EventError]) {
        if let Some(first) = errors.first() {
            tracing::warn!(
                plugin = %self.plugin.name,
                "{} event(s) failed in a batch; first (event {}): {}",
                errors.len(),
                first.index,
                first.message
            );
        }
    }
}

/// How many times one batch's parts may be run again to find the events
/// that fail: a few dozen calls find a handful of bad events in a batch of
/// thousands, and a plugin that fails on everything fails its batch after
/// about a hundred. Timeouts, each costing the deadline, are retried enough
/// to find one runaway event in a batch of 4,096, or to halve a batch that
/// is too big for the deadline.
#[derive(Debug)]
struct Retries {
    calls: u32,
    timeouts: u32,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            calls: 64,
            timeouts: 12,
        }
    }
}

impl Retries {
    fn take(&mut self, reason: &str) -> bool {
        let left = match reason == Failure::Timeout.as_str() {
            true => &mut self.timeouts,
            false => &mut self.calls,
        };
        if *left == 0 {
            return false;
        }
        *left -= 1;
        true
    }
}

/// Copies `event` into `out` with `reason` in `_error`. An earlier error
/// (say, from decoding) is kept: reasons accumulate, separated by `; `.
pub fn attach_error(out: &mut BatchBuf, event: &EventView<'_>, reason: &str) {
    if event.kind() != EventKind::Log {
        let _ = out.push_raw(event.raw());
        return;
    }
    let fields = event.object().expect("log events have fields");
    let reason = match event.get_str("_error") {
        Some(earlier) => format!("{earlier}; {reason}"),
        None => reason.to_string(),
    };
    let _ = out
        .log(event.timestamp())
        .fields_from(fields, |k| k == "_error")
        .field("_error", reason.as_str())
        .finish();
}
