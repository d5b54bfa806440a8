//! Acknowledgements: how a source learns that every sink which got its
//! events has accepted them, so it may commit (a Kafka offset).
//!
//! A source that can commit hands each batch an [`Ack`]. The token travels
//! with the events: fan-out clones it, a transform moves it to what it sends
//! on, a query holds it until the windows with its events have closed, and a
//! sink lets go of it once the events are written. When the last holder lets
//! go, the source is told, once, whether all went well. A holder that could
//! not deliver marks the token failed first, so the source never commits
//! past events that were lost on the way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use weir_layout::BatchBuf;

/// What a batch's source wants done when the batch is through: called with
/// `true` when every holder accepted it.
pub type OnDone = Box<dyn FnOnce(bool) + Send + Sync>;

/// One source batch's acknowledgement token; clones share it.
#[derive(Clone)]
pub struct Ack(Arc<Token>);

struct Token {
    failed: AtomicBool,
    on_done: Option<OnDone>,
}

impl Ack {
    pub fn new(on_done: OnDone) -> Ack {
        Ack(Arc::new(Token {
            failed: AtomicBool::new(false),
            on_done: Some(on_done),
        }))
    }

    /// The events were not delivered: the source must not commit them.
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Relaxed);
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if let Some(done) = self.on_done.take() {
            done(!self.failed.load(Ordering::Relaxed));
        }
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ack")
    }
}

/// Events on their way between components, with the tokens of the source
/// batches they came from (none for sources that do not commit).
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub events: BatchBuf,
    pub acks: Vec<Ack>,
}

impl Batch {
    pub fn new(events: BatchBuf, acks: Vec<Ack>) -> Batch {
        Batch { events, acks }
    }

    /// The batch did not reach its destination (a sink failed, the
    /// pipeline stops): its sources will not commit it.
    pub fn fail(self) {
        for a in &self.acks {
            a.fail();
        }
    }
}

impl From<BatchBuf> for Batch {
    fn from(events: BatchBuf) -> Batch {
        Batch {
            events,
            acks: Vec::new(),
        }
    }
}

impl std::ops::Deref for Batch {
    type Target = BatchBuf;
    fn deref(&self) -> &BatchBuf {
        &self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn tracked() -> (Ack, Arc<Mutex<Vec<bool>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (
            Ack::new(Box::new(move |ok| s.lock().unwrap().push(ok))),
            seen,
        )
    }

    #[test]
    fn the_last_holder_acknowledges_once() {
        let (ack, seen) = tracked();
        let copy = ack.clone();
        drop(ack);
        assert!(seen.lock().unwrap().is_empty(), "a copy is still held");
        drop(copy);
        assert_eq!(*seen.lock().unwrap(), vec![true]);
    }

    #[test]
    fn one_failed_holder_fails_the_batch() {
        let (ack, seen) = tracked();
        let a = Batch::new(BatchBuf::new(), vec![ack.clone()]);
        let b = Batch::new(BatchBuf::new(), vec![ack]);
        drop(a);
        b.fail();
        assert_eq!(*seen.lock().unwrap(), vec![false]);
    }
}
