//! The `wasm` transform: a filter or transform plugin applied to every batch.
//!
//! A worker owns one instance. Per-event errors and whole-batch failures go
//! where `on_error` says; nothing a plugin does loses an event silently. A
//! trap leaves the instance in an unknown state, so it is rebuilt before the
//! next batch.

use crate::config::OnError;
use crate::plugin::{CallError, EventError, Instance, Plugin, Reply};
use crate::topology::{Output, Rx, Stats};
use weir_layout::{BatchBuf, EventKind, EventView};

/// One worker of a plugin stage.
pub struct Worker {
    pub plugin: Plugin,
    pub on_error: OnError,
    /// `None` after a trap, until rebuilt.
    instance: Option<Instance>,
}

impl Worker {
    pub fn new(plugin: Plugin, instance: Instance, on_error: OnError) -> Self {
        Worker {
            plugin,
            on_error,
            instance: Some(instance),
        }
    }

    /// Runs batches from `input` until it closes.
    pub fn run(mut self, input: Rx, out: Output) {
        while let Ok(batch) = input.recv_blocking() {
            Stats::add(&out.stats.events_in, batch.len());
            let result = self.process(batch, &out.stats);
            if out.send(result).is_err() {
                return;
            }
        }
    }

    /// Applies the plugin to one batch, errors handled by policy.
    pub fn process(&mut self, mut batch: BatchBuf, stats: &Stats) -> BatchBuf {
        let name = &self.plugin.name;
        if self.instance.is_none() {
            match self.plugin.instantiate() {
                Ok(i) => {
                    tracing::info!(plugin = %name, "plugin instance rebuilt");
                    self.instance = Some(i);
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    return self.fail_all(&batch, &msg, stats);
                }
            }
        }
        let instance = self.instance.as_mut().expect("instance present");
        match instance.call(&batch) {
            Ok((Reply::Keep(bits), errors)) if errors.is_empty() => {
                batch.retain_bitmap(&bits);
                batch
            }
            Ok((Reply::Output(out), errors)) if errors.is_empty() => out,
            Ok((reply, errors)) => self.with_event_errors(&batch, reply, errors, stats),
            Err(CallError::Returned(msg)) => self.fail_all(&batch, &msg, stats),
            Err(CallError::Broken(msg)) => {
                self.instance = None;
                tracing::error!(plugin = %name, "{msg}; the instance will be rebuilt");
                self.fail_all(&batch, &msg, stats)
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
    ) -> BatchBuf {
        let mut failed: Vec<Option<&str>> = vec![None; batch.len()];
        for e in &errors {
            if let Some(slot) = failed.get_mut(e.index as usize) {
                *slot = Some(&e.message);
            }
        }
        Stats::add(&stats.errors, errors.len());
        self.log_errors(&errors);
        match reply {
            Reply::Keep(bits) => {
                let mut out = BatchBuf::with_capacity(batch.len(), batch.byte_len());
                for (i, event) in batch.iter().enumerate() {
                    match failed[i] {
                        Some(msg) => self.on_failed(&mut out, &event, msg, stats),
                        None if weir_layout::Bitmap::get(&bits, i) => {
                            let _ = out.push_raw(event.raw());
                        }
                        None => {}
                    }
                }
                out
            }
            Reply::Output(mut out) => {
                for (i, event) in batch.iter().enumerate() {
                    if let Some(msg) = failed[i] {
                        self.on_failed(&mut out, &event, msg, stats);
                    }
                }
                out
            }
        }
    }

    fn fail_all(&self, batch: &BatchBuf, msg: &str, stats: &Stats) -> BatchBuf {
        Stats::add(&stats.errors, batch.len());
        tracing::warn!(plugin = %self.plugin.name, events = batch.len(), "batch failed: {msg}");
        let mut out = BatchBuf::with_capacity(batch.len(), batch.byte_len());
        for event in batch.iter() {
            self.on_failed(&mut out, &event, msg, stats);
        }
        out
    }

    fn on_failed(&self, out: &mut BatchBuf, event: &EventView<'_>, msg: &str, stats: &Stats) {
        match self.on_error {
            OnError::Drop => Stats::add(&stats.dropped, 1),
            OnError::Pass => {
                let reason = format!("plugin `{}`: {msg}", self.plugin.name);
                attach_error(out, event, &reason);
            }
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
