//! The `wasm` transform: a filter or transform plugin applied to every batch.
//!
//! A worker owns one instance. Per-event errors and whole-batch failures go
//! where `on_error` says; nothing a plugin does loses an event silently. A
//! trap leaves the instance in an unknown state, so it is rebuilt before the
//! next batch.

use crate::config::OnError;
use crate::plugin::{CallError, EventError, Instance, Plugin, Reply};
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
    pub fn process(&mut self, mut batch: BatchBuf, stats: &Stats) -> Processed {
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
        match instance.call(&batch) {
            Ok((Reply::Keep(bits), errors)) if errors.is_empty() => {
                batch.retain_bitmap(&bits);
                Processed {
                    out: batch,
                    dead: BatchBuf::new(),
                }
            }
            Ok((Reply::Output(out), errors)) if errors.is_empty() => Processed {
                out,
                dead: BatchBuf::new(),
            },
            Ok((reply, errors)) => self.with_event_errors(&batch, reply, errors, stats),
            Err(CallError::Returned(msg)) => {
                stats.count_reason("batch_error", 1);
                self.fail_all(&batch, &msg, stats)
            }
            Err(CallError::Broken { failure, message }) => {
                self.instance = None;
                stats.count_reason(failure.as_str(), 1);
                tracing::error!(plugin = %name, "{message}; the instance will be rebuilt");
                self.fail_all(&batch, &message, stats)
            }
        }
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
        tracing::warn!(plugin = %self.plugin.name, events = batch.len(), "batch failed: {msg}");
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
