//! What connects components: bounded batch channels, fan-out, per-component
//! counters and the shutdown flag.
//!
//! Channels carry whole batches and hold `channel_capacity` of them, so a slow
//! sink blocks its producers and, through them, the sources: memory stays flat.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use weir_layout::BatchBuf;

pub type Tx = async_channel::Sender<BatchBuf>;
pub type Rx = async_channel::Receiver<BatchBuf>;

/// Counters of one component.
#[derive(Debug, Default)]
pub struct Stats {
    pub events_in: AtomicU64,
    pub events_out: AtomicU64,
    /// Events that carried or caused an error (decode errors, plugin errors).
    pub errors: AtomicU64,
    /// Events dropped on purpose (`on_error = "drop"`), not filtered out.
    pub dropped: AtomicU64,
    /// Failures by reason (`timeout`, `memory`, `trap`, `event_error`, ...).
    reasons: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Stats {
    pub fn count_reason(&self, reason: &'static str, n: u64) {
        let mut m = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(reason).or_default() += n;
    }

    pub fn reasons(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Set once, on SIGINT/SIGTERM or a fatal sink error: sources stop reading,
/// everything in flight drains, then the pipeline ends.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The downstream inputs of a component (shared by its workers).
#[derive(Clone)]
pub struct Output {
    txs: Vec<Tx>,
    pub stats: Arc<Stats>,
}

/// Every downstream component has gone away.
#[derive(Debug)]
pub struct Closed;

impl Output {
    pub fn new(txs: Vec<Tx>, stats: Arc<Stats>) -> Self {
        Output { txs, stats }
    }

    /// Sends a batch to every consumer, waiting while their queues are full.
    /// Consumers get a copy each; the last gets the original.
    pub fn send(&self, batch: BatchBuf) -> Result<(), Closed> {
        if batch.is_empty() {
            return Ok(());
        }
        Stats::add(&self.stats.events_out, batch.len());
        let Some((last, rest)) = self.txs.split_last() else {
            return Ok(());
        };
        let mut delivered = false;
        for tx in rest {
            delivered |= tx.send_blocking(batch.clone()).is_ok();
        }
        delivered |= last.send_blocking(batch).is_ok();
        if delivered {
            Ok(())
        } else {
            Err(Closed)
        }
    }
}
