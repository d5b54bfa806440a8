//! What connects components: bounded batch channels, fan-out, per-component
//! counters and the shutdown flag.
//!
//! Channels carry whole batches and hold `channel_capacity` of them, so a slow
//! sink blocks its producers and, through them, the sources: memory stays flat.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

pub use super::ack::{Ack, Batch};

pub type Tx = async_channel::Sender<Batch>;
pub type Rx = async_channel::Receiver<Batch>;

/// Receives and discards until every producer has gone: a component that
/// cannot go on keeps its input moving so upstream components can finish.
/// What it discards was not delivered, so its sources do not commit it.
pub fn drain(input: &Rx) {
    while let Ok(batch) = input.recv_blocking() {
        batch.fail();
    }
}

/// Counters of one component.
#[derive(Debug, Default)]
pub struct Stats {
    pub events_in: AtomicU64,
    pub events_out: AtomicU64,
    /// Events that carried or caused an error (decode errors, plugin errors).
    pub errors: AtomicU64,
    /// Events dropped on purpose (`on_error = "drop"`), not filtered out.
    pub dropped: AtomicU64,
    /// Bytes read (sources) or written (sinks).
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Batches a plugin was called with, and the time those calls took.
    pub calls: AtomicU64,
    pub busy_ns: AtomicU64,
    /// A query's watermark (event time, ns; 0 before any event) and its
    /// open windows.
    pub watermark_ns: std::sync::atomic::AtomicI64,
    pub open_windows: AtomicU64,
    /// Failures by reason (`timeout`, `memory`, `trap`, `event_error`, ...).
    reasons: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// The counters a plugin keeps through `counter-add`.
    pub plugin_counters: std::sync::OnceLock<Arc<crate::plugin::Counters>>,
    /// A Kafka source's connection, lag and partitions.
    pub kafka: std::sync::OnceLock<Arc<crate::sources::kafka::KafkaState>>,
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

    /// One plugin call over a batch took `took`.
    pub fn record_call(&self, took: std::time::Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.busy_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// Stops sources: all of them (SIGINT/SIGTERM, a fatal sink error), or one
/// (a reload that removes it). Sources stop reading, everything in flight
/// drains, then the components downstream end.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    all: Arc<AtomicBool>,
    this: Arc<AtomicBool>,
}

impl Shutdown {
    /// Stops the whole pipeline.
    pub fn trigger(&self) {
        self.all.store(true, Ordering::SeqCst);
    }

    /// A flag for one source that the whole-pipeline trigger also sets.
    pub fn child(&self) -> Shutdown {
        Shutdown {
            all: self.all.clone(),
            this: Arc::default(),
        }
    }

    /// Stops only the holder of this child flag.
    pub fn stop_this(&self) {
        self.this.store(true, Ordering::SeqCst);
    }

    pub fn is_triggered(&self) -> bool {
        self.all.load(Ordering::Relaxed) || self.this.load(Ordering::Relaxed)
    }
}

/// The downstream inputs of a component (shared by its workers). A reload
/// rewires them in place, so the component keeps running.
#[derive(Clone)]
pub struct Output {
    wiring: Arc<Mutex<Wiring>>,
    pub stats: Arc<Stats>,
}

#[derive(Default)]
struct Wiring {
    /// Consumers: a full queue makes the sender wait (backpressure).
    txs: Vec<Tx>,
    /// Observers (live queries, taps): they get what fits in their queue and
    /// never slow the pipeline down; a closed one is removed.
    taps: Vec<Tx>,
}

/// See [`Output::downgrade`].
#[derive(Clone)]
pub struct WeakOutput(Weak<Mutex<Wiring>>);

impl WeakOutput {
    /// Points the output (and its clones) at a new set of consumers; false
    /// when its component has ended.
    pub fn rewire(&self, txs: Vec<Tx>) -> bool {
        match self.0.upgrade() {
            Some(m) => {
                m.lock().unwrap_or_else(|e| e.into_inner()).txs = txs;
                true
            }
            None => false,
        }
    }

    /// Adds an observer that sees every batch this output sends from now
    /// on, as far as its queue has room; false when the component has ended.
    pub fn tap(&self, tx: Tx) -> bool {
        match self.0.upgrade() {
            Some(m) => {
                m.lock().unwrap_or_else(|e| e.into_inner()).taps.push(tx);
                true
            }
            None => false,
        }
    }
}

/// Every downstream component has gone away.
#[derive(Debug)]
pub struct Closed;

impl Output {
    pub fn new(txs: Vec<Tx>, stats: Arc<Stats>) -> Self {
        Output {
            wiring: Arc::new(Mutex::new(Wiring {
                txs,
                taps: Vec::new(),
            })),
            stats,
        }
    }

    /// A handle that can rewire this output without keeping it (and so its
    /// consumers' queues) alive.
    pub fn downgrade(&self) -> WeakOutput {
        WeakOutput(Arc::downgrade(&self.wiring))
    }

    /// Sends a batch to every consumer, waiting while their queues are full.
    /// Consumers get a copy each; the last gets the original. Observers get
    /// the events without the acknowledgements: they never hold a commit up.
    pub fn send(&self, batch: impl Into<Batch>) -> Result<(), Closed> {
        let batch = batch.into();
        let Some(txs) = self.consumers(&batch) else {
            return Ok(());
        };
        let (last, rest) = txs.split_last().expect("consumers are never empty");
        let mut delivered = false;
        let mut deliver = |tx: &Tx, b: Batch| match tx.send_blocking(b) {
            Ok(()) => delivered = true,
            Err(async_channel::SendError(b)) => b.fail(),
        };
        for tx in rest {
            deliver(tx, batch.clone());
        }
        deliver(last, batch);
        if delivered {
            Ok(())
        } else {
            Err(Closed)
        }
    }

    /// [`Output::send`] for sources that run on an async runtime (network
    /// listeners): a full queue suspends the task, not the thread.
    pub async fn send_async(&self, batch: impl Into<Batch>) -> Result<(), Closed> {
        let batch = batch.into();
        let Some(txs) = self.consumers(&batch) else {
            return Ok(());
        };
        let (last, rest) = txs.split_last().expect("consumers are never empty");
        let mut delivered = false;
        let mut batch = Some(batch);
        for (i, tx) in rest.iter().chain([last]).enumerate() {
            let b = match i < rest.len() {
                true => batch.clone(),
                false => batch.take(),
            };
            match tx.send(b.expect("the last consumer takes the batch")).await {
                Ok(()) => delivered = true,
                Err(async_channel::SendError(b)) => b.fail(),
            }
        }
        if delivered {
            Ok(())
        } else {
            Err(Closed)
        }
    }

    /// Counts `batch`, offers it to the taps and returns the consumers to
    /// send it to (none for an empty batch). Senders are cloned out so no
    /// lock is held while a queue is full.
    fn consumers(&self, batch: &Batch) -> Option<Vec<Tx>> {
        if batch.is_empty() {
            return None;
        }
        Stats::add(&self.stats.events_out, batch.len());
        let mut w = self.wiring.lock().unwrap_or_else(|e| e.into_inner());
        if !w.taps.is_empty() {
            w.taps
                .retain(|t| match t.try_send(batch.events.clone().into()) {
                    Ok(()) => true,
                    Err(async_channel::TrySendError::Full(_)) => {
                        self.stats.count_reason("tap_full", batch.len() as u64);
                        true
                    }
                    Err(async_channel::TrySendError::Closed(_)) => false,
                });
        }
        (!w.txs.is_empty()).then(|| w.txs.clone())
    }
}
